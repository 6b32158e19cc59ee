#!/usr/bin/env python3
"""Runs one scenario of tests/integration/test_django_contrib.py in a fresh interpreter
(so that no Django state leaks between tests) and prints what happened as one line
"RESULT <json>" on stdout; the test makes the assertions.

    /usr/bin/python3 scenarios.py '<spec json>'

spec keys (all optional):
  migrate: bool         run `migrate` on "default" first (outside any request)
  seed: bool            reset the library tables to the fixed data below
  requests: [req]       one after the other, each through django.test.Client
  concurrent: [req]     all at once, each from its own thread (released together)
  after: bool           run one ORM query after the requests (outside any request)
  req = {"path": "/books/1/", "headers": {"X-Early-Query": "1"}}

Every query is captured with CaptureQueriesContext on every alias: for psycopg2 the
captured "sql" is cursor.query, the bytes the driver sent.
"""
import json
import os
import sys
import threading
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contribsite.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from library.models import Author, Book, Publisher, Tag  # noqa: E402

BOOKS = [  # id (after RESTART IDENTITY), title, author, tags
    (1, "Django for Everyone", "Ann", ["python", "web"]),
    (2, "100% SQL", "Bob", ["sql"]),
    (3, "Percent%Encoding Explained", "Cleo", ["web"]),
    (4, "Plain Title", "Ann", []),
]


def seed():
    with connection.cursor() as cur:
        cur.execute("TRUNCATE library_book_tags, library_book, library_authorprofile, library_author, "
                    "library_publisher, library_tag RESTART IDENTITY CASCADE")
    acme = Publisher.objects.create(name="Acme")
    authors = {n: Author.objects.create(name=n) for n in ("Ann", "Bob", "Cleo")}
    tags = {n: Tag.objects.create(name=n) for n in ("python", "sql", "web")}
    for pk, title, author, tag_names in BOOKS:
        b = Book.objects.create(title=title, author=authors[author], publisher=acme)
        assert b.pk == pk, (b.pk, pk)
        b.tags.set([tags[t] for t in tag_names])


def capture(fn):
    """fn() with every alias's queries captured; returns (fn(), {alias: [sql]})."""
    with ExitStack() as stack:
        ctxs = {alias: stack.enter_context(CaptureQueriesContext(connections[alias]))
                for alias in connections}
        value = fn()
    return value, {alias: [q["sql"] for q in ctx.captured_queries] for alias, ctx in ctxs.items()}


def do_request(req):
    client = Client()
    headers = req.get("headers") or {}

    def go():
        return client.get(req["path"], headers=headers)

    resp, sql = capture(go)
    body = None
    if resp.get("Content-Type", "").startswith("application/json"):
        body = json.loads(resp.content)
    return {"path": req["path"], "status": resp.status_code, "json": body, "sql": sql}


def main():
    spec = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    result = {"django": django.get_version()}
    if spec.get("migrate"):
        call_command("migrate", database="default", verbosity=0, interactive=False)
    if spec.get("seed"):
        _, result["seed_sql"] = capture(seed)
    result["requests"] = [do_request(r) for r in spec.get("requests", [])]
    if spec.get("concurrent"):
        reqs = spec["concurrent"]
        out = [None] * len(reqs)
        barrier = threading.Barrier(len(reqs))

        def worker(i):
            try:
                barrier.wait(timeout=30)
                out[i] = do_request(reqs[i])
            except BaseException as e:  # reported, not swallowed
                out[i] = {"error": repr(e)}
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(reqs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        result["concurrent"] = out
    if spec.get("after"):
        _, result["after_sql"] = capture(lambda: Book.objects.filter(title__contains="%").count())
    connections.close_all()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
