
/*
 * GET files/{id}: an upload, for its owner and the members of the
 * conversations where a message attaches it (chat.api_file_get says who).
 *
 * The module never reads the file: once storage has said yes, the
 * request is redirected internally to the chat_files location, whose
 * alias is chat_upload_path, and nginx's static module serves
 * ab/cd/<sha256> (sendfile, Range, If-None-Match, If-Range).  What the
 * response must say is put in r->headers_out before the redirect, which
 * keeps it (only the modules' contexts are cleared): the type detected
 * at upload (the static module keeps a type already set), the ETag of
 * the hash (chat_files turns the location's own ETag off), and the
 * headers that keep a browser from running what it is given.
 *
 * The sweep: the first worker of each node asks chat.api_upload_sweep
 * now and then for the stored files no row has any more, and unlinks a
 * bounded number of them per tick, as nginx's own cache manager removes
 * files: metadata operations of a local filesystem, or with
 * chat_upload_threads one task of nginx's thread pool a tick.  It tells
 * the next call which it unlinked (or found absent): only those leave
 * the queue, the others are handed out again later.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_pg.h>


/* rows and files one sweep takes at most */
#define NGX_HTTP_CHAT_FILES_SWEEP_LIMIT  100

/* a sweep that had more to do goes on this soon */
#define NGX_HTTP_CHAT_FILES_SWEEP_MORE   100

/* a file stored again within this many seconds is kept (see below) */
#define NGX_HTTP_CHAT_FILES_FRESH        60

/* the lines a tick's filesystem work keeps for the event loop to log */
#define NGX_HTTP_CHAT_FILES_NOTES        (2 * NGX_HTTP_CHAT_FILES_SWEEP_LIMIT)
#define NGX_HTTP_CHAT_FILES_NOTES_SIZE   65536

/* a quoted hash and its comma */
#define NGX_HTTP_CHAT_FILES_ITEM         (64 + 3)


typedef struct {
    ngx_http_chat_pg_query_t      q;
    ngx_event_t                   timer;
    ngx_array_t                  *paths;     /* ngx_str_t, the stores */
    time_t                        grace;
    ngx_msec_t                    period;
    int64_t                       token;     /* of the files done */
    size_t                        done_len;
    /* the files of the last answer unlinked or absent: "sha","sha" */
    u_char                        done[NGX_HTTP_CHAT_FILES_SWEEP_LIMIT
                                       * NGX_HTTP_CHAT_FILES_ITEM];
    /* the crawl: the next directory ab/cd (store, ab * 256 + cd) */
    ngx_uint_t                    crawl_store;
    ngx_uint_t                    crawl;
    ngx_uint_t                    crawl_skip; /* its entries read already */
    size_t                        seen_len;
    u_char                        seen[NGX_HTTP_CHAT_FILES_SWEEP_LIMIT
                                       * NGX_HTTP_CHAT_FILES_ITEM];
    u_char                        arg[2 * NGX_HTTP_CHAT_FILES_SWEEP_LIMIT
                                      * NGX_HTTP_CHAT_FILES_ITEM
                                      + 4 * NGX_INT64_LEN + 64];
    /*
     * the filesystem's work of a tick, on this plain data only (it may
     * run in a thread of chat_upload_threads): the answer's files to
     * unlink (batch, their results in rc), then the crawl if crawling
     */
    ngx_uint_t                    nbatch;
    u_char                        batch[NGX_HTTP_CHAT_FILES_SWEEP_LIMIT]
                                       [64 + 1];
    ngx_int_t                     rc[NGX_HTTP_CHAT_FILES_SWEEP_LIMIT];
    time_t                        at;        /* the answer's transaction */
    time_t                        now;       /* the crawl's */
#if (NGX_THREADS)
    ngx_thread_pool_t            *threads;
    ngx_thread_task_t            *task;
#endif
    /* its log lines (a thread logs nothing itself): text in notes_text */
    struct {
        ngx_uint_t                level;
        ngx_err_t                 err;
        size_t                    start;
        size_t                    len;
    }                             notes[NGX_HTTP_CHAT_FILES_NOTES];
    ngx_uint_t                    nnotes;
    ngx_uint_t                    notes_lost;
    size_t                        notes_len;
    u_char                        notes_text[NGX_HTTP_CHAT_FILES_NOTES_SIZE];
    unsigned                      crawling:1;
    unsigned                      more:1;    /* the answer's "more" */
    unsigned                      busy:1;
    unsigned                      active:1;
} ngx_http_chat_files_sweep_t;


static void ngx_http_chat_files_done(ngx_http_chat_store_done_t *done,
    json_t *result);
static ngx_int_t ngx_http_chat_files_guard(ngx_http_request_t *r);
static ngx_int_t ngx_http_chat_files_header_filter(ngx_http_request_t *r);
static ngx_uint_t ngx_http_chat_files_has(ngx_http_request_t *r,
    const char *key);
static ngx_int_t ngx_http_chat_files_serve(ngx_http_request_t *r,
    json_t *file);
static ngx_int_t ngx_http_chat_files_headers(ngx_http_request_t *r,
    const char *type, const char *name, const char *sha256);
static u_char *ngx_http_chat_files_disposition(ngx_pool_t *pool,
    const char *type, const char *name);
static ngx_uint_t ngx_http_chat_files_hex(const char *s);
static ngx_uint_t ngx_http_chat_files_hex2(u_char *s);
static void ngx_http_chat_files_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_chat_files_post(ngx_http_chat_files_sweep_t *sw);
static void ngx_http_chat_files_work(ngx_http_chat_files_sweep_t *sw);
#if (NGX_THREADS)
static void ngx_http_chat_files_thread(void *data, ngx_log_t *log);
static void ngx_http_chat_files_worked(ngx_event_t *ev);
#endif
static void ngx_http_chat_files_note(ngx_http_chat_files_sweep_t *sw,
    ngx_uint_t level, ngx_err_t err, const char *fmt, ...);
static void ngx_http_chat_files_log(ngx_http_chat_files_sweep_t *sw);
static void ngx_http_chat_files_call(ngx_http_chat_files_sweep_t *sw);
static void ngx_http_chat_files_unlinked(ngx_http_chat_files_sweep_t *sw);
static void ngx_http_chat_files_swept(ngx_http_chat_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static ngx_int_t ngx_http_chat_files_unlink(ngx_http_chat_files_sweep_t *sw,
    const char *sha256, time_t at);
static ngx_int_t ngx_http_chat_files_bury(ngx_http_chat_files_sweep_t *sw,
    ngx_str_t *store,
    const char *sha256, time_t at, time_t fresh);
static void ngx_http_chat_files_crawl(ngx_http_chat_files_sweep_t *sw);
static ngx_int_t ngx_http_chat_files_crawl_next(
    ngx_http_chat_files_sweep_t *sw, u_char *dir, ngx_uint_t from,
    ngx_uint_t *found);
static void ngx_http_chat_files_crawl_read(ngx_http_chat_files_sweep_t *sw,
    u_char *dir, size_t len);


static ngx_http_chat_files_sweep_t  ngx_http_chat_files_sweep;

static ngx_http_output_header_filter_pt  ngx_http_chat_files_next_header;


/*
 * chat_files is one URI for the http block, but a server may lack the
 * location: a download redirected there would be answered by whatever
 * else matches the URI (a "/" that proxies, with the client's token, or
 * a root).  A redirected request for that URI that is not in a chat_files
 * location is a 404, before the rewrite module's "return" (handlers of a
 * phase run last registered first, and this module registers after it).
 */

ngx_int_t
ngx_http_chat_files_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *core;

    core = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&core->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_chat_files_guard;

    ngx_http_chat_files_next_header = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_chat_files_header_filter;

    return NGX_OK;
}


/*
 * Every answer of the chat_files location, before nginx's own filters
 * (this module's is registered last, so it runs first):
 *
 * - no Last-Modified: the file's time is that of the last upload of the
 *   same bytes by anybody (each renames its own file there), and a
 *   client watching its own upload's Last-Modified (or probing with
 *   If-Modified-Since) would learn when somebody else uploaded those
 *   bytes; the ETag validates;
 * - nosniff and the sandbox also on what nginx answers itself after
 *   cleaning the headers set before the redirect (412 of If-Match,
 *   416, an error page).
 */

static ngx_int_t
ngx_http_chat_files_header_filter(ngx_http_request_t *r)
{
    ngx_http_chat_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (ccf == NULL || ccf->files != 1) {
        return ngx_http_chat_files_next_header(r);
    }

    ngx_http_clear_last_modified(r);

    if ((!ngx_http_chat_files_has(r, "X-Content-Type-Options")
         && ngx_http_chat_http_add_header(r, "X-Content-Type-Options",
                                          "nosniff") != NGX_OK)
        || (!ngx_http_chat_files_has(r, "Content-Security-Policy")
            && ngx_http_chat_http_add_header(r, "Content-Security-Policy",
                                             "sandbox") != NGX_OK))
    {
        return NGX_ERROR;
    }

    return ngx_http_chat_files_next_header(r);
}


static ngx_uint_t
ngx_http_chat_files_has(ngx_http_request_t *r, const char *key)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(key);
    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0 && h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) key, len) == 0)
        {
            return 1;
        }
    }
}


static ngx_int_t
ngx_http_chat_files_guard(ngx_http_request_t *r)
{
    ngx_http_chat_loc_conf_t   *ccf;
    ngx_http_chat_main_conf_t  *cmcf;

    if (!r->internal) {
        return NGX_DECLINED;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    if (cmcf->files_uri.len == 0
        || r->uri.len < cmcf->files_uri.len
        || ngx_strncmp(r->uri.data, cmcf->files_uri.data,
                       cmcf->files_uri.len) != 0)
    {
        return NGX_DECLINED;
    }

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (ccf->files == 1) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "chat files: \"%V\" is not in a chat_files location: "
                  "this server needs \"location %V { chat_files; ... }\"",
                  &r->uri, &cmcf->files_uri);

    return NGX_HTTP_NOT_FOUND;
}


ngx_int_t
ngx_http_chat_files_handler(ngx_http_request_t *r, ngx_str_t *user,
    int64_t id)
{
    json_t                     *req;
    ngx_http_chat_loc_conf_t   *ccf;
    ngx_http_chat_main_conf_t  *cmcf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    if (ccf->upload_path.len == 0 || cmcf->files_uri.len == 0) {
        return ngx_http_chat_http_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "unavailable",
                                             "downloads are not configured");
    }

    if (cmcf->pg == NULL) {
        return ngx_http_chat_http_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "unavailable",
                                             "storage is not configured");
    }

    req = json_pack("{s:I}", "upload_id", (json_int_t) id);
    if (req == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* kept until ngx_http_chat_files_done finalizes it */
    r->main->count++;

    if (ngx_http_chat_store_http(r, user, NGX_HTTP_CHAT_STMT_FILE_GET, req,
                                 ngx_http_chat_files_done)
        != NGX_OK)
    {
        r->main->count--;
        json_decref(req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_decref(req);

    return NGX_DONE;
}


static void
ngx_http_chat_files_done(ngx_http_chat_store_done_t *done, json_t *result)
{
    json_t              *error, *file;
    ngx_int_t            rc;
    const char          *code;
    ngx_connection_t    *c;
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

        if (code && ngx_strcmp(code, "not_found") == 0) {
            rc = ngx_http_chat_http_send_error(r, NGX_HTTP_NOT_FOUND,
                                               "not_found", "file not found");

        } else if (code && ngx_strcmp(code, "bad_request") == 0) {
            rc = ngx_http_chat_http_send_json(r, NGX_HTTP_BAD_REQUEST,
                                              json_pack("{s:O}", "error",
                                                        error));

        } else {
            rc = ngx_http_chat_http_send_error(r,
                                     NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "unavailable",
                                     "storage is unavailable, retry later");
        }

        ngx_http_finalize_request(r, rc);
        return;
    }

    file = json_object_get(json_object_get(result, "ok"), "file");

    rc = ngx_http_chat_files_serve(r, file);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    c = r->connection;

    /* the redirected request holds its own reference */
    ngx_http_finalize_request(r, NGX_DONE);

    /*
     * called from storage's event, not the request's: what the served
     * location posted (subrequests of a filter) runs now, as after an
     * upstream's redirect
     */
    ngx_http_run_posted_requests(c);
}


/*
 * The file on disk, then the redirect.  A row whose file is gone (a
 * store restored without it, a file removed by hand) is 404 with a line
 * in the log, before anything is redirected.
 */

static ngx_int_t
ngx_http_chat_files_serve(ngx_http_request_t *r, json_t *file)
{
    u_char                     *p;
    ngx_str_t                   uri;
    const char                 *sha, *type, *name;
    ngx_file_info_t             fi;
    ngx_http_chat_loc_conf_t   *ccf;
    ngx_http_chat_main_conf_t  *cmcf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    sha = json_string_value(json_object_get(file, "sha256"));
    type = json_string_value(json_object_get(file, "type"));
    name = json_string_value(json_object_get(file, "name"));

    if (sha == NULL || !ngx_http_chat_files_hex(sha) || type == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "chat files: chat.api_file_get answered no file");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, ccf->upload_path.len + sizeof("/ab/cd/") - 1
                             + 64 + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_sprintf(p, "%V/%*s/%*s/%s", &ccf->upload_path, (size_t) 2, sha,
                 (size_t) 2, sha + 2, sha) = '\0';

    if (ngx_file_info(p, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      "chat files: \"%s\" of upload %L is missing", p,
                      (int64_t) json_integer_value(json_object_get(file,
                                                                   "id")));
        return ngx_http_chat_http_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "not_found", "file not found");
    }

    if (ngx_http_chat_files_headers(r, type, name, sha) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the chat_files location's prefix, then ab/cd/<sha256> */

    uri.len = cmcf->files_uri.len + sizeof("/ab/cd/") - 1 + 64;
    uri.data = ngx_pnalloc(r->pool, uri.len);
    if (uri.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(uri.data, cmcf->files_uri.data, cmcf->files_uri.len);

    if (p[-1] != '/') {
        *p++ = '/';
    }

    p = ngx_sprintf(p, "%*s/%*s/%s", (size_t) 2, sha, (size_t) 2, sha + 2,
                    sha);
    uri.len = p - uri.data;

    return ngx_http_internal_redirect(r, &uri, NULL);
}


/*
 * What the static module does not say, or would say otherwise.  The type
 * is the sniffer's: a small set of safe types (an HTML or SVG body is
 * text/plain); a row that says anything else (written past the API, a
 * restored backup) is served as application/octet-stream, an attachment.
 */

static ngx_int_t
ngx_http_chat_files_headers(ngx_http_request_t *r, const char *type,
    const char *name, const char *sha256)
{
    u_char           *p, *disposition;
    size_t            len;
    ngx_table_elt_t  *etag;

    /* a static string of the sniffer's: it outlives storage's answer */
    type = ngx_http_chat_sniff_known(type);

    if (type == NULL) {
        type = "application/octet-stream";
    }

    len = ngx_strlen(type);

    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = len;
    r->headers_out.content_type_len = len;
    r->headers_out.content_type_lowcase = NULL;

    disposition = ngx_http_chat_files_disposition(r->pool, type, name);
    if (disposition == NULL) {
        return NGX_ERROR;
    }

    etag = ngx_list_push(&r->headers_out.headers);
    if (etag == NULL) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, 64 + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(p, "\"%*s\"", (size_t) 64, sha256);

    etag->hash = 1;
    ngx_str_set(&etag->key, "ETag");
    etag->value.data = p;
    etag->value.len = 64 + 2;
#if (nginx_version >= 1023000)
    etag->next = NULL;
#endif
    r->headers_out.etag = etag;

    if (ngx_http_chat_http_add_header(r, "Content-Disposition",
                                      (char *) disposition) != NGX_OK
        || ngx_http_chat_http_add_header(r, "X-Content-Type-Options",
                                         "nosniff") != NGX_OK
        || ngx_http_chat_http_add_header(r, "Content-Security-Policy",
                                         "sandbox") != NGX_OK
        || ngx_http_chat_http_add_header(r, "Cache-Control", "private")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * inline for an image or a PDF, attachment for anything else; the name
 * twice (RFC 6266): filename*=UTF-8''<percent-encoded> for those who
 * read it, and filename="<ASCII>" for the others, where a byte that is
 * not printable ASCII, a quote, a backslash or a percent sign is '_' (a
 * multi-byte character once).  No control character reaches the header
 * either way.
 */

static u_char *
ngx_http_chat_files_disposition(ngx_pool_t *pool, const char *type,
    const char *name)
{
    u_char       *buf, *p, c;
    size_t        len;
    const char   *kind;
    const u_char *s;

    static u_char  hex[] = "0123456789ABCDEF";

    kind = (ngx_strncmp(type, "image/", 6) == 0
            || ngx_strcmp(type, "application/pdf") == 0)
           ? "inline" : "attachment";

    if (name == NULL || *name == '\0') {
        return (u_char *) kind;
    }

    len = ngx_strlen(name);

    buf = ngx_pnalloc(pool, sizeof("attachment; filename=\"\"; "
                                   "filename*=UTF-8''") + 4 * len);
    if (buf == NULL) {
        return NULL;
    }

    p = ngx_sprintf(buf, "%s; filename=\"", kind);

    for (s = (const u_char *) name; *s; s++) {
        c = *s;

        if (c >= 0x80) {
            /* one '_' for a character: at its first byte */
            if ((c & 0xc0) != 0x80) {
                *p++ = '_';
            }

            continue;
        }

        *p++ = (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '%')
               ? '_' : c;
    }

    p = ngx_cpymem(p, "\"; filename*=UTF-8''",
                   sizeof("\"; filename*=UTF-8''") - 1);

    /* RFC 5987 attr-char, everything else percent-encoded */

    for (s = (const u_char *) name; *s; s++) {
        c = *s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || ngx_strchr("!#$&+-.^_`|~", c))
        {
            *p++ = c;
            continue;
        }

        *p++ = '%';
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0xf];
    }

    *p = '\0';

    return buf;
}


static ngx_uint_t
ngx_http_chat_files_hex(const char *s)
{
    ngx_uint_t  i;

    for (i = 0; i < 64; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
        {
            return 0;
        }
    }

    return s[64] == '\0';
}


static ngx_uint_t
ngx_http_chat_files_hex2(u_char *s)
{
    ngx_uint_t  i;

    for (i = 0; i < 2; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
        {
            return 0;
        }
    }

    return 1;
}


/* the sweep */

void
ngx_http_chat_files_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    ngx_http_chat_files_sweep_t  *sw;

    /* the first worker, or its replacement (ngx_worker stays the same) */

    if (cmcf->pg == NULL || cmcf->upload_paths == NULL || ngx_worker != 0) {
        return;
    }

    sw = &ngx_http_chat_files_sweep;

    sw->paths = cmcf->upload_paths;
    sw->grace = cmcf->upload_grace;
    sw->active = 1;

    /*
     * the crawl starts anywhere: a pass is longer than nginx may run
     * between reloads, and each would start it over at 00/00
     */
    sw->crawl = (ngx_uint_t) ngx_random() & 0xffff;

    /* a quarter of the grace, between a second and a minute */
    sw->period = (ngx_msec_t) ngx_min(ngx_max(sw->grace * 250, 1000), 60000);

    sw->timer.handler = ngx_http_chat_files_tick;
    sw->timer.log = cycle->log;
    sw->timer.data = sw;
    sw->timer.cancelable = 1;

#if (NGX_THREADS)
    if (cmcf->upload_threads) {
        /* without one (no memory): inline */
        sw->task = ngx_thread_task_alloc(cycle->pool, 0);

        if (sw->task) {
            sw->threads = cmcf->upload_threads;
            sw->task->ctx = sw;
            sw->task->handler = ngx_http_chat_files_thread;
            sw->task->event.data = sw;
            sw->task->event.log = cycle->log;
            sw->task->event.handler = ngx_http_chat_files_worked;
        }
    }
#endif

    ngx_add_timer(&sw->timer, sw->period);
}


void
ngx_http_chat_files_exit_process(void)
{
    ngx_http_chat_files_sweep.active = 0;
}


static void
ngx_http_chat_files_tick(ngx_event_t *ev)
{
    ngx_http_chat_files_sweep_t  *sw;

    sw = ev->data;

    if (!sw->active || ngx_exiting || ngx_terminate) {
        return;
    }

    if (sw->busy) {
        ngx_add_timer(&sw->timer, sw->period);
        return;
    }

    sw->nbatch = 0;
    sw->crawling = (sw->seen_len == 0);

    if (sw->crawling) {
        sw->now = ngx_time();

        switch (ngx_http_chat_files_post(sw)) {

        case NGX_OK:
            /* the call once the crawl is done (files_worked) */
            return;

        case NGX_DECLINED:
            ngx_http_chat_files_work(sw);
            break;

        default: /* NGX_ERROR */
            /* no crawl this time */
            break;
        }
    }

    ngx_http_chat_files_call(sw);
}


/*
 * The tick's filesystem work to a thread of chat_upload_threads: NGX_OK
 * (files_worked goes on), NGX_DECLINED (no pool: the caller does it
 * inline), NGX_ERROR (the pool's queue is full: not done this time).
 */

static ngx_int_t
ngx_http_chat_files_post(ngx_http_chat_files_sweep_t *sw)
{
#if (NGX_THREADS)

    if (sw->threads == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_thread_task_post(sw->threads, sw->task) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the timer stays off and the sweep's data is the task's meanwhile */
    sw->busy = 1;

    return NGX_OK;

#else

    return NGX_DECLINED;

#endif
}


/*
 * The batch's unlinks, then the crawl if asked: plain system calls on
 * the sweep's data (the stores, the grace, the batch; its lines kept by
 * ngx_http_chat_files_note), no other nginx structure, so that it may
 * run in a thread.
 */

static void
ngx_http_chat_files_work(ngx_http_chat_files_sweep_t *sw)
{
    ngx_uint_t  i;

    for (i = 0; i < sw->nbatch; i++) {
        sw->rc[i] = ngx_http_chat_files_unlink(sw, (char *) sw->batch[i],
                                               sw->at);
    }

    if (sw->crawling) {
        ngx_http_chat_files_crawl(sw);
    }
}


#if (NGX_THREADS)

static void
ngx_http_chat_files_thread(void *data, ngx_log_t *log)
{
    ngx_http_chat_files_work(data);
}


/* back in the event loop: the call after a crawl, or the unlinks' end */

static void
ngx_http_chat_files_worked(ngx_event_t *ev)
{
    ngx_http_chat_files_sweep_t  *sw;

    sw = ev->data;
    sw->busy = 0;

    /* the process is going: nothing more (the timer is not armed) */
    if (!sw->active || ngx_exiting || ngx_terminate) {
        return;
    }

    if (sw->crawling) {
        ngx_http_chat_files_call(sw);

    } else {
        ngx_http_chat_files_unlinked(sw);
    }
}

#endif


/*
 * A line of the filesystem work, kept for ngx_http_chat_files_log: the
 * work may run in a thread, which must not use the cycle's log.
 */

static void
ngx_http_chat_files_note(ngx_http_chat_files_sweep_t *sw, ngx_uint_t level,
    ngx_err_t err, const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    if (sw->nnotes == NGX_HTTP_CHAT_FILES_NOTES
        || sw->notes_len + NGX_MAX_ERROR_STR > NGX_HTTP_CHAT_FILES_NOTES_SIZE)
    {
        sw->notes_lost++;
        return;
    }

    p = sw->notes_text + sw->notes_len;
    last = p + NGX_MAX_ERROR_STR;

    va_start(args, fmt);
    last = ngx_vslprintf(p, last, fmt, args);
    va_end(args);

    sw->notes[sw->nnotes].level = level;
    sw->notes[sw->nnotes].err = err;
    sw->notes[sw->nnotes].start = sw->notes_len;
    sw->notes[sw->nnotes].len = last - p;
    sw->nnotes++;
    sw->notes_len += last - p;
}


/* the lines kept, logged from the event loop */

static void
ngx_http_chat_files_log(ngx_http_chat_files_sweep_t *sw)
{
    ngx_uint_t  i;

    for (i = 0; i < sw->nnotes; i++) {
        ngx_log_error(sw->notes[i].level, ngx_cycle->log, sw->notes[i].err,
                      "%*s", sw->notes[i].len,
                      sw->notes_text + sw->notes[i].start);
    }

    if (sw->notes_lost) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: upload sweep: %ui more lines not logged",
                      sw->notes_lost);
    }

    sw->nnotes = 0;
    sw->notes_lost = 0;
    sw->notes_len = 0;
}


static void
ngx_http_chat_files_call(ngx_http_chat_files_sweep_t *sw)
{
    u_char  *p;

    ngx_http_chat_files_log(sw);

    /* what the last answer's files became goes with the next call */

    p = ngx_sprintf(sw->arg, "{\"grace\":%T,\"limit\":%d,\"retry\":%M,"
                             "\"token\":%L,\"done\":[",
                    sw->grace, NGX_HTTP_CHAT_FILES_SWEEP_LIMIT,
                    (sw->period + 999) / 1000, sw->token);
    p = ngx_cpymem(p, sw->done, sw->done_len);
    p = ngx_cpymem(p, "],\"seen\":[", sizeof("],\"seen\":[") - 1);
    p = ngx_cpymem(p, sw->seen, sw->seen_len);
    p = ngx_cpymem(p, "]}", 2);
    *p = '\0';

    ngx_http_chat_pg_query_init(&sw->q, NGX_HTTP_CHAT_STMT_UPLOAD_SWEEP,
                                ngx_http_chat_files_swept, sw);
    ngx_http_chat_pg_query_param(&sw->q, "", 0);
    ngx_http_chat_pg_query_param(&sw->q, (char *) sw->arg, p - sw->arg);

    if (ngx_http_chat_pg_query(&sw->q) != NGX_OK) {
        /* storage is down: next time, with the same files done */
        ngx_add_timer(&sw->timer, sw->period);
        return;
    }

    sw->busy = 1;
}


static void
ngx_http_chat_files_swept(ngx_http_chat_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    u_char                        msg[NGX_HTTP_CHAT_PG_ERR_MAX];
    size_t                        i;
    json_t                       *result, *ok, *files, *f;
    const char                   *sha, *why;
    ngx_http_chat_files_sweep_t  *sw;

    sw = q->data;
    sw->busy = 0;

    result = ngx_http_chat_pg_json(rc, res);

    if (result == NULL) {
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "chat: upload sweep failed: %s",
                          ngx_http_chat_pg_fold(msg, sizeof(msg),
                                                PQresultErrorMessage(res)));
        }

        goto next;
    }

    ok = json_object_get(result, "ok");

    if (ok == NULL) {
        why = json_string_value(json_object_get(json_object_get(result,
                                                                "error"),
                                                "message"));
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: upload sweep refused: %s",
                      why ? why : "no answer");
        json_decref(result);
        goto next;
    }

    /* the files done were taken (or a row came back for them), and seen */
    sw->done_len = 0;
    sw->seen_len = 0;

    files = json_object_get(ok, "files");
    sw->at = (time_t) json_integer_value(json_object_get(ok, "at"));
    sw->more = json_is_true(json_object_get(ok, "more"));

    if (json_array_size(files)) {
        sw->token = json_integer_value(json_object_get(ok, "token"));
    }

    sw->nbatch = 0;
    sw->crawling = 0;

    json_array_foreach(files, i, f) {
        sha = json_string_value(f);

        if (i >= NGX_HTTP_CHAT_FILES_SWEEP_LIMIT || sha == NULL
            || !ngx_http_chat_files_hex(sha))
        {
            continue;
        }

        ngx_memcpy(sw->batch[sw->nbatch], sha, 64 + 1);
        sw->nbatch++;
    }

    json_decref(result);

    if (sw->nbatch) {
        switch (ngx_http_chat_files_post(sw)) {

        case NGX_OK:
            /* files_worked goes on */
            return;

        case NGX_DECLINED:
            ngx_http_chat_files_work(sw);
            break;

        default: /* NGX_ERROR */
            for (i = 0; i < sw->nbatch; i++) {
                sw->rc[i] = NGX_ERROR;
            }

            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "chat: upload sweep: the thread pool's queue is "
                          "full, retried later");
            break;
        }
    }

    ngx_http_chat_files_unlinked(sw);
    return;

next:

    if (sw->active && !ngx_exiting && !ngx_terminate) {
        ngx_add_timer(&sw->timer, sw->period);
    }
}


/* the batch's results: the files done go with the next call */

static void
ngx_http_chat_files_unlinked(ngx_http_chat_files_sweep_t *sw)
{
    ngx_uint_t  i, failed;
    ngx_msec_t  next;

    ngx_http_chat_files_log(sw);

    failed = 0;

    for (i = 0; i < sw->nbatch; i++) {

        if (sw->rc[i] != NGX_OK) {
            /* stays queued: handed out again later (the SQL's "retry") */
            failed += (sw->rc[i] == NGX_ERROR);
            continue;
        }

        sw->done_len = ngx_sprintf(sw->done + sw->done_len,
                                   sw->done_len ? ",\"%s\"" : "\"%s\"",
                                   sw->batch[i])
                       - sw->done;
    }

    sw->nbatch = 0;

    /* a store that fails is not worked through the whole queue at once */

    next = (sw->more && failed == 0) ? NGX_HTTP_CHAT_FILES_SWEEP_MORE
                                     : sw->period;

    if (sw->active && !ngx_exiting && !ngx_terminate) {
        ngx_add_timer(&sw->timer, next);
    }
}


/*
 * A file no row had when the sweep's transaction began ("at"), out of
 * every store: NGX_OK once it is gone from all (unlinked, or absent),
 * NGX_DECLINED if it was stored again just now and kept, NGX_ERROR if
 * something failed (logged).  Either of the last two leaves it queued.
 */

static ngx_int_t
ngx_http_chat_files_unlink(ngx_http_chat_files_sweep_t *sw,
    const char *sha256, time_t at)
{
    time_t      fresh;
    ngx_int_t   rc, frc;
    ngx_str_t  *store;
    ngx_uint_t  i;

    store = sw->paths->elts;
    fresh = ngx_min(sw->grace, NGX_HTTP_CHAT_FILES_FRESH);
    rc = NGX_OK;

    for (i = 0; i < sw->paths->nelts; i++) {
        frc = ngx_http_chat_files_bury(sw, &store[i], sha256, at, fresh);

        if (frc == NGX_ERROR || rc == NGX_OK) {
            rc = frc;
        }
    }

    return rc;
}


/*
 * One store's ab/cd/<sha256>, renamed first to tmp/<sha256>.swept, then
 * unlinked under that name unless it proves to be a file an upload has
 * just stored, which goes back (R16F-8).
 *
 * Why.  An upload renames its file to ab/cd/<sha256> (its bytes written
 * to the end, its mtime set to the rename's time: upload.c), then
 * inserts its row.  The sweep's transaction found no row for these
 * bytes at its start ("at") or later; a checking stat() then unlink()
 * of ab/cd/<sha256> would leave a moment in which an upload's rename
 * puts a new file there, unlinked right after.  The rename to the tomb
 * takes whatever inode is at the name, at once: either the upload's
 * rename came later, its file is at the name, untouched, and the tomb
 * holds an older one; or the upload's file is in the tomb and its mtime
 * says when it was written.  A file the sweep may take is one whose row
 * was not committed at "at": if its upload is to succeed, that row
 * commits after "at", within the pool's queue_timeout and query_timeout
 * of the rename (the statement_timeout is below the latter), else
 * nginx answered the upload 503 and nobody was given the row.  So a
 * tomb written after at - fresh (a minute, beyond any timeouts worth
 * having; the clocks of the nodes, PostgreSQL and the file server
 * agreeing to much better than that) goes back under its name, and one
 * written before is no live upload's.  A grace below a minute (tests)
 * shortens the minute to the grace.  Going back is a rename too: an
 * upload of the same bytes that took the name meanwhile is replaced by
 * the same bytes.  While the file is in the tomb (microseconds) a
 * download of it answers 404.  A file kept is handed out again later,
 * when it is no longer fresh (or a row has it and it leaves the queue).
 *
 * rename() within one filesystem, as the upload's: tmp/ is the body's
 * temporary directory, in the store.  A tomb left by a crash between the
 * two calls is an old file of tmp/, and goes with them.
 */

static ngx_int_t
ngx_http_chat_files_bury(ngx_http_chat_files_sweep_t *sw, ngx_str_t *store,
    const char *sha256, time_t at, time_t fresh)
{
    u_char           path[NGX_MAX_PATH], tomb[NGX_MAX_PATH];
    ngx_err_t        err;
    ngx_file_info_t  fi;

    if (store->len + sizeof("/tmp/.swept") + 64 > NGX_MAX_PATH) {
        return NGX_ERROR;
    }

    *ngx_sprintf(path, "%V/%*s/%*s/%s", store, (size_t) 2, sha256,
                 (size_t) 2, sha256 + 2, sha256) = '\0';
    *ngx_sprintf(tomb, "%V/tmp/%s.swept", store, sha256) = '\0';

    if (ngx_rename_file(path, tomb) == NGX_FILE_ERROR) {
        err = ngx_errno;

        /* ENOENT: the file, or tmp/ (then the file is still there) */
        if (err == NGX_ENOENT
            && ngx_link_info(path, &fi) == NGX_FILE_ERROR
            && ngx_errno == NGX_ENOENT)
        {
            return NGX_OK;
        }

        ngx_http_chat_files_note(sw, NGX_LOG_ERR, err,
                                 "chat: upload sweep: " ngx_rename_file_n
                                 " \"%s\" to \"%s\" failed, retried later",
                                 path, tomb);
        return NGX_ERROR;
    }

    if (ngx_link_info(tomb, &fi) == NGX_FILE_ERROR) {
        /* taken meanwhile by another node's sweep: its to judge */
        return NGX_DECLINED;
    }

    if (ngx_is_dir(&fi) || ngx_file_mtime(&fi) >= at - fresh) {

        if (ngx_rename_file(tomb, path) == NGX_FILE_ERROR) {
            ngx_http_chat_files_note(sw, NGX_LOG_ALERT, ngx_errno,
                                     "chat: upload sweep: " ngx_rename_file_n
                                     " \"%s\" back to \"%s\" failed",
                                     tomb, path);
            return NGX_ERROR;
        }

        if (ngx_is_dir(&fi)) {
            ngx_http_chat_files_note(sw, NGX_LOG_ERR, 0,
                                     "chat: upload sweep: \"%s\" is a "
                                     "directory, retried later", path);
            return NGX_ERROR;
        }

        ngx_http_chat_files_note(sw, NGX_LOG_INFO, 0,
                                 "chat: upload sweep: \"%s\" was stored again "
                                 "just now: kept", path);
        return NGX_DECLINED;
    }

    if (ngx_delete_file(tomb) == NGX_FILE_ERROR && ngx_errno != NGX_ENOENT) {
        ngx_http_chat_files_note(sw, NGX_LOG_ERR, ngx_errno,
                                 "chat: upload sweep: " ngx_delete_file_n
                                 " \"%s\" failed", tomb);
        return NGX_ERROR;
    }

    ngx_http_chat_files_note(sw, NGX_LOG_INFO, 0,
                             "chat: upload sweep: \"%s\" removed", path);

    return NGX_OK;
}


/*
 * The crawl.  A file no row ever named (its upload's row failed after
 * the file was stored) is in no queue.  Before each call, the files of
 * one directory ab/cd of a store, in order over the passes, that are
 * older than the grace go with it as "seen": the SQL queues those no row
 * names, and they are handed out and unlinked as any other (the tomb
 * keeps one an upload is storing again).  A tick reads the store's
 * directory, at most a few ab/ and one ab/cd/ (a store of n files has
 * n / 65536 in each), and sends at most NGX_HTTP_CHAT_FILES_SWEEP_LIMIT
 * hashes: the rest of a directory goes with the next calls.
 */

static void
ngx_http_chat_files_crawl(ngx_http_chat_files_sweep_t *sw)
{
    u_char      dir[NGX_MAX_PATH];
    size_t      len;
    ngx_str_t  *store;
    ngx_uint_t  ab, cd, n;

    static u_char  hex[] = "0123456789abcdef";

    store = sw->paths->elts;
    store = &store[sw->crawl_store % sw->paths->nelts];

    if (store->len + sizeof("/ab/cd/") + 64 > NGX_MAX_PATH) {
        return;
    }

    ab = sw->crawl >> 8;
    cd = sw->crawl & 0xff;

    for (n = 0; n < 4; n++) {

        *ngx_sprintf(dir, "%V", store) = '\0';

        if (ngx_http_chat_files_crawl_next(sw, dir, ab, &ab) != NGX_OK) {
            break;
        }

        if (ab != sw->crawl >> 8) {
            cd = 0;
        }

        len = ngx_sprintf(dir, "%V/%c%c", store, hex[ab >> 4], hex[ab & 0xf])
              - dir;
        dir[len] = '\0';

        if (ngx_http_chat_files_crawl_next(sw, dir, cd, &cd) == NGX_OK) {

            if ((ab << 8 | cd) != sw->crawl) {
                sw->crawl_skip = 0;
            }

            sw->crawl = ab << 8 | cd;

            len = ngx_sprintf(dir + len, "/%c%c", hex[cd >> 4],
                              hex[cd & 0xf]) - dir;
            dir[len] = '\0';

            ngx_http_chat_files_crawl_read(sw, dir, len);
            return;
        }

        if (ab == 0xff) {
            break;
        }

        ab++;
        cd = 0;
        sw->crawl = ab << 8;
        sw->crawl_skip = 0;
    }

    if (n == 4) {
        return;
    }

    /* the pass is over: the next store, from the start */

    sw->crawl = 0;
    sw->crawl_skip = 0;
    sw->crawl_store++;
}


/* the smallest two-digit hex name in dir at least from */

static ngx_int_t
ngx_http_chat_files_crawl_next(ngx_http_chat_files_sweep_t *sw, u_char *dir,
    ngx_uint_t from, ngx_uint_t *found)
{
    u_char     *name;
    ngx_int_t   v, best;
    ngx_str_t   path;
    ngx_dir_t   d;

    path.data = dir;
    path.len = ngx_strlen(dir);

    if (ngx_open_dir(&path, &d) == NGX_ERROR) {
        /* gone, or a file in the way (the upload that meets it says so) */
        if (ngx_errno != NGX_ENOENT && ngx_errno != NGX_ENOTDIR) {
            ngx_http_chat_files_note(sw, NGX_LOG_ERR, ngx_errno,
                                     "chat: upload sweep: " ngx_open_dir_n
                                     " \"%s\" failed", dir);
        }

        return NGX_DECLINED;
    }

    best = -1;

    while (ngx_read_dir(&d) == NGX_OK) {
        name = ngx_de_name(&d);

        if (ngx_de_namelen(&d) != 2 || !ngx_http_chat_files_hex2(name)) {
            continue;
        }

        v = ngx_hextoi(name, 2);

        if (v >= (ngx_int_t) from && (best == -1 || v < best)) {
            best = v;
        }
    }

    ngx_close_dir(&d);

    if (best == -1) {
        return NGX_DECLINED;
    }

    *found = (ngx_uint_t) best;

    return NGX_OK;
}


static void
ngx_http_chat_files_crawl_read(ngx_http_chat_files_sweep_t *sw, u_char *dir,
    size_t len)
{
    u_char           *name;
    ngx_str_t         path;
    ngx_dir_t         d;
    ngx_uint_t        i, n;
    ngx_file_info_t   fi;

    path.data = dir;
    path.len = len;

    if (ngx_open_dir(&path, &d) == NGX_ERROR) {
        return;
    }

    i = 0;
    n = 0;

    while (ngx_read_dir(&d) == NGX_OK) {

        /*
         * the entries read already (the order stays; what the unlinks
         * meanwhile shift past is read in the next pass)
         */
        if (i++ < sw->crawl_skip) {
            continue;
        }

        name = ngx_de_name(&d);

        if (ngx_de_namelen(&d) != 64) {
            continue;
        }

        *ngx_sprintf(dir + len, "/%*s", (size_t) 64, name) = '\0';

        if (!ngx_http_chat_files_hex((char *) name)
            || ngx_link_info(dir, &fi) == NGX_FILE_ERROR
            || !ngx_is_file(&fi)
            || ngx_file_mtime(&fi) > sw->now - sw->grace)
        {
            continue;
        }

        if (n == NGX_HTTP_CHAT_FILES_SWEEP_LIMIT) {
            /* this one and the rest with the next call */
            sw->crawl_skip = i - 1;
            ngx_close_dir(&d);
            return;
        }

        sw->seen_len = ngx_sprintf(sw->seen + sw->seen_len,
                                   n ? ",\"%*s\"" : "\"%*s\"", (size_t) 64,
                                   name)
                       - sw->seen;
        n++;
    }

    ngx_close_dir(&d);

    /* done with it: the next directory next time */
    sw->crawl++;
    sw->crawl_skip = 0;

    if (sw->crawl == 0x10000) {
        sw->crawl = 0;
        sw->crawl_store++;
    }
}
