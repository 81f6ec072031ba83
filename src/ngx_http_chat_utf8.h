
/*
 * Incremental UTF-8 validation (RFC 3629): a message may be split across
 * frames and reads at any byte, so the state is carried between calls.
 * Pure C, no nginx dependency (unit tests and fuzz targets link it alone).
 */


#ifndef _NGX_HTTP_CHAT_UTF8_H_INCLUDED_
#define _NGX_HTTP_CHAT_UTF8_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <string.h>


/* at a character boundary; the only state in which a text may end */
#define NGX_HTTP_CHAT_UTF8_ACCEPT  0
/* invalid; sticky: feeding more bytes keeps it */
#define NGX_HTTP_CHAT_UTF8_REJECT  1


/* returns the state after p[0..len); start with NGX_HTTP_CHAT_UTF8_ACCEPT */
uint32_t ngx_http_chat_utf8_validate(uint32_t state, const u_char *p,
    size_t len);

/* number of characters (code points) in valid UTF-8 */
size_t ngx_http_chat_utf8_length(const u_char *p, size_t len);


#endif /* _NGX_HTTP_CHAT_UTF8_H_INCLUDED_ */
