/* tserver.c -- the loopback HTTP/1.1 test server of tserver.h: an accepting
 * thread, a thread per connection or one connection at a time, request
 * reading with exact counts, the script, and the config_upstream fixture.
 * It does not assert on what the client sends (the tests do) nor run the
 * client's loop. */
#include "tserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>

#define SERIAL_WAIT_MS 2000
#define SLICE_MS 20

uint64_t
tserver_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
tserver_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- reading and writing ------------------------------------------------ */

/* Waits in short slices, so a stopping server never hangs; a serial
 * server gives up after SERIAL_WAIT_MS. 0 at EOF, error, timeout or stop. */
static ssize_t
conn_recv(tserver_conn *c, void *buf, size_t n)
{
    tserver *s = c->s;
    uint64_t end = tserver_now_ms() + SERIAL_WAIT_MS;
    for (;;) {
        if (atomic_load(&s->stopping))
            return 0;
        if (s->opts.serial && tserver_now_ms() >= end)
            return 0;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
        int r = poll(&pfd, 1, SLICE_MS);
        if (r == 0 || (r < 0 && errno == EINTR))
            continue;
        if (r < 0)
            return 0;
        ssize_t got = recv(c->fd, buf, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        return got < 0 ? 0 : got;
    }
}

static void
rec_add(tserver_req *r, const char *data, size_t len)
{
    size_t room = TSERVER_REC_MAX - r->rec_len;
    size_t n = len < room ? len : room;
    memcpy(r->rec + r->rec_len, data, n);
    r->rec_len += n;
}

static void
body_add(tserver_req *r, const char *data, size_t len)
{
    rec_add(r, data, len);
    r->body_hash = tserver_fnv1a(r->body_hash, data, len);
}

const tserver_req *
tserver_read_head(tserver_conn *c)
{
    char *end;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        if (c->len == TSERVER_HEAD_MAX)
            return NULL;
        ssize_t n = conn_recv(c, c->buf + c->len, TSERVER_HEAD_MAX - c->len);
        if (n <= 0)
            return NULL;
        c->len += (size_t)n;
    }
    size_t head_len = (size_t)(end + 4 - c->buf);
    char save = c->buf[head_len];
    c->buf[head_len] = '\0';
    tserver_req *r = &c->req;
    memset(r, 0, sizeof *r);
    r->body_hash = TSERVER_FNV_INIT;
    bool ok = sscanf(c->buf, "%15s %255s", r->method, r->target) == 2;
    for (char *line = strstr(c->buf, "\r\n") + 2; ok && *line && strncmp(line, "\r\n", 2) != 0;
         line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            r->clen = strtoull(line + 15, NULL, 10);
    }
    c->buf[head_len] = save;
    if (!ok)
        return NULL;
    rec_add(r, c->buf, head_len);
    memmove(c->buf, c->buf + head_len, c->len - head_len);
    c->len -= head_len;
    return r;
}

bool
tserver_read_body(tserver_conn *c)
{
    tserver_req *r = &c->req;
    size_t take = c->len < r->clen ? c->len : r->clen;
    body_add(r, c->buf, take);
    memmove(c->buf, c->buf + take, c->len - take);
    c->len -= take;
    size_t left = r->clen - take;
    static _Thread_local char chunk[65536];
    while (left > 0) {
        ssize_t n = conn_recv(c, chunk, left < sizeof chunk ? left : sizeof chunk);
        if (n <= 0)
            return false;
        body_add(r, chunk, (size_t)n);
        left -= (size_t)n;
    }
    tserver *s = c->s;
    pthread_mutex_lock(&s->mu);
    int k = atomic_load(&s->requests);
    if (k < TSERVER_MAX_ARRIVALS)
        s->arrivals[k] = tserver_now_ms();
    memcpy(s->last, r->rec, r->rec_len);
    s->last_len = r->rec_len;
    atomic_fetch_add(&s->requests, 1);
    pthread_mutex_unlock(&s->mu);
    c->nreq++;
    return true;
}

const tserver_req *
tserver_read(tserver_conn *c)
{
    const tserver_req *r = tserver_read_head(c);
    return r && tserver_read_body(c) ? r : NULL;
}

bool
tserver_send(tserver_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

bool
tserver_hold(tserver_conn *c, int ms)
{
    tserver *s = c->s;
    uint64_t end = tserver_now_ms() + (uint64_t)ms;
    for (;;) {
        if (atomic_load(&s->stopping))
            return true;
        uint64_t now = tserver_now_ms();
        if (now >= end)
            return false;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
        int r = poll(&pfd, 1, (int)(end - now < SLICE_MS ? end - now : SLICE_MS));
        if (r > 0) {
            char ch;
            if (recv(c->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
                atomic_fetch_add(&s->early_closes, 1);
                return true;
            }
            usleep(1000); /* data, not a close: nothing we expect */
        }
    }
}

void
tserver_close(tserver_conn *c)
{
    close(c->fd);
    c->fd = -1;
}

void
tserver_rst(tserver_conn *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    tserver_close(c);
}

/* ---- the script --------------------------------------------------------- */

static void
script_answer(tserver_conn *c)
{
    tserver *s = c->s;
    int status = atomic_load(&s->status);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 %d Scripted\r\nContent-Length: 5\r\nX-Upstream: yes\r\n"
                     "X-Served-By: %u\r\nConnection: close\r\n\r\nhello",
                     status, s->port);
    atomic_fetch_add(status >= 200 && status <= 399 ? &s->answers_ok : &s->answers_error, 1);
    tserver_send(c, resp, (size_t)n);
}

static void
script_serve(tserver_conn *c, void *data)
{
    (void)data;
    tserver *s = c->s;
    if (!tserver_read(c))
        return;
    switch (atomic_load(&s->mode)) {
    case TSERVER_ANSWER: script_answer(c); break;
    case TSERVER_CLOSE: break;
    case TSERVER_DELAY:
        if (!tserver_hold(c, atomic_load(&s->delay_ms)))
            script_answer(c);
        break;
    }
}

void
tserver_script(tserver *s, tserver_mode mode, int status, int delay_ms)
{
    atomic_store(&s->mode, (int)mode);
    atomic_store(&s->status, status);
    atomic_store(&s->delay_ms, delay_ms);
}

/* ---- accepting ---------------------------------------------------------- */

static void
conn_serve(tserver_conn *c)
{
    tserver *s = c->s;
    s->opts.serve(c, s->opts.data);
    if (c->fd >= 0)
        close(c->fd);
    atomic_fetch_sub(&s->active, 1);
    free(c);
}

static void *
conn_main(void *arg)
{
    conn_serve(arg);
    return NULL;
}

static void
count_active(tserver *s)
{
    int a = atomic_fetch_add(&s->active, 1) + 1;
    int m = atomic_load(&s->max_active);
    while (a > m && !atomic_compare_exchange_weak(&s->max_active, &m, a))
        ;
}

static void *
accept_main(void *arg)
{
    tserver *s = arg;
    while (!atomic_load(&s->stopping)) {
        struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pfd, 1, SLICE_MS) <= 0)
            continue;
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
                continue;
            return NULL; /* tserver_unlisten */
        }
        int one = 1; /* head and body go out in separate sends */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_store(&s->peer_port, ntohs(peer.sin_port));
        int id = atomic_fetch_add(&s->accepted, 1) + 1;
        count_active(s);
        tserver_conn *c = calloc(1, sizeof *c);
        if (c)
            *c = (tserver_conn){.s = s, .fd = fd, .id = id};
        if (c && s->opts.serial) {
            conn_serve(c);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        bool room = c && s->nthreads < TSERVER_MAX_CONNS;
        if (room) {
            room = pthread_create(&s->threads[s->nthreads], NULL, conn_main, c) == 0;
            if (room)
                s->nthreads++;
        }
        pthread_mutex_unlock(&s->mu);
        if (!room) {
            free(c);
            close(fd);
            atomic_fetch_sub(&s->active, 1);
        }
    }
    return NULL;
}

int
tserver_listener(int backlog, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, backlog), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

void
tserver_start(tserver *s, const tserver_opts *opts)
{
    memset(s, 0, sizeof *s);
    if (opts)
        s->opts = *opts;
    if (!s->opts.serve)
        s->opts.serve = script_serve;
    pthread_mutex_init(&s->mu, NULL);
    atomic_store(&s->status, 200);
    s->lfd = tserver_listener(64, &s->port);
    assert_int_equal(pthread_create(&s->acceptor, NULL, accept_main, s), 0);
}

void
tserver_unlisten(tserver *s)
{
    shutdown(s->lfd, SHUT_RDWR);
}

void
tserver_stop(tserver *s)
{
    atomic_store(&s->stopping, true);
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->acceptor, NULL);
    close(s->lfd);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    pthread_mutex_destroy(&s->mu);
}

uint16_t
tserver_refused_port(void)
{
    uint16_t port;
    close(tserver_listener(1, &port));
    return port;
}

int
tserver_requests(tserver *s)
{
    return atomic_load(&s->requests);
}

uint64_t
tserver_arrival(tserver *s, int k)
{
    pthread_mutex_lock(&s->mu);
    uint64_t t = s->arrivals[k];
    pthread_mutex_unlock(&s->mu);
    return t;
}

size_t
tserver_last(tserver *s, char *out, size_t cap)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->last_len < cap - 1 ? s->last_len : cap - 1;
    memcpy(out, s->last, n);
    out[n] = '\0';
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- the upstream fixture ----------------------------------------------- */

void
tserver_upstream_config(tserver_upstream *u, const char *name, size_t n, const uint16_t *ports)
{
    assert_true(n <= TSERVER_MAX_TARGETS);
    for (size_t i = 0; i < n; i++) {
        snprintf(u->url[i], sizeof u->url[i], "http://127.0.0.1:%u", ports[i]);
        snprintf(u->json_path[i], sizeof u->json_path[i], "upstreams.%s.targets[%zu]", name, i);
        u->ct[i] = (config_target){.url = u->url[i],
                                   .host = "127.0.0.1",
                                   .port = ports[i],
                                   .base_path = "",
                                   .weight = 1,
                                   .json_path = u->json_path[i],
                                   .line = 1,
                                   .col = 1};
    }
    u->cu = (config_upstream){
        .name = (char *)name,
        .targets = u->ct,
        .ntargets = n,
        .balance = CONFIG_BALANCE_ROUND_ROBIN,
        .keepalive = 32,
        .max_connections = 256,
        .connect_timeout_ms = 2000,
        .try_timeout_ms = 30000,
        .timeout_ms = 60000,
        .retries = 2,
        .retry_backoff_ms = 20,
        .max_response_bytes = 1 << 20,
        .tls_verify = true,
        .health = {.interval_ms = 5000, .timeout_ms = 2000, .healthy = 2, .unhealthy = 3},
        .passive = {.count_5xx = true, .recover_ms = 10000},
        .breaker = {.window = 20,
                    .min_requests = 10,
                    .cooldown_ms = 1000,
                    .max_cooldown_ms = 30000,
                    .half_open_probes = 1},
    };
}
