#!/bin/sh
# shellcheck disable=SC2016  # the 'sh -c' snippets below take "$1"... as arguments, on purpose
# pgtmp.sh — a private, throw-away PostgreSQL 15 cluster for tests, the demo and benchmarks.
#
#   scripts/pgtmp.sh start DIR [PORT]   init DIR (if needed) and start; prints the port on stdout
#   scripts/pgtmp.sh stop DIR           stop the cluster in DIR (does not remove DIR)
#   scripts/pgtmp.sh status DIR         exit 0 and print the port if running, exit 1 otherwise
#
# Layout of DIR:  data/ (PGDATA)   postgres.log   port   .s.PGSQL.<port> (Unix socket)
# The cluster listens on 127.0.0.1:<port> and on a socket inside DIR, with trust auth for
# every local connection (superuser "postgres"), fsync=off and max_connections=200.
# PostgreSQL refuses to run as root: when run as root, the server runs as the `postgres`
# system user (DIR is chowned to it); otherwise as the calling user.
# Messages go to stderr; stdout carries only the port, so `PORT=$(pgtmp.sh start DIR)` works.
# Environment: PGBIN (default /usr/lib/postgresql/15/bin), PGTMP_MAX_CONNECTIONS (default 200).
set -eu

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PY=/usr/bin/python3
MAX_CONN=${PGTMP_MAX_CONNECTIONS:-200}
PG_USER=postgres

msg() { echo "pgtmp: $*" >&2; }
die() { msg "error: $*"; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: pgtmp.sh start DIR [PORT]   init (if needed) and start a private PostgreSQL; prints the port
       pgtmp.sh stop DIR           stop it
       pgtmp.sh status DIR         print the port if running (exit 1 if not)
EOF
    exit 2
}

# Run a command as the cluster owner, from inside DIR (the caller's cwd may be unreadable to it).
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        (cd "$DIR" && runuser -u "$PG_USER" -- "$@")
    else
        (cd "$DIR" && "$@")
    fi
}

free_port() {
    [ -x "$PY" ] || die "$PY is needed to pick a free port (or pass PORT explicitly)"
    "$PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

is_running() {
    [ -f "$DIR/data/PG_VERSION" ] && as_owner "$PGBIN/pg_ctl" status -D "$DIR/data" >/dev/null 2>&1
}

cmd_start() {
    want_port=${1:-}
    if [ -n "$want_port" ]; then
        case $want_port in *[!0-9]*) die "PORT must be a number, got '$want_port'" ;; esac
    fi
    [ -x "$PGBIN/initdb" ] || die "PostgreSQL binaries not found in $PGBIN (install postgresql-15 or set PGBIN)"

    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    # A Unix socket path is limited to 107 bytes: DIR/.s.PGSQL.NNNNN must fit.
    [ ${#DIR} -le 90 ] || die "DIR path is too long for a Unix socket (${#DIR} > 90 chars): $DIR"
    if [ "$(id -u)" = 0 ]; then
        id "$PG_USER" >/dev/null 2>&1 || die "system user '$PG_USER' does not exist (install postgresql-15)"
        chown "$PG_USER:" "$DIR"
        chmod 700 "$DIR"
        runuser -u "$PG_USER" -- test -w "$DIR" \
            || die "user '$PG_USER' cannot write to $DIR (is a parent directory not searchable by it?)"
    fi

    if is_running; then
        port=$(cat "$DIR/port" 2>/dev/null || true)
        msg "already running in $DIR on port ${port:-?}"
        echo "$port"
        return 0
    fi

    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        msg "initdb $DIR/data"
        if ! as_owner "$PGBIN/initdb" -D "$DIR/data" -U "$PG_USER" -A trust -E UTF8 --locale=C \
                --no-sync >"$DIR/initdb.log" 2>&1; then
            cat "$DIR/initdb.log" >&2
            die "initdb failed"
        fi
        as_owner sh -c 'cat >>"$1"' sh "$DIR/data/postgresql.conf" <<EOF

# --- pgtmp.sh: a private, disposable cluster ---
listen_addresses = '127.0.0.1'
max_connections = $MAX_CONN
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
# port and unix_socket_directories are rewritten at each start:
include_if_exists = 'pgtmp.conf'
EOF
    fi

    tries=1
    [ -n "$want_port" ] || tries=3   # a port picked by us may be grabbed by someone else meanwhile
    while :; do
        port=${want_port:-$(free_port)}
        as_owner sh -c 'printf "%s\n" "$2" "$3" >"$1"' sh "$DIR/data/pgtmp.conf" \
            "port = $port" "unix_socket_directories = '$DIR'"
        msg "starting PostgreSQL in $DIR on 127.0.0.1:$port"
        if as_owner "$PGBIN/pg_ctl" start -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 >/dev/null 2>&1; then
            break
        fi
        tries=$((tries - 1))
        if [ "$tries" -gt 0 ] && grep -q 'Address already in use' "$DIR/postgres.log" 2>/dev/null; then
            msg "port $port was taken; trying another"
            continue
        fi
        msg "PostgreSQL did not start; last lines of $DIR/postgres.log:"
        tail -n 20 "$DIR/postgres.log" >&2 2>/dev/null || true
        die "start failed"
    done
    as_owner sh -c 'echo "$2" >"$1"' sh "$DIR/port" "$port"
    echo "$port"
}

cmd_stop() {
    if [ ! -d "$DIR" ] || [ ! -f "$DIR/data/PG_VERSION" ]; then
        msg "no cluster in $DIR; nothing to stop"
        return 0
    fi
    DIR=$(cd "$DIR" && pwd -P)
    if ! is_running; then
        msg "not running in $DIR"
        return 0
    fi
    if as_owner "$PGBIN/pg_ctl" stop -D "$DIR/data" -m fast -w -t 30 >/dev/null 2>&1; then
        msg "stopped PostgreSQL in $DIR"
    else
        msg "fast shutdown timed out; using immediate shutdown"
        as_owner "$PGBIN/pg_ctl" stop -D "$DIR/data" -m immediate -w -t 30 >/dev/null 2>&1 \
            || die "could not stop PostgreSQL in $DIR"
    fi
}

cmd_status() {
    [ -d "$DIR" ] || exit 1
    DIR=$(cd "$DIR" && pwd -P)
    if is_running; then
        cat "$DIR/port"
    else
        exit 1
    fi
}

[ $# -ge 2 ] || usage
CMD=$1
DIR=$2
shift 2
case $CMD in
    start)  [ $# -le 1 ] || usage; cmd_start "${1:-}" ;;
    stop)   [ $# -eq 0 ] || usage; cmd_stop ;;
    status) [ $# -eq 0 ] || usage; cmd_status ;;
    *)      usage ;;
esac
