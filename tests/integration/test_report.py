"""`pgmedic report`: the findings of a running pgmedic (GET /api/findings), read as
a developer would want them.  Runs against a scripted local HTTP server serving a
realistic document with every kind of finding (the endpoint itself is tested with
the proxy); asserts the order (most wasted time first), each header line, the
query cut to the width, the fix, the code change (ORM call, SQL, Meta.indexes,
costs before -> after), the summary, --json passthrough, --limit, and the errors:
HTTP failures and a document without findings exit 1, usage mistakes exit 2.
"""
import json

import pytest

from clitool import ScriptedServer, json_response, run_cli
from conftest import free_port

ARROW = "\u2192"

LONG_QUERY = ("SELECT shop_author.id, shop_author.name, shop_author.bio, shop_author.born, shop_author.country, "
              "shop_author.website, shop_author.created_at FROM shop_author WHERE shop_author.id = $1 LIMIT $2")

FINDINGS = {"findings": [
    {"id": "slow_query:9f9f9f9f9f9f9f9f", "kind": "slow_query", "severity": "medium",
     "route": "/search/", "table": "shop_book", "columns": ["title"], "fingerprint": "9f9f9f9f9f9f9f9f",
     "query": "SELECT * FROM shop_book WHERE title ILIKE $1 ORDER BY published DESC", "occurrences": 40,
     "time_wasted_ms": 800.0, "p95_ms": 31.25, "database": "shop",
     "fix": "This query reads all of shop_book to keep a few rows: a trigram index (pg_trgm) on title would let "
            "ILIKE use an index.",
     "sql": None, "django": None,
     "plan": {"total_cost": 2834.5, "plan_rows": 12, "node_types": ["Sort", "Seq Scan"],
              "costliest_node": {"node_type": "Seq Scan", "relation": "shop_book", "cost": 2810.0,
                                 "plan_rows": 12, "actual_rows": None, "filter": "(title ~~* '%django%'::text)"},
              "seq_scans": [{"relation": "shop_book", "filter": "(title ~~* '%django%'::text)", "plan_rows": 12,
                             "table_rows": 100000, "rows_removed": None}],
              "sorts": [{"sort_key": ["published DESC"], "cost": 24.5}], "analyzed": False}},
    {"id": "n_plus_one:/books/:a1a1a1a1a1a1a1a1", "kind": "n_plus_one", "severity": "high",
     "route": "/books/", "controller": "shop.views.book_list", "table": "shop_author", "columns": ["id"],
     "fingerprint": "a1a1a1a1a1a1a1a1", "query": LONG_QUERY, "occurrences": 12, "time_wasted_ms": 1440.0,
     "time_wasted_per_request_ms": 120.0, "queries_per_request": 51.0, "database": "shop", "example": None,
     "fix": "Each request to /books/ loads the author of every book with its own query: fetch them in the "
            "book query with select_related(\"author\").",
     "django": {"model": "Book", "app_label": "shop", "relation": "author", "method": "select_related",
                "inferred": False},
     "grouping": "request_id"},
    {"id": "n_plus_one:/tags/:b3b3b3b3b3b3b3b3", "kind": "n_plus_one", "severity": "medium",
     "route": "/tags/", "table": "shop_book_tags", "columns": ["book_id"], "fingerprint": "b3b3b3b3b3b3b3b3",
     "query": "SELECT shop_tag.id, shop_tag.name FROM shop_tag INNER JOIN shop_book_tags ON "
              "(shop_tag.id = shop_book_tags.tag_id) WHERE shop_book_tags.book_id = $1",
     "occurrences": 5, "time_wasted_ms": 300.0, "queries_per_request": 21,
     "fix": "Each request to /tags/ loads the tags of every book with its own query: use "
            "prefetch_related(\"tags\").",
     "django": {"model": "Book", "app_label": "shop", "relation": "tags", "method": "prefetch_related"},
     "grouping": "idle_gap"},
    {"id": "duplicate_query:/books/<int:pk>/:c4c4c4c4c4c4c4c4", "kind": "duplicate_query", "severity": "low",
     "route": "/books/<int:pk>/", "controller": "shop.views.book_detail", "table": "shop_stock",
     "columns": ["book_id"], "fingerprint": "c4c4c4c4c4c4c4c4",
     "query": "SELECT shop_stock.quantity FROM shop_stock WHERE shop_stock.book_id = $1", "occurrences": 8,
     "time_wasted_ms": 48.0, "duplicates_per_request": 3,
     "fix": "The same query with the same parameters runs 3 times in each request: keep the first result in a "
            "variable (or cached_property).",
     "sql": None, "django": None, "grouping": "request_id"},
    {"id": "missing_index:shop_book(published,title)", "kind": "missing_index", "severity": "high",
     "route": "/books/recent/", "table": "shop_book", "columns": ["published", "title"],
     "fingerprint": "d5d5d5d5d5d5d5d5",
     "query": "SELECT * FROM shop_book WHERE published >= $1 ORDER BY title LIMIT $2", "occurrences": 400,
     "time_wasted_ms": 3200.0,
     "fix": "shop_book is read in full to find recent books: an index on (published, title) lets PostgreSQL "
            "read only those.",
     "sql": "CREATE INDEX CONCURRENTLY ON shop_book (published, title)",
     "django": {"model": "Book", "app_label": "shop", "fields": ["published", "title"],
                "change": "Meta.indexes = [models.Index(fields=[\"published\", \"title\"])]"},
     "cost_before": 1834.5, "cost_after": 8.27, "verified": True},
    {"id": "missing_index:shop_review(stars)", "kind": "missing_index", "severity": "medium",
     "route": None, "table": "shop_review", "columns": ["stars"], "fingerprint": "e6e6e6e6e6e6e6e6",
     "query": "SELECT count(*) FROM shop_review WHERE stars = $1", "occurrences": 30, "time_wasted_ms": 600.0,
     "fix": "shop_review is read in full to count reviews by stars: index stars.",
     "sql": "CREATE INDEX CONCURRENTLY ON shop_review (stars)",
     "django": {"model": "Review", "app_label": "shop", "field": "stars", "change": "db_index=True"},
     "cost_before": 950.0, "cost_after": None, "verified": False},
    {"id": "unindexed_foreign_key:public.shop_review(book_id)", "kind": "unindexed_foreign_key",
     "severity": "low", "route": None, "table": "shop_review", "columns": ["book_id"], "fingerprint": None,
     "query": None, "occurrences": 1, "time_wasted_ms": 0,
     "fix": "Index the foreign key shop_review.book_id (Review.book, app shop): PostgreSQL does not index "
            "foreign keys by itself.",
     "sql": "CREATE INDEX CONCURRENTLY shop_review_book_id_idx ON public.shop_review (book_id);",
     "django": {"model": "Review", "app_label": "shop", "field": "book", "change": "db_index=True"},
     "ref_table": "shop_book", "size_bytes": 745472},
    {"id": "unused_index:public.shop_book_isbn_idx", "kind": "unused_index", "severity": "low", "route": None,
     "table": "shop_book", "columns": ["isbn"], "fingerprint": None, "query": None, "occurrences": 1,
     "time_wasted_ms": 0, "fix": "Index shop_book_isbn_idx on shop_book.isbn has not been scanned once.",
     "sql": "DROP INDEX CONCURRENTLY public.shop_book_isbn_idx;", "django": None,
     "index": "shop_book_isbn_idx", "size_bytes": 16384, "idx_scan": 0, "stats_reset": None},
    {"id": "redundant_index:public.shop_book_title_idx", "kind": "redundant_index", "severity": "low",
     "route": None, "table": "shop_book", "columns": ["title"], "fingerprint": None, "query": None,
     "occurrences": 1, "time_wasted_ms": 0, "fix": "Index shop_book_title_idx is covered by another.",
     "sql": "DROP INDEX CONCURRENTLY public.shop_book_title_idx;", "django": None,
     "index": "shop_book_title_idx", "size_bytes": 2 * 1024 * 1024, "redundant_to": "shop_book_title_published_idx"},
]}


@pytest.fixture
def serve():
    servers = []

    def make(response):
        raw = response if isinstance(response, bytes) else json_response(response)
        s = ScriptedServer(lambda path, n: raw)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.sock.close()


def blocks(out):
    """{finding header: its lines} in printed order (blocks are separated by blank lines)."""
    result = {}
    for block in out.strip().split("\n\n"):
        lines = block.splitlines()
        if lines and lines[0].startswith("["):
            result[lines[0]] = lines[1:]
    return result


def summary(out):
    """The last paragraph (the summary, maybe wrapped) on one line."""
    return " ".join(out.strip().split("\n\n")[-1].split())


def report(serve, doc=FINDINGS, *args, columns="120"):
    srv = serve(doc)
    rc, out, err = run_cli("report", "--http", srv.url, *args, env={"COLUMNS": columns})
    assert rc == 0, err
    assert err == ""
    assert srv.paths == ["/api/findings"]
    return out


def test_order_and_headers(serve):
    out = report(serve, FINDINGS, "--limit", "0")
    b = blocks(out)
    assert list(b) == [
        "[high] missing index on shop_book (published, title): 3200 ms wasted in 400 calls, in /books/recent/",
        "[high] N+1 in /books/ (shop.views.book_list): 51 queries per request, 120 ms wasted per request "
        "(12 requests, 1440 ms in all)",
        "[medium] slow query in /search/: 800 ms wasted in 40 calls, p95 31.25 ms",
        "[medium] missing index on shop_review (stars): 600 ms wasted in 30 calls",
        "[medium] N+1 in /tags/: 21 queries per request, 60 ms wasted per request (5 requests, 300 ms in all)",
        "[low] duplicate query in /books/<int:pk>/ (shop.views.book_detail): the same query 3 times per request, "
        "6 ms wasted per request (8 requests, 48 ms in all)",
        # no time measured: most severe, then most occurrences, then largest
        "[low] redundant index shop_book_title_idx on shop_book (title), 2.0 MB, covered by "
        "shop_book_title_published_idx",
        f"[low] unindexed foreign key shop_review (book_id) {ARROW} shop_book, table 728 kB",
        "[low] unused index shop_book_isbn_idx on shop_book (isbn), 16 kB",
    ]
    assert summary(out) == ("9 findings: 2 missing index, 2 N+1, 1 slow query, 1 duplicate query, "
                            "1 redundant index, 1 unindexed foreign key, 1 unused index; 6388 ms wasted")


def test_code_changes(serve):
    b = list(blocks(report(serve, FINDINGS, "--limit", "0", columns="200")).values())
    idx, n1, slow, idx2, n1_tags, dup, red, fk, unused = b
    assert idx == [
        "  query   SELECT * FROM shop_book WHERE published >= $1 ORDER BY title LIMIT $2",
        "  fix     shop_book is read in full to find recent books: an index on (published, title) lets PostgreSQL "
        "read only those.",
        "  sql     CREATE INDEX CONCURRENTLY ON shop_book (published, title)",
        '  django  Book: Meta.indexes = [models.Index(fields=["published", "title"])]',
        f"  cost    1834.5 {ARROW} 8.27, verified with HypoPG",
    ]
    assert n1[0].startswith("  query   SELECT shop_author.id, shop_author.name")
    assert n1[1].startswith("  fix     Each request to /books/ loads the author")
    assert n1[2:] == ['  django  Book.objects.select_related("author")']
    assert '  django  Book.objects.prefetch_related("tags")' in n1_tags
    assert any(line.startswith("  note    requests were told apart by idle gaps") for line in n1_tags)
    assert not any("idle gaps" in line for line in n1)
    assert idx2[-2:] == ["  django  Review.stars: db_index=True",
                         "  cost    950 now, not verified (HypoPG not installed)"]
    assert slow[1] == ("  plan    Seq Scan on shop_book (cost 2810, 12 rows estimated), "
                       "filter (title ~~* '%django%'::text)")
    assert dup[1].startswith("  fix     The same query with the same parameters runs 3 times")
    assert "sql" not in "".join(dup)
    assert fk == ["  fix     Index the foreign key shop_review.book_id (Review.book, app shop): PostgreSQL does not "
                  "index foreign keys by itself.",
                  "  sql     CREATE INDEX CONCURRENTLY shop_review_book_id_idx ON public.shop_review (book_id);",
                  "  django  Review.book: db_index=True"]
    assert unused == ["  fix     Index shop_book_isbn_idx on shop_book.isbn has not been scanned once.",
                      "  sql     DROP INDEX CONCURRENTLY public.shop_book_isbn_idx;"]
    assert red[-1] == "  sql     DROP INDEX CONCURRENTLY public.shop_book_title_idx;"


def test_query_cut_to_width(serve):
    out = report(serve, FINDINGS, columns="80")
    qline = next(line for line in out.splitlines() if line.startswith("  query   SELECT shop_author.id"))
    assert len(qline) == 80 and qline.endswith("\u2026"), qline
    for line in out.splitlines():
        if not line.startswith("["):  # headers are whole; the rest fits
            assert len(line) <= 80, line
    assert out.endswith("\n\n9 findings: 2 missing index, 2 N+1, 1 slow query, 1 duplicate query, 1\n"
                        "  redundant index, 1 unindexed foreign key, 1 unused index; 6388 ms wasted\n")
    # fix sentences are wrapped, not cut: every word is there
    fix = out.split("[high] N+1 in /books/")[1].split("  django")[0]
    assert " ".join(fix.split()).endswith('fetch them in the book query with select_related("author").')


def test_limit(serve):
    out = report(serve, FINDINGS, "--limit", "2")
    assert len(blocks(out)) == 2
    assert "\u2026 7 more (--limit 0 shows all)" in out
    assert "\n9 findings: 2 missing index, 2 N+1, " in out  # the summary counts all
    out = report(serve, FINDINGS)  # default 20: all nine
    assert len(blocks(out)) == 9 and "more (--limit" not in out


def test_json_passthrough(serve):
    out = report(serve, FINDINGS, "--json", "--limit", "1")
    assert json.loads(out) == FINDINGS  # unchanged, unsorted, not limited


def test_no_findings(serve):
    out = report(serve, {"findings": []})
    assert out == ("no findings: pgmedic has not seen a problem in the traffic it profiled so far\n"
                   "0 findings; 0 ms wasted\n")


def test_unknown_kind_and_missing_fields(serve):
    doc = {"findings": [{"id": "x", "kind": "future_kind", "severity": "medium", "table": "t", "columns": [],
                         "time_wasted_ms": 5, "occurrences": 1, "fix": "Do the thing."},
                        {"kind": "n_plus_one"}, "not an object"]}
    out = report(serve, doc)
    assert "[medium] future_kind on t: 5 ms wasted in 1 call\n  fix     Do the thing.\n" in out
    assert "[?] N+1 outside any route:, 0 ms wasted\n" in out
    assert summary(out) == "2 findings: 1 future_kind, 1 N+1; 5 ms wasted"


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("response,message", [
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
     "GET /api/findings answered 'HTTP/1.1 404 Not Found': not found"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!", "invalid JSON from GET /api/findings"),
    (json_response({"queries": []}), '/api/findings has no "findings" array'),
    (json_response({"findings": {"a": 1}}), '/api/findings has no "findings" array'),
    (b"", "closed the connection without a response"),
])
def test_http_errors_exit_1(serve, response, message):
    srv = serve(response)
    for extra in ([], ["--json"]):
        rc, out, err = run_cli("report", "--http", srv.url, *extra)
        assert rc == 1, (out, err)
        assert out == ""
        assert err.startswith("pgmedic report: ") and message in err, err


def test_connection_refused_exits_1():
    port = free_port()
    rc, out, err = run_cli("report", "--http", f"127.0.0.1:{port}")
    assert rc == 1 and out == ""
    assert err.strip() == f"pgmedic report: cannot connect to 127.0.0.1:{port}: Connection refused"


@pytest.mark.parametrize("args,message", [
    ([], "pgmedic report: --http URL is required"),
    (["--http"], "pgmedic report: option '--http' needs a value"),
    (["--http", "http://127.0.0.1:1", "--limit", "-1"], "pgmedic report: invalid --limit '-1'"),
    (["--http", "http://127.0.0.1:1", "--limit", "x"], "pgmedic report: invalid --limit 'x'"),
    (["--http", "http://127.0.0.1:1", "--sort", "x"], "pgmedic report: unknown option '--sort'"),
    (["--http", "http://127.0.0.1:1", "stray"], "pgmedic report: unexpected argument 'stray'"),
    (["--http", "https://127.0.0.1:1"], "only http:// is supported"),
])
def test_usage_errors_exit_2(args, message):
    rc, out, err = run_cli("report", *args)
    assert rc == 2, (rc, out, err)
    assert out == "" and message in err, err
    assert "Try 'pgmedic report --help' for more information." in err


@pytest.mark.parametrize("args", [["help", "report"], ["report", "--help"], ["report", "-h"]])
def test_help(args):
    rc, out, err = run_cli(*args)
    assert rc == 0, err
    assert out.startswith("Usage: pgmedic report --http URL [--limit N] [--json]")
