
/*
 * VAPID (RFC 8292): the ES256 token a push service checks, and the
 * Authorization header that carries it with our public key.
 *
 * Pure C over OpenSSL libcrypto and jansson, no nginx.  The key is the
 * caller's: a P-256 private key read from a PEM file at configuration time.
 */


#ifndef _NGX_HTTP_CHAT_VAPID_H_INCLUDED_
#define _NGX_HTTP_CHAT_VAPID_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/evp.h>


/* the public key in base64url: what the page subscribes with */
#define NGX_HTTP_CHAT_VAPID_KEY_LEN       87

/* an audience is an origin: "https://" host[:port] */
#define NGX_HTTP_CHAT_VAPID_MAX_AUD       300
/* the subject: a mailto: or https: URL to reach the sender */
#define NGX_HTTP_CHAT_VAPID_MAX_SUB       512

/* room for any header within the limits above (escaped JSON at worst) */
#define NGX_HTTP_CHAT_VAPID_MAX_HEADER    8192

/* RFC 8292 2: exp no more than 24 hours ahead */
#define NGX_HTTP_CHAT_VAPID_MAX_TTL       86400


/*
 * Checks that key is a P-256 private key and writes its public point
 * (uncompressed, base64url: NGX_HTTP_CHAT_VAPID_KEY_LEN characters, no NUL)
 * into b64.  Returns 0, or -1 with *err set to a static string.
 */
int ngx_http_chat_vapid_key(EVP_PKEY *key, u_char *b64, const char **err);

/*
 * The signed token {"typ":"JWT","alg":"ES256"}.{"aud":..,"exp":..,"sub":..}
 * into out; returns its length (no NUL), or -1 with *err set.
 */
ssize_t ngx_http_chat_vapid_token(u_char *out, size_t size, EVP_PKEY *key,
    const char *aud, size_t aud_len, const char *sub, size_t sub_len,
    int64_t exp, const char **err);

/*
 * The Authorization header's value, "vapid t=<token>, k=<public key>",
 * into out; returns its length (no NUL), or -1 with *err set.
 */
ssize_t ngx_http_chat_vapid_header(u_char *out, size_t size, EVP_PKEY *key,
    const char *aud, size_t aud_len, const char *sub, size_t sub_len,
    int64_t exp, const char **err);


#endif /* _NGX_HTTP_CHAT_VAPID_H_INCLUDED_ */
