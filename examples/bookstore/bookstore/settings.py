"""Settings for the bookstore demo project (the app pgmedic diagnoses in `make demo`).

The database is taken from the libpq environment variables (PGHOST, PGPORT, PGDATABASE,
PGUSER, PGPASSWORD), so pointing the app at pgmedic instead of PostgreSQL only means
changing PGHOST/PGPORT.  Other environment variables:

  DJANGO_ALLOWED_HOSTS  comma-separated (default "127.0.0.1,localhost,[::1],testserver")
  DJANGO_DEBUG          "1" to turn DEBUG on (default off: DEBUG keeps every query in memory)
  DJANGO_CONN_MAX_AGE   seconds a DB connection is kept between requests (default 0)
  PGMEDIC_URL           pgmedic's HTTP address, for `manage.py pgmedic_models`
"""
import os
import sys

# Django 4.2 refuses Debian 12's psycopg 3.1.7 (it wants 3.1.8+) instead of falling back
# to psycopg2; hide psycopg 3 before Django picks its PostgreSQL driver.
sys.modules.setdefault("psycopg", None)

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# pgmedic_django is used straight from this repository (contrib/django), one of the two
# documented ways to install it (the other: pip install -e contrib/django).
_CONTRIB = os.path.normpath(os.path.join(BASE_DIR, "..", "..", "contrib", "django"))
if _CONTRIB not in sys.path:
    sys.path.insert(0, _CONTRIB)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "bookstore-demo-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0").lower() in ("1", "true", "yes", "on")
ALLOWED_HOSTS = [h.strip() for h in
                 os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver").split(",")
                 if h.strip()]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "pgmedic_django",
    "shop",
]

MIDDLEWARE = [
    # First, so that every other middleware's queries are tagged too.
    "pgmedic_django.middleware.PgmedicMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "bookstore.urls"
WSGI_APPLICATION = "bookstore.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "NAME": os.environ.get("PGDATABASE", "bookstore"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "CONN_MAX_AGE": int(os.environ.get("DJANGO_CONN_MAX_AGE", "0")),
        # pgmedic pools in transaction mode: a named server-side cursor
        # (QuerySet.iterator() outside a transaction) cannot outlive its transaction.
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }
}

PGMEDIC_URL = os.environ.get("PGMEDIC_URL", "http://127.0.0.1:9187")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
