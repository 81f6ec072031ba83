
/*
 * JSON Web Token verification (RFC 7515, RFC 7519) for the chat module.
 *
 * Pure C over OpenSSL libcrypto and jansson, with no nginx dependency, so
 * that unit tests and fuzz targets link it alone.  The algorithm is pinned
 * by configuration: a token whose header names any other algorithm is
 * refused, which closes "alg: none" and HS/RS key confusion.
 */


#ifndef _NGX_HTTP_CHAT_JWT_H_INCLUDED_
#define _NGX_HTTP_CHAT_JWT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include <openssl/evp.h>


#define NGX_HTTP_CHAT_JWT_MAX_TOKEN  8192
#define NGX_HTTP_CHAT_JWT_MAX_SUB    128


typedef enum {
    NGX_HTTP_CHAT_JWT_NONE = 0,
    NGX_HTTP_CHAT_JWT_HS256,
    NGX_HTTP_CHAT_JWT_HS384,
    NGX_HTTP_CHAT_JWT_HS512,
    NGX_HTTP_CHAT_JWT_RS256,
    NGX_HTTP_CHAT_JWT_ES256
} ngx_http_chat_jwt_alg_e;


typedef struct {
    ngx_http_chat_jwt_alg_e   alg;
    u_char                   *secret;      /* HS*: raw key bytes, owned */
    size_t                    secret_len;
    EVP_PKEY                 *pkey;        /* RS256, ES256: public key, owned */
} ngx_http_chat_jwt_key_t;


typedef struct {
    int64_t                   now;         /* seconds since the epoch */
    int64_t                   leeway;      /* seconds allowed on exp/nbf */
    const char               *issuer;      /* NUL-terminated or NULL */
    const char               *audience;    /* NUL-terminated or NULL */
    unsigned                  require_exp:1;
} ngx_http_chat_jwt_opts_t;


typedef struct {
    json_t                   *claims;      /* owned: ngx_http_chat_jwt_free */
    const char               *sub;         /* these point into claims */
    size_t                    sub_len;
    const char               *name;        /* NULL when absent */
    size_t                    name_len;
    const char               *avatar;      /* NULL when absent */
    size_t                    avatar_len;
    int64_t                   exp;         /* 0 when absent */
} ngx_http_chat_jwt_t;


/* "hs256", "HS256", ... -> alg; NGX_HTTP_CHAT_JWT_NONE when unknown */
ngx_http_chat_jwt_alg_e ngx_http_chat_jwt_alg(const char *name, size_t len);
const char *ngx_http_chat_jwt_alg_name(ngx_http_chat_jwt_alg_e alg);

/*
 * Loads key material for alg: raw secret bytes for HS* (at least 32 bytes
 * for HS256, as RFC 7518 3.2 asks a key as long as the hash), a PEM public
 * key (or certificate) for RS256/ES256; RS256 needs RSA >= 2048 bits and
 * ES256 a P-256 key.  Returns 0, or -1 with *err set to a static string.
 */
int ngx_http_chat_jwt_key_load(ngx_http_chat_jwt_key_t *key,
    ngx_http_chat_jwt_alg_e alg, const u_char *data, size_t len,
    const char **err);
void ngx_http_chat_jwt_key_free(ngx_http_chat_jwt_key_t *key);

/*
 * Verifies a compact-serialized token.  Returns 0 and fills *jwt, or -1
 * with *err set to a static, client-presentable reason ("token expired",
 * "bad signature", ...).  Never follows jku, x5u, jwk or kid.
 */
int ngx_http_chat_jwt_verify(const ngx_http_chat_jwt_key_t *key,
    const ngx_http_chat_jwt_opts_t *opts, const u_char *token, size_t len,
    ngx_http_chat_jwt_t *jwt, const char **err);
void ngx_http_chat_jwt_free(ngx_http_chat_jwt_t *jwt);

/*
 * Signs claims with an HS* key (development tokens, tests).  Writes a
 * NUL-terminated token into out; returns its length, or -1 when out is too
 * small or the key is not HS*.
 */
ssize_t ngx_http_chat_jwt_sign(const ngx_http_chat_jwt_key_t *key,
    json_t *claims, u_char *out, size_t size);

/* base64url without padding (base64url.c's); decode returns -1 on any
 * invalid input */
size_t ngx_http_chat_jwt_base64url_encode(u_char *dst, const u_char *src,
    size_t len);
ssize_t ngx_http_chat_jwt_base64url_decode(u_char *dst, const u_char *src,
    size_t len);


#endif /* _NGX_HTTP_CHAT_JWT_H_INCLUDED_ */
