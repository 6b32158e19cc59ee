"""Minimal PostgreSQL wire-protocol client for tests that need to see or send
exact bytes: malformed input, the authentication method a server asks for,
SQLSTATEs of login errors (which libpq-based drivers do not expose).

Written from the protocol documentation (protocol-message-formats); only what
the tests need.  Every read has a timeout so a silent proxy fails the test
instead of hanging it.
"""
import base64
import hashlib
import hmac
import os
import socket
import struct

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


class ServerError(Exception):
    """An ErrorResponse arrived; .fields maps field codes ('C', 'M', ...) to text."""

    def __init__(self, fields):
        self.fields = fields
        super().__init__(f"{fields.get('S', '?')} {fields.get('C', '?')}: {fields.get('M', '')}")

    @property
    def sqlstate(self):
        return self.fields.get("C")

    @property
    def message(self):
        return self.fields.get("M", "")


# ---------------------------------------------------------------- packets

def startup_packet(params, version=PROTOCOL_3_0):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request():
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def gssenc_request():
    return struct.pack("!II", 8, GSSENC_REQUEST_CODE)


def cancel_request(pid, key):
    return struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, key)


def message(kind, payload=b""):
    """A regular (typed) frontend message."""
    return kind + struct.pack("!I", len(payload) + 4) + payload


def query_message(sql):
    return message(b"Q", sql.encode() + b"\0")


def terminate_message():
    return message(b"X")


def parse_error_fields(payload):
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


# ---------------------------------------------------------------- auth math

def md5_response(user, password, salt):
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def md5_secret(user, password):
    """The md5 secret PostgreSQL stores and a PgBouncer-style auth file accepts."""
    return "md5" + hashlib.md5(password.encode() + user.encode()).hexdigest()


def _hmac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def scram_secret(password, salt=None, iterations=4096):
    """SCRAM-SHA-256$iter:salt$StoredKey:ServerKey, as PostgreSQL stores it."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    server_key = _hmac(salted, b"Server Key")
    b64 = lambda b: base64.b64encode(b).decode()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


# ---------------------------------------------------------------- connection

class RawConn:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.backend_key = None
        self.params = {}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise Closed(str(e))
            if not chunk:
                raise Closed("EOF")
            self.buf += chunk

    def read_bytes(self, n):
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_msg(self):
        """One backend message as (type byte, payload).  Raises Closed, socket.timeout."""
        self._fill(5)
        kind = self.buf[:1]
        (length,) = struct.unpack("!I", self.buf[1:5])
        if length < 4:
            raise AssertionError(f"backend sent message {kind!r} with length {length}")
        self._fill(1 + length)
        payload = self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return kind, payload

    def read_error_or_close(self):
        """For malformed-input tests: returns ('E', fields) if an ErrorResponse
        arrives (skipping NoticeResponses), or ('closed', None) on EOF/reset.
        Any other message is returned as (type, payload) for the caller to judge.
        socket.timeout propagates: the peer neither answered nor closed."""
        try:
            while True:
                kind, payload = self.read_msg()
                if kind == b"N":
                    continue
                if kind == b"E":
                    return "E", parse_error_fields(payload)
                return kind.decode(), payload
        except Closed:
            return "closed", None

    def expect_closed(self, timeout=5.0):
        """True once the peer closes; False if it sends data instead; raises on timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        return data == b""

    # -- login
    def startup(self, user, database, password=None, extra=None):
        """Full login: returns the authentication request code seen first
        (AUTH_OK, AUTH_MD5, AUTH_SASL, ...).  Raises ServerError on an ErrorResponse."""
        params = {"user": user, "database": database}
        if extra:
            params.update(extra)
        self.send(startup_packet(params))
        first_auth = None
        while True:
            kind, payload = self.read_msg()
            if kind == b"E":
                raise ServerError(parse_error_fields(payload))
            if kind == b"R":
                (code,) = struct.unpack("!I", payload[:4])
                if first_auth is None:
                    first_auth = code
                if code == AUTH_OK:
                    continue
                if code == AUTH_CLEARTEXT:
                    self._need(password)
                    self.send(message(b"p", password.encode() + b"\0"))
                elif code == AUTH_MD5:
                    self._need(password)
                    resp = md5_response(user, password, payload[4:8])
                    self.send(message(b"p", resp.encode() + b"\0"))
                elif code == AUTH_SASL:
                    mechs = [m for m in payload[4:].split(b"\0") if m]
                    if b"SCRAM-SHA-256" not in mechs:
                        raise AssertionError(f"no SCRAM-SHA-256 in {mechs}")
                    self._need(password)
                    self._scram(password)
                else:
                    raise AssertionError(f"unsupported auth request {code}")
            elif kind == b"S":
                k, v, _rest = payload.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif kind == b"K":
                self.backend_key = struct.unpack("!II", payload[:8])
            elif kind == b"N":
                continue
            elif kind == b"Z":
                return first_auth
            else:
                raise AssertionError(f"unexpected message {kind!r} during login")

    @staticmethod
    def _need(password):
        if password is None:
            raise AssertionError("server asked for a password and none was given")

    def _scram(self, password):
        cnonce = base64.b64encode(os.urandom(18)).decode()
        client_first_bare = f"n=,r={cnonce}"
        first = ("n,," + client_first_bare).encode()
        mech = b"SCRAM-SHA-256\0"
        self.send(message(b"p", mech + struct.pack("!i", len(first)) + first))
        kind, payload = self.read_msg()
        if kind == b"E":
            raise ServerError(parse_error_fields(payload))
        code = struct.unpack("!I", payload[:4])[0]
        assert kind == b"R" and code == AUTH_SASL_CONTINUE, (kind, code)
        server_first = payload[4:].decode()
        attrs = dict(item.split("=", 1) for item in server_first.split(","))
        nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        assert nonce.startswith(cnonce), "server nonce must extend the client nonce"
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        final_wo_proof = f"c=biws,r={nonce}"
        auth_msg = f"{client_first_bare},{server_first},{final_wo_proof}".encode()
        sig = _hmac(stored_key, auth_msg)
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        final = f"{final_wo_proof},p={base64.b64encode(proof).decode()}"
        self.send(message(b"p", final.encode()))
        kind, payload = self.read_msg()
        if kind == b"E":
            raise ServerError(parse_error_fields(payload))
        code = struct.unpack("!I", payload[:4])[0]
        assert kind == b"R" and code == AUTH_SASL_FINAL, (kind, code)
        server_final = dict(i.split("=", 1) for i in payload[4:].decode().split(","))
        expected = _hmac(_hmac(salted, b"Server Key"), auth_msg)
        assert base64.b64decode(server_final["v"]) == expected, "bad SCRAM server signature"

    def simple_query(self, sql):
        """Runs sql; returns (rows as lists of str|None, command tags).  Raises ServerError."""
        self.send(query_message(sql))
        rows, tags, error = [], [], None
        while True:
            kind, payload = self.read_msg()
            if kind == b"D":
                (n,) = struct.unpack("!H", payload[:2])
                pos, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", payload[pos:pos + 4])
                    pos += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(payload[pos:pos + ln].decode())
                        pos += ln
                rows.append(row)
            elif kind == b"C":
                tags.append(payload.rstrip(b"\0").decode())
            elif kind == b"E":
                error = ServerError(parse_error_fields(payload))
            elif kind == b"Z":
                if error:
                    raise error
                return rows, tags
