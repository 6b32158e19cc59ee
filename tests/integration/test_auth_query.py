"""auth_user + auth_query: pgmedic looks up the secret of a user that is not in its
auth file in PostgreSQL itself (PgBouncer's semantics), over a non-blocking libpq
connection logged in as auth_user.  A SCRAM secret from the lookup lets pgmedic
check the client's SCRAM proof and then log in upstream with SCRAM pass-through,
so no end user's password (or secret) is stored anywhere in pgmedic's files --
the scenario of PgBouncer issue #1186.

The module adds to the session cluster (and removes at the end):
- `pgmedic_auth`: a LOGIN role with a password and no other privilege; pg_hba makes
  it use scram-sha-256 over 127.0.0.1;
- `public.pgmedic_lookup(text)`: a SECURITY DEFINER function owned by the superuser
  returning (usename, passwd) from pg_shadow, EXECUTE granted to pgmedic_auth only;
- `authq_md5` (md5) and `authq_scram` (SCRAM): roles whose passwords the rotation
  test changes, with pg_hba lines of their own;
- log_connections = on, so the server log says how each backend authenticated.
"""
import re
import signal
import socket
import struct
import threading
import time

import psycopg2
import pytest

import pgwire
from conftest import DB, MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, free_port, wait_until

AUTH_USER, AUTH_PASSWORD = "pgmedic_auth", "authq-Lookup-Pw-7"
LOOKUP = "SELECT usename, passwd FROM pgmedic_lookup($1)"
# The same lookup, taking about half a second: keeps a lookup in flight.
SLOW_LOOKUP = "SELECT l.usename, l.passwd FROM pg_sleep(0.5) s, pgmedic_lookup($1) l"
ROT_MD5, ROT_SCRAM = "authq_md5", "authq_scram"
OTHER_DB = "authq_other"

EXTRA_HBA = f"""\
# test_auth_query.py
host    all       {AUTH_USER}  127.0.0.1/32   scram-sha-256
host    all       {ROT_SCRAM}  127.0.0.1/32   scram-sha-256
host    all       {ROT_MD5}    127.0.0.1/32   md5
"""

pytestmark = pytest.mark.timeout_s(30)


# ------------------------------------------------------------------ cluster setup

def _cleanup_objects(pg):
    pg.sql("DROP FUNCTION IF EXISTS public.pgmedic_lookup(text)")
    for role in (AUTH_USER, ROT_MD5, ROT_SCRAM):
        pg.sql(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture(scope="module")
def authq(pg):
    """Creates the lookup role/function, hba lines and log_connections; undoes them."""
    hba_path = pg.datadir / "pg_hba.conf"
    original_hba = hba_path.read_text()
    _cleanup_objects(pg)
    conn = pg.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET password_encryption = 'scram-sha-256'")
        cur.execute(f"CREATE ROLE {AUTH_USER} LOGIN PASSWORD %s", (AUTH_PASSWORD,))
        cur.execute(f"CREATE ROLE {ROT_SCRAM} LOGIN PASSWORD 'rot-scram-1'")
        cur.execute("SET password_encryption = 'md5'")
        cur.execute(f"CREATE ROLE {ROT_MD5} LOGIN PASSWORD 'rot-md5-1'")
        cur.execute("""
            CREATE FUNCTION public.pgmedic_lookup(i_username text, OUT usename name, OUT passwd text)
            RETURNS record LANGUAGE sql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = i_username $$""")
        cur.execute("REVOKE ALL ON FUNCTION public.pgmedic_lookup(text) FROM PUBLIC")
        cur.execute(f"GRANT EXECUTE ON FUNCTION public.pgmedic_lookup(text) TO {AUTH_USER}")
        cur.execute("ALTER SYSTEM SET log_connections = on")
    conn.close()
    pg.ensure_db(OTHER_DB)
    hba_path.write_text(EXTRA_HBA + original_hba)
    pg.sql("SELECT pg_reload_conf()")

    def hba_active():
        try:
            pg.connect(user=AUTH_USER, connect_timeout=3).close()
            return False  # still trusted: the reload has not happened yet
        except psycopg2.OperationalError as e:
            return "password" in str(e)
    wait_until(hba_active, 10, message="pg_hba.conf reload (pgmedic_auth needs a password)")
    try:
        yield pg
    finally:
        hba_path.write_text(original_hba)
        pg.sql("ALTER SYSTEM RESET log_connections")
        pg.sql("SELECT pg_reload_conf()")
        try:
            _cleanup_objects(pg)
        except psycopg2.Error:
            pass


def test_setup_lookup_role_is_low_privilege(authq):
    """Sanity for the fixture: pgmedic_auth logs in with SCRAM, cannot read pg_shadow,
    and sees secrets only through the SECURITY DEFINER function."""
    conn = authq.connect(user=AUTH_USER, password=AUTH_PASSWORD)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT passwd FROM pg_shadow")
            cur.execute(LOOKUP.replace("$1", "%s"), (SCRAM_USER,))
            usename, passwd = cur.fetchone()
            assert usename == SCRAM_USER and passwd.startswith("SCRAM-SHA-256$")
            cur.execute(LOOKUP.replace("$1", "%s"), ("no_such_user",))
            assert cur.fetchall() == [(None, None)]
    finally:
        conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        authq.connect(user=AUTH_USER, password="wrong").close()


# ------------------------------------------------------------------ helpers

def login_method(px, user, password, dbname=DB, timeout=5.0):
    with px.raw(timeout=timeout) as c:
        method = c.startup(user, dbname, password)
        rows, _ = c.simple_query("SELECT current_user")
        assert rows == [[user]]
        return method


def login_error(px, user, password, dbname=DB, timeout=10.0):
    """Logs in with the raw client expecting an ErrorResponse; returns (error, seconds)."""
    t0 = time.monotonic()
    with pgwire.RawConn("127.0.0.1", px.port, timeout=timeout) as c:
        with pytest.raises(pgwire.ServerError) as e:
            c.startup(user, dbname, password)
        return e.value, time.monotonic() - t0


def one(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    conn.commit()
    return row


def log_offset(pg):
    return pg.logfile.stat().st_size


def log_since(pg, offset):
    with open(pg.logfile, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def authenticated_line(pg, offset, pid, user, method):
    """The server log's 'connection authenticated' line of backend `pid`."""
    pat = re.compile(rf"\[{pid}\].*connection authenticated: identity=\"{re.escape(user)}\" "
                     rf"method={re.escape(method)}")
    return wait_until(lambda: next((ln for ln in log_since(pg, offset).splitlines() if pat.search(ln)), None),
                      5, message=f"log line: backend {pid} authenticated {user} with {method}")


def lookup_backends(pg, since):
    return pg.sql("SELECT pid, usename FROM pg_stat_activity WHERE application_name = 'pgmedic auth_query' "
                  "AND backend_start >= %s", (since,), dbname="postgres")


def authq_settings(query=LOOKUP, **extra):
    s = {"auth_user": AUTH_USER, "auth_query": query}
    s.update(extra)
    return s


# ------------------------------------------------------------------ 1. SCRAM end to end

@pytest.mark.parametrize("auth_user_password_in", ["auth_file", "url"])
def test_scram_via_auth_query_without_stored_passwords(authq, pgmedic, auth_user_password_in):
    """PgBouncer #1186: SCRAM client auth with auth_query, SCRAM pass-through upstream.
    pgmedic holds only pgmedic_auth's password (in the auth file, or in the upstream
    URL whose user it is); app_scram's password and secret are nowhere in its files."""
    pg = authq
    t_start = pg.sql("SELECT now()", dbname="postgres")[0][0]
    if auth_user_password_in == "auth_file":
        af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
        af.chmod(0o600)
        px = pgmedic(auth_type="scram-sha-256", auth_file=af, pool_size=1, settings=authq_settings())
    else:
        px = pgmedic(auth_type="scram-sha-256", pool_size=1, settings=authq_settings(),
                     upstream=pg.url(user=AUTH_USER, password=AUTH_PASSWORD))
    off = log_offset(pg)

    assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
    c1 = px.connect(user=SCRAM_USER, password=SCRAM_PASSWORD)
    user, pid = one(c1, "SELECT current_user, pg_backend_pid()")
    assert user == SCRAM_USER
    assert one(c1, "SELECT count(*) FROM pg_class WHERE relname = 'pg_class'")[0] == 1
    # The backend is app_scram's, over TCP from 127.0.0.1 where pg_hba demands SCRAM:
    # pgmedic, with no password for app_scram, logged in by SCRAM pass-through.
    act = pg.sql("SELECT usename, host(client_addr), application_name FROM pg_stat_activity WHERE pid = %s",
                 (pid,), dbname="postgres")
    assert act and act[0][0] == SCRAM_USER and act[0][1] == "127.0.0.1", act
    authenticated_line(pg, off, pid, SCRAM_USER, "scram-sha-256")
    # The lookup connection: pgmedic_auth, also authenticated with SCRAM.
    lk = lookup_backends(pg, t_start)
    assert [u for _, u in lk] == [AUTH_USER], lk
    authenticated_line(pg, off, lk[0][0], AUTH_USER, "scram-sha-256")
    c1.close()

    # A second client (new connection) logs in too and gets the pooled backend.
    c2 = px.connect(user=SCRAM_USER, password=SCRAM_PASSWORD)
    assert one(c2, "SELECT current_user, pg_backend_pid()") == (SCRAM_USER, pid)
    c2.close()

    # Wrong password and unknown user: the same 28P01, after a full SCRAM exchange.
    wrong, _ = login_error(px, SCRAM_USER, "wrong-password")
    unknown, _ = login_error(px, "no_such_user_xyz", "whatever")
    assert wrong.sqlstate == "28P01" and unknown.sqlstate == "28P01", (wrong, unknown)
    assert wrong.fields.get("S") == unknown.fields.get("S") == "FATAL"
    assert unknown.message.replace("no_such_user_xyz", SCRAM_USER) == wrong.message, (wrong, unknown)
    with px.raw() as c:  # the unknown user is offered SCRAM like anyone else
        c.send(pgwire.startup_packet({"user": "no_such_user_xyz", "database": DB}))
        kind, payload = c.read_msg()
        assert kind == b"R" and struct.unpack("!I", payload[:4])[0] == pgwire.AUTH_SASL, (kind, payload)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        px.connect(user=SCRAM_USER, password="wrong-password")

    # Still one lookup connection for all of it.
    assert len(lookup_backends(pg, t_start)) == 1
    assert px.alive()

    # Nothing pgmedic was given holds app_scram's password or any of its secret.
    secret = pg.role_secret(SCRAM_USER)
    stored_key_b64 = secret.split("$")[2].split(":")[0]
    needles = [SCRAM_PASSWORD, secret, stored_key_b64, secret.split("$")[1].split(":")[1]]
    files = [f for f in px.workdir.iterdir() if f.is_file()]
    assert files, "no files written?"
    for f in files:
        text = f.read_text(errors="replace")
        for needle in needles:
            assert needle not in text, f"{needle!r} found in {f}"
    for needle in needles:
        assert not any(needle in a for a in px.argv), px.argv
    if auth_user_password_in == "auth_file":
        assert [ln for ln in (px.workdir / "userlist.txt").read_text().splitlines() if ln.strip()] == \
            [f'"{AUTH_USER}" "{AUTH_PASSWORD}"']


# ------------------------------------------------------------------ 2. md5

def test_md5_via_auth_query(authq, pgmedic):
    """auth_type md5: app_md5's md5 hash comes from pg_shadow; pgmedic checks the
    client's md5 response with it and logs in upstream with md5 from the hash alone.
    Configured through an ini file this time (grepped for app_md5's password too)."""
    pg = authq
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="md5", auth_file=af, pool_size=1, use_config=True, settings=authq_settings())
    off = log_offset(pg)
    assert login_method(px, MD5_USER, MD5_PASSWORD) == pgwire.AUTH_MD5
    c = px.connect(user=MD5_USER, password=MD5_PASSWORD)
    user, pid = one(c, "SELECT current_user, pg_backend_pid()")
    assert user == MD5_USER
    authenticated_line(pg, off, pid, MD5_USER, "md5")
    err, _ = login_error(px, MD5_USER, "wrong-password")
    assert err.sqlstate == "28P01", err
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        px.connect(user=MD5_USER, password="wrong-password")
    # A SCRAM secret cannot answer an md5 challenge: like PostgreSQL, pgmedic asks
    # app_scram for SCRAM even under auth_type md5, and pass-through works.
    assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
    unknown, _ = login_error(px, "no_such_user_xyz", "whatever")
    assert unknown.sqlstate == "28P01", unknown
    for f in px.workdir.iterdir():
        if f.is_file():
            text = f.read_text(errors="replace")
            assert MD5_PASSWORD not in text and pg.role_secret(MD5_USER) not in text, f


# ------------------------------------------------------------------ 3. failures

def test_auth_user_wrong_password_is_a_clear_error(authq, pgmedic):
    af = pgmedic.write_auth_file({AUTH_USER: "not-the-password"})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af, settings=authq_settings())
    for _ in range(2):  # the failed lookup connection is dropped and retried
        err, took = login_error(px, SCRAM_USER, SCRAM_PASSWORD)
        assert err.fields.get("S") == "FATAL" and err.sqlstate == "08006", err
        assert "auth_query" in err.message, err
        assert "password authentication failed" in err.message, err
        assert took < 5, f"took {took:.1f}s"
    with pytest.raises(psycopg2.OperationalError, match="auth_query"):
        px.connect(user=SCRAM_USER, password=SCRAM_PASSWORD)
    assert px.alive()


def test_auth_query_missing_function_is_a_clear_error(authq, pgmedic):
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af,
                 settings=authq_settings("SELECT usename, passwd FROM no_such_lookup($1)"))
    for _ in range(2):  # the lookup connection survives a failed query
        err, took = login_error(px, SCRAM_USER, SCRAM_PASSWORD)
        assert err.sqlstate == "08006" and "auth_query" in err.message, err
        assert "no_such_lookup" in err.message and "does not exist" in err.message, err
        assert took < 5, f"took {took:.1f}s"
    assert px.alive()


def test_auth_dbname(authq, pgmedic):
    """The lookup function exists in pgmedic_test only: clients of another database
    need auth_dbname = pgmedic_test; without it their lookup fails clearly."""
    pg = authq
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af, settings=authq_settings(auth_dbname=DB))
    assert login_method(px, SCRAM_USER, SCRAM_PASSWORD, dbname=OTHER_DB) == pgwire.AUTH_SASL
    c = px.connect(user=SCRAM_USER, password=SCRAM_PASSWORD, dbname=OTHER_DB)
    assert one(c, "SELECT current_database(), current_user") == (OTHER_DB, SCRAM_USER)
    px2 = pgmedic(auth_type="scram-sha-256", auth_file=af, settings=authq_settings())
    err, _ = login_error(px2, SCRAM_USER, SCRAM_PASSWORD, dbname=OTHER_DB)
    assert err.sqlstate == "08006" and "auth_query" in err.message and "pgmedic_lookup" in err.message, err
    assert pg.sql("SELECT 1", dbname=OTHER_DB) == [(1,)]


class Forwarder:
    """A TCP relay in front of PostgreSQL that a test can take down ("down": nothing
    listens, every relayed connection is cut) or make unresponsive ("silent": accepts
    connections and never answers, like a hung or black-holed server)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = free_port()
        self.mode = "forward"
        self.socks = []
        self.lock = threading.Lock()
        self.listener = None
        self.running = False
        self.thread = None

    def up(self, mode="forward"):
        self.mode = mode
        if self.listener is None:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", self.port))
            ls.listen(64)
            ls.settimeout(0.1)
            self.listener = ls
            self.running = True
            self.thread = threading.Thread(target=self._accept_loop, args=(ls,), daemon=True)
            self.thread.start()
        return self

    def _accept_loop(self, ls):
        while self.running:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.socks.append(c)
            if self.mode == "silent":
                continue
            try:
                s = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                c.close()
                continue
            s.settimeout(None)
            c.settimeout(None)
            with self.lock:
                self.socks.append(s)
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut_connections(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def down(self):
        self.running = False
        if self.thread:
            self.thread.join(2)
        if self.listener:
            self.listener.close()
            self.listener = None
        self.cut_connections()


@pytest.fixture
def forwarder(authq):
    f = Forwarder(authq.port)
    yield f
    f.down()


def test_postgres_down_is_a_clear_error_and_recovers(authq, pgmedic, forwarder):
    """PostgreSQL goes away (connections cut, nothing listening): a client gets a clear
    08006 within a few seconds; when it is back, logins work again."""
    pg = authq
    forwarder.up()
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af, settings=authq_settings(),
                 upstream=f"postgresql://postgres@127.0.0.1:{forwarder.port}/{DB}")
    assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
    forwarder.down()
    for _ in range(2):
        err, took = login_error(px, SCRAM_USER, SCRAM_PASSWORD)
        assert err.sqlstate == "08006" and "auth_query" in err.message, err
        assert took < 5, f"took {took:.1f}s"
    forwarder.up()
    assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
    assert px.alive()
    assert pg.sql("SELECT 1") == [(1,)]


def test_unresponsive_postgres_does_not_wedge_auth_query(authq, pgmedic, forwarder):
    """PostgreSQL accepts TCP connections but never answers (hung, or a black hole on
    the way).  Expected: the lookup is bounded like any server login
    (server_connect_timeout), the client gets a clear error naming auth_query, and
    once PostgreSQL answers again new logins work."""
    forwarder.up(mode="silent")
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af,
                 settings=authq_settings(server_connect_timeout=2, client_login_timeout=4),
                 upstream=f"postgresql://postgres@127.0.0.1:{forwarder.port}/{DB}")
    problems = []
    err, took = login_error(px, SCRAM_USER, SCRAM_PASSWORD, timeout=10)
    if not (err.sqlstate == "08006" and "auth_query" in err.message and took < 5):
        problems.append(f"while PostgreSQL hung: after {took:.1f}s the client got {err} "
                        "(expected a quick 08006 naming auth_query)")
    # PostgreSQL answers again (new connections only; the stuck ones stay stuck, as
    # a black-holed TCP connection would).
    forwarder.mode = "forward"
    t0 = time.monotonic()
    try:
        login_method(px, SCRAM_USER, SCRAM_PASSWORD, timeout=10)
    except (pgwire.ServerError, socket.timeout, pgwire.Closed) as e:
        problems.append(f"after PostgreSQL recovered: login failed after {time.monotonic() - t0:.1f}s "
                        f"with {type(e).__name__}: {e} (auth_query stays wedged)")
    assert not problems, "\n".join(problems)


def test_lookup_connection_killed_by_server(authq, pgmedic):
    """The DBA (or idle_session_timeout) ends pgmedic's idle lookup connection: the next
    logins open a new one, right away or a moment later."""
    pg = authq
    t_start = pg.sql("SELECT now()", dbname="postgres")[0][0]
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af, settings=authq_settings())
    killed = set()
    for wait in (0.3, 0):
        assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
        lk = [pid for pid, _ in lookup_backends(pg, t_start) if pid not in killed]
        assert len(lk) == 1, lk
        pg.sql("SELECT pg_terminate_backend(%s)", (lk[0],))
        killed.add(lk[0])
        time.sleep(wait)
        try:
            login_method(px, SCRAM_USER, SCRAM_PASSWORD)
        except pgwire.ServerError as e:
            # Tolerated only right after the kill (the lookup raced the FATAL): it must
            # be a clear auth_query error, and the login after it must work.
            assert wait == 0 and e.sqlstate == "08006" and "auth_query" in e.message, e
            assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
    assert px.alive()


def test_sigterm_during_lookup(authq, pgmedic):
    """SIGTERM while a lookup is running: a clean exit (code 0, no sanitizer report)."""
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af,
                 settings=authq_settings("SELECT l.usename, l.passwd FROM pg_sleep(3) s, pgmedic_lookup($1) l"))
    c = px.raw()
    c.send(pgwire.startup_packet({"user": SCRAM_USER, "database": DB}))
    time.sleep(0.5)
    assert px.stop(signal.SIGTERM, timeout=8) == 0
    c.close()
    assert px.sanitizer_report() is None


class FakeLookupServer:
    """Speaks just enough of the protocol to serve auth_query: trust login, then the
    extended-protocol answer to PQsendQueryParams with a pause between CommandComplete
    and ReadyForQuery (two TCP segments, as a slow or lossy network may deliver them)."""

    def __init__(self, usename, secret, pause):
        self.usename, self.secret, self.pause = usename, secret, pause
        self.port = free_port()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(8)
        self.ls.settimeout(0.2)
        self.paused = threading.Event()
        self.running = True
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _msg(kind, body=b""):
        return kind + struct.pack("!I", len(body) + 4) + body

    @staticmethod
    def _recv(c, n):
        data = b""
        while len(data) < n:
            chunk = c.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _serve(self):
        while self.running:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c):
        try:
            c.settimeout(10)
            while True:  # SSLRequest / GSSENCRequest: no; then the startup packet
                (n,) = struct.unpack("!I", self._recv(c, 4))
                body = self._recv(c, n - 4)
                if struct.unpack("!I", body[:4])[0] in (pgwire.SSL_REQUEST_CODE, pgwire.GSSENC_REQUEST_CODE):
                    c.sendall(b"N")
                    continue
                break
            c.sendall(self._msg(b"R", struct.pack("!I", 0)) +
                      self._msg(b"S", b"server_version\x0015.0\x00") +
                      self._msg(b"S", b"client_encoding\x00UTF8\x00") +
                      self._msg(b"S", b"standard_conforming_strings\x00on\x00") +
                      self._msg(b"K", struct.pack("!II", 4242, 4343)) + self._msg(b"Z", b"I"))
            while True:
                kind = self._recv(c, 1)
                (n,) = struct.unpack("!I", self._recv(c, 4))
                self._recv(c, n - 4)
                if kind == b"X":
                    return
                if kind != b"S":
                    continue
                field = lambda name: name + b"\x00" + struct.pack("!IhIhih", 0, 0, 25, -1, -1, 0)
                cols = [self.usename.encode(), self.secret.encode()]
                row = struct.pack("!h", 2) + b"".join(struct.pack("!i", len(v)) + v for v in cols)
                c.sendall(self._msg(b"1") + self._msg(b"2") +
                          self._msg(b"T", struct.pack("!h", 2) + field(b"usename") + field(b"passwd")) +
                          self._msg(b"D", row) + self._msg(b"C", b"SELECT 1\x00"))
                self.paused.set()
                time.sleep(self.pause)
                c.sendall(self._msg(b"Z", b"I"))
        except (OSError, EOFError):
            pass

    def close(self):
        self.running = False
        self.thread.join(2)
        self.ls.close()
        for c in self.conns:
            c.close()


def test_lookup_answer_split_across_packets_does_not_block(authq, pgmedic):
    """The lookup's result arrives, ReadyForQuery a little later (another TCP segment).
    pgmedic must keep serving everyone else meanwhile (one event loop: a blocking libpq
    call there would stall the whole proxy), and the login completes."""
    pg = authq
    fake = FakeLookupServer(SCRAM_USER, pg.role_secret(SCRAM_USER), pause=2.5)
    try:
        af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
        px = pgmedic(auth_type="scram-sha-256", auth_file=af, upstream="",
                     databases={DB: f"host=127.0.0.1 port={pg.port} dbname={DB}",
                                "authdb": f"host=127.0.0.1 port={fake.port} dbname=authdb"},
                     settings=authq_settings(auth_dbname="authdb"))
        outcome = []

        def login():
            try:
                outcome.append(login_method(px, SCRAM_USER, SCRAM_PASSWORD, timeout=10))
            except Exception as e:  # noqa: BLE001 - reported below
                outcome.append(e)
        t = threading.Thread(target=login)
        t.start()
        assert fake.paused.wait(5), "the lookup never reached the fake server"
        time.sleep(0.2)
        t0 = time.monotonic()
        px.metrics_text(timeout=10)
        stalled = time.monotonic() - t0
        t.join(15)
        assert stalled < 1.0, (f"/metrics took {stalled:.1f}s while the lookup waited for ReadyForQuery: "
                               "the event loop was blocked")
        assert outcome == [pgwire.AUTH_SASL], outcome
    finally:
        fake.close()


# ------------------------------------------------------------------ 4. concurrency

def test_concurrent_logins_share_one_lookup_connection(authq, pgmedic):
    pg = authq
    t_start = pg.sql("SELECT now()", dbname="postgres")[0][0]
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af, pool_size=4, settings=authq_settings())
    n = 20
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def client(i):
        try:
            barrier.wait(10)
            conn = px.connect(user=SCRAM_USER, password=SCRAM_PASSWORD)
            results[i] = one(conn, "SELECT current_user")[0]
            conn.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert results == [SCRAM_USER] * n
    assert time.monotonic() - t0 < 15
    lk = lookup_backends(pg, t_start)
    assert len(lk) == 1, f"lookups should queue on one connection: {lk}"
    assert px.alive()


# ------------------------------------------------------------------ 5. disconnects

def _startup_then_close(px, delay):
    c = px.raw()
    c.send(pgwire.startup_packet({"user": SCRAM_USER, "database": DB}))
    if delay:
        time.sleep(delay)
    c.close()


def test_client_leaving_during_lookup(authq, pgmedic):
    """Clients that disconnect while their lookup is queued or running (or while the
    lookup connection is still being opened) leave pgmedic intact (ASan build: the
    fixture fails the test on any sanitizer report), and others still log in."""
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af, settings=authq_settings(SLOW_LOOKUP))
    _startup_then_close(px, 0)        # lookup connection still connecting
    _startup_then_close(px, 0.3)      # first lookup running (pg_sleep)
    for _ in range(5):
        _startup_then_close(px, 0)    # queued behind it
    leaver = px.raw()                 # left mid-lookup, a moment later
    leaver.send(pgwire.startup_packet({"user": SCRAM_USER, "database": DB}))
    time.sleep(0.1)
    leaver.close()
    assert px.alive()
    t0 = time.monotonic()
    assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
    assert time.monotonic() - t0 < 5
    # Abandoned requests are skipped rather than run: at most the one in flight
    # delays the next login.
    for _ in range(5):
        _startup_then_close(px, 0)
    t0 = time.monotonic()
    assert login_method(px, SCRAM_USER, SCRAM_PASSWORD) == pgwire.AUTH_SASL
    assert time.monotonic() - t0 < 2.5

    # A client_login_timeout expiring during a lookup is the same situation.
    px2 = pgmedic(auth_type="scram-sha-256", auth_file=af,
                  settings=authq_settings("SELECT l.usename, l.passwd FROM pg_sleep(2) s, pgmedic_lookup($1) l",
                                          client_login_timeout=1))
    err, took = login_error(px2, SCRAM_USER, SCRAM_PASSWORD)
    assert err.sqlstate == "08006" and "client_login_timeout" in err.message, err
    assert px.alive() and px2.alive()


# ------------------------------------------------------------------ password rotation

@pytest.mark.parametrize("role,method,old,new", [
    (ROT_SCRAM, "scram-sha-256", "rot-scram-1", "rot-scram-2"),
    (ROT_MD5, "md5", "rot-md5-1", "rot-md5-2"),
])
def test_password_change_in_postgres(authq, pgmedic, role, method, old, new):
    """The password changes in PostgreSQL while pgmedic runs (nothing to update in
    pgmedic: that is the point of auth_query).  The old password stops working at
    once; the new one works, including for a server connection opened after the
    change (which must use the new secret upstream, not one cached from before)."""
    pg = authq
    af = pgmedic.write_auth_file({AUTH_USER: AUTH_PASSWORD})
    # query_wait_timeout: a client whose server cannot be logged in fails in 3 s
    # instead of waiting for the busy server connection #1.
    px = pgmedic(auth_type="md5" if method == "md5" else "scram-sha-256", auth_file=af, pool_size=2,
                 settings=authq_settings(query_wait_timeout=3))
    ca = px.connect(user=role, password=old)
    with ca.cursor() as cur:  # holds server connection #1 (transaction mode)
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == role
    conn = pg.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"SET password_encryption = '{'md5' if method == 'md5' else 'scram-sha-256'}'")
        cur.execute(f"ALTER ROLE {role} PASSWORD %s", (new,))
    conn.close()
    err, _ = login_error(px, role, old)
    assert err.sqlstate == "28P01", err
    off = log_offset(pg)
    with px.raw(timeout=10) as cb:
        cb.startup(role, DB, new)  # pgmedic accepts the new password (fresh lookup)...
        cb.send(pgwire.query_message("SELECT current_user, pg_backend_pid()"))  # ...and needs server #2
        rows, error = [], None
        try:
            while True:
                kind, payload = cb.read_msg()
                if kind == b"D":
                    rows.append(payload)
                elif kind == b"E":
                    error = pgwire.ServerError(pgwire.parse_error_fields(payload))
                elif kind == b"Z":
                    break
        except pgwire.Closed:
            pass
    if error or not rows:
        refused = [ln for ln in px.stderr_text().splitlines() if "refused login" in ln]
        pytest.fail(f"{role}: pgmedic accepted the new password, but the query got {error}; pgmedic's "
                    f"refused server logins after the change ({len(refused)}):\n" + "\n".join(refused[:3]) +
                    "\nPostgreSQL log:\n" + "\n".join(log_since(pg, off).splitlines()[:4]))
    conn2 = px.connect(user=role, password=new)
    got = one(conn2, "SELECT current_user, pg_backend_pid()")
    assert got[0] == role
    authenticated_line(pg, off, got[1], role, method)
    ca.rollback()
