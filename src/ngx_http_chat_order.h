
/*
 * ngx_http_chat_order.c: changes of a conversation in order, the member
 * cache.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_ORDER_H_INCLUDED_
#define _NGX_HTTP_CHAT_ORDER_H_INCLUDED_


void ngx_http_chat_order_init_process(ngx_cycle_t *cycle);
/* an event for this worker: message changes in sequence order */
void ngx_http_chat_order_deliver(ngx_http_chat_ev_t *ev, ngx_log_t *log);
json_t *ngx_http_chat_order_members(ngx_uint_t cid, ngx_msec_t *since);
ngx_int_t ngx_http_chat_order_want(ngx_uint_t cid, int64_t from, int64_t to,
    int64_t *after, int64_t *upto);
void ngx_http_chat_order_unask(ngx_uint_t cid);
void ngx_http_chat_order_read(ngx_uint_t cid, int64_t last_seq);
json_t *ngx_http_chat_order_heads(ngx_uint_t max);

/* the rows of chat.api_cluster_change_rows: heads, then changes as events */
typedef void (*ngx_http_chat_order_head_pt)(ngx_uint_t cid, int64_t head,
    void *data);
typedef void (*ngx_http_chat_order_change_pt)(json_t *event, json_t *to,
    void *data);
ngx_int_t ngx_http_chat_order_rows(ngx_int_t rc, PGresult *res,
    ngx_http_chat_order_head_pt head, ngx_http_chat_order_change_pt change,
    void *data);


#endif /* _NGX_HTTP_CHAT_ORDER_H_INCLUDED_ */
