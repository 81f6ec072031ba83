
/*
 * ngx_http_chat_fanout.c: delivery to this worker's connections.  Included
 * through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_
#define _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_


void ngx_http_chat_fanout_init_process(void);
ngx_int_t ngx_http_chat_fanout_add(ngx_http_chat_conn_t *wc);
void ngx_http_chat_fanout_remove(ngx_http_chat_conn_t *wc);
void ngx_http_chat_fanout_deliver(json_t *event, json_t *to, ngx_log_t *log);
void ngx_http_chat_fanout_close_all(unsigned code, const char *reason);
ngx_uint_t ngx_http_chat_fanout_online(u_char *user, size_t len);


#endif /* _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_ */
