
/*
 * base64url without padding.
 */


#include <limits.h>
#include <stdint.h>

#include "ngx_http_chat_base64url.h"


static const u_char  ngx_http_chat_base64url_basis[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


/* alphabet values; 77 marks every other byte */
static const u_char  ngx_http_chat_base64url_values[256] = {
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 62, 77, 77,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 77, 77, 77, 77, 77, 77,
    77,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 77, 77, 77, 77, 63,
    77, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 77, 77, 77, 77, 77,

    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 77
};


size_t
ngx_http_chat_base64url_encode(u_char *dst, const u_char *src, size_t len)
{
    u_char        *d;
    const u_char  *b;

    b = ngx_http_chat_base64url_basis;
    d = dst;

    while (len > 2) {
        *d++ = b[(src[0] >> 2) & 0x3f];
        *d++ = b[((src[0] & 3) << 4) | (src[1] >> 4)];
        *d++ = b[((src[1] & 0x0f) << 2) | (src[2] >> 6)];
        *d++ = b[src[2] & 0x3f];

        src += 3;
        len -= 3;
    }

    if (len == 2) {
        *d++ = b[(src[0] >> 2) & 0x3f];
        *d++ = b[((src[0] & 3) << 4) | (src[1] >> 4)];
        *d++ = b[(src[1] & 0x0f) << 2];

    } else if (len == 1) {
        *d++ = b[(src[0] >> 2) & 0x3f];
        *d++ = b[(src[0] & 3) << 4];
    }

    return (size_t) (d - dst);
}


/*
 * Strict RFC 4648 section 5 without padding: one spelling per byte string,
 * so a length of 1 mod 4 and nonzero unused low bits are refused.
 */

ssize_t
ngx_http_chat_base64url_decode(u_char *dst, const u_char *src, size_t len)
{
    size_t         i;
    u_char        *d;
    u_char         a, b, c, e;
    const u_char  *t;

    t = ngx_http_chat_base64url_values;

    if (len % 4 == 1 || len > SSIZE_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (t[src[i]] == 77) {
            return -1;
        }
    }

    d = dst;

    while (len > 3) {
        a = t[src[0]];
        b = t[src[1]];
        c = t[src[2]];
        e = t[src[3]];

        *d++ = (u_char) (a << 2 | b >> 4);
        *d++ = (u_char) (b << 4 | c >> 2);
        *d++ = (u_char) (c << 6 | e);

        src += 4;
        len -= 4;
    }

    if (len == 2) {
        a = t[src[0]];
        b = t[src[1]];

        if (b & 0x0f) {
            return -1;
        }

        *d++ = (u_char) (a << 2 | b >> 4);

    } else if (len == 3) {
        a = t[src[0]];
        b = t[src[1]];
        c = t[src[2]];

        if (c & 0x03) {
            return -1;
        }

        *d++ = (u_char) (a << 2 | b >> 4);
        *d++ = (u_char) (b << 4 | c >> 2);
    }

    return d - dst;
}
