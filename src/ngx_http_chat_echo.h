
/*
 * ngx_http_chat_echo.c: the echo endpoint on a WebSocket connection.
 * Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_ECHO_H_INCLUDED_
#define _NGX_HTTP_CHAT_ECHO_H_INCLUDED_


/* the transport's handler of a chat_websocket echo connection */
extern ngx_http_chat_ws_handler_t  ngx_http_chat_echo_handler;


#endif /* _NGX_HTTP_CHAT_ECHO_H_INCLUDED_ */
