/* store.c -- integration: state kept through the store API (the counter
 * function) is exact across concurrent requests on several worker threads
 * and survives both a clean restart and kill -9 of kapi. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_text =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 2, \"log\": { \"access\": \"off\" },\n"
    "  \"data_dir\": \"@DIR@/data\", \"store\": { \"map_bytes\": 16777216 },\n"
    "  \"module_dirs\": [\"@FUNCS@\"],\n"
    "  \"routes\": [ { \"path\": \"/counter/{name}\", \"target\": { \"function\": \"counter\" } } "
    "] "
    "}\n";

static void
expect_counter(kh_server *s, const char *method, const char *path, const char *value)
{
    kh_resp r;
    assert_int_equal(kh_request(s, method, path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char want[64];
    snprintf(want, sizeof(want), "\"value\":%s}", value);
    if (!strstr(r.body, want))
        fail_msg("%s %s: %s, want value %s", method, path, r.body, value);
    kh_resp_free(&r);
}

static void *
post_many(void *arg)
{
    kh_server *s = arg;
    for (int i = 0; i < 50; i++) {
        kh_resp r;
        if (kh_request(s, "POST", "/counter/hits", NULL, NULL, 0, &r) != 0 || r.status != 200)
            fail_msg("POST failed");
        kh_resp_free(&r);
    }
    return NULL;
}

static void
test_counts_are_exact_and_survive_restarts(void **state)
{
    (void)state;
    kh_server s;
    assert_int_equal(kh_launch(&s, config_text), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, post_many, &s);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    expect_counter(&s, "GET", "/counter/hits", "200");
    expect_counter(&s, "POST", "/counter/other?by=5", "5");

    /* kill -9: no clean shutdown, no final sync */
    assert_int_equal(kh_signal_wait(&s, SIGKILL, 5000), 128 + SIGKILL);
    assert_int_equal(kh_start(&s), 0);
    expect_counter(&s, "GET", "/counter/hits", "200");
    expect_counter(&s, "GET", "/counter/other", "5");

    /* a clean restart */
    assert_int_equal(kh_signal_wait(&s, SIGTERM, 5000), 0);
    assert_int_equal(kh_start(&s), 0);
    expect_counter(&s, "POST", "/counter/hits", "201");
    expect_counter(&s, "DELETE", "/counter/other", "0");
    assert_int_equal(kh_stop(&s), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_are_exact_and_survive_restarts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
