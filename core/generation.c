/* generation.c -- builds, publishes and retires generations (see
 * generation.h). Building is all-or-nothing: any failure unwinds what was
 * loaded and created so far, and the running generation is untouched.
 * It does not parse JSON (config.c) nor dlopen (module.c). */
#include "generation.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "module.h"
#include "proxy.h"

typedef struct gen_instance {
    module *mod;
    void *instance;
} gen_instance;

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static generation *current;
static atomic_uint_fast64_t current_seq;
static uint64_t next_id = 1;

/* ---- building ---- */

/* The config key that names a module of KIND in a module ref. */
static const char *
ref_key(kapi_module_kind kind)
{
    return kind == KAPI_MODULE_FUNCTION ? "function" : "module";
}

/* Loads REF's module, checks its kind and creates an instance into SLOT. */
static kapi_status
create_instance(generation *g, const config_module_ref *ref, kapi_module_kind kind,
                const kapi_host *host, chain_slot *slot, char *err, size_t errlen)
{
    const config *cfg = g->cfg;
    char why[512];
    module *m = NULL;
    kapi_status st = module_load((const char *const *)cfg->module_dirs, cfg->nmodule_dirs,
                                 ref->module, host, &m, why, sizeof(why));
    if (st != KAPI_OK) {
        snprintf(err, errlen, "%s:%u:%u: %s.%s: %s", cfg->file, ref->line, ref->col, ref->json_path,
                 ref_key(kind), why);
        return st;
    }
    const kapi_module *d = module_desc(m);
    if (d->kind != kind) {
        snprintf(err, errlen, "%s:%u:%u: %s.%s: \"%s\" is a %s, expected a %s", cfg->file,
                 ref->line, ref->col, ref->json_path, ref_key(kind), ref->module,
                 d->kind == KAPI_MODULE_PLUGIN ? "plugin" : "function",
                 kind == KAPI_MODULE_PLUGIN ? "plugin" : "function");
        module_release(m);
        return KAPI_ECONFIG;
    }
    void *instance = NULL;
    if (d->create) {
        kapi_error e = {{0}, {0}};
        kapi_str text = {ref->config_json, strlen(ref->config_json)};
        st = d->create(text, &instance, &e);
        if (st != KAPI_OK) {
            snprintf(err, errlen, "%s:%u:%u: %s.config%s%s: %s", cfg->file, ref->line, ref->col,
                     ref->json_path, e.path[0] ? "." : "", e.path,
                     e.message[0] ? e.message : kapi_strerror(st));
            module_release(m);
            return st;
        }
    }
    g->instances[g->ninstances++] = (gen_instance){m, instance};
    *slot = (chain_slot){d, instance};
    return KAPI_OK;
}

/* The access log's name for a route's target. */
static char *
target_label(const config *cfg, const config_route *cr)
{
    char *s = NULL;
    if (cr->target_kind == CONFIG_TARGET_FUNCTION) {
        if (asprintf(&s, "function:%s", cr->target.module) < 0)
            s = NULL;
    } else {
        const config_upstream *u = &cfg->upstreams[cr->upstream];
        if (asprintf(&s, u->anonymous ? "url:%s" : "upstream:%s",
                     u->anonymous ? u->targets[0].url : u->name) < 0)
            s = NULL;
    }
    return s;
}

/* A route's target: a function module's instance, or the proxy. */
static kapi_status
create_target(generation *g, const config_route *cr, const kapi_host *host, gen_route *gr,
              char *err, size_t errlen)
{
    if (!(gr->target_label = target_label(g->cfg, cr))) {
        snprintf(err, errlen, "%s: out of memory", g->cfg->file);
        return KAPI_ENOMEM;
    }
    if (cr->target_kind == CONFIG_TARGET_FUNCTION)
        return create_instance(g, &cr->target, KAPI_MODULE_FUNCTION, host, &gr->chain.target, err,
                               errlen);
    proxy_route *pr;
    if (proxy_route_new(cr, &g->upstreams[cr->upstream], host, &pr) != KAPI_OK) {
        snprintf(err, errlen, "%s: out of memory", g->cfg->file);
        return KAPI_ENOMEM;
    }
    g->proxies[g->nproxies++] = pr;
    gr->chain.target = (chain_slot){proxy_module(), pr};
    return KAPI_OK;
}

/* What the running generation PREV knows of U's targets (the same upstream
 * name, the same URL) carries over: a reload does not send traffic to a
 * target known to be down, nor close an open breaker. */
static void
inherit_state(upstream *u, const generation *prev)
{
    for (size_t i = 0; prev && i < prev->nupstreams; i++) {
        upstream *old = &prev->upstreams[i];
        if (strcmp(old->cfg->name, u->cfg->name) != 0)
            continue;
        for (size_t t = 0; t < u->ntargets; t++)
            for (size_t o = 0; o < old->ntargets; o++)
                if (strcmp(old->targets[o].cfg->url, u->targets[t].cfg->url) == 0) {
                    health_inherit(&u->targets[t].health, &old->targets[o].health);
                    breaker_inherit(&u->targets[t].breaker, &old->targets[o].breaker);
                }
    }
}

static kapi_status
build_upstreams(generation *g, char *err, size_t errlen)
{
    const config *cfg = g->cfg;
    generation *prev = generation_current(); /* NULL for the first (and for check) */
    kapi_status st = KAPI_OK;
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        st = upstream_build(cfg, &cfg->upstreams[i], &g->upstreams[i], err, errlen);
        if (st != KAPI_OK)
            break;
        g->nupstreams++;
        inherit_state(&g->upstreams[i], prev);
    }
    generation_release(prev);
    return st;
}

static kapi_status
build_routes(generation *g, const kapi_host *host, char *err, size_t errlen)
{
    const config *cfg = g->cfg;
    chain_slot *global = calloc(cfg->nplugins ? cfg->nplugins : 1, sizeof(*global));
    router_spec *specs = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*specs));
    kapi_status st = (global && specs) ? KAPI_OK : KAPI_ENOMEM;
    for (size_t i = 0; st == KAPI_OK && i < cfg->nplugins; i++)
        st =
            create_instance(g, &cfg->plugins[i], KAPI_MODULE_PLUGIN, host, &global[i], err, errlen);
    for (size_t i = 0; st == KAPI_OK && i < cfg->nroutes; i++) {
        const config_route *cr = &cfg->routes[i];
        gen_route *gr = &g->routes[i];
        size_t n = cfg->nplugins + cr->nplugins;
        chain_slot *slots = calloc(n ? n : 1, sizeof(*slots));
        if (!slots) {
            st = KAPI_ENOMEM;
            break;
        }
        memcpy(slots, global, cfg->nplugins * sizeof(*slots));
        gr->chain.plugins = slots;
        gr->chain.nplugins = n;
        gr->name = cr->name;
        gr->strip_prefix = cr->strip_prefix;
        for (size_t j = 0; st == KAPI_OK && j < cr->nplugins; j++)
            st = create_instance(g, &cr->plugins[j], KAPI_MODULE_PLUGIN, host,
                                 &slots[cfg->nplugins + j], err, errlen);
        if (st == KAPI_OK)
            st = create_target(g, cr, host, gr, err, errlen);
        specs[i] =
            (router_spec){cr->path, cr->host, (const char *const *)cr->methods, cr->nmethods};
    }
    if (st == KAPI_OK) {
        char why[512];
        st = router_build(specs, cfg->nroutes, &g->router, why, sizeof(why));
        if (st != KAPI_OK)
            snprintf(err, errlen, "%s: %s", cfg->file, why);
    }
    free(specs);
    free(global);
    return st;
}

static void
destroy(generation *g)
{
    if (g->id) /* a built generation, not a failed build */
        log_msg(KAPI_LOG_INFO, "generation %llu retired (its last request ended)",
                (unsigned long long)g->id);
    for (size_t i = g->ninstances; i-- > 0;) {
        const kapi_module *d = module_desc(g->instances[i].mod);
        if (d->destroy)
            d->destroy(g->instances[i].instance);
        module_release(g->instances[i].mod);
    }
    for (size_t i = 0; i < g->nroutes; i++) {
        free((void *)g->routes[i].chain.plugins);
        free(g->routes[i].target_label);
    }
    for (size_t i = 0; i < g->nproxies; i++)
        proxy_route_free(g->proxies[i]);
    free(g->proxies);
    for (size_t i = 0; i < g->nupstreams; i++)
        upstream_destroy(&g->upstreams[i]);
    free(g->upstreams);
    free(g->instances);
    free(g->routes);
    router_free(g->router);
    config_free(g->cfg);
    free(g);
}

kapi_status
generation_from_config(config *cfg, const kapi_host *host, generation **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    generation *g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(err, errlen, "%s: out of memory", cfg->file);
        config_free(cfg);
        return KAPI_ENOMEM;
    }
    g->cfg = cfg;
    size_t max_instances = cfg->nplugins;
    for (size_t i = 0; i < cfg->nroutes; i++)
        max_instances += cfg->routes[i].nplugins + 1;
    g->nroutes = cfg->nroutes;
    g->instances = calloc(max_instances ? max_instances : 1, sizeof(*g->instances));
    g->routes = calloc(g->nroutes ? g->nroutes : 1, sizeof(*g->routes));
    g->upstreams = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*g->upstreams));
    g->proxies = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*g->proxies));
    kapi_status st;
    if (!g->instances || !g->routes || !g->upstreams || !g->proxies) {
        snprintf(err, errlen, "%s: out of memory", cfg->file);
        st = KAPI_ENOMEM;
    } else if ((st = build_upstreams(g, err, errlen)) == KAPI_OK) {
        st = build_routes(g, host, err, errlen);
    }
    if (st != KAPI_OK) {
        destroy(g);
        return st;
    }
    atomic_init(&g->refs, 1);
    g->id = next_id++;
    *out = g;
    return KAPI_OK;
}

kapi_status
generation_build(const char *file, const kapi_host *host, generation **out, char *err,
                 size_t errlen)
{
    config *cfg = NULL;
    *out = NULL;
    kapi_status st = config_load(file, &cfg, err, errlen);
    return st == KAPI_OK ? generation_from_config(cfg, host, out, err, errlen) : st;
}

/* ---- printing (kapi check) ---- */

void
generation_print(const generation *g, FILE *f)
{
    for (size_t i = 0; i < g->nroutes; i++) {
        const config_route *cr = &g->cfg->routes[i];
        const gen_route *gr = &g->routes[i];
        fprintf(f, "route %s: ", gr->name);
        if (cr->nmethods == 0)
            fputs("*", f);
        for (size_t m = 0; m < cr->nmethods; m++)
            fprintf(f, "%s%s", m ? "," : "", cr->methods[m]);
        fprintf(f, " %s%s%s\n  chain:", cr->host ? cr->host : "", cr->path,
                cr->strip_prefix ? " (strip_prefix)" : "");
        for (size_t p = 0; p < gr->chain.nplugins; p++)
            fprintf(f, " %s%s ->", gr->chain.plugins[p].mod->name,
                    p < g->cfg->nplugins ? " (global)" : "");
        fprintf(f, " %s\n", gr->target_label);
    }
}

/* ---- references ---- */

generation *
generation_acquire(generation *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

void
generation_release(generation *g)
{
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
        destroy(g);
}

void
generation_publish(generation *g)
{
    pthread_mutex_lock(&current_lock);
    generation *old = current;
    current = g;
    atomic_fetch_add(&current_seq, 1);
    pthread_mutex_unlock(&current_lock);
    generation_release(old);
}

uint64_t
generation_current_seq(void)
{
    return atomic_load_explicit(&current_seq, memory_order_acquire);
}

generation *
generation_current(void)
{
    pthread_mutex_lock(&current_lock);
    generation *g = current ? generation_acquire(current) : NULL;
    pthread_mutex_unlock(&current_lock);
    return g;
}
