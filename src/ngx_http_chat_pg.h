
/*
 * A pool of nonblocking PostgreSQL connections per worker, driven by nginx
 * events: libpq never blocks the event loop after start-up.
 */


#ifndef _NGX_HTTP_CHAT_PG_H_INCLUDED_
#define _NGX_HTTP_CHAT_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>
#include <libpq-fe.h>


#define NGX_HTTP_CHAT_PG_MAX_PARAMS  7

/* the longest settings a connection makes at setup (chat_limits) */
#define NGX_HTTP_CHAT_PG_SETTINGS_MAX  256

/* a folded libpq or PostgreSQL message, as the error log shows it */
#define NGX_HTTP_CHAT_PG_ERR_MAX     1024


typedef struct ngx_http_chat_pg_query_s  ngx_http_chat_pg_query_t;

/*
 * rc: NGX_OK with the query's result (rows), NGX_ERROR when PostgreSQL
 * answered with an error (res holds it), NGX_DECLINED when storage was
 * unavailable (no connection, the connection broke, a timeout; res NULL).
 * The result is freed after the handler returns.
 */
typedef void (*ngx_http_chat_pg_handler_pt)(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);

/* called right before the query is sent: a batch takes what waits then */
typedef ngx_int_t (*ngx_http_chat_pg_build_pt)(ngx_http_chat_pg_query_t *q);


struct ngx_http_chat_pg_query_s {
    ngx_queue_t                   queue;
    ngx_uint_t                    stmt;
    int                           nparams;
    const char                   *values[NGX_HTTP_CHAT_PG_MAX_PARAMS];
    int                           lengths[NGX_HTTP_CHAT_PG_MAX_PARAMS];
    ngx_http_chat_pg_build_pt     build;
    ngx_http_chat_pg_handler_pt   handler;
    void                         *data;
    ngx_msec_t                    queued;
    /* a message search: one at a time per worker, the others wait */
    unsigned                      heavy:1;
};


typedef struct {
    const char                   *name;
    const char                   *sql;
    int                           nparams;
} ngx_http_chat_pg_stmt_t;


/*
 * A channel the pool's first connection LISTENs to, for a client of the
 * pool: notify() for each notification (payload NUL-terminated, len
 * without the NUL), and ready() each time the connection is listening,
 * first or again: what was notified while it was down is lost, and the
 * client looks for it itself.
 */

typedef struct ngx_http_chat_pg_listener_s  ngx_http_chat_pg_listener_t;

typedef void (*ngx_http_chat_pg_notify_pt)(ngx_http_chat_pg_listener_t *l,
    u_char *payload, size_t len);
typedef void (*ngx_http_chat_pg_ready_pt)(ngx_http_chat_pg_listener_t *l);

struct ngx_http_chat_pg_listener_s {
    const char                   *channel;  /* [a-z_], no quoting needed */
    ngx_http_chat_pg_notify_pt    notify;
    ngx_http_chat_pg_ready_pt     ready;
    void                         *data;
    /* registered, but not listened to until ngx_http_chat_pg_listener_set */
    unsigned                      off:1;
};


typedef struct {
    ngx_str_t                     conninfo;   /* NUL-terminated */
    ngx_uint_t                    size;
    ngx_msec_t                    connect_timeout;
    ngx_msec_t                    query_timeout;
    ngx_msec_t                    queue_timeout;
    ngx_uint_t                    queue_max;
    ngx_str_t                     settings;   /* "SET ...; " per connection */
} ngx_http_chat_pg_conf_t;


char *ngx_http_chat_pg_conf(ngx_conf_t *cf, ngx_http_chat_pg_conf_t *pcf,
    ngx_str_t *value, ngx_uint_t n);

/*
 * stmts: what every connection prepares, n of them, kept by the caller; a
 * query's stmt is an index.  Listeners are registered before.
 */
ngx_int_t ngx_http_chat_pg_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_pg_conf_t *pcf, ngx_http_chat_pg_stmt_t *stmts,
    ngx_uint_t n);
void ngx_http_chat_pg_exit_process(void);

/*
 * Before ngx_http_chat_pg_init_process, in a worker's init: the channel
 * is listened to from the first connection on.  l is kept, not copied.
 */
ngx_int_t ngx_http_chat_pg_listen(ngx_http_chat_pg_listener_t *l);

/*
 * Sets a query up from nothing: its statement and its handler; then each
 * parameter in turn, text that stays (NUL-terminated) until the handler.
 */
void ngx_http_chat_pg_query_init(ngx_http_chat_pg_query_t *q,
    ngx_uint_t stmt, ngx_http_chat_pg_handler_pt handler, void *data);
void ngx_http_chat_pg_query_param(ngx_http_chat_pg_query_t *q,
    const char *value, size_t len);

/*
 * Queues a query.  NGX_OK: its handler will be called, later, exactly
 * once.  NGX_DECLINED: storage is unavailable now; nothing was queued.
 */
ngx_int_t ngx_http_chat_pg_query(ngx_http_chat_pg_query_t *q);

/*
 * What a chat.api_* function returned, for a handler: the JSON of the one
 * row's one value when rc is NGX_OK (the caller decrefs it), else NULL;
 * invalid JSON is logged and NULL.
 */
json_t *ngx_http_chat_pg_json(ngx_int_t rc, PGresult *res);

/*
 * A registered listener is listened to (on) or not from now on: LISTEN or
 * UNLISTEN on the first connection when it is free next (ready() follows
 * a LISTEN), or at its setup if it is down now.
 */
void ngx_http_chat_pg_listener_set(ngx_http_chat_pg_listener_t *l,
    ngx_uint_t on);

/* on the connection that LISTENs (a round trip that proves it hears) */
ngx_int_t ngx_http_chat_pg_listener_query(ngx_http_chat_pg_query_t *q);

/* a queued query that was not sent yet is dropped; NGX_DECLINED if sent */
ngx_int_t ngx_http_chat_pg_cancel(ngx_http_chat_pg_query_t *q);

/* how long a query may wait for a connection */
ngx_msec_t ngx_http_chat_pg_queue_timeout(void);

/*
 * A libpq or PostgreSQL message on one line, for the error log: line
 * breaks become " / ", no final newline; returns buf (NUL-terminated).
 */
u_char *ngx_http_chat_pg_fold(u_char *buf, size_t size, const char *msg);



#endif /* _NGX_HTTP_CHAT_PG_H_INCLUDED_ */
