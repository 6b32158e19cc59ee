"""Query profiling: fingerprints, exact counts, percentiles, wait time, routes,
/api/queries, /api/routes and the per-fingerprint /metrics, against a real
PostgreSQL through pgmedic."""
import json
import struct
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

import pgwire
from conftest import DB, SUPERUSER


def api(px, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{px.http_port}{path}", timeout=10) as r:
        assert r.headers.get("Content-Type") == "application/json"
        return json.loads(r.read())


def queries(px, **params):
    qs = "&".join(f"{k}={v}" for k, v in params.items()) or "limit=0"
    return api(px, f"/api/queries?{qs}")["queries"]


def find(qs, needle):
    hits = [q for q in qs if needle in q["query"]]
    assert len(hits) == 1, (needle, [q["query"] for q in qs])
    return hits[0]


@pytest.fixture
def table(pg):
    pg.sql("DROP TABLE IF EXISTS prof_t")
    pg.sql("CREATE TABLE prof_t (id int PRIMARY KEY, v text)")
    pg.sql("INSERT INTO prof_t SELECT g, 'v' || g FROM generate_series(1, 100) g")
    yield "prof_t"
    pg.sql("DROP TABLE IF EXISTS prof_t")


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_exact_counts_and_grouping(pgmedic, table, mode):
    px = pgmedic(pool_mode=mode, pool_size=2)
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for i in range(1, 31):
        cur.execute("SELECT v FROM prof_t WHERE id = %s", (i,))
        assert cur.fetchall() == [(f"v{i}",)]
    # the same shape written differently, and IN lists of any length from 2 (a
    # one-element list stays apart, as PostgreSQL 18 keeps `IN (1)` apart): one entry
    for n in range(2, 12):
        ids = tuple(range(1, n + 1))
        cur.execute("select   COUNT(*) from prof_t\n where id in %s -- a comment", (ids,))
        assert cur.fetchone() == (n,)
    for _ in range(3):
        cur.execute("UPDATE prof_t SET v = v WHERE id < %s", (5,))
    for _ in range(2):
        with pytest.raises(Exception):
            cur.execute("SELECT 1 / %s AS boom", (0,))
    conn.close()

    qs = queries(px)
    sel = find(qs, "from prof_t where id = $1")
    assert sel["calls"] == 30 and sel["rows"] == 30 and sel["errors"] == 0
    assert sel["database"] == DB and sel["user"] == "postgres"
    assert len(sel["fingerprint"]) == 16
    cnt = find(qs, "count(*) from prof_t")
    assert cnt["calls"] == 10 and cnt["rows"] == 10, cnt
    upd = find(qs, "update prof_t")
    assert upd["calls"] == 3 and upd["rows"] == 12
    boom = find(qs, "as boom")
    assert boom["calls"] == 2 and boom["errors"] == 2
    assert boom["errors_by_class"] == {"22": 2}
    for q in (sel, cnt, upd, boom):
        assert q["min_ms"] <= q["p50_ms"] * 1.02 + 0.001
        assert q["p50_ms"] <= q["p95_ms"] <= q["p99_ms"] <= q["p999_ms"]
        assert q["p999_ms"] <= q["max_ms"] * 1.02 + 0.001
        assert q["total_ms"] == pytest.approx(q["mean_ms"] * q["calls"], rel=1e-6, abs=1e-3)
        assert q["first_seen"] <= q["last_seen"]
    # literals never appear in examples by default
    assert "v30" not in json.dumps(qs)


def test_shape_cache_keeps_shown_numbers_apart(pgmedic, table):
    """Inlined texts that differ only in their numbers are found by shape in the
    cache instead of normalized again; numbers the normalized text shows (ORDER BY
    1, varchar(10), a quoted identifier) still give their own fingerprints."""
    px = pgmedic(pool_mode="transaction", pool_size=2)
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for i in range(1, 41):
        cur.execute("SELECT v FROM prof_t WHERE id = %s LIMIT %s", (i, 10 ** (i % 4)))
        assert cur.fetchall() == [(f"v{i}",)]
    for col in (1, 2, 1, 2, 1):
        cur.execute(f"SELECT id, v AS ordered FROM prof_t WHERE id < {col + 3} ORDER BY {col}")
    for n in (10, 20, 10):
        cur.execute(f"SELECT v::varchar({n}) AS typmod FROM prof_t WHERE id = {n}")
    for n in (5, 6, 5):
        cur.execute(f'SELECT v AS "{n}" FROM prof_t WHERE id = {n * 11}')
    conn.close()

    qs = queries(px)
    sel = find(qs, "from prof_t where id = $1 limit $2")
    assert sel["calls"] == 40 and sel["rows"] == 40
    by_text = {q["query"]: q["calls"] for q in qs if "prof_t" in q["query"] and q is not sel}
    ordered = {t: c for t, c in by_text.items() if "as ordered" in t}
    assert sorted(ordered.values()) == [2, 3] and any(t.endswith("order by 1") for t in ordered), ordered
    typmod = {t: c for t, c in by_text.items() if "as typmod" in t}
    assert sorted(typmod.values()) == [1, 2] and any("varchar(10)" in t for t in typmod), typmod
    quoted = {t: c for t, c in by_text.items() if t.startswith('select v as "')}
    assert sorted(quoted.values()) == [1, 2] and any('as "5"' in t for t in quoted), quoted

    texts = {labels["via"]: v for labels, v in px.metrics().series("pgmedic_profile_texts_total")}
    # the 40 selects: the first normalized, the other 39 found by shape; the 11
    # others normalized every time (their numbers show in the normalized text)
    assert texts == {"normalized": 12, "text_cache": 0, "shape_cache": 39}, texts


def test_tagged_texts_found_by_their_body(pgmedic, table):
    """Texts that end with a sqlcommenter comment (pgmedic_django: its request_id
    makes each one unique) are found in the cache by the text without it, with
    each text's own route and request; a "comment" that is not one of the statement
    (here inside a line comment) is never split off."""
    px = pgmedic(pool_mode="transaction", pool_size=2)
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for r in range(4):
        tag = f"/*controller='shop.views.t',request_id='r{r}',route='%%2Ft%%2F{r % 2}'*/"
        for i in range(1, 11):
            cur.execute("SELECT v FROM prof_t WHERE id = %s " + tag, (i + r,))
        cur.execute("SELECT count(*) AS tagged_count FROM prof_t " + tag.replace("%%", "%") + ";")
    for i in range(1, 6):
        cur.execute(f"SELECT v AS in_line_comment FROM prof_t WHERE id = {i} -- /*route='%2Fnot%2F'*/")
    conn.close()

    qs = queries(px)
    sel = find(qs, "select v from prof_t where id = $1")
    assert sel["calls"] == 40 and sel["rows"] == 40
    assert find(qs, "as tagged_count")["calls"] == 4
    assert find(qs, "as in_line_comment")["calls"] == 5
    routes = {r["route"]: r for r in api(px, "/api/routes?limit=0")["routes"]}
    assert {k: (v["requests"], v["calls"]) for k, v in routes.items() if k.startswith("/t/")} == \
        {"/t/0": (2, 22), "/t/1": (2, 22)}
    assert not [k for k in routes if "not" in k], routes.keys()
    texts = {labels["via"]: v for labels, v in px.metrics().series("pgmedic_profile_texts_total")}
    # normalized: the first select and the first count (their bodies then cached),
    # and the 5 line-comment texts every time (no tag comment of theirs to split off)
    assert texts == {"normalized": 7, "text_cache": 3, "shape_cache": 39}, texts


def test_extended_protocol_and_pipeline(pgmedic, table):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    with psycopg.connect(px.dsn(), autocommit=True, prepare_threshold=0) as conn:
        for i in range(1, 21):
            assert conn.execute("SELECT v FROM prof_t WHERE id = %s /* ext */", (i,)).fetchone() == (f"v{i}",)
        with conn.pipeline():
            curs = [conn.execute("SELECT pg_sleep(0.02), %s::int AS piped", (i,)) for i in range(10)]
        assert [c.fetchone()[1] for c in curs] == list(range(10))
    qs = queries(px)
    ext = find(qs, "where id = $1")
    assert ext["calls"] == 20 and ext["rows"] == 20
    piped = find(qs, "as piped")
    assert piped["calls"] == 10 and piped["rows"] == 10
    # each Execute in the pipeline is timed on its own: ~20 ms each, not the whole batch
    assert 18 <= piped["p50_ms"] <= 60, piped
    assert 180 <= piped["total_ms"] <= 600, piped


def read_until_ready(c, n):
    """Reads the answers to n requests (n ReadyForQuery); returns the DataRows seen."""
    rows = 0
    while n:
        kind, payload = c.read_msg()
        assert kind != b"E", pgwire.parse_error_fields(payload)
        rows += kind == b"D"
        n -= kind == b"Z"
    return rows


def test_statements_written_at_once_are_all_profiled(pgmedic, table):
    """Many statements arriving in one read are each profiled: 40 Queries in one
    write, then a Parse, 25 Bind/Execute pairs and a Sync in another, must all be
    counted, with their rows."""
    px = pgmedic(pool_mode="transaction", pool_size=2)
    c = pgwire.RawConn("127.0.0.1", px.port)
    try:
        c.startup(SUPERUSER, DB)
        c.send(b"".join(pgwire.query_message(f"SELECT v AS batched FROM prof_t WHERE id = {i}")
                        for i in range(1, 41)))
        assert read_until_ready(c, 40) == 40
        msgs = [pgwire.message(b"P", b"\0SELECT v AS xbatched FROM prof_t WHERE id = $1\0" + struct.pack("!H", 0))]
        for i in range(1, 26):
            val = str(i).encode()
            bind = b"\0\0" + struct.pack("!HHi", 0, 1, len(val)) + val + struct.pack("!H", 0)
            msgs += [pgwire.message(b"B", bind), pgwire.message(b"E", b"\0" + struct.pack("!i", 0))]
        msgs.append(pgwire.message(b"S"))
        c.send(b"".join(msgs))
        assert read_until_ready(c, 1) == 25
    finally:
        c.close()
    qs = queries(px)
    simple = find(qs, "as batched")
    assert simple["calls"] == 40 and simple["rows"] == 40, simple
    ext = find(qs, "as xbatched")
    assert ext["calls"] == 25 and ext["rows"] == 25, ext


def test_percentiles(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for d in [0.005] * 40 + [0.05] * 10:
        cur.execute("SELECT pg_sleep(%s)", (d,))
    conn.close()
    q = find(queries(px), "pg_sleep")
    assert q["calls"] == 50
    # pg_sleep sleeps at least as asked; the histogram reports within 2 %
    assert 5.0 * 0.98 <= q["p50_ms"] <= 5.0 * 1.02 + 4, q
    assert 50 * 0.98 <= q["p95_ms"] <= 50 * 1.02 + 10, q
    assert q["min_ms"] >= 5.0 * 0.98 and q["max_ms"] >= 50
    assert q["stddev_ms"] > 10


def test_wait_time_is_split_from_server_time(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    holder = px.connect()
    started = threading.Event()

    def hold():
        with holder.cursor() as c:
            c.execute("SELECT pg_sleep(0.4) AS holding")
            started.set()
        holder.commit()

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.1)  # the holder's transaction has the only server
    waiter = px.connect()
    waiter.autocommit = True
    with waiter.cursor() as c:
        c.execute("SELECT 42 AS waited")
        assert c.fetchone() == (42,)
    t.join()
    holder.close()
    waiter.close()
    w = find(queries(px), "as waited")
    assert w["calls"] == 1
    assert w["wait_ms"] >= 150, w
    assert w["total_ms"] < 100, w


def test_keep_literals(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    conn = px.connect()
    conn.autocommit = True
    conn.cursor().execute("SELECT %s AS secret_col", ("very-secret-literal",))
    conn.close()
    ex = find(queries(px), "secret_col")["example"]
    assert "very-secret-literal" not in ex and "$1" in ex and "secret_col" in ex

    px2 = pgmedic(pool_mode="transaction", pool_size=1, args=["--keep-literals"])
    conn = px2.connect()
    conn.autocommit = True
    conn.cursor().execute("SELECT %s AS secret_col", ("very-secret-literal",))
    conn.close()
    assert "very-secret-literal" in find(queries(px2), "secret_col")["example"]


def test_example_with_a_non_utf8_literal(pgmedic):
    """A LATIN1 client's literal is not UTF-8: redacted (the default), the example
    still shows, without it; with --keep-literals it cannot be a JSON string and is
    null. Either way the document stays valid JSON."""
    px = pgmedic(pool_mode="transaction", pool_size=1)
    conn = px.connect()
    conn.set_client_encoding("LATIN1")
    conn.autocommit = True
    conn.cursor().execute("SELECT 'caf\u00e9' AS latin_col")
    conn.close()
    ex = find(queries(px), "latin_col")["example"]
    assert isinstance(ex, str) and "latin_col" in ex and "caf" not in ex and "$1" in ex, ex

    px2 = pgmedic(pool_mode="transaction", pool_size=1, args=["--keep-literals"])
    conn = px2.connect()
    conn.set_client_encoding("LATIN1")
    conn.autocommit = True
    conn.cursor().execute("SELECT 'caf\u00e9' AS latin_col")
    conn.close()
    assert find(queries(px2), "latin_col")["example"] is None


def test_bounded_fingerprints(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1, settings={"max_fingerprints": 10})
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for i in range(50):
        cur.execute(f"SELECT 1 AS col_{i}")
    conn.close()
    body = api(px, "/api/queries?limit=0")
    assert len(body["queries"]) <= 10
    assert body["totals"]["calls"] == 50
    assert body["totals"]["evicted"] >= 40
    assert body["totals"]["fingerprints"] == len(body["queries"])


def test_routes_from_sqlcommenter_and_application_name(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2)
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for r in range(3):
        tag = f"/*controller='shop.views.book_list',request_id='req{r}',route='%%2Fbooks%%2F'*/"
        for i in range(5):
            cur.execute("SELECT %s AS book " + tag, (i,))
        cur.execute("SELECT count(*) + %s AS n_books " + tag, (0,))
    conn.close()
    app = px.connect(application_name="billing-worker")
    app.autocommit = True
    app.cursor().execute("SELECT 7 AS billing")
    app.close()

    routes = {r["route"]: r for r in api(px, "/api/routes?limit=0")["routes"]}
    books = routes["/books/"]
    assert books["source"] == "route" and books["controller"] == "shop.views.book_list"
    assert books["requests"] == 3 and books["calls"] == 18
    assert books["queries_per_request"] == pytest.approx(6.0)
    fps = {f["query"]: f for f in books["fingerprints"]}
    book = next(f for q, f in fps.items() if "as book" in q)
    assert book["calls"] == 15 and book["calls_per_request"] == pytest.approx(5.0)
    assert books["p50_ms"] is not None and books["p50_ms"] <= books["p95_ms"]
    billing = routes["billing-worker"]
    assert billing["source"] == "application_name" and billing["calls"] == 1
    assert billing["requests"] == 0 and billing["queries_per_request"] is None
    q = find(queries(px), "as book")
    assert q["routes"] == [{"route": "/books/", "calls": 15, "total_ms": pytest.approx(q["total_ms"])}]
    # the comment is not part of the fingerprint's text
    assert "controller" not in q["query"]


def test_application_name_route_follows_set(pgmedic):
    """A client's statements go to its application_name route; after SET
    application_name, to the new name's route at once (pgmedic remembers the
    client's route and must notice the change)."""
    px = pgmedic(pool_mode="transaction", pool_size=1)
    conn = px.connect(application_name="worker-a")
    conn.autocommit = True
    cur = conn.cursor()
    for _ in range(3):
        cur.execute("SELECT 1 AS before_switch")
    cur.execute("SET application_name = 'worker-b'")
    for _ in range(2):
        cur.execute("SELECT 2 AS after_switch")
    cur.execute("SELECT current_setting('application_name')")
    assert cur.fetchone()[0] == "worker-b"
    conn.close()
    before = find(queries(px), "as before_switch")
    after = find(queries(px), "as after_switch")
    assert [(r["route"], r["calls"]) for r in before["routes"]] == [("worker-a", 3)]
    assert [(r["route"], r["calls"]) for r in after["routes"]] == [("worker-b", 2)]
    routes = {r["route"]: r for r in api(px, "/api/routes?limit=0")["routes"]}
    assert routes["worker-b"]["source"] == "application_name"


def test_metrics_top_fingerprints(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1, settings={"metrics_top_fingerprints": 2})
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for i in range(5):
        cur.execute("SELECT pg_sleep(0.01) AS slowest")
    for i in range(7):
        cur.execute(f"SELECT {i} AS cheap")
    cur.execute("SELECT 'x' AS once")
    conn.close()
    m = px.metrics()
    assert m.get("pgmedic_profile_statements_total") == 13
    series = m.series("pgmedic_query_calls_total")
    assert len(series) == 2, series
    by_query = {ls["query"]: v for ls, v in series}
    slow = next(v for q, v in by_query.items() if "slowest" in q)
    assert slow == 5
    count = [v for ls, v in m.series("pgmedic_query_duration_seconds_count") if "slowest" in ls["query"]]
    assert count == [5]
    le = {ls["le"]: v for ls, v in m.series("pgmedic_query_duration_seconds_bucket") if "slowest" in ls["query"]}
    assert le["0.005"] == 0 and le["0.025"] == 5 and le["+Inf"] == 5


def test_profile_off_and_bad_parameters(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1, settings={"profile": "off"})
    conn = px.connect()
    conn.autocommit = True
    conn.cursor().execute("SELECT 1")
    conn.close()
    body = api(px, "/api/queries")
    assert body["queries"] == [] and body["totals"]["profiling"] is False
    for path in ("/api/queries?sort=bogus", "/api/queries?limit=-1", "/api/routes?sort=mean"):
        with pytest.raises(urllib.error.HTTPError) as e:
            api(px, path)
        assert e.value.code == 400
        assert "error" in json.loads(e.value.read())


def test_models_roundtrip(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    url = f"http://127.0.0.1:{px.http_port}/api/models"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=5)
    assert e.value.code == 404
    doc = {"version": 1, "models": [{"app_label": "shop", "model": "Book", "table": "shop_book"}]}
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.loads(r.read()) == {"ok": True, "models": 1}
    assert api(px, "/api/models") == doc
    bad = urllib.request.Request(url, data=b"[1,2", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad, timeout=5)
    assert e.value.code == 400
