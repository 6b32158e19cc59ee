"""Fixtures for pgmedic's integration tests.

- `pg` (session): one PostgreSQL 15 cluster for the whole run, started as the
  `postgres` system user in a temporary directory on a free port.  Roles:
  `postgres` (superuser, trust over 127.0.0.1), `app_scram` (must authenticate with
  scram-sha-256) and `app_md5` (md5-hashed password, must authenticate with md5).
- `pgmedic` (function): a factory that starts the proxy under test with flags or an
  ini file, waits until its client and HTTP ports accept connections and returns a
  handle.  At teardown it closes the connections it handed out, stops the proxy,
  and fails the test if the proxy died unexpectedly or its stderr holds a
  sanitizer report.
- A watchdog per test: past its time limit (marker `timeout_s`, default 150 s) it
  kills the test's pgmedic processes, so a hung proxy fails the test (clients
  blocked on it see EOF) instead of hanging the suite.

Run with /usr/bin/python3 (Debian's psycopg2/psycopg).  PGMEDIC_BIN selects the
binary (default build/asan/pgmedic under the repository root).
"""
import os
import pwd
import re
import shutil
import signal as sigmod
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg2
import pytest

import pgwire

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
REPO = Path(__file__).resolve().parents[2]
PGMEDIC_BIN = Path(os.environ.get("PGMEDIC_BIN", "build/asan/pgmedic"))
# Every pgmedic the tests start runs with PGMEDIC_TEST_WORKERS event loops (1 when
# unset), not with the default `auto`, which depends on the machine's CPUs.
TEST_WORKERS = os.environ.get("PGMEDIC_TEST_WORKERS") or "1"
if not PGMEDIC_BIN.is_absolute():
    PGMEDIC_BIN = REPO / PGMEDIC_BIN

DB = "pgmedic_test"
SUPERUSER = "postgres"
SCRAM_USER, SCRAM_PASSWORD = "app_scram", "scram-Secret-1"
MD5_USER, MD5_PASSWORD = "app_md5", "md5-Secret-1"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "WARNING: ThreadSanitizer")
DEFAULT_TEST_TIMEOUT = 150.0

# libpq reads these from the environment; tests must see only what they pass.
for _v in ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGDATABASE",
           "PGSSLMODE", "PGSSLROOTCERT", "PGOPTIONS", "PGAPPNAME", "PGDATESTYLE", "PGTZ",
           "PGCLIENTENCODING", "PGSERVICE", "PGSERVICEFILE", "PGCONNECT_TIMEOUT",
           "PGGSSENCMODE", "PGREQUIRESSL", "PGTARGETSESSIONATTRS"):
    os.environ.pop(_v, None)


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(seconds): per-test watchdog limit")


# ------------------------------------------------------------------ helpers

_handed_out_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now and that this run has
    not handed out before (so a port in TIME_WAIT from an earlier test is not reused)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("no free port")


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout, interval=0.05, message="condition"):
    """Polls predicate() until it returns a truthy value; returns it or fails."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def kv_dsn(**params):
    """libpq key=value connection string."""
    def q(v):
        v = str(v)
        if v == "" or re.search(r"[\s'\\]", v):
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return v
    return " ".join(f"{k}={q(v)}" for k, v in params.items() if v is not None)


def pg_url(user, port, dbname, password=None, host="127.0.0.1", query=None):
    """postgresql://user[:password]@host:port/dbname[?query] with percent-encoding."""
    auth = urllib.parse.quote(user, safe="")
    if password is not None:
        auth += ":" + urllib.parse.quote(password, safe="")
    url = f"postgresql://{auth}@{host}:{port}/{urllib.parse.quote(dbname, safe='')}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    return url


_METRIC_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_METRIC_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_MISSING = object()


class Metrics:
    """Parsed Prometheus text exposition: samples of (name, labels, value)."""

    def __init__(self, text):
        self.text = text
        self.samples = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _METRIC_LINE.match(line)
            if not m:
                raise AssertionError(f"unparsable metrics line: {line!r}")
            name, label_text, value = m.groups()
            labels = {}
            if label_text:
                pos = 0
                while pos < len(label_text):
                    lm = _METRIC_LABEL.match(label_text, pos)
                    if not lm or lm.end() == pos:
                        raise AssertionError(f"unparsable labels in metrics line: {line!r}")
                    labels[lm.group(1)] = re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(x.group(1), x.group(1)),
                                                 lm.group(2))
                    pos = lm.end()
            self.samples.append((name, labels, float(value)))

    def names(self):
        return sorted({s[0] for s in self.samples})

    def series(self, name):
        return [(labels, v) for n, labels, v in self.samples if n == name]

    def get(self, name, default=_MISSING, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        vals = [v for n, ls, v in self.samples
                if n == name and all(ls.get(k) == str(val) for k, val in labels.items())]
        if not vals:
            if default is not _MISSING:
                return default
            raise AssertionError(f"no sample {name}{labels or ''} in metrics; have: {self.names()}")
        return sum(vals)


def parse_metrics(text):
    return Metrics(text)


# ------------------------------------------------------------------ PostgreSQL

def _pg_ids():
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def run_as_postgres(cmd, cwd, timeout=120, check=True):
    cmd = [str(c) for c in cmd]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


MAIN_HBA = """\
# TYPE  DATABASE  USER       ADDRESS        METHOD
local   all       all                       trust
host    all       app_scram  127.0.0.1/32   scram-sha-256
host    all       app_md5    127.0.0.1/32   md5
host    all       all        127.0.0.1/32   trust
"""


class PgCluster:
    """A throwaway PostgreSQL 15 cluster run by the postgres system user."""

    def __init__(self, name, hba=MAIN_HBA, conf=None, files=None):
        self.name = name
        self.hba = hba
        self.conf = dict(conf or {})
        self.files = dict(files or {})  # name in data dir -> (source path, mode)
        self.port = None
        self.base = None

    # -- lifecycle
    def start(self):
        uid, gid = _pg_ids()
        self.base = Path(tempfile.mkdtemp(prefix=f"pgmedic-{self.name}-"))
        os.chown(self.base, uid, gid)
        os.chmod(self.base, 0o700)
        self.datadir = self.base / "data"
        self.logfile = self.base / "postgres.log"
        run_as_postgres([PG_BIN / "initdb", "-D", self.datadir, "-U", SUPERUSER, "--auth=trust",
                         "-E", "UTF8", "--locale=C", "-N"], cwd=self.base)
        (self.datadir / "pg_hba.conf").write_text(self.hba)
        for fname, (src, mode) in self.files.items():
            dst = self.datadir / fname
            shutil.copyfile(src, dst)
            os.chown(dst, uid, gid)
            os.chmod(dst, mode)
        base_conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.base}'",
            "max_connections": "300",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "128MB",
            "max_wal_size": "2GB",
            "checkpoint_timeout": "30min",
            "password_encryption": "'scram-sha-256'",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        base_conf.update(self.conf)
        last_err = None
        for _attempt in range(5):
            self.port = free_port()
            with open(self.datadir / "postgresql.conf", "a") as f:
                f.write("\n# pgmedic tests\n")
                for k, v in base_conf.items():
                    f.write(f"{k} = {v}\n")
                f.write(f"port = {self.port}\n")
            r = run_as_postgres([PG_BIN / "pg_ctl", "-D", self.datadir, "-l", self.logfile,
                                 "-w", "-t", "60", "start"], cwd=self.base, check=False)
            if r.returncode == 0:
                return self
            last_err = r.stdout + r.stderr + self.log_tail()
        raise RuntimeError(f"PostgreSQL {self.name} did not start:\n{last_err}")

    def stop(self):
        if self.base is None:
            return
        run_as_postgres([PG_BIN / "pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop"],
                        cwd=self.base, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def reload(self):
        run_as_postgres([PG_BIN / "pg_ctl", "-D", self.datadir, "reload"], cwd=self.base)

    def log_tail(self, n=60):
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- access
    def connect(self, dbname=DB, user=SUPERUSER, password=None, **kw):
        kw.setdefault("connect_timeout", 10)
        kw.setdefault("sslmode", "disable")
        return psycopg2.connect(host="127.0.0.1", port=self.port, dbname=dbname, user=user,
                                password=password, **kw)

    def sql(self, query, params=None, dbname=DB):
        """Runs one statement as the superuser in autocommit; returns rows or None."""
        conn = self.connect(dbname=dbname)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def ensure_db(self, name):
        if not self.sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,), dbname="postgres"):
            self.sql(f'CREATE DATABASE "{name}"', dbname="postgres")
        return name

    def url(self, user=SUPERUSER, dbname=DB, password=None, query=None):
        return pg_url(user, self.port, dbname, password=password, query=query)

    def role_secret(self, role):
        return self.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0][0]

    def server_backends(self, dbname, exclude_self=True):
        """Number of client backends connected to dbname (pgmedic's server connections
        when the test gives pgmedic a database of its own)."""
        return self.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                        "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                        "AND application_name <> 'pgmedic-advisor'",  # the advisor's own connection is not the pool's
                        (dbname,), dbname="postgres")[0][0]


@pytest.fixture(scope="session")
def pg():
    cluster = PgCluster("main").start()
    try:
        cluster.sql(f'CREATE DATABASE "{DB}"', dbname="postgres")
        conn = cluster.connect(dbname=DB)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET password_encryption = 'scram-sha-256'")
            cur.execute(f"CREATE ROLE {SCRAM_USER} LOGIN PASSWORD %s", (SCRAM_PASSWORD,))
            cur.execute("SET password_encryption = 'md5'")
            cur.execute(f"CREATE ROLE {MD5_USER} LOGIN")
            cur.execute(f"ALTER ROLE {MD5_USER} PASSWORD %s", (MD5_PASSWORD,))
            cur.execute(f"GRANT ALL ON SCHEMA public TO {SCRAM_USER}, {MD5_USER}")
        conn.close()
        yield cluster
    finally:
        cluster.stop()


# ------------------------------------------------------------------ pgmedic

class PgMedic:
    """One running pgmedic process."""

    def __init__(self, pg, workdir, index):
        self.pg = pg
        self.workdir = Path(workdir)
        self.index = index
        self.proc = None
        self.port = None
        self.http_port = None
        self.listen_host = "127.0.0.1"
        self.config_path = None
        self.config = None
        self.databases = None
        self.expected_exit = False
        self.killed_by_test_harness = False
        self.stderr_path = self.workdir / f"pgmedic-{index}.stderr"
        self.stdout_path = self.workdir / f"pgmedic-{index}.stdout"
        self._conns = []

    # -- process
    @property
    def pid(self):
        return self.proc.pid

    def _launch(self, argv, env=None):
        full_env = dict(os.environ)
        full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        full_env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        if env:
            full_env.update(env)
        self.argv = [str(PGMEDIC_BIN)] + [str(a) for a in argv]
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._stdout,
                                     stderr=self._stderr, cwd=self.workdir, env=full_env)

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        ports = [p for p in (self.port, self.http_port) if p]
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"pgmedic exited with {rc} during startup\n"
                                     f"argv: {self.argv}\nstderr:\n{self.stderr_text()}")
            if all(port_accepts(p) for p in ports):
                return self
            time.sleep(0.05)
        raise AssertionError(f"pgmedic did not accept on {ports} within {timeout}s\n"
                             f"stderr:\n{self.stderr_text()}")

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig):
        if sig in (sigmod.SIGTERM, sigmod.SIGINT, sigmod.SIGKILL, sigmod.SIGQUIT):
            self.expected_exit = True
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns its exit code or fails."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pgmedic still running {timeout}s later\nstderr:\n{self.stderr_text()}")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=sigmod.SIGTERM, timeout=10.0):
        """Sends sig and waits; returns the exit code."""
        if self.proc.poll() is None:
            self.signal(sig)
        return self.wait_exit(timeout)

    def sanitizer_report(self):
        text = self.stderr_text()
        if any(m in text for m in SANITIZER_MARKERS):
            return text
        return None

    # -- config file
    def write_config(self, databases=_MISSING, **changes):
        """Rewrites the ini file with `changes` merged in (value None deletes a key)."""
        assert self.config is not None, "this pgmedic was started with flags, not --config"
        for k, v in changes.items():
            if v is None:
                self.config.pop(k, None)
            else:
                self.config[k] = v
        if databases is not _MISSING:
            self.databases = databases
        lines = ["[pgmedic]"] + [f"{k} = {v}" for k, v in self.config.items()]
        if self.databases:
            lines += ["", "[databases]"] + [f"{k} = {v}" for k, v in self.databases.items()]
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.config_path)

    # -- clients
    def metrics_text(self, timeout=5.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=timeout) as r:
            assert r.status == 200, r.status
            return r.read().decode()

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def dsn(self, dbname=DB, user=SUPERUSER, **kw):
        kw.setdefault("connect_timeout", 10)
        return kv_dsn(host="127.0.0.1", port=self.port, dbname=dbname, user=user, **kw)

    def connect(self, dbname=DB, user=SUPERUSER, password=None, **kw):
        """psycopg2 connection through pgmedic (closed at teardown)."""
        kw.setdefault("connect_timeout", 10)
        conn = psycopg2.connect(host=kw.pop("host", "127.0.0.1"), port=self.port, dbname=dbname,
                                user=user, password=password, **kw)
        self._conns.append(conn)
        return conn

    def connect3(self, dbname=DB, user=SUPERUSER, password=None, **kw):
        """psycopg 3 connection through pgmedic (closed at teardown)."""
        import psycopg
        kw.setdefault("connect_timeout", 10)
        conn = psycopg.connect(host="127.0.0.1", port=self.port, dbname=dbname, user=user,
                               password=password, **kw)
        self._conns.append(conn)
        return conn

    def raw(self, timeout=5.0):
        return pgwire.RawConn("127.0.0.1", self.port, timeout=timeout)

    def vm_kb(self, field="VmHWM"):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc/{self.pid}/status")

    def close_clients(self):
        for c in self._conns:
            try:
                c.close()
            except Exception:
                pass
        self._conns.clear()


class PgMedicFactory:
    """pgmedic(...) starts a proxy; see __call__ for the knobs."""

    def __init__(self, pg, workdir):
        self.pg = pg
        self.workdir = Path(workdir)
        self.instances = []

    def _new(self):
        p = PgMedic(self.pg, self.workdir, len(self.instances))
        self.instances.append(p)
        return p

    def __call__(self, pool_mode="transaction", pool_size=4, upstream=None, auth_type=None,
                 auth_file=None, settings=None, databases=None, use_config=False,
                 listen_host="127.0.0.1", args=(), env=None, log_level=None, wait=True):
        """Starts pgmedic.

        Flag mode (default): --listen/--upstream/--pool-mode/--pool-size/--http flags,
        `settings` as --set key=value.  Config mode (use_config=True, or when
        `databases` is given): everything goes into an ini file passed with --config
        (so SIGHUP can change it through write_config()); `settings` are extra
        [pgmedic] keys, `databases` the [databases] section.
        `upstream` defaults to postgresql://postgres@127.0.0.1:PGPORT/pgmedic_test
        (no password: loopback clients are trusted); pass "" to omit it in config mode.
        """
        p = self._new()
        p.listen_host = listen_host
        p.port = free_port()
        p.http_port = free_port()
        if upstream is None:
            upstream = self.pg.url()
        log_level = log_level or os.environ.get("PGMEDIC_TEST_LOG_LEVEL")
        if "workers" not in (settings or {}):
            settings = dict(settings or {}, workers=TEST_WORKERS)
        if databases is not None:
            use_config = True
        if use_config:
            cfg = {"listen_addr": listen_host, "listen_port": p.port,
                   "http_addr": "127.0.0.1", "http_port": p.http_port}
            if upstream:
                cfg["upstream"] = upstream
            cfg["pool_mode"] = pool_mode
            cfg["pool_size"] = pool_size
            if auth_type:
                cfg["auth_type"] = auth_type
            if auth_file:
                cfg["auth_file"] = auth_file
            if log_level:
                cfg["log_level"] = log_level
            cfg.update(settings or {})
            p.config = cfg
            p.databases = databases
            p.config_path = self.workdir / f"pgmedic-{p.index}.ini"
            p.write_config()
            argv = ["--config", p.config_path]
        else:
            argv = ["--listen", f"{listen_host}:{p.port}", "--upstream", upstream,
                    "--pool-mode", pool_mode, "--pool-size", pool_size,
                    "--http", f"127.0.0.1:{p.http_port}"]
            if auth_type:
                argv += ["--auth-type", auth_type]
            if auth_file:
                argv += ["--auth-file", auth_file]
            if log_level:
                argv += ["--log-level", log_level]
            for k, v in (settings or {}).items():
                argv += ["--set", f"{k}={v}"]
        argv += list(args)
        p._launch(argv, env=env)
        if wait:
            p.wait_ready()
        return p

    def run_expect_exit(self, args, timeout=10.0):
        """Runs pgmedic with exactly `args`, expecting it to exit on its own;
        returns (exit code, stderr text)."""
        p = self._new()
        p.expected_exit = True
        p._launch(args)
        try:
            rc = p.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pgmedic {args} kept running for {timeout}s\n{p.stderr_text()}")
        return rc, p.stderr_text()

    def write_auth_file(self, entries, name="userlist.txt"):
        """entries: {user: secret}; writes a PgBouncer-format auth file, returns its path."""
        path = self.workdir / name
        lines = ['"{}" "{}"'.format(u.replace('"', '""'), s.replace('"', '""')) for u, s in entries.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- teardown
    def kill_all(self):
        for p in self.instances:
            if p.proc is not None and p.proc.poll() is None:
                p.killed_by_test_harness = True
                p.proc.kill()

    def finish(self):
        problems = []
        for p in self.instances:
            if p.proc is None:
                continue
            p.close_clients()
            rc = p.proc.poll()
            if rc is not None and not p.expected_exit and not p.killed_by_test_harness:
                problems.append(f"pgmedic #{p.index} exited unexpectedly during the test (code {rc})")
            if rc is None:
                p.proc.send_signal(sigmod.SIGTERM)
                try:
                    rc = p.proc.wait(timeout=8)
                    if rc != 0:
                        problems.append(f"pgmedic #{p.index} exited with {rc} after SIGTERM at teardown")
                except subprocess.TimeoutExpired:
                    p.killed_by_test_harness = True
                    p.proc.kill()
                    p.proc.wait(timeout=10)
            p._stdout.close()
            p._stderr.close()
            report = p.sanitizer_report()
            if report:
                problems.append(f"sanitizer report in pgmedic #{p.index} stderr:\n{report[-20000:]}")
        return problems


def _stderr_tail(text, n=80):
    return "\n".join(text.splitlines()[-n:])


@pytest.fixture
def pgmedic(pg, tmp_path, request):
    factory = PgMedicFactory(pg, tmp_path)
    request.node._pgmedic_factory = factory
    marker = request.node.get_closest_marker("timeout_s")
    limit = float(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT
    fired = threading.Event()

    def on_timeout():
        fired.set()
        factory.kill_all()

    watchdog = threading.Timer(limit, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield factory
    finally:
        watchdog.cancel()
    problems = factory.finish()
    if fired.is_set():
        problems.insert(0, f"watchdog: test exceeded {limit}s; pgmedic was killed")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    factory = getattr(item, "_pgmedic_factory", None)
    if rep.failed and factory is not None:
        for p in factory.instances:
            if p.proc is not None:
                rep.sections.append((f"pgmedic #{p.index} stderr (tail)", _stderr_tail(p.stderr_text())))


# ------------------------------------------------------------------ shared small fixtures

@pytest.fixture
def direct(pg):
    """A direct autocommit connection to PostgreSQL (superuser), for checks."""
    conn = pg.connect()
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def table_name(request):
    """A table name unique to this test."""
    base = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    return f"t_{base}_{os.getpid()}"
