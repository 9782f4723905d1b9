/* request.h -- the core's view of a request in flight and its response:
 * fields the server fills from HTTP, header lists, per-request state of the
 * chain, and the SDK accessors behind the kapi_host table.
 *
 * request.c is compiled into both the gateway and the SDK's fake host
 * (libkapi_test), so plugins see the same behaviour in unit tests as in
 * production. It does not speak HTTP (server.c), run plugins (chain.c) nor
 * pause requests (the embedding supplies pause/resume/log). */
#ifndef KAPI_REQUEST_H
#define KAPI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <kapi/host.h>

#include "arena.h"

#define REQ_MAX_PARAMS 16

typedef enum req_phase {
    REQ_PHASE_NONE = 0, /* the host itself is working on the request */
    REQ_PHASE_ACCESS,
    REQ_PHASE_HANDLE,
    REQ_PHASE_RESPONSE,
    REQ_PHASE_LOG,
} req_phase;

typedef struct header_list {
    kapi_header *v;
    size_t n, cap;
} header_list;

struct kapi_req {
    arena arena;
    struct req_owned *owned; /* malloc'd buffers freed by req_release (req_adopt) */
    req_phase phase;

    kapi_str method, path, query, host, client_addr, id, body;
    header_list headers;
    size_t nparams;
    kapi_str param_names[REQ_MAX_PARAMS];
    kapi_str param_values[REQ_MAX_PARAMS]; /* decoded */

    int status;     /* 0 until a response exists */
    bool responded; /* respond() was called */
    header_list resp_headers;
    kapi_str resp_body;

    header_list shared;

    /* Chain state (chain.c). */
    void **ctxs;       /* one private context per chain slot */
    void *current_ctx; /* the running hook's context */
    const char *current_module;
    size_t pos;        /* chain slot being run */
    size_t access_ran; /* plugins whose on_access completed */
    int stage;         /* chain.c's stage */

    /* What the proxy target did, for the access log (0/NULL: no upstream). */
    const char *upstream_url; /* the last target tried; lives as long as R's generation */
    int upstream_status;      /* its status, 0 when every try failed */
    unsigned upstream_tries;
    unsigned upstream_ms; /* from the first try to the answer */

    /* The embedding's (server.c, testhost). */
    void *owner;
    kapi_token *token; /* set by pause(), cleared when resumed or abandoned */
};

/* Prepares R (all fields zero) with an arena on BUF of LEN bytes. */
void req_init(kapi_req *r, void *buf, size_t len);
/* Frees what R allocated beyond its initial buffer; R must be re-initialized
 * with req_init before reuse. */
void req_release(kapi_req *r);

/* Hands BUF (malloc'd, LEN bytes plus room for one more) to R: R writes a
 * NUL at BUF[LEN] and frees BUF in req_release, so a large body (a proxied
 * response, a subrequest's answer) becomes a request-scoped view without
 * being copied into the arena. On KAPI_ENOMEM BUF is freed. BUF may be
 * NULL when LEN is 0. */
kapi_status req_adopt(kapi_req *r, char *buf, size_t len, kapi_str *out);

/* Copies LEN bytes of S into R's arena as a NUL-terminated view. On out of
 * memory returns KAPI_ENOMEM and leaves *OUT empty. */
kapi_status req_strdup(kapi_req *r, const char *s, size_t len, kapi_str *out);

/* Header-list helpers shared by the server (raw headers in) and the SDK. */
kapi_status req_headers_add(kapi_req *r, header_list *l, kapi_str name, kapi_str value);
kapi_status req_headers_get(const header_list *l, kapi_str name, size_t index, kapi_str *out);
void req_headers_remove(header_list *l, kapi_str name);

/* An RFC 9110 token (a method or a header name): non-empty, tchars only. */
bool req_valid_token(kapi_str s);
/* A header value: no CR, LF or NUL, and no NULL pointer with a length. */
bool req_valid_value(kapi_str s);

/* Case-insensitive equality of two views. */
bool req_str_ieq(kapi_str a, kapi_str b);

/* Sets the response (status, headers, body) regardless of phase: the host's
 * own answers (404, 413, problem+json…) go through here. Copies all. */
kapi_status req_set_response(kapi_req *r, int status, const kapi_header *headers, size_t n,
                             kapi_str body);

/* A subrequest's target after req_fetch_check. */
typedef struct req_fetch_target {
    kapi_str method; /* F's, "GET" when empty */
    kapi_str path;   /* origin-form path and query; "/" for an upstream fetch without one */
    bool tls;        /* URL fetches: https */
    char host[256];  /* URL fetches: host without brackets, NUL-terminated */
    uint16_t port;   /* URL fetches: explicit, or 80 / 443 */
} req_fetch_target;

/* Checks F as kapi_host.fetch documents, in this order: R, F and DONE not
 * NULL (KAPI_EINVAL); the phase (KAPI_EPHASE); views, the method (a token),
 * header names (tokens) and values (no CR, LF, NUL); then the path of an
 * upstream fetch or the URL ("http[s]://HOST[:PORT][/path?query]"), whose
 * path and query hold no space, control byte or '#' (KAPI_EINVAL). It does
 * not check that the upstream exists nor resolve HOST: the embedding does
 * (a gateway and the fake host differ there). OUT's views point into F. */
kapi_status req_fetch_check(const kapi_req *r, const kapi_fetch_request *f, kapi_fetch_done done,
                            req_fetch_target *out);

/* Fills every member of H that request.c implements (all but log, pause
 * and resume), plus size and ABI version. */
void req_fill_host(kapi_host *h);

#endif /* KAPI_REQUEST_H */
