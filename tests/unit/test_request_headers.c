/* test_request_headers.c -- unit tests of plugins/request-headers through
 * the SDK's fake host: the real request-headers.so from $KAPI_MODULE_DIR in
 * a chain in front of the fake upstream, request edits seen by the target,
 * response edits seen by the client, and config refusals with their JSON
 * path. It does not test the gateway's header parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <kapi/test.h>

typedef struct fixture {
    kapi_test_host *host;
    const kapi_module *plugin;
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char err[512];
    if (!f || !(f->host = kapi_test_host_new()))
        return -1;
    *state = f;
    if (kapi_test_load(f->host, "request-headers", &f->plugin, err, sizeof(err)) != KAPI_OK) {
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

static void
test_edits_request_and_response(void **state)
{
    fixture *f = *state;
    const char *config = "{\"request\": {\"remove\": [\"X-Debug\"],"
                         "             \"set\": {\"X-Team\": \"core\", \"Accept\": \"*/*\"}},"
                         " \"response\": {\"remove\": [\"Server\"], \"set\": {\"X-Frame-Options\": "
                         "\"DENY\"}}}";
    void *inst = NULL;
    kapi_error err;
    assert_int_equal(kapi_test_instance_new(f->host, f->plugin, config, &inst, &err), KAPI_OK);

    kapi_test_req *r = kapi_test_req_new(f->host, "GET", "/");
    assert_int_equal(kapi_test_req_header(r, "x-debug", "1"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "Accept", "text/html"), KAPI_OK);
    assert_int_equal(kapi_test_req_header(r, "Accept", "application/json"), KAPI_OK);
    const kapi_header up[] = {
        {KAPI_STR("Server"), KAPI_STR("origin/1.0")},
        {KAPI_STR("X-Frame-Options"), KAPI_STR("SAMEORIGIN")},
        {KAPI_STR("ETag"), KAPI_STR("\"1\"")},
    };
    assert_int_equal(kapi_test_req_upstream(r, 200, up, 3, "body", 4), KAPI_OK);
    const kapi_module *plugins[] = {f->plugin};
    void *insts[] = {inst};
    assert_int_equal(kapi_test_run(r, plugins, insts, 1, NULL, NULL), KAPI_TEST_DONE);

    assert_null(kapi_test_req_header_get(r, "X-Debug", 0).ptr);
    assert_view(kapi_test_req_header_get(r, "x-team", 0), "core");
    assert_view(kapi_test_req_header_get(r, "accept", 0), "*/*");
    assert_null(kapi_test_req_header_get(r, "accept", 1).ptr); /* set replaced both */

    assert_int_equal(kapi_test_resp_status(r), 200);
    assert_null(kapi_test_resp_header(r, "server", 0).ptr);
    assert_view(kapi_test_resp_header(r, "x-frame-options", 0), "DENY");
    assert_null(kapi_test_resp_header(r, "x-frame-options", 1).ptr);
    assert_view(kapi_test_resp_header(r, "etag", 0), "\"1\"");
    assert_view(kapi_test_resp_body(r), "body");
}

static void
test_empty_config_changes_nothing(void **state)
{
    fixture *f = *state;
    void *inst = NULL;
    assert_int_equal(kapi_test_instance_new(f->host, f->plugin, NULL, &inst, NULL), KAPI_OK);
    kapi_test_req *r = kapi_test_req_new(f->host, "GET", "/");
    assert_int_equal(kapi_test_req_header(r, "X-A", "1"), KAPI_OK);
    assert_int_equal(kapi_test_call_access(r, f->plugin, inst), KAPI_CONTINUE);
    assert_view(kapi_test_req_header_get(r, "X-A", 0), "1");
    assert_int_equal(kapi_test_resp_set(r, 204, NULL, 0, NULL, 0), KAPI_OK);
    assert_int_equal(kapi_test_call_response(r, f->plugin, inst), KAPI_CONTINUE);
    assert_int_equal(kapi_test_resp_status(r), 204);
    kapi_header h;
    assert_int_equal(kapi_test_resp_header_at(r, 0, &h), KAPI_ENOTFOUND);
}

static void
refused(fixture *f, const char *config, const char *path)
{
    void *inst = NULL;
    kapi_error err;
    assert_int_equal(kapi_test_instance_new(f->host, f->plugin, config, &inst, &err), KAPI_ECONFIG);
    assert_null(inst);
    if (strcmp(err.path, path) != 0)
        fail_msg("config %s: path \"%s\", want \"%s\" (%s)", config, err.path, path, err.message);
    assert_true(err.message[0] != '\0');
}

static void
test_bad_configs(void **state)
{
    fixture *f = *state;
    refused(f, "[]", "");
    refused(f, "{\"requests\": {}}", "requests");
    refused(f, "{\"request\": []}", "request");
    refused(f, "{\"request\": {\"sett\": {}}}", "request.sett");
    refused(f, "{\"request\": {\"set\": {\"Bad Name\": \"x\"}}}", "request.set.Bad Name");
    refused(f, "{\"response\": {\"set\": {\"X-A\": \"a\\r\\nB: c\"}}}", "response.set.X-A");
    refused(f, "{\"response\": {\"set\": {\"X-A\": 1}}}", "response.set.X-A");
    refused(f, "{\"response\": {\"remove\": [\"ok\", \"\"]}}", "response.remove[1]");
    refused(f, "{\"response\": {\"remove\": \"Server\"}}", "response.remove");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_edits_request_and_response),
        T(test_empty_config_changes_nothing),
        T(test_bad_configs),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
