
/*
 * libFuzzer target for ngx_http_chat_jwt_verify().
 *
 * The first input byte picks the mode, the rest is the data:
 *
 *   byte & 3 == 0   the data is a token, verified with an HS256 key;
 *   byte & 3 == 1   the same with an RS256 public key;
 *   byte & 3 == 2   the same with an ES256 public key;
 *   byte & 3 == 3   the data is "header\npayload" in plain bytes: the
 *                   target encodes both and signs them with the HS256 key,
 *                   so that header and claim checks past the signature get
 *                   exercised as well.
 *
 * Bits 2-4 of the first byte turn on require_exp, an issuer and an
 * audience.  Every input is also decoded as base64url alone: whatever the
 * strict decoder accepts must encode back to exactly the same text.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/hmac.h>

#include "ngx_http_chat_jwt.h"


#define FUZZ_NOW  1700000000


static int fuzz_init(void);
static void fuzz_verify(const ngx_http_chat_jwt_key_t *key,
    const ngx_http_chat_jwt_opts_t *opts, const u_char *token, size_t len);
static void fuzz_signed(const ngx_http_chat_jwt_opts_t *opts,
    const u_char *data, size_t len);
static void fuzz_base64url(const u_char *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  fuzz_hs256_secret[] = "fuzz-secret-0123456789abcdefghij";

/* t/data/jwt/rsa2048.pub.pem */
static const char  fuzz_rs256_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApNktoxgy7yqxBpS3Sz2N\n"
    "ajj4vkYvxcskJIaI4IsY3IOhs5JThohOvWygalF32Wql8G5vDete0GcEZgg+hUmc\n"
    "IGRqjdAAxQpTJu4kbl+U8x3CE/fHrgThgkA1Hqy4Fv4BrewN7pWVuEr2o2maOXNP\n"
    "H5mr2jCu9pKdWIEJdeMMc3YI3MgN2V2ftKBnXmxK1els08ZmJQFCld7RhAH1GZww\n"
    "S1l39dpB+zmRT4pTyTPdXd9hB7zBmbui2rlm1RspJ5LLdnkvXi7ZQZfhIWFzjNWV\n"
    "k0c2VrrMUCPqHRu4f3k6RlPQfY8LNtGjPU4e2r5f7jPsGqbvNAmVag9duZPPMri1\n"
    "GwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

/* t/data/jwt/ec256.pub.pem */
static const char  fuzz_es256_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKovDZtaKRnBH6F3WlxNM0Gj94tW8\n"
    "GGFp53c/2dhH3a5GLHFhuZgRfwM7WIiNlUvDjJE2qluCZtMLFAuuf6nukw==\n"
    "-----END PUBLIC KEY-----\n";


/* loaded once; the module itself keeps no such state */
static ngx_http_chat_jwt_key_t  fuzz_keys[3];
static int                      fuzz_ready;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                    mode;
    ngx_http_chat_jwt_opts_t  opts;

    if (!fuzz_ready) {
        if (fuzz_init() != 0) {
            abort();
        }

        fuzz_ready = 1;
    }

    if (size == 0) {
        return 0;
    }

    mode = data[0];
    data++;
    size--;

    fuzz_base64url(data, size);

    memset(&opts, 0, sizeof(opts));
    opts.now = FUZZ_NOW;
    opts.leeway = 60;
    opts.require_exp = (mode & 0x04) ? 1 : 0;
    opts.issuer = (mode & 0x08) ? "https://issuer.example" : NULL;
    opts.audience = (mode & 0x10) ? "chat" : NULL;

    switch (mode & 3) {

    case 0:
    case 1:
    case 2:
        fuzz_verify(&fuzz_keys[mode & 3], &opts, data, size);
        break;

    default:
        fuzz_signed(&opts, data, size);
        break;
    }

    return 0;
}


static int
fuzz_init(void)
{
    const char  *err;

    if (ngx_http_chat_jwt_key_load(&fuzz_keys[0], NGX_HTTP_CHAT_JWT_HS256,
                                   (const u_char *) fuzz_hs256_secret,
                                   sizeof(fuzz_hs256_secret) - 1, &err)
        != 0)
    {
        return -1;
    }

    if (ngx_http_chat_jwt_key_load(&fuzz_keys[1], NGX_HTTP_CHAT_JWT_RS256,
                                   (const u_char *) fuzz_rs256_pem,
                                   sizeof(fuzz_rs256_pem) - 1, &err)
        != 0)
    {
        return -1;
    }

    if (ngx_http_chat_jwt_key_load(&fuzz_keys[2], NGX_HTTP_CHAT_JWT_ES256,
                                   (const u_char *) fuzz_es256_pem,
                                   sizeof(fuzz_es256_pem) - 1, &err)
        != 0)
    {
        return -1;
    }

    return 0;
}


static void
fuzz_verify(const ngx_http_chat_jwt_key_t *key,
    const ngx_http_chat_jwt_opts_t *opts, const u_char *token, size_t len)
{
    int                   rc;
    size_t                i;
    u_char               *copy;
    const char           *err;
    ngx_http_chat_jwt_t   jwt;

    /* an exact-size heap copy, so that ASan sees any read past the end */

    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return;
    }

    memcpy(copy, token, len);

    err = NULL;
    rc = ngx_http_chat_jwt_verify(key, opts, copy, len, &jwt, &err);

    free(copy);

    if (rc != 0) {
        if (err == NULL || jwt.claims != NULL || jwt.sub != NULL) {
            abort();
        }

        return;
    }

    /* what a verified token promises */

    if (jwt.claims == NULL || jwt.sub == NULL || jwt.sub_len == 0
        || jwt.sub_len > NGX_HTTP_CHAT_JWT_MAX_SUB
        || (jwt.name == NULL && jwt.name_len != 0) || jwt.name_len > 256
        || (jwt.avatar == NULL && jwt.avatar_len != 0)
        || jwt.avatar_len > 2048)
    {
        abort();
    }

    if (json_object_get(jwt.claims, "exp") != NULL) {
        if (jwt.exp < opts->now - opts->leeway) {
            abort();
        }

    } else if (opts->require_exp || jwt.exp != 0) {
        abort();
    }

    for (i = 0; i < jwt.sub_len; i++) {
        if ((u_char) jwt.sub[i] < 0x20 || jwt.sub[i] == 0x7f) {
            abort();
        }
    }

    ngx_http_chat_jwt_free(&jwt);
}


static void
fuzz_signed(const ngx_http_chat_jwt_opts_t *opts, const u_char *data,
    size_t len)
{
    u_char        *nl, *p, *token;
    size_t         header_len, payload_len, size;
    unsigned int   mac_len;
    u_char         mac[EVP_MAX_MD_SIZE];

    nl = memchr(data, '\n', len);
    if (nl == NULL) {
        return;
    }

    header_len = (size_t) (nl - data);
    payload_len = len - header_len - 1;

    /* both segments, two dots, an HS256 signature */

    size = (header_len / 3 + 1) * 4 + (payload_len / 3 + 1) * 4 + 2 + 43;

    token = malloc(size);
    if (token == NULL) {
        return;
    }

    p = token;
    p += ngx_http_chat_jwt_base64url_encode(p, data, header_len);
    *p++ = '.';
    p += ngx_http_chat_jwt_base64url_encode(p, nl + 1, payload_len);

    if (HMAC(EVP_sha256(), fuzz_hs256_secret, sizeof(fuzz_hs256_secret) - 1,
             token, (size_t) (p - token), mac, &mac_len)
        == NULL)
    {
        abort();
    }

    *p++ = '.';
    p += ngx_http_chat_jwt_base64url_encode(p, mac, mac_len);

    if ((size_t) (p - token) > size) {
        abort();
    }

    fuzz_verify(&fuzz_keys[0], opts, token, (size_t) (p - token));

    free(token);
}


static void
fuzz_base64url(const u_char *data, size_t len)
{
    u_char   *dec, *enc;
    size_t    m;
    ssize_t   n;

    dec = malloc(len / 4 * 3 + 3);
    enc = malloc(len + 4);

    if (dec == NULL || enc == NULL) {
        goto done;
    }

    n = ngx_http_chat_jwt_base64url_decode(dec, data, len);
    if (n < 0) {
        goto done;
    }

    m = ngx_http_chat_jwt_base64url_encode(enc, dec, (size_t) n);

    if (m != len || memcmp(enc, data, len) != 0) {
        abort();
    }

done:

    free(dec);
    free(enc);
}
