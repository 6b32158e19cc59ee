"""pgbench through pgmedic: select-only and TPC-B in both pool modes and both
query protocols, new-connection-per-transaction, and initialization through the
proxy.  Every run must report zero failed transactions, and the database must
show exactly the work pgbench says it did."""
import os
import re
import subprocess

import pytest

from conftest import PG_BIN

PGBENCH = str(PG_BIN / "pgbench")
BENCH_DB = "pgmedic_bench"
CLIENTS, JOBS, SECONDS, POOL_SIZE = 8, 2, 3, 4


def run_pgbench(port, dbname, *args, timeout=120):
    cmd = [PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", *args, dbname]
    env = dict(os.environ, PGCONNECT_TIMEOUT="10")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} did not finish in {timeout}s\n"
                             f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}")
    out = f"$ {' '.join(cmd)}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.returncode == 0, f"pgbench exited with {r.returncode}\n{out}"
    return r.stdout, out


def parse_run(stdout, out):
    m = re.search(r"number of transactions actually processed: (\d+)", stdout)
    assert m, f"no processed count in pgbench output\n{out}"
    f = re.search(r"number of failed transactions: (\d+)", stdout)
    assert f, f"no failed-transactions line in pgbench output\n{out}"
    return int(m.group(1)), int(f.group(1))


@pytest.fixture(scope="module")
def bench_db(pg):
    pg.ensure_db(BENCH_DB)
    run_pgbench(pg.port, BENCH_DB, "-i", "-s", "1", "-q")
    return BENCH_DB


def balances(pg):
    return pg.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts),"
                  " (SELECT sum(tbalance) FROM pgbench_tellers),"
                  " (SELECT sum(bbalance) FROM pgbench_branches)", dbname=BENCH_DB)[0]


def check_tpcb_run(pg, px, protocol, jobs=JOBS):
    pg.sql("TRUNCATE pgbench_history", dbname=BENCH_DB)
    before = balances(pg)
    stdout, out = run_pgbench(px.port, BENCH_DB, "-n", "-M", protocol, "-c", str(CLIENTS),
                              "-j", str(jobs), "-T", str(SECONDS))
    processed, failed = parse_run(stdout, out)
    assert failed == 0, out
    assert processed > 0, out
    count, delta = pg.sql("SELECT count(*), coalesce(sum(delta), 0) FROM pgbench_history",
                          dbname=BENCH_DB)[0]
    # Every committed TPC-B transaction inserts exactly one history row...
    assert count == processed, f"history has {count} rows, pgbench processed {processed}\n{out}"
    # ...and adds its delta to one account, one teller and one branch.
    after = balances(pg)
    assert [a - b for a, b in zip(after, before)] == [delta, delta, delta], (before, after, delta)
    m = px.metrics()
    assert m.get("pgmedic_transactions_total") >= processed
    return processed


@pytest.mark.timeout_s(90)
@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_tpcb(pg, pgmedic, bench_db, pool_mode, protocol):
    px = pgmedic(pool_mode=pool_mode, pool_size=POOL_SIZE, upstream=pg.url(dbname=bench_db))
    check_tpcb_run(pg, px, protocol)
    # pgmedic never opened more server connections than the pool allows.
    assert px.metrics().get("pgmedic_servers", default=0) <= POOL_SIZE


@pytest.mark.timeout_s(90)
@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_tpcb_prepared(pg, pgmedic, bench_db, pool_mode):
    """-M prepared: named statements prepared once per client connection.  In
    transaction mode this needs pgmedic's prepared-statement handling, since a
    client's next transaction may land on another server connection.

    One thread per client: pgbench prepares with the blocking PQprepare(), so a
    thread whose client waits for a server would stall its other clients, which
    may be the ones holding the servers (a deadlock in pgbench, not in the proxy)."""
    px = pgmedic(pool_mode=pool_mode, pool_size=POOL_SIZE, upstream=pg.url(dbname=bench_db))
    check_tpcb_run(pg, px, "prepared", jobs=CLIENTS)


@pytest.mark.timeout_s(90)
@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_select_only(pg, pgmedic, bench_db, pool_mode, protocol):
    px = pgmedic(pool_mode=pool_mode, pool_size=POOL_SIZE, upstream=pg.url(dbname=bench_db))
    stdout, out = run_pgbench(px.port, BENCH_DB, "-n", "-S", "-M", protocol, "-c", str(CLIENTS),
                              "-j", str(JOBS), "-T", str(SECONDS))
    processed, failed = parse_run(stdout, out)
    assert failed == 0, out
    assert processed > 0, out
    m = px.metrics()
    # Each select-only transaction is one SELECT.
    assert m.get("pgmedic_queries_total") >= processed
    assert m.get("pgmedic_bytes_received_total") > 0
    assert m.get("pgmedic_bytes_sent_total") > 0


@pytest.mark.timeout_s(90)
@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_select_only_new_connection_per_transaction(pg, pgmedic, bench_db, pool_mode):
    px = pgmedic(pool_mode=pool_mode, pool_size=POOL_SIZE, upstream=pg.url(dbname=bench_db))
    clients, per_client = 4, 25
    stdout, out = run_pgbench(px.port, BENCH_DB, "-n", "-S", "-C", "-c", str(clients), "-j", "2",
                              "-t", str(per_client))
    processed, failed = parse_run(stdout, out)
    assert failed == 0, out
    assert processed == clients * per_client, out
    m = px.metrics()
    assert m.get("pgmedic_client_connections_total") >= clients * per_client
    # Every client has gone; the pool kept at most POOL_SIZE server connections.
    assert pg.server_backends(BENCH_DB) <= POOL_SIZE


@pytest.mark.timeout_s(120)
@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_initialize_through_proxy(pg, pgmedic, pool_mode):
    """pgbench -i: DROP/CREATE, COPY of 100k rows, VACUUM, primary keys."""
    db = pg.ensure_db(f"pgmedic_bench_init_{pool_mode}")
    px = pgmedic(pool_mode=pool_mode, pool_size=2, upstream=pg.url(dbname=db))
    run_pgbench(px.port, db, "-i", "-s", "1", "-q", timeout=100)
    counts = pg.sql("SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_tellers),"
                    " (SELECT count(*) FROM pgbench_branches), (SELECT count(*) FROM pgbench_history),"
                    " (SELECT count(DISTINCT aid) FROM pgbench_accounts)", dbname=db)[0]
    assert counts == (100000, 10, 1, 0, 100000)
    pkeys = pg.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid::regclass::text"
                   " LIKE 'pgbench_%%'", dbname=db)[0][0]
    assert pkeys == 3
