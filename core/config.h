/* config.h -- the parsed, validated kapi configuration (one JSON file).
 *
 * config_load reads the file, substitutes ${ENV} in string values, checks
 * every key and type, and yields a plain C struct; every error names
 * file:line:col, the JSON path and what was expected. It does not load
 * modules nor build routes (generation.c does, from this struct). */
#ifndef KAPI_CONFIG_H
#define KAPI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kapi/types.h>

/* A module used by the config: a plugin in a chain or a function target. */
typedef struct config_module_ref {
    char *module;      /* module name; the loader looks for <dir>/<module>.so */
    char *config_json; /* the instance's config object as compact JSON, "{}" when absent */
    char *json_path;   /* where it sits, e.g. "routes[2].plugins[0]" */
    unsigned line;     /* position of its "config" value (or of the ref when absent) */
    unsigned col;
} config_module_ref;

/* ---- upstreams (docs/config.md, "upstreams") ---- */

typedef enum config_balance {
    CONFIG_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round robin (default) */
    CONFIG_BALANCE_LEAST_CONN,      /* fewest requests in flight, weighted, ties round robin */
    CONFIG_BALANCE_HASH,            /* weighted rendezvous hash of hash_on's value */
} config_balance;

typedef enum config_hash_on {
    CONFIG_HASH_CLIENT_ADDR = 0, /* "client_addr" */
    CONFIG_HASH_HEADER,          /* "header:NAME" (absent header hashes as "") */
    CONFIG_HASH_PARAM,           /* "param:NAME", a path parameter of the route */
} config_hash_on;

/* One backend of an upstream: "http://host:port/base" or "https://…". */
typedef struct config_target {
    char *url;       /* as written */
    bool tls;        /* https:// */
    char *host;      /* lower-case host name or numeric address (no brackets) */
    uint16_t port;   /* explicit, or 80 / 443 */
    char *base_path; /* the URL's path without a trailing '/', "" when none */
    unsigned weight; /* 1..1000, default 1 */
    char *json_path; /* "upstreams.api.targets[1]" */
    unsigned line, col;
} config_target;

typedef struct config_health {
    char *path;           /* active checks: GET PATH on every target; NULL: none */
    unsigned interval_ms; /* default 5000 */
    unsigned timeout_ms;  /* default 2000 */
    unsigned healthy;     /* consecutive passes that mark a target healthy; default 2 */
    unsigned unhealthy;   /* consecutive fails that mark it unhealthy; default 3 */
    int *statuses;        /* statuses that pass; default 200..399 when nstatuses is 0 */
    size_t nstatuses;
} config_health;

typedef struct config_passive {
    unsigned failures;   /* consecutive failed live requests that mark a target unhealthy; 0: off
                            (default 0) */
    bool count_5xx;      /* a 5xx answer counts as a failure; default true */
    unsigned recover_ms; /* without active checks, an unhealthy target gets traffic again after
                            this; default 10000 */
} config_passive;

typedef struct config_breaker {
    unsigned failures;      /* consecutive failures that open it; 0: this trigger off
                               (default 5); both triggers 0: the breaker is off */
    unsigned ratio_percent; /* also open when failures/requests over the window >= this; 0: off
                               (default 0) */
    unsigned window;        /* outcomes the ratio looks at; default 20 */
    unsigned min_requests;  /* outcomes needed in the window before the ratio applies; default 10 */
    unsigned cooldown_ms; /* first open period; doubles on each trip from half-open; default 1000 */
    unsigned max_cooldown_ms;  /* cap of the doubling; default 30000 */
    unsigned half_open_probes; /* requests let through while half-open; default 1 */
} config_breaker;

typedef struct config_upstream {
    char *name;     /* the key in "upstreams"; for a route's "url" target, "routes[i].target" */
    bool anonymous; /* made from a route's "url" target */
    config_target *targets;
    size_t ntargets;
    config_balance balance;
    config_hash_on hash_on;
    char *hash_key;     /* header or parameter name for CONFIG_HASH_HEADER/PARAM, else NULL */
    bool preserve_host; /* "host_header": "preserve" sends the client's Host; "target" (default) the
                           target's */
    unsigned keepalive; /* idle connections kept per target per worker; default 32 */
    unsigned max_connections;    /* open connections per target per worker, requests beyond wait;
                                    default 256 */
    unsigned connect_timeout_ms; /* default 2000 */
    unsigned try_timeout_ms;     /* one try: connect, send, whole response; default 30000 */
    unsigned timeout_ms;         /* all tries together; default 60000 */
    unsigned retries;            /* further tries after the first; default 2 */
    unsigned retry_backoff_ms;   /* before the n-th retry n * this; default 20 */
    size_t max_response_bytes;   /* response body limit, 502 above; default 64 MiB */
    bool tls_verify;             /* "tls.verify": check https targets' certificates; default true */
    char *tls_ca_file;           /* "tls.ca_file": CA bundle (resolved path), NULL: the system's */
    config_health health;
    config_passive passive;
    config_breaker breaker;
    char *json_path;
    unsigned line, col;
} config_upstream;

typedef enum config_target_kind {
    CONFIG_TARGET_FUNCTION = 0, /* "target": {"function": …} */
    CONFIG_TARGET_UPSTREAM,     /* "target": {"upstream": NAME} or {"url": URL} */
} config_target_kind;

typedef struct config_route {
    char *name;     /* "name", default "routes[i]" */
    char **methods; /* upper-case; nmethods 0 means any method */
    size_t nmethods;
    char *host;        /* lower-case host to match, NULL for any */
    char *path;        /* pattern: "/exact", "/users/{id}", or "/prefix/" then '*' */
    bool strip_prefix; /* strip the pattern's literal prefix before the target sees the path */
    config_module_ref *plugins;
    size_t nplugins;
    config_target_kind target_kind;
    config_module_ref target; /* "target": {"function": NAME, "config": {...}}; for an
                                 upstream target module and config_json are NULL, json_path
                                 and the position still name the target object */
    size_t upstream;          /* CONFIG_TARGET_UPSTREAM: index into config.upstreams */
    char *target_path;        /* "path" template ("/v2/{id}"), NULL: the request's path */
    char *json_path;          /* "routes[i]" */
    unsigned line, col;       /* position of the route object */
} config_route;

typedef struct config_listener {
    char *host;    /* numeric address: "127.0.0.1", "::1", "0.0.0.0" */
    uint16_t port; /* 0 picks an ephemeral port */
} config_listener;

typedef struct config_limits {
    size_t max_body_bytes;         /* 413 above; default 1 MiB */
    size_t max_header_bytes;       /* 431 above; default 16 KiB */
    unsigned max_connections;      /* 503 above; default 1024 */
    unsigned connection_timeout_s; /* idle connection cut; default 30 */
    unsigned pause_timeout_ms;     /* default PAUSE deadline, 504; default 30000 */
    unsigned shutdown_timeout_ms;  /* drain deadline on SIGTERM; default 10000 */
} config_limits;

typedef struct config_store {
    size_t map_bytes;          /* LMDB map size; default 256 MiB, at least 1 MiB */
    bool durable;              /* sync every commit; default false (periodic sync) */
    unsigned sync_interval_ms; /* periodic sync when not durable; default 1000 */
} config_store;

typedef struct config {
    char *file;     /* the path as given to config_load */
    char *base_dir; /* directory of the file: relative paths below resolve against it */
    config_listener *listeners;
    size_t nlisteners;
    unsigned threads;         /* 0: one per core */
    bool watch;               /* "watch": reload when the config or a module changes */
    kapi_log_level log_level; /* "log.level": debug|info|warn|error, default info */
    char *access_log; /* "log.access": "stderr" (default), "off", or a file path (resolved) */
    config_limits limits;
    char *data_dir;     /* resolved; default "<base_dir>/var/kapi" */
    config_store store; /* "store": the LMDB environment in data_dir */
    char **module_dirs; /* resolved; at least one */
    size_t nmodule_dirs;
    config_module_ref *plugins; /* global plugins, run before each route's own */
    size_t nplugins;
    config_route *routes;
    size_t nroutes;
    config_upstream *upstreams; /* named ones in file order, then one per "url" target */
    size_t nupstreams;
} config;

/* Reads and validates FILE. On success *OUT is a config the caller frees with
 * config_free. On failure returns KAPI_ECONFIG (or KAPI_EIO/KAPI_ENOMEM) and
 * writes one line into ERR (ERRLEN bytes, NUL-terminated), e.g.
 * "kapi.json:12:7: routes[2].plugins[0].module: expected string". */
kapi_status config_load(const char *file, config **out, char *err, size_t errlen);

/* The same from TEXT (LEN bytes); FILE names it in messages and its
 * directory is the base for relative paths. */
kapi_status config_parse(const char *file, const char *text, size_t len, config **out, char *err,
                         size_t errlen);

/* Frees CFG and everything it owns; NULL is a no-op. */
void config_free(config *cfg);

#endif /* KAPI_CONFIG_H */
