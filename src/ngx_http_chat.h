
/*
 * ngx_http_chat_module: types shared by the module's files.
 */


#ifndef _NGX_HTTP_CHAT_H_INCLUDED_
#define _NGX_HTTP_CHAT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include <ngx_http_chat_frame.h>
#include <ngx_http_chat_jwt.h>
#include <ngx_http_chat_pg.h>
#include <ngx_http_chat_request.h>
#include <ngx_http_chat_route.h>


/* the module's version, for chat_build_info */
#define NGX_HTTP_CHAT_VERSION          "0.1.0"

#define NGX_HTTP_CHAT_SUBPROTOCOL      "chat.v1"
#define NGX_HTTP_CHAT_MAX_JSON_DEPTH   32
#define NGX_HTTP_CHAT_DEV_TOKEN_TTL    86400

/* storage requests a connection may have waiting before it is not read */
#define NGX_HTTP_CHAT_MAX_OPS          64


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


typedef enum {
    NGX_HTTP_CHAT_MODE_NONE = 0,
    NGX_HTTP_CHAT_MODE_WEBSOCKET,
    NGX_HTTP_CHAT_MODE_ECHO,
    NGX_HTTP_CHAT_MODE_API,
    NGX_HTTP_CHAT_MODE_STATUS,
    NGX_HTTP_CHAT_MODE_DEV_TOKEN
} ngx_http_chat_mode_e;


#define NGX_HTTP_CHAT_EVENT_TYPES    12
/* the protocol's request types, the last one for any other */
#define NGX_HTTP_CHAT_REQUEST_TYPES  14
/* room for statements to come: any past it share the last histogram */
#define NGX_HTTP_CHAT_STMT_SLOTS     48


/* why the server closed a connection: chat_closes_total{reason} */
#define NGX_HTTP_CHAT_CLOSED_PROTOCOL       0   /* 1002, 1003, 1007 */
#define NGX_HTTP_CHAT_CLOSED_LIMIT          1   /* 1008, 1009 */
#define NGX_HTTP_CHAT_CLOSED_IDLE           2   /* 1001, chat_idle_timeout */
#define NGX_HTTP_CHAT_CLOSED_PING           3   /* no pong */
#define NGX_HTTP_CHAT_CLOSED_TOKEN          4   /* 4001 */
#define NGX_HTTP_CHAT_CLOSED_SHUTDOWN       5   /* 1001, reload or stop */
#define NGX_HTTP_CHAT_CLOSED_SLOW           6   /* 1013, not reading */
#define NGX_HTTP_CHAT_CLOSED_OVERFLOW       7   /* 1013, chat_zone queue */
#define NGX_HTTP_CHAT_CLOSED_INTERNAL       8   /* 1011 */
#define NGX_HTTP_CHAT_CLOSE_REASONS         9

/* why authentication failed: chat_auth_failures_total{reason} */
#define NGX_HTTP_CHAT_AUTH_MISSING          0
#define NGX_HTTP_CHAT_AUTH_MALFORMED        1
#define NGX_HTTP_CHAT_AUTH_SIGNATURE        2
#define NGX_HTTP_CHAT_AUTH_ALGORITHM        3
#define NGX_HTTP_CHAT_AUTH_EXPIRED          4
#define NGX_HTTP_CHAT_AUTH_NOT_YET_VALID    5
#define NGX_HTTP_CHAT_AUTH_ISSUER           6
#define NGX_HTTP_CHAT_AUTH_AUDIENCE         7
#define NGX_HTTP_CHAT_AUTH_CLAIMS           8
#define NGX_HTTP_CHAT_AUTH_IDENTITY         9
#define NGX_HTTP_CHAT_AUTH_NOT_ACCEPTED     10
#define NGX_HTTP_CHAT_AUTH_WRONG_USER       11
#define NGX_HTTP_CHAT_AUTH_OTHER            12
#define NGX_HTTP_CHAT_AUTH_REASONS          13

/* REST answers by status class: 1xx .. 5xx */
#define NGX_HTTP_CHAT_STATUS_CLASSES        5


/*
 * A latency histogram in shared memory: a count per bucket (not
 * cumulative: one atomic add records an observation) and the sum in
 * microseconds.  The buckets' upper bounds, in microseconds: 100 us to
 * 10 s, then +Inf.
 */
#define NGX_HTTP_CHAT_BOUNDS                                                 \
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,            \
    250000, 500000, 1000000, 2500000, 5000000, 10000000
#define NGX_HTTP_CHAT_BUCKETS        17

typedef struct {
    ngx_atomic_t                  n[NGX_HTTP_CHAT_BUCKETS];
    ngx_atomic_t                  usec;
} ngx_http_chat_histogram_t;


/* counters in shared memory, read by chat_status */
typedef struct {
    size_t                        layout;     /* sizeof this, see status.c */
    ngx_atomic_t                  connections;        /* open WebSockets */
    ngx_atomic_t                  upgrades;           /* 101 sent */
    ngx_atomic_t                  handshake_failures;
    ngx_atomic_t                  frames_in;
    ngx_atomic_t                  messages_in;
    ngx_atomic_t                  messages_out;
    ngx_atomic_t                  bytes_in;
    ngx_atomic_t                  bytes_out;
    ngx_atomic_t                  requests_bad;       /* bad_request replies */
    ngx_atomic_t                  tokens_minted;
    ngx_atomic_t                  events_dropped;     /* typing, presence */
    ngx_atomic_t                  rate_limited;
    ngx_atomic_t                  pg_queries;
    ngx_atomic_t                  pg_errors;          /* SQL errors */
    ngx_atomic_t                  pg_unavailable;     /* answered so */
    ngx_atomic_t                  pg_connects;
    ngx_atomic_t                  pg_ready;           /* connections now */
    ngx_atomic_t                  closes[NGX_HTTP_CHAT_CLOSE_REASONS];
    ngx_atomic_t                  auth_failures[NGX_HTTP_CHAT_AUTH_REASONS];
    ngx_atomic_t                  events_out[NGX_HTTP_CHAT_EVENT_TYPES];
    ngx_atomic_t                  requests[NGX_HTTP_CHAT_REQUEST_TYPES];
    ngx_atomic_t                  http[NGX_HTTP_CHAT_ROUTE_COUNT]
                                      [NGX_HTTP_CHAT_STATUS_CLASSES];
    ngx_http_chat_histogram_t     request_time[NGX_HTTP_CHAT_REQUEST_TYPES];
    ngx_http_chat_histogram_t     pg_time[NGX_HTTP_CHAT_STMT_SLOTS];
} ngx_http_chat_stats_t;


typedef struct {
    ngx_shm_zone_t               *stats_zone;
    ngx_http_chat_stats_t        *stats;
    ngx_http_chat_pg_conf_t      *pg;         /* chat_postgres, or NULL */
    void                         *zone;       /* chat_zone, or NULL */
    ngx_flag_t                    cluster;    /* chat_cluster */
    ngx_str_t                     node_id;    /* chat_node_id */
    ngx_str_t                     cluster_secret;  /* chat_cluster_secret */
    ngx_str_t                     limits;     /* chat_limits, as SET ... */
    ngx_uint_t                    endpoints;  /* chat_websocket, chat_api */
    ngx_array_t                  *dev_tokens; /* of ngx_http_chat_dev_t */
} ngx_http_chat_main_conf_t;


/* a chat_dev_token location and its server, checked at postconfiguration */

typedef struct {
    void                         *server;     /* its core srv conf */
    ngx_str_t                     file;
    ngx_uint_t                    line;
} ngx_http_chat_dev_t;


typedef struct {
    ngx_uint_t                    rate;      /* requests per 1000 s */
    ngx_uint_t                    burst;     /* in thousandths */
} ngx_http_chat_rate_t;


/* a leaky bucket, as limit_req keeps it: excess in thousandths */
typedef struct {
    ngx_msec_t                    last;
    ngx_uint_t                    excess;
} ngx_http_chat_bucket_t;


#define NGX_HTTP_CHAT_RATE_SEND    0
#define NGX_HTTP_CHAT_RATE_TYPING  1
#define NGX_HTTP_CHAT_RATE_SEARCH  2
#define NGX_HTTP_CHAT_RATES        3


typedef struct {
    ngx_http_chat_mode_e          mode;
    ngx_str_t                     mode_file;  /* where it was set: the */
    ngx_uint_t                    mode_line;  /* merge's checks name it */

    /* authentication */
    ngx_http_chat_jwt_key_t      *jwt_key;
    ngx_str_t                     jwt_issuer;      /* NUL-terminated */
    ngx_str_t                     jwt_audience;    /* NUL-terminated */
    time_t                        jwt_leeway;
    ngx_flag_t                    jwt_require_exp;
    ngx_str_t                     token_cookie;
    ngx_str_t                     service_claim;   /* NUL-terminated */
    ngx_str_t                     service_value;   /* NUL-terminated */
    ngx_http_complex_value_t     *identity;        /* chat_identity */
    ngx_http_complex_value_t     *identity_name;

    /* handshake */
    ngx_array_t                  *allowed_origins; /* ngx_str_t, or NULL */
    ngx_array_t                  *cors_origins;    /* ngx_str_t, or NULL */

    /* WebSocket limits and timers */
    size_t                        max_message_size;
    ngx_uint_t                    max_fragments;
    size_t                        send_buffer;
    ngx_msec_t                    heartbeat;
    ngx_msec_t                    idle_timeout;
    ngx_msec_t                    close_timeout;
    ngx_msec_t                    send_timeout;

    /* chat protocol */
    ngx_uint_t                    max_message_length;
    ngx_uint_t                    max_connections_per_user;
    /* sends, typing, message searches; rate 0: none */
    ngx_http_chat_rate_t          rates[NGX_HTTP_CHAT_RATES];
    ngx_uint_t                    user_directory;  /* 1: open */
} ngx_http_chat_loc_conf_t;


/* identity established by the handshake or a REST request; the strings
 * are NUL-terminated */
typedef struct {
    ngx_str_t                     id;
    ngx_str_t                     name;
    ngx_str_t                     avatar;
    time_t                        exp;       /* 0: never expires */
    unsigned                      service:1; /* chat_service_claim */
} ngx_http_chat_identity_t;


/* a payload shared by every out queue entry that sends it */
typedef struct {
    ngx_uint_t                    refs;
    size_t                        len;
    size_t                        size;
    u_char                        data[1];
} ngx_http_chat_buf_t;


typedef struct ngx_http_chat_out_s  ngx_http_chat_out_t;

struct ngx_http_chat_out_s {
    ngx_http_chat_out_t          *next;
    ngx_http_chat_buf_t          *buf;       /* NULL for a header alone */
    size_t                        sent;      /* of header, then payload */
    u_char                        hlen;
    u_char                        header[NGX_HTTP_CHAT_FRAME_HEADER_MAX];
};


typedef struct ngx_http_chat_conn_s  ngx_http_chat_conn_t;

struct ngx_http_chat_conn_s {
    ngx_connection_t             *connection;
    ngx_http_chat_loc_conf_t     *conf;

    ngx_http_chat_frame_parser_t  parser;
    ngx_http_chat_buf_t          *msg;       /* data message being read */

    ngx_http_chat_out_t          *out;
    ngx_http_chat_out_t         **out_last;
    size_t                        out_bytes;

    ngx_http_chat_buf_t          *upgrade;   /* the 101 before the start */
    u_char                       *early;     /* bytes sent before the 101 */
    size_t                        early_len;
    u_char                       *saved;     /* read, not parsed yet */
    size_t                        saved_len;

    ngx_http_chat_identity_t      id;
    ngx_uint_t                    session;

    ngx_msec_t                    last_data;  /* last data message in */

    ngx_queue_t                   ops;        /* storage requests, FIFO */
    ngx_queue_t                   typing;     /* conversations typed in */
    ngx_http_chat_bucket_t        buckets[NGX_HTTP_CHAT_RATES];
                                              /* rates without a zone */
    ngx_uint_t                    nops;
    ngx_queue_t                   fanout;     /* the user's connections */
    void                         *fanout_user;
    ngx_msec_t                    fanout_since;  /* events reach it since */

    unsigned                      echo:1;
    unsigned                      started:1;
    unsigned                      ping_sent:1;
    unsigned                      read_blocked:1;
    unsigned                      close_sent:1;
    unsigned                      close_received:1;
    unsigned                      discard:1;  /* input past a failure */
    unsigned                      lingering:1;
    unsigned                      finalized:1;
    unsigned                      present:1;  /* counted in presence */
};


/* the request's module context: who is asking, and the WebSocket to be */
typedef struct {
    ngx_http_chat_identity_t      id;
    ngx_http_chat_conn_t         *wc;
} ngx_http_chat_ctx_t;


extern ngx_module_t  ngx_http_chat_module;


#define ngx_http_chat_stat(mcf, field, n)                                    \
    if ((mcf)->stats) {                                                      \
        (void) ngx_atomic_fetch_add(&(mcf)->stats->field, n);                \
    }

/* the same, from anywhere in a worker */
#define ngx_http_chat_count(field, n)                                        \
    ngx_http_chat_stat(((ngx_http_chat_main_conf_t *)                        \
                        ngx_http_cycle_get_module_main_conf(ngx_cycle,       \
                                               ngx_http_chat_module)),       \
                       field, n)


/* a monotonic clock in microseconds, for latencies (vDSO: no syscall) */

static ngx_inline uint64_t
ngx_http_chat_usec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


/*
 * Records a latency: the first bucket whose bound holds it (fast answers
 * stop after a compare or two) and the sum: two atomic adds, no lock.
 */

static ngx_inline void
ngx_http_chat_observe(ngx_http_chat_histogram_t *h, uint64_t usec)
{
    ngx_uint_t              i;
    static const uint32_t   bounds[] = { NGX_HTTP_CHAT_BOUNDS };

    for (i = 0; i < NGX_HTTP_CHAT_BUCKETS - 1; i++) {
        if (usec <= bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&h->n[i], 1);
    (void) ngx_atomic_fetch_add(&h->usec, (ngx_atomic_int_t) usec);
}


#define ngx_http_chat_observe_in(mcf, field, usec)                           \
    if ((mcf)->stats) {                                                      \
        ngx_http_chat_observe(&(mcf)->stats->field, usec);                   \
    }

/* the same, from anywhere in a worker */
#define ngx_http_chat_latency(field, usec)                                   \
    ngx_http_chat_observe_in(((ngx_http_chat_main_conf_t *)                  \
                              ngx_http_cycle_get_module_main_conf(ngx_cycle, \
                                               ngx_http_chat_module)),       \
                             field, usec)


/* ngx_http_chat_http.c: JSON answers to plain HTTP requests */
ngx_int_t ngx_http_chat_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *body);
ngx_int_t ngx_http_chat_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message);
u_char *ngx_http_chat_time(u_char *buf, time_t sec, ngx_msec_t msec);
json_t *ngx_http_chat_user_json(ngx_http_chat_identity_t *id);
json_t *ngx_http_chat_event_json(json_t *event);
ngx_table_elt_t *ngx_http_chat_http_header(ngx_http_request_t *r,
    const char *name, ngx_uint_t *n);
ngx_int_t ngx_http_chat_origin_allowed(ngx_http_request_t *r,
    ngx_array_t *list, ngx_str_t *origin);
ngx_int_t ngx_http_chat_add_header(ngx_http_request_t *r, const char *key,
    const char *value);

#define NGX_HTTP_CHAT_TIME_LEN  (sizeof("2026-11-21T10:00:00.123Z") - 1)

/* ngx_http_chat_auth.c */
ngx_int_t ngx_http_chat_authenticate(ngx_http_request_t *r,
    ngx_http_chat_loc_conf_t *ccf, ngx_pool_t *pool,
    ngx_http_chat_identity_t *id, const char **err);
ngx_int_t ngx_http_chat_verify_token(ngx_http_chat_loc_conf_t *clcf,
    u_char *token, size_t len, ngx_http_chat_jwt_t *jwt, const char **err);
ngx_int_t ngx_http_chat_dev_token_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_chat_text_valid(ngx_str_t *s);
ngx_int_t ngx_http_chat_identity_copy(ngx_pool_t *pool,
    ngx_http_chat_identity_t *dst, ngx_http_chat_identity_t *src);

/* ngx_http_chat_handshake.c */
ngx_int_t ngx_http_chat_ws_handler(ngx_http_request_t *r);

/* ngx_http_chat_ws.c: the connection after the upgrade */
void ngx_http_chat_ws_start(ngx_event_t *ev);
ngx_int_t ngx_http_chat_ws_send_buf(ngx_http_chat_conn_t *wc,
    unsigned opcode, ngx_http_chat_buf_t *buf);
void ngx_http_chat_ws_close(ngx_http_chat_conn_t *wc, unsigned code,
    const char *reason);
void ngx_http_chat_ws_rearm(ngx_http_chat_conn_t *wc);
void ngx_http_chat_ws_resume(ngx_http_chat_conn_t *wc);
ngx_http_chat_buf_t *ngx_http_chat_buf_alloc(size_t size, ngx_log_t *log);
void ngx_http_chat_buf_release(ngx_http_chat_buf_t *buf);

/* ngx_http_chat_session.c: the chat protocol on a connection */
ngx_int_t ngx_http_chat_session_start(ngx_http_chat_conn_t *wc);
ngx_int_t ngx_http_chat_session_message(ngx_http_chat_conn_t *wc,
    u_char *data, size_t len);
ngx_int_t ngx_http_chat_session_reply(ngx_http_chat_conn_t *wc, json_t *id,
    json_t *data, json_t *error);
ngx_int_t ngx_http_chat_session_error(ngx_http_chat_conn_t *wc, json_t *id,
    const char *code, const char *message);
ngx_int_t ngx_http_chat_session_event(ngx_http_chat_conn_t *wc,
    json_t *event);
ngx_int_t ngx_http_chat_session_limited(ngx_http_chat_conn_t *wc, json_t *id,
    ngx_msec_t wait);

/* ngx_http_chat_store.c: requests that need PostgreSQL */
/* type: the index of the request's type; parsed: ngx_http_chat_usec() */
ngx_int_t ngx_http_chat_store_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req, ngx_uint_t stmt, ngx_uint_t type,
    uint64_t parsed);
ngx_int_t ngx_http_chat_store_hello(ngx_http_chat_conn_t *wc);
void ngx_http_chat_store_detach(ngx_http_chat_conn_t *wc);
void ngx_http_chat_store_resume(ngx_http_chat_conn_t *wc);
/* the host application's SQL changes (sql/api/70_host.sql) */
void ngx_http_chat_outbox_init(ngx_cycle_t *cycle);
void ngx_http_chat_outbox_wake(void);
void ngx_http_chat_outbox_exit(void);

/* result: borrowed; NULL when storage was unavailable */
typedef void (*ngx_http_chat_store_done_pt)(ngx_http_request_t *r,
    json_t *result);
ngx_int_t ngx_http_chat_store_http(ngx_http_request_t *r, ngx_str_t *user,
    ngx_uint_t stmt, json_t *arg, ngx_http_chat_store_done_pt done);
void ngx_http_chat_store_call(u_char *user, size_t len, ngx_uint_t stmt,
    json_t *arg);

/* ngx_http_chat_fanout.c: delivery to this worker's connections */
ngx_int_t ngx_http_chat_fanout_add(ngx_http_chat_conn_t *wc);
void ngx_http_chat_fanout_remove(ngx_http_chat_conn_t *wc);
void ngx_http_chat_fanout_deliver(json_t *event, json_t *to, ngx_log_t *log);

/* ngx_http_chat_order.c: the same, changes of a conversation in order */
void ngx_http_chat_fanout_event(json_t *event, json_t *to, ngx_log_t *log);
json_t *ngx_http_chat_order_members(ngx_uint_t cid, ngx_msec_t *since);
ngx_int_t ngx_http_chat_order_want(ngx_uint_t cid, int64_t from, int64_t to,
    int64_t *after, int64_t *upto);
void ngx_http_chat_order_unask(ngx_uint_t cid);
void ngx_http_chat_order_read(ngx_uint_t cid, int64_t last_seq);
json_t *ngx_http_chat_order_heads(ngx_uint_t max);
void ngx_http_chat_fanout_close_all(unsigned code, const char *reason);
ngx_uint_t ngx_http_chat_fanout_online(u_char *user, size_t len);

/* ngx_http_chat_ipc.c: delivery to every worker */
void ngx_http_chat_route_event(json_t *event, json_t *to, ngx_log_t *log);

/* ngx_http_chat_cluster.c: several nodes over one PostgreSQL */
ngx_int_t ngx_http_chat_cluster_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
void ngx_http_chat_cluster_exit_process(void);
ngx_uint_t ngx_http_chat_cluster_enabled(void);
ngx_str_t *ngx_http_chat_cluster_node(void);
void ngx_http_chat_cluster_publish(json_t *event, json_t *to);
void ngx_http_chat_cluster_presence(u_char *user, size_t len,
    ngx_uint_t online, time_t last_seen);
void ngx_http_chat_cluster_notified(u_char *payload, size_t len);
void ngx_http_chat_cluster_listening(void);

/* ngx_http_chat_presence.c */
ngx_int_t ngx_http_chat_presence_add(ngx_http_chat_loc_conf_t *ccf,
    ngx_http_chat_identity_t *id);
void ngx_http_chat_presence_undo(ngx_http_chat_identity_t *id);
void ngx_http_chat_presence_remove(ngx_http_chat_conn_t *wc);
json_t *ngx_http_chat_presence_query(json_t *ids);
json_t *ngx_http_chat_presence_answer(json_t *audience);
void ngx_http_chat_presence_remote(u_char *user, size_t len, ngx_str_t *node,
    ngx_uint_t online, time_t last_seen);
void ngx_http_chat_presence_remote_reset(json_t *online, json_t *live);
ngx_uint_t ngx_http_chat_presence_held(u_char *user, size_t len,
    ngx_str_t *node);
json_t *ngx_http_chat_presence_local_users(void);

/* ngx_http_chat_typing.c */
void ngx_http_chat_typing_update(ngx_http_chat_conn_t *wc, json_t *event,
    json_t *to);
void ngx_http_chat_typing_stop_all(ngx_http_chat_conn_t *wc);

/* ngx_http_chat_rate.c */
char *ngx_http_chat_rate_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_msec_t ngx_http_chat_rate_check_user(ngx_http_chat_loc_conf_t *conf,
    ngx_str_t *id, ngx_uint_t kind);
ngx_msec_t ngx_http_chat_rate_check(ngx_http_chat_conn_t *wc,
    ngx_uint_t kind);

/* ngx_http_chat_status.c */
ngx_int_t ngx_http_chat_status_handler(ngx_http_request_t *r);
void ngx_http_chat_status_event(json_t *event);
ngx_str_t *ngx_http_chat_request_type_name(ngx_uint_t i);
ngx_int_t ngx_http_chat_status_init_conf(ngx_conf_t *cf,
    ngx_http_chat_main_conf_t *cmcf);

/* ngx_http_chat_api.c */
ngx_int_t ngx_http_chat_api_init(ngx_conf_t *cf);
ngx_int_t ngx_http_chat_api_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_CHAT_H_INCLUDED_ */
