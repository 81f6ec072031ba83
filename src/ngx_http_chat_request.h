
/*
 * The request envelope of the chat protocol: one JSON object per text
 * message, {"type": "...", "id": ..., ...fields}.  Pure C over jansson, so
 * that unit tests and fuzz targets link it alone.
 */


#ifndef _NGX_HTTP_CHAT_REQUEST_H_INCLUDED_
#define _NGX_HTTP_CHAT_REQUEST_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>
#include <jansson.h>


#define NGX_HTTP_CHAT_MAX_ID_LEN  128


typedef struct {
    json_t        *root;     /* owned: ngx_http_chat_request_free */
    const char    *type;     /* points into root */
    size_t         type_len;
    json_t        *id;       /* borrowed from root; NULL when absent */
} ngx_http_chat_request_t;


/*
 * Parses one request.  Returns 0, or -1 with *err set to a client-facing
 * reason; on failure req->id is still set when the document was an object
 * with a usable id, so the error reply can carry it.
 */
int ngx_http_chat_request_parse(ngx_http_chat_request_t *req,
    const u_char *data, size_t len, unsigned max_depth, const char **err);
void ngx_http_chat_request_free(ngx_http_chat_request_t *req);

/*
 * One JSON object under the envelope's rules (depth, no NUL, no
 * duplicate keys), for REST bodies: a new reference, or NULL with *err.
 */
json_t *ngx_http_chat_request_json_object(const u_char *data, size_t len,
    unsigned max_depth, const char **err);

/* nesting depth of a JSON text, strings skipped; stops past max */
unsigned ngx_http_chat_request_json_depth(const u_char *data, size_t len,
    unsigned max);


#endif /* _NGX_HTTP_CHAT_REQUEST_H_INCLUDED_ */
