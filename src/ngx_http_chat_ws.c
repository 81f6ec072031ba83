
/*
 * A WebSocket connection after the upgrade: reading and parsing frames,
 * the out queue, the heartbeat, the close handshake and shutdown.
 *
 * The HTTP request is freed as soon as the 101 is queued, so an idle
 * connection costs its ngx_connection_t, its small pool and this state.
 * Reads go through one buffer per worker: the parser keeps partial frame
 * state itself, so no bytes are ever left in the buffer between reads.
 *
 * What the messages mean is the handler's (wc->handler, set by the
 * handshake: the chat session or the echo endpoint): this file names no
 * level above it.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_zone.h>


#define NGX_HTTP_CHAT_READ_SIZE   65536
#define NGX_HTTP_CHAT_CHAIN_MAX   64
#define NGX_HTTP_CHAT_FREE_OUT    1024


static void ngx_http_chat_ws_read_handler(ngx_event_t *rev);
static void ngx_http_chat_ws_write_handler(ngx_event_t *wev);
static void ngx_http_chat_ws_read(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_ws_process(ngx_http_chat_conn_t *wc, u_char *pos,
    u_char *last);
static ngx_int_t ngx_http_chat_ws_append(ngx_http_chat_conn_t *wc,
    u_char *data, size_t len);
static void ngx_http_chat_ws_message(ngx_http_chat_conn_t *wc);
static ngx_int_t ngx_http_chat_ws_control(ngx_http_chat_conn_t *wc,
    unsigned opcode, u_char *data, size_t len);
static void ngx_http_chat_ws_fail(ngx_http_chat_conn_t *wc, unsigned code,
    const char *reason);
static ngx_int_t ngx_http_chat_ws_flush(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_ws_sent(ngx_http_chat_conn_t *wc, size_t n);
static void ngx_http_chat_ws_linger(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_ws_timer(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_ws_arm(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_ws_shutdown(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_ws_finalize(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_ws_closed(ngx_event_t *ev);
static ngx_http_chat_out_t *ngx_http_chat_out_alloc(ngx_log_t *log);
static void ngx_http_chat_out_free(ngx_http_chat_out_t *out);


/* per worker process: never shared, so a reload cannot break them */
static u_char               *ngx_http_chat_read_buf;
static ngx_http_chat_out_t  *ngx_http_chat_free_outs;
static ngx_uint_t            ngx_http_chat_nfree_outs;


/* one read buffer per worker: a connection keeps only what it must */

ngx_int_t
ngx_http_chat_ws_init_process(ngx_cycle_t *cycle)
{
    ngx_http_chat_read_buf = ngx_alloc(NGX_HTTP_CHAT_READ_SIZE, cycle->log);

    return ngx_http_chat_read_buf ? NGX_OK : NGX_ERROR;
}


void
ngx_http_chat_ws_start(ngx_event_t *wev)
{
    size_t                      len;
    ngx_buf_t                  *b;
    ngx_chain_t                *cl;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_chat_ctx_t        *ctx;
    ngx_http_chat_conn_t       *wc;
    ngx_http_connection_t      *hc;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_chat_main_conf_t  *cmcf;

    c = wev->data;

    if (wev->posted) {
        ngx_delete_posted_event(wev);
    }

    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_chat_module);
    wc = ctx->wc;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    /* bytes the client sent right after its request headers */

    b = r->header_in;

    if (b != NULL && b->pos < b->last) {
        len = b->last - b->pos;

        wc->early = ngx_alloc(len, c->log);
        if (wc->early == NULL) {
            /* the request's cleanup undoes the handshake */
            ngx_http_free_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            ngx_http_close_connection(c);
            return;
        }

        ngx_memcpy(wc->early, b->pos, len);
        wc->early_len = len;
    }

    if (clcf->tcp_nodelay) {
        (void) ngx_tcp_nodelay(c);
    }

    /* from here on the connection owns wc: the request's cleanup is void */
    wc->started = 1;

    /* the access log line is written here, with status 101 */

    hc = r->http_connection;

    ngx_http_free_request(r, 0);

    c->destroyed = 0;
    c->data = wc;

    /* release what the HTTP request held in the connection pool */

    for (cl = hc->free; cl; cl = cl->next) {
        ngx_pfree(c->pool, cl->buf->start);
    }

    for (cl = hc->busy; cl; cl = cl->next) {
        ngx_pfree(c->pool, cl->buf->start);
    }

    hc->free = NULL;
    hc->busy = NULL;
    hc->nbusy = 0;

    if (c->buffer != NULL) {
        ngx_pfree(c->pool, c->buffer->start);
        c->buffer = NULL;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = ngx_http_chat_ws_read_handler;
    c->write->handler = ngx_http_chat_ws_write_handler;
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    /* a graceful shutdown closes idle connections: that is every one */
    c->idle = 1;

    c->log->action = wc->handler->action;

    wc->last_data = ngx_current_msec;

    ngx_http_chat_stat(cmcf, upgrades, 1);
    ngx_http_chat_zone_gauge(connections, 1);

    /* the 101 leaves first, then whatever the handler says */

    if (ngx_http_chat_ws_send_buf(wc, 0, wc->upgrade) != NGX_OK) {
        wc->upgrade = NULL;
        ngx_http_chat_ws_finalize(wc);
        return;
    }

    wc->upgrade = NULL;

    if (wc->handler->start(wc) != NGX_OK) {
        ngx_http_chat_ws_finalize(wc);
        return;
    }

    if (wc->early) {
        ngx_http_chat_ws_process(wc, wc->early, wc->early + wc->early_len);
        ngx_free(wc->early);
        wc->early = NULL;
    }

    ngx_http_chat_ws_arm(wc);

    if (ngx_exiting) {
        ngx_http_chat_ws_shutdown(wc);
        return;
    }

    if (ngx_http_chat_ws_flush(wc) == NGX_ERROR) {
        ngx_http_chat_ws_finalize(wc);
        return;
    }

    if (!wc->finalized) {
        ngx_http_chat_ws_read(wc);
    }
}


static void
ngx_http_chat_ws_read_handler(ngx_event_t *rev)
{
    ngx_connection_t      *c;
    ngx_http_chat_conn_t  *wc;

    c = rev->data;
    wc = c->data;

    if (c->close) {
        ngx_http_chat_ws_shutdown(wc);
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;
        ngx_http_chat_ws_timer(wc);
        return;
    }

    ngx_http_chat_ws_read(wc);
}


static void
ngx_http_chat_ws_write_handler(ngx_event_t *wev)
{
    ngx_connection_t      *c;
    ngx_http_chat_conn_t  *wc;

    c = wev->data;
    wc = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "chat: client timed out reading what was sent");
        c->timedout = 1;
        ngx_http_chat_ws_finalize(wc);
        return;
    }

    if (ngx_http_chat_ws_flush(wc) == NGX_ERROR) {
        ngx_http_chat_ws_finalize(wc);
    }
}


static void
ngx_http_chat_ws_read(ngx_http_chat_conn_t *wc)
{
    u_char                     *saved;
    ssize_t                     n;
    ngx_event_t                *rev;
    ngx_connection_t           *c;
    ngx_http_chat_main_conf_t  *cmcf;

    c = wc->connection;
    rev = c->read;
    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    if (wc->saved != NULL) {
        saved = wc->saved;
        wc->saved = NULL;

        ngx_http_chat_ws_process(wc, saved, saved + wc->saved_len);
        ngx_free(saved);

        if (wc->finalized || wc->saved != NULL) {
            return;
        }
    }

    while (rev->ready) {

        /*
         * A client that sends faster than it reads its answers is not
         * read until the out queue drains: TCP flow control does the rest.
         */

        if (!wc->lingering
            && (wc->out_bytes >= wc->conf->send_buffer
                || wc->nops >= NGX_HTTP_CHAT_MAX_OPS))
        {
            wc->read_blocked = 1;
            return;
        }

        n = c->recv(c, ngx_http_chat_read_buf, NGX_HTTP_CHAT_READ_SIZE);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "chat: client closed the connection");
            ngx_http_chat_ws_finalize(wc);
            return;
        }

        ngx_http_chat_stat(cmcf, bytes_in, n);

        wc->ping_sent = 0;

        if (wc->lingering) {
            continue;
        }

        ngx_http_chat_ws_process(wc, ngx_http_chat_read_buf,
                                 ngx_http_chat_read_buf + n);

        if (wc->finalized) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_chat_ws_finalize(wc);
    }
}


static void
ngx_http_chat_ws_process(ngx_http_chat_conn_t *wc, u_char *pos,
    u_char *last)
{
    u_char                        *data;
    size_t                         len;
    ngx_http_chat_main_conf_t     *cmcf;
    ngx_http_chat_frame_parser_t  *p;

    p = &wc->parser;
    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    while (!wc->discard && !wc->finalized) {

        /*
         * A read holds many requests: once enough wait for storage, or
         * the replies fill the send buffer, the rest waits unparsed (one
         * read at most) and the socket is not read until they drain.
         */

        if ((wc->nops >= NGX_HTTP_CHAT_MAX_OPS
             || (wc->out_bytes >= wc->conf->send_buffer && !wc->close_sent))
            && pos < last && wc->handler->paced)
        {
            wc->saved = ngx_alloc(last - pos, wc->connection->log);
            if (wc->saved == NULL) {
                ngx_http_chat_ws_fail(wc, NGX_HTTP_CHAT_CLOSE_INTERNAL,
                                      "out of memory");
                return;
            }

            ngx_memcpy(wc->saved, pos, last - pos);
            wc->saved_len = last - pos;
            wc->read_blocked = 1;
            return;
        }

        switch (ngx_http_chat_frame_parse(p, &pos, last, &data, &len)) {

        case NGX_HTTP_CHAT_FRAME_AGAIN:
            return;

        case NGX_HTTP_CHAT_FRAME_DATA:

            if (wc->close_sent) {
                break;
            }

            if (ngx_http_chat_ws_append(wc, data, len) != NGX_OK) {
                ngx_http_chat_ws_fail(wc, NGX_HTTP_CHAT_CLOSE_INTERNAL,
                                      "out of memory");
                return;
            }

            break;

        case NGX_HTTP_CHAT_FRAME_MESSAGE:
            ngx_http_chat_stat(cmcf, frames_in, p->fragments);
            ngx_http_chat_stat(cmcf, messages_in, 1);

            if (wc->close_sent) {
                if (wc->msg) {
                    ngx_http_chat_ws_buf_release(wc->msg);
                    wc->msg = NULL;
                }

                break;
            }

            ngx_http_chat_ws_message(wc);
            break;

        case NGX_HTTP_CHAT_FRAME_PING:
        case NGX_HTTP_CHAT_FRAME_PONG:
            ngx_http_chat_stat(cmcf, frames_in, 1);

            if (p->opcode == NGX_HTTP_CHAT_OP_PING && !wc->close_sent
                && ngx_http_chat_ws_control(wc, NGX_HTTP_CHAT_OP_PONG,
                                            p->control, p->control_len)
                   != NGX_OK)
            {
                ngx_http_chat_ws_finalize(wc);
                return;
            }

            break;

        case NGX_HTTP_CHAT_FRAME_CLOSE:
            ngx_http_chat_stat(cmcf, frames_in, 1);

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, wc->connection->log, 0,
                           "chat: close %ui received",
                           (ngx_uint_t) p->close_code);

            wc->close_received = 1;
            wc->discard = 1;

            if (!wc->close_sent) {
                /* echo the code, as the RFC's 5.5.1 suggests */
                ngx_http_chat_ws_close(wc,
                                   p->close_code == NGX_HTTP_CHAT_CLOSE_NO_STATUS
                                   ? 0 : p->close_code, "");

            } else if (!wc->connection->write->posted) {
                ngx_post_event(wc->connection->write, &ngx_posted_events);
            }

            return;

        default: /* NGX_HTTP_CHAT_FRAME_ERROR */

            ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                          "chat: client sent an invalid frame: %s",
                          p->error);

            if (p->close_code == NGX_HTTP_CHAT_CLOSE_POLICY
                || p->close_code == NGX_HTTP_CHAT_CLOSE_TOO_BIG)
            {
                ngx_http_chat_stat(cmcf,
                                   closes[NGX_HTTP_CHAT_CLOSED_LIMIT], 1);

            } else {
                ngx_http_chat_stat(cmcf,
                                   closes[NGX_HTTP_CHAT_CLOSED_PROTOCOL], 1);
            }

            ngx_http_chat_ws_fail(wc, p->close_code, p->error);
            return;
        }
    }
}


static ngx_int_t
ngx_http_chat_ws_append(ngx_http_chat_conn_t *wc, u_char *data, size_t len)
{
    size_t                         size;
    ngx_http_chat_buf_t           *msg;
    ngx_http_chat_frame_parser_t  *p;

    p = &wc->parser;
    msg = wc->msg;

    if (msg != NULL && msg->len + len <= msg->size) {
        ngx_memcpy(msg->data + msg->len, data, len);
        msg->len += len;
        return NGX_OK;
    }

    /*
     * An unfragmented message is allocated once at its exact size; a
     * fragmented one grows by doubling, never past the message limit.
     */

    if (msg == NULL && p->fin && p->fragments == 1) {
        size = (size_t) p->frame_len;

    } else {
        size = msg ? msg->size * 2 : 4096;

        if (size < (msg ? msg->len : 0) + len) {
            size = (msg ? msg->len : 0) + len;
        }

        if (size > wc->conf->max_message_size) {
            size = wc->conf->max_message_size;
        }
    }

    msg = ngx_http_chat_ws_buf_alloc(size, wc->connection->log);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    if (wc->msg != NULL) {
        ngx_memcpy(msg->data, wc->msg->data, wc->msg->len);
        msg->len = wc->msg->len;
        ngx_http_chat_ws_buf_release(wc->msg);
    }

    wc->msg = msg;

    ngx_memcpy(msg->data + msg->len, data, len);
    msg->len += len;

    return NGX_OK;
}


static void
ngx_http_chat_ws_message(ngx_http_chat_conn_t *wc)
{
    ngx_int_t             rc;
    ngx_http_chat_buf_t  *msg;

    msg = wc->msg;
    wc->msg = NULL;

    wc->last_data = ngx_current_msec;

    /* the handler owns msg from here */
    rc = wc->handler->message(wc, msg);

    if (rc == NGX_ABORT) {
        ngx_http_chat_ws_finalize(wc);

    } else if (rc != NGX_OK) {
        ngx_http_chat_ws_fail(wc, NGX_HTTP_CHAT_CLOSE_INTERNAL,
                              "internal error");
    }
}


static ngx_int_t
ngx_http_chat_ws_control(ngx_http_chat_conn_t *wc, unsigned opcode,
    u_char *data, size_t len)
{
    ngx_http_chat_buf_t  *buf;

    buf = NULL;

    if (len) {
        buf = ngx_http_chat_ws_buf_alloc(len, wc->connection->log);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(buf->data, data, len);
        buf->len = len;
    }

    return ngx_http_chat_ws_send_buf(wc, opcode, buf);
}


/* the peer broke the protocol: say why, then read nothing more from it */

static void
ngx_http_chat_ws_fail(ngx_http_chat_conn_t *wc, unsigned code,
    const char *reason)
{
    wc->discard = 1;

    if (wc->msg != NULL) {
        ngx_http_chat_ws_buf_release(wc->msg);
        wc->msg = NULL;
    }

    if (wc->close_sent) {
        if (!wc->connection->write->posted) {
            ngx_post_event(wc->connection->write, &ngx_posted_events);
        }

        return;
    }

    ngx_http_chat_ws_close(wc, code, reason);
}


/*
 * Starts the close handshake, or answers the peer's Close; code 0 sends a
 * Close without a status.  The connection is closed once the Close is
 * sent and either the peer's Close arrived or the input is discarded.
 * Never frees the connection itself.
 */

void
ngx_http_chat_ws_close(ngx_http_chat_conn_t *wc, unsigned code,
    const char *reason)
{
    size_t                len;
    ngx_http_chat_buf_t  *buf;

    if (wc->close_sent || wc->finalized) {
        return;
    }

    wc->close_sent = 1;

    if (code == NGX_HTTP_CHAT_CLOSE_INTERNAL) {
        ngx_http_chat_count(closes[NGX_HTTP_CHAT_CLOSED_INTERNAL], 1);
    }

    buf = NULL;

    if (code) {
        len = ngx_min(ngx_strlen(reason), NGX_HTTP_CHAT_CONTROL_MAX - 2);

        buf = ngx_http_chat_ws_buf_alloc(2 + len, wc->connection->log);
        if (buf == NULL) {
            /* no Close frame, then: the close timer ends it */
            wc->discard = 1;
            ngx_http_chat_ws_arm(wc);
            return;
        }

        buf->data[0] = (u_char) (code >> 8);
        buf->data[1] = (u_char) code;
        ngx_memcpy(buf->data + 2, reason, len);
        buf->len = 2 + len;
    }

    if (ngx_http_chat_ws_send_buf(wc, NGX_HTTP_CHAT_OP_CLOSE, buf)
        != NGX_OK)
    {
        wc->discard = 1;
    }

    /*
     * The peer has close_timeout to answer.  The Close leaves from the
     * posted write event: callers may be walking lists of connections, so
     * nothing here may free this one.
     */

    ngx_http_chat_ws_arm(wc);
}


/*
 * Queues a frame; takes over the caller's reference to buf, which may be
 * NULL for an empty payload.  Opcode 0 queues buf as raw bytes (the 101).
 * The queue is flushed from a posted write event, once per event loop
 * iteration, so that everything queued meanwhile leaves in one writev.
 */

ngx_int_t
ngx_http_chat_ws_send_buf(ngx_http_chat_conn_t *wc, unsigned opcode,
    ngx_http_chat_buf_t *buf)
{
    size_t                      len;
    ngx_connection_t           *c;
    ngx_http_chat_out_t        *out;
    ngx_http_chat_main_conf_t  *cmcf;

    c = wc->connection;
    len = buf ? buf->len : 0;

    if ((wc->close_sent || wc->finalized)
        && (opcode == NGX_HTTP_CHAT_OP_TEXT
            || opcode == NGX_HTTP_CHAT_OP_BINARY))
    {
        /* nothing follows a Close (RFC 6455 5.5.1) */
        if (buf != NULL) {
            ngx_http_chat_ws_buf_release(buf);
        }

        return NGX_OK;
    }

    out = ngx_http_chat_out_alloc(c->log);
    if (out == NULL) {
        if (buf != NULL) {
            ngx_http_chat_ws_buf_release(buf);
        }

        return NGX_ERROR;
    }

    out->next = NULL;
    out->buf = buf;
    out->sent = 0;

    if (opcode == 0) {
        out->hlen = 0;

    } else {
        out->hlen = (u_char) ngx_http_chat_frame_header(out->header, opcode,
                                                        1, len, NULL);

        if (opcode == NGX_HTTP_CHAT_OP_TEXT
            || opcode == NGX_HTTP_CHAT_OP_BINARY)
        {
            cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                       ngx_http_chat_module);
            ngx_http_chat_stat(cmcf, messages_out, 1);
        }
    }

    *wc->out_last = out;
    wc->out_last = &out->next;
    wc->out_bytes += out->hlen + len;

    if (!c->write->posted && wc->started) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_ws_flush(ngx_http_chat_conn_t *wc)
{
    size_t                      off, sent;
    ngx_uint_t                  i, n;
    ngx_chain_t                *cl;
    ngx_connection_t           *c;
    ngx_http_chat_out_t        *out;
    ngx_http_chat_main_conf_t  *cmcf;
    u_char                     *start[NGX_HTTP_CHAT_CHAIN_MAX * 2];
    ngx_buf_t                   bufs[NGX_HTTP_CHAT_CHAIN_MAX * 2];
    ngx_chain_t                 chain[NGX_HTTP_CHAT_CHAIN_MAX * 2];

    c = wc->connection;

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (wc->finalized) {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    while ((wc->out != NULL || c->buffered) && c->write->ready) {

        n = 0;

        for (out = wc->out, i = 0;
             out != NULL && i < NGX_HTTP_CHAT_CHAIN_MAX;
             out = out->next, i++)
        {
            if (out->sent < out->hlen) {
                ngx_memzero(&bufs[n], sizeof(ngx_buf_t));
                bufs[n].pos = out->header + out->sent;
                bufs[n].last = out->header + out->hlen;
                bufs[n].memory = 1;
                n++;
            }

            if (out->buf != NULL && out->buf->len) {
                off = out->sent > out->hlen ? out->sent - out->hlen : 0;

                ngx_memzero(&bufs[n], sizeof(ngx_buf_t));
                bufs[n].pos = out->buf->data + off;
                bufs[n].last = out->buf->data + out->buf->len;
                bufs[n].memory = 1;
                n++;
            }
        }

        for (i = 0; i < n; i++) {
            start[i] = bufs[i].pos;
            chain[i].buf = &bufs[i];
            chain[i].next = (i + 1 < n) ? &chain[i + 1] : NULL;
        }

        /* TLS buffers small writes: the last frame asks it to write now */
        if (n) {
            bufs[n - 1].flush = 1;
        }

        cl = c->send_chain(c, n ? chain : NULL, 0);

        if (cl == NGX_CHAIN_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        /*
         * What left the queue is what the sender took from the buffers:
         * written, or copied into the TLS buffer.  c->sent counts neither
         * the second nor excludes what TLS still holds.
         */

        sent = 0;

        for (i = 0; i < n; i++) {
            sent += bufs[i].pos - start[i];
        }

        ngx_http_chat_ws_sent(wc, sent);
        ngx_http_chat_stat(cmcf, bytes_out, sent);

        if (sent && wc->out != NULL) {
            /* progress: the client reads, slowly maybe, but it reads */
            ngx_add_timer(c->write, wc->conf->send_timeout);
        }

        if (cl != NULL || (n == 0 && c->buffered)) {
            break;
        }
    }

    if (wc->out != NULL || c->buffered) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, wc->conf->send_timeout);
        }

        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_AGAIN;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (wc->close_sent && (wc->close_received || wc->discard)) {
        if (!wc->lingering) {
            ngx_http_chat_ws_linger(wc);
        }

        return NGX_OK;
    }

    ngx_http_chat_ws_resume(wc);

    return NGX_OK;
}


static void
ngx_http_chat_ws_sent(ngx_http_chat_conn_t *wc, size_t n)
{
    size_t                rest;
    ngx_http_chat_out_t  *out;

    while (n && wc->out != NULL) {
        out = wc->out;
        rest = out->hlen + (out->buf ? out->buf->len : 0) - out->sent;

        if (n < rest) {
            out->sent += n;
            wc->out_bytes -= n;
            return;
        }

        n -= rest;
        wc->out_bytes -= rest;

        wc->out = out->next;

        if (wc->out == NULL) {
            wc->out_last = &wc->out;
        }

        ngx_http_chat_out_free(out);
    }
}


/*
 * Both Close frames are exchanged: the server closes first (RFC 6455 7.1.1)
 * by a half-close, and reads what still comes until the peer's FIN, so
 * that unread input cannot turn the close into a reset that would destroy
 * our Close frame before the peer reads it.
 */

static void
ngx_http_chat_ws_linger(ngx_http_chat_conn_t *wc)
{
    ngx_connection_t  *c;

    c = wc->connection;

    wc->lingering = 1;

    /*
     * Over TLS, closing sends close_notify first (ngx_http_close_connection
     * shuts TLS down): there is no half-close to wait behind.
     */

    if (c->ssl != NULL || shutdown(c->fd, SHUT_WR) == -1) {
        ngx_http_chat_ws_finalize(wc);
        return;
    }

    ngx_http_chat_ws_arm(wc);

    if (c->read->ready && !c->read->posted) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static void
ngx_http_chat_ws_timer(ngx_http_chat_conn_t *wc)
{
    ngx_connection_t           *c;
    ngx_http_chat_main_conf_t  *cmcf;

    c = wc->connection;
    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    if (wc->close_sent || wc->lingering) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "chat: close handshake timed out");
        ngx_http_chat_ws_finalize(wc);
        return;
    }

    if (wc->id.exp && ngx_time() > wc->id.exp + wc->conf->jwt_leeway) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "chat: token of \"%V\" expired", &wc->id.id);
        ngx_http_chat_stat(cmcf, closes[NGX_HTTP_CHAT_CLOSED_TOKEN], 1);
        ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_TOKEN_EXPIRED,
                               "token expired");
        return;
    }

    if (wc->conf->idle_timeout
        && ngx_current_msec - wc->last_data >= wc->conf->idle_timeout)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "chat: client idle for too long");
        ngx_http_chat_stat(cmcf, closes[NGX_HTTP_CHAT_CLOSED_IDLE], 1);
        ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_GOING_AWAY,
                               "idle timeout");
        return;
    }

    if (wc->ping_sent && !wc->read_blocked) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "chat: client stopped answering pings");
        ngx_http_chat_stat(cmcf, closes[NGX_HTTP_CHAT_CLOSED_PING], 1);
        c->timedout = 1;
        ngx_http_chat_ws_finalize(wc);
        return;
    }

    if (wc->conf->heartbeat) {
        if (ngx_http_chat_ws_send_buf(wc, NGX_HTTP_CHAT_OP_PING, NULL)
            != NGX_OK)
        {
            ngx_http_chat_ws_finalize(wc);
            return;
        }

        wc->ping_sent = 1;
    }

    ngx_http_chat_ws_arm(wc);
}


/* one timer per connection, on the read event, for whatever comes first */

static void
ngx_http_chat_ws_arm(ngx_http_chat_conn_t *wc)
{
    time_t             left;
    ngx_msec_t         t, idle;
    ngx_connection_t  *c;

    c = wc->connection;

    if (wc->close_sent || wc->lingering) {
        t = wc->conf->close_timeout;

    } else {
        t = wc->conf->heartbeat ? wc->conf->heartbeat : 3600000;

        if (wc->id.exp) {
            left = wc->id.exp + wc->conf->jwt_leeway - ngx_time();
            left = left < 0 ? 0 : left + 1;

            if ((ngx_msec_t) left * 1000 < t) {
                t = (ngx_msec_t) left * 1000;
            }
        }

        if (wc->conf->idle_timeout) {
            idle = ngx_current_msec - wc->last_data;
            idle = idle < wc->conf->idle_timeout
                   ? wc->conf->idle_timeout - idle : 0;

            if (idle < t) {
                t = idle;
            }
        }
    }

    ngx_add_timer(c->read, t ? t : 1);
}


void
ngx_http_chat_ws_rearm(ngx_http_chat_conn_t *wc)
{
    if (!wc->close_sent && !wc->lingering) {
        ngx_http_chat_ws_arm(wc);
    }
}


/* a reason not to read is gone: read what waits */

void
ngx_http_chat_ws_resume(ngx_http_chat_conn_t *wc)
{
    ngx_event_t  *rev;

    rev = wc->connection->read;

    if (wc->handler->drained != NULL && !wc->finalized && wc->started
        && wc->out_bytes < wc->conf->send_buffer)
    {
        wc->handler->drained(wc);
    }

    if (wc->read_blocked && !wc->finalized
        && wc->out_bytes < wc->conf->send_buffer
        && wc->nops < NGX_HTTP_CHAT_MAX_OPS)
    {
        wc->read_blocked = 0;

        /* the read handler parses the saved input first */

        if (!rev->posted) {
            ngx_post_event(rev, &ngx_posted_events);
        }
    }
}


/* nginx is reloading or stopping: say so, and go */

static void
ngx_http_chat_ws_shutdown(ngx_http_chat_conn_t *wc)
{
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    if (!wc->close_sent) {
        ngx_http_chat_stat(cmcf, closes[NGX_HTTP_CHAT_CLOSED_SHUTDOWN], 1);
        ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_GOING_AWAY,
                               "server shutting down");
    }

    if (!wc->finalized) {
        (void) ngx_http_chat_ws_flush(wc);
        ngx_http_chat_ws_finalize(wc);
    }

    /*
     * An exiting worker leaves as soon as no timer holds it, before posted
     * events run: this close cannot wait for one.  Nothing up the stack
     * looks at wc: this is the read handler's last act.
     */

    ngx_http_chat_ws_closed(wc->connection->write);
}


/*
 * The handler undoes everything the connection is part of, at once, and
 * the connection is closed from a posted event: callers up the stack may
 * still look at wc, which lives in the connection's pool, so the pool must
 * outlive them.
 */

static void
ngx_http_chat_ws_finalize(ngx_http_chat_conn_t *wc)
{
    ngx_connection_t     *c;
    ngx_http_chat_out_t  *out;

    if (wc->finalized) {
        return;
    }

    wc->finalized = 1;

    c = wc->connection;

    wc->handler->closed(wc);

    while (wc->out != NULL) {
        out = wc->out;
        wc->out = out->next;
        ngx_http_chat_out_free(out);
    }

    wc->out_last = &wc->out;
    wc->out_bytes = 0;

    if (wc->msg != NULL) {
        ngx_http_chat_ws_buf_release(wc->msg);
        wc->msg = NULL;
    }

    if (wc->early != NULL) {
        ngx_free(wc->early);
        wc->early = NULL;
    }

    if (wc->saved != NULL) {
        ngx_free(wc->saved);
        wc->saved = NULL;
    }

    if (wc->upgrade != NULL) {
        ngx_http_chat_ws_buf_release(wc->upgrade);
        wc->upgrade = NULL;
    }

    if (wc->started) {
        ngx_http_chat_zone_gauge(connections, -1);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = ngx_http_chat_ws_closed;
    c->write->handler = ngx_http_chat_ws_closed;

    if (!c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


static void
ngx_http_chat_ws_closed(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    /* closes the socket, removes posted events, frees the pool */
    ngx_http_close_connection(c);
}


ngx_http_chat_buf_t *
ngx_http_chat_ws_buf_alloc(size_t size, ngx_log_t *log)
{
    ngx_http_chat_buf_t  *buf;

    buf = ngx_alloc(offsetof(ngx_http_chat_buf_t, data) + size, log);
    if (buf == NULL) {
        return NULL;
    }

    buf->refs = 1;
    buf->len = 0;
    buf->size = size;

    return buf;
}


void
ngx_http_chat_ws_buf_release(ngx_http_chat_buf_t *buf)
{
    if (--buf->refs == 0) {
        ngx_free(buf);
    }
}


static ngx_http_chat_out_t *
ngx_http_chat_out_alloc(ngx_log_t *log)
{
    ngx_http_chat_out_t  *out;

    out = ngx_http_chat_free_outs;

    if (out != NULL) {
        ngx_http_chat_free_outs = out->next;
        ngx_http_chat_nfree_outs--;
        return out;
    }

    return ngx_alloc(sizeof(ngx_http_chat_out_t), log);
}


static void
ngx_http_chat_out_free(ngx_http_chat_out_t *out)
{
    if (out->buf != NULL) {
        ngx_http_chat_ws_buf_release(out->buf);
    }

    if (ngx_http_chat_nfree_outs >= NGX_HTTP_CHAT_FREE_OUT) {
        ngx_free(out);
        return;
    }

    out->next = ngx_http_chat_free_outs;
    ngx_http_chat_free_outs = out;
    ngx_http_chat_nfree_outs++;
}
