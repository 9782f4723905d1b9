/* test_exchange.c -- unit tests for core/exchange.c: one logical upstream
 * request run on a real loop and uclient against test servers in threads
 * of this test on 127.0.0.1, each with a scripted behaviour (answer, close
 * without answering, answer late), plus a closed port that refuses.
 *
 * Covered: an answer passed through (status, headers, body, the target's
 * base path and Host); a failed GET retried on the other target, a POST
 * whose request was sent not retried (502), a refused POST retried; tries
 * bounded by `retries`; the backoff growing with the tries; the per-try and
 * the total deadline (504 each, at their own time) and the total deadline
 * cutting retries short; 503 with Retry-After when the only target's
 * breaker is open or no target is healthy, but the last try's own error
 * when a retry finds none; an upstream's 5xx passed through, not retried;
 * exchange_cancel right after the start, after a failure known at the
 * start, during a try and during a backoff (done never runs; ASan finds
 * any timer or call left behind); exchange_abort_all running every
 * unfinished exchange's done (503) before it returns, one that failed
 * inside exchange_start included; done never running inside
 * exchange_start, and never again once it ran. A guard timer fails a test
 * that would hang. */
#include "exchange.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tloop.h"
#include "tserver.h"

#define NSRV 2

/* ---- the client side ---------------------------------------------------- */

static bool in_start; /* set around exchange_start: done must never see it */

typedef struct env env;

/* One exchange of a test and what its done saw. */
typedef struct xrun {
    env *e;
    exchange_spec spec;
    kapi_header hdr[1];
    char key[16];
    exchange *x;
    bool take_body;
    int ndone;
    uint64_t started, ended;
    /* the result, copied in done */
    int status, error_status;
    char error[128];
    uint32_t retry_after_s;
    unsigned tries;
    char target_url[64];
    char body[64];
    size_t body_len;
    bool body_taken;
    char upstream_hdr[16];
    char served_by[16];
} xrun;

struct env {
    tserver s[NSRV];
    uint16_t refused_port;
    loop *lp;
    uclient *uc;
    tloop tl;
    int ndone, want;
    config file;
    tserver_upstream up;
    upstream group;
    bool built;
};

static void
copy_header(const exchange_result *res, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; i < res->nheaders; i++)
        if (res->headers[i].name.len == strlen(name) &&
            strncasecmp(res->headers[i].name.ptr, name, strlen(name)) == 0)
            snprintf(out, cap, "%.*s", (int)res->headers[i].value.len, res->headers[i].value.ptr);
}

static void
on_done(exchange *x, void *data)
{
    assert_false(in_start);
    xrun *r = data;
    env *e = r->e;
    assert_ptr_equal(x, r->x);
    const exchange_result *res = exchange_result_get(x);
    r->ended = tserver_now_ms();
    r->status = res->status;
    r->error_status = res->error_status;
    snprintf(r->error, sizeof(r->error), "%s", res->error ? res->error : "");
    r->retry_after_s = res->retry_after_s;
    r->tries = res->tries;
    snprintf(r->target_url, sizeof(r->target_url), "%s", res->target_url ? res->target_url : "");
    copy_header(res, "X-Upstream", r->upstream_hdr, sizeof(r->upstream_hdr));
    copy_header(res, "X-Served-By", r->served_by, sizeof(r->served_by));
    if (res->body && res->body_len < sizeof(r->body)) {
        memcpy(r->body, res->body, res->body_len);
        r->body_len = res->body_len;
    }
    if (r->take_body) {
        size_t len = 0;
        char *b = exchange_take_body(x, &len);
        r->body_taken = b && len == r->body_len && memcmp(b, r->body, len) == 0;
        assert_null(exchange_result_get(x)->body);
        free(b);
    }
    exchange_free(x);
    r->x = NULL;
    r->ndone++;
    e->ndone++;
    if (e->ndone >= e->want)
        loop_stop(e->lp);
}

static kapi_str
str(const char *s)
{
    return (kapi_str){s, strlen(s)};
}

static void
xrun_init(xrun *r, env *e, const char *method, const char *path)
{
    memset(r, 0, sizeof(*r));
    r->e = e;
    r->hdr[0] = (kapi_header){KAPI_STR("X-Client"), KAPI_STR("yes")};
    r->spec = (exchange_spec){
        .group = &e->group,
        .limits = &e->up.cu,
        .method = str(method),
        .path = str(path),
        .headers = r->hdr,
        .nheaders = 1,
        .id = "req-1",
        .done = on_done,
        .data = r,
    };
}

static void
start(xrun *r)
{
    in_start = true;
    kapi_status st = exchange_start(&r->spec, &r->x);
    in_start = false;
    assert_int_equal(st, KAPI_OK);
    assert_non_null(r->x);
    assert_int_equal(r->ndone, 0);
    r->started = tserver_now_ms();
}

/* Runs the loop until WANT done callbacks ran in all. */
static void
run_until_done(env *e, int want)
{
    e->want = want;
    if (e->ndone >= want)
        return;
    tloop_run(&e->tl);
    assert_int_equal(e->ndone, want);
}

/* The group's config: N targets at PORTS (defaults a test may change
 * before build). */
static void
group_config(env *e, size_t n, const uint16_t *ports)
{
    tserver_upstream_config(&e->up, "api", n, ports);
    config_upstream *cu = &e->up.cu;
    cu->keepalive = 4;
    cu->max_connections = 0;
    cu->connect_timeout_ms = 1000;
    cu->try_timeout_ms = 2000;
    cu->timeout_ms = 4000;
    cu->retry_backoff_ms = 5;
}

static void
build(env *e)
{
    char err[256] = "";
    if (upstream_build(&e->file, &e->up.cu, &e->group, err, sizeof(err)) != KAPI_OK)
        fail_msg("upstream_build: %s", err);
    e->built = true;
}

/* Both servers as targets 0 and 1. */
static void
two_targets(env *e)
{
    uint16_t ports[NSRV] = {e->s[0].port, e->s[1].port};
    group_config(e, NSRV, ports);
}

static void
one_target(env *e, uint16_t port)
{
    group_config(e, 1, &port);
}

/* Sets R's hash key to one the group's (hash) balancer sends to TARGET
 * while every target is eligible. */
static void
key_for(xrun *r, env *e, int target)
{
    assert_int_equal(e->up.cu.balance, CONFIG_BALANCE_HASH);
    for (int k = 0; k < 1000; k++) {
        snprintf(r->key, sizeof(r->key), "k%d", k);
        if (balancer_pick(&e->group.balancer, 3, str(r->key)) == target) {
            r->spec.hash_key = str(r->key);
            return;
        }
    }
    fail_msg("no key hashes to target %d", target);
}

static int
setup(void **state)
{
    env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    for (int i = 0; i < NSRV; i++)
        tserver_start(&e->s[i], &(tserver_opts){.serial = true});
    e->refused_port = tserver_refused_port();
    assert_int_equal(loop_new(&e->lp), KAPI_OK);
    assert_int_equal(uclient_new(e->lp, &e->uc), KAPI_OK);
    uclient_set_current(e->uc);
    tloop_init(&e->tl, e->lp);
    e->file.file = "kapi.json";
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    env *e = *state;
    uclient_set_current(NULL);
    uclient_free(e->uc);
    loop_free(e->lp);
    for (int i = 0; i < NSRV; i++)
        tserver_stop(&e->s[i]);
    if (e->built)
        upstream_destroy(&e->group);
    free(e);
    return 0;
}

/* ---- answers ------------------------------------------------------------ */

static void
test_answer_passed_through(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_ANSWER, 201, 0);
    one_target(e, e->s[0].port);
    snprintf(e->up.url[0], sizeof(e->up.url[0]), "http://127.0.0.1:%u/base", e->s[0].port);
    e->up.ct[0].base_path = "/base";
    build(e);
    xrun r;
    xrun_init(&r, e, "POST", "/v1/items?x=1");
    r.spec.body = KAPI_STR("abc");
    r.take_body = true;
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.tries, 1);
    assert_string_equal(r.upstream_hdr, "yes");
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "hello", 5);
    assert_true(r.body_taken);
    assert_string_equal(r.target_url, e->up.url[0]);

    char req[TSERVER_REC_MAX], want[128];
    tserver_last(&e->s[0], req, sizeof(req));
    assert_true(strncmp(req, "POST /base/v1/items?x=1 HTTP/1.1\r\n", 34) == 0);
    snprintf(want, sizeof(want), "\r\nHost: 127.0.0.1:%u\r\n", e->s[0].port);
    assert_non_null(strstr(req, want));
    assert_non_null(strstr(req, "\r\nX-Client: yes\r\n"));
    assert_non_null(strstr(req, "\r\n\r\nabc"));
    assert_int_equal(tserver_requests(&e->s[0]), 1);
}

static void
test_host_given(void **state)
{
    env *e = *state;
    one_target(e, e->s[0].port);
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "");
    r.spec.host = KAPI_STR("client.example");
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 200);
    char req[TSERVER_REC_MAX];
    tserver_last(&e->s[0], req, sizeof(req));
    assert_true(strncmp(req, "GET / HTTP/1.1\r\n", 16) == 0); /* an empty path is "/" */
    assert_non_null(strstr(req, "\r\nHost: client.example\r\n"));
    assert_null(strstr(req, "\r\nHost: 127.0.0.1"));
}

static void
test_single_origin(void **state)
{
    env *e = *state;
    one_target(e, e->s[1].port); /* limits only */
    const origin *o = NULL;
    char err[128];
    assert_int_equal(origin_get(false, "127.0.0.1", e->s[1].port, false, &o, err, sizeof(err)),
                     KAPI_OK);
    xrun r;
    xrun_init(&r, e, "GET", "/one");
    r.spec.group = NULL;
    r.spec.origin = o;
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.tries, 1);
    assert_string_equal(r.target_url, o->base_url);
    assert_int_equal(tserver_requests(&e->s[1]), 1);
}

static void
test_5xx_passed_through_not_retried(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_ANSWER, 503, 0);
    two_targets(e);
    e->up.cu.balance = CONFIG_BALANCE_HASH;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    key_for(&r, e, 0);
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.tries, 1);
    assert_int_equal(tserver_requests(&e->s[0]), 1);
    assert_int_equal(tserver_requests(&e->s[1]), 0);
}

/* ---- retries ------------------------------------------------------------ */

static void
test_get_retried_on_other_target(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_CLOSE, 0, 0);
    two_targets(e);
    e->up.cu.balance = CONFIG_BALANCE_HASH; /* the key keeps 0 but for the tried mask */
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    key_for(&r, e, 0);
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.tries, 2);
    assert_int_equal(tserver_requests(&e->s[0]), 1);
    assert_int_equal(tserver_requests(&e->s[1]), 1);
    assert_int_equal(atoi(r.served_by), e->s[1].port);
    assert_string_equal(r.target_url, e->up.url[1]);
}

static void
test_post_sent_not_retried(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_CLOSE, 0, 0);
    two_targets(e);
    e->up.cu.balance = CONFIG_BALANCE_HASH;
    build(e);
    xrun r;
    xrun_init(&r, e, "POST", "/orders");
    r.spec.body = KAPI_STR("{\"n\":1}");
    key_for(&r, e, 0);
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.error_status, 502);
    assert_string_equal(r.error, "the upstream closed the connection");
    assert_int_equal(r.tries, 1);
    assert_int_equal(tserver_requests(&e->s[0]), 1);
    assert_int_equal(tserver_requests(&e->s[1]), 0);
}

static void
test_post_refused_retried(void **state)
{
    env *e = *state;
    uint16_t ports[2] = {e->refused_port, e->s[1].port};
    group_config(e, 2, ports);
    e->up.cu.balance = CONFIG_BALANCE_HASH;
    build(e);
    xrun r;
    xrun_init(&r, e, "POST", "/orders");
    r.spec.body = KAPI_STR("abc");
    key_for(&r, e, 0);
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.tries, 2);
    assert_int_equal(tserver_requests(&e->s[1]), 1);
    char req[TSERVER_REC_MAX];
    tserver_last(&e->s[1], req, sizeof(req));
    assert_true(strncmp(req, "POST /orders ", 13) == 0);
    assert_non_null(strstr(req, "\r\n\r\nabc"));
}

static void
test_retries_bounded(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_CLOSE, 0, 0);
    one_target(e, e->s[0].port);
    e->up.cu.retries = 2;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.error_status, 502);
    assert_int_equal(r.tries, 3); /* the first and 2 retries, on the only target */
    assert_int_equal(tserver_requests(&e->s[0]), 3);

    e->up.cu.retries = 0;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 2);
    assert_int_equal(r.error_status, 502);
    assert_int_equal(r.tries, 1);
    assert_int_equal(tserver_requests(&e->s[0]), 4);
}

static void
test_backoff_grows(void **state)
{
    env *e = *state;
    enum { BACKOFF = 50 };
    tserver_script(&e->s[0], TSERVER_CLOSE, 0, 0);
    one_target(e, e->s[0].port);
    e->up.cu.retries = 3;
    e->up.cu.retry_backoff_ms = BACKOFF;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.tries, 4);
    assert_int_equal(tserver_requests(&e->s[0]), 4);
    /* before the n-th retry n * retry_backoff_ms */
    for (int k = 1; k < 4; k++) {
        uint64_t gap = tserver_arrival(&e->s[0], k) - tserver_arrival(&e->s[0], k - 1);
        if (gap + 3 < (uint64_t)(BACKOFF * k) || gap > (uint64_t)(BACKOFF * k + 45))
            fail_msg("gap before retry %d: %llu ms, want about %d", k, (unsigned long long)gap,
                     BACKOFF * k);
    }
}

/* ---- deadlines ---------------------------------------------------------- */

/* Deadlines count from the loop's cached clock, which may lag the wall
 * clock of START by a few ms on a busy machine: hence the slack below MIN. */
static void
assert_elapsed(const xrun *r, uint64_t min, uint64_t max)
{
    uint64_t el = r->ended - r->started;
    if (el + 15 < min || el > max)
        fail_msg("done after %llu ms, want %llu..%llu", (unsigned long long)el,
                 (unsigned long long)min, (unsigned long long)max);
}

static void
test_try_timeout(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_DELAY, 200, 1500);
    tserver_script(&e->s[1], TSERVER_DELAY, 200, 1500);
    one_target(e, e->s[0].port);
    e->up.cu.try_timeout_ms = 100;
    e->up.cu.timeout_ms = 3000;
    e->up.cu.retries = 0;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.error_status, 504);
    assert_string_equal(r.error, "the upstream did not answer in time");
    assert_int_equal(r.tries, 1);
    assert_elapsed(&r, 100, 400);
    upstream_destroy(&e->group);
    e->built = false;

    /* each try gets its own: two tries, two timeouts */
    two_targets(e);
    e->up.cu.try_timeout_ms = 100;
    e->up.cu.timeout_ms = 3000;
    e->up.cu.retries = 1;
    build(e);
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 2);
    assert_int_equal(r.error_status, 504);
    assert_int_equal(r.tries, 2);
    assert_elapsed(&r, 205, 600);
    assert_int_equal(tserver_requests(&e->s[0]) + tserver_requests(&e->s[1]), 3);
    assert_int_equal(tserver_requests(&e->s[1]), 1);
}

static void
test_total_timeout(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_DELAY, 200, 1500);
    one_target(e, e->s[0].port);
    e->up.cu.try_timeout_ms = 2000;
    e->up.cu.timeout_ms = 150;
    e->up.cu.breaker.failures = 2;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.error_status, 504);
    assert_string_equal(r.error, "the upstream did not answer in time");
    assert_int_equal(r.tries, 1);
    assert_elapsed(&r, 150, 450);

    /* the spec's own total wins over the group's */
    e->up.cu.timeout_ms = 3000;
    xrun_init(&r, e, "GET", "/");
    r.spec.timeout_ms = 100;
    start(&r);
    run_until_done(e, 2);
    assert_int_equal(r.error_status, 504);
    assert_elapsed(&r, 100, 400);

    /* both timed-out tries were failures for the target, and are over */
    assert_int_equal(breaker_state_at(&e->group.targets[0].breaker, loop_now_ms(e->lp)),
                     BREAKER_OPEN);
    assert_int_equal(balancer_active(&e->group.balancer, 0), 0);
}

/* Once done ran nothing of the exchange fires any more, not even its
 * total deadline. */
static void
test_done_once(void **state)
{
    env *e = *state;
    tserver_script(&e->s[1], TSERVER_CLOSE, 0, 0);
    two_targets(e);
    e->up.cu.timeout_ms = 100;
    e->up.cu.retries = 0;
    e->up.cu.balance = CONFIG_BALANCE_HASH;
    build(e);
    xrun ok, failed;
    xrun_init(&ok, e, "GET", "/");
    key_for(&ok, e, 0);
    xrun_init(&failed, e, "GET", "/");
    key_for(&failed, e, 1);
    start(&ok);
    start(&failed);
    run_until_done(e, 2);
    assert_int_equal(ok.status, 200);
    assert_int_equal(failed.error_status, 502);
    tloop_run_for(&e->tl, 200); /* past both total deadlines */
    assert_int_equal(ok.ndone, 1);
    assert_int_equal(failed.ndone, 1);
    assert_int_equal(e->ndone, 2);
}

static void
test_total_timeout_cuts_retries(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_CLOSE, 0, 0);
    one_target(e, e->s[0].port);
    e->up.cu.retries = 5;
    e->up.cu.retry_backoff_ms = 100;
    e->up.cu.timeout_ms = 250;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 1);
    /* try 1 at 0, its retry at ~100; a second retry would start at ~300,
     * past the deadline: the last failure is the answer, at once */
    assert_int_equal(r.tries, 2);
    assert_int_equal(r.error_status, 502);
    assert_int_equal(tserver_requests(&e->s[0]), 2);
    assert_elapsed(&r, 100, 240);
}

/* ---- 503 ---------------------------------------------------------------- */

static void
test_breaker_open_503(void **state)
{
    env *e = *state;
    one_target(e, e->s[0].port);
    e->up.cu.breaker.failures = 1;
    e->up.cu.breaker.cooldown_ms = 3000;
    build(e);
    uint64_t now = loop_now_ms(e->lp);
    up_pick p = upstream_pick(&e->group, 0, KAPI_STR(""), now);
    assert_int_equal(p.index, 0);
    upstream_done(&e->group, &p, true, false, false, NULL, now);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.error_status, 503);
    assert_string_equal(r.error, "no healthy upstream target is available");
    assert_int_equal(r.retry_after_s, 3); /* the breaker's cooldown, rounded up */
    assert_int_equal(r.tries, 0);
    assert_int_equal(tserver_requests(&e->s[0]), 0);
}

/* A retry that finds no target admitting: the try's own failure is the
 * answer, not 503. */
static void
test_no_target_for_retry(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_CLOSE, 0, 0);
    one_target(e, e->s[0].port);
    e->up.cu.breaker.failures = 1;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.error_status, 502);
    assert_int_equal(r.tries, 1);
    assert_int_equal(tserver_requests(&e->s[0]), 1);
    assert_int_equal(breaker_state_at(&e->group.targets[0].breaker, loop_now_ms(e->lp)),
                     BREAKER_OPEN);
}

static void
test_none_healthy_503(void **state)
{
    env *e = *state;
    two_targets(e);
    e->up.cu.health.path = "/healthz";
    e->up.cu.health.unhealthy = 1;
    build(e);
    for (int i = 0; i < NSRV; i++)
        assert_true(health_report_active(&e->group.targets[i].health, false, 0, NULL));
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    run_until_done(e, 1);
    assert_int_equal(r.error_status, 503);
    assert_int_equal(r.retry_after_s, 1); /* no breaker to say when: at least 1 s */
    assert_int_equal(r.tries, 0);
    assert_int_equal(tserver_requests(&e->s[0]) + tserver_requests(&e->s[1]), 0);
}

/* ---- done's timing, cancel, abort --------------------------------------- */

static void
test_no_done_inside_start(void **state)
{
    env *e = *state;
    one_target(e, e->refused_port);
    e->up.cu.health.path = "/healthz";
    e->up.cu.health.unhealthy = 1;
    build(e);
    assert_true(health_report_active(&e->group.targets[0].health, false, 0, NULL));
    /* nothing to try: the failure is known at once, yet done waits */
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r); /* asserts done did not run */
    run_until_done(e, 1);
    assert_int_equal(r.error_status, 503);

    /* and the calls that cannot start at all */
    exchange *x = (exchange *)&r;
    xrun_init(&r, e, "GET", "/");
    r.spec.done = NULL;
    assert_int_equal(exchange_start(&r.spec, &x), KAPI_EINVAL);
    assert_null(x);
    xrun_init(&r, e, "GET", "/");
    r.spec.group = NULL;
    assert_int_equal(exchange_start(&r.spec, &x), KAPI_EINVAL);
    xrun_init(&r, e, "GET", "/");
    r.spec.limits = NULL;
    assert_int_equal(exchange_start(&r.spec, &x), KAPI_EINVAL);
    uclient_set_current(NULL);
    xrun_init(&r, e, "GET", "/");
    assert_int_equal(exchange_start(&r.spec, &x), KAPI_EINVAL);
    uclient_set_current(e->uc);
    tloop_run_for(&e->tl, 20);
    assert_int_equal(e->ndone, 1);
}

static void
test_cancel_right_after_start(void **state)
{
    env *e = *state;
    one_target(e, e->s[0].port);
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    exchange_cancel(r.x);
    tloop_run_for(&e->tl, 100);
    assert_int_equal(r.ndone, 0);
    assert_int_equal(tserver_requests(&e->s[0]), 0);
    assert_int_equal(balancer_active(&e->group.balancer, 0), 0);
    exchange_cancel(NULL);
}

/* A failure known inside exchange_start waits for the loop to be
 * delivered; a cancel in between means it never is. */
static void
test_cancel_failed_start(void **state)
{
    env *e = *state;
    one_target(e, e->s[0].port);
    e->up.cu.health.path = "/healthz";
    e->up.cu.health.unhealthy = 1;
    build(e);
    assert_true(health_report_active(&e->group.targets[0].health, false, 0, NULL));
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    exchange_cancel(r.x);
    tloop_run_for(&e->tl, 50);
    assert_int_equal(r.ndone, 0);
}

static bool
s0_got_request(void *data)
{
    env *e = data;
    return tserver_requests(&e->s[0]) >= 1;
}

static bool
s0_saw_close(void *data)
{
    env *e = data;
    return atomic_load(&e->s[0].early_closes) >= 1;
}

static void
test_cancel_during_try(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_DELAY, 200, 2000);
    one_target(e, e->s[0].port);
    e->up.cu.breaker.failures = 1;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    tloop_run_until(&e->tl, s0_got_request, e);
    assert_int_equal(balancer_active(&e->group.balancer, 0), 1);
    exchange_cancel(r.x);
    assert_int_equal(balancer_active(&e->group.balancer, 0), 0);
    tloop_run_until(&e->tl, s0_saw_close, e); /* the connection carrying it is closed */
    tloop_run_for(&e->tl, 50);
    assert_int_equal(r.ndone, 0);
    /* the cancelled try counted nothing */
    assert_int_equal(breaker_state_at(&e->group.targets[0].breaker, loop_now_ms(e->lp)),
                     BREAKER_CLOSED);
}

static void
test_cancel_during_backoff(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_CLOSE, 0, 0);
    one_target(e, e->s[0].port);
    e->up.cu.retry_backoff_ms = 150;
    build(e);
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    tloop_run_until(&e->tl, s0_got_request, e);
    tloop_run_for(&e->tl, 30); /* the close is seen; the backoff runs */
    exchange_cancel(r.x);
    tloop_run_for(&e->tl, 250);
    assert_int_equal(r.ndone, 0);
    assert_int_equal(tserver_requests(&e->s[0]), 1);
}

static bool
both_got_request(void *data)
{
    env *e = data;
    return tserver_requests(&e->s[0]) >= 1 && tserver_requests(&e->s[1]) >= 1;
}

static void
test_abort_all(void **state)
{
    env *e = *state;
    tserver_script(&e->s[0], TSERVER_DELAY, 200, 2000);
    tserver_script(&e->s[1], TSERVER_CLOSE, 0, 0);
    two_targets(e);
    e->up.cu.balance = CONFIG_BALANCE_HASH;
    e->up.cu.retry_backoff_ms = 1000;
    build(e);
    exchange_abort_all(); /* none live: nothing happens */

    xrun r[3];
    xrun_init(&r[0], e, "GET", "/in-try");
    key_for(&r[0], e, 0);
    xrun_init(&r[1], e, "GET", "/in-backoff");
    key_for(&r[1], e, 1);
    xrun_init(&r[2], e, "GET", "/just-started");
    start(&r[0]);
    start(&r[1]);
    tloop_run_until(&e->tl, both_got_request, e);
    tloop_run_for(&e->tl, 30); /* r[1]'s close is seen; its backoff runs */
    start(&r[2]);              /* the loop has not run since */
    assert_int_equal(e->ndone, 0);

    exchange_abort_all();
    assert_int_equal(e->ndone, 3); /* every done ran before it returned */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].ndone, 1);
        assert_int_equal(r[i].status, 0);
        assert_int_equal(r[i].error_status, 503);
        assert_string_equal(r[i].error, "the gateway is shutting down");
        assert_int_equal(r[i].retry_after_s, 1);
    }
    assert_int_equal(balancer_active(&e->group.balancer, 0), 0);
    assert_int_equal(balancer_active(&e->group.balancer, 1), 0);
    /* no timer or call of theirs is left to fire */
    tloop_run_until(&e->tl, s0_saw_close, e);
    tloop_run_for(&e->tl, 100);
    assert_int_equal(e->ndone, 3);
    assert_int_equal(tserver_requests(&e->s[0]), 1);
    assert_int_equal(tserver_requests(&e->s[1]), 1);
    exchange_abort_all();
    assert_int_equal(e->ndone, 3);
}

/* An exchange that failed inside exchange_start is not delivered yet when
 * the worker aborts: abort_all must still run its done before returning
 * (the worker may free the loop next, and the request waits on it). */
static void
test_abort_all_delivers_failed_start(void **state)
{
    env *e = *state;
    one_target(e, e->s[0].port);
    e->up.cu.health.path = "/healthz";
    e->up.cu.health.unhealthy = 1;
    build(e);
    assert_true(health_report_active(&e->group.targets[0].health, false, 0, NULL));
    xrun r;
    xrun_init(&r, e, "GET", "/");
    start(&r);
    exchange_abort_all();
    assert_int_equal(r.ndone, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.error_status, 503);
    tloop_run_for(&e->tl, 50);
    assert_int_equal(r.ndone, 1);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_answer_passed_through),
        T(test_host_given),
        T(test_single_origin),
        T(test_5xx_passed_through_not_retried),
        T(test_get_retried_on_other_target),
        T(test_post_sent_not_retried),
        T(test_post_refused_retried),
        T(test_retries_bounded),
        T(test_backoff_grows),
        T(test_try_timeout),
        T(test_total_timeout),
        T(test_total_timeout_cuts_retries),
        T(test_done_once),
        T(test_breaker_open_503),
        T(test_none_healthy_503),
        T(test_no_target_for_retry),
        T(test_no_done_inside_start),
        T(test_cancel_right_after_start),
        T(test_cancel_failed_start),
        T(test_cancel_during_try),
        T(test_cancel_during_backoff),
        T(test_abort_all),
        T(test_abort_all_delivers_failed_start),
    };
#undef T
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    origin_registry_free();
    return failed;
}
