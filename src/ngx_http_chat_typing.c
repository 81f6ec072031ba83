
/*
 * Typing indicators expire: a typist silent for 6 s, or gone, is said to
 * have stopped by the server itself, to the same members PostgreSQL
 * named when the typing started.
 */


#include <ngx_http_chat.h>


#define NGX_HTTP_CHAT_TYPING_EXPIRY  6000


typedef struct {
    ngx_queue_t                   queue;     /* the worker's, by deadline */
    ngx_queue_t                   conn;      /* in wc->typing */
    ngx_http_chat_conn_t         *wc;
    json_t                       *event;     /* {"type": "typing", ...} */
    json_t                       *to;
    ngx_msec_t                    deadline;
} ngx_http_chat_typist_t;


static ngx_http_chat_typist_t *ngx_http_chat_typing_find(
    ngx_http_chat_conn_t *wc, json_t *cid);
static void ngx_http_chat_typing_stop(ngx_http_chat_typist_t *t,
    ngx_uint_t say);
static void ngx_http_chat_typing_timer(ngx_event_t *ev);


/* per worker process */
static ngx_queue_t  ngx_http_chat_typists;
static ngx_event_t  ngx_http_chat_typing_event;


/* a typing event went out for wc: start, refresh or end its expiry */

void
ngx_http_chat_typing_update(ngx_http_chat_conn_t *wc, json_t *event,
    json_t *to)
{
    json_t                  *cid;
    ngx_http_chat_typist_t  *t;

    if (ngx_http_chat_typists.next == NULL) {
        ngx_queue_init(&ngx_http_chat_typists);

        ngx_http_chat_typing_event.handler = ngx_http_chat_typing_timer;
        ngx_http_chat_typing_event.log = ngx_cycle->log;
        ngx_http_chat_typing_event.cancelable = 1;
    }

    cid = json_object_get(event, "conversation_id");

    t = ngx_http_chat_typing_find(wc, cid);

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
        ngx_queue_insert_tail(&wc->typing, &t->conn);

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


/* the connection goes away: whatever it typed in ends now */

void
ngx_http_chat_typing_stop_all(ngx_http_chat_conn_t *wc)
{
    ngx_queue_t             *q;
    ngx_http_chat_typist_t  *t;

    if (wc->typing.next == NULL) {
        return;
    }

    while (!ngx_queue_empty(&wc->typing)) {
        q = ngx_queue_head(&wc->typing);
        t = ngx_queue_data(q, ngx_http_chat_typist_t, conn);

        ngx_http_chat_typing_stop(t, 1);
    }
}


static ngx_http_chat_typist_t *
ngx_http_chat_typing_find(ngx_http_chat_conn_t *wc, json_t *cid)
{
    ngx_queue_t             *q;
    ngx_http_chat_typist_t  *t;

    for (q = ngx_queue_head(&wc->typing);
         q != ngx_queue_sentinel(&wc->typing);
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
