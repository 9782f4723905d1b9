/* test_health.c -- unit tests for core/health.c: active thresholds both
 * ways, the passive failure run and its reset by a success, recovery after
 * recover_ms without active checks (and a fresh run needed to fall again),
 * a passive fall held until fresh active passes when active checks exist,
 * reports ignored when their kind is off, the transition texts,
 * health_passes with and without configured statuses, and 4 threads
 * reporting at once. Time is passed in. */
#include "health.h"

#include <pthread.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static config_health
active_cfg(void)
{
    return (config_health){
        .path = "/healthz", .interval_ms = 5000, .timeout_ms = 2000, .healthy = 2, .unhealthy = 3};
}

static config_passive
passive_cfg(unsigned failures)
{
    return (config_passive){.failures = failures, .count_5xx = true, .recover_ms = 10000};
}

static const config_health no_active = {.path = NULL, .healthy = 2, .unhealthy = 3};

static void
passive_n(target_health *h, bool failure, unsigned n, uint64_t now)
{
    for (unsigned i = 0; i < n; i++)
        assert_false(health_report_passive(h, failure, now, NULL));
}

static void
active_n(target_health *h, bool pass, unsigned n, uint64_t now)
{
    for (unsigned i = 0; i < n; i++)
        assert_false(health_report_active(h, pass, now, NULL));
}

static void
test_init_checks(void **state)
{
    (void)state;
    target_health h;
    config_health a = active_cfg();
    config_passive p = passive_cfg(0);
    a.healthy = 0;
    assert_int_equal(health_init(&h, &a, &p), KAPI_EINVAL);
    a = active_cfg();
    a.unhealthy = 0;
    assert_int_equal(health_init(&h, &a, &p), KAPI_EINVAL);
    /* without a path the thresholds do not matter */
    a.path = NULL;
    assert_int_equal(health_init(&h, &a, &p), KAPI_OK);
    assert_true(health_is_up(&h, 0));
    health_destroy(&h);
    assert_int_equal(health_init(&h, NULL, NULL), KAPI_OK);
    assert_true(health_is_up(&h, 0));
    health_destroy(&h);
}

static void
test_passes(void **state)
{
    (void)state;
    config_health a = active_cfg();
    assert_true(health_passes(&a, 200));
    assert_true(health_passes(&a, 204));
    assert_true(health_passes(&a, 301));
    assert_true(health_passes(&a, 399));
    assert_false(health_passes(&a, 199));
    assert_false(health_passes(&a, 400));
    assert_false(health_passes(&a, 503));
    assert_false(health_passes(&a, 0));
    assert_true(health_passes(NULL, 200));
    int statuses[] = {200, 404};
    a.statuses = statuses;
    a.nstatuses = 2;
    assert_true(health_passes(&a, 200));
    assert_true(health_passes(&a, 404));
    assert_false(health_passes(&a, 204));
    assert_false(health_passes(&a, 301));
}

static void
test_active_thresholds(void **state)
{
    (void)state;
    target_health h;
    health_transition t;
    config_health a = active_cfg();
    config_passive p = passive_cfg(0);
    assert_int_equal(health_init(&h, &a, &p), KAPI_OK);
    assert_true(health_is_up(&h, 0));
    /* a pass breaks a run of failures */
    active_n(&h, false, 2, 0);
    active_n(&h, true, 1, 0);
    active_n(&h, false, 2, 0);
    assert_true(health_is_up(&h, 0));
    assert_true(health_report_active(&h, false, 0, &t));
    assert_false(t.up);
    assert_string_equal(t.why, "3 failed active checks");
    assert_false(health_is_up(&h, 0));
    assert_false(health_is_up(&h, UINT64_MAX - 1));
    /* a failure breaks a run of passes */
    active_n(&h, true, 1, 5000);
    active_n(&h, false, 1, 10000);
    active_n(&h, true, 1, 15000);
    assert_false(health_is_up(&h, 15000));
    assert_true(health_report_active(&h, true, 20000, &t));
    assert_true(t.up);
    assert_string_equal(t.why, "2 passing active checks");
    assert_true(health_is_up(&h, 20000));
    /* further results in the same direction change nothing */
    active_n(&h, true, 5, 25000);
    health_destroy(&h);

    /* thresholds of 1, in the singular */
    a.healthy = 1;
    a.unhealthy = 1;
    assert_int_equal(health_init(&h, &a, &p), KAPI_OK);
    assert_true(health_report_active(&h, false, 0, &t));
    assert_string_equal(t.why, "1 failed active check");
    assert_true(health_report_active(&h, true, 0, &t));
    assert_string_equal(t.why, "1 passing active check");
    health_destroy(&h);
}

static void
test_passive_trip_and_reset(void **state)
{
    (void)state;
    target_health h;
    health_transition t;
    config_passive p = passive_cfg(5);
    assert_int_equal(health_init(&h, &no_active, &p), KAPI_OK);
    passive_n(&h, true, 4, 0);
    passive_n(&h, false, 1, 0); /* a success resets the run */
    passive_n(&h, true, 4, 0);
    assert_true(health_is_up(&h, 0));
    assert_true(health_report_passive(&h, true, 100, &t));
    assert_false(t.up);
    assert_string_equal(t.why, "5 consecutive failed requests");
    assert_false(health_is_up(&h, 100));
    health_destroy(&h);

    /* passive off: failures change nothing */
    p = passive_cfg(0);
    assert_int_equal(health_init(&h, &no_active, &p), KAPI_OK);
    passive_n(&h, true, 100, 0);
    assert_true(health_is_up(&h, 0));
    health_destroy(&h);
    assert_int_equal(health_init(&h, &no_active, NULL), KAPI_OK);
    passive_n(&h, true, 100, 0);
    assert_true(health_is_up(&h, 0));
    /* and active reports without a path are ignored */
    active_n(&h, false, 10, 0);
    assert_true(health_is_up(&h, 0));
    health_destroy(&h);
}

static void
test_passive_recovery_without_active(void **state)
{
    (void)state;
    target_health h;
    health_transition t;
    config_passive p = passive_cfg(5);
    assert_int_equal(health_init(&h, &no_active, &p), KAPI_OK);
    passive_n(&h, true, 4, 100);
    assert_true(health_report_passive(&h, true, 100, &t));
    /* down for recover_ms; live reports meanwhile (requests sent before the
     * fall) neither bring it back nor extend the wait */
    passive_n(&h, false, 3, 5000);
    passive_n(&h, true, 3, 9000);
    assert_false(health_is_up(&h, 10099));
    assert_true(health_is_up(&h, 10100));
    /* the first report after that makes it official */
    assert_true(health_report_passive(&h, true, 10200, &t));
    assert_true(t.up);
    assert_string_equal(t.why, "recovered after 10000 ms");
    /* a whole new run is needed to mark it down: that failure is 1 of 5 */
    passive_n(&h, true, 3, 10300);
    assert_true(health_is_up(&h, 10300));
    assert_true(health_report_passive(&h, true, 10400, &t));
    assert_false(t.up);
    assert_false(health_is_up(&h, 10400));
    assert_false(health_is_up(&h, 20399));
    assert_true(health_is_up(&h, 20400));
    /* recovery reported on a success */
    assert_true(health_report_passive(&h, false, 30000, &t));
    assert_true(t.up);
    assert_string_equal(t.why, "recovered after 10000 ms");
    health_destroy(&h);

    /* a run of 1: the report after the wait recovers and falls at once;
     * the fall is what it returns */
    p = passive_cfg(1);
    assert_int_equal(health_init(&h, &no_active, &p), KAPI_OK);
    assert_true(health_report_passive(&h, true, 0, &t));
    assert_string_equal(t.why, "1 consecutive failed request");
    assert_true(health_is_up(&h, 10000));
    assert_true(health_report_passive(&h, true, 10000, &t));
    assert_false(t.up);
    assert_false(health_is_up(&h, 10000));
    assert_true(health_is_up(&h, 20000));
    health_destroy(&h);
}

static void
test_passive_down_held_until_active_passes(void **state)
{
    (void)state;
    target_health h;
    health_transition t;
    config_health a = active_cfg();
    config_passive p = passive_cfg(2);
    p.recover_ms = 1000;
    assert_int_equal(health_init(&h, &a, &p), KAPI_OK);
    active_n(&h, true, 5, 0); /* passes before the fall */
    passive_n(&h, true, 1, 10);
    assert_true(health_report_passive(&h, true, 10, &t));
    assert_false(t.up);
    assert_string_equal(t.why, "2 consecutive failed requests");
    /* recover_ms does not apply, nor do live successes */
    assert_false(health_is_up(&h, 1000000));
    passive_n(&h, false, 10, 1000000);
    assert_false(health_is_up(&h, 1000000));
    /* the 5 earlier passes do not count: 2 fresh ones do */
    active_n(&h, true, 1, 1000000);
    assert_false(health_is_up(&h, 1000000));
    assert_true(health_report_active(&h, true, 1005000, &t));
    assert_true(t.up);
    assert_string_equal(t.why, "2 passing active checks");
    assert_true(health_is_up(&h, 1005000));
    /* and the passive run starts over */
    passive_n(&h, true, 1, 1005000);
    assert_true(health_report_passive(&h, true, 1005000, NULL));
    assert_false(health_is_up(&h, 1005000));
    health_destroy(&h);
}

/* ---- threads ---- */

typedef struct reporter {
    target_health *h;
    pthread_barrier_t *start; /* so the threads overlap rather than run in turn */
    _Atomic uint64_t *clock;
    uint32_t seed;
    unsigned downs, ups;
} reporter;

static void *
reporter_run(void *arg)
{
    reporter *r = arg;
    pthread_barrier_wait(r->start);
    for (int k = 0; k < 40000; k++) {
        uint64_t now = atomic_fetch_add(r->clock, 1) / 4;
        r->seed ^= r->seed << 13;
        r->seed ^= r->seed >> 17;
        r->seed ^= r->seed << 5;
        health_transition t;
        bool changed;
        if (r->seed % 10 == 0)
            changed = health_report_active(r->h, r->seed % 20 != 0, now, &t);
        else
            changed = health_report_passive(r->h, r->seed % 3 != 0, now, &t);
        (void)health_is_up(r->h, now);
        if (changed) {
            if (t.up)
                r->ups++;
            else
                r->downs++;
        }
    }
    return NULL;
}

static void
run_reporters(const config_health *a, const config_passive *p, bool want_ups)
{
    target_health h;
    assert_int_equal(health_init(&h, a, p), KAPI_OK);
    _Atomic uint64_t clock = 0;
    reporter r[4];
    pthread_t th[4];
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 4), 0);
    for (int i = 0; i < 4; i++) {
        r[i] = (reporter){
            .h = &h, .start = &start, .clock = &clock, .seed = 88172645u + 31u * (uint32_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, reporter_run, &r[i]), 0);
    }
    unsigned downs = 0, ups = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        downs += r[i].downs;
        ups += r[i].ups;
    }
    pthread_barrier_destroy(&start);
    /* transitions alternate, starting with a fall from the initial up */
    assert_true(downs > 10);
    if (want_ups)
        assert_true(ups > 10);
    assert_int_equal(downs, ups + !h.up);
    health_destroy(&h);
}

static void
test_concurrent_transitions_alternate(void **state)
{
    (void)state;
    config_health a = active_cfg();
    config_passive p = passive_cfg(3);
    p.recover_ms = 50;
    run_reporters(&a, &p, true);
    run_reporters(&no_active, &p, true);
}

/* A reload's new target takes over the old one's "down": without active
 * checks it recovers recover_ms after the old fall; with them only by
 * passing checks. An up target changes nothing. */
static void
test_inherit(void **state)
{
    (void)state;
    config_passive p = passive_cfg(1);
    config_health a = active_cfg();
    target_health old, up, fresh, checked;
    assert_int_equal(health_init(&old, &no_active, &p), KAPI_OK);
    assert_int_equal(health_init(&up, &no_active, &p), KAPI_OK);
    assert_int_equal(health_init(&fresh, &no_active, &p), KAPI_OK);
    assert_int_equal(health_init(&checked, &a, &p), KAPI_OK);

    health_inherit(&fresh, &up); /* up stays up */
    assert_true(health_is_up(&fresh, 1000));

    assert_true(health_report_passive(&old, true, 1000, NULL)); /* down at 1000 */
    health_inherit(&fresh, &old);
    assert_false(health_is_up(&fresh, 1001));
    assert_false(health_is_up(&fresh, 10999));
    assert_true(health_is_up(&fresh, 11000)); /* 1000 + recover_ms */

    health_inherit(&checked, &old);
    assert_false(health_is_up(&checked, 50000)); /* no recover_ms with active checks */
    assert_false(health_report_active(&checked, true, 50000, NULL));
    assert_true(health_report_active(&checked, true, 50001, NULL)); /* healthy = 2 */
    assert_true(health_is_up(&checked, 50001));

    health_destroy(&old);
    health_destroy(&up);
    health_destroy(&fresh);
    health_destroy(&checked);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_checks),
        cmocka_unit_test(test_passes),
        cmocka_unit_test(test_active_thresholds),
        cmocka_unit_test(test_passive_trip_and_reset),
        cmocka_unit_test(test_passive_recovery_without_active),
        cmocka_unit_test(test_passive_down_held_until_active_passes),
        cmocka_unit_test(test_concurrent_transitions_alternate),
        cmocka_unit_test(test_inherit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
