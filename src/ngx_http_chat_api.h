
/*
 * ngx_http_chat_api.c: the REST routes of chat_api.  Included through
 * ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_API_H_INCLUDED_
#define _NGX_HTTP_CHAT_API_H_INCLUDED_


ngx_int_t ngx_http_chat_api_init(ngx_conf_t *cf);
void ngx_http_chat_api_init_process(void);
ngx_int_t ngx_http_chat_api_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_CHAT_API_H_INCLUDED_ */
