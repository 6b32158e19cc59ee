"""TLS on both sides of pgmedic, against a PostgreSQL cluster of its own with ssl=on
and certificates made by the openssl CLI for this module."""
import signal
import time

import psycopg2
import pytest

import pgwire
from conftest import DB, PgCluster, wait_until
from tlsutil import make_ca, make_cert

TLS_HBA = """\
local    all  all                 trust
hostssl  all  all  127.0.0.1/32   trust
host     all  all  127.0.0.1/32   trust
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    return {
        "dir": d,
        "ca": ca[0],
        "other_ca": other_ca[0],
        "proxy": make_cert(d, "proxy", ca),             # pgmedic's certificate for clients
        "proxy_other": make_cert(d, "proxy-other", other_ca),
        "pg": make_cert(d, "pg", ca),                   # PostgreSQL's certificate
    }


@pytest.fixture(scope="module")
def tls_pg(certs):
    crt, key = certs["pg"]
    cluster = PgCluster("tls", hba=TLS_HBA,
                        conf={"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"},
                        files={"server.crt": (crt, 0o644), "server.key": (key, 0o600)})
    cluster.start()
    try:
        cluster.sql(f'CREATE DATABASE "{DB}"', dbname="postgres")
        yield cluster
    finally:
        cluster.stop()


def tls_settings(certs, client_mode="require", server_mode="verify-full", server_ca=None, proxy_cert="proxy"):
    crt, key = certs[proxy_cert]
    s = {"client_tls_sslmode": client_mode, "client_tls_cert_file": crt, "client_tls_key_file": key,
         "server_tls_sslmode": server_mode}
    if server_ca is not False:
        s["server_tls_ca_file"] = server_ca or certs["ca"]
    return s


def upstream_is_tls(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return cur.fetchone()


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_tls_on_both_sides(tls_pg, pgmedic, certs, pool_mode):
    px = pgmedic(pool_mode=pool_mode, pool_size=2, upstream=tls_pg.url(), use_config=True,
                 settings=tls_settings(certs))
    conn = px.connect(host="localhost", sslmode="verify-full", sslrootcert=str(certs["ca"]))
    conn.autocommit = True
    assert conn.info.ssl_in_use
    assert conn.info.ssl_attribute("protocol") in ("TLSv1.2", "TLSv1.3")
    ssl, version = upstream_is_tls(conn)
    assert ssl is True, "pgmedic's connection to PostgreSQL is not TLS"
    assert version in ("TLSv1.2", "TLSv1.3")
    # Messages larger than a TLS record, both ways.
    big = "ab" * 2_500_000
    with conn.cursor() as cur:
        cur.execute("SELECT md5(%s), length(%s)", (big, big))
        assert cur.fetchone() == (__import__("hashlib").md5(big.encode()).hexdigest(), len(big))
        cur.execute("SELECT repeat('xy', 2500000)")
        assert cur.fetchone()[0] == "xy" * 2_500_000
    # PostgreSQL's view: every backend pgmedic opened for this database is TLS.
    rows = tls_pg.sql("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                      "WHERE a.datname = %s AND a.pid <> pg_backend_pid()", (DB,), dbname="postgres")
    assert rows and all(r[0] for r in rows), rows


def test_plaintext_client_refused_when_tls_required(tls_pg, pgmedic, certs):
    px = pgmedic(upstream=tls_pg.url(), use_config=True, settings=tls_settings(certs))
    with pytest.raises(psycopg2.OperationalError):
        px.connect(sslmode="disable")
    # On the wire: a plain StartupMessage gets an error or a close, never a login.
    with px.raw() as c:
        c.send(pgwire.startup_packet({"user": "postgres", "database": DB}))
        kind, payload = c.read_error_or_close()
        assert kind in ("E", "closed"), (kind, payload)
    conn = px.connect(sslmode="require")
    assert conn.info.ssl_in_use
    assert upstream_is_tls(conn)[0] is True


@pytest.mark.timeout_s(60)
def test_upstream_verify_full_with_wrong_ca_is_an_error(tls_pg, pgmedic, certs):
    px = pgmedic(upstream=tls_pg.url(), use_config=True,
                 settings={**tls_settings(certs, server_ca=certs["other_ca"]),
                           "server_connect_timeout": 3, "query_wait_timeout": 30})
    t0 = time.monotonic()
    with pytest.raises(psycopg2.Error):
        conn = px.connect(sslmode="require", connect_timeout=30)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert time.monotonic() - t0 < 10, "client waited instead of getting the upstream TLS error"
    assert px.alive()
    # PostgreSQL never saw a completed login from pgmedic (earlier tests' backends may
    # still be exiting, hence the wait).
    wait_until(lambda: tls_pg.server_backends(DB) == 0, timeout=5, message="no backends for the test database")


def test_upstream_tls_required_by_pgmedic_without_ca(tls_pg, pgmedic, certs):
    """server_tls_sslmode=require encrypts without verifying."""
    px = pgmedic(upstream=tls_pg.url(), use_config=True,
                 settings=tls_settings(certs, client_mode="disable", server_mode="require", server_ca=False))
    conn = px.connect(sslmode="disable")
    assert not conn.info.ssl_in_use
    assert upstream_is_tls(conn)[0] is True


def test_tls_with_scram_auth(tls_pg, pgmedic, certs):
    af = pgmedic.write_auth_file({"alice": "alice-tls-pw"})
    px = pgmedic(upstream="", use_config=True, auth_type="scram-sha-256", auth_file=af,
                 databases={DB: f"host=127.0.0.1 port={tls_pg.port} dbname={DB} user=postgres"},
                 settings=tls_settings(certs))
    conn = px.connect(host="localhost", user="alice", password="alice-tls-pw",
                      sslmode="verify-full", sslrootcert=str(certs["ca"]))
    assert conn.info.ssl_in_use
    assert upstream_is_tls(conn)[0] is True
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        px.connect(host="localhost", user="alice", password="nope", sslmode="require")


def test_sighup_reloads_client_certificate(tls_pg, pgmedic, certs):
    px = pgmedic(upstream=tls_pg.url(), use_config=True, settings=tls_settings(certs))

    def connect_with(ca):
        return px.connect(host="localhost", sslmode="verify-full", sslrootcert=str(ca))

    connect_with(certs["ca"]).close()
    with pytest.raises(psycopg2.OperationalError):
        connect_with(certs["other_ca"])
    crt, key = certs["proxy_other"]
    px.write_config(client_tls_cert_file=crt, client_tls_key_file=key)
    px.signal(signal.SIGHUP)

    def new_cert_served():
        try:
            connect_with(certs["other_ca"]).close()
            return True
        except psycopg2.OperationalError:
            return False

    wait_until(new_cert_served, timeout=10, interval=0.2, message="the reloaded certificate")
    with pytest.raises(psycopg2.OperationalError):
        connect_with(certs["ca"])
    assert px.alive()
