
/*
 * The echo endpoint (chat_websocket echo): every message goes back as it
 * came, text or binary, for the RFC 6455 conformance suites.  No session,
 * no storage, no fan-out: only the presence count the handshake took.
 */


#include <ngx_http_chat.h>


static ngx_int_t ngx_http_chat_echo_start(ngx_http_chat_conn_t *wc);
static ngx_int_t ngx_http_chat_echo_message(ngx_http_chat_conn_t *wc,
    ngx_http_chat_buf_t *msg);
static void ngx_http_chat_echo_closed(ngx_http_chat_conn_t *wc);


ngx_http_chat_ws_handler_t  ngx_http_chat_echo_handler = {
    "serving WebSocket echo",
    ngx_http_chat_echo_start,
    ngx_http_chat_echo_message,
    NULL,                                  /* nothing waits for a drain */
    ngx_http_chat_echo_closed,
    0                                      /* a whole read is echoed */
};


static ngx_int_t
ngx_http_chat_echo_start(ngx_http_chat_conn_t *wc)
{
    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_echo_message(ngx_http_chat_conn_t *wc, ngx_http_chat_buf_t *msg)
{
    /* the message itself goes out: no copy */

    if (ngx_http_chat_ws_send_buf(wc, wc->parser.message_opcode, msg)
        != NGX_OK)
    {
        return NGX_ABORT;
    }

    return NGX_OK;
}


static void
ngx_http_chat_echo_closed(ngx_http_chat_conn_t *wc)
{
    ngx_http_chat_presence_remove(wc);
}
