
/*
 * Events between workers.  The bus (bus.c) asks presence which slots hold
 * connections of an event's recipients; the event crosses to each such
 * worker once, as one message in that slot's queue in the zone, and that
 * worker hands it to the deliver callback it was given at init.  A
 * wake-up (the slot's eventfd) is written only when a queue goes from
 * empty to not empty; the owner takes the whole queue at once, so no
 * wake-up is lost and none is wasted.
 */


#include <ngx_http_chat.h>


static void ngx_http_chat_ipc_read(ngx_event_t *rev);


/* per worker process */
static ngx_connection_t                 *ngx_http_chat_ipc_conn;
static ngx_http_chat_event_handler_pt    ngx_http_chat_ipc_deliver;


ngx_int_t
ngx_http_chat_ipc_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_event_handler_pt deliver)
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
 * and wakes those whose queue was empty.
 */

void
ngx_http_chat_ipc_post(uint64_t mask, json_t *event, json_t *to,
    ngx_log_t *log)
{
    char                     *text;
    size_t                    len;
    json_t                   *msg;
    uint64_t                  wake, one;
    ngx_uint_t                s, ephemeral;
    const char               *type;
    ngx_http_chat_slot_t     *slot;
    ngx_http_chat_zone_t     *zone;
    ngx_http_chat_ipc_msg_t  *m;

    zone = ngx_http_chat_zone_sh;

    msg = json_pack("{s:O, s:O}", "to", to, "event", event);
    text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);

    if (text == NULL) {
        return;
    }

    len = ngx_strlen(text);
    wake = 0;

    /*
     * typing and presence may be lost (the protocol says so): one that
     * does not fit does not make the worker close its clients for a
     * resync, as a lost change does
     */
    type = json_string_value(json_object_get(event, "type"));
    ephemeral = type != NULL && (ngx_strcmp(type, "typing") == 0
                                 || ngx_strcmp(type, "presence") == 0);

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
        ngx_memcpy(m->data, text, len);

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

    free(text);

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
    json_t                   *msg;
    ngx_uint_t                overflow, count;
    ngx_connection_t         *c;
    json_error_t              err;
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
        msg = json_loadb((char *) m->data, m->len, 0, &err);

        if (msg == NULL) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "chat: invalid event in the queue: %s", err.text);
            continue;
        }

        ngx_http_chat_ipc_deliver(json_object_get(msg, "event"),
                                  json_object_get(msg, "to"), c->log);
        json_decref(msg);
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
