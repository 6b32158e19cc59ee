"""advise_explain() against a real PostgreSQL 15 with HypoPG: EXPLAIN summary, the
missing_index finding proven with a hypothetical index, and the refusals.

The function is C called from the advisor thread, so these tests drive it through
tests/integration/advise_driver.c, compiled here against the ASan objects of the tree
(build/asan/obj, built by `make build/asan/pgmedic`; the objects this needs are
brought up to date with make first)."""
import json
import os
import shlex
import subprocess
import urllib.parse

import pytest

from conftest import REPO

BIG_ROWS = 200_000
ASAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


def _pkg(*args):
    return shlex.split(subprocess.run(["pkg-config", *args, "jansson", "libpq"], check=True,
                                      capture_output=True, text=True).stdout)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    objs = ["build/asan/obj/src/insight/advise_explain.o", "build/asan/obj/src/sql/analyze.o",
            "build/asan/obj/src/core/log.o"]
    subprocess.run(["make", "-s", "--no-print-directory", *objs], cwd=REPO, check=True)
    out = tmp_path_factory.mktemp("advise") / "advise_driver"
    lib = out.with_name("libpgmedic_asan.a")
    # An archive of every object but main.o: the linker takes only what the driver needs.
    all_objs = sorted(str(p) for p in (REPO / "build/asan/obj/src").glob("*/*.o"))
    subprocess.run(["ar", "rcs", str(lib), *all_objs], check=True)
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-std=gnu11", "-D_GNU_SOURCE", "-I", str(REPO / "src"), *_pkg("--cflags"),
           "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=undefined", "-pthread",
           "-o", str(out), str(REPO / "tests/integration/advise_driver.c"), str(lib),
           *_pkg("--libs"), "-lpg_query", "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"cannot build the driver:\n{' '.join(cmd)}\n{r.stderr}"
    return out


def _load_table(pg, db, name, rows):
    pg.sql(f"DROP TABLE IF EXISTS {name}", dbname=db)
    pg.sql(f"CREATE TABLE {name} (id serial PRIMARY KEY, status text NOT NULL, kind text NOT NULL,"
           f" created_at timestamptz NOT NULL, product_id int NOT NULL, body text)", dbname=db)
    pg.sql(f"INSERT INTO {name} (status, kind, created_at, product_id, body)"
           f" SELECT CASE WHEN g % 5000 = 0 THEN 'spam' ELSE 'ok' END,"
           f"        CASE WHEN g % 4000 = 0 THEN 'rare' ELSE 'common' END,"
           f"        '2024-01-01'::timestamptz + g * interval '1 minute', g % 1000, repeat('x', 40)"
           f" FROM generate_series(1, {rows}) g", dbname=db)
    pg.sql(f"CREATE INDEX ON {name} (product_id)", dbname=db)
    pg.sql(f"CREATE INDEX ON {name} (kind, created_at)", dbname=db)
    pg.sql(f"ANALYZE {name}", dbname=db)


@pytest.fixture(scope="module")
def hypo_db(pg):
    """A database with the shop_review table; hypopg is created by the first test that asks."""
    db = pg.ensure_db("advise_explain")
    _load_table(pg, db, "shop_review", BIG_ROWS)
    _load_table(pg, db, "small_review", 500)
    return db


@pytest.fixture(scope="module")
def plain_db(pg):
    """A database where hypopg is never installed."""
    db = pg.ensure_db("advise_explain_nohypo")
    pg.sql("DROP EXTENSION IF EXISTS hypopg", dbname=db)
    _load_table(pg, db, "shop_review", BIG_ROWS)
    return db


def run(driver, pg, db, sql, *flags, options=None):
    url = pg.url(dbname=db)
    if options:  # libpq URIs do not read '+' as a space
        url += "?options=" + urllib.parse.quote(options)
    r = subprocess.run([str(driver), url, *flags, sql],
                       capture_output=True, text=True, timeout=60, env={**os.environ, **ASAN_ENV})
    assert not any(m in r.stderr for m in SANITIZER_MARKERS), r.stderr
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["idle"], "advise_explain left a transaction open"
    return out


def real_indexes(pg, db):
    return pg.sql("SELECT schemaname, tablename, indexname FROM pg_indexes"
                  " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3", dbname=db)


def test_missing_index_verified_with_hypopg(driver, pg, hypo_db):
    before = real_indexes(pg, hypo_db)
    out = run(driver, pg, hypo_db,
              "SELECT * FROM shop_review WHERE status = 'spam' ORDER BY created_at DESC LIMIT 10",
              "--create-hypopg")
    assert out["rc"] == 0, out["err"]
    f = out["finding"]
    assert f is not None, out["plan"]
    assert f["kind"] == "missing_index"
    assert f["id"] == "missing_index:shop_review(status,created_at)"
    assert f["table"] == "shop_review"
    assert f["columns"] == ["status", "created_at"]
    assert f["verified"] is True
    assert f["cost_after"] is not None and f["cost_after"] <= f["cost_before"] / 2
    assert f["cost_before"] == round(f["cost_before"], 2) and f["cost_after"] == round(f["cost_after"], 2)
    assert f["sql"] == ("CREATE INDEX CONCURRENTLY shop_review_status_created_at_idx"
                        " ON shop_review (status, created_at);")
    assert f["fix"].startswith("Add an index on shop_review (status, created_at): the query ")
    assert "checked with a hypothetical index" in f["fix"]
    assert f["severity"] == "high"
    assert f["table_rows"] == pytest.approx(BIG_ROWS, rel=0.05)
    assert f["occurrences"] == 1 and f["time_wasted_ms"] == 0
    for key in ("route", "fingerprint", "query", "django"):
        assert f[key] is None
    plan = out["plan"]
    assert plan["analyzed"] is False
    assert plan["total_cost"] == f["cost_before"]
    assert "Seq Scan" in plan["node_types"]
    assert [s["relation"] for s in plan["seq_scans"]] == ["shop_review"]
    assert plan["seq_scans"][0]["table_rows"] == pytest.approx(BIG_ROWS, rel=0.05)
    assert plan["sorts"] and plan["sorts"][0]["sort_key"] == ["shop_review.created_at DESC"]
    # Proven without building anything: no real index, no hypothetical one left behind.
    assert real_indexes(pg, hypo_db) == before
    assert out["hypo_left"] == 0
    assert pg.sql("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'", dbname=hypo_db)[0][0] == 1


def test_analyze_mode_has_actual_rows(driver, pg, hypo_db):
    out = run(driver, pg, hypo_db, "SELECT id FROM shop_review WHERE status = 'spam'",
              "--analyze", "--create-hypopg")
    assert out["rc"] == 0, out["err"]
    plan = out["plan"]
    assert plan["analyzed"] is True
    assert plan["costliest_node"]["node_type"] == "Seq Scan"
    assert plan["costliest_node"]["actual_rows"] is not None
    scan = plan["seq_scans"][0]
    assert scan["rows_removed"] is not None and scan["rows_removed"] > 0
    f = out["finding"]
    assert f["columns"] == ["status"] and f["verified"] is True
    assert f["plan_rows"] == BIG_ROWS // 5000  # the rows the scan really returned
    assert out["hypo_left"] == 0


def test_indexed_column_gives_no_finding(driver, pg, hypo_db):
    out = run(driver, pg, hypo_db, "SELECT * FROM shop_review WHERE product_id = 3", "--create-hypopg")
    assert out["rc"] == 0, out["err"]
    assert out["finding"] is None
    assert out["plan"]["seq_scans"] == []


def test_existing_index_is_not_suggested_again(driver, pg, hypo_db):
    # Index scans off: the plan seq-scans although (kind, created_at) exists.
    opts = "-c enable_indexscan=off -c enable_bitmapscan=off -c enable_indexonlyscan=off"
    out = run(driver, pg, hypo_db, "SELECT * FROM shop_review WHERE kind = 'rare' ORDER BY created_at LIMIT 5",
              "--create-hypopg", options=opts)
    assert out["rc"] == 0, out["err"]
    assert out["plan"]["seq_scans"], out["plan"]
    assert out["finding"] is None
    # ... while a column the index does not lead with is still suggested.
    out = run(driver, pg, hypo_db, "SELECT * FROM shop_review WHERE status = 'spam'", options=opts)
    assert out["finding"] is not None and out["finding"]["columns"] == ["status"]


def test_small_table_gives_no_finding(driver, pg, hypo_db):
    out = run(driver, pg, hypo_db, "SELECT * FROM small_review WHERE status = 'spam'", "--create-hypopg")
    assert out["rc"] == 0, out["err"]
    assert out["finding"] is None
    assert out["plan"]["seq_scans"][0]["relation"] == "small_review"
    assert out["plan"]["seq_scans"][0]["table_rows"] == 500
    # The threshold is the caller's.
    out = run(driver, pg, hypo_db, "SELECT * FROM small_review WHERE status = 'spam'", "--min-rows", "100")
    assert out["finding"] is not None and out["finding"]["table"] == "small_review"


@pytest.mark.parametrize("sql", [
    "UPDATE shop_review SET body = 'changed' WHERE id = 1",
    "DELETE FROM shop_review WHERE id = 1",
    "SELECT 1; DELETE FROM shop_review WHERE id = 1",
    "SELECT * FROM shop_review WHERE id = 1 FOR UPDATE",
    "WITH d AS (DELETE FROM shop_review WHERE id = 1 RETURNING *) SELECT * FROM d",
])
def test_writes_are_refused(driver, pg, hypo_db, sql):
    out = run(driver, pg, hypo_db, sql, "--analyze", "--create-hypopg")
    assert out["rc"] == -1
    assert out["err"] == "not a plain SELECT"
    assert out["plan"] is None and out["finding"] is None
    assert pg.sql("SELECT body FROM shop_review WHERE id = 1", dbname=hypo_db) == [("x" * 40,)]


def test_without_hypopg_finding_is_unverified(driver, pg, plain_db):
    out = run(driver, pg, plain_db, "SELECT * FROM shop_review WHERE status = 'spam'")
    assert out["rc"] == 0, out["err"]
    f = out["finding"]
    assert f is not None and f["columns"] == ["status"]
    assert f["verified"] is False
    assert f["cost_after"] is None
    assert f["cost_before"] > 0
    assert "not verified" in f["fix"]
    assert out["hypo_left"] is None
    assert pg.sql("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'", dbname=plain_db)[0][0] == 0


def test_analyze_timeout_falls_back_to_estimates(driver, pg, hypo_db):
    out = run(driver, pg, hypo_db, "SELECT pg_sleep(2), id FROM shop_review WHERE status = 'spam' LIMIT 1",
              "--analyze", "--timeout-ms", "300")
    assert out["rc"] == 0, out["err"]
    assert out["err"] == ""
    assert out["plan"]["analyzed"] is False


def test_bad_sql_is_an_error(driver, pg, hypo_db):
    out = run(driver, pg, hypo_db, "SELECT * FROM no_such_table WHERE a = 1", "--analyze")
    assert out["rc"] == -1
    assert "no_such_table" in out["err"]
    out = run(driver, pg, hypo_db, "SELEC nonsense")
    assert out["rc"] == -1 and out["plan"] is None
