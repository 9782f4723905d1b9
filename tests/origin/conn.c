/* conn.c -- one client connection of kapi_test_origin, on its own thread:
 * transport (plain or TLS), request parsing with http-parser, keep-alive
 * and idle timeout, the response writer the endpoints use, and the way the
 * connection ends (graceful or RST).
 *
 * A complete request pauses the parser; the endpoint answers it; the
 * parser resumes on the bytes left over, so pipelined requests are served
 * in order. It does not choose what to answer (routes.c). */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test_origin.h"

#define REQUEST_TIMEOUT_MS 30000          /* a started request, a first request */
#define SOCKET_TIMEOUT_S 30               /* any single blocking read or write */
#define DRAIN_MS 1000                     /* reading leftovers before closing, at most */
#define MAX_URL (64 * 1024)               /* longer targets get a 400 */
#define MAX_KEPT_BODY (256 * 1024 * 1024) /* /body answers 413 past this */
#define OUT_BUFFERED (64 * 1024)          /* bigger body writes bypass c->out */
#define THREAD_STACK (512 * 1024)

/* ---- transport ---- */

/* Waits up to TIMEOUT_MS for input, then reads. >0, 0 (end or timeout), -1. */
static long
conn_read(conn *c, void *data, size_t len, int timeout_ms)
{
    if (!c->tls || !tls_pending(c->tls)) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int rc;
        while ((rc = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
            ;
        if (rc <= 0)
            return rc;
    }
    if (c->tls)
        return tls_read(c->tls, data, len);
    ssize_t n;
    while ((n = recv(c->fd, data, len, 0)) < 0 && errno == EINTR)
        ;
    return (long)n;
}

static void
conn_write(conn *c, const void *data, size_t len)
{
    if (c->broken)
        return;
    if (c->tls) {
        if (tls_write(c->tls, data, len) != 0)
            c->broken = true;
        return;
    }
    for (const char *p = data; len > 0;) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            c->broken = true;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

/* ---- response writer ---- */

void
conn_flush(conn *c)
{
    if (c->out.failed)
        c->broken = true;
    conn_write(c, c->out.p, c->out.len);
    buf_reset(&c->out, 1024 * 1024);
}

void
conn_raw(conn *c, const void *data, size_t len)
{
    buf_append(&c->out, data, len);
    conn_flush(c);
}

void
conn_begin(conn *c, int status)
{
    buf_printf(&c->out, "HTTP/1.1 %d %s\r\nX-Origin: %s\r\n", status, routes_reason(status),
               origin_opts.name);
}

void
conn_header(conn *c, const char *name, const char *fmt, ...)
{
    buf_printf(&c->out, "%s: ", name);
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(small)) {
        buf_append(&c->out, small, (size_t)n);
    } else if (n >= 0) {
        char *big = malloc((size_t)n + 1);
        va_start(ap, fmt);
        if (big)
            vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        if (big)
            buf_append(&c->out, big, (size_t)n);
        else
            c->out.failed = true;
        free(big);
    }
    buf_append(&c->out, "\r\n", 2);
}

void
conn_end_headers(conn *c, long long content_length)
{
    if (content_length >= 0)
        buf_printf(&c->out, "Content-Length: %lld\r\n", content_length);
    if (!c->keep_alive)
        buf_puts(&c->out, "Connection: close\r\n");
    else if (c->http10)
        buf_puts(&c->out, "Connection: keep-alive\r\n");
    buf_append(&c->out, "\r\n", 2);
}

void
conn_send(conn *c, const void *data, size_t len)
{
    if (c->head || len == 0)
        return;
    if (c->out.len + len <= OUT_BUFFERED) {
        buf_append(&c->out, data, len);
        return;
    }
    conn_flush(c);
    conn_write(c, data, len);
}

void
conn_chunk(conn *c, const void *data, size_t len)
{
    if (c->head)
        return;
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    buf_append(&c->out, size, (size_t)n);
    if (len == 0) {
        buf_append(&c->out, "\r\n", 2);
        return;
    }
    conn_send(c, data, len);
    buf_append(&c->out, "\r\n", 2);
}

void
conn_respond(conn *c, int status, const char *ctype, const void *body, size_t len)
{
    conn_begin(c, status);
    if (ctype)
        conn_header(c, "Content-Type", "%s", ctype);
    conn_end_headers(c, (long long)len);
    conn_send(c, body, len);
}

const char *
conn_header_value(conn *c, const char *name, size_t *len)
{
    request *r = &c->req;
    size_t nl = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++) {
        const header *h = &r->headers[i];
        if (!h->trailer && h->name_len == nl && strncasecmp(r->hbuf.p + h->name, name, nl) == 0) {
            *len = h->value_len;
            return r->hbuf.p + h->value;
        }
    }
    return NULL;
}

/* ---- request parsing ---- */

static int
on_message_begin(http_parser *p)
{
    conn *c = p->data;
    request *r = &c->req;
    if (r->sha) { /* the previous body, unless /echo took it */
        char hex[65];
        tls_sha256_end(r->sha, hex);
        r->sha = NULL;
    }
    buf_reset(&r->url, 64 * 1024);
    buf_reset(&r->hbuf, 256 * 1024);
    buf_reset(&r->body, 1024 * 1024);
    r->nheaders = 0;
    r->in_field = false;
    r->keep_body = r->too_big = r->headers_done = r->keep_alive = false;
    r->body_len = 0;
    r->path = r->query = NULL;
    r->path_len = r->query_len = 0;
    r->started = true;
    return 0;
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
    request *r = &((conn *)p->data)->req;
    if (r->url.len + len > MAX_URL)
        return -1;
    buf_append(&r->url, at, len);
    return r->url.failed ? -1 : 0;
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    request *r = &((conn *)p->data)->req;
    if (!r->in_field) {
        if (r->nheaders == r->cap_headers) {
            size_t cap = r->cap_headers ? r->cap_headers * 2 : 32;
            header *h = realloc(r->headers, cap * sizeof(*h));
            if (!h)
                return -1;
            r->headers = h;
            r->cap_headers = cap;
        }
        r->headers[r->nheaders++] =
            (header){.name = r->hbuf.len, .value = r->hbuf.len, .trailer = r->headers_done};
        r->in_field = true;
    }
    buf_append(&r->hbuf, at, len);
    r->headers[r->nheaders - 1].name_len += len;
    return r->hbuf.failed ? -1 : 0;
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    request *r = &((conn *)p->data)->req;
    if (r->nheaders == 0)
        return -1;
    header *h = &r->headers[r->nheaders - 1];
    if (r->in_field) {
        h->value = r->hbuf.len;
        r->in_field = false;
    }
    buf_append(&r->hbuf, at, len);
    h->value_len += len;
    return r->hbuf.failed ? -1 : 0;
}

/* Splits the raw target in r->url into path and query, undecoded. */
static void
split_target(request *r)
{
    const char *u = r->url.p ? r->url.p : "";
    size_t len = r->url.len;
    struct http_parser_url pu;
    if (len && u[0] != '/' && u[0] != '*') {
        /* absolute-form (or CONNECT's authority-form: no path at all) */
        http_parser_url_init(&pu);
        if (http_parser_parse_url(u, len, r->parser.method == HTTP_CONNECT, &pu) == 0) {
            r->path = u + pu.field_data[UF_PATH].off;
            r->path_len = pu.field_data[UF_PATH].len;
            if (pu.field_set & (1 << UF_QUERY)) {
                r->query = u + pu.field_data[UF_QUERY].off;
                r->query_len = pu.field_data[UF_QUERY].len;
            }
            return;
        }
    }
    size_t end = strcspn(u, "?#");
    r->path = u;
    r->path_len = end;
    if (u[end] == '?') {
        r->query = u + end + 1;
        r->query_len = strcspn(r->query, "#");
    }
}

static int
on_headers_complete(http_parser *p)
{
    conn *c = p->data;
    request *r = &c->req;
    r->headers_done = true;
    r->in_field = false;
    buf_append(&r->url, "", 0); /* NUL-terminates */
    split_target(r);
    r->keep_body = routes_keeps_body(r->path, r->path_len);
    bool chunked = p->flags & F_CHUNKED;
    bool has_length = p->content_length != ULLONG_MAX && p->content_length > 0;
    if (r->keep_body && has_length && p->content_length > MAX_KEPT_BODY) {
        r->too_big = true;
        return -1;
    }
    size_t n;
    const char *expect = conn_header_value(c, "Expect", &n);
    if (expect && n == 12 && strncasecmp(expect, "100-continue", 12) == 0 && p->http_major == 1 &&
        p->http_minor >= 1 && (chunked || has_length))
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    request *r = &((conn *)p->data)->req;
    if (!r->sha && !(r->sha = tls_sha256_begin()))
        return -1;
    tls_sha256_update(r->sha, at, len);
    r->body_len += len;
    if (r->keep_body) {
        if (r->body.len + len > MAX_KEPT_BODY) {
            r->too_big = true;
            return -1;
        }
        buf_append(&r->body, at, len);
        if (r->body.failed)
            return -1;
    }
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    request *r = &((conn *)p->data)->req;
    r->keep_alive = http_should_keep_alive(p);
    /* Hand the request to serve(); the bytes after it stay unparsed. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- serving ---- */

static void
answer(conn *c)
{
    request *r = &c->req;
    http_parser *p = &r->parser;
    c->head = p->method == HTTP_HEAD;
    c->http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
    /* After an upgrade request the bytes that follow are not HTTP/1.1. */
    c->keep_alive = r->keep_alive && !p->upgrade;
    if (!routes_is_control(r->path, r->path_len))
        stats_request();
    else if (c->served == 0 && !c->uncounted) {
        stats_conn_uncount(c->epoch);
        c->uncounted = true;
    }
    c->served++;
    routes_dispatch(c);
    conn_flush(c);
}

static void
reject(conn *c, enum http_errno err)
{
    c->head = c->http10 = c->keep_alive = false;
    if (c->req.too_big) {
        conn_respond(c, 413, "text/plain", "body too large\n", 15);
    } else {
        char msg[128];
        int n = snprintf(msg, sizeof(msg), "bad request: %s\n", http_errno_name(err));
        conn_respond(c, 400, "text/plain", msg, (size_t)n);
    }
    conn_flush(c);
}

static void
serve(conn *c)
{
    request *r = &c->req;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = c;
    for (;;) {
        if (c->in_len == 0) {
            bool idle = !r->started && c->served > 0;
            long n = conn_read(c, c->in, sizeof(c->in),
                               idle ? origin_opts.keepalive_ms : REQUEST_TIMEOUT_MS);
            if (n <= 0)
                return; /* closed, timed out or failed: nothing to answer */
            c->in_off = 0;
            c->in_len = (size_t)n;
        }
        size_t used = http_parser_execute(&r->parser, &settings, c->in + c->in_off, c->in_len);
        c->in_off += used;
        c->in_len -= used;
        enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);
        if (err == HPE_PAUSED) {
            answer(c);
            r->started = false;
            if (!c->keep_alive || c->broken)
                return;
            http_parser_pause(&r->parser, 0);
        } else if (err != HPE_OK) {
            reject(c, err);
            return;
        }
    }
}

/* Reads and drops input until the client closes, DRAIN_MS pass or 1 MiB
 * went by. */
static void
drain(int fd)
{
    char scratch[4096];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (size_t total = 0; total < 1024 * 1024;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = DRAIN_MS -
                    ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            return;
        ssize_t n = recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (n <= 0)
            return;
        total += (size_t)n;
    }
}

static void
finish(conn *c)
{
    if (!c->uncounted)
        stats_conn_closed();
    if (c->close == CLOSE_RESET) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        tls_close(c->tls, false);
    } else {
        tls_close(c->tls, !c->broken);
        shutdown(c->fd, SHUT_WR);
        drain(c->fd);
    }
    close(c->fd);
    request *r = &c->req;
    buf_free(&r->url);
    buf_free(&r->hbuf);
    buf_free(&r->body);
    free(r->headers);
    if (r->sha) {
        char hex[65];
        tls_sha256_end(r->sha, hex);
    }
    buf_free(&c->out);
    free(c);
}

static void *
conn_main(void *arg)
{
    conn *c = arg;
    if (!origin_opts.tls || (c->tls = tls_accept(c->fd)))
        serve(c);
    finish(c);
    return NULL;
}

int
conn_spawn(int fd, uint32_t epoch)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = SOCKET_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    conn *c = calloc(1, sizeof(*c));
    pthread_attr_t attr;
    pthread_t tid;
    int rc = -1;
    if (!c)
        goto out;
    c->fd = fd;
    c->epoch = epoch;
    if (pthread_attr_init(&attr) != 0)
        goto out;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    rc = pthread_create(&tid, &attr, conn_main, c) == 0 ? 0 : -1;
    pthread_attr_destroy(&attr);
out:
    if (rc != 0) {
        free(c);
        stats_conn_closed();
        close(fd);
    }
    return rc;
}
