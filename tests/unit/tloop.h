/* tloop.h -- drives a real core/loop.h loop from a unit test: run until
 * something stops it, until a condition holds, or for a while, each under
 * a guard timer that fails the test instead of letting it hang.
 *
 * It does not own the loop (the test creates and frees it), count the
 * test's callbacks nor decide when they stop the loop; it only runs the
 * loop on the calling thread, which must be the loop's own. */
#ifndef KAPI_TESTS_TLOOP_H
#define KAPI_TESTS_TLOOP_H

#include <stdbool.h>

#include "loop.h"

#define TLOOP_GUARD_MS 5000 /* a run that lasts longer fails the test */

/* A condition on the test's state; DATA is the one given with it. */
typedef bool (*tloop_pred)(void *data);

/* Lives as long as the test's loop; no timer of it is active between
 * runs, so the loop may be freed then. */
typedef struct tloop {
    loop *lp;
    loop_timer guard, poll;
    tloop_pred pred;
    void *data;
    bool held; /* the poll timer saw PRED hold */
} tloop;

/* Makes T drive LP (borrowed for T's life). */
void tloop_init(tloop *t, loop *lp);

/* Runs the loop until someone calls loop_stop: the test's callbacks
 * decide when it is done. */
void tloop_run(tloop *t);

/* Runs the loop until PRED(DATA) holds, checked right away and then every
 * ms: a loop_stop by the test's callbacks meanwhile does not end the run. */
void tloop_run_until(tloop *t, tloop_pred pred, void *data);

/* Runs the loop for about MS, however often the test's callbacks stop
 * it meanwhile (to show that nothing happens, or to let time pass). */
void tloop_run_for(tloop *t, unsigned ms);

#endif
