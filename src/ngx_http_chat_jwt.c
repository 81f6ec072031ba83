
/*
 * JSON Web Token verification for the chat module.
 *
 * Only the compact serialization is accepted, in strict base64url, and the
 * token is checked against the one configured algorithm and key: header
 * members that name other keys (kid, jku, x5u, x5c, jwk) are never looked
 * at.  The signature is verified before the payload is parsed.
 */


#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ngx_http_chat_base64url.h"
#include "ngx_http_chat_jwt.h"


/* characters, as chat.api_user_upsert() stores them */
#define NGX_HTTP_CHAT_JWT_MAX_NAME     200
#define NGX_HTTP_CHAT_JWT_MAX_AVATAR   2048

/* all decoded segments of a token of the maximum length fit */
#define NGX_HTTP_CHAT_JWT_MAX_DECODED  (NGX_HTTP_CHAT_JWT_MAX_TOKEN / 4 * 3 + 3)

/* ES256: raw R || S, and room for its DER ECDSA-Sig-Value (72 at most) */
#define NGX_HTTP_CHAT_JWT_ES256_LEN    64
#define NGX_HTTP_CHAT_JWT_ES256_DER    80

#define NGX_HTTP_CHAT_JWT_RSA_MIN_BITS 2048

/* the longest header ngx_http_chat_jwt_sign() writes */
#define NGX_HTTP_CHAT_JWT_SIGN_HEADER  64


static int ngx_http_chat_jwt_check_header(const ngx_http_chat_jwt_key_t *key,
    const u_char *data, size_t len, const char **err);
static int ngx_http_chat_jwt_check_signature(
    const ngx_http_chat_jwt_key_t *key, const u_char *input,
    size_t input_len, const u_char *sig, size_t sig_len);
static int ngx_http_chat_jwt_check_hmac(const ngx_http_chat_jwt_key_t *key,
    const u_char *input, size_t input_len, const u_char *sig,
    size_t sig_len);
static int ngx_http_chat_jwt_check_rsa(EVP_PKEY *pkey, const u_char *input,
    size_t input_len, const u_char *sig, size_t sig_len);
static int ngx_http_chat_jwt_check_ecdsa(EVP_PKEY *pkey, const u_char *input,
    size_t input_len, const u_char *sig, size_t sig_len);
static int ngx_http_chat_jwt_digest_verify(EVP_PKEY *pkey,
    const u_char *input, size_t input_len, const u_char *sig,
    size_t sig_len);
static int ngx_http_chat_jwt_check_claims(
    const ngx_http_chat_jwt_opts_t *opts, json_t *claims,
    ngx_http_chat_jwt_t *jwt, const char **err);
static int ngx_http_chat_jwt_check_name(const char *name, size_t len);
static int ngx_http_chat_jwt_check_avatar(const char *avatar, size_t len);
static int ngx_http_chat_jwt_check_sub(json_t *claims, ngx_http_chat_jwt_t *jwt,
    const char **err);
static int ngx_http_chat_jwt_time(json_t *value, int round_up, int64_t *t);
static int64_t ngx_http_chat_jwt_add(int64_t a, int64_t b);
static int ngx_http_chat_jwt_string_eq(json_t *value, const char *s);
static int ngx_http_chat_jwt_check_aud(json_t *aud, const char *audience);
static int ngx_http_chat_jwt_opt_string(json_t *claims, const char *name,
    size_t max, const char **p, size_t *len);
static const EVP_MD *ngx_http_chat_jwt_hmac_md(ngx_http_chat_jwt_alg_e alg);
static int ngx_http_chat_jwt_key_load_secret(ngx_http_chat_jwt_key_t *key,
    ngx_http_chat_jwt_alg_e alg, const u_char *data, size_t len,
    const char **err);
static int ngx_http_chat_jwt_key_load_pem(ngx_http_chat_jwt_key_t *key,
    ngx_http_chat_jwt_alg_e alg, const u_char *data, size_t len,
    const char **err);
static EVP_PKEY *ngx_http_chat_jwt_read_pem(const u_char *data, size_t len);
static EVP_PKEY *ngx_http_chat_jwt_public_part(EVP_PKEY *pkey);
static int ngx_http_chat_jwt_no_password(char *buf, int size, int rwflag,
    void *data);
static int ngx_http_chat_jwt_check_pkey(EVP_PKEY *pkey,
    ngx_http_chat_jwt_alg_e alg, const char **err);
static int ngx_http_chat_jwt_is_p256(EVP_PKEY *pkey);


ngx_http_chat_jwt_alg_e
ngx_http_chat_jwt_alg(const char *name, size_t len)
{
    size_t  i;
    u_char  c;
    u_char  lc[5];

    static const char  *names[] = {
        "hs256", "hs384", "hs512", "rs256", "es256"
    };

    if (name == NULL || len != sizeof(lc)) {
        return NGX_HTTP_CHAT_JWT_NONE;
    }

    for (i = 0; i < sizeof(lc); i++) {
        c = (u_char) name[i];
        lc[i] = (c >= 'A' && c <= 'Z') ? (u_char) (c | 0x20) : c;
    }

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (memcmp(lc, names[i], sizeof(lc)) == 0) {
            return (ngx_http_chat_jwt_alg_e) (NGX_HTTP_CHAT_JWT_HS256 + i);
        }
    }

    return NGX_HTTP_CHAT_JWT_NONE;
}


/* NULL for NGX_HTTP_CHAT_JWT_NONE: "none" is never an algorithm here */

const char *
ngx_http_chat_jwt_alg_name(ngx_http_chat_jwt_alg_e alg)
{
    switch (alg) {

    case NGX_HTTP_CHAT_JWT_HS256:
        return "HS256";

    case NGX_HTTP_CHAT_JWT_HS384:
        return "HS384";

    case NGX_HTTP_CHAT_JWT_HS512:
        return "HS512";

    case NGX_HTTP_CHAT_JWT_RS256:
        return "RS256";

    case NGX_HTTP_CHAT_JWT_ES256:
        return "ES256";

    default:
        return NULL;
    }
}


int
ngx_http_chat_jwt_key_load(ngx_http_chat_jwt_key_t *key,
    ngx_http_chat_jwt_alg_e alg, const u_char *data, size_t len,
    const char **err)
{
    memset(key, 0, sizeof(ngx_http_chat_jwt_key_t));

    if (data == NULL && len != 0) {
        *err = "no key data";
        return -1;
    }

    switch (alg) {

    case NGX_HTTP_CHAT_JWT_HS256:
    case NGX_HTTP_CHAT_JWT_HS384:
    case NGX_HTTP_CHAT_JWT_HS512:
        return ngx_http_chat_jwt_key_load_secret(key, alg, data, len, err);

    case NGX_HTTP_CHAT_JWT_RS256:
    case NGX_HTTP_CHAT_JWT_ES256:
        return ngx_http_chat_jwt_key_load_pem(key, alg, data, len, err);

    default:
        *err = "unknown algorithm";
        return -1;
    }
}


void
ngx_http_chat_jwt_key_free(ngx_http_chat_jwt_key_t *key)
{
    if (key == NULL) {
        return;
    }

    if (key->secret != NULL) {
        OPENSSL_cleanse(key->secret, key->secret_len);
        free(key->secret);
    }

    if (key->pkey != NULL) {
        EVP_PKEY_free(key->pkey);
    }

    memset(key, 0, sizeof(ngx_http_chat_jwt_key_t));
}


static int
ngx_http_chat_jwt_key_load_secret(ngx_http_chat_jwt_key_t *key,
    ngx_http_chat_jwt_alg_e alg, const u_char *data, size_t len,
    const char **err)
{
    size_t         min;
    const EVP_MD  *md;

    md = ngx_http_chat_jwt_hmac_md(alg);
    min = (size_t) EVP_MD_size(md);

    /* RFC 7518 3.2: a key of the same size as the hash output or larger */

    if (len < min) {
        switch (alg) {

        case NGX_HTTP_CHAT_JWT_HS256:
            *err = "HMAC key too short, HS256 needs at least 32 bytes";
            break;

        case NGX_HTTP_CHAT_JWT_HS384:
            *err = "HMAC key too short, HS384 needs at least 48 bytes";
            break;

        default:
            *err = "HMAC key too short, HS512 needs at least 64 bytes";
            break;
        }

        return -1;
    }

    /* HMAC() takes an int key length */

    if (len > INT_MAX) {
        *err = "HMAC key too long";
        return -1;
    }

    key->secret = malloc(len);
    if (key->secret == NULL) {
        *err = "out of memory";
        return -1;
    }

    memcpy(key->secret, data, len);
    key->secret_len = len;
    key->alg = alg;

    return 0;
}


static int
ngx_http_chat_jwt_key_load_pem(ngx_http_chat_jwt_key_t *key,
    ngx_http_chat_jwt_alg_e alg, const u_char *data, size_t len,
    const char **err)
{
    EVP_PKEY  *pkey;

    if (len == 0 || len > INT_MAX) {
        *err = "no PEM key";
        return -1;
    }

    pkey = ngx_http_chat_jwt_read_pem(data, len);
    if (pkey == NULL) {
        *err = "no PEM public key, certificate or private key found";
        return -1;
    }

    if (ngx_http_chat_jwt_check_pkey(pkey, alg, err) != 0) {
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        return -1;
    }

    key->pkey = pkey;
    key->alg = alg;

    return 0;
}


/*
 * Tries a public key, then a certificate, then an unencrypted private key,
 * each from a fresh BIO since a failed PEM read consumes its input.
 */

static EVP_PKEY *
ngx_http_chat_jwt_read_pem(const u_char *data, size_t len)
{
    BIO       *bio;
    X509      *x509;
    EVP_PKEY  *pkey, *pub;

    bio = BIO_new_mem_buf(data, (int) len);
    if (bio == NULL) {
        goto failed;
    }

    pkey = PEM_read_bio_PUBKEY(bio, NULL, ngx_http_chat_jwt_no_password,
                               NULL);
    BIO_free(bio);

    if (pkey != NULL) {
        ERR_clear_error();
        return pkey;
    }

    bio = BIO_new_mem_buf(data, (int) len);
    if (bio == NULL) {
        goto failed;
    }

    x509 = PEM_read_bio_X509(bio, NULL, ngx_http_chat_jwt_no_password, NULL);
    BIO_free(bio);

    if (x509 != NULL) {
        pkey = X509_get_pubkey(x509);
        X509_free(x509);
        ERR_clear_error();
        return pkey;
    }

    bio = BIO_new_mem_buf(data, (int) len);
    if (bio == NULL) {
        goto failed;
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, ngx_http_chat_jwt_no_password,
                                   NULL);
    BIO_free(bio);

    if (pkey == NULL) {
        goto failed;
    }

    /* keep only the public half: verification needs nothing else */

    pub = ngx_http_chat_jwt_public_part(pkey);
    EVP_PKEY_free(pkey);
    ERR_clear_error();

    return pub;

failed:

    ERR_clear_error();

    return NULL;
}


static EVP_PKEY *
ngx_http_chat_jwt_public_part(EVP_PKEY *pkey)
{
    int             n;
    u_char         *der;
    EVP_PKEY       *pub;
    const u_char   *p;

    der = NULL;

    n = i2d_PUBKEY(pkey, &der);
    if (n <= 0) {
        return NULL;
    }

    p = der;
    pub = d2i_PUBKEY(NULL, &p, n);

    OPENSSL_free(der);

    return pub;
}


/* an encrypted key must fail, never prompt on a terminal */

static int
ngx_http_chat_jwt_no_password(char *buf, int size, int rwflag, void *data)
{
    (void) buf;
    (void) size;
    (void) rwflag;
    (void) data;

    return -1;
}


static int
ngx_http_chat_jwt_check_pkey(EVP_PKEY *pkey, ngx_http_chat_jwt_alg_e alg,
    const char **err)
{
    if (alg == NGX_HTTP_CHAT_JWT_RS256) {
        if (EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA) {
            *err = "RS256 needs an RSA key";
            return -1;
        }

        if (EVP_PKEY_bits(pkey) < NGX_HTTP_CHAT_JWT_RSA_MIN_BITS) {
            *err = "RSA key too small, RS256 needs at least 2048 bits";
            return -1;
        }

        return 0;
    }

    if (EVP_PKEY_base_id(pkey) != EVP_PKEY_EC) {
        *err = "ES256 needs an EC key";
        return -1;
    }

    if (!ngx_http_chat_jwt_is_p256(pkey)) {
        *err = "ES256 needs a P-256 (prime256v1) key";
        return -1;
    }

    return 0;
}


static int
ngx_http_chat_jwt_is_p256(EVP_PKEY *pkey)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L

    int     nid;
    size_t  len;
    char    name[80];

    /*
     * Explicit curve parameters pass only when OpenSSL matches them to
     * P-256 itself; any other curve has another name or none.
     */

    if (EVP_PKEY_get_group_name(pkey, name, sizeof(name), &len) != 1) {
        return 0;
    }

    nid = OBJ_sn2nid(name);

    if (nid == NID_undef) {
        nid = EC_curve_nist2nid(name);
    }

    return nid == NID_X9_62_prime256v1;

#else

    const EC_KEY    *ec;
    const EC_GROUP  *group;

    ec = EVP_PKEY_get0_EC_KEY(pkey);
    if (ec == NULL) {
        return 0;
    }

    group = EC_KEY_get0_group(ec);
    if (group == NULL) {
        return 0;
    }

    return EC_GROUP_get_curve_name(group) == NID_X9_62_prime256v1;

#endif
}


int
ngx_http_chat_jwt_verify(const ngx_http_chat_jwt_key_t *key,
    const ngx_http_chat_jwt_opts_t *opts, const u_char *token, size_t len,
    ngx_http_chat_jwt_t *jwt, const char **err)
{
    size_t         i, seg_len[3], dec_len[3];
    u_char        *p, *dec[3];
    json_t        *claims;
    ssize_t        n;
    const u_char  *dot, *last, *seg[3];
    u_char         buf[NGX_HTTP_CHAT_JWT_MAX_DECODED];

    memset(jwt, 0, sizeof(ngx_http_chat_jwt_t));

    if (key == NULL || ngx_http_chat_jwt_alg_name(key->alg) == NULL
        || (key->secret == NULL && key->pkey == NULL))
    {
        *err = "no verification key";
        return -1;
    }

    if (opts == NULL) {
        *err = "no verification options";
        return -1;
    }

    if (token == NULL || len == 0) {
        *err = "malformed token";
        return -1;
    }

    if (len > NGX_HTTP_CHAT_JWT_MAX_TOKEN) {
        *err = "token too long";
        return -1;
    }

    /*
     * Exactly three segments: header, payload, signature.  A JWE has five,
     * the JSON serialization has no dot at its top level.
     */

    last = token + len;
    seg[0] = token;

    for (i = 0; i < 2; i++) {
        dot = memchr(seg[i], '.', (size_t) (last - seg[i]));
        if (dot == NULL) {
            *err = "malformed token";
            return -1;
        }

        seg_len[i] = (size_t) (dot - seg[i]);
        seg[i + 1] = dot + 1;
    }

    seg_len[2] = (size_t) (last - seg[2]);

    if (memchr(seg[2], '.', seg_len[2]) != NULL
        || seg_len[0] == 0 || seg_len[1] == 0)
    {
        *err = "malformed token";
        return -1;
    }

    if (seg_len[2] == 0) {
        *err = "missing signature";
        return -1;
    }

    /*
     * All three are decoded up front, so that bad base64url is reported as
     * such wherever it is; together they fit in buf.
     */

    p = buf;

    for (i = 0; i < 3; i++) {
        n = ngx_http_chat_jwt_base64url_decode(p, seg[i], seg_len[i]);
        if (n < 0) {
            *err = "malformed token";
            return -1;
        }

        dec[i] = p;
        dec_len[i] = (size_t) n;
        p += n;
    }

    if (ngx_http_chat_jwt_check_header(key, dec[0], dec_len[0], err) != 0) {
        return -1;
    }

    /* the signing input is the first two segments as sent */

    if (ngx_http_chat_jwt_check_signature(key, token,
                                          (size_t) (seg[2] - 1 - token),
                                          dec[2], dec_len[2])
        != 0)
    {
        *err = "bad signature";
        return -1;
    }

    claims = json_loadb((const char *) dec[1], dec_len[1],
                        JSON_REJECT_DUPLICATES, NULL);
    if (claims == NULL) {
        *err = "malformed token";
        return -1;
    }

    if (!json_is_object(claims)) {
        json_decref(claims);
        *err = "malformed token";
        return -1;
    }

    if (ngx_http_chat_jwt_check_claims(opts, claims, jwt, err) != 0) {
        json_decref(claims);
        memset(jwt, 0, sizeof(ngx_http_chat_jwt_t));
        return -1;
    }

    jwt->claims = claims;

    return 0;
}


void
ngx_http_chat_jwt_free(ngx_http_chat_jwt_t *jwt)
{
    if (jwt == NULL) {
        return;
    }

    if (jwt->claims != NULL) {
        json_decref(jwt->claims);
    }

    memset(jwt, 0, sizeof(ngx_http_chat_jwt_t));
}


static int
ngx_http_chat_jwt_check_header(const ngx_http_chat_jwt_key_t *key,
    const u_char *data, size_t len, const char **err)
{
    size_t       n;
    json_t      *header, *alg;
    const char  *name;

    header = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES,
                        NULL);
    if (header == NULL) {
        *err = "malformed token";
        return -1;
    }

    if (!json_is_object(header)) {
        *err = "malformed token";
        goto failed;
    }

    alg = json_object_get(header, "alg");
    if (alg == NULL) {
        *err = "malformed token";
        goto failed;
    }

    /* an exact, case-sensitive match with the configured algorithm */

    name = ngx_http_chat_jwt_alg_name(key->alg);
    n = strlen(name);

    if (!json_is_string(alg)
        || json_string_length(alg) != n
        || memcmp(json_string_value(alg), name, n) != 0)
    {
        *err = "algorithm not allowed";
        goto failed;
    }

    /* RFC 7515 4.1.11: no extension is understood, so none may be critical */

    if (json_object_get(header, "crit") != NULL) {
        *err = "unsupported critical header";
        goto failed;
    }

    json_decref(header);

    return 0;

failed:

    json_decref(header);

    return -1;
}


static int
ngx_http_chat_jwt_check_signature(const ngx_http_chat_jwt_key_t *key,
    const u_char *input, size_t input_len, const u_char *sig, size_t sig_len)
{
    switch (key->alg) {

    case NGX_HTTP_CHAT_JWT_HS256:
    case NGX_HTTP_CHAT_JWT_HS384:
    case NGX_HTTP_CHAT_JWT_HS512:
        return ngx_http_chat_jwt_check_hmac(key, input, input_len, sig,
                                            sig_len);

    case NGX_HTTP_CHAT_JWT_RS256:
        return ngx_http_chat_jwt_check_rsa(key->pkey, input, input_len, sig,
                                           sig_len);

    case NGX_HTTP_CHAT_JWT_ES256:
        return ngx_http_chat_jwt_check_ecdsa(key->pkey, input, input_len,
                                             sig, sig_len);

    default:
        return -1;
    }
}


static int
ngx_http_chat_jwt_check_hmac(const ngx_http_chat_jwt_key_t *key,
    const u_char *input, size_t input_len, const u_char *sig, size_t sig_len)
{
    int            rc;
    unsigned int   mac_len;
    const EVP_MD  *md;
    u_char         mac[EVP_MAX_MD_SIZE];

    md = ngx_http_chat_jwt_hmac_md(key->alg);

    if (md == NULL || key->secret == NULL
        || sig_len != (size_t) EVP_MD_size(md))
    {
        return -1;
    }

    if (HMAC(md, key->secret, (int) key->secret_len, input, input_len, mac,
             &mac_len)
        == NULL)
    {
        ERR_clear_error();
        return -1;
    }

    if (mac_len != sig_len) {
        OPENSSL_cleanse(mac, sizeof(mac));
        return -1;
    }

    rc = CRYPTO_memcmp(mac, sig, sig_len) == 0 ? 0 : -1;

    /* the correct MAC for attacker-chosen input is worth nothing to keep */

    OPENSSL_cleanse(mac, sizeof(mac));

    return rc;
}


static int
ngx_http_chat_jwt_check_rsa(EVP_PKEY *pkey, const u_char *input,
    size_t input_len, const u_char *sig, size_t sig_len)
{
    if (pkey == NULL || sig_len != (size_t) EVP_PKEY_size(pkey)) {
        return -1;
    }

    return ngx_http_chat_jwt_digest_verify(pkey, input, input_len, sig,
                                           sig_len);
}


/* RFC 7518 3.4: the JWS form is R || S, OpenSSL wants DER */

static int
ngx_http_chat_jwt_check_ecdsa(EVP_PKEY *pkey, const u_char *input,
    size_t input_len, const u_char *sig, size_t sig_len)
{
    int         n;
    BIGNUM     *r, *s;
    u_char     *p;
    ECDSA_SIG  *es;
    u_char      der[NGX_HTTP_CHAT_JWT_ES256_DER];

    if (pkey == NULL || sig_len != NGX_HTTP_CHAT_JWT_ES256_LEN) {
        return -1;
    }

    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, NGX_HTTP_CHAT_JWT_ES256_LEN / 2, NULL);
    s = BN_bin2bn(sig + NGX_HTTP_CHAT_JWT_ES256_LEN / 2,
                  NGX_HTTP_CHAT_JWT_ES256_LEN / 2, NULL);

    if (es == NULL || r == NULL || s == NULL) {
        goto failed;
    }

    if (ECDSA_SIG_set0(es, r, s) != 1) {
        goto failed;
    }

    /* es owns them now */

    r = NULL;
    s = NULL;

    n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || (size_t) n > sizeof(der)) {
        goto failed;
    }

    p = der;
    n = i2d_ECDSA_SIG(es, &p);
    if (n <= 0) {
        goto failed;
    }

    ECDSA_SIG_free(es);

    return ngx_http_chat_jwt_digest_verify(pkey, input, input_len, der,
                                           (size_t) n);

failed:

    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    ERR_clear_error();

    return -1;
}


static int
ngx_http_chat_jwt_digest_verify(EVP_PKEY *pkey, const u_char *input,
    size_t input_len, const u_char *sig, size_t sig_len)
{
    int          rc;
    EVP_MD_CTX  *ctx;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        ERR_clear_error();
        return -1;
    }

    rc = -1;

    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1
        && EVP_DigestVerify(ctx, sig, sig_len, input, input_len) == 1)
    {
        rc = 0;
    }

    EVP_MD_CTX_free(ctx);

    /* a refused signature leaves errors that must not reach nginx's TLS */

    ERR_clear_error();

    return rc;
}


static int
ngx_http_chat_jwt_check_claims(const ngx_http_chat_jwt_opts_t *opts,
    json_t *claims, ngx_http_chat_jwt_t *jwt, const char **err)
{
    int      rc;
    json_t  *value;
    int64_t  exp, nbf, leeway;

    leeway = opts->leeway > 0 ? opts->leeway : 0;

    /* a fractional exp is rounded down, nbf up: "now" is whole seconds */

    exp = 0;
    value = json_object_get(claims, "exp");

    if (value != NULL) {
        if (ngx_http_chat_jwt_time(value, 0, &exp) != 0) {
            *err = "invalid exp claim";
            return -1;
        }

        if (opts->now > ngx_http_chat_jwt_add(exp, leeway)) {
            *err = "token expired";
            return -1;
        }

    } else if (opts->require_exp) {
        *err = "token has no exp";
        return -1;
    }

    value = json_object_get(claims, "nbf");

    if (value != NULL) {
        if (ngx_http_chat_jwt_time(value, 1, &nbf) != 0) {
            *err = "invalid nbf claim";
            return -1;
        }

        if (ngx_http_chat_jwt_add(opts->now, leeway) < nbf) {
            *err = "token not yet valid";
            return -1;
        }
    }

    if (opts->issuer != NULL
        && !ngx_http_chat_jwt_string_eq(json_object_get(claims, "iss"),
                                        opts->issuer))
    {
        *err = "wrong issuer";
        return -1;
    }

    if (opts->audience != NULL
        && !ngx_http_chat_jwt_check_aud(json_object_get(claims, "aud"),
                                        opts->audience))
    {
        *err = "wrong audience";
        return -1;
    }

    if (ngx_http_chat_jwt_check_sub(claims, jwt, err) != 0) {
        return -1;
    }

    /* UTF-8 takes at most 4 bytes a character; counted exactly below */

    rc = ngx_http_chat_jwt_opt_string(claims, "name",
                                      NGX_HTTP_CHAT_JWT_MAX_NAME * 4,
                                      &jwt->name, &jwt->name_len);
    if (rc == 0 && jwt->name != NULL) {
        rc = ngx_http_chat_jwt_check_name(jwt->name, jwt->name_len);
    }

    if (rc != 0) {
        *err = (rc == -1) ? "invalid name claim" : "name claim too long";
        return -1;
    }

    rc = ngx_http_chat_jwt_opt_string(claims, "avatar",
                                      NGX_HTTP_CHAT_JWT_MAX_AVATAR,
                                      &jwt->avatar, &jwt->avatar_len);
    if (rc == 0 && jwt->avatar != NULL) {
        rc = ngx_http_chat_jwt_check_avatar(jwt->avatar, jwt->avatar_len);
    }

    if (rc != 0) {
        *err = (rc == -1) ? "invalid avatar claim" : "avatar claim too long";
        return -1;
    }

    jwt->exp = exp;

    return 0;
}


static int
ngx_http_chat_jwt_check_sub(json_t *claims, ngx_http_chat_jwt_t *jwt,
    const char **err)
{
    size_t       i, len;
    u_char       c;
    json_t      *value;
    const char  *sub;

    value = json_object_get(claims, "sub");
    if (value == NULL) {
        *err = "token has no sub";
        return -1;
    }

    if (!json_is_string(value)) {
        *err = "invalid sub claim";
        return -1;
    }

    sub = json_string_value(value);
    len = json_string_length(value);

    if (len == 0) {
        *err = "token has no sub";
        return -1;
    }

    if (len > NGX_HTTP_CHAT_JWT_MAX_SUB) {
        *err = "sub claim too long";
        return -1;
    }

    /* sub names the user in logs and messages: no control characters */

    for (i = 0; i < len; i++) {
        c = (u_char) sub[i];

        if (c < 0x20 || c == 0x7f) {
            *err = "invalid sub claim";
            return -1;
        }
    }

    jwt->sub = sub;
    jwt->sub_len = len;

    return 0;
}


/* a NumericDate: an integer, or a real rounded down or up, saturated */

static int
ngx_http_chat_jwt_time(json_t *value, int round_up, int64_t *t)
{
    double   d;
    int64_t  n;

    if (json_is_integer(value)) {
        *t = (int64_t) json_integer_value(value);
        return 0;
    }

    if (!json_is_real(value)) {
        return -1;
    }

    d = json_real_value(value);

    /* NaN: jansson never makes one, but no comparison below would catch it */

    if (d != d) {
        return -1;
    }

    /* 2^63 is exact as a double; anything in between converts safely */

    if (d >= 9223372036854775808.0) {
        *t = INT64_MAX;
        return 0;
    }

    if (d < -9223372036854775808.0) {
        *t = INT64_MIN;
        return 0;
    }

    n = (int64_t) d;

    if (round_up) {
        if ((double) n < d) {
            n++;
        }

    } else {
        if ((double) n > d) {
            n--;
        }
    }

    *t = n;

    return 0;
}


static int64_t
ngx_http_chat_jwt_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b) {
        return INT64_MAX;
    }

    if (b < 0 && a < INT64_MIN - b) {
        return INT64_MIN;
    }

    return a + b;
}


static int
ngx_http_chat_jwt_string_eq(json_t *value, const char *s)
{
    size_t  len;

    if (value == NULL || !json_is_string(value)) {
        return 0;
    }

    len = strlen(s);

    return json_string_length(value) == len
           && memcmp(json_string_value(value), s, len) == 0;
}


/* RFC 7519 4.1.3: one string, or an array of them */

static int
ngx_http_chat_jwt_check_aud(json_t *aud, const char *audience)
{
    size_t   i;
    json_t  *value;

    if (aud == NULL) {
        return 0;
    }

    if (json_is_string(aud)) {
        return ngx_http_chat_jwt_string_eq(aud, audience);
    }

    if (!json_is_array(aud)) {
        return 0;
    }

    json_array_foreach(aud, i, value) {
        if (ngx_http_chat_jwt_string_eq(value, audience)) {
            return 1;
        }
    }

    return 0;
}


/*
 * The name is shown to other users: no control characters (as sub), and
 * no longer than the user directory keeps, so that it is never dropped
 * silently.  0, -1 when invalid, -2 when too long.
 */

static int
ngx_http_chat_jwt_check_name(const char *name, size_t len)
{
    u_char  c;
    size_t  i, chars;

    chars = 0;

    for (i = 0; i < len; i++) {
        c = (u_char) name[i];

        if (c < 0x20 || c == 0x7f) {
            return -1;
        }

        /* jansson's strings are valid UTF-8: count all but continuations */

        if ((c & 0xc0) != 0x80) {
            chars++;
        }
    }

    return chars > NGX_HTTP_CHAT_JWT_MAX_NAME ? -2 : 0;
}


/*
 * Clients put the avatar into <img src>: an https:// URL or a path on
 * the chat's own site ("/x", not "//host" or "/\host", which browsers
 * read as another host); no javascript:, data: or plain http:.  Empty is
 * no avatar.  0, or -1.
 */

static int
ngx_http_chat_jwt_check_avatar(const char *avatar, size_t len)
{
    u_char  c;
    size_t  i;

    if (len == 0) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (u_char) avatar[i];

        if (c <= 0x20 || c == 0x7f) {
            return -1;
        }
    }

    if (len > sizeof("https://") - 1
        && strncasecmp(avatar, "https://", sizeof("https://") - 1) == 0)
    {
        /* a host follows, not a path: https:///x is no URL */

        c = (u_char) avatar[sizeof("https://") - 1];

        return (c == '/' || c == '\\') ? -1 : 0;
    }

    if (avatar[0] != '/') {
        return -1;
    }

    return (len > 1 && (avatar[1] == '/' || avatar[1] == '\\')) ? -1 : 0;
}


/* 0 when absent or fine, -1 when not a string, -2 when too long */

static int
ngx_http_chat_jwt_opt_string(json_t *claims, const char *name, size_t max,
    const char **p, size_t *len)
{
    json_t  *value;

    value = json_object_get(claims, name);
    if (value == NULL) {
        *p = NULL;
        *len = 0;
        return 0;
    }

    if (!json_is_string(value)) {
        return -1;
    }

    if (json_string_length(value) > max) {
        return -2;
    }

    *p = json_string_value(value);
    *len = json_string_length(value);

    return 0;
}


static const EVP_MD *
ngx_http_chat_jwt_hmac_md(ngx_http_chat_jwt_alg_e alg)
{
    switch (alg) {

    case NGX_HTTP_CHAT_JWT_HS256:
        return EVP_sha256();

    case NGX_HTTP_CHAT_JWT_HS384:
        return EVP_sha384();

    case NGX_HTTP_CHAT_JWT_HS512:
        return EVP_sha512();

    default:
        return NULL;
    }
}


ssize_t
ngx_http_chat_jwt_sign(const ngx_http_chat_jwt_key_t *key, json_t *claims,
    u_char *out, size_t size)
{
    int            n;
    size_t         header_len, payload_len, mac_need, need;
    u_char        *p, *payload;
    const char    *alg;
    unsigned int   mac_len;
    const EVP_MD  *md;
    u_char         mac[EVP_MAX_MD_SIZE];
    u_char         header[NGX_HTTP_CHAT_JWT_SIGN_HEADER];

    if (key == NULL || claims == NULL || out == NULL
        || !json_is_object(claims))
    {
        return -1;
    }

    md = ngx_http_chat_jwt_hmac_md(key->alg);
    if (md == NULL || key->secret == NULL) {
        return -1;
    }

    alg = ngx_http_chat_jwt_alg_name(key->alg);

    n = snprintf((char *) header, sizeof(header),
                 "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    if (n <= 0 || (size_t) n >= sizeof(header)) {
        return -1;
    }

    header_len = (size_t) n;

    /* json_dumpb() into our own buffer: no guess at jansson's allocator */

    payload_len = json_dumpb(claims, NULL, 0, JSON_COMPACT);
    if (payload_len == 0) {
        return -1;
    }

    mac_need = (size_t) EVP_MD_size(md);
    need = NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(header_len) + 1
           + NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(payload_len) + 1
           + NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(mac_need) + 1;

    if (need > size || need - 1 > SSIZE_MAX) {
        return -1;
    }

    payload = malloc(payload_len);
    if (payload == NULL) {
        return -1;
    }

    if (json_dumpb(claims, (char *) payload, payload_len, JSON_COMPACT)
        != payload_len)
    {
        free(payload);
        return -1;
    }

    p = out;
    p += ngx_http_chat_jwt_base64url_encode(p, header, header_len);
    *p++ = '.';
    p += ngx_http_chat_jwt_base64url_encode(p, payload, payload_len);

    free(payload);

    if (HMAC(md, key->secret, (int) key->secret_len, out, (size_t) (p - out),
             mac, &mac_len)
        == NULL)
    {
        ERR_clear_error();
        return -1;
    }

    *p++ = '.';
    p += ngx_http_chat_jwt_base64url_encode(p, mac, mac_len);
    *p = '\0';

    OPENSSL_cleanse(mac, sizeof(mac));

    return p - out;
}


/* the shared strict base64url (base64url.c), under jwt.c's own names */

size_t
ngx_http_chat_jwt_base64url_encode(u_char *dst, const u_char *src, size_t len)
{
    return ngx_http_chat_base64url_encode(dst, src, len);
}


ssize_t
ngx_http_chat_jwt_base64url_decode(u_char *dst, const u_char *src, size_t len)
{
    return ngx_http_chat_base64url_decode(dst, src, len);
}
