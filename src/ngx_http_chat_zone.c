
/*
 * The shared memory zone and the worker slots in it.
 *
 * A worker takes a free slot when it starts.  Slots are not the worker's
 * index: during a reload old and new workers with the same index run side
 * by side.  A slot whose process is gone (a worker killed, say) is swept
 * by the next worker that starts, which nginx does at once for a dead
 * worker, so presence stays exact (what the levels above keep in a slot,
 * presence counts and the event queue, is undone by the sweep callback
 * they give at init).  The wake-up descriptors are eventfds made by the
 * master when the zone is made, so every worker of every later
 * generation inherits all of them.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_zone.h>

#include <sys/eventfd.h>


static ngx_int_t ngx_http_chat_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_chat_zone_sweep_locked(void);
static uint64_t ngx_http_chat_zone_ns(void);


ngx_http_chat_zone_t  *ngx_http_chat_zone_sh;
ngx_uint_t             ngx_http_chat_zone_slot = NGX_HTTP_CHAT_NO_SLOT;

/* what lives in a slot besides its counters (presence, the event queue)
 * belongs to the levels above: they give this at init */
static ngx_http_chat_zone_sweep_pt  ngx_http_chat_zone_sweep;

/* when this worker took the lock (it holds it at most once) */
static uint64_t  ngx_http_chat_zone_locked_at;


char *
ngx_http_chat_zone_conf(ngx_conf_t *cf, ngx_http_chat_zone_t **zp,
    ngx_str_t *value, ngx_uint_t n)
{
    ssize_t                size;
    ngx_uint_t             i;
    ngx_shm_zone_t        *shm_zone, *old;
    ngx_list_part_t       *part;
    ngx_http_chat_zone_t  *zone;

    if (*zp != NULL) {
        return "is duplicate";
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR || size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_zone \"%V\" needs a size of at least %uz",
                           &value[1], 64 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    /*
     * nginx gives a zone of another size fresh memory: presence and the
     * queues of running workers would be lost, so a size change is
     * refused on reload; it takes a restart.
     */

    if (cf->cycle->old_cycle != NULL
        && cf->cycle->old_cycle->shared_memory.part.elts != NULL)
    {
        part = &cf->cycle->old_cycle->shared_memory.part;
        old = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                old = part->elts;
                i = 0;
            }

            if (old[i].tag == &ngx_http_chat_module
                && old[i].shm.name.len == value[1].len
                && ngx_strncmp(old[i].shm.name.data, value[1].data,
                               value[1].len) == 0
                && old[i].shm.size != (size_t) size)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "chat_zone \"%V\" cannot change its size "
                                   "on reload (%uz to %uz): restart nginx",
                                   &value[1], old[i].shm.size,
                                   (size_t) size);
                return NGX_CONF_ERROR;
            }
        }
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_chat_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    /* a quarter of the zone at most for what waits for one worker */
    zone->queue_max = (size_t) size / 4;

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &ngx_http_chat_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_zone \"%V\" is already used", &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_chat_zone_init;
    shm_zone->data = zone;

    zone->shm_zone = shm_zone;

    *zp = zone;

    (void) n;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_chat_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_chat_zone_t *ozone = data;

    size_t                  len;
    ngx_uint_t              i;
    ngx_slab_pool_t        *shpool;
    ngx_http_chat_zone_t   *zone;
    ngx_http_chat_shctx_t  *sh;

    zone = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    zone->shpool = shpool;

    if (ozone != NULL) {
        /* a reload: the same memory, the same descriptors */
        zone->sh = ozone->sh;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        zone->sh = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_chat_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->size = shm_zone->shm.size;

    ngx_rbtree_init(&sh->presence, &sh->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->pending);
    ngx_queue_init(&sh->lru);
    ngx_queue_init(&sh->kept);

    /* made here, in the master, so that every worker inherits them */

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        ngx_queue_init(&sh->slots[i].uploads);

        sh->slots[i].wake = eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC);

        if (sh->slots[i].wake == -1) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, ngx_errno,
                          "eventfd() failed");
            return NGX_ERROR;
        }
    }

    shpool->data = sh;
    zone->sh = sh;

    /*
     * ngx_slab_init() leaves log_ctx pointing at a one-byte field: the
     * zone's name needs memory of its own
     */

    len = sizeof(" in chat_zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in chat_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is a state we handle, not a line per allocation */
    shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_zone_init_process(ngx_cycle_t *cycle, ngx_http_chat_zone_t *zone,
    ngx_http_chat_zone_sweep_pt sweep)
{
    ngx_uint_t              i;
    ngx_http_chat_shctx_t  *sh;

    ngx_http_chat_zone_sh = zone;
    ngx_http_chat_zone_sweep = sweep;
    sh = zone->sh;

    ngx_http_chat_zone_lock();

    ngx_http_chat_zone_sweep_locked();

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        if (sh->slots[i].pid == 0) {
            sh->slots[i].pid = ngx_pid;
            sh->slots[i].overflow = 0;
            sh->slots[i].connections = 0;
            sh->slots[i].pg_ready = 0;
            ngx_http_chat_zone_slot = i;
            break;
        }
    }

    ngx_http_chat_zone_unlock();

    if (ngx_http_chat_zone_slot == NGX_HTTP_CHAT_NO_SLOT) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "chat: all %d slots of chat_zone are taken: this "
                      "worker delivers to its own connections only",
                      NGX_HTTP_CHAT_SLOTS);
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "chat: worker takes slot %ui of chat_zone",
                  ngx_http_chat_zone_slot);

    return NGX_OK;
}


void
ngx_http_chat_zone_exit_process(void)
{
    ngx_http_chat_slot_t  *slot;

    if (ngx_http_chat_zone_sh == NULL
        || ngx_http_chat_zone_slot == NGX_HTTP_CHAT_NO_SLOT)
    {
        return;
    }

    slot = &ngx_http_chat_zone_sh->sh->slots[ngx_http_chat_zone_slot];

    ngx_http_chat_zone_lock();

    /* the connections are closed by now; anything left is swept */
    ngx_http_chat_zone_sweep(ngx_http_chat_zone_slot);
    slot->connections = 0;
    slot->pg_ready = 0;
    slot->pid = 0;

    ngx_http_chat_zone_unlock();

    ngx_http_chat_zone_slot = NGX_HTTP_CHAT_NO_SLOT;
}


/*
 * Only a contended lock reads the clock before taking it: the common,
 * free lock costs one clock read on each side.
 */

void
ngx_http_chat_zone_lock(void)
{
    uint64_t                start;
    ngx_shmtx_t            *mutex;
    ngx_http_chat_shctx_t  *sh;

    mutex = &ngx_http_chat_zone_sh->shpool->mutex;
    sh = ngx_http_chat_zone_sh->sh;

    if (ngx_shmtx_trylock(mutex)) {
        ngx_http_chat_zone_locked_at = ngx_http_chat_zone_ns();

    } else {
        start = ngx_http_chat_zone_ns();
        ngx_shmtx_lock(mutex);
        ngx_http_chat_zone_locked_at = ngx_http_chat_zone_ns();

        sh->lock_contended++;
        sh->lock_wait_ns += ngx_http_chat_zone_locked_at - start;
    }
}


void
ngx_http_chat_zone_unlock(void)
{
    uint64_t                held, limit;
    ngx_uint_t              i;
    ngx_http_chat_shctx_t  *sh;

    sh = ngx_http_chat_zone_sh->sh;

    held = ngx_http_chat_zone_ns() - ngx_http_chat_zone_locked_at;
    sh->lock_held_ns += held;

    for (i = 0, limit = 1000;
         i < NGX_HTTP_CHAT_LOCK_BUCKETS - 1 && held > limit;
         i++, limit *= 10)
    {
        /* void */
    }

    sh->lock_held[i]++;

    ngx_shmtx_unlock(&ngx_http_chat_zone_sh->shpool->mutex);
}


static uint64_t
ngx_http_chat_zone_ns(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/* slots of processes that are gone: presence and queues are undone */

static void
ngx_http_chat_zone_sweep_locked(void)
{
    ngx_uint_t             i;
    ngx_http_chat_slot_t  *slot;

    for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
        slot = &ngx_http_chat_zone_sh->sh->slots[i];

        if (slot->pid == 0
            || kill(slot->pid, 0) == 0 || ngx_errno != NGX_ESRCH)
        {
            continue;
        }

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "chat: sweeping slot %ui of exited process %P",
                      i, slot->pid);

        ngx_http_chat_zone_sweep(i);
        slot->connections = 0;
        slot->pg_ready = 0;
        slot->pid = 0;
    }
}
