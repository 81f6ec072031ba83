
/*
 * ngx_http_chat_status.c: counters, chat_status and the metrics names.
 * Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_STATUS_H_INCLUDED_
#define _NGX_HTTP_CHAT_STATUS_H_INCLUDED_


/* the name of counter i, NULL past the last */
typedef ngx_str_t *(*ngx_http_chat_status_name_pt)(ngx_uint_t i);

void ngx_http_chat_status_request_names(ngx_http_chat_status_name_pt name);
ngx_int_t ngx_http_chat_status_handler(ngx_http_request_t *r);
void ngx_http_chat_status_event(json_t *event);
ngx_int_t ngx_http_chat_status_init_conf(ngx_conf_t *cf,
    ngx_http_chat_main_conf_t *cmcf);


#endif /* _NGX_HTTP_CHAT_STATUS_H_INCLUDED_ */
