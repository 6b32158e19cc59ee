"""Settings of the small Django 4.2 project that pgmedic's integration tests run
through the proxy (tests/integration/test_django.py).

Database from the environment:
  PGMEDIC_TEST_HOST, PGMEDIC_TEST_PORT, PGMEDIC_TEST_NAME, PGMEDIC_TEST_USER,
  PGMEDIC_TEST_PASSWORD       where to connect (pgmedic, or PostgreSQL directly)
  PGMEDIC_TEST_TEST_NAME      name of the test database (default: test_<NAME>)
  PGMEDIC_TEST_CONN_MAX_AGE   persistent connections: 0 (default) or seconds
"""
import os
import sys

# Django 4.2 prefers psycopg 3 and refuses Debian 12's psycopg 3.1.7 (it wants
# 3.1.8+) instead of falling back to psycopg2.  Hide psycopg 3 before Django's
# PostgreSQL backend is imported so that it loads psycopg2.
sys.modules.setdefault("psycopg", None)

SECRET_KEY = "pgmedic-tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "shop",
]

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_env = os.environ.get

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": _env("PGMEDIC_TEST_HOST", "127.0.0.1"),
        "PORT": _env("PGMEDIC_TEST_PORT", "5432"),
        "NAME": _env("PGMEDIC_TEST_NAME", "pgmedic_test"),
        "USER": _env("PGMEDIC_TEST_USER", "postgres"),
        "PASSWORD": _env("PGMEDIC_TEST_PASSWORD", ""),
        # 0: a new client connection per request (Django's default); with a pooler
        # in front that is cheap.  A positive value keeps the client connection,
        # which in transaction mode still shares server connections.
        "CONN_MAX_AGE": int(_env("PGMEDIC_TEST_CONN_MAX_AGE", "0")),
        # Required behind a transaction-mode pooler (PgBouncer documents the same):
        # QuerySet.iterator() otherwise DECLAREs a named server-side cursor and
        # FETCHes from it chunk by chunk.  Outside a transaction (autocommit) Django
        # declares it WITH HOLD, so it outlives the DECLARE's transaction, but the
        # pooler may run each FETCH on a different server connection, where that
        # cursor does not exist ("cursor ... does not exist").  With this set,
        # iterator() runs a plain query and fetches its rows from the client-side
        # result in chunks.
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {"connect_timeout": 10},
        "TEST": {"NAME": _env("PGMEDIC_TEST_TEST_NAME") or None},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
