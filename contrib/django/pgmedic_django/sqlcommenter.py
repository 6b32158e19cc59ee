"""sqlcommenter comments as pure functions (https://google.github.io/sqlcommenter/spec/).

No Django imports: these functions only turn a dict of tags into a comment and append
it to a statement.

    >>> format_comment({"route": "/books/<int:pk>/", "framework": "django:4.2"})
    "/*framework='django%3A4.2',route='%2Fbooks%2F%3Cint%3Apk%3E%2F'*/"
"""
from urllib.parse import quote

__all__ = ["serialize_key", "serialize_value", "format_comment", "has_comment", "add_comment"]


def _encode(text):
    # quote(safe='') percent-encodes every byte outside [A-Za-z0-9_.~-] (UTF-8 first),
    # so ' becomes %27 already; the spec's \' escape is applied anyway, after
    # encoding, as it says, in case a caller ever passes a custom quoting.
    return quote(str(text), safe="").replace("'", "\\'")


def serialize_key(key):
    return _encode(key)


def serialize_value(value):
    return "'" + _encode(value) + "'"


def format_comment(tags):
    """The comment for `tags` (a mapping); pairs sorted by key, empty and None values
    dropped.  Returns "" when nothing is left."""
    pairs = sorted((serialize_key(k), serialize_value(v)) for k, v in tags.items()
                   if v is not None and v != "")
    if not pairs:
        return ""
    return "/*" + ",".join(f"{k}={v}" for k, v in pairs) + "*/"


def has_comment(sql):
    """True if the statement already holds a comment (or something that looks like
    one, e.g. inside a string literal: when unsure, leave the statement alone)."""
    return "/*" in sql or "--" in sql


def add_comment(sql, tags, escape_percent=False):
    """`sql` with the comment for `tags` appended after one space, before a trailing
    ';' if there is one.  Statements that already contain a comment are returned
    unchanged (the spec: never add a second comment).

    escape_percent: double every '%' of the comment, for a statement the driver will
    run through %-formatting (Django passes params: the "format" paramstyle), so
    that the database sees a single '%'.
    """
    if not sql or has_comment(sql):
        return sql
    comment = format_comment(tags)
    if not comment:
        return sql
    if escape_percent:
        comment = comment.replace("%", "%%")
    body = sql.rstrip()
    if body.endswith(";"):
        return body[:-1].rstrip() + " " + comment + ";"
    return body + " " + comment
