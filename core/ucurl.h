/* ucurl.h -- https upstream calls for uclient.c: libcurl's multi socket
 * API driven by the worker's own loop (its sockets in the loop's epoll, its
 * timer in the loop's timer heap). libcurl keeps the TLS connections alive
 * and reuses them; no thread is started.
 *
 * Internal to uclient.c, which hands it every call whose origin is https;
 * the ucall contract (uclient.h) holds unchanged: done runs once, later, on
 * the loop thread, unless cancelled. */
#ifndef KAPI_UCURL_H
#define KAPI_UCURL_H

#include "loop.h"
#include "uclient.h"

typedef struct ucurl ucurl;

kapi_status ucurl_new(loop *lp, ucurl **out);
/* Drops calls in flight without done and frees libcurl's handles. */
void ucurl_free(ucurl *u);
kapi_status ucurl_start(ucurl *u, ucall *call);
void ucurl_cancel(ucurl *u, ucall *call);
/* Frees the results ucurl attached to CALL (headers, body). */
void ucurl_release(ucall *call);

#endif /* KAPI_UCURL_H */
