/* fuzz_router.c -- libFuzzer target for router_match (core/router.c).
 *
 * Builds one fixed router, then matches fuzzed (method, host, path) inputs:
 * the first byte picks the method, the second the host, the rest is the path,
 * matched as given and, when it normalizes, after path_normalize. Beyond "no
 * crash", every answer is checked against a deliberately naive reference: a
 * linear scan that ranks each matching route by its segment kinds (literal,
 * parameter, "*") from the left, per the precedence in router.h. Param values
 * must lie within the path. It does not fuzz router_build's validation
 * (the unit tests cover its messages). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"
#include "router.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_router: %s failed\n", #cond);                                    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const get[] = {"GET"};
static const char *const get_head[] = {"GET", "HEAD"};
static const char *const post[] = {"POST"};
static const char *const put_delete[] = {"PUT", "DELETE"};
static const char *const patch[] = {"PATCH"};

#define M(list) .methods = list, .nmethods = NELEMS(list)

static const router_spec specs[] = {
    {.path = "/"},
    {.path = "/*", M(get_head)},
    {.path = "/api/*"},
    {.path = "/api/v1/*", M(get)},
    {.path = "/api/v1/users", M(get)},
    {.path = "/api/v1/users", M(post)},
    {.path = "/api/v1/users/{id}", M(get)},
    {.path = "/api/v1/users/{id}", M(put_delete)},
    {.path = "/api/v1/users/me", M(get)},
    {.path = "/api/v1/users/{id}/posts/{post}", M(get)},
    {.path = "/api/v1/{res}/{id}/*", M(patch)},
    {.path = "/users/{id}/posts"},
    {.path = "/users/new", M(get)},
    {.path = "/public/*", M(get)},
    {.path = "/admin", M(get)},
    {.path = "/admin/*", M(get)},
    {.path = "/a/", M(get)},
    {.path = "/{x}/b/", M(post)},
    {.path = "/{a}/{b}/{c}", M(put_delete)},
    {.path = "/api/*", .host = "api.example.com", M(post)},
    {.path = "/admin", .host = "API.example.com", M(put_delete)},
    {.path = "/{tenant}/*", .host = "api.example.com", M(get)},
    {.path = "/a%2Fb", .host = "other.example"},
};

static const char *const methods[] = {"GET",    "HEAD",  "POST", "PUT",
                                      "DELETE", "PATCH", "BREW", "get"};
static const char *const hosts[] = {"", "api.example.com", "API.Example.COM", "other.example",
                                    "example.com"};

static router *rt;

/* --- the reference ------------------------------------------------------ */

enum { KIND_LITERAL = 0, KIND_PARAM = 1, KIND_WILD = 2, MAX_SEGS = 32 };

typedef struct ref_match {
    int kinds[MAX_SEGS]; /* per pattern segment; ranks compare these from the left */
    size_t nkinds;
    size_t prefix_len;
    size_t nvalues;
    kapi_str values[ROUTER_MAX_PARAMS];
} ref_match;

/* POS is a '/' in P: the segment after it, and where it ends. The same
 * segmentation as the router's ("/a/b/" is "a", "b", ""), written anew. */
static size_t
segment_at(kapi_str p, size_t pos, kapi_str *seg)
{
    size_t end = pos + 1;
    while (end < p.len && p.ptr[end] != '/')
        end++;
    *seg = (kapi_str){p.ptr + pos + 1, end - pos - 1};
    return end;
}

static bool
ref_path_matches(const char *pattern, kapi_str path, ref_match *rm)
{
    kapi_str pat = {pattern, strlen(pattern)};
    size_t spos = 0;
    memset(rm, 0, sizeof *rm);
    for (size_t ppos = 0; ppos < pat.len;) {
        kapi_str p, seg;
        ppos = segment_at(pat, ppos, &p);
        if (p.len == 1 && p.ptr[0] == '*') {
            rm->kinds[rm->nkinds++] = KIND_WILD;
            rm->prefix_len = spos;
            return true;
        }
        if (spos >= path.len)
            return false;
        spos = segment_at(path, spos, &seg);
        if (p.len > 0 && p.ptr[0] == '{') {
            if (seg.len == 0)
                return false;
            rm->kinds[rm->nkinds++] = KIND_PARAM;
            rm->values[rm->nvalues++] = seg;
        } else {
            if (p.len != seg.len || memcmp(p.ptr, seg.ptr, seg.len) != 0)
                return false;
            rm->kinds[rm->nkinds++] = KIND_LITERAL;
        }
    }
    return spos >= path.len;
}

/* Negative when A is more specific. A pattern that ended (the path ended
 * too) ranks as a literal: only a "*" can stand where it has nothing. */
static int
ref_rank_cmp(const ref_match *a, const ref_match *b)
{
    size_t n = a->nkinds > b->nkinds ? a->nkinds : b->nkinds;
    for (size_t i = 0; i < n; i++) {
        int ka = i < a->nkinds ? a->kinds[i] : KIND_LITERAL;
        int kb = i < b->nkinds ? b->kinds[i] : KIND_LITERAL;
        if (ka != kb)
            return ka - kb;
    }
    return 0;
}

static bool
host_eq(const char *route_host, kapi_str host)
{
    if (strlen(route_host) != host.len)
        return false;
    for (size_t i = 0; i < host.len; i++) {
        char a = route_host[i], b = host.ptr[i];
        if ((a >= 'A' && a <= 'Z' ? a + 32 : a) != (b >= 'A' && b <= 'Z' ? b + 32 : b))
            return false;
    }
    return true;
}

static bool
allows(const router_spec *s, kapi_str method)
{
    if (s->nmethods == 0)
        return true;
    for (size_t k = 0; k < s->nmethods; k++)
        if (strlen(s->methods[k]) == method.len &&
            memcmp(s->methods[k], method.ptr, method.len) == 0)
            return true;
    return false;
}

static int
str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static router_result
ref_match_route(kapi_str method, kapi_str host, kapi_str path, struct router_match *m)
{
    memset(m, 0, sizeof *m);
    if (path.len == 0 || path.ptr[0] != '/')
        return ROUTER_NO_ROUTE;
    for (int tier = 0; tier < 2; tier++) {
        bool matched = false;
        ref_match best, rm;
        size_t best_i = SIZE_MAX;
        const char *names[64];
        size_t nnames = 0;
        for (size_t i = 0; i < NELEMS(specs); i++) {
            const router_spec *s = &specs[i];
            if (tier == 0 ? !s->host || !host_eq(s->host, host) : s->host != NULL)
                continue;
            if (!ref_path_matches(s->path, path, &rm))
                continue;
            matched = true;
            for (size_t k = 0; k < s->nmethods; k++)
                names[nnames++] = s->methods[k];
            if (allows(s, method) && (best_i == SIZE_MAX || ref_rank_cmp(&rm, &best) < 0)) {
                best = rm;
                best_i = i;
            }
        }
        if (!matched)
            continue;
        if (best_i == SIZE_MAX) {
            qsort(names, nnames, sizeof names[0], str_cmp);
            for (size_t k = 0; k < nnames; k++) {
                if (k > 0 && strcmp(names[k], names[k - 1]) == 0)
                    continue;
                if (m->allow[0])
                    strcat(m->allow, ", ");
                strcat(m->allow, names[k]);
            }
            return ROUTER_NO_METHOD;
        }
        m->route = best_i;
        m->nparams = best.nvalues;
        m->prefix_len = best.kinds[best.nkinds - 1] == KIND_WILD ? best.prefix_len : 0;
        memcpy(m->param_values, best.values, sizeof best.values);
        return ROUTER_MATCH;
    }
    return ROUTER_NO_ROUTE;
}

/* --- the target ---------------------------------------------------------- */

static void
check(kapi_str method, kapi_str host, kapi_str path)
{
    struct router_match got, want;
    router_result r = router_match(rt, method, host, path, &got);
    router_result w = ref_match_route(method, host, path, &want);
    if (r != w || (r == ROUTER_MATCH && got.route != want.route)) {
        fprintf(stderr,
                "fuzz_router: %.*s %.*s %.*s: router %d route %zu, reference %d route %zu\n",
                (int)method.len, method.ptr, (int)host.len, host.ptr, (int)path.len, path.ptr, r,
                got.route, w, want.route);
        abort();
    }
    if (r == ROUTER_NO_METHOD) {
        CHECK(strcmp(got.allow, want.allow) == 0);
        return;
    }
    if (r != ROUTER_MATCH)
        return;
    CHECK(got.prefix_len == want.prefix_len);
    CHECK(got.prefix_len <= path.len);
    CHECK(got.nparams == want.nparams);
    for (size_t k = 0; k < got.nparams; k++) {
        kapi_str v = got.param_values[k];
        CHECK(v.ptr >= path.ptr && v.ptr + v.len <= path.ptr + path.len);
        CHECK(v.ptr == want.param_values[k].ptr && v.len == want.param_values[k].len);
        CHECK(v.len > 0 && memchr(v.ptr, '/', v.len) == NULL);
        CHECK(got.param_names[k].len > 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rt) {
        char err[256];
        if (router_build(specs, NELEMS(specs), &rt, err, sizeof err) != KAPI_OK) {
            fprintf(stderr, "fuzz_router: router_build: %s\n", err);
            abort();
        }
    }
    if (size < 2)
        return 0;
    const char *mname = methods[data[0] % NELEMS(methods)];
    const char *hname = hosts[data[1] % NELEMS(hosts)];
    kapi_str method = {mname, strlen(mname)};
    kapi_str host = {hname, strlen(hname)};

    /* An exact-size copy, so reading past the path is caught. */
    size_t len = size - 2;
    char *path = malloc(len ? len : 1);
    char *norm = malloc(len + 1);
    CHECK(path && norm);
    memcpy(path, data + 2, len);
    check(method, host, (kapi_str){path, len});
    size_t nlen;
    if (path_normalize(path, len, norm, &nlen) == KAPI_OK)
        check(method, host, (kapi_str){norm, nlen});
    free(path);
    free(norm);
    return 0;
}
