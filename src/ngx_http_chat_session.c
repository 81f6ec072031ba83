
/*
 * The chat protocol on a WebSocket: the welcome, the request envelope and
 * its dispatch, ok and error replies.  It is the transport's handler for
 * a chat_websocket location: it sets the connection up in fan-out and
 * storage when it starts, and takes it out of all of them when it closes.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_request.h>


typedef ngx_int_t (*ngx_http_chat_request_pt)(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);


/* the session's own state, in the connection's pool: wc->data */
typedef struct {
    ngx_uint_t                    number;    /* the welcome's session id */
    ngx_queue_t                   typing;    /* conversations typed in */
    ngx_http_chat_bucket_t        buckets[NGX_HTTP_CHAT_WS_RATES];
                                             /* rates without a zone */
    /*
     * Watch sets asked of storage and not answered yet, and wc->revoked
     * when the first of them was asked: a set whose check ran before an
     * unwatch or a member leaving is checked again once installed.
     */
    ngx_uint_t                    watch_asks;
    ngx_uint_t                    watch_seen;
    unsigned                      rechecking:1;  /* watch set checked */
    unsigned                      recheck:1;     /* again, after it */
} ngx_http_chat_session_t;


typedef struct {
    ngx_str_t                     type;
    ngx_http_chat_request_pt      handler;    /* NULL: a storage request */
    ngx_uint_t                    stmt;
} ngx_http_chat_request_type_t;


static ngx_int_t ngx_http_chat_session_start(ngx_http_chat_conn_t *wc);
static ngx_int_t ngx_http_chat_session_welcome(ngx_http_chat_conn_t *wc);
static ngx_int_t ngx_http_chat_session_message(ngx_http_chat_conn_t *wc,
    ngx_http_chat_buf_t *msg);
static ngx_int_t ngx_http_chat_session_request(ngx_http_chat_conn_t *wc,
    u_char *data, size_t len);
static void ngx_http_chat_session_drained(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_session_closed(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_session_done(ngx_http_chat_store_done_t *done,
    json_t *result);
static ngx_int_t ngx_http_chat_ping(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);
static ngx_int_t ngx_http_chat_auth_refresh(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);
static ngx_int_t ngx_http_chat_presence_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);
static ngx_int_t ngx_http_chat_subscribe_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req);
static json_t *ngx_http_chat_user_ids(ngx_http_chat_request_t *req);
static void ngx_http_chat_session_watch_asked(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_session_watch_answered(ngx_http_chat_conn_t *wc);
static void ngx_http_chat_session_watch_done(
    ngx_http_chat_store_done_t *done, json_t *result);
static void ngx_http_chat_session_recheck_done(
    ngx_http_chat_store_done_t *done, json_t *result);
static void ngx_http_chat_session_subscribed(ngx_http_chat_conn_t *wc,
    ngx_http_chat_store_done_t *done, json_t *audience);
static void ngx_http_chat_session_count(ngx_http_chat_conn_t *wc,
    ngx_http_chat_store_done_t *done, json_t *ok);
static ngx_int_t ngx_http_chat_send_json_frame(ngx_http_chat_conn_t *wc,
    json_t *json);
static ngx_int_t ngx_http_chat_reply_ok(ngx_http_chat_conn_t *wc,
    json_t *id, json_t *data);


/* sized: one type too many for the counters (the end counts "other")
 * does not build */
static ngx_http_chat_request_type_t
    ngx_http_chat_request_types[NGX_HTTP_CHAT_REQUEST_TYPES] =
{
    { ngx_string("ping"), ngx_http_chat_ping, 0 },
    { ngx_string("auth.refresh"), ngx_http_chat_auth_refresh, 0 },

    { ngx_string("message.send"), NULL, NGX_HTTP_CHAT_STMT_SEND },
    { ngx_string("message.read"), NULL, NGX_HTTP_CHAT_STMT_READ },
    { ngx_string("message.delivered"), NULL, NGX_HTTP_CHAT_STMT_DELIVERED },
    { ngx_string("messages.history"), NULL, NGX_HTTP_CHAT_STMT_HISTORY },
    { ngx_string("message.edit"), NULL, NGX_HTTP_CHAT_STMT_EDIT },
    { ngx_string("message.delete"), NULL, NGX_HTTP_CHAT_STMT_DELETE },
    { ngx_string("conversation.create"), NULL,
      NGX_HTTP_CHAT_STMT_CONVERSATION_CREATE },
    { ngx_string("conversation.list"), NULL,
      NGX_HTTP_CHAT_STMT_CONVERSATION_LIST },
    { ngx_string("conversation.members"), NULL,
      NGX_HTTP_CHAT_STMT_CONVERSATION_MEMBERS },
    { ngx_string("sync"), NULL, NGX_HTTP_CHAT_STMT_SYNC },

    { ngx_string("typing"), NULL, NGX_HTTP_CHAT_STMT_TYPING },

    /* a handler and a statement: the statement when storage is there
     * (only the users one may know of), else the handler */
    { ngx_string("presence.query"), ngx_http_chat_presence_request,
      NGX_HTTP_CHAT_STMT_PRESENCE_AUDIENCE },

    /* the same check as presence.query; the ids allowed are watched */
    { ngx_string("presence.subscribe"), ngx_http_chat_subscribe_request,
      NGX_HTTP_CHAT_STMT_PRESENCE_AUDIENCE },
    { ngx_string("presence.count"), NULL,
      NGX_HTTP_CHAT_STMT_PRESENCE_MEMBERS },

    { ngx_null_string, NULL, 0 }
};


ngx_http_chat_ws_handler_t  ngx_http_chat_session_handler = {
    "serving chat",
    ngx_http_chat_session_start,
    ngx_http_chat_session_message,
    ngx_http_chat_session_drained,
    ngx_http_chat_session_closed,
    1
};


/* per worker process: numbers the sessions it serves */
static ngx_uint_t  ngx_http_chat_sessions;


/*
 * For chat_status: the request types, in the order of the counters; after
 * them "other" (NGX_HTTP_CHAT_REQUEST_TYPES counts it too), then NULL.
 */

ngx_str_t *
ngx_http_chat_session_request_name(ngx_uint_t i)
{
    static ngx_str_t  other = ngx_string("other");

    if (i >= NGX_HTTP_CHAT_REQUEST_TYPES) {
        return NULL;
    }

    if (ngx_http_chat_request_types[i].type.len) {
        return &ngx_http_chat_request_types[i].type;
    }

    if (i == 0 || ngx_http_chat_request_types[i - 1].type.len) {
        return &other;
    }

    return NULL;
}


/* the welcome, the connection in fan-out, then the user's name stored */

static ngx_int_t
ngx_http_chat_session_start(ngx_http_chat_conn_t *wc)
{
    json_t                      *arg;
    ngx_int_t                    rc;
    ngx_http_chat_session_t     *s;
    ngx_http_chat_main_conf_t   *cmcf;
    ngx_http_chat_store_done_t   done;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    s = ngx_pcalloc(wc->connection->pool, sizeof(ngx_http_chat_session_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->number = ++ngx_http_chat_sessions;
    ngx_queue_init(&s->typing);

    /* the store's queue of this connection's requests */
    ngx_queue_init(&wc->ops);

    wc->data = s;

    if (ngx_http_chat_session_welcome(wc) != NGX_OK
        || ngx_http_chat_fanout_add(wc) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (cmcf->pg == NULL) {
        return NGX_OK;
    }

    /*
     * One round trip before anything else: the user's name and avatar
     * from the token stored, and the default watch set, the direct
     * partners, read (one indexed query)
     */

    arg = ngx_http_chat_http_user_json(&wc->id);
    if (arg == NULL) {
        return NGX_ERROR;
    }

    done.handler = ngx_http_chat_session_watch_done;
    done.data = wc;
    done.type = 0;
    done.start = 0;

    rc = ngx_http_chat_store_ask(wc, NGX_HTTP_CHAT_STMT_SESSION_HELLO,
                                 arg, &done);
    json_decref(arg);

    if (rc == NGX_OK) {
        ngx_http_chat_session_watch_asked(wc);
    }

    return rc;
}


/* the direct partners, watched until the client subscribes */

static void
ngx_http_chat_session_watch_done(ngx_http_chat_store_done_t *done,
    json_t *result)
{
    json_t                *ids;
    ngx_http_chat_conn_t  *wc;

    wc = done->data;

    ids = json_object_get(json_object_get(result, "ok"), "user_ids");

    if (json_is_array(ids)
        && json_array_size(ids) <= NGX_HTTP_CHAT_WATCH_MAX
        && ngx_http_chat_fanout_watch(wc, ids) != NGX_OK)
    {
        ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_INTERNAL,
                               "out of memory");
        return;
    }

    ngx_http_chat_session_watch_answered(wc);
}


static void
ngx_http_chat_session_watch_asked(ngx_http_chat_conn_t *wc)
{
    ngx_http_chat_session_t  *s;

    s = wc->data;

    if (s->watch_asks++ == 0) {
        s->watch_seen = wc->revoked;
    }
}


/* a watch set came back (installed or not) */

static void
ngx_http_chat_session_watch_answered(ngx_http_chat_conn_t *wc)
{
    ngx_uint_t                revoked;
    ngx_http_chat_session_t  *s;

    s = wc->data;

    if (s->watch_asks == 0 || wc->close_sent || wc->finalized) {
        return;
    }

    revoked = (wc->revoked != s->watch_seen);

    if (--s->watch_asks == 0) {
        s->watch_seen = wc->revoked;
    }

    if (revoked) {
        ngx_http_chat_session_recheck(wc);
    }
}


/*
 * A member left a conversation the connection's user or a watched user
 * was in: the watch set is checked again with one query (what is not
 * allowed anymore is dropped).  Given to fan-out at init.
 */

void
ngx_http_chat_session_recheck(ngx_http_chat_conn_t *wc)
{
    json_t                      *ids, *arg;
    ngx_http_chat_session_t     *s;
    ngx_http_chat_store_done_t   done;

    s = wc->data;

    if (s == NULL) {
        return;
    }

    if (s->rechecking) {
        /* its query may have run before this change committed */
        s->recheck = 1;
        return;
    }

    ids = ngx_http_chat_fanout_watched(wc);
    arg = ids ? json_pack("{s:o}", "user_ids", ids) : NULL;

    if (arg == NULL) {
        return;
    }

    done.handler = ngx_http_chat_session_recheck_done;
    done.data = wc;
    done.type = 0;
    done.start = 0;

    s->rechecking = 1;

    if (ngx_http_chat_store_ask(wc, NGX_HTTP_CHAT_STMT_PRESENCE_AUDIENCE, arg,
                                &done)
        != NGX_OK)
    {
        s->rechecking = 0;
    }

    json_decref(arg);
}


static void
ngx_http_chat_session_recheck_done(ngx_http_chat_store_done_t *done,
    json_t *result)
{
    json_t                   *audience, *allowed, *none;
    const char               *key;
    ngx_http_chat_conn_t     *wc;
    ngx_http_chat_session_t  *s;

    wc = done->data;
    s = wc->data;
    s->rechecking = 0;

    audience = json_object_get(json_object_get(result, "ok"), "audience");

    if (!json_is_object(audience)) {
        /*
         * Storage down or refusing: what may not be allowed anymore is
         * not kept (fail closed); the client subscribes again.
         */
        none = json_array();

        if (none == NULL || ngx_http_chat_fanout_watch(wc, none) != NGX_OK) {
            ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_INTERNAL,
                                   "out of memory");
        }

        json_decref(none);
        s->recheck = 0;
        return;
    }

    json_object_foreach(audience, key, allowed) {
        if (!json_is_true(allowed)) {
            ngx_http_chat_fanout_unwatch(wc, (u_char *) key,
                                         ngx_strlen(key));
        }
    }

    if (s->recheck) {
        s->recheck = 0;
        ngx_http_chat_session_recheck(wc);
    }
}


static ngx_int_t
ngx_http_chat_session_welcome(ngx_http_chat_conn_t *wc)
{
    u_char                    session[NGX_INT64_LEN * 2 + 2], *p;
    json_t                   *welcome, *user;
    ngx_http_chat_session_t  *s;

    s = wc->data;

    p = ngx_sprintf(session, "%P-%ui", ngx_pid, s->number);

    user = ngx_http_chat_http_user_json(&wc->id);
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


static ngx_int_t
ngx_http_chat_session_message(ngx_http_chat_conn_t *wc,
    ngx_http_chat_buf_t *msg)
{
    ngx_int_t  rc;

    rc = ngx_http_chat_session_request(wc, msg ? msg->data : (u_char *) "",
                                       msg ? msg->len : 0);

    if (msg != NULL) {
        ngx_http_chat_ws_buf_release(msg);
    }

    return rc;
}


/* the client reads again: its next storage request may start */

static void
ngx_http_chat_session_drained(ngx_http_chat_conn_t *wc)
{
    if (!ngx_queue_empty(&wc->ops)) {
        ngx_http_chat_store_resume(wc);
    }
}


/* the connection goes away: whatever it was part of forgets it */

static void
ngx_http_chat_session_closed(ngx_http_chat_conn_t *wc)
{
    ngx_http_chat_session_t  *s;

    s = wc->data;

    /* set up only once the session started (the 101 may have failed) */

    if (s != NULL) {
        ngx_http_chat_typing_stop_all(&s->typing);
        ngx_http_chat_fanout_remove(wc);
        ngx_http_chat_store_detach(wc);
    }

    ngx_http_chat_presence_remove(wc);
}


static ngx_int_t
ngx_http_chat_session_request(ngx_http_chat_conn_t *wc, u_char *data,
    size_t len)
{
    uint64_t                       parsed;
    ngx_int_t                      rc;
    ngx_uint_t                     type;
    ngx_msec_t                     wait;
    const char                    *err;
    ngx_http_chat_request_t        req;
    ngx_http_chat_session_t       *s;
    ngx_http_chat_store_done_t     done;
    ngx_http_chat_main_conf_t     *cmcf;
    ngx_http_chat_request_type_t  *t;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    rc = ngx_http_chat_request_parse(&req, data, len,
                                     NGX_HTTP_CHAT_MAX_JSON_DEPTH, &err);

    /* request latency: from here to the reply queued */
    parsed = ngx_http_chat_usec();

    /* unparsable, or a type not known: "other", the table's end */
    t = ngx_http_chat_request_types;

    if (rc == 0) {
        for ( /* void */ ; t->type.len; t++) {
            if (t->type.len == req.type_len
                && ngx_strncmp(t->type.data, req.type, req.type_len) == 0)
            {
                break;
            }
        }

    } else {
        while (t->type.len) {
            t++;
        }
    }

    type = t - ngx_http_chat_request_types;

    ngx_http_chat_stat(cmcf, requests[type], 1);

    if (t->type.len == 0) {
        ngx_http_chat_stat(cmcf, requests_bad, 1);
        rc = ngx_http_chat_session_error(wc, req.id, "bad_request",
                                         rc == 0 ? "unknown type" : err);

    } else if (t->handler != NULL && (t->stmt == 0 || cmcf->pg == NULL)) {
        /* answered here (a type with a statement too: without storage) */
        rc = t->handler(wc, &req);

    } else if (cmcf->pg == NULL) {
        rc = ngx_http_chat_session_error(wc, req.id, "unavailable",
                                         "storage is not configured");

    } else {
        wait = 0;

        if (t->stmt == NGX_HTTP_CHAT_STMT_SEND
            || t->stmt == NGX_HTTP_CHAT_STMT_TYPING)
        {
            s = wc->data;
            wait = ngx_http_chat_rate_check(wc, s->buckets,
                                        t->stmt == NGX_HTTP_CHAT_STMT_SEND
                                        ? NGX_HTTP_CHAT_RATE_SEND
                                        : NGX_HTTP_CHAT_RATE_TYPING);

        } else if (t->stmt == NGX_HTTP_CHAT_STMT_PRESENCE_MEMBERS
                   || t->handler == ngx_http_chat_subscribe_request)
        {
            /* a read of many rows or ids: chat_search_rate */
            s = wc->data;
            wait = ngx_http_chat_rate_check(wc, s->buckets,
                                            NGX_HTTP_CHAT_RATE_SEARCH);
        }

        if (wait == 0) {
            /* the reply comes later: its latency is recorded then */
            done.handler = ngx_http_chat_session_done;
            done.data = wc;
            done.id = req.id;
            /* typing may be answered without storage, from the request */
            done.req = (t->stmt == NGX_HTTP_CHAT_STMT_TYPING) ? req.root
                                                             : NULL;
            done.type = type;
            done.start = parsed;

            rc = ngx_http_chat_store_request(wc, &req, t->stmt, &done);
            ngx_http_chat_request_free(&req);

            if (rc == NGX_OK && t->handler == ngx_http_chat_subscribe_request)
            {
                ngx_http_chat_session_watch_asked(wc);
            }

            return rc;
        }

        ngx_http_chat_stat(cmcf, rate_limited, 1);
        rc = ngx_http_chat_session_limited(wc, req.id, wait);
    }

    if (rc == NGX_OK) {
        ngx_http_chat_observe_in(cmcf, request_time[type],
                                 ngx_http_chat_usec() - parsed);
    }

    ngx_http_chat_request_free(&req);

    return rc;
}


/* a storage request is answered: result NULL if storage was unavailable */

static void
ngx_http_chat_session_done(ngx_http_chat_store_done_t *done, json_t *result)
{
    size_t                    i;
    json_t                   *events, *ev, *error, *data;
    ngx_uint_t                stmt;
    ngx_http_chat_conn_t     *wc;
    ngx_http_chat_session_t  *s;

    wc = done->data;
    s = wc->data;
    stmt = ngx_http_chat_request_types[done->type].stmt;

    events = result ? json_object_get(result, "events") : NULL;
    error = result ? json_object_get(result, "error") : NULL;

    if (result == NULL && stmt == NGX_HTTP_CHAT_STMT_TYPING
        && ngx_http_chat_typing_offline(wc, &s->typing, done->req) == NGX_OK)
    {
        /* answered from what this worker knows of the conversation */
        (void) ngx_http_chat_session_reply(wc, done->id, NULL, NULL);

    } else if (result == NULL) {
        (void) ngx_http_chat_session_error(wc, done->id, "unavailable",
                                           "storage is unavailable, "
                                           "retry later");

    } else if (error != NULL) {
        (void) ngx_http_chat_session_reply(wc, done->id, NULL, error);

    } else if (ngx_http_chat_request_types[done->type].handler
               == ngx_http_chat_subscribe_request)
    {
        ngx_http_chat_session_subscribed(wc, done,
                   json_object_get(json_object_get(result, "ok"),
                                   "audience"));

    } else if (stmt == NGX_HTTP_CHAT_STMT_PRESENCE_MEMBERS) {
        ngx_http_chat_session_count(wc, done, json_object_get(result, "ok"));

    } else if (stmt == NGX_HTTP_CHAT_STMT_PRESENCE_AUDIENCE) {
        /* those the user may know of, from the zone; the rest null */
        data = ngx_http_chat_presence_answer(
                   json_object_get(json_object_get(result, "ok"),
                                   "audience"));
        data = data ? json_pack("{s:o}", "presence", data) : NULL;

        if (data == NULL) {
            (void) ngx_http_chat_session_error(wc, done->id, "internal",
                                               "out of memory");

        } else {
            (void) ngx_http_chat_session_reply(wc, done->id, data, NULL);
            json_decref(data);
        }

    } else {
        if (stmt == NGX_HTTP_CHAT_STMT_SYNC) {
            /* the changes replay to this connection, then the answer */

            json_array_foreach(events, i, ev) {
                (void) ngx_http_chat_session_event(wc,
                                             json_object_get(ev, "event"));
            }
        }

        (void) ngx_http_chat_session_reply(wc, done->id,
                                           json_object_get(result, "ok"),
                                           NULL);

        if (stmt == NGX_HTTP_CHAT_STMT_TYPING) {
            /* the store sends the events out: their expiry starts here */

            json_array_foreach(events, i, ev) {
                ngx_http_chat_typing_update(wc, &s->typing,
                                            json_object_get(ev, "event"),
                                            json_object_get(ev, "to"));
            }
        }
    }

    if (ngx_http_chat_request_types[done->type].handler
        == ngx_http_chat_subscribe_request)
    {
        ngx_http_chat_session_watch_answered(wc);
    }

    ngx_http_chat_latency(request_time[done->type],
                          ngx_http_chat_usec() - done->start);
}


static ngx_int_t
ngx_http_chat_ping(ngx_http_chat_conn_t *wc, ngx_http_chat_request_t *req)
{
    u_char      *p;
    ngx_time_t  *tp;
    u_char       now[NGX_HTTP_CHAT_TIME_LEN];

    tp = ngx_timeofday();
    p = ngx_http_chat_http_time(now, tp->sec, tp->msec);

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
        return ngx_http_chat_session_error(wc, req->id, "bad_request",
                                         "token must be a string");
    }

    if (wc->conf->jwt_key == NULL) {
        return ngx_http_chat_session_error(wc, req->id, "bad_request",
                                         "this connection has no token "
                                         "to refresh");
    }

    if (ngx_http_chat_auth_verify_token(wc->conf,
                                   (u_char *) json_string_value(token),
                                   json_string_length(token), &jwt, &err)
        != NGX_OK)
    {
        return ngx_http_chat_session_error(wc, req->id, "unauthorized", err);
    }

    if (jwt.sub_len != wc->id.id.len
        || ngx_strncmp(jwt.sub, wc->id.id.data, jwt.sub_len) != 0)
    {
        ngx_http_chat_jwt_free(&jwt);
        ngx_http_chat_count(auth_failures[NGX_HTTP_CHAT_AUTH_WRONG_USER], 1);
        return ngx_http_chat_session_error(wc, req->id, "forbidden",
                                         "the token is for another user");
    }

    wc->id.exp = (time_t) jwt.exp;

    ngx_http_chat_jwt_free(&jwt);

    ngx_http_chat_ws_rearm(wc);

    if (wc->id.exp) {
        p = ngx_http_chat_http_time(expires, wc->id.exp, 0);
        data = json_pack("{s:s%}", "expires_at", expires,
                         (size_t) (p - expires));

    } else {
        data = json_pack("{s:n}", "expires_at");
    }

    return ngx_http_chat_reply_ok(wc, req->id, data);
}


/* user_ids of presence.query and presence.subscribe, or NULL: invalid */

static json_t *
ngx_http_chat_user_ids(ngx_http_chat_request_t *req)
{
    size_t   i;
    json_t  *ids, *id;

    ids = json_object_get(req->root, "user_ids");

    if (!json_is_array(ids) || json_array_size(ids) > NGX_HTTP_CHAT_WATCH_MAX)
    {
        return NULL;
    }

    json_array_foreach(ids, i, id) {
        if (!json_is_string(id) || json_string_length(id) == 0
            || json_string_length(id) > NGX_HTTP_CHAT_JWT_MAX_SUB)
        {
            return NULL;
        }
    }

    return ids;
}


/* without storage: every id is answered (as presence.query), and watched */

static ngx_int_t
ngx_http_chat_presence_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req)
{
    json_t  *ids, *presence;

    ids = ngx_http_chat_user_ids(req);

    if (ids == NULL) {
        return ngx_http_chat_session_error(wc, req->id, "bad_request",
                                           "user_ids must be an array of "
                                           "at most 200 user ids");
    }

    presence = ngx_http_chat_presence_query(ids);
    if (presence == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_chat_reply_ok(wc, req->id,
                                  json_pack("{s:o}", "presence", presence));
}


static ngx_int_t
ngx_http_chat_subscribe_request(ngx_http_chat_conn_t *wc,
    ngx_http_chat_request_t *req)
{
    json_t  *ids;

    ids = ngx_http_chat_user_ids(req);

    if (ids != NULL && ngx_http_chat_fanout_watch(wc, ids) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_chat_presence_request(wc, req);
}


/*
 * presence.subscribe answered by storage: the ids allowed (audience true)
 * replace the watch set, and the reply is presence.query's.
 */

static void
ngx_http_chat_session_subscribed(ngx_http_chat_conn_t *wc,
    ngx_http_chat_store_done_t *done, json_t *audience)
{
    json_t      *ids, *allowed, *data;
    const char  *key;

    ids = json_array();
    data = NULL;

    json_object_foreach(audience, key, allowed) {
        if (ids != NULL && json_is_true(allowed)
            && json_array_append_new(ids, json_string(key)) != 0)
        {
            json_decref(ids);
            ids = NULL;
        }
    }

    if (ids != NULL && ngx_http_chat_fanout_watch(wc, ids) == NGX_OK) {
        data = ngx_http_chat_presence_answer(audience);
        data = data ? json_pack("{s:o}", "presence", data) : NULL;
    }

    json_decref(ids);

    if (data == NULL) {
        (void) ngx_http_chat_session_error(wc, done->id, "internal",
                                           "out of memory");
        return;
    }

    (void) ngx_http_chat_session_reply(wc, done->id, data, NULL);
    json_decref(data);
}


/*
 * presence.count: the members online, counted now in the zone.
 * chat.api_presence_members always answers conversation_id, members (all
 * of them, an integer) and user_ids (those whose presence the user may
 * know).
 */

static void
ngx_http_chat_session_count(ngx_http_chat_conn_t *wc,
    ngx_http_chat_store_done_t *done, json_t *ok)
{
    json_t  *ids, *data;

    ids = json_object_get(ok, "user_ids");

    data = json_pack("{s:O, s:I, s:I}",
                     "conversation_id", json_object_get(ok, "conversation_id"),
                     "members",
                     json_integer_value(json_object_get(ok, "members")),
                     "online",
                     (json_int_t) ngx_http_chat_presence_count(ids));

    if (data == NULL) {
        (void) ngx_http_chat_session_error(wc, done->id, "internal",
                                           "out of memory");
        return;
    }

    (void) ngx_http_chat_session_reply(wc, done->id, data, NULL);
    json_decref(data);
}


/* data: consumed */

static ngx_int_t
ngx_http_chat_reply_ok(ngx_http_chat_conn_t *wc, json_t *id, json_t *data)
{
    ngx_int_t  rc;

    if (data == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_chat_session_reply(wc, id, data, NULL);

    json_decref(data);

    return rc;
}


/* an ok reply with data, or an error reply with error; both borrowed */

ngx_int_t
ngx_http_chat_session_reply(ngx_http_chat_conn_t *wc, json_t *id,
    json_t *data, json_t *error)
{
    json_t  *reply;

    /* jansson keeps insertion order: type and id come first */

    if (error != NULL) {
        reply = json_pack("{s:s, s:O?, s:O}", "type", "error", "id", id,
                          "error", error);

    } else if (data != NULL) {
        reply = json_pack("{s:s, s:O?, s:O}", "type", "ok", "id", id,
                          "data", data);

    } else {
        reply = json_pack("{s:s, s:O?, s:{}}", "type", "ok", "id", id,
                          "data");
    }

    if (reply == NULL) {
        return NGX_ERROR;
    }

    if (id == NULL) {
        json_object_del(reply, "id");
    }

    return ngx_http_chat_send_json_frame(wc, reply);
}


ngx_int_t
ngx_http_chat_session_error(ngx_http_chat_conn_t *wc, json_t *id,
    const char *code, const char *message)
{
    json_t     *error;
    ngx_int_t   rc;

    error = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (error == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_chat_session_reply(wc, id, NULL, error);

    json_decref(error);

    return rc;
}


/* rate_limited, with the wait the client should respect */

ngx_int_t
ngx_http_chat_session_limited(ngx_http_chat_conn_t *wc, json_t *id,
    ngx_msec_t wait)
{
    json_t     *error;
    ngx_int_t   rc;

    error = json_pack("{s:s, s:s, s:I}", "code", "rate_limited",
                      "message", "too many requests, slow down",
                      "retry_after_ms", (json_int_t) wait);
    if (error == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_chat_session_reply(wc, id, NULL, error);

    json_decref(error);

    return rc;
}


/* an event for this connection alone; borrowed */

ngx_int_t
ngx_http_chat_session_event(ngx_http_chat_conn_t *wc, json_t *event)
{
    json_t  *ordered;

    if (event == NULL) {
        return NGX_OK;
    }

    ordered = ngx_http_chat_http_event_json(event);
    if (ordered == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_chat_send_json_frame(wc, ordered);
}


/* serializes json (and drops the reference) into one text frame */

static ngx_int_t
ngx_http_chat_send_json_frame(ngx_http_chat_conn_t *wc, json_t *json)
{
    char                 *text;
    size_t                size;
    ngx_http_chat_buf_t  *buf;

    /* one pass: json_dumpb() would serialise twice to size the buffer */
    text = json_dumps(json, JSON_COMPACT);
    json_decref(json);

    size = text ? ngx_strlen(text) : 0;

    buf = size ? ngx_http_chat_ws_buf_alloc(size, wc->connection->log) : NULL;
    if (buf == NULL) {
        free(text);
        return NGX_ERROR;
    }

    buf->len = size;
    ngx_memcpy(buf->data, text, size);
    free(text);

    return ngx_http_chat_ws_send_buf(wc, NGX_HTTP_CHAT_OP_TEXT, buf);
}
