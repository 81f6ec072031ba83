
/*
 * ngx_http_chat_handshake.c: the RFC 6455 upgrade of a chat_websocket
 * location.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_HANDSHAKE_H_INCLUDED_
#define _NGX_HTTP_CHAT_HANDSHAKE_H_INCLUDED_


ngx_int_t ngx_http_chat_handshake_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_CHAT_HANDSHAKE_H_INCLUDED_ */
