
/*
 * Typing indicators expire: a typist silent for 6 s, or gone, is said to
 * have stopped by the server itself, to the same members PostgreSQL
 * named when the typing started.  While PostgreSQL is unavailable, typing
 * still goes out to the members this worker knows of.
 */


#include <ngx_http_chat.h>


#define NGX_HTTP_CHAT_TYPING_EXPIRY  6000

/*
 * Typing in a group of more members goes to nobody while PostgreSQL is
 * away, as chat.api_typing does in a big group (chat.big_group_members,
 * 100 by default; the worker cannot read the setting then).
 */
#define NGX_HTTP_CHAT_TYPING_BIG     100


typedef struct {
    ngx_queue_t                   queue;     /* the worker's, by deadline */
    ngx_queue_t                   conn;      /* in the connection's list */
    ngx_http_chat_conn_t         *wc;
    json_t                       *event;     /* {"type": "typing", ...} */
    json_t                       *to;
    ngx_msec_t                    deadline;
} ngx_http_chat_typist_t;


static ngx_http_chat_typist_t *ngx_http_chat_typing_find(ngx_queue_t *typing,
    json_t *cid);
static void ngx_http_chat_typing_stop(ngx_http_chat_typist_t *t,
    ngx_uint_t say);
static void ngx_http_chat_typing_timer(ngx_event_t *ev);


/* per worker process */
static ngx_queue_t  ngx_http_chat_typists;
static ngx_event_t  ngx_http_chat_typing_event;


void
ngx_http_chat_typing_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_http_chat_typists);

    ngx_http_chat_typing_event.handler = ngx_http_chat_typing_timer;
    ngx_http_chat_typing_event.log = cycle->log;
    ngx_http_chat_typing_event.cancelable = 1;
}


/*
 * A typing event went out for wc: start, refresh or end its expiry.
 * typing: the connection's list of conversations typed in.
 */

void
ngx_http_chat_typing_update(ngx_http_chat_conn_t *wc, ngx_queue_t *typing,
    json_t *event, json_t *to)
{
    json_t                  *cid;
    ngx_http_chat_typist_t  *t;

    cid = json_object_get(event, "conversation_id");

    t = ngx_http_chat_typing_find(typing, cid);

    if (!json_is_true(json_object_get(event, "active"))) {
        if (t != NULL) {
            ngx_http_chat_typing_stop(t, 0);
        }

        return;
    }

    if (t == NULL) {
        t = ngx_calloc(sizeof(ngx_http_chat_typist_t), wc->connection->log);
        if (t == NULL) {
            return;
        }

        t->wc = wc;
        ngx_queue_insert_tail(typing, &t->conn);

    } else {
        ngx_queue_remove(&t->queue);
        json_decref(t->event);
        json_decref(t->to);
    }

    /* what will be said when it ends: the same event, inactive */

    t->event = json_deep_copy(event);
    t->to = json_incref(to);

    if (t->event == NULL
        || json_object_set_new(t->event, "active", json_false()) != 0)
    {
        ngx_queue_insert_tail(&ngx_http_chat_typists, &t->queue);
        ngx_http_chat_typing_stop(t, 0);
        return;
    }

    t->deadline = ngx_current_msec + NGX_HTTP_CHAT_TYPING_EXPIRY;

    /* the expiry is the same for all: the queue stays in deadline order */
    ngx_queue_insert_tail(&ngx_http_chat_typists, &t->queue);

    if (!ngx_http_chat_typing_event.timer_set) {
        ngx_add_timer(&ngx_http_chat_typing_event,
                      NGX_HTTP_CHAT_TYPING_EXPIRY);
    }
}


/*
 * Typing while PostgreSQL is unavailable: the members come from the last
 * change of the conversation this worker delivered (forgotten when one
 * joins or leaves), and the typist must be one of them.  A member.left
 * reaches a worker only while it has a connection of a member or of the
 * user who left, so the list counts only for a connection this worker
 * had before it.  Blocks are not known here, so never in a conversation
 * of two, which may be a direct one.  req: the typing request.  NGX_OK:
 * the event went out, the request is answered "ok"; NGX_DECLINED: not
 * known here, so "unavailable".
 */

ngx_int_t
ngx_http_chat_typing_offline(ngx_http_chat_conn_t *wc, ngx_queue_t *typing,
    json_t *req)
{
    size_t       i;
    json_t      *cid, *active, *members, *to, *user, *event;
    ngx_int_t    rc;
    ngx_uint_t   member;
    ngx_msec_t   since;

    rc = NGX_DECLINED;
    to = NULL;
    event = NULL;

    cid = json_object_get(req, "conversation_id");
    active = json_object_get(req, "active");

    if (!json_is_integer(cid) || !json_is_boolean(active)) {
        goto done;
    }

    members = ngx_http_chat_order_members(
                  (ngx_uint_t) json_integer_value(cid), &since);
    if (members == NULL || json_array_size(members) <= 2
        || json_array_size(members) > NGX_HTTP_CHAT_TYPING_BIG
        || (ngx_msec_int_t) (since - wc->fanout_since) < 0)
    {
        goto done;
    }

    to = json_array();
    if (to == NULL) {
        goto done;
    }

    member = 0;

    json_array_foreach(members, i, user) {
        if (json_string_length(user) == wc->id.id.len
            && ngx_strncmp(json_string_value(user), wc->id.id.data,
                           wc->id.id.len) == 0)
        {
            member = 1;
            continue;
        }

        if (json_array_append(to, user) != 0) {
            goto done;
        }
    }

    if (!member) {
        goto done;
    }

    event = json_pack("{s:s, s:O, s:s%, s:O}", "type", "typing",
                      "conversation_id", cid, "user_id", wc->id.id.data,
                      wc->id.id.len, "active", active);
    if (event == NULL) {
        goto done;
    }

    ngx_http_chat_bus_publish(event, to, wc->connection->log);
    ngx_http_chat_typing_update(wc, typing, event, to);

    rc = NGX_OK;

done:

    if (event != NULL) {
        json_decref(event);
    }

    if (to != NULL) {
        json_decref(to);
    }

    return rc;
}


/* the connection goes away: whatever it typed in ends now */

void
ngx_http_chat_typing_stop_all(ngx_queue_t *typing)
{
    ngx_queue_t             *q;
    ngx_http_chat_typist_t  *t;

    while (!ngx_queue_empty(typing)) {
        q = ngx_queue_head(typing);
        t = ngx_queue_data(q, ngx_http_chat_typist_t, conn);

        ngx_http_chat_typing_stop(t, 1);
    }
}


static ngx_http_chat_typist_t *
ngx_http_chat_typing_find(ngx_queue_t *typing, json_t *cid)
{
    ngx_queue_t             *q;
    ngx_http_chat_typist_t  *t;

    for (q = ngx_queue_head(typing);
         q != ngx_queue_sentinel(typing);
         q = ngx_queue_next(q))
    {
        t = ngx_queue_data(q, ngx_http_chat_typist_t, conn);

        if (json_equal(json_object_get(t->event, "conversation_id"), cid)) {
            return t;
        }
    }

    return NULL;
}


static void
ngx_http_chat_typing_stop(ngx_http_chat_typist_t *t, ngx_uint_t say)
{
    ngx_queue_remove(&t->queue);
    ngx_queue_remove(&t->conn);

    if (say && t->event != NULL) {
        ngx_http_chat_bus_publish(t->event, t->to, ngx_cycle->log);
    }

    if (t->event != NULL) {
        json_decref(t->event);
    }

    if (t->to != NULL) {
        json_decref(t->to);
    }

    ngx_free(t);
}


static void
ngx_http_chat_typing_timer(ngx_event_t *ev)
{
    ngx_queue_t             *q;
    ngx_http_chat_typist_t  *t;

    while (!ngx_queue_empty(&ngx_http_chat_typists)) {
        q = ngx_queue_head(&ngx_http_chat_typists);
        t = ngx_queue_data(q, ngx_http_chat_typist_t, queue);

        if ((ngx_msec_int_t) (t->deadline - ngx_current_msec) > 0) {
            ngx_add_timer(ev, t->deadline - ngx_current_msec);
            return;
        }

        ngx_http_chat_typing_stop(t, 1);
    }
}
