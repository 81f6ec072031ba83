
/*
 * The host application's SQL changes, delivered live (sql/api/70_host.sql).
 *
 * Host functions write the events of a change to chat.outbox and NOTIFY
 * chat_outbox.  The worker's first pool connection LISTENs; a
 * notification (or that connection coming up again, or a periodic timer,
 * in case a notification was lost with a connection) wakes the reader,
 * which reads the rows after the last id it delivered, one query at a
 * time, and fans their events out to this worker's clients: every worker
 * reads the outbox, so nothing crosses between workers.  A worker starts
 * where the outbox ends: it does not replay what was there before it.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_pg.h>


/* a read at least this often, and old rows trimmed now and then */
#define NGX_HTTP_CHAT_OUTBOX_POLL   10000
#define NGX_HTTP_CHAT_OUTBOX_TRIMS  30


typedef struct {
    ngx_http_chat_pg_query_t   q;
    ngx_http_chat_pg_query_t   trim;
    ngx_http_chat_pg_listener_t  listener;    /* chat_outbox */
    ngx_event_t                notified;    /* a read for a burst */
    ngx_event_t                timer;
    int64_t                    last;        /* -1: not known yet */
    ngx_uint_t                 polls;
    u_char                     arg[NGX_INT64_LEN + 64
                                   + sizeof("{\"after\":,\"node\":\"\"}")
                                   + 1];
    unsigned                   reading:1;
    unsigned                   trimming:1;
    unsigned                   again:1;
    unsigned                   active:1;
} ngx_http_chat_outbox_t;


static void ngx_http_chat_outbox_wake(void);
static void ngx_http_chat_outbox_notify(ngx_http_chat_pg_listener_t *l,
    u_char *payload, size_t len);
static void ngx_http_chat_outbox_notified(ngx_event_t *ev);
static void ngx_http_chat_outbox_listening(ngx_http_chat_pg_listener_t *l);
static void ngx_http_chat_outbox_read(void);
static void ngx_http_chat_outbox_handler(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_outbox_trimmed(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_outbox_tick(ngx_event_t *ev);


/* per worker process */
static ngx_http_chat_outbox_t  ngx_http_chat_outbox;

/* the bus, given at init */
static ngx_http_chat_event_handler_pt  ngx_http_chat_outbox_deliver;


ngx_int_t
ngx_http_chat_outbox_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_event_handler_pt deliver)
{
    ngx_http_chat_outbox_t  *ob;

    ngx_http_chat_outbox_deliver = deliver;

    ob = &ngx_http_chat_outbox;

    ob->last = -1;
    ob->active = 1;

    ob->timer.handler = ngx_http_chat_outbox_tick;
    ob->timer.log = cycle->log;
    ob->timer.data = ob;
    ob->timer.cancelable = 1;

    ngx_add_timer(&ob->timer, NGX_HTTP_CHAT_OUTBOX_POLL);

    ob->notified.handler = ngx_http_chat_outbox_notified;
    ob->notified.log = cycle->log;
    ob->notified.data = ob;

    ob->listener.channel = "chat_outbox";
    ob->listener.notify = ngx_http_chat_outbox_notify;
    ob->listener.ready = ngx_http_chat_outbox_listening;
    ob->listener.data = ob;

    return ngx_http_chat_pg_listen(&ob->listener);
}


void
ngx_http_chat_outbox_exit_process(void)
{
    ngx_http_chat_outbox.active = 0;
}


/*
 * A notification says rows wait; they are read by a query of its own, in
 * turn, once for all the notifications of one read from the connection.
 */

static void
ngx_http_chat_outbox_notify(ngx_http_chat_pg_listener_t *l, u_char *payload,
    size_t len)
{
    ngx_http_chat_outbox_t  *ob;

    ob = l->data;

    if (!ob->notified.posted) {
        ngx_post_event(&ob->notified, &ngx_posted_events);
    }
}


static void
ngx_http_chat_outbox_notified(ngx_event_t *ev)
{
    ngx_http_chat_outbox_wake();
}


/* listening (again): what was notified meanwhile is read */

static void
ngx_http_chat_outbox_listening(ngx_http_chat_pg_listener_t *l)
{
    ngx_http_chat_outbox_wake();
}


/* something may wait in the outbox */

static void
ngx_http_chat_outbox_wake(void)
{
    ngx_http_chat_outbox_t  *ob;

    ob = &ngx_http_chat_outbox;

    if (!ob->active || ngx_exiting) {
        return;
    }

    if (ob->reading) {
        ob->again = 1;
        return;
    }

    ngx_http_chat_outbox_read();
}


static void
ngx_http_chat_outbox_read(void)
{
    u_char                  *p;
    ngx_http_chat_outbox_t  *ob;

    ob = &ngx_http_chat_outbox;

    /* libpq takes text parameters as C strings */
    if (ngx_http_chat_cluster_enabled()) {
        /* what this node wrote there, it delivered already */
        p = ngx_sprintf(ob->arg, "{\"after\":%L,\"node\":\"%V\"}%Z",
                        ob->last, ngx_http_chat_cluster_node()) - 1;

    } else {
        p = ngx_sprintf(ob->arg, "{\"after\":%L}%Z", ob->last) - 1;
    }

    ngx_http_chat_pg_query_init(&ob->q, NGX_HTTP_CHAT_STMT_OUTBOX,
                                ngx_http_chat_outbox_handler, ob);
    ngx_http_chat_pg_query_param(&ob->q, "", 0);
    ngx_http_chat_pg_query_param(&ob->q, (char *) ob->arg, p - ob->arg);

    ob->again = 0;

    if (ngx_http_chat_pg_query(&ob->q) != NGX_OK) {
        /* storage is down: the connection coming back wakes us */
        return;
    }

    ob->reading = 1;
}


static void
ngx_http_chat_outbox_handler(ngx_http_chat_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    u_char                   msg[NGX_HTTP_CHAT_PG_ERR_MAX];
    size_t                   i;
    json_t                  *result, *events, *ev, *last;
    ngx_http_chat_outbox_t  *ob;

    ob = q->data;
    ob->reading = 0;

    result = ngx_http_chat_pg_json(rc, res);

    if (result == NULL) {
        /* read again later: the timer, or the next notification */
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "chat: cannot read chat.outbox: %s",
                          ngx_http_chat_pg_fold(msg, sizeof(msg),
                                                PQresultErrorMessage(res)));
        }

        return;
    }

    events = json_object_get(result, "events");

    /* chat.api_outbox rebuilt them from the tables (chat.outbox_checked) */

    json_array_foreach(events, i, ev) {
        if (!json_is_object(json_object_get(ev, "event"))
            || !json_is_array(json_object_get(ev, "to")))
        {
            continue;
        }

        ngx_http_chat_outbox_deliver(json_object_get(ev, "event"),
                                     json_object_get(ev, "to"),
                                     ngx_cycle->log);
    }

    last = json_object_get(result, "last");

    if (json_is_integer(last)) {
        if (ob->last == -1) {
            /* from here on nothing the host writes is missed */
            ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                          "chat: reading chat.outbox after id %L",
                          (int64_t) json_integer_value(last));
        }

        ob->last = json_integer_value(last);
    }

    if (json_is_true(json_object_get(result, "more"))) {
        ob->again = 1;
    }

    json_decref(result);

    if (ob->again && ob->active && !ngx_exiting) {
        ngx_http_chat_outbox_read();
    }
}


static void
ngx_http_chat_outbox_tick(ngx_event_t *ev)
{
    ngx_http_chat_outbox_t  *ob;

    ob = ev->data;

    if (!ob->active || ngx_exiting) {
        return;
    }

    ngx_add_timer(&ob->timer, NGX_HTTP_CHAT_OUTBOX_POLL);

    ngx_http_chat_outbox_wake();

    if (++ob->polls % NGX_HTTP_CHAT_OUTBOX_TRIMS || ob->trimming) {
        return;
    }

    ngx_http_chat_pg_query_init(&ob->trim, NGX_HTTP_CHAT_STMT_OUTBOX_TRIM,
                                ngx_http_chat_outbox_trimmed, ob);
    ngx_http_chat_pg_query_param(&ob->trim, "", 0);
    ngx_http_chat_pg_query_param(&ob->trim, "{}", 2);

    if (ngx_http_chat_pg_query(&ob->trim) == NGX_OK) {
        ob->trimming = 1;
    }
}


static void
ngx_http_chat_outbox_trimmed(ngx_http_chat_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    ngx_http_chat_outbox_t  *ob;

    ob = q->data;
    ob->trimming = 0;
}
