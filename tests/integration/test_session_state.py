"""Session state in transaction pooling mode: pinning.

A statement whose effect outlives its transaction (SET ROLE, LISTEN, DECLARE ...
WITH HOLD, CREATE TEMP, SQL PREPARE, session-level advisory locks, and the SETs
pgmedic cannot replay: set_config(..., false), SET inside a multi-statement query
or sent with Parse, DO blocks) pins the client to its server connection until the
client disconnects (then server_reset_query, DISCARD ALL, cleans the connection
before it goes back to the pool) or runs DISCARD ALL successfully.  Reported
parameters (TimeZone, application_name, ...) are followed through ParameterStatus
instead and need no pin; a plain simple-protocol `SET name = value` of an
unreported parameter is replayed on whichever server connection the client gets
next and needs no pin either (test_set_replay.py covers it in depth; here the
search_path and statement_timeout kinds check it against the same scenario as the
pinning kinds).

Every test runs pgmedic in transaction mode with a pool of one or two server
connections so that clients really share server connections, and checks what
PostgreSQL itself says (pg_backend_pid(), pg_locks, pg_listening_channels(), ...)
rather than what pgmedic reports about itself.  Metrics and stderr are checked
where the feature promises them.
"""
import socket
import threading
import time

import psycopg2
import pytest

from conftest import SUPERUSER, wait_until

ROLE = "pgm_sess_role"
SCHEMA = "pgm_sess_schema"
CHANNEL = "pgm_sess_chan"
LOCK_KEY = 424242
XACT_LOCK_KEY = 434343
REASONS = ("set", "role", "listen", "hold_cursor", "temp_table", "prepare", "advisory_lock")
DEFAULT_SEARCH_PATH = '"$user", public'
PIN_LINE = "pinned to server connection"

# A client queued behind a pinned server gets an error after this long at worst,
# so a test that fails while a thread waits does not hang the suite.
SETTINGS = {"query_wait_timeout": 20}

pytestmark = pytest.mark.timeout_s(60)


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def objects(pg):
    """A role to SET ROLE to and a schema to put on search_path."""
    if not pg.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)):
        pg.sql(f"CREATE ROLE {ROLE} NOLOGIN")
    pg.sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    pg.sql(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {ROLE}")
    return True


def ac(px, **kw):
    """Autocommit psycopg2 connection through pgmedic."""
    c = px.connect(**kw)
    c.autocommit = True
    return c


def rows(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def one(conn, sql, params=None):
    r = rows(conn, sql, params)
    return r[0][0] if r else None


def run(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)


def backend_pid(conn):
    return one(conn, "SELECT pg_backend_pid()")


def local_port(conn):
    """The client-side TCP port of a psycopg2 connection (names it in pgmedic's log)."""
    s = socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    try:
        return s.getsockname()[1]
    finally:
        s.close()


def pin_state(px):
    m = px.metrics()
    return {r: m.get("pgmedic_pins_total", reason=r) for r in REASONS}, m.get("pgmedic_clients_pinned")


def pin_lines(px, conn=None):
    lines = [l for l in px.stderr_text().splitlines() if PIN_LINE in l]
    if conn is not None:
        tag = f"127.0.0.1:{local_port(conn)} "
        lines = [l for l in lines if tag in l]
    return lines


def wait_unpinned(px, n=0, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = pin_state(px)[1]
        if value == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pgmedic_clients_pinned is {value:g} after {timeout}s, expected {n}")
        time.sleep(0.05)


def advisory_holders(direct, key):
    """Backend pids holding the session- or transaction-level advisory lock `key`."""
    r = direct.cursor()
    r.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
              "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
              "AND ((classid::bigint << 32) | objid::bigint) = %s", (key,))
    return sorted(x[0] for x in r.fetchall())


class Bg:
    """Runs fn() in a thread; result()/error available once finished."""

    def __init__(self, fn):
        self.value = None
        self.error = None
        self.t = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.t.start()

    def _run(self, fn):
        try:
            self.value = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            self.error = e

    def done(self):
        return not self.t.is_alive()

    def result(self, timeout):
        self.t.join(timeout)
        assert not self.t.is_alive(), f"still blocked after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.value


def on_each_server(px, fn):
    """pool_size 2: runs fn() once on each of the two server connections (an open
    transaction of another client holds the other one); returns [(pid, fn())]."""
    h1, h2 = px.connect(), px.connect()
    p1, p2 = backend_pid(h1), backend_pid(h2)
    assert p1 != p2
    out = []
    h1.commit()
    out.append((p1, fn()))  # only p1 is free
    assert backend_pid(h1) == p1
    h2.commit()
    out.append((p2, fn()))  # only p2 is free
    h1.commit()
    h1.close()
    h2.close()
    return out


def still_waiting(bg, seconds):
    """True if bg is still blocked `seconds` from now."""
    bg.t.join(seconds)
    return bg.t.is_alive()


def clean_state_row(conn):
    """What a fresh session looks like, through `conn`."""
    return rows(conn, """
        SELECT pg_backend_pid(),
               current_setting('search_path'),
               current_setting('statement_timeout'),
               current_user::text,
               session_user::text,
               to_regclass('pgm_sess_tmp') IS NULL,
               (SELECT count(*) FROM pg_prepared_statements WHERE name = 'pgm_sess_p'),
               (SELECT count(*) FROM pg_cursors WHERE name = 'pgm_sess_c'),
               (SELECT count(*) FROM pg_listening_channels())""")[0]


CLEAN = (DEFAULT_SEARCH_PATH, "0", SUPERUSER, SUPERUSER, True, 0, 0, 0)


# ------------------------------------------------------------------ kinds of session state
# Each kind: the statement (reason label), how client A sees it still there
# (called with the number of checks made before), how a client on the other server connection
# sees nothing of it.


def _notify(direct, payload):
    run(direct, f"NOTIFY {CHANNEL}, %s", (payload,))


def _a_listen(a, direct, step):
    assert one(a, "SELECT array_agg(c) FROM pg_listening_channels() c") == [CHANNEL]
    # Whatever was notified before has arrived with that query's results.
    del a.notifies[:]
    # Delivered while A sits idle (asynchronous NotificationResponse) ...
    _notify(direct, f"idle-{step}")

    def got():
        a.poll()
        return [n.payload for n in a.notifies]
    assert wait_until(got, 5, message="notification to idle pinned client") == [f"idle-{step}"]
    # ... and along with the next query's results.
    del a.notifies[:]
    _notify(direct, f"busy-{step}")
    time.sleep(0.05)
    run(a, "SELECT 1")
    wait_until(got, 5, message="notification with a query")
    assert [n.payload for n in a.notifies] == [f"busy-{step}"]


def _b_listen(b, direct):
    assert one(b, "SELECT count(*) FROM pg_listening_channels()") == 0
    del b.notifies[:]
    _notify(direct, "for-a-only")
    time.sleep(0.1)
    run(b, "SELECT 1")
    b.poll()
    assert b.notifies == []


def _a_cursor(a, direct, step):
    # Each autocommit transaction continues where the last FETCH stopped
    # (step counts the checks made so far).
    assert rows(a, "FETCH 2 FROM pgm_sess_c") == [(2 * step + 1,), (2 * step + 2,)]


def _b_advisory(b, direct):
    holders = advisory_holders(direct, LOCK_KEY)
    assert backend_pid(b) not in holders
    # A transaction-level try lock does not pin B; it fails exactly while A holds the lock.
    return one(b, f"SELECT pg_try_advisory_xact_lock({LOCK_KEY})") is (holders == [])


KINDS = {
    # Plain SETs of unreported parameters: replayed, not pinned (replayed=True).
    "search_path": dict(
        reason="set", sql=f"SET search_path = {SCHEMA}, public", replayed=True,
        a=lambda a, d, s: (one(a, "SHOW search_path") == f"{SCHEMA}, public")
        and one(a, "SELECT current_schema()") == SCHEMA,
        b=lambda b, d: one(b, "SHOW search_path") == DEFAULT_SEARCH_PATH),
    "statement_timeout": dict(
        reason="set", sql="SET statement_timeout = '4321ms'", replayed=True,
        a=lambda a, d, s: one(a, "SHOW statement_timeout") == "4321ms",
        b=lambda b, d: one(b, "SHOW statement_timeout") == "0"),
    "role": dict(
        reason="role", sql=f"SET ROLE {ROLE}",
        a=lambda a, d, s: rows(a, "SELECT current_user::text, session_user::text") == [(ROLE, SUPERUSER)],
        b=lambda b, d: one(b, "SELECT current_user::text") == SUPERUSER),
    "listen": dict(
        reason="listen", sql=f"LISTEN {CHANNEL}",
        a=lambda a, d, s: _a_listen(a, d, s) is None,
        b=lambda b, d: _b_listen(b, d) is None),
    "hold_cursor": dict(
        reason="hold_cursor",
        sql="DECLARE pgm_sess_c CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 100) g ORDER BY g",
        a=lambda a, d, s: _a_cursor(a, d, s) is None,
        b=lambda b, d: one(b, "SELECT count(*) FROM pg_cursors WHERE name = 'pgm_sess_c'") == 0),
    "temp_table": dict(
        reason="temp_table", sql="CREATE TEMP TABLE pgm_sess_tmp AS SELECT 42 AS v",
        a=lambda a, d, s: one(a, "SELECT v FROM pgm_sess_tmp") == 42,
        b=lambda b, d: one(b, "SELECT to_regclass('pgm_sess_tmp') IS NULL") is True),
    "prepare": dict(
        reason="prepare", sql="PREPARE pgm_sess_p(int) AS SELECT $1 * 2",
        a=lambda a, d, s: one(a, "EXECUTE pgm_sess_p(%s)", (21 + s,)) == 42 + 2 * s,
        b=lambda b, d: one(b, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'pgm_sess_p'") == 0),
    "advisory_lock": dict(
        reason="advisory_lock", sql=f"SELECT pg_advisory_lock({LOCK_KEY})",
        a=lambda a, d, s: advisory_holders(d, LOCK_KEY) == [backend_pid(a)],
        b=lambda b, d: _b_advisory(b, d)),
}


# ------------------------------------------------------------------ 1 (and 5, per kind)


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_stays_with_its_client_and_only_there(pgmedic, direct, objects, kind):
    """Pinning kinds: A keeps its server connection, nobody else gets it.
    Replayed kinds (plain SET): A's setting follows A to either server connection
    across its transactions, B and D never see it, and nothing is pinned."""
    k = KINDS[kind]
    replayed = k.get("replayed", False)
    px = pgmedic(pool_size=2, settings=SETTINGS)
    a, b, d = ac(px), ac(px), ac(px)
    # Before the pin both server connections have served everyone.
    for c in (a, b, d, a, b, d):
        run(c, "SELECT 1")
    before, pinned = pin_state(px)
    assert pinned == 0 and pin_lines(px) == []

    run(a, k["sql"])
    a_pid = backend_pid(a)
    after, pinned = pin_state(px)
    if replayed:
        assert pinned == 0
        assert after == before, (before, after)  # pgmedic_pins_total{reason="set"} did not move
    else:
        assert pinned == 1
        assert after == {r: before[r] + (r == k["reason"]) for r in REASONS}, (before, after)

    a_pids = {a_pid}
    others_pids = set()
    bt = px.connect()  # B inside a transaction block: holds the other server
    n = 0
    for step in range(3):
        # B's transaction holds one server while A runs: A must stay on its own
        # (pinned) or run on the other one with its setting replayed.
        b_pid = backend_pid(bt)
        if not replayed:
            assert b_pid != a_pid
        assert k["b"](bt, direct), f"{kind}: B (in a transaction) sees A's state"
        assert k["a"](a, direct, n), f"{kind}: A lost its state at step {step}"
        n += 1
        pid = backend_pid(a)
        if replayed:
            assert pid != b_pid
            a_pids.add(pid)
        else:
            assert pid == a_pid
        others_pids.add(b_pid)
        bt.commit()
        # Autocommit clients never get A's server while A is connected (pinned), or
        # get it without A's setting (replayed).
        for c in (b, d):
            pid = backend_pid(c)
            if not replayed:
                assert pid != a_pid
            others_pids.add(pid)
            assert k["b"](c, direct), f"{kind}: another client sees A's state"
        assert k["a"](a, direct, n), f"{kind}: A lost its state at step {step}"
        n += 1
        pid = backend_pid(a)
        if replayed:
            a_pids.add(pid)
        else:
            assert pid == a_pid

    if replayed:
        # Whichever server connection each runs on: A with its setting, the others without.
        for c in (a, b, d):
            want = k["a"] if c is a else (lambda x, dd, s: k["b"](x, dd))
            res = on_each_server(px, lambda: (backend_pid(c), want(c, direct, n), backend_pid(c)))
            for held_free, (p1, ok, p2) in res:
                assert p1 == p2 == held_free
                assert ok, f"{kind}: wrong state on server {held_free} for {'A' if c is a else 'another client'}"
                (a_pids if c is a else others_pids).add(p1)
        assert len(a_pids) == 2 and a_pids == others_pids, (a_pids, others_pids)
        # No pin, no log line.
        assert pin_lines(px) == []
        assert pin_state(px) == (before, 0)
    else:
        # One log line for A's pin, naming the statement.
        lines = pin_lines(px, a)
        assert len(lines) == 1, lines
        assert k["sql"] in lines[0]
        assert len(pin_lines(px)) == 1
        assert pin_state(px) == (after, 1)

    a.close()
    wait_unpinned(px)
    assert pin_state(px)[0] == after
    if kind == "advisory_lock":
        wait_until(lambda: advisory_holders(direct, LOCK_KEY) == [], 5, message="lock released")
    # Both server connections serve the others cleanly afterwards.
    for _ in range(4):
        for c in (b, d):
            assert k["b"](c, direct)
    assert backend_pid(bt) is not None
    bt.rollback()


# ------------------------------------------------------------------ 2


def test_disconnect_resets_the_server_connection(pgmedic, direct, objects):
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a = ac(px)
    for sql in (f"SET search_path = {SCHEMA}, public",
                "SET statement_timeout = '4321ms'",
                f"LISTEN {CHANNEL}",
                "DECLARE pgm_sess_c CURSOR WITH HOLD FOR SELECT 1",
                "CREATE TEMP TABLE pgm_sess_tmp (v int)",
                "PREPARE pgm_sess_p AS SELECT 1",
                f"SELECT pg_advisory_lock({LOCK_KEY})",
                f"SET ROLE {ROLE}"):
        run(a, sql)
    a_pid = backend_pid(a)
    row = clean_state_row(a)
    assert row[0] == a_pid
    assert row[1:] == (f"{SCHEMA}, public", "4321ms", ROLE, SUPERUSER, False, 1, 1, 1)
    assert advisory_holders(direct, LOCK_KEY) == [a_pid]
    assert pin_state(px)[1] == 1

    a.close()
    wait_unpinned(px)
    c = ac(px)
    row = clean_state_row(c)
    # The same server connection, reset (not replaced by a new one).
    assert row[0] == a_pid
    assert row[1:] == CLEAN
    assert advisory_holders(direct, LOCK_KEY) == []
    del c.notifies[:]
    _notify(direct, "after-reset")
    time.sleep(0.1)
    run(c, "SELECT 1")
    c.poll()
    assert c.notifies == []
    assert px.metrics().get("pgmedic_server_connections_total") == 1


def test_disconnect_inside_transaction_closes_pinned_server(pgmedic, direct, objects):
    """A pinned client leaving mid-transaction: the server connection is closed,
    not reset and handed on; the pin is gone."""
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a = px.connect()  # not autocommit: BEGIN is sent first
    run(a, f"SELECT pg_advisory_lock({LOCK_KEY})")
    a_pid = backend_pid(a)
    assert pin_state(px)[1] == 1
    a.close()
    wait_unpinned(px)
    c = ac(px)
    row = clean_state_row(c)
    assert row[0] != a_pid
    assert row[1:] == CLEAN
    assert advisory_holders(direct, LOCK_KEY) == []


# ------------------------------------------------------------------ 3


def test_discard_all_unpins_and_lets_others_in(pgmedic, direct, objects):
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    run(a, f"SET search_path = {SCHEMA}, public")
    run(a, "CREATE TEMP TABLE pgm_sess_tmp (v int)")
    a_pid = backend_pid(a)

    waiter = Bg(lambda: clean_state_row(b))
    assert still_waiting(waiter, 1.0), f"B ran on A's pinned server: {waiter.value or waiter.error}"
    m = px.metrics()
    assert m.get("pgmedic_clients", state="waiting") == 1
    # A keeps working meanwhile.
    assert one(a, "SHOW search_path") == f"{SCHEMA}, public"
    assert one(a, "SELECT count(*) FROM pgm_sess_tmp") == 0

    run(a, "DISCARD ALL")
    row = waiter.result(5)
    assert row[0] == a_pid
    assert row[1:] == CLEAN
    assert pin_state(px)[1] == 0
    lines = [l for l in px.stderr_text().splitlines() if "unpinned from its server connection" in l]
    assert len(lines) == 1 and "DISCARD ALL" in lines[0], lines
    # A is an ordinary transaction-mode client now: A and B share the server.
    assert one(a, "SHOW search_path") == DEFAULT_SEARCH_PATH
    assert backend_pid(a) == backend_pid(b) == a_pid


def test_failed_discard_all_does_not_unpin(pgmedic, direct, objects):
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = px.connect(), ac(px)  # A not autocommit: psycopg2 sends BEGIN first
    run(b, "SELECT 1")
    a.autocommit = True
    # A pinning SET (a plain SET would be replayed instead of pinning).
    run(a, f"SELECT set_config('search_path', '{SCHEMA}, public', false)")
    a_pid = backend_pid(a)
    assert pin_state(px)[1] == 1
    a.autocommit = False

    waiter = Bg(lambda: clean_state_row(b))
    assert still_waiting(waiter, 0.5)
    with pytest.raises(psycopg2.errors.ActiveSqlTransaction):
        run(a, "DISCARD ALL")  # inside BEGIN: refused by PostgreSQL
    assert still_waiting(waiter, 0.5), "B got in while A was in its failed transaction"
    a.rollback()
    assert still_waiting(waiter, 1.0), "failed DISCARD ALL unpinned A"
    assert pin_state(px)[1] == 1
    a.autocommit = True
    assert one(a, "SHOW search_path") == f"{SCHEMA}, public"  # state survived
    assert backend_pid(a) == a_pid
    assert still_waiting(waiter, 0.3)

    a.close()
    row = waiter.result(5)
    assert row[0] == a_pid
    assert row[1:] == CLEAN
    assert pin_state(px)[1] == 0


# ------------------------------------------------------------------ 4


def test_transaction_scoped_and_reported_state_does_not_pin(pgmedic, direct, objects):
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(a, "SELECT 1")
    before = pin_state(px)
    assert before[1] == 0

    # SET LOCAL: gone at COMMIT.
    a.autocommit = False
    run(a, f"SET LOCAL search_path = {SCHEMA}")
    assert one(a, "SHOW search_path") == SCHEMA
    a.commit()
    assert one(a, "SHOW search_path") == DEFAULT_SEARCH_PATH
    # SET TRANSACTION: only that transaction.
    run(a, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    assert one(a, "SHOW transaction_isolation") == "serializable"
    a.commit()
    # DECLARE without HOLD: closed at COMMIT.
    run(a, "DECLARE pgm_sess_c CURSOR FOR SELECT g FROM generate_series(1, 3) g")
    assert rows(a, "FETCH 1 FROM pgm_sess_c") == [(1,)]
    a.commit()
    a.autocommit = True
    assert one(a, "SELECT count(*) FROM pg_cursors") == 0
    # Transaction-level advisory lock: released at the end of the statement's transaction.
    a_pid = backend_pid(a)
    assert one(a, f"SELECT pg_advisory_xact_lock({XACT_LOCK_KEY})::text") == ""
    assert advisory_holders(direct, XACT_LOCK_KEY) == []
    a.autocommit = False
    run(a, f"SELECT pg_advisory_xact_lock({XACT_LOCK_KEY})")
    assert advisory_holders(direct, XACT_LOCK_KEY) == [a_pid]
    a.commit()
    assert advisory_holders(direct, XACT_LOCK_KEY) == []
    a.autocommit = True

    # Reported parameters follow each client to whichever server it gets.
    run(a, "SET TIME ZONE 'Asia/Tokyo'")
    run(a, "SET application_name = 'pgm_sess_app_a'")
    run(b, "SET TIME ZONE 'America/New_York'")
    run(b, "SET application_name TO 'pgm_sess_app_b'")
    ts = "SELECT current_setting('TimeZone'), current_setting('application_name'), " \
         "'2020-01-01 00:00:00+00'::timestamptz::text, pg_backend_pid()"
    pids = set()
    for _ in range(3):
        ra = rows(a, ts)[0]
        rb = rows(b, ts)[0]
        assert ra[:3] == ("Asia/Tokyo", "pgm_sess_app_a", "2020-01-01 09:00:00+09")
        assert rb[:3] == ("America/New_York", "pgm_sess_app_b", "2019-12-31 19:00:00-05")
        pids |= {ra[3], rb[3]}
    assert pids == {a_pid}, "with pool_size 1 both clients must share one server connection"
    # A client that set nothing sees the server defaults, not A's or B's.
    c = ac(px)
    assert rows(c, ts)[0][:2] == (one(direct, "SHOW TimeZone"), "")

    assert pin_state(px) == before
    assert pin_lines(px) == []


# ------------------------------------------------------------------ 5


def test_pin_metrics_and_log_lines(pgmedic, objects):
    px = pgmedic(pool_size=3, settings=SETTINGS)
    a, b, e = ac(px), ac(px), ac(px)
    for c in (a, b, e):
        run(c, "SELECT 1")
    base, pinned = pin_state(px)
    assert pinned == 0

    def delta():
        now, _ = pin_state(px)
        return {r: now[r] - base[r] for r in REASONS if now[r] != base[r]}

    run(a, "SET search_path = public")          # plain SET: replayed, no pin
    assert delta() == {} and pin_state(px)[1] == 0
    run(a, "SELECT set_config('search_path', 'public', false)")
    assert delta() == {"set": 1} and pin_state(px)[1] == 1
    run(a, "SELECT set_config('statement_timeout', '5s', false)")  # same kind again: no new count
    run(a, "SET search_path = public")
    assert delta() == {"set": 1}
    run(a, f"LISTEN {CHANNEL}")                  # new kind for A
    assert delta() == {"set": 1, "listen": 1}
    run(b, f"/* hello */ select 1; listen {CHANNEL}")  # lower case, after a comment and another statement
    assert delta() == {"set": 1, "listen": 2} and pin_state(px)[1] == 2
    run(b, f"SELECT pg_advisory_lock({LOCK_KEY}), pg_advisory_unlock({LOCK_KEY})")
    run(b, "PREPARE pgm_sess_p AS SELECT 1; CREATE TEMPORARY TABLE pgm_sess_tmp (v int)")
    assert delta() == {"set": 1, "listen": 2, "advisory_lock": 1, "prepare": 1, "temp_table": 1}
    # Not pinning: strings and dollar quotes that merely mention such statements.
    run(e, "SELECT 'SET search_path = x', $q$LISTEN y$q$, \"pg_advisory_lock\" FROM "
           "(SELECT 1 AS \"pg_advisory_lock\") s -- ; SET ROLE x")
    assert pin_state(px)[1] == 2

    la, lb = pin_lines(px, a), pin_lines(px, b)
    assert len(la) == 1 and "SELECT set_config('search_path', 'public', false)" in la[0], la
    assert len(lb) == 1 and f"listen {CHANNEL}" in lb[0], lb
    assert pin_lines(px, e) == []
    assert len(pin_lines(px)) == 2

    a.close()
    wait_unpinned(px, 1)
    b.close()
    wait_unpinned(px, 0)
    assert delta() == {"set": 1, "listen": 2, "advisory_lock": 1, "prepare": 1, "temp_table": 1}

    # After DISCARD ALL a client is a new client as far as pins go.
    run(e, "SET ROLE " + ROLE)
    assert pin_state(px)[1] == 1
    run(e, "DISCARD ALL")
    assert pin_state(px)[1] == 0
    run(e, "SET ROLE " + ROLE)
    assert pin_state(px)[1] == 1
    assert delta()["role"] == 2
    assert one(e, "SELECT current_user::text") == ROLE
    e.close()
    wait_unpinned(px, 0)


# ------------------------------------------------------------------ 6


def test_session_mode_does_not_pin(pgmedic, direct, objects):
    px = pgmedic(pool_mode="session", pool_size=1, settings=SETTINGS)
    a = ac(px)
    for sql in (f"SET search_path = {SCHEMA}, public", f"LISTEN {CHANNEL}",
                "CREATE TEMP TABLE pgm_sess_tmp AS SELECT 7 AS v",
                "PREPARE pgm_sess_p AS SELECT 8", f"SELECT pg_advisory_lock({LOCK_KEY})",
                f"SET ROLE {ROLE}"):
        run(a, sql)
    a_pid = backend_pid(a)
    for _ in range(3):
        assert one(a, "SHOW search_path") == f"{SCHEMA}, public"
        assert one(a, "SELECT to_regclass('pgm_sess_tmp') IS NOT NULL") is True  # owned by postgres
        assert one(a, "EXECUTE pgm_sess_p") == 8
        assert one(a, "SELECT current_user::text") == ROLE
        assert advisory_holders(direct, LOCK_KEY) == [a_pid]
    pins, pinned = pin_state(px)
    assert pinned == 0 and all(v == 0 for v in pins.values()), pins
    assert pin_lines(px) == []
    a.close()
    c = ac(px)
    row = clean_state_row(c)
    assert row[0] == a_pid and row[1:] == CLEAN
    assert advisory_holders(direct, LOCK_KEY) == []
    assert pin_state(px)[1] == 0


# ------------------------------------------------------------------ edges


def test_pinned_client_losing_its_server_is_unpinned(pgmedic, direct, objects):
    """The server connection under a pinned client dies (pg_terminate_backend):
    the client gets an error and is closed; the pinned-clients gauge must follow."""
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a = ac(px)
    run(a, "SELECT set_config('search_path', 'public', false)")
    a_pid = backend_pid(a)
    assert pin_state(px)[1] == 1
    assert one(direct, "SELECT pg_terminate_backend(%s)", (a_pid,)) is True
    with pytest.raises(psycopg2.OperationalError):
        for _ in range(20):
            run(a, "SELECT 1")
            time.sleep(0.05)
    c = ac(px)
    assert clean_state_row(c)[1:] == CLEAN
    wait_unpinned(px, 0, timeout=3)


def test_extended_protocol_pins_and_discard_all_unpins(pgmedic, objects):
    """psycopg 3 sends statements with Parse/Bind/Execute when asked to (binary
    results, or parameters; a statement without parameters would go as a simple
    Query, where a plain SET is replayed instead of pinned)."""
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a = px.connect3(autocommit=True)
    b = ac(px)
    a.execute(f"SET search_path = {SCHEMA}, public", binary=True)
    a_pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert pin_state(px)[1] == 1
    waiter = Bg(lambda: clean_state_row(b))
    assert still_waiting(waiter, 0.8)
    assert a.execute("SHOW search_path").fetchone()[0] == f"{SCHEMA}, public"
    a.execute("DISCARD ALL")
    row = waiter.result(5)
    assert row[0] == a_pid and row[1:] == CLEAN
    assert pin_state(px)[1] == 0


def test_pinning_does_not_depend_on_max_prepared_statements(pgmedic, objects):
    """max_prepared_statements = 0 (PgBouncer's default) turns off statement-name
    mapping; session state must still pin rather than leak to the next client."""
    px = pgmedic(pool_size=1, settings=dict(SETTINGS, max_prepared_statements=0))
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    run(a, f"SELECT set_config('search_path', '{SCHEMA}, public', false)")
    waiter = Bg(lambda: one(b, "SHOW search_path"))
    if not still_waiting(waiter, 1.0):
        pytest.fail(f"A not pinned: B ran on A's server and saw search_path = {waiter.value!r} "
                    f"(error {waiter.error!r}); pgmedic_clients_pinned = {pin_state(px)[1]}")
    a.close()
    assert waiter.result(5) == DEFAULT_SEARCH_PATH


def test_set_config_session_level_does_not_leak(pgmedic, objects):
    """set_config(name, value, false) is SET by another name: it must not leak."""
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    run(a, f"SELECT set_config('search_path', '{SCHEMA}', false)")
    waiter = Bg(lambda: one(b, "SHOW search_path"))
    if not still_waiting(waiter, 1.0):
        assert waiter.error is None
        assert waiter.value == DEFAULT_SEARCH_PATH, \
            f"A's session-level set_config leaked to B (pgmedic_clients_pinned = {pin_state(px)[1]})"
    a.close()
    assert waiter.result(5) == DEFAULT_SEARCH_PATH


# ------------------------------------------------------------------ statements that remove state

RELEASES = {
    # kind: (create instance {n}, remove instance {n}, remove every instance)
    "listen": ("LISTEN pgm_rel_ch_{n}", "UNLISTEN pgm_rel_ch_{n}", "UNLISTEN *"),
    "hold_cursor": ("DECLARE pgm_rel_c_{n} CURSOR WITH HOLD FOR SELECT 1", "CLOSE pgm_rel_c_{n}", "CLOSE ALL"),
    "prepare": ("PREPARE pgm_rel_p_{n} AS SELECT 1", "DEALLOCATE pgm_rel_p_{n}", "DEALLOCATE ALL"),
    "temp_table": ("CREATE TEMP TABLE pgm_rel_t_{n} (v int)", "DROP TABLE pgm_rel_t_{n}", "DISCARD TEMP"),
    "advisory_lock": (f"SELECT pg_advisory_lock({LOCK_KEY} + {{n}})", f"SELECT pg_advisory_unlock({LOCK_KEY} + {{n}})",
                      "SELECT pg_advisory_unlock_all()"),
}


@pytest.mark.parametrize("kind", sorted(RELEASES))
def test_state_gone_unpins(pgmedic, direct, objects, kind):
    """A pin lasts exactly as long as its state: removing one of two channels,
    cursors, statements or tables keeps it; removing the last one (alone on the
    wire, outside a transaction block, successfully) releases it.  Advisory locks
    stack per key and are not followed one by one: only pg_advisory_unlock_all()
    releases them."""
    create, remove_one, remove_all = RELEASES[kind]
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    run(a, create.format(n=1))
    run(a, create.format(n=2))
    a_pid = backend_pid(a)
    assert pin_state(px)[1] == 1
    waiter = Bg(lambda: clean_state_row(b))
    assert still_waiting(waiter, 0.5), f"B ran on A's pinned server: {waiter.value or waiter.error}"

    run(a, remove_one.format(n=1))
    assert still_waiting(waiter, 0.5), f"{remove_one.format(n=1)} unpinned A with another instance left"
    run(a, remove_one.format(n=2))
    if kind == "advisory_lock":
        assert still_waiting(waiter, 0.5), "advisory locks are not followed one by one"
        run(a, remove_all)
    row = waiter.result(5)
    assert row[0] == a_pid and row[1:] == CLEAN
    assert pin_state(px)[1] == 0
    lines = [l for l in px.stderr_text().splitlines() if "unpinned from its server connection" in l]
    assert len(lines) == 1 and "is gone" in lines[0], lines
    # an ordinary transaction-mode client again: A and B share the one server
    assert backend_pid(a) == backend_pid(b) == a_pid
    if kind == "advisory_lock":
        assert advisory_holders(direct, LOCK_KEY + 1) == advisory_holders(direct, LOCK_KEY + 2) == []


@pytest.mark.parametrize("kind", sorted(RELEASES))
def test_whole_kind_release_unpins_outside_transaction_blocks(pgmedic, direct, objects, kind):
    """UNLISTEN *, CLOSE ALL, DEALLOCATE ALL, DISCARD TEMP, pg_advisory_unlock_all():
    every instance at once.  Inside a transaction block nothing is released (a
    ROLLBACK would bring the state back); alone and outside one, the pin goes."""
    create, _, remove_all = RELEASES[kind]
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    run(a, create.format(n=1))
    run(a, create.format(n=2))
    waiter = Bg(lambda: clean_state_row(b))
    assert still_waiting(waiter, 0.5)
    a.autocommit = False
    run(a, remove_all)
    a.commit()
    a.autocommit = True
    assert still_waiting(waiter, 0.5), f"{remove_all} inside a transaction block unpinned A"
    run(a, remove_all)
    assert waiter.result(5)[1:] == CLEAN
    assert pin_state(px)[1] == 0


def test_release_of_one_kind_keeps_a_pin_of_another(pgmedic, direct, objects):
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    run(a, f"LISTEN {CHANNEL}")
    run(a, "CREATE TEMP TABLE pgm_rel_tmp (v int)")
    waiter = Bg(lambda: clean_state_row(b))
    run(a, "UNLISTEN *")
    assert still_waiting(waiter, 0.5), "A was unpinned with its temporary table still there"
    assert one(a, "SELECT count(*) FROM pgm_rel_tmp") == 0
    run(a, "DISCARD TEMP")
    assert waiter.result(5)[1:] == CLEAN
    assert pin_state(px)[1] == 0


def test_libpg_query_confirms_what_the_scanner_suspects(pgmedic, pg, objects):
    """The scanner flags any mention of an advisory lock function or set_config();
    libpg_query decides: a column that happens to be named pg_advisory_lock and a
    transaction-local set_config(..., true) pin nothing, a real call does."""
    pg.sql("DROP TABLE IF EXISTS pgm_conf_t")
    pg.sql("CREATE TABLE pgm_conf_t (pg_advisory_lock int)")
    try:
        px = pgmedic(pool_size=1, settings=SETTINGS)
        a = ac(px)
        assert rows(a, "SELECT pg_advisory_lock FROM pgm_conf_t") == []
        a.autocommit = False
        assert one(a, f"SELECT set_config('search_path', '{SCHEMA}', true)") == SCHEMA
        a.commit()
        a.autocommit = True
        assert pin_state(px)[1] == 0 and pin_lines(px) == []
        assert one(a, "SHOW search_path") == DEFAULT_SEARCH_PATH
        run(a, f"SELECT pg_advisory_lock({LOCK_KEY})")
        assert pin_state(px)[1] == 1
        run(a, "SELECT pg_advisory_unlock_all()")
        wait_unpinned(px)
    finally:
        pg.sql("DROP TABLE IF EXISTS pgm_conf_t")
