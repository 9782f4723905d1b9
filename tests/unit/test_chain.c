/* test_chain.c -- unit tests for core/chain.c: plugins run in order, an
 * early response stops the access phase, on_response runs in reverse for
 * exactly the plugins whose on_access ran, on_log always runs for every
 * plugin, hook failures become 500 problem+json, and a paused chain
 * resumes at the hook that paused. The order cases use the real t_order.so
 * test module loaded by core/module.c; edge cases use small descriptors
 * defined here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "chain.h"
#include "module.h"
#include "request.h"

static kapi_host host;
static int fake_token;

static void
host_log(kapi_req *r, kapi_log_level level, const char *fmt, ...)
{
    (void)r;
    (void)level;
    (void)fmt;
}

static kapi_status
host_pause(kapi_req *r, uint32_t timeout_ms, kapi_token **out)
{
    (void)timeout_ms;
    r->token = (kapi_token *)&fake_token;
    *out = r->token;
    return KAPI_OK;
}

static kapi_status
host_resume(kapi_token *t)
{
    (void)t;
    return KAPI_OK;
}

/* ---- fixtures ---- */

typedef struct fixture {
    module *mods[8];
    chain_slot slots[8];
    size_t n;
    char log_file[64];
    kapi_req r;
    char buf[4096];
} fixture;

static void
add_order(fixture *f, const char *config_json)
{
    const char *dir = getenv("KAPI_TEST_MODULE_DIR");
    assert_non_null(dir);
    char err[512];
    module *m = NULL;
    kapi_status st = module_load(&dir, 1, "t_order", &host, &m, err, sizeof(err));
    if (st != KAPI_OK)
        fail_msg("%s", err);
    const kapi_module *d = module_desc(m);
    void *inst = NULL;
    kapi_error e = {{0}, {0}};
    assert_int_equal(d->create((kapi_str){config_json, strlen(config_json)}, &inst, &e), KAPI_OK);
    f->mods[f->n] = m;
    f->slots[f->n++] = (chain_slot){d, inst};
}

static void
add_plugin(fixture *f, const char *tag, const char *extra)
{
    char json[256];
    snprintf(json, sizeof(json), "{\"tag\":\"%s\",\"log_file\":\"%s\"%s}", tag, f->log_file, extra);
    add_order(f, json);
}

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->log_file, sizeof(f->log_file), "/tmp/kapi-chain-XXXXXX");
    int fd = mkstemp(f->log_file);
    if (fd < 0)
        return -1;
    close(fd);
    req_init(&f->r, f->buf, sizeof(f->buf));
    f->r.method = KAPI_STR("GET");
    f->r.path = KAPI_STR("/x");
    f->r.id = KAPI_STR("id-1");
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    for (size_t i = 0; i < f->n; i++) {
        if (f->slots[i].mod->destroy && f->mods[i])
            f->slots[i].mod->destroy(f->slots[i].instance);
        module_release(f->mods[i]);
    }
    req_release(&f->r);
    unlink(f->log_file);
    free(f);
    return 0;
}

static kapi_action
fn_ok(void *inst, kapi_req *r)
{
    (void)inst;
    return host.respond(r, 200, NULL, 0, KAPI_STR("ok")) == KAPI_OK ? KAPI_DONE : KAPI_ERROR;
}

static const kapi_module fn_desc = {
    KAPI_ABI_MAJOR, KAPI_ABI_MINOR, "fn", "1",  KAPI_MODULE_FUNCTION, 0, NULL, NULL,
    NULL,           NULL,           NULL, fn_ok};

static chain
make_chain(fixture *f)
{
    return (chain){f->slots, f->n, {&fn_desc, NULL}};
}

static const char *
log_lines(fixture *f, char *out, size_t len)
{
    FILE *fp = fopen(f->log_file, "r");
    size_t n = fp ? fread(out, 1, len - 1, fp) : 0;
    out[n] = '\0';
    if (fp)
        fclose(fp);
    return out;
}

static kapi_str
resp_header(kapi_req *r, const char *name)
{
    kapi_str v = {NULL, 0};
    req_headers_get(&r->resp_headers, (kapi_str){name, strlen(name)}, 0, &v);
    return v;
}

/* ---- tests ---- */

static void
test_order_and_reverse_response(void **state)
{
    fixture *f = *state;
    add_plugin(f, "a", "");
    add_plugin(f, "b", "");
    add_plugin(f, "c", "");
    chain c = make_chain(f);
    assert_int_equal(chain_start(&c, &f->r), KAPI_OK);
    assert_int_equal(chain_run(&c, &f->r), CHAIN_DONE);
    kapi_str v;
    assert_int_equal(req_headers_get(&f->r.headers, KAPI_STR("x-order"), 0, &v), KAPI_OK);
    assert_string_equal(v.ptr, "a,b,c");
    assert_int_equal(f->r.status, 200);
    assert_string_equal(resp_header(&f->r, "x-order-resp").ptr, "c,b,a");
    chain_log(&c, &f->r);
    char lines[128];
    assert_string_equal(log_lines(f, lines, sizeof(lines)), "a\nb\nc\n");
}

static void
test_early_response_stops_access(void **state)
{
    fixture *f = *state;
    add_plugin(f, "a", "");
    add_plugin(f, "b", ",\"respond\":401");
    add_plugin(f, "c", "");
    chain c = make_chain(f);
    assert_int_equal(chain_start(&c, &f->r), KAPI_OK);
    assert_int_equal(chain_run(&c, &f->r), CHAIN_DONE);
    assert_int_equal(f->r.status, 401);
    assert_string_equal(f->r.resp_body.ptr, "denied by b");
    assert_string_equal(resp_header(&f->r, "x-order-resp").ptr, "b,a");
    chain_log(&c, &f->r);
    char lines[128];
    assert_string_equal(log_lines(f, lines, sizeof(lines)), "a\nb\nc\n");
}

static void
test_error_becomes_500(void **state)
{
    fixture *f = *state;
    add_plugin(f, "a", "");
    add_plugin(f, "b", ",\"fail\":true");
    chain c = make_chain(f);
    assert_int_equal(chain_start(&c, &f->r), KAPI_OK);
    assert_int_equal(chain_run(&c, &f->r), CHAIN_DONE);
    assert_int_equal(f->r.status, 500);
    assert_non_null(strstr(f->r.resp_body.ptr, "\"request_id\":\"id-1\""));
    assert_string_equal(resp_header(&f->r, "content-type").ptr, "application/problem+json");
    assert_string_equal(resp_header(&f->r, "x-order-resp").ptr, "b,a");
}

/* A plugin that pauses on its first call and continues on its second. */
typedef struct pause_ctx {
    int calls;
} pause_ctx;

static kapi_action
pauser_access(void *inst, kapi_req *r)
{
    (void)inst;
    pause_ctx *ctx = host.ctx(r);
    kapi_token *t;
    if (ctx->calls++ == 0)
        return host.pause(r, 0, &t) == KAPI_OK ? KAPI_PAUSE : KAPI_ERROR;
    return KAPI_CONTINUE;
}

static const kapi_module pauser = {KAPI_ABI_MAJOR,
                                   KAPI_ABI_MINOR,
                                   "pauser",
                                   "1",
                                   KAPI_MODULE_PLUGIN,
                                   sizeof(pause_ctx),
                                   NULL,
                                   NULL,
                                   pauser_access,
                                   NULL,
                                   NULL,
                                   NULL};

static void
test_pause_resumes_at_the_same_hook(void **state)
{
    fixture *f = *state;
    add_plugin(f, "a", "");
    f->slots[f->n++] = (chain_slot){&pauser, NULL};
    add_plugin(f, "c", "");
    chain c = make_chain(f);
    assert_int_equal(chain_start(&c, &f->r), KAPI_OK);
    assert_int_equal(chain_run(&c, &f->r), CHAIN_PAUSED);
    kapi_str v;
    assert_int_equal(req_headers_get(&f->r.headers, KAPI_STR("x-order"), 0, &v), KAPI_OK);
    assert_string_equal(v.ptr, "a"); /* c has not run yet */
    f->r.token = NULL;               /* what the host does on resume */
    assert_int_equal(chain_run(&c, &f->r), CHAIN_DONE);
    assert_int_equal(req_headers_get(&f->r.headers, KAPI_STR("x-order"), 0, &v), KAPI_OK);
    assert_string_equal(v.ptr, "a,c");
    assert_int_equal(((pause_ctx *)f->r.ctxs[1])->calls, 2);
    assert_int_equal(f->r.status, 200);
}

static void
test_pause_timeout_skips_paused_hook(void **state)
{
    fixture *f = *state;
    add_plugin(f, "a", "");
    f->slots[f->n++] = (chain_slot){&pauser, NULL};
    chain c = make_chain(f);
    assert_int_equal(chain_start(&c, &f->r), KAPI_OK);
    assert_int_equal(chain_run(&c, &f->r), CHAIN_PAUSED);
    f->r.token = NULL;
    chain_abort(&f->r, 504, "timed out");
    assert_int_equal(chain_run(&c, &f->r), CHAIN_DONE);
    assert_int_equal(f->r.status, 504);
    assert_int_equal(((pause_ctx *)f->r.ctxs[1])->calls, 1); /* not called again */
    assert_string_equal(resp_header(&f->r, "x-order-resp").ptr, "a");
}

static kapi_action
bad_pause(void *inst, kapi_req *r)
{
    (void)inst;
    (void)r;
    return KAPI_PAUSE; /* without pause(): a module bug */
}

static kapi_action
done_without_response(void *inst, kapi_req *r)
{
    (void)inst;
    (void)r;
    return KAPI_DONE;
}

static void
run_single(fixture *f, const kapi_module *m, int want_status)
{
    f->slots[f->n++] = (chain_slot){m, NULL};
    chain c = make_chain(f);
    assert_int_equal(chain_start(&c, &f->r), KAPI_OK);
    assert_int_equal(chain_run(&c, &f->r), CHAIN_DONE);
    assert_int_equal(f->r.status, want_status);
    f->n--;
}

static void
test_module_bugs_become_500(void **state)
{
    fixture *f = *state;
    static const kapi_module m1 = {
        KAPI_ABI_MAJOR, KAPI_ABI_MINOR, "bad-pause", "1", KAPI_MODULE_PLUGIN, 0, NULL, NULL,
        bad_pause,      NULL,           NULL,        NULL};
    static const kapi_module m2 = {
        KAPI_ABI_MAJOR,        KAPI_ABI_MINOR, "bad-done", "1", KAPI_MODULE_PLUGIN, 0, NULL, NULL,
        done_without_response, NULL,           NULL,       NULL};
    run_single(f, &m1, 500);
    req_release(&f->r);
    req_init(&f->r, f->buf, sizeof(f->buf));
    run_single(f, &m2, 500);
}

static kapi_action
wrong_phase(void *inst, kapi_req *r)
{
    (void)inst;
    /* request headers are read-only after the access phase */
    if (host.req_header_set(r, KAPI_STR("x"), KAPI_STR("y")) != KAPI_EPHASE)
        return KAPI_ERROR;
    if (host.respond(r, 200, NULL, 0, KAPI_STR("")) != KAPI_EPHASE)
        return KAPI_ERROR;
    return host.resp_header_set(r, KAPI_STR("x-checked"), KAPI_STR("1")) == KAPI_OK ? KAPI_CONTINUE
                                                                                    : KAPI_ERROR;
}

static void
test_accessors_refuse_wrong_phase(void **state)
{
    fixture *f = *state;
    static const kapi_module m = {
        KAPI_ABI_MAJOR, KAPI_ABI_MINOR, "phases", "1", KAPI_MODULE_PLUGIN, 0, NULL, NULL,
        NULL,           wrong_phase,    NULL,     NULL};
    f->slots[f->n++] = (chain_slot){&m, NULL};
    chain c = make_chain(f);
    assert_int_equal(chain_start(&c, &f->r), KAPI_OK);
    assert_int_equal(chain_run(&c, &f->r), CHAIN_DONE);
    assert_int_equal(f->r.status, 200);
    assert_string_equal(resp_header(&f->r, "x-checked").ptr, "1");
    f->n--;
}

/* A function: headers set before respond() are kept; a 1xx is refused. */
static kapi_action
fn_headers_then_respond(void *inst, kapi_req *r)
{
    (void)inst;
    if (host.respond(r, 100, NULL, 0, KAPI_STR("")) != KAPI_EINVAL ||
        host.resp_set_status(r, 101) != KAPI_EINVAL)
        return KAPI_ERROR;
    if (host.resp_header_set(r, KAPI_STR("x-pre"), KAPI_STR("1")) != KAPI_OK)
        return KAPI_ERROR;
    kapi_header h = {KAPI_STR("x-resp"), KAPI_STR("2")};
    if (host.respond(r, 201, &h, 1, KAPI_STR("made")) != KAPI_OK)
        return KAPI_ERROR;
    return host.respond(r, 202, NULL, 0, KAPI_STR("")) == KAPI_ESTATE ? KAPI_DONE : KAPI_ERROR;
}

static void
test_respond_keeps_earlier_headers(void **state)
{
    fixture *f = *state;
    static const kapi_module fn = {
        KAPI_ABI_MAJOR, KAPI_ABI_MINOR, "fn-headers", "1",  KAPI_MODULE_FUNCTION,   0, NULL,
        NULL,           NULL,           NULL,         NULL, fn_headers_then_respond};
    chain c = {f->slots, 0, {&fn, NULL}};
    assert_int_equal(chain_start(&c, &f->r), KAPI_OK);
    assert_int_equal(chain_run(&c, &f->r), CHAIN_DONE);
    assert_int_equal(f->r.status, 201);
    assert_string_equal(resp_header(&f->r, "x-pre").ptr, "1");
    assert_string_equal(resp_header(&f->r, "x-resp").ptr, "2");
    assert_string_equal(f->r.resp_body.ptr, "made");
}

int
main(void)
{
    req_fill_host(&host);
    host.log = host_log;
    host.pause = host_pause;
    host.resume = host_resume;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_reverse_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_response_stops_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_becomes_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resumes_at_the_same_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_timeout_skips_paused_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_module_bugs_become_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accessors_refuse_wrong_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_respond_keeps_earlier_headers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
