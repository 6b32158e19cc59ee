"""pgmedic's diagnosis on the bookstore demo (examples/bookstore), end to end: Django
served by gunicorn, its queries tagged by pgmedic_django, through pgmedic, against
PostgreSQL 15 with 400,000 reviews.  Each planted problem must be found, with the exact
fix, through GET /api/findings (README "Findings"):

  /books/                   n_plus_one   Book.author   select_related
  /books/reviews/           n_plus_one   Book.reviews  prefetch_related
  /books/tags/              n_plus_one   Book.tags     prefetch_related
  /publishers/<int:pk>/     duplicate_query, 5 identical queries per request
  /reviews/recent/          missing_index shop_review (status, created_at), verified with HypoPG
  shop_wishlist             unindexed_foreign_key (book_id)

and the fixed twins (/fixed/...) and ordinary views must produce no n_plus_one or
duplicate_query finding.  The last test applies the suggested indexes and measures the
same view again.  Fixture: bookstore_fixture.py (module scope).
"""
import json
import re
import subprocess

from bookstore_fixture import APP, PYTHON, bookstore  # noqa: F401  (bookstore: the fixture)

KINDS = {"n_plus_one", "duplicate_query", "slow_query", "missing_index", "unindexed_foreign_key",
         "unused_index", "redundant_index"}
COMMON_KEYS = ("id", "kind", "severity", "route", "table", "columns", "fingerprint", "query",
               "occurrences", "time_wasted_ms", "fix", "django")

# Every route pattern of examples/bookstore/shop/urls.py, as the route tag spells it.
PROJECT_ROUTES = {
    "/", "/health/", "/books/", "/books/reviews/", "/books/tags/", "/publishers/<int:pk>/",
    "/reviews/recent/", "/books/<int:pk>/wishlists/", "/fixed/books/", "/fixed/books/reviews/",
    "/fixed/books/tags/", "/fixed/publishers/<int:pk>/", "/fixed/reviews/recent/",
    "/fixed/books/<int:pk>/wishlists/", "/books/<int:pk>/",
}
FIXED_AND_ORDINARY = [
    # (route pattern, a concrete path)
    ("/fixed/books/", "/fixed/books/"),
    ("/fixed/books/reviews/", "/fixed/books/reviews/"),
    ("/fixed/books/tags/", "/fixed/books/tags/"),
    ("/fixed/publishers/<int:pk>/", "/fixed/publishers/3/"),
    ("/fixed/books/<int:pk>/wishlists/", "/fixed/books/11/wishlists/"),
    ("/books/<int:pk>/", "/books/7/"),
    ("/health/", "/health/"),
]
N = 10  # requests per view


def of(kind, route=None, table=None, occurrences=1):
    """A finding of kind (on route, on table) seen in at least `occurrences` requests.
    A request counts once it has ended for pgmedic, which is after its HTTP response
    (Django closes its connection after answering; with several event loops that close
    may be handled while the API answers on another loop): tests that made N requests
    wait for N rather than read the first finding that shows."""
    def pred(f):
        return (f.get("kind") == kind and (route is None or f.get("route") == route)
                and (table is None or f.get("table") == table) and f.get("occurrences", 0) >= occurrences)
    return pred


def only(findings, what):
    assert len(findings) == 1, f"expected one {what}, got {len(findings)}:\n{json.dumps(findings, indent=1)}"
    return findings[0]


def check_common(f):
    missing = [k for k in COMMON_KEYS if k not in f]
    assert not missing, f"finding lacks {missing}: {f}"
    assert f["kind"] in KINDS, f
    assert f["severity"] in ("high", "medium", "low"), f
    assert isinstance(f["id"], str) and f["id"], f
    assert isinstance(f["columns"], list) and all(isinstance(c, str) for c in f["columns"]), f
    assert isinstance(f["occurrences"], int) and f["occurrences"] >= 1, f
    assert isinstance(f["time_wasted_ms"], (int, float)) and f["time_wasted_ms"] >= 0, f
    assert isinstance(f["fix"], str) and f["fix"], f
    assert f["route"] is None or isinstance(f["route"], str), f


def check_n_plus_one(bs, route, path, model, relation, method, table, per_request):
    bs.get(path, N)
    bs.wait_findings(of("n_plus_one", route, occurrences=N), what=f"n_plus_one on {route} in {N} requests")
    f = only([x for x in bs.findings() if of("n_plus_one", route)(x)], f"n_plus_one on {route}")
    check_common(f)
    assert f["django"] is not None, f
    assert {k: f["django"].get(k) for k in ("model", "relation", "method", "inferred")} == \
        {"model": model, "relation": relation, "method": method, "inferred": False}, f
    assert f["queries_per_request"] == per_request, f
    assert f["occurrences"] >= N, f
    assert f["time_wasted_ms"] > 0, f
    assert re.fullmatch(r"[0-9a-f]{16}", f["fingerprint"] or ""), f
    if table is not None:
        assert f["table"] == table, f
        assert table in (f["query"] or ""), f
    # The fix names the exact call, e.g. select_related("author").
    assert re.search(r"%s\(\s*[\"']%s[\"']\s*\)" % (method, relation), f["fix"]), f["fix"]
    return f


# ------------------------------------------------------------------ set-up sanity

def test_migrations_match_the_models(bookstore):
    out = bookstore.manage("makemigrations", "--check", "--dry-run", "shop")
    assert "No changes detected" in out, out


def test_model_map_was_posted(bookstore):
    doc = bookstore.api("/api/models")
    tables = {m["label"]: m["table"] for m in doc["models"]}
    assert tables["shop.Book"] == "shop_book"
    assert tables["shop.Wishlist"] == "shop_wishlist"
    book = next(m for m in doc["models"] if m["label"] == "shop.Book")
    rel = {r["name"]: r["kind"] for r in book["relations"]}
    assert (rel["author"], rel["reviews"], rel["tags"]) == ("forward_fk", "reverse_fk", "m2m")


def test_seeded_sizes(bookstore):
    counts = bookstore.pg.sql("SELECT (SELECT count(*) FROM shop_book), (SELECT count(*) FROM shop_review), "
                              "(SELECT count(*) FROM shop_book_tags), (SELECT count(*) FROM shop_wishlist)",
                              dbname="pgmedic_bookstore")[0]
    assert counts == (5000, 400000, 15000, 50000)


# ------------------------------------------------------------------ planted problems

def test_n_plus_one_over_a_forward_fk(bookstore):
    check_n_plus_one(bookstore, "/books/", "/books/", "Book", "author", "select_related", "shop_author", 50)


def test_n_plus_one_over_a_reverse_fk(bookstore):
    check_n_plus_one(bookstore, "/books/reviews/", "/books/reviews/", "Book", "reviews", "prefetch_related",
                     "shop_review", 30)


def test_n_plus_one_over_a_many_to_many(bookstore):
    f = check_n_plus_one(bookstore, "/books/tags/", "/books/tags/", "Book", "tags", "prefetch_related", None, 40)
    assert f["table"] in ("shop_tag", "shop_book_tags"), f


def test_duplicate_queries(bookstore):
    route = "/publishers/<int:pk>/"
    for pk in range(1, N + 1):
        bookstore.get(f"/publishers/{pk}/")
    bookstore.wait_findings(of("duplicate_query", route, occurrences=N),
                            what=f"duplicate_query on {route} in {N} requests")
    f = only([x for x in bookstore.findings() if of("duplicate_query", route)(x)], f"duplicate_query on {route}")
    check_common(f)
    assert f["duplicates_per_request"] == 5, f
    assert f["table"] == "shop_publisher", f
    assert f["occurrences"] >= N, f
    assert "shop_publisher" in f["query"], f
    # Not an N+1: the five queries have the same parameters.
    assert not [x for x in bookstore.findings() if x["kind"] == "n_plus_one" and x["route"] == route]


def test_missing_index_verified_with_hypopg(bookstore):
    bookstore.get("/reviews/recent/", N)
    hits = bookstore.wait_findings(of("missing_index", table="shop_review"), timeout=45,
                                   what="missing_index on shop_review")
    f = only([h for h in hits if h["columns"] == ["status", "created_at"]] or hits,
             "missing_index on shop_review")
    check_common(f)
    assert f["columns"] == ["status", "created_at"], f
    assert f["verified"] is True, f
    assert isinstance(f["cost_before"], (int, float)) and isinstance(f["cost_after"], (int, float)), f
    assert f["cost_after"] * 2 <= f["cost_before"], f
    assert re.fullmatch(r'\s*CREATE INDEX CONCURRENTLY\b.*\bON\s+(public\.)?"?shop_review"?\s*'
                        r'(USING\s+btree\s*)?\(\s*"?status"?\s*,\s*"?created_at"?\s*\)\s*;?\s*', f["sql"], re.I), f
    assert f["route"] in (None, "/reviews/recent/"), f
    assert "shop_review" in (f["query"] or ""), f
    if f["django"] is not None:
        assert f["django"].get("model") == "Review", f


def test_unindexed_foreign_key(bookstore):
    bookstore.get("/books/11/wishlists/", N)
    f = only(bookstore.wait_findings(of("unindexed_foreign_key", table="shop_wishlist"), timeout=45,
                                     what="unindexed_foreign_key on shop_wishlist"),
             "unindexed_foreign_key on shop_wishlist")
    check_common(f)
    assert f["columns"] == ["book_id"], f
    assert re.fullmatch(r'\s*CREATE INDEX CONCURRENTLY\b.*\bON\s+(public\.)?"?shop_wishlist"?\s*'
                        r'(USING\s+btree\s*)?\(\s*"?book_id"?\s*\)\s*;?\s*', f["sql"], re.I), f
    assert f["django"] is not None and f["django"].get("model") == "Wishlist", f
    assert "book" in f["fix"], f
    # Django's own FKs all have their index: this is the only unindexed one.
    others = [x for x in bookstore.findings() if x["kind"] == "unindexed_foreign_key"
              and x["table"] != "shop_wishlist"]
    assert not others, others


# ------------------------------------------------------------------ no false positives

def test_fixed_twins_and_ordinary_views_have_no_request_findings(bookstore):
    for route, path in FIXED_AND_ORDINARY:
        bookstore.get(path, N)
    for route, _ in FIXED_AND_ORDINARY:
        r = bookstore.wait_requests(route, N)
        assert r["queries_per_request"] <= 2, r
    # Findings are made when a request ends: one more round trip, then look.
    bookstore.get("/health/")
    bookstore.wait_requests("/health/", N + 1)
    routes = {r for r, _ in FIXED_AND_ORDINARY}
    bad = [f for f in bookstore.findings()
           if f["kind"] in ("n_plus_one", "duplicate_query") and f["route"] in routes]
    assert not bad, json.dumps(bad, indent=1)


def test_findings_follow_the_contract_and_name_route_tags(bookstore):
    findings = bookstore.findings()
    kinds = {f["kind"] for f in findings}
    assert {"n_plus_one", "duplicate_query"} <= kinds, kinds
    seen_routes = set(bookstore.routes())
    for f in findings:
        check_common(f)
        if f["route"] is not None:
            # The route pattern as pgmedic_django tagged it, never a concrete path.
            assert f["route"] in PROJECT_ROUTES, f
            assert f["route"] in seen_routes, (f["route"], sorted(seen_routes))
        if f["kind"] in ("n_plus_one", "duplicate_query"):
            assert f["route"] in PROJECT_ROUTES, f
    ids = [f["id"] for f in findings]
    assert len(ids) == len(set(ids)), ids
    # Stable ids: the same problem keeps its id.
    again = {f["id"] for f in bookstore.findings()}
    assert {f["id"] for f in findings if f["kind"] in ("n_plus_one", "duplicate_query")} <= again


# ------------------------------------------------------------------ the fix works

def test_suggested_indexes_fix_the_slow_views(bookstore):
    """Applies the SQL of the missing_index and unindexed_foreign_key findings as they
    are, then the same view code (the /fixed/ twin) is measured by pgmedic."""
    findings = bookstore.findings()
    fixes = [f for f in findings if f["kind"] in ("missing_index", "unindexed_foreign_key")
             and f["table"] in ("shop_review", "shop_wishlist")]
    assert {f["table"] for f in fixes} == {"shop_review", "shop_wishlist"}, fixes
    conn = bookstore.pg.connect(dbname="pgmedic_bookstore")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for f in fixes:
                cur.execute(f["sql"])
            cur.execute("ANALYZE shop_review, shop_wishlist")
            cur.execute("EXPLAIN SELECT * FROM shop_review WHERE status = 'published' "
                        "AND created_at >= now() - interval '14 days' ORDER BY created_at DESC LIMIT 20")
            plan = "\n".join(r[0] for r in cur.fetchall())
    finally:
        conn.close()
    assert "Index Scan" in plan and "Seq Scan" not in plan, plan
    bookstore.get("/fixed/reviews/recent/", N)
    after = bookstore.wait_requests("/fixed/reviews/recent/", N)
    before = bookstore.routes()["/reviews/recent/"]
    assert after["p95_ms"] * 5 < before["p95_ms"], (before, after)


def test_project_check_passes():
    r = subprocess.run([PYTHON, "manage.py", "check"], cwd=APP, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
