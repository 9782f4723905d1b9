/* exchange.c -- one logical upstream request (see exchange.h): pick a
 * target, try it through the loop's uclient, report the outcome to the
 * group (breaker, passive health), retry where that is safe, and turn the
 * last failure into 502, 503 or 504.
 *
 * What may be retried: a try that failed in transport (refused, reset,
 * timed out, malformed) when the method is idempotent or nothing of the
 * request was sent. An upstream's own 5xx answer is passed through, not
 * retried: the backend did process the request. A retry prefers a target
 * not tried yet and waits retry_backoff_ms times the number of tries so far,
 * all inside the total deadline. It does not rewrite headers or paths
 * beyond Host and the target's base path: its callers do. */
#include "exchange.h"

#include <stdlib.h>
#include <string.h>

#include "dlist.h"
#include "log.h"

struct exchange {
    exchange_spec spec;
    uclient *uc;
    loop *lp;
    ucall call;
    bool in_call;  /* call started and not done */
    bool has_call; /* call holds results to release */
    up_pick pick;
    uint64_t tried;
    unsigned tries;
    uint64_t start_ms;
    uint64_t deadline_ms;
    loop_timer backoff;
    loop_timer total;
    kapi_header *headers; /* spec headers + Host */
    char *target;         /* base path + path */
    size_t target_cap;
    ucall_error last_error;
    exchange_result res;
    dlist_node live_link; /* in live while unfinished or undelivered */
    bool finished;
    bool starting; /* inside exchange_start: done must wait for the loop */
};

/* Every unfinished exchange of this loop thread, for exchange_abort_all. */
static _Thread_local dlist live;

/* X may be off the list already (delivered, or freed after its done). */
static void
live_remove(exchange *x)
{
    if (dlist_linked(&live, &x->live_link))
        dlist_remove(&live, &x->live_link);
}

enum { DEFAULT_RETRY_AFTER_S = 1 };

static bool
idempotent(kapi_str m)
{
    static const char *const methods[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(*methods); i++)
        if (m.len == strlen(methods[i]) && memcmp(m.ptr, methods[i], m.len) == 0)
            return true;
    return false;
}

static const char *
error_text(ucall_error e)
{
    switch (e) {
    case UCALL_ETIMEOUT: return "the upstream did not answer in time";
    case UCALL_ECONNECT: return "the upstream could not be reached";
    case UCALL_ERESET: return "the upstream closed the connection";
    case UCALL_EPROTO: return "the upstream sent a malformed response";
    case UCALL_ETOOBIG: return "the upstream response is too large";
    default: return "the upstream request failed";
    }
}

static const config_target *
current_target(const exchange *x)
{
    return x->spec.group && x->pick.index >= 0 ? x->spec.group->targets[x->pick.index].cfg : NULL;
}

static void
deliver(loop_timer *t)
{
    exchange *x = t->data;
    live_remove(x);
    x->spec.done(x, x->spec.data);
}

static void
finish(exchange *x)
{
    loop_timer_stop(x->lp, &x->backoff);
    loop_timer_stop(x->lp, &x->total);
    x->res.tries = x->tries;
    x->res.elapsed_ms = (unsigned)(loop_now_ms(x->lp) - x->start_ms);
    x->finished = true;
    if (x->starting) { /* done never runs inside exchange_start; live until delivered */
        loop_timer_init(&x->backoff, deliver, x);
        loop_timer_start(x->lp, &x->backoff, 0);
        return;
    }
    live_remove(x);
    x->spec.done(x, x->spec.data);
}

static void
fail(exchange *x, int status, const char *text, uint32_t retry_after_s)
{
    x->res.status = 0;
    x->res.error_status = status;
    x->res.error = text;
    x->res.retry_after_s = retry_after_s;
    finish(x);
}

static void
fail_with_last_error(exchange *x)
{
    fail(x, x->last_error == UCALL_ETIMEOUT ? 504 : 502, error_text(x->last_error), 0);
}

/* The target path: the target's base path, then the request's. */
static bool
set_target_path(exchange *x, const char *base)
{
    size_t bl = strlen(base), need = bl + x->spec.path.len + 2;
    if (need > x->target_cap) {
        char *t = realloc(x->target, need);
        if (!t)
            return false;
        x->target = t;
        x->target_cap = need;
    }
    memcpy(x->target, base, bl);
    memcpy(x->target + bl, x->spec.path.ptr, x->spec.path.len);
    size_t n = bl + x->spec.path.len;
    if (n == 0)
        x->target[n++] = '/';
    x->target[n] = '\0';
    return true;
}

static void on_call_done(ucall *c);

/* Starts the next try; false when none could start (X is then finished). */
static void
try_next(exchange *x)
{
    const config_upstream *lim = x->spec.limits;
    uint64_t now = loop_now_ms(x->lp);
    if (now >= x->deadline_ms) {
        fail(x, 504, error_text(UCALL_ETIMEOUT), 0);
        return;
    }
    const origin *o = x->spec.origin;
    const char *base = "";
    if (x->spec.group) {
        x->pick = upstream_pick(x->spec.group, x->tried, x->spec.hash_key, now);
        if (x->pick.index < 0) {
            if (x->tries > 0) {
                fail_with_last_error(x);
            } else {
                uint64_t ms = x->pick.retry_after_ms;
                uint32_t s = ms ? (uint32_t)((ms + 999) / 1000) : DEFAULT_RETRY_AFTER_S;
                fail(x, 503, "no healthy upstream target is available", s);
            }
            return;
        }
        const up_target *t = &x->spec.group->targets[x->pick.index];
        o = t->origin;
        base = t->cfg->base_path;
    }
    if (!set_target_path(x, base)) {
        if (x->spec.group)
            upstream_done(x->spec.group, &x->pick, false, false, true, x->spec.id, now);
        fail(x, 502, "the gateway is out of memory", 0);
        return;
    }
    x->headers[x->spec.nheaders] = (kapi_header){
        KAPI_STR("Host"),
        x->spec.host.len ? x->spec.host : (kapi_str){o->authority, strlen(o->authority)}};
    uint64_t left = x->deadline_ms - now;
    uint64_t try_ms = lim->try_timeout_ms < left ? lim->try_timeout_ms : left;
    ucall *c = &x->call;
    memset(c, 0, sizeof(*c));
    c->origin = o;
    c->method = x->spec.method;
    c->target = (kapi_str){x->target, strlen(x->target)};
    c->headers = x->headers;
    c->nheaders = x->spec.nheaders + 1;
    c->body = x->spec.body;
    c->idempotent = idempotent(x->spec.method);
    c->connect_timeout_ms = lim->connect_timeout_ms;
    c->timeout_ms = (unsigned)try_ms;
    c->keepalive = lim->keepalive;
    c->max_connections = lim->max_connections;
    c->max_response_bytes = lim->max_response_bytes;
    c->tls_verify = lim->tls_verify;
    c->tls_ca_file = lim->tls_ca_file;
    c->done = on_call_done;
    c->data = x;
    x->tries++;
    x->res.target_url = x->spec.group ? current_target(x)->url : o->base_url;
    if (uclient_start(x->uc, c) != KAPI_OK) {
        if (x->spec.group)
            upstream_done(x->spec.group, &x->pick, false, false, true, x->spec.id, now);
        fail(x, 502, "the gateway is out of memory", 0);
        return;
    }
    x->in_call = true;
    x->has_call = true;
}

static void
on_backoff(loop_timer *t)
{
    try_next(t->data);
}

static void
on_call_done(ucall *c)
{
    exchange *x = c->data;
    uint64_t now = loop_now_ms(x->lp);
    bool failed = c->error != UCALL_OK;
    x->in_call = false;
    if (x->spec.group) {
        upstream_done(x->spec.group, &x->pick, failed, !failed && c->status >= 500, false,
                      x->spec.id, now);
        x->tried |= (uint64_t)1 << x->pick.index;
    }
    if (!failed) {
        x->res.status = c->status;
        x->res.headers = c->resp_headers;
        x->res.nheaders = c->nresp_headers;
        x->res.body = c->resp_body;
        x->res.body_len = c->resp_body_len;
        finish(x);
        return;
    }
    x->last_error = c->error;
    log_tagged(KAPI_LOG_WARN, "upstream", x->spec.id, "%s: try %u to %s failed: %s%s",
               x->spec.limits->name ? x->spec.limits->name : "fetch", x->tries, x->res.target_url,
               c->detail ? c->detail : error_text(c->error), c->sent ? " (request sent)" : "");
    bool safe = c->idempotent || !c->sent;
    uint64_t backoff = (uint64_t)x->spec.limits->retry_backoff_ms * x->tries;
    ucall_release(c);
    x->has_call = false;
    if (safe && x->tries <= x->spec.limits->retries && now + backoff < x->deadline_ms) {
        loop_timer_start(x->lp, &x->backoff, backoff);
        return;
    }
    fail_with_last_error(x);
}

static void
on_total_timeout(loop_timer *t)
{
    exchange *x = t->data;
    loop_timer_stop(x->lp, &x->backoff);
    if (x->in_call) {
        uclient_cancel(&x->call);
        x->in_call = false;
        log_tagged(KAPI_LOG_WARN, "upstream", x->spec.id, "%s: try %u to %s failed: %s",
                   x->spec.limits->name ? x->spec.limits->name : "fetch", x->tries,
                   x->res.target_url, "the total timeout passed");
        if (x->spec.group)
            upstream_done(x->spec.group, &x->pick, true, false, false, x->spec.id,
                          loop_now_ms(x->lp));
    }
    x->last_error = UCALL_ETIMEOUT;
    fail_with_last_error(x);
}

kapi_status
exchange_start(const exchange_spec *spec, exchange **out)
{
    *out = NULL;
    uclient *uc = uclient_current();
    if (!uc || (!spec->group && !spec->origin) || !spec->limits || !spec->done)
        return KAPI_EINVAL;
    exchange *x = calloc(1, sizeof(*x));
    if (!x)
        return KAPI_ENOMEM;
    x->spec = *spec;
    x->uc = uc;
    x->lp = uclient_loop(uc);
    x->headers = malloc((spec->nheaders + 1) * sizeof(*x->headers));
    if (!x->headers) {
        free(x);
        return KAPI_ENOMEM;
    }
    memcpy(x->headers, spec->headers, spec->nheaders * sizeof(*x->headers));
    uint32_t total = spec->timeout_ms ? spec->timeout_ms : spec->limits->timeout_ms;
    x->start_ms = loop_now_ms(x->lp);
    x->deadline_ms = x->start_ms + total;
    loop_timer_init(&x->backoff, on_backoff, x);
    loop_timer_init(&x->total, on_total_timeout, x);
    loop_timer_start(x->lp, &x->total, total);
    dlist_push_front(&live, &x->live_link);
    *out = x;
    /* The first try starts now; an immediate failure (no target) is
     * reported from a 0 ms timer (see finish). */
    x->starting = true;
    try_next(x);
    x->starting = false;
    return KAPI_OK;
}

const exchange_result *
exchange_result_get(const exchange *x)
{
    return &x->res;
}

char *
exchange_take_body(exchange *x, size_t *len)
{
    char *b = x->has_call ? ucall_take_body(&x->call, len) : NULL;
    if (!b)
        *len = 0;
    x->res.body = NULL;
    x->res.body_len = 0;
    return b;
}

void
exchange_free(exchange *x)
{
    if (!x)
        return;
    live_remove(x);
    if (x->has_call)
        ucall_release(&x->call);
    free(x->headers);
    free(x->target);
    free(x);
}

void
exchange_cancel(exchange *x)
{
    if (!x)
        return;
    loop_timer_stop(x->lp, &x->backoff);
    loop_timer_stop(x->lp, &x->total);
    if (x->in_call) {
        uclient_cancel(&x->call);
        if (x->spec.group)
            upstream_done(x->spec.group, &x->pick, false, false, true, x->spec.id,
                          loop_now_ms(x->lp));
    }
    exchange_free(x);
}

void
exchange_abort_all(void)
{
    while (!dlist_empty(&live)) {
        exchange *x = dlist_entry(live.first, exchange, live_link);
        loop_timer_stop(x->lp, &x->backoff);
        if (x->finished) { /* failed inside exchange_start, not delivered yet */
            live_remove(x);
            x->spec.done(x, x->spec.data);
            continue;
        }
        if (x->in_call) {
            uclient_cancel(&x->call);
            x->in_call = false;
            if (x->spec.group)
                upstream_done(x->spec.group, &x->pick, false, false, true, x->spec.id,
                              loop_now_ms(x->lp));
        }
        fail(x, 503, "the gateway is shutting down", DEFAULT_RETRY_AFTER_S);
    }
}
