
/*
 * ngx_http_chat_fanout.c: delivery to this worker's connections.  Included
 * through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_
#define _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_


/* the most users a connection watches (presence.subscribe's bound) */
#define NGX_HTTP_CHAT_WATCH_MAX  200


/* the session checks a connection's watch set again (a member left) */
typedef void (*ngx_http_chat_fanout_recheck_pt)(ngx_http_chat_conn_t *wc);


void ngx_http_chat_fanout_init_process(
    ngx_http_chat_fanout_recheck_pt recheck);
ngx_int_t ngx_http_chat_fanout_add(ngx_http_chat_conn_t *wc);
void ngx_http_chat_fanout_remove(ngx_http_chat_conn_t *wc);
void ngx_http_chat_fanout_deliver(json_t *event, json_t *to, ngx_log_t *log);
void ngx_http_chat_fanout_close_all(unsigned code, const char *reason);
ngx_uint_t ngx_http_chat_fanout_online(u_char *user, size_t len);
ngx_int_t ngx_http_chat_fanout_watch(ngx_http_chat_conn_t *wc, json_t *ids);
void ngx_http_chat_fanout_unwatch(ngx_http_chat_conn_t *wc, u_char *user,
    size_t len);
ngx_uint_t ngx_http_chat_fanout_watches(ngx_http_chat_conn_t *wc,
    u_char *user, size_t len);
json_t *ngx_http_chat_fanout_watched(ngx_http_chat_conn_t *wc);


#endif /* _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_ */
