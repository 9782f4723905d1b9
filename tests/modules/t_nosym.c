/* t_nosym.c -- a shared object that is not a kapi module: it exports an
 * ordinary function and no kapi_module_entry, so the loader must refuse it
 * ("no entry symbol"). */
#include <kapi/kapi.h>

KAPI_EXPORT int t_nosym_answer(void);

KAPI_EXPORT int
t_nosym_answer(void)
{
    return 42;
}
