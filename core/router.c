/* router.c -- builds the route table of one generation as a segment trie
 * and matches method, host and normalized path against it (see router.h).
 *
 * Each trie node has its literal children in an array sorted by bytes, at
 * most one parameter child and at most one "*" child. Matching walks the
 * trie depth first in that order -- literal, parameter, "*" -- so the
 * terminal nodes come out most specific first and the first route that
 * allows the method is the answer; backtracking out of a dead literal branch
 * is what lets "/users/{id}/posts" still match "/users/new/posts". Routes
 * ending on one node keep their listed order, which breaks full ties.
 * Methods are bits in a mask, so the 405 Allow union needs no allocation.
 * It does not normalize paths (path.c) nor strip prefixes (the core does,
 * from prefix_len). */
#include "router.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Distinct method names over all routes: one bit each in a route's mask. */
enum { ROUTER_MAX_METHODS = 64 };

/* Node 0 is the root; it is never anyone's child, so 0 also means "none". */
typedef struct node {
    kapi_str seg;   /* a literal child's segment: a view into its first route's path */
    uint32_t *lits; /* literal children, sorted by seg_cmp */
    uint32_t nlits;
    uint32_t param;        /* the "{name}" child */
    uint32_t wild;         /* the "*" child; always a leaf */
    uint32_t first, count; /* the routes ending here: rt->order[first, first + count) */
} node;

typedef struct route {
    char *path; /* owned copy of the pattern */
    char *host; /* owned, lower-cased; NULL for any host */
    size_t hostlen;
    uint64_t methods; /* bit i: rt->methods[i] */
    bool any;         /* nmethods was 0 */
    size_t nparams;
    kapi_str names[ROUTER_MAX_PARAMS]; /* views into path */
    uint32_t node;
} route;

struct router {
    node *nodes;
    size_t nnodes, capnodes;
    route *routes;
    size_t nroutes;
    uint32_t *order;                      /* route indices grouped by node */
    kapi_str methods[ROUTER_MAX_METHODS]; /* owned, sorted by seg_cmp */
    size_t nmethods;
    bool has_host;
};

/* --- shared by build and match ------------------------------------------- */

static int
seg_cmp(kapi_str a, kapi_str b)
{
    int c = memcmp(a.ptr, b.ptr, a.len < b.len ? a.len : b.len);
    if (c != 0)
        return c;
    return (a.len > b.len) - (a.len < b.len);
}

/* POS is the index of a '/' in PATH; sets *SEG to the segment after it and
 * returns where that segment ends (the next '/' or PATH.len). */
static size_t
next_segment(kapi_str path, size_t pos, kapi_str *seg)
{
    size_t end = pos + 1;
    while (end < path.len && path.ptr[end] != '/')
        end++;
    seg->ptr = path.ptr + pos + 1;
    seg->len = end - pos - 1;
    return end;
}

/* Index into N->lits of the first literal child not less than SEG. */
static size_t
lit_lower_bound(const router *rt, const node *n, kapi_str seg)
{
    size_t lo = 0, hi = n->nlits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg_cmp(rt->nodes[n->lits[mid]].seg, seg) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static uint32_t
find_literal(const router *rt, const node *n, kapi_str seg)
{
    size_t i = lit_lower_bound(rt, n, seg);
    if (i < n->nlits && seg_cmp(rt->nodes[n->lits[i]].seg, seg) == 0)
        return n->lits[i];
    return 0;
}

static int
find_method(const router *rt, kapi_str name)
{
    size_t lo = 0, hi = rt->nmethods;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = seg_cmp(rt->methods[mid], name);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static char
ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* --- build ----------------------------------------------------------------- */

static kapi_status fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kapi_status
fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return KAPI_ECONFIG;
}

static kapi_status
out_of_memory(char *err, size_t errlen)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "out of memory");
    return KAPI_ENOMEM;
}

static kapi_status
new_node(router *rt, uint32_t *out)
{
    if (rt->nnodes == UINT32_MAX)
        return KAPI_ENOMEM;
    if (rt->nnodes == rt->capnodes) {
        size_t cap = rt->capnodes ? rt->capnodes * 2 : 16;
        node *nodes = realloc(rt->nodes, cap * sizeof *nodes);
        if (!nodes)
            return KAPI_ENOMEM;
        rt->nodes = nodes;
        rt->capnodes = cap;
    }
    memset(&rt->nodes[rt->nnodes], 0, sizeof rt->nodes[0]);
    *out = (uint32_t)rt->nnodes++;
    return KAPI_OK;
}

/* The literal child SEG of node PARENT, created in sorted position if new. */
static kapi_status
literal_child(router *rt, uint32_t parent, kapi_str seg, uint32_t *out)
{
    size_t at = lit_lower_bound(rt, &rt->nodes[parent], seg);
    node *p = &rt->nodes[parent];
    if (at < p->nlits && seg_cmp(rt->nodes[p->lits[at]].seg, seg) == 0) {
        *out = p->lits[at];
        return KAPI_OK;
    }
    uint32_t child;
    if (new_node(rt, &child) != KAPI_OK)
        return KAPI_ENOMEM;
    rt->nodes[child].seg = seg;
    p = &rt->nodes[parent]; /* new_node may have moved the array */
    uint32_t *lits = realloc(p->lits, (p->nlits + 1) * sizeof *lits);
    if (!lits)
        return KAPI_ENOMEM;
    memmove(lits + at + 1, lits + at, (p->nlits - at) * sizeof *lits);
    lits[at] = child;
    p->lits = lits;
    p->nlits++;
    *out = child;
    return KAPI_OK;
}

/* The "*" child of PARENT if WILD, else its "{name}" child; created if new. */
static kapi_status
special_child(router *rt, uint32_t parent, bool wild, uint32_t *out)
{
    uint32_t *slot = wild ? &rt->nodes[parent].wild : &rt->nodes[parent].param;
    if (*slot == 0) {
        uint32_t child;
        if (new_node(rt, &child) != KAPI_OK)
            return KAPI_ENOMEM;
        slot = wild ? &rt->nodes[parent].wild : &rt->nodes[parent].param;
        *slot = child;
    }
    *out = *slot;
    return KAPI_OK;
}

static bool
is_param_name(kapi_str name)
{
    if (name.len == 0)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        char c = name.ptr[i];
        if (!(c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

/* Checks one segment of route I's pattern; a parameter's name is recorded. */
static kapi_status
check_segment(route *r, size_t i, kapi_str seg, bool last, char *err, size_t errlen)
{
    int n = (int)seg.len;
    if (seg.len == 0 && !last)
        return fail(err, errlen, "routes[%zu].path: '%s' has an empty segment", i, r->path);
    if ((seg.len == 1 && seg.ptr[0] == '.') ||
        (seg.len == 2 && seg.ptr[0] == '.' && seg.ptr[1] == '.'))
        return fail(err, errlen,
                    "routes[%zu].path: '%s' has a dot segment, which a normalized path never has",
                    i, r->path);
    if (memchr(seg.ptr, '*', seg.len) && (seg.len != 1 || !last))
        return fail(err, errlen,
                    "routes[%zu].path: '*' is only allowed as the whole last segment of '%s'", i,
                    r->path);
    bool open = seg.len > 0 && seg.ptr[0] == '{';
    if (!open) {
        if (memchr(seg.ptr, '{', seg.len) || memchr(seg.ptr, '}', seg.len))
            return fail(err, errlen,
                        "routes[%zu].path: '%.*s' is not a whole-segment parameter like '{id}'", i,
                        n, seg.ptr);
        return KAPI_OK;
    }
    if (seg.len < 2 || seg.ptr[seg.len - 1] != '}')
        return fail(err, errlen, "routes[%zu].path: '%.*s' is not a closed parameter", i, n,
                    seg.ptr);
    kapi_str name = {seg.ptr + 1, seg.len - 2};
    if (!is_param_name(name))
        return fail(err, errlen, "routes[%zu].path: '%.*s' needs a name of letters, digits and '_'",
                    i, n, seg.ptr);
    if (r->nparams == ROUTER_MAX_PARAMS)
        return fail(err, errlen, "routes[%zu].path: '%s' has more than %d parameters", i, r->path,
                    ROUTER_MAX_PARAMS);
    for (size_t k = 0; k < r->nparams; k++)
        if (seg_cmp(r->names[k], name) == 0)
            return fail(err, errlen, "routes[%zu].path: parameter '%.*s' appears twice", i, n,
                        seg.ptr);
    r->names[r->nparams++] = name;
    return KAPI_OK;
}

/* Validates route I's pattern and adds it to the trie, setting r->node. */
static kapi_status
insert_pattern(router *rt, size_t i, char *err, size_t errlen)
{
    route *r = &rt->routes[i];
    kapi_str path = {r->path, strlen(r->path)};
    if (path.len == 0 || path.ptr[0] != '/')
        return fail(err, errlen, "routes[%zu].path: '%s' does not start with '/'", i, r->path);

    uint32_t at = 0;
    for (size_t pos = 0; pos < path.len;) {
        kapi_str seg;
        size_t end = next_segment(path, pos, &seg);
        kapi_status st = check_segment(r, i, seg, end == path.len, err, errlen);
        if (st != KAPI_OK)
            return st;
        if (seg.len == 1 && seg.ptr[0] == '*')
            st = special_child(rt, at, true, &at);
        else if (seg.len > 0 && seg.ptr[0] == '{')
            st = special_child(rt, at, false, &at);
        else
            st = literal_child(rt, at, seg, &at);
        if (st != KAPI_OK)
            return out_of_memory(err, errlen);
        pos = end;
    }
    r->node = at;
    return KAPI_OK;
}

/* An HTTP token without lower case: "GET", "M-SEARCH". */
static bool
is_method_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

static int
method_cmp(const void *a, const void *b)
{
    return seg_cmp(*(const kapi_str *)a, *(const kapi_str *)b);
}

/* Collects every distinct method name into rt->methods, sorted. */
static kapi_status
collect_methods(router *rt, const router_spec *specs, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (specs[i].nmethods > 0 && !specs[i].methods)
            return fail(err, errlen, "routes[%zu].methods: NULL with %zu methods", i,
                        specs[i].nmethods);
        for (size_t j = 0; j < specs[i].nmethods; j++) {
            const char *m = specs[i].methods[j];
            if (!is_method_name(m))
                return fail(err, errlen,
                            "routes[%zu].methods[%zu]: '%s' is not an upper-case method name", i, j,
                            m ? m : "(null)");
            kapi_str name = {m, strlen(m)};
            size_t k = 0;
            while (k < rt->nmethods && seg_cmp(rt->methods[k], name) != 0)
                k++;
            if (k < rt->nmethods)
                continue;
            if (rt->nmethods == ROUTER_MAX_METHODS)
                return fail(err, errlen,
                            "routes[%zu].methods[%zu]: more than %d distinct methods in all routes",
                            i, j, ROUTER_MAX_METHODS);
            char *copy = strdup(m);
            if (!copy)
                return out_of_memory(err, errlen);
            rt->methods[rt->nmethods++] = (kapi_str){copy, name.len};
        }
    }
    qsort(rt->methods, rt->nmethods, sizeof rt->methods[0], method_cmp);
    return KAPI_OK;
}

/* Copies spec I into rt->routes[i] (path, lower-cased host, method mask). */
static kapi_status
copy_route(router *rt, const router_spec *spec, size_t i, char *err, size_t errlen)
{
    route *r = &rt->routes[i];
    if (!spec->path)
        return fail(err, errlen, "routes[%zu].path: missing", i);
    if (spec->host && !spec->host[0])
        return fail(err, errlen, "routes[%zu].host: empty; leave it NULL to match any host", i);
    if (!(r->path = strdup(spec->path)))
        return out_of_memory(err, errlen);
    if (spec->host) {
        if (!(r->host = strdup(spec->host)))
            return out_of_memory(err, errlen);
        r->hostlen = strlen(r->host);
        for (size_t k = 0; k < r->hostlen; k++)
            r->host[k] = ascii_lower(r->host[k]);
        rt->has_host = true;
    }
    r->any = spec->nmethods == 0;
    for (size_t j = 0; j < spec->nmethods; j++) {
        const char *m = spec->methods[j];
        r->methods |= UINT64_C(1) << find_method(rt, (kapi_str){m, strlen(m)});
    }
    return KAPI_OK;
}

/* Groups route indices by node in rt->order, each group in listed order. */
static kapi_status
group_routes(router *rt)
{
    if (!(rt->order = malloc((rt->nroutes ? rt->nroutes : 1) * sizeof *rt->order)))
        return KAPI_ENOMEM;
    for (size_t i = 0; i < rt->nroutes; i++)
        rt->nodes[rt->routes[i].node].count++;
    uint32_t next = 0;
    for (size_t k = 0; k < rt->nnodes; k++) {
        rt->nodes[k].first = next;
        next += rt->nodes[k].count;
        rt->nodes[k].count = 0;
    }
    for (size_t i = 0; i < rt->nroutes; i++) {
        node *nd = &rt->nodes[rt->routes[i].node];
        rt->order[nd->first + nd->count++] = (uint32_t)i;
    }
    return KAPI_OK;
}

static bool
same_host(const route *a, const route *b)
{
    if (!a->host || !b->host)
        return a->host == b->host;
    return strcmp(a->host, b->host) == 0;
}

/* Two routes on one node (one pattern, parameter names aside), one host and
 * a shared method: the later one could never be chosen. */
static kapi_status
check_duplicates(const router *rt, char *err, size_t errlen)
{
    for (size_t k = 0; k < rt->nnodes; k++) {
        const node *nd = &rt->nodes[k];
        for (uint32_t b = 1; b < nd->count; b++) {
            const route *rb = &rt->routes[rt->order[nd->first + b]];
            for (uint32_t a = 0; a < b; a++) {
                const route *ra = &rt->routes[rt->order[nd->first + a]];
                uint64_t both = ra->methods & rb->methods;
                if (!same_host(ra, rb) || (!(ra->any && rb->any) && !both))
                    continue;
                const char *what = both ? rt->methods[__builtin_ctzll(both)].ptr : "any";
                return fail(err, errlen,
                            "routes[%zu].path: '%s' repeats routes[%zu] with the same host and "
                            "method %s",
                            (size_t)rt->order[nd->first + b], rb->path,
                            (size_t)rt->order[nd->first + a], what);
            }
        }
    }
    return KAPI_OK;
}

kapi_status
router_build(const router_spec *specs, size_t n, router **out, char *err, size_t errlen)
{
    if (err && errlen > 0)
        err[0] = '\0';
    if (!out || (n > 0 && !specs))
        return KAPI_EINVAL;
    *out = NULL;
    if (n >= UINT32_MAX)
        return fail(err, errlen, "routes: too many (%zu)", n);

    kapi_status st = KAPI_ENOMEM;
    uint32_t root;
    router *rt = calloc(1, sizeof *rt);
    if (!rt || !(rt->routes = calloc(n ? n : 1, sizeof *rt->routes)) ||
        new_node(rt, &root) != KAPI_OK) {
        out_of_memory(err, errlen);
        goto out;
    }
    rt->nroutes = n;
    if ((st = collect_methods(rt, specs, n, err, errlen)) != KAPI_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if ((st = copy_route(rt, &specs[i], i, err, errlen)) != KAPI_OK)
            goto out;
        if ((st = insert_pattern(rt, i, err, errlen)) != KAPI_OK)
            goto out;
    }
    if ((st = group_routes(rt)) != KAPI_OK) {
        out_of_memory(err, errlen);
        goto out;
    }
    st = check_duplicates(rt, err, errlen);
out:
    if (st != KAPI_OK) {
        router_free(rt);
        return st;
    }
    *out = rt;
    return KAPI_OK;
}

void
router_free(router *rt)
{
    if (!rt)
        return;
    for (size_t k = 0; k < rt->nnodes; k++)
        free(rt->nodes[k].lits);
    free(rt->nodes);
    if (rt->routes) {
        for (size_t i = 0; i < rt->nroutes; i++) {
            free(rt->routes[i].path);
            free(rt->routes[i].host);
        }
    }
    free(rt->routes);
    free(rt->order);
    for (size_t k = 0; k < rt->nmethods; k++)
        free((char *)rt->methods[k].ptr);
    free(rt);
}

/* --- match ----------------------------------------------------------------- */

/* The best route of one host tier, and what the tier's matching routes allow. */
typedef struct tier {
    bool matched; /* some route of the tier matches the path */
    bool chosen;  /* ... and one of them allows the method */
    uint32_t route;
    size_t prefix_len;
    uint64_t allow;
    kapi_str values[ROUTER_MAX_PARAMS];
} tier;

typedef struct walk {
    const router *rt;
    kapi_str path;
    kapi_str host;
    int method;     /* index in rt->methods; -1 when no route names it */
    bool host_tier; /* some route may match HOST: tier 1 cannot end the walk */
    size_t nvalues; /* parameters on the current trie path */
    kapi_str values[ROUTER_MAX_PARAMS];
    tier tiers[2]; /* 0: routes naming HOST, 1: routes for any host */
} walk;

static bool
host_matches(const route *r, kapi_str host)
{
    if (r->hostlen != host.len)
        return false;
    for (size_t i = 0; i < host.len; i++)
        if (ascii_lower(host.ptr[i]) != r->host[i])
            return false;
    return true;
}

/* Offers the routes ending on node N; nodes come in precedence order, so
 * the first route a tier accepts is its best. True when the walk can stop. */
static bool
offer(walk *w, const node *n, size_t prefix_len)
{
    for (uint32_t k = 0; k < n->count; k++) {
        uint32_t ri = w->rt->order[n->first + k];
        const route *r = &w->rt->routes[ri];
        if (r->host && !host_matches(r, w->host))
            continue;
        tier *t = &w->tiers[r->host ? 0 : 1];
        t->matched = true;
        t->allow |= r->methods;
        if (t->chosen || !(r->any || (w->method >= 0 && (r->methods >> w->method & 1))))
            continue;
        t->chosen = true;
        t->route = ri;
        t->prefix_len = prefix_len;
        memcpy(t->values, w->values, w->nvalues * sizeof w->values[0]);
        if (r->host || !w->host_tier)
            return true;
    }
    return false;
}

/* Depth first from node NI with the path left after index POS (a '/', or
 * the end): literal child, then parameter child, then "*". */
static bool
visit(walk *w, uint32_t ni, size_t pos)
{
    const node *n = &w->rt->nodes[ni];
    const node *wild = n->wild ? &w->rt->nodes[n->wild] : NULL;
    if (pos >= w->path.len)
        return offer(w, n, 0) || (wild && offer(w, wild, pos));

    kapi_str seg;
    size_t end = next_segment(w->path, pos, &seg);
    uint32_t lit = find_literal(w->rt, n, seg);
    if (lit && visit(w, lit, end))
        return true;
    /* A pattern has at most ROUTER_MAX_PARAMS parameters, so a trie path
     * does too; the bound check only guards the array. */
    if (n->param && seg.len > 0 && w->nvalues < ROUTER_MAX_PARAMS) {
        w->values[w->nvalues++] = seg;
        bool stop = visit(w, n->param, end);
        w->nvalues--;
        if (stop)
            return true;
    }
    return wild && offer(w, wild, pos);
}

/* "GET, HEAD, POST": the methods in MASK in sorted order; a name that would
 * not fit in SIZE is left out with all after it. */
static void
format_allow(const router *rt, uint64_t mask, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < rt->nmethods; k++) {
        if (!(mask >> k & 1))
            continue;
        size_t sep = len ? 2 : 0;
        if (len + sep + rt->methods[k].len >= size)
            break;
        memcpy(buf + len, ", ", sep);
        memcpy(buf + len + sep, rt->methods[k].ptr, rt->methods[k].len);
        len += sep + rt->methods[k].len;
        buf[len] = '\0';
    }
}

router_result
router_match(const router *rt, kapi_str method, kapi_str host, kapi_str path,
             struct router_match *m)
{
    if (!m)
        return ROUTER_NO_ROUTE;
    m->route = 0;
    m->nparams = 0;
    m->prefix_len = 0;
    m->allow[0] = '\0';
    if (!rt || !path.ptr || path.len == 0 || path.ptr[0] != '/')
        return ROUTER_NO_ROUTE;
    if (!host.ptr)
        host.len = 0;

    walk w = {.rt = rt, .path = path, .host = host};
    w.method = method.ptr ? find_method(rt, method) : -1;
    w.host_tier = rt->has_host && host.len > 0;
    visit(&w, 0, 0);

    const tier *t = w.tiers[0].matched ? &w.tiers[0] : &w.tiers[1];
    if (!t->matched)
        return ROUTER_NO_ROUTE;
    if (!t->chosen) {
        format_allow(rt, t->allow, m->allow, sizeof m->allow);
        return ROUTER_NO_METHOD;
    }
    const route *r = &rt->routes[t->route];
    m->route = t->route;
    m->nparams = r->nparams;
    m->prefix_len = t->prefix_len;
    for (size_t k = 0; k < r->nparams; k++) {
        m->param_names[k] = r->names[k];
        m->param_values[k] = t->values[k];
    }
    return ROUTER_MATCH;
}
