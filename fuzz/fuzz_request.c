
/*
 * libFuzzer target of the request envelope parser.
 *
 * The input is one request, parsed with the server's depth limit of 32
 * from an exact-size copy that is freed before the result is looked at.
 * Checked:
 *
 *   on success   root is an object; type is its "type" string, with no NUL
 *                in type_len bytes and one right after; id is its "id",
 *                absent or a string of at most 128 bytes or an integer;
 *
 *   on failure   err is one of the parser's reasons, type is unset; root
 *                is set only past the JSON stage, and id only with a type
 *                reason, and then it is valid as above;
 *
 *   the depth    the pre-scan, run without a useful limit, agrees with the
 *                depth of the tree jansson built, whenever it built one;
 *                so a parsed request is never deeper than 32, and a
 *                request refused as too deep does scan deeper than 32.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <ngx_http_chat_request.h>


#define FUZZ_DEPTH      32
#define FUZZ_NO_LIMIT   1000


#define fuzz_assert(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: assertion failed: %s\n",                \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


static void fuzz_check_id(ngx_http_chat_request_t *req);
static unsigned fuzz_tree_depth(json_t *json);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  *fuzz_reasons[] = {
    "JSON nested too deeply",
    "not valid JSON",
    "a request must be a JSON object",
    "id is too long",
    "id must be a string or an integer",
    "type is missing",
    "type must be a string",
    NULL
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       rc;
    u_char                   *copy;
    unsigned                  depth, i;
    json_t                   *type;
    const char               *err;
    ngx_http_chat_request_t   req;

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    memset(&req, 0xa5, sizeof(ngx_http_chat_request_t));
    err = NULL;

    rc = ngx_http_chat_request_parse(&req, copy, size, FUZZ_DEPTH, &err);

    free(copy);

    depth = ngx_http_chat_request_json_depth(data, size, FUZZ_NO_LIMIT);

    if (rc == 0) {
        fuzz_assert(json_is_object(req.root));
        fuzz_assert(req.type != NULL);
        fuzz_assert(memchr(req.type, 0, req.type_len) == NULL);
        fuzz_assert(req.type[req.type_len] == '\0');

        type = json_object_get(req.root, "type");
        fuzz_assert(json_is_string(type));
        fuzz_assert(json_string_value(type) == req.type);
        fuzz_assert(json_string_length(type) == req.type_len);

        fuzz_check_id(&req);

        fuzz_assert(depth <= FUZZ_DEPTH);

    } else {
        fuzz_assert(rc == -1);
        fuzz_assert(err != NULL);

        for (i = 0; fuzz_reasons[i]; i++) {
            if (strcmp(err, fuzz_reasons[i]) == 0) {
                break;
            }
        }

        fuzz_assert(fuzz_reasons[i] != NULL);

        fuzz_assert(req.type == NULL);
        fuzz_assert(req.type_len == 0);

        if (i < 3) {
            /* refused before there was an object */
            fuzz_assert(req.root == NULL);
            fuzz_assert(req.id == NULL);

        } else {
            fuzz_assert(json_is_object(req.root));
        }

        if (i == 3 || i == 4) {
            fuzz_assert(req.id == NULL);
        }

        if (i >= 5) {
            fuzz_check_id(&req);
        }

        if (i == 0) {
            fuzz_assert(depth > FUZZ_DEPTH);

        } else {
            fuzz_assert(depth <= FUZZ_DEPTH);
        }
    }

    if (req.root != NULL) {
        fuzz_assert(fuzz_tree_depth(req.root) == depth);
    }

    ngx_http_chat_request_free(&req);

    fuzz_assert(req.root == NULL && req.type == NULL && req.id == NULL);

    return 0;
}


static void
fuzz_check_id(ngx_http_chat_request_t *req)
{
    fuzz_assert(req->id == json_object_get(req->root, "id"));

    if (req->id == NULL) {
        return;
    }

    if (json_is_string(req->id)) {
        fuzz_assert(json_string_length(req->id)
                    <= NGX_HTTP_CHAT_MAX_ID_LEN);
        return;
    }

    fuzz_assert(json_is_integer(req->id));
}


/* no deeper than 32 levels here, so recursion is fine */

static unsigned
fuzz_tree_depth(json_t *json)
{
    size_t       i;
    json_t      *value;
    unsigned     d, deepest;
    const char  *key;

    deepest = 0;

    if (json_is_object(json)) {
        json_object_foreach(json, key, value) {
            d = fuzz_tree_depth(value);
            if (d > deepest) {
                deepest = d;
            }
        }

        return deepest + 1;
    }

    if (json_is_array(json)) {
        json_array_foreach(json, i, value) {
            d = fuzz_tree_depth(value);
            if (d > deepest) {
                deepest = d;
            }
        }

        return deepest + 1;
    }

    return 0;
}
