"""The admin console: the virtual database "pgbouncer" (or "pgmedic").

- Columns of SHOW POOLS/STATS/DATABASES/CLIENTS/SERVERS/CONFIG/VERSION compared with
  the real PgBouncer 1.18 (Debian's /usr/sbin/pgbouncer, started here in front of the
  test cluster as the postgres user).
- The numbers follow what clients do (SHOW STATS/POOLS/CLIENTS/SERVERS).
- PAUSE/RESUME (all and per database), KILL db, RELOAD.
- Who may use the console, errors, the simple-query-only rule.

The console speaks only the simple query protocol: psycopg2 (which always sends
simple queries, parameters are interpolated on the client) in autocommit.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
import pytest

import pgwire
from conftest import DB, SUPERUSER, free_port, port_accepts, wait_until

PGBOUNCER_BIN = Path(os.environ.get("PGBOUNCER_BIN", "/usr/sbin/pgbouncer"))
COLUMN_ITEMS = ["POOLS", "STATS", "DATABASES", "CLIENTS", "SERVERS", "VERSION"]
ALL_ITEMS = COLUMN_ITEMS + ["CONFIG"]
# Keys pgmedic reports in SHOW CONFIG that PgBouncer 1.18 does not have
# (max_prepared_statements arrived in PgBouncer 1.21).
PGMEDIC_ONLY_CONFIG_KEYS = {"max_prepared_statements"}
NUMERIC_STATS = ["total_xact_count", "total_query_count", "total_received", "total_sent",
                 "total_xact_time", "total_query_time", "total_wait_time"]


# ------------------------------------------------------------------ helpers

def admin(px, user=SUPERUSER, dbname="pgbouncer", register=True):
    """An autocommit psycopg2 connection to pgmedic's admin console.  register=False:
    not closed at teardown (for connections a background thread may still block on)."""
    if register:
        conn = px.connect(dbname=dbname, user=user)
    else:
        conn = psycopg2.connect(host="127.0.0.1", port=px.port, dbname=dbname, user=user,
                                connect_timeout=10, sslmode="disable")
    conn.autocommit = True
    return conn


def client(px, dbname=DB, register=True, **kw):
    """An autocommit psycopg2 connection through pgmedic to a real database."""
    if register:
        conn = px.connect(dbname=dbname, **kw)
    else:
        conn = psycopg2.connect(host="127.0.0.1", port=px.port, dbname=dbname, user=SUPERUSER,
                                connect_timeout=10, sslmode="disable", **kw)
    conn.autocommit = True
    return conn


def run(conn, sql):
    """Executes sql; returns the rows (or None)."""
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall() if cur.description else None


def cmd(conn, sql):
    """Executes sql; returns its command tag."""
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.statusmessage


def show(conn, item):
    """SHOW item on an admin console: list of dicts (column name -> value)."""
    with conn.cursor() as cur:
        cur.execute(f"SHOW {item}")
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def describe(conn, item):
    """[(column name, type oid)] of SHOW item."""
    with conn.cursor() as cur:
        cur.execute(f"SHOW {item}")
        cur.fetchall()
        return [(d.name, d.type_code) for d in cur.description]


def one(rows, **match):
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one row with {match}, got {len(found)} in {rows}"
    return found[0]


def stats_of(adm, dbname=DB):
    return one(show(adm, "STATS"), database=dbname)


def pool_of(adm, dbname=DB, user=SUPERUSER):
    return one(show(adm, "POOLS"), database=dbname, user=user)


def local_port(conn):
    """The client-side TCP port of a psycopg2 connection (what the proxy sees as port)."""
    s = socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    try:
        return s.getsockname()[1]
    finally:
        s.close()


def backend_pids(pg, dbname):
    return {r[0] for r in pg.sql("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                                 "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                                 "AND application_name <> 'pgmedic-advisor'",
                                 (dbname,), dbname="postgres")}


def ensure_role(pg, name):
    pg.sql(f"DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') "
           f"THEN CREATE ROLE {name} LOGIN; END IF; END$$")


class Background:
    """Runs fn() in a daemon thread; .done is set when it returns or raises.  A thread
    stuck on a hung proxy ends when the proxy is stopped at teardown (EOF)."""

    def __init__(self, fn):
        self.result = None
        self.error = None
        self.finished_at = None
        self.done = threading.Event()

        def body():
            try:
                self.result = fn()
            except BaseException as e:  # noqa: BLE001 - reported by the test
                self.error = e
            finally:
                self.finished_at = time.monotonic()
                self.done.set()

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def wait(self, timeout, what):
        assert self.done.wait(timeout), f"{what} did not complete within {timeout}s"
        if self.error is not None:
            raise AssertionError(f"{what} failed: {self.error!r}") from self.error
        return self.result


def shape_diff(expected, got):
    """Human-readable difference between two column lists ('' when equal)."""
    if expected == got:
        return ""
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    common_e = [c for c in expected if c in got]
    common_g = [c for c in got if c in expected]
    parts = []
    if missing:
        parts.append(f"missing in pgmedic: {missing}")
    if extra:
        parts.append(f"pgmedic-only: {extra}")
    if common_e != common_g:
        parts.append(f"order differs: PgBouncer {common_e} vs pgmedic {common_g}")
    return "; ".join(parts) + f"\n  PgBouncer 1.18: {expected}\n  pgmedic:        {got}"


# ------------------------------------------------------------------ PgBouncer 1.18 reference

def _run_pgbouncer_reference(pg):
    """Starts PgBouncer in front of the test cluster, runs one query through it (so
    its pool has a server) and collects the description of every SHOW; returns
    {item: [(name, type oid)], "CONFIG keys": [...]} or raises RuntimeError."""
    if not PGBOUNCER_BIN.exists():
        raise RuntimeError(f"{PGBOUNCER_BIN} not found (scripts/setup.sh installs Debian's pgbouncer)")
    workdir = Path(tempfile.mkdtemp(prefix="pgmedic-pgbouncer-"))
    proc = None
    log = workdir / "pgbouncer.log"
    try:
        port = free_port()
        (workdir / "userlist.txt").write_text('"postgres" ""\n')
        (workdir / "pgbouncer.ini").write_text(f"""\
[databases]
{DB} = host=127.0.0.1 port={pg.port} dbname={DB} user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 2
ignore_startup_parameters = extra_float_digits
""")
        kw = {}
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            pw = pwd.getpwnam("postgres")
            for p in (workdir, *workdir.iterdir()):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            os.chmod(workdir, 0o755)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        with open(log, "wb") as logf:
            proc = subprocess.Popen([str(PGBOUNCER_BIN), str(workdir / "pgbouncer.ini")], stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=subprocess.STDOUT, cwd=workdir, **kw)
        deadline = time.monotonic() + 10
        while not port_accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PgBouncer did not start (exit status {proc.poll()}):\n"
                                   f"{log.read_text(errors='replace')}")
            time.sleep(0.05)
        c = psycopg2.connect(host="127.0.0.1", port=port, dbname=DB, user="postgres", connect_timeout=10)
        c.autocommit = True
        adm = psycopg2.connect(host="127.0.0.1", port=port, dbname="pgbouncer", user="postgres",
                               connect_timeout=10)
        adm.autocommit = True
        try:
            run(c, "SELECT 1")
            ref = {item: describe(adm, item) for item in ALL_ITEMS}
            ref["CONFIG keys"] = [r["key"] for r in show(adm, "CONFIG")]
            ref["VERSION value"] = show(adm, "VERSION")[0]["version"]
            # The client above, idle between transactions, and its server.
            ref["idle client"] = one(show(adm, "CLIENTS"), database=DB)
            ref["idle server"] = one(show(adm, "SERVERS"), database=DB)
        finally:
            c.close()
            adm.close()
        return ref
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # PgBouncer's clean shutdown
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def pgbouncer_ref(pg):
    """PgBouncer 1.18's SHOW descriptions, or the reason it could not be obtained."""
    try:
        return _run_pgbouncer_reference(pg)
    except Exception as e:  # noqa: BLE001 - turned into a clear test failure
        return f"cannot run the reference PgBouncer: {e}"


def reference(pgbouncer_ref):
    if isinstance(pgbouncer_ref, str):
        pytest.fail(pgbouncer_ref, pytrace=False)
    return pgbouncer_ref


def pgmedic_descriptions(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    c = client(px)
    run(c, "SELECT 1")  # a pool, a server, a client: every SHOW has rows
    adm = admin(px)
    return {item: describe(adm, item) for item in ALL_ITEMS}, adm


# ------------------------------------------------------------------ 1. PgBouncer compatibility

@pytest.mark.parametrize("item", COLUMN_ITEMS)
def test_show_columns_match_pgbouncer_118(pgmedic, pgbouncer_ref, item):
    ref = reference(pgbouncer_ref)
    mine, _ = pgmedic_descriptions(pgmedic)
    expected = [n for n, _ in ref[item]]
    got = [n for n, _ in mine[item]]
    diff = shape_diff(expected, got)
    assert not diff, f"SHOW {item} columns differ from PgBouncer 1.18: {diff}"


def test_show_config_matches_pgbouncer_118(pgmedic, pgbouncer_ref):
    ref = reference(pgbouncer_ref)
    mine, adm = pgmedic_descriptions(pgmedic)
    assert [n for n, _ in ref["CONFIG"]] == ["key", "value", "default", "changeable"]
    assert [n for n, _ in mine["CONFIG"]] == ["key", "value", "default", "changeable"]
    rows = show(adm, "CONFIG")
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), f"duplicate keys in SHOW CONFIG: {keys}"
    unknown = sorted(set(keys) - set(ref["CONFIG keys"]) - PGMEDIC_ONLY_CONFIG_KEYS)
    assert not unknown, f"SHOW CONFIG keys that PgBouncer 1.18 does not have: {unknown}"
    assert PGMEDIC_ONLY_CONFIG_KEYS <= set(keys)
    for r in rows:
        assert r["changeable"] in ("yes", "no"), r
        assert r["value"] is not None and r["default"] is not None, r


def test_show_column_types_match_pgbouncer_118(pgmedic, pgbouncer_ref):
    """Same type OIDs as PgBouncer for the columns both have (drivers convert by type:
    psycopg2 gives Decimal for numeric, int for int8)."""
    ref = reference(pgbouncer_ref)
    mine, _ = pgmedic_descriptions(pgmedic)
    diffs = []
    for item in ALL_ITEMS:
        ref_types = dict(ref[item])
        for name, oid in mine[item]:
            if name in ref_types and ref_types[name] != oid:
                diffs.append(f"SHOW {item}.{name}: PgBouncer type oid {ref_types[name]}, pgmedic {oid}")
    assert not diffs, "column types differ from PgBouncer 1.18:\n" + "\n".join(diffs)


def test_show_version(pgmedic):
    px = pgmedic()
    adm = admin(px)
    rows = show(adm, "VERSION")
    assert len(rows) == 1 and rows[0]["version"].startswith("pgmedic "), rows
    version = (Path(__file__).resolve().parents[2] / "VERSION").read_text().strip()
    assert version in rows[0]["version"], (version, rows)
    # The other name of the console answers the same.
    assert show(admin(px, dbname="pgmedic"), "VERSION") == rows


# ------------------------------------------------------------------ 2. values track reality

def test_stats_follow_workload(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    c = client(px, application_name="adm_stats")
    run(c, "SELECT 1")  # the pool exists from the first client on
    s0 = stats_of(adm)
    assert s0["total_query_count"] >= 1 and s0["total_xact_count"] >= 1, s0
    assert s0["total_received"] > 0 and s0["total_sent"] > 0, s0

    sqls = []
    for i in range(50):  # 50 autocommit statements: 50 transactions for pgmedic (and PgBouncer)
        sqls.append(f"SELECT {i}")
        run(c, sqls[-1])
    for i in range(10):  # 10 explicit transactions of 3 statements: 5 queries, 1 transaction each
        for q in ("BEGIN", f"SELECT {i}", f"SELECT {i} + 1", f"SELECT {i} + 2", "COMMIT"):
            sqls.append(q)
            run(c, q)
    s1 = stats_of(adm)
    d = {k: s1[k] - s0[k] for k in NUMERIC_STATS}
    assert d["total_query_count"] == 100, (d, s0, s1)
    assert d["total_xact_count"] == 60, (d, s0, s1)
    # Bytes from the client: exactly its Query messages (type, length, text, NUL).
    assert d["total_received"] == sum(len(q.encode()) + 6 for q in sqls), (d, s0, s1)
    # Bytes to the client: at least a ReadyForQuery (6 bytes) and a CommandComplete per query.
    assert d["total_sent"] >= 100 * (6 + 12), (d, s0, s1)
    assert d["total_query_time"] > 0 and d["total_xact_time"] > 0, (d, s0, s1)
    assert d["total_xact_time"] * 2 >= d["total_query_time"], (d, s0, s1)

    run(c, "SELECT 2")
    s2 = stats_of(adm)
    assert s2["total_received"] > s1["total_received"] and s2["total_sent"] > s1["total_sent"], (s1, s2)
    assert s2["total_query_count"] == s1["total_query_count"] + 1, (s1, s2)
    for k in ("avg_xact_count", "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time",
              "avg_query_time", "avg_wait_time"):
        assert s2[k] >= 0, (k, s2)


def test_stats_times_are_microseconds(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    c = client(px)
    run(c, "SELECT 1")
    s0 = stats_of(adm)
    run(c, "SELECT pg_sleep(0.2)")
    s1 = stats_of(adm)
    dq = s1["total_query_time"] - s0["total_query_time"]
    dx = s1["total_xact_time"] - s0["total_xact_time"]
    assert 200_000 <= dq < 2_000_000, (dq, s0, s1)
    assert 200_000 <= dx < 2_000_000, (dx, s0, s1)
    assert s1["total_xact_count"] - s0["total_xact_count"] == 1, (s0, s1)

    # A transaction idle for 0.5 s: transaction time includes the idle time, query time does not.
    run(c, "BEGIN")
    run(c, "SELECT pg_sleep(0.1)")
    time.sleep(0.5)
    run(c, "COMMIT")
    s2 = stats_of(adm)
    dq = s2["total_query_time"] - s1["total_query_time"]
    dx = s2["total_xact_time"] - s1["total_xact_time"]
    assert 100_000 <= dq < 450_000, (dq, s1, s2)
    assert dx >= 600_000, (dx, s1, s2)


def test_pools_follow_open_transaction_and_waiting(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    a, b = client(px), client(px)
    run(a, "SELECT 1")
    run(b, "SELECT 1")
    p = pool_of(adm)
    assert p["pool_mode"] == "transaction", p
    assert (p["cl_active"], p["cl_waiting"], p["sv_active"]) == (2, 0, 0), p
    assert p["sv_idle"] >= 1 and p["sv_idle"] + p["sv_used"] + p["sv_login"] <= 2, p

    run(a, "BEGIN")
    run(a, "SELECT 1")
    p = pool_of(adm)
    assert (p["cl_active"], p["cl_waiting"], p["sv_active"]) == (2, 0, 1), p
    run(a, "COMMIT")
    p = pool_of(adm)
    assert (p["cl_active"], p["cl_waiting"], p["sv_active"]) == (2, 0, 0), p
    assert p["sv_idle"] >= 1, p

    # Both servers held: a third client waits, and SHOW POOLS says so.
    run(a, "BEGIN")
    run(a, "SELECT 1")
    run(b, "BEGIN")
    run(b, "SELECT 1")
    s0 = stats_of(adm)
    c = client(px, register=False)
    bg = Background(lambda: run(c, "SELECT 'served'"))
    p = wait_until(lambda: (lambda r: r if r["cl_waiting"] == 1 else None)(pool_of(adm)), timeout=3,
                   message="cl_waiting 1")
    assert (p["cl_active"], p["sv_active"], p["sv_idle"]) == (2, 2, 0), p
    time.sleep(0.4)
    p = pool_of(adm)
    assert p["cl_waiting"] == 1, p
    waited = p["maxwait"] + p["maxwait_us"] / 1e6
    assert 0.3 <= waited < 5, p
    assert not bg.done.is_set()
    run(a, "COMMIT")
    assert bg.wait(3, "the waiting client's query") == [("served",)]
    c.close()
    run(b, "COMMIT")
    s1 = stats_of(adm)
    assert s1["total_wait_time"] - s0["total_wait_time"] >= 300_000, (s0, s1)
    p = pool_of(adm)
    assert (p["cl_waiting"], p["sv_active"], p["maxwait"], p["maxwait_us"]) == (0, 0, 0, 0), p


def test_clients_and_servers_lists(pg, pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    a = client(px, application_name="adm_client_a")
    b = client(px, application_name="adm_client_b")
    run(b, "SELECT 1")
    run(a, "BEGIN")
    pid_a = run(a, "SELECT pg_backend_pid()")[0][0]

    clients = show(adm, "CLIENTS")
    ra = one(clients, application_name="adm_client_a")
    rb = one(clients, application_name="adm_client_b")
    for r, conn in ((ra, a), (rb, b)):
        assert r["type"] == "C", r
        assert (r["user"], r["database"], r["addr"]) == (SUPERUSER, DB, "127.0.0.1"), r
        assert r["port"] == local_port(conn), r
    me = one(clients, database="pgbouncer")
    assert (me["user"], me["addr"], me["port"]) == (SUPERUSER, "127.0.0.1", local_port(adm)), me
    assert ra["state"] == "active" and ra["link"], ra
    assert not rb["link"], rb
    assert len({r["ptr"] for r in clients}) == len(clients), clients

    servers = show(adm, "SERVERS")
    assert servers, "SHOW SERVERS is empty with a client in a transaction"
    for s in servers:
        assert s["type"] == "S", s
        assert (s["user"], s["database"], s["addr"], s["port"]) == (SUPERUSER, DB, "127.0.0.1", pg.port), s
    pids = backend_pids(pg, DB)
    assert {s["remote_pid"] for s in servers} <= pids, (servers, pids)
    star = one(show(adm, "DATABASES"), name="*")
    assert (star["host"], star["port"], star["pool_size"]) == ("127.0.0.1", pg.port, 2), star
    assert star["current_connections"] == len(servers), (star, servers)
    sa = one(servers, ptr=ra["link"])
    assert sa["remote_pid"] == pid_a, (sa, pid_a)
    assert sa["link"] == ra["ptr"] and sa["state"] == "active", (sa, ra)
    run(a, "COMMIT")
    servers = show(adm, "SERVERS")
    assert all(s["state"] != "active" and not s["link"] for s in servers), servers
    assert not one(show(adm, "CLIENTS"), application_name="adm_client_a")["link"]

    b.close()
    wait_until(lambda: not [r for r in show(adm, "CLIENTS") if r["application_name"] == "adm_client_b"],
               timeout=2, message="a closed client gone from SHOW CLIENTS")


def test_clients_connection_details_like_pgbouncer(pgmedic, pgbouncer_ref):
    """PgBouncer fills local_addr/local_port (the listener's address) and
    connect_time/request_time for every client and server; monitoring reads them.
    States of an idle client and server as PgBouncer reports them."""
    ref = reference(pgbouncer_ref)
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    c = client(px, application_name="adm_details")
    run(c, "SELECT 1")
    r = one(show(adm, "CLIENTS"), application_name="adm_details")
    problems = []
    if r["local_addr"] != "127.0.0.1" or r["local_port"] != px.port:
        problems.append(f"local_addr/local_port {r['local_addr']!r}/{r['local_port']!r}, "
                        f"expected '127.0.0.1'/{px.port}")
    for k in ("connect_time", "request_time"):
        if not r[k]:
            problems.append(f"{k} is {r[k]!r}")
    s = show(adm, "SERVERS")[0]
    if not s["local_addr"] or not s["local_port"]:
        problems.append(f"server local_addr/local_port {s['local_addr']!r}/{s['local_port']!r}")
    if not s["connect_time"]:
        problems.append(f"server connect_time is {s['connect_time']!r}")
    for what, mine, theirs in (("client", r, ref["idle client"]), ("server", s, ref["idle server"])):
        if mine["state"] != theirs["state"]:
            problems.append(f"idle {what} state {mine['state']!r}, PgBouncer 1.18 says {theirs['state']!r}")
    assert not problems, f"SHOW CLIENTS/SERVERS: {problems}\nclient row: {r}\nserver row: {s}"


# ------------------------------------------------------------------ 3. PAUSE / RESUME

@pytest.mark.timeout_s(60)
def test_pause_waits_for_open_transaction_then_resume(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    a, b = client(px), client(px)
    run(a, "SELECT 1")
    run(b, "SELECT 1")
    run(a, "BEGIN")
    run(a, "SELECT 1")

    adm2 = admin(px, register=False)
    pause = Background(lambda: cmd(adm2, "PAUSE"))
    time.sleep(0.6)
    assert not pause.done.is_set(), f"PAUSE answered while a transaction was open: {pause.error!r}"
    # The console stays usable from another admin connection meanwhile.
    assert pool_of(adm)["sv_active"] == 1
    committed_at = time.monotonic()
    run(a, "COMMIT")
    pause.wait(3, "PAUSE after the commit")
    assert pause.finished_at >= committed_at
    assert pause.result == "PAUSE", pause.result
    assert all(r["paused"] == 1 for r in show(adm, "DATABASES")), show(adm, "DATABASES")

    # While paused, an existing client's query and a new client's query wait, without error.
    q_b = Background(lambda: run(b, "SELECT 'b'"))
    c_new = []

    def new_client():
        c = client(px, register=False)
        c_new.append(c)
        return run(c, "SELECT 'c'")

    q_c = Background(new_client)
    wait_until(lambda: pool_of(adm)["cl_waiting"] >= 2, timeout=3, message="two waiting clients while paused")
    time.sleep(0.4)
    assert not q_b.done.is_set(), f"query ran while paused: {q_b.result!r} {q_b.error!r}"
    assert not q_c.done.is_set(), f"query ran while paused: {q_c.result!r} {q_c.error!r}"
    assert pool_of(adm)["sv_active"] == 0

    resumed_at = time.monotonic()
    assert cmd(adm, "RESUME") == "RESUME"
    assert q_b.wait(3, "b's query after RESUME") == [("b",)]
    assert q_c.wait(3, "the new client's query after RESUME") == [("c",)]
    assert q_b.finished_at >= resumed_at and q_c.finished_at >= resumed_at
    assert all(r["paused"] == 0 for r in show(adm, "DATABASES"))
    assert run(a, "SELECT 'a'") == [("a",)]
    for c in c_new:
        c.close()
    adm2.close()

    # PAUSE with nothing in flight answers at once.
    t0 = time.monotonic()
    run(adm, "PAUSE")
    assert time.monotonic() - t0 < 1.0
    run(adm, "RESUME")
    assert run(b, "SELECT 2") == [(2,)]


@pytest.mark.timeout_s(60)
def test_pause_and_resume_one_database(pg, pgmedic):
    db1 = pg.ensure_db("pgmedic_admin_pause1")
    db2 = pg.ensure_db("pgmedic_admin_pause2")
    px = pgmedic(pool_mode="transaction", pool_size=2, upstream="", settings={"admin_users": SUPERUSER},
                 databases={db1: f"host=127.0.0.1 port={pg.port} dbname={db1}",
                            db2: f"host=127.0.0.1 port={pg.port} dbname={db2}"})
    adm = admin(px)
    c1, c2 = client(px, dbname=db1), client(px, dbname=db2)
    run(c1, "SELECT 1")
    run(c2, "SELECT 1")
    run(c1, "BEGIN")
    run(c1, "SELECT 1")

    adm2 = admin(px, register=False)
    pause = Background(lambda: cmd(adm2, f"PAUSE {db1}"))
    time.sleep(0.5)
    assert not pause.done.is_set(), f"PAUSE {db1} answered while {db1} had an open transaction"
    t0 = time.monotonic()
    assert run(c2, "SELECT 'other db'") == [("other db",)]  # db2 is not paused
    assert time.monotonic() - t0 < 1.0
    run(c1, "COMMIT")
    pause.wait(3, f"PAUSE {db1} after the commit")
    assert pause.result == "PAUSE", pause.result

    dbs = {r["name"]: r for r in show(adm, "DATABASES")}
    assert dbs[db1]["paused"] == 1 and dbs[db2]["paused"] == 0, dbs
    for name in (db1, db2):
        assert (dbs[name]["host"], dbs[name]["port"], dbs[name]["database"]) == ("127.0.0.1", pg.port, name), dbs
    q1 = Background(lambda: run(c1, "SELECT 'db1'"))
    time.sleep(0.5)
    assert not q1.done.is_set(), f"query on paused {db1} ran: {q1.result!r} {q1.error!r}"
    assert run(c2, "SELECT 'db2'") == [("db2",)]
    assert pool_of(adm, dbname=db1)["cl_waiting"] == 1

    assert cmd(adm, f"RESUME {db1}") == "RESUME"
    assert q1.wait(3, f"the {db1} query after RESUME {db1}") == [("db1",)]
    dbs = {r["name"]: r for r in show(adm, "DATABASES")}
    assert dbs[db1]["paused"] == 0 and dbs[db2]["paused"] == 0, dbs
    adm2.close()


def read_until_ready(raw, count, timeout, msgs=None):
    """Backend messages up to and including the count-th ReadyForQuery (appended
    to msgs as they come, so a caller sees what arrived before a timeout)."""
    raw.sock.settimeout(timeout)
    msgs = [] if msgs is None else msgs
    while sum(1 for k, _ in msgs if k == b"Z") < count:
        msgs.append(raw.read_msg())
    return msgs


@pytest.mark.timeout_s(60)
def test_pause_pipelined_command_is_answered(pgmedic):
    """A command queued behind a waiting PAUSE runs once PAUSE answers."""
    px = pgmedic(pool_mode="transaction", pool_size=2)
    a = client(px)
    run(a, "BEGIN")
    run(a, "SELECT 1")
    with pgwire.RawConn("127.0.0.1", px.port) as raw:
        raw.startup(SUPERUSER, "pgbouncer")
        raw.send(pgwire.query_message("PAUSE") + pgwire.query_message("SHOW VERSION"))
        time.sleep(0.4)
        run(a, "COMMIT")
        msgs = []
        try:
            read_until_ready(raw, 2, timeout=3, msgs=msgs)
        except socket.timeout:
            pytest.fail(f"PAUSE, SHOW VERSION pipelined: after the commit only {msgs} arrived within 3 s")
        tags = [p.rstrip(b"\0").decode() for k, p in msgs if k == b"C"]
        assert tags == ["PAUSE", "SHOW"], msgs
        raw.send(pgwire.query_message("RESUME"))
        assert [k for k, _ in read_until_ready(raw, 1, timeout=3)] == [b"C", b"Z"]
    assert run(a, "SELECT 1") == [(1,)]


@pytest.mark.timeout_s(60)
def test_admin_leaving_while_pause_waits(pgmedic):
    """The admin that sent PAUSE disconnects before it answers: pgmedic stays up, the
    pause stays in force (as the operator asked) and another admin can RESUME."""
    px = pgmedic(pool_mode="transaction", pool_size=2)
    a, b = client(px), client(px)
    run(b, "SELECT 1")
    run(a, "BEGIN")
    run(a, "SELECT 1")
    with pgwire.RawConn("127.0.0.1", px.port) as raw:
        raw.startup(SUPERUSER, "pgbouncer")
        raw.send(pgwire.query_message("PAUSE"))
        time.sleep(0.3)
    time.sleep(0.3)
    run(a, "COMMIT")
    time.sleep(0.5)  # the janitor looks for finished PAUSEs every 200 ms
    assert px.alive()
    adm = admin(px)
    assert all(r["paused"] == 1 for r in show(adm, "DATABASES"))
    q = Background(lambda: run(b, "SELECT 'b'"))
    time.sleep(0.3)
    assert not q.done.is_set()
    assert cmd(adm, "RESUME") == "RESUME"
    assert q.wait(3, "query after RESUME") == [("b",)]


def test_several_commands_in_one_query_are_refused(pgmedic):
    """PgBouncer refuses "PAUSE; RESUME" as one invalid command.  Running the first
    and dropping the rest would leave the pooler paused behind a RESUME that
    answered nothing."""
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    run(client(px), "SELECT 1")
    outcome = {}
    for sql in ("PAUSE; RESUME", "SHOW POOLS; SHOW STATS"):
        try:
            outcome[sql] = f"answered {cmd(adm, sql)!r}"
        except psycopg2.Error as e:
            outcome[sql] = e.pgcode
    paused = [r["name"] for r in show(adm, "DATABASES") if r["paused"]]
    if paused:
        cmd(adm, "RESUME")
    assert outcome == {"PAUSE; RESUME": "42601", "SHOW POOLS; SHOW STATS": "42601"} and not paused, (
        f"{outcome}; paused afterwards: {paused}")


def test_mixed_case_database_names(pg, pgmedic):
    """PgBouncer takes PAUSE/RESUME/KILL database names as written (PAUSE MyDb pauses
    "MyDb"); folding them to lower case misses the database."""
    db = pg.ensure_db("pgmedic_Admin_Case")
    px = pgmedic(pool_mode="transaction", pool_size=2, upstream="", settings={"admin_users": SUPERUSER},
                 databases={db: f"host=127.0.0.1 port={pg.port} dbname={db}"})
    adm = admin(px)
    c = client(px, dbname=db)
    run(c, "SELECT 1")
    results = {}
    for sql in (f"PAUSE {db}", f"RESUME {db}"):
        try:
            results[sql] = cmd(adm, sql)
        except psycopg2.Error as e:
            results[sql] = f"{e.pgcode}: {str(e).strip()}"
    assert results == {f"PAUSE {db}": "PAUSE", f"RESUME {db}": "RESUME"}, results
    assert cmd(adm, f'PAUSE "{db}"') == "PAUSE"  # quoted, as PgBouncer also accepts
    assert one(show(adm, "DATABASES"), name=db)["paused"] == 1
    assert cmd(adm, f'RESUME "{db}"') == "RESUME"
    assert run(c, "SELECT 2") == [(2,)]


# ------------------------------------------------------------------ 4. KILL

def test_kill_database(pg, pgmedic):
    db1 = pg.ensure_db("pgmedic_admin_kill1")
    db2 = pg.ensure_db("pgmedic_admin_kill2")
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    idle1, busy1, other = client(px, dbname=db1), client(px, dbname=db1), client(px, dbname=db2)
    run(idle1, "SELECT 1")
    run(busy1, "BEGIN")
    run(busy1, "SELECT 1")
    run(idle1, "SELECT 1")  # busy1 holds one server, so idle1 made a second
    run(other, "SELECT 1")
    assert pg.server_backends(db1) == 2 and pg.server_backends(db2) == 1
    other_pids = backend_pids(pg, db2)

    assert cmd(adm, f"KILL {db1}") == "KILL"
    for name, conn in (("idle", idle1), ("in-transaction", busy1)):
        with pytest.raises(psycopg2.OperationalError):
            run(conn, "SELECT 1")
        assert conn.closed, f"{name} client of {db1} still open after KILL"
    wait_until(lambda: pg.server_backends(db1) == 0, timeout=2, message=f"{db1} backends gone after KILL")
    assert not [r for r in show(adm, "CLIENTS") if r["database"] == db1]
    assert not [r for r in show(adm, "SERVERS") if r["database"] == db1]

    # The other database is untouched: same client, same server backend.
    assert run(other, "SELECT 'still here'") == [("still here",)]
    assert backend_pids(pg, db2) == other_pids

    # New connections to the killed database work.
    fresh = client(px, dbname=db1)
    assert run(fresh, "SELECT 'back'") == [("back",)]


@pytest.mark.parametrize("wildcard", [False, True], ids=["databases", "upstream-wildcard"])
def test_unknown_database_is_an_error(pg, pgmedic, wildcard):
    """PAUSE/RESUME/KILL of a database pgmedic does not know is an error (PgBouncer:
    "no such database"), also when an upstream URL (the "*" entry) would serve any
    name: answering PAUSE there would tell the operator a typo paused something."""
    if wildcard:
        px = pgmedic(pool_mode="transaction", pool_size=2)
    else:
        px = pgmedic(pool_mode="transaction", pool_size=2, upstream="", settings={"admin_users": SUPERUSER},
                     databases={DB: f"host=127.0.0.1 port={pg.port} dbname={DB}"})
    adm = admin(px)
    run(client(px), "SELECT 1")
    answered = []
    for verb in ("PAUSE", "RESUME", "KILL"):
        try:
            answered.append(f"{verb} no_such_db -> {cmd(adm, f'{verb} no_such_db')!r}")
        except psycopg2.Error as e:
            assert e.pgcode is not None, e
        assert show(adm, "VERSION")
    assert not answered, f"accepted an unknown database: {answered}"
    assert run(client(px), "SELECT 1") == [(1,)]
    assert all(r["paused"] == 0 for r in show(adm, "DATABASES"))


# ------------------------------------------------------------------ 5. RELOAD

def test_reload_rereads_config_file(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2, use_config=True)
    adm = admin(px)
    run(client(px), "SELECT 1")

    def config():
        return {r["key"]: r["value"] for r in show(adm, "CONFIG")}

    assert config()["default_pool_size"] == "2"
    assert {r["pool_size"] for r in show(adm, "DATABASES")} == {2}
    px.write_config(pool_size=5)
    assert cmd(adm, "RELOAD") == "RELOAD"
    assert config()["default_pool_size"] == "5"
    assert {r["pool_size"] for r in show(adm, "DATABASES")} == {5}

    # A broken file: an error, the running configuration is kept, the console is usable.
    good = px.config_path.read_text()
    px.config_path.write_text("[pgmedic]\npool_size = banana\n")
    with pytest.raises(psycopg2.Error) as ei:
        run(adm, "RELOAD")
    assert ei.value.pgcode is not None
    assert config()["default_pool_size"] == "5"
    assert px.alive()
    px.config_path.write_text(good)

    # admin_users changed by RELOAD: applies to the next login.
    px.write_config(admin_users="someone_else")
    run(adm, "RELOAD")
    assert config()["admin_users"] == "someone_else"
    with pgwire.RawConn("127.0.0.1", px.port) as raw:
        with pytest.raises(pgwire.ServerError) as ei:
            raw.startup(SUPERUSER, "pgbouncer")
        assert ei.value.sqlstate == "28000", ei.value


# ------------------------------------------------------------------ 6. security and errors

def test_non_admin_user_is_refused(pg, pgmedic):
    ensure_role(pg, "adm_plain")
    px = pgmedic(pool_mode="transaction", pool_size=2)
    for dbname in ("pgbouncer", "pgmedic"):
        with pgwire.RawConn("127.0.0.1", px.port) as raw:
            with pytest.raises(pgwire.ServerError) as ei:
                raw.startup("adm_plain", dbname)
            assert ei.value.sqlstate == "28000", ei.value
            assert ei.value.fields.get("V", ei.value.fields.get("S")) == "FATAL", ei.value.fields
            assert raw.expect_closed(timeout=3)
        with pytest.raises(psycopg2.OperationalError):
            admin(px, user="adm_plain", dbname=dbname)
    # The same role is an ordinary client of real databases.
    assert run(client(px, user="adm_plain"), "SELECT current_user") == [("adm_plain",)]
    # The upstream URL's user is the default admin.
    assert show(admin(px), "VERSION")


def test_admin_users_setting(pg, pgmedic):
    for role in ("alice", "bob", "carol"):
        ensure_role(pg, role)
    px = pgmedic(pool_mode="transaction", pool_size=2, settings={"admin_users": "alice, bob"})
    for user in ("alice", "bob"):
        adm = admin(px, user=user)
        assert show(adm, "VERSION"), user
        assert show(adm, "POOLS") is not None
    for user in ("carol", "ali", "alice2", SUPERUSER):
        with pgwire.RawConn("127.0.0.1", px.port) as raw:
            with pytest.raises(pgwire.ServerError) as ei:
                raw.startup(user, "pgbouncer")
            assert ei.value.sqlstate == "28000", (user, ei.value)


def test_admin_console_checks_passwords(pgmedic):
    af = pgmedic.write_auth_file({"alice": "alice-pw", "postgres": "pg-pw"})
    px = pgmedic(pool_mode="transaction", pool_size=2, auth_type="scram-sha-256", auth_file=af,
                 settings={"admin_users": "alice"})
    with pgwire.RawConn("127.0.0.1", px.port) as raw:
        with pytest.raises(pgwire.ServerError) as ei:
            raw.startup("alice", "pgbouncer", password="wrong")
        assert ei.value.sqlstate == "28P01", ei.value
    with pgwire.RawConn("127.0.0.1", px.port) as raw:
        with pytest.raises(pgwire.ServerError) as ei:
            raw.startup("postgres", "pgbouncer", password="pg-pw")  # right password, not an admin
        assert ei.value.sqlstate == "28000", ei.value
    adm = px.connect(dbname="pgbouncer", user="alice", password="alice-pw")
    adm.autocommit = True
    assert show(adm, "VERSION")


def test_console_errors_keep_connection(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    adm = admin(px)
    with pytest.raises(psycopg2.Error) as ei:
        run(adm, "FROBNICATE everything")
    assert ei.value.pgcode == "42601", (ei.value.pgcode, str(ei.value))
    assert show(adm, "VERSION")
    with pytest.raises(psycopg2.Error) as ei:
        run(adm, "SHOW foo")
    assert ei.value.pgcode == "42704", (ei.value.pgcode, str(ei.value))
    assert "foo" in str(ei.value)
    assert show(adm, "VERSION")
    with pytest.raises(psycopg2.Error) as ei:
        run(adm, "SELECT 1")
    assert ei.value.pgcode == "42601", (ei.value.pgcode, str(ei.value))
    # Case and a trailing semicolon, as typed in psql.
    assert run(adm, "show pools;") is not None
    assert run(adm, "Show Stats") is not None
    assert not adm.closed
    assert run(client(px), "SELECT 1") == [(1,)]


def test_extended_protocol_is_refused_clearly(pgmedic):
    import psycopg

    px = pgmedic(pool_mode="transaction", pool_size=2)
    conn = px.connect3(dbname="pgbouncer", autocommit=True)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("SELECT %s", ["x"])  # psycopg 3 with a parameter: Parse/Bind/Execute
    assert "simple query protocol" in str(ei.value), str(ei.value)
    # psycopg 3's client-side cursor sends simple queries: that works.
    conn3 = px.connect3(dbname="pgbouncer", autocommit=True, cursor_factory=psycopg.ClientCursor)
    assert conn3.execute("SHOW VERSION").fetchone()[0].startswith("pgmedic ")
    # On the wire: a Parse gets ErrorResponse 0A000.
    with pgwire.RawConn("127.0.0.1", px.port) as raw:
        raw.startup(SUPERUSER, "pgbouncer")
        raw.send(pgwire.message(b"P", b"\0SHOW POOLS\0\0\0"))
        raw.send(pgwire.message(b"S"))
        kind, fields = raw.read_error_or_close()
        assert kind == "E", (kind, fields)
        assert fields["C"] == "0A000", fields
        assert "simple query protocol" in fields["M"], fields
    # The console is still there for others.
    assert show(admin(px), "VERSION")
