"""The request detectors: N+1 loops and duplicate queries, with the ORM fix, from
real traffic through pgmedic (hand-written ORM-shaped SQL with sqlcommenter tags,
as pgmedic_django sends it; the Django end-to-end runs in test_bookstore.py)."""
import json
import time
import urllib.request

import psycopg
import pytest

SCHEMA = """
DROP TABLE IF EXISTS det_book_tags, det_review, det_book, det_author, det_tag CASCADE;
CREATE TABLE det_author (id serial PRIMARY KEY, name text);
CREATE TABLE det_tag (id serial PRIMARY KEY, name text);
CREATE TABLE det_book (id serial PRIMARY KEY, title text, author_id int REFERENCES det_author(id));
CREATE TABLE det_review (id serial PRIMARY KEY, book_id int REFERENCES det_book(id), rating int);
CREATE TABLE det_book_tags (id serial PRIMARY KEY, book_id int REFERENCES det_book(id),
                            tag_id int REFERENCES det_tag(id));
INSERT INTO det_author (name) SELECT 'a' || g FROM generate_series(1, 20) g;
INSERT INTO det_tag (name) SELECT 't' || g FROM generate_series(1, 5) g;
INSERT INTO det_book (title, author_id) SELECT 'b' || g, 1 + g % 20 FROM generate_series(1, 40) g;
INSERT INTO det_review (book_id, rating) SELECT 1 + g % 40, g % 5 FROM generate_series(1, 200) g;
INSERT INTO det_book_tags (book_id, tag_id) SELECT 1 + g % 40, 1 + g % 5 FROM generate_series(1, 80) g;
"""

MODELS = {"version": 1, "models": [
    {"app_label": "det", "model": "Book", "table": "det_book", "pk": "id",
     "fields": [{"name": "id", "column": "id"}, {"name": "title", "column": "title"},
                {"name": "author", "column": "author_id"}],
     "relations": [
         {"kind": "forward_fk", "name": "writer", "column": "author_id", "to_model": "det.Author",
          "to_table": "det_author", "to_column": "id"},
         {"kind": "reverse_fk", "name": "critiques", "related_name": "critiques", "from_model": "det.Review",
          "from_table": "det_review", "from_column": "book_id", "to_table": "det_book", "to_column": "id"},
         {"kind": "m2m", "name": "labels", "to_model": "det.Tag", "to_table": "det_tag",
          "through_table": "det_book_tags", "through_from_column": "book_id", "through_to_column": "tag_id"}]},
    {"app_label": "det", "model": "Author", "table": "det_author", "pk": "id", "fields": [], "relations": []},
    {"app_label": "det", "model": "Review", "table": "det_review", "pk": "id", "fields": [], "relations": []},
    {"app_label": "det", "model": "Tag", "table": "det_tag", "pk": "id", "fields": [], "relations": []},
]}

BOOKS = 'SELECT "det_book"."id", "det_book"."title", "det_book"."author_id" FROM "det_book" ORDER BY "det_book"."id" ASC LIMIT 10'
AUTHOR = 'SELECT "det_author"."id", "det_author"."name" FROM "det_author" WHERE "det_author"."id" = %s LIMIT 21'
REVIEWS = 'SELECT "det_review"."id", "det_review"."rating" FROM "det_review" WHERE "det_review"."book_id" = %s'
TAGS = ('SELECT "det_tag"."id", "det_tag"."name" FROM "det_tag" INNER JOIN "det_book_tags" ON '
        '("det_tag"."id" = "det_book_tags"."tag_id") WHERE "det_book_tags"."book_id" = %s')


def tag(route, req):
    return (f" /*controller='det.views.{route.strip('/') or 'root'}',request_id='{req}',"
            f"route='{route.replace('/', '%%2F')}'*/")


@pytest.fixture
def schema(pg):
    pg.sql(SCHEMA)
    yield
    pg.sql("DROP TABLE IF EXISTS det_book_tags, det_review, det_book, det_author, det_tag CASCADE")


def api(px, path, data=None):
    req = urllib.request.Request(f"http://127.0.0.1:{px.http_port}{path}",
                                 data=json.dumps(data).encode() if data is not None else None,
                                 method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def findings(px, kind=None, route=None):
    fs = api(px, "/api/findings")["findings"]
    return [f for f in fs if (kind is None or f["kind"] == kind) and (route is None or f["route"] == route)]


def run_requests(px, route, second, n_requests=3, per_request=10, params=lambda i: (1 + i,)):
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for r in range(n_requests):
        t = tag(route, f"{route}-{r}")
        cur.execute(BOOKS + t.replace("%%", "%"))
        cur.fetchall()
        for i in range(per_request):
            cur.execute(second + t, params(i))
            cur.fetchall()
    conn.close()  # ends the last request


def wait_for(fn, timeout=8.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.2)


@pytest.mark.parametrize("with_models", [True, False])
def test_n_plus_one_forward_reverse_m2m(pgmedic, schema, with_models):
    px = pgmedic(pool_mode="transaction", pool_size=2, settings={"advisor": "off"})
    if with_models:
        api(px, "/api/models", MODELS)
    run_requests(px, "/books/", AUTHOR)
    run_requests(px, "/reviews/", REVIEWS)
    run_requests(px, "/tags/", TAGS)
    expect = {
        "/books/": ("writer" if with_models else "author", "select_related", "det_author", ["id"]),
        "/reviews/": ("critiques" if with_models else "review_set", "prefetch_related", "det_review", ["book_id"]),
        "/tags/": ("labels" if with_models else "tags", "prefetch_related", "det_tag", ["book_id"]),
    }
    for route, (relation, method, table, cols) in expect.items():
        fs = wait_for(lambda: findings(px, "n_plus_one", route))
        assert len(fs) == 1, (route, findings(px))
        f = fs[0]
        assert f["django"] == {"model": "Book", "relation": relation, "method": method,
                               "inferred": not with_models}, f
        assert f["occurrences"] == 3 and f["queries_per_request"] == 10
        assert f["table"] == table and f["columns"] == cols
        assert f["grouping"] == "request_id" and f["controller"] == f"det.views.{route.strip('/')}"
        assert f".{method}(\"{relation}\")" in f["fix"] and "Book" in f["fix"]
        assert f["time_wasted_ms"] > 0 and len(f["fingerprint"]) == 16
    # the loop's repeated authors (1 + i % 20 ...) are not reported as duplicates too
    assert findings(px, "duplicate_query") == []


def test_duplicates_and_no_false_positives(pgmedic, schema):
    px = pgmedic(pool_mode="transaction", pool_size=2, settings={"advisor": "off"})
    # the same author five times per request: a duplicate, not an N+1
    run_requests(px, "/dup/", AUTHOR, n_requests=2, per_request=5, params=lambda i: (7,))
    # four different authors per request: below the threshold of 5
    run_requests(px, "/few/", AUTHOR, n_requests=2, per_request=4)
    # a long request of different statements
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    t = tag("/many/", "m1")
    for i in range(12):
        cur.execute(f"SELECT {i} AS col_{i}" + t.replace("%%", "%"))
    conn.close()
    dup = wait_for(lambda: findings(px, "duplicate_query", "/dup/"))
    assert len(dup) == 1 and dup[0]["duplicates_per_request"] == 5 and dup[0]["occurrences"] == 2, dup
    assert dup[0]["table"] == "det_author" and dup[0]["columns"] == ["id"]
    assert findings(px, "n_plus_one") == []
    assert findings(px, route="/few/") == [] and findings(px, route="/many/") == []


def test_untagged_requests_grouped_by_idle_gaps(pgmedic, schema):
    px = pgmedic(pool_mode="transaction", pool_size=2,
                 settings={"advisor": "off", "request_idle_gap": "0.3"})
    conn = px.connect(application_name="worker")
    conn.autocommit = True
    cur = conn.cursor()
    for burst in range(2):
        cur.execute(BOOKS)
        for i in range(6):
            cur.execute(AUTHOR, (1 + i,))
        time.sleep(0.6)
    # the second burst ends when the client has been idle for the gap (janitor sweep)
    f = wait_for(lambda: [x for x in findings(px, "n_plus_one") if x["occurrences"] >= 2])
    assert len(f) == 1 and f[0]["grouping"] == "idle_gap" and f[0]["route"] == "worker", findings(px)
    assert f[0]["occurrences"] == 2 and f[0]["queries_per_request"] == 6
    conn.close()


def test_extended_protocol_parameters(pgmedic, schema):
    """Bind parameters tell an N+1 (different values) from a duplicate (the same)."""
    px = pgmedic(pool_mode="transaction", pool_size=2, settings={"advisor": "off"})
    with psycopg.connect(px.dsn(), autocommit=True) as conn:
        t = tag("/ext/", "e1")
        conn.execute(BOOKS + t.replace("%%", "%")).fetchall()
        for i in range(6):
            conn.execute(AUTHOR + t, (1 + i,)).fetchall()
        t = tag("/extdup/", "e2")
        conn.execute(BOOKS + t.replace("%%", "%")).fetchall()
        for i in range(3):
            conn.execute(AUTHOR + t, (3,)).fetchall()
    assert wait_for(lambda: findings(px, "n_plus_one", "/ext/"))
    dup = wait_for(lambda: findings(px, "duplicate_query", "/extdup/"))
    assert dup and dup[0]["duplicates_per_request"] == 3
