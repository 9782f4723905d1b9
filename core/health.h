/* health.h -- whether one upstream target is up, from active checks and
 * from live traffic.
 *
 * A target starts up. Active checks (config_health with a path): `healthy`
 * passing checks in a row mark it up, `unhealthy` failing ones in a row mark
 * it down. Passive observations (config_passive with failures > 0):
 * `failures` failed live requests in a row mark it down, a success resets
 * the run. A target that passive observations marked down comes back only
 * through `healthy` passing active checks in a row when active checks are
 * configured (passes before the fall do not count), and otherwise by
 * itself recover_ms later, with a fresh run of failures needed to mark it
 * down again. Live requests reported while the target is down change
 * nothing: one admitted before the fall says nothing new.
 *
 * One per target, shared by all worker threads: every function is safe to
 * call concurrently, and health_is_up is one atomic load. Time is the
 * caller's monotonic now_ms; there is no timer, no I/O and no logging:
 * transitions are returned for the caller to log. It does not run the
 * checks nor decide what a failure is (the upstream code does), and knows
 * nothing of circuit breakers (breaker.c). */
#ifndef KAPI_HEALTH_H
#define KAPI_HEALTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <kapi/status.h>

#include "config.h"

/* An up/down change, for the caller's log. */
typedef struct health_transition {
    bool up;      /* the state now */
    char why[48]; /* "3 failed active checks", "5 consecutive failed requests",
                     "recovered after 10000 ms", "2 passing active checks" */
} health_transition;

/* Embedded by the caller; every field is private. */
typedef struct target_health {
    bool active;               /* active checks configured */
    unsigned healthy;          /* config_health.healthy */
    unsigned unhealthy;        /* config_health.unhealthy */
    unsigned passive_failures; /* config_passive.failures, 0: passive off */
    unsigned recover_ms;       /* config_passive.recover_ms */
    pthread_mutex_t lock;      /* guards everything below but up_at's reads */
    bool up;                   /* as last decided by a report */
    unsigned passes, fails;    /* active checks in a row */
    unsigned passive_run;      /* failed live requests in a row */
    uint64_t down_at;          /* when passive observations marked it down */
    _Atomic uint64_t up_at;    /* health_is_up: up from this time on; 0 up,
                                  UINT64_MAX until active checks pass */
} target_health;

/* Sets up H, up, from ACTIVE (NULL or path NULL: no active checks) and
 * PASSIVE (NULL or failures 0: no passive observations); the numbers are
 * copied, neither pointer is kept. KAPI_EINVAL (H untouched, not to be
 * destroyed) when active checks are configured with healthy or unhealthy
 * 0; config.c's ranges never yield it. */
kapi_status health_init(target_health *h, const config_health *active,
                        const config_passive *passive);
/* Releases H's lock; no call may be in progress or follow. */
void health_destroy(target_health *h);

/* Takes over FROM's verdict (the same target in the generation a reload
 * replaces): a target FROM holds down starts down in H, with the time it
 * went down, so H's own rules (its active checks, or its recover_ms) bring
 * it back. Counters start afresh. FROM is only read (under its lock). */
void health_inherit(target_health *h, target_health *from);

/* May the target get traffic at NOW_MS? Lock-free. */
bool health_is_up(target_health *h, uint64_t now_ms);

/* The result of one active check (PASS: see health_passes). Ignored
 * without active checks. Returns true when up/down changed, then *T (may be
 * NULL) says how; *T is untouched otherwise. */
bool health_report_active(target_health *h, bool pass, uint64_t now_ms, health_transition *t);

/* The outcome of one live request: FAILURE is the caller's verdict (connect
 * error, timeout, reset, a 5xx when count_5xx). Ignored when passive
 * observations are off. Returns true when up/down changed, then *T (may be
 * NULL) says how. A down target whose recover_ms is over is up for
 * health_is_up at once; the first report after that returns the recovery,
 * or, when that very report ends a new failure run, the fall again. */
bool health_report_passive(target_health *h, bool failure, uint64_t now_ms, health_transition *t);

/* Does STATUS pass an active check? One of CFG->statuses, or 200..399
 * when there are none (or CFG is NULL). */
bool health_passes(const config_health *cfg, int status);

#endif /* KAPI_HEALTH_H */
