
/*
 * ngx_http_chat_module: real-time chat inside nginx.
 *
 * This file holds the module definition, the directives and the
 * configuration; each concern lives in its own file under src/.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_zone.h>


static void *ngx_http_chat_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_chat_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_chat_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_chat_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_chat_postconfiguration(ngx_conf_t *cf);
static void ngx_http_chat_dev_token_listen(ngx_conf_t *cf);
static ngx_uint_t ngx_http_chat_loopback(struct sockaddr *sa);
static ngx_int_t ngx_http_chat_user_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static char *ngx_http_chat_mode(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chat_jwt_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_chat_jwt_key_cleanup(void *data);
static char *ngx_http_chat_identity(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chat_service_claim(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chat_allowed_origins(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_chat_attachment_hosts(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_chat_postgres(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chat_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chat_limits(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chat_conf_read_file(ngx_conf_t *cf, ngx_str_t *param,
    ngx_pool_t *pool, off_t max, const char *what, ngx_str_t *path,
    ngx_str_t *out);
static char *ngx_http_chat_cluster_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chat_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_uint_t ngx_http_chat_any_origin(ngx_array_t *origins);
static char *ngx_http_chat_upload_threads(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chat_upload_path(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void ngx_http_chat_api_location(ngx_conf_t *cf,
    ngx_http_chat_loc_conf_t *conf);
static char *ngx_http_chat_files(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_chat_files_alias(ngx_conf_t *cf,
    ngx_http_core_loc_conf_t *clcf);
static ngx_int_t ngx_http_chat_upload_writable(ngx_cycle_t *cycle,
    ngx_str_t *path);
static ngx_int_t ngx_http_chat_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_chat_init_process(ngx_cycle_t *cycle);
static void ngx_http_chat_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_chat_fragments_bounds = {
    ngx_conf_check_num_bounds, 1, 1000000
};


/* users/search: only people one can reach, or the whole directory */
static ngx_conf_enum_t  ngx_http_chat_user_directory[] = {
    { ngx_string("contacts"), 0 },
    { ngx_string("open"), 1 },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_chat_length_bounds = {
    ngx_conf_check_num_bounds, 1, 1000000
};


static ngx_command_t  ngx_http_chat_commands[] = {

    { ngx_string("chat_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_chat_postgres,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_limits"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_chat_limits,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, cluster),
      NULL },

    { ngx_string("chat_node_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, node_id),
      NULL },

    { ngx_string("chat_cluster_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_cluster_secret,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_chat_zone_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_send_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_chat_rate_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, rates)
          + NGX_HTTP_CHAT_RATE_SEND * sizeof(ngx_http_chat_rate_t),
      NULL },

    { ngx_string("chat_typing_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_chat_rate_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, rates)
          + NGX_HTTP_CHAT_RATE_TYPING * sizeof(ngx_http_chat_rate_t),
      NULL },

    { ngx_string("chat_search_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_chat_rate_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, rates)
          + NGX_HTTP_CHAT_RATE_SEARCH * sizeof(ngx_http_chat_rate_t),
      NULL },

    { ngx_string("chat_attachment_hosts"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_chat_attachment_hosts,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_upload_path"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_upload_path,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_upload_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, upload_max_size),
      NULL },

    /* post: without burst=, a minute's files at once */
    { ngx_string("chat_upload_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_chat_rate_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, rates)
          + NGX_HTTP_CHAT_RATE_UPLOAD * sizeof(ngx_http_chat_rate_t),
      (void *) "minute" },

    { ngx_string("chat_upload_quota"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_rate_quota_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, rates)
          + NGX_HTTP_CHAT_RATE_UPLOAD_BYTES * sizeof(ngx_http_chat_rate_t),
      NULL },

    { ngx_string("chat_upload_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, upload_concurrency),
      NULL },

    { ngx_string("chat_upload_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, upload_timeout),
      NULL },

    /* the internal location downloads are redirected to */
    { ngx_string("chat_files"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_chat_files,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_upload_grace"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, upload_grace),
      NULL },

    /* the store's filesystem calls in a thread pool (upload.c, files.c) */
    { ngx_string("chat_upload_threads"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_upload_threads,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_max_connections_per_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, max_connections_per_user),
      NULL },

    { ngx_string("chat_websocket"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_chat_mode,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_CHAT_MODE_WEBSOCKET,
      NULL },

    { ngx_string("chat_echo"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_chat_mode,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_CHAT_MODE_ECHO,
      NULL },

    { ngx_string("chat_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_chat_mode,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_CHAT_MODE_API,
      NULL },

    { ngx_string("chat_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_chat_mode,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_CHAT_MODE_STATUS,
      NULL },

    { ngx_string("chat_dev_token"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_chat_mode,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_HTTP_CHAT_MODE_DEV_TOKEN,
      NULL },

    { ngx_string("chat_jwt_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_chat_jwt_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_jwt_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, jwt_issuer),
      NULL },

    { ngx_string("chat_jwt_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, jwt_audience),
      NULL },

    { ngx_string("chat_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, jwt_leeway),
      NULL },

    { ngx_string("chat_jwt_require_exp"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, jwt_require_exp),
      NULL },

    { ngx_string("chat_service_claim"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_chat_service_claim,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_token_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, token_cookie),
      NULL },

    { ngx_string("chat_identity"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_chat_identity,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_allowed_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_chat_allowed_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, allowed_origins),
      NULL },

    { ngx_string("chat_cors_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_chat_allowed_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, cors_origins),
      NULL },

    { ngx_string("chat_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, max_message_size),
      NULL },

    { ngx_string("chat_max_fragments"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, max_fragments),
      &ngx_http_chat_fragments_bounds },

    { ngx_string("chat_send_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, send_buffer),
      NULL },

    { ngx_string("chat_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("chat_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, idle_timeout),
      NULL },

    { ngx_string("chat_close_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, close_timeout),
      NULL },

    { ngx_string("chat_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, send_timeout),
      NULL },

    { ngx_string("chat_user_directory"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, user_directory),
      &ngx_http_chat_user_directory },

    { ngx_string("chat_max_message_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, max_message_length),
      &ngx_http_chat_length_bounds },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_chat_module_ctx = {
    ngx_http_chat_add_variables,           /* preconfiguration */
    ngx_http_chat_postconfiguration,       /* postconfiguration */

    ngx_http_chat_create_main_conf,        /* create main configuration */
    ngx_http_chat_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_chat_create_loc_conf,         /* create location configuration */
    ngx_http_chat_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_chat_module = {
    NGX_MODULE_V1,
    &ngx_http_chat_module_ctx,             /* module context */
    ngx_http_chat_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_chat_init_module,             /* init module */
    ngx_http_chat_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_chat_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_chat_vars[] = {

    { ngx_string("chat_user"), NULL, ngx_http_chat_user_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static void *
ngx_http_chat_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chat_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     cmcf->stats_zone = NULL;
     *     cmcf->stats = NULL;
     *     cmcf->pg = NULL;
     *     cmcf->zone = NULL;
     *     cmcf->node_id = { 0, NULL };
     *     cmcf->cluster_secret = { 0, NULL };
     *     cmcf->limits = { 0, NULL };
     *     cmcf->dev_tokens = NULL;
     *     cmcf->attachment_hosts = NULL;
     *     cmcf->attachment_hosts_sql = { 0, NULL };
     *     cmcf->upload_threads = NULL;
     */

    cmcf->cluster = NGX_CONF_UNSET;
    cmcf->upload_grace = NGX_CONF_UNSET;

    return cmcf;
}


/* a cluster shares presence through the zone and changes through storage */

static char *
ngx_http_chat_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    u_char      c;
    ngx_uint_t  i;

    ngx_conf_init_value(cmcf->cluster, 0);
    ngx_conf_init_value(cmcf->upload_grace, 86400);

    if (cmcf->upload_grace < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_upload_grace\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    if (cmcf->limits.len) {
        if (cmcf->pg == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"chat_limits\" needs chat_postgres");
            return NGX_CONF_ERROR;
        }

        cmcf->pg->settings = cmcf->limits;
    }

    if (cmcf->cluster && (cmcf->zone == NULL || cmcf->pg == NULL)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_cluster on\" needs chat_zone and "
                           "chat_postgres");
        return NGX_CONF_ERROR;
    }

    /* NOTIFY is open to every role that may connect to the database */

    if (cmcf->cluster && cmcf->cluster_secret.len == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"chat_cluster on\" without chat_cluster_secret: "
                           "any role that can connect to the database can "
                           "forge cluster notices");
    }

    /* it goes into JSON and NOTIFY payloads as it is */

    for (i = 0; i < cmcf->node_id.len; i++) {
        c = cmcf->node_id.data[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
              || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == '_'
              || c == ':'))
        {
            break;
        }
    }

    if (cmcf->node_id.len > 64 || i < cmcf->node_id.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_node_id must be 1 to 64 characters of "
                           "A-Z a-z 0-9 . - _ :");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_chat_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_chat_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chat_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->mode = NGX_HTTP_CHAT_MODE_NONE;
     *     conf->jwt_issuer = { 0, NULL };
     *     conf->jwt_audience = { 0, NULL };
     *     conf->token_cookie = { 0, NULL };
     */

    conf->jwt_key = NGX_CONF_UNSET_PTR;
    conf->jwt_leeway = NGX_CONF_UNSET;
    conf->jwt_require_exp = NGX_CONF_UNSET;
    conf->identity = NGX_CONF_UNSET_PTR;
    conf->identity_name = NGX_CONF_UNSET_PTR;
    conf->allowed_origins = NGX_CONF_UNSET_PTR;
    conf->cors_origins = NGX_CONF_UNSET_PTR;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->max_fragments = NGX_CONF_UNSET_UINT;
    conf->send_buffer = NGX_CONF_UNSET_SIZE;
    conf->heartbeat = NGX_CONF_UNSET_MSEC;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->close_timeout = NGX_CONF_UNSET_MSEC;
    conf->send_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_message_length = NGX_CONF_UNSET_UINT;
    conf->max_connections_per_user = NGX_CONF_UNSET_UINT;
    conf->user_directory = NGX_CONF_UNSET_UINT;
    conf->rates[0].rate = NGX_CONF_UNSET_UINT;
    conf->rates[1].rate = NGX_CONF_UNSET_UINT;
    conf->rates[2].rate = NGX_CONF_UNSET_UINT;
    conf->rates[3].rate = NGX_CONF_UNSET_UINT;
    conf->rates[4].rate = NGX_CONF_UNSET_UINT;
    conf->upload_temp = NGX_CONF_UNSET_PTR;
    conf->upload_max_size = NGX_CONF_UNSET;
    conf->upload_concurrency = NGX_CONF_UNSET_UINT;
    conf->upload_timeout = NGX_CONF_UNSET_MSEC;
    conf->files = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_chat_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_chat_loc_conf_t *prev = parent;
    ngx_http_chat_loc_conf_t *conf = child;

    ngx_uint_t                  i;
    ngx_array_t                *origins;
    const char                 *directive;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_chat_main_conf_t  *cmcf;

    ngx_conf_merge_ptr_value(conf->jwt_key, prev->jwt_key, NULL);
    ngx_conf_merge_str_value(conf->jwt_issuer, prev->jwt_issuer, "");
    ngx_conf_merge_str_value(conf->jwt_audience, prev->jwt_audience, "");
    ngx_conf_merge_sec_value(conf->jwt_leeway, prev->jwt_leeway, 30);
    ngx_conf_merge_value(conf->jwt_require_exp, prev->jwt_require_exp, 1);
    ngx_conf_merge_str_value(conf->token_cookie, prev->token_cookie, "");
    ngx_conf_merge_str_value(conf->service_claim, prev->service_claim, "");
    ngx_conf_merge_str_value(conf->service_value, prev->service_value, "");
    ngx_conf_merge_ptr_value(conf->identity, prev->identity, NULL);
    ngx_conf_merge_ptr_value(conf->identity_name, prev->identity_name,
                             NULL);
    ngx_conf_merge_ptr_value(conf->allowed_origins, prev->allowed_origins,
                             NULL);
    ngx_conf_merge_ptr_value(conf->cors_origins, prev->cors_origins, NULL);

    ngx_conf_merge_size_value(conf->max_message_size,
                              prev->max_message_size, 64 * 1024);
    ngx_conf_merge_uint_value(conf->max_fragments, prev->max_fragments, 128);
    ngx_conf_merge_size_value(conf->send_buffer, prev->send_buffer,
                              256 * 1024);
    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat, 30000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 0);
    ngx_conf_merge_msec_value(conf->close_timeout, prev->close_timeout,
                              5000);
    ngx_conf_merge_msec_value(conf->send_timeout, prev->send_timeout,
                              60000);
    ngx_conf_merge_uint_value(conf->max_message_length,
                              prev->max_message_length, 5000);
    ngx_conf_merge_uint_value(conf->max_connections_per_user,
                              prev->max_connections_per_user, 32);
    ngx_conf_merge_uint_value(conf->user_directory, prev->user_directory, 0);

    for (i = 0; i < NGX_HTTP_CHAT_RATES; i++) {
        if (conf->rates[i].rate == NGX_CONF_UNSET_UINT) {
            conf->rates[i] = prev->rates[i];
        }

        if (conf->rates[i].rate == NGX_CONF_UNSET_UINT) {
            conf->rates[i].rate = 0;
            conf->rates[i].burst = 0;
        }
    }

    if (conf->rates[NGX_HTTP_CHAT_RATE_SEARCH].rate == 0
        && conf->rates[NGX_HTTP_CHAT_RATE_SEARCH].burst == 0)
    {
        /* searches are costly: limited unless "off" says otherwise */
        conf->rates[NGX_HTTP_CHAT_RATE_SEARCH].rate = 1000;
        conf->rates[NGX_HTTP_CHAT_RATE_SEARCH].burst = 20 * 1000;
    }

    if (conf->rates[NGX_HTTP_CHAT_RATE_UPLOAD].rate == 0
        && conf->rates[NGX_HTTP_CHAT_RATE_UPLOAD].burst == 0)
    {
        /* 30 files a minute */
        conf->rates[NGX_HTTP_CHAT_RATE_UPLOAD].rate = 500;
        conf->rates[NGX_HTTP_CHAT_RATE_UPLOAD].burst = 30 * 1000;
    }

    if (conf->rates[NGX_HTTP_CHAT_RATE_UPLOAD_BYTES].rate == 0
        && conf->rates[NGX_HTTP_CHAT_RATE_UPLOAD_BYTES].burst == 0)
    {
        /* 1 GB a day */
        conf->rates[NGX_HTTP_CHAT_RATE_UPLOAD_BYTES].rate =
            (ngx_uint_t) 1024 * 1024 * 1024 * 1000 / 86400;
        conf->rates[NGX_HTTP_CHAT_RATE_UPLOAD_BYTES].burst =
            (ngx_uint_t) 1024 * 1024 * 1024 * 1000;
    }

    ngx_conf_merge_str_value(conf->upload_path, prev->upload_path, "");
    ngx_conf_merge_ptr_value(conf->upload_temp, prev->upload_temp, NULL);
    ngx_conf_merge_off_value(conf->upload_max_size, prev->upload_max_size,
                             25 * 1024 * 1024);

    if (conf->upload_max_size <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_upload_max_size\" must be more than 0");
        return NGX_CONF_ERROR;
    }

    /*
     * 4 at once: a client sending a few files side by side; an hour for
     * the whole body: chat_upload_max_size's default at 64 kbit/s, while
     * each upload holds a connection and a temporary file
     */
    ngx_conf_merge_uint_value(conf->upload_concurrency,
                              prev->upload_concurrency, 4);
    ngx_conf_merge_msec_value(conf->upload_timeout, prev->upload_timeout,
                              3600000);

    if (conf->upload_concurrency < 1 || conf->upload_concurrency > 255) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_upload_concurrency\" must be 1 to 255");
        return NGX_CONF_ERROR;
    }

    if (conf->upload_timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_upload_timeout\" must be more than 0");
        return NGX_CONF_ERROR;
    }

    if (conf->mode == NGX_HTTP_CHAT_MODE_API) {
        ngx_http_chat_api_location(cf, conf);
    }

    /* not inherited: a location under it is no store */
    if (conf->files == NGX_CONF_UNSET) {
        conf->files = 0;

    } else {
        /* the ETag is the hash's, set before the redirect */
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->etag = 0;

        if (ngx_http_chat_files_alias(cf, clcf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->max_connections_per_user > 255) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_max_connections_per_user\" is at most "
                           "255 (0: no limit)");
        return NGX_CONF_ERROR;
    }

    if (conf->send_buffer < 4096 || conf->send_timeout == 0
        || conf->close_timeout == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_send_buffer\" must be at least 4k, and "
                           "\"chat_send_timeout\" and \"chat_close_timeout\" "
                           "more than 0");
        return NGX_CONF_ERROR;
    }

    if (conf->max_message_size < NGX_HTTP_CHAT_CONTROL_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_max_message_size\" must be at least "
                           "%d bytes", NGX_HTTP_CHAT_CONTROL_MAX);
        return NGX_CONF_ERROR;
    }

    switch (conf->mode) {

    case NGX_HTTP_CHAT_MODE_WEBSOCKET:
    case NGX_HTTP_CHAT_MODE_ECHO:
    case NGX_HTTP_CHAT_MODE_API:
        if (conf->jwt_key == NULL && conf->identity == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "chat locations need \"chat_jwt_key\" or "
                               "\"chat_identity\" to authenticate users");
            return NGX_CONF_ERROR;
        }
        break;

    case NGX_HTTP_CHAT_MODE_DEV_TOKEN:
        if (conf->jwt_key == NULL
            || conf->jwt_key->alg < NGX_HTTP_CHAT_JWT_HS256
            || conf->jwt_key->alg > NGX_HTTP_CHAT_JWT_HS512)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"chat_dev_token\" needs an HS256, HS384 or "
                               "HS512 \"chat_jwt_key\" to sign with");
            return NGX_CONF_ERROR;
        }
        break;

    default:
        break;
    }

    /*
     * Checked on the merged values, inherited ones included: a location
     * names the endpoint, the levels above often hold the rest.
     */

    if (conf->mode == NGX_HTTP_CHAT_MODE_API) {
        origins = conf->cors_origins;
        directive = "chat_cors_origins";

    } else {
        origins = conf->allowed_origins;
        directive = "chat_allowed_origins";
    }

    if (conf->mode != NGX_HTTP_CHAT_MODE_NONE
        && conf->mode != NGX_HTTP_CHAT_MODE_STATUS
        && conf->mode != NGX_HTTP_CHAT_MODE_DEV_TOKEN
        && conf->token_cookie.len
        && ngx_http_chat_any_origin(origins))
    {
        /* a browser sends the cookie with a request any page makes */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%s *\" with \"chat_token_cookie\" lets any web "
                      "site act as whoever has the cookie: list the "
                      "origins, or drop the cookie for a token the page "
                      "sends itself in %V:%ui",
                      directive, &conf->mode_file, conf->mode_line);
        return NGX_CONF_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);

    if ((conf->mode == NGX_HTTP_CHAT_MODE_WEBSOCKET
         || conf->mode == NGX_HTTP_CHAT_MODE_API)
        && cmcf->pg == NULL)
    {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "\"%s\" without \"chat_postgres\": every request "
                      "that needs storage will answer \"unavailable\" "
                      "in %V:%ui",
                      conf->mode == NGX_HTTP_CHAT_MODE_API
                      ? "chat_api" : "chat_websocket",
                      &conf->mode_file, conf->mode_line);
    }

    return NGX_CONF_OK;
}


static ngx_uint_t
ngx_http_chat_any_origin(ngx_array_t *origins)
{
    ngx_str_t   *origin;
    ngx_uint_t   i;

    if (origins == NULL) {
        return 0;
    }

    origin = origins->elts;

    for (i = 0; i < origins->nelts; i++) {
        if (origin[i].len == 1 && origin[i].data[0] == '*') {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_chat_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_chat_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_chat_dev_token_listen(cf);

    if (ngx_http_chat_upload_init(cf) != NGX_OK
        || ngx_http_chat_files_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_chat_api_init(cf);
}


/*
 * The listen addresses are all known now (a server's listen may follow
 * its locations): a server with chat_dev_token that anyone beyond this
 * machine can reach is an [alert], not only the [warn] every start has.
 */

static void
ngx_http_chat_dev_token_listen(ngx_conf_t *cf)
{
    ngx_uint_t                  p, a, s, d;
    ngx_http_chat_dev_t        *dev;
    ngx_http_conf_addr_t       *addr;
    ngx_http_conf_port_t       *port;
    ngx_http_core_srv_conf_t  **server;
    ngx_http_core_main_conf_t  *core;
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);
    core = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    if (cmcf->dev_tokens == NULL || core->ports == NULL) {
        return;
    }

    dev = cmcf->dev_tokens->elts;
    port = core->ports->elts;

    for (p = 0; p < core->ports->nelts; p++) {
        addr = port[p].addrs.elts;

        for (a = 0; a < port[p].addrs.nelts; a++) {

            if (ngx_http_chat_loopback(addr[a].opt.sockaddr)) {
                continue;
            }

            server = addr[a].servers.elts;

            for (s = 0; s < addr[a].servers.nelts; s++) {
                for (d = 0; d < cmcf->dev_tokens->nelts; d++) {

                    if (dev[d].server != server[s]) {
                        continue;
                    }

                    ngx_log_error(NGX_LOG_ALERT, cf->log, 0,
                                  "\"chat_dev_token\" in %V:%ui mints "
                                  "tokens for anyone who reaches %V, which "
                                  "is not a loopback address: never expose "
                                  "it, listen on 127.0.0.1 only",
                                  &dev[d].file,
                                  dev[d].line, &addr[a].opt.addr_text);
                }
            }
        }
    }
}


/* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 and unix sockets stay local */

static ngx_uint_t
ngx_http_chat_loopback(struct sockaddr *sa)
{
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    u_char               *b;
    struct sockaddr_in6  *sin6;
#endif

    switch (sa->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;

        if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)) {
            return 1;
        }

        b = sin6->sin6_addr.s6_addr;

        return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && b[12] == 127;
#endif

#if (NGX_HAVE_UNIX_DOMAIN)
    case AF_UNIX:
        return 1;
#endif

    default:
        return 0;
    }
}


static ngx_int_t
ngx_http_chat_user_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_chat_identity_t  *id;

    id = ngx_http_get_module_ctx(r, ngx_http_chat_module);

    if (id == NULL || id->id.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = id->id.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = id->id.data;

    return NGX_OK;
}


static char *
ngx_http_chat_mode(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *ccf = conf;

    ngx_http_chat_dev_t        *dev;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_chat_main_conf_t  *cmcf;

    if (ccf->mode != NGX_HTTP_CHAT_MODE_NONE) {
        return "is duplicate: a location serves one chat endpoint";
    }

    ccf->mode = (ngx_http_chat_mode_e) cmd->offset;
    /* the name outlives the parse (cf->conf_file itself does not) */
    ccf->mode_file = cf->conf_file->file.name;
    ccf->mode_line = cf->conf_file->line;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);

    switch (ccf->mode) {

    case NGX_HTTP_CHAT_MODE_WEBSOCKET:
        cmcf->endpoints++;
        clcf->handler = ngx_http_chat_handshake_handler;
        break;

    case NGX_HTTP_CHAT_MODE_ECHO:
        clcf->handler = ngx_http_chat_handshake_handler;
        break;

    case NGX_HTTP_CHAT_MODE_API:
        cmcf->endpoints++;
        clcf->handler = ngx_http_chat_api_handler;
        break;

    case NGX_HTTP_CHAT_MODE_STATUS:
        clcf->handler = ngx_http_chat_status_handler;
        break;

    default: /* NGX_HTTP_CHAT_MODE_DEV_TOKEN */
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"chat_dev_token\" mints a token for anyone who "
                           "asks: for development only, never in production");
        clcf->handler = ngx_http_chat_auth_dev_token_handler;

        if (cmcf->dev_tokens == NULL) {
            cmcf->dev_tokens = ngx_array_create(cf->pool, 1,
                                                sizeof(ngx_http_chat_dev_t));
            if (cmcf->dev_tokens == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        dev = ngx_array_push(cmcf->dev_tokens);
        if (dev == NULL) {
            return NGX_CONF_ERROR;
        }

        dev->server = ngx_http_conf_get_module_srv_conf(cf,
                                                        ngx_http_core_module);
        dev->file = ccf->mode_file;
        dev->line = ccf->mode_line;
        break;
    }

    if (ngx_http_chat_status_init_conf(cf, cmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_http_chat_status_request_names(ngx_http_chat_session_request_name);

    return NGX_CONF_OK;
}


/*
 * chat_cluster_secret file=PATH: the key that signs the nodes' notices
 * (HMAC-SHA256); the file's bytes, without a trailing newline.
 */

/*
 * chat_limits group_members=N joins_per_hour=N contacts=N blocks=N: the
 * limits the SQL functions enforce (chat.limit_of), set on every pool
 * connection; what is not named keeps the database's setting or default.
 */

static char *
ngx_http_chat_limits(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    u_char      *p, *last;
    ngx_int_t    n;
    ngx_str_t   *value, name;
    ngx_uint_t   i, k, seen;

    static ngx_str_t  names[] = {
        ngx_string("group_members"),
        ngx_string("joins_per_hour"),
        ngx_string("contacts"),
        ngx_string("blocks")
    };

    static const char  *settings[] = {
        "max_group_members", "max_group_joins_per_hour", "max_contacts",
        "max_blocks"
    };

    if (cmcf->limits.data != NULL) {
        return "is duplicate";
    }

    p = ngx_pnalloc(cf->pool, NGX_HTTP_CHAT_PG_SETTINGS_MAX);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    cmcf->limits.data = p;
    last = p + NGX_HTTP_CHAT_PG_SETTINGS_MAX;

    value = cf->args->elts;
    seen = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        name.data = value[i].data;
        name.len = 0;

        while (name.len < value[i].len && value[i].data[name.len] != '=') {
            name.len++;
        }

        for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            if (name.len == names[k].len
                && ngx_strncmp(name.data, names[k].data, name.len) == 0)
            {
                break;
            }
        }

        if (k == sizeof(names) / sizeof(names[0])
            || name.len == value[i].len
            || (seen & (1 << k)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid chat_limits parameter \"%V\": "
                               "group_members=, joins_per_hour=, "
                               "contacts= or blocks=, each once", &value[i]);
            return NGX_CONF_ERROR;
        }

        n = ngx_atoi(value[i].data + name.len + 1,
                     value[i].len - name.len - 1);

        if (n < 1 || n > 1000000000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid chat_limits value \"%V\": a number "
                               "from 1 to 1000000000", &value[i]);
            return NGX_CONF_ERROR;
        }

        seen |= 1 << k;

        /* four of these fit NGX_HTTP_CHAT_PG_SETTINGS_MAX */
        p = ngx_slprintf(p, last, "SET chat.%s = %i; ", settings[k], n);
    }

    cmcf->limits.len = p - cmcf->limits.data;

    return NGX_CONF_OK;
}


/*
 * A file=PATH parameter read whole into pool (NUL-terminated), at
 * configuration time in the master: blocking is fine here.  what names
 * the file in errors ("key", "secret").
 */

static char *
ngx_http_chat_conf_read_file(ngx_conf_t *cf, ngx_str_t *param,
    ngx_pool_t *pool, off_t max, const char *what, ngx_str_t *path,
    ngx_str_t *out)
{
    u_char           *buf;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

    if (param->len <= 5 || ngx_strncmp(param->data, "file=", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": expected file=PATH",
                           param);
        return NGX_CONF_ERROR;
    }

    path->data = param->data + 5;
    path->len = param->len - 5;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > max)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s file \"%V\" is unreadable or over %O bytes",
                           what, path, max);
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    buf = ngx_pnalloc(pool, (size_t) ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, buf, (size_t) ngx_file_size(&fi));

    (void) ngx_close_file(fd);

    if (n != (ssize_t) ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read %s file \"%V\"", what, path);
        return NGX_CONF_ERROR;
    }

    buf[n] = '\0';

    out->data = buf;
    out->len = (size_t) n;

    return NGX_CONF_OK;
}


static char *
ngx_http_chat_cluster_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    u_char     *buf;
    ssize_t     n;
    ngx_str_t  *value, path, file;

    if (cmcf->cluster_secret.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_chat_conf_read_file(cf, &value[1], cf->pool, 4096,
                                     "secret", &path, &file)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    buf = file.data;
    n = (ssize_t) file.len;

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        n--;
    }

    /* every node has the same file: a short one could be guessed */

    if (n < 32) {
        ngx_explicit_memzero(file.data, file.len);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "secret file \"%V\" must hold at least 32 bytes",
                           &path);
        return NGX_CONF_ERROR;
    }

    cmcf->cluster_secret.data = buf;
    cmcf->cluster_secret.len = (size_t) n;

    return NGX_CONF_OK;
}


static char *
ngx_http_chat_jwt_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *ccf = conf;

    u_char                   *buf;
    ssize_t                   n;
    ngx_str_t                *value, path, file;
    const char               *err;
    ngx_pool_cleanup_t       *cln;
    ngx_http_chat_jwt_alg_e   alg;
    ngx_http_chat_jwt_key_t  *key;

    if (ccf->jwt_key != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    alg = ngx_http_chat_jwt_alg((char *) value[1].data, value[1].len);

    if (alg == NGX_HTTP_CHAT_JWT_NONE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unsupported JWT algorithm \"%V\": use hs256, "
                           "hs384, hs512, rs256 or es256", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_chat_conf_read_file(cf, &value[2], cf->temp_pool,
                                     64 * 1024, "key", &path, &file)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    buf = file.data;
    n = (ssize_t) file.len;

    key = ngx_pcalloc(cf->pool, sizeof(ngx_http_chat_jwt_key_t));
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_chat_jwt_key_cleanup;
    cln->data = key;

    if (ngx_http_chat_jwt_key_load(key, alg, buf, (size_t) n, &err) != 0) {
        ngx_explicit_memzero(buf, (size_t) n);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid key in \"%V\": %s", &path, err);
        return NGX_CONF_ERROR;
    }

    ngx_explicit_memzero(buf, (size_t) n);

    ccf->jwt_key = key;

    return NGX_CONF_OK;
}


static void
ngx_http_chat_jwt_key_cleanup(void *data)
{
    ngx_http_chat_jwt_key_t  *key = data;

    ngx_http_chat_jwt_key_free(key);
}


static char *
ngx_http_chat_identity(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *ccf = conf;

    ngx_str_t                         *value, name;
    ngx_http_compile_complex_value_t   ccv;

    if (ccf->identity != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* "user" for "$user" would make every request the same user */

    if (ngx_http_script_variables_count(&value[1]) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_identity\" value \"%V\" has no "
                           "variable in it, so every request would be the "
                           "same user: write the variable that holds the "
                           "user id, such as \"$remote_user\" or "
                           "\"$%V\"", &value[1], &value[1]);
        return NGX_CONF_ERROR;
    }

    ccf->identity = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (ccf->identity == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = ccf->identity;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ccf->identity_name = NULL;

    if (cf->args->nelts == 2) {
        return NGX_CONF_OK;
    }

    if (value[2].len <= 5 || ngx_strncmp(value[2].data, "name=", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": expected name=VALUE",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    name.data = value[2].data + 5;
    name.len = value[2].len - 5;

    if (ngx_http_script_variables_count(&name) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_identity\" name \"%V\" has no variable "
                           "in it, so every user would have that name: "
                           "write the variable that holds the display name, "
                           "such as \"name=$%V\"", &name, &name);
        return NGX_CONF_ERROR;
    }

    ccf->identity_name = ngx_palloc(cf->pool,
                                    sizeof(ngx_http_complex_value_t));
    if (ccf->identity_name == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &name;
    ccv.complex_value = ccf->identity_name;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * chat_service_claim NAME VALUE: a token whose claim NAME is the string
 * VALUE, or an array holding it, is a service's, which may act for users
 * and post system messages over the REST routes.
 */

static char *
ngx_http_chat_service_claim(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *ccf = conf;

    ngx_str_t  *value;

    if (ccf->service_claim.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[2].len == 0) {
        return "needs a claim name and a value";
    }

    /* the values are NUL-terminated in the configuration's buffers */
    ccf->service_claim = value[1];
    ccf->service_value = value[2];

    return NGX_CONF_OK;
}


/*
 * chat_upload_threads NAME: the thread pool (nginx's thread_pool, or
 * "default") the upload store's filesystem calls run in: a stalled
 * network filesystem stalls a thread, not the worker and its WebSockets.
 * nginx checks at the end of the configuration that the pool exists.
 */

static char *
ngx_http_chat_upload_threads(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
#if (NGX_THREADS)
    ngx_http_chat_main_conf_t *cmcf = conf;

    ngx_str_t  *value;

    if (cmcf->upload_threads) {
        return "is duplicate";
    }

    value = cf->args->elts;

    cmcf->upload_threads = ngx_thread_pool_add(cf, &value[1]);
    if (cmcf->upload_threads == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"chat_upload_threads\" needs nginx built "
                       "--with-threads: this one has no thread support");
    return NGX_CONF_ERROR;

#endif
}


/*
 * chat_upload_path PATH: the upload store; its tmp/ (made by nginx at
 * start, as every temp path, and owned by the workers' user) holds the
 * bodies being read.  PATH must be a directory now; whether the workers
 * may write it is checked once the user is known (init_module).
 */

static char *
ngx_http_chat_upload_path(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *ccf = conf;

    u_char                     *p;
    ngx_str_t                  *value, *slot;
    ngx_path_t                 *path;
    ngx_file_info_t             fi;
    ngx_http_chat_main_conf_t  *cmcf;

    if (ccf->upload_temp != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    ccf->upload_path = value[1];

    if (ngx_conf_full_name(cf->cycle, &ccf->upload_path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (ccf->upload_path.len > 1
           && ccf->upload_path.data[ccf->upload_path.len - 1] == '/')
    {
        ccf->upload_path.len--;
    }

    /* NUL-terminated, and room for "/tmp" */
    p = ngx_pnalloc(cf->pool, ccf->upload_path.len + sizeof("/tmp"));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, ccf->upload_path.data, ccf->upload_path.len);
    p[ccf->upload_path.len] = '\0';
    ccf->upload_path.data = p;

    if (ngx_file_info(p, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "chat_upload_path \"%s\" cannot be used", p);
        return NGX_CONF_ERROR;
    }

    if (!ngx_is_dir(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_upload_path \"%s\" is not a directory", p);
        return NGX_CONF_ERROR;
    }

    path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    path->name.len = ccf->upload_path.len + sizeof("/tmp") - 1;
    path->name.data = ngx_pnalloc(cf->pool, path->name.len + 1);
    if (path->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(path->name.data, "%V/tmp%Z", &ccf->upload_path);

    path->conf_file = cf->conf_file->file.name.data;
    path->line = cf->conf_file->line;

    ccf->upload_temp = path;

    if (ngx_add_path(cf, &ccf->upload_temp) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);

    if (cmcf->upload_paths == NULL) {
        cmcf->upload_paths = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (cmcf->upload_paths == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    slot = ngx_array_push(cmcf->upload_paths);
    if (slot == NULL) {
        return NGX_CONF_ERROR;
    }

    *slot = ccf->upload_path;

    return NGX_CONF_OK;
}


/*
 * A chat_api location: nginx's own client_max_body_size check is off
 * there: it runs before the module and answers with its HTML page, while
 * the module holds a JSON body to chat_max_message_size (api.c: the
 * Content-Length before reading, then its body filter, which still reads
 * no more than client_max_body_size of a chunked one) and an upload to
 * chat_upload_max_size (upload.c: likewise), each with the protocol's
 * JSON 413.  With uploads, nginx reads their bodies into the store's tmp/
 * (a link into the store is then a rename on one filesystem).
 */

static void
ngx_http_chat_api_location(ngx_conf_t *cf, ngx_http_chat_loc_conf_t *conf)
{
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_chat_main_conf_t  *cmcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /*
     * "client_max_body_size 0" reads a JSON body without end, its bytes
     * dropped: none is kept past chat_max_message_size (R16G-2)
     */
    conf->body_max_size = clcf->client_max_body_size
                          ? clcf->client_max_body_size
                          : (off_t) conf->max_message_size;
    clcf->client_max_body_size = 0;

    if (conf->upload_temp == NULL) {
        return;
    }

    clcf->client_body_temp_path = conf->upload_temp;

    /* tmp/'s sweep spares what is younger than the longest deadline */
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);

    if (cmcf->upload_timeout < conf->upload_timeout) {
        cmcf->upload_timeout = conf->upload_timeout;
    }
}


/*
 * chat_files: the location downloads are redirected to (files.c), with
 * alias set to chat_upload_path by the operator; internal, as a client
 * that asked for it directly would bypass the check.  One URI for the
 * whole http block: every server that has chat_api has it at that URI.
 */

static char *
ngx_http_chat_files(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *ccf = conf;

    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_chat_main_conf_t  *cmcf;

    if (ccf->files != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);

    if (clcf->named || clcf->exact_match || clcf->regex != NULL
        || clcf->name.len == 0 || clcf->name.data[clcf->name.len - 1] != '/')
    {
        return "must be in a prefix location ending in \"/\"";
    }

    if (cmcf->files_uri.len
        && (cmcf->files_uri.len != clcf->name.len
            || ngx_strncmp(cmcf->files_uri.data, clcf->name.data,
                           clcf->name.len) != 0))
    {
        return "is in another location already: one URI for all servers";
    }

    ccf->files = 1;
    clcf->internal = 1;
    cmcf->files_uri = clcf->name;

    return NGX_CONF_OK;
}


/*
 * The chat_files location serves the store: its alias must be a
 * chat_upload_path (they are all known by the time locations merge), or
 * every download would be a 404 of the static module.
 */

static ngx_int_t
ngx_http_chat_files_alias(ngx_conf_t *cf, ngx_http_core_loc_conf_t *clcf)
{
    size_t                      len;
    ngx_str_t                  *path;
    ngx_uint_t                  i;
    ngx_http_chat_main_conf_t  *cmcf;

    if (!clcf->alias || clcf->root_lengths != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_files\" needs \"alias\" set to the "
                           "chat_upload_path directory");
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);

    if (cmcf->upload_paths == NULL) {
        /* no uploads: downloads answer 503 */
        return NGX_OK;
    }

    len = clcf->root.len;

    while (len > 1 && clcf->root.data[len - 1] == '/') {
        len--;
    }

    path = cmcf->upload_paths->elts;

    for (i = 0; i < cmcf->upload_paths->nelts; i++) {
        if (path[i].len == len
            && ngx_strncmp(path[i].data, clcf->root.data, len) == 0)
        {
            return NGX_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"chat_files\" alias \"%V\" is no chat_upload_path",
                       &clcf->root);

    return NGX_ERROR;
}


/* chat_allowed_origins (WebSocket) and chat_cors_origins (REST) */

static char *
ngx_http_chat_allowed_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    u_char        *p, *host;
    ngx_str_t     *value, *origin;
    ngx_uint_t     i;
    ngx_array_t  **list;

    list = (ngx_array_t **) ((char *) conf + cmd->offset);

    if (*list != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *list = ngx_array_create(cf->pool, cf->args->nelts, sizeof(ngx_str_t));
    if (*list == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        /* "*", or scheme://host[:port] exactly as browsers send it */

        if (!(value[i].len == 1 && value[i].data[0] == '*')) {
            p = ngx_strlcasestrn(value[i].data, value[i].data + value[i].len,
                                 (u_char *) "://", 3 - 1);
            host = (p == NULL) ? NULL : p + 3;

            if (host == NULL || host == value[i].data + value[i].len
                || ngx_strlchr(host, value[i].data + value[i].len, '/')
                   != NULL)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid origin \"%V\": expected "
                                   "\"*\" or scheme://host[:port]",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        origin = ngx_array_push(*list);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }

        *origin = value[i];
        ngx_strlow(origin->data, origin->data, origin->len);
    }

    return NGX_CONF_OK;
}


/*
 * chat_attachment_hosts host ...: the hosts whose https:// links a send
 * may attach (exact names, no port); without it, uploads only.  One list
 * for the whole http block: a batch of sends, whatever their locations,
 * hands it to SQL as its own parameter ({a,b}, a text[] literal: the
 * names are letters, digits, dots and hyphens, so nothing needs quoting).
 */

static char *
ngx_http_chat_attachment_hosts(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    u_char      *p;
    size_t       len;
    ngx_str_t   *value;
    ngx_uint_t   i, k;
    const char **host;

    if (cmcf->attachment_hosts != NULL) {
        return "is duplicate";
    }

    cmcf->attachment_hosts = ngx_array_create(cf->pool, cf->args->nelts,
                                              sizeof(char *));
    if (cmcf->attachment_hosts == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    len = sizeof("{}");

    for (i = 1; i < cf->args->nelts; i++) {

        for (k = 0; k < value[i].len; k++) {
            if (!((value[i].data[k] >= 'a' && value[i].data[k] <= 'z')
                  || (value[i].data[k] >= 'A' && value[i].data[k] <= 'Z')
                  || (value[i].data[k] >= '0' && value[i].data[k] <= '9')
                  || value[i].data[k] == '.' || value[i].data[k] == '-'))
            {
                break;
            }
        }

        if (value[i].len == 0 || value[i].len > 253 || k < value[i].len
            || value[i].data[0] == '.' || value[i].data[0] == '-')
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid host \"%V\": expected a host name "
                               "(letters, digits, dots, hyphens; no scheme, "
                               "port or path)", &value[i]);
            return NGX_CONF_ERROR;
        }

        /* the arguments are NUL-terminated */
        ngx_strlow(value[i].data, value[i].data, value[i].len);

        host = ngx_array_push(cmcf->attachment_hosts);
        if (host == NULL) {
            return NGX_CONF_ERROR;
        }

        *host = (const char *) value[i].data;
        len += value[i].len + 1;
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    cmcf->attachment_hosts_sql.data = p;
    *p++ = '{';

    for (i = 1; i < cf->args->nelts; i++) {
        p = ngx_cpymem(p, value[i].data, value[i].len);
        *p++ = (i + 1 < cf->args->nelts) ? ',' : '}';
    }

    *p = '\0';
    cmcf->attachment_hosts_sql.len = p - cmcf->attachment_hosts_sql.data;

    return NGX_CONF_OK;
}


static char *
ngx_http_chat_postgres(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    if (cmcf->pg != NULL) {
        return "is duplicate";
    }

    cmcf->pg = ngx_pcalloc(cf->pool, sizeof(ngx_http_chat_pg_conf_t));
    if (cmcf->pg == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_chat_pg_conf(cf, cmcf->pg, cf->args->elts,
                                 cf->args->nelts);
}


static char *
ngx_http_chat_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    return ngx_http_chat_zone_conf(cf,
                                   (ngx_http_chat_zone_t **) &cmcf->zone,
                                   cf->args->elts, cf->args->nelts);
}


/*
 * Made here, not when the http block is parsed: worker_processes may come
 * after it, and "auto" is known once the core module's conf is complete.
 * nginx -t runs this too.
 */

static ngx_int_t
ngx_http_chat_init_module(ngx_cycle_t *cycle)
{
    ngx_core_conf_t            *ccf;
    ngx_http_chat_main_conf_t  *cmcf;

    ngx_str_t                  *path;
    ngx_uint_t                  i;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_chat_module);

    if (cmcf != NULL && cmcf->upload_paths != NULL) {
        path = cmcf->upload_paths->elts;

        for (i = 0; i < cmcf->upload_paths->nelts; i++) {
            if (ngx_http_chat_upload_writable(cycle, &path[i]) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    if (cmcf == NULL || cmcf->endpoints == 0 || cmcf->zone != NULL) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf->master && ccf->worker_processes > 1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "chat: %i worker processes without \"chat_zone\": "
                      "a message, typing or presence reaches only the "
                      "WebSockets of the worker that made it; add "
                      "\"chat_zone chat 64m;\" to the http block",
                      ccf->worker_processes);
    }

    return NGX_OK;
}


/*
 * The workers make directories and links in chat_upload_path as the
 * "user" of nginx.conf: a master running as root checks the directory's
 * mode for that user (its primary group only), any other checks itself.
 */

static ngx_int_t
ngx_http_chat_upload_writable(ngx_cycle_t *cycle, ngx_str_t *path)
{
    ngx_uint_t        ok;
    ngx_core_conf_t  *ccf;
    ngx_file_info_t   fi;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ngx_file_info(path->data, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "chat_upload_path \"%s\" cannot be used", path->data);
        return NGX_ERROR;
    }

    if (geteuid() != 0 || ccf->user == (ngx_uid_t) NGX_CONF_UNSET_UINT
        || ccf->user == 0)
    {
        ok = (access((char *) path->data, W_OK|X_OK) == 0);

    } else if (fi.st_uid == ccf->user) {
        ok = (fi.st_mode & (S_IWUSR|S_IXUSR)) == (S_IWUSR|S_IXUSR);

    } else if (fi.st_gid == ccf->group) {
        ok = (fi.st_mode & (S_IWGRP|S_IXGRP)) == (S_IWGRP|S_IXGRP);

    } else {
        ok = (fi.st_mode & (S_IWOTH|S_IXOTH)) == (S_IWOTH|S_IXOTH);
    }

    if (!ok) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat_upload_path \"%s\" is not writable by the "
                      "worker processes' user: chown it to that user",
                      path->data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  n;
    ngx_http_chat_pg_stmt_t    *stmts;
    ngx_http_chat_main_conf_t  *cmcf;

    /* the cache manager and loader run this too: they serve no clients */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_chat_module);

    if (cmcf == NULL || cmcf->stats_zone == NULL) {
        /* no chat location: nothing to do in this worker */
        return NGX_OK;
    }

    if (ngx_http_chat_ws_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_chat_fanout_init_process(ngx_http_chat_session_recheck);
    ngx_http_chat_order_init_process(cycle);
    ngx_http_chat_store_init_process(cycle, cmcf);
    ngx_http_chat_typing_init_process(cycle);
    ngx_http_chat_api_init_process();
    ngx_http_chat_files_init_process(cycle, cmcf);
    ngx_http_chat_upload_init_process(cycle, cmcf);

    /*
     * Each level is given what it calls up through (the bus's deliver and
     * publish, storage's announcements) before anything can arrive.
     */

    if (cmcf->zone != NULL) {
        if (ngx_http_chat_zone_init_process(cycle, cmcf->zone,
                                            ngx_http_chat_bus_sweep_locked)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_http_chat_zone_slot != NGX_HTTP_CHAT_NO_SLOT) {
            ngx_http_chat_zone_sh->sh->slots[ngx_http_chat_zone_slot]
                .upload_timeout = (time_t) (cmcf->upload_timeout + 999) / 1000;

            ngx_http_chat_presence_init_process(cycle,
                                                ngx_http_chat_store_announce);

            if (ngx_http_chat_ipc_init_process(cycle,
                                               ngx_http_chat_bus_receive)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (cmcf->pg != NULL) {

        /*
         * The pool's clients register the channels they listen to first:
         * its first connection LISTENs as it is set up (chat_outbox, then
         * chat_cluster), and tells them when it listens, in that order.
         */

        if (ngx_http_chat_outbox_init_process(cycle,
                                              ngx_http_chat_bus_deliver)
            != NGX_OK
            || ngx_http_chat_cluster_init_process(cycle, cmcf,
                                                  ngx_http_chat_bus_publish,
                                                  ngx_http_chat_bus_route,
                                                  ngx_http_chat_bus_deliver)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        stmts = ngx_http_chat_sql_statements(&n);

        return ngx_http_chat_pg_init_process(cycle, cmcf->pg, stmts, n);
    }

    return NGX_OK;
}


static void
ngx_http_chat_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_chat_outbox_exit_process();
    ngx_http_chat_cluster_exit_process();
    ngx_http_chat_files_exit_process();
    ngx_http_chat_upload_exit_process();
    ngx_http_chat_pg_exit_process();
    ngx_http_chat_ipc_exit_process();
    ngx_http_chat_zone_exit_process();
}
