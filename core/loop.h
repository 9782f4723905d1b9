/* loop.h -- one epoll event loop per worker thread: fd readiness, timers,
 * prepare hooks that run before each wait, and tasks posted from any thread
 * (an eventfd wakes the loop).
 *
 * Everything but loop_post and loop_stop must be called on the loop's own
 * thread. The loop owns no memory of its users: io watchers, timers,
 * prepare hooks and tasks are structs the caller embeds and keeps alive
 * while registered. It knows nothing of HTTP (server.c) or requests. */
#ifndef KAPI_LOOP_H
#define KAPI_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kapi/status.h>

typedef struct loop loop;

/* An fd watcher. FN runs on the loop thread with the epoll events. */
typedef struct loop_io {
    int fd;
    void (*fn)(struct loop_io *io, uint32_t events);
    void *data; /* the user's */
} loop_io;

/* A one-shot timer. FN runs on the loop thread when the deadline passes;
 * the timer is inactive when FN runs and may be restarted from FN. Timers
 * due in the same iteration fire in deadline order, ties in start order. */
typedef struct loop_timer {
    uint64_t deadline_ms; /* monotonic ms, set by loop_timer_start */
    size_t heap_index;    /* private: position in the loop's heap, SIZE_MAX when inactive */
    void (*fn)(struct loop_timer *t);
    void *data;
} loop_timer;

/* A hook run before every wait. FN returns the longest the loop may sleep
 * in ms (-1 or any negative: no limit from this hook, 0: do not sleep).
 * FN may add or remove hooks, itself included; one added runs this round. */
typedef struct loop_prepare {
    int (*fn)(struct loop_prepare *p);
    void *data;
    struct loop_prepare *next; /* private */
} loop_prepare;

/* A task for the loop thread, posted from any thread. FN runs once on the
 * loop thread; the task memory is the poster's until FN starts. */
typedef struct loop_task {
    void (*fn)(struct loop_task *task);
    void *data;
    struct loop_task *next; /* private */
} loop_task;

/* Creates a loop (epoll fd, eventfd). *OUT is freed with loop_free. */
kapi_status loop_new(loop **out);
/* Frees the loop; pending tasks are dropped without running. NULL is a no-op. */
void loop_free(loop *lp);

/* Watches IO->fd for EVENTS (EPOLLIN, EPOLLOUT, EPOLLET…). IO is borrowed
 * until loop_io_remove. KAPI_ESTATE: already watched (add) / not watched. */
kapi_status loop_io_add(loop *lp, loop_io *io, uint32_t events);
/* Events already reported in the current batch are still dispatched. */
kapi_status loop_io_modify(loop *lp, loop_io *io, uint32_t events);
/* Stops watching; the fd is not closed (remove before closing it). Safe from
 * any callback, IO's own included: once it returns IO is never dispatched
 * again, even if ready later in the current batch, and may be freed. */
kapi_status loop_io_remove(loop *lp, loop_io *io);

/* Initializes T (inactive) with FN and DATA. */
void loop_timer_init(loop_timer *t, void (*fn)(loop_timer *t), void *data);
/* (Re)arms T to fire TIMEOUT_MS after loop_now_ms. Started from a timer FN,
 * even with 0 ms, it fires in the next iteration, not the current one.
 * Never fails: the heap grows by doubling; the process aborts if it cannot. */
void loop_timer_start(loop *lp, loop_timer *t, uint64_t timeout_ms);
/* Disarms T; no-op when inactive. */
void loop_timer_stop(loop *lp, loop_timer *t);
bool loop_timer_active(const loop_timer *t);

/* Adds a prepare hook (run in the order added). */
void loop_prepare_add(loop *lp, loop_prepare *p);
void loop_prepare_remove(loop *lp, loop_prepare *p);

/* Queues TASK to run on the loop thread and wakes the loop. Any thread,
 * also a signal handler; never fails, never allocates. Tasks run in the
 * order posted; one posted by a task runs in the next iteration. */
void loop_post(loop *lp, loop_task *task);

/* The loop's cached monotonic clock in ms (updated after each wait). */
uint64_t loop_now_ms(const loop *lp);

/* Runs until loop_stop: waits, dispatches io, due timers and posted tasks,
 * then the prepare hooks. Returns KAPI_OK after loop_stop, KAPI_EIO if
 * epoll fails. */
kapi_status loop_run(loop *lp);
/* Makes loop_run return after the current iteration plus one last pass
 * over the pending tasks, so every task posted before loop_stop (in the
 * stopping thread's order) has run. Called with no loop_run in progress,
 * the next loop_run returns after one iteration. Any thread. */
void loop_stop(loop *lp);

#endif /* KAPI_LOOP_H */
