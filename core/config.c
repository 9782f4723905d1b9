/* config.c -- reads kapi.json into a validated struct config.
 *
 * Jansson parses (and reports syntax errors with its own line:col); a walk
 * over a fixed schema then checks every key and type in document order,
 * substitutes ${NAME} from the environment in string values (module config
 * objects included, before they are serialized), resolves relative paths
 * against the file's directory and asks jsonpos.c where a bad value sits.
 * The first error wins and is printed as "FILE:LINE:COL: JSON.PATH: what".
 * It holds the walk itself (config_parse.h) and the root, listeners, log,
 * limits, store, plugins and routes; the "upstreams" section and the
 * upstream forms of a route's target are config_upstream.c's. It does not
 * load modules, check that directories exist nor build routes:
 * generation.c does that from the struct. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config_parse.h"

#define CONFIG_MAX_BYTES ((size_t)16 << 20)

/* ---- messages and paths ---------------------------------------------- */

kapi_status
cfgp_fail(struct cfgp *p, bool at_key, const char *fmt, ...)
{
    unsigned line, col;
    va_list ap;
    int n;

    if (p->errlen == 0)
        return KAPI_ECONFIG;
    jsonpos_find(&p->pos, p->text, p->len, p->path, at_key, &line, &col);
    n = snprintf(p->err, p->errlen, "%s:%u:%u: %s: ", p->file, line, col,
                 p->pathlen ? p->path : "(root)");
    if (n >= 0 && (size_t)n < p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* keys and values quoted from the file may hold "\n": keep one line */
    for (char *c = p->err; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    return KAPI_ECONFIG;
}

kapi_status
cfgp_nomem(struct cfgp *p)
{
    if (p->errlen)
        snprintf(p->err, p->errlen, "%s: out of memory", p->file);
    return KAPI_ENOMEM;
}

static void
path_append(struct cfgp *p, const char *a, const char *b)
{
    int n = snprintf(p->path + p->pathlen, sizeof p->path - p->pathlen, "%s%s", a, b);
    if (n < 0 || (size_t)n >= sizeof p->path - p->pathlen)
        p->pathlen = sizeof p->path - 1;
    else
        p->pathlen += (size_t)n;
}

size_t
cfgp_path_key(struct cfgp *p, const char *key)
{
    size_t old = p->pathlen;
    path_append(p, old ? "." : "", key);
    return old;
}

size_t
cfgp_path_index(struct cfgp *p, size_t i)
{
    size_t old = p->pathlen;
    char num[32];
    snprintf(num, sizeof num, "[%zu]", i);
    path_append(p, "", num);
    return old;
}

void
cfgp_path_pop(struct cfgp *p, size_t old)
{
    p->pathlen = old;
    p->path[old] = '\0';
}

kapi_status
cfgp_each(struct cfgp *p, json_t *array, cfgp_item_fn fn, void *ctx)
{
    kapi_status st;
    json_t *item;
    size_t i;

    json_array_foreach(array, i, item)
    {
        size_t old = cfgp_path_index(p, i);
        st = fn(p, item, i, ctx);
        cfgp_path_pop(p, old);
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

kapi_status
cfgp_each_member(struct cfgp *p, json_t *obj, cfgp_member_fn fn, void *ctx)
{
    kapi_status st;
    const char *key;
    json_t *value;

    json_object_foreach(obj, key, value)
    {
        size_t old = cfgp_path_key(p, key);
        st = fn(p, key, value, ctx);
        cfgp_path_pop(p, old);
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

void
cfgp_position(struct cfgp *p, unsigned *line, unsigned *col)
{
    jsonpos_find(&p->pos, p->text, p->len, p->path, false, line, col);
}

/* ---- small helpers ----------------------------------------------------- */

kapi_status
cfgp_alloc_array(struct cfgp *p, size_t n, size_t size, void **out)
{
    *out = NULL;
    if (n > 0 && (*out = calloc(n, size)) == NULL)
        return cfgp_nomem(p);
    return KAPI_OK;
}

static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[CFGP_NAME_MAX + 1];

    if (la > CFGP_NAME_MAX || lb > CFGP_NAME_MAX)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

void
cfgp_near_offer(struct cfgp_near *near, const char *cand)
{
    size_t d = edit_distance(near->key, cand), lk = strlen(near->key), lc = strlen(cand);
    size_t longer = lk > lc ? lk : lc, shorter = lk < lc ? lk : lc;
    bool prefix = shorter >= 3 && strncmp(near->key, cand, shorter) == 0;

    if ((d <= 2 || d * 3 <= longer || prefix) && d < near->dist) {
        near->best = cand;
        near->dist = d;
    }
}

const char *
cfgp_suggest(const char *key, const struct cfgp_field *fields, size_t n)
{
    struct cfgp_near near = {key, NULL, (size_t)-1};

    for (size_t i = 0; i < n; i++)
        cfgp_near_offer(&near, fields[i].key);
    return near.best;
}

/* ---- ${ENV} substitution ------------------------------------------------ */

struct buf {
    char *s;
    size_t len, cap;
};

static bool
buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *t;
        while (cap < b->len + n + 1)
            cap *= 2;
        if ((t = realloc(b->s, cap)) == NULL)
            return false;
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return true;
}

/* Writes S (N bytes) with ${NAME} replaced and $${ kept as ${ into *OUT,
 * which the caller frees. Errors point at the current path. */
static kapi_status
expand_env(struct cfgp *p, const char *s, size_t n, char **out)
{
    struct buf b = {0};
    kapi_status st = KAPI_OK;
    size_t i = 0;

    *out = NULL;
    if (!buf_add(&b, "", 0))
        return cfgp_nomem(p);
    while (i < n) {
        const char *dollar = memchr(s + i, '$', n - i), *value;
        size_t lit = dollar ? (size_t)(dollar - s) - i : n - i, name;
        bool ok = buf_add(&b, s + i, lit);
        i += lit;
        if (!ok) {
            st = cfgp_nomem(p);
            goto out;
        }
        if (i == n)
            break;
        if (n - i >= 3 && s[i + 1] == '$' && s[i + 2] == '{') { /* $${ -> ${ */
            ok = buf_add(&b, "${", 2);
            i += 3;
        } else if (n - i >= 2 && s[i + 1] == '{') {
            char var[256];
            for (name = 0; i + 2 + name < n && s[i + 2 + name] != '}'; name++)
                if (!(s[i + 2 + name] == '_' || cfgp_is_alpha(s[i + 2 + name]) ||
                      (name > 0 && cfgp_is_digit(s[i + 2 + name]))))
                    break;
            if (name == 0 || name >= sizeof var || i + 2 + name >= n || s[i + 2 + name] != '}') {
                st = cfgp_fail(p, false,
                               "malformed ${NAME} reference (NAME is [A-Za-z_][A-Za-z0-9_]*; "
                               "write $${ for a literal ${)");
                goto out;
            }
            memcpy(var, s + i + 2, name);
            var[name] = '\0';
            if ((value = getenv(var)) == NULL) {
                st = cfgp_fail(p, false, "environment variable %s is not set", var);
                goto out;
            }
            ok = buf_add(&b, value, strlen(value));
            i += name + 3;
        } else {
            ok = buf_add(&b, "$", 1);
            i++;
        }
        if (!ok) {
            st = cfgp_nomem(p);
            goto out;
        }
    }
out:
    if (st == KAPI_OK)
        *out = b.s;
    else
        free(b.s);
    return st;
}

static kapi_status expand_tree(struct cfgp *p, json_t *v);

static kapi_status
expand_item(struct cfgp *p, json_t *item, size_t index, void *ctx)
{
    (void)index;
    (void)ctx;
    return expand_tree(p, item);
}

static kapi_status
expand_member(struct cfgp *p, const char *key, json_t *value, void *ctx)
{
    (void)key;
    (void)ctx;
    return expand_tree(p, value);
}

/* Substitutes in every string value under V, in place (module configs). */
static kapi_status
expand_tree(struct cfgp *p, json_t *v)
{
    kapi_status st;
    char *s;

    if (json_is_object(v))
        return cfgp_each_member(p, v, expand_member, NULL);
    if (json_is_array(v))
        return cfgp_each(p, v, expand_item, NULL);
    if (!json_is_string(v) || !memchr(json_string_value(v), '$', json_string_length(v)))
        return KAPI_OK;
    if ((st = expand_env(p, json_string_value(v), json_string_length(v), &s)) != KAPI_OK)
        return st;
    if (json_string_set(v, s) != 0)
        st = cfgp_fail(p, false, "value is not valid UTF-8 after ${} substitution");
    free(s);
    return st;
}

/* ---- typed values ------------------------------------------------------- */

kapi_status
cfgp_get_string(struct cfgp *p, json_t *v, bool nonempty, char **out)
{
    kapi_status st;

    *out = NULL;
    if (!json_is_string(v))
        return cfgp_fail(p, false, nonempty ? "expected non-empty string" : "expected string");
    if ((st = expand_env(p, json_string_value(v), json_string_length(v), out)) != KAPI_OK)
        return st;
    if (nonempty && **out == '\0') {
        free(*out);
        *out = NULL;
        return cfgp_fail(p, false, "expected non-empty string");
    }
    return KAPI_OK;
}

kapi_status
cfgp_resolve(struct cfgp *p, const char *s, char **out)
{
    const char *base = p->cfg->base_dir;
    size_t n = strlen(base) + strlen(s) + 2;

    if (s[0] == '/')
        *out = strdup(s);
    else if ((*out = malloc(n)) != NULL)
        snprintf(*out, n, "%s%s%s", base, strcmp(base, "/") ? "/" : "", s);
    return *out ? KAPI_OK : cfgp_nomem(p);
}

kapi_status
cfgp_get_path(struct cfgp *p, json_t *v, char **out)
{
    char *s;
    kapi_status st;

    *out = NULL;
    if ((st = cfgp_get_string(p, v, true, &s)) != KAPI_OK)
        return st;
    st = cfgp_resolve(p, s, out);
    free(s);
    return st;
}

kapi_status
cfgp_get_enum(struct cfgp *p, json_t *v, const char *const *names, size_t n, size_t *index)
{
    char expected[256];
    size_t len = 0;
    kapi_status st;
    char *s;

    if ((st = cfgp_get_string(p, v, false, &s)) != KAPI_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *index = i;
            free(s);
            return KAPI_OK;
        }
    }
    free(s);
    expected[0] = '\0';
    for (size_t i = 0; i < n && len < sizeof expected; i++) {
        int k =
            snprintf(expected + len, sizeof expected - len, "%s\"%s\"", i ? ", " : "", names[i]);
        len += k > 0 ? (size_t)k : 0;
    }
    return cfgp_fail(p, false, "expected one of %s", expected);
}

kapi_status
cfgp_set_uint(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    char *at = (char *)dst + f->off;
    json_int_t n;

    if (!json_is_integer(v) || (n = json_integer_value(v)) < f->min || n > f->max)
        return cfgp_fail(p, false, "expected integer between %lld and %lld", f->min, f->max);
    if (f->size == sizeof(size_t))
        *(size_t *)(void *)at = (size_t)n;
    else
        *(unsigned *)(void *)at = (unsigned)n;
    return KAPI_OK;
}

kapi_status
cfgp_set_bool(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    if (!json_is_boolean(v))
        return cfgp_fail(p, false, "expected boolean");
    *(bool *)((char *)dst + f->off) = json_is_true(v);
    return KAPI_OK;
}

/* The object cfgp_walk_object walks: its fields and the struct they fill. */
struct field_walk {
    const struct cfgp_field *fields;
    size_t n;
    void *dst;
};

static kapi_status
walk_field(struct cfgp *p, const char *key, json_t *v, void *ctx)
{
    const struct field_walk *w = ctx;
    const char *near;

    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->fields[i].key, key) == 0)
            return w->fields[i].fn(p, v, w->dst, &w->fields[i]);
    near = cfgp_suggest(key, w->fields, w->n);
    return near ? cfgp_fail(p, true, "unknown key (did you mean \"%s\"?)", near)
                : cfgp_fail(p, true, "unknown key");
}

kapi_status
cfgp_walk_object(struct cfgp *p, json_t *obj, const struct cfgp_field *fields, size_t n, void *dst)
{
    struct field_walk w = {fields, n, dst};
    kapi_status st;

    if (!json_is_object(obj))
        return cfgp_fail(p, false, "expected object");
    if ((st = cfgp_each_member(p, obj, walk_field, &w)) != KAPI_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        if (fields[i].required && !json_object_get(obj, fields[i].key))
            return cfgp_fail(p, false, "missing required key \"%s\"", fields[i].key);
    return KAPI_OK;
}

kapi_status
cfgp_get_array(struct cfgp *p, json_t *v, bool nonempty, const char *what, size_t size,
               void **items, size_t *n)
{
    kapi_status st;

    if (!json_is_array(v) || (nonempty && json_array_size(v) == 0))
        return cfgp_fail(p, false, "expected %s", what);
    if ((st = cfgp_alloc_array(p, json_array_size(v), size, items)) == KAPI_OK)
        *n = json_array_size(v);
    return st;
}

/* ---- module references -------------------------------------------------- */

static bool
valid_module_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > CFGP_NAME_MAX || strstr(s, ".."))
        return false;
    for (; *s; s++)
        if (!(cfgp_is_alpha(*s) || cfgp_is_digit(*s) || *s == '_' || *s == '.' || *s == '-'))
            return false;
    return true;
}

static kapi_status
set_module_name(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_module_ref *ref = dst;
    kapi_status st;

    (void)f;
    if ((st = cfgp_get_string(p, v, false, &ref->module)) != KAPI_OK)
        return st;
    if (!valid_module_name(ref->module))
        return cfgp_fail(p, false,
                         "invalid module name \"%s\" (expected 1 to 64 of A-Z a-z 0-9 _ . - "
                         "and no \"..\")",
                         ref->module);
    return KAPI_OK;
}

static kapi_status
set_module_config(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_module_ref *ref = dst;
    kapi_status st;

    (void)f;
    if (!json_is_object(v))
        return cfgp_fail(p, false, "expected object");
    if ((st = expand_tree(p, v)) != KAPI_OK)
        return st;
    if ((ref->config_json = json_dumps(v, JSON_COMPACT)) == NULL)
        return cfgp_nomem(p);
    cfgp_position(p, &ref->line, &ref->col);
    return KAPI_OK;
}

static const struct cfgp_field plugin_fields[] = {
    {.key = "module", .fn = set_module_name, .required = true},
    {.key = "config", .fn = set_module_config},
};

/* Where REF sits: the current path and its value's position. */
static kapi_status
locate_ref(struct cfgp *p, config_module_ref *ref)
{
    if ((ref->json_path = strdup(p->path)) == NULL)
        return cfgp_nomem(p);
    cfgp_position(p, &ref->line, &ref->col);
    return KAPI_OK;
}

static kapi_status
default_ref_config(struct cfgp *p, config_module_ref *ref)
{
    if (!ref->config_json && (ref->config_json = strdup("{}")) == NULL)
        return cfgp_nomem(p);
    return KAPI_OK;
}

/* Element I of a "plugins" array, into REFS[I]. */
static kapi_status
parse_plugin(struct cfgp *p, json_t *v, size_t i, void *refs)
{
    config_module_ref *ref = (config_module_ref *)refs + i;
    kapi_status st;

    if ((st = locate_ref(p, ref)) != KAPI_OK ||
        (st = cfgp_walk_object(p, v, plugin_fields, CFGP_NELEMS(plugin_fields), ref)) != KAPI_OK)
        return st;
    return default_ref_config(p, ref);
}

static kapi_status
parse_plugins(struct cfgp *p, json_t *v, config_module_ref **refs, size_t *n)
{
    kapi_status st;

    if ((st = cfgp_get_array(p, v, false, "array", sizeof **refs, (void **)refs, n)) != KAPI_OK)
        return st;
    return cfgp_each(p, v, parse_plugin, *refs);
}

/* ---- a route's target ---------------------------------------------------- */

#define TARGET_FORMS "expected exactly one of \"function\", \"upstream\", \"url\""

/* The "target" object being walked: its route and the form it has taken. */
struct target_walk {
    config_route *r;
    const char *form; /* "function", "upstream" or "url" once one is seen */
};

/* A second form is an error at its key. */
static kapi_status
take_form(struct cfgp *p, struct target_walk *t, const char *form)
{
    if (t->form)
        return cfgp_fail(p, true, TARGET_FORMS);
    t->form = form;
    return KAPI_OK;
}

static kapi_status
set_target_function(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    struct target_walk *t = dst;
    kapi_status st;

    if ((st = take_form(p, t, f->key)) != KAPI_OK)
        return st;
    return set_module_name(p, v, &t->r->target, f);
}

static kapi_status
set_target_config(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    return set_module_config(p, v, &((struct target_walk *)dst)->r->target, f);
}

static kapi_status
set_target_upstream(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    struct target_walk *t = dst;
    kapi_status st;

    if ((st = take_form(p, t, f->key)) != KAPI_OK)
        return st;
    return config_upstream_set_ref(p, v, t->r);
}

static kapi_status
set_target_url(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    struct target_walk *t = dst;
    kapi_status st;

    if ((st = take_form(p, t, f->key)) != KAPI_OK)
        return st;
    return config_upstream_set_url(p, v, t->r);
}

static kapi_status
set_target_path(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return config_upstream_set_path(p, v, ((struct target_walk *)dst)->r);
}

static const struct cfgp_field target_fields[] = {
    {.key = "function", .fn = set_target_function}, {.key = "config", .fn = set_target_config},
    {.key = "upstream", .fn = set_target_upstream}, {.key = "url", .fn = set_target_url},
    {.key = "path", .fn = set_target_path},
};

/* KEY of the target object does not go with its form. */
static kapi_status
fail_misplaced(struct cfgp *p, const char *key, const char *goes_with)
{
    size_t old = cfgp_path_key(p, key);
    kapi_status st = cfgp_fail(p, true, "\"%s\" is allowed only with %s", key, goes_with);

    cfgp_path_pop(p, old);
    return st;
}

/* {"function": NAME, "config": {...}}, {"upstream": NAME, "path": TEMPLATE}
 * or {"url": URL, "path": TEMPLATE}. For the upstream forms target.module
 * and target.config_json stay NULL; json_path and the position are set for
 * all three. */
static kapi_status
set_route_target(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    struct target_walk t = {.r = dst};
    config_module_ref *ref = &t.r->target;
    kapi_status st;

    (void)f;
    if ((st = locate_ref(p, ref)) != KAPI_OK ||
        (st = cfgp_walk_object(p, v, target_fields, CFGP_NELEMS(target_fields), &t)) != KAPI_OK)
        return st;
    if (!t.form)
        return cfgp_fail(p, false, TARGET_FORMS);
    if (strcmp(t.form, "function") != 0)
        return json_object_get(v, "config") ? fail_misplaced(p, "config", "\"function\"") : KAPI_OK;
    if (json_object_get(v, "path"))
        return fail_misplaced(p, "path", "\"upstream\" or \"url\"");
    return default_ref_config(p, ref);
}

/* ---- routes ------------------------------------------------------------- */

static kapi_status
set_route_name(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return cfgp_get_string(p, v, true, &((config_route *)dst)->name);
}

/* Element I of "methods", upper-cased into METHODS[I]. */
static kapi_status
get_method(struct cfgp *p, json_t *v, size_t i, void *methods)
{
    char **m = (char **)methods + i;
    const char *c;
    kapi_status st;

    if ((st = cfgp_get_string(p, v, true, m)) != KAPI_OK)
        return st;
    for (c = *m; cfgp_is_tchar(*c); c++)
        ;
    if (*c)
        return cfgp_fail(p, false, "invalid method \"%s\" (expected a token such as \"GET\")", *m);
    for (char *u = *m; *u; u++)
        *u = cfgp_upper(*u);
    return KAPI_OK;
}

static kapi_status
set_route_methods(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_route *r = dst;
    kapi_status st;

    (void)f;
    st = cfgp_get_array(p, v, true, "non-empty array of method names", sizeof *r->methods,
                        (void **)&r->methods, &r->nmethods);
    return st != KAPI_OK ? st : cfgp_each(p, v, get_method, r->methods);
}

static kapi_status
set_route_host(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_route *r = dst;
    kapi_status st;

    (void)f;
    if ((st = cfgp_get_string(p, v, true, &r->host)) != KAPI_OK)
        return st;
    for (char *h = r->host; *h; h++) {
        if ((unsigned char)*h <= ' ' || *h == 0x7f)
            return cfgp_fail(p, false, "expected a host name without spaces or control characters");
        *h = cfgp_lower(*h);
    }
    return KAPI_OK;
}

static kapi_status
set_route_path(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_route *r = dst;
    kapi_status st;

    (void)f;
    if ((st = cfgp_get_string(p, v, false, &r->path)) != KAPI_OK)
        return st;
    if (r->path[0] != '/')
        return cfgp_fail(p, false, "expected string starting with \"/\"");
    return KAPI_OK;
}

static kapi_status
set_route_plugins(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_route *r = dst;

    (void)f;
    return parse_plugins(p, v, &r->plugins, &r->nplugins);
}

static const struct cfgp_field route_fields[] = {
    {.key = "name", .fn = set_route_name},
    {.key = "methods", .fn = set_route_methods},
    {.key = "host", .fn = set_route_host},
    {.key = "path", .fn = set_route_path, .required = true},
    {.key = "strip_prefix", .fn = cfgp_set_bool, .off = offsetof(config_route, strip_prefix)},
    {.key = "plugins", .fn = set_route_plugins},
    {.key = "target", .fn = set_route_target, .required = true},
};

/* Element INDEX of "routes", into ROUTES[INDEX]. */
static kapi_status
parse_route(struct cfgp *p, json_t *v, size_t index, void *routes)
{
    config_route *r = (config_route *)routes + index;
    kapi_status st;
    json_t *seen, *name_value;
    json_int_t other;
    size_t old;

    if ((r->json_path = strdup(p->path)) == NULL)
        return cfgp_nomem(p);
    cfgp_position(p, &r->line, &r->col);
    if ((st = cfgp_walk_object(p, v, route_fields, CFGP_NELEMS(route_fields), r)) != KAPI_OK)
        return st;
    if (!r->name && (r->name = strdup(r->json_path)) == NULL)
        return cfgp_nomem(p);
    if ((seen = json_object_get(p->route_names, r->name)) == NULL) {
        if (json_object_set_new_nocheck(p->route_names, r->name, json_integer((json_int_t)index)) !=
            0)
            return cfgp_nomem(p);
        return config_upstream_check_route(p, r);
    }
    other = json_integer_value(seen);
    name_value = json_object_get(v, "name");
    old = name_value ? cfgp_path_key(p, "name") : p->pathlen;
    st = cfgp_fail(p, false, "duplicate route name \"%s\" (also routes[%lld])", r->name,
                   (long long)other);
    cfgp_path_pop(p, old);
    return st;
}

/* ---- the root ----------------------------------------------------------- */

/* Splits "a.b.c.d:port" or "[v6]:port" into a numeric host and a port. */
static kapi_status
parse_listener(struct cfgp *p, const char *s, config_listener *l)
{
    const char *host = s, *end, *port;
    char buf[64];
    unsigned char addr[16];
    bool v6 = s[0] == '[';
    size_t hostlen;
    long n = 0;

    if (v6) {
        host = s + 1;
        end = strchr(host, ']');
        port = end && end[1] == ':' ? end + 2 : NULL;
    } else {
        end = strrchr(s, ':');
        port = end ? end + 1 : NULL;
    }
    if (!port)
        return cfgp_fail(p, false,
                         "expected \"host:port\" with a numeric host, e.g. \"127.0.0.1:8080\" or "
                         "\"[::1]:8080\"");
    hostlen = (size_t)(end - host);
    if (!v6 && memchr(host, ':', hostlen))
        return cfgp_fail(p, false, "an IPv6 address must be in brackets, e.g. \"[::1]:8080\"");
    if (hostlen < sizeof buf) {
        memcpy(buf, host, hostlen);
        buf[hostlen] = '\0';
    }
    if (hostlen >= sizeof buf || inet_pton(v6 ? AF_INET6 : AF_INET, buf, addr) != 1)
        return cfgp_fail(p, false, "host \"%.*s\" is not a numeric %s address", (int)hostlen, host,
                         v6 ? "IPv6" : "IPv4");
    for (const char *d = port; *d && n <= 65535; d++)
        n = cfgp_is_digit(*d) ? n * 10 + (*d - '0') : 65536;
    if (*port == '\0' || n > 65535)
        return cfgp_fail(p, false, "port \"%s\" is not an integer between 0 and 65535", port);
    if ((l->host = strdup(buf)) == NULL)
        return cfgp_nomem(p);
    l->port = (uint16_t)n;
    return KAPI_OK;
}

/* Element I of "listen", into LISTENERS[I]. */
static kapi_status
get_listener(struct cfgp *p, json_t *v, size_t i, void *listeners)
{
    kapi_status st;
    char *s;

    if ((st = cfgp_get_string(p, v, false, &s)) == KAPI_OK)
        st = parse_listener(p, s, (config_listener *)listeners + i);
    free(s);
    return st;
}

static kapi_status
set_listen(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config *cfg = dst;
    kapi_status st;

    (void)f;
    st = cfgp_get_array(p, v, true, "non-empty array of \"host:port\" strings",
                        sizeof *cfg->listeners, (void **)&cfg->listeners, &cfg->nlisteners);
    return st != KAPI_OK ? st : cfgp_each(p, v, get_listener, cfg->listeners);
}

static kapi_status
set_log_level(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const kapi_log_level levels[] = {KAPI_LOG_DEBUG, KAPI_LOG_INFO, KAPI_LOG_WARN,
                                            KAPI_LOG_ERROR};
    kapi_status st;
    size_t i;

    (void)f;
    if ((st = cfgp_get_enum(p, v, names, CFGP_NELEMS(names), &i)) == KAPI_OK)
        ((config *)dst)->log_level = levels[i];
    return st;
}

static kapi_status
set_log_access(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config *cfg = dst;
    kapi_status st;
    char *s;

    (void)f;
    if (!json_is_string(v) || json_string_length(v) == 0)
        return cfgp_fail(p, false, "expected \"stderr\", \"off\" or a file path");
    if ((st = cfgp_get_string(p, v, true, &s)) != KAPI_OK)
        return st;
    free(cfg->access_log);
    if (strcmp(s, "stderr") == 0 || strcmp(s, "off") == 0) {
        cfg->access_log = s;
        return KAPI_OK;
    }
    st = cfgp_resolve(p, s, &cfg->access_log);
    free(s);
    return st;
}

static const struct cfgp_field log_fields[] = {
    {.key = "level", .fn = set_log_level},
    {.key = "access", .fn = set_log_access},
};

#define LIMIT(name, lo, hi) CFGP_UINT(config_limits, name, lo, hi)

static const struct cfgp_field limit_fields[] = {
    LIMIT(max_body_bytes, 1, 1LL << 30), LIMIT(max_header_bytes, 1024, 1LL << 20),
    LIMIT(max_connections, 1, 1000000),  LIMIT(connection_timeout_s, 1, 3600),
    LIMIT(pause_timeout_ms, 1, 3600000), LIMIT(shutdown_timeout_ms, 0, 3600000),
};

static const struct cfgp_field store_fields[] = {
    CFGP_UINT(config_store, map_bytes, 1 << 20, 1LL << 40),
    {.key = "durable", .fn = cfgp_set_bool, .off = offsetof(config_store, durable)},
    CFGP_UINT(config_store, sync_interval_ms, 1, 3600000),
};

static kapi_status
set_store(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return cfgp_walk_object(p, v, store_fields, CFGP_NELEMS(store_fields), &((config *)dst)->store);
}

static kapi_status
set_log(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return cfgp_walk_object(p, v, log_fields, CFGP_NELEMS(log_fields), dst);
}

static kapi_status
set_limits(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return cfgp_walk_object(p, v, limit_fields, CFGP_NELEMS(limit_fields),
                            &((config *)dst)->limits);
}

static kapi_status
set_data_dir(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return cfgp_get_path(p, v, &((config *)dst)->data_dir);
}

/* Element I of "module_dirs", resolved into DIRS[I]. */
static kapi_status
get_module_dir(struct cfgp *p, json_t *v, size_t i, void *dirs)
{
    return cfgp_get_path(p, v, (char **)dirs + i);
}

static kapi_status
set_module_dirs(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config *cfg = dst;
    kapi_status st;

    (void)f;
    st = cfgp_get_array(p, v, true, "non-empty array of directory paths", sizeof *cfg->module_dirs,
                        (void **)&cfg->module_dirs, &cfg->nmodule_dirs);
    return st != KAPI_OK ? st : cfgp_each(p, v, get_module_dir, cfg->module_dirs);
}

static kapi_status
set_plugins(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config *cfg = dst;

    (void)f;
    return parse_plugins(p, v, &cfg->plugins, &cfg->nplugins);
}

static kapi_status
set_routes(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config *cfg = dst;
    kapi_status st;

    (void)f;
    st = cfgp_get_array(p, v, false, "array", sizeof *cfg->routes, (void **)&cfg->routes,
                        &cfg->nroutes);
    if (st != KAPI_OK)
        return st;
    if ((p->route_names = json_object()) == NULL)
        return cfgp_nomem(p);
    return cfgp_each(p, v, parse_route, cfg->routes);
}

static const struct cfgp_field root_fields[] = {
    {.key = "listen", .fn = set_listen, .required = true},
    CFGP_UINT(config, threads, 0, 256),
    {.key = "log", .fn = set_log},
    {.key = "limits", .fn = set_limits},
    {.key = "data_dir", .fn = set_data_dir},
    {.key = "store", .fn = set_store},
    {.key = "watch", .fn = cfgp_set_bool, .off = offsetof(config, watch)},
    {.key = "module_dirs", .fn = set_module_dirs, .required = true},
    {.key = "plugins", .fn = set_plugins},
    {.key = "routes", .fn = set_routes, .required = true},
    {.key = "upstreams", .fn = config_upstream_walk},
};

/* "dir/kapi.json" -> "dir", "kapi.json" -> ".", "/kapi.json" -> "/". */
static char *
dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    size_t n;

    if (!slash)
        return strdup(".");
    for (n = (size_t)(slash - file); n > 0 && file[n - 1] == '/'; n--)
        ;
    return n == 0 ? strdup("/") : strndup(file, n);
}

static kapi_status
set_defaults(struct cfgp *p, config *cfg)
{
    cfg->threads = 0;
    cfg->log_level = KAPI_LOG_INFO;
    cfg->limits = (config_limits){
        .max_body_bytes = 1 << 20,
        .max_header_bytes = 16 << 10,
        .max_connections = 1024,
        .connection_timeout_s = 30,
        .pause_timeout_ms = 30000,
        .shutdown_timeout_ms = 10000,
    };
    cfg->store = (config_store){
        .map_bytes = (size_t)256 << 20,
        .durable = false,
        .sync_interval_ms = 1000,
    };
    if ((cfg->file = strdup(p->file)) == NULL || (cfg->base_dir = dir_of(p->file)) == NULL ||
        (cfg->access_log = strdup("stderr")) == NULL)
        return cfgp_nomem(p);
    return KAPI_OK;
}

kapi_status
config_parse(const char *file, const char *text, size_t len, config **out, char *err, size_t errlen)
{
    struct cfgp p = {.file = file, .text = text, .len = len, .err = err, .errlen = errlen};
    json_error_t jerr;
    json_t *root = NULL;
    config *cfg;
    kapi_status st;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    if (len > CONFIG_MAX_BYTES) {
        if (errlen)
            snprintf(err, errlen, "%s: larger than %zu bytes (16 MiB)", file, CONFIG_MAX_BYTES);
        return KAPI_ECONFIG;
    }
    if ((p.cfg = cfg = calloc(1, sizeof *cfg)) == NULL)
        return cfgp_nomem(&p);
    if ((st = set_defaults(&p, cfg)) != KAPI_OK)
        goto out;
    if ((root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        if (errlen) {
            /* jansson quotes the offending bytes: keep the message one line */
            for (char *c = jerr.text; *c; c++)
                if ((unsigned char)*c < 0x20)
                    *c = ' ';
            snprintf(err, errlen, "%s:%d:%d: invalid JSON: %s", file, jerr.line, jerr.column,
                     jerr.text);
        }
        st = KAPI_ECONFIG;
        goto out;
    }
    st = cfgp_walk_object(&p, root, root_fields, CFGP_NELEMS(root_fields), cfg);
    if (st == KAPI_OK && !cfg->data_dir)
        st = cfgp_resolve(&p, "var/kapi", &cfg->data_dir);
    if (st == KAPI_OK)
        st = config_upstream_link(&p);
out:
    json_decref(root);
    json_decref(p.route_names);
    config_upstream_discard(&p);
    if (st != KAPI_OK) {
        config_free(cfg);
        return st;
    }
    *out = cfg;
    return KAPI_OK;
}

kapi_status
config_load(const char *file, config **out, char *err, size_t errlen)
{
    struct cfgp p = {.file = file, .err = err, .errlen = errlen};
    char *text = NULL, *t;
    size_t len = 0, cap = 0;
    kapi_status st = KAPI_EIO;
    int fd;

    *out = NULL;
    if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
        goto out;
    for (;;) {
        ssize_t n;
        if (len == cap) {
            if (cap > CONFIG_MAX_BYTES)
                break; /* one byte too many: config_parse refuses it */
            cap = cap ? cap * 2 : 64 << 10;
            if (cap > CONFIG_MAX_BYTES)
                cap = CONFIG_MAX_BYTES + 1;
            if ((t = realloc(text, cap)) == NULL) {
                st = cfgp_nomem(&p);
                goto out;
            }
            text = t;
        }
        if ((n = read(fd, text + len, cap - len)) == 0)
            break;
        if (n < 0 && errno != EINTR)
            goto out;
        if (n > 0)
            len += (size_t)n;
    }
    st = config_parse(file, text, len, out, err, errlen);
out:
    if (st == KAPI_EIO && errlen)
        snprintf(err, errlen, "%s: cannot read: %s", file, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(text);
    return st;
}

static void
free_ref(config_module_ref *ref)
{
    free(ref->module);
    free(ref->config_json);
    free(ref->json_path);
}

static void
free_refs(config_module_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free_ref(&refs[i]);
    free(refs);
}

static void
free_strings(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void
config_free(config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        config_route *r = &cfg->routes[i];
        free(r->name);
        free_strings(r->methods, r->nmethods);
        free(r->host);
        free(r->path);
        free_refs(r->plugins, r->nplugins);
        free_ref(&r->target);
        free(r->target_path);
        free(r->json_path);
    }
    free(cfg->routes);
    for (size_t i = 0; i < cfg->nupstreams; i++)
        config_upstream_free(&cfg->upstreams[i]);
    free(cfg->upstreams);
    free_refs(cfg->plugins, cfg->nplugins);
    free_strings(cfg->module_dirs, cfg->nmodule_dirs);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        free(cfg->listeners[i].host);
    free(cfg->listeners);
    free(cfg->file);
    free(cfg->base_dir);
    free(cfg->access_log);
    free(cfg->data_dir);
    free(cfg);
}
