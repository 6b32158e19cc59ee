"""The test harness itself, without pgmedic: the PostgreSQL fixture, its hba rules,
the raw protocol client and the metrics parser.  If these fail, the failures of
the other modules say nothing about pgmedic."""
import psycopg2
import pytest

import pgwire
from conftest import DB, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, parse_metrics


def test_cluster_answers(pg):
    rows = pg.sql("SELECT current_user, current_database(), current_setting('server_version_num')::int,"
                  " current_setting('max_connections')::int, current_setting('fsync')")
    user, db, version, max_conn, fsync = rows[0]
    assert (user, db) == ("postgres", DB)
    assert 150000 <= version < 160000
    assert max_conn == 300
    assert fsync == "off"


def test_roles_need_their_password_method(pg):
    secrets = dict(pg.sql("SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN (%s, %s)",
                          (SCRAM_USER, MD5_USER)))
    assert secrets[SCRAM_USER].startswith("SCRAM-SHA-256$")
    assert secrets[MD5_USER] == pgwire.md5_secret(MD5_USER, MD5_PASSWORD)

    for user, password in ((SCRAM_USER, SCRAM_PASSWORD), (MD5_USER, MD5_PASSWORD)):
        with pytest.raises(psycopg2.OperationalError, match="password"):
            pg.connect(user=user)  # no password: hba demands one
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            pg.connect(user=user, password="wrong")
        conn = pg.connect(user=user, password=password)
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone()[0] == user
        conn.close()


@pytest.mark.parametrize("user,password,method", [
    ("postgres", None, pgwire.AUTH_OK),
    (SCRAM_USER, SCRAM_PASSWORD, pgwire.AUTH_SASL),
    (MD5_USER, MD5_PASSWORD, pgwire.AUTH_MD5),
])
def test_raw_client_logs_in(pg, user, password, method):
    with pgwire.RawConn("127.0.0.1", pg.port) as c:
        assert c.startup(user, DB, password) == method
        rows, tags = c.simple_query("SELECT current_user, 1 + 1")
        assert rows == [[user, "2"]]
        assert tags == ["SELECT 1"]


def test_raw_client_sees_sqlstates(pg):
    with pgwire.RawConn("127.0.0.1", pg.port) as c:
        with pytest.raises(pgwire.ServerError) as e:
            c.startup(SCRAM_USER, DB, "wrong")
        assert e.value.sqlstate == "28P01"
    with pgwire.RawConn("127.0.0.1", pg.port) as c:
        with pytest.raises(pgwire.ServerError) as e:
            c.startup(MD5_USER, DB, "wrong")
        assert e.value.sqlstate == "28P01"
    with pgwire.RawConn("127.0.0.1", pg.port) as c:
        with pytest.raises(pgwire.ServerError) as e:
            c.startup("postgres", "nosuch")
        assert e.value.sqlstate == "3D000"
        assert 'database "nosuch" does not exist' in e.value.message


def test_scram_secret_generator_matches_postgres(pg):
    """pgwire.scram_secret(), used to write SCRAM auth files, computes what PostgreSQL stores."""
    import base64
    secret = pg.role_secret(SCRAM_USER)
    iters_salt, keys = secret[len("SCRAM-SHA-256$"):].split("$")
    iters, salt = iters_salt.split(":")
    assert pgwire.scram_secret(SCRAM_PASSWORD, base64.b64decode(salt), int(iters)) == secret


def test_metrics_parser():
    m = parse_metrics(
        "# HELP pgmedic_up 1 when running\n"
        "# TYPE pgmedic_up gauge\n"
        "pgmedic_up 1\n"
        'pgmedic_clients{database="d",user="u",state="active"} 2\n'
        'pgmedic_clients{database="d",user="u",state="idle"} 3\n'
        'pgmedic_clients{database="e",user="u",state="idle"} 4\n'
        'pgmedic_bytes_sent_total{database="d",user="q\\"x"} 1.5e3 1700000000000\n')
    assert m.get("pgmedic_up") == 1
    assert m.get("pgmedic_clients") == 9
    assert m.get("pgmedic_clients", database="d") == 5
    assert m.get("pgmedic_clients", state="idle") == 7
    assert m.get("pgmedic_bytes_sent_total", user='q"x') == 1500
    assert m.get("pgmedic_nope", default=None) is None
    with pytest.raises(AssertionError):
        m.get("pgmedic_nope")
    with pytest.raises(AssertionError):
        parse_metrics("not a metric line at all {")
