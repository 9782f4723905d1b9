/* ucurl.c -- https upstream calls through libcurl's multi socket API, driven
 * by the worker's own loop (see ucurl.h).
 *
 * One multi handle per ucurl (per loop). curl tells us which sockets to
 * watch (socket_cb: a loop_io per socket, kept with curl_multi_assign) and
 * when to wake it (timer_cb: one loop_timer); the loop's callbacks call
 * curl_multi_socket_action and then read the finished transfers, so a
 * call's done always runs from a loop callback, never from inside a curl
 * callback nor from ucurl_start (curl_multi_add_handle only arms the
 * timer). curl keeps the TLS connections in the multi's cache and reuses
 * them (HTTP/1.1 only, no multiplexing); TLS sessions are shared per ucurl.
 *
 * curl never resolves a name here: CURLOPT_CONNECT_TO points every call at
 * the origin's numeric address, so the loop thread never waits on DNS.
 * Response headers and body are collected by our own callbacks into
 * buffers the call then owns (ucurl_release frees them). Each call also has
 * its own deadline timer, because curl does not count the time a transfer
 * waits for a connection slot (CURLMOPT_MAX_HOST_CONNECTIONS).
 *
 * done may start and cancel calls, but not free the ucurl. CURLcode and
 * every curl type stay in this file. It keeps no plain-http connection
 * (uclient.c), parses no request or body framing itself and logs nothing. */
#include "ucurl.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "dlist.h"

#define UCURL_MAX_HEAD (64u * 1024u) /* response header section, names + values */
#define UCURL_MAX_CONNECTS 1024L     /* connections the multi's cache may keep */
#define UCURL_FREE_MAX 16            /* idle easy handles kept for reuse */

/* A socket curl asked us to watch. */
typedef struct usock {
    loop_io io;
    ucurl *u;
    uint32_t events;
    dlist_node link; /* in the ucurl's socks */
} usock;

/* One transfer: an easy handle and what its callbacks collect. Recycled
 * through the ucurl's free list with its easy handle and header buffer. */
typedef struct uxfer {
    ucurl *u;
    ucall *call; /* NULL while on the free list */
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *connect_to;
    loop_timer deadline;
    dlist_node link; /* in the ucurl's active or free list */

    /* The response head: for the final (non-1xx) response, "name\0value\0"
     * per header; reset by every status line. */
    int status;
    bool head_done; /* the final head's blank line was seen: later lines are trailers */
    bool head_bad;
    bool head_toobig;
    char *hbuf;
    size_t hlen, hcap;
    size_t nheaders;

    char *body;
    size_t body_len, body_cap;
    size_t max_body;
    bool body_toobig;
    bool nomem;
} uxfer;

struct ucurl {
    loop *lp;
    CURLM *multi;
    CURLSH *share;
    loop_timer timer;
    long max_host_connections;
    dlist active; /* of uxfer: transfers in the multi */
    dlist free;   /* of uxfer: idle, the last parked first */
    unsigned nfree;
    dlist socks; /* of usock */
};

/* ---- libcurl, once per process ------------------------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void
global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- lists --------------------------------------------------------------- */

static uxfer *
xfer_of(dlist_node *n)
{
    return dlist_entry(n, uxfer, link);
}

/* ---- completing a call ---------------------------------------------------- */

/* The class of a finished transfer, and the static text for the log. */
static ucall_error
classify(const uxfer *x, CURLcode rc, bool wrote, const char **detail)
{
    if (x->nomem) {
        *detail = "out of memory";
        return UCALL_ENOMEM;
    }
    if (x->body_toobig || rc == CURLE_FILESIZE_EXCEEDED) {
        *detail = "response body too large";
        return UCALL_ETOOBIG;
    }
    if (x->head_toobig) {
        *detail = "response header section too large";
        return UCALL_ETOOBIG;
    }
    if (x->head_bad) {
        *detail = "malformed response head";
        return UCALL_EPROTO;
    }
    switch (rc) {
    case CURLE_OK:
        if (x->status < 200) {
            *detail = "no final response status";
            return UCALL_EPROTO;
        }
        *detail = NULL;
        return UCALL_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST: *detail = "connection refused"; return UCALL_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        *detail = wrote ? "response timed out" : "connect timed out";
        return UCALL_ETIMEOUT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
        *detail = "TLS certificate verification failed";
        return UCALL_EPROTO;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED: *detail = "TLS handshake failed"; return UCALL_EPROTO;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        *detail = "connection closed before the response was complete";
        return UCALL_ERESET;
    case CURLE_OUT_OF_MEMORY: *detail = "out of memory"; return UCALL_ENOMEM;
    case CURLE_ABORTED_BY_CALLBACK: /* socket_cb could not watch a socket: curl fails them all */
        *detail = "cannot watch a socket";
        return UCALL_ENOMEM;
    case CURLE_URL_MALFORMAT: *detail = "request target refused by libcurl"; return UCALL_EPROTO;
    default: *detail = "malformed response"; return UCALL_EPROTO;
    }
}

/* Copies the collected head into one block: the kapi_header array followed
 * by the "name\0value\0" bytes its views point into (ucurl_release frees it
 * with one free). */
static kapi_header *
headers_block(const uxfer *x)
{
    kapi_header *h = malloc(x->nheaders * sizeof *h + x->hlen);
    if (!h)
        return NULL;
    char *p = memcpy((char *)(h + x->nheaders), x->hbuf, x->hlen);
    for (size_t i = 0; i < x->nheaders; i++) {
        size_t n = strlen(p);
        h[i].name = (kapi_str){p, n};
        p += n + 1;
        n = strlen(p);
        h[i].value = (kapi_str){p, n};
        p += n + 1;
    }
    return h;
}

/* Detaches X (out of the multi) from its call and keeps it, with its easy
 * handle, for the next call. */
static void
xfer_park(ucurl *u, uxfer *x)
{
    curl_slist_free_all(x->headers);
    curl_slist_free_all(x->connect_to);
    x->headers = x->connect_to = NULL;
    free(x->body);
    x->body = NULL;
    if (x->call)
        x->call->curl = NULL;
    x->call = NULL;
    if (u->nfree >= UCURL_FREE_MAX) {
        curl_easy_cleanup(x->easy);
        free(x->hbuf);
        free(x);
        return;
    }
    dlist_push_front(&u->free, &x->link);
    u->nfree++;
}

/* Takes X out of the multi (curl closes a connection whose exchange was
 * not complete) and parks it. */
static void
xfer_recycle(ucurl *u, uxfer *x)
{
    loop_timer_stop(u->lp, &x->deadline);
    curl_multi_remove_handle(u->multi, x->easy);
    dlist_remove(&u->active, &x->link);
    xfer_park(u, x);
}

/* Fills the call's results from X and runs done. Only from loop callbacks. */
static void
xfer_complete(ucurl *u, uxfer *x, CURLcode rc)
{
    ucall *call = x->call;
    long connects = 0;
    curl_off_t request_size = 0, appconnect_us = 0;
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_size);
    curl_easy_getinfo(x->easy, CURLINFO_APPCONNECT_TIME_T, &appconnect_us);

    /* Once the TLS handshake is done curl writes the request at once, so
     * count it as sent even if the request size is not in yet. */
    bool wrote = request_size > 0 || appconnect_us > 0;
    call->error = classify(x, rc, wrote, &call->detail);
    call->sent = wrote && call->error != UCALL_ECONNECT;
    call->reused = connects == 0 && request_size > 0;
    if (call->error == UCALL_OK) {
        call->status = x->status;
        if (x->nheaders > 0 && !(call->resp_headers = headers_block(x))) {
            call->error = UCALL_ENOMEM;
            call->detail = "out of memory";
        } else {
            call->nresp_headers = x->nheaders;
            call->resp_body = x->body;
            call->resp_body_len = x->body_len;
            x->body = NULL;
        }
    }
    xfer_recycle(u, x);
    call->done(call);
}

/* Completes every transfer curl has finished. done may start or cancel
 * other calls meanwhile (curl drops a removed handle's pending message). */
static void
drain(ucurl *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        ucall *call = (ucall *)(void *)priv;
        CURLcode rc = msg->data.result; /* MSG dies with the handle's removal */
        xfer_complete(u, call->curl, rc);
    }
}

/* Lets curl act on FD (or on its timeouts: CURL_SOCKET_TIMEOUT), keeps the
 * timer armed, then completes what finished. */
static void
drive(ucurl *u, curl_socket_t fd, int mask)
{
    int running;
    curl_multi_socket_action(u->multi, fd, mask, &running);
    /* curl calls timer_cb only when its next deadline changes. If our timer
     * fired a little early (the loop's clock is cached) curl did nothing and
     * will not call again for the same deadline: ask it. */
    if (!loop_timer_active(&u->timer)) {
        long ms = -1;
        curl_multi_timeout(u->multi, &ms);
        if (ms >= 0)
            loop_timer_start(u->lp, &u->timer, (uint64_t)ms);
    }
    drain(u);
}

/* ---- loop callbacks -------------------------------------------------------- */

static void
sock_ready(loop_io *io, uint32_t events)
{
    usock *s = io->data;
    int mask = 0;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        mask |= CURL_CSELECT_ERR;
    drive(s->u, io->fd, mask); /* S may be freed in there */
}

static void
timer_fired(loop_timer *t)
{
    drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* The call's whole-try deadline passed before curl finished it (it may be
 * waiting for a connection slot, which curl's own timeout does not see). */
static void
deadline_fired(loop_timer *t)
{
    uxfer *x = t->data;
    xfer_complete(x->u, x, CURLE_OPERATION_TIMEDOUT);
}

/* ---- curl callbacks (no socket_action and no done from here) --------------- */

static void
sock_free(ucurl *u, usock *s)
{
    loop_io_remove(u->lp, &s->io); /* fails harmlessly if curl closed the fd */
    dlist_remove(&u->socks, &s->link);
    free(s);
}

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    ucurl *u = userp;
    usock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_free(u, s);
        return 0;
    }
    uint32_t events = 0;
    if (what & CURL_POLL_IN)
        events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        events |= EPOLLOUT;
    if (s) {
        if (s->events != events && loop_io_modify(u->lp, &s->io, events) != KAPI_OK)
            return -1;
        s->events = events;
        return 0;
    }
    if (!(s = malloc(sizeof *s)))
        return -1;
    *s = (usock){.io = {.fd = fd, .fn = sock_ready, .data = s}, .u = u, .events = events};
    if (loop_io_add(u->lp, &s->io, events) != KAPI_OK) {
        free(s);
        return -1;
    }
    dlist_push_front(&u->socks, &s->link);
    curl_multi_assign(u->multi, fd, s);
    return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    ucurl *u = userp;
    if (timeout_ms < 0)
        loop_timer_stop(u->lp, &u->timer);
    else
        loop_timer_start(u->lp, &u->timer, (uint64_t)timeout_ms);
    return 0;
}

/* Sockets are opened close-on-exec. */
static curl_socket_t
open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)clientp;
    (void)purpose;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Makes room for N more bytes of the head; false past UCURL_MAX_HEAD. */
static bool
hbuf_reserve(uxfer *x, size_t n)
{
    if (n > UCURL_MAX_HEAD - x->hlen) {
        x->head_toobig = true;
        return false;
    }
    if (x->hlen + n <= x->hcap)
        return true;
    size_t cap = x->hcap ? x->hcap : 1024;
    while (cap < x->hlen + n)
        cap *= 2;
    char *grown = realloc(x->hbuf, cap);
    if (!grown) {
        x->nomem = true;
        return false;
    }
    x->hbuf = grown;
    x->hcap = cap;
    return true;
}

static void
hbuf_put(uxfer *x, const char *p, size_t n)
{
    memcpy(x->hbuf + x->hlen, p, n);
    x->hbuf[x->hlen + n] = '\0';
    x->hlen += n + 1;
}

static bool
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* "HTTP/1.1 200 OK": starts a new head (1xx ones are dropped this way). */
static bool
status_line(uxfer *x, const char *p, size_t n)
{
    const char *sp = memchr(p, ' ', n);
    if (!sp || (size_t)(p + n - sp) < 4)
        return false;
    int status = 0;
    for (int i = 1; i <= 3; i++) {
        if (sp[i] < '0' || sp[i] > '9')
            return false;
        status = status * 10 + (sp[i] - '0');
    }
    if (status < 100 || (p + n - sp > 4 && sp[4] != ' '))
        return false;
    x->status = status;
    x->hlen = x->nheaders = 0;
    return true;
}

/* One header line of the response, CRLF included. */
static bool
header_line(uxfer *x, const char *p, size_t n)
{
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (memchr(p, '\0', n))
        return false;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0)
        return status_line(x, p, n);
    if (x->head_done || x->status == 0)
        return x->status != 0; /* trailers are ignored */
    if (n == 0) {
        x->head_done = x->status >= 200; /* a 1xx head is followed by another */
        return true;
    }
    if (is_ows(p[0])) { /* obsolete line folding: joins the previous value */
        if (x->nheaders == 0)
            return false;
        while (n > 0 && is_ows(p[0]))
            p++, n--;
        while (n > 0 && is_ows(p[n - 1]))
            n--;
        if (n == 0)
            return true;
        if (!hbuf_reserve(x, n + 1))
            return false;
        x->hbuf[x->hlen - 1] = ' '; /* the last value's NUL joins the two */
        hbuf_put(x, p, n);
        return true;
    }
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return false;
    size_t nlen = (size_t)(colon - p);
    for (size_t i = 0; i < nlen; i++) {
        if (is_ows(p[i]))
            return false;
    }
    const char *v = colon + 1, *end = p + n;
    while (v < end && is_ows(*v))
        v++;
    while (end > v && is_ows(end[-1]))
        end--;
    size_t vlen = (size_t)(end - v);
    if (!hbuf_reserve(x, nlen + vlen + 2))
        return false;
    hbuf_put(x, p, nlen);
    hbuf_put(x, v, vlen);
    x->nheaders++;
    return true;
}

static size_t
header_cb(char *p, size_t size, size_t nitems, void *userdata)
{
    uxfer *x = userdata;
    size_t n = size * nitems;
    if (!header_line(x, p, n)) {
        if (!x->head_toobig && !x->nomem)
            x->head_bad = true;
        return 0; /* curl aborts the transfer (CURLE_WRITE_ERROR) */
    }
    return n;
}

static size_t
write_cb(char *p, size_t size, size_t nmemb, void *userdata)
{
    uxfer *x = userdata;
    size_t n = size * nmemb;
    if (n > x->max_body - x->body_len) {
        x->body_toobig = true;
        return 0;
    }
    size_t need = x->body_len + n + 1; /* kept NUL-terminated */
    if (need > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 4096;
        while (cap < need)
            cap *= 2;
        if (cap - 1 > x->max_body)
            cap = x->max_body + 1;
        char *grown = realloc(x->body, cap);
        if (!grown) {
            x->nomem = true;
            return 0;
        }
        x->body = grown;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, p, n);
    x->body_len += n;
    x->body[x->body_len] = '\0';
    return n;
}

/* ---- ucurl --------------------------------------------------------------- */

kapi_status
ucurl_new(loop *lp, ucurl **out)
{
    if (!lp || !out)
        return KAPI_EINVAL;
    *out = NULL;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return KAPI_ENOMEM;
    ucurl *u = calloc(1, sizeof *u);
    if (!u)
        return KAPI_ENOMEM;
    u->lp = lp;
    loop_timer_init(&u->timer, timer_fired, u);
    if (!(u->multi = curl_multi_init()) || !(u->share = curl_share_init()))
        goto fail;
    /* One thread uses the share: no lock callbacks needed. */
    if (curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
        goto fail;
    if (curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, CURLPIPE_NOTHING) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, UCURL_MAX_CONNECTS) != CURLM_OK)
        goto fail;
    *out = u;
    return KAPI_OK;

fail:
    ucurl_free(u);
    return KAPI_ENOMEM;
}

void
ucurl_free(ucurl *u)
{
    if (!u)
        return;
    while (!dlist_empty(&u->active))
        xfer_recycle(u, xfer_of(u->active.first)); /* without done */
    while (!dlist_empty(&u->free)) {
        uxfer *x = xfer_of(dlist_pop_front(&u->free));
        curl_easy_cleanup(x->easy);
        free(x->hbuf);
        free(x);
    }
    if (u->multi)
        curl_multi_cleanup(u->multi); /* closes the cached connections */
    if (u->share)
        curl_share_cleanup(u->share);
    while (!dlist_empty(&u->socks))
        sock_free(u, dlist_entry(u->socks.first, usock, link));
    loop_timer_stop(u->lp, &u->timer);
    free(u);
}

static bool
name_is(const kapi_header *h, const char *name)
{
    return h->name.len == strlen(name) && strncasecmp(h->name.ptr, name, h->name.len) == 0;
}

static bool
method_is(kapi_str m, const char *name)
{
    return m.len == strlen(name) && memcmp(m.ptr, name, m.len) == 0;
}

static bool
slist_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *grown = curl_slist_append(*list, line);
    if (!grown)
        return false;
    *list = grown;
    return true;
}

/* Appends "NAME: VALUE" (curl's "NAME;" for an empty value) to *LIST. */
static bool
slist_header(struct curl_slist **list, kapi_str name, kapi_str value)
{
    char stack[512];
    size_t n = name.len + value.len + 3;
    char *line = n <= sizeof stack ? stack : malloc(n);
    if (!line)
        return false;
    if (value.len == 0)
        snprintf(line, n, "%.*s;", (int)name.len, name.ptr);
    else
        snprintf(line, n, "%.*s: %.*s", (int)name.len, name.ptr, (int)value.len, value.ptr);
    bool ok = slist_add(list, line);
    if (line != stack)
        free(line);
    return ok;
}

/* The request headers: the call's as given, minus what curl computes, plus
 * "Name:" lines that stop curl adding its own (Expect: 100-continue, a form
 * Content-Type with a body, an Accept for any type). */
static bool
build_headers(const ucall *call, struct curl_slist **out)
{
    bool accept = false, content_type = false;
    for (size_t i = 0; i < call->nheaders; i++) {
        const kapi_header *h = &call->headers[i];
        if (name_is(h, "content-length") || name_is(h, "transfer-encoding") || name_is(h, "expect"))
            continue;
        accept |= name_is(h, "accept");
        content_type |= name_is(h, "content-type");
        if (!slist_header(out, h->name, h->value))
            return false;
    }
    return slist_add(out, "Expect:") && slist_add(out, "Transfer-Encoding:") &&
           (accept || slist_add(out, "Accept:")) &&
           (content_type || slist_add(out, "Content-Type:"));
}

/* "::ADDR:PORT": any host and port of the URL connects to the origin's
 * numeric address, so curl resolves nothing. */
static bool
build_connect_to(const origin *o, struct curl_slist **out)
{
    char ip[INET6_ADDRSTRLEN];
    char line[INET6_ADDRSTRLEN + 16];
    if (o->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&o->addr;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(line, sizeof line, "::%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (o->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&o->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(line, sizeof line, "::[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        return false;
    }
    return (*out = curl_slist_append(NULL, line)) != NULL;
}

static uxfer *
xfer_get(ucurl *u)
{
    uxfer *x = xfer_of(dlist_pop_front(&u->free));
    if (x) {
        u->nfree--;
        curl_easy_reset(x->easy);
    } else {
        if (!(x = calloc(1, sizeof *x)))
            return NULL;
        if (!(x->easy = curl_easy_init())) {
            free(x);
            return NULL;
        }
    }
    char *hbuf = x->hbuf;
    size_t hcap = x->hcap;
    CURL *easy = x->easy;
    *x = (uxfer){.u = u, .easy = easy, .hbuf = hbuf, .hcap = hcap};
    loop_timer_init(&x->deadline, deadline_fired, x);
    return x;
}

/* Sets every option of X's easy handle for CALL. */
static kapi_status
xfer_setup(uxfer *x, ucall *call)
{
    const origin *o = call->origin;
    CURL *e = x->easy;
    kapi_status st = KAPI_ENOMEM;
    size_t blen = strlen(o->base_url);
    char *url = malloc(blen + call->target.len + 1);
    char *method = malloc(call->method.len + 1);
    if (!url || !method)
        goto out;
    memcpy(url, o->base_url, blen);
    memcpy(url + blen, call->target.ptr, call->target.len);
    url[blen + call->target.len] = '\0';
    memcpy(method, call->method.ptr, call->method.len);
    method[call->method.len] = '\0';
    if (!build_headers(call, &x->headers))
        goto out;
    if (!build_connect_to(o, &x->connect_to)) {
        st = KAPI_EINVAL;
        goto out;
    }

    bool head = method_is(call->method, "HEAD");
    bool with_body = call->body.len > 0 || method_is(call->method, "POST") ||
                     method_is(call->method, "PUT") || method_is(call->method, "PATCH");
    CURLcode rc = CURLE_OK;
/* Each option is set until one fails; RC keeps the first failure. */
#define SET(opt, val) (rc = rc != CURLE_OK ? rc : curl_easy_setopt(e, opt, val))
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_PATH_AS_IS, 1L);
    SET(CURLOPT_PROXY, ""); /* never the environment's proxy */
    SET(CURLOPT_CONNECT_TO, x->connect_to);
    SET(CURLOPT_OPENSOCKETFUNCTION, open_cb);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SHARE, x->u->share);
    SET(CURLOPT_HTTPHEADER, x->headers);
    if (head) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (with_body) {
        SET(CURLOPT_POSTFIELDS, call->body.len > 0 ? call->body.ptr : "");
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body.len);
        if (!method_is(call->method, "POST"))
            SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (!method_is(call->method, "GET")) {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)call->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)call->timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, call->tls_verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, call->tls_verify ? 2L : 0L);
    if (call->tls_ca_file) {
        SET(CURLOPT_CAINFO, call->tls_ca_file);
        SET(CURLOPT_CAPATH, NULL); /* that bundle only, not the system's too */
    }
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, x);
    if (call->max_response_bytes > 0 && call->max_response_bytes < (size_t)INT64_MAX)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)call->max_response_bytes);
    SET(CURLOPT_PRIVATE, call);
#undef SET
    if (rc == CURLE_OK)
        st = KAPI_OK;
    else if (rc != CURLE_OUT_OF_MEMORY)
        st = KAPI_EINVAL;
out:
    free(url);
    free(method);
    return st;
}

kapi_status
ucurl_start(ucurl *u, ucall *call)
{
    if (!u || !call || !call->origin || !call->origin->tls || !call->origin->base_url ||
        !call->done || call->method.len == 0 || (!call->target.ptr && call->target.len > 0) ||
        (!call->headers && call->nheaders > 0))
        return KAPI_EINVAL;
    call->error = UCALL_OK;
    call->sent = call->reused = false;
    call->status = 0;
    call->resp_headers = NULL;
    call->nresp_headers = 0;
    call->resp_body = NULL;
    call->resp_body_len = 0;
    call->detail = NULL;
    call->curl = NULL;

    uxfer *x = xfer_get(u);
    if (!x)
        return KAPI_ENOMEM;
    x->call = call;
    x->max_body = call->max_response_bytes;
    call->curl = x;
    kapi_status st = xfer_setup(x, call);
    if (st != KAPI_OK)
        goto fail;
    long maxhost = (long)call->max_connections;
    if (maxhost > 0 && maxhost != u->max_host_connections &&
        curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxhost) == CURLM_OK)
        u->max_host_connections = maxhost;
    /* Only arms the timer (timer_cb with 0): the transfer starts, and can
     * finish, from the loop's next timer round. */
    if (curl_multi_add_handle(u->multi, x->easy) != CURLM_OK) {
        st = KAPI_ENOMEM;
        goto fail;
    }
    dlist_push_front(&u->active, &x->link);
    if (call->timeout_ms > 0)
        loop_timer_start(u->lp, &x->deadline, call->timeout_ms);
    return KAPI_OK;

fail:
    xfer_park(u, x);
    return st;
}

void
ucurl_cancel(ucurl *u, ucall *call)
{
    if (!u || !call || !call->curl)
        return;
    /* Removing a transfer in progress makes curl close its connection, so
     * a half-read response never meets the next request. */
    xfer_recycle(u, call->curl);
}

void
ucurl_release(ucall *call)
{
    if (!call)
        return;
    free(call->resp_headers);
    free(call->resp_body);
    call->resp_headers = NULL;
    call->nresp_headers = 0;
    call->resp_body = NULL;
    call->resp_body_len = 0;
}
