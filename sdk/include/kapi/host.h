/* kapi/host.h -- the host function table: everything a module may ask of the
 * gateway. The host hands a const kapi_host to the module's entry function;
 * the table stays valid until the module's last instance is destroyed.
 *
 * The table is append-only: a new minor ABI version adds members at the end
 * and never moves, removes or changes one. SIZE lets a module built against a
 * newer minor test whether a member exists (KAPI_HOST_HAS). Modules never link
 * against symbols of the gateway binary; this table is the only way in.
 *
 * Phases and what is valid in them (anything else returns KAPI_EPHASE):
 *
 *   call                                  access  handle  response  log
 *   req_* readers (incl. req_body)          yes     yes     yes      yes
 *   req_header_set, _add, _remove           yes     no      no       no
 *   respond                                 yes     yes     no       no
 *   resp_status, resp_header(_at), body     no      yes     yes      yes
 *   resp_set_status, _set_body, header_set,
 *     resp_header_add, resp_header_remove   no      yes     yes      no
 *   pause                                   yes     yes     no       no
 *   alloc, ctx, shared_get, shared_set, log yes     yes     yes      yes
 *   store_get, _put, _delete, _incr, _scan  yes     yes     yes      yes
 *   fetch (ABI 1.1)                         yes     yes     no       no
 *
 * "access" is a plugin's on_access, "handle" a function's handle, "response"
 * a plugin's on_response and "log" its on_log. store_put, store_delete and
 * store_incr may also be called with a NULL request, e.g. from create. All
 * calls except resume, log and the store calls with a NULL request must be
 * made on the thread that runs the hook. */
#ifndef KAPI_HOST_H
#define KAPI_HOST_H

#include <stddef.h>

#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KAPI_ABI_MAJOR 1
#define KAPI_ABI_MINOR 1

#if defined(__GNUC__)
#define KAPI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KAPI_PRINTF(f, a)
#endif

/* ---- subrequests (ABI 1.1): see kapi_host.fetch ---- */

/* What to fetch. Every view is borrowed until fetch returns (the host
 * copies what it keeps). */
typedef struct kapi_fetch_request {
    kapi_str method;            /* a token ("POST"); "GET" when empty */
    kapi_str upstream;          /* a configured upstream's name; empty to use URL */
    kapi_str url;               /* with UPSTREAM: the path and query ("/v1/users?id=3";
                                   empty: "/"); without: "http://HOST[:PORT]/path?query"
                                   or https://, HOST numeric or "localhost" (a loop
                                   thread never waits on DNS: name other hosts in an
                                   upstream). The path starts with '/' and holds no
                                   space, control byte or '#' (percent-encode them) */
    const kapi_header *headers; /* sent as given, except Host, Content-Length,
                                   Transfer-Encoding and hop-by-hop ones,
                                   which the host sets or drops, and
                                   X-Request-Id and traceparent, which it
                                   replaces with its own (see fetch) */
    size_t nheaders;
    kapi_str body;
    uint32_t timeout_ms; /* all tries together; 0: the upstream's timeout_ms,
                            10000 for a URL */
} kapi_fetch_request;

/* What came back; every view is request-scoped. */
typedef struct kapi_fetch_response {
    int status;       /* the upstream's status; 0 when the subrequest failed */
    int error_status; /* when STATUS is 0: 502, 503 or 504, the answer a proxy would give */
    kapi_str error;   /* when STATUS is 0: why, client-safe (no internal address) */
    const kapi_header *headers; /* the response's headers as received; NULL
                                   when STATUS is 0 */
    size_t nheaders;
    kapi_str body; /* {NULL, 0} when STATUS is 0: test len, not ptr */
} kapi_fetch_response;

/* Called once per fetch, on the request's thread, never inside fetch()
 * and outside any hook (see kapi_host.fetch for what R allows there). R
 * and RES are valid for the call (RES's views for the whole request). */
typedef void (*kapi_fetch_done)(kapi_req *r, void *data, const kapi_fetch_response *res);

typedef struct kapi_host {
    /* sizeof(kapi_host) in the host that filled the table. */
    size_t size;
    /* The host's ABI version. */
    uint16_t abi_major;
    uint16_t abi_minor;

    /* ---- log ---- */
    /* Writes one log line at LEVEL, tagged with the module name and, when R
     * is not NULL, the request id. R may be NULL (e.g. in create); with a
     * NULL R the call is valid from any thread. */
    void (*log)(kapi_req *r, kapi_log_level level, const char *fmt, ...) KAPI_PRINTF(3, 4);

    /* ---- request readers: views are request-scoped ---- */
    /* The method as sent ("GET"). */
    kapi_status (*req_method)(kapi_req *r, kapi_str *out);
    /* The normalized path the route matched (no query), after strip_prefix
     * when the route strips one. */
    kapi_status (*req_path)(kapi_req *r, kapi_str *out);
    /* The raw query string after '?', not decoded; empty when absent. */
    kapi_status (*req_query)(kapi_req *r, kapi_str *out);
    /* The INDEX-th (0-based) value of query parameter NAME, percent- and
     * '+'-decoded. KAPI_ENOTFOUND past the last value. */
    kapi_status (*req_query_param)(kapi_req *r, kapi_str name, size_t index, kapi_str *out);
    /* The value of path parameter NAME ("{id}" in the route), decoded. */
    kapi_status (*req_path_param)(kapi_req *r, kapi_str name, kapi_str *out);
    /* The Host header without port, lower-cased; empty when absent. */
    kapi_status (*req_host)(kapi_req *r, kapi_str *out);
    /* The client's address as text ("127.0.0.1", "::1"). */
    kapi_status (*req_client_addr)(kapi_req *r, kapi_str *out);
    /* The request id (the client's X-Request-Id if well-formed, else new). */
    kapi_status (*req_id)(kapi_req *r, kapi_str *out);
    /* The INDEX-th value of header NAME (case-insensitive); a header sent on
     * several lines has several values. KAPI_ENOTFOUND past the last. */
    kapi_status (*req_header)(kapi_req *r, kapi_str name, size_t index, kapi_str *out);
    /* The INDEX-th header line in order; KAPI_ENOTFOUND past the last. */
    kapi_status (*req_header_at)(kapi_req *r, size_t index, kapi_header *out);
    /* The whole request body (the host buffers it, bounded by the body
     * limit, before the access phase); empty when there is none. */
    kapi_status (*req_body)(kapi_req *r, kapi_str *out);

    /* ---- request writers (access phase): NAME and VALUE are copied ---- */
    /* Replaces every value of NAME with VALUE. */
    kapi_status (*req_header_set)(kapi_req *r, kapi_str name, kapi_str value);
    /* Adds one more value of NAME. */
    kapi_status (*req_header_add)(kapi_req *r, kapi_str name, kapi_str value);
    /* Removes every value of NAME; KAPI_OK even when there was none. */
    kapi_status (*req_header_remove)(kapi_req *r, kapi_str name);

    /* ---- producing a response ---- */
    /* Answers the request with STATUS (200..599: a 1xx is never a final
     * answer), the NHEADERS headers and BODY; all are copied into the
     * request. The headers are added to any a function set before with
     * resp_header_set/add. From on_access, return KAPI_DONE afterwards.
     * KAPI_EINVAL for a bad status, header name or value; KAPI_ESTATE if
     * respond was already called for this request. */
    kapi_status (*respond)(kapi_req *r, int status, const kapi_header *headers, size_t nheaders,
                           kapi_str body);

    /* ---- response readers and writers ---- */
    /* The response status; 0 while there is none yet (in handle). */
    kapi_status (*resp_status)(kapi_req *r, int *out);
    /* Sets the status (200..599); KAPI_EINVAL outside that range. */
    kapi_status (*resp_set_status)(kapi_req *r, int status);
    /* The INDEX-th value of response header NAME (case-insensitive), a
     * request-scoped view; KAPI_ENOTFOUND past the last. */
    kapi_status (*resp_header)(kapi_req *r, kapi_str name, size_t index, kapi_str *out);
    /* The INDEX-th response header line in order; KAPI_ENOTFOUND past the last. */
    kapi_status (*resp_header_at)(kapi_req *r, size_t index, kapi_header *out);
    /* Replaces every value of NAME with VALUE (both copied). KAPI_EINVAL for
     * a name that is not a token or a value with CR, LF or NUL. The server
     * owns Content-Length, Transfer-Encoding, Connection and X-Request-Id:
     * values set for those are not sent. */
    kapi_status (*resp_header_set)(kapi_req *r, kapi_str name, kapi_str value);
    /* Adds one more value of NAME (copied); errors as resp_header_set. */
    kapi_status (*resp_header_add)(kapi_req *r, kapi_str name, kapi_str value);
    /* Removes every value of NAME; KAPI_OK even when there was none. */
    kapi_status (*resp_header_remove)(kapi_req *r, kapi_str name);
    /* The response body, a request-scoped view (empty when none). */
    kapi_status (*resp_body)(kapi_req *r, kapi_str *out);
    /* Replaces the body; BODY is copied. Content-Length follows the body. */
    kapi_status (*resp_set_body)(kapi_req *r, kapi_str body);

    /* ---- memory and state ---- */
    /* SIZE bytes from the request arena, aligned for any type, zeroed;
     * request-scoped, never freed by the module. NULL when out of memory. */
    void *(*alloc)(kapi_req *r, size_t size);
    /* The calling module's private context for this request: req_ctx_size
     * zeroed bytes (see kapi_module), request-scoped. NULL when the module
     * declared req_ctx_size 0. */
    void *(*ctx)(kapi_req *r);
    /* Shared per-request values between plugins, namespaced by convention
     * ("auth.subject"). KEY and VALUE are copied; set replaces. */
    kapi_status (*shared_set)(kapi_req *r, kapi_str key, kapi_str value);
    kapi_status (*shared_get)(kapi_req *r, kapi_str key, kapi_str *out);

    /* ---- async ---- */
    /* Prepares to pause the running hook. On KAPI_OK *OUT is a token the
     * module must pass to resume() exactly once, from any thread, after which
     * the host calls the same hook again on the request's own thread; the
     * hook then finds its result in its ctx(). The hook must return
     * KAPI_PAUSE. TIMEOUT_MS bounds the pause (0: the configured default);
     * when it passes the host answers 504 and the request ends, and a later
     * resume() is ignored safely. Until the token is resumed the request's
     * memory (its ctx(), alloc() blocks, views) stays valid, also after a
     * timeout, so a worker thread may write its result there at any time
     * before it calls resume(); it must not touch it afterwards. */
    kapi_status (*pause)(kapi_req *r, uint32_t timeout_ms, kapi_token **out);
    /* Resumes the paused request. Callable from any thread, exactly once per
     * token; the token is released by this call. Returns KAPI_OK, also when
     * the request has already ended (the resume then only releases it). A
     * second resume of one token is a module bug the host cannot always
     * catch: the token may already be freed. It returns KAPI_ESTATE when it
     * does catch it (a second call before the first was processed). */
    kapi_status (*resume)(kapi_token *token);

    /* ---- persistent store (see kapi/store.h): state that survives restart
     * and kill -9, shared by every module and every process using the same
     * data directory. Keys are 1..480 bytes; prefix them with your module's
     * name and a colon ("rate-limit:client:10.0.0.1"). Values are up to
     * 1 MiB. KEY, VALUE and PREFIX are borrowed for the call. An entry
     * written with TTL_S > 0 expires TTL_S seconds later and then reads as
     * absent; 0 means it never expires. Each call is atomic and thread-safe.
     * Every call returns KAPI_ESTATE when the gateway runs without a store,
     * KAPI_EINVAL for a key that is empty or longer than 480 bytes, and
     * KAPI_EIO when the store fails (the host logs why). ---- */
    /* The value of KEY in *OUT, request-scoped. KAPI_ENOTFOUND when absent
     * or expired; KAPI_ENOMEM when the arena is exhausted; R must not be
     * NULL. */
    kapi_status (*store_get)(kapi_req *r, kapi_str key, kapi_str *out);
    /* Sets KEY to VALUE, replacing any value and expiry. KAPI_ETOOBIG when
     * VALUE exceeds 1 MiB, or when the store is full even after dropping
     * expired entries. R may be NULL. */
    kapi_status (*store_put)(kapi_req *r, kapi_str key, kapi_str value, uint32_t ttl_s);
    /* Removes KEY; KAPI_OK also when it was absent. R may be NULL. */
    kapi_status (*store_delete)(kapi_req *r, kapi_str key);
    /* Adds DELTA (may be negative) to the counter KEY and sets *OUT to the
     * result, in one transaction: concurrent increments from any thread or
     * process are never lost. A counter is a value of exactly 8 bytes, a
     * little-endian int64_t (what store_get returns for it). An absent or
     * expired counter starts at 0 and expires TTL_S seconds after this call;
     * a live counter keeps the expiry it was created with (TTL_S is then
     * ignored), so a fixed window is "incr with the window's TTL". A value
     * of another size, or a result outside int64_t, gives KAPI_EINVAL and
     * changes nothing. KAPI_ETOOBIG when the store is full. R may be NULL. */
    kapi_status (*store_incr)(kapi_req *r, kapi_str key, int64_t delta, uint32_t ttl_s,
                              int64_t *out);
    /* Up to MAX live entries whose key starts with PREFIX (empty: all), in
     * byte-wise key order, into OUT[0..*N): name is the key, value the value,
     * both request-scoped. OUT has room for MAX entries (borrowed for the
     * call). *N < MAX means there are no more. R must not be NULL. */
    kapi_status (*store_scan)(kapi_req *r, kapi_str prefix, size_t max, kapi_header *out,
                              size_t *n);

    /* ---- ABI 1.1 ---- */
    /* Starts a subrequest F through the gateway's upstream client (pools,
     * balancing, breakers, retries and timeouts of the named upstream) and
     * returns at once. DONE(R, DATA, response) runs exactly once, later,
     * on R's thread, also when R was answered meanwhile (a pause deadline),
     * so a module that paused must resume its token from DONE or after it.
     * DONE runs between hooks, in no phase: there every call with R returns
     * KAPI_EPHASE, and ctx() and alloc() return NULL, except log() and
     * resume(). So pass what DONE needs as DATA, e.g. the ctx() block or a
     * part of it: R's memory stays valid until DONE has returned. The usual
     * pattern: pause, fetch, return KAPI_PAUSE; DONE stores what it needs
     * in the block DATA points to and resumes. Several fetches may run at
     * once (an aggregation). The host adds X-Request-Id and a traceparent
     * (the request's trace, a new span). KAPI_ENOTFOUND: no upstream of that
     * name; KAPI_EINVAL: a NULL R, F or DONE, a method that is not a token,
     * a malformed URL or path, a host that is not numeric, or a bad header;
     * KAPI_EPHASE outside access and handle. On an error DONE never runs. */
    kapi_status (*fetch)(kapi_req *r, const kapi_fetch_request *f, kapi_fetch_done done,
                         void *data);
} kapi_host;

/* True when HOST has member MEMBER. Today the loader refuses a module built
 * against a newer minor than the host's (docs/sdk.md, "ABI versioning"), so
 * every member a module knows exists; the size check is what lets that rule
 * be relaxed later without a new major. */
#define KAPI_HOST_HAS(host, member)                                                                \
    (offsetof(kapi_host, member) + sizeof(((kapi_host *)0)->member) <= (host)->size)

#ifdef __cplusplus
}
#endif
#endif /* KAPI_HOST_H */
