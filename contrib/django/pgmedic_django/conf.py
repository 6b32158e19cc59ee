"""Settings of pgmedic_django, all optional:

PGMEDIC_ENABLED  (bool, default True)  tag SQL statements run inside requests.
PGMEDIC_TAGS     (iterable of str, default DEFAULT_TAGS)  which tags to send.
PGMEDIC_URL      (str, default "http://127.0.0.1:9187")  pgmedic's HTTP address, for
                 `manage.py pgmedic_models`.

Read on each use (not cached) so that override_settings works.
"""
from django.conf import settings

DEFAULT_TAGS = ("app_name", "controller", "framework", "request_id", "route")
DEFAULT_URL = "http://127.0.0.1:9187"


def enabled():
    return bool(getattr(settings, "PGMEDIC_ENABLED", True))


def tags():
    value = getattr(settings, "PGMEDIC_TAGS", None)
    if value is None:
        return DEFAULT_TAGS
    if isinstance(value, str):  # PGMEDIC_TAGS = "route" is a one-tag list, not five letters
        value = [value]
    return tuple(value)


def url():
    return getattr(settings, "PGMEDIC_URL", None) or DEFAULT_URL
