
/*
 * The PostgreSQL pool of a worker.
 *
 * Each connection is a small state machine driven by nginx events:
 * PQconnectStart and PQconnectPoll, a setup query (statement_timeout, the
 * schema version, and on the first connection the LISTENs of the pool's
 * listeners), the prepared statements the module hands over at init, then
 * one query at a time.  libpq's nonblocking rules are kept: after a send,
 * PQflush until it returns 0; on input, PQconsumeInput, then PQgetResult
 * only while PQisBusy is false; a query is done when PQgetResult returns
 * NULL, which for a single statement is after its implicit COMMIT.
 *
 * libpq owns the sockets: nginx connections wrap them with c->shared set,
 * so that nginx never closes a descriptor PQfinish closes.
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_pg.h>
#include <ngx_http_chat_zone.h>


/*
 * What the module needs of the database (sql/migrate.sh brings it there):
 * the newest file of sql/schema/ and the version of sql/api/.
 */
#define NGX_HTTP_CHAT_SCHEMA_VERSION  16
#define NGX_HTTP_CHAT_API_VERSION     6

#define NGX_HTTP_CHAT_PG_BACKOFF_MIN  100
#define NGX_HTTP_CHAT_PG_BACKOFF_MAX  5000

/* how often a failure the pool logged is logged again while it lasts */
#define NGX_HTTP_CHAT_PG_RELOG_MIN    1000
#define NGX_HTTP_CHAT_PG_RELOG_MAX    60000

/* the different failures remembered: connections may fail in turn */
#define NGX_HTTP_CHAT_PG_LOGGED       4

/* channels listened to, and a channel's longest name (an identifier) */
#define NGX_HTTP_CHAT_PG_LISTENERS    4
#define NGX_HTTP_CHAT_PG_CHANNEL_MAX  63


typedef enum {
    ngx_http_chat_pg_idle_state = 0,  /* never connected, or backing off */
    ngx_http_chat_pg_connecting,
    ngx_http_chat_pg_setup,
    ngx_http_chat_pg_preparing,
    ngx_http_chat_pg_ready,
    ngx_http_chat_pg_busy
} ngx_http_chat_pg_state_e;


typedef struct {
    PGconn                     *conn;
    ngx_connection_t           *c;
    ngx_log_t                   log;       /* its own: the action is set */
    ngx_http_chat_pg_state_e    state;
    ngx_uint_t                  prepared;
    ngx_http_chat_pg_query_t   *query;
    PGresult                   *result;    /* the rows, or the first error */
    ngx_msec_t                  backoff;
    ngx_event_t                 retry;
    u_char                      fatal[256]; /* why the server hung up */
    uint64_t                    sent;      /* the query's, in usec */
    unsigned                    flushing:1;
} ngx_http_chat_pg_conn_t;


/* a failure the pool logged */
typedef struct {
    uint32_t                    crc;       /* of its line; 0: unused */
    ngx_uint_t                  unlogged;  /* its repeats since then */
    ngx_msec_t                  last;      /* when it was logged */
    ngx_msec_t                  interval;  /* before it is logged again */
} ngx_http_chat_pg_logged_t;


typedef struct {
    ngx_http_chat_pg_conf_t    *conf;
    ngx_http_chat_pg_conn_t    *conns;
    ngx_queue_t                 queue;
    ngx_uint_t                  queued;
    ngx_event_t                 expire;
    ngx_event_t                 kick;      /* hands the queue to connections */
    ngx_http_chat_pg_query_t   *pinned;    /* for the listening connection */
    ngx_http_chat_pg_stmt_t    *stmts;     /* what each connection prepares */
    ngx_uint_t                  nstmts;

    /* the channels the first connection LISTENs to */
    ngx_http_chat_pg_listener_t  *listeners[NGX_HTTP_CHAT_PG_LISTENERS];
    ngx_uint_t                  nlisteners;
    ngx_uint_t                  turned_on;  /* bits: ready() after LISTEN */
    unsigned                    relisten:1; /* LISTEN/UNLISTEN to send */
    ngx_log_t                  *log;

    /* failures since a connection last became ready, and their log */
    ngx_uint_t                  failures;
    ngx_msec_t                  failing_since;
    ngx_http_chat_pg_logged_t   logged[NGX_HTTP_CHAT_PG_LOGGED];
} ngx_http_chat_pg_pool_t;


static void ngx_http_chat_pg_connect(ngx_http_chat_pg_conn_t *pc);
static ngx_int_t ngx_http_chat_pg_wrap(ngx_http_chat_pg_conn_t *pc);
static ngx_int_t ngx_http_chat_pg_want_write(ngx_http_chat_pg_conn_t *pc,
    ngx_uint_t on);
static void ngx_http_chat_pg_event(ngx_event_t *ev);
static void ngx_http_chat_pg_poll(ngx_http_chat_pg_conn_t *pc);
static void ngx_http_chat_pg_send_setup(ngx_http_chat_pg_conn_t *pc);
static ngx_int_t ngx_http_chat_pg_flush(ngx_http_chat_pg_conn_t *pc);
static void ngx_http_chat_pg_read(ngx_http_chat_pg_conn_t *pc);
static void ngx_http_chat_pg_done(ngx_http_chat_pg_conn_t *pc);
static ngx_int_t ngx_http_chat_pg_setup_done(ngx_http_chat_pg_conn_t *pc,
    PGresult *res);
static void ngx_http_chat_pg_next(ngx_http_chat_pg_conn_t *pc);
static ngx_int_t ngx_http_chat_pg_relisten(ngx_http_chat_pg_conn_t *pc);
static ngx_http_chat_pg_query_t *ngx_http_chat_pg_take(void);
static void ngx_http_chat_pg_released(ngx_http_chat_pg_query_t *q);
static void ngx_http_chat_pg_notice(void *data, const PGresult *res);
static void ngx_http_chat_pg_fail(ngx_http_chat_pg_conn_t *pc,
    const char *what, const char *detail);
static void ngx_http_chat_pg_log_failure(const char *what,
    const char *detail);
static void ngx_http_chat_pg_log_ready(void);
static void ngx_http_chat_pg_close(ngx_http_chat_pg_conn_t *pc);
static void ngx_http_chat_pg_retry(ngx_event_t *ev);
static void ngx_http_chat_pg_expire(ngx_event_t *ev);
static void ngx_http_chat_pg_kick(ngx_event_t *ev);
static void ngx_http_chat_pg_arm_expire(void);
static ngx_uint_t ngx_http_chat_pg_alive(void);
static void ngx_http_chat_pg_notified(PGnotify *n);
static void ngx_http_chat_pg_fail_queue(void);


/* per worker process */
static ngx_http_chat_pg_pool_t  ngx_http_chat_pg_pool;


/* the migrations the module knows by version, for the error log */
char *
ngx_http_chat_pg_conf(ngx_conf_t *cf, ngx_http_chat_pg_conf_t *pcf,
    ngx_str_t *value, ngx_uint_t n)
{
    char               *errmsg;
    u_char              err[NGX_HTTP_CHAT_PG_ERR_MAX];
    ngx_int_t           num;
    ngx_str_t           s;
    ngx_uint_t          i;
    ngx_msec_t          ms, *slot;
    PQconninfoOption   *opts, *o;
    const char         *host, *hostaddr;

    pcf->conninfo = value[1];
    pcf->size = 4;
    pcf->connect_timeout = 5000;
    pcf->query_timeout = 10000;
    pcf->queue_timeout = 2000;
    pcf->queue_max = 10000;

    for (i = 2; i < n; i++) {

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            num = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (num < 1 || num > 64) {
                goto invalid;
            }

            pcf->size = num;
            continue;
        }

        slot = NULL;

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            slot = &pcf->connect_timeout;
            s.data = value[i].data + 16;

        } else if (ngx_strncmp(value[i].data, "query_timeout=", 14) == 0) {
            slot = &pcf->query_timeout;
            s.data = value[i].data + 14;

        } else if (ngx_strncmp(value[i].data, "queue_timeout=", 14) == 0) {
            slot = &pcf->queue_timeout;
            s.data = value[i].data + 14;
        }

        if (slot == NULL) {
            goto invalid;
        }

        s.len = value[i].data + value[i].len - s.data;

        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            goto invalid;
        }

        *slot = ms;
    }

    /*
     * libpq resolves a host name with a blocking getaddrinfo() inside
     * PQconnectPoll: a worker must never do that, so only socket
     * directories and numeric addresses are accepted.
     */

    opts = PQconninfoParse((char *) pcf->conninfo.data, &errmsg);
    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid chat_postgres connection string: %s",
                           ngx_http_chat_pg_fold(err, sizeof(err),
                                                 errmsg ? errmsg
                                                        : "out of memory"));
        if (errmsg) {
            PQfreemem(errmsg);
        }
        return NGX_CONF_ERROR;
    }

    host = NULL;
    hostaddr = NULL;

    for (o = opts; o->keyword; o++) {
        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = o->val;

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr = o->val;
        }
    }

    /*
     * One server: libpq moving to the next of a list opens a new socket,
     * which may reuse the descriptor number under nginx's feet.
     */

    if ((host != NULL && ngx_strchr(host, ',') != NULL)
        || (hostaddr != NULL && ngx_strchr(hostaddr, ',') != NULL))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_postgres takes one host, not a list: put "
                           "a failover proxy or a virtual IP in front");
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    if (hostaddr == NULL && host != NULL && host[0] != '\0'
        && host[0] != '/' && host[0] != '@'
        && ngx_inet_addr((u_char *) host, ngx_strlen(host)) == INADDR_NONE
        && ngx_strchr(host, ':') == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_postgres: host \"%s\" would be resolved "
                           "by a blocking lookup in a worker; write "
                           "hostaddr=IP (keeping host= for TLS), an IP "
                           "address, or a socket directory such as "
                           "host=/run/postgresql", host);
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    if (host == NULL && hostaddr == NULL) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "chat_postgres has no host: libpq's default "
                           "socket directory (or $PGHOST) is used");
    }

    PQconninfoFree(opts);

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid chat_postgres parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_http_chat_pg_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_pg_conf_t *pcf, ngx_http_chat_pg_stmt_t *stmts,
    ngx_uint_t n)
{
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    /* a table indexed by an enum: a statement left out is a hole */

    for (i = 0; i < n; i++) {
        if (stmts[i].name == NULL || stmts[i].sql == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "chat: PostgreSQL statement %ui is not defined",
                          i);
            return NGX_ERROR;
        }
    }

    pool->stmts = stmts;
    pool->nstmts = n;
    pool->conf = pcf;
    pool->log = cycle->log;

    ngx_queue_init(&pool->queue);

    pool->expire.handler = ngx_http_chat_pg_expire;
    pool->expire.log = cycle->log;
    pool->expire.data = pool;
    pool->expire.cancelable = 1;

    pool->kick.handler = ngx_http_chat_pg_kick;
    pool->kick.log = cycle->log;
    pool->kick.data = pool;

    pool->conns = ngx_pcalloc(cycle->pool,
                              pcf->size * sizeof(ngx_http_chat_pg_conn_t));
    if (pool->conns == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < pcf->size; i++) {
        pool->conns[i].log = *cycle->log;
        pool->conns[i].retry.handler = ngx_http_chat_pg_retry;
        pool->conns[i].retry.log = cycle->log;
        pool->conns[i].retry.data = &pool->conns[i];
        pool->conns[i].retry.cancelable = 1;
        pool->conns[i].backoff = NGX_HTTP_CHAT_PG_BACKOFF_MIN;

        ngx_http_chat_pg_connect(&pool->conns[i]);
    }

    return NGX_OK;
}


/*
 * The pool's clients register what they listen to; the pool never names
 * them (as nginx's connect code calls pc->get, never a balancer).
 */

ngx_int_t
ngx_http_chat_pg_listen(ngx_http_chat_pg_listener_t *l)
{
    size_t                    len;
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    len = ngx_strlen(l->channel);

    /* after init_process, connections are made: too late to LISTEN */

    if (pool->conf != NULL || pool->nlisteners == NGX_HTTP_CHAT_PG_LISTENERS
        || len == 0 || len > NGX_HTTP_CHAT_PG_CHANNEL_MAX)
    {
        goto failed;
    }

    /* written into the setup query as it is */

    for (i = 0; i < len; i++) {
        if ((l->channel[i] < 'a' || l->channel[i] > 'z')
            && l->channel[i] != '_')
        {
            goto failed;
        }
    }

    pool->listeners[pool->nlisteners++] = l;

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                  "chat: cannot listen to PostgreSQL channel \"%s\"",
                  l->channel);
    return NGX_ERROR;
}


/*
 * The first connection, when up, is told at its next free moment (a
 * connection not set up yet listens as the flags say then).
 */

void
ngx_http_chat_pg_listener_set(ngx_http_chat_pg_listener_t *l, ngx_uint_t on)
{
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    if (l->off == !on) {
        return;
    }

    l->off = !on;

    for (i = 0; i < pool->nlisteners; i++) {
        if (pool->listeners[i] == l) {
            if (on) {
                pool->turned_on |= (ngx_uint_t) 1 << i;
            } else {
                pool->turned_on &= ~((ngx_uint_t) 1 << i);
            }
        }
    }

    pool->relisten = 1;

    if (pool->conf != NULL && !pool->kick.posted) {
        ngx_post_event(&pool->kick, &ngx_posted_events);
    }
}


void
ngx_http_chat_pg_exit_process(void)
{
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    if (pool->conf == NULL) {
        return;
    }

    for (i = 0; i < pool->conf->size; i++) {
        ngx_http_chat_pg_close(&pool->conns[i]);
    }

    ngx_http_chat_pg_fail_queue();
}


void
ngx_http_chat_pg_query_init(ngx_http_chat_pg_query_t *q, ngx_uint_t stmt,
    ngx_http_chat_pg_handler_pt handler, void *data)
{
    ngx_memzero(q, sizeof(ngx_http_chat_pg_query_t));

    q->stmt = stmt;
    q->handler = handler;
    q->data = data;
}


void
ngx_http_chat_pg_query_param(ngx_http_chat_pg_query_t *q, const char *value,
    size_t len)
{
    if (q->nparams == NGX_HTTP_CHAT_PG_MAX_PARAMS) {
        /* a bug: PostgreSQL refuses the query for its parameter count */
        return;
    }

    /* libpq reads a text parameter up to its NUL: the length is for us */
    q->values[q->nparams] = value;
    q->lengths[q->nparams] = (int) len;
    q->nparams++;
}


ngx_int_t
ngx_http_chat_pg_query(ngx_http_chat_pg_query_t *q)
{
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    if (pool->conf == NULL || !ngx_http_chat_pg_alive()
        || pool->queued >= pool->conf->queue_max)
    {
        return NGX_DECLINED;
    }

    q->queued = ngx_current_msec;

    ngx_queue_insert_tail(&pool->queue, &q->queue);
    pool->queued++;

    /*
     * Sent from a posted event, never from here: a handler called back
     * from inside its caller's call is how use-after-free is made.
     */

    if (!pool->kick.posted) {
        ngx_post_event(&pool->kick, &ngx_posted_events);
    }

    ngx_http_chat_pg_arm_expire();

    return NGX_OK;
}


json_t *
ngx_http_chat_pg_json(ngx_int_t rc, PGresult *res)
{
    json_t        *json;
    json_error_t   err;

    if (rc != NGX_OK || res == NULL || PQntuples(res) != 1
        || PQgetisnull(res, 0, 0))
    {
        return NULL;
    }

    json = json_loadb(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0), 0,
                      &err);

    if (json == NULL) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "chat: PostgreSQL returned invalid JSON: %s",
                      err.text);
    }

    return json;
}


static void
ngx_http_chat_pg_kick(ngx_event_t *ev)
{
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = ev->data;

    for (i = 0; i < pool->conf->size
                && (!ngx_queue_empty(&pool->queue) || pool->pinned
                    || pool->relisten);
         i++)
    {
        if (pool->conns[i].state == ngx_http_chat_pg_ready) {
            ngx_http_chat_pg_next(&pool->conns[i]);
        }
    }
}


/*
 * A query for the connection that LISTENs, to prove that it still hears:
 * a half-open connection then times out and is made again.  One at a
 * time; NGX_DECLINED when that connection is not up, or one waits.
 */

ngx_int_t
ngx_http_chat_pg_listener_query(ngx_http_chat_pg_query_t *q)
{
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    if (pool->conf == NULL || pool->pinned != NULL
        || pool->conns[0].state < ngx_http_chat_pg_ready)
    {
        return NGX_DECLINED;
    }

    pool->pinned = q;

    if (!pool->kick.posted) {
        ngx_post_event(&pool->kick, &ngx_posted_events);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_pg_cancel(ngx_http_chat_pg_query_t *q)
{
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    for (i = 0; i < pool->conf->size; i++) {
        if (pool->conns[i].query == q) {
            return NGX_DECLINED;
        }
    }

    ngx_queue_remove(&q->queue);
    pool->queued--;

    return NGX_OK;
}


ngx_msec_t
ngx_http_chat_pg_queue_timeout(void)
{
    return ngx_http_chat_pg_pool.conf ? ngx_http_chat_pg_pool.conf->queue_timeout
                                      : 0;
}


static ngx_uint_t
ngx_http_chat_pg_alive(void)
{
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    for (i = 0; i < pool->conf->size; i++) {
        if (pool->conns[i].state != ngx_http_chat_pg_idle_state) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_chat_pg_connect(ngx_http_chat_pg_conn_t *pc)
{
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    pc->conn = PQconnectStart((char *) pool->conf->conninfo.data);

    if (pc->conn == NULL) {
        ngx_log_error(NGX_LOG_ALERT, pool->log, 0,
                      "chat: PQconnectStart() failed: out of memory");
        ngx_http_chat_pg_fail(pc, NULL, NULL);
        return;
    }

    /* libpq would print notices on stderr, which is the error log */
    (void) PQsetNoticeReceiver(pc->conn, ngx_http_chat_pg_notice, pc);

    /* a socket that is not there fails right here, as later ones do */

    if (PQstatus(pc->conn) == CONNECTION_BAD
        || PQsetnonblocking(pc->conn, 1) == -1)
    {
        ngx_http_chat_pg_fail(pc, "cannot connect to PostgreSQL",
                              PQerrorMessage(pc->conn));
        return;
    }

    pc->state = ngx_http_chat_pg_connecting;

    if (ngx_http_chat_pg_wrap(pc) != NGX_OK) {
        ngx_http_chat_pg_fail(pc, "cannot watch the PostgreSQL socket", NULL);
        return;
    }

    /* as if PQconnectPoll() had said PGRES_POLLING_WRITING */
}


/* an nginx connection around libpq's socket, which libpq may change */

static ngx_int_t
ngx_http_chat_pg_wrap(ngx_http_chat_pg_conn_t *pc)
{
    int                       fd;
    ngx_event_t              *rev, *wev;
    ngx_connection_t         *c;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    fd = PQsocket(pc->conn);

    if (pc->c != NULL) {
        if (pc->c->fd == fd) {
            return NGX_OK;
        }

        pc->c->shared = 1;
        ngx_close_connection(pc->c);
        pc->c = NULL;
    }

    if (fd == -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pc;
    c->shared = 1;
    c->log = &pc->log;
    c->log->action = "talking to PostgreSQL";

    rev = c->read;
    wev = c->write;

    rev->handler = ngx_http_chat_pg_event;
    wev->handler = ngx_http_chat_pg_event;
    rev->log = c->log;
    wev->log = c->log;
    rev->cancelable = 1;
    wev->cancelable = 1;

    pc->c = c;

    if (pc->state == ngx_http_chat_pg_connecting) {
        /* each socket of an attempt gets the connect deadline */
        ngx_add_timer(rev, pool->conf->connect_timeout);
    }

    /*
     * Level-triggered: PQconsumeInput() reads what fits its buffer, not
     * up to EAGAIN, so an edge could be consumed with data still waiting.
     * Writing is watched only while libpq has something to send.
     */

    if (ngx_add_event(rev, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_chat_pg_want_write(pc, 1);
}


static ngx_int_t
ngx_http_chat_pg_want_write(ngx_http_chat_pg_conn_t *pc, ngx_uint_t on)
{
    ngx_event_t  *wev;

    wev = pc->c->write;

    if (on && !wev->active) {
        return ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }

    if (!on && wev->active) {
        return ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }

    return NGX_OK;
}


static void
ngx_http_chat_pg_event(ngx_event_t *ev)
{
    ngx_connection_t         *c;
    ngx_http_chat_pg_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    if (ev->timedout) {
        ev->timedout = 0;

        if (pc->state == ngx_http_chat_pg_connecting) {
            ngx_http_chat_pg_fail(pc, "connecting to PostgreSQL timed out",
                                  NULL);

        } else {
            ngx_http_chat_pg_fail(pc, "a PostgreSQL query timed out", NULL);
        }

        return;
    }

    switch (pc->state) {

    case ngx_http_chat_pg_connecting:
        ngx_http_chat_pg_poll(pc);
        return;

    case ngx_http_chat_pg_idle_state:
        return;

    default:
        break;
    }

    if (pc->flushing && ngx_http_chat_pg_flush(pc) != NGX_OK) {
        return;
    }

    if (ev->write) {
        return;
    }

    ngx_http_chat_pg_read(pc);
}


static void
ngx_http_chat_pg_poll(ngx_http_chat_pg_conn_t *pc)
{
    PostgresPollingStatusType  rc;

    rc = PQconnectPoll(pc->conn);

    if (rc == PGRES_POLLING_FAILED) {
        ngx_http_chat_pg_fail(pc, "cannot connect to PostgreSQL",
                              PQerrorMessage(pc->conn));
        return;
    }

    if (ngx_http_chat_pg_wrap(pc) != NGX_OK) {
        ngx_http_chat_pg_fail(pc, "cannot watch the PostgreSQL socket", NULL);
        return;
    }

    if (rc != PGRES_POLLING_OK) {
        if (ngx_http_chat_pg_want_write(pc, rc == PGRES_POLLING_WRITING)
            != NGX_OK)
        {
            ngx_http_chat_pg_fail(pc, "cannot watch the PostgreSQL socket",
                                  NULL);
        }

        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pc->c->log, 0,
                   "chat: PostgreSQL connected");

    ngx_http_chat_pg_send_setup(pc);
}


static void
ngx_http_chat_pg_send_setup(ngx_http_chat_pg_conn_t *pc)
{
    u_char                    sql[192 + NGX_HTTP_CHAT_PG_SETTINGS_MAX
                                  + NGX_HTTP_CHAT_PG_LISTENERS
                                    * (sizeof("LISTEN ; ") - 1
                                       + NGX_HTTP_CHAT_PG_CHANNEL_MAX)];
    u_char                   *p;
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    /*
     * The server gives up on a statement a little before we do, so that
     * a timed out query is not left running; the schema version comes in
     * the same round trip.
     */

    p = ngx_sprintf(sql, "SET statement_timeout = %M; %V",
                    pool->conf->query_timeout > 1000
                    ? pool->conf->query_timeout - 500
                    : pool->conf->query_timeout,
                    &pool->conf->settings);

    /* the first connection also listens, for the pool's listeners */

    for (i = 0; pc == &pool->conns[0] && i < pool->nlisteners; i++) {
        if (!pool->listeners[i]->off) {
            p = ngx_sprintf(p, "LISTEN %s; ", pool->listeners[i]->channel);
        }
    }

    if (pc == &pool->conns[0]) {
        /* a new session listens to what the flags say now, nothing else */
        pool->relisten = 0;
        pool->turned_on = 0;
    }

    p = ngx_sprintf(p, "SELECT chat.schema_version(), chat.api_version()%Z");
    (void) p;

    if (!PQsendQuery(pc->conn, (char *) sql)) {
        ngx_http_chat_pg_fail(pc, "cannot set up the PostgreSQL connection",
                              PQerrorMessage(pc->conn));
        return;
    }

    pc->state = ngx_http_chat_pg_setup;
    pc->flushing = 1;

    if (pc->c->read->timer_set) {
        ngx_del_timer(pc->c->read);
    }

    ngx_add_timer(pc->c->read, pool->conf->query_timeout);

    (void) ngx_http_chat_pg_flush(pc);
}


static ngx_int_t
ngx_http_chat_pg_flush(ngx_http_chat_pg_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->conn);

    if (rc == -1) {
        ngx_http_chat_pg_fail(pc, "cannot send to PostgreSQL",
                              PQerrorMessage(pc->conn));
        return NGX_ERROR;
    }

    /* 1: the rest goes on the next write (or read) event */
    pc->flushing = (rc == 1);

    if (ngx_http_chat_pg_want_write(pc, pc->flushing) != NGX_OK) {
        ngx_http_chat_pg_fail(pc, "cannot watch the PostgreSQL socket", NULL);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_chat_pg_read(ngx_http_chat_pg_conn_t *pc)
{
    PGresult  *res;
    PGnotify  *n;

    if (!PQconsumeInput(pc->conn)) {
        ngx_http_chat_pg_fail(pc, "lost the PostgreSQL connection",
                              pc->fatal[0] ? (char *) pc->fatal
                                           : PQerrorMessage(pc->conn));
        return;
    }

    while ((n = PQnotifies(pc->conn)) != NULL) {
        ngx_http_chat_pg_notified(n);
        PQfreemem(n);
    }

    if (pc->state == ngx_http_chat_pg_ready) {

        /*
         * An idle connection hears from the server when it is going away
         * (a FATAL message, then the end of the stream, which the level-
         * triggered event reports next); or notices, which are dropped.
         */

        if (PQstatus(pc->conn) == CONNECTION_BAD) {
            ngx_http_chat_pg_fail(pc, "lost the PostgreSQL connection",
                                  pc->fatal[0] ? (char *) pc->fatal
                                               : PQerrorMessage(pc->conn));
        }

        return;
    }

    while (!PQisBusy(pc->conn)) {

        res = PQgetResult(pc->conn);

        if (res == NULL) {
            ngx_http_chat_pg_done(pc);
            return;
        }

        switch (PQresultStatus(res)) {

        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
            if (pc->result == NULL
                || PQresultStatus(pc->result) == PGRES_COMMAND_OK)
            {
                if (pc->result) {
                    PQclear(pc->result);
                }

                pc->result = res;
                continue;
            }

            PQclear(res);
            continue;

        default:
            /* the first error is kept: it says why the rest failed */
            if (pc->result == NULL
                || PQresultStatus(pc->result) == PGRES_TUPLES_OK
                || PQresultStatus(pc->result) == PGRES_COMMAND_OK)
            {
                if (pc->result) {
                    PQclear(pc->result);
                }

                pc->result = res;
                continue;
            }

            PQclear(res);
        }
    }
}


/* a notification goes to the listener of its channel */

static void
ngx_http_chat_pg_notified(PGnotify *n)
{
    ngx_uint_t                    i;
    ngx_http_chat_pg_pool_t      *pool;
    ngx_http_chat_pg_listener_t  *l;

    pool = &ngx_http_chat_pg_pool;

    for (i = 0; i < pool->nlisteners; i++) {
        l = pool->listeners[i];

        if (ngx_strcmp(n->relname, l->channel) == 0) {
            if (!l->off) {
                /* (one in flight as it was unlistened to is dropped) */
                l->notify(l, (u_char *) n->extra, ngx_strlen(n->extra));
            }

            return;
        }
    }
}


/* PQgetResult() returned NULL: the command, its commit included, is over */

static void
ngx_http_chat_pg_done(ngx_http_chat_pg_conn_t *pc)
{
    u_char                     what[128], err[NGX_HTTP_CHAT_PG_ERR_MAX];
    PGresult                  *res;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ExecStatusType             st;
    ngx_http_chat_pg_pool_t   *pool;
    ngx_http_chat_pg_query_t  *q;

    pool = &ngx_http_chat_pg_pool;

    res = pc->result;
    pc->result = NULL;

    if (pc->c->read->timer_set) {
        ngx_del_timer(pc->c->read);
    }

    st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    switch (pc->state) {

    case ngx_http_chat_pg_setup:
        rc = ngx_http_chat_pg_setup_done(pc, res);
        if (res) {
            PQclear(res);
        }

        if (rc != NGX_OK) {
            return;
        }

        pc->prepared = 0;
        pc->state = ngx_http_chat_pg_preparing;

        /* fall through */

    case ngx_http_chat_pg_preparing:

        if (pc->prepared && st != PGRES_COMMAND_OK) {
            (void) ngx_snprintf(what, sizeof(what) - 1,
                                "cannot prepare \"%s\"%Z",
                                pool->stmts[pc->prepared - 1].name);
            ngx_http_chat_pg_fail(pc, (char *) what,
                                  res ? PQresultErrorMessage(res)
                                      : "no result");
            if (res) {
                PQclear(res);
            }

            return;
        }

        if (pc->prepared && res) {
            PQclear(res);
        }

        if (pc->prepared < pool->nstmts) {

            if (!PQsendPrepare(pc->conn,
                               pool->stmts[pc->prepared].name,
                               pool->stmts[pc->prepared].sql,
                               pool->stmts[pc->prepared].nparams, NULL))
            {
                ngx_http_chat_pg_fail(pc, "cannot prepare a statement",
                                      PQerrorMessage(pc->conn));
                return;
            }

            pc->prepared++;
            ngx_add_timer(pc->c->read, pool->conf->query_timeout);
            (void) ngx_http_chat_pg_flush(pc);
            return;
        }

        ngx_log_error(NGX_LOG_INFO, pc->c->log, 0,
                      "chat: PostgreSQL connection ready");

        ngx_http_chat_pg_log_ready();

        pc->backoff = NGX_HTTP_CHAT_PG_BACKOFF_MIN;
        pc->state = ngx_http_chat_pg_ready;

        ngx_http_chat_count(pg_connects, 1);
        ngx_http_chat_zone_gauge(pg_ready, 1);

        if (pc == &pool->conns[0]) {
            /* listening (again): each looks for what it missed meanwhile */
            for (i = 0; i < pool->nlisteners; i++) {
                if (!pool->listeners[i]->off) {
                    pool->listeners[i]->ready(pool->listeners[i]);
                }
            }
        }

        ngx_http_chat_pg_next(pc);
        return;

    default: /* ngx_http_chat_pg_busy */
        break;
    }

    if (pc->query == NULL) {
        /* ngx_http_chat_pg_relisten()'s LISTENs and UNLISTENs */
        pc->state = ngx_http_chat_pg_ready;

        if (st != PGRES_COMMAND_OK) {
            ngx_log_error(NGX_LOG_ERR, pc->c->log, 0,
                          "chat: PostgreSQL LISTEN failed: %s",
                          ngx_http_chat_pg_fold(err, sizeof(err),
                                            res ? PQresultErrorMessage(res)
                                                : "no result"));
        }

        if (res) {
            PQclear(res);
        }

        for (i = 0; st == PGRES_COMMAND_OK && i < pool->nlisteners; i++) {
            if ((pool->turned_on & ((ngx_uint_t) 1 << i))
                && !pool->listeners[i]->off)
            {
                pool->turned_on &= ~((ngx_uint_t) 1 << i);
                pool->listeners[i]->ready(pool->listeners[i]);
            }
        }

        ngx_http_chat_pg_next(pc);
        return;
    }

    q = pc->query;
    pc->query = NULL;
    pc->state = ngx_http_chat_pg_ready;
    pc->c->read->cancelable = 1;

    ngx_http_chat_latency(pg_time[ngx_min(q->stmt,
                                          NGX_HTTP_CHAT_STMT_SLOTS - 1)],
                          ngx_http_chat_usec() - pc->sent);

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        rc = NGX_OK;

    } else {
        ngx_log_error(NGX_LOG_ERR, pc->c->log, 0,
                      "chat: PostgreSQL query \"%s\" failed: %s",
                      pool->stmts[q->stmt].name,
                      ngx_http_chat_pg_fold(err, sizeof(err),
                                            res ? PQresultErrorMessage(res)
                                                : "no result"));
        ngx_http_chat_count(pg_errors, 1);
        rc = NGX_ERROR;
    }

    ngx_http_chat_pg_released(q);

    q->handler(q, rc, res);

    if (res) {
        PQclear(res);
    }

    ngx_http_chat_pg_next(pc);
}


static ngx_int_t
ngx_http_chat_pg_setup_done(ngx_http_chat_pg_conn_t *pc, PGresult *res)
{
    u_char      what[256];
    char       *sqlstate;
    ngx_int_t   schema, api;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {

        sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

        if (sqlstate && (ngx_strcmp(sqlstate, "42883") == 0
                         || ngx_strcmp(sqlstate, "3F000") == 0))
        {
            /* no schema chat, or one older than chat.api_version() */
            ngx_http_chat_pg_fail(pc, "the database has no chat API, or one "
                                  "made by an earlier release: run "
                                  "sql/migrate.sh (docs/upgrading.md)",
                                  NULL);

        } else if (sqlstate && ngx_strcmp(sqlstate, "42501") == 0) {
            (void) ngx_snprintf(what, sizeof(what) - 1,
                                "PostgreSQL role \"%s\" may not call the "
                                "chat API: it must be a member of "
                                "chat_runtime, in a database migrated by "
                                "sql/migrate.sh (sql/roles.sql first; "
                                "docs/upgrading.md)%Z", PQuser(pc->conn));
            ngx_http_chat_pg_fail(pc, (char *) what, NULL);

        } else {
            ngx_http_chat_pg_fail(pc, "PostgreSQL setup failed",
                                  res ? PQresultErrorMessage(res)
                                      : "no result");
        }

        return NGX_ERROR;
    }

    schema = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));
    api = ngx_atoi((u_char *) PQgetvalue(res, 0, 1),
                   PQgetlength(res, 0, 1));

    if (schema < NGX_HTTP_CHAT_SCHEMA_VERSION
        || api < NGX_HTTP_CHAT_API_VERSION)
    {
        (void) ngx_snprintf(what, sizeof(what) - 1,
                            "the database's chat schema is at version %i "
                            "and its API at version %i, the module needs %d "
                            "and %d: run sql/migrate.sh%Z",
                            schema, api, NGX_HTTP_CHAT_SCHEMA_VERSION,
                            NGX_HTTP_CHAT_API_VERSION);
        ngx_http_chat_pg_fail(pc, (char *) what, NULL);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a ready connection takes the next query */

static void
ngx_http_chat_pg_next(ngx_http_chat_pg_conn_t *pc)
{
    ngx_http_chat_pg_pool_t   *pool;
    ngx_http_chat_pg_query_t  *q;

    pool = &ngx_http_chat_pg_pool;

    while (pc->state == ngx_http_chat_pg_ready) {

        if (pc == &pool->conns[0] && pool->relisten) {
            (void) ngx_http_chat_pg_relisten(pc);
            return;
        }

        if (pc == &pool->conns[0] && pool->pinned != NULL) {
            q = pool->pinned;
            pool->pinned = NULL;

        } else {
            q = ngx_http_chat_pg_take();
            if (q == NULL) {
                break;
            }
        }

        /* taken before the builder runs: whatever it calls, not this one */
        pc->state = ngx_http_chat_pg_busy;
        pc->query = q;

        if (q->build && q->build(q) != NGX_OK) {
            /* nothing left to send: the builder finished the query */
            pc->state = ngx_http_chat_pg_ready;
            pc->query = NULL;
            continue;
        }

        if (!PQsendQueryPrepared(pc->conn, pool->stmts[q->stmt].name,
                                 q->nparams, q->values, q->lengths, NULL, 0))
        {
            ngx_http_chat_pg_fail(pc, "cannot send a query",
                                  PQerrorMessage(pc->conn));
            return;
        }

        ngx_http_chat_count(pg_queries, 1);
        pc->sent = ngx_http_chat_usec();

        /*
         * A query in flight holds an exiting worker (up to the query
         * timeout): a send that commits must still be delivered.
         */
        pc->c->read->cancelable = 0;

        ngx_add_timer(pc->c->read, pool->conf->query_timeout);

        (void) ngx_http_chat_pg_flush(pc);
        return;
    }
}


/* the first connection listens as the listeners' flags say now */

static ngx_int_t
ngx_http_chat_pg_relisten(ngx_http_chat_pg_conn_t *pc)
{
    u_char                    sql[NGX_HTTP_CHAT_PG_LISTENERS
                                  * (sizeof("UNLISTEN ; ") - 1
                                     + NGX_HTTP_CHAT_PG_CHANNEL_MAX) + 1];
    u_char                   *p;
    ngx_uint_t                i;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    pool->relisten = 0;

    p = sql;

    for (i = 0; i < pool->nlisteners; i++) {
        p = ngx_sprintf(p, "%sLISTEN %s; ",
                        pool->listeners[i]->off ? "UN" : "",
                        pool->listeners[i]->channel);
    }

    *p = '\0';

    if (!PQsendQuery(pc->conn, (char *) sql)) {
        ngx_http_chat_pg_fail(pc, "cannot send LISTEN",
                              PQerrorMessage(pc->conn));
        return NGX_ERROR;
    }

    pc->state = ngx_http_chat_pg_busy;
    pc->query = NULL;
    pc->sent = ngx_http_chat_usec();

    ngx_add_timer(pc->c->read, pool->conf->query_timeout);

    (void) ngx_http_chat_pg_flush(pc);

    return NGX_OK;
}


/*
 * The oldest query waiting, but a heavy one (a message search) only when
 * no other runs in this worker: however many searches come, the other
 * connections stay for everything else.  Heavy queries skipped keep
 * their place.
 */

static ngx_http_chat_pg_query_t *
ngx_http_chat_pg_take(void)
{
    ngx_uint_t                 i, busy;
    ngx_queue_t               *qn;
    ngx_http_chat_pg_conn_t   *pc;
    ngx_http_chat_pg_pool_t   *pool;
    ngx_http_chat_pg_query_t  *q;

    pool = &ngx_http_chat_pg_pool;

    busy = 0;

    for (i = 0; i < pool->conf->size; i++) {
        pc = &pool->conns[i];

        if (pc->state == ngx_http_chat_pg_busy && pc->query != NULL
            && pc->query->heavy)
        {
            busy = 1;
            break;
        }
    }

    for (qn = ngx_queue_head(&pool->queue);
         qn != ngx_queue_sentinel(&pool->queue);
         qn = ngx_queue_next(qn))
    {
        q = ngx_queue_data(qn, ngx_http_chat_pg_query_t, queue);

        if (busy && q->heavy) {
            continue;
        }

        ngx_queue_remove(qn);
        pool->queued--;

        return q;
    }

    return NULL;
}


/* a heavy query's connection is free: another connection may take one */

static void
ngx_http_chat_pg_released(ngx_http_chat_pg_query_t *q)
{
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    if (q->heavy && !ngx_queue_empty(&pool->queue) && !pool->kick.posted) {
        ngx_post_event(&pool->kick, &ngx_posted_events);
    }
}


/*
 * The connection is unusable, whatever the reason (what, and libpq's or
 * PostgreSQL's detail, or NULL when it is logged already): the query in
 * flight, if any, is answered "unavailable" (it may still commit: clients
 * retry idempotently), and the connection is made again after a delay
 * that grows with each failure up to the maximum, with jitter, until a
 * connection is set up.
 */

static void
ngx_http_chat_pg_fail(ngx_http_chat_pg_conn_t *pc, const char *what,
    const char *detail)
{
    ngx_http_chat_pg_pool_t   *pool;
    ngx_http_chat_pg_query_t  *q;

    pool = &ngx_http_chat_pg_pool;

    if (what != NULL) {
        ngx_http_chat_pg_log_failure(what, detail);
    }

    q = pc->query;
    pc->query = NULL;

    ngx_http_chat_pg_close(pc);

    ngx_add_timer(&pc->retry, pc->backoff + ngx_random() % pc->backoff);

    pc->backoff = ngx_min(pc->backoff * 2, NGX_HTTP_CHAT_PG_BACKOFF_MAX);

    if (q != NULL) {
        ngx_http_chat_pg_released(q);
        ngx_http_chat_count(pg_unavailable, 1);
        q->handler(q, NGX_DECLINED, NULL);
    }

    if (pc == &pool->conns[0] && pool->pinned != NULL) {
        /* it was meant for this connection only */
        q = pool->pinned;
        pool->pinned = NULL;
        q->handler(q, NGX_DECLINED, NULL);
    }

    if (!ngx_http_chat_pg_alive()) {
        /* nobody left to run what waits: fail it now, not in seconds */
        ngx_http_chat_pg_fail_queue();
    }
}


/*
 * A server down fails every connection of every worker, again at each
 * retry: a failure is logged the first time, and the same failure again
 * only after an interval that doubles while it lasts (1 s up to a
 * minute), with the count of attempts since the pool last worked.  A few
 * different failures are told apart, as connections may fail in turn for
 * different reasons.  The first connection ready after failures says so
 * at [notice].
 */

static void
ngx_http_chat_pg_log_failure(const char *what, const char *detail)
{
    u_char                     line[NGX_HTTP_CHAT_PG_ERR_MAX], *p, *last;
    uint32_t                   crc;
    ngx_uint_t                 i;
    ngx_msec_t                 since;
    ngx_http_chat_pg_pool_t   *pool;
    ngx_http_chat_pg_logged_t  *lg;

    pool = &ngx_http_chat_pg_pool;

    last = line + sizeof(line);

    p = ngx_snprintf(line, sizeof(line) - 1, "%s", what);

    if (detail != NULL && last - p > 8) {
        (void) ngx_http_chat_pg_fold(p + 2, last - p - 2, detail);

        if (p[2] != '\0') {
            *p++ = ':';
            *p++ = ' ';
            p += ngx_strlen(p);
        }
    }

    *p = '\0';

    if (pool->failures++ == 0) {
        pool->failing_since = ngx_current_msec;
    }

    crc = ngx_crc32_short(line, p - line) | 1;

    lg = NULL;

    for (i = 0; i < NGX_HTTP_CHAT_PG_LOGGED; i++) {
        if (pool->logged[i].crc == crc) {
            lg = &pool->logged[i];
            break;
        }
    }

    if (lg == NULL) {

        /* a new one: it takes a free slot, or the one logged longest ago */

        lg = &pool->logged[0];

        for (i = 1; i < NGX_HTTP_CHAT_PG_LOGGED && lg->crc != 0; i++) {
            if (pool->logged[i].crc == 0
                || (ngx_msec_int_t) (pool->logged[i].last - lg->last) < 0)
            {
                lg = &pool->logged[i];
            }
        }

        ngx_log_error(NGX_LOG_ERR, pool->log, 0, "chat: %s", line);

        lg->crc = crc;
        lg->interval = NGX_HTTP_CHAT_PG_RELOG_MIN;

    } else if (ngx_current_msec - lg->last >= lg->interval) {
        since = ngx_current_msec - pool->failing_since;

        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "chat: %s (%ui more times since it was last "
                      "logged; %ui failed attempts in %M s)",
                      line, lg->unlogged + 1, pool->failures, since / 1000);

        lg->interval = ngx_min(lg->interval * 2, NGX_HTTP_CHAT_PG_RELOG_MAX);

    } else {
        lg->unlogged++;
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "chat: %s (again, not logged)", line);
        return;
    }

    lg->unlogged = 0;
    lg->last = ngx_current_msec;
}


static void
ngx_http_chat_pg_log_ready(void)
{
    ngx_msec_t                since;
    ngx_http_chat_pg_pool_t  *pool;

    pool = &ngx_http_chat_pg_pool;

    if (pool->failures == 0) {
        return;
    }

    since = ngx_current_msec - pool->failing_since;

    ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                  "chat: PostgreSQL connection ready again after %ui "
                  "failed attempts in %M.%M s",
                  pool->failures, since / 1000, since % 1000 / 100);

    pool->failures = 0;
    ngx_memzero(pool->logged, sizeof(pool->logged));
}


/*
 * What the server says outside of a query's result: NOTICE and WARNING
 * messages (RAISE in a function, for one), and the FATAL message of a
 * server that closes an idle connection, which libpq hands over as a
 * notice too: that one is kept to say why the connection was lost.
 */

static void
ngx_http_chat_pg_notice(void *data, const PGresult *res)
{
    ngx_http_chat_pg_conn_t *pc = data;

    u_char       err[NGX_HTTP_CHAT_PG_ERR_MAX];
    ngx_uint_t   level;
    const char  *severity;

    severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

    if (severity == NULL) {
        severity = "";
    }

    if (ngx_strcmp(severity, "FATAL") == 0
        || ngx_strcmp(severity, "PANIC") == 0)
    {
        (void) ngx_http_chat_pg_fold(pc->fatal, sizeof(pc->fatal),
                                     PQresultErrorMessage(res));
        level = NGX_LOG_INFO;

    } else if (ngx_strcmp(severity, "WARNING") == 0
               || ngx_strcmp(severity, "ERROR") == 0)
    {
        level = NGX_LOG_WARN;

    } else {
        level = NGX_LOG_NOTICE;
    }

    ngx_log_error(level, &pc->log, 0, "chat: PostgreSQL said: %s",
                  ngx_http_chat_pg_fold(err, sizeof(err),
                                        PQresultErrorMessage(res)));
}


/*
 * libpq's and PostgreSQL's messages span lines ("DETAIL:", "HINT:",
 * "CONTEXT:", a statement with a caret under it, a final newline), and an
 * error log entry is one line: each line break, with the indentation
 * after it, becomes " / ", a line of nothing but the caret is dropped
 * (what it pointed at is no longer under it), other control characters
 * become spaces.  Cut with "..." to fit; always NUL-terminated.
 */

u_char *
ngx_http_chat_pg_fold(u_char *buf, size_t size, const char *msg)
{
    u_char        *p, *end;
    ngx_uint_t     cut;
    const u_char  *s, *eol, *t;

    p = buf;
    end = buf + size - sizeof("...");   /* room for "..." and the NUL */
    cut = 0;

    s = (const u_char *) (msg != NULL ? msg : "");

    while (*s != '\0' && !cut) {

        for (eol = s; *eol != '\0' && *eol != CR && *eol != LF; eol++) {
            /* void */
        }

        /* the line without its indentation and trailing blanks */

        while (s < eol && (*s == ' ' || *s == '\t')) {
            s++;
        }

        t = eol;

        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) {
            t--;
        }

        if (t > s && !(t - s == 1 && *s == '^')) {

            if (p != buf) {
                if (end - p < 3) {
                    cut = 1;
                    break;
                }

                p = ngx_cpymem(p, " / ", 3);
            }

            for ( /* void */ ; s < t; s++) {
                if (p == end) {
                    cut = 1;
                    break;
                }

                *p++ = (*s < 0x20 || *s == 0x7f) ? ' ' : *s;
            }
        }

        for (s = eol; *s == CR || *s == LF; s++) {
            /* void */
        }
    }

    if (cut) {
        p = ngx_cpymem(p, "...", 3);
    }

    *p = '\0';

    return buf;
}


static void
ngx_http_chat_pg_close(ngx_http_chat_pg_conn_t *pc)
{
    if (pc->state >= ngx_http_chat_pg_ready) {
        ngx_http_chat_zone_gauge(pg_ready, -1);
    }

    if (pc->c != NULL) {
        pc->c->shared = 1;
        ngx_close_connection(pc->c);
        pc->c = NULL;
    }

    if (pc->result != NULL) {
        PQclear(pc->result);
        pc->result = NULL;
    }

    if (pc->conn != NULL) {
        PQfinish(pc->conn);
        pc->conn = NULL;
    }

    if (pc->retry.timer_set) {
        ngx_del_timer(&pc->retry);
    }

    pc->state = ngx_http_chat_pg_idle_state;
    pc->flushing = 0;
    pc->fatal[0] = '\0';
}


static void
ngx_http_chat_pg_retry(ngx_event_t *ev)
{
    ngx_http_chat_pg_conn_t  *pc;

    pc = ev->data;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    ngx_http_chat_pg_connect(pc);
}


static void
ngx_http_chat_pg_arm_expire(void)
{
    ngx_msec_t                 age;
    ngx_queue_t               *qn;
    ngx_http_chat_pg_pool_t   *pool;
    ngx_http_chat_pg_query_t  *q;

    pool = &ngx_http_chat_pg_pool;

    if (pool->expire.timer_set || ngx_queue_empty(&pool->queue)) {
        return;
    }

    qn = ngx_queue_head(&pool->queue);
    q = ngx_queue_data(qn, ngx_http_chat_pg_query_t, queue);

    age = ngx_current_msec - q->queued;

    ngx_add_timer(&pool->expire, age < pool->conf->queue_timeout
                                 ? pool->conf->queue_timeout - age : 1);
}


/* what waited too long for a connection is answered "unavailable" */

static void
ngx_http_chat_pg_expire(ngx_event_t *ev)
{
    ngx_queue_t               *qn;
    ngx_http_chat_pg_pool_t   *pool;
    ngx_http_chat_pg_query_t  *q;

    pool = &ngx_http_chat_pg_pool;

    while (!ngx_queue_empty(&pool->queue)) {
        qn = ngx_queue_head(&pool->queue);
        q = ngx_queue_data(qn, ngx_http_chat_pg_query_t, queue);

        if (ngx_current_msec - q->queued < pool->conf->queue_timeout) {
            break;
        }

        ngx_queue_remove(qn);
        pool->queued--;

        ngx_http_chat_count(pg_unavailable, 1);
        q->handler(q, NGX_DECLINED, NULL);
    }

    ngx_http_chat_pg_arm_expire();
}


static void
ngx_http_chat_pg_fail_queue(void)
{
    ngx_queue_t               *qn;
    ngx_http_chat_pg_pool_t   *pool;
    ngx_http_chat_pg_query_t  *q;

    pool = &ngx_http_chat_pg_pool;

    while (!ngx_queue_empty(&pool->queue)) {
        qn = ngx_queue_head(&pool->queue);
        q = ngx_queue_data(qn, ngx_http_chat_pg_query_t, queue);

        ngx_queue_remove(qn);
        pool->queued--;

        ngx_http_chat_count(pg_unavailable, 1);
        q->handler(q, NGX_DECLINED, NULL);
    }

    if (pool->expire.timer_set) {
        ngx_del_timer(&pool->expire);
    }
}
