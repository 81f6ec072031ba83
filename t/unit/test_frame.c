
/*
 * Unit tests of the WebSocket frame parser and header encoder (RFC 6455,
 * section 5).  Frames are built by an encoder of the test's own, masked
 * as a client's, optionally with a deliberately non-minimal length; the
 * parser is driven over the stream whole, a byte at a time and split at
 * every position, and each run is recorded as a string of events:
 *
 *   D  DATA     M  MESSAGE     P  PING     O  PONG     C  CLOSE     E  ERROR
 */


#include <stdint.h>
#include <sys/types.h>

#include <ngx_http_chat_frame.h>
#include <ngx_http_chat_utf8.h>
#include <unit.h>


#define S(lit)     lit, sizeof(lit) - 1

#define FIN        1
#define MORE       0

#define LEN_MIN    0        /* the minimal length encoding */
#define LEN_16     1        /* 126 and 16 bits, whatever the length */
#define LEN_64     2        /* 127 and 64 bits, whatever the length */

#define RSV1       4
#define RSV2       2
#define RSV3       1

#define OP_CONT    NGX_HTTP_CHAT_OP_CONTINUATION
#define OP_TEXT    NGX_HTTP_CHAT_OP_TEXT
#define OP_BINARY  NGX_HTTP_CHAT_OP_BINARY
#define OP_CLOSE   NGX_HTTP_CHAT_OP_CLOSE
#define OP_PING    NGX_HTTP_CHAT_OP_PING
#define OP_PONG    NGX_HTTP_CHAT_OP_PONG

#define EV_MAX     1024
#define BUF_MAX    (1 << 18)


typedef struct {
    uint64_t     max_message;
    uint32_t     max_fragments;
    unsigned     text_only;
    unsigned     from_server;
} conf_t;


typedef struct {
    char         ev[EV_MAX];    /* the events, a letter each */
    size_t       nev;
    u_char      *data;          /* the DATA payload, concatenated */
    size_t       ndata;
    size_t       run_start;     /* ndata where the last run of D began */
    u_char      *ctl;           /* the control payloads, concatenated */
    size_t       nctl;
    size_t       ctl_len;       /* control_len of the last control event */
    unsigned     close_code;    /* of the last CLOSE or of the ERROR */
    long         err_at;        /* bytes fed when ERROR came, or -1 */
    long         err_pos;       /* *pos after ERROR */
    const char  *error;
    unsigned     broken;        /* interface rules broken by the parser */
} trace_t;


static const u_char  mask_rfc[4] = { 0x37, 0xfa, 0x21, 0x3d };
static const u_char  mask_odd[4] = { 0xff, 0x01, 0x80, 0x7f };
static const u_char  mask_zero[4] = { 0, 0, 0, 0 };

static conf_t  client = { 0, 0, 0, 0 };
static conf_t  server = { 0, 0, 0, 1 };

static u_char  stream[BUF_MAX];
static u_char  payload[BUF_MAX];


/*
 * Builds a frame: fin, rsv (RSV1..RSV3 bits), opcode, payload; mask NULL
 * for an unmasked frame; form chooses the length encoding.
 */

static size_t
frame(u_char *b, unsigned fin, unsigned rsv, unsigned opcode,
    const void *data, size_t len, const u_char *mask, unsigned form)
{
    size_t         n, i;
    const u_char  *d;

    d = data;

    b[0] = (u_char) ((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f));

    if (form == LEN_MIN && len < 126) {
        b[1] = (u_char) len;
        n = 2;

    } else if (form == LEN_16 || (form == LEN_MIN && len < 65536)) {
        b[1] = 126;
        b[2] = (u_char) (len >> 8);
        b[3] = (u_char) len;
        n = 4;

    } else {
        b[1] = 127;

        for (i = 0; i < 8; i++) {
            b[2 + i] = (u_char) ((uint64_t) len >> (56 - 8 * i));
        }

        n = 10;
    }

    if (mask != NULL) {
        b[1] |= 0x80;
        memcpy(b + n, mask, 4);
        n += 4;
    }

    for (i = 0; i < len; i++) {
        b[n + i] = (u_char) (mask ? d[i] ^ mask[i % 4] : d[i]);
    }

    return n + len;
}


/* a masked client frame with a minimal length */

static size_t
cf(u_char *b, unsigned fin, unsigned opcode, const void *data, size_t len)
{
    return frame(b, fin, 0, opcode, data, len, mask_rfc, LEN_MIN);
}


static void
conf_init(ngx_http_chat_frame_parser_t *p, const conf_t *c)
{
    memset(p, 0, sizeof(ngx_http_chat_frame_parser_t));

    p->max_message = c->max_message;
    p->max_fragments = c->max_fragments;
    p->text_only = c->text_only;
    p->from_server = c->from_server;
}


static void
trace_event(trace_t *t, char e, int coalesce)
{
    if (e == 'D' && t->nev && t->ev[t->nev - 1] == 'D' && coalesce) {
        return;
    }

    if (e == 'D' && (t->nev == 0 || t->ev[t->nev - 1] != 'D')) {
        t->run_start = t->ndata;
    }

    if (t->nev < EV_MAX - 1) {
        t->ev[t->nev++] = e;
        t->ev[t->nev] = '\0';
    }
}


/*
 * Feeds in[0..n) to a parser configured by c: the bytes are made available
 * in chunks ending at cuts[0..ncuts) and then n.  A copy is parsed, since
 * the parser unmasks in place.
 */

static void
feed(const conf_t *c, const u_char *in, size_t n, const size_t *cuts,
    size_t ncuts, int coalesce, trace_t *t)
{
    u_char                        *buf, *pos, *before, *last, *data;
    size_t                         i, end, len;
    unsigned                       code;
    ngx_http_chat_frame_rc_e       rc;
    ngx_http_chat_frame_parser_t   p;

    memset(t, 0, sizeof(trace_t));

    t->data = malloc(n + 1);
    t->ctl = malloc(n + 1);
    t->err_at = -1;
    t->err_pos = -1;

    buf = malloc(n + 1);
    if (buf == NULL || t->data == NULL || t->ctl == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    memcpy(buf, in, n);

    conf_init(&p, c);

    pos = buf;

    for (i = 0; i <= ncuts; i++) {
        end = (i < ncuts) ? cuts[i] : n;
        last = buf + end;

        for ( ;; ) {
            before = pos;
            data = NULL;
            len = 0;

            rc = ngx_http_chat_frame_parse(&p, &pos, last, &data, &len);

            if (pos < before || pos > last) {
                t->broken++;
            }

            switch (rc) {

            case NGX_HTTP_CHAT_FRAME_AGAIN:
                if (pos != last) {
                    t->broken++;
                }

                break;

            case NGX_HTTP_CHAT_FRAME_DATA:
                if (len == 0 || data < before || data + len != pos) {
                    t->broken++;
                }

                trace_event(t, 'D', coalesce);

                if (len <= n - t->ndata) {
                    memcpy(t->data + t->ndata, data, len);
                    t->ndata += len;
                }

                continue;

            case NGX_HTTP_CHAT_FRAME_MESSAGE:
                trace_event(t, 'M', coalesce);
                continue;

            case NGX_HTTP_CHAT_FRAME_PING:
            case NGX_HTTP_CHAT_FRAME_PONG:
            case NGX_HTTP_CHAT_FRAME_CLOSE:
                trace_event(t, rc == NGX_HTTP_CHAT_FRAME_PING ? 'P'
                               : rc == NGX_HTTP_CHAT_FRAME_PONG ? 'O' : 'C',
                            coalesce);

                if (p.control_len > NGX_HTTP_CHAT_CONTROL_MAX
                    || p.control_len > n - t->nctl)
                {
                    t->broken++;
                    continue;
                }

                memcpy(t->ctl + t->nctl, p.control, p.control_len);
                t->nctl += p.control_len;
                t->ctl_len = p.control_len;

                if (rc == NGX_HTTP_CHAT_FRAME_CLOSE) {
                    t->close_code = p.close_code;
                }

                continue;

            default: /* NGX_HTTP_CHAT_FRAME_ERROR */
                trace_event(t, 'E', coalesce);

                t->close_code = p.close_code;
                t->error = p.error;
                t->err_at = (long) end;
                t->err_pos = pos - buf;

                if (p.error == NULL) {
                    t->broken++;
                }

                /* sticky: more calls, with or without input, fail alike */

                code = p.close_code;

                if (ngx_http_chat_frame_parse(&p, &pos, last, &data, &len)
                    != NGX_HTTP_CHAT_FRAME_ERROR
                    || ngx_http_chat_frame_parse(&p, &pos, buf + n, &data,
                                                 &len)
                       != NGX_HTTP_CHAT_FRAME_ERROR
                    || p.close_code != code)
                {
                    t->broken++;
                }

                goto done;
            }

            break;
        }
    }

done:

    free(buf);
}


static void
trace_free(trace_t *t)
{
    free(t->data);
    free(t->ctl);
}


static void
run(const conf_t *c, const u_char *in, size_t n, trace_t *t)
{
    feed(c, in, n, NULL, 0, 0, t);
}


static void
run_bytes(const conf_t *c, const u_char *in, size_t n, int coalesce,
    trace_t *t)
{
    size_t   i, *cuts;

    cuts = malloc((n + 1) * sizeof(size_t));
    if (cuts == NULL) {
        exit(2);
    }

    for (i = 1; i < n; i++) {
        cuts[i - 1] = i;
    }

    feed(c, in, n, cuts, n ? n - 1 : 0, coalesce, t);

    free(cuts);
}


static void
run_step(const conf_t *c, const u_char *in, size_t n, size_t step,
    trace_t *t)
{
    size_t   i, k, *cuts;

    cuts = malloc((n / step + 1) * sizeof(size_t));
    if (cuts == NULL) {
        exit(2);
    }

    k = 0;

    for (i = step; i < n; i += step) {
        cuts[k++] = i;
    }

    feed(c, in, n, cuts, k, 1, t);

    free(cuts);
}


/*
 * Whether two traces tell the same: an invalid UTF-8 byte fails a chunk
 * before its valid bytes are returned, so the DATA run just before ERROR
 * may differ with the split, and is left out.
 */

static int
same(const trace_t *a, const trace_t *b)
{
    size_t  na, nb, da, db;

    na = a->nev;
    nb = b->nev;
    da = a->ndata;
    db = b->ndata;

    if (na && a->ev[na - 1] == 'E') {
        if (na > 1 && a->ev[na - 2] == 'D') {
            da = a->run_start;
            na--;
        }

        if (nb == 0 || b->ev[nb - 1] != 'E') {
            return 0;
        }

        if (nb > 1 && b->ev[nb - 2] == 'D') {
            db = b->run_start;
            nb--;
        }

        if (a->close_code != b->close_code) {
            return 0;
        }

        /* the events but the last, then the 'E' */

        if (na != nb
            || memcmp(a->ev, b->ev, na - 1) != 0
            || da != db
            || memcmp(a->data, b->data, da) != 0)
        {
            return 0;
        }

    } else if (na != nb
               || memcmp(a->ev, b->ev, na) != 0
               || da != db
               || memcmp(a->data, b->data, da) != 0
               || a->close_code != b->close_code)
    {
        return 0;
    }

    return a->nctl == b->nctl && memcmp(a->ctl, b->ctl, a->nctl) == 0
           && a->broken == 0 && b->broken == 0;
}


/*
 * Fed whole, a byte at a time, split in two at every position and in
 * chunks of 2..17 bytes, the stream gives the same trace, the expected one.
 */

static unsigned
split_mismatches(const conf_t *c, const u_char *in, size_t n)
{
    size_t    k, cut;
    trace_t   whole, t;
    unsigned  bad;

    bad = 0;

    feed(c, in, n, NULL, 0, 1, &whole);

    run_bytes(c, in, n, 1, &t);
    bad += !same(&whole, &t);
    trace_free(&t);

    for (k = 0; k <= n; k++) {
        cut = k;
        feed(c, in, n, &cut, 1, 1, &t);

        if (!same(&whole, &t)) {
            if (bad++ == 0) {
                fprintf(stderr, "split at %zu: \"%s\", whole \"%s\"\n",
                        k, t.ev, whole.ev);
            }
        }

        trace_free(&t);
    }

    for (k = 2; k <= 17; k++) {
        run_step(c, in, n, k, &t);
        bad += !same(&whole, &t);
        trace_free(&t);
    }

    trace_free(&whole);

    return bad;
}


static void
fill(u_char *b, size_t n, unsigned seed)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        b[i] = (u_char) (i * 7 + seed + (i >> 8));
    }
}


static void
fill_text(u_char *b, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        b[i] = (u_char) ('a' + i % 26);
    }
}


static void
test_rfc_examples(void)
{
    size_t   n;
    trace_t  t;

    static u_char  hello[] = {
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };
    static u_char  hello_server[] = {
        0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
    };
    static u_char  hello_fragmented[] = {
        0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f
    };
    static u_char  ping_server[] = {
        0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
    };
    static u_char  pong_client[] = {
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };

    /* the builder writes the RFC's bytes */

    n = frame(stream, FIN, 0, OP_TEXT, S("Hello"), mask_rfc, LEN_MIN);
    CHECK_EQ(n, sizeof(hello));
    CHECK(memcmp(stream, hello, sizeof(hello)) == 0);

    run(&client, hello, sizeof(hello), &t);
    CHECK_STR(t.ev, "DM");
    CHECK_EQ(t.ndata, 5);
    CHECK(memcmp(t.data, "Hello", 5) == 0);
    CHECK_EQ(t.broken, 0);
    trace_free(&t);

    /* a byte at a time: a DATA per payload byte, then MESSAGE */

    run_bytes(&client, hello, sizeof(hello), 0, &t);
    CHECK_STR(t.ev, "DDDDDM");
    CHECK_EQ(t.ndata, 5);
    CHECK(memcmp(t.data, "Hello", 5) == 0);
    CHECK_EQ(t.broken, 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&client, hello, sizeof(hello)), 0);

    /* the feed did not touch the original (the parser works on copies) */

    CHECK_EQ(hello[6], 0x7f);

    /* the unmasked examples, as received by a client */

    run(&server, hello_server, sizeof(hello_server), &t);
    CHECK_STR(t.ev, "DM");
    CHECK(t.ndata == 5 && memcmp(t.data, "Hello", 5) == 0);
    trace_free(&t);

    run(&server, hello_fragmented, sizeof(hello_fragmented), &t);
    CHECK_STR(t.ev, "DDM");
    CHECK(t.ndata == 5 && memcmp(t.data, "Hello", 5) == 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&server, hello_fragmented,
                              sizeof(hello_fragmented)), 0);

    run(&server, ping_server, sizeof(ping_server), &t);
    CHECK_STR(t.ev, "P");
    CHECK(t.ctl_len == 5 && memcmp(t.ctl, "Hello", 5) == 0);
    trace_free(&t);

    run(&client, pong_client, sizeof(pong_client), &t);
    CHECK_STR(t.ev, "O");
    CHECK(t.ctl_len == 5 && memcmp(t.ctl, "Hello", 5) == 0);
    trace_free(&t);

    /* the wrong role for each */

    run(&client, hello_server, sizeof(hello_server), &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_pos, 2);
    trace_free(&t);

    run(&server, hello, sizeof(hello), &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_pos, 2);
    trace_free(&t);
}


/* a binary frame of len bytes in the given encoding, header bytes checked */

static void
check_length(size_t len, unsigned form, size_t hlen, const u_char *mask)
{
    size_t   n;
    trace_t  t;

    fill(payload, len, (unsigned) len);

    n = frame(stream, FIN, 0, OP_BINARY, payload, len, mask, form);
    CHECK_EQ(n, hlen + len);

    run(mask ? &client : &server, stream, n, &t);

    CHECK_STR(t.ev, len ? "DM" : "M");
    CHECK_EQ(t.ndata, len);
    CHECK(memcmp(t.data, payload, len) == 0);
    CHECK_EQ(t.err_at, -1);
    CHECK_EQ(t.broken, 0);
    trace_free(&t);

    /* in odd chunks the payload arrives the same */

    run_step(mask ? &client : &server, stream, n, 4093, &t);
    CHECK_STR(t.ev, len ? "DM" : "M");
    CHECK(t.ndata == len && memcmp(t.data, payload, len) == 0);
    trace_free(&t);
}


static void
test_lengths(void)
{
    size_t   n;
    trace_t  t;

    check_length(0, LEN_MIN, 6, mask_rfc);
    check_length(1, LEN_MIN, 6, mask_rfc);
    check_length(125, LEN_MIN, 6, mask_odd);
    check_length(126, LEN_MIN, 8, mask_rfc);
    check_length(127, LEN_MIN, 8, mask_zero);
    check_length(65535, LEN_MIN, 8, mask_odd);
    check_length(65536, LEN_MIN, 14, mask_rfc);
    check_length(100000, LEN_MIN, 14, mask_odd);

    check_length(0, LEN_MIN, 2, NULL);
    check_length(125, LEN_MIN, 2, NULL);
    check_length(126, LEN_MIN, 4, NULL);
    check_length(65535, LEN_MIN, 4, NULL);
    check_length(65536, LEN_MIN, 10, NULL);

    /* the smallest lengths of the extended encodings are minimal */

    check_length(126, LEN_16, 8, mask_rfc);
    check_length(65536, LEN_64, 14, mask_rfc);

    /* the header bytes as written */

    n = frame(stream, FIN, 0, OP_BINARY, payload, 65535, NULL, LEN_MIN);
    CHECK(stream[1] == 126 && stream[2] == 0xff && stream[3] == 0xff);

    n = frame(stream, FIN, 0, OP_BINARY, payload, 65536, NULL, LEN_MIN);
    CHECK(stream[1] == 127 && stream[2] == 0 && stream[6] == 0
          && stream[7] == 1 && stream[8] == 0 && stream[9] == 0);

    /* split at every position around the 16-bit length */

    fill(payload, 300, 1);
    n = frame(stream, FIN, 0, OP_BINARY, payload, 300, mask_odd, LEN_MIN);
    CHECK_EQ(split_mismatches(&client, stream, n), 0);

    run_bytes(&client, stream, n, 1, &t);
    CHECK_STR(t.ev, "DM");
    CHECK(t.ndata == 300 && memcmp(t.data, payload, 300) == 0);
    trace_free(&t);
}


static void
test_non_minimal(void)
{
    size_t   n;
    trace_t  t;

    /* length 5 in 16 bits: failed at the second length byte */

    n = frame(stream, FIN, 0, OP_TEXT, S("Hello"), mask_rfc, LEN_16);
    CHECK_EQ(n, 13);

    run_bytes(&client, stream, n, 0, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_at, 4);
    CHECK_EQ(t.broken, 0);
    trace_free(&t);

    /* 125 in 16 bits */

    fill_text(payload, 125);
    n = frame(stream, FIN, 0, OP_TEXT, payload, 125, mask_rfc, LEN_16);
    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_pos, 4);
    trace_free(&t);

    /* length 200 in 64 bits: failed at the last length byte */

    fill_text(payload, 200);
    n = frame(stream, FIN, 0, OP_TEXT, payload, 200, mask_rfc, LEN_64);

    run_bytes(&client, stream, n, 0, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_at, 10);
    trace_free(&t);

    /* 65535 and 5 in 64 bits */

    n = frame(stream, FIN, 0, OP_BINARY, payload, 65535, mask_rfc, LEN_64);
    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_pos, 10);
    trace_free(&t);

    n = frame(stream, FIN, 0, OP_BINARY, S("Hello"), NULL, LEN_64);
    run(&server, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* 64-bit length with the most significant bit set: at that byte */

    memcpy(stream, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x05"
                   "\x37\xfa\x21\x3d", 14);

    run_bytes(&client, stream, 14, 0, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_at, 3);
    trace_free(&t);

    memcpy(stream, "\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff", 10);

    run(&server, stream, 10, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_pos, 3);
    trace_free(&t);
}


static void
test_huge_length(void)
{
    u_char                        *pos, *data;
    size_t                         len;
    ngx_http_chat_frame_rc_e       rc;
    ngx_http_chat_frame_parser_t   p;

    /* 2^63 - 1, the largest length: the header is accepted */

    memcpy(stream, "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff"
                   "\x00\x00\x00\x00" "abc", 17);

    conf_init(&p, &client);
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + 14, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_AGAIN);
    CHECK(pos == stream + 14);
    CHECK(p.frame_len == 0x7fffffffffffffffULL);
    CHECK(p.remaining == 0x7fffffffffffffffULL);

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + 17, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_DATA);
    CHECK(data == stream + 14 && len == 3 && memcmp(data, "abc", 3) == 0);
    CHECK(p.remaining == 0x7fffffffffffffffULL - 3);

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + 17, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_AGAIN);

    /* with a limit it fails at the header */

    conf_init(&p, &client);
    p.max_message = 0x7ffffffffffffffeULL;
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + 14, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1009);

    /* and not with the largest limits */

    conf_init(&p, &client);
    p.max_message = 0x7fffffffffffffffULL;
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + 14, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_AGAIN);

    conf_init(&p, &client);
    p.max_message = (uint64_t) -1;
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + 14, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_AGAIN);
}


static void
test_masking(void)
{
    size_t   n;
    trace_t  t;

    /* an unmasked frame from a client: at the length byte */

    n = frame(stream, FIN, 0, OP_TEXT, S("Hello"), NULL, LEN_MIN);

    run_bytes(&client, stream, n, 0, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_at, 2);
    trace_free(&t);

    /* as a client, the same frame is fine, and a masked one is not */

    run(&server, stream, n, &t);
    CHECK_STR(t.ev, "DM");
    CHECK(t.ndata == 5 && memcmp(t.data, "Hello", 5) == 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&server, stream, n), 0);

    n = cf(stream, FIN, OP_TEXT, S("Hello"));

    run_bytes(&server, stream, n, 0, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.err_at, 2);
    trace_free(&t);

    /* unmasked control frames from a client */

    n = frame(stream, FIN, 0, OP_PING, S("x"), NULL, LEN_MIN);
    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    n = frame(stream, FIN, 0, OP_CLOSE, S(""), NULL, LEN_MIN);
    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* a mask of zeroes is still a mask */

    n = frame(stream, FIN, 0, OP_TEXT, S("Hi"), mask_zero, LEN_MIN);
    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DM");
    CHECK(t.ndata == 2 && memcmp(t.data, "Hi", 2) == 0);
    trace_free(&t);

    /* the mask continues across chunks and restarts with each frame */

    n = frame(stream, MORE, 0, OP_TEXT, S("abcdefg"), mask_odd, LEN_MIN);
    n += frame(stream + n, FIN, 0, OP_CONT, S("hijklmnopq"), mask_rfc,
               LEN_MIN);

    run_bytes(&client, stream, n, 1, &t);
    CHECK_STR(t.ev, "DM");
    CHECK(t.ndata == 17 && memcmp(t.data, "abcdefghijklmnopq", 17) == 0);
    trace_free(&t);
}


static void
test_reserved(void)
{
    size_t    n;
    trace_t   t;
    unsigned  op, rsv;

    /* each RSV bit: at the first byte */

    for (rsv = 1; rsv <= 7; rsv++) {
        n = frame(stream, FIN, rsv, OP_TEXT, S("Hello"), mask_rfc, LEN_MIN);

        run_bytes(&client, stream, n, 0, &t);
        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        CHECK_EQ(t.err_at, 1);
        trace_free(&t);

        n = frame(stream, FIN, rsv, OP_PING, S(""), NULL, LEN_MIN);

        run(&server, stream, n, &t);
        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        CHECK_EQ(t.err_pos, 1);
        trace_free(&t);
    }

    /* RSV1 on a continuation frame after a good first fragment */

    n = cf(stream, MORE, OP_TEXT, S("ab"));
    n += frame(stream + n, FIN, RSV1, OP_CONT, S("cd"), mask_rfc, LEN_MIN);

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DE");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* reserved opcodes, with and without FIN, with and without payload */

    for (op = 3; op <= 15; op++) {
        if (op >= 8 && op <= 10) {
            continue;
        }

        n = cf(stream, FIN, op, S("Hello"));

        run(&client, stream, n, &t);
        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        CHECK_EQ(t.ndata, 0);
        trace_free(&t);

        n = cf(stream, MORE, op, S(""));

        run(&client, stream, n, &t);
        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        trace_free(&t);

        n = cf(stream, FIN, op, S(""));

        run(&client, stream, n, &t);
        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        CHECK_EQ(t.err_pos, 1);
        trace_free(&t);

        n = frame(stream, FIN, 0, op, S("\x03\xe8"), NULL, LEN_MIN);

        run(&server, stream, n, &t);
        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        trace_free(&t);

        /* inside a fragmented message */

        n = cf(stream, MORE, OP_TEXT, S("ab"));
        n += cf(stream + n, FIN, op, S("cd"));

        run(&client, stream, n, &t);
        CHECK_STR(t.ev, "DE");
        CHECK_EQ(t.close_code, 1002);
        trace_free(&t);
    }
}


static void
test_control(void)
{
    size_t    n;
    trace_t   t;
    unsigned  op;

    /* control frames without FIN */

    for (op = OP_CLOSE; op <= OP_PONG; op++) {
        n = cf(stream, MORE, op, S("ab"));

        run(&client, stream, n, &t);
        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        trace_free(&t);

        n = cf(stream, MORE, op, S(""));

        run(&client, stream, n, &t);
        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        trace_free(&t);
    }

    /* a ping of 125 bytes, echoed in control */

    fill(payload, 125, 9);
    n = frame(stream, FIN, 0, OP_PING, payload, 125, mask_odd, LEN_MIN);

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "P");
    CHECK_EQ(t.ctl_len, 125);
    CHECK(memcmp(t.ctl, payload, 125) == 0);
    trace_free(&t);

    run_bytes(&client, stream, n, 0, &t);
    CHECK_STR(t.ev, "P");
    CHECK(t.ctl_len == 125 && memcmp(t.ctl, payload, 125) == 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&client, stream, n), 0);

    /* 126 bytes: failed at the header, before the payload */

    fill(payload, 126, 9);
    n = frame(stream, FIN, 0, OP_PING, payload, 126, mask_odd, LEN_MIN);

    run_bytes(&client, stream, n, 0, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK(t.err_at > 0 && t.err_at <= 8);
    trace_free(&t);

    n = frame(stream, FIN, 0, OP_PONG, payload, 70000, mask_odd, LEN_MIN);

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK(t.err_pos <= 14);
    trace_free(&t);

    /* a ping of 5 in 16 bits is non-minimal */

    n = frame(stream, FIN, 0, OP_PING, S("Hello"), mask_rfc, LEN_16);

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* empty ping, pong with a payload, empty pong */

    n = cf(stream, FIN, OP_PING, S(""));
    n += cf(stream + n, FIN, OP_PONG, S("pong!"));
    n += cf(stream + n, FIN, OP_PONG, S(""));
    n += cf(stream + n, FIN, OP_PING, S("x"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "POOP");
    CHECK_EQ(t.nctl, 6);
    CHECK(memcmp(t.ctl, "pong!x", 6) == 0);
    CHECK_EQ(t.ctl_len, 1);
    CHECK_EQ(t.ndata, 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&client, stream, n), 0);

    /* a ping's payload may be any bytes, not UTF-8 */

    n = cf(stream, FIN, OP_PING, S("\xff\xfe\x00\x80"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "P");
    CHECK(t.ctl_len == 4 && memcmp(t.ctl, "\xff\xfe\x00\x80", 4) == 0);
    trace_free(&t);
}


static void
test_fragmentation(void)
{
    size_t   n;
    trace_t  t;

    /* text in 3 fragments with a ping and a pong in between */

    n = cf(stream, MORE, OP_TEXT, S("Hel"));
    n += cf(stream + n, FIN, OP_PING, S("p1"));
    n += cf(stream + n, MORE, OP_CONT, S("lo, "));
    n += cf(stream + n, FIN, OP_PONG, S("q2"));
    n += cf(stream + n, FIN, OP_CONT, S("world"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DPDODM");
    CHECK_EQ(t.ndata, 12);
    CHECK(memcmp(t.data, "Hello, world", 12) == 0);
    CHECK_EQ(t.nctl, 4);
    CHECK(memcmp(t.ctl, "p1q2", 4) == 0);
    CHECK_EQ(t.broken, 0);
    trace_free(&t);

    run_bytes(&client, stream, n, 1, &t);
    CHECK_STR(t.ev, "DPDODM");
    CHECK(t.ndata == 12 && memcmp(t.data, "Hello, world", 12) == 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&client, stream, n), 0);

    /* binary in fragments, then a text message right after */

    n = cf(stream, MORE, OP_BINARY, S("\x00\xff"));
    n += cf(stream + n, FIN, OP_CONT, S("\x80"));
    n += cf(stream + n, FIN, OP_TEXT, S("ok"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DDMDM");
    CHECK(t.ndata == 5 && memcmp(t.data, "\x00\xff\x80ok", 5) == 0);
    trace_free(&t);

    /* a close inside a fragmented message is allowed */

    n = cf(stream, MORE, OP_TEXT, S("ab"));
    n += cf(stream + n, FIN, OP_CLOSE, S("\x03\xe8"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DC");
    CHECK_EQ(t.close_code, 1000);
    trace_free(&t);

    /* a continuation without a start */

    n = cf(stream, FIN, OP_CONT, S("ab"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK_EQ(t.ndata, 0);
    trace_free(&t);

    n = cf(stream, MORE, OP_CONT, S(""));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* a continuation after the message has ended */

    n = cf(stream, FIN, OP_TEXT, S("ab"));
    n += cf(stream + n, FIN, OP_CONT, S("cd"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DME");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* a new data frame while a fragmented message is open */

    n = cf(stream, MORE, OP_TEXT, S("ab"));
    n += cf(stream + n, FIN, OP_TEXT, S("cd"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DE");
    CHECK_EQ(t.close_code, 1002);
    CHECK(t.ndata == 2 && memcmp(t.data, "ab", 2) == 0);
    trace_free(&t);

    n = cf(stream, MORE, OP_BINARY, S("ab"));
    n += cf(stream + n, FIN, OP_PING, S(""));
    n += cf(stream + n, MORE, OP_TEXT, S("cd"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DPE");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* zero-length fragments */

    n = cf(stream, MORE, OP_TEXT, S(""));
    n += cf(stream + n, MORE, OP_CONT, S("ab"));
    n += cf(stream + n, MORE, OP_CONT, S(""));
    n += cf(stream + n, FIN, OP_CONT, S(""));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DM");
    CHECK(t.ndata == 2 && memcmp(t.data, "ab", 2) == 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&client, stream, n), 0);

    n = cf(stream, MORE, OP_BINARY, S(""));
    n += cf(stream + n, FIN, OP_CONT, S(""));
    n += cf(stream + n, FIN, OP_TEXT, S(""));

    run_bytes(&client, stream, n, 0, &t);
    CHECK_STR(t.ev, "MM");
    CHECK_EQ(t.ndata, 0);
    trace_free(&t);
}


static void
test_max_fragments(void)
{
    size_t   n, i;
    conf_t   c;
    trace_t  t;

    c = client;
    c.max_fragments = 3;

    /* exactly 3, twice, with control frames not counted */

    n = cf(stream, MORE, OP_TEXT, S("a"));
    n += cf(stream + n, FIN, OP_PING, S(""));
    n += cf(stream + n, MORE, OP_CONT, S("b"));
    n += cf(stream + n, FIN, OP_PONG, S(""));
    n += cf(stream + n, FIN, OP_CONT, S("c"));
    n += cf(stream + n, MORE, OP_BINARY, S("d"));
    n += cf(stream + n, MORE, OP_CONT, S("e"));
    n += cf(stream + n, FIN, OP_CONT, S("f"));
    n += cf(stream + n, FIN, OP_TEXT, S("g"));

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "DPDODMDDDMDM");
    CHECK(t.ndata == 7 && memcmp(t.data, "abcdefg", 7) == 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&c, stream, n), 0);

    /* 4: failed at the first byte of the 4th, zero-length ones count */

    n = cf(stream, MORE, OP_TEXT, S("a"));
    n += cf(stream + n, MORE, OP_CONT, S(""));
    n += cf(stream + n, MORE, OP_CONT, S("b"));
    n += cf(stream + n, FIN, OP_CONT, S("c"));

    run_bytes(&c, stream, n, 1, &t);
    CHECK_STR(t.ev, "DE");
    CHECK_EQ(t.close_code, 1008);
    CHECK_EQ(t.err_at, (long) (n - 6));
    CHECK(t.ndata == 2 && memcmp(t.data, "ab", 2) == 0);
    trace_free(&t);

    /* 1: unfragmented messages only */

    c.max_fragments = 1;

    n = cf(stream, FIN, OP_TEXT, S("a"));
    n += cf(stream + n, FIN, OP_TEXT, S("b"));
    n += cf(stream + n, MORE, OP_TEXT, S("c"));
    n += cf(stream + n, FIN, OP_CONT, S("d"));

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "DMDMDE");
    CHECK_EQ(t.close_code, 1008);
    trace_free(&t);

    /* 0: no limit */

    c.max_fragments = 0;

    n = cf(stream, MORE, OP_TEXT, S("a"));

    for (i = 0; i < 200; i++) {
        n += cf(stream + n, MORE, OP_CONT, S("b"));
    }

    n += cf(stream + n, FIN, OP_CONT, S("c"));

    run(&c, stream, n, &t);
    CHECK_EQ(t.nev, 203);
    CHECK_EQ(t.ev[202], 'M');
    CHECK_EQ(t.ndata, 202);
    CHECK_EQ(t.err_at, -1);
    trace_free(&t);
}


static void
test_max_message(void)
{
    size_t   n, h;
    conf_t   c;
    trace_t  t;

    c = client;
    c.max_message = 10;

    /* exactly the limit */

    n = cf(stream, FIN, OP_TEXT, S("0123456789"));

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "DM");
    CHECK_EQ(t.ndata, 10);
    trace_free(&t);

    /* one byte over: failed as soon as the length is read */

    n = cf(stream, FIN, OP_TEXT, S("0123456789a"));
    CHECK_EQ(n, 6 + 11);

    run(&c, stream, 6, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1009);
    CHECK_EQ(t.err_pos, 2);
    CHECK_EQ(t.ndata, 0);
    trace_free(&t);

    run_bytes(&c, stream, n, 0, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.err_at, 2);
    trace_free(&t);

    /* across fragments: 4 + 4 + 2 passes, then a new message starts at 0 */

    n = cf(stream, MORE, OP_TEXT, S("0123"));
    n += cf(stream + n, FIN, OP_PING, S("ping"));
    n += cf(stream + n, MORE, OP_CONT, S("4567"));
    n += cf(stream + n, FIN, OP_CONT, S("89"));
    n += cf(stream + n, FIN, OP_BINARY, S("0123456789"));

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "DPDDMDM");
    CHECK_EQ(t.ndata, 20);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&c, stream, n), 0);

    /* 4 + 4 + 3: failed at the third header */

    n = cf(stream, MORE, OP_TEXT, S("0123"));
    n += cf(stream + n, MORE, OP_CONT, S("4567"));
    h = n;
    n += cf(stream + n, FIN, OP_CONT, S("89a"));

    run_bytes(&c, stream, n, 1, &t);
    CHECK_STR(t.ev, "DE");
    CHECK_EQ(t.close_code, 1009);
    CHECK_EQ(t.err_at, (long) (h + 2));
    CHECK_EQ(t.ndata, 8);
    trace_free(&t);

    /* a 16-bit length over the limit, a 64-bit one, a ping is not limited */

    c.max_message = 100;

    fill_text(payload, 200);
    n = cf(stream, FIN, OP_TEXT, payload, 200);

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1009);
    CHECK_EQ(t.err_pos, 4);
    trace_free(&t);

    memcpy(stream, "\x81\xff\x00\x00\x00\x01\x00\x00\x00\x00\x37\xfa\x21\x3d",
           14);

    run(&c, stream, 14, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1009);
    trace_free(&t);

    n = cf(stream, FIN, OP_PING, payload, 125);

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "P");
    trace_free(&t);

    /* zero-length frames at the limit */

    c.max_message = 2;

    n = cf(stream, MORE, OP_TEXT, S("ab"));
    n += cf(stream + n, MORE, OP_CONT, S(""));
    n += cf(stream + n, FIN, OP_CONT, S(""));
    n += cf(stream + n, MORE, OP_TEXT, S("ab"));
    n += cf(stream + n, FIN, OP_CONT, S("c"));

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "DMDE");
    CHECK_EQ(t.close_code, 1009);
    trace_free(&t);
}


static void
test_text_only(void)
{
    size_t   n;
    conf_t   c;
    trace_t  t;

    c = client;
    c.text_only = 1;

    n = cf(stream, FIN, OP_BINARY, S("\x01\x02"));

    run_bytes(&c, stream, n, 0, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1003);
    CHECK_EQ(t.err_at, 1);
    trace_free(&t);

    n = cf(stream, MORE, OP_BINARY, S(""));

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1003);
    trace_free(&t);

    /* text and control frames are fine */

    n = cf(stream, FIN, OP_TEXT, S("ok"));
    n += cf(stream + n, FIN, OP_PING, S("\x01\x02"));
    n += cf(stream + n, FIN, OP_BINARY, S("no"));

    run(&c, stream, n, &t);
    CHECK_STR(t.ev, "DMPE");
    CHECK_EQ(t.close_code, 1003);
    trace_free(&t);

    /* without text_only a binary message passes, invalid UTF-8 and all */

    n = cf(stream, FIN, OP_BINARY, S("\xff\xc0\x80"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DM");
    CHECK(t.ndata == 3 && memcmp(t.data, "\xff\xc0\x80", 3) == 0);
    trace_free(&t);
}


static void
test_utf8(void)
{
    size_t   n, h;
    trace_t  t;

    /* an invalid byte fails as soon as it is fed, the frame incomplete */

    n = cf(stream, FIN, OP_TEXT, S("ab\xff" "cdef"));

    run_bytes(&client, stream, n, 1, &t);
    CHECK_STR(t.ev, "DE");
    CHECK_EQ(t.close_code, 1007);
    CHECK_EQ(t.err_at, 6 + 3);
    CHECK(t.ndata == 2 && memcmp(t.data, "ab", 2) == 0);
    trace_free(&t);

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1007);
    trace_free(&t);

    run(&client, stream, 6 + 3, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1007);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&client, stream, n), 0);

    /* the kosme-edited case: at the 0x90, payload index 12 */

    n = cf(stream, FIN, OP_TEXT, S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
                                   "\xce\xb5\xf4\x90\x80\x80\x65\x64\x69"
                                   "\x74\x65\x64"));

    run_bytes(&client, stream, n, 1, &t);
    CHECK_STR(t.ev, "DE");
    CHECK_EQ(t.close_code, 1007);
    CHECK_EQ(t.err_at, 6 + 13);
    CHECK_EQ(t.ndata, 12);
    trace_free(&t);

    /* a surrogate in the second fragment, at its second byte */

    n = cf(stream, MORE, OP_TEXT, S("ok"));
    h = n;
    n += cf(stream + n, FIN, OP_CONT, S("\xed\xa0\x80"));

    run_bytes(&client, stream, n, 1, &t);
    CHECK_STR(t.ev, "DE");
    CHECK_EQ(t.close_code, 1007);
    CHECK_EQ(t.err_at, (long) (h + 6 + 2));
    trace_free(&t);

    /* a character split across fragments and a ping */

    n = cf(stream, MORE, OP_TEXT, S("\xce"));
    n += cf(stream + n, FIN, OP_CONT, S("\xba"));
    n += cf(stream + n, MORE, OP_TEXT, S("\xf0\x9f"));
    n += cf(stream + n, FIN, OP_PING, S("\xff"));
    n += cf(stream + n, MORE, OP_CONT, S("\x98"));
    n += cf(stream + n, FIN, OP_CONT, S("\x80!"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DDMDPDDM");
    CHECK(t.ndata == 7 && memcmp(t.data, "\xce\xba\xf0\x9f\x98\x80!", 7) == 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&client, stream, n), 0);

    /* a message ending inside a character: at its final frame */

    n = cf(stream, FIN, OP_TEXT, S("a\xce"));

    run_bytes(&client, stream, n, 1, &t);
    CHECK_STR(t.ev, "DE");
    CHECK_EQ(t.close_code, 1007);
    CHECK_EQ(t.err_at, (long) n);
    trace_free(&t);

    n = cf(stream, MORE, OP_TEXT, S("a\xe2\x82"));
    h = n;
    n += cf(stream + n, FIN, OP_PING, S(""));
    n += cf(stream + n, FIN, OP_CONT, S(""));

    run_bytes(&client, stream, n, 1, &t);
    CHECK_STR(t.ev, "DPE");
    CHECK_EQ(t.close_code, 1007);
    CHECK_EQ(t.err_at, (long) n);
    trace_free(&t);

    /* the open sequence does not leak into the next message */

    n = cf(stream, FIN, OP_TEXT, S("\xe2\x82\xac"));
    n += cf(stream + n, FIN, OP_TEXT, S("\x82"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DME");
    CHECK_EQ(t.close_code, 1007);
    trace_free(&t);

    /* nor from a binary message into a text one */

    n = cf(stream, FIN, OP_BINARY, S("\xe2"));
    n += cf(stream + n, FIN, OP_TEXT, S("ok"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "DMDM");
    trace_free(&t);
}


static void
test_close(void)
{
    size_t    n, i;
    u_char    b[2 + 124];
    trace_t   t;
    unsigned  code;

    static const unsigned  invalid[] = {
        0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
        65535
    };
    static const unsigned  valid[] = {
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
        1014, 3000, 3999, 4000, 4001, 4999
    };

    /* empty: 1005 */

    n = cf(stream, FIN, OP_CLOSE, S(""));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "C");
    CHECK_EQ(t.close_code, 1005);
    CHECK_EQ(t.ctl_len, 0);
    trace_free(&t);

    /* 1 byte */

    n = cf(stream, FIN, OP_CLOSE, S("\x03"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* 1000 "bye" */

    n = cf(stream, FIN, OP_CLOSE, S("\x03\xe8" "bye"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "C");
    CHECK_EQ(t.close_code, 1000);
    CHECK_EQ(t.ctl_len, 5);
    CHECK(memcmp(t.ctl, "\x03\xe8" "bye", 5) == 0);
    trace_free(&t);

    CHECK_EQ(split_mismatches(&client, stream, n), 0);

    /* the codes */

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        b[0] = (u_char) (invalid[i] >> 8);
        b[1] = (u_char) invalid[i];

        n = cf(stream, FIN, OP_CLOSE, b, 2);

        run(&client, stream, n, &t);

        if (strcmp(t.ev, "E") != 0 || t.close_code != 1002) {
            fprintf(stderr, "close code %u: \"%s\" %u\n", invalid[i], t.ev,
                    t.close_code);
        }

        CHECK_STR(t.ev, "E");
        CHECK_EQ(t.close_code, 1002);
        trace_free(&t);

        CHECK(!ngx_http_chat_frame_close_code_valid(invalid[i]));
    }

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        b[0] = (u_char) (valid[i] >> 8);
        b[1] = (u_char) valid[i];
        b[2] = 'x';

        n = cf(stream, FIN, OP_CLOSE, b, 3);

        run(&client, stream, n, &t);

        if (strcmp(t.ev, "C") != 0 || t.close_code != valid[i]) {
            fprintf(stderr, "close code %u: \"%s\" %u\n", valid[i], t.ev,
                    t.close_code);
        }

        CHECK_STR(t.ev, "C");
        CHECK_EQ(t.close_code, valid[i]);
        trace_free(&t);
    }

    /* the whole range against RFC 6455 7.4 and the IANA registry */

    n = 0;

    for (code = 0; code <= 65535; code++) {
        n += ngx_http_chat_frame_close_code_valid(code)
             != ((code >= 1000 && code <= 1003)
                 || (code >= 1007 && code <= 1014)
                 || (code >= 3000 && code <= 4999));
    }

    CHECK_EQ(n, 0);

    /* the reason must be UTF-8, complete */

    n = cf(stream, FIN, OP_CLOSE, S("\x03\xe8" "b\xffye"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1007);
    trace_free(&t);

    n = cf(stream, FIN, OP_CLOSE, S("\x03\xe8" "bye\xce"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1007);
    trace_free(&t);

    n = cf(stream, FIN, OP_CLOSE,
           S("\x03\xe8" "\xce\xba\xe1\xbd\xb9\xcf\x83"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "C");
    CHECK_EQ(t.close_code, 1000);
    trace_free(&t);

    /* an invalid code wins over an invalid reason */

    n = cf(stream, FIN, OP_CLOSE, S("\x03\xec" "\xff"));

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    trace_free(&t);

    /* a 123-byte reason is the most */

    b[0] = 0x0f;
    b[1] = 0xa0;
    fill_text(b + 2, 124);

    n = cf(stream, FIN, OP_CLOSE, b, 2 + 123);

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "C");
    CHECK_EQ(t.close_code, 4000);
    CHECK_EQ(t.ctl_len, 125);
    CHECK(memcmp(t.ctl, b, 125) == 0);
    trace_free(&t);

    n = cf(stream, FIN, OP_CLOSE, b, 2 + 124);

    run(&client, stream, n, &t);
    CHECK_STR(t.ev, "E");
    CHECK_EQ(t.close_code, 1002);
    CHECK(t.err_pos <= 8);
    trace_free(&t);

    /* a server's close, unmasked */

    n = frame(stream, FIN, 0, OP_CLOSE, S("\x03\xe9"), NULL, LEN_MIN);

    run(&server, stream, n, &t);
    CHECK_STR(t.ev, "C");
    CHECK_EQ(t.close_code, 1001);
    trace_free(&t);
}


static void
test_error_sticky(void)
{
    u_char                        *pos, *data;
    size_t                         n, m, len;
    const char                    *error;
    ngx_http_chat_frame_rc_e       rc;
    ngx_http_chat_frame_parser_t   p;

    n = frame(stream, FIN, 0, OP_TEXT, S("x"), NULL, LEN_MIN);
    m = cf(stream + n, FIN, OP_TEXT, S("good"));

    conf_init(&p, &client);
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1002);
    CHECK(p.error != NULL);

    error = p.error;

    /* a good frame after the error, and no input at all */

    pos = stream + n;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n + m, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1002);
    CHECK(p.error == error);

    rc = ngx_http_chat_frame_parse(&p, &pos, pos, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n + m, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1002);

    /* 1007 stays 1007 */

    n = cf(stream, FIN, OP_TEXT, S("\xc0\xaf"));
    m = cf(stream + n, FIN, OP_CLOSE, S("\x03\xe8"));

    conf_init(&p, &client);
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n + m, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1007);

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n + m, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1007);
}


static void
test_reset(void)
{
    u_char                        *pos, *data;
    size_t                         n, m, len;
    ngx_http_chat_frame_rc_e       rc;
    ngx_http_chat_frame_parser_t   p;

    memset(&p, 0, sizeof(p));
    p.max_message = 7;
    p.max_fragments = 2;
    p.text_only = 1;
    p.from_server = 1;

    /* fail, then reset */

    n = cf(stream, FIN, OP_TEXT, S("x"));
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);

    ngx_http_chat_frame_reset(&p);

    CHECK(p.max_message == 7);
    CHECK_EQ(p.max_fragments, 2);
    CHECK_EQ(p.text_only, 1);
    CHECK_EQ(p.from_server, 1);
    CHECK_EQ(p.close_code, 0);
    CHECK(p.error == NULL);
    CHECK_EQ(p.msg_opcode, 0);
    CHECK_EQ(p.fragments, 0);
    CHECK(p.msg_size == 0);
    CHECK_EQ(p.control_len, 0);

    /* parses again, with the role and the limits */

    n = frame(stream, FIN, 0, OP_TEXT, S("1234567"), NULL, LEN_MIN);
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_DATA);
    CHECK(len == 7 && memcmp(data, "1234567", 7) == 0);

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_MESSAGE);

    n = frame(stream, FIN, 0, OP_TEXT, S("12345678"), NULL, LEN_MIN);
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1009);

    ngx_http_chat_frame_reset(&p);

    n = frame(stream, FIN, 0, OP_BINARY, S("1"), NULL, LEN_MIN);
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1003);

    ngx_http_chat_frame_reset(&p);

    n = frame(stream, MORE, 0, OP_TEXT, S("1"), NULL, LEN_MIN);
    n += frame(stream + n, MORE, 0, OP_CONT, S("2"), NULL, LEN_MIN);
    n += frame(stream + n, FIN, 0, OP_CONT, S("3"), NULL, LEN_MIN);
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_DATA);
    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_DATA);
    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1008);

    /* a reset in the middle of a message forgets the message */

    ngx_http_chat_frame_reset(&p);

    n = frame(stream, MORE, 0, OP_TEXT, S("\xce"), NULL, LEN_MIN);
    m = frame(stream + n, FIN, 0, OP_CONT, S("\xba"), NULL, LEN_MIN);
    pos = stream;

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_DATA);
    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_AGAIN);

    ngx_http_chat_frame_reset(&p);

    rc = ngx_http_chat_frame_parse(&p, &pos, stream + n + m, &data, &len);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_ERROR);
    CHECK_EQ(p.close_code, 1002);
}


/* the encoder, and the parser reading back what it wrote */

static void
check_header(uint64_t len, const u_char *expect, size_t elen)
{
    u_char                        *pos, *data, *last;
    size_t                         n, dlen;
    u_char                         buf[NGX_HTTP_CHAT_FRAME_HEADER_MAX + 8];
    ngx_http_chat_frame_rc_e       rc;
    ngx_http_chat_frame_parser_t   p;

    /* unmasked, a server's */

    memset(buf, 0xee, sizeof(buf));

    n = ngx_http_chat_frame_header(buf, OP_BINARY, 1, len, NULL);
    CHECK_EQ(n, elen);
    CHECK(memcmp(buf, expect, elen) == 0);
    CHECK_EQ(buf[n], 0xee);

    conf_init(&p, &server);
    pos = buf;
    last = buf + n;

    rc = ngx_http_chat_frame_parse(&p, &pos, last, &data, &dlen);
    CHECK_EQ(rc, len ? NGX_HTTP_CHAT_FRAME_AGAIN
                     : NGX_HTTP_CHAT_FRAME_MESSAGE);
    CHECK(pos == last);
    CHECK(p.frame_len == len);
    CHECK_EQ(p.fin, 1);
    CHECK_EQ(p.opcode, OP_BINARY);

    /* masked, a client's: the same and the mask after it */

    memset(buf, 0xee, sizeof(buf));

    n = ngx_http_chat_frame_header(buf, OP_TEXT, 0, len, mask_odd);
    CHECK_EQ(n, elen + 4);
    CHECK_EQ(buf[0], OP_TEXT);
    CHECK_EQ(buf[1], expect[1] | 0x80);
    CHECK(memcmp(buf + 2, expect + 2, elen - 2) == 0);
    CHECK(memcmp(buf + elen, mask_odd, 4) == 0);
    CHECK_EQ(buf[n], 0xee);

    conf_init(&p, &client);
    pos = buf;
    last = buf + n;

    rc = ngx_http_chat_frame_parse(&p, &pos, last, &data, &dlen);
    CHECK_EQ(rc, NGX_HTTP_CHAT_FRAME_AGAIN);
    CHECK(pos == last);
    CHECK(p.frame_len == len);
    CHECK(p.remaining == len);
    CHECK_EQ(p.fin, 0);
    CHECK_EQ(p.opcode, OP_TEXT);
    CHECK_EQ(p.masked, 1);
    CHECK(memcmp(p.mask, mask_odd, 4) == 0);
    CHECK(p.error == NULL);
}


static void
test_header(void)
{
    size_t   n, hlen, len, i;
    u_char   buf[NGX_HTTP_CHAT_FRAME_HEADER_MAX];
    trace_t  t;

    static const size_t  lens[] = {
        0, 1, 124, 125, 126, 127, 65535, 65536, 65537
    };

    check_header(0, (u_char *) "\x82\x00", 2);
    check_header(1, (u_char *) "\x82\x01", 2);
    check_header(125, (u_char *) "\x82\x7d", 2);
    check_header(126, (u_char *) "\x82\x7e\x00\x7e", 4);
    check_header(256, (u_char *) "\x82\x7e\x01\x00", 4);
    check_header(65535, (u_char *) "\x82\x7e\xff\xff", 4);
    check_header(65536, (u_char *)
                 "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    check_header(0x100000000ULL, (u_char *)
                 "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10);
    check_header(0x0123456789abcdefULL, (u_char *)
                 "\x82\x7f\x01\x23\x45\x67\x89\xab\xcd\xef", 10);
    check_header(0x7fffffffffffffffULL, (u_char *)
                 "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 10);

    /* the first byte */

    n = ngx_http_chat_frame_header(buf, OP_PING, 1, 0, NULL);
    CHECK(n == 2 && buf[0] == 0x89 && buf[1] == 0);

    n = ngx_http_chat_frame_header(buf, OP_CONT, 0, 3, NULL);
    CHECK(n == 2 && buf[0] == 0x00 && buf[1] == 3);

    n = ngx_http_chat_frame_header(buf, OP_CLOSE, 1, 2, mask_rfc);
    CHECK(n == 6 && buf[0] == 0x88 && buf[1] == 0x82);

    /* whole frames through the parser, around each length boundary */

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        len = lens[i];

        hlen = ngx_http_chat_frame_header(stream, OP_BINARY, 1, len,
                                          mask_odd);
        fill(payload, len, 3);

        for (n = 0; n < len; n++) {
            stream[hlen + n] = payload[n] ^ mask_odd[n % 4];
        }

        run(&client, stream, hlen + len, &t);
        CHECK_STR(t.ev, len ? "DM" : "M");
        CHECK(t.ndata == len && memcmp(t.data, payload, len) == 0);
        trace_free(&t);

        hlen = ngx_http_chat_frame_header(stream, OP_TEXT, 1, len, NULL);
        fill_text(stream + hlen, len);

        run(&server, stream, hlen + len, &t);
        CHECK_STR(t.ev, len ? "DM" : "M");
        CHECK_EQ(t.ndata, len);
        trace_free(&t);
    }
}


int
main(void)
{
    test_rfc_examples();
    test_lengths();
    test_non_minimal();
    test_huge_length();
    test_masking();
    test_reserved();
    test_control();
    test_fragmentation();
    test_max_fragments();
    test_max_message();
    test_text_only();
    test_utf8();
    test_close();
    test_error_sticky();
    test_reset();
    test_header();

    UNIT_DONE("frame");
}
