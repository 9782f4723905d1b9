/* test_functions.c -- unit tests of the example functions hello.so,
 * echo.so and counter.so (functions/), loaded from $KAPI_MODULE_DIR through the SDK's fake
 * host exactly as a module author would test theirs: load, create an
 * instance from JSON config, build a request, run, assert on the response
 * (echo's JSON is parsed back with jansson). It does not test the server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include <kapi/test.h>

typedef struct fixture {
    kapi_test_host *host;
    const kapi_module *hello, *echo, *counter;
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char err[512];
    if (!f || !(f->host = kapi_test_host_new()))
        return -1;
    *state = f;
    if (kapi_test_load(f->host, "hello", &f->hello, err, sizeof(err)) != KAPI_OK ||
        kapi_test_load(f->host, "echo.so", &f->echo, err, sizeof(err)) != KAPI_OK ||
        kapi_test_load(f->host, "counter", &f->counter, err, sizeof(err)) != KAPI_OK) {
        print_error("%s (is KAPI_MODULE_DIR set?)\n", err);
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    kapi_test_host_free(f->host);
    free(f);
    return 0;
}

static void
assert_view(kapi_str v, const char *want)
{
    assert_non_null(v.ptr);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.ptr, want, v.len);
}

/* A new instance of M with CONFIG, which must be accepted. */
static void *
instance(fixture *f, const kapi_module *m, const char *config)
{
    void *inst = NULL;
    kapi_error err;
    kapi_status st = kapi_test_instance_new(f->host, m, config, &inst, &err);
    if (st != KAPI_OK)
        fail_msg("%s refused %s: %s: %s", m->name, config, err.path, err.message);
    return inst;
}

/* Runs METHOD TARGET straight to function M (no plugins). */
static kapi_test_req *
call(fixture *f, const kapi_module *m, void *inst, const char *method, const char *target)
{
    kapi_test_req *r = kapi_test_req_new(f->host, method, target);
    assert_non_null(r);
    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, m, inst), KAPI_TEST_DONE);
    return r;
}

/* ---- hello ---- */

static void
test_hello_descriptor(void **state)
{
    fixture *f = *state;
    assert_string_equal(f->hello->name, "hello");
    assert_int_equal(f->hello->kind, KAPI_MODULE_FUNCTION);
    assert_int_equal(f->hello->abi_major, KAPI_ABI_MAJOR);
}

static void
test_hello_get(void **state)
{
    fixture *f = *state;
    void *inst = instance(f, f->hello, "{}");
    kapi_test_req *r = call(f, f->hello, inst, "GET", "/hello");
    assert_int_equal(kapi_test_resp_status(r), 200);
    assert_view(kapi_test_resp_header(r, "Content-Type", 0), "text/plain; charset=utf-8");
    assert_view(kapi_test_resp_body(r), "hello, world\n");

    r = call(f, f->hello, inst, "HEAD", "/hello");
    assert_int_equal(kapi_test_resp_status(r), 200);
}

static void
test_hello_message(void **state)
{
    fixture *f = *state;
    void *inst = instance(f, f->hello, "{\"message\": \"bonjour\\n\"}");
    kapi_test_req *r = call(f, f->hello, inst, "GET", "/hello");
    assert_view(kapi_test_resp_body(r), "bonjour\n");
}

static void
test_hello_other_method_405(void **state)
{
    fixture *f = *state;
    void *inst = instance(f, f->hello, NULL);
    kapi_test_req *r = call(f, f->hello, inst, "POST", "/hello");
    assert_int_equal(kapi_test_resp_status(r), 405);
    assert_view(kapi_test_resp_header(r, "allow", 0), "GET, HEAD");
}

static void
test_hello_bad_config(void **state)
{
    fixture *f = *state;
    void *inst = NULL;
    kapi_error err;
    assert_int_equal(kapi_test_instance_new(f->host, f->hello, "{\"mesage\": \"x\"}", &inst, &err),
                     KAPI_ECONFIG);
    assert_string_equal(err.path, "mesage");
    assert_int_equal(kapi_test_instance_new(f->host, f->hello, "{\"message\": 1}", &inst, &err),
                     KAPI_ECONFIG);
    assert_string_equal(err.path, "message");
    assert_string_equal(err.message, "expected string");
    assert_int_equal(kapi_test_instance_new(f->host, f->hello, "[", &inst, &err), KAPI_ECONFIG);
    assert_null(inst);
}

static void
test_two_hosts_share_a_module(void **state)
{
    /* A loaded file is shared (one entry call): the module must keep
     * working in one host after another that loaded it is freed. */
    fixture *f = *state;
    kapi_test_host *other = kapi_test_host_new();
    const kapi_module *m = NULL;
    char err[512];
    assert_int_equal(kapi_test_load(other, "hello", &m, err, sizeof(err)), KAPI_OK);
    assert_ptr_equal(m, f->hello);
    assert_ptr_equal(kapi_test_host_table(other), kapi_test_host_table(f->host));
    kapi_test_host_free(other);

    void *inst = instance(f, f->hello, NULL);
    kapi_test_req *r = call(f, f->hello, inst, "GET", "/hello");
    assert_view(kapi_test_resp_body(r), "hello, world\n");
}

/* ---- echo ---- */

/* The echo document of R, parsed; the caller decrefs. */
static json_t *
echo_doc(kapi_test_req *r)
{
    assert_int_equal(kapi_test_resp_status(r), 200);
    assert_view(kapi_test_resp_header(r, "content-type", 0), "application/json");
    kapi_str body = kapi_test_resp_body(r);
    json_error_t jerr;
    json_t *doc = json_loadb(body.ptr, body.len, 0, &jerr);
    if (!doc)
        fail_msg("echo body is not JSON (%s): %.*s", jerr.text, (int)body.len, body.ptr);
    return doc;
}

/* The string member KEY of DOC; fails the test when it is not one. */
static const char *
str_at(json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_string(v))
        fail_msg("echo.%s is not a string", key);
    return json_string_value(v);
}

static void
test_echo_request(void **state)
{
    fixture *f = *state;
    void *inst = instance(f, f->echo, "{}");
    kapi_test_req *r = kapi_test_req_new(f->host, "POST", "/users/7?a=1&b=x%20y&a=2&flag");
    assert_int_equal(kapi_test_req_header(r, "Host", "Example.test:8080"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "Accept", "text/html"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "accept", "application/json"), KAPI_OK);
    assert_int_equal(kapi_test_req_path_param(r, "id", "7"), KAPI_OK);
    assert_int_equal(kapi_test_req_client(r, "10.0.0.9"), KAPI_OK);
    assert_int_equal(kapi_test_req_body(r, "{\"x\":1}", 7), KAPI_OK);
    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, f->echo, inst), KAPI_TEST_DONE);

    json_t *doc = echo_doc(r);
    assert_string_equal(str_at(doc, "method"), "POST");
    assert_string_equal(str_at(doc, "path"), "/users/7");
    assert_string_equal(str_at(doc, "query"), "a=1&b=x%20y&a=2&flag");
    assert_string_equal(str_at(doc, "body"), "{\"x\":1}");
    assert_null(json_object_get(doc, "body_base64"));
    assert_string_equal(str_at(doc, "client"), "10.0.0.9");
    assert_string_equal(str_at(doc, "host"), "example.test");
    assert_string_equal(str_at(doc, "request_id"), "test-1");

    json_t *want_q = json_pack("{s:[s,s], s:[s], s:[s]}", "a", "1", "2", "b", "x y", "flag", "");
    assert_true(json_equal(json_object_get(doc, "query_params"), want_q));
    json_t *want_p = json_pack("{s:s}", "id", "7");
    assert_true(json_equal(json_object_get(doc, "path_params"), want_p));
    json_t *want_h = json_pack("[[s,s],[s,s],[s,s]]", "Host", "Example.test:8080", "Accept",
                               "text/html", "accept", "application/json");
    assert_true(json_equal(json_object_get(doc, "headers"), want_h));
    json_decref(want_q);
    json_decref(want_p);
    json_decref(want_h);
    json_decref(doc);
}

static void
test_echo_binary_body_and_params(void **state)
{
    fixture *f = *state;
    void *inst = instance(f, f->echo, "{\"params\": [\"org\", \"id\"]}");
    kapi_test_req *r = kapi_test_req_new(f->host, "PUT", "/o/acme/u/7");
    const char bin[] = {'a', '\xff', '\0', 'b'};
    assert_int_equal(kapi_test_req_body(r, bin, sizeof(bin)), KAPI_OK);
    assert_int_equal(kapi_test_req_path_param(r, "org", "acme"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "X-Latin1", "caf\xe9"), KAPI_OK);
    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, f->echo, inst), KAPI_TEST_DONE);

    json_t *doc = echo_doc(r);
    assert_null(json_object_get(doc, "body"));
    assert_string_equal(str_at(doc, "body_base64"), "Yf8AYg==");
    json_t *want_p = json_pack("{s:s}", "org", "acme"); /* "id" is not set */
    assert_true(json_equal(json_object_get(doc, "path_params"), want_p));
    json_t *want_h = json_pack("[[s,s]]", "X-Latin1", "caf\xc3\xa9");
    assert_true(json_equal(json_object_get(doc, "headers"), want_h));
    assert_int_equal(json_object_size(json_object_get(doc, "query_params")), 0);
    json_decref(want_p);
    json_decref(want_h);
    json_decref(doc);
}

static void
test_echo_bad_config(void **state)
{
    fixture *f = *state;
    void *inst = NULL;
    kapi_error err;
    assert_int_equal(
        kapi_test_instance_new(f->host, f->echo, "{\"params\": [\"id\", 3]}", &inst, &err),
        KAPI_ECONFIG);
    assert_string_equal(err.path, "params[1]");
    assert_int_equal(kapi_test_instance_new(f->host, f->echo, "{\"param\": []}", &inst, &err),
                     KAPI_ECONFIG);
    assert_string_equal(err.path, "param");
    assert_null(inst);
}

/* ---- counter (uses the store) ---- */

static void
test_counter_with_store(void **state)
{
    fixture *f = *state;
    void *inst = instance(f, f->counter, "{}");
    /* Without a store the function answers 503, as in a gateway without one. */
    kapi_test_req *r = kapi_test_req_new(f->host, "POST", "/counter/x");
    assert_int_equal(kapi_test_req_path_param(r, "name", "x"), KAPI_OK);
    assert_int_equal(kapi_test_run(r, NULL, NULL, 0, f->counter, inst), KAPI_TEST_DONE);
    assert_int_equal(kapi_test_resp_status(r), 503);

    char dir[] = "/tmp/kapi-test-store-XXXXXX", err[256];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(kapi_test_store_open(dir, err, sizeof(err)), KAPI_OK);
    kapi_test_req *q = kapi_test_req_new(f->host, "POST", "/counter/visits?by=41");
    assert_int_equal(kapi_test_req_path_param(q, "name", "visits"), KAPI_OK);
    assert_int_equal(kapi_test_run(q, NULL, NULL, 0, f->counter, inst), KAPI_TEST_DONE);
    assert_int_equal(kapi_test_resp_status(q), 200);
    q = kapi_test_req_new(f->host, "POST", "/counter/visits");
    assert_int_equal(kapi_test_req_path_param(q, "name", "visits"), KAPI_OK);
    assert_int_equal(kapi_test_run(q, NULL, NULL, 0, f->counter, inst), KAPI_TEST_DONE);
    assert_view(kapi_test_resp_body(q), "{\"name\":\"visits\",\"value\":42}\n");
    kapi_test_store_close();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_hello_descriptor), T(test_hello_get),
        T(test_hello_message),    T(test_hello_other_method_405),
        T(test_hello_bad_config), T(test_two_hosts_share_a_module),
        T(test_echo_request),     T(test_echo_binary_body_and_params),
        T(test_echo_bad_config),  T(test_counter_with_store),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
