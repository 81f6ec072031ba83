
/*
 * base64url without padding (RFC 4648 section 5), strict: one spelling per
 * byte string.  Pure C, libc only, for the files above it that speak it
 * (Web Push keys, the VAPID token).
 */


#ifndef _NGX_HTTP_CHAT_BASE64URL_H_INCLUDED_
#define _NGX_HTTP_CHAT_BASE64URL_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>


/* characters that n bytes encode to; bytes that n characters decode to */
#define NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(n)                               \
    ((n) / 3 * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
#define NGX_HTTP_CHAT_BASE64URL_DECODED_LEN(n)                               \
    ((n) / 4 * 3 + ((n) % 4 ? (n) % 4 - 1 : 0))


/* writes NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(len) characters, no NUL */
size_t ngx_http_chat_base64url_encode(u_char *dst, const u_char *src,
    size_t len);

/* -1 on any character outside the alphabet, on padding, on a length of
 * 1 mod 4 and on nonzero unused bits; else the bytes written */
ssize_t ngx_http_chat_base64url_decode(u_char *dst, const u_char *src,
    size_t len);


#endif /* _NGX_HTTP_CHAT_BASE64URL_H_INCLUDED_ */
