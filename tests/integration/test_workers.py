"""`workers = N`: N event loops ("shards") in one pgmedic process.

Clients are spread over the loops (each new one goes to the loop with the fewest);
pgmedic's made-up BackendKeyData pid carries the loop's index in its low byte, which
is how these tests see where a client landed.  What must not change with N:

- pool_size counts the server connections of the whole process, and a free server
  connection is reused by a client on another loop (the same backend, not a new one);
- a CancelRequest reaches the query whatever loop accepted it;
- the admin console and /metrics count every loop;
- reload and SIGTERM act on every loop; nothing is lost on the way out.
"""
import os
import signal
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

from conftest import DB, wait_until


def shard_of(conn):
    """The loop a client is on: the low byte of the pid pgmedic told it."""
    return conn.get_backend_pid() & 0xFF


def fetch1(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def spread(px, n):
    """n autocommit clients; with 2 workers they alternate between the loops."""
    conns = []
    for _ in range(n):
        c = px.connect()
        c.autocommit = True
        conns.append(c)
    return conns


def test_clients_are_spread_over_the_workers(pgmedic):
    px = pgmedic(settings={"workers": 2}, pool_size=4)
    conns = spread(px, 4)
    assert sorted(shard_of(c) for c in conns) == [0, 0, 1, 1]
    for i, c in enumerate(conns):
        assert fetch1(c, "SELECT %s::int + 1", (i,)) == (i + 1,)
    assert "2 workers" in px.stderr_text()


def test_pool_size_counts_every_worker_and_servers_move_between_them(pg, pgmedic):
    """pool_size = 1 with two loops: one backend serves clients on both, in turn."""
    px = pgmedic(settings={"workers": 2}, pool_size=1)
    a, b = spread(px, 2)
    assert {shard_of(a), shard_of(b)} == {0, 1}
    pids = set()
    for _ in range(5):
        pids.add(fetch1(a, "SELECT pg_backend_pid()")[0])
        pids.add(fetch1(b, "SELECT pg_backend_pid()")[0])
    assert len(pids) == 1, f"one server connection expected, clients saw backends {pids}"
    assert pg.server_backends(DB) <= 1

    # b waits while a holds the only server in a transaction, then gets it.
    a.autocommit = False
    assert fetch1(a, "SELECT pg_backend_pid()")[0] in pids
    got = {}

    def run():
        got["b"] = fetch1(b, "SELECT pg_backend_pid()")[0]
        got["at"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    assert t.is_alive(), "b ran while the only server connection was in a's transaction"
    committed = time.monotonic()
    a.commit()
    t.join(10)
    assert not t.is_alive(), "b never got the server connection a released"
    assert got["b"] in pids
    assert got["at"] - committed < 1.0
    assert pg.server_backends(DB) <= 1
    m = px.metrics()
    assert m.get("pgmedic_workers") == 2
    assert m.get("pgmedic_server_moves_total") >= 5  # b's turns came from a's loop, and back
    assert m.get("pgmedic_server_connects_total", database=DB) == 1


def test_cancel_reaches_a_query_on_another_worker(pg, pgmedic):
    px = pgmedic(settings={"workers": 2}, pool_size=4)
    conns = spread(px, 3)
    by_shard = {0: [], 1: []}
    for c in conns:
        by_shard[shard_of(c)].append(c)
    # Three clients over two loops: one loop has two.  The victim is on that one; the
    # cancel's own connection goes to the loop with fewer clients, the other one.
    busy = 0 if len(by_shard[0]) > len(by_shard[1]) else 1
    assert len(by_shard[busy]) == 2 and len(by_shard[1 - busy]) == 1, by_shard
    victim, c0 = by_shard[busy][0], by_shard[1 - busy][0]
    res = {}

    def run():
        try:
            res["v"] = fetch1(victim, "SELECT 'done' FROM pg_sleep(10)")
        except Exception as e:  # noqa: BLE001 - inspected below
            res["v"] = e

    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                              "AND query LIKE '%%pg_sleep(10)%%' AND pid <> pg_backend_pid()")[0][0] == 1,
               timeout=10, message="the sleep running on the server")
    t0 = time.monotonic()
    victim.cancel()
    t.join(10)
    assert not t.is_alive(), "the cancelled query did not return"
    assert isinstance(res["v"], psycopg2.errors.QueryCanceled), res["v"]
    assert time.monotonic() - t0 < 2.0
    assert "forwarding cancel request" in px.stderr_text()
    assert fetch1(c0, "SELECT 1") == (1,)


def test_admin_and_metrics_count_every_worker(pgmedic):
    px = pgmedic(settings={"workers": 2}, pool_size=4)
    conns = spread(px, 4)
    assert {shard_of(c) for c in conns} == {0, 1}
    for c in conns:
        for i in range(5):
            fetch1(c, "SELECT %s", (i,))
    adm = px.connect(dbname="pgbouncer")
    adm.autocommit = True
    with adm.cursor() as cur:
        cur.execute("SHOW POOLS")
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == DB]
        assert len(rows) == 1, rows  # one row per pair, not one per loop
        assert rows[0]["cl_active"] == 4
        assert rows[0]["sv_idle"] + rows[0]["sv_active"] + rows[0]["sv_used"] <= 4
        cur.execute("SHOW CLIENTS")
        cols = [d[0] for d in cur.description]
        assert sum(1 for r in cur.fetchall() if dict(zip(cols, r))["database"] == DB) == 4
        cur.execute("SHOW STATS")
        cols = [d[0] for d in cur.description]
        stats = [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == DB]
        assert int(stats[0]["total_query_count"]) >= 20
    m = px.metrics()
    assert m.get("pgmedic_queries_total", database=DB) >= 20
    assert m.get("pgmedic_clients", database=DB, state="idle") + \
        m.get("pgmedic_clients", database=DB, state="active") == 4
    assert m.get("pgmedic_client_connections_total") >= 5
    assert len([s for s in m.series("pgmedic_pool_size") if s[0].get("database") == DB]) == 1

    # PAUSE waits for servers on every loop; RESUME lets queued clients of both run.
    with adm.cursor() as cur:
        cur.execute("PAUSE")
    res = []

    def run(c):
        res.append(fetch1(c, "SELECT 7"))

    ts = [threading.Thread(target=run, args=(c,)) for c in conns[:2]]
    for t in ts:
        t.start()
    time.sleep(0.3)
    assert res == [], "a query ran while every pool was paused"
    with adm.cursor() as cur:
        cur.execute("RESUME")
    for t in ts:
        t.join(10)
    assert res == [(7,), (7,)]


def test_reload_and_sigterm_reach_every_worker(pg, pgmedic):
    px = pgmedic(settings={"workers": 2, "shutdown_timeout": 10}, pool_size=4, use_config=True)
    a, b = spread(px, 2)
    assert {shard_of(a), shard_of(b)} == {0, 1}
    px.write_config(pool_size=1)
    px.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded (pool_size 1)" in px.stderr_text(), timeout=5,
               message="the reload")
    for _ in range(3):
        assert fetch1(a, "SELECT 1") == (1,)
        assert fetch1(b, "SELECT 2") == (2,)
    wait_until(lambda: pg.server_backends(DB) <= 1, timeout=5, message="pool_size 1 over both loops")

    # Both clients in a transaction, one per loop; SIGTERM lets both finish.
    px.write_config(pool_size=2)
    px.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded (pool_size 2)" in px.stderr_text(), timeout=5,
               message="the second reload")
    a.autocommit = b.autocommit = False
    fetch1(a, "SELECT 1")
    fetch1(b, "SELECT 1")
    px.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert px.alive(), "pgmedic left before the open transactions ended"
    assert fetch1(a, "SELECT 'a'") == ("a",)
    a.commit()
    assert fetch1(b, "SELECT 'b'") == ("b",)
    b.commit()
    assert px.wait_exit(10) == 0
    assert "pgmedic stopped" in px.stderr_text()


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_workers_out_of_range_is_refused(pgmedic, pg, value):
    rc, err = pgmedic.run_expect_exit(["--upstream", pg.url(), "--set", f"workers={value}"])
    assert rc == 2
    assert f"workers: expected auto or a number of event loops from 1 to 64, got '{value}'" in err


def cgroup_quota_cpus():
    """The lowest cgroup v2 CPU quota (cpu.max, rounded up) over this process's cgroup
    and those above it, or None."""
    try:
        rel = next(l[3:].strip() for l in open("/proc/self/cgroup") if l.startswith("0::/"))
    except (OSError, StopIteration):
        return None
    best = None
    parts = [p for p in rel.split("/") if p]
    for i in range(len(parts), 0, -1):
        try:
            quota, period = open("/sys/fs/cgroup/" + "/".join(parts[:i]) + "/cpu.max").read().split()
        except (OSError, ValueError):
            continue
        if quota != "max" and int(period) > 0:
            n = -(-int(quota) // int(period))
            best = n if best is None else min(best, n)
    return best


def test_workers_auto_is_one_loop_per_cpu_at_most_four(pgmedic):
    """The default, `auto`: as many loops as CPUs pgmedic may run on (its affinity,
    here pinned to two CPUs when there are two, lowered to a cgroup CPU quota), at
    most 4. A reload that leaves it alone says nothing; one that asks for another
    number is told it takes a restart."""
    saved = os.sched_getaffinity(0)
    pick = set(sorted(saved)[:2])
    os.sched_setaffinity(0, pick)  # pgmedic inherits it
    try:
        px = pgmedic(settings={"workers": "auto"}, use_config=True)
    finally:
        os.sched_setaffinity(0, saved)
    quota = cgroup_quota_cpus()
    want = min(len(pick), quota or len(pick))
    assert px.metrics().get("pgmedic_workers") == want
    assert f"{want} worker{'s' if want > 1 else ''} (auto)" in px.stderr_text()
    conns = spread(px, 2 * want)
    assert sorted({shard_of(c) for c in conns}) == list(range(want))
    for c in conns:
        assert fetch1(c, "SELECT 1") == (1,)
    px.write_config(pool_size=3)  # workers stays auto
    px.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded (pool_size 3)" in px.stderr_text(), timeout=5,
               message="the first reload")
    assert "workers changes only on restart" not in px.stderr_text()
    px.write_config(workers=want + 1)
    px.signal(signal.SIGHUP)
    wait_until(lambda: f"workers changes only on restart (running {want}, the configuration asks for {want + 1})"
               in px.stderr_text(), timeout=5, message="the second reload's warning")
    assert px.metrics().get("pgmedic_workers") == want
    assert fetch1(conns[0], "SELECT 2") == (2,)
    for c in conns:
        c.close()
