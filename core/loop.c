/* loop.c -- one epoll event loop per worker thread (see loop.h).
 *
 * An iteration: prepare hooks, epoll_wait (at most LOOP_MAX_EVENTS), the io
 * batch, the due timers, then the tasks posted since the last iteration.
 * Timers sit in a binary min-heap keyed by (deadline, start order); posted
 * tasks in a lock-free intrusive stack that the loop takes whole with one
 * exchange; an eventfd, written only when the loop sleeps or is about to,
 * wakes it. Nothing here allocates after loop_new except the timer heap
 * growing by doubling. It does not own the watched fds, the user's structs
 * (it neither closes nor frees them), nor know anything of HTTP. */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 64
#define LOOP_HEAP_INITIAL 16
#define CACHE_LINE 64

/* The heap stores each timer's key beside its pointer, so sifting reads only
 * the array. SEQ orders timers with equal deadlines by start and lets a
 * round skip timers (re)started during it. */
typedef struct timer_slot {
    uint64_t deadline;
    uint64_t seq;
    loop_timer *t;
} timer_slot;

struct loop {
    /* Written by other threads (loop_post, loop_stop): a cache line of
     * their own so posting does not bounce the loop's private fields. */
    _Alignas(CACHE_LINE) _Atomic(loop_task *) tasks;
    atomic_bool sleeping;     /* the loop may be in epoll_wait */
    atomic_bool wake_pending; /* an eventfd write is done or under way */
    atomic_bool stop;

    _Alignas(CACHE_LINE) int epfd;
    int wakefd;
    loop_io wake_io;
    uint64_t now_ms;

    timer_slot *heap;
    size_t heap_len;
    size_t heap_cap;
    uint64_t timer_seq; /* next start's SEQ */

    loop_prepare *prepare_head;
    loop_prepare *prepare_tail;
    loop_prepare *prepare_cursor; /* next hook to run in the current round */
    bool in_prepare;

    /* The batch being dispatched; loop_io_remove clears later entries. */
    int ev_pos;
    int ev_len;
    struct epoll_event events[LOOP_MAX_EVENTS];
};

static uint64_t
clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static kapi_status
status_from_errno(int err)
{
    switch (err) {
    case ENOMEM: return KAPI_ENOMEM;
    case ENOSPC: return KAPI_ETOOBIG; /* fs.epoll.max_user_watches */
    case EEXIST:
    case ENOENT: return KAPI_ESTATE; /* already watched / not watched */
    case EBADF:
    case EINVAL:
    case ELOOP:
    case EPERM: return KAPI_EINVAL;
    default: return KAPI_EIO;
    }
}

/* ---- wake-ups ---------------------------------------------------------- */

/* Writes the eventfd if the loop may be sleeping and nobody else has.
 * Pairs with the check in loop_once: the caller published its work
 * (a task or the stop flag) before reading SLEEPING, the loop sets SLEEPING
 * before looking for work, so one of the two sees the other (seq_cst). */
static void
wake(loop *lp)
{
    if (!atomic_load(&lp->sleeping))
        return;
    if (atomic_exchange(&lp->wake_pending, true))
        return;
    uint64_t one = 1;
    if (write(lp->wakefd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is full, so the loop is woken already. */
    }
}

static void
wake_drain(loop_io *io, uint32_t events)
{
    (void)events;
    loop *lp = io->data;
    uint64_t n;
    if (read(lp->wakefd, &n, sizeof n) < 0) {
        /* EAGAIN: nothing to drain. */
    }
    /* After the read: a wake-up requested from here on writes again. */
    atomic_store(&lp->wake_pending, false);
}

/* ---- loop life --------------------------------------------------------- */

kapi_status
loop_new(loop **out)
{
    if (!out)
        return KAPI_EINVAL;
    *out = NULL;
    kapi_status st = KAPI_ENOMEM;
    loop *lp = aligned_alloc(CACHE_LINE, sizeof *lp);
    if (!lp)
        return KAPI_ENOMEM;
    *lp = (loop){.epfd = -1, .wakefd = -1};
    atomic_init(&lp->tasks, NULL);
    atomic_init(&lp->sleeping, false);
    atomic_init(&lp->wake_pending, false);
    atomic_init(&lp->stop, false);

    lp->heap = malloc(LOOP_HEAP_INITIAL * sizeof *lp->heap);
    if (!lp->heap)
        goto fail;
    lp->heap_cap = LOOP_HEAP_INITIAL;

    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lp->epfd < 0) {
        st = status_from_errno(errno);
        goto fail;
    }
    lp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (lp->wakefd < 0) {
        st = status_from_errno(errno);
        goto fail;
    }
    lp->wake_io = (loop_io){.fd = lp->wakefd, .fn = wake_drain, .data = lp};
    if ((st = loop_io_add(lp, &lp->wake_io, EPOLLIN)) != KAPI_OK)
        goto fail;

    lp->now_ms = clock_ms();
    *out = lp;
    return KAPI_OK;

fail:
    loop_free(lp);
    return st;
}

void
loop_free(loop *lp)
{
    if (!lp)
        return;
    if (lp->wakefd >= 0)
        close(lp->wakefd);
    if (lp->epfd >= 0)
        close(lp->epfd);
    free(lp->heap);
    free(lp);
}

uint64_t
loop_now_ms(const loop *lp)
{
    return lp->now_ms;
}

/* ---- io watchers ------------------------------------------------------- */

static kapi_status
io_ctl(loop *lp, int op, loop_io *io, uint32_t events)
{
    if (!lp || !io || io->fd < 0)
        return KAPI_EINVAL;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(lp->epfd, op, io->fd, &ev) < 0)
        return status_from_errno(errno);
    return KAPI_OK;
}

kapi_status
loop_io_add(loop *lp, loop_io *io, uint32_t events)
{
    if (io && !io->fn)
        return KAPI_EINVAL;
    return io_ctl(lp, EPOLL_CTL_ADD, io, events);
}

kapi_status
loop_io_modify(loop *lp, loop_io *io, uint32_t events)
{
    return io_ctl(lp, EPOLL_CTL_MOD, io, events);
}

kapi_status
loop_io_remove(loop *lp, loop_io *io)
{
    if (!lp || !io)
        return KAPI_EINVAL;
    /* Events of IO still ahead in the current batch are dropped, so IO may
     * be freed as soon as this returns, even from another watcher's FN. */
    for (int i = lp->ev_pos + 1; i < lp->ev_len; i++) {
        if (lp->events[i].data.ptr == io)
            lp->events[i].data.ptr = NULL;
    }
    return io_ctl(lp, EPOLL_CTL_DEL, io, 0);
}

static void
dispatch_io(loop *lp, int n)
{
    lp->ev_len = n;
    for (lp->ev_pos = 0; lp->ev_pos < lp->ev_len; lp->ev_pos++) {
        const struct epoll_event *ev = &lp->events[lp->ev_pos];
        loop_io *io = ev->data.ptr;
        if (io)
            io->fn(io, ev->events);
    }
    lp->ev_len = 0;
}

/* ---- timers ------------------------------------------------------------ */

static bool
slot_before(const timer_slot *a, const timer_slot *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void
heap_place(loop *lp, size_t i, timer_slot s)
{
    lp->heap[i] = s;
    s.t->heap_index = i;
}

static void
heap_up(loop *lp, size_t i, timer_slot s)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!slot_before(&s, &lp->heap[parent]))
            break;
        heap_place(lp, i, lp->heap[parent]);
        i = parent;
    }
    heap_place(lp, i, s);
}

static void
heap_down(loop *lp, size_t i, timer_slot s)
{
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= lp->heap_len)
            break;
        if (child + 1 < lp->heap_len && slot_before(&lp->heap[child + 1], &lp->heap[child]))
            child++;
        if (!slot_before(&lp->heap[child], &s))
            break;
        heap_place(lp, i, lp->heap[child]);
        i = child;
    }
    heap_place(lp, i, s);
}

/* Puts S at I, which holds a slot whose key changed or was removed. */
static void
heap_fix(loop *lp, size_t i, timer_slot s)
{
    if (i > 0 && slot_before(&s, &lp->heap[(i - 1) / 2]))
        heap_up(lp, i, s);
    else
        heap_down(lp, i, s);
}

static void
heap_remove(loop *lp, loop_timer *t)
{
    size_t i = t->heap_index;
    t->heap_index = SIZE_MAX;
    timer_slot last = lp->heap[--lp->heap_len];
    if (i < lp->heap_len)
        heap_fix(lp, i, last);
}

void
loop_timer_init(loop_timer *t, void (*fn)(loop_timer *t), void *data)
{
    *t = (loop_timer){.deadline_ms = 0, .heap_index = SIZE_MAX, .fn = fn, .data = data};
}

bool
loop_timer_active(const loop_timer *t)
{
    return t->heap_index != SIZE_MAX;
}

void
loop_timer_start(loop *lp, loop_timer *t, uint64_t timeout_ms)
{
    uint64_t now = lp->now_ms;
    t->deadline_ms = timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
    timer_slot s = {.deadline = t->deadline_ms, .seq = lp->timer_seq++, .t = t};
    if (loop_timer_active(t)) {
        heap_fix(lp, t->heap_index, s);
        return;
    }
    if (lp->heap_len == lp->heap_cap) {
        /* Rare (doubling) and the API cannot fail: out of memory here is fatal. */
        timer_slot *grown = realloc(lp->heap, 2 * lp->heap_cap * sizeof *grown);
        if (!grown)
            abort();
        lp->heap = grown;
        lp->heap_cap *= 2;
    }
    heap_up(lp, lp->heap_len++, s);
}

void
loop_timer_stop(loop *lp, loop_timer *t)
{
    if (loop_timer_active(t))
        heap_remove(lp, t);
}

/* Fires, in (deadline, start) order, the timers due at this round's clock
 * that were started before the round. One pop per FN, so FN may start or
 * stop any timer; one (re)started now has SEQ >= ROUND and waits for the
 * next round even at 0 ms, since its deadline is never below NOW. */
static void
run_timers(loop *lp)
{
    uint64_t now = lp->now_ms;
    uint64_t round = lp->timer_seq;
    while (lp->heap_len > 0) {
        const timer_slot *top = &lp->heap[0];
        if (top->deadline > now || top->seq >= round)
            break;
        loop_timer *t = top->t;
        heap_remove(lp, t);
        t->fn(t);
    }
}

/* ---- prepare hooks ----------------------------------------------------- */

void
loop_prepare_add(loop *lp, loop_prepare *p)
{
    p->next = NULL;
    if (lp->prepare_tail)
        lp->prepare_tail->next = p;
    else
        lp->prepare_head = p;
    lp->prepare_tail = p;
    if (lp->in_prepare && !lp->prepare_cursor)
        lp->prepare_cursor = p; /* added by the last hook: runs this round too */
}

void
loop_prepare_remove(loop *lp, loop_prepare *p)
{
    loop_prepare *prev = NULL;
    for (loop_prepare *q = lp->prepare_head; q; prev = q, q = q->next) {
        if (q != p)
            continue;
        if (prev)
            prev->next = p->next;
        else
            lp->prepare_head = p->next;
        if (lp->prepare_tail == p)
            lp->prepare_tail = prev;
        if (lp->prepare_cursor == p)
            lp->prepare_cursor = p->next;
        p->next = NULL;
        return;
    }
}

/* Runs every hook; returns the smallest limit they gave, -1 for none. */
static int
run_prepare(loop *lp)
{
    int timeout = -1;
    lp->in_prepare = true;
    lp->prepare_cursor = lp->prepare_head;
    while (lp->prepare_cursor) {
        loop_prepare *p = lp->prepare_cursor;
        lp->prepare_cursor = p->next;
        int ms = p->fn(p);
        if (ms >= 0 && (timeout < 0 || ms < timeout))
            timeout = ms;
    }
    lp->in_prepare = false;
    return timeout;
}

/* ---- tasks ------------------------------------------------------------- */

void
loop_post(loop *lp, loop_task *task)
{
    /* A CAS push needs no ABA guard: the only consumer takes the whole stack. */
    loop_task *head = atomic_load_explicit(&lp->tasks, memory_order_relaxed);
    do {
        task->next = head;
    } while (!atomic_compare_exchange_weak(&lp->tasks, &head, task));
    wake(lp);
}

/* Runs the tasks posted so far, oldest first; tasks they post wait for the
 * next iteration, so a task reposting itself cannot starve the loop. */
static void
run_tasks(loop *lp)
{
    if (!atomic_load_explicit(&lp->tasks, memory_order_relaxed))
        return;
    loop_task *t = atomic_exchange(&lp->tasks, NULL);
    loop_task *fifo = NULL;
    while (t) {
        loop_task *next = t->next;
        t->next = fifo;
        fifo = t;
        t = next;
    }
    while (fifo) {
        loop_task *next = fifo->next; /* FN may free or repost FIFO */
        fifo->fn(fifo);
        fifo = next;
    }
}

/* ---- running ----------------------------------------------------------- */

static int
timer_timeout(const loop *lp)
{
    if (lp->heap_len == 0)
        return -1;
    uint64_t deadline = lp->heap[0].deadline;
    if (deadline <= lp->now_ms)
        return 0;
    uint64_t ms = deadline - lp->now_ms;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static int
min_timeout(int a, int b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

static kapi_status
loop_once(loop *lp)
{
    /* Hooks first: they may start timers (server.c runs MHD there, and its
     * callbacks arm pause timers), which this wait must honour. */
    int prepared = run_prepare(lp);
    int timeout = min_timeout(prepared, timer_timeout(lp));
    if (timeout != 0) {
        /* See wake(): announce the sleep, then look for work posted before. */
        atomic_store(&lp->sleeping, true);
        if (atomic_load(&lp->tasks) || atomic_load(&lp->stop))
            timeout = 0;
    }
    int n = epoll_wait(lp->epfd, lp->events, LOOP_MAX_EVENTS, timeout);
    int err = errno;
    atomic_store_explicit(&lp->sleeping, false, memory_order_relaxed);
    lp->now_ms = clock_ms();
    if (n < 0) {
        if (err != EINTR)
            return KAPI_EIO;
        n = 0;
    }
    dispatch_io(lp, n);
    run_timers(lp);
    run_tasks(lp);
    return KAPI_OK;
}

kapi_status
loop_run(loop *lp)
{
    if (!lp)
        return KAPI_EINVAL;
    for (;;) {
        kapi_status st = loop_once(lp);
        if (st != KAPI_OK)
            return st;
        if (atomic_load(&lp->stop) && atomic_exchange(&lp->stop, false)) {
            run_tasks(lp); /* any posted before loop_stop but after our take */
            return KAPI_OK;
        }
    }
}

void
loop_stop(loop *lp)
{
    atomic_store(&lp->stop, true);
    wake(lp);
}
