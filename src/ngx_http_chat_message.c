
/*
 * A message.send's shape and the Message object from result columns.
 *
 * The checks and their texts are those of the SQL API (chat.check_body,
 * chat.check_attachments, chat.bad in sql/api/00_base.sql): a client sees
 * the same answer whichever side finds the error.  The SQL entry point
 * checks again, for any other caller.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ngx_http_chat_utf8.h>
#include <ngx_http_chat_message.h>


#define NGX_HTTP_CHAT_MESSAGE_MAX_ATTACHMENTS  10


static int ngx_http_chat_message_int(json_t *v, int64_t *out);
static int ngx_http_chat_message_id(json_t *v, int64_t *out);
static int ngx_http_chat_message_present(json_t *v);
static int ngx_http_chat_message_bad(ngx_http_chat_message_err_t *err,
    json_t *v, const char *key, const char *what);
static int ngx_http_chat_message_fail(ngx_http_chat_message_err_t *err,
    const char *code, const char *message);
static int ngx_http_chat_message_attachments(json_t *v,
    const char *const *hosts, size_t nhosts, json_t **out,
    ngx_http_chat_message_err_t *err);
static int ngx_http_chat_message_link(json_t *url, size_t i,
    const char *const *hosts, size_t nhosts,
    ngx_http_chat_message_err_t *err);
static int ngx_http_chat_message_attachment_text(json_t *item, size_t i,
    const char *key, json_t **out, ngx_http_chat_message_err_t *err);
static int ngx_http_chat_message_item(ngx_http_chat_message_err_t *err,
    const char *code, size_t i, const char *what);
static size_t ngx_http_chat_message_chars(json_t *s);
static json_t *ngx_http_chat_message_integer(const char *v);


int
ngx_http_chat_message_send_check(ngx_http_chat_message_send_t *s,
    json_t *req, size_t max_length, const char *const *hosts, size_t nhosts,
    ngx_http_chat_message_err_t *err)
{
    json_t  *v;

    memset(s, 0, sizeof(ngx_http_chat_message_send_t));
    err->code = NULL;
    err->message[0] = '\0';

    v = json_object_get(req, "conversation_id");

    if (ngx_http_chat_message_id(v, &s->conversation_id) != 0) {
        return ngx_http_chat_message_bad(err, v, "conversation_id",
                                         "a positive integer");
    }

    v = json_object_get(req, "body");

    if (!json_is_string(v)) {
        return ngx_http_chat_message_bad(err, v, "body", "a string");
    }

    if (json_string_length(v) == 0) {
        return ngx_http_chat_message_fail(err, "bad_request",
                                          "body must not be empty");
    }

    if (ngx_http_chat_message_chars(v) > max_length) {
        err->code = "too_large";
        (void) snprintf(err->message, NGX_HTTP_CHAT_MESSAGE_ERR_LEN,
                        "body is longer than %zu characters", max_length);
        return -1;
    }

    s->body = json_string_value(v);
    s->body_len = json_string_length(v);

    v = json_object_get(req, "client_msg_id");

    if (!json_is_string(v) || json_string_length(v) == 0) {
        return ngx_http_chat_message_bad(err, v, "client_msg_id",
                                         "a non-empty string");
    }

    if (ngx_http_chat_message_chars(v) > 64) {
        return ngx_http_chat_message_fail(err, "too_large",
                                          "client_msg_id is longer than 64 "
                                          "characters");
    }

    s->client_msg_id = json_string_value(v);
    s->client_msg_id_len = json_string_length(v);

    v = json_object_get(req, "attachments");

    if (ngx_http_chat_message_present(v)
        && ngx_http_chat_message_attachments(v, hosts, nhosts,
                                             &s->attachments, err)
           != 0)
    {
        return -1;
    }

    v = json_object_get(req, "reply_to");

    if (ngx_http_chat_message_present(v)
        && ngx_http_chat_message_id(v, &s->reply_to) != 0)
    {
        if (s->attachments != NULL) {
            json_decref(s->attachments);
            s->attachments = NULL;
        }

        return ngx_http_chat_message_bad(err, v, "reply_to", "a message id");
    }

    return 0;
}


/*
 * chat.json_int: a number with an integral value within bigint; jansson
 * reads 1.0 and 1e2 as reals, PostgreSQL as the integers they are
 */

static int
ngx_http_chat_message_int(json_t *v, int64_t *out)
{
    double  d;

    if (json_is_integer(v)) {
        *out = (int64_t) json_integer_value(v);
        return 0;
    }

    if (!json_is_real(v)) {
        return -1;
    }

    d = json_real_value(v);

    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)
        || d != (double) (int64_t) d)
    {
        return -1;
    }

    *out = (int64_t) d;

    return 0;
}


/* chat.json_id: a positive integer */

static int
ngx_http_chat_message_id(json_t *v, int64_t *out)
{
    int64_t  n;

    if (ngx_http_chat_message_int(v, &n) != 0 || n < 1) {
        return -1;
    }

    *out = n;

    return 0;
}


static int
ngx_http_chat_message_present(json_t *v)
{
    return v != NULL && !json_is_null(v);
}


/* chat.bad: missing when absent or null, else what it must be */

static int
ngx_http_chat_message_bad(ngx_http_chat_message_err_t *err, json_t *v,
    const char *key, const char *what)
{
    err->code = "bad_request";

    if (ngx_http_chat_message_present(v)) {
        (void) snprintf(err->message, NGX_HTTP_CHAT_MESSAGE_ERR_LEN,
                        "%s must be %s", key, what);

    } else {
        (void) snprintf(err->message, NGX_HTTP_CHAT_MESSAGE_ERR_LEN,
                        "%s is missing", key);
    }

    return -1;
}


static int
ngx_http_chat_message_fail(ngx_http_chat_message_err_t *err,
    const char *code, const char *message)
{
    err->code = code;
    (void) snprintf(err->message, NGX_HTTP_CHAT_MESSAGE_ERR_LEN, "%s",
                    message);

    return -1;
}


/*
 * chat.check_attachments: at most 10 objects, each an upload
 * {upload_id, thumbnail_id?} made into {upload_id, thumbnail_id} (null
 * when none), or a link {url, name?, mime?, size?} to one of hosts made
 * into {url, name, mime, size} with nulls; errors name the item's index.
 * Whose uploads they are is the send's to check, in SQL.
 */

static int
ngx_http_chat_message_attachments(json_t *v, const char *const *hosts,
    size_t nhosts, json_t **out, ngx_http_chat_message_err_t *err)
{
    size_t       i;
    int64_t      size, id, tid;
    json_t      *item, *url, *name, *mime, *sz, *norm, *arr, *t;

    if (!json_is_array(v)) {
        return ngx_http_chat_message_fail(err, "bad_request",
                                          "attachments must be an array");
    }

    if (json_array_size(v) > NGX_HTTP_CHAT_MESSAGE_MAX_ATTACHMENTS) {
        return ngx_http_chat_message_fail(err, "too_large",
                                          "attachments has more than 10 "
                                          "items");
    }

    arr = json_array();
    if (arr == NULL) {
        return ngx_http_chat_message_fail(err, "internal", "out of memory");
    }

    json_array_foreach(v, i, item) {

        if (!json_is_object(item)) {
            json_decref(arr);
            return ngx_http_chat_message_item(err, "bad_request", i,
                                              " must be an object");
        }

        url = json_object_get(item, "url");
        t = json_object_get(item, "upload_id");

        if (ngx_http_chat_message_present(t)) {

            if (ngx_http_chat_message_present(url)) {
                json_decref(arr);
                return ngx_http_chat_message_item(err, "bad_request", i,
                                                  " has both upload_id and "
                                                  "url");
            }

            if (ngx_http_chat_message_id(t, &id) != 0) {
                json_decref(arr);
                return ngx_http_chat_message_item(err, "bad_request", i,
                                                  ".upload_id must be a "
                                                  "positive integer");
            }

            t = json_object_get(item, "thumbnail_id");
            tid = 0;

            if (ngx_http_chat_message_present(t)
                && ngx_http_chat_message_id(t, &tid) != 0)
            {
                json_decref(arr);
                return ngx_http_chat_message_item(err, "bad_request", i,
                                                  ".thumbnail_id must be a "
                                                  "positive integer");
            }

            norm = json_pack("{s:I, s:o}", "upload_id", (json_int_t) id,
                             "thumbnail_id",
                             tid ? json_integer(tid) : json_null());

        } else if (!ngx_http_chat_message_present(url)) {
            json_decref(arr);
            return ngx_http_chat_message_item(err, "bad_request", i,
                                              " must have an upload_id");

        } else {
            if (ngx_http_chat_message_link(url, i, hosts, nhosts, err) != 0
                || ngx_http_chat_message_attachment_text(item, i, "name",
                                                         &name, err)
                   != 0
                || ngx_http_chat_message_attachment_text(item, i, "mime",
                                                         &mime, err)
                   != 0)
            {
                json_decref(arr);
                return -1;
            }

            sz = json_object_get(item, "size");

            if (ngx_http_chat_message_present(sz)) {
                if (ngx_http_chat_message_int(sz, &size) != 0 || size < 0) {
                    json_decref(arr);
                    return ngx_http_chat_message_item(err, "bad_request", i,
                                                      ".size must be an "
                                                      "integer >= 0");
                }

                sz = json_integer(size);

            } else {
                sz = json_null();
            }

            norm = json_pack("{s:O, s:O, s:O, s:o}", "url", url,
                             "name", name, "mime", mime, "size", sz);
        }

        if (norm == NULL || json_array_append_new(arr, norm) != 0) {
            json_decref(arr);
            return ngx_http_chat_message_fail(err, "internal",
                                              "out of memory");
        }
    }

    *out = arr;

    return 0;
}


/*
 * A link: only https:// to a host of chat_attachment_hosts, exactly (the
 * host is what comes before the first / ? or #: "user@host", "host:port"
 * or "host\x" names no listed host); none at all without the directive
 */

static int
ngx_http_chat_message_link(json_t *url, size_t i, const char *const *hosts,
    size_t nhosts, ngx_http_chat_message_err_t *err)
{
    size_t       n, h, k;
    const char  *u;

    if (nhosts == 0) {
        return ngx_http_chat_message_item(err, "bad_request", i,
                                          ".url: links are not accepted, "
                                          "attach an upload (upload_id)");
    }

    if (!json_is_string(url) || json_string_length(url) == 0) {
        return ngx_http_chat_message_item(err, "bad_request", i,
                                          ".url must be a non-empty string");
    }

    if (ngx_http_chat_message_chars(url) > 2048) {
        return ngx_http_chat_message_item(err, "too_large", i,
                                          ".url is longer than 2048 "
                                          "characters");
    }

    u = json_string_value(url);
    n = json_string_length(url);

    if (n > 8 && strncasecmp(u, "https://", 8) == 0) {

        for (h = 8; h < n && u[h] != '/' && u[h] != '?' && u[h] != '#'; h++)
        {
            /* void */
        }

        for (k = 0; k < nhosts; k++) {
            if (strlen(hosts[k]) == h - 8
                && strncasecmp(u + 8, hosts[k], h - 8) == 0)
            {
                return 0;
            }
        }
    }

    return ngx_http_chat_message_item(err, "bad_request", i,
                                      ".url must be https:// on a host of "
                                      "chat_attachment_hosts");
}


/* name and mime: absent, null or a string of at most 255 characters */

static int
ngx_http_chat_message_attachment_text(json_t *item, size_t i,
    const char *key, json_t **out, ngx_http_chat_message_err_t *err)
{
    json_t  *v;

    v = json_object_get(item, key);

    if (!ngx_http_chat_message_present(v)) {
        *out = json_null();
        return 0;
    }

    if (!json_is_string(v)) {
        err->code = "bad_request";
        (void) snprintf(err->message, NGX_HTTP_CHAT_MESSAGE_ERR_LEN,
                        "attachments[%zu].%s must be a string", i, key);
        return -1;
    }

    if (ngx_http_chat_message_chars(v) > 255) {
        err->code = "too_large";
        (void) snprintf(err->message, NGX_HTTP_CHAT_MESSAGE_ERR_LEN,
                        "attachments[%zu].%s is longer than 255 characters",
                        i, key);
        return -1;
    }

    *out = v;

    return 0;
}


/* "attachments[i]" and what is wrong with it */

static int
ngx_http_chat_message_item(ngx_http_chat_message_err_t *err,
    const char *code, size_t i, const char *what)
{
    err->code = code;
    (void) snprintf(err->message, NGX_HTTP_CHAT_MESSAGE_ERR_LEN,
                    "attachments[%zu]%s", i, what);

    return -1;
}


/* char_length(): jansson's strings are valid UTF-8 */

static size_t
ngx_http_chat_message_chars(json_t *s)
{
    return ngx_http_chat_utf8_length((const u_char *) json_string_value(s),
                                     json_string_length(s));
}


int
ngx_http_chat_message_row_columns(ngx_http_chat_message_row_t *row,
    const char *const *v, const int *len)
{
    row->id = v[NGX_HTTP_CHAT_MESSAGE_COL_ID];
    row->seq = v[NGX_HTTP_CHAT_MESSAGE_COL_SEQ];
    row->body = v[NGX_HTTP_CHAT_MESSAGE_COL_BODY];
    row->body_len = row->body ? (size_t) len[NGX_HTTP_CHAT_MESSAGE_COL_BODY]
                              : 0;
    row->attachments = v[NGX_HTTP_CHAT_MESSAGE_COL_ATTACHMENTS];
    row->attachments_len =
        row->attachments ? (size_t) len[NGX_HTTP_CHAT_MESSAGE_COL_ATTACHMENTS]
                         : 0;
    row->reply_to = v[NGX_HTTP_CHAT_MESSAGE_COL_REPLY_TO];
    row->created_at = v[NGX_HTTP_CHAT_MESSAGE_COL_CREATED_AT];
    row->edited_at = v[NGX_HTTP_CHAT_MESSAGE_COL_EDITED_AT];
    row->updated_seq = v[NGX_HTTP_CHAT_MESSAGE_COL_UPDATED_SEQ];
    row->deleted = (v[NGX_HTTP_CHAT_MESSAGE_COL_DELETED] != NULL
                    && v[NGX_HTTP_CHAT_MESSAGE_COL_DELETED][0] == 't');
    row->system = (v[NGX_HTTP_CHAT_MESSAGE_COL_SYSTEM] != NULL
                   && v[NGX_HTTP_CHAT_MESSAGE_COL_SYSTEM][0] == 't');

    if (row->id == NULL || row->seq == NULL || row->created_at == NULL
        || row->updated_seq == NULL)
    {
        return -1;
    }

    return 0;
}


json_t *
ngx_http_chat_message_obj(ngx_http_chat_message_row_t *row)
{
    json_t  *obj, *v;

    obj = json_object();
    if (obj == NULL) {
        return NULL;
    }

    /*
     * The keys in jsonb's order (shorter first, then bytewise), the order
     * clients got them in from chat.message_obj.
     */

    if (json_object_set_new(obj, "id",
                            ngx_http_chat_message_integer(row->id)) != 0
        || json_object_set_new(obj, "seq",
                               ngx_http_chat_message_integer(row->seq)) != 0
        || json_object_set_new(obj, "body",
                               row->body
                               ? json_stringn(row->body, row->body_len)
                               : json_null()) != 0)
    {
        goto failed;
    }

    if (row->system
        && json_object_set_new(obj, "system", json_true()) != 0)
    {
        goto failed;
    }

    if (row->attachments == NULL
        || (row->attachments_len == 2
            && memcmp(row->attachments, "[]", 2) == 0))
    {
        v = json_array();

    } else {
        /* rare: only a message with attachments pays for a parse */
        v = json_loadb(row->attachments, row->attachments_len, 0, NULL);
    }

    if (json_object_set_new(obj, "deleted", json_boolean(row->deleted)) != 0
        || json_object_set_new(obj, "reply_to",
                               row->reply_to
                               ? ngx_http_chat_message_integer(row->reply_to)
                               : json_null()) != 0
        || json_object_set_new(obj, "edited_at",
                               row->edited_at ? json_string(row->edited_at)
                                              : json_null()) != 0
        || json_object_set_new(obj, "sender_id",
                               json_stringn(row->sender_id,
                                            row->sender_id_len)) != 0
        || json_object_set_new(obj, "created_at",
                               json_string(row->created_at)) != 0
        || json_object_set_new(obj, "attachments", v) != 0
        || json_object_set_new(obj, "updated_seq",
                               ngx_http_chat_message_integer(
                                   row->updated_seq)) != 0
        || json_object_set_new(obj, "client_msg_id",
                               row->client_msg_id   /* NULL: system */
                               ? json_stringn(row->client_msg_id,
                                              row->client_msg_id_len)
                               : json_null()) != 0
        || json_object_set_new(obj, "conversation_id",
                               json_integer(row->conversation_id)) != 0)
    {
        goto failed;
    }

    return obj;

failed:

    /* json_object_set_new took (and freed) a value it failed to add */
    json_decref(obj);

    return NULL;
}


static json_t *
ngx_http_chat_message_integer(const char *v)
{
    if (v == NULL) {
        return NULL;
    }

    return json_integer((json_int_t) strtoll(v, NULL, 10));
}


/*
 * array_out's form: {a,"b c","d\"e"}; an element is quoted when it is
 * empty, holds a delimiter, a quote, a backslash or white space, or reads
 * NULL; a NULL element (unquoted NULL) is left out
 */

json_t *
ngx_http_chat_message_text_array(const char *p, size_t len)
{
    char        *buf, *b;
    json_t      *arr, *s;
    const char  *last, *start;
    int          quoted;

    last = p + len;

    if (len < 2 || p[0] != '{' || last[-1] != '}') {
        return NULL;
    }

    p++;
    last--;

    arr = json_array();
    buf = malloc(len);

    if (arr == NULL || buf == NULL) {
        goto failed;
    }

    while (p < last) {
        b = buf;
        quoted = 0;

        if (*p == '"') {
            quoted = 1;
            p++;

            while (p < last && *p != '"') {
                if (*p == '\\' && p + 1 < last) {
                    p++;
                }

                *b++ = *p++;
            }

            if (p == last) {
                goto failed;
            }

            p++;

        } else {
            start = p;

            while (p < last && *p != ',') {
                p++;
            }

            memcpy(b, start, p - start);
            b += p - start;
        }

        if (p < last) {
            if (*p != ',') {
                goto failed;
            }

            p++;
        }

        if (!quoted && b - buf == 4 && memcmp(buf, "NULL", 4) == 0) {
            continue;
        }

        s = json_stringn(buf, b - buf);

        if (s == NULL || json_array_append_new(arr, s) != 0) {
            goto failed;
        }
    }

    free(buf);

    return arr;

failed:

    free(buf);

    if (arr != NULL) {
        json_decref(arr);
    }

    return NULL;
}


size_t
ngx_http_chat_message_quote(char *p, const char *v, size_t len)
{
    char        *start;
    size_t       n;
    const char  *last;

    last = v + len;

    if (p == NULL) {
        n = len + 2;

        while (v < last) {
            n += (*v == '"' || *v == '\\');
            v++;
        }

        return n;
    }

    start = p;
    *p++ = '"';

    while (v < last) {
        if (*v == '"' || *v == '\\') {
            *p++ = '\\';
        }

        *p++ = *v++;
    }

    *p++ = '"';

    return p - start;
}
