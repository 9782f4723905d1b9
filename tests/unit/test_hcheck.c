/* test_hcheck.c -- unit tests for core/hcheck.c: active health checks run
 * on a real loop and uclient against test servers in threads of this test
 * on 127.0.0.1 whose answer to GET /health the test flips.
 *
 * Covered: the first check right away, then one every interval_ms per
 * target; a target marked down after `unhealthy` failing checks and up
 * after `healthy` passing ones, with the log lines; the check request
 * (path, Host, User-Agent); configured statuses honoured both ways; a
 * refused connection and a check slower than timeout_ms failing; only
 * groups with a health path checked; hcheck_stop cancelling a check in
 * flight and a pending timer (nothing runs later: ASan finds a done that
 * would touch the freed probes). A guard timer fails a test that would
 * hang. The thresholds themselves are test_health.c's. */
#include "hcheck.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "uclient.h"

#define GUARD_MS 5000
#define MAX_ARRIVALS 64
#define REC_MAX 2048

static uint64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the test server: one connection at a time, Connection: close ------- */

typedef struct srv {
    int lfd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stopping;
    atomic_int status;   /* the answer to every request */
    atomic_int delay_ms; /* answer that late, unless the client closes first */
    atomic_int requests;
    atomic_int ok_answers;    /* answers with a status in 200..399 */
    atomic_int error_answers; /* answers with any other status */
    atomic_int early_closes;  /* the client closed while we held the answer */
    pthread_mutex_t mu;       /* guards what follows */
    uint64_t arrivals[MAX_ARRIVALS];
    char last[REC_MAX];
} srv;

/* Waits up to MS for FD to be readable; false on timeout or stop. */
static bool
srv_wait_readable(srv *s, int fd, int ms)
{
    uint64_t end = wall_ms() + (uint64_t)ms;
    while (!atomic_load(&s->stopping)) {
        uint64_t now = wall_ms();
        if (now >= end)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
        int left = (int)(end - now);
        if (poll(&pfd, 1, left < 20 ? left : 20) > 0)
            return true;
    }
    return false;
}

static void
srv_serve(srv *s, int fd)
{
    char buf[REC_MAX];
    size_t len = 0;
    while (!memmem(buf, len, "\r\n\r\n", 4)) {
        if (len == sizeof(buf) - 1 || !srv_wait_readable(s, fd, 2000))
            return;
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
    }
    buf[len] = '\0';
    pthread_mutex_lock(&s->mu);
    int k = atomic_load(&s->requests);
    if (k < MAX_ARRIVALS)
        s->arrivals[k] = wall_ms();
    memcpy(s->last, buf, len + 1);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->requests, 1);

    int delay = atomic_load(&s->delay_ms);
    if (delay > 0 && srv_wait_readable(s, fd, delay)) {
        char c;
        if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
            atomic_fetch_add(&s->early_closes, 1);
            return;
        }
    }
    if (atomic_load(&s->stopping))
        return;
    int status = atomic_load(&s->status);
    char resp[160];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 %d Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                     status);
    atomic_fetch_add(status >= 200 && status <= 399 ? &s->ok_answers : &s->error_answers, 1);
    (void)!send(fd, resp, (size_t)n, MSG_NOSIGNAL);
}

static void *
srv_main(void *arg)
{
    srv *s = arg;
    while (!atomic_load(&s->stopping)) {
        if (!srv_wait_readable(s, s->lfd, 50))
            continue;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        srv_serve(s, fd);
        close(fd);
    }
    return NULL;
}

/* A socket bound to a free 127.0.0.1 port; listening when LISTENING. */
static int
bind_loopback(bool listening, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (listening)
        assert_int_equal(listen(fd, 16), 0);
    socklen_t alen = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void
srv_start(srv *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    atomic_store(&s->status, 200);
    s->lfd = bind_loopback(true, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

static void
srv_stop(srv *s)
{
    atomic_store(&s->stopping, true);
    pthread_join(s->thread, NULL);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
}

static int
requests(srv *s)
{
    return atomic_load(&s->requests);
}

static uint64_t
arrival(srv *s, int k)
{
    pthread_mutex_lock(&s->mu);
    uint64_t t = s->arrivals[k];
    pthread_mutex_unlock(&s->mu);
    return t;
}

/* ---- stderr capture (log.c writes its lines there) ---------------------- */

static char captured[32768];
static int saved_stderr = -1;
static FILE *capture_file;

static void
capture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written meanwhile. */
static const char *
capture_end(void)
{
    if (!capture_file)
        return captured;
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    saved_stderr = -1;
    rewind(capture_file);
    size_t n = fread(captured, 1, sizeof(captured) - 1, capture_file);
    captured[n] = '\0';
    fclose(capture_file);
    capture_file = NULL;
    return captured;
}

static void
assert_logged(const char *log, const char *line)
{
    if (!strstr(log, line))
        fail_msg("missing log line \"%s\" in:\n%s", line, log);
}

/* ---- the loop side ------------------------------------------------------ */

#define NGROUPS 2
#define NTARGETS 2

typedef struct env env;
struct env {
    srv s[2];
    uint16_t refused_port;
    loop *lp;
    uclient *uc;
    loop_timer guard, poll;
    bool (*pred)(env *e);
    config file;
    config_upstream cu[NGROUPS];
    config_target ct[NGROUPS][NTARGETS];
    char url[NGROUPS][NTARGETS][64];
    int statuses[4];
    upstream g[NGROUPS];
    size_t ngroups;
    hcheck *h;
};

static void
guard_fired(loop_timer *t)
{
    (void)t;
    fail_msg("the loop did not stop within the guard time");
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

/* Runs the loop for about MS. */
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

/* Group GI's config: N targets at PORTS, checked at /health (defaults a
 * test may change before build). */
static void
group_config(env *e, size_t gi, size_t n, const uint16_t *ports)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(e->url[gi][i], sizeof(e->url[gi][i]), "http://127.0.0.1:%u", ports[i]);
        e->ct[gi][i] = (config_target){.url = e->url[gi][i],
                                       .host = "127.0.0.1",
                                       .port = ports[i],
                                       .base_path = "",
                                       .weight = 1,
                                       .json_path = "upstreams.api.targets[i]",
                                       .line = 1,
                                       .col = 1};
    }
    e->cu[gi] = (config_upstream){
        .name = gi == 0 ? "api" : "other",
        .targets = e->ct[gi],
        .ntargets = n,
        .keepalive = 4,
        .max_connections = 1,
        .connect_timeout_ms = 1000,
        .try_timeout_ms = 2000,
        .timeout_ms = 4000,
        .max_response_bytes = 1 << 20,
        .tls_verify = true,
        .health = {.path = "/health",
                   .interval_ms = 100,
                   .timeout_ms = 500,
                   .healthy = 2,
                   .unhealthy = 3},
        .passive = {.count_5xx = true, .recover_ms = 10000},
        .breaker = {.window = 20,
                    .min_requests = 10,
                    .cooldown_ms = 1000,
                    .max_cooldown_ms = 30000,
                    .half_open_probes = 1},
    };
}

static void
build(env *e, size_t ngroups)
{
    for (size_t i = 0; i < ngroups; i++) {
        char err[256] = "";
        if (upstream_build(&e->file, &e->cu[i], &e->g[i], err, sizeof(err)) != KAPI_OK)
            fail_msg("upstream_build: %s", err);
        e->ngroups = i + 1;
    }
}

static void
start(env *e)
{
    assert_int_equal(hcheck_start(e->g, e->ngroups, &e->h), KAPI_OK);
    assert_non_null(e->h);
}

static void
stop(env *e)
{
    hcheck_stop(e->h);
    e->h = NULL;
}

static bool
is_up(env *e, size_t gi, size_t ti)
{
    return health_is_up(&e->g[gi].targets[ti].health, loop_now_ms(e->lp));
}

static int
setup(void **state)
{
    env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    for (int i = 0; i < 2; i++)
        srv_start(&e->s[i]);
    int fd = bind_loopback(false, &e->refused_port);
    close(fd);
    assert_int_equal(loop_new(&e->lp), KAPI_OK);
    assert_int_equal(uclient_new(e->lp, &e->uc), KAPI_OK);
    uclient_set_current(e->uc);
    loop_timer_init(&e->guard, guard_fired, e);
    loop_timer_init(&e->poll, poll_pred, e);
    e->file.file = "kapi.json";
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    env *e = *state;
    if (capture_file) { /* a test failed while capturing: show what it logged */
        const char *log = capture_end();
        fputs(log, stderr);
    }
    hcheck_stop(e->h);
    uclient_set_current(NULL);
    uclient_free(e->uc);
    loop_free(e->lp);
    for (int i = 0; i < 2; i++)
        srv_stop(&e->s[i]);
    for (size_t i = 0; i < e->ngroups; i++)
        upstream_destroy(&e->g[i]);
    free(e);
    return 0;
}

/* ---- down and up -------------------------------------------------------- */

static bool
both_checked_twice(env *e)
{
    return atomic_load(&e->s[0].ok_answers) >= 2 && atomic_load(&e->s[1].ok_answers) >= 2;
}

static bool
target0_down(env *e)
{
    return !is_up(e, 0, 0);
}

static bool
target0_up(env *e)
{
    return is_up(e, 0, 0);
}

static void
test_down_then_up(void **state)
{
    env *e = *state;
    enum { INTERVAL = 100 };
    uint16_t ports[2] = {e->s[0].port, e->s[1].port};
    group_config(e, 0, 2, ports);
    e->cu[0].health.interval_ms = INTERVAL;
    build(e, 1);
    capture_begin();
    uint64_t t0 = wall_ms();
    start(e);
    run_until(e, both_checked_twice);
    /* the first check of every target right away, not after an interval */
    assert_true(arrival(&e->s[0], 0) - t0 < INTERVAL / 2);
    assert_true(arrival(&e->s[1], 0) - t0 < INTERVAL / 2);
    assert_true(is_up(e, 0, 0) && is_up(e, 0, 1));

    /* 3 failing checks in a row take it out, not fewer */
    atomic_store(&e->s[0].status, 503);
    run_until(e, target0_down);
    assert_int_equal(atomic_load(&e->s[0].error_answers), 3);
    assert_true(is_up(e, 0, 1));

    /* 2 passing ones bring it back */
    int oks = atomic_load(&e->s[0].ok_answers);
    atomic_store(&e->s[0].status, 200);
    run_until(e, target0_up);
    assert_int_equal(atomic_load(&e->s[0].ok_answers) - oks, 2);
    stop(e);
    const char *log = capture_end();

    char want[192];
    snprintf(want, sizeof(want),
             " warn [upstream] api: target %s is unhealthy: 3 failed active checks (last "
             "check: answered)\n",
             e->url[0][0]);
    assert_logged(log, want);
    snprintf(want, sizeof(want),
             " info [upstream] api: target %s is healthy: 2 passing active checks (last "
             "check: answered)\n",
             e->url[0][0]);
    assert_logged(log, want);
    assert_null(strstr(log, e->url[0][1]));

    /* one check per interval, never overlapping */
    int n = requests(&e->s[0]);
    assert_true(n >= 7);
    for (int k = 1; k < n && k < MAX_ARRIVALS; k++) {
        uint64_t gap = arrival(&e->s[0], k) - arrival(&e->s[0], k - 1);
        if (gap + 3 < INTERVAL || gap > INTERVAL + 60)
            fail_msg("check %d came %llu ms after the previous one, want about %d", k,
                     (unsigned long long)gap, INTERVAL);
    }

    /* what a check sends */
    char want_host[64];
    snprintf(want_host, sizeof(want_host), "\r\nHost: 127.0.0.1:%u\r\n", e->s[0].port);
    pthread_mutex_lock(&e->s[0].mu);
    bool path_ok = strncmp(e->s[0].last, "GET /health HTTP/1.1\r\n", 22) == 0;
    bool host_ok = strstr(e->s[0].last, want_host) != NULL;
    bool ua_ok = strstr(e->s[0].last, "\r\nUser-Agent: kapi-health-check\r\n") != NULL;
    pthread_mutex_unlock(&e->s[0].mu);
    assert_true(path_ok);
    assert_true(host_ok);
    assert_true(ua_ok);
}

static void
test_statuses_honoured(void **state)
{
    env *e = *state;
    enum { INTERVAL = 50 };
    group_config(e, 0, 1, &e->s[0].port);
    e->statuses[0] = 503;
    e->statuses[1] = 418;
    e->cu[0].health.statuses = e->statuses;
    e->cu[0].health.nstatuses = 2;
    e->cu[0].health.interval_ms = INTERVAL;
    e->cu[0].health.unhealthy = 2;
    e->cu[0].health.healthy = 1;
    build(e, 1);
    atomic_store(&e->s[0].status, 503);
    capture_begin();
    start(e);
    run_for(e, 3 * INTERVAL + 20);
    assert_true(atomic_load(&e->s[0].error_answers) >= 3);
    assert_true(is_up(e, 0, 0)); /* 503 is listed: it passes */

    /* 200 is not listed: it fails */
    int errors = atomic_load(&e->s[0].error_answers);
    int oks = atomic_load(&e->s[0].ok_answers);
    atomic_store(&e->s[0].status, 200);
    run_until(e, target0_down);
    assert_int_equal(atomic_load(&e->s[0].ok_answers) - oks, 2);
    assert_int_equal(atomic_load(&e->s[0].error_answers), errors);

    atomic_store(&e->s[0].status, 418);
    errors = atomic_load(&e->s[0].error_answers);
    run_until(e, target0_up);
    assert_int_equal(atomic_load(&e->s[0].error_answers) - errors, 1);
    stop(e);
    const char *log = capture_end();
    assert_logged(log, "is unhealthy: 2 failed active checks");
    assert_logged(log, "is healthy: 1 passing active check (last check: answered)");
}

static bool
both_targets_down(env *e)
{
    return !is_up(e, 0, 0) && !is_up(e, 0, 1);
}

static void
test_refused_and_slow_fail(void **state)
{
    env *e = *state;
    uint16_t ports[2] = {e->refused_port, e->s[0].port};
    group_config(e, 0, 2, ports);
    e->cu[0].health.interval_ms = 50;
    e->cu[0].health.timeout_ms = 100;
    e->cu[0].health.unhealthy = 2;
    build(e, 1);
    atomic_store(&e->s[0].delay_ms, 1000); /* slower than the check's timeout */
    capture_begin();
    uint64_t t0 = wall_ms();
    start(e);
    run_until(e, both_targets_down);
    uint64_t took = wall_ms() - t0;
    stop(e);
    const char *log = capture_end();
    /* two timeouts and an interval: about 250 ms, not the server's 1000 */
    assert_true(took >= 240 && took < 900);
    assert_int_equal(requests(&e->s[0]), 2);
    assert_int_equal(atomic_load(&e->s[0].ok_answers) + atomic_load(&e->s[0].error_answers), 0);
    char want[192];
    snprintf(want, sizeof(want),
             "api: target %s is unhealthy: 2 failed active checks (last check: connection "
             "refused)\n",
             e->url[0][0]);
    assert_logged(log, want);
    snprintf(want, sizeof(want),
             "api: target %s is unhealthy: 2 failed active checks (last check: timed out",
             e->url[0][1]);
    assert_logged(log, want);
}

/* ---- which groups ------------------------------------------------------- */

static void
test_only_groups_with_a_path(void **state)
{
    env *e = *state;
    group_config(e, 0, 1, &e->s[0].port);
    group_config(e, 1, 1, &e->s[1].port);
    e->cu[0].health.path = NULL;
    build(e, 2);
    start(e);
    run_for(e, 50);
    stop(e);
    assert_int_equal(requests(&e->s[0]), 0);
    assert_int_equal(requests(&e->s[1]), 1);

    /* no group with a path: no checker, nothing to stop */
    hcheck *h = (hcheck *)e;
    assert_int_equal(hcheck_start(e->g, 1, &h), KAPI_OK);
    assert_null(h);
    hcheck_stop(NULL);

    /* checks need the loop thread's client */
    uclient_set_current(NULL);
    h = (hcheck *)e;
    assert_int_equal(hcheck_start(e->g, 2, &h), KAPI_ESTATE);
    assert_null(h);
    uclient_set_current(e->uc);
}

/* ---- stop --------------------------------------------------------------- */

static bool
s0_got_request(env *e)
{
    return requests(&e->s[0]) >= 1;
}

static bool
s0_saw_close(env *e)
{
    return atomic_load(&e->s[0].early_closes) >= 1;
}

static void
test_stop_cancels_check_in_flight(void **state)
{
    env *e = *state;
    group_config(e, 0, 1, &e->s[0].port);
    e->cu[0].health.interval_ms = 50;
    e->cu[0].health.timeout_ms = 300;
    e->cu[0].health.unhealthy = 1;
    build(e, 1);
    atomic_store(&e->s[0].delay_ms, 2000);
    start(e);
    run_until(e, s0_got_request);
    stop(e);
    run_until(e, s0_saw_close); /* the check's connection is closed */
    run_for(e, 400);            /* past the check's own timeout */
    assert_int_equal(requests(&e->s[0]), 1);
    assert_true(is_up(e, 0, 0)); /* no verdict was reported */
}

static bool
s0_answered_twice(env *e)
{
    return atomic_load(&e->s[0].ok_answers) >= 2;
}

static void
test_stop_between_checks(void **state)
{
    env *e = *state;
    group_config(e, 0, 1, &e->s[0].port);
    e->cu[0].health.interval_ms = 50;
    build(e, 1);
    start(e);
    run_until(e, s0_answered_twice);
    run_for(e, 10); /* the answer is read; the next check waits for its timer */
    stop(e);
    run_for(e, 200);
    assert_int_equal(requests(&e->s[0]), 2);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_down_then_up),
        T(test_statuses_honoured),
        T(test_refused_and_slow_fail),
        T(test_only_groups_with_a_path),
        T(test_stop_cancels_check_in_flight),
        T(test_stop_between_checks),
    };
#undef T
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    origin_registry_free();
    return failed;
}
