/* t_config.h -- config parsing shared by the test modules (tests/modules):
 * parse the config text with jansson and read optional typed keys, filling
 * the module's kapi_error on a wrong type. Header-only (static functions) so
 * each test .so stays one translation unit with one exported symbol.
 *
 * It is test scaffolding, not SDK: real plugins parse their config however
 * they like. No jansson object leaves the module (DESIGN.md §3 rule 3). */
#ifndef T_CONFIG_H
#define T_CONFIG_H

#include <stdbool.h>

#include <jansson.h>
#include <kapi/kapi.h>

/* Parses CONFIG, which must be a JSON object. Caller frees with json_decref. */
static inline json_t *
t_config_parse(kapi_str config, kapi_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(config.ptr, config.len, 0, &jerr);
    if (!root) {
        kapi_error_set(err, "", "%s", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        kapi_error_set(err, "", "expected object");
        return NULL;
    }
    return root;
}

/* *OUT is the string KEY of ROOT, borrowed from ROOT, or DEF when absent. */
static inline kapi_status
t_config_string(json_t *root, const char *key, const char *def, const char **out, kapi_error *err)
{
    json_t *v = json_object_get(root, key);
    *out = def; /* set on every path, also when refusing */
    if (!v)
        return KAPI_OK;
    if (!json_is_string(v))
        return kapi_error_set(err, key, "expected string");
    *out = json_string_value(v);
    return KAPI_OK;
}

/* *OUT is the integer KEY of ROOT within [MIN, MAX], or DEF when absent. */
static inline kapi_status
t_config_int(json_t *root, const char *key, long long def, long long min, long long max,
             long long *out, kapi_error *err)
{
    json_t *v = json_object_get(root, key);
    *out = def; /* set on every path, also when refusing */
    if (!v)
        return KAPI_OK;
    if (!json_is_integer(v))
        return kapi_error_set(err, key, "expected integer");
    long long n = json_integer_value(v);
    if (n < min || n > max)
        return kapi_error_set(err, key, "expected an integer from %lld to %lld", min, max);
    *out = n;
    return KAPI_OK;
}

/* *OUT is the boolean KEY of ROOT, or DEF when absent. */
static inline kapi_status
t_config_bool(json_t *root, const char *key, bool def, bool *out, kapi_error *err)
{
    json_t *v = json_object_get(root, key);
    *out = def; /* set on every path, also when refusing */
    if (!v)
        return KAPI_OK;
    if (!json_is_boolean(v))
        return kapi_error_set(err, key, "expected boolean");
    *out = json_is_true(v);
    return KAPI_OK;
}

#endif /* T_CONFIG_H */
