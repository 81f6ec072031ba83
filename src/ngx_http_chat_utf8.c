
/*
 * Incremental UTF-8 validation.
 *
 * The state packs what the next bytes must be: the number of continuation
 * bytes still expected, and the allowed range of the next one.  The range
 * of the first continuation byte is narrowed for E0, ED, F0 and F4 leads,
 * which is how overlong forms, UTF-16 surrogates and code points above
 * U+10FFFF are refused at the earliest byte (RFC 3629, section 4).
 *
 *   bits 0-7    lowest allowed next byte (0 when no sequence is open)
 *   bits 8-15   highest allowed next byte
 *   bits 16-17  continuation bytes still expected
 */


#include <ngx_http_chat_utf8.h>


#define ngx_http_chat_utf8_state(need, lo, hi)                               \
    (((uint32_t) (need) << 16) | ((uint32_t) (hi) << 8) | (uint32_t) (lo))


uint32_t
ngx_http_chat_utf8_validate(uint32_t state, const u_char *p, size_t len)
{
    u_char         c;
    uint32_t       need, lo, hi;
    uint64_t       w;
    const u_char  *last;

    if (state == NGX_HTTP_CHAT_UTF8_REJECT) {
        return state;
    }

    last = p + len;

    while (p < last) {

        if (state == NGX_HTTP_CHAT_UTF8_ACCEPT) {

            /* ASCII fast path: eight bytes at a time while all are < 0x80 */

            while (last - p >= 8) {
                memcpy(&w, p, 8);

                if (w & 0x8080808080808080ULL) {
                    break;
                }

                p += 8;
            }

            if (p == last) {
                break;
            }

            c = *p++;

            if (c < 0x80) {
                continue;
            }

            if (c < 0xc2) {
                /* a stray continuation byte or an overlong C0/C1 lead */
                return NGX_HTTP_CHAT_UTF8_REJECT;
            }

            if (c < 0xe0) {
                state = ngx_http_chat_utf8_state(1, 0x80, 0xbf);

            } else if (c == 0xe0) {
                state = ngx_http_chat_utf8_state(2, 0xa0, 0xbf);

            } else if (c == 0xed) {
                /* U+D800..U+DFFF are surrogates, never characters */
                state = ngx_http_chat_utf8_state(2, 0x80, 0x9f);

            } else if (c < 0xf0) {
                state = ngx_http_chat_utf8_state(2, 0x80, 0xbf);

            } else if (c == 0xf0) {
                state = ngx_http_chat_utf8_state(3, 0x90, 0xbf);

            } else if (c < 0xf4) {
                state = ngx_http_chat_utf8_state(3, 0x80, 0xbf);

            } else if (c == 0xf4) {
                state = ngx_http_chat_utf8_state(3, 0x80, 0x8f);

            } else {
                return NGX_HTTP_CHAT_UTF8_REJECT;
            }

            continue;
        }

        c = *p++;

        need = state >> 16;
        lo = state & 0xff;
        hi = (state >> 8) & 0xff;

        if (c < lo || c > hi) {
            return NGX_HTTP_CHAT_UTF8_REJECT;
        }

        need--;

        state = (need == 0) ? NGX_HTTP_CHAT_UTF8_ACCEPT
                            : ngx_http_chat_utf8_state(need, 0x80, 0xbf);
    }

    return state;
}


size_t
ngx_http_chat_utf8_length(const u_char *p, size_t len)
{
    size_t         n;
    const u_char  *last;

    n = 0;
    last = p + len;

    /* every byte but a continuation byte starts a character */

    while (p < last) {
        n += ((*p++ & 0xc0) != 0x80);
    }

    return n;
}
