#!/usr/bin/env bash
# `make stop`: stops what `make run` started; harmless when nothing runs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=$REPO/.run

pid=$(cat "$RUN/nginx.pid" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # QUIT lets connections finish; TERM if that takes over 10 s.
    kill -QUIT "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "stop: nginx $pid still runs after QUIT; sending TERM" >&2
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    echo "stop: nginx stopped"
fi

if [ -f "$RUN/pg/data/PG_VERSION" ]; then
    bash "$REPO/scripts/pg.sh" stop "$RUN/pg"
    echo "stop: PostgreSQL is stopped"
fi
