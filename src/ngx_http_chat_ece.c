
/*
 * Web Push message encryption, RFC 8291 section 3.4:
 *
 *   ecdh_secret = ECDH(our private key, the subscription's p256dh)
 *   IKM   = HKDF(salt: auth, ecdh_secret,
 *                "WebPush: info" 0x00 || p256dh || our public key, 32)
 *   CEK   = HKDF(salt, IKM, "Content-Encoding: aes128gcm" 0x00, 16)
 *   NONCE = HKDF(salt, IKM, "Content-Encoding: nonce" 0x00, 12)
 *
 * and the body of RFC 8188: salt || rs || idlen || our public key, then
 * one record, AES-128-GCM of the payload and its delimiter 0x02 (the last
 * record, no padding).  One record: the record size is the largest body a
 * push service must take, so whatever fits in that body fits in it.
 */


#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "ngx_http_chat_ece.h"


#define NGX_HTTP_CHAT_ECE_SECRET_LEN  32
#define NGX_HTTP_CHAT_ECE_CEK_LEN     16
#define NGX_HTTP_CHAT_ECE_NONCE_LEN   12
#define NGX_HTTP_CHAT_ECE_COORD_LEN   32

/* the record's delimiter: this record is the last */
#define NGX_HTTP_CHAT_ECE_LAST        0x02

#define NGX_HTTP_CHAT_ECE_KEY_INFO    "WebPush: info"
#define NGX_HTTP_CHAT_ECE_CEK_INFO    "Content-Encoding: aes128gcm"
#define NGX_HTTP_CHAT_ECE_NONCE_INFO  "Content-Encoding: nonce"


static int ngx_http_chat_ece_ecdh(EVP_PKEY *ours, const u_char *p256dh,
    u_char *secret);
static int ngx_http_chat_ece_keys(const u_char *secret, const u_char *auth,
    const u_char *p256dh, const u_char *ours, const u_char *salt,
    u_char *cek, u_char *nonce);
static int ngx_http_chat_ece_hkdf(const u_char *salt, size_t salt_len,
    const u_char *ikm, size_t ikm_len, const u_char *info, size_t info_len,
    u_char *out, size_t out_len);
static int ngx_http_chat_ece_seal(const u_char *cek, const u_char *nonce,
    const u_char *payload, size_t len, u_char *out);
static int ngx_http_chat_ece_is_p256(EVP_PKEY *pkey);


ssize_t
ngx_http_chat_ece_encrypt(u_char *out, size_t size, const u_char *payload,
    size_t len, const u_char *p256dh, const u_char *auth,
    EVP_PKEY *ephemeral, const u_char *salt, const char **err)
{
    u_char    *p;
    ssize_t    rc;
    EVP_PKEY  *ours;
    u_char     secret[NGX_HTTP_CHAT_ECE_SECRET_LEN];
    u_char     cek[NGX_HTTP_CHAT_ECE_CEK_LEN];
    u_char     nonce[NGX_HTTP_CHAT_ECE_NONCE_LEN];

    if (len > NGX_HTTP_CHAT_ECE_MAX_PAYLOAD) {
        *err = "payload too large for a push message";
        return -1;
    }

    if (size < NGX_HTTP_CHAT_ECE_BODY_LEN(len)) {
        *err = "no room for the body";
        return -1;
    }

    if (payload == NULL && len != 0) {
        *err = "no payload";
        return -1;
    }

    if (p256dh == NULL || auth == NULL) {
        *err = "no subscription keys";
        return -1;
    }

    ours = ephemeral;

    if (ours == NULL) {
        ours = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (ours == NULL) {
            ERR_clear_error();
            *err = "no key pair generated";
            return -1;
        }
    }

    rc = -1;
    p = out;

    /* the header: salt, rs, idlen, keyid */

    if (salt != NULL) {
        memcpy(p, salt, NGX_HTTP_CHAT_ECE_SALT_LEN);

    } else if (RAND_bytes(p, NGX_HTTP_CHAT_ECE_SALT_LEN) != 1) {
        *err = "no random salt";
        goto done;
    }

    salt = p;
    p += NGX_HTTP_CHAT_ECE_SALT_LEN;

    *p++ = (u_char) (NGX_HTTP_CHAT_ECE_MAX_BODY >> 24);
    *p++ = (u_char) (NGX_HTTP_CHAT_ECE_MAX_BODY >> 16);
    *p++ = (u_char) (NGX_HTTP_CHAT_ECE_MAX_BODY >> 8);
    *p++ = (u_char) NGX_HTTP_CHAT_ECE_MAX_BODY;
    *p++ = NGX_HTTP_CHAT_ECE_KEY_LEN;

    if (ngx_http_chat_ece_export_public(ours, p) != 0) {
        *err = "the key pair is not P-256";
        goto done;
    }

    switch (ngx_http_chat_ece_ecdh(ours, p256dh, secret)) {

    case 0:
        break;

    case -1:
        *err = "p256dh is not a P-256 public key";
        goto done;

    default:
        *err = "ECDH failed";
        goto done;
    }

    if (ngx_http_chat_ece_keys(secret, auth, p256dh, p, salt, cek, nonce)
        != 0)
    {
        *err = "key derivation failed";
        goto done;
    }

    p += NGX_HTTP_CHAT_ECE_KEY_LEN;

    if (ngx_http_chat_ece_seal(cek, nonce, payload, len, p) != 0) {
        *err = "encryption failed";
        goto done;
    }

    rc = (ssize_t) NGX_HTTP_CHAT_ECE_BODY_LEN(len);

done:

    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(cek, sizeof(cek));
    OPENSSL_cleanse(nonce, sizeof(nonce));

    if (ours != ephemeral) {
        EVP_PKEY_free(ours);
    }

    ERR_clear_error();

    return rc;
}


/* 0, -1 when p256dh is no point of P-256, -2 when our key fails */

static int
ngx_http_chat_ece_ecdh(EVP_PKEY *ours, const u_char *p256dh, u_char *secret)
{
    int            rc;
    size_t         n;
    EVP_PKEY      *peer;
    EVP_PKEY_CTX  *ctx;

    peer = ngx_http_chat_ece_import_public(p256dh, NGX_HTTP_CHAT_ECE_KEY_LEN);
    if (peer == NULL) {
        return -1;
    }

    rc = -2;
    n = NGX_HTTP_CHAT_ECE_SECRET_LEN;

    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, ours, NULL);

    if (ctx != NULL
        && EVP_PKEY_derive_init(ctx) == 1
        && EVP_PKEY_derive_set_peer(ctx, peer) == 1
        && EVP_PKEY_derive(ctx, secret, &n) == 1
        && n == NGX_HTTP_CHAT_ECE_SECRET_LEN)
    {
        rc = 0;
    }

    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);

    return rc;
}


static int
ngx_http_chat_ece_keys(const u_char *secret, const u_char *auth,
    const u_char *p256dh, const u_char *ours, const u_char *salt,
    u_char *cek, u_char *nonce)
{
    int     rc;
    u_char  ikm[NGX_HTTP_CHAT_ECE_SECRET_LEN];
    u_char  info[sizeof(NGX_HTTP_CHAT_ECE_KEY_INFO)
                 + 2 * NGX_HTTP_CHAT_ECE_KEY_LEN];

    /* sizeof counts the NUL: the 0x00 after each label */

    memcpy(info, NGX_HTTP_CHAT_ECE_KEY_INFO,
           sizeof(NGX_HTTP_CHAT_ECE_KEY_INFO));
    memcpy(info + sizeof(NGX_HTTP_CHAT_ECE_KEY_INFO), p256dh,
           NGX_HTTP_CHAT_ECE_KEY_LEN);
    memcpy(info + sizeof(NGX_HTTP_CHAT_ECE_KEY_INFO)
           + NGX_HTTP_CHAT_ECE_KEY_LEN, ours, NGX_HTTP_CHAT_ECE_KEY_LEN);

    rc = -1;

    if (ngx_http_chat_ece_hkdf(auth, NGX_HTTP_CHAT_ECE_AUTH_LEN,
                               secret, NGX_HTTP_CHAT_ECE_SECRET_LEN,
                               info, sizeof(info), ikm, sizeof(ikm))
        != 0)
    {
        goto done;
    }

    if (ngx_http_chat_ece_hkdf(salt, NGX_HTTP_CHAT_ECE_SALT_LEN,
                               ikm, sizeof(ikm),
                               (const u_char *) NGX_HTTP_CHAT_ECE_CEK_INFO,
                               sizeof(NGX_HTTP_CHAT_ECE_CEK_INFO),
                               cek, NGX_HTTP_CHAT_ECE_CEK_LEN)
        != 0)
    {
        goto done;
    }

    if (ngx_http_chat_ece_hkdf(salt, NGX_HTTP_CHAT_ECE_SALT_LEN,
                               ikm, sizeof(ikm),
                               (const u_char *) NGX_HTTP_CHAT_ECE_NONCE_INFO,
                               sizeof(NGX_HTTP_CHAT_ECE_NONCE_INFO),
                               nonce, NGX_HTTP_CHAT_ECE_NONCE_LEN)
        != 0)
    {
        goto done;
    }

    rc = 0;

done:

    OPENSSL_cleanse(ikm, sizeof(ikm));

    return rc;
}


/* HKDF-SHA256, extract then expand (RFC 5869) */

static int
ngx_http_chat_ece_hkdf(const u_char *salt, size_t salt_len,
    const u_char *ikm, size_t ikm_len, const u_char *info, size_t info_len,
    u_char *out, size_t out_len)
{
    int           rc;
    EVP_KDF      *kdf;
    OSSL_PARAM    params[5];
    EVP_KDF_CTX  *ctx;

    kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
    if (kdf == NULL) {
        return -1;
    }

    ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);

    if (ctx == NULL) {
        return -1;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                  (void *) salt, salt_len);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  (void *) ikm, ikm_len);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                  (void *) info, info_len);
    params[4] = OSSL_PARAM_construct_end();

    rc = (EVP_KDF_derive(ctx, out, out_len, params) == 1) ? 0 : -1;

    EVP_KDF_CTX_free(ctx);

    return rc;
}


/* the one record: AES-128-GCM of payload || 0x02, then the tag */

static int
ngx_http_chat_ece_seal(const u_char *cek, const u_char *nonce,
    const u_char *payload, size_t len, u_char *out)
{
    int              n, rc;
    u_char          *p;
    size_t           off;
    EVP_CIPHER_CTX  *ctx;
    static const u_char  last = NGX_HTTP_CHAT_ECE_LAST;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return -1;
    }

    rc = -1;
    p = out;

    if (EVP_EncryptInit_ex2(ctx, EVP_aes_128_gcm(), cek, nonce, NULL) != 1) {
        goto done;
    }

    /* EVP_EncryptUpdate() takes an int length; len <= MAX_PAYLOAD anyway */

    for (off = 0; off < len; off += (size_t) n) {
        n = (len - off > 1024) ? 1024 : (int) (len - off);

        if (EVP_EncryptUpdate(ctx, p, &n, payload + off, n) != 1) {
            goto done;
        }

        p += n;
    }

    if (EVP_EncryptUpdate(ctx, p, &n, &last, 1) != 1) {
        goto done;
    }

    p += n;

    if (EVP_EncryptFinal_ex(ctx, p, &n) != 1) {
        goto done;
    }

    p += n;

    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
                            NGX_HTTP_CHAT_ECE_TAG_LEN, p)
        != 1)
    {
        goto done;
    }

    rc = 0;

done:

    EVP_CIPHER_CTX_free(ctx);

    return rc;
}


/*
 * fromdata takes the point only if it is on the curve; the quick public
 * key check says so again and refuses the point at infinity, whatever
 * OpenSSL's import does or not.  (P-256's cofactor is 1: every point on
 * the curve but infinity has the group's order, so the full check's
 * scalar multiplication would add nothing.)
 */

EVP_PKEY *
ngx_http_chat_ece_import_public(const u_char *point, size_t len)
{
    int            ok;
    EVP_PKEY      *pkey;
    OSSL_PARAM     params[3];
    EVP_PKEY_CTX  *ctx;

    /* uncompressed only: what PushSubscription.getKey("p256dh") gives */

    if (point == NULL || len != NGX_HTTP_CHAT_ECE_KEY_LEN
        || point[0] != 0x04)
    {
        return NULL;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *) "prime256v1", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  (void *) point, len);
    params[2] = OSSL_PARAM_construct_end();

    pkey = NULL;

    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);

    if (ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        EVP_PKEY_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }

    EVP_PKEY_CTX_free(ctx);

    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    ok = (ctx != NULL && EVP_PKEY_public_check_quick(ctx) == 1);
    EVP_PKEY_CTX_free(ctx);

    if (!ok) {
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        return NULL;
    }

    return pkey;
}


/* from the coordinates: a key's own point format may be compressed */

int
ngx_http_chat_ece_export_public(EVP_PKEY *pkey, u_char *out)
{
    int      rc;
    BIGNUM  *x, *y;

    if (pkey == NULL || !ngx_http_chat_ece_is_p256(pkey)) {
        return -1;
    }

    x = NULL;
    y = NULL;
    rc = -1;

    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1
        && EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1
        && BN_bn2binpad(x, out + 1, NGX_HTTP_CHAT_ECE_COORD_LEN)
           == NGX_HTTP_CHAT_ECE_COORD_LEN
        && BN_bn2binpad(y, out + 1 + NGX_HTTP_CHAT_ECE_COORD_LEN,
                        NGX_HTTP_CHAT_ECE_COORD_LEN)
           == NGX_HTTP_CHAT_ECE_COORD_LEN)
    {
        out[0] = 0x04;
        rc = 0;
    }

    BN_free(x);
    BN_free(y);
    ERR_clear_error();

    return rc;
}


static int
ngx_http_chat_ece_is_p256(EVP_PKEY *pkey)
{
    char    name[64];
    size_t  len;

    if (!EVP_PKEY_is_a(pkey, "EC")) {
        return 0;
    }

    if (EVP_PKEY_get_group_name(pkey, name, sizeof(name), &len) != 1) {
        ERR_clear_error();
        return 0;
    }

    return strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0;
}
