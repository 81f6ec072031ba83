
/*
 * Web Push message encryption (RFC 8291): the aes128gcm content coding of
 * RFC 8188 in one record, keyed by ECDH P-256 between a fresh key pair of
 * ours and the subscription's p256dh, and HKDF-SHA256 with its auth secret.
 *
 * Pure C over OpenSSL libcrypto, no nginx: unit tests and fuzz targets
 * link it alone.
 */


#ifndef _NGX_HTTP_CHAT_ECE_H_INCLUDED_
#define _NGX_HTTP_CHAT_ECE_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>
#include <openssl/evp.h>


#define NGX_HTTP_CHAT_ECE_KEY_LEN     65    /* an uncompressed P-256 point */
#define NGX_HTTP_CHAT_ECE_AUTH_LEN    16
#define NGX_HTTP_CHAT_ECE_SALT_LEN    16
#define NGX_HTTP_CHAT_ECE_TAG_LEN     16

/* salt, rs (4), idlen (1), keyid: our public key */
#define NGX_HTTP_CHAT_ECE_HEADER_LEN                                         \
    (NGX_HTTP_CHAT_ECE_SALT_LEN + 4 + 1 + NGX_HTTP_CHAT_ECE_KEY_LEN)

/* RFC 8030 7.2: a push service need not take a larger body */
#define NGX_HTTP_CHAT_ECE_MAX_BODY    4096

/* what fits: the header, the padding delimiter and the tag take the rest */
#define NGX_HTTP_CHAT_ECE_MAX_PAYLOAD                                        \
    (NGX_HTTP_CHAT_ECE_MAX_BODY - NGX_HTTP_CHAT_ECE_HEADER_LEN - 1           \
     - NGX_HTTP_CHAT_ECE_TAG_LEN)

#define NGX_HTTP_CHAT_ECE_BODY_LEN(n)                                        \
    (NGX_HTTP_CHAT_ECE_HEADER_LEN + (n) + 1 + NGX_HTTP_CHAT_ECE_TAG_LEN)


/*
 * Encrypts payload for the subscription (p256dh: its 65-byte point, auth:
 * its 16-byte secret) into out, the whole request body.  ephemeral and
 * salt are NULL in normal use (a fresh key pair, 16 random bytes); tests
 * give RFC 8291's.  Returns the body's length, or -1 with *err set to a
 * static string (a payload over NGX_HTTP_CHAT_ECE_MAX_PAYLOAD, out too
 * small, a bad key).
 */
ssize_t ngx_http_chat_ece_encrypt(u_char *out, size_t size,
    const u_char *payload, size_t len, const u_char *p256dh,
    const u_char *auth, EVP_PKEY *ephemeral, const u_char *salt,
    const char **err);

/* A P-256 key from its uncompressed point; NULL when the bytes are not
 * one, or not on the curve. */
EVP_PKEY *ngx_http_chat_ece_import_public(const u_char *point, size_t len);

/* pkey's public point, uncompressed, into out (65 bytes); 0 or -1 when
 * pkey is not a P-256 key */
int ngx_http_chat_ece_export_public(EVP_PKEY *pkey, u_char *out);


#endif /* _NGX_HTTP_CHAT_ECE_H_INCLUDED_ */
