
/*
 * chatload: the benchmark load generator of ngx_http_chat_module.
 *
 * One program loads three servers the same way: ours ("chat"), Socket.IO 4
 * over its raw WebSocket transport ("sio", bench/sio_server.js) and nchan
 * ("nchan", bench/nchan.conf.in).  epoll, nonblocking sockets, no threads;
 * --procs generator processes (fork) that a parent keeps in step through
 * pipes and whose counters and latency histograms it merges into one JSON
 * object on stdout.  Progress goes to stderr.
 *
 *     cc -O2 -g -Wall -Wextra -Werror -o bench/chatload bench/chatload.c \
 *         -lcrypto -lm
 *
 * Scenarios (see usage()): idle, room, pairs, sends (chat), storm (chat).
 *
 * What must exist before a run:
 *
 *   chat, every scenario: a server with chat_jwt_key hs256 whose key file
 *   is passed as --jwt-key; chat_max_connections_per_user >= 2 for storm
 *   (the server may still hold a dropped connection when its user is
 *   back); rate limits (chat_send_rate) off, or refused sends count as
 *   send_errors; worker_connections and file limits that hold --conns.
 *   Users need not exist: the server upserts them at connect.
 *
 *   chat room: a group conversation whose members are exactly the users
 *   <prefix>0 .. <prefix>N-1 (N = --conns), its id passed as --conv.  Up
 *   to 1000 members one call makes it (the id is in the result):
 *
 *     SELECT chat.api_conversation_create('u0', jsonb_build_object(
 *         'kind', 'group', 'title', 'room', 'members',
 *         (SELECT jsonb_agg('u' || i) FROM generate_series(1, N - 1) i)))
 *         -> 'ok' -> 'conversation' -> 'id';
 *
 *   api_conversation_create refuses more than 1000 members; a room of any
 *   size is inserted directly (chat.members does not refer to chat.users;
 *   tried with 1500), printing the id once:
 *
 *     WITH c AS (INSERT INTO chat.conversations (kind, title, created_by)
 *                VALUES ('group', 'room', 'u0') RETURNING id),
 *          m AS (INSERT INTO chat.members (conversation_id, user_id, role)
 *                SELECT c.id, 'u' || i,
 *                       CASE WHEN i = 0 THEN 'owner' ELSE 'member' END
 *                FROM c, generate_series(0, N - 1) i)
 *     SELECT id FROM c;
 *
 *   --settle S waits before the measured phase for what the connects
 *   caused (before presence by interest, O(N^2) presence events; the
 *   presence events received are reported as presence_frames).
 *
 *   chat pairs, sends, storm: nothing.  Connection 2k creates (or finds:
 *   a direct conversation is unique per pair) its direct conversation with
 *   user 2k+1 before the barrier.  Messages of earlier runs are never
 *   counted (every body carries this run's tag), and storm's sync starts
 *   from the cursor conversation.create returned (0 in a fresh database).
 *   But sync replays every conversation of the user: storm users who are
 *   members of a room with history replay it too (paged, slowly), so give
 *   storm its own --user-prefix, or a fresh database.
 *
 *   sio: node bench/sio_server.js PORT.  Connections join room --room
 *   (room) or "p<k>" (pairs 2k, 2k+1) and wait for the join's ack.
 *
 *   nchan: nginx with bench/nchan.conf.in.  Connections open <path><room>
 *   or <path>p<k> (path default /pubsub/).  nchan delivers a published
 *   frame to the publishing connection too, so every message is expected
 *   on every connection of its room or pair, as with the others.
 *
 * Counting: "expected" is messages sent without an error reply times the
 * connections that were ready when sending started (the room's, or the
 * pair's), so "failed" connections are not also "missing"; a connection
 * lost later makes both "dropped" and "missing".  A message is in flight
 * (--window) from its send until the sender's own copy arrives (sends:
 * until the ok), so a lost own copy holds its slot to the end.
 *
 * CL_DUMP_MISSING=1 in the environment (pairs, sends) lists on stderr
 * each message that went missing: "missing CONN STREAM SEQ how", stream 0
 * the connection's own messages, 1 its partner's; how "skipped" (a later
 * one came first, by more than the tracking window) or "end" (never came).
 */


#define _GNU_SOURCE

#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>


#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT  24
#endif


#define CL_MAX_PROCS        64
#define CL_MAX_SERVER_PIDS  64
#define CL_MAX_PEER_PORTS   8
#define CL_READ_SIZE        (256 * 1024)
#define CL_MAX_FRAME        (16 * 1024 * 1024)
#define CL_MAX_HEADERS      8192
#define CL_MAX_BODY         4096
#define CL_EVENTS           1024
#define CL_TRACK_BITS       256
#define CL_MAX_FAIL_NOTES   5
#define CL_NS               1000000000ULL

/*
 * Latency histogram: exact below 128 us, then 128 buckets per power of
 * two, so a bucket is at most 1/128 of its values wide and its midpoint is
 * within 0.4% of any of them.  34 octaves reach 2^41 us (25 days).
 */
#define CL_HIST_SUB_BITS    7
#define CL_HIST_SUB         (1 << CL_HIST_SUB_BITS)
#define CL_HIST_OCTAVES     34
#define CL_HIST_BUCKETS     (CL_HIST_SUB + CL_HIST_OCTAVES * CL_HIST_SUB)


typedef enum {
    cl_proto_chat = 0,
    cl_proto_sio,
    cl_proto_nchan
} cl_proto_e;


typedef enum {
    cl_scen_idle = 0,
    cl_scen_room,
    cl_scen_pairs,
    cl_scen_sends,
    cl_scen_storm
} cl_scen_e;


/* connection states */
enum {
    cl_st_idle = 0,         /* not started, or dropped on purpose (storm) */
    cl_st_connecting,       /* connect(2) in progress */
    cl_st_handshake,        /* upgrade request sent, waiting for the 101 */
    cl_st_setup,            /* upgraded, protocol steps before "ready" */
    cl_st_ready,
    cl_st_closed,           /* was ready, then lost */
    cl_st_failed            /* never got ready */
};


/* protocol steps of cl_st_setup */
enum {
    cl_step_none = 0,
    cl_step_welcome,        /* chat: waiting for "welcome" */
    cl_step_create,         /* chat: waiting for the conversation.create ok */
    cl_step_sync,           /* chat storm: waiting for the sync ok */
    cl_step_sio_open,       /* sio: waiting for the Engine.IO open packet */
    cl_step_sio_connect,    /* sio: waiting for the namespace connect "40" */
    cl_step_sio_join        /* sio: waiting for the join ack "431[]" */
};


/* phases of a generator process */
enum {
    cl_ph_connect = 0,
    cl_ph_wait_go,
    cl_ph_hold,             /* idle */
    cl_ph_send,
    cl_ph_settle,           /* sending stopped: wait for the own in flight */
    cl_ph_wait_expect,
    cl_ph_drain,
    cl_ph_exchange,         /* storm: one message each */
    cl_ph_wait_drop,
    cl_ph_resume,           /* storm: reconnect and sync */
    cl_ph_done
};


/* messages between the parent and its generator processes */
enum {
    cl_ctl_ready = 1,       /* child: a = connected, b = failed */
    cl_ctl_go,              /* parent: a = start time (CLOCK_MONOTONIC ns) */
    cl_ctl_sent,            /* child: a = messages sent without error */
    cl_ctl_expect,          /* parent: a = total of the children's sent */
    cl_ctl_exchanged,       /* child: storm exchange delivered */
    cl_ctl_drop,            /* parent: a = drop time */
    cl_ctl_done,            /* child: followed by its cl_result_t */
    cl_ctl_abort            /* parent: report now (nobody connected) */
};


typedef struct {
    uint32_t            type;
    uint32_t            child;
    uint64_t            a;
    uint64_t            b;
} cl_ctl_t;


typedef struct {
    uint64_t            count;
    uint64_t            sum;
    uint64_t            max;
    uint64_t            bucket[CL_HIST_BUCKETS];
} cl_hist_t;


/* what a generator process reports; the parent adds them up */
typedef struct {
    uint64_t            connected;
    uint64_t            failed;
    uint64_t            dropped;
    uint64_t            receivers;
    uint64_t            sent;
    uint64_t            send_errors;
    uint64_t            acked;
    uint64_t            expected;
    uint64_t            delivered;
    uint64_t            duplicates;
    uint64_t            unexpected;
    uint64_t            presence;       /* presence events received */
    uint64_t            resumed;
    uint64_t            resume_failed;
    uint64_t            replayed;
    uint64_t            replay_expected;
    uint64_t            first_connect_ns;
    uint64_t            last_ready_ns;
    uint64_t            first_send_ns;
    uint64_t            last_send_ns;
    uint64_t            last_delivery_ns;
    uint64_t            last_ack_ns;
    uint64_t            last_resumed_ns;
    cl_hist_t           latency;
    cl_hist_t           ack;
} cl_result_t;


typedef struct {
    u_char             *data;
    size_t              len;
    size_t              cap;
} cl_buf_t;


/*
 * Duplicate detection for one sender's stream at one receiver: every seq
 * below base was seen; bits hold the next CL_TRACK_BITS, indexed by seq
 * modulo their number.  Deliveries come in order or nearly, so base keeps
 * up; a seq that falls behind a window it was pushed out of counts as a
 * duplicate, which needs a reordering of over 256 messages.
 */
typedef struct {
    uint64_t            base;
    uint64_t            bits[CL_TRACK_BITS / 64];
} cl_track_t;


typedef struct {
    uint64_t            seq;
    uint64_t            sent_ns;
} cl_ack_slot_t;


typedef struct {
    int                 fd;
    uint32_t            index;          /* global connection number */
    uint8_t             state;
    uint8_t             step;
    uint8_t             frag_op;        /* opcode of a fragmented message */
    uint8_t             ready_at_go;
    uint8_t             blocked;        /* due to send, window full */
    uint8_t             resuming;
    uint8_t             key[16];        /* Sec-WebSocket-Key, raw */
    int                 heap;           /* index in the send heap or -1 */
    uint32_t            inflight;
    uint64_t            started_ns;
    uint64_t            next_send_ns;
    uint64_t            seq;            /* messages sent */
    uint64_t            errors;         /* of them, refused by the server */
    uint64_t            received;       /* distinct deliveries */
    uint64_t            replayed;
    uint64_t            cid;            /* chat: the pair's conversation */
    uint64_t            cursor;         /* chat: its seq before the run */
    cl_buf_t            in;             /* bytes of an incomplete frame */
    cl_buf_t            frag;           /* a fragmented message */
    cl_buf_t            out;            /* bytes the socket did not take */
    cl_ack_slot_t      *acks;           /* chat: send times by seq */
    cl_track_t          track[2];       /* 0: own messages, 1: the other */
} cl_conn_t;


typedef struct {
    cl_proto_e          proto;
    cl_scen_e           scenario;
    const char         *host;
    struct in_addr      addr;
    int                 port;
    int                 peer_ports[CL_MAX_PEER_PORTS];  /* receivers' nodes */
    int                 npeer_ports;    /* 0: the sender's node */
    const char         *path;
    uint32_t            conns;
    int                 procs;
    int                 src_count;
    double              rate;
    uint32_t            window;
    double              duration;
    double              drain;
    double              settle;
    uint32_t            connect_concurrency;
    double              connect_timeout;
    const char         *jwt_key_file;
    u_char             *jwt_key;
    size_t              jwt_key_len;
    const char         *user_prefix;
    uint64_t            conv;
    int                 server_pids[CL_MAX_SERVER_PIDS];
    uint8_t             server_pid_tree[CL_MAX_SERVER_PIDS];
    int                 nserver_pids;
    uint32_t            body_size;
    const char         *room;
    char                run[9];         /* this run's tag, in every body */
    int                 rate_given;
} cl_conf_t;


/* one generator process */
typedef struct {
    int                 id;
    uint32_t            lo;             /* its connections: [lo, hi) */
    uint32_t            hi;
    cl_conn_t          *conns;
    int                 ep;
    int                 ctl_in;
    int                 ctl_out;
    int                 phase;
    uint32_t            concurrency;
    uint32_t           *queue;          /* connections to (re)connect */
    uint32_t            queue_head;
    uint32_t            queue_tail;
    uint32_t            connecting;
    uint32_t            resolved;       /* ready or failed */
    uint32_t            to_resolve;
    uint32_t            fail_notes;
    uint32_t            error_notes;
    uint64_t            t0;
    uint64_t            send_end;
    uint64_t            deadline;
    uint64_t            drop_ns;
    uint64_t            next_check;
    uint64_t            next_progress;
    uint64_t            total_sent;     /* room: all processes' sends */
    int                 dump_missing;   /* CL_DUMP_MISSING: list them */
    uint32_t            dump_index;
    int                 dump_stream;
    uint64_t            rng;
    cl_conn_t         **heap;
    uint32_t            heap_n;
    u_char             *rbuf;
    u_char             *wbuf;
    size_t              wbuf_size;
    cl_result_t         res;
} cl_worker_t;


static void cl_usage(void);
static void cl_die(const char *fmt, ...);
static void cl_note(const char *fmt, ...);
static uint64_t cl_now(void);
static uint64_t cl_rand(void);
static void cl_raise_nofile(void);
static int cl_parse_args(int argc, char **argv);
static int cl_read_key(void);
static int cl_parse_ports(const char *s);
static int cl_parse_pids(const char *s);

static void cl_hist_add(cl_hist_t *h, uint64_t v);
static void cl_hist_merge(cl_hist_t *dst, cl_hist_t *src);
static uint64_t cl_hist_value(size_t i);
static uint64_t cl_hist_pct(cl_hist_t *h, double p);

static void cl_buf_append(cl_buf_t *b, const u_char *p, size_t n);
static void cl_buf_consume(cl_buf_t *b, size_t n);

static const u_char *cl_js_ws(const u_char *p, const u_char *end);
static const u_char *cl_js_string_end(const u_char *p, const u_char *end);
static const u_char *cl_js_skip(const u_char *p, const u_char *end);
static const u_char *cl_js_get(const u_char *p, const u_char *end,
    const char *key);
static int cl_js_int(const u_char *p, const u_char *end, int64_t *out);
static int cl_js_is(const u_char *p, const u_char *end, const char *lit);
static int cl_js_str(const u_char *p, const u_char *end, const u_char **s,
    size_t *len);

static size_t cl_base64(u_char *dst, const u_char *src, size_t n, int url);
static size_t cl_make_jwt(char *dst, size_t size, uint32_t index);

static void cl_worker_run(int id, uint32_t lo, uint32_t hi, int ctl_in,
    int ctl_out);
static void cl_loop(void);
static void cl_timers(uint64_t now);
static int cl_timeout_ms(uint64_t now);
static void cl_ctl_read(void);
static void cl_ctl_send(uint32_t type, uint64_t a, uint64_t b);
static void cl_phase_go(uint64_t t0);
static void cl_phase_expect(uint64_t total);
static void cl_phase_drop(uint64_t t);
static void cl_done(void);

static void cl_connect_start(cl_conn_t *c);
static int cl_port(cl_conn_t *c);
static void cl_connect_more(uint64_t now);
static void cl_check_timeouts(uint64_t now);
static void cl_on_event(cl_conn_t *c, uint32_t events);
static void cl_on_connected(cl_conn_t *c);
static void cl_on_read(cl_conn_t *c);
static ssize_t cl_on_bytes(cl_conn_t *c, u_char *p, size_t n);
static ssize_t cl_on_handshake(cl_conn_t *c, u_char *p, size_t n);
static ssize_t cl_on_frames(cl_conn_t *c, u_char *p, size_t n);
static int cl_on_frame(cl_conn_t *c, int fin, int op, u_char *p, size_t n);
static int cl_on_message(cl_conn_t *c, u_char *p, size_t n);
static void cl_flush(cl_conn_t *c);
static void cl_write(cl_conn_t *c, const u_char *p, size_t n);
static void cl_ws_send(cl_conn_t *c, int op, const u_char *p, size_t n);
static void cl_ws_text(cl_conn_t *c, const char *p, size_t n);
static void cl_fail(cl_conn_t *c, const char *fmt, ...);
static void cl_lost(cl_conn_t *c, const char *why);
static void cl_close_fd(cl_conn_t *c);
static void cl_set_ready(cl_conn_t *c);

static int cl_chat_message(cl_conn_t *c, const u_char *p, size_t n);
static int cl_sio_message(cl_conn_t *c, const u_char *p, size_t n);
static void cl_chat_create(cl_conn_t *c);
static void cl_chat_sync(cl_conn_t *c);
static void cl_chat_sync_more(cl_conn_t *c, const u_char *cursors,
    size_t len);
static void cl_delivery(cl_conn_t *c, const u_char *body, size_t len,
    int replay);
static int cl_track_seen(cl_track_t *t, uint64_t seq);
static void cl_dump_missing(void);

static int cl_is_sender(cl_conn_t *c);
static void cl_try_send(cl_conn_t *c, uint64_t now);
static void cl_send_message(cl_conn_t *c, uint64_t now);
static size_t cl_body(char *dst, uint32_t sender, uint64_t seq,
    uint64_t now);
static void cl_completed(cl_conn_t *c, uint64_t now);
static uint64_t cl_pending_inflight(void);

static void cl_heap_push(cl_conn_t *c);
static cl_conn_t *cl_heap_pop(void);
static void cl_heap_up(uint32_t i);
static void cl_heap_down(uint32_t i);

static int cl_parent(void);
static int cl_parent_wait(int *from, int n, uint32_t type, uint64_t *sum,
    cl_result_t *res);
static void cl_parent_send(int *to, int n, uint32_t type, uint64_t a);
static double cl_server_cpu(void);
static long cl_server_rss(void);
static int cl_proc_stat(int pid, int *ppid, uint64_t *ticks);
static void cl_server_procs(void (*fn)(int pid, void *data), void *data);
static void cl_add_cpu(int pid, void *data);
static void cl_add_rss(int pid, void *data);
static void cl_merge(cl_result_t *dst, cl_result_t *src);
static void cl_print_json(cl_result_t *r, double cpu, long rss_before,
    long rss_after, double connect_s, uint64_t drop_ns, uint64_t sent_ns,
    double gen_cpu);
static void cl_print_hist(const char *name, cl_hist_t *h);


static cl_conf_t    cf;
static cl_worker_t  w;


static const char *cl_proto_names[] = { "chat", "sio", "nchan" };
static const char *cl_scen_names[] = { "idle", "room", "pairs", "sends",
                                       "storm" };


int
main(int argc, char **argv)
{
    if (cl_parse_args(argc, argv) != 0) {
        cl_usage();
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    cl_raise_nofile();

    /* a debugging aid: which messages of pairs/sends went missing */
    w.dump_missing = getenv("CL_DUMP_MISSING") != NULL
                     && cf.scenario != cl_scen_room;

    return cl_parent();
}


static void
cl_usage(void)
{
    fprintf(stderr,
"usage: chatload --proto chat|sio|nchan --port P [--peer-port P2[,P3..]]\n"
"                [--host 127.0.0.1]\n"
"                [--path PATH] --scenario idle|room|pairs|sends|storm\n"
"                --conns N [--procs K] [--src-count M] [--rate R]\n"
"                [--window W] [--duration S] [--drain S]\n"
"                [--connect-concurrency C] [--connect-timeout S]\n"
"                [--jwt-key FILE] [--user-prefix S] [--conv ID]\n"
"                [--server-pids a,b+,c] [--body-size B] [--room NAME]\n"
"                [--settle S]\n"
"\n"
"  --path             chat: /chat/ws; sio: /socket.io/?EIO=4&transport=\n"
"                     websocket; nchan: /pubsub/ (the channel is appended)\n"
"  --rate             per sending connection, messages/s; 0: as fast as\n"
"                     --window allows (default: pairs 10, others 0)\n"
"  --peer-port        the receivers on other nodes of a cluster; with\n"
"                     several ports, spread over them in turn\n"
"  --server-pids      PID+ also sums the process's children (nginx\n"
"                     workers, PostgreSQL backends) at each sample\n"
"  --room             sio and nchan room name (default room)\n"
"  --settle           seconds between all ready and the measured phase\n"
"                     (default 0; idle: at least 2, then RSS is sampled)\n"
"\n"
"scenarios: idle (connect, hold), room (connection 0 sends to all),\n"
"pairs (2k <-> 2k+1 at --rate), sends (chat: pairs at full window),\n"
"storm (chat: drop every connection, reconnect, sync)\n");
}


static void
cl_die(const char *fmt, ...)
{
    va_list  ap;

    fprintf(stderr, "chatload: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}


static void
cl_note(const char *fmt, ...)
{
    va_list  ap;

    if (w.conns != NULL) {
        fprintf(stderr, "chatload[%d]: ", w.id);
    } else {
        fprintf(stderr, "chatload: ");
    }

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}


static uint64_t
cl_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * CL_NS + ts.tv_nsec;
}


/* xorshift64*: masks and start offsets only, nothing secret */
static uint64_t
cl_rand(void)
{
    w.rng ^= w.rng >> 12;
    w.rng ^= w.rng << 25;
    w.rng ^= w.rng >> 27;

    return w.rng * 0x2545F4914F6CDD1DULL;
}


static void
cl_raise_nofile(void)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }
}


/* ------------------------------------------------------------------------
 * Command line
 */

static int
cl_parse_args(int argc, char **argv)
{
    int            opt, i, have_port;
    char          *end;
    const char    *prefix;
    struct rlimit  rl;

    enum {
        o_proto = 256, o_port, o_peer_port, o_host, o_path, o_scenario, o_conns, o_procs,
        o_src_count, o_rate, o_window, o_duration, o_drain, o_cc, o_ct,
        o_jwt_key, o_user_prefix, o_conv, o_server_pids, o_body_size,
        o_room, o_settle, o_help
    };

    static const struct option  opts[] = {
        { "proto", required_argument, NULL, o_proto },
        { "port", required_argument, NULL, o_port },
        { "peer-port", required_argument, NULL, o_peer_port },
        { "host", required_argument, NULL, o_host },
        { "path", required_argument, NULL, o_path },
        { "scenario", required_argument, NULL, o_scenario },
        { "conns", required_argument, NULL, o_conns },
        { "procs", required_argument, NULL, o_procs },
        { "src-count", required_argument, NULL, o_src_count },
        { "rate", required_argument, NULL, o_rate },
        { "window", required_argument, NULL, o_window },
        { "duration", required_argument, NULL, o_duration },
        { "drain", required_argument, NULL, o_drain },
        { "connect-concurrency", required_argument, NULL, o_cc },
        { "connect-timeout", required_argument, NULL, o_ct },
        { "jwt-key", required_argument, NULL, o_jwt_key },
        { "user-prefix", required_argument, NULL, o_user_prefix },
        { "conv", required_argument, NULL, o_conv },
        { "server-pids", required_argument, NULL, o_server_pids },
        { "body-size", required_argument, NULL, o_body_size },
        { "room", required_argument, NULL, o_room },
        { "settle", required_argument, NULL, o_settle },
        { "help", no_argument, NULL, o_help },
        { NULL, 0, NULL, 0 }
    };

    cf.proto = (cl_proto_e) -1;
    cf.scenario = (cl_scen_e) -1;
    cf.host = "127.0.0.1";
    cf.window = 8;
    cf.duration = 10;
    cf.drain = 3;
    cf.connect_concurrency = 500;
    cf.connect_timeout = 60;
    cf.user_prefix = "u";
    cf.body_size = 100;
    cf.room = "room";
    have_port = 0;

#define CL_NUM(var, conv, min)                                              \
    do {                                                                    \
        errno = 0;                                                          \
        var = conv(optarg, &end);                                           \
        if (errno || end == optarg || *end != '\0' || var < (min)) {        \
            fprintf(stderr, "chatload: invalid --%s \"%s\"\n",              \
                    opts[opt - o_proto].name, optarg);                      \
            return -1;                                                      \
        }                                                                   \
    } while (0)

#define cl_strtol(s, e)   strtol(s, e, 10)
#define cl_strtoull(s, e) strtoull(s, e, 10)

    for ( ;; ) {
        long                lv;
        double              dv;
        unsigned long long  uv;

        opt = getopt_long(argc, argv, "", opts, NULL);
        if (opt == -1) {
            break;
        }

        switch (opt) {

        case o_proto:
            for (i = 0; i < 3; i++) {
                if (strcmp(optarg, cl_proto_names[i]) == 0) {
                    cf.proto = (cl_proto_e) i;
                }
            }
            if ((int) cf.proto < 0) {
                fprintf(stderr, "chatload: unknown --proto \"%s\"\n", optarg);
                return -1;
            }
            break;

        case o_scenario:
            for (i = 0; i < 5; i++) {
                if (strcmp(optarg, cl_scen_names[i]) == 0) {
                    cf.scenario = (cl_scen_e) i;
                }
            }
            if ((int) cf.scenario < 0) {
                fprintf(stderr, "chatload: unknown --scenario \"%s\"\n",
                        optarg);
                return -1;
            }
            break;

        case o_port:
            CL_NUM(lv, cl_strtol, 1);
            if (lv > 65535) {
                fprintf(stderr, "chatload: invalid --port\n");
                return -1;
            }
            cf.port = (int) lv;
            have_port = 1;
            break;

        case o_peer_port:
            if (cl_parse_ports(optarg) != 0) {
                return -1;
            }
            break;

        case o_host:
            cf.host = optarg;
            break;

        case o_path:
            cf.path = optarg;
            break;

        case o_conns:
            CL_NUM(lv, cl_strtol, 1);
            cf.conns = (uint32_t) lv;
            break;

        case o_procs:
            CL_NUM(lv, cl_strtol, 1);
            if (lv > CL_MAX_PROCS) {
                fprintf(stderr, "chatload: at most %d --procs\n",
                        CL_MAX_PROCS);
                return -1;
            }
            cf.procs = (int) lv;
            break;

        case o_src_count:
            CL_NUM(lv, cl_strtol, 1);
            if (lv > 254) {
                fprintf(stderr, "chatload: at most 254 --src-count\n");
                return -1;
            }
            cf.src_count = (int) lv;
            break;

        case o_rate:
            CL_NUM(dv, strtod, 0);
            cf.rate = dv;
            cf.rate_given = 1;
            break;

        case o_window:
            CL_NUM(lv, cl_strtol, 1);
            cf.window = (uint32_t) lv;
            break;

        case o_duration:
            CL_NUM(dv, strtod, 0);
            cf.duration = dv;
            break;

        case o_drain:
            CL_NUM(dv, strtod, 0);
            cf.drain = dv;
            break;

        case o_cc:
            CL_NUM(lv, cl_strtol, 1);
            cf.connect_concurrency = (uint32_t) lv;
            break;

        case o_ct:
            CL_NUM(dv, strtod, 0.001);
            cf.connect_timeout = dv;
            break;

        case o_jwt_key:
            cf.jwt_key_file = optarg;
            break;

        case o_user_prefix:
            cf.user_prefix = optarg;
            break;

        case o_conv:
            CL_NUM(uv, cl_strtoull, 1);
            cf.conv = uv;
            break;

        case o_server_pids:
            if (cl_parse_pids(optarg) != 0) {
                return -1;
            }
            break;

        case o_body_size:
            CL_NUM(lv, cl_strtol, 1);
            if (lv > CL_MAX_BODY) {
                fprintf(stderr, "chatload: at most %d --body-size\n",
                        CL_MAX_BODY);
                return -1;
            }
            cf.body_size = (uint32_t) lv;
            break;

        case o_room:
            cf.room = optarg;
            break;

        case o_settle:
            CL_NUM(dv, strtod, 0);
            cf.settle = dv;
            break;

        case o_help:
            cl_usage();
            exit(0);

        default:
            return -1;
        }
    }

#undef CL_NUM

    if (optind != argc) {
        fprintf(stderr, "chatload: unexpected argument \"%s\"\n",
                argv[optind]);
        return -1;
    }

    if ((int) cf.proto < 0 || (int) cf.scenario < 0 || !have_port
        || cf.conns == 0)
    {
        fprintf(stderr, "chatload: --proto, --port, --scenario and --conns "
                        "are required\n");
        return -1;
    }

    if (inet_pton(AF_INET, cf.host, &cf.addr) != 1) {
        fprintf(stderr, "chatload: --host must be an IPv4 address\n");
        return -1;
    }

    if ((cf.scenario == cl_scen_sends || cf.scenario == cl_scen_storm)
        && cf.proto != cl_proto_chat)
    {
        fprintf(stderr, "chatload: --scenario %s is for --proto chat only\n",
                cl_scen_names[cf.scenario]);
        return -1;
    }

    if (cf.scenario >= cl_scen_pairs && cf.conns % 2) {
        fprintf(stderr, "chatload: --scenario %s needs an even --conns\n",
                cl_scen_names[cf.scenario]);
        return -1;
    }

    if (cf.proto == cl_proto_chat) {
        if (cf.jwt_key_file == NULL) {
            fprintf(stderr, "chatload: --proto chat needs --jwt-key\n");
            return -1;
        }

        if (cf.scenario == cl_scen_room && cf.conv == 0) {
            fprintf(stderr, "chatload: --scenario room --proto chat needs "
                            "--conv\n");
            return -1;
        }

        if (cl_read_key() != 0) {
            return -1;
        }
    }

    /* user ids and room names go into JSON and URLs unescaped */
    for (prefix = cf.user_prefix; *prefix; prefix++) {
        if (!isalnum((u_char) *prefix) && strchr("_.-", *prefix) == NULL) {
            fprintf(stderr, "chatload: --user-prefix: letters, digits, "
                            "\"_.-\" only\n");
            return -1;
        }
    }

    for (prefix = cf.room; *prefix; prefix++) {
        if (!isalnum((u_char) *prefix) && *prefix != '_') {
            fprintf(stderr, "chatload: --room: letters, digits, \"_\"\n");
            return -1;
        }
    }

    if (cf.path == NULL) {
        cf.path = cf.proto == cl_proto_chat ? "/chat/ws"
                  : cf.proto == cl_proto_sio
                    ? "/socket.io/?EIO=4&transport=websocket"
                    : "/pubsub/";
    }

    if (!cf.rate_given) {
        cf.rate = cf.scenario == cl_scen_pairs ? 10 : 0;
    }

    if (cf.scenario == cl_scen_sends) {
        cf.rate = 0;
    }

    if (cf.procs == 0) {
        cf.procs = (int) ((cf.conns + 14999) / 15000);
    }

    if ((uint32_t) cf.procs > cf.conns) {
        cf.procs = (int) cf.conns;
    }

    if (cf.scenario >= cl_scen_pairs && (uint32_t) cf.procs > cf.conns / 2) {
        cf.procs = (int) (cf.conns / 2);
    }

    if (cf.src_count == 0) {
        /* storm reconnects every connection while the old ports wait */
        uint64_t  n = cf.scenario == cl_scen_storm ? 2ULL * cf.conns
                                                   : cf.conns;

        cf.src_count = (int) ((n + 24999) / 25000);
        if (cf.src_count > 254) {
            cf.src_count = 254;
        }
    }

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0
        && (cf.conns + cf.procs - 1) / cf.procs + 64 > rl.rlim_max)
    {
        fprintf(stderr, "chatload: %u connections in %d processes exceed the "
                        "descriptor limit %llu: raise --procs\n",
                cf.conns, cf.procs, (unsigned long long) rl.rlim_max);
        return -1;
    }

    return 0;
}


static int
cl_read_key(void)
{
    int      fd;
    ssize_t  n;
    u_char   buf[4096];

    fd = open(cf.jwt_key_file, O_RDONLY);
    if (fd == -1) {
        fprintf(stderr, "chatload: %s: %s\n", cf.jwt_key_file,
                strerror(errno));
        return -1;
    }

    n = read(fd, buf, sizeof(buf));
    close(fd);

    if (n <= 0) {
        fprintf(stderr, "chatload: %s: empty or unreadable\n",
                cf.jwt_key_file);
        return -1;
    }

    cf.jwt_key = malloc(n);
    if (cf.jwt_key == NULL) {
        return -1;
    }

    memcpy(cf.jwt_key, buf, n);
    cf.jwt_key_len = n;

    return 0;
}


static int
cl_parse_ports(const char *s)
{
    long   port;
    char  *end;

    for ( ;; ) {
        if (cf.npeer_ports == CL_MAX_PEER_PORTS) {
            fprintf(stderr, "chatload: too many --peer-port\n");
            return -1;
        }

        errno = 0;
        port = strtol(s, &end, 10);
        if (errno || end == s || port < 1 || port > 65535
            || (*end != ',' && *end != '\0'))
        {
            fprintf(stderr, "chatload: invalid --peer-port\n");
            return -1;
        }

        cf.peer_ports[cf.npeer_ports++] = (int) port;

        if (*end == '\0') {
            return 0;
        }

        s = end + 1;
    }
}


static int
cl_parse_pids(const char *s)
{
    long   pid;
    char  *end;

    while (*s) {
        if (cf.nserver_pids == CL_MAX_SERVER_PIDS) {
            fprintf(stderr, "chatload: too many --server-pids\n");
            return -1;
        }

        errno = 0;
        pid = strtol(s, &end, 10);
        if (errno || end == s || pid <= 0) {
            fprintf(stderr, "chatload: invalid --server-pids\n");
            return -1;
        }

        cf.server_pids[cf.nserver_pids] = (int) pid;
        cf.server_pid_tree[cf.nserver_pids] = 0;

        if (*end == '+') {
            cf.server_pid_tree[cf.nserver_pids] = 1;
            end++;
        }

        cf.nserver_pids++;

        if (*end == ',') {
            end++;

        } else if (*end != '\0') {
            fprintf(stderr, "chatload: invalid --server-pids\n");
            return -1;
        }

        s = end;
    }

    return 0;
}


/* ------------------------------------------------------------------------
 * Histograms
 */

static void
cl_hist_add(cl_hist_t *h, uint64_t v)
{
    size_t  i;
    int     e, shift;

    if (v < CL_HIST_SUB) {
        i = (size_t) v;

    } else {
        e = 63 - __builtin_clzll(v);
        shift = e - CL_HIST_SUB_BITS;
        i = CL_HIST_SUB + (size_t) shift * CL_HIST_SUB
            + (size_t) ((v >> shift) - CL_HIST_SUB);

        if (i >= CL_HIST_BUCKETS) {
            i = CL_HIST_BUCKETS - 1;
        }
    }

    h->bucket[i]++;
    h->count++;
    h->sum += v;

    if (v > h->max) {
        h->max = v;
    }
}


static void
cl_hist_merge(cl_hist_t *dst, cl_hist_t *src)
{
    size_t  i;

    for (i = 0; i < CL_HIST_BUCKETS; i++) {
        dst->bucket[i] += src->bucket[i];
    }

    dst->count += src->count;
    dst->sum += src->sum;

    if (src->max > dst->max) {
        dst->max = src->max;
    }
}


/* the midpoint of bucket i */
static uint64_t
cl_hist_value(size_t i)
{
    size_t    octave, sub;
    uint64_t  low;

    if (i < CL_HIST_SUB) {
        return i;
    }

    octave = (i - CL_HIST_SUB) / CL_HIST_SUB;
    sub = (i - CL_HIST_SUB) % CL_HIST_SUB;
    low = (uint64_t) (CL_HIST_SUB + sub) << octave;

    return low + (((uint64_t) 1 << octave) - 1) / 2;
}


static uint64_t
cl_hist_pct(cl_hist_t *h, double p)
{
    size_t    i;
    uint64_t  target, seen, v;

    if (h->count == 0) {
        return 0;
    }

    target = (uint64_t) ceil(p * (double) h->count);
    if (target == 0) {
        target = 1;
    }

    seen = 0;

    for (i = 0; i < CL_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= target) {
            v = cl_hist_value(i);
            return v < h->max ? v : h->max;
        }
    }

    return h->max;
}


/* ------------------------------------------------------------------------
 * Buffers
 */

static void
cl_buf_append(cl_buf_t *b, const u_char *p, size_t n)
{
    size_t   cap;
    u_char  *data;

    if (b->len + n > b->cap) {
        cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            cap *= 2;
        }

        data = realloc(b->data, cap);
        if (data == NULL) {
            cl_die("out of memory");
        }

        b->data = data;
        b->cap = cap;
    }

    memcpy(b->data + b->len, p, n);
    b->len += n;
}


static void
cl_buf_consume(cl_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;

        /* a big message's buffer is not kept for 15,000 connections */
        if (b->cap > 65536) {
            free(b->data);
            b->data = NULL;
            b->cap = 0;
        }

        return;
    }

    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}


/* ------------------------------------------------------------------------
 * Just enough JSON: find a key of an object without assuming key order,
 * skipping nested values whole.  Strings are compared raw: the keys and
 * values looked at here never hold escapes.
 */

static const u_char *
cl_js_ws(const u_char *p, const u_char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }

    return p;
}


static const u_char *
cl_js_string_end(const u_char *p, const u_char *end)
{
    /* p is at the opening quote; returns past the closing one */
    for (p++; p < end; p++) {
        if (*p == '\\') {
            p++;

        } else if (*p == '"') {
            return p + 1;
        }
    }

    return NULL;
}


static const u_char *
cl_js_skip(const u_char *p, const u_char *end)
{
    int  depth;

    if (p >= end) {
        return NULL;
    }

    if (*p == '"') {
        return cl_js_string_end(p, end);
    }

    if (*p == '{' || *p == '[') {
        depth = 0;

        while (p < end) {
            if (*p == '"') {
                p = cl_js_string_end(p, end);
                if (p == NULL) {
                    return NULL;
                }
                continue;
            }

            if (*p == '{' || *p == '[') {
                depth++;

            } else if (*p == '}' || *p == ']') {
                if (--depth == 0) {
                    return p + 1;
                }
            }

            p++;
        }

        return NULL;
    }

    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' '
           && *p != '\t' && *p != '\n' && *p != '\r')
    {
        p++;
    }

    return p;
}


static const u_char *
cl_js_get(const u_char *p, const u_char *end, const char *key)
{
    size_t         klen;
    const u_char  *k, *kend;

    if (p == NULL) {
        return NULL;
    }

    klen = strlen(key);

    p = cl_js_ws(p, end);
    if (p >= end || *p != '{') {
        return NULL;
    }

    p++;

    for ( ;; ) {
        p = cl_js_ws(p, end);
        if (p >= end || *p != '"') {
            return NULL;
        }

        k = p + 1;
        kend = cl_js_string_end(p, end);
        if (kend == NULL) {
            return NULL;
        }

        p = cl_js_ws(kend, end);
        if (p >= end || *p != ':') {
            return NULL;
        }

        p = cl_js_ws(p + 1, end);

        if ((size_t) (kend - 1 - k) == klen && memcmp(k, key, klen) == 0) {
            return p < end ? p : NULL;
        }

        p = cl_js_skip(p, end);
        if (p == NULL) {
            return NULL;
        }

        p = cl_js_ws(p, end);
        if (p >= end || *p != ',') {
            return NULL;
        }

        p++;
    }
}


static int
cl_js_int(const u_char *p, const u_char *end, int64_t *out)
{
    int      neg;
    int64_t  v;

    if (p == NULL || p >= end) {
        return -1;
    }

    neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }

    if (p >= end || *p < '0' || *p > '9') {
        return -1;
    }

    v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
    }

    *out = neg ? -v : v;

    return 0;
}


/* the value at p is exactly the literal lit (e.g. "\"ok\"" or "true") */
static int
cl_js_is(const u_char *p, const u_char *end, const char *lit)
{
    size_t  n;

    n = strlen(lit);

    return p != NULL && (size_t) (end - p) >= n && memcmp(p, lit, n) == 0
           && (lit[0] == '"' || (size_t) (end - p) == n
               || strchr(",}] \t\r\n", p[n]) != NULL);
}


static int
cl_js_str(const u_char *p, const u_char *end, const u_char **s, size_t *len)
{
    const u_char  *e;

    if (p == NULL || p >= end || *p != '"') {
        return -1;
    }

    e = cl_js_string_end(p, end);
    if (e == NULL) {
        return -1;
    }

    *s = p + 1;
    *len = (size_t) (e - 1 - (p + 1));

    return 0;
}


/* ------------------------------------------------------------------------
 * Base64 and the tokens
 */

static size_t
cl_base64(u_char *dst, const u_char *src, size_t n, int url)
{
    size_t       i, o;
    uint32_t     v;
    const char  *tab;

    tab = url
        ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    o = 0;

    for (i = 0; i + 2 < n; i += 3) {
        v = (uint32_t) src[i] << 16 | (uint32_t) src[i + 1] << 8 | src[i + 2];
        dst[o++] = tab[v >> 18];
        dst[o++] = tab[(v >> 12) & 63];
        dst[o++] = tab[(v >> 6) & 63];
        dst[o++] = tab[v & 63];
    }

    if (i < n) {
        v = (uint32_t) src[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t) src[i + 1] << 8;
        }

        dst[o++] = tab[v >> 18];
        dst[o++] = tab[(v >> 12) & 63];

        if (i + 1 < n) {
            dst[o++] = tab[(v >> 6) & 63];
        } else if (!url) {
            dst[o++] = '=';
        }

        if (!url) {
            dst[o++] = '=';
        }
    }

    return o;
}


/* an HS256 JWT for user <prefix><index>, valid for a day */
static size_t
cl_make_jwt(char *dst, size_t size, uint32_t index)
{
    char           payload[512];
    size_t         n, plen;
    u_char         mac[EVP_MAX_MD_SIZE];
    unsigned int   maclen;
    static const char  header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

    plen = (size_t) snprintf(payload, sizeof(payload),
                             "{\"sub\":\"%s%u\",\"name\":\"%s%u\","
                             "\"exp\":%lld}",
                             cf.user_prefix, index, cf.user_prefix, index,
                             (long long) time(NULL) + 86400);

    if (size < 4 * (sizeof(header) + plen + 32) / 3 + 8) {
        return 0;
    }

    n = cl_base64((u_char *) dst, (const u_char *) header,
                  sizeof(header) - 1, 1);
    dst[n++] = '.';
    n += cl_base64((u_char *) dst + n, (u_char *) payload, plen, 1);

    if (HMAC(EVP_sha256(), cf.jwt_key, (int) cf.jwt_key_len,
             (u_char *) dst, n, mac, &maclen)
        == NULL)
    {
        return 0;
    }

    dst[n++] = '.';
    n += cl_base64((u_char *) dst + n, mac, maclen, 1);
    dst[n] = '\0';

    return n;
}


/* ------------------------------------------------------------------------
 * A generator process
 */

static void
cl_worker_run(int id, uint32_t lo, uint32_t hi, int ctl_in, int ctl_out)
{
    uint32_t            i, n;
    cl_conn_t          *c;
    struct epoll_event  ev;

    w.id = id;
    w.lo = lo;
    w.hi = hi;
    w.ctl_in = ctl_in;
    w.ctl_out = ctl_out;
    w.rng = (cl_now() ^ ((uint64_t) getpid() << 32)) | 1;
    w.concurrency = cf.connect_concurrency / cf.procs;
    if (w.concurrency == 0) {
        w.concurrency = 1;
    }

    n = hi - lo;

    w.conns = calloc(n, sizeof(cl_conn_t));
    w.queue = malloc(n * sizeof(uint32_t));
    w.heap = malloc(n * sizeof(cl_conn_t *));
    w.rbuf = malloc(CL_READ_SIZE);
    w.wbuf_size = CL_MAX_BODY + 1024;
    w.wbuf = malloc(w.wbuf_size);

    if (w.conns == NULL || w.queue == NULL || w.heap == NULL
        || w.rbuf == NULL || w.wbuf == NULL)
    {
        cl_die("out of memory");
    }

    for (i = 0; i < n; i++) {
        c = &w.conns[i];
        c->fd = -1;
        c->index = lo + i;
        c->heap = -1;
        w.queue[w.queue_tail++] = i;
    }

    w.to_resolve = n;

    w.ep = epoll_create1(EPOLL_CLOEXEC);
    if (w.ep == -1) {
        cl_die("epoll_create1: %s", strerror(errno));
    }

    ev.events = EPOLLIN;
    ev.data.ptr = NULL;

    if (epoll_ctl(w.ep, EPOLL_CTL_ADD, ctl_in, &ev) == -1) {
        cl_die("epoll_ctl: %s", strerror(errno));
    }

    w.phase = cl_ph_connect;
    w.next_progress = cl_now() + 2 * CL_NS;

    cl_loop();
}


static void
cl_loop(void)
{
    int                 i, n;
    uint64_t            now;
    struct epoll_event  events[CL_EVENTS];

    for ( ;; ) {
        now = cl_now();
        cl_timers(now);

        if (w.phase == cl_ph_done) {
            return;
        }

        n = epoll_wait(w.ep, events, CL_EVENTS, cl_timeout_ms(cl_now()));

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            cl_die("epoll_wait: %s", strerror(errno));
        }

        for (i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                cl_ctl_read();
                continue;
            }

            cl_on_event(events[i].data.ptr, events[i].events);
        }
    }
}


static void
cl_timers(uint64_t now)
{
    cl_conn_t  *c;

    switch (w.phase) {

    case cl_ph_connect:
    case cl_ph_resume:
        cl_connect_more(now);

        if (now >= w.next_check) {
            cl_check_timeouts(now);
            w.next_check = now + CL_NS / 2;
        }

        if (now >= w.next_progress && w.resolved < w.to_resolve) {
            cl_note("%s: %u of %u done, %u in progress",
                    w.phase == cl_ph_connect ? "connecting" : "resuming",
                    w.resolved, w.to_resolve, w.connecting);
            w.next_progress = now + 2 * CL_NS;
        }

        if (w.resolved == w.to_resolve) {
            if (w.phase == cl_ph_connect) {
                w.phase = cl_ph_wait_go;
                cl_ctl_send(cl_ctl_ready, w.res.connected, w.res.failed);

            } else {
                cl_done();
            }
        }

        break;

    case cl_ph_hold:
        if (now >= w.send_end) {
            cl_done();
        }

        break;

    case cl_ph_send:
        while (w.heap_n && w.heap[0]->next_send_ns <= now) {
            c = cl_heap_pop();
            cl_try_send(c, now);
        }

        if (now >= w.send_end) {
            w.phase = cl_ph_settle;
            w.heap_n = 0;
            for (c = w.conns; c < w.conns + (w.hi - w.lo); c++) {
                c->heap = -1;
                c->blocked = 0;
            }
        }

        /* fall through */

    case cl_ph_settle:
        if (w.phase == cl_ph_settle
            && (cl_pending_inflight() == 0 || now >= w.deadline))
        {
            uint64_t  ok = 0;

            for (c = w.conns; c < w.conns + (w.hi - w.lo); c++) {
                ok += c->seq - c->errors;
            }

            w.phase = cl_ph_wait_expect;
            cl_ctl_send(cl_ctl_sent, ok, 0);
        }

        break;

    case cl_ph_drain:
        if (w.res.delivered >= w.res.expected || now >= w.deadline) {
            cl_done();
        }

        break;

    case cl_ph_exchange:
        if (w.res.delivered >= w.res.expected || now >= w.deadline) {
            if (w.res.delivered < w.res.expected) {
                cl_note("storm: %" PRIu64 " of %" PRIu64 " exchange "
                        "deliveries arrived; dropping anyway",
                        w.res.delivered, w.res.expected);
            }

            w.phase = cl_ph_wait_drop;
            cl_ctl_send(cl_ctl_exchanged, 0, 0);
        }

        break;

    default:
        break;
    }
}


static int
cl_timeout_ms(uint64_t now)
{
    uint64_t  next;

    switch (w.phase) {

    case cl_ph_connect:
    case cl_ph_resume:
        /* connects wait for slots, which free on events */
        return 100;

    case cl_ph_settle:
        /* the senders' windows are polled */
        return 10;

    case cl_ph_hold:
        next = w.send_end;
        break;

    case cl_ph_drain:
    case cl_ph_exchange:
        next = w.deadline;
        break;

    case cl_ph_send:
        next = w.send_end;
        if (w.heap_n && w.heap[0]->next_send_ns < next) {
            next = w.heap[0]->next_send_ns;
        }
        break;

    default:
        return -1;
    }

    if (next <= now) {
        return 0;
    }

    /* round up: waking early only spins */
    next = (next - now + 999999) / 1000000;

    return next > 1000 ? 1000 : (int) next;
}


static void
cl_ctl_read(void)
{
    ssize_t   n;
    cl_ctl_t  m;

    n = read(w.ctl_in, &m, sizeof(m));

    if (n == 0) {
        /* the parent is gone: nobody will read the results */
        exit(1);
    }

    if (n != (ssize_t) sizeof(m)) {
        if (n == -1 && (errno == EINTR || errno == EAGAIN)) {
            return;
        }

        cl_die("control pipe: short read");
    }

    switch (m.type) {

    case cl_ctl_go:
        cl_phase_go(m.a);
        break;

    case cl_ctl_expect:
        cl_phase_expect(m.a);
        break;

    case cl_ctl_drop:
        cl_phase_drop(m.a);
        break;

    case cl_ctl_abort:
        cl_done();
        break;

    default:
        cl_die("control pipe: unexpected message %u", m.type);
    }
}


static void
cl_ctl_send(uint32_t type, uint64_t a, uint64_t b)
{
    cl_ctl_t  m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.child = (uint32_t) w.id;
    m.a = a;
    m.b = b;

    /* under PIPE_BUF: atomic, and the parent reads promptly */
    if (write(w.ctl_out, &m, sizeof(m)) != (ssize_t) sizeof(m)) {
        cl_die("control pipe: %s", strerror(errno));
    }
}


static void
cl_phase_go(uint64_t t0)
{
    uint64_t    interval, offset, now;
    cl_conn_t  *c, *last;

    w.t0 = t0;
    w.send_end = t0 + (uint64_t) (cf.duration * CL_NS);
    w.deadline = w.send_end + (uint64_t) (cf.drain * CL_NS);

    last = w.conns + (w.hi - w.lo);

    for (c = w.conns; c < last; c++) {
        c->ready_at_go = c->state == cl_st_ready;
        w.res.receivers += c->ready_at_go;
    }

    now = cl_now();

    switch (cf.scenario) {

    case cl_scen_idle:
        w.phase = cl_ph_hold;
        return;

    case cl_scen_storm:
        /* each side of each pair sends one message */
        w.phase = cl_ph_exchange;
        w.deadline = now + (uint64_t) ((cf.drain > 5 ? cf.drain : 5) * CL_NS);

        for (c = w.conns; c < last; c++) {
            if (cl_is_sender(c)) {
                cl_send_message(c, now);
                w.res.expected += c->ready_at_go
                                  + w.conns[(c->index ^ 1) - w.lo].ready_at_go;
            }
        }

        return;

    default:
        break;
    }

    w.phase = cl_ph_send;

    interval = cf.rate > 0 ? (uint64_t) (CL_NS / cf.rate) : 0;

    for (c = w.conns; c < last; c++) {
        if (!cl_is_sender(c)) {
            continue;
        }

        if (cf.rate > 0) {
            /*
             * A random phase within one interval (at most a second):
             * the connections' sends interleave evenly from the start
             * instead of coming in bursts, and none loses sends.
             */
            offset = interval < CL_NS ? interval : CL_NS;
            c->next_send_ns = t0 + cl_rand() % (offset ? offset : 1);
            cl_heap_push(c);

        } else {
            cl_try_send(c, now);
        }
    }
}


static void
cl_phase_expect(uint64_t total)
{
    cl_conn_t  *c, *p, *last;

    w.total_sent = total;
    last = w.conns + (w.hi - w.lo);

    if (cf.scenario == cl_scen_room) {
        w.res.expected = w.res.receivers * total;

    } else {
        /* a message reaches both connections of its pair */
        for (c = w.conns; c < last; c++) {
            p = &w.conns[(c->index ^ 1) - w.lo];
            w.res.expected += (c->seq - c->errors)
                              * (c->ready_at_go + p->ready_at_go);
        }
    }

    w.phase = cl_ph_drain;
}


static void
cl_phase_drop(uint64_t t)
{
    uint32_t    i, n;
    cl_conn_t  *c;

    w.drop_ns = t;
    n = w.hi - w.lo;
    w.queue_head = 0;
    w.queue_tail = 0;
    w.resolved = 0;
    w.to_resolve = 0;

    /* close(2) without a Close frame: a client whose network dropped */
    for (i = 0; i < n; i++) {
        c = &w.conns[i];

        if (c->state != cl_st_ready) {
            continue;
        }

        cl_close_fd(c);
        c->state = cl_st_idle;
        c->resuming = 1;
        w.queue[w.queue_tail++] = i;
        w.to_resolve++;

        /* the messages each side of the pair sent and had accepted */
        w.res.replay_expected += (c->seq - c->errors)
                                 + (w.conns[(c->index ^ 1) - w.lo].seq
                                    - w.conns[(c->index ^ 1) - w.lo].errors);
    }

    w.phase = cl_ph_resume;
    w.next_check = 0;
    w.next_progress = cl_now() + 2 * CL_NS;
}


static void
cl_done(void)
{
    cl_ctl_t  m;
    u_char   *p;
    size_t    left;
    ssize_t   n;

    memset(&m, 0, sizeof(m));
    m.type = cl_ctl_done;
    m.child = (uint32_t) w.id;

    p = (u_char *) &w.res;
    left = sizeof(cl_result_t);

    if (write(w.ctl_out, &m, sizeof(m)) != (ssize_t) sizeof(m)) {
        cl_die("control pipe: %s", strerror(errno));
    }

    while (left) {
        n = write(w.ctl_out, p, left);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            cl_die("control pipe: %s", strerror(errno));
        }

        p += n;
        left -= n;
    }

    if (w.dump_missing) {
        cl_dump_missing();
    }

    w.phase = cl_ph_done;
}


static void
cl_dump_missing(void)
{
    int          st;
    uint64_t     s, upto;
    cl_conn_t   *c, *p, *last;
    cl_track_t  *t;

    last = w.conns + (w.hi - w.lo);

    for (c = w.conns; c < last; c++) {
        p = &w.conns[(c->index ^ 1) - w.lo];

        for (st = 0; st < 2; st++) {
            t = &c->track[st];
            upto = st == 0 ? c->seq : p->seq;

            for (s = t->base; s < upto; s++) {
                if (!(t->bits[(s % CL_TRACK_BITS) / 64]
                      & (1ULL << (s % 64))))
                {
                    fprintf(stderr, "missing %u %d %" PRIu64 " end\n",
                            c->index, st, s);
                }
            }
        }
    }
}


/* ------------------------------------------------------------------------
 * Connections
 */

static void
cl_connect_more(uint64_t now)
{
    cl_conn_t  *c;

    while (w.connecting < w.concurrency && w.queue_head < w.queue_tail) {
        c = &w.conns[w.queue[w.queue_head++]];
        c->started_ns = now;

        if (w.res.first_connect_ns == 0) {
            w.res.first_connect_ns = now;
        }

        w.connecting++;
        cl_connect_start(c);
    }
}


/*
 * --peer-port: the receivers on other nodes of a cluster (room: all but
 * the sender; pairs and sends: the odd one of each pair), taking the
 * ports in turn, so that with several every node holds its share.
 */

static int
cl_port(cl_conn_t *c)
{
    if (cf.npeer_ports == 0) {
        return cf.port;
    }

    if (cf.scenario == cl_scen_room) {
        if (c->index == 0) {
            return cf.port;
        }

        return cf.peer_ports[(c->index - 1) % cf.npeer_ports];
    }

    if (c->index & 1) {
        return cf.peer_ports[(c->index >> 1) % cf.npeer_ports];
    }

    return cf.port;
}


static void
cl_connect_start(cl_conn_t *c)
{
    int                 fd, one;
    struct sockaddr_in  sin;
    struct epoll_event  ev;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        cl_fail(c, "socket: %s", strerror(errno));
        return;
    }

    c->fd = fd;
    c->state = cl_st_connecting;

    one = 1;
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (cf.src_count > 1) {
        /* the port is chosen at connect(2), per destination */
        (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                          sizeof(one));

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(0x7f000001 + c->index % cf.src_count);

        if (bind(fd, (struct sockaddr *) &sin, sizeof(sin)) == -1) {
            cl_fail(c, "bind: %s", strerror(errno));
            return;
        }
    }

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr = cf.addr;
    sin.sin_port = htons(cl_port(c));

    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) == -1
        && errno != EINPROGRESS)
    {
        cl_fail(c, "connect: %s", strerror(errno));
        return;
    }

    /* edge-triggered: the first EPOLLOUT says the connect finished */
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;

    if (epoll_ctl(w.ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
        cl_fail(c, "epoll_ctl: %s", strerror(errno));
        return;
    }
}


static void
cl_check_timeouts(uint64_t now)
{
    uint64_t    limit;
    cl_conn_t  *c, *last;

    limit = (uint64_t) (cf.connect_timeout * CL_NS);
    last = w.conns + (w.hi - w.lo);

    for (c = w.conns; c < last; c++) {
        if (c->state >= cl_st_connecting && c->state <= cl_st_setup
            && now - c->started_ns > limit)
        {
            cl_fail(c, "not ready after %.0f s (state %d, step %d)",
                    cf.connect_timeout, c->state, c->step);
        }
    }
}


static void
cl_on_event(cl_conn_t *c, uint32_t events)
{
    int        err;
    socklen_t  len;

    /* closed earlier in this batch of events */
    if (c->fd == -1) {
        return;
    }

    if (c->state == cl_st_connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return;
        }

        err = 0;
        len = sizeof(err);
        (void) getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);

        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            cl_fail(c, "connect: %s", strerror(err ? err : ECONNRESET));
            return;
        }

        cl_on_connected(c);
        return;
    }

    if ((events & EPOLLOUT) && c->out.len) {
        cl_flush(c);
        if (c->fd == -1) {
            return;
        }
    }

    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        cl_on_read(c);
    }
}


static void
cl_on_connected(cl_conn_t *c)
{
    int      n;
    char     jwt[1024], auth[1100], path[512];
    u_char   key[32];
    size_t   i;
    uint64_t r;

    for (i = 0; i < 16; i += 8) {
        r = cl_rand();
        memcpy(c->key + i, &r, 8);
    }

    key[cl_base64(key, c->key, 16, 0)] = '\0';

    auth[0] = '\0';

    if (cf.proto == cl_proto_chat) {
        if (cl_make_jwt(jwt, sizeof(jwt), c->index) == 0) {
            cl_fail(c, "cannot make a token");
            return;
        }

        snprintf(auth, sizeof(auth),
                 "Sec-WebSocket-Protocol: chat.v1\r\n"
                 "Authorization: Bearer %s\r\n", jwt);
    }

    if (cf.proto == cl_proto_nchan) {
        if (cf.scenario == cl_scen_room || cf.scenario == cl_scen_idle) {
            snprintf(path, sizeof(path), "%s%s", cf.path, cf.room);
        } else {
            snprintf(path, sizeof(path), "%sp%u", cf.path, c->index / 2);
        }

    } else {
        snprintf(path, sizeof(path), "%s", cf.path);
    }

    n = snprintf((char *) w.wbuf, w.wbuf_size,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "%s"
                 "\r\n",
                 path, cf.host, cl_port(c), key, auth);

    c->state = cl_st_handshake;
    cl_write(c, w.wbuf, (size_t) n);
}


static void
cl_on_read(cl_conn_t *c)
{
    ssize_t  n, used;
    u_char  *p;
    size_t   len;

    for ( ;; ) {
        n = recv(c->fd, w.rbuf, CL_READ_SIZE, 0);

        if (n == 0) {
            cl_lost(c, "closed by the server");
            return;
        }

        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }

            if (errno == EINTR) {
                continue;
            }

            cl_lost(c, strerror(errno));
            return;
        }

        if (c->in.len) {
            cl_buf_append(&c->in, w.rbuf, (size_t) n);
            p = c->in.data;
            len = c->in.len;

        } else {
            p = w.rbuf;
            len = (size_t) n;
        }

        used = cl_on_bytes(c, p, len);
        if (used < 0) {
            return;
        }

        if (c->in.len) {
            cl_buf_consume(&c->in, (size_t) used);

        } else if ((size_t) used < len) {
            cl_buf_append(&c->in, p + used, len - used);
        }

        /*
         * A short read emptied the socket: edge-triggered epoll reports
         * the next data (or the FIN) as a new edge.
         */
        if (n < CL_READ_SIZE) {
            return;
        }
    }
}


/* bytes consumed, or -1 when the connection was closed */
static ssize_t
cl_on_bytes(cl_conn_t *c, u_char *p, size_t n)
{
    ssize_t  used, more;

    used = 0;

    if (c->state == cl_st_handshake) {
        used = cl_on_handshake(c, p, n);
        if (used <= 0) {
            return used;
        }
    }

    more = cl_on_frames(c, p + used, n - used);
    if (more < 0) {
        return -1;
    }

    return used + more;
}


static ssize_t
cl_on_handshake(cl_conn_t *c, u_char *p, size_t n)
{
    u_char        *end, *h, *eol;
    u_char         digest[SHA_DIGEST_LENGTH], accept[32], key[64];
    size_t         len, klen;
    static const char  guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    end = memmem(p, n, "\r\n\r\n", 4);
    if (end == NULL) {
        if (n > CL_MAX_HEADERS) {
            cl_fail(c, "response headers too long");
            return -1;
        }

        return 0;
    }

    if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        eol = memmem(p, n, "\r\n", 2);
        cl_fail(c, "upgrade refused: %.*s", (int) (eol - p), p);
        return -1;
    }

    /* Sec-WebSocket-Accept: proof that a WebSocket server answered */
    klen = cl_base64(key, c->key, 16, 0);
    memcpy(key + klen, guid, sizeof(guid) - 1);
    SHA1(key, klen + sizeof(guid) - 1, digest);

    len = cl_base64(accept, digest, SHA_DIGEST_LENGTH, 0);

    for (h = p; h < end; h = eol + 2) {
        eol = memmem(h, end + 2 - h, "\r\n", 2);

        if (eol - h > 21 && strncasecmp((char *) h, "sec-websocket-accept:", 21)
                            == 0)
        {
            h += 21;
            while (h < eol && *h == ' ') {
                h++;
            }

            if ((size_t) (eol - h) == len && memcmp(h, accept, len) == 0) {
                break;
            }

            cl_fail(c, "wrong Sec-WebSocket-Accept");
            return -1;
        }
    }

    if (h >= end) {
        cl_fail(c, "no Sec-WebSocket-Accept");
        return -1;
    }

    c->state = cl_st_setup;

    switch (cf.proto) {

    case cl_proto_chat:
        c->step = cl_step_welcome;
        break;

    case cl_proto_sio:
        c->step = cl_step_sio_open;
        break;

    case cl_proto_nchan:
        /* subscribed once upgraded */
        cl_set_ready(c);
        break;
    }

    return end + 4 - p;
}


static ssize_t
cl_on_frames(cl_conn_t *c, u_char *start, size_t n)
{
    int       fin, op, masked;
    u_char   *p, *end, *mask;
    size_t    hl, i;
    uint64_t  len;

    p = start;
    end = start + n;

    while (end - p >= 2) {
        fin = p[0] & 0x80;
        op = p[0] & 0x0f;
        masked = p[1] & 0x80;
        len = p[1] & 0x7f;
        hl = 2;

        if (len == 126) {
            if (end - p < 4) {
                break;
            }

            len = (uint64_t) p[2] << 8 | p[3];
            hl = 4;

        } else if (len == 127) {
            if (end - p < 10) {
                break;
            }

            len = 0;
            for (i = 2; i < 10; i++) {
                len = len << 8 | p[i];
            }

            hl = 10;
        }

        if (len > CL_MAX_FRAME) {
            cl_lost(c, "frame too large");
            return -1;
        }

        mask = p + hl;
        if (masked) {
            hl += 4;
        }

        if ((uint64_t) (end - p) < hl + len) {
            break;
        }

        /* servers do not mask; tolerate it anyway */
        if (masked) {
            for (i = 0; i < len; i++) {
                p[hl + i] ^= mask[i & 3];
            }
        }

        /* a handler may have closed the connection */
        if (cl_on_frame(c, fin, op, p + hl, (size_t) len) != 0
            || c->fd == -1)
        {
            return -1;
        }

        p += hl + len;
    }

    return p - start;
}


static int
cl_on_frame(cl_conn_t *c, int fin, int op, u_char *p, size_t n)
{
    switch (op) {

    case 0x8:
        cl_lost(c, "Close frame from the server");
        return -1;

    case 0x9:
        cl_ws_send(c, 0xa, p, n);
        return c->fd == -1 ? -1 : 0;

    case 0xa:
        return 0;

    case 0x1:
    case 0x2:
        if (c->frag_op) {
            cl_lost(c, "a new message inside a fragmented one");
            return -1;
        }

        if (fin) {
            return cl_on_message(c, p, n);
        }

        c->frag_op = (uint8_t) op;
        c->frag.len = 0;
        cl_buf_append(&c->frag, p, n);
        return 0;

    case 0x0:
        if (!c->frag_op) {
            cl_lost(c, "continuation without a message");
            return -1;
        }

        cl_buf_append(&c->frag, p, n);

        if (fin) {
            c->frag_op = 0;
            if (cl_on_message(c, c->frag.data, c->frag.len) != 0) {
                return -1;
            }

            cl_buf_consume(&c->frag, c->frag.len);
        }

        return 0;

    default:
        cl_lost(c, "unknown opcode");
        return -1;
    }
}


static int
cl_on_message(cl_conn_t *c, u_char *p, size_t n)
{
    switch (cf.proto) {

    case cl_proto_chat:
        return cl_chat_message(c, p, n);

    case cl_proto_sio:
        return cl_sio_message(c, p, n);

    default:
        if (c->state == cl_st_ready) {
            cl_delivery(c, p, n, 0);
        }

        return c->fd == -1 ? -1 : 0;
    }
}


static void
cl_write(cl_conn_t *c, const u_char *p, size_t n)
{
    ssize_t  sent;

    if (c->fd == -1) {
        return;
    }

    if (c->out.len == 0) {
        sent = send(c->fd, p, n, MSG_NOSIGNAL);

        if (sent == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                cl_lost(c, strerror(errno));
                return;
            }

            sent = 0;
        }

        p += sent;
        n -= (size_t) sent;
    }

    if (n) {
        cl_buf_append(&c->out, p, n);
    }
}


static void
cl_flush(cl_conn_t *c)
{
    ssize_t  sent;

    while (c->out.len) {
        sent = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);

        if (sent == -1) {
            if (errno == EINTR) {
                continue;
            }

            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                cl_lost(c, strerror(errno));
            }

            return;
        }

        cl_buf_consume(&c->out, (size_t) sent);
    }
}


/* a masked client frame */
static void
cl_ws_send(cl_conn_t *c, int op, const u_char *p, size_t n)
{
    size_t    hl, i;
    u_char   *f, mask[4];
    uint32_t  r;

    if (n + 14 > w.wbuf_size) {
        cl_lost(c, "message too large to send");
        return;
    }

    f = w.wbuf;
    f[0] = (u_char) (0x80 | op);

    if (n < 126) {
        f[1] = (u_char) (0x80 | n);
        hl = 2;

    } else {
        f[1] = 0x80 | 126;
        f[2] = (u_char) (n >> 8);
        f[3] = (u_char) n;
        hl = 4;
    }

    r = (uint32_t) cl_rand();
    memcpy(mask, &r, 4);
    memcpy(f + hl, mask, 4);
    hl += 4;

    for (i = 0; i < n; i++) {
        f[hl + i] = p[i] ^ mask[i & 3];
    }

    cl_write(c, f, hl + n);
}


static void
cl_ws_text(cl_conn_t *c, const char *p, size_t n)
{
    cl_ws_send(c, 0x1, (const u_char *) p, n);
}


static void
cl_fail(cl_conn_t *c, const char *fmt, ...)
{
    char     why[256];
    va_list  ap;

    /* once: a failed connection stays failed */
    if (c->state == cl_st_failed || c->state == cl_st_closed) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);

    if (w.fail_notes < CL_MAX_FAIL_NOTES) {
        w.fail_notes++;
        cl_note("connection %u failed: %s%s", c->index, why,
                w.fail_notes == CL_MAX_FAIL_NOTES ? " (no more such notes)"
                                                  : "");
    }

    cl_close_fd(c);
    c->state = cl_st_failed;
    w.connecting--;
    w.resolved++;

    if (c->resuming) {
        w.res.resume_failed++;
    } else {
        w.res.failed++;
    }
}


static void
cl_lost(cl_conn_t *c, const char *why)
{
    if (c->fd == -1) {
        return;
    }

    if (c->state != cl_st_ready) {
        cl_fail(c, "%s", why);
        return;
    }

    if (w.fail_notes < CL_MAX_FAIL_NOTES) {
        w.fail_notes++;
        cl_note("connection %u lost: %s", c->index, why);
    }

    cl_close_fd(c);
    c->state = cl_st_closed;
    w.res.dropped++;

    /* its messages in flight will not come back */
    c->inflight = 0;
}


static void
cl_close_fd(cl_conn_t *c)
{
    if (c->fd != -1) {
        close(c->fd);
        c->fd = -1;
    }

    c->in.len = 0;
    c->out.len = 0;
    c->frag.len = 0;
    c->frag_op = 0;
    c->step = cl_step_none;
}


static void
cl_set_ready(cl_conn_t *c)
{
    uint64_t  now;

    now = cl_now();
    c->state = cl_st_ready;
    c->step = cl_step_none;
    w.connecting--;
    w.resolved++;

    if (c->resuming) {
        w.res.resumed++;
        w.res.last_resumed_ns = now;
        c->resuming = 0;

    } else {
        w.res.connected++;
        w.res.last_ready_ns = now;
    }
}


/* ------------------------------------------------------------------------
 * Protocol "chat"
 */

static int
cl_chat_message(cl_conn_t *c, const u_char *p, size_t n)
{
    int64_t         v;
    uint64_t        now;
    const u_char   *end, *type, *id, *data, *obj, *body, *val;
    size_t          len;
    cl_conn_t      *peer;
    cl_ack_slot_t  *slot;

    end = p + n;
    type = cl_js_get(p, end, "type");

    if (type == NULL) {
        return 0;
    }

    if (cl_js_is(type, end, "\"message.created\"")) {
        obj = cl_js_get(p, end, "message");
        body = cl_js_get(obj, end, "body");

        if (cl_js_str(body, end, &body, &len) != 0) {
            return 0;
        }

        if (c->step == cl_step_sync) {
            cl_delivery(c, body, len, 1);

        } else if (c->state == cl_st_ready) {
            cl_delivery(c, body, len, 0);
        }

        return c->fd == -1 ? -1 : 0;
    }

    if (cl_js_is(type, end, "\"welcome\"")) {
        if (c->step != cl_step_welcome) {
            return 0;
        }

        if (c->resuming) {
            c->step = cl_step_sync;
            cl_chat_sync(c);

        } else if (cf.scenario >= cl_scen_pairs && c->index % 2 == 0) {
            c->step = cl_step_create;
            cl_chat_create(c);

        } else {
            cl_set_ready(c);
        }

        return c->fd == -1 ? -1 : 0;
    }

    if (cl_js_is(type, end, "\"ok\"")) {
        id = cl_js_get(p, end, "id");
        if (id == NULL) {
            return 0;
        }

        data = cl_js_get(p, end, "data");

        if (cl_js_is(id, end, "\"c\"") && c->step == cl_step_create) {
            obj = cl_js_get(data, end, "conversation");

            if (cl_js_int(cl_js_get(obj, end, "id"), end, &v) != 0 || v <= 0) {
                cl_fail(c, "conversation.create: no conversation id");
                return -1;
            }

            peer = &w.conns[(c->index ^ 1) - w.lo];
            c->cid = (uint64_t) v;
            peer->cid = (uint64_t) v;

            /* replays after this cursor are this run's messages */
            val = cl_js_get(obj, end, "last_seq");
            if (cl_js_int(val, end, &v) == 0 && v > 0) {
                c->cursor = (uint64_t) v;
                peer->cursor = (uint64_t) v;
            }

            cl_set_ready(c);
            return 0;
        }

        if (cl_js_is(id, end, "\"s\"") && c->step == cl_step_sync) {
            val = cl_js_get(data, end, "complete");

            if (cl_js_is(val, end, "true")) {
                cl_set_ready(c);

            } else {
                /*
                 * More pages.  Sync covers all of the user's
                 * conversations (those not named from 0), so go on from
                 * the cursors it returned, all of them.
                 */
                val = cl_js_get(data, end, "cursors");
                obj = cl_js_skip(val, end);

                if (obj == NULL || *val != '{') {
                    cl_fail(c, "sync: no cursors");
                    return -1;
                }

                cl_chat_sync_more(c, val, (size_t) (obj - val));
            }

            return c->fd == -1 ? -1 : 0;
        }

        if (cl_js_int(id, end, &v) == 0 && c->acks != NULL) {
            now = cl_now();
            slot = &c->acks[(uint64_t) v % cf.window];

            if (slot->seq == (uint64_t) v && slot->sent_ns) {
                cl_hist_add(&w.res.ack, (now - slot->sent_ns) / 1000);
                slot->sent_ns = 0;
                w.res.acked++;
                w.res.last_ack_ns = now;

                /* sends: in flight until the ok */
                if (cf.scenario == cl_scen_sends) {
                    cl_completed(c, now);
                }
            }
        }

        return c->fd == -1 ? -1 : 0;
    }

    if (cl_js_is(type, end, "\"error\"")) {
        id = cl_js_get(p, end, "id");

        if (w.error_notes < CL_MAX_FAIL_NOTES) {
            w.error_notes++;
            cl_note("connection %u: error reply: %.*s", c->index,
                    (int) (n > 300 ? 300 : n), p);
        }

        if (c->state != cl_st_ready) {
            cl_fail(c, "setup request refused");
            return -1;
        }

        if (cl_js_int(id, end, &v) == 0 && c->acks != NULL) {
            slot = &c->acks[(uint64_t) v % cf.window];

            if (slot->seq == (uint64_t) v && slot->sent_ns) {
                slot->sent_ns = 0;
                c->errors++;
                w.res.send_errors++;
                cl_completed(c, cl_now());
            }
        }

        return c->fd == -1 ? -1 : 0;
    }

    /* what members connecting cost others: presence is counted */
    if (cl_js_is(type, end, "\"presence\"")) {
        w.res.presence++;
    }

    /* conversation.created, receipts: not measured */
    return 0;
}


static void
cl_chat_create(cl_conn_t *c)
{
    int   n;
    char  buf[256];

    n = snprintf(buf, sizeof(buf),
                 "{\"type\":\"conversation.create\",\"id\":\"c\","
                 "\"kind\":\"direct\",\"user_id\":\"%s%u\"}",
                 cf.user_prefix, c->index + 1);

    cl_ws_text(c, buf, (size_t) n);
}


static void
cl_chat_sync(cl_conn_t *c)
{
    int   n;
    char  buf[256];

    n = snprintf(buf, sizeof(buf),
                 "{\"type\":\"sync\",\"id\":\"s\","
                 "\"conversations\":{\"%" PRIu64 "\":%" PRIu64 "}}",
                 c->cid, c->cursor);

    cl_ws_text(c, buf, (size_t) n);
}


static void
cl_chat_sync_more(cl_conn_t *c, const u_char *cursors, size_t len)
{
    int   n;
    char  buf[CL_MAX_BODY + 512];

    if (len > CL_MAX_BODY) {
        cl_fail(c, "sync: too many cursors");
        return;
    }

    n = snprintf(buf, sizeof(buf),
                 "{\"type\":\"sync\",\"id\":\"s\",\"conversations\":%.*s}",
                 (int) len, cursors);

    cl_ws_text(c, buf, (size_t) n);
}


/* ------------------------------------------------------------------------
 * Protocol "sio": Engine.IO 4 packets, one per WebSocket message
 */

static int
cl_sio_message(cl_conn_t *c, const u_char *p, size_t n)
{
    int            len;
    char           buf[128];
    const u_char  *end, *body;
    size_t         blen;

    if (n == 0) {
        return 0;
    }

    end = p + n;

    switch (p[0]) {

    case '0':
        /* open: connect to the main namespace */
        if (c->step == cl_step_sio_open) {
            c->step = cl_step_sio_connect;
            cl_ws_text(c, "40", 2);
        }

        break;

    case '2':
        cl_ws_text(c, "3", 1);
        break;

    case '1':
        cl_lost(c, "Engine.IO close packet");
        return -1;

    case '4':
        if (n < 2) {
            return 0;
        }

        switch (p[1]) {

        case '0':
            if (c->step != cl_step_sio_connect) {
                break;
            }

            if (cf.scenario == cl_scen_idle) {
                cl_set_ready(c);
                break;
            }

            /* joined once acknowledged: broadcasts then reach it */
            c->step = cl_step_sio_join;

            if (cf.scenario == cl_scen_room) {
                len = snprintf(buf, sizeof(buf), "421[\"join\",\"%s\"]",
                               cf.room);
            } else {
                len = snprintf(buf, sizeof(buf), "421[\"join\",\"p%u\"]",
                               c->index / 2);
            }

            cl_ws_text(c, buf, (size_t) len);
            break;

        case '3':
            if (c->step == cl_step_sio_join && n >= 3 && p[2] == '1') {
                cl_set_ready(c);
            }

            break;

        case '2':
            if (c->state != cl_st_ready
                || n < 13 || memcmp(p, "42[\"message\",", 13) != 0)
            {
                break;
            }

            body = cl_js_get(p + 13, end, "b");
            if (cl_js_str(body, end, &body, &blen) == 0) {
                cl_delivery(c, body, blen, 0);
            }

            break;

        case '1':
            cl_lost(c, "Socket.IO disconnect packet");
            return -1;

        case '4':
            cl_note("connection %u: Socket.IO error: %.*s", c->index,
                    (int) (n > 200 ? 200 : n), p);
            cl_lost(c, "Socket.IO connect error");
            return -1;
        }

        break;
    }

    return c->fd == -1 ? -1 : 0;
}


/* ------------------------------------------------------------------------
 * Messages: sending, deliveries
 */

static int
cl_is_sender(cl_conn_t *c)
{
    if (!c->ready_at_go) {
        return 0;
    }

    switch (cf.scenario) {

    case cl_scen_room:
        return c->index == 0;

    case cl_scen_pairs:
    case cl_scen_sends:
    case cl_scen_storm:
        return cf.proto != cl_proto_chat || c->cid != 0;

    default:
        return 0;
    }
}


static void
cl_try_send(cl_conn_t *c, uint64_t now)
{
    uint64_t  interval;

    if (w.phase != cl_ph_send || now >= w.send_end
        || c->state != cl_st_ready)
    {
        return;
    }

    if (cf.rate <= 0) {
        while (c->inflight < cf.window && c->fd != -1) {
            cl_send_message(c, now);
        }

        return;
    }

    if (c->heap != -1) {
        return;
    }

    if (c->next_send_ns > now) {
        cl_heap_push(c);
        return;
    }

    if (c->inflight >= cf.window) {
        c->blocked = 1;
        return;
    }

    c->blocked = 0;
    cl_send_message(c, now);

    interval = (uint64_t) (CL_NS / cf.rate);
    c->next_send_ns += interval;

    /* far behind (the window held it back): do not burst to catch up */
    if (c->next_send_ns + CL_NS < now) {
        c->next_send_ns = now;
    }

    cl_heap_push(c);
}


static void
cl_send_message(cl_conn_t *c, uint64_t now)
{
    int       n;
    char      body[CL_MAX_BODY + 1], msg[CL_MAX_BODY + 512];
    size_t    blen;
    uint64_t  seq;

    seq = c->seq;
    blen = cl_body(body, c->index, seq, now);

    switch (cf.proto) {

    case cl_proto_chat:
        if (c->acks == NULL) {
            c->acks = calloc(cf.window, sizeof(cl_ack_slot_t));
            if (c->acks == NULL) {
                cl_die("out of memory");
            }
        }

        c->acks[seq % cf.window].seq = seq;
        c->acks[seq % cf.window].sent_ns = now;

        n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"message.send\",\"id\":%" PRIu64 ","
                     "\"conversation_id\":%" PRIu64 ",\"body\":\"%s\","
                     "\"client_msg_id\":\"%s-%u-%" PRIu64 "\"}",
                     seq, cf.scenario == cl_scen_room ? cf.conv : c->cid,
                     body, cf.run, c->index, seq);
        break;

    case cl_proto_sio:
        if (cf.scenario == cl_scen_room) {
            n = snprintf(msg, sizeof(msg),
                         "42[\"message\",{\"room\":\"%s\",\"b\":\"%s\"}]",
                         cf.room, body);
        } else {
            n = snprintf(msg, sizeof(msg),
                         "42[\"message\",{\"room\":\"p%u\",\"b\":\"%s\"}]",
                         c->index / 2, body);
        }

        break;

    default:
        memcpy(msg, body, blen);
        n = (int) blen;
        break;
    }

    c->seq++;
    c->inflight++;
    w.res.sent++;

    if (w.res.first_send_ns == 0) {
        w.res.first_send_ns = now;
    }

    w.res.last_send_ns = now;

    cl_ws_text(c, msg, (size_t) n);
}


/*
 * "b:<run>:<sender>:<seq>:<CLOCK_MONOTONIC ns>:" padded with "x" to
 * --body-size: plain ASCII, nothing to escape in JSON.
 */
static size_t
cl_body(char *dst, uint32_t sender, uint64_t seq, uint64_t now)
{
    int  n;

    n = snprintf(dst, CL_MAX_BODY + 1, "b:%s:%u:%" PRIu64 ":%" PRIu64 ":",
                 cf.run, sender, seq, now);

    if ((uint32_t) n < cf.body_size) {
        memset(dst + n, 'x', cf.body_size - n);
        n = (int) cf.body_size;
        dst[n] = '\0';
    }

    return (size_t) n;
}


static void
cl_delivery(cl_conn_t *c, const u_char *p, size_t n, int replay)
{
    int            stream;
    uint64_t       sender, seq, ts, now, *fields[3];
    const u_char  *end;
    size_t         i;

    end = p + n;

    if (n < 12 || p[0] != 'b' || p[1] != ':' || memcmp(p + 2, cf.run, 8) != 0
        || p[10] != ':')
    {
        /* another run's message: a buffer or a conversation replayed */
        return;
    }

    p += 11;
    fields[0] = &sender;
    fields[1] = &seq;
    fields[2] = &ts;

    for (i = 0; i < 3; i++) {
        *fields[i] = 0;

        if (p >= end || *p < '0' || *p > '9') {
            w.res.unexpected++;
            return;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            *fields[i] = *fields[i] * 10 + (uint64_t) (*p++ - '0');
        }

        if (p >= end || *p++ != ':') {
            w.res.unexpected++;
            return;
        }
    }

    if (replay) {
        w.res.replayed++;
        c->replayed++;
        return;
    }

    if (cf.scenario == cl_scen_room) {
        stream = sender == 0 ? 0 : -1;

    } else {
        stream = sender == c->index ? 0
                 : sender == (c->index ^ 1) ? 1 : -1;
    }

    if (stream == -1) {
        w.res.unexpected++;
        return;
    }

    w.dump_index = c->index;
    w.dump_stream = stream;

    if (cl_track_seen(&c->track[stream], seq)) {
        w.res.duplicates++;
        return;
    }

    now = cl_now();

    c->received++;
    w.res.delivered++;
    w.res.last_delivery_ns = now;
    cl_hist_add(&w.res.latency, now > ts ? (now - ts) / 1000 : 0);

    /* the window closes on the sender's own copy (sends: on the ok) */
    if (sender == c->index && cf.scenario != cl_scen_sends) {
        cl_completed(c, now);
    }
}


static int
cl_track_seen(cl_track_t *t, uint64_t seq)
{
    uint64_t  s;

#define CL_BIT(s)  (t->bits[((s) % CL_TRACK_BITS) / 64]                    \
                    & (1ULL << ((s) % 64)))
#define CL_SET(s)  (t->bits[((s) % CL_TRACK_BITS) / 64]                    \
                    |= (1ULL << ((s) % 64)))
#define CL_CLR(s)  (t->bits[((s) % CL_TRACK_BITS) / 64]                    \
                    &= ~(1ULL << ((s) % 64)))

    if (seq < t->base) {
        return 1;
    }

    if (seq >= t->base + CL_TRACK_BITS) {
        /* what falls out of the window was missed */
        if (seq - t->base >= 2 * CL_TRACK_BITS) {
            memset(t->bits, 0, sizeof(t->bits));

        } else {
            for (s = t->base; s <= seq - CL_TRACK_BITS; s++) {
                if (w.dump_missing && !CL_BIT(s)) {
                    fprintf(stderr, "missing %u %d %" PRIu64 " skipped\n",
                            w.dump_index, w.dump_stream, s);
                }

                CL_CLR(s);
            }
        }

        t->base = seq - CL_TRACK_BITS + 1;
    }

    if (CL_BIT(seq)) {
        return 1;
    }

    CL_SET(seq);

    while (CL_BIT(t->base)) {
        CL_CLR(t->base);
        t->base++;
    }

#undef CL_BIT
#undef CL_SET
#undef CL_CLR

    return 0;
}


/* a message of c left the window */
static void
cl_completed(cl_conn_t *c, uint64_t now)
{
    if (c->inflight == 0) {
        return;
    }

    c->inflight--;

    if (w.phase != cl_ph_send) {
        return;
    }

    if (cf.rate <= 0) {
        cl_try_send(c, now);

    } else if (c->blocked) {
        c->blocked = 0;
        cl_try_send(c, now);
    }
}


static uint64_t
cl_pending_inflight(void)
{
    uint64_t    n;
    cl_conn_t  *c, *last;

    n = 0;
    last = w.conns + (w.hi - w.lo);

    for (c = w.conns; c < last; c++) {
        if (c->state == cl_st_ready) {
            n += c->inflight;
        }
    }

    return n;
}


/* ------------------------------------------------------------------------
 * The send schedule: a binary min-heap of next_send_ns
 */

static void
cl_heap_push(cl_conn_t *c)
{
    c->heap = (int) w.heap_n;
    w.heap[w.heap_n++] = c;
    cl_heap_up(w.heap_n - 1);
}


static cl_conn_t *
cl_heap_pop(void)
{
    cl_conn_t  *top;

    top = w.heap[0];
    top->heap = -1;

    w.heap_n--;

    if (w.heap_n) {
        w.heap[0] = w.heap[w.heap_n];
        w.heap[0]->heap = 0;
        cl_heap_down(0);
    }

    return top;
}


static void
cl_heap_up(uint32_t i)
{
    uint32_t    parent;
    cl_conn_t  *c;

    c = w.heap[i];

    while (i) {
        parent = (i - 1) / 2;

        if (w.heap[parent]->next_send_ns <= c->next_send_ns) {
            break;
        }

        w.heap[i] = w.heap[parent];
        w.heap[i]->heap = (int) i;
        i = parent;
    }

    w.heap[i] = c;
    c->heap = (int) i;
}


static void
cl_heap_down(uint32_t i)
{
    uint32_t    child;
    cl_conn_t  *c;

    c = w.heap[i];

    for ( ;; ) {
        child = 2 * i + 1;
        if (child >= w.heap_n) {
            break;
        }

        if (child + 1 < w.heap_n
            && w.heap[child + 1]->next_send_ns < w.heap[child]->next_send_ns)
        {
            child++;
        }

        if (c->next_send_ns <= w.heap[child]->next_send_ns) {
            break;
        }

        w.heap[i] = w.heap[child];
        w.heap[i]->heap = (int) i;
        i = child;
    }

    w.heap[i] = c;
    c->heap = (int) i;
}


/* ------------------------------------------------------------------------
 * The parent: forks the generators, keeps them in step, samples the
 * server, merges and prints.
 */

static int
cl_parent(void)
{
    int              i, to[CL_MAX_PROCS], from[CL_MAX_PROCS], p1[2], p2[2];
    int              status, rc, report;
    long             rss_before, rss_after;
    pid_t            pids[CL_MAX_PROCS];
    double           cpu, cpu0, cpu1, connect_s, settle, gen_cpu;
    struct rusage    ru;
    uint32_t         lo, hi, per;
    uint64_t         t_start, now, sum, drop_ns, sent_ns, seed;
    cl_result_t      total;
    struct timespec  ts;

    seed = cl_now() ^ ((uint64_t) getpid() << 20);
    snprintf(cf.run, sizeof(cf.run), "%08x",
             (unsigned) (seed ^ (seed >> 32)));

    rss_before = cl_server_rss();

    cl_note("%s %s: %u connections in %d process%s, %d source address%s, "
            "run %s", cl_proto_names[cf.proto], cl_scen_names[cf.scenario],
            cf.conns, cf.procs, cf.procs > 1 ? "es" : "", cf.src_count,
            cf.src_count > 1 ? "es" : "", cf.run);

    t_start = cl_now();
    per = cf.conns / cf.procs;

    for (i = 0; i < cf.procs; i++) {
        /* pairs stay in one process: boundaries on even numbers */
        lo = (uint32_t) i * per;
        hi = i == cf.procs - 1 ? cf.conns : (uint32_t) (i + 1) * per;

        if (cf.scenario >= cl_scen_pairs) {
            lo &= ~1u;
            if (i != cf.procs - 1) {
                hi &= ~1u;
            }
        }

        if (pipe(p1) == -1 || pipe(p2) == -1) {
            cl_die("pipe: %s", strerror(errno));
        }

        fflush(stderr);

        pids[i] = fork();

        if (pids[i] == -1) {
            cl_die("fork: %s", strerror(errno));
        }

        if (pids[i] == 0) {
            int  j;

            close(p1[1]);
            close(p2[0]);

            for (j = 0; j < i; j++) {
                close(to[j]);
                close(from[j]);
            }

            cl_raise_nofile();
            cl_worker_run(i, lo, hi, p1[0], p2[1]);
            _exit(0);
        }

        close(p1[0]);
        close(p2[1]);
        to[i] = p1[1];
        from[i] = p2[0];
    }

    memset(&total, 0, sizeof(total));

    rc = 1;
    report = 0;
    cpu = -1;
    rss_after = -1;
    drop_ns = 0;
    sent_ns = 0;

    if (cl_parent_wait(from, cf.procs, cl_ctl_ready, &sum, NULL) != 0) {
        goto failed;
    }

    now = cl_now();
    connect_s = (double) (now - t_start) / CL_NS;

    cl_note("connected %" PRIu64 " of %u in %.2f s", sum, cf.conns,
            connect_s);

    if (sum == 0) {
        /* nothing to measure: a setup failure */
        cl_note("no connection got ready");
        cl_parent_send(to, cf.procs, cl_ctl_abort, 0);

        if (cl_parent_wait(from, cf.procs, cl_ctl_done, &sum, &total) == 0) {
            rss_after = rss_before;
            report = 1;
        }

        goto failed;
    }

    /*
     * Idle: what the connections cost once the server settled.  Others:
     * --settle lets the server finish what the connects caused (chat:
     * presence events to those who watch a member).
     */
    settle = cf.settle;
    if (cf.scenario == cl_scen_idle && settle < 2) {
        settle = 2;
    }

    if (settle > 0) {
        cl_note("settling for %g s", settle);
        ts.tv_sec = (time_t) settle;
        ts.tv_nsec = (long) ((settle - (double) ts.tv_sec) * 1e9);

        while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
            /* the rest of it */
        }
    }

    rss_after = cl_server_rss();
    cpu0 = cl_server_cpu();

    cl_parent_send(to, cf.procs, cl_ctl_go, cl_now());

    switch (cf.scenario) {

    case cl_scen_room:
    case cl_scen_pairs:
    case cl_scen_sends:
        if (cl_parent_wait(from, cf.procs, cl_ctl_sent, &sum, NULL) != 0) {
            goto failed;
        }

        sent_ns = cl_now();
        cl_note("sent %" PRIu64 "; draining", sum);
        cl_parent_send(to, cf.procs, cl_ctl_expect, sum);
        break;

    case cl_scen_storm:
        if (cl_parent_wait(from, cf.procs, cl_ctl_exchanged, &sum, NULL)
            != 0)
        {
            goto failed;
        }

        cpu0 = cl_server_cpu();
        drop_ns = cl_now();
        cl_note("dropping every connection");
        cl_parent_send(to, cf.procs, cl_ctl_drop, drop_ns);
        break;

    default:
        break;
    }

    if (cl_parent_wait(from, cf.procs, cl_ctl_done, &sum, &total) != 0) {
        goto failed;
    }

    cpu1 = cl_server_cpu();
    cpu = cf.nserver_pids ? cpu1 - cpu0 : -1;
    report = 1;

    /* the scenario ran, whatever it found */
    rc = 0;

failed:

    for (i = 0; i < cf.procs; i++) {
        close(to[i]);
        close(from[i]);
    }

    for (i = 0; i < cf.procs; i++) {
        if (waitpid(pids[i], &status, 0) == pids[i]
            && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        {
            cl_note("generator %d exited abnormally (status %d)", i, status);
            rc = 1;
        }
    }

    if (report) {
        /* the generators' own CPU: were they the bottleneck? */
        getrusage(RUSAGE_CHILDREN, &ru);
        gen_cpu = (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
                  + (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;

        cl_print_json(&total, cpu, rss_before, rss_after, connect_s, drop_ns,
                      sent_ns, gen_cpu);
    }

    return rc;
}


/*
 * Wait for one message of type from every generator.  sum: the total of
 * their "a" fields; res: for cl_ctl_done, the merged results.
 */
static int
cl_parent_wait(int *from, int n, uint32_t type, uint64_t *sum,
    cl_result_t *res)
{
    int            i, left, got[CL_MAX_PROCS];
    u_char        *p;
    size_t         need;
    ssize_t        r;
    cl_ctl_t       m;
    cl_result_t   *part;
    struct pollfd  pfd[CL_MAX_PROCS];

    if (n <= 0 || n > CL_MAX_PROCS) {
        return -1;
    }

    part = NULL;
    if (res != NULL) {
        part = malloc(sizeof(cl_result_t));
        if (part == NULL) {
            cl_die("out of memory");
        }
    }

    *sum = 0;
    left = n;

    for (i = 0; i < n; i++) {
        got[i] = 0;
        pfd[i].fd = from[i];
        pfd[i].events = POLLIN;
    }

    while (left) {
        for (i = 0; i < n; i++) {
            pfd[i].fd = got[i] ? -1 : from[i];
            pfd[i].revents = 0;
        }

        if (poll(pfd, (nfds_t) n, -1) == -1) {
            if (errno == EINTR) {
                continue;
            }

            cl_die("poll: %s", strerror(errno));
        }

        for (i = 0; i < n; i++) {
            if (pfd[i].revents == 0) {
                continue;
            }

            r = read(from[i], &m, sizeof(m));

            if (r != (ssize_t) sizeof(m) || m.type != type) {
                cl_note("generator %d: %s", i,
                        r == 0 ? "exited early" : "out of step");
                free(part);
                return -1;
            }

            *sum += m.a;

            if (res != NULL) {
                p = (u_char *) part;
                need = sizeof(cl_result_t);

                while (need) {
                    r = read(from[i], p, need);
                    if (r <= 0) {
                        if (r == -1 && errno == EINTR) {
                            continue;
                        }

                        cl_note("generator %d: results cut short", i);
                        free(part);
                        return -1;
                    }

                    p += r;
                    need -= (size_t) r;
                }

                cl_merge(res, part);
            }

            got[i] = 1;
            left--;
        }
    }

    free(part);

    return 0;
}


static void
cl_parent_send(int *to, int n, uint32_t type, uint64_t a)
{
    int       i;
    cl_ctl_t  m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.a = a;

    for (i = 0; i < n; i++) {
        if (write(to[i], &m, sizeof(m)) != (ssize_t) sizeof(m)) {
            cl_die("control pipe: %s", strerror(errno));
        }
    }
}


static void
cl_merge(cl_result_t *dst, cl_result_t *src)
{
#define CL_ADD(f)  dst->f += src->f
#define CL_MAX(f)  if (src->f > dst->f) dst->f = src->f
#define CL_MIN(f)  if (src->f && (dst->f == 0 || src->f < dst->f))          \
                       dst->f = src->f

    CL_ADD(connected);
    CL_ADD(failed);
    CL_ADD(dropped);
    CL_ADD(receivers);
    CL_ADD(sent);
    CL_ADD(send_errors);
    CL_ADD(acked);
    CL_ADD(expected);
    CL_ADD(delivered);
    CL_ADD(duplicates);
    CL_ADD(unexpected);
    CL_ADD(presence);
    CL_ADD(resumed);
    CL_ADD(resume_failed);
    CL_ADD(replayed);
    CL_ADD(replay_expected);
    CL_MIN(first_connect_ns);
    CL_MAX(last_ready_ns);
    CL_MIN(first_send_ns);
    CL_MAX(last_send_ns);
    CL_MAX(last_delivery_ns);
    CL_MAX(last_ack_ns);
    CL_MAX(last_resumed_ns);

#undef CL_ADD
#undef CL_MAX
#undef CL_MIN

    cl_hist_merge(&dst->latency, &src->latency);
    cl_hist_merge(&dst->ack, &src->ack);
}


/* ------------------------------------------------------------------------
 * The server's processes
 */

static int
cl_proc_stat(int pid, int *ppid, uint64_t *ticks)
{
    int                 fd, field;
    char                buf[1024], *p, *tok, *save;
    ssize_t             n;
    unsigned long long  ut, st;

    snprintf(buf, sizeof(buf), "/proc/%d/stat", pid);

    fd = open(buf, O_RDONLY);
    if (fd == -1) {
        return -1;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);

    if (n <= 0) {
        return -1;
    }

    buf[n] = '\0';

    /* the command name may hold spaces and parentheses */
    p = strrchr(buf, ')');
    if (p == NULL) {
        return -1;
    }

    ut = 0;
    st = 0;
    field = 3;

    for (tok = strtok_r(p + 1, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save), field++)
    {
        if (field == 4 && ppid != NULL) {
            *ppid = atoi(tok);

        } else if (field == 14) {
            ut = strtoull(tok, NULL, 10);

        } else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }

    if (ticks != NULL) {
        *ticks = ut + st;
    }

    return 0;
}


/* calls fn for every --server-pids process, with the children of PID+ */
static void
cl_server_procs(void (*fn)(int pid, void *data), void *data)
{
    int             i, pid, ppid, tree;
    DIR            *dir;
    struct dirent  *de;

    tree = 0;

    for (i = 0; i < cf.nserver_pids; i++) {
        fn(cf.server_pids[i], data);
        tree |= cf.server_pid_tree[i];
    }

    if (!tree) {
        return;
    }

    dir = opendir("/proc");
    if (dir == NULL) {
        return;
    }

    while ((de = readdir(dir)) != NULL) {
        if (!isdigit((u_char) de->d_name[0])) {
            continue;
        }

        pid = atoi(de->d_name);
        if (cl_proc_stat(pid, &ppid, NULL) != 0) {
            continue;
        }

        for (i = 0; i < cf.nserver_pids; i++) {
            if (cf.server_pid_tree[i] && cf.server_pids[i] == ppid) {
                fn(pid, data);
                break;
            }
        }
    }

    closedir(dir);
}


static void
cl_add_cpu(int pid, void *data)
{
    uint64_t  ticks;

    if (cl_proc_stat(pid, NULL, &ticks) == 0) {
        *(uint64_t *) data += ticks;
    }
}


static double
cl_server_cpu(void)
{
    uint64_t  ticks;

    ticks = 0;
    cl_server_procs(cl_add_cpu, &ticks);

    return (double) ticks / (double) sysconf(_SC_CLK_TCK);
}


/*
 * The proportional set size: pages shared by several processes (the
 * zone, the code) count once across them, as a sum of VmRSS would not.
 * Kernels without smaps_rollup: VmRSS.
 */

static void
cl_add_rss(int pid, void *data)
{
    char   path[64], line[256];
    FILE  *f;

    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);

    f = fopen(path, "r");
    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "Pss:", 4) == 0) {
                *(long *) data += strtol(line + 4, NULL, 10);
                fclose(f);
                return;
            }
        }

        fclose(f);
    }

    snprintf(path, sizeof(path), "/proc/%d/status", pid);

    f = fopen(path, "r");
    if (f == NULL) {
        return;
    }

    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            *(long *) data += strtol(line + 6, NULL, 10);
            break;
        }
    }

    fclose(f);
}


static long
cl_server_rss(void)
{
    long  kb;

    if (cf.nserver_pids == 0) {
        return -1;
    }

    kb = 0;
    cl_server_procs(cl_add_rss, &kb);

    return kb;
}


/* ------------------------------------------------------------------------
 * The report
 */

static void
cl_print_hist(const char *name, cl_hist_t *h)
{
    printf(",\n  \"%s\": {\"count\": %" PRIu64 ", \"p50\": %" PRIu64
           ", \"p90\": %" PRIu64 ", \"p99\": %" PRIu64 ", \"max\": %" PRIu64
           ", \"mean\": %.0f}",
           name, h->count, cl_hist_pct(h, 0.50), cl_hist_pct(h, 0.90),
           cl_hist_pct(h, 0.99), h->max,
           h->count ? (double) h->sum / (double) h->count : 0.0);
}


static void
cl_print_json(cl_result_t *r, double cpu, long rss_before, long rss_after,
    double connect_s, uint64_t drop_ns, uint64_t sent_ns, double gen_cpu)
{
    int      chat;
    double   span, rate;
    int64_t  missing;

    chat = cf.proto == cl_proto_chat;

    printf("{\n  \"proto\": \"%s\", \"scenario\": \"%s\", \"conns\": %u, "
           "\"procs\": %d, \"src_count\": %d,\n"
           "  \"duration_s\": %g, \"drain_s\": %g, \"body_size\": %u, "
           "\"run\": \"%s\",\n"
           "  \"connected\": %" PRIu64 ", \"failed\": %" PRIu64
           ", \"dropped\": %" PRIu64 ", \"connect_s\": %.3f",
           cl_proto_names[cf.proto], cl_scen_names[cf.scenario], cf.conns,
           cf.procs, cf.src_count, cf.duration, cf.drain, cf.body_size,
           cf.run, r->connected, r->failed, r->dropped, connect_s);

    /* without --server-pids the server figures are null */
    if (cf.nserver_pids) {
        printf(",\n  \"rss_before_kb\": %ld, \"rss_after_kb\": %ld",
               rss_before, rss_after);

        if (cf.scenario == cl_scen_idle && r->connected) {
            printf(", \"rss_per_conn_bytes\": %.0f",
                   (double) (rss_after - rss_before) * 1024
                   / (double) r->connected);
        }

        printf(",\n  \"server_cpu_s\": %.3f", cpu);

    } else {
        printf(",\n  \"rss_before_kb\": null, \"rss_after_kb\": null");

        if (cf.scenario == cl_scen_idle) {
            printf(", \"rss_per_conn_bytes\": null");
        }

        printf(",\n  \"server_cpu_s\": null");
    }

    printf(", \"generator_cpu_s\": %.3f", gen_cpu);

    if (cf.scenario == cl_scen_idle) {
        printf("\n}\n");
        fflush(stdout);
        return;
    }

    if (cf.scenario != cl_scen_storm) {
        printf(", \"rate\": %g, \"window\": %u", cf.rate, cf.window);
    }

    missing = (int64_t) r->expected - (int64_t) r->delivered;

    printf(",\n  \"receivers\": %" PRIu64 ", \"sent\": %" PRIu64
           ", \"send_errors\": %" PRIu64 ", \"expected\": %" PRIu64
           ", \"delivered\": %" PRIu64 ", \"missing\": %" PRId64
           ", \"duplicates\": %" PRIu64 ", \"unexpected\": %" PRIu64
           ", \"presence_frames\": %" PRIu64,
           r->receivers, r->sent, r->send_errors, r->expected, r->delivered,
           missing, r->duplicates, r->unexpected, r->presence);

    span = r->last_delivery_ns > r->first_send_ns && r->first_send_ns
           ? (double) (r->last_delivery_ns - r->first_send_ns) / CL_NS : 0;
    rate = span > 0 ? (double) r->delivered / span : 0;

    printf(",\n  \"deliveries_per_s\": %.1f", rate);

    /* CLOCK_MONOTONIC: a caller can time what the server does after */
    if (sent_ns) {
        printf(", \"sent_at_s\": %.3f", (double) sent_ns / CL_NS);
    }

    if (cf.scenario != cl_scen_storm && cpu > 0) {
        printf(", \"deliveries_per_server_cpu_s\": %.1f",
               (double) r->delivered / cpu);

    } else if (cf.scenario != cl_scen_storm) {
        printf(", \"deliveries_per_server_cpu_s\": null");
    }

    cl_print_hist("latency_us", &r->latency);

    if (chat) {
        span = r->last_ack_ns > r->first_send_ns && r->first_send_ns
               ? (double) (r->last_ack_ns - r->first_send_ns) / CL_NS : 0;

        printf(",\n  \"acked\": %" PRIu64 ", \"acks_per_s\": %.1f",
               r->acked, span > 0 ? (double) r->acked / span : 0.0);

        cl_print_hist("ack_latency_us", &r->ack);
    }

    if (cf.scenario == cl_scen_storm) {
        printf(",\n  \"resumed\": %" PRIu64 ", \"resume_failed\": %" PRIu64
               ", \"replayed\": %" PRIu64 ", \"replay_expected\": %" PRIu64
               ", \"resume_s\": %.3f",
               r->resumed, r->resume_failed, r->replayed, r->replay_expected,
               r->last_resumed_ns > drop_ns
               ? (double) (r->last_resumed_ns - drop_ns) / CL_NS : 0.0);
    }

    printf("\n}\n");
    fflush(stdout);
}
