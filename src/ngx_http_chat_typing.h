
/*
 * ngx_http_chat_typing.c: typing indicators and their expiry.  Included
 * through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_TYPING_H_INCLUDED_
#define _NGX_HTTP_CHAT_TYPING_H_INCLUDED_


void ngx_http_chat_typing_update(ngx_http_chat_conn_t *wc, json_t *event,
    json_t *to);
void ngx_http_chat_typing_stop_all(ngx_http_chat_conn_t *wc);


#endif /* _NGX_HTTP_CHAT_TYPING_H_INCLUDED_ */
