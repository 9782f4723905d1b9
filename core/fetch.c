/* fetch.c -- the host table's fetch (ABI 1.1): a module's subrequest to a
 * configured upstream or a URL, run as an exchange on the request's loop.
 *
 * The request is held (server_req_hold) from fetch to the completion, so
 * the module's callback always gets a live request, even one answered
 * meanwhile. The response is copied into the request's arena before the
 * callback, so its views are request-scoped like every other view. It
 * resolves no host names (a loop thread never waits on DNS) and does not
 * pause the request: the module does, if it wants to wait. */
#include "fetch.h"

#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "generation.h"
#include "proxy.h"
#include "request.h"
#include "server.h"

enum { FETCH_DEFAULT_TIMEOUT_MS = 10000 };

/* Limits for a URL fetch (no configured upstream): the config defaults. */
static const config_upstream url_limits = {
    .name = "fetch",
    .keepalive = 32,
    .max_connections = 256,
    .connect_timeout_ms = 2000,
    .try_timeout_ms = 30000,
    .timeout_ms = FETCH_DEFAULT_TIMEOUT_MS,
    .retries = 2,
    .retry_backoff_ms = 20,
    .max_response_bytes = (size_t)64 << 20,
    .tls_verify = true,
};

typedef struct fetch_job {
    kapi_req *r;
    kapi_fetch_done done;
    void *data;
    exchange *x;
} fetch_job;

static _Thread_local uint64_t trace_rng[2];

static upstream *
find_upstream(kapi_req *r, kapi_str name)
{
    generation *g = server_req_generation(r);
    if (!g)
        return NULL;
    for (size_t i = 0; i < g->nupstreams; i++) {
        const config_upstream *u = g->upstreams[i].cfg;
        if (!u->anonymous && strlen(u->name) == name.len &&
            memcmp(u->name, name.ptr, name.len) == 0)
            return &g->upstreams[i];
    }
    return NULL;
}

static bool
dropped(kapi_str n)
{
    return proxy_hop_by_hop(n) || req_str_ieq(n, KAPI_STR("host")) ||
           req_str_ieq(n, KAPI_STR("content-length")) || req_str_ieq(n, KAPI_STR("x-request-id")) ||
           req_str_ieq(n, KAPI_STR("traceparent"));
}

static void
on_done(exchange *x, void *data)
{
    fetch_job *job = data;
    kapi_req *r = job->r;
    const exchange_result *res = exchange_result_get(x);
    kapi_fetch_response out = {.status = res->status, .error_status = res->error_status};
    if (res->status == 0) {
        out.error = (kapi_str){res->error, strlen(res->error)};
    } else {
        kapi_header *h = arena_alloc(&r->arena, (res->nheaders + 1) * sizeof(*h));
        size_t len;
        char *buf = exchange_take_body(x, &len);
        kapi_str body;
        bool ok = req_adopt(r, buf, len, &body) == KAPI_OK && h; /* handed over, not copied */
        for (size_t i = 0; ok && i < res->nheaders; i++)
            ok = req_strdup(r, res->headers[i].name.ptr, res->headers[i].name.len, &h[i].name) ==
                     KAPI_OK &&
                 req_strdup(r, res->headers[i].value.ptr, res->headers[i].value.len, &h[i].value) ==
                     KAPI_OK;
        if (ok) {
            out.headers = h;
            out.nheaders = res->nheaders;
            out.body = body;
        } else {
            out = (kapi_fetch_response){.status = 0,
                                        .error_status = 502,
                                        .error = KAPI_STR("the gateway is out of memory")};
        }
    }
    exchange_free(x);
    job->done(r, job->data, &out);
    free(job);
    server_req_unhold(r);
}

kapi_status
fetch_start(kapi_req *r, const kapi_fetch_request *f, kapi_fetch_done done, void *data)
{
    req_fetch_target t;
    kapi_status st = req_fetch_check(r, f, done, &t);
    if (st != KAPI_OK)
        return st;
    exchange_spec spec = {.method = t.method, .path = t.path, .id = r->id.ptr};
    if (f->upstream.len) {
        if (!(spec.group = find_upstream(r, f->upstream)))
            return KAPI_ENOTFOUND;
        spec.limits = spec.group->cfg;
        spec.hash_key = r->client_addr;
    } else {
        char why[128];
        if (origin_get(t.tls, t.host, t.port, false, &spec.origin, why, sizeof(why)) != KAPI_OK)
            return KAPI_EINVAL;
        spec.limits = &url_limits;
    }
    /* Copies of everything the exchange reads later: the module's views
     * are borrowed only until fetch returns. */
    kapi_header *h = arena_alloc(&r->arena, (f->nheaders + 2) * sizeof(*h));
    char *tp = arena_alloc(&r->arena, 56);
    kapi_str path, body, method;
    if (!h || !tp || req_strdup(r, spec.path.ptr, spec.path.len, &path) != KAPI_OK ||
        req_strdup(r, f->body.ptr, f->body.ptr ? f->body.len : 0, &body) != KAPI_OK ||
        req_strdup(r, spec.method.ptr, spec.method.len, &method) != KAPI_OK)
        return KAPI_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < f->nheaders; i++) {
        if (dropped(f->headers[i].name))
            continue;
        if (req_strdup(r, f->headers[i].name.ptr, f->headers[i].name.len, &h[n].name) != KAPI_OK ||
            req_strdup(r, f->headers[i].value.ptr, f->headers[i].value.len, &h[n].value) != KAPI_OK)
            return KAPI_ENOMEM;
        n++;
    }
    kapi_str parent = {"", 0};
    req_headers_get(&r->headers, KAPI_STR("traceparent"), 0, &parent);
    proxy_traceparent(parent, trace_rng, tp);
    h[n++] = (kapi_header){KAPI_STR("X-Request-Id"), r->id};
    h[n++] = (kapi_header){KAPI_STR("traceparent"), (kapi_str){tp, 55}};
    fetch_job *job = calloc(1, sizeof(*job));
    if (!job)
        return KAPI_ENOMEM;
    *job = (fetch_job){.r = r, .done = done, .data = data};
    spec.method = method;
    spec.path = path;
    spec.body = body;
    spec.headers = h;
    spec.nheaders = n;
    spec.timeout_ms = f->timeout_ms;
    spec.done = on_done;
    spec.data = job;
    if ((st = exchange_start(&spec, &job->x)) != KAPI_OK) {
        free(job);
        return st;
    }
    server_req_hold(r);
    return KAPI_OK;
}
