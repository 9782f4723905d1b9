/* hello.c -- the "hello" function: answers GET (and HEAD) with 200
 * text/plain "hello, world\n", or the configured "message". It is the
 * gateway's fastest route and is benchmarked against nginx's `return 200`,
 * so handle() allocates nothing: the body is the instance's string and
 * respond() copies it into the request arena.
 * It does not read the request beyond its method. */
#include <kapi/kapi.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ---- */

typedef struct hello {
    kapi_str body; /* malloc'd, NUL-terminated */
} hello;

#define DEFAULT_MESSAGE "hello, world\n"

/* Reads {"message": string} into H. */
static kapi_status
parse_config(json_t *root, hello *h, kapi_error *err)
{
    const char *key;
    json_t *v;
    if (!json_is_object(root))
        return kapi_error_set(err, "", "expected an object");
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "message") != 0)
            return kapi_error_set(err, key, "unknown key (known: message)");
        if (!json_is_string(v))
            return kapi_error_set(err, key, "expected string");
        h->body.ptr = json_string_value(v);
        h->body.len = json_string_length(v);
    }
    return KAPI_OK;
}

/* ---- instance ---- */

static kapi_status
hello_create(kapi_str config, void **instance, kapi_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(config.ptr, config.len, 0, &jerr);
    if (!root) {
        kapi_error_set(err, "", "invalid JSON: %s", jerr.text);
        return KAPI_ECONFIG;
    }
    hello parsed = {KAPI_STR(DEFAULT_MESSAGE)};
    kapi_status st = parse_config(root, &parsed, err);
    hello *h = NULL;
    char *text = NULL;
    if (st == KAPI_OK && (!(h = malloc(sizeof(*h))) || !(text = malloc(parsed.body.len + 1))))
        st = KAPI_ENOMEM;
    if (st == KAPI_OK) {
        memcpy(text, parsed.body.ptr, parsed.body.len);
        text[parsed.body.len] = '\0';
        h->body = (kapi_str){text, parsed.body.len};
        *instance = h;
        h = NULL;
    }
    free(h);
    json_decref(root);
    return st;
}

static void
hello_destroy(void *instance)
{
    hello *h = instance;
    if (h)
        free((char *)h->body.ptr);
    free(h);
}

/* ---- handle ---- */

static const kapi_header ok_headers[] = {
    {KAPI_STR("Content-Type"), KAPI_STR("text/plain; charset=utf-8")},
};
static const kapi_header not_allowed_headers[] = {
    {KAPI_STR("Content-Type"), KAPI_STR("text/plain; charset=utf-8")},
    {KAPI_STR("Allow"), KAPI_STR("GET, HEAD")},
};

static kapi_action
hello_handle(void *instance, kapi_req *r)
{
    const hello *h = instance;
    kapi_str m;
    kapi_status st = kapi_req_method(r, &m);
    if (st != KAPI_OK)
        return KAPI_ERROR;
    if ((m.len == 3 && memcmp(m.ptr, "GET", 3) == 0) ||
        (m.len == 4 && memcmp(m.ptr, "HEAD", 4) == 0))
        st = kapi_respond(r, 200, ok_headers, 1, h->body);
    else
        st = kapi_respond(r, 405, not_allowed_headers, 2, KAPI_STR("method not allowed\n"));
    return st == KAPI_OK ? KAPI_DONE : KAPI_ERROR;
}

/* ---- descriptor ---- */

static const kapi_module hello_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "hello",
    .version = "1.0.0",
    .kind = KAPI_MODULE_FUNCTION,
    .create = hello_create,
    .destroy = hello_destroy,
    .handle = hello_handle,
};

KAPI_MODULE(hello_module)
