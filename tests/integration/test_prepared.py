"""Protocol-level named prepared statements in transaction pooling mode.

pgmedic maps each client's statement names onto statements it prepares on the
server connections under its own names ("pgm_<hash>"), answers a Parse the server
already has, injects a Parse before a Bind/Describe on a server that lacks the
statement, evicts the least recently used statement past max_prepared_statements,
and keeps the response stream in the order the client expects.

Most tests speak the extended protocol byte by byte (helpers below) and compare
the sequence of backend message types with what PostgreSQL itself sends for the
same messages on a direct connection.  Every test uses transaction mode with a
pool of one or two server connections, so clients share server connections.

The regression tests below each reproduce a defect found while this file was
written (queue desynchronization, skipped Close/eviction, DISCARD ALL, 0A000).
"""
import os
import socket
import struct
import subprocess
import threading

import pytest

import pgwire
from conftest import DB, PG_BIN, SUPERUSER, wait_until


# ------------------------------------------------------------------ protocol helpers


def _cstr(s):
    return s.encode() + b"\0"


def Parse(name, sql, oids=()):
    body = _cstr(name) + _cstr(sql) + struct.pack("!H", len(oids))
    for o in oids:
        body += struct.pack("!I", o)
    return pgwire.message(b"P", body)


def Bind(stmt, params=(), portal=""):
    """All parameters and results in text format; None is NULL."""
    body = _cstr(portal) + _cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            b = str(p).encode()
            body += struct.pack("!i", len(b)) + b
    body += struct.pack("!H", 0)
    return pgwire.message(b"B", body)


def Describe(kind, name):
    return pgwire.message(b"D", kind.encode() + _cstr(name))


def Execute(portal="", max_rows=0):
    return pgwire.message(b"E", _cstr(portal) + struct.pack("!I", max_rows))


def Close(kind, name):
    return pgwire.message(b"C", kind.encode() + _cstr(name))


def Sync():
    return pgwire.message(b"S")


def Flush():
    return pgwire.message(b"H")


def Query(sql):
    return pgwire.query_message(sql)


def data_row(payload):
    (n,) = struct.unpack("!H", payload[:2])
    pos, row = 2, []
    for _ in range(n):
        (ln,) = struct.unpack("!i", payload[pos:pos + 4])
        pos += 4
        if ln < 0:
            row.append(None)
        else:
            row.append(payload[pos:pos + ln].decode())
            pos += ln
    return row


def param_oids(payload):
    (n,) = struct.unpack("!H", payload[:2])
    return list(struct.unpack(f"!{n}I", payload[2:2 + 4 * n]))


class Resp:
    """The backend messages of one exchange (up to and including ReadyForQuery,
    or a fixed number of messages)."""

    def __init__(self, msgs):
        self.msgs = msgs

    @property
    def types(self):
        """Message types as a string ('12DCZ'); NoticeResponses left out."""
        return "".join(k.decode() for k, _ in self.msgs if k != b"N")

    @property
    def rows(self):
        return [data_row(p) for k, p in self.msgs if k == b"D"]

    @property
    def errors(self):
        return [pgwire.parse_error_fields(p) for k, p in self.msgs if k == b"E"]

    @property
    def sqlstates(self):
        return [e.get("C") for e in self.errors]

    @property
    def tags(self):
        return [p.rstrip(b"\0").decode() for k, p in self.msgs if k == b"C"]

    def first(self, kind):
        for k, p in self.msgs:
            if k == kind.encode():
                return p
        raise AssertionError(f"no {kind!r} message in {self.types}")

    def __repr__(self):
        return f"Resp({self.types}, rows={self.rows}, errors={self.sqlstates})"


class Wire:
    """A logged-in raw protocol connection (to pgmedic or to PostgreSQL)."""

    def __init__(self, port, timeout=5.0):
        self.timeout = timeout
        self.c = pgwire.RawConn("127.0.0.1", port, timeout=timeout)
        self.c.startup(SUPERUSER, DB)

    def send(self, *msgs):
        self.c.send(b"".join(msgs))

    def read(self, n=None):
        """Messages up to and including the next ReadyForQuery, or exactly n messages."""
        out = []
        while True:
            kind, payload = self.c.read_msg()
            out.append((kind, payload))
            if n is None and kind == b"Z":
                return Resp(out)
            if n is not None and len([k for k, _ in out if k != b"N"]) == n:
                return Resp(out)

    def run(self, *msgs):
        self.send(*msgs)
        return self.read()

    def simple(self, sql):
        return self.c.simple_query(sql)

    def nothing_pending(self, wait=0.3):
        """True if no byte arrives within `wait` seconds (no stray responses)."""
        if self.c.buf:
            return False
        self.c.sock.settimeout(wait)
        try:
            self.c.sock.recv(1, socket.MSG_PEEK)
            return False  # data, or EOF
        except TimeoutError:
            return True
        finally:
            self.c.sock.settimeout(self.timeout)

    def close(self):
        try:
            self.c.send(pgwire.terminate_message())
        except OSError:
            pass
        self.c.close()


@pytest.fixture
def wires():
    """wires(port) opens a logged-in raw connection; all are closed at teardown."""
    opened = []

    def open_(port, timeout=5.0):
        w = Wire(port, timeout=timeout)
        opened.append(w)
        return w

    yield open_
    for w in opened:
        w.close()


def txn(pgmedic, pool_size=1, **settings):
    return pgmedic(pool_mode="transaction", pool_size=pool_size,
                   settings={k: v for k, v in settings.items()} or None)


def server_pgm_statements(w):
    """The pgm_ statements of the server connection the raw connection lands on
    (pg_prepared_statements is per backend; with pool_size=1 there is only one)."""
    rows, _ = w.simple("SELECT name, statement FROM pg_prepared_statements "
                       "WHERE name LIKE 'pgm\\_%' ORDER BY name")
    return rows


# ------------------------------------------------------------------ 1. same names, different clients

def test_same_client_name_different_statements_share_one_server(pgmedic, wires):
    """Two clients prepare "s1" as different statements; interleaved over the one
    server connection each always gets its own statement's result and types."""
    px = txn(pgmedic, pool_size=1)
    a, b = wires(px.port), wires(px.port)
    assert a.run(Parse("s1", "SELECT $1::int + 1"), Sync()).types == "1Z"
    assert b.run(Parse("s1", "SELECT $1::text || 'x'"), Sync()).types == "1Z"

    ra = a.run(Describe("S", "s1"), Sync())
    rb = b.run(Describe("S", "s1"), Sync())
    assert ra.types == rb.types == "tTZ"
    assert param_oids(ra.first("t")) == [23]  # int4
    assert param_oids(rb.first("t")) == [25]  # text

    for i in range(60):
        # Both requests are in flight at once: b waits for the server a holds.
        a.send(Bind("s1", [i]), Execute(), Sync())
        b.send(Bind("s1", [f"v{i}"]), Execute(), Sync())
        ra, rb = a.read(), b.read()
        assert (ra.types, ra.rows) == ("2DCZ", [[str(i + 1)]]), (i, ra)
        assert (rb.types, rb.rows) == ("2DCZ", [[f"v{i}x"]]), (i, rb)

    # A pipeline of several Bind/Execute per Sync, again interleaved.
    a.send(*[m for i in range(5) for m in (Bind("s1", [i]), Execute())], Sync())
    b.send(*[m for i in range(5) for m in (Bind("s1", [i]), Execute())], Sync())
    ra, rb = a.read(), b.read()
    assert ra.types == "2DC" * 5 + "Z" and ra.rows == [[str(i + 1)] for i in range(5)]
    assert rb.types == "2DC" * 5 + "Z" and rb.rows == [[f"{i}x"] for i in range(5)]

    # Both live on the one server connection under pgmedic's names.
    stmts = server_pgm_statements(a)
    assert sorted(s for _, s in stmts) == ["SELECT $1::int + 1", "SELECT $1::text || 'x'"], stmts

    # Same text, different declared parameter types: different statements.
    assert a.run(Parse("t", "SELECT $1", [23]), Sync()).types == "1Z"
    assert b.run(Parse("t", "SELECT $1", [25]), Sync()).types == "1Z"
    ra, rb = a.run(Describe("S", "t"), Sync()), b.run(Describe("S", "t"), Sync())
    assert (param_oids(ra.first("t")), param_oids(rb.first("t"))) == ([23], [25])
    assert a.run(Bind("t", ["007"]), Execute(), Sync()).rows == [["7"]]
    assert b.run(Bind("t", ["007"]), Execute(), Sync()).rows == [["007"]]


# ------------------------------------------------------------------ 2. failed Parse

def test_failed_parse_leaves_no_mapping(pg, pgmedic, wires):
    px = txn(pgmedic, pool_size=1)
    for port in (pg.port, px.port):
        w = wires(port)
        r = w.run(Parse("bad", "SELEC 1"), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["42601"]), (port, r)
        r = w.run(Bind("bad"), Execute(), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["26000"]), (port, r)
        # The same failure inside one pipeline: everything after it is skipped.
        r = w.run(Parse("bad2", "SELECT nope FROM"), Bind("bad2"), Execute(), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["42601"]), (port, r)
        r = w.run(Describe("S", "bad2"), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["26000"]), (port, r)
        # The name is free for a good statement, and the connection keeps working.
        r = w.run(Parse("bad", "SELECT 7"), Bind("bad"), Execute(), Sync())
        assert (r.types, r.rows) == ("12DCZ", [["7"]]), (port, r)
        assert w.simple("SELECT 'ok'") == ([["ok"]], ["SELECT 1"])


def test_failed_parse_of_shared_text_does_not_poison_other_clients(pgmedic, wires):
    """A statement that fails to prepare (missing table) is not remembered as being
    on the server: once the table exists, another client's Parse of the same text
    really prepares it."""
    px = txn(pgmedic, pool_size=1)
    a, b = wires(px.port), wires(px.port)
    tbl = f"prep_late_{os.getpid()}"
    a.simple(f"DROP TABLE IF EXISTS {tbl}")
    r = a.run(Parse("q", f"SELECT count(*) FROM {tbl}"), Sync())
    assert (r.types, r.sqlstates) == ("EZ", ["42P01"]), r
    a.simple(f"CREATE TABLE {tbl} (x int)")
    try:
        r = b.run(Parse("q", f"SELECT count(*) FROM {tbl}"), Bind("q"), Execute(), Sync())
        assert (r.types, r.rows) == ("12DCZ", [["0"]]), r
        r = a.run(Parse("q", f"SELECT count(*) FROM {tbl}"), Bind("q"), Execute(), Sync())
        assert (r.types, r.rows) == ("12DCZ", [["0"]]), r
    finally:
        a.simple(f"DROP TABLE {tbl}")


# ------------------------------------------------------------------ 3. Parse answered by pgmedic

def test_parse_of_statement_already_on_server_keeps_message_order(pg, pgmedic, wires):
    px = txn(pgmedic, pool_size=1)
    sql = "SELECT $1::int * 2, 'shared'"
    first = wires(px.port)
    assert first.run(Parse("other_name", sql), Sync()).types == "1Z"

    msgs = (Parse("mine", sql), Bind("mine", [21]), Execute(), Sync())
    direct = wires(pg.port).run(*msgs)
    second = wires(px.port)
    via = second.run(*msgs)
    assert direct.types == "12DCZ"
    assert (via.types, via.rows, via.tags) == (direct.types, direct.rows, direct.tags)
    assert via.rows == [["42", "shared"]]

    # Answered by pgmedic: the server holds the text once, not twice.
    assert [s for _, s in server_pgm_statements(second)].count(sql) == 1

    # Again with the synthesized ParseComplete in the middle of a pipeline and a
    # Describe of the statement after it.
    msgs = (Bind("mine", [1]), Execute(), Parse("again", sql), Describe("S", "again"),
            Bind("again", [2]), Execute(), Sync())
    third = wires(px.port)
    assert third.run(Parse("mine", sql), Sync()).types == "1Z"
    d = wires(pg.port)
    d.run(Parse("mine", sql), Sync())
    direct, via = d.run(*msgs), third.run(*msgs)
    assert direct.types == "2DC1tT2DCZ"
    assert (via.types, via.rows) == (direct.types, direct.rows)


def test_synthesized_parse_complete_before_rows_of_a_suspended_portal(pg, pgmedic, wires):
    """The ParseComplete pgmedic answers itself is due right before DataRows (the
    next Execute of a suspended portal): it must go out first, not after them."""
    px = txn(pgmedic, pool_size=1)
    sql = "SELECT generate_series(1, $1::int)"
    w, d = wires(px.port), wires(pg.port)
    assert w.run(Parse("g", sql), Sync()).types == "1Z"
    d.run(Parse("g", sql), Sync())
    msgs = (Query("BEGIN"),)
    assert w.run(*msgs).types == d.run(*msgs).types == "CZ"
    msgs = (Bind("g", [5], portal="p"), Execute("p", 2), Parse("again", sql), Execute("p", 2), Sync())
    rd, rv = d.run(*msgs), w.run(*msgs)
    assert rd.types == "2DDs1DDsZ"
    assert (rv.types, rv.rows) == (rd.types, rd.rows)
    assert rv.rows == [["1"], ["2"], ["3"], ["4"]]
    # the Parse was answered by pgmedic: the server holds the text once
    assert [s for _, s in server_pgm_statements(w)].count(sql) == 1
    msgs = (Query("COMMIT"),)
    assert w.run(*msgs).types == d.run(*msgs).types == "CZ"


# ------------------------------------------------------------------ 4. Parse + Flush

def test_parse_flush_without_sync_is_answered(pgmedic, wires):
    px = txn(pgmedic, pool_size=1)
    sql = "SELECT $1::int - 1"
    a = wires(px.port)
    assert a.run(Parse("x", sql), Sync()).types == "1Z"

    b = wires(px.port, timeout=3.0)
    b.send(Parse("y", sql), Flush())
    assert b.read(n=1).types == "1"  # socket timeout = hang
    b.send(Bind("y", [10]), Execute(), Flush())
    r = b.read(n=3)
    assert (r.types, r.rows) == ("2DC", [["9"]])
    # A statement the server does not have yet, also without a Sync.
    b.send(Parse("z", "SELECT $1::int - 2"), Describe("S", "z"), Flush())
    assert b.read(n=3).types == "1tT"
    assert b.run(Sync()).types == "Z"
    r = b.run(Bind("z", [10]), Execute(), Sync())
    assert (r.types, r.rows) == ("2DCZ", [["8"]])


# ------------------------------------------------------------------ 5. error inside a pipeline

def test_pipeline_error_skips_to_sync(pg, pgmedic, wires):
    px = txn(pgmedic, pool_size=1)
    pipeline = (Parse("s1", "SELECT $1::int + 100"), Bind("s1", [1]), Execute(),
                Bind("s_missing", [2]), Execute(),
                Bind("s1", [3]), Execute(), Sync())
    direct = wires(pg.port)
    via = wires(px.port)
    rd, rv = direct.run(*pipeline), via.run(*pipeline)
    assert rd.types == "12DCEZ" and rd.sqlstates == ["26000"]
    assert (rv.types, rv.rows, rv.sqlstates) == (rd.types, rd.rows, rd.sqlstates)

    # s1 was prepared before the error and survives it; the statements after the
    # error did not run.  Both sides again, now with s1 already known.
    again = (Bind("s1", [4]), Execute(), Bind("s_missing"), Execute(), Parse("s2", "SELECT 2"),
             Bind("s1", [5]), Execute(), Sync())
    rd, rv = direct.run(*again), via.run(*again)
    assert rd.types == "2DCEZ"
    assert (rv.types, rv.rows, rv.sqlstates) == (rd.types, rd.rows, rd.sqlstates)
    # s2's Parse was skipped: it does not exist.
    for w in (direct, via):
        r = w.run(Bind("s2"), Execute(), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["26000"]), r
        r = w.run(Bind("s1", [6]), Execute(), Sync())
        assert (r.types, r.rows) == ("2DCZ", [["106"]]), r

    # A Parse of a statement the server already has (answered by pgmedic) placed
    # after the error must be skipped too: no ParseComplete, no mapping.
    other = wires(px.port)
    assert other.run(Parse("o", "SELECT 3"), Sync()).types == "1Z"
    skipped = (Bind("s_missing"), Execute(), Parse("s3", "SELECT 3"), Sync())
    rd, rv = direct.run(*skipped), via.run(*skipped)
    assert rd.types == rv.types == "EZ"
    for w in (direct, via):
        r = w.run(Bind("s3"), Execute(), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["26000"]), r


def test_execute_error_mid_pipeline_then_more_work(pg, pgmedic, wires):
    """A runtime error (division by zero) in an Execute, with synthesized and
    injected responses queued behind it; the next Sync block is in order."""
    px = txn(pgmedic, pool_size=1)
    helper = wires(px.port)
    assert helper.run(Parse("h", "SELECT 10 / $1::int"), Sync()).types == "1Z"
    seq = (Parse("d", "SELECT 10 / $1::int"), Bind("d", [0]), Execute(),
           Parse("e", "SELECT 'e' || $1::text"), Bind("e", ["x"]), Execute(), Sync(),
           Parse("e", "SELECT 'e' || $1::text"), Bind("d", [5]), Execute(), Bind("e", ["y"]), Execute(), Sync())
    d, w = wires(pg.port), wires(px.port)
    rd, rv = d.run(*seq[:7]), w.run(*seq[:7])
    assert rd.sqlstates == ["22012"] and rd.types in ("1EZ", "12EZ")  # at Bind or at Execute
    assert (rv.types, rv.sqlstates) == (rd.types, rd.sqlstates)
    rd, rv = d.run(*seq[7:]), w.run(*seq[7:])
    assert (rd.types, rd.rows) == ("12DC2DCZ", [["2"], ["ey"]]), rd
    assert (rv.types, rv.rows) == (rd.types, rd.rows)


# ------------------------------------------------------------------ 6. Close

def test_close_statement(pg, pgmedic, wires):
    px = txn(pgmedic, pool_size=1)
    for port in (pg.port, px.port):
        w = wires(port)
        assert w.run(Parse("c1", "SELECT 1"), Sync()).types == "1Z"
        assert w.run(Close("S", "c1"), Sync()).types == "3Z"
        r = w.run(Bind("c1"), Execute(), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["26000"]), (port, r)
        r = w.run(Describe("S", "c1"), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["26000"]), (port, r)
        # Closing a name that was never prepared is not an error.
        assert w.run(Close("S", "never_prepared"), Sync()).types == "3Z"
        # Close, then re-Parse of the same name, in one pipeline.
        assert w.run(Parse("c1", "SELECT 2"), Sync()).types == "1Z"
        r = w.run(Close("S", "c1"), Parse("c1", "SELECT 3"), Bind("c1"), Execute(), Sync())
        assert (r.types, r.rows) == ("312DCZ", [["3"]]), (port, r)
        # Portals: Close of a named portal, then Execute of it fails.
        r = w.run(Bind("c1", portal="p1"), Close("P", "p1"), Execute("p1"), Sync())
        assert (r.types, r.sqlstates) == ("23EZ", ["34000"]), (port, r)


def test_close_does_not_affect_other_clients(pgmedic, wires):
    px = txn(pgmedic, pool_size=1)
    a, b = wires(px.port), wires(px.port)
    assert a.run(Parse("s", "SELECT 'shared'"), Sync()).types == "1Z"
    assert b.run(Parse("s", "SELECT 'shared'"), Sync()).types == "1Z"
    assert a.run(Close("S", "s"), Sync()).types == "3Z"
    r = b.run(Bind("s"), Execute(), Sync())
    assert (r.types, r.rows) == ("2DCZ", [["shared"]])
    r = a.run(Bind("s"), Execute(), Sync())
    assert (r.types, r.sqlstates) == ("EZ", ["26000"])


def test_close_skipped_after_error_keeps_statement(pg, pgmedic, wires):
    """BUG (pgmedic): a Close of a statement that follows an error in the same Sync
    block is skipped by PostgreSQL (the statement stays), but pgmedic answers the
    Close itself and removes the client's name when it forwards it, so the
    statement is gone for the client.

    Reproduction (pool_size=1): Parse s1 'SELECT 1' / Sync;  Bind nope / Execute /
    Close S s1 / Sync -> EZ;  Bind s1 / Execute / Sync -> E 26000 (PostgreSQL: 2DCZ)."""
    px = txn(pgmedic, pool_size=1)
    res = {}
    for port in (pg.port, px.port):
        w = wires(port)
        assert w.run(Parse("s1", "SELECT 1"), Sync()).types == "1Z"
        r1 = w.run(Bind("nope"), Execute(), Close("S", "s1"), Sync())
        r2 = w.run(Bind("s1"), Execute(), Sync())
        res[port] = (r1.types, r2.types, r2.sqlstates)
    assert res[pg.port] == ("EZ", "2DCZ", [])
    assert res[px.port] == res[pg.port]


def test_messages_after_error_before_sync(pg, pgmedic, wires):
    """BUG (pgmedic): when an ErrorResponse arrives, prep_on_server_msg drops the
    queued expectations up to the next Sync *already queued*.  Messages the client
    sends after that (still before its Sync) are skipped by the server too, but
    their entries stay queued: the ReadyForQuery does not match them and they
    linger, so later responses are matched to the wrong entries.  Here the next
    request's synthesized ParseComplete is withheld (the client gets 2DCZ; the
    stray '1' comes at the start of its following exchange).  A pipelining client
    (libpq/psycopg pipeline mode) hits this whenever an error comes back while it
    is still sending.

    Reproduction (pool_size=1): client O: Parse o 'SELECT 42' / Sync.  Client A:
    Parse s1 'SELECT 1' / Sync;  Parse bad 'SELEC' / Flush -> E;  Bind s1 / Execute /
    Sync -> Z;  Parse y 'SELECT 42' / Bind y / Execute / Sync -> 2DCZ (expected 12DCZ)."""
    px = txn(pgmedic, pool_size=1)
    o = wires(px.port)
    assert o.run(Parse("o", "SELECT 42"), Sync()).types == "1Z"
    res = {}
    for port in (pg.port, px.port):
        w = wires(port, timeout=3.0)
        assert w.run(Parse("s1", "SELECT 1"), Sync()).types == "1Z"
        w.send(Parse("bad", "SELEC"), Flush())
        r0 = w.read(n=1)
        r1 = w.run(Bind("s1"), Execute(), Sync())
        r2 = w.run(Parse("y", "SELECT 42"), Bind("y"), Execute(), Sync())
        r3 = w.run(Bind("s1"), Execute(), Sync())
        res[port] = (r0.types, r1.types, r2.types, r3.types, w.nothing_pending())
    assert res[pg.port] == ("E", "Z", "12DCZ", "2DCZ", True)
    assert res[px.port] == res[pg.port]


# ------------------------------------------------------------------ portals, COPY

def test_portal_suspension_copy_and_describe_portal(pg, pgmedic, wires):
    """Named statements through named portals with row limits, Describe of a
    portal, and COPY TO STDOUT from a named statement: same messages as direct."""
    px = txn(pgmedic, pool_size=1)
    seqs = [
        (Parse("g", "SELECT generate_series(1, $1::int)"), Sync()),
        (Bind("g", [5], portal="p"), Describe("P", "p"), Execute("p", 2), Execute("p", 2), Execute("p", 2),
         Sync()),
        (Parse("cp", "COPY (SELECT generate_series(1, 3)) TO STDOUT"), Bind("cp"), Execute(), Sync()),
        (Bind("g", [2]), Execute(), Bind("cp"), Execute(), Close("S", "cp"), Sync()),
    ]
    d, w = wires(pg.port), wires(px.port)
    for seq in seqs:
        rd, rv = d.run(*seq), w.run(*seq)
        assert (rv.types, rv.rows, rv.tags) == (rd.types, rd.rows, rd.tags), (seq, rd, rv)
    assert rd.types == "2DDC2HdddcC3Z"


# ------------------------------------------------------------------ 7. eviction

def test_eviction_keeps_at_most_max_statements(pgmedic, wires):
    px = txn(pgmedic, pool_size=1, max_prepared_statements=2)
    w = wires(px.port)
    for k in range(5):
        assert w.run(Parse(f"st{k}", f"SELECT $1::int + {k * 1000}"), Sync()).types == "1Z"
    for rnd in range(4):
        for k in range(5):
            r = w.run(Bind(f"st{k}", [rnd]), Execute(), Sync())
            assert (r.types, r.rows) == ("2DCZ", [[str(rnd + k * 1000)]]), (rnd, k, r)
        assert len(server_pgm_statements(w)) <= 2
    # All five in one pipeline: each Bind evicts and re-prepares within the batch.
    r = w.run(*[m for k in range(5) for m in (Bind(f"st{k}", [7]), Execute())], Sync())
    assert r.types == "2DC" * 5 + "Z"
    assert r.rows == [[str(7 + k * 1000)] for k in range(5)]
    # Describe of an evicted statement re-prepares it too.
    r = w.run(Describe("S", "st0"), Describe("S", "st1"), Describe("S", "st2"), Sync())
    assert r.types == "tTtTtTZ"
    stmts = server_pgm_statements(w)
    assert len(stmts) <= 2, stmts

    # A second client interleaved on the same server connection.
    v = wires(px.port)
    for k in range(3):
        assert v.run(Parse(f"v{k}", f"SELECT $1::text || '-{k}'"), Sync()).types == "1Z"
    for rnd in range(3):
        for k in range(5):
            w.send(Bind(f"st{k}", [rnd]), Execute(), Sync())
            v.send(Bind(f"v{k % 3}", [rnd]), Execute(), Sync())
            rw, rv = w.read(), v.read()
            assert rw.rows == [[str(rnd + k * 1000)]], rw
            assert rv.rows == [[f"{rnd}-{k % 3}"]], rv
    assert len(server_pgm_statements(w)) <= 2


def test_eviction_is_undone_when_error_skips_injected_close(pgmedic, wires):
    """BUG (pgmedic): an eviction Close that pgmedic injects after an earlier error
    in the same Sync block is skipped by the server, but pgmedic has already
    dropped the statement from its record of the server connection.  Its next
    injected Parse of that statement then fails with 42P05 "prepared statement
    pgm_... already exists" -- on every later use, on that server connection.

    Reproduction (max_prepared_statements=2, pool_size=1, one client):
        Parse a 'SELECT 1' / Sync;  Parse b 'SELECT 2' / Sync
        Bind nope / Execute / Parse c 'SELECT 3' / Sync      -> E 26000, Z (fine)
        Bind a / Execute / Sync                               -> E 42P05 (expected 2DCZ)
    """
    px = txn(pgmedic, pool_size=1, max_prepared_statements=2)
    w = wires(px.port)
    assert w.run(Parse("a", "SELECT 1"), Sync()).types == "1Z"
    assert w.run(Parse("b", "SELECT 2"), Sync()).types == "1Z"
    r = w.run(Bind("nope"), Execute(), Parse("c", "SELECT 3"), Sync())
    assert (r.types, r.sqlstates) == ("EZ", ["26000"])
    for _ in range(2):
        for name, val in (("a", "1"), ("b", "2")):
            r = w.run(Bind(name), Execute(), Sync())
            assert (r.types, r.rows) == ("2DCZ", [[val]]), (name, r)


# ------------------------------------------------------------------ server connection replaced

def test_statement_reprepared_on_new_server_connection(pg, pgmedic, wires):
    """The server connection a client prepared on goes away; the client's next Bind
    and Describe land on a fresh one where pgmedic injects the Parse."""
    px = txn(pgmedic, pool_size=1)
    w = wires(px.port)
    assert w.run(Parse("s", "SELECT $1::int * 3"), Sync()).types == "1Z"
    pid = int(w.simple("SELECT pg_backend_pid()")[0][0][0])
    pg.sql("SELECT pg_terminate_backend(%s)", (pid,))
    wait_until(lambda: not pg.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)),
               5, message="server backend gone")
    # pgmedic sees the idle server close before the next request.
    wait_until(lambda: px.metrics().get("pgmedic_servers", default=0) == 0, 5,
               message="pgmedic to drop the terminated server connection")
    r = w.run(Describe("S", "s"), Bind("s", [5]), Execute(), Sync())
    assert (r.types, r.rows) == ("tT2DCZ", [["15"]]), r
    assert int(w.simple("SELECT pg_backend_pid()")[0][0][0]) != pid


# ------------------------------------------------------------------ 8. DISCARD ALL / DEALLOCATE ALL

@pytest.mark.parametrize("stmt", ["DISCARD ALL", "DEALLOCATE ALL", "deallocate prepare all"])
def test_discard_all_simple_query(pg, pgmedic, wires, stmt):
    px = txn(pgmedic, pool_size=1)
    other = wires(px.port)
    assert other.run(Parse("o", "SELECT 'other'"), Sync()).types == "1Z"
    for port in (pg.port, px.port):
        w = wires(port)
        assert w.run(Parse("s1", "SELECT 'one'"), Sync()).types == "1Z"
        assert w.simple(stmt)[1] == [stmt.upper().replace("PREPARE ", "")]
        r = w.run(Bind("s1"), Execute(), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["26000"]), (port, r)
        r = w.run(Parse("s1", "SELECT 'one'"), Bind("s1"), Execute(), Sync())
        assert (r.types, r.rows) == ("12DCZ", [["one"]]), (port, r)
    # The other client's statement was dropped from the shared server connection
    # too; pgmedic prepares it again.
    r = other.run(Bind("o"), Execute(), Sync())
    assert (r.types, r.rows) == ("2DCZ", [["other"]])


@pytest.mark.parametrize("stmt", ["DISCARD ALL", "DEALLOCATE ALL"])
def test_discard_all_extended_protocol(pg, pgmedic, wires, stmt):
    """BUG (pgmedic): DISCARD ALL / DEALLOCATE ALL sent with the extended protocol
    (what psycopg 3's conn.execute("DISCARD ALL") does) is not noticed: the server
    drops every statement, pgmedic still believes they are there, and from then on
    every Bind of those statements fails with 26000 on 'pgm_...' -- even after the
    client prepares the statement again, since that Parse is answered by pgmedic.

    Reproduction (pool_size=1, one client):
        Parse s1 'SELECT 1' / Sync
        Parse '' 'DISCARD ALL' / Bind / Execute / Sync
        Parse s1 'SELECT 1' / Bind s1 / Execute / Sync   -> 1 E(26000 pgm_...) Z
    """
    px = txn(pgmedic, pool_size=1)
    for port in (pg.port, px.port):
        w = wires(port)
        assert w.run(Parse("s1", "SELECT 'one'"), Sync()).types == "1Z"
        r = w.run(Parse("", stmt), Bind(""), Execute(), Sync())
        assert (r.types, r.tags) == ("12CZ", [stmt]), (port, r)
        r = w.run(Parse("s1", "SELECT 'one'"), Bind("s1"), Execute(), Sync())
        assert (r.types, r.rows) == ("12DCZ", [["one"]]), (port, r)


def test_failed_discard_all_keeps_statements(pg, pgmedic, wires):
    """BUG (pgmedic): DISCARD ALL inside a transaction block fails (25001) and drops
    nothing, but pgmedic forgets the client's names and the server connection's
    statements as soon as it sees the query.  The client's statement is then
    "missing" (26000), and another client's use of the same text makes pgmedic
    inject a Parse the server refuses with 42P05 "prepared statement pgm_...
    already exists".

    Reproduction (pool_size=1): client O: Parse o 'SELECT 1' / Sync.  Client A:
    Parse s1 'SELECT 1' / Sync; Q "BEGIN"; Q "DISCARD ALL" -> 25001; Q "ROLLBACK";
    Bind s1 / Execute / Sync -> E 26000 (PostgreSQL: 2DCZ).  Client O: Bind o /
    Execute / Sync -> E 42P05 (expected 2DCZ).
    """
    px = txn(pgmedic, pool_size=1)
    other = wires(px.port)
    assert other.run(Parse("o", "SELECT 'one'"), Sync()).types == "1Z"
    results = {}
    for port in (pg.port, px.port):
        w = wires(port)
        assert w.run(Parse("s1", "SELECT 'one'"), Sync()).types == "1Z"
        w.simple("BEGIN")
        with pytest.raises(pgwire.ServerError) as ei:
            w.simple("DISCARD ALL")
        assert ei.value.sqlstate == "25001"
        w.simple("ROLLBACK")
        r = w.run(Bind("s1"), Execute(), Sync())
        results[port] = (r.types, r.rows, r.sqlstates)
    r = other.run(Bind("o"), Execute(), Sync())
    results["other client"] = (r.types, r.rows, r.sqlstates)
    expected = ("2DCZ", [["one"]], [])
    assert results == {pg.port: expected, px.port: expected, "other client": expected}


# ------------------------------------------------------------------ 10. schema change

def test_schema_change_retried_once_outside_transaction(pg, pgmedic, wires, table_name):
    """PostgreSQL refuses to run a prepared statement whose result type changed
    (0A000 "cached plan must not change result type").  Outside a transaction block
    pgmedic re-prepares the statement and sends the Bind/Execute/Sync again, once:
    the client gets the rows (in the new shape) instead of the error.  Inside a
    transaction block the error is passed on, as PostgreSQL gives it.  A client that
    then closes and re-prepares the statement gets it working either way."""
    t = table_name
    px = txn(pgmedic, pool_size=1)
    pg.sql(f"DROP TABLE IF EXISTS {t}")
    pg.sql(f"CREATE TABLE {t} (a int)")
    pg.sql(f"INSERT INTO {t} VALUES (1)")
    try:
        direct, proxied = wires(pg.port), wires(px.port)
        for w in (direct, proxied):
            r = w.run(Parse("s", f"SELECT * FROM {t}"), Bind("s"), Execute(), Sync())
            assert (r.types, r.rows) == ("12DCZ", [["1"]]), r
        pg.sql(f"ALTER TABLE {t} ADD COLUMN b int DEFAULT 7")

        r = direct.run(Bind("s"), Execute(), Sync())
        assert (r.types, r.sqlstates) == ("EZ", ["0A000"]), r
        assert "cached plan must not change result type" in r.errors[0]["M"]
        # through pgmedic: retried once, with a Describe of the portal it sees the new shape
        r = proxied.run(Bind("s"), Describe("P", ""), Execute(), Sync())
        assert (r.types, r.rows, r.sqlstates) == ("2TDCZ", [["1", "7"]], []), r
        assert px.metrics().get("pgmedic_prepared_retries_total") == 1
        assert "sending the request again once" in px.stderr_text()
        r = proxied.run(Bind("s"), Execute(), Sync())
        assert (r.types, r.rows) == ("2DCZ", [["1", "7"]]), r
        assert proxied.nothing_pending()

        # inside a transaction block: passed on, never replayed
        pg.sql(f"ALTER TABLE {t} ADD COLUMN c int DEFAULT 8")
        for w in (direct, proxied):
            assert w.simple("BEGIN")[0] == []
            r = w.run(Bind("s"), Execute(), Sync())
            assert (r.types, r.sqlstates) == ("EZ", ["0A000"]), r
            w.simple("ROLLBACK")
            assert w.simple("SELECT 'still here'")[0] == [["still here"]]
        assert px.metrics().get("pgmedic_prepared_retries_total") == 1

        # closing and preparing again works on both
        for port, w in ((pg.port, direct), (px.port, proxied)):
            assert w.run(Close("S", "s"), Sync()).types == "3Z"
            r = w.run(Parse("s", f"SELECT * FROM {t}"), Describe("S", "s"), Bind("s"), Execute(), Sync())
            assert (r.types, r.sqlstates, r.rows) == ("1tT2DCZ", [], [["1", "7", "8"]]), (port, r)
    finally:
        pg.sql(f"DROP TABLE IF EXISTS {t}")


# ------------------------------------------------------------------ response queue vs. big messages

def test_large_row_description_keeps_queue_in_step(pg, pgmedic, wires):
    """BUG (pgmedic): server_process pops the response queue only for messages that
    are complete in its 16 kB read buffer.  A RowDescription bigger than that (a
    wide SELECT) streams through unexamined, its Describe's queue entry stays, and
    every later response is matched against the wrong entry: a synthesized
    ParseComplete is withheld (the client gets 2DCZ for Parse/Bind/Execute/Sync).

    Reproduction (pool_size=1): client B prepares 'SELECT 42'.  Client A:
    Parse w '<SELECT of 400 columns with 60-character aliases>' / Describe S w / Sync
    -> 1tTZ (fine); Parse x 'SELECT 42' / Bind x / Execute / Sync -> 2DCZ, no
    ParseComplete (expected 12DCZ)."""
    px = txn(pgmedic, pool_size=1)
    wide = "SELECT " + ", ".join(f"{i} AS c{i:03d}_{'x' * 56}" for i in range(400))
    b = wires(px.port)
    assert b.run(Parse("y", "SELECT 42"), Sync()).types == "1Z"
    for port in (pg.port, px.port):
        a = wires(port, timeout=3.0)
        r = a.run(Parse("w", wide), Describe("S", "w"), Sync())
        assert r.types == "1tTZ", (port, r)
        assert len(r.first("T")) > 20000
        r = a.run(Parse("x", "SELECT 42"), Bind("x"), Execute(), Sync())
        assert (r.types, r.rows) == ("12DCZ", [["42"]]), (port, r)
        r = a.run(Bind("w"), Execute(), Sync())
        assert r.types == "2DCZ" and len(r.rows[0]) == 400, (port, r.types)
        assert a.nothing_pending(), port


def test_split_command_complete_keeps_queue_in_step(pg, pgmedic, wires):
    """BUG (pgmedic), same cause as above with a CommandComplete that arrives in two
    reads: PostgreSQL flushes its 8 kB output buffer when full, so a CommandComplete
    that straddles the 8192-byte mark is sent in two parts, and a following slow
    statement (pg_sleep) holds the second part back.  pgmedic streams the partial
    CommandComplete without popping the Execute's queue entry; the next request's
    synthesized ParseComplete is withheld (2DCZ instead of 12DCZ) and arrives as a
    stray message at the start of the exchange after it.

    Reproduction (pool_size=1): client B prepares 'SELECT 43'.  Client A: Parse big
    "SELECT repeat('x', $1::int)", Parse slow 'SELECT pg_sleep(0.4)' / Sync; Bind big
    (8171) / Execute / Bind slow / Execute / Sync -> 2DC2DCZ (fine); Parse x
    'SELECT 43' / Bind x / Execute / Sync -> 2DCZ (expected 12DCZ)."""
    px = txn(pgmedic, pool_size=1)
    b = wires(px.port)
    assert b.run(Parse("y", "SELECT 43"), Sync()).types == "1Z"
    # Response stream: BindComplete (5) + DataRow (5 + 2 + 4 + n) + CommandComplete
    # ("SELECT 1": 5 + 9).  Put the CommandComplete across offset 8192.
    n = 8192 - 5 - 11 - 5
    big = "SELECT repeat('x', $1::int)"
    for port in (pg.port, px.port):
        a = wires(port, timeout=5.0)
        assert a.run(Parse("big", big), Parse("slow", "SELECT pg_sleep(0.4)"), Sync()).types == "11Z"
        r = a.run(Bind("big", [n]), Execute(), Bind("slow"), Execute(), Sync())
        assert r.types == "2DC2DCZ", (port, r)
        r = a.run(Parse("x", "SELECT 43"), Bind("x"), Execute(), Sync())
        assert (r.types, r.rows) == ("12DCZ", [["43"]]), (port, r)
        assert a.nothing_pending(), port


# ------------------------------------------------------------------ 9. real clients

@pytest.mark.timeout_s(60)
def test_psycopg3_prepare_threshold_zero_threads(pgmedic):
    import psycopg
    px = pgmedic(pool_mode="transaction", pool_size=2)
    errors = []

    def worker(k):
        try:
            with psycopg.connect(px.dsn(), autocommit=True, prepare_threshold=0) as conn:
                for i in range(120):
                    # Repeated texts (prepared once, then reused) and distinct ones.
                    assert conn.execute("SELECT %s::int + %s::int", (i, k)).fetchone() == (i + k,)
                    assert conn.execute(f"SELECT %s::text || '-{k}-{i % 7}'",
                                        (f"v{i}",)).fetchone() == (f"v{i}-{k}-{i % 7}",)
                    if i % 3 == 0:
                        q = f"SELECT {i} AS n, %s::int * {k + 1} AS m /* distinct {k}-{i} */"
                        assert conn.execute(q, (i,)).fetchone() == (i, i * (k + 1))
                    if i % 25 == 0:
                        with conn.transaction():
                            conn.execute("SELECT 1").fetchone()
                            assert conn.execute("SELECT %s::int", (k,)).fetchone() == (k,)
        except Exception as e:  # reported below, with the thread
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    assert not any(t.is_alive() for t in threads), "psycopg worker hung"
    assert not errors, errors
    # They really went through named statements: the server connections hold
    # pgmedic's pgm_ statements (at most max_prepared_statements, 200 by default).
    with psycopg.connect(px.dsn(), autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgm%'").fetchone()[0]
    assert 0 < n <= 200


BENCH_DB = "pgmedic_prep_bench"


@pytest.mark.timeout_s(90)
def test_pgbench_prepared_tpcb(pg, pgmedic):
    pgbench = str(PG_BIN / "pgbench")
    env = dict(os.environ, PGCONNECT_TIMEOUT="10")
    pg.ensure_db(BENCH_DB)
    subprocess.run([pgbench, "-h", "127.0.0.1", "-p", str(pg.port), "-U", SUPERUSER, "-i", "-s", "1", "-q",
                    BENCH_DB], check=True, capture_output=True, env=env, timeout=60)
    px = pgmedic(pool_mode="transaction", pool_size=2, upstream=pg.url(dbname=BENCH_DB))
    before = pg.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                    "(SELECT sum(bbalance) FROM pgbench_branches)", dbname=BENCH_DB)[0]
    cmd = [pgbench, "-h", "127.0.0.1", "-p", str(px.port), "-U", SUPERUSER, "-n", "-M", "prepared",
           "-c", "4", "-j", "4", "-t", "200", BENCH_DB]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=80)
    out = f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.returncode == 0, out
    assert "number of transactions actually processed: 800/800" in r.stdout, out
    assert "number of failed transactions: 0 " in r.stdout, out
    count, delta = pg.sql("SELECT count(*), coalesce(sum(delta), 0) FROM pgbench_history", dbname=BENCH_DB)[0]
    assert count == 800, out
    after = pg.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                   "(SELECT sum(bbalance) FROM pgbench_branches)", dbname=BENCH_DB)[0]
    assert [a - b for a, b in zip(after, before)] == [delta, delta]
