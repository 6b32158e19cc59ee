"""Plain SETs in transaction pooling mode: recorded and replayed, not pinned.

A simple-protocol query that is exactly one `SET [SESSION] name {TO|=} value`,
`RESET name` or `RESET ALL` of a parameter PostgreSQL does not report does not pin
the client.  pgmedic records it once the server confirms it (ReadyForQuery without
an error; inside a transaction block only if the transaction commits), replays it
(`SET name TO <value as written>`) on whichever server connection the client gets
next, and RESETs it for other clients.  RESET ALL / DISCARD ALL drop the client's
SETs; startup options (`options='-c name=value'`) survive them, as they do on a
direct connection.

Every test runs pgmedic in transaction mode with one server connection (so that
clients really take turns on it and every turn needs a replay or a RESET) or two
(then `on_each_server` makes a client run once on each of them), and checks what
PostgreSQL says (current_setting(), SHOW, pg_backend_pid(), unqualified table
names) rather than what pgmedic reports about itself.  Where PostgreSQL's own
behaviour is the expectation, the same statements run on a direct connection
first (`direct_state`).
"""
import re
import time

import psycopg2
import psycopg2.errors
import pytest

import pgwire

SETTINGS = {"query_wait_timeout": 20}
pytestmark = pytest.mark.timeout_s(60)

SCHEMA = "pgm_replay_schema"
QSCHEMA = "My Schema"            # needs quoting: space and capitals
GUCS = ("search_path", "statement_timeout", "work_mem", "my.flag")
DEFAULTS = {"search_path": '"$user", public', "statement_timeout": "0", "work_mem": "4MB", "my.flag": ""}
STATE_SQL = ("SELECT current_setting('search_path'), current_setting('statement_timeout'), "
             "current_setting('work_mem'), coalesce(current_setting('my.flag', true), ''), pg_backend_pid()")
REASONS = ("set", "role", "listen", "hold_cursor", "temp_table", "prepare", "advisory_lock")
PIN_WORD = re.compile(r"(?<!un)pinned")


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def objects(pg):
    """Schemas to put on search_path, each with a table only reachable through it."""
    pg.sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    pg.sql(f'CREATE SCHEMA IF NOT EXISTS "{QSCHEMA}"')
    pg.sql(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.replay_plain AS SELECT 'plain'::text AS v")
    pg.sql(f'CREATE TABLE IF NOT EXISTS "{QSCHEMA}".replay_quoted AS SELECT \'quoted\'::text AS v')
    pg.sql("CREATE TABLE IF NOT EXISTS replay_deferred (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    pg.sql("TRUNCATE replay_deferred")
    return True


def ac(px, **kw):
    """Autocommit psycopg2 connection through pgmedic."""
    c = px.connect(**kw)
    c.autocommit = True
    return c


def run(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def one(conn, sql, params=None):
    r = run(conn, sql, params)
    return r[0][0] if r else None


def backend_pid(conn):
    return one(conn, "SELECT pg_backend_pid()")


def state(conn):
    """({guc: value}, server pid) in one query (inside a transaction block if conn has one)."""
    *vals, pid = run(conn, STATE_SQL)[0]
    return dict(zip(GUCS, vals)), pid


def shown(conn):
    """{guc: value} as SHOW says, one autocommit statement each ('' for a custom
    parameter the server has never heard of)."""
    assert conn.autocommit
    out = {}
    for g in GUCS:
        try:
            out[g] = one(conn, f"SHOW {g}")
        except psycopg2.errors.UndefinedObject:
            out[g] = ""
    return out


def expect(conn, want, who):
    """conn sees exactly `want` (current_setting and SHOW); returns its server pid."""
    got, pid = state(conn)
    assert got == want, f"{who} on server {pid}: {got} != {want}"
    if conn.autocommit:
        got = shown(conn)
        assert got == want, f"{who} (SHOW): {got} != {want}"
    return pid


def with_(**kv):
    return dict(DEFAULTS, **{k.replace("my_", "my."): v for k, v in kv.items()})


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


def check_all(px, pool_size, views, rounds=4):
    """views: [(conn, wanted state, name)].  pool_size 1: the clients take turns on
    the one server connection `rounds` times; pool_size 2: each runs on both."""
    pids = set()
    if pool_size == 1:
        for _ in range(rounds):
            for conn, want, who in views:
                pids.add(expect(conn, want, who))
        assert len(pids) == 1, pids
    else:
        for conn, want, who in views:
            for held_free, pid in on_each_server(px, lambda: expect(conn, want, who)):
                assert pid == held_free
                pids.add(pid)
        assert len(pids) == 2, pids
    return pids


def pin_state(px):
    m = px.metrics()
    return {r: m.get("pgmedic_pins_total", reason=r) for r in REASONS}, m.get("pgmedic_clients_pinned")


def pin_log(px):
    return [l for l in px.stderr_text().splitlines() if PIN_WORD.search(l)]


def assert_no_pins(px, base):
    assert pin_state(px) == (base, 0)
    assert pin_log(px) == []


def wait_unpinned(px, timeout=5.0):
    deadline = time.monotonic() + timeout
    while pin_state(px)[1] != 0:
        assert time.monotonic() < deadline, f"pgmedic_clients_pinned still {pin_state(px)[1]:g}"
        time.sleep(0.05)


def direct_state(pg, statements, **kw):
    """What PostgreSQL itself says after `statements` on a direct autocommit connection."""
    conn = pg.connect(**kw)
    conn.autocommit = True
    try:
        for sql in statements:
            run(conn, sql)
        return state(conn)[0]
    finally:
        conn.close()


# ------------------------------------------------------------------ persists, never leaks


@pytest.mark.parametrize("pool_size,mps", [(1, None), (2, None), (1, 0)],
                         ids=["pool1", "pool2", "pool1-max_prepared_statements0"])
def test_set_follows_its_client_and_never_leaks(pgmedic, objects, pool_size, mps):
    settings = dict(SETTINGS) if mps is None else dict(SETTINGS, max_prepared_statements=mps)
    px = pgmedic(pool_size=pool_size, settings=settings)
    a, b, c = ac(px), ac(px), ac(px)
    for x in (a, b, c):
        run(x, "SELECT 1")
    base = pin_state(px)[0]

    run(a, f"SET search_path = {SCHEMA}, public")
    run(a, "SET SESSION statement_timeout TO 4321")
    run(a, "set work_mem = '6MB'")
    run(a, "SET My.Flag TO 'a-flag';")
    run(c, "SET work_mem TO '9MB'")  # the same parameter, another value, another client
    want_a = with_(search_path=f"{SCHEMA}, public", statement_timeout="4321ms", work_mem="6MB",
                   my_flag="a-flag")
    want_b = DEFAULTS
    want_c = with_(work_mem="9MB")
    views = [(a, want_a, "A"), (b, want_b, "B"), (c, want_c, "C")]
    check_all(px, pool_size, views)

    # A keeps it across many transactions of its own, explicit ones included,
    # with B and C taking turns in between.
    for i in range(8):
        a.autocommit = i % 2 == 0
        expect(a, want_a, f"A, transaction {i}")
        assert one(a, "SELECT v FROM replay_plain") == "plain"  # found through A's search_path
        if not a.autocommit:
            a.commit()
        expect(b, want_b, "B")
        with pytest.raises(psycopg2.errors.UndefinedTable):
            run(b, "SELECT v FROM replay_plain")
        expect(c, want_c, "C")
    a.autocommit = True
    check_all(px, pool_size, views, rounds=2)
    # A client arriving later sees the defaults too.
    d = ac(px)
    check_all(px, pool_size, [(d, DEFAULTS, "D")], rounds=2)
    assert_no_pins(px, base)

    # A leaves: nothing of it is left anywhere.
    a.close()
    check_all(px, pool_size, [(b, want_b, "B"), (c, want_c, "C"), (d, DEFAULTS, "D")], rounds=2)
    assert_no_pins(px, base)


# ------------------------------------------------------------------ transaction blocks


def test_failing_set_changes_nothing(pgmedic, objects):
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    base = pin_state(px)[0]
    run(a, "SET statement_timeout = '300ms'")
    want = with_(statement_timeout="300ms")

    with pytest.raises(psycopg2.errors.InvalidParameterValue):
        run(a, "SET statement_timeout = 'abc'")
    with pytest.raises(psycopg2.errors.InvalidParameterValue):
        run(a, "SET work_mem = 'lots'")
    with pytest.raises(psycopg2.errors.UndefinedObject):
        run(a, "SET no_such_parameter = 1")
    with pytest.raises(psycopg2.errors.UndefinedObject):
        run(a, "RESET no_such_parameter")
    a.autocommit = False
    with pytest.raises(psycopg2.errors.InvalidParameterValue):
        run(a, "SET work_mem = 'more'")
    a.rollback()
    a.autocommit = True
    check_all(px, 1, [(a, want, "A"), (b, DEFAULTS, "B")])

    # The valid one works, on A only (after B had the server: a replayed SET).
    expect(b, DEFAULTS, "B")
    with pytest.raises(psycopg2.errors.QueryCanceled):
        run(a, "SELECT pg_sleep(2)")
    assert one(b, "SELECT pg_sleep(0.5)::text") == ""
    assert_no_pins(px, base)


# ------------------------------------------------------------------ RESET, DEFAULT


@pytest.mark.parametrize("pool_size", [1, 2])
def test_reset_and_set_to_default(pgmedic, objects, pool_size):
    px = pgmedic(pool_size=pool_size, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    base = pin_state(px)[0]
    run(a, f"SET search_path = {SCHEMA}, public")
    run(a, "SET work_mem = '6MB'")
    run(a, "SET my.flag = 'a'")
    run(a, "SET statement_timeout = '5s'")
    run(b, "SET work_mem = '9MB'")
    run(b, "SET my.flag = 'b'")
    want_a = with_(search_path=f"{SCHEMA}, public", work_mem="6MB", my_flag="a", statement_timeout="5s")
    want_b = with_(work_mem="9MB", my_flag="b")
    check_all(px, pool_size, [(a, want_a, "A"), (b, want_b, "B")], rounds=2)

    run(a, "RESET work_mem")
    want_a["work_mem"] = DEFAULTS["work_mem"]
    check_all(px, pool_size, [(a, want_a, "A"), (b, want_b, "B")], rounds=2)
    run(a, "SET search_path TO DEFAULT")
    run(a, "SET statement_timeout = DEFAULT")
    run(a, "SET my.flag TO DEFAULT")
    want_a.update(search_path=DEFAULTS["search_path"], statement_timeout="0", **{"my.flag": ""})
    check_all(px, pool_size, [(a, want_a, "A"), (b, want_b, "B")], rounds=2)
    run(a, "RESET search_path")  # already the default
    check_all(px, pool_size, [(a, want_a, "A"), (b, want_b, "B")], rounds=2)
    assert_no_pins(px, base)


@pytest.mark.parametrize("drop", ["RESET ALL", "DISCARD ALL"])
def test_reset_all_and_discard_all_keep_startup_options(pgmedic, pg, objects, drop):
    opts = "-c work_mem=7MB"
    setup = [f"SET search_path = {SCHEMA}, public", "SET statement_timeout = '3s'", "SET my.flag = 'x'"]
    startup = with_(work_mem="7MB")
    set_ = with_(work_mem="7MB", search_path=f"{SCHEMA}, public", statement_timeout="3s", my_flag="x")
    assert direct_state(pg, setup, options=opts) == set_
    after = direct_state(pg, setup + [drop], options=opts)
    # A custom parameter set in the session survives as an empty placeholder.
    assert after == startup, after

    px = pgmedic(pool_size=2, settings=SETTINGS)
    a, b = ac(px, options=opts), ac(px)
    run(b, "SELECT 1")
    base = pin_state(px)[0]
    check_all(px, 2, [(a, startup, "A"), (b, DEFAULTS, "B")])
    for _ in range(2):
        for sql in setup:
            run(a, sql)
        check_all(px, 2, [(a, set_, "A"), (b, DEFAULTS, "B")])
        run(a, drop)
        check_all(px, 2, [(a, startup, "A"), (b, DEFAULTS, "B")])
    assert_no_pins(px, base)


@pytest.mark.parametrize("steps", [
    ["SET work_mem = '9MB'", "RESET work_mem"],
    ["SET work_mem = '9MB'", "RESET ALL"],
    ["SET work_mem = '9MB'", "DISCARD ALL"],
    ["SET work_mem TO DEFAULT"],
    ["RESET work_mem"],
    ["RESET ALL"],
], ids=["set-reset", "set-reset_all", "set-discard_all", "set_to_default", "reset", "reset_all"])
def test_startup_option_is_the_session_default(pgmedic, pg, objects, steps):
    """RESET, SET TO DEFAULT, RESET ALL and DISCARD ALL return a parameter given
    in the startup packet to its startup value, not to the server's default."""
    opts = "-c work_mem=7MB"
    want = direct_state(pg, steps, options=opts)
    assert want == with_(work_mem="7MB")
    px = pgmedic(pool_size=2, settings=SETTINGS)
    a, b = ac(px, options=opts), ac(px)
    run(b, "SELECT 1")
    for sql in steps:
        run(a, sql)
    check_all(px, 2, [(a, want, "A"), (b, DEFAULTS, "B")])


# ------------------------------------------------------------------ values as written


@pytest.mark.parametrize("pool_size", [1, 2])
def test_quoted_values_and_reported_parameters(pgmedic, pg, objects, pool_size):
    px = pgmedic(pool_size=pool_size, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    base = pin_state(px)[0]
    run(a, f'SET search_path TO "{QSCHEMA}", public')
    run(a, "SET application_name = 'app, with ''quotes'' and; semicolon'")
    want = with_(search_path=f'"{QSCHEMA}", public')
    assert direct_state(pg, [f'SET search_path TO "{QSCHEMA}", public']) == want

    def a_view():
        pid = expect(a, want, "A")
        assert one(a, "SELECT v FROM replay_quoted") == "quoted"
        assert one(a, "SHOW application_name") == "app, with 'quotes' and; semicolon"
        return pid

    def b_view():
        pid = expect(b, DEFAULTS, "B")
        with pytest.raises(psycopg2.errors.UndefinedTable):
            run(b, "SELECT v FROM replay_quoted")
        assert one(b, "SHOW application_name") == ""
        return pid

    if pool_size == 1:
        assert len({f() for _ in range(3) for f in (a_view, b_view)}) == 1
    else:
        for f in (a_view, b_view):
            for held_free, pid in on_each_server(px, f):
                assert pid == held_free
    assert_no_pins(px, base)


# (name, value as written, what a client that did not set it sees)
VALUES = [
    ("my.x", "'a;b'", ""),
    ("my.x", "E'a;b\\'c'", ""),
    ("my.x", "$$a;b$$", ""),
    ("search_path", "public, 'a;b'", DEFAULTS["search_path"]),
    ("search_path", "public /* not; the end */, pg_catalog", DEFAULTS["search_path"]),
    ("search_path", "'with,comma', \"it's\", public", DEFAULTS["search_path"]),
    ("my.x", "'" + "long-" * 1000 + "'", ""),
    ("default_transaction_read_only", "on", "off"),  # reported by PostgreSQL 14+, not followed by pgmedic
]


@pytest.mark.parametrize("name,value,other", VALUES,
                         ids=["semicolon", "semicolon-E-string", "semicolon-dollar", "semicolon-in-list", "semicolon-in-comment",
                              "comma-and-quote", "5000-chars", "default_transaction_read_only"])
def test_value_replayed_as_written(pgmedic, pg, objects, name, value, other):
    sql = f"SET {name} = {value}"
    q = f"SELECT current_setting('{name}')"
    conn = pg.connect()
    conn.autocommit = True
    run(conn, sql)
    want = one(conn, q)
    conn.close()
    assert want != other

    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    base = pin_state(px)[0]
    run(a, sql)
    for _ in range(3):
        # B first: the server has to be handed back to A each time, SET replayed.
        assert one(b, f"SELECT coalesce(current_setting('{name}', true), '')") == other
        assert one(a, q) == want
    assert_no_pins(px, base)


@pytest.mark.parametrize("drop", ["RESET ALL", "DISCARD ALL", "RESET TimeZone; RESET application_name"])
def test_reported_startup_parameters_survive_reset(pgmedic, pg, objects, drop):
    """application_name (a startup parameter) and TimeZone (in `options`) are
    reported parameters; RESET brings back their startup values, not the server's."""
    kw = dict(application_name="app-a", options="-c TimeZone=Asia/Tokyo")
    steps = ["SET application_name = 'changed'", "SET TIME ZONE 'UTC'"] + drop.split("; ")
    q = "SELECT current_setting('application_name'), current_setting('TimeZone')"
    ref = pg.connect(**kw)
    ref.autocommit = True
    for sql in steps:
        run(ref, sql)
    want = run(ref, q)[0]
    ref.close()
    assert want == ("app-a", "Asia/Tokyo")
    plain = pg.connect()
    server_tz = one(plain, "SHOW TimeZone")
    plain.close()

    px = pgmedic(pool_size=1, settings=SETTINGS)
    a, b = ac(px, **kw), ac(px)
    run(b, "SELECT 1")
    for sql in steps:
        run(a, sql)
    for _ in range(2):
        assert run(a, q)[0] == want
        assert run(b, q)[0] == ("", server_tz)


def test_psycopg3_simple_query_set_is_replayed(pgmedic, objects):
    """psycopg 3 sends a statement without parameters as a simple Query."""
    px = pgmedic(pool_size=1, settings=SETTINGS)
    a = px.connect3(autocommit=True)
    b = ac(px)
    run(b, "SELECT 1")
    base = pin_state(px)[0]
    a.execute("SET my.flag = 'psycopg3'")
    a.execute("SET work_mem = '5MB'")
    for _ in range(3):
        expect(b, DEFAULTS, "B")
        got = dict(zip(GUCS, a.execute(STATE_SQL).fetchone()[:4]))
        assert got == with_(my_flag="psycopg3", work_mem="5MB")
    assert_no_pins(px, base)


# ------------------------------------------------------------------ a Django-like client


def test_django_like_time_zone_then_queries(pgmedic, objects):
    """psycopg2, not autocommit: `SET TIME ZONE 'UTC'` right after connecting
    (TimeZone is reported: followed, never pinned), then ordinary transactions,
    with another client in another time zone sharing the server connection."""
    px = pgmedic(pool_size=1, settings=SETTINGS)
    other = ac(px)
    run(other, "SET TIME ZONE 'America/New_York'")
    run(other, "SET search_path = pg_catalog, public")
    base = pin_state(px)[0]
    app = px.connect()
    with app.cursor() as cur:
        cur.execute("SET TIME ZONE %s", ("UTC",))
    app.commit()
    ts = "SELECT '2020-01-01 12:00:00+00'::timestamptz::text, current_setting('search_path'), pg_backend_pid()"
    pids = set()
    for i in range(6):
        with app.cursor() as cur:
            cur.execute(ts)
            r = cur.fetchone()
            cur.execute("SELECT %s::int + 1", (i,))
            assert cur.fetchone()[0] == i + 1
        app.commit() if i % 2 else app.rollback()
        assert r[:2] == ("2020-01-01 12:00:00+00", DEFAULTS["search_path"])
        ro = run(other, ts)[0]
        assert ro[:2] == ("2020-01-01 07:00:00-05", "pg_catalog, public")
        pids |= {r[2], ro[2]}
    assert len(pids) == 1
    assert_no_pins(px, base)


# ------------------------------------------------------------------ still pinning


def test_sets_pgmedic_cannot_replay_still_pin(pgmedic, objects):
    """Multi-statement SET, SET sent with Parse, DO: pinned as before."""
    px = pgmedic(pool_size=2, settings=SETTINGS)
    b = ac(px)
    run(b, "SELECT 1")
    forms = [
        ("psycopg2", "SET work_mem = '5MB'; SET my.flag = 'multi'", with_(work_mem="5MB", my_flag="multi")),
        ("psycopg2", "SELECT 1; SET work_mem = '5MB'", with_(work_mem="5MB")),
        ("psycopg2", "DO $$BEGIN PERFORM set_config('work_mem', '5MB', false); END$$", with_(work_mem="5MB")),
        ("psycopg", "SET work_mem = '5MB'", with_(work_mem="5MB")),
    ]
    for driver, sql, want in forms:
        pins_before = pin_state(px)[0]["set"]
        if driver == "psycopg":
            x = px.connect3(autocommit=True)
            x.execute(sql, binary=True)  # Parse/Bind/Execute
            x_pid = x.execute("SELECT pg_backend_pid()").fetchone()[0]
            got = dict(zip(GUCS, x.execute(STATE_SQL).fetchone()[:4]))
        else:
            x = ac(px)
            run(x, sql)
            got, x_pid = state(x)
        assert got == want, sql
        pins, pinned = pin_state(px)
        assert pinned == 1 and pins["set"] == pins_before + 1, sql
        for _ in range(3):
            assert expect(b, DEFAULTS, "B") != x_pid, sql
        x.close()
        wait_unpinned(px)
        check_all(px, 2, [(b, DEFAULTS, "B")])


# ------------------------------------------------------------------ pipelined simple queries


def read_until_ready(raw, n):
    """Reads the answers to n simple queries: [(tags, error sqlstate or None)]."""
    out, tags, err = [], [], None
    while len(out) < n:
        kind, payload = raw.read_msg()
        if kind == b"C":
            tags.append(payload.rstrip(b"\0").decode())
        elif kind == b"E":
            err = pgwire.parse_error_fields(payload).get("C")
        elif kind == b"Z":
            out.append((tags, err))
            tags, err = [], None
    return out


# A SET inside a transaction block, or one pipelined behind other queries, is not
# replayed: its fate (COMMIT, COMMIT AND CHAIN, savepoints, a failing COMMIT, an
# earlier query's error) is not modelled.  pgmedic pins the client instead: the
# client keeps exactly PostgreSQL's semantics on its own server connection, and no
# other client ever sees its settings.
@pytest.mark.parametrize("steps", [
    ["BEGIN", "SET work_mem = '11MB'", "COMMIT"],
    ["BEGIN", "SET work_mem = '11MB'", "ROLLBACK"],
    ["BEGIN", "SET work_mem = '11MB'", "COMMIT AND CHAIN", "ROLLBACK"],
    ["BEGIN", "SET work_mem = '11MB'", "SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s1; COMMIT"],
    ["SELECT 1/0; SET work_mem = '11MB'"],
], ids=["commit", "rollback", "commit-and-chain", "savepoint", "error-then-set"])
def test_sets_not_replayed_pin_and_never_leak(pgmedic, pg, objects, steps):
    px = pgmedic(pool_size=2, settings=SETTINGS)
    a, b = ac(px), ac(px)
    run(b, "SELECT 1")
    base = pin_state(px)[0]
    for st in steps:
        try:
            run(a, st)
        except psycopg2.Error:
            pass
    # A sees what PostgreSQL itself shows after the same statements.
    d = pg.connect()
    d.autocommit = True
    for st in steps:
        try:
            run(d, st)
        except psycopg2.Error:
            pass
    want = state(d)[0]
    d.close()
    pid = None
    for _ in range(4):
        got, p = state(a)
        assert got == want, f"A: {got} != {want}"
        assert pid in (None, p), "a pinned client keeps its server connection"
        pid = p
        got_b, pb = state(b)
        assert got_b == DEFAULTS, f"B on server {pb}: {got_b}"
        assert pb != pid
    counts, pinned = pin_state(px)
    assert pinned == 1 and counts["set"] == base["set"] + 1, (counts, pinned)
    a.close()
    wait_unpinned(px)
    c = ac(px)
    for _ in range(3):
        assert state(c)[0] == DEFAULTS
