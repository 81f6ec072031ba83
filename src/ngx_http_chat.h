
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
#include <ngx_http_chat_message.h>
#include <ngx_http_chat_route.h>
#include <ngx_http_chat_sniff.h>
#include <ngx_http_chat_base64url.h>
#include <ngx_http_chat_ece.h>
#include <ngx_http_chat_vapid.h>
#include <ngx_http_chat_subscription.h>


/* the module's version, for chat_build_info */
#define NGX_HTTP_CHAT_VERSION          "0.1.0"

#define NGX_HTTP_CHAT_SUBPROTOCOL      "chat.v1"
#define NGX_HTTP_CHAT_MAX_JSON_DEPTH   32
#define NGX_HTTP_CHAT_DEV_TOKEN_TTL    86400

/* storage requests a connection may have waiting before it is not read */
#define NGX_HTTP_CHAT_MAX_OPS          64


typedef enum {
    NGX_HTTP_CHAT_MODE_NONE = 0,
    NGX_HTTP_CHAT_MODE_WEBSOCKET,
    NGX_HTTP_CHAT_MODE_ECHO,
    NGX_HTTP_CHAT_MODE_API,
    NGX_HTTP_CHAT_MODE_STATUS,
    NGX_HTTP_CHAT_MODE_DEV_TOKEN
} ngx_http_chat_mode_e;


#define NGX_HTTP_CHAT_EVENT_TYPES    11
/* the protocol's request types, the last one for any other */
#define NGX_HTTP_CHAT_REQUEST_TYPES  17
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
    ngx_array_t                  *upload_paths;  /* ngx_str_t, to check */
    ngx_str_t                     files_uri;  /* the chat_files location */
    time_t                        upload_grace;   /* chat_upload_grace */
    /* the longest chat_upload_timeout: tmp/'s sweep (upload.c) */
    ngx_msec_t                    upload_timeout;
#if (NGX_THREADS)
    /* chat_upload_threads: the store's calls there; NULL: inline */
    ngx_thread_pool_t            *upload_threads;
#endif
    /* chat_attachment_hosts: char *, lower case; NULL: no links */
    ngx_array_t                  *attachment_hosts;
    ngx_str_t                     attachment_hosts_sql;  /* {a,b}, NUL */
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
#define NGX_HTTP_CHAT_RATE_UPLOAD  3  /* files */
#define NGX_HTTP_CHAT_RATE_UPLOAD_BYTES  4  /* the daily quota, in bytes */
#define NGX_HTTP_CHAT_RATES        5
/* the kinds a WebSocket spends (send, typing, search), the first ones: a
 * session keeps buckets for these only, in its connection's pool, where
 * two more pushed the pool past its first block (~0.5 KB a connection) */
#define NGX_HTTP_CHAT_WS_RATES     3


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

    /* uploads: the store (no trailing slash; empty: none), its tmp/ */
    ngx_str_t                     upload_path;
    ngx_path_t                   *upload_temp;
    off_t                         upload_max_size;
    ngx_uint_t                    upload_concurrency;  /* per user */
    ngx_msec_t                    upload_timeout;      /* the whole body */
    ngx_flag_t                    files;     /* chat_files */

    /* chat_api: client_max_body_size, nginx's own check off there */
    off_t                         body_max_size;
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


extern ngx_module_t  ngx_http_chat_module;


/*
 * How a lower level hands an event up without naming who takes it: ipc.c,
 * cluster.c and outbox.c are given the bus's functions at init.  to: the
 * recipients' ids (borrowed, like event).
 */
typedef void (*ngx_http_chat_event_handler_pt)(json_t *event, json_t *to,
    ngx_log_t *log);


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


/* each file's exports, in the order of their levels (docs/architecture.md) */
#include <ngx_http_chat_http.h>
#include <ngx_http_chat_auth.h>
#include <ngx_http_chat_zone.h>
#include <ngx_http_chat_pg.h>
#include <ngx_http_chat_sql.h>
#include <ngx_http_chat_status.h>
#include <ngx_http_chat_ws.h>
#include <ngx_http_chat_fanout.h>
#include <ngx_http_chat_presence.h>
#include <ngx_http_chat_rate.h>
#include <ngx_http_chat_order.h>
#include <ngx_http_chat_ipc.h>
#include <ngx_http_chat_cluster.h>
#include <ngx_http_chat_outbox.h>
#include <ngx_http_chat_bus.h>
#include <ngx_http_chat_store.h>
#include <ngx_http_chat_typing.h>
#include <ngx_http_chat_session.h>
#include <ngx_http_chat_echo.h>
#include <ngx_http_chat_upload.h>
#include <ngx_http_chat_files.h>
#include <ngx_http_chat_handshake.h>
#include <ngx_http_chat_api.h>


#endif /* _NGX_HTTP_CHAT_H_INCLUDED_ */
