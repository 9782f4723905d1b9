/* t_abi2.c -- a test module that claims kapi ABI 2.0, so the loader must
 * refuse it with an error naming both major versions. It has no hooks and
 * is never meant to run. */
#include <kapi/kapi.h>

static const kapi_module t_abi2_module = {
    .abi_major = 2, /* not KAPI_ABI_MAJOR: that is the point */
    .abi_minor = 0,
    .name = "t_abi2",
    .version = "1.0.0",
    .kind = KAPI_MODULE_PLUGIN,
};

KAPI_MODULE(t_abi2_module)
