/* exchange.h -- one logical upstream request: a try on a target chosen by
 * the group, retries where safe (idempotent methods, or nothing sent) on
 * another target after a short backoff, the per-try and total deadlines,
 * and the translation of what went wrong into the gateway's status.
 *
 * Runs on the calling loop thread through its uclient. Used by the proxy
 * target (proxy.c) and by modules' subrequests (fetch.c). It builds no
 * headers from a client request and writes no response: its caller does. */
#ifndef KAPI_EXCHANGE_H
#define KAPI_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>

#include <kapi/types.h>

#include "loop.h"
#include "uclient.h"
#include "upstream.h"

typedef struct exchange exchange;

typedef struct exchange_spec {
    upstream *group;               /* the targets; NULL with ORIGIN for a single URL */
    const origin *origin;          /* when GROUP is NULL */
    const config_upstream *limits; /* timeouts, retries, pool sizes (the group's or defaults) */
    kapi_str method;
    kapi_str path;              /* origin-form path and query, without the target's base path */
    const kapi_header *headers; /* without Host: the exchange adds it per target */
    size_t nheaders;
    kapi_str host; /* Host to send; empty: each target's own authority */
    kapi_str body;
    kapi_str hash_key;   /* for hash balancing */
    uint32_t timeout_ms; /* total; 0: limits->timeout_ms */
    const char *id;      /* request id for the log, borrowed until done */
    void (*done)(exchange *x, void *data);
    void *data;
} exchange_spec;

/* The result, valid in done until exchange_free. */
typedef struct exchange_result {
    int status;                 /* the upstream's status; 0 when it failed */
    int error_status;           /* the gateway's answer when status is 0: 502, 503 or 504 */
    const char *error;          /* client-safe text for error_status */
    uint32_t retry_after_s;     /* 503: a Retry-After, at least 1 */
    const kapi_header *headers; /* the upstream's response headers, unfiltered */
    size_t nheaders;
    char *body; /* owned by the exchange until exchange_take_body */
    size_t body_len;
    unsigned tries;
    unsigned elapsed_ms;    /* from exchange_start to done */
    const char *target_url; /* the last target tried (for the log, never for clients) */
} exchange_result;

/* Starts an exchange on the calling loop thread's uclient. SPEC and every
 * view in it are borrowed until done runs. done runs once, later, on this
 * thread, unless exchange_cancel is called first. */
kapi_status exchange_start(const exchange_spec *spec, exchange **out);
const exchange_result *exchange_result_get(const exchange *x);
char *exchange_take_body(exchange *x, size_t *len);
/* Stops X (done never runs) and frees it. */
void exchange_cancel(exchange *x);
/* Frees X after done. */
void exchange_free(exchange *x);

/* Ends every exchange of the calling loop thread now with 503 ("the
 * gateway is shutting down"): their done callbacks run before it returns.
 * For the drain deadline and worker exit. */
void exchange_abort_all(void);

#endif /* KAPI_EXCHANGE_H */
