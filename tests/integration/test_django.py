"""A small Django 4.2 project (psycopg2) runs its own `manage.py test` suite through
pgmedic in transaction mode: models with foreign keys and many-to-many relations,
transactions and savepoints, select_for_update between sessions, bulk operations,
aggregates, Unicode, raw cursors and iterator() (django_project/shop/tests.py).

Django's test runner also exercises the proxy's database lifecycle: it creates
test_<NAME> over a connection to the `postgres` database, migrates it, runs the
tests (some from several threads at once) and finally drops it, which only works
if pgmedic lets go of its idle server connections to that database.

The project logs in as a role whose default TimeZone is not UTC, so Django's
`SET TIME ZONE 'UTC'` at connect time must follow each client to whichever server
connection runs its next transaction (psycopg2 labels every timestamptz it reads
with the zone Django expects, ignoring the offset: a lost setting shifts values).
"""
import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import pg_url

PROJECT = Path(__file__).resolve().parent / "django_project"
PYTHON = "/usr/bin/python3"  # Debian's: Django 4.2 and psycopg2
ROLE = "pgmedic_django"
ROLE_TIMEZONE = "America/New_York"
DJANGO_TIMEOUT = 240


def expected_tests():
    """(class, method) of every test in the shop app's tests.py."""
    tree = ast.parse((PROJECT / "shop" / "tests.py").read_text())
    found = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            found += [(node.name, f.name) for f in node.body
                      if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]
    return found


@pytest.fixture(scope="module")
def django_role(pg):
    """A login role that may create databases, with a non-UTC default TimeZone."""
    if not pg.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,), dbname="postgres"):
        pg.sql(f"CREATE ROLE {ROLE} LOGIN CREATEDB", dbname="postgres")
    pg.sql(f"ALTER ROLE {ROLE} SET timezone = '{ROLE_TIMEZONE}'", dbname="postgres")
    return ROLE


def run_django_tests(pg, port, test_db, conn_max_age=0):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PGMEDIC_TEST_"))}
    env.update({
        "PGMEDIC_TEST_HOST": "127.0.0.1",
        "PGMEDIC_TEST_PORT": str(port),
        "PGMEDIC_TEST_NAME": "postgres",
        "PGMEDIC_TEST_USER": ROLE,
        "PGMEDIC_TEST_PASSWORD": "",
        "PGMEDIC_TEST_TEST_NAME": test_db,
        "PGMEDIC_TEST_CONN_MAX_AGE": str(conn_max_age),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    try:
        r = subprocess.run([PYTHON, "manage.py", "test", "--noinput", "-v", "2"], cwd=PROJECT, env=env,
                           capture_output=True, text=True, timeout=DJANGO_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        raise AssertionError(f"manage.py test still running after {DJANGO_TIMEOUT}s:\n{out[-8000:]}")
    # The runner writes its report (and per-test lines at -v 2) to stderr.
    output = r.stdout + r.stderr
    hint = ""
    if "is being accessed by other users" in output:
        hint = ("\nDROP DATABASE found other sessions on the test database: the proxy must close "
                "its idle server connections to a database that a client drops.\n")
    assert r.returncode == 0, f"manage.py test exited with {r.returncode}:{hint}\n{output[-12000:]}"
    expected = expected_tests()
    assert len(expected) >= 20
    m = re.search(r"^Ran (\d+) tests? in [\d.]+s\s*\n\s*\nOK\s*$", output, re.M)
    assert m, f"no 'Ran N tests ... OK' in the output:\n{output[-6000:]}"
    assert int(m.group(1)) == len(expected), output[-6000:]
    for cls, name in expected:
        line = rf"^{name} \(shop\.tests\.{cls}\.{name}\) \.\.\. ok$"
        assert re.search(line, output, re.M), f"{cls}.{name} not reported ok:\n{output[-6000:]}"
    assert "Destroying test database" in output
    # The runner dropped its test database (no leftover sessions blocked DROP DATABASE).
    assert not pg.sql("SELECT 1 FROM pg_database WHERE datname = %s", (test_db,), dbname="postgres")
    return output


def test_django_suite_directly_against_postgresql(pg, django_role):
    """Baseline: the same suite passes without the proxy."""
    run_django_tests(pg, pg.port, "test_pgmedic_django_direct")


@pytest.mark.timeout_s(DJANGO_TIMEOUT + 30)
@pytest.mark.parametrize("conn_max_age", [0, 60])
def test_django_suite_through_pgmedic_transaction_mode(pg, pgmedic, django_role, conn_max_age):
    # pgmedic logs in to PostgreSQL as the upstream URL's user: the Django role, so
    # that its non-UTC default TimeZone is what every server connection starts with.
    px = pgmedic(pool_mode="transaction", pool_size=4,
                 upstream=pg_url(ROLE, pg.port, "postgres"))
    test_db = f"test_pgmedic_django_{conn_max_age}"
    run_django_tests(pg, px.port, test_db, conn_max_age=conn_max_age)
    assert px.alive(), px.stderr_text()[-4000:]
    # Pooling really happened: the test database's many transactions (from many
    # client connections: threads, reconnects) ran on at most pool_size server
    # connections, and none of them is left now that the database is gone.
    m = px.metrics()
    transactions = m.get("pgmedic_transactions_total", database=test_db, user=ROLE)
    server_connects = m.get("pgmedic_server_connects_total", database=test_db, user=ROLE)
    assert transactions > 300, m.text
    assert 1 <= server_connects <= 4, m.text
    assert m.get("pgmedic_servers", database=test_db, user=ROLE) == 0, m.text
    assert pg.server_backends(test_db) == 0


@pytest.mark.timeout_s(2 * DJANGO_TIMEOUT + 30)
def test_django_suite_twice_through_one_pgmedic(pg, pgmedic, django_role):
    """What a developer does with a long-running proxy: run the tests again.  The
    second run drops and re-creates a database of the same name, whose pool
    pgmedic already has (its servers were closed for the first DROP DATABASE)."""
    px = pgmedic(pool_mode="transaction", pool_size=4,
                 upstream=pg_url(ROLE, pg.port, "postgres"))
    test_db = "test_pgmedic_django_rerun"
    run_django_tests(pg, px.port, test_db)
    run_django_tests(pg, px.port, test_db)
    assert px.alive(), px.stderr_text()[-4000:]
    m = px.metrics()
    assert 2 <= m.get("pgmedic_server_connects_total", database=test_db, user=ROLE) <= 8, m.text
    assert m.get("pgmedic_servers", database=test_db, user=ROLE) == 0, m.text
    assert pg.server_backends(test_db) == 0
