
/*
 * ngx_http_chat_typing.c: typing indicators, their expiry, and typing
 * while storage is unavailable.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_TYPING_H_INCLUDED_
#define _NGX_HTTP_CHAT_TYPING_H_INCLUDED_


void ngx_http_chat_typing_init_process(ngx_cycle_t *cycle);
void ngx_http_chat_typing_update(ngx_http_chat_conn_t *wc, json_t *event,
    json_t *to);
void ngx_http_chat_typing_stop_all(ngx_http_chat_conn_t *wc);
ngx_int_t ngx_http_chat_typing_offline(ngx_http_chat_conn_t *wc,
    const char *text);


#endif /* _NGX_HTTP_CHAT_TYPING_H_INCLUDED_ */
