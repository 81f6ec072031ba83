
/*
 * ngx_http_chat_rate.c: leaky buckets per user.  Included through
 * ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_RATE_H_INCLUDED_
#define _NGX_HTTP_CHAT_RATE_H_INCLUDED_


char *ngx_http_chat_rate_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_chat_rate_quota_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_msec_t ngx_http_chat_rate_check_user(ngx_http_chat_loc_conf_t *conf,
    ngx_str_t *id, ngx_uint_t kind);
/* n: the cost (bytes for the upload quota); peek: take nothing */
ngx_msec_t ngx_http_chat_rate_spend(ngx_http_chat_loc_conf_t *conf,
    ngx_str_t *id, ngx_uint_t kind, ngx_uint_t n, ngx_uint_t peek);
/* buckets: the connection's own, for the rates kept without a zone */
ngx_msec_t ngx_http_chat_rate_check(ngx_http_chat_conn_t *wc,
    ngx_http_chat_bucket_t *buckets, ngx_uint_t kind);


#endif /* _NGX_HTTP_CHAT_RATE_H_INCLUDED_ */
