"""Helpers for the tests of pgmedic's commands (top, snapshot, compare, report,
doctor): running the binary and a scripted HTTP server to answer it."""
import json
import os
import socket
import subprocess
import threading

from conftest import PGMEDIC_BIN


def run_cli(*args, env=None, timeout=60):
    full_env = dict(os.environ)
    full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    full_env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    full_env.pop("COLUMNS", None)
    if env:
        full_env.update(env)
    p = subprocess.run([str(PGMEDIC_BIN)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                       capture_output=True, env=full_env, timeout=timeout)
    out, err = p.stdout.decode(), p.stderr.decode()
    for marker in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in err, f"sanitizer report from pgmedic {args}:\n{err}"
    return p.returncode, out, err


class ScriptedServer:
    """A raw HTTP server on 127.0.0.1: respond(path, n) returns the bytes to send
    for the n-th request (then the connection is closed)."""

    def __init__(self, respond):
        self.respond = respond
        self.paths = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                head = data.decode("latin-1")
                path = head.split(" ")[1] if " " in head else ""
                self.paths.append(path)
                self.heads = getattr(self, "heads", []) + [head]
                conn.sendall(self.respond(path, len(self.paths) - 1))

    def close(self):
        self.sock.close()


def json_response(doc, status="200 OK"):
    body = json.dumps(doc).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
