/* test_request.c -- unit tests for core/request.c through the kapi_host
 * table it fills (req_fill_host), as a module sees it: every accessor's
 * phase rule from kapi/host.h's table, header name and value validation,
 * multi-valued and case-insensitive headers, query parameter decoding,
 * shared values, respond's state and status rules, and NUL-terminated
 * views. The request is set up directly (the server's job); the chain
 * that sets phases is test_chain.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

static kapi_host host;

typedef struct fixture {
    kapi_req r;
    char buf[1024];
    char ctx[16]; /* what ctx() hands the running hook */
} fixture;

/* A request as the server leaves it: method, path, query, a few headers,
 * a path parameter and a body; then PHASE. */
static void
fill(fixture *f, req_phase phase)
{
    kapi_req *r = &f->r;
    req_init(r, f->buf, sizeof(f->buf));
    assert_int_equal(req_strdup(r, "GET", 3, &r->method), KAPI_OK);
    assert_int_equal(req_strdup(r, "/users/7", 8, &r->path), KAPI_OK);
    assert_int_equal(req_strdup(r, "a=1", 3, &r->query), KAPI_OK);
    assert_int_equal(req_strdup(r, "example.com", 11, &r->host), KAPI_OK);
    assert_int_equal(req_strdup(r, "127.0.0.1", 9, &r->client_addr), KAPI_OK);
    assert_int_equal(req_strdup(r, "id-1", 4, &r->id), KAPI_OK);
    assert_int_equal(req_strdup(r, "payload", 7, &r->body), KAPI_OK);
    assert_int_equal(req_headers_add(r, &r->headers, KAPI_STR("Accept"), KAPI_STR("text/html")),
                     KAPI_OK);
    assert_int_equal(req_headers_add(r, &r->headers, KAPI_STR("X-Multi"), KAPI_STR("one")),
                     KAPI_OK);
    assert_int_equal(req_headers_add(r, &r->headers, KAPI_STR("Cookie"), KAPI_STR("c=1")), KAPI_OK);
    assert_int_equal(req_headers_add(r, &r->headers, KAPI_STR("x-multi"), KAPI_STR("two")),
                     KAPI_OK);
    r->nparams = 1;
    r->param_names[0] = KAPI_STR("id");
    r->param_values[0] = KAPI_STR("7");
    r->current_ctx = f->ctx;
    r->phase = phase;
}

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    fill(f, REQ_PHASE_ACCESS);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    req_release(&f->r);
    free(f);
    return 0;
}

static void
assert_view(kapi_str v, const char *want)
{
    assert_non_null(v.ptr);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.ptr, want, v.len);
    assert_int_equal(v.ptr[v.len], '\0');
}

static void
set_phase(kapi_req *r, req_phase phase)
{
    r->phase = phase;
}

/* ---- the phase table ---- */

enum {
    A = 1 << REQ_PHASE_ACCESS,
    H = 1 << REQ_PHASE_HANDLE,
    R = 1 << REQ_PHASE_RESPONSE,
    L = 1 << REQ_PHASE_LOG,
};

/* One call per accessor, made so that it succeeds in a valid phase. */
#define CALL(name, body)                                                                           \
    static kapi_status call_##name(kapi_req *r)                                                    \
    {                                                                                              \
        kapi_str s;                                                                                \
        kapi_header h;                                                                             \
        int i;                                                                                     \
        (void)s;                                                                                   \
        (void)h;                                                                                   \
        (void)i;                                                                                   \
        body                                                                                       \
    }

CALL(req_method, return host.req_method(r, &s);)
CALL(req_path, return host.req_path(r, &s);)
CALL(req_query, return host.req_query(r, &s);)
CALL(req_query_param, return host.req_query_param(r, KAPI_STR("a"), 0, &s);)
CALL(req_path_param, return host.req_path_param(r, KAPI_STR("id"), &s);)
CALL(req_host, return host.req_host(r, &s);)
CALL(req_client_addr, return host.req_client_addr(r, &s);)
CALL(req_id, return host.req_id(r, &s);)
CALL(req_header, return host.req_header(r, KAPI_STR("accept"), 0, &s);)
CALL(req_header_at, return host.req_header_at(r, 0, &h);)
CALL(req_body, return host.req_body(r, &s);)
CALL(req_header_set, return host.req_header_set(r, KAPI_STR("X-New"), KAPI_STR("v"));)
CALL(req_header_add, return host.req_header_add(r, KAPI_STR("X-New"), KAPI_STR("v"));)
CALL(req_header_remove, return host.req_header_remove(r, KAPI_STR("Cookie"));)
CALL(respond, return host.respond(r, 200, NULL, 0, KAPI_STR("ok"));)
CALL(resp_status, return host.resp_status(r, &i);)
CALL(resp_set_status, return host.resp_set_status(r, 201);)
CALL(resp_header, {
    kapi_status st = host.resp_header(r, KAPI_STR("x-resp"), 0, &s);
    return st == KAPI_ENOTFOUND ? KAPI_OK : st;
})
CALL(resp_header_at, {
    kapi_status st = host.resp_header_at(r, 0, &h);
    return st == KAPI_ENOTFOUND ? KAPI_OK : st;
})
CALL(resp_header_set, return host.resp_header_set(r, KAPI_STR("X-Resp"), KAPI_STR("v"));)
CALL(resp_header_add, return host.resp_header_add(r, KAPI_STR("X-Resp"), KAPI_STR("v"));)
CALL(resp_header_remove, return host.resp_header_remove(r, KAPI_STR("X-Resp"));)
CALL(resp_body, return host.resp_body(r, &s);)
CALL(resp_set_body, return host.resp_set_body(r, KAPI_STR("new"));)
CALL(alloc, return host.alloc(r, 16) ? KAPI_OK : KAPI_EPHASE;)
CALL(ctx, return host.ctx(r) ? KAPI_OK : KAPI_EPHASE;)
CALL(shared_set, return host.shared_set(r, KAPI_STR("k"), KAPI_STR("v"));)
CALL(shared_get, {
    kapi_status st = host.shared_get(r, KAPI_STR("k"), &s);
    return st == KAPI_ENOTFOUND ? KAPI_OK : st;
})

static const struct phase_rule {
    const char *name;
    kapi_status (*call)(kapi_req *r);
    unsigned phases;
} rules[] = {
    {"req_method", call_req_method, A | H | R | L},
    {"req_path", call_req_path, A | H | R | L},
    {"req_query", call_req_query, A | H | R | L},
    {"req_query_param", call_req_query_param, A | H | R | L},
    {"req_path_param", call_req_path_param, A | H | R | L},
    {"req_host", call_req_host, A | H | R | L},
    {"req_client_addr", call_req_client_addr, A | H | R | L},
    {"req_id", call_req_id, A | H | R | L},
    {"req_header", call_req_header, A | H | R | L},
    {"req_header_at", call_req_header_at, A | H | R | L},
    {"req_body", call_req_body, A | H | R | L},
    {"req_header_set", call_req_header_set, A},
    {"req_header_add", call_req_header_add, A},
    {"req_header_remove", call_req_header_remove, A},
    {"respond", call_respond, A | H},
    {"resp_status", call_resp_status, H | R | L},
    {"resp_header", call_resp_header, H | R | L},
    {"resp_header_at", call_resp_header_at, H | R | L},
    {"resp_body", call_resp_body, H | R | L},
    {"resp_set_status", call_resp_set_status, H | R},
    {"resp_set_body", call_resp_set_body, H | R},
    {"resp_header_set", call_resp_header_set, H | R},
    {"resp_header_add", call_resp_header_add, H | R},
    {"resp_header_remove", call_resp_header_remove, H | R},
    {"alloc", call_alloc, A | H | R | L},
    {"ctx", call_ctx, A | H | R | L},
    {"shared_get", call_shared_get, A | H | R | L},
    {"shared_set", call_shared_set, A | H | R | L},
};

static void
test_phase_table(void **state)
{
    fixture *f = *state;
    static const req_phase phases[] = {REQ_PHASE_NONE, REQ_PHASE_ACCESS, REQ_PHASE_HANDLE,
                                       REQ_PHASE_RESPONSE, REQ_PHASE_LOG};
    static const char *const names[] = {"none", "access", "handle", "response", "log"};
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        for (size_t p = 0; p < sizeof(phases) / sizeof(phases[0]); p++) {
            req_release(&f->r);
            fill(f, phases[p]);
            bool valid = rules[i].phases & (1u << phases[p]);
            kapi_status st = rules[i].call(&f->r);
            if (st != (valid ? KAPI_OK : KAPI_EPHASE))
                fail_msg("%s in %s: %s, want %s", rules[i].name, names[p], kapi_strerror(st),
                         valid ? "success" : "KAPI_EPHASE");
        }
    }
}

/* A refused write changes nothing. */
static void
test_wrong_phase_changes_nothing(void **state)
{
    fixture *f = *state;
    kapi_str v;
    set_phase(&f->r, REQ_PHASE_HANDLE);
    assert_int_equal(host.req_header_set(&f->r, KAPI_STR("Accept"), KAPI_STR("x")), KAPI_EPHASE);
    assert_int_equal(host.req_header_remove(&f->r, KAPI_STR("Cookie")), KAPI_EPHASE);
    assert_int_equal(host.req_header(&f->r, KAPI_STR("accept"), 0, &v), KAPI_OK);
    assert_view(v, "text/html");
    assert_int_equal(host.req_header(&f->r, KAPI_STR("cookie"), 0, &v), KAPI_OK);

    set_phase(&f->r, REQ_PHASE_LOG);
    assert_int_equal(host.resp_set_status(&f->r, 500), KAPI_EPHASE);
    assert_int_equal(host.resp_set_body(&f->r, KAPI_STR("x")), KAPI_EPHASE);
    assert_int_equal(host.respond(&f->r, 200, NULL, 0, KAPI_STR("x")), KAPI_EPHASE);
    assert_int_equal(f->r.status, 0);
    assert_false(f->r.responded);
    assert_int_equal(f->r.resp_headers.n, 0);
}

static void
test_null_arguments(void **state)
{
    fixture *f = *state;
    kapi_str v;
    assert_int_equal(host.req_method(NULL, &v), KAPI_EINVAL);
    assert_int_equal(host.req_method(&f->r, NULL), KAPI_EINVAL);
    assert_int_equal(host.req_header(&f->r, KAPI_STR("accept"), 0, NULL), KAPI_EINVAL);
    assert_int_equal(host.req_header_set(NULL, KAPI_STR("A"), KAPI_STR("b")), KAPI_EINVAL);
    assert_int_equal(host.respond(NULL, 200, NULL, 0, KAPI_STR("")), KAPI_EINVAL);
    assert_null(host.alloc(NULL, 8));
    assert_null(host.ctx(NULL));
}

/* ---- readers ---- */

static void
test_readers_and_views(void **state)
{
    fixture *f = *state;
    kapi_str v;
    kapi_header h;
    assert_int_equal(host.req_method(&f->r, &v), KAPI_OK);
    assert_view(v, "GET");
    assert_int_equal(host.req_path(&f->r, &v), KAPI_OK);
    assert_view(v, "/users/7");
    assert_int_equal(host.req_query(&f->r, &v), KAPI_OK);
    assert_view(v, "a=1");
    assert_int_equal(host.req_host(&f->r, &v), KAPI_OK);
    assert_view(v, "example.com");
    assert_int_equal(host.req_client_addr(&f->r, &v), KAPI_OK);
    assert_view(v, "127.0.0.1");
    assert_int_equal(host.req_id(&f->r, &v), KAPI_OK);
    assert_view(v, "id-1");
    assert_int_equal(host.req_body(&f->r, &v), KAPI_OK);
    assert_view(v, "payload");
    assert_int_equal(host.req_path_param(&f->r, KAPI_STR("id"), &v), KAPI_OK);
    assert_view(v, "7");
    assert_int_equal(host.req_path_param(&f->r, KAPI_STR("ID"), &v), KAPI_ENOTFOUND);
    assert_int_equal(host.req_path_param(&f->r, KAPI_STR("i"), &v), KAPI_ENOTFOUND);
    assert_int_equal(host.req_header_at(&f->r, 1, &h), KAPI_OK);
    assert_view(h.name, "X-Multi");
    assert_view(h.value, "one");
    assert_int_equal(host.req_header_at(&f->r, 4, &h), KAPI_ENOTFOUND);
}

static void
test_absent_fields_read_empty(void **state)
{
    fixture *f = *state;
    kapi_str v;
    req_release(&f->r);
    req_init(&f->r, f->buf, sizeof(f->buf));
    f->r.phase = REQ_PHASE_HANDLE;
    assert_int_equal(host.req_query(&f->r, &v), KAPI_OK);
    assert_view(v, "");
    assert_int_equal(host.req_body(&f->r, &v), KAPI_OK);
    assert_view(v, "");
    assert_int_equal(host.req_query_param(&f->r, KAPI_STR("a"), 0, &v), KAPI_ENOTFOUND);
    assert_int_equal(host.resp_body(&f->r, &v), KAPI_OK);
    assert_view(v, "");
    int status = -1;
    assert_int_equal(host.resp_status(&f->r, &status), KAPI_OK);
    assert_int_equal(status, 0);
    assert_null(host.ctx(&f->r)); /* no req_ctx_size */
}

/* ---- headers ---- */

static void
test_multi_valued_case_insensitive(void **state)
{
    fixture *f = *state;
    kapi_str v;
    assert_int_equal(host.req_header(&f->r, KAPI_STR("X-MULTI"), 0, &v), KAPI_OK);
    assert_view(v, "one");
    assert_int_equal(host.req_header(&f->r, KAPI_STR("x-multi"), 1, &v), KAPI_OK);
    assert_view(v, "two");
    assert_int_equal(host.req_header(&f->r, KAPI_STR("x-multi"), 2, &v), KAPI_ENOTFOUND);
    assert_int_equal(host.req_header(&f->r, KAPI_STR("x-mult"), 0, &v), KAPI_ENOTFOUND);
    assert_int_equal(host.req_header(&f->r, KAPI_STR("x-multi2"), 0, &v), KAPI_ENOTFOUND);

    assert_int_equal(host.req_header_add(&f->r, KAPI_STR("X-MULTI"), KAPI_STR("three")), KAPI_OK);
    assert_int_equal(host.req_header(&f->r, KAPI_STR("x-multi"), 2, &v), KAPI_OK);
    assert_view(v, "three");
}

static void
test_header_set_replaces_all_values(void **state)
{
    fixture *f = *state;
    kapi_str v;
    assert_int_equal(host.req_header_set(&f->r, KAPI_STR("x-Multi"), KAPI_STR("only")), KAPI_OK);
    assert_int_equal(host.req_header(&f->r, KAPI_STR("X-Multi"), 0, &v), KAPI_OK);
    assert_view(v, "only");
    assert_int_equal(host.req_header(&f->r, KAPI_STR("X-Multi"), 1, &v), KAPI_ENOTFOUND);
    /* the others stay */
    assert_int_equal(host.req_header(&f->r, KAPI_STR("accept"), 0, &v), KAPI_OK);
    assert_int_equal(host.req_header(&f->r, KAPI_STR("cookie"), 0, &v), KAPI_OK);

    assert_int_equal(host.req_header_remove(&f->r, KAPI_STR("COOKIE")), KAPI_OK);
    assert_int_equal(host.req_header(&f->r, KAPI_STR("cookie"), 0, &v), KAPI_ENOTFOUND);
    assert_int_equal(host.req_header_remove(&f->r, KAPI_STR("absent")), KAPI_OK);
}

static void
test_many_headers(void **state)
{
    fixture *f = *state;
    kapi_str v;
    char name[16], value[16];
    for (int i = 0; i < 100; i++) { /* past the list's growth steps */
        snprintf(name, sizeof(name), "X-H%d", i);
        snprintf(value, sizeof(value), "v%d", i);
        assert_int_equal(host.req_header_add(&f->r, (kapi_str){name, strlen(name)},
                                             (kapi_str){value, strlen(value)}),
                         KAPI_OK);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "x-h%d", i);
        snprintf(value, sizeof(value), "v%d", i);
        assert_int_equal(host.req_header(&f->r, (kapi_str){name, strlen(name)}, 0, &v), KAPI_OK);
        assert_view(v, value);
    }
}

static const kapi_str bad_names[] = {
    {"", 0},    {"a b", 3}, {"a:b", 3},  {"a\0b", 3},     {"a\r", 2},   {"a\n", 2},
    {"(x)", 3}, {"a/b", 3}, {"a\"", 2},  {"\xc3\xa9", 2}, {"a\x7f", 2}, {"[a]", 3},
    {NULL, 0},  {"a=b", 3}, {"a\tb", 3}, {"@", 1},
};
static const kapi_str bad_values[] = {
    {"a\rb", 3}, {"a\nb", 3}, {"a\0b", 3}, {"\r\n", 2}, {"x\r\nSet-Cookie: y", 17}, {NULL, 1},
};
static const kapi_str good_name = KAPI_STR("X-Ok_!#$%&'*+-.^`|~09az");

/* Every header writer refuses BAD_NAMES and BAD_VALUES and takes good ones. */
static void
test_header_validation(void **state)
{
    fixture *f = *state;
    kapi_str ok = KAPI_STR("fine \t value\x80");
    const struct {
        kapi_status (*write)(kapi_req *, kapi_str, kapi_str);
        req_phase phase;
    } ws[] = {
        {host.req_header_set, REQ_PHASE_ACCESS},
        {host.req_header_add, REQ_PHASE_ACCESS},
        {host.resp_header_set, REQ_PHASE_HANDLE},
        {host.resp_header_add, REQ_PHASE_RESPONSE},
    };
    for (size_t w = 0; w < sizeof(ws) / sizeof(ws[0]); w++) {
        set_phase(&f->r, ws[w].phase);
        size_t before = f->r.headers.n + f->r.resp_headers.n;
        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
            if (ws[w].write(&f->r, bad_names[i], ok) != KAPI_EINVAL)
                fail_msg("writer %zu took bad name %zu", w, i);
        for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++)
            if (ws[w].write(&f->r, good_name, bad_values[i]) != KAPI_EINVAL)
                fail_msg("writer %zu took bad value %zu", w, i);
        assert_int_equal(f->r.headers.n + f->r.resp_headers.n, before);
        assert_int_equal(ws[w].write(&f->r, good_name, ok), KAPI_OK);
        assert_int_equal(ws[w].write(&f->r, good_name, (kapi_str){NULL, 0}), KAPI_OK);
    }
}

static void
test_respond_validates_headers(void **state)
{
    fixture *f = *state;
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        kapi_header h = {bad_names[i], KAPI_STR("v")};
        if (host.respond(&f->r, 200, &h, 1, KAPI_STR("")) != KAPI_EINVAL)
            fail_msg("respond took bad name %zu", i);
    }
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
        kapi_header h = {good_name, bad_values[i]};
        if (host.respond(&f->r, 200, &h, 1, KAPI_STR("")) != KAPI_EINVAL)
            fail_msg("respond took bad value %zu", i);
    }
    assert_int_equal(host.respond(&f->r, 200, NULL, 1, KAPI_STR("")), KAPI_EINVAL);
    assert_int_equal(host.respond(&f->r, 200, NULL, 0, (kapi_str){NULL, 3}), KAPI_EINVAL);
    assert_false(f->r.responded);
    assert_int_equal(f->r.status, 0);
    kapi_header h = {good_name, KAPI_STR("v")};
    assert_int_equal(host.respond(&f->r, 200, &h, 1, KAPI_STR("")), KAPI_OK);
}

/* ---- query parameters ---- */

static void
assert_param(kapi_req *r, const char *name, size_t index, const char *want)
{
    kapi_str v;
    kapi_status st = host.req_query_param(r, (kapi_str){name, strlen(name)}, index, &v);
    if (!want) {
        if (st != KAPI_ENOTFOUND)
            fail_msg("%s[%zu]: %s, want not found", name, index, kapi_strerror(st));
        return;
    }
    if (st != KAPI_OK)
        fail_msg("%s[%zu]: %s", name, index, kapi_strerror(st));
    if (v.len != strlen(want) || memcmp(v.ptr, want, v.len) != 0)
        fail_msg("%s[%zu]: \"%.*s\", want \"%s\"", name, index, (int)v.len, v.ptr, want);
    assert_int_equal(v.ptr[v.len], '\0');
}

static void
test_query_params(void **state)
{
    fixture *f = *state;
    const char *q = "a=1&b=x+y&c=%41%2b%2F&a=2&flag&e=%zz&g=%4&h=%&&m=%4z&"
                    "k%20y=sp&p+q=plus&%61=3&empty=&u=%C3%A9&n=%00x&eq=a=b";
    assert_int_equal(req_strdup(&f->r, q, strlen(q), &f->r.query), KAPI_OK);
    assert_param(&f->r, "a", 0, "1");
    assert_param(&f->r, "a", 1, "2");
    assert_param(&f->r, "a", 2, "3"); /* "%61" is "a" */
    assert_param(&f->r, "a", 3, NULL);
    assert_param(&f->r, "b", 0, "x y");
    assert_param(&f->r, "c", 0, "A+/");
    assert_param(&f->r, "flag", 0, ""); /* key without '=' */
    assert_param(&f->r, "e", 0, "%zz"); /* malformed escapes stay literal */
    assert_param(&f->r, "g", 0, "%4");
    assert_param(&f->r, "m", 0, "%4z");
    assert_param(&f->r, "h", 0, "%");
    assert_param(&f->r, "k y", 0, "sp");
    assert_param(&f->r, "p q", 0, "plus");
    assert_param(&f->r, "empty", 0, "");
    assert_param(&f->r, "u", 0, "\xc3\xa9");
    assert_param(&f->r, "eq", 0, "a=b");
    assert_param(&f->r, "A", 0, NULL); /* keys are case-sensitive */
    assert_param(&f->r, "fla", 0, NULL);
    assert_param(&f->r, "flagx", 0, NULL);

    kapi_str v;
    assert_int_equal(host.req_query_param(&f->r, KAPI_STR("n"), 0, &v), KAPI_OK);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.ptr, "\0x", 2);
}

/* ---- shared values ---- */

static void
test_shared(void **state)
{
    fixture *f = *state;
    kapi_str v;
    assert_int_equal(host.shared_get(&f->r, KAPI_STR("auth.subject"), &v), KAPI_ENOTFOUND);
    assert_int_equal(host.shared_set(&f->r, KAPI_STR("auth.subject"), KAPI_STR("alice")), KAPI_OK);
    assert_int_equal(host.shared_set(&f->r, KAPI_STR("auth.scope"), KAPI_STR("read")), KAPI_OK);
    assert_int_equal(host.shared_set(&f->r, KAPI_STR("auth.subject"), KAPI_STR("bob")), KAPI_OK);
    assert_int_equal(host.shared_get(&f->r, KAPI_STR("auth.subject"), &v), KAPI_OK);
    assert_view(v, "bob");
    assert_int_equal(f->r.shared.n, 2); /* replaced, not added */
    set_phase(&f->r, REQ_PHASE_LOG);
    assert_int_equal(host.shared_get(&f->r, KAPI_STR("auth.scope"), &v), KAPI_OK);
    assert_view(v, "read");
    assert_int_equal(host.shared_set(&f->r, KAPI_STR("empty"), (kapi_str){NULL, 0}), KAPI_OK);
    assert_int_equal(host.shared_get(&f->r, KAPI_STR("empty"), &v), KAPI_OK);
    assert_view(v, "");
    assert_int_equal(host.shared_set(&f->r, (kapi_str){"", 0}, KAPI_STR("x")), KAPI_EINVAL);
    assert_int_equal(host.shared_set(&f->r, KAPI_STR("k"), (kapi_str){NULL, 2}), KAPI_EINVAL);
}

/* ---- responses ---- */

static void
test_respond_once(void **state)
{
    fixture *f = *state;
    kapi_str v;
    const kapi_header h = {KAPI_STR("Content-Type"), KAPI_STR("text/plain")};
    assert_int_equal(host.respond(&f->r, 403, &h, 1, KAPI_STR("no")), KAPI_OK);
    assert_int_equal(host.respond(&f->r, 200, NULL, 0, KAPI_STR("yes")), KAPI_ESTATE);
    set_phase(&f->r, REQ_PHASE_HANDLE);
    assert_int_equal(host.respond(&f->r, 200, NULL, 0, KAPI_STR("yes")), KAPI_ESTATE);
    int status;
    assert_int_equal(host.resp_status(&f->r, &status), KAPI_OK);
    assert_int_equal(status, 403);
    assert_int_equal(host.resp_body(&f->r, &v), KAPI_OK);
    assert_view(v, "no");
    assert_int_equal(host.resp_header(&f->r, KAPI_STR("content-type"), 0, &v), KAPI_OK);
    assert_view(v, "text/plain");
}

static void
test_respond_status_range(void **state)
{
    fixture *f = *state;
    static const int bad[] = {0, -1, 100, 101, 199, 600, 1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (host.respond(&f->r, bad[i], NULL, 0, KAPI_STR("")) != KAPI_EINVAL)
            fail_msg("respond took status %d", bad[i]);
    assert_false(f->r.responded);
    assert_int_equal(host.respond(&f->r, 599, NULL, 0, KAPI_STR("")), KAPI_OK);

    set_phase(&f->r, REQ_PHASE_RESPONSE);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (host.resp_set_status(&f->r, bad[i]) != KAPI_EINVAL)
            fail_msg("resp_set_status took %d", bad[i]);
    assert_int_equal(f->r.status, 599);
    assert_int_equal(host.resp_set_status(&f->r, 200), KAPI_OK);
    assert_int_equal(f->r.status, 200);
}

static void
test_respond_keeps_earlier_headers(void **state)
{
    fixture *f = *state;
    kapi_header h;
    set_phase(&f->r, REQ_PHASE_HANDLE);
    assert_int_equal(host.resp_header_set(&f->r, KAPI_STR("X-Early"), KAPI_STR("1")), KAPI_OK);
    assert_int_equal(host.resp_header_add(&f->r, KAPI_STR("X-Early"), KAPI_STR("2")), KAPI_OK);
    const kapi_header ct = {KAPI_STR("Content-Type"), KAPI_STR("application/json")};
    assert_int_equal(host.respond(&f->r, 201, &ct, 1, KAPI_STR("{}")), KAPI_OK);
    assert_int_equal(host.resp_header_at(&f->r, 0, &h), KAPI_OK);
    assert_view(h.name, "X-Early");
    assert_view(h.value, "1");
    assert_int_equal(host.resp_header_at(&f->r, 1, &h), KAPI_OK);
    assert_view(h.value, "2");
    assert_int_equal(host.resp_header_at(&f->r, 2, &h), KAPI_OK);
    assert_view(h.name, "Content-Type");
    assert_view(h.value, "application/json");
    assert_int_equal(host.resp_header_at(&f->r, 3, &h), KAPI_ENOTFOUND);
}

static void
test_response_writers(void **state)
{
    fixture *f = *state;
    kapi_str v;
    set_phase(&f->r, REQ_PHASE_HANDLE);
    assert_int_equal(host.respond(&f->r, 200, NULL, 0, KAPI_STR("body")), KAPI_OK);
    set_phase(&f->r, REQ_PHASE_RESPONSE);
    assert_int_equal(host.resp_header_add(&f->r, KAPI_STR("Vary"), KAPI_STR("a")), KAPI_OK);
    assert_int_equal(host.resp_header_add(&f->r, KAPI_STR("vary"), KAPI_STR("b")), KAPI_OK);
    assert_int_equal(host.resp_header_set(&f->r, KAPI_STR("VARY"), KAPI_STR("c")), KAPI_OK);
    assert_int_equal(host.resp_header(&f->r, KAPI_STR("vary"), 0, &v), KAPI_OK);
    assert_view(v, "c");
    assert_int_equal(host.resp_header(&f->r, KAPI_STR("vary"), 1, &v), KAPI_ENOTFOUND);
    assert_int_equal(host.resp_header_remove(&f->r, KAPI_STR("Vary")), KAPI_OK);
    assert_int_equal(host.resp_header(&f->r, KAPI_STR("vary"), 0, &v), KAPI_ENOTFOUND);

    char big[3000]; /* larger than the request's own buffer */
    memset(big, 'b', sizeof(big));
    assert_int_equal(host.resp_set_body(&f->r, (kapi_str){big, sizeof(big)}), KAPI_OK);
    big[0] = 'X'; /* copied, not borrowed */
    assert_int_equal(host.resp_body(&f->r, &v), KAPI_OK);
    assert_int_equal(v.len, sizeof(big));
    assert_int_equal(v.ptr[0], 'b');
    assert_int_equal(v.ptr[v.len], '\0');
    assert_int_equal(host.resp_set_body(&f->r, (kapi_str){NULL, 1}), KAPI_EINVAL);
    assert_int_equal(host.resp_set_body(&f->r, (kapi_str){NULL, 0}), KAPI_OK);
    assert_int_equal(host.resp_body(&f->r, &v), KAPI_OK);
    assert_view(v, "");
}

/* ---- memory ---- */

static void
test_alloc_and_ctx(void **state)
{
    fixture *f = *state;
    unsigned char *p = host.alloc(&f->r, 5000);
    assert_non_null(p);
    for (size_t i = 0; i < 5000; i++)
        assert_int_equal(p[i], 0);
    assert_ptr_equal(host.ctx(&f->r), f->ctx);
}

static void
test_host_table(void **state)
{
    (void)state;
    kapi_host h;
    memset(&h, 0, sizeof(h));
    req_fill_host(&h);
    assert_int_equal(h.size, sizeof(kapi_host));
    assert_int_equal(h.abi_major, KAPI_ABI_MAJOR);
    assert_int_equal(h.abi_minor, KAPI_ABI_MINOR);
    /* request.c leaves log, pause, resume and the store to the embedding */
    assert_null(h.log);
    assert_null(h.pause);
    assert_null(h.resume);
    assert_null(h.store_get);
    assert_non_null(h.req_method);
    assert_non_null(h.shared_get);
}

/* A malloc'd body handed to the request becomes a NUL-terminated view
 * without a copy and is freed with the request (ASan's leak check fails
 * the build otherwise); NULL/0 is an empty view. */
static void
test_adopt(void **state)
{
    fixture *f = *state;
    kapi_str v;
    char *b = malloc(5);
    assert_non_null(b);
    memcpy(b, "hello", 5);
    assert_int_equal(req_adopt(&f->r, b, 5, &v), KAPI_OK);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.ptr, "hello", 5);
    assert_int_equal(v.ptr[5], '\0');
    char *big = malloc(1 << 20); /* larger than the arena: never copied into it */
    assert_non_null(big);
    memset(big, 'x', 1 << 20);
    assert_int_equal(req_adopt(&f->r, big, 1 << 20, &v), KAPI_OK);
    assert_int_equal(v.len, 1 << 20);
    assert_int_equal(v.ptr[(1 << 20) - 1], 'x');
    assert_int_equal(req_adopt(&f->r, NULL, 0, &v), KAPI_OK);
    assert_int_equal(v.len, 0);
    assert_string_equal(v.ptr, "");
}

int
main(void)
{
    req_fill_host(&host);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_phase_table),
        T(test_wrong_phase_changes_nothing),
        T(test_null_arguments),
        T(test_readers_and_views),
        T(test_absent_fields_read_empty),
        T(test_multi_valued_case_insensitive),
        T(test_header_set_replaces_all_values),
        T(test_many_headers),
        T(test_header_validation),
        T(test_respond_validates_headers),
        T(test_query_params),
        T(test_shared),
        T(test_respond_once),
        T(test_respond_status_range),
        T(test_respond_keeps_earlier_headers),
        T(test_response_writers),
        T(test_alloc_and_ctx),
        T(test_adopt),
        cmocka_unit_test(test_host_table),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
