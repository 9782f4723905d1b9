/* routing.c -- integration: the real kapi routes real HTTP requests by
 * method, host and path with the documented precedence; normalization
 * stops "/public/../admin" and friends from reaching around a route's
 * plugins; 404/405 are problem+json; X-Request-Id is kept or assigned;
 * strip_prefix and path parameters reach the function. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_text =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 2, \"log\": {\"level\": \"info\"},\n"
    "  \"module_dirs\": [\"@FUNCS@\", \"@TMODS@\"],\n"
    "  \"routes\": [\n"
    "    { \"name\": \"admin\", \"path\": \"/admin/*\",\n"
    "      \"plugins\": [ { \"module\": \"t_order\", \"config\": { \"tag\": \"guard\", "
    "\"respond\": 403 } } ],\n"
    "      \"target\": { \"function\": \"t_fn\", \"config\": { \"body\": \"admin\" } } },\n"
    "    { \"name\": \"public\", \"path\": \"/public/*\",\n"
    "      \"target\": { \"function\": \"t_fn\", \"config\": { \"body\": \"public\" } } },\n"
    "    { \"name\": \"api\", \"path\": \"/api/*\", \"target\": { \"function\": \"t_fn\", "
    "\"config\": { \"body\": \"api-prefix\" } } },\n"
    "    { \"name\": \"v2\", \"path\": \"/api/v2/*\", \"target\": { \"function\": \"t_fn\", "
    "\"config\": { \"body\": \"v2-prefix\" } } },\n"
    "    { \"name\": \"me\", \"methods\": [\"GET\"], \"path\": \"/api/users/me\", \"target\": { "
    "\"function\": \"t_fn\", \"config\": { \"body\": \"me\" } } },\n"
    "    { \"name\": \"user\", \"methods\": [\"GET\", \"DELETE\"], \"path\": \"/api/users/{id}\",\n"
    "      \"target\": { \"function\": \"echo\", \"config\": { \"params\": [\"id\"] } } },\n"
    "    { \"name\": \"special\", \"host\": \"Special.Test\", \"path\": \"/api/*\", \"target\": { "
    "\"function\": \"t_fn\", \"config\": { \"body\": \"special\" } } },\n"
    "    { \"name\": \"strip\", \"path\": \"/strip/*\", \"strip_prefix\": true, \"target\": { "
    "\"function\": \"echo\" } },\n"
    "    { \"name\": \"hello\", \"methods\": [\"GET\", \"HEAD\"], \"path\": \"/hello\", "
    "\"target\": { \"function\": \"hello\" } },\n"
    "    { \"name\": \"odd \\\"name\\\"\\n\", \"path\": \"/odd\", \"target\": { \"function\": "
    "\"hello\" } }\n"
    "  ] }\n";

/* GET PATH with optional HEADERS; asserts STATUS and, when BODY is not
 * NULL, the exact body. */
static void
expect(const char *method, const char *path, const char *const *headers, long status,
       const char *body)
{
    kh_resp r;
    assert_int_equal(kh_request(&kh_group, method, path, headers, NULL, 0, &r), 0);
    if (r.status != status || (body && strcmp(r.body, body) != 0))
        fail_msg("%s %s: got %ld '%s', want %ld '%s'", method, path, r.status, r.body, status,
                 body ? body : "*");
    kh_resp_free(&r);
}

static void
test_precedence(void **state)
{
    (void)state;
    expect("GET", "/api/users/me", NULL, 200, "me");         /* exact beats param */
    expect("GET", "/api/v2/things", NULL, 200, "v2-prefix"); /* longer prefix wins */
    expect("GET", "/api/other", NULL, 200, "api-prefix");
    expect("GET", "/api", NULL, 200, "api-prefix"); /* a prefix matches itself */
    const char *special[] = {"Host: special.TEST:8080", NULL};
    expect("GET", "/api/other", special, 200, "special"); /* host beats no host */
    expect("GET", "/hello", NULL, 200, "hello, world\n");
}

static void
test_not_found_and_method(void **state)
{
    (void)state;
    kh_resp r;
    char buf[256];
    assert_int_equal(kh_get(&kh_group, "/nowhere", &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(kh_header(&r, "Content-Type", buf, sizeof(buf)),
                        "application/problem+json");
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(j, "title")), "Not Found");
    assert_non_null(json_string_value(json_object_get(j, "detail")));
    char id[256];
    assert_non_null(kh_header(&r, "X-Request-Id", id, sizeof(id)));
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), id);
    json_decref(j);
    kh_resp_free(&r);

    /* /api/users/42 also falls under the any-method /api prefix: POST goes there. */
    assert_int_equal(kh_request(&kh_group, "POST", "/api/users/42", NULL, "x", 1, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "api-prefix");
    kh_resp_free(&r);
    assert_int_equal(kh_request(&kh_group, "POST", "/hello", NULL, "x", 1, &r), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(kh_header(&r, "Allow", buf, sizeof(buf)), "GET, HEAD");
    kh_resp_free(&r);
}

/* Every spelling of /admin reaches the admin route's guard plugin. */
static void
test_normalization_cannot_bypass_plugins(void **state)
{
    (void)state;
    const char *attacks[] = {
        "/admin/x",
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E%2e/admin",
        "//admin/x",
        "/public/./../admin",
        "/./admin/x",
        "/public/..//admin/x",
        "/public/x/../../admin",
        "/%61dmin/x",
        "/../../admin/x",
        "/public/%2e%2e%2fadmin/../../admin",
    };
    for (size_t i = 0; i < sizeof(attacks) / sizeof(*attacks); i++)
        expect("GET", attacks[i], NULL, 403, "denied by guard");
    /* An encoded slash is not a separator: this stays inside /public. */
    expect("GET", "/public/..%2Fadmin", NULL, 200, "public");
    /* Malformed escapes and NUL are refused outright. */
    expect("GET", "/public/%zz", NULL, 400, NULL);
    expect("GET", "/public/%00/x", NULL, 400, NULL);
}

static json_t *
get_json(const char *path, const char *const *headers)
{
    kh_resp r;
    assert_int_equal(kh_request(&kh_group, "GET", path, headers, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    if (!j)
        fail_msg("not JSON: %s", r.body);
    kh_resp_free(&r);
    return j;
}

static void
test_params_and_strip_prefix(void **state)
{
    (void)state;
    json_t *j = get_json("/api/users/a%20b?x=1&x=2", NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "path_params"), "id")),
                        "a b");
    assert_string_equal(json_string_value(json_object_get(j, "query")), "x=1&x=2");
    json_decref(j);

    j = get_json("/strip/deeper/path", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/deeper/path");
    json_decref(j);
    j = get_json("/strip", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/");
    json_decref(j);
}

static void
test_request_id(void **state)
{
    (void)state;
    kh_resp r;
    char id[256];
    const char *good[] = {"X-Request-Id: client-id.42", NULL};
    assert_int_equal(kh_request(&kh_group, "GET", "/hello", good, NULL, 0, &r), 0);
    assert_string_equal(kh_header(&r, "X-Request-Id", id, sizeof(id)), "client-id.42");
    kh_resp_free(&r);

    const char *bad[] = {"X-Request-Id: has spaces and \"quotes\"", NULL};
    assert_int_equal(kh_request(&kh_group, "GET", "/hello", bad, NULL, 0, &r), 0);
    assert_non_null(kh_header(&r, "X-Request-Id", id, sizeof(id)));
    assert_int_equal(strlen(id), 32);
    kh_resp_free(&r);

    /* The access log has one JSON line for the request, with its id. */
    assert_true(kh_wait_log(&kh_group, "\"request_id\":\"client-id.42\"", 2000));
    assert_true(kh_log_has(&kh_group, "\"route\":\"hello\",\"status\":200"));
}

static void
test_head(void **state)
{
    (void)state;
    kh_resp r;
    char len[64];
    assert_int_equal(kh_request(&kh_group, "HEAD", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(kh_header(&r, "Content-Length", len, sizeof(len)), "13");
    kh_resp_free(&r);
    assert_true(kh_wait_log(&kh_group,
                            "\"method\":\"HEAD\",\"path\":\"/hello\",\"route\":\"hello\","
                            "\"status\":200,\"bytes\":0,",
                            2000));
}

/* Every access-log line is one valid JSON object, whatever a route's name
 * or the request holds. */
static void
test_access_log_lines_are_json(void **state)
{
    (void)state;
    expect("GET", "/odd", NULL, 200, NULL);
    expect("GET", "/nowhere/\"%0a\\", NULL, 400, NULL); /* a control byte: refused */
    expect("GET", "/nowhere/\"\\\xff", NULL, 404, NULL);
    static char longpath[9000] = "/nowhere/";
    memset(longpath + 9, '"', sizeof(longpath) - 10); /* every byte escaped in the log */
    expect("GET", longpath, NULL, 404, NULL);
    assert_true(kh_wait_log(&kh_group, "\"route\":\"odd \\\"name\\\"\\u000a\"", 2000));
    FILE *f = fopen(kh_group.log, "r");
    assert_non_null(f);
    char line[8192];
    int objects = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] != '{')
            continue;
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        if (!j)
            fail_msg("access-log line is not JSON (%s): %s", e.text, line);
        json_decref(j);
        objects++;
    }
    fclose(f);
    assert_true(objects > 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_normalization_cannot_bypass_plugins),
        cmocka_unit_test(test_params_and_strip_prefix),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_access_log_lines_are_json),
    };
    kh_group_config = config_text;
    return cmocka_run_group_tests(tests, kh_group_setup, kh_group_teardown);
}
