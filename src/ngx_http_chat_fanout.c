
/*
 * Delivery to the connections of this worker: user id -> connections.
 * An event is serialized once and its frame is shared by every local
 * recipient: per recipient, only a queue entry and a reference.  One that
 * another worker made comes with its frame (ngx_http_chat_ev_t), sent as
 * it is.
 *
 * Presence goes by interest: each connection has a bounded watch set of
 * user ids (set by the session), and the same tree keeps, per user, the
 * local connections that watch that user.  A presence change reaches
 * every worker once and each sends it to its watchers of that user: no
 * list of recipients is made anywhere.
 */


#include <ngx_http_chat.h>


typedef struct {
    ngx_str_node_t                sn;        /* key: crc32 of the user id */
    ngx_queue_t                   conns;
    ngx_queue_t                   watchers;  /* ngx_http_chat_watch_t */
    u_char                        data[1];
} ngx_http_chat_user_t;


/* one watched user of a connection */
typedef struct {
    ngx_queue_t                   link;      /* in user->watchers */
    ngx_http_chat_user_t         *user;      /* NULL: dropped */
    ngx_http_chat_conn_t         *wc;
} ngx_http_chat_watch_t;


/* a connection's watch set: wc->watching */
typedef struct {
    ngx_uint_t                    n;
    ngx_http_chat_watch_t         w[1];
} ngx_http_chat_watching_t;


static ngx_http_chat_user_t *ngx_http_chat_fanout_find(u_char *user,
    size_t len, uint32_t hash);
static ngx_http_chat_user_t *ngx_http_chat_fanout_user(u_char *user,
    size_t len, ngx_log_t *log);
static void ngx_http_chat_fanout_release(ngx_http_chat_user_t *u);
static void ngx_http_chat_fanout_unwatch_all(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_fanout_presence(ngx_http_chat_ev_t *ev,
    ngx_log_t *log);
static void ngx_http_chat_fanout_revoke(ngx_http_chat_ev_t *ev,
    ngx_uint_t block);
static ngx_uint_t ngx_http_chat_fanout_same(ngx_str_t *a, ngx_str_t *b);
static ngx_http_chat_buf_t *ngx_http_chat_fanout_take(ngx_http_chat_ev_t *ev,
    ngx_log_t *log);
static void ngx_http_chat_fanout_send(ngx_http_chat_conn_t *wc,
    ngx_http_chat_buf_t *buf, ngx_uint_t ephemeral);


/* per worker process */
static ngx_rbtree_t       ngx_http_chat_users;
static ngx_rbtree_node_t  ngx_http_chat_users_sentinel;

/* the session's: a connection's watch set is checked again (one query) */
static ngx_http_chat_fanout_recheck_pt  ngx_http_chat_fanout_recheck;


void
ngx_http_chat_fanout_init_process(ngx_http_chat_fanout_recheck_pt recheck)
{
    ngx_rbtree_init(&ngx_http_chat_users, &ngx_http_chat_users_sentinel,
                    ngx_str_rbtree_insert_value);

    ngx_http_chat_fanout_recheck = recheck;
}


/* the user's node, made if there is none */

static ngx_http_chat_user_t *
ngx_http_chat_fanout_user(u_char *user, size_t len, ngx_log_t *log)
{
    uint32_t               hash;
    ngx_http_chat_user_t  *u;

    hash = ngx_crc32_short(user, len);

    u = ngx_http_chat_fanout_find(user, len, hash);

    if (u == NULL) {
        u = ngx_alloc(offsetof(ngx_http_chat_user_t, data) + len, log);
        if (u == NULL) {
            return NULL;
        }

        u->sn.node.key = hash;
        u->sn.str.data = u->data;
        u->sn.str.len = len;
        ngx_memcpy(u->data, user, len);
        ngx_queue_init(&u->conns);
        ngx_queue_init(&u->watchers);

        ngx_rbtree_insert(&ngx_http_chat_users, &u->sn.node);
    }

    return u;
}


/* a node neither connected nor watched here is forgotten */

static void
ngx_http_chat_fanout_release(ngx_http_chat_user_t *u)
{
    if (ngx_queue_empty(&u->conns) && ngx_queue_empty(&u->watchers)) {
        ngx_rbtree_delete(&ngx_http_chat_users, &u->sn.node);
        ngx_free(u);
    }
}


ngx_int_t
ngx_http_chat_fanout_add(ngx_http_chat_conn_t *wc)
{
    ngx_http_chat_user_t  *u;

    u = ngx_http_chat_fanout_user(wc->id.id.data, wc->id.id.len,
                                  wc->connection->log);
    if (u == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&u->conns, &wc->fanout);
    wc->fanout_user = u;
    wc->fanout_since = ngx_current_msec;

    return NGX_OK;
}


void
ngx_http_chat_fanout_remove(ngx_http_chat_conn_t *wc)
{
    ngx_http_chat_user_t  *u;

    ngx_http_chat_fanout_unwatch_all(wc);

    u = wc->fanout_user;

    if (u == NULL) {
        return;
    }

    ngx_queue_remove(&wc->fanout);
    wc->fanout_user = NULL;

    ngx_http_chat_fanout_release(u);
}


/*
 * The connection's watch set becomes ids (strings; the caller checked
 * them and bounds their number).  Duplicates are watched once.
 */

ngx_int_t
ngx_http_chat_fanout_watch(ngx_http_chat_conn_t *wc, json_t *ids)
{
    size_t                     i, n;
    json_t                    *id;
    ngx_queue_t               *q;
    ngx_http_chat_user_t      *u;
    ngx_http_chat_watch_t     *w, *last;
    ngx_http_chat_watching_t  *set;

    ngx_http_chat_fanout_unwatch_all(wc);

    n = json_array_size(ids);

    if (n == 0 || wc->fanout_user == NULL) {
        return NGX_OK;
    }

    set = ngx_alloc(offsetof(ngx_http_chat_watching_t, w)
                    + n * sizeof(ngx_http_chat_watch_t), wc->connection->log);
    if (set == NULL) {
        return NGX_ERROR;
    }

    set->n = 0;
    wc->watching = set;

    json_array_foreach(ids, i, id) {

        if (!json_is_string(id) || json_string_length(id) == 0) {
            continue;
        }

        u = ngx_http_chat_fanout_user((u_char *) json_string_value(id),
                                      json_string_length(id),
                                      wc->connection->log);
        if (u == NULL) {
            return NGX_ERROR;
        }

        /* a connection's entries are added in a row: a duplicate is last */

        if (!ngx_queue_empty(&u->watchers)) {
            q = ngx_queue_last(&u->watchers);
            last = ngx_queue_data(q, ngx_http_chat_watch_t, link);

            if (last->wc == wc) {
                continue;
            }
        }

        w = &set->w[set->n++];
        w->user = u;
        w->wc = wc;
        ngx_queue_insert_tail(&u->watchers, &w->link);
    }

    return NGX_OK;
}


static void
ngx_http_chat_fanout_unwatch_all(ngx_http_chat_conn_t *wc)
{
    ngx_uint_t                 i;
    ngx_http_chat_watch_t     *w;
    ngx_http_chat_watching_t  *set;

    set = wc->watching;

    if (set == NULL) {
        return;
    }

    wc->watching = NULL;

    for (i = 0; i < set->n; i++) {
        w = &set->w[i];

        if (w->user != NULL) {
            ngx_queue_remove(&w->link);
            ngx_http_chat_fanout_release(w->user);
        }
    }

    ngx_free(set);
}


/* the connection stops watching user (a block, a failed check) */

void
ngx_http_chat_fanout_unwatch(ngx_http_chat_conn_t *wc, u_char *user,
    size_t len)
{
    ngx_uint_t                 i;
    ngx_http_chat_user_t      *u;
    ngx_http_chat_watch_t     *w;
    ngx_http_chat_watching_t  *set;

    set = wc->watching;

    for (i = 0; set != NULL && i < set->n; i++) {
        w = &set->w[i];
        u = w->user;

        if (u != NULL && u->sn.str.len == len
            && ngx_memcmp(u->sn.str.data, user, len) == 0)
        {
            ngx_queue_remove(&w->link);
            w->user = NULL;
            ngx_http_chat_fanout_release(u);
            return;
        }
    }
}


ngx_uint_t
ngx_http_chat_fanout_watches(ngx_http_chat_conn_t *wc, u_char *user,
    size_t len)
{
    ngx_uint_t                 i;
    ngx_http_chat_user_t      *u;
    ngx_http_chat_watching_t  *set;

    set = wc->watching;

    for (i = 0; set != NULL && i < set->n; i++) {
        u = set->w[i].user;

        if (u != NULL && u->sn.str.len == len
            && ngx_memcmp(u->sn.str.data, user, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* the ids the connection watches, a new JSON array */

json_t *
ngx_http_chat_fanout_watched(ngx_http_chat_conn_t *wc)
{
    json_t                    *ids;
    ngx_uint_t                 i;
    ngx_http_chat_user_t      *u;
    ngx_http_chat_watching_t  *set;

    ids = json_array();
    set = wc->watching;

    for (i = 0; ids != NULL && set != NULL && i < set->n; i++) {
        u = set->w[i].user;

        if (u != NULL
            && json_array_append_new(ids,
                                     json_stringn((char *) u->sn.str.data,
                                                  u->sn.str.len))
               != 0)
        {
            json_decref(ids);
            return NULL;
        }
    }

    return ids;
}


/*
 * What ordering and fan-out need of an event, read once from its JSON
 * (the bus, for an event made on this node or read from another; order.c
 * for a change read from PostgreSQL).
 */

void
ngx_http_chat_fanout_event(ngx_http_chat_ev_t *ev, json_t *event, json_t *to)
{
    json_t      *message, *v;
    ngx_str_t    type;
    ngx_uint_t   kind;

    ngx_memzero(ev, sizeof(ngx_http_chat_ev_t));

    ev->event = event;
    ev->to = to;

    v = json_object_get(event, "type");
    type.data = (u_char *) json_string_value(v);
    type.len = type.data ? json_string_length(v) : 0;

#define ngx_http_chat_fanout_is(s)                                           \
    (type.len == sizeof(s) - 1 && ngx_strncmp(type.data, s, type.len) == 0)

    kind = NGX_HTTP_CHAT_EV_OTHER;
    message = NULL;

    if (type.len == 0) {
        /* none: sent as it is */

    } else if (ngx_http_chat_fanout_is("typing")) {
        kind = NGX_HTTP_CHAT_EV_TYPING;

    } else if (ngx_http_chat_fanout_is("presence")) {
        kind = NGX_HTTP_CHAT_EV_PRESENCE;

    } else if (ngx_http_chat_fanout_is("presence.unwatch")) {
        kind = NGX_HTTP_CHAT_EV_UNWATCH;

    } else if (ngx_http_chat_fanout_is("presence.recheck")) {
        kind = NGX_HTTP_CHAT_EV_RECHECK;

    } else if (ngx_http_chat_fanout_is("conversation.created")) {
        kind = NGX_HTTP_CHAT_EV_CREATED;
        message = json_object_get(event, "conversation");
        ev->cid = json_integer_value(json_object_get(message, "id"));
        ev->n = json_integer_value(json_object_get(message, "last_seq"));

    } else if (ngx_http_chat_fanout_is("member.left")) {
        kind = NGX_HTTP_CHAT_EV_LEFT;
        ev->cid = json_integer_value(json_object_get(event,
                                                     "conversation_id"));

    } else if (type.len > 7 && ngx_strncmp(type.data, "member.", 7) == 0) {
        kind = NGX_HTTP_CHAT_EV_MEMBER;
        ev->cid = json_integer_value(json_object_get(event,
                                                     "conversation_id"));

    } else if (type.len > 8 && ngx_strncmp(type.data, "message.", 8) == 0) {
        message = json_object_get(event, "message");

        /* not numbered without its message */
        if (json_is_object(message)) {
            kind = ngx_http_chat_fanout_is("message.created")
                   ? NGX_HTTP_CHAT_EV_MESSAGE_NEW
                   : ngx_http_chat_fanout_is("message.deleted")
                     ? NGX_HTTP_CHAT_EV_DELETED : NGX_HTTP_CHAT_EV_MESSAGE;

            ev->cid = json_integer_value(json_object_get(message,
                                                       "conversation_id"));
            ev->n = json_integer_value(json_object_get(message,
                                kind == NGX_HTTP_CHAT_EV_MESSAGE_NEW
                                ? "seq" : "updated_seq"));
        }
    }

#undef ngx_http_chat_fanout_is

    ev->kind = kind;

    v = json_object_get(event, "user_id");

    if (json_is_string(v)) {
        ev->user.data = (u_char *) json_string_value(v);
        ev->user.len = json_string_length(v);
    }

    v = json_object_get(event, "peer");

    if (kind == NGX_HTTP_CHAT_EV_UNWATCH && json_is_string(v)) {
        ev->peer.data = (u_char *) json_string_value(v);
        ev->peer.len = json_string_length(v);
    }
}


/*
 * Sends the event to every local connection of the users in to (a JSON
 * array of user ids); a presence change without recipients (to is JSON
 * null) goes to the connections that watch its user.  Changes of a
 * conversation come here through ngx_http_chat_order_deliver(), which
 * puts them in order.
 */

void
ngx_http_chat_fanout_deliver(ngx_http_chat_ev_t *ev, ngx_log_t *log)
{
    size_t                 i;
    json_t                *user, *to;
    ngx_queue_t           *q;
    ngx_http_chat_buf_t   *buf;
    ngx_http_chat_user_t  *u;
    ngx_http_chat_conn_t  *wc;

    to = ev->to;

    if (ev->kind == NGX_HTTP_CHAT_EV_PRESENCE && json_is_null(to)) {
        ngx_http_chat_fanout_presence(ev, log);
        return;
    }

    if (!json_is_array(to)) {
        return;
    }

    if (ev->kind == NGX_HTTP_CHAT_EV_UNWATCH) {
        /* a block: never sent, the pair stops watching each other */
        ngx_http_chat_fanout_revoke(ev, 1);
        return;
    }

    if (ev->kind == NGX_HTTP_CHAT_EV_RECHECK) {
        /* a contact removed: never sent, its watchers check again */
        ngx_http_chat_fanout_revoke(ev, 0);
        return;
    }

    buf = ev->frame;

    json_array_foreach(to, i, user) {

        if (!json_is_string(user)) {
            continue;
        }

        u = ngx_http_chat_fanout_find((u_char *) json_string_value(user),
                                      json_string_length(user),
                                      ngx_crc32_short(
                                          (u_char *) json_string_value(user),
                                          json_string_length(user)));
        if (u == NULL || ngx_queue_empty(&u->conns)) {
            continue;
        }

        if (buf == NULL) {
            buf = ngx_http_chat_fanout_take(ev, log);
            if (buf == NULL) {
                return;
            }
        }

        /* queuing never frees a connection (see ngx_http_chat_ws_close) */

        for (q = ngx_queue_head(&u->conns);
             q != ngx_queue_sentinel(&u->conns);
             q = ngx_queue_next(q))
        {
            wc = ngx_queue_data(q, ngx_http_chat_conn_t, fanout);
            ngx_http_chat_fanout_send(wc, buf,
                                     ngx_http_chat_fanout_ephemeral(ev->kind));
        }
    }

    if (buf != NULL && buf != ev->frame) {
        /* the reference taken at allocation */
        ngx_http_chat_ws_buf_release(buf);
    }

    if (ev->kind == NGX_HTTP_CHAT_EV_LEFT) {
        ngx_http_chat_fanout_revoke(ev, 0);
    }
}


/* the event's frame: the one it came with, or made from its JSON */

static ngx_http_chat_buf_t *
ngx_http_chat_fanout_take(ngx_http_chat_ev_t *ev, ngx_log_t *log)
{
    if (ev->frame != NULL) {
        return ev->frame;
    }

    if (ev->event == NULL) {
        return NULL;
    }

    return ngx_http_chat_fanout_frame(ev->event, log);
}


/*
 * The frame of an event, serialized once: the bytes every client gets,
 * here or in another worker.  One reference is the caller's.
 */

ngx_http_chat_buf_t *
ngx_http_chat_fanout_frame(json_t *event, ngx_log_t *log)
{
    char                 *text;
    size_t                size;
    json_t               *ordered;
    ngx_http_chat_buf_t  *buf;

    ordered = ngx_http_chat_http_event_json(event);
    if (ordered == NULL) {
        return NULL;
    }

    /* one pass: json_dumpb() would serialise twice to size it */
    text = json_dumps(ordered, JSON_COMPACT);
    json_decref(ordered);

    size = text ? ngx_strlen(text) : 0;

    buf = size ? ngx_http_chat_ws_buf_alloc(size, log) : NULL;
    if (buf == NULL) {
        free(text);
        return NULL;
    }

    buf->len = size;
    ngx_memcpy(buf->data, text, size);
    free(text);

    return buf;
}


static void
ngx_http_chat_fanout_send(ngx_http_chat_conn_t *wc, ngx_http_chat_buf_t *buf,
    ngx_uint_t ephemeral)
{
    ngx_http_chat_main_conf_t  *cmcf;

    if (wc->close_sent || wc->finalized) {
        return;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    /*
     * A client that does not keep up: what can be lost is dropped from
     * half the send buffer on; past all of it, the client is closed with
     * 1013 and resumes with sync, so nothing is lost.
     */

    if (wc->out_bytes + buf->len > wc->conf->send_buffer / 2) {

        if (ephemeral) {
            ngx_http_chat_stat(cmcf, events_dropped, 1);
            return;
        }

        if (wc->out_bytes + buf->len > wc->conf->send_buffer) {
            ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                          "chat: client does not keep up, %uz bytes "
                          "unsent: closing with 1013", wc->out_bytes);
            ngx_http_chat_stat(cmcf, closes[NGX_HTTP_CHAT_CLOSED_SLOW], 1);
            ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_TRY_AGAIN,
                                   "too slow: resume with sync");
            return;
        }
    }

    buf->refs++;

    if (ngx_http_chat_ws_send_buf(wc, NGX_HTTP_CHAT_OP_TEXT, buf) != NGX_OK) {
        ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_INTERNAL,
                               "out of memory");
    }
}


/* a presence change: to this worker's watchers of its user */

static void
ngx_http_chat_fanout_presence(ngx_http_chat_ev_t *ev, ngx_log_t *log)
{
    ngx_queue_t            *q;
    ngx_http_chat_buf_t    *buf;
    ngx_http_chat_user_t   *u;
    ngx_http_chat_watch_t  *w;

    if (ev->user.data == NULL) {
        return;
    }

    u = ngx_http_chat_fanout_find(ev->user.data, ev->user.len,
                                  ngx_crc32_short(ev->user.data,
                                                  ev->user.len));

    if (u == NULL || ngx_queue_empty(&u->watchers)) {
        return;
    }

    buf = ngx_http_chat_fanout_take(ev, log);
    if (buf == NULL) {
        return;
    }

    for (q = ngx_queue_head(&u->watchers);
         q != ngx_queue_sentinel(&u->watchers);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_http_chat_watch_t, link);
        ngx_http_chat_fanout_send(w->wc, buf, 1);
    }

    if (buf != ev->frame) {
        ngx_http_chat_ws_buf_release(buf);
    }
}


/*
 * What let a pair watch each other may be gone; for every local connection
 * of the users in to, one walk:
 *
 * block: {"type": "presence.unwatch", "user_id": a, "peer": b} to [a, b],
 * each of the pair stops watching the other.
 *
 * else: a member left a conversation (or user_id removed a contact).  The
 * user who left checks every watched user again; the others only if they
 * watch that user.
 */

static void
ngx_http_chat_fanout_revoke(ngx_http_chat_ev_t *ev, ngx_uint_t block)
{
    size_t                 i;
    json_t                *user;
    ngx_str_t              id, *other;
    ngx_queue_t           *q;
    ngx_http_chat_user_t  *u;
    ngx_http_chat_conn_t  *wc;

    if (ev->user.data == NULL
        || (block ? ev->peer.data == NULL
                  : ngx_http_chat_fanout_recheck == NULL))
    {
        return;
    }

    json_array_foreach(ev->to, i, user) {

        if (!json_is_string(user)) {
            continue;
        }

        id.data = (u_char *) json_string_value(user);
        id.len = json_string_length(user);

        other = NULL;

        if (block) {
            if (ngx_http_chat_fanout_same(&id, &ev->user)) {
                other = &ev->peer;

            } else if (ngx_http_chat_fanout_same(&id, &ev->peer)) {
                other = &ev->user;

            } else {
                continue;
            }
        }

        u = ngx_http_chat_fanout_find(id.data, id.len,
                                      ngx_crc32_short(id.data, id.len));
        if (u == NULL) {
            continue;
        }

        for (q = ngx_queue_head(&u->conns);
             q != ngx_queue_sentinel(&u->conns);
             q = ngx_queue_next(q))
        {
            wc = ngx_queue_data(q, ngx_http_chat_conn_t, fanout);

            /* a watch set in flight may hold what this takes away */
            wc->revoked++;

            if (other != NULL) {
                ngx_http_chat_fanout_unwatch(wc, other->data, other->len);
                continue;
            }

            if (wc->watching == NULL || wc->close_sent || wc->finalized) {
                continue;
            }

            if (ngx_http_chat_fanout_same(&id, &ev->user)
                || ngx_http_chat_fanout_watches(wc, ev->user.data,
                                                ev->user.len))
            {
                ngx_http_chat_fanout_recheck(wc);
            }
        }
    }
}


static ngx_uint_t
ngx_http_chat_fanout_same(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len && ngx_memcmp(a->data, b->data, a->len) == 0;
}


static ngx_http_chat_user_t *
ngx_http_chat_fanout_find(u_char *user, size_t len, uint32_t hash)
{
    ngx_str_t  name;

    name.data = user;
    name.len = len;

    return (ngx_http_chat_user_t *)
               ngx_str_rbtree_lookup(&ngx_http_chat_users, &name, hash);
}


/*
 * Every connection of this worker: its events cannot be trusted anymore
 * (its chat_zone queue overflowed).
 */

void
ngx_http_chat_fanout_close_all(unsigned code, const char *reason)
{
    ngx_queue_t           *q;
    ngx_rbtree_node_t     *node, *sentinel;
    ngx_http_chat_user_t  *u;
    ngx_http_chat_conn_t  *wc;

    node = ngx_http_chat_users.root;
    sentinel = ngx_http_chat_users.sentinel;

    if (node == sentinel) {
        return;
    }

    /* closing queues a Close and frees nothing: the walk is safe */

    for (node = ngx_rbtree_min(node, sentinel);
         node != NULL;
         node = ngx_rbtree_next(&ngx_http_chat_users, node))
    {
        u = (ngx_http_chat_user_t *) node;

        for (q = ngx_queue_head(&u->conns);
             q != ngx_queue_sentinel(&u->conns);
             q = ngx_queue_next(q))
        {
            wc = ngx_queue_data(q, ngx_http_chat_conn_t, fanout);

            if (!wc->close_sent && !wc->finalized) {
                ngx_http_chat_count(closes[NGX_HTTP_CHAT_CLOSED_OVERFLOW], 1);
            }

            ngx_http_chat_ws_close(wc, code, reason);
        }
    }
}


/* whether the user has a connection in this worker */

ngx_uint_t
ngx_http_chat_fanout_online(u_char *user, size_t len)
{
    ngx_http_chat_user_t  *u;

    u = ngx_http_chat_fanout_find(user, len, ngx_crc32_short(user, len));

    return u != NULL && !ngx_queue_empty(&u->conns);
}
