/* tloop.c -- the test loop driver of tloop.h: a guard timer that fails the
 * test, and a poll timer that stops the loop once the test's condition
 * holds or its time is up. It does not create, free nor stop the loop
 * otherwise. */
#include "tloop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void
guard_fired(loop_timer *lt)
{
    (void)lt;
    fail_msg("the loop did not stop within the guard time");
}

static void
poll_fired(loop_timer *lt)
{
    tloop *t = lt->data;
    if (t->pred(t->data)) {
        t->held = true;
        loop_stop(t->lp);
    } else {
        loop_timer_start(t->lp, lt, 1);
    }
}

static bool
always(void *data)
{
    (void)data;
    return true;
}

void
tloop_init(tloop *t, loop *lp)
{
    t->lp = lp;
    loop_timer_init(&t->guard, guard_fired, t);
    loop_timer_init(&t->poll, poll_fired, t);
}

void
tloop_run(tloop *t)
{
    loop_timer_start(t->lp, &t->guard, TLOOP_GUARD_MS);
    assert_int_equal(loop_run(t->lp), KAPI_OK);
    loop_timer_stop(t->lp, &t->guard);
}

/* Runs, under one guard, until the poll timer (first due in FIRST_MS)
 * sees PRED hold; a stop by anyone else only starts another loop_run. */
static void
run_polling(tloop *t, tloop_pred pred, void *data, unsigned first_ms)
{
    t->pred = pred;
    t->data = data;
    t->held = false;
    loop_timer_start(t->lp, &t->poll, first_ms);
    loop_timer_start(t->lp, &t->guard, TLOOP_GUARD_MS);
    while (!t->held)
        assert_int_equal(loop_run(t->lp), KAPI_OK);
    loop_timer_stop(t->lp, &t->guard);
    loop_timer_stop(t->lp, &t->poll);
}

void
tloop_run_until(tloop *t, tloop_pred pred, void *data)
{
    run_polling(t, pred, data, 0);
}

void
tloop_run_for(tloop *t, unsigned ms)
{
    run_polling(t, always, NULL, ms);
}
