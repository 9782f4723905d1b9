/* tserver.h -- a loopback HTTP/1.1 server for unit tests, run in threads of
 * the test on 127.0.0.1 and an ephemeral port, and a config_upstream
 * fixture whose targets point at such servers.
 *
 * A server either runs the test's behaviour (a function serving one
 * connection with the reads and writes below) or a script (answer, close
 * without answering, answer late) the test changes at any time. It counts
 * accepted connections and fully read requests exactly, and keeps each
 * request's arrival time and the raw bytes of the last one. It does not
 * speak chunked requests, TLS nor HTTP/2, and checks nothing the client
 * sends beyond the request line and Content-Length: asserting is the
 * test's job. */
#ifndef KAPI_TESTS_TSERVER_H
#define KAPI_TESTS_TSERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define TSERVER_MAX_CONNS 64    /* connection threads over a server's life */
#define TSERVER_HEAD_MAX 16384  /* a request head larger than this is dropped */
#define TSERVER_REC_MAX 8192    /* raw request bytes kept (head, then body) */
#define TSERVER_MAX_ARRIVALS 64 /* request arrival times kept */

/* The script: what a scripted server does with each request (one per
 * connection, Connection: close). */
typedef enum tserver_mode {
    TSERVER_ANSWER = 0, /* STATUS, X-Upstream: yes, X-Served-By: <port>, body "hello" */
    TSERVER_CLOSE,      /* read the request, close without answering */
    TSERVER_DELAY,      /* answer after DELAY_MS unless the client closes first */
} tserver_mode;

/* One request as read. */
typedef struct tserver_req {
    char method[16];
    char target[256];
    size_t clen;               /* Content-Length, 0 when none */
    char rec[TSERVER_REC_MAX]; /* raw bytes, head then body, cut at TSERVER_REC_MAX */
    size_t rec_len;
    uint64_t body_hash; /* FNV-1a of the body (tserver_fnv1a from TSERVER_FNV_INIT) */
} tserver_req;

typedef struct tserver tserver;

/* One accepted connection, handed to a behaviour; owned by the server. */
typedef struct tserver_conn {
    tserver *s;
    int fd;   /* -1 once tserver_close or tserver_rst closed it */
    int id;   /* 1 for the server's first connection, 2 for the next… */
    int nreq; /* requests fully read on this connection */
    tserver_req req;
    char buf[TSERVER_HEAD_MAX + 1];
    size_t len;
} tserver_conn;

/* Serves connection C until it returns; the server closes C's fd then,
 * unless the behaviour did. DATA is tserver_opts.data. */
typedef void (*tserver_fn)(tserver_conn *c, void *data);

typedef struct tserver_opts {
    tserver_fn serve; /* NULL: the script */
    void *data;
    /* One connection at a time on the accepting thread, each read waiting
     * 2 s at most (so one silent client cannot hold the rest); else a
     * thread per connection whose reads wait until the stop. */
    bool serial;
} tserver_opts;

struct tserver {
    uint16_t port;
    /* Counters the test reads with atomic_load. */
    atomic_int accepted;
    atomic_int active; /* connections being served */
    atomic_int max_active;
    atomic_int requests;      /* requests read in full */
    atomic_int early_closes;  /* the client closed while tserver_hold held the answer */
    atomic_int answers_ok;    /* script answers with a status in 200..399 */
    atomic_int answers_error; /* script answers with any other status */
    atomic_int peer_port;     /* the client port of the last connection accepted */
    /* The script. */
    atomic_int mode;
    atomic_int status;
    atomic_int delay_ms;
    /* Internal. */
    tserver_opts opts;
    int lfd;
    atomic_bool stopping;
    pthread_t acceptor;
    pthread_mutex_t mu; /* guards what follows */
    pthread_t threads[TSERVER_MAX_CONNS];
    int nthreads;
    uint64_t arrivals[TSERVER_MAX_ARRIVALS];
    char last[TSERVER_REC_MAX];
    size_t last_len;
};

/* Starts S listening on 127.0.0.1 and a free port (S->port). OPTS may be
 * NULL: the script, a thread per connection. The script starts as
 * TSERVER_ANSWER 200. Fails the test when it cannot. */
void tserver_start(tserver *s, const tserver_opts *opts);

/* Stops accepting, wakes every read and hold, joins every thread. */
void tserver_stop(tserver *s);

/* Stops listening, the server still running: new connects are refused. */
void tserver_unlisten(tserver *s);

/* Sets the script for the requests that arrive from now on. */
void tserver_script(tserver *s, tserver_mode mode, int status, int delay_ms);

int tserver_requests(tserver *s);

/* When request K (0 for the first) was read in full, on tserver_now_ms's
 * clock; K < TSERVER_MAX_ARRIVALS. */
uint64_t tserver_arrival(tserver *s, int k);

/* Copies the last request's raw bytes into OUT, NUL-terminated; their
 * length. */
size_t tserver_last(tserver *s, char *out, size_t cap);

/* A socket listening on 127.0.0.1 and a free port (*PORT) with BACKLOG;
 * the caller closes it. Fails the test when it cannot. */
int tserver_listener(int backlog, uint16_t *port);

/* A 127.0.0.1 port nobody listens on: connects are refused. */
uint16_t tserver_refused_port(void);

/* ---- for behaviours ----------------------------------------------------- */

/* Reads the next request on C: its head, then its Content-Length body.
 * The request (borrowed until the next read on C), NULL at EOF, error,
 * timeout or stop. */
const tserver_req *tserver_read(tserver_conn *c);

/* The two halves of tserver_read, for a behaviour that pauses between. */
const tserver_req *tserver_read_head(tserver_conn *c);
bool tserver_read_body(tserver_conn *c);

/* Sends all of DATA; false when the client is gone. */
bool tserver_send(tserver_conn *c, const void *data, size_t len);

/* Waits up to MS for the client to close C; true when it did (counted in
 * early_closes) or the server stops, false when the time is up. */
bool tserver_hold(tserver_conn *c, int ms);

/* Closes C without answering: a FIN. */
void tserver_close(tserver_conn *c);

/* Closes C with an RST (SO_LINGER 0). */
void tserver_rst(tserver_conn *c);

#define TSERVER_FNV_INIT 0xcbf29ce484222325ull
uint64_t tserver_fnv1a(uint64_t h, const void *data, size_t len);

/* A monotonic clock in ms, the one arrivals are stamped with. */
uint64_t tserver_now_ms(void);

/* ---- the upstream fixture ----------------------------------------------- */

#define TSERVER_MAX_TARGETS 4

/* A config_upstream named NAME with targets http://127.0.0.1:<port>, and
 * the storage its pointers borrow: keep it alive while a group built from
 * it lives. */
typedef struct tserver_upstream {
    config_upstream cu;
    config_target ct[TSERVER_MAX_TARGETS];
    char url[TSERVER_MAX_TARGETS][64];
    char json_path[TSERVER_MAX_TARGETS][48];
} tserver_upstream;

/* Fills U: N targets at PORTS (json_path "upstreams.NAME.targets[i]", line
 * 1, col 1), round robin, config.h's documented defaults otherwise except
 * a 1 MiB response limit. NAME is borrowed for U's life. A test changes
 * what it needs before upstream_build. */
void tserver_upstream_config(tserver_upstream *u, const char *name, size_t n,
                             const uint16_t *ports);

#endif
