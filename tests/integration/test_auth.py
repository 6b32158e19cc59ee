"""Authentication: clients to pgmedic (trust, md5, scram-sha-256 with plaintext, md5
and SCRAM secrets in a PgBouncer-format auth file), pgmedic to PostgreSQL (password
in the upstream URL; SCRAM and md5 pass-through from secrets alone), login errors
with the right SQLSTATE, and the refusal to trust everyone on a public address."""
import re
import time

import psycopg2
import pytest

import pgwire
from conftest import (DB, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, free_port,
                      port_accepts)

USERS = {
    "alice": "alice-Pw-1",   # stored as plaintext
    "bob": "bob-Pw-2",       # stored as md5
    "carol": "carol-Pw-3",   # stored as a SCRAM secret
}


def auth_entries():
    return {
        "alice": USERS["alice"],
        "bob": pgwire.md5_secret("bob", USERS["bob"]),
        "carol": pgwire.scram_secret(USERS["carol"]),
    }


def forced_superuser_db(pg):
    """[databases] entry sending every client to PostgreSQL as the (trusted) superuser,
    so these tests see pgmedic's client authentication alone."""
    return {DB: f"host=127.0.0.1 port={pg.port} dbname={DB} user=postgres"}


def login_method(px, user, password, dbname=DB):
    """Logs in with the raw client; returns the first authentication request code."""
    with px.raw() as c:
        method = c.startup(user, dbname, password)
        rows, _ = c.simple_query("SELECT 'in'")
        assert rows == [["in"]]
        return method


def login_error(px, user, password, dbname=DB):
    with px.raw() as c:
        with pytest.raises(pgwire.ServerError) as e:
            c.startup(user, dbname, password)
        return e.value


def query_ok(conn, sql="SELECT current_user"):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


# ------------------------------------------------------------------ clients -> pgmedic

@pytest.mark.parametrize("user,method", [
    ("alice", pgwire.AUTH_MD5),   # plaintext secret: md5 challenge
    ("bob", pgwire.AUTH_MD5),     # md5 secret: md5 challenge
    ("carol", pgwire.AUTH_SASL),  # SCRAM secret cannot answer md5: SCRAM instead, as PostgreSQL does
])
def test_auth_type_md5(pg, pgmedic, user, method):
    px = pgmedic(auth_type="md5", auth_file=pgmedic.write_auth_file(auth_entries()),
                 databases=forced_superuser_db(pg), upstream="")
    assert login_method(px, user, USERS[user]) == method
    conn = px.connect(user=user, password=USERS[user])
    assert query_ok(conn, "SELECT 1") == 1
    err = login_error(px, user, "wrong-password")
    assert err.sqlstate == "28P01", err
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        px.connect(user=user, password="wrong-password")


@pytest.mark.parametrize("user", ["alice", "carol"])
def test_auth_type_scram(pg, pgmedic, user):
    px = pgmedic(auth_type="scram-sha-256", auth_file=pgmedic.write_auth_file(auth_entries()),
                 databases=forced_superuser_db(pg), upstream="")
    assert login_method(px, user, USERS[user]) == pgwire.AUTH_SASL
    conn = px.connect(user=user, password=USERS[user])
    assert query_ok(conn, "SELECT 1") == 1
    err = login_error(px, user, "wrong-password")
    assert err.sqlstate == "28P01", err
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        px.connect(user=user, password="wrong-password")
    with pytest.raises(psycopg2.OperationalError):
        px.connect(user=user)  # no password at all


def test_auth_scram_refuses_what_it_cannot_check(pg, pgmedic):
    """An md5 secret cannot verify a SCRAM exchange, and an unknown user has no secret:
    both logins fail with an authentication error (and pgmedic keeps serving)."""
    px = pgmedic(auth_type="scram-sha-256", auth_file=pgmedic.write_auth_file(auth_entries()),
                 databases=forced_superuser_db(pg), upstream="")
    with pytest.raises(psycopg2.OperationalError):
        px.connect(user="bob", password=USERS["bob"])
    err = login_error(px, "mallory", "whatever")
    assert err.sqlstate.startswith("28"), err
    assert query_ok(px.connect(user="alice", password=USERS["alice"]), "SELECT 1") == 1


def test_auth_type_trust(pg, pgmedic):
    px = pgmedic(auth_type="trust")
    assert login_method(px, "postgres", None) == pgwire.AUTH_OK
    assert query_ok(px.connect()) == "postgres"


def test_default_loopback_trust(pg, pgmedic):
    """Upstream URL without password, no auth file, loopback listener: clients are trusted."""
    px = pgmedic()
    assert login_method(px, "postgres", None) == pgwire.AUTH_OK


@pytest.mark.parametrize("layout", ["listed", "wildcard"])
def test_unknown_database(pg, pgmedic, layout):
    if layout == "listed":
        dbs = {DB: f"host=127.0.0.1 port={pg.port} dbname={DB} user=postgres"}
    else:  # client's database name passed through to PostgreSQL
        dbs = {"*": f"host=127.0.0.1 port={pg.port} user=postgres"}
    px = pgmedic(databases=dbs, upstream="", auth_type="trust")
    err = login_error(px, "postgres", None, dbname="nosuch")
    assert err.sqlstate == "3D000", err
    assert 'database "nosuch" does not exist' in err.message
    with pytest.raises(psycopg2.OperationalError, match='database "nosuch" does not exist'):
        px.connect(dbname="nosuch")
    assert query_ok(px.connect()) == "postgres"


# ------------------------------------------------------------------ pgmedic -> PostgreSQL

@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
@pytest.mark.parametrize("user,password", [(SCRAM_USER, SCRAM_PASSWORD), (MD5_USER, MD5_PASSWORD)])
@pytest.mark.parametrize("client_auth", ["trust", "url-password"])
def test_upstream_password_from_url(pg, pgmedic, pool_mode, user, password, client_auth):
    """pgmedic logs in to PostgreSQL with the URL's password.  Clients are trusted
    (--auth-type trust) or, with no auth file, log in with the URL's user and password."""
    if client_auth == "trust":
        px = pgmedic(pool_mode=pool_mode, upstream=pg.url(user=user, password=password), auth_type="trust")
        conn = px.connect(user=user)
    else:
        px = pgmedic(pool_mode=pool_mode, upstream=pg.url(user=user, password=password))
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            px.connect(user=user, password="wrong-password")
        conn = px.connect(user=user, password=password)
    assert query_ok(conn) == user
    conn.commit()
    assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname = %s",
                  (user, DB))[0][0] >= 1


def test_upstream_wrong_password_is_an_error_not_a_hang(pg, pgmedic):
    px = pgmedic(upstream=pg.url(user=SCRAM_USER, password="not-the-password"), auth_type="trust",
                 settings={"query_wait_timeout": 30})
    t0 = time.monotonic()
    with pytest.raises(psycopg2.Error):
        conn = px.connect(user=SCRAM_USER)
        query_ok(conn)
    assert time.monotonic() - t0 < 10, "the client waited instead of getting the upstream auth error"
    assert px.alive()


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_scram_pass_through(pg, pgmedic, pool_mode):
    """The auth file holds only app_scram's SCRAM secret as PostgreSQL stores it; the
    upstream URL has no password.  pgmedic checks the client's SCRAM proof and logs in
    to PostgreSQL with the keys that proof reveals."""
    secret = pg.role_secret(SCRAM_USER)
    assert secret.startswith("SCRAM-SHA-256$")
    af = pgmedic.write_auth_file({SCRAM_USER: secret})
    px = pgmedic(pool_mode=pool_mode, pool_size=2, auth_type="scram-sha-256", auth_file=af,
                 upstream=pg.url(user=SCRAM_USER))
    assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
    # Two clients inside transactions at once need two server logins.
    c1 = px.connect(user=SCRAM_USER, password=SCRAM_PASSWORD)
    c2 = px.connect(user=SCRAM_USER, password=SCRAM_PASSWORD)
    assert query_ok(c1) == SCRAM_USER
    assert query_ok(c2) == SCRAM_USER
    assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (SCRAM_USER,))[0][0] >= 2
    c1.commit()
    c2.commit()
    err = login_error(px, SCRAM_USER, "wrong-password")
    assert err.sqlstate == "28P01", err


def test_md5_pass_through(pg, pgmedic):
    """Same with app_md5's stored md5 secret: md5 auth upstream needs only the hash."""
    secret = pg.role_secret(MD5_USER)
    assert secret == pgwire.md5_secret(MD5_USER, MD5_PASSWORD)
    af = pgmedic.write_auth_file({MD5_USER: secret})
    px = pgmedic(pool_mode="transaction", pool_size=2, auth_type="md5", auth_file=af,
                 upstream=pg.url(user=MD5_USER))
    assert login_method(px, MD5_USER, MD5_PASSWORD) == pgwire.AUTH_MD5
    assert query_ok(px.connect(user=MD5_USER, password=MD5_PASSWORD)) == MD5_USER
    assert login_error(px, MD5_USER, "wrong-password").sqlstate == "28P01"


# ------------------------------------------------------------------ startup checks

def test_public_listen_with_trust_is_refused(pg, pgmedic):
    port, http_port = free_port(), free_port()
    rc, err = pgmedic.run_expect_exit([
        "--listen", f"0.0.0.0:{port}", "--upstream", pg.url(), "--pool-mode", "transaction",
        "--pool-size", "2", "--http", f"127.0.0.1:{http_port}", "--auth-type", "trust"])
    assert rc != 0
    assert re.search(r"trust|loopback|0\.0\.0\.0|auth", err, re.I), f"unclear message: {err!r}"
    assert not port_accepts(port)
