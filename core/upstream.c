/* upstream.c -- upstream groups at run time (see upstream.h): building a
 * group's targets from the config, choosing the target of one try from the
 * healthy ones whose breaker admits it, and feeding outcomes back to the
 * breaker and the passive health check, logging every state change.
 *
 * It holds no connection (uclient.c) and runs no active check (hcheck.c). */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

kapi_status
upstream_build(const config *file, const config_upstream *cfg, upstream *u, char *err,
               size_t errlen)
{
    memset(u, 0, sizeof(*u));
    u->cfg = cfg;
    u->targets = calloc(cfg->ntargets, sizeof(*u->targets));
    unsigned *weights = calloc(cfg->ntargets, sizeof(*weights));
    const char **names = calloc(cfg->ntargets, sizeof(*names));
    kapi_status st = (u->targets && weights && names) ? KAPI_OK : KAPI_ENOMEM;
    if (st != KAPI_OK)
        snprintf(err, errlen, "%s: out of memory", file->file);
    size_t built = 0;
    for (size_t i = 0; st == KAPI_OK && i < cfg->ntargets; i++) {
        const config_target *ct = &cfg->targets[i];
        up_target *t = &u->targets[i];
        char why[256];
        t->cfg = ct;
        st = origin_get(ct->tls, ct->host, ct->port, true, &t->origin, why, sizeof(why));
        if (st != KAPI_OK) {
            snprintf(err, errlen, "%s:%u:%u: %s: %s", file->file, ct->line, ct->col, ct->json_path,
                     why);
            break;
        }
        if ((st = breaker_init(&t->breaker, &cfg->breaker)) != KAPI_OK) {
            snprintf(err, errlen, "%s:%u:%u: %s: breaker: %s", file->file, cfg->line, cfg->col,
                     cfg->json_path, kapi_strerror(st));
            break;
        }
        if ((st = health_init(&t->health, &cfg->health, &cfg->passive)) != KAPI_OK) {
            breaker_destroy(&t->breaker);
            snprintf(err, errlen, "%s:%u:%u: %s: health: %s", file->file, cfg->line, cfg->col,
                     cfg->json_path, kapi_strerror(st));
            break;
        }
        weights[i] = ct->weight;
        names[i] = ct->url;
        built++;
    }
    if (st == KAPI_OK) {
        st = balancer_init(&u->balancer, cfg->balance, cfg->ntargets, weights, names);
        if (st != KAPI_OK)
            snprintf(err, errlen, "%s: out of memory", file->file);
    }
    free(weights);
    free(names);
    if (st != KAPI_OK) {
        u->ntargets = built;
        for (size_t i = 0; i < built; i++) {
            breaker_destroy(&u->targets[i].breaker);
            health_destroy(&u->targets[i].health);
        }
        free(u->targets);
        memset(u, 0, sizeof(*u));
        return st;
    }
    u->ntargets = cfg->ntargets;
    return KAPI_OK;
}

void
upstream_destroy(upstream *u)
{
    if (!u->targets)
        return;
    for (size_t i = 0; i < u->ntargets; i++) {
        breaker_destroy(&u->targets[i].breaker);
        health_destroy(&u->targets[i].health);
    }
    balancer_destroy(&u->balancer);
    free(u->targets);
    memset(u, 0, sizeof(*u));
}

static void
log_breaker(const upstream *u, const up_target *t, const char *id, const breaker_transition *bt)
{
    log_tagged(bt->to == BREAKER_OPEN ? KAPI_LOG_WARN : KAPI_LOG_INFO, "upstream", id,
               "%s: breaker of %s %s -> %s: %s (%u of %u), cooldown %llu ms", u->cfg->name,
               t->cfg->url, breaker_state_name(bt->from), breaker_state_name(bt->to), bt->why,
               bt->failures, bt->outcomes, (unsigned long long)bt->cooldown_ms);
}

up_pick
upstream_pick(upstream *u, uint64_t tried, kapi_str key, uint64_t now_ms)
{
    up_pick p = {.index = -1, .admit = BREAKER_DENY, .retry_after_ms = 0};
    uint64_t eligible = 0;
    uint64_t wait = UINT64_MAX;
    for (size_t i = 0; i < u->ntargets; i++) {
        up_target *t = &u->targets[i];
        if (!health_is_up(&t->health, now_ms))
            continue;
        if (breaker_is_open(&t->breaker, now_ms)) {
            uint64_t ms = breaker_retry_after_ms(&t->breaker, now_ms);
            if (ms < wait)
                wait = ms;
            continue;
        }
        eligible |= (uint64_t)1 << i;
    }
    /* Prefer targets not tried yet; when every candidate was tried, any. */
    uint64_t fresh = eligible & ~tried;
    uint64_t pool = fresh ? fresh : eligible;
    while (pool) {
        int i = balancer_pick(&u->balancer, pool, key);
        if (i < 0)
            break;
        up_target *t = &u->targets[i];
        bool half_opened;
        breaker_transition bt;
        breaker_admit a = breaker_acquire_noting(&t->breaker, now_ms, &half_opened, &bt);
        if (half_opened)
            log_breaker(u, t, NULL, &bt);
        if (a != BREAKER_DENY) {
            balancer_begin(&u->balancer, (size_t)i);
            p.index = i;
            p.admit = a;
            return p;
        }
        uint64_t ms = breaker_retry_after_ms(&t->breaker, now_ms);
        if (ms < wait)
            wait = ms;
        pool &= ~((uint64_t)1 << i);
    }
    p.retry_after_ms = wait == UINT64_MAX ? 0 : wait;
    return p;
}

void
upstream_done(upstream *u, const up_pick *p, bool failed, bool status_5xx, bool cancelled,
              const char *id, uint64_t now_ms)
{
    if (p->index < 0)
        return;
    up_target *t = &u->targets[p->index];
    balancer_end(&u->balancer, (size_t)p->index);
    if (cancelled) {
        breaker_cancel(&t->breaker, p->admit);
        return;
    }
    breaker_transition bt;
    if (breaker_report(&t->breaker, p->admit, !(failed || status_5xx), now_ms, &bt))
        log_breaker(u, t, id, &bt);
    bool passive_failure = failed || (status_5xx && u->cfg->passive.count_5xx);
    health_transition ht;
    if (health_report_passive(&t->health, passive_failure, now_ms, &ht))
        log_tagged(ht.up ? KAPI_LOG_INFO : KAPI_LOG_WARN, "upstream", id, "%s: target %s is %s: %s",
                   u->cfg->name, t->cfg->url, ht.up ? "healthy" : "unhealthy", ht.why);
}
