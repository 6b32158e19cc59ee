#!/bin/bash
# pooling.sh — `make bench`: pgbench throughput of direct PostgreSQL, PgBouncer and pgmedic
# (with its query profiler on, and again with it off), measured side by side in one run on
# the same machine, reported as medians and ratios.
#
# One private PostgreSQL 15 (scripts/pgtmp.sh), one PgBouncer and two pgmedics in front of
# it, all in transaction pooling mode with 20 server connections: `pgmedic` as it runs by
# default (profiling every query) and `pgmedic_noprof`, the same binary and flags plus
# `--set profile=off`, so that the profiler's cost is measured in the same run (the ratio
# "profiling on/off", target >= 0.97). pgbench -i once, then ROUNDS rounds; in each round
# every workload runs against every target, in an order that changes from round to round
# (a Williams design, order_index) so that none always runs first (warm caches) or last,
# or always right after another.  Ratios are medians of the rounds' ratios, with a 95 %
# confidence interval.
# In the first round each (workload, target) pair gets an uncounted WARMUP-second pgbench
# run first, so that connection pools are filled before anything is measured.
#
# Besides tps, for the poolers the script measures the pooler process's own CPU time
# (user + system, /proc/PID/stat fields 14 and 15) consumed during each run, divided by the
# transactions pgbench processed: µs of proxy CPU per transaction. On a small machine where
# pgbench, PostgreSQL and the proxy compete for cores, this is a steadier comparison than tps.
#
# Workloads (pgbench -c CLIENTS -j JOBS -T DURATION -n ...):
#   select_simple     -S -M simple       one-line SELECT by primary key, simple query protocol
#   select_extended   -S -M extended     same, extended protocol (Parse/Bind/Execute each time)
#   tpcb_simple       -M simple          TPC-B-like read-write transaction (BEGIN..END, 5 statements)
#   select_connect    -S -C -M simple    a new client connection for every transaction
#   select_prepared   -S -M prepared     named prepared statements, reused across transactions;
#                                        PgBouncer 1.18 in transaction mode cannot do this (expected FAIL)
#   select_tagged     -f tagged.sql      the -S query with the tag comment pgmedic_django adds
#                                        (controller, route, a new request_id every time), simple
#
# PGBOUNCER2_TARGET=1 adds the target `pgbouncer2`: two PgBouncer processes sharing one port
# (so_reuseport = 1), each with the same pool size, the way PgBouncer is scaled past one core.
# Its CPU is the two processes' sum. pgbouncer2/pgbouncer is what a second event loop is worth
# on this machine (docs/ARCHITECTURE.md, "one event loop").
#
# Output: a table on stdout, build/bench/pooling.md (markdown), build/bench/results.tsv
# (one line per run, with the proxy's CPU ticks), build/bench/raw/*.log (every pgbench
# output, warm-ups included), and the servers' logs.
# A run that fails is recorded and the benchmark goes on; the exit status is 1 if any run
# failed other than PgBouncer's -M prepared, or if a pooler (PgBouncer or either pgmedic) died.
#
# Environment: ROUNDS (5), DURATION (10 s per run), WARMUP (2 s; 0: none), CLIENTS (20),
# JOBS (2), SCALE (10), POOL_SIZE (20), WORKLOADS (space-separated subset of the names
# above), PROFILE_OFF_TARGET (1; 0: no pgmedic_noprof target), DIRECT_TARGET (1; 0: no
# direct target), PGBOUNCER2_TARGET (0; 1: the pgbouncer2 target), PGMEDIC_WORKERS (unset:
# pgmedic's default; N: every pgmedic target runs with --set workers=N), PGMEDIC_BIN (build/pgmedic),
# PGBOUNCER_BIN (/usr/sbin/pgbouncer), PGBIN (PostgreSQL 15 binaries).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
PROG=bench          # lib.sh: the prefix of messages
PGMEDIC_BIN=${PGMEDIC_BIN:-$ROOT/build/pgmedic}
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
PY=/usr/bin/python3
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-20}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
POOL_SIZE=${POOL_SIZE:-20}
ALL_WORKLOADS="select_simple select_extended tpcb_simple select_connect select_prepared select_tagged"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}
PROFILE_OFF_TARGET=${PROFILE_OFF_TARGET:-1}
DIRECT_TARGET=${DIRECT_TARGET:-1}
PGBOUNCER2_TARGET=${PGBOUNCER2_TARGET:-0}
PGMEDIC_WORKERS=${PGMEDIC_WORKERS:-}
# pgmedic_noprof: a second pgmedic, the same binary and flags plus --set profile=off.
TARGETS=()
[ "$DIRECT_TARGET" != 1 ] || TARGETS+=(direct)
TARGETS+=(pgbouncer pgmedic)
[ "$PGBOUNCER2_TARGET" != 1 ] || TARGETS+=(pgbouncer2)
PGMEDICS=(pgmedic)              # the pgmedic targets started: pgmedic [pgmedic_noprof]
if [ "$PROFILE_OFF_TARGET" = 1 ]; then TARGETS+=(pgmedic_noprof); PGMEDICS+=(pgmedic_noprof); fi
DB=bench
OUT=$ROOT/build/bench
LOGDIR=$OUT         # lib.sh: the servers' logs
STOP_TIMEOUT=10     # lib.sh: stop_pid's seconds before SIGKILL
EXIT_NOTE="Logs and raw output: $OUT"

workload_args() {
    case $1 in
        select_simple)   echo "-S -M simple" ;;
        select_extended) echo "-S -M extended" ;;
        tpcb_simple)     echo "-M simple" ;;
        select_connect)  echo "-S -C -M simple" ;;
        select_prepared) echo "-S -M prepared" ;;
        select_tagged)   echo "-f ${TMP:-}/tagged.sql -M simple" ;;
        *) return 1 ;;
    esac
}

for v in ROUNDS DURATION CLIENTS JOBS SCALE POOL_SIZE; do
    case ${!v} in ''|*[!0-9]*|0) die "$v must be a positive integer (got '${!v}')" ;; esac
done
case $WARMUP in ''|*[!0-9]*) die "WARMUP must be a number of seconds, 0 for none (got '$WARMUP')" ;; esac
case $PROFILE_OFF_TARGET in 0|1) ;; *) die "PROFILE_OFF_TARGET must be 0 or 1 (got '$PROFILE_OFF_TARGET')" ;; esac
case $DIRECT_TARGET in 0|1) ;; *) die "DIRECT_TARGET must be 0 or 1 (got '$DIRECT_TARGET')" ;; esac
case $PGBOUNCER2_TARGET in 0|1) ;; *) die "PGBOUNCER2_TARGET must be 0 or 1 (got '$PGBOUNCER2_TARGET')" ;; esac
for w in $WORKLOADS; do
    workload_args "$w" >/dev/null || die "unknown workload '$w' (known: $ALL_WORKLOADS)"
done
[ -x "$PGMEDIC_BIN" ]   || die "pgmedic binary not found at $PGMEDIC_BIN (run 'make' or set PGMEDIC_BIN)"
[ -x "$PGBOUNCER_BIN" ] || die "pgbouncer not found at $PGBOUNCER_BIN (apt-get install pgbouncer)"
[ -x "$PGBIN/pgbench" ] || die "pgbench not found in $PGBIN (install postgresql-15)"
[ -x "$PY" ]            || die "$PY is required"

TMP=$(mktemp -d /tmp/pgmedic-bench.XXXXXX)
chmod 755 "$TMP"            # the postgres user must reach $TMP/pg and $TMP/pgbouncer
rm -rf "$OUT"
mkdir -p "$OUT/raw"
# select_tagged: the -S query as pgmedic_django sends it (psycopg 2 inlines the numbers).
cat >"$TMP/tagged.sql" <<'EOF'
\set aid random(1, 100000 * :scale)
\set rid random(1, 1000000000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid /*controller='bench.views.account',request_id=':rid',route='%2Faccounts%2F'*/;
EOF
chmod 644 "$TMP/tagged.sql"
PG_STARTED=0
# Per pooler target (pgbouncer, pgbouncer2, pgmedic, pgmedic_noprof): the pids started by the
# script (two for pgbouncer2, space-separated), its listen port and, for the pgmedics, their
# /metrics port.
declare -A PROC_PID=() PORT=() HTTP_PORT=()
ALL_POOLERS="pgmedic_noprof pgmedic pgbouncer2 pgbouncer"

# shellcheck disable=SC2317  # called from cleanup (lib.sh), the EXIT trap
cleanup_processes() {
    local t pid
    for t in $ALL_POOLERS; do
        # stop_pid's name "pgbouncer" (pgbouncer2 without its 2) picks PgBouncer's SIGINT
        for pid in ${PROC_PID[$t]:-}; do stop_pid "$pid" "${t%2}"; done
    done
}
install_traps

# --- proxy CPU time -------------------------------------------------------------------
# /proc/PID/stat of a process (its thread group) holds its state (field 3), its utime and
# stime summed over all its threads, in clock ticks (fields 14 and 15), and its start time
# (field 22), which tells a process apart from a later one that reuses its pid. Field 2 is
# "(comm)" and may contain spaces, so the fields are counted from the last ") ".
CLK_TCK=$(getconf CLK_TCK)
proc_stat() {   # proc_stat PID: prints "CPU_TICKS STARTTIME"; fails unless PID is alive
    local stat f
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    read -r -a f <<<"${stat##*) }"        # f[0] is field 3, so field N is f[N-3]
    [ "${#f[@]}" -ge 20 ] || return 1
    case ${f[0]} in Z|X) return 1 ;; esac   # exited (zombie): not alive any more
    echo "$(( f[11] + f[12] )) ${f[19]}"
}

# proxy_pid PID BIN: the pid of the process running BIN, which is PID itself or, if PID is
# a wrapper that did not exec (a shell, runuser), its only child or grandchild. Fails if
# none is found, so that the CPU column is never taken from the wrong process.
proxy_pid() {
    local pid=$1 want exe kids _
    want=$(readlink -f "$2")
    for _ in 1 2 3; do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
        exe=${exe% (deleted)}               # the binary may be rebuilt while it runs
        if [ "$exe" = "$want" ]; then echo "$pid"; return 0; fi
        kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null) || return 1
        # shellcheck disable=SC2086  # one pid per word
        set -- $kids
        [ $# = 1 ] || return 1
        pid=$1
    done
    return 1
}

# CPU_PID[TARGET] and CPU_START[TARGET]: the pids whose CPU is measured for a pooler target
# and their start times (space-separated, in the same order), set by find_proxy; unset for
# direct, empty if not found.
declare -A CPU_PID=() CPU_START=()

# proxy_cpu TARGET: the proxy's CPU ticks so far, summed over its processes; empty if TARGET
# has no proxy process, or if one of them is gone or is no longer the one found at start-up.
proxy_cpu() {
    local pids=${CPU_PID[$1]:-} starts=${CPU_START[$1]:-} pid st sum=0 i=0
    [ -n "$pids" ] || return 0
    read -r -a starts <<<"$starts"
    for pid in $pids; do
        st=$(proc_stat "$pid") || return 0
        [ "${st#* }" = "${starts[$i]:-}" ] || return 0
        sum=$((sum + ${st%% *}))
        i=$((i + 1))
    done
    echo "$sum"
}

# find_proxy TARGET PID BIN: adds PID's process to TARGET's CPU pids (see proxy_cpu), or warns
# and clears them, so that a target's CPU is never taken from only some of its processes.
find_proxy() {
    local name=$1 pid st=""
    pid=$(proxy_pid "$2" "$3") && st=$(proc_stat "$pid") || pid=""
    if [ -z "$pid" ] || [ -z "$st" ]; then
        echo "bench: warning: no $name process running $3 found under pid $2; its CPU columns will be n/a" >&2
        CPU_PID[$name]="" CPU_START[$name]=""
        return 0
    elif [ "$pid" != "$2" ]; then
        echo "bench: $name runs as pid $pid (child of $2); measuring its CPU there" >&2
    fi
    if [ -n "${CPU_PID[$name]+set}" ] && [ -z "${CPU_PID[$name]}" ]; then return 0; fi  # one was not found
    CPU_PID[$name]="${CPU_PID[$name]:+${CPU_PID[$name]} }$pid"
    CPU_START[$name]="${CPU_START[$name]:+${CPU_START[$name]} }${st#* }"
}


# --- servers --------------------------------------------------------------------------
PORTS=$(free_ports 6)
# shellcheck disable=SC2086  # split the ports on purpose
set -- $PORTS
PORT[pgbouncer]=$1
PORT[pgmedic]=$2 HTTP_PORT[pgmedic]=$3
PORT[pgmedic_noprof]=$4 HTTP_PORT[pgmedic_noprof]=$5
PORT[pgbouncer2]=$6
BPORT=${PORT[pgbouncer]}

start_postgres 200
psql_direct -c "CREATE DATABASE $DB" postgres
pgbench_init

if [ "$PGBOUNCER2_TARGET" = 1 ]; then
    # Written first: pgbouncer_config always writes pgbouncer.ini.
    pgbouncer_config "${PORT[pgbouncer2]}" "$POOL_SIZE"
    mv "$TMP/pgbouncer/pgbouncer.ini" "$TMP/pgbouncer/pgbouncer2.ini"
    echo "so_reuseport = 1" >>"$TMP/pgbouncer/pgbouncer2.ini"     # [pgbouncer] is the last section
    say "pgbouncer2: two PgBouncer processes on 127.0.0.1:${PORT[pgbouncer2]} (so_reuseport," \
        "transaction pooling, pool $POOL_SIZE each)"
    for i in 1 2; do
        "${AS_POSTGRES[@]}" "$PGBOUNCER_BIN" "$TMP/pgbouncer/pgbouncer2.ini" >"$OUT/pgbouncer2-$i.log" 2>&1 &
        pid=$!
        PROC_PID[pgbouncer2]="${PROC_PID[pgbouncer2]:+${PROC_PID[pgbouncer2]} }$pid"
        # The second one cannot be told from the first by its port: wait until it listens too.
        if [ "$i" = 1 ]; then wait_listening "${PORT[pgbouncer2]}" "$pid" pgbouncer2
        else
            for _ in $(seq 50); do
                [ "$(ss -Hltn "sport = :${PORT[pgbouncer2]}" | wc -l)" -ge 2 ] && break
                kill -0 "$pid" 2>/dev/null || die "the second pgbouncer2 process exited (see $OUT/pgbouncer2-2.log)"
                sleep 0.1
            done
            [ "$(ss -Hltn "sport = :${PORT[pgbouncer2]}" | wc -l)" -ge 2 ] ||
                die "the second pgbouncer2 process is not listening after 5 s (see $OUT/pgbouncer2-2.log)"
        fi
        find_proxy pgbouncer2 "$pid" "$PGBOUNCER_BIN"
    done
fi
say "PgBouncer $("$PGBOUNCER_BIN" --version 2>/dev/null | head -n 1 | awk '{print $2}') on 127.0.0.1:$BPORT (transaction pooling, pool $POOL_SIZE)"
pgbouncer_config "$BPORT" "$POOL_SIZE"
"${AS_POSTGRES[@]}" "$PGBOUNCER_BIN" "$TMP/pgbouncer/pgbouncer.ini" >"$OUT/pgbouncer.log" 2>&1 &
PROC_PID[pgbouncer]=$!
wait_listening "$BPORT" "${PROC_PID[pgbouncer]}" pgbouncer
find_proxy pgbouncer "${PROC_PID[pgbouncer]}" "$PGBOUNCER_BIN"

# build/pgmedic may be rebuilt while the benchmark runs (the running process is not affected):
# take its version and a hash of the file now, from the binary that is started.
PGMEDIC_SHA=$(pgmedic_sha)
pgmedic_ver=$(ver "$PGMEDIC_BIN")
[ -n "$pgmedic_ver" ] || pgmedic_ver="version $(cat "$ROOT/VERSION" 2>/dev/null || echo '?')"
pgmedic_ver="$pgmedic_ver (binary sha256 $PGMEDIC_SHA...)"
# start_pgmedic TARGET [ARGS...]: pgmedic on TARGET's ports, logging to $OUT/TARGET.log, with
# the flags every pgmedic target shares plus ARGS.
start_pgmedic() {
    local name=$1
    shift
    [ -z "$PGMEDIC_WORKERS" ] || set -- --set "workers=$PGMEDIC_WORKERS" "$@"
    say "$name on 127.0.0.1:${PORT[$name]} (transaction pooling, pool $POOL_SIZE, metrics on" \
        ":${HTTP_PORT[$name]}${*:+, $*}): $pgmedic_ver"
    "$PGMEDIC_BIN" --listen "127.0.0.1:${PORT[$name]}" --upstream "postgresql://postgres@127.0.0.1:$PGPORT/$DB" \
        --pool-mode transaction --pool-size "$POOL_SIZE" --http "127.0.0.1:${HTTP_PORT[$name]}" "$@" \
        >"$OUT/$name.log" 2>&1 &
    PROC_PID[$name]=$!
    wait_listening "${PORT[$name]}" "${PROC_PID[$name]}" "$name"
    find_proxy "$name" "${PROC_PID[$name]}" "$PGMEDIC_BIN"
}
start_pgmedic pgmedic
[ "$PROFILE_OFF_TARGET" != 1 ] || start_pgmedic pgmedic_noprof --set profile=off

target_port() {
    case $1 in
        direct) echo "$PGPORT" ;;
        *) echo "${PORT[$1]}" ;;
    esac
}
target_pid() {   # the pids started for a pooler target; empty for direct, and once stopped
    echo "${PROC_PID[$1]:-}"
}
target_alive() {   # whether every process of a pooler target runs (true for direct)
    local pid
    for pid in $(target_pid "$1"); do kill -0 "$pid" 2>/dev/null || return 1; done
}

# --- runs -----------------------------------------------------------------------------
# The order of the targets in a round: a Williams design.  Over n rounds (2n for an odd
# number of targets) each target runs once in each position and right after each other
# target once, so neither a position in the round nor a neighbour favours one target.
# Row 1 is 0, 1, n-1, 2, n-2, ...; each next row adds 1 (mod n); for odd n the second
# block of n rows runs reversed.
order_index() {   # round (1-based), position (0-based) -> index into TARGETS
    local round=$1 pos=$2 n=${#TARGETS[@]} j base
    (( ((round - 1) / n) % 2 == 1 && n % 2 == 1 )) && pos=$((n - 1 - pos))
    if (( pos == 0 )); then base=0
    else
        j=$(( (pos + 1) / 2 ))
        if (( pos % 2 == 1 )); then base=$j; else base=$((n - j)); fi
    fi
    echo $(( (base + round - 1) % n ))
}
START_DATE=$(date '+%Y-%m-%d %H:%M %Z')
# shellcheck disable=SC2086  # one workload name per word
nwl=$(printf '%s\n' $WORKLOADS | wc -l)
total=$((ROUNDS * nwl * ${#TARGETS[@]}))
nwarm=0
[ "$WARMUP" = 0 ] || nwarm=$((nwl * ${#TARGETS[@]}))
say "$total runs: $ROUNDS rounds x $nwl workloads x ${#TARGETS[@]} targets, ${DURATION} s each," \
    "$CLIENTS clients, $JOBS pgbench threads, plus $nwarm uncounted ${WARMUP} s warm-ups in round 1" \
    "(about $(( (total * (DURATION + 1) + nwarm * (WARMUP + 1)) / 60 + 1 )) min)"
printf 'round\tworkload\ttarget\tstatus\texit\tlog\tproxy_cpu_ticks\n' >"$OUT/results.tsv"
DEAD=""     # targets whose process died: their remaining runs are skipped
n=0
for round in $(seq "$ROUNDS"); do
    for w in $WORKLOADS; do
        for i in "${!TARGETS[@]}"; do
            t=${TARGETS[$(order_index "$round" "$i")]}
            n=$((n + 1))
            log="raw/r$round-$w-$t.log"
            st=0 cpu=""
            if ! target_alive "$t"; then
                case " $DEAD " in *" $t "*) ;; *) DEAD="$DEAD $t"; echo "bench: $t is no longer running (see $OUT/$t.log)" >&2 ;; esac
                echo "skipped: $t was not running any more (see build/bench/$t.log)" >"$OUT/$log"
                status=skipped st=0
            else
                if [ "$round" = 1 ] && [ "$WARMUP" != 0 ]; then
                    # Uncounted warm-up: fills the pool's server connections (and the caches)
                    # before the first measured run of this workload on this target.
                    wlog="raw/warmup-$w-$t.log" wst=0
                    # shellcheck disable=SC2046
                    timeout -k 5 $((WARMUP + 60)) "$PGBIN/pgbench" -h 127.0.0.1 -p "$(target_port "$t")" \
                        -U postgres -c "$CLIENTS" -j "$JOBS" -T "$WARMUP" -n $(workload_args "$w") "$DB" \
                        >"$OUT/$wlog" 2>&1 || wst=$?
                    [ "$wst" = 0 ] || echo "        warm-up of $w on $t failed (exit $wst, build/bench/$wlog); ignored"
                fi
                # Same starting point for every run: dirty buffers from earlier TPC-B runs flushed.
                psql_direct -c CHECKPOINT postgres
                # The proxy's CPU ticks right before and right after pgbench, while it is alive.
                cpu0=$(proxy_cpu "$t")
                # shellcheck disable=SC2046
                timeout -k 5 $((DURATION + 60)) "$PGBIN/pgbench" -h 127.0.0.1 -p "$(target_port "$t")" \
                    -U postgres -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -n $(workload_args "$w") "$DB" \
                    >"$OUT/$log" 2>&1 || st=$?
                cpu1=$(proxy_cpu "$t")
                if [ -n "$cpu0" ] && [ -n "$cpu1" ]; then cpu=$((cpu1 - cpu0)); fi
                case $st in
                    0) status=ok ;;
                    124|137) status=timeout ;;
                    *) status=fail ;;
                esac
            fi
            tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$OUT/$log" | head -n 1)
            xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$OUT/$log" | head -n 1)
            cpu_note=""
            if [ -n "$cpu" ] && [ -n "$xacts" ] && [ "$xacts" -gt 0 ]; then
                cpu_note=$(awk -v c="$cpu" -v hz="$CLK_TCK" -v x="$xacts" \
                    'BEGIN { printf "  proxy cpu %.1f us/xact (%d ticks / %d xacts)", c * 1e6 / hz / x, c, x }')
            fi
            printf '[%3d/%d] round %d  %-16s %-14s %s\n' "$n" "$total" "$round" "$w" "$t" \
                "$(case $status in
                     ok) echo "tps ${tps:-?}$cpu_note" ;;
                     skipped) echo "SKIPPED ($t is not running)" ;;
                     *) echo "${status^^} (exit $st, see build/bench/$log)" ;;
                   esac)"
            printf '%d\t%s\t%s\t%s\t%d\t%s\t%s\n' "$round" "$w" "$t" "$status" "$st" "$log" "$cpu" \
                >>"$OUT/results.tsv"
        done
    done
done

# pgmedic's own view of the benchmark, for the record (pgmedic-metrics.txt and, with profiling
# off, pgmedic_noprof-metrics.txt).
for t in "${PGMEDICS[@]}"; do
    "$PY" - "http://127.0.0.1:${HTTP_PORT[$t]}/metrics" "$OUT/$t-metrics.txt" <<'EOF' || echo "bench: could not fetch $t /metrics (ignored)" >&2
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        open(sys.argv[2], "wb").write(r.read())
except Exception as e:
    sys.exit("bench: %s: %s" % (sys.argv[1], e))
EOF
done
# The comparison means something only if profile=off took effect, and only there.
for t in "${PGMEDICS[@]}"; do
    [ -s "$OUT/$t-metrics.txt" ] || continue
    profiled=$(sed -n 's/^pgmedic_profile_statements_total \([0-9]*\).*/\1/p' "$OUT/$t-metrics.txt")
    case $t:${profiled:-?} in
        *:\?) ;;
        pgmedic_noprof:0|pgmedic:[1-9]*) ;;
        *) echo "bench: warning: $t reports pgmedic_profile_statements_total $profiled:" \
               "profiling is not $([ "$t" = pgmedic ] && echo on || echo off) there as expected" >&2 ;;
    esac
done

# --- report ---------------------------------------------------------------------------
say "results (median of $ROUNDS rounds; pgmedic/pgbouncer > 1: pgmedic faster;" \
    "${PGMEDICS[1]:+profiling on/off: pgmedic tps / pgmedic noprof tps, target >= 0.97; }cpu" \
    "pgbouncer/pgmedic > 1: pgmedic uses less CPU per transaction)"
echo
if [ "$(pgmedic_sha)" != "$PGMEDIC_SHA" ]; then
    echo "bench: note: $PGMEDIC_BIN was rebuilt during the benchmark; the results are for the" \
        "binary started at the beginning (sha256 $PGMEDIC_SHA...)" >&2
fi
cpu_model=$(cpu_model)
[ -n "$cpu_model" ] || cpu_model="$(uname -m) (model unknown)"
rc=0
PYTHONIOENCODING=utf-8 "$PY" - "$OUT" "$ROUNDS" "$DURATION" "$CLIENTS" "$JOBS" "$SCALE" "$POOL_SIZE" \
    "$(ver "$PGBIN/postgres")" "$(ver "$PGBOUNCER_BIN")" "$pgmedic_ver" "$(nproc)" \
    "$cpu_model" "$START_DATE" "$CLK_TCK" "$WARMUP" "${TARGETS[*]}" <<'EOF' || rc=$?
import math, os, re, statistics, sys

out, rounds, duration, clients, jobs, scale, pool = sys.argv[1:8]
pg_ver, pgb_ver, pgm_ver, ncpu, cpu_model, date, clk_tck, warmup = sys.argv[8:16]
clk_tck = int(clk_tck)
TARGETS = sys.argv[16].split()        # direct pgbouncer pgmedic [pgmedic_noprof]
PROXIES = [t for t in TARGETS if t != "direct"]
LAT_TARGETS = [t for t in ("direct", "pgbouncer", "pgmedic") if t in TARGETS]
DIRECT = "direct" in TARGETS
NOPROF = "pgmedic_noprof" in TARGETS
BOUNCER2 = "pgbouncer2" in TARGETS
NAME = {"direct": "direct", "pgbouncer": "pgbouncer", "pgmedic": "pgmedic",
        "pgmedic_noprof": "pgmedic noprof", "pgbouncer2": "pgbouncer x2"}
ORDER = ["select_simple", "select_extended", "tpcb_simple", "select_connect", "select_prepared", "select_tagged"]
LABEL = {
    "select_simple": "-S -M simple",
    "select_extended": "-S -M extended",
    "tpcb_simple": "TPC-B -M simple",
    "select_connect": "-S -C -M simple",
    "select_prepared": "-S -M prepared",
    "select_tagged": "-S + Django tags",
}
EXPECTED_FAIL = {("select_prepared", "pgbouncer"), ("select_prepared", "pgbouncer2")}

runs = {}   # (workload, target) -> list of dict(status, tps, lat, round)
with open(os.path.join(out, "results.tsv")) as f:
    next(f)
    for line in f:
        rnd, w, t, status, code, log, ticks = line.rstrip("\n").split("\t")
        r = {"round": int(rnd), "status": status, "code": int(code), "log": log}
        try:
            text = open(os.path.join(out, log), errors="replace").read()
        except OSError:
            text = ""
        m = re.search(r"^tps = ([0-9.]+)", text, re.M)
        r["tps"] = float(m.group(1)) if m else None
        m = re.search(r"^latency average = ([0-9.]+) ms", text, re.M)
        r["lat"] = float(m.group(1)) if m else None
        if r["status"] == "ok" and r["tps"] is None:
            r["status"] = "fail"     # finished without a result line: count it as a failure
        m = re.search(r"^number of transactions actually processed: ([0-9]+)", text, re.M)
        xacts = int(m.group(1)) if m else 0
        # The proxy's CPU (user + system) per transaction, in µs; None for direct, for failed
        # runs, and when the proxy's CPU could not be read.
        r["cpu"] = (int(ticks) * 1e6 / clk_tck / xacts
                    if r["status"] == "ok" and ticks != "" and xacts > 0 else None)
        m = re.search(r"ERROR:\s*(.*)", text) or re.search(r"(?:error|FATAL):\s*(.*)", text)
        r["error"] = m.group(1).strip()[:120] if m else ""
        runs.setdefault((w, t), []).append(r)

workloads = [w for w in ORDER if any((w, t) in runs for t in TARGETS)]

def med(w, t, key):
    vals = [r[key] for r in runs.get((w, t), []) if r["status"] == "ok" and r[key] is not None]
    return statistics.median(vals) if vals else None

def cell(w, t, key, fmt):
    rs = runs.get((w, t), [])
    v = med(w, t, key)
    if v is None:
        if not rs:
            return "-"
        return "n/a" if any(r["status"] == "ok" for r in rs) else "FAIL"
    s = fmt % v
    ok = sum(1 for r in rs if r["status"] == "ok" and r[key] is not None)
    return s if ok == len(rs) else "%s (%d/%d ok)" % (s, ok, len(rs))

def paired(w, a, b, key="tps"):
    """Per-round ratios a/b (both runs ok in that round), sorted."""
    out = []
    for ra in runs.get((w, a), []):
        rb = next((r for r in runs.get((w, b), []) if r["round"] == ra["round"]), None)
        if (rb and ra["status"] == "ok" and rb["status"] == "ok" and ra[key] is not None
                and rb[key]):
            out.append(ra[key] / rb[key])
    return sorted(out)

def median_ci(xs):
    """The median of xs and a distribution-free 95 % confidence interval for it: the
    order statistics x(k) and x(n+1-k) with P(Binomial(n, 1/2) < k) <= 2.5 %.
    (None, None) for the interval below 6 values, where no such k exists."""
    n = len(xs)
    if not n:
        return None, None, None
    k = 0
    while sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n <= 0.025:
        k += 1
    lo, hi = (xs[k - 1], xs[n - k]) if k >= 1 else (None, None)
    return statistics.median(xs), lo, hi

def ratio(w, a, b, key="tps"):
    # Runs of one round are minutes apart at most: the machine's drift over a long
    # benchmark cancels in a round's ratio, so the median of the rounds' ratios is
    # the estimate (the median of each target's tps would mix rounds).
    m, _, _ = median_ci(paired(w, a, b, key))
    return "%.2f" % m if m is not None else "-"

def ratio_ci(w, a, b, key="tps"):
    m, lo, hi = median_ci(paired(w, a, b, key))
    if m is None:
        return "-"
    return "%.3f [%.3f, %.3f]" % (m, lo, hi) if lo is not None else "%.3f (too few rounds for an interval)" % m

head = (["workload"] + ["%s tps" % NAME[t] for t in TARGETS]
        + ["pgmedic/pgbouncer"] + (["profiling on/off"] if NOPROF else []) + (["pgmedic/direct"] if DIRECT else [])
        + ["%s lat ms" % NAME[t] for t in LAT_TARGETS]
        + ["%s cpu µs/xact" % NAME[t] for t in PROXIES] + ["cpu pgbouncer/pgmedic"])
rows = []
for w in workloads:
    rows.append([LABEL[w]] + [cell(w, t, "tps", "%.0f") for t in TARGETS]
                + [ratio(w, "pgmedic", "pgbouncer")]
                + ([ratio(w, "pgmedic", "pgmedic_noprof")] if NOPROF else [])
                + ([ratio(w, "pgmedic", "direct")] if DIRECT else [])
                + [cell(w, t, "lat", "%.3f") for t in LAT_TARGETS]
                + [cell(w, t, "cpu", "%.1f") for t in PROXIES]
                + [ratio(w, "pgbouncer", "pgmedic", "cpu")])

machine = ("Machine: %s CPU(s), %s; %s; ROUNDS=%s DURATION=%s CLIENTS=%s POOL_SIZE=%s"
           % (ncpu, cpu_model, date, rounds, duration, clients, pool))

widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
def line(cells):
    return "  ".join(str(c).ljust(wd) if i == 0 else str(c).rjust(wd) for i, (c, wd) in enumerate(zip(cells, widths)))
print(machine)
print()
print(line(head))
print(line(["-" * wd for wd in widths]))
for r in rows:
    print(line(r))

# The paired ratios reported with their interval (a/b of key), on the console and in pooling.md.
pairs = [("pgmedic", "pgbouncer", "tps"), ("pgmedic", "pgbouncer", "cpu")]
if NOPROF:
    pairs += [("pgmedic", "pgmedic_noprof", "tps"), ("pgmedic", "pgmedic_noprof", "cpu")]
if BOUNCER2:
    pairs += [("pgbouncer2", "pgbouncer", "tps"), ("pgmedic", "pgbouncer2", "tps")]
def pair_name(a, b, key):
    return "%s %s/%s" % (key, NAME[a], NAME[b])

print()
print("paired ratios, median over rounds [95% confidence interval]:")
for w in workloads:
    cells = ["%s %s" % (pair_name(a, b, k), ratio_ci(w, a, b, k)) for a, b, k in pairs if k == "tps"]
    print("  %-18s %s" % (LABEL[w], "   ".join(cells)))

failures, unexpected = [], []
for (w, t), rs in sorted(runs.items()):
    for r in rs:
        if r["status"] != "ok":
            if r["status"] == "skipped":
                note = "%s %s round %d: SKIPPED (%s was not running)" % (LABEL[w], t, r["round"], t)
            else:
                note = "%s %s round %d: %s (exit %d)%s" % (LABEL[w], t, r["round"], r["status"].upper(),
                                                          r["code"], ": " + r["error"] if r["error"] else "")
            failures.append(note)
            if (w, t) not in EXPECTED_FAIL:
                unexpected.append(note)
if failures:
    print()
    print("failed runs (raw output in build/bench/raw/):")
    for note in failures:
        print("  " + note)
if any((w, t) in EXPECTED_FAIL and any(r["status"] != "ok" for r in runs[(w, t)]) for (w, t) in runs):
    print("  (PgBouncer 1.18 does not support protocol-level prepared statements in transaction mode: expected)")

md = []
md.append("# Pooling benchmark: direct PostgreSQL vs PgBouncer vs pgmedic"
          + (" (profiling on and off)" if NOPROF else ""))
md.append("")
md.append("%s; %s; pgmedic: %s." % (pg_ver or "PostgreSQL ?", pgb_ver or "PgBouncer ?", pgm_ver or "?"))
md.append("pgbench -c %s -j %s -T %s, scale %s; %s in transaction mode with %s server "
          "connections. Medians of %s rounds, targets in a balanced order (Williams design)%s. "
          "pgmedic/pgbouncer and pgmedic/direct are the median over rounds of the ratio of the two "
          "targets' tps in the same round: > 1 means pgmedic is faster. "
          "*cpu µs/xact* is the pooler process's own CPU time (user + system, from /proc/PID/stat) "
          "during a run divided by the transactions pgbench processed in it (median over rounds); "
          "cpu pgbouncer/pgmedic > 1 means pgmedic spends less CPU per transaction."
          % (clients, jobs, duration, scale, "all poolers" if NOPROF else "both poolers", pool, rounds,
             ", after an uncounted %s s warm-up per workload and target" % warmup if warmup != "0" else ""))
if NOPROF:
    md.append("")
    md.append("*pgmedic* runs as it does by default, profiling every query; *pgmedic noprof* is a "
              "second pgmedic, the same binary with the same flags plus `--set profile=off`, on its "
              "own ports, measured in the same rounds. *profiling on/off* is the median over rounds of "
              "pgmedic's tps divided by pgmedic noprof's in the same round: what the profiler costs in throughput (1.00: nothing; "
              "0.97: 3 % fewer transactions per second). The target is >= 0.97 for `-S`, and "
              "pgmedic/pgbouncer (profiling on) >= 1.0. The two pgmedics' *cpu µs/xact* give the "
              "profiler's cost in CPU per transaction, which is steadier than tps on a small machine.")
md.append("")
md.append(machine + ".")
md.append("")
md.append("| " + " | ".join(head) + " |")
md.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
for r in rows:
    md.append("| " + " | ".join(str(c) for c in r) + " |")
md.append("")
md.append("Ratios with their uncertainty: the median over rounds of each round's ratio, and a "
          "distribution-free 95 % confidence interval for that median (order statistics; it "
          "needs 6 rounds or more). A target is shown when the whole interval clears it. "
          "*cpu* ratios are pgmedic's CPU per transaction over the other's: < 1 means pgmedic "
          "spends less.")
md.append("")
phead = ["workload"] + [pair_name(a, b, k) for a, b, k in pairs]
md.append("| " + " | ".join(phead) + " |")
md.append("|" + "|".join(["---"] + ["---:"] * (len(phead) - 1)) + "|")
for w in workloads:
    md.append("| " + " | ".join([LABEL[w]] + [ratio_ci(w, a, b, k) for a, b, k in pairs]) + " |")
md.append("")
md.append("All runs (tps, and the poolers' CPU µs per transaction):")
md.append("")
run_head = (["workload", "round"] + ["%s tps" % NAME[t] for t in TARGETS]
            + ["%s cpu µs/xact" % NAME[t] for t in PROXIES])
md.append("| " + " | ".join(run_head) + " |")
md.append("|" + "|".join(["---"] + ["---:"] * (len(run_head) - 1)) + "|")
for w in workloads:
    for rnd in range(1, int(rounds) + 1):
        cells = []
        for key, fmt, ts in (("tps", "%.0f", TARGETS), ("cpu", "%.1f", PROXIES)):
            for t in ts:
                r = next((r for r in runs.get((w, t), []) if r["round"] == rnd), None)
                if r is None:
                    cells.append("-")
                elif r["status"] != "ok":
                    cells.append(r["status"].upper())
                else:
                    cells.append("n/a" if r[key] is None else fmt % r[key])
        md.append("| %s | %d | %s |" % (LABEL[w], rnd, " | ".join(cells)))
if failures:
    md.append("")
    md.append("Failed runs:")
    md.append("")
    for note in failures:
        md.append("- " + note)
with open(os.path.join(out, "pooling.md"), "w") as f:
    f.write("\n".join(md) + "\n")

sys.exit(1 if unexpected else 0)
EOF

echo
if [ -n "$DEAD" ]; then
    echo "bench: died during the benchmark:$DEAD (see its log in build/bench/)" >&2
    rc=1
fi
for t in $ALL_POOLERS; do
    for pid in $(target_pid "$t"); do
        st=0
        stop_pid "$pid" "${t%2}" || st=$?
        case $st in
            0|130|143) ;;
            *) case " $DEAD " in *" $t "*) ;; *) echo "bench: $t exited with status $st on SIGTERM" >&2; rc=1 ;; esac ;;
        esac
    done
    PROC_PID[$t]=""
done
say "table: build/bench/pooling.md; per-run results: build/bench/results.tsv; raw pgbench output: build/bench/raw/"
[ "$rc" = 0 ] || echo "bench: some runs failed unexpectedly (see above)" >&2
exit "$rc"
