#!/usr/bin/env bash
# A private PostgreSQL 15 cluster in a directory of its own, reachable only
# through a unix socket; the system cluster is never touched.  Used by
# `make run` (DIR = .run/pg) and by the test suite (a temporary DIR).
#
#   pg.sh up DIR     create the cluster if needed, start it if it is not
#                    running, create database "chat", make the roles
#                    (sql/roles.sql) and migrate it (sql/migrate.sh as
#                    chat_owner)
#   pg.sh stop DIR   stop it if it runs (fast shutdown)
#
# Layout: DIR/data (cluster), DIR/socket (socket directory), DIR/log.
# The superuser is "postgres" and local connections are trusted, so the
# nginx workers (user nobody) can connect as chat_nginx without a
# password: a development cluster only.  The roles are the production ones.
# CHAT_PG_FSYNC=off turns fsync off (the tests: faster, same behaviour
# unless the machine crashes).  CHAT_PG_FROM=DIR first builds a new
# database with DIR's *.sql files as an earlier release shipped them (the
# upgrade tests: t/data/release-0011).
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { echo "usage: $0 up|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
data=$dir/data
sock=$dir/socket
log=$dir/log

# As root the server must run as an unprivileged user: postgres refuses
# to run as root.
if [ "$(id -u)" -eq 0 ]; then
    as_pg=(runuser -u postgres --)
else
    as_pg=()
fi

pg_ctl() { "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$data" "$@"; }
running() { [ -f "$data/PG_VERSION" ] && pg_ctl status >/dev/null 2>&1; }

fail() {
    echo "pg.sh: $*" >&2
    if [ -f "$log" ]; then
        echo "--- last lines of $log:" >&2
        tail -n 20 "$log" >&2
    fi
    exit 1
}

psql_chat() {
    PGOPTIONS='--client-min-messages=warning' \
        "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -U postgres "$@"
}

up() {
    [ -x "$PGBIN/initdb" ] ||
        fail "$PGBIN/initdb is missing: apt-get install postgresql (make deps)"

    mkdir -p "$data" "$sock"
    touch "$log"
    if [ ${#as_pg[@]} -gt 0 ]; then
        chown postgres:postgres "$data" "$sock" "$log"
    fi
    chmod 700 "$data"
    chmod 755 "$sock"

    if [ ! -f "$data/PG_VERSION" ]; then
        local nosync=()
        [ "${CHAT_PG_FSYNC:-on}" = off ] && nosync=(--no-sync)
        "${as_pg[@]}" "$PGBIN/initdb" -D "$data" -U postgres --auth=trust \
            -E UTF8 --locale=C.UTF-8 --no-instructions "${nosync[@]}" \
            >>"$log" 2>&1 || fail "initdb failed"
        # appended settings win over the defaults above them
        {
            echo "listen_addresses = ''"
            echo "unix_socket_directories = '$sock'"
            echo "unix_socket_permissions = 0777"
            echo "max_connections = 200"
            [ "${CHAT_PG_FSYNC:-on}" = off ] && echo "fsync = off"
            true
        } >>"$data/postgresql.conf"
    fi

    if ! running; then
        pg_ctl -l "$log" -w -t 60 start >/dev/null || fail "could not start"
    fi

    local have f
    have=$(psql_chat -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'chat'") ||
        fail "cannot connect through $sock"
    if [ "$have" != 1 ]; then
        psql_chat -d postgres -c 'CREATE DATABASE chat' ||
            fail "cannot create database chat"
        if [ -n "${CHAT_PG_FROM:-}" ]; then
            # as that release's README said: every file, as the superuser
            for f in "$CHAT_PG_FROM"/*.sql; do
                psql_chat -d chat -f "$f" || fail "$f failed"
            done
        fi
    fi

    psql_chat -d chat -f "$REPO/sql/roles.sql" || fail "sql/roles.sql failed"
    "$REPO/sql/migrate.sh" "host=$sock dbname=chat user=chat_owner" \
        >/dev/null || fail "sql/migrate.sh failed"
}

stop() {
    if running; then
        pg_ctl -w -t 60 -m fast stop >/dev/null || fail "could not stop"
    fi
}

case $cmd in
    up) up ;;
    stop) stop ;;
    *) usage ;;
esac
