/* routes.c -- the endpoints of kapi_test_origin: what each path answers.
 * A route matches its prefix exactly or followed by '/' ("/echo",
 * "/echo/x", not "/echoes"); the rest of the path is the argument. It does
 * not parse requests nor manage connections (conn.c). README.md lists the
 * endpoints with their exact behaviour. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "test_origin.h"

#define MAX_SLEEP_MS 600000
#define MAX_GENERATED (1LL << 32) /* /big, /chunked, /until-close */
#define PATTERN_REPEATS 2048

typedef void handler(conn *c, const char *arg, size_t arg_len);

static void
text(conn *c, int status, const char *body)
{
    conn_respond(c, status, "text/plain", body, strlen(body));
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Parses a decimal number of at most MAX from the LEN bytes at S. */
static bool
parse_number(const char *s, size_t len, long long max, long long *out)
{
    long long v = 0;
    if (len == 0 || len > 12)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* The number argument of the current route, or a 400 and false. */
static bool
number_arg(conn *c, const char *arg, size_t len, long long max, long long *out)
{
    if (parse_number(arg, len, max, out))
        return true;
    char msg[64];
    snprintf(msg, sizeof(msg), "bad number (0..%lld)\n", max);
    text(c, 400, msg);
    return false;
}

/* ---- /hello, /echo, /body ---- */

static void
hello(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    text(c, 200, "hello\n");
}

static void
echo_headers(buf *j, const request *r, bool trailers)
{
    bool first = true;
    buf_puts(j, "[");
    for (size_t i = 0; i < r->nheaders; i++) {
        const header *h = &r->headers[i];
        if (h->trailer != trailers)
            continue;
        buf_puts(j, first ? "[" : ",[");
        buf_json(j, r->hbuf.p + h->name, h->name_len);
        buf_puts(j, ",");
        buf_json(j, r->hbuf.p + h->value, h->value_len);
        buf_puts(j, "]");
        first = false;
    }
    buf_puts(j, "]");
}

static void
echo(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    request *r = &c->req;
    buf j = {0};
    char sha[65], version[16];
    tls_sha256_end(r->sha, sha);
    r->sha = NULL;
    snprintf(version, sizeof(version), "%u.%u", r->parser.http_major, r->parser.http_minor);
    buf_puts(&j, "{\"name\":");
    buf_json(&j, origin_opts.name, strlen(origin_opts.name));
    buf_puts(&j, ",\"method\":");
    buf_json(&j, http_method_str(r->parser.method), strlen(http_method_str(r->parser.method)));
    buf_puts(&j, ",\"target\":");
    buf_json(&j, r->url.p, r->url.len);
    buf_puts(&j, ",\"path\":");
    buf_json(&j, r->path, r->path_len);
    buf_puts(&j, ",\"query\":");
    buf_json(&j, r->query ? r->query : "", r->query_len);
    buf_printf(&j, ",\"http_version\":\"%s\",\"headers\":", version);
    echo_headers(&j, r, false);
    buf_puts(&j, ",\"trailers\":");
    echo_headers(&j, r, true);
    buf_printf(&j, ",\"body_len\":%llu,\"body_sha256\":\"%s\"}\n", (unsigned long long)r->body_len,
               sha);
    if (j.failed)
        text(c, 500, "out of memory\n");
    else
        conn_respond(c, 200, "application/json", j.p, j.len);
    buf_free(&j);
}

static void
body(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    size_t tl;
    const char *type = conn_header_value(c, "Content-Type", &tl);
    conn_begin(c, 200);
    if (type)
        conn_header(c, "Content-Type", "%.*s", (int)tl, type);
    else
        conn_header(c, "Content-Type", "application/octet-stream");
    conn_end_headers(c, (long long)c->req.body.len);
    conn_send(c, c->req.body.p, c->req.body.len);
}

/* ---- /status, /slow, /slow-body ---- */

static void
status(conn *c, const char *arg, size_t len)
{
    long long code;
    if (!parse_number(arg, len, 599, &code) || code < 200) {
        text(c, 400, "status must be 200..599\n");
        return;
    }
    if (code == 204 || code == 304) {
        conn_begin(c, (int)code);
        conn_end_headers(c, -1);
        return;
    }
    char msg[32];
    snprintf(msg, sizeof(msg), "status %lld\n", code);
    text(c, (int)code, msg);
}

static void
slow(conn *c, const char *arg, size_t len)
{
    long long ms;
    if (!number_arg(c, arg, len, MAX_SLEEP_MS, &ms))
        return;
    sleep_ms((long)ms);
    text(c, 200, "slow\n");
}

static void
slow_body(conn *c, const char *arg, size_t len)
{
    long long ms;
    if (!number_arg(c, arg, len, MAX_SLEEP_MS, &ms))
        return;
    conn_begin(c, 200);
    conn_header(c, "Content-Type", "text/plain");
    conn_end_headers(c, 5);
    conn_flush(c);
    sleep_ms((long)ms);
    conn_send(c, "slow\n", 5);
}

/* ---- broken answers: /drop, /drop-mid, /reset, /malformed ---- */

/* Writes RAW (if any) as it is, then ends the connection the MODE way. */
static void
close_after(conn *c, const char *raw, close_mode mode)
{
    if (raw)
        conn_raw(c, raw, strlen(raw));
    c->keep_alive = false;
    c->close = mode;
}

static void
drop(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    close_after(c, NULL, CLOSE_GRACEFUL);
}

static void
drop_mid(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    close_after(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", CLOSE_GRACEFUL);
}

static void
reset(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    close_after(c, NULL, CLOSE_RESET);
}

static void
malformed(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    close_after(c, "HTTP/1.1 abc garbage\r\n\r\n", CLOSE_GRACEFUL);
}

/* ---- generated bodies: /big, /chunked, /until-close ---- */

/* 'a'..'z' repeated: byte i of a generated body is pattern[i % 26]. */
static char pattern[26 * PATTERN_REPEATS];

void
routes_init(void)
{
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)('a' + i % 26);
}

/* Sends N generated bytes as plain body bytes or, when CHUNKED, as chunks
 * of about a third of N (at most 16 KiB) so there are several. */
static void
send_generated(conn *c, long long n, bool chunked)
{
    long long chunk = chunked ? (n + 2) / 3 : (long long)sizeof(pattern) - 26;
    if (chunk > 16384 && chunked)
        chunk = 16384;
    for (long long off = 0; off < n && !c->broken;) {
        long long k = n - off < chunk ? n - off : chunk;
        const char *p = pattern + off % 26;
        if (chunked)
            conn_chunk(c, p, (size_t)k);
        else
            conn_send(c, p, (size_t)k);
        off += k;
    }
    if (chunked)
        conn_chunk(c, NULL, 0);
}

static void
generated(conn *c, const char *arg, size_t len, bool chunked, bool until_close)
{
    long long n;
    if (!number_arg(c, arg, len, MAX_GENERATED, &n))
        return;
    /* HTTP/1.0 has no chunked encoding: the end of the body is the close. */
    if (chunked && c->http10)
        until_close = true, chunked = false;
    if (until_close)
        c->keep_alive = false;
    conn_begin(c, 200);
    conn_header(c, "Content-Type", "application/octet-stream");
    if (chunked)
        conn_header(c, "Transfer-Encoding", "chunked");
    conn_end_headers(c, chunked || until_close ? -1 : n);
    send_generated(c, n, chunked);
}

static void
big(conn *c, const char *arg, size_t len)
{
    generated(c, arg, len, false, false);
}

static void
chunked(conn *c, const char *arg, size_t len)
{
    generated(c, arg, len, true, false);
}

static void
until_close(conn *c, const char *arg, size_t len)
{
    generated(c, arg, len, false, true);
}

/* ---- /hop, /health, /stats, /headers ---- */

static void
hop(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    conn_begin(c, 200);
    conn_header(c, "Content-Type", "text/plain");
    /* No "close" token: the connection really stays open. */
    conn_header(c, "Connection", "X-Conn-Named, Keep-Alive");
    conn_header(c, "X-Conn-Named", "secret");
    conn_header(c, "Keep-Alive", "timeout=5");
    conn_header(c, "Proxy-Authenticate", "Basic");
    conn_header(c, "Trailer", "X-T");
    conn_header(c, "Upgrade", "h2c");
    conn_header(c, "X-Kept", "yes");
    conn_end_headers(c, 4);
    conn_send(c, "hop\n", 4);
}

static bool
arg_is(const char *arg, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(arg, word, len) == 0;
}

static void
health(conn *c, const char *arg, size_t len)
{
    if (len == 0) {
        if (stats_healthy())
            text(c, 200, "ok\n");
        else
            text(c, 503, "unhealthy\n");
    } else if (arg_is(arg, len, "down") || arg_is(arg, len, "up")) {
        stats_set_healthy(arg[0] == 'u');
        text(c, 200, arg[0] == 'u' ? "up\n" : "down\n");
    } else {
        text(c, 404, "not found\n");
    }
}

static void
stats(conn *c, const char *arg, size_t len)
{
    if (arg_is(arg, len, "reset"))
        stats_reset();
    else if (len != 0) {
        text(c, 404, "not found\n");
        return;
    }
    buf j = {0};
    stats_json(&j);
    conn_respond(c, 200, "application/json", j.p, j.len);
    buf_free(&j);
}

static int
hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Percent-decodes LEN bytes at S into OUT ('+' stays '+'); false on a
 * broken escape. */
static bool
percent_decode(const char *s, size_t len, buf *out)
{
    out->len = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi = i + 2 < len ? hex_digit(s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return false;
            ch = (char)(hi << 4 | lo);
            i += 2;
        }
        buf_append(out, &ch, 1);
    }
    buf_append(out, "", 0);
    return !out->failed;
}

static bool
is_token(const buf *b)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (b->len == 0)
        return false;
    for (size_t i = 0; i < b->len; i++) {
        unsigned char ch = (unsigned char)b->p[i];
        if (!(ch >= '0' && ch <= '9') && !((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') &&
            !(ch && strchr(extra, ch)))
            return false;
    }
    return true;
}

/* Walks the query's name=value pairs: checks them all (EMIT false) or adds
 * them as response headers (EMIT true). Returns NULL or what is wrong. */
static const char *
query_headers(conn *c, bool emit)
{
    const request *r = &c->req;
    buf name = {0}, value = {0};
    const char *err = NULL;
    for (size_t start = 0, end; r->query && start < r->query_len && !err; start = end + 1) {
        for (end = start; end < r->query_len && r->query[end] != '&';)
            end++;
        if (end == start)
            continue; /* "a=1&&b=2" */
        const char *pair = r->query + start, *eq = memchr(pair, '=', end - start);
        size_t name_len = eq ? (size_t)(eq - pair) : end - start;
        size_t value_len = eq ? end - start - name_len - 1 : 0;
        if (!percent_decode(pair, name_len, &name) ||
            !percent_decode(eq ? eq + 1 : "", value_len, &value))
            err = "bad percent escape\n";
        else if (!is_token(&name))
            err = "header name is not a token\n";
        else if (memchr(value.p, '\r', value.len) || memchr(value.p, '\n', value.len) ||
                 memchr(value.p, '\0', value.len))
            err = "header value holds CR, LF or NUL\n";
        else if (!strcasecmp(name.p, "Content-Length") || !strcasecmp(name.p, "Transfer-Encoding"))
            err = "framing headers are the origin's\n";
        else if (emit)
            conn_header(c, name.p, "%s", value.p);
    }
    buf_free(&name);
    buf_free(&value);
    return err;
}

static void
headers(conn *c, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    const char *err = query_headers(c, false);
    if (err) {
        text(c, 400, err);
        return;
    }
    conn_begin(c, 200);
    conn_header(c, "Content-Type", "text/plain");
    query_headers(c, true);
    conn_end_headers(c, 8);
    conn_send(c, "headers\n", 8);
}

/* ---- dispatch ---- */

static const struct route {
    const char *prefix;
    handler *fn;
} routes[] = {
    {"/hello", hello},
    {"/echo", echo},
    {"/body", body},
    {"/status", status},
    {"/slow", slow},
    {"/slow-body", slow_body},
    {"/drop", drop},
    {"/drop-mid", drop_mid},
    {"/reset", reset},
    {"/malformed", malformed},
    {"/big", big},
    {"/chunked", chunked},
    {"/until-close", until_close},
    {"/hop", hop},
    {"/health", health},
    {"/stats", stats},
    {"/headers", headers},
};

/* True when PATH is PREFIX or PREFIX/...; *ARG is what follows the '/'. */
static bool
match(const char *path, size_t len, const char *prefix, const char **arg, size_t *arg_len)
{
    size_t pl = strlen(prefix);
    if (len < pl || memcmp(path, prefix, pl) != 0 || (len > pl && path[pl] != '/'))
        return false;
    *arg = len > pl ? path + pl + 1 : path + len;
    *arg_len = len > pl ? len - pl - 1 : 0;
    return true;
}

bool
routes_is_control(const char *path, size_t len)
{
    const char *arg;
    size_t arg_len;
    return match(path, len, "/stats", &arg, &arg_len);
}

bool
routes_keeps_body(const char *path, size_t len)
{
    const char *arg;
    size_t arg_len;
    return match(path, len, "/body", &arg, &arg_len);
}

void
routes_dispatch(conn *c)
{
    const request *r = &c->req;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const char *arg;
        size_t arg_len;
        if (match(r->path, r->path_len, routes[i].prefix, &arg, &arg_len)) {
            routes[i].fn(c, arg, arg_len);
            return;
        }
    }
    text(c, 404, "not found\n");
}

const char *
routes_reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
