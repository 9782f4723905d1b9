/* upstreams.c -- integration: the real kapi proxying to real test origins
 * (tests/origin) through upstream groups. Balancing (weighted round robin
 * exact per cycle, least_conn, hash on a header, the client address or a
 * path parameter); failover and retries only where they are safe; active
 * and passive health checks; the circuit breaker's open, half-open and
 * closed states; a reload while requests are in flight upstream; connect,
 * try and total timeouts.
 *
 * Per-target traffic is counted with the X-Origin header every origin
 * adds; exact request counts come from an origin's /stats, read directly.
 * One worker thread, so counts and least_conn are exact. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *config_template =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1, \"module_dirs\": [\"@FUNCS@\"],\n"
    "  \"upstreams\": {\n"
    "    \"rr\": { \"targets\": [ { \"url\": \"http://127.0.0.1:@A@\", \"weight\": 1 },\n"
    "                         { \"url\": \"http://127.0.0.1:@B@\", \"weight\": 3 } ] },\n"
    "    \"lc\": { \"targets\": [\"http://127.0.0.1:@A@\", \"http://127.0.0.1:@B@\"],\n"
    "            \"balance\": \"least_conn\" },\n"
    "    \"hh\": { \"targets\": [\"http://127.0.0.1:@A@\", \"http://127.0.0.1:@B@\"],\n"
    "            \"balance\": \"hash\", \"hash_on\": \"header:X-User\" },\n"
    "    \"haddr\": { \"targets\": [\"http://127.0.0.1:@A@\", \"http://127.0.0.1:@B@\"],\n"
    "               \"balance\": \"hash\" },\n"
    "    \"hparam\": { \"targets\": [\"http://127.0.0.1:@A@\", \"http://127.0.0.1:@B@\"],\n"
    "                \"balance\": \"hash\", \"hash_on\": \"param:id\" },\n"
    "    \"fo\": { \"targets\": [\"http://127.0.0.1:@DEAD1@\", \"http://127.0.0.1:@A@\"],\n"
    "            \"breaker\": { \"failures\": 0 } },\n"
    "    \"fohash\": { \"targets\": [\"http://127.0.0.1:@DEAD1@\", \"http://127.0.0.1:@A@\"],\n"
    "                \"balance\": \"hash\", \"hash_on\": \"header:X-User\",\n"
    "                \"breaker\": { \"failures\": 0 } },\n"
    "    \"fo2\": { \"targets\": [\"http://127.0.0.1:@DEAD1@\", \"http://127.0.0.1:@DEAD2@\"],\n"
    "             \"breaker\": { \"failures\": 0 } },\n"
    "    \"fopost\": { \"targets\": [\"http://127.0.0.1:@DEAD2@\", \"http://127.0.0.1:@A@\"],\n"
    "                \"breaker\": { \"failures\": 0 } },\n"
    "    \"drop\": { \"targets\": [\"http://127.0.0.1:@D1@\", \"http://127.0.0.1:@D2@\"],\n"
    "              \"breaker\": { \"failures\": 0 } },\n"
    "    \"drop1\": { \"targets\": [\"http://127.0.0.1:@D1@\"],\n"
    "               \"breaker\": { \"failures\": 0 } },\n"
    "    \"active\": { \"targets\": [\"http://127.0.0.1:@H1@\", \"http://127.0.0.1:@H2@\"],\n"
    "                \"health\": { \"path\": \"/health\", \"interval_ms\": 100,\n"
    "                            \"timeout_ms\": 300, \"healthy\": 2, \"unhealthy\": 2 } },\n"
    "    \"passive\": { \"targets\": [\"http://127.0.0.1:@A@/status\",\n"
    "                             \"http://127.0.0.1:@B@/big\"],\n"
    "                 \"passive\": { \"failures\": 2, \"recover_ms\": 600 },\n"
    "                 \"breaker\": { \"failures\": 0 } },\n"
    "    \"br\": { \"targets\": [\"http://127.0.0.1:@C@\"],\n"
    "            \"breaker\": { \"failures\": 3, \"cooldown_ms\": 300,\n"
    "                         \"max_cooldown_ms\": 5000 } },\n"
    "    \"brstop\": { \"targets\": [\"http://127.0.0.1:@E@\"], \"retries\": 0,\n"
    "                \"breaker\": { \"failures\": 3, \"cooldown_ms\": 300 } },\n"
    "    \"tt\": { \"targets\": [\"http://127.0.0.1:@T@\"],\n"
    "            \"try_timeout_ms\": 300, \"retries\": 1,\n"
    "            \"breaker\": { \"failures\": 0 } },\n"
    "    \"tot\": { \"targets\": [\"http://127.0.0.1:@T@\"],\n"
    "             \"timeout_ms\": 400, \"retries\": 5,\n"
    "             \"breaker\": { \"failures\": 0 } },\n"
    "    \"ct\": { \"targets\": [\"http://127.0.0.1:@HOLE@\"],\n"
    "            \"connect_timeout_ms\": 200, \"try_timeout_ms\": 5000, \"retries\": 0,\n"
    "            \"breaker\": { \"failures\": 0 } }\n"
    "  },\n"
    "  \"routes\": [\n"
    "    { \"path\": \"/rr\",\n"
    "      \"target\": { \"upstream\": \"rr\", \"path\": \"/hello\" } },\n"
    "    { \"path\": \"/lc/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"lc\" } },\n"
    "    { \"path\": \"/hh\",\n"
    "      \"target\": { \"upstream\": \"hh\", \"path\": \"/hello\" } },\n"
    "    { \"path\": \"/haddr\",\n"
    "      \"target\": { \"upstream\": \"haddr\", \"path\": \"/hello\" } },\n"
    "    { \"path\": \"/hp/{id}\",\n"
    "      \"target\": { \"upstream\": \"hparam\", \"path\": \"/echo/{id}\" } },\n"
    "    { \"path\": \"/fo\",\n"
    "      \"target\": { \"upstream\": \"fo\", \"path\": \"/hello\" } },\n"
    "    { \"path\": \"/fohash\",\n"
    "      \"target\": { \"upstream\": \"fohash\", \"path\": \"/hello\" } },\n"
    "    { \"path\": \"/fo2\",\n"
    "      \"target\": { \"upstream\": \"fo2\", \"path\": \"/hello\" } },\n"
    "    { \"path\": \"/fopost\",\n"
    "      \"target\": { \"upstream\": \"fopost\", \"path\": \"/echo\" } },\n"
    "    { \"path\": \"/dr2\",\n"
    "      \"target\": { \"upstream\": \"drop\", \"path\": \"/drop\" } },\n"
    "    { \"path\": \"/dr1\",\n"
    "      \"target\": { \"upstream\": \"drop1\", \"path\": \"/drop\" } },\n"
    "    { \"path\": \"/ac\",\n"
    "      \"target\": { \"upstream\": \"active\", \"path\": \"/hello\" } },\n"
    "    { \"path\": \"/pv\",\n"
    "      \"target\": { \"upstream\": \"passive\", \"path\": \"/500\" } },\n"
    "    { \"path\": \"/br/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"br\" } },\n"
    "    { \"path\": \"/bs/*\", \"strip_prefix\": true,\n"
    "      \"target\": { \"upstream\": \"brstop\" } },\n"
    "    { \"path\": \"/tt\",\n"
    "      \"target\": { \"upstream\": \"tt\", \"path\": \"/slow/2000\" } },\n"
    "    { \"path\": \"/tot\",\n"
    "      \"target\": { \"upstream\": \"tot\", \"path\": \"/slow/2000\" } },\n"
    "    { \"path\": \"/ct\",\n"
    "      \"target\": { \"upstream\": \"ct\", \"path\": \"/hello\" } }\n"
    "  ] }\n";

/* The reload test's own kapi: one route, first to origin a, then to b. */
static const char *reload_template =
    "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 2, \"module_dirs\": [\"@FUNCS@\"],\n"
    "  \"routes\": [ { \"path\": \"/rl/*\", \"strip_prefix\": true,\n"
    "                \"target\": { \"url\": \"http://127.0.0.1:@P@\" } } ] }\n";

/* a, b: shared traffic; c, e: the breakers' (e is stopped and restarted
 * on its port); d1, d2: /drop only (exact counts, never a pooled
 * connection); h1, h2: health toggles; t: timeouts (its /slow requests
 * outlive the tries). */
static kh_origin oa, ob, oc, od1, od2, oh1, oh2, ot, oe;
static unsigned dead1, dead2; /* ports nothing listens on */
static unsigned hole;         /* a port whose SYNs are dropped */
static int hole_fds[3] = {-1, -1, -1};

/* ---- helpers ---- */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A port that refuses connections: an origin's, after it stopped. */
static unsigned
dead_port(const char *name)
{
    kh_origin o;
    if (kh_origin_start(&o, name, NULL) != 0)
        return 0;
    unsigned port = o.port;
    kh_origin_stop(&o);
    return port;
}

/* A listener with a full accept queue (backlog 0, one connection queued
 * and never accepted): the kernel drops further SYNs, so a connect to it
 * hangs until the connector gives up. */
static unsigned
blackhole_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 0) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return 0;
    hole_fds[0] = fd;
    for (int i = 1; i < 3; i++) {
        hole_fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        (void)connect(hole_fds[i], (struct sockaddr *)&a, sizeof(a)); /* EINPROGRESS */
    }
    sleep_ms(50); /* the first handshake completes and fills the queue */
    return ntohs(a.sin_port);
}

/* Replaces @NAME@ in *TEXT by PORT (frees the old text). */
static bool
put_port(char **text, const char *name, unsigned port)
{
    char v[16];
    snprintf(v, sizeof(v), "%u", port);
    char *next = *text ? kh_subst(*text, name, v) : NULL;
    free(*text);
    *text = next;
    return next != NULL;
}

/* Sends METHOD PATH with HEADERS (and BODY when not NULL); returns the
 * status (-1 without a response) and copies the X-Origin value into
 * ORIGIN ("" when absent). */
static long
send_req(kh_server *s, const char *method, const char *path, const char *const *headers,
         const char *body, char *origin, size_t len)
{
    kh_resp r;
    long status = kh_request(s, method, path, headers, body, body ? strlen(body) : 0, &r) == 0
                      ? r.status
                      : -1;
    if (!kh_header(&r, "x-origin", origin, len))
        origin[0] = '\0';
    kh_resp_free(&r);
    return status;
}

static long
get_from(const char *path, const char *const *headers, char *origin, size_t len)
{
    return send_req(&kh_group, "GET", path, headers, NULL, origin, len);
}

typedef struct tally {
    int by[8]; /* requests answered by each name in names[] */
    int other; /* by anything else, or not 200 */
} tally;

static const char *const names[] = {"a", "b", "c", "d1", "d2", "h1", "h2", "t"};
enum { A, B, C, D1, D2, H1, H2 }; /* indexes into names[] and tally.by[] */

/* N GETs of PATH; each 200 answer is counted under its X-Origin. */
static tally
count_origins(const char *path, const char *const *headers, int n)
{
    tally t = {.other = 0};
    for (int i = 0; i < n; i++) {
        char origin[32];
        long status = get_from(path, headers, origin, sizeof(origin));
        size_t k = 0;
        while (k < 8 && strcmp(origin, names[k]) != 0)
            k++;
        if (status == 200 && k < 8)
            t.by[k]++;
        else
            t.other++;
    }
    return t;
}

/* Occurrences of NEEDLE in S's log. */
static int
log_count(kh_server *s, const char *needle)
{
    FILE *f = fopen(s->log, "rb");
    if (!f)
        return 0;
    static char text[1 << 22];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    int count = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        count++;
    return count;
}

/* One request on its own thread, for requests in flight at once. */
typedef struct flight {
    kh_server *s;
    const char *path;
    long status;
    char origin[32];
    double seconds;
    pthread_t thread;
} flight;

static void *
fly(void *arg)
{
    flight *f = arg;
    double t0 = now_s();
    f->status = send_req(f->s, "GET", f->path, NULL, NULL, f->origin, sizeof(f->origin));
    f->seconds = now_s() - t0;
    return NULL;
}

static void
launch(flight *f, kh_server *s, const char *path)
{
    f->s = s;
    f->path = path;
    f->status = -1;
    f->origin[0] = '\0';
    assert_int_equal(pthread_create(&f->thread, NULL, fly, f), 0);
}

/* ---- balancing ---- */

/* Weights 1 and 3: smooth weighted round robin is exact over every run of
 * sum(weights) picks, so 40 requests are exactly 10 and 30. */
static void
test_round_robin_weights(void **state)
{
    (void)state;
    tally t = count_origins("/rr", NULL, 40);
    assert_int_equal(t.other, 0);
    assert_int_equal(t.by[A], 10);
    assert_int_equal(t.by[B], 30);
}

/* A request in flight on one target sends new quick ones to the other,
 * every time; round robin would alternate. */
static void
test_least_conn_avoids_busy_target(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++) {
        flight slow;
        launch(&slow, &kh_group, "/lc/slow/600");
        sleep_ms(150); /* the slow one holds its target now */
        char first[32] = "";
        for (int i = 0; i < 6; i++) {
            char origin[32];
            assert_int_equal(get_from("/lc/hello", NULL, origin, sizeof(origin)), 200);
            if (i == 0)
                strcpy(first, origin);
            assert_string_equal(origin, first);
        }
        pthread_join(slow.thread, NULL);
        assert_int_equal(slow.status, 200);
        assert_true(slow.origin[0] && strcmp(slow.origin, first) != 0);
    }
}

/* The same X-User always reaches the same target; different users spread
 * over both. */
static void
test_hash_on_header(void **state)
{
    (void)state;
    tally spread = {.other = 0};
    for (int u = 0; u < 16; u++) {
        char h[32];
        snprintf(h, sizeof(h), "X-User: user-%d", u);
        const char *const headers[] = {h, NULL};
        tally t = count_origins("/hh", headers, 4);
        assert_int_equal(t.other, 0);
        if (t.by[A] != 4 && t.by[B] != 4)
            fail_msg("X-User user-%d went to a %d times and to b %d times", u, t.by[A], t.by[B]);
        spread.by[t.by[A] ? A : B]++;
    }
    assert_true(spread.by[A] > 0 && spread.by[B] > 0);
    tally none = count_origins("/hh", NULL, 4); /* no X-User hashes as "" */
    assert_int_equal(none.other, 0);
    assert_true(none.by[A] == 4 || none.by[B] == 4);
}

/* Every request comes from 127.0.0.1: one target takes them all. */
static void
test_hash_on_client_addr(void **state)
{
    (void)state;
    tally t = count_origins("/haddr", NULL, 12);
    assert_int_equal(t.other, 0);
    assert_true(t.by[A] == 12 || t.by[B] == 12);
}

/* The route's {id} decides the target; the template path still applies. */
static void
test_hash_on_path_param(void **state)
{
    (void)state;
    tally spread = {.other = 0};
    for (int id = 0; id < 16; id++) {
        char path[32];
        snprintf(path, sizeof(path), "/hp/item%d", id);
        tally t = count_origins(path, NULL, 3);
        assert_int_equal(t.other, 0);
        if (t.by[A] != 3 && t.by[B] != 3)
            fail_msg("%s went to a %d times and to b %d times", path, t.by[A], t.by[B]);
        spread.by[t.by[A] ? A : B]++;
    }
    assert_true(spread.by[A] > 0 && spread.by[B] > 0);
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/hp/x7", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"path\":\"/echo/x7\""));
    kh_resp_free(&r);
}

/* ---- failover and retries ---- */

/* One target refuses connections: each GET that tried it first is
 * retried on the other, so every one answers 200 from a; the log names
 * the refusing target. */
static void
test_failover_to_live_target(void **state)
{
    (void)state;
    char needle[128];
    snprintf(needle, sizeof(needle), "fo: try 1 to http://127.0.0.1:%u failed", dead1);
    tally t = count_origins("/fo", NULL, 10);
    assert_int_equal(t.other, 0);
    assert_int_equal(t.by[A], 10);
    /* round robin sent about half of them to the dead target first */
    int failed_first = log_count(&kh_group, needle);
    if (failed_first < 3)
        fail_msg("only %d of 10 requests tried the refusing target first", failed_first);
    assert_true(kh_log_has(&kh_group, "connection refused"));
}

/* With hash balancing a key keeps choosing the refusing target; the
 * retry must still go to the other one, not back to the same. */
static void
test_failover_prefers_untried_target(void **state)
{
    (void)state;
    char needle[128];
    snprintf(needle, sizeof(needle), "fohash: try 1 to http://127.0.0.1:%u failed", dead1);
    for (int u = 0; u < 12; u++) {
        char h[32];
        snprintf(h, sizeof(h), "X-User: user-%d", u);
        const char *const headers[] = {h, NULL};
        tally t = count_origins("/fohash", headers, 2);
        assert_int_equal(t.other, 0);
        assert_int_equal(t.by[A], 2);
    }
    /* some users hash to the refusing target: their requests were retried */
    if (log_count(&kh_group, needle) < 2)
        fail_msg("no user hashed to the refusing target first");
    assert_int_equal(log_count(&kh_group, "fohash: try 2 to "), 0);
}

static void
test_all_targets_down_is_502(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        kh_resp r;
        assert_int_equal(kh_get(&kh_group, "/fo2", &r), 0);
        assert_int_equal(r.status, 502);
        assert_non_null(strstr(r.body, "\"status\":502"));
        kh_resp_free(&r);
    }
    /* each request made 1 + retries (2) tries, and both targets were tried */
    assert_int_equal(log_count(&kh_group, "fo2: try 3 to "), 3);
    unsigned dead[2] = {dead1, dead2};
    for (int d = 0; d < 2; d++) {
        int named = 0;
        for (int k = 1; k <= 3; k++) {
            char needle[128];
            snprintf(needle, sizeof(needle),
                     "fo2: try %d to http://127.0.0.1:%u failed: connection refused", k, dead[d]);
            named += log_count(&kh_group, needle);
        }
        if (named < 3)
            fail_msg("target on port %u was tried %d times over 3 requests", dead[d], named);
    }
}

static long
drop_requests(void)
{
    return kh_origin_stat(&od1, "requests") + kh_origin_stat(&od2, "requests");
}

/* A POST whose request was sent before the connection closed is not
 * retried: the origin may have acted on it. */
static void
test_post_sent_is_not_retried(void **state)
{
    (void)state;
    kh_origin_reset_stats(&od1);
    kh_origin_reset_stats(&od2);
    char origin[32];
    assert_int_equal(send_req(&kh_group, "POST", "/dr2", NULL, "payload", origin, sizeof(origin)),
                     502);
    assert_int_equal(drop_requests(), 1);
    assert_int_equal(send_req(&kh_group, "POST", "/dr1", NULL, "payload", origin, sizeof(origin)),
                     502);
    assert_int_equal(kh_origin_stat(&od1, "requests") + kh_origin_stat(&od2, "requests"), 2);
    assert_true(kh_log_has(&kh_group, "(request sent)"));
}

/* A GET is idempotent: 1 + retries (2) tries, spread over both targets
 * when there are two, all on the one target otherwise. */
static void
test_get_sent_is_retried(void **state)
{
    (void)state;
    kh_origin_reset_stats(&od1);
    kh_origin_reset_stats(&od2);
    kh_resp r;
    assert_int_equal(kh_get(&kh_group, "/dr2", &r), 0);
    assert_int_equal(r.status, 502);
    kh_resp_free(&r);
    long d1 = kh_origin_stat(&od1, "requests"), d2 = kh_origin_stat(&od2, "requests");
    assert_int_equal(d1 + d2, 3);
    assert_true(d1 >= 1 && d2 >= 1);

    kh_origin_reset_stats(&od1);
    kh_origin_reset_stats(&od2);
    assert_int_equal(kh_get(&kh_group, "/dr1", &r), 0);
    assert_int_equal(r.status, 502);
    kh_resp_free(&r);
    assert_int_equal(kh_origin_stat(&od1, "requests"), 3);
    assert_int_equal(kh_origin_stat(&od2, "requests"), 0);
}

/* A refused connect sent nothing, so even a POST moves on to the other
 * target and succeeds there. */
static void
test_post_refused_is_retried(void **state)
{
    (void)state;
    char needle[128];
    snprintf(needle, sizeof(needle), "fopost: try 1 to http://127.0.0.1:%u failed", dead2);
    for (int i = 0; i < 6; i++) {
        char origin[32];
        assert_int_equal(
            send_req(&kh_group, "POST", "/fopost", NULL, "payload", origin, sizeof(origin)), 200);
        assert_string_equal(origin, "a");
    }
    int refused_first = log_count(&kh_group, needle);
    if (refused_first < 2)
        fail_msg("only %d of 6 POSTs tried the refusing target first", refused_first);
}

/* ---- health ---- */

/* Active checks every 100 ms, 2 failures mark a target down, 2 passes up. */
static void
test_active_health_checks(void **state)
{
    (void)state;
    char down[128], up[128];
    snprintf(down, sizeof(down), "active: target http://127.0.0.1:%u is unhealthy", oh1.port);
    snprintf(up, sizeof(up), "active: target http://127.0.0.1:%u is healthy", oh1.port);
    tally t = count_origins("/ac", NULL, 6);
    assert_int_equal(t.other, 0);
    assert_true(t.by[H1] > 0 && t.by[H2] > 0);

    kh_resp r;
    double t0 = now_s();
    assert_int_equal(kh_origin_get(&oh1, "/health/down", &r), 0);
    kh_resp_free(&r);
    /* interval 100 ms x unhealthy 2, plus one interval of phase and slack */
    assert_true(kh_wait_log(&kh_group, down, 2000));
    double fell = now_s() - t0;
    if (fell > 0.7)
        fail_msg("marked unhealthy after %.0f ms (expected ~200 ms)", fell * 1000);
    t = count_origins("/ac", NULL, 8);
    assert_int_equal(t.other, 0);
    assert_int_equal(t.by[H2], 8);

    /* Both down: nothing to send to, 503 with Retry-After. */
    char h2_line[128];
    snprintf(h2_line, sizeof(h2_line), "active: target http://127.0.0.1:%u is unhealthy", oh2.port);
    assert_int_equal(kh_origin_get(&oh2, "/health/down", &r), 0);
    kh_resp_free(&r);
    assert_true(kh_wait_log(&kh_group, h2_line, 2000));
    assert_int_equal(kh_get(&kh_group, "/ac", &r), 0);
    char retry_after[16];
    assert_int_equal(r.status, 503);
    assert_non_null(kh_header(&r, "retry-after", retry_after, sizeof(retry_after)));
    kh_resp_free(&r);
    assert_int_equal(kh_origin_get(&oh2, "/health/up", &r), 0);
    kh_resp_free(&r);
    snprintf(h2_line, sizeof(h2_line), "active: target http://127.0.0.1:%u is healthy", oh2.port);
    assert_true(kh_wait_log(&kh_group, h2_line, 2000));

    t0 = now_s();
    assert_int_equal(kh_origin_get(&oh1, "/health/up", &r), 0);
    kh_resp_free(&r);
    assert_true(kh_wait_log(&kh_group, up, 2000));
    double rose = now_s() - t0;
    if (rose > 0.7)
        fail_msg("marked healthy after %.0f ms (expected ~200 ms)", rose * 1000);
    t = count_origins("/ac", NULL, 6);
    assert_int_equal(t.other, 0);
    assert_true(t.by[H1] > 0 && t.by[H2] > 0);
}

/* Passive: target a answers 500 (base path /status, request path /500),
 * b 200 (/big/500). Two 500s in a row take a out; it comes back by itself
 * recover_ms (600) later. */
static void
test_passive_health(void **state)
{
    (void)state;
    char down[128], up[128];
    snprintf(down, sizeof(down), "passive: target http://127.0.0.1:%u/status is unhealthy",
             oa.port);
    snprintf(up, sizeof(up), "passive: target http://127.0.0.1:%u/status is healthy", oa.port);
    int fives = 0, fine = 0;
    for (int i = 0; i < 4; i++) {
        char origin[32];
        long status = get_from("/pv", NULL, origin, sizeof(origin));
        if (status == 500 && strcmp(origin, "a") == 0)
            fives++;
        else if (status == 200 && strcmp(origin, "b") == 0)
            fine++;
    }
    assert_int_equal(fives, 2); /* round robin: a twice in four */
    assert_int_equal(fine, 2);
    assert_true(kh_wait_log(&kh_group, down, 500));
    tally t = count_origins("/pv", NULL, 8);
    assert_int_equal(t.other, 0);
    assert_int_equal(t.by[B], 8);

    sleep_ms(700);
    int a_again = 0;
    for (int i = 0; i < 3 && !a_again; i++) {
        char origin[32];
        long status = get_from("/pv", NULL, origin, sizeof(origin));
        a_again = status == 500 && strcmp(origin, "a") == 0;
    }
    assert_true(a_again);
    assert_true(kh_wait_log(&kh_group, up, 500));
}

/* ---- circuit breaker ---- */

static long
br_get(const char *path, char *retry_after, size_t len)
{
    kh_resp r;
    long status = kh_get(&kh_group, path, &r) == 0 ? r.status : -1;
    if (!kh_header(&r, "retry-after", retry_after, len))
        retry_after[0] = '\0';
    kh_resp_free(&r);
    return status;
}

/* The log line of a change of br's breaker, up to CHANGE. */
static void
breaker_line(char *line, size_t len, const char *change)
{
    snprintf(line, len, "br: breaker of http://127.0.0.1:%u %s", oc.port, change);
}

/* failures 3, cooldown 300 ms: three 500s open it; while open nothing
 * reaches the origin and clients get 503 with Retry-After; a failed probe
 * reopens it for 600 ms; one successful probe (alone: a second request
 * meanwhile is refused) closes it. */
static void
test_circuit_breaker(void **state)
{
    (void)state;
    char ra[32], line[160];
    kh_origin_reset_stats(&oc);
    for (int i = 0; i < 3; i++)
        assert_int_equal(br_get("/br/status/500", ra, sizeof(ra)), 500);
    breaker_line(line, sizeof(line),
                 "closed -> open: consecutive failures (3 of 3), cooldown 300 ms");
    assert_true(kh_wait_log(&kh_group, line, 500));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(br_get("/br/hello", ra, sizeof(ra)), 503);
        assert_string_equal(ra, "1");
    }
    assert_int_equal(kh_origin_stat(&oc, "requests"), 3); /* the 503s never got there */

    sleep_ms(350); /* half-open: one probe goes through, and fails */
    assert_int_equal(br_get("/br/status/500", ra, sizeof(ra)), 500);
    assert_int_equal(kh_origin_stat(&oc, "requests"), 4);
    breaker_line(line, sizeof(line), "half-open -> open: probe failed");
    assert_true(kh_wait_log(&kh_group, line, 500));
    snprintf(line, sizeof(line), "cooldown 600 ms");
    assert_true(kh_log_has(&kh_group, line));

    sleep_ms(350); /* past the first cooldown, within the doubled one */
    assert_int_equal(br_get("/br/hello", ra, sizeof(ra)), 503);
    assert_int_equal(kh_origin_stat(&oc, "requests"), 4);

    sleep_ms(300); /* the 600 ms are over: a slow probe holds the one slot */
    flight probe;
    launch(&probe, &kh_group, "/br/slow/300");
    sleep_ms(100);
    assert_int_equal(br_get("/br/hello", ra, sizeof(ra)), 503);
    pthread_join(probe.thread, NULL);
    assert_int_equal(probe.status, 200);
    breaker_line(line, sizeof(line), "half-open -> closed");
    assert_true(kh_wait_log(&kh_group, line, 500));
    for (int i = 0; i < 3; i++)
        assert_int_equal(br_get("/br/hello", ra, sizeof(ra)), 200);
    assert_int_equal(kh_origin_stat(&oc, "requests"), 8);
    /* Entering half-open is a state change like the others: logged too
     * (twice here, once per cooldown that ended). */
    breaker_line(line, sizeof(line), "open -> half-open");
    assert_int_equal(log_count(&kh_group, line), 2);
}

/* The breaker of a target that stopped: three refused connects (502)
 * open it; while open nothing is even tried (503, no new failed try in the
 * log); the probe still finds it down and reopens it for 600 ms; restarted
 * on the same port, the next probe closes it. */
static void
test_circuit_breaker_on_stopped_origin(void **state)
{
    (void)state;
    char ra[32], line[160], tries[64];
    snprintf(tries, sizeof(tries), "brstop: try 1 to http://127.0.0.1:%u failed", oe.port);
    assert_int_equal(br_get("/bs/hello", ra, sizeof(ra)), 200);
    unsigned port = oe.port;
    kh_origin_stop(&oe);
    for (int i = 0; i < 3; i++)
        assert_int_equal(br_get("/bs/hello", ra, sizeof(ra)), 502);
    snprintf(line, sizeof(line), "brstop: breaker of http://127.0.0.1:%u closed -> open", port);
    assert_true(kh_wait_log(&kh_group, line, 500));
    assert_int_equal(log_count(&kh_group, tries), 3);
    assert_int_equal(br_get("/bs/hello", ra, sizeof(ra)), 503);
    assert_string_equal(ra, "1");
    assert_int_equal(log_count(&kh_group, tries), 3);

    sleep_ms(350);
    assert_int_equal(br_get("/bs/hello", ra, sizeof(ra)), 502); /* the probe */
    assert_int_equal(log_count(&kh_group, tries), 4);
    snprintf(line, sizeof(line),
             "brstop: breaker of http://127.0.0.1:%u half-open -> open: probe failed (1 of 1), "
             "cooldown 600 ms",
             port);
    assert_true(kh_wait_log(&kh_group, line, 500));

    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    const char *const args[] = {"--listen", listen, NULL};
    assert_int_equal(kh_origin_start(&oe, "e", args), 0);
    assert_int_equal(br_get("/bs/hello", ra, sizeof(ra)), 503); /* still open */
    sleep_ms(650);
    char origin[32];
    assert_int_equal(get_from("/bs/hello", NULL, origin, sizeof(origin)), 200);
    assert_string_equal(origin, "e");
    snprintf(line, sizeof(line), "brstop: breaker of http://127.0.0.1:%u half-open -> closed",
             port);
    assert_true(kh_wait_log(&kh_group, line, 500));
    assert_int_equal(get_from("/bs/hello", NULL, origin, sizeof(origin)), 200);
}

/* ---- reload ---- */

/* Five requests are waiting on origin a when a reload points the route at
 * b: they finish on a with 200, new requests go to b, nothing fails. */
static void
test_reload_with_requests_in_flight(void **state)
{
    (void)state;
    kh_server s;
    char *cfg = strdup(reload_template);
    assert_true(put_port(&cfg, "P", oa.port));
    assert_int_equal(kh_launch(&s, cfg), 0);
    free(cfg);
    char origin[32];
    assert_int_equal(send_req(&s, "GET", "/rl/hello", NULL, NULL, origin, sizeof(origin)), 200);
    assert_string_equal(origin, "a");

    enum { N = 5 };
    flight f[N];
    for (int i = 0; i < N; i++)
        launch(&f[i], &s, "/rl/slow/800");
    sleep_ms(200);
    cfg = strdup(reload_template);
    assert_true(put_port(&cfg, "P", ob.port));
    assert_int_equal(kh_write_config(&s, cfg), 0);
    free(cfg);
    assert_int_equal(kh_reload(&s), 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(send_req(&s, "GET", "/rl/hello", NULL, NULL, origin, sizeof(origin)), 200);
        assert_string_equal(origin, "b");
    }
    for (int i = 0; i < N; i++) {
        pthread_join(f[i].thread, NULL);
        assert_int_equal(f[i].status, 200);
        assert_string_equal(f[i].origin, "a");
    }
    assert_true(kh_wait_log(&s, "generation 1 retired", 2000));
    assert_int_equal(kh_stop(&s), 0);
}

/* A target passive checks took out stays out across a reload: the new
 * generation inherits its verdict (and any open breaker) instead of
 * starting every target healthy again. Target b answers 500 (base path
 * /status, request /500), a answers 200 (/big/500). */
static void
test_reload_keeps_health(void **state)
{
    (void)state;
    static const char *tmpl =
        "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 1, \"module_dirs\": [\"@FUNCS@\"],\n"
        "  \"upstreams\": { \"ab\": { \"targets\": [\"http://127.0.0.1:@A@/big\",\n"
        "      \"http://127.0.0.1:@B@/status\"], \"retries\": 0,\n"
        "      \"passive\": { \"failures\": 1, \"recover_ms\": 60000 } } },\n"
        "  \"routes\": [ { \"path\": \"/kh/*\", \"strip_prefix\": true,\n"
        "                \"target\": { \"upstream\": \"ab\" } } ] }\n";
    char *cfg = strdup(tmpl);
    assert_true(put_port(&cfg, "A", oa.port));
    assert_true(put_port(&cfg, "B", ob.port));
    kh_server s;
    assert_int_equal(kh_launch(&s, cfg), 0);
    char origin[32];
    long first = send_req(&s, "GET", "/kh/500", NULL, NULL, origin, sizeof(origin));
    if (first == 200) /* round robin began with a: b comes next */
        assert_int_equal(send_req(&s, "GET", "/kh/500", NULL, NULL, origin, sizeof(origin)), 500);
    assert_true(kh_wait_log(&s, "is unhealthy: 1 consecutive failed request", 2000));
    for (int i = 0; i < 4; i++)
        assert_int_equal(send_req(&s, "GET", "/kh/500", NULL, NULL, origin, sizeof(origin)), 200);
    assert_int_equal(kh_write_config(&s, cfg), 0);
    assert_int_equal(kh_reload(&s), 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(send_req(&s, "GET", "/kh/500", NULL, NULL, origin, sizeof(origin)), 200);
        assert_string_equal(origin, "a");
    }
    free(cfg);
    assert_int_equal(kh_stop(&s), 0);
}

/* SIGTERM while requests wait on an upstream: they finish (200), then kapi
 * exits 0. With a drain deadline shorter than the upstream, the requests
 * still waiting are answered 503 at the deadline and kapi exits 0. */
static void
test_drain_with_requests_in_flight(void **state)
{
    (void)state;
    static const char *tmpl =
        "{ \"listen\": [\"127.0.0.1:0\"], \"threads\": 2, \"module_dirs\": [\"@FUNCS@\"],\n"
        "  \"limits\": { \"shutdown_timeout_ms\": @T@ },\n"
        "  \"routes\": [ { \"path\": \"/rl/*\", \"strip_prefix\": true,\n"
        "                \"target\": { \"url\": \"http://127.0.0.1:@P@\" } } ] }\n";
    static const struct {
        const char *deadline, *path;
        long status;
    } cases[] = {{"5000", "/rl/slow/600", 200}, {"300", "/rl/slow/3000", 503}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
        kh_server s;
        char *cfg = strdup(tmpl);
        assert_true(put_port(&cfg, "P", oa.port));
        char *full = kh_subst(cfg, "T", cases[c].deadline);
        free(cfg);
        assert_int_equal(kh_launch(&s, full), 0);
        free(full);
        enum { N = 4 };
        flight f[N];
        for (int i = 0; i < N; i++)
            launch(&f[i], &s, cases[c].path);
        sleep_ms(200);
        assert_int_equal(kh_signal_wait(&s, SIGTERM, 5000), 0);
        for (int i = 0; i < N; i++) {
            pthread_join(f[i].thread, NULL);
            if (f[i].status != cases[c].status)
                fail_msg("%s with a %s ms drain: %ld, expected %ld", cases[c].path,
                         cases[c].deadline, f[i].status, cases[c].status);
        }
        kh_stop(&s);
    }
}

/* ---- timeouts ---- */

/* try_timeout_ms 300 with one retry: two tries of ~300 ms, then 504, long
 * before the origin's 2 s. */
static void
test_try_timeout(void **state)
{
    (void)state;
    char origin[32];
    double t0 = now_s();
    assert_int_equal(get_from("/tt", NULL, origin, sizeof(origin)), 504);
    double took = now_s() - t0;
    if (took < 0.55 || took > 1.2)
        fail_msg("504 after %.0f ms (expected two 300 ms tries)", took * 1000);
    char needle[128];
    snprintf(needle, sizeof(needle), "tt: try 2 to http://127.0.0.1:%u failed", ot.port);
    assert_true(kh_wait_log(&kh_group, needle, 500));
}

/* timeout_ms 400 bounds all tries together, whatever retries allows. */
static void
test_total_timeout(void **state)
{
    (void)state;
    char origin[32];
    double t0 = now_s();
    assert_int_equal(get_from("/tot", NULL, origin, sizeof(origin)), 504);
    double took = now_s() - t0;
    if (took < 0.38 || took > 0.9)
        fail_msg("504 after %.0f ms (expected the 400 ms total)", took * 1000);
}

/* connect_timeout_ms 200 against a target that never completes the
 * handshake: 504 at ~200 ms, not at the 5 s try timeout. */
static void
test_connect_timeout(void **state)
{
    (void)state;
    char origin[32];
    double t0 = now_s();
    assert_int_equal(get_from("/ct", NULL, origin, sizeof(origin)), 504);
    double took = now_s() - t0;
    if (took < 0.18 || took > 0.9)
        fail_msg("504 after %.0f ms (expected the 200 ms connect timeout)", took * 1000);
    assert_true(kh_log_has(&kh_group, "connect timed out"));
}

/* ---- setup ---- */

static int
setup(void **state)
{
    (void)state;
    struct {
        kh_origin *o;
        const char *name, *key;
    } origins[] = {{&oa, "a", "A"},    {&ob, "b", "B"},    {&oc, "c", "C"},
                   {&od1, "d1", "D1"}, {&od2, "d2", "D2"}, {&oh1, "h1", "H1"},
                   {&oh2, "h2", "H2"}, {&ot, "t", "T"},    {&oe, "e", "E"}};
    char *cfg = strdup(config_template);
    for (size_t i = 0; i < sizeof(origins) / sizeof(*origins); i++)
        if (kh_origin_start(origins[i].o, origins[i].name, NULL) != 0 ||
            !put_port(&cfg, origins[i].key, origins[i].o->port))
            return -1;
    if (!(dead1 = dead_port("dead1")) || !(dead2 = dead_port("dead2")) ||
        !(hole = blackhole_port()) || !put_port(&cfg, "DEAD1", dead1) ||
        !put_port(&cfg, "DEAD2", dead2) || !put_port(&cfg, "HOLE", hole))
        return -1;
    int rc = kh_launch(&kh_group, cfg);
    free(cfg);
    return rc;
}

static int
teardown(void **state)
{
    int rc = kh_group_teardown(state);
    kh_origin *all[] = {&oa, &ob, &oc, &od1, &od2, &oh1, &oh2, &ot, &oe};
    for (size_t i = 0; i < sizeof(all) / sizeof(*all); i++)
        kh_origin_stop(all[i]);
    for (int i = 0; i < 3; i++)
        if (hole_fds[i] >= 0)
            close(hole_fds[i]);
    return rc;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_weights),
        cmocka_unit_test(test_least_conn_avoids_busy_target),
        cmocka_unit_test(test_hash_on_header),
        cmocka_unit_test(test_hash_on_client_addr),
        cmocka_unit_test(test_hash_on_path_param),
        cmocka_unit_test(test_failover_to_live_target),
        cmocka_unit_test(test_failover_prefers_untried_target),
        cmocka_unit_test(test_all_targets_down_is_502),
        cmocka_unit_test(test_post_sent_is_not_retried),
        cmocka_unit_test(test_get_sent_is_retried),
        cmocka_unit_test(test_post_refused_is_retried),
        cmocka_unit_test(test_active_health_checks),
        cmocka_unit_test(test_passive_health),
        cmocka_unit_test(test_circuit_breaker),
        cmocka_unit_test(test_circuit_breaker_on_stopped_origin),
        cmocka_unit_test(test_reload_with_requests_in_flight),
        cmocka_unit_test(test_drain_with_requests_in_flight),
        cmocka_unit_test(test_reload_keeps_health),
        cmocka_unit_test(test_try_timeout),
        cmocka_unit_test(test_total_timeout),
        cmocka_unit_test(test_connect_timeout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
