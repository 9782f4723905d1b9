/* reload.c -- integration: SIGHUP builds a new generation beside the
 * running one. A rebuilt function .so really loads new code; a slow
 * request that started before the reload finishes on the old code; a bad
 * config (or a module refusing its config) is reported and the running
 * generation keeps serving untouched. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_text =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 2,\n"
    "  \"module_dirs\": [\"@DIR@/mods\", \"@FUNCS@\", \"@TMODS@\"],\n"
    "  \"routes\": [\n"
    "    { \"path\": \"/slow\", \"plugins\": [ { \"module\": \"t_pause\", \"config\": { "
    "\"delay_ms\": 1500 } } ],\n"
    "      \"target\": { \"function\": \"t_fn\" } },\n"
    "    { \"path\": \"/fast\", \"target\": { \"function\": \"t_fn\" } }\n"
    "  ] }\n";

static char mod_path[600];

static int
setup(void **state)
{
    (void)state;
    char from[600], dir[400];
    if (kh_prepare(&kh_group, config_text) != 0)
        return -1;
    snprintf(dir, sizeof(dir), "%s/mods", kh_group.dir);
    snprintf(mod_path, sizeof(mod_path), "%s/t_fn.so", dir);
    if (mkdir(dir, 0755) != 0 || kh_copy(kh_test_module("t_fn.so", from, sizeof(from)), mod_path))
        return -1;
    return kh_start(&kh_group);
}

/* GET PATH on S answers 200 from t_fn build VERSION. */
static void
expect_version_on(kh_server *s, const char *path, const char *version)
{
    kh_resp r;
    char v[64];
    assert_int_equal(kh_get(s, path, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(kh_header(&r, "x-fn-version", v, sizeof(v)), version);
    kh_resp_free(&r);
}

static void
expect_version(const char *path, const char *version)
{
    expect_version_on(&kh_group, path, version);
}

typedef struct slow_result {
    long status;
    char version[64];
} slow_result;

static void *
slow_request(void *arg)
{
    slow_result *res = arg;
    kh_resp r;
    res->status = kh_get(&kh_group, "/slow", &r) == 0 ? r.status : -1;
    if (!kh_header(&r, "x-fn-version", res->version, sizeof(res->version)))
        strcpy(res->version, "(none)");
    kh_resp_free(&r);
    return NULL;
}

static void
test_reload_swaps_code_and_old_requests_finish_on_old_code(void **state)
{
    (void)state;
    expect_version("/fast", "v1");
    pthread_t t;
    slow_result slow = {0};
    pthread_create(&t, NULL, slow_request, &slow);
    usleep(300 * 1000); /* the slow request is now paused in generation 1 */

    char from[600];
    assert_int_equal(kh_copy(kh_test_module("t_fn_v2.so", from, sizeof(from)), mod_path), 0);
    assert_int_equal(kh_reload(&kh_group), 1);
    expect_version("/fast", "v2"); /* new code serves new requests at once */
    /* generation 1 lives on while the slow request holds it */
    assert_false(kh_log_has(&kh_group, "generation 1 retired"));

    pthread_join(t, NULL);
    assert_int_equal(slow.status, 200);
    assert_string_equal(slow.version, "v1"); /* ...while the old one finished on v1 */
    /* ...and generation 1 is destroyed once that request has ended */
    assert_true(kh_wait_log(&kh_group, "generation 1 retired", 2000));
}

static void
test_bad_config_keeps_running_generation(void **state)
{
    (void)state;
    char saved[8192];
    FILE *f = fopen(kh_group.config, "r");
    assert_non_null(f);
    size_t n = fread(saved, 1, sizeof(saved) - 1, f);
    saved[n] = '\0';
    fclose(f);

    assert_int_equal(kh_write_config(&kh_group, "{ \"listen\": [\"127.0.0.1:0\"], \"routes\": [ }"),
                     0);
    assert_int_equal(kh_reload(&kh_group), 0);
    assert_true(kh_log_has(&kh_group, "invalid JSON"));
    expect_version("/fast", "v2");

    /* A module that refuses its config fails the whole new generation. */
    assert_int_equal(
        kh_write_config(&kh_group,
                        "{ \"listen\": [\"127.0.0.1:0\"], \"module_dirs\": [\"@TMODS@\"],\n"
                        "  \"routes\": [ { \"path\": \"/x\", \"plugins\": [ { \"module\": "
                        "\"t_order\", \"config\": { \"tag\": 5 } } ],\n"
                        "  \"target\": { \"function\": \"t_fn\" } } ] }"),
        0);
    assert_int_equal(kh_reload(&kh_group), 0);
    assert_true(kh_log_has(&kh_group, "routes[0].plugins[0].config.tag: expected string"));
    expect_version("/fast", "v2");

    /* An access log that cannot be opened fails the reload too. */
    assert_int_equal(
        kh_write_config(&kh_group,
                        "{ \"listen\": [\"127.0.0.1:0\"], \"module_dirs\": [\"@TMODS@\"],\n"
                        "  \"log\": { \"access\": \"/nonexistent/dir/x.log\" },\n"
                        "  \"routes\": [ { \"path\": \"/x\", \"target\": { \"function\": "
                        "\"t_fn\" } } ] }"),
        0);
    assert_int_equal(kh_reload(&kh_group), 0);
    kh_resp gone;
    assert_int_equal(kh_get(&kh_group, "/x", &gone), 0);
    assert_int_equal(gone.status, 404); /* the new routes never went live */
    kh_resp_free(&gone);
    expect_version("/fast", "v2");

    f = fopen(kh_group.config, "w");
    assert_non_null(f);
    fputs(saved, f);
    fclose(f);
    assert_int_equal(kh_reload(&kh_group), 1);
    expect_version("/fast", "v2");
}

typedef struct hammer {
    atomic_bool stop;
    long ok, failed;
} hammer;

static void *
hammer_requests(void *arg)
{
    hammer *h = arg;
    while (!atomic_load(&h->stop)) {
        kh_resp r;
        if (kh_get(&kh_group, "/fast", &r) == 0 && r.status == 200)
            h->ok++;
        else
            h->failed++;
        kh_resp_free(&r);
    }
    return NULL;
}

/* Requests keep flowing through five reloads: not one fails. */
static void
test_reloads_drop_nothing(void **state)
{
    (void)state;
    hammer h = {.ok = 0, .failed = 0};
    atomic_init(&h.stop, false);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, hammer_requests, &h);
    for (int i = 0; i < 5; i++) {
        usleep(100 * 1000);
        assert_int_equal(kh_reload(&kh_group), 1);
    }
    usleep(100 * 1000);
    atomic_store(&h.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    if (h.failed || h.ok < 20)
        fail_msg("%ld requests failed, %ld succeeded during reloads", h.failed, h.ok);
}

/* With "watch": true a rebuilt module is picked up with no SIGHUP: the
 * development loop (rebuild, then the next request runs the new code). */
static void
test_watch_reloads_on_module_change(void **state)
{
    (void)state;
    kh_server s;
    char from[600], dir[400], mod[600];
    assert_int_equal(
        kh_prepare(&s, "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1, \"watch\": true,\n"
                       "  \"module_dirs\": [\"@DIR@/mods\"],\n"
                       "  \"routes\": [ { \"path\": \"/fast\", \"target\": { "
                       "\"function\": \"t_fn\" } } ] }"),
        0);
    snprintf(dir, sizeof(dir), "%s/mods", s.dir);
    snprintf(mod, sizeof(mod), "%s/t_fn.so", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(kh_copy(kh_test_module("t_fn.so", from, sizeof(from)), mod), 0);
    assert_int_equal(kh_start(&s), 0);
    expect_version_on(&s, "/fast", "v1");

    assert_int_equal(kh_copy(kh_test_module("t_fn_v2.so", from, sizeof(from)), mod), 0);
    assert_true(kh_wait_log(&s, "generation 2 is serving", 3000));
    expect_version_on(&s, "/fast", "v2");
    usleep(800 * 1000); /* one change, one reload: the reload's own watch churn is no change */
    assert_false(kh_log_has(&s, "generation 3"));

    /* a broken write (not a module) is reported; v2 keeps serving */
    FILE *f = fopen(mod, "w");
    assert_non_null(f);
    fputs("not an ELF file", f);
    fclose(f);
    assert_true(kh_wait_log(&s, "reload failed", 3000));
    expect_version_on(&s, "/fast", "v2");
    assert_int_equal(kh_stop(&s), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_swaps_code_and_old_requests_finish_on_old_code),
        cmocka_unit_test(test_bad_config_keeps_running_generation),
        cmocka_unit_test(test_reloads_drop_nothing),
        cmocka_unit_test(test_watch_reloads_on_module_change),
    };
    return cmocka_run_group_tests(tests, setup, kh_group_teardown);
}
