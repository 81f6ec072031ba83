
/*
 * The request envelope.
 *
 * The nesting depth is measured before jansson parses, because jansson
 * recurses up to its compile-time limit of 2048 levels and a chat request
 * never needs more than a few.
 */


#include <string.h>

#include <ngx_http_chat_request.h>


int
ngx_http_chat_request_parse(ngx_http_chat_request_t *req,
    const u_char *data, size_t len, unsigned max_depth, const char **err)
{
    json_t  *root, *type, *id;

    memset(req, 0, sizeof(ngx_http_chat_request_t));

    root = ngx_http_chat_request_json_object(data, len, max_depth, err);
    if (root == NULL) {
        return -1;
    }

    req->root = root;

    id = json_object_get(root, "id");

    if (id != NULL) {

        if (json_is_string(id)) {
            if (json_string_length(id) > NGX_HTTP_CHAT_MAX_ID_LEN) {
                *err = "id is too long";
                return -1;
            }

        } else if (!json_is_integer(id)) {
            *err = "id must be a string or an integer";
            return -1;
        }

        req->id = id;
    }

    type = json_object_get(root, "type");

    if (type == NULL) {
        *err = "type is missing";
        return -1;
    }

    if (!json_is_string(type)) {
        *err = "type must be a string";
        return -1;
    }

    req->type = json_string_value(type);
    req->type_len = json_string_length(type);

    return 0;
}


json_t *
ngx_http_chat_request_json_object(const u_char *data, size_t len,
    unsigned max_depth,
    const char **err)
{
    json_t        *root;
    json_error_t   error;

    if (ngx_http_chat_request_json_depth(data, len, max_depth) > max_depth) {
        *err = "JSON nested too deeply";
        return NULL;
    }

    /* jansson stops at a NUL byte and would accept what precedes it */

    if (memchr(data, '\0', len) != NULL) {
        *err = "not valid JSON";
        return NULL;
    }

    /* any top-level value, so that a scalar gets the reason below */

    root = json_loadb((const char *) data, len,
                      JSON_REJECT_DUPLICATES|JSON_DECODE_ANY, &error);
    if (root == NULL) {
        *err = "not valid JSON";
        return NULL;
    }

    if (!json_is_object(root)) {
        json_decref(root);
        *err = "a request must be a JSON object";
        return NULL;
    }

    return root;
}


void
ngx_http_chat_request_free(ngx_http_chat_request_t *req)
{
    if (req->root != NULL) {
        json_decref(req->root);
    }

    memset(req, 0, sizeof(ngx_http_chat_request_t));
}


unsigned
ngx_http_chat_request_json_depth(const u_char *data, size_t len, unsigned max)
{
    size_t    i;
    unsigned  depth, deepest, in_string, escaped;

    depth = 0;
    deepest = 0;
    in_string = 0;
    escaped = 0;

    for (i = 0; i < len; i++) {

        if (in_string) {
            if (escaped) {
                escaped = 0;

            } else if (data[i] == '\\') {
                escaped = 1;

            } else if (data[i] == '"') {
                in_string = 0;
            }

            continue;
        }

        switch (data[i]) {

        case '"':
            in_string = 1;
            break;

        case '[':
        case '{':
            if (++depth > deepest) {
                deepest = depth;

                if (deepest > max) {
                    return deepest;
                }
            }
            break;

        case ']':
        case '}':
            if (depth > 0) {
                depth--;
            }
            break;
        }
    }

    return deepest;
}
