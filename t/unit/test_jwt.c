
/*
 * Unit tests for ngx_http_chat_jwt.c: RFC vectors, strict base64url and
 * compact serialization, algorithm pinning and key confusion, RS256 and
 * ES256 with the keys in $CHAT_TESTDATA/jwt, and the claim checks.
 */


#include <stdint.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "unit.h"
#include "ngx_http_chat_jwt.h"


#define T_NOW     1700000000
#define T_MAX     (2 * NGX_HTTP_CHAT_JWT_MAX_TOKEN)
#define T_SLOTS   32

#define T_HS256   "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define T_RS256   "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define T_ES256   "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"
#define T_ALICE   "{\"sub\":\"alice\",\"exp\":1700000600}"

/* RFC 7515 appendix A.1 and RFC 7519 section 3.1 */
#define T_RFC_KEY                                                            \
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4h"   \
    "cgUuTwjAzZr1Z9CAow"
#define T_RFC_HEADER  "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
#define T_RFC_PAYLOAD                                                        \
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"       \
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
#define T_RFC_SIG     "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define T_RFC_TOKEN   T_RFC_HEADER "." T_RFC_PAYLOAD "." T_RFC_SIG


static const char *t_path(const char *name);
static u_char *t_read(const char *name, size_t *len);
static int t_load(ngx_http_chat_jwt_key_t *key, ngx_http_chat_jwt_alg_e alg,
    const char *name, const char **err);
static EVP_PKEY *t_private(const char *name);
static EVP_PKEY *t_generate(int type);
static char *t_slot(void);
static char *t_join(const char *header, const char *payload,
    const u_char *sig, size_t sig_len);
static char *t_join_raw(const char *input, const u_char *sig,
    size_t sig_len);
static char *t_hs(const EVP_MD *md, const void *secret, size_t secret_len,
    const char *header, const char *payload);
static char *t_rs(EVP_PKEY *pkey, const char *header, const char *payload);
static char *t_es(EVP_PKEY *pkey, const char *header, const char *payload,
    int adjust);
static char *t_flip(const char *token, size_t bit);
static const char *t_verify(const ngx_http_chat_jwt_key_t *key,
    const ngx_http_chat_jwt_opts_t *opts, const char *token);
static const char *t_verify_n(const ngx_http_chat_jwt_key_t *key,
    const ngx_http_chat_jwt_opts_t *opts, const char *token, size_t len,
    ngx_http_chat_jwt_t *out);
static ngx_http_chat_jwt_opts_t t_opts(void);
static char *t_b64(const void *src, size_t len);

static void test_base64url(void);
static void test_alg(void);
static void test_rfc(void);
static void test_hs_roundtrip(void);
static void test_key_load(void);
static void test_rs256(void);
static void test_es256(void);
static void test_time(void);
static void test_iss_aud(void);
static void test_sub(void);
static void test_name_avatar(void);
static void test_alg_attacks(void);
static void test_header_keys(void);
static void test_structure(void);
static void test_truncation(void);


static u_char  t_secret[] = "0123456789abcdef0123456789abcdef"
                            "0123456789abcdef0123456789abcdef";

static char    t_slots[T_SLOTS][T_MAX];
static size_t  t_next;


int
main(void)
{
    test_base64url();
    test_alg();
    test_rfc();
    test_hs_roundtrip();
    test_key_load();
    test_rs256();
    test_es256();
    test_time();
    test_iss_aud();
    test_sub();
    test_name_avatar();
    test_alg_attacks();
    test_header_keys();
    test_structure();
    test_truncation();

    UNIT_DONE("jwt");
}


static void
test_base64url(void)
{
    size_t    i, n;
    ssize_t   r;
    u_char    src[300], enc[500], dec[500];

    static const struct {
        const char  *plain;
        const char  *coded;
    } vectors[] = {
        { "", "" },
        { "f", "Zg" },
        { "fo", "Zm8" },
        { "foo", "Zm9v" },
        { "foob", "Zm9vYg" },
        { "fooba", "Zm9vYmE" },
        { "foobar", "Zm9vYmFy" },
        { "\xfb\xff", "-_8" },
        { "\xff\xff\xff", "____" }
    };

    static const char  *invalid[] = {
        "Z",            /* 1 mod 4 */
        "Zm9vY",
        "Zg==",         /* padding */
        "Zg=",
        "Zm9v=",
        "Zm+v",         /* plain base64 alphabet */
        "Zm/v",
        "Zm9 ",         /* whitespace */
        "Zm9v\n",
        " Zm9v",
        "Zm.v",
        "Zh",           /* nonzero unused bits */
        "Zm9",
        "Zm_",
        "QR",
        "QUJ"
    };

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        n = strlen(vectors[i].plain);
        n = ngx_http_chat_jwt_base64url_encode(enc, (u_char *) vectors[i].plain,
                                           n);
        enc[n] = '\0';
        CHECK_STR((char *) enc, vectors[i].coded);

        r = ngx_http_chat_jwt_base64url_decode(dec, (u_char *) vectors[i].coded,
                                           strlen(vectors[i].coded));
        CHECK_EQ(r, (long long) strlen(vectors[i].plain));
        CHECK(r >= 0 && memcmp(dec, vectors[i].plain, (size_t) r) == 0);
    }

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        r = ngx_http_chat_jwt_base64url_decode(dec, (u_char *) invalid[i],
                                           strlen(invalid[i]));
        CHECK_EQ(r, -1);
    }

    /* a NUL byte is not in the alphabet either */
    CHECK_EQ(ngx_http_chat_jwt_base64url_decode(dec, (u_char *) "Zm\0v", 4),
             -1);

    /* canonical round trips of every length and every byte value */

    for (i = 0; i < sizeof(src); i++) {
        src[i] = (u_char) (i * 7 + 3);
    }

    for (i = 0; i < sizeof(src); i++) {
        n = ngx_http_chat_jwt_base64url_encode(enc, src, i);
        CHECK_EQ(n, (i / 3) * 4 + (i % 3 ? i % 3 + 1 : 0));

        r = ngx_http_chat_jwt_base64url_decode(dec, enc, n);
        if (r != (ssize_t) i || memcmp(dec, src, i) != 0) {
            CHECK(!"base64url round trip");
        }
    }

    CHECK(1);
}


static void
test_alg(void)
{
    CHECK_EQ(ngx_http_chat_jwt_alg("hs256", 5), NGX_HTTP_CHAT_JWT_HS256);
    CHECK_EQ(ngx_http_chat_jwt_alg("HS256", 5), NGX_HTTP_CHAT_JWT_HS256);
    CHECK_EQ(ngx_http_chat_jwt_alg("Hs384", 5), NGX_HTTP_CHAT_JWT_HS384);
    CHECK_EQ(ngx_http_chat_jwt_alg("HS512", 5), NGX_HTTP_CHAT_JWT_HS512);
    CHECK_EQ(ngx_http_chat_jwt_alg("rs256", 5), NGX_HTTP_CHAT_JWT_RS256);
    CHECK_EQ(ngx_http_chat_jwt_alg("ES256", 5), NGX_HTTP_CHAT_JWT_ES256);
    CHECK_EQ(ngx_http_chat_jwt_alg("none", 4), NGX_HTTP_CHAT_JWT_NONE);
    CHECK_EQ(ngx_http_chat_jwt_alg("HS256x", 6), NGX_HTTP_CHAT_JWT_NONE);
    CHECK_EQ(ngx_http_chat_jwt_alg("HS256", 4), NGX_HTTP_CHAT_JWT_NONE);
    CHECK_EQ(ngx_http_chat_jwt_alg("PS256", 5), NGX_HTTP_CHAT_JWT_NONE);
    CHECK_EQ(ngx_http_chat_jwt_alg("ES384", 5), NGX_HTTP_CHAT_JWT_NONE);
    CHECK_EQ(ngx_http_chat_jwt_alg("", 0), NGX_HTTP_CHAT_JWT_NONE);

    CHECK_STR(ngx_http_chat_jwt_alg_name(NGX_HTTP_CHAT_JWT_HS256), "HS256");
    CHECK_STR(ngx_http_chat_jwt_alg_name(NGX_HTTP_CHAT_JWT_HS384), "HS384");
    CHECK_STR(ngx_http_chat_jwt_alg_name(NGX_HTTP_CHAT_JWT_HS512), "HS512");
    CHECK_STR(ngx_http_chat_jwt_alg_name(NGX_HTTP_CHAT_JWT_RS256), "RS256");
    CHECK_STR(ngx_http_chat_jwt_alg_name(NGX_HTTP_CHAT_JWT_ES256), "ES256");
    CHECK(ngx_http_chat_jwt_alg_name(NGX_HTTP_CHAT_JWT_NONE) == NULL);
}


static void
test_rfc(void)
{
    ssize_t                    n;
    u_char                     k[64], buf[256], mac[EVP_MAX_MD_SIZE];
    const char                *err;
    unsigned int               mac_len;
    ngx_http_chat_jwt_key_t    key, key384;
    ngx_http_chat_jwt_opts_t   opts;

    /* RFC 7515 A.1.1: the signature octets */
    static const u_char  sig[] = {
        116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173,
        187, 186, 22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83,
        132, 141, 121
    };

    static const char  header[] = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
    static const char  payload[] = "{\"iss\":\"joe\",\r\n"
                                   " \"exp\":1300819380,\r\n"
                                   " \"http://example.com/is_root\":true}";

    n = ngx_http_chat_jwt_base64url_decode(k, (u_char *) T_RFC_KEY,
                                       sizeof(T_RFC_KEY) - 1);
    CHECK_EQ(n, 64);

    n = ngx_http_chat_jwt_base64url_decode(buf, (u_char *) T_RFC_HEADER,
                                       sizeof(T_RFC_HEADER) - 1);
    CHECK_EQ(n, (long long) sizeof(header) - 1);
    CHECK(n > 0 && memcmp(buf, header, (size_t) n) == 0);

    n = ngx_http_chat_jwt_base64url_decode(buf, (u_char *) T_RFC_PAYLOAD,
                                       sizeof(T_RFC_PAYLOAD) - 1);
    CHECK_EQ(n, (long long) sizeof(payload) - 1);
    CHECK(n > 0 && memcmp(buf, payload, (size_t) n) == 0);

    n = ngx_http_chat_jwt_base64url_decode(buf, (u_char *) T_RFC_SIG,
                                       sizeof(T_RFC_SIG) - 1);
    CHECK_EQ(n, 32);
    CHECK(memcmp(buf, sig, sizeof(sig)) == 0);

    HMAC(EVP_sha256(), k, 64, (u_char *) T_RFC_HEADER "." T_RFC_PAYLOAD,
         sizeof(T_RFC_HEADER "." T_RFC_PAYLOAD) - 1, mac, &mac_len);
    CHECK_EQ(mac_len, 32);
    CHECK(memcmp(mac, sig, sizeof(sig)) == 0);

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256, k, 64,
                                        &err), 0);

    /*
     * The example has no "sub", which this module requires: reaching that
     * check means the signature, exp and iss were all accepted.
     */

    opts = t_opts();
    opts.now = 1300819379;
    opts.require_exp = 1;
    CHECK_STR(t_verify(&key, &opts, T_RFC_TOKEN), "token has no sub");

    opts.now = 1300819380;
    CHECK_STR(t_verify(&key, &opts, T_RFC_TOKEN), "token has no sub");

    opts.issuer = "joe";
    CHECK_STR(t_verify(&key, &opts, T_RFC_TOKEN), "token has no sub");

    opts.issuer = "Joe";
    CHECK_STR(t_verify(&key, &opts, T_RFC_TOKEN), "wrong issuer");

    opts.issuer = NULL;
    opts.now = 1300819381;
    CHECK_STR(t_verify(&key, &opts, T_RFC_TOKEN), "token expired");

    /* the same token with one signature bit changed */
    opts.now = 1300819379;
    CHECK_STR(t_verify(&key, &opts, t_flip(T_RFC_TOKEN, 7)), "bad signature");

    /* the same key bytes pinned to another algorithm */
    CHECK_EQ(ngx_http_chat_jwt_key_load(&key384, NGX_HTTP_CHAT_JWT_HS384, k,
                                        64, &err), 0);
    CHECK_STR(t_verify(&key384, &opts, T_RFC_TOKEN), "algorithm not allowed");
    ngx_http_chat_jwt_key_free(&key384);

    /*
     * RFC 7519 3.1 prints the same JWT with line breaks "for display
     * purposes only": only the joined form is a token.
     */

    CHECK_STR(t_verify(&key, &opts,
                       T_RFC_HEADER "\n." T_RFC_PAYLOAD "\n." T_RFC_SIG),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       T_RFC_HEADER ".\r\n" T_RFC_PAYLOAD "." T_RFC_SIG),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts, T_RFC_TOKEN "\n"), "malformed token");
    CHECK_STR(t_verify(&key, &opts, " " T_RFC_TOKEN), "malformed token");

    /* RFC 7519 6.1: the unsecured JWT of the same claims */
    CHECK(strcmp(t_verify(&key, &opts, "eyJhbGciOiJub25lIn0." T_RFC_PAYLOAD
                                       "."),
                 "ok")
          != 0);

    ngx_http_chat_jwt_key_free(&key);
}


static void
test_hs_roundtrip(void)
{
    size_t                     i;
    char                      *out;
    json_t                    *claims;
    ssize_t                    n, m;
    const char                *err, *e;
    ngx_http_chat_jwt_t        jwt;
    ngx_http_chat_jwt_key_t    key, rs;
    ngx_http_chat_jwt_opts_t   opts;

    static const struct {
        ngx_http_chat_jwt_alg_e   alg;
        size_t                    len;
        const char               *header;
    } algs[] = {
        { NGX_HTTP_CHAT_JWT_HS256, 32,
          "{\"alg\":\"HS256\",\"typ\":\"JWT\"}" },
        { NGX_HTTP_CHAT_JWT_HS384, 48,
          "{\"alg\":\"HS384\",\"typ\":\"JWT\"}" },
        { NGX_HTTP_CHAT_JWT_HS512, 64,
          "{\"alg\":\"HS512\",\"typ\":\"JWT\"}" }
    };

    opts = t_opts();
    out = t_slot();

    claims = json_pack("{s:s, s:s, s:I, s:I}", "sub", "alice", "name",
                       "Alice", "exp", (json_int_t) T_NOW + 60,
                       "iat", (json_int_t) T_NOW);
    CHECK(claims != NULL);

    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        CHECK_EQ(ngx_http_chat_jwt_key_load(&key, algs[i].alg, t_secret,
                                            algs[i].len, &err), 0);

        n = ngx_http_chat_jwt_sign(&key, claims, (u_char *) out, T_MAX);
        CHECK(n > 0);
        CHECK_EQ(strlen(out), n);

        memset(&jwt, 0, sizeof(jwt));
        e = t_verify_n(&key, &opts, out, (size_t) n, &jwt);
        CHECK_STR(e, "ok");
        CHECK(jwt.claims != NULL);
        CHECK(jwt.sub_len == 5 && memcmp(jwt.sub, "alice", 5) == 0);
        CHECK(jwt.name_len == 5 && memcmp(jwt.name, "Alice", 5) == 0);
        CHECK(jwt.avatar == NULL && jwt.avatar_len == 0);
        CHECK_EQ(jwt.exp, T_NOW + 60);
        ngx_http_chat_jwt_free(&jwt);
        CHECK(jwt.claims == NULL);

        /* free is idempotent */
        ngx_http_chat_jwt_free(&jwt);

        /* the header is what the module documents */
        CHECK(strncmp(out, t_b64(algs[i].header, strlen(algs[i].header)),
                      strchr(out, '.') - out)
              == 0);

        /* an exactly sized buffer works, one byte less does not */
        m = ngx_http_chat_jwt_sign(&key, claims, (u_char *) out,
                                   (size_t) n + 1);
        CHECK_EQ(m, n);
        m = ngx_http_chat_jwt_sign(&key, claims, (u_char *) out, (size_t) n);
        CHECK_EQ(m, -1);

        /* the token signed by our test helper verifies as well */
        CHECK_STR(t_verify(&key, &opts,
                           t_hs(i == 0 ? EVP_sha256()
                                : i == 1 ? EVP_sha384() : EVP_sha512(),
                                t_secret, algs[i].len, algs[i].header,
                                T_ALICE)),
                  "ok");

        /* and fails with another secret of the same length */
        CHECK_STR(t_verify(&key, &opts,
                           t_hs(i == 0 ? EVP_sha256()
                                : i == 1 ? EVP_sha384() : EVP_sha512(),
                                t_secret + 1, algs[i].len, algs[i].header,
                                T_ALICE)),
                  "bad signature");

        ngx_http_chat_jwt_key_free(&key);
    }

    /* HS256 against a key configured for HS512 and vice versa */

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS512,
                                        t_secret, 64, &err), 0);
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 64, T_HS256, T_ALICE)),
              "algorithm not allowed");
    ngx_http_chat_jwt_key_free(&key);

    /* sign refuses what it cannot do */

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);
    CHECK_EQ(ngx_http_chat_jwt_sign(&key, NULL, (u_char *) out, T_MAX), -1);
    json_decref(claims);
    claims = json_pack("[s]", "sub");
    CHECK_EQ(ngx_http_chat_jwt_sign(&key, claims, (u_char *) out, T_MAX), -1);
    json_decref(claims);
    ngx_http_chat_jwt_key_free(&key);

    claims = json_pack("{s:s}", "sub", "alice");

    memset(&key, 0, sizeof(key));
    CHECK_EQ(ngx_http_chat_jwt_sign(&key, claims, (u_char *) out, T_MAX), -1);

    CHECK_EQ(t_load(&rs, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.pub.pem", &err),
             0);
    CHECK_EQ(ngx_http_chat_jwt_sign(&rs, claims, (u_char *) out, T_MAX), -1);
    ngx_http_chat_jwt_key_free(&rs);

    json_decref(claims);

    /* a zeroed key verifies nothing */
    memset(&key, 0, sizeof(key));
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, T_HS256, T_ALICE)),
              "no verification key");

    /* a zeroed jwt may be freed */
    memset(&jwt, 0, sizeof(jwt));
    ngx_http_chat_jwt_free(&jwt);
    CHECK(jwt.claims == NULL);
}


static void
test_key_load(void)
{
    int                       rc;
    BIO                      *bio;
    char                     *pem;
    long                      pem_len;
    size_t                    len;
    u_char                   *data;
    EVP_PKEY                 *pkey;
    const char               *err;
    ngx_http_chat_jwt_key_t   key;

    /* HMAC key lengths: RFC 7518 3.2 */

    err = NULL;
    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 31, &err), -1);
    CHECK_STR(err, "HMAC key too short, HS256 needs at least 32 bytes");
    CHECK(key.secret == NULL && key.pkey == NULL);

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 0, &err), -1);

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);
    CHECK_EQ(key.alg, NGX_HTTP_CHAT_JWT_HS256);
    CHECK_EQ(key.secret_len, 32);
    CHECK(key.secret != NULL && key.secret != t_secret
          && memcmp(key.secret, t_secret, 32) == 0);
    ngx_http_chat_jwt_key_free(&key);
    CHECK(key.secret == NULL && key.secret_len == 0);

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS384,
                                        t_secret, 47, &err), -1);
    CHECK_STR(err, "HMAC key too short, HS384 needs at least 48 bytes");
    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS384,
                                        t_secret, 48, &err), 0);
    ngx_http_chat_jwt_key_free(&key);

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS512,
                                        t_secret, 63, &err), -1);
    CHECK_STR(err, "HMAC key too short, HS512 needs at least 64 bytes");
    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS512,
                                        t_secret, 64, &err), 0);
    ngx_http_chat_jwt_key_free(&key);

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_NONE,
                                        t_secret, 64, &err), -1);
    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, (ngx_http_chat_jwt_alg_e) 77,
                                        t_secret, 64, &err), -1);

    /* free is safe on a zeroed key, and twice */
    memset(&key, 0, sizeof(key));
    ngx_http_chat_jwt_key_free(&key);
    ngx_http_chat_jwt_key_free(&key);
    CHECK(key.secret == NULL && key.pkey == NULL);

    /* RS256: public key, certificate, private key; 2048 bits or more */

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.pub.pem", &err),
             0);
    CHECK(key.pkey != NULL && key.secret == NULL);
    CHECK_EQ(key.alg, NGX_HTTP_CHAT_JWT_RS256);
    ngx_http_chat_jwt_key_free(&key);
    CHECK(key.pkey == NULL);

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.crt.pem", &err),
             0);
    ngx_http_chat_jwt_key_free(&key);

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.key.pem", &err),
             0);
    ngx_http_chat_jwt_key_free(&key);

    err = NULL;
    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_RS256, "rsa1024.pub.pem", &err),
             -1);
    CHECK_STR(err, "RSA key too small, RS256 needs at least 2048 bits");
    CHECK(key.pkey == NULL);

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_RS256, "rsa1024.key.pem", &err),
             -1);
    CHECK_STR(err, "RSA key too small, RS256 needs at least 2048 bits");

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_RS256, "ec256.pub.pem", &err),
             -1);
    CHECK_STR(err, "RS256 needs an RSA key");

    /* ES256: P-256 only */

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_ES256, "ec256.pub.pem", &err),
             0);
    CHECK(key.pkey != NULL);
    ngx_http_chat_jwt_key_free(&key);

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_ES256, "ec256.crt.pem", &err),
             0);
    ngx_http_chat_jwt_key_free(&key);

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_ES256, "ec256.key.pem", &err),
             0);
    ngx_http_chat_jwt_key_free(&key);

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_ES256, "ec384.pub.pem", &err),
             -1);
    CHECK_STR(err, "ES256 needs a P-256 (prime256v1) key");

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_ES256, "rsa2048.pub.pem", &err),
             -1);
    CHECK_STR(err, "ES256 needs an EC key");

    /* not PEM at all */

    err = NULL;
    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_RS256,
                                        t_secret, 64, &err), -1);
    CHECK(err != NULL);
    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_ES256,
                                        (u_char *) "", 0, &err), -1);

    /* a damaged PEM body */

    data = t_read("rsa2048.pub.pem", &len);
    CHECK(data != NULL);
    if (data != NULL) {
        data[40] ^= 0x01;
        CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_RS256,
                                            data, len, &err), -1);
        free(data);
    }

    /* an encrypted private key fails at once instead of prompting */

    pkey = t_private("rsa2048.key.pem");
    bio = BIO_new(BIO_s_mem());
    CHECK(pkey != NULL && bio != NULL);

    if (pkey != NULL && bio != NULL) {
        rc = PEM_write_bio_PrivateKey(bio, pkey, EVP_aes_128_cbc(),
                                      (u_char *) "password", 8, NULL, NULL);
        CHECK_EQ(rc, 1);

        pem_len = BIO_get_mem_data(bio, &pem);
        CHECK(pem_len > 0);
        CHECK(strstr(pem, "ENCRYPTED") != NULL);

        CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_RS256,
                                            (u_char *) pem, (size_t) pem_len,
                                            &err), -1);
    }

    BIO_free(bio);
    EVP_PKEY_free(pkey);

    /* key loading leaves no errors in the OpenSSL queue */
    CHECK(ERR_peek_error() == 0);
}


static void
test_rs256(void)
{
    char                      *tok2, *dot;
    size_t                     len;
    u_char                    *pub;
    ssize_t                    n;
    u_char                     sig[300];
    EVP_PKEY                  *priv;
    const char                *err;
    ngx_http_chat_jwt_key_t    key, cert, from_priv;
    ngx_http_chat_jwt_opts_t   opts;
    char                       tok[T_MAX];

    opts = t_opts();

    priv = t_private("rsa2048.key.pem");
    CHECK(priv != NULL);
    if (priv == NULL) {
        return;
    }

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.pub.pem", &err),
             0);
    CHECK_EQ(t_load(&cert, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.crt.pem", &err),
             0);
    CHECK_EQ(t_load(&from_priv, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.key.pem",
                    &err), 0);

    strcpy(tok, t_rs(priv, T_RS256, T_ALICE));
    CHECK_STR(t_verify(&key, &opts, tok), "ok");
    CHECK_STR(t_verify(&cert, &opts, tok), "ok");
    CHECK_STR(t_verify(&from_priv, &opts, tok), "ok");

    /* one bit of the signature: its first and its last byte */
    dot = strrchr(tok, '.');
    CHECK_STR(t_verify(&key, &opts, t_flip(tok, 0)), "bad signature");
    CHECK_STR(t_verify(&key, &opts, t_flip(tok, 255 * 8 + 7)),
              "bad signature");

    /* payload changed after signing */
    tok2 = t_slot();
    snprintf(tok2, T_MAX, "%s.%s%s", t_b64(T_RS256, strlen(T_RS256)),
             t_b64("{\"sub\":\"admin\",\"exp\":1700000600}",
                   strlen("{\"sub\":\"admin\",\"exp\":1700000600}")),
             dot);
    CHECK_STR(t_verify(&key, &opts, tok2), "bad signature");

    /* a signature one byte short, and one byte long */

    n = ngx_http_chat_jwt_base64url_decode(sig, (u_char *) dot + 1,
                                       strlen(dot + 1));
    CHECK_EQ(n, 256);

    *dot = '\0';
    CHECK_STR(t_verify(&key, &opts, t_join_raw(tok, sig, 255)),
              "bad signature");
    sig[256] = 0;
    CHECK_STR(t_verify(&key, &opts, t_join_raw(tok, sig, 257)),
              "bad signature");
    /* a leading zero byte: the same number, not the same length */
    memmove(sig + 1, sig, 256);
    sig[0] = 0;
    CHECK_STR(t_verify(&key, &opts, t_join_raw(tok, sig, 257)),
              "bad signature");
    *dot = '.';

    /* key confusion: the PEM public key used as an HMAC secret */

    pub = t_read("rsa2048.pub.pem", &len);
    CHECK(pub != NULL);
    if (pub != NULL) {
        CHECK_STR(t_verify(&key, &opts,
                           t_hs(EVP_sha256(), pub, len, T_HS256, T_ALICE)),
                  "algorithm not allowed");
        CHECK_STR(t_verify(&key, &opts,
                           t_hs(EVP_sha256(), pub, len, T_RS256, T_ALICE)),
                  "bad signature");
        /* and without the trailing newline, as some libraries strip it */
        CHECK_STR(t_verify(&key, &opts,
                           t_hs(EVP_sha256(), pub, len - 1, T_HS256,
                                T_ALICE)),
                  "algorithm not allowed");
        free(pub);
    }

    /* the RSA private key signing for other algorithm names */
    CHECK_STR(t_verify(&key, &opts,
                       t_rs(priv, "{\"alg\":\"PS256\"}", T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_rs(priv, "{\"alg\":\"RS512\"}", T_ALICE)),
              "algorithm not allowed");

    /* claims are checked only after the signature */
    opts.now = T_NOW + 601;
    CHECK_STR(t_verify(&key, &opts, tok), "token expired");
    CHECK_STR(t_verify(&key, &opts, t_flip(tok, 9)), "bad signature");

    ngx_http_chat_jwt_key_free(&key);
    ngx_http_chat_jwt_key_free(&cert);
    ngx_http_chat_jwt_key_free(&from_priv);
    EVP_PKEY_free(priv);
}


static void
test_es256(void)
{
    char                      *dot;
    u_char                     sig[80];
    ssize_t                    n;
    EVP_PKEY                  *priv, *rsa;
    const char                *err;
    ngx_http_chat_jwt_key_t    key, cert, from_priv, rs;
    ngx_http_chat_jwt_opts_t   opts;
    BIGNUM                    *bs;
    EC_GROUP                  *group;
    char                       tok[T_MAX], twin[T_MAX];

    opts = t_opts();

    priv = t_private("ec256.key.pem");
    rsa = t_private("rsa2048.key.pem");
    CHECK(priv != NULL && rsa != NULL);
    if (priv == NULL || rsa == NULL) {
        EVP_PKEY_free(priv);
        EVP_PKEY_free(rsa);
        return;
    }

    CHECK_EQ(t_load(&key, NGX_HTTP_CHAT_JWT_ES256, "ec256.pub.pem", &err), 0);
    CHECK_EQ(t_load(&cert, NGX_HTTP_CHAT_JWT_ES256, "ec256.crt.pem", &err),
             0);
    CHECK_EQ(t_load(&from_priv, NGX_HTTP_CHAT_JWT_ES256, "ec256.key.pem",
                    &err), 0);
    CHECK_EQ(t_load(&rs, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.pub.pem", &err),
             0);

    strcpy(tok, t_es(priv, T_ES256, T_ALICE, 0));
    CHECK_STR(t_verify(&key, &opts, tok), "ok");
    CHECK_STR(t_verify(&cert, &opts, tok), "ok");
    CHECK_STR(t_verify(&from_priv, &opts, tok), "ok");

    /* ECDSA is randomized: a second signature verifies as well */
    CHECK_STR(t_verify(&key, &opts, t_es(priv, T_ES256, T_ALICE, 0)), "ok");

    /* 63 and 65 bytes */
    CHECK_STR(t_verify(&key, &opts, t_es(priv, T_ES256, T_ALICE, -1)),
              "bad signature");
    CHECK_STR(t_verify(&key, &opts, t_es(priv, T_ES256, T_ALICE, 1)),
              "bad signature");

    /* the DER form OpenSSL produces is not a JWS signature */
    CHECK_STR(t_verify(&key, &opts, t_es(priv, T_ES256, T_ALICE, 100)),
              "bad signature");

    /* bit flips in R and in S */
    CHECK_STR(t_verify(&key, &opts, t_flip(tok, 5)), "bad signature");
    CHECK_STR(t_verify(&key, &opts, t_flip(tok, 40 * 8)), "bad signature");

    /* r = s = 0 ("psychic signatures"), and r = s = n - 1 style junk */

    dot = strrchr(tok, '.');
    *dot = '\0';
    memset(sig, 0, 64);
    CHECK_STR(t_verify(&key, &opts, t_join_raw(tok, sig, 64)),
              "bad signature");
    memset(sig, 0xff, 64);
    CHECK_STR(t_verify(&key, &opts, t_join_raw(tok, sig, 64)),
              "bad signature");
    *dot = '.';

    /* an RS256 token against the ES256 key and the other way round */
    CHECK_STR(t_verify(&key, &opts, t_rs(rsa, T_RS256, T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&rs, &opts, tok), "algorithm not allowed");

    /* an RSA signature under an ES256 header */
    CHECK_STR(t_verify(&key, &opts, t_rs(rsa, T_ES256, T_ALICE)),
              "bad signature");

    /* P-256 signatures decode to exactly 64 bytes */
    n = ngx_http_chat_jwt_base64url_decode(sig, (u_char *) dot + 1,
                                       strlen(dot + 1));
    CHECK_EQ(n, 64);

    /*
     * I2, a decision: (r, n - s) verifies as (r, s) does.  Both are valid
     * ECDSA, and signers produce either (OpenSSL, node and Python do not
     * make s low), so refusing high s would refuse half of the tokens of
     * an ordinary backend.  Nothing identifies a token by its bytes
     * (docs/protocol.md says so).
     */

    group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    bs = BN_bin2bn(sig + 32, 32, NULL);
    CHECK(group != NULL && bs != NULL
          && BN_sub(bs, EC_GROUP_get0_order(group), bs) == 1
          && BN_bn2binpad(bs, sig + 32, 32) == 32);
    *dot = '\0';
    strcpy(twin, t_join_raw(tok, sig, 64));
    *dot = '.';
    CHECK(strcmp(twin, tok) != 0);
    CHECK_STR(t_verify(&key, &opts, twin), "ok");
    BN_free(bs);
    EC_GROUP_free(group);

    ngx_http_chat_jwt_key_free(&key);
    ngx_http_chat_jwt_key_free(&cert);
    ngx_http_chat_jwt_key_free(&from_priv);
    ngx_http_chat_jwt_key_free(&rs);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(rsa);
}


static void
test_time(void)
{
    char                       payload[256];
    const char                *err;
    ngx_http_chat_jwt_t        jwt;
    ngx_http_chat_jwt_key_t    key;
    ngx_http_chat_jwt_opts_t   opts;

#define T_TOK(p)  t_hs(EVP_sha256(), t_secret, 32, T_HS256, p)

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);

    opts = t_opts();

    /* exp = 1000, leeway 30: valid through 1030 */

    opts.leeway = 30;
    opts.now = 1030;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1000}")),
              "ok");
    opts.now = 1031;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1000}")),
              "token expired");

    opts.leeway = 0;
    opts.now = 1000;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1000}")),
              "ok");
    opts.now = 1001;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1000}")),
              "token expired");

    /* a negative leeway counts as none */
    opts.leeway = -100;
    opts.now = 1000;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1000}")),
              "ok");

    /* nbf = 1000, leeway 30: valid from 970 */

    opts.leeway = 30;
    opts.now = 970;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":1000}")),
              "ok");
    opts.now = 969;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":1000}")),
              "token not yet valid");

    opts.leeway = 0;
    opts.now = 1000;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":1000}")),
              "ok");
    opts.now = 999;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":1000}")),
              "token not yet valid");

    /* fractional NumericDates */

    opts.now = 1000;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1000.5}")),
              "ok");
    opts.now = 1001;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1000.5}")),
              "token expired");
    opts.now = 1000;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":1000.5}")),
              "token not yet valid");
    opts.now = 1001;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":1000.5}")),
              "ok");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1.2e3}")),
              "ok");

    /* the extremes saturate instead of overflowing */

    opts.now = T_NOW;
    opts.leeway = INT64_MAX;
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"exp\":9223372036854775807,"
                             "\"nbf\":-9223372036854775808}")),
              "ok");
    opts.leeway = 0;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":1e300}")),
              "ok");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":-1e300}")),
              "token expired");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":1e300}")),
              "token not yet valid");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"exp\":-9223372036854775808}")),
              "token expired");

    /* integers beyond int64 are not JSON jansson accepts */
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"exp\":9223372036854775808}")),
              "malformed token");

    /* wrong types */

    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":\"2e9\"}")),
              "invalid exp claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":null}")),
              "invalid exp claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":true}")),
              "invalid exp claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"exp\":[2e9]}")),
              "invalid exp claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":\"0\"}")),
              "invalid nbf claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"nbf\":{}}")),
              "invalid nbf claim");

    /* require_exp */

    opts.require_exp = 1;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\"}")),
              "token has no exp");
    CHECK_STR(t_verify(&key, &opts, T_TOK(T_ALICE)), "ok");
    opts.require_exp = 0;

    memset(&jwt, 0, sizeof(jwt));
    CHECK_STR(t_verify_n(&key, &opts, T_TOK("{\"sub\":\"a\"}"),
                         strlen(T_TOK("{\"sub\":\"a\"}")), &jwt), "ok");
    CHECK_EQ(jwt.exp, 0);
    ngx_http_chat_jwt_free(&jwt);

    snprintf(payload, sizeof(payload), "{\"sub\":\"a\",\"exp\":%lld.75}",
             (long long) T_NOW + 5);
    memset(&jwt, 0, sizeof(jwt));
    CHECK_STR(t_verify_n(&key, &opts, T_TOK(payload), strlen(T_TOK(payload)),
                         &jwt), "ok");
    CHECK_EQ(jwt.exp, T_NOW + 5);
    ngx_http_chat_jwt_free(&jwt);

#undef T_TOK

    ngx_http_chat_jwt_key_free(&key);
}


static void
test_iss_aud(void)
{
    const char                *err;
    ngx_http_chat_jwt_key_t    key;
    ngx_http_chat_jwt_opts_t   opts;

#define T_TOK(p)  t_hs(EVP_sha256(), t_secret, 32, T_HS256, p)

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);

    opts = t_opts();
    opts.issuer = "https://auth.example.com";

    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\","
                             "\"iss\":\"https://auth.example.com\"}")),
              "ok");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\","
                             "\"iss\":\"https://auth.example.com/\"}")),
              "wrong issuer");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\","
                             "\"iss\":\"https://auth.example.co\"}")),
              "wrong issuer");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\","
                             "\"iss\":\"HTTPS://auth.example.com\"}")),
              "wrong issuer");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\"}")),
              "wrong issuer");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\","
                             "\"iss\":[\"https://auth.example.com\"]}")),
              "wrong issuer");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"iss\":1}")),
              "wrong issuer");

    /* iss is not checked when no issuer is configured */
    opts.issuer = NULL;
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"iss\":1}")),
              "ok");

    opts.audience = "chat";

    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"aud\":\"chat\"}")),
              "ok");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"aud\":[\"x\",\"chat\"]}")),
              "ok");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"aud\":[1,null,\"chat\"]}")),
              "ok");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"aud\":\"chats\"}")),
              "wrong audience");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"aud\":\"Chat\"}")),
              "wrong audience");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"aud\":\"cha\"}")),
              "wrong audience");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"aud\":[\"x\",\"y\"]}")),
              "wrong audience");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"aud\":[]}")),
              "wrong audience");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"aud\":[[\"chat\"]]}")),
              "wrong audience");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"aud\":{\"chat\":1}}")),
              "wrong audience");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\"}")),
              "wrong audience");

    opts.issuer = "me";
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"iss\":\"me\","
                             "\"aud\":[\"chat\"]}")),
              "ok");

#undef T_TOK

    ngx_http_chat_jwt_key_free(&key);
}


static void
test_sub(void)
{
    char                       payload[512];
    const char                *err;
    ngx_http_chat_jwt_t        jwt;
    ngx_http_chat_jwt_key_t    key;
    ngx_http_chat_jwt_opts_t   opts;

#define T_TOK(p)  t_hs(EVP_sha256(), t_secret, 32, T_HS256, p)

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);

    opts = t_opts();

    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"name\":\"a\"}")),
              "token has no sub");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{}")), "token has no sub");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"\"}")),
              "token has no sub");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":42}")),
              "invalid sub claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":null}")),
              "invalid sub claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":[\"a\"]}")),
              "invalid sub claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\\u0001b\"}")),
              "invalid sub claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"ab\\n\"}")),
              "invalid sub claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"\\tab\"}")),
              "invalid sub claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\\u007f\"}")),
              "invalid sub claim");

    /* jansson refuses NUL inside strings, so sub cannot be cut short */
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\\u0000b\"}")),
              "malformed token");

    /* invalid UTF-8 is not JSON */
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\xff\"}")),
              "malformed token");

    /* non-ASCII is fine */
    memset(&jwt, 0, sizeof(jwt));
    CHECK_STR(t_verify_n(&key, &opts, T_TOK("{\"sub\":\"\\u00e9l\xc3\xa9\"}"),
                         strlen(T_TOK("{\"sub\":\"\\u00e9l\xc3\xa9\"}")),
                         &jwt), "ok");
    CHECK(jwt.sub_len == 5 && memcmp(jwt.sub, "\xc3\xa9l\xc3\xa9", 5) == 0);
    ngx_http_chat_jwt_free(&jwt);

    /* 128 bytes pass, 129 do not */

    memset(payload, 0, sizeof(payload));
    memcpy(payload, "{\"sub\":\"", 8);
    memset(payload + 8, 'x', NGX_HTTP_CHAT_JWT_MAX_SUB);
    memcpy(payload + 8 + NGX_HTTP_CHAT_JWT_MAX_SUB, "\"}", 3);
    memset(&jwt, 0, sizeof(jwt));
    CHECK_STR(t_verify_n(&key, &opts, T_TOK(payload),
                         strlen(T_TOK(payload)), &jwt), "ok");
    CHECK_EQ(jwt.sub_len, NGX_HTTP_CHAT_JWT_MAX_SUB);
    ngx_http_chat_jwt_free(&jwt);

    memset(payload + 8, 'x', NGX_HTTP_CHAT_JWT_MAX_SUB + 1);
    memcpy(payload + 9 + NGX_HTTP_CHAT_JWT_MAX_SUB, "\"}", 3);
    CHECK_STR(t_verify(&key, &opts, T_TOK(payload)), "sub claim too long");

    /* the payload must be one JSON object */
    CHECK_STR(t_verify(&key, &opts, T_TOK("[{\"sub\":\"a\"}]")),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts, T_TOK("\"a\"")), "malformed token");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\"} ")), "ok");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\"}{}")),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\"")),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"a\",\"sub\":\"b\"}")),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"a\",\"exp\":1,\"exp\":2000000000}")),
              "malformed token");

#undef T_TOK

    ngx_http_chat_jwt_key_free(&key);
}


/* I1: what clients may put into <img src>, and what not */

static const char  *t_avatars_ok[] = {
    "https://img.example/a.png", "HTTPS://img.example/a.png", "/avatars/7",
    "/", "", NULL
};

static const char  *t_avatars_bad[] = {
    "javascript:alert(1)", "data:image/png;base64,AAAA",
    "http://img.example/a.png", "//evil.example/x", "/\\\\evil.example/x",
    "https:///x", "https://", "a.png", "https://img.example/a b",
    "https://img.example/\\u0001", "/x\\u007f", " https://img.example/a",
    NULL
};


static void
test_name_avatar(void)
{
    size_t                     i;
    char                       payload[4096];
    const char                *err;
    ngx_http_chat_jwt_t        jwt;
    ngx_http_chat_jwt_key_t    key;
    ngx_http_chat_jwt_opts_t   opts;

#define T_TOK(p)  t_hs(EVP_sha256(), t_secret, 32, T_HS256, p)

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);

    opts = t_opts();

    memset(&jwt, 0, sizeof(jwt));
    CHECK_STR(t_verify_n(&key, &opts,
                         T_TOK("{\"sub\":\"u1\",\"name\":\"Ann \\\"A\\\"\","
                               "\"avatar\":\"https://x/a.png\"}"),
                         strlen(T_TOK("{\"sub\":\"u1\",\"name\":"
                                      "\"Ann \\\"A\\\"\",\"avatar\":"
                                      "\"https://x/a.png\"}")),
                         &jwt), "ok");
    CHECK(jwt.sub_len == 2 && memcmp(jwt.sub, "u1", 2) == 0);
    CHECK(jwt.name_len == 7 && memcmp(jwt.name, "Ann \"A\"", 7) == 0);
    CHECK(jwt.avatar_len == 15
          && memcmp(jwt.avatar, "https://x/a.png", 15) == 0);
    CHECK_STR(jwt.name, json_string_value(json_object_get(jwt.claims,
                                                          "name")));
    ngx_http_chat_jwt_free(&jwt);

    memset(&jwt, 0, sizeof(jwt));
    CHECK_STR(t_verify_n(&key, &opts, T_TOK("{\"sub\":\"u1\"}"),
                         strlen(T_TOK("{\"sub\":\"u1\"}")), &jwt), "ok");
    CHECK(jwt.name == NULL && jwt.name_len == 0);
    CHECK(jwt.avatar == NULL && jwt.avatar_len == 0);
    ngx_http_chat_jwt_free(&jwt);

    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"u\",\"name\":5}")),
              "invalid name claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"u\",\"name\":null}")),
              "invalid name claim");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"u\",\"name\":{\"a\":1}}")),
              "invalid name claim");
    CHECK_STR(t_verify(&key, &opts, T_TOK("{\"sub\":\"u\",\"avatar\":[]}")),
              "invalid avatar claim");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"u\",\"avatar\":false}")),
              "invalid avatar claim");

    /*
     * name: 200 characters pass, 201 do not, as chat.api_user_upsert()
     * stores them (I1: 256 bytes once passed here and were dropped there)
     */

    memset(payload, 0, sizeof(payload));
    memcpy(payload, "{\"sub\":\"u\",\"name\":\"", 19);
    memset(payload + 19, 'n', 200);
    memcpy(payload + 19 + 200, "\"}", 3);
    CHECK_STR(t_verify(&key, &opts, T_TOK(payload)), "ok");
    memset(payload + 19, 'n', 201);
    memcpy(payload + 19 + 201, "\"}", 3);
    CHECK_STR(t_verify(&key, &opts, T_TOK(payload)), "name claim too long");

    /* characters, not bytes: 200 two-byte ones pass */

    memset(payload, 0, sizeof(payload));
    memcpy(payload, "{\"sub\":\"u\",\"name\":\"", 19);
    for (i = 0; i < 200; i++) {
        memcpy(payload + 19 + 2 * i, "\xc3\xa9", 2);
    }
    memcpy(payload + 19 + 400, "\"}", 3);
    CHECK_STR(t_verify(&key, &opts, T_TOK(payload)), "ok");
    memcpy(payload + 19 + 400, "\xc3\xa9\"}", 5);
    CHECK_STR(t_verify(&key, &opts, T_TOK(payload)), "name claim too long");

    /* I1: no control characters in the name, as in sub */

    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"u\",\"name\":\"\\u001b[31mADMIN\"}")),
              "invalid name claim");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"u\",\"name\":\"a\\r\\nb\"}")),
              "invalid name claim");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"u\",\"name\":\"a\\u007f\"}")),
              "invalid name claim");
    CHECK_STR(t_verify(&key, &opts,
                       T_TOK("{\"sub\":\"u\",\"name\":\"J\\u00fcrgen \\\"J\\\"\"}")),
              "ok");

    /* I1: the avatar is an https:// URL or a path of this site */

    for (i = 0; t_avatars_ok[i]; i++) {
        snprintf(payload, sizeof(payload),
                 "{\"sub\":\"u\",\"avatar\":\"%s\"}", t_avatars_ok[i]);
        CHECK_STR(t_verify(&key, &opts, T_TOK(payload)), "ok");
    }

    for (i = 0; t_avatars_bad[i]; i++) {
        snprintf(payload, sizeof(payload),
                 "{\"sub\":\"u\",\"avatar\":\"%s\"}", t_avatars_bad[i]);
        CHECK_STR(t_verify(&key, &opts, T_TOK(payload)),
                  "invalid avatar claim");
    }

    /* avatar: 2048 bytes pass, 2049 do not */

    memset(payload, 0, sizeof(payload));
    memcpy(payload, "{\"sub\":\"u\",\"avatar\":\"https://", 29);
    memset(payload + 29, 'v', 2048 - 8);
    memcpy(payload + 21 + 2048, "\"}", 3);
    CHECK_STR(t_verify(&key, &opts, T_TOK(payload)), "ok");
    memset(payload + 29, 'v', 2049 - 8);
    memcpy(payload + 21 + 2049, "\"}", 3);
    CHECK_STR(t_verify(&key, &opts, T_TOK(payload)),
              "avatar claim too long");

#undef T_TOK

    ngx_http_chat_jwt_key_free(&key);
}


static void
test_alg_attacks(void)
{
    u_char                     sig[32];
    const char                *err;
    EVP_PKEY                  *rsa;
    ngx_http_chat_jwt_key_t    key, rs;
    ngx_http_chat_jwt_opts_t   opts;

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);
    CHECK_EQ(t_load(&rs, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.pub.pem", &err),
             0);

    opts = t_opts();
    memset(sig, 'x', sizeof(sig));

    /* alg none, with and without a signature, in several spellings */

    CHECK(strcmp(t_verify(&key, &opts,
                          t_join("{\"alg\":\"none\"}", T_ALICE, NULL, 0)),
                 "ok")
          != 0);
    CHECK_STR(t_verify(&key, &opts,
                       t_join("{\"alg\":\"none\"}", T_ALICE, sig, 32)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, "{\"alg\":\"none\"}",
                            T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, "{\"alg\":\"None\"}",
                            T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, "{\"alg\":\"NONE\"}",
                            T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&rs, &opts,
                       t_join("{\"alg\":\"none\"}", T_ALICE, sig, 32)),
              "algorithm not allowed");
    CHECK(strcmp(t_verify(&rs, &opts,
                          t_join("{\"alg\":\"none\"}", T_ALICE, NULL, 0)),
                 "ok")
          != 0);

    /* alg must match exactly, case included */

    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"hs256\"}", T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256 \"}", T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS2560\"}", T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS25\"}", T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"\"}", T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":[\"HS256\"]}", T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":null}", T_ALICE)),
              "algorithm not allowed");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"typ\":\"JWT\"}", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"ALG\":\"HS256\"}", T_ALICE)),
              "malformed token");

    /* the JSON escape of the same name is the same string */
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS\\u0032\\u00356\"}", T_ALICE)),
              "ok");

    /* HS384 token against an HS256 key (the secret is long enough) */
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha384(), t_secret, 32,
                            "{\"alg\":\"HS384\"}", T_ALICE)),
              "algorithm not allowed");

    /* an RS256 token at an HS256 key */

    rsa = t_private("rsa2048.key.pem");
    CHECK(rsa != NULL);
    if (rsa != NULL) {
        CHECK_STR(t_verify(&key, &opts, t_rs(rsa, T_RS256, T_ALICE)),
                  "algorithm not allowed");
        CHECK_STR(t_verify(&rs, &opts, t_rs(rsa, T_RS256, T_ALICE)), "ok");
        EVP_PKEY_free(rsa);
    }

    ngx_http_chat_jwt_key_free(&key);
    ngx_http_chat_jwt_key_free(&rs);
}


static void
test_header_keys(void)
{
    char                       header[2048];
    char                      *n_b64;
    BIGNUM                    *bn;
    u_char                     bin[512];
    EVP_PKEY                  *attacker, *ec_attacker, *rsa, *ec;
    const char                *err;
    ngx_http_chat_jwt_key_t    key, rs, es;
    ngx_http_chat_jwt_opts_t   opts;

    opts = t_opts();

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);
    CHECK_EQ(t_load(&rs, NGX_HTTP_CHAT_JWT_RS256, "rsa2048.pub.pem", &err),
             0);
    CHECK_EQ(t_load(&es, NGX_HTTP_CHAT_JWT_ES256, "ec256.pub.pem", &err), 0);

    attacker = t_generate(EVP_PKEY_RSA);
    ec_attacker = t_generate(EVP_PKEY_EC);
    rsa = t_private("rsa2048.key.pem");
    ec = t_private("ec256.key.pem");
    CHECK(attacker != NULL && ec_attacker != NULL && rsa != NULL
          && ec != NULL);

    if (attacker == NULL || ec_attacker == NULL || rsa == NULL
        || ec == NULL)
    {
        goto done;
    }

    /*
     * Embedded jwk: the attacker's own public key in the header, the token
     * signed by the attacker's private key.
     */

    bn = NULL;

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    CHECK_EQ(EVP_PKEY_get_bn_param(attacker, "n", &bn), 1);
#else
    {
        const BIGNUM  *n;

        RSA_get0_key(EVP_PKEY_get0_RSA(attacker), &n, NULL, NULL);
        bn = BN_dup(n);
    }
#endif

    CHECK(bn != NULL && BN_num_bytes(bn) == 256);
    if (bn == NULL) {
        goto done;
    }

    BN_bn2bin(bn, bin);
    n_b64 = t_b64(bin, (size_t) BN_num_bytes(bn));
    BN_free(bn);

    snprintf(header, sizeof(header),
             "{\"alg\":\"RS256\",\"jwk\":{\"kty\":\"RSA\",\"e\":\"AQAB\","
             "\"n\":\"%s\"}}", n_b64);

    CHECK_STR(t_verify(&rs, &opts, t_rs(attacker, header, T_ALICE)),
              "bad signature");

    /* the same header is harmless when our own key signed */
    CHECK_STR(t_verify(&rs, &opts, t_rs(rsa, header, T_ALICE)), "ok");

    /* the same for ES256 (the jwk coordinates do not matter here) */

    snprintf(header, sizeof(header),
             "{\"alg\":\"ES256\",\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"x\":\"%s\",\"y\":\"%s\"}}",
             t_b64(t_secret, 32), t_b64(t_secret + 32, 32));
    CHECK_STR(t_verify(&es, &opts, t_es(ec_attacker, header, T_ALICE, 0)),
              "bad signature");
    CHECK_STR(t_verify(&es, &opts, t_es(ec, header, T_ALICE, 0)), "ok");

    /* jku, x5u and x5c are never fetched nor trusted */

    CHECK_STR(t_verify(&rs, &opts,
                       t_rs(attacker,
                            "{\"alg\":\"RS256\","
                            "\"jku\":\"https://evil.example/jwks.json\","
                            "\"x5u\":\"https://evil.example/cert.pem\","
                            "\"x5c\":[\"MIIB\"]}", T_ALICE)),
              "bad signature");

    /* kid: a path traversal changes nothing, our key still decides */

    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"kid\":\"../../etc/passwd\"}",
                            T_ALICE)),
              "ok");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), "", 0,
                            "{\"alg\":\"HS256\","
                            "\"kid\":\"../../../../../dev/null\"}",
                            T_ALICE)),
              "bad signature");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), "root:x:0:0", 10,
                            "{\"alg\":\"HS256\",\"kid\":\"../../etc/passwd\"}",
                            T_ALICE)),
              "bad signature");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\","
                            "\"kid\":\"' UNION SELECT 'x' --\"}",
                            T_ALICE)),
              "ok");
    CHECK_STR(t_verify(&rs, &opts,
                       t_rs(rsa, "{\"alg\":\"RS256\",\"kid\":7}", T_ALICE)),
              "ok");

    /* crit: no extension is supported, so any crit is refused */

    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"crit\":[\"exp\"],"
                            "\"exp\":1}", T_ALICE)),
              "unsupported critical header");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"b64\":false,"
                            "\"crit\":[\"b64\"]}", T_ALICE)),
              "unsupported critical header");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"crit\":[]}", T_ALICE)),
              "unsupported critical header");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"crit\":null}", T_ALICE)),
              "unsupported critical header");

    /* other unknown header members are ignored */
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"typ\":\"at+jwt\","
                            "\"cty\":\"x\",\"zip\":\"DEF\"}", T_ALICE)),
              "ok");

done:

    EVP_PKEY_free(attacker);
    EVP_PKEY_free(ec_attacker);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    ngx_http_chat_jwt_key_free(&key);
    ngx_http_chat_jwt_key_free(&rs);
    ngx_http_chat_jwt_key_free(&es);
}


static void
test_structure(void)
{
    char                      *payload, *ep, *hb, *big, *claims;
    size_t                     i, j, n, len, pad, bit, best;
    u_char                     c;
    u_char                     sig[EVP_MAX_MD_SIZE];
    unsigned int               sig_len;
    const char                *err;
    ngx_http_chat_jwt_key_t    key;
    ngx_http_chat_jwt_opts_t   opts;
    char                       good[1024], h[1024], p[1024], s[1024];
    char                       tok[T_MAX], input[T_MAX];

    static const char  bad[] = "+/= \t\n\r%!*~\\\"\x80\xff";

    CHECK_EQ(ngx_http_chat_jwt_key_load(&key, NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);

    opts = t_opts();
    strcpy(good, t_hs(EVP_sha256(), t_secret, 32, T_HS256, T_ALICE));
    CHECK_STR(t_verify(&key, &opts, good), "ok");

    len = strcspn(good, ".");
    memcpy(h, good, len);
    h[len] = '\0';
    len = strcspn(good + strlen(h) + 1, ".");
    memcpy(p, good + strlen(h) + 1, len);
    p[len] = '\0';
    strcpy(s, good + strlen(h) + strlen(p) + 2);

    /* segments */

    snprintf(tok, T_MAX, "%s.%s.", h, p);
    CHECK_STR(t_verify(&key, &opts, tok), "missing signature");
    snprintf(tok, T_MAX, "%s.%s", h, p);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s", h);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, ".%s.%s", p, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s..%s", h, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s.%s.%s.", h, p, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s.%s.%s.%s", h, p, s, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s.%s.%s.%s.%s", h, p, s, s, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s..%s.%s", h, p, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    CHECK_STR(t_verify(&key, &opts, ".."), "malformed token");
    CHECK_STR(t_verify(&key, &opts, "."), "malformed token");
    CHECK_STR(t_verify(&key, &opts, ""), "malformed token");

    /* JSON serialization (RFC 7515 7.2) */
    snprintf(tok, T_MAX, "{\"payload\":\"%s\",\"protected\":\"%s\","
             "\"signature\":\"%s\"}", p, h, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "{\"payload\":\"%s\".\"protected\":\"%s\"."
             "\"signature\":\"%s\"}", p, h, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");

    /* padding */
    snprintf(tok, T_MAX, "%s=.%s.%s", h, p, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s.%s=.%s", h, p, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s.%s.%s=", h, p, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");
    snprintf(tok, T_MAX, "%s.%s.%s==", h, p, s);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");

    /* characters outside the alphabet, anywhere */

    len = strlen(good);
    for (i = 0; i < len; i += 7) {
        if (good[i] == '.') {
            continue;
        }

        for (j = 0; j < sizeof(bad) - 1; j++) {
            memcpy(tok, good, len + 1);
            tok[i] = bad[j];
            if (strcmp(t_verify(&key, &opts, tok), "malformed token") != 0) {
                CHECK(!"a bad base64url character is refused");
            }
        }
    }

    CHECK(1);

    /* an embedded NUL */
    memcpy(tok, good, len + 1);
    tok[5] = '\0';
    CHECK_STR(t_verify_n(&key, &opts, tok, len, NULL),
              "malformed token");

    /*
     * Non-canonical trailing bits, correctly signed over the altered text:
     * only the strict decoder stands in the way.
     */

    payload = "{\"sub\":\"alice\",\"x\":\"a\"}";
    CHECK(strlen(payload) % 3 != 0);
    snprintf(input, sizeof(input), "%s.%s", h,
             t_b64(payload, strlen(payload)));
    CHECK_STR(t_verify(&key, &opts, t_join_raw(input, sig, 0)),
              "missing signature");

    HMAC(EVP_sha256(), t_secret, 32, (u_char *) input, strlen(input),
         sig, &sig_len);
    CHECK_STR(t_verify(&key, &opts, t_join_raw(input, sig, sig_len)),
              "ok");

    /* set the lowest unused bit of the last character */
    ep = input + strlen(input) - 1;
    c = (u_char) *ep;
    *ep = (char) (c == 'Z' ? 'a' : c == 'z' ? '0' : c + 1);

    HMAC(EVP_sha256(), t_secret, 32, (u_char *) input, strlen(input),
         sig, &sig_len);
    CHECK_STR(t_verify(&key, &opts, t_join_raw(input, sig, sig_len)),
              "malformed token");

    /* the same in the signature: its last character has 2 unused bits */

    memcpy(tok, good, len + 1);
    CHECK(strlen(s) % 4 == 3);
    tok[len - 1] = (char) (tok[len - 1] + 1);
    CHECK_STR(t_verify(&key, &opts, tok), "malformed token");

    /* and in the header */

    hb = t_b64("{\"alg\":\"HS256\"}", 15);
    CHECK(strlen(hb) == 20);
    hb = t_b64("{\"alg\":\"HS256\" }", 16);
    CHECK(strlen(hb) % 4 == 2);

    snprintf(input, sizeof(input), "%s.%s", hb, p);
    ep = input + strlen(hb) - 1;
    *ep = (char) (*ep + 1);

    HMAC(EVP_sha256(), t_secret, 32, (u_char *) input, strlen(input),
         sig, &sig_len);
    CHECK_STR(t_verify(&key, &opts, t_join_raw(input, sig, sig_len)),
              "malformed token");

    /* a signature one bit off, in every byte */

    for (bit = 0; bit < 256; bit += 5) {
        if (strcmp(t_verify(&key, &opts, t_flip(good, bit)),
                   "bad signature")
            != 0)
        {
            CHECK(!"a flipped signature bit is refused");
        }
    }

    CHECK(1);

    /* a signature of the wrong length: the MAC truncated, or extended */

    snprintf(input, sizeof(input), "%s.%s", h, p);
    HMAC(EVP_sha256(), t_secret, 32, (u_char *) input, strlen(input),
         sig, &sig_len);
    CHECK_STR(t_verify(&key, &opts, t_join_raw(input, sig, 16)),
              "bad signature");
    CHECK_STR(t_verify(&key, &opts, t_join_raw(input, sig, 31)),
              "bad signature");
    CHECK_STR(t_verify(&key, &opts, t_join_raw(input, sig, 1)),
              "bad signature");

    /* the payload swapped after signing */

    snprintf(tok, T_MAX, "%s.%s.%s", h,
             t_b64("{\"sub\":\"admin\",\"exp\":1700000600}",
                   strlen("{\"sub\":\"admin\",\"exp\":1700000600}")),
             s);
    CHECK_STR(t_verify(&key, &opts, tok), "bad signature");

    /* the header swapped after signing (alg the same) */

    snprintf(tok, T_MAX, "%s.%s.%s", t_b64("{\"alg\":\"HS256\"}", 15), p, s);
    CHECK_STR(t_verify(&key, &opts, tok), "bad signature");

    /* header: not JSON, not an object, duplicate keys */

    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, "HS256", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, "", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, "[\"HS256\"]",
                            T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "[{\"alg\":\"HS256\"}]", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, "\"HS256\"",
                            T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32, "null", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\"", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\"}x", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"alg\":\"none\"}", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"none\",\"alg\":\"HS256\"}", T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"kid\":\"a\",\"kid\":\"b\"}",
                            T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"\\u0061lg\":\"none\"}",
                            T_ALICE)),
              "malformed token");
    CHECK_STR(t_verify(&key, &opts,
                       t_hs(EVP_sha256(), t_secret, 32,
                            "{\"alg\":\"HS256\",\"x\":\"\xc0\xaf\"}",
                            T_ALICE)),
              "malformed token");

    /* length limit: the longest valid token passes, one byte more fails */

    claims = malloc(NGX_HTTP_CHAT_JWT_MAX_TOKEN);
    best = 0;
    big = NULL;

    for (pad = 6000; pad < 6300; pad++) {
        snprintf(claims, NGX_HTTP_CHAT_JWT_MAX_TOKEN,
                 "{\"sub\":\"a\",\"pad\":\"%0*d\"}", (int) pad, 0);
        big = t_hs(EVP_sha256(), t_secret, 32, T_HS256, claims);
        n = strlen(big);

        if (n == NGX_HTTP_CHAT_JWT_MAX_TOKEN) {
            best = pad;
            CHECK_STR(t_verify(&key, &opts, big), "ok");
        }

        if (n > NGX_HTTP_CHAT_JWT_MAX_TOKEN) {
            CHECK_STR(t_verify(&key, &opts, big), "token too long");
            break;
        }
    }

    CHECK(best != 0);
    free(claims);

    ngx_http_chat_jwt_key_free(&key);
}


static void
test_truncation(void)
{
    size_t                     i, k, len, failed;
    EVP_PKEY                  *rsa, *ec;
    const char                *err, *e;
    ngx_http_chat_jwt_key_t    keys[3];
    ngx_http_chat_jwt_opts_t   opts;
    char                       toks[3][1024];

    opts = t_opts();

    rsa = t_private("rsa2048.key.pem");
    ec = t_private("ec256.key.pem");
    CHECK(rsa != NULL && ec != NULL);
    if (rsa == NULL || ec == NULL) {
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(ec);
        return;
    }

    CHECK_EQ(ngx_http_chat_jwt_key_load(&keys[0], NGX_HTTP_CHAT_JWT_HS256,
                                        t_secret, 32, &err), 0);
    CHECK_EQ(t_load(&keys[1], NGX_HTTP_CHAT_JWT_RS256, "rsa2048.pub.pem",
                    &err), 0);
    CHECK_EQ(t_load(&keys[2], NGX_HTTP_CHAT_JWT_ES256, "ec256.pub.pem", &err),
             0);

    strcpy(toks[0], t_hs(EVP_sha256(), t_secret, 32, T_HS256, T_ALICE));
    strcpy(toks[1], t_rs(rsa, T_RS256, T_ALICE));
    strcpy(toks[2], t_es(ec, T_ES256, T_ALICE, 0));

    /* every proper prefix fails, each read from an exact-size buffer */

    for (k = 0; k < 3; k++) {
        len = strlen(toks[k]);
        CHECK_STR(t_verify(&keys[k], &opts, toks[k]), "ok");

        failed = 0;

        for (i = 0; i < len; i++) {
            e = t_verify_n(&keys[k], &opts, toks[k], i, NULL);
            if (strcmp(e, "ok") == 0) {
                failed++;
            }
        }

        CHECK_EQ(failed, 0);

        /* and every suffix after the first byte */

        for (i = 1; i < len; i++) {
            e = t_verify_n(&keys[k], &opts, toks[k] + i, len - i, NULL);
            if (strcmp(e, "ok") == 0) {
                failed++;
            }
        }

        CHECK_EQ(failed, 0);
    }

    for (k = 0; k < 3; k++) {
        ngx_http_chat_jwt_key_free(&keys[k]);
    }

    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
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


static u_char *
t_read(const char *name, size_t *len)
{
    FILE    *f;
    long     size;
    u_char  *data;

    f = fopen(t_path(name), "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s (set CHAT_TESTDATA)\n", t_path(name));
        return NULL;
    }

    data = NULL;

    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0
        && fseek(f, 0, SEEK_SET) == 0)
    {
        data = malloc((size_t) size);

        if (data != NULL
            && fread(data, 1, (size_t) size, f) != (size_t) size)
        {
            free(data);
            data = NULL;
        }

        *len = (size_t) size;
    }

    fclose(f);

    return data;
}


static int
t_load(ngx_http_chat_jwt_key_t *key, ngx_http_chat_jwt_alg_e alg,
    const char *name, const char **err)
{
    int      rc;
    size_t   len;
    u_char  *data;

    memset(key, 0, sizeof(ngx_http_chat_jwt_key_t));

    data = t_read(name, &len);
    if (data == NULL) {
        *err = "test file missing";
        return -2;
    }

    rc = ngx_http_chat_jwt_key_load(key, alg, data, len, err);

    free(data);

    return rc;
}


static EVP_PKEY *
t_private(const char *name)
{
    BIO       *bio;
    EVP_PKEY  *pkey;

    bio = BIO_new_file(t_path(name), "r");
    if (bio == NULL) {
        fprintf(stderr, "cannot open %s (set CHAT_TESTDATA)\n", t_path(name));
        return NULL;
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);

    return pkey;
}


static EVP_PKEY *
t_generate(int type)
{
    EVP_PKEY      *pkey;
    EVP_PKEY_CTX  *ctx;

    pkey = NULL;

    ctx = EVP_PKEY_CTX_new_id(type, NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1) {
        goto done;
    }

    if (type == EVP_PKEY_RSA
        && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) != 1)
    {
        goto done;
    }

    if (type == EVP_PKEY_EC
        && EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx,
                                                  NID_X9_62_prime256v1)
           != 1)
    {
        goto done;
    }

    if (EVP_PKEY_keygen(ctx, &pkey) != 1) {
        pkey = NULL;
    }

done:

    EVP_PKEY_CTX_free(ctx);

    return pkey;
}


/* tokens live in a ring of static buffers: no frees in the tests */

static char *
t_slot(void)
{
    return t_slots[t_next++ % T_SLOTS];
}


static char *
t_b64(const void *src, size_t len)
{
    char    *out;
    size_t   n;

    out = t_slot();
    n = ngx_http_chat_jwt_base64url_encode((u_char *) out, src, len);
    out[n] = '\0';

    return out;
}


static char *
t_join_raw(const char *input, const u_char *sig, size_t sig_len)
{
    char    *out;
    size_t   n;

    out = t_slot();
    n = strlen(input);
    memcpy(out, input, n);
    out[n++] = '.';
    n += ngx_http_chat_jwt_base64url_encode((u_char *) out + n, sig, sig_len);
    out[n] = '\0';

    return out;
}


static char *
t_join(const char *header, const char *payload, const u_char *sig,
    size_t sig_len)
{
    char  *input;

    input = t_slot();
    snprintf(input, T_MAX, "%s.", t_b64(header, strlen(header)));
    strcat(input, t_b64(payload, strlen(payload)));

    return t_join_raw(input, sig, sig_len);
}


static char *
t_hs(const EVP_MD *md, const void *secret, size_t secret_len,
    const char *header, const char *payload)
{
    char          *input;
    u_char         mac[EVP_MAX_MD_SIZE];
    unsigned int   mac_len;

    input = t_join(header, payload, NULL, 0);
    input[strlen(input) - 1] = '\0';

    HMAC(md, secret_len ? secret : "", (int) secret_len, (u_char *) input,
         strlen(input), mac, &mac_len);

    return t_join_raw(input, mac, mac_len);
}


static char *
t_rs(EVP_PKEY *pkey, const char *header, const char *payload)
{
    char        *input;
    u_char       sig[1024];
    size_t       sig_len;
    EVP_MD_CTX  *ctx;

    input = t_join(header, payload, NULL, 0);
    input[strlen(input) - 1] = '\0';

    sig_len = sizeof(sig);
    ctx = EVP_MD_CTX_new();

    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1
        || EVP_DigestSign(ctx, sig, &sig_len, (u_char *) input,
                          strlen(input))
           != 1)
    {
        CHECK(!"EVP_DigestSign");
        sig_len = 0;
    }

    EVP_MD_CTX_free(ctx);

    return t_join_raw(input, sig, sig_len);
}


/*
 * ES256 with the raw R || S of RFC 7518 3.4; adjust -1 drops the last
 * byte, 1 adds a zero byte, 100 keeps OpenSSL's DER form.
 */

static char *
t_es(EVP_PKEY *pkey, const char *header, const char *payload, int adjust)
{
    char             *input;
    u_char            der[128], raw[65];
    size_t            der_len;
    ECDSA_SIG        *es;
    EVP_MD_CTX       *ctx;
    const BIGNUM     *r, *s;
    const u_char     *p;

    input = t_join(header, payload, NULL, 0);
    input[strlen(input) - 1] = '\0';

    der_len = sizeof(der);
    ctx = EVP_MD_CTX_new();

    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1
        || EVP_DigestSign(ctx, der, &der_len, (u_char *) input,
                          strlen(input))
           != 1)
    {
        CHECK(!"EVP_DigestSign");
        der_len = 0;
    }

    EVP_MD_CTX_free(ctx);

    if (adjust == 100) {
        return t_join_raw(input, der, der_len);
    }

    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long) der_len);
    CHECK(es != NULL);

    memset(raw, 0, sizeof(raw));

    if (es != NULL) {
        ECDSA_SIG_get0(es, &r, &s);
        BN_bn2binpad(r, raw, 32);
        BN_bn2binpad(s, raw + 32, 32);
        ECDSA_SIG_free(es);
    }

    return t_join_raw(input, raw, (size_t) (64 + adjust));
}


/* flips one bit of the decoded signature and encodes it again */

static char *
t_flip(const char *token, size_t bit)
{
    char     *input, *dot;
    u_char    sig[1024];
    ssize_t   n;

    input = t_slot();
    strcpy(input, token);

    dot = strrchr(input, '.');
    n = ngx_http_chat_jwt_base64url_decode(sig, (u_char *) dot + 1,
                                       strlen(dot + 1));
    *dot = '\0';

    if (n <= 0 || bit / 8 >= (size_t) n) {
        CHECK(!"t_flip");
        return input;
    }

    sig[bit / 8] ^= (u_char) (1 << (bit % 8));

    return t_join_raw(input, sig, (size_t) n);
}


static ngx_http_chat_jwt_opts_t
t_opts(void)
{
    ngx_http_chat_jwt_opts_t  opts;

    memset(&opts, 0, sizeof(opts));
    opts.now = T_NOW;

    return opts;
}


static const char *
t_verify(const ngx_http_chat_jwt_key_t *key,
    const ngx_http_chat_jwt_opts_t *opts, const char *token)
{
    return t_verify_n(key, opts, token, strlen(token), NULL);
}


/*
 * Copies the token to a buffer of exactly its size so that ASan sees any
 * read past it, and checks the invariants every call keeps.
 */

static const char *
t_verify_n(const ngx_http_chat_jwt_key_t *key,
    const ngx_http_chat_jwt_opts_t *opts, const char *token, size_t len,
    ngx_http_chat_jwt_t *out)
{
    int                   rc;
    u_char               *copy;
    const char           *err;
    ngx_http_chat_jwt_t   jwt;

    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return "test out of memory";
    }

    memcpy(copy, token, len);

    err = NULL;
    memset(&jwt, 0x5a, sizeof(jwt));

    rc = ngx_http_chat_jwt_verify(key, opts, copy, len, &jwt, &err);

    free(copy);

    if (ERR_peek_error() != 0) {
        CHECK(!"OpenSSL error queue left empty");
        ERR_clear_error();
    }

    if (rc != 0) {
        if (err == NULL || jwt.claims != NULL || jwt.sub != NULL) {
            CHECK(!"a failed verify sets err and leaves jwt empty");
        }

        return err != NULL ? err : "(no error)";
    }

    if (jwt.claims == NULL || jwt.sub == NULL || jwt.sub_len == 0
        || strlen(jwt.sub) != jwt.sub_len)
    {
        CHECK(!"a verified jwt has claims and sub");
    }

    if (out != NULL) {
        *out = jwt;

    } else {
        ngx_http_chat_jwt_free(&jwt);
    }

    return "ok";
}
