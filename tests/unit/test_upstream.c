/* test_upstream.c -- unit tests for core/upstream.c: building a group of
 * three targets (numeric hosts, no traffic) and its error paths (a target's
 * origin, breaker or health settings refused: the position named, nothing
 * left allocated); choosing a target only among the healthy ones whose
 * breaker admits, preferring targets not tried yet and falling back to
 * tried ones, and -1 with the soonest breaker's retry_after when none
 * admits; feeding outcomes back (the breaker opening after N failures and
 * closing after a probe, passive health with count_5xx on and off, a
 * cancelled try counting nothing but releasing its probe slot) with the log
 * lines of every transition; least_conn's in-flight counts balanced by
 * upstream_done. Time is passed in. The balancer, breaker and health rules
 * themselves are test_balance.c's, test_breaker.c's and test_health.c's. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tcapture.h"
#include "tserver.h"

#define NT 3
#define ALL ((uint64_t)(1u << NT) - 1)
#define PORT0 18101

typedef struct fixture {
    config file;
    tserver_upstream up;
    upstream u;
    bool built;
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->file.file = "kapi.json";
    uint16_t ports[NT];
    for (int i = 0; i < NT; i++)
        ports[i] = (uint16_t)(PORT0 + i);
    tserver_upstream_config(&f->up, "api", NT, ports);
    f->up.cu.json_path = "upstreams.api";
    f->up.cu.line = 5;
    f->up.cu.col = 3;
    for (int i = 0; i < NT; i++) {
        f->up.ct[i].line = 7;
        f->up.ct[i].col = (unsigned)(9 + 30 * i);
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    if (f->built)
        upstream_destroy(&f->u);
    free(f);
    return 0;
}

static void
build(fixture *f)
{
    char err[256] = "";
    kapi_status st = upstream_build(&f->file, &f->up.cu, &f->u, err, sizeof(err));
    if (st != KAPI_OK)
        fail_msg("upstream_build: %s", err);
    f->built = true;
}

static up_pick
pick(fixture *f, uint64_t tried, uint64_t now)
{
    return upstream_pick(&f->u, tried, KAPI_STR(""), now);
}

/* Picks target I by marking every other one tried. */
static up_pick
pick_target(fixture *f, int i, uint64_t now)
{
    up_pick p = pick(f, ALL & ~((uint64_t)1 << i), now);
    assert_int_equal(p.index, i);
    return p;
}

static void
done(fixture *f, const up_pick *p, bool failed, bool status_5xx, uint64_t now)
{
    upstream_done(&f->u, p, failed, status_5xx, false, "r-1", now);
}

static void
cancelled(fixture *f, const up_pick *p, uint64_t now)
{
    upstream_done(&f->u, p, true, true, true, "r-1", now);
}

static int
count_lines(const char *log)
{
    int n = 0;
    for (const char *p = log; (p = strchr(p, '\n')); p++)
        n++;
    return n;
}

/* ---- build -------------------------------------------------------------- */

static void
test_build(void **state)
{
    fixture *f = *state;
    build(f);
    assert_ptr_equal(f->u.cfg, &f->up.cu);
    assert_int_equal(f->u.ntargets, NT);
    for (int i = 0; i < NT; i++) {
        const up_target *t = &f->u.targets[i];
        char authority[32];
        snprintf(authority, sizeof(authority), "127.0.0.1:%d", PORT0 + i);
        assert_ptr_equal(t->cfg, &f->up.ct[i]);
        assert_non_null(t->origin);
        assert_false(t->origin->tls);
        assert_int_equal(t->origin->port, PORT0 + i);
        assert_string_equal(t->origin->authority, authority);
        assert_true(health_is_up(&f->u.targets[i].health, 0));
        assert_int_equal(breaker_state_at(&f->u.targets[i].breaker, 0), BREAKER_CLOSED);
        assert_int_equal(balancer_active(&f->u.balancer, (size_t)i), 0);
    }
}

static void
test_build_error(void **state)
{
    fixture *f = *state;
    f->up.ct[1].port = 0; /* origin_get refuses it */
    char err[256] = "";
    memset(&f->u, 0xab, sizeof(f->u));
    assert_int_not_equal(upstream_build(&f->file, &f->up.cu, &f->u, err, sizeof(err)), KAPI_OK);
    const char *want = "kapi.json:7:39: upstreams.api.targets[1]: ";
    if (strncmp(err, want, strlen(want)) != 0 || strlen(err) == strlen(want))
        fail_msg("error \"%s\", want \"%s…\"", err, want);
    /* nothing left allocated (ASan's leak check) and nothing to destroy */
    assert_null(f->u.targets);
    assert_int_equal(f->u.ntargets, 0);
    upstream_destroy(&f->u);
}

/* Breaker and health settings config.c would refuse: the group's own
 * position is named, and nothing is left allocated. */
static void
test_build_bad_settings(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    f->up.cu.breaker.failures = 1;
    f->up.cu.breaker.half_open_probes = 0;
    assert_int_equal(upstream_build(&f->file, &f->up.cu, &f->u, err, sizeof(err)), KAPI_EINVAL);
    const char *want = "kapi.json:5:3: upstreams.api: breaker: ";
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("error \"%s\", want \"%s…\"", err, want);
    assert_null(f->u.targets);

    f->up.cu.breaker.half_open_probes = 1;
    f->up.cu.health.path = "/healthz";
    f->up.cu.health.healthy = 0;
    err[0] = '\0';
    assert_int_equal(upstream_build(&f->file, &f->up.cu, &f->u, err, sizeof(err)), KAPI_EINVAL);
    want = "kapi.json:5:3: upstreams.api: health: ";
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("error \"%s\", want \"%s…\"", err, want);
    assert_null(f->u.targets);
    assert_int_equal(f->u.ntargets, 0);
}

/* ---- pick --------------------------------------------------------------- */

/* Counts the targets of N picks (each ended right away). */
static void
pick_counts(fixture *f, uint64_t tried, int n, uint64_t now, int counts[NT])
{
    memset(counts, 0, NT * sizeof(*counts));
    for (int k = 0; k < n; k++) {
        up_pick p = pick(f, tried, now);
        assert_true(p.index >= 0 && p.index < NT);
        assert_int_equal(p.admit, BREAKER_ALLOW);
        counts[p.index]++;
        done(f, &p, false, false, now);
    }
}

static void
test_pick_all_healthy(void **state)
{
    fixture *f = *state;
    build(f);
    int counts[NT];
    pick_counts(f, 0, 30, 1000, counts);
    for (int i = 0; i < NT; i++)
        assert_true(counts[i] > 0);
}

static void
test_pick_skips_actively_down(void **state)
{
    fixture *f = *state;
    f->up.cu.health.path = "/healthz";
    f->up.cu.health.healthy = 1;
    f->up.cu.health.unhealthy = 2;
    build(f);
    target_health *h = &f->u.targets[1].health;
    assert_false(health_report_active(h, false, 1000, NULL));
    assert_true(health_report_active(h, false, 1000, NULL));
    int counts[NT];
    pick_counts(f, 0, 30, 1000, counts);
    assert_int_equal(counts[1], 0);
    assert_int_equal(counts[0] + counts[2], 30);
    assert_true(counts[0] > 0 && counts[2] > 0);
    /* even when it is the only one not tried yet */
    up_pick p = pick(f, 0x5, 1000);
    assert_int_not_equal(p.index, 1);
    done(f, &p, false, false, 1000);

    assert_true(health_report_active(h, true, 2000, NULL));
    pick_counts(f, 0, 30, 2000, counts);
    assert_true(counts[1] > 0);
}

static void
test_pick_skips_passively_down(void **state)
{
    fixture *f = *state;
    f->up.cu.passive.failures = 2;
    f->up.cu.passive.recover_ms = 500;
    build(f);
    target_health *h = &f->u.targets[2].health;
    assert_false(health_report_passive(h, true, 1000, NULL));
    assert_true(health_report_passive(h, true, 1000, NULL));
    int counts[NT];
    pick_counts(f, 0, 20, 1200, counts);
    assert_int_equal(counts[2], 0);
    /* recover_ms later it gets traffic again */
    pick_counts(f, 0, 30, 1500, counts);
    assert_true(counts[2] > 0);
}

/* Opens target I's breaker (failures 1) at NOW. */
static void
open_breaker(fixture *f, int i, uint64_t now)
{
    up_pick p = pick_target(f, i, now);
    done(f, &p, true, false, now);
    assert_int_equal(breaker_state_at(&f->u.targets[i].breaker, now), BREAKER_OPEN);
}

static void
test_pick_skips_open_breaker(void **state)
{
    fixture *f = *state;
    f->up.cu.breaker.failures = 1;
    build(f);
    tcapture_begin();
    open_breaker(f, 0, 1000);
    tcapture_end();
    int counts[NT];
    pick_counts(f, 0, 30, 1500, counts);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1] + counts[2], 30);
    /* not even when it alone is untried */
    up_pick p = pick(f, 0x6, 1500);
    assert_int_not_equal(p.index, 0);
    done(f, &p, false, false, 1500);
    /* the cooldown over, it gets a probe */
    p = pick_target(f, 0, 2000);
    assert_int_equal(p.admit, BREAKER_PROBE);
    cancelled(f, &p, 2000);
}

static void
test_pick_prefers_untried(void **state)
{
    fixture *f = *state;
    build(f);
    for (int k = 0; k < 10; k++) {
        up_pick p = pick(f, 0x3, 1000);
        assert_int_equal(p.index, 2);
        done(f, &p, false, false, 1000);
        p = pick(f, 0x5, 1000);
        assert_int_equal(p.index, 1);
        done(f, &p, false, false, 1000);
    }
    /* every target tried: any of them, as usual */
    int counts[NT];
    pick_counts(f, ALL, 30, 1000, counts);
    for (int i = 0; i < NT; i++)
        assert_true(counts[i] > 0);
}

static void
test_pick_falls_back_to_tried(void **state)
{
    fixture *f = *state;
    f->up.cu.breaker.failures = 1;
    build(f);
    tcapture_begin();
    open_breaker(f, 2, 1000);
    tcapture_end();
    /* 0 and 1 tried, 2 (the untried one) denied: a tried one it is */
    int counts[NT];
    pick_counts(f, 0x3, 20, 1100, counts);
    assert_int_equal(counts[2], 0);
    assert_true(counts[0] > 0 && counts[1] > 0);
}

static void
test_pick_none_retry_after(void **state)
{
    fixture *f = *state;
    f->up.cu.breaker.failures = 1;
    build(f);
    tcapture_begin();
    open_breaker(f, 1, 1000); /* open until 2000: the soonest */
    open_breaker(f, 0, 1300); /* open until 2300 */
    open_breaker(f, 2, 1500); /* open until 2500 */
    tcapture_end();
    up_pick p = pick(f, 0, 1600);
    assert_int_equal(p.index, -1);
    assert_int_equal(p.admit, BREAKER_DENY);
    assert_int_equal(p.retry_after_ms, 400);
    p = pick(f, ALL, 1600);
    assert_int_equal(p.index, -1);
    assert_int_equal(p.retry_after_ms, 400);

    /* 1 half-open with its one probe slot held: 0's 150 ms are sooner
     * than 1's estimate (its cooldown) */
    up_pick probe = pick(f, 0, 2150);
    assert_int_equal(probe.index, 1);
    assert_int_equal(probe.admit, BREAKER_PROBE);
    p = pick(f, 0, 2150);
    assert_int_equal(p.index, -1);
    assert_int_equal(p.retry_after_ms, 150);
    cancelled(f, &probe, 2150);
}

static void
test_pick_none_healthy(void **state)
{
    fixture *f = *state;
    f->up.cu.health.path = "/healthz";
    f->up.cu.health.unhealthy = 1;
    build(f);
    for (int i = 0; i < NT; i++)
        assert_true(health_report_active(&f->u.targets[i].health, false, 1000, NULL));
    up_pick p = pick(f, 0, 1000);
    assert_int_equal(p.index, -1);
    assert_int_equal(p.retry_after_ms, 0); /* no breaker to say when */
    for (int i = 0; i < NT; i++)
        assert_int_equal(balancer_active(&f->u.balancer, (size_t)i), 0);
}

/* ---- done --------------------------------------------------------------- */

static void
test_done_opens_breaker(void **state)
{
    fixture *f = *state;
    f->up.cu.breaker.failures = 3;
    build(f);
    breaker *b = &f->u.targets[0].breaker;
    tcapture_begin();
    /* a success resets the run; a 5xx answer is a failure for the breaker */
    for (int k = 0; k < 2; k++) {
        up_pick p = pick_target(f, 0, 1000);
        done(f, &p, true, false, 1000);
    }
    up_pick p = pick_target(f, 0, 1000);
    done(f, &p, false, false, 1000);
    for (int k = 0; k < 2; k++) {
        p = pick_target(f, 0, 1000);
        done(f, &p, k == 0, k == 1, 1000);
    }
    const char *log = tcapture_end();
    assert_int_equal(breaker_state_at(b, 1000), BREAKER_CLOSED);
    assert_int_equal(count_lines(log), 0);

    tcapture_begin();
    p = pick_target(f, 0, 1000);
    done(f, &p, false, true, 1000);
    log = tcapture_end();
    assert_int_equal(breaker_state_at(b, 1000), BREAKER_OPEN);
    tcapture_assert_logged(log,
                           " warn [upstream] req=r-1 api: breaker of http://127.0.0.1:18101 "
                           "closed -> open: consecutive failures (3 of 3), cooldown 1000 ms\n");
    assert_int_equal(count_lines(log), 1);
    for (int i = 1; i < NT; i++)
        assert_int_equal(breaker_state_at(&f->u.targets[i].breaker, 1000), BREAKER_CLOSED);

    /* a successful probe closes it again */
    tcapture_begin();
    p = pick_target(f, 0, 2000);
    assert_int_equal(p.admit, BREAKER_PROBE);
    upstream_done(&f->u, &p, false, false, false, NULL, 2000);
    log = tcapture_end();
    assert_int_equal(breaker_state_at(b, 2000), BREAKER_CLOSED);
    tcapture_assert_logged(log, " info [upstream] api: breaker of http://127.0.0.1:18101 open -> "
                                "half-open: cooldown over");
    tcapture_assert_logged(log,
                           " info [upstream] api: breaker of http://127.0.0.1:18101 half-open -> "
                           "closed: probes succeeded");
    assert_int_equal(count_lines(log), 2);
}

static void
test_done_probe_failure_reopens(void **state)
{
    fixture *f = *state;
    f->up.cu.breaker.failures = 1;
    build(f);
    tcapture_begin();
    open_breaker(f, 1, 1000);
    up_pick p = pick_target(f, 1, 2000);
    assert_int_equal(p.admit, BREAKER_PROBE);
    done(f, &p, true, false, 2000);
    const char *log = tcapture_end();
    assert_int_equal(breaker_state_at(&f->u.targets[1].breaker, 2000), BREAKER_OPEN);
    tcapture_assert_logged(log,
                           "api: breaker of http://127.0.0.1:18102 half-open -> open: probe failed "
                           "(1 of 1), cooldown 2000 ms\n");
    tcapture_assert_logged(
        log, "api: breaker of http://127.0.0.1:18102 open -> half-open: cooldown over");
    assert_int_equal(count_lines(log), 3);
}

static void
test_done_passive_counts_5xx(void **state)
{
    fixture *f = *state;
    f->up.cu.passive.failures = 2;
    f->up.cu.passive.count_5xx = true;
    build(f);
    target_health *h = &f->u.targets[1].health;
    tcapture_begin();
    up_pick p = pick_target(f, 1, 1000);
    done(f, &p, false, true, 1000);
    p = pick_target(f, 1, 1000);
    done(f, &p, false, false, 1000); /* a success resets the run */
    p = pick_target(f, 1, 1000);
    done(f, &p, false, true, 1000);
    const char *log = tcapture_end();
    assert_true(health_is_up(h, 1000));
    assert_int_equal(count_lines(log), 0);

    tcapture_begin();
    p = pick_target(f, 1, 1000);
    done(f, &p, true, false, 1000);
    log = tcapture_end();
    assert_false(health_is_up(h, 1000));
    tcapture_assert_logged(log, " warn [upstream] req=r-1 api: target http://127.0.0.1:18102 is "
                                "unhealthy: 2 consecutive failed requests\n");

    /* recover_ms later it is up; the next outcome makes it official */
    assert_true(health_is_up(h, 11000));
    tcapture_begin();
    p = pick_target(f, 1, 11000);
    done(f, &p, false, false, 11000);
    log = tcapture_end();
    tcapture_assert_logged(
        log, " info [upstream] req=r-1 api: target http://127.0.0.1:18102 is healthy: "
             "recovered after 10000 ms\n");
}

static void
test_done_passive_ignores_5xx(void **state)
{
    fixture *f = *state;
    f->up.cu.passive.failures = 2;
    f->up.cu.passive.count_5xx = false;
    build(f);
    target_health *h = &f->u.targets[0].health;
    tcapture_begin();
    for (int k = 0; k < 5; k++) {
        up_pick p = pick_target(f, 0, 1000);
        done(f, &p, false, true, 1000);
    }
    const char *log = tcapture_end();
    assert_true(health_is_up(h, 1000));
    assert_int_equal(count_lines(log), 0);
    /* transport failures still count; a 5xx is a success for passive
     * health then, so it ends their run */
    tcapture_begin();
    up_pick p = pick_target(f, 0, 1000);
    done(f, &p, true, false, 1000);
    p = pick_target(f, 0, 1000);
    done(f, &p, false, true, 1000);
    p = pick_target(f, 0, 1000);
    done(f, &p, true, false, 1000);
    assert_true(health_is_up(h, 1000));
    p = pick_target(f, 0, 1000);
    done(f, &p, true, false, 1000);
    log = tcapture_end();
    assert_false(health_is_up(h, 1000));
    tcapture_assert_logged(log,
                           "api: target http://127.0.0.1:18101 is unhealthy: 2 consecutive failed "
                           "requests\n");
}

static void
test_done_cancelled_counts_nothing(void **state)
{
    fixture *f = *state;
    f->up.cu.breaker.failures = 1;
    f->up.cu.passive.failures = 1;
    build(f);
    tcapture_begin();
    up_pick p = pick_target(f, 0, 1000);
    cancelled(f, &p, 1000);
    const char *log = tcapture_end();
    assert_int_equal(breaker_state_at(&f->u.targets[0].breaker, 1000), BREAKER_CLOSED);
    assert_true(health_is_up(&f->u.targets[0].health, 1000));
    assert_int_equal(balancer_active(&f->u.balancer, 0), 0);
    assert_int_equal(count_lines(log), 0);
}

static void
test_done_cancelled_releases_probe(void **state)
{
    fixture *f = *state;
    f->up.cu.breaker.failures = 1;
    f->up.cu.breaker.half_open_probes = 1;
    build(f);
    breaker *b = &f->u.targets[0].breaker;
    tcapture_begin();
    open_breaker(f, 0, 1000);
    tcapture_end();
    up_pick probe = pick_target(f, 0, 2000);
    assert_int_equal(probe.admit, BREAKER_PROBE);
    /* its one slot is held: a try that would rather go to 0 goes elsewhere */
    up_pick p = pick(f, 0x6, 2001);
    assert_int_not_equal(p.index, 0);
    done(f, &p, false, false, 2001);

    tcapture_begin();
    cancelled(f, &probe, 2002);
    const char *log = tcapture_end();
    assert_int_equal(count_lines(log), 0);
    assert_int_equal(breaker_state_at(b, 2002), BREAKER_HALF_OPEN);
    /* the slot is free again */
    probe = pick_target(f, 0, 2003);
    assert_int_equal(probe.admit, BREAKER_PROBE);
    tcapture_begin();
    done(f, &probe, false, false, 2003);
    log = tcapture_end();
    assert_int_equal(breaker_state_at(b, 2003), BREAKER_CLOSED);
    tcapture_assert_logged(log, "half-open -> closed");
}

/* ---- least_conn --------------------------------------------------------- */

static void
test_least_conn_in_flight(void **state)
{
    fixture *f = *state;
    f->up.cu.balance = CONFIG_BALANCE_LEAST_CONN;
    build(f);
    up_pick p[NT + 1];
    bool seen[NT] = {false};
    for (int k = 0; k < NT; k++) {
        p[k] = pick(f, 0, 1000);
        assert_true(p[k].index >= 0);
        assert_false(seen[p[k].index]); /* each has one in flight: the others are chosen */
        seen[p[k].index] = true;
    }
    for (int i = 0; i < NT; i++)
        assert_int_equal(balancer_active(&f->u.balancer, (size_t)i), 1);
    /* the middle one ends: it is the least loaded now */
    done(f, &p[1], false, false, 1000);
    assert_int_equal(balancer_active(&f->u.balancer, (size_t)p[1].index), 0);
    p[NT] = pick(f, 0, 1000);
    assert_int_equal(p[NT].index, p[1].index);
    /* failures and cancellations end tries as well */
    done(f, &p[0], true, false, 1000);
    cancelled(f, &p[2], 1000);
    done(f, &p[NT], false, true, 1000);
    for (int i = 0; i < NT; i++)
        assert_int_equal(balancer_active(&f->u.balancer, (size_t)i), 0);
    /* a failed pick begins nothing and its done ends nothing */
    up_pick none = {.index = -1};
    done(f, &none, true, false, 1000);
    for (int i = 0; i < NT; i++)
        assert_int_equal(balancer_active(&f->u.balancer, (size_t)i), 0);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_build),
        T(test_build_error),
        T(test_build_bad_settings),
        T(test_pick_all_healthy),
        T(test_pick_skips_actively_down),
        T(test_pick_skips_passively_down),
        T(test_pick_skips_open_breaker),
        T(test_pick_prefers_untried),
        T(test_pick_falls_back_to_tried),
        T(test_pick_none_retry_after),
        T(test_pick_none_healthy),
        T(test_done_opens_breaker),
        T(test_done_probe_failure_reopens),
        T(test_done_passive_counts_5xx),
        T(test_done_passive_ignores_5xx),
        T(test_done_cancelled_counts_nothing),
        T(test_done_cancelled_releases_probe),
        T(test_least_conn_in_flight),
    };
#undef T
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    origin_registry_free();
    return failed;
}
