
/*
 * ngx_http_chat_store.c: requests that need PostgreSQL: the statements and
 * their callers.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_STORE_H_INCLUDED_
#define _NGX_HTTP_CHAT_STORE_H_INCLUDED_


typedef struct ngx_http_chat_store_done_s  ngx_http_chat_store_done_t;

/* result: borrowed; NULL when storage was unavailable */
typedef void (*ngx_http_chat_store_done_pt)(ngx_http_chat_store_done_t *done,
    json_t *result);

/*
 * How an operation ends, for a WebSocket request and a REST one alike:
 * the caller says whom to answer, the store calls handler once, unless
 * the caller went away first.
 */
struct ngx_http_chat_store_done_s {
    ngx_http_chat_store_done_pt   handler;   /* NULL: nobody waits */
    void                         *data;      /* the connection or request */
    json_t                       *id;        /* the request's id, or NULL */
    json_t                       *req;       /* kept for handler, or NULL */
    ngx_uint_t                    type;      /* the caller's: its kind */
    uint64_t                      start;     /* the caller's: usec */
};


void ngx_http_chat_store_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
/* done: copied, its id and req referenced */
ngx_int_t ngx_http_chat_store_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req, ngx_uint_t stmt,
    ngx_http_chat_store_done_t *done);
/* done: copied; no id, no req */
ngx_int_t ngx_http_chat_store_ask(ngx_http_chat_conn_t *wc, ngx_uint_t stmt,
    json_t *arg, ngx_http_chat_store_done_t *done);
void ngx_http_chat_store_detach(ngx_http_chat_conn_t *wc);
void ngx_http_chat_store_resume(ngx_http_chat_conn_t *wc);
/* done is called with done->data = r */
ngx_int_t ngx_http_chat_store_http(ngx_http_request_t *r, ngx_str_t *user,
    ngx_uint_t stmt, json_t *arg, ngx_http_chat_store_done_pt done);
void ngx_http_chat_store_call(u_char *user, size_t len, ngx_uint_t stmt,
    json_t *arg);
void ngx_http_chat_store_announce(u_char *user, size_t len,
    ngx_uint_t online, time_t last_seen);


#endif /* _NGX_HTTP_CHAT_STORE_H_INCLUDED_ */
