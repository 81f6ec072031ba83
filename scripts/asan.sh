#!/usr/bin/env bash
# `make test-asan`: the unit tests and the whole pytest suite under
# AddressSanitizer + UndefinedBehaviorSanitizer.
#
# nginx is built from the Debian source of the installed version, with the
# module compiled in (which also proves the static build), under build/asan/.
# The build is incremental: configure runs again only when the module's
# `config` or this script changes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

ASAN=$REPO/build/asan
SAN='-fsanitize=address,undefined'

if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi

# --- the nginx source of the installed version

version=$(dpkg-query -W -f='${Version}' nginx)
upstream=${version%%-*}
tree=$ASAN/src/nginx-$upstream

have_deb_src() {
    grep -qsE '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources ||
        grep -qsE '^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list
}

if [ ! -x "$tree/configure" ]; then
    if ! have_deb_src; then
        # the same mirrors as the binary packages, as a deb-src entry
        echo "asan: adding /etc/apt/sources.list.d/chat-deb-src.sources"
        sed 's/^Types: deb$/Types: deb-src/' \
            /etc/apt/sources.list.d/debian.sources |
            "${sudo[@]}" tee /etc/apt/sources.list.d/chat-deb-src.sources \
            >/dev/null
        "${sudo[@]}" apt-get update -q
    fi
    rm -rf "$ASAN/src"
    mkdir -p "$ASAN/src"
    (
        cd "$ASAN/src"
        # the exact version when the mirror still has it, else any other
        # of the same upstream release the mirrors list (a mirror may list
        # a security update's source before it serves it): the module is
        # compiled into this nginx, so the Debian revision does not matter
        apt-get source -q "nginx=$version" && exit 0
        for v in $(apt-cache showsrc nginx 2>/dev/null |
                   sed -n 's/^Version: //p' | sort -ru); do
            [ "${v%%-*}" = "$upstream" ] && [ "$v" != "$version" ] ||
                continue
            rm -rf ./*
            apt-get source -q "nginx=$v" && exit 0
        done
        exit 1
    ) || { echo "asan: apt-get source nginx failed" >&2; exit 1; }
    [ -x "$tree/configure" ] || {
        echo "asan: no $tree/configure after apt-get source" >&2; exit 1; }
fi

# --- configure (when needed) and build

# nonnull-attribute is off for nginx: its core copies zero bytes from NULL
# (ngx_pstrdup of an empty string at startup), harmless but reported.
# alignment too: its HTTP/2 code stores 32-bit words at odd addresses on
# purpose (ngx_http_v2_write_uint32), which x86 allows.
cc_opt="-g -O1 -fno-omit-frame-pointer $SAN -fno-sanitize-recover=undefined"
cc_opt+=" -fno-sanitize=nonnull-attribute,alignment"
cc_opt+=" -Wall -Wextra -Wno-unused-parameter -Werror"
conf_args=(
    --with-compat --with-debug --with-http_ssl_module
    --with-http_auth_request_module --with-http_realip_module --with-threads
    --with-http_v2_module
    --prefix="$ASAN/prefix" --builddir="$ASAN/objs"
    --with-cc-opt="$cc_opt" --with-ld-opt="$SAN"
    --add-module="$REPO"
)

stamp=$ASAN/configure.stamp
want=$( { cat config "${BASH_SOURCE[0]}"; echo "${conf_args[*]}"; } |
        sha256sum | cut -d' ' -f1)
if [ ! -f "$ASAN/objs/Makefile" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]
then
    echo "asan: configuring nginx $upstream with the module built in"
    (cd "$tree" && ./configure "${conf_args[@]}") >"$ASAN/configure.log" 2>&1 || {
        echo "asan: configure failed; the end of $ASAN/configure.log:" >&2
        tail -n 30 "$ASAN/configure.log" >&2
        exit 1
    }
    echo "$want" >"$stamp"
fi

echo "asan: building $ASAN/objs/nginx"
make -C "$tree" -f "$ASAN/objs/Makefile" -j2 >"$ASAN/build.log" 2>&1 || {
    echo "asan: the build failed; the errors from $ASAN/build.log:" >&2
    grep -E 'error|Error' "$ASAN/build.log" | head -n 40 >&2
    exit 1
}

# --- unit tests with clang's sanitizers, in their own output directory

echo "asan: unit tests"
make test-unit UNIT_OUT="$ASAN/unit" UNIT_CC=clang \
    UNIT_CFLAGS="-g -O1 $SAN -fno-sanitize-recover=all -Wall -Wextra -Werror"

# --- the suite against the sanitized nginx
#
# Leak checks are off: nginx frees its pools at exit only, by design.
# Any sanitizer report lands in a log, and the conftest check fails the
# test that caused it.  pytest's summary is the last line printed.
#
# This run's database is an upgraded one: built by the files of the
# release before sql/schema/ and sql/api/ (t/data/release-0011), then
# migrated (scripts/pg.sh, CHAT_PG_FROM), so that the whole suite passes on
# a database migrated in place as well as on a fresh one (make test).

echo "asan: pytest with $ASAN/objs/nginx"
read -ra pytest_args <<<"${PYTEST_ARGS:-}"
cd t
CHAT_NGINX=$ASAN/objs/nginx CHAT_MODULE='' \
CHAT_PG_FROM=${CHAT_PG_FROM-t/data/release-0011} \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
UBSAN_OPTIONS=print_stacktrace=1 \
    exec /usr/bin/python3 -m pytest "${pytest_args[@]}"
