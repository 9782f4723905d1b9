/* t_order.c -- a test plugin that records the order in which the chain runs
 * it, and can end or fail the access phase on demand.
 *
 * Config (all optional):
 *   "tag"      string, default "t": the mark this instance leaves
 *   "log_file" string: on_log appends the line "TAG\n" to this file
 *   "respond"  integer 100..599: on_access answers with this status and
 *              body "denied by TAG", and returns KAPI_DONE
 *   "fail"     boolean, default false: on_access returns KAPI_ERROR
 *
 * on_access appends TAG to request header x-order and on_response to
 * response header x-order-resp, comma-separated ("a,b,c" for plugins a, b,
 * c; "c,b,a" on the way back). The tag is appended before "respond" or
 * "fail" act, so a test sees that the plugin ran. It is a test module: it
 * keeps no state across requests and does nothing useful in production. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kapi/kapi.h>

#include "t_config.h"

typedef struct t_order {
    char *tag;
    char *log_file; /* NULL: no log line */
    int respond;    /* 0: do not respond */
    bool fail;
} t_order;

static void
order_destroy(void *instance)
{
    t_order *o = instance;
    if (!o)
        return;
    free(o->tag);
    free(o->log_file);
    free(o);
}

static kapi_status
order_create(kapi_str config, void **instance, kapi_error *err)
{
    json_t *root = t_config_parse(config, err);
    if (!root)
        return KAPI_ECONFIG;
    const char *tag, *log_file;
    long long respond;
    bool fail;
    kapi_status st;
    if ((st = t_config_string(root, "tag", "t", &tag, err)) != KAPI_OK ||
        (st = t_config_string(root, "log_file", NULL, &log_file, err)) != KAPI_OK ||
        (st = t_config_int(root, "respond", 0, 100, 599, &respond, err)) != KAPI_OK ||
        (st = t_config_bool(root, "fail", false, &fail, err)) != KAPI_OK)
        goto out;
    t_order *o = calloc(1, sizeof(*o));
    if (!o || !(o->tag = strdup(tag)) || (log_file && !(o->log_file = strdup(log_file)))) {
        order_destroy(o);
        st = kapi_error_set(err, "", "out of memory");
        goto out;
    }
    o->respond = (int)respond;
    o->fail = fail;
    *instance = o;
out:
    json_decref(root);
    return st;
}

/* OLD + "," + TAG (or TAG alone when OLD is empty), in the request arena. */
static kapi_status
append_tag(kapi_req *r, kapi_status found, kapi_str old, const char *tag, kapi_str *out)
{
    size_t tlen = strlen(tag);
    size_t len = (found == KAPI_OK && old.len) ? old.len + 1 + tlen : tlen;
    char *p = kapi_alloc(r, len + 1);
    if (!p)
        return KAPI_ENOMEM;
    if (len > tlen) {
        memcpy(p, old.ptr, old.len);
        p[old.len] = ',';
    }
    memcpy(p + len - tlen, tag, tlen);
    *out = (kapi_str){p, len};
    return KAPI_OK;
}

static kapi_action
order_access(void *instance, kapi_req *r)
{
    t_order *o = instance;
    kapi_str old = {"", 0}, val;
    kapi_status found = kapi_req_header(r, KAPI_STR("x-order"), 0, &old);
    if (append_tag(r, found, old, o->tag, &val) != KAPI_OK ||
        kapi_req_header_set(r, KAPI_STR("x-order"), val) != KAPI_OK)
        return KAPI_ERROR;
    if (o->fail)
        return KAPI_ERROR;
    if (o->respond) {
        size_t len = strlen("denied by ") + strlen(o->tag);
        char *body = kapi_alloc(r, len + 1);
        if (!body)
            return KAPI_ERROR;
        strcpy(body, "denied by ");
        strcat(body, o->tag);
        kapi_header ct = {KAPI_STR("content-type"), KAPI_STR("text/plain")};
        if (kapi_respond(r, o->respond, &ct, 1, (kapi_str){body, len}) != KAPI_OK)
            return KAPI_ERROR;
        return KAPI_DONE;
    }
    return KAPI_CONTINUE;
}

static kapi_action
order_response(void *instance, kapi_req *r)
{
    t_order *o = instance;
    kapi_str old = {"", 0}, val;
    kapi_status found = kapi_resp_header(r, KAPI_STR("x-order-resp"), 0, &old);
    if (append_tag(r, found, old, o->tag, &val) != KAPI_OK ||
        kapi_resp_header_set(r, KAPI_STR("x-order-resp"), val) != KAPI_OK)
        return KAPI_ERROR;
    return KAPI_CONTINUE;
}

/* One write() per line with O_APPEND, so concurrent requests do not mix
 * their lines. */
static void
order_log(void *instance, kapi_req *r)
{
    t_order *o = instance;
    if (!o->log_file)
        return;
    int fd = open(o->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        kapi_log(r, KAPI_LOG_ERROR, "t_order: cannot open %s: %s", o->log_file, strerror(errno));
        return;
    }
    size_t len = strlen(o->tag);
    char line[256];
    if (len + 2 > sizeof(line))
        len = sizeof(line) - 2;
    memcpy(line, o->tag, len);
    line[len] = '\n';
    if (write(fd, line, len + 1) < 0)
        kapi_log(r, KAPI_LOG_ERROR, "t_order: cannot write %s: %s", o->log_file, strerror(errno));
    close(fd);
}

static const kapi_module t_order_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "t_order",
    .version = "1.0.0",
    .kind = KAPI_MODULE_PLUGIN,
    .create = order_create,
    .destroy = order_destroy,
    .on_access = order_access,
    .on_response = order_response,
    .on_log = order_log,
};

KAPI_MODULE(t_order_module)
