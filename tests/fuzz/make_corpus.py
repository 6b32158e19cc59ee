#!/usr/bin/python3
"""Writes the seed corpora of fuzz_startup and fuzz_frame (tests/fuzz/corpus/{startup,frame}).

The messages are written out from the protocol documentation's layouts with struct,
independent of src/pg/proto.c.  Run from anywhere; rerunning rewrites the same files.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

PROTO_V3 = 3 << 16
CANCEL = 80877102
SSL = 80877103
GSSENC = 80877104


def cstr(s):
    return s.encode() + b"\0"


def untyped(body):
    return struct.pack("!I", len(body) + 4) + body


def startup(params, code=PROTO_V3):
    body = struct.pack("!I", code)
    for k, v in params:
        body += cstr(k) + cstr(v)
    return untyped(body + b"\0")


def msg(t, body=b""):
    return t.encode() + struct.pack("!I", len(body) + 4) + body


def error(fields, t="E"):
    return msg(t, b"".join(k.encode() + cstr(v) for k, v in fields) + b"\0")


STARTUP = {
    "startup_psql": startup([("user", "alice"), ("database", "shop"), ("application_name", "psql"),
                             ("client_encoding", "UTF8")]),
    "startup_django": startup([("user", "django"), ("database", "app"), ("application_name", "gunicorn"),
                               ("options", "-c statement_timeout=5000"), ("DateStyle", "ISO"),
                               ("TimeZone", "UTC"), ("_pq_.compression", "on")]),
    "startup_user_only": startup([("user", "bob")]),
    "startup_replication": startup([("user", "rep"), ("replication", "database"), ("database", "x")]),
    "startup_proto2": startup([("user", "old")], code=2 << 16),
    # At PG_MAX_STARTUP_PARAMS (64) ordinary parameters, and one over.
    "startup_64_params": startup([("user", "u")] + [("p%d" % i, "") for i in range(64)]),
    "startup_65_params": startup([("user", "u")] + [("p%d" % i, "") for i in range(65)]),
    "ssl_request": untyped(struct.pack("!I", SSL)),
    "gssenc_request": untyped(struct.pack("!I", GSSENC)),
    "cancel_request": untyped(struct.pack("!III", CANCEL, 12345, 0x5EEDC0DE)),
}

WELCOME = (
    msg("R", struct.pack("!I", 0))
    + msg("S", cstr("application_name") + cstr("psql"))
    + msg("S", cstr("client_encoding") + cstr("UTF8"))
    + msg("S", cstr("DateStyle") + cstr("ISO, MDY"))
    + msg("S", cstr("server_version") + cstr("15.8"))
    + msg("S", cstr("standard_conforming_strings") + cstr("on"))
    + msg("S", cstr("TimeZone") + cstr("Etc/UTC"))
    + msg("K", struct.pack("!II", 4242, 0x12345678))
    + msg("Z", b"I")
)

SASL_LOGIN = (
    msg("R", struct.pack("!I", 10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0")
    + msg("p", cstr("SCRAM-SHA-256") + struct.pack("!I", 20) + b"n,,n=,r=fuzzclient0")
    + msg("R", struct.pack("!I", 11) + b"r=fuzzclient0server,s=c2FsdA==,i=4096")
    + msg("p", b"c=biws,r=fuzzclient0server,p=AAAA")
    + msg("R", struct.pack("!I", 12) + b"v=BBBB")
    + msg("R", struct.pack("!I", 0))
)

MD5_LOGIN = msg("R", struct.pack("!I", 5) + b"\x01\x02\x03\x04") + msg("p", cstr("md5" + "0" * 32))


def extended(sql, params):
    vals = b"".join(struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p for p in params)
    return (
        msg("P", cstr("s1") + cstr(sql) + struct.pack("!H", len(params)) + struct.pack("!I", 23) * len(params))
        + msg("B", cstr("") + cstr("s1") + struct.pack("!HH", 1, 0) + struct.pack("!H", len(params)) + vals
              + struct.pack("!HH", 1, 1))
        + msg("D", b"P" + cstr(""))
        + msg("E", cstr("") + struct.pack("!I", 0))
        + msg("S")
    )


RESULT = (
    msg("T", struct.pack("!H", 2)
        + cstr("id") + struct.pack("!IhIhih", 16384, 1, 23, 4, -1, 0)
        + cstr("name") + struct.pack("!IhIhih", 16384, 2, 25, -1, -1, 0))
    + msg("D", struct.pack("!H", 2) + struct.pack("!i", 1) + b"7" + struct.pack("!i", -1))
    + msg("C", cstr("SELECT 1"))
    + msg("Z", b"I")
)

FRAME = {
    "server_welcome": WELCOME,
    "server_sasl_login": SASL_LOGIN,
    "server_md5_login": MD5_LOGIN,
    "query": msg("Q", cstr("SELECT * FROM shop_order WHERE note = 'it''s' AND path = E'a\\\\b'")),
    "query_result": msg("Q", cstr("SELECT 1")) + RESULT,
    "extended_batch": extended("SELECT * FROM t WHERE id = $1 AND x = $2", [b"42", None])
    + msg("1") + msg("2") + msg("n") + msg("C", cstr("SELECT 0")) + msg("Z", b"I"),
    "error_response": error([("S", "ERROR"), ("V", "ERROR"), ("C", "42P01"),
                             ("M", 'relation "nope" does not exist'), ("P", "15"), ("F", "parse_relation.c"),
                             ("L", "1392"), ("R", "parserOpenTable")]) + msg("Z", b"E"),
    "notice_and_hint": error([("S", "NOTICE"), ("V", "NOTICE"), ("C", "00000"), ("M", "table skipped"),
                              ("D", "detail text"), ("H", "a hint")], t="N"),
    "login_fatal": error([("S", "FATAL"), ("V", "FATAL"), ("C", "28P01"),
                          ("M", 'password authentication failed for user "bob"')]),
    "copy_and_notify": msg("G", b"\0" + struct.pack("!HH", 1, 0)) + msg("d", b"1\tx\n") + msg("c")
    + msg("A", struct.pack("!I", 99) + cstr("chan") + cstr("payload")) + msg("X"),
    "negotiate_version": msg("v", struct.pack("!II", 0x00030000, 1) + cstr("_pq_.compression")),
}


def write(sub, files):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("startup", STARTUP)
    write("frame", FRAME)
