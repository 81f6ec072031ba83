
/*
 * The event bus: the one place that decides where an event goes.
 *
 * bus_publish takes an event made on this node (a committed change, a
 * typing indicator, a presence change): it counts it, tells the other
 * nodes (cluster.c), asks presence which workers hold connections of its
 * recipients, hands it to their queues (ipc.c) and delivers it here.  A
 * presence change has no recipients (to is JSON null): it goes to every
 * worker, and each sends it to the connections that watch its user.
 *
 * bus_route takes another node's event that this node's cluster reader
 * read: the same routing to this node's workers, nothing to other nodes.
 *
 * bus_deliver takes an event for this worker's connections from another
 * node or the host's outbox, bus_receive one another worker queued: the
 * changes of a conversation are put in order (order.c), then fanned out
 * (fanout.c).  ipc.c, cluster.c and outbox.c are handed them as callbacks
 * at init and never name this file.
 *
 * What an event is (ngx_http_chat_ev_t) is read from its JSON once, where
 * it enters the bus; an event that goes to other workers is serialized
 * once, and the same frame is sent here and crosses to them.
 */


#include <ngx_http_chat.h>


/* recipients looked up in the zone under one hold of its lock, at most */
#define NGX_HTTP_CHAT_BUS_LOOKUPS  256


static void ngx_http_chat_bus_spread(ngx_http_chat_ev_t *ev, ngx_uint_t here,
    ngx_log_t *log);
static void ngx_http_chat_bus_post(uint64_t mask, ngx_http_chat_ev_t *ev,
    ngx_uint_t here, ngx_log_t *log);


void
ngx_http_chat_bus_publish(json_t *event, json_t *to, ngx_log_t *log)
{
    ngx_http_chat_ev_t  ev;

    ngx_http_chat_status_event(event);

    /* made here: the other nodes hear of it too */
    ngx_http_chat_cluster_publish(event, to);

    /* what it is, decided once for every worker it reaches */
    ngx_http_chat_fanout_event(&ev, event, to);

    ngx_http_chat_bus_spread(&ev, 0, log);
}


/*
 * Another node's event, read by this node's one cluster reader: this
 * node's workers that hold a recipient get it, and the reader itself
 * always does (its order.c follows every change it reads).
 */

void
ngx_http_chat_bus_route(json_t *event, json_t *to, ngx_log_t *log)
{
    ngx_http_chat_ev_t  ev;

    ngx_http_chat_fanout_event(&ev, event, to);

    ngx_http_chat_bus_spread(&ev, 1, log);
}


static void
ngx_http_chat_bus_spread(ngx_http_chat_ev_t *ev, ngx_uint_t here,
    ngx_log_t *log)
{
    size_t                     i;
    json_t                    *user, *to;
    uint64_t                   mask, self;
    ngx_uint_t                 s;
    ngx_http_chat_zone_t      *zone;
    ngx_http_chat_presence_t  *p;

    zone = ngx_http_chat_zone_sh;
    to = ev->to;

    if (zone == NULL || ngx_http_chat_zone_slot == NGX_HTTP_CHAT_NO_SLOT) {
        ngx_http_chat_order_deliver(ev, log);
        return;
    }

    self = (uint64_t) 1 << ngx_http_chat_zone_slot;

    if (json_is_null(to)) {
        /* watchers may be anywhere: every worker (ipc skips empty slots) */
        ngx_http_chat_bus_post(~self, ev, 1, log);
        return;
    }

    if (!json_is_array(to)) {
        ngx_http_chat_order_deliver(ev, log);
        return;
    }

    /*
     * the workers that hold a connection of a recipient; the lock is let
     * go every NGX_HTTP_CHAT_BUS_LOOKUPS recipients, so that a group of
     * thousands does not hold up every other worker (the answer is a
     * hint either way: a user may come or go right after it)
     */

    mask = 0;

    ngx_http_chat_zone_lock();

    json_array_foreach(to, i, user) {

        if (i % NGX_HTTP_CHAT_BUS_LOOKUPS == NGX_HTTP_CHAT_BUS_LOOKUPS - 1) {
            ngx_http_chat_zone_unlock();
            ngx_http_chat_zone_lock();
        }

        if (!json_is_string(user)) {
            continue;
        }

        p = ngx_http_chat_presence_lookup_locked(
                                           (u_char *) json_string_value(user),
                                           json_string_length(user));
        if (p == NULL || p->total == 0) {
            continue;
        }

        for (s = 0; s < NGX_HTTP_CHAT_SLOTS; s++) {
            if (p->counts[s]) {
                mask |= (uint64_t) 1 << s;
            }
        }
    }

    ngx_http_chat_zone_unlock();

    ngx_http_chat_bus_post(mask & ~self, ev, here || (mask & self), log);
}


/*
 * Here if asked, then to the other workers in mask: an event that is sent
 * and crosses to another worker is serialized once, and the same frame
 * goes to this worker's clients.
 */

static void
ngx_http_chat_bus_post(uint64_t mask, ngx_http_chat_ev_t *ev,
    ngx_uint_t here, ngx_log_t *log)
{
    ngx_http_chat_buf_t  *frame;

    frame = NULL;

    if (mask && ev->frame == NULL && ev->event != NULL
        && ngx_http_chat_fanout_sent(ev->kind))
    {
        frame = ngx_http_chat_fanout_frame(ev->event, log);
        ev->frame = frame;
    }

    if (here) {
        ngx_http_chat_order_deliver(ev, log);
    }

    if (mask) {
        ngx_http_chat_ipc_post(mask, ev, log);
    }

    if (frame != NULL) {
        ev->frame = NULL;
        ngx_http_chat_ws_buf_release(frame);
    }
}


/* an event of this node's outbox or cluster reader, for this worker */

void
ngx_http_chat_bus_deliver(json_t *event, json_t *to, ngx_log_t *log)
{
    ngx_http_chat_ev_t  ev;

    ngx_http_chat_fanout_event(&ev, event, to);

    ngx_http_chat_order_deliver(&ev, log);
}


/* an event another worker of this node queued (ipc.c), for this one */

void
ngx_http_chat_bus_receive(ngx_http_chat_ev_t *ev, ngx_log_t *log)
{
    ngx_http_chat_order_deliver(ev, log);
}


/*
 * A worker's slot is given up (its process exited, or this one exits):
 * its presence counts and its undelivered queue go with it.
 */

void
ngx_http_chat_bus_sweep_locked(ngx_uint_t slot)
{
    ngx_http_chat_presence_sweep_locked(slot);
    ngx_http_chat_ipc_free_queue_locked(
                                &ngx_http_chat_zone_sh->sh->slots[slot]);
}
