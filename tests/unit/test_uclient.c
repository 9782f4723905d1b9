/* test_uclient.c -- unit tests for core/uclient.c (and the registry in
 * core/origin.c it takes its origins from), against a real HTTP/1.1 server
 * running in a thread of this test on 127.0.0.1.
 *
 * The server answers by request path (a script per path: fixed, chunked,
 * read-until-close, delayed, dropped, reset, garbage, huge…), one thread
 * per connection, counting connections and recording the raw bytes of the
 * last request. The client runs on a loop in the test's main thread; done
 * callbacks stop it. Every done asserts it does not run inside
 * uclient_start. A guard timer fails a test that would hang. */
#include "uclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define GUARD_MS 5000
#define SRV_MAX_CONNS 64
#define SRV_HEAD_MAX 16384
#define REC_MAX 8192
#define BIG (10u * 1024 * 1024)
#define NCALLS 32

static uint64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t
fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

/* Bytes that depend on their offset's high bits too, so a lost, repeated
 * or reordered block shows. */
static void
fill_pattern(char *buf, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint32_t x = (uint32_t)(off + i);
        buf[i] = (char)(x ^ (x >> 8) ^ (x >> 16));
    }
}

/* epoll_ctl, counted (uclient.cmake links with --wrap=epoll_ctl): a pooled
 * connection must cost none per request. */
int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
static atomic_int epoll_ctls;

int
__wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    atomic_fetch_add(&epoll_ctls, 1);
    return __real_epoll_ctl(epfd, op, fd, ev);
}

/* ---- the test server ---------------------------------------------------- */

typedef struct srv {
    int lfd;
    uint16_t port;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_t threads[SRV_MAX_CONNS];
    int nthreads;
    atomic_bool stopping;
    atomic_int accepted;
    atomic_int active;
    atomic_int max_active;
    atomic_int requests;
    atomic_int early_closes; /* connections the client closed while we held the answer */
    atomic_int peer_port;    /* the client port of the last connection accepted */
    sem_t go;                /* the test lets /closeafter and /rstafter close */
    sem_t closed;            /* posted once they did */
    /* The last request, under MU. */
    char last[REC_MAX];
    size_t last_len;
    size_t last_body_len;
    uint64_t last_body_hash;
} srv;

typedef struct sconn {
    srv *s;
    int fd;
    int id;
    char buf[SRV_HEAD_MAX + 1];
    size_t len;
} sconn;

typedef struct sreq {
    char method[16];
    char target[256];
    size_t clen;
    char rec[REC_MAX];
    size_t rec_len;
    uint64_t hash;
} sreq;

/* Waits in short slices, so a stopping server never hangs. 0 at EOF,
 * error or stop. */
static ssize_t
srv_recv(srv *s, int fd, void *buf, size_t n)
{
    for (;;) {
        if (atomic_load(&s->stopping))
            return 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, 20);
        if (r == 0 || (r < 0 && errno == EINTR))
            continue;
        if (r < 0)
            return 0;
        ssize_t got = recv(fd, buf, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        return got < 0 ? 0 : got;
    }
}

static bool
srv_send(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/* Waits up to MS for the client to close; true if it did (or we stop). */
static bool
srv_wait_close(srv *s, int fd, int ms)
{
    uint64_t end = wall_ms() + (uint64_t)ms;
    for (;;) {
        if (atomic_load(&s->stopping))
            return true;
        uint64_t now = wall_ms();
        if (now >= end)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
        int r = poll(&pfd, 1, (int)(end - now < 20 ? end - now : 20));
        if (r > 0) {
            char c;
            ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n <= 0)
                return true;
        }
    }
}

static void
rec_add(sreq *r, const char *data, size_t len)
{
    size_t room = REC_MAX - r->rec_len;
    size_t n = len < room ? len : room;
    memcpy(r->rec + r->rec_len, data, n);
    r->rec_len += n;
}

static void
body_add(sreq *r, const char *data, size_t len)
{
    rec_add(r, data, len);
    r->hash = fnv1a(r->hash, data, len);
}

/* Reads one request: head, then Content-Length bytes of body. */
static bool
srv_read_request(sconn *sc, sreq *r)
{
    char *end;
    while (!(end = memmem(sc->buf, sc->len, "\r\n\r\n", 4))) {
        if (sc->len == SRV_HEAD_MAX)
            return false;
        ssize_t n = srv_recv(sc->s, sc->fd, sc->buf + sc->len, SRV_HEAD_MAX - sc->len);
        if (n <= 0)
            return false;
        sc->len += (size_t)n;
    }
    size_t head_len = (size_t)(end + 4 - sc->buf);
    char save = sc->buf[head_len];
    sc->buf[head_len] = '\0';
    memset(r, 0, sizeof *r);
    r->hash = FNV_INIT;
    if (sscanf(sc->buf, "%15s %255s", r->method, r->target) != 2)
        return false;
    for (char *line = strstr(sc->buf, "\r\n") + 2; *line && strncmp(line, "\r\n", 2) != 0;
         line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            r->clen = strtoull(line + 15, NULL, 10);
    }
    sc->buf[head_len] = save;
    rec_add(r, sc->buf, head_len);
    if (strcmp(r->target, "/slowecho") == 0)
        usleep(50 * 1000); /* the client's send buffer fills up meanwhile */

    size_t avail = sc->len - head_len;
    size_t take = avail < r->clen ? avail : r->clen;
    body_add(r, sc->buf + head_len, take);
    memmove(sc->buf, sc->buf + head_len + take, avail - take);
    sc->len = avail - take;
    size_t left = r->clen - take;
    static _Thread_local char chunk[65536];
    while (left > 0) {
        ssize_t n = srv_recv(sc->s, sc->fd, chunk, left < sizeof chunk ? left : sizeof chunk);
        if (n <= 0)
            return false;
        body_add(r, chunk, (size_t)n);
        left -= (size_t)n;
    }
    srv *s = sc->s;
    pthread_mutex_lock(&s->mu);
    memcpy(s->last, r->rec, r->rec_len);
    s->last_len = r->rec_len;
    s->last_body_len = r->clen;
    s->last_body_hash = r->hash;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->requests, 1);
    return true;
}

static bool
srv_fixed(sconn *sc, const sreq *r)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\nX-Conn: %d\r\n\r\n",
                     sc->id);
    if (!srv_send(sc->fd, head, (size_t)n))
        return false;
    return strcmp(r->method, "HEAD") == 0 || srv_send(sc->fd, "hello", 5);
}

static bool
srv_huge(sconn *sc, size_t len)
{
    char head[128];
    int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
    if (!srv_send(sc->fd, head, (size_t)n))
        return false;
    static _Thread_local char chunk[65536];
    for (size_t off = 0; off < len;) {
        size_t k = len - off < sizeof chunk ? len - off : sizeof chunk;
        fill_pattern(chunk, off, k);
        if (!srv_send(sc->fd, chunk, k))
            return false;
        off += k;
    }
    return true;
}

/* Waits (2 s at most) for the test's go. */
static void
srv_wait_go(srv *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    while (sem_timedwait(&s->go, &ts) < 0 && errno == EINTR)
        ;
}

static void
srv_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static bool
prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Serves one connection: the scripts, by path. */
static void *
srv_conn(void *arg)
{
    sconn *sc = arg;
    srv *s = sc->s;
    int nreq = 0;
    bool closed = false;
    sreq *r = malloc(sizeof *r);
    while (r && srv_read_request(sc, r)) {
        nreq++;
        const char *t = r->target;
        bool ok = true;
        if (strcmp(t, "/fixed") == 0) {
            ok = srv_fixed(sc, r);
        } else if (strcmp(t, "/echo") == 0 || strcmp(t, "/slowecho") == 0) {
            char body[64], head[128];
            int bn = snprintf(body, sizeof body, "len=%zu hash=%016" PRIx64, r->clen, r->hash);
            int hn =
                snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", bn);
            ok = srv_send(sc->fd, head, (size_t)hn) && srv_send(sc->fd, body, (size_t)bn);
        } else if (strcmp(t, "/chunked") == 0) {
            static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
            ok = srv_send(sc->fd, resp, sizeof resp - 1);
        } else if (strcmp(t, "/eof") == 0) {
            static const char resp[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close";
            srv_send(sc->fd, resp, sizeof resp - 1);
            break;
        } else if (prefix(t, "/delay/")) {
            if (srv_wait_close(s, sc->fd, atoi(t + 7))) {
                atomic_fetch_add(&s->early_closes, 1);
                break;
            }
            ok = srv_fixed(sc, r);
        } else if (strcmp(t, "/gated") == 0) {
            srv_wait_go(s); /* answers when the test says so */
            ok = srv_fixed(sc, r);
        } else if (strcmp(t, "/noanswer") == 0) {
            break;
        } else if (strcmp(t, "/drop2") == 0) {
            if (nreq == 2)
                break; /* read the request, close without an answer */
            ok = srv_fixed(sc, r);
        } else if (strcmp(t, "/closeafter") == 0) {
            srv_fixed(sc, r); /* keep-alive by its headers, closed once pooled */
            srv_wait_go(s);
            close(sc->fd);
            closed = true;
            sem_post(&s->closed);
            break;
        } else if (strcmp(t, "/rst") == 0) {
            srv_reset(sc->fd);
            closed = true;
            break;
        } else if (strcmp(t, "/rstafter") == 0) {
            srv_fixed(sc, r);
            srv_wait_go(s);
            srv_reset(sc->fd);
            closed = true;
            sem_post(&s->closed);
            break;
        } else if (strcmp(t, "/trailing") == 0) {
            static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloJUNK";
            ok = srv_send(sc->fd, resp, sizeof resp - 1);
        } else if (strcmp(t, "/garbage") == 0) {
            ok = srv_send(sc->fd, "garbage\r\n\r\n", 11);
        } else if (prefix(t, "/huge/")) {
            ok = srv_huge(sc, strtoull(t + 6, NULL, 10));
        } else if (strcmp(t, "/slow") == 0) {
            static const char part[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello";
            srv_send(sc->fd, part, sizeof part - 1);
            if (srv_wait_close(s, sc->fd, 3000))
                atomic_fetch_add(&s->early_closes, 1);
            break;
        } else {
            static const char resp[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
            ok = srv_send(sc->fd, resp, sizeof resp - 1);
        }
        if (!ok)
            break;
    }
    if (!closed)
        close(sc->fd);
    atomic_fetch_sub(&s->active, 1);
    free(r);
    free(sc);
    return NULL;
}

static void *
srv_accept(void *arg)
{
    srv *s = arg;
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (fd < 0) {
            if (!atomic_load(&s->stopping) && (errno == EINTR || errno == ECONNABORTED))
                continue;
            return NULL;
        }
        int one = 1; /* head and body go out in separate sends */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_store(&s->peer_port, ntohs(peer.sin_port));
        int id = atomic_fetch_add(&s->accepted, 1) + 1;
        int a = atomic_fetch_add(&s->active, 1) + 1;
        int m = atomic_load(&s->max_active);
        while (a > m && !atomic_compare_exchange_weak(&s->max_active, &m, a))
            ;
        sconn *sc = calloc(1, sizeof *sc);
        pthread_mutex_lock(&s->mu);
        bool room = sc && s->nthreads < SRV_MAX_CONNS;
        if (room) {
            *sc = (sconn){.s = s, .fd = fd, .id = id};
            room = pthread_create(&s->threads[s->nthreads], NULL, srv_conn, sc) == 0;
            if (room)
                s->nthreads++;
        }
        pthread_mutex_unlock(&s->mu);
        if (!room) {
            free(sc);
            close(fd);
            atomic_fetch_sub(&s->active, 1);
        }
    }
}

/* A listener on 127.0.0.1 and a free port; returns its fd. */
static int
listen_loopback(int backlog, uint16_t *port)
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

static void
srv_start(srv *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    sem_init(&s->go, 0, 0);
    sem_init(&s->closed, 0, 0);
    s->lfd = listen_loopback(64, &s->port);
    assert_int_equal(pthread_create(&s->acceptor, NULL, srv_accept, s), 0);
}

static void
srv_stop(srv *s)
{
    atomic_store(&s->stopping, true);
    shutdown(s->lfd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->acceptor, NULL);
    close(s->lfd);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    sem_destroy(&s->go);
    sem_destroy(&s->closed);
    pthread_mutex_destroy(&s->mu);
}

/* Copies the last request's raw bytes into OUT (NUL-terminated). */
static size_t
srv_last(srv *s, char *out, size_t cap)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->last_len < cap - 1 ? s->last_len : cap - 1;
    memcpy(out, s->last, n);
    out[n] = '\0';
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- the client side: env, calls, running the loop ---------------------- */

static bool in_start; /* set around uclient_start: done must never see it */

typedef struct env env;

typedef struct tcall {
    ucall call;
    env *e;
    kapi_header hdr[4];
    int ndone;
    void (*then)(struct tcall *t); /* runs in done; may free T */
} tcall;

struct env {
    srv s;
    loop *lp;
    uclient *uc;
    const origin *o;
    loop_timer guard;
    loop_timer poll;
    bool (*pred)(env *e);
    int ndone;
    int want;
    int seq_left; /* test_keepalive_reuse */
    tcall t[NCALLS];
};

static void
guard_fired(loop_timer *t)
{
    (void)t;
    fail_msg("the loop did not stop within the guard time");
}

static void
on_done(ucall *c)
{
    assert_false(in_start);
    tcall *t = c->data;
    env *e = t->e;
    t->ndone++;
    e->ndone++;
    if (t->then)
        t->then(t);
    if (e->ndone >= e->want)
        loop_stop(e->lp);
}

static kapi_str
str(const char *s)
{
    return (kapi_str){s, strlen(s)};
}

static void
tcall_init(tcall *t, env *e, const origin *o, const char *method, const char *target)
{
    memset(t, 0, sizeof *t);
    t->e = e;
    t->hdr[0] = (kapi_header){KAPI_STR("Host"), str(o->authority)};
    ucall *c = &t->call;
    c->origin = o;
    c->method = str(method);
    c->target = str(target);
    c->headers = t->hdr;
    c->nheaders = 1;
    c->idempotent = strcmp(method, "POST") != 0;
    c->timeout_ms = 3000;
    c->keepalive = 8;
    c->max_response_bytes = 1 << 20;
    c->done = on_done;
    c->data = t;
}

static tcall *
tc(env *e, int i, const char *method, const char *target)
{
    tcall_init(&e->t[i], e, e->o, method, target);
    return &e->t[i];
}

static void
start(env *e, tcall *t)
{
    in_start = true;
    kapi_status st = uclient_start(e->uc, &t->call);
    in_start = false;
    assert_int_equal(st, KAPI_OK);
}

/* Runs the loop until WANT done callbacks ran in all. */
static void
run_until_done(env *e, int want)
{
    e->want = want;
    if (e->ndone >= want)
        return;
    loop_timer_start(e->lp, &e->guard, GUARD_MS);
    assert_int_equal(loop_run(e->lp), KAPI_OK);
    loop_timer_stop(e->lp, &e->guard);
    assert_int_equal(e->ndone, want);
}

static void
poll_pred(loop_timer *t)
{
    env *e = t->data;
    if (e->pred(e))
        loop_stop(e->lp);
    else
        loop_timer_start(e->lp, t, 1);
}

/* Runs the loop until PRED holds (checked every ms). */
static void
run_until(env *e, bool (*pred)(env *e))
{
    e->want = INT32_MAX;
    e->pred = pred;
    loop_timer_start(e->lp, &e->poll, 0);
    loop_timer_start(e->lp, &e->guard, GUARD_MS);
    assert_int_equal(loop_run(e->lp), KAPI_OK);
    loop_timer_stop(e->lp, &e->guard);
    loop_timer_stop(e->lp, &e->poll);
}

static bool
always(env *e)
{
    (void)e;
    return true;
}

/* Runs the loop for about MS (to show that nothing happens). */
static void
run_for(env *e, unsigned ms)
{
    e->pred = always;
    loop_timer_start(e->lp, &e->poll, ms);
    loop_timer_start(e->lp, &e->guard, GUARD_MS);
    assert_int_equal(loop_run(e->lp), KAPI_OK);
    loop_timer_stop(e->lp, &e->guard);
    loop_timer_stop(e->lp, &e->poll);
}

static uclient_stats
stats(env *e, const origin *o)
{
    uclient_stats st;
    uclient_stats_get(e->uc, o, &st);
    return st;
}

static const char *
header(const ucall *c, const char *name)
{
    for (size_t i = 0; i < c->nresp_headers; i++)
        if (strcasecmp(c->resp_headers[i].name.ptr, name) == 0)
            return c->resp_headers[i].value.ptr;
    return NULL;
}

static void
assert_body(const ucall *c, const char *want)
{
    assert_int_equal(c->resp_body_len, strlen(want));
    assert_memory_equal(c->resp_body, want, strlen(want));
}

static const origin *
origin_at(uint16_t port)
{
    const origin *o = NULL;
    char err[256];
    assert_int_equal(origin_get(false, "127.0.0.1", port, false, &o, err, sizeof err), KAPI_OK);
    return o;
}

static int
setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    srv_start(&e->s);
    assert_int_equal(loop_new(&e->lp), KAPI_OK);
    assert_int_equal(uclient_new(e->lp, &e->uc), KAPI_OK);
    e->o = origin_at(e->s.port);
    loop_timer_init(&e->guard, guard_fired, e);
    loop_timer_init(&e->poll, poll_pred, e);
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    env *e = *state;
    uclient_free(e->uc);
    for (int i = 0; i < NCALLS; i++)
        ucall_release(&e->t[i].call);
    srv_stop(&e->s);
    loop_free(e->lp);
    free(e);
    return 0;
}

/* ---- round trips -------------------------------------------------------- */

/* The fd of this process's TCP socket bound to local PORT, or -1. */
static int
client_fd(int port)
{
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in a;
        socklen_t alen = sizeof a;
        int type = 0;
        socklen_t tlen = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || type != SOCK_STREAM)
            continue;
        if (getsockname(fd, (struct sockaddr *)&a, &alen) == 0 && a.sin_family == AF_INET &&
            ntohs(a.sin_port) == port)
            return fd;
    }
    return -1;
}

static void
test_get_roundtrip(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/fixed");
    t->hdr[1] = (kapi_header){KAPI_STR("X-Trace"), KAPI_STR("abc")};
    t->call.nheaders = 2;
    start(e, t);
    assert_int_equal(t->ndone, 0);
    run_until_done(e, 1);

    ucall *c = &t->call;
    assert_int_equal(c->error, UCALL_OK);
    assert_int_equal(c->status, 200);
    assert_true(c->sent);
    assert_false(c->reused);
    assert_body(c, "hello");
    assert_string_equal(header(c, "X-Test"), "yes");

    char want[256], got[REC_MAX];
    snprintf(want, sizeof want, "GET /fixed HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nX-Trace: abc\r\n\r\n",
             (unsigned)e->s.port);
    srv_last(&e->s, got, sizeof got);
    assert_string_equal(got, want);

    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.opened, 1);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.waiting, 0);

    /* The client's socket (ours: same process): non-blocking, close-on-exec, no Nagle. */
    int fd = client_fd(atomic_load(&e->s.peer_port));
    assert_true(fd >= 0);
    int nodelay = 0;
    socklen_t len = sizeof nodelay;
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    assert_int_equal(nodelay, 1);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static void
test_post_roundtrip(void **state)
{
    env *e = *state;
    static const char body[] = "name=kapi&n=1";
    tcall *t = tc(e, 0, "POST", "/echo");
    t->hdr[1] =
        (kapi_header){KAPI_STR("Content-Type"), KAPI_STR("application/x-www-form-urlencoded")};
    t->call.nheaders = 2;
    t->call.body = (kapi_str){body, sizeof body - 1};
    start(e, t);
    run_until_done(e, 1);

    char want[512], got[REC_MAX];
    snprintf(want, sizeof want,
             "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 13\r\n\r\n%s",
             (unsigned)e->s.port, body);
    srv_last(&e->s, got, sizeof got);
    assert_string_equal(got, want);

    assert_int_equal(t->call.error, UCALL_OK);
    assert_int_equal(t->call.status, 200);
    snprintf(want, sizeof want, "len=13 hash=%016" PRIx64, fnv1a(FNV_INIT, body, 13));
    assert_body(&t->call, want);
}

static void
test_head_has_no_body(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "HEAD", "/fixed"); /* Content-Length: 5, no body follows */
    t->call.timeout_ms = 1000;
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_OK);
    assert_int_equal(t->call.status, 200);
    assert_int_equal(t->call.resp_body_len, 0);

    tcall *t2 = tc(e, 1, "GET", "/fixed"); /* the connection carries on */
    start(e, t2);
    run_until_done(e, 2);
    assert_int_equal(t2->call.error, UCALL_OK);
    assert_true(t2->call.reused);
    assert_body(&t2->call, "hello");
}

static void
test_chunked(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/chunked");
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_OK);
    assert_body(&t->call, "hello world");
    assert_int_equal(stats(e, e->o).idle, 1);
}

static void
test_read_until_close(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/eof");
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_OK);
    assert_body(&t->call, "until close");
    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.idle, 0);
}

/* Bytes after the response belong to no request: never pool that connection. */
static void
test_trailing_bytes_not_pooled(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/trailing");
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_OK);
    assert_body(&t->call, "hello");
    assert_int_equal(stats(e, e->o).open, 0);
}

static void
test_huge_response(void **state)
{
    env *e = *state;
    char target[32];
    snprintf(target, sizeof target, "/huge/%u", BIG);
    tcall *t = tc(e, 0, "GET", target);
    t->call.max_response_bytes = 16u << 20;
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_OK);
    assert_int_equal(t->call.resp_body_len, BIG);
    char *want = malloc(BIG);
    assert_non_null(want);
    fill_pattern(want, 0, BIG);
    assert_memory_equal(t->call.resp_body, want, BIG);
    free(want);

    size_t len = 0;
    char *body = ucall_take_body(&t->call, &len);
    assert_int_equal(len, BIG);
    assert_null(t->call.resp_body);
    free(body);
}

static void
test_huge_request(void **state)
{
    env *e = *state;
    char *body = malloc(BIG);
    assert_non_null(body);
    fill_pattern(body, 7, BIG);
    tcall *t = tc(e, 0, "POST", "/slowecho");
    t->call.body = (kapi_str){body, BIG};
    int ctls = atomic_load(&epoll_ctls);
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_OK);
    char want[64];
    snprintf(want, sizeof want, "len=%u hash=%016" PRIx64, BIG, fnv1a(FNV_INIT, body, BIG));
    assert_body(&t->call, want);
    assert_int_equal(stats(e, e->o).requests, 1);
    /* The send buffer filled up many times: EPOLLOUT was in the mask all along. */
    assert_int_equal(atomic_load(&epoll_ctls) - ctls, 1);
    free(body);
}

/* ---- pooling ------------------------------------------------------------ */

/* Each done releases its call, starts the next one and frees its own. */
static void
seq_next(tcall *t)
{
    env *e = t->e;
    ucall *c = &t->call;
    assert_int_equal(c->error, UCALL_OK);
    assert_body(c, "hello");
    assert_int_equal(c->reused, e->seq_left < 20);
    ucall_release(c);
    if (--e->seq_left > 0) {
        tcall *n = malloc(sizeof *n);
        assert_non_null(n);
        tcall_init(n, e, e->o, "GET", "/fixed");
        n->then = seq_next;
        start(e, n);
    }
    free(t);
}

static void
test_keepalive_reuse(void **state)
{
    env *e = *state;
    e->seq_left = 20;
    int ctls = atomic_load(&epoll_ctls);
    tcall *t = malloc(sizeof *t);
    assert_non_null(t);
    tcall_init(t, e, e->o, "GET", "/fixed");
    t->then = seq_next;
    start(e, t);
    run_until_done(e, 20);
    assert_int_equal(atomic_load(&epoll_ctls) - ctls, 1); /* the one connection's add */
    assert_int_equal(atomic_load(&e->s.accepted), 1);
    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.opened, 1);
    assert_int_equal(st.requests, 20);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.idle, 1);
}

static void
test_queueing(void **state)
{
    env *e = *state;
    for (int i = 0; i < 20; i++) {
        tcall *t = tc(e, i, "GET", "/delay/10");
        t->call.max_connections = 4;
        start(e, t);
    }
    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.open, 4);
    assert_int_equal(st.waiting, 16);
    run_until_done(e, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(e->t[i].ndone, 1);
        assert_int_equal(e->t[i].call.error, UCALL_OK);
        assert_int_equal(e->t[i].call.status, 200);
    }
    st = stats(e, e->o);
    assert_int_equal(st.opened, 4);
    assert_int_equal(st.requests, 20);
    assert_int_equal(st.waiting, 0);
    assert_true(atomic_load(&e->s.accepted) <= 4);
    assert_true(atomic_load(&e->s.max_active) <= 4);
}

static void
check_closed_in_done(tcall *t)
{
    uclient_stats st = stats(t->e, t->call.origin);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.idle, 0);
}

static void
test_keepalive_zero(void **state)
{
    env *e = *state;
    for (int i = 0; i < 5; i++) {
        tcall *t = tc(e, i, "GET", "/fixed");
        t->call.keepalive = 0;
        t->then = check_closed_in_done;
        start(e, t);
        run_until_done(e, i + 1);
        assert_int_equal(t->call.error, UCALL_OK);
        assert_false(t->call.reused);
    }
    assert_int_equal(stats(e, e->o).opened, 5);
    assert_int_equal(atomic_load(&e->s.accepted), 5);
}

/* Two connections free up in turn: the later one is reused first, and
 * with keepalive 1 the earlier one is closed. */
static void
test_lifo_and_trim(void **state)
{
    env *e = *state;
    tcall *a = tc(e, 0, "GET", "/fixed");
    tcall *b = tc(e, 1, "GET", "/gated");
    start(e, a);
    start(e, b);
    run_until_done(e, 1);
    assert_int_equal(a->ndone, 1);
    sem_post(&e->s.go);
    run_until_done(e, 2);
    assert_int_equal(stats(e, e->o).idle, 2);

    tcall *c = tc(e, 2, "GET", "/fixed");
    c->call.keepalive = 1;
    start(e, c);
    run_until_done(e, 3);
    assert_int_equal(c->call.error, UCALL_OK);
    assert_true(c->call.reused);
    assert_string_equal(header(&c->call, "X-Conn"), header(&b->call, "X-Conn"));
    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.open, 1);
}

/* ---- stale keep-alive connections -------------------------------------- */

static bool
pool_empty(env *e)
{
    return stats(e, e->o).open == 0;
}

static void
test_idle_eof_detected(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/closeafter");
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_OK);
    assert_int_equal(stats(e, e->o).idle, 1);
    sem_post(&e->s.go);
    run_until(e, pool_empty); /* the server's FIN closes the idle connection */
    assert_int_equal(stats(e, e->o).idle, 0);

    tcall *t2 = tc(e, 1, "GET", "/fixed");
    t2->call.idempotent = false; /* so a stale reuse could not be hidden by a retry */
    start(e, t2);
    run_until_done(e, 2);
    assert_int_equal(t2->call.error, UCALL_OK);
    assert_false(t2->call.reused);
    assert_int_equal(stats(e, e->o).opened, 2);
    assert_int_equal(stats(e, e->o).requests, 2);
    assert_int_equal(atomic_load(&e->s.accepted), 2);
}

static void
test_stale_retry_idempotent(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/drop2");
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_OK);

    tcall *t2 = tc(e, 1, "GET", "/drop2"); /* read, then closed without an answer */
    start(e, t2);
    run_until_done(e, 2);
    assert_int_equal(t2->ndone, 1);
    assert_int_equal(t2->call.error, UCALL_OK);
    assert_int_equal(t2->call.status, 200);
    assert_true(t2->call.sent);
    assert_false(t2->call.reused); /* the fresh attempt */
    assert_int_equal(atomic_load(&e->s.accepted), 2);
    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.opened, 2);
    assert_int_equal(st.requests, 3);
}

/* The retry's outcome is the fresh attempt's: its connect is refused, so
 * nothing was sent. */
static void
test_stale_retry_reports_fresh_attempt(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/drop2");
    start(e, t);
    run_until_done(e, 1);
    shutdown(e->s.lfd, SHUT_RDWR); /* stops listening: new connects are refused */

    tcall *t2 = tc(e, 1, "GET", "/drop2");
    start(e, t2);
    run_until_done(e, 2);
    assert_int_equal(t2->ndone, 1);
    assert_int_equal(t2->call.error, UCALL_ECONNECT);
    assert_false(t2->call.sent);
    assert_false(t2->call.reused);
    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.opened, 2);
    assert_int_equal(st.open, 0);
}

static void
test_stale_post_not_retried(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/drop2");
    start(e, t);
    run_until_done(e, 1);

    tcall *t2 = tc(e, 1, "POST", "/drop2");
    t2->call.body = KAPI_STR("x=1");
    start(e, t2);
    run_until_done(e, 2);
    assert_int_equal(t2->call.error, UCALL_ERESET);
    assert_true(t2->call.sent);
    assert_true(t2->call.reused);
    assert_int_equal(atomic_load(&e->s.accepted), 1);
    assert_int_equal(stats(e, e->o).open, 0);
}

/* The reset reaches the pooled connection while done runs, before the loop
 * can see it: the POST's write fails, and is retried although a POST. */
static void
post_on_reset_connection(tcall *t)
{
    env *e = t->e;
    assert_int_equal(stats(e, e->o).idle, 1);
    sem_post(&e->s.go);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    assert_int_equal(sem_timedwait(&e->s.closed, &ts), 0);
    usleep(2000); /* the RST crosses loopback within the server's close(); margin */
    tcall *t2 = tc(e, 1, "POST", "/fixed");
    t2->call.body = KAPI_STR("x=1");
    start(e, t2);
}

static void
test_stale_write_failure_retried(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/rstafter");
    t->then = post_on_reset_connection;
    start(e, t);
    run_until_done(e, 2);
    tcall *t2 = &e->t[1];
    assert_int_equal(t2->call.error, UCALL_OK);
    assert_int_equal(t2->call.status, 200);
    assert_false(t2->call.reused);
    assert_int_equal(atomic_load(&e->s.accepted), 2);
    char got[REC_MAX];
    srv_last(&e->s, got, sizeof got);
    assert_non_null(strstr(got, "POST /fixed HTTP/1.1\r\n"));
}

/* ---- failures ----------------------------------------------------------- */

static void
test_connect_refused(void **state)
{
    env *e = *state;
    uint16_t port;
    close(listen_loopback(1, &port)); /* a port nobody listens on */
    tcall *t = tc(e, 0, "GET", "/");
    tcall_init(t, e, origin_at(port), "GET", "/");
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_ECONNECT);
    assert_false(t->call.sent);
    assert_int_equal(stats(e, t->call.origin).open, 0);
}

/* A listener that never accepts, its backlog full: SYNs are dropped, so a
 * connect stays in progress. */
typedef struct blackhole {
    int lfd;
    uint16_t port;
    int fillers[8];
    int n;
} blackhole;

static void
blackhole_open(blackhole *b)
{
    b->lfd = listen_loopback(0, &b->port);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(b->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (b->n = 0; b->n < 8;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        b->fillers[b->n++] = fd;
        (void)connect(fd, (struct sockaddr *)&a, sizeof a);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 50) == 0)
            return; /* this one hangs: so will the next */
    }
    fail_msg("could not fill the listen backlog");
}

static void
blackhole_close(blackhole *b)
{
    for (int i = 0; i < b->n; i++)
        close(b->fillers[i]);
    close(b->lfd);
}

static void
test_connect_timeout(void **state)
{
    env *e = *state;
    blackhole b;
    blackhole_open(&b);
    tcall *t = tc(e, 0, "GET", "/");
    tcall_init(t, e, origin_at(b.port), "GET", "/");
    t->call.connect_timeout_ms = 100;
    t->call.timeout_ms = 3000;
    uint64_t t0 = wall_ms();
    start(e, t);
    run_until_done(e, 1);
    uint64_t took = wall_ms() - t0;
    blackhole_close(&b);
    assert_int_equal(t->call.error, UCALL_ETIMEOUT);
    assert_false(t->call.sent);
    assert_true(took >= 90 && took < 1000);
    assert_int_equal(stats(e, t->call.origin).open, 0);
}

static void
test_response_timeout(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/delay/3000");
    t->call.connect_timeout_ms = 80; /* ends with the connect: the try's deadline rules */
    t->call.timeout_ms = 160;
    uint64_t t0 = wall_ms();
    start(e, t);
    run_until_done(e, 1);
    uint64_t took = wall_ms() - t0;
    assert_int_equal(t->call.error, UCALL_ETIMEOUT);
    assert_true(t->call.sent);
    assert_true(took >= 150 && took < 1000);
    assert_int_equal(stats(e, e->o).open, 0);
}

static void
test_queue_timeout(void **state)
{
    env *e = *state;
    tcall *a = tc(e, 0, "GET", "/delay/3000");
    tcall *b = tc(e, 1, "GET", "/fixed");
    a->call.max_connections = b->call.max_connections = 1;
    b->call.timeout_ms = 50;
    start(e, a);
    start(e, b);
    assert_int_equal(stats(e, e->o).waiting, 1);
    run_until_done(e, 1);
    assert_int_equal(b->ndone, 1);
    assert_int_equal(b->call.error, UCALL_ETIMEOUT);
    assert_false(b->call.sent);
    assert_int_equal(stats(e, e->o).waiting, 0);
    uclient_cancel(&a->call);
}

static void
test_malformed(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/garbage");
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_EPROTO);
    assert_non_null(t->call.detail);
    assert_int_equal(stats(e, e->o).open, 0);
}

static void
test_too_big(void **state)
{
    env *e = *state;
    tcall *t = tc(e, 0, "GET", "/huge/5000");
    t->call.max_response_bytes = 1000;
    start(e, t);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_ETOOBIG);
    assert_int_equal(stats(e, e->o).open, 0);
}

static void
test_reset_and_close(void **state)
{
    env *e = *state;
    tcall *a = tc(e, 0, "GET", "/rst");
    tcall *b = tc(e, 1, "GET", "/noanswer");
    start(e, a);
    start(e, b);
    run_until_done(e, 2);
    assert_int_equal(a->call.error, UCALL_ERESET); /* fresh connections: no retry */
    assert_true(a->call.sent);
    assert_int_equal(b->call.error, UCALL_ERESET);
    assert_true(b->call.sent);
    assert_int_equal(stats(e, e->o).opened, 2);
    assert_int_equal(stats(e, e->o).open, 0);
}

/* A connect that fails inside connect() itself (multicast: ENETUNREACH)
 * is still reported later, from the loop. */
static void
test_no_done_inside_start(void **state)
{
    env *e = *state;
    const origin *o = NULL;
    char err[256];
    assert_int_equal(origin_get(false, "224.0.0.1", 80, false, &o, err, sizeof err), KAPI_OK);
    tcall *t = tc(e, 0, "GET", "/");
    tcall_init(t, e, o, "GET", "/");
    start(e, t);
    assert_int_equal(t->ndone, 0);
    run_until_done(e, 1);
    assert_int_equal(t->call.error, UCALL_ECONNECT);
    assert_false(t->call.sent);

    tcall bad = {0};
    tcall_init(&bad, e, e->o, "GET", "/");
    bad.call.done = NULL;
    assert_int_equal(uclient_start(e->uc, &bad.call), KAPI_EINVAL);
}

/* ---- cancel and free ---------------------------------------------------- */

static void
test_cancel_queued(void **state)
{
    env *e = *state;
    tcall *a = tc(e, 0, "GET", "/delay/30");
    tcall *b = tc(e, 1, "GET", "/fixed");
    a->call.max_connections = b->call.max_connections = 1;
    start(e, a);
    start(e, b);
    assert_int_equal(stats(e, e->o).waiting, 1);
    uclient_cancel(&b->call);
    assert_int_equal(stats(e, e->o).waiting, 0);
    run_until_done(e, 1);
    assert_int_equal(a->call.error, UCALL_OK);
    run_for(e, 20);
    assert_int_equal(b->ndone, 0);
    assert_int_equal(stats(e, e->o).requests, 1);
    uclient_cancel(&b->call); /* a no-op now */
    uclient_cancel(&a->call); /* done ran: a no-op */
    assert_int_equal(stats(e, e->o).idle, 1);
}

static bool
server_got_request(env *e)
{
    return atomic_load(&e->s.requests) >= 1;
}

static bool
server_saw_close(env *e)
{
    return atomic_load(&e->s.early_closes) >= 1;
}

static bool
response_started(env *e)
{
    return http1_response_started(&e->t[0].call.resp);
}

/* Cancelled with the request sent and no answer yet, or with the response
 * half read: done never runs, the connection is closed, not pooled. */
static void
cancel_and_check(env *e, bool (*when)(env *e))
{
    tcall *t = &e->t[0];
    t->call.timeout_ms = 1000;
    start(e, t);
    run_until(e, when);
    uclient_cancel(&t->call);
    assert_false(loop_timer_active(&t->call.timer));
    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.idle, 0);
    run_until(e, server_saw_close);
    assert_int_equal(t->ndone, 0);

    tcall *t2 = tc(e, 1, "GET", "/fixed");
    start(e, t2);
    run_until_done(e, 1);
    assert_int_equal(t2->call.error, UCALL_OK);
    assert_false(t2->call.reused);
    assert_int_equal(stats(e, e->o).opened, 2);
}

static void
test_cancel_before_response(void **state)
{
    env *e = *state;
    tc(e, 0, "GET", "/delay/3000");
    cancel_and_check(e, server_got_request);
}

static void
test_cancel_mid_response(void **state)
{
    env *e = *state;
    tc(e, 0, "GET", "/slow");
    cancel_and_check(e, response_started);
}

static void
test_cancel_connecting(void **state)
{
    env *e = *state;
    blackhole b;
    blackhole_open(&b);
    tcall *t = tc(e, 0, "GET", "/");
    tcall_init(t, e, origin_at(b.port), "GET", "/");
    t->call.connect_timeout_ms = 20;
    start(e, t);
    assert_int_equal(stats(e, t->call.origin).open, 1);
    uclient_cancel(&t->call);
    assert_false(loop_timer_active(&t->call.timer));
    assert_int_equal(stats(e, t->call.origin).open, 0);
    run_for(e, 40); /* past the connect deadline */
    blackhole_close(&b);
    assert_int_equal(t->ndone, 0);
}

static void
test_free_in_flight(void **state)
{
    env *e = *state;
    tcall *a = tc(e, 0, "GET", "/delay/3000");
    tcall *b = tc(e, 1, "GET", "/fixed");
    a->call.max_connections = b->call.max_connections = 1;
    b->call.timeout_ms = 30;
    start(e, a);
    run_until(e, server_got_request);
    start(e, b); /* queued behind a */
    uclient_free(e->uc);
    e->uc = NULL;
    run_for(e, 50); /* b's deadline passes: its timer must be gone */
    assert_int_equal(e->ndone, 0);
}

/* ---- origins ------------------------------------------------------------ */

static void
test_origin_registry(void **state)
{
    (void)state;
    char err[256];
    const origin *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    unsigned before = origin_count();
    assert_int_equal(origin_get(false, "127.0.0.1", 18080, false, &a, err, sizeof err), KAPI_OK);
    assert_string_equal(a->authority, "127.0.0.1:18080");
    assert_string_equal(a->base_url, "http://127.0.0.1:18080");
    assert_int_equal(((const struct sockaddr_in *)&a->addr)->sin_port, htons(18080));
    assert_int_equal(a->addr.ss_family, AF_INET);
    assert_int_equal(origin_get(false, "127.0.0.1", 18080, false, &b, err, sizeof err), KAPI_OK);
    assert_ptr_equal(a, b);

    assert_int_equal(origin_get(false, "127.0.0.1", 80, false, &c, err, sizeof err), KAPI_OK);
    assert_string_equal(c->authority, "127.0.0.1");
    assert_true(c->id != a->id);
    assert_int_equal(origin_get(true, "[::1]", 443, false, &d, err, sizeof err), KAPI_OK);
    assert_string_equal(d->host, "::1");
    assert_string_equal(d->authority, "[::1]");
    assert_string_equal(d->base_url, "https://[::1]");
    assert_int_equal(d->addr.ss_family, AF_INET6);
    assert_int_equal(origin_get(false, "::1", 8443, false, &d, err, sizeof err), KAPI_OK);
    assert_string_equal(d->authority, "[::1]:8443");

    /* Ids are dense: the new ones are the next ones. */
    unsigned after = origin_count();
    assert_true(after <= before + 4);
    assert_true(d->id == after - 1 && d->id >= before);

    const origin *x = NULL;
    assert_int_equal(origin_get(false, "API.Example", 80, false, &x, err, sizeof err), KAPI_EINVAL);
    assert_null(x);
    assert_non_null(strstr(err, "api.example"));
    assert_int_equal(origin_count(), after);
    assert_int_equal(origin_get(false, "localhost", 8081, false, &x, err, sizeof err), KAPI_OK);
    assert_string_equal(x->authority, "localhost:8081");
    assert_int_equal(origin_get(false, "127.0.0.1", 0, true, &x, err, sizeof err), KAPI_EINVAL);
    /* The host becomes the Host header: nothing that could split or bend it. */
    assert_int_equal(origin_get(false, "a\r\nX: y", 80, true, &x, err, sizeof err), KAPI_EINVAL);
    assert_int_equal(origin_get(false, "a/b", 80, true, &x, err, sizeof err), KAPI_EINVAL);
    assert_int_equal(origin_get(false, "", 80, true, &x, err, sizeof err), KAPI_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_get_roundtrip),
        T(test_post_roundtrip),
        T(test_head_has_no_body),
        T(test_chunked),
        T(test_read_until_close),
        T(test_trailing_bytes_not_pooled),
        T(test_huge_response),
        T(test_huge_request),
        T(test_keepalive_reuse),
        T(test_queueing),
        T(test_keepalive_zero),
        T(test_lifo_and_trim),
        T(test_idle_eof_detected),
        T(test_stale_retry_idempotent),
        T(test_stale_retry_reports_fresh_attempt),
        T(test_stale_post_not_retried),
        T(test_stale_write_failure_retried),
        T(test_connect_refused),
        T(test_connect_timeout),
        T(test_response_timeout),
        T(test_queue_timeout),
        T(test_malformed),
        T(test_too_big),
        T(test_reset_and_close),
        T(test_no_done_inside_start),
        T(test_cancel_queued),
        T(test_cancel_before_response),
        T(test_cancel_mid_response),
        T(test_cancel_connecting),
        T(test_free_in_flight),
        cmocka_unit_test(test_origin_registry),
#undef T
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    origin_registry_free();
    return failed;
}
