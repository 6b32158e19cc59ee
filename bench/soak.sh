#!/bin/bash
# soak.sh — `make soak`: pgmedic under a long pgbench run, for errors and memory growth.
#
# One private PostgreSQL 15 (scripts/pgtmp.sh), pgbench -i once (directly), one pgmedic in
# front of it (transaction mode, pool POOL_SIZE), and one pgbench run of SOAK_MINUTES minutes
# with CLIENTS clients through it, mixing read-only and read-write transactions
# (-b select-only@5 -b tpcb-like@1: about 5 in 6 transactions are a SELECT by primary key,
# 1 in 6 a five-statement TPC-B transaction). PostgreSQL's max_connections is the pool plus
# a little, so pgmedic cannot exceed its pool without errors.
# pgmedic's VmRSS (/proc/PID/status) is sampled every 10 s from the start of pgbench into
# build/bench/soak-rss.tsv, with pgmedic's own client and server counts (/metrics).
# Pass criteria: zero failed transactions (and no aborted client, pgmedic alive), and
# RSS growth below MAX_GROWTH_PCT % between the sample at the baseline time (minute 2 of a
# 10-minute run; min(120 s, a third of the run) in general) and the last sample of the run.
# Output: stdout and build/bench/soak.md; logs in build/bench/soak/.
# Exit status: 0 if both criteria hold, 1 otherwise.
#
# Environment: SOAK_MINUTES (10), SOAK_BASELINE (seconds, see above), MAX_GROWTH_PCT (5),
# CLIENTS (200), JOBS (4), POOL_SIZE (20), SCALE (10), PGMEDIC_WORKERS (unset: pgmedic's
# default; N: --set workers=N), PGMEDIC_BIN (build/pgmedic),
# PGBIN (PostgreSQL 15 binaries).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
PROG=soak           # lib.sh: the prefix of messages
PGMEDIC_BIN=${PGMEDIC_BIN:-$ROOT/build/pgmedic}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
PY=/usr/bin/python3
SOAK_MINUTES=${SOAK_MINUTES:-10}
MAX_GROWTH_PCT=${MAX_GROWTH_PCT:-5}
CLIENTS=${CLIENTS:-200}
JOBS=${JOBS:-4}
POOL_SIZE=${POOL_SIZE:-20}
SCALE=${SCALE:-10}
PGMEDIC_WORKERS=${PGMEDIC_WORKERS:-}
SAMPLE_EVERY=10
DB=bench
OUT=$ROOT/build/bench
LOGDIR=$OUT/soak
REPORT=$OUT/soak.md
RSS_TSV=$OUT/soak-rss.tsv
STOP_TIMEOUT=15     # lib.sh: stop_pid's seconds before SIGKILL
EXIT_NOTE="Logs: $LOGDIR"

for v in SOAK_MINUTES MAX_GROWTH_PCT CLIENTS JOBS POOL_SIZE SCALE; do
    case ${!v} in ''|*[!0-9]*|0) die "$v must be a positive integer (got '${!v}')" ;; esac
done
DURATION=$((SOAK_MINUTES * 60))
if [ -z "${SOAK_BASELINE:-}" ]; then
    SOAK_BASELINE=$((DURATION / 3 / SAMPLE_EVERY * SAMPLE_EVERY))
    [ "$SOAK_BASELINE" -le 120 ] || SOAK_BASELINE=120
fi
case $SOAK_BASELINE in ''|*[!0-9]*) die "SOAK_BASELINE must be a number of seconds (got '$SOAK_BASELINE')" ;; esac
[ "$SOAK_BASELINE" -lt $((DURATION - 3)) ] || die "SOAK_BASELINE ($SOAK_BASELINE s) must end before the last sample ($((DURATION - 3)) s)"
[ -x "$PGMEDIC_BIN" ]   || die "pgmedic binary not found at $PGMEDIC_BIN (run 'make' or set PGMEDIC_BIN)"
[ -x "$PGBIN/pgbench" ] || die "pgbench not found in $PGBIN (install postgresql-15)"
[ -x "$PY" ]            || die "$PY is required"

ulimit -Sn "$(ulimit -Hn)"      # CLIENTS sockets in pgbench, twice that through pgmedic

TMP=$(mktemp -d /tmp/pgmedic-soak.XXXXXX)
chmod 755 "$TMP"            # the postgres user must reach $TMP/pg
rm -rf "$LOGDIR" "$REPORT" "$RSS_TSV"
mkdir -p "$LOGDIR"
PG_STARTED=0
PGMEDIC_PID=""
PGBENCH_PID=""

# shellcheck disable=SC2317  # called from cleanup (lib.sh), the EXIT trap
cleanup_processes() {
    if [ -n "$PGBENCH_PID" ]; then stop_pid "$PGBENCH_PID" pgbench; fi
    if [ -n "$PGMEDIC_PID" ]; then stop_pid "$PGMEDIC_PID" pgmedic; fi
}
install_traps

sample() {      # sample LABEL: one line of soak-rss.tsv; fails if pgmedic is gone
    local rss counts
    rss=$(awk '/^VmRSS:/ { print $2; found = 1 } END { exit !found }' "/proc/$PGMEDIC_PID/status" 2>/dev/null) \
        || return 1
    counts=$(metrics_counts 5)
    printf '%s\t%s\t%s\t%s\n' "$1" "$rss" "${counts% *}" "${counts#* }" >>"$RSS_TSV"
}

# --- servers --------------------------------------------------------------------------
PORTS=$(free_ports 2)
# shellcheck disable=SC2086  # split the ports on purpose
set -- $PORTS
MPORT=$1 HPORT=$2

# The pool, plus room for pgbench -i, psql and anything pgmedic opens on the side.
PG_MAX_CONN=$((POOL_SIZE + 20))
start_postgres "$PG_MAX_CONN"
psql_direct -c "CREATE DATABASE $DB" postgres
pgbench_init

PGMEDIC_SHA=$(sha256sum "$PGMEDIC_BIN" | cut -c1-12)
PGMEDIC_VER="$(ver "$PGMEDIC_BIN") (binary sha256 $PGMEDIC_SHA...)"
say "pgmedic on 127.0.0.1:$MPORT (transaction pooling, pool $POOL_SIZE, metrics on :$HPORT): $PGMEDIC_VER"
"$PGMEDIC_BIN" --listen "127.0.0.1:$MPORT" --upstream "postgresql://postgres@127.0.0.1:$PGPORT/$DB" \
    --pool-mode transaction --pool-size "$POOL_SIZE" --http "127.0.0.1:$HPORT" \
    ${PGMEDIC_WORKERS:+--set "workers=$PGMEDIC_WORKERS"} >"$LOGDIR/pgmedic.log" 2>&1 &
PGMEDIC_PID=$!
wait_listening "$MPORT" "$PGMEDIC_PID" pgmedic

# --- the soak ---------------------------------------------------------------------------
START_DATE=$(date '+%Y-%m-%d %H:%M %Z')
PGBENCH_ARGS=(-n -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -P "$SAMPLE_EVERY" -b select-only@5 -b tpcb-like@1)
say "pgbench ${PGBENCH_ARGS[*]} through pgmedic ($SOAK_MINUTES min); VmRSS every $SAMPLE_EVERY s into build/bench/soak-rss.tsv"
printf 't_s\tvmrss_kib\tpgmedic_clients\tpgmedic_servers\n' >"$RSS_TSV"
sample 0 || die "pgmedic is not running"
"$PGBIN/pgbench" -h 127.0.0.1 -p "$MPORT" -U postgres "${PGBENCH_ARGS[@]}" "$DB" >"$LOGDIR/pgbench.log" 2>&1 &
PGBENCH_PID=$!
T0=${EPOCHREALTIME/./}      # µs
DEAD=0
i=1
t=0
# Samples at 10 s, 20 s, ... and a last one 3 s before the end of the run, while pgbench's
# clients are all still at work (a sample, with its /metrics request, takes a moment on a busy
# machine).
LAST=$((DURATION - 3))
while [ "$t" -lt "$LAST" ] && kill -0 "$PGBENCH_PID" 2>/dev/null; do
    t=$((i * SAMPLE_EVERY))
    [ "$t" -lt "$LAST" ] || t=$LAST
    while kill -0 "$PGBENCH_PID" 2>/dev/null && [ $(( ${EPOCHREALTIME/./} - T0 )) -lt $((t * 1000000)) ]; do
        sleep 0.2
    done
    kill -0 "$PGBENCH_PID" 2>/dev/null || break
    if ! sample "$t"; then
        DEAD=1
        warn "pgmedic died after about $t s; see $LOGDIR/pgmedic.log"
        break
    fi
    if [ $((t % 60)) = 0 ] || [ "$t" = "$LAST" ]; then
        printf '   %3d s  pgmedic VmRSS %s KiB  %s\n' "$t" "$(tail -n 1 "$RSS_TSV" | cut -f2)" \
            "$(grep '^progress:' "$LOGDIR/pgbench.log" | tail -n 1)"
    fi
    i=$((i + 1))
done
PGBENCH_ST=0
if [ "$DEAD" = 1 ]; then stop_pid "$PGBENCH_PID" pgbench || true; PGBENCH_ST=dead; else wait "$PGBENCH_PID" || PGBENCH_ST=$?; fi
PGBENCH_PID=""
sleep 1
sample after || DEAD=1

# --- end --------------------------------------------------------------------------------
PGMEDIC_EXIT=died
if [ "$DEAD" = 0 ]; then
    save_metrics "$LOGDIR/pgmedic-metrics.txt" || warn "could not fetch pgmedic /metrics (ignored)"
    st=0
    stop_pid "$PGMEDIC_PID" pgmedic || st=$?
    PGMEDIC_EXIT=$st
fi
PGMEDIC_PID=""
LOG_WARNINGS=$(grep -c -E '\[(WARNING|ERROR)\]' "$LOGDIR/pgmedic.log" || true)
LOG_WARN_SAMPLE=$(grep -m 3 -E '\[(WARNING|ERROR)\]' "$LOGDIR/pgmedic.log" | paste -sd '|' - || true)
[ "$(pgmedic_sha)" = "$PGMEDIC_SHA" ] \
    || warn "note: $PGMEDIC_BIN was rebuilt during the run; the results are for the binary started (sha256 $PGMEDIC_SHA...)"
cpu_model=$(cpu_model)

echo
rc=0
PYTHONIOENCODING=utf-8 "$PY" - "$LOGDIR/pgbench.log" "$RSS_TSV" "$REPORT" "$SOAK_BASELINE" "$MAX_GROWTH_PCT" \
    "$PGBENCH_ST" "$PGMEDIC_EXIT" "$LOG_WARNINGS" "$LOG_WARN_SAMPLE" "$PGMEDIC_VER" "$(ver "$PGBIN/postgres")" \
    "$(nproc) CPU(s), ${cpu_model:-$(uname -m)}" "$START_DATE" "$SOAK_MINUTES" "$CLIENTS" "$JOBS" "$POOL_SIZE" \
    "$SCALE" "$PG_MAX_CONN" "${PGBENCH_ARGS[*]}" "$LAST" "$LOGDIR/pgmedic-metrics.txt" <<'EOF' || rc=$?
import re, sys

(log, tsv, report, baseline, max_growth, pgbench_st, pgmedic_exit, warnings, warn_sample, ver, pgver,
 machine, date, minutes, clients, jobs, pool, scale, pgmax, pgbench_args, last, metrics_file) = sys.argv[1:]
baseline, max_growth, last = int(baseline), float(max_growth), int(last)
text = open(log, errors="replace").read()

def grab(pattern, conv=int):
    m = re.search(pattern, text, re.M)
    return conv(m.group(1)) if m else None

processed = grab(r"^number of transactions actually processed: (\d+)")
failed = grab(r"^number of failed transactions: (\d+)")
tps = grab(r"^tps = ([0-9.]+)", float)
lat = grab(r"^latency average = ([0-9.]+) ms", float)
aborted = len(re.findall(r"^pgbench: error: client \d+ .*aborted", text, re.M))
errors_in_log = len(re.findall(r"^pgbench: error:", text, re.M))
scripts = re.findall(r"^SQL script \d+: <builtin: ([^>]+)>\n(?: - .*\n)*? - (\d+) transactions", text, re.M)
progress = [(float(t), float(v), int(f or 0)) for t, v, f in
            re.findall(r"^progress: ([0-9.]+) s, ([0-9.]+) tps, .*?(?:, (\d+) failed)?$", text, re.M)]

# problems: failed transactions, aborted clients, a pgbench that did not finish cleanly
errors = (failed or 0) + aborted
if pgbench_st != "0" and errors == 0:
    errors = max(errors_in_log, 1)
if processed is None and errors == 0:
    errors = 1

samples = []
for line in open(tsv).read().splitlines()[1:]:
    t, rss, ncl, nsv = line.split("\t")
    samples.append((t, int(rss), ncl, nsv))
during = [(int(t), rss) for t, rss, _, _ in samples if t.isdigit()]
base = next(((t, r) for t, r in during if t >= baseline), None)
end = during[-1] if during else None
after = next((r for t, r, _, _ in samples if t == "after"), None)
# growth only over a complete run: from the baseline sample to the one planned for the end
growth = (end[1] - base[1]) * 100.0 / base[1] if base and end and end[0] >= last else None
peak = max((r for t, r in during if base and t >= base[0]), default=None)
servers = [int(s) for _, _, _, s in samples if s.isdigit()]

ok_errors = errors == 0 and pgmedic_exit in ("0", "143")
pgmedic_end = ("pgmedic died during the run" if pgmedic_exit == "died"
               else "pgmedic exit status on SIGTERM %s" % pgmedic_exit)
ok_growth = growth is not None and growth < max_growth
def num(n):
    return "{:,}".format(n) if n is not None else "n/a"

md = ["# Soak: pgmedic under %s min of pgbench" % minutes, ""]
md.append("%s; %s. Machine: %s; %s." % (ver, pgver or "PostgreSQL ?", machine, date))
md.append("pgbench %s (scale %s) through pgmedic in transaction mode, pool %s; PostgreSQL "
          "max_connections %s. pgmedic VmRSS sampled every 10 s (build/bench/soak-rss.tsv)."
          % (pgbench_args, scale, pool, pgmax))
md.append("")
md.append("- **Errors: %s** (failed transactions %s, aborted clients %d, pgbench exit status %s, "
          "%s) -- %s." % (
              errors, num(failed), aborted, pgbench_st, pgmedic_end, "PASS" if ok_errors else "FAIL"))
if growth is not None:
    md.append("- **RSS growth %.2f %%** between %d s (%s KiB) and the end, %d s (%s KiB); limit %g %% -- %s. "
              "Highest sample from %d s on: %s KiB; after pgbench finished: %s KiB." % (
                  growth, base[0], num(base[1]), end[0], num(end[1]), max_growth,
                  "PASS" if ok_growth else "FAIL", base[0], num(peak), num(after)))
    md[-1] = md[-1].replace("n/a KiB", "n/a")
else:
    md.append("- **RSS growth: n/a** (the samples do not cover %d s to %d s: %s) -- FAIL" % (
        baseline, last, "the run stopped after %d s" % end[0] if end else "no sample"))
md.append("- Transactions: %s processed, %s tps, latency average %s ms%s." % (
    num(processed), "%.0f" % tps if tps else "n/a", lat if lat else "n/a",
    " (" + ", ".join("%s: %s" % (n, num(int(c))) for n, c in scripts) + ")" if scripts else ""))
if progress:
    low = min(progress, key=lambda p: p[1])
    md.append("- Throughput per 10 s (pgbench -P): lowest %.0f tps (at %.0f s), highest %.0f tps." % (
        low[1], low[0], max(p[1] for p in progress)))
if servers:
    md.append("- pgmedic server connections (its /metrics): at most %d (pool %s)." % (max(servers), pool))
try:
    metrics = dict(re.findall(r"^(pgmedic_workers|pgmedic_server_moves_total) (\d+)$",
                              open(metrics_file).read(), re.M))
except OSError:
    metrics = {}
if "pgmedic_workers" in metrics:
    moves = int(metrics.get("pgmedic_server_moves_total", 0))
    md.append("- Event loops (workers): %s; server connections moved between them: %s%s." % (
        metrics["pgmedic_workers"], num(moves),
        " (one per %.1f transactions)" % (processed / moves) if moves and processed else ""))
md.append("- Warning/error lines in pgmedic's log: %s%s." % (warnings, " (%s)" % warn_sample if warn_sample else ""))
md.append("")
md.append("Result: **%s**" % ("PASS" if ok_errors and ok_growth else "FAIL"))
out = "\n".join(md) + "\n"
open(report, "w").write(out)
print(out, end="")
sys.exit(0 if ok_errors and ok_growth else 1)
EOF
say "report: build/bench/soak.md; RSS samples: build/bench/soak-rss.tsv; logs: build/bench/soak/"
exit "$rc"
