/* fuzz_http1.c -- libFuzzer target for the response reader of
 * core/http1.c.
 *
 * The first input byte chooses HEAD or not, small or large limits and a
 * cut point; the rest is what the upstream sent, fed once whole and once in
 * two pieces (each in a buffer of its own size, so ASan sees a read past
 * it), then EOF if the response is still open. Both runs must complete
 * alike, and a completed response must be sane: a final status (200..999,
 * never a 1xx), header views inside the header buffer, NUL-terminated, with
 * no control byte but HT, a body within max_body and none for HEAD, 204 or
 * 304; once settled, nothing more is consumed. It does not fuzz request
 * heads (their input is the request's validated header list). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http1: %s failed\n", #cond);                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct limits {
    bool head;
    size_t max_body, max_head;
} limits;

/* Feeds BYTES[0, LEN) copied into its own buffer; returns the outcome and
 * adds the bytes used to *CONSUMED. */
static http1_result
feed_piece(http1_response *r, http1_result before, const uint8_t *bytes, size_t len,
           size_t *consumed)
{
    char *piece = malloc(len ? len : 1);
    CHECK(piece);
    memcpy(piece, bytes, len);
    size_t used = SIZE_MAX;
    http1_result res = http1_response_feed(r, piece, len, &used);
    free(piece);
    if (before != HTTP1_MORE) {
        CHECK(res == before && used == 0);
        return res;
    }
    CHECK(used <= len);
    if (res == HTTP1_MORE)
        CHECK(used == len);
    if (len > 0 && res != HTTP1_ERROR)
        CHECK(http1_response_started(r));
    *consumed += used;
    return res;
}

/* V lies inside R's header buffer, NUL-terminated, and holds no control
 * byte but HT (so no NUL, CR or LF). */
static bool
view_inside(const http1_response *r, kapi_str v)
{
    if (v.ptr < r->hbuf || v.ptr + v.len >= r->hbuf + r->hlen || v.ptr[v.len] != '\0')
        return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static void
check_settled(http1_response *r, http1_result res, const limits *lim)
{
    CHECK(res != HTTP1_MORE);
    size_t used = SIZE_MAX;
    CHECK(http1_response_feed(r, "HTTP/1.1 200 OK\r\n\r\n", 19, &used) == res && used == 0);
    CHECK(http1_response_eof(r) == res);
    if (res != HTTP1_DONE) {
        CHECK(r->error != NULL);
        return;
    }
    CHECK(r->error == NULL);
    CHECK(r->status >= 200 && r->status <= 999);
    CHECK(r->nheaders == 0 || r->headers != NULL);
    for (size_t i = 0; i < r->nheaders; i++) {
        CHECK(r->headers[i].name.len > 0);
        CHECK(view_inside(r, r->headers[i].name));
        CHECK(view_inside(r, r->headers[i].value));
        CHECK(!memchr(r->headers[i].name.ptr, ' ', r->headers[i].name.len));
    }
    CHECK(r->body_len <= lim->max_body);
    CHECK(r->body_len == 0 || (r->body != NULL && r->body_len <= r->body_cap));
    if (lim->head || r->status == 204 || r->status == 304)
        CHECK(r->body_len == 0);
}

/* Feeds WIRE cut at CUT (LEN: no cut), then EOF if still open. */
static http1_result
run(http1_response *r, const limits *lim, const uint8_t *wire, size_t len, size_t cut,
    size_t *consumed)
{
    http1_response_init(r, lim->head, lim->max_body, lim->max_head);
    *consumed = 0;
    http1_result res = feed_piece(r, HTTP1_MORE, wire, cut, consumed);
    if (cut < len)
        res = feed_piece(r, res, wire + cut, len - cut, consumed);
    if (res == HTTP1_MORE)
        res = http1_response_eof(r);
    check_settled(r, res, lim);
    return res;
}

static bool
same_view(kapi_str a, kapi_str b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t ctl = data[0];
    const uint8_t *wire = data + 1;
    size_t len = size - 1;
    limits lim = {
        .head = ctl & 1,
        .max_body = ctl & 2 ? 16 : 64 * 1024,
        .max_head = ctl & 4 ? 32 : 16 * 1024,
    };
    size_t cut = (size_t)(ctl >> 3) * len / 31;

    http1_response whole, split;
    size_t used_whole, used_split;
    http1_result res_whole = run(&whole, &lim, wire, len, len, &used_whole);
    http1_result res_split = run(&split, &lim, wire, len, cut, &used_split);

    /* Where the bytes are cut changes nothing, except which of two faults
     * is seen first: http-parser scans a whole token before its callback
     * runs, so a cut may let a limit or a check made here fire before a
     * syntax error further on (TOOBIG for ERROR, another error text). */
    CHECK((res_whole == HTTP1_DONE) == (res_split == HTTP1_DONE));
    if (res_whole == HTTP1_DONE) {
        CHECK(used_whole == used_split);
        CHECK(whole.status == split.status);
        CHECK(whole.keep_alive == split.keep_alive);
        CHECK(whole.nheaders == split.nheaders);
        for (size_t i = 0; i < whole.nheaders; i++) {
            CHECK(same_view(whole.headers[i].name, split.headers[i].name));
            CHECK(same_view(whole.headers[i].value, split.headers[i].value));
        }
        CHECK(whole.body_len == split.body_len);
        CHECK(whole.body_len == 0 || memcmp(whole.body, split.body, whole.body_len) == 0);

        size_t body_len = SIZE_MAX;
        char *body = http1_response_take_body(&whole, &body_len);
        CHECK(body_len == split.body_len && whole.body == NULL && whole.body_len == 0);
        free(body);
    }
    http1_response_free(&whole);
    http1_response_free(&split);
    return 0;
}
