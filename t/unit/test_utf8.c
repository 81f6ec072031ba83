
/*
 * Unit tests of the incremental UTF-8 validator (RFC 3629): the boundary
 * characters, the invalid forms of the WebSocket conformance suites'
 * section 6, the incremental property (any split gives the same verdict),
 * failing at the first invalid byte, the ASCII fast path, and the length.
 *
 * An independent reference decoder computes the expected verdict and the
 * index of the first invalid byte for the exhaustive comparisons.
 */


#include <stdint.h>
#include <sys/types.h>

#include <ngx_http_chat_utf8.h>
#include <unit.h>


#define ACCEPT   NGX_HTTP_CHAT_UTF8_ACCEPT
#define REJECT   NGX_HTTP_CHAT_UTF8_REJECT

/* verdicts of the reference and of the cases */
#define V_ACCEPT   0
#define V_REJECT   1
#define V_PARTIAL  2

#define S(lit)     (const u_char *) lit, sizeof(lit) - 1


typedef struct {
    const char  *name;
    const char  *s;
    size_t       len;
    int          verdict;
    long         bad;       /* index of the first invalid byte, or -1 */
} utf8_case_t;


#define T_OK(name, lit)      { name, lit, sizeof(lit) - 1, V_ACCEPT, -1 }
#define T_PART(name, lit)    { name, lit, sizeof(lit) - 1, V_PARTIAL, -1 }
#define T_BAD(name, lit, i)  { name, lit, sizeof(lit) - 1, V_REJECT, i }


static utf8_case_t  cases[] = {

    /* valid boundaries */
    T_OK("U+0000", "\x00"),
    T_OK("U+007F", "\x7f"),
    T_OK("U+0080", "\xc2\x80"),
    T_OK("U+07FF", "\xdf\xbf"),
    T_OK("U+0800", "\xe0\xa0\x80"),
    T_OK("U+D7FF", "\xed\x9f\xbf"),
    T_OK("U+E000", "\xee\x80\x80"),
    T_OK("U+FFFD", "\xef\xbf\xbd"),
    T_OK("U+FFFF", "\xef\xbf\xbf"),
    T_OK("U+10000", "\xf0\x90\x80\x80"),
    T_OK("U+10FFFF", "\xf4\x8f\xbf\xbf"),
    T_OK("empty", ""),
    T_OK("ascii", "Hello-2-World"),
    T_OK("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
    T_OK("mixed", "a\xc2\x80" "b\xe0\xa0\x80" "c\xf0\x90\x80\x80" "d"),

    /* noncharacters are characters (6.22) */
    T_OK("U+FFFE", "\xef\xbf\xbe"),
    T_OK("U+FDD0", "\xef\xb7\x90"),
    T_OK("U+FDEF", "\xef\xb7\xaf"),
    T_OK("U+1FFFE", "\xf0\x9f\xbf\xbe"),
    T_OK("U+10FFFE", "\xf4\x8f\xbf\xbe"),

    /* lone continuation bytes (6.10, 6.12) */
    T_BAD("0x80", "\x80", 0),
    T_BAD("0xBF", "\xbf", 0),
    T_BAD("a 0x80", "a\x80", 1),
    T_BAD("0x80 0xBF", "\x80\xbf", 0),
    T_BAD("kosme + 0x80", "\xce\xba\x80", 2),

    /* C0/C1 leads: overlong 2-byte forms (6.17-6.19) */
    T_BAD("C0 AF", "\xc0\xaf", 0),
    T_BAD("C0 80", "\xc0\x80", 0),
    T_BAD("C1 BF", "\xc1\xbf", 0),
    T_BAD("C0 alone", "\xc0", 0),

    /* overlong 3- and 4-byte forms */
    T_BAD("E0 80 AF", "\xe0\x80\xaf", 1),
    T_BAD("E0 80 80", "\xe0\x80\x80", 1),
    T_BAD("E0 9F BF", "\xe0\x9f\xbf", 1),
    T_BAD("F0 80 80 AF", "\xf0\x80\x80\xaf", 1),
    T_BAD("F0 80 80 80", "\xf0\x80\x80\x80", 1),
    T_BAD("F0 8F BF BF", "\xf0\x8f\xbf\xbf", 1),

    /* surrogates (6.20, 6.21) */
    T_BAD("U+D800", "\xed\xa0\x80", 1),
    T_BAD("U+DB7F", "\xed\xad\xbf", 1),
    T_BAD("U+DB80", "\xed\xae\x80", 1),
    T_BAD("U+DBFF", "\xed\xaf\xbf", 1),
    T_BAD("U+DC00", "\xed\xb0\x80", 1),
    T_BAD("U+DF80", "\xed\xbe\x80", 1),
    T_BAD("U+DFFF", "\xed\xbf\xbf", 1),
    T_BAD("D800 DC00", "\xed\xa0\x80\xed\xb0\x80", 1),
    T_BAD("DBFF DFFF", "\xed\xaf\xbf\xed\xbf\xbf", 1),
    T_BAD("a D800", "a\xed\xa0\x80", 2),

    /* above U+10FFFF */
    T_BAD("U+110000", "\xf4\x90\x80\x80", 1),
    T_BAD("F4 BF", "\xf4\xbf\xbf\xbf", 1),
    T_BAD("kosme-edited", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
          "\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64", 12),

    /* F5..FF leads, 5- and 6-byte forms (6.8, 6.16) */
    T_BAD("F5", "\xf5\x80\x80\x80", 0),
    T_BAD("F7 BF BF", "\xf7\xbf\xbf", 0),
    T_BAD("F8 5-byte", "\xf8\x88\x80\x80\x80", 0),
    T_BAD("FC 6-byte", "\xfc\x84\x80\x80\x80\x80", 0),
    T_BAD("FE", "\xfe", 0),
    T_BAD("FF", "\xff", 0),
    T_BAD("FE FE FF FF", "\xfe\xfe\xff\xff", 0),
    T_BAD("ascii FF", "abcdefghij\xff", 10),

    /* truncated at the end: neither accepted nor rejected */
    T_PART("C2", "\xc2"),
    T_PART("DF", "\xdf"),
    T_PART("E0", "\xe0"),
    T_PART("E0 A0", "\xe0\xa0"),
    T_PART("EF BF", "\xef\xbf"),
    T_PART("ED 9F", "\xed\x9f"),
    T_PART("F0", "\xf0"),
    T_PART("F0 90", "\xf0\x90"),
    T_PART("F0 90 80", "\xf0\x90\x80"),
    T_PART("F4 8F BF", "\xf4\x8f\xbf"),
    T_PART("kosme + CE", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"),

    /* truncated and then something else (6.13-6.15) */
    T_BAD("C2 space", "\xc2\x20", 1),
    T_BAD("E0 A0 space", "\xe0\xa0\x20", 2),
    T_BAD("F0 90 80 a", "\xf0\x90\x80\x61", 3),
    T_BAD("DF then C2", "\xdf\xc2\x80", 1),
    T_BAD("EF BF then EF", "\xef\xbf\xef\xbf\xbf", 2),
    T_BAD("F4 8F BF then E0", "\xf4\x8f\xbf\xe0\xa0\x80", 3),
    T_BAD("concatenated incomplete",
          "\xc0\xe0\x80\xf0\x80\x80\xdf\xef\xbf\xf7\xbf\xbf", 0),
    T_BAD("concatenated incomplete 2",
          "\xdf\xef\xbf\xf4\x8f\xbf", 1)
};


/*
 * The reference: the code points a prefix of a sequence may still become
 * form a range (the missing bits all 0 or all 1), and the prefix is bad as
 * soon as that range holds no character of the sequence's length.
 */

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
ref_check(const u_char *p, size_t n, long *bad)
{
    u_char    c;
    size_t    i, k, len, rest;
    uint32_t  v, min, max;

    *bad = -1;
    i = 0;

    while (i < n) {
        c = p[i];

        if (c < 0x80) {
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
            *bad = (long) i;
            return V_REJECT;
        }

        for (k = 1; ; k++) {
            rest = 6 * (len - k);

            if (!ref_possible(v << rest, (v << rest) | ((1u << rest) - 1),
                              min, max))
            {
                *bad = (long) (i + k - 1);
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
                *bad = (long) (i + k);
                return V_REJECT;
            }

            v = (v << 6) | (c & 0x3f);
        }

        i += len;
    }

    return V_ACCEPT;
}


static int
verdict(uint32_t state)
{
    if (state == ACCEPT) {
        return V_ACCEPT;
    }

    return (state == REJECT) ? V_REJECT : V_PARTIAL;
}


/* the index of the byte at which REJECT first appears, fed one at a time */

static long
reject_index(const u_char *p, size_t n)
{
    size_t    i;
    uint32_t  state;

    state = ACCEPT;

    for (i = 0; i < n; i++) {
        state = ngx_http_chat_utf8_validate(state, p + i, 1);

        if (state == REJECT) {
            return (long) i;
        }
    }

    return -1;
}


/* every split into two (and three) parts gives the verdict of the whole */

static unsigned
split_mismatches(const u_char *p, size_t n, int three)
{
    size_t    i, j;
    uint32_t  whole, s;
    unsigned  bad;

    bad = 0;
    whole = ngx_http_chat_utf8_validate(ACCEPT, p, n);

    for (i = 0; i <= n; i++) {
        s = ngx_http_chat_utf8_validate(ACCEPT, p, i);
        s = ngx_http_chat_utf8_validate(s, p + i, n - i);

        bad += (s != whole);

        if (!three) {
            continue;
        }

        for (j = i; j <= n; j++) {
            s = ngx_http_chat_utf8_validate(ACCEPT, p, i);
            s = ngx_http_chat_utf8_validate(s, p + i, j - i);
            s = ngx_http_chat_utf8_validate(s, p + j, n - j);

            bad += (s != whole);
        }
    }

    return bad;
}


static void
test_cases(void)
{
    long           bad, rbad;
    size_t         i, k;
    uint32_t       state, prefix;
    utf8_case_t   *c;
    const u_char  *s;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c = &cases[i];
        s = (const u_char *) c->s;

        state = ngx_http_chat_utf8_validate(ACCEPT, s, c->len);

        if (verdict(state) != c->verdict) {
            fprintf(stderr, "case \"%s\": verdict %d, expected %d\n",
                    c->name, verdict(state), c->verdict);
        }

        CHECK_EQ(verdict(state), c->verdict);

        bad = reject_index(s, c->len);

        if (bad != c->bad) {
            fprintf(stderr, "case \"%s\": rejected at %ld, expected %ld\n",
                    c->name, bad, c->bad);
        }

        CHECK_EQ(bad, c->bad);

        /* the table agrees with the reference */

        CHECK_EQ(ref_check(s, c->len, &rbad), c->verdict);
        CHECK_EQ(rbad, c->bad);

        CHECK_EQ(split_mismatches(s, c->len, 1), 0);

        /* every prefix before the bad byte is not rejected, after it is */

        for (k = 0; k <= c->len; k++) {
            prefix = ngx_http_chat_utf8_validate(ACCEPT, s, k);

            if (c->bad >= 0 && (long) k > c->bad) {
                CHECK_EQ(prefix, REJECT);

            } else {
                CHECK(prefix != REJECT);
            }
        }

        /* a truncated sequence followed by ASCII is rejected at the ASCII */

        if (c->verdict == V_PARTIAL) {
            CHECK(state != ACCEPT && state != REJECT);
            CHECK_EQ(ngx_http_chat_utf8_validate(state, S("a")), REJECT);
            CHECK_EQ(ngx_http_chat_utf8_validate(state, S("\x00")), REJECT);
            CHECK_EQ(ngx_http_chat_utf8_validate(state, S("abcdefghij")),
                     REJECT);
        }
    }
}


static void
test_boundaries(void)
{
    /* the exact boundaries, each a lone character, and their neighbours */

    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\x00")), ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\x7f")), ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\x80")), REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xc2\x80")), ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xc1\xbf")), REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xdf\xbf")), ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xe0\xa0\x80")), ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xe0\x9f\xbf")), REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xef\xbf\xbf")), ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xf0\x90\x80\x80")),
             ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xf0\x8f\xbf\xbf")),
             REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xf4\x8f\xbf\xbf")),
             ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xf4\x90\x80\x80")),
             REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xed\x9f\xbf")), ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xed\xa0\x80")), REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xed\xbf\xbf")), REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("\xee\x80\x80")), ACCEPT);
}


static void
test_leads(void)
{
    unsigned  c, bad;
    u_char    b[4];

    /* every continuation byte alone, and after ASCII */

    bad = 0;

    for (c = 0x80; c <= 0xbf; c++) {
        b[0] = (u_char) c;
        bad += ngx_http_chat_utf8_validate(ACCEPT, b, 1) != REJECT;

        b[0] = 'x';
        b[1] = (u_char) c;
        bad += reject_index(b, 2) != 1;
    }

    CHECK_EQ(bad, 0);

    /* C0, C1 and F5..FF leads are rejected at once, whatever follows */

    bad = 0;

    for (c = 0xc0; c <= 0xff; c++) {
        if (c >= 0xc2 && c <= 0xf4) {
            continue;
        }

        b[0] = (u_char) c;
        b[1] = 0x80;
        b[2] = 0x80;
        b[3] = 0x80;

        bad += reject_index(b, 4) != 0;
        bad += ngx_http_chat_utf8_validate(ACCEPT, b, 1) != REJECT;
    }

    CHECK_EQ(bad, 0);

    /* C2..F4 leads alone are open sequences */

    bad = 0;

    for (c = 0xc2; c <= 0xf4; c++) {
        b[0] = (u_char) c;
        bad += verdict(ngx_http_chat_utf8_validate(ACCEPT, b, 1))
               != V_PARTIAL;
    }

    CHECK_EQ(bad, 0);

    /* the narrowed second-byte ranges of E0, ED, F0 and F4 */

    bad = 0;

    for (c = 0x00; c <= 0xff; c++) {
        b[1] = (u_char) c;

        b[0] = 0xe0;
        bad += (ngx_http_chat_utf8_validate(ACCEPT, b, 2) == REJECT)
               != (c < 0xa0 || c > 0xbf);

        b[0] = 0xed;
        bad += (ngx_http_chat_utf8_validate(ACCEPT, b, 2) == REJECT)
               != (c < 0x80 || c > 0x9f);

        b[0] = 0xf0;
        bad += (ngx_http_chat_utf8_validate(ACCEPT, b, 2) == REJECT)
               != (c < 0x90 || c > 0xbf);

        b[0] = 0xf4;
        bad += (ngx_http_chat_utf8_validate(ACCEPT, b, 2) == REJECT)
               != (c < 0x80 || c > 0x8f);

        b[0] = 0xe1;
        bad += (ngx_http_chat_utf8_validate(ACCEPT, b, 2) == REJECT)
               != (c < 0x80 || c > 0xbf);

        b[0] = 0xf1;
        bad += (ngx_http_chat_utf8_validate(ACCEPT, b, 2) == REJECT)
               != (c < 0x80 || c > 0xbf);
    }

    CHECK_EQ(bad, 0);
}


static size_t
encode(u_char *b, uint32_t cp)
{
    if (cp < 0x80) {
        b[0] = (u_char) cp;
        return 1;
    }

    if (cp < 0x800) {
        b[0] = (u_char) (0xc0 | (cp >> 6));
        b[1] = (u_char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        b[0] = (u_char) (0xe0 | (cp >> 12));
        b[1] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        b[2] = (u_char) (0x80 | (cp & 0x3f));
        return 3;
    }

    b[0] = (u_char) (0xf0 | (cp >> 18));
    b[1] = (u_char) (0x80 | ((cp >> 12) & 0x3f));
    b[2] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
    b[3] = (u_char) (0x80 | (cp & 0x3f));
    return 4;
}


static void
test_all_code_points(void)
{
    int       surrogate;
    size_t    n;
    u_char    b[4];
    uint32_t  cp, state;
    unsigned  bad, badlen;

    bad = 0;
    badlen = 0;

    for (cp = 0; cp <= 0x10ffff; cp++) {
        n = encode(b, cp);
        state = ngx_http_chat_utf8_validate(ACCEPT, b, n);
        surrogate = (cp >= 0xd800 && cp <= 0xdfff);

        if (state != (surrogate ? REJECT : ACCEPT)) {
            if (bad++ == 0) {
                fprintf(stderr, "U+%04X: state %u\n", (unsigned) cp,
                        (unsigned) state);
            }
        }

        if (!surrogate) {
            badlen += ngx_http_chat_utf8_length(b, n) != 1;
        }
    }

    CHECK_EQ(bad, 0);
    CHECK_EQ(badlen, 0);
}


/* all strings of 1-3 bytes, and 4-byte ones with chosen last bytes */

static void
test_exhaustive(void)
{
    long       bad, rbad;
    size_t     n;
    u_char     b[4];
    unsigned   i, v, mism, mism_at;
    uint32_t   state;

    static const u_char  last[] = {
        0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2,
        0xdf, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff
    };

    mism = 0;
    mism_at = 0;

    for (n = 1; n <= 3; n++) {
        for (v = 0; v < (1u << (8 * n)); v++) {
            for (i = 0; i < n; i++) {
                b[i] = (u_char) (v >> (8 * i));
            }

            state = ngx_http_chat_utf8_validate(ACCEPT, b, n);

            if (verdict(state) != ref_check(b, n, &rbad)) {
                if (mism++ == 0) {
                    fprintf(stderr, "exhaustive: %02x %02x %02x (n %u): "
                            "state %u\n", b[0], b[1], b[2], (unsigned) n,
                            (unsigned) state);
                }
            }

            bad = reject_index(b, n);

            if (bad != rbad) {
                if (mism_at++ == 0) {
                    fprintf(stderr, "exhaustive: %02x %02x %02x (n %u): "
                            "rejected at %ld, expected %ld\n", b[0], b[1],
                            b[2], (unsigned) n, bad, rbad);
                }
            }
        }
    }

    for (v = 0; v < (1u << 24); v++) {
        if ((v & 0xff) < 0xc0) {
            continue;
        }

        b[0] = (u_char) v;
        b[1] = (u_char) (v >> 8);
        b[2] = (u_char) (v >> 16);

        for (i = 0; i < sizeof(last); i++) {
            b[3] = last[i];

            state = ngx_http_chat_utf8_validate(ACCEPT, b, 4);

            if (verdict(state) != ref_check(b, 4, &rbad)) {
                if (mism++ == 0) {
                    fprintf(stderr, "exhaustive: %02x %02x %02x %02x: "
                            "state %u\n", b[0], b[1], b[2], b[3],
                            (unsigned) state);
                }
            }

            if (reject_index(b, 4) != rbad) {
                mism_at++;
            }
        }
    }

    CHECK_EQ(mism, 0);
    CHECK_EQ(mism_at, 0);
}


static void
test_kosme(void)
{
    static const u_char  kosme[] =
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    static const u_char  edited[] =
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
        "\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64";

    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, kosme, sizeof(kosme) - 1),
             ACCEPT);
    CHECK_EQ(ngx_http_chat_utf8_length(kosme, sizeof(kosme) - 1), 5);

    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, edited, sizeof(edited) - 1),
             REJECT);

    /* fail fast: at the 0x90, not at the end of the sequence */

    CHECK_EQ(edited[12], 0x90);
    CHECK_EQ(reject_index(edited, sizeof(edited) - 1), 12);
    CHECK(ngx_http_chat_utf8_validate(ACCEPT, edited, 12) != REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, edited, 13), REJECT);
}


static void
test_sticky(void)
{
    uint32_t  state;

    CHECK_EQ(ngx_http_chat_utf8_validate(REJECT, S("")), REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(REJECT, S("a")), REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(REJECT, S("abcdefghijklmnop")),
             REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(REJECT, S("\xc2\x80")), REJECT);
    CHECK_EQ(ngx_http_chat_utf8_validate(REJECT, S("\x80")), REJECT);

    state = ngx_http_chat_utf8_validate(ACCEPT, S("ok\xff"));
    CHECK_EQ(state, REJECT);

    state = ngx_http_chat_utf8_validate(state, S("\xce\xba"));
    CHECK_EQ(state, REJECT);

    state = ngx_http_chat_utf8_validate(state, S("plain ascii text!"));
    CHECK_EQ(state, REJECT);

    /* an empty input keeps any state */

    CHECK_EQ(ngx_http_chat_utf8_validate(ACCEPT, S("")), ACCEPT);

    state = ngx_http_chat_utf8_validate(ACCEPT, S("\xf0\x90"));
    CHECK_EQ(ngx_http_chat_utf8_validate(state, S("")), state);
    CHECK_EQ(ngx_http_chat_utf8_validate(state, S("\x80\x80")), ACCEPT);
}


static void
test_fast_path(void)
{
    size_t    len, i, off;
    u_char    buf[64], *b;
    unsigned  bad;
    uint32_t  state;

    bad = 0;

    for (off = 0; off < 8; off++) {
        b = buf + off;

        for (len = 0; len <= 40; len++) {

            memset(b, 'a', len);

            bad += ngx_http_chat_utf8_validate(ACCEPT, b, len) != ACCEPT;

            for (i = 0; i < len; i++) {

                /* an invalid byte: rejected exactly there */

                memset(b, 'a', len);
                b[i] = 0x80;

                bad += ngx_http_chat_utf8_validate(ACCEPT, b, len) != REJECT;
                bad += ngx_http_chat_utf8_validate(ACCEPT, b, i) != ACCEPT;
                bad += ngx_http_chat_utf8_validate(ACCEPT, b, i + 1)
                       != REJECT;
                bad += reject_index(b, len) != (long) i;

                b[i] = 0xff;
                bad += ngx_http_chat_utf8_validate(ACCEPT, b, len) != REJECT;

                /* a lead byte with ASCII after it: rejected at the ASCII */

                b[i] = 0xc3;
                state = ngx_http_chat_utf8_validate(ACCEPT, b, len);

                if (i == len - 1) {
                    bad += verdict(state) != V_PARTIAL;

                } else {
                    bad += state != REJECT;
                    bad += ngx_http_chat_utf8_validate(ACCEPT, b, i + 2)
                           != REJECT;
                }

                /* a valid 2-byte character */

                if (i + 1 < len) {
                    b[i] = 0xc3;
                    b[i + 1] = 0xa9;
                    bad += ngx_http_chat_utf8_validate(ACCEPT, b, len)
                           != ACCEPT;
                    bad += ngx_http_chat_utf8_length(b, len) != len - 1;
                }

                /* a valid 4-byte character */

                if (i + 3 < len) {
                    memset(b, 'a', len);
                    memcpy(b + i, "\xf0\x9f\x98\x80", 4);
                    bad += ngx_http_chat_utf8_validate(ACCEPT, b, len)
                           != ACCEPT;
                    bad += ngx_http_chat_utf8_length(b, len) != len - 3;
                    bad += split_mismatches(b, len, 0) != 0;
                }

                /* the high bit alone is enough: 0x80 | 'a' */

                memset(b, 'a', len);
                b[i] = 0xe1;
                bad += ngx_http_chat_utf8_validate(ACCEPT, b, len) == ACCEPT;
            }
        }
    }

    CHECK_EQ(bad, 0);
}


static void
test_incremental(void)
{
    int       v;
    long      rbad;
    size_t    i, k, n;
    u_char    buf[256];
    unsigned  bad;
    uint32_t  state;

    /* every case of the table concatenated after a long ASCII prefix */

    bad = 0;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(buf, "0123456789abcdefghij", 20);
        memcpy(buf + 20, cases[i].s, cases[i].len);
        n = 20 + cases[i].len;

        bad += split_mismatches(buf, n, 1) != 0;
        bad += reject_index(buf, n)
               != (cases[i].bad < 0 ? -1 : cases[i].bad + 20);

        /* and byte by byte gives the verdict of the whole */

        state = ACCEPT;

        for (k = 0; k < n; k++) {
            state = ngx_http_chat_utf8_validate(state, buf + k, 1);
        }

        bad += state != ngx_http_chat_utf8_validate(ACCEPT, buf, n);
        bad += verdict(state) != cases[i].verdict;
    }

    CHECK_EQ(bad, 0);

    /* all pairs of cases concatenated: the first bad byte wins */

    bad = 0;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            memcpy(buf, cases[i].s, cases[i].len);
            memcpy(buf + cases[i].len, cases[k].s, cases[k].len);
            n = cases[i].len + cases[k].len;

            v = ref_check(buf, n, &rbad);
            state = ngx_http_chat_utf8_validate(ACCEPT, buf, n);

            bad += verdict(state) != v;
            bad += reject_index(buf, n) != rbad;
            bad += split_mismatches(buf, n, 0) != 0;
        }
    }

    CHECK_EQ(bad, 0);
}


static void
test_length(void)
{
    CHECK_EQ(ngx_http_chat_utf8_length(S("")), 0);
    CHECK_EQ(ngx_http_chat_utf8_length(S("a")), 1);
    CHECK_EQ(ngx_http_chat_utf8_length(S("Hello, world")), 12);
    CHECK_EQ(ngx_http_chat_utf8_length(S("\x00\x00")), 2);
    CHECK_EQ(ngx_http_chat_utf8_length(S("\xc2\x80")), 1);
    CHECK_EQ(ngx_http_chat_utf8_length(S("\xdf\xbf")), 1);
    CHECK_EQ(ngx_http_chat_utf8_length(S("\xe0\xa0\x80")), 1);
    CHECK_EQ(ngx_http_chat_utf8_length(S("\xef\xbf\xbf")), 1);
    CHECK_EQ(ngx_http_chat_utf8_length(S("\xf0\x90\x80\x80")), 1);
    CHECK_EQ(ngx_http_chat_utf8_length(S("\xf4\x8f\xbf\xbf")), 1);
    CHECK_EQ(ngx_http_chat_utf8_length(
             S("a\xc2\x80" "b\xe0\xa0\x80" "c\xf0\x90\x80\x80" "d")), 7);
    CHECK_EQ(ngx_http_chat_utf8_length(
             S("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80")), 3);
    CHECK_EQ(ngx_http_chat_utf8_length(S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce"
                                         "\xbc\xce\xb5")), 5);

    /* a prefix length counts only what it holds */

    CHECK_EQ(ngx_http_chat_utf8_length((const u_char *) "\xce\xba\xe1\xbd",
                                       3), 2);
}


int
main(void)
{
    test_cases();
    test_boundaries();
    test_leads();
    test_all_code_points();
    test_exhaustive();
    test_kosme();
    test_sticky();
    test_fast_path();
    test_incremental();
    test_length();

    UNIT_DONE("utf8");
}
