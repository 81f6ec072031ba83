
/*
 * libFuzzer target of the file type sniffer.
 *
 * The input is a file's head, sniffed from an exact copy (a read past the
 * end is an ASan report), whole and not.  Checked: the type is one of the
 * seven; image is set for the four image types only; a size is both sides
 * or neither, at most 100000 each, and only for images; whole changes
 * nothing but text cut inside a sequence (then octet-stream); text is
 * valid UTF-8 so far, without a forbidden control character; more than the
 * head gives what the head gives.  And prefixes agree with the whole: a
 * prefix as long as a signature has the whole's type, a size a prefix
 * tells is the whole's, and every prefix of text is text.  The prefixes:
 * every one for a short input, else a few (the last byte picks one).
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <ngx_http_chat_utf8.h>
#include <ngx_http_chat_sniff.h>


#define HEAD  NGX_HTTP_CHAT_SNIFF_HEAD


#define fuzz_assert(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: assertion failed: %s\n",                \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* the types, with the length of the signature that tells each */

static const struct {
    const char  *type;
    size_t       sig;
    int          image;
} types[] = {
    { "image/png", 8, 1 },
    { "image/jpeg", 3, 1 },
    { "image/gif", 6, 1 },
    { "image/webp", 12, 1 },
    { "application/pdf", 5, 0 },
    { "text/plain; charset=utf-8", 0, 0 },
    { "application/octet-stream", 0, 0 }
};

#define NTYPES  (sizeof(types) / sizeof(types[0]))
#define TEXT    5
#define OCTET   6


/* the index of out's type in types[], after checking all of out */

static size_t
check(const ngx_http_chat_sniff_t *out, const u_char *p, size_t len,
    ngx_uint_t whole)
{
    size_t    i, t;
    uint32_t  state;

    fuzz_assert(out->type != NULL);

    for (t = 0; t < NTYPES; t++) {
        if (strcmp(out->type, types[t].type) == 0) {
            break;
        }
    }

    fuzz_assert(t < NTYPES);
    fuzz_assert(out->image == (ngx_uint_t) types[t].image);
    fuzz_assert((out->width == 0) == (out->height == 0));
    fuzz_assert(out->width <= 100000 && out->height <= 100000);

    if (!types[t].image) {
        fuzz_assert(out->width == 0);
    }

    if (len == 0) {
        fuzz_assert(t == OCTET);
    }

    if (t == TEXT) {
        if (len > HEAD) {
            len = HEAD;
            whole = 0;
        }

        if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
            p += 3;
            len -= 3;
        }

        for (i = 0; i < len; i++) {
            fuzz_assert(p[i] >= 0x20 || p[i] == '\t' || p[i] == '\n'
                        || p[i] == '\f' || p[i] == '\r');
        }

        state = ngx_http_chat_utf8_validate(NGX_HTTP_CHAT_UTF8_ACCEPT,
                                            p, len);

        fuzz_assert(state != NGX_HTTP_CHAT_UTF8_REJECT);

        if (whole) {
            fuzz_assert(state == NGX_HTTP_CHAT_UTF8_ACCEPT);
        }
    }

    return t;
}


static size_t
sniff(const u_char *data, size_t len, ngx_uint_t whole,
    ngx_http_chat_sniff_t *out)
{
    u_char  *copy;

    copy = malloc(len ? len : 1);
    fuzz_assert(copy != NULL);

    memcpy(copy, data, len);

    memset(out, 0x5a, sizeof(ngx_http_chat_sniff_t));
    ngx_http_chat_sniff_detect(copy, len, whole, out);

    free(copy);

    return check(out, data, len, whole);
}


static void
prefix(const u_char *data, size_t k, size_t t,
    const ngx_http_chat_sniff_t *all)
{
    size_t                 tk;
    ngx_http_chat_sniff_t  s;

    tk = sniff(data, k, 0, &s);

    if (t < TEXT && k >= types[t].sig) {
        fuzz_assert(tk == t);
    }

    if (tk < TEXT) {
        fuzz_assert(tk == t);

        if (s.width) {
            fuzz_assert(s.width == all->width && s.height == all->height);
        }
    }

    if (t == TEXT && k > 0) {
        fuzz_assert(tk == TEXT);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                 t0, t1, k;
    ngx_http_chat_sniff_t  s0, s1, h;

    t0 = sniff(data, size, 0, &s0);
    t1 = sniff(data, size, 1, &s1);

    /* whole matters only to text cut inside a sequence */

    if (t0 == TEXT) {
        fuzz_assert(t1 == TEXT || t1 == OCTET);

    } else {
        fuzz_assert(t1 == t0);
    }

    if (t1 == TEXT) {
        fuzz_assert(t0 == TEXT);
    }

    fuzz_assert(s0.width == s1.width && s0.height == s1.height);

    /* past the head nothing is read */

    if (size > HEAD) {
        fuzz_assert(t1 == t0);
        fuzz_assert(sniff(data, HEAD, 0, &h) == t0);
        fuzz_assert(h.width == s0.width && h.height == s0.height);
    }

    /* prefixes */

    if (size <= 64) {
        for (k = 0; k < size; k++) {
            prefix(data, k, t0, &s0);
        }

    } else {
        prefix(data, size - 1, t0, &s0);
        prefix(data, size / 2, t0, &s0);
        prefix(data, 30, t0, &s0);
        prefix(data, (size_t) data[size - 1] * size / 256, t0, &s0);
    }

    return 0;
}
