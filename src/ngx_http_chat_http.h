
/*
 * ngx_http_chat_http.c: JSON answers to plain HTTP requests, times, request
 * headers.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_HTTP_H_INCLUDED_
#define _NGX_HTTP_CHAT_HTTP_H_INCLUDED_


ngx_int_t ngx_http_chat_http_send_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *body);
ngx_int_t ngx_http_chat_http_drop_body(ngx_http_request_t *r);
ngx_int_t ngx_http_chat_http_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
ngx_int_t ngx_http_chat_http_send_retry(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    ngx_msec_t wait);
u_char *ngx_http_chat_http_time(u_char *buf, time_t sec, ngx_msec_t msec);
json_t *ngx_http_chat_http_user_json(ngx_http_chat_identity_t *id);
json_t *ngx_http_chat_http_event_json(json_t *event);
ngx_table_elt_t *ngx_http_chat_http_header(ngx_http_request_t *r,
    const char *name, ngx_uint_t *n);
ngx_int_t ngx_http_chat_http_origin_allowed(ngx_http_request_t *r,
    ngx_array_t *list, ngx_str_t *origin);
ngx_int_t ngx_http_chat_http_add_header(ngx_http_request_t *r, const char *key,
    const char *value);
#define NGX_HTTP_CHAT_TIME_LEN  (sizeof("2026-11-21T10:00:00.123Z") - 1)


#endif /* _NGX_HTTP_CHAT_HTTP_H_INCLUDED_ */
