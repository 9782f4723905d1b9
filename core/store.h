/* store.h -- the persistent state scope: one LMDB environment per process
 * under the data directory, a key/value store with per-entry expiry, atomic
 * counters and prefix scans, behind the SDK's store_* host members.
 *
 * Every call is thread-safe once store_open has returned; before it (and
 * after store_close) every operation returns KAPI_ESTATE. Several kapi
 * processes may share one data directory (configure the same map size in
 * all of them). A forked child must call store_open itself; it must never
 * use an environment its parent opened. LMDB's codes stop in store.c: each
 * failure is translated to a kapi_status and logged once there. */
#ifndef KAPI_CORE_STORE_H
#define KAPI_CORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kapi/host.h>

#define STORE_MAX_KEY 480              /* bytes; keys are 1..480 bytes */
#define STORE_MAX_VALUE (1024 * 1024)  /* bytes */
#define STORE_DEFAULT_MAP (256u << 20) /* map_bytes 0 means this */
#define STORE_MIN_MAP (1024 * 1024)    /* smaller map sizes are refused */

/* Opens (creating it and missing parents with mode 0700) the directory DIR
 * and the environment in it, with a map of MAP_BYTES (0: the default). When
 * DURABLE, every commit is flushed to disk; otherwise commits use
 * MDB_NOSYNC and the caller calls store_sync periodically. On failure
 * returns KAPI_ECONFIG (bad argument), KAPI_ESTATE (already open) or
 * KAPI_EIO and writes one line into ERR (ERRLEN bytes). */
kapi_status store_open(const char *dir, size_t map_bytes, bool durable, char *err, size_t errlen);
/* Closes the environment; no other store call may be running. No-op when
 * not open. */
void store_close(void);
/* Periodic upkeep: deletes up to 4096 expired entries, frees the reader
 * slots of processes that died and, unless durable, flushes committed
 * writes to disk. Call it from a timer, e.g. every second (the flush
 * interval bounds what a power failure can lose). KAPI_ESTATE when not
 * open, KAPI_EIO when the flush failed. */
kapi_status store_sync(void);

/* The value of KEY, copied into R's arena (request-scoped, NUL-terminated).
 * KAPI_ENOTFOUND when absent or expired; KAPI_EINVAL for a NULL R or a bad
 * key. */
kapi_status store_get(kapi_req *r, kapi_str key, kapi_str *out);
/* Sets KEY to VALUE (both copied), expiring TTL_S seconds from now (0:
 * never). KAPI_ETOOBIG when VALUE exceeds 1 MiB or the store is full after
 * evicting expired entries. */
kapi_status store_put(kapi_str key, kapi_str value, uint32_t ttl_s);
/* Removes KEY; KAPI_OK also when it was absent. */
kapi_status store_delete(kapi_str key);
/* Adds DELTA to the counter KEY in one write transaction and sets *OUT to
 * the new value. An absent or expired counter starts at 0 and gets TTL_S;
 * a live counter keeps its expiry (TTL_S is then ignored). A value that is
 * not 8 bytes, or a sum outside int64_t, gives KAPI_EINVAL and no change. */
kapi_status store_incr(kapi_str key, int64_t delta, uint32_t ttl_s, int64_t *out);
/* Up to MAX live pairs whose key starts with PREFIX (may be empty), in key
 * order, into OUT[0..*N); names and values are copied into R's arena. */
kapi_status store_scan(kapi_req *r, kapi_str prefix, size_t max, kapi_header *out, size_t *n);

/* Sets the store_* members of the host table H. */
void store_fill_host(kapi_host *h);

/* Tests only: replaces the clock (unix seconds) expiry is measured with;
 * NULL restores the real one. Call while no other thread uses the store. */
void store_set_clock(int64_t (*now)(void));

#endif /* KAPI_CORE_STORE_H */
