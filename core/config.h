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

typedef struct config_route {
    char *name;     /* "name", default "routes[i]" */
    char **methods; /* upper-case; nmethods 0 means any method */
    size_t nmethods;
    char *host;        /* lower-case host to match, NULL for any */
    char *path;        /* pattern: "/exact", "/users/{id}", or "/prefix/" then '*' */
    bool strip_prefix; /* strip the pattern's literal prefix before the target sees the path */
    config_module_ref *plugins;
    size_t nplugins;
    config_module_ref target; /* "target": {"function": NAME, "config": {...}} */
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
