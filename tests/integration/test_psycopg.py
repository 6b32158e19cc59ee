"""psycopg2 and psycopg 3 through pgmedic: COPY both ways, a 200 MB bytea that
must stream through the proxy, Unicode, errors inside transactions, cancel,
LISTEN/NOTIFY, per-client session parameters over a shared server connection,
psycopg 3 prepared statements and pipelines."""
import hashlib
import io
import os
import select
import threading
import time

import psycopg
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest

from conftest import wait_until

MODES = ["session", "transaction"]


def fetch1(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


@pytest.fixture
def scratch_table(pg, table_name):
    """Drops the test's table afterwards, whatever happened."""
    yield table_name
    pg.sql(f"DROP TABLE IF EXISTS {table_name}")


# ------------------------------------------------------------------ COPY

COPY_ROWS = 100_000


def copy_text(n=COPY_ROWS):
    return "".join(f"{i}\tname-{i}-ü€\t{i * 7}\n" for i in range(n))


@pytest.mark.timeout_s(120)
@pytest.mark.parametrize("pool_mode", MODES)
def test_copy_psycopg2(pg, pgmedic, pool_mode, scratch_table):
    t = scratch_table
    px = pgmedic(pool_mode=pool_mode, pool_size=2)
    conn = px.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, name text, val bigint)")
        conn.commit()
        data = copy_text()
        cur.copy_expert(f"COPY {t} FROM STDIN", io.StringIO(data))
        assert cur.rowcount == COPY_ROWS
        conn.commit()
        assert pg.sql(f"SELECT count(*), sum(val) FROM {t}")[0] == (COPY_ROWS, 7 * COPY_ROWS * (COPY_ROWS - 1) // 2)
        out = io.StringIO()
        cur.copy_expert(f"COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT", out)
        conn.commit()
        assert out.getvalue() == data
        # The connection is in a clean state after both COPYs.
        cur.execute("SELECT 42")
        assert cur.fetchone() == (42,)
        conn.commit()


@pytest.mark.parametrize("pool_mode", MODES)
def test_copy_error_midway_psycopg2(pg, pgmedic, pool_mode, scratch_table):
    """Bad data halfway through COPY FROM STDIN: the server aborts the COPY, the
    client gets the error, and after ROLLBACK the connection works."""
    t = scratch_table
    px = pgmedic(pool_mode=pool_mode, pool_size=1)
    conn = px.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
        conn.commit()
        data = "".join(f"{i}\n" for i in range(5000)) + "not-a-number\n" + "".join(f"{i}\n" for i in range(5000, 50000))
        with pytest.raises(psycopg2.errors.InvalidTextRepresentation):
            cur.copy_expert(f"COPY {t} FROM STDIN", io.StringIO(data))
        conn.rollback()
        cur.execute(f"SELECT count(*) FROM {t}")
        assert cur.fetchone() == (0,)
        conn.commit()
    if pool_mode == "session":
        conn.close()  # pool size 1: the next client needs this session's server
    other = px.connect()
    assert fetch1(other, "SELECT 'still fine'") == ("still fine",)


@pytest.mark.timeout_s(120)
@pytest.mark.parametrize("pool_mode", MODES)
def test_copy_psycopg3(pg, pgmedic, pool_mode, scratch_table):
    t = scratch_table
    px = pgmedic(pool_mode=pool_mode, pool_size=2)
    with px.connect3(autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, name text, val bigint)")
        rows = [(i, f"name-{i}-ü€", i * 7) for i in range(COPY_ROWS)]
        with conn.transaction():
            with conn.cursor().copy(f"COPY {t} (id, name, val) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
        assert pg.sql(f"SELECT count(*), max(id) FROM {t}")[0] == (COPY_ROWS, COPY_ROWS - 1)
        got = []
        with conn.cursor().copy(f"COPY (SELECT id, name, val FROM {t} ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int4", "text", "int8"])
            for r in copy.rows():
                got.append(r)
        assert got == rows
        # Binary COPY out, too.
        with conn.cursor().copy(f"COPY (SELECT id, val FROM {t} WHERE id < 1000 ORDER BY id) "
                                "TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(["int4", "int8"])
            assert list(copy.rows()) == [(i, i * 7) for i in range(1000)]
        assert conn.execute("SELECT 1").fetchone() == (1,)


# ------------------------------------------------------------------ large values

BIG = 200 * 1024 * 1024
HWM_GROWTH_LIMIT_KB = 120 * 1024


@pytest.mark.timeout_s(300)
def test_200mb_bytea_streams_through(pg, pgmedic, scratch_table):
    """A 200 MB bytea goes in as a parameter (a ~400 MB hex Query message) and
    comes back (a ~400 MB DataRow).  pgmedic must forward both without holding
    a whole message: its peak RSS may not grow by anything near the message size.
    ASan's quarantine of freed blocks is kept small so that it does not count."""
    t = scratch_table
    px = pgmedic(pool_mode="session", pool_size=1,
                 env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=8"})
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(f"CREATE UNLOGGED TABLE {t} (id int, data bytea)")
    cur.execute("SELECT 1")
    data = os.urandom(BIG)
    digest = hashlib.sha256(data).hexdigest()
    hwm0 = px.vm_kb("VmHWM")

    cur.execute(f"INSERT INTO {t} VALUES (1, %s)", (data,))
    hwm_in = px.vm_kb("VmHWM")
    cur.execute(f"SELECT length(data), encode(sha256(data), 'hex') FROM {t}")
    assert cur.fetchone() == (BIG, digest)

    del data
    cur.execute(f"SELECT data FROM {t}")
    back = cur.fetchone()[0]
    assert len(back) == BIG
    assert hashlib.sha256(back).hexdigest() == digest
    del back
    hwm_out = px.vm_kb("VmHWM")

    print(f"pgmedic VmHWM: start {hwm0 // 1024} MB, after insert {hwm_in // 1024} MB, after select {hwm_out // 1024} MB")
    assert hwm_in - hwm0 < HWM_GROWTH_LIMIT_KB, (
        f"pgmedic peak RSS grew by {(hwm_in - hwm0) // 1024} MB while forwarding a ~400 MB Query")
    assert hwm_out - hwm0 < HWM_GROWTH_LIMIT_KB, (
        f"pgmedic peak RSS grew by {(hwm_out - hwm0) // 1024} MB while forwarding a ~400 MB DataRow")
    cur.execute("SELECT 'alive'")
    assert cur.fetchone() == ("alive",)


# ------------------------------------------------------------------ text

UNICODE_SAMPLES = [
    "héllo wörld – ñandú",
    "日本語のテキスト、中文字符，한국어 텍스트",
    "emoji 😀🎉🐘 family 👩‍👩‍👧 flag 🇫🇷",
    "combining e\u0301 and ZWJ \u200d and BOM \ufeff",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∮ E⋅da = Q",
    "x" * 70000 + "🙂",  # longer than one socket read
]


@pytest.mark.parametrize("pool_mode", MODES)
def test_unicode_round_trip_psycopg2(pgmedic, pool_mode):
    px = pgmedic(pool_mode=pool_mode, pool_size=1)
    conn = px.connect(client_encoding="UTF8")
    conn.autocommit = True
    assert fetch1(conn, "SHOW client_encoding") == ("UTF8",)
    for s in UNICODE_SAMPLES:
        got = fetch1(conn, "SELECT %s::text, length(%s::text), octet_length(%s::text)", (s, s, s))
        assert got == (s, len(s), len(s.encode()))
        assert fetch1(conn, "SELECT '" + s + "'::text") == (s,)
    with conn.cursor() as cur:
        cur.execute('SELECT 1 AS "列😀"')
        assert cur.description[0].name == "列😀"


@pytest.mark.parametrize("pool_mode", MODES)
def test_unicode_round_trip_psycopg3(pgmedic, pool_mode):
    px = pgmedic(pool_mode=pool_mode, pool_size=1)
    with px.connect3(autocommit=True, client_encoding="UTF8") as conn:
        assert conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
        for s in UNICODE_SAMPLES:
            got = conn.execute("SELECT %s::text, length(%s::text), octet_length(%s::text)", (s, s, s)).fetchone()
            assert got == (s, len(s), len(s.encode()))
            got = conn.execute("SELECT %b::text", (s,)).fetchone()  # binary parameter
            assert got == (s,)


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("pool_mode", MODES)
def test_error_inside_transaction(pgmedic, pool_mode):
    px = pgmedic(pool_mode=pool_mode, pool_size=1)
    conn = px.connect()
    cur = conn.cursor()
    cur.execute("SELECT 1")
    with pytest.raises(psycopg2.errors.DivisionByZero):
        cur.execute("SELECT 1/0")
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INERROR
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
        cur.execute("SELECT 2")
    conn.rollback()
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    cur.execute("SELECT 3")
    assert cur.fetchone() == (3,)
    conn.commit()
    # Errors outside a transaction, in autocommit, with the extended protocol (psycopg 3).
    conn.autocommit = True
    with pytest.raises(psycopg2.errors.UndefinedTable):
        cur.execute("SELECT * FROM no_such_table_here")
    cur.execute("SELECT 4")
    assert cur.fetchone() == (4,)
    if pool_mode == "session":
        conn.close()  # pool size 1: the next client needs this session's server
    with px.connect3(autocommit=True) as c3:
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c3.execute("SELECT no_such_column FROM pg_class WHERE oid = %s", (1,))
        assert c3.execute("SELECT %s::int + 1", (4,)).fetchone() == (5,)
        with pytest.raises(psycopg.errors.SyntaxError):
            with c3.transaction():
                c3.execute("SELEKT 1")
        assert c3.execute("SELECT 6").fetchone() == (6,)


# ------------------------------------------------------------------ cancel

@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("pool_mode", MODES)
def test_cancel_only_affects_its_client(pg, pgmedic, pool_mode):
    px = pgmedic(pool_mode=pool_mode, pool_size=2)
    victim = px.connect()
    bystander = px.connect()
    victim.autocommit = bystander.autocommit = True
    assert fetch1(victim, "SELECT 'v'") == ("v",)
    assert fetch1(bystander, "SELECT 'b'") == ("b",)
    res = {}

    def run(name, conn, sql):
        try:
            res[name] = fetch1(conn, sql)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            res[name] = e
        res[name + "_at"] = time.monotonic()

    tb = threading.Thread(target=run, args=("b", bystander, "SELECT 'bystander done' FROM pg_sleep(2)"))
    tv = threading.Thread(target=run, args=("v", victim, "SELECT 'victim done' FROM pg_sleep(10)"))
    tb.start()
    tv.start()
    wait_until(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                              "AND query LIKE '%%FROM pg_sleep(%%' AND pid <> pg_backend_pid()")[0][0] >= 2,
               timeout=10, message="both sleeps running on the server")
    t0 = time.monotonic()
    victim.cancel()
    tv.join(10)
    assert not tv.is_alive(), "the cancelled query did not return"
    assert isinstance(res["v"], psycopg2.errors.QueryCanceled), res["v"]
    assert res["v_at"] - t0 < 1.0, f"cancel took {res['v_at'] - t0:.2f}s"
    tb.join(10)
    assert not tb.is_alive()
    assert res["b"] == ("bystander done",), res["b"]
    # Both connections keep working.
    assert fetch1(victim, "SELECT 'victim ok'") == ("victim ok",)
    assert fetch1(bystander, "SELECT 'bystander ok'") == ("bystander ok",)


# ------------------------------------------------------------------ LISTEN/NOTIFY

def wait_notifies(conn, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < n and time.monotonic() < deadline:
        if select.select([conn], [], [], max(0.0, deadline - time.monotonic()))[0]:
            conn.poll()
            while conn.notifies:
                got.append(conn.notifies.pop(0))
    return got


def test_listen_notify_session_mode(pgmedic, direct):
    px = pgmedic(pool_mode="session", pool_size=2)
    listener = px.connect()
    listener.autocommit = True
    with listener.cursor() as cur:
        cur.execute("LISTEN pgmedic_chan")
    sender = px.connect()
    sender.autocommit = True
    with sender.cursor() as cur:
        cur.execute("NOTIFY pgmedic_chan, 'hello ✓'")
    got = wait_notifies(listener, 1)
    assert [(n.channel, n.payload) for n in got] == [("pgmedic_chan", "hello ✓")]
    # An asynchronous notification from outside pgmedic, while the listener is idle.
    with direct.cursor() as cur:
        cur.execute("SELECT pg_notify('pgmedic_chan', 'from direct')")
    got = wait_notifies(listener, 1)
    assert [(n.channel, n.payload) for n in got] == [("pgmedic_chan", "from direct")]
    assert fetch1(listener, "SELECT 'after notify'") == ("after notify",)


# ------------------------------------------------------------------ session parameters

def settings_row(conn):
    return fetch1(conn, "SELECT current_setting('application_name'), current_setting('client_encoding'),"
                        " current_setting('DateStyle'), '05/03/2024'::date::text")


def test_startup_parameters_per_client_transaction_mode(pgmedic, monkeypatch):
    """Three clients share one server connection; each keeps the application_name,
    client_encoding and DateStyle it sent in its startup packet."""
    px = pgmedic(pool_mode="transaction", pool_size=1)
    a = px.connect(application_name="client_a", client_encoding="LATIN1")
    b = px.connect(application_name="client_b", client_encoding="UTF8")
    monkeypatch.setenv("PGDATESTYLE", "SQL, DMY")  # libpq sends it as the "datestyle" startup parameter
    c = px.connect3(application_name="client_c", autocommit=True)
    monkeypatch.delenv("PGDATESTYLE")
    a.autocommit = b.autocommit = True
    expect = {
        "a": ("client_a", "LATIN1", "ISO, MDY", "2024-05-03"),
        "b": ("client_b", "UTF8", "ISO, MDY", "2024-05-03"),
        "c": ("client_c", "UTF8", "SQL, DMY", "05/03/2024"),
    }
    for _ in range(4):
        assert settings_row(a) == expect["a"]
        assert settings_row(b) == expect["b"]
        assert c.execute("SELECT current_setting('application_name'), current_setting('client_encoding'),"
                         " current_setting('DateStyle'), '05/03/2024'::date::text").fetchone() == expect["c"]
    # Inside an explicit transaction too.
    with a:
        assert settings_row(a) == expect["a"]


def test_set_parameters_per_client_transaction_mode(pg, pgmedic):
    """SET of reported parameters (application_name, TimeZone, DateStyle) sticks
    to the client that ran it, though clients share one server connection."""
    px = pgmedic(pool_mode="transaction", pool_size=1)
    a = px.connect(application_name="start_a")
    b = px.connect(application_name="start_b")
    a.autocommit = b.autocommit = True
    with a.cursor() as cur:
        cur.execute("SET application_name = 'set_a'")
        cur.execute("SET TimeZone = 'Asia/Tokyo'")
    with b.cursor() as cur:
        cur.execute("SET TimeZone = 'America/New_York'")
        cur.execute("SET DateStyle = 'German'")
    q = "SELECT current_setting('application_name'), current_setting('TimeZone'), current_setting('DateStyle')"
    for _ in range(4):
        assert fetch1(a, q) == ("set_a", "Asia/Tokyo", "ISO, MDY")
        assert fetch1(b, q) == ("start_b", "America/New_York", "German, DMY")
    # A new client gets the server defaults, not what earlier clients SET.
    c = px.connect()
    c.autocommit = True
    tz_default = pg.sql("SHOW TimeZone")[0][0]
    assert fetch1(c, q) == ("", tz_default, "ISO, MDY")


# ------------------------------------------------------------------ psycopg 3 specifics

@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_psycopg3_prepared_statements(pgmedic, pool_mode):
    """psycopg 3 prepares a query on the server after prepare_threshold executions.
    Three clients over two server connections, interleaved: in transaction mode a
    client's statements must work whichever server connection it lands on, and
    same-named statements of different clients must not collide."""
    px = pgmedic(pool_mode=pool_mode, pool_size=2 if pool_mode == "transaction" else 3)
    conns = [px.connect3(autocommit=True, prepare_threshold=0) for _ in range(3)]
    for rnd in range(6):
        for k, conn in enumerate(conns):
            # Each client has its own statement text under psycopg's names _pg3_0, _pg3_1, ...
            assert conn.execute(f"SELECT %s::int * {k + 2}", (rnd,)).fetchone() == (rnd * (k + 2),)
            assert conn.execute(f"SELECT %s::text || '-{k}'", (str(rnd),)).fetchone() == (f"{rnd}-{k}",)
    for conn in conns:
        with conn.transaction():
            assert conn.execute("SELECT %s::int * 2", (21,)).fetchone() == (42,)


@pytest.mark.parametrize("pool_mode", MODES)
def test_psycopg3_pipeline(pgmedic, pool_mode, scratch_table):
    t = scratch_table
    px = pgmedic(pool_mode=pool_mode, pool_size=1)
    with px.connect3(autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v text)")
        with conn.pipeline():
            curs = []
            for i in range(200):
                conn.execute(f"INSERT INTO {t} VALUES (%s, %s)", (i, f"v{i}"))
                if i % 50 == 0:
                    curs.append((i, conn.execute(f"SELECT count(*) FROM {t}")))
        for i, cur in curs:
            assert cur.fetchone() == (i + 1,)
        assert conn.execute(f"SELECT count(*), min(v), max(id) FROM {t}").fetchone() == (200, "v0", 199)
        # An error inside a pipeline aborts that batch: the statements up to the Sync
        # form one implicit transaction, so the INSERT before the error is gone too.
        with pytest.raises(psycopg.errors.UniqueViolation):
            with conn.pipeline():
                conn.execute(f"INSERT INTO {t} VALUES (1000, 'a')")
                conn.execute(f"INSERT INTO {t} VALUES (1, 'dup')")
                conn.execute(f"INSERT INTO {t} VALUES (1001, 'b')")
        assert conn.execute(f"SELECT count(*) FROM {t} WHERE id >= 1000").fetchone() == (0,)
        assert conn.execute("SELECT 'after pipeline'").fetchone() == ("after pipeline",)
