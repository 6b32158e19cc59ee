"""Signals: SIGHUP reloads the config file (pool size, auth file) and survives a
broken one; SIGTERM stops accepting and lets open transactions finish (bounded
by shutdown_timeout) then exits 0; SIGINT exits at once."""
import signal
import threading
import time

import psycopg2
import pytest

from conftest import wait_until

MODES = ["session", "transaction"]


class Load:
    """n clients, each on its own connection, running short sleeps until stopped."""

    def __init__(self, px, n, sql="SELECT pg_sleep(0.1)", **connect_kw):
        self.conns = [px.connect(**connect_kw) for _ in range(n)]
        for c in self.conns:
            c.autocommit = True
        self.stop_flag = False
        self.errors = []
        self.done = 0
        self.threads = [threading.Thread(target=self._run, args=(c, sql), daemon=True) for c in self.conns]
        for t in self.threads:
            t.start()

    def _run(self, conn, sql):
        while not self.stop_flag:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                self.done += 1
            except Exception as e:  # noqa: BLE001 - reported by stop()
                self.errors.append(f"{type(e).__name__}: {e}")
                return

    def stop(self):
        self.stop_flag = True
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "a load client hung"
        assert not self.errors, self.errors
        assert self.done > 0


def sample_max(fn, seconds, interval=0.1):
    best = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        best = max(best, fn())
        time.sleep(interval)
    return best


@pytest.mark.timeout_s(90)
def test_sighup_changes_pool_size(pg, pgmedic):
    db = pg.ensure_db("pgmedic_sighup")
    px = pgmedic(pool_mode="transaction", pool_size=2, use_config=True, upstream=pg.url(dbname=db))
    load = Load(px, 8, dbname=db)  # pools are made on first use: metrics after the first client
    try:
        assert px.metrics().get("pgmedic_pool_size", database=db) == 2
        assert sample_max(lambda: pg.server_backends(db), 1.5) == 2
        px.write_config(pool_size=5)
        px.signal(signal.SIGHUP)
        wait_until(lambda: px.metrics().get("pgmedic_pool_size", database=db) == 5, timeout=5,
                   message="pgmedic_pool_size 5 after SIGHUP")
        wait_until(lambda: pg.server_backends(db) == 5, timeout=10,
                   message="5 server connections under load after SIGHUP")
        assert sample_max(lambda: pg.server_backends(db), 1.0) == 5
    finally:
        load.stop()
    assert px.alive()


def test_sighup_reloads_auth_file(pg, pgmedic):
    af = pgmedic.write_auth_file({"alice": "alice-pw"})
    px = pgmedic(auth_type="scram-sha-256", auth_file=af, use_config=True,
                 databases={"pgmedic_test": f"host=127.0.0.1 port={pg.port} dbname=pgmedic_test user=postgres"},
                 upstream="")
    px.connect(user="alice", password="alice-pw").close()
    with pytest.raises(psycopg2.OperationalError):
        px.connect(user="dave", password="dave-pw")
    pgmedic.write_auth_file({"alice": "alice-pw-2", "dave": "dave-pw"})
    px.signal(signal.SIGHUP)

    def dave_gets_in():
        try:
            px.connect(user="dave", password="dave-pw").close()
            return True
        except psycopg2.OperationalError:
            return False

    wait_until(dave_gets_in, timeout=5, interval=0.2, message="dave admitted after SIGHUP")
    with pytest.raises(psycopg2.OperationalError):
        px.connect(user="alice", password="alice-pw")  # old password no longer valid
    px.connect(user="alice", password="alice-pw-2").close()


def test_sighup_with_broken_config_keeps_running(pg, pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=2, use_config=True)
    conn = px.connect()
    conn.autocommit = True
    px.config_path.write_text("[pgmedic]\npool_size = banana\nlisten_port = -3\nthis line is not ini\n")
    px.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert px.alive(), f"pgmedic died on a bad config reload:\n{px.stderr_text()}"
    with conn.cursor() as cur:
        cur.execute("SELECT 'still here'")
        assert cur.fetchone() == ("still here",)
    assert px.connect() is not None
    assert px.metrics().get("pgmedic_pool_size") == 2


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("pool_mode", MODES)
def test_sigterm_lets_open_transaction_finish(pg, pgmedic, pool_mode, table_name):
    t = table_name
    pg.sql(f"CREATE TABLE {t} (id int)")
    try:
        px = pgmedic(pool_mode=pool_mode, pool_size=2, use_config=True, settings={"shutdown_timeout": 20})
        conn = px.connect()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} VALUES (1)")  # open transaction, uncommitted
        px.signal(signal.SIGTERM)
        time.sleep(0.3)
        # New clients are no longer served...
        with pytest.raises(psycopg2.OperationalError):
            px.connect(connect_timeout=3)
        # ...but the open transaction is.
        assert px.alive(), f"pgmedic exited with a transaction open:\n{px.stderr_text()}"
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} VALUES (2)")
        conn.commit()
        t_commit = time.monotonic()
        assert pg.sql(f"SELECT array_agg(id ORDER BY id) FROM {t}")[0][0] == [1, 2]
        rc = px.wait_exit(10)
        assert rc == 0, f"exit code {rc}\n{px.stderr_text()}"
        assert time.monotonic() - t_commit < 5, "pgmedic waited long after the last transaction ended"
    finally:
        pg.sql(f"DROP TABLE IF EXISTS {t}")


@pytest.mark.parametrize("pool_mode", MODES)
def test_sigterm_with_idle_clients_exits_promptly(pgmedic, pool_mode):
    px = pgmedic(pool_mode=pool_mode, pool_size=2, use_config=True, settings={"shutdown_timeout": 20})
    idle = px.connect()
    idle.autocommit = True
    with idle.cursor() as cur:
        cur.execute("SELECT 1")
    t0 = time.monotonic()
    px.signal(signal.SIGTERM)
    assert px.wait_exit(5) == 0
    assert time.monotonic() - t0 < 5


@pytest.mark.timeout_s(60)
def test_sigterm_bounded_by_shutdown_timeout(pg, pgmedic, table_name):
    t = table_name
    pg.sql(f"CREATE TABLE {t} (id int)")
    try:
        px = pgmedic(pool_mode="transaction", pool_size=2, use_config=True, settings={"shutdown_timeout": 2})
        conn = px.connect()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} VALUES (1)")  # and never commits
        t0 = time.monotonic()
        px.signal(signal.SIGTERM)
        px.wait_exit(10)
        elapsed = time.monotonic() - t0
        assert 1.5 < elapsed < 6, f"exited {elapsed:.1f}s after SIGTERM with shutdown_timeout=2"
        with pytest.raises(psycopg2.Error):
            with conn.cursor() as cur:
                cur.execute("COMMIT")
        wait_until(lambda: pg.sql(f"SELECT count(*) FROM {t}")[0][0] == 0 and
                   pg.sql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%'")[0][0] == 0,
                   timeout=5, message="the abandoned transaction rolled back")
    finally:
        pg.sql(f"DROP TABLE IF EXISTS {t}")


@pytest.mark.parametrize("pool_mode", MODES)
def test_sigint_exits_at_once(pg, pgmedic, pool_mode, table_name):
    t = table_name
    pg.sql(f"CREATE TABLE {t} (id int)")
    try:
        px = pgmedic(pool_mode=pool_mode, pool_size=2, use_config=True, settings={"shutdown_timeout": 30})
        conn = px.connect()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} VALUES (1)")
        t0 = time.monotonic()
        px.signal(signal.SIGINT)
        px.wait_exit(3)
        assert time.monotonic() - t0 < 2, "SIGINT did not stop pgmedic at once"
        with pytest.raises(psycopg2.Error):
            with conn.cursor() as cur:
                cur.execute("COMMIT")
        wait_until(lambda: pg.sql(f"SELECT count(*) FROM {t}")[0][0] == 0, timeout=5,
                   message="uncommitted row absent")
        with pytest.raises(psycopg2.OperationalError):
            px.connect(connect_timeout=2)
    finally:
        pg.sql(f"DROP TABLE IF EXISTS {t}")
