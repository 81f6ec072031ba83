
/*
 * Delivery to the connections of this worker: user id -> connections.
 * An event is serialized once and its frame is shared by every local
 * recipient: per recipient, only a queue entry and a reference.
 */


#include <ngx_http_chat.h>


typedef struct {
    ngx_str_node_t                sn;        /* key: crc32 of the user id */
    ngx_queue_t                   conns;
    u_char                        data[1];
} ngx_http_chat_user_t;


static ngx_http_chat_user_t *ngx_http_chat_fanout_find(u_char *user,
    size_t len, uint32_t hash);


/* per worker process */
static ngx_rbtree_t       ngx_http_chat_users;
static ngx_rbtree_node_t  ngx_http_chat_users_sentinel;


void
ngx_http_chat_fanout_init_process(void)
{
    ngx_rbtree_init(&ngx_http_chat_users, &ngx_http_chat_users_sentinel,
                    ngx_str_rbtree_insert_value);
}


ngx_int_t
ngx_http_chat_fanout_add(ngx_http_chat_conn_t *wc)
{
    uint32_t               hash;
    ngx_http_chat_user_t  *u;

    hash = ngx_crc32_short(wc->id.id.data, wc->id.id.len);

    u = ngx_http_chat_fanout_find(wc->id.id.data, wc->id.id.len, hash);

    if (u == NULL) {
        u = ngx_alloc(offsetof(ngx_http_chat_user_t, data) + wc->id.id.len,
                      wc->connection->log);
        if (u == NULL) {
            return NGX_ERROR;
        }

        u->sn.node.key = hash;
        u->sn.str.data = u->data;
        u->sn.str.len = wc->id.id.len;
        ngx_memcpy(u->data, wc->id.id.data, wc->id.id.len);
        ngx_queue_init(&u->conns);

        ngx_rbtree_insert(&ngx_http_chat_users, &u->sn.node);
    }

    ngx_queue_insert_tail(&u->conns, &wc->fanout);
    wc->fanout_user = u;
    wc->fanout_since = ngx_current_msec;

    return NGX_OK;
}


void
ngx_http_chat_fanout_remove(ngx_http_chat_conn_t *wc)
{
    ngx_http_chat_user_t  *u;

    u = wc->fanout_user;

    if (u == NULL) {
        return;
    }

    ngx_queue_remove(&wc->fanout);
    wc->fanout_user = NULL;

    if (ngx_queue_empty(&u->conns)) {
        ngx_rbtree_delete(&ngx_http_chat_users, &u->sn.node);
        ngx_free(u);
    }
}


/*
 * Sends {"type": ..., ...} to every local connection of the users in to
 * (a JSON array of user ids).  Changes of a conversation come here through
 * ngx_http_chat_order_deliver(), which puts them in order.
 */

void
ngx_http_chat_fanout_deliver(json_t *event, json_t *to, ngx_log_t *log)
{
    char                       *text;
    size_t                      size, i;
    json_t                     *user, *ordered;
    ngx_uint_t                  ephemeral;
    const char                 *type;
    ngx_queue_t                *q;
    ngx_http_chat_main_conf_t  *cmcf;
    ngx_http_chat_buf_t        *buf;
    ngx_http_chat_user_t       *u;
    ngx_http_chat_conn_t       *wc;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_chat_module);

    if (!json_is_array(to)) {
        return;
    }

    /* typing and presence may be lost; the others never silently */
    type = json_string_value(json_object_get(event, "type"));
    ephemeral = type && (ngx_strcmp(type, "typing") == 0
                         || ngx_strcmp(type, "presence") == 0);

    buf = NULL;

    json_array_foreach(to, i, user) {

        if (!json_is_string(user)) {
            continue;
        }

        u = ngx_http_chat_fanout_find((u_char *) json_string_value(user),
                                      json_string_length(user),
                                      ngx_crc32_short(
                                          (u_char *) json_string_value(user),
                                          json_string_length(user)));
        if (u == NULL) {
            continue;
        }

        if (buf == NULL) {
            ordered = ngx_http_chat_http_event_json(event);
            if (ordered == NULL) {
                return;
            }

            /* one pass: json_dumpb() would serialise twice to size it */
            text = json_dumps(ordered, JSON_COMPACT);
            json_decref(ordered);

            size = text ? ngx_strlen(text) : 0;

            buf = size ? ngx_http_chat_ws_buf_alloc(size, log) : NULL;
            if (buf == NULL) {
                free(text);
                return;
            }

            buf->len = size;
            ngx_memcpy(buf->data, text, size);
            free(text);
        }

        /* queuing never frees a connection (see ngx_http_chat_ws_close) */

        for (q = ngx_queue_head(&u->conns);
             q != ngx_queue_sentinel(&u->conns);
             q = ngx_queue_next(q))
        {
            wc = ngx_queue_data(q, ngx_http_chat_conn_t, fanout);

            if (wc->close_sent || wc->finalized) {
                continue;
            }

            /*
             * A client that does not keep up: what can be lost is dropped
             * from half the send buffer on; past all of it, the client is
             * closed with 1013 and resumes with sync, so nothing is lost.
             */

            if (wc->out_bytes + buf->len > wc->conf->send_buffer / 2) {

                if (ephemeral) {
                    ngx_http_chat_stat(cmcf, events_dropped, 1);
                    continue;
                }

                if (wc->out_bytes + buf->len > wc->conf->send_buffer) {
                    ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                                  "chat: client does not keep up, %uz bytes "
                                  "unsent: closing with 1013", wc->out_bytes);
                    ngx_http_chat_stat(cmcf,
                                       closes[NGX_HTTP_CHAT_CLOSED_SLOW], 1);
                    ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_TRY_AGAIN,
                                           "too slow: resume with sync");
                    continue;
                }
            }

            buf->refs++;

            if (ngx_http_chat_ws_send_buf(wc, NGX_HTTP_CHAT_OP_TEXT, buf)
                != NGX_OK)
            {
                ngx_http_chat_ws_close(wc, NGX_HTTP_CHAT_CLOSE_INTERNAL,
                                       "out of memory");
            }
        }
    }

    if (buf != NULL) {
        /* the reference taken at allocation */
        ngx_http_chat_ws_buf_release(buf);
    }
}


static ngx_http_chat_user_t *
ngx_http_chat_fanout_find(u_char *user, size_t len, uint32_t hash)
{
    ngx_str_t  name;

    name.data = user;
    name.len = len;

    return (ngx_http_chat_user_t *)
               ngx_str_rbtree_lookup(&ngx_http_chat_users, &name, hash);
}


/*
 * Every connection of this worker: its events cannot be trusted anymore
 * (its chat_zone queue overflowed).
 */

void
ngx_http_chat_fanout_close_all(unsigned code, const char *reason)
{
    ngx_queue_t           *q;
    ngx_rbtree_node_t     *node, *sentinel;
    ngx_http_chat_user_t  *u;
    ngx_http_chat_conn_t  *wc;

    node = ngx_http_chat_users.root;
    sentinel = ngx_http_chat_users.sentinel;

    if (node == sentinel) {
        return;
    }

    /* closing queues a Close and frees nothing: the walk is safe */

    for (node = ngx_rbtree_min(node, sentinel);
         node != NULL;
         node = ngx_rbtree_next(&ngx_http_chat_users, node))
    {
        u = (ngx_http_chat_user_t *) node;

        for (q = ngx_queue_head(&u->conns);
             q != ngx_queue_sentinel(&u->conns);
             q = ngx_queue_next(q))
        {
            wc = ngx_queue_data(q, ngx_http_chat_conn_t, fanout);

            if (!wc->close_sent && !wc->finalized) {
                ngx_http_chat_count(closes[NGX_HTTP_CHAT_CLOSED_OVERFLOW], 1);
            }

            ngx_http_chat_ws_close(wc, code, reason);
        }
    }
}


/* whether the user has a connection in this worker */

ngx_uint_t
ngx_http_chat_fanout_online(u_char *user, size_t len)
{
    return ngx_http_chat_fanout_find(user, len, ngx_crc32_short(user, len))
           != NULL;
}
