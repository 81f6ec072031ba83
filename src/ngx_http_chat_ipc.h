
/*
 * ngx_http_chat_ipc.c: delivery to the other workers of this node.  Included
 * through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_IPC_H_INCLUDED_
#define _NGX_HTTP_CHAT_IPC_H_INCLUDED_


#include <ngx_http_chat_zone.h>


/* the bus's: an event another worker queued, for this one's clients */
typedef void (*ngx_http_chat_ipc_deliver_pt)(ngx_http_chat_ev_t *ev,
    ngx_log_t *log);


ngx_int_t ngx_http_chat_ipc_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_ipc_deliver_pt deliver);
void ngx_http_chat_ipc_post(uint64_t mask, ngx_http_chat_ev_t *ev,
    ngx_log_t *log);
void ngx_http_chat_ipc_exit_process(void);
void ngx_http_chat_ipc_free_queue_locked(ngx_http_chat_slot_t *slot);


#endif /* _NGX_HTTP_CHAT_IPC_H_INCLUDED_ */
