
/*
 * The REST routes of a chat_api location: the path after the location's
 * prefix, matched to a route and its parameters.  Pure C, so that unit
 * tests and fuzz targets link it alone.
 */


#ifndef _NGX_HTTP_CHAT_ROUTE_H_INCLUDED_
#define _NGX_HTTP_CHAT_ROUTE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


typedef enum {
    NGX_HTTP_CHAT_ROUTE_NONE = 0,
    NGX_HTTP_CHAT_ROUTE_CONVERSATIONS,      /* conversations */
    NGX_HTTP_CHAT_ROUTE_CONVERSATION,       /* conversations/{id} */
    NGX_HTTP_CHAT_ROUTE_ARCHIVE,            /* conversations/{id}/archive */
    NGX_HTTP_CHAT_ROUTE_MUTE,               /* conversations/{id}/mute */
    NGX_HTTP_CHAT_ROUTE_MEMBERS,            /* conversations/{id}/members */
    NGX_HTTP_CHAT_ROUTE_MEMBER,             /* .../members/{user} */
    NGX_HTTP_CHAT_ROUTE_MESSAGES,           /* conversations/{id}/messages */
    NGX_HTTP_CHAT_ROUTE_READ,               /* conversations/{id}/read */
    NGX_HTTP_CHAT_ROUTE_MESSAGE,            /* messages/{id} */
    NGX_HTTP_CHAT_ROUTE_MESSAGE_SEARCH,     /* messages/search */
    NGX_HTTP_CHAT_ROUTE_UNREAD,             /* unread */
    NGX_HTTP_CHAT_ROUTE_USER_SEARCH,        /* users/search */
    NGX_HTTP_CHAT_ROUTE_ME,                 /* users/me */
    NGX_HTTP_CHAT_ROUTE_CONTACTS,           /* contacts */
    NGX_HTTP_CHAT_ROUTE_CONTACT,            /* contacts/{user} */
    NGX_HTTP_CHAT_ROUTE_BLOCKS,             /* blocks */
    NGX_HTTP_CHAT_ROUTE_BLOCK,              /* blocks/{user} */
    NGX_HTTP_CHAT_ROUTE_PRESENCE,           /* presence */
    NGX_HTTP_CHAT_ROUTE_UPLOADS,            /* uploads */
    NGX_HTTP_CHAT_ROUTE_FILE,               /* files/{id} */
    NGX_HTTP_CHAT_ROUTE_COUNT
} ngx_http_chat_route_e;


/* the methods of a route, as bits */
#define NGX_HTTP_CHAT_M_GET     0x01
#define NGX_HTTP_CHAT_M_POST    0x02
#define NGX_HTTP_CHAT_M_PUT     0x04
#define NGX_HTTP_CHAT_M_PATCH   0x08
#define NGX_HTTP_CHAT_M_DELETE  0x10


/* a user id in a path: the JWT sub limit */
#define NGX_HTTP_CHAT_ROUTE_MAX_USER  128


typedef struct {
    ngx_http_chat_route_e   route;
    int64_t                 id;         /* conversation, message, file */
    const u_char           *user;       /* points into the path */
    size_t                  user_len;
} ngx_http_chat_route_t;


/*
 * Matches a path (already percent-decoded, without the location prefix
 * and without the query).  Ids are positive decimal integers without
 * leading zeros that fit in 63 bits; a user id is the rest of the path
 * after its route's prefix, 1..128 bytes without control characters (it
 * may hold '/').  Returns 0, or -1 when nothing matches (route NONE).
 */
int ngx_http_chat_route_parse(ngx_http_chat_route_t *rt, const u_char *path,
    size_t len);

/* the methods a route answers; 0 for NONE */
unsigned ngx_http_chat_route_methods(ngx_http_chat_route_e route);

/* "GET, HEAD, POST" and the like, for an Allow header */
const char *ngx_http_chat_route_allow(ngx_http_chat_route_e route);

/* the route's path with its parameters named ("conversations/{id}"), for
 * metrics; "unknown" for NONE */
const char *ngx_http_chat_route_name(ngx_http_chat_route_e route);


#endif /* _NGX_HTTP_CHAT_ROUTE_H_INCLUDED_ */
