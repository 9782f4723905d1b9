/* kapi/kapi.h -- the umbrella header of the kapi SDK: includes every public
 * header and gives each host table member a kapi_<object>_<verb> name.
 *
 * The wrappers below only forward to kapi_host_api (set by KAPI_MODULE's
 * entry); their contracts -- phases, ownership, return values -- are written
 * once, on the table members in kapi/host.h. A module may also call through
 * the table directly. Nothing here allocates or keeps state. */
#ifndef KAPI_KAPI_H
#define KAPI_KAPI_H

#include <stdarg.h>
#include <stdio.h>

#include "host.h"
#include "module.h"
#include "status.h"
#include "store.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
#define kapi_log(r, level, ...) kapi_host_api->log((r), (level), __VA_ARGS__)

static inline kapi_status kapi_req_method(kapi_req *r, kapi_str *out) { return kapi_host_api->req_method(r, out); }
static inline kapi_status kapi_req_path(kapi_req *r, kapi_str *out) { return kapi_host_api->req_path(r, out); }
static inline kapi_status kapi_req_query(kapi_req *r, kapi_str *out) { return kapi_host_api->req_query(r, out); }
static inline kapi_status kapi_req_query_param(kapi_req *r, kapi_str name, size_t index, kapi_str *out) { return kapi_host_api->req_query_param(r, name, index, out); }
static inline kapi_status kapi_req_path_param(kapi_req *r, kapi_str name, kapi_str *out) { return kapi_host_api->req_path_param(r, name, out); }
static inline kapi_status kapi_req_host(kapi_req *r, kapi_str *out) { return kapi_host_api->req_host(r, out); }
static inline kapi_status kapi_req_client_addr(kapi_req *r, kapi_str *out) { return kapi_host_api->req_client_addr(r, out); }
static inline kapi_status kapi_req_id(kapi_req *r, kapi_str *out) { return kapi_host_api->req_id(r, out); }
static inline kapi_status kapi_req_header(kapi_req *r, kapi_str name, size_t index, kapi_str *out) { return kapi_host_api->req_header(r, name, index, out); }
static inline kapi_status kapi_req_header_at(kapi_req *r, size_t index, kapi_header *out) { return kapi_host_api->req_header_at(r, index, out); }
static inline kapi_status kapi_req_body(kapi_req *r, kapi_str *out) { return kapi_host_api->req_body(r, out); }
static inline kapi_status kapi_req_header_set(kapi_req *r, kapi_str name, kapi_str value) { return kapi_host_api->req_header_set(r, name, value); }
static inline kapi_status kapi_req_header_add(kapi_req *r, kapi_str name, kapi_str value) { return kapi_host_api->req_header_add(r, name, value); }
static inline kapi_status kapi_req_header_remove(kapi_req *r, kapi_str name) { return kapi_host_api->req_header_remove(r, name); }

static inline kapi_status kapi_respond(kapi_req *r, int status, const kapi_header *headers, size_t nheaders, kapi_str body) { return kapi_host_api->respond(r, status, headers, nheaders, body); }

static inline kapi_status kapi_resp_status(kapi_req *r, int *out) { return kapi_host_api->resp_status(r, out); }
static inline kapi_status kapi_resp_set_status(kapi_req *r, int status) { return kapi_host_api->resp_set_status(r, status); }
static inline kapi_status kapi_resp_header(kapi_req *r, kapi_str name, size_t index, kapi_str *out) { return kapi_host_api->resp_header(r, name, index, out); }
static inline kapi_status kapi_resp_header_at(kapi_req *r, size_t index, kapi_header *out) { return kapi_host_api->resp_header_at(r, index, out); }
static inline kapi_status kapi_resp_header_set(kapi_req *r, kapi_str name, kapi_str value) { return kapi_host_api->resp_header_set(r, name, value); }
static inline kapi_status kapi_resp_header_add(kapi_req *r, kapi_str name, kapi_str value) { return kapi_host_api->resp_header_add(r, name, value); }
static inline kapi_status kapi_resp_header_remove(kapi_req *r, kapi_str name) { return kapi_host_api->resp_header_remove(r, name); }
static inline kapi_status kapi_resp_body(kapi_req *r, kapi_str *out) { return kapi_host_api->resp_body(r, out); }
static inline kapi_status kapi_resp_set_body(kapi_req *r, kapi_str body) { return kapi_host_api->resp_set_body(r, body); }

static inline void *kapi_alloc(kapi_req *r, size_t size) { return kapi_host_api->alloc(r, size); }
static inline void *kapi_ctx(kapi_req *r) { return kapi_host_api->ctx(r); }
static inline kapi_status kapi_shared_set(kapi_req *r, kapi_str key, kapi_str value) { return kapi_host_api->shared_set(r, key, value); }
static inline kapi_status kapi_shared_get(kapi_req *r, kapi_str key, kapi_str *out) { return kapi_host_api->shared_get(r, key, out); }

static inline kapi_status kapi_pause(kapi_req *r, uint32_t timeout_ms, kapi_token **out) { return kapi_host_api->pause(r, timeout_ms, out); }
static inline kapi_status kapi_resume(kapi_token *token) { return kapi_host_api->resume(token); }
static inline kapi_status kapi_fetch(kapi_req *r, const kapi_fetch_request *f, kapi_fetch_done done, void *data) { return kapi_host_api->fetch(r, f, done, data); }

/* clang-format on */

/* Fills ERR for a create() that refuses its config: PATH is the key inside
 * the module's config ("limit", "keys[1].alg"; "" for the object as a
 * whole) and the message is printf-style, both cut to fit. Returns
 * KAPI_ECONFIG, so a refusal reads `return kapi_error_set(err, "limit",
 * "expected integer");`. Calls no host function: usable before the entry
 * ran and in tests. */
static inline kapi_status kapi_error_set(kapi_error *err, const char *path, const char *fmt, ...)
    KAPI_PRINTF(3, 4);

static inline kapi_status
kapi_error_set(kapi_error *err, const char *path, const char *fmt, ...)
{
    va_list ap;
    snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return KAPI_ECONFIG;
}

/* A view of a NUL-terminated string (NULL gives an empty view). */
static inline kapi_str
kapi_str_c(const char *s)
{
    kapi_str v = { s ? s : "", 0 };
    while (v.ptr[v.len])
        v.len++;
    return v;
}

#ifdef __cplusplus
}
#endif
#endif /* KAPI_KAPI_H */
