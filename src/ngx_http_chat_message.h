
/*
 * A message.send and the Message object without a JSON round trip: the
 * shape of a send is checked here, where the request is parsed already,
 * with the answers chat.api_message_send_batch gives; the Message object
 * of an answer is made from the columns of chat.api_message_send_rows.
 * Pure C over jansson, so that unit tests link it alone.
 */


#ifndef _NGX_HTTP_CHAT_MESSAGE_H_INCLUDED_
#define _NGX_HTTP_CHAT_MESSAGE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>


/* "body is longer than 1000000 characters" and the like fit */
#define NGX_HTTP_CHAT_MESSAGE_ERR_LEN  128


typedef struct {
    const char    *code;                     /* NULL: the shape is right */
    char           message[NGX_HTTP_CHAT_MESSAGE_ERR_LEN];
} ngx_http_chat_message_err_t;


/* a send's fields; strings borrowed from the request object */
typedef struct {
    int64_t        conversation_id;
    const char    *body;
    size_t         body_len;
    const char    *client_msg_id;
    size_t         client_msg_id_len;
    json_t        *attachments;              /* owned; NULL: none */
    int64_t        reply_to;                 /* 0: none */
} ngx_http_chat_message_send_t;


/* a row of chat.api_message_send_rows: text values, NULL for SQL NULL */
typedef struct {
    int64_t        conversation_id;
    const char    *sender_id;
    size_t         sender_id_len;
    const char    *client_msg_id;
    size_t         client_msg_id_len;
    const char    *id;
    const char    *seq;
    const char    *body;
    size_t         body_len;
    const char    *attachments;
    size_t         attachments_len;
    const char    *reply_to;
    const char    *created_at;
    const char    *edited_at;
    const char    *updated_seq;
    unsigned       deleted:1;
    unsigned       system:1;
} ngx_http_chat_message_row_t;


/*
 * Checks req (a message.send, max_length in characters) in the order and
 * with the errors of the SQL API; returns 0 and fills s, or -1 and fills
 * err.  s->attachments is then the normalized array (or NULL).  Links
 * are accepted only to hosts (chat_attachment_hosts, lower case; nhosts 0:
 * none).
 */
int ngx_http_chat_message_send_check(ngx_http_chat_message_send_t *s,
    json_t *req, size_t max_length, const char *const *hosts, size_t nhosts,
    ngx_http_chat_message_err_t *err);

/*
 * A Message's columns, in this order in every result the module reads a
 * Message from (sql.c's send and change rows), from the first one on
 */
enum {
    NGX_HTTP_CHAT_MESSAGE_COL_ID = 0,
    NGX_HTTP_CHAT_MESSAGE_COL_SEQ,
    NGX_HTTP_CHAT_MESSAGE_COL_BODY,
    NGX_HTTP_CHAT_MESSAGE_COL_ATTACHMENTS,
    NGX_HTTP_CHAT_MESSAGE_COL_REPLY_TO,
    NGX_HTTP_CHAT_MESSAGE_COL_CREATED_AT,
    NGX_HTTP_CHAT_MESSAGE_COL_EDITED_AT,
    NGX_HTTP_CHAT_MESSAGE_COL_DELETED,
    NGX_HTTP_CHAT_MESSAGE_COL_UPDATED_SEQ,
    NGX_HTTP_CHAT_MESSAGE_COL_SYSTEM,
    NGX_HTTP_CHAT_MESSAGE_COLS
};

/*
 * Fills row's Message columns from v (text values, NULL for SQL NULL) and
 * len (their lengths), both at the first of them; the conversation, the
 * sender and the client id are the caller's.  Returns -1 when one that
 * every Message has is NULL (id, seq, created_at, updated_seq), else 0.
 */
int ngx_http_chat_message_row_columns(ngx_http_chat_message_row_t *row,
    const char *const *v, const int *len);

/* the Message object of a row, keys as chat.message_obj orders them */
json_t *ngx_http_chat_message_obj(ngx_http_chat_message_row_t *row);

/* a one-dimensional PostgreSQL text[] in its text form as a JSON array */
json_t *ngx_http_chat_message_text_array(const char *p, size_t len);

/*
 * Writes v as an element of an array literal ("..." with \ and " escaped)
 * at p, or only counts when p is NULL; returns the length.
 */
size_t ngx_http_chat_message_quote(char *p, const char *v, size_t len);


#endif /* _NGX_HTTP_CHAT_MESSAGE_H_INCLUDED_ */
