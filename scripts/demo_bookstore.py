#!/usr/bin/python3
"""demo_bookstore.py — the Python half of `make demo` (scripts/demo.sh): HTTP load on
the bookstore's views, pgmedic's findings, the indexes it suggests, and the before/after
table.  Standard library only, except `indexes` (psycopg2, Debian's python3-psycopg2).

  demo_bookstore.py load     --app URL --phase planted|fixed [-n 20] [-c 4] [--out FILE]
  demo_bookstore.py findings --pgmedic URL [--json FILE]
  demo_bookstore.py indexes  --pgmedic URL --dsn DSN [--known]
  demo_bookstore.py wait     --pgmedic URL [--timeout 15]
  demo_bookstore.py summary  --pgmedic URL [--load-before FILE] [--load-after FILE]

Exit status: 0 on success, 1 when a step failed (a request did not answer 200, pgmedic
could not be reached, an index could not be created), 2 on usage errors.
`findings` exits 3 when this pgmedic has no /api/findings (an older build).
"""
import argparse
import concurrent.futures
import json
import math
import re
import sys
import time
import urllib.error
import urllib.request

# The bookstore's views (examples/bookstore/shop/urls.py), as (label, planted, fixed twin).
PAIRS = [
    ("N+1, forward FK  (book.author)", "/books/", "/fixed/books/"),
    ("N+1, reverse FK  (book.reviews)", "/books/reviews/", "/fixed/books/reviews/"),
    ("N+1, many-to-many (book.tags)", "/books/tags/", "/fixed/books/tags/"),
    ("duplicate queries (publisher x5)", "/publishers/<int:pk>/", "/fixed/publishers/<int:pk>/"),
    ("missing index (review status, created_at)", "/reviews/recent/", "/fixed/reviews/recent/"),
    ("unindexed FK (wishlist.book_id)", "/books/<int:pk>/wishlists/", "/fixed/books/<int:pk>/wishlists/"),
]
ORDINARY = ["/books/<int:pk>/", "/health/"]

# The indexes the demo falls back to when pgmedic's findings name none (older build).
KNOWN_INDEXES = [
    ("shop_review", ["status", "created_at"],
     "CREATE INDEX CONCURRENTLY shop_review_status_created_at_idx ON shop_review (status, created_at)"),
    ("shop_wishlist", ["book_id"],
     "CREATE INDEX CONCURRENTLY shop_wishlist_book_id_idx ON shop_wishlist (book_id)"),
]


def fail(msg):
    print("demo: error: " + msg, file=sys.stderr)
    sys.exit(1)


def get_json(url, timeout=10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def concrete(route, i):
    """A concrete path for a route pattern: publisher pks cycle through 1..20, book pks
    spread over the first 5,000 books."""
    if "<int:pk>" not in route:
        return route
    pk = 1 + i % 20 if route.endswith("publishers/<int:pk>/") else 1 + (i * 37) % 5000
    return route.replace("<int:pk>", str(pk))


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))]


# ------------------------------------------------------------------ load

def cmd_load(a):
    if a.phase == "planted":
        routes = [p for _, p, _ in PAIRS] + ORDINARY
    else:
        routes = [f for _, _, f in PAIRS]
    base = a.app.rstrip("/")

    def one(route, i):
        url = base + concrete(route, i)
        t = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except Exception as e:   # connection refused, timeout
            return route, url, None, str(e)
        return route, url, (time.monotonic() - t) * 1000.0, None if status == 200 else f"HTTP {status}"

    results = {}
    errors = []
    # One view after the other (so each view's numbers are its own), each one's requests
    # from a few concurrent clients.
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.concurrency) as ex:
        for route in routes:
            t0 = time.monotonic()
            futs = [ex.submit(one, route, i) for i in range(a.requests)]
            lat = []
            for f in futs:
                _, url, ms, err = f.result()
                if err:
                    errors.append(f"GET {url}: {err}")
                else:
                    lat.append(ms)
            results[route] = {"requests": a.requests, "ok": len(lat), "wall_s": time.monotonic() - t0,
                              "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95)}
            r = results[route]
            print("   %-34s %3d requests  client p50 %7.1f ms  p95 %7.1f ms"
                  % (route, r["ok"], r["p50_ms"] or 0, r["p95_ms"] or 0))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    if errors:
        for e in errors[:10]:
            print("demo: " + e, file=sys.stderr)
        fail(f"{len(errors)} of {a.requests * len(routes)} requests failed")


# ------------------------------------------------------------------ findings

def fetch_findings(base):
    """The findings list, or None when this pgmedic has no /api/findings."""
    try:
        doc = get_json(base.rstrip("/") + "/api/findings")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        fail(f"GET {base}/api/findings: HTTP {e.code}")
    except Exception as e:
        fail(f"GET {base}/api/findings: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("findings"), list):
        fail(f"GET {base}/api/findings: no 'findings' list in the answer")
    return doc["findings"]


def fmt_num(v, fmt="%.1f"):
    return "-" if v is None else fmt % v


def cmd_findings(a):
    findings = fetch_findings(a.pgmedic)
    if findings is None:
        print("   (this pgmedic build has no /api/findings yet)")
        sys.exit(3)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"findings": findings}, f, indent=1)
    order = {"high": 0, "medium": 1, "low": 2}
    findings = sorted(findings, key=lambda x: (order.get(x.get("severity"), 3), -(x.get("time_wasted_ms") or 0)))
    if not findings:
        print("   no findings")
    for x in findings:
        head = "%-6s %-22s" % (x.get("severity") or "?", x.get("kind"))
        where = x.get("route") or ""
        if x.get("table"):
            where += ("  " if where else "") + "%s(%s)" % (x["table"], ", ".join(x.get("columns") or []))
        print("   %s %s" % (head, where))
        extra = []
        if x.get("queries_per_request") is not None:
            extra.append("%s queries per request" % fmt_num(x["queries_per_request"], "%g"))
        if x.get("duplicates_per_request") is not None:
            extra.append("%s identical queries per request" % fmt_num(x["duplicates_per_request"], "%g"))
        if x.get("occurrences") is not None:
            extra.append("seen %s times" % x["occurrences"])
        if x.get("time_wasted_ms"):
            extra.append("%s ms wasted" % fmt_num(x["time_wasted_ms"]))
        if x.get("cost_before") is not None:
            extra.append("plan cost %s -> %s%s" % (fmt_num(x["cost_before"]), fmt_num(x.get("cost_after")),
                                                   " (verified with HypoPG)" if x.get("verified") else ""))
        if extra:
            print("          " + ", ".join(extra))
        if x.get("fix"):
            print("          fix: " + x["fix"])
        if x.get("sql"):
            print("          sql: " + x["sql"])


def cmd_wait(a):
    """Until the advisor's findings are in (a missing_index and an unindexed_foreign_key:
    the catalog and EXPLAIN rounds have run), or the timeout."""
    t0 = time.monotonic()
    while True:
        findings = fetch_findings(a.pgmedic)
        if findings is None:
            time.sleep(max(0.0, a.timeout - (time.monotonic() - t0)))
            return
        kinds = {f.get("kind") for f in findings}
        if {"missing_index", "unindexed_foreign_key"} <= kinds:
            print("   the advisor's findings are in after %.1f s" % (time.monotonic() - t0))
            return
        if time.monotonic() - t0 > a.timeout:
            print("   waited %.0f s; the advisor has not reported %s yet" % (
                a.timeout, " and ".join(sorted({"missing_index", "unindexed_foreign_key"} - kinds))))
            return
        time.sleep(0.5)


# ------------------------------------------------------------------ indexes

SAFE_INDEX = re.compile(r"^\s*CREATE\s+INDEX\s+CONCURRENTLY\s[^;]*\)\s*;?\s*$", re.I | re.S)


def cmd_indexes(a):
    import psycopg2

    wanted = []   # (table, columns, sql, source)
    findings = None if a.known else fetch_findings(a.pgmedic)
    for x in findings or []:
        if x.get("kind") not in ("missing_index", "unindexed_foreign_key") or not x.get("sql"):
            continue
        if not str(x.get("table") or "").startswith("shop_"):
            continue
        if not SAFE_INDEX.match(x["sql"]):
            print("   skipped (not a single CREATE INDEX CONCURRENTLY): " + x["sql"])
            continue
        key = (x["table"], tuple(x.get("columns") or []))
        if any((t, tuple(c)) == key for t, c, _, _ in wanted):
            continue
        wanted.append((x["table"], list(key[1]), x["sql"].strip().rstrip(";"), "pgmedic " + x["kind"]))
    if findings is None:
        print("   (no /api/findings in this pgmedic: creating the known indexes)")
    for table, cols, sql, in KNOWN_INDEXES:
        if not any(t == table and c[:len(cols)] == cols for t, c, _, _ in wanted):
            if findings is not None:
                print("   note: pgmedic suggested no index on %s(%s); creating it anyway" % (table, ", ".join(cols)))
            wanted.append((table, cols, sql, "known"))
    conn = psycopg2.connect(a.dsn)
    conn.autocommit = True   # CREATE INDEX CONCURRENTLY refuses to run in a transaction
    try:
        with conn.cursor() as cur:
            for table, cols, sql, source in wanted:
                t = time.monotonic()
                try:
                    cur.execute(sql)
                except psycopg2.Error as e:
                    fail(f"{sql}: {e.pgerror or e}")
                print("   %-80s %5.2f s  (%s)" % (sql, time.monotonic() - t, source))
            cur.execute("ANALYZE " + ", ".join(sorted({t for t, _, _, _ in wanted})))
    finally:
        conn.close()


# ------------------------------------------------------------------ summary

def cmd_summary(a):
    try:
        routes = get_json(a.pgmedic.rstrip("/") + "/api/routes?limit=0")["routes"]
    except Exception as e:
        fail(f"GET {a.pgmedic}/api/routes: {e}")
    by = {r["route"]: r for r in routes}
    loads = {}
    for path in (a.load_before, a.load_after):
        if path:
            with open(path) as f:
                loads.update(json.load(f))
    problems = []

    def cell(route):
        r = by.get(route)
        if not r or not r.get("requests"):
            problems.append(f"pgmedic saw no request of {route}")
            return None
        return r

    print("   %-42s %16s %22s %22s" % ("", "queries/request", "DB time/request p95", "HTTP p50 (client)"))
    for label, planted, fixed in PAIRS:
        b, f = cell(planted), cell(fixed)
        if not b or not f:
            continue
        lb, lf = loads.get(planted, {}), loads.get(fixed, {})
        qb, qf = b.get("queries_per_request"), f.get("queries_per_request")
        pb, pf = b.get("p95_ms"), f.get("p95_ms")
        # The client's median: Python time included, and steadier than a p95 of 20 samples.
        hb, hf = lb.get("p50_ms"), lf.get("p50_ms")

        def arrow(x, y, fmt):
            return "%s -> %s" % (fmt_num(x, fmt), fmt_num(y, fmt))

        speed = ""
        if pb and pf:
            speed = "  (%.1fx)" % (pb / pf) if pf > 0 else ""
        print("   %-42s %16s %14s ms%s %13s ms" % (label, arrow(qb, qf, "%.0f"), arrow(pb, pf, "%.1f"),
                                                   speed.ljust(9), arrow(hb, hf, "%.0f")))
        print("   %-42s %s  vs  %s" % ("", planted, fixed))
    for route in ORDINARY:
        r = by.get(route)
        if r and r.get("requests"):
            print("   %-42s %16s %14s ms" % ("no problem: " + route, fmt_num(r.get("queries_per_request"), "%.0f"),
                                            fmt_num(r.get("p95_ms"))))
    findings = fetch_findings(a.pgmedic)
    if findings is not None:
        fixed = {f for _, _, f in PAIRS} | set(ORDINARY)
        left = [x for x in findings if x.get("kind") in ("n_plus_one", "duplicate_query") and x.get("route") in fixed]
        print()
        if left:
            for x in left:
                print("   pgmedic still reports %s on %s: %s" % (x["kind"], x["route"], x.get("fix")))
        else:
            print("   pgmedic reports no N+1 and no duplicate query on the fixed views.")
    if problems:
        for p in problems:
            print("demo: error: " + p, file=sys.stderr)
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("--app", required=True)
    p.add_argument("--phase", choices=["planted", "fixed"], required=True)
    p.add_argument("-n", "--requests", type=int, default=20)
    p.add_argument("-c", "--concurrency", type=int, default=4)
    p.add_argument("--out")
    p = sub.add_parser("findings")
    p.add_argument("--pgmedic", required=True)
    p.add_argument("--json")
    p = sub.add_parser("indexes")
    p.add_argument("--pgmedic", required=True)
    p.add_argument("--dsn", required=True)
    p.add_argument("--known", action="store_true", help="create the known indexes, ignore the findings")
    p = sub.add_parser("wait")
    p.add_argument("--pgmedic", required=True)
    p.add_argument("--timeout", type=float, default=15.0)
    p = sub.add_parser("summary")
    p.add_argument("--pgmedic", required=True)
    p.add_argument("--load-before")
    p.add_argument("--load-after")
    a = ap.parse_args()
    {"load": cmd_load, "findings": cmd_findings, "wait": cmd_wait, "indexes": cmd_indexes,
     "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    main()
