/* test_hcheck.c -- unit tests for core/hcheck.c: active health checks run
 * on a real loop and uclient against test servers in threads of this test
 * on 127.0.0.1 whose answer to GET /health the test flips.
 *
 * Covered: the first check right away, then one every interval_ms per
 * target; a target marked down after `unhealthy` failing checks and up
 * after `healthy` passing ones, with the log lines; the check request
 * (path, Host, User-Agent); configured statuses honoured both ways; a
 * refused connection and a check slower than timeout_ms failing; only
 * groups with a health path checked; hcheck_stop cancelling a check in
 * flight and a pending timer (nothing runs later: ASan finds a done that
 * would touch the freed probes). A guard timer fails a test that would
 * hang. The thresholds themselves are test_health.c's. */
#include "hcheck.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tcapture.h"
#include "tloop.h"
#include "tserver.h"
#include "uclient.h"

/* ---- the loop side ------------------------------------------------------ */

#define NGROUPS 2

typedef struct env env;
struct env {
    tserver s[2];
    uint16_t refused_port;
    loop *lp;
    uclient *uc;
    tloop tl;
    config file;
    tserver_upstream up[NGROUPS];
    int statuses[4];
    upstream g[NGROUPS];
    size_t ngroups;
    hcheck *h;
};

/* Group GI's config: N targets at PORTS, checked at /health (defaults a
 * test may change before build). */
static void
group_config(env *e, size_t gi, size_t n, const uint16_t *ports)
{
    tserver_upstream_config(&e->up[gi], gi == 0 ? "api" : "other", n, ports);
    config_upstream *cu = &e->up[gi].cu;
    cu->keepalive = 4;
    cu->max_connections = 1;
    cu->connect_timeout_ms = 1000;
    cu->try_timeout_ms = 2000;
    cu->timeout_ms = 4000;
    cu->retries = 0;
    cu->retry_backoff_ms = 0;
    cu->health.path = "/health";
    cu->health.interval_ms = 100;
    cu->health.timeout_ms = 500;
}

static void
build(env *e, size_t ngroups)
{
    for (size_t i = 0; i < ngroups; i++) {
        char err[256] = "";
        if (upstream_build(&e->file, &e->up[i].cu, &e->g[i], err, sizeof(err)) != KAPI_OK)
            fail_msg("upstream_build: %s", err);
        e->ngroups = i + 1;
    }
}

static void
start(env *e)
{
    assert_int_equal(hcheck_start(e->g, e->ngroups, &e->h), KAPI_OK);
    assert_non_null(e->h);
}

static void
stop(env *e)
{
    hcheck_stop(e->h);
    e->h = NULL;
}

static bool
is_up(env *e, size_t gi, size_t ti)
{
    return health_is_up(&e->g[gi].targets[ti].health, loop_now_ms(e->lp));
}

static int
setup(void **state)
{
    env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    for (int i = 0; i < 2; i++)
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
    if (tcapture_active()) { /* a test failed while capturing: show what it logged */
        const char *log = tcapture_end();
        fputs(log, stderr);
    }
    hcheck_stop(e->h);
    uclient_set_current(NULL);
    uclient_free(e->uc);
    loop_free(e->lp);
    for (int i = 0; i < 2; i++)
        tserver_stop(&e->s[i]);
    for (size_t i = 0; i < e->ngroups; i++)
        upstream_destroy(&e->g[i]);
    free(e);
    return 0;
}

/* ---- down and up -------------------------------------------------------- */

static bool
both_checked_twice(void *data)
{
    env *e = data;
    return atomic_load(&e->s[0].answers_ok) >= 2 && atomic_load(&e->s[1].answers_ok) >= 2;
}

static bool
target0_down(void *data)
{
    env *e = data;
    return !is_up(e, 0, 0);
}

static bool
target0_up(void *data)
{
    env *e = data;
    return is_up(e, 0, 0);
}

static void
test_down_then_up(void **state)
{
    env *e = *state;
    enum { INTERVAL = 100 };
    uint16_t ports[2] = {e->s[0].port, e->s[1].port};
    group_config(e, 0, 2, ports);
    e->up[0].cu.health.interval_ms = INTERVAL;
    build(e, 1);
    tcapture_begin();
    uint64_t t0 = tserver_now_ms();
    start(e);
    tloop_run_until(&e->tl, both_checked_twice, e);
    /* the first check of every target right away, not after an interval */
    assert_true(tserver_arrival(&e->s[0], 0) - t0 < INTERVAL / 2);
    assert_true(tserver_arrival(&e->s[1], 0) - t0 < INTERVAL / 2);
    assert_true(is_up(e, 0, 0) && is_up(e, 0, 1));

    /* 3 failing checks in a row take it out, not fewer */
    tserver_script(&e->s[0], TSERVER_ANSWER, 503, 0);
    tloop_run_until(&e->tl, target0_down, e);
    assert_int_equal(atomic_load(&e->s[0].answers_error), 3);
    assert_true(is_up(e, 0, 1));

    /* 2 passing ones bring it back */
    int oks = atomic_load(&e->s[0].answers_ok);
    tserver_script(&e->s[0], TSERVER_ANSWER, 200, 0);
    tloop_run_until(&e->tl, target0_up, e);
    assert_int_equal(atomic_load(&e->s[0].answers_ok) - oks, 2);
    stop(e);
    const char *log = tcapture_end();

    char want[192];
    snprintf(want, sizeof(want),
             " warn [upstream] api: target %s is unhealthy: 3 failed active checks (last "
             "check: answered)\n",
             e->up[0].url[0]);
    tcapture_assert_logged(log, want);
    snprintf(want, sizeof(want),
             " info [upstream] api: target %s is healthy: 2 passing active checks (last "
             "check: answered)\n",
             e->up[0].url[0]);
    tcapture_assert_logged(log, want);
    assert_null(strstr(log, e->up[0].url[1]));

    /* one check per interval, never overlapping */
    int n = tserver_requests(&e->s[0]);
    assert_true(n >= 7);
    for (int k = 1; k < n && k < TSERVER_MAX_ARRIVALS; k++) {
        uint64_t gap = tserver_arrival(&e->s[0], k) - tserver_arrival(&e->s[0], k - 1);
        if (gap + 3 < INTERVAL || gap > INTERVAL + 60)
            fail_msg("check %d came %llu ms after the previous one, want about %d", k,
                     (unsigned long long)gap, INTERVAL);
    }

    /* what a check sends */
    char want_host[64];
    snprintf(want_host, sizeof(want_host), "\r\nHost: 127.0.0.1:%u\r\n", e->s[0].port);
    char last[TSERVER_REC_MAX];
    tserver_last(&e->s[0], last, sizeof(last));
    assert_true(strncmp(last, "GET /health HTTP/1.1\r\n", 22) == 0);
    assert_non_null(strstr(last, want_host));
    assert_non_null(strstr(last, "\r\nUser-Agent: kapi-health-check\r\n"));
}

static void
test_statuses_honoured(void **state)
{
    env *e = *state;
    enum { INTERVAL = 50 };
    group_config(e, 0, 1, &e->s[0].port);
    e->statuses[0] = 503;
    e->statuses[1] = 418;
    e->up[0].cu.health.statuses = e->statuses;
    e->up[0].cu.health.nstatuses = 2;
    e->up[0].cu.health.interval_ms = INTERVAL;
    e->up[0].cu.health.unhealthy = 2;
    e->up[0].cu.health.healthy = 1;
    build(e, 1);
    tserver_script(&e->s[0], TSERVER_ANSWER, 503, 0);
    tcapture_begin();
    start(e);
    tloop_run_for(&e->tl, 3 * INTERVAL + 20);
    assert_true(atomic_load(&e->s[0].answers_error) >= 3);
    assert_true(is_up(e, 0, 0)); /* 503 is listed: it passes */

    /* 200 is not listed: it fails */
    int errors = atomic_load(&e->s[0].answers_error);
    int oks = atomic_load(&e->s[0].answers_ok);
    tserver_script(&e->s[0], TSERVER_ANSWER, 200, 0);
    tloop_run_until(&e->tl, target0_down, e);
    assert_int_equal(atomic_load(&e->s[0].answers_ok) - oks, 2);
    assert_int_equal(atomic_load(&e->s[0].answers_error), errors);

    tserver_script(&e->s[0], TSERVER_ANSWER, 418, 0);
    errors = atomic_load(&e->s[0].answers_error);
    tloop_run_until(&e->tl, target0_up, e);
    assert_int_equal(atomic_load(&e->s[0].answers_error) - errors, 1);
    stop(e);
    const char *log = tcapture_end();
    tcapture_assert_logged(log, "is unhealthy: 2 failed active checks");
    tcapture_assert_logged(log, "is healthy: 1 passing active check (last check: answered)");
}

static bool
both_targets_down(void *data)
{
    env *e = data;
    return !is_up(e, 0, 0) && !is_up(e, 0, 1);
}

static void
test_refused_and_slow_fail(void **state)
{
    env *e = *state;
    uint16_t ports[2] = {e->refused_port, e->s[0].port};
    group_config(e, 0, 2, ports);
    e->up[0].cu.health.interval_ms = 50;
    e->up[0].cu.health.timeout_ms = 100;
    e->up[0].cu.health.unhealthy = 2;
    build(e, 1);
    tserver_script(&e->s[0], TSERVER_DELAY, 200, 1000); /* slower than the check's timeout */
    tcapture_begin();
    uint64_t t0 = tserver_now_ms();
    start(e);
    tloop_run_until(&e->tl, both_targets_down, e);
    uint64_t took = tserver_now_ms() - t0;
    stop(e);
    const char *log = tcapture_end();
    /* two timeouts and an interval: about 250 ms, not the server's 1000 */
    assert_true(took >= 240 && took < 900);
    assert_int_equal(tserver_requests(&e->s[0]), 2);
    assert_int_equal(atomic_load(&e->s[0].answers_ok) + atomic_load(&e->s[0].answers_error), 0);
    char want[192];
    snprintf(want, sizeof(want),
             "api: target %s is unhealthy: 2 failed active checks (last check: connection "
             "refused)\n",
             e->up[0].url[0]);
    tcapture_assert_logged(log, want);
    snprintf(want, sizeof(want),
             "api: target %s is unhealthy: 2 failed active checks (last check: timed out",
             e->up[0].url[1]);
    tcapture_assert_logged(log, want);
}

/* ---- which groups ------------------------------------------------------- */

static void
test_only_groups_with_a_path(void **state)
{
    env *e = *state;
    group_config(e, 0, 1, &e->s[0].port);
    group_config(e, 1, 1, &e->s[1].port);
    e->up[0].cu.health.path = NULL;
    build(e, 2);
    start(e);
    tloop_run_for(&e->tl, 50);
    stop(e);
    assert_int_equal(tserver_requests(&e->s[0]), 0);
    assert_int_equal(tserver_requests(&e->s[1]), 1);

    /* no group with a path: no checker, nothing to stop */
    hcheck *h = (hcheck *)e;
    assert_int_equal(hcheck_start(e->g, 1, &h), KAPI_OK);
    assert_null(h);
    hcheck_stop(NULL);

    /* checks need the loop thread's client */
    uclient_set_current(NULL);
    h = (hcheck *)e;
    assert_int_equal(hcheck_start(e->g, 2, &h), KAPI_ESTATE);
    assert_null(h);
    uclient_set_current(e->uc);
}

/* ---- stop --------------------------------------------------------------- */

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
test_stop_cancels_check_in_flight(void **state)
{
    env *e = *state;
    group_config(e, 0, 1, &e->s[0].port);
    e->up[0].cu.health.interval_ms = 50;
    e->up[0].cu.health.timeout_ms = 300;
    e->up[0].cu.health.unhealthy = 1;
    build(e, 1);
    tserver_script(&e->s[0], TSERVER_DELAY, 200, 2000);
    start(e);
    tloop_run_until(&e->tl, s0_got_request, e);
    stop(e);
    tloop_run_until(&e->tl, s0_saw_close, e); /* the check's connection is closed */
    tloop_run_for(&e->tl, 400);               /* past the check's own timeout */
    assert_int_equal(tserver_requests(&e->s[0]), 1);
    assert_true(is_up(e, 0, 0)); /* no verdict was reported */
}

static bool
s0_answered_twice(void *data)
{
    env *e = data;
    return atomic_load(&e->s[0].answers_ok) >= 2;
}

static void
test_stop_between_checks(void **state)
{
    env *e = *state;
    group_config(e, 0, 1, &e->s[0].port);
    e->up[0].cu.health.interval_ms = 50;
    build(e, 1);
    start(e);
    tloop_run_until(&e->tl, s0_answered_twice, e);
    tloop_run_for(&e->tl, 10); /* the answer is read; the next check waits for its timer */
    stop(e);
    tloop_run_for(&e->tl, 200);
    assert_int_equal(tserver_requests(&e->s[0]), 2);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_down_then_up),
        T(test_statuses_honoured),
        T(test_refused_and_slow_fail),
        T(test_only_groups_with_a_path),
        T(test_stop_cancels_check_in_flight),
        T(test_stop_between_checks),
    };
#undef T
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    origin_registry_free();
    return failed;
}
