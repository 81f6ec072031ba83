
/*
 * The REST routes: a small hand-written matcher, since the set is fixed
 * and the parameters are typed (ids, user ids).
 */


#include <string.h>

#include <ngx_http_chat_route.h>


#define G  NGX_HTTP_CHAT_M_GET
#define P  NGX_HTTP_CHAT_M_POST
#define U  NGX_HTTP_CHAT_M_PUT
#define A  NGX_HTTP_CHAT_M_PATCH
#define D  NGX_HTTP_CHAT_M_DELETE


static const struct {
    unsigned     methods;
    const char  *allow;
    const char  *name;
} ngx_http_chat_routes[NGX_HTTP_CHAT_ROUTE_COUNT] = {
    { 0,         "",
      "unknown" },
    { G | P,     "GET, HEAD, POST",
      "conversations" },
    { G | A | D, "GET, HEAD, PATCH, DELETE",
      "conversations/{id}" },
    { U | D,     "PUT, DELETE",
      "conversations/{id}/archive" },
    { U | D,     "PUT, DELETE",
      "conversations/{id}/mute" },
    { G | P,     "GET, HEAD, POST",
      "conversations/{id}/members" },
    { D,         "DELETE",
      "conversations/{id}/members/{user}" },
    { G | P,     "GET, HEAD, POST",
      "conversations/{id}/messages" },
    { P,         "POST",
      "conversations/{id}/read" },
    { A | D,     "PATCH, DELETE",
      "messages/{id}" },
    { G,         "GET, HEAD",
      "messages/search" },
    { G,         "GET, HEAD",
      "unread" },
    { G,         "GET, HEAD",
      "users/search" },
    { G,         "GET, HEAD",
      "users/me" },
    { G | P,     "GET, HEAD, POST",
      "contacts" },
    { D,         "DELETE",
      "contacts/{user}" },
    { G,         "GET, HEAD",
      "blocks" },
    { U | D,     "PUT, DELETE",
      "blocks/{user}" },
    { G,         "GET, HEAD",
      "presence" },
    { P,         "POST",
      "uploads" },
    { G,         "GET, HEAD",
      "files/{id}" }
};


static int ngx_http_chat_route_rest(const u_char *p, const u_char *end,
    const char *word);
static int ngx_http_chat_route_word(const u_char **p, const u_char *end,
    const char *word);
static int ngx_http_chat_route_id(const u_char **p, const u_char *end,
    int64_t *id);
static int ngx_http_chat_route_user(ngx_http_chat_route_t *rt,
    const u_char *p, const u_char *end);


int
ngx_http_chat_route_parse(ngx_http_chat_route_t *rt, const u_char *path,
    size_t len)
{
    const u_char  *p, *end;

    memset(rt, 0, sizeof(ngx_http_chat_route_t));

    p = path;
    end = path + len;

    if (ngx_http_chat_route_word(&p, end, "conversations")) {

        if (p == end) {
            rt->route = NGX_HTTP_CHAT_ROUTE_CONVERSATIONS;
            return 0;
        }

        if (*p++ != '/' || ngx_http_chat_route_id(&p, end, &rt->id) != 0) {
            goto none;
        }

        if (p == end) {
            rt->route = NGX_HTTP_CHAT_ROUTE_CONVERSATION;
            return 0;
        }

        if (*p++ != '/') {
            goto none;
        }

        if (ngx_http_chat_route_word(&p, end, "members")) {
            if (p == end) {
                rt->route = NGX_HTTP_CHAT_ROUTE_MEMBERS;
                return 0;
            }

            if (*p++ != '/' || ngx_http_chat_route_user(rt, p, end) != 0) {
                goto none;
            }

            rt->route = NGX_HTTP_CHAT_ROUTE_MEMBER;
            return 0;
        }

        if (ngx_http_chat_route_rest(p, end, "archive")) {
            rt->route = NGX_HTTP_CHAT_ROUTE_ARCHIVE;

        } else if (ngx_http_chat_route_rest(p, end, "mute")) {
            rt->route = NGX_HTTP_CHAT_ROUTE_MUTE;

        } else if (ngx_http_chat_route_rest(p, end, "messages")) {
            rt->route = NGX_HTTP_CHAT_ROUTE_MESSAGES;

        } else if (ngx_http_chat_route_rest(p, end, "read")) {
            rt->route = NGX_HTTP_CHAT_ROUTE_READ;

        } else {
            goto none;
        }

        return 0;
    }

    if (ngx_http_chat_route_word(&p, end, "messages/")) {

        if (ngx_http_chat_route_rest(p, end, "search")) {
            rt->route = NGX_HTTP_CHAT_ROUTE_MESSAGE_SEARCH;
            return 0;
        }

        if (ngx_http_chat_route_id(&p, end, &rt->id) != 0 || p != end) {
            goto none;
        }

        rt->route = NGX_HTTP_CHAT_ROUTE_MESSAGE;
        return 0;
    }

    if (ngx_http_chat_route_word(&p, end, "users/")) {

        if (ngx_http_chat_route_rest(p, end, "search")) {
            rt->route = NGX_HTTP_CHAT_ROUTE_USER_SEARCH;
            return 0;
        }

        if (ngx_http_chat_route_rest(p, end, "me")) {
            rt->route = NGX_HTTP_CHAT_ROUTE_ME;
            return 0;
        }

        goto none;
    }

    if (ngx_http_chat_route_word(&p, end, "contacts")) {

        if (p == end) {
            rt->route = NGX_HTTP_CHAT_ROUTE_CONTACTS;
            return 0;
        }

        if (*p++ != '/' || ngx_http_chat_route_user(rt, p, end) != 0) {
            goto none;
        }

        rt->route = NGX_HTTP_CHAT_ROUTE_CONTACT;
        return 0;
    }

    if (ngx_http_chat_route_word(&p, end, "blocks")) {

        if (p == end) {
            rt->route = NGX_HTTP_CHAT_ROUTE_BLOCKS;
            return 0;
        }

        if (*p++ != '/' || ngx_http_chat_route_user(rt, p, end) != 0) {
            goto none;
        }

        rt->route = NGX_HTTP_CHAT_ROUTE_BLOCK;
        return 0;
    }

    if (ngx_http_chat_route_rest(p, end, "unread")) {
        rt->route = NGX_HTTP_CHAT_ROUTE_UNREAD;
        return 0;
    }

    if (ngx_http_chat_route_rest(p, end, "presence")) {
        rt->route = NGX_HTTP_CHAT_ROUTE_PRESENCE;
        return 0;
    }

    if (ngx_http_chat_route_rest(p, end, "uploads")) {
        rt->route = NGX_HTTP_CHAT_ROUTE_UPLOADS;
        return 0;
    }

    if (ngx_http_chat_route_word(&p, end, "files/")) {

        if (ngx_http_chat_route_id(&p, end, &rt->id) != 0 || p != end) {
            goto none;
        }

        rt->route = NGX_HTTP_CHAT_ROUTE_FILE;
        return 0;
    }

none:

    memset(rt, 0, sizeof(ngx_http_chat_route_t));

    return -1;
}


unsigned
ngx_http_chat_route_methods(ngx_http_chat_route_e route)
{
    if ((unsigned) route >= NGX_HTTP_CHAT_ROUTE_COUNT) {
        return 0;
    }

    return ngx_http_chat_routes[route].methods;
}


const char *
ngx_http_chat_route_allow(ngx_http_chat_route_e route)
{
    if ((unsigned) route >= NGX_HTTP_CHAT_ROUTE_COUNT) {
        return "";
    }

    return ngx_http_chat_routes[route].allow;
}


const char *
ngx_http_chat_route_name(ngx_http_chat_route_e route)
{
    if ((unsigned) route >= NGX_HTTP_CHAT_ROUTE_COUNT) {
        route = NGX_HTTP_CHAT_ROUTE_NONE;
    }

    return ngx_http_chat_routes[route].name;
}


/* the rest of the path is exactly word */

static int
ngx_http_chat_route_rest(const u_char *p, const u_char *end,
    const char *word)
{
    size_t  n;

    n = strlen(word);

    return (size_t) (end - p) == n && memcmp(p, word, n) == 0;
}


/* consumes word if the path continues with it */

static int
ngx_http_chat_route_word(const u_char **p, const u_char *end,
    const char *word)
{
    size_t  n;

    n = strlen(word);

    if ((size_t) (end - *p) < n || memcmp(*p, word, n) != 0) {
        return 0;
    }

    *p += n;

    return 1;
}


/* a positive decimal id without leading zeros, up to the next '/' */

static int
ngx_http_chat_route_id(const u_char **p, const u_char *end, int64_t *id)
{
    int64_t        v;
    const u_char  *s;

    s = *p;
    v = 0;

    if (s == end || *s < '1' || *s > '9') {
        return -1;
    }

    while (s < end && *s >= '0' && *s <= '9') {
        if (v > (INT64_MAX - (*s - '0')) / 10) {
            return -1;
        }

        v = v * 10 + (*s - '0');
        s++;
    }

    if (s < end && *s != '/') {
        return -1;
    }

    *p = s;
    *id = v;

    return 0;
}


/* the rest of the path is the user id */

static int
ngx_http_chat_route_user(ngx_http_chat_route_t *rt, const u_char *p,
    const u_char *end)
{
    const u_char  *s;

    if (p == end || (size_t) (end - p) > NGX_HTTP_CHAT_ROUTE_MAX_USER) {
        return -1;
    }

    for (s = p; s < end; s++) {
        if (*s < 0x20 || *s == 0x7f) {
            return -1;
        }
    }

    rt->user = p;
    rt->user_len = (size_t) (end - p);

    return 0;
}
