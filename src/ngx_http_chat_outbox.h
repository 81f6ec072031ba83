
/*
 * ngx_http_chat_outbox.c: the host application's SQL changes
 * (sql/api/70_host.sql).  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_OUTBOX_H_INCLUDED_
#define _NGX_HTTP_CHAT_OUTBOX_H_INCLUDED_


/* the host application's SQL changes (sql/api/70_host.sql) */
ngx_int_t ngx_http_chat_outbox_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_event_handler_pt deliver);
void ngx_http_chat_outbox_exit_process(void);


#endif /* _NGX_HTTP_CHAT_OUTBOX_H_INCLUDED_ */
