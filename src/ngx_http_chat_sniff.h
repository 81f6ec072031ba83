
/*
 * The type of an uploaded file, from its first bytes: a PLACEHOLDER that
 * recognizes PNG only (replaced by the sniff branch, same interface).
 */


#ifndef _NGX_HTTP_CHAT_SNIFF_H_INCLUDED_
#define _NGX_HTTP_CHAT_SNIFF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* how much of a file the sniffer is given */
#define NGX_HTTP_CHAT_SNIFF_HEAD  65536


typedef struct {
    const char                   *type;      /* a MIME type, static */
    ngx_uint_t                    image;     /* 1: an image type */
    uint32_t                      width;     /* 0: unknown */
    uint32_t                      height;
} ngx_http_chat_sniff_t;


/* head: the file's first len bytes; whole: len is the whole file */
void ngx_http_chat_sniff_detect(const u_char *head, size_t len,
    ngx_uint_t whole, ngx_http_chat_sniff_t *out);


#endif /* _NGX_HTTP_CHAT_SNIFF_H_INCLUDED_ */
