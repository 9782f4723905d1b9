/* t_baddesc.c -- one source, several broken descriptors: tests/modules
 * builds it once per variant, each selected by a compile definition:
 *   T_NEWER_MINOR  ABI 1.(host minor + 1): needs a newer kapi
 *   T_NO_NAME      no name
 *   T_BAD_KIND     a kind that is neither plugin nor function
 *   T_NO_HANDLE    a function without handle
 * The loader must refuse each with its own message. No hook ever runs. */
#include <kapi/kapi.h>

#if defined(T_NEWER_MINOR)
#define T_MINOR (KAPI_ABI_MINOR + 1)
#else
#define T_MINOR KAPI_ABI_MINOR
#endif

#if defined(T_NO_NAME)
#define T_NAME NULL
#else
#define T_NAME "t_baddesc"
#endif

#if defined(T_BAD_KIND)
#define T_KIND ((kapi_module_kind)7)
#elif defined(T_NO_HANDLE)
#define T_KIND KAPI_MODULE_FUNCTION
#else
#define T_KIND KAPI_MODULE_PLUGIN
#endif

static const kapi_module t_baddesc_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = T_MINOR,
    .name = T_NAME,
    .version = "1.0.0",
    .kind = T_KIND,
};

KAPI_MODULE(t_baddesc_module)
