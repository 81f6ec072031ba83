
/*
 * A browser's push subscription (PushSubscription.toJSON()):
 *
 *   {"endpoint": "https://push.example.net/...", "expirationTime": null,
 *    "keys": {"p256dh": "<base64url>", "auth": "<base64url>"}}
 *
 * validated into what sending needs: the endpoint split for the request
 * (an https URL only, no userinfo, no fragment), its origin (the VAPID
 * audience), a P-256 point on the curve and a 16-byte secret.
 *
 * Pure C over jansson and OpenSSL libcrypto, no nginx.
 */


#ifndef _NGX_HTTP_CHAT_SUBSCRIPTION_H_INCLUDED_
#define _NGX_HTTP_CHAT_SUBSCRIPTION_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>


#define NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ENDPOINT  2048
#define NGX_HTTP_CHAT_SUBSCRIPTION_MAX_HOST      253
/* "https://" "[" host "]" ":" port */
#define NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ORIGIN                                \
    (8 + NGX_HTTP_CHAT_SUBSCRIPTION_MAX_HOST + 2 + 6)
/* the whole JSON text ngx_http_chat_subscription_parse() reads */
#define NGX_HTTP_CHAT_SUBSCRIPTION_MAX_JSON      4096

#define NGX_HTTP_CHAT_SUBSCRIPTION_KEY_LEN       65
#define NGX_HTTP_CHAT_SUBSCRIPTION_AUTH_LEN      16


typedef struct {
    /* the endpoint as given, NUL-terminated */
    char        endpoint[NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ENDPOINT + 1];
    size_t      endpoint_len;

    /* lower case, NUL-terminated; an IPv6 literal without its brackets */
    char        host[NGX_HTTP_CHAT_SUBSCRIPTION_MAX_HOST + 1];
    size_t      host_len;
    unsigned    ipv6:1;
    uint16_t    port;              /* 443 when the URL has none */

    /* the request target: a path and its query, in endpoint */
    const char *path;
    size_t      path_len;

    /* scheme://host[:port], the port only when not 443; NUL-terminated */
    char        origin[NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ORIGIN + 1];
    size_t      origin_len;

    int64_t     expiration;        /* ms since the epoch, 0: none */

    u_char      p256dh[NGX_HTTP_CHAT_SUBSCRIPTION_KEY_LEN];
    u_char      auth[NGX_HTTP_CHAT_SUBSCRIPTION_AUTH_LEN];
} ngx_http_chat_subscription_t;


/*
 * The JSON text of a subscription (at most MAX_JSON bytes) into *sub.
 * Returns 0, or -1 with *err set to a static, client-presentable reason.
 */
int ngx_http_chat_subscription_parse(const u_char *data, size_t len,
    ngx_http_chat_subscription_t *sub, const char **err);

/* the same from a parsed JSON value */
int ngx_http_chat_subscription_read(json_t *value,
    ngx_http_chat_subscription_t *sub, const char **err);

/* the endpoint alone (a stored one): fills endpoint, host, port, path and
 * origin */
int ngx_http_chat_subscription_endpoint(const char *url, size_t len,
    ngx_http_chat_subscription_t *sub, const char **err);


#endif /* _NGX_HTTP_CHAT_SUBSCRIPTION_H_INCLUDED_ */
