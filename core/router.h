/* router.h -- the route table of one generation and its matching.
 *
 * A router is built once from route specs and is then read-only, so every
 * worker thread matches against it without locks. Matching takes a method,
 * a host and an already normalized path (path.c). It does not normalize,
 * run plugins, nor know what a route's target is: a match is an index into
 * the specs it was built from.
 *
 * Patterns: "/exact", "/prefix/*" (the prefix itself and anything below it),
 * "/users/{id}/posts/{post}" (a parameter is one whole segment). Precedence,
 * most specific first:
 *   1. a route with a host beats one without;
 *   2. segment by segment from the left, a literal segment beats a
 *      parameter, a parameter beats a trailing "*"; so an exact pattern
 *      beats any prefix covering it and a longer prefix beats a shorter one;
 *   3. on a full tie the route listed first wins.
 * A path that some route matches, but with no route allowing the method,
 * is ROUTER_NO_METHOD (405) and the union of allowed methods is reported. */
#ifndef KAPI_ROUTER_H
#define KAPI_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include <kapi/types.h>

#define ROUTER_MAX_PARAMS 16

typedef struct router_spec {
    const char *path;            /* the pattern */
    const char *host;            /* NULL for any host; compared case-insensitively */
    const char *const *methods;  /* upper-case names; nmethods 0 means any */
    size_t nmethods;
} router_spec;

typedef struct router router;

typedef enum router_result {
    ROUTER_MATCH = 0,
    ROUTER_NO_ROUTE = 1,  /* 404 */
    ROUTER_NO_METHOD = 2, /* 405: see router_match.allow */
} router_result;

/* The result of router_match. Only the struct tag is declared: a typedef
 * would clash with the function router_match (one ordinary namespace in C),
 * so callers write "struct router_match m;". */
struct router_match {
    size_t route;                      /* index into the specs */
    size_t nparams;
    kapi_str param_names[ROUTER_MAX_PARAMS];  /* borrowed from the router */
    kapi_str param_values[ROUTER_MAX_PARAMS]; /* views into the matched path, still
                                                 holding any "%2F" as is */
    size_t prefix_len; /* bytes of the path covered by the pattern's literal
                          prefix (for strip_prefix); "/api/*" on "/api/x" is 4 */
    char allow[128];   /* ROUTER_NO_METHOD: "GET, POST" (NUL-terminated) */
};

/* Builds a router from N specs (copied; SPECS may be freed afterwards).
 * Fails with KAPI_ECONFIG and a message in ERR naming the route index for a
 * malformed pattern ("routes[3].path: '{id' is not a closed parameter"),
 * more than ROUTER_MAX_PARAMS parameters, a '*' not at the end, or the same
 * pattern+host+method listed twice. *OUT is freed with router_free. */
kapi_status router_build(const router_spec *specs, size_t n, router **out, char *err,
                         size_t errlen);

/* Matches METHOD, HOST (lower-case, no port; empty view for none) and PATH
 * (normalized). Fills *M on ROUTER_MATCH (and m->allow on ROUTER_NO_METHOD).
 * Thread-safe on a built router; no allocation. */
router_result router_match(const router *rt, kapi_str method, kapi_str host, kapi_str path,
                           struct router_match *m);

void router_free(router *rt);

#endif /* KAPI_ROUTER_H */
