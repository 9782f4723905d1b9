/* testhost_badmod.c -- modules the fake host must refuse to load, for
 * test_testhost.c: built as testhost_abi2.so (a descriptor from a future
 * ABI major), with TESTHOST_MINOR as testhost_minor.so (a newer minor than
 * the SDK's) and with TESTHOST_NO_ENTRY as testhost_noentry.so (a shared
 * object without the entry symbol). None is ever run. */
#include <kapi/kapi.h>

#ifdef TESTHOST_NO_ENTRY
KAPI_EXPORT int testhost_not_a_module;
int testhost_not_a_module = 1;
#else
static const kapi_module abi2 = {
#ifdef TESTHOST_MINOR
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR + 1,
#else
    .abi_major = KAPI_ABI_MAJOR + 1,
    .abi_minor = 0,
#endif
    .name = "abi2",
    .version = "0",
    .kind = KAPI_MODULE_PLUGIN,
};

KAPI_MODULE(abi2)
#endif
