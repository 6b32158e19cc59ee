"""pgmedic_django (contrib/django): the Django app that tags every query with the
route and view that issued it (sqlcommenter comments) and sends the ORM's model map
to pgmedic.

(a) the comment format, as pure functions;
(b) a real Django 4.2 project (django_contrib_project/) against PostgreSQL through
    pgmedic: what psycopg2 actually sent (cursor.query, via CaptureQueriesContext)
    carries route/controller/app_name/framework/request_id, per request, per alias,
    per thread; nothing outside requests is tagged; '%' in SQL with params still works;
(c) `manage.py pgmedic_models` against a stub HTTP server and against pgmedic's
    POST/GET /api/models;
(d) pgmedic attributes the tagged queries to their route: GET /api/routes.

Django runs in a fresh /usr/bin/python3 per scenario (django_contrib_project/
scenarios.py prints what happened as JSON, the assertions are here), so no Django
state leaks into this process or other test modules.
"""
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, free_port, wait_until

PROJECT = Path(__file__).resolve().parent / "django_contrib_project"
CONTRIB = REPO / "contrib" / "django"
PYTHON = "/usr/bin/python3"  # Debian's: Django 4.2 and psycopg2
DB_NAME = "pgmedic_contrib"
SCENARIO_TIMEOUT = 120

# The pure functions need no Django; contrib/django on sys.path is a documented install.
if str(CONTRIB) not in sys.path:
    sys.path.insert(0, str(CONTRIB))
from pgmedic_django.sqlcommenter import add_comment, format_comment, has_comment  # noqa: E402

DETAIL_ROUTE = "/books/<int:pk>/"
LIST_ROUTE = "/books/"


# ------------------------------------------------------------------ helpers

COMMENT_AT_END = re.compile(r" /\*([^*]*)\*/;?$")


def parse_comment(sql):
    """The decoded tags of the sqlcommenter comment at the end of `sql`, or None."""
    m = COMMENT_AT_END.search(sql)
    if not m:
        return None
    tags = {}
    for pair in m.group(1).split(","):
        k, sep, v = pair.partition("=")
        assert sep and len(v) >= 2 and v[0] == v[-1] == "'", f"malformed pair {pair!r} in {sql!r}"
        v = v[1:-1].replace("\\'", "'")
        tags[urllib.parse.unquote(k)] = urllib.parse.unquote(v)
    return tags


def scenario_env(port, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PGMEDIC_CONTRIB_"))}
    env.update({
        "PGMEDIC_CONTRIB_HOST": "127.0.0.1",
        "PGMEDIC_CONTRIB_PORT": str(port),
        "PGMEDIC_CONTRIB_NAME": DB_NAME,
        "PGMEDIC_CONTRIB_USER": "postgres",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_scenario(port, spec, **env):
    try:
        r = subprocess.run([PYTHON, "scenarios.py", json.dumps(spec)], cwd=PROJECT,
                           env=scenario_env(port, **env), capture_output=True, text=True,
                           timeout=SCENARIO_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"scenario still running after {SCENARIO_TIMEOUT}s: {e.stdout}\n{e.stderr}")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, \
        f"scenario failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def manage(port, *args, **env):
    return subprocess.run([PYTHON, "manage.py", *args], cwd=PROJECT, env=scenario_env(port, **env),
                          capture_output=True, text=True, timeout=SCENARIO_TIMEOUT)


def all_sql(req):
    return [s for alias_sql in req["sql"].values() for s in alias_sql]


def http_json(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.status == 200, r.status
        return json.loads(r.read())


@pytest.fixture(scope="module")
def contrib_db(pg):
    return pg.ensure_db(DB_NAME)


# ------------------------------------------------------------------ (a) comment format

def test_comment_keys_sorted_values_quoted_and_url_encoded():
    c = format_comment({"route": "/books/<int:pk>/", "controller": "shop.views.book_detail",
                        "framework": "django:4.2.21", "app_name": "shop", "request_id": "0123abcd"})
    assert c == ("/*app_name='shop',controller='shop.views.book_detail',"
                 "framework='django%3A4.2.21',request_id='0123abcd',"
                 "route='%2Fbooks%2F%3Cint%3Apk%3E%2F'*/")


def test_comment_escapes_quote_percent_unicode_and_separators():
    c = format_comment({"k": "it's 100% ok, a=b */ ü€"})
    # quote(safe='') encodes ' as %27 (so no \' is left to escape), % as %25, and
    # ',', '=', '*', '/' and spaces, which would otherwise break the comment's syntax.
    assert c == "/*k='it%27s%20100%25%20ok%2C%20a%3Db%20%2A%2F%20%C3%BC%E2%82%AC'*/"
    assert "*/" not in c[2:-2]
    # Keys are encoded the same way; sorting is on the encoded keys.
    assert format_comment({"b c": "1", "a'": "2"}) == "/*a%27='2',b%20c='1'*/"


def test_comment_drops_empty_values_and_nothing_left_means_no_comment():
    assert format_comment({"app_name": "", "route": None, "framework": "django:4.2"}) == \
        "/*framework='django%3A4.2'*/"
    assert format_comment({"app_name": ""}) == ""
    assert add_comment("SELECT 1", {"app_name": ""}) == "SELECT 1"


def test_add_comment_appends_after_one_space_and_before_trailing_semicolon():
    tags = {"route": "/a/"}
    assert add_comment("SELECT 1", tags) == "SELECT 1 /*route='%2Fa%2F'*/"
    assert add_comment("SELECT 1;", tags) == "SELECT 1 /*route='%2Fa%2F'*/;"
    assert add_comment("SELECT 1 ;  \n", tags) == "SELECT 1 /*route='%2Fa%2F'*/;"
    assert add_comment("SELECT 1\n", tags) == "SELECT 1 /*route='%2Fa%2F'*/"


def test_add_comment_leaves_commented_statements_untouched():
    tags = {"route": "/a/"}
    for sql in ("SELECT 1 /* mine */", "/*x*/ SELECT 1", "SELECT 1 -- trailing",
                "SELECT 1 --\n", "SELECT '--' AS s", "SELECT 1 /*route='%2Fb%2F'*/;"):
        assert has_comment(sql)
        assert add_comment(sql, tags) == sql
        assert add_comment(sql, tags, escape_percent=True) == sql
    assert add_comment("", tags) == ""


def test_add_comment_doubles_percent_for_format_paramstyle_only():
    tags = {"route": "/books/<int:pk>/"}
    plain = add_comment("SELECT %s", tags)
    escaped = add_comment("SELECT %s", tags, escape_percent=True)
    assert plain == "SELECT %s /*route='%2Fbooks%2F%3Cint%3Apk%3E%2F'*/"
    assert escaped == "SELECT %s /*route='%%2Fbooks%%2F%%3Cint%%3Apk%%3E%%2F'*/"
    # What the driver does with it: %-formatting gives back the plain comment.
    assert escaped % ("'x'",) == plain.replace("%s", "'x'", 1)
    # The statement itself is never changed (its own %% and %s stay as written).
    assert add_comment("SELECT '%%' || %s", {"a": "b"}, escape_percent=True) == \
        "SELECT '%%' || %s /*a='b'*/"


# ------------------------------------------------------------------ (b) a real project

def test_project_migrations_and_checks():
    """The test project's migrations match its models (so the scenarios' tables are
    what the models say) and Django's system checks pass with pgmedic_django."""
    r = manage(1, "makemigrations", "--check", "--dry-run", "library")
    assert r.returncode == 0, r.stdout + r.stderr
    r = manage(1, "check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_requests_are_tagged_through_pgmedic(pg, pgmedic, contrib_db):
    px = pgmedic(pool_mode="transaction", pool_size=4)
    res = run_scenario(px.port, {
        "migrate": True, "seed": True, "after": True,
        "requests": [
            {"path": "/books/2/"},
            {"path": "/books/2/"},
            {"path": "/books/"},
            {"path": "/search/?q=" + urllib.parse.quote("0%")},
            {"path": "/search/?q=Plain"},
            {"path": "/other/"},
            {"path": "/percent/"},
            {"path": "/books/1/", "headers": {"X-Early-Query": "1"}},
            {"path": "/no/such/page/", "headers": {"X-Early-Query": "1"}},
        ],
    })
    framework = "django:" + res["django"]
    assert res["django"].startswith("4.2")

    # Outside requests (migrate, seed, after): nothing tagged.
    assert res["seed_sql"]["default"], res["seed_sql"]
    for sql in res["seed_sql"]["default"] + res["after_sql"]["default"]:
        assert "/*" not in sql, sql

    reqs = {i: r for i, r in enumerate(res["requests"])}
    for i, r in reqs.items():
        assert r["status"] == (404 if r["path"] == "/no/such/page/" else 200), r
        assert all_sql(r), f"request {r['path']} ran no query"

    def expect(r, route, controller, early=0):
        sqls = all_sql(r)
        tags = [parse_comment(s) for s in sqls]
        assert all(tags), f"untagged statement in {r['path']}: {sqls}"
        ids = {t["request_id"] for t in tags}
        assert len(ids) == 1, f"several request_ids in one request: {sqls}"
        assert re.fullmatch(r"[0-9a-f]{16}", ids.pop())
        for sql, t in zip(sqls[early:], tags[early:]):
            assert t == {"route": route, "controller": controller, "app_name": "library",
                         "framework": framework, "request_id": t["request_id"]}, sql
        for sql, t in zip(sqls[:early], tags[:early]):
            # Before URL resolution only the request's own tags are known.
            assert t == {"framework": framework, "request_id": t["request_id"]}, sql
        return tags[0]["request_id"]

    ids = [
        expect(reqs[0], DETAIL_ROUTE, "library.views.book_detail"),
        expect(reqs[1], DETAIL_ROUTE, "library.views.book_detail"),
        expect(reqs[2], LIST_ROUTE, "library.views.book_list"),
        expect(reqs[3], "/search/", "library.views.search"),
        expect(reqs[4], "/search/", "library.views.search"),
        expect(reqs[5], "/other/", "library.views.other_alias"),
        expect(reqs[6], "/percent/", "library.views.percent_no_params"),
        expect(reqs[7], DETAIL_ROUTE, "library.views.book_detail", early=1),
    ]
    assert len(set(ids)) == len(ids), f"request_ids repeat across requests: {ids}"

    # Detail: 3 queries (book, author, tags); list: 1 + one author per book (N+1).
    assert len(all_sql(reqs[0])) == 3 and reqs[0]["json"]["title"] == "100% SQL"
    assert reqs[0]["json"]["tags"] == ["sql"] and reqs[0]["json"]["author"] == "Bob"
    assert len(all_sql(reqs[2])) == 5 and len(reqs[2]["json"]["books"]) == 4
    # '%' in the statement and in the comment with params: right rows both ways.
    assert reqs[3]["json"] == {"orm": ["100% SQL"], "raw": ["100% SQL"]}, reqs[3]
    assert reqs[4]["json"] == {"orm": ["Plain Title"], "raw": ["Plain Title"]}, reqs[4]
    raw_like = [s for s in reqs[3]["sql"]["default"] if "LIKE '%' ||" in s]
    assert raw_like and raw_like[0].startswith("SELECT title FROM library_book WHERE title LIKE '%' || '0%' || '%'"), \
        reqs[3]["sql"]
    # The driver sent single '%' in the comment (a '%%' would not decode to the route).
    assert all("%%" not in COMMENT_AT_END.search(s).group(1) for s in all_sql(reqs[3])), all_sql(reqs[3])
    # Without params the statement went out verbatim and the comment was not doubled.
    assert reqs[6]["json"] == {"pct": "100%"}
    assert reqs[6]["sql"]["default"] == [
        f"SELECT '100%' AS pct /*app_name='library',controller='library.views.percent_no_params',"
        f"framework='django%3A{res['django']}',request_id='{ids[6]}',route='%2Fpercent%2F'*/"]
    # Another alias is tagged too.
    assert reqs[5]["json"]["count"] == 4
    assert reqs[5]["sql"]["other"] and not reqs[5]["sql"]["default"], reqs[5]["sql"]
    # A 404 (no resolver match): early middleware's query carries request_id and
    # framework only.
    t404 = [parse_comment(s) for s in all_sql(reqs[8])]
    assert t404 == [{"framework": framework, "request_id": t404[0]["request_id"]}], reqs[8]["sql"]
    assert t404[0]["request_id"] not in ids
    assert px.alive(), px.stderr_text()[-4000:]


def test_concurrent_requests_keep_their_own_tags(pg, contrib_db):
    """Eight requests at once from eight threads: every statement carries its own
    request's route and request_id (tags live per request, connections per thread).
    Straight to PostgreSQL: this is about the middleware, not the proxy."""
    paths = [f"/books/{1 + i % 4}/" if i % 2 == 0 else "/books/" for i in range(8)]
    res = run_scenario(pg.port, {"migrate": True, "seed": True,
                                 "concurrent": [{"path": p} for p in paths]})
    seen_ids = set()
    for path, r in zip(paths, res["concurrent"]):
        assert "error" not in r, r
        assert r["status"] == 200, r
        tags = [parse_comment(s) for s in all_sql(r)]
        assert tags and all(tags), r["sql"]
        assert len({t["request_id"] for t in tags}) == 1, r["sql"]
        want = LIST_ROUTE if path == "/books/" else DETAIL_ROUTE
        assert {t["route"] for t in tags} == {want}, r["sql"]
        seen_ids.add(tags[0]["request_id"])
    assert len(seen_ids) == len(paths)


def test_settings_choose_tags_and_disable(pg, contrib_db):
    res = run_scenario(pg.port, {"migrate": True, "seed": True, "requests": [{"path": "/books/3/"}]},
                       PGMEDIC_CONTRIB_TAGS="route,controller")
    for sql in all_sql(res["requests"][0]):
        assert parse_comment(sql) == {"route": DETAIL_ROUTE, "controller": "library.views.book_detail"}, sql
    res = run_scenario(pg.port, {"requests": [{"path": "/books/3/"}]}, PGMEDIC_CONTRIB_ENABLED="0")
    sqls = all_sql(res["requests"][0])
    assert sqls and all("/*" not in s for s in sqls), sqls
    assert res["requests"][0]["json"]["title"] == "Percent%Encoding Explained"


# ------------------------------------------------------------------ (c) model map

class _Stub(http.server.BaseHTTPRequestHandler):
    """Records POSTs; answers with the status the server was given."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts.append((self.path, self.headers.get("Content-Type"), body))
        status = self.server.status
        payload = json.dumps({"ok": True, "models": len(json.loads(body)["models"])}
                             if status == 200 else {"error": "stub says no"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    srv.posts, srv.status = [], 200
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def rel(model_map, label, kind, name):
    model = next(m for m in model_map["models"] if f"{m['app_label']}.{m['model']}" == label)
    found = [r for r in model["relations"] if r["kind"] == kind and r["name"] == name]
    assert len(found) == 1, f"{label}: no single {kind} {name!r} in {model['relations']}"
    return found[0]


def check_model_map(mm):
    assert mm["version"] == 1
    assert re.fullmatch(r"django:4\.2\.\d+", mm["framework"]), mm["framework"]
    labels = {f"{m['app_label']}.{m['model']}" for m in mm["models"]}
    assert {"library.Author", "library.Book", "library.Publisher", "library.Tag",
            "library.AuthorProfile", "library.LegacyStock", "auth.User",
            "contenttypes.ContentType"} <= labels, labels
    assert "library.CheapBook" not in labels  # proxy: same table as Book
    book = next(m for m in mm["models"] if m["model"] == "Book" and m["app_label"] == "library")
    assert book["table"] == "library_book" and book["pk"] == "id" and book["managed"] is True
    author_f = next(f for f in book["fields"] if f["name"] == "author")
    assert author_f == {"name": "author", "column": "author_id", "type": "ForeignKey", "null": False,
                        "unique": False, "db_index": True, "primary_key": False}
    legacy = next(m for m in mm["models"] if m["model"] == "LegacyStock")
    assert legacy["managed"] is False and legacy["table"] == "legacy_stock"

    fk = rel(mm, "library.Book", "forward_fk", "author")
    assert {k: fk[k] for k in ("column", "to_model", "to_table", "to_column")} == \
        {"column": "author_id", "to_model": "library.Author", "to_table": "library_author", "to_column": "id"}
    assert rel(mm, "library.AuthorProfile", "forward_o2o", "author")["column"] == "author_id"
    rev = rel(mm, "library.Author", "reverse_fk", "books")
    assert {k: rev[k] for k in ("related_name", "from_model", "from_table", "from_column", "to_column")} == \
        {"related_name": "books", "from_model": "library.Book", "from_table": "library_book",
         "from_column": "author_id", "to_column": "id"}
    rev_default = rel(mm, "library.Publisher", "reverse_fk", "book_set")
    assert rev_default["related_name"] is None and rev_default["from_column"] == "publisher_id"
    assert rel(mm, "library.Author", "reverse_o2o", "authorprofile")["from_table"] == "library_authorprofile"
    assert rel(mm, "library.Book", "reverse_fk", "legacystock_set")["from_column"] == "book_ref"
    m2m = rel(mm, "library.Book", "m2m", "tags")
    assert {k: m2m[k] for k in ("to_model", "to_table", "through_table", "through_from_column",
                                "through_to_column")} == \
        {"to_model": "library.Tag", "to_table": "library_tag", "through_table": "library_book_tags",
         "through_from_column": "book_id", "through_to_column": "tag_id"}
    rm2m = rel(mm, "library.Tag", "reverse_m2m", "books")
    assert {k: rm2m[k] for k in ("to_model", "to_table", "through_table", "through_from_column",
                                 "through_to_column")} == \
        {"to_model": "library.Book", "to_table": "library_book", "through_table": "library_book_tags",
         "through_from_column": "tag_id", "through_to_column": "book_id"}
    assert rel(mm, "auth.Group", "reverse_m2m", "user_set")["through_table"] == "auth_user_groups"


def test_pgmedic_models_print():
    r = manage(1, "pgmedic_models", "--print")
    assert r.returncode == 0, r.stderr
    check_model_map(json.loads(r.stdout))


def test_pgmedic_models_posts_to_stub(stub):
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    r = manage(1, "pgmedic_models", "--url", url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(stub.posts) == 1
    path, ctype, body = stub.posts[0]
    assert path == "/api/models" and ctype == "application/json"
    mm = json.loads(body)
    check_model_map(mm)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and f"sent {len(mm['models'])} models" in lines[0] \
        and f"{url}/api/models" in lines[0] and f"stored {len(mm['models'])}" in lines[0], r.stdout
    # The default URL comes from settings.PGMEDIC_URL (trailing slash tolerated).
    r = manage(1, "pgmedic_models", PGMEDIC_CONTRIB_URL=url + "/")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(stub.posts) == 2 and stub.posts[1][0] == "/api/models"


def test_pgmedic_models_fails_clearly(stub):
    stub.status = 500
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    r = manage(1, "pgmedic_models", "--url", url)
    assert r.returncode != 0
    assert "HTTP 500" in r.stderr and "stub says no" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    nobody = free_port()
    r = manage(1, "pgmedic_models", "--url", f"http://127.0.0.1:{nobody}", "--timeout", "5")
    assert r.returncode != 0
    assert f"could not reach pgmedic at http://127.0.0.1:{nobody}/api/models" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_pgmedic_models_against_pgmedic(pg, pgmedic):
    px = pgmedic()
    api = f"http://127.0.0.1:{px.http_port}/api/models"
    r = manage(px.port, "pgmedic_models", "--url", f"http://127.0.0.1:{px.http_port}")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\npgmedic stderr:\n{px.stderr_text()[-3000:]}"
    local = json.loads(manage(px.port, "pgmedic_models", "--print").stdout)
    assert f"stored {len(local['models'])}" in r.stdout, r.stdout
    stored = http_json(api)
    check_model_map(stored)
    assert stored == local
    # POST answers {"ok": true, "models": <count>}.
    req = urllib.request.Request(api, data=json.dumps(local).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) == {"ok": True, "models": len(local["models"])}
    assert px.alive(), px.stderr_text()[-4000:]


# ------------------------------------------------------------------ (d) route attribution

def test_pgmedic_attributes_queries_to_routes(pg, pgmedic, contrib_db):
    px = pgmedic(pool_mode="transaction", pool_size=4)
    run_scenario(px.port, {"migrate": True, "seed": True})  # untagged: no route
    detail = [{"path": f"/books/{pk}/"} for pk in (1, 2, 3, 1, 4)]
    listing = [{"path": "/books/"}] * 2
    res = run_scenario(px.port, {"requests": detail + listing})
    detail_res, list_res = res["requests"][:5], res["requests"][5:]
    assert all(r["status"] == 200 for r in res["requests"]), res
    detail_calls = sum(len(all_sql(r)) for r in detail_res)
    list_calls = sum(len(all_sql(r)) for r in list_res)
    assert detail_calls == 15 and list_calls == 10  # 3 per detail, 1 + 4 authors per list
    for r in res["requests"]:
        assert all(parse_comment(s) for s in all_sql(r)), r["sql"]

    url = f"http://127.0.0.1:{px.http_port}/api/routes"

    def entries():
        try:
            body = http_json(url)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"GET {url} answered HTTP {e.code}: {e.read(300)!r}")
        assert isinstance(body, dict) and isinstance(body.get("routes"), list), body
        return {e["route"]: e for e in body["routes"] if isinstance(e, dict) and "route" in e}

    def settled():
        e = entries()
        d, l_ = e.get(DETAIL_ROUTE), e.get(LIST_ROUTE)
        if d and l_ and (d.get("requests"), d.get("calls"), l_.get("requests"), l_.get("calls")) == \
                (5, detail_calls, 2, list_calls):
            return e
        return None

    try:
        wait_until(settled, timeout=5, message="/api/routes to count the requests")
    except AssertionError:
        pass  # the exact assertions below say what is wrong
    e = entries()
    assert DETAIL_ROUTE in e, f"no route {DETAIL_ROUTE!r} in /api/routes: {sorted(e)}"
    assert LIST_ROUTE in e, f"no route {LIST_ROUTE!r} in /api/routes: {sorted(e)}"
    assert (e[DETAIL_ROUTE]["requests"], e[DETAIL_ROUTE]["calls"]) == (5, detail_calls), e[DETAIL_ROUTE]
    assert (e[LIST_ROUTE]["requests"], e[LIST_ROUTE]["calls"]) == (2, list_calls), e[LIST_ROUTE]
    assert px.alive(), px.stderr_text()[-4000:]
