
/*
 * libFuzzer target of the push subscription parser.
 *
 * The first input byte picks the mode, the rest is the data:
 *
 *   byte & 1 == 0   the data is a subscription's JSON text;
 *   byte & 1 == 1   the data is an endpoint alone.
 *
 * Each from an exact copy of the data (a read past the end is an ASan
 * report).  What is taken must be what the header promises: an https
 * endpoint of at most 2048 bytes, as given, with no userinfo or fragment;
 * a host in lower case of the allowed characters; a port; a path inside
 * the endpoint starting with '/'; the origin made of those; for JSON, a
 * p256dh that is a point on P-256.  And a round trip: the subscription
 * written back as JSON is taken again, the same.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <ngx_http_chat_base64url.h>
#include <ngx_http_chat_ece.h>
#include <ngx_http_chat_subscription.h>


#define fuzz_assert(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: assertion failed: %s\n",                \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check(const ngx_http_chat_subscription_t *s,
    const u_char *endpoint, size_t len);
static void fuzz_roundtrip(const ngx_http_chat_subscription_t *s);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                         mode, *copy;
    const char                    *err;
    json_t                        *json, *endpoint;
    ngx_http_chat_subscription_t  *s;

    if (size == 0) {
        return 0;
    }

    mode = data[0];
    data++;
    size--;

    copy = malloc(size ? size : 1);
    s = malloc(sizeof(ngx_http_chat_subscription_t));
    fuzz_assert(copy != NULL && s != NULL);
    memcpy(copy, data, size);

    err = NULL;

    if (mode & 1) {
        if (ngx_http_chat_subscription_endpoint((char *) copy, size, s, &err)
            == 0)
        {
            fuzz_check(s, copy, size);

        } else {
            fuzz_assert(err != NULL && err[0] != '\0');
        }

        goto done;
    }

    if (ngx_http_chat_subscription_parse(copy, size, s, &err) != 0) {
        fuzz_assert(err != NULL && err[0] != '\0');
        goto done;
    }

    json = json_loadb((char *) copy, size, JSON_DECODE_ANY, NULL);
    fuzz_assert(json != NULL);
    endpoint = json_object_get(json, "endpoint");
    fuzz_assert(json_is_string(endpoint));

    fuzz_check(s, (const u_char *) json_string_value(endpoint),
               json_string_length(endpoint));
    json_decref(json);

    fuzz_assert(s->p256dh[0] == 0x04);

    {
        EVP_PKEY  *pkey;

        pkey = ngx_http_chat_ece_import_public(s->p256dh, sizeof(s->p256dh));
        fuzz_assert(pkey != NULL);
        EVP_PKEY_free(pkey);
    }

    fuzz_roundtrip(s);

done:

    free(copy);
    free(s);

    return 0;
}


static void
fuzz_check(const ngx_http_chat_subscription_t *s, const u_char *endpoint,
    size_t len)
{
    size_t  i;
    char    origin[NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ORIGIN + 1];

    fuzz_assert(len <= NGX_HTTP_CHAT_SUBSCRIPTION_MAX_ENDPOINT);
    fuzz_assert(s->endpoint_len == len);
    fuzz_assert(memcmp(s->endpoint, endpoint, len) == 0);
    fuzz_assert(s->endpoint[len] == '\0');
    fuzz_assert(len > 8 && memcmp(s->endpoint, "https://", 8) == 0);
    fuzz_assert(memchr(s->endpoint, '#', len) == NULL);
    /* no userinfo: no '@' before the path ('@' is fine in a path) */
    fuzz_assert(memchr(s->endpoint, '@',
                       (s->path >= s->endpoint
                        && s->path < s->endpoint + len)
                       ? (size_t) (s->path - s->endpoint) : len)
                == NULL);

    for (i = 0; i < len; i++) {
        fuzz_assert((u_char) s->endpoint[i] > 0x20
                    && (u_char) s->endpoint[i] < 0x7f);
    }

    fuzz_assert(s->host_len > 0
                && s->host_len <= NGX_HTTP_CHAT_SUBSCRIPTION_MAX_HOST);
    fuzz_assert(strlen(s->host) == s->host_len);

    for (i = 0; i < s->host_len; i++) {
        fuzz_assert(!(s->host[i] >= 'A' && s->host[i] <= 'Z'));
        fuzz_assert(strchr(s->ipv6 ? "0123456789abcdef:."
                                   : "0123456789abcdefghijklmnopqrstuvwxyz"
                                     ".-_",
                           s->host[i]) != NULL);
    }

    fuzz_assert(s->port > 0);

    fuzz_assert(s->path_len > 0 && s->path[0] == '/');
    fuzz_assert((s->path_len == 1 && strcmp(s->path, "/") == 0)
                || (s->path >= s->endpoint
                    && s->path + s->path_len == s->endpoint + len));

    snprintf(origin, sizeof(origin), "https://%s%s%s", s->ipv6 ? "[" : "",
             s->host, s->ipv6 ? "]" : "");

    if (s->port != 443) {
        snprintf(origin + strlen(origin), sizeof(origin) - strlen(origin),
                 ":%u", (unsigned) s->port);
    }

    fuzz_assert(strcmp(origin, s->origin) == 0);
    fuzz_assert(strlen(s->origin) == s->origin_len);
}


static void
fuzz_roundtrip(const ngx_http_chat_subscription_t *s)
{
    char                          *text;
    json_t                        *j;
    const char                    *err;
    ngx_http_chat_subscription_t  *again;
    char                           p256dh[NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(
                                              65) + 1];
    char                           auth[NGX_HTTP_CHAT_BASE64URL_ENCODED_LEN(
                                            16) + 1];

    p256dh[ngx_http_chat_base64url_encode((u_char *) p256dh, s->p256dh, 65)]
        = '\0';
    auth[ngx_http_chat_base64url_encode((u_char *) auth, s->auth, 16)] = '\0';

    j = json_pack("{s:s, s:I, s:{s:s, s:s}}", "endpoint", s->endpoint,
                  "expirationTime", (json_int_t) s->expiration,
                  "keys", "p256dh", p256dh, "auth", auth);
    fuzz_assert(j != NULL);
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    fuzz_assert(text != NULL);

    again = malloc(sizeof(ngx_http_chat_subscription_t));
    fuzz_assert(again != NULL);

    err = NULL;
    fuzz_assert(ngx_http_chat_subscription_parse((u_char *) text,
                                                 strlen(text), again, &err)
                == 0);

    fuzz_assert(strcmp(again->endpoint, s->endpoint) == 0);
    fuzz_assert(strcmp(again->host, s->host) == 0);
    fuzz_assert(strcmp(again->origin, s->origin) == 0);
    fuzz_assert(again->port == s->port && again->ipv6 == s->ipv6);
    fuzz_assert(again->path_len == s->path_len
                && memcmp(again->path, s->path, s->path_len) == 0);
    fuzz_assert(again->expiration == s->expiration);
    fuzz_assert(memcmp(again->p256dh, s->p256dh, 65) == 0);
    fuzz_assert(memcmp(again->auth, s->auth, 16) == 0);

    free(again);
    free(text);
}
