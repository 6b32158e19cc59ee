"""Shared helpers of the SQL corpus generators (gen_django.py, gen_psycopg.py, gen_pgbench.py).

- Cluster: use PGHOST/PGPORT when given, else start a private PostgreSQL with
  scripts/pgtmp.sh and stop it at the end.
- WireTap: a tiny TCP relay between a client and PostgreSQL that records the SQL text of
  every simple-protocol Query ('Q') and extended-protocol Parse ('P') message, so the
  corpus holds the statements byte for byte as they reach the server (including what
  drivers send on their own: BEGIN, COMMIT, set_config, DECLARE/FETCH of named cursors).
- libpg_query (ctypes): parse check and splitting of multi-statement Query messages.
- Corpus: ordered, deduplicated, validated output as one json.dumps(sql) per line.

Run with Debian's /usr/bin/python3 (it sees python3-django, python3-psycopg2, python3-psycopg).
"""
import ctypes
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PGTMP = os.path.join(ROOT, "scripts", "pgtmp.sh")


def log(msg):
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- libpg_query

class _PgQueryError(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char_p), ("funcname", ctypes.c_char_p),
                ("filename", ctypes.c_char_p), ("lineno", ctypes.c_int),
                ("cursorpos", ctypes.c_int), ("context", ctypes.c_char_p)]


class _PgQueryParseResult(ctypes.Structure):
    _fields_ = [("parse_tree", ctypes.c_void_p), ("stderr_buffer", ctypes.c_void_p),
                ("error", ctypes.POINTER(_PgQueryError))]


class _PgQuerySplitStmt(ctypes.Structure):
    _fields_ = [("stmt_location", ctypes.c_int), ("stmt_len", ctypes.c_int)]


class _PgQuerySplitResult(ctypes.Structure):
    _fields_ = [("stmts", ctypes.POINTER(ctypes.POINTER(_PgQuerySplitStmt))),
                ("n_stmts", ctypes.c_int), ("stderr_buffer", ctypes.c_void_p),
                ("error", ctypes.POINTER(_PgQueryError))]


_lib = None


def _pg_query():
    global _lib
    if _lib is None:
        for name in ("libpg_query.so", "/usr/lib/x86_64-linux-gnu/libpg_query.so"):
            try:
                _lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise SystemExit("libpg_query.so not found (apt-get install libpg-query-dev)")
        _lib.pg_query_parse.restype = _PgQueryParseResult
        _lib.pg_query_parse.argtypes = [ctypes.c_char_p]
        _lib.pg_query_free_parse_result.argtypes = [_PgQueryParseResult]
        _lib.pg_query_split_with_parser.restype = _PgQuerySplitResult
        _lib.pg_query_split_with_parser.argtypes = [ctypes.c_char_p]
        _lib.pg_query_free_split_result.argtypes = [_PgQuerySplitResult]
    return _lib


def parse_error(sql):
    """None if libpg_query parses `sql`, else its error message."""
    lib = _pg_query()
    res = lib.pg_query_parse(sql.encode("utf-8"))
    try:
        if res.error:
            return f"{res.error.contents.message.decode()} at {res.error.contents.cursorpos}"
        return None
    finally:
        lib.pg_query_free_parse_result(res)


def split_statements(sql):
    """Split a (possibly multi-statement) string into statements, as libpg_query sees them.

    Returns [sql] unchanged when it holds one statement or does not parse."""
    lib = _pg_query()
    raw = sql.encode("utf-8")
    res = lib.pg_query_split_with_parser(raw)
    try:
        if res.error or res.n_stmts <= 1:
            return [sql]
        out = []
        for i in range(res.n_stmts):
            st = res.stmts[i].contents
            piece = raw[st.stmt_location:st.stmt_location + st.stmt_len].decode("utf-8").strip()
            if piece:
                out.append(piece)
        return out
    finally:
        lib.pg_query_free_split_result(res)


# --------------------------------------------------------------------------- corpus

class Corpus:
    """Ordered set of statements; validated with libpg_query when written."""

    def __init__(self):
        self._seen = set()
        self.items = []

    def add(self, sql):
        if not isinstance(sql, str):
            sql = sql.decode("utf-8")
        if not sql.strip():
            return
        for stmt in split_statements(sql):
            if stmt not in self._seen:
                self._seen.add(stmt)
                self.items.append(stmt)

    def __len__(self):
        return len(self.items)

    def write(self, path):
        kept, dropped = [], []
        for sql in self.items:
            err = parse_error(sql)
            if err:
                dropped.append((sql, err))
            else:
                kept.append(sql)
        for sql, err in dropped:
            log(f"dropped (libpg_query: {err}): {sql[:120]!r}")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for sql in kept:
                f.write(json.dumps(sql) + "\n")
        os.replace(tmp, path)
        log(f"wrote {len(kept)} statements to {path} ({len(dropped)} dropped)")
        return len(kept)


# --------------------------------------------------------------------------- cluster

class Cluster:
    """PostgreSQL to talk to: PGHOST/PGPORT from the environment, or a private pgtmp.sh one."""

    def __init__(self):
        self.tmpdir = None
        host, port = os.environ.get("PGHOST"), os.environ.get("PGPORT")
        if host and port:
            self.host, self.port = host, int(port)
        else:
            # Short path: the Unix socket path inside it must stay under 107 bytes.
            self.tmpdir = tempfile.mkdtemp(prefix="pgcorpus.", dir="/tmp")
            os.chmod(self.tmpdir, 0o755)
            out = subprocess.run(["sh", PGTMP, "start", os.path.join(self.tmpdir, "pg")],
                                 check=True, stdout=subprocess.PIPE, text=True).stdout
            self.host, self.port = "127.0.0.1", int(out.strip())
        self.user = os.environ.get("PGUSER", "postgres")
        self.password = os.environ.get("PGPASSWORD", "")

    def connect_params(self, dbname="postgres"):
        p = {"host": self.host, "port": self.port, "user": self.user, "dbname": dbname}
        if self.password:
            p["password"] = self.password
        return p

    def recreate_db(self, name):
        import psycopg2
        conn = psycopg2.connect(**self.connect_params())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()

    def drop_db(self, name):
        import psycopg2
        conn = psycopg2.connect(**self.connect_params())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    def upstream_socket(self):
        if self.host.startswith("/"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(os.path.join(self.host, f".s.PGSQL.{self.port}"))
        else:
            s = socket.create_connection((self.host, self.port))
        return s

    def close(self):
        if self.tmpdir:
            subprocess.run(["sh", PGTMP, "stop", os.path.join(self.tmpdir, "pg")], check=False)
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


# --------------------------------------------------------------------------- wire tap

_SSL_REQUEST, _GSSENC_REQUEST, _CANCEL_REQUEST = 80877103, 80877104, 80877102


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


class WireTap:
    """Relay on 127.0.0.1:<port> to the cluster; records Query/Parse SQL texts in order.

    `paused` stops recording (for setup chatter we do not want in the corpus)."""

    def __init__(self, cluster, sink):
        self.cluster = cluster
        self.sink = sink            # callable(sql: str)
        self.paused = False
        self._lock = threading.Lock()
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(64)
        self.port = self._srv.getsockname()[1]
        self._closing = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _record(self, sql):
        if not self.paused:
            with self._lock:
                self.sink(sql)

    def _accept_loop(self):
        while not self._closing:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            try:
                server = self.cluster.upstream_socket()
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump_server, args=(server, client), daemon=True).start()
            threading.Thread(target=self._pump_client, args=(client, server), daemon=True).start()

    @staticmethod
    def _pump_server(server, client):
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _pump_client(self, client, server):
        try:
            # Untyped messages first: SSL/GSSENC requests (answered 'N' by a plain server),
            # then the startup packet; a cancel request ends the connection.
            while True:
                head = _recv_exact(client, 8)
                length, code = struct.unpack("!ii", head)
                body = _recv_exact(client, length - 8)
                server.sendall(head + body)
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    continue
                break
            while True:
                head = _recv_exact(client, 5)
                mtype = head[:1]
                (length,) = struct.unpack("!i", head[1:])
                body = _recv_exact(client, length - 4)
                if mtype == b"Q":
                    self._record(body[:body.index(b"\0")].decode("utf-8"))
                elif mtype == b"P":
                    name_end = body.index(b"\0")
                    q_end = body.index(b"\0", name_end + 1)
                    self._record(body[name_end + 1:q_end].decode("utf-8"))
                server.sendall(head + body)
                if mtype == b"X":
                    break
        except (EOFError, OSError):
            pass
        finally:
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._closing = True
        self._srv.close()
