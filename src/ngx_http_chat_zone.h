
/*
 * The shared memory zone (chat_zone): worker slots with their event
 * queues, and presence.  Every worker of every generation maps it at the
 * same address; its lock is the slab pool's mutex, taken through
 * ngx_http_chat_zone_lock() so that its cost shows in the status.
 */


#ifndef _NGX_HTTP_CHAT_ZONE_H_INCLUDED_
#define _NGX_HTTP_CHAT_ZONE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_CHAT_SLOTS        64
#define NGX_HTTP_CHAT_NO_SLOT      ((ngx_uint_t) -1)

/* hold times counted by decade: up to 1 us, 10 us, ... 10 ms, longer */
#define NGX_HTTP_CHAT_LOCK_BUCKETS  6


typedef struct ngx_http_chat_ipc_msg_s  ngx_http_chat_ipc_msg_t;

/*
 * An event queued for another worker (ipc.c): what its ordering and
 * fan-out read, and its frame as clients get it; never its JSON.
 */
struct ngx_http_chat_ipc_msg_s {
    ngx_http_chat_ipc_msg_t      *next;
    size_t                        len;       /* of data */
    int64_t                       cid;
    int64_t                       n;
    uint32_t                      kind;
    uint32_t                      nto;       /* (uint32_t) -1: to is null */
    uint32_t                      user;      /* bytes of the user id */
    uint32_t                      peer;      /* bytes of the peer's id */
    uint32_t                      frame;     /* bytes of the frame, last */
    u_char                        data[1];   /* user, peer, each recipient
                                                (uint32_t length, bytes),
                                                the frame */
};


/* a worker process's place in the zone */
typedef struct {
    ngx_pid_t                     pid;       /* 0: free */
    int                           wake;      /* eventfd, made in the master */
    ngx_http_chat_ipc_msg_t      *head;
    ngx_http_chat_ipc_msg_t      *tail;
    size_t                        queued;    /* bytes waiting */
    ngx_uint_t                    overflow;  /* events dropped since drain */
    ngx_atomic_t                  dropped;   /* ever */
    ngx_atomic_t                  delivered;

    /* gauges of this process: gone with it when its slot is swept */
    ngx_atomic_t                  connections;
    ngx_atomic_t                  pg_ready;

    /* reads of other nodes' changes this worker made (chat_cluster) */
    ngx_atomic_t                  cluster_reads;

    /* this process's uploads in flight, one record each (presence.c) */
    ngx_queue_t                   uploads;

    /*
     * this process's longest chat_upload_timeout, in seconds: tmp/'s sweep
     * spares what is younger than any live worker's, an old generation's
     * after a reload included (R16G-4)
     */
    time_t                        upload_timeout;
} ngx_http_chat_slot_t;


/* another node that holds connections of users (chat_cluster) */
typedef struct {
    u_char                        len;       /* 0: free */
    u_char                        name[64];
} ngx_http_chat_node_name_t;


typedef struct {
    ngx_str_node_t                sn;        /* sn.str: the user id */
    uint64_t                      remote;    /* bits: nodes[] holding it */
    ngx_uint_t                    total;     /* connections, all slots */
    time_t                        last_seen;
    ngx_http_chat_bucket_t        buckets[NGX_HTTP_CHAT_RATES];
    ngx_queue_t                   pending;   /* in sh->pending, lru or
                                                kept */
    u_char                        counts[NGX_HTTP_CHAT_SLOTS];
    unsigned                      announced:1;  /* online said to peers */
    /* in the word announced takes anyway: the entry does not grow */
    unsigned                      uploads:8;    /* in flight, all slots */
    unsigned                      held:23;      /* ngx_time() mod 2^23 */
    u_char                        user[1];
} ngx_http_chat_presence_t;


typedef struct {
    size_t                        size;
    ngx_rbtree_t                  presence;
    ngx_rbtree_node_t             sentinel;
    ngx_queue_t                   pending;   /* users gone, oldest first */
    ngx_queue_t                   lru;       /* offline, oldest first */
    ngx_queue_t                   kept;      /* offline, upload buckets
                                                still held (presence.c) */
    ngx_uint_t                    online;    /* users with a connection */
    ngx_uint_t                    full;      /* allocation failures */
    ngx_http_chat_slot_t          slots[NGX_HTTP_CHAT_SLOTS];
    ngx_http_chat_node_name_t     nodes[NGX_HTTP_CHAT_SLOTS];
    ngx_uint_t                    cluster_joined;

    /* the lock's use (status), counted under it */
    uint64_t                      lock_contended;  /* not free at once */
    uint64_t                      lock_wait_ns;    /* of the contended */
    uint64_t                      lock_held_ns;
    uint64_t                      lock_held[NGX_HTTP_CHAT_LOCK_BUCKETS];

    /* the node's one cluster reader (a lease) and its listening starts */
    ngx_pid_t                     cluster_reader;    /* 0: nobody */
    ngx_uint_t                    cluster_epoch;
} ngx_http_chat_shctx_t;


typedef struct {
    ngx_shm_zone_t               *shm_zone;
    ngx_slab_pool_t              *shpool;
    ngx_http_chat_shctx_t        *sh;
    size_t                        queue_max;   /* per slot */
} ngx_http_chat_zone_t;


/* this worker's zone and slot */
extern ngx_http_chat_zone_t  *ngx_http_chat_zone_sh;
extern ngx_uint_t             ngx_http_chat_zone_slot;


char *ngx_http_chat_zone_conf(ngx_conf_t *cf, ngx_http_chat_zone_t **zp,
    ngx_str_t *value, ngx_uint_t n);
/* called under the zone's lock for a slot given up (slot: its index) */
typedef void (*ngx_http_chat_zone_sweep_pt)(ngx_uint_t slot);

ngx_int_t ngx_http_chat_zone_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_zone_t *zone, ngx_http_chat_zone_sweep_pt sweep);
void ngx_http_chat_zone_exit_process(void);

/* the zone's one lock, its wait and hold times counted */
void ngx_http_chat_zone_lock(void);
void ngx_http_chat_zone_unlock(void);

/* a gauge of this worker: in its slot with a zone, else global */
#define ngx_http_chat_zone_gauge(field, n)                                   \
    if (ngx_http_chat_zone_sh != NULL                                        \
        && ngx_http_chat_zone_slot != NGX_HTTP_CHAT_NO_SLOT)                 \
    {                                                                        \
        (void) ngx_atomic_fetch_add(                                         \
            &ngx_http_chat_zone_sh->sh->slots[ngx_http_chat_zone_slot].field,\
            n);                                                              \
    } else {                                                                 \
        ngx_http_chat_count(field, n);                                       \
    }


#endif /* _NGX_HTTP_CHAT_ZONE_H_INCLUDED_ */
