
/*
 * ngx_http_chat_session.c: the chat protocol on a WebSocket connection.
 * Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_SESSION_H_INCLUDED_
#define _NGX_HTTP_CHAT_SESSION_H_INCLUDED_


/* the transport's handler of a chat_websocket connection */
extern ngx_http_chat_ws_handler_t  ngx_http_chat_session_handler;

ngx_int_t ngx_http_chat_session_reply(ngx_http_chat_conn_t *wc, json_t *id,
    json_t *data, json_t *error);
ngx_int_t ngx_http_chat_session_error(ngx_http_chat_conn_t *wc, json_t *id,
    const char *code, const char *message);
ngx_int_t ngx_http_chat_session_event(ngx_http_chat_conn_t *wc,
    json_t *event);
ngx_int_t ngx_http_chat_session_limited(ngx_http_chat_conn_t *wc, json_t *id,
    ngx_msec_t wait);
ngx_str_t *ngx_http_chat_session_request_name(ngx_uint_t i);
void ngx_http_chat_session_recheck(ngx_http_chat_conn_t *wc);


#endif /* _NGX_HTTP_CHAT_SESSION_H_INCLUDED_ */
