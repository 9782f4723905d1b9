/* echo.c -- the "echo" function: answers any request with 200
 * application/json describing it (method, path, raw and decoded query,
 * configured path parameters, header lines in order, body, client, host and
 * request id), for trying routes and plugins out. jansson builds the JSON
 * inside the module; only the finished text crosses the ABI.
 * It does not echo path parameters it was not told about (the ABI has no
 * iterator for them), nor any response state. */
#include <kapi/kapi.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ---- */

/* {"params": [names]}: the path parameters to echo, default ["id"]. */
typedef struct echo {
    char **params;
    size_t nparams;
} echo;

static void
echo_free(echo *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->nparams; i++)
        free(e->params[i]);
    free(e->params);
    free(e);
}

/* Copies the NAMES array (already checked) into E. */
static kapi_status
copy_params(echo *e, json_t *names)
{
    size_t n = json_array_size(names);
    if (n && !(e->params = calloc(n, sizeof(*e->params))))
        return KAPI_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(e->params[i] = strdup(json_string_value(json_array_get(names, i)))))
            return KAPI_ENOMEM;
        e->nparams++;
    }
    return KAPI_OK;
}

static kapi_status
parse_config(json_t *root, json_t **params, kapi_error *err)
{
    const char *key;
    json_t *v;
    if (!json_is_object(root))
        return kapi_error_set(err, "", "expected an object");
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "params") != 0)
            return kapi_error_set(err, key, "unknown key (known: params)");
        if (!json_is_array(v))
            return kapi_error_set(err, key, "expected an array of strings");
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *name = json_array_get(v, i);
            if (!json_is_string(name) || json_string_length(name) == 0 ||
                strlen(json_string_value(name)) != json_string_length(name)) {
                char path[64];
                snprintf(path, sizeof(path), "params[%zu]", i);
                return kapi_error_set(err, path, "expected a non-empty string");
            }
        }
        *params = v;
    }
    return KAPI_OK;
}

/* ---- instance ---- */

static kapi_status
echo_create(kapi_str config, void **instance, kapi_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(config.ptr, config.len, 0, &jerr);
    if (!root) {
        kapi_error_set(err, "", "invalid JSON: %s", jerr.text);
        return KAPI_ECONFIG;
    }
    json_t *defaults = json_pack("[s]", "id");
    json_t *params = defaults;
    echo *e = NULL;
    kapi_status st = parse_config(root, &params, err);
    if (st == KAPI_OK && (!params || !(e = calloc(1, sizeof(*e)))))
        st = KAPI_ENOMEM;
    if (st == KAPI_OK)
        st = copy_params(e, params);
    if (st == KAPI_OK) {
        *instance = e;
        e = NULL;
    }
    echo_free(e);
    json_decref(defaults);
    json_decref(root);
    return st;
}

static void
echo_destroy(void *instance)
{
    echo_free(instance);
}

/* ---- handle ---- */

/* S as a JSON string; bytes that are not UTF-8 are read as ISO-8859-1 (what
 * obs-text in HTTP headers historically is) so every request can be echoed. */
static json_t *
text(kapi_req *r, kapi_str s)
{
    json_t *t = json_stringn(s.ptr, s.len);
    if (t)
        return t;
    char *u = kapi_alloc(r, s.len * 2 + 1);
    if (!u)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < 0x80) {
            u[n++] = (char)c;
        } else {
            u[n++] = (char)(0xc0 | c >> 6);
            u[n++] = (char)(0x80 | (c & 0x3f));
        }
    }
    return json_stringn(u, n);
}

/* Adds KEY: V to O, taking V's reference; false when V is NULL. */
static bool
put(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0;
}

/* Adds KEY: the view GET returns. */
static bool
put_view(kapi_req *r, json_t *o, const char *key, kapi_status (*get)(kapi_req *, kapi_str *))
{
    kapi_str s;
    return get(r, &s) == KAPI_OK && put(o, key, text(r, s));
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes a query name the way the host decodes names ('+' is a space, a
 * malformed escape stays literal), into the request arena. */
static bool
form_decode(kapi_req *r, const char *s, size_t len, kapi_str *out)
{
    char *d = kapi_alloc(r, len + 1);
    if (!d)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '+') {
            d[n++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && (hi = hexval(s[i + 1])) >= 0 &&
                   (lo = hexval(s[i + 2])) >= 0) {
            d[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            d[n++] = s[i];
        }
    }
    *out = (kapi_str){d, n};
    return true;
}

/* Adds NAME's values (every kapi_req_query_param index) to OUT once. */
static bool
add_query_param(kapi_req *r, json_t *out, kapi_str name)
{
    json_t *key = text(r, name);
    if (!key)
        return false;
    bool ok = true;
    if (!json_object_getn(out, json_string_value(key), json_string_length(key))) {
        json_t *values = json_array();
        kapi_str v;
        for (size_t i = 0; ok && values && kapi_req_query_param(r, name, i, &v) == KAPI_OK; i++)
            ok = json_array_append_new(values, text(r, v)) == 0;
        ok =
            ok && values &&
            json_object_setn_new(out, json_string_value(key), json_string_length(key), values) == 0;
        if (!ok)
            json_decref(values);
    }
    json_decref(key);
    return ok;
}

/* {"name": ["value", ...]} for every parameter of the raw query. */
static json_t *
query_params(kapi_req *r)
{
    kapi_str q;
    json_t *out = json_object();
    if (!out || kapi_req_query(r, &q) != KAPI_OK)
        goto fail;
    for (const char *p = q.ptr, *end = q.ptr + q.len; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        kapi_str name;
        if (pair_end > p && (!form_decode(r, p, (size_t)((eq ? eq : pair_end) - p), &name) ||
                             !add_query_param(r, out, name)))
            goto fail;
        p = pair_end + 1;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

static json_t *
path_params(kapi_req *r, const echo *e)
{
    json_t *out = json_object();
    for (size_t i = 0; out && i < e->nparams; i++) {
        kapi_str v;
        if (kapi_req_path_param(r, kapi_str_c(e->params[i]), &v) == KAPI_OK &&
            !put(out, e->params[i], text(r, v))) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* [["name", "value"], ...] in the order the header lines came. */
static json_t *
headers(kapi_req *r)
{
    json_t *out = json_array();
    kapi_header h;
    for (size_t i = 0; out && kapi_req_header_at(r, i, &h) == KAPI_OK; i++) {
        json_t *name = text(r, h.name), *value = text(r, h.value), *pair = json_array();
        bool ok = name && value && pair && json_array_append(pair, name) == 0 &&
                  json_array_append(pair, value) == 0 && json_array_append(out, pair) == 0;
        json_decref(name);
        json_decref(value);
        json_decref(pair);
        if (!ok) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static json_t *
base64(kapi_req *r, kapi_str s)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *d = kapi_alloc(r, (s.len + 2) / 3 * 4 + 1);
    if (!d)
        return NULL;
    const unsigned char *p = (const unsigned char *)s.ptr;
    size_t n = 0;
    for (size_t i = 0; i < s.len; i += 3) {
        size_t left = s.len - i;
        unsigned long v = (unsigned long)p[i] << 16 |
                          (left > 1 ? (unsigned long)p[i + 1] << 8 : 0) | (left > 2 ? p[i + 2] : 0);
        d[n++] = digits[v >> 18 & 63];
        d[n++] = digits[v >> 12 & 63];
        d[n++] = left > 1 ? digits[v >> 6 & 63] : '=';
        d[n++] = left > 2 ? digits[v & 63] : '=';
    }
    return json_stringn(d, n);
}

/* "body" when the body is UTF-8 text, else "body_base64". */
static bool
put_body(kapi_req *r, json_t *o)
{
    kapi_str b;
    if (kapi_req_body(r, &b) != KAPI_OK)
        return false;
    json_t *t = json_stringn(b.ptr, b.len);
    return t ? put(o, "body", t) : put(o, "body_base64", base64(r, b));
}

static const kapi_header json_headers[] = {
    {KAPI_STR("Content-Type"), KAPI_STR("application/json")},
};

static kapi_action
echo_handle(void *instance, kapi_req *r)
{
    const echo *e = instance;
    json_t *o = json_object();
    bool ok = o && put_view(r, o, "method", kapi_req_method) &&
              put_view(r, o, "path", kapi_req_path) && put_view(r, o, "query", kapi_req_query) &&
              put(o, "query_params", query_params(r)) && put(o, "path_params", path_params(r, e)) &&
              put(o, "headers", headers(r)) && put_body(r, o) &&
              put_view(r, o, "client", kapi_req_client_addr) &&
              put_view(r, o, "host", kapi_req_host) && put_view(r, o, "request_id", kapi_req_id);
    size_t len = ok ? json_dumpb(o, NULL, 0, JSON_COMPACT) : 0;
    char *buf = len ? kapi_alloc(r, len + 1) : NULL;
    ok = buf && json_dumpb(o, buf, len, JSON_COMPACT) == len;
    json_decref(o);
    if (!ok) {
        kapi_log(r, KAPI_LOG_ERROR, "could not build the echo document");
        return KAPI_ERROR;
    }
    buf[len] = '\n';
    kapi_str body = {buf, len + 1};
    return kapi_respond(r, 200, json_headers, 1, body) == KAPI_OK ? KAPI_DONE : KAPI_ERROR;
}

/* ---- descriptor ---- */

static const kapi_module echo_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "echo",
    .version = "1.0.0",
    .kind = KAPI_MODULE_FUNCTION,
    .create = echo_create,
    .destroy = echo_destroy,
    .handle = echo_handle,
};

KAPI_MODULE(echo_module)
