/* request-headers.c -- the "request-headers" plugin: removes, then sets,
 * configured headers on the request (access phase, before the target sees
 * it) and on the response (response phase, before the client sees it).
 * Names and values are checked once, in create; hooks only copy them.
 * It does not template values nor add a header beside existing values
 * ("set" replaces every value of the name). */
#include <kapi/kapi.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ---- */

/* One side's edits. Views point into the instance's JSON document. */
typedef struct edits {
    kapi_header *set;
    size_t nset;
    kapi_str *remove;
    size_t nremove;
} edits;

typedef struct request_headers {
    json_t *doc; /* owns every string the edits point at; read-only */
    edits request, response;
} request_headers;

/* An RFC 9110 token, as the host requires of header names. */
static bool
valid_name(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (c == 0 || !strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

static bool
valid_value(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return false;
    return true;
}

/* Reads {"set": {name: value}, "remove": [name]} at SIDE into E. */
static kapi_status
parse_edits(json_t *obj, const char *side, edits *e, kapi_error *err)
{
    char path[128];
    const char *key;
    json_t *v;
    if (!json_is_object(obj))
        return kapi_error_set(err, side, "expected an object");
    json_object_foreach(obj, key, v)
    {
        snprintf(path, sizeof(path), "%s.%s", side, key);
        if (strcmp(key, "set") == 0) {
            const char *name;
            json_t *value;
            if (!json_is_object(v))
                return kapi_error_set(err, path, "expected an object of header names to values");
            if (!(e->set = calloc(json_object_size(v) + 1, sizeof(*e->set))))
                return KAPI_ENOMEM;
            json_object_foreach(v, name, value)
            {
                snprintf(path, sizeof(path), "%s.set.%s", side, name);
                if (!valid_name(name, strlen(name)))
                    return kapi_error_set(err, path, "invalid header name");
                if (!json_is_string(value) ||
                    !valid_value(json_string_value(value), json_string_length(value)))
                    return kapi_error_set(err, path, "expected a string without CR, LF or NUL");
                e->set[e->nset++] = (kapi_header){
                    kapi_str_c(name),
                    {json_string_value(value), json_string_length(value)},
                };
            }
        } else if (strcmp(key, "remove") == 0) {
            if (!json_is_array(v))
                return kapi_error_set(err, path, "expected an array of header names");
            if (!(e->remove = calloc(json_array_size(v) + 1, sizeof(*e->remove))))
                return KAPI_ENOMEM;
            for (size_t i = 0; i < json_array_size(v); i++) {
                json_t *name = json_array_get(v, i);
                snprintf(path, sizeof(path), "%s.remove[%zu]", side, i);
                if (!json_is_string(name) ||
                    !valid_name(json_string_value(name), json_string_length(name)))
                    return kapi_error_set(err, path, "expected a header name");
                e->remove[e->nremove++] =
                    (kapi_str){json_string_value(name), json_string_length(name)};
            }
        } else {
            return kapi_error_set(err, path, "unknown key (known: set, remove)");
        }
    }
    return KAPI_OK;
}

static kapi_status
parse_config(request_headers *rh, kapi_error *err)
{
    const char *key;
    json_t *v;
    if (!json_is_object(rh->doc))
        return kapi_error_set(err, "", "expected an object");
    json_object_foreach(rh->doc, key, v)
    {
        kapi_status st;
        if (strcmp(key, "request") == 0)
            st = parse_edits(v, key, &rh->request, err);
        else if (strcmp(key, "response") == 0)
            st = parse_edits(v, key, &rh->response, err);
        else
            st = kapi_error_set(err, key, "unknown key (known: request, response)");
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

/* ---- instance ---- */

static void
request_headers_destroy(void *instance)
{
    request_headers *rh = instance;
    if (!rh)
        return;
    free(rh->request.set);
    free(rh->request.remove);
    free(rh->response.set);
    free(rh->response.remove);
    json_decref(rh->doc);
    free(rh);
}

static kapi_status
request_headers_create(kapi_str config, void **instance, kapi_error *err)
{
    request_headers *rh = calloc(1, sizeof(*rh));
    if (!rh)
        return KAPI_ENOMEM;
    json_error_t jerr;
    kapi_status st = KAPI_OK;
    if (!(rh->doc = json_loadb(config.ptr, config.len, 0, &jerr))) {
        kapi_error_set(err, "", "invalid JSON: %s", jerr.text);
        st = KAPI_ECONFIG;
    } else {
        st = parse_config(rh, err);
    }
    if (st == KAPI_OK) {
        *instance = rh;
        rh = NULL;
    }
    request_headers_destroy(rh);
    return st;
}

/* ---- hooks ---- */

/* Applies E through the side's remove and set calls; false on failure. */
static bool
apply(kapi_req *r, const edits *e, kapi_status (*remove)(kapi_req *, kapi_str),
      kapi_status (*set)(kapi_req *, kapi_str, kapi_str))
{
    kapi_status st = KAPI_OK;
    for (size_t i = 0; st == KAPI_OK && i < e->nremove; i++)
        st = remove(r, e->remove[i]);
    for (size_t i = 0; st == KAPI_OK && i < e->nset; i++)
        st = set(r, e->set[i].name, e->set[i].value);
    if (st != KAPI_OK)
        kapi_log(r, KAPI_LOG_ERROR, "editing headers failed: %s", kapi_strerror(st));
    return st == KAPI_OK;
}

static kapi_action
request_headers_access(void *instance, kapi_req *r)
{
    const request_headers *rh = instance;
    return apply(r, &rh->request, kapi_req_header_remove, kapi_req_header_set) ? KAPI_CONTINUE
                                                                               : KAPI_ERROR;
}

static kapi_action
request_headers_response(void *instance, kapi_req *r)
{
    const request_headers *rh = instance;
    return apply(r, &rh->response, kapi_resp_header_remove, kapi_resp_header_set) ? KAPI_CONTINUE
                                                                                  : KAPI_ERROR;
}

/* ---- descriptor ---- */

static const kapi_module request_headers_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "request-headers",
    .version = "1.0.0",
    .kind = KAPI_MODULE_PLUGIN,
    .create = request_headers_create,
    .destroy = request_headers_destroy,
    .on_access = request_headers_access,
    .on_response = request_headers_response,
};

KAPI_MODULE(request_headers_module)
