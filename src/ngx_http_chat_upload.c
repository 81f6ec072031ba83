
/*
 * POST uploads: a file into the content-addressed store under
 * chat_upload_path, and its row in chat.uploads.
 *
 * nginx reads the body into a temporary file in chat_upload_path/tmp (the
 * location's client_body_temp_path, set at configuration), never into
 * memory whole.  A request body filter of this module sees every byte on
 * its way to that file once: it counts them against chat_upload_max_size
 * (chunked bodies too), feeds SHA-256 and keeps the first
 * NGX_HTTP_CHAT_SNIFF_HEAD bytes for the sniffer, so the file is never
 * read back.  Once the body is in, the file is renamed to ab/cd/<sha256>
 * (same filesystem: atomic, over whatever is there) and nginx's cleanup
 * removes the temporary name otherwise, the client leaving mid-upload
 * included.  Then the row, through the pool.
 *
 * The directories and the rename are made by the worker itself, as
 * nginx's own dav and proxy_store do (metadata operations of a local
 * filesystem), or with chat_upload_threads in a thread of nginx's pool
 * (a network filesystem that stalls must not stall the worker).
 *
 * A user has at most chat_upload_concurrency uploads in flight (counted in
 * the zone, presence.c), each its whole body within chat_upload_timeout;
 * the first worker sweeps tmp/ of what workers that died left there.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_sniff.h>
#include <ngx_http_chat_utf8.h>

#include <openssl/evp.h>


/* a name's length, in characters */
#define NGX_HTTP_CHAT_UPLOAD_NAME_MAX  255

/* a refused upload's Retry-After when one in flight must end first */
#define NGX_HTTP_CHAT_UPLOAD_RETRY     1000

/* tmp/'s sweep: hourly, at most this many entries a tick, the next
 * batch soon after */
#define NGX_HTTP_CHAT_UPLOAD_TMP_PERIOD  3600000
#define NGX_HTTP_CHAT_UPLOAD_TMP_BATCH   256
#define NGX_HTTP_CHAT_UPLOAD_TMP_NEXT    100


typedef struct {
    ngx_str_t                    *user;      /* the owner */
    EVP_MD_CTX                   *sha;
    u_char                       *head;      /* the sniffer's bytes */
    size_t                        head_len;
    off_t                         size;      /* bytes seen so far */
    off_t                         max;
    ngx_err_t                     err;       /* of a failed write */
    ngx_str_t                     name;      /* len 0: none */
    ngx_http_chat_sniff_t         sniff;
    u_char                        hex[2 * 32 + 1];
    void                         *hold;      /* the count in flight */
    ngx_event_t                   deadline;  /* chat_upload_timeout */
    unsigned                      over:1;
    unsigned                      local:1;   /* hold: this worker's */
} ngx_http_chat_upload_t;


/*
 * The store's filesystem work on plain data: done inline, or in a thread
 * of chat_upload_threads, which may touch nothing else.
 */
typedef struct {
    u_char                       *temp;      /* the temporary file, NUL */
    ngx_fd_t                      fd;        /* its descriptor */
    u_char                       *path;      /* root/ab/cd/<sha256>, NUL */
    size_t                        root;      /* the root's length */
    time_t                        now;       /* the mtime to set */
    ngx_err_t                     err;       /* 0: stored */
    const char                   *what;      /* the call that failed */
    ngx_uint_t                    level;     /* to log it at */
} ngx_http_chat_upload_fs_t;


/* without a zone: a user's uploads in flight in this worker */
typedef struct {
    ngx_str_node_t                sn;
    ngx_uint_t                    n;
    u_char                        user[1];
} ngx_http_chat_upload_local_t;


/* the sweep of what dead workers left in the stores' tmp/ */
typedef struct {
    ngx_event_t                   timer;
    ngx_array_t                  *paths;     /* ngx_str_t: the stores */
    ngx_uint_t                    path;      /* the one being read */
    ngx_dir_t                     dir;
    time_t                        timeout;   /* this worker's longest
                                                chat_upload_timeout, s */
    unsigned                      open:1;
} ngx_http_chat_upload_tmp_t;


static ngx_int_t ngx_http_chat_upload_name(ngx_http_request_t *r,
    ngx_str_t *name, const char **err);
static ngx_int_t ngx_http_chat_upload_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    ngx_msec_t wait);
static void ngx_http_chat_upload_cleanup(void *data);
static ngx_int_t ngx_http_chat_upload_take(ngx_http_chat_upload_t *up,
    ngx_str_t *user, ngx_uint_t max);
static ngx_int_t ngx_http_chat_upload_local_take(ngx_http_chat_upload_t *up,
    ngx_str_t *user, ngx_uint_t max);
static void ngx_http_chat_upload_local_release(ngx_http_chat_upload_t *up);
static void ngx_http_chat_upload_deadline(ngx_event_t *ev);
static void ngx_http_chat_upload_tmp_tick(ngx_event_t *ev);
static time_t ngx_http_chat_upload_tmp_age(
    ngx_http_chat_upload_tmp_t *tmp);
static ngx_int_t ngx_http_chat_upload_tmp_open(
    ngx_http_chat_upload_tmp_t *tmp);
static ngx_int_t ngx_http_chat_upload_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_chat_upload_filter_failed(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_chat_upload_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_chat_upload_failed(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_chat_upload_body(ngx_http_request_t *r);
static ngx_http_chat_upload_fs_t *ngx_http_chat_upload_fs_make(
    ngx_http_request_t *r, ngx_http_chat_upload_fs_t *fs,
    ngx_http_chat_upload_t *up, ngx_str_t *temp);
static void ngx_http_chat_upload_fs(ngx_http_chat_upload_fs_t *fs);
#if (NGX_THREADS)
static void ngx_http_chat_upload_thread(void *data, ngx_log_t *log);
static void ngx_http_chat_upload_thread_done(ngx_event_t *ev);
#endif
static void ngx_http_chat_upload_stored(ngx_http_request_t *r,
    ngx_http_chat_upload_fs_t *fs);
static ngx_int_t ngx_http_chat_upload_error(ngx_http_request_t *r,
    ngx_int_t status);
static void ngx_http_chat_upload_unlink(ngx_http_request_t *r,
    ngx_str_t *temp);
static void ngx_http_chat_upload_done(ngx_http_chat_store_done_t *done,
    json_t *result);


static ngx_http_request_body_filter_pt  ngx_http_chat_upload_next;

static ngx_rbtree_t                     ngx_http_chat_upload_local;
static ngx_rbtree_node_t                ngx_http_chat_upload_sentinel;

static ngx_http_chat_upload_tmp_t       ngx_http_chat_upload_tmp;


/* the body filter, in front of nginx's own (which saves to the file) */

ngx_int_t
ngx_http_chat_upload_init(ngx_conf_t *cf)
{
    ngx_http_chat_upload_next = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_chat_upload_body_filter;

    return NGX_OK;
}


/*
 * The route, once api.c has authenticated the caller (user: whom the file
 * belongs to) and checked the method.  Returns what a content handler
 * does.
 */

ngx_int_t
ngx_http_chat_upload_handler(ngx_http_request_t *r, ngx_http_chat_ctx_t *ctx,
    ngx_str_t *user)
{
    off_t                       length;
    ngx_int_t                   rc;
    ngx_msec_t                  wait;
    const char                 *err;
    ngx_pool_cleanup_t         *cln;
    ngx_http_chat_upload_t     *up;
    ngx_http_chat_loc_conf_t   *ccf;
    ngx_http_chat_main_conf_t  *cmcf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    if (ccf->upload_path.len == 0) {
        return ngx_http_chat_upload_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "unavailable",
                                           "uploads are not configured", 0);
    }

    if (cmcf->pg == NULL) {
        return ngx_http_chat_upload_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "unavailable",
                                           "storage is not configured", 0);
    }

    length = r->headers_in.content_length_n;

    /*
     * Too large: answered at once, the body left unread (the connection
     * closes after a lingering read, as nginx does for its own 413; an
     * HTTP/2 stream drops its DATA frames instead).
     */

    if (length > ccf->upload_max_size
        || (length > 0
            && ccf->rates[NGX_HTTP_CHAT_RATE_UPLOAD_BYTES].rate
            && (ngx_uint_t) length * 1000
               > ccf->rates[NGX_HTTP_CHAT_RATE_UPLOAD_BYTES].burst))
    {
#if (NGX_HTTP_V2)
        if (r->stream) {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

        } else
#endif
        {
            r->keepalive = 0;
            r->lingering_close = 1;
        }

        return ngx_http_chat_http_send_error(r,
                                        NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                        "too_large",
                                        length > ccf->upload_max_size
                                        ? "the file is too large"
                                        : "the file is larger than the "
                                          "daily upload quota");
    }

    up = ngx_pcalloc(r->pool, sizeof(ngx_http_chat_upload_t));
    if (up == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_chat_upload_name(r, &up->name, &err) != NGX_OK) {
        return ngx_http_chat_upload_refuse(r, NGX_HTTP_BAD_REQUEST,
                                           "bad_request", err, 0);
    }

    /*
     * The pool's cleanup gives back what the upload holds (its count in
     * flight, the deadline's timer, the digest) however the request ends:
     * answered, refused, the client gone, the deadline passed
     */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_chat_upload_cleanup;
    cln->data = up;

    switch (ngx_http_chat_upload_take(up, user, ccf->upload_concurrency)) {

    case NGX_OK:
        break;

    case NGX_BUSY:
        ngx_http_chat_stat(cmcf, rate_limited, 1);
        return ngx_http_chat_upload_refuse(r, 429, "rate_limited",
                                           "too many uploads at once, "
                                           "wait for one to end",
                                           NGX_HTTP_CHAT_UPLOAD_RETRY);

    case NGX_DECLINED:
        /* no entry for the count, nor then for the quota: refused, not
         * unlimited (R16-7) */
        return ngx_http_chat_upload_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "unavailable",
                                           "uploads cannot be counted now, "
                                           "retry later",
                                           NGX_HTTP_CHAT_UPLOAD_RETRY);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * The quota only peeked at (the bytes are taken once they are in, the
     * size may not be known yet), then a file of chat_upload_rate taken
     */

    wait = 0;

    if (length != 0) {
        /* chunked: not read whole into tmp/ with no byte of the quota
         * left (R16G-3) */
        wait = ngx_http_chat_rate_spend(ccf, user,
                                        NGX_HTTP_CHAT_RATE_UPLOAD_BYTES,
                                        length > 0 ? (ngx_uint_t) length : 1,
                                        1);
    }

    if (wait == 0) {
        wait = ngx_http_chat_rate_check_user(ccf, user,
                                             NGX_HTTP_CHAT_RATE_UPLOAD);
    }

    if (wait) {
        ngx_http_chat_stat(cmcf, rate_limited, 1);
        return ngx_http_chat_upload_refuse(r, 429, "rate_limited",
                                           "too many uploads, slow down",
                                           wait);
    }

    up->user = user;
    up->max = ccf->upload_max_size;

    up->head = ngx_pnalloc(r->pool, NGX_HTTP_CHAT_SNIFF_HEAD);
    if (up->head == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    up->sha = EVP_MD_CTX_new();
    if (up->sha == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (EVP_DigestInit_ex(up->sha, EVP_sha256(), NULL) != 1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->upload = up;

    /*
     * The whole body within chat_upload_timeout: client_body_timeout is
     * between two reads only, and a byte a read would hold the upload
     * (its count, connection, temporary file) for ever
     */

    up->deadline.handler = ngx_http_chat_upload_deadline;
    up->deadline.data = r;
    up->deadline.log = r->connection->log;
    up->deadline.cancelable = 1;

    ngx_add_timer(&up->deadline, ccf->upload_timeout);

    /*
     * The body into a file under chat_upload_path/tmp, whatever its size:
     * a named one (persistent), so that it can be linked into the store,
     * and removed by the request pool's cleanup (clean), also when the
     * client goes away.
     */

    r->request_body_in_file_only = 1;
    r->request_body_in_persistent_file = 1;
    r->request_body_in_clean_file = 1;
    r->request_body_file_log_level = 0;

    rc = ngx_http_read_client_request_body(r, ngx_http_chat_upload_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return ngx_http_chat_upload_failed(r, rc);
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return NGX_DONE;
    }
#endif

    if (rc == NGX_AGAIN) {
        /*
         * The rest comes in later reads: nginx's read handler would answer
         * a failure with its own error page; ours reads the same way
         * (ngx_http_read_unbuffered_request_body is the public entry to
         * nginx's reading loop) and answers in JSON.
         */
        r->read_event_handler = ngx_http_chat_upload_read;
    }

    return NGX_DONE;
}


/*
 * ?name=: the file's name as the client declares it (percent-encoded
 * UTF-8).  Only its last path component is kept (after '/' or '\'),
 * without control characters (C0, DEL, C1), bidirectional marks and
 * overrides (U+061C too) and line separators; "." and ".." are no name.
 * At most 255 characters after that.
 */

static ngx_int_t
ngx_http_chat_upload_name(ngx_http_request_t *r, ngx_str_t *name,
    const char **err)
{
    u_char     *buf, *p, *src, *dst, *start, *end;
    size_t      n;
    ngx_str_t   arg;

    ngx_str_null(name);

    if (ngx_http_arg(r, (u_char *) "name", sizeof("name") - 1, &arg)
        != NGX_OK || arg.len == 0)
    {
        return NGX_OK;
    }

    buf = ngx_pnalloc(r->pool, arg.len);
    if (buf == NULL) {
        *err = "out of memory";
        return NGX_ERROR;
    }

    p = buf;
    src = arg.data;
    ngx_unescape_uri(&p, &src, arg.len, 0);
    end = p;

    if (ngx_http_chat_utf8_validate(NGX_HTTP_CHAT_UTF8_ACCEPT, buf, end - buf)
        != NGX_HTTP_CHAT_UTF8_ACCEPT)
    {
        *err = "name must be UTF-8";
        return NGX_ERROR;
    }

    /* the last component */

    start = buf;

    for (p = buf; p < end; p++) {
        if (*p == '/' || *p == '\\') {
            start = p + 1;
        }
    }

    /* controls out, in place */

    dst = start;

    for (p = start; p < end; /* void */) {

        if (*p < 0x20 || *p == 0x7f) {
            p++;
            continue;
        }

        /* U+0080..U+009F */
        if (p + 1 < end && p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            p += 2;
            continue;
        }

        /* U+061C ARABIC LETTER MARK, a bidirectional mark as U+200F */
        if (p + 1 < end && p[0] == 0xd8 && p[1] == 0x9c) {
            p += 2;
            continue;
        }

        /*
         * U+200E, U+200F, U+202A..U+202E, U+2066..U+2069 reorder what is
         * shown; U+2028, U+2029 break lines
         */
        if (p + 2 < end && p[0] == 0xe2
            && ((p[1] == 0x80
                 && (p[2] == 0x8e || p[2] == 0x8f
                     || (p[2] >= 0xa8 && p[2] <= 0xae)))
                || (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)))
        {
            p += 3;
            continue;
        }

        *dst++ = *p++;
    }

    /* no blanks around it */

    while (dst > start && dst[-1] == ' ') {
        dst--;
    }

    while (start < dst && *start == ' ') {
        start++;
    }

    n = dst - start;

    if (n == 0 || (n == 1 && start[0] == '.')
        || (n == 2 && start[0] == '.' && start[1] == '.'))
    {
        return NGX_OK;
    }

    if (ngx_http_chat_utf8_length(start, n) > NGX_HTTP_CHAT_UPLOAD_NAME_MAX) {
        *err = "name must be at most 255 characters";
        return NGX_ERROR;
    }

    name->data = start;
    name->len = n;

    return NGX_OK;
}


/* an answer before the body is read: the body is read and dropped first */

static ngx_int_t
ngx_http_chat_upload_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, ngx_msec_t wait)
{
    ngx_int_t  rc;

    rc = ngx_http_chat_http_drop_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chat_http_send_retry(r, status, code, message, wait);
}


static void
ngx_http_chat_upload_cleanup(void *data)
{
    ngx_http_chat_upload_t  *up = data;

    EVP_MD_CTX_free(up->sha);
    up->sha = NULL;

    if (up->deadline.timer_set) {
        ngx_del_timer(&up->deadline);
    }

    if (up->hold == NULL) {
        return;
    }

    if (up->local) {
        ngx_http_chat_upload_local_release(up);

    } else {
        ngx_http_chat_presence_upload_release(up->hold);
    }

    up->hold = NULL;
}


/*
 * One more upload of user in flight, at most max (chat_upload_concurrency)
 * at once: counted in the user's entry of the zone, which every worker
 * sees and the sweep of a dead worker's slot repairs (presence.c).
 * Without a zone, or a slot in it, each worker counts its own: max per
 * worker.  NGX_OK; NGX_BUSY: max in flight already; NGX_DECLINED: no
 * room in the zone; NGX_ERROR.
 */

static ngx_int_t
ngx_http_chat_upload_take(ngx_http_chat_upload_t *up, ngx_str_t *user,
    ngx_uint_t max)
{
    ngx_int_t  rc;

    rc = ngx_http_chat_presence_upload_take(user->data, user->len, max,
                                            &up->hold);

    if (rc == NGX_ABORT) {
        rc = ngx_http_chat_upload_local_take(up, user, max);
    }

    return rc;
}


static ngx_int_t
ngx_http_chat_upload_local_take(ngx_http_chat_upload_t *up, ngx_str_t *user,
    ngx_uint_t max)
{
    uint32_t                       hash;
    ngx_http_chat_upload_local_t  *u;

    if (ngx_http_chat_upload_local.root == NULL) {
        ngx_rbtree_init(&ngx_http_chat_upload_local,
                        &ngx_http_chat_upload_sentinel,
                        ngx_str_rbtree_insert_value);
    }

    hash = ngx_crc32_short(user->data, user->len);

    u = (ngx_http_chat_upload_local_t *)
            ngx_str_rbtree_lookup(&ngx_http_chat_upload_local, user, hash);

    if (u == NULL) {
        u = ngx_alloc(offsetof(ngx_http_chat_upload_local_t, user)
                      + user->len, ngx_cycle->log);
        if (u == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(u->user, user->data, user->len);
        u->sn.str.data = u->user;
        u->sn.str.len = user->len;
        u->sn.node.key = hash;
        u->n = 0;

        ngx_rbtree_insert(&ngx_http_chat_upload_local, &u->sn.node);

    } else if (u->n >= max) {
        return NGX_BUSY;
    }

    u->n++;

    up->hold = u;
    up->local = 1;

    return NGX_OK;
}


static void
ngx_http_chat_upload_local_release(ngx_http_chat_upload_t *up)
{
    ngx_http_chat_upload_local_t  *u = up->hold;

    if (--u->n == 0) {
        ngx_rbtree_delete(&ngx_http_chat_upload_local, &u->sn.node);
        ngx_free(u);
    }
}


/*
 * chat_upload_timeout passed with the body still coming: the request
 * ends as nginx ends one whose client_body_timeout passed (no answer,
 * the connection closed); its pool's cleanup removes the temporary file
 * and gives the count back.
 */

static void
ngx_http_chat_upload_deadline(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "chat upload: the body is not in after "
                  "chat_upload_timeout: closed");

    c->timedout = 1;

    ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
    ngx_http_run_posted_requests(c);
}


/*
 * Every byte of an upload's body passes here once, in order, before
 * nginx's save filter writes it: counted, hashed, the head kept.
 */

static ngx_int_t
ngx_http_chat_upload_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                   n, k;
    ngx_int_t                rc;
    ngx_buf_t               *b;
    ngx_chain_t             *cl;
    ngx_http_chat_ctx_t     *ctx;
    ngx_http_chat_upload_t  *up;

    /* a JSON body is api.c's filter's */

    if (r->request_body == NULL
        || r->request_body->post_handler != ngx_http_chat_upload_body)
    {
        return ngx_http_chat_upload_next(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_chat_module);
    up = ctx ? ctx->upload : NULL;

    if (up == NULL || up->sha == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /*
             * bytes this filter cannot see would be stored unhashed and
             * uncounted: never so in front of nginx's save filter, but
             * refused rather than skipped should a filter ever put one here
             */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "chat upload: a body buffer in a file");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_buf_special(b)) {
            continue;
        }

        n = b->last - b->pos;

        if (n == 0) {
            continue;
        }

        if (up->size + (off_t) n > up->max) {
            up->over = 1;
            return ngx_http_chat_upload_filter_failed(r,
                                        NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
        }

        up->size += n;

        if (EVP_DigestUpdate(up->sha, b->pos, n) != 1) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (up->head_len < NGX_HTTP_CHAT_SNIFF_HEAD) {
            k = ngx_min(n, NGX_HTTP_CHAT_SNIFF_HEAD - up->head_len);
            ngx_memcpy(up->head + up->head_len, b->pos, k);
            up->head_len += k;
        }
    }

    rc = ngx_http_chat_upload_next(r, in);

    if (rc == NGX_HTTP_INTERNAL_SERVER_ERROR) {
        /* the save filter failed: the temporary file's write or open
         * (ngx_write_chain_to_temp_file logged it; errno is still its) */
        up->err = ngx_errno;
        rc = ngx_http_chat_upload_filter_failed(r, rc);
    }

    return rc;
}


/*
 * Over HTTP/2 a failure of the body filter goes from nginx's DATA handler
 * straight to ngx_http_finalize_request, which would answer with nginx's
 * HTML page: the JSON answer goes now, and the stream is closed (R16G-1).
 * HTTP/1.1's goes through ngx_http_chat_upload_failed from our handlers.
 */

static ngx_int_t
ngx_http_chat_upload_filter_failed(ngx_http_request_t *r, ngx_int_t rc)
{
#if (NGX_HTTP_V2)
    if (r->stream) {
        (void) ngx_http_chat_upload_failed(r, rc);
        return NGX_HTTP_CLOSE;
    }
#endif

    return rc;
}


static void
ngx_http_chat_upload_read(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    /*
     * ngx_http_read_unbuffered_request_body clears r->reading_body after
     * the post handler has run, and upload_body may have answered and
     * finalized the request by then (an empty file, the quota, the
     * store): a reference of ours keeps the request until we are done
     */

    r->main->count++;

    rc = ngx_http_read_unbuffered_request_body(r);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_http_finalize_request(r, ngx_http_chat_upload_failed(r, rc));
    }

    ngx_http_finalize_request(r, NGX_DONE);
}


/*
 * The body could not be read in whole: too large, malformed chunks, or
 * the temporary file failed (a full disk is 507); the client's own
 * failures (gone, timed out) are nginx's to end.  The rest of the body stays unread.
 */

static ngx_int_t
ngx_http_chat_upload_failed(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_chat_ctx_t     *ctx;
    ngx_http_chat_upload_t  *up;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chat_module);
    up = ctx->upload;

    /* answered now: a lingering close must not meet the deadline */
    if (up->deadline.timer_set) {
        ngx_del_timer(&up->deadline);
    }

    /* NGX_HTTP_CLOSE: answered already (HTTP/2, the filter) */

    if (r->connection->error || rc == NGX_HTTP_REQUEST_TIME_OUT
        || rc == NGX_HTTP_CLOSE)
    {
        return rc;
    }

    r->keepalive = 0;
    r->lingering_close = 1;

    if (rc == NGX_HTTP_BAD_REQUEST) {
        /* a malformed chunked body: not nginx's HTML page (R16G-5) */
        return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_request",
                                             "malformed chunked body");
    }

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        return ngx_http_chat_http_send_error(r,
                                        NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                        "too_large", "the file is too large");
    }

    return ngx_http_chat_upload_error(r, (up->err == NGX_ENOSPC
                                          || up->err == EDQUOT)
                                         ? 507 : NGX_HTTP_SERVICE_UNAVAILABLE);
}


/* the store's failures: no room (507), anything else (503) */

static ngx_int_t
ngx_http_chat_upload_error(ngx_http_request_t *r, ngx_int_t status)
{
    if (status == 507) {
        return ngx_http_chat_http_send_error(r, 507, "insufficient_storage",
                                        "no space left to store the file");
    }

    return ngx_http_chat_http_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "unavailable",
                                    "the file could not be stored");
}


/* the whole body is in the temporary file */

static void
ngx_http_chat_upload_body(ngx_http_request_t *r)
{
    u_char                      digest[EVP_MAX_MD_SIZE];
    ngx_str_t                  *temp;
    ngx_msec_t                  wait;
    unsigned int                len;
#if (NGX_THREADS)
    ngx_thread_task_t          *task;
#endif
    ngx_http_chat_ctx_t        *ctx;
    ngx_http_chat_upload_t     *up;
    ngx_http_chat_upload_fs_t   fs;
    ngx_http_chat_loc_conf_t   *ccf;
    ngx_http_chat_main_conf_t  *cmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chat_module);
    up = ctx->upload;
    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    /* the body is in: the rest is the store's and PostgreSQL's time */
    if (up->deadline.timer_set) {
        ngx_del_timer(&up->deadline);
    }

    if (up->size == 0) {
        if (r->request_body && r->request_body->temp_file) {
            ngx_http_chat_upload_unlink(r,
                                &r->request_body->temp_file->file.name);
        }

        ngx_http_finalize_request(r,
            ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "bad_request", "the file is empty"));
        return;
    }

    if (r->request_body == NULL || r->request_body->temp_file == NULL
        || up->sha == NULL)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    temp = &r->request_body->temp_file->file.name;

    if (EVP_DigestFinal_ex(up->sha, digest, &len) != 1 || len != 32) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    *ngx_hex_dump(up->hex, digest, 32) = '\0';

    /* the day's bytes, now that the size is known */

    if (ccf->rates[NGX_HTTP_CHAT_RATE_UPLOAD_BYTES].rate
        && (ngx_uint_t) up->size * 1000
           > ccf->rates[NGX_HTTP_CHAT_RATE_UPLOAD_BYTES].burst)
    {
        ngx_http_chat_upload_unlink(r, temp);
        ngx_http_finalize_request(r,
            ngx_http_chat_http_send_error(r,
                                     NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                     "too_large", "the file is larger than "
                                     "the daily upload quota"));
        return;
    }

    wait = ngx_http_chat_rate_spend(ccf, up->user,
                                    NGX_HTTP_CHAT_RATE_UPLOAD_BYTES,
                                    (ngx_uint_t) up->size, 0);
    if (wait) {
        ngx_http_chat_upload_unlink(r, temp);
        ngx_http_chat_stat(cmcf, rate_limited, 1);
        ngx_http_finalize_request(r,
            ngx_http_chat_upload_refuse(r, 429, "rate_limited",
                                        "the daily upload quota is used up",
                                        wait));
        return;
    }

    ngx_http_chat_sniff_detect(up->head, up->head_len,
                               up->size <= NGX_HTTP_CHAT_SNIFF_HEAD,
                               &up->sniff);

#if (NGX_THREADS)

    if (cmcf->upload_threads) {
        task = ngx_thread_task_alloc(r->pool,
                                     sizeof(ngx_http_chat_upload_fs_t));
        if (task == NULL
            || ngx_http_chat_upload_fs_make(r, task->ctx, up, temp) == NULL)
        {
            ngx_http_chat_upload_unlink(r, temp);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        task->handler = ngx_http_chat_upload_thread;
        task->event.data = r;
        task->event.log = r->connection->log;
        task->event.handler = ngx_http_chat_upload_thread_done;

        if (ngx_thread_task_post(cmcf->upload_threads, task) != NGX_OK) {
            /* the pool's queue is full */
            ngx_http_chat_upload_unlink(r, temp);
            ngx_http_finalize_request(r, ngx_http_chat_upload_error(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE));
            return;
        }

        /*
         * The body's reference to the request passes to the task's end;
         * blocked keeps ngx_http_terminate_request (an error elsewhere)
         * from freeing the request under the thread, as nginx's own aio
         * threads do.  A client that leaves meanwhile is seen after.
         */
        r->main->blocked++;

        return;
    }

#endif

    if (ngx_http_chat_upload_fs_make(r, &fs, up, temp) == NULL) {
        ngx_http_chat_upload_unlink(r, temp);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_chat_upload_fs(&fs);
    ngx_http_chat_upload_stored(r, &fs);
}


/*
 * The store's work, on what ngx_http_chat_upload_fs does: the paths
 * allocated in the request's pool now, the calls made later, inline or
 * in a thread.
 */

static ngx_http_chat_upload_fs_t *
ngx_http_chat_upload_fs_make(ngx_http_request_t *r,
    ngx_http_chat_upload_fs_t *fs, ngx_http_chat_upload_t *up,
    ngx_str_t *temp)
{
    ngx_http_chat_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    fs->path = ngx_pnalloc(r->pool, ccf->upload_path.len
                                    + sizeof("/ab/cd/") - 1 + 64 + 1);
    if (fs->path == NULL) {
        return NULL;
    }

    ngx_sprintf(fs->path, "%V/%*s/%*s/%s%Z", &ccf->upload_path,
                (size_t) 2, up->hex, (size_t) 2, up->hex + 2, up->hex);

    fs->root = ccf->upload_path.len;
    fs->temp = temp->data;
    fs->fd = r->request_body->temp_file->file.fd;

    /*
     * the mtime is the store's time, not the body's last write: a client
     * may hold the end of a body it wrote long ago (the last chunk's
     * extension, trailers, a byte at a time), and the sweep keeps only a
     * file stored within a minute of its transaction (R16H-1)
     */
    fs->now = ngx_time();

    fs->err = 0;
    fs->what = NULL;
    fs->level = NGX_LOG_ERR;

    return fs;
}


/*
 * The temporary file under its hash: ab/cd/<sha256>, the two directories
 * made as needed, then a rename() over whatever is there (R16-3).  The
 * bytes were hashed on their way into the temporary file: a file already
 * there is not trusted, whatever its size (other bytes, a file torn by a
 * crash, a symlink: rename() replaces the link, not what it points to).
 * The same bytes stored again are replaced by the same bytes.  A reader
 * in flight of the replaced file keeps it on a local filesystem (on NFS
 * it may get ESTALE: docs/operations.md).  The new file's mtime is set
 * to the rename's time: the sweep keeps a file that fresh (files.c).
 * A failure leaves fs->err, fs->what and fs->path cut where it failed,
 * the temporary file deleted.  Plain system calls on fs only: this may
 * run in a thread.
 */

static void
ngx_http_chat_upload_fs(ngx_http_chat_upload_fs_t *fs)
{
    size_t  n;

    /* root/ab, then root/ab/cd */

    for (n = fs->root + 3; n <= fs->root + 6; n += 3) {
        fs->path[n] = '\0';

        if (ngx_create_dir(fs->path, 0700) == NGX_FILE_ERROR
            && ngx_errno != NGX_EEXIST)
        {
            fs->err = ngx_errno;
            fs->what = "mkdir()";
            goto failed;
        }

        fs->path[n] = '/';
    }

    if (ngx_set_file_time(fs->temp, fs->fd, fs->now) != NGX_OK) {
        fs->err = ngx_errno;
        fs->what = ngx_set_file_time_n;
        goto failed;
    }

    if (ngx_rename_file(fs->temp, fs->path) == NGX_FILE_ERROR) {
        fs->err = ngx_errno;
        fs->what = "rename()";
        goto failed;
    }

    return;

failed:

    if (fs->err == 0) {
        fs->err = NGX_EINVAL;
    }

    /* the name goes now, before the answer (ngx_http_chat_upload_unlink) */
    if (ngx_delete_file(fs->temp) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        fs->err = ngx_errno;
        fs->what = ngx_delete_file_n;
        fs->level = NGX_LOG_CRIT;
        fs->path = fs->temp;
    }
}


#if (NGX_THREADS)

static void
ngx_http_chat_upload_thread(void *data, ngx_log_t *log)
{
    ngx_http_chat_upload_fs_t  *fs = data;

    ngx_http_chat_upload_fs(fs);
}


/* the task is done: back in the worker's event loop */

static void
ngx_http_chat_upload_thread_done(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_thread_task_t   *task;

    r = ev->data;
    c = r->connection;
    task = (ngx_thread_task_t *) ((u_char *) ev
                                  - offsetof(ngx_thread_task_t, event));

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;

    ngx_http_chat_upload_stored(r, task->ctx);
    ngx_http_run_posted_requests(c);
}

#endif


/*
 * The store's work is done: the row through PostgreSQL, or the error.
 * The temporary name is renamed into the store, or deleted already:
 * either way nginx's cleanup may not delete it again.
 */

static void
ngx_http_chat_upload_stored(ngx_http_request_t *r,
    ngx_http_chat_upload_fs_t *fs)
{
    json_t                  *req;
    ngx_http_chat_ctx_t     *ctx;
    ngx_http_chat_upload_t  *up;

    ngx_http_chat_upload_unlink(r, NULL);

    if (fs->err) {
        ngx_log_error(fs->level, r->connection->log, fs->err,
                      "chat upload: %s \"%s\" failed", fs->what, fs->path);

        ngx_http_finalize_request(r,
            ngx_http_chat_upload_error(r, (fs->err == NGX_ENOSPC
                                           || fs->err == EDQUOT)
                                          ? 507
                                          : NGX_HTTP_SERVICE_UNAVAILABLE));
        return;
    }

    if (r->connection->error) {
        /* the client left while the file was stored: no row; the
         * sweep's crawl removes the file if no other row names it */
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_chat_module);
    up = ctx->upload;

    /* sizes past PostgreSQL's integer are no image a browser shows */

    if (up->sniff.width > NGX_MAX_INT32_VALUE
        || up->sniff.height > NGX_MAX_INT32_VALUE)
    {
        up->sniff.width = 0;
        up->sniff.height = 0;
    }

    req = json_pack("{s:s, s:I, s:s, s:o, s:o, s:o}",
                    "sha256", (char *) up->hex,
                    "size", (json_int_t) up->size,
                    "type", up->sniff.type,
                    "name", up->name.len
                            ? json_stringn((char *) up->name.data,
                                           up->name.len)
                            : json_null(),
                    "width", up->sniff.width
                             ? json_integer(up->sniff.width) : json_null(),
                    "height", up->sniff.height
                              ? json_integer(up->sniff.height)
                              : json_null());
    if (req == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* kept until ngx_http_chat_upload_done finalizes it */
    r->main->count++;

    if (ngx_http_chat_store_http(r, up->user, NGX_HTTP_CHAT_STMT_UPLOAD_CREATE,
                                 req, ngx_http_chat_upload_done)
        != NGX_OK)
    {
        r->main->count--;
        json_decref(req);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    json_decref(req);

    ngx_http_finalize_request(r, NGX_DONE);
}


/*
 * The temporary file is done with: its name deleted (temp), or gone
 * already (NULL: renamed into the store).
 */

static void
ngx_http_chat_upload_unlink(ngx_http_request_t *r, ngx_str_t *temp)
{
    ngx_temp_file_t          *tf;
    ngx_pool_cleanup_t       *c;
    ngx_pool_cleanup_file_t  *cf;

    if (temp != NULL
        && ngx_delete_file(temp->data) == NGX_FILE_ERROR
        && ngx_errno != NGX_ENOENT)
    {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed", temp->data);
    }

    /*
     * nginx's own cleanup would delete the name again when the request
     * ends, a round trip to PostgreSQL later: by then the name may be
     * another upload's (another node's on a shared store, or a new
     * worker's after a reload: each numbers its temporary files from 1
     * again).  It only closes the file now.
     */

    tf = r->request_body ? r->request_body->temp_file : NULL;

    if (tf == NULL || tf->pool == NULL) {
        return;
    }

    for (c = tf->pool->cleanup; c; c = c->next) {
        if (c->handler == ngx_pool_delete_file) {
            cf = c->data;

            if (cf->fd == tf->file.fd) {
                c->handler = ngx_pool_cleanup_file;
            }
        }
    }
}


/*
 * The row's answer.  A file whose row failed stays in the store: another
 * upload of the same bytes may have stored it there meanwhile.  The
 * sweep's crawl (files.c) finds it once no row names it.
 */

static void
ngx_http_chat_upload_done(ngx_http_chat_store_done_t *done, json_t *result)
{
    json_t              *ok, *error;
    ngx_int_t            rc;
    const char          *code;
    ngx_uint_t           status;
    ngx_http_request_t  *r;

    r = done->data;

    if (result == NULL) {
        ngx_http_finalize_request(r,
            ngx_http_chat_http_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "unavailable",
                                     "storage is unavailable, retry later"));
        return;
    }

    error = json_object_get(result, "error");

    if (error != NULL) {
        code = json_string_value(json_object_get(error, "code"));
        status = code && ngx_strcmp(code, "bad_request") == 0
                 ? NGX_HTTP_BAD_REQUEST : NGX_HTTP_SERVICE_UNAVAILABLE;

        rc = ngx_http_chat_http_send_json(r, status,
                                          json_pack("{s:O}", "error",
                                                    error));
        ngx_http_finalize_request(r, rc);
        return;
    }

    ok = json_object_get(result, "ok");

    rc = ngx_http_chat_http_send_json(r, NGX_HTTP_CREATED,
                                      ok ? json_incref(ok) : json_object());

    ngx_http_finalize_request(r, rc);
}


/*
 * The sweep of tmp/ (R16-8): nginx removes an upload's temporary file in
 * the request's cleanup, which a worker killed (a crash, the OOM killer)
 * never runs.  The first worker (ngx_worker 0: after a start, a reload,
 * or the respawn of a dead one) removes from each store's tmp/ the files
 * older than the longest chat_upload_timeout of the node's live workers
 * and a margin, then again
 * every hour.  An upload in flight began less than chat_upload_timeout
 * ago and its file is younger still, so none is touched, another node's
 * on a shared store neither (with the same chat_upload_timeout).  A few
 * hundred entries a tick, as nginx's cache manager does: readdir(),
 * stat() and unlink() of a local directory, never a long stall.
 */

void
ngx_http_chat_upload_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    ngx_http_chat_upload_tmp_t  *tmp;

    if (cmcf->upload_paths == NULL || ngx_worker != 0) {
        return;
    }

    tmp = &ngx_http_chat_upload_tmp;

    tmp->paths = cmcf->upload_paths;

    tmp->timeout = (time_t) ((cmcf->upload_timeout ? cmcf->upload_timeout
                                                   : 3600000) + 999) / 1000;

    tmp->timer.handler = ngx_http_chat_upload_tmp_tick;
    tmp->timer.log = cycle->log;
    tmp->timer.data = tmp;
    tmp->timer.cancelable = 1;

    /* at once: what the worker before left */
    ngx_add_timer(&tmp->timer, 1);
}


void
ngx_http_chat_upload_exit_process(void)
{
    ngx_http_chat_upload_tmp_t  *tmp;

    tmp = &ngx_http_chat_upload_tmp;

    if (tmp->timer.timer_set) {
        ngx_del_timer(&tmp->timer);
    }

    if (tmp->open) {
        (void) ngx_close_dir(&tmp->dir);
        tmp->open = 0;
    }
}


/*
 * What is older than this goes: the longest chat_upload_timeout of the
 * workers alive on this node (old ones finishing their uploads after a
 * reload that shortened it included, R16G-4), and a margin: the
 * deadline's timer may fire late, mtime has seconds, another node's clock
 * may differ a little (up to a minute).
 */

static time_t
ngx_http_chat_upload_tmp_age(ngx_http_chat_upload_tmp_t *tmp)
{
    time_t                 timeout;
    ngx_uint_t             i;
    ngx_http_chat_slot_t  *slot;

    timeout = tmp->timeout;

    if (ngx_http_chat_zone_sh != NULL) {
        slot = ngx_http_chat_zone_sh->sh->slots;

        /* words read without the lock: a slot taken or left meanwhile */
        for (i = 0; i < NGX_HTTP_CHAT_SLOTS; i++) {
            if (slot[i].pid != 0 && slot[i].upload_timeout > timeout) {
                timeout = slot[i].upload_timeout;
            }
        }
    }

    return timeout + ngx_min(timeout, 60) + 1;
}


static void
ngx_http_chat_upload_tmp_tick(ngx_event_t *ev)
{
    u_char                      *name;
    size_t                       i, len;
    time_t                       old;
    ngx_err_t                    err;
    ngx_str_t                   *path;
    ngx_uint_t                   n;
    ngx_http_chat_upload_tmp_t  *tmp;
    u_char                       file[NGX_MAX_PATH];

    tmp = ev->data;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    old = ngx_time() - ngx_http_chat_upload_tmp_age(tmp);

    for (n = 0; n < NGX_HTTP_CHAT_UPLOAD_TMP_BATCH; n++) {

        if (!tmp->open) {
            if (tmp->path == tmp->paths->nelts) {
                /* every store done: again in an hour */
                tmp->path = 0;
                ngx_add_timer(ev, NGX_HTTP_CHAT_UPLOAD_TMP_PERIOD);
                return;
            }

            if (ngx_http_chat_upload_tmp_open(tmp) != NGX_OK) {
                tmp->path++;
                continue;
            }
        }

        path = tmp->paths->elts;
        path = &path[tmp->path];

        ngx_set_errno(0);

        if (ngx_read_dir(&tmp->dir) == NGX_ERROR) {
            err = ngx_errno;

            if (err != NGX_ENOMOREFILES) {
                ngx_log_error(NGX_LOG_ERR, ev->log, err,
                              ngx_read_dir_n " \"%V/tmp\" failed", path);
            }

            (void) ngx_close_dir(&tmp->dir);
            tmp->open = 0;
            tmp->path++;
            continue;
        }

        name = ngx_de_name(&tmp->dir);
        len = ngx_de_namelen(&tmp->dir);

        /*
         * nginx's temporary files (digits only), and the sweep's tombs
         * (<sha256>.swept, files.c) a worker that died left behind: the
         * sweep had taken them out of the store to be removed
         */

        for (i = 0; i < len; i++) {
            if (name[i] < '0' || name[i] > '9') {
                break;
            }
        }

        if (i < len && len == 64 + sizeof(".swept") - 1
            && ngx_strncmp(name + 64, ".swept", sizeof(".swept") - 1) == 0)
        {
            i = len;
        }

        if (len == 0 || i < len
            || path->len + sizeof("/tmp/") + len > sizeof(file))
        {
            continue;
        }

        ngx_sprintf(file, "%V/tmp/%s%Z", path, name);

        if (ngx_de_info(file, &tmp->dir) == NGX_FILE_ERROR) {
            continue;           /* gone meanwhile: its request ended */
        }

        if (!ngx_de_is_file(&tmp->dir) || ngx_de_mtime(&tmp->dir) >= old) {
            continue;
        }

        if (ngx_delete_file(file) == NGX_FILE_ERROR) {
            err = ngx_errno;

            if (err != NGX_ENOENT) {
                ngx_log_error(NGX_LOG_ERR, ev->log, err,
                              ngx_delete_file_n " \"%s\" failed", file);
            }

            continue;
        }

        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "chat upload: removed \"%s\", a temporary file "
                      "older than chat_upload_timeout (its worker died)",
                      file);
    }

    /* the rest of the directory soon, the worker between */
    ngx_add_timer(ev, NGX_HTTP_CHAT_UPLOAD_TMP_NEXT);
}


static ngx_int_t
ngx_http_chat_upload_tmp_open(ngx_http_chat_upload_tmp_t *tmp)
{
    ngx_str_t  *path, dir;
    u_char      name[NGX_MAX_PATH];

    path = tmp->paths->elts;
    path = &path[tmp->path];

    if (path->len + sizeof("/tmp") > sizeof(name)) {
        return NGX_ERROR;
    }

    dir.data = name;
    dir.len = ngx_sprintf(name, "%V/tmp%Z", path) - name - 1;

    if (ngx_open_dir(&dir, &tmp->dir) == NGX_ERROR) {
        if (ngx_errno != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_ERR, tmp->timer.log, ngx_errno,
                          ngx_open_dir_n " \"%V\" failed", &dir);
        }

        return NGX_ERROR;
    }

    tmp->open = 1;

    return NGX_OK;
}
