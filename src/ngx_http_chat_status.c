
/*
 * chat_status: counters in Prometheus text format.  They live in a small
 * shared memory segment so that every worker adds to the same numbers and
 * a reload keeps them.
 */


#include <ngx_http_chat.h>


static ngx_int_t ngx_http_chat_status_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


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

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (m = ngx_http_chat_metrics; m->name; m++) {
        value = *(ngx_atomic_t *) ((u_char *) cmcf->stats + m->offset);

        b->last = ngx_sprintf(b->last, "# HELP %s %s\n# TYPE %s %s\n%s %A\n",
                              m->name, m->help, m->name, m->type, m->name,
                              value);
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
