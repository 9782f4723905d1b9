/* uclient.c -- the upstream HTTP client of one worker loop (see uclient.h).
 *
 * Per origin (an array indexed by origin id, grown on demand) a pool holds
 * idle keep-alive connections (a LIFO: the most recently used goes first,
 * so the ones a backend may have timed out sink to the tail, where
 * trimming closes them), busy ones, and a FIFO of calls waiting for a slot
 * when max_connections are open.
 *
 * Each socket is added to the loop's epoll once, right after connect(),
 * with EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, and never modified: edge
 * triggering lets EPOLLOUT stay in the mask for the socket's whole life
 * (it fires on the connect and when a full send buffer drains, not while
 * the socket merely is writable), so a request on a pooled connection
 * costs no epoll_ctl at all, even when its body does not fit the send
 * buffer. The price of edges is reading until the socket is drained: a
 * read shorter than the buffer drains it, anything arriving later raises a
 * new edge; a peer FIN or RST already queued shows in the event mask
 * (EPOLLRDHUP/HUP/ERR), and then we read on to EOF or the error.
 *
 * Stale keep-alive connections: an idle connection that reports anything
 * (EOF, RST, stray bytes) is closed at once. A close that races with a new
 * request shows up as a failed write or as EOF/RST before the first
 * response byte on a reused connection; that request is then sent once
 * more on a fresh connection (always when the write failed, else only when
 * the call is idempotent), within the same try and deadline.
 *
 * Reads go through one 64 KiB buffer per client: http1.c copies what it
 * keeps, so no connection holds a read buffer. Each connection keeps the
 * buffer of its request head (grown, never shrunk) because a head may be
 * only partly written when the socket would block.
 *
 * done runs from exactly two places: the read path when a response is
 * complete, and the call's timer (its deadline, or a failure reported from
 * a 0 ms timer). Every failure is reported through that timer, so nothing
 * reached from uclient_start, or from moving a waiting call onto a
 * connection, ever runs done. Both places settle the connection and the
 * pool first and call done last, touching nothing afterwards: done may
 * start, cancel or release calls and free its own.
 *
 * It does not parse HTTP (http1.c), speak TLS (ucurl.c), resolve names
 * (origin.c) nor choose targets or retry on another one (proxy.c). */
#include "uclient.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ucurl.h"

#define READ_BUF_SIZE (64 * 1024)
#define MAX_RESPONSE_HEAD (64 * 1024) /* response header section (names + values) */
#define HEAD_BUF_MIN 512
#define POOLS_MIN 8
#define CONN_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
#define PEER_GONE (EPOLLRDHUP | EPOLLHUP | EPOLLERR)
#define NO_DEADLINE UINT64_MAX

typedef struct upool upool;

typedef struct uconn {
    loop_io io;
    upool *pool;
    ucall *call;       /* the call it carries; NULL when idle */
    dlist_node link;   /* in the pool's idle or busy list */
    uint64_t deadline; /* the carried call's try deadline (NO_DEADLINE: none) */
    char *head;        /* the request head */
    size_t head_cap, head_len;
    size_t out_off; /* bytes of head + body written */
    bool connecting;
    bool idle;
    bool reused; /* it carried a request before the current one */
} uconn;

struct upool {
    uclient *client;
    const origin *origin;
    dlist idle;                          /* of uconn: most recently used first */
    dlist busy;                          /* of uconn: connecting or carrying a call */
    dlist waiting;                       /* of ucall, through wait: oldest first */
    unsigned keepalive, max_connections; /* the latest call's */
    bool pumping;
    uclient_stats stats;
};

struct uclient {
    loop *lp;
    upool **pools; /* by origin id */
    unsigned npools;
    dlist deferred; /* of ucall, through wait: failures their 0 ms timer reports */
    char *rbuf;
    ucurl *curl; /* https calls, created on the first */
};

static _Thread_local uclient *current;

static void conn_io(loop_io *io, uint32_t events);
static void call_timer(loop_timer *t);
static void pool_pump(upool *p);
static bool conn_begin(uconn *cn);

/* ---- lists ------------------------------------------------------------- */

static uconn *
conn_of(dlist_node *n)
{
    return dlist_entry(n, uconn, link);
}

static ucall *
call_of(dlist_node *n)
{
    return dlist_entry(n, ucall, wait);
}

static void
wait_push(upool *p, ucall *call)
{
    dlist_push_back(&p->waiting, &call->wait);
    p->stats.waiting++;
}

static void
wait_remove(upool *p, ucall *call)
{
    dlist_remove(&p->waiting, &call->wait);
    p->stats.waiting--;
}

static ucall *
wait_pop(upool *p)
{
    ucall *call = call_of(p->waiting.first);
    if (call)
        wait_remove(p, call);
    return call;
}

/* ---- calls ------------------------------------------------------------- */

static upool *
pool_of(const ucall *call)
{
    return call->client->pools[call->origin->id];
}

static bool
is_head(kapi_str method)
{
    return method.len == 4 && memcmp(method.ptr, "HEAD", 4) == 0;
}

/* The try's deadline of a call not on a connection: its timer's. */
static uint64_t
call_deadline(const ucall *call)
{
    return loop_timer_active(&call->timer) ? call->timer.deadline_ms : NO_DEADLINE;
}

static void
call_arm(ucall *call, uint64_t deadline)
{
    loop *lp = call->client->lp;
    if (deadline == NO_DEADLINE) {
        loop_timer_stop(lp, &call->timer);
        return;
    }
    uint64_t now = loop_now_ms(lp);
    loop_timer_start(lp, &call->timer, deadline > now ? deadline - now : 0);
}

/* Ends CALL: done runs now. The caller touches nothing after this. */
static void
call_deliver(ucall *call)
{
    loop_timer_stop(call->client->lp, &call->timer);
    call->active = false;
    call->done(call);
}

/* Reports a failure from a 0 ms timer. CALL is on no connection nor queue. */
static void
call_fail_later(ucall *call, ucall_error error, const char *detail)
{
    uclient *c = call->client;
    call->error = error;
    call->detail = detail;
    dlist_push_back(&c->deferred, &call->wait);
    loop_timer_start(c->lp, &call->timer, 0);
}

/* The outcome of a connect (or socket) errno. */
static void
call_fail_errno(ucall *call, int err)
{
    switch (err) {
    case ECONNREFUSED: call_fail_later(call, UCALL_ECONNECT, "connection refused"); break;
    case EHOSTUNREACH: call_fail_later(call, UCALL_ECONNECT, "host unreachable"); break;
    case ENETUNREACH: call_fail_later(call, UCALL_ECONNECT, "network unreachable"); break;
    case ETIMEDOUT: call_fail_later(call, UCALL_ETIMEOUT, "connect timed out"); break;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM: call_fail_later(call, UCALL_ENOMEM, "out of file descriptors or memory"); break;
    default: call_fail_later(call, UCALL_ECONNECT, "connect failed"); break;
    }
}

/* ---- connections ------------------------------------------------------- */

static void
conn_attach_call(uconn *cn, ucall *call, uint64_t deadline)
{
    cn->call = call;
    cn->deadline = deadline;
    call->conn = cn;
}

static ucall *
conn_detach_call(uconn *cn)
{
    ucall *call = cn->call;
    cn->call = NULL;
    if (call)
        call->conn = NULL;
    return call;
}

/* Closes CN and frees it; its call, if any, must be detached already.
 * Starts no waiting call (pool_pump does). */
static void
conn_close(uconn *cn)
{
    upool *p = cn->pool;
    loop_io_remove(p->client->lp, &cn->io);
    close(cn->io.fd);
    if (cn->idle) {
        dlist_remove(&p->idle, &cn->link);
        p->stats.idle--;
    } else {
        dlist_remove(&p->busy, &cn->link);
    }
    p->stats.open--;
    free(cn->head);
    free(cn);
}

/* Opens a connection for CALL (connect in progress). Returns 0 or an errno;
 * on failure the call is untouched. */
static int
conn_open(upool *p, ucall *call, uint64_t deadline)
{
    uclient *c = p->client;
    const origin *o = p->origin;
    int fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)&o->addr, o->addrlen) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        return err;
    }
    uconn *cn = calloc(1, sizeof *cn);
    if (!cn) {
        close(fd);
        return ENOMEM;
    }
    cn->io = (loop_io){.fd = fd, .fn = conn_io, .data = cn};
    cn->pool = p;
    cn->connecting = true;
    /* Added after connect(): a socket not yet connecting polls as HUP. */
    if (loop_io_add(c->lp, &cn->io, CONN_EVENTS) != KAPI_OK) {
        close(fd);
        free(cn);
        return ENOMEM;
    }
    dlist_push_front(&p->busy, &cn->link);
    p->stats.opened++;
    p->stats.open++;
    conn_attach_call(cn, call, deadline);
    call->reused = false;
    if (call->connect_timeout_ms) {
        uint64_t by = loop_now_ms(c->lp) + call->connect_timeout_ms;
        if (by < deadline)
            call_arm(call, by);
    }
    return 0;
}

/* Puts CALL on a new connection, or reports why it cannot. */
static void
call_open(upool *p, ucall *call, uint64_t deadline)
{
    int err = conn_open(p, call, deadline);
    if (err)
        call_fail_errno(call, err);
}

/* Puts CALL on the idle connection CN and sends its request. */
static void
conn_take(uconn *cn, ucall *call)
{
    upool *p = cn->pool;
    dlist_remove(&p->idle, &cn->link);
    p->stats.idle--;
    cn->idle = false;
    dlist_push_front(&p->busy, &cn->link);
    cn->reused = true;
    call->reused = true;
    conn_attach_call(cn, call, call_deadline(call));
    conn_begin(cn);
}

/* CN finished a request and may carry another: it joins the idle pool,
 * whose least recently used connections beyond `keepalive` close (all of
 * them with keepalive 0, even with calls waiting: 0 means no reuse).
 * pool_pump then hands it to a waiting call. */
static void
conn_release(uconn *cn)
{
    upool *p = cn->pool;
    dlist_remove(&p->busy, &cn->link);
    cn->idle = true;
    dlist_push_front(&p->idle, &cn->link);
    p->stats.idle++;
    while (p->stats.idle > p->keepalive)
        conn_close(conn_of(p->idle.last)); /* the least recently used */
}

/* Hands waiting calls the idle connections and free slots. */
static void
pool_pump(upool *p)
{
    if (p->pumping)
        return; /* an outer pump's loop sees what changed */
    p->pumping = true;
    while (!dlist_empty(&p->waiting)) {
        if (!dlist_empty(&p->idle)) {
            conn_take(conn_of(p->idle.first), wait_pop(p));
        } else if (p->max_connections == 0 || p->stats.open < p->max_connections) {
            ucall *call = wait_pop(p);
            call_open(p, call, call_deadline(call));
        } else {
            break;
        }
    }
    p->pumping = false;
}

/* Fails the call on CN and closes CN. A reset on a reused connection before
 * any response byte is the stale keep-alive race: the request goes once
 * more on a fresh connection when the write failed or the call is
 * idempotent. Never runs done. */
static void
conn_fail(uconn *cn, ucall_error error, const char *detail, bool write_failed)
{
    upool *p = cn->pool;
    bool reused = cn->reused;
    uint64_t deadline = cn->deadline;
    ucall *call = conn_detach_call(cn);
    conn_close(cn);
    if (error == UCALL_ERESET && reused && call->attempts == 1 &&
        !http1_response_started(&call->resp) && (write_failed || call->idempotent)) {
        call->attempts++;
        call->sent = false;
        http1_response_free(&call->resp);
        http1_response_init(&call->resp, is_head(call->method), call->max_response_bytes,
                            MAX_RESPONSE_HEAD);
        call_arm(call, deadline); /* a connect deadline is relative to the new connect */
        call_open(p, call, deadline);
    } else {
        call_fail_later(call, error, detail);
    }
    pool_pump(p);
}

/* Writes what is left of the request. Returns 0 when all is written,
 * EAGAIN when the socket is full (the EPOLLOUT edge resumes), else the
 * errno of the failed write. */
static int
conn_send(uconn *cn)
{
    ucall *call = cn->call;
    size_t total = cn->head_len + call->body.len;
    if (cn->out_off == total)
        return 0;
    while (cn->out_off < total) {
        struct iovec iov[2];
        size_t n = 0;
        if (cn->out_off < cn->head_len) {
            iov[n++] = (struct iovec){cn->head + cn->out_off, cn->head_len - cn->out_off};
            if (call->body.len)
                iov[n++] = (struct iovec){(void *)call->body.ptr, call->body.len};
        } else {
            size_t off = cn->out_off - cn->head_len;
            iov[n++] = (struct iovec){(void *)(call->body.ptr + off), call->body.len - off};
        }
        /* sendmsg is writev with MSG_NOSIGNAL: a peer's close must not raise SIGPIPE. */
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
        ssize_t w = sendmsg(cn->io.fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? EAGAIN : errno;
        }
        cn->out_off += (size_t)w;
        call->sent = true;
    }
    cn->pool->stats.requests++;
    return 0;
}

/* Sends the request of CN's call. Returns false when that failed (CN is
 * then closed and freed, the call retried or failing). */
static bool
conn_begin(uconn *cn)
{
    ucall *call = cn->call;
    size_t need =
        http1_head_size(call->method, call->target, call->headers, call->nheaders, call->body.len);
    if (need > cn->head_cap) {
        size_t cap = need > HEAD_BUF_MIN ? need : HEAD_BUF_MIN;
        char *head = realloc(cn->head, cap);
        if (!head) {
            conn_fail(cn, UCALL_ENOMEM, "out of memory", false);
            return false;
        }
        cn->head = head;
        cn->head_cap = cap;
    }
    cn->head_len = http1_write_head(cn->head, call->method, call->target, call->headers,
                                    call->nheaders, call->body.len);
    cn->out_off = 0;
    int err = conn_send(cn);
    if (err && err != EAGAIN) {
        conn_fail(cn, UCALL_ERESET, "connection closed while sending the request", true);
        return false;
    }
    return true;
}

/* The response on CN is complete: the connection goes back to the pool
 * (or closes), waiting calls move on, then done runs. */
static void
conn_complete(uconn *cn, bool reusable)
{
    upool *p = cn->pool;
    ucall *call = conn_detach_call(cn);
    call->error = UCALL_OK;
    call->status = call->resp.status;
    call->resp_headers = call->resp.headers;
    call->nresp_headers = call->resp.nheaders;
    call->resp_body = http1_response_take_body(&call->resp, &call->resp_body_len);
    if (reusable)
        conn_release(cn);
    else
        conn_close(cn);
    pool_pump(p);
    call_deliver(call);
}

/* Whether nothing follows the response in the socket: after a read that
 * filled the buffer, more may be queued without a new edge. */
static bool
conn_drained(uconn *cn, ssize_t last_read)
{
    if (last_read < READ_BUF_SIZE)
        return true;
    char byte;
    ssize_t n = recv(cn->io.fd, &byte, 1, MSG_PEEK);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Reads what the socket holds into the call's response. */
static void
conn_read(uconn *cn, uint32_t events)
{
    char *buf = cn->pool->client->rbuf;
    http1_response *r = &cn->call->resp;
    bool peer_gone = events & PEER_GONE;
    for (;;) {
        ssize_t n = recv(cn->io.fd, buf, READ_BUF_SIZE, 0);
        if (n > 0) {
            size_t used = 0;
            switch (http1_response_feed(r, buf, (size_t)n, &used)) {
            case HTTP1_MORE:
                if (n < READ_BUF_SIZE && !peer_gone)
                    return; /* drained: the next bytes raise a new edge */
                continue;
            case HTTP1_DONE:
                conn_complete(cn, r->keep_alive && used == (size_t)n && !peer_gone &&
                                      cn->out_off == cn->head_len + cn->call->body.len &&
                                      conn_drained(cn, n));
                return;
            case HTTP1_TOOBIG: conn_fail(cn, UCALL_ETOOBIG, r->error, false); return;
            case HTTP1_ERROR: conn_fail(cn, UCALL_EPROTO, r->error, false); return;
            }
        }
        if (n == 0) {
            bool started = http1_response_started(r);
            switch (http1_response_eof(r)) {
            case HTTP1_DONE: conn_complete(cn, false); return;
            case HTTP1_TOOBIG: conn_fail(cn, UCALL_ETOOBIG, r->error, false); return;
            default:
                conn_fail(cn, UCALL_ERESET,
                          started ? "connection closed mid-response"
                                  : "connection closed before the response",
                          false);
                return;
            }
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        conn_fail(cn, UCALL_ERESET, "connection reset", false);
        return;
    }
}

/* The connect of CN finished (or failed). Returns false when CN is gone. */
static bool
conn_connected(uconn *cn, uint32_t events)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(cn->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0 && !(events & EPOLLOUT))
        err = ECONNRESET;
    if (err) {
        upool *p = cn->pool;
        ucall *call = conn_detach_call(cn);
        conn_close(cn);
        call_fail_errno(call, err);
        pool_pump(p);
        return false;
    }
    cn->connecting = false;
    call_arm(cn->call, cn->deadline); /* the connect deadline is over */
    return conn_begin(cn);
}

static void
conn_io(loop_io *io, uint32_t events)
{
    uconn *cn = io->data;
    if (cn->idle) {
        /* EOF, RST or stray bytes: this connection cannot carry a request. */
        if (events & (EPOLLIN | PEER_GONE)) {
            upool *p = cn->pool;
            conn_close(cn);
            pool_pump(p);
        }
        return;
    }
    if (cn->connecting) {
        if (!(events & (EPOLLOUT | PEER_GONE)))
            return;
        if (!conn_connected(cn, events))
            return;
    } else if (events & EPOLLOUT) {
        int err = conn_send(cn);
        if (err && err != EAGAIN) {
            conn_fail(cn, UCALL_ERESET, "connection closed while sending the request", true);
            return;
        }
    }
    if (events & (EPOLLIN | PEER_GONE))
        conn_read(cn, events);
}

/* ---- timers ------------------------------------------------------------ */

static void
call_timer(loop_timer *t)
{
    ucall *call = t->data;
    if (call->error != UCALL_OK) { /* a failure reported from a 0 ms timer */
        dlist_remove(&call->client->deferred, &call->wait);
        call_deliver(call);
        return;
    }
    call->error = UCALL_ETIMEOUT;
    uconn *cn = call->conn;
    if (cn) {
        upool *p = cn->pool;
        if (cn->connecting)
            call->detail = "connect timed out";
        else if (http1_response_started(&call->resp))
            call->detail = "timed out reading the response";
        else
            call->detail = "timed out waiting for the response";
        conn_detach_call(cn);
        conn_close(cn);
        pool_pump(p);
    } else {
        call->detail = "timed out waiting for a connection slot";
        wait_remove(pool_of(call), call);
    }
    call_deliver(call);
}

/* ---- the client -------------------------------------------------------- */

kapi_status
uclient_new(loop *lp, uclient **out)
{
    if (!lp || !out)
        return KAPI_EINVAL;
    *out = NULL;
    uclient *c = calloc(1, sizeof *c);
    if (!c)
        return KAPI_ENOMEM;
    c->lp = lp;
    c->rbuf = malloc(READ_BUF_SIZE);
    if (!c->rbuf) {
        free(c);
        return KAPI_ENOMEM;
    }
    *out = c;
    return KAPI_OK;
}

/* Forgets CALL without done: its timer stops, its partial response is freed. */
static void
call_drop(uclient *c, ucall *call)
{
    loop_timer_stop(c->lp, &call->timer);
    call->active = false;
    call->conn = NULL;
    call->wait = (dlist_node){NULL, NULL};
    http1_response_free(&call->resp);
}

void
uclient_free(uclient *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->npools; i++) {
        upool *p = c->pools[i];
        if (!p)
            continue;
        while (!dlist_empty(&p->waiting))
            call_drop(c, wait_pop(p));
        while (!dlist_empty(&p->busy)) {
            uconn *cn = conn_of(p->busy.first);
            ucall *call = conn_detach_call(cn);
            if (call)
                call_drop(c, call);
            conn_close(cn);
        }
        while (!dlist_empty(&p->idle))
            conn_close(conn_of(p->idle.first));
        free(p);
    }
    while (!dlist_empty(&c->deferred))
        call_drop(c, call_of(dlist_pop_front(&c->deferred)));
    ucurl_free(c->curl);
    if (current == c)
        current = NULL;
    free(c->pools);
    free(c->rbuf);
    free(c);
}

loop *
uclient_loop(const uclient *c)
{
    return c->lp;
}

static upool *
pool_get(uclient *c, const origin *o)
{
    if (o->id >= c->npools) {
        unsigned n = c->npools ? c->npools : POOLS_MIN;
        while (n <= o->id)
            n *= 2;
        upool **grown = realloc(c->pools, n * sizeof *grown);
        if (!grown)
            return NULL;
        memset(grown + c->npools, 0, (n - c->npools) * sizeof *grown);
        c->pools = grown;
        c->npools = n;
    }
    if (!c->pools[o->id]) {
        upool *p = calloc(1, sizeof *p);
        if (!p)
            return NULL;
        p->client = c;
        p->origin = o;
        c->pools[o->id] = p;
    }
    return c->pools[o->id];
}

static bool
call_valid(const ucall *call)
{
    return call->origin && call->done && call->method.ptr && call->method.len && call->target.ptr &&
           call->target.len && (call->headers || call->nheaders == 0) &&
           (call->body.ptr || call->body.len == 0);
}

kapi_status
uclient_start(uclient *c, ucall *call)
{
    if (!c || !call || !call_valid(call))
        return KAPI_EINVAL;
    call->error = UCALL_OK;
    call->sent = false;
    call->reused = false;
    call->status = 0;
    call->resp_headers = NULL;
    call->nresp_headers = 0;
    call->resp_body = NULL;
    call->resp_body_len = 0;
    call->detail = NULL;
    call->client = c;
    call->conn = NULL;
    call->wait = (dlist_node){NULL, NULL};
    call->curl = NULL;
    call->attempts = 1;
    call->active = false;
    loop_timer_init(&call->timer, call_timer, call);

    if (call->origin->tls) {
        if (!c->curl) {
            kapi_status st = ucurl_new(c->lp, &c->curl);
            if (st != KAPI_OK)
                return st;
        }
        return ucurl_start(c->curl, call);
    }

    upool *p = pool_get(c, call->origin);
    if (!p)
        return KAPI_ENOMEM;
    p->keepalive = call->keepalive;
    p->max_connections = call->max_connections;
    http1_response_init(&call->resp, is_head(call->method), call->max_response_bytes,
                        MAX_RESPONSE_HEAD);
    call->active = true;
    if (call->timeout_ms)
        loop_timer_start(c->lp, &call->timer, call->timeout_ms);

    if (!dlist_empty(&p->waiting)) {
        wait_push(p, call); /* behind the calls already waiting */
        pool_pump(p);
    } else if (!dlist_empty(&p->idle)) {
        conn_take(conn_of(p->idle.first), call);
    } else if (p->max_connections == 0 || p->stats.open < p->max_connections) {
        call_open(p, call, call_deadline(call));
    } else {
        wait_push(p, call);
    }
    return KAPI_OK;
}

void
uclient_cancel(ucall *call)
{
    if (!call)
        return;
    if (call->curl) {
        ucurl_cancel(call->client->curl, call);
        return;
    }
    if (!call->active)
        return;
    uclient *c = call->client;
    if (call->error != UCALL_OK) {
        dlist_remove(&c->deferred, &call->wait);
    } else if (call->conn) {
        /* Never reused: its response may be half read, or still coming. */
        uconn *cn = call->conn;
        upool *p = cn->pool;
        conn_detach_call(cn);
        conn_close(cn);
        pool_pump(p);
    } else {
        wait_remove(pool_of(call), call);
    }
    call_drop(c, call);
}

void
ucall_release(ucall *call)
{
    if (!call)
        return;
    if (call->curl || (call->origin && call->origin->tls)) {
        ucurl_release(call);
        return;
    }
    free(call->resp_body);
    call->resp_body = NULL;
    call->resp_body_len = 0;
    call->resp_headers = NULL;
    call->nresp_headers = 0;
    http1_response_free(&call->resp);
}

char *
ucall_take_body(ucall *call, size_t *len)
{
    char *body = call->resp_body;
    if (len)
        *len = call->resp_body_len;
    call->resp_body = NULL;
    call->resp_body_len = 0;
    return body;
}

void
uclient_stats_get(const uclient *c, const origin *o, uclient_stats *out)
{
    *out = (uclient_stats){0};
    if (c && o && o->id < c->npools && c->pools[o->id])
        *out = c->pools[o->id]->stats;
}

uclient *
uclient_current(void)
{
    return current;
}

void
uclient_set_current(uclient *c)
{
    current = c;
}
