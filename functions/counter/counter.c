/* counter.c -- the "counter" function: named counters kept in the gateway's
 * store, the example of a small backend with state hosted as a .so.
 *
 *   GET    /counter/{name}            200 {"name": "visits", "value": 3}
 *   POST   /counter/{name}[?by=N]     adds 1 (or N), 200 with the new value
 *   DELETE /counter/{name}            resets it, 200 with value 0
 *
 * A counter is the store key "counter:<name>". The module keeps no state of
 * its own, so every worker thread and every kapi process sharing the data
 * directory counts exactly, and the counts survive restarts. It does not
 * expire counters nor list them. */
#include <kapi/kapi.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_PREFIX "counter:"
#define MAX_NAME 128

/* ---- config ---- */

static size_t
skip_space(kapi_str s, size_t i)
{
    while (i < s.len &&
           (s.ptr[i] == ' ' || s.ptr[i] == '\t' || s.ptr[i] == '\r' || s.ptr[i] == '\n'))
        i++;
    return i;
}

/* The module takes no config: only an empty object is accepted. */
static kapi_status
counter_create(kapi_str config, void **instance, kapi_error *err)
{
    size_t i = skip_space(config, 0);
    bool empty = i < config.len && config.ptr[i] == '{';
    if (empty)
        i = skip_space(config, i + 1);
    empty =
        empty && i < config.len && config.ptr[i] == '}' && skip_space(config, i + 1) == config.len;
    *instance = NULL;
    if (empty)
        return KAPI_OK;
    return kapi_error_set(err, "", "counter takes no config keys: expected {}");
}

/* ---- handle ---- */

static const kapi_header json_headers[] = {
    {KAPI_STR("Content-Type"), KAPI_STR("application/json")},
};
static const kapi_header problem_headers[] = {
    {KAPI_STR("Content-Type"), KAPI_STR("application/problem+json")},
    {KAPI_STR("Allow"), KAPI_STR("GET, HEAD, POST, DELETE")},
};

/* Answers STATUS with a problem+json body; DETAIL is a literal with no
 * character that needs escaping. 405 also gets Allow. */
static kapi_action
problem(kapi_req *r, int status, const char *title, const char *detail)
{
    kapi_str id = KAPI_STR("");
    kapi_req_id(r, &id);
    size_t cap = 160 + strlen(title) + strlen(detail) + id.len;
    char *body = kapi_alloc(r, cap);
    if (!body)
        return KAPI_ERROR;
    int len = snprintf(body, cap,
                       "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d,"
                       "\"detail\":\"%s\",\"request_id\":\"%.*s\"}\n",
                       title, status, detail, (int)id.len, id.ptr);
    kapi_str b = {body, (size_t)len};
    return kapi_respond(r, status, problem_headers, status == 405 ? 2 : 1, b) == KAPI_OK
               ? KAPI_DONE
               : KAPI_ERROR;
}

/* Answers 200 {"name": NAME, "value": VALUE}. NAME needs no escaping. */
static kapi_action
reply(kapi_req *r, kapi_str name, int64_t value)
{
    size_t cap = name.len + 64;
    char *body = kapi_alloc(r, cap);
    if (!body)
        return KAPI_ERROR;
    int len = snprintf(body, cap, "{\"name\":\"%.*s\",\"value\":%lld}\n", (int)name.len, name.ptr,
                       (long long)value);
    kapi_str b = {body, (size_t)len};
    return kapi_respond(r, 200, json_headers, 1, b) == KAPI_OK ? KAPI_DONE : KAPI_ERROR;
}

/* Answers a store failure ST for the operation the client asked for. */
static kapi_action
store_failed(kapi_req *r, kapi_status st)
{
    switch (st) {
    case KAPI_EINVAL:
        return problem(r, 409, "Conflict", "the value is not a counter or would overflow");
    case KAPI_ETOOBIG: return problem(r, 507, "Insufficient Storage", "the store is full");
    case KAPI_ESTATE:
        return problem(r, 503, "Service Unavailable", "the gateway runs without a store");
    default: kapi_log(r, KAPI_LOG_ERROR, "store: %s", kapi_strerror(st)); return KAPI_ERROR;
    }
}

/* 1..MAX_NAME bytes of letters, digits, '.', '_' and '-': safe in keys,
 * logs and JSON without escaping. */
static bool
valid_name(kapi_str name)
{
    if (name.len == 0 || name.len > MAX_NAME)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        char c = name.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* The query parameter "by" as a decimal int64_t; 1 when absent. */
static bool
parse_by(kapi_req *r, int64_t *by)
{
    kapi_str v;
    *by = 1;
    if (kapi_req_query_param(r, KAPI_STR("by"), 0, &v) != KAPI_OK)
        return true;
    if (v.len == 0 || v.len > 20 || memchr(v.ptr, '\0', v.len) || v.ptr[0] == ' ')
        return false;
    char *end;
    errno = 0;
    long long n = strtoll(v.ptr, &end, 10); /* the view is NUL-terminated */
    if (errno != 0 || end != v.ptr + v.len)
        return false;
    *by = n;
    return true;
}

static bool
method_is(kapi_str m, const char *want)
{
    return m.len == strlen(want) && memcmp(m.ptr, want, m.len) == 0;
}

static kapi_action
counter_handle(void *instance, kapi_req *r)
{
    (void)instance;
    kapi_str method, name, value;
    char key[sizeof(KEY_PREFIX) + MAX_NAME];
    int64_t n = 0, by;
    kapi_status st;
    if (kapi_req_method(r, &method) != KAPI_OK)
        return KAPI_ERROR;
    if (kapi_req_path_param(r, KAPI_STR("name"), &name) != KAPI_OK) {
        kapi_log(r, KAPI_LOG_ERROR, "the route's path has no {name} parameter");
        return KAPI_ERROR;
    }
    if (!valid_name(name))
        return problem(r, 400, "Bad Request",
                       "a counter name is 1 to 128 letters, digits, '.', '_' or '-'");
    memcpy(key, KEY_PREFIX, sizeof(KEY_PREFIX) - 1);
    memcpy(key + sizeof(KEY_PREFIX) - 1, name.ptr, name.len);
    kapi_str k = {key, sizeof(KEY_PREFIX) - 1 + name.len};

    if (method_is(method, "GET") || method_is(method, "HEAD")) {
        st = kapi_store_get(r, k, &value);
        if (st == KAPI_ENOTFOUND)
            return reply(r, name, 0);
        if (st == KAPI_OK && (st = kapi_store_counter_value(value, &n)) == KAPI_OK)
            return reply(r, name, n);
        return store_failed(r, st);
    }
    if (method_is(method, "POST")) {
        if (!parse_by(r, &by))
            return problem(r, 400, "Bad Request", "by must be a decimal 64-bit integer");
        st = kapi_store_incr(r, k, by, 0, &n);
        return st == KAPI_OK ? reply(r, name, n) : store_failed(r, st);
    }
    if (method_is(method, "DELETE")) {
        st = kapi_store_delete(r, k);
        return st == KAPI_OK ? reply(r, name, 0) : store_failed(r, st);
    }
    return problem(r, 405, "Method Not Allowed", "use GET, HEAD, POST or DELETE");
}

/* ---- descriptor ---- */

static const kapi_module counter_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "counter",
    .version = "1.0.0",
    .kind = KAPI_MODULE_FUNCTION,
    .create = counter_create,
    .handle = counter_handle,
};

KAPI_MODULE(counter_module)
