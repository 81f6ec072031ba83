#!/usr/bin/env bash
# `make run`: the demo.  A private PostgreSQL and nginx with the module,
# everything under .run/: nginx runs nginx.conf.example with the
# development parts of demo/nginx-demo.conf (for this machine only).
# Running it again is harmless: what runs stays running, nginx re-reads
# its configuration.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

NGINX=${CHAT_NGINX:-/usr/sbin/nginx}
PORT=${PORT:-8080}
RUN=$REPO/.run
MODULE=$REPO/build/ngx_http_chat_module.so
CONF=$RUN/nginx.conf
PIDFILE=$RUN/nginx.pid
ERRLOG=$RUN/logs/error.log

die() { echo "run: $*" >&2; exit 1; }

# a failure of nginx itself: its log says why
fail() {
    echo "run: $*" >&2
    if [ -f "$ERRLOG" ]; then
        echo "--- last lines of $ERRLOG:" >&2
        tail -n 20 "$ERRLOG" >&2
    fi
    exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

[ -f "$MODULE" ] || die "$MODULE is missing: make module"

# our nginx runs already (reload it), or the port must be free
pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
    pid=
fi
if [ -z "$pid" ] && port_open; then
    die "something else listens on 127.0.0.1:$PORT (PORT=... make run)"
fi

mkdir -p "$RUN/logs" "$RUN/tmp" "$RUN/uploads"
# the upload store (demo/nginx-demo.conf): the workers write it, and run
# as nobody when nginx starts as root
if [ "$(id -u)" = 0 ]; then
    chown nobody "$RUN/uploads"
fi

bash scripts/pg.sh up "$RUN/pg"

# HS256 key for the demo's tokens: made once, kept across runs so that
# tokens minted earlier stay valid.
if [ ! -s "$RUN/jwt.key" ]; then
    (umask 077 && openssl rand 64 >"$RUN/jwt.key")
fi
chmod 600 "$RUN/jwt.key"

# The example and the demo's development parts (demo/nginx-demo.conf):
# development tokens, the echo endpoint, no rate limits.
CHAT_PREFIX=$RUN CHAT_PORT=$PORT CHAT_MODULE=$MODULE CHAT_WEB=$REPO/web \
    CHAT_PGSOCKET=$RUN/pg/socket bash scripts/render-conf.sh demo "$CONF" ||
    die "could not render nginx.conf.example and demo/nginx-demo.conf"

# quiet unless it fails: nginx prints the configuration warnings again
# when it starts
if ! out=$("$NGINX" -p "$RUN/" -c "$CONF" -t -q 2>&1); then
    echo "$out" >&2
    fail "$CONF does not pass nginx -t"
fi

# A reload cannot pick up a rebuilt module: the master keeps the old .so
# loaded and dlopen() hands it back by name.  So a new build restarts.
if [ -n "$pid" ] && [ "$MODULE" -nt "$PIDFILE" ]; then
    echo "run: the module was rebuilt; restarting nginx $pid"
    kill -QUIT "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "nginx $pid did not stop"
    pid=
fi

if [ -n "$pid" ]; then
    echo "run: nginx $pid is running; reloading its configuration"
    "$NGINX" -p "$RUN/" -c "$CONF" -s reload || fail "reload failed"
else
    "$NGINX" -p "$RUN/" -c "$CONF" || fail "nginx did not start"
fi

for _ in $(seq 100); do
    port_open && break
    sleep 0.1
done
port_open || fail "nginx does not answer on 127.0.0.1:$PORT"

base=127.0.0.1:$PORT
cat <<EOF

  demo page    http://$base/
  WebSocket    ws://$base/chat/ws
  echo         ws://$base/chat/echo
  REST         http://$base/api/chat/
  status       http://$base/chat/status
  dev token    http://$base/chat/dev/token?user=alice&name=Alice
               (the demo's, from this machine only: demo/nginx-demo.conf)

  nginx logs   $RUN/logs/error.log, $RUN/logs/access.log
  PostgreSQL   $RUN/pg/log (socket $RUN/pg/socket, database chat)

  make stop    stops both

EOF
