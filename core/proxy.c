/* proxy.c -- the proxy target (see proxy.h).
 *
 * handle() runs twice per request. The first call builds the upstream
 * request in the request's arena, starts the exchange and pauses. When the
 * exchange ends, its callback writes the client's response into the
 * request at once (the request's memory stays valid until the token is
 * resumed, even if the request was answered meanwhile by a drain) and
 * resumes; the second call only returns KAPI_DONE. So no exchange outlives
 * its request, whether or not the hook is called again.
 *
 * Headers: hop-by-hop ones and those the client's Connection header names
 * are dropped both ways; Host, X-Forwarded-For/-Proto/-Host, Via,
 * X-Request-Id and traceparent are the gateway's to set, whatever the
 * client sent. Content-Length is the server's (the body is buffered). */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange.h"
#include "log.h"
#include "problem.h"
#include "request.h"
#include "rng.h"

#define VIA_VALUE "1.1 kapi"

struct proxy_route {
    const config_route *route;
    upstream *group;
    const kapi_host *host;
};

typedef struct proxy_ctx {
    exchange *x;
    kapi_token *token;
    kapi_req *r;
    const proxy_route *pr;
    bool finished;
} proxy_ctx;

static _Thread_local uint64_t trace_rng[2];

/* ---- helpers shared with fetch.c ---- */

bool
proxy_hop_by_hop(kapi_str n)
{
    static const kapi_str names[] = {KAPI_STR("connection"), KAPI_STR("keep-alive"),
                                     KAPI_STR("te"),         KAPI_STR("trailer"),
                                     KAPI_STR("trailers"),   KAPI_STR("transfer-encoding"),
                                     KAPI_STR("upgrade")};
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
        if (req_str_ieq(n, names[i]))
            return true;
    return n.len >= 6 && req_str_ieq((kapi_str){n.ptr, 6}, KAPI_STR("proxy-"));
}

static bool
is_pchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~!$&'()*+,;=:@", c));
}

size_t
proxy_encode_path(const char *path, size_t len, bool segment, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        bool kept_escape = !segment && c == '%' && i + 2 < len && (path[i + 1] == '2') &&
                           (path[i + 2] == 'F' || path[i + 2] == '5');
        if (is_pchar(c) || (!segment && c == '/') || kept_escape) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    return n;
}

static void
hex64(uint64_t v, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

static bool
lower_hex(const char *s, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero = nonzero || s[i] != '0';
    }
    return nonzero;
}

void
proxy_traceparent(kapi_str in, uint64_t rng[2], char out[56])
{
    /* "00-" 32 hex trace id "-" 16 hex parent id "-" 2 hex flags */
    bool valid = in.len == 55 && memcmp(in.ptr, "00-", 3) == 0 && in.ptr[35] == '-' &&
                 in.ptr[52] == '-' && lower_hex(in.ptr + 3, 32) && lower_hex(in.ptr + 36, 16) &&
                 (lower_hex(in.ptr + 53, 2) || memcmp(in.ptr + 53, "00", 2) == 0);
    memcpy(out, "00-", 3);
    if (valid) {
        memcpy(out + 3, in.ptr + 3, 32);
        memcpy(out + 53, in.ptr + 53, 2);
    } else {
        uint64_t hi, lo;
        do {
            hi = rng_next(rng);
            lo = rng_next(rng);
        } while (!hi && !lo);
        hex64(hi, out + 3);
        hex64(lo, out + 19);
        memcpy(out + 53, "01", 2);
    }
    uint64_t span;
    do {
        span = rng_next(rng);
    } while (!span);
    out[35] = '-';
    hex64(span, out + 36);
    out[52] = '-';
    out[55] = '\0';
}

/* ---- the upstream request ---- */

/* True when one of the N headers H is a Connection header naming NAME
 * (a comma-separated token list: those headers are hop-by-hop too). */
static bool
named_by_connection(const kapi_header *h, size_t n, kapi_str name)
{
    for (size_t i = 0; i < n; i++) {
        if (!req_str_ieq(h[i].name, KAPI_STR("connection")))
            continue;
        const char *p = h[i].value.ptr, *end = p + h[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *start = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > start && req_str_ieq((kapi_str){start, (size_t)(p - start)}, name))
                return true;
        }
    }
    return false;
}

static bool
set_by_gateway(kapi_str n)
{
    static const kapi_str names[] = {KAPI_STR("host"),
                                     KAPI_STR("content-length"),
                                     KAPI_STR("expect"),
                                     KAPI_STR("x-forwarded-for"),
                                     KAPI_STR("x-forwarded-proto"),
                                     KAPI_STR("x-forwarded-host"),
                                     KAPI_STR("via"),
                                     KAPI_STR("x-request-id"),
                                     KAPI_STR("traceparent")};
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
        if (req_str_ieq(n, names[i]))
            return true;
    return false;
}

/* Joins every value of header NAME with ", " and appends EXTRA. */
static kapi_str
joined(kapi_req *r, kapi_str name, kapi_str extra)
{
    size_t len = extra.len;
    for (size_t i = 0; i < r->headers.n; i++)
        if (req_str_ieq(r->headers.v[i].name, name))
            len += r->headers.v[i].value.len + 2;
    char *out = arena_alloc(&r->arena, len + 1);
    if (!out)
        return extra;
    size_t n = 0;
    for (size_t i = 0; i < r->headers.n; i++) {
        const kapi_header *h = &r->headers.v[i];
        if (!req_str_ieq(h->name, name) || h->value.len == 0)
            continue;
        memcpy(out + n, h->value.ptr, h->value.len);
        n += h->value.len;
        memcpy(out + n, ", ", 2);
        n += 2;
    }
    memcpy(out + n, extra.ptr, extra.len);
    n += extra.len;
    out[n] = '\0';
    return (kapi_str){out, n};
}

static kapi_str
first_header(const kapi_req *r, kapi_str name)
{
    kapi_str v = {"", 0};
    req_headers_get(&r->headers, name, 0, &v);
    return v;
}

/* The upstream request's headers (without Host, which the exchange sets
 * per target unless the route preserves the client's). */
static kapi_status
build_headers(kapi_req *r, kapi_header **out, size_t *nout)
{
    size_t extra = 6;
    kapi_header *h = arena_alloc(&r->arena, (r->headers.n + extra) * sizeof(*h));
    char *tp = arena_alloc(&r->arena, 56);
    if (!h || !tp)
        return KAPI_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < r->headers.n; i++) {
        kapi_str name = r->headers.v[i].name;
        if (proxy_hop_by_hop(name) || set_by_gateway(name) ||
            named_by_connection(r->headers.v, r->headers.n, name))
            continue;
        h[n++] = r->headers.v[i];
    }
    proxy_traceparent(first_header(r, KAPI_STR("traceparent")), trace_rng, tp);
    kapi_str host = first_header(r, KAPI_STR("host"));
    h[n++] = (kapi_header){KAPI_STR("X-Forwarded-For"),
                           joined(r, KAPI_STR("x-forwarded-for"), r->client_addr)};
    h[n++] = (kapi_header){KAPI_STR("X-Forwarded-Proto"), KAPI_STR("http")};
    if (host.len)
        h[n++] = (kapi_header){KAPI_STR("X-Forwarded-Host"), host};
    h[n++] = (kapi_header){KAPI_STR("Via"), joined(r, KAPI_STR("via"), KAPI_STR(VIA_VALUE))};
    h[n++] = (kapi_header){KAPI_STR("X-Request-Id"), r->id};
    h[n++] = (kapi_header){KAPI_STR("traceparent"), (kapi_str){tp, 55}};
    *out = h;
    *nout = n;
    return KAPI_OK;
}

/* The value of path parameter NAME, or an empty view. */
static kapi_str
param(const kapi_req *r, kapi_str name)
{
    for (size_t i = 0; i < r->nparams; i++)
        if (r->param_names[i].len == name.len &&
            memcmp(r->param_names[i].ptr, name.ptr, name.len) == 0)
            return r->param_values[i];
    return (kapi_str){"", 0};
}

/* The path and query sent upstream: the route's template with its
 * parameters substituted, or the request's (normalized, after
 * strip_prefix) path; re-encoded; then the raw query. */
static kapi_status
build_path(kapi_req *r, const char *tmpl, kapi_str *out)
{
    size_t cap = 3 * r->path.len + r->query.len + 3;
    if (tmpl) {
        cap = 3 * strlen(tmpl) + r->query.len + 3;
        for (size_t i = 0; i < r->nparams; i++)
            cap += 3 * r->param_values[i].len;
    }
    char *p = arena_alloc(&r->arena, cap);
    if (!p)
        return KAPI_ENOMEM;
    size_t n = 0;
    if (!tmpl) {
        n = proxy_encode_path(r->path.ptr, r->path.len, false, p);
    } else {
        for (const char *t = tmpl; *t;) {
            const char *close = *t == '{' ? strchr(t, '}') : NULL;
            if (close) {
                kapi_str v = param(r, (kapi_str){t + 1, (size_t)(close - t - 1)});
                n += proxy_encode_path(v.ptr, v.len, true, p + n);
                t = close + 1;
            } else {
                const char *next = strchr(t, '{');
                size_t len = next ? (size_t)(next - t) : strlen(t);
                n += proxy_encode_path(t, len, false, p + n);
                t += len;
            }
        }
    }
    if (n == 0)
        p[n++] = '/';
    if (r->query.len) {
        p[n++] = '?';
        memcpy(p + n, r->query.ptr, r->query.len);
        n += r->query.len;
    }
    p[n] = '\0';
    *out = (kapi_str){p, n};
    return KAPI_OK;
}

static kapi_str
hash_key(const kapi_req *r, const config_upstream *u)
{
    if (u->balance != CONFIG_BALANCE_HASH)
        return (kapi_str){"", 0};
    switch (u->hash_on) {
    case CONFIG_HASH_HEADER: return first_header(r, (kapi_str){u->hash_key, strlen(u->hash_key)});
    case CONFIG_HASH_PARAM: return param(r, (kapi_str){u->hash_key, strlen(u->hash_key)});
    default: return r->client_addr;
    }
}

/* ---- the client's response ---- */

static void
write_response(kapi_req *r, exchange *x)
{
    const exchange_result *res = exchange_result_get(x);
    if (res->status == 0) {
        problem_respond(r, res->error_status, res->error);
        if (res->error_status == 503) {
            char s[16];
            snprintf(s, sizeof(s), "%u", res->retry_after_s);
            kapi_str v;
            if (req_strdup(r, s, strlen(s), &v) == KAPI_OK)
                req_headers_add(r, &r->resp_headers, KAPI_STR("Retry-After"), v);
        }
        return;
    }
    kapi_header *h = arena_alloc(&r->arena, (res->nheaders + 1) * sizeof(*h));
    if (!h) {
        problem_respond(r, 502, "the gateway is out of memory");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < res->nheaders; i++) {
        kapi_str name = res->headers[i].name;
        /* Content-Length follows the body, except in an answer to HEAD,
         * where it (or Transfer-Encoding: chunked) describes the body a GET
         * would get (server.c announces it). */
        bool head = req_str_ieq(r->method, KAPI_STR("HEAD"));
        bool te = req_str_ieq(name, KAPI_STR("transfer-encoding"));
        if ((proxy_hop_by_hop(name) && !(head && te)) ||
            (!head && req_str_ieq(name, KAPI_STR("content-length"))) ||
            req_str_ieq(name, KAPI_STR("x-request-id")) || req_str_ieq(name, KAPI_STR("via")) ||
            named_by_connection(res->headers, res->nheaders, name))
            continue;
        h[n++] = res->headers[i];
    }
    kapi_str via = {VIA_VALUE, sizeof(VIA_VALUE) - 1};
    for (size_t i = 0; i < res->nheaders; i++) {
        if (!req_str_ieq(res->headers[i].name, KAPI_STR("via")))
            continue;
        size_t len = res->headers[i].value.len + 2 + via.len;
        char *v = arena_alloc(&r->arena, len + 1);
        if (v) {
            snprintf(v, len + 1, "%.*s, %s", (int)res->headers[i].value.len,
                     res->headers[i].value.ptr, VIA_VALUE);
            via = (kapi_str){v, len};
        }
        break;
    }
    h[n++] = (kapi_header){KAPI_STR("Via"), via};
    /* The body is handed over, not copied (a 10 MB response stays one
     * buffer); the headers are copied into the arena. */
    size_t len;
    char *buf = exchange_take_body(x, &len);
    kapi_str body;
    if (req_set_response(r, res->status, h, n, (kapi_str){"", 0}) != KAPI_OK ||
        req_adopt(r, buf, len, &body) != KAPI_OK) {
        problem_respond(r, 502, "the upstream response could not be relayed");
        return;
    }
    r->resp_body = body;
}

static void
on_exchange_done(exchange *x, void *data)
{
    proxy_ctx *cx = data;
    const exchange_result *res = exchange_result_get(x);
    cx->r->upstream_url = res->target_url;
    cx->r->upstream_status = res->status;
    cx->r->upstream_tries = res->tries;
    cx->r->upstream_ms = res->elapsed_ms;
    write_response(cx->r, x);
    exchange_free(x);
    cx->x = NULL;
    cx->finished = true;
    kapi_token *t = cx->token;
    cx->token = NULL;
    cx->pr->host->resume(t);
}

static kapi_action
proxy_handle(void *instance, kapi_req *r)
{
    const proxy_route *pr = instance;
    const kapi_host *host = pr->host;
    proxy_ctx *cx = host->ctx(r);
    if (!cx) {
        problem_respond(r, 500, "the proxy has no request context");
        return KAPI_DONE;
    }
    if (cx->finished)
        return KAPI_DONE;
    const config_upstream *u = pr->group->cfg;
    kapi_header *headers;
    size_t n;
    kapi_str path;
    if (build_headers(r, &headers, &n) != KAPI_OK ||
        build_path(r, pr->route->target_path, &path) != KAPI_OK) {
        problem_respond(r, 500, "the gateway is out of memory");
        return KAPI_DONE;
    }
    exchange_spec *spec = arena_alloc(&r->arena, sizeof(*spec));
    if (!spec) {
        problem_respond(r, 500, "the gateway is out of memory");
        return KAPI_DONE;
    }
    *spec = (exchange_spec){
        .group = pr->group,
        .limits = u,
        .method = r->method,
        .path = path,
        .headers = headers,
        .nheaders = n,
        .host = u->preserve_host ? first_header(r, KAPI_STR("host")) : (kapi_str){"", 0},
        .body = r->body,
        .hash_key = hash_key(r, u),
        .id = r->id.ptr,
        .done = on_exchange_done,
        .data = cx,
    };
    cx->r = r;
    cx->pr = pr;
    /* The exchange's own total deadline answers 504 first; the pause
     * deadline is only a backstop. */
    kapi_status st = host->pause(r, u->timeout_ms + 5000, &cx->token);
    if (st != KAPI_OK) {
        problem_respond(r, 500, "the request could not be paused");
        return KAPI_DONE;
    }
    if ((st = exchange_start(spec, &cx->x)) != KAPI_OK) {
        kapi_token *t = cx->token;
        cx->token = NULL;
        cx->finished = true;
        problem_respond(r, 502, "the upstream request could not start");
        host->resume(t);
        return KAPI_PAUSE;
    }
    return KAPI_PAUSE;
}

static const kapi_module proxy_desc = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "proxy",
    .version = "builtin",
    .kind = KAPI_MODULE_FUNCTION,
    .req_ctx_size = sizeof(proxy_ctx),
    .handle = proxy_handle,
};

const kapi_module *
proxy_module(void)
{
    return &proxy_desc;
}

kapi_status
proxy_route_new(const config_route *cr, upstream *group, const kapi_host *host, proxy_route **out)
{
    proxy_route *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return KAPI_ENOMEM;
    pr->route = cr;
    pr->group = group;
    pr->host = host;
    *out = pr;
    return KAPI_OK;
}

void
proxy_route_free(proxy_route *pr)
{
    free(pr);
}
