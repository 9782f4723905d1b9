/* harness.h -- drives the real kapi binary for integration tests: writes a
 * config into a private temp dir, starts `kapi run` on an ephemeral
 * loopback port, waits until it listens, sends real HTTP requests with
 * libcurl, signals it (SIGHUP, SIGTERM) and reads its log.
 *
 * Paths come from the environment ctest sets: KAPI_BIN, KAPI_MODULE_DIR
 * (example functions) and KAPI_TEST_MODULE_DIR (test modules). It asserts
 * nothing itself: tests do, on what it returns. */
#ifndef KAPI_TEST_HARNESS_H
#define KAPI_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct kh_server {
    pid_t pid;
    char dir[256];    /* private temp dir: config, log, module copies */
    char config[320]; /* config file path */
    char log[320];    /* kapi's stderr (diagnostics and access log) */
    unsigned port;
    const char *addr; /* host part of request URLs; NULL means 127.0.0.1 */
} kh_server;

typedef struct kh_resp {
    long status;
    char *body;
    size_t body_len;
    char *headers; /* raw header block of the final response */
    double total_s;
} kh_resp;

/* Creates S's temp dir and writes CONFIG_JSON into it after replacing
 * @FUNCS@ with $KAPI_MODULE_DIR, @TMODS@ with $KAPI_TEST_MODULE_DIR and
 * @DIR@ with the temp dir. Returns 0 or -1. */
int kh_prepare(kh_server *s, const char *config_json);
/* Rewrites the config (same substitutions) for a later reload. */
int kh_write_config(kh_server *s, const char *config_json);
/* Starts kapi on the prepared config and waits (up to 10 s) until it logs
 * its listening port. Returns 0 or -1 (the log is printed on failure). */
int kh_start(kh_server *s);
/* kh_prepare + kh_start. */
int kh_launch(kh_server *s, const char *config_json);

/* Sends METHOD PATH (sent as is: no dot-segment squashing) with optional
 * NULL-terminated HEADERS ("Name: value") and BODY. Returns 0 when an HTTP
 * response arrived (any status), -1 otherwise. Free OUT with kh_resp_free. */
int kh_request(kh_server *s, const char *method, const char *path, const char *const *headers,
               const char *body, size_t body_len, kh_resp *out);
int kh_get(kh_server *s, const char *path, kh_resp *out);
void kh_resp_free(kh_resp *r);
/* The value of header NAME in R (case-insensitive), copied into BUF;
 * NULL when absent. */
const char *kh_header(const kh_resp *r, const char *name, char *buf, size_t len);

/* Sends SIGHUP and waits for the next "is serving" or "reload failed" log
 * line. Returns 1 when a new generation serves, 0 when the reload failed,
 * -1 on timeout. */
int kh_reload(kh_server *s);
/* True when the log contains NEEDLE. */
bool kh_log_has(kh_server *s, const char *needle);
/* Waits up to TIMEOUT_MS for NEEDLE to appear in the log. */
bool kh_wait_log(kh_server *s, const char *needle, int timeout_ms);
/* Sends SIG and waits up to TIMEOUT_MS for exit. Returns the exit status,
 * 128+signal if killed by one, or -1 on timeout (then kills it). */
int kh_signal_wait(kh_server *s, int sig, int timeout_ms);
/* Stops kapi (SIGTERM, SIGKILL after 5 s) and removes the temp dir.
 * Returns the exit status as kh_signal_wait. */
int kh_stop(kh_server *s);

/* The port kapi logged for listener ADDR ("127.0.0.1", "[::1]"); 0 if none. */
unsigned kh_log_port(kh_server *s, const char *addr);

/* ---- test origins (tests/origin, $KAPI_ORIGIN_BIN) ---- */

typedef struct kh_origin {
    pid_t pid;
    unsigned port;
    char name[64];
} kh_origin;

/* Starts kapi_test_origin named NAME on an ephemeral loopback port with
 * the extra NULL-terminated ARGS (e.g. "--keepalive-ms", "200", NULL; may
 * be NULL) and waits (up to 10 s) for its listening line. It dies with the
 * test process and after 300 s at most. Returns 0 or -1. */
int kh_origin_start(kh_origin *o, const char *name, const char *const *args);
/* Stops it (SIGTERM, then SIGKILL) and reaps it. */
void kh_origin_stop(kh_origin *o);
/* GET PATH straight from the origin (not through kapi), e.g. "/stats". */
int kh_origin_get(kh_origin *o, const char *path, kh_resp *out);
/* The integer member KEY of the origin's /stats JSON, -1 on failure. */
long kh_origin_stat(kh_origin *o, const char *key);
/* Resets its /stats counters. */
void kh_origin_reset_stats(kh_origin *o);

/* Replaces every "@NAME@" in TEMPLATE with VALUE into a malloc'd string
 * (caller frees). For origin ports in configs: kh_subst(cfg, "P1", "4711"). */
char *kh_subst(const char *tmpl, const char *name, const char *value);

/* One kapi for a whole cmocka test group: set kh_group_config, then pass
 * kh_group_setup and kh_group_teardown to cmocka_run_group_tests. Teardown
 * fails the group when kapi did not exit 0 on SIGTERM. */
extern kh_server kh_group;
extern const char *kh_group_config;
int kh_group_setup(void **state);
int kh_group_teardown(void **state);

/* Copies file FROM to TO (mode 0755), replacing TO atomically. */
int kh_copy(const char *from, const char *to);
/* "$KAPI_TEST_MODULE_DIR/NAME" into BUF. */
const char *kh_test_module(const char *name, char *buf, size_t len);

#endif /* KAPI_TEST_HARNESS_H */
