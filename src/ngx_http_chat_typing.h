
/*
 * ngx_http_chat_typing.c: typing indicators, their expiry, and typing
 * while storage is unavailable.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_TYPING_H_INCLUDED_
#define _NGX_HTTP_CHAT_TYPING_H_INCLUDED_


void ngx_http_chat_typing_init_process(ngx_cycle_t *cycle);
/* typing: the connection's list, kept by its session */
void ngx_http_chat_typing_update(ngx_http_chat_conn_t *wc,
    ngx_queue_t *typing, json_t *event, json_t *to);
void ngx_http_chat_typing_stop_all(ngx_queue_t *typing);
ngx_int_t ngx_http_chat_typing_offline(ngx_http_chat_conn_t *wc,
    ngx_queue_t *typing, json_t *req);


#endif /* _NGX_HTTP_CHAT_TYPING_H_INCLUDED_ */
