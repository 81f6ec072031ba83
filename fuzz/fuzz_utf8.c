
/*
 * libFuzzer target of the incremental UTF-8 validator.
 *
 * The input is validated whole, split at two positions taken from its
 * first bytes, and a byte at a time: every way gives the same state, and
 * a byte at a time REJECT appears at the first invalid byte as told by an
 * independent reference decoder, which also gives the verdict.  REJECT is
 * sticky, and length() never exceeds len (and counts the code points of
 * valid input).
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <ngx_http_chat_utf8.h>


#define ACCEPT     NGX_HTTP_CHAT_UTF8_ACCEPT
#define REJECT     NGX_HTTP_CHAT_UTF8_REJECT

#define V_ACCEPT   0
#define V_REJECT   1
#define V_PARTIAL  2


#define fuzz_assert(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: assertion failed: %s\n",                \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* a prefix is bad once the code points it may still become hold none */

static int
ref_possible(uint32_t lo, uint32_t hi, uint32_t min, uint32_t max)
{
    if (lo < min) {
        lo = min;
    }

    if (hi > max) {
        hi = max;
    }

    if (lo > hi) {
        return 0;
    }

    return !(lo >= 0xd800 && hi <= 0xdfff);
}


static int
ref_check(const u_char *p, size_t n, size_t *bad, size_t *chars)
{
    u_char    c;
    size_t    i, k, len, rest;
    uint32_t  v, min, max;

    *bad = (size_t) -1;
    *chars = 0;
    i = 0;

    while (i < n) {
        c = p[i];

        if (c < 0x80) {
            (*chars)++;
            i++;
            continue;
        }

        if (c >= 0xc0 && c < 0xe0) {
            len = 2;
            v = c & 0x1f;
            min = 0x80;
            max = 0x7ff;

        } else if (c >= 0xe0 && c < 0xf0) {
            len = 3;
            v = c & 0x0f;
            min = 0x800;
            max = 0xffff;

        } else if (c >= 0xf0 && c < 0xf8) {
            len = 4;
            v = c & 0x07;
            min = 0x10000;
            max = 0x10ffff;

        } else {
            *bad = i;
            return V_REJECT;
        }

        for (k = 1; ; k++) {
            rest = 6 * (len - k);

            if (!ref_possible(v << rest, (v << rest) | ((1u << rest) - 1),
                              min, max))
            {
                *bad = i + k - 1;
                return V_REJECT;
            }

            if (k == len) {
                break;
            }

            if (i + k == n) {
                return V_PARTIAL;
            }

            c = p[i + k];

            if ((c & 0xc0) != 0x80) {
                *bad = i + k;
                return V_REJECT;
            }

            v = (v << 6) | (c & 0x3f);
        }

        (*chars)++;
        i += len;
    }

    return V_ACCEPT;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int        v;
    size_t     i, a, b, bad, chars, first;
    u_char    *buf;
    uint32_t   whole, s;

    if (size == 0) {
        return 0;
    }

    /* an exact copy, so that reading past the end is caught */

    buf = malloc(size);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data, size);

    whole = ngx_http_chat_utf8_validate(ACCEPT, buf, size);

    /* the verdict of the reference */

    v = ref_check(buf, size, &bad, &chars);

    fuzz_assert((whole == ACCEPT) == (v == V_ACCEPT));
    fuzz_assert((whole == REJECT) == (v == V_REJECT));

    /* split at two positions taken from the first two bytes */

    a = buf[0] % (size + 1);
    b = (size > 1) ? a + buf[1] % (size - a + 1) : a;

    s = ngx_http_chat_utf8_validate(ACCEPT, buf, a);
    s = ngx_http_chat_utf8_validate(s, buf + a, b - a);
    s = ngx_http_chat_utf8_validate(s, buf + b, size - b);

    fuzz_assert(s == whole);

    /* at every position */

    for (i = 0; i <= size && i < 512; i++) {
        s = ngx_http_chat_utf8_validate(ACCEPT, buf, i);
        s = ngx_http_chat_utf8_validate(s, buf + i, size - i);

        fuzz_assert(s == whole);
    }

    /* a byte at a time: REJECT first at the first invalid byte */

    s = ACCEPT;
    first = (size_t) -1;

    for (i = 0; i < size; i++) {
        s = ngx_http_chat_utf8_validate(s, buf + i, 1);

        if (s == REJECT && first == (size_t) -1) {
            first = i;
        }
    }

    fuzz_assert(s == whole);
    fuzz_assert(first == bad);

    /* sticky */

    fuzz_assert(ngx_http_chat_utf8_validate(REJECT, buf, size) == REJECT);

    /* the length */

    fuzz_assert(ngx_http_chat_utf8_length(buf, size) <= size);
    fuzz_assert(ngx_http_chat_utf8_length(buf, a) <= a);

    if (whole == ACCEPT) {
        fuzz_assert(ngx_http_chat_utf8_length(buf, size) == chars);
    }

    free(buf);

    return 0;
}
