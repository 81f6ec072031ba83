
/*
 * Several nginx nodes over one PostgreSQL (chat_cluster on).
 *
 * Nothing but PostgreSQL is shared.  What a node makes (every event goes
 * through ngx_http_chat_route_event) it also tells the others, after the
 * commit, by NOTIFY chat_cluster, many small payloads per transaction:
 *
 *   ["m", conversation, from, to]   message changes: a seq range, read
 *                                   from chat.messages by the receivers;
 *   ["e", event, to]                typing, receipts, presence: the event
 *                                   itself, when it fits in a payload;
 *   ["p", user, online, last_seen]  a user's first connection on the node
 *                                   came, or its last one went.
 *
 * Conversation and member events, and what does not fit in a payload, go
 * through chat.outbox instead (durable; the outbox reader of every node
 * but this one delivers them).  Each worker's first pool connection
 * LISTENs; a worker reads the ranges it has not delivered (order.c knows
 * the last number per conversation, so a notice that skips numbers reads
 * the gap too) and fans out to its own connections.
 *
 * Every two seconds each worker makes a round trip on its listening
 * connection (a half-open one times out and is made again): it renews the
 * node's lease, learns which conversations it follows went further than
 * it delivered (a lost notice, a lost connection, a restarted PostgreSQL)
 * and which nodes are alive; the first node to see another's lease expire
 * announces that node's users offline.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_pg.h>
#include <ngx_http_chat_zone.h>


#define NGX_HTTP_CHAT_CLUSTER_PAYLOAD  7600    /* NOTIFY takes 8000 bytes */
#define NGX_HTTP_CHAT_CLUSTER_NOTICES  64      /* per NOTIFY transaction */
#define NGX_HTTP_CHAT_CLUSTER_BACKLOG  100000  /* notices waiting, at most */
#define NGX_HTTP_CHAT_CLUSTER_TICK     2000    /* ms between round trips */
#define NGX_HTTP_CHAT_CLUSTER_LEASE    10      /* s a silent node lives */
#define NGX_HTTP_CHAT_CLUSTER_HEADS    5000    /* conversations checked */


typedef struct {
    ngx_http_chat_pg_query_t      q;
    char                         *text;
    json_t                       *data;     /* what the query is about */
    unsigned                      busy:1;
} ngx_http_chat_cluster_call_t;


typedef struct {
    ngx_str_t                     node;
    u_char                        node_data[128];
    time_t                        started;

    /* to the other nodes */
    json_t                       *ranges;   /* {"cid": [from, to]} */
    json_t                       *notices;  /* serialized "e" and "p" items */
    json_t                       *durable;  /* [{to, event}]: chat.outbox */
    ngx_event_t                   flush;
    ngx_http_chat_cluster_call_t  notify;
    ngx_http_chat_cluster_call_t  outbox;

    /* from the other nodes */
    json_t                       *want;     /* {"cid": [after, before]} */
    ngx_http_chat_cluster_call_t  read;

    /* the round trip */
    ngx_event_t                   tick;
    ngx_http_chat_cluster_call_t  ticker;
    ngx_http_chat_cluster_call_t  online;
    ngx_http_chat_cluster_call_t  claim;
    ngx_http_chat_cluster_call_t  join;

    unsigned                      enabled:1;
    unsigned                      active:1;
    unsigned                      reload_online:1;
} ngx_http_chat_cluster_t;


static void ngx_http_chat_cluster_flush(ngx_event_t *ev);
static ngx_int_t ngx_http_chat_cluster_send(ngx_http_chat_cluster_call_t *c,
    ngx_uint_t stmt, json_t *arg, ngx_http_chat_pg_handler_pt handler,
    ngx_uint_t listener);
static void ngx_http_chat_cluster_done(ngx_http_chat_cluster_call_t *c);
static json_t *ngx_http_chat_cluster_result(ngx_int_t rc, PGresult *res);
static void ngx_http_chat_cluster_route(json_t *result);
static void ngx_http_chat_cluster_sent_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_cluster_unask(json_t *ranges);
static void ngx_http_chat_cluster_want(ngx_uint_t cid, int64_t from,
    int64_t to);
static time_t ngx_http_chat_cluster_time(u_char *p, size_t len);
static void ngx_http_chat_cluster_read(void);
static void ngx_http_chat_cluster_read_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_cluster_tick(ngx_event_t *ev);
static void ngx_http_chat_cluster_tick_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_cluster_online_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_cluster_plain_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);


/* per worker process */
static ngx_http_chat_cluster_t  ngx_http_chat_cluster;


ngx_int_t
ngx_http_chat_cluster_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    u_char                   *p, *port;
    size_t                    n;
    ngx_uint_t                join;
    ngx_listening_t          *ls;
    ngx_http_chat_zone_t     *zone;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    if (!cmcf->cluster) {
        return NGX_OK;
    }

    /* the node's name: chat_node_id, else host name and port */

    if (cmcf->node_id.len) {
        p = ngx_cpymem(cl->node_data, cmcf->node_id.data, cmcf->node_id.len);

    } else {
        port = (u_char *) "0";
        n = 1;

        if (cycle->listening.nelts) {
            ls = cycle->listening.elts;
            port = ngx_strlchr(ls[0].addr_text.data,
                               ls[0].addr_text.data + ls[0].addr_text.len,
                               ']');
            port = ngx_strlchr(port ? port : ls[0].addr_text.data,
                               ls[0].addr_text.data + ls[0].addr_text.len,
                               ':');
            if (port) {
                port++;
                n = ls[0].addr_text.data + ls[0].addr_text.len - port;
            } else {
                port = (u_char *) "0";
            }
        }

        n = ngx_min(n, 8);
        p = ngx_snprintf(cl->node_data, 64, "%V", &cycle->hostname);
        p = ngx_snprintf(p, 10, ":%*s", n, port);
    }

    cl->node.data = cl->node_data;
    cl->node.len = p - cl->node_data;
    *p = '\0';                    /* a libpq parameter as it is */

    cl->ranges = json_object();
    cl->notices = json_array();
    cl->durable = json_array();
    cl->want = json_object();

    if (cl->ranges == NULL || cl->notices == NULL || cl->durable == NULL
        || cl->want == NULL)
    {
        return NGX_ERROR;
    }

    cl->flush.handler = ngx_http_chat_cluster_flush;
    cl->flush.log = cycle->log;
    cl->flush.data = cl;

    cl->tick.handler = ngx_http_chat_cluster_tick;
    cl->tick.log = cycle->log;
    cl->tick.data = cl;
    cl->tick.cancelable = 1;

    cl->enabled = 1;
    cl->active = 1;

    /* the first worker of this node's zone forgets what a last run left */

    zone = ngx_http_chat_zone;
    join = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if (!zone->sh->cluster_joined) {
        zone->sh->cluster_joined = ngx_time();
        join = 1;
    }

    cl->started = (time_t) zone->sh->cluster_joined;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (join) {
        cl->join.data = json_pack("{s:I}", "started",
                                  (json_int_t) cl->started);
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "chat: cluster node \"%V\"", &cl->node);

    ngx_add_timer(&cl->tick, NGX_HTTP_CHAT_CLUSTER_TICK);

    return NGX_OK;
}


void
ngx_http_chat_cluster_exit_process(void)
{
    ngx_http_chat_cluster.active = 0;
}


ngx_uint_t
ngx_http_chat_cluster_enabled(void)
{
    return ngx_http_chat_cluster.enabled;
}


ngx_str_t *
ngx_http_chat_cluster_node(void)
{
    return &ngx_http_chat_cluster.node;
}


/* ------------------------------------------------------------ publishing */

/* an event made on this node: what the other nodes need of it */

void
ngx_http_chat_cluster_publish(json_t *event, json_t *to)
{
    char                     *text;
    int64_t                   n, from, upto;
    json_t                   *message, *range, *item;
    const char               *type;
    ngx_http_chat_cluster_t  *cl;
    u_char                    key[NGX_INT64_LEN + 1];

    cl = &ngx_http_chat_cluster;

    if (!cl->active) {
        return;
    }

    type = json_string_value(json_object_get(event, "type"));
    if (type == NULL) {
        return;
    }

    message = json_object_get(event, "message");

    if (ngx_strncmp(type, "message.", 8) == 0 && json_is_object(message)) {

        /* a range per conversation: bodies are read, never notified */

        n = json_integer_value(json_object_get(message,
                                   ngx_strcmp(type, "message.created") == 0
                                   ? "seq" : "updated_seq"));

        *ngx_sprintf(key, "%L", json_integer_value(
                         json_object_get(message, "conversation_id"))) = '\0';

        range = json_object_get(cl->ranges, (char *) key);

        if (range == NULL) {
            (void) json_object_set_new(cl->ranges, (char *) key,
                                       json_pack("[I, I]", (json_int_t) n,
                                                 (json_int_t) n));
        } else {
            from = json_integer_value(json_array_get(range, 0));
            upto = json_integer_value(json_array_get(range, 1));

            (void) json_array_set_new(range, 0,
                                      json_integer(ngx_min(from, n)));
            (void) json_array_set_new(range, 1,
                                      json_integer(ngx_max(upto, n)));
        }

    } else if (ngx_strncmp(type, "conversation.", 13) == 0
               || ngx_strncmp(type, "member.", 7) == 0)
    {
        /* these must not be lost, and may be large: chat.outbox */
        (void) json_array_append_new(cl->durable,
                                     json_pack("{s:O, s:O}", "to", to,
                                               "event", event));

    } else {
        item = json_pack("[s, O, O]", "e", event, to);
        text = item ? json_dumps(item, JSON_COMPACT) : NULL;
        json_decref(item);

        if (text == NULL) {
            return;
        }

        if (ngx_strlen(text) + 128 + cl->node.len
            <= NGX_HTTP_CHAT_CLUSTER_PAYLOAD)
        {
            if (json_array_size(cl->notices) < NGX_HTTP_CHAT_CLUSTER_BACKLOG)
            {
                (void) json_array_append_new(cl->notices, json_string(text));
            }

        } else if (ngx_strcmp(type, "typing") != 0) {
            /* too many recipients for a notice: a row (typing may go) */
            (void) json_array_append_new(cl->durable,
                                         json_pack("{s:O, s:O}", "to", to,
                                                   "event", event));
        }

        free(text);
    }

    if (!cl->flush.posted) {
        ngx_post_event(&cl->flush, &ngx_posted_events);
    }
}


/* a user's first connection on this node came, or its last one went */

void
ngx_http_chat_cluster_presence(u_char *user, size_t len, ngx_uint_t online,
    time_t last_seen)
{
    u_char                   *e;
    char                     *text;
    json_t                   *item;
    ngx_http_chat_cluster_t  *cl;
    u_char                    seen[NGX_HTTP_CHAT_TIME_LEN];

    cl = &ngx_http_chat_cluster;

    if (!cl->active) {
        return;
    }

    if (last_seen) {
        e = ngx_http_chat_time(seen, last_seen, 0);
        item = json_pack("[s, s%, b, s%]", "p", user, len, online,
                         seen, (size_t) (e - seen));
    } else {
        item = json_pack("[s, s%, b, n]", "p", user, len, online);
    }

    text = item ? json_dumps(item, JSON_COMPACT) : NULL;
    json_decref(item);

    if (text == NULL) {
        return;
    }

    (void) json_array_append_new(cl->notices, json_string(text));
    free(text);

    if (!cl->flush.posted) {
        ngx_post_event(&cl->flush, &ngx_posted_events);
    }
}


/*
 * What waits goes out: notices packed into payloads, one transaction of
 * NOTIFYs at a time; rows for chat.outbox, one INSERT at a time.
 */

static void
ngx_http_chat_cluster_flush(ngx_event_t *ev)
{
    u_char                   *p, *last;
    char                     *text;
    size_t                    len;
    json_t                   *payloads, *range, *arg, *rest;
    ngx_uint_t                i, taken;
    const char               *key;
    ngx_http_chat_cluster_t  *cl;
    u_char                    buf[NGX_HTTP_CHAT_CLUSTER_PAYLOAD + 1];
    u_char                    item[128];

    cl = ev->data;

    if (!cl->active) {
        return;
    }

    /* the ranges become notices too */

    json_object_foreach(cl->ranges, key, range) {
        p = ngx_snprintf(item, sizeof(item) - 1, "[\"m\",%s,%L,%L]", key,
                         json_integer_value(json_array_get(range, 0)),
                         json_integer_value(json_array_get(range, 1)));
        *p = '\0';
        (void) json_array_append_new(cl->notices, json_string((char *) item));
    }

    json_object_clear(cl->ranges);

    if (!cl->notify.busy && json_array_size(cl->notices)) {

        payloads = json_array();
        if (payloads == NULL) {
            return;
        }

        last = buf + NGX_HTTP_CHAT_CLUSTER_PAYLOAD;
        taken = 0;

        while (taken < json_array_size(cl->notices)
               && json_array_size(payloads) < NGX_HTTP_CHAT_CLUSTER_NOTICES)
        {
            p = ngx_snprintf(buf, NGX_HTTP_CHAT_CLUSTER_PAYLOAD,
                             "{\"o\":\"%V\",\"x\":[", &cl->node);

            for (i = 0; taken < json_array_size(cl->notices); i++) {
                text = (char *) json_string_value(json_array_get(cl->notices,
                                                                 taken));
                len = ngx_strlen(text);

                if (p + len + 3 > last) {
                    if (i == 0) {
                        /* cannot fit (publish keeps them smaller) */
                        taken++;
                    }

                    break;
                }

                if (i) {
                    *p++ = ',';
                }

                p = ngx_cpymem(p, text, len);
                taken++;
            }

            if (i == 0) {
                continue;
            }

            *p++ = ']';
            *p++ = '}';

            (void) json_array_append_new(payloads,
                                         json_stringn((char *) buf,
                                                      p - buf));
        }

        rest = json_array();

        if (rest != NULL) {
            for (i = taken; i < json_array_size(cl->notices); i++) {
                (void) json_array_append(rest,
                                         json_array_get(cl->notices, i));
            }

            json_decref(cl->notices);
            cl->notices = rest;
        }

        arg = json_pack("{s:o}", "payloads", payloads);

        if (arg != NULL) {
            (void) ngx_http_chat_cluster_send(&cl->notify,
                                   NGX_HTTP_CHAT_STMT_CLUSTER_NOTIFY, arg,
                                   ngx_http_chat_cluster_sent_handler, 0);
            json_decref(arg);
        }
    }

    if (!cl->outbox.busy && json_array_size(cl->durable)) {
        arg = json_pack("{s:O}", "events", cl->durable);

        if (arg != NULL) {
            if (ngx_http_chat_cluster_send(&cl->outbox,
                                   NGX_HTTP_CHAT_STMT_CLUSTER_OUTBOX, arg,
                                   ngx_http_chat_cluster_sent_handler, 0)
                == NGX_OK)
            {
                json_array_clear(cl->durable);
            }

            json_decref(arg);
        }
    }
}


/* p_user is the node; a call at a time per kind */

static ngx_int_t
ngx_http_chat_cluster_send(ngx_http_chat_cluster_call_t *c, ngx_uint_t stmt,
    json_t *arg, ngx_http_chat_pg_handler_pt handler, ngx_uint_t listener)
{
    ngx_int_t                 rc;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    c->text = json_dumps(arg, JSON_COMPACT);
    if (c->text == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&c->q, sizeof(ngx_http_chat_pg_query_t));

    c->q.stmt = stmt;
    c->q.nparams = 2;
    c->q.values[0] = (char *) cl->node_data;
    c->q.lengths[0] = (int) cl->node.len;
    c->q.values[1] = c->text;
    c->q.lengths[1] = (int) ngx_strlen(c->text);
    c->q.handler = handler;
    c->q.data = c;

    rc = listener ? ngx_http_chat_pg_listener_query(&c->q)
                  : ngx_http_chat_pg_query(&c->q);

    if (rc != NGX_OK) {
        free(c->text);
        c->text = NULL;
        return NGX_DECLINED;
    }

    c->busy = 1;

    return NGX_OK;
}


static void
ngx_http_chat_cluster_done(ngx_http_chat_cluster_call_t *c)
{
    c->busy = 0;

    free(c->text);
    c->text = NULL;
}


static json_t *
ngx_http_chat_cluster_result(ngx_int_t rc, PGresult *res)
{
    u_char        msg[NGX_HTTP_CHAT_PG_ERR_MAX];
    json_error_t  err;

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "chat: cluster: %s",
                      ngx_http_chat_pg_fold(msg, sizeof(msg),
                                            PQresultErrorMessage(res)));
        return NULL;
    }

    if (rc != NGX_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        return NULL;
    }

    return json_loadb(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0), 0,
                      &err);
}


/* events PostgreSQL made for this node to send (presence): everywhere */

static void
ngx_http_chat_cluster_route(json_t *result)
{
    size_t   i;
    json_t  *ev;

    json_array_foreach(json_object_get(result, "events"), i, ev) {
        ngx_http_chat_route_event(json_object_get(ev, "event"),
                                  json_object_get(ev, "to"), ngx_cycle->log);
    }
}


/* NOTIFYs or an outbox row went out; what waited meanwhile follows */

static void
ngx_http_chat_cluster_sent_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res)
{
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    ngx_http_chat_cluster_done(q->data);

    if (rc != NGX_OK) {
        /* the other nodes find lost messages by their round trip */
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: cluster: %s for the other nodes were lost",
                      q->data == &cl->notify ? "notices"
                                             : "conversation events");
    }

    if (cl->active && !cl->flush.posted
        && (json_array_size(cl->notices) || json_array_size(cl->durable)))
    {
        ngx_post_event(&cl->flush, &ngx_posted_events);
    }
}


/* ------------------------------------------------------------- receiving */

void
ngx_http_chat_cluster_notified(u_char *payload, size_t len)
{
    size_t                    i;
    json_t                   *msg, *item, *x, *ls, *user;
    time_t                    seen;
    ngx_str_t                 origin;
    const char               *tag, *type;
    json_error_t              err;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    if (!cl->active) {
        return;
    }

    msg = json_loadb((char *) payload, len, 0, &err);

    if (msg == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: cluster: invalid notice: %s", err.text);
        return;
    }

    origin.data = (u_char *) json_string_value(json_object_get(msg, "o"));
    origin.len = json_string_length(json_object_get(msg, "o"));

    if (origin.data == NULL
        || (origin.len == cl->node.len
            && ngx_memcmp(origin.data, cl->node.data, origin.len) == 0))
    {
        /* this node's: delivered through the zone already */
        json_decref(msg);
        return;
    }

    x = json_object_get(msg, "x");

    /* nodes run the same code, but a notice is checked like any input */

    json_array_foreach(x, i, item) {
        tag = json_string_value(json_array_get(item, 0));

        if (tag == NULL || tag[0] == '\0' || tag[1] != '\0') {
            continue;
        }

        switch (tag[0]) {

        case 'm':
            if (!json_is_integer(json_array_get(item, 1))
                || json_integer_value(json_array_get(item, 1)) <= 0
                || !json_is_integer(json_array_get(item, 2))
                || !json_is_integer(json_array_get(item, 3)))
            {
                break;
            }

            ngx_http_chat_cluster_want(
                (ngx_uint_t) json_integer_value(json_array_get(item, 1)),
                json_integer_value(json_array_get(item, 2)),
                json_integer_value(json_array_get(item, 3)));
            break;

        case 'e':
            /* only what publish() sends so: message changes are read */
            type = json_string_value(json_object_get(json_array_get(item, 1),
                                                     "type"));

            if (type == NULL || !json_is_array(json_array_get(item, 2))
                || (ngx_strcmp(type, "typing") != 0
                    && ngx_strcmp(type, "receipt") != 0
                    && ngx_strcmp(type, "presence") != 0))
            {
                break;
            }

            ngx_http_chat_fanout_event(json_array_get(item, 1),
                                       json_array_get(item, 2),
                                       ngx_cycle->log);
            break;

        case 'p':
            user = json_array_get(item, 1);

            if (!json_is_string(user) || json_string_length(user) == 0
                || json_string_length(user) > NGX_HTTP_CHAT_JWT_MAX_SUB)
            {
                break;
            }

            ls = json_array_get(item, 3);
            seen = json_is_string(ls)
                   ? ngx_http_chat_cluster_time(
                         (u_char *) json_string_value(ls),
                         json_string_length(ls))
                   : 0;

            ngx_http_chat_presence_remote(
                (u_char *) json_string_value(user),
                json_string_length(user), &origin,
                json_is_true(json_array_get(item, 2)), seen);
            break;
        }
    }

    json_decref(msg);

    ngx_http_chat_cluster_read();
}


/* "2026-11-21T10:00:00.123Z" (ours, RFC 3339 UTC); now if it is not */

static time_t
ngx_http_chat_cluster_time(u_char *p, size_t len)
{
    ngx_int_t  y, mo, d, h, mi, s, days;

    if (len < 19 || p[4] != '-' || p[7] != '-' || p[10] != 'T'
        || p[13] != ':' || p[16] != ':')
    {
        return ngx_time();
    }

    y = ngx_atoi(p, 4);
    mo = ngx_atoi(p + 5, 2);
    d = ngx_atoi(p + 8, 2);
    h = ngx_atoi(p + 11, 2);
    mi = ngx_atoi(p + 14, 2);
    s = ngx_atoi(p + 17, 2);

    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23
        || mi < 0 || mi > 59 || s < 0 || s > 60)
    {
        return ngx_time();
    }

    /* days since 1970-01-01 of a proleptic Gregorian date */

    if (mo <= 2) {
        y--;
        mo += 12;
    }

    days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (mo - 3) + 2) / 5
           + d - 719469;

    return (time_t) days * 86400 + h * 3600 + mi * 60 + s;
}


static void
ngx_http_chat_cluster_want(ngx_uint_t cid, int64_t from, int64_t to)
{
    int64_t                   after, upto;
    json_t                   *range;
    ngx_http_chat_cluster_t  *cl;
    u_char                    key[NGX_INT64_LEN + 1];

    cl = &ngx_http_chat_cluster;

    if (cid == 0 || from <= 0 || to < from) {
        return;
    }

    if (ngx_http_chat_order_want(cid, from, to, &after, &upto) != NGX_OK) {
        return;
    }

    *ngx_sprintf(key, "%ui", cid) = '\0';

    range = json_object_get(cl->want, (char *) key);

    if (range == NULL) {
        (void) json_object_set_new(cl->want, (char *) key,
                                   json_pack("[I, I]", (json_int_t) after,
                                             (json_int_t) upto + 1));
    } else {
        (void) json_array_set_new(range, 1, json_integer(upto + 1));
    }
}


/* one read at a time: what was asked meanwhile goes with the next one */

static void
ngx_http_chat_cluster_read(void)
{
    json_t                   *ranges, *range, *arg;
    const char               *key;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    if (cl->read.busy || json_object_size(cl->want) == 0 || !cl->active) {
        return;
    }

    ranges = json_array();
    if (ranges == NULL) {
        return;
    }

    json_object_foreach(cl->want, key, range) {
        (void) json_array_append_new(ranges,
                     json_pack("[I, O, O]", (json_int_t) ngx_atoi(
                                   (u_char *) key, ngx_strlen(key)),
                               json_array_get(range, 0),
                               json_array_get(range, 1)));
    }

    json_object_clear(cl->want);

    arg = json_pack("{s:o}", "ranges", ranges);
    if (arg == NULL) {
        return;
    }

    if (ngx_http_chat_cluster_send(&cl->read,
                                   NGX_HTTP_CHAT_STMT_CLUSTER_CHANGES, arg,
                                   ngx_http_chat_cluster_read_handler, 0)
        == NGX_OK)
    {
        cl->read.data = json_incref(json_object_get(arg, "ranges"));

    } else {
        ngx_http_chat_cluster_unask(json_object_get(arg, "ranges"));
    }

    json_decref(arg);
}


static void
ngx_http_chat_cluster_read_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res)
{
    size_t                         i;
    json_t                        *result, *ev;
    ngx_http_chat_cluster_call_t  *c;

    c = q->data;

    ngx_http_chat_cluster_done(c);

    result = ngx_http_chat_cluster_result(rc, res);

    if (result == NULL) {
        ngx_http_chat_cluster_unask(c->data);

    } else {
        json_array_foreach(json_object_get(result, "events"), i, ev) {
            ngx_http_chat_fanout_event(json_object_get(ev, "event"),
                                       json_object_get(ev, "to"),
                                       ngx_cycle->log);
        }

        json_decref(result);
    }

    json_decref(c->data);
    c->data = NULL;

    ngx_http_chat_cluster_read();
}


/* a read that did not happen: asked again by a notice or round trip */

static void
ngx_http_chat_cluster_unask(json_t *ranges)
{
    size_t   i;
    json_t  *range;

    json_array_foreach(ranges, i, range) {
        ngx_http_chat_order_unask(
            (ngx_uint_t) json_integer_value(json_array_get(range, 0)));
    }
}


/* ------------------------------------------------------------ round trip */

/* the listening connection is up (again): what was missed is looked for */

void
ngx_http_chat_cluster_listening(void)
{
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    if (!cl->active) {
        return;
    }

    cl->reload_online = 1;

    if (cl->tick.timer_set) {
        ngx_del_timer(&cl->tick);
    }

    ngx_add_timer(&cl->tick, 1);
}


static void
ngx_http_chat_cluster_tick(ngx_event_t *ev)
{
    json_t                   *arg;
    ngx_http_chat_cluster_t  *cl;

    cl = ev->data;

    if (!cl->active || ngx_exiting || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_CHAT_CLUSTER_TICK);

    if (cl->join.data != NULL && !cl->join.busy) {
        if (ngx_http_chat_cluster_send(&cl->join,
                                       NGX_HTTP_CHAT_STMT_CLUSTER_JOIN,
                                       cl->join.data,
                                       ngx_http_chat_cluster_plain_handler, 0)
            == NGX_OK)
        {
            json_decref(cl->join.data);
            cl->join.data = NULL;
        }
    }

    if (cl->reload_online && !cl->online.busy) {
        arg = json_object();

        if (arg != NULL
            && ngx_http_chat_cluster_send(&cl->online,
                                    NGX_HTTP_CHAT_STMT_CLUSTER_ONLINE, arg,
                                    ngx_http_chat_cluster_online_handler, 0)
               == NGX_OK)
        {
            cl->reload_online = 0;
        }

        json_decref(arg);
    }

    if (cl->ticker.busy) {
        return;
    }

    arg = json_pack("{s:i, s:o}", "lease", NGX_HTTP_CHAT_CLUSTER_LEASE,
                    "heads",
                    ngx_http_chat_order_heads(NGX_HTTP_CHAT_CLUSTER_HEADS));
    if (arg == NULL) {
        return;
    }

    (void) ngx_http_chat_cluster_send(&cl->ticker,
                                      NGX_HTTP_CHAT_STMT_CLUSTER_TICK, arg,
                                      ngx_http_chat_cluster_tick_handler, 1);
    json_decref(arg);
}


static void
ngx_http_chat_cluster_tick_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res)
{
    size_t                    i;
    json_t                   *result, *ok, *pair, *arg;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    ngx_http_chat_cluster_done(q->data);

    result = ngx_http_chat_cluster_result(rc, res);

    if (result == NULL || !cl->active) {
        if (result) {
            json_decref(result);
        }

        return;
    }

    ok = json_object_get(result, "ok");

    /* conversations that went further than this worker delivered */

    json_array_foreach(json_object_get(ok, "ahead"), i, pair) {
        ngx_http_chat_cluster_want(
            (ngx_uint_t) json_integer_value(json_array_get(pair, 0)),
            json_integer_value(json_array_get(pair, 1)),
            json_integer_value(json_array_get(pair, 1)));
    }

    ngx_http_chat_cluster_read();

    /* nodes that are gone hold nobody any more */

    json_array_foreach(json_object_get(ok, "gone"), i, pair) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: cluster: node \"%s\" stopped renewing its "
                      "lease: its users are offline",
                      json_string_value(pair));
    }

    ngx_http_chat_presence_remote_reset(NULL, json_object_get(ok, "live"));

    ngx_http_chat_cluster_route(result);

    /* this node was taken for dead meanwhile: its users are claimed */

    if (json_is_true(json_object_get(ok, "new")) && !cl->claim.busy) {
        arg = json_pack("{s:o}", "users",
                        ngx_http_chat_presence_local_users());

        if (arg != NULL) {
            (void) ngx_http_chat_cluster_send(&cl->claim,
                                    NGX_HTTP_CHAT_STMT_CLUSTER_CLAIM, arg,
                                    ngx_http_chat_cluster_plain_handler, 0);
            json_decref(arg);
        }
    }

    json_decref(result);
}


static void
ngx_http_chat_cluster_online_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res)
{
    json_t                   *result;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    ngx_http_chat_cluster_done(q->data);

    result = ngx_http_chat_cluster_result(rc, res);

    if (result == NULL) {
        cl->reload_online = 1;
        return;
    }

    ngx_http_chat_presence_remote_reset(
        json_object_get(json_object_get(result, "ok"), "online"), NULL);

    json_decref(result);
}


/* join and claim: the presence events they make are sent */

static void
ngx_http_chat_cluster_plain_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res)
{
    json_t  *result;

    ngx_http_chat_cluster_done(q->data);

    result = ngx_http_chat_cluster_result(rc, res);

    if (result != NULL) {
        ngx_http_chat_cluster_route(result);
        json_decref(result);
    }
}
