/* health.c -- whether one upstream target is up (see health.h).
 *
 * Two counters of results in a row for active checks, one for failed live
 * requests, and the up flag, all under one mutex held for a few
 * comparisons. After each change up_at is republished so health_is_up,
 * called for every target on every pick, is one atomic load; a passive
 * recovery therefore needs no timer: up_at is already the time it happens,
 * and the next passive report makes it official. It neither runs checks nor
 * classifies responses: callers report verdicts. */
#include "health.h"

#include <stdio.h>

kapi_status
health_init(target_health *h, const config_health *active, const config_passive *passive)
{
    if (h == NULL)
        return KAPI_EINVAL;
    bool has_active = active != NULL && active->path != NULL;
    if (has_active && (active->healthy == 0 || active->unhealthy == 0))
        return KAPI_EINVAL;
    if (pthread_mutex_init(&h->lock, NULL) != 0)
        return KAPI_ENOMEM;
    h->active = has_active;
    h->healthy = has_active ? active->healthy : 0;
    h->unhealthy = has_active ? active->unhealthy : 0;
    h->passive_failures = passive != NULL ? passive->failures : 0;
    h->recover_ms = passive != NULL ? passive->recover_ms : 0;
    h->up = true;
    h->passes = h->fails = 0;
    h->passive_run = 0;
    h->down_at = 0;
    atomic_init(&h->up_at, 0);
    return KAPI_OK;
}

void
health_destroy(target_health *h)
{
    pthread_mutex_destroy(&h->lock);
}

static void set_up_locked(target_health *h, bool up);

void
health_inherit(target_health *h, target_health *from)
{
    pthread_mutex_lock(&from->lock);
    bool up = from->up;
    uint64_t down_at = from->down_at;
    pthread_mutex_unlock(&from->lock);
    if (up)
        return;
    pthread_mutex_lock(&h->lock);
    h->down_at = down_at;
    set_up_locked(h, false);
    pthread_mutex_unlock(&h->lock);
}

bool
health_is_up(target_health *h, uint64_t now_ms)
{
    return now_ms >= atomic_load_explicit(&h->up_at, memory_order_acquire);
}

/* Marks H up or down and republishes up_at; H locked. */
static void
set_up_locked(target_health *h, bool up)
{
    h->up = up;
    h->passive_run = 0;
    uint64_t up_at = 0;
    if (!up)
        up_at = h->active ? UINT64_MAX : h->down_at + h->recover_ms;
    atomic_store_explicit(&h->up_at, up_at, memory_order_release);
}

/* "3 failed active checks": N, then WHAT in the singular or plural. */
static bool
describe(health_transition *t, bool up, unsigned n, const char *what)
{
    if (t != NULL) {
        t->up = up;
        snprintf(t->why, sizeof(t->why), "%u %s%s", n, what, n == 1 ? "" : "s");
    }
    return true;
}

bool
health_report_active(target_health *h, bool pass, uint64_t now_ms, health_transition *t)
{
    (void)now_ms;
    if (!h->active)
        return false;
    bool changed = false;
    pthread_mutex_lock(&h->lock);
    if (pass) {
        h->passes++;
        h->fails = 0;
        if (!h->up && h->passes >= h->healthy) {
            set_up_locked(h, true);
            changed = describe(t, true, h->passes, "passing active check");
        }
    } else {
        h->fails++;
        h->passes = 0;
        if (h->up && h->fails >= h->unhealthy) {
            set_up_locked(h, false);
            changed = describe(t, false, h->fails, "failed active check");
        }
    }
    pthread_mutex_unlock(&h->lock);
    return changed;
}

bool
health_report_passive(target_health *h, bool failure, uint64_t now_ms, health_transition *t)
{
    if (h->passive_failures == 0)
        return false;
    bool changed = false;
    pthread_mutex_lock(&h->lock);
    if (!h->up && !h->active && now_ms >= h->down_at + h->recover_ms) {
        set_up_locked(h, true);
        changed = true;
        if (t != NULL) {
            t->up = true;
            snprintf(t->why, sizeof(t->why), "recovered after %u ms", h->recover_ms);
        }
    }
    if (h->up) {
        h->passive_run = failure ? h->passive_run + 1 : 0;
        if (h->passive_run >= h->passive_failures) {
            unsigned run = h->passive_run;
            h->down_at = now_ms;
            h->passes = 0; /* only passes after the fall bring it back */
            set_up_locked(h, false);
            changed = describe(t, false, run, "consecutive failed request");
        }
    }
    pthread_mutex_unlock(&h->lock);
    return changed;
}

bool
health_passes(const config_health *cfg, int status)
{
    if (cfg == NULL || cfg->nstatuses == 0)
        return status >= 200 && status <= 399;
    for (size_t i = 0; i < cfg->nstatuses; i++)
        if (cfg->statuses[i] == status)
            return true;
    return false;
}
