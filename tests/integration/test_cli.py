"""The client subcommands: `pgmedic top`, `pgmedic snapshot`, `pgmedic compare`.

- compare runs over hand-made snapshots in cli_fixtures/ (before.json: the /books/
  route runs an N+1 of 51 queries per request; after.json: the fix, 2 per request)
  and every computed number is asserted as printed;
- top and snapshot run against a small scripted HTTP server (exact frames, error
  responses) and against a live pgmedic (the `pgmedic` fixture) after real queries;
- usage errors exit 2 with a message, runtime errors (connection refused, bad
  files) exit 1 with a message.
"""
import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from clitool import ScriptedServer, json_response, run_cli
from conftest import PGMEDIC_BIN, free_port, wait_until

FIXTURES = Path(__file__).resolve().parent / "cli_fixtures"
BEFORE = FIXTURES / "before.json"
AFTER = FIXTURES / "after.json"
ARROW = "\u2192"





def section(text, start, end=None):
    """The lines of `text` from the line starting with `start` up to the next line
    starting with `end` (or a blank line when end is None)."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(start))
    out = []
    for line in lines[i + 1:]:
        if (end is None and not line.strip()) or (end is not None and line.startswith(end)):
            break
        out.append(line)
    return out


def kv_rows(lines):
    """'  label   value' lines of a route block -> {label: value}."""
    rows = {}
    for line in lines:
        m = re.match(r"^  (\S.*?)\s{2,}(\S.*)$", line)
        if m and not line.startswith("    "):
            rows[m.group(1)] = m.group(2)
    return rows


def table_rows(lines):
    """Rows of a table (cells separated by two or more spaces), keyed by first cell."""
    rows = {}
    for line in lines:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


# ------------------------------------------------------------------ compare

def test_compare_routes_before_after():
    rc, out, err = run_cli("compare", BEFORE, AFTER)
    assert rc == 0, err
    assert err == ""
    assert f"before: {BEFORE}" in out and f"after:  {AFTER}" in out
    assert "Routes: 5 (largest change in total time first)" in out

    books = kv_rows(section(out, "/books/ (route)", "    FINGERPRINT"))
    assert books == {
        "requests": f"10 {ARROW} 10 (0)",
        "queries per request": f"51 {ARROW} 2 (-49)",
        "time per request, mean ms": f"27 {ARROW} 6.5 (-75.9%)",
        "time per request, p95 ms": f"40 {ARROW} 9 (-77.5%)",
        "total ms": f"270 {ARROW} 65 (-75.9%)",
    }
    fps = table_rows(section(out, "    FINGERPRINT"))
    # the N+1 query is gone from the route (its list is complete: 0 calls now)
    assert fps["a1a1a1a1a1a1a1a1"][0] == f"50 {ARROW} 0 (-50)"
    assert fps["c3c3c3c3c3c3c3c3"][0] == f"0 {ARROW} 1 (+1)"
    assert fps["b2b2b2b2b2b2b2b2"][0] == f"1 {ARROW} 1 (0)"
    assert fps["a1a1a1a1a1a1a1a1"][1].startswith("SELECT shop_author.id")

    stock = kv_rows(section(out, "/stock/<int:pk>/ (route)", "    FINGERPRINT"))
    assert stock["queries per request"] == f"1 {ARROW} 1 (0)"
    assert stock["time per request, mean ms"] == f"2 {ARROW} 3 (+50.0%)"
    assert stock["time per request, p95 ms"] == f"5 {ARROW} 7.5 (+50.0%)"

    tags = kv_rows(section(out, "/tags/ (route)  [gone]", "    FINGERPRINT"))
    assert tags["requests"] == f"5 {ARROW} -"
    assert tags["queries per request"] == f"20 {ARROW} -"
    labels = kv_rows(section(out, "/labels/ (route)  [new route]", "    FINGERPRINT"))
    assert labels["requests"] == f"- {ARROW} 10"
    assert labels["time per request, mean ms"] == f"- {ARROW} 0.5"

    # a route without requests (application_name) has no per-request figures
    worker = kv_rows(section(out, "worker (application_name)", "    FINGERPRINT"))
    assert worker["requests"] == f"0 {ARROW} 0 (0)"
    assert worker["queries per request"] == "-"
    assert worker["time per request, mean ms"] == "-"
    assert worker["total ms"] == f"3000 {ARROW} 3000 (0%)"

    # sorted by the change in total time: 205, 40, 30, 5, 0
    order = [line.split(" (")[0] for line in out.splitlines()
             if re.match(r"^\S.* \((route|application_name)\)", line)]
    assert order == ["/books/", "/stock/<int:pk>/", "/tags/", "/labels/", "worker"]


def test_compare_fingerprints_new_and_gone():
    rc, out, err = run_cli("compare", BEFORE, AFTER, env={"COLUMNS": "250"})
    assert rc == 0, err
    assert "Queries in both snapshots: 3 (largest change in total time first)" in out
    both = section(out, "Queries in both snapshots")
    assert both[0].split() == ["FINGERPRINT", "CALLS", "MEAN", "MS", "P95", "MS", "TOTAL", "MS", "QUERY"]
    rows = table_rows(both[1:])
    assert [r.strip().split()[0] for r in both[1:]] == ["e5e5e5e5e5e5e5e5", "b2b2b2b2b2b2b2b2", "f6f6f6f6f6f6f6f6"]
    # e5 is two entries in before.json (two databases): merged to 40 calls, 80 ms, p95 5
    assert rows["e5e5e5e5e5e5e5e5"][:4] == [f"40 {ARROW} 40 (0%)", f"2 {ARROW} 3 (+50.0%)",
                                             f"5 {ARROW} 7.5 (+50.0%)", f"80 {ARROW} 120 (+50.0%)"]
    assert rows["b2b2b2b2b2b2b2b2"][:4] == [f"10 {ARROW} 10 (0%)", f"2 {ARROW} 2.5 (+25.0%)",
                                             f"4 {ARROW} 5 (+25.0%)", f"20 {ARROW} 25 (+25.0%)"]
    assert rows["e5e5e5e5e5e5e5e5"][4] == "UPDATE shop_stock SET quantity = quantity - $1 WHERE book_id = $2"

    assert "New queries (only in AFTER): 2" in out
    new = table_rows(section(out, "New queries (only in AFTER)")[1:])
    assert list(new) == ["c3c3c3c3c3c3c3c3", "0707070707070707"]
    assert new["c3c3c3c3c3c3c3c3"][:4] == ["10", "4", "6", "40"]
    assert "Gone queries (only in BEFORE): 2" in out
    gone = table_rows(section(out, "Gone queries (only in BEFORE)")[1:])
    assert list(gone) == ["a1a1a1a1a1a1a1a1", "d4d4d4d4d4d4d4d4"]
    assert gone["a1a1a1a1a1a1a1a1"][:4] == ["500", "0.5", "1.2", "250"]


def test_compare_query_text_fits_the_width():
    rc, out, _ = run_cli("compare", BEFORE, AFTER, env={"COLUMNS": "100"})
    assert rc == 0
    for line in section(out, "Gone queries (only in BEFORE)"):
        assert len(line) <= 100, line
    assert "\u2026" in out  # long query texts were cut with an ellipsis


def test_compare_json():
    rc, out, err = run_cli("compare", BEFORE, AFTER, "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["before"] == {"file": str(BEFORE), "taken_at": 1714550000.0, "url": "http://127.0.0.1:9187"}
    assert [r["route"] for r in d["routes"]] == ["/books/", "/stock/<int:pk>/", "/tags/", "/labels/", "worker"]
    books = d["routes"][0]
    assert books["status"] == "both" and books["source"] == "route"
    assert books["queries_per_request"]["before"] == 51
    assert books["queries_per_request"]["after"] == 2
    assert books["queries_per_request"]["change"] == -49
    assert books["time_per_request_ms"]["change_pct"] == pytest.approx(-75.9259, abs=1e-3)
    assert books["p95_ms"] == {"before": 40, "after": 9, "change": -31, "change_pct": -77.5}
    nplus1 = next(f for f in books["fingerprints"] if f["fingerprint"] == "a1a1a1a1a1a1a1a1")
    assert nplus1["status"] == "gone"
    assert nplus1["calls_per_request"] == {"before": 50, "after": 0, "change": -50, "change_pct": -100.0}
    assert [r["status"] for r in d["routes"]] == ["both", "both", "gone", "new", "both"]
    worker = d["routes"][4]
    assert worker["queries_per_request"] == {"before": None, "after": None, "change": None, "change_pct": None}

    fps = {f["fingerprint"]: f for f in d["fingerprints"]}
    assert list(fps) == ["e5e5e5e5e5e5e5e5", "b2b2b2b2b2b2b2b2", "f6f6f6f6f6f6f6f6"]
    assert fps["e5e5e5e5e5e5e5e5"]["mean_ms"] == {"before": 2, "after": 3, "change": 1, "change_pct": 50.0}
    assert fps["b2b2b2b2b2b2b2b2"]["p95_ms"]["change_pct"] == 25.0
    assert [f["fingerprint"] for f in d["new_fingerprints"]] == ["c3c3c3c3c3c3c3c3", "0707070707070707"]
    assert [f["fingerprint"] for f in d["gone_fingerprints"]] == ["a1a1a1a1a1a1a1a1", "d4d4d4d4d4d4d4d4"]
    assert d["gone_fingerprints"][0]["calls"] == 500


def test_compare_limit():
    rc, out, _ = run_cli("compare", BEFORE, AFTER, "--limit", "1")
    assert rc == 0
    assert "/books/ (route)" in out and "/stock/<int:pk>/ (route)" not in out
    assert "\u2026 4 more (--limit 0 shows all)" in out
    rc, out, _ = run_cli("compare", BEFORE, AFTER, "--json", "--limit", "2")
    assert rc == 0
    d = json.loads(out)
    assert len(d["routes"]) == 2 and len(d["fingerprints"]) == 2
    assert len(d["routes"][0]["fingerprints"]) == 2


def test_compare_same_file_shows_no_change():
    rc, out, _ = run_cli("compare", AFTER, AFTER)
    assert rc == 0
    assert f"2 {ARROW} 2 (0)" in out
    assert "New queries (only in AFTER): 0" in out and "Gone queries (only in BEFORE): 0" in out


@pytest.mark.parametrize("name,message", [
    ("does_not_exist.json", "cannot read {path}: No such file or directory"),
    ("invalid.json", "{path} is not valid JSON: line 2"),
    ("not_a_snapshot.json", "{path} is not a pgmedic snapshot"),
    ("missing_calls.json", "{path}: queries[2]: \"calls\" must be a non-negative number"),
])
def test_compare_bad_files(name, message):
    path = FIXTURES / name
    for args in ((path, AFTER), (BEFORE, path)):
        rc, out, err = run_cli("compare", *args)
        assert rc == 1, (args, out, err)
        assert out == ""
        assert err.startswith("pgmedic compare: ")
        assert message.format(path=path) in err, err


# ------------------------------------------------------------------ usage

@pytest.mark.parametrize("args,message", [
    (["top"], "pgmedic top: --http URL is required"),
    (["top", "--http"], "pgmedic top: option '--http' needs a value"),
    (["top", "--http", "http://127.0.0.1:1", "--sort", "bogus"], "pgmedic top: invalid --sort 'bogus'"),
    (["top", "--http", "http://127.0.0.1:1", "--limit", "-1"], "pgmedic top: invalid --limit '-1'"),
    (["top", "--http", "http://127.0.0.1:1", "--count", "0"], "pgmedic top: invalid --count '0'"),
    (["top", "--http", "http://127.0.0.1:1", "--interval", "soon"], "pgmedic top: invalid --interval 'soon'"),
    (["top", "--http", "http://127.0.0.1:1", "--bogus"], "pgmedic top: unknown option '--bogus'"),
    (["top", "--http", "http://127.0.0.1:1", "stray"], "pgmedic top: unexpected argument 'stray'"),
    (["top", "--http", "http://127.0.0.1:99999"], "pgmedic top: invalid URL 'http://127.0.0.1:99999': bad port"),
    (["snapshot"], "pgmedic snapshot: --http URL is required"),
    (["snapshot", "--http", "https://127.0.0.1:1"], "only http:// is supported"),
    (["snapshot", "--http", "http://127.0.0.1:1", "extra"], "pgmedic snapshot: unexpected argument 'extra'"),
    (["snapshot", "--http", "http://127.0.0.1:1", "-o"], "pgmedic snapshot: option '-o' needs a value"),
    (["compare"], "pgmedic compare: expected two snapshot files, BEFORE.json and AFTER.json (got 0)"),
    (["compare", "a.json"], "(got 1)"),
    (["compare", "a.json", "b.json", "c.json"], "(got 3)"),
    (["compare", "--limit", "many", "a.json", "b.json"], "pgmedic compare: invalid --limit 'many'"),
    (["compare", "--color", "a.json", "b.json"], "pgmedic compare: unknown option '--color'"),
    (["help", "nosuch"], "pgmedic help: unknown command 'nosuch'"),
])
def test_usage_errors_exit_2(args, message):
    rc, out, err = run_cli(*args)
    assert rc == 2, (args, rc, out, err)
    assert message in err, err
    assert out == ""
    if args[0] != "help":
        assert f"Try 'pgmedic {args[0]} --help' for more information." in err


@pytest.mark.parametrize("args,expect", [
    (["help"], "pgmedic COMMAND [ARGS]"),
    (["help", "top"], "Usage: pgmedic top --http URL"),
    (["help", "snapshot"], "Usage: pgmedic snapshot --http URL [-o FILE]"),
    (["help", "compare"], "Usage: pgmedic compare BEFORE.json AFTER.json"),
    (["top", "--help"], "Usage: pgmedic top --http URL"),
    (["snapshot", "-h"], "Usage: pgmedic snapshot"),
    (["compare", "--help"], "Usage: pgmedic compare"),
])
def test_help(args, expect):
    rc, out, err = run_cli(*args)
    assert rc == 0, err
    assert expect in out


def test_run_subcommand_is_the_proxy():
    rc, out, err = run_cli("run", "--help")
    assert rc == 0, err
    rc2, out2, _ = run_cli("--help")
    assert rc2 == 0 and out == out2 and out
    rc, _, err = run_cli("run", "--no-such-flag")
    assert rc == 2 and err.startswith("pgmedic: "), err


# ------------------------------------------------------------------ runtime errors

@pytest.mark.parametrize("cmd", [["top", "--count", "1"], ["snapshot"]])
def test_connection_refused_exits_1(cmd):
    port = free_port()
    rc, out, err = run_cli(*cmd, "--http", f"http://127.0.0.1:{port}")
    assert rc == 1, (out, err)
    assert err.strip() == f"pgmedic {cmd[0]}: cannot connect to 127.0.0.1:{port}: Connection refused"
    assert out == ""


@pytest.fixture
def scripted():
    servers = []

    def make(respond):
        s = ScriptedServer(respond)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def queries_doc(calls, taken_at, query_text="SELECT * FROM shop_book WHERE id = $1"):
    return {
        "queries": [{
            "fingerprint": "0123456789abcdef", "query": query_text, "database": "shop", "user": "app",
            "calls": calls, "errors": 2, "rows": 3 * calls, "total_ms": 1.5 * calls, "mean_ms": 1.5,
            "min_ms": 0.5, "max_ms": 9.0, "stddev_ms": 0.3, "p50_ms": 1.25, "p95_ms": 4.75, "p99_ms": 8.0,
            "p999_ms": 9.0, "wait_ms": 0.25, "first_seen": 900.0, "last_seen": taken_at,
            "routes": [{"route": "/books/", "calls": calls // 4, "total_ms": 10.0},
                       {"route": "/books/<int:pk>/", "calls": calls - calls // 4, "total_ms": 99.0}],
            "example": None}],
        "totals": {"calls": calls, "errors": 2, "total_ms": 1.5 * calls, "fingerprints": 1, "evicted": 0},
        "taken_at": taken_at,
    }


def test_top_frames_and_rates(scripted):
    frames = [queries_doc(100, 1000.0), queries_doc(150, 1002.0)]
    srv = scripted(lambda path, n: json_response(frames[min(n, 1)]))
    rc, out, err = run_cli("top", "--http", srv.url, "--count", "2", "--interval", "0.1",
                           "--sort", "calls", "--limit", "5", env={"COLUMNS": "160"})
    assert rc == 0, err
    assert srv.paths == ["/api/queries?sort=calls&limit=5"] * 2
    assert "Connection: close" in srv.heads[0]
    assert "\033[" not in out  # not a terminal: no screen control
    assert out.startswith("pgmedic top - ")
    assert len(out.split("\n\npgmedic top - ")) == 2, out  # frames separated by a blank line
    assert out.count("CALLS/S") == 2
    lines = [line for line in out.splitlines() if "shop_book" in line]
    assert len(lines) == 2
    first, second = lines[0].split(), lines[1].split()
    # CALLS CALLS/S TOTAL_MS MEAN_MS P95_MS ROWS ERRORS WAIT_MS ROUTE QUERY
    assert first[:9] == ["100", "-", "150.0", "1.50", "4.75", "300", "2", "0.2", "/books/<int:pk>/"]
    assert second[:3] == ["150", "25.0", "225.0"]  # (150 - 100) / (1002 - 1000) s
    assert " ".join(second[9:]) == "SELECT * FROM shop_book WHERE id = $1"
    assert "calls 100  errors 2" in out and "calls 150 (25.0/s)  errors 2" in out
    for line in out.splitlines():
        assert len(line) <= 160, line


def test_top_cuts_the_query_to_the_width(scripted):
    long_query = "SELECT " + ", ".join(f"column_{i}" for i in range(60)) + " FROM wide_table"
    srv = scripted(lambda path, n: json_response(queries_doc(7, 1000.0, long_query)))
    rc, out, err = run_cli("top", "--http", srv.url, "--count", "1", env={"COLUMNS": "130"})
    assert rc == 0, err
    row = next(line for line in out.splitlines() if "column_0" in line)
    assert 125 <= len(row) <= 130 and row.endswith("\u2026"), row
    rc, out, err = run_cli("top", "--http", srv.url, "--count", "1")  # no COLUMNS: 120
    row = next(line for line in out.splitlines() if "column_0" in line)
    assert 115 <= len(row) <= 120 and row.endswith("\u2026"), row


def test_top_on_a_terminal_clears_the_screen(scripted):
    """stdout a tty: each frame starts with ANSI home + clear, and the width comes
    from the terminal (TIOCGWINSZ), not from COLUMNS."""
    import fcntl
    import pty
    import struct
    import termios
    long_query = "SELECT " + ", ".join(f"column_{i}" for i in range(60)) + " FROM wide_table"
    srv = scripted(lambda path, n: json_response(queries_doc(5, 1000.0 + n, long_query)))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
    env = dict(os.environ, COLUMNS="300")
    proc = subprocess.Popen([str(PGMEDIC_BIN), "top", "--http", srv.url, "--count", "2", "--interval", "0.1"],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.wait(timeout=10) == 0, proc.stderr.read()
    text = data.decode()
    assert text.count("\033[H\033[2J") == 2
    assert text.startswith("\033[H\033[2Jpgmedic top - ")
    assert srv.paths[0] == "/api/queries?sort=total_time&limit=25"  # 30 rows - 5 lines of header
    rows = [line for line in text.split("\r\n") if "column_0" in line]
    assert len(rows) == 2
    for row in rows:
        assert 105 <= len(row) <= 110, row
    assert rows[0].split()[1] == "-" and rows[1].split()[1] == "0.0"  # same calls, 1 s apart


@pytest.mark.parametrize("response,message", [
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
     "GET /api/queries?sort=total_time&limit=20 answered 'HTTP/1.1 404 Not Found': not found"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     "answered with Transfer-Encoding: chunked, which this client does not support"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"queries\"",
     "closed after 10 of 100 body bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!",
     "invalid JSON from GET /api/queries?sort=total_time&limit=20"),
    (b"", "closed the connection without a response"),
    (b"garbage\r\n\r\n", "malformed HTTP status line"),
])
def test_top_http_errors_exit_1(scripted, response, message):
    srv = scripted(lambda path, n: response)
    rc, out, err = run_cli("top", "--http", srv.url, "--count", "1")
    assert rc == 1, (out, err)
    assert err.startswith("pgmedic top: "), err
    assert message in err, err


def test_body_until_eof_without_content_length(scripted):
    body = json.dumps(queries_doc(3, 1000.0)).encode()
    srv = scripted(lambda path, n: b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
    rc, out, err = run_cli("top", "--http", srv.url + "/", "--count", "1")
    assert rc == 0, err
    assert srv.paths == ["/api/queries?sort=total_time&limit=20"]
    assert "shop_book" in out


def test_snapshot_document(scripted, tmp_path):
    q = queries_doc(42, 1234.5)
    routes = {"routes": [{"route": "/books/", "source": "route", "controller": "shop.views.book_list",
                          "requests": 2, "calls": 42, "errors": 0, "total_ms": 63.0, "queries_per_request": 21.0,
                          "time_per_request_ms": 31.5, "p50_ms": 30.0, "p95_ms": 33.0, "p99_ms": 33.0,
                          "fingerprints": []}],
              "taken_at": 1235.0}

    def respond(path, n):
        return json_response(q if path.startswith("/api/queries") else routes)
    srv = scripted(respond)
    out_file = tmp_path / "snap.json"
    rc, out, err = run_cli("snapshot", "--http", srv.url, "-o", out_file)
    assert rc == 0, err
    assert out == "" and err == ""
    assert srv.paths == ["/api/queries?sort=total_time&limit=0", "/api/routes?sort=total_time&limit=0"]
    snap = json.loads(out_file.read_text())
    assert snap["pgmedic_snapshot"] == 1
    assert snap["taken_at"] == 1234.5
    assert snap["url"] == srv.url
    assert snap["queries"] == q["queries"]
    assert snap["routes"] == routes["routes"]
    assert not list(tmp_path.glob("snap.json.tmp*"))
    # to stdout, and usable by compare
    rc, out, err = run_cli("snapshot", "--http", srv.url)
    assert rc == 0, err
    assert json.loads(out) == snap
    rc, cmp, err = run_cli("compare", out_file, out_file)
    assert rc == 0, err
    assert f"21 {ARROW} 21 (0)" in cmp


def test_snapshot_unwritable_file(scripted, tmp_path):
    srv = scripted(lambda path, n: json_response(queries_doc(1, 1.0) if "queries" in path else {"routes": []}))
    target = tmp_path / "no" / "such" / "dir" / "snap.json"
    rc, out, err = run_cli("snapshot", "--http", srv.url, "-o", target)
    assert rc == 1
    assert err.strip() == f"pgmedic snapshot: cannot write {target}: No such file or directory"


# ------------------------------------------------------------------ live pgmedic

def api(px, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{px.http_port}{path}", timeout=5) as r:
        return json.loads(r.read())


def query_calls(px, needle):
    """{query text: calls} of the fingerprints whose text contains needle."""
    doc = api(px, "/api/queries?sort=calls&limit=0")
    return {q["query"]: q["calls"] for q in doc["queries"] if needle in q["query"]}


def run_probes(conn, sevens, threes):
    with conn.cursor() as cur:
        for i in range(sevens):
            cur.execute("SELECT %s::int AS cli_probe_seven", (i,))
            cur.fetchall()
        for i in range(threes):
            cur.execute("SELECT %s::text AS cli_probe_three", (f"v{i}",))
            cur.fetchall()


def test_live_snapshot_top_and_compare(pgmedic, tmp_path):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    conn = px.connect()
    conn.autocommit = True
    run_probes(conn, 7, 3)
    wait_until(lambda: sorted(query_calls(px, "cli_probe_").values()) == [3, 7], 10,
               message="the API to count the probe queries")

    url = f"http://127.0.0.1:{px.http_port}"
    before = tmp_path / "before.json"
    rc, out, err = run_cli("snapshot", "--http", url, "-o", before)
    assert rc == 0, err
    snap = json.loads(before.read_text())
    assert snap["pgmedic_snapshot"] == 1 and snap["url"] == url
    assert isinstance(snap["taken_at"], (int, float)) and abs(snap["taken_at"] - time.time()) < 60
    probes = {q["query"]: q for q in snap["queries"] if "cli_probe_" in q["query"]}
    assert len(probes) == 2, list(probes)
    seven = next(q for t, q in probes.items() if "cli_probe_seven" in t)
    three = next(q for t, q in probes.items() if "cli_probe_three" in t)
    assert seven["calls"] == 7 and three["calls"] == 3
    assert re.fullmatch(r"[0-9a-f]{16}", seven["fingerprint"])
    assert "6::int" not in seven["query"]  # normalized: one fingerprint for every literal
    assert isinstance(snap["routes"], list)

    rc, out, err = run_cli("top", "--http", url, "--count", "1", "--sort", "calls", "--limit", "0",
                           env={"COLUMNS": "200"})
    assert rc == 0, err
    assert "CALLS" in out and "QUERY" in out
    rows = {}
    for line in out.splitlines():
        m = re.search(r"cli_probe_(seven|three)", line)
        if m:
            rows[m.group(1)] = line.split()
    assert rows["seven"][0] == "7" and rows["three"][0] == "3", out
    assert rows["seven"][1] == "-"  # first frame: no rate yet
    assert len(out.splitlines()) >= 5

    # two frames with traffic in between: the second shows calls and a rate
    rc, out, err = run_cli("top", "--http", url, "--count", "2", "--interval", "0.2", "--sort", "calls",
                           "--limit", "0", env={"COLUMNS": "200"})
    assert rc == 0, err
    assert out.count("CALLS/S") == 2
    assert "\n\npgmedic top - " in out

    run_probes(conn, 3, 0)
    wait_until(lambda: sorted(query_calls(px, "cli_probe_").values()) == [3, 10], 10,
               message="the API to count the new probe queries")
    after = tmp_path / "after.json"
    rc, out, err = run_cli("snapshot", "--http", url, "-o", after)
    assert rc == 0, err
    rc, out, err = run_cli("compare", before, after, "--limit", "0", env={"COLUMNS": "250"})
    assert rc == 0, err
    line = next(line for line in out.splitlines() if line.strip().startswith(seven["fingerprint"])
                and "cli_probe_seven" in line)
    assert f"7 {ARROW} 10 (+42.9%)" in line, line
    rc, out, err = run_cli("compare", before, after, "--json")
    assert rc == 0, err
    d = json.loads(out)
    f = next(f for f in d["fingerprints"] if f["fingerprint"] == seven["fingerprint"])
    assert f["calls"]["before"] == 7 and f["calls"]["after"] == 10


def test_live_routes_in_snapshot(pgmedic, tmp_path):
    """sqlcommenter-tagged requests: the snapshot's route has the right requests,
    calls and queries per request, and compare prints them."""
    px = pgmedic(pool_mode="transaction", pool_size=2)
    conn = px.connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        for req in range(4):
            for k in range(5):
                cur.execute(f"SELECT {k} AS cli_route_probe "
                            f"/*route='%2Fcli%2Fbooks%2F',request_id='cli-req-{req}'*/")
                cur.fetchall()
    conn.close()

    def route():
        doc = api(px, "/api/routes?sort=calls&limit=0")
        r = [r for r in doc["routes"] if r["route"] == "/cli/books/"]
        return r[0] if r and r[0]["requests"] == 4 else None
    r = wait_until(route, 10, message="the /cli/books/ route to count 4 requests")
    assert r["calls"] == 20 and r["queries_per_request"] == 5

    url = f"http://127.0.0.1:{px.http_port}"
    snap_file = tmp_path / "snap.json"
    rc, out, err = run_cli("snapshot", "--http", url, "-o", snap_file)
    assert rc == 0, err
    snap = json.loads(snap_file.read_text())
    r = next(r for r in snap["routes"] if r["route"] == "/cli/books/")
    assert r["source"] == "route" and r["requests"] == 4 and r["calls"] == 20
    fp = next(f for f in r["fingerprints"] if "cli_route_probe" in f["query"])
    assert fp["calls"] == 20 and fp["calls_per_request"] == 5
    rc, out, err = run_cli("compare", snap_file, snap_file)
    assert rc == 0, err
    rows = kv_rows(section(out, "/cli/books/ (route)", "    FINGERPRINT"))
    assert rows["requests"] == f"4 {ARROW} 4 (0)"
    assert rows["queries per request"] == f"5 {ARROW} 5 (0)"
