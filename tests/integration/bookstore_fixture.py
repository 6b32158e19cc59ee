"""The bookstore demo (examples/bookstore) running against PostgreSQL through pgmedic,
for test_bookstore.py: a module-scoped fixture `bookstore`.

Set-up, once per module:
  - a database of its own on the session's `pg` cluster, migrated and seeded directly
    (400,000 reviews: plans matter; the rest smaller than the demo's);
  - pgmedic (PGMEDIC_BIN, build/asan/pgmedic by default) in front of it, started with
    subprocess the way conftest's factory does (that factory is per test), with the
    advisor on, HypoPG created by pgmedic (hypopg=create) and a short advisor interval;
  - the ORM's model map posted with `manage.py pgmedic_models`;
  - gunicorn (Debian's, 2 sync workers) serving the bookstore with pgmedic as its
    database, so every query carries the route tags of pgmedic_django.
Teardown stops gunicorn and pgmedic (SIGTERM; pgmedic must exit 0 with no sanitizer
report, else the teardown fails) and drops the database.

The handle's helpers: get(path, n) requests a URL n times (all must answer 200),
findings() GETs /api/findings, wait_findings(pred) polls it, routes() /api/routes.
"""
import concurrent.futures
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import PGMEDIC_BIN, REPO, SANITIZER_MARKERS, TEST_WORKERS, free_port, port_accepts

APP = REPO / "examples" / "bookstore"
PYTHON = "/usr/bin/python3"          # Debian's: Django 4.2 and psycopg2
GUNICORN = "/usr/bin/gunicorn"
DB_NAME = "pgmedic_bookstore"
SEED = {"authors": 500, "publishers": 20, "tags": 30, "books": 5000, "reviews": 400000,
        "orders": 2000, "wishlists": 50000}
PGMEDIC_SETTINGS = {"advisor": "on", "hypopg": "create", "advisor_interval": "1"}
HTTP_TIMEOUT = 60.0


class Bookstore:
    def __init__(self, pg, workdir):
        self.pg = pg
        self.workdir = Path(workdir)
        self.port = free_port()          # pgmedic's client port
        self.http_port = free_port()     # pgmedic's HTTP API
        self.web_port = free_port()      # gunicorn
        self.pgmedic = None
        self.web = None
        self._files = []

    # -- URLs and HTTP
    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def app_url(self):
        return f"http://127.0.0.1:{self.web_port}"

    def _get(self, url):
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get(self, path, n=1, concurrency=2):
        """GETs the bookstore's `path` n times (`concurrency` at a time); every answer
        must be 200.  Returns the decoded JSON bodies."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as ex:
            results = list(ex.map(lambda _: self._get(self.app_url + path), range(n)))
        bad = [(s, b[:300]) for s, b in results if s != 200]
        assert not bad, f"GET {path}: {len(bad)} of {n} answers were not 200: {bad[:3]}\n{self.logs()}"
        return [json.loads(b) for _, b in results]

    def api(self, path):
        status, body = self._get(self.api_url + path)
        assert status == 200, f"GET {path} on pgmedic: HTTP {status}: {body[:500]!r}"
        return json.loads(body)

    def findings(self):
        doc = self.api("/api/findings")
        assert isinstance(doc, dict) and isinstance(doc.get("findings"), list), doc
        return doc["findings"]

    def wait_findings(self, pred, timeout=30.0, what="a finding"):
        """Polls /api/findings until some finding satisfies pred; returns those that do."""
        deadline = time.monotonic() + timeout
        last = []
        while True:
            self.assert_alive()
            last = self.findings()
            hits = [f for f in last if pred(f)]
            if hits:
                return hits
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} in /api/findings after {timeout}s; findings:\n"
                                     + json.dumps(last, indent=1)[:12000])
            time.sleep(0.25)

    def routes(self):
        return {r["route"]: r for r in self.api("/api/routes?limit=0")["routes"]}

    def wait_requests(self, route, n, timeout=15.0):
        """Until pgmedic counts at least n requests of `route`; returns its /api/routes entry."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.routes().get(route)
            if r and (r.get("requests") or 0) >= n:
                return r
            if time.monotonic() > deadline:
                raise AssertionError(f"pgmedic counted {r and r.get('requests')} requests of {route}, "
                                     f"expected {n}: {r}")
            time.sleep(0.2)

    # -- processes
    def env(self, pgport):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG"))}
        env.update({"PGHOST": "127.0.0.1", "PGPORT": str(pgport), "PGDATABASE": DB_NAME, "PGUSER": "postgres",
                    "PGMEDIC_URL": self.api_url, "PYTHONDONTWRITEBYTECODE": "1"})
        return env

    def manage(self, *args, pgport=None, timeout=180):
        r = subprocess.run([PYTHON, "manage.py", *args], cwd=APP, env=self.env(pgport or self.pg.port),
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"manage.py {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def _log(self, name):
        f = open(self.workdir / name, "wb")
        self._files.append(f)
        return f

    def start_pgmedic(self):
        argv = [str(PGMEDIC_BIN), "--listen", f"127.0.0.1:{self.port}",
                "--upstream", self.pg.url(dbname=DB_NAME), "--pool-mode", "transaction", "--pool-size", "8",
                "--http", f"127.0.0.1:{self.http_port}"]
        for k, v in PGMEDIC_SETTINGS.items():
            argv += ["--set", f"{k}={v}"]
        argv += ["--workers", TEST_WORKERS]  # as conftest's factory
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.pgmedic_argv = argv
        self.pgmedic = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log("pgmedic.stdout"),
                                        stderr=self._log("pgmedic.stderr"), cwd=self.workdir, env=env)
        self._wait_ports(self.pgmedic, "pgmedic", [self.port, self.http_port])

    def start_web(self):
        argv = [GUNICORN, "--workers", "2", "--bind", f"127.0.0.1:{self.web_port}", "--timeout", "60",
                "--error-logfile", "-", "bookstore.wsgi"]
        self.web = subprocess.Popen(argv, cwd=APP, env=self.env(self.port), stdin=subprocess.DEVNULL,
                                    stdout=self._log("gunicorn.stdout"), stderr=self._log("gunicorn.stderr"))
        self._wait_ports(self.web, "gunicorn", [self.web_port])

    def _wait_ports(self, proc, name, ports, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not all(port_accepts(p) for p in ports):
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} during startup\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not accept on {ports} within {timeout}s\n{self.logs()}")
            time.sleep(0.05)

    def assert_alive(self):
        for proc, name in ((self.pgmedic, "pgmedic"), (self.web, "gunicorn")):
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs()}")

    def text(self, name, tail=60):
        try:
            lines = (self.workdir / name).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    def logs(self):
        return (f"--- pgmedic stderr (tail):\n{self.text('pgmedic.stderr')}\n"
                f"--- gunicorn stderr (tail):\n{self.text('gunicorn.stderr', 30)}")

    def stop(self):
        """Stops gunicorn and pgmedic; returns a list of problems (empty: all well)."""
        problems = []
        for proc, name in ((self.web, "gunicorn"), (self.pgmedic, "pgmedic")):
            if proc is None:
                continue
            if proc.poll() is not None:
                problems.append(f"{name} had exited during the tests (code {proc.returncode})")
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                problems.append(f"{name} ignored SIGTERM for 15 s")
                continue
            if rc != 0:
                problems.append(f"{name} exited with {rc} after SIGTERM")
        for f in self._files:
            f.close()
        text = self.text("pgmedic.stderr", tail=100000)
        if any(m in text for m in SANITIZER_MARKERS):
            problems.append("sanitizer report in pgmedic's stderr:\n" + text[-20000:])
        if problems:
            problems.append(self.logs())
        return problems


@pytest.fixture(scope="module")
def bookstore(pg):
    workdir = tempfile.mkdtemp(prefix="pgmedic-bookstore-")
    bs = Bookstore(pg, workdir)
    pg.sql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)', dbname="postgres")
    pg.sql(f'CREATE DATABASE "{DB_NAME}"', dbname="postgres")
    ok = False
    try:
        # Set-up goes straight to PostgreSQL; pgmedic sees only the application's traffic.
        bs.manage("migrate", "--no-input")
        bs.manage("seed", "--reset", *[f"--{k}={v}" for k, v in SEED.items()])
        bs.start_pgmedic()
        out = bs.manage("pgmedic_models", "--url", bs.api_url)
        assert "pgmedic_models: sent" in out, out
        bs.start_web()
        bs.get("/health/")
        ok = True
        yield bs
    finally:
        problems = bs.stop()
        try:
            pg.sql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)', dbname="postgres")
        except Exception as e:  # the cluster may be gone already if the session is ending badly
            problems.append(f"could not drop {DB_NAME}: {e}")
        if not problems:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
        if problems and ok:
            pytest.fail("bookstore teardown:\n" + "\n\n".join(problems), pytrace=False)
