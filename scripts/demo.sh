#!/bin/bash
# demo.sh — `make demo`: pgmedic pooling a private PostgreSQL under pgbench load, then a
# summary of what pgmedic saw (its /metrics) next to what pgbench measured.
#
# Steps: private PostgreSQL 15 (scripts/pgtmp.sh) -> build/pgmedic in front of it
# (transaction pooling, pool of 10, /metrics on) -> pgbench -i through pgmedic -> a mix of
# select-only and TPC-B-like transactions from 20 clients, first with the simple query
# protocol, then the extended one -> summary -> everything stopped, temp dirs removed.
# Exits non-zero if any step fails. Logs are kept in build/demo/.
#
# Environment: PGMEDIC_BIN (default build/pgmedic), DEMO_DURATION (seconds per run, 10),
# DEMO_CLIENTS (20), DEMO_POOL (10), DEMO_SCALE (5), DEMO_INIT (pgmedic, or direct to run
# pgbench -i straight against PostgreSQL), PGBIN (PostgreSQL 15 binaries).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
PGMEDIC_BIN=${PGMEDIC_BIN:-$ROOT/build/pgmedic}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
PY=/usr/bin/python3
DURATION=${DEMO_DURATION:-10}
CLIENTS=${DEMO_CLIENTS:-20}
POOL=${DEMO_POOL:-10}
SCALE=${DEMO_SCALE:-5}
INIT_VIA=${DEMO_INIT:-pgmedic}
DB=demo
LOGDIR=$ROOT/build/demo

say()  { printf '\n== %s\n' "$*"; }
info() { printf '   %s\n' "$*"; }
die()  { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

[ -x "$PGMEDIC_BIN" ] || die "pgmedic binary not found at $PGMEDIC_BIN (run 'make' first or set PGMEDIC_BIN)"
[ -x "$PGBIN/pgbench" ] || die "pgbench not found in $PGBIN (install postgresql-15)"
[ -x "$PY" ] || die "$PY is required (HTTP and the summary use only its standard library)"

TMP=$(mktemp -d /tmp/pgmedic-demo.XXXXXX)
chmod 755 "$TMP"            # the postgres user must reach $TMP/pg
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
PGMEDIC_PID=""
PG_STARTED=0

stop_pgmedic() {
    # Stop pgmedic with SIGTERM; prints its exit status. Falls back to SIGKILL after 10 s.
    local pid=$PGMEDIC_PID _ st=0
    PGMEDIC_PID=""
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "demo: pgmedic ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || st=$?
    return "$st"
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$PGMEDIC_PID" ]; then stop_pgmedic; fi
    if [ "$PG_STARTED" = 1 ]; then
        cp "$TMP/pg/postgres.log" "$LOGDIR/postgres.log" 2>/dev/null
        "$ROOT/scripts/pgtmp.sh" stop "$TMP/pg" 2>/dev/null
    fi
    rm -rf "$TMP"
    if [ "$rc" != 0 ]; then
        echo "demo: FAILED (exit $rc). Logs: $LOGDIR" >&2
        if [ -s "$LOGDIR/pgmedic.log" ]; then
            echo "--- last lines of $LOGDIR/pgmedic.log:" >&2
            tail -n 15 "$LOGDIR/pgmedic.log" >&2
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "demo: error: command failed at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

free_ports() {   # free_ports N: N distinct free TCP ports on 127.0.0.1, one per line
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks:
    print(s.getsockname()[1]); s.close()
EOF
}

wait_listening() {  # wait_listening PORT PID NAME: until PORT accepts TCP, or PID dies, or 15 s
    local port=$1 pid=$2 name=$3 _
    for _ in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            die "$name exited during startup (see $LOGDIR/$name.log)"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name is not listening on 127.0.0.1:$port after 15 s"
}

fetch_metrics() {   # fetch_metrics FILE
    "$PY" - "http://127.0.0.1:$HPORT/metrics" "$1" <<'EOF' || die "could not fetch pgmedic /metrics from 127.0.0.1:$HPORT"
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        body = r.read()
except Exception as e:      # HTTPError (non-2xx) included
    sys.exit("demo: %s: %s" % (sys.argv[1], e))
open(sys.argv[2], "wb").write(body)
EOF
}

pgbench_run() {     # pgbench_run NAME PORT ARGS...: pgbench, output in $LOGDIR/NAME.log
    local name=$1 port=$2 st=0
    shift 2
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres "$@" "$DB" >"$LOGDIR/$name.log" 2>&1 || st=$?
    if [ "$st" != 0 ]; then
        tail -n 20 "$LOGDIR/$name.log" >&2
        die "pgbench ($name) failed with exit status $st"
    fi
    kill -0 "$PGMEDIC_PID" 2>/dev/null || die "pgmedic is no longer running"
    local line
    for line in "$(grep -m1 -E '^latency average = ' "$LOGDIR/$name.log" || true)" \
                "$(grep -m1 -E '^tps = ' "$LOGDIR/$name.log" || true)"; do
        [ -z "$line" ] || info "$line"
    done
}

# ---------------------------------------------------------------------------------------
say "PostgreSQL 15 (private cluster)"
PORTS=$(free_ports 2)
# shellcheck disable=SC2086  # split the two ports on purpose
set -- $PORTS
MPORT=$1 HPORT=$2
PG_STARTED=1
PGPORT=$("$ROOT/scripts/pgtmp.sh" start "$TMP/pg")
info "listening on 127.0.0.1:$PGPORT"
"$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qAt -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE $DB" postgres >/dev/null || die "CREATE DATABASE $DB failed"

say "pgmedic"
UPSTREAM="postgresql://postgres@127.0.0.1:$PGPORT/$DB"
info "$PGMEDIC_BIN --listen 127.0.0.1:$MPORT --upstream $UPSTREAM"
info "    --pool-mode transaction --pool-size $POOL --http 127.0.0.1:$HPORT"
"$PGMEDIC_BIN" --listen "127.0.0.1:$MPORT" --upstream "$UPSTREAM" \
    --pool-mode transaction --pool-size "$POOL" --http "127.0.0.1:$HPORT" \
    >"$LOGDIR/pgmedic.log" 2>&1 &
PGMEDIC_PID=$!
wait_listening "$MPORT" "$PGMEDIC_PID" pgmedic
wait_listening "$HPORT" "$PGMEDIC_PID" pgmedic
info "proxy on 127.0.0.1:$MPORT, metrics on http://127.0.0.1:$HPORT/metrics (pid $PGMEDIC_PID)"

case $INIT_VIA in
    pgmedic) say "pgbench -i -s $SCALE through pgmedic (tables, COPY, vacuum, primary keys)"; port=$MPORT ;;
    direct)  say "pgbench -i -s $SCALE directly against PostgreSQL"; port=$PGPORT ;;
    *) die "DEMO_INIT must be 'pgmedic' or 'direct' (got '$INIT_VIA')" ;;
esac
t0=$(date +%s%N)
pgbench_run init "$port" -i -s "$SCALE"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
info "initialized $((SCALE * 100000)) accounts in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s"

MIX=(-b select-only@9 -b tpcb-like@1)
LOAD=(-c "$CLIENTS" -j 2 -T "$DURATION" -n "${MIX[@]}")
say "load: $CLIENTS clients, ${DURATION} s, 90% select-only / 10% TPC-B-like, simple protocol"
pgbench_run run-simple "$MPORT" "${LOAD[@]}" -M simple

say "load: $CLIENTS clients, ${DURATION} s, same mix, extended protocol"
# Take a /metrics snapshot in the middle of this run to show clients and servers under load.
(sleep "$(( (DURATION + 1) / 2 ))"; fetch_metrics "$LOGDIR/metrics-during-load.txt") &
SNAP_PID=$!
pgbench_run run-extended "$MPORT" "${LOAD[@]}" -M extended
wait "$SNAP_PID" || die "could not take the mid-load /metrics snapshot"

sleep 0.5   # let the last client disconnects settle in the counters
fetch_metrics "$LOGDIR/metrics.txt"

say "stopping pgmedic"
st=0
stop_pgmedic || st=$?
case $st in
    0|143) info "pgmedic exited cleanly (status $st)" ;;
    *) die "pgmedic exited with status $st on SIGTERM (see $LOGDIR/pgmedic.log)" ;;
esac

say "summary"
"$PY" - "$LOGDIR" "$DB" "$POOL" "$CLIENTS" <<'EOF'
import os, re, sys

logdir, db, pool_size, nclients = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

def parse(path):
    """Prometheus text -> list of (name, labels dict, float value)."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            m = LINE.match(line)
            if not m:
                continue
            try:
                v = float(m.group(3))
            except ValueError:
                continue
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), v))
    return out

def pools(samples):
    """{(database, user): {metric: {state or '': value}}} for pgmedic_* samples that name a
    pool; samples without a database (proxy-wide, or clients not logged in yet) go under
    the key None."""
    res = {}
    for name, labels, v in samples:
        if not name.startswith("pgmedic_"):
            continue
        key = (labels["database"], labels.get("user", "")) if labels.get("database") else None
        by = res.setdefault(key, {}).setdefault(name, {})
        st = labels.get("state") or labels.get("mode") or ""
        by[st] = by.get(st, 0.0) + v
    return res

def total(p, name):
    d = p.get(name)
    return None if d is None else sum(d.values())

def states(p, name):
    d = p.get(name)
    if d is None:
        return "-"
    tot = int(sum(d.values()))
    parts = ", ".join("%s %d" % (s, v) for s, v in sorted(d.items()) if s and v)
    return "%d (%s)" % (tot, parts) if parts else str(tot)

def human_bytes(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0

def num(n, fmt="%d"):
    return "-" if n is None else fmt % n

def pgbench(name):
    r = {}
    try:
        text = open(os.path.join(logdir, name + ".log")).read()
    except OSError:
        return r
    for key, pat in (("tps", r'^tps = ([0-9.]+)'), ("lat", r'^latency average = ([0-9.]+) ms'),
                     ("tx", r'^number of transactions actually processed: (\d+)'),
                     ("failed", r'^number of failed transactions: (\d+)')):
        m = re.search(pat, text, re.M)
        if m:
            r[key] = float(m.group(1))
    return r

final = pools(parse(os.path.join(logdir, "metrics.txt")))
during_path = os.path.join(logdir, "metrics-during-load.txt")
during = pools(parse(during_path)) if os.path.exists(during_path) else {}

def waits(p):
    secs, n = total(p, "pgmedic_wait_seconds_total"), total(p, "pgmedic_waits_total")
    if secs is None:
        return "-"
    s = "%.3f s in all" % secs
    if n:
        s += " over %d waits, %.3f ms on average" % (n, 1000.0 * secs / n)
    mx = total(p, "pgmedic_wait_max_seconds")
    if mx is not None:
        s += ", longest %.1f ms" % (1000.0 * mx)
    return s

def pretty(name):
    return name[len("pgmedic_"):].replace("_", " ")

problems = []
pool_keys = sorted(k for k in final if k is not None)
print("pgmedic /metrics, per pool (database/user):")
if not pool_keys:
    problems.append("/metrics shows no pool (no pgmedic_* sample with a database label)")
for key in pool_keys:
    p, d = final[key], during.get(key, {})
    size = total(p, "pgmedic_pool_size")
    size = int(size) if size is not None else pool_size
    mode = "/".join(s for s in p.get("pgmedic_pool_mode", {}) if s) or "?"
    print("  pool %s/%s (%s pooling, pool size %d)" % (key[0], key[1], mode, size))
    rows = [
        ("pgmedic_clients", "clients, mid-load", states(d, "pgmedic_clients") if d else "-"),
        ("pgmedic_servers", "server conns, mid-load", states(d, "pgmedic_servers") if d else "-"),
        (None, "clients at end", states(p, "pgmedic_clients")),
        (None, "server conns at end", states(p, "pgmedic_servers")),
        ("pgmedic_transactions_total", "transactions", num(total(p, "pgmedic_transactions_total"))),
        ("pgmedic_queries_total", "queries", num(total(p, "pgmedic_queries_total"))),
        ("pgmedic_bytes_received_total", "bytes from clients", human_bytes(total(p, "pgmedic_bytes_received_total"))),
        ("pgmedic_bytes_sent_total", "bytes to clients", human_bytes(total(p, "pgmedic_bytes_sent_total"))),
        ("pgmedic_wait_seconds_total", "clients waited", waits(p)),
        ("pgmedic_server_errors_total", "server errors", num(total(p, "pgmedic_server_errors_total"))),
    ]
    shown = {m for m, _, _ in rows} | {"pgmedic_pool_size", "pgmedic_pool_mode", "pgmedic_waits_total",
                                       "pgmedic_wait_max_seconds"}
    for name in sorted(p):           # whatever else pgmedic reports per pool
        if name not in shown:
            rows.append((name, pretty(name), states(p, name)))
    for _, label, value in rows:
        print("    %-28s %s" % (label, value))
    srv = total(d, "pgmedic_servers")
    if srv is not None and srv > size:
        print("    note: %d server connections for a pool of %d" % (srv, size))

glob = final.get(None, {})
skip = {"pgmedic_up", "pgmedic_info", "pgmedic_shutting_down"}
special = {"pgmedic_clients": "clients not yet in a pool", "pgmedic_servers": "servers not in a pool"}
names = [n for n in sorted(glob) if n not in skip]
if names:
    print("  proxy-wide")
    for name in names:
        print("    %-28s %s" % (special.get(name) or pretty(name), states(glob, name)))

print()
print("pgbench (through pgmedic, %d clients):" % nclients)
tx_sum = 0
for name, label in (("run-simple", "simple protocol"), ("run-extended", "extended protocol")):
    r = pgbench(name)
    if "tps" not in r:
        problems.append("no tps in %s.log" % name)
        continue
    tx_sum += int(r.get("tx", 0))
    print("  %-18s tps %10.1f   latency avg %7.3f ms   transactions %d   failed %d"
          % (label, r["tps"], r.get("lat", float("nan")), r.get("tx", 0), r.get("failed", 0)))

pool = final.get((db, "postgres")) or next((v for (d_, _), v in final.items() if d_ == db), None)
tx = total(pool, "pgmedic_transactions_total") if pool else None
if tx is None:
    problems.append("/metrics has no pgmedic_transactions_total for database %s" % db)
elif tx <= 0:
    problems.append("pgmedic counted no transactions for database %s" % db)
else:
    print()
    print("cross-check: pgbench ran %d transactions in the load runs; pgmedic counted %d in all"
          " (it also counts setup work such as pgbench -i)" % (tx_sum, tx))

if problems:
    for p in problems:
        print("demo: error: " + p, file=sys.stderr)
    sys.exit(1)
EOF

say "stopping PostgreSQL"
cp "$TMP/pg/postgres.log" "$LOGDIR/postgres.log" 2>/dev/null || true
PG_STARTED=0
"$ROOT/scripts/pgtmp.sh" stop "$TMP/pg"
say "demo OK (logs and /metrics snapshots in ${LOGDIR#"$ROOT"/})"
