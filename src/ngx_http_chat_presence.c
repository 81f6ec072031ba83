
/*
 * Presence: user -> live connections per worker slot, and last seen, in
 * the zone.  A user is online from the first connection on any worker to
 * the last; "offline" is said only after a grace period, so that a quick
 * reconnect (a reload, a flaky network) does not flap.  Users whose last
 * connection closed wait in a list in the zone, so that any worker says
 * it, even when the one where they were has exited.  A change goes to
 * the announcer storage gives this file at init; it reaches the
 * connections that watch the user (fanout.c), wherever they are.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_zone.h>


/* seconds a user stays "online" for peers after the last connection */
#define NGX_HTTP_CHAT_OFFLINE_GRACE  3

/* an entry's held: seconds of ngx_time() in its 23 bits, compared as
 * serial numbers; what an upload bucket holds drains in a day */
#define NGX_HTTP_CHAT_PRESENCE_CLOCK     0x7fffff
#define NGX_HTTP_CHAT_PRESENCE_HOLD_MAX  (2 * 86400)

/*
 * entries that must be kept, moved out of the LRU or passed over in their
 * own list at most for one allocation
 */
#define NGX_HTTP_CHAT_PRESENCE_KEPT_SCAN  1024


/*
 * An upload in flight (R16-6): its count is in the user's entry, which
 * worker holds it a record in the zone in that worker's slot, made for as
 * long as the upload lasts, so that the sweep of a dead worker's slot
 * gives its uploads back.  A per-slot array in every entry, as the
 * connections' counts[], would add 64 bytes to each of them for what few
 * users do at any moment; a record costs 32 bytes while it lasts.
 */
typedef struct {
    ngx_queue_t                   queue;     /* in its slot's uploads */
    ngx_http_chat_presence_t     *presence;
} ngx_http_chat_presence_upload_t;


static ngx_http_chat_presence_t *ngx_http_chat_presence_alloc_locked(
    u_char *user, size_t len, uint32_t hash);
static void ngx_http_chat_presence_gone_locked(ngx_http_chat_presence_t *p);
static ngx_uint_t ngx_http_chat_presence_keeps(ngx_http_chat_presence_t *p);
static void ngx_http_chat_presence_timer(ngx_event_t *ev);


/* per worker process */
static ngx_event_t  ngx_http_chat_presence_event;

/* who tells the others of a change: storage, given at init */
static ngx_http_chat_presence_announce_pt  ngx_http_chat_presence_announce;


/*
 * Counts a connection of id.  NGX_OK: counted; NGX_ABORT: no zone, nothing
 * counted; NGX_DECLINED: the zone is full or this worker has no slot;
 * NGX_BUSY: the user has chat_max_connections_per_user already.
 */

ngx_int_t
ngx_http_chat_presence_add(ngx_http_chat_loc_conf_t *ccf,
    ngx_http_chat_identity_t *id)
{
    uint32_t                   hash;
    ngx_uint_t                 online, max;
    ngx_http_chat_zone_t      *zone;
    ngx_http_chat_presence_t  *p;

    zone = ngx_http_chat_zone_sh;

    if (zone == NULL) {
        return NGX_ABORT;
    }

    if (ngx_http_chat_zone_slot == NGX_HTTP_CHAT_NO_SLOT) {
        /* its events could not cross to it: no clients for this worker */
        return NGX_DECLINED;
    }

    max = ccf->max_connections_per_user;
    hash = ngx_crc32_short(id->id.data, id->id.len);

    ngx_http_chat_zone_lock();

    p = ngx_http_chat_presence_lookup_locked(id->id.data, id->id.len);

    if (p == NULL) {
        p = ngx_http_chat_presence_alloc_locked(id->id.data, id->id.len,
                                                hash);
        if (p == NULL) {
            zone->sh->full++;
            ngx_http_chat_zone_unlock();

            ngx_log_error(NGX_LOG_CRIT, ngx_cycle->log, 0,
                          "chat: chat_zone \"%V\" is full: new connections "
                          "are refused (make the zone larger)",
                          &zone->shm_zone->shm.name);
            return NGX_DECLINED;
        }
    }

    if ((max && p->total >= max) || p->counts[ngx_http_chat_zone_slot] == 255) {
        ngx_http_chat_zone_unlock();
        return NGX_BUSY;
    }

    p->counts[ngx_http_chat_zone_slot]++;
    p->total++;

    if (p->total == 1) {
        zone->sh->online++;

        if (p->pending.next != NULL) {
            /* back within the grace period, or offline: unlisted */
            ngx_queue_remove(&p->pending);
            p->pending.next = NULL;
        }
    }

    online = !p->announced;
    p->announced = 1;

    ngx_http_chat_zone_unlock();

    if (online) {
        ngx_http_chat_presence_announce(id->id.data, id->id.len, 1, 0);
    }

    return NGX_OK;
}


void
ngx_http_chat_presence_remove(ngx_http_chat_conn_t *wc)
{
    if (!wc->present) {
        return;
    }

    wc->present = 0;

    ngx_http_chat_presence_undo(&wc->id);
}


/* one connection of id fewer, in this worker's slot */

void
ngx_http_chat_presence_undo(ngx_http_chat_identity_t *id)
{
    ngx_http_chat_zone_t      *zone;
    ngx_http_chat_presence_t  *p;

    zone = ngx_http_chat_zone_sh;

    if (zone == NULL) {
        return;
    }

    ngx_http_chat_zone_lock();

    p = ngx_http_chat_presence_lookup_locked(id->id.data, id->id.len);

    if (p != NULL && p->counts[ngx_http_chat_zone_slot] > 0) {
        p->counts[ngx_http_chat_zone_slot]--;
        p->total--;

        if (p->total == 0) {
            ngx_http_chat_presence_gone_locked(p);
        }
    }

    ngx_http_chat_zone_unlock();
}


/* the user's last connection is gone: offline is said after the grace */

static void
ngx_http_chat_presence_gone_locked(ngx_http_chat_presence_t *p)
{
    p->last_seen = ngx_time();
    ngx_http_chat_zone_sh->sh->online--;

    if (p->announced && p->pending.next == NULL) {
        ngx_queue_insert_tail(&ngx_http_chat_zone_sh->sh->pending, &p->pending);
    }
}


ngx_http_chat_presence_t *
ngx_http_chat_presence_lookup_locked(u_char *user, size_t len)
{
    ngx_str_t  name;

    name.data = user;
    name.len = len;

    return (ngx_http_chat_presence_t *) ngx_str_rbtree_lookup(
                                          &ngx_http_chat_zone_sh->sh->presence,
                                          &name,
                                          ngx_crc32_short(user, len));
}


/*
 * The user's entry, made if there is none, offline and first to be
 * forgotten (in the LRU) like any offline user: the rate buckets of a
 * user without a WebSocket (REST only) live there.  NULL: the zone is full.
 */

ngx_http_chat_presence_t *
ngx_http_chat_presence_entry_locked(u_char *user, size_t len)
{
    ngx_http_chat_presence_t  *p;

    p = ngx_http_chat_presence_lookup_locked(user, len);

    if (p == NULL) {
        p = ngx_http_chat_presence_alloc_locked(user, len,
                                                ngx_crc32_short(user, len));
        if (p != NULL) {
            ngx_queue_insert_tail(&ngx_http_chat_zone_sh->sh->lru, &p->pending);
        }
    }

    return p;
}


static ngx_http_chat_presence_t *
ngx_http_chat_presence_alloc_locked(u_char *user, size_t len, uint32_t hash)
{
    ngx_uint_t                 n, scanned;
    ngx_queue_t               *q, *lru, *kept;
    ngx_http_chat_presence_t  *p, *victim;

    lru = &ngx_http_chat_zone_sh->sh->lru;
    kept = &ngx_http_chat_zone_sh->sh->kept;
    scanned = 0;

    /*
     * Room is made by forgetting the users offline for longest, but not
     * those whose uploads are in flight or whose upload buckets still
     * hold something (R16-7: forgotten, the day's quota would start
     * afresh).  Such an entry met at the head of the LRU moves to a list
     * of its own, so that no later allocation meets it again there
     * (R16G-6: a few dozen of them at the head refused every allocation);
     * that list is looked at only when the LRU is empty, for entries
     * that hold nothing any more.  Either scan is bounded: the lock is
     * everybody's.
     */

    for (n = 0; n < 16; /* void */) {
        p = ngx_slab_calloc_locked(ngx_http_chat_zone_sh->shpool,
                                   offsetof(ngx_http_chat_presence_t, user)
                                   + len);
        if (p != NULL) {
            break;
        }

        if (!ngx_queue_empty(lru)) {
            q = ngx_queue_head(lru);

        } else if (!ngx_queue_empty(kept)) {
            q = ngx_queue_head(kept);

        } else {
            return NULL;
        }

        victim = ngx_queue_data(q, ngx_http_chat_presence_t, pending);

        ngx_queue_remove(q);

        if (ngx_http_chat_presence_keeps(victim)) {
            ngx_queue_insert_tail(kept, q);

            if (++scanned == NGX_HTTP_CHAT_PRESENCE_KEPT_SCAN) {
                return NULL;
            }

            continue;
        }

        ngx_rbtree_delete(&ngx_http_chat_zone_sh->sh->presence,
                          &victim->sn.node);
        ngx_slab_free_locked(ngx_http_chat_zone_sh->shpool, victim);
        n++;
    }

    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p->user, user, len);

    p->sn.str.data = p->user;
    p->sn.str.len = len;
    p->sn.node.key = hash;

    ngx_rbtree_insert(&ngx_http_chat_zone_sh->sh->presence, &p->sn.node);

    return p;
}


/*
 * Whether an offline entry must not be forgotten yet: uploads in flight,
 * or upload buckets that have not drained (ngx_http_chat_presence_hold).
 */

static ngx_uint_t
ngx_http_chat_presence_keeps(ngx_http_chat_presence_t *p)
{
    ngx_uint_t  ahead;

    if (p->uploads) {
        return 1;
    }

    if (p->held == 0) {
        return 0;
    }

    ahead = ((ngx_uint_t) p->held - (ngx_uint_t) ngx_time())
            & NGX_HTTP_CHAT_PRESENCE_CLOCK;

    if (ahead == 0 || ahead > NGX_HTTP_CHAT_PRESENCE_HOLD_MAX) {
        /* passed (a stale one, 97 days on, could look ahead again) */
        p->held = 0;
        return 0;
    }

    return 1;
}


/*
 * p's upload buckets hold something for sec seconds more (rate.c): it is
 * not forgotten before, unless nothing else can be.  In 23 bits of a
 * word the entry has anyway, rather than a time of 8 bytes more in every
 * entry.
 */

void
ngx_http_chat_presence_hold_locked(ngx_http_chat_presence_t *p, time_t sec)
{
    ngx_uint_t  now, until, ahead;

    if (sec <= 0) {
        return;
    }

    if (sec > NGX_HTTP_CHAT_PRESENCE_HOLD_MAX - 1) {
        sec = NGX_HTTP_CHAT_PRESENCE_HOLD_MAX - 1;
    }

    now = (ngx_uint_t) ngx_time();

    if (p->held) {
        ahead = ((ngx_uint_t) p->held - now) & NGX_HTTP_CHAT_PRESENCE_CLOCK;

        if (ahead <= NGX_HTTP_CHAT_PRESENCE_HOLD_MAX
            && ahead > (ngx_uint_t) sec)
        {
            return;
        }
    }

    until = (now + sec + 1) & NGX_HTTP_CHAT_PRESENCE_CLOCK;

    p->held = until ? until : 1;
}


/*
 * An upload of user begins in this worker: NGX_OK, *hold set for
 * ngx_http_chat_presence_upload_release(); NGX_BUSY: the user has max in
 * flight already; NGX_DECLINED: no room in the zone for the count (the
 * upload is refused: without its entry the user's quota would be gone
 * too); NGX_ABORT: no zone, or no slot for this worker (the caller
 * counts in the worker).
 */

ngx_int_t
ngx_http_chat_presence_upload_take(u_char *user, size_t len, ngx_uint_t max,
    void **hold)
{
    ngx_http_chat_zone_t             *zone;
    ngx_http_chat_presence_t         *p;
    ngx_http_chat_presence_upload_t  *u;

    zone = ngx_http_chat_zone_sh;

    if (zone == NULL || ngx_http_chat_zone_slot == NGX_HTTP_CHAT_NO_SLOT) {
        return NGX_ABORT;
    }

    ngx_http_chat_zone_lock();

    p = ngx_http_chat_presence_entry_locked(user, len);

    if (p == NULL) {
        zone->sh->full++;
        ngx_http_chat_zone_unlock();
        return NGX_DECLINED;
    }

    if (p->uploads >= max || p->uploads == 255) {
        ngx_http_chat_zone_unlock();
        return NGX_BUSY;
    }

    u = ngx_slab_alloc_locked(zone->shpool,
                              sizeof(ngx_http_chat_presence_upload_t));
    if (u == NULL) {
        zone->sh->full++;
        ngx_http_chat_zone_unlock();
        return NGX_DECLINED;
    }

    u->presence = p;
    ngx_queue_insert_tail(&zone->sh->slots[ngx_http_chat_zone_slot].uploads,
                          &u->queue);
    p->uploads++;

    ngx_http_chat_zone_unlock();

    *hold = u;

    return NGX_OK;
}


/* the upload is over, whatever way: its count is given back */

void
ngx_http_chat_presence_upload_release(void *hold)
{
    ngx_http_chat_presence_upload_t  *u = hold;

    if (ngx_http_chat_zone_sh == NULL
        || ngx_http_chat_zone_slot == NGX_HTTP_CHAT_NO_SLOT)
    {
        /* the slot was given up at exit: swept with it */
        return;
    }

    ngx_http_chat_zone_lock();

    ngx_queue_remove(&u->queue);

    if (u->presence->uploads) {
        u->presence->uploads--;
    }

    ngx_slab_free_locked(ngx_http_chat_zone_sh->shpool, u);

    ngx_http_chat_zone_unlock();
}


/* a slot's process is gone: its connections and uploads are no more */

void
ngx_http_chat_presence_sweep_locked(ngx_uint_t slot)
{
    ngx_queue_t                      *q, *uploads;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_chat_presence_t         *p;
    ngx_http_chat_presence_upload_t  *u;

    uploads = &ngx_http_chat_zone_sh->sh->slots[slot].uploads;

    while (!ngx_queue_empty(uploads)) {
        q = ngx_queue_head(uploads);
        u = ngx_queue_data(q, ngx_http_chat_presence_upload_t, queue);

        ngx_queue_remove(q);

        if (u->presence->uploads) {
            u->presence->uploads--;
        }

        ngx_slab_free_locked(ngx_http_chat_zone_sh->shpool, u);
    }

    node = ngx_http_chat_zone_sh->sh->presence.root;
    sentinel = ngx_http_chat_zone_sh->sh->presence.sentinel;

    if (node == sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(node, sentinel);
         node != NULL;
         node = ngx_rbtree_next(&ngx_http_chat_zone_sh->sh->presence, node))
    {
        p = (ngx_http_chat_presence_t *) node;

        if (p->counts[slot] == 0) {
            continue;
        }

        p->total -= p->counts[slot];
        p->counts[slot] = 0;

        if (p->total == 0) {
            ngx_http_chat_presence_gone_locked(p);
        }
    }
}


/*
 * {"bob": {"online": true, "last_seen": "..."}, ...} for presence.query.
 * What the zone says is copied under its lock; the JSON is made after.
 */

typedef struct {
    time_t                     last_seen;  /* offline since; 0: unknown */
    ngx_uint_t                 online;
} ngx_http_chat_presence_state_t;


json_t *
ngx_http_chat_presence_query(json_t *ids)
{
    u_char                          *e, *user;
    size_t                           i, n, len;
    json_t                          *result, *id, *entry;
    ngx_http_chat_zone_t            *zone;
    ngx_http_chat_presence_t        *p;
    ngx_http_chat_presence_state_t  *st;
    u_char                           seen[NGX_HTTP_CHAT_TIME_LEN];

    zone = ngx_http_chat_zone_sh;
    n = json_array_size(ids);

    st = ngx_calloc(sizeof(ngx_http_chat_presence_state_t) * (n ? n : 1),
                    ngx_cycle->log);
    if (st == NULL) {
        return NULL;
    }

    if (zone != NULL) {
        ngx_http_chat_zone_lock();

        json_array_foreach(ids, i, id) {
            p = ngx_http_chat_presence_lookup_locked(
                                           (u_char *) json_string_value(id),
                                           json_string_length(id));
            if (p == NULL) {
                continue;
            }

            /* here, or on another node of the cluster */
            st[i].online = (p->total > 0 || p->remote);

            if (p->total == 0 && p->remote == 0) {
                st[i].last_seen = p->last_seen;
            }
        }

        ngx_http_chat_zone_unlock();

    } else {
        /* no zone: what this worker knows */
        json_array_foreach(ids, i, id) {
            user = (u_char *) json_string_value(id);
            len = json_string_length(id);
            st[i].online = ngx_http_chat_fanout_online(user, len);
        }
    }

    result = json_object();

    json_array_foreach(ids, i, id) {

        if (result == NULL) {
            break;
        }

        if (st[i].last_seen) {
            e = ngx_http_chat_http_time(seen, st[i].last_seen, 0);
            entry = json_pack("{s:b, s:s%}", "online", 0, "last_seen", seen,
                              (size_t) (e - seen));

        } else {
            entry = json_pack("{s:b, s:n}", "online", (int) st[i].online,
                              "last_seen");
        }

        if (entry == NULL
            || json_object_setn_new(result, json_string_value(id),
                                    json_string_length(id), entry) != 0)
        {
            json_decref(result);
            result = NULL;
        }
    }

    ngx_free(st);

    return result;
}


/*
 * presence.count: how many of ids (a conversation's members, at most a
 * group's size) are online here or on another node.  The lock is taken
 * for a few at a time.
 */

ngx_uint_t
ngx_http_chat_presence_count(json_t *ids)
{
    size_t                     i, n;
    json_t                    *id;
    ngx_uint_t                 online;
    ngx_http_chat_zone_t      *zone;
    ngx_http_chat_presence_t  *p;

    zone = ngx_http_chat_zone_sh;
    online = 0;
    n = json_array_size(ids);

    for (i = 0; i < n; /* void */) {

        if (zone != NULL) {
            ngx_http_chat_zone_lock();
        }

        do {
            id = json_array_get(ids, i);

            if (!json_is_string(id)) {
                continue;
            }

            if (zone == NULL) {
                online += ngx_http_chat_fanout_online(
                                           (u_char *) json_string_value(id),
                                           json_string_length(id));
                continue;
            }

            p = ngx_http_chat_presence_lookup_locked(
                                           (u_char *) json_string_value(id),
                                           json_string_length(id));

            if (p != NULL && (p->total > 0 || p->remote)) {
                online++;
            }

        } while (++i < n && i % 256);

        if (zone != NULL) {
            ngx_http_chat_zone_unlock();
        }
    }

    return online;
}


/*
 * presence.query with storage: audience is {"bob": true, "zed": false}
 * from chat.api_presence_audience; the others' presence is unknown (null),
 * which tells nothing, where "offline" would.
 */

json_t *
ngx_http_chat_presence_answer(json_t *audience)
{
    json_t      *ids, *result, *allowed;
    const char  *key;

    ids = json_array();
    if (ids == NULL) {
        return NULL;
    }

    json_object_foreach(audience, key, allowed) {
        if (json_is_true(allowed)
            && json_array_append_new(ids, json_string(key)) != 0)
        {
            json_decref(ids);
            return NULL;
        }
    }

    result = ngx_http_chat_presence_query(ids);
    json_decref(ids);

    if (result == NULL) {
        return NULL;
    }

    json_object_foreach(audience, key, allowed) {
        if (!json_is_true(allowed)
            && json_object_set_new(result, key, json_null()) != 0)
        {
            json_decref(result);
            return NULL;
        }
    }

    return result;
}


/* every worker looks at the pending list once a second */

void
ngx_http_chat_presence_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_presence_announce_pt announce)
{
    ngx_http_chat_presence_announce = announce;

    ngx_http_chat_presence_event.handler = ngx_http_chat_presence_timer;
    ngx_http_chat_presence_event.log = cycle->log;
    ngx_http_chat_presence_event.cancelable = 1;

    ngx_add_timer(&ngx_http_chat_presence_event, 1000);
}


/* grace periods that are over: still no connection means offline */

static void
ngx_http_chat_presence_timer(ngx_event_t *ev)
{
    time_t                     now, last_seen;
    ngx_uint_t                 n;
    ngx_queue_t               *q;
    ngx_http_chat_zone_t      *zone;
    ngx_http_chat_presence_t  *p;
    u_char                     user[NGX_HTTP_CHAT_JWT_MAX_SUB];
    size_t                     len;

    zone = ngx_http_chat_zone_sh;
    now = ngx_time();

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    /* a few at a time: the lock is not held for long */

    for (n = 0; n < 64; n++) {

        ngx_http_chat_zone_lock();

        if (ngx_queue_empty(&zone->sh->pending)) {
            ngx_http_chat_zone_unlock();
            break;
        }

        q = ngx_queue_head(&zone->sh->pending);
        p = ngx_queue_data(q, ngx_http_chat_presence_t, pending);

        if (now - p->last_seen < NGX_HTTP_CHAT_OFFLINE_GRACE) {
            ngx_http_chat_zone_unlock();
            break;
        }

        ngx_queue_remove(q);
        p->announced = 0;

        /* kept for last_seen, forgotten first when room is needed */
        ngx_queue_insert_tail(&zone->sh->lru, &p->pending);

        last_seen = p->last_seen;
        len = ngx_min(p->sn.str.len, NGX_HTTP_CHAT_JWT_MAX_SUB);
        ngx_memcpy(user, p->user, len);

        ngx_http_chat_zone_unlock();

        ngx_http_chat_presence_announce(user, len, 0, last_seen);
    }

    ngx_add_timer(ev, 1000);
}


/*
 * chat_cluster: another node says its first connection of user came, or
 * its last one went.  Kept as one bit per node, so that every worker of
 * this node may say it again.
 */

static ngx_int_t
ngx_http_chat_presence_node_locked(u_char *name, size_t len)
{
    ngx_uint_t                  i, free;
    ngx_http_chat_node_name_t  *n;

    free = NGX_HTTP_CHAT_SLOTS;

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        n = &ngx_http_chat_zone_sh->sh->nodes[i];

        if (n->len == 0) {
            if (free == NGX_HTTP_CHAT_SLOTS) {
                free = i;
            }

            continue;
        }

        if (n->len == len && ngx_memcmp(n->name, name, len) == 0) {
            return i;
        }
    }

    if (free == NGX_HTTP_CHAT_SLOTS || len == 0 || len > 64) {
        return NGX_ERROR;
    }

    n = &ngx_http_chat_zone_sh->sh->nodes[free];
    n->len = (u_char) len;
    ngx_memcpy(n->name, name, len);

    return free;
}


void
ngx_http_chat_presence_remote(u_char *user, size_t len, ngx_str_t *node,
    ngx_uint_t online, time_t last_seen)
{
    ngx_int_t                  i;
    ngx_http_chat_zone_t      *zone;
    ngx_http_chat_presence_t  *p;

    zone = ngx_http_chat_zone_sh;

    if (zone == NULL) {
        return;
    }

    ngx_http_chat_zone_lock();

    i = ngx_http_chat_presence_node_locked(node->data, node->len);

    p = (i == NGX_ERROR) ? NULL
                         : ngx_http_chat_presence_entry_locked(user, len);

    if (p != NULL) {
        if (online) {
            p->remote |= (uint64_t) 1 << i;

        } else {
            p->remote &= ~((uint64_t) 1 << i);

            if (last_seen && p->total == 0) {
                p->last_seen = last_seen;
            }
        }
    }

    ngx_http_chat_zone_unlock();
}


/* whether node said it holds user (chat_cluster): its notices are checked */

ngx_uint_t
ngx_http_chat_presence_held(u_char *user, size_t len, ngx_str_t *node)
{
    ngx_uint_t                  i, held;
    ngx_http_chat_zone_t       *zone;
    ngx_http_chat_presence_t   *p;
    ngx_http_chat_node_name_t  *n;

    zone = ngx_http_chat_zone_sh;

    if (zone == NULL) {
        return 0;
    }

    held = 0;

    ngx_http_chat_zone_lock();

    p = ngx_http_chat_presence_lookup_locked(user, len);

    for (i = 0; p != NULL && i < NGX_HTTP_CHAT_SLOTS; i++) {
        n = &zone->sh->nodes[i];

        if (n->len == node->len
            && ngx_memcmp(n->name, node->data, n->len) == 0)
        {
            held = (p->remote & ((uint64_t) 1 << i)) != 0;
            break;
        }
    }

    ngx_http_chat_zone_unlock();

    return held;
}


/* only the nodes of keep hold anybody any more */

static void
ngx_http_chat_presence_keep_locked(ngx_http_chat_zone_t *zone, uint64_t keep)
{
    ngx_rbtree_node_t         *node, *sentinel;
    ngx_http_chat_presence_t  *p;

    sentinel = zone->sh->presence.sentinel;
    node = zone->sh->presence.root;

    if (node == sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(node, sentinel);
         node != NULL;
         node = ngx_rbtree_next(&zone->sh->presence, node))
    {
        p = (ngx_http_chat_presence_t *) node;

        if (p->remote & ~keep) {
            p->remote &= keep;

            if (p->remote == 0 && p->total == 0) {
                p->last_seen = ngx_time();
            }
        }
    }
}


/*
 * Another node saw node's lease expire: it holds nobody, before the
 * presence events of its users are delivered here (they follow in the
 * same stream), so that a query after such an event agrees with it.
 */

void
ngx_http_chat_presence_remote_gone(ngx_str_t *node)
{
    ngx_uint_t                  n;
    ngx_http_chat_zone_t       *zone;
    ngx_http_chat_node_name_t  *nn;

    zone = ngx_http_chat_zone_sh;

    if (zone == NULL) {
        return;
    }

    ngx_http_chat_zone_lock();

    for (n = 0; n < NGX_HTTP_CHAT_SLOTS; n++) {
        nn = &zone->sh->nodes[n];

        if (nn->len == node->len
            && ngx_memcmp(nn->name, node->data, nn->len) == 0)
        {
            nn->len = 0;
            ngx_http_chat_presence_keep_locked(zone, ~((uint64_t) 1 << n));
            break;
        }
    }

    ngx_http_chat_zone_unlock();
}


/*
 * What PostgreSQL says is online on the other live nodes ([[user, node],
 * ...]) replaces what this node heard: after a lost listening connection,
 * or when nodes died (live: the node ids that are left, or NULL).
 */

void
ngx_http_chat_presence_remote_reset(json_t *online, json_t *live)
{
    size_t                     i;
    json_t                    *pair, *id;
    uint64_t                   keep, dead;
    ngx_int_t                  k;
    ngx_uint_t                 n, found;
    ngx_http_chat_zone_t      *zone;
    ngx_http_chat_presence_t  *p;
    ngx_http_chat_node_name_t *nn;

    zone = ngx_http_chat_zone_sh;

    if (zone == NULL) {
        return;
    }

    ngx_http_chat_zone_lock();

    /* the nodes that are left keep their bits, unless a list replaces all */

    keep = 0;
    dead = 0;

    if (live != NULL) {
        for (n = 0; n < NGX_HTTP_CHAT_SLOTS; n++) {
            nn = &zone->sh->nodes[n];

            if (nn->len == 0) {
                continue;
            }

            found = 0;

            json_array_foreach(live, i, id) {
                if (json_string_length(id) == nn->len
                    && ngx_memcmp(json_string_value(id), nn->name, nn->len)
                       == 0)
                {
                    found = 1;
                    break;
                }
            }

            if (found) {
                keep |= (uint64_t) 1 << n;

            } else {
                nn->len = 0;
                dead |= (uint64_t) 1 << n;
            }
        }
    }

    if (live == NULL || dead != 0) {
        ngx_http_chat_presence_keep_locked(zone, keep);
    }

    json_array_foreach(online, i, pair) {
        id = json_array_get(pair, 1);

        k = ngx_http_chat_presence_node_locked(
                                      (u_char *) json_string_value(id),
                                      json_string_length(id));
        if (k == NGX_ERROR || !json_is_string(json_array_get(pair, 0))) {
            continue;
        }

        p = ngx_http_chat_presence_entry_locked(
                   (u_char *) json_string_value(json_array_get(pair, 0)),
                   json_string_length(json_array_get(pair, 0)));

        if (p != NULL) {
            p->remote |= (uint64_t) 1 << k;
        }
    }

    ngx_http_chat_zone_unlock();
}


/*
 * The users with a connection on this node: claimed again in a cluster.
 * Their ids are copied under the lock into memory taken before it; the
 * JSON is made after.
 */

typedef struct {
    size_t                     len;
    u_char                     data[NGX_HTTP_CHAT_JWT_MAX_SUB];
} ngx_http_chat_presence_id_t;


json_t *
ngx_http_chat_presence_local_users(void)
{
    json_t                       *users;
    ngx_uint_t                    n, room, i;
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_chat_zone_t         *zone;
    ngx_http_chat_presence_t     *p;
    ngx_http_chat_presence_id_t  *ids;

    zone = ngx_http_chat_zone_sh;

    users = json_array();

    if (zone == NULL || users == NULL) {
        return users;
    }

    room = zone->sh->online + 64;

    for ( ;; ) {
        ids = ngx_alloc(room * sizeof(ngx_http_chat_presence_id_t),
                        ngx_cycle->log);
        if (ids == NULL) {
            json_decref(users);
            return NULL;
        }

        n = 0;

        ngx_http_chat_zone_lock();

        sentinel = zone->sh->presence.sentinel;
        node = zone->sh->presence.root;

        if (node != sentinel && zone->sh->online <= room) {
            for (node = ngx_rbtree_min(node, sentinel);
                 node != NULL && n < room;
                 node = ngx_rbtree_next(&zone->sh->presence, node))
            {
                p = (ngx_http_chat_presence_t *) node;

                if (p->total > 0) {
                    ids[n].len = ngx_min(p->sn.str.len,
                                         NGX_HTTP_CHAT_JWT_MAX_SUB);
                    ngx_memcpy(ids[n].data, p->user, ids[n].len);
                    n++;
                }
            }
        }

        if (zone->sh->online <= room) {
            ngx_http_chat_zone_unlock();
            break;
        }

        /* more came meanwhile: again, with room for them */
        room = zone->sh->online + 64;

        ngx_http_chat_zone_unlock();
        ngx_free(ids);
    }

    for (i = 0; i < n; i++) {
        if (json_array_append_new(users,
                                  json_stringn((char *) ids[i].data,
                                               ids[i].len))
            != 0)
        {
            json_decref(users);
            users = NULL;
            break;
        }
    }

    ngx_free(ids);

    return users;
}
