/* config_upstream.c -- the "upstreams" section of kapi.json and the upstream
 * forms of a route's target ({"upstream": NAME} and {"url": URL}).
 *
 * It checks every key of an upstream (targets as URLs, balancing, timeouts,
 * tls, active and passive health, breaker) into a config_upstream with its
 * defaults, makes an anonymous upstream of each "url" target, checks a
 * target's "path" template against the route's pattern and, once the whole
 * file is walked, links routes to upstreams by name (upstreams may follow
 * routes in the file). Errors go through config_parse.h, like config.c's.
 * It does not resolve host names, open files (ca_file need not exist yet)
 * nor connect: upstream.c and proxy.c do that from the struct. */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_parse.h"

#define UPSTREAM_MAX_TARGETS 64
#define HOST_NAME_MAX_LEN 253

/* ---- URLs --------------------------------------------------------------- */

/* Letters, digits and '-' in non-empty labels of at most 63, separated by '.'. */
static bool
valid_host_name(const char *s, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > HOST_NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (cfgp_is_alpha(s[i]) || cfgp_is_digit(s[i]) || s[i] == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

static bool
numeric_address(int af, const char *s, size_t n)
{
    char buf[64];
    unsigned char addr[16];

    if (n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(af, buf, addr) == 1;
}

/* A space or control byte would split or forge the request line. */
static bool
has_space_or_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return true;
    return false;
}

/* Fills T from URL ("http[s]://host[:port][/path]"), which T then owns
 * (freed here on failure). Errors point at the current path. */
static kapi_status
parse_url(struct cfgp *p, char *url, config_target *t)
{
    const char *auth, *end, *host, *hostend, *port = NULL, *path;
    size_t hostlen, pathlen;
    kapi_status st = KAPI_ECONFIG;
    long n = 0;

    if (strncasecmp(url, "http://", 7) == 0) {
        auth = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        auth = url + 8;
        t->tls = true;
    } else {
        cfgp_fail(p, false, "expected a URL starting with \"http://\" or \"https://\"");
        goto out;
    }
    if (strpbrk(url, "?#")) {
        cfgp_fail(p, false, "URL must not have a query (\"?\") or a fragment (\"#\")");
        goto out;
    }
    end = auth + strcspn(auth, "/");
    if (memchr(auth, '@', (size_t)(end - auth))) {
        cfgp_fail(p, false, "URL must not have userinfo (\"user@\")");
        goto out;
    }
    if (*auth == '[') {
        host = auth + 1;
        if ((hostend = memchr(host, ']', (size_t)(end - host))) == NULL ||
            !numeric_address(AF_INET6, host, (size_t)(hostend - host))) {
            cfgp_fail(p, false, "host \"%.*s\" is not a numeric IPv6 address",
                      (int)((hostend ? hostend + 1 : end) - auth), auth);
            goto out;
        }
        if (hostend + 1 < end && hostend[1] != ':') {
            cfgp_fail(p, false, "expected \":PORT\" or \"/\" after \"]\"");
            goto out;
        }
        port = hostend + 1 < end ? hostend + 2 : NULL;
    } else {
        host = auth;
        hostend = memchr(auth, ':', (size_t)(end - auth));
        port = hostend ? hostend + 1 : NULL;
        if (!hostend)
            hostend = end;
    }
    hostlen = (size_t)(hostend - host);
    if (hostlen == 0) {
        cfgp_fail(p, false, "URL has no host");
        goto out;
    }
    if (*auth != '[') {
        if (strspn(host, "0123456789.") >= hostlen) {
            if (!numeric_address(AF_INET, host, hostlen)) {
                cfgp_fail(p, false, "host \"%.*s\" is not a numeric IPv4 address", (int)hostlen,
                          host);
                goto out;
            }
        } else if (!valid_host_name(host, hostlen)) {
            cfgp_fail(p, false,
                      "host \"%.*s\" is not a host name (letters, digits, \"-\", \".\"), an IPv4 "
                      "address or an IPv6 address in brackets",
                      (int)hostlen, host);
            goto out;
        }
    }
    if (port) {
        for (const char *d = port; d < end && n <= 65535; d++)
            n = cfgp_is_digit(*d) ? n * 10 + (*d - '0') : 65536;
        if (port == end || n < 1 || n > 65535) {
            cfgp_fail(p, false, "port \"%.*s\" is not an integer between 1 and 65535",
                      (int)(end - port), port);
            goto out;
        }
    }
    t->port = (uint16_t)(port ? n : t->tls ? 443 : 80);
    path = end;
    if (has_space_or_control(path)) {
        cfgp_fail(p, false, "URL path must not have spaces or control characters");
        goto out;
    }
    for (pathlen = strlen(path); pathlen > 0 && path[pathlen - 1] == '/'; pathlen--)
        ;
    if ((t->host = strndup(host, hostlen)) == NULL ||
        (t->base_path = strndup(path, pathlen)) == NULL) {
        st = cfgp_nomem(p);
        goto out;
    }
    for (char *h = t->host; *h; h++)
        *h = cfgp_lower(*h);
    st = KAPI_OK;
out:
    if (st == KAPI_OK)
        t->url = url;
    else
        free(url);
    return st;
}

/* ---- targets ------------------------------------------------------------ */

/* Defaults and position of the target at the current path. */
static kapi_status
target_begin(struct cfgp *p, config_target *t)
{
    t->weight = 1;
    if ((t->json_path = strdup(p->path)) == NULL)
        return cfgp_nomem(p);
    cfgp_position(p, &t->line, &t->col);
    return KAPI_OK;
}

static kapi_status
get_url(struct cfgp *p, json_t *v, config_target *t)
{
    kapi_status st;
    char *s;

    if ((st = cfgp_get_string(p, v, true, &s)) != KAPI_OK)
        return st;
    return parse_url(p, s, t);
}

static kapi_status
set_target_url(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return get_url(p, v, dst);
}

static const struct cfgp_field target_fields[] = {
    {.key = "url", .fn = set_target_url, .required = true},
    CFGP_UINT(config_target, weight, 1, 1000),
};

/* Element I of "targets", into TARGETS[I]. */
static kapi_status
parse_target(struct cfgp *p, json_t *v, size_t i, void *targets)
{
    config_target *t = (config_target *)targets + i;
    kapi_status st;

    if ((st = target_begin(p, t)) != KAPI_OK)
        return st;
    if (json_is_string(v))
        return get_url(p, v, t);
    if (json_is_object(v))
        return cfgp_walk_object(p, v, target_fields, CFGP_NELEMS(target_fields), t);
    return cfgp_fail(p, false, "expected a URL string or an object {\"url\": URL, \"weight\": N}");
}

static kapi_status
set_targets(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_upstream *u = dst;
    kapi_status st;

    (void)f;
    if (json_array_size(v) > UPSTREAM_MAX_TARGETS)
        return cfgp_fail(p, false, "expected at most %d targets", UPSTREAM_MAX_TARGETS);
    st = cfgp_get_array(p, v, true,
                        "non-empty array of targets (\"URL\" or {\"url\": URL, \"weight\": N})",
                        sizeof *u->targets, (void **)&u->targets, &u->ntargets);
    return st != KAPI_OK ? st : cfgp_each(p, v, parse_target, u->targets);
}

/* ---- balancing ---------------------------------------------------------- */

static kapi_status
set_balance(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    /* in config_balance's order */
    static const char *const names[] = {"round_robin", "least_conn", "hash"};
    kapi_status st;
    size_t i;

    (void)f;
    if ((st = cfgp_get_enum(p, v, names, CFGP_NELEMS(names), &i)) == KAPI_OK)
        ((config_upstream *)dst)->balance = (config_balance)i;
    return st;
}

/* Letters, digits and '_', as the router allows in a "{name}". */
static bool
valid_param_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(cfgp_is_alpha(s[i]) || cfgp_is_digit(s[i]) || s[i] == '_'))
            return false;
    return true;
}

static bool
valid_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!cfgp_is_tchar(*s))
            return false;
    return true;
}

static kapi_status
set_hash_on(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_upstream *u = dst;
    const char *name = NULL;
    kapi_status st;
    char *s;

    (void)f;
    if ((st = cfgp_get_string(p, v, false, &s)) != KAPI_OK)
        return st;
    if (strcmp(s, "client_addr") == 0) {
        u->hash_on = CONFIG_HASH_CLIENT_ADDR;
    } else if (strncmp(s, "header:", 7) == 0) {
        u->hash_on = CONFIG_HASH_HEADER;
        name = s + 7;
        if (!valid_token(name))
            st = cfgp_fail(p, false, "invalid header name \"%s\" (expected a token)", name);
    } else if (strncmp(s, "param:", 6) == 0) {
        u->hash_on = CONFIG_HASH_PARAM;
        name = s + 6;
        if (!valid_param_name(name, strlen(name)))
            st = cfgp_fail(p, false,
                           "invalid parameter name \"%s\" (expected letters, digits and _)", name);
    } else {
        st = cfgp_fail(p, false, "expected \"client_addr\", \"header:NAME\" or \"param:NAME\"");
    }
    if (st == KAPI_OK && name && (u->hash_key = strdup(name)) == NULL)
        st = cfgp_nomem(p);
    free(s);
    return st;
}

static kapi_status
set_host_header(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    static const char *const names[] = {"target", "preserve"};
    kapi_status st;
    size_t i;

    (void)f;
    if ((st = cfgp_get_enum(p, v, names, CFGP_NELEMS(names), &i)) == KAPI_OK)
        ((config_upstream *)dst)->preserve_host = i == 1;
    return st;
}

/* ---- tls, health, passive, breaker -------------------------------------- */

static kapi_status
set_ca_file(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_upstream *u = dst;

    (void)f;
    return cfgp_get_path(p, v, &u->tls_ca_file);
}

static const struct cfgp_field tls_fields[] = {
    {.key = "verify", .fn = cfgp_set_bool, .off = offsetof(config_upstream, tls_verify)},
    {.key = "ca_file", .fn = set_ca_file},
};

static kapi_status
set_tls(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return cfgp_walk_object(p, v, tls_fields, CFGP_NELEMS(tls_fields), dst);
}

static kapi_status
set_health_path(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_health *h = dst;
    kapi_status st;

    (void)f;
    if ((st = cfgp_get_string(p, v, false, &h->path)) != KAPI_OK)
        return st;
    if (h->path[0] != '/')
        return cfgp_fail(p, false, "expected string starting with \"/\"");
    if (has_space_or_control(h->path))
        return cfgp_fail(p, false, "expected a path without spaces or control characters");
    return KAPI_OK;
}

/* Element I of "statuses", into STATUSES[I]. */
static kapi_status
get_status(struct cfgp *p, json_t *v, size_t i, void *statuses)
{
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;

    if (n < 100 || n > 599)
        return cfgp_fail(p, false, "expected integer between 100 and 599");
    ((int *)statuses)[i] = (int)n;
    return KAPI_OK;
}

static kapi_status
set_health_statuses(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_health *h = dst;
    kapi_status st;

    (void)f;
    st = cfgp_get_array(p, v, true, "non-empty array of status codes", sizeof *h->statuses,
                        (void **)&h->statuses, &h->nstatuses);
    return st != KAPI_OK ? st : cfgp_each(p, v, get_status, h->statuses);
}

static const struct cfgp_field health_fields[] = {
    {.key = "path", .fn = set_health_path, .required = true},
    CFGP_UINT(config_health, interval_ms, 100, 3600000),
    CFGP_UINT(config_health, timeout_ms, 1, 3600000),
    CFGP_UINT(config_health, healthy, 1, 100),
    CFGP_UINT(config_health, unhealthy, 1, 100),
    {.key = "statuses", .fn = set_health_statuses},
};

static kapi_status
set_health(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return cfgp_walk_object(p, v, health_fields, CFGP_NELEMS(health_fields),
                            &((config_upstream *)dst)->health);
}

static const struct cfgp_field passive_fields[] = {
    CFGP_UINT(config_passive, failures, 0, 1000),
    {.key = "count_5xx", .fn = cfgp_set_bool, .off = offsetof(config_passive, count_5xx)},
    CFGP_UINT(config_passive, recover_ms, 1, 3600000),
};

static kapi_status
set_passive(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    (void)f;
    return cfgp_walk_object(p, v, passive_fields, CFGP_NELEMS(passive_fields),
                            &((config_upstream *)dst)->passive);
}

#define COOLDOWN_MAX 3600000

static const struct cfgp_field breaker_fields[] = {
    CFGP_UINT(config_breaker, failures, 0, 1000),
    CFGP_UINT(config_breaker, ratio_percent, 0, 100),
    CFGP_UINT(config_breaker, window, 1, 1000),
    CFGP_UINT(config_breaker, min_requests, 1, 1000),
    CFGP_UINT(config_breaker, cooldown_ms, 1, COOLDOWN_MAX),
    CFGP_UINT(config_breaker, max_cooldown_ms, 1, COOLDOWN_MAX),
    CFGP_UINT(config_breaker, half_open_probes, 1, 1000),
};

static kapi_status
set_breaker(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config_breaker *b = &((config_upstream *)dst)->breaker;
    kapi_status st;
    size_t old;

    (void)f;
    if ((st = cfgp_walk_object(p, v, breaker_fields, CFGP_NELEMS(breaker_fields), b)) != KAPI_OK)
        return st;
    if (b->max_cooldown_ms >= b->cooldown_ms)
        return KAPI_OK;
    old = cfgp_path_key(p, "max_cooldown_ms");
    st = cfgp_fail(p, false, "expected integer between %u (cooldown_ms) and %d", b->cooldown_ms,
                   COOLDOWN_MAX);
    cfgp_path_pop(p, old);
    return st;
}

/* ---- one upstream ------------------------------------------------------- */

static const struct cfgp_field upstream_fields[] = {
    {.key = "targets", .fn = set_targets, .required = true},
    {.key = "balance", .fn = set_balance},
    {.key = "hash_on", .fn = set_hash_on},
    {.key = "host_header", .fn = set_host_header},
    CFGP_UINT(config_upstream, keepalive, 0, 10000),
    CFGP_UINT(config_upstream, max_connections, 0, 100000),
    CFGP_UINT(config_upstream, connect_timeout_ms, 1, 3600000),
    CFGP_UINT(config_upstream, try_timeout_ms, 1, 3600000),
    CFGP_UINT(config_upstream, timeout_ms, 1, 3600000),
    CFGP_UINT(config_upstream, retries, 0, 10),
    CFGP_UINT(config_upstream, retry_backoff_ms, 0, 60000),
    CFGP_UINT(config_upstream, max_response_bytes, 1, 1LL << 34),
    {.key = "tls", .fn = set_tls},
    {.key = "health", .fn = set_health},
    {.key = "passive", .fn = set_passive},
    {.key = "breaker", .fn = set_breaker},
};

/* Every default of docs/config.md; NAME, JSON_PATH and the position are
 * where the upstream is written (a key of "upstreams" or a route's target). */
static kapi_status
upstream_begin(struct cfgp *p, config_upstream *u, const char *name, const char *json_path,
               unsigned line, unsigned col)
{
    *u = (config_upstream){
        .balance = CONFIG_BALANCE_ROUND_ROBIN,
        .hash_on = CONFIG_HASH_CLIENT_ADDR,
        .keepalive = 32,
        .max_connections = 256,
        .connect_timeout_ms = 2000,
        .try_timeout_ms = 30000,
        .timeout_ms = 60000,
        .retries = 2,
        .retry_backoff_ms = 20,
        .max_response_bytes = (size_t)64 << 20,
        .tls_verify = true,
        .health = {.interval_ms = 5000, .timeout_ms = 2000, .healthy = 2, .unhealthy = 3},
        .passive = {.failures = 0, .count_5xx = true, .recover_ms = 10000},
        .breaker = {.failures = 5,
                    .ratio_percent = 0,
                    .window = 20,
                    .min_requests = 10,
                    .cooldown_ms = 1000,
                    .max_cooldown_ms = 30000,
                    .half_open_probes = 1},
        .line = line,
        .col = col,
    };
    if ((u->name = strdup(name)) == NULL || (u->json_path = strdup(json_path)) == NULL)
        return cfgp_nomem(p);
    return KAPI_OK;
}

static bool
valid_upstream_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > CFGP_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!(cfgp_is_alpha(*s) || cfgp_is_digit(*s) || *s == '_' || *s == '.' || *s == '-'))
            return false;
    return true;
}

/* The member NAME of "upstreams", appended to CFG's upstreams. */
static kapi_status
parse_upstream(struct cfgp *p, const char *name, json_t *v, void *cfg)
{
    config *c = cfg;
    /* counted first, so that config_free frees a half-filled one */
    config_upstream *u = &c->upstreams[c->nupstreams++];
    unsigned line, col;
    kapi_status st;
    size_t old;

    if (!valid_upstream_name(name))
        return cfgp_fail(
            p, true, "invalid upstream name \"%s\" (expected 1 to 64 of A-Z a-z 0-9 _ . -)", name);
    cfgp_position(p, &line, &col);
    if ((st = upstream_begin(p, u, name, p->path, line, col)) != KAPI_OK)
        return st;
    if ((st = cfgp_walk_object(p, v, upstream_fields, CFGP_NELEMS(upstream_fields), u)) != KAPI_OK)
        return st;
    if (u->balance == CONFIG_BALANCE_HASH || !json_object_get(v, "hash_on"))
        return KAPI_OK;
    old = cfgp_path_key(p, "hash_on");
    st = cfgp_fail(p, false, "allowed only with \"balance\": \"hash\"");
    cfgp_path_pop(p, old);
    return st;
}

kapi_status
config_upstream_walk(struct cfgp *p, json_t *v, void *dst, const struct cfgp_field *f)
{
    config *cfg = dst;
    kapi_status st;

    (void)f;
    if (!json_is_object(v))
        return cfgp_fail(p, false, "expected object");
    st = cfgp_alloc_array(p, json_object_size(v), sizeof *cfg->upstreams, (void **)&cfg->upstreams);
    return st != KAPI_OK ? st : cfgp_each_member(p, v, parse_upstream, cfg);
}

/* ---- a route's upstream target ------------------------------------------ */

kapi_status
config_upstream_set_ref(struct cfgp *p, json_t *v, config_route *r)
{
    kapi_status st;

    if (!p->upstream_refs) {
        st = cfgp_alloc_array(p, p->cfg->nroutes, sizeof *p->upstream_refs,
                              (void **)&p->upstream_refs);
        if (st != KAPI_OK)
            return st;
        p->nrefs = p->cfg->nroutes;
    }
    r->target_kind = CONFIG_TARGET_UPSTREAM;
    return cfgp_get_string(p, v, true, &p->upstream_refs[r - p->cfg->routes]);
}

kapi_status
config_upstream_set_url(struct cfgp *p, json_t *v, config_route *r)
{
    config_upstream *u, *grown = realloc(p->anons, (p->nanons + 1) * sizeof *p->anons);
    const config_module_ref *at = &r->target;
    kapi_status st;

    if (!grown)
        return cfgp_nomem(p);
    p->anons = grown;
    u = &p->anons[p->nanons++]; /* counted first, so that a failure frees it */
    if ((st = upstream_begin(p, u, at->json_path, at->json_path, at->line, at->col)) != KAPI_OK)
        return st;
    u->anonymous = true;
    if ((st = cfgp_alloc_array(p, 1, sizeof *u->targets, (void **)&u->targets)) != KAPI_OK)
        return st;
    u->ntargets = 1;
    if ((st = target_begin(p, u->targets)) != KAPI_OK ||
        (st = get_url(p, v, u->targets)) != KAPI_OK)
        return st;
    r->target_kind = CONFIG_TARGET_UPSTREAM;
    r->upstream = p->nanons - 1; /* config_upstream_link moves it behind the named ones */
    return KAPI_OK;
}

/* Whether PATTERN (a route's "path") has the segment "{NAME}" (N bytes). */
static bool
pattern_has_param(const char *pattern, const char *name, size_t n)
{
    for (const char *s = pattern; (s = strchr(s, '/')) != NULL;) {
        size_t len = strcspn(++s, "/");
        if (len == n + 2 && s[0] == '{' && s[n + 1] == '}' && memcmp(s + 1, name, n) == 0)
            return true;
        s += len;
    }
    return false;
}

kapi_status
config_upstream_set_path(struct cfgp *p, json_t *v, config_route *r)
{
    kapi_status st;
    char *s;

    if ((st = cfgp_get_string(p, v, false, &r->target_path)) != KAPI_OK)
        return st;
    s = r->target_path;
    if (s[0] != '/')
        return cfgp_fail(p, false, "expected string starting with \"/\"");
    if (strpbrk(s, "?#"))
        return cfgp_fail(p, false, "expected a path without \"?\" or \"#\"");
    if (has_space_or_control(s))
        return cfgp_fail(p, false, "expected a path without spaces or control characters");
    for (; (s = strpbrk(s, "{}")) != NULL; s++) {
        const char *close = *s == '{' ? strchr(s, '}') : NULL;
        if (!close || !valid_param_name(s + 1, (size_t)(close - s - 1)))
            return cfgp_fail(p, false,
                             "\"%s\" has a \"{\" or \"}\" that is not a parameter like \"{id}\" "
                             "(letters, digits and _)",
                             r->target_path);
        s = (char *)close;
    }
    return KAPI_OK;
}

kapi_status
config_upstream_check_route(struct cfgp *p, const config_route *r)
{
    const char *s = r->target_path;
    kapi_status st;
    size_t old;

    for (; s && (s = strchr(s, '{')) != NULL; s++) {
        size_t n = strcspn(s + 1, "}");
        if (pattern_has_param(r->path, s + 1, n))
            continue;
        old = cfgp_path_key(p, "target");
        cfgp_path_key(p, "path");
        st = cfgp_fail(p, false, "parameter \"{%.*s}\" is not in the route's path \"%s\"", (int)n,
                       s + 1, r->path);
        cfgp_path_pop(p, old);
        return st;
    }
    return KAPI_OK;
}

/* ---- linking ------------------------------------------------------------ */

/* Points the path at routes[ROUTE].target.upstream; returns what
 * cfgp_path_pop wants back. */
static size_t
path_to_ref(struct cfgp *p, size_t route)
{
    size_t old = cfgp_path_key(p, "routes");

    cfgp_path_index(p, route);
    cfgp_path_key(p, "target");
    cfgp_path_key(p, "upstream");
    return old;
}

/* *INDEX: the named upstream (the first NAMED of cfg->upstreams) called NAME. */
static kapi_status
find_upstream(struct cfgp *p, size_t route, const char *name, size_t named, size_t *index)
{
    struct cfgp_near near = {name, NULL, (size_t)-1};
    kapi_status st;
    size_t old;

    for (size_t k = 0; k < named; k++) {
        if (strcmp(p->cfg->upstreams[k].name, name) == 0) {
            *index = k;
            return KAPI_OK;
        }
        cfgp_near_offer(&near, p->cfg->upstreams[k].name);
    }
    old = path_to_ref(p, route);
    st = near.best ? cfgp_fail(p, false, "unknown upstream \"%s\" (did you mean \"%s\"?)", name,
                               near.best)
                   : cfgp_fail(p, false, "unknown upstream \"%s\"", name);
    cfgp_path_pop(p, old);
    return st;
}

kapi_status
config_upstream_link(struct cfgp *p)
{
    config *cfg = p->cfg;
    size_t named = cfg->nupstreams, old;
    kapi_status st;

    if (p->nanons) {
        config_upstream *all = realloc(cfg->upstreams, (named + p->nanons) * sizeof *all);
        if (!all)
            return cfgp_nomem(p);
        memcpy(all + named, p->anons, p->nanons * sizeof *all);
        cfg->upstreams = all;
        cfg->nupstreams += p->nanons;
        free(p->anons);
        p->anons = NULL;
        p->nanons = 0;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        config_route *r = &cfg->routes[i];
        const char *name = i < p->nrefs ? p->upstream_refs[i] : NULL;
        const config_upstream *u;

        if (r->target_kind != CONFIG_TARGET_UPSTREAM)
            continue;
        if (!name)
            r->upstream += named;
        else if ((st = find_upstream(p, i, name, named, &r->upstream)) != KAPI_OK)
            return st;
        u = &cfg->upstreams[r->upstream];
        if (u->hash_on != CONFIG_HASH_PARAM ||
            pattern_has_param(r->path, u->hash_key, strlen(u->hash_key)))
            continue;
        old = path_to_ref(p, i);
        st = cfgp_fail(p, false,
                       "upstream \"%s\" hashes on param:%s, but the route's path \"%s\" has no "
                       "\"{%s}\"",
                       u->name, u->hash_key, r->path, u->hash_key);
        cfgp_path_pop(p, old);
        return st;
    }
    return KAPI_OK;
}

void
config_upstream_discard(struct cfgp *p)
{
    for (size_t i = 0; i < p->nanons; i++)
        config_upstream_free(&p->anons[i]);
    free(p->anons);
    p->anons = NULL;
    p->nanons = 0;
    for (size_t i = 0; i < p->nrefs; i++)
        free(p->upstream_refs[i]);
    free(p->upstream_refs);
    p->upstream_refs = NULL;
    p->nrefs = 0;
}

void
config_upstream_free(config_upstream *u)
{
    for (size_t i = 0; i < u->ntargets; i++) {
        free(u->targets[i].url);
        free(u->targets[i].host);
        free(u->targets[i].base_path);
        free(u->targets[i].json_path);
    }
    free(u->targets);
    free(u->name);
    free(u->hash_key);
    free(u->tls_ca_file);
    free(u->health.path);
    free(u->health.statuses);
    free(u->json_path);
}
