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
#include <stdio.h>

#include <jansson.h>
#include <kapi/kapi.h>

/* Sets ERR's path and message; returns KAPI_ECONFIG for create() to return. */
static inline kapi_status
t_config_fail(kapi_error *err, const char *path, const char *message)
{
    snprintf(err->path, sizeof(err->path), "%s", path);
    snprintf(err->message, sizeof(err->message), "%s", message);
    return KAPI_ECONFIG;
}

/* Parses CONFIG, which must be a JSON object. Caller frees with json_decref. */
static inline json_t *
t_config_parse(kapi_str config, kapi_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(config.ptr, config.len, 0, &jerr);
    if (!root) {
        t_config_fail(err, "", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        t_config_fail(err, "", "expected object");
        return NULL;
    }
    return root;
}

/* *OUT is the string KEY of ROOT, borrowed from ROOT, or DEF when absent. */
static inline kapi_status
t_config_string(json_t *root, const char *key, const char *def, const char **out, kapi_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        *out = def;
        return KAPI_OK;
    }
    if (!json_is_string(v))
        return t_config_fail(err, key, "expected string");
    *out = json_string_value(v);
    return KAPI_OK;
}

/* *OUT is the integer KEY of ROOT within [MIN, MAX], or DEF when absent. */
static inline kapi_status
t_config_int(json_t *root, const char *key, long long def, long long min, long long max,
             long long *out, kapi_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        *out = def;
        return KAPI_OK;
    }
    if (!json_is_integer(v))
        return t_config_fail(err, key, "expected integer");
    long long n = json_integer_value(v);
    if (n < min || n > max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "expected an integer from %lld to %lld", min, max);
        return t_config_fail(err, key, msg);
    }
    *out = n;
    return KAPI_OK;
}

/* *OUT is the boolean KEY of ROOT, or DEF when absent. */
static inline kapi_status
t_config_bool(json_t *root, const char *key, bool def, bool *out, kapi_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        *out = def;
        return KAPI_OK;
    }
    if (!json_is_boolean(v))
        return t_config_fail(err, key, "expected boolean");
    *out = json_is_true(v);
    return KAPI_OK;
}

#endif /* T_CONFIG_H */
