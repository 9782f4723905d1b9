/* t_fetch.c -- a test function module that fans out subrequests
 * (kapi_host.fetch, ABI 1.1) and answers with what each one got, for the
 * integration tests of fetch and for test_testhost.c's fake-host fetch.
 *
 * Config (all optional):
 *   "fetches"      array, default []: one subrequest each, in this order,
 *                  either {"upstream": "NAME", "path": "/x?q"} (path
 *                  default "", which the host sends as "/") or
 *                  {"url": "http://127.0.0.1:PORT/x"}. The strings go to
 *                  fetch() as they are, so a bad URL or an unknown upstream
 *                  is a result (see below), not a config error.
 *   "method"       string, default "GET": the method of every subrequest
 *   "timeout_ms"   integer 0..4294967295, default 0 (the host's default)
 *   "forward_body" boolean, default false: send the request's body along
 *   "headers"      object of strings, default {}: sent with every subrequest
 *
 * First call of handle: pause (kapi_pause with 0), start every fetch at
 * once, return KAPI_PAUSE. Each DONE stores its response in the request's
 * private context (reached through DATA: DONE runs outside any hook, where
 * kapi_ctx() is not available); the last one resumes the token. A fetch()
 * that fails at once is recorded with error_status 0 and
 * kapi_strerror(status) as its error and is not waited for; when none is
 * left to wait for, handle resumes the token itself. Second call: 200
 * application/json
 *
 *   {"results":[{"status":S,"error_status":E,"error":"...","body":"...",
 *                "body_len":N,"headers":{"x-origin":"..."}}, ...]}
 *
 * one result per configured fetch in config order, whatever order the
 * answers came in. "body" is the first 4 KiB of the body, JSON-escaped
 * like kapi_test_origin's /echo (valid UTF-8 as is, other bytes as
 * \u00XX); "body_len" the whole length; "headers" holds the response's
 * first X-Origin when it has one. With no fetch configured it answers at
 * once without pausing. The answer is written by hand: jansson parses the
 * config only. A test module, not an example of an aggregation API. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <kapi/kapi.h>

#include "t_config.h"

enum { BODY_SHOWN = 4096 };

/* ---- config ---- */

typedef struct fetch_spec {
    kapi_str upstream; /* empty for a URL fetch */
    kapi_str url;      /* the URL, or the path with UPSTREAM */
} fetch_spec;

typedef struct t_fetch {
    fetch_spec *fetches;
    size_t nfetches;
    kapi_str method;
    kapi_header *headers;
    size_t nheaders;
    uint32_t timeout_ms;
    bool forward_body;
} t_fetch;

/* A malloc'd, NUL-terminated copy of LEN bytes of S (which may hold NUL). */
static bool
copy_view(const char *s, size_t len, kapi_str *out)
{
    char *p = malloc(len + 1);
    if (!p)
        return false;
    memcpy(p, s, len);
    p[len] = '\0';
    *out = (kapi_str){p, len};
    return true;
}

static bool
copy_json_string(json_t *v, kapi_str *out)
{
    return copy_view(json_string_value(v), json_string_length(v), out);
}

static void
fetch_destroy(void *instance)
{
    t_fetch *tf = instance;
    if (!tf)
        return;
    for (size_t i = 0; i < tf->nfetches; i++) {
        free((char *)tf->fetches[i].upstream.ptr);
        free((char *)tf->fetches[i].url.ptr);
    }
    for (size_t i = 0; i < tf->nheaders; i++) {
        free((char *)tf->headers[i].name.ptr);
        free((char *)tf->headers[i].value.ptr);
    }
    free(tf->fetches);
    free(tf->headers);
    free((char *)tf->method.ptr);
    free(tf);
}

/* Reads fetches[I] (an object) into *OUT. */
static kapi_status
parse_fetch(json_t *entry, size_t i, fetch_spec *out, kapi_error *err)
{
    char path[64];
    snprintf(path, sizeof(path), "fetches[%zu]", i);
    if (!json_is_object(entry))
        return kapi_error_set(err, path, "expected object");
    json_t *up = json_object_get(entry, "upstream");
    json_t *url = json_object_get(entry, "url");
    json_t *p = json_object_get(entry, "path");
    if (!up && !url)
        return kapi_error_set(err, path, "expected \"upstream\" or \"url\"");
    if (up && url)
        return kapi_error_set(err, path, "expected \"upstream\" or \"url\", not both");
    if (url && p)
        return kapi_error_set(err, path, "\"path\" goes with \"upstream\", not \"url\"");
    const char *key = up ? "upstream" : "url";
    json_t *bad = up && !json_is_string(up) ? up : url && !json_is_string(url) ? url : NULL;
    if (!bad && p && !json_is_string(p)) {
        bad = p;
        key = "path";
    }
    if (bad) {
        snprintf(path, sizeof(path), "fetches[%zu].%s", i, key);
        return kapi_error_set(err, path, "expected string");
    }
    bool ok = up ? copy_json_string(up, &out->upstream) &&
                       (p ? copy_json_string(p, &out->url) : copy_view("", 0, &out->url))
                 : copy_view("", 0, &out->upstream) && copy_json_string(url, &out->url);
    return ok ? KAPI_OK : kapi_error_set(err, path, "out of memory");
}

static kapi_status
parse_headers(json_t *obj, t_fetch *tf, kapi_error *err)
{
    if (!obj)
        return KAPI_OK;
    if (!json_is_object(obj))
        return kapi_error_set(err, "headers", "expected object");
    if (!(tf->headers = calloc(json_object_size(obj) + 1, sizeof(*tf->headers))))
        return kapi_error_set(err, "headers", "out of memory");
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
        const char *name = json_object_iter_key(it);
        json_t *v = json_object_iter_value(it);
        if (!json_is_string(v)) {
            char path[160];
            snprintf(path, sizeof(path), "headers.%s", name);
            return kapi_error_set(err, path, "expected string");
        }
        kapi_header *h = &tf->headers[tf->nheaders];
        if (!copy_view(name, strlen(name), &h->name))
            return kapi_error_set(err, "headers", "out of memory");
        tf->nheaders++;
        if (!copy_json_string(v, &h->value))
            return kapi_error_set(err, "headers", "out of memory");
    }
    return KAPI_OK;
}

static kapi_status
fetch_create(kapi_str config, void **instance, kapi_error *err)
{
    json_t *root = t_config_parse(config, err);
    if (!root)
        return KAPI_ECONFIG;
    const char *method;
    long long timeout_ms;
    bool forward_body;
    kapi_status st;
    t_fetch *tf = NULL;
    if ((st = t_config_string(root, "method", "GET", &method, err)) != KAPI_OK ||
        (st = t_config_int(root, "timeout_ms", 0, 0, UINT32_MAX, &timeout_ms, err)) != KAPI_OK ||
        (st = t_config_bool(root, "forward_body", false, &forward_body, err)) != KAPI_OK)
        goto out;
    json_t *fetches = json_object_get(root, "fetches");
    if (fetches && !json_is_array(fetches)) {
        st = kapi_error_set(err, "fetches", "expected array");
        goto out;
    }
    size_t n = fetches ? json_array_size(fetches) : 0;
    if (!(tf = calloc(1, sizeof(*tf))) || !(tf->fetches = calloc(n + 1, sizeof(*tf->fetches))) ||
        !copy_view(method, strlen(method), &tf->method)) {
        st = kapi_error_set(err, "", "out of memory");
        goto out;
    }
    tf->timeout_ms = (uint32_t)timeout_ms;
    tf->forward_body = forward_body;
    for (size_t i = 0; i < n; i++) {
        st = parse_fetch(json_array_get(fetches, i), i, &tf->fetches[i], err);
        tf->nfetches = i + 1; /* what parse_fetch copied is freed with TF */
        if (st != KAPI_OK)
            goto out;
    }
    if ((st = parse_headers(json_object_get(root, "headers"), tf, err)) != KAPI_OK)
        goto out;
    *instance = tf;
    tf = NULL;
out:
    fetch_destroy(tf);
    json_decref(root);
    return st;
}

/* ---- per-request state ---- */

typedef struct fetch_ctx fetch_ctx;

/* What one configured fetch got; its views are request-scoped. */
typedef struct fetch_result {
    fetch_ctx *ctx; /* DONE's way back to the request's context */
    int status, error_status;
    kapi_str error, body;
    kapi_str origin; /* the first X-Origin; ptr NULL when none */
} fetch_result;

/* The private context (req_ctx_size). */
struct fetch_ctx {
    bool started;
    size_t pending; /* fetches whose DONE has not run yet */
    kapi_token *token;
    fetch_result *results; /* one per configured fetch, from kapi_alloc */
};

/* ---- the answer: a two-pass writer, measuring when P is NULL ---- */

typedef struct writer {
    char *p;
    size_t len;
} writer;

static void
put(writer *w, const char *s, size_t n)
{
    if (w->p)
        memcpy(w->p + w->len, s, n);
    w->len += n;
}

#define PUT_LIT(w, lit) put((w), "" lit, sizeof(lit) - 1)

static void
put_int(writer *w, long long v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%lld", v);
    put(w, b, (size_t)n);
}

/* The length of the well-formed UTF-8 sequence at S (2..4 bytes of N), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
    if (s[0] < 0xc2 || s[0] > 0xf4)
        return 0;
    unsigned cp = s[0] & (0x7fu >> len);
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* S as a JSON string: valid UTF-8 as is, other bytes as \u00XX. */
static void
put_json(writer *w, kapi_str s)
{
    const unsigned char *u = (const unsigned char *)s.ptr;
    PUT_LIT(w, "\"");
    for (size_t i = 0; i < s.len;) {
        size_t n;
        if (u[i] == '"' || u[i] == '\\') {
            char esc[2] = {'\\', (char)u[i++]};
            put(w, esc, 2);
        } else if (u[i] >= 0x20 && u[i] < 0x7f) {
            put(w, s.ptr + i++, 1);
        } else if (u[i] >= 0x80 && (n = utf8_len(u + i, s.len - i)) != 0) {
            put(w, s.ptr + i, n);
            i += n;
        } else {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", u[i++]);
            put(w, esc, 6);
        }
    }
    PUT_LIT(w, "\"");
}

static void
put_results(writer *w, const fetch_result *res, size_t n)
{
    PUT_LIT(w, "{\"results\":[");
    for (size_t i = 0; i < n; i++) {
        const fetch_result *x = &res[i];
        kapi_str shown = {x->body.ptr, x->body.len < BODY_SHOWN ? x->body.len : BODY_SHOWN};
        if (i)
            PUT_LIT(w, ",");
        PUT_LIT(w, "{\"status\":");
        put_int(w, x->status);
        PUT_LIT(w, ",\"error_status\":");
        put_int(w, x->error_status);
        PUT_LIT(w, ",\"error\":");
        put_json(w, x->error);
        PUT_LIT(w, ",\"body\":");
        put_json(w, shown);
        PUT_LIT(w, ",\"body_len\":");
        put_int(w, (long long)x->body.len);
        PUT_LIT(w, ",\"headers\":{");
        if (x->origin.ptr) {
            PUT_LIT(w, "\"x-origin\":");
            put_json(w, x->origin);
        }
        PUT_LIT(w, "}}");
    }
    PUT_LIT(w, "]}");
}

static kapi_action
respond_results(kapi_req *r, const fetch_result *res, size_t n)
{
    writer w = {NULL, 0};
    put_results(&w, res, n);
    if (!(w.p = kapi_alloc(r, w.len + 1)))
        return KAPI_ERROR;
    w.len = 0;
    put_results(&w, res, n);
    const kapi_header h = {KAPI_STR("Content-Type"), KAPI_STR("application/json")};
    return kapi_respond(r, 200, &h, 1, (kapi_str){w.p, w.len}) == KAPI_OK ? KAPI_DONE : KAPI_ERROR;
}

/* ---- hooks ---- */

/* DONE of one fetch: runs between hooks, so it reaches the context through
 * DATA (its result slot), never through kapi_ctx(). */
static void
fetch_done(kapi_req *r, void *data, const kapi_fetch_response *res)
{
    (void)r;
    fetch_result *out = data;
    out->status = res->status;
    out->error_status = res->error_status;
    out->error = res->error;
    out->body = res->body;
    for (size_t i = 0; i < res->nheaders && !out->origin.ptr; i++)
        if (res->headers[i].name.len == 8 &&
            strncasecmp(res->headers[i].name.ptr, "x-origin", 8) == 0)
            out->origin = res->headers[i].value;
    fetch_ctx *c = out->ctx;
    if (--c->pending == 0)
        kapi_resume(c->token);
}

static kapi_action
fetch_handle(void *instance, kapi_req *r)
{
    const t_fetch *tf = instance;
    fetch_ctx *c = kapi_ctx(r);
    if (!c)
        return KAPI_ERROR;
    if (c->started || tf->nfetches == 0)
        return respond_results(r, c->results, c->started ? tf->nfetches : 0);

    kapi_str body = {"", 0};
    if ((tf->forward_body && kapi_req_body(r, &body) != KAPI_OK) ||
        !(c->results = kapi_alloc(r, tf->nfetches * sizeof(*c->results))) ||
        kapi_pause(r, 0, &c->token) != KAPI_OK)
        return KAPI_ERROR;
    c->started = true;
    for (size_t i = 0; i < tf->nfetches; i++) {
        fetch_result *res = &c->results[i];
        res->ctx = c;
        const kapi_fetch_request f = {
            .method = tf->method,
            .upstream = tf->fetches[i].upstream,
            .url = tf->fetches[i].url,
            .headers = tf->headers,
            .nheaders = tf->nheaders,
            .body = body,
            .timeout_ms = tf->timeout_ms,
        };
        kapi_status st = kapi_fetch(r, &f, fetch_done, res);
        if (st == KAPI_OK)
            c->pending++;
        else
            res->error = kapi_str_c(kapi_strerror(st));
    }
    /* Nothing to wait for: the token must still be resumed exactly once,
     * and the host then calls handle again. */
    if (c->pending == 0)
        kapi_resume(c->token);
    return KAPI_PAUSE;
}

static const kapi_module t_fetch_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "t_fetch",
    .version = "1.0.0",
    .kind = KAPI_MODULE_FUNCTION,
    .req_ctx_size = sizeof(fetch_ctx),
    .create = fetch_create,
    .destroy = fetch_destroy,
    .handle = fetch_handle,
};

KAPI_MODULE(t_fetch_module)
