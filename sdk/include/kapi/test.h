/* kapi/test.h -- libkapi_test, the fake host: load a module .so, create its
 * instances, build a request, run one hook or a whole chain (access, handle,
 * response, log) and assert on the response, the request and the log lines,
 * all without a server, an event loop or a socket.
 *
 * The request accessors, the phase checks and the chain runner are the
 * gateway's own code compiled into this library, so a module behaves here as
 * it does in production. What the fake host does differently: log() stores
 * lines in memory, pause() tokens are resumed only when the test calls
 * kapi_test_resume_pending(), a pause deadline passes only when the test
 * calls kapi_test_fire_timeout(), and a fetch() subrequest is queued until
 * the test answers it with kapi_test_fetch_reply() or kapi_test_fetch_fail().
 * It does not speak HTTP, route, normalize paths nor enforce body or header
 * limits, and the store API works only after kapi_test_store_open().
 *
 * Threads: every function here must be called from the test's own thread,
 * except that modules may call the table's resume() and log(NULL, ...) from
 * any thread while the host is alive. Join such threads before
 * kapi_test_host_free().
 *
 * Link with -lkapi_test -ldl -lpthread (pkg-config kapi_test, or the CMake
 * target kapi::test). */
#ifndef KAPI_TEST_H
#define KAPI_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A fake host: a kapi_host table, the modules and instances it created, its
 * requests, pause tokens and captured log lines. */
typedef struct kapi_test_host kapi_test_host;
/* One request built by the test, with its response. Owned by its host. */
typedef struct kapi_test_req kapi_test_req;

/* Where a test request stands. */
typedef enum kapi_test_state {
    KAPI_TEST_ERROR = -1, /* misuse: NULL argument, wrong module kind, out of memory */
    KAPI_TEST_READY = 0,  /* built, not run by kapi_test_run (single hooks may be called) */
    KAPI_TEST_PAUSED = 1, /* a hook returned KAPI_PAUSE; waiting for its resume() */
    KAPI_TEST_DONE = 2,   /* kapi_test_run finished: response final, log phase ran */
} kapi_test_state;

/* ---- host ---- */

/* A new fake host. Returns: NULL when out of memory; otherwise the caller
 * frees it with kapi_test_host_free. */
kapi_test_host *kapi_test_host_new(void);

/* Frees H and everything it owns, in this order: its requests, pause tokens
 * never resumed or not yet processed, fetches (DONE never runs for one not
 * answered yet), instances (the module's destroy, last created first), loaded
 * modules (dlclose) and log lines. Every pointer this API handed out for H is
 * invalid afterwards. NULL is a no-op. */
void kapi_test_host_free(kapi_test_host *h);

/* The host table handed to modules. Returns: a table with static storage
 * duration, the same for every host (hooks find their host through the
 * request). For a module compiled into the test binary, pass it to the
 * module's entry (kapi_module_entry) before using the module. */
const kapi_host *kapi_test_host_table(kapi_test_host *h);

/* ---- modules and instances ---- */

/* Loads the module at SO_PATH and checks it exactly as the gateway does
 * (the gateway's own loader: a private copy dlopened with RTLD_NOW |
 * RTLD_LOCAL, group- or world-writable files refused, the entry called with
 * the fake host's table, the descriptor checked). A SO_PATH without '/'
 * names a module in $KAPI_MODULE_DIR: "hello" and "hello.so" both load
 * "$KAPI_MODULE_DIR/hello.so". Loading an unchanged file again shares it.
 * Returns: KAPI_OK and *OUT, a descriptor borrowed until
 * kapi_test_host_free(H); otherwise KAPI_ENOTFOUND, KAPI_EIO, KAPI_EINVAL
 * (no entry symbol, bad descriptor or name) or KAPI_EABI (abi_major differs
 * or abi_minor is newer than this SDK's), with the gateway's one-line
 * message in ERR (ERRLEN bytes, NUL-terminated; may be NULL) naming the
 * file, e.g. "/m/x.so: built for kapi ABI 2.0, this kapi provides ABI 1.1
 * (major versions must match)". */
kapi_status kapi_test_load(kapi_test_host *h, const char *so_path, const kapi_module **out,
                           char *err, size_t errlen);

/* Calls M's create with CONFIG_JSON (NULL means "{}"), as the gateway does
 * before traffic. The fake host does not check that the text is JSON.
 * Returns: what create returned. On KAPI_OK *INSTANCE (may be NULL) is owned
 * by H: destroyed by kapi_test_instance_free or kapi_test_host_free. On
 * failure ERR (may be NULL) holds the module's path and message. */
kapi_status kapi_test_instance_new(kapi_test_host *h, const kapi_module *m, const char *config_json,
                                   void **instance, kapi_error *err);

/* Calls M's destroy on INSTANCE now, instead of in kapi_test_host_free.
 * Returns: KAPI_OK, or KAPI_ENOTFOUND when H did not create that instance
 * of M (or already destroyed it). */
kapi_status kapi_test_instance_free(kapi_test_host *h, const kapi_module *m, void *instance);

/* ---- building a request ---- */

/* A new request METHOD (NULL: "GET") TARGET (NULL: "/"): the path, then
 * optionally '?' and the raw query, e.g. "/users/7?fields=a%20b". The path
 * is taken as the normalized path the route matched (not decoded). The
 * request id is "test-1", "test-2"... in creation order per host; the client
 * address is "127.0.0.1"; host and body are empty until set.
 * Returns: NULL when out of memory; otherwise a request owned by H (freed by
 * kapi_test_req_free or kapi_test_host_free). */
kapi_test_req *kapi_test_req_new(kapi_test_host *h, const char *method, const char *target);

/* Frees R now; a pause token it still holds is abandoned (its resume is
 * dropped), and a fetch it started that is not answered yet can no longer be
 * answered (see kapi_test_fetch_reply). NULL is a no-op. */
void kapi_test_req_free(kapi_test_req *r);

/* The builders below copy their arguments into R. They return KAPI_OK,
 * KAPI_EINVAL (NULL or empty name), KAPI_ENOMEM, or KAPI_ESTATE once R was
 * run by kapi_test_run or while it is paused. */

/* Adds one request header line (a repeated NAME gives several values). A
 * "Host" header also sets the request's host (lower-cased, port dropped)
 * unless kapi_test_req_host set it. */
kapi_status kapi_test_req_header(kapi_test_req *r, const char *name, const char *value);
/* Sets the request body to LEN bytes of DATA (no Content-Length is added). */
kapi_status kapi_test_req_body(kapi_test_req *r, const void *data, size_t len);
/* Sets path parameter NAME ("{id}" in a route) to VALUE, already decoded;
 * KAPI_ETOOBIG past 16 parameters. */
kapi_status kapi_test_req_path_param(kapi_test_req *r, const char *name, const char *value);
/* Sets the client address as text ("10.0.0.1", "::1"). */
kapi_status kapi_test_req_client(kapi_test_req *r, const char *addr);
/* Sets the host req_host() returns, as given. */
kapi_status kapi_test_req_host(kapi_test_req *r, const char *host);
/* Sets the response of the fake upstream that kapi_test_run uses when it
 * gets no function: STATUS with N HEADERS and LEN bytes of BODY. Without
 * this call the fake upstream answers 200 with no header and no body. */
kapi_status kapi_test_req_upstream(kapi_test_req *r, int status, const kapi_header *headers,
                                   size_t n, const void *body, size_t len);

/* The core request behind R, to pass to a hook called by hand. Returns: a
 * handle borrowed until R is freed. Outside a hook its phase is "none", in
 * which every accessor returns KAPI_EPHASE: prefer kapi_test_call_*. */
kapi_req *kapi_test_req_handle(kapi_test_req *r);

/* ---- running a chain ---- */

/* Runs R through a route: the N PLUGINS (with INSTANCES[i], or NULL
 * instances when INSTANCES is NULL) on_access in order, then FUNCTION's
 * handle with FN_INSTANCE (or, when FUNCTION is NULL, a fake upstream
 * answering what kapi_test_req_upstream set), then on_response in reverse
 * order, then every plugin's on_log -- exactly as the gateway's chain does,
 * including 500 problem+json for a failing hook. The arrays are borrowed
 * until R is done. A request runs once.
 * Returns: KAPI_TEST_DONE (response final, log phase ran),
 * KAPI_TEST_PAUSED (a hook paused: see kapi_test_resume_pending), or
 * KAPI_TEST_ERROR (NULL argument, a plugin that is not a KAPI_MODULE_PLUGIN
 * or a function that is not a KAPI_MODULE_FUNCTION, R already run or
 * paused, out of memory; a log line says which). */
kapi_test_state kapi_test_run(kapi_test_req *r, const kapi_module *const *plugins,
                              void *const *instances, size_t n, const kapi_module *function,
                              void *fn_instance);

/* Returns: where R stands (KAPI_TEST_ERROR for NULL). */
kapi_test_state kapi_test_req_state(const kapi_test_req *r);

/* Processes, on the calling thread and in arrival order, every resume()
 * queued so far (including those queued meanwhile): a paused chain runs on
 * (calling the paused hook again) and may finish or pause again; a request
 * paused by a single kapi_test_call_* becomes READY again (call the hook
 * again yourself). A resume for a request that timed out or was freed is
 * dropped and its token freed. Returns: how many resumes reached a paused
 * request (dropped ones are counted by kapi_test_resumes_dropped). */
size_t kapi_test_resume_pending(kapi_test_host *h);

/* Blocks until at least one resume() is queued and not yet processed, or
 * TIMEOUT_MS milliseconds pass. Returns: KAPI_OK or KAPI_ETIMEDOUT. */
kapi_status kapi_test_wait_resume(kapi_test_host *h, unsigned timeout_ms);

/* Simulates R's pause deadline passing: the token is abandoned (a later
 * resume() is dropped safely), the response becomes 504 problem+json, and a
 * chain runs its response and log phases (R becomes KAPI_TEST_DONE; after a
 * single hook R becomes KAPI_TEST_READY). Returns: KAPI_OK, or KAPI_ESTATE
 * when R is not paused. */
kapi_status kapi_test_fire_timeout(kapi_test_req *r);

/* Returns: the TIMEOUT_MS of R's last pause() (30000, the gateway's default,
 * when the module passed 0); 0 when R never paused. */
uint32_t kapi_test_req_pause_timeout(const kapi_test_req *r);

/* Returns: how many resumes kapi_test_resume_pending dropped because their
 * request had timed out, had been freed, or had not returned KAPI_PAUSE. */
size_t kapi_test_resumes_dropped(kapi_test_host *h);

/* ---- subrequests (kapi_host.fetch, ABI 1.1) ----
 *
 * A module's fetch() reaches no network here. It checks its arguments as
 * the gateway does, then copies the subrequest into H's queue and returns
 * KAPI_OK; DONE never runs inside fetch(). The test looks at what was asked
 * with kapi_test_fetch_get and answers with kapi_test_fetch_reply or
 * kapi_test_fetch_fail, in any order; that call runs DONE on the test's
 * thread, as the gateway runs it on the request's loop thread: between
 * hooks, with the response copied into the request (request-scoped views).
 * DONE's resume() is queued like any other: kapi_test_resume_pending then
 * runs the paused hook again.
 *
 * fetch() returns, in the gateway's order: KAPI_EINVAL for a NULL request,
 * F or DONE; KAPI_EPHASE outside access and handle (so also inside DONE);
 * KAPI_EINVAL for a NULL view with a length, a method that is not a token,
 * or a header whose name is not a token or whose value holds CR, LF or NUL;
 * with F->upstream: KAPI_ENOTFOUND unless kapi_test_upstream declared that
 * name, KAPI_EINVAL for a path that does not start with '/' (empty means
 * "/") or holds a space, a control byte or '#'; without: KAPI_EINVAL unless
 * F->url is "http://" or "https://", a host that is "localhost" or numeric
 * (IPv4, or IPv6 in brackets; never looked up), an optional port 1..65535,
 * then nothing or a path as above; KAPI_ENOMEM. Every fetch that returned
 * KAPI_OK is queued, numbered from 0 in start order for the life of H. */

/* Declares an upstream NAME, as a gateway config's "upstreams" would, so a
 * fetch naming it is accepted. No target or option of it is modelled: the
 * test answers for it. Declaring a name twice is harmless.
 * Returns: KAPI_OK, KAPI_EINVAL (NULL or empty NAME) or KAPI_ENOMEM. */
kapi_status kapi_test_upstream(kapi_test_host *h, const char *name);

/* A queued subrequest as the module asked for it. Every view is borrowed
 * until kapi_test_host_free(H), also after the fetch was answered; ptr[len]
 * is NUL. It records only what the module passed: the gateway also drops
 * Host, Content-Length, Transfer-Encoding and hop-by-hop headers and replaces
 * X-Request-Id and traceparent with its own (the request's id, a new span
 * of its trace), none of which shows here. */
typedef struct kapi_test_fetch {
    kapi_test_req *req;         /* the request that fetched; NULL once freed */
    kapi_str method;            /* "GET" when the module passed none */
    kapi_str upstream;          /* empty for a URL fetch */
    kapi_str url;               /* the whole URL, or with UPSTREAM the path ("/" when empty) */
    const kapi_header *headers; /* in the module's order, unfiltered */
    size_t nheaders;
    kapi_str body;
    uint32_t timeout_ms; /* as passed: 0 means the upstream's, or 10000 for a URL */
    int pending;         /* 1 while an answer would run DONE: not answered, request not freed */
} kapi_test_fetch;

/* Returns: how many fetches modules started on H so far, answered or not
 * (0 for NULL). */
size_t kapi_test_fetch_count(kapi_test_host *h);

/* The INDEX-th fetch started on H (0-based, in start order) into *OUT.
 * Returns: KAPI_OK; KAPI_ENOTFOUND past the last; KAPI_EINVAL for NULL. */
kapi_status kapi_test_fetch_get(kapi_test_host *h, size_t index, kapi_test_fetch *out);

/* Answers fetch INDEX as its upstream would have: DONE runs now with STATUS
 * (200..599), the N HEADERS and LEN bytes of BODY, copied into the request
 * first (when the request's arena is exhausted DONE gets what the gateway
 * sends then: status 0, error_status 502, "the gateway is out of memory").
 * Returns: KAPI_OK once DONE has returned; KAPI_ENOTFOUND past the last
 * fetch; KAPI_EINVAL for a bad status, header (as for fetch) or a NULL BODY
 * with a length; KAPI_ESTATE, without running DONE and with a complaint in
 * the log, when the fetch was answered already, when its request was freed
 * (the gateway keeps a request alive until DONE has run; here the test
 * ended it, so answer every fetch before kapi_test_req_free: what the
 * module frees in DONE would leak), or when called from inside a hook. */
kapi_status kapi_test_fetch_reply(kapi_test_host *h, size_t index, int status,
                                  const kapi_header *headers, size_t n, const void *body,
                                  size_t len);

/* Fails fetch INDEX as the gateway's upstream client would: DONE runs now
 * with status 0, ERROR_STATUS (502, 503 or 504: the answer a proxy would
 * give) and ERROR (copied; e.g. "the upstream did not answer in time"),
 * headers NULL and body {NULL, 0}, exactly as the gateway passes a failure.
 * Returns: as kapi_test_fetch_reply; KAPI_EINVAL for another ERROR_STATUS
 * or a NULL ERROR. */
kapi_status kapi_test_fetch_fail(kapi_test_host *h, size_t index, int error_status,
                                 const char *error);

/* ---- calling one hook ---- */

/* Calls M's on_access (on_response, handle, on_log) with INSTANCE on R in
 * the right phase and with M's private context (one zeroed req_ctx_size
 * block per module and request, kept across these calls), so one hook can
 * be tested alone. The response phase sees whatever response R has: set one
 * first with kapi_test_resp_set. If the hook pauses, R is KAPI_TEST_PAUSED
 * until its resume is processed. A missing hook gives KAPI_CONTINUE (handle:
 * KAPI_ERROR).
 * Returns: the hook's action; KAPI_ERROR without calling it for a NULL
 * argument or a paused R. */
kapi_action kapi_test_call_access(kapi_test_req *r, const kapi_module *m, void *instance);
kapi_action kapi_test_call_handle(kapi_test_req *r, const kapi_module *m, void *instance);
kapi_action kapi_test_call_response(kapi_test_req *r, const kapi_module *m, void *instance);
void kapi_test_call_log(kapi_test_req *r, const kapi_module *m, void *instance);

/* Replaces R's response with STATUS, N HEADERS and LEN bytes of BODY, as if
 * the target had answered (all copied). Returns: KAPI_OK, KAPI_EINVAL (bad
 * status or header), KAPI_ENOMEM, or KAPI_ESTATE while R is paused. */
kapi_status kapi_test_resp_set(kapi_test_req *r, int status, const kapi_header *headers, size_t n,
                               const void *body, size_t len);

/* ---- results: views are borrowed until R is freed; ptr[len] is NUL ---- */

/* Returns: the response status, 0 while there is no response. */
int kapi_test_resp_status(const kapi_test_req *r);
/* Returns: the INDEX-th value of response header NAME (case-insensitive);
 * {NULL, 0} when absent. */
kapi_str kapi_test_resp_header(const kapi_test_req *r, const char *name, size_t index);
/* The INDEX-th response header line in order into *OUT. Returns: KAPI_OK or
 * KAPI_ENOTFOUND past the last (KAPI_EINVAL for NULL). */
kapi_status kapi_test_resp_header_at(const kapi_test_req *r, size_t index, kapi_header *out);
/* Returns: the response body ({"", 0} when empty or no response). */
kapi_str kapi_test_resp_body(const kapi_test_req *r);
/* Returns: the INDEX-th value of request header NAME as the plugins left it;
 * {NULL, 0} when absent. */
kapi_str kapi_test_req_header_get(const kapi_test_req *r, const char *name, size_t index);
/* Returns: the shared per-request value KEY (kapi_host.shared_set); {NULL, 0}
 * when unset. */
kapi_str kapi_test_shared_get(const kapi_test_req *r, const char *key);

/* ---- captured log lines ---- */

/* Every log() call is stored in H instead of being written out: the
 * module's formatted message, its level, and which request and module it
 * came from. A log(NULL, ...) goes to the host whose create or entry is
 * running on the calling thread, else to the most recently created live
 * host. When the environment variable KAPI_TEST_LOG is non-empty, lines are
 * also written to stderr. The fake host logs its own complaints about a
 * module's misuse (tagged "kapi-test") at KAPI_LOG_ERROR. */

/* Returns: how many lines H captured so far. */
size_t kapi_test_log_count(kapi_test_host *h);
/* The INDEX-th captured message (0-based, in order); *LEVEL (if LEVEL is not
 * NULL) gets its level. Returns: the message text without tag or newline,
 * borrowed until kapi_test_host_free(H); NULL past the last line. */
const char *kapi_test_log_line(kapi_test_host *h, size_t index, kapi_log_level *level);

/* ---- store ---- */

/* Opens the process-wide store (the gateway's own LMDB code, 64 MiB map,
 * periodic-sync mode) in directory DIR, created if missing; the caller
 * usually passes a fresh mkdtemp() directory. Until it is opened, every
 * kapi_store_* call of a module returns KAPI_ESTATE, as in a gateway
 * without a store. Returns: KAPI_OK; KAPI_ESTATE when already open;
 * otherwise an error with a message in ERR (ERRLEN bytes; ERR may be NULL).
 * Not tied to a host: close it with kapi_test_store_close. */
kapi_status kapi_test_store_open(const char *dir, char *err, size_t errlen);

/* Closes the store opened by kapi_test_store_open (flushing it); values
 * stay in DIR for a later open. A no-op when not open. */
void kapi_test_store_close(void);

#ifdef __cplusplus
}
#endif
#endif /* KAPI_TEST_H */
