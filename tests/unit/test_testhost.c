/* test_testhost.c -- unit tests of the SDK's fake host (sdk/testhost,
 * kapi/test.h) and, through it, of the request accessors it shares with
 * the gateway: phase errors, respond-once, query decoding, multi-valued
 * headers, private and shared per-request state, pause/resume from another
 * thread, the pause deadline with a late resume, log capture, single-hook
 * calls, the loader's errors, and subrequests: fetch()'s checks and phases,
 * answering queued fetches, and t_fetch.so (tests/modules) run through them.
 *
 * The modules here are "probes" compiled into this binary whose hooks call
 * a per-test function, so each test reads top to bottom; real .so modules
 * are tested in test_functions.c, except t_fetch.so, which exists to drive
 * fetch. It does not test HTTP or routing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <time.h>

#include <kapi/kapi.h>
#include <kapi/test.h>

/* What KAPI_MODULE's entry would set in a .so; set from the fake host. */
const kapi_host *kapi_host_api;

/* ---- probe modules ---- */

typedef struct probe probe;
typedef kapi_action (*probe_fn)(probe *p, kapi_req *r);

/* One instance of a probe: the hooks to run and what they saw. */
struct probe {
    probe_fn access, handle, response, log;
    int calls[4]; /* access, handle, response, log */
    kapi_status st[8];
    kapi_str seen[8];
    void *ctx[4]; /* kapi_ctx() per hook */
    const char *text;
    kapi_token *token;
    pthread_t thread;
    const char *result; /* written by a worker thread before resume() */
    void *data;         /* a test's own record (fetch tests: a done_seen) */
};

enum { ACCESS, HANDLE, RESPONSE, LOG };

/* The probe plugin's private per-request context. */
typedef struct probe_ctx {
    int entered;
} probe_ctx;

static kapi_action
run_probe(probe *p, int which, probe_fn fn, kapi_req *r)
{
    p->ctx[which] = kapi_ctx(r);
    p->calls[which]++;
    return fn ? fn(p, r) : (which == HANDLE ? KAPI_ERROR : KAPI_CONTINUE);
}

static kapi_action
probe_access(void *inst, kapi_req *r)
{
    probe *p = inst;
    return run_probe(p, ACCESS, p->access, r);
}

static kapi_action
probe_handle(void *inst, kapi_req *r)
{
    probe *p = inst;
    return run_probe(p, HANDLE, p->handle, r);
}

static kapi_action
probe_response(void *inst, kapi_req *r)
{
    probe *p = inst;
    return run_probe(p, RESPONSE, p->response, r);
}

static void
probe_log(void *inst, kapi_req *r)
{
    probe *p = inst;
    run_probe(p, LOG, p->log, r);
}

static kapi_status
probe_create(kapi_str config, void **instance, kapi_error *err)
{
    kapi_log(NULL, KAPI_LOG_INFO, "created with %s", config.ptr);
    if (strcmp(config.ptr, "bad") == 0)
        return kapi_error_set(err, "limit", "expected integer");
    *instance = calloc(1, sizeof(probe));
    return *instance ? KAPI_OK : KAPI_ENOMEM;
}

static const kapi_module probe_plugin = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "probe",
    .version = "0",
    .kind = KAPI_MODULE_PLUGIN,
    .req_ctx_size = sizeof(probe_ctx),
    .create = probe_create,
    .destroy = free,
    .on_access = probe_access,
    .on_response = probe_response,
    .on_log = probe_log,
};

static const kapi_module probe_function = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "probe-fn",
    .version = "0",
    .kind = KAPI_MODULE_FUNCTION,
    .handle = probe_handle,
};

/* ---- fixture and helpers ---- */

static int
setup(void **state)
{
    kapi_test_host *h = kapi_test_host_new();
    if (!h)
        return -1;
    kapi_host_api = kapi_test_host_table(h);
    *state = h;
    return 0;
}

static int
teardown(void **state)
{
    kapi_test_host_free(*state);
    kapi_host_api = NULL;
    return 0;
}

static void
assert_view(kapi_str v, const char *want)
{
    assert_non_null(v.ptr);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.ptr, want, v.len);
}

/* Runs R through PLUGINS (probes) and FN (a probe function, or NULL for the
 * fake upstream). */
static kapi_test_state
run(kapi_test_req *r, probe **plugins, size_t n, probe *fn)
{
    const kapi_module *mods[8];
    void *insts[8];
    for (size_t i = 0; i < n; i++) {
        mods[i] = &probe_plugin;
        insts[i] = plugins[i];
    }
    return kapi_test_run(r, mods, insts, n, fn ? &probe_function : NULL, fn);
}

static kapi_action
respond_text(kapi_req *r, int status, const char *text)
{
    const kapi_header h = {KAPI_STR("Content-Type"), KAPI_STR("text/plain")};
    return kapi_respond(r, status, &h, 1, kapi_str_c(text)) == KAPI_OK ? KAPI_DONE : KAPI_ERROR;
}

static kapi_action
answer_ok(probe *p, kapi_req *r)
{
    return respond_text(r, 200, p->text ? p->text : "ok");
}

/* ---- request fields ---- */

/* Stores method, path, query, id, client and host into p->seen[0..5]. */
static kapi_action
read_request(probe *p, kapi_req *r)
{
    p->st[0] = kapi_req_method(r, &p->seen[0]);
    p->st[1] = kapi_req_path(r, &p->seen[1]);
    p->st[2] = kapi_req_query(r, &p->seen[2]);
    p->st[3] = kapi_req_id(r, &p->seen[3]);
    p->st[4] = kapi_req_client_addr(r, &p->seen[4]);
    p->st[5] = kapi_req_host(r, &p->seen[5]);
    return answer_ok(p, r);
}

static void
test_request_fields(void **state)
{
    kapi_test_req *a = kapi_test_req_new(*state, NULL, NULL);
    kapi_test_req *b = kapi_test_req_new(*state, "POST", "/users/7?x=1&y");
    assert_int_equal(kapi_test_req_header(b, "Host", "API.Example.com:8443"), KAPI_OK);
    probe p = {.handle = read_request};

    assert_int_equal(kapi_test_call_handle(a, &probe_function, &p), KAPI_DONE);
    for (int i = 0; i < 6; i++)
        assert_int_equal(p.st[i], KAPI_OK);
    assert_view(p.seen[0], "GET");
    assert_view(p.seen[1], "/");
    assert_view(p.seen[2], "");
    assert_view(p.seen[3], "test-1");
    assert_view(p.seen[4], "127.0.0.1");
    assert_view(p.seen[5], "");

    assert_int_equal(kapi_test_call_handle(b, &probe_function, &p), KAPI_DONE);
    assert_view(p.seen[0], "POST");
    assert_view(p.seen[1], "/users/7");
    assert_view(p.seen[2], "x=1&y");
    assert_view(p.seen[3], "test-2");
    assert_view(p.seen[5], "api.example.com");

    kapi_test_req *c = kapi_test_req_new(*state, "GET", "/");
    assert_int_equal(kapi_test_req_client(c, "::1"), KAPI_OK);
    assert_int_equal(kapi_test_req_host(c, "h.test"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(c, "Host", "other.test"), KAPI_OK);
    assert_int_equal(kapi_test_call_handle(c, &probe_function, &p), KAPI_DONE);
    assert_view(p.seen[3], "test-3");
    assert_view(p.seen[4], "::1");
    assert_view(p.seen[5], "h.test"); /* set explicitly: the Host header does not override */

    /* Outside a hook the phase is "none": the accessors refuse. */
    kapi_str v;
    assert_int_equal(kapi_req_id(kapi_test_req_handle(c), &v), KAPI_EPHASE);
}

/* ---- phases ---- */

/* Access phase: what must fail there. */
static kapi_action
access_wrong_calls(probe *p, kapi_req *r)
{
    int status;
    p->st[0] = kapi_resp_set_status(r, 201);
    p->st[1] = kapi_resp_status(r, &status);
    p->st[2] = kapi_resp_header_set(r, KAPI_STR("X"), KAPI_STR("1"));
    p->st[3] = kapi_req_header_set(r, KAPI_STR("X-Ok"), KAPI_STR("yes"));
    return KAPI_CONTINUE;
}

/* Response phase: request writers, respond and pause must fail. */
static kapi_action
response_wrong_calls(probe *p, kapi_req *r)
{
    kapi_token *t = NULL;
    p->st[4] = kapi_req_header_set(r, KAPI_STR("X-Late"), KAPI_STR("1"));
    p->st[5] = kapi_respond(r, 500, NULL, 0, KAPI_STR(""));
    p->st[6] = kapi_pause(r, 0, &t);
    p->st[7] = kapi_resp_header_set(r, KAPI_STR("X-Resp"), KAPI_STR("ok"));
    return KAPI_CONTINUE;
}

/* Log phase: nothing may change the response any more. */
static kapi_action
log_wrong_calls(probe *p, kapi_req *r)
{
    int status = 0;
    p->seen[0] = (kapi_str){NULL, (size_t)kapi_resp_set_body(r, KAPI_STR("x"))};
    p->seen[1] = (kapi_str){NULL, (size_t)kapi_resp_status(r, &status)};
    p->seen[2] = (kapi_str){NULL, (size_t)status};
    return KAPI_CONTINUE;
}

static void
test_phase_errors(void **state)
{
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    probe plug = {
        .access = access_wrong_calls, .response = response_wrong_calls, .log = log_wrong_calls};
    probe fn = {.handle = answer_ok};
    probe *plugins[] = {&plug};

    assert_int_equal(run(r, plugins, 1, &fn), KAPI_TEST_DONE);
    assert_int_equal(plug.st[0], KAPI_EPHASE);
    assert_int_equal(plug.st[1], KAPI_EPHASE);
    assert_int_equal(plug.st[2], KAPI_EPHASE);
    assert_int_equal(plug.st[3], KAPI_OK);
    assert_int_equal(plug.st[4], KAPI_EPHASE);
    assert_int_equal(plug.st[5], KAPI_EPHASE);
    assert_int_equal(plug.st[6], KAPI_EPHASE);
    assert_int_equal(plug.st[7], KAPI_OK);
    assert_int_equal((kapi_status)plug.seen[0].len, KAPI_EPHASE);
    assert_int_equal((kapi_status)plug.seen[1].len, KAPI_OK);
    assert_int_equal(plug.seen[2].len, 200);

    assert_int_equal(kapi_test_resp_status(r), 200);
    assert_view(kapi_test_resp_body(r), "ok");
    assert_view(kapi_test_resp_header(r, "x-resp", 0), "ok");
    assert_view(kapi_test_req_header_get(r, "X-OK", 0), "yes");
    assert_null(kapi_test_req_header_get(r, "X-Late", 0).ptr);
    assert_int_equal(plug.calls[ACCESS], 1);
    assert_int_equal(plug.calls[RESPONSE], 1);
    assert_int_equal(plug.calls[LOG], 1);
}

static kapi_action
respond_twice(probe *p, kapi_req *r)
{
    p->st[0] = kapi_respond(r, 403, NULL, 0, KAPI_STR("first"));
    p->st[1] = kapi_respond(r, 200, NULL, 0, KAPI_STR("second"));
    return KAPI_DONE;
}

static void
test_respond_twice_is_estate(void **state)
{
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    probe first = {.access = respond_twice}, second = {0}, fn = {.handle = answer_ok};
    probe *plugins[] = {&first, &second};

    assert_int_equal(run(r, plugins, 2, &fn), KAPI_TEST_DONE);
    assert_int_equal(first.st[0], KAPI_OK);
    assert_int_equal(first.st[1], KAPI_ESTATE);
    assert_int_equal(kapi_test_resp_status(r), 403);
    assert_view(kapi_test_resp_body(r), "first");
    /* An early answer stops the access phase and skips the target... */
    assert_int_equal(second.calls[ACCESS], 0);
    assert_int_equal(fn.calls[HANDLE], 0);
    /* ...but the response phase runs for plugins whose access ran, and the
     * log phase for every plugin. */
    assert_int_equal(first.calls[RESPONSE], 1);
    assert_int_equal(second.calls[RESPONSE], 0);
    assert_int_equal(first.calls[LOG], 1);
    assert_int_equal(second.calls[LOG], 1);
}

static kapi_action
fail_hook(probe *p, kapi_req *r)
{
    (void)p;
    (void)r;
    return KAPI_ERROR;
}

static void
test_failing_hook_gives_500_problem(void **state)
{
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    probe plug = {.access = fail_hook}, fn = {.handle = answer_ok};
    probe *plugins[] = {&plug};

    assert_int_equal(run(r, plugins, 1, &fn), KAPI_TEST_DONE);
    assert_int_equal(kapi_test_resp_status(r), 500);
    assert_view(kapi_test_resp_header(r, "Content-Type", 0), "application/problem+json");
    assert_non_null(strstr(kapi_test_resp_body(r).ptr, "\"request_id\":\"test-1\""));
    assert_int_equal(fn.calls[HANDLE], 0);
    assert_int_equal(plug.calls[RESPONSE], 1);
}

/* ---- query parameters and headers ---- */

static kapi_action
read_query(probe *p, kapi_req *r)
{
    p->st[0] = kapi_req_query_param(r, KAPI_STR("q"), 0, &p->seen[0]);
    p->st[1] = kapi_req_query_param(r, KAPI_STR("q"), 1, &p->seen[1]);
    p->st[2] = kapi_req_query_param(r, KAPI_STR("q"), 2, &p->seen[2]);
    p->st[3] = kapi_req_query_param(r, KAPI_STR("flag"), 0, &p->seen[3]);
    p->st[4] = kapi_req_query_param(r, KAPI_STR("na me"), 0, &p->seen[4]);
    p->st[5] = kapi_req_query_param(r, KAPI_STR("Q"), 0, &p->seen[5]);
    p->st[6] = kapi_req_query_param(r, KAPI_STR("empty"), 0, &p->seen[6]);
    p->st[7] = kapi_req_query(r, &p->seen[7]);
    return KAPI_CONTINUE;
}

static void
test_query_params_decoding(void **state)
{
    const char *raw = "q=a+b%2Fc&flag&na%20me=%E2%9C%93&q=100%25&empty=&q=%zz";
    char target[128];
    snprintf(target, sizeof(target), "/search?%s", raw);
    kapi_test_req *r = kapi_test_req_new(*state, "GET", target);
    probe p = {.access = read_query};

    assert_int_equal(kapi_test_call_access(r, &probe_plugin, &p), KAPI_CONTINUE);
    assert_int_equal(p.st[0], KAPI_OK);
    assert_view(p.seen[0], "a b/c");
    assert_int_equal(p.st[1], KAPI_OK);
    assert_view(p.seen[1], "100%");
    assert_int_equal(p.st[2], KAPI_OK);
    assert_view(p.seen[2], "%zz"); /* a malformed escape stays literal */
    assert_int_equal(p.st[3], KAPI_OK);
    assert_view(p.seen[3], ""); /* present without '=' */
    assert_int_equal(p.st[4], KAPI_OK);
    assert_view(p.seen[4], "\xe2\x9c\x93");    /* names are decoded too */
    assert_int_equal(p.st[5], KAPI_ENOTFOUND); /* names are case-sensitive */
    assert_int_equal(p.st[6], KAPI_OK);
    assert_view(p.seen[6], "");
    assert_view(p.seen[7], raw); /* the raw query stays raw */
}

static kapi_action
read_headers(probe *p, kapi_req *r)
{
    kapi_header h;
    p->st[0] = kapi_req_header(r, KAPI_STR("ACCEPT"), 0, &p->seen[0]);
    p->st[1] = kapi_req_header(r, KAPI_STR("accept"), 1, &p->seen[1]);
    p->st[2] = kapi_req_header(r, KAPI_STR("Accept"), 2, &p->seen[2]);
    p->st[3] = kapi_req_header_at(r, 1, &h);
    p->seen[3] = h.name;
    p->seen[4] = h.value;
    p->st[4] = kapi_req_header_at(r, 3, &h);
    /* set replaces every value; add appends one; remove drops all */
    p->st[5] = kapi_req_header_set(r, KAPI_STR("accept"), KAPI_STR("text/plain"));
    p->st[6] = kapi_req_header_add(r, KAPI_STR("X-Multi"), KAPI_STR("2"));
    p->st[7] = kapi_req_header_remove(r, KAPI_STR("x-gone"));
    return KAPI_CONTINUE;
}

static kapi_action
multi_response_headers(probe *p, kapi_req *r)
{
    (void)p;
    kapi_status st = kapi_respond(r, 200, NULL, 0, KAPI_STR("ok"));
    if (st == KAPI_OK)
        st = kapi_resp_header_add(r, KAPI_STR("Set-Cookie"), KAPI_STR("a=1"));
    if (st == KAPI_OK)
        st = kapi_resp_header_add(r, KAPI_STR("Set-Cookie"), KAPI_STR("b=2"));
    return st == KAPI_OK ? KAPI_DONE : KAPI_ERROR;
}

static void
test_multi_valued_headers(void **state)
{
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    assert_int_equal(kapi_test_req_header(r, "Accept", "application/json"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "X-Gone", "1"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "accept", "text/html"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "X-Multi", "1"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "", "x"), KAPI_EINVAL);
    probe plug = {.access = read_headers}, fn = {.handle = multi_response_headers};
    probe *plugins[] = {&plug};

    assert_int_equal(run(r, plugins, 1, &fn), KAPI_TEST_DONE);
    assert_view(plug.seen[0], "application/json");
    assert_view(plug.seen[1], "text/html");
    assert_int_equal(plug.st[2], KAPI_ENOTFOUND);
    assert_int_equal(plug.st[3], KAPI_OK);
    assert_view(plug.seen[3], "X-Gone");
    assert_view(plug.seen[4], "1");
    assert_int_equal(plug.st[4], KAPI_OK);
    for (int i = 5; i < 8; i++)
        assert_int_equal(plug.st[i], KAPI_OK);

    assert_view(kapi_test_req_header_get(r, "Accept", 0), "text/plain");
    assert_null(kapi_test_req_header_get(r, "Accept", 1).ptr);
    assert_view(kapi_test_req_header_get(r, "x-multi", 0), "1");
    assert_view(kapi_test_req_header_get(r, "x-multi", 1), "2");
    assert_null(kapi_test_req_header_get(r, "X-Gone", 0).ptr);

    assert_view(kapi_test_resp_header(r, "set-cookie", 0), "a=1");
    assert_view(kapi_test_resp_header(r, "set-cookie", 1), "b=2");
    assert_null(kapi_test_resp_header(r, "set-cookie", 2).ptr);
    kapi_header h;
    assert_int_equal(kapi_test_resp_header_at(r, 1, &h), KAPI_OK);
    assert_view(h.value, "b=2");
    assert_int_equal(kapi_test_resp_header_at(r, 2, &h), KAPI_ENOTFOUND);
}

static kapi_action
bad_header_writes(probe *p, kapi_req *r)
{
    p->st[0] = kapi_req_header_set(r, KAPI_STR("X-Split"), KAPI_STR("a\r\nInjected: 1"));
    p->st[1] = kapi_req_header_set(r, KAPI_STR("Bad Name"), KAPI_STR("1"));
    p->st[2] = kapi_req_header_add(r, KAPI_STR(""), KAPI_STR("1"));
    return KAPI_CONTINUE;
}

static void
test_header_writes_are_validated(void **state)
{
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    probe p = {.access = bad_header_writes};
    assert_int_equal(kapi_test_call_access(r, &probe_plugin, &p), KAPI_CONTINUE);
    assert_int_equal(p.st[0], KAPI_EINVAL);
    assert_int_equal(p.st[1], KAPI_EINVAL);
    assert_int_equal(p.st[2], KAPI_EINVAL);
    kapi_header h;
    assert_int_equal(kapi_req_header_at(kapi_test_req_handle(r), 0, &h), KAPI_EPHASE);
    assert_null(kapi_test_req_header_get(r, "X-Split", 0).ptr);
}

/* ---- per-request state ---- */

static kapi_action
set_subject(probe *p, kapi_req *r)
{
    p->st[0] = kapi_shared_set(r, KAPI_STR("auth.subject"), KAPI_STR("bob"));
    p->st[1] = kapi_shared_set(r, KAPI_STR("auth.subject"), KAPI_STR("alice")); /* replaces */
    probe_ctx *c = kapi_ctx(r);
    c->entered++;
    return KAPI_CONTINUE;
}

static kapi_action
forward_subject(probe *p, kapi_req *r)
{
    kapi_str s;
    p->st[0] = kapi_shared_get(r, KAPI_STR("auth.subject"), &s);
    p->st[1] = kapi_shared_get(r, KAPI_STR("auth.missing"), &p->seen[1]);
    if (p->st[0] == KAPI_OK)
        p->st[2] = kapi_req_header_set(r, KAPI_STR("X-Subject"), s);
    probe_ctx *c = kapi_ctx(r);
    p->seen[0] = (kapi_str){NULL, (size_t)c->entered}; /* not the other plugin's context */
    return KAPI_CONTINUE;
}

static kapi_action
answer_subject(probe *p, kapi_req *r)
{
    kapi_str s;
    p->st[0] = kapi_req_header(r, KAPI_STR("x-subject"), 0, &s);
    return p->st[0] == KAPI_OK && kapi_respond(r, 200, NULL, 0, s) == KAPI_OK ? KAPI_DONE
                                                                              : KAPI_ERROR;
}

/* Response and log see the same private context the access hook had. */
static kapi_action
check_ctx(probe *p, kapi_req *r)
{
    probe_ctx *c = kapi_ctx(r);
    p->seen[7] = (kapi_str){NULL, c ? (size_t)c->entered : 99};
    return KAPI_CONTINUE;
}

static void
test_shared_and_private_state(void **state)
{
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    probe auth = {.access = set_subject, .response = check_ctx, .log = check_ctx};
    probe fwd = {.access = forward_subject};
    probe fn = {.handle = answer_subject};
    probe *plugins[] = {&auth, &fwd};

    assert_int_equal(run(r, plugins, 2, &fn), KAPI_TEST_DONE);
    assert_int_equal(auth.st[0], KAPI_OK);
    assert_int_equal(auth.st[1], KAPI_OK);
    assert_int_equal(fwd.st[0], KAPI_OK);
    assert_int_equal(fwd.st[1], KAPI_ENOTFOUND);
    assert_int_equal(fwd.st[2], KAPI_OK);
    assert_int_equal(fwd.seen[0].len, 0); /* fwd's own zeroed context */
    assert_view(kapi_test_resp_body(r), "alice");
    assert_view(kapi_test_shared_get(r, "auth.subject"), "alice");
    assert_null(kapi_test_shared_get(r, "auth.missing").ptr);

    assert_non_null(auth.ctx[ACCESS]);
    assert_ptr_equal(auth.ctx[ACCESS], auth.ctx[RESPONSE]);
    assert_ptr_equal(auth.ctx[ACCESS], auth.ctx[LOG]);
    assert_ptr_not_equal(auth.ctx[ACCESS], fwd.ctx[ACCESS]);
    assert_int_equal(auth.seen[7].len, 1);
    assert_null(fn.ctx[HANDLE]); /* req_ctx_size 0: no context */
}

/* ---- pause and resume ---- */

static void *
worker(void *arg)
{
    probe *p = arg;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    /* Never into request memory: after a timeout the request is gone. */
    p->result = "from-worker";
    p->st[7] = kapi_resume(p->token);
    return NULL;
}

/* First call: start the worker and pause; second call: use its result. */
static kapi_action
pause_for_worker(probe *p, kapi_req *r)
{
    probe_ctx *c = kapi_ctx(r);
    if (c->entered++ == 0) {
        p->st[0] = kapi_pause(r, 1500, &p->token);
        if (p->st[0] != KAPI_OK || pthread_create(&p->thread, NULL, worker, p) != 0)
            return KAPI_ERROR;
        return KAPI_PAUSE;
    }
    p->st[1] = kapi_req_header_set(r, KAPI_STR("X-Subject"), kapi_str_c(p->result));
    return KAPI_CONTINUE;
}

static void
test_pause_and_resume_from_another_thread(void **state)
{
    kapi_test_host *h = *state;
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");
    probe plug = {.access = pause_for_worker}, fn = {.handle = answer_subject};
    probe *plugins[] = {&plug};

    assert_int_equal(run(r, plugins, 1, &fn), KAPI_TEST_PAUSED);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_PAUSED);
    assert_int_equal(kapi_test_req_pause_timeout(r), 1500);
    assert_int_equal(fn.calls[HANDLE], 0);
    assert_int_equal(kapi_test_wait_resume(h, 5000), KAPI_OK);
    pthread_join(plug.thread, NULL);
    assert_int_equal(plug.st[7], KAPI_OK);

    assert_int_equal(kapi_test_resume_pending(h), 1);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_DONE);
    assert_int_equal(plug.calls[ACCESS], 2); /* the paused hook runs again */
    assert_int_equal(plug.st[1], KAPI_OK);
    assert_int_equal(kapi_test_resp_status(r), 200);
    assert_view(kapi_test_resp_body(r), "from-worker");
    assert_int_equal(plug.calls[LOG], 1);
    assert_int_equal(kapi_test_resume_pending(h), 0);
    assert_int_equal(kapi_test_wait_resume(h, 10), KAPI_ETIMEDOUT);
}

static kapi_action
pause_and_keep_token(probe *p, kapi_req *r)
{
    p->st[0] = kapi_pause(r, 0, &p->token);
    return p->st[0] == KAPI_OK ? KAPI_PAUSE : KAPI_ERROR;
}

static void
test_timeout_then_late_resume(void **state)
{
    kapi_test_host *h = *state;
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/slow");
    probe plug = {0}, fn = {.handle = pause_and_keep_token};
    probe *plugins[] = {&plug};

    assert_int_equal(run(r, plugins, 1, &fn), KAPI_TEST_PAUSED);
    assert_int_equal(kapi_test_req_pause_timeout(r), 30000); /* 0 means the default */
    assert_int_equal(kapi_test_fire_timeout(r), KAPI_OK);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_DONE);
    assert_int_equal(kapi_test_resp_status(r), 504);
    assert_view(kapi_test_resp_header(r, "content-type", 0), "application/problem+json");
    assert_int_equal(plug.calls[RESPONSE], 1);
    assert_int_equal(plug.calls[LOG], 1);
    assert_int_equal(kapi_test_fire_timeout(r), KAPI_ESTATE);

    /* The module finishes its work late: the resume is accepted and dropped,
     * the hook is not called again and the token is freed (ASan checks). */
    assert_int_equal(kapi_resume(fn.token), KAPI_OK);
    assert_int_equal(kapi_test_resume_pending(h), 0);
    assert_int_equal(kapi_test_resumes_dropped(h), 1);
    assert_int_equal(fn.calls[HANDLE], 1);
    assert_int_equal(kapi_test_resp_status(r), 504);
}

static void
test_resume_after_request_freed_is_dropped(void **state)
{
    kapi_test_host *h = *state;
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");
    probe fn = {.handle = pause_and_keep_token};

    assert_int_equal(run(r, NULL, 0, &fn), KAPI_TEST_PAUSED);
    kapi_test_req_free(r);
    assert_int_equal(kapi_resume(fn.token), KAPI_OK);
    assert_int_equal(kapi_test_resume_pending(h), 0);
    assert_int_equal(kapi_test_resumes_dropped(h), 1);
}

static void
test_unresumed_token_freed_with_host(void **state)
{
    /* A module that never resumes: host_free (in teardown) frees the token;
     * ASan's leak check fails this test otherwise. */
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    probe fn = {.handle = pause_and_keep_token};
    assert_int_equal(run(r, NULL, 0, &fn), KAPI_TEST_PAUSED);
    assert_non_null(fn.token);
}

static kapi_action
pause_without_token(probe *p, kapi_req *r)
{
    (void)p;
    (void)r;
    return KAPI_PAUSE;
}

static kapi_action
pause_then_continue(probe *p, kapi_req *r)
{
    p->st[0] = kapi_pause(r, 0, &p->token);
    p->st[1] = kapi_pause(r, 0, &p->token); /* a second pause while one is out */
    return KAPI_CONTINUE;
}

/* True when a captured line contains NEEDLE. */
static bool
logged(kapi_test_host *h, const char *needle)
{
    for (size_t i = 0; i < kapi_test_log_count(h); i++)
        if (strstr(kapi_test_log_line(h, i, NULL), needle))
            return true;
    return false;
}

static void
test_pause_misuse(void **state)
{
    kapi_test_host *h = *state;
    kapi_test_req *a = kapi_test_req_new(h, "GET", "/");
    probe bad = {.access = pause_without_token}, fn = {.handle = answer_ok};
    probe *plugins[] = {&bad};
    assert_int_equal(run(a, plugins, 1, &fn), KAPI_TEST_DONE);
    assert_int_equal(kapi_test_resp_status(a), 500);

    kapi_test_req *b = kapi_test_req_new(h, "GET", "/");
    probe sloppy = {.access = pause_then_continue};
    plugins[0] = &sloppy;
    assert_int_equal(run(b, plugins, 1, &fn), KAPI_TEST_DONE);
    assert_int_equal(sloppy.st[0], KAPI_OK);
    assert_int_equal(sloppy.st[1], KAPI_ESTATE);
    assert_int_equal(kapi_test_resp_status(b), 200);
    assert_true(logged(h, "called pause() but returned"));
    assert_int_equal(kapi_resume(sloppy.token), KAPI_OK);
    assert_int_equal(kapi_resume(sloppy.token), KAPI_ESTATE); /* still queued: refused */
    assert_int_equal(kapi_test_resume_pending(h), 0);
    assert_int_equal(kapi_test_resumes_dropped(h), 1);
}

/* ---- single hooks ---- */

static kapi_action
response_stamp(probe *p, kapi_req *r)
{
    int status = 0;
    p->st[0] = kapi_resp_status(r, &status);
    p->seen[0] = (kapi_str){NULL, (size_t)status};
    p->st[1] = kapi_resp_header_set(r, KAPI_STR("X-Stamp"), KAPI_STR("1"));
    p->st[2] = kapi_resp_set_body(r, KAPI_STR("stamped"));
    return KAPI_CONTINUE;
}

static void
test_single_hooks(void **state)
{
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    probe p = {.access = access_wrong_calls, .response = response_stamp};

    assert_int_equal(kapi_test_call_access(r, &probe_plugin, &p), KAPI_CONTINUE);
    assert_int_equal(p.st[0], KAPI_EPHASE);
    assert_int_equal(p.st[3], KAPI_OK);
    assert_view(kapi_test_req_header_get(r, "X-Ok", 0), "yes");

    const kapi_header h = {KAPI_STR("Content-Type"), KAPI_STR("text/plain")};
    assert_int_equal(kapi_test_resp_set(r, 201, &h, 1, "upstream", 8), KAPI_OK);
    assert_int_equal(kapi_test_resp_set(r, 42, NULL, 0, NULL, 0), KAPI_EINVAL);
    assert_int_equal(kapi_test_call_response(r, &probe_plugin, &p), KAPI_CONTINUE);
    assert_int_equal(p.seen[0].len, 201);
    assert_int_equal(p.st[1], KAPI_OK);
    assert_int_equal(p.st[2], KAPI_OK);
    assert_view(kapi_test_resp_header(r, "x-stamp", 0), "1");
    assert_view(kapi_test_resp_header(r, "content-type", 0), "text/plain");
    assert_view(kapi_test_resp_body(r), "stamped");
    assert_ptr_equal(p.ctx[ACCESS], p.ctx[RESPONSE]); /* one context per module and request */

    kapi_test_call_log(r, &probe_plugin, &p);
    assert_int_equal(p.calls[LOG], 1);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_READY);
    /* A missing hook: plugins continue, a function cannot answer. */
    assert_int_equal(kapi_test_call_handle(r, &probe_plugin, &p), KAPI_ERROR);
    assert_int_equal(p.calls[HANDLE], 0);
}

static void
test_single_hook_pause(void **state)
{
    kapi_test_host *h = *state;
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");
    probe p = {.access = pause_and_keep_token};

    assert_int_equal(kapi_test_call_access(r, &probe_plugin, &p), KAPI_PAUSE);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_PAUSED);
    assert_int_equal(kapi_test_call_access(r, &probe_plugin, &p), KAPI_ERROR); /* not resumed */
    assert_int_equal(kapi_test_req_header(r, "X", "1"), KAPI_ESTATE);
    assert_int_equal(p.calls[ACCESS], 1);
    assert_int_equal(kapi_resume(p.token), KAPI_OK);
    assert_int_equal(kapi_test_resume_pending(h), 1);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_READY);

    /* Paused again, then the deadline passes: 504, and READY again. */
    assert_int_equal(kapi_test_call_access(r, &probe_plugin, &p), KAPI_PAUSE);
    assert_int_equal(kapi_test_fire_timeout(r), KAPI_OK);
    assert_int_equal(kapi_test_resp_status(r), 504);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_READY);
    assert_int_equal(kapi_resume(p.token), KAPI_OK);
    assert_int_equal(kapi_test_resume_pending(h), 0);
    assert_int_equal(kapi_test_resumes_dropped(h), 1);
}

/* ---- the fake upstream, misuse of run ---- */

static kapi_action
read_upstream(probe *p, kapi_req *r)
{
    int status = 0;
    p->st[0] = kapi_resp_status(r, &status);
    p->seen[0] = (kapi_str){NULL, (size_t)status};
    p->st[1] = kapi_resp_header(r, KAPI_STR("ETag"), 0, &p->seen[1]);
    return KAPI_CONTINUE;
}

static void
test_fake_upstream(void **state)
{
    kapi_test_req *r = kapi_test_req_new(*state, "GET", "/");
    const kapi_header h = {KAPI_STR("ETag"), KAPI_STR("\"v1\"")};
    assert_int_equal(kapi_test_req_upstream(r, 404, &h, 1, "nope", 4), KAPI_OK);
    probe plug = {.response = read_upstream};
    probe *plugins[] = {&plug};

    assert_int_equal(run(r, plugins, 1, NULL), KAPI_TEST_DONE);
    assert_int_equal(plug.seen[0].len, 404);
    assert_int_equal(plug.st[1], KAPI_OK);
    assert_view(plug.seen[1], "\"v1\"");
    assert_view(kapi_test_resp_body(r), "nope");

    kapi_test_req *d = kapi_test_req_new(*state, "GET", "/");
    assert_int_equal(run(d, NULL, 0, NULL), KAPI_TEST_DONE);
    assert_int_equal(kapi_test_resp_status(d), 200); /* the default upstream answer */
    assert_int_equal(kapi_test_resp_body(d).len, 0);
}

static void
test_run_misuse(void **state)
{
    kapi_test_host *h = *state;
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");
    probe p = {.handle = answer_ok};
    const kapi_module *wrong[] = {&probe_function};
    void *insts[] = {&p};

    assert_int_equal(kapi_test_run(r, wrong, insts, 1, NULL, NULL), KAPI_TEST_ERROR);
    assert_true(logged(h, "is not a plugin module"));
    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, &probe_plugin, &p), KAPI_TEST_ERROR);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_READY);
    assert_int_equal(run(r, NULL, 0, &p), KAPI_TEST_DONE);
    assert_int_equal(run(r, NULL, 0, &p), KAPI_TEST_ERROR); /* a request runs once */
    assert_int_equal(kapi_test_req_header(r, "X", "1"), KAPI_ESTATE);
    assert_int_equal(p.calls[HANDLE], 1);
}

/* ---- instances and log capture ---- */

static kapi_action
log_something(probe *p, kapi_req *r)
{
    (void)p;
    kapi_log(r, KAPI_LOG_WARN, "limit %d reached", 5);
    return KAPI_CONTINUE;
}

static void
test_instances_and_log_capture(void **state)
{
    kapi_test_host *h = *state;
    void *inst = NULL;
    kapi_error err;

    assert_int_equal(kapi_test_instance_new(h, &probe_plugin, "bad", &inst, &err), KAPI_ECONFIG);
    assert_string_equal(err.path, "limit");
    assert_string_equal(err.message, "expected integer");
    assert_null(inst);

    assert_int_equal(kapi_test_instance_new(h, &probe_plugin, NULL, &inst, &err), KAPI_OK);
    assert_non_null(inst);
    probe *p = inst;
    p->access = log_something;
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");
    assert_int_equal(kapi_test_call_access(r, &probe_plugin, inst), KAPI_CONTINUE);

    kapi_log_level level = KAPI_LOG_DEBUG;
    assert_int_equal(kapi_test_log_count(h), 3);
    assert_string_equal(kapi_test_log_line(h, 0, &level), "created with bad");
    assert_int_equal(level, KAPI_LOG_INFO);
    assert_string_equal(kapi_test_log_line(h, 1, NULL), "created with {}");
    assert_string_equal(kapi_test_log_line(h, 2, &level), "limit 5 reached");
    assert_int_equal(level, KAPI_LOG_WARN);
    assert_null(kapi_test_log_line(h, 3, &level));

    assert_int_equal(kapi_test_instance_free(h, &probe_plugin, inst), KAPI_OK);
    assert_int_equal(kapi_test_instance_free(h, &probe_plugin, inst), KAPI_ENOTFOUND);
}

/* ---- subrequests (fetch) ---- */

/* What a DONE saw, and what its request allowed it to do. */
typedef struct done_seen {
    int calls;
    int calls_after_fetch; /* DONEs run by the time fetch() returned */
    kapi_fetch_response res;
    kapi_str origin;
    kapi_status fetch_st, id_st; /* fetch() and req_id() inside DONE */
    void *ctx, *mem;             /* kapi_ctx() and kapi_alloc() inside DONE */
    kapi_token *token;           /* resumed by DONE when set */
    kapi_test_host *host;        /* for answering from inside a hook */
    kapi_status answer_in_hook;
} done_seen;

static const kapi_fetch_request users_one = {.upstream = KAPI_STR("users"),
                                             .url = KAPI_STR("/u/1")};

static void
record_done(kapi_req *r, void *data, const kapi_fetch_response *res)
{
    done_seen *d = data;
    kapi_str id;
    d->calls++;
    d->res = *res;
    if (res->nheaders)
        d->origin = res->headers[0].value;
    d->fetch_st = kapi_fetch(r, &users_one, record_done, d);
    d->id_st = kapi_req_id(r, &id);
    d->ctx = kapi_ctx(r);
    d->mem = kapi_alloc(r, 8);
    kapi_log(r, KAPI_LOG_INFO, "done with %d", res->status);
    if (d->token)
        kapi_resume(d->token);
}

/* Fetches users_one with DONE recording into p->data (a done_seen). */
static kapi_action
fetch_one(probe *p, kapi_req *r)
{
    done_seen *d = p->data;
    p->st[0] = kapi_fetch(r, &users_one, record_done, d);
    d->calls_after_fetch = d->calls;
    if (d->host)
        d->answer_in_hook = kapi_test_fetch_reply(d->host, 0, 200, NULL, 0, NULL, 0);
    return p->handle ? answer_ok(p, r) : KAPI_CONTINUE;
}

/* Calls fetch from on_response and on_log: both refused. */
static kapi_action
fetch_too_late(probe *p, kapi_req *r)
{
    p->st[p->calls[LOG] ? 2 : 1] = kapi_fetch(r, &users_one, record_done, p->data);
    return KAPI_CONTINUE;
}

static void
test_fetch_phases_and_done(void **state)
{
    kapi_test_host *h = *state;
    done_seen d = {.host = h};
    assert_int_equal(kapi_test_upstream(h, "users"), KAPI_OK);
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");
    probe plug = {
        .access = fetch_one, .response = fetch_too_late, .log = fetch_too_late, .data = &d};
    probe fn = {.handle = answer_ok};
    probe *plugins[] = {&plug};

    assert_int_equal(run(r, plugins, 1, &fn), KAPI_TEST_DONE);
    assert_int_equal(plug.st[0], KAPI_OK);
    assert_int_equal(d.calls_after_fetch, 0);        /* DONE never runs inside fetch() */
    assert_int_equal(d.answer_in_hook, KAPI_ESTATE); /* nor inside any hook */
    assert_true(logged(h, "the gateway runs DONE between hooks"));
    assert_int_equal(plug.st[1], KAPI_EPHASE); /* on_response */
    assert_int_equal(plug.st[2], KAPI_EPHASE); /* on_log */
    assert_int_equal(kapi_test_fetch_count(h), 1);
    assert_int_equal(kapi_fetch(kapi_test_req_handle(r), &users_one, record_done, &d),
                     KAPI_EPHASE); /* outside a hook */
    assert_int_equal(d.calls, 0);

    /* The request ended long ago; DONE still runs, as in the gateway. */
    const kapi_header xo = {KAPI_STR("X-Origin"), KAPI_STR("users-1")};
    assert_int_equal(kapi_test_fetch_reply(h, 0, 404, &xo, 1, "nope", 4), KAPI_OK);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.res.status, 404);
    assert_int_equal(d.res.error_status, 0);
    assert_int_equal(d.res.nheaders, 1);
    assert_view(d.origin, "users-1");
    assert_view(d.res.body, "nope");
    /* DONE runs in no phase: only log() and resume() work there. */
    assert_int_equal(d.fetch_st, KAPI_EPHASE);
    assert_int_equal(d.id_st, KAPI_EPHASE);
    assert_null(d.ctx);
    assert_null(d.mem);
    assert_true(logged(h, "done with 404"));
    assert_int_equal(kapi_test_fetch_count(h), 1);

    assert_int_equal(kapi_test_fetch_reply(h, 0, 200, NULL, 0, NULL, 0), KAPI_ESTATE);
    assert_true(logged(h, "fetch 0 (GET users /u/1) was answered already"));
    assert_int_equal(kapi_test_fetch_fail(h, 0, 502, "x"), KAPI_ESTATE);
    assert_int_equal(kapi_test_fetch_reply(h, 1, 200, NULL, 0, NULL, 0), KAPI_ENOTFOUND);
    assert_int_equal(d.calls, 1);

    /* A failure: status 0, no headers and a {NULL, 0} body, as the gateway
     * passes one. */
    kapi_test_req *r2 = kapi_test_req_new(h, "GET", "/");
    probe single = {.access = fetch_one, .data = &d};
    d.host = NULL;
    assert_int_equal(kapi_test_call_access(r2, &probe_plugin, &single), KAPI_CONTINUE);
    assert_int_equal(single.st[0], KAPI_OK);
    assert_int_equal(kapi_test_fetch_fail(h, 1, 503, "no healthy upstream target is available"),
                     KAPI_OK);
    assert_int_equal(d.calls, 2);
    assert_int_equal(d.res.status, 0);
    assert_int_equal(d.res.error_status, 503);
    assert_view(d.res.error, "no healthy upstream target is available");
    assert_null(d.res.headers);
    assert_int_equal(d.res.nheaders, 0);
    assert_null(d.res.body.ptr);
    assert_int_equal(d.res.body.len, 0);
}

/* Each entry of bad_fetches through fetch(), statuses into fetch_sts. */
static const kapi_header good_header = {KAPI_STR("X-A"), KAPI_STR("1")};
static const kapi_header bad_headers[] = {
    {KAPI_STR("Bad Name"), KAPI_STR("1")},
    {KAPI_STR("X-Split"), KAPI_STR("a\r\nInjected: 1")},
};
static const struct {
    kapi_fetch_request f;
    kapi_status want;
} fetch_cases[] = {
    {{.url = KAPI_STR("http://127.0.0.1")}, KAPI_OK}, /* no path: the gateway sends "/" */
    {{.url = KAPI_STR("https://LOCALHOST:8443/x?y=1")}, KAPI_OK},
    {{.url = KAPI_STR("http://[::1]:8080/")}, KAPI_OK},
    {{.method = KAPI_STR("PATCH"), .url = KAPI_STR("http://10.0.0.1:80/a%20b")}, KAPI_OK},
    {{.upstream = KAPI_STR("users")}, KAPI_OK}, /* no path: "/" */
    {{.upstream = KAPI_STR("users"),
      .url = KAPI_STR("/u?x=1"),
      .headers = &good_header,
      .nheaders = 1},
     KAPI_OK},
    {{.upstream = KAPI_STR("Users")}, KAPI_ENOTFOUND}, /* names are case-sensitive */
    {{.upstream = KAPI_STR("orders"), .url = KAPI_STR("/o")}, KAPI_ENOTFOUND},
    {{.upstream = KAPI_STR("users"), .url = KAPI_STR("u/1")}, KAPI_EINVAL},
    {{.upstream = KAPI_STR("users"), .url = KAPI_STR("/a b")}, KAPI_EINVAL},
    {{.upstream = KAPI_STR("orders"), .headers = bad_headers, .nheaders = 1}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://127.0.0.1/"), .headers = bad_headers + 1, .nheaders = 1},
     KAPI_EINVAL},
    {{.url = KAPI_STR("http://127.0.0.1/"), .headers = NULL, .nheaders = 1}, KAPI_EINVAL},
    {{.method = KAPI_STR("GE T"), .url = KAPI_STR("http://127.0.0.1/")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://127.0.0.1/"), .body = {NULL, 3}}, KAPI_EINVAL},
    {{.url = KAPI_STR("")}, KAPI_EINVAL},
    {{.url = KAPI_STR("ftp://127.0.0.1/")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://example.com/")}, KAPI_EINVAL}, /* never a DNS lookup */
    {{.url = KAPI_STR("http://user@127.0.0.1/")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://127.0.0.1:0/")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://127.0.0.1:65536/")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://127.0.0.1:/x")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://127.0.0.1?x=1")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://127.0.0.1/a#frag")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://[::1/x")}, KAPI_EINVAL},
    {{.url = KAPI_STR("http://::1/x")}, KAPI_EINVAL},
};
enum { NCASES = sizeof(fetch_cases) / sizeof(fetch_cases[0]) };
static kapi_status fetch_sts[NCASES];

static void
never_done(kapi_req *r, void *data, const kapi_fetch_response *res)
{
    (void)r;
    (void)res;
    (*(int *)data)++;
}

static kapi_action
fetch_each_case(probe *p, kapi_req *r)
{
    static int dones;
    for (size_t i = 0; i < NCASES; i++)
        fetch_sts[i] = kapi_fetch(r, &fetch_cases[i].f, never_done, &dones);
    p->st[0] = kapi_fetch(r, NULL, never_done, &dones);
    p->st[1] = kapi_fetch(r, &users_one, NULL, &dones);
    return answer_ok(p, r);
}

static void
test_fetch_argument_checks(void **state)
{
    kapi_test_host *h = *state;
    assert_int_equal(kapi_test_upstream(h, "users"), KAPI_OK);
    assert_int_equal(kapi_test_upstream(h, "users"), KAPI_OK); /* twice is harmless */
    assert_int_equal(kapi_test_upstream(h, ""), KAPI_EINVAL);
    assert_int_equal(kapi_test_upstream(h, NULL), KAPI_EINVAL);
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");
    probe fn = {.handle = fetch_each_case};

    assert_int_equal(kapi_test_call_handle(r, &probe_function, &fn), KAPI_DONE);
    size_t ok = 0;
    for (size_t i = 0; i < NCASES; i++) {
        if (fetch_sts[i] != fetch_cases[i].want)
            fail_msg("case %zu (%s%s): %s, want %s", i, fetch_cases[i].f.upstream.ptr,
                     fetch_cases[i].f.url.ptr, kapi_strerror(fetch_sts[i]),
                     kapi_strerror(fetch_cases[i].want));
        ok += fetch_cases[i].want == KAPI_OK;
    }
    assert_int_equal(fn.st[0], KAPI_EINVAL);
    assert_int_equal(fn.st[1], KAPI_EINVAL);
    assert_int_equal(kapi_test_fetch_count(h), ok); /* only accepted ones are queued */

    kapi_test_fetch f;
    assert_int_equal(kapi_test_fetch_get(h, 0, &f), KAPI_OK);
    assert_view(f.method, "GET"); /* the default */
    assert_view(f.upstream, "");
    assert_view(f.url, "http://127.0.0.1");
    assert_int_equal(f.nheaders, 0);
    assert_int_equal(f.timeout_ms, 0);
    assert_true(f.pending);
    assert_ptr_equal(f.req, r);
    assert_int_equal(kapi_test_fetch_get(h, 3, &f), KAPI_OK);
    assert_view(f.method, "PATCH");
    assert_int_equal(kapi_test_fetch_get(h, 4, &f), KAPI_OK);
    assert_view(f.upstream, "users");
    assert_view(f.url, "/"); /* what the gateway requests for an empty path */
    assert_int_equal(kapi_test_fetch_get(h, ok, &f), KAPI_ENOTFOUND);
    assert_int_equal(kapi_test_fetch_get(h, 0, NULL), KAPI_EINVAL);

    /* Bad answers are refused before DONE runs. */
    assert_int_equal(kapi_test_fetch_reply(h, 0, 199, NULL, 0, NULL, 0), KAPI_EINVAL);
    assert_int_equal(kapi_test_fetch_reply(h, 0, 600, NULL, 0, NULL, 0), KAPI_EINVAL);
    assert_int_equal(kapi_test_fetch_reply(h, 0, 200, bad_headers, 1, NULL, 0), KAPI_EINVAL);
    assert_int_equal(kapi_test_fetch_reply(h, 0, 200, NULL, 0, NULL, 1), KAPI_EINVAL);
    assert_int_equal(kapi_test_fetch_fail(h, 0, 500, "x"), KAPI_EINVAL);
    assert_int_equal(kapi_test_fetch_fail(h, 0, 502, NULL), KAPI_EINVAL);
    assert_int_equal(kapi_test_fetch_fail(NULL, 0, 502, "x"), KAPI_EINVAL);
    assert_int_equal(kapi_test_fetch_get(h, 0, &f), KAPI_OK);
    assert_true(f.pending);
    /* The rest stay unanswered: kapi_test_host_free drops them (ASan). */
}

/* Fetches with a header, then changes the module's own buffers: the host
 * recorded copies. */
static kapi_action
fetch_from_stack(probe *p, kapi_req *r)
{
    char url[32] = "/u/2", name[8] = "X-Id", value[8] = "42";
    const kapi_header hdr[] = {
        {kapi_str_c(name), kapi_str_c(value)},
        {KAPI_STR("X-Request-Id"), KAPI_STR("mine")}, /* recorded as passed */
    };
    const kapi_fetch_request f = {.method = KAPI_STR("PUT"),
                                  .upstream = KAPI_STR("users"),
                                  .url = kapi_str_c(url),
                                  .headers = hdr,
                                  .nheaders = 2,
                                  .body = KAPI_STR("{}"),
                                  .timeout_ms = 1500};
    p->st[0] = kapi_fetch(r, &f, record_done, p->data);
    memset(url, '#', sizeof(url) - 1);
    memset(name, 'Z', sizeof(name) - 1);
    done_seen *d = p->data;
    p->st[1] = kapi_pause(r, 0, &d->token);
    return KAPI_PAUSE;
}

static void
test_fetch_copies_and_freed_request(void **state)
{
    kapi_test_host *h = *state;
    done_seen d = {0};
    assert_int_equal(kapi_test_upstream(h, "users"), KAPI_OK);
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");
    probe fn = {.handle = fetch_from_stack, .data = &d};

    assert_int_equal(run(r, NULL, 0, &fn), KAPI_TEST_PAUSED);
    assert_int_equal(fn.st[0], KAPI_OK);
    kapi_test_fetch f;
    assert_int_equal(kapi_test_fetch_get(h, 0, &f), KAPI_OK);
    assert_view(f.method, "PUT");
    assert_view(f.url, "/u/2");
    assert_int_equal(f.nheaders, 2);
    assert_view(f.headers[0].name, "X-Id");
    assert_view(f.headers[0].value, "42");
    assert_view(f.headers[1].name, "X-Request-Id");
    assert_view(f.headers[1].value, "mine");
    assert_view(f.body, "{}");
    assert_int_equal(f.timeout_ms, 1500);

    /* The test ends the request before answering: the answer is refused,
     * DONE never runs, and what the host recorded stays readable. */
    kapi_test_req_free(r);
    assert_int_equal(kapi_test_fetch_get(h, 0, &f), KAPI_OK);
    assert_null(f.req);
    assert_false(f.pending);
    assert_view(f.url, "/u/2");
    assert_int_equal(kapi_test_fetch_reply(h, 0, 200, NULL, 0, "x", 1), KAPI_ESTATE);
    assert_true(logged(h, "fetch 0 (PUT users /u/2) belongs to a request the test freed"));
    assert_int_equal(kapi_test_fetch_fail(h, 0, 503, "down"), KAPI_ESTATE);
    assert_int_equal(d.calls, 0);
    assert_int_equal(kapi_test_resume_pending(h), 0);
}

/* ---- t_fetch.so, the integration tests' fetching function ---- */

/* Loads tests/modules/t_fetch.so: from $KAPI_TEST_MODULE_DIR, else beside
 * this test's own modules (KAPI_TESTHOST_MODULE_DIR is
 * <build>/tests/unit/testhost_modules, t_fetch is in <build>/tests/modules). */
static const kapi_module *
load_t_fetch(kapi_test_host *h, const char *config, void **inst)
{
    char path[4096], err[512] = "";
    const char *dir = getenv("KAPI_TEST_MODULE_DIR");
    if (dir && *dir)
        snprintf(path, sizeof(path), "%s/t_fetch.so", dir);
    else
        snprintf(path, sizeof(path), "%s/../../modules/t_fetch.so",
                 getenv("KAPI_TESTHOST_MODULE_DIR") ? getenv("KAPI_TESTHOST_MODULE_DIR") : ".");
    const kapi_module *m = NULL;
    if (kapi_test_load(h, path, &m, err, sizeof(err)) != KAPI_OK)
        fail_msg("%s (build the kapi_test_modules target)", err);
    kapi_error cerr;
    if (kapi_test_instance_new(h, m, config, inst, &cerr) != KAPI_OK)
        fail_msg("t_fetch config: %s: %s", cerr.path, cerr.message);
    return m;
}

static void
test_t_fetch_answers_in_config_order(void **state)
{
    kapi_test_host *h = *state;
    void *inst;
    assert_int_equal(kapi_test_upstream(h, "users"), KAPI_OK);
    const kapi_module *m = load_t_fetch(h,
                                        "{\"fetches\":[{\"upstream\":\"users\",\"path\":\"/u/7\"},"
                                        "{\"url\":\"http://127.0.0.1:8080/x?y=1\"}],"
                                        "\"method\":\"POST\",\"timeout_ms\":250,"
                                        "\"forward_body\":true,\"headers\":{\"X-A\":\"1\"}}",
                                        &inst);
    kapi_test_req *r = kapi_test_req_new(h, "POST", "/agg");
    assert_int_equal(kapi_test_req_body(r, "ping", 4), KAPI_OK);

    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, m, inst), KAPI_TEST_PAUSED);
    assert_int_equal(kapi_test_fetch_count(h), 2); /* both started at once */
    kapi_test_fetch f;
    assert_int_equal(kapi_test_fetch_get(h, 0, &f), KAPI_OK);
    assert_view(f.method, "POST");
    assert_view(f.upstream, "users");
    assert_view(f.url, "/u/7");
    assert_int_equal(f.nheaders, 1);
    assert_view(f.headers[0].name, "X-A");
    assert_view(f.body, "ping");
    assert_int_equal(f.timeout_ms, 250);
    assert_int_equal(kapi_test_fetch_get(h, 1, &f), KAPI_OK);
    assert_view(f.upstream, "");
    assert_view(f.url, "http://127.0.0.1:8080/x?y=1");

    /* Answered in reverse order. The test reuses its buffer before the
     * module writes its answer: DONE got copies in the request. */
    char body[16] = "from \"b\"";
    const kapi_header ob = {KAPI_STR("X-Origin"), KAPI_STR("b")};
    assert_int_equal(kapi_test_fetch_reply(h, 1, 201, &ob, 1, body, strlen(body)), KAPI_OK);
    memset(body, 'z', sizeof(body));
    assert_int_equal(kapi_test_resume_pending(h), 0); /* still waiting for fetch 0 */
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_PAUSED);
    const kapi_header oa[] = {{KAPI_STR("Content-Type"), KAPI_STR("application/json")},
                              {KAPI_STR("x-origin"), KAPI_STR("a")}};
    assert_int_equal(kapi_test_fetch_reply(h, 0, 200, oa, 2, "{\"id\":7}\n", 9), KAPI_OK);
    assert_int_equal(kapi_test_resume_pending(h), 1);

    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_DONE);
    assert_int_equal(kapi_test_resp_status(r), 200);
    assert_view(kapi_test_resp_header(r, "content-type", 0), "application/json");
    assert_view(kapi_test_resp_body(r),
                "{\"results\":["
                "{\"status\":200,\"error_status\":0,\"error\":\"\",\"body\":\"{\\\"id\\\":7}"
                "\\u000a\",\"body_len\":9,\"headers\":{\"x-origin\":\"a\"}},"
                "{\"status\":201,\"error_status\":0,\"error\":\"\",\"body\":\"from \\\"b\\\"\","
                "\"body_len\":8,\"headers\":{\"x-origin\":\"b\"}}]}");
}

static void
test_t_fetch_failures(void **state)
{
    kapi_test_host *h = *state;
    void *inst;
    const kapi_module *m = load_t_fetch(h,
                                        "{\"fetches\":[{\"upstream\":\"nope\"},"
                                        "{\"url\":\"http://example.com/\"},"
                                        "{\"url\":\"http://[::1]:9/big\"}]}",
                                        &inst);
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");

    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, m, inst), KAPI_TEST_PAUSED);
    assert_int_equal(kapi_test_fetch_count(h), 1); /* the two refused ones are not waited for */
    assert_int_equal(kapi_test_fetch_fail(h, 0, 504, "the upstream did not answer in time"),
                     KAPI_OK);
    assert_int_equal(kapi_test_resume_pending(h), 1);
    assert_int_equal(kapi_test_resp_status(r), 200);
    assert_view(kapi_test_resp_body(r),
                "{\"results\":["
                "{\"status\":0,\"error_status\":0,\"error\":\"not found\",\"body\":\"\","
                "\"body_len\":0,\"headers\":{}},"
                "{\"status\":0,\"error_status\":0,\"error\":\"invalid argument\",\"body\":\"\","
                "\"body_len\":0,\"headers\":{}},"
                "{\"status\":0,\"error_status\":504,\"error\":\"the upstream did not answer in "
                "time\",\"body\":\"\",\"body_len\":0,\"headers\":{}}]}");

    /* Nothing started at all: the module resumes itself and answers. */
    m = load_t_fetch(h, "{\"fetches\":[{\"upstream\":\"nope\"}]}", &inst);
    r = kapi_test_req_new(h, "GET", "/");
    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, m, inst), KAPI_TEST_PAUSED);
    assert_int_equal(kapi_test_resume_pending(h), 1);
    assert_int_equal(kapi_test_req_state(r), KAPI_TEST_DONE);
    assert_non_null(strstr(kapi_test_resp_body(r).ptr, "\"error\":\"not found\""));
    assert_int_equal(kapi_test_fetch_count(h), 1);

    /* Nothing configured: an answer at once, no pause. */
    m = load_t_fetch(h, "{}", &inst);
    r = kapi_test_req_new(h, "GET", "/");
    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, m, inst), KAPI_TEST_DONE);
    assert_view(kapi_test_resp_body(r), "{\"results\":[]}");

    kapi_error err;
    assert_int_equal(kapi_test_instance_new(h, m, "{\"fetches\":[{\"url\":1}]}", &inst, &err),
                     KAPI_ECONFIG);
    assert_string_equal(err.path, "fetches[0].url");
    assert_int_equal(kapi_test_instance_new(
                         h, m, "{\"fetches\":[{\"url\":\"x\",\"upstream\":\"y\"}]}", &inst, &err),
                     KAPI_ECONFIG);
    assert_string_equal(err.path, "fetches[0]");
}

static void
test_t_fetch_after_pause_deadline(void **state)
{
    kapi_test_host *h = *state;
    void *inst;
    const kapi_module *m =
        load_t_fetch(h, "{\"fetches\":[{\"url\":\"http://127.0.0.1:9/slow/5000\"}]}", &inst);
    kapi_test_req *r = kapi_test_req_new(h, "GET", "/");

    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, m, inst), KAPI_TEST_PAUSED);
    assert_int_equal(kapi_test_req_pause_timeout(r), 30000); /* kapi_pause with 0 */
    assert_int_equal(kapi_test_fire_timeout(r), KAPI_OK);
    assert_int_equal(kapi_test_resp_status(r), 504);
    /* The gateway keeps the request until DONE: it runs, its resume is
     * dropped, the 504 stands. */
    assert_int_equal(kapi_test_fetch_reply(h, 0, 200, NULL, 0, "late", 4), KAPI_OK);
    assert_int_equal(kapi_test_resume_pending(h), 0);
    assert_int_equal(kapi_test_resumes_dropped(h), 1);
    assert_int_equal(kapi_test_resp_status(r), 504);
}

/* ---- loading ---- */

static void
load_fails(kapi_test_host *h, const char *file, kapi_status want, const char *needle)
{
    char path[4096], err[512];
    const char *dir = getenv("KAPI_TESTHOST_MODULE_DIR");
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : ".", file);
    const kapi_module *m = &probe_plugin;
    assert_int_equal(kapi_test_load(h, path, &m, err, sizeof(err)), want);
    assert_null(m);
    if (!strstr(err, needle))
        fail_msg("load error \"%s\" lacks \"%s\"", err, needle);
    assert_non_null(strstr(err, file)); /* names the file */
}

static void
test_load_errors(void **state)
{
    kapi_test_host *h = *state;
    /* The gateway's loader and messages (core/module.c). */
    char want[128];
    load_fails(h, "no-such-module.so", KAPI_ENOTFOUND, "no no-such-module.so in ");
    snprintf(want, sizeof(want), "built for kapi ABI %d.0, this kapi provides ABI %d.%d",
             KAPI_ABI_MAJOR + 1, KAPI_ABI_MAJOR, KAPI_ABI_MINOR);
    load_fails(h, "testhost_abi2.so", KAPI_EABI, want);
    snprintf(want, sizeof(want), "needs kapi ABI %d.%d, this kapi provides ABI %d.%d",
             KAPI_ABI_MAJOR, KAPI_ABI_MINOR + 1, KAPI_ABI_MAJOR, KAPI_ABI_MINOR);
    load_fails(h, "testhost_minor.so", KAPI_EABI, want);
    load_fails(h, "testhost_noentry.so", KAPI_EINVAL, "no entry symbol kapi_module_entry");
    char err[64];
    assert_int_equal(kapi_test_load(h, NULL, NULL, err, sizeof(err)), KAPI_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_request_fields),
        T(test_phase_errors),
        T(test_respond_twice_is_estate),
        T(test_failing_hook_gives_500_problem),
        T(test_query_params_decoding),
        T(test_multi_valued_headers),
        T(test_header_writes_are_validated),
        T(test_shared_and_private_state),
        T(test_pause_and_resume_from_another_thread),
        T(test_timeout_then_late_resume),
        T(test_resume_after_request_freed_is_dropped),
        T(test_unresumed_token_freed_with_host),
        T(test_pause_misuse),
        T(test_single_hooks),
        T(test_single_hook_pause),
        T(test_fake_upstream),
        T(test_run_misuse),
        T(test_instances_and_log_capture),
        T(test_fetch_phases_and_done),
        T(test_fetch_argument_checks),
        T(test_fetch_copies_and_freed_request),
        T(test_t_fetch_answers_in_config_order),
        T(test_t_fetch_failures),
        T(test_t_fetch_after_pause_deadline),
        T(test_load_errors),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
