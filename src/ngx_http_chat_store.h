
/*
 * ngx_http_chat_store.c: requests that need PostgreSQL: the statements and
 * their callers.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_STORE_H_INCLUDED_
#define _NGX_HTTP_CHAT_STORE_H_INCLUDED_


/* type: the index of the request's type; parsed: ngx_http_chat_usec() */
ngx_int_t ngx_http_chat_store_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req, ngx_uint_t stmt, ngx_uint_t type,
    uint64_t parsed);
ngx_int_t ngx_http_chat_store_hello(ngx_http_chat_conn_t *wc);
void ngx_http_chat_store_detach(ngx_http_chat_conn_t *wc);
void ngx_http_chat_store_resume(ngx_http_chat_conn_t *wc);
/* result: borrowed; NULL when storage was unavailable */
typedef void (*ngx_http_chat_store_done_pt)(ngx_http_request_t *r,
    json_t *result);
ngx_int_t ngx_http_chat_store_http(ngx_http_request_t *r, ngx_str_t *user,
    ngx_uint_t stmt, json_t *arg, ngx_http_chat_store_done_pt done);
void ngx_http_chat_store_call(u_char *user, size_t len, ngx_uint_t stmt,
    json_t *arg);
void ngx_http_chat_store_announce(u_char *user, size_t len,
    ngx_uint_t online, time_t last_seen);


#endif /* _NGX_HTTP_CHAT_STORE_H_INCLUDED_ */
