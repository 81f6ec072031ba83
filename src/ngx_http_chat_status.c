
/*
 * chat_status: counters, gauges and latency histograms in Prometheus text
 * format.  They live in a small shared memory segment so that every
 * worker adds to the same numbers and a reload keeps them.  Every label
 * takes its values from a fixed set (docs/metrics.md lists them all).
 */


#include <nginx.h>
#include <ngx_http_chat.h>
#include <ngx_http_chat_zone.h>

#include <openssl/crypto.h>


/* room for one line of a labelled family: names and labels are short */
#define NGX_HTTP_CHAT_STATUS_LINE  (192 + 2 * NGX_ATOMIC_T_LEN)


typedef struct {
    const char   *name;
    const char   *type;
    const char   *help;
    size_t        offset;
} ngx_http_chat_metric_t;


static ngx_int_t ngx_http_chat_status_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static u_char *ngx_http_chat_status_family(u_char *p, u_char *last,
    const char *name, const char *type, const char *help);
static u_char *ngx_http_chat_status_labelled(u_char *p, u_char *last,
    const char *name, const char *label, ngx_str_t *values,
    ngx_atomic_t *counts, ngx_uint_t n);
static u_char *ngx_http_chat_status_http(u_char *p, u_char *last,
    ngx_http_chat_stats_t *stats);
static u_char *ngx_http_chat_status_histogram(u_char *p, u_char *last,
    const char *name, const char *label, ngx_str_t *value,
    ngx_http_chat_histogram_t *h);
static u_char *ngx_http_chat_status_seconds(u_char *p, u_char *last,
    uint64_t usec, ngx_uint_t trim);
static u_char *ngx_http_chat_status_build(u_char *p, u_char *last);
static u_char *ngx_http_chat_status_version(u_char *p, u_char *last,
    const char *label, const char *version);
static u_char *ngx_http_chat_status_zone(u_char *p, u_char *last);
static ngx_atomic_int_t ngx_http_chat_status_gauge(ngx_uint_t connections);


/* the protocol's request types: the session names them at configuration */
static ngx_http_chat_status_name_pt  ngx_http_chat_status_request_name;


/* the last one counts any other type */
static ngx_str_t  ngx_http_chat_event_names[NGX_HTTP_CHAT_EVENT_TYPES] = {
    ngx_string("message.created"),
    ngx_string("message.updated"),
    ngx_string("message.deleted"),
    ngx_string("receipt"),
    ngx_string("typing"),
    ngx_string("presence"),
    ngx_string("conversation.created"),
    ngx_string("conversation.updated"),
    ngx_string("member.joined"),
    ngx_string("member.left"),
    ngx_string("other")
};


/* indexed by NGX_HTTP_CHAT_CLOSED_* */
static ngx_str_t  ngx_http_chat_close_reasons[NGX_HTTP_CHAT_CLOSE_REASONS] = {
    ngx_string("protocol"),
    ngx_string("limit"),
    ngx_string("idle"),
    ngx_string("ping_timeout"),
    ngx_string("token_expired"),
    ngx_string("shutdown"),
    ngx_string("slow"),
    ngx_string("overflow"),
    ngx_string("internal")
};


/* indexed by NGX_HTTP_CHAT_AUTH_* */
static ngx_str_t  ngx_http_chat_auth_reasons[NGX_HTTP_CHAT_AUTH_REASONS] = {
    ngx_string("missing_token"),
    ngx_string("malformed"),
    ngx_string("bad_signature"),
    ngx_string("algorithm"),
    ngx_string("expired"),
    ngx_string("not_yet_valid"),
    ngx_string("wrong_issuer"),
    ngx_string("wrong_audience"),
    ngx_string("bad_claims"),
    ngx_string("bad_identity"),
    ngx_string("not_accepted"),
    ngx_string("wrong_user"),
    ngx_string("other")
};


static const char  *ngx_http_chat_status_classes[NGX_HTTP_CHAT_STATUS_CLASSES]
    = { "1xx", "2xx", "3xx", "4xx", "5xx" };


#define ngx_http_chat_metric(name, type, field, help)                        \
    { name, type, help, offsetof(ngx_http_chat_stats_t, field) }


static ngx_http_chat_metric_t  ngx_http_chat_metrics[] = {

    ngx_http_chat_metric("chat_connections", "gauge", connections,
                         "Open WebSocket connections."),
    ngx_http_chat_metric("chat_upgrades_total", "counter", upgrades,
                         "WebSocket handshakes accepted."),
    ngx_http_chat_metric("chat_handshake_failures_total", "counter",
                         handshake_failures,
                         "WebSocket handshakes refused as malformed."),
    ngx_http_chat_metric("chat_frames_in_total", "counter", frames_in,
                         "WebSocket frames received."),
    ngx_http_chat_metric("chat_messages_in_total", "counter", messages_in,
                         "WebSocket messages received."),
    ngx_http_chat_metric("chat_messages_out_total", "counter", messages_out,
                         "WebSocket messages queued to clients."),
    ngx_http_chat_metric("chat_bytes_in_total", "counter", bytes_in,
                         "Bytes read from WebSocket clients."),
    ngx_http_chat_metric("chat_bytes_out_total", "counter", bytes_out,
                         "Bytes written to WebSocket clients."),
    ngx_http_chat_metric("chat_bad_requests_total", "counter", requests_bad,
                         "Requests answered with bad_request."),
    ngx_http_chat_metric("chat_dev_tokens_minted_total", "counter",
                         tokens_minted, "Development tokens minted."),
    ngx_http_chat_metric("chat_events_dropped_total", "counter",
                         events_dropped,
                         "Typing and presence events dropped for slow "
                         "clients."),
    ngx_http_chat_metric("chat_rate_limited_total", "counter", rate_limited,
                         "Requests refused by a rate limit."),
    ngx_http_chat_metric("chat_postgres_queries_total", "counter",
                         pg_queries, "Queries sent to PostgreSQL."),
    ngx_http_chat_metric("chat_postgres_errors_total", "counter", pg_errors,
                         "Queries PostgreSQL answered with an error."),
    ngx_http_chat_metric("chat_postgres_unavailable_total", "counter",
                         pg_unavailable,
                         "Queries answered unavailable: no connection, a "
                         "lost one, or a timeout."),
    ngx_http_chat_metric("chat_postgres_connects_total", "counter",
                         pg_connects, "PostgreSQL connections made ready."),
    ngx_http_chat_metric("chat_postgres_connections", "gauge", pg_ready,
                         "PostgreSQL connections ready, all workers."),

    { NULL, NULL, NULL, 0 }
};


void
ngx_http_chat_status_request_names(ngx_http_chat_status_name_pt name)
{
    ngx_http_chat_status_request_name = name;
}


ngx_int_t
ngx_http_chat_status_init_conf(ngx_conf_t *cf, ngx_http_chat_main_conf_t *cmcf)
{
    size_t     size;
    ngx_str_t  name = ngx_string("chat_status");

    if (cmcf->stats_zone != NULL) {
        return NGX_OK;
    }

    /*
     * The slab pool's own pages, and room for the counters twice: a reload
     * into a module of another layout allocates new ones (see below).  The
     * size follows the layout, so that most such reloads get a new segment.
     */

    size = 8 * ngx_pagesize
           + 2 * ngx_align(sizeof(ngx_http_chat_stats_t), ngx_pagesize);

    cmcf->stats_zone = ngx_shared_memory_add(cf, &name, size,
                                             &ngx_http_chat_module);
    if (cmcf->stats_zone == NULL) {
        return NGX_ERROR;
    }

    cmcf->stats_zone->init = ngx_http_chat_status_init_zone;
    cmcf->stats_zone->data = cmcf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_status_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t            *shpool;
    ngx_http_chat_stats_t      *stats;
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    /*
     * A reload keeps the segment, and the counts in it, unless they were
     * laid out by another version of the module: the old workers still add
     * to those, so they stay, and this generation starts from zero.
     */

    if (data != NULL || shm_zone->shm.exists) {
        stats = shpool->data;

        if (stats != NULL && stats->layout == sizeof(ngx_http_chat_stats_t)) {
            cmcf->stats = stats;
            return NGX_OK;
        }
    }

    stats = ngx_slab_calloc(shpool, sizeof(ngx_http_chat_stats_t));
    if (stats == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "chat: no room for the counters in \"%V\" after "
                      "reloads into other versions of the module: restart "
                      "nginx", &shm_zone->shm.name);
        return NGX_ERROR;
    }

    stats->layout = sizeof(ngx_http_chat_stats_t);
    shpool->data = stats;
    cmcf->stats = stats;

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_status_handler(ngx_http_request_t *r)
{
    u_char                     *last;
    size_t                      size;
    ngx_int_t                   rc;
    ngx_str_t                   names[NGX_HTTP_CHAT_REQUEST_TYPES];
    ngx_str_t                   stmt;
    ngx_uint_t                  i, n, lines;
    ngx_buf_t                  *b;
    ngx_http_chat_pg_stmt_t    *stmts;
    ngx_chain_t                 out;
    ngx_atomic_int_t            value;
    ngx_http_chat_metric_t     *m;
    ngx_http_chat_stats_t      *stats;
    ngx_http_chat_main_conf_t  *cmcf;
    u_char                      used[NGX_HTTP_CHAT_STMT_SLOTS];

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);
    stats = cmcf->stats;

    /* statements appear once used: most nodes never run some of them */

    lines = 0;

    for (i = 0; i < NGX_HTTP_CHAT_STMT_SLOTS; i++) {
        used[i] = 0;

        for (n = 0; n < NGX_HTTP_CHAT_BUCKETS; n++) {
            if (stats->pg_time[i].n[n]) {
                used[i] = 1;
                lines += NGX_HTTP_CHAT_BUCKETS + 2;
                break;
            }
        }
    }

    for (n = 0;
         ngx_http_chat_status_request_name != NULL
         && ngx_http_chat_status_request_name(n) != NULL;
         n++)
    {
        names[n] = *ngx_http_chat_status_request_name(n);
    }

    /*
     * The samples, and the HELP and TYPE lines of the 15 labelled
     * families: a line each, the longest HELP texts on top.  Every write
     * is bounded by the buffer's end all the same.
     */

    lines += 3 * (sizeof(ngx_http_chat_metrics)
                  / sizeof(ngx_http_chat_metric_t))
             + 2 * 15
             + NGX_HTTP_CHAT_REQUEST_TYPES * (NGX_HTTP_CHAT_BUCKETS + 3)
             + NGX_HTTP_CHAT_EVENT_TYPES
             + NGX_HTTP_CHAT_CLOSE_REASONS
             + NGX_HTTP_CHAT_AUTH_REASONS
             + NGX_HTTP_CHAT_ROUTE_COUNT * NGX_HTTP_CHAT_STATUS_CLASSES
             + 1 + 4 + 5 * NGX_HTTP_CHAT_SLOTS + 2 * 3;

    size = lines * NGX_HTTP_CHAT_STATUS_LINE + 2048;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = b->end;

    for (m = ngx_http_chat_metrics; m->name; m++) {
        value = *(ngx_atomic_t *) ((u_char *) stats + m->offset);

        /* with a zone, the gauges are the live workers' slots, summed */

        if (ngx_http_chat_zone_sh != NULL
            && (m->offset == offsetof(ngx_http_chat_stats_t, connections)
                || m->offset == offsetof(ngx_http_chat_stats_t, pg_ready)))
        {
            value = ngx_http_chat_status_gauge(
                        m->offset == offsetof(ngx_http_chat_stats_t,
                                              connections));
        }

        b->last = ngx_http_chat_status_family(b->last, last, m->name,
                                              m->type, m->help);
        b->last = ngx_slprintf(b->last, last, "%s %A\n", m->name, value);
    }

    b->last = ngx_http_chat_status_family(b->last, last,
                  "chat_requests_total", "counter",
                  "WebSocket requests received, by type (other: an "
                  "unknown type or no valid request at all).");
    b->last = ngx_http_chat_status_labelled(b->last, last,
                  "chat_requests_total", "type", names, stats->requests, n);

    b->last = ngx_http_chat_status_family(b->last, last,
                  "chat_request_duration_seconds", "histogram",
                  "Time from a WebSocket request parsed to its reply "
                  "queued, by request type.");

    for (i = 0; i < n; i++) {
        b->last = ngx_http_chat_status_histogram(b->last, last,
                      "chat_request_duration_seconds", "type", &names[i],
                      &stats->request_time[i]);
    }

    b->last = ngx_http_chat_status_family(b->last, last,
                  "chat_postgres_query_duration_seconds", "histogram",
                  "PostgreSQL query time, from the query sent to its "
                  "result read, by prepared statement.");

    /* the table itself, not the pool's copy: a reload without storage
     * keeps the counters, and their names */
    stmts = ngx_http_chat_sql_statements(&n);

    for (i = 0; i < NGX_HTTP_CHAT_STMT_SLOTS; i++) {
        if (!used[i]) {
            continue;
        }

        /* the last slot also holds any statements past it */

        if (i < n && (i < NGX_HTTP_CHAT_STMT_SLOTS - 1
                      || n == NGX_HTTP_CHAT_STMT_SLOTS))
        {
            stmt.data = (u_char *) stmts[i].name;
            stmt.len = ngx_strlen(stmt.data);

        } else {
            ngx_str_set(&stmt, "other");
        }

        b->last = ngx_http_chat_status_histogram(b->last, last,
                      "chat_postgres_query_duration_seconds", "statement",
                      &stmt, &stats->pg_time[i]);
    }

    b->last = ngx_http_chat_status_family(b->last, last,
                  "chat_events_total", "counter",
                  "Events routed, by type.");

    for (i = 0; i < NGX_HTTP_CHAT_EVENT_TYPES; i++) {
        b->last = ngx_slprintf(b->last, last,
                               "chat_events_total{type=\"%V\"} %uA\n",
                               &ngx_http_chat_event_names[i],
                               stats->events_out[i]);
    }

    b->last = ngx_http_chat_status_family(b->last, last,
                  "chat_closes_total", "counter",
                  "WebSocket connections the server closed, by reason: "
                  "protocol (1002, 1003, 1007), limit (1008, 1009), idle "
                  "(1001, chat_idle_timeout), ping_timeout (no pong), "
                  "token_expired (4001), shutdown (1001, reload or stop), "
                  "slow (1013, the client did not read), overflow (1013, "
                  "the worker's chat_zone queue overflowed), internal "
                  "(1011).");
    b->last = ngx_http_chat_status_labelled(b->last, last,
                  "chat_closes_total", "reason", ngx_http_chat_close_reasons,
                  stats->closes, NGX_HTTP_CHAT_CLOSE_REASONS);

    b->last = ngx_http_chat_status_family(b->last, last,
                  "chat_auth_failures_total", "counter",
                  "Requests refused as unauthenticated (WebSocket "
                  "handshakes, REST requests, auth.refresh), by reason.");
    b->last = ngx_http_chat_status_labelled(b->last, last,
                  "chat_auth_failures_total", "reason",
                  ngx_http_chat_auth_reasons, stats->auth_failures,
                  NGX_HTTP_CHAT_AUTH_REASONS);

    b->last = ngx_http_chat_status_http(b->last, last, stats);

    b->last = ngx_http_chat_status_build(b->last, last);

    if (ngx_http_chat_zone_sh != NULL) {
        b->last = ngx_http_chat_status_zone(b->last, last);
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_http_chat_status_family(u_char *p, u_char *last, const char *name,
    const char *type, const char *help)
{
    return ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s %s\n",
                        name, help, name, type);
}


static u_char *
ngx_http_chat_status_labelled(u_char *p, u_char *last, const char *name,
    const char *label, ngx_str_t *values, ngx_atomic_t *counts, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        p = ngx_slprintf(p, last, "%s{%s=\"%V\"} %uA\n",
                         name, label, &values[i], counts[i]);
    }

    return p;
}


/*
 * REST answers by route and status class: 2xx, 4xx and 5xx of every route
 * always (a series that appears late loses its first increase in rate()),
 * the classes that hardly happen once they do.
 */

static u_char *
ngx_http_chat_status_http(u_char *p, u_char *last,
    ngx_http_chat_stats_t *stats)
{
    ngx_uint_t  route, cls;

    p = ngx_http_chat_status_family(p, last,
            "chat_http_requests_total", "counter",
            "REST requests answered, by route (unknown: no route matched) "
            "and status class.");

    for (route = 0; route < NGX_HTTP_CHAT_ROUTE_COUNT; route++) {
        for (cls = 0; cls < NGX_HTTP_CHAT_STATUS_CLASSES; cls++) {

            if ((cls == 0 || cls == 2) && stats->http[route][cls] == 0) {
                continue;
            }

            p = ngx_slprintf(p, last,
                             "chat_http_requests_total{route=\"%s\","
                             "status=\"%s\"} %uA\n",
                             ngx_http_chat_route_name(route),
                             ngx_http_chat_status_classes[cls],
                             stats->http[route][cls]);
        }
    }

    return p;
}


/* cumulative buckets, as Prometheus has them: +Inf is the count */

static u_char *
ngx_http_chat_status_histogram(u_char *p, u_char *last, const char *name,
    const char *label, ngx_str_t *value, ngx_http_chat_histogram_t *h)
{
    ngx_uint_t              i;
    ngx_atomic_uint_t       total;
    static const uint32_t   bounds[] = { NGX_HTTP_CHAT_BOUNDS };

    total = 0;

    for (i = 0; i < NGX_HTTP_CHAT_BUCKETS; i++) {
        total += h->n[i];

        p = ngx_slprintf(p, last, "%s_bucket{%s=\"%V\",le=\"", name, label,
                         value);

        if (i < NGX_HTTP_CHAT_BUCKETS - 1) {
            p = ngx_http_chat_status_seconds(p, last, bounds[i], 1);

        } else {
            p = ngx_slprintf(p, last, "+Inf");
        }

        p = ngx_slprintf(p, last, "\"} %uA\n", total);
    }

    p = ngx_slprintf(p, last, "%s_sum{%s=\"%V\"} ", name, label, value);
    p = ngx_http_chat_status_seconds(p, last, h->usec, 0);

    return ngx_slprintf(p, last, "\n%s_count{%s=\"%V\"} %uA\n",
                        name, label, value, total);
}


/* microseconds as seconds: "0.00025", "2.5", "10"; trim 0: all 6 digits */

static u_char *
ngx_http_chat_status_seconds(u_char *p, u_char *last, uint64_t usec,
    ngx_uint_t trim)
{
    u_char  *e;
    u_char   frac[NGX_INT_T_LEN];

    e = ngx_sprintf(frac, "%06uL", usec % 1000000);

    if (trim) {
        while (e > frac && e[-1] == '0') {
            e--;
        }

        if (e == frac) {
            return ngx_slprintf(p, last, "%uL", usec / 1000000);
        }
    }

    return ngx_slprintf(p, last, "%uL.%*s", usec / 1000000,
                        (size_t) (e - frac), frac);
}


/* what is known at build time, and the libraries' own words at run time */

static u_char *
ngx_http_chat_status_build(u_char *p, u_char *last)
{
    int          v;
    const char  *ssl;
    u_char       libpq[NGX_INT_T_LEN * 2 + 2];

    v = PQlibVersion();

    /* 10 and later: major * 10000 + minor */
    *ngx_snprintf(libpq, sizeof(libpq) - 1, "%d.%d",
                  v / 10000, v % 10000) = '\0';

    /* "OpenSSL 3.0.11 19 Sep 2023": the second word */
    ssl = OpenSSL_version(OPENSSL_VERSION);
    if (ngx_strncmp(ssl, "OpenSSL ", 8) == 0) {
        ssl += 8;
    }

    p = ngx_http_chat_status_family(p, last, "chat_build_info", "gauge",
            "Always 1; the labels say which versions of the module, "
            "nginx, libpq, jansson and OpenSSL run.");

    p = ngx_slprintf(p, last, "chat_build_info{");
    p = ngx_http_chat_status_version(p, last, "version",
                                     NGX_HTTP_CHAT_VERSION);
    p = ngx_http_chat_status_version(p, last, ",nginx", NGINX_VERSION);
    p = ngx_http_chat_status_version(p, last, ",libpq", (char *) libpq);
#if (JANSSON_VERSION_HEX >= 0x020d00)
    p = ngx_http_chat_status_version(p, last, ",jansson",
                                     jansson_version_str());
#else
    p = ngx_http_chat_status_version(p, last, ",jansson", JANSSON_VERSION);
#endif
    p = ngx_http_chat_status_version(p, last, ",openssl", ssl);

    return ngx_slprintf(p, last, "} 1\n");
}


/* label="version": up to a space, and nothing a label value must escape */

static u_char *
ngx_http_chat_status_version(u_char *p, u_char *last, const char *label,
    const char *version)
{
    u_char  c;

    p = ngx_slprintf(p, last, "%s=\"", label);

    for ( /* void */ ; *version && *version != ' ' && p < last; version++) {
        c = (u_char) *version;
        *p++ = (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) ? '_' : c;
    }

    return ngx_slprintf(p, last, "\"");
}


/*
 * Presence and queues: read under the zone's lock, briefly.  Workers are
 * told apart by slot, a small number that a new worker takes over when a
 * reload retires the old one (a pid would make new series each reload).
 */

static u_char *
ngx_http_chat_status_zone(u_char *p, u_char *last)
{
    size_t                  total, used;
    ngx_uint_t              i, online, full;
    ngx_slab_pool_t        *shpool;
    ngx_http_chat_slot_t   *slot;
    ngx_http_chat_shctx_t  *sh;
    size_t                  queued[NGX_HTTP_CHAT_SLOTS];
    ngx_pid_t               pid[NGX_HTTP_CHAT_SLOTS];
    ngx_atomic_int_t        dropped[NGX_HTTP_CHAT_SLOTS];
    ngx_atomic_int_t        delivered[NGX_HTTP_CHAT_SLOTS];
    uint64_t                contended, wait_ns, held_ns, n;
    uint64_t                held[NGX_HTTP_CHAT_LOCK_BUCKETS];

    static const char      *le[NGX_HTTP_CHAT_LOCK_BUCKETS] = {
        "0.000001", "0.00001", "0.0001", "0.001", "0.01", "+Inf"
    };
    ngx_atomic_int_t        reads[NGX_HTTP_CHAT_SLOTS];
    ngx_pid_t               reader;
    ngx_uint_t              cluster;

    shpool = ngx_http_chat_zone_sh->shpool;
    sh = ngx_http_chat_zone_sh->sh;

    ngx_http_chat_zone_lock();

    online = sh->online;
    full = sh->full;
    total = shpool->end - shpool->start;
    used = total - shpool->pfree * ngx_pagesize;

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        slot = &sh->slots[i];
        pid[i] = slot->pid;
        queued[i] = slot->queued;
        dropped[i] = slot->dropped;
        delivered[i] = slot->delivered;
        reads[i] = slot->cluster_reads;
    }

    contended = sh->lock_contended;
    wait_ns = sh->lock_wait_ns;
    held_ns = sh->lock_held_ns;
    ngx_memcpy(held, sh->lock_held, sizeof(held));

    cluster = sh->cluster_joined != 0;
    reader = sh->cluster_reader;

    ngx_http_chat_zone_unlock();

    p = ngx_slprintf(p, last,
                     "# HELP chat_users_online Users with a connection.\n"
                     "# TYPE chat_users_online gauge\n"
                     "chat_users_online %ui\n"
                     "# HELP chat_zone_size_bytes Size of chat_zone.\n"
                     "# TYPE chat_zone_size_bytes gauge\n"
                     "chat_zone_size_bytes %uz\n"
                     "# HELP chat_zone_used_bytes Pages of chat_zone in use."
                     "\n# TYPE chat_zone_used_bytes gauge\n"
                     "chat_zone_used_bytes %uz\n"
                     "# HELP chat_zone_full_total Allocations chat_zone "
                     "refused.\n# TYPE chat_zone_full_total counter\n"
                     "chat_zone_full_total %ui\n",
                     online, total, used, full);

    /* every worker takes the one lock: how long they hold it and wait */
    p = ngx_slprintf(p, last,
                     "# HELP chat_zone_lock_contended_total Times the zone's "
                     "lock was taken after waiting for another worker.\n"
                     "# TYPE chat_zone_lock_contended_total counter\n"
                     "chat_zone_lock_contended_total %uL\n"
                     "# HELP chat_zone_lock_wait_seconds_total Time workers "
                     "waited for the zone's lock.\n"
                     "# TYPE chat_zone_lock_wait_seconds_total counter\n"
                     "chat_zone_lock_wait_seconds_total %uL.%09uL\n",
                     contended, wait_ns / 1000000000,
                     wait_ns % 1000000000);

    p = ngx_http_chat_status_family(p, last, "chat_zone_lock_held_seconds",
                                    "histogram",
                                    "How long the zone's lock was held each "
                                    "time it was taken.");

    for (i = 0, n = 0; i < NGX_HTTP_CHAT_LOCK_BUCKETS; i++) {
        n += held[i];
        p = ngx_slprintf(p, last,
                         "chat_zone_lock_held_seconds_bucket{le=\"%s\"} "
                         "%uL\n", le[i], n);
    }

    p = ngx_slprintf(p, last,
                     "chat_zone_lock_held_seconds_sum %uL.%09uL\n"
                     "chat_zone_lock_held_seconds_count %uL\n",
                     held_ns / 1000000000, held_ns % 1000000000, n);

    p = ngx_http_chat_status_family(p, last, "chat_queue_bytes", "gauge",
                                    "Bytes waiting for a worker, by worker "
                                    "slot.");

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (pid[i]) {
            p = ngx_slprintf(p, last, "chat_queue_bytes{slot=\"%ui\"} %uz\n",
                             i, queued[i]);
        }
    }

    p = ngx_http_chat_status_family(p, last, "chat_queue_dropped_total",
                                    "counter",
                                    "Events that did not fit a worker's "
                                    "queue, by worker slot.");

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (pid[i]) {
            p = ngx_slprintf(p, last,
                             "chat_queue_dropped_total{slot=\"%ui\"} %A\n",
                             i, dropped[i]);
        }
    }

    p = ngx_http_chat_status_family(p, last, "chat_queue_delivered_total",
                                    "counter",
                                    "Events a worker took from its queue, "
                                    "by worker slot.");

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (pid[i]) {
            p = ngx_slprintf(p, last,
                             "chat_queue_delivered_total{slot=\"%ui\"} %A\n",
                             i, delivered[i]);
        }
    }

    if (!cluster) {
        return p;
    }

    p = ngx_http_chat_status_family(p, last, "chat_cluster_reader", "gauge",
                                    "1 for the worker slot that reads the "
                                    "other nodes' changes for this node.");

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (pid[i]) {
            p = ngx_slprintf(p, last, "chat_cluster_reader{slot=\"%ui\"} %d\n",
                             i, pid[i] == reader);
        }
    }

    p = ngx_http_chat_status_family(p, last, "chat_cluster_reads_total",
                                    "counter",
                                    "Reads of other nodes' changes from "
                                    "PostgreSQL, by worker slot.");

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (pid[i]) {
            p = ngx_slprintf(p, last,
                             "chat_cluster_reads_total{slot=\"%ui\"} %A\n",
                             i, reads[i]);
        }
    }

    return p;
}


void
ngx_http_chat_status_event(json_t *event)
{
    size_t                      len;
    ngx_uint_t                  i;
    const char                 *type;
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    if (cmcf->stats == NULL) {
        return;
    }

    type = json_string_value(json_object_get(event, "type"));
    len = type ? ngx_strlen(type) : 0;

    for (i = 0; i < NGX_HTTP_CHAT_EVENT_TYPES - 1; i++) {
        if (ngx_http_chat_event_names[i].len == len
            && ngx_strncmp(ngx_http_chat_event_names[i].data, type, len) == 0)
        {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&cmcf->stats->events_out[i], 1);
}


static ngx_atomic_int_t
ngx_http_chat_status_gauge(ngx_uint_t connections)
{
    ngx_uint_t             i;
    ngx_atomic_int_t       sum;
    ngx_http_chat_slot_t  *slot;

    sum = 0;

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        slot = &ngx_http_chat_zone_sh->sh->slots[i];

        if (slot->pid != 0) {
            sum += connections ? slot->connections : slot->pg_ready;
        }
    }

    return sum;
}
