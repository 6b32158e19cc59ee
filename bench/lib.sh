# shellcheck shell=bash
# lib.sh — shell functions shared by bench/pooling.sh, bench/scale.sh and bench/soak.sh.
# Sourced, not run: `. "$ROOT/bench/lib.sh"`, right after ROOT is set. Sourcing it only
# defines functions and AS_POSTGRES; nothing runs.
#
# Globals the functions read (each script sets them; a function needs only those it names):
#   PROG          the prefix of messages: "bench", "scale", "soak"
#   ROOT          the repository (scripts/pgtmp.sh)
#   PY            the Python 3 interpreter
#   PGBIN         PostgreSQL 15 binaries (psql, pgbench)
#   LOGDIR        where the servers' logs go: NAME.log of each server started, pgtmp.log,
#                 init.log, postgres.log (copied there on exit)
#   TMP           the run's temporary directory (the cluster in $TMP/pg); removed on exit
#   DB            the database the benchmark uses
#   SCALE         pgbench -i -s SCALE
#   STOP_TIMEOUT  seconds stop_pid waits before SIGKILL
#   EXIT_NOTE     the end of the message printed when the script exits non-zero
#   PGMEDIC_BIN   the pgmedic binary
#   HPORT         pgmedic's /metrics port (scale.sh, soak.sh)
# Globals the functions set:
#   PG_STARTED    1 once start_postgres has begun starting the cluster (cleanup stops it;
#                 the script sets it to 0 before install_traps)
#   PGPORT        the cluster's port, set by start_postgres; psql_direct connects to it
#
# Functions:
#   say MSG...             "== MSG" on stdout
#   die MSG...             "PROG: error: MSG" on stderr, exit 1
#   warn MSG...            "PROG: MSG" on stderr
#   stop_pid PID NAME      SIGTERM (SIGINT if NAME is pgbouncer: its clean shutdown), SIGKILL
#                          after STOP_TIMEOUT s; returns PID's exit status. Empty PID: returns 0
#   cleanup                the EXIT trap: runs the script's own cleanup_processes (it must
#                          define one: stop what it started), stops the cluster if PG_STARTED
#                          (its log copied to LOGDIR), removes TMP, reports a non-zero exit
#                          status ("PROG: exit status RC. EXIT_NOTE"), exits with it
#   install_traps          cleanup on EXIT; the failed command's line on ERR; exit 130 on
#                          INT (Ctrl-C) and 143 on TERM, which run cleanup
#   free_ports N           N distinct free TCP ports on 127.0.0.1, one per line
#   wait_listening PORT PID NAME
#                          until 127.0.0.1:PORT accepts TCP (15 s at most, else die); if PID
#                          exits first, the end of LOGDIR/NAME.log and die
#   psql_direct ARGS...    psql as postgres to the cluster (PGPORT), quiet, stop on error
#   start_postgres MAX_CONNECTIONS
#                          the private cluster (scripts/pgtmp.sh, in TMP/pg, fsync off); sets
#                          PG_STARTED and PGPORT, dies on failure. The scripts then run
#                          `psql_direct -c "CREATE DATABASE $DB" postgres` themselves, at top
#                          level, where a failure is reported by the ERR trap (inside a
#                          function it would not be: no errtrace)
#   pgbench_init           pgbench -i -s SCALE DB, directly; its output in LOGDIR/init.log;
#                          dies on failure
#   ver BIN                the first line of BIN --version (empty if it fails)
#   pgmedic_sha            the first 12 hex digits of PGMEDIC_BIN's sha256 (empty if unreadable)
#   cpu_model              the CPU model from /proc/cpuinfo (empty if unknown)
#   metrics_counts TIMEOUT "CLIENTS SERVERS": pgmedic's own totals from its /metrics (HPORT),
#                          "? ?" if they cannot be read within TIMEOUT s
#   save_metrics FILE      pgmedic's /metrics (HPORT) into FILE; fails if it cannot be read
#   pgbouncer_config PORT POOL_SIZE
#                          TMP/pgbouncer/pgbouncer.ini (and its userlist): transaction pooling
#                          of DB on the cluster (PGPORT) for user postgres, trust auth, on
#                          127.0.0.1:PORT; owned by postgres when run as root
#   AS_POSTGRES            (set when sourced) the prefix that runs a command as the postgres
#                          system user when run as root (PgBouncer refuses root); empty otherwise

say()  { printf '== %s\n' "$*"; }
die()  { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
warn() { printf '%s: %s\n' "$PROG" "$*" >&2; }

stop_pid() {    # stop_pid PID NAME: see above
    local pid=$1 name=$2 _ st=0 sig=TERM
    [ -n "$pid" ] || return 0
    # PgBouncer treats SIGTERM as "fast exit" (status 1); SIGINT is its clean shutdown.
    [ "$name" != pgbouncer ] || sig=INT
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq $((STOP_TIMEOUT * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name ignored SIGTERM for $STOP_TIMEOUT s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || st=$?
    return "$st"
}

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM ERR
    cleanup_processes
    if [ "$PG_STARTED" = 1 ]; then
        cp "$TMP/pg/postgres.log" "$LOGDIR/postgres.log" 2>/dev/null
        "$ROOT/scripts/pgtmp.sh" stop "$TMP/pg" 2>/dev/null
    fi
    rm -rf "$TMP"
    [ "$rc" = 0 ] || echo "$PROG: exit status $rc. $EXIT_NOTE" >&2
    exit "$rc"
}

install_traps() {
    trap cleanup EXIT
    trap 'echo "$PROG: error: command failed at line $LINENO: $BASH_COMMAND" >&2' ERR
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

free_ports() {   # free_ports N: N distinct free TCP ports on 127.0.0.1
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks:
    print(s.getsockname()[1]); s.close()
EOF
}

wait_listening() {  # wait_listening PORT PID NAME
    local port=$1 pid=$2 name=$3 _
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOGDIR/$name.log" >&2; die "$name exited during startup"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name is not listening on 127.0.0.1:$port after 15 s"
}

psql_direct() { "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }

start_postgres() {  # start_postgres MAX_CONNECTIONS
    say "PostgreSQL 15 (private cluster, max_connections $1, fsync off)"
    PG_STARTED=1
    PGPORT=$(PGTMP_MAX_CONNECTIONS=$1 "$ROOT/scripts/pgtmp.sh" start "$TMP/pg" 2>"$LOGDIR/pgtmp.log") \
        || { cat "$LOGDIR/pgtmp.log" >&2; die "could not start PostgreSQL"; }
}

pgbench_init() {    # pgbench_init
    say "pgbench -i -s $SCALE (direct)"
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -i -s "$SCALE" -q "$DB" >"$LOGDIR/init.log" 2>&1 \
        || { tail -n 20 "$LOGDIR/init.log" >&2; die "pgbench -i failed"; }
}

ver() { timeout -k 1 2 "$1" --version 2>/dev/null </dev/null | head -n 1; }
pgmedic_sha() { sha256sum "$PGMEDIC_BIN" 2>/dev/null | cut -c1-12; }
cpu_model() { sed -n 's/^\(model name\|Model\|Hardware\)[[:space:]]*: *//p' /proc/cpuinfo 2>/dev/null | head -n 1; }

metrics_counts() {  # metrics_counts TIMEOUT: see above
    "$PY" - "http://127.0.0.1:$HPORT/metrics" "$1" <<'EOF' 2>/dev/null || echo "? ?"
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode()
def total(name):
    vals = re.findall(r"^%s\{[^}]*\} ([0-9.]+)$" % name, text, re.M)
    return "%d" % sum(float(v) for v in vals) if vals else "?"
print(total("pgmedic_clients"), total("pgmedic_servers"))
EOF
}

save_metrics() {    # save_metrics FILE
    "$PY" - "http://127.0.0.1:$HPORT/metrics" "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    open(sys.argv[2], "wb").write(r.read())
EOF
}

pgbouncer_config() {    # pgbouncer_config PORT POOL_SIZE
    mkdir -p "$TMP/pgbouncer"
    # PgBouncer needs an auth_file even with auth_type = trust: the user must be listed.
    echo '"postgres" ""' >"$TMP/pgbouncer/userlist.txt"
    cat >"$TMP/pgbouncer/pgbouncer.ini" <<EOF
[databases]
$DB = host=127.0.0.1 port=$PGPORT dbname=$DB user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
auth_type = trust
auth_file = $TMP/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = $2
max_client_conn = 1000
admin_users = postgres
ignore_startup_parameters = extra_float_digits
; per-connection log lines would cost PgBouncer time in the -C workload
log_connections = 0
log_disconnections = 0
log_stats = 0
EOF
    [ "$(id -u)" != 0 ] || chown -R postgres: "$TMP/pgbouncer"
}

# PgBouncer refuses to run as root: run it as the postgres system user. setpriv execs the
# program, so $! of a background job is PgBouncer's own pid (a shell function would leave
# a subshell in between, and SIGTERM would not reach PgBouncer).
# shellcheck disable=SC2034  # used by the scripts that source this file
AS_POSTGRES=()
if [ "$(id -u)" = 0 ]; then
    # shellcheck disable=SC2034
    AS_POSTGRES=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
