/* lifecycle.c -- integration: the kapi command line (version, check with
 * its resolved chains and its errors) and graceful shutdown: on SIGTERM
 * kapi stops accepting, lets an in-flight request finish, and exits 0. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_text =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
    "  \"module_dirs\": [\"@FUNCS@\", \"@TMODS@\"],\n"
    "  \"plugins\": [ { \"module\": \"t_order\", \"config\": { \"tag\": \"g\" } } ],\n"
    "  \"routes\": [\n"
    "    { \"name\": \"slow\", \"path\": \"/slow\", \"plugins\": [ { \"module\": \"t_pause\", "
    "\"config\": { \"delay_ms\": 600 } } ],\n"
    "      \"target\": { \"function\": \"hello\" } }\n"
    "  ] }\n";

/* Runs "kapi ARGS..." and captures stdout+stderr into OUT. Returns the exit status. */
static int
run_kapi(char *out, size_t len, const char *a1, const char *a2, const char *a3)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' %s %s %s 2>&1", getenv("KAPI_BIN"), a1, a2 ? a2 : "",
             a3 ? a3 : "");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_version(void **state)
{
    (void)state;
    char out[512];
    assert_int_equal(run_kapi(out, sizeof(out), "version", NULL, NULL), 0);
    assert_non_null(strstr(out, "SDK ABI 1.1"));
}

static void
test_check(void **state)
{
    (void)state;
    kh_server s;
    char out[4096];
    assert_int_equal(kh_prepare(&s, config_text), 0);
    assert_int_equal(run_kapi(out, sizeof(out), "check", "-c", s.config), 0);
    assert_non_null(strstr(out, "route slow: * /slow"));
    assert_non_null(strstr(out, "chain: t_order (global) -> t_pause -> function:hello"));

    assert_int_equal(
        kh_write_config(
            &s,
            "{ \"listen\": [\"127.0.0.1:0\"],\n"
            "  \"module_dirs\": [\"@TMODS@\"],\n"
            "  \"routes\": [ { \"path\": \"/x\", \"target\": { \"function\": \"t_abi2\" } } ] }"),
        0);
    assert_int_equal(run_kapi(out, sizeof(out), "check", "-c", s.config), 1);
    assert_non_null(strstr(out, "routes[0].target.function: "));
    assert_non_null(strstr(out, "built for kapi ABI 2.0, this kapi provides ABI 1.1"));
    assert_int_equal(kh_stop(&s), 0);
}

static void *
slow_request(void *arg)
{
    kh_server *s = arg;
    kh_resp r;
    long status = kh_get(s, "/slow", &r) == 0 ? r.status : -1;
    kh_resp_free(&r);
    return (void *)status;
}

static void
test_sigterm_drains_in_flight(void **state)
{
    (void)state;
    kh_server s;
    assert_int_equal(kh_launch(&s, config_text), 0);
    pthread_t t;
    pthread_create(&t, NULL, slow_request, &s);
    usleep(200 * 1000);
    kill(s.pid, SIGTERM);
    assert_true(kh_wait_log(&s, "SIGTERM: draining", 2000));
    usleep(50 * 1000);
    kh_resp refused;
    assert_int_equal(kh_get(&s, "/slow", &refused), -1); /* no longer accepting */
    kh_resp_free(&refused);
    assert_int_equal(kh_signal_wait(&s, 0, 5000), 0); /* exits 0 after draining */
    void *status;
    pthread_join(t, &status);
    assert_int_equal((long)status, 200);
    assert_true(kh_log_has(&s, "SIGTERM: draining"));
    assert_int_equal(kh_stop(&s), 0);
}

/* A request still paused when the drain deadline passes is answered 503 and
 * kapi exits 0 (MHD refuses to stop a daemon with suspended connections:
 * kapi resumes them first). */
static void
test_shutdown_deadline_with_paused_request(void **state)
{
    (void)state;
    kh_server s;
    assert_int_equal(kh_launch(&s, "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
                                   "  \"limits\": { \"shutdown_timeout_ms\": 200 },\n"
                                   "  \"module_dirs\": [\"@FUNCS@\", \"@TMODS@\"],\n"
                                   "  \"routes\": [ { \"path\": \"/slow\", \"plugins\": [ { "
                                   "\"module\": \"t_pause\", \"config\": { \"delay_ms\": 3000 } } "
                                   "], \"target\": { \"function\": \"hello\" } } ] }"),
                     0);
    pthread_t t;
    pthread_create(&t, NULL, slow_request, &s);
    usleep(200 * 1000);
    assert_int_equal(kh_signal_wait(&s, SIGTERM, 2000), 0);
    assert_true(kh_log_has(&s, "shutdown deadline passed with 1 requests in flight"));
    void *status;
    pthread_join(t, &status);
    assert_int_equal((long)status, 503); /* answered, not dropped */
    assert_int_equal(kh_stop(&s), 0);
}

/* An idle keep-alive client does not hold shutdown up to the deadline: it
 * is cut about a second after draining starts, and kapi exits 0. */
static void
test_drain_cuts_idle_keepalive(void **state)
{
    (void)state;
    kh_server s;
    assert_int_equal(kh_launch(&s, config_text), 0); /* shutdown_timeout_ms: 10 s default */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char *req = "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(write(fd, req, strlen(req)) > 0);
    char buf[2048];
    assert_true(read(fd, buf, sizeof(buf)) > 0); /* answered; the connection stays open */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kh_signal_wait(&s, SIGTERM, 5000), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (took > 3.0)
        fail_msg("shutdown took %.2f s with an idle keep-alive client", took);
    close(fd);
    assert_int_equal(kh_stop(&s), 0);
}

/* A second kapi on a port the first one serves fails with a clear error
 * instead of silently sharing it (SO_REUSEPORT would allow that). */
static void
test_port_in_use_is_refused(void **state)
{
    (void)state;
    kh_server a, b;
    assert_int_equal(kh_launch(&a, config_text), 0);
    char cfg[1024];
    snprintf(cfg, sizeof(cfg),
             "{ \"listen\": [\"127.0.0.1:%u\"], \"threads\": 2, \"module_dirs\": [\"@FUNCS@\"],"
             "  \"routes\": [] }",
             a.port);
    assert_int_equal(kh_prepare(&b, cfg), 0);
    assert_int_not_equal(kh_start(&b), 0); /* it exits instead of listening */
    char want[64];
    snprintf(want, sizeof(want), "listen 127.0.0.1:%u: Address already in use", a.port);
    assert_true(kh_log_has(&b, want));
    assert_int_equal(kh_stop(&b), 0);
    assert_int_equal(kh_stop(&a), 0);
}

/* A drain cuts only idle connections: a client that is slow to read a big
 * answer started before SIGTERM still gets all of it. */
static void
test_drain_spares_busy_connections(void **state)
{
    (void)state;
    kh_server s;
    assert_int_equal(kh_launch(&s, "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
                                   "  \"limits\": { \"max_body_bytes\": 33554432 },\n"
                                   "  \"module_dirs\": [\"@FUNCS@\"],\n"
                                   "  \"routes\": [ { \"path\": \"/echo/*\", \"target\": { "
                                   "\"function\": \"echo\" } } ] }"),
                     0);
    enum { BODY = 8 << 20 };
    static char body[BODY];
    memset(body, 'b', sizeof(body));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char head[128];
    int hl = snprintf(head, sizeof(head),
                      "POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", BODY);
    assert_true(write(fd, head, (size_t)hl) == hl);
    for (size_t off = 0; off < sizeof(body);) {
        ssize_t n = write(fd, body + off, sizeof(body) - off);
        assert_true(n > 0);
        off += (size_t)n;
    }
    usleep(300 * 1000);
    kill(s.pid, SIGTERM);
    sleep(2); /* a slow reader: the answer waits in kapi's socket buffers */
    size_t got = 0;
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        got += (size_t)n;
    close(fd);
    if (got < (size_t)BODY)
        fail_msg("got %zu bytes of an answer holding an %d-byte body", got, BODY);
    assert_int_equal(kh_signal_wait(&s, 0, 5000), 0);
    assert_int_equal(kh_stop(&s), 0);
}

static bool
ipv6_loopback_works(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Two listeners (IPv4 and IPv6) and the access log in a file. */
static void
test_listeners_and_access_log_file(void **state)
{
    (void)state;
    if (!ipv6_loopback_works())
        skip();
    kh_server s;
    assert_int_equal(kh_launch(&s, "{ \"listen\": [\"127.0.0.1:0\", \"[::1]:0\"], \"threads\": 2,\n"
                                   "  \"log\": { \"access\": \"@DIR@/access.log\" },\n"
                                   "  \"module_dirs\": [\"@FUNCS@\"],\n"
                                   "  \"routes\": [ { \"name\": \"hi\", \"path\": \"/hello\", "
                                   "\"target\": { \"function\": \"hello\" } } ] }"),
                     0);
    kh_resp r;
    assert_int_equal(kh_get(&s, "/hello", &r), 0);
    assert_int_equal(r.status, 200);
    kh_resp_free(&r);
    s.port = kh_log_port(&s, "[::1]");
    assert_true(s.port > 0);
    s.addr = "[::1]";
    assert_int_equal(kh_get(&s, "/hello", &r), 0);
    assert_int_equal(r.status, 200);
    kh_resp_free(&r);

    char path[400], line[1024];
    snprintf(path, sizeof(path), "%s/access.log", s.dir);
    int lines = 0, v6 = 0;
    for (int waited = 0; waited < 2000 && lines < 2; waited += 20, usleep(20000)) {
        FILE *f = fopen(path, "r");
        lines = v6 = 0;
        while (f && fgets(line, sizeof(line), f)) {
            lines++;
            v6 += strstr(line, "\"client\":\"::1\"") != NULL;
            assert_non_null(strstr(line, "\"route\":\"hi\",\"status\":200"));
        }
        if (f)
            fclose(f);
    }
    assert_int_equal(lines, 2);
    assert_int_equal(v6, 1);
    assert_false(kh_log_has(&s, "\"route\":\"hi\"")); /* not on stderr */
    assert_int_equal(kh_stop(&s), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_sigterm_drains_in_flight),
        cmocka_unit_test(test_shutdown_deadline_with_paused_request),
        cmocka_unit_test(test_drain_cuts_idle_keepalive),
        cmocka_unit_test(test_port_in_use_is_refused),
        cmocka_unit_test(test_drain_spares_busy_connections),
        cmocka_unit_test(test_listeners_and_access_log_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
