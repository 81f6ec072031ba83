
/*
 * ngx_http_chat_fanout.c: delivery to this worker's connections.  Included
 * through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_
#define _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_


/* the most users a connection watches (presence.subscribe's bound) */
#define NGX_HTTP_CHAT_WATCH_MAX  200


/*
 * What an event is, decided once where it enters the bus (from its
 * "type"): which may be lost, which are numbered changes, which are never
 * sent.
 */
#define NGX_HTTP_CHAT_EV_OTHER        0   /* sent, in no particular order */
#define NGX_HTTP_CHAT_EV_TYPING       1   /* may be lost */
#define NGX_HTTP_CHAT_EV_PRESENCE     2   /* may be lost; to null: watchers */
#define NGX_HTTP_CHAT_EV_UNWATCH      3   /* presence.unwatch: never sent */
#define NGX_HTTP_CHAT_EV_RECHECK      4   /* presence.recheck: never sent */
#define NGX_HTTP_CHAT_EV_CREATED      5   /* conversation.created */
#define NGX_HTTP_CHAT_EV_MEMBER       6   /* member.*, but member.left */
#define NGX_HTTP_CHAT_EV_LEFT         7   /* member.left */
#define NGX_HTTP_CHAT_EV_MESSAGE_NEW  8   /* message.created: by seq */
#define NGX_HTTP_CHAT_EV_DELETED      9   /* message.deleted: updated_seq */
#define NGX_HTTP_CHAT_EV_MESSAGE      10  /* message.*: by updated_seq */

#define ngx_http_chat_fanout_ephemeral(kind)                                 \
    ((kind) == NGX_HTTP_CHAT_EV_TYPING || (kind) == NGX_HTTP_CHAT_EV_PRESENCE)

#define ngx_http_chat_fanout_numbered(kind)                                  \
    ((kind) >= NGX_HTTP_CHAT_EV_MESSAGE_NEW)

#define ngx_http_chat_fanout_sent(kind)                                      \
    ((kind) != NGX_HTTP_CHAT_EV_UNWATCH && (kind) != NGX_HTTP_CHAT_EV_RECHECK)


/*
 * An event on its way to this worker's connections: what ordering and
 * fan-out read of it, and how it is sent.  An event that crossed from
 * another worker has no JSON, only its frame (the bytes every client
 * gets); the others have their JSON, and a frame if one was made already.
 * Everything is borrowed.
 */
typedef struct {
    ngx_uint_t                    kind;      /* NGX_HTTP_CHAT_EV_* */
    int64_t                       cid;       /* conversation id, or 0 */
    int64_t                       n;         /* a change's number; created:
                                                the conversation's last_seq */
    ngx_str_t                     user;      /* user_id, or empty */
    ngx_str_t                     peer;      /* presence.unwatch's peer */
    json_t                       *to;        /* ids, or null: watchers */
    json_t                       *event;     /* NULL: frame only */
    ngx_http_chat_buf_t          *frame;     /* NULL: made from event */
} ngx_http_chat_ev_t;


/* the session checks a connection's watch set again (a member left) */
typedef void (*ngx_http_chat_fanout_recheck_pt)(ngx_http_chat_conn_t *wc);


void ngx_http_chat_fanout_init_process(
    ngx_http_chat_fanout_recheck_pt recheck);
ngx_int_t ngx_http_chat_fanout_add(ngx_http_chat_conn_t *wc);
void ngx_http_chat_fanout_remove(ngx_http_chat_conn_t *wc);
void ngx_http_chat_fanout_event(ngx_http_chat_ev_t *ev, json_t *event,
    json_t *to);
ngx_http_chat_buf_t *ngx_http_chat_fanout_frame(json_t *event,
    ngx_log_t *log);
void ngx_http_chat_fanout_deliver(ngx_http_chat_ev_t *ev, ngx_log_t *log);
void ngx_http_chat_fanout_close_all(unsigned code, const char *reason);
ngx_uint_t ngx_http_chat_fanout_online(u_char *user, size_t len);
ngx_int_t ngx_http_chat_fanout_watch(ngx_http_chat_conn_t *wc, json_t *ids);
void ngx_http_chat_fanout_unwatch(ngx_http_chat_conn_t *wc, u_char *user,
    size_t len);
ngx_uint_t ngx_http_chat_fanout_watches(ngx_http_chat_conn_t *wc,
    u_char *user, size_t len);
json_t *ngx_http_chat_fanout_watched(ngx_http_chat_conn_t *wc);


#endif /* _NGX_HTTP_CHAT_FANOUT_H_INCLUDED_ */
