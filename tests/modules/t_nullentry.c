/* t_nullentry.c -- a test module whose entry, written by hand instead of
 * with KAPI_MODULE(), returns no descriptor; the loader must refuse it. */
#include <kapi/kapi.h>

KAPI_EXPORT const kapi_module *kapi_module_entry(const kapi_host *host);

KAPI_EXPORT const kapi_module *
kapi_module_entry(const kapi_host *host)
{
    (void)host;
    return NULL;
}
