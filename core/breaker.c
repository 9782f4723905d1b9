/* breaker.c -- the circuit breaker of one upstream target (see breaker.h).
 *
 * One mutex guards the state; each call holds it for a few comparisons.
 * The failure ratio's window is a ring of bits with a running count of the
 * failures in it. After every change under the lock, deny_until is
 * republished so breaker_is_open, called for every target on every pick,
 * is one atomic load. OPEN becomes HALF_OPEN lazily, in breaker_acquire:
 * nothing here runs on a timer. It does not log, keep time nor know what
 * a failure is: the caller decides and reports. */
#include "breaker.h"

#include <string.h>

static bool
ratio_on(const config_breaker *cfg)
{
    return cfg->ratio_percent != 0;
}

/* A fresh start for the closed state's triggers. */
static void
forget_outcomes(breaker *b)
{
    b->consecutive = 0;
    memset(b->ring, 0, sizeof(b->ring));
    b->ring_pos = b->ring_len = b->ring_failures = 0;
}

kapi_status
breaker_init(breaker *b, const config_breaker *cfg)
{
    if (b == NULL || cfg == NULL)
        return KAPI_EINVAL;
    bool enabled = cfg->failures != 0 || ratio_on(cfg);
    if (enabled && (cfg->ratio_percent > 100 || cfg->half_open_probes == 0))
        return KAPI_EINVAL;
    if (ratio_on(cfg) && (cfg->window == 0 || cfg->window > BREAKER_MAX_WINDOW))
        return KAPI_EINVAL;
    if (pthread_mutex_init(&b->lock, NULL) != 0)
        return KAPI_ENOMEM;
    b->cfg = *cfg;
    if (b->cfg.max_cooldown_ms < b->cfg.cooldown_ms)
        b->cfg.max_cooldown_ms = b->cfg.cooldown_ms;
    /* the window never holds more: a window of 5 with the default 10 must
     * not silently turn the ratio off */
    if (b->cfg.min_requests > b->cfg.window)
        b->cfg.min_requests = b->cfg.window;
    b->enabled = enabled;
    b->state = BREAKER_CLOSED;
    b->open_until = 0;
    b->cooldown_ms = cfg->cooldown_ms;
    b->probes_out = 0;
    b->probes_ok = 0;
    forget_outcomes(b);
    atomic_init(&b->deny_until, 0);
    return KAPI_OK;
}

void
breaker_destroy(breaker *b)
{
    pthread_mutex_destroy(&b->lock);
}

/* Makes breaker_is_open agree with the state; B locked. */
static void
publish_locked(breaker *b)
{
    uint64_t deny_until;
    if (b->state == BREAKER_CLOSED)
        deny_until = 0;
    else if (b->probes_out >= b->cfg.half_open_probes)
        deny_until = UINT64_MAX;
    else
        deny_until = b->open_until; /* HALF_OPEN: already past */
    atomic_store_explicit(&b->deny_until, deny_until, memory_order_release);
}

void
breaker_inherit(breaker *b, breaker *from)
{
    if (!b->enabled || !from->enabled)
        return;
    pthread_mutex_lock(&from->lock);
    breaker_state state = from->state;
    uint64_t open_until = from->open_until, cooldown = from->cooldown_ms;
    pthread_mutex_unlock(&from->lock);
    if (state == BREAKER_CLOSED)
        return;
    pthread_mutex_lock(&b->lock);
    b->state = BREAKER_OPEN;
    b->open_until = open_until;
    b->cooldown_ms = cooldown < b->cfg.max_cooldown_ms ? cooldown : b->cfg.max_cooldown_ms;
    if (b->cooldown_ms < b->cfg.cooldown_ms)
        b->cooldown_ms = b->cfg.cooldown_ms;
    publish_locked(b);
    pthread_mutex_unlock(&b->lock);
}

static bool
half_open_if_due_locked(breaker *b, uint64_t now_ms)
{
    if (b->state != BREAKER_OPEN || now_ms < b->open_until)
        return false;
    b->state = BREAKER_HALF_OPEN;
    b->probes_ok = 0;
    return true;
}

static bool
describe(breaker_transition *t, breaker_state from, breaker_state to, uint64_t cooldown_ms,
         const char *why, unsigned failures, unsigned outcomes)
{
    if (t != NULL)
        *t = (breaker_transition){from, to, cooldown_ms, why, failures, outcomes};
    return true;
}

static bool
open_locked(breaker *b, uint64_t now_ms, breaker_transition *t, const char *why, unsigned failures,
            unsigned outcomes)
{
    breaker_state from = b->state;
    b->state = BREAKER_OPEN;
    b->open_until = now_ms + b->cooldown_ms;
    b->consecutive = 0;
    return describe(t, from, BREAKER_OPEN, b->cooldown_ms, why, failures, outcomes);
}

static void
ring_push(breaker *b, bool failure)
{
    unsigned word = b->ring_pos / 64, bit = b->ring_pos % 64;
    if (b->ring_len == b->cfg.window)
        b->ring_failures -= (unsigned)(b->ring[word] >> bit & 1);
    else
        b->ring_len++;
    b->ring[word] = (b->ring[word] & ~((uint64_t)1 << bit)) | ((uint64_t)failure << bit);
    b->ring_failures += failure;
    b->ring_pos = (b->ring_pos + 1) % b->cfg.window;
}

static bool
closed_outcome_locked(breaker *b, bool success, uint64_t now_ms, breaker_transition *t)
{
    b->consecutive = success ? 0 : b->consecutive + 1;
    if (ratio_on(&b->cfg))
        ring_push(b, !success);
    if (b->cfg.failures != 0 && b->consecutive >= b->cfg.failures)
        return open_locked(b, now_ms, t, "consecutive failures", b->consecutive, b->consecutive);
    /* evaluated after a success too: it may be the outcome that brings the
     * window up to min_requests */
    if (ratio_on(&b->cfg) && b->ring_len >= b->cfg.min_requests &&
        (uint64_t)b->ring_failures * 100 >= (uint64_t)b->cfg.ratio_percent * b->ring_len)
        return open_locked(b, now_ms, t, "failure ratio", b->ring_failures, b->ring_len);
    return false;
}

static bool
probe_outcome_locked(breaker *b, bool success, uint64_t now_ms, breaker_transition *t)
{
    if (!success) {
        uint64_t doubled = b->cooldown_ms * 2;
        b->cooldown_ms = doubled < b->cfg.max_cooldown_ms ? doubled : b->cfg.max_cooldown_ms;
        return open_locked(b, now_ms, t, "probe failed", 1, b->probes_ok + 1);
    }
    if (++b->probes_ok < b->cfg.half_open_probes)
        return false;
    b->state = BREAKER_CLOSED;
    b->cooldown_ms = b->cfg.cooldown_ms;
    forget_outcomes(b);
    return describe(t, BREAKER_HALF_OPEN, BREAKER_CLOSED, b->cooldown_ms, "probes succeeded", 0,
                    b->probes_ok);
}

static void
release_probe_locked(breaker *b)
{
    if (b->probes_out > 0)
        b->probes_out--;
}

breaker_admit
breaker_acquire(breaker *b, uint64_t now_ms)
{
    bool half_opened;
    return breaker_acquire_noting(b, now_ms, &half_opened, NULL);
}

breaker_admit
breaker_acquire_noting(breaker *b, uint64_t now_ms, bool *half_opened, breaker_transition *t)
{
    *half_opened = false;
    if (!b->enabled)
        return BREAKER_ALLOW;
    breaker_admit how = BREAKER_DENY;
    pthread_mutex_lock(&b->lock);
    if (half_open_if_due_locked(b, now_ms)) {
        *half_opened =
            describe(t, BREAKER_OPEN, BREAKER_HALF_OPEN, b->cooldown_ms, "cooldown over", 0, 0);
    }
    if (b->state == BREAKER_CLOSED) {
        how = BREAKER_ALLOW;
    } else if (b->state == BREAKER_HALF_OPEN && b->probes_out < b->cfg.half_open_probes) {
        b->probes_out++;
        publish_locked(b);
        how = BREAKER_PROBE;
    }
    pthread_mutex_unlock(&b->lock);
    return how;
}

bool
breaker_report(breaker *b, breaker_admit how, bool success, uint64_t now_ms, breaker_transition *t)
{
    if (!b->enabled || how == BREAKER_DENY)
        return false;
    bool changed = false;
    pthread_mutex_lock(&b->lock);
    if (how == BREAKER_PROBE)
        release_probe_locked(b);
    if (how == BREAKER_ALLOW && b->state == BREAKER_CLOSED)
        changed = closed_outcome_locked(b, success, now_ms, t);
    else if (how == BREAKER_PROBE && b->state == BREAKER_HALF_OPEN)
        changed = probe_outcome_locked(b, success, now_ms, t);
    publish_locked(b);
    pthread_mutex_unlock(&b->lock);
    return changed;
}

void
breaker_cancel(breaker *b, breaker_admit how)
{
    if (!b->enabled || how != BREAKER_PROBE)
        return;
    pthread_mutex_lock(&b->lock);
    release_probe_locked(b);
    publish_locked(b);
    pthread_mutex_unlock(&b->lock);
}

bool
breaker_is_open(breaker *b, uint64_t now_ms)
{
    return b->enabled && now_ms < atomic_load_explicit(&b->deny_until, memory_order_acquire);
}

uint64_t
breaker_retry_after_ms(breaker *b, uint64_t now_ms)
{
    if (!b->enabled)
        return 0;
    uint64_t wait = 0;
    pthread_mutex_lock(&b->lock);
    if (b->state != BREAKER_CLOSED) {
        if (now_ms < b->open_until)
            wait = b->open_until - now_ms;
        else if (b->probes_out >= b->cfg.half_open_probes)
            wait = b->cooldown_ms > 0 ? b->cooldown_ms : 1;
    }
    pthread_mutex_unlock(&b->lock);
    return wait;
}

breaker_state
breaker_state_at(breaker *b, uint64_t now_ms)
{
    if (!b->enabled)
        return BREAKER_CLOSED;
    pthread_mutex_lock(&b->lock);
    breaker_state s = b->state;
    if (s == BREAKER_OPEN && now_ms >= b->open_until)
        s = BREAKER_HALF_OPEN;
    pthread_mutex_unlock(&b->lock);
    return s;
}

const char *
breaker_state_name(breaker_state s)
{
    switch (s) {
    case BREAKER_CLOSED: return "closed";
    case BREAKER_OPEN: return "open";
    case BREAKER_HALF_OPEN: return "half-open";
    }
    return "unknown";
}
