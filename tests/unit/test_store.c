/* test_store.c -- unit tests of core/store.c against a real LMDB
 * environment in a fresh temporary directory per test: get/put/delete,
 * expiry (through the injectable clock), counters under threads and under a
 * second process, persistence across close/open and kill -9, a full map,
 * prefix scans, argument limits and the calls before open. It does not test
 * the host table's callers (modules: tests/unit/test_functions.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kapi/kapi.h>

#include "request.h"
#include "store.h"

enum { TEST_MAP = 64 << 20, THREADS = 4, PER_THREAD = 10000, PER_PROCESS = 5000 };

typedef struct fixture {
    char dir[64];
    kapi_req r;
    char buf[4096];
} fixture;

static int64_t fake_time = 1000;

static int64_t
fake_now(void)
{
    return fake_time;
}

static int
remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void
open_or_fail(const char *dir, size_t map_bytes)
{
    char err[256] = "";
    kapi_status st = store_open(dir, map_bytes, false, err, sizeof(err));
    if (st != KAPI_OK)
        fail_msg("store_open(%s): %s", dir, err);
}

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/kapi_store_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    fake_time = 1000;
    store_set_clock(fake_now);
    req_init(&f->r, f->buf, sizeof(f->buf));
    *state = f;
    open_or_fail(f->dir, TEST_MAP);
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    store_close();
    store_set_clock(NULL);
    req_release(&f->r);
    nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void
assert_value(fixture *f, const char *key, const char *want)
{
    kapi_str v;
    assert_int_equal(store_get(&f->r, kapi_str_c(key), &v), KAPI_OK);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.ptr, want, v.len);
    assert_int_equal(v.ptr[v.len], '\0');
}

static void
assert_absent(fixture *f, const char *key)
{
    kapi_str v;
    assert_int_equal(store_get(&f->r, kapi_str_c(key), &v), KAPI_ENOTFOUND);
}

static int64_t
counter(fixture *f, const char *key)
{
    kapi_str v;
    int64_t n = 0;
    assert_int_equal(store_get(&f->r, kapi_str_c(key), &v), KAPI_OK);
    assert_int_equal(kapi_store_counter_value(v, &n), KAPI_OK);
    return n;
}

/* ---- before open, open errors ---- */

static void
test_before_open(void **state)
{
    fixture *f = *state;
    kapi_str v;
    kapi_header h[1];
    size_t n = 7;
    int64_t out;
    store_close();
    assert_int_equal(store_get(&f->r, KAPI_STR("k"), &v), KAPI_ESTATE);
    assert_int_equal(store_put(KAPI_STR("k"), KAPI_STR("v"), 0), KAPI_ESTATE);
    assert_int_equal(store_delete(KAPI_STR("k")), KAPI_ESTATE);
    assert_int_equal(store_incr(KAPI_STR("k"), 1, 0, &out), KAPI_ESTATE);
    assert_int_equal(store_scan(&f->r, KAPI_STR(""), 1, h, &n), KAPI_ESTATE);
    assert_int_equal(store_sync(), KAPI_ESTATE);
    store_close(); /* a second close is a no-op */
    open_or_fail(f->dir, TEST_MAP);
    assert_int_equal(store_put(KAPI_STR("k"), KAPI_STR("v"), 0), KAPI_OK);
    assert_int_equal(store_sync(), KAPI_OK);
}

static void
test_open_errors(void **state)
{
    fixture *f = *state;
    char err[256] = "", path[128];
    assert_int_equal(store_open(f->dir, TEST_MAP, false, err, sizeof(err)), KAPI_ESTATE);
    store_close();

    assert_int_equal(store_open(f->dir, 4096, false, err, sizeof(err)), KAPI_ECONFIG);
    assert_non_null(strstr(err, "map_bytes"));

    snprintf(path, sizeof(path), "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    err[0] = '\0';
    assert_int_equal(store_open(path, TEST_MAP, false, err, sizeof(err)), KAPI_EIO);
    assert_non_null(strstr(err, path));
    assert_int_equal(store_put(KAPI_STR("k"), KAPI_STR("v"), 0), KAPI_ESTATE);

    /* Missing parents are created, new directories with mode 0700. */
    snprintf(path, sizeof(path), "%s/a/b/c", f->dir);
    open_or_fail(path, 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/a", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(store_put(KAPI_STR("k"), KAPI_STR("v"), 0), KAPI_OK);
}

/* ---- get, put, delete, expiry ---- */

static void
test_put_get_delete(void **state)
{
    fixture *f = *state;
    assert_absent(f, "t:a");
    assert_int_equal(store_put(KAPI_STR("t:a"), KAPI_STR("one"), 0), KAPI_OK);
    assert_value(f, "t:a", "one");
    assert_int_equal(store_put(KAPI_STR("t:a"), KAPI_STR("two, longer"), 0), KAPI_OK);
    assert_value(f, "t:a", "two, longer");

    /* Empty values and binary keys and values. */
    assert_int_equal(store_put(KAPI_STR("t:empty"), (kapi_str){NULL, 0}, 0), KAPI_OK);
    assert_value(f, "t:empty", "");
    kapi_str bin = {"a\0b", 3}, v;
    assert_int_equal(store_put(bin, bin, 0), KAPI_OK);
    assert_int_equal(store_get(&f->r, bin, &v), KAPI_OK);
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.ptr, "a\0b", 3);

    assert_int_equal(store_delete(KAPI_STR("t:a")), KAPI_OK);
    assert_absent(f, "t:a");
    assert_int_equal(store_delete(KAPI_STR("t:a")), KAPI_OK);
    assert_int_equal(store_delete(KAPI_STR("t:never")), KAPI_OK);
    assert_value(f, "t:empty", "");
}

static void
test_ttl(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_put(KAPI_STR("t:k"), KAPI_STR("v"), 10), KAPI_OK);
    assert_int_equal(store_put(KAPI_STR("t:forever"), KAPI_STR("v"), 0), KAPI_OK);
    fake_time = 1009;
    assert_value(f, "t:k", "v");
    fake_time = 1010;
    assert_absent(f, "t:k");
    /* The get deleted it: turning the clock back does not revive it. */
    fake_time = 1000;
    assert_absent(f, "t:k");

    /* A put replaces the expiry, also with none. */
    assert_int_equal(store_put(KAPI_STR("t:k"), KAPI_STR("v"), 5), KAPI_OK);
    assert_int_equal(store_put(KAPI_STR("t:k"), KAPI_STR("w"), 0), KAPI_OK);
    fake_time = 1000000;
    assert_value(f, "t:k", "w");
    assert_value(f, "t:forever", "v");
}

/* ---- counters ---- */

static void
test_incr(void **state)
{
    fixture *f = *state;
    int64_t out = 0;
    assert_int_equal(store_incr(KAPI_STR("c:a"), 5, 0, &out), KAPI_OK);
    assert_int_equal(out, 5);
    assert_int_equal(store_incr(KAPI_STR("c:a"), -7, 0, &out), KAPI_OK);
    assert_int_equal(out, -2);
    assert_int_equal(counter(f, "c:a"), -2);
    assert_int_equal(store_incr(KAPI_STR("c:a"), 1, 0, NULL), KAPI_OK);
    assert_int_equal(counter(f, "c:a"), -1);

    /* A value that is not a counter is left alone. */
    assert_int_equal(store_put(KAPI_STR("c:text"), KAPI_STR("abc"), 0), KAPI_OK);
    assert_int_equal(store_incr(KAPI_STR("c:text"), 1, 0, &out), KAPI_EINVAL);
    assert_value(f, "c:text", "abc");

    /* Overflow changes nothing. */
    assert_int_equal(store_incr(KAPI_STR("c:big"), INT64_MAX, 0, &out), KAPI_OK);
    assert_int_equal(store_incr(KAPI_STR("c:big"), 1, 0, &out), KAPI_EINVAL);
    assert_true(counter(f, "c:big") == INT64_MAX);
    assert_int_equal(store_incr(KAPI_STR("c:big"), -1, 0, &out), KAPI_OK);
    assert_true(out == INT64_MAX - 1);

    /* Any 8-byte value is a counter: put can set one. */
    char le[8] = {42, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(store_put(KAPI_STR("c:set"), (kapi_str){le, 8}, 0), KAPI_OK);
    assert_int_equal(store_incr(KAPI_STR("c:set"), 1, 0, &out), KAPI_OK);
    assert_int_equal(out, 43);
}

static void
test_incr_ttl_kept(void **state)
{
    fixture *f = *state;
    int64_t out = 0;
    assert_int_equal(store_incr(KAPI_STR("c:w"), 1, 10, &out), KAPI_OK); /* expires at 1010 */
    fake_time = 1005;
    assert_int_equal(store_incr(KAPI_STR("c:w"), 1, 100, &out), KAPI_OK);
    assert_int_equal(out, 2);
    fake_time = 1009;
    assert_int_equal(counter(f, "c:w"), 2);
    fake_time = 1010; /* the TTL of the first increment held */
    assert_absent(f, "c:w");
    assert_int_equal(store_incr(KAPI_STR("c:w"), 1, 10, &out), KAPI_OK);
    assert_int_equal(out, 1); /* an expired counter restarts at 0 */
    fake_time = 1019;
    assert_int_equal(counter(f, "c:w"), 1);
    fake_time = 1020;
    assert_int_equal(store_incr(KAPI_STR("c:w"), 3, 0, &out), KAPI_OK);
    assert_int_equal(out, 3);
}

/* Increments, and reads back through the shared pool of read
 * transactions: a value below this thread's own count is a lost update. */
static void *
incr_thread(void *arg)
{
    (void)arg;
    char buf[1024];
    kapi_req r;
    kapi_str v;
    int64_t seen, out;
    void *failed = NULL;
    req_init(&r, buf, sizeof(buf));
    for (int i = 0; i < PER_THREAD && !failed; i++) {
        if (store_incr(KAPI_STR("c:threads"), 1, 0, &out) != KAPI_OK || out <= i ||
            store_get(&r, KAPI_STR("c:threads"), &v) != KAPI_OK ||
            kapi_store_counter_value(v, &seen) != KAPI_OK || seen < out)
            failed = (void *)1;
        if (i % 256 == 0)
            arena_reset(&r.arena);
    }
    req_release(&r);
    return failed;
}

static void
test_incr_threads(void **state)
{
    fixture *f = *state;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, incr_thread, NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        void *rv;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    assert_int_equal(counter(f, "c:threads"), THREADS * PER_THREAD);
}

/* ---- persistence, other processes ---- */

static void
test_persistence(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_put(KAPI_STR("p:a"), KAPI_STR("kept"), 0), KAPI_OK);
    assert_int_equal(store_incr(KAPI_STR("p:n"), 41, 0, NULL), KAPI_OK);
    store_close();
    open_or_fail(f->dir, TEST_MAP);
    assert_value(f, "p:a", "kept");
    assert_int_equal(store_incr(KAPI_STR("p:n"), 1, 0, NULL), KAPI_OK);
    assert_int_equal(counter(f, "p:n"), 42);
}

/* The child opens its own environment (never the parent's), waits for the
 * byte on GO, increments PER_PROCESS times and exits 0 on success. */
static void
child_incr(const char *dir, int go)
{
    char err[256], c;
    int ok = store_open(dir, TEST_MAP, false, err, sizeof(err)) == KAPI_OK && read(go, &c, 1) == 1;
    for (int i = 0; ok && i < PER_PROCESS; i++)
        ok = store_incr(KAPI_STR("c:procs"), 1, 0, NULL) == KAPI_OK;
    store_close();
    _exit(ok ? 0 : 1);
}

static void
test_incr_two_processes(void **state)
{
    fixture *f = *state;
    int go[2];
    store_close();
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_incr(f->dir, go[0]);
    open_or_fail(f->dir, TEST_MAP);
    assert_int_equal(write(go[1], "x", 1), 1);
    for (int i = 0; i < PER_PROCESS; i++)
        assert_int_equal(store_incr(KAPI_STR("c:procs"), 1, 0, NULL), KAPI_OK);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(go[0]);
    close(go[1]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(counter(f, "c:procs"), 2 * PER_PROCESS);
}

/* Commits with MDB_NOSYNC sit in the page cache, which outlives a process
 * killed with SIGKILL before any sync. */
static void
test_survives_kill9(void **state)
{
    fixture *f = *state;
    store_close();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        if (store_open(f->dir, TEST_MAP, false, err, sizeof(err)) == KAPI_OK &&
            store_put(KAPI_STR("k9:a"), KAPI_STR("survived"), 0) == KAPI_OK &&
            store_incr(KAPI_STR("k9:n"), 7, 0, NULL) == KAPI_OK)
            raise(SIGKILL);
        _exit(1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    open_or_fail(f->dir, TEST_MAP);
    assert_value(f, "k9:a", "survived");
    assert_int_equal(counter(f, "k9:n"), 7);
}

/* ---- a full map ---- */

static kapi_status
put_numbered(const char *prefix, int i, size_t len, uint32_t ttl_s)
{
    static char value[16384];
    char key[32];
    memset(value, 'x', sizeof(value));
    snprintf(key, sizeof(key), "%s%05d", prefix, i);
    return store_put(kapi_str_c(key), (kapi_str){value, len}, ttl_s);
}

/* Puts LEN-byte values under PREFIX until the store refuses one; returns how
 * many fitted (fails past LIMIT). */
static int
fill(const char *prefix, size_t len, uint32_t ttl_s, int limit)
{
    for (int i = 0; i < limit; i++) {
        kapi_status st = put_numbered(prefix, i, len, ttl_s);
        if (st == KAPI_ETOOBIG)
            return i;
        assert_int_equal(st, KAPI_OK);
    }
    fail_msg("%d puts of %zu bytes fitted in a %d-byte map", limit, len, STORE_MIN_MAP);
    return -1;
}

static void
test_map_full(void **state)
{
    fixture *f = *state;
    char path[128], prefix[32];
    kapi_str v;
    snprintf(path, sizeof(path), "%s/small", f->dir);
    store_close();
    open_or_fail(path, STORE_MIN_MAP);

    /* Fill with 16 KiB entries (LMDB overflow pages, the hard case) that
     * expire 10 s later; refused once full, the data intact. */
    int first = fill("full:0:", 16384, 10, 1000);
    assert_true(first > 10);
    assert_int_equal(put_numbered("full:more:", 0, 16384, 0), KAPI_ETOOBIG);
    assert_int_equal(store_get(&f->r, KAPI_STR("full:0:00000"), &v), KAPI_OK);
    assert_int_equal(v.len, 16384);

    /* Once they expire, writes evict them and succeed, round after round
     * (fragmented free space costs some room, never all of it). */
    for (int round = 1; round <= 4; round++) {
        fake_time += 10;
        snprintf(prefix, sizeof(prefix), "full:%d:", round);
        assert_true(fill(prefix, 16384, 10, 1000) >= first / 2);
    }
    assert_int_equal(store_get(&f->r, KAPI_STR("full:0:00000"), &v), KAPI_ENOTFOUND);

    /* Nothing to evict: writes that need room are refused, with no crash
     * and the data intact; existing counters keep counting; a delete still
     * makes room. */
    fake_time += 10;
    int64_t out = 0;
    assert_int_equal(store_incr(KAPI_STR("full:counter"), 1, 0, NULL), KAPI_OK);
    int kept = fill("full:keep:", 16384, 0, 1000);
    assert_true(kept >= first / 2);
    assert_int_equal(put_numbered("full:more:", 0, 16384, 0), KAPI_ETOOBIG);
    assert_true(fill("full:small:", 16, 0, 100000) >= 0);
    assert_int_equal(store_incr(KAPI_STR("full:counter"), 1, 0, &out), KAPI_OK);
    assert_int_equal(out, 2);
    assert_int_equal(store_get(&f->r, KAPI_STR("full:keep:00000"), &v), KAPI_OK);
    assert_int_equal(v.len, 16384);
    assert_int_equal(store_delete(KAPI_STR("full:keep:00000")), KAPI_OK);
    assert_int_equal(store_delete(KAPI_STR("full:keep:00001")), KAPI_OK);
    assert_int_equal(put_numbered("full:more:", 0, 16384, 0), KAPI_OK);
}

/* store_sync evicts expired entries by itself, without a full map. */
static void
test_sync_evicts(void **state)
{
    fixture *f = *state;
    kapi_header h[4];
    size_t n = 0;
    assert_int_equal(store_put(KAPI_STR("e:a"), KAPI_STR("1"), 10), KAPI_OK);
    assert_int_equal(store_put(KAPI_STR("e:b"), KAPI_STR("2"), 20), KAPI_OK);
    assert_int_equal(store_incr(KAPI_STR("e:c"), 1, 10, NULL), KAPI_OK);
    assert_int_equal(store_put(KAPI_STR("e:d"), KAPI_STR("4"), 0), KAPI_OK);
    fake_time = 1010;
    assert_int_equal(store_sync(), KAPI_OK);
    fake_time = 1000; /* had they only been hidden, they would be back now */
    assert_int_equal(store_scan(&f->r, KAPI_STR("e:"), 4, h, &n), KAPI_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(h[0].name.ptr, "e:b", 3);
    assert_memory_equal(h[1].name.ptr, "e:d", 3);
    /* A put that replaced a TTL moved its index entry: e:b lives on. */
    assert_int_equal(store_put(KAPI_STR("e:b"), KAPI_STR("2"), 0), KAPI_OK);
    fake_time = 1020;
    assert_int_equal(store_sync(), KAPI_OK);
    assert_value(f, "e:b", "2");
}

/* ---- scan ---- */

static void
test_scan(void **state)
{
    fixture *f = *state;
    const char *keys[] = {"s:5", "s:1", "s:3", "s:4", "s:2", "t:1", "s", "r:9"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char value[8];
        snprintf(value, sizeof(value), "v%s", keys[i]);
        assert_int_equal(store_put(kapi_str_c(keys[i]), kapi_str_c(value), 0), KAPI_OK);
    }
    assert_int_equal(store_put(KAPI_STR("s:3"), KAPI_STR("vs:3"), 5), KAPI_OK);
    fake_time = 1005; /* s:3 has expired */

    kapi_header h[10];
    size_t n = 99;
    assert_int_equal(store_scan(&f->r, KAPI_STR("s:"), 10, h, &n), KAPI_OK);
    assert_int_equal(n, 4);
    const char *want[] = {"s:1", "s:2", "s:4", "s:5"};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(h[i].name.len, strlen(want[i]));
        assert_memory_equal(h[i].name.ptr, want[i], h[i].name.len);
        assert_int_equal(h[i].name.ptr[h[i].name.len], '\0');
        assert_int_equal(h[i].value.len, strlen(want[i]) + 1);
        assert_memory_equal(h[i].value.ptr + 1, want[i], h[i].name.len);
    }

    assert_int_equal(store_scan(&f->r, KAPI_STR("s:"), 2, h, &n), KAPI_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(h[1].name.ptr, "s:2", 3);
    assert_int_equal(store_scan(&f->r, KAPI_STR(""), 10, h, &n), KAPI_OK);
    assert_int_equal(n, 7);
    assert_memory_equal(h[0].name.ptr, "r:9", 3);
    assert_memory_equal(h[6].name.ptr, "t:1", 3);
    assert_int_equal(store_scan(&f->r, KAPI_STR("t:"), 10, h, &n), KAPI_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_scan(&f->r, KAPI_STR("zz"), 10, h, &n), KAPI_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_scan(&f->r, KAPI_STR("s:"), 0, NULL, &n), KAPI_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_scan(&f->r, KAPI_STR("s:"), 1, NULL, &n), KAPI_EINVAL);
}

/* ---- limits, host table ---- */

static void
test_limits(void **state)
{
    fixture *f = *state;
    static char big[STORE_MAX_VALUE + 1];
    char key[STORE_MAX_KEY + 1];
    kapi_str v;
    kapi_header h[1];
    size_t n;
    memset(key, 'k', sizeof(key));
    memset(big, 'b', sizeof(big));

    kapi_str empty = {"", 0}, max = {key, STORE_MAX_KEY}, over = {key, STORE_MAX_KEY + 1};
    assert_int_equal(store_put(empty, KAPI_STR("v"), 0), KAPI_EINVAL);
    assert_int_equal(store_get(&f->r, empty, &v), KAPI_EINVAL);
    assert_int_equal(store_delete(empty), KAPI_EINVAL);
    assert_int_equal(store_incr(empty, 1, 0, NULL), KAPI_EINVAL);
    assert_int_equal(store_put(over, KAPI_STR("v"), 0), KAPI_EINVAL);
    assert_int_equal(store_get(&f->r, over, &v), KAPI_EINVAL);
    assert_int_equal(store_delete(over), KAPI_EINVAL);
    assert_int_equal(store_incr(over, 1, 0, NULL), KAPI_EINVAL);
    assert_int_equal(store_scan(&f->r, over, 1, h, &n), KAPI_EINVAL);
    assert_int_equal(store_put((kapi_str){NULL, 3}, KAPI_STR("v"), 0), KAPI_EINVAL);
    assert_int_equal(store_put(KAPI_STR("l:k"), (kapi_str){NULL, 3}, 0), KAPI_EINVAL);
    assert_int_equal(store_get(NULL, KAPI_STR("l:k"), &v), KAPI_EINVAL);
    assert_int_equal(store_scan(NULL, KAPI_STR("l:"), 1, h, &n), KAPI_EINVAL);

    assert_int_equal(store_put(max, KAPI_STR("longest"), 0), KAPI_OK);
    assert_int_equal(store_get(&f->r, max, &v), KAPI_OK);
    assert_memory_equal(v.ptr, "longest", 7);

    assert_int_equal(store_put(KAPI_STR("l:big"), (kapi_str){big, STORE_MAX_VALUE + 1}, 0),
                     KAPI_ETOOBIG);
    assert_int_equal(store_put(KAPI_STR("l:big"), (kapi_str){big, STORE_MAX_VALUE}, 0), KAPI_OK);
    assert_int_equal(store_get(&f->r, KAPI_STR("l:big"), &v), KAPI_OK);
    assert_int_equal(v.len, STORE_MAX_VALUE);
    assert_memory_equal(v.ptr, big, STORE_MAX_VALUE);
}

static void
test_host_table(void **state)
{
    fixture *f = *state;
    kapi_host h = {0};
    kapi_str v;
    int64_t out = 0;
    store_fill_host(&h);
    assert_int_equal(h.store_put(NULL, KAPI_STR("h:a"), KAPI_STR("1"), 0), KAPI_OK);
    assert_int_equal(h.store_get(&f->r, KAPI_STR("h:a"), &v), KAPI_OK);
    assert_memory_equal(v.ptr, "1", 2);
    assert_int_equal(h.store_incr(NULL, KAPI_STR("h:n"), 2, 0, &out), KAPI_OK);
    assert_int_equal(out, 2);
    assert_int_equal(h.store_delete(NULL, KAPI_STR("h:a")), KAPI_OK);
    assert_int_equal(h.store_get(&f->r, KAPI_STR("h:a"), &v), KAPI_ENOTFOUND);
    kapi_header pairs[2];
    size_t n = 0;
    assert_int_equal(h.store_scan(&f->r, KAPI_STR("h:"), 2, pairs, &n), KAPI_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(pairs[0].name.ptr, "h:n", 3);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_before_open),
        T(test_open_errors),
        T(test_put_get_delete),
        T(test_ttl),
        T(test_incr),
        T(test_incr_ttl_kept),
        T(test_incr_threads),
        T(test_persistence),
        T(test_incr_two_processes),
        T(test_survives_kill9),
        T(test_map_full),
        T(test_sync_evicts),
        T(test_scan),
        T(test_limits),
        T(test_host_table),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
