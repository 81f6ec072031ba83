
/*
 * ngx_http_chat_auth.c: who is asking: tokens, identities, dev tokens.
 * Included through ngx_http_chat.h.
 */


#ifndef _NGX_HTTP_CHAT_AUTH_H_INCLUDED_
#define _NGX_HTTP_CHAT_AUTH_H_INCLUDED_


ngx_int_t ngx_http_chat_auth_request(ngx_http_request_t *r,
    ngx_http_chat_loc_conf_t *ccf, ngx_pool_t *pool,
    ngx_http_chat_identity_t *id, const char **err);
ngx_int_t ngx_http_chat_auth_verify_token(ngx_http_chat_loc_conf_t *clcf,
    u_char *token, size_t len, ngx_http_chat_jwt_t *jwt, const char **err);
ngx_int_t ngx_http_chat_auth_dev_token_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_chat_auth_text_valid(ngx_str_t *s);
ngx_int_t ngx_http_chat_auth_identity_copy(ngx_pool_t *pool,
    ngx_http_chat_identity_t *dst, ngx_http_chat_identity_t *src);


#endif /* _NGX_HTTP_CHAT_AUTH_H_INCLUDED_ */
