/* kapi/types.h -- the small value types every other SDK header uses:
 * byte views, header pairs, opaque handles, hook results, log levels and
 * the error a module reports from create().
 *
 * It declares no function and exposes no struct of the core: kapi_req and
 * kapi_token are opaque, only the host knows their layout. */
#ifndef KAPI_TYPES_H
#define KAPI_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A view of bytes: PTR is not owned by the holder of the view. Every view the
 * host hands out is request-scoped (valid until the request's on_log hooks
 * have returned) unless its function says otherwise, and ptr[len] is a NUL
 * byte so the view can be used as a C string when it holds no NUL itself. */
typedef struct kapi_str {
    const char *ptr;
    size_t len;
} kapi_str;

/* A view of a string literal, e.g. KAPI_STR("content-type"). */
#define KAPI_STR(lit) ((kapi_str){ "" lit, sizeof(lit) - 1 })

/* One header line: both views borrowed by the callee for the call's duration. */
typedef struct kapi_header {
    kapi_str name;
    kapi_str value;
} kapi_header;

/* A request in flight, with its response. Opaque: use the host functions. */
typedef struct kapi_req kapi_req;

/* A pause token (see kapi_host.pause). Opaque; resumed exactly once. */
typedef struct kapi_token kapi_token;

/* What a hook tells the host to do next (nginx-style return codes). */
typedef enum kapi_action {
    KAPI_CONTINUE = 0, /* go on with the next plugin / phase */
    KAPI_DONE = 1,     /* a response was produced with respond(): stop the access phase */
    KAPI_PAUSE = 2,    /* async work started with pause(): call this hook again after resume */
    KAPI_ERROR = 3,    /* the hook failed: the host answers 500 problem+json */
} kapi_action;

typedef enum kapi_log_level {
    KAPI_LOG_DEBUG = 0,
    KAPI_LOG_INFO = 1,
    KAPI_LOG_WARN = 2,
    KAPI_LOG_ERROR = 3,
} kapi_log_level;

/* What a module's create() fills in when it refuses its config. PATH is the
 * JSON path inside the module's own config object ("limit", "keys[1].alg"),
 * empty for the object as a whole; the host prefixes the path of the config
 * object in the file and prints "file: routes[0].plugins[1].config.limit:
 * expected integer". Both are NUL-terminated; truncation is harmless. */
typedef struct kapi_error {
    char path[128];
    char message[384];
} kapi_error;

#ifdef __cplusplus
}
#endif
#endif /* KAPI_TYPES_H */
