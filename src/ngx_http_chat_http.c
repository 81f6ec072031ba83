
/*
 * JSON answers to plain HTTP requests: the REST routes, the status and
 * token endpoints, and refused WebSocket handshakes all answer this way.
 */


#include <ngx_http_chat.h>


static void ngx_http_chat_origin_port(ngx_str_t *origin);
static void ngx_http_chat_host_port(ngx_str_t *host, ngx_uint_t https);


ngx_int_t
ngx_http_chat_http_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *body)
{
    size_t        size;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    size = json_dumpb(body, NULL, 0, JSON_COMPACT);

    b = ngx_create_temp_buf(r->pool, size + 1);
    if (b == NULL || size == 0) {
        json_decref(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last += json_dumpb(body, (char *) b->pos, size, JSON_COMPACT);
    *b->last++ = '\n';

    json_decref(body);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The body of a request answered without it: read and dropped, so that
 * the connection goes on; but a client that waits for "100 Continue"
 * (curl does for a large upload) is not invited to send a body only to
 * have it thrown away: the connection closes after the answer instead,
 * as for nginx's own 413.  Returns what ngx_http_discard_request_body
 * does.
 */

ngx_int_t
ngx_http_chat_http_drop_body(ngx_http_request_t *r)
{
    if (r->headers_in.expect != NULL && !r->expect_tested
#if (NGX_HTTP_V2)
        && r->stream == NULL
#endif
        && (r->headers_in.content_length_n > 0 || r->headers_in.chunked))
    {
        r->expect_tested = 1;
        r->keepalive = 0;
        r->lingering_close = 1;
        return NGX_OK;
    }

    return ngx_http_discard_request_body(r);
}


ngx_int_t
ngx_http_chat_http_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    json_t  *body;

    body = json_pack("{s:{s:s, s:s}}", "error", "code", code,
                     "message", message);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* an error page configured for the status must not replace the JSON */
    r->err_status = 0;

    return ngx_http_chat_http_send_json(r, status, body);
}


/*
 * An error to retry later (429 rate_limited): Retry-After in whole seconds,
 * rounded up, and the wait in milliseconds in the body as the WebSocket's
 * error has it.  No wait: the plain error.
 */

ngx_int_t
ngx_http_chat_http_send_retry(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, ngx_msec_t wait)
{
    u_char  *p;
    json_t  *body;

    if (wait == 0) {
        return ngx_http_chat_http_send_error(r, status, code, message);
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_sprintf(p, "%M", (wait + 999) / 1000) = '\0';

    if (ngx_http_chat_http_add_header(r, "Retry-After", (char *) p)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = json_pack("{s:{s:s, s:s, s:I}}", "error", "code", code,
                     "message", message, "retry_after_ms", (json_int_t) wait);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->err_status = 0;

    return ngx_http_chat_http_send_json(r, status, body);
}


u_char *
ngx_http_chat_http_time(u_char *buf, time_t sec, ngx_msec_t msec)
{
    ngx_tm_t  tm;

    ngx_gmtime(sec, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       msec % 1000);
}


/* {"id", "name", "avatar"} of a user; name falls back to the id */

json_t *
ngx_http_chat_http_user_json(ngx_http_chat_identity_t *id)
{
    ngx_str_t  *name;
    json_t     *user;

    name = id->name.len ? &id->name : &id->id;

    user = json_pack("{s:s%, s:s%}", "id", id->id.data, id->id.len,
                     "name", name->data, name->len);
    if (user == NULL) {
        return NULL;
    }

    if (id->avatar.len
        && json_object_set_new(user, "avatar",
                               json_stringn((char *) id->avatar.data,
                                            id->avatar.len))
           != 0)
    {
        json_decref(user);
        return NULL;
    }

    return user;
}


ngx_int_t
ngx_http_chat_http_add_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * PostgreSQL's jsonb orders keys by length: an event read from it gets its
 * "type" first again, for whoever reads frames.  Returns a new reference.
 */

json_t *
ngx_http_chat_http_event_json(json_t *event)
{
    json_t  *ordered;

    ordered = json_pack("{s:O}", "type", json_object_get(event, "type"));

    if (ordered == NULL || json_object_update_missing(ordered, event) != 0) {
        json_decref(ordered);
        return NULL;
    }

    return ordered;
}


/* the first request header called name, and how many there are */

ngx_table_elt_t *
ngx_http_chat_http_header(ngx_http_request_t *r, const char *name,
    ngx_uint_t *n)
{
    size_t            len;
    ngx_uint_t        i, count;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *first;

    len = ngx_strlen(name);
    count = 0;
    first = NULL;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            if (first == NULL) {
                first = &h[i];
            }

            count++;
        }
    }

    if (n != NULL) {
        *n = count;
    }

    return first;
}


/*
 * An Origin against a list (chat_allowed_origins, chat_cors_origins):
 * "*" or the same scheme, host and port; without a list, the same origin
 * as the request itself: its scheme (https on a TLS connection, else
 * http) and its Host.  A scheme's default port may be written or not.
 */

ngx_int_t
ngx_http_chat_http_origin_allowed(ngx_http_request_t *r, ngx_array_t *list,
    ngx_str_t *origin)
{
    size_t       n;
    ngx_str_t    o, a, h, *allowed;
    ngx_uint_t   i, https;

    /* browsers always send Origin; other clients need not */

    if (origin == NULL) {
        return NGX_OK;
    }

    o = *origin;
    ngx_http_chat_origin_port(&o);

    if (list != NULL) {
        allowed = list->elts;

        for (i = 0; i < list->nelts; i++) {

            if (allowed[i].len == 1 && allowed[i].data[0] == '*') {
                return NGX_OK;
            }

            a = allowed[i];
            ngx_http_chat_origin_port(&a);

            if (a.len == o.len
                && ngx_strncasecmp(a.data, o.data, o.len) == 0)
            {
                return NGX_OK;
            }
        }

        return NGX_DECLINED;
    }

    /*
     * No list: the page must come from this very origin.  Host is the
     * client's word (DNS rebinding passes it); docs/directives.md says so.
     */

    if (r->headers_in.host == NULL) {
        return NGX_DECLINED;
    }

    https = 0;

#if (NGX_SSL)
    https = (r->connection->ssl != NULL);
#endif

    n = https ? sizeof("https://") - 1 : sizeof("http://") - 1;

    if (o.len <= n
        || ngx_strncasecmp(o.data, (u_char *) (https ? "https://" : "http://"),
                           n)
           != 0)
    {
        return NGX_DECLINED;
    }

    o.data += n;
    o.len -= n;

    h = r->headers_in.host->value;
    ngx_http_chat_host_port(&h, https);

    if (o.len == h.len && ngx_strncasecmp(o.data, h.data, h.len) == 0) {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* "https://a.example:443" is "https://a.example", and http's 80 too */

static void
ngx_http_chat_origin_port(ngx_str_t *origin)
{
    ngx_str_t  host;

    if (origin->len > sizeof("https://") - 1
        && ngx_strncasecmp(origin->data, (u_char *) "https://",
                           sizeof("https://") - 1) == 0)
    {
        host.data = origin->data + sizeof("https://") - 1;
        host.len = origin->len - (sizeof("https://") - 1);
        ngx_http_chat_host_port(&host, 1);

    } else if (origin->len > sizeof("http://") - 1
               && ngx_strncasecmp(origin->data, (u_char *) "http://",
                                  sizeof("http://") - 1) == 0)
    {
        host.data = origin->data + sizeof("http://") - 1;
        host.len = origin->len - (sizeof("http://") - 1);
        ngx_http_chat_host_port(&host, 0);

    } else {
        return;
    }

    origin->len = host.data + host.len - origin->data;
}


static void
ngx_http_chat_host_port(ngx_str_t *host, ngx_uint_t https)
{
    size_t       n;
    const char  *port;

    port = https ? ":443" : ":80";
    n = https ? sizeof(":443") - 1 : sizeof(":80") - 1;

    if (host->len > n
        && ngx_strncmp(host->data + host->len - n, port, n) == 0)
    {
        host->len -= n;
    }
}
