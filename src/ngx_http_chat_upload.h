
/*
 * ngx_http_chat_upload.c: POST uploads, the body streamed to the
 * content-addressed store.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_UPLOAD_H_INCLUDED_
#define _NGX_HTTP_CHAT_UPLOAD_H_INCLUDED_


/* postconfiguration: the request body filter */
ngx_int_t ngx_http_chat_upload_init(ngx_conf_t *cf);
/* the route, the caller authenticated (user: the owner) */
ngx_int_t ngx_http_chat_upload_handler(ngx_http_request_t *r,
    ngx_http_chat_ctx_t *ctx, ngx_str_t *user);
/* the sweep of what dead workers left in tmp/ (the first worker's) */
void ngx_http_chat_upload_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
void ngx_http_chat_upload_exit_process(void);


#endif /* _NGX_HTTP_CHAT_UPLOAD_H_INCLUDED_ */
