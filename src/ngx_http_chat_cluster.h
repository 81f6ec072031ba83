
/*
 * ngx_http_chat_cluster.c: several nodes over one PostgreSQL.  Included
 * through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_CLUSTER_H_INCLUDED_
#define _NGX_HTTP_CHAT_CLUSTER_H_INCLUDED_


ngx_int_t ngx_http_chat_cluster_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf, ngx_http_chat_event_handler_pt publish,
    ngx_http_chat_event_handler_pt route, ngx_http_chat_event_handler_pt here);
void ngx_http_chat_cluster_exit_process(void);
ngx_uint_t ngx_http_chat_cluster_enabled(void);
ngx_str_t *ngx_http_chat_cluster_node(void);
void ngx_http_chat_cluster_publish(json_t *event, json_t *to);
void ngx_http_chat_cluster_presence(u_char *user, size_t len,
    ngx_uint_t online, time_t last_seen);


#endif /* _NGX_HTTP_CHAT_CLUSTER_H_INCLUDED_ */
