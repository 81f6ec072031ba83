
/*
 * ngx_http_chat_presence.c: who is online, in the zone.  Included through
 * ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_PRESENCE_H_INCLUDED_
#define _NGX_HTTP_CHAT_PRESENCE_H_INCLUDED_


#include <ngx_http_chat_zone.h>


ngx_int_t ngx_http_chat_presence_add(ngx_http_chat_loc_conf_t *ccf,
    ngx_http_chat_identity_t *id);
void ngx_http_chat_presence_undo(ngx_http_chat_identity_t *id);
void ngx_http_chat_presence_remove(ngx_http_chat_conn_t *wc);
json_t *ngx_http_chat_presence_query(json_t *ids);
json_t *ngx_http_chat_presence_answer(json_t *audience);
ngx_uint_t ngx_http_chat_presence_count(json_t *ids);
void ngx_http_chat_presence_remote(u_char *user, size_t len, ngx_str_t *node,
    ngx_uint_t online, time_t last_seen);
void ngx_http_chat_presence_remote_reset(json_t *online, json_t *live);
void ngx_http_chat_presence_remote_gone(ngx_str_t *node);
ngx_uint_t ngx_http_chat_presence_held(u_char *user, size_t len,
    ngx_str_t *node);
json_t *ngx_http_chat_presence_local_users(void);

/* presence, under the zone's lock */
ngx_http_chat_presence_t *ngx_http_chat_presence_entry_locked(u_char *user,
    size_t len);
ngx_http_chat_presence_t *ngx_http_chat_presence_lookup_locked(u_char *user,
    size_t len);
void ngx_http_chat_presence_sweep_locked(ngx_uint_t slot);
/* p's upload buckets drain in sec seconds: kept until then */
void ngx_http_chat_presence_hold_locked(ngx_http_chat_presence_t *p,
    time_t sec);

/* an upload in flight of user in this worker (NGX_ABORT: no zone) */
ngx_int_t ngx_http_chat_presence_upload_take(u_char *user, size_t len,
    ngx_uint_t max, void **hold);
void ngx_http_chat_presence_upload_release(void *hold);
/* a user came online on this node, or went offline here after the grace
 * period (last_seen); user: borrowed */
typedef void (*ngx_http_chat_presence_announce_pt)(u_char *user, size_t len,
    ngx_uint_t online, time_t last_seen);

void ngx_http_chat_presence_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_presence_announce_pt announce);


#endif /* _NGX_HTTP_CHAT_PRESENCE_H_INCLUDED_ */
