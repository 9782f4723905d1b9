/* generation.h -- one immutable runtime built from a config: the router,
 * each route's chain, and every module instance, refcounted so requests in
 * flight keep the generation they started in.
 *
 * A generation is built and checked completely (config, modules, create
 * hooks, routes) beside the running one; publishing swaps it in atomically;
 * the last release destroys its instances and releases its modules. It does
 * not serve HTTP nor watch files. */
#ifndef KAPI_GENERATION_H
#define KAPI_GENERATION_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "chain.h"
#include "config.h"
#include "router.h"
#include "upstream.h"

typedef struct gen_route {
    const char *name;
    chain chain;
    bool strip_prefix;
    char *target_label; /* "function:hello", "upstream:api", "url:http://…", for the access log */
} gen_route;

typedef struct generation {
    atomic_uint refs;
    uint64_t id; /* 1, 2, … in build order */
    config *cfg;
    router *router;
    gen_route *routes; /* cfg->nroutes entries, same order */
    size_t nroutes;
    struct gen_instance *instances; /* private: what to destroy */
    size_t ninstances;
    upstream *upstreams; /* cfg->nupstreams groups, same order */
    size_t nupstreams;
    struct proxy_route **proxies; /* private: the proxy targets' instances */
    size_t nproxies;
} generation;

/* Builds a generation from the config file FILE, handing HOST to modules.
 * On failure returns non-KAPI_OK and one line in ERR (file:line:col and JSON
 * path where they apply); nothing is left allocated or loaded. */
kapi_status generation_build(const char *file, const kapi_host *host, generation **out, char *err,
                             size_t errlen);

/* The same from an already loaded CFG, whose ownership passes to the
 * generation (freed on failure too). */
kapi_status generation_from_config(config *cfg, const kapi_host *host, generation **out, char *err,
                                   size_t errlen);

/* Prints each route's method, host, path and resolved chain (for check). */
void generation_print(const generation *g, FILE *f);

/* References: acquire/release from any thread; the last release destroys. */
generation *generation_acquire(generation *g);
void generation_release(generation *g);

/* Makes G the current generation (takes over the caller's reference) and
 * releases the previous one. Call from one thread (the main thread). */
void generation_publish(generation *g);
/* The current generation's sequence number; changes on every publish. */
uint64_t generation_current_seq(void);
/* A new reference to the current generation (NULL before the first
 * publish). Takes a lock: call it only when the sequence changed. */
generation *generation_current(void);

#endif /* KAPI_GENERATION_H */
