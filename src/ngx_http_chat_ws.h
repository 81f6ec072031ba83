
/*
 * ngx_http_chat_ws.c: a WebSocket connection after the upgrade: frames in,
 * the out queue, timers, close.  Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_WS_H_INCLUDED_
#define _NGX_HTTP_CHAT_WS_H_INCLUDED_


/* a payload shared by every out queue entry that sends it */
typedef struct {
    ngx_uint_t                    refs;
    size_t                        len;
    size_t                        size;
    u_char                        data[1];
} ngx_http_chat_buf_t;


typedef struct ngx_http_chat_out_s  ngx_http_chat_out_t;

struct ngx_http_chat_out_s {
    ngx_http_chat_out_t          *next;
    ngx_http_chat_buf_t          *buf;       /* NULL for a header alone */
    size_t                        sent;      /* of header, then payload */
    u_char                        hlen;
    u_char                        header[NGX_HTTP_CHAT_FRAME_HEADER_MAX];
};


typedef struct ngx_http_chat_conn_s  ngx_http_chat_conn_t;


/*
 * What runs on the connection, set before the upgrade (a chat session or
 * the echo endpoint): the transport calls it, and never names it.
 */

typedef struct {
    char                         *action;    /* for the error log */

    /* the 101 is queued: say hello; NGX_ERROR closes */
    ngx_int_t                   (*start)(ngx_http_chat_conn_t *wc);

    /*
     * A whole data message, its opcode in wc->parser.message_opcode; msg
     * (NULL when empty) is the handler's to release.  NGX_ERROR closes
     * with 1011, NGX_ABORT drops the connection at once.
     */
    ngx_int_t                   (*message)(ngx_http_chat_conn_t *wc,
                                           ngx_http_chat_buf_t *msg);

    /* the out queue fell below chat_send_buffer; may be NULL */
    void                        (*drained)(ngx_http_chat_conn_t *wc);

    /* the connection goes away: undo what it is part of, at once */
    void                        (*closed)(ngx_http_chat_conn_t *wc);

    /* a read that fills the out queue stops there, the rest kept */
    unsigned                      paced:1;
} ngx_http_chat_ws_handler_t;


struct ngx_http_chat_conn_s {
    ngx_connection_t             *connection;
    ngx_http_chat_loc_conf_t     *conf;
    ngx_http_chat_ws_handler_t   *handler;
    void                         *data;      /* the handler's, as c->data */

    ngx_http_chat_frame_parser_t  parser;
    ngx_http_chat_buf_t          *msg;       /* data message being read */

    ngx_http_chat_out_t          *out;
    ngx_http_chat_out_t         **out_last;
    size_t                        out_bytes;

    ngx_http_chat_buf_t          *upgrade;   /* the 101 before the start */
    u_char                       *early;     /* bytes sent before the 101 */
    size_t                        early_len;
    u_char                       *saved;     /* read, not parsed yet */
    size_t                        saved_len;

    ngx_http_chat_identity_t      id;

    ngx_msec_t                    last_data;  /* last data message in */

    /*
     * Links owned by the levels that deliver to the connection and store
     * its requests; nops also holds reading back (NGX_HTTP_CHAT_MAX_OPS).
     */
    ngx_queue_t                   ops;        /* storage requests, FIFO */
    ngx_uint_t                    nops;
    ngx_queue_t                   fanout;     /* the user's connections */
    void                         *fanout_user;
    ngx_msec_t                    fanout_since;  /* events reach it since */
    void                         *watching;   /* whose presence it gets */
    ngx_uint_t                    revoked;    /* unwatch or left events */

    unsigned                      started:1;
    unsigned                      ping_sent:1;
    unsigned                      read_blocked:1;
    unsigned                      close_sent:1;
    unsigned                      close_received:1;
    unsigned                      discard:1;  /* input past a failure */
    unsigned                      lingering:1;
    unsigned                      finalized:1;
    unsigned                      present:1;  /* counted in presence */
};


/* the request's module context: who is asking, and the WebSocket to be */
typedef struct {
    ngx_http_chat_identity_t      id;
    ngx_http_chat_conn_t         *wc;
    void                         *upload;    /* REST: upload.c's state */
} ngx_http_chat_ctx_t;



ngx_int_t ngx_http_chat_ws_init_process(ngx_cycle_t *cycle);
void ngx_http_chat_ws_start(ngx_event_t *ev);
ngx_int_t ngx_http_chat_ws_send_buf(ngx_http_chat_conn_t *wc,
    unsigned opcode, ngx_http_chat_buf_t *buf);
void ngx_http_chat_ws_close(ngx_http_chat_conn_t *wc, unsigned code,
    const char *reason);
void ngx_http_chat_ws_rearm(ngx_http_chat_conn_t *wc);
void ngx_http_chat_ws_resume(ngx_http_chat_conn_t *wc);
ngx_http_chat_buf_t *ngx_http_chat_ws_buf_alloc(size_t size, ngx_log_t *log);
void ngx_http_chat_ws_buf_release(ngx_http_chat_buf_t *buf);


#endif /* _NGX_HTTP_CHAT_WS_H_INCLUDED_ */
