#!/usr/bin/env bash
# Renders nginx.conf.example into an nginx configuration.
#
#   scripts/render-conf.sh example OUT   the example alone
#   scripts/render-conf.sh demo OUT      the example, and demo/nginx-demo.conf
#                                        (development tokens, echo, no rate
#                                        limits) included at the end of its
#                                        server block: what `make run` runs
#
# The placeholders come from the environment: CHAT_PREFIX, CHAT_PORT,
# CHAT_MODULE (empty: nginx has the module built in, no load_module),
# CHAT_WEB, CHAT_PGSOCKET.  The demo's part is written beside OUT, as
# nginx-demo.conf.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "render-conf: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 example|demo OUT"
mode=$1
out=$2

for name in CHAT_PREFIX CHAT_PORT CHAT_WEB CHAT_PGSOCKET; do
    [ -n "${!name:-}" ] || die "$name is not set"
done
[ -n "${CHAT_MODULE+set}" ] || die "CHAT_MODULE is not set"

# Quoted patterns and replacements: no glob or `&` surprises whatever the
# paths contain.
render() {
    local text=$1 kv name
    for kv in "CHAT_PREFIX=$CHAT_PREFIX" "CHAT_PORT=$CHAT_PORT" \
              "CHAT_MODULE=$CHAT_MODULE" "CHAT_WEB=$CHAT_WEB" \
              "CHAT_PGSOCKET=$CHAT_PGSOCKET"; do
        name=${kv%%=*}
        text=${text//"\${$name}"/"${kv#*=}"}
    done
    case $text in
        *"\${CHAT_"*) die "an unknown \${CHAT_...} placeholder" ;;
    esac
    printf '%s' "$text"
}

conf=$(<"$REPO/nginx.conf.example")

if [ -z "$CHAT_MODULE" ]; then
    conf=${conf//$'\nload_module ${CHAT_MODULE};\n'/$'\n'}
fi

case $mode in
    example) ;;
    demo)
        demo=$(dirname "$out")/nginx-demo.conf
        render "$(<"$REPO/demo/nginx-demo.conf")" >"$demo"
        printf '\n' >>"$demo"
        # $(<...) dropped the final newline: the file ends with the
        # server block's brace, then http's
        tail=$'\n    }\n}'
        case $conf in
            *"$tail") ;;
            *) die "nginx.conf.example must end with its server block" ;;
        esac
        conf="${conf%"$tail"}"$'\n\n        # the demo: never in production\n'"        include $demo;$tail"
        ;;
    *) die "usage: $0 example|demo OUT" ;;
esac

render "$conf" >"$out"
printf '\n' >>"$out"
