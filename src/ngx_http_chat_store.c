
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
 * per round trip.  Batches in flight at once share no conversation: a
 * batch locks its conversations until it commits, so a send to one that
 * another batch holds waits here for that commit rather than in
 * PostgreSQL, where it would hold up every other conversation of its own
 * batch (most of the pool waited on such locks under many small
 * conversations).  Such a send waits with the batch that holds it up,
 * goes first when that batch is done, and is answered "unavailable" if it
 * waited longer than a query may wait for a connection (chat_postgres
 * queue_timeout).  A send's shape is checked here (message.c) and a bad
 * one answered in its turn without storage; the batch goes as one array
 * per field to chat.api_message_send_rows, whose rows are made into the
 * answers and message.created events without a JSON parse.
 *
 * Every operation ends in its caller's done handler, for a WebSocket
 * request and a REST one alike: the store names neither the session nor
 * the REST API.  Its events then go out from here.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_pg.h>
#include <ngx_http_chat_request.h>
#include <ngx_http_chat_message.h>


#define NGX_HTTP_CHAT_BATCH_MAX  128

/* the columns of chat.api_message_send_rows (src/ngx_http_chat_sql.c) */
enum {
    NGX_HTTP_CHAT_ROW_ORD = 0,
    NGX_HTTP_CHAT_ROW_CODE,
    NGX_HTTP_CHAT_ROW_MESSAGE,
    NGX_HTTP_CHAT_ROW_MSG,                 /* a Message's (message.h) */
    NGX_HTTP_CHAT_ROW_RECIPIENTS = NGX_HTTP_CHAT_ROW_MSG
                                   + NGX_HTTP_CHAT_MESSAGE_COLS,
    NGX_HTTP_CHAT_ROW_COLUMNS
};

/* a batch's arrays: users, conversations, bodies, ids, attachments, replies */
#define NGX_HTTP_CHAT_BATCH_ARRAYS  6


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
    size_t                        size;      /* of its request, about */
    ngx_http_chat_op_kind_e       kind;

    /* a send: its fields point into req; the user lives behind the op */
    ngx_http_chat_message_send_t  send;
    json_t                       *req;
    ngx_str_t                     user;
    char                         *attachments;   /* JSON text, or NULL */
    json_t                       *answer;        /* refused by its shape */
    unsigned                      started:1;
    unsigned                      batched:1;
    unsigned                      queued:1;  /* pending, or waiting */
    ngx_msec_t                    since;     /* first of its connection */
} ngx_http_chat_op_t;


typedef struct {
    ngx_http_chat_pg_query_t      q;
    ngx_queue_t                   ops;
    ngx_queue_t                   flight;    /* in ngx_http_chat_in_flight */
    ngx_queue_t                   waiting;   /* first sends it holds up */
    char                         *text;
    ngx_uint_t                    nconvs;
    int64_t                       convs[NGX_HTTP_CHAT_BATCH_MAX]; /* sorted */
} ngx_http_chat_batch_t;


static ngx_http_chat_op_t *ngx_http_chat_store_op(ngx_http_chat_conn_t *wc,
    ngx_uint_t stmt, ngx_http_chat_op_kind_e kind, json_t *id, json_t *arg);
static ngx_http_chat_op_t *ngx_http_chat_store_send(ngx_str_t *user,
    json_t *req, ngx_log_t *log);
static void ngx_http_chat_store_run(ngx_http_chat_conn_t *wc);
static ngx_int_t ngx_http_chat_store_start(ngx_http_chat_op_t *op);
static void ngx_http_chat_store_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_store_complete(ngx_http_chat_op_t *op,
    json_t *result);
static ngx_int_t ngx_http_chat_store_queue_batch(void);
static ngx_int_t ngx_http_chat_store_build_batch(ngx_http_chat_pg_query_t *q);
static ngx_http_chat_batch_t *ngx_http_chat_store_busy(int64_t cid);
static ngx_uint_t ngx_http_chat_store_pend(ngx_http_chat_op_t *op);
static ngx_http_chat_op_t *ngx_http_chat_store_next_send(
    ngx_http_chat_op_t *op);
static int ngx_libc_cdecl ngx_http_chat_store_cmp_conv(const void *a,
    const void *b);
static void ngx_http_chat_store_batch_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static json_t *ngx_http_chat_store_send_result(ngx_http_chat_op_t *op,
    PGresult *res, int row);
static void ngx_http_chat_store_fail_pending(void);
static void ngx_http_chat_store_free(ngx_http_chat_op_t *op);
static json_int_t ngx_http_chat_store_max_bytes(size_t send_buffer);


/* chat_attachment_hosts: for the shape checks, and the batch's $7 */
static const char *const      *ngx_http_chat_store_hosts;
static size_t                  ngx_http_chat_store_nhosts;
static const char             *ngx_http_chat_store_hosts_sql;

/* per worker process */
static ngx_queue_t             ngx_http_chat_pending_sends;
static ngx_http_chat_batch_t  *ngx_http_chat_queued_batch;
static ngx_queue_t             ngx_http_chat_in_flight;    /* batches */


void
ngx_http_chat_store_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    if (cmcf->attachment_hosts != NULL) {
        ngx_http_chat_store_hosts = cmcf->attachment_hosts->elts;
        ngx_http_chat_store_nhosts = cmcf->attachment_hosts->nelts;
        ngx_http_chat_store_hosts_sql = (char *) cmcf->attachment_hosts_sql.data;
    }

    ngx_queue_init(&ngx_http_chat_pending_sends);
    ngx_queue_init(&ngx_http_chat_in_flight);
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
    ngx_http_chat_op_t  *op;

    if (stmt == NGX_HTTP_CHAT_STMT_SEND) {
        op = ngx_http_chat_store_send(user, arg, r->connection->log);
        if (op == NULL) {
            return NGX_ERROR;
        }

        op->done.handler = done;
        op->done.data = r;

        if (op->answer != NULL) {
            ngx_http_chat_store_complete(op, op->answer);

        } else if (ngx_http_chat_store_start(op) != NGX_OK) {
            ngx_http_chat_store_complete(op, NULL);
        }

        return NGX_OK;
    }

    op = ngx_calloc(sizeof(ngx_http_chat_op_t), r->connection->log);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->text = json_dumps(arg, JSON_COMPACT);
    op->kind = NGX_HTTP_CHAT_OP_PLAIN;

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
                if (op->queued) {
                    ngx_queue_remove(&op->batch);
                }

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
    ngx_http_chat_op_t  *op;

    if (kind == NGX_HTTP_CHAT_OP_SEND) {
        op = ngx_http_chat_store_send(&wc->id.id, arg, wc->connection->log);
        if (op == NULL) {
            return NULL;
        }

    } else {
        op = ngx_calloc(sizeof(ngx_http_chat_op_t), wc->connection->log);
        if (op == NULL) {
            return NULL;
        }

        op->text = json_dumps(arg, JSON_COMPACT);
        if (op->text == NULL) {
            ngx_free(op);
            return NULL;
        }

        op->size = ngx_strlen(op->text);

        ngx_http_chat_pg_query_init(&op->q, stmt,
                                    ngx_http_chat_store_handler, op);
        ngx_http_chat_pg_query_param(&op->q, (char *) wc->id.id.data,
                                     wc->id.id.len);
        ngx_http_chat_pg_query_param(&op->q, op->text, op->size);
    }

    op->wc = wc;
    op->kind = kind;
    op->done.id = id ? json_incref(id) : NULL;

    ngx_queue_insert_tail(&wc->ops, &op->session);
    wc->nops++;

    return op;
}


/*
 * A send, checked: the location's length limit is the request's
 * max_length (the caller set it).  A bad one carries its answer.
 */

static ngx_http_chat_op_t *
ngx_http_chat_store_send(ngx_str_t *user, json_t *req, ngx_log_t *log)
{
    json_int_t                    max;
    ngx_http_chat_op_t           *op;
    ngx_http_chat_message_err_t   err;

    op = ngx_calloc(sizeof(ngx_http_chat_op_t) + user->len + 1, log);
    if (op == NULL) {
        return NULL;
    }

    op->user.data = (u_char *) (op + 1);
    op->user.len = user->len;
    ngx_memcpy(op->user.data, user->data, user->len);

    op->kind = NGX_HTTP_CHAT_OP_SEND;

    max = json_integer_value(json_object_get(req, "max_length"));

    if (ngx_http_chat_message_send_check(&op->send, req,
                                         max > 0 ? (size_t) max : 5000,
                                         ngx_http_chat_store_hosts,
                                         ngx_http_chat_store_nhosts, &err)
        != 0)
    {
        op->answer = json_pack("{s:{s:s, s:s}}", "error", "code", err.code,
                               "message", err.message);
        if (op->answer == NULL) {
            ngx_free(op);
            return NULL;
        }

        op->size = 256;
        return op;
    }

    if (op->send.attachments != NULL) {
        op->attachments = json_dumps(op->send.attachments, JSON_COMPACT);
        if (op->attachments == NULL) {
            json_decref(op->send.attachments);
            ngx_free(op);
            return NULL;
        }
    }

    op->req = json_incref(req);

    /* its answer and its event hold about this much */
    op->size = 256 + op->send.body_len + op->send.client_msg_id_len
               + (op->attachments ? ngx_strlen(op->attachments) : 0);

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

            out += 2 * op->size;
            continue;
        }

        /* a send refused by its shape is answered in its turn */
        if (q != ngx_queue_head(&wc->ops)
            && (op->kind != NGX_HTTP_CHAT_OP_SEND
                || op->answer != NULL
                || out + 2 * op->size >= wc->conf->send_buffer))
        {
            return;
        }

        /* answers wait while the client does not read the last ones */
        if (wc->out_bytes >= wc->conf->send_buffer || wc->finalized) {
            return;
        }

        if (op->answer != NULL) {
            /* completing it runs this again for the next one */
            ngx_http_chat_store_complete(op, op->answer);
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

        out += 2 * op->size;
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

    op->started = 1;

    if (op->wc != NULL && ngx_queue_head(&op->wc->ops) != &op->session) {
        /* its connection's pending send before it takes it along */
        return NGX_OK;
    }

    /* the first pending send of its connection waits in the queue */
    if (!ngx_http_chat_store_pend(op)) {
        /* its conversation's batch, when done, sends it */
        return NGX_OK;
    }

    if (ngx_http_chat_queued_batch == NULL
        && ngx_http_chat_store_queue_batch() != NGX_OK)
    {
        ngx_queue_remove(&op->batch);
        op->queued = 0;
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
    ngx_http_chat_op_t    *next;
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

        /*
         * a send that waited behind this one is its connection's first;
         * no batch is queued here: the two callers that can get here with
         * such a send (a batch's handler, fail_pending) queue one, or
         * empty the queue
         */
        next = ngx_queue_empty(&wc->ops)
               ? NULL
               : ngx_queue_data(ngx_queue_head(&wc->ops), ngx_http_chat_op_t,
                                session);

        if (next != NULL && next->kind == NGX_HTTP_CHAT_OP_SEND
            && next->started && !next->batched && !next->queued)
        {
            (void) ngx_http_chat_store_pend(next);
        }
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
    ngx_queue_init(&b->waiting);

    /* the parameters, the batch, are made when the query is sent */
    ngx_http_chat_pg_query_init(&b->q, NGX_HTTP_CHAT_STMT_SEND,
                                ngx_http_chat_store_batch_handler, b);
    b->q.nparams = NGX_HTTP_CHAT_BATCH_ARRAYS + 1;

    /* links only to these hosts, SQL NULL: none (only nginx passes any) */
    b->q.values[NGX_HTTP_CHAT_BATCH_ARRAYS] = ngx_http_chat_store_hosts_sql;
    b->q.build = ngx_http_chat_store_build_batch;

    ngx_http_chat_queued_batch = b;

    if (ngx_http_chat_pg_query(&b->q) != NGX_OK) {
        ngx_http_chat_queued_batch = NULL;
        ngx_free(b);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The batch as one array literal per field, in one allocation: users,
 * conversation ids, bodies, client ids, attachments, reply_to.
 */

static ngx_int_t
ngx_http_chat_store_build_batch(ngx_http_chat_pg_query_t *q)
{
    char                   *p[NGX_HTTP_CHAT_BATCH_ARRAYS];
    size_t                  len[NGX_HTTP_CHAT_BATCH_ARRAYS], total;
    int64_t                 cid;
    ngx_uint_t              i, k, n;
    ngx_queue_t            *qn, *qnext;
    ngx_http_chat_op_t     *op, *taken[NGX_HTTP_CHAT_BATCH_MAX];
    ngx_http_chat_batch_t  *b, *f;

    b = q->data;

    ngx_http_chat_queued_batch = NULL;

    for (i = 0; i < NGX_HTTP_CHAT_BATCH_ARRAYS; i++) {
        len[i] = sizeof("{}");
    }

    n = 0;
    b->nconvs = 0;

    /*
     * Each connection's first pending send, in the order they came, with
     * the sends of that connection after it; a conversation that another
     * batch in flight holds stops its connection here.
     */

    for (qn = ngx_queue_head(&ngx_http_chat_pending_sends);
         qn != ngx_queue_sentinel(&ngx_http_chat_pending_sends)
         && n < NGX_HTTP_CHAT_BATCH_MAX;
         qn = qnext)
    {
        qnext = ngx_queue_next(qn);

        for (op = ngx_queue_data(qn, ngx_http_chat_op_t, batch);
             op != NULL && n < NGX_HTTP_CHAT_BATCH_MAX;
             op = ngx_http_chat_store_next_send(op))
        {
            cid = op->send.conversation_id;

            f = ngx_http_chat_store_busy(cid);

            if (f != NULL) {
                if (&op->batch == qn) {
                    /* a first send waits with the batch, not scanned again */
                    ngx_queue_remove(qn);
                    ngx_queue_insert_tail(&f->waiting, qn);
                }

                break;
            }

            for (i = 0; i < b->nconvs && b->convs[i] != cid; i++) {
                /* void */
            }

            if (i == b->nconvs) {
                b->convs[b->nconvs++] = cid;
            }

            taken[n++] = op;

            /* each element and its comma */
            len[0] += ngx_http_chat_message_quote(NULL,
                                                  (char *) op->user.data,
                                                  op->user.len) + 1;
            len[1] += NGX_INT64_LEN + 1;
            len[2] += ngx_http_chat_message_quote(NULL, op->send.body,
                                                  op->send.body_len) + 1;
            len[3] += ngx_http_chat_message_quote(NULL,
                                                  op->send.client_msg_id,
                                                  op->send.client_msg_id_len)
                      + 1;
            len[4] += (op->attachments
                       ? ngx_http_chat_message_quote(NULL, op->attachments,
                                                  ngx_strlen(op->attachments))
                       : sizeof("NULL") - 1) + 1;
            len[5] += NGX_INT64_LEN + 1;
        }
    }

    if (n == 0) {
        /* all wait for batches in flight: the first to finish sends them */
        ngx_free(b);
        return NGX_DECLINED;
    }

    total = 0;

    for (i = 0; i < NGX_HTTP_CHAT_BATCH_ARRAYS; i++) {
        total += len[i];
    }

    b->text = ngx_alloc(total, ngx_cycle->log);
    if (b->text == NULL) {
        /* the sends stay pending: the next batch, or the expiry, has them */
        ngx_free(b);
        return NGX_DECLINED;
    }

    for (i = 0; i < NGX_HTTP_CHAT_BATCH_ARRAYS; i++) {
        p[i] = (i == 0) ? b->text : (char *) b->q.values[i - 1] + len[i - 1];
        b->q.values[i] = p[i];
        *p[i]++ = '{';
    }

    for (k = 0; k < n; k++) {
        op = taken[k];

        if (op->queued) {
            ngx_queue_remove(&op->batch);
            op->queued = 0;
        }

        ngx_queue_insert_tail(&b->ops, &op->batch);
        op->batched = 1;

        p[0] += ngx_http_chat_message_quote(p[0], (char *) op->user.data,
                                            op->user.len);
        p[1] = (char *) ngx_sprintf((u_char *) p[1], "%L",
                                    (int64_t) op->send.conversation_id);
        p[2] += ngx_http_chat_message_quote(p[2], op->send.body,
                                            op->send.body_len);
        p[3] += ngx_http_chat_message_quote(p[3], op->send.client_msg_id,
                                            op->send.client_msg_id_len);

        if (op->attachments) {
            p[4] += ngx_http_chat_message_quote(p[4], op->attachments,
                                                ngx_strlen(op->attachments));

        } else {
            p[4] = (char *) ngx_cpymem(p[4], "NULL", sizeof("NULL") - 1);
        }

        if (op->send.reply_to) {
            p[5] = (char *) ngx_sprintf((u_char *) p[5], "%L",
                                        (int64_t) op->send.reply_to);

        } else {
            p[5] = (char *) ngx_cpymem(p[5], "NULL", sizeof("NULL") - 1);
        }

        for (i = 0; i < NGX_HTTP_CHAT_BATCH_ARRAYS; i++) {
            *p[i]++ = (k + 1 < n) ? ',' : '}';
        }
    }

    for (i = 0; i < NGX_HTTP_CHAT_BATCH_ARRAYS; i++) {
        *p[i] = '\0';
        b->q.lengths[i] = (int) (p[i] - b->q.values[i]);
    }

    ngx_qsort(b->convs, b->nconvs, sizeof(int64_t),
              ngx_http_chat_store_cmp_conv);

    ngx_queue_insert_tail(&ngx_http_chat_in_flight, &b->flight);

    /* more than one batch holds: the rest goes to the next connection */

    if (!ngx_queue_empty(&ngx_http_chat_pending_sends)
        && ngx_http_chat_store_queue_batch() != NGX_OK)
    {
        ngx_http_chat_store_fail_pending();
    }

    return NGX_OK;
}


/* whether a batch in flight holds the conversation (and its lock) */

static ngx_http_chat_batch_t *
ngx_http_chat_store_busy(int64_t cid)
{
    ngx_uint_t              lo, hi, mid;
    ngx_queue_t            *q;
    ngx_http_chat_batch_t  *f;

    for (q = ngx_queue_head(&ngx_http_chat_in_flight);
         q != ngx_queue_sentinel(&ngx_http_chat_in_flight);
         q = ngx_queue_next(q))
    {
        f = ngx_queue_data(q, ngx_http_chat_batch_t, flight);

        lo = 0;
        hi = f->nconvs;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;

            if (f->convs[mid] < cid) {
                lo = mid + 1;

            } else {
                hi = mid;
            }
        }

        if (lo < f->nconvs && f->convs[lo] == cid) {
            return f;
        }
    }

    return NULL;
}


/* a first send waits for a batch, or with the batch that holds it up */

static ngx_uint_t
ngx_http_chat_store_pend(ngx_http_chat_op_t *op)
{
    ngx_http_chat_batch_t  *f;

    op->queued = 1;
    op->since = ngx_current_msec;

    f = ngx_http_chat_store_busy(op->send.conversation_id);

    if (f != NULL) {
        ngx_queue_insert_tail(&f->waiting, &op->batch);
        return 0;
    }

    ngx_queue_insert_tail(&ngx_http_chat_pending_sends, &op->batch);
    return 1;
}


/* the pending send of op's connection after op, if any */

static ngx_http_chat_op_t *
ngx_http_chat_store_next_send(ngx_http_chat_op_t *op)
{
    ngx_queue_t         *q;
    ngx_http_chat_op_t  *next;

    if (op->wc == NULL) {
        return NULL;
    }

    q = ngx_queue_next(&op->session);

    if (q == ngx_queue_sentinel(&op->wc->ops)) {
        return NULL;
    }

    next = ngx_queue_data(q, ngx_http_chat_op_t, session);

    /* only pending sends follow a started one (ngx_http_chat_store_run) */
    return (next->kind == NGX_HTTP_CHAT_OP_SEND && next->started
            && !next->batched) ? next : NULL;
}


static int ngx_libc_cdecl
ngx_http_chat_store_cmp_conv(const void *a, const void *b)
{
    int64_t  x, y;

    x = *(const int64_t *) a;
    y = *(const int64_t *) b;

    return (x > y) - (x < y);
}


static void
ngx_http_chat_store_batch_handler(ngx_http_chat_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    int                     i, rows;
    json_t                 *result;
    ngx_msec_t              limit;
    ngx_queue_t            *qn, expired;
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

    /* its conversations are free before its answers start new sends */
    ngx_queue_remove(&b->flight);

    /*
     * The sends it held up go first again, but one that waited longer
     * than a query may wait for a connection is answered "unavailable".
     */
    ngx_queue_init(&expired);
    limit = ngx_http_chat_pg_queue_timeout();

    while (!ngx_queue_empty(&b->waiting)) {
        qn = ngx_queue_last(&b->waiting);
        op = ngx_queue_data(qn, ngx_http_chat_op_t, batch);

        ngx_queue_remove(qn);

        if (ngx_current_msec - op->since >= limit) {
            op->queued = 0;
            op->batched = 1;
            ngx_queue_insert_head(&expired, qn);
            continue;
        }

        ngx_queue_insert_head(&ngx_http_chat_pending_sends, qn);
    }

    rows = 0;

    if (rc == NGX_OK && res != NULL) {
        rows = PQntuples(res);

        if (PQnfields(res) != NGX_HTTP_CHAT_ROW_COLUMNS) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "chat: the send batch returned %d columns, not %d",
                          PQnfields(res), NGX_HTTP_CHAT_ROW_COLUMNS);
            rows = 0;
        }
    }

    i = 0;

    while (!ngx_queue_empty(&b->ops)) {
        qn = ngx_queue_head(&b->ops);
        op = ngx_queue_data(qn, ngx_http_chat_op_t, batch);

        ngx_queue_remove(qn);

        result = (i < rows) ? ngx_http_chat_store_send_result(op, res, i)
                            : NULL;
        i++;

        ngx_http_chat_store_complete(op, result);

        if (result != NULL) {
            json_decref(result);
        }
    }

    ngx_free(b->text);
    ngx_free(b);

    while (!ngx_queue_empty(&expired)) {
        qn = ngx_queue_head(&expired);
        op = ngx_queue_data(qn, ngx_http_chat_op_t, batch);

        ngx_queue_remove(qn);
        ngx_http_chat_count(pg_unavailable, 1);
        ngx_http_chat_store_complete(op, NULL);
    }

    /* sends that waited for its conversations */
    if (!ngx_queue_empty(&ngx_http_chat_pending_sends)
        && ngx_http_chat_queued_batch == NULL
        && ngx_http_chat_store_queue_batch() != NGX_OK)
    {
        ngx_http_chat_store_fail_pending();
    }
}


/*
 * A send's answer from its row: {"error": E}, or {"ok": {"message": M}}
 * and, when it was stored now, its message.created event to the
 * recipients.  The strings PostgreSQL returned become JSON values
 * directly; the message object is shared by the answer and the event.
 */

static json_t *
ngx_http_chat_store_send_result(ngx_http_chat_op_t *op, PGresult *res,
    int row)
{
    int                           c, len[NGX_HTTP_CHAT_ROW_COLUMNS];
    json_t                       *msg, *to;
    const char                   *v[NGX_HTTP_CHAT_ROW_COLUMNS];
    ngx_http_chat_message_row_t   m;

    for (c = 0; c < NGX_HTTP_CHAT_ROW_COLUMNS; c++) {
        v[c] = PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
        len[c] = PQgetlength(res, row, c);
    }

    if (v[NGX_HTTP_CHAT_ROW_ORD] == NULL
        || ngx_atoi((u_char *) v[NGX_HTTP_CHAT_ROW_ORD],
                    ngx_strlen(v[NGX_HTTP_CHAT_ROW_ORD]))
           != row + 1)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: the send batch answered out of order");
        return NULL;
    }

    if (v[NGX_HTTP_CHAT_ROW_CODE] != NULL) {
        return json_pack("{s:{s:s, s:s}}", "error",
                         "code", v[NGX_HTTP_CHAT_ROW_CODE],
                         "message", v[NGX_HTTP_CHAT_ROW_MESSAGE]
                                    ? v[NGX_HTTP_CHAT_ROW_MESSAGE] : "");
    }

    if (ngx_http_chat_message_row_columns(&m, &v[NGX_HTTP_CHAT_ROW_MSG],
                                          &len[NGX_HTTP_CHAT_ROW_MSG])
        != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: the send batch returned a message without id");
        return NULL;
    }

    /* the key of a send is its message's: conversation, sender, client id */

    m.conversation_id = op->send.conversation_id;
    m.sender_id = (char *) op->user.data;
    m.sender_id_len = op->user.len;
    m.client_msg_id = op->send.client_msg_id;
    m.client_msg_id_len = op->send.client_msg_id_len;

    msg = ngx_http_chat_message_obj(&m);
    if (msg == NULL) {
        return NULL;
    }

    /* a retry, or a repeat within the batch: nobody hears it again */

    if (v[NGX_HTTP_CHAT_ROW_RECIPIENTS] == NULL) {
        return json_pack("{s:{s:o}}", "ok", "message", msg);
    }

    to = ngx_http_chat_message_text_array(v[NGX_HTTP_CHAT_ROW_RECIPIENTS],
                                          len[NGX_HTTP_CHAT_ROW_RECIPIENTS]);
    if (to == NULL) {
        json_decref(msg);
        return NULL;
    }

    return json_pack("{s:{s:O}, s:[{s:o, s:{s:s, s:o}}]}",
                     "ok", "message", msg,
                     "events", "to", to,
                     "event", "type", "message.created", "message", msg);
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
        op->queued = 0;
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

    if (op->req != NULL) {
        json_decref(op->req);
    }

    if (op->answer != NULL) {
        json_decref(op->answer);
    }

    if (op->send.attachments != NULL) {
        json_decref(op->send.attachments);
    }

    free(op->attachments);
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
