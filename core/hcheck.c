/* hcheck.c -- active health checks (see hcheck.h). One probe per target:
 * a timer, then one GET of the health path with the group's connect and
 * health timeouts, then the verdict, then the timer again. A probe never
 * overlaps itself; the first check of every target runs right away so a
 * dead target is found within the first timeout, not the first interval. */
#include "hcheck.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "uclient.h"

typedef struct probe {
    hcheck *owner;
    upstream *group;
    size_t index;
    loop_timer timer;
    ucall call;
    bool in_call;
    kapi_header headers[2];
} probe;

struct hcheck {
    uclient *uc;
    loop *lp;
    probe *probes;
    size_t n;
};

static void on_check_done(ucall *c);

static void
send_check(loop_timer *t)
{
    probe *p = t->data;
    const config_upstream *cfg = p->group->cfg;
    const up_target *tg = &p->group->targets[p->index];
    const origin *o = tg->origin;
    p->headers[0] = (kapi_header){KAPI_STR("Host"), {o->authority, strlen(o->authority)}};
    p->headers[1] = (kapi_header){KAPI_STR("User-Agent"), KAPI_STR("kapi-health-check")};
    ucall *c = &p->call;
    memset(c, 0, sizeof(*c));
    c->origin = o;
    c->method = KAPI_STR("GET");
    c->target = (kapi_str){cfg->health.path, strlen(cfg->health.path)};
    c->headers = p->headers;
    c->nheaders = 2;
    c->idempotent = true;
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    c->timeout_ms = cfg->health.timeout_ms;
    c->keepalive = cfg->keepalive;
    c->max_connections = 0; /* a check never waits behind live traffic */
    c->max_response_bytes = 64 << 10;
    c->tls_verify = cfg->tls_verify;
    c->tls_ca_file = cfg->tls_ca_file;
    c->done = on_check_done;
    c->data = p;
    if (uclient_start(p->owner->uc, c) != KAPI_OK) {
        loop_timer_start(p->owner->lp, &p->timer, cfg->health.interval_ms);
        return;
    }
    p->in_call = true;
}

static void
on_check_done(ucall *c)
{
    probe *p = c->data;
    const config_upstream *cfg = p->group->cfg;
    up_target *tg = &p->group->targets[p->index];
    bool pass = c->error == UCALL_OK && health_passes(&cfg->health, c->status);
    p->in_call = false;
    health_transition ht;
    if (health_report_active(&tg->health, pass, loop_now_ms(p->owner->lp), &ht))
        log_tagged(ht.up ? KAPI_LOG_INFO : KAPI_LOG_WARN, "upstream", NULL,
                   "%s: target %s is %s: %s (last check: %s)", cfg->name, tg->cfg->url,
                   ht.up ? "healthy" : "unhealthy", ht.why,
                   c->error == UCALL_OK ? "answered" : (c->detail ? c->detail : "failed"));
    ucall_release(c);
    loop_timer_start(p->owner->lp, &p->timer, cfg->health.interval_ms);
}

kapi_status
hcheck_start(upstream *groups, size_t n, hcheck **out)
{
    *out = NULL;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (groups[i].cfg->health.path)
            count += groups[i].ntargets;
    if (count == 0)
        return KAPI_OK;
    uclient *uc = uclient_current();
    if (!uc)
        return KAPI_ESTATE;
    hcheck *h = calloc(1, sizeof(*h));
    probe *probes = calloc(count, sizeof(*probes));
    if (!h || !probes) {
        free(h);
        free(probes);
        return KAPI_ENOMEM;
    }
    h->uc = uc;
    h->lp = uclient_loop(uc);
    h->probes = probes;
    h->n = count;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!groups[i].cfg->health.path)
            continue;
        for (size_t j = 0; j < groups[i].ntargets; j++, k++) {
            probe *p = &probes[k];
            p->owner = h;
            p->group = &groups[i];
            p->index = j;
            loop_timer_init(&p->timer, send_check, p);
            loop_timer_start(h->lp, &p->timer, 0);
        }
    }
    *out = h;
    return KAPI_OK;
}

void
hcheck_stop(hcheck *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        probe *p = &h->probes[i];
        loop_timer_stop(h->lp, &p->timer);
        if (p->in_call) {
            uclient_cancel(&p->call);
            ucall_release(&p->call);
        }
    }
    free(h->probes);
    free(h);
}
