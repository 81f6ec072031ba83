
/*
 * ngx_http_chat_bus.c: where an event goes: other nodes, other workers,
 * this worker's connections in order.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_BUS_H_INCLUDED_
#define _NGX_HTTP_CHAT_BUS_H_INCLUDED_


/* an event made on this node, for the users in to */
void ngx_http_chat_bus_publish(json_t *event, json_t *to, ngx_log_t *log);
/* another node's event, to this node's workers that hold recipients */
void ngx_http_chat_bus_route(json_t *event, json_t *to, ngx_log_t *log);
/* an event for this worker's connections, from the outbox or a node */
void ngx_http_chat_bus_deliver(json_t *event, json_t *to, ngx_log_t *log);
/* an event another worker queued: ngx_http_chat_ipc_deliver_pt */
void ngx_http_chat_bus_receive(ngx_http_chat_ev_t *ev, ngx_log_t *log);
/* a worker's slot is given up: ngx_http_chat_zone_sweep_pt */
void ngx_http_chat_bus_sweep_locked(ngx_uint_t slot);


#endif /* _NGX_HTTP_CHAT_BUS_H_INCLUDED_ */
