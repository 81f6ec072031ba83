
/*
 * Unit tests of the pure parts of Web Push: base64url.c, ece.c (RFC 8291
 * appendix A, the 4096-byte limit, bad keys), vapid.c (tokens verified
 * with OpenSSL after the raw signature is made DER again, the header's
 * form, refusals) and subscription.c (good and bad subscriptions).
 *
 * With arguments it is the C side of t/test_webpush_crypto.py:
 *
 *   test_webpush encrypt P256DH AUTH PAYLOAD   (base64url each)
 *
 * prints the body, in base64url, that we send for that subscription (a
 * fresh key pair and salt, as in normal use), and
 *
 *   test_webpush vapid KEY.pem AUD SUB EXP
 *
 * the Authorization header's value signed with that private key.
 */


#include <stdint.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <jansson.h>

#include "unit.h"
#include "ngx_http_chat_base64url.h"
#include "ngx_http_chat_ece.h"
#include "ngx_http_chat_vapid.h"
#include "ngx_http_chat_subscription.h"


/* RFC 8291 appendix A */
#define RFC_PLAINTEXT   "When I grow up, I want to be a watermelon"
#define RFC_AS_PRIVATE  "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
#define RFC_AS_PUBLIC                                                        \
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6Tlz"   \
    "AC8wEqKK6PBru3jl7A8"
#define RFC_UA_PUBLIC                                                        \
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7V"   \
    "d8pZGH6SRpkNtoIAiw4"
#define RFC_AUTH        "BTBZMqHH6r4Tts7J_aSIgg"
#define RFC_SALT        "DGv6ra1nlYgDCS1FRnbzlw"
#define RFC_BODY                                                             \
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"       \
    "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"       \
    "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"

#define T_EXP  1700000000
#define T_AUD  "https://push.example.net"
#define T_SUB  "mailto:ops@example.org"

#define T_BIG  (1 << 20)


static u_char *t_decode(const char *b64, size_t *len);
static char *t_encode(const u_char *p, size_t len);
static EVP_PKEY *t_keypair(const char *private_b64, const char *public_b64);
static EVP_PKEY *t_pem(const char *name, int private);
static EVP_PKEY *t_generate(const char *curve);
static const char *t_path(const char *name);
static int t_es256_verify(EVP_PKEY *pub, const char *token, size_t len);
static json_t *t_segment(const char *p, size_t len);
static const char *t_sub(const char *json, ngx_http_chat_subscription_t *s);
static char *t_sub_json(const char *endpoint, const char *p256dh,
    const char *auth);

static void test_base64url(void);
static void test_ece_rfc(void);
static void test_ece_fresh(void);
static void test_ece_limits(void);
static void test_vapid(void);
static void test_vapid_refusals(void);
static void test_subscription_good(void);
static void test_subscription_endpoint(void);
static void test_subscription_keys(void);
static void test_subscription_json(void);
static int cmd_encrypt(int argc, char **argv);
static int cmd_vapid(int argc, char **argv);


int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "vapid") == 0) {
        return cmd_vapid(argc, argv);
    }

    if (argc > 1) {
        return cmd_encrypt(argc, argv);
    }

    test_base64url();
    test_ece_rfc();
    test_ece_fresh();
    test_ece_limits();
    test_vapid();
    test_vapid_refusals();
    test_subscription_good();
    test_subscription_endpoint();
    test_subscription_keys();
    test_subscription_json();

    UNIT_DONE("webpush");
}


static void
test_base64url(void)
{
    u_char   out[16];
    ssize_t  n;

    CHECK_EQ(ngx_http_chat_base64url_encode(out, (u_char *) "\xfb\xff", 2),
             3);
    CHECK(memcmp(out, "-_8", 3) == 0);

    n = ngx_http_chat_base64url_decode(out, (u_char *) "-_8", 3);
    CHECK_EQ(n, 2);
    CHECK(memcmp(out, "\xfb\xff", 2) == 0);

    /* padding, the other alphabet, a length of 1 mod 4, unused bits */
    CHECK_EQ(ngx_http_chat_base64url_decode(out, (u_char *) "-_8=", 4), -1);
    CHECK_EQ(ngx_http_chat_base64url_decode(out, (u_char *) "+/8", 3), -1);
    CHECK_EQ(ngx_http_chat_base64url_decode(out, (u_char *) "AAAAA", 5), -1);
    CHECK_EQ(ngx_http_chat_base64url_decode(out, (u_char *) "-_9", 3), -1);

    CHECK_EQ(NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(65), 87);
    CHECK_EQ(NGX_HTTP_CHAT_BASE64URL_DECODED_LEN(87), 65);
    CHECK_EQ(NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(16), 22);
    CHECK_EQ(NGX_HTTP_CHAT_BASE64URL_DECODED_LEN(22), 16);
}


static void
test_ece_rfc(void)
{
    char         *b64;
    size_t        n;
    u_char       *ua, *auth, *salt, *pub;
    ssize_t       len;
    EVP_PKEY     *as;
    const char   *err;
    u_char        point[NGX_HTTP_CHAT_ECE_KEY_LEN];
    u_char        body[NGX_HTTP_CHAT_ECE_MAX_BODY];

    as = t_keypair(RFC_AS_PRIVATE, RFC_AS_PUBLIC);
    CHECK(as != NULL);

    ua = t_decode(RFC_UA_PUBLIC, &n);
    CHECK_EQ(n, NGX_HTTP_CHAT_ECE_KEY_LEN);
    auth = t_decode(RFC_AUTH, &n);
    CHECK_EQ(n, NGX_HTTP_CHAT_ECE_AUTH_LEN);
    salt = t_decode(RFC_SALT, &n);
    CHECK_EQ(n, NGX_HTTP_CHAT_ECE_SALT_LEN);

    /* the key pair's public point, as the header's keyid carries it */

    pub = t_decode(RFC_AS_PUBLIC, &n);
    CHECK_EQ(ngx_http_chat_ece_export_public(as, point), 0);
    CHECK(memcmp(point, pub, sizeof(point)) == 0);

    err = NULL;
    len = ngx_http_chat_ece_encrypt(body, sizeof(body),
                                    (u_char *) RFC_PLAINTEXT,
                                    sizeof(RFC_PLAINTEXT) - 1, ua, auth, as,
                                    salt, &err);

    CHECK_EQ(len, NGX_HTTP_CHAT_ECE_BODY_LEN(sizeof(RFC_PLAINTEXT) - 1));
    CHECK(err == NULL);

    b64 = t_encode(body, len > 0 ? (size_t) len : 0);
    CHECK_STR(b64, RFC_BODY);

    /* the same call with no room for one byte of the tag */

    len = ngx_http_chat_ece_encrypt(body,
                  NGX_HTTP_CHAT_ECE_BODY_LEN(sizeof(RFC_PLAINTEXT) - 1) - 1,
                  (u_char *) RFC_PLAINTEXT, sizeof(RFC_PLAINTEXT) - 1, ua,
                  auth, as, salt, &err);
    CHECK_EQ(len, -1);
    CHECK_STR(err, "no room for the body");

    free(b64);
    free(ua);
    free(auth);
    free(salt);
    free(pub);
    EVP_PKEY_free(as);
}


/* normal use: a fresh key pair and salt each time, the header says so */

static void
test_ece_fresh(void)
{
    size_t       n;
    u_char      *ua, *auth;
    ssize_t      a, b;
    const char  *err;
    u_char       one[NGX_HTTP_CHAT_ECE_MAX_BODY];
    u_char       two[NGX_HTTP_CHAT_ECE_MAX_BODY];

    ua = t_decode(RFC_UA_PUBLIC, &n);
    auth = t_decode(RFC_AUTH, &n);

    a = ngx_http_chat_ece_encrypt(one, sizeof(one), (u_char *) "hi", 2, ua,
                                  auth, NULL, NULL, &err);
    b = ngx_http_chat_ece_encrypt(two, sizeof(two), (u_char *) "hi", 2, ua,
                                  auth, NULL, NULL, &err);

    CHECK_EQ(a, NGX_HTTP_CHAT_ECE_BODY_LEN(2));
    CHECK_EQ(b, NGX_HTTP_CHAT_ECE_BODY_LEN(2));

    /* salts and keys differ; rs is 4096, idlen 65, the key uncompressed */
    CHECK(memcmp(one, two, 16) != 0);
    CHECK(memcmp(one + 21, two + 21, 65) != 0);
    CHECK(memcmp(one + 16, "\x00\x00\x10\x00\x41\x04", 6) == 0);
    CHECK(memcmp(two + 16, "\x00\x00\x10\x00\x41\x04", 6) == 0);

    /* an empty payload is a record of the delimiter alone */
    a = ngx_http_chat_ece_encrypt(one, sizeof(one), NULL, 0, ua, auth, NULL,
                                  NULL, &err);
    CHECK_EQ(a, NGX_HTTP_CHAT_ECE_HEADER_LEN + 1 + 16);

    free(ua);
    free(auth);
}


static void
test_ece_limits(void)
{
    size_t       n;
    u_char      *ua, *auth, *payload, *body;
    ssize_t      len;
    EVP_PKEY    *p384;
    const char  *err;

    ua = t_decode(RFC_UA_PUBLIC, &n);
    auth = t_decode(RFC_AUTH, &n);
    payload = calloc(1, T_BIG);
    body = calloc(1, T_BIG);

    CHECK_EQ(NGX_HTTP_CHAT_ECE_MAX_PAYLOAD, 3993);

    /* the largest payload makes a body of exactly 4096 bytes */

    len = ngx_http_chat_ece_encrypt(body, T_BIG, payload,
                                    NGX_HTTP_CHAT_ECE_MAX_PAYLOAD, ua, auth,
                                    NULL, NULL, &err);
    CHECK_EQ(len, 4096);

    err = NULL;
    len = ngx_http_chat_ece_encrypt(body, T_BIG, payload,
                                    NGX_HTTP_CHAT_ECE_MAX_PAYLOAD + 1, ua,
                                    auth, NULL, NULL, &err);
    CHECK_EQ(len, -1);
    CHECK_STR(err, "payload too large for a push message");

    len = ngx_http_chat_ece_encrypt(body, T_BIG, payload, T_BIG, ua, auth,
                                    NULL, NULL, &err);
    CHECK_EQ(len, -1);

    /* a p256dh off the curve: its last byte changed */

    ua[64] ^= 1;
    err = NULL;
    len = ngx_http_chat_ece_encrypt(body, T_BIG, payload, 10, ua, auth,
                                    NULL, NULL, &err);
    CHECK_EQ(len, -1);
    CHECK_STR(err, "p256dh is not a P-256 public key");
    ua[64] ^= 1;

    /* not uncompressed */
    ua[0] = 0x03;
    len = ngx_http_chat_ece_encrypt(body, T_BIG, payload, 10, ua, auth,
                                    NULL, NULL, &err);
    CHECK_EQ(len, -1);
    ua[0] = 0x04;

    /* our key pair must be P-256 */

    p384 = t_generate("P-384");
    err = NULL;
    len = ngx_http_chat_ece_encrypt(body, T_BIG, payload, 10, ua, auth,
                                    p384, NULL, &err);
    CHECK_EQ(len, -1);
    CHECK_STR(err, "the key pair is not P-256");
    EVP_PKEY_free(p384);

    /* our key pair without its private half */

    {
        EVP_PKEY  *pub;

        pub = ngx_http_chat_ece_import_public(ua, 65);
        CHECK(pub != NULL);
        err = NULL;
        len = ngx_http_chat_ece_encrypt(body, T_BIG, payload, 10, ua, auth,
                                        pub, NULL, &err);
        CHECK_EQ(len, -1);
        CHECK_STR(err, "ECDH failed");
        EVP_PKEY_free(pub);
    }

    err = NULL;
    len = ngx_http_chat_ece_encrypt(body, T_BIG, payload, 10, NULL, auth,
                                    NULL, NULL, &err);
    CHECK_EQ(len, -1);
    CHECK_STR(err, "no subscription keys");

    CHECK(ngx_http_chat_ece_import_public(ua, 64) == NULL);
    CHECK(ngx_http_chat_ece_import_public(NULL, 65) == NULL);

    free(ua);
    free(auth);
    free(payload);
    free(body);
}


static void
test_vapid(void)
{
    int          i, ok;
    char        *k;
    json_t      *h, *c;
    size_t       n, plen;
    ssize_t      len, tlen;
    EVP_PKEY    *key, *pub;
    const char  *err, *dot1, *dot2, *token;
    u_char       point[65];
    u_char       b64[NGX_HTTP_CHAT_VAPID_KEY_LEN];
    char         out[NGX_HTTP_CHAT_VAPID_MAX_HEADER];

    key = t_pem("ec256.key.pem", 1);
    pub = t_pem("ec256.pub.pem", 0);
    CHECK(key != NULL && pub != NULL);

    if (key == NULL || pub == NULL) {
        return;
    }

    /* k: the public key, uncompressed, as the public PEM file has it */

    CHECK(EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY,
                                          point, sizeof(point), &plen) == 1);
    CHECK_EQ(plen, 65);
    k = t_encode(point, plen);

    CHECK_EQ(ngx_http_chat_vapid_key(key, b64, &err), 0);
    CHECK(memcmp(b64, k, NGX_HTTP_CHAT_VAPID_KEY_LEN) == 0);

    len = ngx_http_chat_vapid_header((u_char *) out, sizeof(out) - 1, key,
                                     T_AUD, sizeof(T_AUD) - 1, T_SUB,
                                     sizeof(T_SUB) - 1, T_EXP, &err);
    CHECK(len > 0);

    if (len <= 0) {
        return;
    }

    out[len] = '\0';

    /* vapid t=<token>, k=<key> */

    CHECK(strncmp(out, "vapid t=", 8) == 0);
    token = out + 8;
    tlen = len - 8 - 4 - NGX_HTTP_CHAT_VAPID_KEY_LEN;
    CHECK(strncmp(token + tlen, ", k=", 4) == 0);
    CHECK_STR(token + tlen + 4, k);

    dot1 = memchr(token, '.', (size_t) tlen);
    dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t) (token + tlen - dot1 - 1))
                : NULL;
    CHECK(dot1 != NULL && dot2 != NULL);

    if (dot1 == NULL || dot2 == NULL) {
        return;
    }

    /* the header and the claims, exactly */

    h = t_segment(token, (size_t) (dot1 - token));
    CHECK(h != NULL && json_object_size(h) == 2);
    CHECK_STR(json_string_value(json_object_get(h, "typ")), "JWT");
    CHECK_STR(json_string_value(json_object_get(h, "alg")), "ES256");
    json_decref(h);

    c = t_segment(dot1 + 1, (size_t) (dot2 - dot1 - 1));
    CHECK(c != NULL && json_object_size(c) == 3);
    CHECK_STR(json_string_value(json_object_get(c, "aud")), T_AUD);
    CHECK_STR(json_string_value(json_object_get(c, "sub")), T_SUB);
    CHECK_EQ(json_integer_value(json_object_get(c, "exp")), T_EXP);
    json_decref(c);

    /* the raw signature: 86 characters, 64 bytes */
    n = (size_t) (token + tlen - dot2 - 1);
    CHECK_EQ(n, 86);

    CHECK_EQ(t_es256_verify(pub, token, (size_t) tlen), 1);

    /* one bit flipped anywhere in the signature: refused */

    out[8 + tlen - 3] ^= 0x01;
    CHECK_EQ(t_es256_verify(pub, token, (size_t) tlen), 0);
    out[8 + tlen - 3] ^= 0x01;

    /* many signatures: r or s with leading zero bytes are padded right */

    ok = 0;

    for (i = 0; i < 300; i++) {
        tlen = ngx_http_chat_vapid_token((u_char *) out, sizeof(out), key,
                                         T_AUD, sizeof(T_AUD) - 1, T_SUB,
                                         sizeof(T_SUB) - 1, T_EXP + i, &err);
        if (tlen > 0 && t_es256_verify(pub, out, (size_t) tlen) == 1) {
            ok++;
        }
    }

    CHECK_EQ(ok, 300);

    /* an audience with a port, a subject that is an https URL */

    tlen = ngx_http_chat_vapid_token((u_char *) out, sizeof(out), key,
                                     "https://push.example.net:8443", 29,
                                     "https://chat.example.org/", 25, T_EXP,
                                     &err);
    CHECK(tlen > 0);

    free(k);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
}


static void
test_vapid_refusals(void)
{
    ssize_t      len;
    EVP_PKEY    *key, *pub, *p384, *rsa;
    const char  *err;
    u_char       b64[NGX_HTTP_CHAT_VAPID_KEY_LEN];
    u_char       out[NGX_HTTP_CHAT_VAPID_MAX_HEADER];

    key = t_pem("ec256.key.pem", 1);
    pub = t_pem("ec256.pub.pem", 0);
    p384 = t_pem("ec384.key.pem", 1);
    rsa = t_pem("rsa2048.key.pem", 1);

    err = NULL;
    CHECK_EQ(ngx_http_chat_vapid_key(pub, b64, &err), -1);
    CHECK_STR(err, "the VAPID key has no private part");

    err = NULL;
    CHECK_EQ(ngx_http_chat_vapid_key(p384, b64, &err), -1);
    CHECK_STR(err, "the VAPID key is not a P-256 key");

    err = NULL;
    CHECK_EQ(ngx_http_chat_vapid_key(rsa, b64, &err), -1);
    CHECK_STR(err, "the VAPID key is not a P-256 key");

    CHECK_EQ(ngx_http_chat_vapid_key(NULL, b64, &err), -1);

#define T_TOKEN(aud, sub, exp)                                               \
    ngx_http_chat_vapid_token(out, sizeof(out), key, aud, strlen(aud), sub,  \
                              strlen(sub), exp, &err)

    CHECK(T_TOKEN(T_AUD, T_SUB, T_EXP) > 0);

    err = NULL;
    CHECK_EQ(T_TOKEN("http://push.example.net", T_SUB, T_EXP), -1);
    CHECK_STR(err, "the audience is not an https origin");
    CHECK_EQ(T_TOKEN("https://push.example.net/", T_SUB, T_EXP), -1);
    CHECK_EQ(T_TOKEN("https://push.example.net/x", T_SUB, T_EXP), -1);
    CHECK_EQ(T_TOKEN("https://", T_SUB, T_EXP), -1);
    CHECK_EQ(T_TOKEN("https://a b", T_SUB, T_EXP), -1);

    err = NULL;
    CHECK_EQ(T_TOKEN(T_AUD, "ops@example.org", T_EXP), -1);
    CHECK_STR(err, "the subject is not a mailto: or https: URL");
    CHECK_EQ(T_TOKEN(T_AUD, "mailto:", T_EXP), -1);
    CHECK_EQ(T_TOKEN(T_AUD, "mailto:a\"b@example.org", T_EXP) > 0, 1);
    CHECK_EQ(T_TOKEN(T_AUD, "mailto:a\nb@example.org", T_EXP), -1);

    err = NULL;
    CHECK_EQ(T_TOKEN(T_AUD, T_SUB, 0), -1);
    CHECK_STR(err, "no expiry time");

    /* a buffer one byte short */

    len = T_TOKEN(T_AUD, T_SUB, T_EXP);
    CHECK(len > 0);
    err = NULL;
    CHECK_EQ(ngx_http_chat_vapid_token(out, (size_t) len - 1, key, T_AUD,
                                       sizeof(T_AUD) - 1, T_SUB,
                                       sizeof(T_SUB) - 1, T_EXP, &err), -1);
    CHECK_STR(err, "no room for the token");

    len = ngx_http_chat_vapid_header(out, sizeof(out), key, T_AUD,
                                     sizeof(T_AUD) - 1, T_SUB,
                                     sizeof(T_SUB) - 1, T_EXP, &err);
    CHECK(len > 0);
    CHECK_EQ(ngx_http_chat_vapid_header(out, (size_t) len - 1, key, T_AUD,
                                        sizeof(T_AUD) - 1, T_SUB,
                                        sizeof(T_SUB) - 1, T_EXP, &err), -1);
    CHECK_EQ(ngx_http_chat_vapid_header(out, (size_t) len, key, T_AUD,
                                        sizeof(T_AUD) - 1, T_SUB,
                                        sizeof(T_SUB) - 1, T_EXP, &err),
             len);

#undef T_TOKEN

    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa);
}


static void
test_subscription_good(void)
{
    char                          *json;
    size_t                         n;
    u_char                        *ua, *auth;
    const char                    *err;
    ngx_http_chat_subscription_t   s;

    ua = t_decode(RFC_UA_PUBLIC, &n);
    auth = t_decode(RFC_AUTH, &n);

    json = t_sub_json("https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91b",
                      RFC_UA_PUBLIC, RFC_AUTH);
    err = t_sub(json, &s);
    CHECK(err == NULL);
    CHECK_STR(s.endpoint,
              "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91b");
    CHECK_STR(s.host, "fcm.googleapis.com");
    CHECK_EQ(s.port, 443);
    CHECK_EQ(s.ipv6, 0);
    CHECK_EQ(s.path_len, strlen("/fcm/send/dQw4w9WgXcQ:APA91b"));
    CHECK(strncmp(s.path, "/fcm/send/dQw4w9WgXcQ:APA91b", s.path_len) == 0);
    CHECK_STR(s.origin, "https://fcm.googleapis.com");
    CHECK_EQ(s.origin_len, strlen("https://fcm.googleapis.com"));
    CHECK_EQ(s.expiration, 0);
    CHECK(memcmp(s.p256dh, ua, 65) == 0);
    CHECK(memcmp(s.auth, auth, 16) == 0);
    free(json);

    /* a port, a host in capitals, a query, an expiration time */

    err = t_sub("{\"endpoint\": \"https://Push.Example.NET:8443/p/1?x=2\","
                " \"expirationTime\": 1700000000000,"
                " \"keys\": {\"p256dh\": \"" RFC_UA_PUBLIC "\","
                " \"auth\": \"" RFC_AUTH "\", \"other\": 1}, \"more\": []}",
                &s);
    CHECK(err == NULL);
    CHECK_STR(s.host, "push.example.net");
    CHECK_EQ(s.port, 8443);
    CHECK(s.path_len == 8 && strncmp(s.path, "/p/1?x=2", 8) == 0);
    CHECK_STR(s.origin, "https://push.example.net:8443");
    CHECK_EQ(s.expiration, 1700000000000LL);

    /* no path: "/"; port 443 said: not in the origin; IPv6 */

    CHECK(ngx_http_chat_subscription_endpoint("https://h:443", 13, &s, &err)
          == 0);
    CHECK(s.path_len == 1 && s.path[0] == '/');
    CHECK_STR(s.origin, "https://h");

    CHECK(ngx_http_chat_subscription_endpoint("https://[::1]:9000/x", 20, &s,
                                              &err) == 0);
    CHECK_STR(s.host, "::1");
    CHECK_EQ(s.ipv6, 1);
    CHECK_EQ(s.port, 9000);
    CHECK_STR(s.origin, "https://[::1]:9000");

    /* padded base64url is forgiven */

    json = t_sub_json("https://h/", RFC_UA_PUBLIC "=", RFC_AUTH "==");
    CHECK(t_sub(json, &s) == NULL);
    free(json);

    free(ua);
    free(auth);
}


static void
test_subscription_endpoint(void)
{
    char                          *json, *big;
    size_t                         i;
    ngx_http_chat_subscription_t   s;

    static const struct {
        const char  *endpoint;
        const char  *err;
    } bad[] = {
        { "http://push.example.net/x", "endpoint is not an https URL" },
        { "HTTPS://push.example.net/x", "endpoint is not an https URL" },
        { "wss://push.example.net/x", "endpoint is not an https URL" },
        { "https:push.example.net/x", "endpoint is not an https URL" },
        { "", "endpoint is empty" },
        { "https://", "endpoint has no host" },
        { "https:///x", "endpoint has no host" },
        { "https://:443/x", "endpoint has no host" },
        { "https://user@push.example.net/x", "endpoint has userinfo" },
        { "https://u:p@push.example.net/x", "endpoint has userinfo" },
        { "https://push.example.net/x#frag", "endpoint has a fragment" },
        { "https://push.example.net:0/x", "endpoint has a bad port" },
        { "https://push.example.net:65536/x", "endpoint has a bad port" },
        { "https://push.example.net:99999/x", "endpoint has a bad port" },
        { "https://push.example.net:/x", "endpoint has a bad port" },
        { "https://push.example.net:08/x", "endpoint has a bad port" },
        { "https://push.example.net:44a/x", "endpoint has a bad port" },
        { "https://push.example.net:1:2/x", "endpoint has a bad port" },
        { "https://push.exa%6dple.net/x", "endpoint has a bad host name" },
        { "https://push.example.net\\@evil/x", "endpoint has userinfo" },
        { "https://push.example.net\\x/", "endpoint has a bad host name" },
        { "https://push example.net/x",
          "endpoint has a space, a control or a non-ASCII character" },
        { "https://push.example.net/\xc3\xa9",
          "endpoint has a space, a control or a non-ASCII character" },
        { "https://[::1/x", "endpoint has a bad IPv6 address" },
        { "https://[]/x", "endpoint has a bad IPv6 address" },
        { "https://[::g]/x", "endpoint has a bad IPv6 address" },
        { "https://[::1]x/", "endpoint has a bad port" },
        { "https://push.example.net?x", "endpoint has a query but no path" },
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json = t_sub_json(bad[i].endpoint, RFC_UA_PUBLIC, RFC_AUTH);
        CHECK_STR(t_sub(json, &s), bad[i].err);
        free(json);
    }

    /* the longest endpoint, one more, a host too long */

    big = malloc(T_BIG + 1);
    memcpy(big, "https://h/", 10);
    memset(big + 10, 'a', T_BIG - 10);

    CHECK(ngx_http_chat_subscription_endpoint(big,
              NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ENDPOINT, &s, NULL) == 0);
    CHECK_EQ(s.endpoint_len, 2048);
    CHECK_EQ(s.path_len, 2048 - 9);

    {
        const char  *err;

        CHECK(ngx_http_chat_subscription_endpoint(big,
                  NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ENDPOINT + 1, &s, &err)
              == -1);
        CHECK_STR(err, "endpoint is too long");

        CHECK(ngx_http_chat_subscription_endpoint(big, T_BIG, &s, &err)
              == -1);
        CHECK_STR(err, "endpoint is too long");

        memset(big + 8, 'a', 254);
        big[8 + 254] = '/';
        CHECK(ngx_http_chat_subscription_endpoint(big, 8 + 255, &s, &err)
              == -1);
        CHECK_STR(err, "endpoint has a host name too long");

        big[8 + 253] = '/';
        CHECK(ngx_http_chat_subscription_endpoint(big, 8 + 254, &s, &err)
              == 0);
        CHECK_EQ(s.host_len, 253);
    }

    free(big);
}


static void
test_subscription_keys(void)
{
    char                          *json, *big;
    u_char                        *ua, raw[80];
    size_t                         n;
    char                           b64[200];
    ngx_http_chat_subscription_t   s;

    ua = t_decode(RFC_UA_PUBLIC, &n);

#define T_KEYS(p256dh, auth)                                                 \
    (json = t_sub_json("https://h/x", p256dh, auth), t_sub(json, &s))

    CHECK(T_KEYS(RFC_UA_PUBLIC, RFC_AUTH) == NULL);
    free(json);

    /* base64, not base64url; a character outside any alphabet */
    strcpy(b64, RFC_UA_PUBLIC);
    b64[5] = '+';
    CHECK_STR(T_KEYS(b64, RFC_AUTH), "keys.p256dh is not base64url");
    free(json);
    CHECK_STR(T_KEYS(RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J/aSIgg"),
              "keys.auth is not base64url");
    free(json);
    CHECK_STR(T_KEYS(RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSIg!"),
              "keys.auth is not base64url");
    free(json);
    CHECK_STR(T_KEYS(RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSIgg==="),
              "keys.auth is not base64url");
    free(json);

    /* lengths: auth 15 and 17 bytes, p256dh 64 and 66, empty */
    CHECK_STR(T_KEYS(RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSI"),
              "keys.auth is not 16 bytes");
    free(json);
    CHECK_STR(T_KEYS(RFC_UA_PUBLIC, "BTBZMqHH6r4Tts7J_aSIggAA"),
              "keys.auth is not 16 bytes");
    free(json);
    CHECK_STR(T_KEYS(RFC_UA_PUBLIC, ""), "keys.auth is not 16 bytes");
    free(json);

    n = ngx_http_chat_base64url_encode((u_char *) b64, ua, 64);
    b64[n] = '\0';
    CHECK_STR(T_KEYS(b64, RFC_AUTH), "keys.p256dh is not 65 bytes");
    free(json);

    memcpy(raw, ua, 65);
    raw[65] = 0;
    n = ngx_http_chat_base64url_encode((u_char *) b64, raw, 66);
    b64[n] = '\0';
    CHECK_STR(T_KEYS(b64, RFC_AUTH), "keys.p256dh is not 65 bytes");
    free(json);

    /* a compressed point (33 bytes), a 65-byte one not marked 0x04 */
    raw[0] = 0x02;
    memcpy(raw + 1, ua + 1, 32);
    n = ngx_http_chat_base64url_encode((u_char *) b64, raw, 33);
    b64[n] = '\0';
    CHECK_STR(T_KEYS(b64, RFC_AUTH), "keys.p256dh is not 65 bytes");
    free(json);

    memcpy(raw, ua, 65);
    raw[0] = 0x06;
    n = ngx_http_chat_base64url_encode((u_char *) b64, raw, 65);
    b64[n] = '\0';
    CHECK_STR(T_KEYS(b64, RFC_AUTH), "keys.p256dh is not a P-256 public key");
    free(json);

    /* not on the curve: y changed; all zeros; x = p (out of the field) */
    memcpy(raw, ua, 65);
    raw[64] ^= 0x01;
    n = ngx_http_chat_base64url_encode((u_char *) b64, raw, 65);
    b64[n] = '\0';
    CHECK_STR(T_KEYS(b64, RFC_AUTH), "keys.p256dh is not a P-256 public key");
    free(json);

    memset(raw, 0, 65);
    raw[0] = 0x04;
    n = ngx_http_chat_base64url_encode((u_char *) b64, raw, 65);
    b64[n] = '\0';
    CHECK_STR(T_KEYS(b64, RFC_AUTH), "keys.p256dh is not a P-256 public key");
    free(json);

    memset(raw, 0xff, 65);
    raw[0] = 0x04;
    n = ngx_http_chat_base64url_encode((u_char *) b64, raw, 65);
    b64[n] = '\0';
    CHECK_STR(T_KEYS(b64, RFC_AUTH), "keys.p256dh is not a P-256 public key");
    free(json);

    /* a huge key: refused on its length, before decoding */
    big = malloc(2001);
    memset(big, 'A', 2000);
    big[2000] = '\0';
    CHECK_STR(T_KEYS(big, RFC_AUTH), "keys.p256dh is not 65 bytes");
    free(json);
    CHECK_STR(T_KEYS(RFC_UA_PUBLIC, big), "keys.auth is not 16 bytes");
    free(json);
    free(big);

#undef T_KEYS

    free(ua);
}


static void
test_subscription_json(void)
{
    char                          *big;
    size_t                         i;
    const char                    *err;
    ngx_http_chat_subscription_t   s;

#define K  "{\"p256dh\": \"" RFC_UA_PUBLIC "\", \"auth\": \"" RFC_AUTH "\"}"

    static const struct {
        const char  *json;
        const char  *err;
    } bad[] = {
        { "", "subscription is not valid JSON" },
        { "{", "subscription is not valid JSON" },
        { "[]", "subscription is not a JSON object" },
        { "\"https://h/\"", "subscription is not a JSON object" },
        { "null", "subscription is not a JSON object" },
        { "{\"keys\": " K "}", "endpoint is missing" },
        { "{\"endpoint\": 5, \"keys\": " K "}", "endpoint is not a string" },
        { "{\"endpoint\": null, \"keys\": " K "}",
          "endpoint is not a string" },
        { "{\"endpoint\": [\"https://h/\"], \"keys\": " K "}",
          "endpoint is not a string" },
        { "{\"endpoint\": \"https://h/\", \"endpoint\": \"https://e/\","
          " \"keys\": " K "}", "subscription is not valid JSON" },
        { "{\"endpoint\": \"https://h/\\u0000x\", \"keys\": " K "}",
          "subscription is not valid JSON" },
        { "{\"endpoint\": \"https://h/\"}", "keys is missing" },
        { "{\"endpoint\": \"https://h/\", \"keys\": null}",
          "keys is not an object" },
        { "{\"endpoint\": \"https://h/\", \"keys\": [1, 2]}",
          "keys is not an object" },
        { "{\"endpoint\": \"https://h/\", \"keys\": {}}",
          "keys.p256dh is missing" },
        { "{\"endpoint\": \"https://h/\", \"keys\": {\"p256dh\": 1,"
          " \"auth\": \"" RFC_AUTH "\"}}", "keys.p256dh is not a string" },
        { "{\"endpoint\": \"https://h/\", \"keys\": {\"p256dh\": \""
          RFC_UA_PUBLIC "\"}}", "keys.auth is missing" },
        { "{\"endpoint\": \"https://h/\", \"keys\": {\"p256dh\": \""
          RFC_UA_PUBLIC "\", \"auth\": true}}", "keys.auth is not a string" },
        { "{\"endpoint\": \"https://h/\", \"keys\": {\"p256dh\": \""
          RFC_UA_PUBLIC "\", \"auth\": {}}}", "keys.auth is not a string" },
        { "{\"endpoint\": \"https://h/\", \"expirationTime\": \"soon\","
          " \"keys\": " K "}",
          "expirationTime is not null or a time in milliseconds" },
        { "{\"endpoint\": \"https://h/\", \"expirationTime\": -1,"
          " \"keys\": " K "}",
          "expirationTime is not null or a time in milliseconds" },
        { "{\"endpoint\": \"https://h/\", \"expirationTime\": 1e300,"
          " \"keys\": " K "}",
          "expirationTime is not null or a time in milliseconds" },
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = t_sub(bad[i].json, &s);
        CHECK_STR(err, bad[i].err);

        if (err == NULL || strcmp(err, bad[i].err) != 0) {
            fprintf(stderr, "  input %zu: %s\n", i, bad[i].json);
        }
    }

    CHECK(t_sub("{\"endpoint\": \"https://h/\", \"expirationTime\": 1.5e12,"
                " \"keys\": " K "}", &s) == NULL);
    CHECK_EQ(s.expiration, 1500000000000LL);

    /* a huge text: refused before it is parsed */

    big = malloc(T_BIG + 1);
    memset(big, ' ', T_BIG);
    big[T_BIG] = '\0';
    memcpy(big, "{\"endpoint\": \"https://h/\", \"keys\": " K,
           strlen("{\"endpoint\": \"https://h/\", \"keys\": " K));
    big[T_BIG - 1] = '}';
    CHECK_STR(t_sub(big, &s), "subscription too large");
    free(big);

    err = NULL;
    CHECK_EQ(ngx_http_chat_subscription_parse(NULL, 0, &s, &err), -1);
    CHECK_STR(err, "no subscription");

    err = NULL;
    CHECK_EQ(ngx_http_chat_subscription_read(NULL, &s, &err), -1);
    CHECK_STR(err, "subscription is not a JSON object");

#undef K
}


/* the C side of t/test_webpush_crypto.py */

static int
cmd_encrypt(int argc, char **argv)
{
    char        *b64;
    size_t       ua_len, auth_len, payload_len;
    u_char      *ua, *auth, *payload;
    ssize_t      len;
    const char  *err;
    u_char       body[NGX_HTTP_CHAT_ECE_MAX_BODY];

    if (argc != 5 || strcmp(argv[1], "encrypt") != 0) {
        fprintf(stderr, "usage: %s encrypt P256DH AUTH PAYLOAD "
                "(base64url each)\n", argv[0]);
        return 2;
    }

    ua = t_decode(argv[2], &ua_len);
    auth = t_decode(argv[3], &auth_len);
    payload = t_decode(argv[4], &payload_len);

    if (ua_len != NGX_HTTP_CHAT_ECE_KEY_LEN
        || auth_len != NGX_HTTP_CHAT_ECE_AUTH_LEN)
    {
        fprintf(stderr, "encrypt: a 65-byte p256dh and a 16-byte auth\n");
        return 2;
    }

    len = ngx_http_chat_ece_encrypt(body, sizeof(body), payload, payload_len,
                                    ua, auth, NULL, NULL, &err);
    if (len < 0) {
        printf("error: %s\n", err);
        return 1;
    }

    b64 = t_encode(body, (size_t) len);
    printf("%s\n", b64);

    free(b64);
    free(ua);
    free(auth);
    free(payload);

    return 0;
}


static int
cmd_vapid(int argc, char **argv)
{
    BIO         *bio;
    ssize_t      len;
    EVP_PKEY    *key;
    const char  *err;
    u_char       out[NGX_HTTP_CHAT_VAPID_MAX_HEADER];

    if (argc != 6) {
        fprintf(stderr, "usage: %s vapid KEY.pem AUD SUB EXP\n", argv[0]);
        return 2;
    }

    bio = BIO_new_file(argv[2], "r");
    key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);

    if (key == NULL) {
        fprintf(stderr, "vapid: no private key in %s\n", argv[2]);
        return 2;
    }

    len = ngx_http_chat_vapid_header(out, sizeof(out), key, argv[3],
                                     strlen(argv[3]), argv[4],
                                     strlen(argv[4]),
                                     strtoll(argv[5], NULL, 10), &err);
    EVP_PKEY_free(key);

    if (len < 0) {
        printf("error: %s\n", err);
        return 1;
    }

    printf("%.*s\n", (int) len, out);

    return 0;
}


static u_char *
t_decode(const char *b64, size_t *len)
{
    u_char   *p;
    ssize_t   n;

    p = malloc(strlen(b64) + 1);
    n = ngx_http_chat_base64url_decode(p, (const u_char *) b64, strlen(b64));

    if (p == NULL || n < 0) {
        fprintf(stderr, "bad base64url in the test: %s\n", b64);
        exit(2);
    }

    *len = (size_t) n;

    return p;
}


static char *
t_encode(const u_char *p, size_t len)
{
    char    *s;
    size_t   n;

    s = malloc(NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(len) + 1);
    if (s == NULL) {
        exit(2);
    }

    n = ngx_http_chat_base64url_encode((u_char *) s, p, len);
    s[n] = '\0';

    return s;
}


/* a P-256 key pair from its scalar and point, as RFC 8291 gives them */

static EVP_PKEY *
t_keypair(const char *private_b64, const char *public_b64)
{
    size_t           dlen, plen;
    u_char          *d, *pub;
    BIGNUM          *bn;
    EVP_PKEY        *pkey;
    OSSL_PARAM      *params;
    EVP_PKEY_CTX    *ctx;
    OSSL_PARAM_BLD  *bld;

    d = t_decode(private_b64, &dlen);
    pub = t_decode(public_b64, &plen);

    bn = BN_bin2bn(d, (int) dlen, NULL);
    bld = OSSL_PARAM_BLD_new();

    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                    "prime256v1", 0);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
                                     plen);
    params = OSSL_PARAM_BLD_to_param(bld);

    pkey = NULL;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);

    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) != 1)
    {
        ERR_print_errors_fp(stderr);
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    free(d);
    free(pub);

    return pkey;
}


static const char *
t_path(const char *name)
{
    const char   *dir;
    static char   path[1024];

    dir = getenv("CHAT_TESTDATA");
    if (dir == NULL) {
        dir = "t/data";
    }

    snprintf(path, sizeof(path), "%s/jwt/%s", dir, name);

    return path;
}


static EVP_PKEY *
t_pem(const char *name, int private)
{
    BIO       *bio;
    EVP_PKEY  *pkey;

    bio = BIO_new_file(t_path(name), "r");
    if (bio == NULL) {
        fprintf(stderr, "cannot open %s (set CHAT_TESTDATA)\n", t_path(name));
        return NULL;
    }

    pkey = private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                   : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);

    return pkey;
}


static EVP_PKEY *
t_generate(const char *curve)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}


/* 1: the token's raw R || S, made DER, verifies with pub; 0: it does not */

static int
t_es256_verify(EVP_PKEY *pub, const char *token, size_t len)
{
    int          rc, n;
    u_char      *der, raw[80];
    BIGNUM      *r, *s;
    ssize_t      raw_len;
    ECDSA_SIG   *sig;
    EVP_MD_CTX  *md;
    const char  *dot;

    dot = token + len;

    while (dot > token && dot[-1] != '.') {
        dot--;
    }

    if (dot == token || (size_t) (token + len - dot) > 100) {
        return 0;
    }

    raw_len = ngx_http_chat_base64url_decode(raw, (const u_char *) dot,
                                             (size_t) (token + len - dot));
    if (raw_len != 64) {
        return 0;
    }

    r = BN_bin2bn(raw, 32, NULL);
    s = BN_bin2bn(raw + 32, 32, NULL);
    sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, r, s);

    der = NULL;
    n = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);

    md = EVP_MD_CTX_new();
    rc = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1
         && EVP_DigestVerify(md, der, (size_t) n, (const u_char *) token,
                             (size_t) (dot - 1 - token)) == 1;

    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();

    return rc;
}


static json_t *
t_segment(const char *p, size_t len)
{
    u_char   buf[1024];
    ssize_t  n;

    if (len > 1300) {
        return NULL;
    }

    n = ngx_http_chat_base64url_decode(buf, (const u_char *) p, len);
    if (n < 0) {
        return NULL;
    }

    return json_loadb((const char *) buf, (size_t) n, 0, NULL);
}


/* NULL when the subscription is taken, else the reason */

static const char *
t_sub(const char *json, ngx_http_chat_subscription_t *s)
{
    const char  *err;

    err = NULL;

    if (ngx_http_chat_subscription_parse((const u_char *) json, strlen(json),
                                         s, &err)
        == 0)
    {
        return NULL;
    }

    return err ? err : "(no reason)";
}


static char *
t_sub_json(const char *endpoint, const char *p256dh, const char *auth)
{
    char  *s;
    json_t  *j;

    j = json_pack("{s:s, s:n, s:{s:s, s:s}}", "endpoint", endpoint,
                  "expirationTime", "keys", "p256dh", p256dh, "auth", auth);
    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    return s;
}
