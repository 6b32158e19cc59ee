"""GET /metrics: Prometheus text whose numbers follow what clients did."""
import threading
import time
import urllib.request

import pytest

import pgwire
from conftest import DB, wait_until

POOL_METRICS = ["pgmedic_clients", "pgmedic_servers", "pgmedic_pool_size", "pgmedic_transactions_total",
                "pgmedic_queries_total", "pgmedic_bytes_received_total", "pgmedic_bytes_sent_total",
                "pgmedic_wait_seconds_total", "pgmedic_server_errors_total"]


def test_metrics_endpoint_format(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=3)
    px.connect().close()
    with urllib.request.urlopen(f"http://127.0.0.1:{px.http_port}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers.get("Content-Type", "").startswith("text/plain")
        text = r.read().decode()
    m = px.metrics()  # parses every line or fails
    assert m.get("pgmedic_up") == 1
    for name in POOL_METRICS:
        series = m.series(name)
        assert series, f"{name} missing from /metrics:\n{text}"
        assert any(ls.get("database") == DB and ls.get("user") == "postgres" for ls, _ in series), (name, series)
        for labels, _ in series:
            assert "database" in labels and "user" in labels, (name, labels)
    pool = {"database": DB, "user": "postgres"}
    states = {ls["state"] for ls, _ in m.series("pgmedic_clients") if ls.items() >= pool.items()}
    assert states >= {"active", "waiting", "idle"}, states
    states = {ls["state"] for ls, _ in m.series("pgmedic_servers") if ls.items() >= pool.items()}
    assert states >= {"active", "idle", "login", "used"}, states
    assert m.get("pgmedic_pool_size", database=DB, user="postgres") == 3
    assert "# TYPE pgmedic_queries_total counter" in text


def test_metrics_follow_traffic(pgmedic):
    px = pgmedic(pool_mode="transaction", pool_size=1)
    before = px.metrics()
    conns = [px.connect() for _ in range(3)]
    n = 20
    for conn in conns:
        conn.autocommit = True
        with conn.cursor() as cur:
            for i in range(n):
                cur.execute("SELECT %s, repeat('x', 1000)", (i,))
                cur.fetchall()
    m = px.metrics()
    assert m.get("pgmedic_client_connections_total") - before.get("pgmedic_client_connections_total") >= 3
    assert m.get("pgmedic_clients") == 3
    assert m.get("pgmedic_queries_total") - before.get("pgmedic_queries_total", default=0) >= 3 * n
    assert m.get("pgmedic_transactions_total") - before.get("pgmedic_transactions_total", default=0) >= 3 * n
    assert m.get("pgmedic_bytes_sent_total") - before.get("pgmedic_bytes_sent_total", default=0) >= 3 * n * 1000
    assert m.get("pgmedic_bytes_received_total") - before.get("pgmedic_bytes_received_total", default=0) >= 3 * n * 20
    assert m.get("pgmedic_servers") <= 1

    # One client holds the only server inside a transaction; another has to wait.
    holder, waiter = conns[0], conns[1]
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("SELECT 1")
    wait_until(lambda: px.metrics().get("pgmedic_servers", state="active") == 1, timeout=5,
               message="one active server while a transaction is open")
    wait0 = px.metrics().get("pgmedic_wait_seconds_total")
    done = threading.Event()

    def wait_for_server():
        with waiter.cursor() as cur:
            cur.execute("SELECT 2")
        done.set()

    t = threading.Thread(target=wait_for_server, daemon=True)
    t.start()
    wait_until(lambda: px.metrics().get("pgmedic_clients", state="waiting") == 1, timeout=5,
               message="pgmedic_clients{state=waiting} == 1")
    time.sleep(0.5)
    holder.commit()
    assert done.wait(10)
    t.join(5)
    m = px.metrics()
    assert m.get("pgmedic_clients", state="waiting") == 0
    assert m.get("pgmedic_wait_seconds_total") - wait0 >= 0.4


def test_server_errors_counted(pgmedic):
    """ErrorResponses from PostgreSQL to clients are counted per pool."""
    px = pgmedic(pool_mode="transaction", pool_size=1)
    before = px.metrics().get("pgmedic_server_errors_total", default=0)
    with px.raw() as c:
        c.startup("postgres", DB)
        for _ in range(3):
            with pytest.raises(pgwire.ServerError) as e:
                c.simple_query("SELECT 1/0")
            assert e.value.sqlstate == "22012"
        assert c.simple_query("SELECT 1")[0] == [["1"]]
    wait_until(lambda: px.metrics().get("pgmedic_server_errors_total") - before >= 3, timeout=5,
               message="pgmedic_server_errors_total up by 3")
