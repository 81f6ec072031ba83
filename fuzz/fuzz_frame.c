
/*
 * libFuzzer target of the WebSocket frame parser.
 *
 * The first byte chooses the limits and the role, the second the split
 * pattern; the rest is the stream, parsed from a writable copy whole and
 * again in chunks.  Checked on each event: positions and DATA chunks stay
 * inside the input, AGAIN means the input was used up, no message outgrows
 * max_message, a text message's DATA is valid UTF-8 so far and complete at
 * MESSAGE, control payloads fit, CLOSE codes are valid, ERROR carries one
 * of 1002/1003/1007/1008/1009 (each only where its limit is set) and stays.
 * Both runs must tell the same events, payload and control bytes.
 *
 *   byte 0:  bits 0-1  max_message: none, 16, 300, 70000
 *            bits 2-3  max_fragments: none, 1, 2, 5
 *            bit 4     text_only
 *            bit 5     from_server
 *            bits 6-7  split: a byte at a time, a fixed step, pseudo-random
 *                      chunks, two parts
 *   byte 1:  the step, the seed or the cut
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <ngx_http_chat_frame.h>
#include <ngx_http_chat_utf8.h>


#define EV_MAX  4096


#define fuzz_assert(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: assertion failed: %s\n",                \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


typedef struct {
    uint64_t     max_message;
    uint32_t     max_fragments;
    unsigned     text_only;
    unsigned     from_server;
} conf_t;


typedef struct {
    char        *ev;            /* a letter an event, DATA runs as one */
    size_t       nev;
    u_char      *data;          /* the DATA payload, concatenated */
    size_t       ndata;
    size_t       run_start;     /* ndata where the last DATA run began */
    u_char      *ctl;           /* control payloads, concatenated */
    size_t       nctl;
    unsigned     code;          /* close codes and the error, summed */
    unsigned     error;         /* the close code of the ERROR, or 0 */
} trace_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
trace_event(trace_t *t, char e)
{
    if (e == 'D') {
        if (t->nev && t->ev[t->nev - 1] == 'D') {
            return;
        }

        t->run_start = t->ndata;
    }

    if (t->nev < EV_MAX) {
        t->ev[t->nev++] = e;
    }
}


/* the chunk ends: at cuts[i] for i < ncuts, then at n */

static void
parse(const conf_t *c, const u_char *in, size_t n, const size_t *cuts,
    size_t ncuts, trace_t *t)
{
    int                            text;
    u_char                        *buf, *pos, *before, *last, *data;
    size_t                         i, end, len;
    uint32_t                       utf8;
    uint64_t                       msg;
    unsigned                       code;
    ngx_http_chat_frame_rc_e       rc;
    ngx_http_chat_frame_parser_t   p;

    buf = malloc(n ? n : 1);
    t->ev = malloc(EV_MAX);
    t->data = malloc(n ? n : 1);
    t->ctl = malloc(n ? n : 1);

    fuzz_assert(buf && t->ev && t->data && t->ctl);

    memcpy(buf, in, n);

    memset(&p, 0, sizeof(ngx_http_chat_frame_parser_t));
    p.max_message = c->max_message;
    p.max_fragments = c->max_fragments;
    p.text_only = c->text_only;
    p.from_server = c->from_server;

    msg = 0;
    text = 0;
    utf8 = NGX_HTTP_CHAT_UTF8_ACCEPT;
    pos = buf;

    for (i = 0; i <= ncuts; i++) {
        end = (i < ncuts) ? cuts[i] : n;
        last = buf + end;

        fuzz_assert(pos <= last);

        for ( ;; ) {
            before = pos;
            data = NULL;
            len = 0;

            rc = ngx_http_chat_frame_parse(&p, &pos, last, &data, &len);

            fuzz_assert(pos >= before && pos <= last);

            if (rc != NGX_HTTP_CHAT_FRAME_ERROR && p.max_fragments) {
                fuzz_assert(p.fragments <= p.max_fragments);
            }

            switch (rc) {

            case NGX_HTTP_CHAT_FRAME_AGAIN:
                fuzz_assert(pos == last);
                break;

            case NGX_HTTP_CHAT_FRAME_DATA:
                fuzz_assert(len > 0);
                fuzz_assert(data >= before && data + len == pos);
                fuzz_assert(data >= buf && data + len <= buf + n);

                fuzz_assert(p.msg_opcode == NGX_HTTP_CHAT_OP_TEXT
                            || p.msg_opcode == NGX_HTTP_CHAT_OP_BINARY);
                fuzz_assert(!(p.text_only
                              && p.msg_opcode == NGX_HTTP_CHAT_OP_BINARY));

                msg += len;

                if (p.max_message) {
                    fuzz_assert(msg <= p.max_message);
                }

                /* text is returned only as far as it is valid */

                if (p.msg_opcode == NGX_HTTP_CHAT_OP_TEXT) {
                    text = 1;
                    utf8 = ngx_http_chat_utf8_validate(utf8, data, len);
                    fuzz_assert(utf8 != NGX_HTTP_CHAT_UTF8_REJECT);
                }

                trace_event(t, 'D');
                memcpy(t->data + t->ndata, data, len);
                t->ndata += len;

                continue;

            case NGX_HTTP_CHAT_FRAME_MESSAGE:
                if (text) {
                    fuzz_assert(utf8 == NGX_HTTP_CHAT_UTF8_ACCEPT);
                }

                fuzz_assert(p.msg_opcode == 0);

                msg = 0;
                text = 0;
                utf8 = NGX_HTTP_CHAT_UTF8_ACCEPT;

                trace_event(t, 'M');
                continue;

            case NGX_HTTP_CHAT_FRAME_PING:
            case NGX_HTTP_CHAT_FRAME_PONG:
            case NGX_HTTP_CHAT_FRAME_CLOSE:
                fuzz_assert(p.control_len <= NGX_HTTP_CHAT_CONTROL_MAX);
                fuzz_assert(t->nctl + p.control_len <= n);

                memcpy(t->ctl + t->nctl, p.control, p.control_len);
                t->nctl += p.control_len;

                if (rc == NGX_HTTP_CHAT_FRAME_CLOSE) {
                    if (p.control_len == 0) {
                        fuzz_assert(p.close_code == 1005);

                    } else {
                        fuzz_assert(p.control_len >= 2);
                        fuzz_assert(ngx_http_chat_frame_close_code_valid(
                                        p.close_code));
                        fuzz_assert(p.close_code
                                    == (((unsigned) p.control[0] << 8)
                                        | p.control[1]));
                        fuzz_assert(ngx_http_chat_utf8_validate(
                                        NGX_HTTP_CHAT_UTF8_ACCEPT,
                                        p.control + 2, p.control_len - 2)
                                    == NGX_HTTP_CHAT_UTF8_ACCEPT);
                    }

                    t->code += p.close_code;
                    trace_event(t, 'C');

                } else {
                    trace_event(t, rc == NGX_HTTP_CHAT_FRAME_PING ? 'P'
                                                                  : 'O');
                }

                continue;

            default:
                fuzz_assert(rc == NGX_HTTP_CHAT_FRAME_ERROR);
                fuzz_assert(p.error != NULL);

                code = p.close_code;

                fuzz_assert(code == 1002 || code == 1003 || code == 1007
                            || code == 1008 || code == 1009);
                fuzz_assert(code != 1003 || p.text_only);
                fuzz_assert(code != 1008 || p.max_fragments);
                fuzz_assert(code != 1009 || p.max_message);

                trace_event(t, 'E');
                t->error = code;

                /* it stays: with the rest of the chunk, all, or nothing */

                fuzz_assert(ngx_http_chat_frame_parse(&p, &pos, last, &data,
                                                      &len)
                            == NGX_HTTP_CHAT_FRAME_ERROR);
                fuzz_assert(ngx_http_chat_frame_parse(&p, &pos, buf + n,
                                                      &data, &len)
                            == NGX_HTTP_CHAT_FRAME_ERROR);
                fuzz_assert(ngx_http_chat_frame_parse(&p, &pos, pos, &data,
                                                      &len)
                            == NGX_HTTP_CHAT_FRAME_ERROR);
                fuzz_assert(p.close_code == code);

                goto done;
            }

            break;
        }
    }

done:

    free(buf);
}


/*
 * An invalid UTF-8 byte fails its chunk before the chunk's valid bytes are
 * returned, so the DATA run just before ERROR depends on the split: it is
 * left out of the comparison.
 */

static void
trace_trim(trace_t *t)
{
    if (t->nev >= 2
        && t->ev[t->nev - 1] == 'E'
        && t->ev[t->nev - 2] == 'D')
    {
        t->ev[t->nev - 2] = 'E';
        t->nev--;
        t->ndata = t->run_start;
    }
}


static void
trace_free(trace_t *t)
{
    free(t->ev);
    free(t->data);
    free(t->ctl);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          n, i, k, step, *cuts, ncuts;
    conf_t          c;
    trace_t         whole, split;
    uint32_t        seed;
    const u_char   *in;

    static const uint64_t  max_message[] = { 0, 16, 300, 70000 };
    static const uint32_t  max_fragments[] = { 0, 1, 2, 5 };

    if (size < 2) {
        return 0;
    }

    c.max_message = max_message[data[0] & 3];
    c.max_fragments = max_fragments[(data[0] >> 2) & 3];
    c.text_only = (data[0] >> 4) & 1;
    c.from_server = (data[0] >> 5) & 1;

    in = data + 2;
    n = size - 2;

    cuts = malloc((n + 1) * sizeof(size_t));
    if (cuts == NULL) {
        return 0;
    }

    ncuts = 0;

    switch (data[0] >> 6) {

    case 0:
        for (i = 1; i < n; i++) {
            cuts[ncuts++] = i;
        }

        break;

    case 1:
        step = data[1] % 16 + 1;

        for (i = step; i < n; i += step) {
            cuts[ncuts++] = i;
        }

        break;

    case 2:
        seed = data[1] * 2654435761u + 1;
        i = 0;

        for ( ;; ) {
            seed = seed * 1103515245u + 12345;
            k = (seed >> 16) % 23;

            if (i + k >= n || ncuts == n) {
                break;
            }

            /* zero-length chunks are allowed: the same end twice */

            i += k;
            cuts[ncuts++] = i;
        }

        break;

    default:
        if (n) {
            cuts[ncuts++] = (size_t) data[1] * n / 256;
        }

        break;
    }

    memset(&whole, 0, sizeof(trace_t));
    memset(&split, 0, sizeof(trace_t));

    parse(&c, in, n, NULL, 0, &whole);
    parse(&c, in, n, cuts, ncuts, &split);

    trace_trim(&whole);
    trace_trim(&split);

    if (whole.nev != split.nev
        || memcmp(whole.ev, split.ev, whole.nev) != 0)
    {
        fprintf(stderr, "events: whole \"%.*s\", split \"%.*s\"\n",
                (int) whole.nev, whole.ev, (int) split.nev, split.ev);
        abort();
    }

    fuzz_assert(whole.ndata == split.ndata);
    fuzz_assert(memcmp(whole.data, split.data, whole.ndata) == 0);
    fuzz_assert(whole.nctl == split.nctl);
    fuzz_assert(memcmp(whole.ctl, split.ctl, whole.nctl) == 0);
    fuzz_assert(whole.code == split.code);
    fuzz_assert(whole.error == split.error);

    trace_free(&whole);
    trace_free(&split);
    free(cuts);

    return 0;
}
