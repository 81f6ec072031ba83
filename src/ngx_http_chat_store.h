
/*
 * ngx_http_chat_store.c: requests that need PostgreSQL: the statements and
 * their callers.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_STORE_H_INCLUDED_
#define _NGX_HTTP_CHAT_STORE_H_INCLUDED_


/* indexes of ngx_http_chat_pg_statements[] */
#define NGX_HTTP_CHAT_STMT_USER_UPSERT          0
#define NGX_HTTP_CHAT_STMT_CONVERSATION_CREATE  1
#define NGX_HTTP_CHAT_STMT_CONVERSATION_LIST    2
#define NGX_HTTP_CHAT_STMT_HISTORY              3
#define NGX_HTTP_CHAT_STMT_EDIT                 4
#define NGX_HTTP_CHAT_STMT_DELETE               5
#define NGX_HTTP_CHAT_STMT_READ                 6
#define NGX_HTTP_CHAT_STMT_DELIVERED            7
#define NGX_HTTP_CHAT_STMT_SYNC                 8
#define NGX_HTTP_CHAT_STMT_SEND                 9
#define NGX_HTTP_CHAT_STMT_TYPING               10
#define NGX_HTTP_CHAT_STMT_PRESENCE             11
#define NGX_HTTP_CHAT_STMT_CHANGES              12
#define NGX_HTTP_CHAT_STMT_CONVERSATION_GET     13
#define NGX_HTTP_CHAT_STMT_BLOCK                14
#define NGX_HTTP_CHAT_STMT_UNBLOCK              15
#define NGX_HTTP_CHAT_STMT_UNREAD               16
#define NGX_HTTP_CHAT_STMT_BLOCKS               17
#define NGX_HTTP_CHAT_STMT_MEMBER_FLAG          18
#define NGX_HTTP_CHAT_STMT_CONTACTS             19
#define NGX_HTTP_CHAT_STMT_CONTACT_ADD          20
#define NGX_HTTP_CHAT_STMT_CONTACT_REMOVE       21
#define NGX_HTTP_CHAT_STMT_CONVERSATION_UPDATE  22
#define NGX_HTTP_CHAT_STMT_MEMBER_ADD           23
#define NGX_HTTP_CHAT_STMT_MEMBER_REMOVE        24
#define NGX_HTTP_CHAT_STMT_MESSAGES_SEARCH      25
#define NGX_HTTP_CHAT_STMT_USERS_SEARCH         26
#define NGX_HTTP_CHAT_STMT_SYSTEM_MESSAGE       27
#define NGX_HTTP_CHAT_STMT_OUTBOX               28
#define NGX_HTTP_CHAT_STMT_OUTBOX_TRIM          29
#define NGX_HTTP_CHAT_STMT_CLUSTER_NOTIFY       30
#define NGX_HTTP_CHAT_STMT_CLUSTER_OUTBOX       31
#define NGX_HTTP_CHAT_STMT_CLUSTER_CHANGES      32
#define NGX_HTTP_CHAT_STMT_CLUSTER_TICK         33
#define NGX_HTTP_CHAT_STMT_CLUSTER_PRESENCE     34
#define NGX_HTTP_CHAT_STMT_CLUSTER_ONLINE       35
#define NGX_HTTP_CHAT_STMT_CLUSTER_CLAIM        36
#define NGX_HTTP_CHAT_STMT_CLUSTER_JOIN         37
#define NGX_HTTP_CHAT_STMT_PRESENCE_AUDIENCE    38


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


void ngx_http_chat_store_init_process(ngx_cycle_t *cycle);
/* done: copied, its id and req referenced */
ngx_int_t ngx_http_chat_store_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req, ngx_uint_t stmt,
    ngx_http_chat_store_done_t *done);
ngx_int_t ngx_http_chat_store_hello(ngx_http_chat_conn_t *wc);
void ngx_http_chat_store_detach(ngx_http_chat_conn_t *wc);
void ngx_http_chat_store_resume(ngx_http_chat_conn_t *wc);
/* done is called with done->data = r */
ngx_int_t ngx_http_chat_store_http(ngx_http_request_t *r, ngx_str_t *user,
    ngx_uint_t stmt, json_t *arg, ngx_http_chat_store_done_pt done);
void ngx_http_chat_store_call(u_char *user, size_t len, ngx_uint_t stmt,
    json_t *arg);


#endif /* _NGX_HTTP_CHAT_STORE_H_INCLUDED_ */
