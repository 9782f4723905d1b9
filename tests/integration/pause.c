/* pause.c -- integration: a plugin PAUSEs and is resumed from another
 * thread; many paused requests at once all complete; the host's pause
 * deadline answers 504 and the late resume that follows is ignored safely
 * while the server keeps serving; a paused request outlives the idle
 * connection timeout; a client that goes away while its request is paused
 * costs nothing but the request. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_text =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
    "  \"limits\": { \"connection_timeout_s\": 1 },\n"
    "  \"module_dirs\": [\"@FUNCS@\", \"@TMODS@\"],\n"
    "  \"routes\": [\n"
    "    { \"path\": \"/paused\", \"plugins\": [ { \"module\": \"t_pause\", \"config\": { "
    "\"delay_ms\": 200 } } ],\n"
    "      \"target\": { \"function\": \"echo\" } },\n"
    "    { \"path\": \"/late\", \"plugins\": [ { \"module\": \"t_pause\", \"config\": { "
    "\"timeout_ms\": 200, \"delay_ms\": 1500 } } ],\n"
    "      \"target\": { \"function\": \"echo\" } },\n"
    "    { \"path\": \"/paused-long\", \"plugins\": [ { \"module\": \"t_pause\", \"config\": { "
    "\"delay_ms\": 1000 } } ],\n"
    "      \"target\": { \"function\": \"echo\" } },\n"
    "    { \"path\": \"/paused-2s\", \"plugins\": [ { \"module\": \"t_pause\", \"config\": { "
    "\"delay_ms\": 2000 } } ],\n"
    "      \"target\": { \"function\": \"echo\" } },\n"
    "    { \"path\": \"/hello\", \"target\": { \"function\": \"hello\" } }\n"
    "  ] }\n";

static void
test_pause_resume_from_thread(void **state)
{
    (void)state;
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/paused", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "x-paused")); /* set by the hook's second call */
    assert_true(r.total_s >= 0.19);
    kh_resp_free(&r);
}

static void *
paused_request(void *arg)
{
    long *status = arg;
    kh_resp r;
    *status = kh_get(&kh_group, "/paused-long", &r) == 0 ? r.status : -1;
    kh_resp_free(&r);
    return NULL;
}

/* 16 requests paused for 1 s at once on one worker thread; meanwhile that
 * same worker keeps answering other requests without waiting for them. */
static void
test_many_paused_at_once(void **state)
{
    (void)state;
    enum { N = 16 };
    pthread_t t[N];
    long status[N];
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, paused_request, &status[i]);
    usleep(50 * 1000);
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/hello", &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.total_s < 0.8); /* not stuck behind the paused ones (1 s) */
    kh_resp_free(&r);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(status[i], 200);
    }
}

static void
test_pause_timeout_then_late_resume(void **state)
{
    (void)state;
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/late", &r), 0);
    assert_int_equal(r.status, 504);
    assert_non_null(strstr(r.body, "\"status\":504"));
    assert_true(r.total_s < 1.2); /* the deadline, well before the resume */
    kh_resp_free(&r);
    usleep(1500 * 1000); /* the module's resume arrives now, after the end */
    assert_int_equal(kh_get(&kh_group, "/hello", &r), 0);
    assert_int_equal(r.status, 200);
    kh_resp_free(&r);
    assert_true(kh_log_has(&kh_group, "pause deadline passed"));
}

/* The idle connection timeout (1 s here) never cuts a request that is
 * paused (2 s): the pause deadline is what bounds it. */
static void
test_pause_outlives_connection_timeout(void **state)
{
    (void)state;
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/paused-2s", &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.total_s >= 1.9);
    kh_resp_free(&r);
}

/* A client sends a request that pauses for 1 s and hangs up after 100 ms:
 * the request ends with its connection, the module's later resume only
 * releases it, and the server keeps serving (ASan watches the memory). */
static void
test_client_gone_while_paused(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)kh_group.port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char req[] = "GET /paused-long HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    usleep(100 * 1000);
    close(fd);
    usleep(1300 * 1000); /* the resume arrives after the client left */
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/hello", &r), 0);
    assert_int_equal(r.status, 200);
    kh_resp_free(&r);
    assert_true(kh_log_has(&kh_group, "\"path\":\"/paused-long\""));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pause_resume_from_thread),
        cmocka_unit_test(test_many_paused_at_once),
        cmocka_unit_test(test_pause_timeout_then_late_resume),
        cmocka_unit_test(test_pause_outlives_connection_timeout),
        cmocka_unit_test(test_client_gone_while_paused),
    };
    kh_group_config = config_text;
    return cmocka_run_group_tests(tests, kh_group_setup, kh_group_teardown);
}
