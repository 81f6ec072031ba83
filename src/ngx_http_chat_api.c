
/*
 * The REST routes under a chat_api location.  Authentication is the same
 * as for the WebSocket; a route becomes the same chat.api_* call as the
 * WebSocket request it mirrors, its result the same objects and error
 * codes, with an HTTP status that follows the code.  Changes made here
 * reach WebSocket clients through the same fan-out.
 *
 * Request bodies are read asynchronously, at most chat_max_message_size
 * bytes kept (nginx's client_max_body_size check is off in the location:
 * its HTML 413 came before the module's JSON one), and must be one JSON
 * object (the WebSocket envelope's rules: depth, duplicate keys, NUL).
 * Path parameters win over body fields.
 * An upload's body is a file: upload.c streams it to disk.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_request.h>
#include <ngx_http_chat_route.h>
#include <ngx_http_chat_utf8.h>


typedef struct ngx_http_chat_api_s  ngx_http_chat_api_t;

typedef ngx_int_t (*ngx_http_chat_api_pt)(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);


struct ngx_http_chat_api_s {
    ngx_http_chat_ctx_t           ctx;       /* first: the module's ctx */
    ngx_str_t                     service;   /* a service's own sub */
    ngx_str_t                    *caller;    /* whom storage runs as */
    ngx_http_chat_route_t         route;
    json_t                       *body;      /* the request's JSON object */
    ngx_uint_t                    status;    /* of an ok answer */
    ngx_http_chat_store_done_pt   done;      /* NULL: ngx_http_chat_api_done */
    off_t                         received;  /* body bytes so far */
    unsigned                      created:1; /* 201 when it made events */
    unsigned                      too_large:1;
};


/* a user the directory was told about by this worker, recently */
typedef struct {
    ngx_str_node_t                sn;
    ngx_queue_t                   queue;
    uint32_t                      claims;    /* crc32 of name and avatar */
    time_t                        at;
    u_char                        id[1];
} ngx_http_chat_api_seen_t;


/*
 * CORS: the headers a page on another origin may read, and send after a
 * preflight; a download's too (its name, its ETag for If-None-Match and
 * If-Range, its ranges): files.c's and nginx's static module's
 */
#define NGX_HTTP_CHAT_API_EXPOSE       "Retry-After, WWW-Authenticate"
#define NGX_HTTP_CHAT_API_EXPOSE_FILE                                        \
    NGX_HTTP_CHAT_API_EXPOSE ", Content-Disposition, ETag, Accept-Ranges, "  \
    "Content-Range"
#define NGX_HTTP_CHAT_API_ALLOW        "Authorization, Content-Type, "       \
                                       "Chat-Act-As"
#define NGX_HTTP_CHAT_API_ALLOW_FILE                                         \
    NGX_HTTP_CHAT_API_ALLOW ", Range, If-None-Match, If-Range"


#define NGX_HTTP_CHAT_API_SEEN_MAX  4096
#define NGX_HTTP_CHAT_API_SEEN_TTL  600


/* a message search in flight in this worker, until its request ends */
typedef struct {
    ngx_queue_t                   queue;
    ngx_str_t                     user;
} ngx_http_chat_api_searching_t;


/* message searches one user may have in flight in one worker */
#define NGX_HTTP_CHAT_API_SEARCHES  2


typedef struct {
    ngx_http_chat_route_e         route;
    ngx_uint_t                    method;    /* NGX_HTTP_GET, ... */
    ngx_http_chat_api_pt          handler;
} ngx_http_chat_api_call_t;


static ngx_int_t ngx_http_chat_api_cors(ngx_http_request_t *r,
    ngx_http_chat_loc_conf_t *ccf, ngx_http_chat_route_e route);
static ngx_int_t ngx_http_chat_api_act_as(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static void ngx_http_chat_api_directory(ngx_http_chat_identity_t *id);
static ngx_int_t ngx_http_chat_api_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
static ngx_int_t ngx_http_chat_api_route(ngx_http_request_t *r,
    ngx_http_chat_route_t *rt);
static ngx_int_t ngx_http_chat_api_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_chat_api_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_chat_api_body_failed(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_chat_api_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_chat_api_run(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_store(ngx_http_request_t *r,
    ngx_http_chat_api_t *api, ngx_uint_t stmt, json_t *req);
static void ngx_http_chat_api_done(ngx_http_chat_store_done_t *done,
    json_t *result);
static void ngx_http_chat_api_presence_done(ngx_http_chat_store_done_t *done,
    json_t *result);
static ngx_int_t ngx_http_chat_api_answer(ngx_http_request_t *r,
    json_t *error);
static json_t *ngx_http_chat_api_args(ngx_http_request_t *r,
    const char **names, const char **strings, ngx_uint_t *bad);
static ngx_int_t ngx_http_chat_api_query(ngx_http_request_t *r,
    ngx_http_chat_api_t *api, ngx_uint_t stmt, const char **names,
    const char **strings, const char *id);
static json_t *ngx_http_chat_api_request(ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_limited(ngx_http_request_t *r,
    ngx_msec_t wait);

static ngx_int_t ngx_http_chat_api_me(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_list(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_create(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_get(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_history(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_send(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_read(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_edit(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_delete(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_block(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_unblock(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_presence(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_unread(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_blocks(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_flag(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_contacts(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_contact_add(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_contact_remove(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_update(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_members(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_member_add(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_member_remove(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static json_t *ngx_http_chat_api_with_id(ngx_http_chat_api_t *api,
    const char *key);
static json_t *ngx_http_chat_api_send_request(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_search(ngx_http_request_t *r,
    ngx_http_chat_api_t *api);
static ngx_int_t ngx_http_chat_api_search_admit(ngx_http_request_t *r,
    ngx_http_chat_api_t *api, ngx_msec_t *wait);
static void ngx_http_chat_api_search_cleanup(void *data);
static ngx_int_t ngx_http_chat_api_log(ngx_http_request_t *r);


#define R(x)  NGX_HTTP_CHAT_ROUTE_ ## x

static ngx_http_chat_api_call_t  ngx_http_chat_api_calls[] = {
    { R(ME),            NGX_HTTP_GET,    ngx_http_chat_api_me },
    { R(CONVERSATIONS), NGX_HTTP_GET,    ngx_http_chat_api_list },
    { R(CONVERSATIONS), NGX_HTTP_POST,   ngx_http_chat_api_create },
    { R(CONVERSATION),  NGX_HTTP_GET,    ngx_http_chat_api_get },
    { R(MESSAGES),      NGX_HTTP_GET,    ngx_http_chat_api_history },
    { R(MESSAGES),      NGX_HTTP_POST,   ngx_http_chat_api_send },
    { R(READ),          NGX_HTTP_POST,   ngx_http_chat_api_read },
    { R(MESSAGE),       NGX_HTTP_PATCH,  ngx_http_chat_api_edit },
    { R(MESSAGE),       NGX_HTTP_DELETE, ngx_http_chat_api_delete },
    { R(BLOCK),         NGX_HTTP_PUT,    ngx_http_chat_api_block },
    { R(BLOCK),         NGX_HTTP_DELETE, ngx_http_chat_api_unblock },
    { R(PRESENCE),      NGX_HTTP_GET,    ngx_http_chat_api_presence },
    { R(UNREAD),        NGX_HTTP_GET,    ngx_http_chat_api_unread },
    { R(BLOCKS),        NGX_HTTP_GET,    ngx_http_chat_api_blocks },
    { R(ARCHIVE),       NGX_HTTP_PUT,    ngx_http_chat_api_flag },
    { R(ARCHIVE),       NGX_HTTP_DELETE, ngx_http_chat_api_flag },
    { R(MUTE),          NGX_HTTP_PUT,    ngx_http_chat_api_flag },
    { R(MUTE),          NGX_HTTP_DELETE, ngx_http_chat_api_flag },
    { R(CONTACTS),      NGX_HTTP_GET,    ngx_http_chat_api_contacts },
    { R(CONTACTS),      NGX_HTTP_POST,   ngx_http_chat_api_contact_add },
    { R(CONTACT),       NGX_HTTP_DELETE, ngx_http_chat_api_contact_remove },
    { R(CONVERSATION),  NGX_HTTP_PATCH,  ngx_http_chat_api_update },
    { R(CONVERSATION),  NGX_HTTP_DELETE, ngx_http_chat_api_member_remove },
    { R(MEMBERS),       NGX_HTTP_GET,    ngx_http_chat_api_members },
    { R(MEMBERS),       NGX_HTTP_POST,   ngx_http_chat_api_member_add },
    { R(MEMBER),        NGX_HTTP_DELETE, ngx_http_chat_api_member_remove },
    { R(MESSAGE_SEARCH), NGX_HTTP_GET,   ngx_http_chat_api_search },
    { R(USER_SEARCH),   NGX_HTTP_GET,    ngx_http_chat_api_search },
    { R(NONE),          0,               NULL }
};


/* per worker: users recently upserted into the directory */
static ngx_rbtree_t       ngx_http_chat_api_seen;
static ngx_rbtree_node_t  ngx_http_chat_api_seen_sentinel;
static ngx_queue_t        ngx_http_chat_api_seen_queue;
static ngx_uint_t         ngx_http_chat_api_seen_n;

/* per worker: the message searches in flight */
static ngx_queue_t        ngx_http_chat_api_searching;


/* the HTTP status of each protocol error code */

static struct {
    const char  *code;
    ngx_uint_t   status;
} ngx_http_chat_api_statuses[] = {
    { "bad_request",  NGX_HTTP_BAD_REQUEST },
    { "unauthorized", NGX_HTTP_UNAUTHORIZED },
    { "forbidden",    NGX_HTTP_FORBIDDEN },
    { "not_found",    NGX_HTTP_NOT_FOUND },
    { "conflict",     NGX_HTTP_CONFLICT },
    { "too_large",    NGX_HTTP_REQUEST_ENTITY_TOO_LARGE },
    { "rate_limited", 429 },
    { "limit",        NGX_HTTP_CONFLICT },
    { "unavailable",  NGX_HTTP_SERVICE_UNAVAILABLE },
    { NULL,           NGX_HTTP_INTERNAL_SERVER_ERROR }
};


static ngx_http_request_body_filter_pt  ngx_http_chat_api_next_body;


void
ngx_http_chat_api_init_process(void)
{
    ngx_rbtree_init(&ngx_http_chat_api_seen, &ngx_http_chat_api_seen_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_http_chat_api_seen_queue);
}


/*
 * A JSON body's bytes pass a body filter of ours (held to
 * chat_max_message_size); REST answers are counted in the log phase,
 * whichever way they went
 */

ngx_int_t
ngx_http_chat_api_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;
    ngx_http_chat_main_conf_t  *ccmf;

    ngx_http_chat_api_next_body = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_chat_api_body_filter;

    ccmf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);

    if (ccmf->stats_zone == NULL) {
        /* no chat location: nothing to count */
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_chat_api_log;

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_api_log(ngx_http_request_t *r)
{
    ngx_uint_t                  status, cls;
    ngx_http_chat_api_t        *api;
    ngx_http_chat_route_e       route;
    ngx_http_chat_loc_conf_t   *ccf;
    ngx_http_chat_main_conf_t  *cmcf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (ccf->files && r->internal) {
        /* a download, redirected to the chat_files location (files.c) */
        route = NGX_HTTP_CHAT_ROUTE_FILE;

    } else if (ccf->mode != NGX_HTTP_CHAT_MODE_API) {
        return NGX_OK;

    } else {
        /*
         * The ctx is the first field of the api (see the handler); it is
         * gone after an internal redirect, and with it the route.
         */
        api = ngx_http_get_module_ctx(r, ngx_http_chat_module);
        route = api ? api->route.route : NGX_HTTP_CHAT_ROUTE_NONE;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    if ((ngx_uint_t) route >= NGX_HTTP_CHAT_ROUTE_COUNT) {
        route = NGX_HTTP_CHAT_ROUTE_NONE;
    }

    /* as the access log has it; none at all: the client left (499) */
    status = r->err_status ? r->err_status : r->headers_out.status;
    cls = status ? ngx_min(ngx_max(status / 100, 1), 5) - 1 : 3;

    ngx_http_chat_stat(cmcf, http[route][cls], 1);

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_api_handler(ngx_http_request_t *r)
{
    const char                *err;
    ngx_int_t                  rc;
    ngx_str_t                  user;
    ngx_uint_t                 methods, bit;
    ngx_http_chat_api_t       *api;
    ngx_http_chat_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    api = ngx_pcalloc(r->pool, sizeof(ngx_http_chat_api_t));
    if (api == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, &api->ctx, ngx_http_chat_module);

    (void) ngx_http_chat_api_route(r, &api->route);

    rc = ngx_http_chat_api_cors(r, ccf, api->route.route);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    /* before the route: who may not ask learns nothing of the routes */

    rc = ngx_http_chat_auth_request(r, ccf, r->pool, &api->ctx.id, &err);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        if (ngx_http_chat_http_add_header(r, "WWW-Authenticate", "Bearer")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_chat_api_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                        "unauthorized", err);
    }

    /* the directory learns the caller's name from its token, as at a
     * WebSocket's connect */
    ngx_http_chat_api_directory(&api->ctx.id);

    rc = ngx_http_chat_api_act_as(r, api);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (api->route.user != NULL) {
        user.data = (u_char *) api->route.user;
        user.len = api->route.user_len;

        if (ngx_http_chat_auth_text_valid(&user) != NGX_OK) {
            return ngx_http_chat_api_refuse(r, NGX_HTTP_BAD_REQUEST,
                                            "bad_request",
                                            "user_id must be a user id");
        }
    }

    if (api->route.route == NGX_HTTP_CHAT_ROUTE_NONE) {
        return ngx_http_chat_api_refuse(r, NGX_HTTP_NOT_FOUND, "not_found",
                                        "no such route");
    }

    methods = ngx_http_chat_route_methods(api->route.route);

    switch (r->method) {
    case NGX_HTTP_GET:
    case NGX_HTTP_HEAD:
        bit = NGX_HTTP_CHAT_M_GET;
        break;
    case NGX_HTTP_POST:
        bit = NGX_HTTP_CHAT_M_POST;
        break;
    case NGX_HTTP_PUT:
        bit = NGX_HTTP_CHAT_M_PUT;
        break;
    case NGX_HTTP_PATCH:
        bit = NGX_HTTP_CHAT_M_PATCH;
        break;
    case NGX_HTTP_DELETE:
        bit = NGX_HTTP_CHAT_M_DELETE;
        break;
    default:
        bit = 0;
    }

    if (!(methods & bit)) {
        if (ngx_http_chat_http_add_header(r, "Allow",
                                     ngx_http_chat_route_allow(
                                         api->route.route))
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_chat_api_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                        "bad_request", "method not allowed");
    }

    if (api->route.route == NGX_HTTP_CHAT_ROUTE_UPLOADS) {
        /* a file, not JSON: streamed to disk (upload.c) */
        return ngx_http_chat_upload_handler(r, &api->ctx, &api->ctx.id.id);
    }

    if (bit & (NGX_HTTP_CHAT_M_POST | NGX_HTTP_CHAT_M_PUT
               | NGX_HTTP_CHAT_M_PATCH))
    {
        if (r->headers_in.content_length_n > (off_t) ccf->max_message_size)
        {
            return ngx_http_chat_api_refuse(r,
                                        NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                        "too_large",
                                        "the request body is too large");
        }

        /* the body in one memory buffer, never in a temporary file */
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_http_chat_api_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return ngx_http_chat_api_body_failed(r, rc);
        }

#if (NGX_HTTP_V2)
        if (r->stream) {
            return NGX_DONE;
        }
#endif

        if (rc == NGX_AGAIN) {
            /* nginx's read handler would answer a failure in HTML */
            r->read_event_handler = ngx_http_chat_api_body_read;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (api->route.route == NGX_HTTP_CHAT_ROUTE_FILE) {
        /* served by nginx from the store once allowed (files.c) */
        return ngx_http_chat_files_handler(r, api->caller, api->route.id);
    }

    return ngx_http_chat_api_run(r, api);
}


/*
 * The caller's name and avatar into chat.users (chat.api_user_upsert),
 * at most once per user per worker every ten minutes unless they change:
 * a REST-only user is found by users/search like any other.
 */

static void
ngx_http_chat_api_directory(ngx_http_chat_identity_t *id)
{
    json_t                      *arg;
    uint32_t                     hash, claims;
    ngx_queue_t                 *q;
    ngx_http_chat_api_seen_t    *seen;
    ngx_http_chat_main_conf_t   *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);
    if (cmcf->pg == NULL) {
        return;
    }

    hash = ngx_crc32_short(id->id.data, id->id.len);

    ngx_crc32_init(claims);
    ngx_crc32_update(&claims, id->name.data, id->name.len);
    ngx_crc32_update(&claims, (u_char *) "\0", 1);
    ngx_crc32_update(&claims, id->avatar.data, id->avatar.len);
    ngx_crc32_final(claims);

    seen = (ngx_http_chat_api_seen_t *) ngx_str_rbtree_lookup(
                                            &ngx_http_chat_api_seen,
                                            &id->id, hash);

    if (seen != NULL && seen->claims == claims
        && ngx_time() - seen->at < NGX_HTTP_CHAT_API_SEEN_TTL)
    {
        return;
    }

    arg = ngx_http_chat_http_user_json(id);
    if (arg == NULL) {
        return;
    }

    ngx_http_chat_store_call(id->id.data, id->id.len,
                             NGX_HTTP_CHAT_STMT_USER_UPSERT, arg);
    json_decref(arg);

    if (seen != NULL) {
        seen->claims = claims;
        seen->at = ngx_time();
        return;
    }

    /* the oldest goes when the table is full */

    if (ngx_http_chat_api_seen_n >= NGX_HTTP_CHAT_API_SEEN_MAX) {
        q = ngx_queue_head(&ngx_http_chat_api_seen_queue);
        seen = ngx_queue_data(q, ngx_http_chat_api_seen_t, queue);
        ngx_queue_remove(q);
        ngx_rbtree_delete(&ngx_http_chat_api_seen, &seen->sn.node);
        ngx_free(seen);
        ngx_http_chat_api_seen_n--;
    }

    seen = ngx_alloc(sizeof(ngx_http_chat_api_seen_t) + id->id.len,
                     ngx_cycle->log);
    if (seen == NULL) {
        return;
    }

    ngx_memcpy(seen->id, id->id.data, id->id.len);
    seen->sn.str.data = seen->id;
    seen->sn.str.len = id->id.len;
    seen->sn.node.key = hash;
    seen->claims = claims;
    seen->at = ngx_time();

    ngx_rbtree_insert(&ngx_http_chat_api_seen, &seen->sn.node);
    ngx_queue_insert_tail(&ngx_http_chat_api_seen_queue, &seen->queue);
    ngx_http_chat_api_seen_n++;
}


/*
 * A service (chat_service_claim) acts for the user named by the
 * Chat-Act-As header: the route runs as that user, with that user's
 * rights.  Anybody else sending the header is refused.  NGX_DECLINED: go
 * on.
 */

static ngx_int_t
ngx_http_chat_api_act_as(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    u_char           *p;
    ngx_str_t        *user;
    ngx_uint_t        n;
    ngx_table_elt_t  *h;

    api->service = api->ctx.id.id;
    api->caller = &api->ctx.id.id;

    h = ngx_http_chat_http_header(r, "Chat-Act-As", &n);
    user = h ? &h->value : NULL;

    if (user == NULL) {
        return NGX_DECLINED;
    }

    if (!api->ctx.id.service) {
        return ngx_http_chat_api_refuse(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                        "only a service may act for users");
    }

    if (n > 1 || user->len == 0 || user->len > NGX_HTTP_CHAT_JWT_MAX_SUB
        || ngx_http_chat_auth_text_valid(user) != NGX_OK)
    {
        return ngx_http_chat_api_refuse(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request",
                                        "Chat-Act-As must be one user id");
    }

    /* NUL-terminated, for libpq; the name is unknown: the id stands in */
    p = ngx_pnalloc(r->pool, user->len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, user->data, user->len);
    p[user->len] = '\0';

    api->ctx.id.id.data = p;
    api->ctx.id.id.len = user->len;
    api->ctx.id.name = api->ctx.id.id;
    ngx_str_null(&api->ctx.id.avatar);

    return NGX_DECLINED;
}


/*
 * An answer before the body was read: the body is discarded first, or
 * nginx would read it as the next request on the connection; one
 * announced past client_max_body_size is left unread, the connection
 * closed after the answer.
 */

static ngx_int_t
ngx_http_chat_api_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    ngx_int_t                  rc;
    ngx_http_chat_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (ccf->body_max_size
        && r->headers_in.content_length_n > ccf->body_max_size
#if (NGX_HTTP_V2)
        && r->stream == NULL
#endif
        )
    {
        /* past client_max_body_size: left unread, as nginx's check did */
        r->keepalive = 0;
        r->lingering_close = 1;

    } else {
        rc = ngx_http_chat_http_drop_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return ngx_http_chat_http_send_error(r, status, code, message);
}


/*
 * The route is the path after the location's prefix, percent-decoded here
 * from the request line: r->uri has been normalized too (merged slashes,
 * dot segments), which would change a user id holding "//" or "/./".
 * When the raw path does not start with the location's prefix (the
 * client's path needed normalizing), r->uri is used.
 */

static ngx_int_t
ngx_http_chat_api_route(ngx_http_request_t *r, ngx_http_chat_route_t *rt)
{
    u_char                    *dst, *src, *end;
    ngx_str_t                  path;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    path = r->uri;

    end = r->args_start ? r->args_start - 1
                        : r->unparsed_uri.data + r->unparsed_uri.len;

    if (r->unparsed_uri.data != NULL && end > r->unparsed_uri.data) {
        dst = ngx_pnalloc(r->pool, end - r->unparsed_uri.data);

        if (dst != NULL) {
            path.data = dst;
            src = r->unparsed_uri.data;
            ngx_unescape_uri(&dst, &src, end - r->unparsed_uri.data, 0);
            path.len = dst - path.data;

            if (clcf->exact_match || path.len < clcf->name.len
                || ngx_strncmp(path.data, clcf->name.data, clcf->name.len)
                   != 0)
            {
                path = r->uri;
            }
        }
    }

    if (!clcf->exact_match && path.len >= clcf->name.len
        && ngx_strncmp(path.data, clcf->name.data, clcf->name.len) == 0)
    {
        path.data += clcf->name.len;
        path.len -= clcf->name.len;
    }

    if (ngx_http_chat_route_parse(rt, path.data, path.len) != 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * CORS: an Origin that is not allowed (chat_cors_origins, else the same
 * origin only) is refused with 403, so that a page elsewhere cannot act
 * with a cookie's token; an allowed one gets the Access-Control headers,
 * and a preflight is answered here.  NGX_DECLINED: go on.
 */

static ngx_int_t
ngx_http_chat_api_cors(ngx_http_request_t *r, ngx_http_chat_loc_conf_t *ccf,
    ngx_http_chat_route_e route)
{
    u_char           *copy;
    ngx_str_t        *origin;
    ngx_uint_t        origins, preflight;
    ngx_table_elt_t  *h;

    h = ngx_http_chat_http_header(r, "Origin", &origins);
    origin = h ? &h->value : NULL;

    preflight = ngx_http_chat_http_header(r, "Access-Control-Request-Method",
                                          NULL)
                != NULL;

    if (origin == NULL) {
        if (r->method == NGX_HTTP_OPTIONS) {
            goto options;
        }

        return NGX_DECLINED;
    }

    if (origins > 1
        || ngx_http_chat_http_origin_allowed(r, ccf->cors_origins, origin)
           != NGX_OK)
    {
        return ngx_http_chat_api_refuse(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                        "origin not allowed");
    }

    /* the header value must outlive the request's header buffers: copy */
    copy = ngx_pnalloc(r->pool, origin->len + 1);
    if (copy == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(copy, origin->data, origin->len);
    copy[origin->len] = '\0';

    if (ngx_http_chat_http_add_header(r, "Access-Control-Allow-Origin",
                                 (char *) copy) != NGX_OK
        || ngx_http_chat_http_add_header(r, "Vary", "Origin") != NGX_OK
        || ngx_http_chat_http_add_header(r, "Access-Control-Expose-Headers",
                                    route == NGX_HTTP_CHAT_ROUTE_FILE
                                    ? NGX_HTTP_CHAT_API_EXPOSE_FILE
                                    : NGX_HTTP_CHAT_API_EXPOSE)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method != NGX_HTTP_OPTIONS) {
        return NGX_DECLINED;
    }

    if (preflight && route != NGX_HTTP_CHAT_ROUTE_NONE) {
        if (ngx_http_chat_http_add_header(r, "Access-Control-Allow-Methods",
                                     ngx_http_chat_route_allow(route))
               != NGX_OK
            || ngx_http_chat_http_add_header(r, "Access-Control-Allow-Headers",
                                        route == NGX_HTTP_CHAT_ROUTE_FILE
                                        ? NGX_HTTP_CHAT_API_ALLOW_FILE
                                        : NGX_HTTP_CHAT_API_ALLOW)
               != NGX_OK
            || ngx_http_chat_http_add_header(r, "Access-Control-Max-Age", "600")
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

options:

    if (route == NGX_HTTP_CHAT_ROUTE_NONE) {
        return ngx_http_chat_api_refuse(r, NGX_HTTP_NOT_FOUND, "not_found",
                                        "no such route");
    }

    if (ngx_http_chat_http_add_header(r, "Allow",
                                 ngx_http_chat_route_allow(route))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


/* the body has been read: parse it, then run the route */

/*
 * A JSON body past chat_max_message_size (chunked: its length was not
 * told, or only a chunk's): its bytes are read on and dropped, neither
 * kept in memory nor written to a temporary file, and the answer is the
 * 413 once the body has ended, on a connection that goes on (as a
 * refused body is discarded).  Past the location's client_max_body_size
 * too, read or announced by a chunk, it is 413 at once, the rest left
 * unread (the connection closes after it), as nginx's own check does.
 * A Content-Length over chat_max_message_size was refused before reading.
 */

static ngx_int_t
ngx_http_chat_api_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t                      told;
    ngx_chain_t               *cl, *out, **ll;
    ngx_http_chat_api_t       *api;
    ngx_http_request_body_t   *rb;
    ngx_http_chat_loc_conf_t  *ccf;

    rb = r->request_body;

    if (rb == NULL || rb->post_handler != ngx_http_chat_api_body) {
        return ngx_http_chat_api_next_body(r, in);
    }

    api = ngx_http_get_module_ctx(r, ngx_http_chat_module);
    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    for (cl = in; cl; cl = cl->next) {
        api->received += ngx_buf_size(cl->buf);
    }

    /* what is to come of the chunk being read is as good as here */
    told = api->received + (rb->chunked ? rb->chunked->size : 0);

    if (told > (off_t) ccf->max_message_size) {
        api->too_large = 1;

        if (ccf->body_max_size && told > ccf->body_max_size) {
            r->lingering_close = 1;

#if (NGX_HTTP_V2)
            if (r->stream) {
                /*
                 * HTTP/2's DATA handler would finalize the request with
                 * nginx's HTML 413: the JSON one goes now, then the
                 * stream is closed (R16G-1)
                 */
                (void) ngx_http_chat_http_send_error(r,
                                        NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                        "too_large",
                                        "the request body is too large");
                return NGX_HTTP_CLOSE;
            }
#endif

            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }
    }

    if (!api->too_large) {
        return ngx_http_chat_api_next_body(r, in);
    }

    /* dropped, but consumed: nginx's reading loop reuses its buffers */

    out = NULL;
    ll = &out;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;

        if (!cl->buf->last_buf) {
            continue;
        }

        *ll = ngx_alloc_chain_link(r->pool);
        if (*ll == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (*ll)->buf = cl->buf;
        ll = &(*ll)->next;
    }

    *ll = NULL;

    return ngx_http_chat_api_next_body(r, out);
}


/*
 * The body's later reads, as nginx's own read handler does them
 * (ngx_http_read_unbuffered_request_body is the public entry to its
 * reading loop), a failure answered in JSON; a reference of ours keeps
 * the request while the post handler may finalize it
 */

static void
ngx_http_chat_api_body_read(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    r->main->count++;

    rc = ngx_http_read_unbuffered_request_body(r);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_http_finalize_request(r, ngx_http_chat_api_body_failed(r, rc));
    }

    ngx_http_finalize_request(r, NGX_DONE);
}


/*
 * The body could not be read: past client_max_body_size (the filter) is
 * the protocol's 413, malformed chunks its 400, the rest unread; the
 * client's own failures are nginx's to end
 */

static ngx_int_t
ngx_http_chat_api_body_failed(ngx_http_request_t *r, ngx_int_t rc)
{
    /* NGX_HTTP_CLOSE: answered already (HTTP/2, the filter) */

    if ((rc != NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
         && rc != NGX_HTTP_BAD_REQUEST)
        || r->connection->error)
    {
        return rc;
    }

    r->keepalive = 0;

    if (rc == NGX_HTTP_BAD_REQUEST) {
        /* malformed chunks: the rest cannot be parsed (R16G-5) */
        r->lingering_close = 1;
        return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "bad_request",
                                             "malformed chunked body");
    }

    return ngx_http_chat_http_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "too_large",
                                         "the request body is too large");
}


static void
ngx_http_chat_api_body(ngx_http_request_t *r)
{
    size_t                     len;
    ssize_t                    n;
    u_char                    *data;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    const char                *err;
    ngx_chain_t               *cl;
    ngx_http_chat_api_t       *api;
    ngx_http_chat_loc_conf_t  *ccf;

    api = ngx_http_get_module_ctx(r, ngx_http_chat_module);
    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    len = 0;

    if (r->request_body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (api->too_large || len > ccf->max_message_size) {
        rc = ngx_http_chat_http_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      "too_large",
                                      "the request body is too large");
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* an empty body is an empty object: PUT and DELETE-like calls */

    if (len == 0) {
        api->body = json_object();
        if (api->body == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_finalize_request(r, ngx_http_chat_api_run(r, api));
        return;
    }

    cl = r->request_body->bufs;
    b = cl->buf;

    if (cl->next == NULL && !b->in_file) {
        data = b->pos;

    } else {
        /*
         * In pieces, or in nginx's temporary file (a body over
         * client_body_buffer_size): at most chat_max_message_size bytes
         * read back, as nginx itself reads its temporary files.
         */

        data = ngx_pnalloc(r->pool, len);
        if (data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        len = 0;

        for ( /* void */ ; cl; cl = cl->next) {
            b = cl->buf;

            if (b->in_file) {
                n = ngx_read_file(b->file, data + len,
                                  (size_t) (b->file_last - b->file_pos),
                                  b->file_pos);

                if (n != b->file_last - b->file_pos) {
                    ngx_http_finalize_request(r,
                                           NGX_HTTP_INTERNAL_SERVER_ERROR);
                    return;
                }

                len += (size_t) n;
                continue;
            }

            ngx_memcpy(data + len, b->pos, b->last - b->pos);
            len += b->last - b->pos;
        }
    }

    /* the envelope's rules, without "type": a JSON object, depth, dups */

    api->body = ngx_http_chat_request_json_object(data, len,
                                          NGX_HTTP_CHAT_MAX_JSON_DEPTH, &err);
    if (api->body == NULL) {
        rc = ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                           "bad_request",
                                      err);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_chat_api_run(r, api));
}


static ngx_int_t
ngx_http_chat_api_run(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    ngx_int_t                  rc;
    ngx_http_chat_api_call_t  *call;

    for (call = ngx_http_chat_api_calls; call->handler; call++) {
        if (call->route == api->route.route
            && (call->method == r->method
                || (call->method == NGX_HTTP_GET
                    && r->method == NGX_HTTP_HEAD)))
        {
            break;
        }
    }

    /* the table has every method of every route (see route.c) */
    rc = call->handler ? call->handler(r, api)
                       : NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (api->body != NULL && rc != NGX_DONE) {
        json_decref(api->body);
        api->body = NULL;
    }

    return rc;
}


/*
 * A storage call for the route: the request's JSON (path parameters
 * set), answered by ngx_http_chat_api_done.  req: consumed.
 */

static ngx_int_t
ngx_http_chat_api_store(ngx_http_request_t *r, ngx_http_chat_api_t *api,
    ngx_uint_t stmt, json_t *req)
{
    ngx_http_chat_main_conf_t  *cmcf;

    if (req == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    if (cmcf->pg == NULL) {
        json_decref(req);
        return ngx_http_chat_http_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "unavailable",
                                        "storage is not configured");
    }

    if (api->status == 0) {
        api->status = NGX_HTTP_OK;
    }

    /* kept until ngx_http_chat_api_done finalizes it */
    r->main->count++;

    if (ngx_http_chat_store_http(r, api->caller, stmt, req,
                                 api->done ? api->done
                                           : ngx_http_chat_api_done)
        != NGX_OK)
    {
        r->main->count--;
        json_decref(req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_decref(req);

    if (api->body != NULL) {
        json_decref(api->body);
        api->body = NULL;
    }

    return NGX_DONE;
}


static void
ngx_http_chat_api_done(ngx_http_chat_store_done_t *done, json_t *result)
{
    json_t               *ok, *error, *events;
    const char           *type;
    ngx_int_t             rc;
    ngx_uint_t            status;
    ngx_http_request_t   *r;
    ngx_http_chat_api_t  *api;

    r = done->data;
    api = ngx_http_get_module_ctx(r, ngx_http_chat_module);

    if (result == NULL) {
        rc = ngx_http_chat_http_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "unavailable",
                                      "storage is unavailable, retry later");
        ngx_http_finalize_request(r, rc);
        return;
    }

    error = json_object_get(result, "error");

    if (error != NULL) {
        rc = ngx_http_chat_api_answer(r, error);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ok = json_object_get(result, "ok");
    events = json_object_get(result, "events");

    status = api->status;

    /* 201 when something came to be (not for a role change) */
    type = json_string_value(json_object_get(
                                 json_object_get(json_array_get(events, 0),
                                                 "event"),
                                 "type"));

    if (api->created && type != NULL
        && (ngx_strcmp(type, "conversation.created") == 0
            || ngx_strcmp(type, "member.joined") == 0
            || ngx_strcmp(type, "message.created") == 0))
    {
        status = NGX_HTTP_CREATED;
    }

    rc = ngx_http_chat_http_send_json(r, status,
                                 ok ? json_incref(ok) : json_object());

    ngx_http_finalize_request(r, rc);
}


/* an error object of the protocol, with the status its code calls for */

static ngx_int_t
ngx_http_chat_api_answer(ngx_http_request_t *r, json_t *error)
{
    const char  *code;
    ngx_uint_t   i, status;

    code = json_string_value(json_object_get(error, "code"));

    for (i = 0; ngx_http_chat_api_statuses[i].code; i++) {
        if (code && ngx_strcmp(code, ngx_http_chat_api_statuses[i].code)
                    == 0)
        {
            break;
        }
    }

    status = ngx_http_chat_api_statuses[i].status;

    r->err_status = 0;

    return ngx_http_chat_http_send_json(r, status,
                                   json_pack("{s:O}", "error", error));
}


/*
 * Query arguments as JSON values: a canonical integer becomes a number,
 * true and false booleans, anything else a string (the SQL functions
 * then say what is wrong with it); those named in strings stay strings.
 * Arguments not named are ignored.
 */

static json_t *
ngx_http_chat_api_args(ngx_http_request_t *r, const char **names,
    const char **strings, ngx_uint_t *bad)
{
    u_char     *dst, *src, *p;
    json_t     *obj, *v;
    ngx_str_t     value;
    ngx_int_t     n;
    ngx_uint_t    text;
    const char  **s;

    obj = json_object();
    if (obj == NULL) {
        return NULL;
    }

    for ( /* void */ ; *names; names++) {

        if (ngx_http_arg(r, (u_char *) *names, ngx_strlen(*names), &value)
            != NGX_OK)
        {
            continue;
        }

        dst = ngx_pnalloc(r->pool, value.len);
        if (dst == NULL) {
            json_decref(obj);
            return NULL;
        }

        p = dst;
        src = value.data;
        ngx_unescape_uri(&p, &src, value.len, 0);
        value.data = dst;
        value.len = p - dst;

        text = 0;

        for (s = strings; s && *s; s++) {
            if (ngx_strcmp(*s, *names) == 0) {
                text = 1;
            }
        }

        n = text ? NGX_ERROR : ngx_atoi(value.data, value.len);

        if (ngx_http_chat_auth_text_valid(&value) != NGX_OK) {
            /*
             * jansson takes UTF-8 only, and PostgreSQL's jsonb no NUL;
             * no argument means a line break or any other control
             */
            v = json_string("\xef\xbf\xbd");
            *bad = 1;

        } else if (text) {
            v = json_stringn((char *) value.data, value.len);

        } else if (n != NGX_ERROR && value.len < 19
            && (value.data[0] != '0' || value.len == 1))
        {
            v = json_integer(n);

        } else if (value.len == 4 && ngx_strncmp(value.data, "true", 4) == 0)
        {
            v = json_true();

        } else if (value.len == 5
                   && ngx_strncmp(value.data, "false", 5) == 0)
        {
            v = json_false();

        } else {
            v = json_stringn((char *) value.data, value.len);
        }

        if (v == NULL || json_object_set_new(obj, *names, v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}


/* a GET route: its query arguments, and the path's id under id_key */

static ngx_int_t
ngx_http_chat_api_query(ngx_http_request_t *r, ngx_http_chat_api_t *api,
    ngx_uint_t stmt, const char **names, const char **strings,
    const char *id_key)
{
    json_t                    *req;
    ngx_uint_t                 bad;
    ngx_http_chat_loc_conf_t  *ccf;

    bad = 0;

    req = ngx_http_chat_api_args(r, names, strings, &bad);
    if (req == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (bad) {
        json_decref(req);
        return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request",
                                        "query arguments must be UTF-8 "
                                        "without control characters");
    }

    if (id_key != NULL
        && json_object_set_new(req, id_key, json_integer(api->route.id))
           != 0)
    {
        json_decref(req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    /* the whole directory, or only people the caller can reach */
    if (stmt == NGX_HTTP_CHAT_STMT_USERS_SEARCH && ccf->user_directory
        && json_object_set_new(req, "directory", json_string("open")) != 0)
    {
        json_decref(req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_chat_api_store(r, api, stmt, req);
}


/* the body as the request's object, or a fresh one */

static json_t *
ngx_http_chat_api_request(ngx_http_chat_api_t *api)
{
    json_t  *req;

    req = api->body ? json_copy(api->body) : json_object();

    if (req != NULL) {
        /* the envelope's keys mean nothing here */
        json_object_del(req, "type");
        json_object_del(req, "id");
    }

    return req;
}


/* 429 with Retry-After, as the WebSocket's rate_limited error */

static ngx_int_t
ngx_http_chat_api_limited(ngx_http_request_t *r, ngx_msec_t wait)
{
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);
    ngx_http_chat_stat(cmcf, rate_limited, 1);

    return ngx_http_chat_http_send_retry(r, 429, "rate_limited",
                                         "too many requests, slow down",
                                         wait);
}


/* ------------------------------------------------------------------------
 * The routes
 */

static ngx_int_t
ngx_http_chat_api_me(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    json_t  *body;

    body = json_pack("{s:o}", "user",
                     ngx_http_chat_http_user_json(&api->ctx.id));
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_chat_http_send_json(r, NGX_HTTP_OK, body);
}


static ngx_int_t
ngx_http_chat_api_list(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    static const char  *names[] = { "limit", "before", "archived", NULL };

    return ngx_http_chat_api_query(r, api,
                                   NGX_HTTP_CHAT_STMT_CONVERSATION_LIST,
                                   names, NULL, NULL);
}


static ngx_int_t
ngx_http_chat_api_create(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    api->created = 1;

    return ngx_http_chat_api_store(r, api,
                                   NGX_HTTP_CHAT_STMT_CONVERSATION_CREATE,
                                   ngx_http_chat_api_request(api));
}


static ngx_int_t
ngx_http_chat_api_get(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api,
                                   NGX_HTTP_CHAT_STMT_CONVERSATION_GET,
                                   json_pack("{s:I}", "conversation_id",
                                             (json_int_t) api->route.id));
}


static ngx_int_t
ngx_http_chat_api_history(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    static const char  *names[] = { "before_seq", "after_seq", "limit",
                                    NULL };

    return ngx_http_chat_api_query(r, api, NGX_HTTP_CHAT_STMT_HISTORY, names,
                                   NULL, "conversation_id");
}


static ngx_int_t
ngx_http_chat_api_send(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    json_t                    *req, *system;
    ngx_msec_t                 wait;
    ngx_http_chat_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    system = api->body ? json_object_get(api->body, "system") : NULL;

    if (system != NULL && !json_is_boolean(system)) {
        return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request",
                                        "system must be a boolean");
    }

    if (json_is_true(system)) {
        if (!api->ctx.id.service) {
            return ngx_http_chat_http_send_error(r, NGX_HTTP_FORBIDDEN,
                                            "forbidden",
                                            "only a service may post system "
                                            "messages");
        }

        /* in any conversation, from the service itself */
        api->caller = &api->service;
        api->created = 1;

        return ngx_http_chat_api_store(r, api,
                                       NGX_HTTP_CHAT_STMT_SYSTEM_MESSAGE,
                                       ngx_http_chat_api_send_request(r,
                                                                      api));
    }

    req = ngx_http_chat_api_send_request(r, api);

    api->created = 1;

    wait = ngx_http_chat_rate_check_user(ccf, &api->ctx.id.id,
                                         NGX_HTTP_CHAT_RATE_SEND);
    if (wait) {
        json_decref(req);
        return ngx_http_chat_api_limited(r, wait);
    }

    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_SEND, req);
}


/* the body, the path's conversation and the location's length limit */

static json_t *
ngx_http_chat_api_send_request(ngx_http_request_t *r,
    ngx_http_chat_api_t *api)
{
    json_t                    *req;
    ngx_http_chat_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    req = ngx_http_chat_api_with_id(api, "conversation_id");
    if (req == NULL) {
        return NULL;
    }

    (void) json_object_del(req, "system");

    if (json_object_set_new(req, "max_length",
                            json_integer(ccf->max_message_length)) != 0)
    {
        json_decref(req);
        return NULL;
    }

    return req;
}


static ngx_int_t
ngx_http_chat_api_read(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_READ,
                                   ngx_http_chat_api_with_id(api,
                                                     "conversation_id"));
}


static ngx_int_t
ngx_http_chat_api_edit(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    json_t                    *req;
    ngx_http_chat_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    req = ngx_http_chat_api_request(api);

    if (req != NULL
        && (json_object_set_new(req, "message_id",
                                json_integer(api->route.id)) != 0
            || json_object_set_new(req, "max_length",
                                   json_integer(ccf->max_message_length))
               != 0))
    {
        json_decref(req);
        req = NULL;
    }

    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_EDIT, req);
}


static ngx_int_t
ngx_http_chat_api_delete(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_DELETE,
                                   json_pack("{s:I}", "message_id",
                                             (json_int_t) api->route.id));
}


static ngx_int_t
ngx_http_chat_api_block(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_BLOCK,
                                   json_pack("{s:s%}", "user_id",
                                             api->route.user,
                                             api->route.user_len));
}


static ngx_int_t
ngx_http_chat_api_unblock(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_UNBLOCK,
                                   json_pack("{s:s%}", "user_id",
                                             api->route.user,
                                             api->route.user_len));
}


static ngx_int_t
ngx_http_chat_api_unread(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_UNREAD,
                                   json_object());
}


static ngx_int_t
ngx_http_chat_api_blocks(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_BLOCKS,
                                   json_object());
}


/* PUT sets archived or muted, DELETE clears it */

static ngx_int_t
ngx_http_chat_api_flag(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_MEMBER_FLAG,
                                   json_pack("{s:I, s:s, s:b}",
                                       "conversation_id",
                                       (json_int_t) api->route.id,
                                       "flag",
                                       api->route.route
                                       == NGX_HTTP_CHAT_ROUTE_ARCHIVE
                                       ? "archived" : "muted",
                                       "value", r->method == NGX_HTTP_PUT));
}


static ngx_int_t
ngx_http_chat_api_contacts(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    static const char  *names[] = { "after", NULL };

    /* the cursor is text even when it looks like a number */
    return ngx_http_chat_api_query(r, api, NGX_HTTP_CHAT_STMT_CONTACTS,
                                   names, names, NULL);
}


static ngx_int_t
ngx_http_chat_api_contact_add(ngx_http_request_t *r,
    ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_CONTACT_ADD,
                                   ngx_http_chat_api_request(api));
}


static ngx_int_t
ngx_http_chat_api_contact_remove(ngx_http_request_t *r,
    ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_CONTACT_REMOVE,
                                   json_pack("{s:s%}", "user_id",
                                             api->route.user,
                                             api->route.user_len));
}


/* the body with the path's id under key */

static json_t *
ngx_http_chat_api_with_id(ngx_http_chat_api_t *api, const char *key)
{
    json_t  *req;

    req = ngx_http_chat_api_request(api);

    if (req != NULL
        && json_object_set_new(req, key, json_integer(api->route.id)) != 0)
    {
        json_decref(req);
        return NULL;
    }

    return req;
}


static ngx_int_t
ngx_http_chat_api_update(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    return ngx_http_chat_api_store(r, api,
                                   NGX_HTTP_CHAT_STMT_CONVERSATION_UPDATE,
                                   ngx_http_chat_api_with_id(api,
                                                     "conversation_id"));
}


/* conversations/{id}/members?after&limit: a page of the members */

static ngx_int_t
ngx_http_chat_api_members(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    static const char  *names[] = { "after", "limit", NULL };
    static const char  *strings[] = { "after", NULL };

    /* the cursor is text even when it looks like a number */
    return ngx_http_chat_api_query(r, api,
                                   NGX_HTTP_CHAT_STMT_CONVERSATION_MEMBERS,
                                   names, strings, "conversation_id");
}


static ngx_int_t
ngx_http_chat_api_member_add(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    api->created = 1;

    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_MEMBER_ADD,
                                   ngx_http_chat_api_with_id(api,
                                                     "conversation_id"));
}


/* DELETE conversations/{id} is leaving: removing oneself */

static ngx_int_t
ngx_http_chat_api_member_remove(ngx_http_request_t *r,
    ngx_http_chat_api_t *api)
{
    ngx_str_t  *user;

    user = &api->ctx.id.id;

    return ngx_http_chat_api_store(r, api, NGX_HTTP_CHAT_STMT_MEMBER_REMOVE,
                                   json_pack("{s:I, s:s%}",
                                       "conversation_id",
                                       (json_int_t) api->route.id,
                                       "user_id",
                                       api->route.user ? (char *)
                                           api->route.user
                                         : (char *) user->data,
                                       api->route.user ? api->route.user_len
                                                       : user->len));
}


/* messages/search?q&conversation_id&limit&offset, users/search?q&limit */

static ngx_int_t
ngx_http_chat_api_search(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    static const char  *messages[] = { "q", "conversation_id", "limit",
                                       "offset", NULL };
    static const char  *users[] = { "q", "limit", NULL };
    static const char  *text[] = { "q", NULL };

    ngx_int_t   rc;
    ngx_msec_t  wait;

    if (api->route.route == NGX_HTTP_CHAT_ROUTE_MESSAGE_SEARCH) {
        rc = ngx_http_chat_api_search_admit(r, api, &wait);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            return ngx_http_chat_api_limited(r, wait);
        }

        return ngx_http_chat_api_query(r, api,
                                       NGX_HTTP_CHAT_STMT_MESSAGES_SEARCH,
                                       messages, text, NULL);
    }

    return ngx_http_chat_api_query(r, api, NGX_HTTP_CHAT_STMT_USERS_SEARCH,
                                   users, text, NULL);
}


/*
 * A message search costs far more than anything else: each user has a
 * bucket of them (chat_search_rate) and at most two in flight in this
 * worker; past either, NGX_DECLINED and how long to wait (429).  The
 * pool runs one at a time per worker.
 */

static ngx_int_t
ngx_http_chat_api_search_admit(ngx_http_request_t *r,
    ngx_http_chat_api_t *api, ngx_msec_t *wait)
{
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_pool_cleanup_t             *cln;
    ngx_http_chat_loc_conf_t       *ccf;
    ngx_http_chat_api_searching_t  *s;

    if (ngx_http_chat_api_searching.next == NULL) {
        ngx_queue_init(&ngx_http_chat_api_searching);
    }

    n = 0;

    for (q = ngx_queue_head(&ngx_http_chat_api_searching);
         q != ngx_queue_sentinel(&ngx_http_chat_api_searching);
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_http_chat_api_searching_t, queue);

        if (s->user.len == api->ctx.id.id.len
            && ngx_strncmp(s->user.data, api->ctx.id.id.data,
                           s->user.len) == 0)
        {
            n++;
        }
    }

    if (n >= NGX_HTTP_CHAT_API_SEARCHES) {
        /* not counted in the bucket: nothing was run */
        *wait = 1000;
        return NGX_DECLINED;
    }

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    *wait = ngx_http_chat_rate_check_user(ccf, &api->ctx.id.id,
                                          NGX_HTTP_CHAT_RATE_SEARCH);
    if (*wait) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_chat_api_searching_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    s = cln->data;
    s->user = api->ctx.id.id;

    ngx_queue_insert_tail(&ngx_http_chat_api_searching, &s->queue);

    cln->handler = ngx_http_chat_api_search_cleanup;

    return NGX_OK;
}


static void
ngx_http_chat_api_search_cleanup(void *data)
{
    ngx_http_chat_api_searching_t  *s = data;

    ngx_queue_remove(&s->queue);
}


/* ?user_ids=a,b: at most 200, from chat_zone like presence.query */

static ngx_int_t
ngx_http_chat_api_presence(ngx_http_request_t *r, ngx_http_chat_api_t *api)
{
    u_char                     *p, *start, *end, *dst, *src;
    json_t                     *ids, *presence;
    ngx_str_t                   value;
    ngx_http_chat_main_conf_t  *cmcf;

    if (ngx_http_arg(r, (u_char *) "user_ids", sizeof("user_ids") - 1,
                     &value)
        != NGX_OK || value.len == 0)
    {
        return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request", "user_ids is missing");
    }

    dst = ngx_pnalloc(r->pool, value.len);
    if (dst == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = dst;
    src = value.data;
    ngx_unescape_uri(&p, &src, value.len, 0);
    end = p;

    ids = json_array();
    if (ids == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (start = dst; start <= end; start = p + 1) {
        p = ngx_strlchr(start, end, ',');
        if (p == NULL) {
            p = end;
        }

        value.data = start;
        value.len = p - start;

        if (value.len == 0 || value.len > NGX_HTTP_CHAT_JWT_MAX_SUB
            || ngx_http_chat_auth_text_valid(&value) != NGX_OK
            || json_array_size(ids) == 200)
        {
            json_decref(ids);
            return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "bad_request",
                                            "user_ids must be at most 200 "
                                            "comma-separated user ids");
        }

        if (json_array_append_new(ids, json_stringn((char *) value.data,
                                                    value.len))
            != 0)
        {
            json_decref(ids);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    if (cmcf->pg != NULL) {
        /* only of the users the caller may know of: storage says who */
        api->done = ngx_http_chat_api_presence_done;
        return ngx_http_chat_api_store(r, api,
                                       NGX_HTTP_CHAT_STMT_PRESENCE_AUDIENCE,
                                       json_pack("{s:o}", "user_ids", ids));
    }

    presence = ngx_http_chat_presence_query(ids);
    json_decref(ids);

    if (presence == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_chat_http_send_json(r, NGX_HTTP_OK,
                                   json_pack("{s:o}", "presence", presence));
}


/* the audience read: the presence of those in it, null for the others */

static void
ngx_http_chat_api_presence_done(ngx_http_chat_store_done_t *done,
    json_t *result)
{
    json_t              *presence;
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    if (result == NULL || json_object_get(result, "error") != NULL) {
        ngx_http_chat_api_done(done, result);
        return;
    }

    r = done->data;

    presence = ngx_http_chat_presence_answer(
                   json_object_get(json_object_get(result, "ok"),
                                   "audience"));

    rc = presence ? ngx_http_chat_http_send_json(r, NGX_HTTP_OK,
                                            json_pack("{s:o}", "presence",
                                                      presence))
                  : NGX_HTTP_INTERNAL_SERVER_ERROR;

    ngx_http_finalize_request(r, rc);
}
