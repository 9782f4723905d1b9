/* router.h -- the route table of one generation and its matching.
 *
 * A router is built once from route specs and is then read-only, so every
 * worker thread matches against it without locks. Matching takes a method,
 * a host and an already normalized path (path.c). It does not normalize,
 * strip prefixes, run plugins, nor know what a route's target is: a match is
 * an index into the specs it was built from.
 *
 * Patterns: "/exact"; "/prefix/" followed by a last segment "*", which
 * matches "/prefix", "/prefix/" and anything below; "/users/{id}/posts/{post}"
 * (a parameter is one whole, non-empty segment; names are letters, digits and
 * '_'). Segments are compared byte for byte, so a trailing slash is
 * significant: "/a" does not match "/a/" (a trailing "*" matches both).
 * Precedence, most specific first:
 *   1. a route with a host beats one without: if any route naming the
 *      request's host matches the path, only those are considered (so a
 *      method they do not allow is a 405 even if a host-less route allows it);
 *   2. segment by segment from the left, a literal segment beats a
 *      parameter, a parameter beats a trailing "*"; so an exact pattern
 *      beats any prefix covering it and a longer prefix beats a shorter one;
 *   3. on a full tie the route listed first wins.
 * Among the routes matching the path, the most specific one allowing the
 * method is chosen. A path that some route matches, but with no route
 * allowing the method, is ROUTER_NO_METHOD (405) and the union of the
 * allowed methods is reported. Methods are compared case-sensitively. */
#ifndef KAPI_ROUTER_H
#define KAPI_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include <kapi/types.h>

#define ROUTER_MAX_PARAMS 16

typedef struct router_spec {
    const char *path;           /* the pattern */
    const char *host;           /* NULL for any host; compared case-insensitively */
    const char *const *methods; /* upper-case names; nmethods 0 means any */
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
    size_t route; /* index into the specs */
    size_t nparams;
    kapi_str param_names[ROUTER_MAX_PARAMS];  /* borrowed from the router */
    kapi_str param_values[ROUTER_MAX_PARAMS]; /* views into the matched path, still
                                                 holding any "%2F" as is */
    size_t prefix_len; /* for a pattern ending in "*": bytes of the path matched
                          before the "*" segment (for strip_prefix); the pattern
                          "/api/" + "*" gives 4 on "/api/x" and on "/api";
                          0 for patterns without "*" (nothing to strip) */
    char allow[128];   /* ROUTER_NO_METHOD: sorted, deduplicated, "GET, HEAD, POST"
                          (NUL-terminated; names that would not fit are left out) */
};

/* Builds a router from N specs (copied; SPECS may be freed afterwards).
 * Fails with KAPI_ECONFIG and a message in ERR naming the route index for a
 * malformed pattern ("routes[3].path: '{id' is not a closed parameter"):
 * not starting with '/', an empty or dot segment, more than
 * ROUTER_MAX_PARAMS parameters or one name twice, a '*' that is not the whole
 * last segment; for an empty host (use NULL), a method name that is not an
 * upper-case HTTP token, more than 64 distinct method names over all routes,
 * or the same pattern+host+method listed twice (parameter names do not make
 * patterns differ; "any method" only repeats "any method"). KAPI_ENOMEM
 * ("out of memory"), KAPI_EINVAL for a NULL OUT. *OUT is freed with
 * router_free. */
kapi_status router_build(const router_spec *specs, size_t n, router **out, char *err,
                         size_t errlen);

/* Matches METHOD, HOST (no port, compared case-insensitively; empty view for
 * none) and PATH (normalized; one not starting with '/' matches nothing).
 * Fills *M on ROUTER_MATCH (and m->allow on ROUTER_NO_METHOD); param values
 * borrow PATH, param names borrow the router. Thread-safe on a built router;
 * no allocation. */
router_result router_match(const router *rt, kapi_str method, kapi_str host, kapi_str path,
                           struct router_match *m);

void router_free(router *rt);

#endif /* KAPI_ROUTER_H */
