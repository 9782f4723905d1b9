/* kapi/module.h -- what a module .so exports: one entry function returning a
 * const descriptor with the ABI version, the module's kind and its hooks.
 *
 * The host loads a module with dlopen(RTLD_NOW | RTLD_LOCAL), calls the entry
 * symbol KAPI_ENTRY_SYMBOL once per load with its host table, refuses a
 * descriptor whose abi_major differs from the host's, and reads only the
 * members that exist in the descriptor's abi_minor. Build modules with
 * -fvisibility=hidden: KAPI_MODULE() exports the entry symbol alone.
 * Hooks are called on the request's loop thread; instance data shared by
 * several loop threads must be read-only or synchronized by the module. */
#ifndef KAPI_MODULE_H
#define KAPI_MODULE_H

#include "host.h"
#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kapi_module_kind {
    KAPI_MODULE_PLUGIN = 1,   /* runs in a route's chain: on_access, on_response, on_log */
    KAPI_MODULE_FUNCTION = 2, /* is a route's target: handle */
} kapi_module_kind;

typedef struct kapi_module {
    uint16_t abi_major; /* KAPI_ABI_MAJOR the module was built with */
    uint16_t abi_minor; /* KAPI_ABI_MINOR the module was built with */
    const char *name;    /* static string, e.g. "jwt-auth" */
    const char *version; /* static string, e.g. "1.2.0" */
    kapi_module_kind kind;
    /* Bytes of zeroed private context the host allocates per request for
     * each instance in a chain (see kapi_host.ctx); 0 for none. */
    size_t req_ctx_size;

    /* Called once per instance while a generation is built, before traffic.
     * CONFIG is the instance's JSON config object as text (borrowed until
     * create returns; "{}" when the route gives none). On success set
     * *INSTANCE (may stay NULL) and return KAPI_OK; on refusal fill ERR and
     * return KAPI_ECONFIG (or another code): the whole generation is refused.
     * May be NULL. */
    kapi_status (*create)(kapi_str config, void **instance, kapi_error *err);
    /* Called once per created instance when its generation's last request
     * has ended. May be NULL. */
    void (*destroy)(void *instance);

    /* Plugins. Each may be NULL. on_response runs in reverse chain order for
     * every plugin whose on_access ran (also after an early response);
     * on_log runs for every plugin of the chain, always, even after an
     * error, a timeout or a client that went away. */
    kapi_action (*on_access)(void *instance, kapi_req *r);
    kapi_action (*on_response)(void *instance, kapi_req *r);
    void (*on_log)(void *instance, kapi_req *r);

    /* Functions: produce the response (respond(), or resp_set_* calls) and
     * return KAPI_DONE, or KAPI_PAUSE after pause(). */
    kapi_action (*handle)(void *instance, kapi_req *r);
} kapi_module;

/* The one exported symbol of a module, and its type. */
#define KAPI_ENTRY_SYMBOL "kapi_module_entry"
typedef const kapi_module *(*kapi_module_entry_fn)(const kapi_host *host);

#if defined(__GNUC__)
#define KAPI_EXPORT __attribute__((visibility("default")))
#define KAPI_HIDDEN __attribute__((visibility("hidden")))
#else
#define KAPI_EXPORT
#define KAPI_HIDDEN
#endif

/* The host table the module was loaded with; set by KAPI_MODULE's entry and
 * used by the kapi_* wrappers in kapi.h. Defined once per module by
 * KAPI_MODULE(). */
extern KAPI_HIDDEN const kapi_host *kapi_host_api;

/* Defines the entry symbol returning DESCRIPTOR (a kapi_module object) and
 * the module's kapi_host_api. Use exactly once per module, at file scope. */
#define KAPI_MODULE(descriptor)                                                  \
    KAPI_HIDDEN const kapi_host *kapi_host_api;                                  \
    KAPI_EXPORT const kapi_module *kapi_module_entry(const kapi_host *host);     \
    KAPI_EXPORT const kapi_module *kapi_module_entry(const kapi_host *host)      \
    {                                                                            \
        kapi_host_api = host;                                                    \
        return &(descriptor);                                                    \
    }

#ifdef __cplusplus
}
#endif
#endif /* KAPI_MODULE_H */
