/* test_router.c -- unit tests of core/router.c: precedence (literal, param,
 * prefix, host, listed order), 404 and 405 with the exact Allow string,
 * parameters, prefix_len, build errors with their exact messages, and the
 * traversal attacks run through path_normalize then router_match. Links
 * core/router.c and core/path.c. It does not test normalization rules one
 * by one (test_path.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "path.h"
#include "router.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define METHODS(...)                                                                               \
    .methods = (const char *const[]){__VA_ARGS__},                                                 \
    .nmethods = NELEMS(((const char *const[]){__VA_ARGS__}))

static kapi_str
str(const char *s)
{
    return (kapi_str){s, s ? strlen(s) : 0};
}

static router *
build(const router_spec *specs, size_t n)
{
    router *rt = NULL;
    char err[256];
    kapi_status st = router_build(specs, n, &rt, err, sizeof err);
    if (st != KAPI_OK)
        fail_msg("router_build: %d %s", st, err);
    return rt;
}

/* Matches and fails the test unless the result is WANT (and, for a match,
 * the route is ROUTE). */
static void
expect(const router *rt, const char *method, const char *host, const char *path, router_result want,
       size_t route, struct router_match *m)
{
    router_result got = router_match(rt, str(method), str(host), str(path), m);
    if (got != want)
        fail_msg("%s %s%s: want result %d, got %d", method, host ? host : "", path, want, got);
    if (want == ROUTER_MATCH && m->route != route)
        fail_msg("%s %s%s: want route %zu, got %zu", method, host ? host : "", path, route,
                 m->route);
}

static void
expect_param(const struct router_match *m, size_t i, const char *name, const char *value)
{
    assert_true(i < m->nparams);
    assert_int_equal(m->param_names[i].len, strlen(name));
    assert_memory_equal(m->param_names[i].ptr, name, strlen(name));
    assert_int_equal(m->param_values[i].len, strlen(value));
    assert_memory_equal(m->param_values[i].ptr, value, strlen(value));
}

static void
test_exact_beats_param_beats_prefix(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/users/*", METHODS("GET")},
        {.path = "/users/{id}", METHODS("GET")},
        {.path = "/users/me", METHODS("GET")},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    expect(rt, "GET", NULL, "/users/me", ROUTER_MATCH, 2, &m);
    assert_int_equal(m.nparams, 0);
    expect(rt, "GET", NULL, "/users/42", ROUTER_MATCH, 1, &m);
    assert_int_equal(m.nparams, 1);
    expect_param(&m, 0, "id", "42");
    expect(rt, "GET", NULL, "/users/42/posts", ROUTER_MATCH, 0, &m);
    expect(rt, "GET", NULL, "/users", ROUTER_MATCH, 0, &m);
    expect(rt, "GET", NULL, "/users/", ROUTER_MATCH, 0, &m); /* "{id}" needs a non-empty segment */
    router_free(rt);
}

static void
test_longer_prefix_wins(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/*"},
        {.path = "/api/*"},
        {.path = "/api/v1/*"},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    expect(rt, "GET", NULL, "/api/v1/users", ROUTER_MATCH, 2, &m);
    assert_int_equal(m.prefix_len, strlen("/api/v1"));
    expect(rt, "GET", NULL, "/api/v1", ROUTER_MATCH, 2, &m);
    expect(rt, "GET", NULL, "/api/v2/users", ROUTER_MATCH, 1, &m);
    assert_int_equal(m.prefix_len, strlen("/api"));
    expect(rt, "GET", NULL, "/apiv1", ROUTER_MATCH, 0, &m); /* segments, not string prefixes */
    expect(rt, "GET", NULL, "/", ROUTER_MATCH, 0, &m);
    router_free(rt);
}

/* The literal wins even when listed later, and a dead literal branch is
 * left for the parameter. */
static void
test_literal_beats_param_with_backtracking(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/users/{id}/posts", METHODS("GET")},
        {.path = "/users/{id}", METHODS("GET")},
        {.path = "/users/new", METHODS("GET")},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    expect(rt, "GET", NULL, "/users/new", ROUTER_MATCH, 2, &m);
    expect(rt, "GET", NULL, "/users/new/posts", ROUTER_MATCH, 0, &m);
    expect_param(&m, 0, "id", "new");
    expect(rt, "GET", NULL, "/users/7/posts", ROUTER_MATCH, 0, &m);
    expect(rt, "GET", NULL, "/users/new/comments", ROUTER_NO_ROUTE, 0, &m);
    router_free(rt);
}

/* Segment by segment from the left: a literal first segment beats a
 * parameter first segment even when the rest is less specific. */
static void
test_precedence_is_left_to_right(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/{tenant}/status"},
        {.path = "/admin/*"},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    expect(rt, "GET", NULL, "/admin/status", ROUTER_MATCH, 1, &m);
    expect(rt, "GET", NULL, "/acme/status", ROUTER_MATCH, 0, &m);
    expect_param(&m, 0, "tenant", "acme");
    router_free(rt);
}

static void
test_host_beats_no_host(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/a", METHODS("GET", "POST")},
        {.path = "/*", .host = "API.example.com", METHODS("GET")},
        {.path = "/b", .host = "other.example.com"},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    /* the host route wins though "/a" is more specific */
    expect(rt, "GET", "api.example.com", "/a", ROUTER_MATCH, 1, &m);
    expect(rt, "GET", "Api.Example.COM", "/a", ROUTER_MATCH, 1, &m);
    expect(rt, "GET", "www.example.com", "/a", ROUTER_MATCH, 0, &m);
    expect(rt, "GET", NULL, "/a", ROUTER_MATCH, 0, &m);
    expect(rt, "GET", "api.example.com.evil", "/a", ROUTER_MATCH, 0, &m);
    /* host routes matched the path: the host-less route is not a fallback */
    expect(rt, "POST", "api.example.com", "/a", ROUTER_NO_METHOD, 0, &m);
    assert_string_equal(m.allow, "GET");
    /* no host route matches the path: host-less routes are */
    expect(rt, "POST", "other.example.com", "/a", ROUTER_MATCH, 0, &m);
    expect(rt, "GET", "other.example.com", "/b", ROUTER_MATCH, 2, &m);
    expect(rt, "GET", "api.example.com", "/b", ROUTER_MATCH, 1, &m);
    expect(rt, "GET", NULL, "/b", ROUTER_NO_ROUTE, 0, &m);
    router_free(rt);
}

static void
test_first_listed_wins_on_tie(void **state)
{
    (void)state;
    const router_spec any_first[] = {
        {.path = "/t/{first}"},
        {.path = "/t/{second}", METHODS("GET")},
    };
    router *rt = build(any_first, NELEMS(any_first));
    struct router_match m;
    expect(rt, "GET", NULL, "/t/1", ROUTER_MATCH, 0, &m);
    expect_param(&m, 0, "first", "1");
    router_free(rt);

    const router_spec get_first[] = {
        {.path = "/t/{second}", METHODS("GET")},
        {.path = "/t/{first}"},
    };
    rt = build(get_first, NELEMS(get_first));
    expect(rt, "GET", NULL, "/t/1", ROUTER_MATCH, 0, &m);
    expect_param(&m, 0, "second", "1");
    expect(rt, "DELETE", NULL, "/t/1", ROUTER_MATCH, 1, &m);
    expect_param(&m, 0, "first", "1");
    router_free(rt);
}

static void
test_not_found(void **state)
{
    (void)state;
    struct router_match m;
    router *rt = build(NULL, 0);
    expect(rt, "GET", NULL, "/", ROUTER_NO_ROUTE, 0, &m);
    router_free(rt);

    const router_spec specs[] = {
        {.path = "/a"},
        {.path = "/b/"},
        {.path = "/users/{id}"},
        {.path = "/"},
    };
    rt = build(specs, NELEMS(specs));
    expect(rt, "GET", NULL, "/a", ROUTER_MATCH, 0, &m);
    expect(rt, "GET", NULL, "/", ROUTER_MATCH, 3, &m);
    expect(rt, "GET", NULL, "/a/", ROUTER_NO_ROUTE, 0, &m); /* trailing slash is significant */
    expect(rt, "GET", NULL, "/b/", ROUTER_MATCH, 1, &m);
    expect(rt, "GET", NULL, "/b", ROUTER_NO_ROUTE, 0, &m);
    expect(rt, "GET", NULL, "/ab", ROUTER_NO_ROUTE, 0, &m);
    expect(rt, "GET", NULL, "/users/", ROUTER_NO_ROUTE, 0, &m);
    expect(rt, "GET", NULL, "/users", ROUTER_NO_ROUTE, 0, &m);
    expect(rt, "GET", NULL, "/users/1/2", ROUTER_NO_ROUTE, 0, &m);
    expect(rt, "GET", NULL, "a", ROUTER_NO_ROUTE, 0, &m);
    expect(rt, "GET", NULL, "", ROUTER_NO_ROUTE, 0, &m);
    assert_int_equal(router_match(rt, str("GET"), str(NULL), str(NULL), &m), ROUTER_NO_ROUTE);
    assert_int_equal(router_match(NULL, str("GET"), str(NULL), str("/a"), &m), ROUTER_NO_ROUTE);
    router_free(rt);
}

static void
test_method_not_allowed(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/r", METHODS("POST", "GET")},
        {.path = "/r", METHODS("HEAD")},
        {.path = "/{x}", METHODS("GET", "PUT")},
        {.path = "/other/*", METHODS("PATCH")},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    expect(rt, "DELETE", NULL, "/r", ROUTER_NO_METHOD, 0, &m);
    assert_string_equal(m.allow, "GET, HEAD, POST, PUT");
    expect(rt, "BREW", NULL, "/r", ROUTER_NO_METHOD, 0, &m);
    assert_string_equal(m.allow, "GET, HEAD, POST, PUT");
    expect(rt, "get", NULL, "/r", ROUTER_NO_METHOD, 0, &m); /* methods are case-sensitive */
    /* a less specific route allowing the method is chosen over a 405 */
    expect(rt, "PUT", NULL, "/r", ROUTER_MATCH, 2, &m);
    expect(rt, "HEAD", NULL, "/r", ROUTER_MATCH, 1, &m);
    expect(rt, "POST", NULL, "/x", ROUTER_NO_METHOD, 0, &m);
    assert_string_equal(m.allow, "GET, PUT");
    expect(rt, "GET", NULL, "/other/1", ROUTER_NO_METHOD, 0, &m);
    assert_string_equal(m.allow, "PATCH");
    expect(rt, "GET", NULL, "/nope/1", ROUTER_NO_ROUTE, 0, &m);
    assert_string_equal(m.allow, "");
    router_free(rt);

    /* a route without methods allows every method */
    const router_spec with_any[] = {
        {.path = "/r", METHODS("GET")},
        {.path = "/*"},
    };
    rt = build(with_any, NELEMS(with_any));
    expect(rt, "DELETE", NULL, "/r", ROUTER_MATCH, 1, &m);
    router_free(rt);
}

/* Names that do not fit in allow[] are left out whole, never cut. */
static void
test_allow_truncates_at_a_name(void **state)
{
    (void)state;
    static const char *const methods[] = {
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 40 bytes each: three fit in 127 */
        "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
        "DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD",
    };
    const router_spec specs[] = {{.path = "/r", .methods = methods, .nmethods = 4}};
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    expect(rt, "GET", NULL, "/r", ROUTER_NO_METHOD, 0, &m);
    assert_string_equal(m.allow, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA, "
                                 "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB, "
                                 "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC");
    router_free(rt);
}

static void
test_params(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/users/{uid}/posts/{pid}/comments/{cid}", METHODS("GET")},
        {.path = "/files/{name}"},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    const char *path = "/users/u-1/posts/22/comments/abc";
    expect(rt, "GET", NULL, path, ROUTER_MATCH, 0, &m);
    assert_int_equal(m.nparams, 3);
    expect_param(&m, 0, "uid", "u-1");
    expect_param(&m, 1, "pid", "22");
    expect_param(&m, 2, "cid", "abc");
    assert_ptr_equal(m.param_values[0].ptr, path + 7); /* a view, not a copy */
    assert_int_equal(m.prefix_len, 0);

    expect(rt, "GET", NULL, "/files/a%2Fb", ROUTER_MATCH, 1, &m);
    expect_param(&m, 0, "name", "a%2Fb");
    router_free(rt);
}

static void
test_prefix_len(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/api/*"},        {.path = "/*"}, {.path = "/exact"}, {.path = "/p/{x}"},
        {.path = "/t/{tenant}/*"},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    static const struct {
        const char *path;
        size_t route, prefix_len;
        const char *stripped; /* what the core forwards with strip_prefix */
    } cases[] = {
        {"/api/users", 0, 4, "/users"},
        {"/api/users/1", 0, 4, "/users/1"},
        {"/api/", 0, 4, "/"},
        {"/api", 0, 4, "/"},
        {"/x", 1, 0, "/x"},
        {"/", 1, 0, "/"},
        {"/exact", 2, 0, "/exact"},
        {"/p/1", 3, 0, "/p/1"},
        {"/t/acme/x/y", 4, 7, "/x/y"},
        {"/t/acme", 4, 7, "/"},
    };
    for (size_t i = 0; i < NELEMS(cases); i++) {
        expect(rt, "GET", NULL, cases[i].path, ROUTER_MATCH, cases[i].route, &m);
        assert_int_equal(m.prefix_len, cases[i].prefix_len);
        const char *rest = cases[i].path + m.prefix_len;
        assert_string_equal(*rest ? rest : "/", cases[i].stripped);
    }
    router_free(rt);
}

typedef struct build_error_case {
    router_spec specs[3];
    size_t n;
    kapi_status status;
    const char *message;
} build_error_case;

static void
test_build_errors(void **state)
{
    (void)state;
    static const char *const lower[] = {"GET", "get"};
    const build_error_case cases[] = {
        {{{.path = "users"}}, 1, KAPI_ECONFIG, "routes[0].path: 'users' does not start with '/'"},
        {{{.path = ""}}, 1, KAPI_ECONFIG, "routes[0].path: '' does not start with '/'"},
        {{{.path = NULL}}, 1, KAPI_ECONFIG, "routes[0].path: missing"},
        {{{.path = "/ok"}, {.path = "/ok2"}, {.path = "/users/{id"}},
         3,
         KAPI_ECONFIG,
         "routes[2].path: '{id' is not a closed parameter"},
        {{{.path = "/{"}}, 1, KAPI_ECONFIG, "routes[0].path: '{' is not a closed parameter"},
        {{{.path = "/a/*/b"}},
         1,
         KAPI_ECONFIG,
         "routes[0].path: '*' is only allowed as the whole last segment of '/a/*/b'"},
        {{{.path = "/a*"}},
         1,
         KAPI_ECONFIG,
         "routes[0].path: '*' is only allowed as the whole last segment of '/a*'"},
        {{{.path = "/a//b"}}, 1, KAPI_ECONFIG, "routes[0].path: '/a//b' has an empty segment"},
        {{{.path = "/a/../b"}},
         1,
         KAPI_ECONFIG,
         "routes[0].path: '/a/../b' has a dot segment, which a normalized path never has"},
        {{{.path = "/x{id}"}},
         1,
         KAPI_ECONFIG,
         "routes[0].path: 'x{id}' is not a whole-segment parameter like '{id}'"},
        {{{.path = "/{}"}},
         1,
         KAPI_ECONFIG,
         "routes[0].path: '{}' needs a name of letters, digits and '_'"},
        {{{.path = "/{a b}"}},
         1,
         KAPI_ECONFIG,
         "routes[0].path: '{a b}' needs a name of letters, digits and '_'"},
        {{{.path = "/{a}/{b}/{a}"}},
         1,
         KAPI_ECONFIG,
         "routes[0].path: parameter '{a}' appears twice"},
        {{{.path = "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/{n}/{o}/{p}/{q}"}},
         1,
         KAPI_ECONFIG,
         "routes[0].path: '/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/{n}/{o}/{p}/{q}' "
         "has more than 16 parameters"},
        {{{.path = "/u/{id}", METHODS("GET")}, {.path = "/u/{uid}", METHODS("POST", "GET")}},
         2,
         KAPI_ECONFIG,
         "routes[1].path: '/u/{uid}' repeats routes[0] with the same host and method GET"},
        {{{.path = "/a", .host = "Example.com"},
          {.path = "/b"},
          {.path = "/a", .host = "example.COM"}},
         3,
         KAPI_ECONFIG,
         "routes[2].path: '/a' repeats routes[0] with the same host and method any"},
        {{{.path = "/a", .methods = lower, .nmethods = 2}},
         1,
         KAPI_ECONFIG,
         "routes[0].methods[1]: 'get' is not an upper-case method name"},
        {{{.path = "/a", METHODS("")}},
         1,
         KAPI_ECONFIG,
         "routes[0].methods[0]: '' is not an upper-case method name"},
        {{{.path = "/a", .nmethods = 1}},
         1,
         KAPI_ECONFIG,
         "routes[0].methods: NULL with 1 methods"},
        {{{.path = "/a", .host = ""}},
         1,
         KAPI_ECONFIG,
         "routes[0].host: empty; leave it NULL to match any host"},
    };
    for (size_t i = 0; i < NELEMS(cases); i++) {
        static char sentinel;
        router *rt = (router *)&sentinel; /* must be reset to NULL on failure */
        char err[256] = "unset";
        kapi_status st = router_build(cases[i].specs, cases[i].n, &rt, err, sizeof err);
        if (st != cases[i].status || strcmp(err, cases[i].message) != 0)
            fail_msg("case %zu: want %d \"%s\", got %d \"%s\"", i, cases[i].status,
                     cases[i].message, st, err);
        assert_null(rt);
    }
}

/* Same pattern with another host, another method, or a "*" beside an exact
 * pattern is not a duplicate; sixteen parameters are allowed. */
static void
test_build_accepts_near_duplicates(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/a", METHODS("GET")},
        {.path = "/a", METHODS("POST")},
        {.path = "/a", .host = "x.example", METHODS("GET")},
        {.path = "/a"},
        {.path = "/a/*", METHODS("GET")},
        {.path = "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/{n}/{o}/{p}"},
    };
    router *rt = build(specs, NELEMS(specs));
    struct router_match m;
    expect(rt, "GET", NULL, "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", ROUTER_MATCH, 5, &m);
    assert_int_equal(m.nparams, 16);
    expect_param(&m, 15, "p", "16");
    router_free(rt);
    assert_int_equal(router_build(NULL, 0, NULL, NULL, 0), KAPI_EINVAL);
}

/* Hundreds of routes: each is found by a path of its own. */
static void
test_many_routes(void **state)
{
    (void)state;
    enum { N = 500 };
    static char paths[N][48];
    static router_spec specs[N];
    for (size_t i = 0; i < N; i++) {
        switch (i % 3) {
        case 0: snprintf(paths[i], sizeof paths[i], "/svc%zu/items", i); break;
        case 1: snprintf(paths[i], sizeof paths[i], "/svc%zu/{id}/x", i); break;
        default: snprintf(paths[i], sizeof paths[i], "/svc%zu/*", i); break;
        }
        specs[i] = (router_spec){.path = paths[i]};
    }
    router *rt = build(specs, N);
    struct router_match m;
    for (size_t i = 0; i < N; i++) {
        char path[64];
        snprintf(path, sizeof path, "/svc%zu/%s", i, i % 3 == 1 ? "7/x" : "items");
        expect(rt, "GET", NULL, path, ROUTER_MATCH, i, &m);
    }
    expect(rt, "GET", NULL, "/svc500/items", ROUTER_NO_ROUTE, 0, &m);
    router_free(rt);
}

/* DESIGN.md section 7: the normalized path decides the route, so a detour
 * through the public prefix cannot reach the admin routes without their
 * plugins. */
static void
test_attack_paths_land_on_admin(void **state)
{
    (void)state;
    const router_spec specs[] = {
        {.path = "/public/*"},
        {.path = "/admin", METHODS("GET")},
        {.path = "/admin/*", METHODS("GET")},
    };
    router *rt = build(specs, NELEMS(specs));
    static const struct {
        const char *raw;
        size_t route;
    } cases[] = {
        {"/public/../admin", 1},
        {"/public/%2e%2e/admin", 1},
        {"/public/%2E%2e/admin", 1},
        {"/public/%2E%2E/admin", 1},
        {"/public/.%2e/admin", 1},
        {"/public/./../admin", 1},
        {"/public/a/../../admin", 1},
        {"//admin", 1},
        {"/public/..//admin/", 2},
        {"/public/../admin/users", 2},
        {"/public/%2e%2e/admin/./users", 2},
        {"/public/../../../admin/x", 2},
        {"/admin/../public/x", 0},
        /* "%2F" is not a separator: one ordinary segment under /public */
        {"/public/..%2Fadmin", 0},
        {"/public/%2e%2e%2fadmin", 0},
        /* decoded once: "%252e%252e" is the name "%2e%2e", not ".." */
        {"/public/%252e%252e/admin", 0},
    };
    for (size_t i = 0; i < NELEMS(cases); i++) {
        char norm[64];
        size_t len;
        assert_int_equal(path_normalize(cases[i].raw, strlen(cases[i].raw), norm, &len), KAPI_OK);
        struct router_match m;
        router_result r = router_match(rt, str("GET"), str(NULL), (kapi_str){norm, len}, &m);
        if (r != ROUTER_MATCH || m.route != cases[i].route)
            fail_msg("%s -> %s: want route %zu, got result %d route %zu", cases[i].raw, norm,
                     cases[i].route, r, m.route);
    }
    router_free(rt);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_beats_param_beats_prefix),
        cmocka_unit_test(test_longer_prefix_wins),
        cmocka_unit_test(test_literal_beats_param_with_backtracking),
        cmocka_unit_test(test_precedence_is_left_to_right),
        cmocka_unit_test(test_host_beats_no_host),
        cmocka_unit_test(test_first_listed_wins_on_tie),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_allow_truncates_at_a_name),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_prefix_len),
        cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_build_accepts_near_duplicates),
        cmocka_unit_test(test_many_routes),
        cmocka_unit_test(test_attack_paths_land_on_admin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
