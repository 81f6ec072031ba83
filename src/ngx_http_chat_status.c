
/*
 * chat_status: counters in Prometheus text format.  They live in a small
 * shared memory segment so that every worker adds to the same numbers and
 * a reload keeps them.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_zone.h>


static ngx_int_t ngx_http_chat_status_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static u_char *ngx_http_chat_status_zone(u_char *p);
static ngx_atomic_int_t ngx_http_chat_status_gauge(ngx_uint_t connections);


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
    ngx_null_string,
    ngx_string("other")
};


typedef struct {
    const char   *name;
    const char   *type;
    const char   *help;
    size_t        offset;
} ngx_http_chat_metric_t;


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
    ngx_http_chat_metric("chat_auth_failures_total", "counter",
                         auth_failures, "Requests refused as unauthorized."),
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
    ngx_http_chat_metric("chat_closes_protocol_total", "counter",
                         closes_protocol,
                         "Connections failed for a protocol violation."),
    ngx_http_chat_metric("chat_closes_limit_total", "counter", closes_limit,
                         "Connections closed for exceeding a size limit."),
    ngx_http_chat_metric("chat_closes_timeout_total", "counter",
                         closes_timeout,
                         "Connections closed as dead or idle."),
    ngx_http_chat_metric("chat_closes_token_expired_total", "counter",
                         closes_token,
                         "Connections closed because the token expired."),
    ngx_http_chat_metric("chat_closes_shutdown_total", "counter",
                         closes_shutdown,
                         "Connections closed by a reload or shutdown."),
    ngx_http_chat_metric("chat_dev_tokens_minted_total", "counter",
                         tokens_minted, "Development tokens minted."),
    ngx_http_chat_metric("chat_closes_slow_total", "counter", closes_slow,
                         "Connections closed with 1013 for not reading."),
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


ngx_int_t
ngx_http_chat_status_init_conf(ngx_conf_t *cf, ngx_http_chat_main_conf_t *cmcf)
{
    ngx_str_t  name = ngx_string("chat_status");

    if (cmcf->stats_zone != NULL) {
        return NGX_OK;
    }

    cmcf->stats_zone = ngx_shared_memory_add(cf, &name,
                                             8 * ngx_pagesize,
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
    ngx_http_chat_main_conf_t  *ocmcf = data;

    ngx_slab_pool_t            *shpool;
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = shm_zone->data;

    /* a reload keeps the segment, and the counts in it */

    if (ocmcf != NULL) {
        cmcf->stats = ocmcf->stats;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cmcf->stats = shpool->data;
        return NGX_OK;
    }

    cmcf->stats = ngx_slab_calloc(shpool, sizeof(ngx_http_chat_stats_t));
    if (cmcf->stats == NULL) {
        return NGX_ERROR;
    }

    shpool->data = cmcf->stats;

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_status_handler(ngx_http_request_t *r)
{
    size_t                      size;
    ngx_int_t                   rc;
    ngx_str_t                  *name;
    ngx_uint_t                  i;
    ngx_buf_t                  *b;
    ngx_chain_t                 out;
    ngx_atomic_int_t            value;
    ngx_http_chat_metric_t     *m;
    ngx_http_chat_main_conf_t  *cmcf;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    size = 0;

    for (m = ngx_http_chat_metrics; m->name; m++) {
        size += sizeof("# HELP  \n# TYPE  \n \n") - 1
                + 2 * ngx_strlen(m->name) + ngx_strlen(m->help)
                + ngx_strlen(m->type) + ngx_strlen(m->name) + NGX_ATOMIC_T_LEN;
    }

    /* the labelled families and the zone's figures */
    size += 256 + (NGX_HTTP_CHAT_EVENT_TYPES + NGX_HTTP_CHAT_REQUEST_TYPES)
                  * (64 + NGX_ATOMIC_T_LEN)
            + 512 + NGX_HTTP_CHAT_SLOTS * (128 + 3 * NGX_ATOMIC_T_LEN);

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (m = ngx_http_chat_metrics; m->name; m++) {
        value = *(ngx_atomic_t *) ((u_char *) cmcf->stats + m->offset);

        /* with a zone, the gauges are the live workers' slots, summed */

        if (ngx_http_chat_zone != NULL
            && (m->offset == offsetof(ngx_http_chat_stats_t, connections)
                || m->offset == offsetof(ngx_http_chat_stats_t, pg_ready)))
        {
            value = ngx_http_chat_status_gauge(
                        m->offset == offsetof(ngx_http_chat_stats_t,
                                              connections));
        }

        b->last = ngx_sprintf(b->last, "# HELP %s %s\n# TYPE %s %s\n%s %A\n",
                              m->name, m->help, m->name, m->type, m->name,
                              value);
    }

    b->last = ngx_cpymem(b->last,
                    "# HELP chat_requests_total Requests received, by type.\n"
                    "# TYPE chat_requests_total counter\n",
                    sizeof("# HELP chat_requests_total Requests received, "
                           "by type.\n"
                           "# TYPE chat_requests_total counter\n") - 1);

    for (i = 0; (name = ngx_http_chat_request_type_name(i)) != NULL; i++) {
        b->last = ngx_sprintf(b->last,
                              "chat_requests_total{type=\"%V\"} %A\n", name,
                              (ngx_atomic_int_t) cmcf->stats->requests[i]);
    }

    b->last = ngx_cpymem(b->last,
                    "# HELP chat_events_total Events routed, by type.\n"
                    "# TYPE chat_events_total counter\n",
                    sizeof("# HELP chat_events_total Events routed, "
                           "by type.\n"
                           "# TYPE chat_events_total counter\n") - 1);

    for (i = 0; i < NGX_HTTP_CHAT_EVENT_TYPES; i++) {
        if (ngx_http_chat_event_names[i].len) {
            b->last = ngx_sprintf(b->last,
                                  "chat_events_total{type=\"%V\"} %A\n",
                                  &ngx_http_chat_event_names[i],
                                  (ngx_atomic_int_t)
                                      cmcf->stats->events_out[i]);
        }
    }

    if (ngx_http_chat_zone != NULL) {
        b->last = ngx_http_chat_status_zone(b->last);
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


/* presence and queues: read under the zone's lock, briefly */

static u_char *
ngx_http_chat_status_zone(u_char *p)
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

    shpool = ngx_http_chat_zone->shpool;
    sh = ngx_http_chat_zone->sh;

    ngx_shmtx_lock(&shpool->mutex);

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
    }

    ngx_shmtx_unlock(&shpool->mutex);

    p = ngx_sprintf(p, "# HELP chat_users_online Users with a connection.\n"
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

    p = ngx_sprintf(p, "# HELP chat_queue_bytes Bytes waiting for a worker."
                       "\n# TYPE chat_queue_bytes gauge\n");

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (pid[i]) {
            p = ngx_sprintf(p, "chat_queue_bytes{slot=\"%ui\",pid=\"%P\"} "
                               "%uz\n", i, pid[i], queued[i]);
        }
    }

    p = ngx_sprintf(p, "# HELP chat_queue_dropped_total Events that did not "
                       "fit a worker's queue.\n"
                       "# TYPE chat_queue_dropped_total counter\n");

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (pid[i]) {
            p = ngx_sprintf(p, "chat_queue_dropped_total{slot=\"%ui\"} %A\n",
                            i, dropped[i]);
        }
    }

    p = ngx_sprintf(p, "# HELP chat_queue_delivered_total Events a worker "
                       "took from its queue.\n"
                       "# TYPE chat_queue_delivered_total counter\n");

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (pid[i]) {
            p = ngx_sprintf(p, "chat_queue_delivered_total{slot=\"%ui\"} "
                               "%A\n", i, delivered[i]);
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
        slot = &ngx_http_chat_zone->sh->slots[i];

        if (slot->pid != 0) {
            sum += connections ? slot->connections : slot->pg_ready;
        }
    }

    return sum;
}
