/* limits.c -- integration: every limit answers with its own status as
 * problem+json -- body too large 413 (by Content-Length and while a chunked
 * body streams in), header section too large 431, too many connections
 * 503 -- and an idle client is cut by the connection timeout. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_text =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
    "  \"limits\": { \"max_body_bytes\": 1024, \"max_header_bytes\": 2048,\n"
    "              \"max_connections\": 4, \"connection_timeout_s\": 1 },\n"
    "  \"module_dirs\": [\"@FUNCS@\"],\n"
    "  \"routes\": [ { \"path\": \"/echo/*\", \"target\": { \"function\": \"echo\" } } ] }\n";

static int
connect_raw(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)kh_group.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Reads what the server sends until it closes or TIMEOUT_MS passes. */
static size_t
read_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t len = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (len + 1 < cap && poll(&p, 1, timeout_ms) == 1) {
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

static void
expect_problem(const kh_resp *r, long status)
{
    char ct[128];
    if (r->status != status)
        fail_msg("got %ld, want %ld: %s", r->status, status, r->body);
    assert_string_equal(kh_header(r, "Content-Type", ct, sizeof(ct)), "application/problem+json");
    char want[64];
    snprintf(want, sizeof(want), "\"status\":%ld", status);
    assert_non_null(strstr(r->body, want));
}

static void
test_body_limit(void **state)
{
    (void)state;
    char *body = malloc(4096);
    memset(body, 'b', 4096);
    kh_resp r;
    assert_int_equal(kh_request(&kh_group, "POST", "/echo/x", NULL, body, 1024, &r), 0);
    assert_int_equal(r.status, 200); /* exactly the limit is fine */
    kh_resp_free(&r);
    assert_int_equal(kh_request(&kh_group, "POST", "/echo/x", NULL, body, 1025, &r), 0);
    expect_problem(&r, 413);
    kh_resp_free(&r);
    free(body);

    /* Chunked: no Content-Length, the limit trips while the body streams. */
    int fd = connect_raw();
    const char *head = "POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_true(write(fd, head, strlen(head)) > 0);
    char chunk[700];
    int n = snprintf(chunk, sizeof(chunk), "200\r\n");
    memset(chunk + n, 'c', 0x200);
    memcpy(chunk + n + 0x200, "\r\n", 2);
    for (int i = 0; i < 3; i++)
        assert_true(write(fd, chunk, (size_t)n + 0x200 + 2) > 0);
    assert_true(write(fd, "0\r\n\r\n", 5) > 0);
    char resp[4096];
    read_all(fd, resp, sizeof(resp), 3000);
    close(fd);
    assert_non_null(strstr(resp, "HTTP/1.1 413"));
}

static void
test_header_limit(void **state)
{
    (void)state;
    char big[3000] = "X-Big: ";
    memset(big + 7, 'x', 2900); /* curl trims blanks: fill with a letter */
    big[2907] = '\0';
    const char *headers[] = {big, NULL};
    kh_resp r;
    assert_int_equal(kh_request(&kh_group, "GET", "/echo/x", headers, NULL, 0, &r), 0);
    expect_problem(&r, 431);
    kh_resp_free(&r);
}

static void
test_connection_limit(void **state)
{
    (void)state;
    int idle[4];
    for (int i = 0; i < 4; i++)
        idle[i] = connect_raw();
    usleep(100 * 1000); /* let the server accept them */
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/echo/x", &r), 0);
    expect_problem(&r, 503);
    kh_resp_free(&r);
    for (int i = 0; i < 4; i++)
        close(idle[i]);
    usleep(100 * 1000);
    assert_int_equal(kh_get(&kh_group, "/echo/x", &r), 0);
    assert_int_equal(r.status, 200);
    kh_resp_free(&r);
}

/* Seconds from T0 until the server hangs up on FD (read_all returns at EOF). */
static double
seconds_until_closed(int fd, const struct timespec *t0)
{
    char buf[1024];
    struct timespec t1;
    read_all(fd, buf, sizeof(buf), 5000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_null(strstr(buf, " 200 "));
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Two stalled clients half a second apart: each is cut about 1 s after its
 * own last byte -- also the second one, whose deadline is computed after
 * the first one's cut woke the worker. */
static void
test_idle_connections_are_cut(void **state)
{
    (void)state;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int first = connect_raw();
    assert_true(write(first, "GET /echo/x HT", 14) == 14);
    usleep(500 * 1000);
    int second = connect_raw();
    assert_true(write(second, "GET /ec", 7) == 7);
    double a = seconds_until_closed(first, &t0);
    double b = seconds_until_closed(second, &t0);
    close(first);
    close(second);
    if (a < 0.9 || a > 2.5 || b < 1.4 || b > 3.0)
        fail_msg("cut after %.2f s and %.2f s, want about 1.0 and 1.5", a, b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_idle_connections_are_cut),
    };
    kh_group_config = config_text;
    return cmocka_run_group_tests(tests, kh_group_setup, kh_group_teardown);
}
