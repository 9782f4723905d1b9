/* kapi/store.h -- the persistent state scope of the SDK: a key/value store
 * with per-entry expiry, atomic counters and prefix scans, kept by the host
 * in LMDB under the gateway's data directory. It survives restart and
 * kill -9 and is shared by every module, every worker thread and every kapi
 * process using the same data directory.
 *
 * Keys are one namespace for all modules: prefix yours with your module's
 * name and a colon ("rate-limit:10.0.0.1", "counter:visits").
 *
 * The wrappers below only forward to kapi_host_api; the contracts --
 * ownership, expiry, counters, return values -- are written once, on the
 * store_* members in kapi/host.h. Modules never open LMDB themselves. */
#ifndef KAPI_STORE_H
#define KAPI_STORE_H

#include <stdint.h>

#include "host.h"
#include "module.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
static inline kapi_status kapi_store_get(kapi_req *r, kapi_str key, kapi_str *out) { return kapi_host_api->store_get(r, key, out); }
static inline kapi_status kapi_store_put(kapi_req *r, kapi_str key, kapi_str value, uint32_t ttl_s) { return kapi_host_api->store_put(r, key, value, ttl_s); }
static inline kapi_status kapi_store_delete(kapi_req *r, kapi_str key) { return kapi_host_api->store_delete(r, key); }
static inline kapi_status kapi_store_incr(kapi_req *r, kapi_str key, int64_t delta, uint32_t ttl_s, int64_t *out) { return kapi_host_api->store_incr(r, key, delta, ttl_s, out); }
static inline kapi_status kapi_store_scan(kapi_req *r, kapi_str prefix, size_t max, kapi_header *out, size_t *n) { return kapi_host_api->store_scan(r, prefix, max, out, n); }
/* clang-format on */

/* kapi_store_counter_value -- decodes a counter VALUE (as kapi_store_get or
 * kapi_store_scan return it: 8 bytes, little-endian) into *OUT.
 * Returns KAPI_EINVAL when VALUE is not 8 bytes long. Pure; no host call. */
static inline kapi_status
kapi_store_counter_value(kapi_str value, int64_t *out)
{
    if (value.len != 8)
        return KAPI_EINVAL;
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | (unsigned char)value.ptr[i];
    *out = (int64_t)u;
    return KAPI_OK;
}

#ifdef __cplusplus
}
#endif
#endif /* KAPI_STORE_H */
