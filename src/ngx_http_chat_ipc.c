
/*
 * Events between workers.  The bus (bus.c) asks presence which slots hold
 * connections of an event's recipients; the event crosses to each such
 * worker once, as one message in that slot's queue in the zone, and that
 * worker hands it to the deliver callback it was given at init.  It
 * crosses as its frame (the bytes its clients get, serialized once by the
 * publisher) after a header of what ordering and fan-out need: the
 * receiver neither parses the event nor serializes it again.  A
 * wake-up (the slot's eventfd) is written only when a queue goes from
 * empty to not empty; the owner takes the whole queue at once, so no
 * wake-up is lost and none is wasted.
 */


#include <ngx_http_chat.h>


static void ngx_http_chat_ipc_read(ngx_event_t *rev);
static void ngx_http_chat_ipc_unpack(ngx_http_chat_ipc_msg_t *m,
    ngx_log_t *log);


#define NGX_HTTP_CHAT_IPC_ALL  ((uint32_t) -1)


/* per worker process */
static ngx_connection_t                 *ngx_http_chat_ipc_conn;
static ngx_http_chat_ipc_deliver_pt      ngx_http_chat_ipc_deliver;


ngx_int_t
ngx_http_chat_ipc_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_ipc_deliver_pt deliver)
{
    ngx_connection_t      *c;
    ngx_http_chat_slot_t  *slot;

    ngx_http_chat_ipc_deliver = deliver;

    slot = &ngx_http_chat_zone_sh->sh->slots[ngx_http_chat_zone_slot];

    c = ngx_get_connection(slot->wake, cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = slot;
    c->read->handler = ngx_http_chat_ipc_read;
    c->read->log = cycle->log;
    c->write->log = cycle->log;

    /* the master's descriptor: never closed here, other workers write it */
    c->shared = 1;

    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        c->shared = 1;
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    ngx_http_chat_ipc_conn = c;

    /* what was queued before this worker started */
    ngx_http_chat_ipc_read(c->read);

    return NGX_OK;
}


void
ngx_http_chat_ipc_exit_process(void)
{
    ngx_connection_t  *c;

    c = ngx_http_chat_ipc_conn;

    if (c == NULL) {
        return;
    }

    ngx_http_chat_ipc_conn = NULL;

    if (ngx_del_event) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    c->shared = 1;
    ngx_close_connection(c);
}


/*
 * Queues an event once for every other worker in mask (bit i: slot i)
 * and wakes those whose queue was empty.  An event that is sent has its
 * frame made already (ev->frame).
 */

void
ngx_http_chat_ipc_post(uint64_t mask, ngx_http_chat_ev_t *ev, ngx_log_t *log)
{
    u_char                   *head, *p;
    size_t                    i, hlen, flen, len;
    json_t                   *user;
    uint32_t                  nto, ulen;
    uint64_t                  wake, one;
    ngx_str_t                 id, peer;
    ngx_uint_t                s, ephemeral;
    ngx_http_chat_slot_t     *slot;
    ngx_http_chat_zone_t     *zone;
    ngx_http_chat_ipc_msg_t  *m;

    zone = ngx_http_chat_zone_sh;

    if (ngx_http_chat_fanout_sent(ev->kind)) {
        if (ev->frame == NULL) {
            return;
        }

        flen = ev->frame->len;

    } else {
        flen = 0;
    }

    /* the receiver reads the user only where fan-out does */
    ngx_str_null(&id);
    ngx_str_null(&peer);

    if (ev->kind == NGX_HTTP_CHAT_EV_PRESENCE
        || ev->kind == NGX_HTTP_CHAT_EV_UNWATCH
        || ev->kind == NGX_HTTP_CHAT_EV_RECHECK
        || ev->kind == NGX_HTTP_CHAT_EV_LEFT)
    {
        id = ev->user;
        peer = ev->peer;
    }

    /* the header: user, peer, recipients; made once for every slot */

    hlen = id.len + peer.len;
    nto = 0;

    if (json_is_null(ev->to)) {
        nto = NGX_HTTP_CHAT_IPC_ALL;

    } else {
        json_array_foreach(ev->to, i, user) {
            if (json_is_string(user)) {
                hlen += sizeof(uint32_t) + json_string_length(user);
                nto++;
            }
        }
    }

    head = ngx_alloc(hlen ? hlen : 1, log);
    if (head == NULL) {
        return;
    }

    p = ngx_cpymem(head, id.data, id.len);
    p = ngx_cpymem(p, peer.data, peer.len);

    if (nto != NGX_HTTP_CHAT_IPC_ALL) {
        json_array_foreach(ev->to, i, user) {
            if (json_is_string(user)) {
                ulen = (uint32_t) json_string_length(user);
                p = ngx_cpymem(p, &ulen, sizeof(uint32_t));
                p = ngx_cpymem(p, json_string_value(user), ulen);
            }
        }
    }

    len = hlen + flen;
    wake = 0;

    /*
     * typing and presence may be lost (the protocol says so): one that
     * does not fit does not make the worker close its clients for a
     * resync, as a lost change does
     */
    ephemeral = ngx_http_chat_fanout_ephemeral(ev->kind);

    ngx_http_chat_zone_lock();

    for (s = 0; s < NGX_HTTP_CHAT_SLOTS; s++) {

        if (!(mask & ((uint64_t) 1 << s))) {
            continue;
        }

        slot = &zone->sh->slots[s];

        if (slot->pid == 0) {
            continue;
        }

        m = NULL;

        if (slot->queued + len <= zone->queue_max) {
            m = ngx_slab_alloc_locked(zone->shpool,
                                  offsetof(ngx_http_chat_ipc_msg_t, data)
                                  + len);
        }

        if (m == NULL) {
            /* else its worker makes its clients resync: nothing is lost */
            if (!ephemeral) {
                slot->overflow++;
            }

            slot->dropped++;
            zone->sh->full++;
            continue;
        }

        m->next = NULL;
        m->len = len;
        m->cid = ev->cid;
        m->n = ev->n;
        m->kind = (uint32_t) ev->kind;
        m->nto = nto;
        m->user = (uint32_t) id.len;
        m->peer = (uint32_t) peer.len;
        m->frame = (uint32_t) flen;

        p = ngx_cpymem(m->data, head, hlen);

        if (flen) {
            ngx_memcpy(p, ev->frame->data, flen);
        }

        if (slot->tail == NULL) {
            slot->head = m;
            wake |= (uint64_t) 1 << s;

        } else {
            slot->tail->next = m;
        }

        slot->tail = m;
        slot->queued += len;
    }

    ngx_http_chat_zone_unlock();

    ngx_free(head);

    one = 1;

    for (s = 0; wake; s++, wake >>= 1) {
        if ((wake & 1)
            && write(zone->sh->slots[s].wake, &one, sizeof(uint64_t)) == -1
            && ngx_errno != NGX_EAGAIN)
        {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          "chat: cannot wake slot %ui", s);
        }
    }
}


static void
ngx_http_chat_ipc_read(ngx_event_t *rev)
{
    uint64_t                  n;
    ngx_uint_t                overflow, count;
    ngx_connection_t         *c;
    ngx_http_chat_slot_t     *slot;
    ngx_http_chat_zone_t     *zone;
    ngx_http_chat_ipc_msg_t  *m, *head, *next;

    c = rev->data;
    slot = c->data;
    zone = ngx_http_chat_zone_sh;

    while (read(c->fd, &n, sizeof(uint64_t)) == sizeof(uint64_t)) {
        /* the counter is reset by the read; the queue says the rest */
    }

    ngx_http_chat_zone_lock();

    head = slot->head;
    slot->head = NULL;
    slot->tail = NULL;
    slot->queued = 0;
    overflow = slot->overflow;
    slot->overflow = 0;

    ngx_http_chat_zone_unlock();

    if (overflow) {
        ngx_log_error(NGX_LOG_CRIT, c->log, 0,
                      "chat: %ui events for this worker did not fit in "
                      "chat_zone: its clients are closed with 1013 and "
                      "resume with sync", overflow);
        ngx_http_chat_fanout_close_all(NGX_HTTP_CHAT_CLOSE_TRY_AGAIN,
                                       "events lost, resync");
    }

    count = 0;

    for (m = head; m; m = m->next) {
        ngx_http_chat_ipc_unpack(m, c->log);
        count++;
    }

    if (head == NULL) {
        return;
    }

    ngx_http_chat_zone_lock();

    for (m = head; m; m = next) {
        next = m->next;
        ngx_slab_free_locked(zone->shpool, m);
    }

    slot->delivered += count;

    ngx_http_chat_zone_unlock();
}


/*
 * A queued event delivered here: the recipients become the JSON array
 * ordering and fan-out take, the frame a buffer of this worker's (the
 * queue's memory goes back to the zone before the clients are written);
 * the user and peer are read from the queue while the event is delivered.
 */

static void
ngx_http_chat_ipc_unpack(ngx_http_chat_ipc_msg_t *m, ngx_log_t *log)
{
    u_char              *p;
    json_t              *to, *user;
    uint32_t             i, ulen;
    ngx_http_chat_ev_t   ev;

    ngx_memzero(&ev, sizeof(ngx_http_chat_ev_t));

    ev.kind = m->kind;
    ev.cid = m->cid;
    ev.n = m->n;

    p = m->data;

    if (m->user) {
        ev.user.data = p;
        ev.user.len = m->user;
        p += m->user;
    }

    if (m->peer) {
        ev.peer.data = p;
        ev.peer.len = m->peer;
        p += m->peer;
    }

    if (m->nto == NGX_HTTP_CHAT_IPC_ALL) {
        to = json_null();

    } else {
        to = json_array();
        if (to == NULL) {
            return;
        }

        for (i = 0; i < m->nto; i++) {
            ngx_memcpy(&ulen, p, sizeof(uint32_t));
            p += sizeof(uint32_t);

            user = json_stringn((char *) p, ulen);
            p += ulen;

            if (user == NULL || json_array_append_new(to, user) != 0) {
                json_decref(to);
                return;
            }
        }
    }

    ev.to = to;

    if (m->frame) {
        ev.frame = ngx_http_chat_ws_buf_alloc(m->frame, log);
        if (ev.frame == NULL) {
            json_decref(to);
            return;
        }

        ev.frame->len = m->frame;
        ngx_memcpy(ev.frame->data, p, m->frame);
    }

    ngx_http_chat_ipc_deliver(&ev, log);

    if (ev.frame != NULL) {
        /* the reference taken at allocation */
        ngx_http_chat_ws_buf_release(ev.frame);
    }

    json_decref(to);
}


void
ngx_http_chat_ipc_free_queue_locked(ngx_http_chat_slot_t *slot)
{
    ngx_http_chat_ipc_msg_t  *m, *next;

    for (m = slot->head; m; m = next) {
        next = m->next;
        ngx_slab_free_locked(ngx_http_chat_zone_sh->shpool, m);
    }

    slot->head = NULL;
    slot->tail = NULL;
    slot->queued = 0;
}
