
/*
 * Unit tests of the REST route matcher: every route with its parameters,
 * the methods and Allow lines, and what must not match (prefixes and
 * extensions of routes, bad ids, bad user ids, empty segments).
 */


#include <stdint.h>
#include <sys/types.h>

#include <ngx_http_chat_route.h>
#include <unit.h>


#define R(x)  NGX_HTTP_CHAT_ROUTE_ ## x


static ngx_http_chat_route_t
parse(const char *path, int *rc)
{
    ngx_http_chat_route_t  rt;

    *rc = ngx_http_chat_route_parse(&rt, (const u_char *) path,
                                    strlen(path));
    return rt;
}


static void
match(const char *path, ngx_http_chat_route_e route, int64_t id,
    const char *user)
{
    int                    rc;
    ngx_http_chat_route_t  rt;

    rt = parse(path, &rc);
    CHECK_EQ(rc, 0);
    CHECK_EQ(rt.route, route);
    CHECK_EQ(rt.id, id);

    if (user == NULL) {
        CHECK(rt.user == NULL && rt.user_len == 0);

    } else {
        CHECK_EQ(rt.user_len, strlen(user));
        CHECK(rt.user != NULL
              && memcmp(rt.user, user, rt.user_len) == 0);
    }

    if (rc != 0) {
        fprintf(stderr, "  path: \"%s\"\n", path);
    }
}


static void
no_match(const char *path, size_t len)
{
    ngx_http_chat_route_t  rt;

    CHECK_EQ(ngx_http_chat_route_parse(&rt, (const u_char *) path, len),
             -1);
    CHECK_EQ(rt.route, R(NONE));
    CHECK(rt.user == NULL && rt.id == 0);
}


#define NO(lit)  no_match(lit, sizeof(lit) - 1)


int
main(void)
{
    char  user[200];

    /* every route */
    match("conversations", R(CONVERSATIONS), 0, NULL);
    match("conversations/45", R(CONVERSATION), 45, NULL);
    match("conversations/45/archive", R(ARCHIVE), 45, NULL);
    match("conversations/45/mute", R(MUTE), 45, NULL);
    match("conversations/45/members", R(MEMBERS), 45, NULL);
    match("conversations/45/members/bob", R(MEMBER), 45, "bob");
    match("conversations/7/messages", R(MESSAGES), 7, NULL);
    match("conversations/7/read", R(READ), 7, NULL);
    match("messages/981", R(MESSAGE), 981, NULL);
    match("messages/search", R(MESSAGE_SEARCH), 0, NULL);
    match("unread", R(UNREAD), 0, NULL);
    match("users/search", R(USER_SEARCH), 0, NULL);
    match("users/me", R(ME), 0, NULL);
    match("contacts", R(CONTACTS), 0, NULL);
    match("contacts/carol", R(CONTACT), 0, "carol");
    match("blocks", R(BLOCKS), 0, NULL);
    match("blocks/dave", R(BLOCK), 0, "dave");
    match("presence", R(PRESENCE), 0, NULL);

    /* ids: the largest that fits, no more */
    match("conversations/9223372036854775807", R(CONVERSATION),
          INT64_MAX, NULL);
    match("messages/1", R(MESSAGE), 1, NULL);
    NO("conversations/9223372036854775808");
    NO("conversations/99999999999999999999999");
    NO("conversations/0");
    NO("conversations/045");
    NO("conversations/-1");
    NO("conversations/+1");
    NO("conversations/1e3");
    NO("conversations/12a");
    NO("conversations/ 1");
    NO("messages/0");
    NO("messages/abc");
    NO("messages/1/");
    NO("messages/");

    /* user ids: the rest of the path, '/' and UTF-8 included */
    match("blocks/a/b", R(BLOCK), 0, "a/b");
    match("contacts/\xc3\xa9lise", R(CONTACT), 0, "\xc3\xa9lise");
    match("conversations/3/members/x y", R(MEMBER), 3, "x y");
    memset(user, 'u', 128);
    user[128] = '\0';
    {
        char  path[300];

        snprintf(path, sizeof(path), "blocks/%s", user);
        match(path, R(BLOCK), 0, user);
        snprintf(path, sizeof(path), "blocks/%su", user);
        no_match(path, strlen(path));
    }
    NO("blocks/");
    NO("contacts/");
    NO("conversations/3/members/");
    NO("blocks/a\tb");
    NO("blocks/a\x7f");
    no_match("blocks/a\0b", 9);

    /* prefixes and extensions of routes */
    NO("");
    NO("/");
    NO("conversation");
    NO("conversations/");
    NO("conversations//1");
    NO("conversationsx");
    NO("conversations/1/");
    NO("conversations/1/messagesread");
    NO("conversations/1/messages/");
    NO("conversations/1/archives");
    NO("conversations/1/mut");
    NO("conversations/1/membersx");
    NO("conversations/1/unknown");
    NO("messages");
    NO("messages/searchx");
    NO("messages/search/");
    NO("users");
    NO("users/");
    NO("users/mex");
    NO("users/bob");
    NO("unread/");
    NO("unreadx");
    NO("presence/");
    NO("contactsx");
    NO("blocksx");
    NO("/conversations");
    NO("Conversations");

    /* methods and Allow */
    CHECK_EQ(ngx_http_chat_route_methods(R(NONE)), 0);
    CHECK_EQ(ngx_http_chat_route_methods(R(CONVERSATIONS)),
             NGX_HTTP_CHAT_M_GET | NGX_HTTP_CHAT_M_POST);
    CHECK_EQ(ngx_http_chat_route_methods(R(MESSAGE)),
             NGX_HTTP_CHAT_M_PATCH | NGX_HTTP_CHAT_M_DELETE);
    CHECK_EQ(ngx_http_chat_route_methods(R(BLOCK)),
             NGX_HTTP_CHAT_M_PUT | NGX_HTTP_CHAT_M_DELETE);
    /* GET pages the members (conversation.members), POST adds one */
    CHECK_EQ(ngx_http_chat_route_methods(R(MEMBERS)),
             NGX_HTTP_CHAT_M_GET | NGX_HTTP_CHAT_M_POST);
    CHECK_STR(ngx_http_chat_route_allow(R(MEMBERS)), "GET, HEAD, POST");
    CHECK_EQ(ngx_http_chat_route_methods(R(MEMBER)), NGX_HTTP_CHAT_M_DELETE);
    CHECK_EQ(ngx_http_chat_route_methods(R(COUNT)), 0);
    CHECK_STR(ngx_http_chat_route_allow(R(CONVERSATION)),
              "GET, HEAD, PATCH, DELETE");
    CHECK_STR(ngx_http_chat_route_allow(R(READ)), "POST");
    CHECK_STR(ngx_http_chat_route_allow(R(PRESENCE)), "GET, HEAD");
    CHECK_STR(ngx_http_chat_route_allow(R(COUNT)), "");

    {
        /* every route's Allow names exactly its methods */
        static const struct { unsigned bit; const char *name; } m[] = {
            { NGX_HTTP_CHAT_M_GET, "GET" }, { NGX_HTTP_CHAT_M_POST, "POST" },
            { NGX_HTTP_CHAT_M_PUT, "PUT" }, { NGX_HTTP_CHAT_M_PATCH, "PATCH" },
            { NGX_HTTP_CHAT_M_DELETE, "DELETE" }
        };
        unsigned  r, i, methods;

        for (r = 1; r < R(COUNT); r++) {
            const char  *allow = ngx_http_chat_route_allow(r);

            methods = ngx_http_chat_route_methods(r);
            CHECK(methods != 0);

            for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
                CHECK(!!(methods & m[i].bit)
                      == (strstr(allow, m[i].name) != NULL));
            }

            CHECK(!!(methods & NGX_HTTP_CHAT_M_GET)
                  == (strstr(allow, "HEAD") != NULL));
        }
    }

    /* metric names: every route's name, its parameters filled in, is a
     * path of that route, and no two routes share a name */
    CHECK_STR(ngx_http_chat_route_name(R(NONE)), "unknown");
    CHECK_STR(ngx_http_chat_route_name(R(COUNT)), "unknown");
    CHECK_STR(ngx_http_chat_route_name(R(MEMBER)),
              "conversations/{id}/members/{user}");

    {
        char          path[128], *p;
        const char   *name, *n;
        unsigned      r, o;

        for (r = 1; r < R(COUNT); r++) {
            name = ngx_http_chat_route_name(r);
            p = path;

            for (n = name; *n; n++) {
                if (strncmp(n, "{id}", 4) == 0) {
                    *p++ = '7';
                    n += 3;

                } else if (strncmp(n, "{user}", 6) == 0) {
                    memcpy(p, "bob", 3);
                    p += 3;
                    n += 5;

                } else {
                    *p++ = *n;
                }
            }

            *p = '\0';

            match(path, r, strstr(name, "{id}") ? 7 : 0,
                  strstr(name, "{user}") ? "bob" : NULL);

            for (o = 0; o < r; o++) {
                CHECK(strcmp(name, ngx_http_chat_route_name(o)) != 0);
            }
        }
    }

    UNIT_DONE("route");
}
