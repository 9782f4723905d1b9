/* malformed.c -- integration: bad HTTP input gets a clear answer (or a
 * closed connection) and loses nothing: after every malformed request on a
 * raw socket the server still answers a normal one; pipelined requests on
 * one connection are all answered, in order. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_text =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1,\n"
    "  \"limits\": { \"max_body_bytes\": 4096, \"connection_timeout_s\": 2 },\n"
    "  \"module_dirs\": [\"@FUNCS@\"],\n"
    "  \"routes\": [ { \"path\": \"/hello\", \"target\": { \"function\": \"hello\" } },\n"
    "              { \"path\": \"/echo/*\", \"target\": { \"function\": \"echo\" } } ] }\n";

/* Sends LEN bytes of DATA on a new connection and reads the answer until
 * the server closes or 3 s pass; returns what arrived in OUT. */
static size_t
exchange(const char *data, size_t len, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)kh_group.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (len)
        assert_true(write(fd, data, len) == (ssize_t)len);
    shutdown(fd, SHUT_WR);
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (got + 1 < cap && poll(&p, 1, 3000) == 1) {
        ssize_t n = read(fd, out + got, cap - got - 1);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
    return got;
}

static void
still_serving(const char *after)
{
    kh_resp r;
    if (kh_get(&kh_group, "/hello", &r) != 0 || r.status != 200)
        fail_msg("no longer serving after: %s", after);
    kh_resp_free(&r);
}

typedef struct bad_input {
    const char *name;
    const char *bytes;
    size_t len;         /* 0: strlen(bytes) */
    const char *answer; /* expected status line prefix, or NULL: any answer or a close */
} bad_input;

#define LIT(s) s, sizeof(s) - 1

static const bad_input inputs[] = {
    {"garbage request line", LIT("HELLO\r\n\r\n"), NULL},
    {"no version", LIT("GET /hello\r\n\r\n"), NULL},
    {"unknown version", LIT("GET /hello HTTP/7.3\r\nHost: x\r\n\r\n"), NULL},
    {"header without colon", LIT("GET /hello HTTP/1.1\r\nHost x\r\n\r\n"), "HTTP/1.1 400"},
    {"NUL in the path", LIT("GET /hel\0lo HTTP/1.1\r\nHost: x\r\n\r\n"), NULL},
    {"encoded NUL", LIT("GET /hello%00 HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 400"},
    {"bad escape", LIT("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 400"},
    {"relative path", LIT("GET hello HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 400"},
    {"bad chunk size",
     LIT("POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), NULL},
    {"body shorter than Content-Length",
     LIT("POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"), NULL},
    {"negative Content-Length",
     LIT("POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), NULL},
    {"huge Content-Length",
     LIT("POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"), NULL},
    {"only CRLFs", LIT("\r\n\r\n\r\n\r\n"), NULL},
    {"empty connection", "", 0, NULL},
    {"binary noise", LIT("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xff\xfe"), NULL},
};

static void
test_bad_input_loses_nothing(void **state)
{
    (void)state;
    char out[8192];
    for (size_t i = 0; i < sizeof(inputs) / sizeof(*inputs); i++) {
        const bad_input *b = &inputs[i];
        exchange(b->bytes, b->len, out, sizeof(out));
        if (b->answer && strncmp(out, b->answer, strlen(b->answer)) != 0)
            fail_msg("%s: got \"%.60s\", want \"%s\"", b->name, out, b->answer);
        if (strstr(out, "HTTP/1.1 200"))
            fail_msg("%s: answered 200", b->name);
        still_serving(b->name);
    }
}

static void
test_huge_request_line(void **state)
{
    (void)state;
    static char req[70000], out[8192];
    int n = snprintf(req, sizeof(req), "GET /");
    memset(req + n, 'a', 65000);
    n += 65000;
    n += snprintf(req + n, sizeof(req) - (size_t)n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    exchange(req, (size_t)n, out, sizeof(out));
    assert_null(strstr(out, "HTTP/1.1 200"));
    still_serving("a 64 KiB request line");
}

static void
test_pipelined_requests_answered_in_order(void **state)
{
    (void)state;
    char req[4096], out[65536];
    size_t len = 0;
    for (int i = 0; i < 10; i++)
        len += (size_t)snprintf(req + len, sizeof(req) - len,
                                "GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
    exchange(req, len, out, sizeof(out));
    const char *p = out;
    for (int i = 0; i < 10; i++) {
        char want[32];
        snprintf(want, sizeof(want), "\"path\":\"/echo/%d\"", i);
        const char *at = strstr(p, want);
        if (!at)
            fail_msg("response %d missing or out of order", i);
        p = at + strlen(want);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input_loses_nothing),
        cmocka_unit_test(test_huge_request_line),
        cmocka_unit_test(test_pipelined_requests_answered_in_order),
    };
    kh_group_config = config_text;
    return cmocka_run_group_tests(tests, kh_group_setup, kh_group_teardown);
}
