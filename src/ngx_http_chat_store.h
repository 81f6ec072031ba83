
/*
 * ngx_http_chat_store.c: requests that need PostgreSQL: the statements and
 * their callers.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_STORE_H_INCLUDED_
#define _NGX_HTTP_CHAT_STORE_H_INCLUDED_


/*
 * The statements every PostgreSQL connection prepares (the table is in
 * ngx_http_chat_store.c, indexed by these): a query's stmt.
 */
typedef enum {
    NGX_HTTP_CHAT_STMT_USER_UPSERT = 0,
    NGX_HTTP_CHAT_STMT_CONVERSATION_CREATE,
    NGX_HTTP_CHAT_STMT_CONVERSATION_LIST,
    NGX_HTTP_CHAT_STMT_HISTORY,
    NGX_HTTP_CHAT_STMT_EDIT,
    NGX_HTTP_CHAT_STMT_DELETE,
    NGX_HTTP_CHAT_STMT_READ,
    NGX_HTTP_CHAT_STMT_DELIVERED,
    NGX_HTTP_CHAT_STMT_SYNC,
    NGX_HTTP_CHAT_STMT_SEND,
    NGX_HTTP_CHAT_STMT_TYPING,
    NGX_HTTP_CHAT_STMT_PRESENCE,
    NGX_HTTP_CHAT_STMT_CHANGES,
    NGX_HTTP_CHAT_STMT_CONVERSATION_GET,
    NGX_HTTP_CHAT_STMT_BLOCK,
    NGX_HTTP_CHAT_STMT_UNBLOCK,
    NGX_HTTP_CHAT_STMT_UNREAD,
    NGX_HTTP_CHAT_STMT_BLOCKS,
    NGX_HTTP_CHAT_STMT_MEMBER_FLAG,
    NGX_HTTP_CHAT_STMT_CONTACTS,
    NGX_HTTP_CHAT_STMT_CONTACT_ADD,
    NGX_HTTP_CHAT_STMT_CONTACT_REMOVE,
    NGX_HTTP_CHAT_STMT_CONVERSATION_UPDATE,
    NGX_HTTP_CHAT_STMT_MEMBER_ADD,
    NGX_HTTP_CHAT_STMT_MEMBER_REMOVE,
    NGX_HTTP_CHAT_STMT_MESSAGES_SEARCH,
    NGX_HTTP_CHAT_STMT_USERS_SEARCH,
    NGX_HTTP_CHAT_STMT_SYSTEM_MESSAGE,
    NGX_HTTP_CHAT_STMT_OUTBOX,
    NGX_HTTP_CHAT_STMT_OUTBOX_TRIM,
    NGX_HTTP_CHAT_STMT_CLUSTER_NOTIFY,
    NGX_HTTP_CHAT_STMT_CLUSTER_OUTBOX,
    NGX_HTTP_CHAT_STMT_CLUSTER_CHANGES,
    NGX_HTTP_CHAT_STMT_CLUSTER_TICK,
    NGX_HTTP_CHAT_STMT_CLUSTER_PRESENCE,
    NGX_HTTP_CHAT_STMT_CLUSTER_ONLINE,
    NGX_HTTP_CHAT_STMT_CLUSTER_CLAIM,
    NGX_HTTP_CHAT_STMT_CLUSTER_JOIN,
    NGX_HTTP_CHAT_STMT_PRESENCE_AUDIENCE,
    NGX_HTTP_CHAT_STMTS
} ngx_http_chat_stmt_e;


/* the table, for ngx_http_chat_pg_init_process */
ngx_http_chat_pg_stmt_t *ngx_http_chat_store_statements(ngx_uint_t *n);

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
