/* fetch.c -- integration: module subrequests (kapi_host.fetch) from the
 * real kapi to real test origins, through the t_fetch test function. Two
 * fetches run in parallel (one to a named upstream, one to a URL) and come
 * back in config order; a fetch to a stopped origin fails alone with 502;
 * an unknown upstream is refused at once with KAPI_ENOTFOUND; every fetch
 * carries the client request's X-Request-Id and trace id, whatever the
 * module tried to send instead. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_template =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1, \"module_dirs\": [\"@TMODS@\"],\n"
    "  \"upstreams\": { \"up1\": { \"targets\": [\"http://127.0.0.1:@F1@\"] } },\n"
    "  \"routes\": [\n"
    "    { \"path\": \"/par\", \"target\": { \"function\": \"t_fetch\", \"config\": {\n"
    "        \"fetches\": [ { \"upstream\": \"up1\", \"path\": \"/slow/300\" },\n"
    "                     { \"url\": \"http://127.0.0.1:@F2@/slow/300\" } ] } } },\n"
    "    { \"path\": \"/order\", \"target\": { \"function\": \"t_fetch\", \"config\": {\n"
    "        \"fetches\": [ { \"upstream\": \"up1\", \"path\": \"/slow/300\" },\n"
    "                     { \"url\": \"http://127.0.0.1:@F2@/big/3\" } ] } } },\n"
    "    { \"path\": \"/dead\", \"target\": { \"function\": \"t_fetch\", \"config\": {\n"
    "        \"fetches\": [ { \"url\": \"http://127.0.0.1:@DEAD@/hello\" },\n"
    "                     { \"upstream\": \"up1\", \"path\": \"/hello\" } ] } } },\n"
    "    { \"path\": \"/unknown\", \"target\": { \"function\": \"t_fetch\", \"config\": {\n"
    "        \"fetches\": [ { \"upstream\": \"nope\", \"path\": \"/hello\" },\n"
    "                     { \"url\": \"http://127.0.0.1:@F2@/hello\" } ] } } },\n"
    "    { \"path\": \"/ids\", \"target\": { \"function\": \"t_fetch\", \"config\": {\n"
    "        \"headers\": { \"X-Request-Id\": \"forged\", \"X-Custom\": \"kept\",\n"
    "          \"traceparent\":\n"
    "            \"00-11111111111111111111111111111111-2222222222222222-01\" },\n"
    "        \"fetches\": [ { \"upstream\": \"up1\", \"path\": \"/echo/a\" },\n"
    "                     { \"url\": \"http://127.0.0.1:@F2@/echo/b\" } ] } } }\n"
    "  ] }\n";

static kh_origin f1, f2;

/* ---- helpers ---- */

/* GET PATH with HEADERS through kapi: asserts a 200 JSON answer and
 * returns its "results" (2 of them), owned by *ROOT (json_decref). */
static json_t *
fetch_results(const char *path, const char *const *headers, json_t **root, kh_resp *r)
{
    assert_int_equal(kh_request(&kh_group, "GET", path, headers, NULL, 0, r), 0);
    if (r->status != 200)
        fail_msg("GET %s: %ld %s", path, r->status, r->body);
    json_error_t err;
    *root = json_loads(r->body, 0, &err);
    if (!*root)
        fail_msg("GET %s: not JSON (%s): %s", path, err.text, r->body);
    json_t *results = json_object_get(*root, "results");
    assert_true(json_is_array(results));
    assert_int_equal(json_array_size(results), 2);
    return results;
}

static long
int_of(json_t *result, const char *key)
{
    json_t *v = json_object_get(result, key);
    assert_true(json_is_integer(v));
    return (long)json_integer_value(v);
}

static const char *
str_of(json_t *result, const char *key)
{
    json_t *v = json_object_get(result, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static const char *
origin_of(json_t *result)
{
    json_t *v = json_object_get(json_object_get(result, "headers"), "x-origin");
    return json_is_string(v) ? json_string_value(v) : "";
}

/* A successful result: STATUS, no error, body BODY, from origin ORIGIN. */
static void
expect_ok(json_t *result, long status, const char *body, const char *origin)
{
    assert_int_equal(int_of(result, "status"), status);
    assert_int_equal(int_of(result, "error_status"), 0);
    assert_string_equal(str_of(result, "error"), "");
    assert_string_equal(str_of(result, "body"), body);
    assert_int_equal(int_of(result, "body_len"), (long)strlen(body));
    assert_string_equal(origin_of(result), origin);
}

/* The value of header NAME (exact case) in the /echo body of RESULT;
 * fails unless it was sent exactly once. Copied into OUT. */
static void
echoed_header(json_t *result, const char *name, char *out, size_t len)
{
    json_error_t err;
    json_t *echo = json_loads(str_of(result, "body"), 0, &err);
    if (!echo)
        fail_msg("/echo body is not JSON: %s", err.text);
    json_t *headers = json_object_get(echo, "headers");
    assert_true(json_is_array(headers));
    int seen = 0;
    size_t i;
    json_t *pair;
    json_array_foreach(headers, i, pair)
    {
        const char *n = json_string_value(json_array_get(pair, 0));
        if (n && strcasecmp(n, name) == 0) {
            snprintf(out, len, "%s", json_string_value(json_array_get(pair, 1)));
            seen++;
        }
    }
    json_decref(echo);
    if (seen != 1)
        fail_msg("the fetch carried %d %s headers", seen, name);
}

/* ---- tests ---- */

/* Two fetches of 300 ms each, one to upstream up1 (origin f1), one to a
 * URL of origin f2: both answers, in order, in well under 600 ms. */
static void
test_parallel_fetches(void **state)
{
    (void)state;
    json_t *root;
    kh_resp r;
    json_t *res = fetch_results("/par", NULL, &root, &r);
    expect_ok(json_array_get(res, 0), 200, "slow\n", "f1");
    expect_ok(json_array_get(res, 1), 200, "slow\n", "f2");
    if (r.total_s < 0.29 || r.total_s > 0.5)
        fail_msg("two parallel 300 ms fetches took %.0f ms", r.total_s * 1000);
    json_decref(root);
    kh_resp_free(&r);
}

/* The second fetch answers first; results still follow the config. */
static void
test_results_in_config_order(void **state)
{
    (void)state;
    json_t *root;
    kh_resp r;
    json_t *res = fetch_results("/order", NULL, &root, &r);
    expect_ok(json_array_get(res, 0), 200, "slow\n", "f1");
    expect_ok(json_array_get(res, 1), 200, "abc", "f2");
    json_decref(root);
    kh_resp_free(&r);
}

/* A stopped origin: that fetch alone fails, with the 502 a proxy would
 * give and a reason that names no internal address. */
static void
test_fetch_to_stopped_origin(void **state)
{
    (void)state;
    json_t *root;
    kh_resp r;
    json_t *res = fetch_results("/dead", NULL, &root, &r);
    json_t *dead = json_array_get(res, 0);
    assert_int_equal(int_of(dead, "status"), 0);
    assert_int_equal(int_of(dead, "error_status"), 502);
    const char *why = str_of(dead, "error");
    assert_true(why[0] != '\0');
    assert_null(strstr(why, "127.0.0.1"));
    expect_ok(json_array_get(res, 1), 200, "hello\n", "f1");
    json_decref(root);
    kh_resp_free(&r);
}

/* No upstream "nope": fetch() refuses at once with KAPI_ENOTFOUND, whose
 * kapi_strerror text the module records; the other fetch still runs. */
static void
test_unknown_upstream(void **state)
{
    (void)state;
    json_t *root;
    kh_resp r;
    json_t *res = fetch_results("/unknown", NULL, &root, &r);
    json_t *bad = json_array_get(res, 0);
    assert_int_equal(int_of(bad, "status"), 0);
    assert_int_equal(int_of(bad, "error_status"), 0);
    assert_string_equal(str_of(bad, "error"), "not found"); /* kapi_strerror(KAPI_ENOTFOUND) */
    expect_ok(json_array_get(res, 1), 200, "hello\n", "f2");
    json_decref(root);
    kh_resp_free(&r);
}

/* Both fetches carry the client's X-Request-Id and a traceparent in the
 * client's trace with a new span, in place of the module's own; the
 * module's other headers go through. */
static void
test_fetch_carries_request_id_and_trace(void **state)
{
    (void)state;
    const char *trace = "0af7651916cd43dd8448eb211c80319c";
    const char *const headers[] = {
        "X-Request-Id: it-fetch-42",
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL};
    json_t *root;
    kh_resp r;
    json_t *res = fetch_results("/ids", headers, &root, &r);
    for (size_t i = 0; i < 2; i++) {
        json_t *one = json_array_get(res, i);
        assert_int_equal(int_of(one, "status"), 200);
        char v[128];
        echoed_header(one, "X-Request-Id", v, sizeof(v));
        assert_string_equal(v, "it-fetch-42");
        echoed_header(one, "traceparent", v, sizeof(v));
        assert_int_equal(strlen(v), 55);
        assert_memory_equal(v, "00-", 3);
        assert_memory_equal(v + 3, trace, 32);
        assert_true(strncmp(v + 36, "b7ad6b7169203331", 16) != 0); /* a new span */
        echoed_header(one, "X-Custom", v, sizeof(v));
        assert_string_equal(v, "kept");
    }
    json_decref(root);
    kh_resp_free(&r);

    /* Without a client id the fetch carries the one kapi gave the request. */
    res = fetch_results("/ids", NULL, &root, &r);
    char id[160], sent[160];
    assert_non_null(kh_header(&r, "x-request-id", id, sizeof(id)));
    for (size_t i = 0; i < 2; i++) {
        echoed_header(json_array_get(res, i), "X-Request-Id", sent, sizeof(sent));
        assert_string_equal(sent, id);
        echoed_header(json_array_get(res, i), "traceparent", sent, sizeof(sent));
        assert_true(strncmp(sent + 3, "11111111111111111111111111111111", 32) != 0);
    }
    json_decref(root);
    kh_resp_free(&r);
}

/* ---- setup ---- */

static int
setup(void **state)
{
    (void)state;
    kh_origin dead;
    if (kh_origin_start(&f1, "f1", NULL) != 0 || kh_origin_start(&f2, "f2", NULL) != 0 ||
        kh_origin_start(&dead, "dead", NULL) != 0)
        return -1;
    unsigned dead_port = dead.port;
    kh_origin_stop(&dead); /* nothing listens there now: connections are refused */
    char p[16];
    snprintf(p, sizeof(p), "%u", f1.port);
    char *a = kh_subst(config_template, "F1", p);
    snprintf(p, sizeof(p), "%u", f2.port);
    char *b = a ? kh_subst(a, "F2", p) : NULL;
    snprintf(p, sizeof(p), "%u", dead_port);
    char *cfg = b ? kh_subst(b, "DEAD", p) : NULL;
    int rc = cfg ? kh_launch(&kh_group, cfg) : -1;
    free(a);
    free(b);
    free(cfg);
    return rc;
}

static int
teardown(void **state)
{
    int rc = kh_group_teardown(state);
    kh_origin_stop(&f1);
    kh_origin_stop(&f2);
    return rc;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_fetches),
        cmocka_unit_test(test_results_in_config_order),
        cmocka_unit_test(test_fetch_to_stopped_origin),
        cmocka_unit_test(test_unknown_upstream),
        cmocka_unit_test(test_fetch_carries_request_id_and_trace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
