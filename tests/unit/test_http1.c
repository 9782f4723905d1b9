/* test_http1.c -- unit tests of core/http1.c: the exact bytes of request
 * heads, then upstream responses, each one fed whole, byte by byte, cut
 * once at every position and cut at random places, all of which must give
 * the same result (status, headers in order, body, keep-alive, the bytes
 * used, the error text). Responses cover the body framings, 1xx interim
 * responses, bodiless responses, limits, malformed and truncated input.
 * It does not test connections or pools (test_uclient.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http1.h"

#define MAX_BODY (1024 * 1024)
#define MAX_HEAD (64 * 1024)
#define RANDOM_SPLITS 40

/* ---- request head ---- */

static void
expect_head(const char *method, const char *target, const kapi_header *headers, size_t n,
            size_t body_len, const char *want)
{
    kapi_str m = {method, strlen(method)}, t = {target, strlen(target)};
    size_t size = http1_head_size(m, t, headers, n, body_len);
    assert_int_equal(size, strlen(want));
    char *buf = malloc(size); /* exactly: ASan sees any byte written past it */
    assert_non_null(buf);
    assert_int_equal(http1_write_head(buf, m, t, headers, n, body_len), size);
    assert_memory_equal(buf, want, size);
    free(buf);
}

static const kapi_header two_headers[] = {
    {KAPI_STR("Host"), KAPI_STR("api.internal:8080")},
    {KAPI_STR("X-Request-Id"), KAPI_STR("r-1")},
};

static void
test_head_get_without_body(void **state)
{
    (void)state;
    expect_head("GET", "/a/b?x=1", two_headers, 2, 0,
                "GET /a/b?x=1 HTTP/1.1\r\n"
                "Host: api.internal:8080\r\n"
                "X-Request-Id: r-1\r\n"
                "\r\n");
    expect_head("GET", "/", NULL, 0, 0, "GET / HTTP/1.1\r\n\r\n");
    expect_head("DELETE", "/x", NULL, 0, 0, "DELETE /x HTTP/1.1\r\n\r\n");
    expect_head("HEAD", "/x", NULL, 0, 0, "HEAD /x HTTP/1.1\r\n\r\n");
}

static void
test_head_with_body(void **state)
{
    (void)state;
    expect_head("POST", "/v1/users", two_headers, 2, 17,
                "POST /v1/users HTTP/1.1\r\n"
                "Host: api.internal:8080\r\n"
                "X-Request-Id: r-1\r\n"
                "Content-Length: 17\r\n"
                "\r\n");
    /* Any method with a body gets its length. */
    expect_head("GET", "/q", NULL, 0, 3, "GET /q HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
    expect_head("DELETE", "/q", NULL, 0, 1234567890,
                "DELETE /q HTTP/1.1\r\nContent-Length: 1234567890\r\n\r\n");
    expect_head("PUT", "/big", NULL, 0, SIZE_MAX,
                SIZE_MAX == UINT64_MAX
                    ? "PUT /big HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"
                    : "PUT /big HTTP/1.1\r\nContent-Length: 4294967295\r\n\r\n");
}

/* POST, PUT and PATCH always say how long their body is, even when empty. */
static void
test_head_empty_body_methods(void **state)
{
    (void)state;
    expect_head("POST", "/p", two_headers, 1, 0,
                "POST /p HTTP/1.1\r\nHost: api.internal:8080\r\nContent-Length: 0\r\n\r\n");
    expect_head("PUT", "/p", NULL, 0, 0, "PUT /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    expect_head("PATCH", "/p", NULL, 0, 0, "PATCH /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    expect_head("OPTIONS", "/p", NULL, 0, 0, "OPTIONS /p HTTP/1.1\r\n\r\n");
    expect_head("POSTX", "/p", NULL, 0, 0, "POSTX /p HTTP/1.1\r\n\r\n");
}

/* ---- response: the harness ---- */

typedef struct hdr {
    const char *name, *value;
} hdr;

typedef struct resp_case {
    const char *wire;
    size_t wire_len; /* 0: strlen(wire) */
    bool head;
    size_t max_body, max_head; /* 0: MAX_BODY, MAX_HEAD */
    bool eof;                  /* the connection closes after the last byte */
    http1_result want;
    /* When want is HTTP1_DONE: */
    int status;
    const hdr *headers; /* ends with a NULL name */
    const char *body;   /* NULL: none */
    bool keep_alive;
    size_t trailing; /* bytes at the end of wire that belong to no response */
    /* When want is HTTP1_ERROR, the error text (NULL: any). */
    const char *error;
} resp_case;

#define HDRS(...) ((const hdr[]){__VA_ARGS__, {NULL, NULL}})
#define NO_HDRS ((const hdr[]){{NULL, NULL}})

static const char *const result_names[] = {"MORE", "DONE", "ERROR", "TOOBIG"};

/* fail_msg with the case and the way it was cut. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg("%s (cut %s) in case:\n%.*s", #cond, how, (int)len, c->wire);                 \
    } while (0)

/* Feeds C->wire cut at CUTS (ascending, inside the wire) and checks the
 * outcome against C. */
static void
run_cuts(const resp_case *c, const size_t *cuts, size_t ncuts, const char *how)
{
    size_t len = c->wire_len ? c->wire_len : strlen(c->wire);
    http1_response r;
    http1_response_init(&r, c->head, c->max_body ? c->max_body : MAX_BODY,
                        c->max_head ? c->max_head : MAX_HEAD);
    CHECK(!http1_response_started(&r));

    http1_result res = HTTP1_MORE;
    size_t consumed = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t a = i == 0 ? 0 : cuts[i - 1], b = i == ncuts ? len : cuts[i];
        size_t used = SIZE_MAX;
        http1_result got = http1_response_feed(&r, c->wire + a, b - a, &used);
        if (res != HTTP1_MORE) {
            CHECK(got == res && used == 0); /* settled: nothing more is taken */
            continue;
        }
        res = got;
        CHECK(used <= b - a);
        if (got == HTTP1_MORE)
            CHECK(used == b - a);
        consumed += used;
        if (b > a && got != HTTP1_ERROR)
            CHECK(http1_response_started(&r));
    }
    if (res == HTTP1_MORE && c->eof) {
        res = http1_response_eof(&r);
        CHECK(res != HTTP1_MORE);
    }
    if (res != c->want)
        fail_msg("got %s, want %s (cut %s, error %s) in case:\n%.*s", result_names[res],
                 result_names[c->want], how, r.error ? r.error : "none", (int)len, c->wire);
    if (res != HTTP1_MORE) {
        size_t used = SIZE_MAX;
        CHECK(http1_response_feed(&r, "HTTP/1.1 200 OK\r\n", 17, &used) == res && used == 0);
        CHECK(http1_response_eof(&r) == res);
    }

    if (res == HTTP1_DONE) {
        CHECK(consumed == len - c->trailing);
        CHECK(r.status == c->status);
        CHECK(r.keep_alive == c->keep_alive);
        size_t n = 0;
        while (c->headers[n].name)
            n++;
        CHECK(r.nheaders == n);
        for (size_t i = 0; i < n; i++) {
            const kapi_header *h = &r.headers[i];
            CHECK(h->name.len == strlen(c->headers[i].name));
            CHECK(memcmp(h->name.ptr, c->headers[i].name, h->name.len) == 0);
            CHECK(h->name.ptr[h->name.len] == '\0');
            CHECK(h->value.len == strlen(c->headers[i].value));
            CHECK(memcmp(h->value.ptr, c->headers[i].value, h->value.len) == 0);
            CHECK(h->value.ptr[h->value.len] == '\0');
        }
        size_t body_len = c->body ? strlen(c->body) : 0;
        CHECK(r.body_len == body_len);
        CHECK(body_len == 0 || memcmp(r.body, c->body, body_len) == 0);
    } else if (res == HTTP1_ERROR) {
        CHECK(r.error != NULL);
        if (c->error)
            CHECK(strcmp(r.error, c->error) == 0);
    }
    http1_response_free(&r);
}

static uint64_t
next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int
cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Runs C whole, byte by byte, cut once at every position, and cut at
 * random places (a fixed seed: failures reproduce). */
static void
expect_response(const resp_case *c)
{
    size_t len = c->wire_len ? c->wire_len : strlen(c->wire);
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    assert_non_null(cuts);
    char how[64];

    run_cuts(c, NULL, 0, "whole");

    for (size_t i = 1; i < len; i++)
        cuts[i - 1] = i;
    run_cuts(c, cuts, len > 0 ? len - 1 : 0, "byte by byte");

    for (size_t i = 1; i < len; i++) {
        snprintf(how, sizeof(how), "at %zu", i);
        run_cuts(c, &i, 1, how);
    }

    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (int k = 0; k < RANDOM_SPLITS && len > 1; k++) {
        size_t n = (size_t)(next_random(&seed) % 8) + 1;
        for (size_t i = 0; i < n; i++)
            cuts[i] = (size_t)(next_random(&seed) % (len - 1)) + 1;
        qsort(cuts, n, sizeof(*cuts), cmp_size);
        snprintf(how, sizeof(how), "random #%d", k);
        run_cuts(c, cuts, n, how);
    }
    free(cuts);
}

/* ---- response: framings ---- */

static void
test_content_length(void **state)
{
    (void)state;
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\n"
                "Content-Type: application/json\r\n"
                "Content-Length: 13\r\n"
                "\r\n"
                "{\"ok\": true}\n",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Content-Type", "application/json"}, {"Content-Length", "13"}),
        .body = "{\"ok\": true}\n",
        .keep_alive = true,
    });
    /* No reason phrase, an empty body. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_DONE,
        .status = 404,
        .headers = HDRS({"Content-Length", "0"}),
        .keep_alive = true,
    });
}

static void
test_chunked_with_extensions_and_trailers(void **state)
{
    (void)state;
    /* Trailers are parsed but never merged into the header section. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\n"
                "Transfer-Encoding: chunked\r\n"
                "Trailer: X-Checksum\r\n"
                "\r\n"
                "5;name=value\r\n"
                "hello\r\n"
                "6;x;y=\"q\"\r\n"
                " world\r\n"
                "A\r\n"
                "0123456789\r\n"
                "0;last\r\n"
                "X-Checksum: abc\r\n"
                "X-More: 1\r\n"
                "\r\n",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Transfer-Encoding", "chunked"}, {"Trailer", "X-Checksum"}),
        .body = "hello world0123456789",
        .keep_alive = true,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Transfer-Encoding", "chunked"}),
        .keep_alive = true,
    });
}

static void
test_read_until_close(void **state)
{
    (void)state;
    static const char wire[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "\r\n"
                               "all of this\r\nuntil the end";
    expect_response(&(resp_case){
        .wire = wire,
        .eof = true,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Content-Type", "text/plain"}),
        .body = "all of this\r\nuntil the end",
        .keep_alive = false,
    });
    /* Without the EOF the body may go on. */
    expect_response(&(resp_case){.wire = wire, .want = HTTP1_MORE});
    /* A transfer coding other than chunked last: also until close. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
        .eof = true,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Transfer-Encoding", "gzip"}),
        .body = "zz",
        .keep_alive = false,
    });
    /* An empty body until close. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.0 200 OK\r\n\r\n",
        .eof = true,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = NO_HDRS,
        .keep_alive = false,
    });
}

/* ---- response: no body ---- */

static void
test_head_response_has_no_body(void **state)
{
    (void)state;
    /* The length is the GET's: above max_body, yet nothing is read. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
        .head = true,
        .max_body = 10,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Content-Length", "5000"}),
        .keep_alive = true,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        .head = true,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Transfer-Encoding", "chunked"}),
        .keep_alive = true,
    });
}

static void
test_204_has_no_body(void **state)
{
    (void)state;
    /* Whatever its headers say: the bytes after belong to no response. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc",
        .want = HTTP1_DONE,
        .status = 204,
        .headers = HDRS({"Content-Length", "3"}),
        .keep_alive = true,
        .trailing = 3,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        .want = HTTP1_DONE,
        .status = 204,
        .headers = HDRS({"Transfer-Encoding", "chunked"}),
        .keep_alive = true,
    });
}

static void
test_304_has_no_body(void **state)
{
    (void)state;
    /* A 304 may announce the length of the representation it stands for. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n",
        .max_body = 100,
        .want = HTTP1_DONE,
        .status = 304,
        .headers = HDRS({"ETag", "\"v1\""}, {"Content-Length", "1234"}),
        .keep_alive = true,
    });
}

/* ---- response: interim 1xx ---- */

static void
test_100_continue_then_200(void **state)
{
    (void)state;
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 100 Continue\r\n\r\n"
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Content-Length", "2"}),
        .body = "ok",
        .keep_alive = true,
    });
    /* Only a 1xx so far: more to come. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 100 Continue\r\n\r\n",
        .want = HTTP1_MORE,
    });
}

static void
test_103_then_200(void **state)
{
    (void)state;
    /* The interim headers are dropped; several interims in a row. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 103 Early Hints\r\n"
                "Link: </style.css>; rel=preload\r\n"
                "\r\n"
                "HTTP/1.1 103 Early Hints\r\n"
                "Link: </app.js>; rel=preload\r\n"
                "Content-Length: 7\r\n"
                "\r\n"
                "HTTP/1.1 200 OK\r\n"
                "Link: </style.css>; rel=preload\r\n"
                "Transfer-Encoding: chunked\r\n"
                "\r\n"
                "3\r\nabc\r\n0\r\n\r\n",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Link", "</style.css>; rel=preload"}, {"Transfer-Encoding", "chunked"}),
        .body = "abc",
        .keep_alive = true,
    });
}

/* A 101 was never asked for: what follows is not HTTP. */
static void
test_101_is_an_error(void **state)
{
    (void)state;
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        .want = HTTP1_ERROR,
    });
    /* Not an interim response to skip either. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 101 Switching Protocols\r\n\r\n"
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
    });
}

/* ---- response: connection reuse ---- */

static void
test_keep_alive(void **state)
{
    (void)state;
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Content-Length", "1"}),
        .body = "x",
        .keep_alive = true,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Connection", "close"}, {"Content-Length", "1"}),
        .body = "x",
        .keep_alive = false,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Content-Length", "1"}),
        .body = "x",
        .keep_alive = false,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Connection", "keep-alive"}, {"Content-Length", "1"}),
        .body = "x",
        .keep_alive = true,
    });
}

/* ---- response: headers ---- */

static void
test_repeated_headers_keep_order(void **state)
{
    (void)state;
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\n"
                "Set-Cookie: a=1\r\n"
                "Vary: Accept\r\n"
                "Set-Cookie: b=2\r\n"
                "set-cookie: a=1\r\n"
                "Vary: Origin\r\n"
                "Content-Length: 0\r\n"
                "\r\n",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Set-Cookie", "a=1"}, {"Vary", "Accept"}, {"Set-Cookie", "b=2"},
                        {"set-cookie", "a=1"}, {"Vary", "Origin"}, {"Content-Length", "0"}),
        .keep_alive = true,
    });
}

static void
test_header_whitespace(void **state)
{
    (void)state;
    /* Empty values; blanks around a value and before a colon go. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\n"
                "X-Empty:\r\n"
                "X-Blank:   \r\n"
                "X-Pad: \t a b \t\r\n"
                "X-Colon : v\r\n"
                "Content-Length: 0\r\n"
                "\r\n",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"X-Empty", ""}, {"X-Blank", ""}, {"X-Pad", "a b"}, {"X-Colon", "v"},
                        {"Content-Length", "0"}),
        .keep_alive = true,
    });
    /* http-parser accepts an obs-fold line and hands its text (blanks
     * first) as more of the value: one header, the fold's CRLF gone. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nX-Fold: a\r\n  b\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"X-Fold", "a  b"}, {"Content-Length", "0"}),
        .keep_alive = true,
    });
}

/* ---- response: malformed ---- */

static void
test_malformed_status_line(void **state)
{
    (void)state;
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_STATUS),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/x.1 200 OK\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_VERSION),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 OK 200\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_STATUS),
    });
    expect_response(&(resp_case){
        .wire = "<html>hello</html>",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_CONSTANT),
    });
    /* http-parser takes fewer than three digits: checked here. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 99 Low\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 0\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
    });
}

static void
test_malformed_headers(void **state)
{
    (void)state;
    static const char nul[] = "HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: 0\r\n\r\n";
    expect_response(&(resp_case){
        .wire = nul,
        .wire_len = sizeof(nul) - 1,
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_HEADER_TOKEN),
    });
    /* http-parser misses a control byte opening a value; caught here. */
    static const char nul_first[] = "HTTP/1.1 200 OK\r\nX-Nul: \0b\r\nContent-Length: 0\r\n\r\n";
    expect_response(&(resp_case){
        .wire = nul_first,
        .wire_len = sizeof(nul_first) - 1,
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_HEADER_TOKEN),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nX-Esc: \x1b[31m\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_HEADER_TOKEN),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nBad\tName: v\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_HEADER_TOKEN),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nX-Ok: 1\r\n: v\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_HEADER_TOKEN),
    });
    /* http-parser takes blanks for name bytes; refused here. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\n : v\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
    });
    /* A bare CR ends nothing. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_LF_EXPECTED),
    });
}

/* The framings http-parser refuses (smuggling material). */
static void
test_ambiguous_length(void **state)
{
    (void)state;
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                "3\r\nabc\r\n0\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_UNEXPECTED_CONTENT_LENGTH),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_UNEXPECTED_CONTENT_LENGTH),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_CONTENT_LENGTH),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_CONTENT_LENGTH),
    });
}

static void
test_bad_chunk_size(void **state)
{
    (void)state;
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_CHUNK_SIZE),
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        .want = HTTP1_ERROR,
        .error = http_errno_description(HPE_INVALID_CHUNK_SIZE),
    });
}

/* ---- response: EOF ---- */

static void
test_truncated_body_at_eof(void **state)
{
    (void)state;
    const char *eof_error = http_errno_description(HPE_INVALID_EOF_STATE);
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234",
        .eof = true,
        .want = HTTP1_ERROR,
        .error = eof_error,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        .eof = true,
        .want = HTTP1_ERROR,
        .error = eof_error,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
        .eof = true,
        .want = HTTP1_ERROR,
        .error = eof_error,
    });
}

static void
test_eof_before_headers(void **state)
{
    (void)state;
    http1_response r;
    http1_response_init(&r, false, MAX_BODY, MAX_HEAD);
    assert_int_equal(http1_response_eof(&r), HTTP1_ERROR);
    assert_non_null(r.error);
    assert_false(http1_response_started(&r)); /* a stale connection: safe to retry */
    http1_response_free(&r);

    expect_response(&(resp_case){.wire = "HTTP/1.1 20", .eof = true, .want = HTTP1_ERROR});
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",
        .eof = true,
        .want = HTTP1_ERROR,
    });
    /* Only an interim response came. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 100 Continue\r\n\r\n",
        .eof = true,
        .want = HTTP1_ERROR,
    });
}

/* ---- response: limits ---- */

static void
test_body_over_max_body_announced(void **state)
{
    (void)state;
    /* Refused on the headers alone, before any body byte arrives. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
        .max_body = 10,
        .want = HTTP1_TOOBIG,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n",
        .want = HTTP1_TOOBIG,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
        .max_body = 10,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Content-Length", "10"}),
        .body = "0123456789",
        .keep_alive = true,
    });
}

static void
test_body_over_max_body_chunked(void **state)
{
    (void)state;
    /* Small chunks adding up past the limit. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "4\r\n0123\r\n4\r\n4567\r\n3\r\n89a\r\n0\r\n\r\n",
        .max_body = 10,
        .want = HTTP1_TOOBIG,
    });
    /* One chunk announcing more than the limit: refused before its bytes. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\n7\r\n",
        .max_body = 10,
        .want = HTTP1_TOOBIG,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n",
        .max_body = 10,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Transfer-Encoding", "chunked"}),
        .body = "0123456789",
        .keep_alive = true,
    });
    /* Until close, too. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\n\r\n0123456789a",
        .max_body = 10,
        .want = HTTP1_TOOBIG,
    });
}

static void
test_header_section_over_max_head(void **state)
{
    (void)state;
    /* Names and values: "X-A" "12345" "X-B" "678" = 14 bytes. */
    static const char wire[] = "HTTP/1.1 200 OK\r\nX-A: 12345\r\nX-B: 678\r\n\r\n";
    expect_response(&(resp_case){
        .wire = wire,
        .max_head = 14,
        .eof = true,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"X-A", "12345"}, {"X-B", "678"}),
        .keep_alive = false,
    });
    expect_response(&(resp_case){.wire = wire, .max_head = 13, .want = HTTP1_TOOBIG});
    /* An interim response's headers do not count against the final's. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 103 Early Hints\r\nX-A: 12345\r\nX-B: 678\r\n\r\n"
                "HTTP/1.1 200 OK\r\nX-A: 12345\r\nX-B: 678\r\nContent-Length: 0\r\n\r\n",
        .max_head = 14 + 14 + 1,
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"X-A", "12345"}, {"X-B", "678"}, {"Content-Length", "0"}),
        .keep_alive = true,
    });
}

/* http-parser's own bound on a header section (80 KiB) is a TOOBIG too. */
static void
test_header_section_over_parser_limit(void **state)
{
    (void)state;
    size_t n = 100 * 1024;
    char *wire = malloc(n + 1);
    assert_non_null(wire);
    static const char start[] = "HTTP/1.1 200 OK\r\nX-Big: ";
    memcpy(wire, start, sizeof(start) - 1);
    memset(wire + sizeof(start) - 1, 'v', n - (sizeof(start) - 1));
    wire[n] = '\0';
    http1_response r;
    http1_response_init(&r, false, MAX_BODY, SIZE_MAX);
    size_t used;
    assert_int_equal(http1_response_feed(&r, wire, n, &used), HTTP1_TOOBIG);
    http1_response_free(&r);
    free(wire);
}

/* ---- response: the caller's side ---- */

static void
test_trailing_bytes(void **state)
{
    (void)state;
    /* A second response, or garbage: not ours, and *used says where. */
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Content-Length", "2"}),
        .body = "hi",
        .keep_alive = true,
        .trailing = 38,
    });
    expect_response(&(resp_case){
        .wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGARBAGE",
        .want = HTTP1_DONE,
        .status = 200,
        .headers = HDRS({"Transfer-Encoding", "chunked"}),
        .body = "hi",
        .keep_alive = true,
        .trailing = 7,
    });
}

static void
test_take_body(void **state)
{
    (void)state;
    static const char wire[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    http1_response r;
    http1_response_init(&r, false, MAX_BODY, MAX_HEAD);
    size_t used;
    assert_int_equal(http1_response_feed(&r, wire, sizeof(wire) - 1, &used), HTTP1_DONE);
    size_t len = 0;
    char *body = http1_response_take_body(&r, &len);
    assert_non_null(body);
    assert_int_equal(len, 5);
    assert_memory_equal(body, "hello", 5);
    assert_null(r.body);
    assert_int_equal(r.body_len, 0);
    /* The headers stay readable; freeing R leaves the body alone. */
    assert_int_equal(r.nheaders, 1);
    assert_string_equal(r.headers[0].value.ptr, "5");
    http1_response_free(&r);
    assert_memory_equal(body, "hello", 5);
    free(body);
}

static void
test_started(void **state)
{
    (void)state;
    http1_response r;
    size_t used;
    http1_response_init(&r, false, MAX_BODY, MAX_HEAD);
    assert_false(http1_response_started(&r));
    assert_int_equal(http1_response_feed(&r, "", 0, &used), HTTP1_MORE);
    assert_int_equal(used, 0);
    assert_false(http1_response_started(&r));
    assert_int_equal(http1_response_feed(&r, "H", 1, &used), HTTP1_MORE);
    assert_true(http1_response_started(&r));
    /* The connection closed mid-response: not a stale connection. */
    assert_int_equal(http1_response_eof(&r), HTTP1_ERROR);
    assert_true(http1_response_started(&r));
    http1_response_free(&r);

    /* Only an interim response: started all the same. */
    http1_response_init(&r, false, MAX_BODY, MAX_HEAD);
    assert_int_equal(http1_response_feed(&r, "HTTP/1.1 100 Continue\r\n\r\n", 25, &used),
                     HTTP1_MORE);
    assert_true(http1_response_started(&r));
    http1_response_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_get_without_body),
        cmocka_unit_test(test_head_with_body),
        cmocka_unit_test(test_head_empty_body_methods),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_chunked_with_extensions_and_trailers),
        cmocka_unit_test(test_read_until_close),
        cmocka_unit_test(test_head_response_has_no_body),
        cmocka_unit_test(test_204_has_no_body),
        cmocka_unit_test(test_304_has_no_body),
        cmocka_unit_test(test_100_continue_then_200),
        cmocka_unit_test(test_103_then_200),
        cmocka_unit_test(test_101_is_an_error),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_repeated_headers_keep_order),
        cmocka_unit_test(test_header_whitespace),
        cmocka_unit_test(test_malformed_status_line),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_ambiguous_length),
        cmocka_unit_test(test_bad_chunk_size),
        cmocka_unit_test(test_truncated_body_at_eof),
        cmocka_unit_test(test_eof_before_headers),
        cmocka_unit_test(test_body_over_max_body_announced),
        cmocka_unit_test(test_body_over_max_body_chunked),
        cmocka_unit_test(test_header_section_over_max_head),
        cmocka_unit_test(test_header_section_over_parser_limit),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_take_body),
        cmocka_unit_test(test_started),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
