/* proxy.c -- integration: the real kapi proxies to real test origins
 * (tests/origin). Method, path, query and body arrive as sent; strip_prefix,
 * a target's base path and a "path" template rewrite the path; hop-by-hop
 * headers are dropped both ways; the gateway sets X-Forwarded-*, Via,
 * X-Request-Id, Host and traceparent; transport failures become 502, 504 or
 * 503 problem+json that never show an internal address; keep-alive pools
 * reuse, bound and drop connections as configured, and survive a backend
 * that closes idle ones; 10 MB bodies pass both ways; https upstreams are
 * verified against the configured CA.
 *
 * One kapi (kh_group) with origins "main", "flaky" and "sick" serves the
 * request-shaped tests; the pool, idle-close and TLS tests start their own
 * kapi and origin so that the origin's /stats counters are theirs alone. */
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

/* The shared group: origins started before kapi, their ports in its config. */
static kh_origin o_main;   /* the well-behaved backend */
static kh_origin o_flaky;  /* /drop, /reset, /malformed: counted apart from main */
static kh_origin o_sick;   /* started --unhealthy: its /health answers 503 */
static unsigned dead_port; /* an origin's port after it stopped: refused */

static const char *group_config =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 2, \"log\": {\"level\": \"info\"},\n"
    "  \"limits\": { \"max_body_bytes\": 16777216 },\n"
    "  \"module_dirs\": [\"@FUNCS@\"],\n"
    "  \"upstreams\": {\n"
    "    \"main\": { \"targets\": [\"http://127.0.0.1:@P@\"] },\n"
    "    \"keep_host\": { \"targets\": [\"http://127.0.0.1:@P@\"],\n"
    "                   \"host_header\": \"preserve\" },\n"
    "    \"flaky\": { \"targets\": [\"http://127.0.0.1:@FLAKY@\"], \"keepalive\": 0,\n"
    "               \"retries\": 2,\n"
    "               \"retry_backoff_ms\": 0, \"breaker\": { \"failures\": 0 } },\n"
    "    \"slow_try\": { \"targets\": [\"http://127.0.0.1:@P@\"], \"try_timeout_ms\": 200,\n"
    "                  \"timeout_ms\": 5000, \"retries\": 1, \"retry_backoff_ms\": 0,\n"
    "                  \"breaker\": { \"failures\": 0 } },\n"
    "    \"slow_total\": { \"targets\": [\"http://127.0.0.1:@P@\"], \"timeout_ms\": 300,\n"
    "                    \"breaker\": { \"failures\": 0 } },\n"
    "    \"gone\": { \"targets\": [\"http://127.0.0.1:@DEAD@\"], \"retries\": 1,\n"
    "              \"retry_backoff_ms\": 0, \"breaker\": { \"failures\": 0 } },\n"
    "    \"sick\": { \"targets\": [\"http://127.0.0.1:@SICK@\", \"http://127.0.0.1:@DEAD@\"],\n"
    "              \"health\": { \"path\": \"/health\", \"interval_ms\": 100,\n"
    "                          \"unhealthy\": 1 } },\n"
    "    \"passive\": { \"targets\": [\"http://127.0.0.1:@DEAD@/p\"], \"retries\": 0,\n"
    "                 \"passive\": { \"failures\": 1 }, \"breaker\": { \"failures\": 0 } },\n"
    "    \"tripped\": { \"targets\": [\"http://127.0.0.1:@DEAD@/t\"], \"retries\": 0,\n"
    "                 \"breaker\": { \"failures\": 1, \"cooldown_ms\": 5000 } },\n"
    "    \"small\": { \"targets\": [\"http://127.0.0.1:@P@\"], \"max_response_bytes\": 1000,\n"
    "               \"retries\": 0, \"breaker\": { \"failures\": 0 } }\n"
    "  },\n"
    "  \"routes\": [\n"
    "    { \"name\": \"echo\", \"path\": \"/echo/*\", \"target\": { \"upstream\": \"main\" } },\n"
    "    { \"name\": \"body\", \"path\": \"/body\", \"target\": { \"upstream\": \"main\" } },\n"
    "    { \"name\": \"api\", \"path\": \"/api/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"main\" } },\n"
    "    { \"name\": \"based\", \"path\": \"/based/*\",\n"
    "      \"target\": { \"url\": \"http://127.0.0.1:@P@/echo/base/\" } },\n"
    "    { \"name\": \"user\", \"path\": \"/users/{id}\",\n"
    "      \"target\": { \"upstream\": \"main\", \"path\": \"/echo/u/{id}\" } },\n"
    "    { \"name\": \"item\", \"path\": \"/items/{id}/raw\",\n"
    "      \"target\": { \"upstream\": \"main\", \"path\": \"/echo/v2/items/{id}.json\" } },\n"
    "    { \"name\": \"keep_host\", \"path\": \"/keep-host/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"keep_host\" } },\n"
    "    { \"name\": \"flaky\", \"path\": \"/flaky/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"flaky\" } },\n"
    "    { \"name\": \"slow_try\", \"path\": \"/slow-try/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"slow_try\" } },\n"
    "    { \"name\": \"slow_total\", \"path\": \"/slow-total/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"slow_total\" } },\n"
    "    { \"name\": \"gone\", \"path\": \"/gone/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"gone\" } },\n"
    "    { \"name\": \"sick\", \"path\": \"/sick/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"sick\" } },\n"
    "    { \"name\": \"passive\", \"path\": \"/passive/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"passive\" } },\n"
    "    { \"name\": \"tripped\", \"path\": \"/tripped/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"tripped\" } },\n"
    "    { \"name\": \"small\", \"path\": \"/small/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"small\" } }\n"
    "  ] }\n";

/* ---- helpers ---- */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* TMPL with every @NAME@ of the NULL-terminated name/port pairs replaced. */
static char *
with_ports(const char *tmpl, ...)
{
    char *text = strdup(tmpl);
    va_list ap;
    va_start(ap, tmpl);
    for (const char *name; text && (name = va_arg(ap, const char *));) {
        char port[16];
        snprintf(port, sizeof(port), "%u", va_arg(ap, unsigned));
        char *next = kh_subst(text, name, port);
        free(text);
        text = next;
    }
    va_end(ap);
    return text;
}

static json_t *
parse_json(const kh_resp *r)
{
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %ld %s", e.text, r->status, r->body);
    return j;
}

/* METHOD PATH through kapi S to an /echo endpoint: asserts 200 and returns
 * the origin's JSON. OUT, when not NULL, keeps the response. */
static json_t *
echo_on(kh_server *s, const char *method, const char *path, const char *const *headers,
        const char *body, size_t body_len, kh_resp *out)
{
    kh_resp r;
    assert_int_equal(kh_request(s, method, path, headers, body, body_len, &r), 0);
    if (r.status != 200)
        fail_msg("%s %s: got %ld %s", method, path, r.status, r.body);
    json_t *j = parse_json(&r);
    if (out)
        *out = r;
    else
        kh_resp_free(&r);
    return j;
}

static json_t *
echo(const char *method, const char *path, const char *const *headers, const char *body,
     size_t body_len, kh_resp *out)
{
    return echo_on(&kh_group, method, path, headers, body, body_len, out);
}

static const char *
jstr(json_t *j, const char *key)
{
    const char *v = json_string_value(json_object_get(j, key));
    if (!v)
        fail_msg("no string \"%s\" in the origin's JSON", key);
    return v;
}

/* The INDEX-th value of header NAME the origin received (any case), or NULL. */
static const char *
origin_header(json_t *j, const char *name, size_t index)
{
    json_t *hs = json_object_get(j, "headers");
    size_t i;
    json_t *pair;
    json_array_foreach(hs, i, pair)
    {
        const char *n = json_string_value(json_array_get(pair, 0));
        if (n && strcasecmp(n, name) == 0 && index-- == 0)
            return json_string_value(json_array_get(pair, 1));
    }
    return NULL;
}

static size_t
origin_header_count(json_t *j, const char *name)
{
    size_t n = 0;
    while (origin_header(j, name, n))
        n++;
    return n;
}

/* How many header lines named NAME the client received. */
static size_t
resp_header_count(const kh_resp *r, const char *name)
{
    size_t n = 0, nl = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':')
            n++;
        line = end ? end + 2 : line + strlen(line);
    }
    return n;
}

static bool
lower_hex(const char *s, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        any = any || s[i] != '0';
    }
    return any || !nonzero;
}

/* A W3C traceparent of version 00: "00-<32 hex>-<16 hex>-<2 hex>". */
static void
assert_traceparent(const char *tp)
{
    if (!tp || strlen(tp) != 55 || strncmp(tp, "00-", 3) != 0 || tp[35] != '-' || tp[52] != '-' ||
        !lower_hex(tp + 3, 32, true) || !lower_hex(tp + 36, 16, true) ||
        !lower_hex(tp + 53, 2, false))
        fail_msg("not a valid traceparent: %s", tp ? tp : "(absent)");
}

/* A gateway error: STATUS as problem+json whose request_id is the
 * response's X-Request-Id, and no internal address in the body. */
static void
assert_gateway_error(const kh_resp *r, long status, unsigned port)
{
    char ct[128], id[256], portstr[16];
    if (r->status != status)
        fail_msg("got %ld, want %ld: %s", r->status, status, r->body);
    assert_non_null(kh_header(r, "Content-Type", ct, sizeof(ct)));
    assert_string_equal(ct, "application/problem+json");
    assert_non_null(kh_header(r, "X-Request-Id", id, sizeof(id)));
    json_t *j = parse_json(r);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
    assert_string_equal(jstr(j, "request_id"), id);
    assert_true(strlen(jstr(j, "detail")) > 0);
    json_decref(j);
    /* The request id is random hex: blank it before looking for the port. */
    char *body = strdup(r->body);
    for (char *p = strstr(body, id); p && *id; p = strstr(p, id))
        memset(p, '_', strlen(id));
    snprintf(portstr, sizeof(portstr), "%u", port);
    if (strstr(body, "127.0.0.1") || strstr(body, portstr))
        fail_msg("the %ld body shows an internal address (port %s): %s", status, portstr, r->body);
    free(body);
}

/* ---- the shared group ---- */

static int
group_setup(void **state)
{
    (void)state;
    kh_origin gone;
    if (kh_origin_start(&o_main, "main", NULL) != 0 ||
        kh_origin_start(&o_flaky, "flaky", NULL) != 0 ||
        kh_origin_start(&o_sick, "sick", (const char *[]){"--unhealthy", NULL}) != 0 ||
        kh_origin_start(&gone, "gone", NULL) != 0)
        return -1;
    dead_port = gone.port;
    kh_origin_stop(&gone);
    char *cfg = with_ports(group_config, "P", o_main.port, "FLAKY", o_flaky.port, "SICK",
                           o_sick.port, "DEAD", dead_port, (const char *)NULL);
    int rc = cfg ? kh_launch(&kh_group, cfg) : -1;
    free(cfg);
    return rc;
}

static int
group_teardown(void **state)
{
    (void)state;
    int rc = kh_stop(&kh_group);
    kh_origin_stop(&o_main);
    kh_origin_stop(&o_flaky);
    kh_origin_stop(&o_sick);
    return rc == 0 ? 0 : -1;
}

/* ---- 1. method, path, query and body ---- */

static void
test_method_target_and_body_forwarded(void **state)
{
    (void)state;
    /* %20 is decoded by normalization and re-encoded; %2F stays data. */
    const char *path = "/echo/a%20b/c%2Fd/~x?x=1&y=%2F%20z+w&e=&flag";
    const char *methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(*methods); i++) {
        bool has_body = strcmp(methods[i], "GET") != 0 && strcmp(methods[i], "DELETE") != 0;
        json_t *j = echo(methods[i], path, NULL, has_body ? "abc" : NULL, has_body ? 3 : 0, NULL);
        assert_string_equal(jstr(j, "method"), methods[i]);
        assert_string_equal(jstr(j, "target"), path);
        assert_string_equal(jstr(j, "query"), "x=1&y=%2F%20z+w&e=&flag");
        assert_string_equal(jstr(j, "http_version"), "1.1");
        assert_int_equal(json_integer_value(json_object_get(j, "body_len")), has_body ? 3 : 0);
        if (has_body) /* SHA-256("abc") */
            assert_string_equal(jstr(j, "body_sha256"),
                                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        json_decref(j);
    }

    /* A binary body (NULs, every byte value): same length and hash as when
     * it is sent to the origin directly. */
    size_t len = 65536 + 7;
    char *body = malloc(len);
    assert_non_null(body);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)((i * 131 + (i >> 8)) & 0xff);
    const char *ct[] = {"Content-Type: application/octet-stream", NULL};
    json_t *via = echo("POST", "/echo/bin", ct, body, len, NULL);
    kh_server direct = {.pid = -1, .port = o_main.port};
    json_t *ref = echo_on(&direct, "POST", "/echo/bin", ct, body, len, NULL);
    assert_int_equal(json_integer_value(json_object_get(via, "body_len")), len);
    assert_string_equal(jstr(via, "body_sha256"), jstr(ref, "body_sha256"));
    json_decref(via);
    json_decref(ref);
    free(body);
}

/* HEAD goes upstream as HEAD, and its answer declares the length a GET
 * would have, or none (RFC 9110 8.6: never a different Content-Length),
 * with no body. */
static void
test_head_keeps_the_get_length(void **state)
{
    (void)state;
    kh_resp r;
    char len[64];
    kh_origin_reset_stats(&o_main);
    assert_int_equal(kh_request(&kh_group, "HEAD", "/api/big/100", NULL, NULL, 0, &r), 0);
    long status = r.status;
    size_t body_len = r.body_len;
    bool wrong = kh_header(&r, "Content-Length", len, sizeof(len)) && strcmp(len, "100") != 0;
    kh_resp_free(&r);
    assert_int_equal(status, 200);
    assert_int_equal(body_len, 0);
    assert_int_equal(kh_origin_stat(&o_main, "requests"), 1);
    if (wrong)
        fail_msg("HEAD answered with Content-Length: %s; the GET has 100 bytes", len);

    /* A chunked GET has no length to announce: no "Content-Length: 0". */
    assert_int_equal(kh_request(&kh_group, "HEAD", "/api/chunked/100", NULL, NULL, 0, &r), 0);
    status = r.status;
    body_len = r.body_len;
    wrong = kh_header(&r, "Content-Length", len, sizeof(len)) && strcmp(len, "100") != 0;
    kh_resp_free(&r);
    assert_int_equal(status, 200);
    assert_int_equal(body_len, 0);
    if (wrong)
        fail_msg("HEAD of a chunked GET answered with Content-Length: %s (100 bytes)", len);
}

/* ---- 2. path rewriting ---- */

static void
expect_target(const char *path, const char *target)
{
    json_t *j = echo("GET", path, NULL, NULL, 0, NULL);
    if (strcmp(jstr(j, "target"), target) != 0)
        fail_msg("GET %s: the origin saw %s, want %s", path, jstr(j, "target"), target);
    json_decref(j);
}

static void
test_path_rewriting(void **state)
{
    (void)state;
    /* strip_prefix: "/api" goes, the rest and the query stay. */
    expect_target("/api/echo/x%20y?q=1", "/echo/x%20y?q=1");
    expect_target("/api/echo", "/echo");
    /* A target's base path ("/echo/base/", trailing slash dropped) comes first. */
    expect_target("/based/p?q=2", "/echo/base/based/p?q=2");
    expect_target("/based", "/echo/base/based");
    /* A path template, its parameter re-encoded as one segment. */
    expect_target("/users/42?x=1", "/echo/u/42?x=1");
    expect_target("/users/a%2Fb", "/echo/u/a%2Fb");
    expect_target("/users/a%2fb", "/echo/u/a%2Fb");
    expect_target("/users/a%20b", "/echo/u/a%20b");
    expect_target("/users/100%25", "/echo/u/100%25");
    expect_target("/users/%3F%23", "/echo/u/%3F%23");
    expect_target("/items/7/raw?v=1", "/echo/v2/items/7.json?v=1");
}

/* ---- 3. hop-by-hop headers ---- */

static void
test_hop_by_hop_dropped_both_ways(void **state)
{
    (void)state;
    const char *headers[] = {"Connection: X-Drop",
                             "X-Drop: 1",
                             "Keep-Alive: timeout=5",
                             "TE: trailers",
                             "Trailer: X-T",
                             "Upgrade: h2c",
                             "Proxy-Authorization: Basic c2VjcmV0",
                             "X-Keep: yes",
                             NULL};
    json_t *j = echo("GET", "/echo/hop", headers, NULL, 0, NULL);
    const char *gone[] = {"Connection", "X-Drop",  "Keep-Alive",         "TE",
                          "Trailer",    "Upgrade", "Proxy-Authorization"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(*gone); i++)
        if (origin_header(j, gone[i], 0))
            fail_msg("%s reached the origin: %s", gone[i], origin_header(j, gone[i], 0));
    assert_string_equal(origin_header(j, "X-Keep", 0), "yes");
    json_decref(j);

    /* Response: what /hop's Connection names and the hop-by-hop ones stay
     * at the gateway; the end-to-end X-Kept passes. */
    kh_resp r;
    char buf[256];
    assert_int_equal(kh_get(&kh_group, "/api/hop", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hop\n");
    const char *hidden[] = {"Connection",         "X-Conn-Named", "Keep-Alive",
                            "Proxy-Authenticate", "Trailer",      "Upgrade"};
    for (size_t i = 0; i < sizeof(hidden) / sizeof(*hidden); i++)
        if (kh_header(&r, hidden[i], buf, sizeof(buf)))
            fail_msg("%s reached the client: %s", hidden[i], buf);
    assert_string_equal(kh_header(&r, "X-Kept", buf, sizeof(buf)), "yes");
    assert_string_equal(kh_header(&r, "X-Origin", buf, sizeof(buf)), "main");
    kh_resp_free(&r);
}

/* ---- 4. headers the gateway sets ---- */

static void
test_forwarded_via_and_host(void **state)
{
    (void)state;
    const char *headers[] = {"Host: api.example.test",
                             "X-Forwarded-For: 1.2.3.4",
                             "X-Forwarded-Proto: https",
                             "X-Forwarded-Host: evil.test",
                             "Via: 1.0 edge",
                             NULL};
    kh_resp r;
    char buf[256], authority[64];
    json_t *j = echo("GET", "/echo/fwd", headers, NULL, 0, &r);
    assert_int_equal(origin_header_count(j, "X-Forwarded-For"), 1);
    assert_string_equal(origin_header(j, "X-Forwarded-For", 0), "1.2.3.4, 127.0.0.1");
    assert_int_equal(origin_header_count(j, "X-Forwarded-Proto"), 1);
    assert_string_equal(origin_header(j, "X-Forwarded-Proto", 0), "http");
    assert_int_equal(origin_header_count(j, "X-Forwarded-Host"), 1);
    assert_string_equal(origin_header(j, "X-Forwarded-Host", 0), "api.example.test");
    assert_int_equal(origin_header_count(j, "Via"), 1);
    assert_string_equal(origin_header(j, "Via", 0), "1.0 edge, 1.1 kapi");
    snprintf(authority, sizeof(authority), "127.0.0.1:%u", o_main.port);
    assert_int_equal(origin_header_count(j, "Host"), 1);
    assert_string_equal(origin_header(j, "Host", 0), authority);
    assert_string_equal(kh_header(&r, "Via", buf, sizeof(buf)), "1.1 kapi");
    json_decref(j);
    kh_resp_free(&r);

    /* Without client headers: X-Forwarded-For is the client alone. */
    j = echo("GET", "/echo/fwd", NULL, NULL, 0, NULL);
    assert_string_equal(origin_header(j, "X-Forwarded-For", 0), "127.0.0.1");
    assert_string_equal(origin_header(j, "Via", 0), "1.1 kapi");
    json_decref(j);

    /* host_header "preserve": the client's Host goes upstream. */
    const char *host[] = {"Host: client.example:8443", NULL};
    j = echo("GET", "/keep-host/echo/h", host, NULL, 0, NULL);
    assert_int_equal(origin_header_count(j, "Host"), 1);
    assert_string_equal(origin_header(j, "Host", 0), "client.example:8443");
    assert_string_equal(origin_header(j, "X-Forwarded-Host", 0), "client.example:8443");
    json_decref(j);

    /* A backend's Via is appended to on the way back. */
    assert_int_equal(kh_get(&kh_group, "/api/headers?Via=1.0%20backend", &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(resp_header_count(&r, "Via"), 1);
    assert_string_equal(kh_header(&r, "Via", buf, sizeof(buf)), "1.0 backend, 1.1 kapi");
    kh_resp_free(&r);
}

static void
test_request_id_forwarded(void **state)
{
    (void)state;
    kh_resp r;
    char id[256];
    const char *good[] = {"X-Request-Id: client-id.42", NULL};
    json_t *j = echo("GET", "/echo/id", good, NULL, 0, &r);
    assert_int_equal(origin_header_count(j, "X-Request-Id"), 1);
    assert_string_equal(origin_header(j, "X-Request-Id", 0), "client-id.42");
    assert_string_equal(kh_header(&r, "X-Request-Id", id, sizeof(id)), "client-id.42");
    json_decref(j);
    kh_resp_free(&r);

    const char *bad[] = {"X-Request-Id: has spaces \"and quotes\"", NULL};
    j = echo("GET", "/echo/id", bad, NULL, 0, &r);
    assert_non_null(kh_header(&r, "X-Request-Id", id, sizeof(id)));
    assert_int_equal(strlen(id), 32);
    assert_int_equal(origin_header_count(j, "X-Request-Id"), 1);
    assert_string_equal(origin_header(j, "X-Request-Id", 0), id);
    json_decref(j);
    kh_resp_free(&r);

    j = echo("GET", "/echo/id", NULL, NULL, 0, &r);
    assert_non_null(kh_header(&r, "X-Request-Id", id, sizeof(id)));
    assert_string_equal(origin_header(j, "X-Request-Id", 0), id);
    json_decref(j);
    kh_resp_free(&r);

    /* A backend cannot replace the gateway's id in the response. */
    assert_int_equal(
        kh_request(&kh_group, "GET", "/api/headers?X-Request-Id=spoofed", good, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(resp_header_count(&r, "X-Request-Id"), 1);
    assert_string_equal(kh_header(&r, "X-Request-Id", id, sizeof(id)), "client-id.42");
    kh_resp_free(&r);
}

static void
test_traceparent(void **state)
{
    (void)state;
    const char *trace = "4bf92f3577b34da6a3ce929d0e0e4736", *parent = "00f067aa0ba902b7";
    char in[128];
    snprintf(in, sizeof(in), "traceparent: 00-%s-%s-01", trace, parent);
    const char *valid[] = {in, NULL};
    json_t *j = echo("GET", "/echo/tp", valid, NULL, 0, NULL);
    assert_int_equal(origin_header_count(j, "traceparent"), 1);
    const char *tp = origin_header(j, "traceparent", 0);
    assert_traceparent(tp);
    assert_memory_equal(tp + 3, trace, 32);
    assert_memory_not_equal(tp + 36, parent, 16);
    assert_string_equal(tp + 53, "01");
    json_decref(j);

    /* The flags are kept too, not forced to "sampled". */
    snprintf(in, sizeof(in), "traceparent: 00-%s-%s-00", trace, parent);
    j = echo("GET", "/echo/tp", valid, NULL, 0, NULL);
    tp = origin_header(j, "traceparent", 0);
    assert_traceparent(tp);
    assert_memory_equal(tp + 3, trace, 32);
    assert_string_equal(tp + 53, "00");
    json_decref(j);

    /* Absent or malformed: a fresh trace, sampled. */
    const char *malformed[] = {
        NULL, /* absent */
        "traceparent: garbage",
        "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* upper case */
        "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace */
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero parent */
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    };
    char first[64] = "";
    for (size_t i = 0; i < sizeof(malformed) / sizeof(*malformed); i++) {
        const char *h[] = {malformed[i], NULL};
        j = echo("GET", "/echo/tp", h, NULL, 0, NULL);
        assert_int_equal(origin_header_count(j, "traceparent"), 1);
        tp = origin_header(j, "traceparent", 0);
        assert_traceparent(tp);
        if (memcmp(tp + 3, trace, 32) == 0)
            fail_msg("kept the trace id of malformed \"%s\": %s", malformed[i], tp);
        assert_string_equal(tp + 53, "01");
        if (i == 0)
            snprintf(first, sizeof(first), "%s", tp);
        else
            assert_memory_not_equal(tp + 3, first + 3, 32); /* each trace is new */
        json_decref(j);
    }
}

/* ---- 5. failures: 502, 504, 503 ---- */

static void
test_refused_is_502(void **state)
{
    (void)state;
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/gone/hello", &r), 0);
    assert_gateway_error(&r, 502, dead_port);
    kh_resp_free(&r);
    /* The address is for the operator: in the log, with the retry. */
    char needle[128];
    snprintf(needle, sizeof(needle), "gone: try 2 to http://127.0.0.1:%u failed", dead_port);
    assert_true(kh_wait_log(&kh_group, needle, 2000));
    assert_true(kh_log_has(&kh_group, "connection refused"));
    /* The access log line says which target answered how, after how many tries. */
    snprintf(needle, sizeof(needle),
             "\"upstream\":{\"url\":\"http://127.0.0.1:%u\",\"status\":0,\"tries\":2,", dead_port);
    assert_true(kh_wait_log(&kh_group, needle, 2000));
}

/* PATH on the flaky origin answers 502; the origin saw REQUESTS requests. */
static void
expect_flaky_502(const char *method, const char *path, long requests)
{
    kh_resp r;
    bool post = strcmp(method, "POST") == 0;
    kh_origin_reset_stats(&o_flaky);
    assert_int_equal(kh_request(&kh_group, method, path, NULL, post ? "x" : NULL, post, &r), 0);
    assert_gateway_error(&r, 502, o_flaky.port);
    kh_resp_free(&r);
    long seen = kh_origin_stat(&o_flaky, "requests");
    if (seen != requests)
        fail_msg("%s %s: the origin saw %ld requests, want %ld", method, path, seen, requests);
}

static void
test_broken_backends_are_502(void **state)
{
    (void)state;
    /* GET is idempotent: 1 try + 2 retries, each on a fresh connection
     * (keepalive 0, so no stale-connection resend adds to the count). */
    expect_flaky_502("GET", "/flaky/drop", 3);
    expect_flaky_502("GET", "/flaky/reset", 3);
    expect_flaky_502("GET", "/flaky/malformed", 3);
    expect_flaky_502("GET", "/flaky/drop-mid", 3);
    /* A POST that was sent is never sent again. */
    expect_flaky_502("POST", "/flaky/drop", 1);
    char needle[128];
    snprintf(needle, sizeof(needle), "flaky: try 3 to http://127.0.0.1:%u failed", o_flaky.port);
    assert_true(kh_wait_log(&kh_group, needle, 2000));
}

static void
test_slow_backend_is_504(void **state)
{
    (void)state;
    kh_resp r;
    /* try_timeout_ms 200, one retry: two tries, then 504. */
    kh_origin_reset_stats(&o_main);
    double t0 = now_s();
    assert_int_equal(kh_get(&kh_group, "/slow-try/slow/3000", &r), 0);
    double took = now_s() - t0;
    assert_gateway_error(&r, 504, o_main.port);
    kh_resp_free(&r);
    if (took < 0.35 || took > 2.0)
        fail_msg("504 after %.3f s, want two tries of 200 ms", took);
    assert_int_equal(kh_origin_stat(&o_main, "requests"), 2);

    /* timeout_ms 300 bounds all tries together. */
    t0 = now_s();
    assert_int_equal(kh_get(&kh_group, "/slow-total/slow/3000", &r), 0);
    took = now_s() - t0;
    assert_gateway_error(&r, 504, o_main.port);
    kh_resp_free(&r);
    if (took < 0.25 || took > 2.0)
        fail_msg("504 after %.3f s, want about 300 ms", took);
    char needle[128];
    snprintf(needle, sizeof(needle), "slow_try: try 2 to http://127.0.0.1:%u failed", o_main.port);
    assert_true(kh_wait_log(&kh_group, needle, 2000));
}

static long
retry_after(const kh_resp *r)
{
    char buf[64];
    if (!kh_header(r, "Retry-After", buf, sizeof(buf)))
        fail_msg("%ld without Retry-After: %s", r->status, r->headers);
    char *end;
    long v = strtol(buf, &end, 10);
    if (*end || v < 1)
        fail_msg("Retry-After is not a positive number of seconds: %s", buf);
    return v;
}

static void
test_no_target_up_is_503(void **state)
{
    (void)state;
    kh_resp r;
    char needle[128];

    /* Active checks mark both targets of "sick" down. */
    snprintf(needle, sizeof(needle), "sick: target http://127.0.0.1:%u is unhealthy", o_sick.port);
    assert_true(kh_wait_log(&kh_group, needle, 5000));
    snprintf(needle, sizeof(needle), "sick: target http://127.0.0.1:%u is unhealthy", dead_port);
    assert_true(kh_wait_log(&kh_group, needle, 5000));
    assert_int_equal(kh_get(&kh_group, "/sick/hello", &r), 0);
    assert_gateway_error(&r, 503, o_sick.port);
    retry_after(&r);
    kh_resp_free(&r);

    /* Passive: one failed request marks the only target down. */
    assert_int_equal(kh_get(&kh_group, "/passive/hello", &r), 0);
    assert_gateway_error(&r, 502, dead_port);
    kh_resp_free(&r);
    assert_int_equal(kh_get(&kh_group, "/passive/hello", &r), 0);
    assert_gateway_error(&r, 503, dead_port);
    retry_after(&r);
    kh_resp_free(&r);
    snprintf(needle, sizeof(needle), "passive: target http://127.0.0.1:%u/p is unhealthy",
             dead_port);
    assert_true(kh_wait_log(&kh_group, needle, 2000));

    /* Breaker: open for 5 s after one failure; Retry-After says so. */
    assert_int_equal(kh_get(&kh_group, "/tripped/hello", &r), 0);
    assert_gateway_error(&r, 502, dead_port);
    kh_resp_free(&r);
    assert_int_equal(kh_get(&kh_group, "/tripped/hello", &r), 0);
    assert_gateway_error(&r, 503, dead_port);
    long s = retry_after(&r);
    if (s > 5)
        fail_msg("Retry-After %ld, want at most the 5 s cooldown", s);
    if (s < 4)
        fail_msg("Retry-After %ld, want what is left of the 5 s cooldown", s);
    kh_resp_free(&r);
}

/* ---- 8. large bodies ---- */

/* A 10 MB exchange with its own libcurl handle: the body buffer grows by
 * doubling (kh_request's grows by each chunk, which is quadratic under
 * ASan, whose realloc always copies). */
typedef struct big_resp {
    long status;
    char *body;
    size_t len, cap;
    char content_type[64];
    bool has_length, chunked;
} big_resp;

static size_t
big_write(char *data, size_t size, size_t n, void *arg)
{
    big_resp *b = arg;
    size_t add = size * n;
    if (b->len + add > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + add)
            cap *= 2;
        char *p = realloc(b->body, cap);
        if (!p)
            return 0;
        b->body = p;
        b->cap = cap;
    }
    memcpy(b->body + b->len, data, add);
    b->len += add;
    return add;
}

static size_t
big_header(char *data, size_t size, size_t n, void *arg)
{
    big_resp *b = arg;
    size_t len = size * n;
    if (len > 15 && strncasecmp(data, "Content-Length:", 15) == 0)
        b->has_length = true;
    if (len > 18 && strncasecmp(data, "Transfer-Encoding:", 18) == 0)
        b->chunked = true;
    if (len > 13 && strncasecmp(data, "Content-Type:", 13) == 0) {
        const char *v = data + 13;
        while (v < data + len && *v == ' ')
            v++;
        size_t vl = (size_t)(data + len - v);
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
            vl--;
        snprintf(b->content_type, sizeof(b->content_type), "%.*s", (int)vl, v);
    }
    return len;
}

/* METHOD PATH on kapi with an optional BODY; 0 when a response arrived. */
static int
big_request(const char *method, const char *path, const char *body, size_t len, big_resp *out)
{
    memset(out, 0, sizeof(*out));
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", kh_group.port, path);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/x-test");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, big_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, big_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    else
        fprintf(stderr, "%s %s: %s\n", method, path, curl_easy_strerror(rc));
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return rc == CURLE_OK ? 0 : -1;
}

/* R is 200 with the N bytes of the origin's /big and /chunked. */
static void
assert_pattern(long status, const char *body, size_t len, size_t n)
{
    if (status != 200 || len != n)
        fail_msg("got %ld with %zu bytes, want 200 with %zu", status, len, n);
    for (size_t i = 0; i < n; i++)
        if (body[i] != (char)('a' + i % 26))
            fail_msg("byte %zu is %#x, want '%c'", i, (unsigned char)body[i], (char)('a' + i % 26));
}

static void
test_ten_megabytes_both_ways(void **state)
{
    (void)state;
    enum { N = 10 * 1024 * 1024 };
    static char body[N];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body[i] = (char)(x >> 24);
    }
    static big_resp r; /* static: nothing leaks when an assertion ends the test */
    free(r.body);
    assert_int_equal(big_request("POST", "/body", body, N, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, N);
    assert_true(memcmp(r.body, body, N) == 0);
    assert_string_equal(r.content_type, "application/x-test");
    free(r.body);

    assert_int_equal(big_request("GET", "/api/big/10485760", NULL, 0, &r), 0);
    assert_pattern(r.status, r.body, r.len, N);
    assert_true(r.has_length);
    free(r.body);
    assert_int_equal(big_request("GET", "/api/chunked/10485760", NULL, 0, &r), 0);
    assert_pattern(r.status, r.body, r.len, N);
    assert_false(r.has_length && r.chunked); /* re-framed: never both */
    free(r.body);
    r.body = NULL;
}

static void
test_max_response_bytes(void **state)
{
    (void)state;
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/small/big/1000", &r), 0); /* exactly the limit */
    assert_pattern(r.status, r.body, r.body_len, 1000);
    kh_resp_free(&r);
    assert_int_equal(kh_get(&kh_group, "/small/big/1001", &r), 0);
    assert_gateway_error(&r, 502, o_main.port);
    kh_resp_free(&r);
    assert_int_equal(kh_get(&kh_group, "/small/chunked/5000", &r), 0);
    assert_gateway_error(&r, 502, o_main.port);
    kh_resp_free(&r);
}

/* ---- tests with their own kapi and origin ---- */

/* The kapi and origin of one test; solo_teardown stops them even when an
 * assertion ended the test early. */
static struct solo {
    kh_server kapi;
    kh_origin origin;
} solo;

static int
solo_setup(void **state)
{
    (void)state;
    memset(&solo, 0, sizeof(solo));
    solo.kapi.pid = -1;
    solo.origin.pid = -1;
    return 0;
}

static int
solo_teardown(void **state)
{
    (void)state;
    int rc = solo.kapi.dir[0] ? kh_stop(&solo.kapi) : 0;
    kh_origin_stop(&solo.origin);
    return rc == 0 ? 0 : -1;
}

/* Starts the origin with ARGS, then kapi on TMPL with @P@ its port. */
static void
solo_start(const char *tmpl, const char *const *args)
{
    assert_int_equal(kh_origin_start(&solo.origin, "solo", args), 0);
    char *cfg = with_ports(tmpl, "P", solo.origin.port, (const char *)NULL);
    assert_non_null(cfg);
    int rc = kh_launch(&solo.kapi, cfg);
    free(cfg);
    assert_int_equal(rc, 0);
}

static const char *solo_config =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
    "  \"module_dirs\": [\"@FUNCS@\"],\n"
    "  \"upstreams\": { \"o\": { \"targets\": [\"http://127.0.0.1:@P@\"] @EXTRA@ } },\n"
    "  \"routes\": [ { \"path\": \"/*\", \"target\": { \"upstream\": \"o\" } } ] }\n";

static void
solo_start_with(const char *extra, const char *const *args)
{
    char *tmpl = kh_subst(solo_config, "EXTRA", extra);
    assert_non_null(tmpl);
    solo_start(tmpl, args);
    free(tmpl);
}

/* ---- 6. keep-alive pools ---- */

static void
test_sequential_requests_reuse_one_connection(void **state)
{
    (void)state;
    solo_start_with("", NULL);
    kh_origin_reset_stats(&solo.origin);
    for (int i = 0; i < 50; i++) {
        kh_resp r;
        assert_int_equal(kh_get(&solo.kapi, "/hello", &r), 0);
        if (r.status != 200 || strcmp(r.body, "hello\n") != 0)
            fail_msg("request %d: %ld %s", i, r.status, r.body);
        kh_resp_free(&r);
    }
    assert_int_equal(kh_origin_stat(&solo.origin, "requests"), 50);
    assert_int_equal(kh_origin_stat(&solo.origin, "connections"), 1);
}

typedef struct parallel_req {
    kh_server *kapi;
    pthread_t thread;
    long status;
    char body[16];
} parallel_req;

static void *
parallel_get(void *arg)
{
    parallel_req *p = arg;
    kh_resp r;
    p->status = kh_get(p->kapi, "/slow/50", &r) == 0 ? r.status : -1;
    snprintf(p->body, sizeof(p->body), "%s", r.body ? r.body : "");
    kh_resp_free(&r);
    return NULL;
}

static void
test_max_connections_bounds_the_pool(void **state)
{
    (void)state;
    enum { N = 40 };
    solo_start_with(", \"max_connections\": 4", NULL);
    kh_origin_reset_stats(&solo.origin);
    static parallel_req reqs[N];
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        reqs[i] = (parallel_req){.kapi = &solo.kapi};
        assert_int_equal(pthread_create(&reqs[i].thread, NULL, parallel_get, &reqs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(reqs[i].thread, NULL);
    double took = now_s() - t0;
    for (int i = 0; i < N; i++)
        if (reqs[i].status != 200 || strcmp(reqs[i].body, "slow\n") != 0)
            fail_msg("request %d: %ld %s", i, reqs[i].status, reqs[i].body);
    assert_int_equal(kh_origin_stat(&solo.origin, "requests"), N);
    long conns = kh_origin_stat(&solo.origin, "connections");
    if (conns < 1 || conns > 4)
        fail_msg("%ld origin connections for %d concurrent requests, want at most 4", conns, N);
    /* 40 requests of 50 ms through 4 connections take 10 rounds. */
    if (took < 0.45)
        fail_msg("40 requests took %.3f s: more than 4 ran at once", took);
}

static void
test_keepalive_zero_opens_a_connection_per_request(void **state)
{
    (void)state;
    solo_start_with(", \"keepalive\": 0", NULL);
    kh_origin_reset_stats(&solo.origin);
    for (int i = 0; i < 10; i++) {
        kh_resp r;
        assert_int_equal(kh_get(&solo.kapi, "/hello", &r), 0);
        assert_int_equal(r.status, 200);
        kh_resp_free(&r);
    }
    assert_int_equal(kh_origin_stat(&solo.origin, "requests"), 10);
    assert_int_equal(kh_origin_stat(&solo.origin, "connections"), 10);
}

/* ---- 7. a backend that closes idle connections ---- */

static void
test_backend_closing_idle_connections(void **state)
{
    (void)state;
    solo_start_with("", (const char *[]){"--keepalive-ms", "100", NULL});
    kh_origin_reset_stats(&solo.origin);
    /* POST too: a request that is not idempotent must not be lost either. */
    const char *methods[] = {"GET", "POST", "GET", "POST", "PUT"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(*methods); i++) {
        if (i)
            sleep_ms(300);
        bool body = strcmp(methods[i], "GET") != 0;
        kh_resp r;
        assert_int_equal(kh_request(&solo.kapi, methods[i], "/echo/idle", NULL, body ? "abc" : NULL,
                                    body ? 3 : 0, &r),
                         0);
        if (r.status != 200)
            fail_msg("%s after %zu x 300 ms idle: %ld %s", methods[i], i, r.status, r.body);
        kh_resp_free(&r);
    }
    assert_int_equal(kh_origin_stat(&solo.origin, "requests"), 5);
    assert_int_equal(kh_origin_stat(&solo.origin, "connections"), 5);
    assert_false(kh_log_has(&solo.kapi, " failed: "));
}

/* ---- 9. https upstreams ---- */

static const char *tls_config =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
    "  \"module_dirs\": [\"@FUNCS@\"],\n"
    "  \"upstreams\": {\n"
    "    \"secure\": { \"targets\": [\"https://127.0.0.1:@P@\"],\n"
    "                \"tls\": { \"ca_file\": \"cert.pem\" } },\n"
    "    \"noca\": { \"targets\": [\"https://127.0.0.1:@P@\"], \"retries\": 0,\n"
    "              \"breaker\": { \"failures\": 0 } },\n"
    "    \"insecure\": { \"targets\": [\"https://127.0.0.1:@P@\"],\n"
    "                  \"tls\": { \"verify\": false } }\n"
    "  },\n"
    "  \"routes\": [\n"
    "    { \"path\": \"/tls/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"secure\" } },\n"
    "    { \"path\": \"/noca/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"noca\" } },\n"
    "    { \"path\": \"/insecure/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"insecure\" } }\n"
    "  ] }\n";

static void
expect_body(kh_server *s, const char *path, long status, const char *body)
{
    kh_resp r;
    assert_int_equal(kh_get(s, path, &r), 0);
    if (r.status != status || (body && strcmp(r.body, body) != 0))
        fail_msg("GET %s: got %ld %s, want %ld %s", path, r.status, r.body, status,
                 body ? body : "*");
    kh_resp_free(&r);
}

static void
test_https_upstream(void **state)
{
    (void)state;
    if (system("command -v openssl >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipped: openssl is not installed (needed for a test certificate)\n");
        skip();
    }
    kh_server *kapi = &solo.kapi;
    assert_int_equal(kh_prepare(kapi, "{}"), 0);
    char cert[400], key[400], cmd[1200];
    snprintf(cert, sizeof(cert), "%s/cert.pem", kapi->dir);
    snprintf(key, sizeof(key), "%s/key.pem", kapi->dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' >/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(
        kh_origin_start(&solo.origin, "tls", (const char *[]){"--tls", cert, key, NULL}), 0);
    char *cfg = with_ports(tls_config, "P", solo.origin.port, (const char *)NULL);
    assert_non_null(cfg);
    assert_int_equal(kh_write_config(kapi, cfg), 0);
    free(cfg);
    assert_int_equal(kh_start(kapi), 0);

    expect_body(kapi, "/tls/hello", 200, "hello\n");
    json_t *j = echo_on(kapi, "POST", "/tls/echo/s%20p?q=1", NULL, "abc", 3, NULL);
    assert_string_equal(jstr(j, "target"), "/echo/s%20p?q=1");
    assert_string_equal(jstr(j, "body_sha256"),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    json_decref(j);

    /* Verification on, the system's CAs only: a self-signed origin is 502. */
    kh_resp r;
    assert_int_equal(kh_get(kapi, "/noca/hello", &r), 0);
    assert_gateway_error(&r, 502, solo.origin.port);
    kh_resp_free(&r);
    /* A connection opened without verification is not lent to a route
     * that verifies. */
    expect_body(kapi, "/insecure/hello", 200, "hello\n");
    assert_int_equal(kh_get(kapi, "/noca/hello", &r), 0);
    assert_gateway_error(&r, 502, solo.origin.port);
    kh_resp_free(&r);
    expect_body(kapi, "/tls/hello", 200, "hello\n");
}

int
main(void)
{
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_method_target_and_body_forwarded),
        cmocka_unit_test(test_head_keeps_the_get_length),
        cmocka_unit_test(test_path_rewriting),
        cmocka_unit_test(test_hop_by_hop_dropped_both_ways),
        cmocka_unit_test(test_forwarded_via_and_host),
        cmocka_unit_test(test_request_id_forwarded),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_refused_is_502),
        cmocka_unit_test(test_broken_backends_are_502),
        cmocka_unit_test(test_slow_backend_is_504),
        cmocka_unit_test(test_no_target_up_is_503),
        cmocka_unit_test(test_ten_megabytes_both_ways),
        cmocka_unit_test(test_max_response_bytes),
    };
#define SOLO(test) cmocka_unit_test_setup_teardown(test, solo_setup, solo_teardown)
    const struct CMUnitTest own[] = {
        SOLO(test_sequential_requests_reuse_one_connection),
        SOLO(test_max_connections_bounds_the_pool),
        SOLO(test_keepalive_zero_opens_a_connection_per_request),
        SOLO(test_backend_closing_idle_connections),
        SOLO(test_https_upstream),
    };
    int failed = cmocka_run_group_tests_name("proxy", shared, group_setup, group_teardown);
    failed += cmocka_run_group_tests_name("proxy_own_kapi", own, NULL, NULL);
    return failed;
}
