/* chain.h -- runs one route's plugins and target through the phases for a
 * request: on_access in order, the function's handle, on_response in
 * reverse order for every plugin whose on_access completed, and on_log for
 * every plugin, always.
 *
 * chain_run is resumable: when a hook returns KAPI_PAUSE it returns
 * CHAIN_PAUSED, and calling it again after resume() calls the same hook
 * again. It does not parse HTTP (server.c), choose the route (router.c),
 * nor own pause tokens: the embedding (server.c, testhost) does. */
#ifndef KAPI_CHAIN_H
#define KAPI_CHAIN_H

#include <kapi/module.h>

#include "request.h"

typedef struct chain_slot {
    const kapi_module *mod;
    void *instance; /* what the module's create returned */
} chain_slot;

typedef struct chain {
    const chain_slot *plugins; /* global plugins first, then the route's */
    size_t nplugins;
    chain_slot target; /* a function module; mod NULL when the route has none */
} chain;

typedef enum chain_result {
    CHAIN_DONE = 0,   /* the response is final; send it, then chain_log */
    CHAIN_PAUSED = 1, /* a hook paused; call chain_run again after resume */
} chain_result;

/* Prepares R to run C: zeroed private contexts for every slot. Returns
 * KAPI_ENOMEM when the arena is exhausted. */
kapi_status chain_start(const chain *c, kapi_req *r);

/* Runs (or continues) the phases until the response is final or a hook
 * pauses. Hook failures become 500 problem+json; never fails itself. */
chain_result chain_run(const chain *c, kapi_req *r);

/* Ends a paused request with a problem STATUS (e.g. 504 when the pause
 * deadline passed): the paused hook is not called again, the response
 * phase runs on the next chain_run. */
void chain_abort(kapi_req *r, int status, const char *detail);

/* Runs every plugin's on_log (phase log). Call once, after sending. */
void chain_log(const chain *c, kapi_req *r);

#endif /* KAPI_CHAIN_H */
