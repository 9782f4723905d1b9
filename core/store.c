/* store.c -- the persistent store (see store.h): one LMDB environment per
 * process, opened once with MDB_NOTLS (requests run on several worker
 * threads) and, unless durable, MDB_NOSYNC plus a periodic store_sync.
 *
 * Named databases: "kv" maps each key to an 8-byte little-endian expiry
 * (absolute unix seconds, 0 = never) followed by the caller's bytes; a
 * counter is a value whose payload is 8 bytes, an int64_t, little-endian.
 * "expiry" indexes the entries that expire, by (8-byte big-endian expiry,
 * key) with empty values, so finding the expired entries costs what they
 * are, not a walk of the store. "meta" holds "evicted", the number of
 * entries removed by expiry so far (a counter). Every write keeps kv and
 * its index consistent in one transaction.
 *
 * Space: LMDB copies pages on write, so deleting needs free pages too. Puts
 * and increments may grow the live data only up to 7/8 of the map; the last
 * eighth is headroom that lets the eviction of expired entries (and deletes)
 * run when the store is "full". A write that finds the store full evicts up
 * to EVICT_MAX expired entries, retries once, and otherwise returns
 * KAPI_ETOOBIG. store_sync evicts them too, so expired data rarely waits
 * for a full map, and a get that finds an expired entry deletes it. Live
 * entries are never dropped: a size-bounded cache evicting the oldest is the
 * cache's own concern, not this file's.
 *
 * It does not know modules or HTTP; the per-request arena is the only thing
 * it takes from a request. LMDB's codes never leave this file. */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "arena.h"
#include "log.h"
#include "request.h"

enum {
    HEADER = 8,         /* the expiry before each value */
    COUNTER = 8,        /* a counter's payload */
    MAX_DBS = 8,        /* kv, expiry, meta and room for later purposes */
    MAX_READERS = 1024, /* reader slots, shared by all processes on the env */
    POOL_MAX = 64,      /* idle read transactions kept for reuse */
    EVICT_MAX = 4096,   /* expired entries one eviction pass removes */
    RESERVE_DIV = 8,    /* 1/8 of the map is headroom (see the top) */
    FULL_LOG_S = 10,    /* at most one "store is full" line per 10 s */
};

/* One write of the kv database inside a write transaction: returns an LMDB
 * code (0 to commit) and its own verdict in *ST (not KAPI_OK: abort). */
typedef int (*write_fn)(MDB_txn *txn, void *arg, kapi_status *st);

static struct {
    MDB_env *env;
    MDB_dbi kv, expiry, meta;
    bool durable;
    size_t map_bytes;
    size_t soft_pages; /* live pages (kv + expiry) puts may grow to */

    /* Reset read transactions: renewing one keeps its reader slot, so a
     * read takes neither LMDB's process-shared reader lock nor a malloc. */
    pthread_mutex_t pool_lock;
    MDB_txn *pool[POOL_MAX];
    size_t npool;
} S = {.pool_lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_bool is_open;
static atomic_llong last_full_log;

static int64_t
real_now(void)
{
    return (int64_t)time(NULL);
}

static int64_t (*clock_now)(void) = real_now;

void
store_set_clock(int64_t (*now)(void))
{
    clock_now = now ? now : real_now;
}

/* ---- encoding ---- */

static void
put_le64(void *dst, uint64_t v)
{
    unsigned char *p = dst;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_le64(const void *src)
{
    const unsigned char *p = src;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t
expiry(uint32_t ttl_s, int64_t now)
{
    return ttl_s ? (uint64_t)now + ttl_s : 0;
}

/* True when the stored value V has expired at NOW (a value too short to
 * hold the header counts as expired, so it gets cleaned up). */
static bool
expired(const MDB_val *v, int64_t now)
{
    if (v->mv_size < HEADER)
        return true;
    uint64_t at = get_le64(v->mv_data);
    return at != 0 && (uint64_t)now >= at;
}

static MDB_val
key_val(kapi_str key)
{
    return (MDB_val){key.len, (void *)key.ptr};
}

static kapi_status
check_key(kapi_str key, size_t min)
{
    if ((!key.ptr && key.len) || key.len < min || key.len > STORE_MAX_KEY)
        return KAPI_EINVAL;
    return KAPI_OK;
}

/* ---- errors ---- */

static bool
is_full(int rc)
{
    return rc == MDB_MAP_FULL || rc == MDB_TXN_FULL;
}

/* Translates LMDB's RC from WHAT into a kapi_status, logging it once. A
 * full store is logged at most every FULL_LOG_S seconds: under load every
 * refused write would say the same. */
static kapi_status
fail(const char *what, int rc)
{
    if (is_full(rc)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long last = atomic_load(&last_full_log);
        if ((last == 0 || ts.tv_sec - last >= FULL_LOG_S) &&
            atomic_compare_exchange_strong(&last_full_log, &last, (long long)ts.tv_sec + 1))
            log_msg(KAPI_LOG_WARN,
                    "store: %s refused: the store is full (map_bytes %zu) and has no expired "
                    "entries to evict; raise store.map_bytes or shorten TTLs",
                    what, S.map_bytes);
        return KAPI_ETOOBIG;
    }
    log_msg(KAPI_LOG_ERROR, "store: %s: %s%s", what, mdb_strerror(rc),
            rc == MDB_MAP_RESIZED ? " (another process sharing the data directory uses a "
                                    "larger store.map_bytes; configure the same size in all)"
                                  : "");
    return rc == ENOMEM ? KAPI_ENOMEM : KAPI_EIO;
}

static kapi_status
check_open(void)
{
    return atomic_load_explicit(&is_open, memory_order_acquire) ? KAPI_OK : KAPI_ESTATE;
}

/* ---- transactions ---- */

static int
read_begin(MDB_txn **txn)
{
    pthread_mutex_lock(&S.pool_lock);
    *txn = S.npool ? S.pool[--S.npool] : NULL;
    pthread_mutex_unlock(&S.pool_lock);
    if (!*txn)
        return mdb_txn_begin(S.env, NULL, MDB_RDONLY, txn);
    int rc = mdb_txn_renew(*txn);
    if (rc != 0) {
        mdb_txn_abort(*txn);
        *txn = NULL;
    }
    return rc;
}

static void
read_end(MDB_txn *txn)
{
    mdb_txn_reset(txn);
    pthread_mutex_lock(&S.pool_lock);
    if (S.npool < POOL_MAX) {
        S.pool[S.npool++] = txn;
        txn = NULL;
    }
    pthread_mutex_unlock(&S.pool_lock);
    if (txn)
        mdb_txn_abort(txn);
}

static size_t
db_pages(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    if (mdb_stat(txn, dbi, &st) != 0)
        return 0;
    return st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
}

static size_t
live_pages(MDB_txn *txn)
{
    return db_pages(txn, S.kv) + db_pages(txn, S.expiry);
}

/* Runs FN in one write transaction. When GROWS, a write that leaves more
 * live pages than before and more than the soft limit is refused as
 * MDB_MAP_FULL, keeping the headroom free. */
static int
write_once(write_fn fn, void *arg, bool grows, kapi_status *st)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(S.env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    size_t before = grows ? live_pages(txn) : 0;
    *st = KAPI_OK;
    rc = fn(txn, arg, st);
    if (rc == 0 && *st == KAPI_OK && grows) {
        size_t after = live_pages(txn);
        if (after > before && after > S.soft_pages)
            rc = MDB_MAP_FULL;
    }
    if (rc != 0 || *st != KAPI_OK) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* ---- the expiry index ---- */

/* The index key of KEY expiring AT, built in BUF. */
static MDB_val
index_key(unsigned char buf[static 8 + STORE_MAX_KEY], uint64_t at, kapi_str key)
{
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(at >> (56 - 8 * i));
    memcpy(buf + 8, key.ptr, key.len);
    return (MDB_val){8 + key.len, buf};
}

/* Moves KEY's index entry from expiry OLD_AT to NEW_AT (0: none). */
static int
index_move(MDB_txn *txn, kapi_str key, uint64_t old_at, uint64_t new_at)
{
    unsigned char buf[8 + STORE_MAX_KEY];
    MDB_val ik, none = {0, NULL};
    if (old_at == new_at)
        return 0;
    if (old_at) {
        ik = index_key(buf, old_at, key);
        int rc = mdb_del(txn, S.expiry, &ik, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
    }
    if (!new_at)
        return 0;
    ik = index_key(buf, new_at, key);
    return mdb_put(txn, S.expiry, &ik, &none, 0);
}

/* Splits the index entry IK into its expiry *AT and its key (copied into
 * KEY, *LEN bytes); false when IK is malformed. */
static bool
index_split(const MDB_val *ik, uint64_t *at, char key[static STORE_MAX_KEY], size_t *len)
{
    const unsigned char *p = ik->mv_data;
    if (ik->mv_size < 8 || ik->mv_size > 8 + STORE_MAX_KEY)
        return false;
    *at = 0;
    for (int i = 0; i < 8; i++)
        *at = *at << 8 | p[i];
    *len = ik->mv_size - 8;
    memcpy(key, p + 8, *len);
    return true;
}

/* The expiry of KEY's stored value V (0 when it has none or is malformed). */
static uint64_t
stored_expiry(const MDB_val *v)
{
    return v->mv_size >= HEADER ? get_le64(v->mv_data) : 0;
}

/* Deletes KEY, whose stored value expires AT, and its index entry. */
static int
remove_key(MDB_txn *txn, kapi_str key, uint64_t at)
{
    MDB_val k = key_val(key);
    int rc = mdb_del(txn, S.kv, &k, NULL);
    if (rc != 0)
        return rc;
    return index_move(txn, key, at, 0);
}

/* Deletes up to MAX expired entries in one transaction, oldest expiry
 * first. Returns how many, -1 when that failed. */
static long
evict_once(size_t max)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    MDB_val ik, none, v;
    uint64_t now = (uint64_t)clock_now();
    long n = 0;
    int rc = mdb_txn_begin(S.env, NULL, 0, &txn);
    if (rc != 0)
        return -1;
    if ((rc = mdb_cursor_open(txn, S.expiry, &c)) != 0)
        goto out;
    for (rc = mdb_cursor_get(c, &ik, &none, MDB_FIRST); rc == 0 && (size_t)n < max;
         rc = mdb_cursor_get(c, &ik, &none, MDB_NEXT)) {
        char key[STORE_MAX_KEY];
        MDB_val k = {0, key};
        uint64_t at = 0;
        bool ok = index_split(&ik, &at, key, &k.mv_size);
        if (ok && at > now)
            break;
        /* KEY is a copy: the kv delete may move the page IK points into. A
         * malformed index entry, or one without its kv entry, just goes. */
        if (ok && mdb_get(txn, S.kv, &k, &v) == 0 && stored_expiry(&v) == at &&
            (rc = mdb_del(txn, S.kv, &k, NULL)) != 0)
            goto out;
        if ((rc = mdb_cursor_del(c, 0)) != 0) /* the cursor then reads the entry after */
            goto out;
        n++;
    }
    rc = rc == MDB_NOTFOUND ? 0 : rc;
out:
    if (c)
        mdb_cursor_close(c);
    if (rc == 0 && n > 0)
        return (rc = mdb_txn_commit(txn)) == 0 ? n : -1;
    mdb_txn_abort(txn);
    return rc == 0 ? 0 : -1;
}

static int
count_evicted_op(MDB_txn *txn, void *arg, kapi_status *st)
{
    (void)st;
    MDB_val k = {7, "evicted"}, v;
    unsigned char buf[8];
    int rc = mdb_get(txn, S.meta, &k, &v);
    uint64_t total = rc == 0 && v.mv_size == 8 ? get_le64(v.mv_data) : 0;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    const long *n = arg;
    put_le64(buf, total + (uint64_t)*n);
    v = (MDB_val){sizeof(buf), buf};
    return mdb_put(txn, S.meta, &k, &v, 0);
}

/* Evicts up to MAX expired entries, then counts them in a transaction of
 * its own. That second commit is also what makes the freed pages usable:
 * LMDB reuses the pages a transaction frees only two transactions later.
 * Returns how many it evicted, -1 on failure. */
static long
evict_expired(size_t max)
{
    long n = evict_once(max);
    kapi_status st;
    if (n > 0)
        write_once(count_evicted_op, &n, false, &st);
    return n;
}

/* Runs FN; when the store is full, evicts expired entries and retries once.
 * WHAT names the operation in the log. */
static kapi_status
write_txn(const char *what, write_fn fn, void *arg, bool grows)
{
    kapi_status st = KAPI_OK;
    int rc = write_once(fn, arg, grows, &st);
    if (is_full(rc) && evict_expired(EVICT_MAX) > 0)
        rc = write_once(fn, arg, grows, &st);
    return rc != 0 ? fail(what, rc) : st;
}

/* ---- writes ---- */

typedef struct put_arg {
    kapi_str key, value;
    uint32_t ttl_s;
} put_arg;

static int
put_op(MDB_txn *txn, void *arg, kapi_status *st)
{
    (void)st;
    const put_arg *a = arg;
    MDB_val k = key_val(a->key), v;
    uint64_t old_at = 0, at = expiry(a->ttl_s, clock_now());
    int rc = mdb_get(txn, S.kv, &k, &v);
    if (rc == 0)
        old_at = stored_expiry(&v);
    else if (rc != MDB_NOTFOUND)
        return rc;
    v = (MDB_val){HEADER + a->value.len, NULL};
    if ((rc = mdb_put(txn, S.kv, &k, &v, MDB_RESERVE)) != 0)
        return rc;
    put_le64(v.mv_data, at);
    if (a->value.len)
        memcpy((char *)v.mv_data + HEADER, a->value.ptr, a->value.len);
    return index_move(txn, a->key, old_at, at);
}

kapi_status
store_put(kapi_str key, kapi_str value, uint32_t ttl_s)
{
    kapi_status st = check_open();
    if (st != KAPI_OK)
        return st;
    if (check_key(key, 1) != KAPI_OK || (!value.ptr && value.len))
        return KAPI_EINVAL;
    if (value.len > STORE_MAX_VALUE)
        return KAPI_ETOOBIG;
    put_arg a = {key, value, ttl_s};
    return write_txn("put", put_op, &a, true);
}

typedef struct delete_arg {
    kapi_str key;
    bool only_expired; /* a get found it expired; another writer may have replaced it since */
} delete_arg;

static int
delete_op(MDB_txn *txn, void *arg, kapi_status *st)
{
    (void)st;
    const delete_arg *a = arg;
    MDB_val k = key_val(a->key), v;
    int rc = mdb_get(txn, S.kv, &k, &v);
    if (rc == 0 && (!a->only_expired || expired(&v, clock_now())))
        rc = remove_key(txn, a->key, stored_expiry(&v));
    return rc == MDB_NOTFOUND ? 0 : rc;
}

kapi_status
store_delete(kapi_str key)
{
    kapi_status st = check_open();
    if (st != KAPI_OK)
        return st;
    if (check_key(key, 1) != KAPI_OK)
        return KAPI_EINVAL;
    delete_arg a = {key, false};
    return write_txn("delete", delete_op, &a, false);
}

typedef struct incr_arg {
    kapi_str key;
    int64_t delta;
    uint32_t ttl_s;
    int64_t result;
} incr_arg;

static int
incr_op(MDB_txn *txn, void *arg, kapi_status *st)
{
    incr_arg *a = arg;
    MDB_val k = key_val(a->key), v;
    int64_t now = clock_now(), value = 0;
    uint64_t old_at = 0, at = expiry(a->ttl_s, now);
    int rc = mdb_get(txn, S.kv, &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (rc == 0)
        old_at = stored_expiry(&v);
    if (rc == 0 && !expired(&v, now)) {
        if (v.mv_size != HEADER + COUNTER) {
            *st = KAPI_EINVAL;
            return 0;
        }
        at = old_at;
        value = (int64_t)get_le64((const char *)v.mv_data + HEADER);
    }
    if (__builtin_add_overflow(value, a->delta, &a->result)) {
        *st = KAPI_EINVAL;
        return 0;
    }
    unsigned char buf[HEADER + COUNTER];
    put_le64(buf, at);
    put_le64(buf + HEADER, (uint64_t)a->result);
    MDB_val nv = {sizeof(buf), buf};
    if ((rc = mdb_put(txn, S.kv, &k, &nv, 0)) != 0)
        return rc;
    return index_move(txn, a->key, old_at, at);
}

kapi_status
store_incr(kapi_str key, int64_t delta, uint32_t ttl_s, int64_t *out)
{
    kapi_status st = check_open();
    if (st != KAPI_OK)
        return st;
    if (check_key(key, 1) != KAPI_OK)
        return KAPI_EINVAL;
    incr_arg a = {key, delta, ttl_s, 0};
    if ((st = write_txn("incr", incr_op, &a, true)) == KAPI_OK && out)
        *out = a.result;
    return st;
}

/* ---- reads ---- */

/* Copies LEN bytes at P into R's arena as a NUL-terminated view. */
static kapi_status
copy_out(kapi_req *r, const void *p, size_t len, kapi_str *out)
{
    char *d = arena_alloc(&r->arena, len + 1);
    if (!d)
        return KAPI_ENOMEM;
    if (len)
        memcpy(d, p, len);
    *out = (kapi_str){d, len};
    return KAPI_OK;
}

kapi_status
store_get(kapi_req *r, kapi_str key, kapi_str *out)
{
    kapi_status st = check_open();
    if (st != KAPI_OK)
        return st;
    if (!r || !out || check_key(key, 1) != KAPI_OK)
        return KAPI_EINVAL;
    *out = (kapi_str){"", 0};
    MDB_txn *txn;
    MDB_val k = key_val(key), v;
    bool stale = false;
    int rc = read_begin(&txn);
    if (rc != 0)
        return fail("get", rc);
    rc = mdb_get(txn, S.kv, &k, &v);
    if (rc == MDB_NOTFOUND)
        st = KAPI_ENOTFOUND;
    else if (rc != 0)
        st = fail("get", rc);
    else if ((stale = expired(&v, clock_now())))
        st = KAPI_ENOTFOUND;
    else
        st = copy_out(r, (const char *)v.mv_data + HEADER, v.mv_size - HEADER, out);
    read_end(txn);
    if (stale) {
        delete_arg a = {key, true};
        write_txn("expire", delete_op, &a, false);
    }
    return st;
}

static bool
has_prefix(const MDB_val *k, kapi_str prefix)
{
    return k->mv_size >= prefix.len && memcmp(k->mv_data, prefix.ptr, prefix.len) == 0;
}

kapi_status
store_scan(kapi_req *r, kapi_str prefix, size_t max, kapi_header *out, size_t *n)
{
    kapi_status st = check_open();
    if (st != KAPI_OK)
        return st;
    if (!r || !n || (max && !out) || check_key(prefix, 0) != KAPI_OK)
        return KAPI_EINVAL;
    *n = 0;
    if (max == 0)
        return KAPI_OK;
    MDB_txn *txn;
    MDB_cursor *c;
    MDB_val k = key_val(prefix), v;
    int64_t now = clock_now();
    int rc = read_begin(&txn);
    if (rc != 0)
        return fail("scan", rc);
    if ((rc = mdb_cursor_open(txn, S.kv, &c)) != 0) {
        read_end(txn);
        return fail("scan", rc);
    }
    rc = mdb_cursor_get(c, &k, &v, prefix.len ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && *n < max && has_prefix(&k, prefix)) {
        if (!expired(&v, now)) {
            kapi_header *h = &out[*n];
            if ((st = copy_out(r, k.mv_data, k.mv_size, &h->name)) != KAPI_OK ||
                (st = copy_out(r, (const char *)v.mv_data + HEADER, v.mv_size - HEADER,
                               &h->value)) != KAPI_OK)
                break;
            (*n)++;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        st = fail("scan", rc);
    mdb_cursor_close(c);
    read_end(txn);
    return st;
}

/* ---- environment ---- */

/* mkdir -p with mode 0700 for each directory it creates. */
static int
make_dirs(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -1;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* Opens the named databases and sizes the soft limit from the map LMDB
 * actually uses (an existing environment may hold a bigger one). */
static int
open_kv(MDB_env *env)
{
    MDB_txn *txn;
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    if ((rc = mdb_dbi_open(txn, "kv", MDB_CREATE, &S.kv)) != 0 ||
        (rc = mdb_dbi_open(txn, "expiry", MDB_CREATE, &S.expiry)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &S.meta)) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    if ((rc = mdb_txn_commit(txn)) != 0 || (rc = mdb_env_info(env, &info)) != 0 ||
        (rc = mdb_env_stat(env, &st)) != 0)
        return rc;
    size_t pages = info.me_mapsize / st.ms_psize;
    S.soft_pages = pages - pages / RESERVE_DIV;
    S.map_bytes = info.me_mapsize;
    return 0;
}

kapi_status
store_open(const char *dir, size_t map_bytes, bool durable, char *err, size_t errlen)
{
    if (check_open() == KAPI_OK) {
        snprintf(err, errlen, "store: already open");
        return KAPI_ESTATE;
    }
    if (!dir || !*dir) {
        snprintf(err, errlen, "store: no data directory");
        return KAPI_ECONFIG;
    }
    if (map_bytes == 0)
        map_bytes = STORE_DEFAULT_MAP;
    if (map_bytes < STORE_MIN_MAP) {
        snprintf(err, errlen, "store.map_bytes: %zu is below the minimum of %d", map_bytes,
                 STORE_MIN_MAP);
        return KAPI_ECONFIG;
    }
    if (make_dirs(dir) != 0) {
        snprintf(err, errlen, "store: cannot create the data directory %s: %s", dir,
                 strerror(errno));
        return KAPI_EIO;
    }
    MDB_env *env = NULL;
    int dead = 0;
    unsigned flags = MDB_NOTLS | (durable ? 0 : MDB_NOSYNC);
    int rc = mdb_env_create(&env);
    if (rc == 0 && (rc = mdb_env_set_maxdbs(env, MAX_DBS)) == 0 &&
        (rc = mdb_env_set_maxreaders(env, MAX_READERS)) == 0 &&
        (rc = mdb_env_set_mapsize(env, map_bytes)) == 0 &&
        (rc = mdb_env_open(env, dir, flags, 0600)) == 0 && (rc = mdb_reader_check(env, &dead)) == 0)
        rc = open_kv(env);
    if (rc != 0) {
        snprintf(err, errlen, "store: cannot open the environment in %s: %s", dir,
                 mdb_strerror(rc));
        if (env)
            mdb_env_close(env);
        return rc == ENOMEM ? KAPI_ENOMEM : KAPI_EIO;
    }
    S.env = env;
    S.durable = durable;
    atomic_store_explicit(&is_open, true, memory_order_release);
    return KAPI_OK;
}

void
store_close(void)
{
    if (check_open() != KAPI_OK)
        return;
    atomic_store(&is_open, false);
    for (size_t i = 0; i < S.npool; i++)
        mdb_txn_abort(S.pool[i]);
    S.npool = 0;
    if (!S.durable)
        mdb_env_sync(S.env, 1);
    mdb_env_close(S.env);
    S.env = NULL;
}

kapi_status
store_sync(void)
{
    kapi_status st = check_open();
    if (st != KAPI_OK)
        return st;
    evict_expired(EVICT_MAX);
    int dead = 0, rc = mdb_reader_check(S.env, &dead);
    if (rc == 0 && !S.durable)
        rc = mdb_env_sync(S.env, 1);
    return rc != 0 ? fail("sync", rc) : KAPI_OK;
}

/* ---- the host table ---- */

static kapi_status
host_put(kapi_req *r, kapi_str key, kapi_str value, uint32_t ttl_s)
{
    (void)r;
    return store_put(key, value, ttl_s);
}

static kapi_status
host_delete(kapi_req *r, kapi_str key)
{
    (void)r;
    return store_delete(key);
}

static kapi_status
host_incr(kapi_req *r, kapi_str key, int64_t delta, uint32_t ttl_s, int64_t *out)
{
    (void)r;
    return store_incr(key, delta, ttl_s, out);
}

void
store_fill_host(kapi_host *h)
{
    h->store_get = store_get;
    h->store_put = host_put;
    h->store_delete = host_delete;
    h->store_incr = host_incr;
    h->store_scan = store_scan;
}
