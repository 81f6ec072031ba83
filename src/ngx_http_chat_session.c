
/*
 * The chat protocol on a WebSocket: the welcome, the request envelope and
 * its dispatch, ok and error replies.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_request.h>


typedef ngx_int_t (*ngx_http_chat_request_pt)(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);


typedef struct {
    ngx_str_t                     type;
    ngx_http_chat_request_pt      handler;
} ngx_http_chat_request_type_t;


static ngx_int_t ngx_http_chat_ping(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);
static ngx_int_t ngx_http_chat_auth_refresh(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);
static ngx_int_t ngx_http_chat_no_storage(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);
static ngx_int_t ngx_http_chat_send_json_frame(ngx_http_chat_conn_t *wc,
    json_t *json);
static ngx_int_t ngx_http_chat_reply_ok(ngx_http_chat_conn_t *wc,
    json_t *id, json_t *data);
static ngx_int_t ngx_http_chat_reply_error(ngx_http_chat_conn_t *wc,
    json_t *id, const char *code, const char *message);


static ngx_http_chat_request_type_t  ngx_http_chat_request_types[] = {

    { ngx_string("ping"), ngx_http_chat_ping },
    { ngx_string("auth.refresh"), ngx_http_chat_auth_refresh },

    /* these need PostgreSQL (chat_postgres) */
    { ngx_string("conversation.create"), ngx_http_chat_no_storage },
    { ngx_string("conversation.list"), ngx_http_chat_no_storage },
    { ngx_string("messages.history"), ngx_http_chat_no_storage },
    { ngx_string("message.send"), ngx_http_chat_no_storage },
    { ngx_string("message.edit"), ngx_http_chat_no_storage },
    { ngx_string("message.delete"), ngx_http_chat_no_storage },
    { ngx_string("message.read"), ngx_http_chat_no_storage },
    { ngx_string("message.delivered"), ngx_http_chat_no_storage },
    { ngx_string("typing"), ngx_http_chat_no_storage },
    { ngx_string("presence.query"), ngx_http_chat_no_storage },
    { ngx_string("sync"), ngx_http_chat_no_storage },

    { ngx_null_string, NULL }
};


ngx_int_t
ngx_http_chat_session_start(ngx_http_chat_conn_t *wc)
{
    u_char   session[NGX_INT64_LEN * 2 + 2], *p;
    json_t  *welcome, *user;

    p = ngx_sprintf(session, "%P-%ui", ngx_pid, wc->session);

    user = ngx_http_chat_user_json(&wc->id);
    if (user == NULL) {
        return NGX_ERROR;
    }

    welcome = json_pack("{s:s, s:o, s:s%, s:I, s:{s:I, s:I, s:I}, s:s}",
                        "type", "welcome",
                        "user", user,
                        "session", session, (size_t) (p - session),
                        "heartbeat_s",
                          (json_int_t) (wc->conf->heartbeat / 1000),
                        "limits",
                          "max_message_size",
                            (json_int_t) wc->conf->max_message_size,
                          "max_message_length",
                            (json_int_t) wc->conf->max_message_length,
                          "max_json_depth",
                            (json_int_t) NGX_HTTP_CHAT_MAX_JSON_DEPTH,
                        "protocol", NGX_HTTP_CHAT_SUBPROTOCOL);

    if (welcome == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_chat_send_json_frame(wc, welcome);
}


ngx_int_t
ngx_http_chat_session_message(ngx_http_chat_conn_t *wc, u_char *data,
    size_t len)
{
    const char                    *err;
    ngx_int_t                      rc;
    ngx_http_chat_request_t        req;
    ngx_http_chat_main_conf_t     *cmcf;
    ngx_http_chat_request_type_t  *t;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    if (ngx_http_chat_request_parse(&req, data, len,
                                    NGX_HTTP_CHAT_MAX_JSON_DEPTH, &err)
        != 0)
    {
        ngx_http_chat_stat(cmcf, requests_bad, 1);
        rc = ngx_http_chat_reply_error(wc, req.id, "bad_request", err);
        ngx_http_chat_request_free(&req);
        return rc;
    }

    for (t = ngx_http_chat_request_types; t->handler; t++) {
        if (t->type.len == req.type_len
            && ngx_strncmp(t->type.data, req.type, req.type_len) == 0)
        {
            break;
        }
    }

    if (t->handler == NULL) {
        ngx_http_chat_stat(cmcf, requests_bad, 1);
        rc = ngx_http_chat_reply_error(wc, req.id, "bad_request",
                                       "unknown type");
        ngx_http_chat_request_free(&req);
        return rc;
    }

    rc = t->handler(wc, &req);

    ngx_http_chat_request_free(&req);

    return rc;
}


void
ngx_http_chat_session_close(ngx_http_chat_conn_t *wc)
{
    /* nothing is held per session yet */
}


static ngx_int_t
ngx_http_chat_ping(ngx_http_chat_conn_t *wc, ngx_http_chat_request_t *req)
{
    u_char      *p;
    ngx_time_t  *tp;
    u_char       now[NGX_HTTP_CHAT_TIME_LEN];

    tp = ngx_timeofday();
    p = ngx_http_chat_time(now, tp->sec, tp->msec);

    return ngx_http_chat_reply_ok(wc, req->id,
                                  json_pack("{s:s%}", "time", now,
                                            (size_t) (p - now)));
}


static ngx_int_t
ngx_http_chat_auth_refresh(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req)
{
    u_char               *p;
    json_t               *token, *data;
    const char           *err;
    ngx_http_chat_jwt_t   jwt;
    u_char                expires[NGX_HTTP_CHAT_TIME_LEN];

    token = json_object_get(req->root, "token");

    if (!json_is_string(token)) {
        return ngx_http_chat_reply_error(wc, req->id, "bad_request",
                                         "token must be a string");
    }

    if (wc->conf->jwt_key == NULL) {
        return ngx_http_chat_reply_error(wc, req->id, "bad_request",
                                         "this connection has no token "
                                         "to refresh");
    }

    if (ngx_http_chat_verify_token(wc->conf,
                                   (u_char *) json_string_value(token),
                                   json_string_length(token), &jwt, &err)
        != NGX_OK)
    {
        return ngx_http_chat_reply_error(wc, req->id, "unauthorized", err);
    }

    if (jwt.sub_len != wc->id.id.len
        || ngx_strncmp(jwt.sub, wc->id.id.data, jwt.sub_len) != 0)
    {
        ngx_http_chat_jwt_free(&jwt);
        return ngx_http_chat_reply_error(wc, req->id, "forbidden",
                                         "the token is for another user");
    }

    wc->id.exp = (time_t) jwt.exp;

    ngx_http_chat_jwt_free(&jwt);

    ngx_http_chat_ws_rearm(wc);

    if (wc->id.exp) {
        p = ngx_http_chat_time(expires, wc->id.exp, 0);
        data = json_pack("{s:s%}", "expires_at", expires,
                         (size_t) (p - expires));

    } else {
        data = json_pack("{s:n}", "expires_at");
    }

    return ngx_http_chat_reply_ok(wc, req->id, data);
}


static ngx_int_t
ngx_http_chat_no_storage(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req)
{
    return ngx_http_chat_reply_error(wc, req->id, "unavailable",
                                     "storage is not configured");
}


static ngx_int_t
ngx_http_chat_reply_ok(ngx_http_chat_conn_t *wc, json_t *id, json_t *data)
{
    json_t  *reply;

    if (data == NULL) {
        return NGX_ERROR;
    }

    /* jansson keeps insertion order: type and id come first */

    reply = json_pack("{s:s, s:O?, s:o}", "type", "ok", "id", id,
                      "data", data);
    if (reply == NULL) {
        return NGX_ERROR;
    }

    if (id == NULL) {
        json_object_del(reply, "id");
    }

    return ngx_http_chat_send_json_frame(wc, reply);
}


static ngx_int_t
ngx_http_chat_reply_error(ngx_http_chat_conn_t *wc, json_t *id,
    const char *code, const char *message)
{
    json_t  *reply;

    reply = json_pack("{s:s, s:O?, s:{s:s, s:s}}", "type", "error",
                      "id", id, "error", "code", code, "message", message);
    if (reply == NULL) {
        return NGX_ERROR;
    }

    if (id == NULL) {
        json_object_del(reply, "id");
    }

    return ngx_http_chat_send_json_frame(wc, reply);
}


/* serializes json (and drops the reference) into one text frame */

static ngx_int_t
ngx_http_chat_send_json_frame(ngx_http_chat_conn_t *wc, json_t *json)
{
    size_t                size;
    ngx_http_chat_buf_t  *buf;

    size = json_dumpb(json, NULL, 0, JSON_COMPACT);

    buf = size ? ngx_http_chat_buf_alloc(size, wc->connection->log) : NULL;
    if (buf == NULL) {
        json_decref(json);
        return NGX_ERROR;
    }

    buf->len = json_dumpb(json, (char *) buf->data, size, JSON_COMPACT);

    json_decref(json);

    return ngx_http_chat_ws_send_buf(wc, NGX_HTTP_CHAT_OP_TEXT, buf);
}
