#!/bin/sh
# Idempotent dependency install for pgmedic on Debian 12.
# Quiet when everything is already present; installs what is missing otherwise.
set -eu

PKGS="build-essential pkg-config clang libclang-rt-14-dev llvm
libevent-dev libssl-dev openssl libpq-dev libjansson-dev libinih-dev
libxxhash-dev libcmocka-dev libpg-query-dev
postgresql-15 postgresql-15-hypopg postgresql-contrib pgbouncer
python3-pytest python3-psycopg2 python3-psycopg procps iproute2 gunicorn curl"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

need_django=0
if ! /usr/bin/python3 -c 'import django, sys; sys.exit(0 if django.VERSION[:2] >= (4, 2) else 1)' 2>/dev/null; then
    need_django=1
fi

if [ -z "$missing" ] && [ "$need_django" = 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

if [ "$need_django" = 1 ]; then
    bp=/etc/apt/sources.list.d/bookworm-backports.sources
    if [ ! -f "$bp" ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        uris=$(grep -m1 '^URIs:.*debian/*$' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        signed=$(grep -m1 '^Signed-By:' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [ -n "$uris" ] || uris="URIs: http://deb.debian.org/debian"
        [ -n "$signed" ] || signed="Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
        printf 'Types: deb\n%s\nSuites: bookworm-backports\nComponents: main\n%s\n' \
            "$uris" "$signed" | $SUDO tee "$bp" >/dev/null
    fi
fi

echo "setup: installing:$missing$( [ "$need_django" = 1 ] && echo ' python3-django (bookworm-backports)')" >&2
$SUDO apt-get update -qq >/dev/null
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ "$need_django" = 1 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports python3-django >/dev/null
fi
# Debian starts a default cluster on 5432 when postgresql is installed; our tests
# start their own private clusters and do not need it.
exit 0
