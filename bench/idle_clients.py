#!/usr/bin/python3
"""idle_clients.py — hold thousands of logged-in, idle PostgreSQL client connections.

Used by bench/scale.sh. One process, raw non-blocking sockets and `selectors`, standard
library only. Each connection sends a v3.0 startup packet for a user that needs no password
(pgmedic trusts loopback clients when its upstream URL has none), waits for
AuthenticationOk ... ReadyForQuery, and then stays idle: nothing more is sent on it until
it is checked or closed.

    idle_clients.py HOST PORT DBNAME USER [--window 200] [--timeout 60]

Commands, one per line on stdin; one reply line per command on stdout ("ok ..." or
"error ..."), so that a shell script can drive it as a coprocess:

    open N     log in new connections until N are held; at most --window logins are in
               flight at once.  -> "ok N SECONDS"  or  "error MESSAGE"
    check [K]  every held connection must still be open (not closed or reset by the
               server, no ErrorResponse waiting); then K of them, spread over the whole
               set (default 10), run "SELECT 1".  -> "ok alive=N queried=K" or "error ..."
    close      send Terminate on every held connection and close it.  -> "ok 0 SECONDS"
    count      -> "ok N"
    quit       close everything and exit.
"""
import errno
import os
import resource
import selectors
import socket
import struct
import sys
import time

PROTOCOL_3_0 = 196608
MAX_ERRORS_SHOWN = 3


def startup_packet(user, dbname):
    body = struct.pack("!i", PROTOCOL_3_0)
    for k, v in (("user", user), ("database", dbname), ("application_name", "idle_clients")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def error_text(payload):
    """The S(everity) and M(essage) fields of an ErrorResponse or NoticeResponse body."""
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return "%s: %s" % (fields.get("S", "ERROR"), fields.get("M", "?"))


def messages(buf):
    """Split complete backend messages off the front of buf (a bytearray, consumed)."""
    out = []
    while len(buf) >= 5:
        (length,) = struct.unpack_from("!i", buf, 1)
        if length < 4 or length > 1 << 24:
            raise ValueError("bad message length %d (type %r)" % (length, chr(buf[0])))
        if len(buf) < 1 + length:
            break
        out.append((chr(buf[0]), bytes(buf[5:1 + length])))
        del buf[:1 + length]
    return out


class Login:
    """One connection between connect() and ReadyForQuery."""

    __slots__ = ("sock", "out", "buf", "connected")

    def __init__(self, sock, packet):
        self.sock = sock
        self.out = packet
        self.buf = bytearray()
        self.connected = False


class Holder:
    def __init__(self, host, port, dbname, user, window, timeout):
        self.addr = (host, port)
        self.packet = startup_packet(user, dbname)
        self.window = window
        self.timeout = timeout
        self.held = []          # logged-in idle sockets, in login order
        self.sel = selectors.DefaultSelector()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    # --- open -------------------------------------------------------------------------
    def start_one(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex(self.addr)
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            if rc == errno.EADDRNOTAVAIL:
                raise OSError(rc, "connect: no free local port (ephemeral port range exhausted)")
            raise OSError(rc, "connect: " + os.strerror(rc))
        lg = Login(s, self.packet)
        self.sel.register(s, selectors.EVENT_WRITE, lg)

    def step(self, lg, events):
        """Advance one login; returns 'done', 'wait' or raises with a reason."""
        s = lg.sock
        if not lg.connected:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, "connect: " + os.strerror(err))
            lg.connected = True
        if lg.out:
            n = s.send(lg.out)
            lg.out = lg.out[n:]
            if not lg.out:
                self.sel.modify(s, selectors.EVENT_READ, lg)
            return "wait"
        if not events & selectors.EVENT_READ:
            return "wait"
        data = s.recv(65536)
        if not data:
            raise OSError(0, "closed by the server during login")
        lg.buf += data
        for typ, payload in messages(lg.buf):
            if typ == "R":
                (code,) = struct.unpack_from("!i", payload)
                if code != 0:
                    raise OSError(0, "server asked for authentication (code %d); "
                                  "expected a trusted login" % code)
            elif typ == "E":
                raise OSError(0, "login refused: " + error_text(payload))
            elif typ == "Z":
                if lg.buf:
                    raise OSError(0, "unexpected data after ReadyForQuery")
                return "done"
            # S (ParameterStatus), K (BackendKeyData), N (Notice), v: nothing to do
        return "wait"

    def open(self, target):
        if target < len(self.held):
            return "error already holding %d connections" % len(self.held)
        # one descriptor per connection, plus stdin/stdout/stderr, the selector and slack
        if self.nofile != resource.RLIM_INFINITY and target + 16 > self.nofile:
            return ("error RLIMIT_NOFILE is %d: too low for %d connections (raise the hard "
                    "limit: ulimit -Hn)" % (self.nofile, target))
        t0 = time.monotonic()
        inflight = 0
        started = len(self.held)
        errors = []
        last_progress = time.monotonic()
        while len(self.held) < target:
            try:
                while inflight < self.window and started < target and not errors:
                    self.start_one()
                    inflight += 1
                    started += 1
            except OSError as e:
                errors.append(e.strerror or str(e))
            if inflight == 0:
                break
            ready = self.sel.select(timeout=1.0)
            now = time.monotonic()
            if not ready and now - last_progress > self.timeout:
                errors.append("%d logins made no progress for %d s" % (inflight, self.timeout))
                break
            for key, ev in ready:
                lg = key.data
                try:
                    st = self.step(lg, ev)
                except (OSError, ValueError) as e:
                    msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    errors.append(msg)
                    st = "failed"
                if st == "wait":
                    continue
                self.sel.unregister(lg.sock)
                inflight -= 1
                last_progress = now
                if st == "done":
                    self.held.append(lg.sock)
                else:
                    lg.sock.close()
            if errors and inflight == 0:
                break
        # abandon logins still in flight (after an error or a timeout)
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()
        secs = time.monotonic() - t0
        if errors or len(self.held) < target:
            shown = "; ".join(sorted(set(errors))[:MAX_ERRORS_SHOWN])
            return "error %d of %d connections logged in after %.1f s; %d failure(s): %s" % (
                len(self.held), target, secs, len(errors), shown or "?")
        return "ok %d %.2f" % (len(self.held), secs)

    # --- check ------------------------------------------------------------------------
    def check(self, k):
        dead = []
        for i, s in enumerate(self.held):
            try:
                data = s.recv(65536, socket.MSG_PEEK)
            except BlockingIOError:
                continue                      # nothing to read: open and idle, as expected
            except OSError as e:
                dead.append("#%d: %s" % (i, e.strerror or e))
                continue
            if not data:
                dead.append("#%d: closed by the server" % i)
                continue
            # Something arrived on an idle connection: fine if it is only notices or
            # parameter changes, not if it is an error (e.g. FATAL before a close).
            buf = bytearray(s.recv(65536))
            try:
                for typ, payload in messages(buf):
                    if typ == "E":
                        dead.append("#%d: %s" % (i, error_text(payload)))
                        break
            except ValueError as e:
                dead.append("#%d: %s" % (i, e))
        if dead:
            return "error %d of %d idle connections are gone: %s" % (
                len(dead), len(self.held), "; ".join(dead[:MAX_ERRORS_SHOWN]))
        k = min(k, len(self.held))
        picks = sorted({(j * len(self.held)) // k for j in range(k)}) if k else []
        for i in picks:
            err = self.query(self.held[i], "SELECT 1")
            if err:
                return "error idle connection #%d could not run SELECT 1: %s" % (i, err)
        return "ok alive=%d queried=%d" % (len(self.held), len(picks))

    def query(self, s, sql):
        body = sql.encode() + b"\0"
        msg = b"Q" + struct.pack("!i", len(body) + 4) + body
        s.setblocking(True)
        s.settimeout(self.timeout)
        try:
            s.sendall(msg)
            buf = bytearray()
            got_row = False
            while True:
                data = s.recv(65536)
                if not data:
                    return "closed by the server"
                buf += data
                for typ, payload in messages(buf):
                    if typ == "E":
                        return error_text(payload)
                    if typ == "D":
                        got_row = True
                    if typ == "Z":
                        return None if got_row else "no row returned"
        except (OSError, ValueError) as e:
            return str(e)
        finally:
            s.setblocking(False)

    # --- close ------------------------------------------------------------------------
    def close(self):
        t0 = time.monotonic()
        terminate = b"X" + struct.pack("!i", 4)
        for s in self.held:
            try:
                s.send(terminate)
            except OSError:
                pass
            s.close()
        self.held = []
        return "ok 0 %.2f" % (time.monotonic() - t0)


def main():
    args = sys.argv[1:]
    opts = {"--window": 200, "--timeout": 60}
    pos = []
    while args:
        a = args.pop(0)
        if a in opts and args:
            opts[a] = int(args.pop(0))
        else:
            pos.append(a)
    if len(pos) != 4:
        sys.exit(__doc__)
    host, port, dbname, user = pos
    h = Holder(host, int(port), dbname, user, opts["--window"], opts["--timeout"])
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        try:
            if cmd == "open" and len(words) == 2:
                reply = h.open(int(words[1]))
            elif cmd == "check":
                reply = h.check(int(words[1]) if len(words) > 1 else 10)
            elif cmd == "close":
                reply = h.close()
            elif cmd == "count":
                reply = "ok %d" % len(h.held)
            elif cmd == "quit":
                h.close()
                print("ok 0", flush=True)
                return
            else:
                reply = "error unknown command: %s" % line.strip()
        except Exception as e:          # keep the protocol alive: one reply per command
            reply = "error %s: %s" % (type(e).__name__, e)
        print(reply, flush=True)
    h.close()


if __name__ == "__main__":
    main()
