
/*
 * Requests that need PostgreSQL.  Each is one call of a chat.api_*
 * function, which checks membership and does the work in one transaction
 * and returns {"ok": data, "events": [{"to": [users], "event": {...}}]} or
 * {"error": {...}}.
 *
 * A connection's storage requests run one at a time, in the order they
 * were sent.  Sends from every connection of the worker are batched: a
 * batch takes all sends waiting at the moment a PostgreSQL connection is
 * free, so an idle server sends one at once and a busy one commits many
 * per round trip.
 *
 * Every operation ends in its caller's done handler, for a WebSocket
 * request and a REST one alike: the store names neither the session nor
 * the REST API.  Its events then go out from here.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_pg.h>
#include <ngx_http_chat_request.h>


#define NGX_HTTP_CHAT_BATCH_MAX  128


/* what the store itself does differently; answers are the caller's */
typedef enum {
    NGX_HTTP_CHAT_OP_PLAIN = 0,
    NGX_HTTP_CHAT_OP_SEND,                 /* batched */
    NGX_HTTP_CHAT_OP_SYNC                  /* its events are the answer */
} ngx_http_chat_op_kind_e;


typedef struct {
    ngx_http_chat_pg_query_t      q;
    ngx_queue_t                   session;   /* in wc->ops */
    ngx_queue_t                   batch;     /* pending sends, or a batch */
    ngx_http_chat_conn_t         *wc;        /* NULL: the client is gone */
    ngx_http_chat_store_done_t    done;      /* answers the caller */
    char                         *text;      /* the JSON parameter */
    ngx_http_chat_op_kind_e       kind;
    unsigned                      started:1;
    unsigned                      batched:1;
} ngx_http_chat_op_t;


typedef struct {
    ngx_http_chat_pg_query_t      q;
    ngx_queue_t                   ops;
    char                         *text;
} ngx_http_chat_batch_t;


static ngx_http_chat_op_t *ngx_http_chat_store_op(ngx_http_chat_conn_t *wc,
    ngx_uint_t stmt, ngx_http_chat_op_kind_e kind, json_t *id, json_t *arg);
static void ngx_http_chat_store_run(ngx_http_chat_conn_t *wc);
static ngx_int_t ngx_http_chat_store_start(ngx_http_chat_op_t *op);
static void ngx_http_chat_store_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_store_complete(ngx_http_chat_op_t *op,
    json_t *result);
static ngx_int_t ngx_http_chat_store_queue_batch(void);
static ngx_int_t ngx_http_chat_store_build_batch(ngx_http_chat_pg_query_t *q);
static ngx_uint_t ngx_http_chat_store_follows(ngx_http_chat_op_t *op);
static void ngx_http_chat_store_batch_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_store_fail_pending(void);
static void ngx_http_chat_store_free(ngx_http_chat_op_t *op);
static json_int_t ngx_http_chat_store_max_bytes(size_t send_buffer);


/* per worker process */
static ngx_queue_t             ngx_http_chat_pending_sends;
static ngx_http_chat_batch_t  *ngx_http_chat_queued_batch;


void
ngx_http_chat_store_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_http_chat_pending_sends);
}


ngx_int_t
ngx_http_chat_store_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req, ngx_uint_t stmt,
    ngx_http_chat_store_done_t *done)
{
    ngx_http_chat_op_t       *op;
    ngx_http_chat_op_kind_e   kind;

    switch (stmt) {

    case NGX_HTTP_CHAT_STMT_SEND:
    case NGX_HTTP_CHAT_STMT_EDIT:
        /* the length limit is the location's, whatever the client says */
        if (json_object_set_new(req->root, "max_length",
                                json_integer(wc->conf->max_message_length))
            != 0)
        {
            return NGX_ERROR;
        }

        kind = (stmt == NGX_HTTP_CHAT_STMT_SEND) ? NGX_HTTP_CHAT_OP_SEND
                                                 : NGX_HTTP_CHAT_OP_PLAIN;
        break;

    case NGX_HTTP_CHAT_STMT_SYNC:
    case NGX_HTTP_CHAT_STMT_HISTORY:
    case NGX_HTTP_CHAT_STMT_CONVERSATION_LIST:
        /*
         * Replies that can grow are paged in bytes: a request starts only
         * below chat_send_buffer (ngx_http_chat_store_run) and adds about
         * half of it, so an unread connection holds at most about one and
         * a half buffers; the client reads, then asks for the next page.
         */
        if (json_object_set_new(req->root, "max_bytes",
                                json_integer(ngx_http_chat_store_max_bytes(
                                                 wc->conf->send_buffer)))
            != 0)
        {
            return NGX_ERROR;
        }

        kind = (stmt == NGX_HTTP_CHAT_STMT_SYNC) ? NGX_HTTP_CHAT_OP_SYNC
                                                 : NGX_HTTP_CHAT_OP_PLAIN;
        break;

    default:
        kind = NGX_HTTP_CHAT_OP_PLAIN;
    }

    op = ngx_http_chat_store_op(wc, stmt, kind, done->id, req->root);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->done.handler = done->handler;
    op->done.data = done->data;
    op->done.req = done->req ? json_incref(done->req) : NULL;
    op->done.type = done->type;
    op->done.start = done->start;

    ngx_http_chat_store_run(wc);

    return NGX_OK;
}


/*
 * The user's name and avatar from the token, before anything else.  No
 * handler: a failed upsert only leaves the name unknown.
 */

ngx_int_t
ngx_http_chat_store_hello(ngx_http_chat_conn_t *wc)
{
    json_t              *arg;
    ngx_http_chat_op_t  *op;

    arg = ngx_http_chat_http_user_json(&wc->id);
    if (arg == NULL) {
        return NGX_ERROR;
    }

    op = ngx_http_chat_store_op(wc, NGX_HTTP_CHAT_STMT_USER_UPSERT,
                                NGX_HTTP_CHAT_OP_PLAIN, NULL, arg);

    json_decref(arg);

    if (op == NULL) {
        return NGX_ERROR;
    }

    ngx_http_chat_store_run(wc);

    return NGX_OK;
}


/*
 * A request of the session's own, that no client sent (the watch set's
 * queries): in the connection's order like the others; done answers it.
 */

ngx_int_t
ngx_http_chat_store_ask(ngx_http_chat_conn_t *wc, ngx_uint_t stmt,
    json_t *arg, ngx_http_chat_store_done_t *done)
{
    ngx_http_chat_op_t  *op;

    op = ngx_http_chat_store_op(wc, stmt, NGX_HTTP_CHAT_OP_PLAIN, NULL, arg);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->done.handler = done->handler;
    op->done.data = done->data;
    op->done.type = done->type;
    op->done.start = done->start;

    ngx_http_chat_store_run(wc);

    return NGX_OK;
}


/*
 * A user came or went on this node: presence.c is given this at init.
 * The change goes to every worker, and each sends it to its connections
 * that watch the user: nothing is asked of PostgreSQL for it, but in a
 * cluster, whether another node holds the user too (O(1) per user).
 */

void
ngx_http_chat_store_announce(u_char *user, size_t len, ngx_uint_t online,
    time_t last_seen)
{
    u_char  *e;
    json_t  *arg, *event;
    u_char   seen[NGX_HTTP_CHAT_TIME_LEN];

    if (last_seen) {
        e = ngx_http_chat_http_time(seen, last_seen, 0);
        arg = json_pack("{s:s%, s:b, s:s%}", "user_id", user, len,
                        "online", online, "last_seen", seen,
                        (size_t) (e - seen));

    } else {
        arg = json_pack("{s:s%, s:b, s:n}", "user_id", user, len,
                        "online", online, "last_seen");
    }

    if (arg == NULL) {
        return;
    }

    if (ngx_http_chat_cluster_enabled()) {
        /* PostgreSQL says whether the state across nodes changed */

        if (json_object_set_new(arg, "node",
                    json_stringn((char *) ngx_http_chat_cluster_node()->data,
                                 ngx_http_chat_cluster_node()->len))
            == 0)
        {
            ngx_http_chat_store_call(user, len,
                                     NGX_HTTP_CHAT_STMT_CLUSTER_PRESENCE,
                                     arg);
        }

        ngx_http_chat_cluster_presence(user, len, online, last_seen);

        json_decref(arg);
        return;
    }

    event = json_pack("{s:s, s:O, s:O, s:O}", "type", "presence",
                      "user_id", json_object_get(arg, "user_id"),
                      "online", json_object_get(arg, "online"),
                      "last_seen", json_object_get(arg, "last_seen"));

    json_decref(arg);

    if (event == NULL) {
        return;
    }

    /* no recipients: the watchers, on every worker */
    ngx_http_chat_bus_publish(event, json_null(), ngx_cycle->log);

    json_decref(event);
}


/*
 * A call that no connection waits for (presence changes): its events are
 * delivered, its answer dropped; if storage is down, nothing happens.
 */

void
ngx_http_chat_store_call(u_char *user, size_t len, ngx_uint_t stmt,
    json_t *arg)
{
    ngx_http_chat_op_t  *op;

    op = ngx_calloc(sizeof(ngx_http_chat_op_t) + len + 1, ngx_cycle->log);
    if (op == NULL) {
        return;
    }

    op->text = json_dumps(arg, JSON_COMPACT);
    if (op->text == NULL) {
        ngx_free(op);
        return;
    }

    /* the user id lives right behind the op, NUL-terminated for libpq */
    ngx_memcpy((u_char *) (op + 1), user, len);

    op->kind = NGX_HTTP_CHAT_OP_PLAIN;
    op->started = 1;

    ngx_http_chat_pg_query_init(&op->q, stmt, ngx_http_chat_store_handler,
                                op);
    ngx_http_chat_pg_query_param(&op->q, (char *) (op + 1), len);
    ngx_http_chat_pg_query_param(&op->q, op->text, ngx_strlen(op->text));

    if (ngx_http_chat_pg_query(&op->q) != NGX_OK) {
        ngx_http_chat_store_free(op);
    }
}


/*
 * A REST request's storage call: runs at once (sends join the next batch),
 * and done() answers the request; the events go out as for a WebSocket.
 * The caller keeps the request alive (r->main->count) until done().
 */

ngx_int_t
ngx_http_chat_store_http(ngx_http_request_t *r, ngx_str_t *user,
    ngx_uint_t stmt, json_t *arg, ngx_http_chat_store_done_pt done)
{
    json_t              *item;
    ngx_http_chat_op_t  *op;

    op = ngx_calloc(sizeof(ngx_http_chat_op_t), r->connection->log);
    if (op == NULL) {
        return NGX_ERROR;
    }

    if (stmt == NGX_HTTP_CHAT_STMT_SEND) {
        item = json_pack("{s:s%, s:O}", "user", user->data, user->len,
                         "req", arg);
        op->text = item ? json_dumps(item, JSON_COMPACT) : NULL;
        json_decref(item);
        op->kind = NGX_HTTP_CHAT_OP_SEND;

    } else {
        op->text = json_dumps(arg, JSON_COMPACT);
        op->kind = NGX_HTTP_CHAT_OP_PLAIN;
    }

    if (op->text == NULL) {
        ngx_free(op);
        return NGX_ERROR;
    }

    op->done.handler = done;
    op->done.data = r;

    ngx_http_chat_pg_query_init(&op->q, stmt, ngx_http_chat_store_handler,
                                op);
    ngx_http_chat_pg_query_param(&op->q, (char *) user->data, user->len);
    ngx_http_chat_pg_query_param(&op->q, op->text, ngx_strlen(op->text));
    op->q.heavy = (stmt == NGX_HTTP_CHAT_STMT_MESSAGES_SEARCH);

    if (ngx_http_chat_store_start(op) != NGX_OK) {
        ngx_http_chat_store_complete(op, NULL);
    }

    return NGX_OK;
}


/* the connection goes away: what it waits for is dropped or orphaned */

void
ngx_http_chat_store_detach(ngx_http_chat_conn_t *wc)
{
    ngx_queue_t         *q;
    ngx_http_chat_op_t  *op;

    while (!ngx_queue_empty(&wc->ops)) {
        q = ngx_queue_head(&wc->ops);
        op = ngx_queue_data(q, ngx_http_chat_op_t, session);

        ngx_queue_remove(q);
        wc->nops--;

        if (!op->started) {
            ngx_http_chat_store_free(op);
            continue;
        }

        if (op->kind == NGX_HTTP_CHAT_OP_SEND) {
            if (!op->batched) {
                ngx_queue_remove(&op->batch);
                ngx_http_chat_store_free(op);
                continue;
            }

        } else if (ngx_http_chat_pg_cancel(&op->q) == NGX_OK) {
            ngx_http_chat_store_free(op);
            continue;
        }

        /* in flight: the answer is dropped, its events still go out */
        op->wc = NULL;
        op->done.handler = NULL;
    }
}


static ngx_http_chat_op_t *
ngx_http_chat_store_op(ngx_http_chat_conn_t *wc, ngx_uint_t stmt,
    ngx_http_chat_op_kind_e kind, json_t *id, json_t *arg)
{
    json_t              *item;
    ngx_http_chat_op_t  *op;

    op = ngx_calloc(sizeof(ngx_http_chat_op_t), wc->connection->log);
    if (op == NULL) {
        return NULL;
    }

    if (kind == NGX_HTTP_CHAT_OP_SEND) {
        item = json_pack("{s:s%, s:O}", "user", wc->id.id.data,
                         wc->id.id.len, "req", arg);
        op->text = item ? json_dumps(item, JSON_COMPACT) : NULL;
        json_decref(item);

    } else {
        op->text = json_dumps(arg, JSON_COMPACT);
    }

    if (op->text == NULL) {
        ngx_free(op);
        return NULL;
    }

    op->wc = wc;
    op->kind = kind;
    op->done.id = id ? json_incref(id) : NULL;

    ngx_http_chat_pg_query_init(&op->q, stmt, ngx_http_chat_store_handler,
                                op);
    ngx_http_chat_pg_query_param(&op->q, (char *) wc->id.id.data,
                                 wc->id.id.len);
    ngx_http_chat_pg_query_param(&op->q, op->text, ngx_strlen(op->text));

    ngx_queue_insert_tail(&wc->ops, &op->session);
    wc->nops++;

    return op;
}


/* the client read what it was sent: its next request may start */

void
ngx_http_chat_store_resume(ngx_http_chat_conn_t *wc)
{
    ngx_http_chat_store_run(wc);
}


/*
 * Starts the connection's first request, and answers what cannot start.
 * Consecutive sends start together while none of them is in a batch yet:
 * they go into the same batch, in order, so they still commit in the
 * order sent, and a client that pipelines its sends gets them stored in
 * one transaction and fanned out in one pass (one write per recipient).
 */

static void
ngx_http_chat_store_run(ngx_http_chat_conn_t *wc)
{
    size_t               out;
    ngx_queue_t         *q;
    ngx_http_chat_op_t  *op;

    /* what the client will have to read: its answers and own events */
    out = wc->out_bytes;

    for (q = ngx_queue_head(&wc->ops);
         q != ngx_queue_sentinel(&wc->ops);
         q = ngx_queue_next(q))
    {
        op = ngx_queue_data(q, ngx_http_chat_op_t, session);

        if (op->started) {
            if (op->kind != NGX_HTTP_CHAT_OP_SEND || op->batched) {
                return;
            }

            out += 2 * (size_t) op->q.lengths[1];
            continue;
        }

        if (q != ngx_queue_head(&wc->ops)
            && (op->kind != NGX_HTTP_CHAT_OP_SEND
                || out + 2 * (size_t) op->q.lengths[1]
                   >= wc->conf->send_buffer))
        {
            return;
        }

        /* answers wait while the client does not read the last ones */
        if (wc->out_bytes >= wc->conf->send_buffer || wc->finalized) {
            return;
        }

        if (ngx_http_chat_store_start(op) != NGX_OK) {
            /*
             * storage is down: answered at once; completing it runs this
             * again for the next one
             */
            ngx_http_chat_store_complete(op, NULL);
            return;
        }

        if (op->kind != NGX_HTTP_CHAT_OP_SEND) {
            return;
        }

        out += 2 * (size_t) op->q.lengths[1];
    }
}


static ngx_int_t
ngx_http_chat_store_start(ngx_http_chat_op_t *op)
{
    if (op->kind != NGX_HTTP_CHAT_OP_SEND) {
        op->started = 1;

        if (ngx_http_chat_pg_query(&op->q) != NGX_OK) {
            op->started = 0;
            return NGX_DECLINED;
        }

        return NGX_OK;
    }

    ngx_queue_insert_tail(&ngx_http_chat_pending_sends, &op->batch);
    op->started = 1;

    if (ngx_http_chat_queued_batch == NULL
        && ngx_http_chat_store_queue_batch() != NGX_OK)
    {
        ngx_queue_remove(&op->batch);
        op->started = 0;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_chat_store_handler(ngx_http_chat_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    json_t              *result;
    ngx_http_chat_op_t  *op;

    op = q->data;

    result = ngx_http_chat_pg_json(rc, res);

    ngx_http_chat_store_complete(op, result);

    if (result != NULL) {
        json_decref(result);
    }
}


/* result NULL: storage was unavailable */

static void
ngx_http_chat_store_complete(ngx_http_chat_op_t *op, json_t *result)
{
    size_t                 i;
    json_t                *events, *ev, *error;
    ngx_log_t             *log;
    ngx_http_chat_conn_t  *wc;

    wc = op->wc;

    /*
     * A REST request's log lives in its connection's pool, which the done
     * handler may destroy (Connection: close): its events go out with the
     * cycle's log.
     */
    log = wc ? wc->connection->log : ngx_cycle->log;

    events = result ? json_object_get(result, "events") : NULL;
    error = result ? json_object_get(result, "error") : NULL;

    if (wc != NULL) {
        ngx_queue_remove(&op->session);
        wc->nops--;
    }

    if (op->done.handler != NULL) {
        op->done.handler(&op->done, result);
    }

    if (op->kind != NGX_HTTP_CHAT_OP_SYNC && error == NULL) {
        json_array_foreach(events, i, ev) {
            ngx_http_chat_bus_publish(json_object_get(ev, "event"),
                                      json_object_get(ev, "to"), log);
        }
    }

    ngx_http_chat_store_free(op);

    if (wc != NULL && !wc->finalized) {
        ngx_http_chat_store_run(wc);
        ngx_http_chat_ws_resume(wc);
    }
}


/* one batch query waits in the pool's queue at most: it takes every send */

static ngx_int_t
ngx_http_chat_store_queue_batch(void)
{
    ngx_http_chat_batch_t  *b;

    b = ngx_calloc(sizeof(ngx_http_chat_batch_t), ngx_cycle->log);
    if (b == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&b->ops);

    /* the one parameter, the batch, is made when the query is sent */
    ngx_http_chat_pg_query_init(&b->q, NGX_HTTP_CHAT_STMT_SEND,
                                ngx_http_chat_store_batch_handler, b);
    b->q.nparams = 1;
    b->q.build = ngx_http_chat_store_build_batch;

    ngx_http_chat_queued_batch = b;

    if (ngx_http_chat_pg_query(&b->q) != NGX_OK) {
        ngx_http_chat_queued_batch = NULL;
        ngx_free(b);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_store_build_batch(ngx_http_chat_pg_query_t *q)
{
    u_char                 *p;
    size_t                  len;
    ngx_uint_t              n;
    ngx_queue_t            *qn;
    ngx_http_chat_op_t     *op;
    ngx_http_chat_batch_t  *b;

    b = q->data;

    ngx_http_chat_queued_batch = NULL;

    len = sizeof("[]");
    n = 0;

    for (qn = ngx_queue_head(&ngx_http_chat_pending_sends);
         qn != ngx_queue_sentinel(&ngx_http_chat_pending_sends);
         qn = ngx_queue_next(qn), n++)
    {
        op = ngx_queue_data(qn, ngx_http_chat_op_t, batch);

        /*
         * a send whose connection's previous send is in this batch goes
         * in too, whatever the size: a later batch may commit first
         */
        if (n >= NGX_HTTP_CHAT_BATCH_MAX
            && !ngx_http_chat_store_follows(op))
        {
            break;
        }

        len += ngx_strlen(op->text) + 1;
    }

    if (n == 0) {
        ngx_free(b);
        return NGX_DECLINED;
    }

    b->text = ngx_alloc(len, ngx_cycle->log);
    if (b->text == NULL) {
        /* the sends stay pending: the next batch, or the expiry, has them */
        ngx_free(b);
        return NGX_DECLINED;
    }

    p = (u_char *) b->text;
    *p++ = '[';

    while (n--) {
        qn = ngx_queue_head(&ngx_http_chat_pending_sends);
        op = ngx_queue_data(qn, ngx_http_chat_op_t, batch);

        ngx_queue_remove(qn);
        ngx_queue_insert_tail(&b->ops, qn);
        op->batched = 1;

        p = ngx_cpymem(p, op->text, ngx_strlen(op->text));
        *p++ = n ? ',' : ']';
    }

    *p = '\0';

    b->q.values[0] = b->text;
    b->q.lengths[0] = (int) (p - (u_char *) b->text);

    /* more than one batch holds: the rest goes to the next connection */

    if (!ngx_queue_empty(&ngx_http_chat_pending_sends)
        && ngx_http_chat_store_queue_batch() != NGX_OK)
    {
        ngx_http_chat_store_fail_pending();
    }

    return NGX_OK;
}


/* the connection's request before op is a send that is counted in */

static ngx_uint_t
ngx_http_chat_store_follows(ngx_http_chat_op_t *op)
{
    ngx_queue_t         *prev;
    ngx_http_chat_op_t  *before;

    if (op->wc == NULL || ngx_queue_head(&op->wc->ops) == &op->session) {
        return 0;
    }

    prev = ngx_queue_prev(&op->session);
    before = ngx_queue_data(prev, ngx_http_chat_op_t, session);

    /* only pending sends follow a started one (ngx_http_chat_store_run) */
    return before->kind == NGX_HTTP_CHAT_OP_SEND;
}


static void
ngx_http_chat_store_batch_handler(ngx_http_chat_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    size_t                  i;
    json_t                 *result, *item;
    ngx_queue_t            *qn;
    ngx_http_chat_op_t     *op;
    ngx_http_chat_batch_t  *b;

    b = q->data;

    if (b->text == NULL) {
        /* never sent: it expired in the queue, and so did the sends */
        ngx_http_chat_queued_batch = NULL;
        ngx_free(b);
        ngx_http_chat_store_fail_pending();
        return;
    }

    result = ngx_http_chat_pg_json(rc, res);

    if (result != NULL && !json_is_array(result)) {
        json_decref(result);
        result = NULL;
    }

    i = 0;

    while (!ngx_queue_empty(&b->ops)) {
        qn = ngx_queue_head(&b->ops);
        op = ngx_queue_data(qn, ngx_http_chat_op_t, batch);

        ngx_queue_remove(qn);

        item = result ? json_array_get(result, i++) : NULL;

        ngx_http_chat_store_complete(op, item);
    }

    if (result != NULL) {
        json_decref(result);
    }

    ngx_free(b->text);
    ngx_free(b);
}


static void
ngx_http_chat_store_fail_pending(void)
{
    ngx_queue_t         *qn;
    ngx_http_chat_op_t  *op;

    while (!ngx_queue_empty(&ngx_http_chat_pending_sends)) {
        qn = ngx_queue_head(&ngx_http_chat_pending_sends);
        op = ngx_queue_data(qn, ngx_http_chat_op_t, batch);

        ngx_queue_remove(qn);
        op->batched = 1;

        ngx_http_chat_store_complete(op, NULL);
    }
}


static void
ngx_http_chat_store_free(ngx_http_chat_op_t *op)
{
    if (op->done.id != NULL) {
        json_decref(op->done.id);
    }

    if (op->done.req != NULL) {
        json_decref(op->done.req);
    }

    free(op->text);
    ngx_free(op);
}


/* half the send buffer, within what chat.max_bytes() accepts */

static json_int_t
ngx_http_chat_store_max_bytes(size_t send_buffer)
{
    size_t  n;

    n = send_buffer / 2;

    if (n < 1024) {
        return 1024;
    }

    if (n > 64 * 1024 * 1024) {
        return 64 * 1024 * 1024;
    }

    return (json_int_t) n;
}
