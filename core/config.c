/* config.c -- reads kapi.json into a validated struct config.
 *
 * Jansson parses (and reports syntax errors with its own line:col); a walk
 * over a fixed schema then checks every key and type in document order,
 * substitutes ${NAME} from the environment in string values (module config
 * objects included, before they are serialized), resolves relative paths
 * against the file's directory and asks jsonpos.c where a bad value sits.
 * The first error wins and is printed as "FILE:LINE:COL: JSON.PATH: what".
 * It does not load modules, check that directories exist nor build routes:
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

#include "jsonpos.h"

#define CONFIG_MAX_BYTES ((size_t)16 << 20)
#define MODULE_NAME_MAX 64
#define NELEMS(a) (sizeof(a) / sizeof *(a))

/* The state of one parse. PATH is the JSON path of the value being checked,
 * kept in step with the walk; a path too long for the buffer is cut, which
 * only makes the position point at an ancestor. */
struct parser {
    const char *file;
    const char *text;
    size_t len;
    char *err;
    size_t errlen;
    config *cfg;
    json_t *route_names; /* name -> index, to report duplicates */
    jsonpos_cache pos;   /* positions are asked for in document order */
    char path[1024];
    size_t pathlen;
};

/* One key of an object kapi owns: its handler gets the value and the struct
 * being filled; integer and boolean fields are stored at OFF (SIZE bytes). */
struct field;
typedef kapi_status (*field_fn)(struct parser *p, json_t *v, void *dst, const struct field *f);
struct field {
    const char *key;
    field_fn fn;
    bool required;
    long long min, max;
    size_t off, size;
};

/* ---- messages and paths ---------------------------------------------- */

static kapi_status __attribute__((format(printf, 3, 4)))
fail(struct parser *p, bool at_key, const char *fmt, ...)
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
    return KAPI_ECONFIG;
}

static kapi_status
nomem(struct parser *p)
{
    if (p->errlen)
        snprintf(p->err, p->errlen, "%s: out of memory", p->file);
    return KAPI_ENOMEM;
}

static void
path_append(struct parser *p, const char *a, const char *b)
{
    int n = snprintf(p->path + p->pathlen, sizeof p->path - p->pathlen, "%s%s", a, b);
    if (n < 0 || (size_t)n >= sizeof p->path - p->pathlen)
        p->pathlen = sizeof p->path - 1;
    else
        p->pathlen += (size_t)n;
}

/* Both push a step and return the length to hand back to path_pop. */
static size_t
path_key(struct parser *p, const char *key)
{
    size_t old = p->pathlen;
    path_append(p, old ? "." : "", key);
    return old;
}

static size_t
path_index(struct parser *p, size_t i)
{
    size_t old = p->pathlen;
    char num[32];
    snprintf(num, sizeof num, "[%zu]", i);
    path_append(p, "", num);
    return old;
}

static void
path_pop(struct parser *p, size_t old)
{
    p->pathlen = old;
    p->path[old] = '\0';
}

static void
position(struct parser *p, unsigned *line, unsigned *col)
{
    jsonpos_find(&p->pos, p->text, p->len, p->path, false, line, col);
}

/* ---- small helpers ----------------------------------------------------- */

static char
ascii_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static char
ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* calloc for N elements that yields NULL, not an error, for N == 0. */
static kapi_status
alloc_array(struct parser *p, size_t n, size_t size, void **out)
{
    *out = NULL;
    if (n > 0 && (*out = calloc(n, size)) == NULL)
        return nomem(p);
    return KAPI_OK;
}

static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[MODULE_NAME_MAX + 1];

    if (la > MODULE_NAME_MAX || lb > MODULE_NAME_MAX)
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

/* The known key closest to KEY, or NULL when none is close: an edit
 * distance of at most 2 or a third of the longer name, or one name a prefix
 * (of 3 or more characters) of the other ("max_body" for "max_body_bytes"). */
static const char *
suggest(const char *key, const struct field *fields, size_t n)
{
    const char *best = NULL;
    size_t bestd = (size_t)-1, lk = strlen(key);

    for (size_t i = 0; i < n; i++) {
        const char *cand = fields[i].key;
        size_t d = edit_distance(key, cand), lc = strlen(cand);
        size_t longer = lk > lc ? lk : lc, shorter = lk < lc ? lk : lc;
        bool prefix = shorter >= 3 && strncmp(key, cand, shorter) == 0;
        if ((d <= 2 || d * 3 <= longer || prefix) && d < bestd) {
            best = cand;
            bestd = d;
        }
    }
    return best;
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
expand_env(struct parser *p, const char *s, size_t n, char **out)
{
    struct buf b = {0};
    kapi_status st = KAPI_OK;
    size_t i = 0;

    *out = NULL;
    if (!buf_add(&b, "", 0))
        return nomem(p);
    while (i < n) {
        const char *dollar = memchr(s + i, '$', n - i), *value;
        size_t lit = dollar ? (size_t)(dollar - s) - i : n - i, name;
        bool ok = buf_add(&b, s + i, lit);
        i += lit;
        if (!ok) {
            st = nomem(p);
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
                if (!(s[i + 2 + name] == '_' || is_alpha(s[i + 2 + name]) ||
                      (name > 0 && is_digit(s[i + 2 + name]))))
                    break;
            if (name == 0 || name >= sizeof var || i + 2 + name >= n || s[i + 2 + name] != '}') {
                st = fail(p, false,
                          "malformed ${NAME} reference (NAME is [A-Za-z_][A-Za-z0-9_]*; "
                          "write $${ for a literal ${)");
                goto out;
            }
            memcpy(var, s + i + 2, name);
            var[name] = '\0';
            if ((value = getenv(var)) == NULL) {
                st = fail(p, false, "environment variable %s is not set", var);
                goto out;
            }
            ok = buf_add(&b, value, strlen(value));
            i += name + 3;
        } else {
            ok = buf_add(&b, "$", 1);
            i++;
        }
        if (!ok) {
            st = nomem(p);
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

/* Substitutes in every string value under V, in place (module configs). */
static kapi_status
expand_tree(struct parser *p, json_t *v)
{
    kapi_status st = KAPI_OK;
    const char *key;
    json_t *item;
    size_t i, old;

    if (json_is_object(v)) {
        json_object_foreach(v, key, item)
        {
            old = path_key(p, key);
            st = expand_tree(p, item);
            path_pop(p, old);
            if (st != KAPI_OK)
                return st;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            old = path_index(p, i);
            st = expand_tree(p, item);
            path_pop(p, old);
            if (st != KAPI_OK)
                return st;
        }
    } else if (json_is_string(v) && memchr(json_string_value(v), '$', json_string_length(v))) {
        char *s;
        if ((st = expand_env(p, json_string_value(v), json_string_length(v), &s)) != KAPI_OK)
            return st;
        if (json_string_set(v, s) != 0)
            st = fail(p, false, "value is not valid UTF-8 after ${} substitution");
        free(s);
    }
    return st;
}

/* ---- typed values ------------------------------------------------------- */

/* *OUT: V's text after substitution, caller frees; NONEMPTY refuses "". */
static kapi_status
get_string(struct parser *p, json_t *v, bool nonempty, char **out)
{
    kapi_status st;

    *out = NULL;
    if (!json_is_string(v))
        return fail(p, false, nonempty ? "expected non-empty string" : "expected string");
    if ((st = expand_env(p, json_string_value(v), json_string_length(v), out)) != KAPI_OK)
        return st;
    if (nonempty && **out == '\0') {
        free(*out);
        *out = NULL;
        return fail(p, false, "expected non-empty string");
    }
    return KAPI_OK;
}

/* *OUT: S when absolute, else S under the config file's directory. */
static kapi_status
resolve(struct parser *p, const char *s, char **out)
{
    const char *base = p->cfg->base_dir;
    size_t n = strlen(base) + strlen(s) + 2;

    if (s[0] == '/')
        *out = strdup(s);
    else if ((*out = malloc(n)) != NULL)
        snprintf(*out, n, "%s%s%s", base, strcmp(base, "/") ? "/" : "", s);
    return *out ? KAPI_OK : nomem(p);
}

static kapi_status
get_path(struct parser *p, json_t *v, char **out)
{
    char *s;
    kapi_status st;

    *out = NULL;
    if ((st = get_string(p, v, true, &s)) != KAPI_OK)
        return st;
    st = resolve(p, s, out);
    free(s);
    return st;
}

static kapi_status
set_uint(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    char *at = (char *)dst + f->off;
    json_int_t n;

    if (!json_is_integer(v) || (n = json_integer_value(v)) < f->min || n > f->max)
        return fail(p, false, "expected integer between %lld and %lld", f->min, f->max);
    if (f->size == sizeof(size_t))
        *(size_t *)(void *)at = (size_t)n;
    else
        *(unsigned *)(void *)at = (unsigned)n;
    return KAPI_OK;
}

static kapi_status
set_bool(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    if (!json_is_boolean(v))
        return fail(p, false, "expected boolean");
    *(bool *)((char *)dst + f->off) = json_is_true(v);
    return KAPI_OK;
}

/* Checks that OBJ is an object, hands each key to its field in document
 * order, refuses unknown keys and then reports a missing required one. */
static kapi_status
walk_object(struct parser *p, json_t *obj, const struct field *fields, size_t n, void *dst)
{
    kapi_status st;
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return fail(p, false, "expected object");
    json_object_foreach(obj, key, v)
    {
        const struct field *f = NULL;
        size_t old;
        for (size_t i = 0; i < n && !f; i++)
            if (strcmp(fields[i].key, key) == 0)
                f = &fields[i];
        old = path_key(p, key);
        if (f) {
            st = f->fn(p, v, dst, f);
        } else {
            const char *near = suggest(key, fields, n);
            st = near ? fail(p, true, "unknown key (did you mean \"%s\"?)", near)
                      : fail(p, true, "unknown key");
        }
        path_pop(p, old);
        if (st != KAPI_OK)
            return st;
    }
    for (size_t i = 0; i < n; i++)
        if (fields[i].required && !json_object_get(obj, fields[i].key))
            return fail(p, false, "missing required key \"%s\"", fields[i].key);
    return KAPI_OK;
}

/* Checks that V is an array (of at least one element when NONEMPTY) and
 * allocates *ITEMS, N elements of SIZE bytes, zeroed. */
static kapi_status
get_array(struct parser *p, json_t *v, bool nonempty, const char *what, size_t size, void **items,
          size_t *n)
{
    kapi_status st;

    if (!json_is_array(v) || (nonempty && json_array_size(v) == 0))
        return fail(p, false, "expected %s", what);
    if ((st = alloc_array(p, json_array_size(v), size, items)) == KAPI_OK)
        *n = json_array_size(v);
    return st;
}

/* ---- module references -------------------------------------------------- */

static bool
valid_module_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MODULE_NAME_MAX || strstr(s, ".."))
        return false;
    for (; *s; s++)
        if (!(is_alpha(*s) || is_digit(*s) || *s == '_' || *s == '.' || *s == '-'))
            return false;
    return true;
}

static kapi_status
set_module_name(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config_module_ref *ref = dst;
    kapi_status st;

    (void)f;
    if ((st = get_string(p, v, false, &ref->module)) != KAPI_OK)
        return st;
    if (!valid_module_name(ref->module))
        return fail(p, false,
                    "invalid module name \"%s\" (expected 1 to 64 of A-Z a-z 0-9 _ . - "
                    "and no \"..\")",
                    ref->module);
    return KAPI_OK;
}

static kapi_status
set_module_config(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config_module_ref *ref = dst;
    kapi_status st;

    (void)f;
    if (!json_is_object(v))
        return fail(p, false, "expected object");
    if ((st = expand_tree(p, v)) != KAPI_OK)
        return st;
    if ((ref->config_json = json_dumps(v, JSON_COMPACT)) == NULL)
        return nomem(p);
    position(p, &ref->line, &ref->col);
    return KAPI_OK;
}

static const struct field plugin_fields[] = {
    {.key = "module", .fn = set_module_name, .required = true},
    {.key = "config", .fn = set_module_config},
};

static const struct field target_fields[] = {
    {.key = "function", .fn = set_module_name, .required = true},
    {.key = "config", .fn = set_module_config},
};

static kapi_status
parse_module_ref(struct parser *p, json_t *v, const struct field *fields, size_t n,
                 config_module_ref *ref)
{
    kapi_status st;

    if ((ref->json_path = strdup(p->path)) == NULL)
        return nomem(p);
    position(p, &ref->line, &ref->col);
    if ((st = walk_object(p, v, fields, n, ref)) != KAPI_OK)
        return st;
    if (!ref->config_json && (ref->config_json = strdup("{}")) == NULL)
        return nomem(p);
    return KAPI_OK;
}

static kapi_status
parse_plugins(struct parser *p, json_t *v, config_module_ref **refs, size_t *n)
{
    kapi_status st;
    json_t *item;
    size_t i;

    if ((st = get_array(p, v, false, "array", sizeof **refs, (void **)refs, n)) != KAPI_OK)
        return st;
    json_array_foreach(v, i, item)
    {
        size_t old = path_index(p, i);
        st = parse_module_ref(p, item, plugin_fields, NELEMS(plugin_fields), &(*refs)[i]);
        path_pop(p, old);
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

/* ---- routes ------------------------------------------------------------- */

static kapi_status
set_route_name(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    (void)f;
    return get_string(p, v, true, &((config_route *)dst)->name);
}

static bool
is_tchar(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static kapi_status
set_route_methods(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config_route *r = dst;
    kapi_status st;
    json_t *item;
    size_t i;

    (void)f;
    st = get_array(p, v, true, "non-empty array of method names", sizeof *r->methods,
                   (void **)&r->methods, &r->nmethods);
    if (st != KAPI_OK)
        return st;
    json_array_foreach(v, i, item)
    {
        size_t old = path_index(p, i), k = 0;
        char *m = NULL;
        if ((st = get_string(p, item, true, &r->methods[i])) == KAPI_OK) {
            for (m = r->methods[i]; m[k] && is_tchar(m[k]); k++)
                ;
            if (m[k])
                st = fail(p, false, "invalid method \"%s\" (expected a token such as \"GET\")", m);
            for (; *m; m++)
                *m = ascii_upper(*m);
        }
        path_pop(p, old);
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

static kapi_status
set_route_host(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config_route *r = dst;
    kapi_status st;

    (void)f;
    if ((st = get_string(p, v, true, &r->host)) != KAPI_OK)
        return st;
    for (char *h = r->host; *h; h++) {
        if ((unsigned char)*h <= ' ' || *h == 0x7f)
            return fail(p, false, "expected a host name without spaces or control characters");
        *h = ascii_lower(*h);
    }
    return KAPI_OK;
}

static kapi_status
set_route_path(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config_route *r = dst;
    kapi_status st;

    (void)f;
    if ((st = get_string(p, v, false, &r->path)) != KAPI_OK)
        return st;
    if (r->path[0] != '/')
        return fail(p, false, "expected string starting with \"/\"");
    return KAPI_OK;
}

static kapi_status
set_route_plugins(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config_route *r = dst;

    (void)f;
    return parse_plugins(p, v, &r->plugins, &r->nplugins);
}

static kapi_status
set_route_target(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    (void)f;
    return parse_module_ref(p, v, target_fields, NELEMS(target_fields),
                            &((config_route *)dst)->target);
}

static const struct field route_fields[] = {
    {.key = "name", .fn = set_route_name},
    {.key = "methods", .fn = set_route_methods},
    {.key = "host", .fn = set_route_host},
    {.key = "path", .fn = set_route_path, .required = true},
    {.key = "strip_prefix", .fn = set_bool, .off = offsetof(config_route, strip_prefix)},
    {.key = "plugins", .fn = set_route_plugins},
    {.key = "target", .fn = set_route_target, .required = true},
};

static kapi_status
parse_route(struct parser *p, json_t *v, size_t index, config_route *r)
{
    kapi_status st;
    json_t *seen, *name_value;
    json_int_t other;
    size_t old;

    if ((r->json_path = strdup(p->path)) == NULL)
        return nomem(p);
    position(p, &r->line, &r->col);
    if ((st = walk_object(p, v, route_fields, NELEMS(route_fields), r)) != KAPI_OK)
        return st;
    if (!r->name && (r->name = strdup(r->json_path)) == NULL)
        return nomem(p);
    if ((seen = json_object_get(p->route_names, r->name)) == NULL) {
        if (json_object_set_new_nocheck(p->route_names, r->name, json_integer((json_int_t)index)) !=
            0)
            return nomem(p);
        return KAPI_OK;
    }
    other = json_integer_value(seen);
    name_value = json_object_get(v, "name");
    old = name_value ? path_key(p, "name") : p->pathlen;
    st = fail(p, false, "duplicate route name \"%s\" (also routes[%lld])", r->name,
              (long long)other);
    path_pop(p, old);
    return st;
}

/* ---- the root ----------------------------------------------------------- */

/* Splits "a.b.c.d:port" or "[v6]:port" into a numeric host and a port. */
static kapi_status
parse_listener(struct parser *p, const char *s, config_listener *l)
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
        return fail(p, false,
                    "expected \"host:port\" with a numeric host, e.g. \"127.0.0.1:8080\" or "
                    "\"[::1]:8080\"");
    hostlen = (size_t)(end - host);
    if (!v6 && memchr(host, ':', hostlen))
        return fail(p, false, "an IPv6 address must be in brackets, e.g. \"[::1]:8080\"");
    if (hostlen < sizeof buf) {
        memcpy(buf, host, hostlen);
        buf[hostlen] = '\0';
    }
    if (hostlen >= sizeof buf || inet_pton(v6 ? AF_INET6 : AF_INET, buf, addr) != 1)
        return fail(p, false, "host \"%.*s\" is not a numeric %s address", (int)hostlen, host,
                    v6 ? "IPv6" : "IPv4");
    for (const char *d = port; *d && n <= 65535; d++)
        n = is_digit(*d) ? n * 10 + (*d - '0') : 65536;
    if (*port == '\0' || n > 65535)
        return fail(p, false, "port \"%s\" is not an integer between 0 and 65535", port);
    if ((l->host = strdup(buf)) == NULL)
        return nomem(p);
    l->port = (uint16_t)n;
    return KAPI_OK;
}

static kapi_status
set_listen(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config *cfg = dst;
    kapi_status st;
    json_t *item;
    size_t i;

    (void)f;
    st = get_array(p, v, true, "non-empty array of \"host:port\" strings", sizeof *cfg->listeners,
                   (void **)&cfg->listeners, &cfg->nlisteners);
    if (st != KAPI_OK)
        return st;
    json_array_foreach(v, i, item)
    {
        size_t old = path_index(p, i);
        char *s;
        if ((st = get_string(p, item, false, &s)) == KAPI_OK)
            st = parse_listener(p, s, &cfg->listeners[i]);
        free(s);
        path_pop(p, old);
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

static kapi_status
set_log_level(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const kapi_log_level levels[] = {KAPI_LOG_DEBUG, KAPI_LOG_INFO, KAPI_LOG_WARN,
                                            KAPI_LOG_ERROR};
    config *cfg = dst;
    kapi_status st;
    char *s;

    (void)f;
    if ((st = get_string(p, v, false, &s)) != KAPI_OK)
        return st;
    for (size_t i = 0; i < NELEMS(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            cfg->log_level = levels[i];
            free(s);
            return KAPI_OK;
        }
    }
    free(s);
    return fail(p, false, "expected one of \"debug\", \"info\", \"warn\", \"error\"");
}

static kapi_status
set_log_access(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config *cfg = dst;
    kapi_status st;
    char *s;

    (void)f;
    if (!json_is_string(v) || json_string_length(v) == 0)
        return fail(p, false, "expected \"stderr\", \"off\" or a file path");
    if ((st = get_string(p, v, true, &s)) != KAPI_OK)
        return st;
    free(cfg->access_log);
    if (strcmp(s, "stderr") == 0 || strcmp(s, "off") == 0) {
        cfg->access_log = s;
        return KAPI_OK;
    }
    st = resolve(p, s, &cfg->access_log);
    free(s);
    return st;
}

static const struct field log_fields[] = {
    {.key = "level", .fn = set_log_level},
    {.key = "access", .fn = set_log_access},
};

#define LIMIT(name, lo, hi)                                                                        \
    {                                                                                              \
        .key = #name, .fn = set_uint, .min = lo, .max = hi, .off = offsetof(config_limits, name),  \
        .size = sizeof(((config_limits *)0)->name)                                                 \
    }

static const struct field limit_fields[] = {
    LIMIT(max_body_bytes, 1, 1LL << 30), LIMIT(max_header_bytes, 1024, 1LL << 20),
    LIMIT(max_connections, 1, 1000000),  LIMIT(connection_timeout_s, 1, 3600),
    LIMIT(pause_timeout_ms, 1, 3600000), LIMIT(shutdown_timeout_ms, 0, 3600000),
};

static const struct field store_fields[] = {
    {.key = "map_bytes",
     .fn = set_uint,
     .min = 1 << 20,
     .max = 1LL << 40,
     .off = offsetof(config_store, map_bytes),
     .size = sizeof(size_t)},
    {.key = "durable", .fn = set_bool, .off = offsetof(config_store, durable)},
    {.key = "sync_interval_ms",
     .fn = set_uint,
     .min = 1,
     .max = 3600000,
     .off = offsetof(config_store, sync_interval_ms),
     .size = sizeof(unsigned)},
};

static kapi_status
set_store(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    (void)f;
    return walk_object(p, v, store_fields, NELEMS(store_fields), &((config *)dst)->store);
}

static kapi_status
set_log(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    (void)f;
    return walk_object(p, v, log_fields, NELEMS(log_fields), dst);
}

static kapi_status
set_limits(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    (void)f;
    return walk_object(p, v, limit_fields, NELEMS(limit_fields), &((config *)dst)->limits);
}

static kapi_status
set_data_dir(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    (void)f;
    return get_path(p, v, &((config *)dst)->data_dir);
}

static kapi_status
set_module_dirs(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config *cfg = dst;
    kapi_status st;
    json_t *item;
    size_t i;

    (void)f;
    st = get_array(p, v, true, "non-empty array of directory paths", sizeof *cfg->module_dirs,
                   (void **)&cfg->module_dirs, &cfg->nmodule_dirs);
    if (st != KAPI_OK)
        return st;
    json_array_foreach(v, i, item)
    {
        size_t old = path_index(p, i);
        st = get_path(p, item, &cfg->module_dirs[i]);
        path_pop(p, old);
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

static kapi_status
set_plugins(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config *cfg = dst;

    (void)f;
    return parse_plugins(p, v, &cfg->plugins, &cfg->nplugins);
}

static kapi_status
set_routes(struct parser *p, json_t *v, void *dst, const struct field *f)
{
    config *cfg = dst;
    kapi_status st;
    json_t *item;
    size_t i;

    (void)f;
    st = get_array(p, v, false, "array", sizeof *cfg->routes, (void **)&cfg->routes, &cfg->nroutes);
    if (st != KAPI_OK)
        return st;
    if ((p->route_names = json_object()) == NULL)
        return nomem(p);
    json_array_foreach(v, i, item)
    {
        size_t old = path_index(p, i);
        st = parse_route(p, item, i, &cfg->routes[i]);
        path_pop(p, old);
        if (st != KAPI_OK)
            return st;
    }
    return KAPI_OK;
}

static const struct field root_fields[] = {
    {.key = "listen", .fn = set_listen, .required = true},
    {.key = "threads",
     .fn = set_uint,
     .min = 0,
     .max = 256,
     .off = offsetof(config, threads),
     .size = sizeof(unsigned)},
    {.key = "log", .fn = set_log},
    {.key = "limits", .fn = set_limits},
    {.key = "data_dir", .fn = set_data_dir},
    {.key = "store", .fn = set_store},
    {.key = "watch", .fn = set_bool, .off = offsetof(config, watch)},
    {.key = "module_dirs", .fn = set_module_dirs, .required = true},
    {.key = "plugins", .fn = set_plugins},
    {.key = "routes", .fn = set_routes, .required = true},
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
set_defaults(struct parser *p, config *cfg)
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
        return nomem(p);
    return KAPI_OK;
}

kapi_status
config_parse(const char *file, const char *text, size_t len, config **out, char *err, size_t errlen)
{
    struct parser p = {.file = file, .text = text, .len = len, .err = err, .errlen = errlen};
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
        return nomem(&p);
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
    st = walk_object(&p, root, root_fields, NELEMS(root_fields), cfg);
    if (st == KAPI_OK && !cfg->data_dir)
        st = resolve(&p, "var/kapi", &cfg->data_dir);
out:
    json_decref(root);
    json_decref(p.route_names);
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
    struct parser p = {.file = file, .err = err, .errlen = errlen};
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
                st = nomem(&p);
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
        free(r->json_path);
    }
    free(cfg->routes);
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
