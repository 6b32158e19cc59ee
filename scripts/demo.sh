#!/bin/bash
# demo.sh — `make demo`: a Django bookstore with planted performance problems, served
# through pgmedic, diagnosed by pgmedic, fixed, and measured again.
#
# Steps: private PostgreSQL 15 (scripts/pgtmp.sh; HypoPG created in the app database)
# -> build/pgmedic in front of it (transaction pooling, HTTP API, advisor on when this
# build knows it) -> migrate + seed examples/bookstore through pgmedic (5,000 books,
# 400,000 reviews) -> manage.py pgmedic_models -> gunicorn (2 workers) against pgmedic
# -> HTTP requests to every planted view (N+1 over a FK, a reverse FK and an M2M,
# duplicate queries, a filter on unindexed columns, an unindexed FK) -> what pgmedic
# found (`pgmedic report`, or /api/findings) -> the indexes it suggests are created
# CONCURRENTLY -> the fixed twins of the views are requested -> before/after per view
# (queries per request, p95 per request) -> everything stopped, temp dirs removed.
# Exits non-zero if any step fails. Logs, snapshots and findings are kept in build/demo/.
#
# SERVE=1 (`make demo SERVE=1`): leaves everything running at the end and prints the
# URLs; Ctrl-C stops it all.
#
# Environment: PGMEDIC_BIN (default build/pgmedic), PGBIN (PostgreSQL 15 binaries),
# DEMO_REQUESTS (requests per view, 20), DEMO_CONCURRENCY (concurrent clients, 4),
# DEMO_POOL (pool size, 10), DEMO_WEB_PORT / DEMO_HTTP_PORT / DEMO_PORT (default: free
# ports), DEMO_ADVISOR_WAIT (seconds to give the advisor after the load; default from
# its interval; the demo goes on as soon as the findings are in), SERVE.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
PGMEDIC_BIN=${PGMEDIC_BIN:-$ROOT/build/pgmedic}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
PY=/usr/bin/python3
GUNICORN=/usr/bin/gunicorn
APP=$ROOT/examples/bookstore
HELPER=$ROOT/scripts/demo_bookstore.py
REQUESTS=${DEMO_REQUESTS:-20}
CONCURRENCY=${DEMO_CONCURRENCY:-4}
POOL=${DEMO_POOL:-10}
SERVE=${SERVE:-0}
DB=bookstore
LOGDIR=$ROOT/build/demo

say()  { printf '\n== %s\n' "$*"; }
info() { printf '   %s\n' "$*"; }
die()  { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
elapsed() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d s' $((ms / 1000)) $((ms % 1000)); }

[ -x "$PGMEDIC_BIN" ] || die "pgmedic binary not found at $PGMEDIC_BIN (run 'make' first or set PGMEDIC_BIN)"
[ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 not found in $PGBIN (install postgresql-15)"
[ -x "$PY" ] || die "$PY is required (Debian's python3 with python3-django and python3-psycopg2)"
[ -x "$GUNICORN" ] || die "$GUNICORN is required (Debian package gunicorn)"
"$PY" -c 'import django, psycopg2; assert django.VERSION[:2] >= (4, 2), django.get_version()' 2>/dev/null \
    || die "$PY needs Django 4.2 (python3-django from bookworm-backports) and psycopg2 (scripts/setup.sh)"

T_START=$(date +%s%N)
TMP=$(mktemp -d /tmp/pgmedic-demo.XXXXXX)
chmod 755 "$TMP"            # the postgres user must reach $TMP/pg
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
PGMEDIC_PID=""
WEB_PID=""
PG_STARTED=0
SERVING=0

stop_pid() {   # stop_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL; returns the exit status
    local pid=$1 name=$2 _ st=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "demo: $name ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || st=$?
    return "$st"
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM ERR
    # Ctrl-C is how a SERVE=1 demo ends: not a failure.
    if [ "$SERVING" = 1 ] && [ "$rc" = 130 ]; then rc=0; echo; echo "demo: stopping"; fi
    if [ -n "$WEB_PID" ]; then stop_pid "$WEB_PID" gunicorn; WEB_PID=""; fi
    if [ -n "$PGMEDIC_PID" ]; then stop_pid "$PGMEDIC_PID" pgmedic; PGMEDIC_PID=""; fi
    if [ "$PG_STARTED" = 1 ]; then
        cp "$TMP/pg/postgres.log" "$LOGDIR/postgres.log" 2>/dev/null
        "$ROOT/scripts/pgtmp.sh" stop "$TMP/pg" 2>/dev/null
    fi
    rm -rf "$TMP"
    if [ "$rc" != 0 ]; then
        echo "demo: FAILED (exit $rc). Logs: $LOGDIR" >&2
        local f
        for f in pgmedic.log gunicorn.log; do
            if [ -s "$LOGDIR/$f" ]; then
                echo "--- last lines of $LOGDIR/$f:" >&2
                tail -n 15 "$LOGDIR/$f" >&2
            fi
        done
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

wait_listening() {  # wait_listening PORT PID NAME: until PORT accepts TCP, or PID dies, or 20 s
    local port=$1 pid=$2 name=$3 _
    for _ in $(seq 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            die "$name exited during startup (see $LOGDIR/$name.log)"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name is not listening on 127.0.0.1:$port after 20 s"
}

alive() {   # alive: both servers still running, or die
    kill -0 "$PGMEDIC_PID" 2>/dev/null || die "pgmedic is no longer running (see $LOGDIR/pgmedic.log)"
    kill -0 "$WEB_PID" 2>/dev/null || die "gunicorn is no longer running (see $LOGDIR/gunicorn.log)"
}

manage() {   # manage NAME PORT ARGS...: the bookstore's manage.py ARGS against PORT, output in manage-NAME.log
    local log=$LOGDIR/manage-$1.log port=$2
    shift 2
    (cd "$APP" && PGHOST=127.0.0.1 PGPORT=$port PGDATABASE=$DB PGUSER=postgres PGMEDIC_URL=$PGMEDIC_URL \
        PYTHONDONTWRITEBYTECODE=1 "$PY" manage.py "$@") >"$log" 2>&1 \
        || { tail -n 25 "$log" >&2; die "manage.py $* failed (see $log)"; }
}

# ------------------------------------------------------------------ PostgreSQL

say "starting a private PostgreSQL 15"
PGPORT=$("$ROOT/scripts/pgtmp.sh" start "$TMP/pg" 2>"$LOGDIR/pgtmp.log") \
    || { cat "$LOGDIR/pgtmp.log" >&2; die "could not start PostgreSQL"; }
PG_STARTED=1
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB" >/dev/null
info "PostgreSQL on 127.0.0.1:$PGPORT, database $DB"
# HypoPG lets pgmedic prove an index helps before anyone creates it.  Creating the
# extension needs a superuser: done here, once, as the app's DBA would.
if "${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS hypopg" >"$LOGDIR/hypopg.log" 2>&1; then
    info "HypoPG $("${PSQL[@]}" -d "$DB" -At -c "SELECT extversion FROM pg_extension WHERE extname = 'hypopg'") created in $DB"
else
    info "HypoPG is not available (package postgresql-15-hypopg): missing indexes are not verified"
fi

# ------------------------------------------------------------------ pgmedic

# The diagnosis keys are recent: pass each only if this build accepts it.
ADVISOR_ARGS=()
ADVISOR_INTERVAL=5
for kv in advisor=on hypopg=create advisor_interval=2; do
    if "$PGMEDIC_BIN" --set "$kv" --version >/dev/null 2>&1; then
        ADVISOR_ARGS+=(--set "$kv")
        [ "$kv" = advisor_interval=2 ] && ADVISOR_INTERVAL=2
    else
        info "this pgmedic does not know --set $kv yet; left out"
    fi
done

read -r MPORT HPORT WPORT <<<"$(free_ports 3 | tr '\n' ' ')"
MPORT=${DEMO_PORT:-$MPORT}
HPORT=${DEMO_HTTP_PORT:-$HPORT}
WPORT=${DEMO_WEB_PORT:-$WPORT}
PGMEDIC_URL=http://127.0.0.1:$HPORT
say "starting pgmedic (transaction pooling, pool of $POOL)"
"$PGMEDIC_BIN" --listen "127.0.0.1:$MPORT" --upstream "postgresql://postgres@127.0.0.1:$PGPORT/$DB" \
    --pool-mode transaction --pool-size "$POOL" --http "127.0.0.1:$HPORT" "${ADVISOR_ARGS[@]}" \
    >"$LOGDIR/pgmedic.log" 2>&1 &
PGMEDIC_PID=$!
wait_listening "$MPORT" "$PGMEDIC_PID" pgmedic
wait_listening "$HPORT" "$PGMEDIC_PID" pgmedic
info "proxy on 127.0.0.1:$MPORT, HTTP API on $PGMEDIC_URL (pid $PGMEDIC_PID) ${ADVISOR_ARGS[*]}"

# ------------------------------------------------------------------ the bookstore

# Set-up work goes straight to PostgreSQL, as a deployment's would: pgmedic is there for
# the application's traffic (run through it, migrations work too, and show up in the
# findings as untagged work).
say "migrating and seeding the bookstore (directly: set-up, not traffic)"
t0=$(date +%s%N)
manage migrate "$PGPORT" migrate --no-input -v 1
info "migrations applied ($(elapsed "$t0"))"
manage seed "$PGPORT" seed
info "$(tail -n 1 "$LOGDIR/manage-seed.log")"
manage pgmedic_models "$MPORT" pgmedic_models --url "$PGMEDIC_URL"
info "$(tail -n 1 "$LOGDIR/manage-pgmedic_models.log")"

say "starting the bookstore: gunicorn, 2 workers, database = pgmedic"
(cd "$APP" && exec env PGHOST=127.0.0.1 PGPORT="$MPORT" PGDATABASE=$DB PGUSER=postgres PYTHONDONTWRITEBYTECODE=1 \
    "$GUNICORN" --workers 2 --bind "127.0.0.1:$WPORT" --timeout 60 \
    --access-logfile "$LOGDIR/gunicorn-access.log" --error-logfile "$LOGDIR/gunicorn.log" bookstore.wsgi) &
WEB_PID=$!
wait_listening "$WPORT" "$WEB_PID" gunicorn
APP_URL=http://127.0.0.1:$WPORT
info "bookstore on $APP_URL (pid $WEB_PID)"

# ------------------------------------------------------------------ before

say "requests to the planted views ($REQUESTS each, $CONCURRENCY at a time)"
"$PY" "$HELPER" load --app "$APP_URL" --phase planted -n "$REQUESTS" -c "$CONCURRENCY" \
    --out "$LOGDIR/load-planted.json"
alive

WAIT=${DEMO_ADVISOR_WAIT:-$((ADVISOR_INTERVAL * 4 + 5))}
info "waiting for the advisor (EXPLAIN, HypoPG, catalog checks; at most ${WAIT} s)"
"$PY" "$HELPER" wait --pgmedic "$PGMEDIC_URL" --timeout "$WAIT"
"$PGMEDIC_BIN" snapshot --http "$PGMEDIC_URL" -o "$LOGDIR/before.json"

say "what pgmedic found"
"$PY" - "$PGMEDIC_URL/api/findings" "$LOGDIR/findings-before.json" <<'EOF' || true
import sys, urllib.request      # the raw findings, kept next to the report
try:
    open(sys.argv[2], "wb").write(urllib.request.urlopen(sys.argv[1], timeout=5).read())
except Exception:
    pass
EOF
if "$PGMEDIC_BIN" help report >/dev/null 2>&1; then
    "$PGMEDIC_BIN" report --http "$PGMEDIC_URL" >"$LOGDIR/report-before.txt" 2>&1 \
        || { cat "$LOGDIR/report-before.txt" >&2; die "pgmedic report failed"; }
else
    # No `pgmedic report` in this build: the findings, formatted by the helper.
    st=0
    "$PY" "$HELPER" findings --pgmedic "$PGMEDIC_URL" >"$LOGDIR/report-before.txt" 2>&1 || st=$?
    [ "$st" = 0 ] || [ "$st" = 3 ] || { cat "$LOGDIR/report-before.txt" >&2; die "could not read pgmedic's findings"; }
fi
cat "$LOGDIR/report-before.txt"

# ------------------------------------------------------------------ the fix

say "creating the suggested indexes (CONCURRENTLY: the shop keeps running)"
"$PY" "$HELPER" indexes --pgmedic "$PGMEDIC_URL" \
    --dsn "host=127.0.0.1 port=$PGPORT dbname=$DB user=postgres sslmode=disable"

say "requests to the fixed views ($REQUESTS each)"
info "(select_related / prefetch_related / loaded once; the index views are the same code, now indexed)"
"$PY" "$HELPER" load --app "$APP_URL" --phase fixed -n "$REQUESTS" -c "$CONCURRENCY" \
    --out "$LOGDIR/load-fixed.json"
alive
sleep 0.5
"$PGMEDIC_BIN" snapshot --http "$PGMEDIC_URL" -o "$LOGDIR/after.json"
"$PGMEDIC_BIN" compare "$LOGDIR/before.json" "$LOGDIR/after.json" >"$LOGDIR/compare.txt" \
    || die "pgmedic compare failed"

say "before -> after, per view (pgmedic: queries and DB time per request; the client: HTTP time)"
"$PY" "$HELPER" summary --pgmedic "$PGMEDIC_URL" --load-before "$LOGDIR/load-planted.json" \
    --load-after "$LOGDIR/load-fixed.json" | tee "$LOGDIR/summary.txt"
info ""
info "snapshots: build/demo/before.json, build/demo/after.json (pgmedic compare: build/demo/compare.txt)"
info "demo ran in $(elapsed "$T_START")"

if [ "$SERVE" = 1 ]; then
    SERVING=1
    say "serving (SERVE=1) — Ctrl-C stops everything"
    info "bookstore           $APP_URL/               (planted: /books/  fixed: /fixed/books/ ...)"
    info "pgmedic findings    $PGMEDIC_URL/api/findings"
    info "pgmedic routes      $PGMEDIC_URL/api/routes"
    info "pgmedic metrics     $PGMEDIC_URL/metrics"
    info "PostgreSQL          via pgmedic: psql -h 127.0.0.1 -p $MPORT -U postgres $DB"
    info "                    direct:      psql -h 127.0.0.1 -p $PGPORT -U postgres $DB"
    info "top                 $PGMEDIC_BIN top --http $PGMEDIC_URL"
    while :; do
        alive
        sleep 1
    done
fi

say "stopping"
st=0
stop_pid "$WEB_PID" gunicorn || st=$?
WEB_PID=""
[ "$st" = 0 ] || info "gunicorn exited with status $st"
st=0
stop_pid "$PGMEDIC_PID" pgmedic || st=$?
PGMEDIC_PID=""
case $st in
    0|143) info "pgmedic exited cleanly (status $st)" ;;
    *) die "pgmedic exited with status $st on SIGTERM (see $LOGDIR/pgmedic.log)" ;;
esac
cp "$TMP/pg/postgres.log" "$LOGDIR/postgres.log" 2>/dev/null || true
PG_STARTED=0
"$ROOT/scripts/pgtmp.sh" stop "$TMP/pg" 2>>"$LOGDIR/pgtmp.log"
say "demo OK in $(elapsed "$T_START") (logs, findings and snapshots in ${LOGDIR#"$ROOT"/})"
