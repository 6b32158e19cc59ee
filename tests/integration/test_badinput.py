"""Malformed and hostile input on raw sockets, and the limits that protect pgmedic:
each bad client gets an ErrorResponse where the protocol allows one, or is
disconnected; meanwhile a well-behaved psycopg2 client sharing the same (single)
server connection keeps getting right answers, and pgmedic stays up."""
import socket
import struct
import threading
import time
from contextlib import contextmanager

import psycopg2
import pytest

import pgwire
from conftest import DB, wait_until
from tlsutil import make_ca, make_cert


@contextmanager
def healthy_client(px, table=None):
    """A psycopg2 client querying in a loop while the body runs, and after it."""
    conn = px.connect()
    conn.autocommit = True
    state = {"n": 0, "errors": [], "stop": False}

    def loop():
        i = 0
        while not state["stop"]:
            i += 1
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT %s::int + 1, txid_current_if_assigned()", (i,))
                    got = cur.fetchone()
                if got != (i + 1, None):  # a wrong answer, or inside someone else's transaction
                    state["errors"].append(f"query {i}: got {got!r}")
                state["n"] += 1
            except Exception as e:  # noqa: BLE001 - reported below
                state["errors"].append(f"query {i}: {type(e).__name__}: {e}")
                return
            time.sleep(0.01)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield conn
    finally:
        time.sleep(0.1)
        state["stop"] = True
        t.join(30)
    assert not t.is_alive(), "the healthy client's query never returned"
    assert not state["errors"], state["errors"]
    assert state["n"] > 0
    # ...and after: the good client, and a brand-new one, still work.
    with conn.cursor() as cur:
        cur.execute("SELECT 'after'")
        assert cur.fetchone() == ("after",)
    fresh = px.connect()
    with fresh.cursor() as cur:
        cur.execute("SELECT 'fresh'")
        assert cur.fetchone() == ("fresh",)
    fresh.close()
    assert px.alive()
    assert px.metrics().get("pgmedic_up") == 1


def assert_error_or_close(conn):
    kind, payload = conn.read_error_or_close()
    assert kind in ("E", "closed"), f"expected ErrorResponse or close, got {kind!r} {payload!r}"
    if kind == "E":
        assert payload.get("S") in ("FATAL", "ERROR"), payload
        assert len(payload.get("C", "")) == 5, payload
    return kind, payload


def sp(params, version=pgwire.PROTOCOL_3_0):
    return pgwire.startup_packet(params, version)


PRE_LOGIN = {
    "http_request": b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "all_ff": b"\xff" * 64,
    "length_0": b"\x00\x00\x00\x00",
    "length_4_no_code": b"\x00\x00\x00\x04",
    "length_7": b"\x00\x00\x00\x07\x00\x03\x00",
    "length_2_31": struct.pack("!I", 2 ** 31) + struct.pack("!I", pgwire.PROTOCOL_3_0) + b"user\0x\0",
    "length_100k": struct.pack("!II", 100_000, pgwire.PROTOCOL_3_0) + b"user\0postgres\0" * 10,
    "protocol_2": sp({"user": "postgres", "database": DB}, version=2 << 16),
    "protocol_9": sp({"user": "postgres", "database": DB}, version=9 << 16),
    "no_user": sp({"database": DB}),
    "unterminated_params": (lambda body: struct.pack("!I", len(body) + 4) + body)(
        struct.pack("!I", pgwire.PROTOCOL_3_0) + b"user\0postgres\0database\0" + DB.encode()),
    "odd_param_count": (lambda body: struct.pack("!I", len(body) + 4) + body)(
        struct.pack("!I", pgwire.PROTOCOL_3_0) + b"user\0postgres\0database\0\0"),
}


@pytest.mark.parametrize("case", sorted(PRE_LOGIN))
def test_bad_startup(pgmedic, case):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    with healthy_client(px):
        for _ in range(3):
            with px.raw() as c:
                c.send(PRE_LOGIN[case])
                assert_error_or_close(c)


def test_ssl_request_twice(pgmedic):
    """A second SSLRequest after 'N' is refused (as PostgreSQL does) or answered 'N'
    again; in the latter case a normal login must follow."""
    px = pgmedic(pool_mode="transaction", pool_size=1)
    with healthy_client(px):
        with px.raw() as c:
            c.send(pgwire.ssl_request() + pgwire.ssl_request())
            assert c.read_bytes(1) == b"N"  # no TLS configured
            c.sock.settimeout(2)
            try:
                second = c.read_bytes(1)
            except pgwire.Closed:
                return
            c.sock.settimeout(5)
            if second == b"N":
                assert c.startup("postgres", DB) == pgwire.AUTH_OK
                assert c.simple_query("SELECT 1")[0] == [["1"]]
            else:
                c.buf = second + c.buf
                assert_error_or_close(c)


@pytest.mark.parametrize("case", ["half_startup", "length_only", "half_ssl_request"])
def test_truncated_startup_then_close(pgmedic, case):
    full = sp({"user": "postgres", "database": DB})
    data = {"half_startup": full[: len(full) // 2], "length_only": full[:4],
            "half_ssl_request": pgwire.ssl_request()[:5]}[case]
    px = pgmedic(pool_mode="transaction", pool_size=1)
    with healthy_client(px):
        for _ in range(20):
            with px.raw() as c:
                c.send(data)
            # closing with bytes outstanding; pgmedic must just drop the client


def test_gssenc_request_is_declined(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    with px.raw() as c:
        c.send(pgwire.gssenc_request())
        assert c.read_bytes(1) == b"N"
        assert c.startup("postgres", DB) == pgwire.AUTH_OK
        assert c.simple_query("SELECT 'ok'")[0] == [["ok"]]


def test_bogus_cancel_request(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    with healthy_client(px):
        with px.raw() as c:
            c.send(pgwire.cancel_request(12345, 67890))
            assert c.expect_closed()
        with px.raw() as c:  # truncated cancel request
            c.send(pgwire.cancel_request(1, 2)[:12])


def test_ssl_request_then_plaintext_without_tls(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    with healthy_client(px):
        with px.raw() as c:
            c.send(pgwire.ssl_request())
            assert c.read_bytes(1) == b"N"
            c.send(b"\x16\x03\x01garbage that is not a startup packet" * 4)
            assert_error_or_close(c)


@pytest.fixture(scope="module")
def proxy_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("badinput-certs")
    return make_cert(d, "proxy", make_ca(d, "ca"))


def test_ssl_request_then_plaintext_with_tls(pgmedic, proxy_cert):
    """pgmedic answers 'S'; the client then sends plaintext instead of a ClientHello.
    The TLS handshake fails (an alert may come back) and the connection is closed."""
    crt, key = proxy_cert
    px = pgmedic(pool_mode="transaction", pool_size=1,
                 settings={"client_tls_sslmode": "prefer", "client_tls_cert_file": crt,
                           "client_tls_key_file": key})
    with healthy_client(px):
        for garbage in (sp({"user": "postgres", "database": DB}), b"\x00" * 300, b"\xff" * 5):
            with px.raw() as c:
                c.send(pgwire.ssl_request())
                assert c.read_bytes(1) == b"S"
                c.send(garbage)
                c.sock.settimeout(10)
                try:
                    while c.sock.recv(4096):  # drain a TLS alert, if any, until EOF
                        pass
                except ConnectionResetError:
                    pass
                except socket.timeout:
                    pytest.fail("pgmedic kept the failed TLS connection open")


POST_LOGIN = {
    "length_0": b"Q\x00\x00\x00\x00",
    "length_2": b"Q\x00\x00\x00\x02",
    "length_3": b"Q\x00\x00\x00\x03SELECT 1\0",
    "negative_length": b"Q\xff\xff\xff\xf0SELECT 1\0",
    "unknown_type": pgwire.message(b"z", b"\x00\x01"),
    "query_without_nul": pgwire.message(b"Q", b"SELECT 1"),
    "bind_to_missing_statement": pgwire.message(b"B", b"\0nostmt\0" + b"\x00\x00\x00\x00\x00\x00")
                                 + pgwire.message(b"S"),
    "nul_type_byte": b"\x00\x00\x00\x00\x08abcd",
}


@pytest.mark.parametrize("case", sorted(POST_LOGIN))
def test_bad_message_after_login(pgmedic, case):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    with healthy_client(px):
        for _ in range(2):
            with px.raw() as c:
                c.startup("postgres", DB)
                c.send(POST_LOGIN[case])
                kind, fields = assert_error_or_close(c)
                if case == "bind_to_missing_statement" and kind == "E":
                    assert fields["C"] == "26000", fields  # a valid message: PostgreSQL's own error


@pytest.mark.parametrize("case", ["truncated_query", "huge_length", "truncated_parse", "half_header"])
def test_truncated_message_after_login_then_close(pg, pgmedic, case):
    data = {
        "truncated_query": b"Q\x00\x00\x00\x40SELECT 'never finish",
        "huge_length": b"Q\x3f\xff\xff\xffSELECT ",
        "truncated_parse": pgwire.message(b"P", b"\0SELECT $1::int\0\x00\x01\x00\x00\x00\x17")[:-6],
        "half_header": b"Q\x00\x00",
    }[case]
    px = pgmedic(pool_mode="transaction", pool_size=1)
    with healthy_client(px):
        for _ in range(3):
            with px.raw() as c:
                c.startup("postgres", DB)
                c.simple_query("SELECT 1")
                c.send(data)
                time.sleep(0.05)
            # the client is gone with half a message sent: whatever server connection
            # saw that half must not serve anyone else


def test_abandoned_transaction_is_not_inherited(pg, pgmedic, table_name):
    """A client leaves in the middle of a transaction (Terminate, or just closing):
    its work is rolled back and the next client is not inside that transaction."""
    t = table_name
    pg.sql(f"CREATE TABLE {t} (id int)")
    try:
        px = pgmedic(pool_mode="transaction", pool_size=1)
        with healthy_client(px):
            for how in ("terminate", "close"):
                with px.raw() as c:
                    c.startup("postgres", DB)
                    c.simple_query(f"BEGIN; INSERT INTO {t} VALUES (666)")
                    if how == "terminate":
                        c.send(pgwire.terminate_message())
        assert pg.sql(f"SELECT count(*) FROM {t}")[0][0] == 0
    finally:
        pg.sql(f"DROP TABLE IF EXISTS {t}")


# ------------------------------------------------------------------ limits

@pytest.mark.timeout_s(60)
def test_client_login_timeout(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1, settings={"client_login_timeout": 1})
    with healthy_client(px):
        with px.raw(timeout=10) as silent, px.raw(timeout=10) as partial:
            partial.send(sp({"user": "postgres", "database": DB})[:10])
            t0 = time.monotonic()
            for c in (silent, partial):
                try:
                    kind, _ = c.read_error_or_close()
                except socket.timeout:
                    pytest.fail("a client that never finished its login was kept for 10s "
                                "(client_login_timeout=1)")
                assert kind in ("E", "closed")
            assert time.monotonic() - t0 < 6, "half-open clients were not dropped after client_login_timeout"


def test_max_client_conn(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2, settings={"max_client_conn": 3})
    conns = [px.connect() for _ in range(3)]
    with pytest.raises(psycopg2.OperationalError) as e:
        px.connect(sslmode="disable")
    assert "too many" in str(e.value).lower(), str(e.value)
    with px.raw() as c:
        with pytest.raises(pgwire.ServerError) as se:
            c.startup("postgres", DB)
        assert se.value.sqlstate == "53300", se.value
        assert "too many" in se.value.message.lower()
    for conn in conns:  # the admitted clients are unaffected
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.commit()
    conns.pop().close()

    def admitted():
        try:
            conns.append(px.connect())
            return True
        except psycopg2.OperationalError:
            return False

    wait_until(admitted, timeout=5, interval=0.1, message="a slot after one client left")


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_query_wait_timeout(pgmedic, pool_mode):
    px = pgmedic(pool_mode=pool_mode, pool_size=1, settings={"query_wait_timeout": 1})
    holder = px.connect()
    with holder.cursor() as cur:
        cur.execute("SELECT 1")  # psycopg2 opened a transaction: the server is held
    t0 = time.monotonic()
    with pytest.raises(psycopg2.Error):
        waiter = px.connect()
        with waiter.cursor() as cur:
            cur.execute("SELECT 2")
    elapsed = time.monotonic() - t0
    assert 0.5 < elapsed < 5, f"waiting client got its error after {elapsed:.2f}s (query_wait_timeout=1)"
    holder.commit()
    if pool_mode == "session":
        holder.close()
    late = px.connect()
    with late.cursor() as cur:
        cur.execute("SELECT 3")
        assert cur.fetchone() == (3,)
