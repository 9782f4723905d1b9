/* test_ucurl.c -- unit tests for core/ucurl.c: https calls driven by a real
 * loop against a TLS HTTP/1.1 server running on a thread of this process
 * (OpenSSL, a self-signed certificate for "localhost" and 127.0.0.1 made at
 * start into a temporary directory, which doubles as the CA file).
 *
 * The server answers by path: /hello, /echo (the request body back), /slow
 * (never answers; notes when the client closes), /big (10000 bytes with a
 * length), /bigchunked (the same, chunked), /interim (a 100 first), /partial
 * (closes inside the body), /hugehead (80 KiB of headers), /fold (an
 * obs-folded header). It counts TCP connections and keeps the last
 * request's head and body. Each test arms a guard timer so a lost
 * completion fails instead of hanging. */
#include "ucurl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define GUARD_MS 10000
#define BIG_LEN 10000
#define MAX_CONNS 128

/* ---- the TLS server ------------------------------------------------------ */

typedef struct server {
    int lfd;
    uint16_t port;
    SSL_CTX *ctx;
    pthread_t thread;
    atomic_bool stop;
    atomic_int connections;
    atomic_int slow_closed; /* /slow connections the client closed */
    pthread_mutex_t mu;
    char head[8192]; /* the last request's head */
    char *body;      /* and its body */
    size_t body_len;
    pthread_t conns[MAX_CONNS];
    int nconns;
} server;

static server srv;
static char tmpdir[64];
static char ca_path[128];

typedef struct conn {
    int fd;
    SSL *ssl;
} conn;

/* Waits until FD is readable or the server stops; false on stop. */
static bool
wait_readable(conn *c)
{
    while (!atomic_load(&srv.stop)) {
        if (SSL_pending(c->ssl) > 0)
            return true;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0)
            return true;
    }
    return false;
}

static int
conn_read(conn *c, char *buf, size_t n)
{
    if (!wait_readable(c))
        return -1;
    int r = SSL_read(c->ssl, buf, (int)n);
    return r > 0 ? r : -1;
}

static bool
conn_write(conn *c, const char *buf, size_t n)
{
    while (n > 0) {
        int w = SSL_write(c->ssl, buf, (int)n);
        if (w <= 0)
            return false;
        buf += w;
        n -= (size_t)w;
    }
    return true;
}

static bool
conn_printf(conn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return conn_write(c, buf, (size_t)n);
}

static size_t
content_length(const char *head)
{
    for (const char *p = head; (p = strchr(p, '\n')); p++) {
        if (strncasecmp(p + 1, "content-length:", 15) == 0)
            return strtoul(p + 16, NULL, 10);
    }
    return 0;
}

/* /slow: no answer; returns once the client closed (or the server stops). */
static void
serve_slow(conn *c)
{
    char b[256];
    while (conn_read(c, b, sizeof b) > 0) {
    }
    if (!atomic_load(&srv.stop))
        atomic_fetch_add(&srv.slow_closed, 1);
}

/* Answers one request; false closes the connection. */
static bool
serve(conn *c, const char *head, const char *body, size_t body_len)
{
    char method[16] = "", path[256] = "";
    sscanf(head, "%15s %255s", method, path);
    bool head_only = strcmp(method, "HEAD") == 0;
    char big[BIG_LEN];
    memset(big, 'b', sizeof big);
    if (strncmp(path, "/hello", 6) == 0) {
        return conn_printf(c,
                           "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test:  a b \r\n"
                           "X-Empty:\r\n\r\n%s",
                           head_only ? "" : "hello");
    }
    if (strcmp(path, "/echo") == 0) {
        return conn_printf(c, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n", body_len) &&
               conn_write(c, body, body_len);
    }
    if (strcmp(path, "/slow") == 0) {
        serve_slow(c);
        return false;
    }
    if (strcmp(path, "/big") == 0) {
        return conn_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_LEN) &&
               conn_write(c, big, sizeof big);
    }
    if (strcmp(path, "/bigchunked") == 0) {
        if (!conn_printf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
            return false;
        for (int i = 0; i < BIG_LEN / 1000; i++) {
            if (!conn_printf(c, "3e8\r\n") || !conn_write(c, big, 1000) || !conn_printf(c, "\r\n"))
                return false;
        }
        return conn_printf(c, "0\r\n\r\n");
    }
    if (strcmp(path, "/interim") == 0) {
        return conn_printf(c, "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok");
    }
    if (strcmp(path, "/hugehead") == 0) { /* 80 KiB of headers */
        if (!conn_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"))
            return false;
        for (int i = 0; i < 80; i++) {
            if (!conn_printf(c, "X-Pad-%d: ", i) || !conn_write(c, big, 1000) ||
                !conn_printf(c, "\r\n"))
                return false;
        }
        return conn_printf(c, "\r\n");
    }
    if (strcmp(path, "/fold") == 0) {
        return conn_printf(
            c, "HTTP/1.1 200 OK\r\nX-Fold: one\r\n \t two \r\nContent-Length: 0\r\n\r\n");
    }
    if (strcmp(path, "/partial") == 0) {
        conn_printf(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
        return false;
    }
    return conn_printf(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

static void *
conn_main(void *arg)
{
    conn c = {.fd = (int)(intptr_t)arg};
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv); /* bounds the handshake */
    c.ssl = SSL_new(srv.ctx);
    SSL_set_fd(c.ssl, c.fd);
    if (SSL_accept(c.ssl) != 1)
        goto out;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        char *end;
        while (!(end = len ? memmem(buf, len, "\r\n\r\n", 4) : NULL)) {
            if (len + 4096 > cap) {
                cap = cap ? 2 * cap : 65536;
                buf = realloc(buf, cap);
            }
            int r = conn_read(&c, buf + len, cap - len);
            if (r <= 0)
                goto done;
            len += (size_t)r;
        }
        size_t hlen = (size_t)(end - buf) + 4;
        char head[sizeof srv.head];
        snprintf(head, sizeof head, "%.*s", (int)hlen, buf);
        size_t blen = content_length(head);
        while (len < hlen + blen) {
            if (hlen + blen > cap) {
                cap = hlen + blen;
                buf = realloc(buf, cap);
            }
            int r = conn_read(&c, buf + len, cap - len);
            if (r <= 0)
                goto done;
            len += (size_t)r;
        }
        pthread_mutex_lock(&srv.mu);
        memcpy(srv.head, head, sizeof head);
        free(srv.body);
        srv.body = malloc(blen + 1);
        memcpy(srv.body, buf + hlen, blen);
        srv.body_len = blen;
        pthread_mutex_unlock(&srv.mu);
        bool keep = serve(&c, head, buf + hlen, blen);
        memmove(buf, buf + hlen + blen, len - hlen - blen);
        len -= hlen + blen;
        if (!keep)
            break;
    }
done:
    free(buf);
out:
    SSL_free(c.ssl);
    close(c.fd);
    return NULL;
}

static void *
accept_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&srv.stop)) {
        struct pollfd p = {.fd = srv.lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept4(srv.lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        atomic_fetch_add(&srv.connections, 1);
        if (srv.nconns == MAX_CONNS ||
            pthread_create(&srv.conns[srv.nconns], NULL, conn_main, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        srv.nconns++;
    }
    return NULL;
}

/* A self-signed certificate for localhost and 127.0.0.1, written to CA_PATH. */
static void
make_cert(EVP_PKEY **key_out, X509 **cert_out)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    const char *exts[][2] = {
        {"basicConstraints", "critical,CA:TRUE"},
        {"keyUsage", "critical,digitalSignature,keyCertSign"},
        {"subjectKeyIdentifier", "hash"},
        {"subjectAltName", "DNS:localhost,IP:127.0.0.1"},
    };
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    FILE *f = fopen(ca_path, "w");
    assert_non_null(f);
    assert_true(PEM_write_X509(f, x));
    fclose(f);
    *key_out = key;
    *cert_out = x;
}

static int
server_start(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/test_ucurl.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tmpdir);
    EVP_PKEY *key;
    X509 *cert;
    make_cert(&key, &cert);
    srv.ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(srv.ctx);
    assert_int_equal(SSL_CTX_use_certificate(srv.ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(srv.ctx, key), 1);
    X509_free(cert);
    EVP_PKEY_free(key);

    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(srv.lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(srv.lfd, 64), 0);
    assert_int_equal(getsockname(srv.lfd, (struct sockaddr *)&a, &alen), 0);
    srv.port = ntohs(a.sin_port);
    pthread_mutex_init(&srv.mu, NULL);
    assert_int_equal(pthread_create(&srv.thread, NULL, accept_main, NULL), 0);
    return 0;
}

static int
server_stop(void **state)
{
    (void)state;
    atomic_store(&srv.stop, true);
    pthread_join(srv.thread, NULL);
    for (int i = 0; i < srv.nconns; i++)
        pthread_join(srv.conns[i], NULL);
    close(srv.lfd);
    SSL_CTX_free(srv.ctx);
    free(srv.body);
    pthread_mutex_destroy(&srv.mu);
    unlink(ca_path);
    rmdir(tmpdir);
    return 0;
}

/* The last request the server read: its head, and whether its body is BODY. */
static void
last_request(char *head, size_t n, kapi_str *body_copy)
{
    pthread_mutex_lock(&srv.mu);
    snprintf(head, n, "%s", srv.head);
    if (body_copy) {
        char *b = malloc(srv.body_len + 1);
        memcpy(b, srv.body, srv.body_len);
        *body_copy = (kapi_str){b, srv.body_len};
    }
    pthread_mutex_unlock(&srv.mu);
}

/* curl must never resolve a name on the loop thread: every call connects
 * to the origin's numeric address. This definition wins over libc's. */
static atomic_int resolves;

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
            struct addrinfo **res)
{
    (void)node, (void)service, (void)hints, (void)res;
    atomic_fetch_add(&resolves, 1);
    return EAI_FAIL;
}

/* ---- the client side ------------------------------------------------------ */

typedef struct test_origin {
    origin o;
    char host[64];
    char authority[80];
    char base_url[96];
} test_origin;

/* An https origin HOST:PORT whose address is 127.0.0.1:PORT. */
static void
origin_make(test_origin *t, const char *host, uint16_t port)
{
    memset(t, 0, sizeof *t);
    snprintf(t->host, sizeof t->host, "%s", host);
    snprintf(t->authority, sizeof t->authority, "%s:%u", host, (unsigned)port);
    snprintf(t->base_url, sizeof t->base_url, "https://%s", t->authority);
    struct sockaddr_in *a = (struct sockaddr_in *)&t->o.addr;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    t->o.addrlen = sizeof *a;
    t->o.tls = true;
    t->o.host = t->host;
    t->o.port = port;
    t->o.authority = t->authority;
    t->o.base_url = t->base_url;
}

typedef struct run {
    loop *lp;
    ucurl *u;
    loop_timer guard;
    loop_timer stop_timer;
    test_origin origin;
    kapi_header host_header;
    bool in_start;
    int done_count;
    int stop_after; /* loop_stop once this many calls are done */
    ucall *next;    /* started from the first call's done */
} run;

static void
guard_fired(loop_timer *t)
{
    (void)t;
    fail_msg("no completion within %d ms", GUARD_MS);
}

static void
stop_fired(loop_timer *t)
{
    loop_stop(t->data);
}

static void
run_init(run *r, const char *host, uint16_t port)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(loop_new(&r->lp), KAPI_OK);
    assert_int_equal(ucurl_new(r->lp, &r->u), KAPI_OK);
    loop_timer_init(&r->guard, guard_fired, r);
    loop_timer_start(r->lp, &r->guard, GUARD_MS);
    loop_timer_init(&r->stop_timer, stop_fired, r->lp);
    origin_make(&r->origin, host, port);
    r->host_header =
        (kapi_header){KAPI_STR("Host"), {r->origin.authority, strlen(r->origin.authority)}};
    r->stop_after = 1;
}

static void
run_free(run *r)
{
    assert_int_equal(atomic_load(&resolves), 0);
    ucurl_free(r->u);
    loop_timer_stop(r->lp, &r->guard);
    loop_timer_stop(r->lp, &r->stop_timer);
    loop_free(r->lp);
}

static void
on_done(ucall *c)
{
    run *r = c->data;
    assert_false(r->in_start);
    r->done_count++;
    if (r->next) {
        ucall *next = r->next;
        r->next = NULL;
        r->in_start = true;
        assert_int_equal(ucurl_start(r->u, next), KAPI_OK);
        r->in_start = false;
    }
    if (r->done_count >= r->stop_after)
        loop_stop(r->lp);
}

static void
call_init(ucall *c, run *r, const char *method, const char *target)
{
    memset(c, 0, sizeof *c);
    c->origin = &r->origin.o;
    c->method = (kapi_str){method, strlen(method)};
    c->target = (kapi_str){target, strlen(target)};
    c->headers = &r->host_header;
    c->nheaders = 1;
    c->idempotent = true;
    c->connect_timeout_ms = 2000;
    c->timeout_ms = 5000;
    c->max_response_bytes = 1 << 24;
    c->tls_verify = true;
    c->tls_ca_file = ca_path;
    c->done = on_done;
    c->data = r;
}

/* Starts C (done must not run inside) and runs the loop until stopped. */
static void
start_and_run(run *r, ucall *c)
{
    r->in_start = true;
    assert_int_equal(ucurl_start(r->u, c), KAPI_OK);
    r->in_start = false;
    assert_int_equal(r->done_count, 0);
    assert_int_equal(loop_run(r->lp), KAPI_OK);
}

static const kapi_header *
resp_header(const ucall *c, const char *name)
{
    for (size_t i = 0; i < c->nresp_headers; i++) {
        if (c->resp_headers[i].name.len == strlen(name) &&
            strncasecmp(c->resp_headers[i].name.ptr, name, strlen(name)) == 0)
            return &c->resp_headers[i];
    }
    return NULL;
}

static void
assert_header(const ucall *c, const char *name, const char *value)
{
    const kapi_header *h = resp_header(c, name);
    assert_non_null(h);
    assert_int_equal(h->value.len, strlen(value));
    assert_memory_equal(h->value.ptr, value, h->value.len);
    assert_int_equal(h->value.ptr[h->value.len], '\0');
}

/* ---- tests ------------------------------------------------------------------ */

static void
test_get_round_trip(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    kapi_header hs[] = {
        r.host_header, {KAPI_STR("X-Req"), KAPI_STR("1")}, {KAPI_STR("X-Blank"), KAPI_STR("")}};
    ucall c;
    call_init(&c, &r, "GET", "/hello?x=1&y=%20");
    c.headers = hs;
    c.nheaders = 3;
    start_and_run(&r, &c);
    assert_int_equal(r.done_count, 1);
    assert_int_equal(c.error, UCALL_OK);
    assert_null(c.detail);
    assert_int_equal(c.status, 200);
    assert_true(c.sent);
    assert_false(c.reused);
    assert_int_equal(c.resp_body_len, 5);
    assert_memory_equal(c.resp_body, "hello", 5);
    assert_int_equal(c.nresp_headers, 3);
    assert_header(&c, "Content-Length", "5");
    assert_header(&c, "x-test", "a b");
    assert_header(&c, "X-Empty", "");

    char head[8192];
    last_request(head, sizeof head, NULL);
    assert_non_null(strstr(head, "GET /hello?x=1&y=%20 HTTP/1.1\r\n"));
    char host[128];
    snprintf(host, sizeof host, "\r\nHost: localhost:%u\r\n", (unsigned)srv.port);
    assert_non_null(strstr(head, host));
    assert_non_null(strstr(head, "\r\nX-Req: 1\r\n"));
    assert_non_null(strstr(head, "\r\nX-Blank:\r\n"));
    assert_null(strcasestr(head, "accept"));
    assert_null(strcasestr(head, "expect"));
    assert_null(strcasestr(head, "user-agent"));
    assert_null(strcasestr(head, "content-length"));
    assert_null(strcasestr(head, "transfer-encoding"));
    ucurl_release(&c);
    assert_null(c.resp_headers);
    assert_null(c.resp_body);
    run_free(&r);
}

static void
test_verify_fails_with_system_ca(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/hello");
    c.tls_ca_file = NULL;
    start_and_run(&r, &c);
    assert_int_equal(c.error, UCALL_EPROTO);
    assert_non_null(c.detail);
    assert_false(c.sent);
    assert_int_equal(c.status, 0);
    ucurl_release(&c);
    run_free(&r);
}

/* The certificate names localhost, not this host; CONNECT_TO still means
 * no DNS for a name that does not resolve. */
static void
test_verify_fails_on_host_name(void **state)
{
    (void)state;
    run r;
    run_init(&r, "wrong.invalid", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/hello");
    start_and_run(&r, &c);
    assert_int_equal(c.error, UCALL_EPROTO);
    assert_false(c.sent);
    ucurl_release(&c);

    /* Without verification the same origin answers. */
    ucall c2;
    call_init(&c2, &r, "GET", "/hello");
    c2.tls_verify = false;
    c2.tls_ca_file = NULL;
    r.done_count = 0;
    start_and_run(&r, &c2);
    assert_int_equal(c2.error, UCALL_OK);
    assert_int_equal(c2.status, 200);
    ucurl_release(&c2);
    run_free(&r);
}

static void
test_post_body_exact(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    size_t n = 2u << 20; /* above curl's 100-continue threshold */
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)(i * 7 + (i >> 9));
    ucall c;
    call_init(&c, &r, "POST", "/echo");
    c.body = (kapi_str){body, n};
    c.idempotent = false;
    start_and_run(&r, &c);
    assert_int_equal(c.error, UCALL_OK);
    assert_int_equal(c.status, 201);
    assert_int_equal(c.resp_body_len, n);
    assert_memory_equal(c.resp_body, body, n);

    char head[8192];
    kapi_str got;
    last_request(head, sizeof head, &got);
    assert_non_null(strstr(head, "POST /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(head, "\r\nContent-Length: 2097152\r\n"));
    assert_null(strcasestr(head, "content-type"));
    assert_null(strcasestr(head, "expect"));
    assert_int_equal(got.len, n);
    assert_memory_equal(got.ptr, body, n);
    free((char *)got.ptr);
    ucurl_release(&c);
    free(body);
    run_free(&r);
}

static void
test_methods_and_lengths(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    char head[8192];

    ucall put;
    call_init(&put, &r, "PUT", "/echo");
    start_and_run(&r, &put);
    assert_int_equal(put.error, UCALL_OK);
    assert_int_equal(put.status, 201);
    assert_int_equal(put.resp_body_len, 0);
    last_request(head, sizeof head, NULL);
    assert_non_null(strstr(head, "PUT /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(head, "\r\nContent-Length: 0\r\n"));
    ucurl_release(&put);

    ucall del;
    call_init(&del, &r, "DELETE", "/hello");
    r.done_count = 0;
    start_and_run(&r, &del);
    assert_int_equal(del.error, UCALL_OK);
    last_request(head, sizeof head, NULL);
    assert_non_null(strstr(head, "DELETE /hello HTTP/1.1\r\n"));
    assert_null(strcasestr(head, "content-length"));
    ucurl_release(&del);

    ucall hd;
    call_init(&hd, &r, "HEAD", "/hello");
    r.done_count = 0;
    start_and_run(&r, &hd);
    assert_int_equal(hd.error, UCALL_OK);
    assert_int_equal(hd.status, 200);
    assert_int_equal(hd.resp_body_len, 0);
    assert_header(&hd, "Content-Length", "5");
    last_request(head, sizeof head, NULL);
    assert_non_null(strstr(head, "HEAD /hello HTTP/1.1\r\n"));
    ucurl_release(&hd);

    ucall opt;
    call_init(&opt, &r, "OPTIONS", "/echo");
    opt.body = KAPI_STR("xyz");
    r.done_count = 0;
    start_and_run(&r, &opt);
    assert_int_equal(opt.error, UCALL_OK);
    assert_int_equal(opt.resp_body_len, 3);
    assert_memory_equal(opt.resp_body, "xyz", 3);
    last_request(head, sizeof head, NULL);
    assert_non_null(strstr(head, "OPTIONS /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(head, "\r\nContent-Length: 3\r\n"));
    ucurl_release(&opt);
    run_free(&r);
}

static void
test_interim_response_skipped(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/interim");
    start_and_run(&r, &c);
    assert_int_equal(c.error, UCALL_OK);
    assert_int_equal(c.status, 200);
    assert_null(resp_header(&c, "X-Interim"));
    assert_header(&c, "X-Final", "1");
    assert_int_equal(c.nresp_headers, 2);
    assert_int_equal(c.resp_body_len, 2);
    ucurl_release(&c);
    run_free(&r);
}

/* The second call, started from the first one's done, reuses its connection. */
static void
test_keepalive_reuse(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    int before = atomic_load(&srv.connections);
    ucall c1, c2;
    call_init(&c1, &r, "GET", "/hello");
    call_init(&c2, &r, "GET", "/hello");
    r.next = &c2;
    r.stop_after = 2;
    start_and_run(&r, &c1);
    assert_int_equal(r.done_count, 2);
    assert_int_equal(c1.error, UCALL_OK);
    assert_int_equal(c2.error, UCALL_OK);
    assert_false(c1.reused);
    assert_true(c2.reused);
    assert_int_equal(atomic_load(&srv.connections) - before, 1);
    ucurl_release(&c1);
    ucurl_release(&c2);

    /* And again from a later loop run. */
    ucall c3;
    call_init(&c3, &r, "GET", "/hello");
    r.done_count = 0;
    r.stop_after = 1;
    start_and_run(&r, &c3);
    assert_int_equal(c3.error, UCALL_OK);
    assert_true(c3.reused);
    assert_int_equal(atomic_load(&srv.connections) - before, 1);
    ucurl_release(&c3);
    run_free(&r);
}

static uint16_t
closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void
test_connect_refused(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", closed_port());
    ucall c;
    call_init(&c, &r, "POST", "/hello");
    c.body = KAPI_STR("x");
    start_and_run(&r, &c);
    assert_int_equal(r.done_count, 1);
    assert_int_equal(c.error, UCALL_ECONNECT);
    assert_string_equal(c.detail, "connection refused");
    assert_false(c.sent);
    assert_false(c.reused);
    ucurl_release(&c);
    run_free(&r);
}

static void
test_response_timeout(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/slow");
    c.timeout_ms = 300;
    start_and_run(&r, &c);
    assert_int_equal(c.error, UCALL_ETIMEOUT);
    assert_true(c.sent);
    assert_false(c.reused);
    assert_string_equal(c.detail, "response timed out");
    ucurl_release(&c);
    run_free(&r);
}

/* With one connection allowed, a call waiting for the slot still meets its
 * deadline, and nothing of it was sent. */
static void
test_queue_timeout(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall slow, queued;
    call_init(&slow, &r, "GET", "/slow");
    slow.max_connections = 1;
    call_init(&queued, &r, "GET", "/hello");
    queued.max_connections = 1;
    queued.timeout_ms = 300;
    r.in_start = true;
    assert_int_equal(ucurl_start(r.u, &slow), KAPI_OK);
    r.in_start = false;
    start_and_run(&r, &queued);
    assert_int_equal(r.done_count, 1);
    assert_int_equal(queued.error, UCALL_ETIMEOUT);
    assert_false(queued.sent);
    assert_false(queued.reused);
    ucurl_cancel(r.u, &slow);
    ucurl_release(&queued);
    run_free(&r);
}

static void
test_body_too_big(void **state)
{
    (void)state;
    const char *paths[] = {"/big", "/bigchunked"};
    for (size_t i = 0; i < 2; i++) {
        run r;
        run_init(&r, "localhost", srv.port);
        ucall c;
        call_init(&c, &r, "GET", paths[i]);
        c.max_response_bytes = 100;
        start_and_run(&r, &c);
        assert_int_equal(c.error, UCALL_ETOOBIG);
        assert_null(c.resp_body);
        ucurl_release(&c);

        /* Exactly at the limit is fine. */
        ucall ok;
        call_init(&ok, &r, "GET", paths[i]);
        ok.max_response_bytes = BIG_LEN;
        r.done_count = 0;
        start_and_run(&r, &ok);
        assert_int_equal(ok.error, UCALL_OK);
        assert_int_equal(ok.resp_body_len, BIG_LEN);
        assert_int_equal(ok.resp_body[BIG_LEN - 1], 'b');
        ucurl_release(&ok);
        run_free(&r);
    }
}

static void
test_partial_body_is_reset(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/partial");
    start_and_run(&r, &c);
    assert_int_equal(c.error, UCALL_ERESET);
    assert_true(c.sent);
    ucurl_release(&c);
    run_free(&r);
}

static void
test_head_too_big(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/hugehead");
    start_and_run(&r, &c);
    assert_int_equal(c.error, UCALL_ETOOBIG);
    assert_string_equal(c.detail, "response header section too large");
    assert_null(c.resp_headers);
    ucurl_release(&c);
    run_free(&r);
}

static void
test_folded_header_joined(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/fold");
    start_and_run(&r, &c);
    assert_int_equal(c.error, UCALL_OK);
    assert_header(&c, "X-Fold", "one two");
    assert_header(&c, "Content-Length", "0");
    ucurl_release(&c);
    run_free(&r);
}

typedef struct cancel_ctx {
    run *r;
    ucall *call;
    loop_timer t;
} cancel_ctx;

static void
cancel_fired(loop_timer *t)
{
    cancel_ctx *cc = t->data;
    ucurl_cancel(cc->r->u, cc->call);
    ucurl_cancel(cc->r->u, cc->call); /* a no-op the second time */
    loop_timer_start(cc->r->lp, &cc->r->stop_timer, 300);
}

/* Cancelled mid-exchange: done never runs and the connection is closed. */
static void
test_cancel_in_flight(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    int closed = atomic_load(&srv.slow_closed);
    ucall c;
    call_init(&c, &r, "GET", "/slow");
    cancel_ctx cc = {.r = &r, .call = &c};
    loop_timer_init(&cc.t, cancel_fired, &cc);
    loop_timer_start(r.lp, &cc.t, 200);
    start_and_run(&r, &c);
    assert_int_equal(r.done_count, 0);
    for (int i = 0; i < 100 && atomic_load(&srv.slow_closed) == closed; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&srv.slow_closed), closed + 1);
    ucurl_release(&c);
    run_free(&r);
}

/* Cancelled right after start, before the loop ran at all. */
static void
test_cancel_before_run(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/hello");
    assert_int_equal(ucurl_start(r.u, &c), KAPI_OK);
    ucurl_cancel(r.u, &c);
    loop_timer_start(r.lp, &r.stop_timer, 200);
    assert_int_equal(loop_run(r.lp), KAPI_OK);
    assert_int_equal(r.done_count, 0);

    /* The ucurl still works afterwards. */
    ucall c2;
    call_init(&c2, &r, "GET", "/hello");
    start_and_run(&r, &c2);
    assert_int_equal(c2.error, UCALL_OK);
    ucurl_release(&c2);
    run_free(&r);
}

/* Even the fastest failure completes from the loop, not from ucurl_start:
 * nothing happens until the loop runs. */
static void
test_done_never_inside_start(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", closed_port());
    ucall c[4];
    for (int i = 0; i < 4; i++) {
        call_init(&c[i], &r, "GET", "/hello");
        r.in_start = true;
        assert_int_equal(ucurl_start(r.u, &c[i]), KAPI_OK);
        r.in_start = false;
    }
    usleep(50000);
    assert_int_equal(r.done_count, 0);
    r.stop_after = 4;
    assert_int_equal(loop_run(r.lp), KAPI_OK);
    assert_int_equal(r.done_count, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c[i].error, UCALL_ECONNECT);
        ucurl_release(&c[i]);
    }
    run_free(&r);
}

/* ucurl_free with calls in flight drops them without done (and, under
 * ASan, without leaks). */
static void
test_free_with_calls_in_flight(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall slow, pending;
    call_init(&slow, &r, "GET", "/slow");
    call_init(&pending, &r, "GET", "/hello");
    assert_int_equal(ucurl_start(r.u, &slow), KAPI_OK);
    loop_timer_start(r.lp, &r.stop_timer, 200);
    assert_int_equal(loop_run(r.lp), KAPI_OK);
    assert_int_equal(ucurl_start(r.u, &pending), KAPI_OK);
    run_free(&r);
    assert_int_equal(r.done_count, 0);
}

static void
test_invalid_calls(void **state)
{
    (void)state;
    run r;
    run_init(&r, "localhost", srv.port);
    ucall c;
    call_init(&c, &r, "GET", "/hello");
    r.origin.o.tls = false;
    assert_int_equal(ucurl_start(r.u, &c), KAPI_EINVAL);
    r.origin.o.tls = true;
    c.done = NULL;
    assert_int_equal(ucurl_start(r.u, &c), KAPI_EINVAL);
    c.done = on_done;
    c.method = (kapi_str){"", 0};
    assert_int_equal(ucurl_start(r.u, &c), KAPI_EINVAL);
    assert_int_equal(ucurl_start(NULL, &c), KAPI_EINVAL);
    ucurl_release(&c); /* safe on a call that never ran */
    run_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_round_trip),
        cmocka_unit_test(test_verify_fails_with_system_ca),
        cmocka_unit_test(test_verify_fails_on_host_name),
        cmocka_unit_test(test_post_body_exact),
        cmocka_unit_test(test_methods_and_lengths),
        cmocka_unit_test(test_interim_response_skipped),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_response_timeout),
        cmocka_unit_test(test_queue_timeout),
        cmocka_unit_test(test_body_too_big),
        cmocka_unit_test(test_head_too_big),
        cmocka_unit_test(test_folded_header_joined),
        cmocka_unit_test(test_partial_body_is_reset),
        cmocka_unit_test(test_cancel_in_flight),
        cmocka_unit_test(test_cancel_before_run),
        cmocka_unit_test(test_done_never_inside_start),
        cmocka_unit_test(test_free_with_calls_in_flight),
        cmocka_unit_test(test_invalid_calls),
    };
    /* As in main.c: a peer's close must not kill the process (the server
     * thread's SSL_write; curl with CURLOPT_NOSIGNAL relies on it too). */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, server_start, server_stop);
}
