/* t_fn.c -- a test function module: answers every request with a
 * configured status and body, optionally after sleeping, and says which
 * build it is in header x-fn-version (T_FN_VERSION, a compile definition;
 * tests/modules builds t_fn with "v1" and t_fn_v2 with "v2" so reload tests
 * can swap one file for the other and see the new code answer).
 *
 * Config (all optional):
 *   "body"     string, default "t_fn"
 *   "status"   integer 100..599, default 200
 *   "sleep_ms" integer >= 0, default 0: blocks the loop thread in handle
 *              (a slow request still running on old code during a reload)
 *
 * It is a test module: it does not read the request at all. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kapi/kapi.h>

#include "t_config.h"

#ifndef T_FN_VERSION
#define T_FN_VERSION "v1"
#endif

typedef struct t_fn {
    char *body;
    int status;
    uint32_t sleep_ms;
} t_fn;

static void
fn_destroy(void *instance)
{
    t_fn *f = instance;
    if (!f)
        return;
    free(f->body);
    free(f);
}

static kapi_status
fn_create(kapi_str config, void **instance, kapi_error *err)
{
    json_t *root = t_config_parse(config, err);
    if (!root)
        return KAPI_ECONFIG;
    const char *body;
    long long status, sleep_ms;
    kapi_status st;
    if ((st = t_config_string(root, "body", "t_fn", &body, err)) != KAPI_OK ||
        (st = t_config_int(root, "status", 200, 100, 599, &status, err)) != KAPI_OK ||
        (st = t_config_int(root, "sleep_ms", 0, 0, UINT32_MAX, &sleep_ms, err)) != KAPI_OK)
        goto out;
    t_fn *f = calloc(1, sizeof(*f));
    if (!f || !(f->body = strdup(body))) {
        fn_destroy(f);
        st = kapi_error_set(err, "", "out of memory");
        goto out;
    }
    f->status = (int)status;
    f->sleep_ms = (uint32_t)sleep_ms;
    *instance = f;
out:
    json_decref(root);
    return st;
}

static kapi_action
fn_handle(void *instance, kapi_req *r)
{
    t_fn *f = instance;
    if (f->sleep_ms) {
        struct timespec ts = {f->sleep_ms / 1000, (long)(f->sleep_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    kapi_header h[] = {
        {KAPI_STR("content-type"), KAPI_STR("text/plain")},
        {KAPI_STR("x-fn-version"), KAPI_STR(T_FN_VERSION)},
    };
    if (kapi_respond(r, f->status, h, 2, kapi_str_c(f->body)) != KAPI_OK)
        return KAPI_ERROR;
    return KAPI_DONE;
}

static const kapi_module t_fn_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "t_fn",
    .version = T_FN_VERSION,
    .kind = KAPI_MODULE_FUNCTION,
    .create = fn_create,
    .destroy = fn_destroy,
    .handle = fn_handle,
};

KAPI_MODULE(t_fn_module)
