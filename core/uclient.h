/* uclient.h -- the upstream HTTP client of one worker loop: keep-alive
 * connection pools per origin, registered in the loop's epoll for their
 * whole life, requests written by kapi and responses read by http1.c;
 * https origins go through libcurl's multi socket API on the same loop
 * (ucurl.c). Nothing here blocks and nothing runs on another thread.
 *
 * One call is one try against one origin. Choosing the target, retrying on
 * another one, breakers and health are the caller's (proxy.c, health.c);
 * the one retry made here is the safe one: a request that failed on a
 * reused keep-alive connection before any response byte arrived is sent
 * again on a fresh connection when the write itself failed or the call is
 * idempotent, because the backend had closed that connection while idle. */
#ifndef KAPI_UCLIENT_H
#define KAPI_UCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kapi/types.h>

#include "dlist.h"
#include "http1.h"
#include "loop.h"
#include "origin.h"

typedef struct uclient uclient;

typedef enum ucall_error {
    UCALL_OK = 0,
    UCALL_ECONNECT, /* connection refused or unreachable: nothing was sent */
    UCALL_ETIMEOUT, /* the try's deadline passed (connect, queue or response); see sent */
    UCALL_ERESET,   /* the connection closed or reset before the response was complete */
    UCALL_EPROTO,   /* the response was malformed (or TLS failed) */
    UCALL_ETOOBIG,  /* the response body exceeds max_response_bytes */
    UCALL_ENOMEM,   /* out of memory or file descriptors */
} ucall_error;

typedef struct ucall {
    /* ---- in: set before uclient_start; borrowed until done runs or the call is cancelled ---- */
    const origin *origin;
    kapi_str method;            /* "GET" */
    kapi_str target;            /* origin-form path and query: "/v1/users?id=3" */
    const kapi_header *headers; /* sent as given (Host included); no Content-Length or
                                   Transfer-Encoding: the body is sent with a length */
    size_t nheaders;
    kapi_str body;
    bool idempotent;             /* may be resent after a stale keep-alive connection */
    unsigned connect_timeout_ms; /* 0: no separate connect deadline */
    unsigned timeout_ms;         /* the whole try: waiting for a pool slot, connect, send, response;
                                    0: no deadline */
    unsigned
        keepalive; /* idle connections the origin's pool keeps (the latest call's value wins) */
    unsigned max_connections;  /* open connections to the origin from this loop; 0: no limit */
    size_t max_response_bytes; /* body limit (UCALL_ETOOBIG above) */
    bool tls_verify;           /* https: verify the certificate and host name */
    const char *tls_ca_file;   /* https: CA bundle, NULL for the system's */
    void (*done)(struct ucall *call); /* on the loop thread, never inside uclient_start */
    void *data;                       /* the caller's */

    /* ---- out: valid when done runs, until ucall_release ---- */
    ucall_error error;
    bool sent;   /* some request bytes were written: a non-idempotent request must not be retried */
    bool reused; /* the try ran on a pooled keep-alive connection */
    int status;
    kapi_header *resp_headers; /* hop-by-hop ones included: filtering is the caller's */
    size_t nresp_headers;
    char *resp_body; /* owned by the call; ucall_take_body hands it over */
    size_t resp_body_len;
    const char *detail; /* static text for the log, e.g. "connection refused" */

    /* ---- private ---- */
    uclient *client;
    struct uconn *conn;
    dlist_node wait; /* on the pool's queue of calls waiting for a slot, or on
                        the client's failures awaiting their 0 ms timer */
    loop_timer timer;
    http1_response resp;
    void *curl; /* ucurl.c's state for https */
    unsigned attempts;
    bool active;
} ucall;

/* A client for the loop LP (the loop thread's own). */
kapi_status uclient_new(loop *lp, uclient **out);
/* Closes every connection; calls still in flight are dropped without done. */
void uclient_free(uclient *c);

/* Starts CALL (all "in" fields set; the private ones need no init). On
 * KAPI_OK done runs exactly once, later, unless the call is cancelled
 * first. On failure (KAPI_ENOMEM, KAPI_EINVAL) done never runs. */
kapi_status uclient_start(uclient *c, ucall *call);

/* Abandons CALL: done never runs; a connection carrying its request is
 * closed (never reused with a response half read). No-op once done ran. */
void uclient_cancel(ucall *call);

/* Frees what the call's results own. Safe on a call that never ran. */
void ucall_release(ucall *call);

/* Hands the body buffer to the caller (free() it); the call then owns none. */
char *ucall_take_body(ucall *call, size_t *len);

/* Counters of one origin's pool in this client, for tests and metrics. */
typedef struct uclient_stats {
    uint64_t opened;   /* connections ever opened */
    uint64_t requests; /* requests written */
    unsigned open;     /* open now (busy + idle) */
    unsigned idle;     /* idle in the pool now */
    unsigned waiting;  /* calls queued for a slot now */
} uclient_stats;
void uclient_stats_get(const uclient *c, const origin *o, uclient_stats *out);

/* The loop C runs on. */
loop *uclient_loop(const uclient *c);

/* The client of the calling loop thread (set by the worker that owns it). */
uclient *uclient_current(void);
void uclient_set_current(uclient *c);

#endif /* KAPI_UCLIENT_H */
