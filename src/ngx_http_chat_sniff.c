
/*
 * PLACEHOLDER type sniffer: PNG by its signature and IHDR, everything else
 * application/octet-stream.  The sniff branch replaces this file.
 */


#include <ngx_http_chat_sniff.h>


static uint32_t
ngx_http_chat_sniff_be32(const u_char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}


void
ngx_http_chat_sniff_detect(const u_char *head, size_t len, ngx_uint_t whole,
    ngx_http_chat_sniff_t *out)
{
    static const u_char  png[] = "\x89PNG\r\n\x1a\n";

    (void) whole;

    out->type = "application/octet-stream";
    out->image = 0;
    out->width = 0;
    out->height = 0;

    if (len < 8 || memcmp(head, png, 8) != 0) {
        return;
    }

    out->type = "image/png";
    out->image = 1;

    /* the first chunk is IHDR: length 13, then width and height */
    if (len >= 24 && memcmp(head + 12, "IHDR", 4) == 0) {
        out->width = ngx_http_chat_sniff_be32(head + 16);
        out->height = ngx_http_chat_sniff_be32(head + 20);
    }
}
