/* config_parse.h -- the schema walk that config.c and config_upstream.c share.
 *
 * Internal to those two files: one parse's state (struct cfgp), the table of
 * keys an object may hold (struct cfgp_field), typed getters that report
 * "FILE:LINE:COL: JSON.PATH: message" through cfgp_fail, and the JSON path
 * kept in step with the walk. config.c walks the root, routes, listeners,
 * limits, store and log; config_upstream.c the "upstreams" section and the
 * upstream forms of a route's target. Nothing here is part of config.h's
 * API, and nothing here loads modules or opens files. */
#ifndef KAPI_CONFIG_PARSE_H
#define KAPI_CONFIG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "jsonpos.h"

#define CFGP_NELEMS(a) (sizeof(a) / sizeof *(a))
#define CFGP_NAME_MAX 64 /* module and upstream names; also the longest name suggest compares */

/* The state of one parse. PATH is the JSON path of the value being checked,
 * kept in step with the walk; a path too long for the buffer is cut, which
 * only makes the position point at an ancestor. */
struct cfgp {
    const char *file;
    const char *text;
    size_t len;
    char *err;
    size_t errlen;
    config *cfg;
    json_t *route_names; /* name -> index, to report duplicates */
    jsonpos_cache pos;   /* positions are asked for in document order */
    char path[1024];
    size_t pathlen;
    /* Upstream targets are linked once the whole file is walked, since
     * "upstreams" may follow "routes" (config_upstream_link). */
    char **upstream_refs;   /* per route: the "upstream" name it names, else NULL */
    size_t nrefs;           /* entries of upstream_refs (the routes, once one is named) */
    config_upstream *anons; /* made from "url" targets, in route order */
    size_t nanons;
};

/* One key of an object kapi owns: its handler gets the value and the struct
 * being filled; integer and boolean fields are stored at OFF (SIZE bytes). */
struct cfgp_field;
typedef kapi_status (*cfgp_field_fn)(struct cfgp *p, json_t *v, void *dst,
                                     const struct cfgp_field *f);
struct cfgp_field {
    const char *key;
    cfgp_field_fn fn;
    bool required;
    long long min, max;
    size_t off, size;
};

/* A field for the integer member NAME of TYPE in [LO, HI] (cfgp_set_uint). */
#define CFGP_UINT(type, name, lo, hi)                                                              \
    {                                                                                              \
        .key = #name, .fn = cfgp_set_uint, .min = (lo), .max = (hi), .off = offsetof(type, name),  \
        .size = sizeof(((type *)0)->name)                                                          \
    }

/* ---- messages and paths ---- */

/* Writes "FILE:LINE:COL: PATH: " and the message into p->err, the position
 * being that of the current path's value, or of its key when AT_KEY.
 * Returns KAPI_ECONFIG. */
kapi_status cfgp_fail(struct cfgp *p, bool at_key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "FILE: out of memory"; returns KAPI_ENOMEM. */
kapi_status cfgp_nomem(struct cfgp *p);

/* Both push a step onto the path and return the length to hand back to
 * cfgp_path_pop. */
size_t cfgp_path_key(struct cfgp *p, const char *key);
size_t cfgp_path_index(struct cfgp *p, size_t i);
void cfgp_path_pop(struct cfgp *p, size_t old);

/* Where the current path's value starts. */
void cfgp_position(struct cfgp *p, unsigned *line, unsigned *col);

/* The closest of the candidates offered one by one to KEY (see
 * cfgp_suggest): start with {KEY, NULL, (size_t)-1}, call cfgp_near_offer
 * for each, then read BEST (NULL when none is close). */
struct cfgp_near {
    const char *key;
    const char *best;
    size_t dist;
};
void cfgp_near_offer(struct cfgp_near *near, const char *cand);

/* The key of FIELDS closest to KEY, or NULL when none is close: an edit
 * distance of at most 2 or a third of the longer name, or one name a prefix
 * (of 3 or more characters) of the other ("max_body" for "max_body_bytes"). */
const char *cfgp_suggest(const char *key, const struct cfgp_field *fields, size_t n);

/* ---- typed values ---- */

/* calloc for N elements that yields NULL, not an error, for N == 0. */
kapi_status cfgp_alloc_array(struct cfgp *p, size_t n, size_t size, void **out);

/* *OUT: V's text after ${ENV} substitution, caller frees; NONEMPTY refuses "". */
kapi_status cfgp_get_string(struct cfgp *p, json_t *v, bool nonempty, char **out);

/* *OUT (caller frees): S when absolute, else S under the config file's directory. */
kapi_status cfgp_resolve(struct cfgp *p, const char *s, char **out);

/* A non-empty string, resolved as by cfgp_resolve. */
kapi_status cfgp_get_path(struct cfgp *p, json_t *v, char **out);

/* A string that is one of NAMES (N of them); *INDEX is its position.
 * Otherwise: "expected one of "a", "b", "c"". */
kapi_status cfgp_get_enum(struct cfgp *p, json_t *v, const char *const *names, size_t n,
                          size_t *index);

/* Checks that V is an array (of at least one element when NONEMPTY) and
 * allocates *ITEMS, N elements of SIZE bytes, zeroed; WHAT completes
 * "expected ..." otherwise. */
kapi_status cfgp_get_array(struct cfgp *p, json_t *v, bool nonempty, const char *what, size_t size,
                           void **items, size_t *n);

/* Calls FN for each element of ARRAY in order, with "[INDEX]" pushed onto
 * the path while it runs; stops at and returns the first status that is not
 * KAPI_OK. ARRAY must be an array (see cfgp_get_array); CTX is FN's, often
 * the elements cfgp_get_array allocated. */
typedef kapi_status (*cfgp_item_fn)(struct cfgp *p, json_t *item, size_t index, void *ctx);
kapi_status cfgp_each(struct cfgp *p, json_t *array, cfgp_item_fn fn, void *ctx);

/* The same for each member of the object OBJ, in document order, with
 * ".KEY" pushed onto the path. */
typedef kapi_status (*cfgp_member_fn)(struct cfgp *p, const char *key, json_t *value, void *ctx);
kapi_status cfgp_each_member(struct cfgp *p, json_t *obj, cfgp_member_fn fn, void *ctx);

/* Field handlers: an integer in [f->min, f->max] stored as unsigned or
 * size_t (by f->size), a boolean stored as bool. */
kapi_status cfgp_set_uint(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f);
kapi_status cfgp_set_bool(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f);

/* Checks that OBJ is an object, hands each key to its field in document
 * order, refuses unknown keys (suggesting a near one) and then reports a
 * missing required one. */
kapi_status cfgp_walk_object(struct cfgp *p, json_t *obj, const struct cfgp_field *fields, size_t n,
                             void *dst);

/* ---- config_upstream.c: "upstreams" and a route's upstream target ---- */

/* The root key "upstreams" (DST is the config): fills cfg->upstreams with
 * the named upstreams, in file order. */
kapi_status config_upstream_walk(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f);

/* The keys of route R's "target" (R in p->cfg->routes, its target.json_path
 * and position already set): "upstream" (a name, linked later), "url" (an
 * anonymous upstream in p->anons) and the "path" template. */
kapi_status config_upstream_set_ref(struct cfgp *p, json_t *v, config_route *r);
kapi_status config_upstream_set_url(struct cfgp *p, json_t *v, config_route *r);
kapi_status config_upstream_set_path(struct cfgp *p, json_t *v, config_route *r);

/* After route R (at the current path) is walked: each "{name}" of its
 * target's path template must be a parameter of its pattern. */
kapi_status config_upstream_check_route(struct cfgp *p, const config_route *r);

/* After the whole file is walked: appends p->anons to cfg->upstreams,
 * resolves each route's "upstream" name into route.upstream and checks
 * that a param:NAME hash has {NAME} in the route's pattern. */
kapi_status config_upstream_link(struct cfgp *p);

/* Frees what the parse kept for linking (p->anons, p->upstream_refs);
 * safe to call twice and after config_upstream_link. */
void config_upstream_discard(struct cfgp *p);

/* Frees what U owns, not U itself. */
void config_upstream_free(config_upstream *u);

/* ---- characters ---- */

static inline bool
cfgp_is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static inline bool
cfgp_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline char
cfgp_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static inline char
cfgp_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* An RFC 9110 token character (method and header names). */
static inline bool
cfgp_is_tchar(char c)
{
    return cfgp_is_alpha(c) || cfgp_is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

#endif /* KAPI_CONFIG_PARSE_H */
