#!/usr/bin/env bash
# `make fuzz`: every libFuzzer target fuzz/fuzz_X.c for SECONDS seconds.
#
# The parsers are plain C without nginx, so each target links them
# directly.  The corpus grows in build/fuzz/corpus/X/ (seeded from
# fuzz/corpus/X/ and kept between runs); crashes land in
# build/fuzz/artifacts/X-*.  The request target is seeded with the JSON
# corpus of the tests (t/data/json) as well, and a target with a script
# fuzz/X_seeds.py by the files it writes (sniff: files of each type).
set -euo pipefail

seconds=${1:-10}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$REPO/build/fuzz
cd "$REPO"

parsers=(src/ngx_http_chat_utf8.c src/ngx_http_chat_frame.c
         src/ngx_http_chat_jwt.c src/ngx_http_chat_request.c
         src/ngx_http_chat_route.c src/ngx_http_chat_sniff.c
         src/ngx_http_chat_base64url.c src/ngx_http_chat_ece.c
         src/ngx_http_chat_vapid.c src/ngx_http_chat_subscription.c)

mkdir -p "$OUT/artifacts"
shopt -s nullglob
targets=(fuzz/fuzz_*.c)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no fuzz/fuzz_*.c" >&2; exit 1; }

failed=0
for src in "${targets[@]}"; do
    name=$(basename "$src" .c)
    x=${name#fuzz_}
    bin=$OUT/$name
    corpus=$OUT/corpus/$x
    log=$OUT/$name.log

    clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc "$src" \
        "${parsers[@]}" -ljansson -lcrypto -o "$bin" ||
        { echo "fuzz: $x: the build failed" >&2; exit 1; }

    mkdir -p "$corpus"
    seeds=(fuzz/corpus/"$x"/*)
    [ ${#seeds[@]} -eq 0 ] || cp -f "${seeds[@]}" "$corpus/"
    if [ "$x" = request ]; then
        # valid, invalid and implementation-defined JSON
        json=(t/data/json/*.json)
        [ ${#json[@]} -gt 0 ] || { echo "fuzz: no t/data/json/" >&2; exit 1; }
        cp -f "${json[@]}" "$corpus/"
    fi
    if [ -f "fuzz/${x}_seeds.py" ]; then
        python3 "fuzz/${x}_seeds.py" "$corpus" ||
            { echo "fuzz: $x: fuzz/${x}_seeds.py failed" >&2; exit 1; }
    fi

    # libFuzzer exits non-zero on a crash, a leak, a timeout or an OOM
    start=$SECONDS
    if "$bin" "$corpus" -max_total_time="$seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$OUT/artifacts/$x-" >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        units=$(find "$corpus" -type f | wc -l)
        echo "fuzz: $x ok: ${execs:-?} execs in $((SECONDS - start)) s," \
             "corpus $units files"
    else
        failed=1
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" |
                tail -n 1)
        echo "fuzz: $x FAILED: ${crash:-no crash file} (log $log)" >&2
        grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -n 5 >&2 || true
    fi
done

exit "$failed"
