"""The advisor: slow queries EXPLAINed on its own thread and connection, missing
indexes proven with HypoPG, nothing that writes ever EXPLAINed, and the proxy never
waiting for it."""
import json
import re
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import DB, PG_BIN

pytestmark = pytest.mark.timeout_s(120)


def findings_doc(px):
    with urllib.request.urlopen(f"http://127.0.0.1:{px.http_port}/api/findings", timeout=10) as r:
        return json.loads(r.read())


def wait_for(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.25)


@pytest.fixture(scope="module")
def big(pg):
    pg.sql("DROP TABLE IF EXISTS adv_big, adv_lock, adv_w")
    pg.sql("CREATE TABLE adv_big (id serial PRIMARY KEY, status text, created_at timestamptz, v int)")
    pg.sql("INSERT INTO adv_big (status, created_at, v) SELECT (ARRAY['new','paid','shipped'])[1 + g % 3],"
           " now() - g * interval '1 minute', g FROM generate_series(1, 200000) g")
    pg.sql("CREATE TABLE adv_lock (id int, v int)")
    pg.sql("INSERT INTO adv_lock SELECT g, g FROM generate_series(1, 1000) g")
    pg.sql("CREATE TABLE adv_w (id int PRIMARY KEY, v int)")
    pg.sql("INSERT INTO adv_w SELECT g, g FROM generate_series(1, 100) g")
    pg.sql("ANALYZE adv_big; ANALYZE adv_lock; ANALYZE adv_w")
    yield
    pg.sql("DROP TABLE IF EXISTS adv_big, adv_lock, adv_w")


SETTINGS = {"slow_query_ms": "1", "advisor_interval": "0.5", "hypopg": "create"}


def test_missing_index_found_and_verified(pgmedic, pg, big):
    indexes_before = pg.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'adv_big'")
    px = pgmedic(pool_mode="transaction", pool_size=2, settings=SETTINGS)
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for v in range(3):
        cur.execute("SELECT id, created_at FROM adv_big WHERE v = %s", (1000 + v,))
        assert len(cur.fetchall()) == 1
    conn.close()

    def missing():
        return [f for f in findings_doc(px)["findings"] if f["kind"] == "missing_index" and f["table"] == "adv_big"]

    found = wait_for(missing)
    assert len(found) == 1, findings_doc(px)
    f = found[0]
    assert f["columns"] == ["v"]
    assert f["verified"] is True
    assert f["cost_after"] <= f["cost_before"] / 2
    assert f["sql"].startswith("CREATE INDEX CONCURRENTLY") and "adv_big" in f["sql"] and "(v)" in f["sql"]
    assert "where v = $1" in f["query"]
    slow = [x for x in findings_doc(px)["findings"] if x["kind"] == "slow_query" and x["fingerprint"] == f["fingerprint"]]
    assert len(slow) == 1 and slow[0]["plan"]["costliest_node"]["relation"] == "adv_big"
    assert "Seq Scan" in slow[0]["plan"]["node_types"]
    # never a real index; no hypothetical one left behind
    assert pg.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'adv_big'") == indexes_before
    assert pg.sql("SELECT count(*) FROM hypopg_list_indexes")[0][0] == 0


def test_nothing_that_writes_is_explained(pgmedic, pg, big):
    px = pgmedic(pool_mode="transaction", pool_size=2, settings=SETTINGS)
    conn = px.connect()
    conn.autocommit = True
    cur = conn.cursor()
    for i in range(3):
        cur.execute("UPDATE adv_w SET v = v + 1 WHERE id = %s AND pg_sleep(0.01) IS NOT NULL", (i + 1,))
        cur.execute("SELECT id, v FROM adv_w WHERE v > %s AND pg_sleep(0.01) IS NOT NULL FOR UPDATE", (i,))
        cur.execute("WITH d AS (DELETE FROM adv_w WHERE id = -1 RETURNING id) SELECT count(*), pg_sleep(0.01) FROM d")
        cur.execute("SELECT pg_sleep(0.01), %s AS plain_select", (i,))
    conn.close()
    q = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{px.http_port}/api/queries?limit=0", timeout=5).read())
    by_text = {x["query"]: x["fingerprint"] for x in q["queries"]}
    plain = next(fp for text, fp in by_text.items() if "plain_select" in text)
    writes = [fp for text, fp in by_text.items() if "adv_w" in text or "delete" in text]
    assert len(writes) == 3, by_text
    assert wait_for(lambda: plain in findings_doc(px)["advisor"]["explained"]), findings_doc(px)
    time.sleep(1.5)  # a few more advisor rounds
    explained = findings_doc(px)["advisor"]["explained"]
    assert not set(writes) & set(explained), (writes, explained)


def test_advisor_never_blocks_the_proxy(pgmedic, pg, big, tmp_path):
    """The advisor's EXPLAIN waits on a lock for its whole statement_timeout while
    pgbench runs through the same pgmedic: pgbench's latency stays what it is
    without the advisor busy."""
    # every statement counts as slow here, so the locked table's query is EXPLAINed
    px = pgmedic(pool_mode="transaction", pool_size=4,
                 settings=dict(SETTINGS, advisor_interval="1", slow_query_ms="0"))
    script = tmp_path / "select1.sql"
    script.write_text("SELECT 1;\n")

    def bench():
        r = subprocess.run([str(PG_BIN / "pgbench"), "-h", "127.0.0.1", "-p", str(px.port), "-U", "postgres",
                            "-n", "-f", str(script), "-c", "4", "-j", "2", "-T", "3", DB],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"number of failed transactions: 0", r.stdout), r.stdout
        return float(re.search(r"latency average = ([0-9.]+) ms", r.stdout).group(1))

    baseline = bench()
    conn = px.connect()
    conn.autocommit = True
    conn.cursor().execute("SELECT id FROM adv_lock WHERE v = 5")
    conn.close()
    # An ACCESS EXCLUSIVE lock makes the advisor's EXPLAIN of that query wait.
    locker = pg.connect()
    try:
        lc = locker.cursor()
        lc.execute("BEGIN")
        lc.execute("LOCK TABLE adv_lock IN ACCESS EXCLUSIVE MODE")

        def advisor_waiting():
            rows = pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgmedic-advisor'"
                          " AND wait_event_type = 'Lock'")
            return rows[0][0] > 0

        assert wait_for(advisor_waiting, 10), "the advisor never tried to EXPLAIN the locked table's query"
        during = bench()
        still = advisor_waiting()
    finally:
        locker.rollback()
        locker.close()
    assert still, "the advisor stopped waiting before pgbench finished: the test proved nothing"
    ratio = during / baseline
    print(f"pgbench latency {baseline:.3f} ms without the advisor busy, {during:.3f} ms with it: ratio {ratio:.2f}")
    assert ratio < 1.5, (baseline, during)
