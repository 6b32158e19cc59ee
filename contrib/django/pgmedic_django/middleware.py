"""PgmedicMiddleware: tags every SQL statement a request runs with a sqlcommenter
comment naming the route and view, so that pgmedic attributes it.

Per request, a `_RequestTags` object holds the tags; an execute wrapper bound to that
object is installed on every database alias for the duration of the request
(`connection.execute_wrapper`, on the thread's own connection objects: Django keeps
them per thread, so concurrent requests never see each other's wrapper).  The tags
start with framework and request_id (queries of later middleware, e.g. sessions and
auth, carry those) and gain route, controller and app_name in process_view, once URL
resolution has run.  Queries outside a request (management commands, startup, other
threads the view starts) are not tagged.

Put it first in MIDDLEWARE so that every other middleware's queries run inside it.
"""
import secrets
from contextlib import ExitStack

import django
from django.db import connections

from . import conf
from .sqlcommenter import add_comment


class _RequestTags:
    """The tags of one request; the execute wrapper installed for it."""

    __slots__ = ("values", "wanted")

    def __init__(self, wanted):
        self.wanted = wanted
        self.values = {}
        self.set("framework", "django:" + django.get_version())
        self.set("request_id", secrets.token_hex(8))

    def set(self, key, value):
        if key in self.wanted and value:
            self.values[key] = value

    def resolved(self, match):
        if match is None:
            return
        route = match.route or ""
        self.set("route", "/" + route if not route.startswith("/") else route)
        self.set("controller", match._func_path)
        self.set("app_name", match.app_name)

    def __call__(self, execute, sql, params, many, context):
        # Django hands every backend "format"-style SQL when there are params (its
        # sqlite and Oracle wrappers convert it; psycopg2 and MySQLdb %-format it
        # themselves): then a '%' of the comment must be written '%%'.  With
        # params=None the SQL goes to the driver verbatim.
        escape = many or params is not None
        if isinstance(sql, str):
            sql = add_comment(sql, self.values, escape_percent=escape)
        return execute(sql, params, many, context)


class PgmedicMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not conf.enabled():
            return self.get_response(request)
        tags = _RequestTags(conf.tags())
        request._pgmedic_tags = tags
        with ExitStack() as stack:
            # Every alias of DATABASES: connections[alias] creates this thread's
            # wrapper object if needed without connecting, so an alias first used
            # halfway through the view is tagged too.
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(tags))
            return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        tags = getattr(request, "_pgmedic_tags", None)
        if tags is not None:
            tags.resolved(getattr(request, "resolver_match", None))
        return None
