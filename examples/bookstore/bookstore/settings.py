"""Settings for the bookstore demo project (the app pgmedic profiles in `make demo`).

The database is taken from the libpq environment variables (PGHOST, PGPORT, PGDATABASE,
PGUSER, PGPASSWORD), so pointing the app at pgmedic instead of PostgreSQL only means
changing PGHOST/PGPORT.
"""
import os
import sys

# Django 4.2 refuses Debian 12's psycopg 3.1.7 (it wants 3.1.8+) instead of falling back
# to psycopg2; hide psycopg 3 before Django picks its PostgreSQL driver.
sys.modules.setdefault("psycopg", None)

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "bookstore-demo-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() in ("1", "true", "yes", "on")
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "shop",
]

MIDDLEWARE = [
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
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False
