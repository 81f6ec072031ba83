
/*
 * libFuzzer target of the REST route matcher: any path either matches
 * with parameters inside their bounds (an id > 0, a user id of 1..128
 * bytes without control characters that ends the path) and a route that
 * has methods, or matches nothing and leaves the result empty.  Matching
 * is deterministic.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <ngx_http_chat_route.h>


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                 i;
    ngx_http_chat_route_t  rt, again;

    if (ngx_http_chat_route_parse(&rt, data, size) != 0) {
        if (rt.route != NGX_HTTP_CHAT_ROUTE_NONE || rt.user != NULL
            || rt.id != 0)
        {
            abort();
        }

        return 0;
    }

    if (rt.route <= NGX_HTTP_CHAT_ROUTE_NONE
        || rt.route >= NGX_HTTP_CHAT_ROUTE_COUNT
        || ngx_http_chat_route_methods(rt.route) == 0
        || rt.id < 0)
    {
        abort();
    }

    if (rt.user != NULL) {
        if (rt.user_len == 0 || rt.user_len > NGX_HTTP_CHAT_ROUTE_MAX_USER
            || rt.user < data || rt.user + rt.user_len != data + size)
        {
            abort();
        }

        for (i = 0; i < rt.user_len; i++) {
            if (rt.user[i] < 0x20 || rt.user[i] == 0x7f) {
                abort();
            }
        }
    }

    if (ngx_http_chat_route_parse(&again, data, size) != 0
        || memcmp(&rt, &again, sizeof(rt)) != 0)
    {
        abort();
    }

    return 0;
}
