/* server.h -- the HTTP front end: N worker threads, each with its own epoll
 * loop driving its own libmicrohttpd daemons (external epoll mode) on
 * SO_REUSEPORT sockets; a request stays on its thread from first byte to
 * log line. Also the host's pause/resume, which suspend and resume MHD
 * connections.
 *
 * It does not build generations (generation.c) nor handle signals
 * (main.c); it takes the current generation at each request's start. */
#ifndef KAPI_SERVER_H
#define KAPI_SERVER_H

#include <kapi/host.h>

#include "config.h"

typedef struct server server;

/* Opens every listener's sockets (one per worker, SO_REUSEPORT; an
 * ephemeral port is chosen once and shared) per CFG. The listeners, thread
 * count and connection limits are fixed for the server's life; reload
 * changes routes, modules and the per-request limits. */
kapi_status server_new(const config *cfg, server **out, char *err, size_t errlen);

/* The port listener I is bound to (after server_new). */
unsigned server_port(const server *s, size_t i);

/* Starts the worker threads. */
kapi_status server_start(server *s);

/* Tells every worker that a new generation was published, so each drops
 * its reference to the previous one right away. Any thread. */
void server_refresh(server *s);

/* Stops accepting new connections (SIGTERM's first step); from now on every
 * answer carries Connection: close and idle keep-alive connections are cut
 * after a second. Any thread. */
void server_drain(server *s);
/* Requests that have started and not yet finished logging. */
unsigned server_inflight(const server *s);
/* Open client connections. */
unsigned server_connections(const server *s);
/* Answers every request still paused with 503 (the drain deadline passed).
 * Any thread; the answers go out on the workers' next iteration. */
void server_abort_paused(server *s);

/* Stops the workers, closes every connection and joins the threads. */
void server_stop(server *s);
void server_free(server *s);

/* The generation request R started in (a borrowed reference, held by R). */
struct generation *server_req_generation(kapi_req *r);
/* Keeps R's memory allocated until the matching server_req_unhold, even
 * after R was answered and logged (a subrequest's completion may still
 * come). Loop thread only. */
void server_req_hold(kapi_req *r);
void server_req_unhold(kapi_req *r);

/* The host table's pause and resume (see kapi/host.h). */
kapi_status server_pause(kapi_req *r, uint32_t timeout_ms, kapi_token **out);
kapi_status server_resume(kapi_token *token);

#endif /* KAPI_SERVER_H */
