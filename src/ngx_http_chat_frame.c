
/*
 * WebSocket frame parser and header encoder (RFC 6455, section 5).
 *
 * Every check is made at the earliest byte that decides it, so that a peer
 * which sends a bad header, an oversized length or an invalid UTF-8 byte is
 * failed at once instead of after the rest of its message arrives.
 */


#include <string.h>

#include <ngx_http_chat_frame.h>
#include <ngx_http_chat_utf8.h>


enum {
    ngx_http_chat_st_start = 0,
    ngx_http_chat_st_len,
    ngx_http_chat_st_ext_len,
    ngx_http_chat_st_mask,
    ngx_http_chat_st_payload,
    ngx_http_chat_st_control,
    ngx_http_chat_st_error
};


static ngx_http_chat_frame_rc_e ngx_http_chat_frame_fail(
    ngx_http_chat_frame_parser_t *p, unsigned code, const char *error);
static ngx_http_chat_frame_rc_e ngx_http_chat_frame_opcode(
    ngx_http_chat_frame_parser_t *p);
static ngx_http_chat_frame_rc_e ngx_http_chat_frame_length(
    ngx_http_chat_frame_parser_t *p);
static ngx_http_chat_frame_rc_e ngx_http_chat_frame_header_done(
    ngx_http_chat_frame_parser_t *p);
static ngx_http_chat_frame_rc_e ngx_http_chat_frame_end(
    ngx_http_chat_frame_parser_t *p);
static ngx_http_chat_frame_rc_e ngx_http_chat_frame_control(
    ngx_http_chat_frame_parser_t *p);
static void ngx_http_chat_frame_unmask(ngx_http_chat_frame_parser_t *p,
    u_char *data, size_t len);


void
ngx_http_chat_frame_reset(ngx_http_chat_frame_parser_t *p)
{
    ngx_http_chat_frame_parser_t  saved;

    saved = *p;

    memset(p, 0, sizeof(ngx_http_chat_frame_parser_t));

    p->max_message = saved.max_message;
    p->max_fragments = saved.max_fragments;
    p->text_only = saved.text_only;
    p->from_server = saved.from_server;
}


ngx_http_chat_frame_rc_e
ngx_http_chat_frame_parse(ngx_http_chat_frame_parser_t *p, u_char **pos,
    u_char *last, u_char **data, size_t *len)
{
    u_char                    *b, c;
    size_t                     n;
    ngx_http_chat_frame_rc_e   rc;

    b = *pos;

    for ( ;; ) {

        switch (p->state) {

        case ngx_http_chat_st_error:
            return NGX_HTTP_CHAT_FRAME_ERROR;

        case ngx_http_chat_st_payload:

            if (p->remaining == 0) {
                rc = ngx_http_chat_frame_end(p);
                if (rc != NGX_HTTP_CHAT_FRAME_AGAIN) {
                    *pos = b;
                    return rc;
                }
                continue;
            }

            if (b == last) {
                *pos = b;
                return NGX_HTTP_CHAT_FRAME_AGAIN;
            }

            n = (size_t) (last - b);
            if ((uint64_t) n > p->remaining) {
                n = (size_t) p->remaining;
            }

            ngx_http_chat_frame_unmask(p, b, n);

            if (p->msg_opcode == NGX_HTTP_CHAT_OP_TEXT) {
                p->utf8 = ngx_http_chat_utf8_validate(p->utf8, b, n);

                if (p->utf8 == NGX_HTTP_CHAT_UTF8_REJECT) {
                    *pos = b + n;
                    return ngx_http_chat_frame_fail(p,
                                             NGX_HTTP_CHAT_CLOSE_INVALID_DATA,
                                             "invalid UTF-8 in a text message");
                }
            }

            p->remaining -= n;

            *data = b;
            *len = n;
            *pos = b + n;

            return NGX_HTTP_CHAT_FRAME_DATA;

        case ngx_http_chat_st_control:

            if (p->remaining == 0) {
                *pos = b;
                return ngx_http_chat_frame_control(p);
            }

            if (b == last) {
                *pos = b;
                return NGX_HTTP_CHAT_FRAME_AGAIN;
            }

            n = (size_t) (last - b);
            if ((uint64_t) n > p->remaining) {
                n = (size_t) p->remaining;
            }

            ngx_http_chat_frame_unmask(p, b, n);
            memcpy(p->control + p->control_len, b, n);

            p->control_len += (u_char) n;
            p->remaining -= n;
            b += n;

            continue;

        default:
            break;
        }

        /* the header, a byte at a time */

        if (b == last) {
            *pos = b;
            return NGX_HTTP_CHAT_FRAME_AGAIN;
        }

        c = *b++;

        switch (p->state) {

        case ngx_http_chat_st_start:

            if (c & 0x70) {
                *pos = b;
                return ngx_http_chat_frame_fail(p,
                                       NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                       "reserved bits set without extension");
            }

            p->fin = (c & 0x80) ? 1 : 0;
            p->opcode = c & 0x0f;
            p->state = ngx_http_chat_st_len;

            rc = ngx_http_chat_frame_opcode(p);
            if (rc != NGX_HTTP_CHAT_FRAME_AGAIN) {
                *pos = b;
                return rc;
            }

            break;

        case ngx_http_chat_st_len:

            p->masked = (c & 0x80) ? 1 : 0;
            p->frame_len = c & 0x7f;
            p->mask_pos = 0;

            if (p->masked == p->from_server) {
                *pos = b;
                return ngx_http_chat_frame_fail(p,
                                       NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                       p->from_server ? "masked server frame"
                                                      : "unmasked client frame");
            }

            if ((p->opcode & 0x08) && p->frame_len > NGX_HTTP_CHAT_CONTROL_MAX)
            {
                *pos = b;
                return ngx_http_chat_frame_fail(p,
                                             NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                             "control frame over 125 bytes");
            }

            if (p->frame_len == 126) {
                p->need = 2;
                p->ext64 = 0;
                p->frame_len = 0;
                p->state = ngx_http_chat_st_ext_len;

            } else if (p->frame_len == 127) {
                p->need = 8;
                p->ext64 = 1;
                p->frame_len = 0;
                p->state = ngx_http_chat_st_ext_len;

            } else {
                rc = ngx_http_chat_frame_length(p);
                if (rc != NGX_HTTP_CHAT_FRAME_AGAIN) {
                    *pos = b;
                    return rc;
                }
            }

            break;

        case ngx_http_chat_st_ext_len:

            if (p->ext64 && p->need == 8 && (c & 0x80)) {
                *pos = b;
                return ngx_http_chat_frame_fail(p,
                                         NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                         "64-bit length with the high bit set");
            }

            p->frame_len = (p->frame_len << 8) | c;

            if (--p->need) {
                break;
            }

            /* RFC 6455 5.2: the minimal number of bytes MUST be used */

            if (p->frame_len < (p->ext64 ? 65536 : 126)) {
                *pos = b;
                return ngx_http_chat_frame_fail(p,
                                             NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                             "length not minimally encoded");
            }

            rc = ngx_http_chat_frame_length(p);
            if (rc != NGX_HTTP_CHAT_FRAME_AGAIN) {
                *pos = b;
                return rc;
            }

            break;

        default: /* ngx_http_chat_st_mask */

            p->mask[4 - p->need] = c;

            if (--p->need) {
                break;
            }

            rc = ngx_http_chat_frame_header_done(p);
            if (rc != NGX_HTTP_CHAT_FRAME_AGAIN) {
                *pos = b;
                return rc;
            }

            break;
        }
    }
}


/* the first byte decides what the opcode allows */

static ngx_http_chat_frame_rc_e
ngx_http_chat_frame_opcode(ngx_http_chat_frame_parser_t *p)
{
    if (p->opcode & 0x08) {

        if (p->opcode > NGX_HTTP_CHAT_OP_PONG) {
            return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                            "reserved control opcode");
        }

        if (!p->fin) {
            return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                            "fragmented control frame");
        }

        return NGX_HTTP_CHAT_FRAME_AGAIN;
    }

    switch (p->opcode) {

    case NGX_HTTP_CHAT_OP_CONTINUATION:
        if (p->msg_opcode == 0) {
            return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                            "continuation without a message");
        }
        break;

    case NGX_HTTP_CHAT_OP_TEXT:
    case NGX_HTTP_CHAT_OP_BINARY:
        if (p->msg_opcode != 0) {
            return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                       "new message inside a fragmented one");
        }

        if (p->opcode == NGX_HTTP_CHAT_OP_BINARY && p->text_only) {
            return ngx_http_chat_frame_fail(p,
                                       NGX_HTTP_CHAT_CLOSE_UNSUPPORTED,
                                       "binary messages are not accepted");
        }

        p->msg_opcode = p->opcode;
        p->msg_size = 0;
        p->fragments = 0;
        p->utf8 = NGX_HTTP_CHAT_UTF8_ACCEPT;
        break;

    default:
        return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                        "reserved data opcode");
    }

    p->fragments++;

    if (p->max_fragments && p->fragments > p->max_fragments) {
        return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_POLICY,
                                        "too many fragments");
    }

    return NGX_HTTP_CHAT_FRAME_AGAIN;
}


/* the length is known: the size limit is decided before any payload */

static ngx_http_chat_frame_rc_e
ngx_http_chat_frame_length(ngx_http_chat_frame_parser_t *p)
{
    if (!(p->opcode & 0x08)) {

        if (p->max_message
            && (p->frame_len > p->max_message
                || p->msg_size + p->frame_len > p->max_message))
        {
            return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_TOO_BIG,
                                            "message too big");
        }

        p->msg_size += p->frame_len;
    }

    if (p->masked) {
        p->need = 4;
        p->state = ngx_http_chat_st_mask;
        return NGX_HTTP_CHAT_FRAME_AGAIN;
    }

    return ngx_http_chat_frame_header_done(p);
}


static ngx_http_chat_frame_rc_e
ngx_http_chat_frame_header_done(ngx_http_chat_frame_parser_t *p)
{
    p->remaining = p->frame_len;

    if (p->opcode & 0x08) {
        p->control_len = 0;
        p->state = ngx_http_chat_st_control;

    } else {
        p->state = ngx_http_chat_st_payload;
    }

    return NGX_HTTP_CHAT_FRAME_AGAIN;
}


static ngx_http_chat_frame_rc_e
ngx_http_chat_frame_end(ngx_http_chat_frame_parser_t *p)
{
    if (!p->fin) {
        p->state = ngx_http_chat_st_start;
        return NGX_HTTP_CHAT_FRAME_AGAIN;
    }

    if (p->msg_opcode == NGX_HTTP_CHAT_OP_TEXT
        && p->utf8 != NGX_HTTP_CHAT_UTF8_ACCEPT)
    {
        return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_INVALID_DATA,
                                        "text message ends inside a "
                                        "UTF-8 sequence");
    }

    p->message_opcode = p->msg_opcode;
    p->msg_opcode = 0;
    p->state = ngx_http_chat_st_start;

    return NGX_HTTP_CHAT_FRAME_MESSAGE;
}


static ngx_http_chat_frame_rc_e
ngx_http_chat_frame_control(ngx_http_chat_frame_parser_t *p)
{
    unsigned  code;

    p->state = ngx_http_chat_st_start;

    switch (p->opcode) {

    case NGX_HTTP_CHAT_OP_PING:
        return NGX_HTTP_CHAT_FRAME_PING;

    case NGX_HTTP_CHAT_OP_PONG:
        return NGX_HTTP_CHAT_FRAME_PONG;

    default: /* NGX_HTTP_CHAT_OP_CLOSE */
        break;
    }

    if (p->control_len == 0) {
        p->close_code = NGX_HTTP_CHAT_CLOSE_NO_STATUS;
        return NGX_HTTP_CHAT_FRAME_CLOSE;
    }

    if (p->control_len == 1) {
        return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                        "close frame with a 1-byte payload");
    }

    code = ((unsigned) p->control[0] << 8) | p->control[1];

    if (!ngx_http_chat_frame_close_code_valid(code)) {
        return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_PROTOCOL,
                                        "invalid close code");
    }

    if (ngx_http_chat_utf8_validate(NGX_HTTP_CHAT_UTF8_ACCEPT,
                                    p->control + 2, p->control_len - 2)
        != NGX_HTTP_CHAT_UTF8_ACCEPT)
    {
        return ngx_http_chat_frame_fail(p, NGX_HTTP_CHAT_CLOSE_INVALID_DATA,
                                        "invalid UTF-8 in a close reason");
    }

    p->close_code = (uint16_t) code;

    return NGX_HTTP_CHAT_FRAME_CLOSE;
}


static ngx_http_chat_frame_rc_e
ngx_http_chat_frame_fail(ngx_http_chat_frame_parser_t *p, unsigned code,
    const char *error)
{
    p->state = ngx_http_chat_st_error;
    p->close_code = (uint16_t) code;
    p->error = error;

    return NGX_HTTP_CHAT_FRAME_ERROR;
}


static void
ngx_http_chat_frame_unmask(ngx_http_chat_frame_parser_t *p, u_char *data,
    size_t len)
{
    size_t    i;
    unsigned  k;

    if (!p->masked) {
        return;
    }

    k = p->mask_pos;

    for (i = 0; i < len; i++) {
        data[i] ^= p->mask[k];
        k = (k + 1) & 3;
    }

    p->mask_pos = k;
}


int
ngx_http_chat_frame_close_code_valid(unsigned code)
{
    /*
     * 1004 is reserved, 1005 and 1006 are never sent on the wire, 1015 is
     * for TLS failures; 1016-2999 are unassigned; 3000-4999 belong to
     * libraries and applications (RFC 6455 7.4, the IANA registry).
     */

    if (code >= 1000 && code <= 1003) {
        return 1;
    }

    if (code >= 1007 && code <= 1014) {
        return 1;
    }

    return code >= 3000 && code <= 4999;
}


size_t
ngx_http_chat_frame_header(u_char *buf, unsigned opcode, unsigned fin,
    uint64_t len, const u_char *mask)
{
    size_t    n;
    unsigned  i;

    buf[0] = (u_char) ((fin ? 0x80 : 0) | (opcode & 0x0f));

    if (len < 126) {
        buf[1] = (u_char) len;
        n = 2;

    } else if (len < 65536) {
        buf[1] = 126;
        buf[2] = (u_char) (len >> 8);
        buf[3] = (u_char) len;
        n = 4;

    } else {
        buf[1] = 127;

        for (i = 0; i < 8; i++) {
            buf[2 + i] = (u_char) (len >> (56 - 8 * i));
        }

        n = 10;
    }

    if (mask != NULL) {
        buf[1] |= 0x80;
        memcpy(buf + n, mask, 4);
        n += 4;
    }

    return n;
}
