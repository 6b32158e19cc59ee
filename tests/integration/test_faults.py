"""Faults around pgmedic: clients that die mid-transaction, backends terminated
under a client, PostgreSQL restarting under load, an upstream that refuses or
never answers, an exhausted pool (FIFO order, query_wait_timeout), a client that
stops reading a large result, and cancel requests that must reach only the
backend of the client that sent them.

Each test gets a database of its own (so pg_stat_activity shows exactly
pgmedic's server connections); the restart test runs its own cluster."""
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

import pgwire
from conftest import DB, MAIN_HBA, PG_BIN, PgCluster, free_port, kv_dsn, run_as_postgres, wait_until

SUPERUSER = "postgres"


# ------------------------------------------------------------------ helpers

def fresh_db(pg, name):
    """A database of this test's own; PostgreSQL drops nothing between runs, so
    tables are (re)created by the tests."""
    return pg.ensure_db(name)


def backends(cluster, db):
    """(pid, state, application_name) of the client backends connected to db."""
    return cluster.sql("SELECT pid, state, application_name FROM pg_stat_activity "
                       "WHERE datname = %s AND backend_type = 'client backend' "
                       "AND application_name <> 'pgmedic-advisor' ORDER BY pid",
                       (db,), dbname="postgres")


def pool_servers(px, db, state=None):
    m = px.metrics()
    labels = {"database": db, "user": SUPERUSER}
    if state:
        labels["state"] = state
    return int(m.get("pgmedic_servers", default=0, **labels))


def pool_clients(px, db, state):
    return int(px.metrics().get("pgmedic_clients", default=0, database=db, user=SUPERUSER, state=state))


def dsn(px, db, **kw):
    kw.setdefault("connect_timeout", 10)
    return kv_dsn(host="127.0.0.1", port=px.port, dbname=db, user=SUPERUSER, **kw)


def run_one(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


class TxLoop:
    """n threads, each on its own connection through pgmedic, running short
    transactions until stopped; records every success and failure with a
    timestamp.  With reconnect=True a thread whose connection broke opens a new
    one and carries on; otherwise it stops at its first error."""

    def __init__(self, px, db, n, table=None, reconnect=False, pause=0.005, sleep=0.0):
        self.px, self.db, self.table, self.sleep = px, db, table, sleep
        self.reconnect, self.pause = reconnect, pause
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = []        # (t, thread index)
        self.failed = []    # (t, thread index, "Type: message")
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _connect(self):
        return psycopg2.connect(dsn(self.px, self.db, connect_timeout=5, application_name="loop"))

    def _run(self, i):
        conn = None
        while not self.stop_flag.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                with conn.cursor() as cur:
                    if self.table:
                        cur.execute(f"INSERT INTO {self.table} (who) VALUES (%s)", (i,))
                    if self.sleep:
                        cur.execute("SELECT pg_sleep(%s)", (self.sleep,))
                    cur.execute("SELECT 1")
                    assert cur.fetchone() == (1,)
                conn.commit()
                with self.lock:
                    self.ok.append((time.monotonic(), i))
            except psycopg2.Error as e:
                with self.lock:
                    self.failed.append((time.monotonic(), i, f"{type(e).__name__}: {str(e).strip()}"))
                if conn is not None:
                    conn.close()
                    conn = None
                if not self.reconnect:
                    return
                time.sleep(0.05)
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def successes_after(self, t, i=None):
        with self.lock:
            return sum(1 for ts, j in self.ok if ts > t and (i is None or j == i))

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(20)
        assert not any(t.is_alive() for t in self.threads), "a load thread hung"


# ------------------------------------------------------------------ 1. client killed mid-transaction

KILLED_CLIENT = r"""
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()           # psycopg2 opens a transaction on the first statement
cur.execute("UPDATE " + sys.argv[2] + " SET v = 'dirty' WHERE id = 1")
cur.execute("INSERT INTO " + sys.argv[2] + " VALUES (2, 'uncommitted')")
print("ready", flush=True)
sys.stdin.read()              # until killed
"""


def _open_tx_and_die(px, db, t, how):
    """Opens a transaction through pgmedic that locks row 1 and inserts row 2,
    checks PostgreSQL sees it idle in transaction, then kills the client."""
    if how == "sigkill":
        proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, dsn(px, db), t],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.strip() == "ready", f"client did not get going: {line!r} {proc.stderr.read()}"
            wait_until(lambda: any(s == "idle in transaction" for _, s, _ in backends(px.pg, db)), timeout=5,
                       message="the client's backend idle in transaction")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdin.close()
            proc.stdout.close()
            proc.stderr.close()
    else:  # "rst" or "shutdown": a raw protocol client that vanishes
        c = px.raw()
        c.startup(SUPERUSER, db)
        c.simple_query(f"BEGIN; UPDATE {t} SET v = 'dirty' WHERE id = 1; INSERT INTO {t} VALUES (2, 'uncommitted')")
        wait_until(lambda: any(s == "idle in transaction" for _, s, _ in backends(px.pg, db)), timeout=5,
                   message="the client's backend idle in transaction")
        if how == "rst":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            c.sock.shutdown(socket.SHUT_RDWR)
        c.close()


@pytest.mark.timeout_s(40)
@pytest.mark.parametrize("pool_mode,how", [("transaction", "sigkill"), ("transaction", "rst"),
                                           ("transaction", "shutdown"), ("session", "sigkill")])
def test_client_killed_mid_transaction(pg, pgmedic, pool_mode, how):
    db = fresh_db(pg, "pgmedic_faults_kill")
    t = f"kill_{pool_mode}_{how}"
    pg.sql(f"DROP TABLE IF EXISTS {t}", dbname=db)
    pg.sql(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)", dbname=db)
    pg.sql(f"INSERT INTO {t} VALUES (1, 'clean')", dbname=db)
    # pool_size 1: the next client can only be served once the dead client's
    # server connection is rolled back or replaced.
    px = pgmedic(pool_mode=pool_mode, pool_size=1, upstream=pg.url(dbname=db),
                 settings={"query_wait_timeout": 5})

    _open_tx_and_die(px, db, t, how)

    def nothing_idle_in_tx():
        return not [b for b in backends(pg, db) if b[1].startswith("idle in transaction")]

    wait_until(nothing_idle_in_tx, timeout=5, interval=0.1,
               message=f"no backend of {db} idle in transaction after the client died "
                       f"(backends: {backends(pg, db)})")

    other = px.connect(dbname=db)
    t0 = time.monotonic()
    with other.cursor() as cur:
        cur.execute(f"SELECT id, v FROM {t} ORDER BY id")
        assert cur.fetchall() == [(1, "clean")], "the dead client's uncommitted work is visible"
        cur.execute(f"SELECT v FROM {t} WHERE id = 1 FOR UPDATE NOWAIT")  # 55P03 if still locked
        assert cur.fetchone() == ("clean",)
        cur.execute("SET LOCAL lock_timeout = '1s'")
        cur.execute(f"INSERT INTO {t} VALUES (2, 'mine')")  # blocks if the dead insert is pending
    other.commit()
    assert time.monotonic() - t0 < 2, "the next client was not served at once"
    assert pg.sql(f"SELECT id, v FROM {t} ORDER BY id", dbname=db) == [(1, "clean"), (2, "mine")]
    assert px.alive()


# ------------------------------------------------------------------ 2. backend terminated under a client

@pytest.mark.timeout_s(40)
def test_backend_terminated_mid_transaction(pg, pgmedic):
    db = fresh_db(pg, "pgmedic_faults_term")
    pg.sql("DROP TABLE IF EXISTS term", dbname=db)
    pg.sql("CREATE TABLE term (id serial PRIMARY KEY, who int)", dbname=db)
    px = pgmedic(pool_mode="transaction", pool_size=4, upstream=pg.url(dbname=db),
                 settings={"query_wait_timeout": 5})

    # Two victims hold a server each: one inside pg_sleep, one idle in transaction.
    sleeper = px.connect(dbname=db, application_name="victim_sleep")
    idler = px.connect(dbname=db, application_name="victim_idle")
    run_one(idler, "INSERT INTO term (who) VALUES (-1)")
    outcome = {}

    def sleep_in_tx():
        try:
            run_one(sleeper, "INSERT INTO term (who) VALUES (-2)")
            run_one(sleeper, "SELECT pg_sleep(20)")
            outcome["result"] = "sleep returned"
        except Exception as e:  # noqa: BLE001 - judged below
            outcome["error"] = e
        outcome["t"] = time.monotonic()

    th = threading.Thread(target=sleep_in_tx, daemon=True)
    th.start()
    # Everyone else: two clients looping on short transactions over the other two servers.
    load = TxLoop(px, db, 2, table="term")
    try:
        def victim_pids():
            rows = backends(pg, db)
            pids = {app: pid for pid, _, app in rows if app in ("victim_sleep", "victim_idle")}
            return pids if len(pids) == 2 else None

        pids = wait_until(victim_pids, timeout=5, message="both victims' backends in pg_stat_activity")
        wait_until(lambda: load.successes_after(0) >= 10, timeout=5, message="load running")
        t_kill = time.monotonic()
        assert pg.sql("SELECT pg_terminate_backend(%s), pg_terminate_backend(%s)",
                      (pids["victim_sleep"], pids["victim_idle"]), dbname="postgres") == [(True, True)]

        th.join(5)
        assert not th.is_alive(), "client whose backend was terminated during pg_sleep is still waiting after 5s"
        assert "error" in outcome, f"terminated client got no error: {outcome}"
        err = outcome["error"]
        assert isinstance(err, psycopg2.OperationalError), f"{type(err).__name__}: {err}"
        assert outcome["t"] - t_kill < 1.5, f"error came {outcome['t'] - t_kill:.2f}s after the termination"

        time.sleep(0.3)
        with pytest.raises(psycopg2.OperationalError):
            run_one(idler, "SELECT 1")

        # The others carried on, without a single error.
        t_after = time.monotonic()
        wait_until(lambda: load.successes_after(t_after) >= 20, timeout=5,
                   message="load clients still completing transactions after the termination")
    finally:
        load.stop()
    assert not load.failed, f"other clients saw errors: {load.failed[:5]}"
    assert pg.sql("SELECT count(*) FROM term WHERE who < 0", dbname=db)[0][0] == 0, \
        "a terminated transaction's row was committed"

    # The pool replaces the dead connections: four transactions at once get four
    # distinct, live backends (none of them the terminated ones), without waiting.
    wait_until(lambda: not [b for b in backends(pg, db) if b[0] in pids.values()], timeout=5,
               message="terminated backends gone")
    conns = [px.connect(dbname=db) for _ in range(4)]
    t0 = time.monotonic()
    got = [run_one(c, "SELECT pg_backend_pid()")[0][0] for c in conns]  # each stays in its transaction
    assert time.monotonic() - t0 < 3, "pool did not grow back to 4 server connections promptly"
    assert len(set(got)) == 4, got
    assert not set(got) & set(pids.values()), (got, pids)
    assert pool_servers(px, db, "active") == 4
    for c in conns:
        c.commit()
    assert pool_servers(px, db, "login") == 0
    assert pool_servers(px, db) == len(backends(pg, db)), \
        f"pgmedic counts {pool_servers(px, db)} servers, PostgreSQL has {backends(pg, db)}"


# ------------------------------------------------------------------ 3. PostgreSQL restart under load

@pytest.fixture(scope="module")
def own_pg():
    """A cluster this module may restart and stop."""
    cluster = PgCluster("faults").start()
    try:
        cluster.sql(f'CREATE DATABASE "{DB}"', dbname="postgres")
        yield cluster
    finally:
        cluster.stop()


def pg_ctl(cluster, *args):
    # -l: the restarted postmaster must not inherit pg_ctl's stdout pipe.
    return run_as_postgres([PG_BIN / "pg_ctl", "-D", cluster.datadir, "-l", cluster.logfile, "-w", "-t", "30",
                            *args], cwd=cluster.base)


@pytest.mark.timeout_s(60)
def test_postgres_restart_under_load(own_pg, pgmedic):
    own_pg.sql("DROP TABLE IF EXISTS restart_load")
    own_pg.sql("CREATE TABLE restart_load (id serial PRIMARY KEY, who int)")
    px = pgmedic(pool_mode="transaction", pool_size=3, upstream=own_pg.url(),
                 settings={"query_wait_timeout": 5, "server_connect_timeout": 2})
    n = 5
    # Transactions that sleep a little: some are always running when the fast
    # shutdown terminates the backends.
    load = TxLoop(px, DB, n, table="restart_load", reconnect=True, pause=0.01, sleep=0.05)
    try:
        wait_until(lambda: all(load.successes_after(0, i) for i in range(n)), timeout=10,
                   message="every load client has committed once")
        t_restart = time.monotonic()
        pg_ctl(own_pg, "-m", "fast", "restart")
        t_back = time.monotonic()
        assert own_pg.sql("SELECT 1") == [(1,)]

        def all_recovered():
            return all(load.successes_after(t_back, i) for i in range(n))

        try:
            wait_until(all_recovered, timeout=5, interval=0.05,
                       message="every load client committing again after PostgreSQL came back")
        except AssertionError:
            with load.lock:
                late = [f for f in load.failed if f[0] > t_back]
            raise AssertionError(f"not every client recovered within 5s of the restart (took "
                                 f"{t_back - t_restart:.1f}s); failures since: {late[-8:]}")
        recovered_in = time.monotonic() - t_back
        time.sleep(1.0)
        t_steady = time.monotonic()
        time.sleep(1.0)
    finally:
        load.stop()
    with load.lock:
        failed = list(load.failed)
    during = [f for f in failed if f[0] >= t_restart]
    assert during, "no client noticed the restart: the test did not exercise anything"
    steady_failures = [f for f in failed if f[0] > t_steady]
    assert not steady_failures, f"clients still failing 1s after recovery: {steady_failures[:5]}"
    assert load.successes_after(t_steady) > 10
    assert recovered_in < 5
    # pgmedic's servers are live ones again and its count matches PostgreSQL's.
    assert pool_servers(px, DB, "login") == 0
    assert 1 <= pool_servers(px, DB) <= 3
    assert pool_servers(px, DB) == len(backends(own_pg, DB)), \
        f"pgmedic counts {pool_servers(px, DB)} servers, PostgreSQL has {backends(own_pg, DB)}"
    c = px.connect()
    assert run_one(c, "SELECT count(*) > 0 FROM restart_load") == [(True,)]
    c.commit()
    assert px.alive()


OUTAGE_S = 2.0


@pytest.mark.timeout_s(60)
def test_postgres_down_for_a_while(own_pg, pgmedic):
    """PostgreSQL is down for 2 s while clients ask for servers: pgmedic retries
    at a bounded rate (not a connect storm), clients either get an error or are
    served once it is back, and nobody hangs."""
    px = pgmedic(pool_mode="transaction", pool_size=3, upstream=own_pg.url(),
                 settings={"query_wait_timeout": 10, "server_connect_timeout": 2})
    clients = [px.connect() for _ in range(3)]
    for c in clients:
        c.autocommit = True
        assert run_one(c, "SELECT 1") == [(1,)]
    pg_ctl(own_pg, "-m", "fast", "stop")
    try:
        before = px.metrics().get("pgmedic_server_connects_total", database=DB, user=SUPERUSER)
        out = {}

        def ask(i):
            try:
                out[i] = ("ok", run_one(clients[i], "SELECT 1"), time.monotonic())
            except psycopg2.Error as e:
                out[i] = ("error", f"{type(e).__name__}: {str(e).strip()}", time.monotonic())

        threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(3)]
        for th in threads:
            th.start()
        time.sleep(OUTAGE_S)
        attempts = px.metrics().get("pgmedic_server_connects_total", database=DB, user=SUPERUSER) - before
    finally:
        pg_ctl(own_pg, "start")
    t_up = time.monotonic()
    for th in threads:
        th.join(10)
    assert len(out) == 3, f"clients still waiting 10s after PostgreSQL came back: {out}"
    for i, (what, detail, t) in out.items():
        if what == "ok":
            assert t - t_up < 5, f"client {i} served {t - t_up:.1f}s after PostgreSQL came back"
        else:
            assert "connect" in detail.lower() or "server" in detail.lower(), detail
    # A reconnect attempt every few milliseconds is a storm against a server that is
    # restarting (PgBouncer waits server_login_retry between failed logins).
    rate = attempts / OUTAGE_S
    assert attempts <= 50, (f"pgmedic opened {attempts:.0f} upstream connections in {OUTAGE_S}s of outage "
                            f"({rate:.0f}/s); results: {out}")

    def works():
        try:
            c = px.connect()
            ok = run_one(c, "SELECT 42") == [(42,)]
            c.commit()
            return ok
        except psycopg2.Error:
            return False

    wait_until(works, timeout=5, interval=0.2, message="a new transaction through pgmedic after the outage")
    assert px.alive()


REJECT_DB = "pgmedic_faults_reject"


@pytest.mark.timeout_s(40)
def test_refused_logins_are_not_retried_in_a_storm(own_pg, pgmedic):
    """The pool has logged in before; now PostgreSQL refuses every new login
    (pg_hba.conf reject: as during a restart's "starting up"/"shutting down"
    phases, or a revoked role) and several clients are queued.  pgmedic must
    not retry in a tight loop, and the queued clients must hear why promptly
    instead of sitting until query_wait_timeout."""
    own_pg.ensure_db(REJECT_DB)
    px = pgmedic(pool_mode="transaction", pool_size=3, upstream=own_pg.url(dbname=REJECT_DB),
                 settings={"query_wait_timeout": 5, "server_connect_timeout": 2})
    warm = px.connect(dbname=REJECT_DB)
    assert run_one(warm, "SELECT 1") == [(1,)]
    warm.commit()
    waiters = []
    try:
        for _ in range(3):
            r = px.raw(timeout=10)
            waiters.append(r)
            r.startup(SUPERUSER, REJECT_DB)
        (own_pg.datadir / "pg_hba.conf").write_text(
            f"local all all trust\nhost {REJECT_DB} all 127.0.0.1/32 reject\n" + MAIN_HBA)
        own_pg.reload()
        time.sleep(0.3)
        own_pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                   (REJECT_DB,), dbname="postgres")
        wait_until(lambda: pool_servers(px, REJECT_DB) == 0, timeout=3, message="pgmedic noticed its servers gone")
        before = px.metrics().get("pgmedic_server_connects_total", database=REJECT_DB, user=SUPERUSER)
        t0 = time.monotonic()
        for r in waiters:
            r.send(pgwire.query_message("SELECT 1"))
        results = []
        for r in waiters:
            try:
                kind, fields = r.read_error_or_close()
            except socket.timeout:
                kind, fields = "timeout", None
            results.append((kind, fields, round(time.monotonic() - t0, 2)))
        window = time.monotonic() - t0
        attempts = px.metrics().get("pgmedic_server_connects_total", database=REJECT_DB, user=SUPERUSER) - before
    finally:
        for r in waiters:
            r.close()
        (own_pg.datadir / "pg_hba.conf").write_text(MAIN_HBA)
        own_pg.reload()
    assert attempts <= 20, (f"pgmedic opened {attempts:.0f} upstream connections in {window:.1f}s while "
                            f"PostgreSQL refused logins ({attempts / window:.0f}/s); clients got: {results}")
    for kind, fields, t in results:
        assert kind == "E", results
        assert t < 2.5, f"a queued client heard of the refused login only after {t}s: {results}"
        assert "pg_hba.conf" in fields.get("M", ""), f"the client was not told why: {results}"

    def works():
        try:
            c = psycopg2.connect(dsn(px, REJECT_DB, connect_timeout=3))
            try:
                return run_one(c, "SELECT 7") == [(7,)]
            finally:
                c.close()
        except psycopg2.Error:
            return False

    wait_until(works, timeout=10, interval=0.3, message="pgmedic serving again once logins are accepted")
    assert px.alive()


# ------------------------------------------------------------------ 4. upstream unreachable

class Blackhole:
    """kind "refused": a port nothing listens on.
    kind "silent": a listener whose kernel completes the TCP handshake but that
    never accepts or answers.
    kind "syn": a listener whose accept queue is full, so SYNs are dropped and
    connect() never completes."""

    def __init__(self, kind):
        self.kind = kind
        self.sock = None
        self.fillers = []
        if kind == "refused":
            self.port = free_port()
            return
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        if kind == "silent":
            self.sock.listen(64)
            return
        self.sock.listen(0)
        for _ in range(4):  # fill the accept queue (backlog 0 still admits one)
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(f)
        time.sleep(0.2)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", self.port))
            connected = True
        except (socket.timeout, OSError):
            connected = False
        finally:
            probe.close()
        if connected:
            self.close()
            pytest.skip("this kernel completes connections beyond a full accept queue")

    def close(self):
        for f in self.fillers:
            f.close()
        if self.sock:
            self.sock.close()


@pytest.mark.timeout_s(30)
@pytest.mark.parametrize("kind", ["refused", "silent", "syn"])
def test_upstream_unreachable(pgmedic, kind):
    timeout = 1.0
    hole = Blackhole(kind)
    try:
        px = pgmedic(pool_mode="transaction", pool_size=2,
                     upstream=f"postgresql://{SUPERUSER}@127.0.0.1:{hole.port}/{DB}",
                     settings={"server_connect_timeout": timeout})
        limit = timeout + 1.0

        # The SQLSTATE, through the raw protocol client (libpq hides it at login).
        for attempt in range(2):  # a second client must not hang either
            t0 = time.monotonic()
            with px.raw(timeout=10) as c:
                try:
                    c.startup(SUPERUSER, DB)
                    pytest.fail("login succeeded against an unreachable upstream")
                except socket.timeout:
                    pytest.fail(f"attempt {attempt}: no answer within 10s (server_connect_timeout={timeout})")
                except pgwire.Closed:
                    pytest.fail(f"attempt {attempt}: connection closed without an error message")
                except pgwire.ServerError as e:
                    err = e
            elapsed = time.monotonic() - t0
            assert err.sqlstate == "08006", err
            assert "connect" in err.message.lower(), err.message
            assert elapsed < limit, f"attempt {attempt}: error after {elapsed:.2f}s (limit {limit}s)"

        # Several psycopg2 clients at once: each gets an OperationalError in time.
        results = []

        def one():
            t0 = time.monotonic()
            try:
                psycopg2.connect(dsn(px, DB)).close()
                results.append(("connected", 0, ""))
            except psycopg2.OperationalError as e:
                results.append(("error", time.monotonic() - t0, str(e)))

        threads = [threading.Thread(target=one, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(results) == 3, f"clients still hanging: {results}"
        for what, elapsed, msg in results:
            assert what == "error", results
            assert "connect" in msg.lower(), msg
            assert elapsed < limit, f"error after {elapsed:.2f}s (limit {limit}s): {msg}"
        m = px.metrics()
        assert m.get("pgmedic_up") == 1
        assert px.alive()
    finally:
        hole.close()


# ------------------------------------------------------------------ 5. pool exhausted

@pytest.mark.timeout_s(40)
def test_pool_exhausted_fifo(pg, pgmedic):
    db = fresh_db(pg, "pgmedic_faults_fifo")
    pg.sql("DROP TABLE IF EXISTS fifo", dbname=db)
    pg.sql("CREATE TABLE fifo (seq serial PRIMARY KEY, who text)", dbname=db)
    px = pgmedic(pool_mode="transaction", pool_size=1, upstream=pg.url(dbname=db),
                 settings={"query_wait_timeout": 20})
    a = px.connect(dbname=db)
    waiters = {name: px.connect(dbname=db) for name in "BCD"}
    for c in waiters.values():
        c.autocommit = True
    run_one(a, "INSERT INTO fifo (who) VALUES ('A')")  # A now holds the only server
    done, errors, lock = [], [], threading.Lock()

    def wait_and_insert(name):
        try:
            seq = run_one(waiters[name], "INSERT INTO fifo (who) VALUES (%s) RETURNING seq", (name,))[0][0]
            with lock:
                done.append((name, seq))
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"{name}: {type(e).__name__}: {e}")

    threads = []
    for i, name in enumerate("BCD"):
        th = threading.Thread(target=wait_and_insert, args=(name,), daemon=True)
        th.start()
        threads.append(th)
        wait_until(lambda: pool_clients(px, db, "waiting") == i + 1, timeout=3,
                   message=f"{name} queued behind A")
        time.sleep(0.1)
    time.sleep(0.3)
    assert not done and not errors, (done, errors)
    a.commit()
    for th in threads:
        th.join(10)
    assert not errors, errors
    # The serial column records the order PostgreSQL ran the inserts in; the order
    # the Python threads woke up in afterwards is up to the scheduler.
    assert [n for n, _ in sorted(done, key=lambda x: x[1])] == ["B", "C", "D"], f"served out of order: {done}"
    assert [r[0] for r in pg.sql("SELECT who FROM fifo ORDER BY seq", dbname=db)] == ["A", "B", "C", "D"]


@pytest.mark.timeout_s(30)
def test_pool_exhausted_query_wait_timeout(pg, pgmedic):
    """(psycopg2 2.9 with libpq 15 drops the text of a FATAL that precedes EOF and
    says only "server closed the connection unexpectedly", also for PostgreSQL's
    own FATALs; so the message is checked with the raw client and psycopg 3.)"""
    db = fresh_db(pg, "pgmedic_faults_fifo")
    px = pgmedic(pool_mode="transaction", pool_size=1, upstream=pg.url(dbname=db),
                 settings={"query_wait_timeout": 1})
    a = px.connect(dbname=db)
    run_one(a, "SELECT 1")  # A holds the only server inside its transaction

    with px.raw(timeout=10) as b:
        b.startup(SUPERUSER, db)
        t0 = time.monotonic()
        b.send(pgwire.query_message("SELECT 2"))
        kind, fields = b.read_error_or_close()
        elapsed = time.monotonic() - t0
    assert kind == "E", (kind, fields)
    assert "query_wait_timeout" in fields.get("M", ""), fields
    assert 0.9 <= elapsed <= 2.0, f"waiter got its error after {elapsed:.2f}s (query_wait_timeout=1)"

    c3 = px.connect3(dbname=db, autocommit=True)
    t0 = time.monotonic()
    with pytest.raises(Exception) as ei:
        c3.execute("SELECT 3")
    elapsed = time.monotonic() - t0
    assert "query_wait_timeout" in str(ei.value), str(ei.value)
    assert 0.9 <= elapsed <= 2.0, f"waiter got its error after {elapsed:.2f}s (query_wait_timeout=1)"

    # A was not disturbed and, once it commits, newcomers are served.
    assert run_one(a, "SELECT 4") == [(4,)]
    a.commit()
    c = px.connect(dbname=db)
    assert run_one(c, "SELECT 5") == [(5,)]
    c.commit()


# ------------------------------------------------------------------ 6. slow reader

SLOW_ROWS = 200_000
SLOW_WIDTH = 1000


def drain_result(conn, timeout=60):
    """Reads a simple-query result of SLOW_ROWS rows of one text column of
    SLOW_WIDTH 'x' up to ReadyForQuery without the per-message copying of
    RawConn.read_msg.  Returns (rows, bad rows, command tags)."""
    expected = struct.pack("!HI", 1, SLOW_WIDTH) + b"x" * SLOW_WIDTH
    sock = conn.sock
    sock.settimeout(timeout)
    buf = bytearray(conn.buf)
    conn.buf = b""
    rows = bad = 0
    tags = []
    while True:
        pos, end = 0, len(buf)
        while end - pos >= 5:
            length = int.from_bytes(buf[pos + 1:pos + 5], "big")
            if end - pos < 1 + length:
                break
            kind = buf[pos]
            payload = buf[pos + 5:pos + 1 + length]
            pos += 1 + length
            if kind == 0x44:  # 'D'
                rows += 1
                if payload != expected:
                    bad += 1
            elif kind == 0x43:  # 'C'
                tags.append(bytes(payload).rstrip(b"\0").decode())
            elif kind == 0x45:  # 'E'
                raise pgwire.ServerError(pgwire.parse_error_fields(bytes(payload)))
            elif kind == 0x5A:  # 'Z'
                return rows, bad, tags
        del buf[:pos]
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise pgwire.Closed("EOF before ReadyForQuery")
        buf += chunk


@pytest.mark.timeout_s(90)
@pytest.mark.parametrize("pool_mode,pool_size", [("session", 3), ("transaction", 2)])
def test_slow_reader_stalls_only_itself(pg, pgmedic, pool_mode, pool_size):
    db = fresh_db(pg, "pgmedic_faults_slow")
    px = pgmedic(pool_mode=pool_mode, pool_size=pool_size, upstream=pg.url(dbname=db))
    others = [px.connect(dbname=db) for _ in range(2)]
    for c in others:
        c.autocommit = True
        run_one(c, "SELECT 1")
    slow = px.raw(timeout=60)
    slow.startup(SUPERUSER, db)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    rss0 = px.vm_kb("VmRSS")
    slow.send(pgwire.query_message(f"SELECT repeat('x', {SLOW_WIDTH}) FROM generate_series(1, {SLOW_ROWS})"))
    t_stall = time.monotonic()
    time.sleep(0.5)  # let every buffer between PostgreSQL and the slow client fill up

    latencies = {i: [] for i in range(len(others))}
    errors = []

    def short_queries(i, conn):
        try:
            for k in range(100):
                t0 = time.monotonic()
                assert run_one(conn, "SELECT %s::int", (k,)) == [(k,)]
                latencies[i].append(time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=short_queries, args=(i, c), daemon=True) for i, c in enumerate(others)]
    for th in threads:
        th.start()
    peak = rss0
    while time.monotonic() - t_stall < 5.0:  # S reads nothing for 5 s
        peak = max(peak, px.vm_kb("VmRSS"))
        time.sleep(0.1)
    for th in threads:
        th.join(10)
    assert not any(th.is_alive() for th in threads), "short queries still running after the 5 s stall"
    assert not errors, errors
    for i, lat in latencies.items():
        assert len(lat) == 100, (i, len(lat))
        assert max(lat) < 1.0, f"client {i}: slowest short query took {max(lat):.2f}s while S stalled"
    growth_mb = (peak - rss0) / 1024
    assert growth_mb < 100, f"pgmedic's RSS grew by {growth_mb:.0f} MB while S did not read"

    rows, bad, tags = drain_result(slow)
    slow.close()
    assert rows == SLOW_ROWS and bad == 0, (rows, bad)
    assert tags == [f"SELECT {SLOW_ROWS}"], tags
    growth_mb = (max(peak, px.vm_kb("VmRSS")) - rss0) / 1024
    assert growth_mb < 100, f"pgmedic's RSS grew by {growth_mb:.0f} MB streaming the result"
    for c in others:
        assert run_one(c, "SELECT 'still fine'") == [("still fine",)]


# ------------------------------------------------------------------ 7. cancel reaches only its backend

def _sleep_in_thread(conn, seconds, out, key):
    def run():
        t0 = time.monotonic()
        try:
            run_one(conn, "SELECT pg_sleep(%s)", (seconds,))
            out[key] = ("ok", time.monotonic() - t0, time.monotonic())
        except Exception as e:  # noqa: BLE001
            out[key] = (e, time.monotonic() - t0, time.monotonic())

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


@pytest.mark.timeout_s(30)
def test_cancel_reaches_only_its_backend(pg, pgmedic):
    db = fresh_db(pg, "pgmedic_faults_cancel")
    px = pgmedic(pool_mode="transaction", pool_size=2, upstream=pg.url(dbname=db))
    c1 = px.connect(dbname=db, application_name="cancel_1")
    c2 = px.connect(dbname=db, application_name="cancel_2")
    for c in (c1, c2):
        c.autocommit = True
    out = {}
    t1 = _sleep_in_thread(c1, 10, out, 1)
    t2 = _sleep_in_thread(c2, 2, out, 2)
    wait_until(lambda: len([b for b in backends(pg, db) if b[1] == "active"]) == 2, timeout=3,
               message="both sleeps running")
    t_cancel = time.monotonic()
    c1.cancel()
    t1.join(5)
    t2.join(5)
    res1, res2 = out.get(1), out.get(2)
    assert res1 is not None, "cancelled client still sleeping"
    assert isinstance(res1[0], psycopg2.errors.QueryCanceled), res1
    assert res1[2] - t_cancel < 1.0, f"cancel took {res1[2] - t_cancel:.2f}s to land"
    assert res2 is not None and res2[0] == "ok", f"the other client's sleep was disturbed: {res2}"
    assert res2[1] >= 1.9, res2
    # Both connections stay usable.
    assert run_one(c1, "SELECT 1") == [(1,)]
    assert run_one(c2, "SELECT 2") == [(2,)]


@pytest.mark.timeout_s(30)
def test_stale_cancel_does_not_hit_next_user_of_server(pg, pgmedic):
    """Client 1 used the only server connection and released it; client 2 now
    runs a query on that same connection.  A cancel from client 1 must not
    cancel client 2's query."""
    db = fresh_db(pg, "pgmedic_faults_cancel")
    px = pgmedic(pool_mode="transaction", pool_size=1, upstream=pg.url(dbname=db))
    c1 = px.connect(dbname=db)
    c2 = px.connect(dbname=db)
    for c in (c1, c2):
        c.autocommit = True
    pid1 = run_one(c1, "SELECT pg_backend_pid()")[0][0]
    out = {}
    th = _sleep_in_thread(c2, 2, out, 2)
    wait_until(lambda: [b for b in backends(pg, db) if b[0] == pid1 and b[1] == "active"], timeout=3,
               message="client 2 running on the server client 1 used")
    c1.cancel()
    time.sleep(0.2)
    c1.cancel()
    th.join(5)
    assert out.get(2) is not None and out[2][0] == "ok", f"client 2 was hit by client 1's cancel: {out.get(2)}"
    assert out[2][1] >= 1.9, out[2]
    assert run_one(c1, "SELECT 1") == [(1,)]
