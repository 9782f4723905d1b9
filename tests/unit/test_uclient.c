/* test_uclient.c -- unit tests for core/uclient.c (and the registry in
 * core/origin.c it takes its origins from), against a real HTTP/1.1 server
 * running in a thread of this test on 127.0.0.1.
 *
 * The server (tserver.h, a thread per connection, counting connections
 * and recording the raw bytes of the last request) answers by request
 * path: a script per path (fixed, chunked, read-until-close, delayed,
 * dropped, reset, garbage, huge…). The client runs on a loop in the
 * test's main thread; done callbacks stop it. Every done asserts it does
 * not run inside uclient_start. A guard timer fails a test that would hang. */
#include "uclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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

#include "tloop.h"
#include "tserver.h"

#define REC_MAX TSERVER_REC_MAX
#define BIG (10u * 1024 * 1024)
#define NCALLS 32

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

/* ---- the test server's scripts, by path ---------------------------------- */

/* /gated, /closeafter and /rstafter wait for the test's GO; the last two
 * post CLOSED once they closed. */
typedef struct gates {
    sem_t go;
    sem_t closed;
} gates;

static bool
send_str(tserver_conn *c, const char *s)
{
    return tserver_send(c, s, strlen(s));
}

static bool
srv_fixed(tserver_conn *c, const tserver_req *r)
{
    char head[256];
    snprintf(head, sizeof head,
             "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\nX-Conn: %d\r\n\r\n", c->id);
    if (!send_str(c, head))
        return false;
    return strcmp(r->method, "HEAD") == 0 || send_str(c, "hello");
}

static bool
srv_huge(tserver_conn *c, size_t len)
{
    char head[128];
    snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
    if (!send_str(c, head))
        return false;
    static _Thread_local char chunk[65536];
    for (size_t off = 0; off < len;) {
        size_t k = len - off < sizeof chunk ? len - off : sizeof chunk;
        fill_pattern(chunk, off, k);
        if (!tserver_send(c, chunk, k))
            return false;
        off += k;
    }
    return true;
}

/* Waits (2 s at most) for the test's go. */
static void
srv_wait_go(gates *g)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    while (sem_timedwait(&g->go, &ts) < 0 && errno == EINTR)
        ;
}

static bool
prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Answers R on C by its path; false to stop serving C. */
static bool
srv_answer(tserver_conn *c, const tserver_req *r, gates *g)
{
    const char *t = r->target;
    if (strcmp(t, "/fixed") == 0)
        return srv_fixed(c, r);
    if (strcmp(t, "/echo") == 0 || strcmp(t, "/slowecho") == 0) {
        char body[64], head[128];
        snprintf(body, sizeof body, "len=%zu hash=%016" PRIx64, r->clen, r->body_hash);
        snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", strlen(body));
        return send_str(c, head) && send_str(c, body);
    }
    if (strcmp(t, "/chunked") == 0)
        return send_str(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    if (strcmp(t, "/eof") == 0) {
        send_str(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close");
        return false;
    }
    if (prefix(t, "/delay/"))
        return !tserver_hold(c, atoi(t + 7)) && srv_fixed(c, r);
    if (strcmp(t, "/gated") == 0) {
        srv_wait_go(g); /* answers when the test says so */
        return srv_fixed(c, r);
    }
    if (strcmp(t, "/noanswer") == 0)
        return false;
    if (strcmp(t, "/drop2") == 0) /* the second request read, closed without an answer */
        return c->nreq != 2 && srv_fixed(c, r);
    if (strcmp(t, "/closeafter") == 0 || strcmp(t, "/rstafter") == 0) {
        srv_fixed(c, r); /* keep-alive by its headers, closed once pooled */
        srv_wait_go(g);
        if (strcmp(t, "/closeafter") == 0)
            tserver_close(c);
        else
            tserver_rst(c);
        sem_post(&g->closed);
        return false;
    }
    if (strcmp(t, "/rst") == 0) {
        tserver_rst(c);
        return false;
    }
    if (strcmp(t, "/trailing") == 0)
        return send_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloJUNK");
    if (strcmp(t, "/garbage") == 0)
        return send_str(c, "garbage\r\n\r\n");
    if (prefix(t, "/huge/"))
        return srv_huge(c, strtoull(t + 6, NULL, 10));
    if (strcmp(t, "/slow") == 0) {
        send_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        tserver_hold(c, 3000);
        return false;
    }
    return send_str(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

/* Serves one connection, a thread per connection: the scripts, by path. */
static void
srv_serve(tserver_conn *c, void *data)
{
    const tserver_req *r;
    while ((r = tserver_read_head(c))) {
        if (strcmp(r->target, "/slowecho") == 0)
            usleep(50 * 1000); /* the client's send buffer fills up meanwhile */
        if (!tserver_read_body(c) || !srv_answer(c, r, data))
            break;
    }
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
    tserver s;
    gates g;
    loop *lp;
    uclient *uc;
    const origin *o;
    tloop tl;
    int ndone;
    int want;
    int seq_left; /* test_keepalive_reuse */
    tcall t[NCALLS];
};

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
    tloop_run(&e->tl);
    assert_int_equal(e->ndone, want);
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
    sem_init(&e->g.go, 0, 0);
    sem_init(&e->g.closed, 0, 0);
    tserver_start(&e->s, &(tserver_opts){.serve = srv_serve, .data = &e->g});
    assert_int_equal(loop_new(&e->lp), KAPI_OK);
    assert_int_equal(uclient_new(e->lp, &e->uc), KAPI_OK);
    e->o = origin_at(e->s.port);
    tloop_init(&e->tl, e->lp);
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
    tserver_stop(&e->s);
    sem_destroy(&e->g.go);
    sem_destroy(&e->g.closed);
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
    tserver_last(&e->s, got, sizeof got);
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
    tserver_last(&e->s, got, sizeof got);
    assert_string_equal(got, want);

    assert_int_equal(t->call.error, UCALL_OK);
    assert_int_equal(t->call.status, 200);
    snprintf(want, sizeof want, "len=13 hash=%016" PRIx64,
             tserver_fnv1a(TSERVER_FNV_INIT, body, 13));
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
    snprintf(want, sizeof want, "len=%u hash=%016" PRIx64, BIG,
             tserver_fnv1a(TSERVER_FNV_INIT, body, BIG));
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
    sem_post(&e->g.go);
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
pool_empty(void *data)
{
    env *e = data;
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
    sem_post(&e->g.go);
    tloop_run_until(&e->tl, pool_empty, e); /* the server's FIN closes the idle connection */
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
    tserver_unlisten(&e->s); /* stops listening: new connects are refused */

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
    sem_post(&e->g.go);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    assert_int_equal(sem_timedwait(&e->g.closed, &ts), 0);
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
    tserver_last(&e->s, got, sizeof got);
    assert_non_null(strstr(got, "POST /fixed HTTP/1.1\r\n"));
}

/* ---- failures ----------------------------------------------------------- */

static void
test_connect_refused(void **state)
{
    env *e = *state;
    uint16_t port = tserver_refused_port();
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
    b->lfd = tserver_listener(0, &b->port);
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
    uint64_t t0 = tserver_now_ms();
    start(e, t);
    run_until_done(e, 1);
    uint64_t took = tserver_now_ms() - t0;
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
    uint64_t t0 = tserver_now_ms();
    start(e, t);
    run_until_done(e, 1);
    uint64_t took = tserver_now_ms() - t0;
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
    tloop_run_for(&e->tl, 20);
    assert_int_equal(b->ndone, 0);
    assert_int_equal(stats(e, e->o).requests, 1);
    uclient_cancel(&b->call); /* a no-op now */
    uclient_cancel(&a->call); /* done ran: a no-op */
    assert_int_equal(stats(e, e->o).idle, 1);
}

static bool
server_got_request(void *data)
{
    env *e = data;
    return atomic_load(&e->s.requests) >= 1;
}

static bool
server_saw_close(void *data)
{
    env *e = data;
    return atomic_load(&e->s.early_closes) >= 1;
}

static bool
response_started(void *data)
{
    env *e = data;
    return http1_response_started(&e->t[0].call.resp);
}

/* Cancelled with the request sent and no answer yet, or with the response
 * half read: done never runs, the connection is closed, not pooled. */
static void
cancel_and_check(env *e, tloop_pred when)
{
    tcall *t = &e->t[0];
    t->call.timeout_ms = 1000;
    start(e, t);
    tloop_run_until(&e->tl, when, e);
    uclient_cancel(&t->call);
    assert_false(loop_timer_active(&t->call.timer));
    uclient_stats st = stats(e, e->o);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.idle, 0);
    tloop_run_until(&e->tl, server_saw_close, e);
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
    tloop_run_for(&e->tl, 40); /* past the connect deadline */
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
    tloop_run_until(&e->tl, server_got_request, e);
    start(e, b); /* queued behind a */
    uclient_free(e->uc);
    e->uc = NULL;
    tloop_run_for(&e->tl, 50); /* b's deadline passes: its timer must be gone */
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
