
/*
 * Unit tests of the file type sniffer: a minimal file of each type, built
 * here byte by byte from the formats' specifications, with its size read
 * right; the variants that matter (a long APP1 before the frame header, a
 * progressive JPEG, a frame header past the head, each WebP flavour);
 * absurd sizes; text with a BOM, invalid UTF-8, control characters, a
 * sequence cut by the end of the head; HTML and SVG as plain text; and
 * every truncation of every sample, each in a buffer of exactly its size
 * so that a sanitizer build catches a read past the end.
 */


#include <stdint.h>
#include <sys/types.h>

#include <ngx_http_chat_sniff.h>
#include <unit.h>


#define PNG    "image/png"
#define JPEG   "image/jpeg"
#define GIF    "image/gif"
#define WEBP   "image/webp"
#define PDF    "application/pdf"
#define TEXT   "text/plain; charset=utf-8"
#define OCTET  "application/octet-stream"

#define HEAD   NGX_HTTP_CHAT_SNIFF_HEAD

#define FILE_MAX  (3 * HEAD)


/* a file being built; dims_at: the bytes the sniffer needs for the size */

typedef struct {
    u_char  *p;
    size_t   len;
    size_t   dims_at;
} file_t;


static file_t *
file_new(void)
{
    file_t  *f;

    f = calloc(1, sizeof(file_t));

    if (f == NULL || (f->p = malloc(FILE_MAX)) == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    return f;
}


static void
file_free(file_t *f)
{
    free(f->p);
    free(f);
}


static void
put(file_t *f, const void *s, size_t n)
{
    if (f->len + n > FILE_MAX) {
        fprintf(stderr, "a test file outgrew FILE_MAX\n");
        exit(2);
    }

    if (n) {
        memcpy(f->p + f->len, s, n);
        f->len += n;
    }
}


#define PUT(f, lit)  put(f, lit, sizeof(lit) - 1)


static void
put_byte(file_t *f, unsigned c)
{
    u_char  b = (u_char) c;

    put(f, &b, 1);
}


static void
put_fill(file_t *f, unsigned c, size_t n)
{
    while (n--) {
        put_byte(f, c);
    }
}


static void
put_be16(file_t *f, uint32_t v)
{
    put_byte(f, v >> 8);
    put_byte(f, v);
}


static void
put_be32(file_t *f, uint32_t v)
{
    put_be16(f, v >> 16);
    put_be16(f, v);
}


static void
put_le16(file_t *f, uint32_t v)
{
    put_byte(f, v);
    put_byte(f, v >> 8);
}


static void
put_le24(file_t *f, uint32_t v)
{
    put_le16(f, v);
    put_byte(f, v >> 16);
}


static void
put_le32(file_t *f, uint32_t v)
{
    put_le16(f, v);
    put_le16(f, v >> 16);
}


/* the sniffer on an exact copy: a read past len is a sanitizer report */

static ngx_http_chat_sniff_t
sniff(const u_char *p, size_t len, ngx_uint_t whole)
{
    u_char                 *copy;
    ngx_http_chat_sniff_t   out;

    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        exit(2);
    }

    memcpy(copy, p, len);

    memset(&out, 0x5a, sizeof(ngx_http_chat_sniff_t));
    ngx_http_chat_sniff_detect(copy, len, whole, &out);

    free(copy);

    return out;
}


static int
is_image(const char *type)
{
    return strcmp(type, PNG) == 0 || strcmp(type, JPEG) == 0
           || strcmp(type, GIF) == 0 || strcmp(type, WEBP) == 0;
}


/* one answer, whole and not: the type, the size; text depends on whole */

static void
expect_as(const char *name, const u_char *p, size_t len, ngx_uint_t whole,
    const char *type, uint32_t width, uint32_t height)
{
    unsigned               failed;
    ngx_http_chat_sniff_t  s;

    failed = unit_failed;

    s = sniff(p, len, whole);

    CHECK(s.type != NULL);

    if (s.type == NULL) {
        return;
    }

    CHECK_STR(s.type, type);
    CHECK_EQ(s.image, is_image(type));
    CHECK_EQ(s.width, width);
    CHECK_EQ(s.height, height);

    if (unit_failed != failed) {
        fprintf(stderr, "  sample: %s (%zu bytes, whole %u)\n", name, len,
                (unsigned) whole);
    }
}


static void
expect(const char *name, const u_char *p, size_t len, const char *type,
    uint32_t width, uint32_t height)
{
    expect_as(name, p, len, 1, type, width, height);
    expect_as(name, p, len, 0, type, width, height);
}


#define EXPECT_F(name, f, type, w, h)  expect(name, (f)->p, (f)->len, type, w, h)
#define EXPECT_S(lit, type)                                                  \
    expect(lit, (const u_char *) lit, sizeof(lit) - 1, type, 0, 0)


/*
 * Every prefix of a sample, in a buffer of its size: a prefix as long as
 * the signature is of the sample's type, with the size once it holds the
 * header and 0x0 before; a shorter one is not an image and has no size.
 */

static void
truncations(const char *name, const file_t *f, const char *type,
    size_t sig_len, uint32_t width, uint32_t height)
{
    size_t                 k;
    unsigned               failed;
    ngx_uint_t             whole;
    ngx_http_chat_sniff_t  s;

    for (k = 0; k <= f->len; k++) {
        for (whole = 0; whole <= 1; whole++) {
            failed = unit_failed;

            s = sniff(f->p, k, whole);

            if (k >= sig_len) {
                CHECK_STR(s.type, type);
                CHECK_EQ(s.image, is_image(type));

                if (k >= f->dims_at) {
                    CHECK_EQ(s.width, width);
                    CHECK_EQ(s.height, height);

                } else {
                    CHECK(s.width == 0 && s.height == 0);
                }

            } else {
                CHECK(strcmp(s.type, OCTET) == 0
                      || strcmp(s.type, TEXT) == 0);
                CHECK_EQ(s.image, 0);
                CHECK(s.width == 0 && s.height == 0);
            }

            if (unit_failed != failed) {
                fprintf(stderr, "  sample: %s cut at %zu of %zu, whole %u\n",
                        name, k, f->len, (unsigned) whole);
                return;
            }
        }
    }
}


/* PNG (RFC 2083): a CRC-32 per chunk, zlib data with an Adler-32 */

static uint32_t
crc32_of(const u_char *p, size_t n)
{
    int       k;
    uint32_t  c;

    c = 0xffffffff;

    while (n--) {
        c ^= *p++;

        for (k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xedb88320 & (0 - (c & 1)));
        }
    }

    return c ^ 0xffffffff;
}


static void
png_chunk(file_t *f, const char *type, const u_char *data, size_t n)
{
    size_t  start;

    put_be32(f, (uint32_t) n);
    start = f->len;
    put(f, type, 4);
    put(f, data, n);
    put_be32(f, crc32_of(f->p + start, f->len - start));
}


/*
 * A PNG of 8-bit RGB; with pixels (a small image) its IDAT is one stored
 * deflate block of the rows, each row its filter byte 0 and the pixels.
 */

static file_t *
png(uint32_t width, uint32_t height, int pixels)
{
    u_char    ihdr[13], idat[512], *raw;
    size_t    n, i, rows;
    file_t   *f;
    uint32_t  a, b;

    f = file_new();

    PUT(f, "\x89PNG\r\n\x1a\n");

    ihdr[0] = width >> 24; ihdr[1] = width >> 16;
    ihdr[2] = width >> 8; ihdr[3] = width;
    ihdr[4] = height >> 24; ihdr[5] = height >> 16;
    ihdr[6] = height >> 8; ihdr[7] = height;
    ihdr[8] = 8;        /* bit depth */
    ihdr[9] = 2;        /* RGB */
    ihdr[10] = 0;       /* deflate */
    ihdr[11] = 0;       /* adaptive filtering */
    ihdr[12] = 0;       /* no interlace */

    png_chunk(f, "IHDR", ihdr, 13);
    f->dims_at = 24;

    if (pixels) {
        rows = (size_t) height * (1 + 3 * (size_t) width);
        raw = idat + 7;

        if (rows + 11 > sizeof(idat)) {
            fprintf(stderr, "png: too many pixels for the test\n");
            exit(2);
        }

        for (i = 0; i < rows; i++) {
            /* filter 0 at each row start, then a gradient */
            raw[i] = (i % (1 + 3 * width) == 0) ? 0 : (u_char) (i * 37);
        }

        n = 0;
        idat[n++] = 0x78;                   /* deflate, 32K window */
        idat[n++] = 0x01;                   /* (0x7801 % 31 == 0) */
        idat[n++] = 0x01;                   /* final stored block */
        idat[n++] = rows & 0xff;
        idat[n++] = rows >> 8;
        idat[n++] = ~rows & 0xff;
        idat[n++] = (~rows >> 8) & 0xff;
        n += rows;

        a = 1;
        b = 0;

        for (i = 0; i < rows; i++) {
            a = (a + raw[i]) % 65521;
            b = (b + a) % 65521;
        }

        idat[n++] = b >> 8;
        idat[n++] = b;
        idat[n++] = a >> 8;
        idat[n++] = a;

        png_chunk(f, "IDAT", idat, n);
    }

    png_chunk(f, "IEND", NULL, 0);

    return f;
}


/*
 * JPEG (ITU T.81, JFIF): SOI, APP0 JFIF, what the caller puts before the
 * frame, DQT, the frame header (code sof), DHT, SOS, a little entropy-coded
 * data with a stuffed 0xff 0x00 and a restart marker, EOI.
 */

typedef void (*jpeg_extra_pt)(file_t *f);


static void
jpeg_segment(file_t *f, unsigned marker, size_t n, unsigned fill)
{
    put_byte(f, 0xff);
    put_byte(f, marker);
    put_be16(f, (uint32_t) (n + 2));
    put_fill(f, fill, n);
}


static file_t *
jpeg(unsigned sof, uint32_t width, uint32_t height, jpeg_extra_pt extra)
{
    size_t   i, at;
    file_t  *f;

    f = file_new();

    PUT(f, "\xff\xd8");

    PUT(f, "\xff\xe0\x00\x10JFIF\x00\x01\x02\x00\x00\x48\x00\x48\x00\x00");

    if (extra) {
        extra(f);
    }

    /* one 8-bit quantization table, all ones */
    PUT(f, "\xff\xdb\x00\x43\x00");
    put_fill(f, 1, 64);

    /* the frame: 8 bits, the size, 3 components (Y 2x2, Cb, Cr) */
    put_byte(f, 0xff);
    put_byte(f, sof);
    at = f->len;
    put_be16(f, 8 + 3 * 3);
    put_byte(f, 8);
    put_be16(f, height);
    put_be16(f, width);
    put_byte(f, 3);
    PUT(f, "\x01\x22\x00" "\x02\x11\x00" "\x03\x11\x00");
    f->dims_at = at + 7;

    /* a DC table with one code of length 1 (category 0) */
    PUT(f, "\xff\xc4\x00\x14\x00");
    put_byte(f, 1);
    put_fill(f, 0, 15);
    put_byte(f, 0);

    /* the scan of the 3 components */
    PUT(f, "\xff\xda\x00\x0c\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00");

    for (i = 0; i < 16; i++) {
        put_byte(f, (u_char) (i * 29 + 3));
    }

    PUT(f, "\xff\x00\x12\xff\xd0\x34");
    PUT(f, "\xff\xd9");

    return f;
}


static void
jpeg_exif_long(file_t *f)
{
    size_t  start;

    /* APP1 Exif of 60,000 bytes: a camera's thumbnail */
    start = f->len;
    jpeg_segment(f, 0xe1, 60000, 0);
    memcpy(f->p + start + 4, "Exif\0\0MM\0\x2a", 10);
}


static void
jpeg_past_head(file_t *f)
{
    /* two APP1 segments push the frame header past the head */
    jpeg_segment(f, 0xe1, 40000, 'x');
    jpeg_segment(f, 0xe2, 40000, 'y');
}


static void
jpeg_odd_markers(file_t *f)
{
    /* fill bytes, standalone markers, and the segments C4, C8 and CC
     * whose codes lie among the SOFn but are not frames */
    put_fill(f, 0xff, 5);
    PUT(f, "\x01");
    PUT(f, "\xff\xd3");
    jpeg_segment(f, 0xc4, 10, 0x7f);
    jpeg_segment(f, 0xc8, 6, 0x11);
    jpeg_segment(f, 0xcc, 2, 0x10);
    jpeg_segment(f, 0xfe, 7, 'c');          /* a comment */
    jpeg_segment(f, 0xed, 0, 0);            /* an empty APP13 */
    put_fill(f, 0xff, 3);
}


/* GIF (87a and 89a): header, logical screen, colour table, one image */

static file_t *
gif(const char *version, uint32_t width, uint32_t height)
{
    file_t  *f;

    f = file_new();

    put(f, version, 6);
    put_le16(f, width);
    put_le16(f, height);
    f->dims_at = 10;
    PUT(f, "\x80\x00\x00");                 /* 2 colours, black and white */
    PUT(f, "\x00\x00\x00\xff\xff\xff");
    PUT(f, "\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00");
    PUT(f, "\x02\x02\x44\x01\x00");         /* one pixel, LZW */
    PUT(f, "\x3b");

    return f;
}


/* WebP: RIFF, the size, WEBP, then the chunks given */

static void
riff_size(file_t *f)
{
    uint32_t  n;

    n = (uint32_t) f->len - 8;
    f->p[4] = n;
    f->p[5] = n >> 8;
    f->p[6] = n >> 16;
    f->p[7] = n >> 24;
}


static file_t *
webp_start(const char *fourcc, uint32_t n)
{
    file_t  *f;

    f = file_new();

    PUT(f, "RIFF\0\0\0\0WEBP");
    put(f, fourcc, 4);
    put_le32(f, n);

    return f;
}


/* lossy: a key frame's tag (show, first partition size), start code, size
 * with the scaling bits */

static file_t *
webp_vp8(uint32_t width, uint32_t height, unsigned scale)
{
    file_t   *f;
    uint32_t  tag;

    f = webp_start("VP8 ", 10 + 8);

    tag = 0 | (0 << 1) | (1 << 4) | (8 << 5);
    put_le24(f, tag);
    PUT(f, "\x9d\x01\x2a");
    put_le16(f, width | (scale << 14));
    put_le16(f, height | (scale << 14));
    f->dims_at = 30;
    PUT(f, "\x00\x11\x22\x33\x44\x55\x66\x77");
    riff_size(f);

    return f;
}


static file_t *
webp_vp8l(uint32_t width, uint32_t height)
{
    file_t  *f;

    f = webp_start("VP8L", 5 + 3);

    put_byte(f, 0x2f);
    /* width - 1, height - 1, alpha used 1, version 0 */
    put_le32(f, (width - 1) | ((height - 1) << 14) | (1u << 28));
    f->dims_at = 25;
    PUT(f, "\x07\x00\x00");
    riff_size(f);

    return f;
}


static file_t *
webp_vp8x(uint32_t width, uint32_t height)
{
    file_t  *f;

    f = webp_start("VP8X", 10);

    put_byte(f, 0x10);                      /* alpha */
    put_le24(f, 0);
    put_le24(f, width - 1);
    put_le24(f, height - 1);
    f->dims_at = 30;

    /* the image itself: a lossless 1x1 */
    PUT(f, "VP8L\x08\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x00\x00");
    riff_size(f);

    return f;
}


static file_t *
pdf(void)
{
    file_t  *f;

    f = file_new();

    PUT(f, "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
           "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
           "2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
           "trailer\n<< /Root 1 0 R >>\n%%EOF\n");
    f->dims_at = 0;

    return f;
}


static void
test_png(void)
{
    file_t  *f;

    f = png(3, 2, 1);
    EXPECT_F("png 3x2", f, PNG, 3, 2);
    truncations("png 3x2", f, PNG, 8, 3, 2);
    file_free(f);

    f = png(1920, 1080, 0);
    EXPECT_F("png 1920x1080", f, PNG, 1920, 1080);
    file_free(f);

    /* the limits: 100000 a side is the largest size told */
    f = png(100000, 1, 0);
    EXPECT_F("png 100000x1", f, PNG, 100000, 1);
    file_free(f);

    f = png(100001, 1, 0);
    EXPECT_F("png 100001x1", f, PNG, 0, 0);
    file_free(f);

    f = png(1, 0, 0);
    EXPECT_F("png 1x0", f, PNG, 0, 0);
    file_free(f);

    f = png(0xffffffff, 0xffffffff, 0);
    EXPECT_F("png 2^32-1 a side", f, PNG, 0, 0);
    file_free(f);

    /* IHDR not first, or not 13 bytes long: a PNG of unknown size */
    f = png(640, 480, 0);
    memcpy(f->p + 12, "tEXt", 4);
    EXPECT_F("png, tEXt first", f, PNG, 0, 0);
    file_free(f);

    f = png(640, 480, 0);
    f->p[11] = 12;
    EXPECT_F("png, IHDR of 12 bytes", f, PNG, 0, 0);
    file_free(f);

    /* a signature wrong in one byte is not a PNG */
    f = png(640, 480, 0);
    f->p[7] = 0x0b;
    EXPECT_F("png, bad signature", f, OCTET, 0, 0);
    file_free(f);
}


static void
test_jpeg(void)
{
    size_t    i;
    file_t   *f;

    static const unsigned  sofs[] = {
        0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7,
        0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf
    };

    f = jpeg(0xc0, 640, 480, NULL);
    EXPECT_F("jpeg baseline", f, JPEG, 640, 480);
    truncations("jpeg baseline", f, JPEG, 3, 640, 480);
    file_free(f);

    f = jpeg(0xc2, 1024, 768, NULL);
    EXPECT_F("jpeg progressive", f, JPEG, 1024, 768);
    truncations("jpeg progressive", f, JPEG, 3, 1024, 768);
    file_free(f);

    for (i = 0; i < sizeof(sofs) / sizeof(sofs[0]); i++) {
        f = jpeg(sofs[i], 33 + i, 17 + i, NULL);
        EXPECT_F("jpeg SOFn", f, JPEG, 33 + i, 17 + i);
        file_free(f);
    }

    /* a long APP1 (Exif) before the frame, within the head */
    f = jpeg(0xc0, 4032, 3024, jpeg_exif_long);
    CHECK(f->dims_at > 60000 && f->dims_at < HEAD);
    EXPECT_F("jpeg long exif", f, JPEG, 4032, 3024);
    file_free(f);

    /* the frame past the head: a JPEG all the same, of unknown size */
    f = jpeg(0xc0, 4032, 3024, jpeg_past_head);
    CHECK(f->dims_at > HEAD);
    expect_as("jpeg frame past the head", f->p, HEAD, 0, JPEG, 0, 0);
    /* more than the head given: only the head is read */
    expect_as("jpeg frame past the head, more given", f->p, f->len, 1,
              JPEG, 0, 0);
    file_free(f);

    /* fill bytes, standalone markers, C4/C8/CC segments before the frame */
    f = jpeg(0xc1, 800, 600, jpeg_odd_markers);
    EXPECT_F("jpeg odd markers", f, JPEG, 800, 600);
    truncations("jpeg odd markers", f, JPEG, 3, 800, 600);
    file_free(f);

    /* a height of 0 (to come in a DNL segment): unknown */
    f = jpeg(0xc0, 640, 0, NULL);
    EXPECT_F("jpeg height 0", f, JPEG, 0, 0);
    file_free(f);

    f = jpeg(0xc0, 65535, 65535, NULL);
    EXPECT_F("jpeg 65535 a side", f, JPEG, 65535, 65535);
    file_free(f);

    /* broken segment lengths: 0, 1, past the end; a scan first; a byte
     * that is no marker; a second SOI */
    f = jpeg(0xc0, 640, 480, NULL);
    f->p[4] = 0;
    f->p[5] = 0;
    EXPECT_F("jpeg APP0 length 0", f, JPEG, 0, 0);
    f->p[5] = 1;
    EXPECT_F("jpeg APP0 length 1", f, JPEG, 0, 0);
    f->p[4] = 0xff;
    f->p[5] = 0xff;
    EXPECT_F("jpeg APP0 past the end", f, JPEG, 0, 0);
    f->p[4] = 0;
    f->p[5] = 0x10;
    f->p[3] = 0xda;
    EXPECT_F("jpeg scan first", f, JPEG, 0, 0);
    f->p[3] = 0xd8;
    EXPECT_F("jpeg second SOI", f, JPEG, 0, 0);
    f->p[3] = 0xe0;
    f->p[2 + 18] = 0x00;
    EXPECT_F("jpeg no marker after APP0", f, JPEG, 0, 0);
    file_free(f);

    /* a frame header too short to hold a size */
    f = jpeg(0xc0, 640, 480, NULL);
    f->p[f->dims_at - 7] = 0;
    f->p[f->dims_at - 6] = 7;
    EXPECT_F("jpeg SOF length 7", f, JPEG, 0, 0);
    file_free(f);

    /* SOI alone, and SOI and a lone 0xff */
    EXPECT_S("\xff\xd8\xff", JPEG);
    expect("jpeg ff d8 ff ff", (const u_char *) "\xff\xd8\xff\xff", 4,
           JPEG, 0, 0);
    EXPECT_S("\xff\xd8", OCTET);
}


static void
test_gif(void)
{
    file_t  *f;

    f = gif("GIF89a", 1, 1);
    EXPECT_F("gif89a 1x1", f, GIF, 1, 1);
    truncations("gif89a 1x1", f, GIF, 6, 1, 1);
    file_free(f);

    f = gif("GIF87a", 320, 200);
    EXPECT_F("gif87a 320x200", f, GIF, 320, 200);
    truncations("gif87a 320x200", f, GIF, 6, 320, 200);
    file_free(f);

    f = gif("GIF89a", 0, 10);
    EXPECT_F("gif 0x10", f, GIF, 0, 0);
    file_free(f);

    f = gif("GIF89a", 65535, 65535);
    EXPECT_F("gif 65535 a side", f, GIF, 65535, 65535);
    file_free(f);

    /* no such version */
    f = gif("GIF88a", 1, 1);
    EXPECT_F("gif88a", f, OCTET, 0, 0);
    file_free(f);
}


static void
test_webp(void)
{
    file_t  *f;

    f = webp_vp8(640, 480, 0);
    EXPECT_F("webp vp8", f, WEBP, 640, 480);
    truncations("webp vp8", f, WEBP, 12, 640, 480);
    file_free(f);

    /* the scaling bits are not part of the size */
    f = webp_vp8(16383, 2, 3);
    EXPECT_F("webp vp8 scaled", f, WEBP, 16383, 2);
    file_free(f);

    /* no start code: not a key frame, size unknown */
    f = webp_vp8(640, 480, 0);
    f->p[24] = 0x9e;
    EXPECT_F("webp vp8 bad start code", f, WEBP, 0, 0);
    file_free(f);

    f = webp_vp8l(400, 300);
    EXPECT_F("webp vp8l", f, WEBP, 400, 300);
    truncations("webp vp8l", f, WEBP, 12, 400, 300);
    file_free(f);

    f = webp_vp8l(16384, 1);
    EXPECT_F("webp vp8l 16384x1", f, WEBP, 16384, 1);
    file_free(f);

    f = webp_vp8l(400, 300);
    f->p[20] = 0x2e;
    EXPECT_F("webp vp8l bad signature", f, WEBP, 0, 0);
    file_free(f);

    f = webp_vp8x(1920, 1080);
    EXPECT_F("webp vp8x", f, WEBP, 1920, 1080);
    truncations("webp vp8x", f, WEBP, 12, 1920, 1080);
    file_free(f);

    f = webp_vp8x(100000, 100000);
    EXPECT_F("webp vp8x 100000 a side", f, WEBP, 100000, 100000);
    file_free(f);

    f = webp_vp8x(100001, 5);
    EXPECT_F("webp vp8x 100001x5", f, WEBP, 0, 0);
    file_free(f);

    f = webp_vp8x(1u << 24, 1u << 24);
    EXPECT_F("webp vp8x 2^24 a side", f, WEBP, 0, 0);
    file_free(f);

    /* an unknown first chunk */
    f = webp_vp8x(64, 64);
    memcpy(f->p + 12, "ALPH", 4);
    EXPECT_F("webp unknown chunk", f, WEBP, 0, 0);
    file_free(f);

    /* RIFF of another kind */
    f = webp_vp8x(64, 64);
    memcpy(f->p + 8, "WAVE", 4);
    EXPECT_F("riff wave", f, OCTET, 0, 0);
    file_free(f);
}


static void
test_pdf(void)
{
    file_t  *f;

    f = pdf();
    EXPECT_F("pdf", f, PDF, 0, 0);
    truncations("pdf", f, PDF, 5, 0, 0);
    file_free(f);

    /* at the start only */
    EXPECT_S(" %PDF-1.4\n", TEXT);
    EXPECT_S("%PDF", TEXT);
}


/*
 * Every prefix of a text, whole or not: a head cut inside a sequence is
 * text unless it is the whole file.
 */

static void
text_truncations(const char *name, const char *s)
{
    size_t                 k, len;
    ngx_http_chat_sniff_t  s0, s1;

    len = strlen(s);

    for (k = 1; k <= len; k++) {
        s0 = sniff((const u_char *) s, k, 0);
        s1 = sniff((const u_char *) s, k, 1);

        CHECK_STR(s0.type, TEXT);

        /* a boundary: the end, or a byte that is no continuation next */
        if (k == len || ((u_char) s[k] & 0xc0) != 0x80) {
            CHECK_STR(s1.type, TEXT);

        } else {
            CHECK_STR(s1.type, OCTET);
        }

        CHECK(s0.image == 0 && s0.width == 0 && s0.height == 0);
        CHECK(s1.image == 0 && s1.width == 0 && s1.height == 0);

        if (strcmp(s0.type, TEXT) != 0) {
            fprintf(stderr, "  text: %s cut at %zu\n", name, k);
            return;
        }
    }
}


static void
test_text(void)
{
    u_char   buf[4];
    unsigned c;

    static const char  *texts[] = {
        "hello\n",
        "Gr\xc3\xbc\xc3\x9f" "e, \xe2\x9c\x93 \xf0\x9f\x99\x82 "
            "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\n",
        "\xef\xbb\xbf" "a BOM, then \xe6\x97\xa5\xe6\x9c\xac\n",
        "tab\tnewline\ncr\rff\f",
        "\x7f is DEL, \xc2\x85 is NEL: not C0",
        "<!DOCTYPE html>\n<html><body><script>alert(1)</script></body>"
            "</html>\n",
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" "
            "height=\"10\"><script>alert(1)</script></svg>",
        "\xef\xbb\xbf<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3."
            "org/2000/svg\" onload=\"alert(1)\"/>\n",
        "{\"json\": [1, 2, 3]}",
        NULL
    };
    const char **t;

    for (t = texts; *t; t++) {
        expect(*t, (const u_char *) *t, strlen(*t), TEXT, 0, 0);
        text_truncations(*t, *t);
    }

    /* a BOM alone, a space alone */
    EXPECT_S("\xef\xbb\xbf", TEXT);
    EXPECT_S(" ", TEXT);

    /* invalid UTF-8: stray continuation, overlong, surrogate, above
     * U+10FFFF, bytes never used, a sequence broken off */
    EXPECT_S("abc\x80", OCTET);
    EXPECT_S("\xc0\xaf", OCTET);
    EXPECT_S("\xe0\x80\xaf", OCTET);
    EXPECT_S("\xed\xa0\x80", OCTET);
    EXPECT_S("\xf4\x90\x80\x80", OCTET);
    EXPECT_S("\xfe\xff", OCTET);
    EXPECT_S("\xff\xfe" "a\0b\0", OCTET);       /* UTF-16 is not text */
    EXPECT_S("\xe2\x9c" "abc", OCTET);
    expect_as("half a BOM, whole", (const u_char *) "\xef\xbb", 2, 1,
              OCTET, 0, 0);

    /* C0 controls other than \t \n \f \r, NUL among them */
    for (c = 0; c < 0x20; c++) {
        buf[0] = 'a';
        buf[1] = (u_char) c;
        buf[2] = 'b';

        if (c == '\t' || c == '\n' || c == '\f' || c == '\r') {
            expect("allowed C0", buf, 3, TEXT, 0, 0);

        } else {
            expect("C0", buf, 3, OCTET, 0, 0);
        }
    }

    EXPECT_S("a\0", OCTET);
    EXPECT_S("\xef\xbb\xbf\x1b[31m", OCTET);

    /* a head cut inside a sequence: text unless it is the whole file */
    expect_as("cut, not whole", (const u_char *) "ok \xe2\x9c", 5, 0,
              TEXT, 0, 0);
    expect_as("cut, whole", (const u_char *) "ok \xe2\x9c", 5, 1,
              OCTET, 0, 0);
    expect_as("cut 4-byte, not whole", (const u_char *) "\xf0\x9f\x99", 3,
              0, TEXT, 0, 0);
    expect_as("cut 4-byte, whole", (const u_char *) "\xf0\x9f\x99", 3, 1,
              OCTET, 0, 0);
    /* but never a cut that is already wrong */
    expect_as("cut surrogate, not whole", (const u_char *) "\xed\xa0", 2, 0,
              OCTET, 0, 0);
}


static void
test_empty(void)
{
    ngx_http_chat_sniff_t  s;

    s = sniff((const u_char *) "", 0, 1);
    CHECK_STR(s.type, OCTET);
    CHECK(s.image == 0 && s.width == 0 && s.height == 0);

    s = sniff((const u_char *) "", 0, 0);
    CHECK_STR(s.type, OCTET);
}


/* a signature wins over text; the head is all that is read */

static void
test_head(void)
{
    file_t  *f;

    /* (the screen size read from "<h" and "tm") */
    expect("gif then html", (const u_char *) "GIF89a<html>", 12, GIF,
           0x683c, 0x6d74);
    EXPECT_S("%PDF-<script>", PDF);

    /* text whose only invalid byte lies past the head */
    f = file_new();
    put_fill(f, 'a', HEAD);
    put_byte(f, 0xff);
    expect_as("invalid past the head", f->p, f->len, 1, TEXT, 0, 0);
    expect_as("the head of it", f->p, HEAD, 0, TEXT, 0, 0);
    file_free(f);

    /* a sequence cut by the end of the head, more of the file given */
    f = file_new();
    put_fill(f, 'a', HEAD - 1);
    PUT(f, "\xe2\x9c\x93 and more");
    expect_as("cut at the head", f->p, f->len, 1, TEXT, 0, 0);
    expect_as("the head of it", f->p, HEAD, 0, TEXT, 0, 0);
    expect_as("the head of it, whole", f->p, HEAD, 1, OCTET, 0, 0);
    file_free(f);
}


/* a stored type: served only when it is one the sniffer says */
static void
test_known(void)
{
    const char  **t;

    static const char  *ours[] = { PNG, JPEG, GIF, WEBP, PDF, TEXT, OCTET,
                                   NULL };
    static const char  *others[] = { "text/html", "image/svg+xml",
                                     "text/plain", "image/png ", "IMAGE/PNG",
                                     "", "application/pdf; x=1", NULL };

    for (t = ours; *t; t++) {
        CHECK_STR(ngx_http_chat_sniff_known(*t), *t);
    }

    for (t = others; *t; t++) {
        CHECK(ngx_http_chat_sniff_known(*t) == NULL);
    }

    CHECK(ngx_http_chat_sniff_known(NULL) == NULL);
}


int
main(void)
{
    test_png();
    test_jpeg();
    test_gif();
    test_webp();
    test_pdf();
    test_text();
    test_empty();
    test_head();
    test_known();

    UNIT_DONE("sniff");
}
