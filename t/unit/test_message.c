
/*
 * Unit tests of message.c: a send's shape checks and their texts (those
 * of the SQL API), the Message object from columns, the array literals
 * written for PostgreSQL and the text[] read back.
 */


#include <stdint.h>
#include <sys/types.h>

#include <ngx_http_chat_message.h>
#include <unit.h>


static const char  *hosts[] = { "a.example", "b.example" };


static void check_with(const char *req, const char *const *h, size_t nh,
    const char *code, const char *message);


static void
check(const char *req, const char *code, const char *message)
{
    check_with(req, NULL, 0, code, message);
}


/* with chat_attachment_hosts a.example b.example */

static void
check_hosts(const char *req, const char *code, const char *message)
{
    check_with(req, hosts, 2, code, message);
}


static void
check_with(const char *req, const char *const *h, size_t nh,
    const char *code, const char *message)
{
    int                           rc;
    json_t                       *root;
    ngx_http_chat_message_send_t  s;
    ngx_http_chat_message_err_t   err;

    root = json_loads(req, 0, NULL);
    CHECK(root != NULL);

    rc = ngx_http_chat_message_send_check(&s, root, 10, h, nh, &err);

    if (code == NULL) {
        CHECK_EQ(rc, 0);
        CHECK(err.code == NULL);

    } else {
        CHECK_EQ(rc, -1);
        CHECK_STR(err.code, code);
        CHECK_STR(err.message, message);
    }

    if (rc != (code ? -1 : 0)) {
        fprintf(stderr, "  request: %s\n", req);
    }

    if (rc == 0 && s.attachments) {
        json_decref(s.attachments);
    }

    json_decref(root);
}


static void
test_shape(void)
{
    int                           rc;
    char                         *text;
    json_t                       *root;
    ngx_http_chat_message_send_t  s;
    ngx_http_chat_message_err_t   err;

    check("{\"conversation_id\": 1, \"body\": \"hi\", \"client_msg_id\": \"a\"}",
          NULL, NULL);
    /* integral numbers are integers, as PostgreSQL reads them */
    check("{\"conversation_id\": 1.0, \"body\": \"hi\", \"client_msg_id\": "
          "\"a\"}", NULL, NULL);
    check("{\"conversation_id\": 1e2, \"body\": \"hi\", \"client_msg_id\": "
          "\"a\"}", NULL, NULL);
    check("{\"body\": \"hi\", \"client_msg_id\": \"a\"}",
          "bad_request", "conversation_id is missing");
    check("{\"conversation_id\": null, \"body\": \"hi\"}",
          "bad_request", "conversation_id is missing");
    check("{\"conversation_id\": 1.5, \"body\": \"hi\"}",
          "bad_request", "conversation_id must be a positive integer");
    check("{\"conversation_id\": 0, \"body\": \"hi\"}",
          "bad_request", "conversation_id must be a positive integer");
    check("{\"conversation_id\": \"1\", \"body\": \"hi\"}",
          "bad_request", "conversation_id must be a positive integer");
    check("{\"conversation_id\": 1e300, \"body\": \"hi\"}",
          "bad_request", "conversation_id must be a positive integer");
    check("{\"conversation_id\": 1}", "bad_request", "body is missing");
    check("{\"conversation_id\": 1, \"body\": 5}",
          "bad_request", "body must be a string");
    check("{\"conversation_id\": 1, \"body\": \"\"}",
          "bad_request", "body must not be empty");
    /* ten characters, more bytes */
    check("{\"conversation_id\": 1, \"body\": \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
          "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\", "
          "\"client_msg_id\": \"a\"}", NULL, NULL);
    check("{\"conversation_id\": 1, \"body\": \"12345678901\"}",
          "too_large", "body is longer than 10 characters");
    check("{\"conversation_id\": 1, \"body\": \"b\"}",
          "bad_request", "client_msg_id is missing");
    check("{\"conversation_id\": 1, \"body\": \"b\", \"client_msg_id\": \"\"}",
          "bad_request", "client_msg_id must be a non-empty string");
    check("{\"conversation_id\": 1, \"body\": \"b\", \"client_msg_id\": "
          "\"12345678901234567890123456789012345678901234567890123456789012"
          "345\"}", "too_large", "client_msg_id is longer than 64 characters");
    check("{\"conversation_id\": 1, \"body\": \"b\", \"client_msg_id\": \"a\", "
          "\"attachments\": {}}",
          "bad_request", "attachments must be an array");
#define SEND  "{\"conversation_id\": 1, \"body\": \"b\", \"client_msg_id\": " \
              "\"a\", \"attachments\": "
    check(SEND "[1]}", "bad_request", "attachments[0] must be an object");
    check(SEND "[{\"upload_id\": 1}, {}]}", "bad_request",
          "attachments[1] must have an upload_id");
    check(SEND "[{\"upload_id\": 0}]}", "bad_request",
          "attachments[0].upload_id must be a positive integer");
    check(SEND "[{\"upload_id\": \"1\"}]}", "bad_request",
          "attachments[0].upload_id must be a positive integer");
    check(SEND "[{\"upload_id\": 1, \"thumbnail_id\": 1.5}]}", "bad_request",
          "attachments[0].thumbnail_id must be a positive integer");
    check(SEND "[{\"upload_id\": 1, \"url\": \"https://a/\"}]}", "bad_request",
          "attachments[0] has both upload_id and url");
    check(SEND "[{\"upload_id\": 1, \"thumbnail_id\": null}, "
          "{\"upload_id\": 2.0, \"thumbnail_id\": 3, \"name\": \"x\"}]}",
          NULL, NULL);

    /* links: none without chat_attachment_hosts */
    check(SEND "[{\"url\": \"https://a.example/x\"}]}", "bad_request",
          "attachments[0].url: links are not accepted, attach an upload "
          "(upload_id)");
    check(SEND "[{\"url\": \"/a\"}]}", "bad_request",
          "attachments[0].url: links are not accepted, attach an upload "
          "(upload_id)");
    check("{\"conversation_id\": 1, \"body\": \"b\", \"client_msg_id\": \"a\", "
          "\"attachments\": [{},{},{},{},{},{},{},{},{},{},{}]}",
          "too_large", "attachments has more than 10 items");
    check("{\"conversation_id\": 1, \"body\": \"b\", \"client_msg_id\": \"a\", "
          "\"reply_to\": \"x\"}", "bad_request", "reply_to must be a message id");
    check("{\"conversation_id\": 1, \"body\": \"b\", \"client_msg_id\": \"a\", "
          "\"reply_to\": null}", NULL, NULL);

    /* links to the listed hosts only, https, the host exactly */
    check_hosts(SEND "[{\"url\": \"https://a.example/x\"}, "
                "{\"url\": \"HTTPS://B.example\"}, "
                "{\"url\": \"https://a.example?q\"}]}", NULL, NULL);
    check_hosts(SEND "[{\"url\": \"http://a.example/x\"}]}", "bad_request",
                "attachments[0].url must be https:// on a host of "
                "chat_attachment_hosts");
    check_hosts(SEND "[{\"url\": \"https://c.example/x\"}]}", "bad_request",
                "attachments[0].url must be https:// on a host of "
                "chat_attachment_hosts");
    check_hosts(SEND "[{\"url\": \"https://a.example.evil/x\"}]}",
                "bad_request", "attachments[0].url must be https:// on a "
                "host of chat_attachment_hosts");
    check_hosts(SEND "[{\"url\": \"https://a.example@evil/x\"}]}",
                "bad_request", "attachments[0].url must be https:// on a "
                "host of chat_attachment_hosts");
    check_hosts(SEND "[{\"url\": \"https://a.example:8443/x\"}]}",
                "bad_request", "attachments[0].url must be https:// on a "
                "host of chat_attachment_hosts");
    check_hosts(SEND "[{\"url\": \"//a.example/x\"}]}", "bad_request",
                "attachments[0].url must be https:// on a host of "
                "chat_attachment_hosts");
    check_hosts(SEND "[{\"url\": \"javascript:alert(1)//a.example\"}]}",
                "bad_request", "attachments[0].url must be https:// on a "
                "host of chat_attachment_hosts");
    check_hosts(SEND "[{\"url\": \"https://\"}]}", "bad_request",
                "attachments[0].url must be https:// on a host of "
                "chat_attachment_hosts");
    check_hosts(SEND "[{\"url\": 5}]}", "bad_request",
                "attachments[0].url must be a non-empty string");
    check_hosts(SEND "[{\"url\": \"https://a.example/\", \"name\": 1}]}",
                "bad_request", "attachments[0].name must be a string");
    check_hosts(SEND "[{\"url\": \"https://a.example/\", \"size\": -1}]}",
                "bad_request", "attachments[0].size must be an integer >= 0");
#undef SEND

    /* the normalized attachments */
    root = json_loads("{\"conversation_id\": 7, \"body\": \"b\", "
                      "\"client_msg_id\": \"a\", \"reply_to\": 3, "
                      "\"attachments\": [{\"url\": \"https://a.example/a\", "
                      "\"size\": 2.0, \"extra\": 1}, {\"upload_id\": 4, "
                      "\"thumbnail_id\": 5, \"name\": \"x\"}]}", 0, NULL);
    rc = ngx_http_chat_message_send_check(&s, root, 10, hosts, 2, &err);
    CHECK_EQ(rc, 0);
    CHECK_EQ(s.conversation_id, 7);
    CHECK_EQ(s.reply_to, 3);
    text = json_dumps(s.attachments, JSON_COMPACT);
    CHECK_STR(text, "[{\"url\":\"https://a.example/a\",\"name\":null,"
              "\"mime\":null,\"size\":2},"
              "{\"upload_id\":4,\"thumbnail_id\":5}]");
    free(text);
    json_decref(s.attachments);
    json_decref(root);
}


static void
test_obj(void)
{
    char                         *text;
    json_t                       *obj;
    ngx_http_chat_message_row_t   row;

    memset(&row, 0, sizeof(row));
    row.conversation_id = 4;
    row.sender_id = "alice";
    row.sender_id_len = 5;
    row.client_msg_id = "c1";
    row.client_msg_id_len = 2;
    row.id = "12";
    row.seq = "3";
    row.body = "h\xc3\xa9";
    row.body_len = 3;
    row.attachments = "[{\"url\": \"/a\", \"mime\": null, \"name\": \"n\", "
                      "\"size\": 1}]";
    row.attachments_len = strlen(row.attachments);
    row.reply_to = "9";
    row.created_at = "2026-01-02T03:04:05.678Z";
    row.updated_seq = "5";
    row.system = 1;

    obj = ngx_http_chat_message_obj(&row);
    CHECK(obj != NULL);
    text = json_dumps(obj, JSON_COMPACT);
    CHECK_STR(text, "{\"id\":12,\"seq\":3,\"body\":\"h\xc3\xa9\",\"system\":true,"
              "\"deleted\":false,\"reply_to\":9,\"edited_at\":null,"
              "\"sender_id\":\"alice\",\"created_at\":"
              "\"2026-01-02T03:04:05.678Z\",\"attachments\":[{\"url\":\"/a\","
              "\"mime\":null,\"name\":\"n\",\"size\":1}],\"updated_seq\":5,"
              "\"client_msg_id\":\"c1\",\"conversation_id\":4}");
    free(text);
    json_decref(obj);

    /* deleted: no body, no attachments */
    row.body = NULL;
    row.attachments = "[]";
    row.attachments_len = 2;
    row.reply_to = NULL;
    row.deleted = 1;
    row.system = 0;
    row.edited_at = "2026-01-02T03:04:06.000Z";
    obj = ngx_http_chat_message_obj(&row);
    text = json_dumps(obj, JSON_COMPACT);
    CHECK_STR(text, "{\"id\":12,\"seq\":3,\"body\":null,\"deleted\":true,"
              "\"reply_to\":null,\"edited_at\":\"2026-01-02T03:04:06.000Z\","
              "\"sender_id\":\"alice\",\"created_at\":"
              "\"2026-01-02T03:04:05.678Z\",\"attachments\":[],"
              "\"updated_seq\":5,\"client_msg_id\":\"c1\","
              "\"conversation_id\":4}");
    free(text);
    json_decref(obj);
}


static void
array(const char *in, const char *want)
{
    char    *text;
    json_t  *arr;

    arr = ngx_http_chat_message_text_array(in, strlen(in));

    if (want == NULL) {
        CHECK(arr == NULL);
        return;
    }

    CHECK(arr != NULL);
    text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    CHECK_STR(text, want);
    free(text);

    if (arr) {
        json_decref(arr);
    }
}


static void
test_arrays(void)
{
    char    buf[64];
    size_t  n;

    array("{}", "[]");
    array("{alice,bob}", "[\"alice\",\"bob\"]");
    array("{\"a b\",\"c\\\"d\",\"e\\\\f\",\"\",\"NULL\",\"{x},y\"}",
          "[\"a b\",\"c\\\"d\",\"e\\\\f\",\"\",\"NULL\",\"{x},y\"]");
    array("{a,NULL,b}", "[\"a\",\"b\"]");
    array("", NULL);
    array("{a", NULL);
    array("{\"a}", NULL);
    array("{\"a\"b}", NULL);

    n = ngx_http_chat_message_quote(NULL, "a\"b\\c", 5);
    CHECK_EQ(n, 9);
    CHECK_EQ(ngx_http_chat_message_quote(buf, "a\"b\\c", 5), 9);
    buf[9] = '\0';
    CHECK_STR(buf, "\"a\\\"b\\\\c\"");
}


/* a result's columns, a Message's from the first on (message.h) */

static void
test_row_columns(void)
{
    int                           len[NGX_HTTP_CHAT_MESSAGE_COLS];
    const char                   *v[NGX_HTTP_CHAT_MESSAGE_COLS];
    ngx_http_chat_message_row_t   row;

    memset(&row, 0, sizeof(row));
    memset(len, 0, sizeof(len));

    v[NGX_HTTP_CHAT_MESSAGE_COL_ID] = "12";
    v[NGX_HTTP_CHAT_MESSAGE_COL_SEQ] = "3";
    v[NGX_HTTP_CHAT_MESSAGE_COL_BODY] = "hi there";
    len[NGX_HTTP_CHAT_MESSAGE_COL_BODY] = 2;       /* what libpq says */
    v[NGX_HTTP_CHAT_MESSAGE_COL_ATTACHMENTS] = "[]";
    len[NGX_HTTP_CHAT_MESSAGE_COL_ATTACHMENTS] = 2;
    v[NGX_HTTP_CHAT_MESSAGE_COL_REPLY_TO] = NULL;
    v[NGX_HTTP_CHAT_MESSAGE_COL_CREATED_AT] = "2026-01-02T03:04:05.678Z";
    v[NGX_HTTP_CHAT_MESSAGE_COL_EDITED_AT] = NULL;
    v[NGX_HTTP_CHAT_MESSAGE_COL_DELETED] = "f";
    v[NGX_HTTP_CHAT_MESSAGE_COL_UPDATED_SEQ] = "5";
    v[NGX_HTTP_CHAT_MESSAGE_COL_SYSTEM] = "t";

    CHECK_EQ(ngx_http_chat_message_row_columns(&row, v, len), 0);
    CHECK_STR(row.id, "12");
    CHECK_STR(row.seq, "3");
    CHECK_EQ(row.body_len, 2);
    CHECK_EQ(row.attachments_len, 2);
    CHECK(row.reply_to == NULL && row.edited_at == NULL);
    CHECK_STR(row.updated_seq, "5");
    CHECK(!row.deleted && row.system);

    /* NULL body, attachments: no length, whatever libpq says */
    v[NGX_HTTP_CHAT_MESSAGE_COL_BODY] = NULL;
    v[NGX_HTTP_CHAT_MESSAGE_COL_ATTACHMENTS] = NULL;
    v[NGX_HTTP_CHAT_MESSAGE_COL_DELETED] = "t";
    v[NGX_HTTP_CHAT_MESSAGE_COL_SYSTEM] = NULL;
    CHECK_EQ(ngx_http_chat_message_row_columns(&row, v, len), 0);
    CHECK(row.body == NULL && row.body_len == 0);
    CHECK(row.attachments == NULL && row.attachments_len == 0);
    CHECK(row.deleted && !row.system);

    /* what every Message has */
    v[NGX_HTTP_CHAT_MESSAGE_COL_UPDATED_SEQ] = NULL;
    CHECK_EQ(ngx_http_chat_message_row_columns(&row, v, len), -1);
    v[NGX_HTTP_CHAT_MESSAGE_COL_UPDATED_SEQ] = "5";
    v[NGX_HTTP_CHAT_MESSAGE_COL_SEQ] = NULL;
    CHECK_EQ(ngx_http_chat_message_row_columns(&row, v, len), -1);
}


int
main(void)
{
    test_shape();
    test_obj();
    test_row_columns();
    test_arrays();

    UNIT_DONE("message");
}
