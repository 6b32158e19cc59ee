#!/bin/bash
# instructions.sh — `make bench-instructions`: the proxies' user-space instructions per
# pgbench transaction, counted by callgrind: PgBouncer, pgmedic (profiling on) and pgmedic
# with `--set profile=off`, side by side, with ratios.
#
# Why: on a 2-core machine tps moves by ±30 % from run to run when anything else runs, so a
# change of a few percent in the proxy's own cost cannot be seen in tps. The instruction
# count is exact and repeatable (±2 %: how many events libevent finds per epoll_wait varies).
# It leaves out the kernel, which is the same for all three here (each pooled -S
# transaction costs each proxy exactly two send and two recv calls; strace -c shows it),
# and it counts instructions, not time (cache misses are not in it). So it tells where the
# proxy's own code stands, and `make bench` / `make bench-profiling` tell the throughput.
#
# Each proxy runs under `valgrind --tool=callgrind` in front of a private PostgreSQL 15;
# per workload: pgbench -t 50 to warm up, counters zeroed, pgbench -c CLIENTS -t XACTS,
# counters dumped; Ir/xact = instructions in the dump / transactions.
#
# Workloads: select_simple (-S -M simple), select_extended (-S -M extended), rows_simple
# (a SELECT of 100 rows per transaction: the per-row cost), tagged_simple (the -S query
# with the tag comment pgmedic_django adds, a new request_id each time).
# pgmedic runs one event loop (`--workers 1`), as PgBouncer does: the count is per
# transaction, and a second loop would only add the loops' hand-offs to it.
# Environment: XACTS (2000 per client), CLIENTS (4), POOL_SIZE (4), WORKLOADS,
# PGMEDIC_BIN (build/pgmedic), PGBOUNCER_BIN (/usr/sbin/pgbouncer), PGBIN.
# Output: a table on stdout and build/bench-instructions/instructions.md; the callgrind
# dumps stay in build/bench-instructions/ (callgrind_annotate shows where the cost is).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
PROG=bench-instructions
PGMEDIC_BIN=${PGMEDIC_BIN:-$ROOT/build/pgmedic}
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
PY=/usr/bin/python3
XACTS=${XACTS:-2000}
CLIENTS=${CLIENTS:-4}
POOL_SIZE=${POOL_SIZE:-4}
WORKLOADS=${WORKLOADS:-select_simple select_extended rows_simple tagged_simple}
SCALE=1
DB=bench
OUT=$ROOT/build/bench-instructions
LOGDIR=$OUT
STOP_TIMEOUT=20
EXIT_NOTE="Logs: $OUT"
TARGETS=(pgbouncer pgmedic pgmedic_noprof)

command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
[ -x "$PGMEDIC_BIN" ] || die "pgmedic binary not found at $PGMEDIC_BIN (run 'make')"
[ -x "$PGBOUNCER_BIN" ] || die "pgbouncer not found at $PGBOUNCER_BIN (apt-get install pgbouncer)"

TMP=$(mktemp -d /tmp/pgmedic-instr.XXXXXX)
chmod 755 "$TMP"
rm -rf "$OUT"
mkdir -p "$OUT"
chmod 777 "$OUT"    # PgBouncer's callgrind (as postgres) writes its dumps here
PG_STARTED=0
VG_PID=""
VG_NAME=""
# shellcheck disable=SC2317  # called from cleanup (lib.sh), the EXIT trap
cleanup_processes() { stop_pid "$VG_PID" "$VG_NAME"; }
install_traps


workload_args() {
    case $1 in
        select_simple)   echo "-S -M simple" ;;
        select_extended) echo "-S -M extended" ;;
        rows_simple)     echo "-f $TMP/rows.sql -M simple" ;;
        tagged_simple)   echo "-f $TMP/tagged.sql -M simple" ;;
        *) return 1 ;;
    esac
}
workload_label() {
    case $1 in
        rows_simple) echo "100-row SELECT, -M simple" ;;
        tagged_simple) echo "-S with a Django tag comment, -M simple" ;;
        *) workload_args "$1" ;;
    esac
}
# rows_simple: 100 rows per transaction, so that the per-row cost shows.
cat >"$TMP/rows.sql" <<'EOF'
\set aid random(1, 100000 - 100)
SELECT aid, abalance FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 99;
EOF
# tagged_simple: the -S query as pgmedic_django sends it, its request_id new each time.
cat >"$TMP/tagged.sql" <<'EOF'
\set aid random(1, 100000)
\set rid random(1, 1000000000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid /*controller='bench.views.account',request_id=':rid',route='%2Faccounts%2F'*/;
EOF
chmod 644 "$TMP/rows.sql" "$TMP/tagged.sql"

start_postgres 50
psql_direct -c "CREATE DATABASE $DB" postgres
pgbench_init

PORT=$(free_ports 1)
pgbouncer_config "$PORT" "$POOL_SIZE"

pgb() { "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n "$@" "$DB"; }

# measure TARGET: starts it under callgrind, runs every workload, stops it.
declare -A IR=()
measure() {
    local t=$1 w args dumps n cg=(valgrind --tool=callgrind --callgrind-out-file="$OUT/$1.%p.out")
    local ctl=(callgrind_control)
    case $t in
        pgbouncer)
            "${AS_POSTGRES[@]}" "${cg[@]}" "$PGBOUNCER_BIN" "$TMP/pgbouncer/pgbouncer.ini" >"$OUT/$t.log" 2>&1 &
            ctl=("${AS_POSTGRES[@]}" callgrind_control) ;;
        pgmedic|pgmedic_noprof)
            local extra=()
            [ "$t" = pgmedic ] || extra=(--set profile=off)
            "${cg[@]}" "$PGMEDIC_BIN" --listen "127.0.0.1:$PORT" --upstream "postgresql://postgres@127.0.0.1:$PGPORT/$DB" \
                --pool-mode transaction --pool-size "$POOL_SIZE" --workers 1 --set advisor=off "${extra[@]}" >"$OUT/$t.log" 2>&1 & ;;
    esac
    VG_PID=$! VG_NAME=$t
    wait_listening "$PORT" "$VG_PID" "$t"
    for w in $WORKLOADS; do
        read -r -a args <<<"$(workload_args "$w")"
        pgb "${args[@]}" -c "$CLIENTS" -t 50 >/dev/null 2>&1 || die "$t: pgbench warm-up failed"
        "${ctl[@]}" -z "$VG_PID" >/dev/null 2>&1 || die "$t: callgrind_control -z failed"
        pgb "${args[@]}" -c "$CLIENTS" -t "$XACTS" >"$OUT/$t-$w.pgbench.log" 2>&1 \
            || { tail -n 5 "$OUT/$t-$w.pgbench.log" >&2; die "$t: pgbench $w failed"; }
        "${ctl[@]}" -d "$w" "$VG_PID" >/dev/null 2>&1 || die "$t: callgrind_control -d failed"
        # the newest dump of this process: its summary line is the instructions since -z
        dumps=$(ls -t "$OUT/$t.$VG_PID.out".* 2>/dev/null | head -n 1)
        [ -n "$dumps" ] || die "$t: no callgrind dump"
        n=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$dumps" | head -n 1)
        [ -n "$n" ] || die "$t: no summary in $dumps"
        IR[$t,$w]=$(( n / (CLIENTS * XACTS) ))
        say "$t $w: ${IR[$t,$w]} instructions per transaction"
    done
    stop_pid "$VG_PID" "$t" || true
    VG_PID=""
}

say "callgrind: $CLIENTS clients x $XACTS transactions per workload, pool $POOL_SIZE"
for t in "${TARGETS[@]}"; do measure "$t"; done

ratio() { "$PY" -c "import sys; print('%.2f' % (int(sys.argv[1]) / int(sys.argv[2])))" "$1" "$2"; }
{
    echo "| workload | PgBouncer Ir/xact | pgmedic Ir/xact | pgmedic profile=off Ir/xact | Ir pgmedic/PgBouncer | Ir profiling on/off |"
    echo "|---|---:|---:|---:|---:|---:|"
    for w in $WORKLOADS; do
        echo "| $(workload_label "$w") | ${IR[pgbouncer,$w]} | ${IR[pgmedic,$w]} | ${IR[pgmedic_noprof,$w]} |" \
            "$(ratio "${IR[pgmedic,$w]}" "${IR[pgbouncer,$w]}") | $(ratio "${IR[pgmedic,$w]}" "${IR[pgmedic_noprof,$w]}") |"
    done
} | tee "$OUT/instructions.md"
echo "(user-space instructions per transaction; lower is better. Dumps: $OUT/*.out.*)"
