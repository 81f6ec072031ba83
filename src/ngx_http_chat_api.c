
/*
 * The REST routes under a chat_api location.  Authentication is the same
 * as for the WebSocket; routes that need storage arrive with it.
 */


#include <ngx_http_chat.h>


static ngx_int_t ngx_http_chat_api_me(ngx_http_request_t *r,
    ngx_http_chat_identity_t *id);


ngx_int_t
ngx_http_chat_api_handler(ngx_http_request_t *r)
{
    const char                *err;
    ngx_int_t                  rc;
    ngx_str_t                  route;
    ngx_http_chat_ctx_t       *ctx;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_chat_loc_conf_t  *ccf;

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_chat_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_chat_module);

    rc = ngx_http_chat_authenticate(r, ccf, r->pool, &ctx->id, &err);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        if (ngx_http_chat_add_header(r, "WWW-Authenticate", "Bearer")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_chat_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                        "unauthorized", err);
    }

    /* the route is what follows the location's prefix */

    route = r->uri;

    if (!clcf->exact_match && route.len >= clcf->name.len
        && ngx_strncmp(route.data, clcf->name.data, clcf->name.len) == 0)
    {
        route.data += clcf->name.len;
        route.len -= clcf->name.len;
    }

    if (route.len == sizeof("users/me") - 1
        && ngx_strncmp(route.data, "users/me", route.len) == 0)
    {
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            if (ngx_http_chat_add_header(r, "Allow", "GET, HEAD")
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_http_chat_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                            "bad_request",
                                            "method not allowed");
        }

        return ngx_http_chat_api_me(r, &ctx->id);
    }

    return ngx_http_chat_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                    "no such route");
}


static ngx_int_t
ngx_http_chat_api_me(ngx_http_request_t *r, ngx_http_chat_identity_t *id)
{
    json_t  *body;

    body = json_pack("{s:o}", "user", ngx_http_chat_user_json(id));
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_chat_send_json(r, NGX_HTTP_OK, body);
}
