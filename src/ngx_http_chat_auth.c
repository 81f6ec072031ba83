
/*
 * Who is asking: a JWT from the Authorization header, the access_token
 * argument or a configured cookie, or an identity that an earlier module
 * (auth_request, for instance) left in an nginx variable.  Also the
 * development-only token minting endpoint.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_utf8.h>


#define NGX_HTTP_CHAT_DEV_USER_MAX  64
#define NGX_HTTP_CHAT_DEV_NAME_MAX  64


static ngx_int_t ngx_http_chat_find_token(ngx_http_request_t *r,
    ngx_http_chat_loc_conf_t *ccf, ngx_str_t *token);
static ngx_int_t ngx_http_chat_copy_identity(ngx_pool_t *pool,
    ngx_http_chat_identity_t *id, const char *sub, size_t sub_len,
    const char *name, size_t name_len, const char *avatar,
    size_t avatar_len);
static ngx_int_t ngx_http_chat_dev_user_valid(ngx_str_t *user);
static unsigned ngx_http_chat_is_service(ngx_http_chat_loc_conf_t *ccf,
    json_t *claims);
static ngx_int_t ngx_http_chat_auth_failed(ngx_uint_t reason,
    const char *err);


/* the JWT verifier's reasons, counted in chat_auth_failures_total */

static struct {
    const char  *err;
    ngx_uint_t   reason;
} ngx_http_chat_auth_reasons[] = {
    { "malformed token", NGX_HTTP_CHAT_AUTH_MALFORMED },
    { "token too long", NGX_HTTP_CHAT_AUTH_MALFORMED },
    { "missing signature", NGX_HTTP_CHAT_AUTH_MALFORMED },
    { "unsupported critical header", NGX_HTTP_CHAT_AUTH_MALFORMED },
    { "bad signature", NGX_HTTP_CHAT_AUTH_SIGNATURE },
    { "algorithm not allowed", NGX_HTTP_CHAT_AUTH_ALGORITHM },
    { "token expired", NGX_HTTP_CHAT_AUTH_EXPIRED },
    { "token not yet valid", NGX_HTTP_CHAT_AUTH_NOT_YET_VALID },
    { "wrong issuer", NGX_HTTP_CHAT_AUTH_ISSUER },
    { "wrong audience", NGX_HTTP_CHAT_AUTH_AUDIENCE },
    { "token has no exp", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "invalid exp claim", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "invalid nbf claim", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "token has no sub", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "invalid sub claim", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "sub claim too long", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "invalid name claim", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "name claim too long", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "invalid avatar claim", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { "avatar claim too long", NGX_HTTP_CHAT_AUTH_CLAIMS },
    { NULL, NGX_HTTP_CHAT_AUTH_OTHER }
};


ngx_int_t
ngx_http_chat_auth_request(ngx_http_request_t *r,
    ngx_http_chat_loc_conf_t *ccf, ngx_pool_t *pool,
    ngx_http_chat_identity_t *id, const char **err)
{
    ngx_int_t            rc;
    ngx_str_t            token, user, name;
    ngx_http_chat_jwt_t  jwt;

    ngx_memzero(id, sizeof(ngx_http_chat_identity_t));

    if (ccf->identity != NULL) {

        if (ngx_http_complex_value(r, ccf->identity, &user) != NGX_OK) {
            return NGX_ERROR;
        }

        if (user.len == 0) {
            *err = "not authenticated";
            return ngx_http_chat_auth_failed(NGX_HTTP_CHAT_AUTH_MISSING,
                                             NULL);
        }

        if (user.len > NGX_HTTP_CHAT_JWT_MAX_SUB) {
            *err = "user id is too long";
            return ngx_http_chat_auth_failed(NGX_HTTP_CHAT_AUTH_IDENTITY,
                                             NULL);
        }

        if (ngx_http_chat_auth_text_valid(&user) != NGX_OK) {
            *err = "the identity is not a valid user id";
            return ngx_http_chat_auth_failed(NGX_HTTP_CHAT_AUTH_IDENTITY,
                                             NULL);
        }

        ngx_str_null(&name);

        if (ccf->identity_name != NULL
            && ngx_http_complex_value(r, ccf->identity_name, &name) != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* a name that cannot be shown is no name: the id stands in */

        if (ngx_http_chat_auth_text_valid(&name) != NGX_OK) {
            ngx_str_null(&name);
        }

        return ngx_http_chat_copy_identity(pool, id, (char *) user.data,
                                           user.len, (char *) name.data,
                                           name.len, NULL, 0);
    }

    rc = ngx_http_chat_find_token(r, ccf, &token);

    if (rc == NGX_ABORT) {
        *err = "the token cookie counts only with an Origin header";
        return ngx_http_chat_auth_failed(NGX_HTTP_CHAT_AUTH_MISSING, NULL);
    }

    if (rc != NGX_OK) {
        *err = "no token: send Authorization: Bearer, the access_token "
               "argument or the token cookie";
        return ngx_http_chat_auth_failed(NGX_HTTP_CHAT_AUTH_MISSING, NULL);
    }

    /* a refusal is counted there */

    if (ngx_http_chat_auth_verify_token(ccf, token.data, token.len, &jwt, err)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    rc = ngx_http_chat_copy_identity(pool, id, jwt.sub, jwt.sub_len,
                                     jwt.name, jwt.name_len, jwt.avatar,
                                     jwt.avatar_len);
    id->exp = (time_t) jwt.exp;
    id->service = ngx_http_chat_is_service(ccf, jwt.claims);

    ngx_http_chat_jwt_free(&jwt);

    return rc;
}


ngx_int_t
ngx_http_chat_auth_verify_token(ngx_http_chat_loc_conf_t *ccf, u_char *token,
    size_t len, ngx_http_chat_jwt_t *jwt, const char **err)
{
    ngx_http_chat_jwt_opts_t  opts;

    if (ccf->jwt_key == NULL) {
        *err = "tokens are not accepted here";
        return ngx_http_chat_auth_failed(NGX_HTTP_CHAT_AUTH_NOT_ACCEPTED,
                                         NULL);
    }

    ngx_memzero(&opts, sizeof(ngx_http_chat_jwt_opts_t));

    opts.now = ngx_time();
    opts.leeway = ccf->jwt_leeway;
    opts.require_exp = ccf->jwt_require_exp ? 1 : 0;
    opts.issuer = ccf->jwt_issuer.len ? (char *) ccf->jwt_issuer.data : NULL;
    opts.audience = ccf->jwt_audience.len ? (char *) ccf->jwt_audience.data
                                          : NULL;

    if (ngx_http_chat_jwt_verify(ccf->jwt_key, &opts, token, len, jwt, err)
        != 0)
    {
        return ngx_http_chat_auth_failed(NGX_HTTP_CHAT_AUTH_OTHER, *err);
    }

    return NGX_OK;
}


/*
 * Counts a refusal by its reason (err: the verifier's words, mapped to
 * one) and returns NGX_DECLINED.  Only refusals pay the string compares.
 */

static ngx_int_t
ngx_http_chat_auth_failed(ngx_uint_t reason, const char *err)
{
    ngx_uint_t  i;

    if (err != NULL) {
        for (i = 0; ngx_http_chat_auth_reasons[i].err; i++) {
            if (ngx_strcmp(ngx_http_chat_auth_reasons[i].err, err) == 0) {
                break;
            }
        }

        reason = ngx_http_chat_auth_reasons[i].reason;
    }

    ngx_http_chat_count(auth_failures[reason], 1);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_chat_find_token(ngx_http_request_t *r, ngx_http_chat_loc_conf_t *ccf,
    ngx_str_t *token)
{
    ngx_str_t         *auth;
    ngx_uint_t         n;
    ngx_table_elt_t   *h, *site;

    h = r->headers_in.authorization;

    if (h != NULL) {
        auth = &h->value;

        if (auth->len > sizeof("Bearer ") - 1
            && ngx_strncasecmp(auth->data, (u_char *) "Bearer ",
                               sizeof("Bearer ") - 1) == 0)
        {
            token->data = auth->data + sizeof("Bearer ") - 1;
            token->len = auth->len - (sizeof("Bearer ") - 1);

            while (token->len && token->data[0] == ' ') {
                token->data++;
                token->len--;
            }

            if (token->len) {
                return NGX_OK;
            }
        }
    }

    if (ngx_http_arg(r, (u_char *) "access_token", sizeof("access_token") - 1,
                     token)
        == NGX_OK && token->len)
    {
        return NGX_OK;
    }

    if (ccf->token_cookie.len == 0) {
        return NGX_DECLINED;
    }

#if (nginx_version >= 1023000)
    if (ngx_http_parse_multi_header_lines(r, r->headers_in.cookie,
                                          &ccf->token_cookie, token)
        == NULL || token->len == 0)
    {
        return NGX_DECLINED;
    }
#else
    if (ngx_http_parse_multi_header_lines(&r->headers_in.cookies,
                                          &ccf->token_cookie, token)
        == NGX_DECLINED || token->len == 0)
    {
        return NGX_DECLINED;
    }
#endif

    /*
     * A browser attaches the cookie to whatever any page asks for, an
     * <img> or a top-level navigation included; such requests may come
     * without Origin.  Only a request that names its origin, which the
     * caller has already checked, may use the cookie; or a GET that the
     * browser itself says comes from this origin (a same-origin fetch()
     * GET carries no Origin; pages cannot set Sec-Fetch-Site).
     */

    if (ngx_http_chat_http_header(r, "Origin", NULL) != NULL) {
        return NGX_OK;
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        site = ngx_http_chat_http_header(r, "Sec-Fetch-Site", &n);

        if (n == 1
            && site->value.len == sizeof("same-origin") - 1
            && ngx_strncmp(site->value.data, "same-origin",
                           sizeof("same-origin") - 1) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_ABORT;
}


/* the claim of chat_service_claim: the value, or an array holding it */

static unsigned
ngx_http_chat_is_service(ngx_http_chat_loc_conf_t *ccf, json_t *claims)
{
    size_t   i;
    json_t  *claim, *v;

    if (ccf->service_claim.len == 0) {
        return 0;
    }

    claim = json_object_get(claims, (char *) ccf->service_claim.data);

    if (json_is_string(claim)) {
        return json_string_length(claim) == ccf->service_value.len
               && ngx_memcmp(json_string_value(claim),
                             ccf->service_value.data,
                             ccf->service_value.len) == 0;
    }

    json_array_foreach(claim, i, v) {
        if (json_is_string(v)
            && json_string_length(v) == ccf->service_value.len
            && ngx_memcmp(json_string_value(v), ccf->service_value.data,
                          ccf->service_value.len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_chat_copy_identity(ngx_pool_t *pool, ngx_http_chat_identity_t *id,
    const char *sub, size_t sub_len, const char *name, size_t name_len,
    const char *avatar, size_t avatar_len)
{
    u_char  *p;

    /* NUL-terminated too: libpq takes text parameters as C strings */

    p = ngx_pnalloc(pool, sub_len + name_len + avatar_len + 3);
    if (p == NULL) {
        return NGX_ERROR;
    }

    id->id.data = p;
    id->id.len = sub_len;
    p = ngx_cpymem(p, sub, sub_len);
    *p++ = '\0';

    id->name.data = p;
    id->name.len = name_len;
    p = ngx_cpymem(p, name, name_len);
    *p++ = '\0';

    id->avatar.data = p;
    id->avatar.len = avatar_len;
    p = ngx_cpymem(p, avatar, avatar_len);
    *p = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_auth_dev_token_handler(ngx_http_request_t *r)
{
    u_char                     *dst, *src, *token;
    time_t                      now;
    json_t                     *claims, *body;
    ssize_t                     n;
    ngx_int_t                   rc;
    ngx_str_t                   user, name, arg;
    ngx_http_chat_loc_conf_t   *ccf;
    ngx_http_chat_main_conf_t  *cmcf;
    u_char                      expires[NGX_HTTP_CHAT_TIME_LEN + 1];

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return ngx_http_chat_http_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                        "bad_request", "use GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ccf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    if (ngx_http_arg(r, (u_char *) "user", 4, &user) != NGX_OK
        || ngx_http_chat_dev_user_valid(&user) != NGX_OK)
    {
        return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request",
                                        "user must be 1 to 64 characters "
                                        "of A-Z a-z 0-9 _ . @ -");
    }

    ngx_str_null(&name);

    if (ngx_http_arg(r, (u_char *) "name", 4, &arg) == NGX_OK && arg.len) {

        name.data = ngx_pnalloc(r->pool, arg.len);
        if (name.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* a form's "+" is a space; "%2B" is a plus, so "+" goes first */

        src = ngx_pnalloc(r->pool, arg.len);
        if (src == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (n = 0; n < (ssize_t) arg.len; n++) {
            src[n] = (arg.data[n] == '+') ? ' ' : arg.data[n];
        }

        dst = name.data;
        ngx_unescape_uri(&dst, &src, arg.len, NGX_UNESCAPE_URI);
        name.len = dst - name.data;

        if (name.len > NGX_HTTP_CHAT_DEV_NAME_MAX
            || ngx_http_chat_auth_text_valid(&name) != NGX_OK)
        {
            return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "bad_request",
                                            "name must be at most 64 bytes "
                                            "of UTF-8 with no control "
                                            "characters");
        }
    }

    now = ngx_time();

    claims = json_object();
    if (claims == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json_object_set_new(claims, "sub",
                            json_stringn((char *) user.data, user.len)) != 0
        || (name.len
            && json_object_set_new(claims, "name",
                                   json_stringn((char *) name.data, name.len))
               != 0)
        || json_object_set_new(claims, "iat", json_integer(now)) != 0
        || json_object_set_new(claims, "exp",
                               json_integer(now + NGX_HTTP_CHAT_DEV_TOKEN_TTL))
           != 0
        || (ccf->jwt_issuer.len
            && json_object_set_new(claims, "iss",
                                json_string((char *) ccf->jwt_issuer.data))
               != 0)
        || (ccf->jwt_audience.len
            && json_object_set_new(claims, "aud",
                              json_string((char *) ccf->jwt_audience.data))
               != 0))
    {
        /* json_stringn() refuses bytes that are not UTF-8 */
        json_decref(claims);
        return ngx_http_chat_http_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request",
                                        "name must be valid UTF-8");
    }

    token = ngx_pnalloc(r->pool, NGX_HTTP_CHAT_JWT_MAX_TOKEN);
    if (token == NULL) {
        json_decref(claims);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_http_chat_jwt_sign(ccf->jwt_key, claims, token,
                               NGX_HTTP_CHAT_JWT_MAX_TOKEN);

    json_decref(claims);

    if (n < 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "chat: cannot sign a development token");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_http_chat_http_time(expires, now + NGX_HTTP_CHAT_DEV_TOKEN_TTL, 0)
        = '\0';

    body = json_pack("{s:s%, s:s, s:{s:s%, s:s%}}",
                     "token", (char *) token, (size_t) n,
                     "expires_at", (char *) expires,
                     "user", "id", (char *) user.data, user.len,
                     "name", name.len ? (char *) name.data
                                      : (char *) user.data,
                     name.len ? name.len : user.len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_chat_stat(cmcf, tokens_minted, 1);

    return ngx_http_chat_http_send_json(r, NGX_HTTP_OK, body);
}


static ngx_int_t
ngx_http_chat_dev_user_valid(ngx_str_t *user)
{
    u_char      c;
    ngx_uint_t  i;

    if (user->len == 0 || user->len > NGX_HTTP_CHAT_DEV_USER_MAX) {
        return NGX_DECLINED;
    }

    for (i = 0; i < user->len; i++) {
        c = user->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9')
            || c == '_' || c == '.' || c == '@' || c == '-')
        {
            continue;
        }

        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* UTF-8 without control characters: safe in JSON, logs and names */

ngx_int_t
ngx_http_chat_auth_text_valid(ngx_str_t *s)
{
    ngx_uint_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] == 0x7f) {
            return NGX_DECLINED;
        }
    }

    if (ngx_http_chat_utf8_validate(NGX_HTTP_CHAT_UTF8_ACCEPT, s->data,
                                    s->len)
        != NGX_HTTP_CHAT_UTF8_ACCEPT)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_auth_identity_copy(ngx_pool_t *pool,
    ngx_http_chat_identity_t *dst,
    ngx_http_chat_identity_t *src)
{
    if (ngx_http_chat_copy_identity(pool, dst, (char *) src->id.data,
                                    src->id.len, (char *) src->name.data,
                                    src->name.len, (char *) src->avatar.data,
                                    src->avatar.len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    dst->exp = src->exp;

    return NGX_OK;
}
