#!/usr/bin/env bash
# Installs the Debian packages the build, the demo and the tests need.
# Fast and silent when everything is already there.
set -euo pipefail

# Extra packages may be named as arguments (make bench: nchan, Node).
packages=(
    build-essential nginx nginx-dev libpq-dev libjansson-dev libssl-dev
    postgresql python3-pytest python3-websockets python3-psycopg
    python3-cryptography clang libclang-rt-14-dev dpkg-dev debhelper openssl
    curl ca-certificates prometheus "$@"
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "deps: missing packages and neither root nor sudo:" >&2
    echo "    apt-get install ${missing[*]}" >&2
    exit 1
fi

# Installing nginx, postgresql or prometheus (promtool and a Prometheus for
# t/test_metrics.py) would start the system services (port 80, the system
# cluster, port 9090); policy-rc.d answering 101 forbids that.  Only remove
# the file if it was ours.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    "${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

echo "deps: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
