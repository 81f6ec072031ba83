
/*
 * Push subscriptions: the browser's JSON, checked field by field, each
 * refusal with its own reason (the page shows it).  The endpoint is where
 * a worker will POST: only https, only a host and a port nginx can reach
 * as they are, nothing a second URL parser could read otherwise.
 */


#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "ngx_http_chat_base64url.h"
#include "ngx_http_chat_ece.h"
#include "ngx_http_chat_subscription.h"


#define NGX_HTTP_CHAT_SUBSCRIPTION_HTTPS  "https://"

/* longest base64url a key may be given in: 65 bytes, padded */
#define NGX_HTTP_CHAT_SUBSCRIPTION_MAX_B64  88

/* 2^53: beyond it a JSON number is no exact millisecond count */
#define NGX_HTTP_CHAT_SUBSCRIPTION_MAX_MS   9007199254740992.0


static int ngx_http_chat_subscription_authority(const char *p,
    const char *end, ngx_http_chat_subscription_t *sub, const char **err);
static int ngx_http_chat_subscription_port(const char *p, const char *end,
    uint16_t *port);
static int ngx_http_chat_subscription_origin(
    ngx_http_chat_subscription_t *sub);
static int ngx_http_chat_subscription_expiration(json_t *value,
    int64_t *ms);
static int ngx_http_chat_subscription_key(json_t *value, u_char *out,
    size_t len);


int
ngx_http_chat_subscription_parse(const u_char *data, size_t len,
    ngx_http_chat_subscription_t *sub, const char **err)
{
    int           rc;
    json_t       *value;
    json_error_t  error;

    if (len > NGX_HTTP_CHAT_SUBSCRIPTION_MAX_JSON) {
        *err = "subscription too large";
        return -1;
    }

    if (data == NULL) {
        *err = "no subscription";
        return -1;
    }

    value = json_loadb((const char *) data, len,
                       JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                       &error);
    if (value == NULL) {
        *err = "subscription is not valid JSON";
        return -1;
    }

    rc = ngx_http_chat_subscription_read(value, sub, err);

    json_decref(value);

    return rc;
}


int
ngx_http_chat_subscription_read(json_t *value,
    ngx_http_chat_subscription_t *sub, const char **err)
{
    json_t  *endpoint, *keys, *p256dh, *auth;

    if (!json_is_object(value)) {
        *err = "subscription is not a JSON object";
        return -1;
    }

    endpoint = json_object_get(value, "endpoint");

    if (endpoint == NULL) {
        *err = "endpoint is missing";
        return -1;
    }

    if (!json_is_string(endpoint)) {
        *err = "endpoint is not a string";
        return -1;
    }

    if (ngx_http_chat_subscription_endpoint(json_string_value(endpoint),
                                            json_string_length(endpoint),
                                            sub, err)
        != 0)
    {
        return -1;
    }

    if (ngx_http_chat_subscription_expiration(
            json_object_get(value, "expirationTime"), &sub->expiration)
        != 0)
    {
        *err = "expirationTime is not null or a time in milliseconds";
        return -1;
    }

    keys = json_object_get(value, "keys");

    if (keys == NULL) {
        *err = "keys is missing";
        return -1;
    }

    if (!json_is_object(keys)) {
        *err = "keys is not an object";
        return -1;
    }

    p256dh = json_object_get(keys, "p256dh");
    auth = json_object_get(keys, "auth");

    if (p256dh == NULL) {
        *err = "keys.p256dh is missing";
        return -1;
    }

    if (!json_is_string(p256dh)) {
        *err = "keys.p256dh is not a string";
        return -1;
    }

    if (auth == NULL) {
        *err = "keys.auth is missing";
        return -1;
    }

    if (!json_is_string(auth)) {
        *err = "keys.auth is not a string";
        return -1;
    }

    switch (ngx_http_chat_subscription_key(p256dh, sub->p256dh,
                                           sizeof(sub->p256dh)))
    {
    case 0:
        break;

    case -1:
        *err = "keys.p256dh is not base64url";
        return -1;

    default:
        *err = "keys.p256dh is not 65 bytes";
        return -1;
    }

    /* the point must be one ECDH takes: uncompressed, on P-256 */

    {
        EVP_PKEY  *pkey;

        pkey = ngx_http_chat_ece_import_public(sub->p256dh,
                                               sizeof(sub->p256dh));
        if (pkey == NULL) {
            *err = "keys.p256dh is not a P-256 public key";
            return -1;
        }

        EVP_PKEY_free(pkey);
    }

    switch (ngx_http_chat_subscription_key(auth, sub->auth,
                                           sizeof(sub->auth)))
    {
    case 0:
        break;

    case -1:
        *err = "keys.auth is not base64url";
        return -1;

    default:
        *err = "keys.auth is not 16 bytes";
        return -1;
    }

    return 0;
}


int
ngx_http_chat_subscription_endpoint(const char *url, size_t len,
    ngx_http_chat_subscription_t *sub, const char **err)
{
    size_t       i, n;
    const char  *p, *end, *authority;

    memset(sub, 0, sizeof(ngx_http_chat_subscription_t));

    if (url == NULL || len == 0) {
        *err = "endpoint is empty";
        return -1;
    }

    if (len > NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ENDPOINT) {
        *err = "endpoint is too long";
        return -1;
    }

    /* a serialized URL: visible ASCII, anything else percent-encoded */

    for (i = 0; i < len; i++) {
        if ((u_char) url[i] <= 0x20 || (u_char) url[i] >= 0x7f) {
            *err = "endpoint has a space, a control or a non-ASCII "
                   "character";
            return -1;
        }
    }

    n = sizeof(NGX_HTTP_CHAT_SUBSCRIPTION_HTTPS) - 1;

    if (len < n || memcmp(url, NGX_HTTP_CHAT_SUBSCRIPTION_HTTPS, n) != 0) {
        *err = "endpoint is not an https URL";
        return -1;
    }

    if (memchr(url, '#', len) != NULL) {
        *err = "endpoint has a fragment";
        return -1;
    }

    memcpy(sub->endpoint, url, len);
    sub->endpoint[len] = '\0';
    sub->endpoint_len = len;

    p = sub->endpoint + n;
    end = sub->endpoint + len;
    authority = p;

    while (p < end && *p != '/' && *p != '?') {
        p++;
    }

    if (ngx_http_chat_subscription_authority(authority, p, sub, err) != 0) {
        return -1;
    }

    if (p == end) {
        sub->path = "/";
        sub->path_len = 1;

    } else if (*p == '/') {
        sub->path = p;
        sub->path_len = (size_t) (end - p);

    } else {
        *err = "endpoint has a query but no path";
        return -1;
    }

    (void) ngx_http_chat_subscription_origin(sub);

    return 0;
}


/* host[:port] or [IPv6]:port, no userinfo */

static int
ngx_http_chat_subscription_authority(const char *p, const char *end,
    ngx_http_chat_subscription_t *sub, const char **err)
{
    u_char       c;
    size_t       i;
    const char  *host, *host_end;

    if (memchr(p, '@', (size_t) (end - p)) != NULL) {
        *err = "endpoint has userinfo";
        return -1;
    }

    if (p < end && *p == '[') {
        host = ++p;

        while (p < end && *p != ']') {
            c = (u_char) *p;

            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                  || (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
            {
                *err = "endpoint has a bad IPv6 address";
                return -1;
            }

            p++;
        }

        if (p == end || p == host) {
            *err = "endpoint has a bad IPv6 address";
            return -1;
        }

        host_end = p++;
        sub->ipv6 = 1;

    } else {
        host = p;

        while (p < end && *p != ':') {
            c = (u_char) *p;

            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
                  || (c >= 'A' && c <= 'Z') || c == '.' || c == '-'
                  || c == '_'))
            {
                *err = "endpoint has a bad host name";
                return -1;
            }

            p++;
        }

        host_end = p;
    }

    if (host_end == host) {
        *err = "endpoint has no host";
        return -1;
    }

    if ((size_t) (host_end - host) > NGX_HTTP_CHAT_SUBSCRIPTION_MAX_HOST) {
        *err = "endpoint has a host name too long";
        return -1;
    }

    for (i = 0; host + i < host_end; i++) {
        c = (u_char) host[i];
        sub->host[i] = (char) ((c >= 'A' && c <= 'Z') ? (c | 0x20) : c);
    }

    sub->host[i] = '\0';
    sub->host_len = i;
    sub->port = 443;

    if (p == end) {
        return 0;
    }

    if (*p != ':'
        || ngx_http_chat_subscription_port(p + 1, end, &sub->port) != 0)
    {
        *err = "endpoint has a bad port";
        return -1;
    }

    return 0;
}


/* 1..65535 in at most 5 digits (leading zeros, a longer run: refused) */

static int
ngx_http_chat_subscription_port(const char *p, const char *end,
    uint16_t *port)
{
    uint32_t  n;

    if (p == end || end - p > 5 || (*p == '0')) {
        return -1;
    }

    for (n = 0; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }

        n = n * 10 + (uint32_t) (*p - '0');
    }

    if (n == 0 || n > 65535) {
        return -1;
    }

    *port = (uint16_t) n;

    return 0;
}


/* RFC 6454 6.2: the scheme, the host in lower case, a port not 443 */

static int
ngx_http_chat_subscription_origin(ngx_http_chat_subscription_t *sub)
{
    int  n;

    n = snprintf(sub->origin, sizeof(sub->origin), "https://%s%s%s",
                 sub->ipv6 ? "[" : "", sub->host, sub->ipv6 ? "]" : "");

    if (n > 0 && sub->port != 443) {
        n += snprintf(sub->origin + n, sizeof(sub->origin) - (size_t) n,
                      ":%u", (unsigned) sub->port);
    }

    sub->origin_len = (size_t) n;

    return 0;
}


static int
ngx_http_chat_subscription_expiration(json_t *value, int64_t *ms)
{
    double  d;

    *ms = 0;

    if (value == NULL || json_is_null(value)) {
        return 0;
    }

    if (json_is_integer(value)) {
        if (json_integer_value(value) < 0) {
            return -1;
        }

        *ms = (int64_t) json_integer_value(value);
        return 0;
    }

    if (json_is_real(value)) {
        d = json_real_value(value);

        if (!isfinite(d) || d < 0 || d >= NGX_HTTP_CHAT_SUBSCRIPTION_MAX_MS) {
            return -1;
        }

        *ms = (int64_t) d;
        return 0;
    }

    return -1;
}


/*
 * A key in base64url, exactly len bytes.  Returns 0, -1 when it is not
 * base64url, -2 when it is but of another length.  Padding is forgiven:
 * some browsers and libraries add it.
 */

static int
ngx_http_chat_subscription_key(json_t *value, u_char *out, size_t len)
{
    size_t       n;
    ssize_t      got;
    const char  *s;
    u_char       buf[NGX_HTTP_CHAT_BASE64URL_DECODED_LEN(
                     NGX_HTTP_CHAT_SUBSCRIPTION_MAX_B64)];

    s = json_string_value(value);
    n = json_string_length(value);

    if (n > NGX_HTTP_CHAT_SUBSCRIPTION_MAX_B64) {
        return -2;
    }

    if (n % 4 == 0 && n > 0 && s[n - 1] == '=') {
        n--;

        if (s[n - 1] == '=') {
            n--;
        }
    }

    got = ngx_http_chat_base64url_decode(buf, (const u_char *) s, n);

    if (got < 0) {
        return -1;
    }

    if ((size_t) got != len) {
        return -2;
    }

    memcpy(out, buf, len);

    return 0;
}
