
/*
 * Several nginx nodes over one PostgreSQL (chat_cluster on).
 *
 * Nothing but PostgreSQL is shared.  What a node makes (every event goes
 * through ngx_http_chat_bus_publish) it also tells the others, after the
 * commit, by NOTIFY chat_cluster, many small payloads per transaction:
 *
 *   ["m", conversation, from, to]   message changes: a seq range, read
 *                                   from chat.messages by the receivers;
 *   ["e", event, to]                typing, receipts, presence: the event
 *                                   (rebuilt from its fields by the
 *                                   receivers), when it fits in a payload;
 *                                   a presence change has no recipients
 *                                   (to is null): every worker of every
 *                                   node sends it to its watchers;
 *   ["p", user, online, last_seen]  a user's first connection on the node
 *                                   came, or its last one went;
 *   ["g", node]                     the sender saw node's lease expire: it
 *                                   holds nobody (sent before the presence
 *                                   events of its users, which follow).
 *
 * Any role that can connect to the database may NOTIFY, so with
 * chat_cluster_secret a payload is {"o": node, "w": pid, "s": seq, "x":
 * [...]} after the hex HMAC-SHA256 of that JSON; a payload without a valid
 * one, or with an "s" of its sender already seen or older than two
 * minutes, is refused whole.  Whatever comes is still checked like any
 * input: events are rebuilt from their typed fields, recipients and
 * presence are checked against what this node knows, and a range is read
 * only as far as the conversation really goes.
 *
 * Conversation and member events, and what does not fit in a payload, go
 * through chat.outbox instead (durable; the outbox reader of every node
 * but this one delivers them).
 *
 * One worker per node reads, the reader: the worker whose pid is in the
 * zone (a lease; another worker takes it when its holder exits or its
 * listening connection is lost).  Its first pool connection LISTENs; it
 * reads the ranges it has not read (order.c knows the last number per
 * conversation, so a notice that skips numbers reads the gap too) and
 * hands each event to the bus's route: the workers that hold recipients
 * get it through their queues in the zone, and the reader itself (its
 * order.c follows all it reads).  The cost is a read per change per node,
 * not per worker.
 *
 * Every two seconds the reader makes a round trip on its listening
 * connection (a half-open one times out and is made again): it renews the
 * node's lease, learns which conversations it follows went further than
 * it read (a lost notice, a lost connection, a restarted PostgreSQL) and
 * which nodes are alive; the first node to see another's lease expire
 * announces that node's users offline.  When a reader starts listening,
 * every other worker makes one round trip too, for what it follows: what
 * was notified while nobody listened is found so.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_pg.h>
#include <ngx_http_chat_zone.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>


#define NGX_HTTP_CHAT_CLUSTER_PAYLOAD  7600    /* NOTIFY takes 8000 bytes */
#define NGX_HTTP_CHAT_CLUSTER_NOTICES  64      /* per NOTIFY transaction */
#define NGX_HTTP_CHAT_CLUSTER_BACKLOG  100000  /* notices waiting, at most */
#define NGX_HTTP_CHAT_CLUSTER_TICK     2000    /* ms between round trips */
#define NGX_HTTP_CHAT_CLUSTER_WATCH    250     /* ms between lease checks */
#define NGX_HTTP_CHAT_CLUSTER_LEASE    10      /* s a silent node lives */
#define NGX_HTTP_CHAT_CLUSTER_HEADS    5000    /* conversations checked */
#define NGX_HTTP_CHAT_CLUSTER_MAC      64      /* hex HMAC-SHA256 */
#define NGX_HTTP_CHAT_CLUSTER_FRESH    120000  /* ms a signed notice lives */
#define NGX_HTTP_CHAT_CLUSTER_SKEW     10000   /* ms clocks may differ by */
#define NGX_HTTP_CHAT_CLUSTER_SENDERS  256     /* then the old ones go */
#define NGX_HTTP_CHAT_CLUSTER_TO       10000   /* recipients of an event */


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
    ngx_str_t                     secret;   /* chat_cluster_secret */
    uint64_t                      seq;      /* of this worker's payloads */
    uint64_t                      since;    /* ms: this worker listens */
    json_t                       *senders;  /* {"node/pid": last seq} */
    time_t                        refused;  /* last logged */

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

    /* chat_cluster, on the pool's listening connection */
    ngx_http_chat_pg_listener_t   listener;

    /* the round trip; the reader's lease in the zone */
    ngx_event_t                   tick;
    ngx_msec_t                    last_trip;
    ngx_msec_t                    heard;    /* the reader's last answer */
    ngx_uint_t                    epoch;    /* the reader's, last seen */
    ngx_http_chat_cluster_call_t  ticker;
    ngx_http_chat_cluster_call_t  online;
    ngx_http_chat_cluster_call_t  claim;
    ngx_http_chat_cluster_call_t  join;

    unsigned                      enabled:1;
    unsigned                      active:1;
    unsigned                      reload_online:1;
    unsigned                      reader:1;     /* this node's one reader */
    unsigned                      catch_up:1;   /* a round trip of its own */
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
static void ngx_http_chat_cluster_notified(ngx_http_chat_pg_listener_t *l,
    u_char *payload, size_t len);
static void ngx_http_chat_cluster_unask(json_t *ranges);
static void ngx_http_chat_cluster_want(ngx_uint_t cid, int64_t from,
    int64_t to);
static time_t ngx_http_chat_cluster_time(u_char *p, size_t len);
static void ngx_http_chat_cluster_mac(u_char *hex, u_char *data, size_t len);
static ngx_int_t ngx_http_chat_cluster_verify(u_char **payload, size_t *len);
static ngx_int_t ngx_http_chat_cluster_fresh(json_t *msg, ngx_str_t *origin);
static void ngx_http_chat_cluster_refuse(const char *why);
static ngx_uint_t ngx_http_chat_cluster_user(json_t *v);
static ngx_uint_t ngx_http_chat_cluster_stamp(json_t *v);
static void ngx_http_chat_cluster_event(json_t *item, ngx_str_t *origin);
static uint64_t ngx_http_chat_cluster_now(void);
static void ngx_http_chat_cluster_read(void);
static void ngx_http_chat_cluster_read_head(ngx_uint_t cid, int64_t head,
    void *data);
static void ngx_http_chat_cluster_read_deliver(json_t *event, json_t *to,
    void *data);
static void ngx_http_chat_cluster_read_here(json_t *event, json_t *to,
    void *data);
static void ngx_http_chat_cluster_read_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_cluster_listening(ngx_http_chat_pg_listener_t *l);
static void ngx_http_chat_cluster_lease(ngx_uint_t release);
static void ngx_http_chat_cluster_notice(json_t *item);
static ngx_uint_t ngx_http_chat_cluster_live_locked(ngx_pid_t pid);
static void ngx_http_chat_cluster_tick(ngx_event_t *ev);
static void ngx_http_chat_cluster_tick_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_cluster_online_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_cluster_plain_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);


/* per worker process */
static ngx_http_chat_cluster_t  ngx_http_chat_cluster;

/*
 * the bus, given at init: another node's events for this node's workers,
 * for this worker only, and events for everyone
 */
static ngx_http_chat_event_handler_pt  ngx_http_chat_cluster_deliver;
static ngx_http_chat_event_handler_pt  ngx_http_chat_cluster_deliver_here;
static ngx_http_chat_event_handler_pt  ngx_http_chat_cluster_route_up;


ngx_int_t
ngx_http_chat_cluster_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf, ngx_http_chat_event_handler_pt publish,
    ngx_http_chat_event_handler_pt route, ngx_http_chat_event_handler_pt here)
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

    ngx_http_chat_cluster_route_up = publish;
    ngx_http_chat_cluster_deliver = route;
    ngx_http_chat_cluster_deliver_here = here;

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
    cl->senders = json_object();
    cl->secret = cmcf->cluster_secret;

    if (cl->ranges == NULL || cl->notices == NULL || cl->durable == NULL
        || cl->want == NULL || cl->senders == NULL)
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

    zone = ngx_http_chat_zone_sh;
    join = 0;

    ngx_http_chat_zone_lock();

    if (!zone->sh->cluster_joined) {
        zone->sh->cluster_joined = ngx_time();
        join = 1;
    }

    cl->started = (time_t) zone->sh->cluster_joined;

    ngx_http_chat_zone_unlock();

    cl->since = ngx_http_chat_cluster_now();

    if (join) {
        cl->join.data = json_pack("{s:I}", "started",
                                  (json_int_t) cl->started);
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "chat: cluster node \"%V\"", &cl->node);

    ngx_add_timer(&cl->tick, NGX_HTTP_CHAT_CLUSTER_WATCH);

    /*
     * another node's changes: small, read as they come, by one worker of
     * the node at a time (the one that holds the lease LISTENs)
     */

    cl->listener.channel = "chat_cluster";
    cl->listener.notify = ngx_http_chat_cluster_notified;
    cl->listener.ready = ngx_http_chat_cluster_listening;
    cl->listener.data = cl;
    cl->listener.off = 1;

    if (ngx_http_chat_pg_listen(&cl->listener) != NGX_OK) {
        return NGX_ERROR;
    }

    /* whatever the reader did before this worker, this one has nothing */
    cl->epoch = zone->sh->cluster_epoch;

    ngx_http_chat_cluster_lease(0);

    return NGX_OK;
}


void
ngx_http_chat_cluster_exit_process(void)
{
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    if (cl->enabled) {
        /* another worker takes over within NGX_HTTP_CHAT_CLUSTER_WATCH */
        ngx_http_chat_cluster_lease(1);
    }

    cl->active = 0;
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

        if (ngx_strlen(text) + 256 + cl->node.len
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
    json_t                   *item;
    ngx_http_chat_cluster_t  *cl;
    u_char                    seen[NGX_HTTP_CHAT_TIME_LEN];

    cl = &ngx_http_chat_cluster;

    if (!cl->active) {
        return;
    }

    if (last_seen) {
        e = ngx_http_chat_http_time(seen, last_seen, 0);
        item = json_pack("[s, s%, b, s%]", "p", user, len, online,
                         seen, (size_t) (e - seen));
    } else {
        item = json_pack("[s, s%, b, n]", "p", user, len, online);
    }

    ngx_http_chat_cluster_notice(item);
}


/* a notice for the other nodes, in the order of the calls (takes item) */

static void
ngx_http_chat_cluster_notice(json_t *item)
{
    char                     *text;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

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
    u_char                   *start;
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

        /* the signature goes first, when there is a secret */
        start = buf + (cl->secret.len ? NGX_HTTP_CHAT_CLUSTER_MAC : 0);
        last = buf + NGX_HTTP_CHAT_CLUSTER_PAYLOAD;
        taken = 0;

        while (taken < json_array_size(cl->notices)
               && json_array_size(payloads) < NGX_HTTP_CHAT_CLUSTER_NOTICES)
        {
            /* strictly rising per worker: a replayed payload is refused */
            cl->seq = ngx_max(cl->seq + 1, ngx_http_chat_cluster_now());

            p = ngx_snprintf(start, last - start,
                             "{\"o\":\"%V\",\"w\":%P,\"s\":%uL,\"x\":[",
                             &cl->node, ngx_pid, cl->seq);

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

            if (cl->secret.len) {
                ngx_http_chat_cluster_mac(buf, start, p - start);
            }

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

    ngx_http_chat_pg_query_init(&c->q, stmt, handler, c);
    ngx_http_chat_pg_query_param(&c->q, (char *) cl->node_data, cl->node.len);
    ngx_http_chat_pg_query_param(&c->q, c->text, ngx_strlen(c->text));

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
    u_char  msg[NGX_HTTP_CHAT_PG_ERR_MAX];

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "chat: cluster: %s",
                      ngx_http_chat_pg_fold(msg, sizeof(msg),
                                            PQresultErrorMessage(res)));
    }

    return ngx_http_chat_pg_json(rc, res);
}


/* events PostgreSQL made for this node to send (presence): everywhere */

static void
ngx_http_chat_cluster_route(json_t *result)
{
    size_t   i;
    json_t  *ev;

    json_array_foreach(json_object_get(result, "events"), i, ev) {
        ngx_http_chat_cluster_route_up(json_object_get(ev, "event"),
                                       json_object_get(ev, "to"),
                                       ngx_cycle->log);
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

static void
ngx_http_chat_cluster_notified(ngx_http_chat_pg_listener_t *l,
    u_char *payload, size_t len)
{
    size_t                    i;
    json_t                   *msg, *item, *ls, *user, *v;
    time_t                    seen;
    ngx_str_t                 origin, gone;
    const char               *tag;
    json_error_t              err;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    if (!cl->active || !cl->reader) {
        return;
    }

    if (ngx_http_chat_cluster_verify(&payload, &len) != NGX_OK) {
        ngx_http_chat_cluster_refuse("without a valid signature");
        return;
    }

    msg = json_loadb((char *) payload, len, 0, &err);

    if (msg == NULL) {
        ngx_http_chat_cluster_refuse("that is not JSON");
        return;
    }

    origin.data = (u_char *) json_string_value(json_object_get(msg, "o"));
    origin.len = json_string_length(json_object_get(msg, "o"));

    if (origin.data == NULL || origin.len == 0 || origin.len > 64
        || (origin.len == cl->node.len
            && ngx_memcmp(origin.data, cl->node.data, origin.len) == 0))
    {
        /* this node's: delivered through the zone already */
        json_decref(msg);
        return;
    }

    if (cl->secret.len && ngx_http_chat_cluster_fresh(msg, &origin) != NGX_OK)
    {
        ngx_http_chat_cluster_refuse("replayed or too old");
        json_decref(msg);
        return;
    }

    /* nodes run the same code, but a notice is checked like any input */

    json_array_foreach(json_object_get(msg, "x"), i, item) {
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

            /* read as far as the conversation goes (order.c clamps) */
            ngx_http_chat_cluster_want(
                (ngx_uint_t) json_integer_value(json_array_get(item, 1)),
                json_integer_value(json_array_get(item, 2)),
                json_integer_value(json_array_get(item, 3)));
            break;

        case 'e':
            ngx_http_chat_cluster_event(item, &origin);
            break;

        case 'g':
            /* a node whose lease the sender saw expire holds nobody */
            v = json_array_get(item, 1);

            if (json_string_length(v) > 0 && json_string_length(v) <= 64
                && !(json_string_length(v) == cl->node.len
                     && ngx_memcmp(json_string_value(v), cl->node.data,
                                   cl->node.len) == 0))
            {
                gone.data = (u_char *) json_string_value(v);
                gone.len = json_string_length(v);
                ngx_http_chat_presence_remote_gone(&gone);
            }

            break;

        case 'p':
            /* about the sending node only: its own bit of the user */
            user = json_array_get(item, 1);
            ls = json_array_get(item, 3);

            if (!ngx_http_chat_cluster_user(user)
                || !json_is_boolean(json_array_get(item, 2))
                || !(json_is_null(ls) || ngx_http_chat_cluster_stamp(ls)))
            {
                break;
            }

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


/*
 * ["e", event, to] rebuilt from its typed fields, never forwarded: only
 * what publish() sends so (message changes are read), to recipients that
 * are members as far as this worker knows, and a user's coming online
 * only from a node that holds the user.
 */

static void
ngx_http_chat_cluster_event(json_t *item, ngx_str_t *origin)
{
    size_t       i, j;
    json_t      *ev, *to, *id, *user, *cid, *v, *m, *event, *rcpt, *members;
    ngx_uint_t   typing, ok;
    const char  *type, *kind;

    ev = json_array_get(item, 1);
    to = json_array_get(item, 2);
    type = json_string_value(json_object_get(ev, "type"));
    user = json_object_get(ev, "user_id");

    if (type == NULL || !ngx_http_chat_cluster_user(user)) {
        return;
    }

    if (json_is_null(to) && ngx_strcmp(type, "presence") != 0) {
        /* only presence goes to watchers rather than recipients */
        return;
    }

    if (!json_is_null(to)
        && (!json_is_array(to)
            || json_array_size(to) > NGX_HTTP_CHAT_CLUSTER_TO))
    {
        return;
    }

    event = NULL;
    members = NULL;
    typing = 0;

    cid = json_object_get(ev, "conversation_id");

    if (ngx_strcmp(type, "typing") == 0) {
        v = json_object_get(ev, "active");

        if (!json_is_integer(cid) || json_integer_value(cid) <= 0
            || !json_is_boolean(v))
        {
            return;
        }

        typing = 1;
        event = json_pack("{s:s, s:I, s:O, s:b}", "type", "typing",
                          "conversation_id",
                          (json_int_t) json_integer_value(cid),
                          "user_id", user, "active", json_is_true(v));

    } else if (ngx_strcmp(type, "receipt") == 0) {
        kind = json_string_value(json_object_get(ev, "kind"));
        v = json_object_get(ev, "seq");

        if (!json_is_integer(cid) || json_integer_value(cid) <= 0
            || kind == NULL
            || (ngx_strcmp(kind, "read") != 0
                && ngx_strcmp(kind, "delivered") != 0)
            || !json_is_integer(v) || json_integer_value(v) < 0)
        {
            return;
        }

        event = json_pack("{s:s, s:I, s:O, s:s, s:I}", "type", "receipt",
                          "conversation_id",
                          (json_int_t) json_integer_value(cid),
                          "user_id", user, "kind", kind,
                          "seq", (json_int_t) json_integer_value(v));

    } else if (ngx_strcmp(type, "presence") == 0) {
        v = json_object_get(ev, "last_seen");

        if (!json_is_boolean(json_object_get(ev, "online"))
            || !(json_is_null(v) || ngx_http_chat_cluster_stamp(v)))
        {
            return;
        }

        if (json_is_true(json_object_get(ev, "online"))
            && !ngx_http_chat_presence_held(
                   (u_char *) json_string_value(user),
                   json_string_length(user), origin))
        {
            /* online from a node that does not hold the user: forged */
            return;
        }

        event = json_pack("{s:s, s:O, s:b, s:O}", "type", "presence",
                          "user_id", user,
                          "online",
                          json_is_true(json_object_get(ev, "online")),
                          "last_seen", v);

        if (event != NULL && json_is_null(to)) {
            /* every worker hears the notice: each tells its watchers */
            ngx_http_chat_cluster_deliver(event, to, ngx_cycle->log);
            json_decref(event);
            return;
        }

    } else if (ngx_strcmp(type, "presence.recheck") == 0) {
        /* a contact removed: its watchers check again (never sent) */
        event = json_pack("{s:s, s:O}", "type", "presence.recheck",
                          "user_id", user);

    } else if (ngx_strcmp(type, "presence.unwatch") == 0) {
        /* a block: the two stop watching each other (never sent) */
        v = json_object_get(ev, "peer");

        if (!ngx_http_chat_cluster_user(v)) {
            return;
        }

        event = json_pack("{s:s, s:O, s:O}", "type", "presence.unwatch",
                          "user_id", user, "peer", v);

    } else {
        return;
    }

    if (event == NULL) {
        return;
    }

    if (cid != NULL) {
        /* the members of its last change, when this worker knows them */
        members = ngx_http_chat_order_members(
                      (ngx_uint_t) json_integer_value(cid), NULL);
    }

    if (members != NULL) {
        ok = 0;

        json_array_foreach(members, i, id) {
            if (json_equal(id, user)) {
                ok = 1;
                break;
            }
        }

        if (!ok) {
            json_decref(event);
            return;
        }
    }

    rcpt = json_array();
    if (rcpt == NULL) {
        json_decref(event);
        return;
    }

    json_array_foreach(to, i, id) {
        if (!ngx_http_chat_cluster_user(id)
            || (typing && json_equal(id, user)))
        {
            continue;
        }

        if (members != NULL) {
            ok = 0;

            json_array_foreach(members, j, m) {
                if (json_equal(id, m)) {
                    ok = 1;
                    break;
                }
            }

            if (!ok) {
                continue;
            }
        }

        (void) json_array_append(rcpt, id);
    }

    if (json_array_size(rcpt)) {
        ngx_http_chat_cluster_deliver(event, rcpt, ngx_cycle->log);
    }

    json_decref(rcpt);
    json_decref(event);
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


/* ms since the epoch: where a worker's payload numbers start */

static uint64_t
ngx_http_chat_cluster_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


static void
ngx_http_chat_cluster_mac(u_char *hex, u_char *data, size_t len)
{
    unsigned int  n;
    u_char        mac[EVP_MAX_MD_SIZE];

    n = 0;

    if (HMAC(EVP_sha256(), ngx_http_chat_cluster.secret.data,
             (int) ngx_http_chat_cluster.secret.len, data, len, mac, &n)
        == NULL || n != NGX_HTTP_CHAT_CLUSTER_MAC / 2)
    {
        /* a payload nobody accepts rather than an unsigned one */
        ngx_memset(hex, '-', NGX_HTTP_CHAT_CLUSTER_MAC);
        return;
    }

    (void) ngx_hex_dump(hex, mac, n);
}


/*
 * With a secret: the payload must be the hex HMAC of what follows it, and
 * *payload is moved past it.  Without one: a signed payload (from a node
 * that has the secret) is read past its signature, unchecked.
 */

static ngx_int_t
ngx_http_chat_cluster_verify(u_char **payload, size_t *len)
{
    u_char  *p;
    u_char   hex[NGX_HTTP_CHAT_CLUSTER_MAC];

    p = *payload;

    if (ngx_http_chat_cluster.secret.len == 0) {
        if (*len > NGX_HTTP_CHAT_CLUSTER_MAC && p[0] != '{'
            && p[NGX_HTTP_CHAT_CLUSTER_MAC] == '{')
        {
            *payload += NGX_HTTP_CHAT_CLUSTER_MAC;
            *len -= NGX_HTTP_CHAT_CLUSTER_MAC;
        }

        return NGX_OK;
    }

    if (*len <= NGX_HTTP_CHAT_CLUSTER_MAC) {
        return NGX_DECLINED;
    }

    ngx_http_chat_cluster_mac(hex, p + NGX_HTTP_CHAT_CLUSTER_MAC,
                              *len - NGX_HTTP_CHAT_CLUSTER_MAC);

    if (CRYPTO_memcmp(hex, p, NGX_HTTP_CHAT_CLUSTER_MAC) != 0) {
        return NGX_DECLINED;
    }

    *payload += NGX_HTTP_CHAT_CLUSTER_MAC;
    *len -= NGX_HTTP_CHAT_CLUSTER_MAC;

    return NGX_OK;
}


/*
 * A signed payload may be heard by anyone who LISTENs, and sent again:
 * each sending worker's numbers rise, so one at or below the last seen
 * of that worker, or older than NGX_HTTP_CHAT_CLUSTER_FRESH, is refused;
 * so is one made before this worker began to listen (it could not have
 * heard it then: it is a replay into a worker that knows no last number
 * yet), give or take the clocks' difference.
 */

static ngx_int_t
ngx_http_chat_cluster_fresh(json_t *msg, ngx_str_t *origin)
{
    void                     *it;
    u_char                   *p;
    int64_t                   w, seq;
    uint64_t                  now;
    json_t                   *last, *v;
    const char               *key;
    ngx_http_chat_cluster_t  *cl;
    u_char                    name[64 + 1 + NGX_INT64_LEN + 1];

    cl = &ngx_http_chat_cluster;

    if (!json_is_integer(json_object_get(msg, "w"))
        || !json_is_integer(json_object_get(msg, "s")))
    {
        return NGX_DECLINED;
    }

    w = json_integer_value(json_object_get(msg, "w"));
    seq = json_integer_value(json_object_get(msg, "s"));
    now = ngx_http_chat_cluster_now();

    if (seq <= 0 || (uint64_t) seq + NGX_HTTP_CHAT_CLUSTER_FRESH < now
        || (uint64_t) seq + NGX_HTTP_CHAT_CLUSTER_SKEW < cl->since)
    {
        return NGX_DECLINED;
    }

    p = ngx_sprintf(name, "%V/%L", origin, w);
    *p = '\0';

    last = json_object_get(cl->senders, (char *) name);

    if (last != NULL && seq <= json_integer_value(last)) {
        return NGX_DECLINED;
    }

    if (last == NULL
        && json_object_size(cl->senders) >= NGX_HTTP_CHAT_CLUSTER_SENDERS)
    {
        /* workers that went quiet long ago: their old numbers are stale */
        json_object_foreach_safe(cl->senders, it, key, v) {
            if ((uint64_t) json_integer_value(v)
                + NGX_HTTP_CHAT_CLUSTER_FRESH < now)
            {
                (void) json_object_del(cl->senders, key);
            }
        }
    }

    (void) json_object_set_new(cl->senders, (char *) name,
                               json_integer(seq));

    return NGX_OK;
}


/* logged now and then: whoever sends them must not fill the log */

static void
ngx_http_chat_cluster_refuse(const char *why)
{
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    if (ngx_time() - cl->refused < 10) {
        return;
    }

    cl->refused = ngx_time();

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "chat: cluster: a notice %s was refused (and any more "
                  "for 10 seconds, unlogged)", why);
}


/* a user id as tokens give them: 1 to 128 bytes, no control characters */

static ngx_uint_t
ngx_http_chat_cluster_user(json_t *v)
{
    size_t      i, len;
    const char  *s;

    s = json_string_value(v);
    len = json_string_length(v);

    if (s == NULL || len == 0 || len > NGX_HTTP_CHAT_JWT_MAX_SUB) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if ((u_char) s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


/* "2026-11-21T10:00:00.123Z" exactly, as both nodes and SQL write it */

static ngx_uint_t
ngx_http_chat_cluster_stamp(json_t *v)
{
    size_t       i;
    const char  *s;
    static const char  form[] = "dddd-dd-ddTdd:dd:dd.dddZ";

    s = json_string_value(v);

    if (s == NULL || json_string_length(v) != sizeof(form) - 1) {
        return 0;
    }

    for (i = 0; i < sizeof(form) - 1; i++) {
        if (form[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != form[i]) {
            return 0;
        }
    }

    return 1;
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
        /* one range per conversation, covering both asks */
        if (after < json_integer_value(json_array_get(range, 0))) {
            (void) json_array_set_new(range, 0, json_integer(after));
        }

        if (upto + 1 > json_integer_value(json_array_get(range, 1))) {
            (void) json_array_set_new(range, 1, json_integer(upto + 1));
        }
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

        if (ngx_http_chat_zone_slot != NGX_HTTP_CHAT_NO_SLOT) {
            (void) ngx_atomic_fetch_add(&ngx_http_chat_zone_sh->sh->slots[
                                          ngx_http_chat_zone_slot]
                                        .cluster_reads, 1);
        }

    } else {
        ngx_http_chat_cluster_unask(json_object_get(arg, "ranges"));
    }

    json_decref(arg);
}


static void
ngx_http_chat_cluster_read_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res)
{
    u_char                           msg[NGX_HTTP_CHAT_PG_ERR_MAX];
    ngx_http_chat_cluster_call_t    *c;
    ngx_http_chat_order_change_pt    deliver;

    c = q->data;

    ngx_http_chat_cluster_done(c);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "chat: cluster: %s",
                      ngx_http_chat_pg_fold(msg, sizeof(msg),
                                            PQresultErrorMessage(res)));
    }

    /*
     * The reader's read goes to every worker that holds a recipient; a
     * catch-up of another worker (or a read that was in flight when the
     * lease went) only here: that worker's order, not the others', is
     * what it was read for.  What was asked beyond a conversation's end
     * (its head) is asked no more.
     */

    deliver = ngx_http_chat_cluster.reader
              ? ngx_http_chat_cluster_read_deliver
              : ngx_http_chat_cluster_read_here;

    if (ngx_http_chat_order_rows(rc, res, ngx_http_chat_cluster_read_head,
                                 deliver, NULL)
        != NGX_OK)
    {
        ngx_http_chat_cluster_unask(c->data);
    }

    json_decref(c->data);
    c->data = NULL;

    ngx_http_chat_cluster_read();
}


static void
ngx_http_chat_cluster_read_head(ngx_uint_t cid, int64_t head, void *data)
{
    ngx_http_chat_order_read(cid, head);
}


static void
ngx_http_chat_cluster_read_deliver(json_t *event, json_t *to, void *data)
{
    ngx_http_chat_cluster_deliver(event, to, ngx_cycle->log);
}


static void
ngx_http_chat_cluster_read_here(json_t *event, json_t *to, void *data)
{
    ngx_http_chat_cluster_deliver_here(event, to, ngx_cycle->log);
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

/*
 * The reader's listening connection is up (again): what was missed is
 * looked for, by the reader for what it follows, and by every other
 * worker once for what it follows (a new epoch in the zone): notices
 * that nobody heard meanwhile are found so.
 */

static void
ngx_http_chat_cluster_listening(ngx_http_chat_pg_listener_t *l)
{
    ngx_http_chat_zone_t     *zone;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;

    if (!cl->active || !cl->reader) {
        return;
    }

    zone = ngx_http_chat_zone_sh;

    ngx_http_chat_zone_lock();
    cl->epoch = ++zone->sh->cluster_epoch;
    ngx_http_chat_zone_unlock();

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "chat: cluster: this worker reads for the node");

    cl->reload_online = 1;
    cl->catch_up = 1;

    if (cl->tick.timer_set) {
        ngx_del_timer(&cl->tick);
    }

    ngx_add_timer(&cl->tick, 1);
}


/*
 * The lease's holder is alive while it holds a slot of the zone and its
 * process exists.  A slot is given up at exit, and the worker nginx
 * starts in place of a crashed one sweeps the crashed one's slot: from
 * then on a reuse of its pid by another process holds no lease.
 */

static ngx_uint_t
ngx_http_chat_cluster_live_locked(ngx_pid_t pid)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (ngx_http_chat_zone_sh->sh->slots[i].pid == pid) {
            return !(kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH);
        }
    }

    return 0;
}


/*
 * One worker per node reads the other nodes' changes: the one whose pid is
 * in the zone.  A worker takes the lease when nobody holds it or its
 * holder is gone (kill -9: nginx starts another worker at once, which
 * takes it); the holder gives it up when it exits or its listening
 * connection is lost.  A new holder LISTENs; ready() then says so.
 */

static void
ngx_http_chat_cluster_lease(ngx_uint_t release)
{
    ngx_pid_t                 holder;
    ngx_uint_t                mine;
    ngx_http_chat_zone_t     *zone;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_cluster;
    zone = ngx_http_chat_zone_sh;

    if (zone == NULL || ngx_http_chat_zone_slot == NGX_HTTP_CHAT_NO_SLOT) {
        /* no queues to hand events to: never the reader */
        return;
    }

    ngx_http_chat_zone_lock();

    holder = zone->sh->cluster_reader;

    if (release || !cl->active || ngx_exiting || ngx_terminate) {
        if (holder == ngx_pid) {
            zone->sh->cluster_reader = 0;
        }

        mine = 0;

    } else if (holder == 0 || holder == ngx_pid
               || !ngx_http_chat_cluster_live_locked(holder))
    {
        zone->sh->cluster_reader = ngx_pid;
        mine = 1;

    } else {
        mine = 0;
    }

    ngx_http_chat_zone_unlock();

    if (mine == cl->reader) {
        return;
    }

    cl->reader = mine;
    cl->heard = ngx_current_msec;

    if (cl->active) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "chat: cluster: this worker %s the node's reader",
                      mine ? "becomes" : "is no longer");
    }

    /* what is asked meanwhile is asked again by the next reader */
    ngx_http_chat_pg_listener_set(&cl->listener, mine);
}


static void
ngx_http_chat_cluster_tick(ngx_event_t *ev)
{
    json_t                   *arg;
    ngx_uint_t                epoch;
    ngx_http_chat_zone_t     *zone;
    ngx_http_chat_cluster_t  *cl;

    cl = ev->data;

    if (!cl->active || ngx_exiting || ngx_terminate) {
        ngx_http_chat_cluster_lease(1);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_CHAT_CLUSTER_WATCH);

    ngx_http_chat_cluster_lease(0);

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

    if (!cl->reader) {
        /* a new reader listens: one round trip for what this one follows */
        zone = ngx_http_chat_zone_sh;
        epoch = zone->sh->cluster_epoch;

        if (epoch != cl->epoch) {
            cl->epoch = epoch;
            cl->catch_up = 1;
        }

        if (!cl->catch_up) {
            return;
        }

    } else if (cl->reload_online && !cl->online.busy) {
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

    if (cl->ticker.busy
        || (!cl->catch_up
            && ngx_current_msec - cl->last_trip < NGX_HTTP_CHAT_CLUSTER_TICK))
    {
        return;
    }

    arg = json_pack("{s:i, s:o}", "lease", NGX_HTTP_CHAT_CLUSTER_LEASE,
                    "heads",
                    ngx_http_chat_order_heads(NGX_HTTP_CHAT_CLUSTER_HEADS));
    if (arg == NULL) {
        return;
    }

    /* the reader's proves its listening connection hears */

    if (ngx_http_chat_cluster_send(&cl->ticker,
                                   NGX_HTTP_CHAT_STMT_CLUSTER_TICK, arg,
                                   ngx_http_chat_cluster_tick_handler,
                                   cl->reader)
        == NGX_OK)
    {
        cl->last_trip = ngx_current_msec;
        cl->catch_up = 0;

    } else if (cl->reader
               && ngx_current_msec - cl->heard
                  > NGX_HTTP_CHAT_CLUSTER_LEASE * 1000 / 2)
    {
        /* its listening connection stays down: another worker may read */
        ngx_http_chat_cluster_lease(1);
    }

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

    if (rc == NGX_DECLINED && cl->reader) {
        /* the listening connection was lost (or is half-open) */
        ngx_http_chat_cluster_lease(1);

    } else if (cl->reader) {
        cl->heard = ngx_current_msec;

    } else if (rc == NGX_DECLINED) {
        /* a catch-up that did not happen: again at the next check */
        cl->catch_up = 1;
    }

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

        /* the others forget it before they hear its users' events */
        ngx_http_chat_cluster_notice(json_pack("[s, O]", "g", pair));
    }

    ngx_http_chat_presence_remote_reset(NULL, json_object_get(ok, "live"));

    ngx_http_chat_cluster_route(result);

    /* this node was taken for dead meanwhile: its users are claimed */

    if (json_is_true(json_object_get(ok, "new")) && !cl->claim.busy) {
        arg = json_pack("{s:o}", "users",
                        ngx_http_chat_presence_local_users());

        /* the others forgot them too: they hear it before any event */
        json_array_foreach(json_object_get(arg, "users"), i, pair) {
            ngx_http_chat_cluster_presence(
                (u_char *) json_string_value(pair),
                json_string_length(pair), 1, 0);
        }

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
