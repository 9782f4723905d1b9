/* chain.c -- integration: a route's chain runs global plugins first, then
 * the route's, in order; on_response runs in reverse for every plugin whose
 * on_access ran; an early response stops the access phase; a failing hook
 * becomes a 500 problem; on_log runs for every plugin, always. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define PLUGIN(tag, extra)                                                                         \
    "{ \"module\": \"t_order\", \"config\": { \"tag\": \"" tag                                     \
    "\", \"log_file\": \"@DIR@/on_log\"" extra " } }"

static const char *config_text =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
    "  \"module_dirs\": [\"@FUNCS@\", \"@TMODS@\"],\n"
    "  \"plugins\": [ " PLUGIN(
        "g",
        "") " ],\n"
            "  \"routes\": [\n"
            "    { \"path\": \"/ok\", \"plugins\": [ " PLUGIN("a", "") ", " PLUGIN(
                "b",
                "") " ],\n"
                    "      \"target\": { \"function\": \"echo\" } },\n"
                    "    { \"path\": \"/deny\", \"plugins\": [ " PLUGIN("a", "") ", " PLUGIN(
                        "b",
                        ", \"respond\": 401") ", " PLUGIN("c",
                                                          "") " ],\n"
                                                              "      \"target\": { \"function\": "
                                                              "\"echo\" } },\n"
                                                              "    { \"path\": \"/fail\", "
                                                              "\"plugins\": [ " PLUGIN(
                                                                  "a",
                                                                  "") ", " PLUGIN("b",
                                                                                  ", \"fail\": "
                                                                                  "true") " ],\n"
                                                                                          "      "
                                                                                          "\"target"
                                                                                          "\": { "
                                                                                          "\"functi"
                                                                                          "on\": "
                                                                                          "\"echo\""
                                                                                          " } }\n"
                                                                                          "  ] }\n";

/* The on_log file's lines joined by ',' (then truncated for the next test). */
static void
take_log_lines(char *out, size_t len)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/on_log", kh_group.dir);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[64];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (out[0])
            strncat(out, ",", len - strlen(out) - 1);
        strncat(out, line, len - strlen(out) - 1);
    }
    fclose(f);
    f = fopen(path, "w");
    if (f)
        fclose(f);
}

static void
test_order(void **state)
{
    (void)state;
    take_log_lines((char[8]){0}, 8);
    kh_resp r;
    char v[128];
    assert_int_equal(kh_get(&kh_group, "/ok", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(kh_header(&r, "x-order-resp", v, sizeof(v)), "b,a,g");
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    assert_non_null(j);
    /* The function saw the request header the plugins built, in order. */
    const char *seen = NULL;
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(j, "headers"), i, h)
    {
        if (strcasecmp(json_string_value(json_array_get(h, 0)), "x-order") == 0)
            seen = json_string_value(json_array_get(h, 1));
    }
    assert_non_null(seen);
    assert_string_equal(seen, "g,a,b");
    json_decref(j);
    kh_resp_free(&r);
    char lines[128];
    assert_true(kh_wait_log(&kh_group, "\"path\":\"/ok\"", 2000));
    take_log_lines(lines, sizeof(lines));
    assert_string_equal(lines, "g,a,b");
}

static void
test_early_response(void **state)
{
    (void)state;
    kh_resp r;
    char v[128];
    assert_int_equal(kh_get(&kh_group, "/deny", &r), 0);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.body, "denied by b");
    /* c never ran its access hook, so it has no response hook either. */
    assert_string_equal(kh_header(&r, "x-order-resp", v, sizeof(v)), "b,a,g");
    kh_resp_free(&r);
    char lines[128];
    assert_true(kh_wait_log(&kh_group, "\"path\":\"/deny\"", 2000));
    take_log_lines(lines, sizeof(lines));
    assert_string_equal(lines, "g,a,b,c"); /* on_log runs for every plugin */
}

static void
test_failing_hook(void **state)
{
    (void)state;
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/fail", &r), 0);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body, "\"status\":500"));
    assert_null(strstr(r.body, "t_order")); /* no internals leak to the client */
    kh_resp_free(&r);
    assert_true(kh_wait_log(&kh_group, "on_access returned KAPI_ERROR", 2000));
    char lines[128];
    assert_true(kh_wait_log(&kh_group, "\"path\":\"/fail\"", 2000));
    take_log_lines(lines, sizeof(lines));
    assert_string_equal(lines, "g,a,b");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_early_response),
        cmocka_unit_test(test_failing_hook),
    };
    kh_group_config = config_text;
    return cmocka_run_group_tests(tests, kh_group_setup, kh_group_teardown);
}
