
/*
 * ngx_http_chat_files.c: GET files/{id}, an upload served by nginx's
 * static module through the chat_files location, and the sweep of the
 * uploads and files nothing uses any more.  Included through
 * ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_FILES_H_INCLUDED_
#define _NGX_HTTP_CHAT_FILES_H_INCLUDED_


/* postconfiguration: the guard of redirected downloads */
ngx_int_t ngx_http_chat_files_init(ngx_conf_t *cf);

/* the route, the caller authenticated (user: whom storage asks for) */
ngx_int_t ngx_http_chat_files_handler(ngx_http_request_t *r, ngx_str_t *user,
    int64_t id);

/* one worker of a node (the first) sweeps */
void ngx_http_chat_files_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
void ngx_http_chat_files_exit_process(void);


#endif /* _NGX_HTTP_CHAT_FILES_H_INCLUDED_ */
