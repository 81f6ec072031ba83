
/*
 * WebSocket framing (RFC 6455, section 5): an incremental parser correct
 * for any split of the byte stream, with the message-level rules (masking,
 * fragmentation, control frames, UTF-8 of text and close reasons, size and
 * fragment limits) enforced as bytes arrive, and the frame header encoder.
 *
 * Pure C, no nginx dependency: unit tests and fuzz targets link it alone.
 */


#ifndef _NGX_HTTP_CHAT_FRAME_H_INCLUDED_
#define _NGX_HTTP_CHAT_FRAME_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#define NGX_HTTP_CHAT_OP_CONTINUATION  0x0
#define NGX_HTTP_CHAT_OP_TEXT          0x1
#define NGX_HTTP_CHAT_OP_BINARY        0x2
#define NGX_HTTP_CHAT_OP_CLOSE         0x8
#define NGX_HTTP_CHAT_OP_PING          0x9
#define NGX_HTTP_CHAT_OP_PONG          0xa

#define NGX_HTTP_CHAT_CLOSE_NORMAL         1000
#define NGX_HTTP_CHAT_CLOSE_GOING_AWAY     1001
#define NGX_HTTP_CHAT_CLOSE_PROTOCOL       1002
#define NGX_HTTP_CHAT_CLOSE_UNSUPPORTED    1003
#define NGX_HTTP_CHAT_CLOSE_NO_STATUS      1005
#define NGX_HTTP_CHAT_CLOSE_INVALID_DATA   1007
#define NGX_HTTP_CHAT_CLOSE_POLICY         1008
#define NGX_HTTP_CHAT_CLOSE_TOO_BIG        1009
#define NGX_HTTP_CHAT_CLOSE_INTERNAL       1011
#define NGX_HTTP_CHAT_CLOSE_TRY_AGAIN      1013
#define NGX_HTTP_CHAT_CLOSE_TOKEN_EXPIRED  4001

#define NGX_HTTP_CHAT_CONTROL_MAX      125
#define NGX_HTTP_CHAT_FRAME_HEADER_MAX  14


typedef enum {
    NGX_HTTP_CHAT_FRAME_AGAIN = 0,  /* input used up, more is needed */
    NGX_HTTP_CHAT_FRAME_DATA,       /* a chunk of a data message */
    NGX_HTTP_CHAT_FRAME_MESSAGE,    /* the data message is complete */
    NGX_HTTP_CHAT_FRAME_PING,       /* control payload in p->control */
    NGX_HTTP_CHAT_FRAME_PONG,
    NGX_HTTP_CHAT_FRAME_CLOSE,      /* p->close_code, reason in control */
    NGX_HTTP_CHAT_FRAME_ERROR       /* fail with p->close_code, p->error */
} ngx_http_chat_frame_rc_e;


typedef struct {
    /* limits and role, set by the caller before parsing */
    uint64_t      max_message;      /* bytes of a whole message; 0: none */
    uint32_t      max_fragments;    /* frames of one message; 0: none */
    unsigned      text_only:1;      /* binary messages fail with 1003 */
    unsigned      from_server:1;    /* frames must be unmasked, not masked */

    /* the frame being parsed */
    unsigned      state:4;
    unsigned      fin:1;
    unsigned      masked:1;
    unsigned      ext64:1;
    unsigned      opcode:4;
    unsigned      need:4;           /* header bytes still to read */
    unsigned      mask_pos:2;
    u_char        mask[4];
    uint64_t      frame_len;
    uint64_t      remaining;        /* payload bytes of the frame to come */

    /* the data message being assembled */
    unsigned      msg_opcode:4;     /* 0: none in progress */
    unsigned      message_opcode:4; /* of the message MESSAGE completes */
    uint32_t      fragments;
    uint64_t      msg_size;
    uint32_t      utf8;

    /* a complete control frame, or the failure */
    u_char        control[NGX_HTTP_CHAT_CONTROL_MAX];
    u_char        control_len;
    uint16_t      close_code;
    const char   *error;
} ngx_http_chat_frame_parser_t;


/* zeroes the parse state and keeps the limits and role */
void ngx_http_chat_frame_reset(ngx_http_chat_frame_parser_t *p);

/*
 * Consumes bytes from *pos up to last and returns at the first event.
 * DATA points *data and *len at payload bytes unmasked in place (so the input
 * buffer must be writable) and already checked as UTF-8 for text; an empty
 * frame yields no DATA.  After ERROR every call returns ERROR.
 */
ngx_http_chat_frame_rc_e ngx_http_chat_frame_parse(
    ngx_http_chat_frame_parser_t *p, u_char **pos, u_char *last,
    u_char **data, size_t *len);

/* whether a close code may appear in a received Close frame */
int ngx_http_chat_frame_close_code_valid(unsigned code);

/*
 * Writes a frame header for a payload of len bytes; mask (4 bytes) is NULL
 * for a server's frames.  Returns the header length, 2 to 14 bytes.
 */
size_t ngx_http_chat_frame_header(u_char *buf, unsigned opcode, unsigned fin,
    uint64_t len, const u_char *mask);


#endif /* _NGX_HTTP_CHAT_FRAME_H_INCLUDED_ */
