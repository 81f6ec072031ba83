
/*
 * VAPID: an ES256 JWT (RFC 7515 with RFC 7518 3.4's raw R || S signature)
 * whose audience is the push service's origin, and the "vapid" scheme of
 * RFC 8292 3 that sends it with our public key.
 */


#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#include "ngx_http_chat_base64url.h"
#include "ngx_http_chat_ece.h"
#include "ngx_http_chat_vapid.h"


#define NGX_HTTP_CHAT_VAPID_HEADER    "{\"typ\":\"JWT\",\"alg\":\"ES256\"}"
#define NGX_HTTP_CHAT_VAPID_SIG_LEN   64
#define NGX_HTTP_CHAT_VAPID_SCHEME    "vapid t="
#define NGX_HTTP_CHAT_VAPID_K         ", k="


static int ngx_http_chat_vapid_check_key(EVP_PKEY *key, u_char *point,
    const char **err);
static int ngx_http_chat_vapid_check_aud(const char *aud, size_t len);
static int ngx_http_chat_vapid_check_sub(const char *sub, size_t len);
static int ngx_http_chat_vapid_printable(const char *s, size_t len);
static int ngx_http_chat_vapid_sign(EVP_PKEY *key, const u_char *input,
    size_t len, u_char *sig);


int
ngx_http_chat_vapid_key(EVP_PKEY *key, u_char *b64, const char **err)
{
    u_char  point[NGX_HTTP_CHAT_ECE_KEY_LEN];

    if (ngx_http_chat_vapid_check_key(key, point, err) != 0) {
        return -1;
    }

    (void) ngx_http_chat_base64url_encode(b64, point, sizeof(point));

    return 0;
}


ssize_t
ngx_http_chat_vapid_token(u_char *out, size_t size, EVP_PKEY *key,
    const char *aud, size_t aud_len, const char *sub, size_t sub_len,
    int64_t exp, const char **err)
{
    char          *claims;
    size_t         header_len, claims_len, need;
    u_char        *p;
    json_t        *obj;
    u_char         point[NGX_HTTP_CHAT_ECE_KEY_LEN];
    u_char         sig[NGX_HTTP_CHAT_VAPID_SIG_LEN];

    if (ngx_http_chat_vapid_check_key(key, point, err) != 0) {
        return -1;
    }

    if (ngx_http_chat_vapid_check_aud(aud, aud_len) != 0) {
        *err = "the audience is not an https origin";
        return -1;
    }

    if (ngx_http_chat_vapid_check_sub(sub, sub_len) != 0) {
        *err = "the subject is not a mailto: or https: URL";
        return -1;
    }

    if (exp <= 0) {
        *err = "no expiry time";
        return -1;
    }

    obj = json_pack("{s:s%,s:I,s:s%}", "aud", aud, aud_len,
                    "exp", (json_int_t) exp, "sub", sub, sub_len);
    if (obj == NULL) {
        *err = "out of memory";
        return -1;
    }

    /* jansson keeps the members in the order they were added */

    claims = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);

    if (claims == NULL) {
        *err = "out of memory";
        return -1;
    }

    header_len = sizeof(NGX_HTTP_CHAT_VAPID_HEADER) - 1;
    claims_len = strlen(claims);

    need = NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(header_len) + 1
           + NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(claims_len) + 1
           + NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(NGX_HTTP_CHAT_VAPID_SIG_LEN);

    if (need > size) {
        free(claims);
        *err = "no room for the token";
        return -1;
    }

    p = out;
    p += ngx_http_chat_base64url_encode(p,
                               (const u_char *) NGX_HTTP_CHAT_VAPID_HEADER,
                               header_len);
    *p++ = '.';
    p += ngx_http_chat_base64url_encode(p, (u_char *) claims, claims_len);

    free(claims);

    if (ngx_http_chat_vapid_sign(key, out, (size_t) (p - out), sig) != 0) {
        *err = "signing failed";
        return -1;
    }

    *p++ = '.';
    p += ngx_http_chat_base64url_encode(p, sig, sizeof(sig));

    return p - out;
}


ssize_t
ngx_http_chat_vapid_header(u_char *out, size_t size, EVP_PKEY *key,
    const char *aud, size_t aud_len, const char *sub, size_t sub_len,
    int64_t exp, const char **err)
{
    u_char   *p;
    ssize_t   n;
    size_t    head, tail;

    head = sizeof(NGX_HTTP_CHAT_VAPID_SCHEME) - 1;
    tail = sizeof(NGX_HTTP_CHAT_VAPID_K) - 1 + NGX_HTTP_CHAT_VAPID_KEY_LEN;

    if (size < head + tail) {
        *err = "no room for the header";
        return -1;
    }

    p = out;
    memcpy(p, NGX_HTTP_CHAT_VAPID_SCHEME, head);
    p += head;

    n = ngx_http_chat_vapid_token(p, size - head - tail, key, aud, aud_len,
                                  sub, sub_len, exp, err);
    if (n < 0) {
        return -1;
    }

    p += n;
    memcpy(p, NGX_HTTP_CHAT_VAPID_K, sizeof(NGX_HTTP_CHAT_VAPID_K) - 1);
    p += sizeof(NGX_HTTP_CHAT_VAPID_K) - 1;

    if (ngx_http_chat_vapid_key(key, p, err) != 0) {
        return -1;
    }

    p += NGX_HTTP_CHAT_VAPID_KEY_LEN;

    return p - out;
}


static int
ngx_http_chat_vapid_check_key(EVP_PKEY *key, u_char *point, const char **err)
{
    BIGNUM  *d;

    if (ngx_http_chat_ece_export_public(key, point) != 0) {
        *err = "the VAPID key is not a P-256 key";
        return -1;
    }

    d = NULL;

    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1) {
        ERR_clear_error();
        *err = "the VAPID key has no private part";
        return -1;
    }

    BN_clear_free(d);

    return 0;
}


/* an origin: https://host[:port], nothing after it */

static int
ngx_http_chat_vapid_check_aud(const char *aud, size_t len)
{
    static const char  https[] = "https://";

    if (aud == NULL || len <= sizeof(https) - 1
        || len > NGX_HTTP_CHAT_VAPID_MAX_AUD
        || memcmp(aud, https, sizeof(https) - 1) != 0
        || memchr(aud + sizeof(https) - 1, '/', len - (sizeof(https) - 1))
           != NULL)
    {
        return -1;
    }

    return ngx_http_chat_vapid_printable(aud, len);
}


static int
ngx_http_chat_vapid_check_sub(const char *sub, size_t len)
{
    if (sub == NULL || len > NGX_HTTP_CHAT_VAPID_MAX_SUB) {
        return -1;
    }

    if (!(len > 7 && memcmp(sub, "mailto:", 7) == 0)
        && !(len > 8 && memcmp(sub, "https://", 8) == 0))
    {
        return -1;
    }

    return ngx_http_chat_vapid_printable(sub, len);
}


/* visible ASCII: nothing a push service could read two ways */

static int
ngx_http_chat_vapid_printable(const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if ((u_char) s[i] <= 0x20 || (u_char) s[i] >= 0x7f) {
            return -1;
        }
    }

    return 0;
}


/* RFC 7518 3.4: OpenSSL signs in DER, a JWS carries R || S, 32 bytes each */

static int
ngx_http_chat_vapid_sign(EVP_PKEY *key, const u_char *input, size_t len,
    u_char *sig)
{
    int             rc;
    size_t          der_len;
    EVP_MD_CTX     *md;
    ECDSA_SIG      *es;
    const u_char   *p;
    const BIGNUM   *r, *s;
    u_char          der[80];

    rc = -1;
    es = NULL;
    der_len = sizeof(der);

    md = EVP_MD_CTX_new();

    if (md == NULL
        || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1
        || EVP_DigestSign(md, der, &der_len, input, len) != 1)
    {
        goto done;
    }

    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long) der_len);
    if (es == NULL) {
        goto done;
    }

    ECDSA_SIG_get0(es, &r, &s);

    if (BN_bn2binpad(r, sig, NGX_HTTP_CHAT_VAPID_SIG_LEN / 2)
        != NGX_HTTP_CHAT_VAPID_SIG_LEN / 2
        || BN_bn2binpad(s, sig + NGX_HTTP_CHAT_VAPID_SIG_LEN / 2,
                        NGX_HTTP_CHAT_VAPID_SIG_LEN / 2)
           != NGX_HTTP_CHAT_VAPID_SIG_LEN / 2)
    {
        goto done;
    }

    rc = 0;

done:

    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    ERR_clear_error();

    return rc;
}
