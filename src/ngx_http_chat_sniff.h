
/*
 * The type of an uploaded file, from its first bytes only (never its name
 * or the type a client declared), and an image's size from its header.
 * Pure C, no allocation, no nginx runtime: unit tests and fuzz targets
 * link it alone.
 */


#ifndef _NGX_HTTP_CHAT_SNIFF_H_INCLUDED_
#define _NGX_HTTP_CHAT_SNIFF_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#ifndef _NGX_CONFIG_H_INCLUDED_
/* alone (unit tests, fuzz targets): the type ngx_config.h gives */
typedef uintptr_t  ngx_uint_t;
#endif


#define NGX_HTTP_CHAT_SNIFF_HEAD  65536   /* bytes of a file's head the sniffer reads at most */


typedef struct {
    const char  *type;    /* static string: "image/png", "image/jpeg", "image/gif",
                             "image/webp", "application/pdf",
                             "text/plain; charset=utf-8", "application/octet-stream" */
    ngx_uint_t   image;   /* 1 for the four image types */
    uint32_t     width;   /* pixels, 0 when unknown (image types only) */
    uint32_t     height;
} ngx_http_chat_sniff_t;


/* head: the first min(len, NGX_HTTP_CHAT_SNIFF_HEAD) bytes of the file;
 * whole: 1 when head is the entire file (then a text file must end on a
 * complete UTF-8 sequence; when 0, a sequence cut by the end of head is fine).
 * Never fails: anything not recognised is application/octet-stream. */
void ngx_http_chat_sniff_detect(const u_char *head, size_t len, ngx_uint_t whole,
    ngx_http_chat_sniff_t *out);

/* type: a stored type (a row's); the sniffer's own static string when it
 * is one of the types above, else NULL (never serve what it did not say) */
const char *ngx_http_chat_sniff_known(const char *type);


#endif /* _NGX_HTTP_CHAT_SNIFF_H_INCLUDED_ */
