/* http1.c -- the HTTP/1.1 wire format of upstream exchanges (see http1.h):
 * request heads written here, responses read with http-parser.
 *
 * The reader lets http-parser do all the framing (status line, header
 * syntax, Content-Length, chunked coding, read-until-close) and only copies
 * what the callbacks hand it: header names and values into one growing
 * buffer (as offsets, since it may move; the views are built once the
 * response is complete), the body into another. on_message_complete pauses
 * the parser, so one execute call never runs past the end of a response:
 * the feed loop then either resets everything for the next response after
 * a 1xx, or stops, and the bytes it reports as used are exactly the
 * response's. The outcome lives in `done` and `error`: the two "exceeds its
 * limit" texts mean HTTP1_TOOBIG, any other text HTTP1_ERROR, so every
 * later call answers the same.
 *
 * Debian's libhttp-parser is built lax (HTTP_PARSER_STRICT=0); on top of
 * it this file refuses what a gateway must not pass on: a status below 100,
 * a version other than 1.x, a 101 nobody asked for, a blank inside a header
 * name, a control byte opening a value (the one byte of a value 2.9.4 does
 * not check). It trims the blanks before a colon and after a value, and
 * drops the trailers of a chunked body rather than merge them into the
 * header section. It does no I/O and knows nothing of connections, pools
 * or timeouts (uclient.c). */
#include "http1.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HBUF_INITIAL 512
#define HOFF_INITIAL 32
#define BODY_INITIAL 4096
/* A Content-Length up to this is allocated at once; a larger body grows as
 * it arrives: an announced length alone never makes us allocate more. */
#define BODY_PREALLOC_MAX (1024 * 1024)

static const char err_body_toobig[] = "response body exceeds its limit";
static const char err_head_toobig[] = "response header section exceeds its limit";
static const char err_nomem[] = "out of memory";
static const char err_name[] = "invalid header name";
static const char err_status[] = "invalid HTTP status code";
static const char err_version[] = "unsupported HTTP version";
static const char err_switch[] = "unexpected 101 Switching Protocols";
static const char err_eof[] = "connection closed before the response";
static const char err_parser[] = "unexpected http-parser behaviour";

/* ---- request head ---- */

static bool
needs_length(kapi_str method, size_t body_len)
{
    static const kapi_str with_body[] = {KAPI_STR("POST"), KAPI_STR("PUT"), KAPI_STR("PATCH")};
    if (body_len > 0)
        return true;
    for (size_t i = 0; i < sizeof(with_body) / sizeof(with_body[0]); i++)
        if (method.len == with_body[i].len && memcmp(method.ptr, with_body[i].ptr, method.len) == 0)
            return true;
    return false;
}

/* Writes V in decimal at OUT (no NUL), or only counts when OUT is NULL. */
static size_t
put_decimal(char *out, size_t v)
{
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    if (out)
        for (size_t i = 0; i < n; i++)
            out[i] = digits[n - 1 - i];
    return n;
}

static char *
put(char *out, const char *s, size_t len)
{
    memcpy(out, s, len);
    return out + len;
}

size_t
http1_head_size(kapi_str method, kapi_str target, const kapi_header *headers, size_t n,
                size_t body_len)
{
    size_t size = method.len + 1 + target.len + sizeof(" HTTP/1.1\r\n") - 1;
    for (size_t i = 0; i < n; i++)
        size += headers[i].name.len + 2 + headers[i].value.len + 2;
    if (needs_length(method, body_len))
        size += sizeof("Content-Length: ") - 1 + put_decimal(NULL, body_len) + 2;
    return size + 2;
}

size_t
http1_write_head(char *buf, kapi_str method, kapi_str target, const kapi_header *headers, size_t n,
                 size_t body_len)
{
    char *p = buf;
    p = put(p, method.ptr, method.len);
    *p++ = ' ';
    p = put(p, target.ptr, target.len);
    p = put(p, " HTTP/1.1\r\n", sizeof(" HTTP/1.1\r\n") - 1);
    for (size_t i = 0; i < n; i++) {
        p = put(p, headers[i].name.ptr, headers[i].name.len);
        p = put(p, ": ", 2);
        p = put(p, headers[i].value.ptr, headers[i].value.len);
        p = put(p, "\r\n", 2);
    }
    if (needs_length(method, body_len)) {
        p = put(p, "Content-Length: ", sizeof("Content-Length: ") - 1);
        p += put_decimal(p, body_len);
        p = put(p, "\r\n", 2);
    }
    p = put(p, "\r\n", 2);
    return (size_t)(p - buf);
}

/* ---- response: buffers ---- */

static http1_result
outcome(const http1_response *r)
{
    if (r->error == err_body_toobig || r->error == err_head_toobig)
        return HTTP1_TOOBIG;
    if (r->error)
        return HTTP1_ERROR;
    return r->done ? HTTP1_DONE : HTTP1_MORE;
}

/* Fails the response with WHY; returns what a callback returns to stop
 * http-parser. */
static int
fail(http1_response *r, const char *why)
{
    if (!r->error)
        r->error = why;
    return -1;
}

/* Grows *BUF (of *CAP bytes) to hold at least NEED, doubling from INITIAL
 * and never past LIMIT (NEED <= LIMIT). */
static bool
grow(void **buf, size_t *cap, size_t need, size_t initial, size_t limit, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t cap2 = *cap ? *cap : initial;
    while (cap2 < need)
        cap2 = cap2 > SIZE_MAX / 2 ? SIZE_MAX : cap2 * 2;
    if (cap2 > limit)
        cap2 = limit;
    if (cap2 > SIZE_MAX / elem)
        return false;
    void *p = realloc(*buf, cap2 * elem);
    if (!p)
        return false;
    *buf = p;
    *cap = cap2;
    return true;
}

/* Name and value bytes held so far: hbuf without the NULs after the
 * finished names and values (a header is open while this is asked). */
static size_t
head_bytes(const http1_response *r)
{
    return r->hlen - 2 * (r->nheaders - 1) - (r->in_value ? 1 : 0);
}

static int
head_append(http1_response *r, const char *at, size_t len)
{
    if (head_bytes(r) + len > r->max_head)
        return fail(r, err_head_toobig);
    /* + 1: room for the NUL that ends this name or value. */
    if (!grow((void **)&r->hbuf, &r->hcap, r->hlen + len + 1, HBUF_INITIAL, SIZE_MAX, 1))
        return fail(r, err_nomem);
    memcpy(r->hbuf + r->hlen, at, len);
    r->hlen += len;
    return 0;
}

/* Ends the name or value being written: drops trailing blanks (http-parser
 * keeps those of a value, and the blanks a name may have before its colon,
 * which a proxy must remove) and adds the NUL. */
static void
head_terminate(http1_response *r, size_t start)
{
    while (r->hlen > start && (r->hbuf[r->hlen - 1] == ' ' || r->hbuf[r->hlen - 1] == '\t'))
        r->hlen--;
    r->hbuf[r->hlen++] = '\0'; /* room reserved by head_append */
}

/* Forgets the headers read so far (those of a 1xx response). */
static void
head_reset(http1_response *r)
{
    r->hlen = 0;
    r->nheaders = 0;
    r->in_value = false;
}

/* ---- response: http-parser callbacks ---- */

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    http1_response *r = p->data;
    if (r->status != 0)
        return 0; /* a trailer: dropped */
    if (r->in_value || r->nheaders == 0) {
        if (r->in_value)
            head_terminate(r, r->hoff[2 * r->nheaders - 1]);
        if (!grow((void **)&r->hoff, &r->hoffcap, 2 * (r->nheaders + 1), HOFF_INITIAL, SIZE_MAX,
                  sizeof(size_t)))
            return fail(r, err_nomem);
        r->hoff[2 * r->nheaders] = r->hlen;
        r->nheaders++;
        r->in_value = false;
    }
    return head_append(r, at, len);
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    http1_response *r = p->data;
    if (r->status != 0)
        return 0;
    if (r->nheaders == 0)
        return fail(r, err_parser); /* http-parser always names a header first */
    if (!r->in_value) {
        size_t name = r->hoff[2 * r->nheaders - 2];
        head_terminate(r, name);
        /* http-parser (built lax) takes blanks for name bytes: "Transfer
         * Encoding" or " " is no header to hand a client. */
        size_t name_len = r->hlen - 1 - name;
        if (name_len == 0 || memchr(r->hbuf + name, ' ', name_len))
            return fail(r, err_name);
        r->hoff[2 * r->nheaders - 1] = r->hlen;
        r->in_value = true;
    }
    /* http-parser checks every byte of a value but the first (2.9.4 takes
     * a NUL or any control there): its rule, on them all. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)at[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(r, http_errno_description(HPE_INVALID_HEADER_TOKEN));
    }
    /* Called again for an obs-fold line: its blanks then join the parts. */
    return head_append(r, at, len);
}

/* Whether the response has no body whatever its headers say. */
static bool
bodiless(const http1_response *r, int status)
{
    return r->head || status / 100 == 1 || status == 204 || status == 304;
}

static int
on_headers_complete(http_parser *p)
{
    http1_response *r = p->data;
    int status = (int)p->status_code;
    if (status < 100)
        return fail(r, err_status);
    if (p->http_major != 1)
        return fail(r, err_version);
    if (status == 101)
        return fail(r, err_switch); /* never asked for: the stream is no longer HTTP */
    if (r->nheaders > 0) {
        /* http-parser reports even an empty value; in case it did not. */
        if (!r->in_value && on_header_value(p, "", 0) != 0)
            return -1;
        head_terminate(r, r->hoff[2 * r->nheaders - 1]);
        r->in_value = false;
    }
    r->status = status;
    r->interim = status / 100 == 1;
    if (bodiless(r, status))
        return 1; /* http-parser: skip the body */

    if (!(p->flags & F_CHUNKED) && p->content_length != UINT64_MAX) {
        if (p->content_length > r->max_body)
            return fail(r, err_body_toobig);
        size_t want = (size_t)p->content_length;
        if (want > BODY_PREALLOC_MAX)
            want = BODY_PREALLOC_MAX;
        if (!grow((void **)&r->body, &r->body_cap, want, want, r->max_body, 1))
            return fail(r, err_nomem);
    }
    return 0;
}

static int
on_chunk_header(http_parser *p)
{
    http1_response *r = p->data;
    /* Fail on the chunk's announced size, before its bytes arrive. */
    if (p->content_length > r->max_body - r->body_len)
        return fail(r, err_body_toobig);
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    http1_response *r = p->data;
    if (len > r->max_body - r->body_len)
        return fail(r, err_body_toobig);
    if (!grow((void **)&r->body, &r->body_cap, r->body_len + len, BODY_INITIAL, r->max_body, 1))
        return fail(r, err_nomem);
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    /* Stop right after this response; the feed loop decides what follows. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- response: the calls ---- */

void
http1_response_init(http1_response *r, bool head, size_t max_body, size_t max_head)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
    r->head = head;
    r->max_body = max_body;
    r->max_head = max_head;
}

/* The parser paused at the end of a response: reset for the final one
 * after a 1xx, else publish the results. */
static void
message_done(http1_response *r)
{
    if (r->interim) {
        http_parser_init(&r->parser, HTTP_RESPONSE); /* keeps parser.data */
        head_reset(r);
        r->status = 0;
        r->interim = false;
        return;
    }
    if (r->nheaders > 0) {
        r->headers = malloc(r->nheaders * sizeof(*r->headers));
        if (!r->headers) {
            fail(r, err_nomem);
            return;
        }
    }
    for (size_t i = 0; i < r->nheaders; i++) {
        size_t name = r->hoff[2 * i], value = r->hoff[2 * i + 1];
        size_t end = i + 1 < r->nheaders ? r->hoff[2 * i + 2] : r->hlen;
        r->headers[i].name = (kapi_str){r->hbuf + name, value - 1 - name};
        r->headers[i].value = (kapi_str){r->hbuf + value, end - 1 - value};
    }
    r->keep_alive = http_should_keep_alive(&r->parser) != 0;
    r->done = true;
}

/* Records why http-parser stopped, unless a callback already did. */
static void
parser_failed(http1_response *r)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    fail(r, e == HPE_HEADER_OVERFLOW ? err_head_toobig : http_errno_description(e));
}

http1_result
http1_response_feed(http1_response *r, const char *data, size_t len, size_t *used)
{
    size_t off = 0;
    if (outcome(r) != HTTP1_MORE || len == 0)
        goto out;
    if (!r->hbuf && !grow((void **)&r->hbuf, &r->hcap, HBUF_INITIAL, HBUF_INITIAL, SIZE_MAX, 1)) {
        fail(r, err_nomem);
        goto out;
    }
    while (off < len && outcome(r) == HTTP1_MORE) {
        /* len == 0 means EOF to http-parser: never pass it from here. */
        off += http_parser_execute(&r->parser, &settings, data + off, len - off);
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e == HPE_PAUSED)
            message_done(r);
        else if (e != HPE_OK)
            parser_failed(r);
        else if (off < len)
            fail(r, err_parser);
    }
out:
    *used = off;
    return outcome(r);
}

http1_result
http1_response_eof(http1_response *r)
{
    if (outcome(r) != HTTP1_MORE)
        return outcome(r);
    /* From a start state (nothing fed, or only 1xx responses) http-parser
     * reports nothing; from a body it completes or flags a truncation. */
    http_parser_execute(&r->parser, &settings, NULL, 0);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e == HPE_PAUSED && !r->interim) {
        message_done(r);
        r->keep_alive = false; /* read until close: http-parser says so too */
    } else if (e != HPE_OK && e != HPE_PAUSED) {
        parser_failed(r);
    } else {
        fail(r, err_eof);
    }
    return outcome(r);
}

bool
http1_response_started(const http1_response *r)
{
    return r->hbuf != NULL; /* allocated by the first feed of a byte */
}

char *
http1_response_take_body(http1_response *r, size_t *len)
{
    char *body = r->body;
    *len = r->body_len;
    r->body = NULL;
    r->body_len = 0;
    r->body_cap = 0;
    return body;
}

void
http1_response_free(http1_response *r)
{
    free(r->headers);
    free(r->hbuf);
    free(r->hoff);
    free(r->body);
    r->headers = NULL;
    r->nheaders = 0;
    r->hbuf = NULL;
    r->hlen = r->hcap = 0;
    r->hoff = NULL;
    r->hoffcap = 0;
    r->body = NULL;
    r->body_len = r->body_cap = 0;
}
