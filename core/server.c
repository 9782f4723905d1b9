/* server.c -- the libmicrohttpd front end (see server.h).
 *
 * Each worker thread owns one loop (loop.c) and one MHD daemon per listener
 * in external epoll mode: the daemon's epoll fd sits in the loop, MHD_run
 * runs on readiness, and MHD_get_timeout feeds the loop's wait. A request
 * object (sreq) is created by the URI callback, filled on the first access
 * call, runs its chain on the last call, and is retired in the completion
 * callback after its on_log hooks and access-log line.
 *
 * libmicrohttpd 0.9.75 rules this file follows (DESIGN.md section 4):
 *  - a response is queued on a later access call, never the first, or MHD
 *    closes the connection (only refusals that must close do so on purpose);
 *  - a paused request's connection is not suspended: MHD leaves a request
 *    whose body is in and which has no response alone, so the connection
 *    simply waits (its idle timeout off, the pause timer owns the
 *    deadline), and the resume queues the response from outside the access
 *    handler, then runs MHD again before sleeping. Suspend + resume would
 *    cost two epoll_ctl and a wasted recv per paused request (about 15%
 *    of a proxied request's CPU, measured with tests/bench/proxy.sh);
 *  - the connection memory pool bounds the header section: it is sized from
 *    max_header_bytes, and kapi's own 431 applies below it;
 * It does not route (router.c), run hooks (chain.c) or build generations. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chain.h"
#include "dlist.h"
#include "exchange.h"
#include "generation.h"
#include "hcheck.h"
#include "jsonw.h"
#include "log.h"
#include "loop.h"
#include "path.h"
#include "problem.h"
#include "request.h"
#include "rng.h"
#include "uclient.h"

typedef struct worker worker;

/* One MHD daemon of a worker, for one listener. */
typedef struct daemon_io {
    struct MHD_Daemon *d;
    loop_io io;
} daemon_io;

struct worker {
    server *srv;
    size_t index;
    loop *lp;
    pthread_t thread;
    bool started;
    daemon_io *daemons;
    loop_prepare prepare;
    bool need_run;               /* a paused request's response was queued: run MHD */
    loop_task quiesce_task;      /* server_drain: stop accepting */
    loop_task refresh_task;      /* server_refresh: a new generation was published */
    atomic_bool refresh_pending; /* refresh_task is queued (a task is queued once at a time) */
    generation *gen;             /* this worker's reference to the current generation */
    uint64_t gen_seq;
    struct sreq *free_list; /* retired request objects for reuse */
    dlist paused;           /* of sreq: waiting for a resume or their pause deadline */
    dlist conns;            /* of conn_info: open connections (for draining) */
    loop_task abort_task;   /* server_abort_paused */
    unsigned nfree;
    uint64_t rng[2]; /* xorshift128+ for request ids */
    uclient *uc;     /* this loop's upstream connections */
    hcheck *checks;  /* worker 0: active health checks of its generation */
};

struct server {
    worker *workers;
    size_t nworkers;
    int *fds; /* nworkers * nlisteners listen sockets */
    size_t nlisteners;
    unsigned *ports;
    unsigned max_connections;
    size_t pool_bytes;
    unsigned connection_timeout_s;
    atomic_uint connections;
    atomic_uint inflight;
    atomic_bool draining; /* answers carry Connection: close, idle conns are cut */
    atomic_uint tokens;   /* pause tokens not yet resumed, all workers */
    atomic_uint posting;  /* resume() calls inside loop_post right now */
};

enum sreq_state {
    ST_NEW = 0, /* created by the URI callback */
    ST_BODY,    /* route found, reading the body */
    ST_REFUSED, /* the gateway answers itself (404, 413…): no chain */
    ST_RUN,     /* running the chain */
    ST_PAUSED,  /* waiting (not suspended) until resume or the pause deadline */
    ST_SENT,    /* response queued */
};

/* MHD stamps activity and checks deadlines on CLOCK_MONOTONIC_COARSE (one
 * jiffy, 4 ms at HZ=250) and cuts only strictly after the deadline: waking
 * a little late saves a wake-up that would find nothing due. */
enum { MHD_DEADLINE_SLACK_MS = 5 };

enum { SREQ_ARENA = 4096, FREE_LIST_MAX = 256, BODY_DISCARD_MAX = 1 << 20 };

typedef struct sreq {
    kapi_req r; /* first: a kapi_req * is an sreq * */
    worker *w;
    struct MHD_Connection *conn;
    generation *gen;
    const gen_route *route;
    enum sreq_state state;
    bool chain_started;
    bool finished;   /* completed, kept alive until its tokens are resumed */
    unsigned tokens; /* pause tokens not yet resumed */
    bool close;      /* answer with Connection: close */
    char *body;      /* malloc'd request body */
    size_t body_len, body_cap, discarded;
    size_t max_body;
    kapi_str raw_path; /* as sent, before normalization */
    /* Read while the headers are copied (first value of each): */
    kapi_str host_header, request_id_header, content_length_header;
    size_t header_bytes; /* names + values + ": " + CRLF */
    loop_timer pause_timer;
    uint32_t pause_ms;
    struct timespec start;
    struct sreq *next_free;
    dlist_node paused_link; /* in worker->paused while ST_PAUSED */
    char arena_buf[SREQ_ARENA];
} sreq;

struct kapi_token {
    loop_task task;
    worker *w;
    sreq *s;             /* loop thread only; the request outlives its tokens */
    bool waiting;        /* loop thread only: the request still waits on it */
    atomic_bool resumed; /* resume() was called */
};

/* A server whose workers were kept at exit for late resume() calls. */
static server *kept_for_late_resumes;

/* ---- small helpers ---- */

static kapi_str
view(const char *s)
{
    return s ? (kapi_str){s, strlen(s)} : (kapi_str){"", 0};
}

/* A client-sent X-Request-Id is kept when it is 1..128 safe characters. */
static bool
request_id_ok(kapi_str id)
{
    if (id.len == 0 || id.len > 128)
        return false;
    for (size_t i = 0; i < id.len; i++) {
        char c = id.ptr[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || c == '_' || c == '.' || c == ':';
        if (!ok)
            return false;
    }
    return true;
}

/* The client's X-Request-Id replaces the generated one when well-formed. */
static void
adopt_client_request_id(sreq *s)
{
    if (s->request_id_header.ptr && request_id_ok(s->request_id_header))
        s->r.id = s->request_id_header;
}

/* A fresh id, given before the headers are read so that even a request
 * MHD refuses on its own is logged with one. */
static void
new_request_id(sreq *s)
{
    kapi_req *r = &s->r;
    static const char hex[] = "0123456789abcdef";
    char *id = arena_alloc(&r->arena, 33);
    if (!id) {
        r->id = KAPI_STR("-");
        return;
    }
    for (int half = 0; half < 2; half++) {
        uint64_t v = rng_next(s->w->rng);
        for (int i = 0; i < 16; i++, v >>= 4)
            id[half * 16 + i] = hex[v & 15];
    }
    r->id = (kapi_str){id, 32};
}

/* The Host header, lower-cased and without its port. */
static void
assign_host(sreq *s)
{
    kapi_str h = s->host_header;
    if (!h.ptr || h.len == 0)
        return;
    size_t end = h.len;
    const char *colon = memrchr(h.ptr, ':', h.len);
    const char *bracket = memrchr(h.ptr, ']', h.len);
    if (colon && (!bracket || colon > bracket))
        end = (size_t)(colon - h.ptr);
    char *low = arena_alloc(&s->r.arena, end + 1);
    if (!low)
        return;
    for (size_t i = 0; i < end; i++)
        low[i] = (char)((h.ptr[i] >= 'A' && h.ptr[i] <= 'Z') ? h.ptr[i] + 32 : h.ptr[i]);
    s->r.host = (kapi_str){low, end};
}

/* Per-connection state, kept in MHD's socket context from accept to close:
 * the client address is formatted once per connection, not per request. */
typedef struct conn_info {
    char client[INET6_ADDRSTRLEN];
    struct MHD_Connection *conn;
    dlist_node link; /* in the worker's conns */
    bool busy;       /* a request is in progress on it */
} conn_info;

static void
format_client(struct MHD_Connection *conn, conn_info *ci)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    ci->client[0] = '\0';
    if (!info || !info->client_addr)
        return;
    const struct sockaddr *sa = info->client_addr;
    const void *addr = sa->sa_family == AF_INET6
                           ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                           : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family, addr, ci->client, sizeof(ci->client)))
        ci->client[0] = '\0';
}

static void
assign_client(sreq *s)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_info *ci = info ? info->socket_context : NULL;
    if (ci) {
        s->r.client_addr = view(ci->client);
        ci->busy = true;
    }
}

/* While draining, an idle keep-alive connection is cut after a second
 * instead of its usual timeout (MHD has no "close when idle" call). */
static void
close_when_idle(struct MHD_Connection *conn)
{
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 1u);
}

/* The request on CONN is over; while draining, its connection is cut once
 * idle (an answer queued before the drain did not say Connection: close). */
static void
connection_idle(struct MHD_Connection *conn, bool draining)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_info *ci = info ? info->socket_context : NULL;
    if (ci)
        ci->busy = false;
    if (draining)
        close_when_idle(conn);
}

/* ---- generations ---- */

/* The worker's generation, refreshed when a new one was published. */
static generation *
worker_generation(worker *w)
{
    uint64_t seq = generation_current_seq();
    if (seq != w->gen_seq || !w->gen) {
        generation *g = generation_current();
        /* Worker 0 runs the active health checks of its generation: they
         * stop before it lets go of the generation they point into. */
        hcheck_stop(w->checks);
        w->checks = NULL;
        generation_release(w->gen);
        w->gen = g;
        w->gen_seq = seq;
        if (w->index == 0 && g && w->uc &&
            hcheck_start(g->upstreams, g->nupstreams, &w->checks) != KAPI_OK)
            log_msg(KAPI_LOG_ERROR, "health checks of generation %llu could not start",
                    (unsigned long long)g->id);
    }
    return w->gen;
}

/* ---- request objects ---- */

static sreq *
sreq_new(worker *w, struct MHD_Connection *conn)
{
    sreq *s = w->free_list;
    if (s) {
        w->free_list = s->next_free;
        w->nfree--;
    } else if (!(s = malloc(sizeof(*s)))) {
        return NULL;
    }
    req_init(&s->r, s->arena_buf, sizeof(s->arena_buf));
    s->r.owner = s;
    s->w = w;
    s->conn = conn;
    s->route = NULL;
    s->state = ST_NEW;
    s->chain_started = false;
    s->host_header = s->request_id_header = s->content_length_header = (kapi_str){NULL, 0};
    s->header_bytes = 0;
    s->finished = false;
    s->tokens = 0;
    s->close = false;
    s->body = NULL;
    s->body_len = s->body_cap = s->discarded = 0;
    s->pause_ms = 0;
    s->next_free = NULL;
    s->paused_link = (dlist_node){NULL, NULL};
    loop_timer_init(&s->pause_timer, NULL, s);
    clock_gettime(CLOCK_MONOTONIC, &s->start);
    generation *g = worker_generation(w);
    s->gen = g ? generation_acquire(g) : NULL;
    atomic_fetch_add_explicit(&w->srv->inflight, 1, memory_order_relaxed);
    return s;
}

static void
sreq_free(sreq *s)
{
    worker *w = s->w;
    generation_release(s->gen);
    free(s->body);
    req_release(&s->r);
    if (w->nfree < FREE_LIST_MAX) {
        s->next_free = w->free_list;
        w->free_list = s;
        w->nfree++;
    } else {
        free(s);
    }
}

/* The gateway answers itself with STATUS; CLOSE drops the connection after. */
static void
refuse(sreq *s, int status, const char *detail, bool close_after)
{
    problem_respond(&s->r, status, detail);
    s->state = ST_REFUSED;
    s->close = s->close || close_after;
}

/* ---- the first access call: headers are in ---- */

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_len,
               const char *value, size_t value_len)
{
    (void)kind;
    sreq *s = cls;
    /* Copied: MHD reuses its memory when the request completes, but a paused
     * request's views must outlive that until its token is resumed. */
    kapi_str name = {key, key_len}, val = {value ? value : "", value ? value_len : 0};
    header_list *l = &s->r.headers;
    if (req_headers_add(&s->r, l, name, val) != KAPI_OK)
        return MHD_NO;
    const kapi_header *h = &l->v[l->n - 1];
    s->header_bytes += key_len + val.len + 4;
    kapi_str *seen = req_str_ieq(name, KAPI_STR("host"))             ? &s->host_header
                     : req_str_ieq(name, KAPI_STR("x-request-id"))   ? &s->request_id_header
                     : req_str_ieq(name, KAPI_STR("content-length")) ? &s->content_length_header
                                                                     : NULL;
    if (seen && !seen->ptr)
        *seen = h->value;
    return MHD_YES;
}

/* A path parameter's value as its own NUL-terminated copy, with "%2F" and
 * "%25" (kept encoded by path_normalize) decoded: a parameter is one
 * segment, so its value may hold '/'. */
static kapi_str
param_value(kapi_req *r, kapi_str v)
{
    char *d = arena_alloc(&r->arena, v.len + 1); /* always a copy: views end in NUL */
    if (!d)
        return v;
    size_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (i + 2 < v.len && v.ptr[i] == '%') {
            d[n++] = v.ptr[i + 2] == 'F' ? '/' : '%';
            i += 2;
        } else {
            d[n++] = v.ptr[i];
        }
    }
    return (kapi_str){d, n};
}

/* Normalizes the path, matches a route and sets path, params and chain. */
static void
route_request(sreq *s)
{
    kapi_req *r = &s->r;
    char *norm = arena_alloc(&r->arena, s->raw_path.len + 2);
    size_t len = 0;
    if (!norm || path_normalize(s->raw_path.ptr, s->raw_path.len, norm, &len) != KAPI_OK) {
        refuse(s, 400, "the request path is malformed", false);
        return;
    }
    if (!s->gen) {
        refuse(s, 503, "no configuration is loaded", false);
        return;
    }
    struct router_match m;
    router_result rr = router_match(s->gen->router, r->method, r->host, (kapi_str){norm, len}, &m);
    if (rr == ROUTER_NO_ROUTE) {
        refuse(s, 404, "no route matches the request", false);
        return;
    }
    if (rr == ROUTER_NO_METHOD) {
        refuse(s, 405, "the route does not allow this method", false);
        req_headers_add(r, &r->resp_headers, KAPI_STR("Allow"), view(m.allow));
        return;
    }
    s->route = &s->gen->routes[m.route];
    r->nparams = m.nparams < REQ_MAX_PARAMS ? m.nparams : REQ_MAX_PARAMS;
    for (size_t i = 0; i < r->nparams; i++) {
        r->param_names[i] = m.param_names[i];
        r->param_values[i] = param_value(r, m.param_values[i]);
    }
    r->path = (kapi_str){norm, len};
    if (s->route->strip_prefix && m.prefix_len > 0) {
        r->path = (kapi_str){norm + m.prefix_len, len - m.prefix_len};
        if (r->path.len == 0 || r->path.ptr[0] != '/') {
            /* "/api" stripped from "/api" is "/"; the byte before the rest
             * is the prefix's own last byte, so write a fresh "/" view. */
            char *p = arena_alloc(&r->arena, r->path.len + 2);
            if (p) {
                p[0] = '/';
                memcpy(p + 1, r->path.ptr, r->path.len);
                r->path = (kapi_str){p, r->path.len + 1};
            }
        }
    }
    if (chain_start(&s->route->chain, r) != KAPI_OK) {
        refuse(s, 500, "out of memory", true);
        return;
    }
    s->chain_started = true;
    s->state = ST_BODY;
}

static void
begin_request(sreq *s, const char *method)
{
    kapi_req *r = &s->r;
    const config_limits *lim = s->gen ? &s->gen->cfg->limits : NULL;
    req_strdup(r, method, strlen(method), &r->method); /* outlives MHD's copy */
    MHD_get_connection_values_n(s->conn, MHD_HEADER_KIND, collect_header, s);
    adopt_client_request_id(s);
    assign_host(s);
    s->max_body = lim ? lim->max_body_bytes : 0;

    server *srv = s->w->srv;
    if (atomic_load_explicit(&srv->connections, memory_order_relaxed) > srv->max_connections) {
        refuse(s, 503, "too many connections", true);
        return;
    }
    if (lim && s->header_bytes > lim->max_header_bytes) {
        refuse(s, 431, "the request header section is too large", true);
        return;
    }
    route_request(s);
    if (s->state != ST_BODY)
        return;
    if (s->content_length_header.ptr &&
        strtoull(s->content_length_header.ptr, NULL, 10) > s->max_body)
        refuse(s, 413, "the request body is too large", true);
}

/* ---- body ---- */

static bool
append_body(sreq *s, const char *data, size_t len)
{
    if (s->state != ST_BODY) {
        s->discarded += len;
        return s->discarded <= BODY_DISCARD_MAX;
    }
    if (s->body_len + len > s->max_body) {
        refuse(s, 413, "the request body is too large", true);
        s->discarded = len;
        return true;
    }
    if (s->body_len + len > s->body_cap) {
        size_t cap = s->body_cap ? s->body_cap : 4096;
        while (cap < s->body_len + len)
            cap *= 2;
        char *b = realloc(s->body, cap + 1);
        if (!b) {
            refuse(s, 500, "out of memory", true);
            return true;
        }
        s->body = b;
        s->body_cap = cap;
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    s->body[s->body_len] = '\0';
    return true;
}

/* ---- responses ---- */

/* Headers MHD owns: a module cannot set them (Content-Length follows the
 * body; framing and connection management are the server's). */
static bool
mhd_owned(kapi_str name)
{
    return req_str_ieq(name, KAPI_STR("content-length")) ||
           req_str_ieq(name, KAPI_STR("transfer-encoding")) ||
           req_str_ieq(name, KAPI_STR("connection")) || req_str_ieq(name, KAPI_STR("x-request-id"));
}

/* Never called: MHD sends no body for HEAD. */
static ssize_t
no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls, (void)pos, (void)buf, (void)max;
    return MHD_CONTENT_READER_END_OF_STREAM;
}

enum { HEAD_FROM_BODY = -1, HEAD_CHUNKED = -2 };

/* What a body-less answer to HEAD announces: the Content-Length the
 * response carries (a proxied upstream's, which describes the GET's body),
 * HEAD_CHUNKED when it carries Transfer-Encoding instead (the GET would be
 * chunked), else HEAD_FROM_BODY: the (empty) body decides. */
static long long
head_length(const kapi_req *r)
{
    kapi_str v;
    if (r->resp_body.len || !req_str_ieq(r->method, KAPI_STR("HEAD")))
        return HEAD_FROM_BODY;
    if (req_headers_get(&r->resp_headers, KAPI_STR("content-length"), 0, &v) != KAPI_OK)
        return req_headers_get(&r->resp_headers, KAPI_STR("transfer-encoding"), 0, &v) == KAPI_OK
                   ? HEAD_CHUNKED
                   : HEAD_FROM_BODY;
    if (v.len == 0 || v.len > 18)
        return HEAD_FROM_BODY;
    long long n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return HEAD_FROM_BODY;
        n = n * 10 + (v.ptr[i] - '0');
    }
    return n;
}

static enum MHD_Result
send_response(sreq *s)
{
    kapi_req *r = &s->r;
    long long head_len = head_length(r);
    struct MHD_Response *resp =
        head_len > 0 || head_len == HEAD_CHUNKED
            ? MHD_create_response_from_callback(
                  head_len > 0 ? (uint64_t)head_len : MHD_SIZE_UNKNOWN, 4096, no_body, NULL, NULL)
            : MHD_create_response_from_buffer(r->resp_body.len,
                                              (void *)(r->resp_body.ptr ? r->resp_body.ptr : ""),
                                              MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    for (size_t i = 0; i < r->resp_headers.n; i++) {
        const kapi_header *h = &r->resp_headers.v[i];
        if (!mhd_owned(h->name) &&
            MHD_add_response_header(resp, h->name.ptr, h->value.ptr) != MHD_YES)
            log_tagged(KAPI_LOG_WARN, "mhd", r->id.ptr, "response header %s dropped (empty value?)",
                       h->name.ptr);
    }
    MHD_add_response_header(resp, "X-Request-Id", r->id.ptr);
    if (s->close || atomic_load_explicit(&s->w->srv->draining, memory_order_relaxed))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    s->state = ST_SENT; /* before queueing: S is not touched after it */
    enum MHD_Result ret = MHD_queue_response(s->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- pause and resume ---- */

/* The request no longer waits for its token: the resume, whenever it
 * comes, only releases the request (which stays allocated until then, so a
 * module thread may still write into its context). */
static void
detach_token(sreq *s)
{
    if (s->r.token) {
        s->r.token->waiting = false;
        s->r.token = NULL;
    }
}

/* Takes S off the worker's list of paused requests and stops its timer. */
static void
unpause(sreq *s)
{
    if (dlist_linked(&s->w->paused, &s->paused_link))
        dlist_remove(&s->w->paused, &s->paused_link);
    loop_timer_stop(s->w->lp, &s->pause_timer);
}

static enum MHD_Result run_chain(sreq *s);

/* Continues a paused request now, outside MHD's access handler: the chain
 * runs on, and its response is queued at once (MHD writes it when the
 * worker runs it next, before sleeping). */
static void
wake(sreq *s)
{
    unpause(s);
    s->state = ST_RUN;
    s->w->need_run = true;
    MHD_set_connection_option(s->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              s->w->srv->connection_timeout_s);
    if (run_chain(s) != MHD_YES)
        log_tagged(KAPI_LOG_WARN, "mhd", s->r.id.ptr, "the response could not be queued");
}

static void
on_pause_timeout(loop_timer *t)
{
    sreq *s = t->data;
    log_tagged(KAPI_LOG_WARN, s->r.current_module, s->r.id.ptr, "pause deadline passed");
    detach_token(s);
    chain_abort(&s->r, 504, "the request timed out waiting for a gateway module");
    wake(s);
}

static void
on_resume_task(loop_task *task)
{
    kapi_token *tok = task->data;
    sreq *s = tok->s;
    s->tokens--;
    atomic_fetch_sub_explicit(&s->w->srv->tokens, 1, memory_order_relaxed);
    if (tok->waiting) {
        s->r.token = NULL;
        wake(s);
    } else if (s->finished && s->tokens == 0) {
        sreq_free(s);
    }
    free(tok);
}

kapi_status
server_pause(kapi_req *r, uint32_t timeout_ms, kapi_token **out)
{
    if (!r || !out)
        return KAPI_EINVAL;
    if (r->phase != REQ_PHASE_ACCESS && r->phase != REQ_PHASE_HANDLE)
        return KAPI_EPHASE;
    if (r->token)
        return KAPI_ESTATE;
    sreq *s = r->owner;
    kapi_token *tok = calloc(1, sizeof(*tok));
    if (!tok)
        return KAPI_ENOMEM;
    tok->w = s->w;
    tok->s = s;
    tok->waiting = true;
    atomic_init(&tok->resumed, false);
    s->tokens++;
    atomic_fetch_add_explicit(&s->w->srv->tokens, 1, memory_order_relaxed);
    tok->task.fn = on_resume_task;
    tok->task.data = tok;
    r->token = tok;
    s->pause_ms = timeout_ms;
    *out = tok;
    return KAPI_OK;
}

struct generation *
server_req_generation(kapi_req *r)
{
    return ((sreq *)r->owner)->gen;
}

void
server_req_hold(kapi_req *r)
{
    ((sreq *)r->owner)->tokens++;
}

void
server_req_unhold(kapi_req *r)
{
    sreq *s = r->owner;
    if (--s->tokens == 0 && s->finished)
        sreq_free(s);
}

kapi_status
server_resume(kapi_token *tok)
{
    if (!tok)
        return KAPI_EINVAL;
    if (atomic_exchange(&tok->resumed, true))
        return KAPI_ESTATE; /* a second resume of one token: a module bug */
    server *srv = tok->w->srv;
    /* loop_post may still touch the loop after the task ran on it: the
     * count keeps server_free from freeing the loop under this call */
    atomic_fetch_add(&srv->posting, 1);
    loop_post(tok->w->lp, &tok->task);
    atomic_fetch_sub(&srv->posting, 1);
    return KAPI_OK;
}

/* ---- MHD callbacks ---- */

static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    worker *w = cls;
    sreq *s = sreq_new(w, conn);
    if (!s)
        return NULL;
    /* MHD unescapes the URI in place later: keep the raw bytes now. */
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    if (req_strdup(&s->r, uri, plen, &s->raw_path) != KAPI_OK ||
        req_strdup(&s->r, q ? q + 1 : "", q ? strlen(q + 1) : 0, &s->r.query) != KAPI_OK) {
        atomic_fetch_sub_explicit(&w->srv->inflight, 1, memory_order_relaxed);
        sreq_free(s);
        return NULL;
    }
    new_request_id(s);
    assign_client(s);
    return s;
}

static enum MHD_Result
run_chain(sreq *s)
{
    chain_result cr = chain_run(&s->route->chain, &s->r);
    if (cr == CHAIN_PAUSED) {
        s->state = ST_PAUSED;
        uint32_t ms = s->pause_ms ? s->pause_ms : s->gen->cfg->limits.pause_timeout_ms;
        s->pause_timer.fn = on_pause_timeout;
        loop_timer_start(s->w->lp, &s->pause_timer, ms);
        /* Not suspended (see the top of this file): MHD must not cut it
         * meanwhile, the pause timer owns the deadline. */
        MHD_set_connection_option(s->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
        dlist_push_front(&s->w->paused, &s->paused_link);
        return MHD_YES;
    }
    detach_token(s); /* a hook that called pause() but did not pause */
    return send_response(s);
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)url;
    (void)version;
    (void)conn;
    sreq *s = *con_cls;
    if (!s)
        return MHD_NO; /* out of memory in on_uri: drop the connection */
    switch (s->state) {
    case ST_NEW:
        begin_request(s, method);
        /* Refusals that close (413 by Content-Length, 431, 503) go out now,
         * before MHD reads a body nobody wants; the rest on the next call. */
        if (s->state == ST_REFUSED && s->close)
            return send_response(s);
        return MHD_YES;
    case ST_BODY:
    case ST_REFUSED:
        if (*upload_data_size) {
            bool keep = append_body(s, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return keep ? MHD_YES : MHD_NO;
        }
        if (s->state == ST_REFUSED)
            return send_response(s);
        s->r.body = (kapi_str){s->body ? s->body : "", s->body_len};
        s->state = ST_RUN;
        return run_chain(s);
    case ST_RUN: return run_chain(s);
    case ST_PAUSED:
    case ST_SENT:
        *upload_data_size = 0; /* a body after an early answer: discarded */
        break;
    }
    return MHD_YES;
}

/* Appends "PREFIX+VALUE" as a JSON string, or null when VALUE is NULL. */
static void
json_string_or_null(char *line, size_t cap, size_t *n, const char *prefix, const char *value)
{
    if (!value) {
        jsonw_printf(line, cap, n, "null");
        return;
    }
    jsonw_printf(line, cap, n, "\"%s", prefix);
    jsonw_escape(line, *n + 256 < cap ? *n + 256 : cap, n, value, strlen(value));
    jsonw_printf(line, cap, n, "\"");
}

static void
write_access_log(sreq *s, enum MHD_RequestTerminationCode toe)
{
    if (!log_access_enabled())
        return;
    kapi_req *r = &s->r;
    struct timespec now, wall;
    clock_gettime(CLOCK_MONOTONIC, &now);
    clock_gettime(CLOCK_REALTIME, &wall);
    long long us =
        (now.tv_sec - s->start.tv_sec) * 1000000LL + (now.tv_nsec - s->start.tv_nsec) / 1000;
    struct tm tm;
    gmtime_r(&wall.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

    /* Each client-controlled field gets a bounded share of the line, so the
     * fields after it always fit and the line stays one JSON object. */
    char line[8192];
    size_t n = 0, cap = sizeof(line) - 2;
    kapi_str path = s->raw_path;
    jsonw_printf(line, cap, &n, "{\"time\":\"%s.%06ldZ\",\"request_id\":\"", ts,
                 wall.tv_nsec / 1000);
    jsonw_escape(line, cap, &n, r->id.ptr ? r->id.ptr : "", r->id.len);
    jsonw_printf(line, cap, &n, "\",\"client\":\"%s\",\"method\":\"",
                 r->client_addr.ptr ? r->client_addr.ptr : "");
    jsonw_escape(line, n + 128, &n, r->method.ptr ? r->method.ptr : "", r->method.len);
    jsonw_printf(line, cap, &n, "\",\"path\":\"");
    jsonw_escape(line, cap - 1024, &n, path.ptr ? path.ptr : "", path.len);
    jsonw_printf(line, cap, &n, "\",\"route\":");
    json_string_or_null(line, cap, &n, "", s->route ? s->route->name : NULL);
    bool sent = s->state == ST_SENT;
    bool head = req_str_ieq(r->method, KAPI_STR("HEAD")); /* MHD sends no body */
    jsonw_printf(line, cap, &n, ",\"status\":%d,\"bytes\":%zu,\"duration_us\":%lld,\"target\":",
                 sent ? r->status : 0, sent && !head ? r->resp_body.len : 0, us);
    json_string_or_null(line, cap, &n, "", s->route ? s->route->target_label : NULL);
    if (r->upstream_tries) {
        jsonw_printf(line, cap, &n, ",\"upstream\":{\"url\":");
        json_string_or_null(line, cap, &n, "", r->upstream_url);
        jsonw_printf(line, cap, &n, ",\"status\":%d,\"tries\":%u,\"ms\":%u}", r->upstream_status,
                     r->upstream_tries, r->upstream_ms);
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        jsonw_printf(line, cap, &n, ",\"aborted\":true");
    jsonw_printf(line, cap, &n, "}");
    line[n++] = '\n';
    log_access_write(line, n);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    sreq *s = *con_cls;
    if (!s)
        return;
    *con_cls = NULL;
    server *srv = s->w->srv;
    unpause(s); /* a paused request whose client went away */
    detach_token(s);
    if (s->chain_started)
        chain_log(&s->route->chain, &s->r);
    write_access_log(s, toe);
    atomic_fetch_sub_explicit(&srv->inflight, 1, memory_order_relaxed);
    connection_idle(conn, atomic_load_explicit(&srv->draining, memory_order_relaxed));
    if (s->tokens) {
        s->finished = true; /* freed by the last outstanding resume */
        return;
    }
    sreq_free(s);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode code)
{
    worker *w = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add_explicit(&w->srv->connections, 1, memory_order_relaxed);
        conn_info *ci = calloc(1, sizeof(*ci));
        if (ci) {
            format_client(conn, ci);
            ci->conn = conn;
            dlist_push_front(&w->conns, &ci->link);
            if (atomic_load_explicit(&w->srv->draining, memory_order_relaxed))
                close_when_idle(conn);
        }
        *socket_context = ci;
    } else {
        atomic_fetch_sub_explicit(&w->srv->connections, 1, memory_order_relaxed);
        conn_info *ci = *socket_context;
        if (ci) {
            dlist_remove(&w->conns, &ci->link);
            free(ci);
        }
        *socket_context = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) LOG_PRINTF(2, 0);

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_tagged(KAPI_LOG_WARN, "mhd", NULL, "%s", msg);
}

/* ---- the worker loop ---- */

static void
on_daemon_ready(loop_io *io, uint32_t events)
{
    (void)events;
    daemon_io *dio = io->data;
    MHD_run(dio->d);
}

static void
quiesce_daemons(worker *w)
{
    for (size_t i = 0; i < w->srv->nlisteners; i++) {
        daemon_io *dio = &w->daemons[i];
        MHD_socket fd = MHD_quiesce_daemon(dio->d);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
}

/* Drops the worker's reference to a retired generation now, not at its next
 * request: an idle worker must not keep old modules loaded. */
static void
on_refresh_task(loop_task *task)
{
    worker *w = task->data;
    atomic_store(&w->refresh_pending, false);
    worker_generation(w);
}

static void
on_quiesce_task(loop_task *task)
{
    worker *w = task->data;
    quiesce_daemons(w);
    for (dlist_node *n = w->conns.first; n; n = n->next) {
        conn_info *ci = dlist_entry(n, conn_info, link);
        if (!ci->busy) /* a request in progress finishes; connection_idle cuts it after */
            close_when_idle(ci->conn);
    }
}

/* The drain deadline passed: every request still paused is answered 503
 * now rather than dropped when the daemon stops. */
static void
on_abort_task(loop_task *task)
{
    worker *w = task->data;
    exchange_abort_all();
    while (!dlist_empty(&w->paused)) {
        sreq *s = dlist_entry(w->paused.first, sreq, paused_link);
        detach_token(s);
        chain_abort(&s->r, 503, "the gateway is shutting down");
        wake(s);
    }
}

static void
run_daemons(worker *w)
{
    for (size_t i = 0; i < w->srv->nlisteners; i++)
        MHD_run(w->daemons[i].d);
}

/* The soonest MHD wants to run again, in ms; -1 for no deadline. */
static long long
daemons_timeout(worker *w)
{
    long long timeout = -1;
    for (size_t i = 0; i < w->srv->nlisteners; i++) {
        MHD_UNSIGNED_LONG_LONG t;
        if (MHD_get_timeout(w->daemons[i].d, &t) == MHD_YES &&
            (timeout < 0 || (long long)t < timeout))
            timeout = (long long)t;
    }
    return timeout;
}

/* Before each wait: run MHD for resumed connections and whatever it says
 * is due now, then bound the wait by its next deadline (connection
 * timeouts). MHD only acts on a deadline when MHD_run is called; the
 * prepare after that wait runs it, since MHD_get_timeout then says 0. The
 * bound is this hook's return value, not a loop timer: it is recomputed
 * before every wait, so a wake-up before MHD's own (coarse) clock reaches
 * the deadline just waits again instead of leaving a connection uncut. */
static int
on_prepare(loop_prepare *p)
{
    worker *w = p->data;
    long long timeout = -1;
    for (int pass = 0; pass < 8; pass++) {
        if (w->need_run) {
            w->need_run = false;
            run_daemons(w);
        }
        timeout = daemons_timeout(w);
        if (timeout != 0 && !w->need_run)
            break;
        if (timeout == 0)
            run_daemons(w);
    }
    if (w->need_run || timeout == 0)
        return 0;
    if (timeout < 0)
        return -1;
    timeout += MHD_DEADLINE_SLACK_MS;
    return timeout > INT_MAX ? INT_MAX : (int)timeout;
}

static kapi_status
start_daemons(worker *w)
{
    server *srv = w->srv;
    for (size_t i = 0; i < srv->nlisteners; i++) {
        daemon_io *dio = &w->daemons[i];
        int fd = srv->fds[w->index * srv->nlisteners + i];
        srv->fds[w->index * srv->nlisteners + i] = -1; /* the daemon owns it now */
        dio->d = MHD_start_daemon(
            MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_TURBO, 0, NULL, NULL, on_access, w,
            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, w, MHD_OPTION_LISTEN_SOCKET, fd,
            MHD_OPTION_URI_LOG_CALLBACK, on_uri, w, MHD_OPTION_NOTIFY_COMPLETED, on_completed, w,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, w, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            srv->pool_bytes, MHD_OPTION_CONNECTION_LIMIT, srv->max_connections + 64u,
            MHD_OPTION_CONNECTION_TIMEOUT, srv->connection_timeout_s, MHD_OPTION_END);
        if (!dio->d) {
            /* some of MHD's failure paths close the socket, others do not */
            if (fcntl(fd, F_GETFD) >= 0)
                close(fd);
            return KAPI_EIO;
        }
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(dio->d, MHD_DAEMON_INFO_EPOLL_FD);
        if (!di)
            return KAPI_EIO;
        dio->io = (loop_io){.fd = di->epoll_fd, .fn = on_daemon_ready, .data = dio};
        kapi_status st = loop_io_add(w->lp, &dio->io, EPOLLIN);
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

static void *
worker_main(void *arg)
{
    worker *w = arg;
    w->prepare = (loop_prepare){.fn = on_prepare, .data = w};
    loop_prepare_add(w->lp, &w->prepare);
    if (uclient_new(w->lp, &w->uc) != KAPI_OK) {
        log_msg(KAPI_LOG_ERROR, "worker %zu: cannot create the upstream client", w->index);
        return NULL;
    }
    uclient_set_current(w->uc);
    if (w->index == 0)
        worker_generation(w); /* starts the health checks */
    if (loop_run(w->lp) != KAPI_OK)
        log_msg(KAPI_LOG_ERROR, "worker %zu: event loop failed: %s", w->index, strerror(errno));
    hcheck_stop(w->checks);
    w->checks = NULL;
    exchange_abort_all();
    return NULL;
}

/* ---- sockets ---- */

/* A listening socket on L at *PORT (0: the kernel picks; *PORT is set).
 * REUSEPORT lets each worker bind its own socket to the same address. */
static int
open_listener(const config_listener *l, unsigned *port, bool reuseport, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, l->host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)*port);
        sl = sizeof(*in4);
    } else if (inet_pton(AF_INET6, l->host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)*port);
        sl = sizeof(*in6);
    } else {
        snprintf(err, errlen, "listen %s: not a numeric address", l->host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        (ss.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 511) != 0) {
        snprintf(err, errlen, "listen %s:%u: %s", l->host, *port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port = ntohs(ss.ss_family == AF_INET6 ? in6->sin6_port : in4->sin_port);
    return fd;
}

/* One socket per worker for listener L. An exclusive bind comes first: it
 * refuses an address another process already serves (with SO_REUSEPORT
 * alone a second kapi would silently share the port). For port 0 that
 * exclusive socket is the one every worker shares (dup'ed): an ephemeral
 * port bound with SO_REUSEPORT may be one another process already holds. */
static kapi_status
open_listeners(server *srv, size_t l, const config_listener *cl, char *err, size_t errlen)
{
    unsigned port = cl->port;
    int first = open_listener(cl, &port, false, err, errlen);
    if (first < 0)
        return KAPI_EIO;
    srv->ports[l] = port;
    if (cl->port == 0) {
        srv->fds[l] = first;
        for (size_t w = 1; w < srv->nworkers; w++)
            if ((srv->fds[w * srv->nlisteners + l] = fcntl(first, F_DUPFD_CLOEXEC, 0)) < 0) {
                snprintf(err, errlen, "listen %s:%u: %s", cl->host, port, strerror(errno));
                return KAPI_EIO;
            }
        return KAPI_OK;
    }
    close(first);
    for (size_t w = 0; w < srv->nworkers; w++)
        if ((srv->fds[w * srv->nlisteners + l] = open_listener(cl, &port, true, err, errlen)) < 0)
            return KAPI_EIO;
    return KAPI_OK;
}

kapi_status
server_new(const config *cfg, server **out, char *err, size_t errlen)
{
    *out = NULL;
    server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return KAPI_ENOMEM;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    srv->nworkers = cfg->threads ? cfg->threads : (cores > 0 ? (size_t)cores : 1);
    srv->nlisteners = cfg->nlisteners;
    srv->max_connections = cfg->limits.max_connections;
    srv->connection_timeout_s = cfg->limits.connection_timeout_s;
    /* MHD zeroes the whole pool for every request: size it from the header
     * limit (plus room for the response head) rather than a round 32 KiB. */
    size_t pool = cfg->limits.max_header_bytes + 8192;
    srv->pool_bytes = pool < 16384 ? 16384 : pool;
    srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
    srv->fds = malloc(srv->nworkers * srv->nlisteners * sizeof(*srv->fds));
    srv->ports = calloc(srv->nlisteners, sizeof(*srv->ports));
    if (!srv->workers || !srv->fds || !srv->ports) {
        server_free(srv);
        return KAPI_ENOMEM;
    }
    for (size_t i = 0; i < srv->nworkers * srv->nlisteners; i++)
        srv->fds[i] = -1;
    for (size_t l = 0; l < srv->nlisteners; l++) {
        if (open_listeners(srv, l, &cfg->listeners[l], err, errlen) != KAPI_OK) {
            server_free(srv);
            return KAPI_EIO;
        }
    }
    for (size_t i = 0; i < srv->nworkers; i++) {
        worker *w = &srv->workers[i];
        w->srv = srv;
        w->index = i;
        w->daemons = calloc(srv->nlisteners, sizeof(*w->daemons));
        rng_seed(w->rng, (uint64_t)(uintptr_t)w + i);
        w->quiesce_task = (loop_task){.fn = on_quiesce_task, .data = w};
        w->refresh_task = (loop_task){.fn = on_refresh_task, .data = w};
        w->abort_task = (loop_task){.fn = on_abort_task, .data = w};
        if (!w->daemons || loop_new(&w->lp) != KAPI_OK || start_daemons(w) != KAPI_OK) {
            snprintf(err, errlen, "worker %zu: cannot start the HTTP daemon", i);
            server_free(srv);
            return KAPI_EIO;
        }
    }
    *out = srv;
    return KAPI_OK;
}

unsigned
server_port(const server *s, size_t i)
{
    return i < s->nlisteners ? s->ports[i] : 0;
}

kapi_status
server_start(server *s)
{
    for (size_t i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return KAPI_EIO;
        w->started = true;
    }
    return KAPI_OK;
}

void
server_drain(server *s)
{
    atomic_store(&s->draining, true);
    for (size_t i = 0; i < s->nworkers; i++)
        loop_post(s->workers[i].lp, &s->workers[i].quiesce_task);
}

void
server_refresh(server *s)
{
    for (size_t i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        if (!atomic_exchange(&w->refresh_pending, true))
            loop_post(w->lp, &w->refresh_task);
    }
}

unsigned
server_inflight(const server *s)
{
    return atomic_load(&s->inflight);
}

unsigned
server_connections(const server *s)
{
    return atomic_load(&s->connections);
}

void
server_abort_paused(server *s)
{
    for (size_t i = 0; i < s->nworkers; i++)
        loop_post(s->workers[i].lp, &s->workers[i].abort_task);
}

void
server_stop(server *s)
{
    for (size_t i = 0; i < s->nworkers; i++)
        if (s->workers[i].started)
            loop_stop(s->workers[i].lp);
    for (size_t i = 0; i < s->nworkers; i++) {
        if (s->workers[i].started)
            pthread_join(s->workers[i].thread, NULL);
        s->workers[i].started = false;
    }
}

void
server_free(server *s)
{
    if (!s)
        return;
    server_stop(s);
    for (size_t i = 0; s->workers && i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        /* Requests still paused are dropped with their connections; their
         * tokens, if resumed later, only release them. */
        while (!dlist_empty(&w->paused)) {
            sreq *p = dlist_entry(w->paused.first, sreq, paused_link);
            detach_token(p);
            unpause(p);
        }
        for (size_t l = 0; w->daemons && l < s->nlisteners; l++)
            if (w->daemons[l].d)
                MHD_stop_daemon(w->daemons[l].d); /* completes every request */
        while (w->free_list) {
            sreq *next = w->free_list->next_free;
            free(w->free_list);
            w->free_list = next;
        }
        generation_release(w->gen);
        w->gen = NULL;
        uclient_free(w->uc);
        w->uc = NULL;
        free(w->daemons);
        w->daemons = NULL;
    }
    if (atomic_load(&s->tokens) > 0 || atomic_load(&s->posting) > 0) {
        /* A module thread may still call resume(), which posts to a worker's
         * loop: keep the workers and loops for the rest of the process
         * (reachable from here, so leak checkers do not flag them). */
        kept_for_late_resumes = s;
        log_msg(KAPI_LOG_WARN, "%u pause tokens were still out at exit", atomic_load(&s->tokens));
        return;
    }
    for (size_t i = 0; s->workers && i < s->nworkers; i++)
        loop_free(s->workers[i].lp);
    for (size_t i = 0; s->fds && i < s->nworkers * s->nlisteners; i++)
        if (s->fds[i] >= 0)
            close(s->fds[i]);
    free(s->fds);
    free(s->ports);
    free(s->workers);
    free(s);
}
