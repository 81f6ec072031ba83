
/*
 * File type sniffing.
 *
 * A format is recognised by its signature alone; the image size is read
 * from the header when the head holds it whole and it is sane, else it is
 * 0x0 and the type stays (a JPEG whose frame header lies past the head is
 * still a JPEG).  Every length and offset in the bytes is untrusted: each
 * read is checked against len first, arithmetic is done on values already
 * known to fit, and every loop advances at least one byte.
 *
 * Text is what is left: valid UTF-8 without NUL or C0 controls other than
 * tab, newline, carriage return and form feed.  HTML and SVG are therefore
 * text/plain: served inert, never as a document a browser would run.
 */


#include <string.h>

#include <ngx_http_chat_utf8.h>
#include <ngx_http_chat_sniff.h>


/* a side larger than this is a lie or a decompression bomb: 0x0 */
#define NGX_HTTP_CHAT_SNIFF_MAX_SIDE  100000


static const char  ngx_http_chat_sniff_png[] = "image/png";
static const char  ngx_http_chat_sniff_jpeg[] = "image/jpeg";
static const char  ngx_http_chat_sniff_gif[] = "image/gif";
static const char  ngx_http_chat_sniff_webp[] = "image/webp";
static const char  ngx_http_chat_sniff_pdf[] = "application/pdf";
static const char  ngx_http_chat_sniff_text[] = "text/plain; charset=utf-8";
static const char  ngx_http_chat_sniff_octet[] = "application/octet-stream";


static void ngx_http_chat_sniff_image(ngx_http_chat_sniff_t *out,
    const char *type, uint32_t width, uint32_t height);
static void ngx_http_chat_sniff_png_size(const u_char *p, size_t len,
    ngx_http_chat_sniff_t *out);
static void ngx_http_chat_sniff_jpeg_size(const u_char *p, size_t len,
    ngx_http_chat_sniff_t *out);
static void ngx_http_chat_sniff_webp_size(const u_char *p, size_t len,
    ngx_http_chat_sniff_t *out);
static ngx_uint_t ngx_http_chat_sniff_is_text(const u_char *p, size_t len,
    ngx_uint_t whole);


#define ngx_http_chat_sniff_be16(p)                                          \
    (((uint32_t) (p)[0] << 8) | (uint32_t) (p)[1])

#define ngx_http_chat_sniff_be32(p)                                          \
    (((uint32_t) (p)[0] << 24) | ((uint32_t) (p)[1] << 16)                   \
     | ((uint32_t) (p)[2] << 8) | (uint32_t) (p)[3])

#define ngx_http_chat_sniff_le16(p)                                          \
    ((uint32_t) (p)[0] | ((uint32_t) (p)[1] << 8))

#define ngx_http_chat_sniff_le24(p)                                          \
    ((uint32_t) (p)[0] | ((uint32_t) (p)[1] << 8) | ((uint32_t) (p)[2] << 16))

#define ngx_http_chat_sniff_le32(p)                                          \
    (ngx_http_chat_sniff_le24(p) | ((uint32_t) (p)[3] << 24))

#define ngx_http_chat_sniff_starts(p, len, s)                                \
    ((len) >= sizeof(s) - 1 && memcmp(p, s, sizeof(s) - 1) == 0)


void
ngx_http_chat_sniff_detect(const u_char *head, size_t len, ngx_uint_t whole,
    ngx_http_chat_sniff_t *out)
{
    out->type = ngx_http_chat_sniff_octet;
    out->image = 0;
    out->width = 0;
    out->height = 0;

    if (len > NGX_HTTP_CHAT_SNIFF_HEAD) {
        /* more than the sniffer reads: the rest is not looked at */
        len = NGX_HTTP_CHAT_SNIFF_HEAD;
        whole = 0;
    }

    if (len == 0) {
        return;
    }

    if (ngx_http_chat_sniff_starts(head, len, "\x89PNG\r\n\x1a\n")) {
        ngx_http_chat_sniff_png_size(head, len, out);
        return;
    }

    if (ngx_http_chat_sniff_starts(head, len, "\xff\xd8\xff")) {
        ngx_http_chat_sniff_jpeg_size(head, len, out);
        return;
    }

    if (ngx_http_chat_sniff_starts(head, len, "GIF87a")
        || ngx_http_chat_sniff_starts(head, len, "GIF89a"))
    {
        /* the logical screen: width, height, little-endian */

        if (len >= 10) {
            ngx_http_chat_sniff_image(out, ngx_http_chat_sniff_gif,
                                      ngx_http_chat_sniff_le16(head + 6),
                                      ngx_http_chat_sniff_le16(head + 8));
        } else {
            ngx_http_chat_sniff_image(out, ngx_http_chat_sniff_gif, 0, 0);
        }

        return;
    }

    if (len >= 12
        && memcmp(head, "RIFF", 4) == 0
        && memcmp(head + 8, "WEBP", 4) == 0)
    {
        ngx_http_chat_sniff_webp_size(head, len, out);
        return;
    }

    if (ngx_http_chat_sniff_starts(head, len, "%PDF-")) {
        out->type = ngx_http_chat_sniff_pdf;
        return;
    }

    if (ngx_http_chat_sniff_is_text(head, len, whole)) {
        out->type = ngx_http_chat_sniff_text;
    }
}


const char *
ngx_http_chat_sniff_known(const char *type)
{
    ngx_uint_t  i;

    static const char  *known[] = {
        ngx_http_chat_sniff_png, ngx_http_chat_sniff_jpeg,
        ngx_http_chat_sniff_gif, ngx_http_chat_sniff_webp,
        ngx_http_chat_sniff_pdf, ngx_http_chat_sniff_text,
        ngx_http_chat_sniff_octet
    };

    if (type == NULL) {
        return NULL;
    }

    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(type, known[i]) == 0) {
            return known[i];
        }
    }

    return NULL;
}


static void
ngx_http_chat_sniff_image(ngx_http_chat_sniff_t *out, const char *type,
    uint32_t width, uint32_t height)
{
    out->type = type;
    out->image = 1;

    if (width == 0 || height == 0
        || width > NGX_HTTP_CHAT_SNIFF_MAX_SIDE
        || height > NGX_HTTP_CHAT_SNIFF_MAX_SIDE)
    {
        width = 0;
        height = 0;
    }

    out->width = width;
    out->height = height;
}


/*
 * After the signature, IHDR must be the first chunk: its length (13),
 * its type, then width and height, big-endian.
 */

static void
ngx_http_chat_sniff_png_size(const u_char *p, size_t len,
    ngx_http_chat_sniff_t *out)
{
    if (len >= 24
        && ngx_http_chat_sniff_be32(p + 8) == 13
        && memcmp(p + 12, "IHDR", 4) == 0)
    {
        ngx_http_chat_sniff_image(out, ngx_http_chat_sniff_png,
                                  ngx_http_chat_sniff_be32(p + 16),
                                  ngx_http_chat_sniff_be32(p + 20));
        return;
    }

    ngx_http_chat_sniff_image(out, ngx_http_chat_sniff_png, 0, 0);
}


/*
 * The marker segments after SOI, up to the first frame header (SOFn):
 * a marker is 0xff (any number of them: fill bytes) and a code; the
 * standalone ones (TEM, RST0-7) carry nothing, the others a big-endian
 * length that counts itself.  A scan (SOS), the end (EOI) or anything
 * out of place before a frame header: the size is unknown.
 */

static void
ngx_http_chat_sniff_jpeg_size(const u_char *p, size_t len,
    ngx_http_chat_sniff_t *out)
{
    u_char    m;
    size_t    i, seg;
    uint32_t  width, height;

    width = 0;
    height = 0;

    i = 2;

    while (i < len) {

        if (p[i] != 0xff) {
            break;
        }

        while (i < len && p[i] == 0xff) {
            i++;
        }

        if (i == len) {
            break;
        }

        m = p[i++];

        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {
            continue;
        }

        if (m == 0x00 || m == 0xd8 || m == 0xd9 || m == 0xda) {
            break;
        }

        if (len - i < 2) {
            break;
        }

        seg = ngx_http_chat_sniff_be16(p + i);

        if (seg < 2) {
            break;
        }

        if (m >= 0xc0 && m <= 0xcf
            && m != 0xc4 && m != 0xc8 && m != 0xcc)
        {
            /*
             * SOFn: length, precision, height, width, then the components
             * (which may lie past the head: the size is read all the same)
             */

            if (seg >= 8 && len - i >= 7) {
                height = ngx_http_chat_sniff_be16(p + i + 3);
                width = ngx_http_chat_sniff_be16(p + i + 5);
            }

            break;
        }

        if (seg > len - i) {
            /* the segment goes on past the head */
            break;
        }

        i += seg;
    }

    ngx_http_chat_sniff_image(out, ngx_http_chat_sniff_jpeg, width, height);
}


/*
 * RIFF, its size, WEBP, then the first chunk: its FourCC and size, then
 * its data from byte 20.
 *
 *   "VP8 "  lossy: a 3-byte frame tag, the start code 9d 01 2a, then
 *           width and height, 14 bits each (the top 2 bits are scaling)
 *   "VP8L"  lossless: the signature 0x2f, then 32 bits: width - 1 and
 *           height - 1, 14 bits each
 *   "VP8X"  extended: flags and 3 reserved bytes, then canvas width - 1
 *           and height - 1, 24 bits each
 */

static void
ngx_http_chat_sniff_webp_size(const u_char *p, size_t len,
    ngx_http_chat_sniff_t *out)
{
    uint32_t       bits, width, height;
    const u_char  *d;

    width = 0;
    height = 0;
    d = p + 20;

    if (len < 20) {
        goto done;
    }

    if (memcmp(p + 12, "VP8 ", 4) == 0) {
        if (len >= 30 && d[3] == 0x9d && d[4] == 0x01 && d[5] == 0x2a) {
            width = ngx_http_chat_sniff_le16(d + 6) & 0x3fff;
            height = ngx_http_chat_sniff_le16(d + 8) & 0x3fff;
        }

    } else if (memcmp(p + 12, "VP8L", 4) == 0) {
        if (len >= 25 && d[0] == 0x2f) {
            bits = ngx_http_chat_sniff_le32(d + 1);
            width = (bits & 0x3fff) + 1;
            height = ((bits >> 14) & 0x3fff) + 1;
        }

    } else if (memcmp(p + 12, "VP8X", 4) == 0) {
        if (len >= 30) {
            width = ngx_http_chat_sniff_le24(d + 4) + 1;
            height = ngx_http_chat_sniff_le24(d + 7) + 1;
        }
    }

done:

    ngx_http_chat_sniff_image(out, ngx_http_chat_sniff_webp, width, height);
}


/* valid UTF-8 (an optional BOM), no NUL, no C0 control but \t \n \f \r */

static ngx_uint_t
ngx_http_chat_sniff_is_text(const u_char *p, size_t len, ngx_uint_t whole)
{
    size_t    i;
    uint32_t  state;

    if (ngx_http_chat_sniff_starts(p, len, "\xef\xbb\xbf")) {
        p += 3;
        len -= 3;
    }

    for (i = 0; i < len; i++) {
        if (p[i] < 0x20
            && p[i] != '\t' && p[i] != '\n' && p[i] != '\f' && p[i] != '\r')
        {
            return 0;
        }
    }

    state = ngx_http_chat_utf8_validate(NGX_HTTP_CHAT_UTF8_ACCEPT, p, len);

    if (state == NGX_HTTP_CHAT_UTF8_REJECT) {
        return 0;
    }

    return whole ? state == NGX_HTTP_CHAT_UTF8_ACCEPT : 1;
}
