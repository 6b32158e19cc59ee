"""Settings of the project that tests pgmedic_django (contrib/django) against a real
PostgreSQL through pgmedic (tests/integration/test_django_contrib.py).

Database (both aliases, "default" and "other", point at the same database) from:
  PGMEDIC_CONTRIB_HOST, PGMEDIC_CONTRIB_PORT, PGMEDIC_CONTRIB_NAME, PGMEDIC_CONTRIB_USER
pgmedic's HTTP address for `manage.py pgmedic_models`: PGMEDIC_CONTRIB_URL.
PGMEDIC_ENABLED from PGMEDIC_CONTRIB_ENABLED ("1"/"0"), PGMEDIC_TAGS from
PGMEDIC_CONTRIB_TAGS (comma-separated), when set.
"""
import os
import sys
from pathlib import Path

# Django 4.2 prefers psycopg 3 and refuses Debian 12's psycopg 3.1.7 instead of
# falling back to psycopg2: hide psycopg 3 before the backend is imported.
sys.modules.setdefault("psycopg", None)

# pgmedic_django is used from the source tree: contrib/django on sys.path is one of
# the two documented ways to install it.
_CONTRIB = Path(__file__).resolve().parents[4] / "contrib" / "django"
if str(_CONTRIB) not in sys.path:
    sys.path.insert(0, str(_CONTRIB))

SECRET_KEY = "pgmedic-contrib-tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "contribsite.urls"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "pgmedic_django",
    "library",
]

MIDDLEWARE = [
    "pgmedic_django.middleware.PgmedicMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Runs a query before URL resolution when asked to (header X-Early-Query).
    "library.middleware.EarlyQueryMiddleware",
]

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_env = os.environ.get


def _db():
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": _env("PGMEDIC_CONTRIB_HOST", "127.0.0.1"),
        "PORT": _env("PGMEDIC_CONTRIB_PORT", "5432"),
        "NAME": _env("PGMEDIC_CONTRIB_NAME", "pgmedic_contrib"),
        "USER": _env("PGMEDIC_CONTRIB_USER", "postgres"),
        "PASSWORD": "",
        "CONN_MAX_AGE": 0,
        # Behind a transaction-mode pooler (see tests/integration/django_project).
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {"connect_timeout": 10},
    }


DATABASES = {"default": _db(), "other": _db()}

PGMEDIC_URL = _env("PGMEDIC_CONTRIB_URL", "http://127.0.0.1:9187")
# Optional pgmedic_django settings, set from the environment by some tests.
if _env("PGMEDIC_CONTRIB_ENABLED"):
    PGMEDIC_ENABLED = _env("PGMEDIC_CONTRIB_ENABLED") == "1"
if _env("PGMEDIC_CONTRIB_TAGS") is not None:
    PGMEDIC_TAGS = [t for t in _env("PGMEDIC_CONTRIB_TAGS").split(",") if t]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
