
/*
 * The WebSocket opening handshake (RFC 6455, section 4.2): the request is
 * checked and the user authenticated before anything is upgraded; every
 * refusal is an HTTP answer with a JSON body.
 */


#include <ngx_http_chat.h>

#include <openssl/evp.h>


#define NGX_HTTP_CHAT_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define NGX_HTTP_CHAT_UPGRADE_REQUIRED  426


typedef struct {
    ngx_table_elt_t  *key;
    ngx_table_elt_t  *version;
    ngx_table_elt_t  *origin;
    ngx_uint_t        keys;
    ngx_uint_t        versions;
    ngx_uint_t        origins;
    unsigned          upgrade:1;
    unsigned          connection_upgrade:1;
    unsigned          subprotocol:1;
} ngx_http_chat_handshake_t;


static void ngx_http_chat_handshake_headers(ngx_http_request_t *r,
    ngx_http_chat_handshake_t *hs);
static ngx_int_t ngx_http_chat_has_token(ngx_str_t *list, const char *token,
    size_t len, ngx_uint_t caseless);
static ngx_int_t ngx_http_chat_key_valid(ngx_str_t *key);
static ngx_int_t ngx_http_chat_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
static ngx_http_chat_buf_t *ngx_http_chat_upgrade_response(
    ngx_http_request_t *r, ngx_str_t *key, ngx_uint_t subprotocol);
static void ngx_http_chat_handshake_abort(void *data);


ngx_int_t
ngx_http_chat_handshake_handler(ngx_http_request_t *r)
{
    const char                 *err;
    ngx_int_t                   rc;
    ngx_connection_t           *c;
    ngx_pool_cleanup_t         *cln;
    ngx_http_chat_ctx_t        *ctx;
    ngx_http_chat_conn_t       *wc;
    ngx_http_chat_loc_conf_t   *ccf;
    ngx_http_chat_handshake_t   hs;

    c = r->connection;
    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    c->log->action = "checking the WebSocket handshake";

    if (r != r->main) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_exiting || ngx_terminate) {
        return ngx_http_chat_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "unavailable",
                                    "the server is shutting down");
    }

    if (r->method != NGX_HTTP_GET) {
        return ngx_http_chat_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "a WebSocket handshake is a GET request");
    }

    if (r->http_version != NGX_HTTP_VERSION_11) {
        return ngx_http_chat_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "a WebSocket handshake needs HTTP/1.1");
    }

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        return ngx_http_chat_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "a WebSocket handshake has no body");
    }

    ngx_http_chat_handshake_headers(r, &hs);

    if (!hs.upgrade) {
        return ngx_http_chat_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "Upgrade: websocket is missing");
    }

    if (!hs.connection_upgrade) {
        return ngx_http_chat_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "Connection: upgrade is missing");
    }

    if (hs.versions != 1
        || hs.version->value.len != 2
        || ngx_strncmp(hs.version->value.data, "13", 2) != 0)
    {
        if (ngx_http_chat_http_add_header(r, "Sec-WebSocket-Version", "13")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* nginx knows no reason phrase for 426 */
        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");

        return ngx_http_chat_refuse(r, NGX_HTTP_CHAT_UPGRADE_REQUIRED,
                                    "bad_request",
                                    "Sec-WebSocket-Version must be 13");
    }

    if (hs.keys != 1 || ngx_http_chat_key_valid(&hs.key->value) != NGX_OK) {
        return ngx_http_chat_refuse(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                    "Sec-WebSocket-Key must be the base64 "
                                    "of 16 bytes");
    }

    if (hs.origins > 1
        || ngx_http_chat_http_origin_allowed(r, ccf->allowed_origins,
                                        hs.origin ? &hs.origin->value : NULL)
           != NGX_OK)
    {
        return ngx_http_chat_refuse(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                    "origin not allowed");
    }

    /* who is asking, before anything is upgraded */

    c->log->action = "authenticating the WebSocket handshake";

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_chat_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_chat_module);

    rc = ngx_http_chat_auth_request(r, ccf, r->pool, &ctx->id, &err);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "chat: handshake refused: %s", err);

        if (ngx_http_chat_http_add_header(r, "WWW-Authenticate", "Bearer")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_chat_http_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                        "unauthorized", err);
    }

    /*
     * Counted before the upgrade, so that a full zone or a user over the
     * connection limit still gets an HTTP answer.
     */

    rc = ngx_http_chat_presence_add(ccf, &ctx->id);

    if (rc == NGX_DECLINED) {
        return ngx_http_chat_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "unavailable",
                                    "the server is full, retry later");
    }

    if (rc == NGX_BUSY) {
        if (ngx_http_chat_http_add_header(r, "Retry-After", "10") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_chat_refuse(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                    "rate_limited",
                                    "too many connections for this user");
    }

    /* what outlives the request goes to the connection's pool, only now */

    wc = ngx_pcalloc(c->pool, sizeof(ngx_http_chat_conn_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (wc == NULL || cln == NULL
        || ngx_http_chat_auth_identity_copy(c->pool, &wc->id, &ctx->id)
           != NGX_OK)
    {
        if (rc == NGX_OK) {
            ngx_http_chat_presence_undo(&ctx->id);
        }

        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wc->present = (rc == NGX_OK);

    /* until ngx_http_chat_ws_start() takes over, the request owns wc */
    cln->handler = ngx_http_chat_handshake_abort;
    cln->data = wc;

    wc->connection = c;
    wc->conf = ccf;
    wc->out_last = &wc->out;

    wc->parser.max_message = ccf->max_message_size;
    wc->parser.max_fragments = ccf->max_fragments;

    /* what runs on the connection; echo takes binary messages too */

    if (ccf->mode == NGX_HTTP_CHAT_MODE_ECHO) {
        wc->handler = &ngx_http_chat_echo_handler;
        wc->parser.text_only = 0;

    } else {
        wc->handler = &ngx_http_chat_session_handler;
        wc->parser.text_only = 1;
    }

    wc->upgrade = ngx_http_chat_upgrade_response(r, &hs.key->value,
                                                 hs.subprotocol);
    if (wc->upgrade == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->wc = wc;

    /*
     * The upgrade completes in a posted event, once the HTTP request has
     * been finalized down to this extra reference: only then may it be
     * freed, which is what keeps an idle WebSocket small.
     */

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->keepalive = 0;
    r->main->count++;

    c->write->handler = ngx_http_chat_ws_start;
    ngx_post_event(c->write, &ngx_posted_events);

    return NGX_DONE;
}


static void
ngx_http_chat_handshake_headers(ngx_http_request_t *r,
    ngx_http_chat_handshake_t *hs)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_memzero(hs, sizeof(ngx_http_chat_handshake_t));

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        /* nginx 1.22 keeps neither header: each line is looked at here */

        if (h[i].key.len == sizeof("Upgrade") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Upgrade",
                               h[i].key.len) == 0)
        {
            if (ngx_http_chat_has_token(&h[i].value, "websocket", 9, 1)
                == NGX_OK)
            {
                hs->upgrade = 1;
            }

        } else if (h[i].key.len == sizeof("Connection") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Connection",
                                      h[i].key.len) == 0)
        {
            if (ngx_http_chat_has_token(&h[i].value, "upgrade", 7, 1)
                == NGX_OK)
            {
                hs->connection_upgrade = 1;
            }

        } else if (h[i].key.len == sizeof("Sec-WebSocket-Key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Sec-WebSocket-Key",
                               h[i].key.len) == 0)
        {
            hs->key = &h[i];
            hs->keys++;

        } else if (h[i].key.len == sizeof("Sec-WebSocket-Version") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "Sec-WebSocket-Version",
                                      h[i].key.len) == 0)
        {
            hs->version = &h[i];
            hs->versions++;

        } else if (h[i].key.len == sizeof("Sec-WebSocket-Protocol") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "Sec-WebSocket-Protocol",
                                      h[i].key.len) == 0)
        {
            /* subprotocol names are case-sensitive tokens (RFC 6455 4.1) */

            if (ngx_http_chat_has_token(&h[i].value,
                                        NGX_HTTP_CHAT_SUBPROTOCOL,
                                        sizeof(NGX_HTTP_CHAT_SUBPROTOCOL) - 1,
                                        0)
                == NGX_OK)
            {
                hs->subprotocol = 1;
            }

        } else if (h[i].key.len == sizeof("Origin") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Origin",
                                      h[i].key.len) == 0)
        {
            hs->origin = &h[i];
            hs->origins++;
        }
    }
}


/* whether a comma-separated header value holds the token */

static ngx_int_t
ngx_http_chat_has_token(ngx_str_t *list, const char *token, size_t len,
    ngx_uint_t caseless)
{
    u_char  *p, *last, *start, *end;

    p = list->data;
    last = p + list->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        if ((size_t) (end - start) == len
            && (caseless ? ngx_strncasecmp(start, (u_char *) token, len)
                         : ngx_strncmp(start, token, len)) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_chat_key_valid(ngx_str_t *key)
{
    u_char     buf[18];
    ngx_str_t  decoded;

    /* 16 bytes are 24 base64 characters, the last two of them "==" */

    if (key->len != 24 || key->data[22] != '=' || key->data[23] != '=') {
        return NGX_DECLINED;
    }

    decoded.data = buf;

    if (ngx_decode_base64(&decoded, key) != NGX_OK || decoded.len != 16) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    ngx_http_chat_stat(cmcf, handshake_failures, 1);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "chat: handshake refused: %s", message);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    return ngx_http_chat_http_send_error(r, status, code, message);
}


static ngx_http_chat_buf_t *
ngx_http_chat_upgrade_response(ngx_http_request_t *r, ngx_str_t *key,
    ngx_uint_t subprotocol)
{
    u_char               *p;
    unsigned int          n;
    ngx_str_t             digest, accept;
    ngx_http_chat_buf_t  *buf;
    u_char                hash[EVP_MAX_MD_SIZE];
    u_char                encoded[32];
    u_char                text[24 + sizeof(NGX_HTTP_CHAT_WS_GUID) - 1];

    /* the key was checked to be 24 characters long */

    p = ngx_cpymem(text, key->data, 24);
    ngx_memcpy(p, NGX_HTTP_CHAT_WS_GUID, sizeof(NGX_HTTP_CHAT_WS_GUID) - 1);

    if (EVP_Digest(text, sizeof(text), hash, &n, EVP_sha1(), NULL) != 1) {
        return NULL;
    }

    digest.data = hash;
    digest.len = n;
    accept.data = encoded;

    ngx_encode_base64(&accept, &digest);

    buf = ngx_http_chat_ws_buf_alloc(256, r->connection->log);
    if (buf == NULL) {
        return NULL;
    }

    p = ngx_sprintf(buf->data,
                    "HTTP/1.1 101 Switching Protocols\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %V\r\n", &accept);

    if (subprotocol) {
        p = ngx_cpymem(p, "Sec-WebSocket-Protocol: "
                       NGX_HTTP_CHAT_SUBPROTOCOL "\r\n",
                       sizeof("Sec-WebSocket-Protocol: "
                              NGX_HTTP_CHAT_SUBPROTOCOL "\r\n") - 1);
    }

    *p++ = '\r';
    *p++ = '\n';

    buf->len = p - buf->data;

    return buf;
}


/* the request ends before the upgrade did: undo what the handshake did */

static void
ngx_http_chat_handshake_abort(void *data)
{
    ngx_http_chat_conn_t  *wc = data;

    if (wc->started) {
        return;
    }

    ngx_http_chat_presence_remove(wc);

    if (wc->upgrade != NULL) {
        ngx_http_chat_ws_buf_release(wc->upgrade);
        wc->upgrade = NULL;
    }
}
