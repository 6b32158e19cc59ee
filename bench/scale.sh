#!/bin/bash
# scale.sh — `make scale`: pgmedic holding thousands of idle client connections.
#
# One private PostgreSQL 15 (scripts/pgtmp.sh), pgbench -i once (directly), and one pgmedic
# in front of it (transaction mode, pool POOL_SIZE, --set max_client_conn=MAX_CLIENT_CONN).
# bench/idle_clients.py, a single Python process, then logs in IDLE_CLIENTS client
# connections through pgmedic (startup -> AuthenticationOk ... ReadyForQuery, at most
# BATCH logins in flight) and leaves them idle. The script reports:
#   - pgmedic's VmRSS (/proc/PID/status) with 0, RSS_AT and IDLE_CLIENTS idle clients, and
#     RSS per idle client = (RSS@RSS_AT - RSS@0) / RSS_AT, in KiB (target: <= 8 KiB);
#   - pgbench -S -c CLIENTS -j JOBS -T DURATION through pgmedic without and with the idle
#     clients, alternating (without, with, without, with, ... ROUNDS times), and the ratio
#     of latency (and tps) with / without;
#   - health: every idle client still open just before it is closed (and SELECT 1 on a
#     few of them), a query through pgmedic at the end, pgmedic's own client count
#     (/metrics), warnings in its log, its exit status on SIGTERM;
#   - the file-descriptor limits: pgmedic is started with a low soft limit
#     (PGMEDIC_SOFT_NOFILE, 1024 as on most systems) and must raise it itself; the line
#     it logs about it is quoted.
# Output: stdout and build/bench/scale.md; logs and raw pgbench output in build/bench/scale/.
# Exit status: 0 when every login, pgbench run and health check succeeded (the RSS target
# is reported, not enforced), 1 otherwise.
#
# Environment: IDLE_CLIENTS (10000), RSS_AT (5000, or IDLE_CLIENTS/2 if that is smaller),
# BATCH (200), ROUNDS (2), DURATION (10), CLIENTS (20), JOBS (2), SCALE (5), POOL_SIZE (20),
# MAX_CLIENT_CONN (12000), PGMEDIC_SOFT_NOFILE (1024; "inherit": the script's own limit),
# PGMEDIC_BIN (build/pgmedic), PGBIN (PostgreSQL 15 binaries).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
PROG=scale          # lib.sh: the prefix of messages
PGMEDIC_BIN=${PGMEDIC_BIN:-$ROOT/build/pgmedic}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
PY=/usr/bin/python3
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
if [ -z "${RSS_AT:-}" ]; then
    RSS_AT=5000
    case $IDLE_CLIENTS in ''|*[!0-9]*) ;; *) [ "$IDLE_CLIENTS" -ge 10000 ] || RSS_AT=$((IDLE_CLIENTS / 2)) ;; esac
fi
BATCH=${BATCH:-200}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-20}
JOBS=${JOBS:-2}
SCALE=${SCALE:-5}
POOL_SIZE=${POOL_SIZE:-20}
MAX_CLIENT_CONN=${MAX_CLIENT_CONN:-12000}
PGMEDIC_SOFT_NOFILE=${PGMEDIC_SOFT_NOFILE:-1024}
DB=bench
OUT=$ROOT/build/bench
LOGDIR=$OUT/scale
REPORT=$OUT/scale.md
HOLDER_TIMEOUT=900      # seconds to wait for one reply of idle_clients.py
STOP_TIMEOUT=15         # lib.sh: stop_pid's seconds before SIGKILL
EXIT_NOTE="Logs: $LOGDIR"

for v in IDLE_CLIENTS RSS_AT BATCH ROUNDS DURATION CLIENTS JOBS SCALE POOL_SIZE MAX_CLIENT_CONN; do
    case ${!v} in ''|*[!0-9]*|0) die "$v must be a positive integer (got '${!v}')" ;; esac
done
case $PGMEDIC_SOFT_NOFILE in inherit) ;; ''|*[!0-9]*|0) die "PGMEDIC_SOFT_NOFILE must be a number or 'inherit'" ;; esac
[ "$RSS_AT" -le "$IDLE_CLIENTS" ] || die "RSS_AT ($RSS_AT) must not exceed IDLE_CLIENTS ($IDLE_CLIENTS)"
[ "$MAX_CLIENT_CONN" -ge $((IDLE_CLIENTS + CLIENTS + 2)) ] \
    || die "MAX_CLIENT_CONN ($MAX_CLIENT_CONN) must leave room for IDLE_CLIENTS + CLIENTS + 2"
[ -x "$PGMEDIC_BIN" ]   || die "pgmedic binary not found at $PGMEDIC_BIN (run 'make' or set PGMEDIC_BIN)"
[ -x "$PGBIN/pgbench" ] || die "pgbench not found in $PGBIN (install postgresql-15)"
[ -x "$PY" ]            || die "$PY is required"

# --- file descriptors -----------------------------------------------------------------
# The script and its children (idle_clients.py holds IDLE_CLIENTS sockets) get the highest
# limit allowed: the soft limit up to the hard one, and, where the hard limit is below what
# the run needs, an attempt to raise it (works as root). pgmedic itself is started below with
# a low soft limit on purpose: raising it is pgmedic's job, and what it logs is reported.
FD_NEED=$((MAX_CLIENT_CONN + 4 * POOL_SIZE + 1000))
FD_NOTE=""
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$FD_NEED" ]; then
    if ulimit -Hn "$FD_NEED" 2>/dev/null; then
        FD_NOTE="hard limit raised from $hard to $FD_NEED by the script"
    else
        FD_NOTE="hard limit $hard is below $FD_NEED and could not be raised (not root?)"
        warn "$FD_NOTE: pgmedic should say that fewer than max_client_conn clients can connect"
    fi
fi
ulimit -Sn "$(ulimit -Hn)"
SCRIPT_NOFILE="$(ulimit -Sn) / $(ulimit -Hn)"

TMP=$(mktemp -d /tmp/pgmedic-scale.XXXXXX)
chmod 755 "$TMP"            # the postgres user must reach $TMP/pg
rm -rf "$LOGDIR" "$REPORT"
mkdir -p "$LOGDIR/raw"
PG_STARTED=0
PGMEDIC_PID=""
HOLDER_JOB=""

# shellcheck disable=SC2317  # called from cleanup (lib.sh), the EXIT trap
cleanup_processes() {
    if [ -n "$HOLDER_JOB" ]; then kill -TERM "$HOLDER_JOB" 2>/dev/null; wait "$HOLDER_JOB" 2>/dev/null; fi
    if [ -n "$PGMEDIC_PID" ]; then stop_pid "$PGMEDIC_PID" pgmedic; fi
}
install_traps

mem_kib() {     # "VMRSS VMDATA": pgmedic's resident memory and data segment size, in KiB
    awk '/^VmRSS:/ { rss = $2 } /^VmData:/ { data = $2 } END { if (rss == "") exit 1; print rss, data }' \
        "/proc/$PGMEDIC_PID/status" 2>/dev/null \
        || die "pgmedic (pid $PGMEDIC_PID) is not running any more; see $LOGDIR/pgmedic.log"
}

# --- idle_clients.py, as a coprocess ----------------------------------------------------
holder() {      # holder COMMAND...: send one command, set REPLY to its answer; fails on "error"
    REPLY=""
    if [ -z "$HOLDER_JOB" ] || ! kill -0 "$HOLDER_JOB" 2>/dev/null; then
        REPLY="error idle_clients.py is not running"
        return 1
    fi
    printf '%s\n' "$*" >&"$HOLDER_IN"
    if ! IFS= read -r -t "$HOLDER_TIMEOUT" REPLY <&"$HOLDER_OUT"; then
        REPLY="error no reply from idle_clients.py to '$*' within $HOLDER_TIMEOUT s"
        return 1
    fi
    [ "${REPLY%% *}" = ok ]
}

# --- servers --------------------------------------------------------------------------
PORTS=$(free_ports 2)
# shellcheck disable=SC2086  # split the ports on purpose
set -- $PORTS
MPORT=$1 HPORT=$2

# max_connections: the pool plus a little. Idle clients must not cost server connections;
# if pgmedic ever opened one per client, PostgreSQL would refuse it and the run would fail.
PG_MAX_CONN=$((POOL_SIZE + 30))
start_postgres "$PG_MAX_CONN"
psql_direct -c "CREATE DATABASE $DB" postgres
pgbench_init

PGMEDIC_SHA=$(sha256sum "$PGMEDIC_BIN" | cut -c1-12)
PGMEDIC_VER="$(ver "$PGMEDIC_BIN") (binary sha256 $PGMEDIC_SHA...)"
say "pgmedic on 127.0.0.1:$MPORT (transaction pooling, pool $POOL_SIZE, max_client_conn $MAX_CLIENT_CONN," \
    "soft fd limit at start: $PGMEDIC_SOFT_NOFILE): $PGMEDIC_VER"
(
    [ "$PGMEDIC_SOFT_NOFILE" = inherit ] || ulimit -Sn "$PGMEDIC_SOFT_NOFILE"
    exec "$PGMEDIC_BIN" --listen "127.0.0.1:$MPORT" --upstream "postgresql://postgres@127.0.0.1:$PGPORT/$DB" \
        --pool-mode transaction --pool-size "$POOL_SIZE" --set "max_client_conn=$MAX_CLIENT_CONN" \
        --http "127.0.0.1:$HPORT"
) >"$LOGDIR/pgmedic.log" 2>&1 &
PGMEDIC_PID=$!
wait_listening "$MPORT" "$PGMEDIC_PID" pgmedic
PGMEDIC_NOFILE=$(awk '/^Max open files/ { print $4 " / " $5 }' "/proc/$PGMEDIC_PID/limits")
PGMEDIC_FD_LOG=$(grep -m 2 -i 'open file limit' "$LOGDIR/pgmedic.log" | sed 's/^[[:space:]]*//' | paste -sd '|' - || true)
say "fd limits (soft / hard): script $SCRIPT_NOFILE; pgmedic now $PGMEDIC_NOFILE${FD_NOTE:+ ($FD_NOTE)}"
say "pgmedic log: ${PGMEDIC_FD_LOG:-(nothing about the open file limit)}"

coproc HOLDER { exec "$PY" "$ROOT/bench/idle_clients.py" 127.0.0.1 "$MPORT" "$DB" postgres \
    --window "$BATCH" --timeout 60 2>>"$LOGDIR/idle_clients.log"; }
# Copies of the coprocess's pid and descriptors: bash unsets HOLDER and HOLDER_PID when the
# coprocess exits.
# shellcheck disable=SC2153  # HOLDER_PID is set by coproc
HOLDER_JOB=$HOLDER_PID
exec {HOLDER_IN}>&"${HOLDER[1]}" {HOLDER_OUT}<&"${HOLDER[0]}"

# --- runs -----------------------------------------------------------------------------
START_DATE=$(date '+%Y-%m-%d %H:%M %Z')
FAILS=0
fail() { FAILS=$((FAILS + 1)); printf 'scale: FAILED: %s\n' "$*" | tee -a "$LOGDIR/failures.txt" >&2; }
printf 'round\tphase\tstatus\texit\ttps\tlat_ms\tidle_held\tlog\n' >"$LOGDIR/runs.tsv"
printf 'round\tidle_clients\trss_kib\tdata_kib\tpgmedic_clients\tpgmedic_servers\tlogin_s\n' >"$LOGDIR/rss.tsv"

pgbench_run() {  # pgbench_run ROUND PHASE HELD: one measured pgbench -S run through pgmedic
    local round=$1 phase=$2 held=$3 log st=0 status tps lat
    log="raw/r$round-$phase.log"
    timeout -k 5 $((DURATION + 120)) "$PGBIN/pgbench" -h 127.0.0.1 -p "$MPORT" -U postgres -n -S \
        -c "$CLIENTS" -j "$JOBS" -T "$DURATION" "$DB" >"$LOGDIR/$log" 2>&1 || st=$?
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$LOGDIR/$log" | head -n 1)
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$LOGDIR/$log" | head -n 1)
    if [ "$st" = 0 ] && [ -n "$tps" ] && [ -n "$lat" ]; then status=ok; else status=fail; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$phase" "$status" "$st" "$tps" "$lat" "$held" "$log" \
        >>"$LOGDIR/runs.tsv"
    if [ "$status" = ok ]; then
        printf '   round %d  %-8s (%5d idle clients)  tps %-10s latency %s ms\n' "$round" "$phase" "$held" "$tps" "$lat"
    else
        fail "round $round pgbench $phase idle clients: exit $st (see build/bench/scale/$log)"
    fi
}

rss_point() {   # rss_point ROUND IDLE LOGIN_SECONDS: record pgmedic's RSS and its client count
    local mem rss counts
    mem=$(mem_kib)
    rss=${mem% *}
    counts=$(metrics_counts 10)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$rss" "${mem#* }" "${counts% *}" "${counts#* }" "$3" \
        >>"$LOGDIR/rss.tsv"
    local want=$2 label="$2 idle clients"
    [ "$2" != closed ] || want=0 label="idle clients closed"
    printf '   round %d  %-20s pgmedic VmRSS %s KiB (pgmedic counts %s clients, %s server connections)\n' \
        "$1" "$label:" "$rss" "${counts% *}" "${counts#* }"
    if [ "${counts% *}" != "?" ] && [ "${counts% *}" != "$want" ]; then
        fail "round $1: pgmedic's /metrics counts ${counts% *} clients, expected $want"
    fi
}

open_idle() {   # open_idle ROUND N: hold N idle clients, then record the RSS
    local secs=""
    if holder open "$2"; then
        secs=${REPLY##* }
    else
        fail "round $1: opening $2 idle clients: ${REPLY#error }"
        holder count || true
    fi
    sleep 1     # let pgmedic finish its side of the last logins before reading its RSS
    rss_point "$1" "$2" "$secs"
}

say "uncounted warm-up: pgbench -S for 3 s through pgmedic (fills the pool)"
timeout -k 5 120 "$PGBIN/pgbench" -h 127.0.0.1 -p "$MPORT" -U postgres -n -S -c "$CLIENTS" -j "$JOBS" -T 3 "$DB" \
    >"$LOGDIR/raw/warmup.log" 2>&1 || warn "warm-up failed (exit $?, build/bench/scale/raw/warmup.log); ignored"

say "$ROUNDS rounds: pgbench -S -c $CLIENTS -j $JOBS -T $DURATION without, then with $IDLE_CLIENTS idle clients"
for round in $(seq "$ROUNDS"); do
    pgbench_run "$round" without 0
    sleep 1
    rss_point "$round" 0 ""
    if [ "$RSS_AT" -lt "$IDLE_CLIENTS" ]; then open_idle "$round" "$RSS_AT"; fi
    open_idle "$round" "$IDLE_CLIENTS"
    held=0
    if holder count; then held=${REPLY#ok }; fi
    pgbench_run "$round" with "$held"
    # Health just before closing: every idle client still open, a few of them still usable.
    if holder check 10; then
        echo "   round $round  idle clients before closing: ${REPLY#ok }"
        printf '%s\t%s\n' "$round" "${REPLY#ok }" >>"$LOGDIR/checks.tsv"
    else
        fail "round $round: idle clients check: ${REPLY#error }"
        printf '%s\t%s\n' "$round" "FAILED: ${REPLY#error }" >>"$LOGDIR/checks.tsv"
    fi
    holder close || fail "round $round: closing idle clients: $REPLY"
    sleep 2
    rss_point "$round" closed ""
done

say "health at the end"
END_QUERY=$("$PGBIN/psql" -h 127.0.0.1 -p "$MPORT" -U postgres -qAtX -c "SELECT count(*) FROM pgbench_branches" \
    "$DB" 2>&1) || true
if [ "$END_QUERY" = "$SCALE" ]; then
    END_QUERY="ok (SELECT count(*) FROM pgbench_branches = $END_QUERY)"
else
    fail "query through pgmedic at the end: $END_QUERY"
    END_QUERY="FAILED: $END_QUERY"
fi
echo "   query through pgmedic: $END_QUERY"
holder quit || true
wait "$HOLDER_JOB" 2>/dev/null || true
HOLDER_JOB=""
save_metrics "$LOGDIR/pgmedic-metrics.txt" || warn "could not fetch pgmedic /metrics (ignored)"
# shellcheck disable=SC2034  # PEAK_KIB ... LOG_WARN_SAMPLE: written to facts.tsv through ${!v}
PEAK_KIB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$PGMEDIC_PID/status" 2>/dev/null || echo "?")
st=0
stop_pid "$PGMEDIC_PID" pgmedic || st=$?
PGMEDIC_PID=""
# shellcheck disable=SC2034  # (facts.tsv)
PGMEDIC_EXIT=$st
case $st in 0|143) ;; *) fail "pgmedic exited with status $st on SIGTERM" ;; esac
# shellcheck disable=SC2034  # (facts.tsv)
LOG_WARNINGS=$(grep -c -E '\[(WARNING|ERROR)\]' "$LOGDIR/pgmedic.log" || true)
# shellcheck disable=SC2034  # (facts.tsv)
LOG_WARN_SAMPLE=$(grep -m 3 -E '\[(WARNING|ERROR)\]' "$LOGDIR/pgmedic.log" | paste -sd '|' - || true)
[ "$(pgmedic_sha)" = "$PGMEDIC_SHA" ] \
    || warn "note: $PGMEDIC_BIN was rebuilt during the run; the results are for the binary started (sha256 $PGMEDIC_SHA...)"

# --- report ---------------------------------------------------------------------------
cpu_model=$(cpu_model)
echo
facts() { printf '%s\t%s\n' "$1" "$2" >>"$LOGDIR/facts.tsv"; }
: >"$LOGDIR/facts.tsv"
facts version "$PGMEDIC_VER"
facts pg "$(ver "$PGBIN/postgres")"
facts machine "$(nproc) CPU(s), ${cpu_model:-$(uname -m)}"
facts date "$START_DATE"
for v in IDLE_CLIENTS RSS_AT BATCH ROUNDS DURATION CLIENTS JOBS SCALE POOL_SIZE MAX_CLIENT_CONN \
         PG_MAX_CONN PGMEDIC_SOFT_NOFILE SCRIPT_NOFILE PGMEDIC_NOFILE FD_NOTE PGMEDIC_FD_LOG END_QUERY \
         PEAK_KIB PGMEDIC_EXIT LOG_WARNINGS LOG_WARN_SAMPLE FAILS; do
    facts "$v" "${!v}"
done

PYTHONIOENCODING=utf-8 "$PY" - "$LOGDIR" "$REPORT" <<'EOF'
import csv, os, statistics, sys

logdir, report = sys.argv[1:3]
def rows(name):
    path = os.path.join(logdir, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))
F = {}
for line in open(os.path.join(logdir, "facts.tsv")):
    k, _, v = line.rstrip("\n").partition("\t")
    F[k] = v
idle, rss_at, rounds = int(F["IDLE_CLIENTS"]), int(F["RSS_AT"]), int(F["ROUNDS"])
fails = int(F["FAILS"])

def num(n):
    return "{:,}".format(n)
def num_or(v, fmt="%.0f"):
    return fmt % v if v is not None else "n/a"

# pgmedic VmRSS by round and number of idle clients
rss = {}
data = {}
login_s = {}
for r in rows("rss.tsv"):
    rss[(int(r["round"]), r["idle_clients"])] = int(r["rss_kib"])
    if r["data_kib"].isdigit():
        data[(int(r["round"]), r["idle_clients"])] = int(r["data_kib"])
    if r["login_s"]:
        login_s.setdefault(int(r["round"]), []).append(float(r["login_s"]))
def per_client(rnd, n, mem=rss):
    a, b = mem.get((rnd, "0")), mem.get((rnd, str(n)))
    return (b - a) / n if a is not None and b is not None else None

runs = [r for r in rows("runs.tsv")]
def mean(phase, key):
    vals = [float(r[key]) for r in runs if r["phase"] == phase and r["status"] == "ok"]
    return statistics.mean(vals) if vals else None
lat_wo, lat_w = mean("without", "lat_ms"), mean("with", "lat_ms")
tps_wo, tps_w = mean("without", "tps"), mean("with", "tps")
lat_ratio = lat_w / lat_wo if lat_w and lat_wo else None
tps_ratio = tps_w / tps_wo if tps_w and tps_wo else None

cpath = os.path.join(logdir, "checks.tsv")
checks = [l.rstrip("\n").split("\t", 1) for l in open(cpath)] if os.path.exists(cpath) else []

pc = [per_client(r, rss_at) for r in range(1, rounds + 1)]
headline = pc[0]
md = []
md.append("# Scale: pgmedic with %s idle clients" % num(idle))
md.append("")
md.append("%s; %s. Machine: %s; %s." % (F["version"], F["pg"] or "PostgreSQL ?", F["machine"], F["date"]))
md.append("pgmedic in transaction mode, pool %s, max_client_conn %s; PostgreSQL max_connections %s. "
          "Idle clients: bench/idle_clients.py (one process), startup to ReadyForQuery, %s logins in "
          "flight at a time, then nothing sent." % (F["POOL_SIZE"], F["MAX_CLIENT_CONN"], F["PG_MAX_CONN"], F["BATCH"]))
md.append("")
target = "n/a" if headline is None else ("meets the target" if headline <= 8 else "above the target")
md.append("- **RSS per idle client at %s idle clients: %s KiB** (target <= 8 KiB: %s). "
          "(VmRSS@%s - VmRSS@0) / %s in round 1%s." % (
              num(rss_at), num_or(headline, "%.1f"), target, rss_at, rss_at,
              "".join("; round %d: %s KiB" % (i + 1, num_or(v, "%.1f")) for i, v in enumerate(pc) if i)))
md.append("- **Latency with %s idle clients / without: %s** (tps ratio %s). "
          "pgbench -S -c %s -j %s -T %s, scale %s, mean of %d run(s) each, alternating." % (
              num(idle), num_or(lat_ratio, "%.3f"), num_or(tps_ratio, "%.3f"), F["CLIENTS"], F["JOBS"],
              F["DURATION"], F["SCALE"], rounds))
health = "ok" if fails == 0 else "FAILED (%d problem(s), see below)" % fails
md.append("- **Health: %s.** Idle clients just before closing: %s. Query through pgmedic at the end: %s. "
          "pgmedic exit status on SIGTERM: %s. Warning/error lines in its log: %s%s." % (
              health, "; ".join("round %s: %s" % (c[0], c[1]) for c in checks) or "not checked",
              F["END_QUERY"], F["PGMEDIC_EXIT"], F["LOG_WARNINGS"],
              " (%s)" % F["LOG_WARN_SAMPLE"] if F["LOG_WARN_SAMPLE"] else ""))
soft = F["PGMEDIC_SOFT_NOFILE"]
md.append("- **Open file limit**: pgmedic started with %s; it logged: %s. Its limit (soft / hard) "
          "during the run: %s; the script's: %s%s." % (
              "the script's soft limit" if soft == "inherit" else "soft limit %s" % soft,
              '"%s"' % F["PGMEDIC_FD_LOG"].replace("|", '", "') if F["PGMEDIC_FD_LOG"] else "nothing",
              F["PGMEDIC_NOFILE"], F["SCRIPT_NOFILE"], "; " + F["FD_NOTE"] if F["FD_NOTE"] else ""))
md.append("")
md.append("pgmedic VmRSS, KiB (per idle client: growth from 0 idle clients / clients):")
md.append("")
head = ["idle clients"] + ["round %d" % r for r in range(1, rounds + 1)] + \
       ["per client r%d" % r for r in range(1, rounds + 1)]
md.append("| " + " | ".join(head) + " |")
md.append("|" + "|".join(["---:"] * len(head)) + "|")
stages = ["0"] + ([str(rss_at)] if rss_at < idle else []) + [str(idle), "closed"]
for s in stages:
    label = "after closing" if s == "closed" else num(int(s))
    cells = [num(rss[(r, s)]) if (r, s) in rss else "-" for r in range(1, rounds + 1)]
    pcs = [num_or(per_client(r, int(s)), "%.2f") if s not in ("0", "closed") else "" for r in range(1, rounds + 1)]
    md.append("| " + " | ".join([label] + cells + pcs) + " |")
md.append("")
logins = ["round %d: %s logins in %.1f s (%s/s)" % (r, num(idle), sum(v), num(int(idle / sum(v))))
          for r, v in sorted(login_s.items()) if sum(v) > 0]
if rounds > 1:
    md.append("Rounds after the first start from the first round's high-water mark: memory freed when "
              "idle clients close is kept by the allocator and reused, so their per-client growth shows "
              "reuse (about 0: no growth across rounds), not the cost of a client.")
    md.append("")
dpc = per_client(1, rss_at, data), per_client(1, idle, data)
if dpc[0] is not None:
    md.append("Allocated, touched or not (VmData, the data segment and anonymous mappings), round 1: "
              "%.2f KiB per idle client at %s, %.2f KiB at %s. RSS counts only the pages written to; "
              "a buffer reserved per client but never filled shows here and not in RSS."
              % (dpc[0], num(rss_at), dpc[1] if dpc[1] is not None else float("nan"), num(idle)))
    md.append("")
peak = F["PEAK_KIB"]
md.append("Peak VmRSS (VmHWM): %s KiB. %s." % (num(int(peak)) if peak.isdigit() else peak,
                                              "; ".join(logins) or "login times n/a"))
md.append("")
md.append("pgbench -S through pgmedic (latency average and tps as pgbench reports them):")
md.append("")
md.append("| round | idle clients | tps | latency ms |")
md.append("|---:|---:|---:|---:|")
for r in runs:
    ok = r["status"] == "ok"
    md.append("| %s | %s | %s | %s |" % (r["round"], num(int(r["idle_held"] or 0)),
                                         "%.0f" % float(r["tps"]) if ok else "FAIL",
                                         r["lat_ms"] if ok else "FAIL"))
md.append("| mean | 0 | %s | %s |" % (num_or(tps_wo), num_or(lat_wo, "%.3f")))
md.append("| mean | %s | %s | %s |" % (num(idle), num_or(tps_w), num_or(lat_w, "%.3f")))
fpath = os.path.join(logdir, "failures.txt")
if os.path.exists(fpath):
    md.append("")
    md.append("Problems:")
    md.append("")
    md += ["- " + l.rstrip("\n") for l in open(fpath)]
text = "\n".join(md) + "\n"
open(report, "w").write(text)
print(text, end="")
EOF
say "report: build/bench/scale.md; logs and raw pgbench output: build/bench/scale/"
[ "$FAILS" = 0 ] || { echo "scale: $FAILS problem(s); see above" >&2; exit 1; }
