/* test_loop.c -- unit tests for core/loop.c: io readiness, timers, prepare
 * hooks, cross-thread posting and stopping. Each test arms a guard timer so a
 * lost wake-up fails instead of hanging. Timing bounds are loose enough for
 * sanitizer builds; they check that the loop sleeps and wakes, not latency. */
#include "loop.h"

#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define GUARD_MS 5000
#define SLACK_MS 250 /* how late a wake-up may be under sanitizers */

static uint64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
guard_fired(loop_timer *t)
{
    (void)t;
    fail_msg("the loop did not stop within %d ms", GUARD_MS);
}

static loop *
new_loop(loop_timer *guard)
{
    loop *lp = NULL;
    assert_int_equal(loop_new(&lp), KAPI_OK);
    assert_non_null(lp);
    loop_timer_init(guard, guard_fired, NULL);
    loop_timer_start(lp, guard, GUARD_MS);
    return lp;
}

static void
make_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void
stop_timer_fn(loop_timer *t)
{
    loop_stop(t->data);
}

/* ---- io ---------------------------------------------------------------- */

typedef struct io_ctx {
    loop *lp;
    int calls;
    uint32_t events;
    char byte;
} io_ctx;

static void
on_readable(loop_io *io, uint32_t events)
{
    io_ctx *c = io->data;
    c->calls++;
    c->events = events;
    assert_int_equal(read(io->fd, &c->byte, 1), 1);
    loop_stop(c->lp);
}

static void
write_byte_fn(loop_timer *t)
{
    assert_int_equal(write(*(int *)t->data, "x", 1), 1);
}

static void
test_io_pipe(void **state)
{
    (void)state;
    loop_timer guard, writer, stopper;
    loop *lp = new_loop(&guard);
    int fds[2];
    make_pipe(fds);
    io_ctx c = {.lp = lp};
    loop_io io = {.fd = fds[0], .fn = on_readable, .data = &c};

    assert_int_equal(loop_io_add(lp, &io, EPOLLIN), KAPI_OK);
    assert_int_equal(loop_io_add(lp, &io, EPOLLIN), KAPI_ESTATE);
    loop_timer_init(&writer, write_byte_fn, &fds[1]);
    loop_timer_start(lp, &writer, 10);
    assert_int_equal(loop_run(lp), KAPI_OK);
    assert_int_equal(c.calls, 1);
    assert_true(c.events & EPOLLIN);
    assert_int_equal(c.byte, 'x');

    /* Removed: a readable fd no longer reaches FN. */
    assert_int_equal(loop_io_remove(lp, &io), KAPI_OK);
    assert_int_equal(loop_io_remove(lp, &io), KAPI_ESTATE);
    assert_int_equal(write(fds[1], "y", 1), 1);
    loop_timer_init(&stopper, stop_timer_fn, lp);
    loop_timer_start(lp, &stopper, 20);
    assert_int_equal(loop_run(lp), KAPI_OK);
    assert_int_equal(c.calls, 1);

    loop_free(lp);
    close(fds[0]);
    close(fds[1]);
}

static void
on_writable(loop_io *io, uint32_t events)
{
    io_ctx *c = io->data;
    c->calls++;
    c->events = events;
    loop_stop(c->lp);
}

static void
test_io_modify(void **state)
{
    (void)state;
    loop_timer guard, stopper;
    loop *lp = new_loop(&guard);
    int fds[2];
    make_pipe(fds);
    io_ctx c = {.lp = lp};
    loop_io io = {.fd = fds[1], .fn = on_writable, .data = &c};

    assert_int_equal(loop_io_modify(lp, &io, EPOLLOUT), KAPI_ESTATE);
    assert_int_equal(loop_io_add(lp, &io, EPOLLIN), KAPI_OK);
    loop_timer_init(&stopper, stop_timer_fn, lp);
    loop_timer_start(lp, &stopper, 20);
    assert_int_equal(loop_run(lp), KAPI_OK);
    assert_int_equal(c.calls, 0); /* a pipe's write end never reads */

    assert_int_equal(loop_io_modify(lp, &io, EPOLLOUT), KAPI_OK);
    assert_int_equal(loop_run(lp), KAPI_OK);
    assert_int_equal(c.calls, 1);
    assert_true(c.events & EPOLLOUT);

    loop_free(lp);
    close(fds[0]);
    close(fds[1]);
}

/* Two readable pipes in one batch: whichever watcher runs first removes the
 * other, which must not run afterwards (and, FREE_OTHER, may be freed). */
typedef struct batch_ctx {
    loop *lp;
    loop_io *io[2];
    loop_io *removed; /* not freed: freed by the test */
    int calls;
    bool free_other;
} batch_ctx;

static void
must_not_run(loop_io *io, uint32_t events)
{
    (void)io;
    (void)events;
    fail_msg("a watcher removed earlier in the batch was dispatched");
}

static void
on_batch(loop_io *io, uint32_t events)
{
    (void)events;
    batch_ctx *c = io->data;
    c->calls++;
    int other = c->io[0] == io ? 1 : 0;
    assert_int_equal(loop_io_remove(c->lp, c->io[other]), KAPI_OK);
    if (c->free_other) {
        free(c->io[other]);
    } else {
        c->io[other]->fn = must_not_run;
        c->removed = c->io[other];
    }
    c->io[other] = NULL;
    loop_stop(c->lp); /* the rest of the batch is still dispatched */
}

static void
run_remove_in_batch(bool free_other)
{
    loop_timer guard;
    loop *lp = new_loop(&guard);
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    batch_ctx c = {.lp = lp, .free_other = free_other};
    c.io[0] = malloc(sizeof(loop_io));
    c.io[1] = malloc(sizeof(loop_io));
    assert_non_null(c.io[0]);
    assert_non_null(c.io[1]);
    *c.io[0] = (loop_io){.fd = a[0], .fn = on_batch, .data = &c};
    *c.io[1] = (loop_io){.fd = b[0], .fn = on_batch, .data = &c};
    assert_int_equal(loop_io_add(lp, c.io[0], EPOLLIN), KAPI_OK);
    assert_int_equal(loop_io_add(lp, c.io[1], EPOLLIN), KAPI_OK);
    assert_int_equal(write(a[1], "a", 1), 1);
    assert_int_equal(write(b[1], "b", 1), 1);

    assert_int_equal(loop_run(lp), KAPI_OK);
    assert_int_equal(c.calls, 1);

    loop_free(lp);
    free(c.io[0]);
    free(c.io[1]);
    free(c.removed);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

static void
test_remove_in_batch(void **state)
{
    (void)state;
    run_remove_in_batch(false);
}

static void
test_remove_in_batch_and_free(void **state)
{
    (void)state;
    run_remove_in_batch(true);
}

/* ---- timers ------------------------------------------------------------ */

typedef struct order_ctx {
    loop *lp;
    int fired[8];
    int nfired;
    bool late;
    bool active_in_fn;
} order_ctx;

typedef struct order_timer {
    loop_timer t;
    order_ctx *c;
    int id;
    bool last;
} order_timer;

static void
order_fn(loop_timer *t)
{
    order_timer *ot = (order_timer *)t;
    order_ctx *c = ot->c;
    c->fired[c->nfired++] = ot->id;
    c->late |= loop_now_ms(c->lp) < t->deadline_ms;
    c->active_in_fn |= loop_timer_active(t);
    if (ot->last)
        loop_stop(c->lp);
}

static void
test_timers_order_and_stop(void **state)
{
    (void)state;
    loop_timer guard;
    order_ctx c = {.lp = new_loop(&guard)};
    loop *lp = c.lp;
    /* Deadlines count from the loop's cached clock, which lags the wall. */
    uint64_t t0 = loop_now_ms(lp);
    order_timer ts[5];
    static const uint64_t ms[5] = {30, 10, 20, 15, 1000};
    for (int i = 0; i < 5; i++) {
        ts[i] = (order_timer){.c = &c, .id = i, .last = i == 0};
        loop_timer_init(&ts[i].t, order_fn, NULL);
        assert_false(loop_timer_active(&ts[i].t));
        loop_timer_start(lp, &ts[i].t, ms[i]);
        assert_true(loop_timer_active(&ts[i].t));
    }
    loop_timer_stop(lp, &ts[3].t);
    loop_timer_stop(lp, &ts[3].t); /* inactive: no-op */
    assert_false(loop_timer_active(&ts[3].t));
    loop_timer_start(lp, &ts[4].t, 5); /* re-armed earlier while active */

    assert_int_equal(loop_run(lp), KAPI_OK);
    assert_true(wall_ms() - t0 >= 30);
    assert_int_equal(c.nfired, 4);
    assert_int_equal(c.fired[0], 4);
    assert_int_equal(c.fired[1], 1);
    assert_int_equal(c.fired[2], 2);
    assert_int_equal(c.fired[3], 0);
    assert_false(c.late);
    assert_false(c.active_in_fn);
    loop_free(lp);
}

typedef struct restart_ctx {
    loop *lp;
    loop_prepare iter_hook;
    unsigned iterations;
    unsigned fire_iter[16];
    int fires;
    loop_timer victim; /* due with the restarter, stopped by it */
    bool victim_fired;
} restart_ctx;

static int
count_iterations(loop_prepare *p)
{
    restart_ctx *c = p->data;
    c->iterations++;
    return -1;
}

static void
restart_fn(loop_timer *t)
{
    restart_ctx *c = t->data;
    loop_timer_stop(c->lp, &c->victim);
    c->fire_iter[c->fires++] = c->iterations;
    if (c->fires < 5)
        loop_timer_start(c->lp, t, 0);
    else
        loop_stop(c->lp);
}

static void
victim_fn(loop_timer *t)
{
    restart_ctx *c = t->data;
    c->victim_fired = true;
}

static void
test_timer_restart_from_fn(void **state)
{
    (void)state;
    loop_timer guard, t;
    restart_ctx c = {.lp = new_loop(&guard)};
    c.iter_hook = (loop_prepare){.fn = count_iterations, .data = &c};
    loop_prepare_add(c.lp, &c.iter_hook);
    loop_timer_init(&t, restart_fn, &c);
    loop_timer_init(&c.victim, victim_fn, &c);
    loop_timer_start(c.lp, &t, 5);
    loop_timer_start(c.lp, &c.victim, 5); /* same deadline, started later */

    assert_int_equal(loop_run(c.lp), KAPI_OK);
    assert_int_equal(c.fires, 5);
    assert_false(c.victim_fired);
    /* A 0 ms restart fires once per iteration, never twice in one round. */
    for (int i = 1; i < c.fires; i++)
        assert_true(c.fire_iter[i] > c.fire_iter[i - 1]);
    loop_free(c.lp);
}

#define MANY 1000

typedef struct many_timer {
    loop_timer t;
    uint64_t stamp; /* start order */
    int fired;
    bool stopped;
} many_timer;

typedef struct many_ctx {
    loop *lp;
    int expected;
    int nfired;
    uint64_t prev_deadline;
    uint64_t prev_stamp;
    bool unsorted;
    bool late;
} many_ctx;

static many_ctx *many_c;

static void
many_fn(loop_timer *t)
{
    many_timer *mt = (many_timer *)t;
    many_ctx *c = many_c;
    mt->fired++;
    if (t->deadline_ms < c->prev_deadline ||
        (t->deadline_ms == c->prev_deadline && mt->stamp < c->prev_stamp))
        c->unsorted = true;
    c->late |= loop_now_ms(c->lp) < t->deadline_ms;
    c->prev_deadline = t->deadline_ms;
    c->prev_stamp = mt->stamp;
    if (++c->nfired == c->expected)
        loop_stop(c->lp);
}

static void
test_many_timers_fire_sorted(void **state)
{
    (void)state;
    loop_timer guard;
    many_ctx c = {.lp = new_loop(&guard)};
    many_c = &c;
    many_timer *ts = calloc(MANY, sizeof *ts);
    assert_non_null(ts);
    uint64_t stamp = 0;
    srand(42);
    for (int i = 0; i < MANY; i++) {
        loop_timer_init(&ts[i].t, many_fn, NULL);
        ts[i].stamp = stamp++;
        loop_timer_start(c.lp, &ts[i].t, (uint64_t)(rand() % 100));
    }
    /* Stop some and re-arm others, so removals hit the middle of the heap. */
    for (int i = 0; i < MANY; i++) {
        if (i % 7 == 0) {
            loop_timer_stop(c.lp, &ts[i].t);
            ts[i].stopped = true;
        } else if (i % 5 == 0) {
            ts[i].stamp = stamp++;
            loop_timer_start(c.lp, &ts[i].t, (uint64_t)(rand() % 100));
        }
    }
    for (int i = 0; i < MANY; i++)
        c.expected += !ts[i].stopped;

    assert_int_equal(loop_run(c.lp), KAPI_OK);
    assert_int_equal(c.nfired, c.expected);
    assert_false(c.unsorted);
    assert_false(c.late);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(ts[i].fired, ts[i].stopped ? 0 : 1);
        assert_false(loop_timer_active(&ts[i].t));
    }
    free(ts);
    loop_free(c.lp);
}

/* ---- prepare hooks ----------------------------------------------------- */

typedef struct prep_ctx {
    loop *lp;
    uint64_t at[8];
    int calls;
} prep_ctx;

static int
limited_sleep(loop_prepare *p)
{
    prep_ctx *c = p->data;
    c->at[c->calls++] = wall_ms();
    if (c->calls == 6)
        loop_stop(c->lp);
    return 30;
}

static int
no_limit(loop_prepare *p)
{
    (void)p;
    return -1;
}

static void
test_prepare_timeout_respected(void **state)
{
    (void)state;
    loop_timer guard;
    prep_ctx c = {.lp = new_loop(&guard)};
    loop_prepare unlimited = {.fn = no_limit};
    loop_prepare limited = {.fn = limited_sleep, .data = &c};
    loop_prepare_add(c.lp, &unlimited);
    loop_prepare_add(c.lp, &limited);

    assert_int_equal(loop_run(c.lp), KAPI_OK);
    assert_int_equal(c.calls, 6);
    for (int i = 1; i < c.calls; i++) {
        uint64_t slept = c.at[i] - c.at[i - 1];
        assert_true(slept >= 29); /* ms clocks truncate */
        assert_true(slept < 30 + SLACK_MS);
    }
    loop_free(c.lp);
}

typedef struct hooks_ctx {
    loop *lp;
    loop_prepare h[4];
    char trace[64];
    int len;
    int rounds;
} hooks_ctx;

static int
trace_hook(loop_prepare *p)
{
    hooks_ctx *c = p->data;
    int id = (int)(p - c->h);
    c->trace[c->len++] = (char)('a' + id);
    if (id == 0 && ++c->rounds == 2) {
        loop_prepare_remove(c->lp, &c->h[1]); /* the next one, mid-round */
        loop_prepare_add(c->lp, &c->h[3]);    /* runs this round too */
    }
    if (id == 2 && c->rounds == 3) {
        loop_prepare_remove(c->lp, p); /* itself */
        loop_stop(c->lp);
    }
    return c->rounds < 3 ? 0 : 1000; /* 0: the loop must not sleep */
}

static void
test_prepare_order_and_changes(void **state)
{
    (void)state;
    loop_timer guard;
    hooks_ctx c = {.lp = new_loop(&guard)};
    for (int i = 0; i < 4; i++)
        c.h[i] = (loop_prepare){.fn = trace_hook, .data = &c};
    for (int i = 0; i < 3; i++)
        loop_prepare_add(c.lp, &c.h[i]);

    uint64_t t0 = wall_ms();
    assert_int_equal(loop_run(c.lp), KAPI_OK);
    assert_true(wall_ms() - t0 < SLACK_MS);
    c.trace[c.len] = '\0';
    assert_string_equal(c.trace, "abc"
                                 "acd"
                                 "acd");
    loop_free(c.lp);
}

/* ---- tasks and stopping ------------------------------------------------ */

#define POSTERS 4
#define PER_POSTER 10000

typedef struct post_item {
    loop_task task;
    int poster;
    int seq;
    int runs;
} post_item;

typedef struct post_ctx {
    loop *lp;
    pthread_t loop_thread;
    pthread_t posters[POSTERS];
    post_item items[POSTERS][PER_POSTER];
    int next_seq[POSTERS];
    int total;
    bool wrong_thread;
    bool out_of_order;
} post_ctx;

static void
post_item_fn(loop_task *task)
{
    post_item *it = (post_item *)task;
    post_ctx *c = task->data;
    c->wrong_thread |= !pthread_equal(pthread_self(), c->loop_thread);
    c->out_of_order |= it->seq != c->next_seq[it->poster];
    c->next_seq[it->poster] = it->seq + 1;
    it->runs++;
    c->total++;
}

typedef struct poster_arg {
    post_ctx *c;
    int id;
} poster_arg;

static void *
poster_main(void *arg)
{
    poster_arg *pa = arg;
    for (int i = 0; i < PER_POSTER; i++) {
        post_item *it = &pa->c->items[pa->id][i];
        *it = (post_item){.task = {.fn = post_item_fn, .data = pa->c}, .poster = pa->id, .seq = i};
        loop_post(pa->c->lp, &it->task);
        if (i % 1000 == 999)
            usleep(200); /* let the loop fall asleep between bursts */
    }
    return NULL;
}

static void *
stopper_main(void *arg)
{
    post_ctx *c = arg;
    poster_arg args[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        args[i] = (poster_arg){.c = c, .id = i};
        if (pthread_create(&c->posters[i], NULL, poster_main, &args[i]) != 0)
            abort();
    }
    for (int i = 0; i < POSTERS; i++)
        pthread_join(c->posters[i], NULL);
    loop_stop(c->lp);
    return NULL;
}

static void
test_post_from_threads(void **state)
{
    (void)state;
    loop_timer guard;
    post_ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->lp = new_loop(&guard);
    c->loop_thread = pthread_self();
    pthread_t stopper;
    assert_int_equal(pthread_create(&stopper, NULL, stopper_main, c), 0);

    assert_int_equal(loop_run(c->lp), KAPI_OK);
    assert_int_equal(pthread_join(stopper, NULL), 0);
    assert_int_equal(c->total, POSTERS * PER_POSTER);
    assert_false(c->wrong_thread);
    assert_false(c->out_of_order);
    for (int p = 0; p < POSTERS; p++) {
        for (int i = 0; i < PER_POSTER; i++)
            assert_int_equal(c->items[p][i].runs, 1);
    }
    loop_free(c->lp);
    free(c);
}

/* Ping-pong: each post reaches a loop that is asleep or falling asleep with
 * no timer but the guard, so one lost wake-up fails the test. */
#define ROUNDS 2000

typedef struct pong_ctx {
    loop *lp;
    loop_task task;
    sem_t go;
    int rounds;
} pong_ctx;

static void
pong_fn(loop_task *task)
{
    pong_ctx *c = task->data;
    if (++c->rounds == ROUNDS)
        loop_stop(c->lp);
    else
        sem_post(&c->go);
}

static void *
pinger_main(void *arg)
{
    pong_ctx *c = arg;
    for (int i = 0; i < ROUNDS; i++) {
        while (sem_wait(&c->go) != 0) {
        }
        loop_post(c->lp, &c->task);
    }
    return NULL;
}

static void
test_post_wakes_sleeping_loop(void **state)
{
    (void)state;
    loop_timer guard;
    pong_ctx c = {.lp = new_loop(&guard)};
    c.task = (loop_task){.fn = pong_fn, .data = &c};
    assert_int_equal(sem_init(&c.go, 0, 1), 0);
    pthread_t pinger;
    assert_int_equal(pthread_create(&pinger, NULL, pinger_main, &c), 0);

    assert_int_equal(loop_run(c.lp), KAPI_OK);
    assert_int_equal(pthread_join(pinger, NULL), 0);
    assert_int_equal(c.rounds, ROUNDS);
    sem_destroy(&c.go);
    loop_free(c.lp);
}

typedef struct repost_ctx {
    loop *lp;
    loop_task task;
    unsigned iterations;
    unsigned last_iter;
    int runs;
    bool same_iteration;
    bool stopping;
} repost_ctx;

static void
stop_repost_fn(loop_timer *t)
{
    repost_ctx *c = t->data;
    c->stopping = true;
    loop_stop(c->lp);
}

static int
count_repost_iterations(loop_prepare *p)
{
    ((repost_ctx *)p->data)->iterations++;
    return -1;
}

static void
repost_fn(loop_task *task)
{
    repost_ctx *c = task->data;
    /* Only loop_run's last pass after loop_stop may run it twice a round. */
    c->same_iteration |= !c->stopping && c->runs > 0 && c->iterations == c->last_iter;
    c->last_iter = c->iterations;
    c->runs++;
    loop_post(c->lp, task); /* forever: must not starve the stop timer */
}

static void
test_task_repost_does_not_starve(void **state)
{
    (void)state;
    loop_timer guard, stopper;
    repost_ctx c = {.lp = new_loop(&guard)};
    loop_prepare hook = {.fn = count_repost_iterations, .data = &c};
    loop_prepare_add(c.lp, &hook);
    c.task = (loop_task){.fn = repost_fn, .data = &c};
    loop_post(c.lp, &c.task);
    loop_timer_init(&stopper, stop_repost_fn, &c);
    loop_timer_start(c.lp, &stopper, 20);

    assert_int_equal(loop_run(c.lp), KAPI_OK);
    assert_true(c.runs > 1);
    assert_false(c.same_iteration);
    loop_free(c.lp); /* drops the pending repost */
}

typedef struct stop_ctx {
    loop *lp;
    uint64_t stopped_at;
} stop_ctx;

static void *
late_stopper_main(void *arg)
{
    stop_ctx *c = arg;
    usleep(50 * 1000);
    c->stopped_at = wall_ms();
    loop_stop(c->lp);
    return NULL;
}

static int
count_calls(loop_prepare *p)
{
    (*(int *)p->data)++;
    return -1;
}

static void
test_stop_from_thread_while_sleeping(void **state)
{
    (void)state;
    loop_timer guard;
    stop_ctx c = {.lp = new_loop(&guard)};
    int iterations = 0;
    loop_prepare hook = {.fn = count_calls, .data = &iterations};
    loop_prepare_add(c.lp, &hook);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_stopper_main, &c), 0);

    assert_int_equal(loop_run(c.lp), KAPI_OK);
    uint64_t returned_at = wall_ms();
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(returned_at - c.stopped_at < SLACK_MS);
    assert_true(iterations <= 2); /* it slept rather than spun */

    /* A stop with no loop_run in progress ends the next one after one round. */
    iterations = 0;
    loop_stop(c.lp);
    assert_int_equal(loop_run(c.lp), KAPI_OK);
    assert_int_equal(iterations, 1);
    loop_free(c.lp);
}

/* A thread posts then stops while the loop runs a task of the same pass:
 * the post lands after the loop took its tasks, yet runs before loop_run
 * returns. */
typedef struct late_post_ctx {
    loop *lp;
    loop_task blocker;
    loop_task late;
    sem_t to_helper;
    sem_t to_loop;
    int late_runs;
} late_post_ctx;

static void
late_fn(loop_task *task)
{
    ((late_post_ctx *)task->data)->late_runs++;
}

static void
blocker_fn(loop_task *task)
{
    late_post_ctx *c = task->data;
    sem_post(&c->to_helper);
    while (sem_wait(&c->to_loop) != 0) {
    }
}

static void *
late_poster_main(void *arg)
{
    late_post_ctx *c = arg;
    while (sem_wait(&c->to_helper) != 0) {
    }
    loop_post(c->lp, &c->late);
    loop_stop(c->lp);
    sem_post(&c->to_loop);
    return NULL;
}

static void
test_stop_runs_tasks_posted_before(void **state)
{
    (void)state;
    loop_timer guard;
    late_post_ctx c = {.lp = new_loop(&guard)};
    c.blocker = (loop_task){.fn = blocker_fn, .data = &c};
    c.late = (loop_task){.fn = late_fn, .data = &c};
    assert_int_equal(sem_init(&c.to_helper, 0, 0), 0);
    assert_int_equal(sem_init(&c.to_loop, 0, 0), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_poster_main, &c), 0);
    loop_post(c.lp, &c.blocker);

    assert_int_equal(loop_run(c.lp), KAPI_OK);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.late_runs, 1);
    sem_destroy(&c.to_helper);
    sem_destroy(&c.to_loop);
    loop_free(c.lp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_pipe),
        cmocka_unit_test(test_io_modify),
        cmocka_unit_test(test_remove_in_batch),
        cmocka_unit_test(test_remove_in_batch_and_free),
        cmocka_unit_test(test_timers_order_and_stop),
        cmocka_unit_test(test_timer_restart_from_fn),
        cmocka_unit_test(test_many_timers_fire_sorted),
        cmocka_unit_test(test_prepare_timeout_respected),
        cmocka_unit_test(test_prepare_order_and_changes),
        cmocka_unit_test(test_post_from_threads),
        cmocka_unit_test(test_post_wakes_sleeping_loop),
        cmocka_unit_test(test_task_repost_does_not_starve),
        cmocka_unit_test(test_stop_from_thread_while_sleeping),
        cmocka_unit_test(test_stop_runs_tasks_posted_before),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
