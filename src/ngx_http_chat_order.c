
/*
 * Changes of a conversation reach clients in sequence order.
 *
 * Their numbers are given in commit order, but the events come here from
 * several PostgreSQL connections and several workers, and a later one may
 * come first.  A client whose cursor is the largest number it has seen
 * would then skip the earlier one on resume.  So a worker holds a change
 * that comes after a gap, for a moment, until the missing one arrives; if
 * it does not, PostgreSQL is asked for what lies in the gap (a number
 * whose change a later one superseded has nothing to send).  The gaps of
 * many conversations are read in one query, one such query at a time: a
 * slow stream (another node's reader behind) opens gaps everywhere at
 * once, and a query each filled the pools that sends need.  A read that
 * fails is tried again, for a while, before the gap is given up on.
 */


#include <ngx_http_chat.h>


#define NGX_HTTP_CHAT_ORDER_WAIT   300      /* ms a gap may stay open */
#define NGX_HTTP_CHAT_ORDER_IDLE   60000    /* ms a conversation is kept */
#define NGX_HTTP_CHAT_ORDER_MAX    100000   /* conversations kept at most */
#define NGX_HTTP_CHAT_ORDER_READ   500      /* changes per read from a node */
#define NGX_HTTP_CHAT_ORDER_HOLE   256      /* numbers of a gap remembered */
#define NGX_HTTP_CHAT_ORDER_FETCH  100      /* gaps read in one query */
#define NGX_HTTP_CHAT_ORDER_TRY    10000    /* ms a gap's read is retried */


/* the columns of chat.api_cluster_change_rows (sql.c asks for them so) */
enum {
    NGX_HTTP_CHAT_CHANGE_CID = 0,
    NGX_HTTP_CHAT_CHANGE_HEAD,
    NGX_HTTP_CHAT_CHANGE_TYPE,
    NGX_HTTP_CHAT_CHANGE_SENDER,
    NGX_HTTP_CHAT_CHANGE_CMID,
    NGX_HTTP_CHAT_CHANGE_MSG,              /* a Message's (message.h) */
    NGX_HTTP_CHAT_CHANGE_MEMBERS = NGX_HTTP_CHAT_CHANGE_MSG
                                   + NGX_HTTP_CHAT_MESSAGE_COLS,
    NGX_HTTP_CHAT_CHANGE_RECIPIENTS,
    NGX_HTTP_CHAT_CHANGE_COLUMNS
};


typedef struct {
    ngx_queue_t                   queue;
    int64_t                       n;
    ngx_http_chat_ev_t            ev;       /* its references held */
} ngx_http_chat_held_t;


typedef struct {
    ngx_rbtree_node_t             node;     /* key: conversation id */
    int64_t                       last;     /* delivered, in order */
    int64_t                       asked;    /* read from another node */
    int64_t                       start;    /* the first number followed */
    int64_t                       early;    /* read from before start */
    int64_t                       hole_lo;  /* the last gap read or given */
    int64_t                       hole_hi;  /* up on; its changes seen:   */
    uint64_t                      hole_seen[NGX_HTTP_CHAT_ORDER_HOLE / 64];
    ngx_queue_t                   held;     /* by number */
    ngx_queue_t                   lru;
    ngx_queue_t                   gap;      /* in the gapped list */
    ngx_msec_t                    used;
    ngx_msec_t                    gap_since;  /* or its last read failed */
    ngx_msec_t                    gap_first;  /* it opened */
    json_t                       *members;  /* of its last change */
    ngx_msec_t                    members_at;
    unsigned                      fetching:1; /* in the read in flight */
} ngx_http_chat_conv_t;


/* the read of the gaps of many conversations */
typedef struct {
    ngx_http_chat_pg_query_t      q;
    char                         *text;
    ngx_uint_t                    n;
    ngx_uint_t                    cids[NGX_HTTP_CHAT_ORDER_FETCH];
    int64_t                       upto[NGX_HTTP_CHAT_ORDER_FETCH];
} ngx_http_chat_fetch_t;


static ngx_http_chat_conv_t *ngx_http_chat_order_conv(ngx_uint_t cid,
    int64_t n, ngx_log_t *log);
static void ngx_http_chat_order_drain(ngx_http_chat_conv_t *cv,
    ngx_log_t *log);
static void ngx_http_chat_order_timer(ngx_event_t *ev);
static void ngx_http_chat_order_fetch(ngx_http_chat_fetch_t *f);
static void ngx_http_chat_order_failed(ngx_http_chat_fetch_t *f);
static void ngx_http_chat_order_fetched(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_http_chat_order_fetched_change(json_t *event, json_t *to,
    void *data);
static void ngx_http_chat_order_skip(ngx_http_chat_conv_t *cv,
    int64_t upto);
static void ngx_http_chat_order_hole(ngx_http_chat_conv_t *cv, int64_t lo,
    int64_t hi);
static int64_t ngx_http_chat_order_head(ngx_http_chat_conv_t *cv);
static ngx_uint_t ngx_http_chat_order_late(ngx_http_chat_conv_t *cv,
    int64_t n);
static void ngx_http_chat_order_evict(void);
static ngx_http_chat_conv_t *ngx_http_chat_order_find(ngx_uint_t cid);


/* per worker process */
static ngx_rbtree_t       ngx_http_chat_convs;
static ngx_rbtree_node_t  ngx_http_chat_convs_sentinel;
static ngx_queue_t        ngx_http_chat_convs_lru;
static ngx_queue_t        ngx_http_chat_gapped;
static ngx_uint_t         ngx_http_chat_nconvs;
static ngx_event_t        ngx_http_chat_order_event;
static ngx_uint_t         ngx_http_chat_order_reading;   /* a fetch is out */


void
ngx_http_chat_order_init_process(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_http_chat_convs, &ngx_http_chat_convs_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&ngx_http_chat_convs_lru);
    ngx_queue_init(&ngx_http_chat_gapped);

    ngx_http_chat_order_event.handler = ngx_http_chat_order_timer;
    ngx_http_chat_order_event.log = cycle->log;
    ngx_http_chat_order_event.cancelable = 1;
}


void
ngx_http_chat_order_deliver(ngx_http_chat_ev_t *ev, ngx_log_t *log)
{
    int64_t                n;
    ngx_queue_t           *q;
    ngx_http_chat_held_t  *h, *held;
    ngx_http_chat_conv_t  *cv;

    if (ev->kind == NGX_HTTP_CHAT_EV_CREATED) {
        /* where its changes start: no guessing for a new conversation */
        (void) ngx_http_chat_order_conv((ngx_uint_t) ev->cid, ev->n + 1, log);
    }

    if (ev->kind == NGX_HTTP_CHAT_EV_MEMBER
        || ev->kind == NGX_HTTP_CHAT_EV_LEFT)
    {
        /* who is in it changed: the members of its last change are stale */
        cv = ngx_http_chat_order_find((ngx_uint_t) ev->cid);

        if (cv != NULL && cv->members != NULL) {
            json_decref(cv->members);
            cv->members = NULL;
        }
    }

    if (!ngx_http_chat_fanout_numbered(ev->kind)) {
        /* not a numbered change: in no particular order */
        ngx_http_chat_fanout_deliver(ev, log);
        return;
    }

    n = ev->n;

    cv = ngx_http_chat_order_conv((ngx_uint_t) ev->cid, n, log);

    if (cv != NULL) {
        /* who is in it, as of its last change: typing without storage */
        if (cv->members != NULL) {
            json_decref(cv->members);
        }

        cv->members = json_incref(ev->to);
        cv->members_at = ngx_current_msec;
    }

    if (cv == NULL) {
        ngx_http_chat_fanout_deliver(ev, log);
        return;
    }

    if (n <= cv->last) {
        /* late (in a gap given up on): sent, never lost; else a repeat */
        if (ngx_http_chat_order_late(cv, n)) {
            ngx_http_chat_fanout_deliver(ev, log);
        }

        return;
    }

    if (n == cv->last + 1 && ngx_queue_empty(&cv->held)) {
        cv->last = n;
        ngx_http_chat_fanout_deliver(ev, log);
        return;
    }

    /* after a gap: held, in number order, with its frame if it has one */

    held = ngx_alloc(sizeof(ngx_http_chat_held_t), log);
    if (held == NULL) {
        ngx_http_chat_fanout_deliver(ev, log);
        return;
    }

    held->n = n;
    held->ev = *ev;

    /* what a numbered change's fan-out never reads may not outlive it */
    ngx_str_null(&held->ev.user);
    ngx_str_null(&held->ev.peer);

    held->ev.to = json_incref(ev->to);

    if (ev->event != NULL) {
        held->ev.event = json_incref(ev->event);
    }

    if (ev->frame != NULL) {
        ev->frame->refs++;
    }

    for (q = ngx_queue_last(&cv->held);
         q != ngx_queue_sentinel(&cv->held);
         q = ngx_queue_prev(q))
    {
        h = ngx_queue_data(q, ngx_http_chat_held_t, queue);

        if (h->n < n) {
            break;
        }
    }

    ngx_queue_insert_after(q, &held->queue);

    ngx_http_chat_order_drain(cv, log);
}


static ngx_http_chat_conv_t *
ngx_http_chat_order_conv(ngx_uint_t cid, int64_t n, ngx_log_t *log)
{
    ngx_http_chat_conv_t  *cv;

    cv = ngx_http_chat_order_find(cid);

    if (cv != NULL) {
        ngx_queue_remove(&cv->lru);
        ngx_queue_insert_tail(&ngx_http_chat_convs_lru, &cv->lru);
        cv->used = ngx_current_msec;

        return cv;
    }

    ngx_http_chat_order_evict();

    cv = ngx_calloc(sizeof(ngx_http_chat_conv_t), log);
    if (cv == NULL) {
        return NULL;
    }

    /*
     * Known from its creation, or else from the first change this worker
     * sees of it: the order starts there (an earlier change still on its
     * way then arrives after it, late but not lost).
     */
    cv->node.key = cid;
    cv->last = n - 1;
    cv->start = n;
    cv->early = n;
    cv->used = ngx_current_msec;
    ngx_queue_init(&cv->held);

    ngx_rbtree_insert(&ngx_http_chat_convs, &cv->node);
    ngx_queue_insert_tail(&ngx_http_chat_convs_lru, &cv->lru);
    ngx_http_chat_nconvs++;

    return cv;
}


/* what follows the last delivered change, in order; then the gap, if any */

static void
ngx_http_chat_order_drain(ngx_http_chat_conv_t *cv, ngx_log_t *log)
{
    ngx_queue_t           *q;
    ngx_http_chat_held_t  *h;

    while (!ngx_queue_empty(&cv->held)) {
        q = ngx_queue_head(&cv->held);
        h = ngx_queue_data(q, ngx_http_chat_held_t, queue);

        if (h->n > cv->last + 1) {
            break;
        }

        ngx_queue_remove(q);

        if (h->n > cv->last) {
            cv->last = h->n;
            ngx_http_chat_fanout_deliver(&h->ev, log);

        } else if (ngx_http_chat_order_late(cv, h->n)) {
            ngx_http_chat_fanout_deliver(&h->ev, log);
        }

        if (h->ev.event != NULL) {
            json_decref(h->ev.event);
        }

        if (h->ev.frame != NULL) {
            ngx_http_chat_ws_buf_release(h->ev.frame);
        }

        json_decref(h->ev.to);
        ngx_free(h);
    }

    if (ngx_queue_empty(&cv->held)) {
        if (cv->gap_since) {
            cv->gap_since = 0;
            ngx_queue_remove(&cv->gap);
        }

        return;
    }

    if (cv->gap_since == 0) {
        cv->gap_since = ngx_current_msec;
        cv->gap_first = ngx_current_msec;
        ngx_queue_insert_tail(&ngx_http_chat_gapped, &cv->gap);

        if (!ngx_http_chat_order_event.timer_set) {
            ngx_add_timer(&ngx_http_chat_order_event,
                          NGX_HTTP_CHAT_ORDER_WAIT);
        }
    }
}


/*
 * Gaps open for too long: what they miss is read from PostgreSQL, many
 * conversations in one query, one query at a time (the next when it is
 * answered).
 */

static void
ngx_http_chat_order_timer(ngx_event_t *ev)
{
    ngx_queue_t            *q, *next;
    ngx_msec_int_t          left;
    ngx_http_chat_conv_t   *cv;
    ngx_http_chat_fetch_t  *f;

    if (ngx_http_chat_order_reading) {
        return;
    }

    f = NULL;

    for (q = ngx_queue_head(&ngx_http_chat_gapped);
         q != ngx_queue_sentinel(&ngx_http_chat_gapped);
         q = next)
    {
        next = ngx_queue_next(q);
        cv = ngx_queue_data(q, ngx_http_chat_conv_t, gap);

        left = (ngx_msec_int_t) (cv->gap_since + NGX_HTTP_CHAT_ORDER_WAIT
                                 - ngx_current_msec);

        if (left > 0) {
            ngx_add_timer(ev, (ngx_msec_t) left);
            break;
        }

        if (f == NULL) {
            f = ngx_calloc(sizeof(ngx_http_chat_fetch_t), ev->log);
            if (f == NULL) {
                ngx_add_timer(ev, NGX_HTTP_CHAT_ORDER_WAIT);
                return;
            }
        }

        if (f->n == NGX_HTTP_CHAT_ORDER_FETCH) {
            /* the rest when this read is answered */
            break;
        }

        f->cids[f->n++] = cv->node.key;
        cv->fetching = 1;
    }

    if (f != NULL) {
        ngx_http_chat_order_fetch(f);
    }
}


static void
ngx_http_chat_order_fetch(ngx_http_chat_fetch_t *f)
{
    json_t                *arg, *ranges;
    ngx_uint_t             i;
    ngx_http_chat_conv_t  *cv;
    ngx_http_chat_held_t  *h;

    ranges = json_array();

    for (i = 0; ranges != NULL && i < f->n; i++) {
        cv = ngx_http_chat_order_find(f->cids[i]);
        h = ngx_queue_data(ngx_queue_head(&cv->held), ngx_http_chat_held_t,
                           queue);

        /* what the read covers: only that may be skipped when it is in */
        f->upto[i] = h->n - 1;

        if (json_array_append_new(ranges,
                                  json_pack("[I, I, I]",
                                            (json_int_t) cv->node.key,
                                            (json_int_t) cv->last,
                                            (json_int_t) h->n))
            != 0)
        {
            json_decref(ranges);
            ranges = NULL;
        }
    }

    arg = ranges ? json_pack("{s:o}", "ranges", ranges) : NULL;
    f->text = arg ? json_dumps(arg, JSON_COMPACT) : NULL;
    json_decref(arg);

    ngx_http_chat_pg_query_init(&f->q, NGX_HTTP_CHAT_STMT_GAP_CHANGES,
                                ngx_http_chat_order_fetched, f);

    if (f->text != NULL) {
        ngx_http_chat_pg_query_param(&f->q, "", 0);
        ngx_http_chat_pg_query_param(&f->q, f->text, ngx_strlen(f->text));

        ngx_http_chat_order_reading = 1;

        if (ngx_http_chat_pg_query(&f->q) == NGX_OK) {
            return;
        }

        ngx_http_chat_order_reading = 0;
    }

    ngx_http_chat_order_failed(f);
}


static void
ngx_http_chat_order_fetched(ngx_http_chat_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    ngx_uint_t              k;
    ngx_http_chat_conv_t   *cv;
    ngx_http_chat_fetch_t  *f;

    f = q->data;
    ngx_http_chat_order_reading = 0;

    if (rc != NGX_OK || res == NULL
        || PQresultStatus(res) != PGRES_TUPLES_OK)
    {
        ngx_http_chat_order_failed(f);
        return;
    }

    /*
     * What the gaps held as the read was asked, and what of it was read.
     * The stream may have filled a gap meanwhile and another opened after
     * it: only what this read covered is skipped (and remembered); the
     * newer gap waits for a read of its own.
     */

    for (k = 0; k < f->n; k++) {
        cv = ngx_http_chat_order_find(f->cids[k]);

        if (cv->last < f->upto[k]) {
            ngx_http_chat_order_hole(cv, cv->last + 1, f->upto[k]);
        }
    }

    if (ngx_http_chat_order_rows(rc, res, NULL,
                                 ngx_http_chat_order_fetched_change, f)
        != NGX_OK)
    {
        /* not the rows asked for: what the read covered is given up on */
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: a gap read returned unexpected columns");
    }

    /* the gaps are filled: what was held goes on */

    for (k = 0; k < f->n; k++) {
        cv = ngx_http_chat_order_find(f->cids[k]);
        cv->fetching = 0;

        ngx_http_chat_order_skip(cv, f->upto[k]);
    }

    free(f->text);
    ngx_free(f);

    /* gaps that waited for this read */
    ngx_http_chat_order_timer(&ngx_http_chat_order_event);
}


/* a change a gap read brought: sent if it is still due */

static void
ngx_http_chat_order_fetched_change(json_t *event, json_t *to, void *data)
{
    int64_t                n;
    ngx_http_chat_ev_t     ev;
    ngx_http_chat_conv_t  *cv;

    ngx_http_chat_fanout_event(&ev, event, to);

    /* one of the conversations read (fetching: in this read) */
    cv = ngx_http_chat_order_find((ngx_uint_t) ev.cid);

    if (cv == NULL || !cv->fetching) {
        return;
    }

    if (ev.kind == NGX_HTTP_CHAT_EV_DELETED) {
        /* created and deleted in the gap: the deletion says it all */
        n = json_integer_value(json_object_get(
                      json_object_get(ev.event, "message"), "seq"));

        if (n >= cv->hole_lo && n <= cv->hole_hi) {
            (void) ngx_http_chat_order_late(cv, n);
        }
    }

    /* (the read gives numbered changes; anything else has number 0) */
    if (ngx_http_chat_order_late(cv, ngx_http_chat_fanout_numbered(ev.kind)
                                     ? ev.n : 0))
    {
        ngx_http_chat_fanout_deliver(&ev, ngx_cycle->log);
    }
}


/*
 * The rows of chat.api_cluster_change_rows, for the node's reader and the
 * gap reads: a head per conversation asked for (its last number), then
 * its changes, made into events from the columns as a send's are (no JSON
 * built by PostgreSQL and parsed again here).  The members come on a
 * conversation's first change and are shared by its others; a change
 * whose sender has blocks comes with its own recipients.
 */

ngx_int_t
ngx_http_chat_order_rows(ngx_int_t rc, PGresult *res,
    ngx_http_chat_order_head_pt head, ngx_http_chat_order_change_pt change,
    void *data)
{
    int                           row, rows, c;
    int                           len[NGX_HTTP_CHAT_CHANGE_COLUMNS];
    int64_t                       cid, members_cid;
    json_t                       *members, *to, *msg, *event;
    const char                   *v[NGX_HTTP_CHAT_CHANGE_COLUMNS];
    ngx_http_chat_message_row_t   m;

    if (rc != NGX_OK || res == NULL
        || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQnfields(res) != NGX_HTTP_CHAT_CHANGE_COLUMNS)
    {
        return NGX_ERROR;
    }

    rows = PQntuples(res);
    members = NULL;
    members_cid = 0;

    for (row = 0; row < rows; row++) {

        for (c = 0; c < NGX_HTTP_CHAT_CHANGE_COLUMNS; c++) {
            v[c] = PQgetisnull(res, row, c) ? NULL
                                            : PQgetvalue(res, row, c);
            len[c] = PQgetlength(res, row, c);
        }

        if (v[NGX_HTTP_CHAT_CHANGE_CID] == NULL) {
            continue;
        }

        cid = ngx_atoi((u_char *) v[NGX_HTTP_CHAT_CHANGE_CID],
                       ngx_strlen(v[NGX_HTTP_CHAT_CHANGE_CID]));

        if (cid <= 0) {
            continue;
        }

        if (v[NGX_HTTP_CHAT_CHANGE_HEAD] != NULL) {
            if (head != NULL) {
                head((ngx_uint_t) cid,
                     ngx_atoi((u_char *) v[NGX_HTTP_CHAT_CHANGE_HEAD],
                              ngx_strlen(v[NGX_HTTP_CHAT_CHANGE_HEAD])),
                     data);
            }

            continue;
        }

        if (v[NGX_HTTP_CHAT_CHANGE_TYPE] == NULL
            || v[NGX_HTTP_CHAT_CHANGE_SENDER] == NULL
            || ngx_http_chat_message_row_columns(&m,
                                                &v[NGX_HTTP_CHAT_CHANGE_MSG],
                                                &len[NGX_HTTP_CHAT_CHANGE_MSG])
               != 0)
        {
            continue;
        }

        if (v[NGX_HTTP_CHAT_CHANGE_MEMBERS] != NULL) {
            if (members != NULL) {
                json_decref(members);
            }

            members = ngx_http_chat_message_text_array(
                          v[NGX_HTTP_CHAT_CHANGE_MEMBERS],
                          len[NGX_HTTP_CHAT_CHANGE_MEMBERS]);
            members_cid = cid;
        }

        if (v[NGX_HTTP_CHAT_CHANGE_RECIPIENTS] != NULL) {
            to = ngx_http_chat_message_text_array(
                     v[NGX_HTTP_CHAT_CHANGE_RECIPIENTS],
                     len[NGX_HTTP_CHAT_CHANGE_RECIPIENTS]);

        } else if (members != NULL && members_cid == cid) {
            to = json_incref(members);

        } else {
            to = NULL;
        }

        if (to == NULL) {
            continue;
        }

        m.conversation_id = cid;
        m.sender_id = v[NGX_HTTP_CHAT_CHANGE_SENDER];
        m.sender_id_len = len[NGX_HTTP_CHAT_CHANGE_SENDER];
        m.client_msg_id = v[NGX_HTTP_CHAT_CHANGE_CMID];
        m.client_msg_id_len = m.client_msg_id
                              ? (size_t) len[NGX_HTTP_CHAT_CHANGE_CMID] : 0;

        msg = ngx_http_chat_message_obj(&m);

        event = msg ? json_pack("{s:s, s:o}", "type",
                                v[NGX_HTTP_CHAT_CHANGE_TYPE], "message", msg)
                    : NULL;

        if (event != NULL) {
            change(event, to, data);
            json_decref(event);
        }

        json_decref(to);
    }

    if (members != NULL) {
        json_decref(members);
    }

    return NGX_OK;
}


/*
 * A read that could not be made or answered: each gap is read again after
 * a wait, and given up on (what it held goes on, what it misses may still
 * come late) once it has been open for NGX_HTTP_CHAT_ORDER_TRY.
 */

static void
ngx_http_chat_order_failed(ngx_http_chat_fetch_t *f)
{
    ngx_uint_t             k;
    ngx_http_chat_conv_t  *cv;

    for (k = 0; k < f->n; k++) {
        cv = ngx_http_chat_order_find(f->cids[k]);
        cv->fetching = 0;

        if (cv->gap_since == 0) {
            /* the stream filled it meanwhile */
            continue;
        }

        if (ngx_current_msec - cv->gap_first >= NGX_HTTP_CHAT_ORDER_TRY) {
            ngx_http_chat_order_hole(cv, cv->last + 1,
                                     ngx_http_chat_order_head(cv) - 1);
            ngx_http_chat_order_skip(cv, ngx_http_chat_order_head(cv) - 1);
            continue;
        }

        cv->gap_since = ngx_current_msec;
        ngx_queue_remove(&cv->gap);
        ngx_queue_insert_tail(&ngx_http_chat_gapped, &cv->gap);
    }

    if (f->text != NULL) {
        free(f->text);
    }

    ngx_free(f);

    if (!ngx_queue_empty(&ngx_http_chat_gapped)
        && !ngx_http_chat_order_event.timer_set)
    {
        ngx_add_timer(&ngx_http_chat_order_event, NGX_HTTP_CHAT_ORDER_WAIT);
    }
}


/*
 * The gap about to be skipped, lo..hi, is remembered: a change of it that
 * was not read (the read failed, or it was superseded) still comes late,
 * once; one that was read is not sent again.
 */

static void
ngx_http_chat_order_hole(ngx_http_chat_conv_t *cv, int64_t lo, int64_t hi)
{
    cv->hole_lo = lo;
    cv->hole_hi = hi;
    ngx_memzero(cv->hole_seen, sizeof(cv->hole_seen));
}


/* the number of the first change held (there is one) */

static int64_t
ngx_http_chat_order_head(ngx_http_chat_conv_t *cv)
{
    ngx_http_chat_held_t  *h;

    h = ngx_queue_data(ngx_queue_head(&cv->held), ngx_http_chat_held_t,
                       queue);

    return h->n;
}


/* a change numbered at or below the last delivered: 1 if it is still due */

static ngx_uint_t
ngx_http_chat_order_late(ngx_http_chat_conv_t *cv, int64_t n)
{
    uint64_t    bit;
    ngx_uint_t  i;

    if (n < cv->start) {
        /* from before this worker followed the conversation */
        return 1;
    }

    if (n < cv->hole_lo || n > cv->hole_hi) {
        return 0;
    }

    if (n - cv->hole_lo >= NGX_HTTP_CHAT_ORDER_HOLE) {
        /* a very long gap: late ones are sent, perhaps twice */
        return 1;
    }

    i = (ngx_uint_t) (n - cv->hole_lo);
    bit = (uint64_t) 1 << (i % 64);

    if (cv->hole_seen[i / 64] & bit) {
        return 0;
    }

    cv->hole_seen[i / 64] |= bit;

    return 1;
}


/* the changes up to upto are given or given up: what is held goes on */

static void
ngx_http_chat_order_skip(ngx_http_chat_conv_t *cv, int64_t upto)
{
    if (upto <= cv->last) {
        /* a gap that opened meanwhile waits for its own read */
        return;
    }

    cv->last = upto;

    if (cv->gap_since) {
        cv->gap_since = 0;
        ngx_queue_remove(&cv->gap);
    }

    ngx_http_chat_order_drain(cv, ngx_cycle->log);

    if (cv->gap_since && !ngx_http_chat_order_event.timer_set) {
        ngx_add_timer(&ngx_http_chat_order_event, NGX_HTTP_CHAT_ORDER_WAIT);
    }
}


/* conversations quiet for a minute are forgotten, oldest first */

static void
ngx_http_chat_order_evict(void)
{
    ngx_uint_t             i;
    ngx_queue_t           *q;
    ngx_http_chat_conv_t  *cv;

    for (i = 0; i < 16 && !ngx_queue_empty(&ngx_http_chat_convs_lru); i++) {
        q = ngx_queue_head(&ngx_http_chat_convs_lru);
        cv = ngx_queue_data(q, ngx_http_chat_conv_t, lru);

        if (ngx_http_chat_nconvs < NGX_HTTP_CHAT_ORDER_MAX
            && ngx_current_msec - cv->used < NGX_HTTP_CHAT_ORDER_IDLE)
        {
            return;
        }

        if (!ngx_queue_empty(&cv->held) || cv->fetching) {
            /* still busy: looked at again later */
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&ngx_http_chat_convs_lru, q);
            cv->used = ngx_current_msec;
            continue;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&ngx_http_chat_convs, &cv->node);
        ngx_http_chat_nconvs--;

        if (cv->members != NULL) {
            json_decref(cv->members);
        }

        ngx_free(cv);
    }
}


/*
 * The members of a conversation as this worker last saw them in one of
 * its changes (at *since, if asked), or NULL: enough to route typing while
 * PostgreSQL is down.  A member.joined or member.left this worker delivers
 * forgets them.
 */

json_t *
ngx_http_chat_order_members(ngx_uint_t cid, ngx_msec_t *since)
{
    ngx_http_chat_conv_t  *cv;

    cv = ngx_http_chat_order_find(cid);

    if (cv == NULL) {
        return NULL;
    }

    if (since != NULL) {
        *since = cv->members_at;
    }

    return cv->members;
}


static ngx_http_chat_conv_t *
ngx_http_chat_order_find(ngx_uint_t cid)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = ngx_http_chat_convs.root;
    sentinel = ngx_http_chat_convs.sentinel;

    while (node != sentinel) {
        if (cid == node->key) {
            return (ngx_http_chat_conv_t *) node;
        }

        node = (cid < node->key) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Another node committed changes from..to of cid (chat_cluster).  NGX_OK:
 * read the changes after *after up to *upto; NGX_DECLINED: they were
 * delivered, or asked for, already.  A conversation first heard of so
 * starts at from.
 */

ngx_int_t
ngx_http_chat_order_want(ngx_uint_t cid, int64_t from, int64_t to,
    int64_t *after, int64_t *upto)
{
    int64_t                known;
    ngx_http_chat_conv_t  *cv;

    cv = ngx_http_chat_order_conv(cid, from, ngx_cycle->log);
    if (cv == NULL) {
        return NGX_DECLINED;
    }

    known = ngx_max(cv->last, cv->asked);

    if (from < cv->early) {
        /*
         * Committed on the other node before the first change this worker
         * followed (one committed here, say): never read, though numbered
         * below what was delivered.  Read once, from there; what of the
         * read was delivered already is dropped as a repeat, the rest
         * comes late (ngx_http_chat_order_late: below start).
         */
        *after = from - 1;
        cv->early = from;

    } else if (to <= known) {
        return NGX_DECLINED;

    } else {
        *after = known;
    }

    /* a long way behind: a piece at a time (the round trip asks again) */
    if (to - *after > NGX_HTTP_CHAT_ORDER_READ) {
        to = *after + NGX_HTTP_CHAT_ORDER_READ;
    }

    *upto = to;

    if (to > cv->asked) {
        cv->asked = to;
    }

    return NGX_OK;
}


/* a read that failed: the next notice or round trip asks again */

void
ngx_http_chat_order_unask(ngx_uint_t cid)
{
    ngx_http_chat_conv_t  *cv;

    cv = ngx_http_chat_order_find(cid);

    if (cv != NULL) {
        cv->asked = 0;
        cv->early = cv->start;   /* nothing of it came: asked again */
    }
}


/*
 * A read from another node's range came back with the conversation's real
 * last number: what was asked beyond it was never there (a range notice
 * must not stop later ones from being read).
 */

void
ngx_http_chat_order_read(ngx_uint_t cid, int64_t last_seq)
{
    ngx_http_chat_conv_t  *cv;

    cv = ngx_http_chat_order_find(cid);

    if (cv != NULL && cv->asked > last_seq) {
        cv->asked = ngx_max(last_seq, 0);
    }
}


/*
 * [[conversation id, last delivered], ...] of the conversations used most
 * recently, at most max: a node's round trip asks which went further.
 */

json_t *
ngx_http_chat_order_heads(ngx_uint_t max)
{
    ngx_uint_t             n;
    json_t                *heads, *pair;
    ngx_queue_t           *q;
    ngx_http_chat_conv_t  *cv;

    heads = json_array();
    if (heads == NULL) {
        return heads;
    }

    n = 0;

    for (q = ngx_queue_last(&ngx_http_chat_convs_lru);
         q != ngx_queue_sentinel(&ngx_http_chat_convs_lru) && n < max;
         q = ngx_queue_prev(q), n++)
    {
        cv = ngx_queue_data(q, ngx_http_chat_conv_t, lru);

        pair = json_pack("[I, I]", (json_int_t) cv->node.key,
                         (json_int_t) ngx_max(cv->last, cv->asked));

        if (pair == NULL || json_array_append_new(heads, pair) != 0) {
            break;
        }
    }

    return heads;
}
