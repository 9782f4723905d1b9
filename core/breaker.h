/* breaker.h -- the circuit breaker of one upstream target.
 *
 * CLOSED admits everything and watches outcomes; it opens after `failures`
 * consecutive failures, or when the last `window` outcomes (at least
 * `min_requests` of them) hold ratio_percent % failures or more. OPEN denies
 * everything for the current cooldown (cooldown_ms at first). Once it is
 * over the breaker is HALF_OPEN: at most half_open_probes probe requests in
 * flight at a time; half_open_probes successful probes in a row close it
 * (cooldown back to cooldown_ms, window cleared), one failed probe opens it
 * again with the cooldown doubled, up to max_cooldown_ms. With both
 * triggers off (failures and ratio_percent 0) the breaker is disabled and
 * admits everything.
 *
 * An outcome counts only in the state its request was admitted in: an
 * ALLOW outcome only while CLOSED, a PROBE outcome only while HALF_OPEN;
 * late ones (a request admitted while closed that ends after the breaker
 * opened) change nothing. A probe holds its slot until it is reported or
 * cancelled, across rounds: a slow probe of a failed round still counts
 * against the slots of the next one, so the target never sees more than
 * half_open_probes probes at once.
 *
 * One breaker per target, shared by all worker threads: every function is
 * safe to call concurrently. Time is the caller's monotonic now_ms; there is
 * no timer, no I/O and no logging: transitions are returned for the caller
 * to log. It does not choose targets (balance.c) nor track health
 * (health.c). */
#ifndef KAPI_BREAKER_H
#define KAPI_BREAKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <kapi/status.h>

#include "config.h"

#define BREAKER_MAX_WINDOW 1024 /* largest config_breaker.window */

typedef enum breaker_state {
    BREAKER_CLOSED = 0,
    BREAKER_OPEN,
    BREAKER_HALF_OPEN,
} breaker_state;

/* What breaker_acquire decided; passed back to breaker_report or
 * breaker_cancel with the request's outcome. */
typedef enum breaker_admit {
    BREAKER_DENY = 0, /* do not send: pick another target or fail */
    BREAKER_ALLOW,    /* closed (or disabled): send */
    BREAKER_PROBE,    /* half-open: send; a probe slot is held until report or cancel */
} breaker_admit;

/* A state change, for the caller's log. */
typedef struct breaker_transition {
    breaker_state from;
    breaker_state to;
    uint64_t cooldown_ms; /* the cooldown now in force: how long it stays open (to OPEN),
                             the one the next trip will use (to CLOSED) */
    const char *why;      /* static: "consecutive failures", "failure ratio",
                             "probe failed", "probes succeeded" */
    /* The counts behind WHY: 5 failures of 5 outcomes, 12 of the 20 in the
     * window, 1 of the round's 3 probe outcomes, 0 of 2 successful probes. */
    unsigned failures;
    unsigned outcomes;
} breaker_transition;

/* Embedded by the caller; every field is private. */
typedef struct breaker {
    config_breaker cfg; /* copied at init */
    bool enabled;
    pthread_mutex_t lock; /* guards everything below but deny_until's reads */
    breaker_state state;
    uint64_t open_until;                    /* OPEN: when the cooldown ends */
    uint64_t cooldown_ms;                   /* current cooldown */
    unsigned consecutive;                   /* CLOSED: failures in a row */
    unsigned probes_out;                    /* probe slots held, whatever their round */
    unsigned probes_ok;                     /* HALF_OPEN: successes in this round */
    uint64_t ring[BREAKER_MAX_WINDOW / 64]; /* CLOSED: the last outcomes, 1 = failure */
    unsigned ring_pos, ring_len, ring_failures;
    _Atomic uint64_t deny_until; /* breaker_is_open without the lock: 0 admits,
                                    UINT64_MAX all probe slots held */
} breaker;

/* Sets up B, closed, from CFG (copied; borrowed only for the call).
 * KAPI_EINVAL (B untouched, not to be destroyed) when enabled with
 * ratio_percent > 100 or half_open_probes 0, or, the ratio on, with window
 * outside 1..BREAKER_MAX_WINDOW: config.c's ranges never yield these. A
 * min_requests above window counts as window; a max_cooldown_ms below
 * cooldown_ms as cooldown_ms. */
kapi_status breaker_init(breaker *b, const config_breaker *cfg);
/* Releases B's lock; no call may be in progress or follow. */
void breaker_destroy(breaker *b);

/* Takes over FROM's state (the same target in the generation a reload
 * replaces): a breaker open or half-open in FROM starts open in B until
 * FROM's cooldown ends (then B half-opens by its own rules), with FROM's
 * cooldown as B's current one (capped by B's max_cooldown_ms). A closed
 * FROM, or a disabled B, changes nothing. FROM is only read. */
void breaker_inherit(breaker *b, breaker *from);

/* May a request go to the target now? BREAKER_PROBE takes a probe slot;
 * an OPEN breaker whose cooldown is over becomes HALF_OPEN here. Every
 * ALLOW or PROBE must be followed by exactly one breaker_report or
 * breaker_cancel with the same HOW. */
breaker_admit breaker_acquire(breaker *b, uint64_t now_ms);
/* As breaker_acquire; when this very call turned an OPEN breaker
 * HALF_OPEN (its cooldown over) it returns true in *HALF_OPENED and
 * describes the change in *T (why "cooldown over", cooldown_ms the one
 * that ended), for the caller's log; false and *T untouched otherwise. */
breaker_admit breaker_acquire_noting(breaker *b, uint64_t now_ms, bool *half_opened,
                                     breaker_transition *t);

/* The outcome of a request admitted as HOW (BREAKER_DENY: ignored).
 * SUCCESS is the caller's verdict (a connect error, timeout or 5xx is a
 * failure). Returns true when the state changed, then *T (may be NULL)
 * describes the change; *T is untouched otherwise. */
bool breaker_report(breaker *b, breaker_admit how, bool success, uint64_t now_ms,
                    breaker_transition *t);

/* An admitted request that produced no outcome (the client went away):
 * frees its probe slot, counts nothing. */
void breaker_cancel(breaker *b, breaker_admit how);

/* True when breaker_acquire would deny now: OPEN within its cooldown, or
 * every probe slot held. Lock-free, for the balancer's eligible mask; a
 * false may still meet a DENY if another thread takes the last slot. */
bool breaker_is_open(breaker *b, uint64_t now_ms);

/* How long until it admits again: 0 when it admits now, the rest of the
 * cooldown when OPEN, and with every probe slot held (nothing known until a
 * probe ends) the current cooldown as an estimate. For Retry-After. */
uint64_t breaker_retry_after_ms(breaker *b, uint64_t now_ms);

/* The state as breaker_acquire would find it at NOW_MS (an OPEN breaker
 * whose cooldown is over reads HALF_OPEN), for status pages and tests. */
breaker_state breaker_state_at(breaker *b, uint64_t now_ms);

/* "closed", "open", "half-open"; static strings. */
const char *breaker_state_name(breaker_state s);

#endif /* KAPI_BREAKER_H */
