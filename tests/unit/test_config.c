/* test_config.c -- unit tests of core/config.c and core/jsonpos.c.
 *
 * A table of bad configs with their exact messages (each loaded both from a
 * file in a temp dir and from memory), then good configs checked field by
 * field: values, defaults, path resolution, ${ENV} substitution, method and
 * host case, module references and their positions. It does not load
 * modules nor build routes (those are generation.c's tests).
 *
 * Configs are written with ' for " to keep the table readable; the tests
 * never need a literal ' in JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "jsonpos.h"

static char tmpdir[PATH_MAX];

/* TEXT with every ' turned into ", in a buffer the caller frees. */
static char *
json_of(const char *text)
{
    char *s = strdup(text);
    assert_non_null(s);
    for (char *c = s; *c; c++)
        if (*c == '\'')
            *c = '"';
    return s;
}

/* Writes TEXT (quotes converted) to tmpdir/NAME; returns the path (static). */
static const char *
write_config(const char *name, const char *text)
{
    static char path[PATH_MAX + 64];
    char *s = json_of(text);
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(s, 1, strlen(s), f), strlen(s));
    assert_int_equal(fclose(f), 0);
    free(s);
    return path;
}

/* Parses TEXT from memory under FILE and expects success. */
static config *
parse_ok(const char *file, const char *text)
{
    char err[512], *s = json_of(text);
    config *cfg = NULL;
    kapi_status st = config_parse(file, s, strlen(s), &cfg, err, sizeof err);

    if (st != KAPI_OK)
        fail_msg("unexpected error: %s", err);
    assert_non_null(cfg);
    free(s);
    return cfg;
}

static int
setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s/kapi-test-config-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    unsetenv("KAPI_TEST_UNSET");
    return 0;
}

static int
teardown(void **state)
{
    static const char *const files[] = {"kapi.json", "big.json"};
    char path[PATH_MAX + 64];

    (void)state;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

/* ---- bad configs ------------------------------------------------------- */

#define A10 "aaaaaaaaaa"
#define ROUTE_F "'target': {'function': 'f'}"
/* the required root keys, for errors found once the whole file is walked */
#define BASE "'listen': ['127.0.0.1:1'], 'module_dirs': ['m'], "
#define FORMS "expected exactly one of \"function\", \"upstream\", \"url\""
#define TARGETS_EXPECTED                                                                           \
    "expected non-empty array of targets (\"URL\" or {\"url\": URL, \"weight\": N})"
#define HOST_EXPECTED                                                                              \
    "is not a host name (letters, digits, \"-\", \".\"), an IPv4 address or an IPv6 address in "   \
    "brackets"
/* an upstream "u" with one target and X */
#define UP(x) "{'upstreams': {'u': {'targets': ['http://h'], " x "}}}"
/* an upstream "u" whose one target is the URL X, at column 34 */
#define URL(x) "{'upstreams': {'u': {'targets': ['" x "']}}}"
#define T8                                                                                         \
    "'http://a', 'http://b', 'http://c', 'http://d', 'http://e', 'http://f', 'http://g', "         \
    "'http://h'"
#define TEMPLATE(path, tmpl)                                                                       \
    "{'routes': [{'path': '" path "', 'target': {'upstream': 'u', 'path': '" tmpl "'}}]}"

struct bad {
    const char *json;
    const char *msg; /* after "kapi.json:" */
};

static const struct bad bad_configs[] = {
    /* syntax, as jansson reports it */
    {"{\n  'listen': x\n}", "2:13: invalid JSON: invalid token near 'x'"},
    {"{'a': 1, 'a': 2}", "1:12: invalid JSON: duplicate object key near '\"a\"'"},
    {"", "1:0: invalid JSON: '[' or '{' expected near end of file"},
    /* jansson quotes a raw newline: the message stays one line (found by fuzz_config) */
    {"\n\n'\\\ne:ve:'", "4:0: invalid JSON: invalid escape near '\"\\ '"},
    /* the root and required keys */
    {"[1]", "1:1: (root): expected object"},
    {"{}", "1:1: (root): missing required key \"listen\""},
    {"{'listen': ['127.0.0.1:1']}", "1:1: (root): missing required key \"module_dirs\""},
    {"{'listen': ['127.0.0.1:1'], 'module_dirs': ['m']}",
     "1:1: (root): missing required key \"routes\""},
    {"{'frobnicate': 1}", "1:2: frobnicate: unknown key"},
    /* a control character quoted from the file stays out of the one line (found by fuzz_config) */
    {"{'fro\\nb': 1}", "1:2: fro b: unknown key"},
    {"{'rutes': []}", "1:2: rutes: unknown key (did you mean \"routes\"?)"},
    {"{\n  'listen': ['127.0.0.1:8080'],\n  'module_dirs': ['m'],\n  'limits': {\n"
     "    'max_body': 1\n  },\n  'routes': []\n}",
     "5:5: limits.max_body: unknown key (did you mean \"max_body_bytes\"?)"},
    /* listen */
    {"{'listen': '127.0.0.1:80'}",
     "1:12: listen: expected non-empty array of \"host:port\" strings"},
    {"{'listen': []}", "1:12: listen: expected non-empty array of \"host:port\" strings"},
    {"{'listen': [80]}", "1:13: listen[0]: expected string"},
    {"{'listen': ['localhost']}",
     "1:13: listen[0]: expected \"host:port\" with a numeric host, e.g. \"127.0.0.1:8080\" or "
     "\"[::1]:8080\""},
    {"{'listen': ['localhost:80']}",
     "1:13: listen[0]: host \"localhost\" is not a numeric IPv4 address"},
    {"{'listen': ['::1:80']}",
     "1:13: listen[0]: an IPv6 address must be in brackets, e.g. \"[::1]:8080\""},
    {"{'listen': ['[::g]:80']}", "1:13: listen[0]: host \"::g\" is not a numeric IPv6 address"},
    {"{'listen': ['[::1]80']}",
     "1:13: listen[0]: expected \"host:port\" with a numeric host, e.g. \"127.0.0.1:8080\" or "
     "\"[::1]:8080\""},
    {"{'listen': ['127.0.0.1:65536']}",
     "1:13: listen[0]: port \"65536\" is not an integer between 0 and 65535"},
    {"{'listen': ['127.0.0.1:8o']}",
     "1:13: listen[0]: port \"8o\" is not an integer between 0 and 65535"},
    {"{'listen': ['127.0.0.1:1', '10.0.0.1:']}",
     "1:28: listen[1]: port \"\" is not an integer between 0 and 65535"},
    /* scalars */
    {"{'threads': 257}", "1:13: threads: expected integer between 0 and 256"},
    {"{'threads': '4'}", "1:13: threads: expected integer between 0 and 256"},
    {"{'threads': 1.5}", "1:13: threads: expected integer between 0 and 256"},
    {"{'log': 'info'}", "1:9: log: expected object"},
    {"{'log': {'level': 'verbose'}}",
     "1:19: log.level: expected one of \"debug\", \"info\", \"warn\", \"error\""},
    {"{'log': {'access': ''}}", "1:20: log.access: expected \"stderr\", \"off\" or a file path"},
    {"{'log': {'levle': 'info'}}", "1:10: log.levle: unknown key (did you mean \"level\"?)"},
    {"{'limits': {'max_header_bytes': 512}}",
     "1:33: limits.max_header_bytes: expected integer between 1024 and 1048576"},
    {"{'limits': {'max_body_bytes': 1073741825}}",
     "1:31: limits.max_body_bytes: expected integer between 1 and 1073741824"},
    {"{'limits': {'shutdown_timeout_ms': -1}}",
     "1:36: limits.shutdown_timeout_ms: expected integer between 0 and 3600000"},
    {"{'data_dir': 5}", "1:14: data_dir: expected non-empty string"},
    {"{'module_dirs': []}", "1:17: module_dirs: expected non-empty array of directory paths"},
    {"{'module_dirs': ['']}", "1:18: module_dirs[0]: expected non-empty string"},
    /* module references */
    {"{'plugins': {}}", "1:13: plugins: expected array"},
    {"{'plugins': [{'config': {}}]}", "1:14: plugins[0]: missing required key \"module\""},
    {"{'plugins': [{'module': 5}]}", "1:25: plugins[0].module: expected string"},
    {"{'plugins': [{'module': '../evil'}]}",
     "1:25: plugins[0].module: invalid module name \"../evil\" (expected 1 to 64 of A-Z a-z 0-9 _ "
     ". - and no \"..\")"},
    {"{'plugins': [{'module': 'a/b'}]}",
     "1:25: plugins[0].module: invalid module name \"a/b\" (expected 1 to 64 of A-Z a-z 0-9 _ . - "
     "and no \"..\")"},
    {"{'plugins': [{'module': '" A10 A10 A10 A10 A10 A10 "aaaaa'}]}",
     "1:25: plugins[0].module: invalid module name \"" A10 A10 A10 A10 A10 A10
     "aaaaa\" (expected 1 to 64 of A-Z a-z 0-9 _ . - and no \"..\")"},
    {"{'plugins': [{'modul': 'x'}]}",
     "1:15: plugins[0].modul: unknown key (did you mean \"module\"?)"},
    /* routes */
    {"{'routes': {}}", "1:12: routes: expected array"},
    {"{'routes': [5]}", "1:13: routes[0]: expected object"},
    {"{'routes': [{" ROUTE_F "}]}", "1:13: routes[0]: missing required key \"path\""},
    {"{'routes': [{'path': '/'}]}", "1:13: routes[0]: missing required key \"target\""},
    {"{'routes': [{'path': 'hello'}]}",
     "1:22: routes[0].path: expected string starting with \"/\""},
    {"{'routes': [{'name': 5}]}", "1:22: routes[0].name: expected non-empty string"},
    {"{'routes': [{'methods': []}]}",
     "1:25: routes[0].methods: expected non-empty array of method names"},
    {"{'routes': [{'methods': ['GET', 'GE T']}]}",
     "1:33: routes[0].methods[1]: invalid method \"GE T\" (expected a token such as \"GET\")"},
    {"{'routes': [{'host': ''}]}", "1:22: routes[0].host: expected non-empty string"},
    {"{'routes': [{'strip_prefix': 'yes'}]}", "1:30: routes[0].strip_prefix: expected boolean"},
    {"{'routes': [{'methds': ['GET']}]}",
     "1:14: routes[0].methds: unknown key (did you mean \"methods\"?)"},
    {"{'routes': [{'target': 'hello'}]}", "1:24: routes[0].target: expected object"},
    {"{'routes': [{'target': {}}]}", "1:24: routes[0].target: " FORMS},
    {"{'routes': [{'target': {'module': 'f'}}]}", "1:25: routes[0].target.module: unknown key"},
    {"{'routes': [{'target': {'function': ''}}]}",
     "1:37: routes[0].target.function: invalid module name \"\" (expected 1 to 64 of A-Z a-z 0-9 _ "
     ". - and no \"..\")"},
    {"{'routes': [{'path': '/a', " ROUTE_F "}, {'path': '/b', 'plugins': [{'module': 'p', "
     "'config': []}], " ROUTE_F "}]}",
     "1:111: routes[1].plugins[0].config: expected object"},
    {"{'routes': [{'name': 'a', 'path': '/', " ROUTE_F "}, {'name': 'a', 'path': '/', " ROUTE_F
     "}]}",
     "1:79: routes[1].name: duplicate route name \"a\" (also routes[0])"},
    {"{'routes': [{'name': 'routes[1]', 'path': '/', " ROUTE_F "}, {'path': '/', " ROUTE_F "}]}",
     "1:78: routes[1]: duplicate route name \"routes[1]\" (also routes[0])"},
    /* upstreams */
    {"{'upstreams': []}", "1:15: upstreams: expected object"},
    {"{'upstrems': {}}", "1:2: upstrems: unknown key (did you mean \"upstreams\"?)"},
    {"{'upstreams': {'a b': {}}}",
     "1:16: upstreams.a b: invalid upstream name \"a b\" (expected 1 to 64 of A-Z a-z 0-9 _ . -)"},
    {"{'upstreams': {'" A10 A10 A10 A10 A10 A10 "aaaaa': {}}}",
     "1:16: upstreams." A10 A10 A10 A10 A10 A10
     "aaaaa: invalid upstream name \"" A10 A10 A10 A10 A10 A10
     "aaaaa\" (expected 1 to 64 of A-Z a-z 0-9 _ . -)"},
    {"{'upstreams': {'a\\tb': {}}}",
     "1:16: upstreams.a b: invalid upstream name \"a b\" (expected 1 to 64 of A-Z a-z 0-9 _ . -)"},
    {"{'upstreams': {'api': 5}}", "1:23: upstreams.api: expected object"},
    {"{'upstreams': {'api': {}}}", "1:23: upstreams.api: missing required key \"targets\""},
    {"{'upstreams': {'api': {'targets': 'http://h'}}}",
     "1:35: upstreams.api.targets: " TARGETS_EXPECTED},
    {"{'upstreams': {'api': {'targets': []}}}", "1:35: upstreams.api.targets: " TARGETS_EXPECTED},
    {"{'upstreams': {'api': {'targets': [" T8 ", " T8 ", " T8 ", " T8 ", " T8 ", " T8 ", " T8
     ", " T8 ", 'http://i']}}}",
     "1:35: upstreams.api.targets: expected at most 64 targets"},
    {"{'upstreams': {'api': {'targets': [5]}}}",
     "1:36: upstreams.api.targets[0]: expected a URL string or an object {\"url\": URL, "
     "\"weight\": N}"},
    {"{'upstreams': {'api': {'targets': ['http://a', {'weight': 2}]}}}",
     "1:48: upstreams.api.targets[1]: missing required key \"url\""},
    {"{'upstreams': {'api': {'targets': [{'url': 'http://a', 'weight': 0}]}}}",
     "1:66: upstreams.api.targets[0].weight: expected integer between 1 and 1000"},
    {"{'upstreams': {'api': {'targets': [{'url': 'http://a', 'weight': 1001}]}}}",
     "1:66: upstreams.api.targets[0].weight: expected integer between 1 and 1000"},
    {"{'upstreams': {'api': {'targets': [{'url': 'http://a', 'wieght': 2}]}}}",
     "1:56: upstreams.api.targets[0].wieght: unknown key (did you mean \"weight\"?)"},
    {"{'upstreams': {'api': {'targets': [{'url': 5}]}}}",
     "1:44: upstreams.api.targets[0].url: expected non-empty string"},
    {UP("'retires': 3"), "1:47: upstreams.u.retires: unknown key (did you mean \"retries\"?)"},
    /* target URLs */
    {URL("ftp://h"),
     "1:34: upstreams.u.targets[0]: expected a URL starting with \"http://\" or \"https://\""},
    {URL("h:80"),
     "1:34: upstreams.u.targets[0]: expected a URL starting with \"http://\" or \"https://\""},
    {URL("http://h/a?b=1"),
     "1:34: upstreams.u.targets[0]: URL must not have a query (\"?\") or a fragment (\"#\")"},
    {URL("http://h/#top"),
     "1:34: upstreams.u.targets[0]: URL must not have a query (\"?\") or a fragment (\"#\")"},
    {URL("http://user:pw@h/"),
     "1:34: upstreams.u.targets[0]: URL must not have userinfo (\"user@\")"},
    {URL("http:///x"), "1:34: upstreams.u.targets[0]: URL has no host"},
    {URL("https://:443"), "1:34: upstreams.u.targets[0]: URL has no host"},
    {URL("http://[::g]:80"),
     "1:34: upstreams.u.targets[0]: host \"[::g]\" is not a numeric IPv6 address"},
    {URL("http://[::1/x"),
     "1:34: upstreams.u.targets[0]: host \"[::1\" is not a numeric IPv6 address"},
    {URL("http://[::1]x/"),
     "1:34: upstreams.u.targets[0]: expected \":PORT\" or \"/\" after \"]\""},
    {URL("http://1.2.3.999/"),
     "1:34: upstreams.u.targets[0]: host \"1.2.3.999\" is not a numeric IPv4 address"},
    {URL("http://123/"),
     "1:34: upstreams.u.targets[0]: host \"123\" is not a numeric IPv4 address"},
    {URL("http://a_b/"), "1:34: upstreams.u.targets[0]: host \"a_b\" " HOST_EXPECTED},
    {URL("http://a..b/"), "1:34: upstreams.u.targets[0]: host \"a..b\" " HOST_EXPECTED},
    {URL("http://::1/"), "1:34: upstreams.u.targets[0]: URL has no host"},
    {URL("http://h:0/"),
     "1:34: upstreams.u.targets[0]: port \"0\" is not an integer between 1 and 65535"},
    {URL("http://h:65536"),
     "1:34: upstreams.u.targets[0]: port \"65536\" is not an integer between 1 and 65535"},
    {URL("http://h:/"),
     "1:34: upstreams.u.targets[0]: port \"\" is not an integer between 1 and 65535"},
    {URL("http://[::1]:8o"),
     "1:34: upstreams.u.targets[0]: port \"8o\" is not an integer between 1 and 65535"},
    {URL("http://h/a b"),
     "1:34: upstreams.u.targets[0]: URL path must not have spaces or control characters"},
    {URL("${KAPI_TEST_UNSET}"),
     "1:34: upstreams.u.targets[0]: environment variable KAPI_TEST_UNSET is not set"},
    /* balancing and the scalars */
    {UP("'balance': 'random'"),
     "1:58: upstreams.u.balance: expected one of \"round_robin\", \"least_conn\", \"hash\""},
    {UP("'balance': 'hash', 'hash_on': 'cookie'"),
     "1:77: upstreams.u.hash_on: expected \"client_addr\", \"header:NAME\" or \"param:NAME\""},
    {UP("'balance': 'hash', 'hash_on': 5"), "1:77: upstreams.u.hash_on: expected string"},
    {UP("'balance': 'hash', 'hash_on': 'header:'"),
     "1:77: upstreams.u.hash_on: invalid header name \"\" (expected a token)"},
    {UP("'balance': 'hash', 'hash_on': 'header:X User'"),
     "1:77: upstreams.u.hash_on: invalid header name \"X User\" (expected a token)"},
    {UP("'balance': 'hash', 'hash_on': 'param:user-id'"),
     "1:77: upstreams.u.hash_on: invalid parameter name \"user-id\" (expected letters, digits and "
     "_)"},
    {UP("'hash_on': 'client_addr'"),
     "1:58: upstreams.u.hash_on: allowed only with \"balance\": \"hash\""},
    {UP("'hash_on': 'header:X-User', 'balance': 'least_conn'"),
     "1:58: upstreams.u.hash_on: allowed only with \"balance\": \"hash\""},
    {UP("'host_header': 'client'"),
     "1:62: upstreams.u.host_header: expected one of \"target\", \"preserve\""},
    {UP("'keepalive': 10001"), "1:60: upstreams.u.keepalive: expected integer between 0 and 10000"},
    {UP("'max_connections': -1"),
     "1:66: upstreams.u.max_connections: expected integer between 0 and 100000"},
    {UP("'connect_timeout_ms': 0"),
     "1:69: upstreams.u.connect_timeout_ms: expected integer between 1 and 3600000"},
    {UP("'try_timeout_ms': 3600001"),
     "1:65: upstreams.u.try_timeout_ms: expected integer between 1 and 3600000"},
    {UP("'timeout_ms': '5'"),
     "1:61: upstreams.u.timeout_ms: expected integer between 1 and 3600000"},
    {UP("'retries': 11"), "1:58: upstreams.u.retries: expected integer between 0 and 10"},
    {UP("'retry_backoff_ms': 60001"),
     "1:67: upstreams.u.retry_backoff_ms: expected integer between 0 and 60000"},
    {UP("'max_response_bytes': 0"),
     "1:69: upstreams.u.max_response_bytes: expected integer between 1 and 17179869184"},
    {UP("'max_response_bytes': 17179869185"),
     "1:69: upstreams.u.max_response_bytes: expected integer between 1 and 17179869184"},
    /* tls, health, passive, breaker */
    {UP("'tls': true"), "1:54: upstreams.u.tls: expected object"},
    {UP("'tls': {'verify': 'no'}"), "1:65: upstreams.u.tls.verify: expected boolean"},
    {UP("'tls': {'ca_file': ''}"), "1:66: upstreams.u.tls.ca_file: expected non-empty string"},
    {UP("'tls': {'cafile': 'x.pem'}"),
     "1:55: upstreams.u.tls.cafile: unknown key (did you mean \"ca_file\"?)"},
    {UP("'health': {}"), "1:57: upstreams.u.health: missing required key \"path\""},
    {UP("'health': {'path': 'healthz'}"),
     "1:66: upstreams.u.health.path: expected string starting with \"/\""},
    {UP("'health': {'path': '/a b'}"),
     "1:66: upstreams.u.health.path: expected a path without spaces or control characters"},
    {UP("'health': {'path': '/h', 'interval_ms': 99}"),
     "1:87: upstreams.u.health.interval_ms: expected integer between 100 and 3600000"},
    {UP("'health': {'path': '/h', 'timeout_ms': 0}"),
     "1:86: upstreams.u.health.timeout_ms: expected integer between 1 and 3600000"},
    {UP("'health': {'path': '/h', 'healthy': 0}"),
     "1:83: upstreams.u.health.healthy: expected integer between 1 and 100"},
    {UP("'health': {'path': '/h', 'unhealthy': 101}"),
     "1:85: upstreams.u.health.unhealthy: expected integer between 1 and 100"},
    {UP("'health': {'path': '/h', 'statuses': []}"),
     "1:84: upstreams.u.health.statuses: expected non-empty array of status codes"},
    {UP("'health': {'path': '/h', 'statuses': 200}"),
     "1:84: upstreams.u.health.statuses: expected non-empty array of status codes"},
    {UP("'health': {'path': '/h', 'statuses': [200, 600]}"),
     "1:90: upstreams.u.health.statuses[1]: expected integer between 100 and 599"},
    {UP("'health': {'path': '/h', 'statuses': ['200']}"),
     "1:85: upstreams.u.health.statuses[0]: expected integer between 100 and 599"},
    {UP("'health': {'path': '/h', 'status': [200]}"),
     "1:72: upstreams.u.health.status: unknown key (did you mean \"statuses\"?)"},
    {UP("'passive': {'failures': 1001}"),
     "1:71: upstreams.u.passive.failures: expected integer between 0 and 1000"},
    {UP("'passive': {'count_5xx': 1}"), "1:72: upstreams.u.passive.count_5xx: expected boolean"},
    {UP("'passive': {'recover_ms': 0}"),
     "1:73: upstreams.u.passive.recover_ms: expected integer between 1 and 3600000"},
    {UP("'breaker': {'failures': 1001}"),
     "1:71: upstreams.u.breaker.failures: expected integer between 0 and 1000"},
    {UP("'breaker': {'ratio_percent': 101}"),
     "1:76: upstreams.u.breaker.ratio_percent: expected integer between 0 and 100"},
    {UP("'breaker': {'window': 0}"),
     "1:69: upstreams.u.breaker.window: expected integer between 1 and 1000"},
    {UP("'breaker': {'min_requests': 0}"),
     "1:75: upstreams.u.breaker.min_requests: expected integer between 1 and 1000"},
    {UP("'breaker': {'cooldown_ms': 0}"),
     "1:74: upstreams.u.breaker.cooldown_ms: expected integer between 1 and 3600000"},
    {UP("'breaker': {'max_cooldown_ms': 3600001}"),
     "1:78: upstreams.u.breaker.max_cooldown_ms: expected integer between 1 and 3600000"},
    {UP("'breaker': {'half_open_probes': 0}"),
     "1:79: upstreams.u.breaker.half_open_probes: expected integer between 1 and 1000"},
    {UP("'breaker': {'max_cooldown_ms': 500, 'cooldown_ms': 1000}"),
     "1:78: upstreams.u.breaker.max_cooldown_ms: expected integer between 1000 (cooldown_ms) and "
     "3600000"},
    /* absent max_cooldown_ms: its default is too small, the breaker object is shown */
    {UP("'breaker': {'cooldown_ms': 60000}"),
     "1:58: upstreams.u.breaker.max_cooldown_ms: expected integer between 60000 (cooldown_ms) and "
     "3600000"},
    /* route targets */
    {"{'routes': [{'target': {'function': 'f', 'upstream': 'u'}}]}",
     "1:42: routes[0].target.upstream: " FORMS},
    {"{'routes': [{'target': {'url': 'http://h', 'function': 'f'}}]}",
     "1:44: routes[0].target.function: " FORMS},
    {"{'routes': [{'target': {'upstream': 'u', 'url': 'http://h'}}]}",
     "1:42: routes[0].target.url: " FORMS},
    {"{'routes': [{'target': {'path': '/x'}}]}", "1:24: routes[0].target: " FORMS},
    {"{'routes': [{'target': {'upstream': 'u', 'config': {}}}]}",
     "1:42: routes[0].target.config: \"config\" is allowed only with \"function\""},
    {"{'routes': [{'target': {'url': 'http://h', 'config': {}}}]}",
     "1:44: routes[0].target.config: \"config\" is allowed only with \"function\""},
    {"{'routes': [{'target': {'function': 'f', 'path': '/x'}}]}",
     "1:42: routes[0].target.path: \"path\" is allowed only with \"upstream\" or \"url\""},
    {"{'routes': [{'target': {'upstream': ''}}]}",
     "1:37: routes[0].target.upstream: expected non-empty string"},
    {"{'routes': [{'target': {'upstream': ['u']}}]}",
     "1:37: routes[0].target.upstream: expected non-empty string"},
    {"{'routes': [{'target': {'url': 'http://h?x'}}]}",
     "1:32: routes[0].target.url: URL must not have a query (\"?\") or a fragment (\"#\")"},
    {"{'routes': [{'target': {'upstrem': 'u'}}]}",
     "1:25: routes[0].target.upstrem: unknown key (did you mean \"upstream\"?)"},
    {"{'routes': [{'target': {'ur': 'http://h'}}]}",
     "1:25: routes[0].target.ur: unknown key (did you mean \"url\"?)"},
    /* path templates */
    {TEMPLATE("/a", "v2"), "1:64: routes[0].target.path: expected string starting with \"/\""},
    {TEMPLATE("/a", ""), "1:64: routes[0].target.path: expected string starting with \"/\""},
    {TEMPLATE("/a", "/v2?x=1"),
     "1:64: routes[0].target.path: expected a path without \"?\" or \"#\""},
    {TEMPLATE("/a", "/v2#x"),
     "1:64: routes[0].target.path: expected a path without \"?\" or \"#\""},
    {TEMPLATE("/a", "/v 2"),
     "1:64: routes[0].target.path: expected a path without spaces or control characters"},
    {TEMPLATE("/a", "/{id"),
     "1:64: routes[0].target.path: \"/{id\" has a \"{\" or \"}\" that is not a parameter like "
     "\"{id}\" (letters, digits and _)"},
    {TEMPLATE("/a", "/id}"),
     "1:64: routes[0].target.path: \"/id}\" has a \"{\" or \"}\" that is not a parameter like "
     "\"{id}\" (letters, digits and _)"},
    {TEMPLATE("/a", "/{}"),
     "1:64: routes[0].target.path: \"/{}\" has a \"{\" or \"}\" that is not a parameter like "
     "\"{id}\" (letters, digits and _)"},
    {TEMPLATE("/a", "/{a-b}"),
     "1:64: routes[0].target.path: \"/{a-b}\" has a \"{\" or \"}\" that is not a parameter like "
     "\"{id}\" (letters, digits and _)"},
    {TEMPLATE("/users/{id}", "/u/{id}/{uid}"),
     "1:73: routes[0].target.path: parameter \"{uid}\" is not in the route's path \"/users/{id}\""},
    /* "{id}x" in the pattern is not the parameter id (the router refuses it anyway) */
    {TEMPLATE("/users/{id}x", "/u/{id}"),
     "1:74: routes[0].target.path: parameter \"{id}\" is not in the route's path \"/users/{id}x\""},
    /* the template is checked once the route's path is known, whatever the key order */
    {"{'routes': [{'target': {'url': 'http://h', 'path': '/{x}'}, 'path': '/{y}'}]}",
     "1:52: routes[0].target.path: parameter \"{x}\" is not in the route's path \"/{y}\""},
    /* names are linked once the whole file is walked */
    {"{" BASE "'routes': [{'path': '/', 'target': {'upstream': 'users'}}],"
     " 'upstreams': {'user': {'targets': ['http://h']}, 'orders': {'targets': ['http://o']}}}",
     "1:99: routes[0].target.upstream: unknown upstream \"users\" (did you mean \"user\"?)"},
    {"{" BASE "'upstreams': {'api': {'targets': ['http://h']}}, 'routes': [{'path': '/', "
     "'target': {'function': 'f'}}, {'path': '/b', 'target': {'upstream': 'billing'}}]}",
     "1:193: routes[1].target.upstream: unknown upstream \"billing\""},
    {"{" BASE "'routes': [{'path': '/', 'target': {'upstream': 'u'}}]}",
     "1:99: routes[0].target.upstream: unknown upstream \"u\""},
    {"{" BASE "'routes': [{'path': '/orders/{order}', 'target': {'upstream': 'u'}}],"
     " 'upstreams': {'u': {'targets': ['http://h'], 'balance': 'hash', 'hash_on': 'param:id'}}}",
     "1:113: routes[0].target.upstream: upstream \"u\" hashes on param:id, but the route's path "
     "\"/orders/{order}\" has no \"{id}\""},
    /* ${ENV} */
    {"{'data_dir': '${KAPI_TEST_UNSET}'}",
     "1:14: data_dir: environment variable KAPI_TEST_UNSET is not set"},
    {"{'plugins': [{'module': 'p', 'config': {'auth': {'keys': ['${KAPI_TEST_UNSET}']}}}]}",
     "1:59: plugins[0].config.auth.keys[0]: environment variable KAPI_TEST_UNSET is not set"},
    {"{'data_dir': 'x${1A}'}", "1:14: data_dir: malformed ${NAME} reference (NAME is "
                               "[A-Za-z_][A-Za-z0-9_]*; write $${ for a literal ${)"},
    {"{'data_dir': '${HOME'}", "1:14: data_dir: malformed ${NAME} reference (NAME is "
                               "[A-Za-z_][A-Za-z0-9_]*; write $${ for a literal ${)"},
    /* positions through escaped keys and multi-byte characters */
    {"{'rout\\u0065s': [{'name': 'a\\'[b', 'path': 5}]}", "1:44: routes[0].path: expected string"},
    {"{'routes': [{'name': 'h\xc3\xa9llo', 'path': 5}]}", "1:39: routes[0].path: expected string"},
};

static void
expect_error(size_t i, kapi_status st, const config *cfg, const char *err, const char *want)
{
    if (st != KAPI_ECONFIG || cfg != NULL || strcmp(err, want) != 0)
        fail_msg("bad config %zu: status %d, cfg %p,\n got: %s\nwant: %s", i, (int)st,
                 (const void *)cfg, err, want);
}

static void
test_bad_configs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_configs / sizeof *bad_configs; i++) {
        const struct bad *b = &bad_configs[i];
        char err[1024], want[PATH_MAX + 1024], *s = json_of(b->json);
        config *cfg = (config *)1;
        kapi_status st;

        snprintf(want, sizeof want, "kapi.json:%s", b->msg);
        st = config_parse("kapi.json", s, strlen(s), &cfg, err, sizeof err);
        expect_error(i, st, cfg, err, want);
        free(s);

        cfg = (config *)1;
        st = config_load(write_config("kapi.json", b->json), &cfg, err, sizeof err);
        snprintf(want, sizeof want, "%s/kapi.json:%s", tmpdir, b->msg);
        expect_error(i, st, cfg, err, want);
    }
}

static void
test_unreadable(void **state)
{
    char err[PATH_MAX + 256], want[PATH_MAX + 256];
    config *cfg = (config *)1;

    (void)state;
    assert_int_equal(config_load("/nonexistent/kapi.json", &cfg, err, sizeof err), KAPI_EIO);
    assert_null(cfg);
    assert_string_equal(err, "/nonexistent/kapi.json: cannot read: No such file or directory");

    snprintf(want, sizeof want, "%s: cannot read: Is a directory", tmpdir);
    assert_int_equal(config_load(tmpdir, &cfg, err, sizeof err), KAPI_EIO);
    assert_string_equal(err, want);
}

static void
test_too_large(void **state)
{
    size_t big = ((size_t)16 << 20) + 1;
    char err[PATH_MAX + 256], want[PATH_MAX + 256], *text = malloc(big);
    const char *path = write_config("big.json", "");
    config *cfg = (config *)1;
    int fd;

    (void)state;
    assert_non_null(text);
    memset(text, ' ', big);
    assert_int_equal(config_parse("kapi.json", text, big, &cfg, err, sizeof err), KAPI_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err, "kapi.json: larger than 16777216 bytes (16 MiB)");
    /* exactly 16 MiB is read and parsed (and is not a valid config) */
    assert_int_equal(config_parse("kapi.json", text, big - 1, &cfg, err, sizeof err), KAPI_ECONFIG);
    assert_non_null(strstr(err, "invalid JSON"));
    free(text);

    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)big), 0);
    close(fd);
    snprintf(want, sizeof want, "%s: larger than 16777216 bytes (16 MiB)", path);
    assert_int_equal(config_load(path, &cfg, err, sizeof err), KAPI_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err, want);
}

/* A short buffer truncates the message but stays NUL-terminated. */
static void
test_short_error_buffer(void **state)
{
    char err[12];
    config *cfg;

    (void)state;
    memset(err, 'x', sizeof err);
    assert_int_equal(config_parse("kapi.json", "[]", 2, &cfg, err, sizeof err), KAPI_ECONFIG);
    assert_string_equal(err, "kapi.json:1");
    assert_int_equal(config_parse("kapi.json", "[]", 2, &cfg, NULL, 0), KAPI_ECONFIG);
}

/* ---- good configs ------------------------------------------------------ */

static const char full_config[] =
    "{\n"
    "  'listen': ['127.0.0.1:8080', '[::1]:0'],\n"
    "  'threads': 4,\n"
    "  'log': { 'level': 'debug', 'access': 'logs/access.log' },\n"
    "  'limits': { 'max_body_bytes': 2048, 'max_header_bytes': 4096, 'max_connections': 10,\n"
    "              'connection_timeout_s': 5, 'pause_timeout_ms': 100, 'shutdown_timeout_ms': 0 "
    "},\n"
    "  'data_dir': '/srv/kapi',\n"
    "  'module_dirs': ['../build/modules', '/opt/kapi/modules'],\n"
    "  'plugins': [ { 'module': 'request-id-check', 'config': { } } ],\n"
    "  'routes': [\n"
    "    { 'name': 'hello', 'methods': ['get', 'Head'], 'host': 'API.Example.COM', 'path': "
    "'/hello',\n"
    "      'strip_prefix': true,\n"
    "      'plugins': [ { 'module': 'some-plugin', 'config': { 'b': [1, 'x'], 'a': { 'c': null } } "
    "} ],\n"
    "      'target': { 'function': 'hello' } },\n"
    "    { 'path': '/echo/*', 'target': { 'function': 'echo', 'config': {'k': 'v'} } }\n"
    "  ]\n"
    "}\n";

static void
test_full_config(void **state)
{
    config *cfg = parse_ok("/etc/kapi/kapi.json", full_config);
    config_route *r;

    (void)state;
    assert_string_equal(cfg->file, "/etc/kapi/kapi.json");
    assert_string_equal(cfg->base_dir, "/etc/kapi");
    assert_int_equal(cfg->nlisteners, 2);
    assert_string_equal(cfg->listeners[0].host, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].port, 8080);
    assert_string_equal(cfg->listeners[1].host, "::1");
    assert_int_equal(cfg->listeners[1].port, 0);
    assert_int_equal(cfg->threads, 4);
    assert_int_equal(cfg->log_level, KAPI_LOG_DEBUG);
    assert_string_equal(cfg->access_log, "/etc/kapi/logs/access.log");
    assert_int_equal(cfg->limits.max_body_bytes, 2048);
    assert_int_equal(cfg->limits.max_header_bytes, 4096);
    assert_int_equal(cfg->limits.max_connections, 10);
    assert_int_equal(cfg->limits.connection_timeout_s, 5);
    assert_int_equal(cfg->limits.pause_timeout_ms, 100);
    assert_int_equal(cfg->limits.shutdown_timeout_ms, 0);
    assert_string_equal(cfg->data_dir, "/srv/kapi");
    assert_int_equal(cfg->nmodule_dirs, 2);
    assert_string_equal(cfg->module_dirs[0], "/etc/kapi/../build/modules");
    assert_string_equal(cfg->module_dirs[1], "/opt/kapi/modules");

    assert_int_equal(cfg->nplugins, 1);
    assert_string_equal(cfg->plugins[0].module, "request-id-check");
    assert_string_equal(cfg->plugins[0].config_json, "{}");
    assert_string_equal(cfg->plugins[0].json_path, "plugins[0]");
    assert_int_equal(cfg->plugins[0].line, 9);
    assert_int_equal(cfg->plugins[0].col, 58);

    assert_int_equal(cfg->nroutes, 2);
    r = &cfg->routes[0];
    assert_string_equal(r->name, "hello");
    assert_string_equal(r->json_path, "routes[0]");
    assert_int_equal(r->line, 11);
    assert_int_equal(r->col, 5);
    assert_int_equal(r->nmethods, 2);
    assert_string_equal(r->methods[0], "GET");
    assert_string_equal(r->methods[1], "HEAD");
    assert_string_equal(r->host, "api.example.com");
    assert_string_equal(r->path, "/hello");
    assert_true(r->strip_prefix);
    assert_int_equal(r->nplugins, 1);
    assert_string_equal(r->plugins[0].module, "some-plugin");
    assert_string_equal(r->plugins[0].config_json, "{\"b\":[1,\"x\"],\"a\":{\"c\":null}}");
    assert_string_equal(r->plugins[0].json_path, "routes[0].plugins[0]");
    assert_int_equal(r->plugins[0].line, 13);
    assert_int_equal(r->plugins[0].col, 57);
    assert_string_equal(r->target.module, "hello");
    assert_string_equal(r->target.config_json, "{}");
    assert_string_equal(r->target.json_path, "routes[0].target");
    assert_int_equal(r->target.line, 14);
    assert_int_equal(r->target.col, 17);

    r = &cfg->routes[1];
    assert_string_equal(r->name, "routes[1]");
    assert_int_equal(r->nmethods, 0);
    assert_null(r->methods);
    assert_null(r->host);
    assert_false(r->strip_prefix);
    assert_int_equal(r->nplugins, 0);
    assert_string_equal(r->path, "/echo/*");
    assert_string_equal(r->target.module, "echo");
    assert_string_equal(r->target.config_json, "{\"k\":\"v\"}");
    config_free(cfg);
}

static void
test_defaults(void **state)
{
    config *cfg = parse_ok("kapi.json", "{'listen': ['0.0.0.0:80'], 'module_dirs': ['m'], "
                                        "'routes': []}");

    (void)state;
    assert_string_equal(cfg->base_dir, ".");
    assert_int_equal(cfg->threads, 0);
    assert_int_equal(cfg->log_level, KAPI_LOG_INFO);
    assert_string_equal(cfg->access_log, "stderr");
    assert_int_equal(cfg->limits.max_body_bytes, 1048576);
    assert_int_equal(cfg->limits.max_header_bytes, 16384);
    assert_int_equal(cfg->limits.max_connections, 1024);
    assert_int_equal(cfg->limits.connection_timeout_s, 30);
    assert_int_equal(cfg->limits.pause_timeout_ms, 30000);
    assert_int_equal(cfg->limits.shutdown_timeout_ms, 10000);
    assert_string_equal(cfg->data_dir, "./var/kapi");
    assert_string_equal(cfg->module_dirs[0], "./m");
    assert_int_equal(cfg->nplugins, 0);
    assert_null(cfg->plugins);
    assert_int_equal(cfg->nroutes, 0);
    assert_null(cfg->routes);
    config_free(cfg);
}

static void
test_path_resolution(void **state)
{
    static const char text[] = "{'listen': ['127.0.0.1:0'], 'module_dirs': ['mods', '/abs/mods'], "
                               "'log': {'access': 'logs/a.log'}, 'routes': []}";
    char err[512], want[PATH_MAX + 64];
    config *cfg;

    (void)state;
    assert_int_equal(config_load(write_config("kapi.json", text), &cfg, err, sizeof err), KAPI_OK);
    assert_string_equal(cfg->base_dir, tmpdir);
    snprintf(want, sizeof want, "%s/var/kapi", tmpdir);
    assert_string_equal(cfg->data_dir, want);
    snprintf(want, sizeof want, "%s/mods", tmpdir);
    assert_string_equal(cfg->module_dirs[0], want);
    assert_string_equal(cfg->module_dirs[1], "/abs/mods");
    snprintf(want, sizeof want, "%s/logs/a.log", tmpdir);
    assert_string_equal(cfg->access_log, want);
    config_free(cfg);

    cfg = parse_ok("conf//kapi.json", text);
    assert_string_equal(cfg->base_dir, "conf");
    assert_string_equal(cfg->data_dir, "conf/var/kapi");
    assert_string_equal(cfg->access_log, "conf/logs/a.log");
    config_free(cfg);

    cfg = parse_ok("/kapi.json", "{'listen': ['127.0.0.1:0'], 'module_dirs': ['m'], 'routes': [],"
                                 " 'log': {'access': 'off'}, 'data_dir': 'd'}");
    assert_string_equal(cfg->base_dir, "/");
    assert_string_equal(cfg->data_dir, "/d");
    assert_string_equal(cfg->module_dirs[0], "/m");
    assert_string_equal(cfg->access_log, "off");
    config_free(cfg);
}

static void
test_env_substitution(void **state)
{
    config *cfg;

    (void)state;
    setenv("KAPI_TEST_PORT", "9090", 1);
    setenv("KAPI_TEST_DIR", "/data", 1);
    setenv("KAPI_TEST_SECRET", "s3cr\"et", 1);
    setenv("KAPI_TEST_LEVEL", "warn", 1);
    cfg = parse_ok(
        "kapi.json",
        "{'listen': ['127.0.0.1:${KAPI_TEST_PORT}'], 'module_dirs': ['${KAPI_TEST_DIR}/m'],"
        " 'data_dir': 'd$${KAPI_TEST_DIR}', 'log': {'level': '${KAPI_TEST_LEVEL}'},"
        " 'routes': [{'name': 'cost $5 $$ $', 'path': '/p', 'target': {'function': 'f',"
        " 'config': {'secret': '${KAPI_TEST_SECRET}', 'list': ['a${KAPI_TEST_PORT}b',"
        " 'x$${y}'], 'k${KAPI_TEST_PORT}': 1}}}]}");
    assert_int_equal(cfg->listeners[0].port, 9090);
    assert_string_equal(cfg->module_dirs[0], "/data/m");
    assert_string_equal(cfg->data_dir, "./d${KAPI_TEST_DIR}");
    assert_int_equal(cfg->log_level, KAPI_LOG_WARN);
    assert_string_equal(cfg->routes[0].name, "cost $5 $$ $");
    /* values substituted, keys not */
    assert_string_equal(cfg->routes[0].target.config_json,
                        "{\"secret\":\"s3cr\\\"et\",\"list\":[\"a9090b\",\"x${y}\"],"
                        "\"k${KAPI_TEST_PORT}\":1}");
    config_free(cfg);

    /* an empty variable is set; a path then becomes empty and is refused */
    setenv("KAPI_TEST_EMPTY", "", 1);
    cfg =
        parse_ok("kapi.json", "{'listen': ['127.0.0.1:1'], 'module_dirs': ['m${KAPI_TEST_EMPTY}'],"
                              " 'routes': []}");
    assert_string_equal(cfg->module_dirs[0], "./m");
    config_free(cfg);
}

static void
test_methods_and_host(void **state)
{
    config *cfg = parse_ok("kapi.json",
                           "{'listen': ['127.0.0.1:1'], 'module_dirs': ['m'], 'routes': [{'path':"
                           " '/', 'methods': ['get', 'pAtCh', 'M-SEARCH', 'x!#$%&*+.^_`|~'],"
                           " 'host': 'WWW.Example.Org:8080', 'strip_prefix': false,"
                           " 'target': {'function': 'f'}}]}");
    config_route *r = &cfg->routes[0];

    (void)state;
    assert_int_equal(r->nmethods, 4);
    assert_string_equal(r->methods[0], "GET");
    assert_string_equal(r->methods[1], "PATCH");
    assert_string_equal(r->methods[2], "M-SEARCH");
    assert_string_equal(r->methods[3], "X!#$%&*+.^_`|~");
    assert_string_equal(r->host, "www.example.org:8080");
    assert_false(r->strip_prefix);
    config_free(cfg);
}

/* The text of examples/kapi.json, which `make run` serves. */
static void
test_example_config(void **state)
{
    config *cfg = parse_ok("examples/kapi.json",
                           "{\n"
                           "  'listen': ['127.0.0.1:8080'],\n"
                           "  'threads': 0,\n"
                           "  'log': { 'level': 'info', 'access': 'stderr' },\n"
                           "  'data_dir': '../build/var/kapi',\n"
                           "  'module_dirs': ['../build/modules'],\n"
                           "  'routes': [\n"
                           "    { 'name': 'hello', 'methods': ['GET', 'HEAD'], 'path': '/hello',\n"
                           "      'target': { 'function': 'hello' } },\n"
                           "    { 'name': 'echo', 'path': '/echo/*',\n"
                           "      'target': { 'function': 'echo' } },\n"
                           "    { 'name': 'user', 'methods': ['GET'], 'path': '/users/{id}',\n"
                           "      'target': { 'function': 'echo' } }\n"
                           "  ]\n"
                           "}\n");

    (void)state;
    assert_string_equal(cfg->module_dirs[0], "examples/../build/modules");
    assert_string_equal(cfg->data_dir, "examples/../build/var/kapi");
    assert_int_equal(cfg->nroutes, 3);
    assert_string_equal(cfg->routes[0].path, "/hello");
    assert_int_equal(cfg->routes[0].nmethods, 2);
    assert_string_equal(cfg->routes[0].target.module, "hello");
    assert_string_equal(cfg->routes[1].path, "/echo/*");
    assert_int_equal(cfg->routes[1].nmethods, 0);
    assert_string_equal(cfg->routes[1].target.module, "echo");
    assert_string_equal(cfg->routes[2].path, "/users/{id}");
    assert_string_equal(cfg->routes[2].methods[0], "GET");
    assert_string_equal(cfg->routes[2].name, "user");
    config_free(cfg);
}

/* ---- upstreams --------------------------------------------------------- */

static const char upstream_config[] =
    "{\n"
    "  'listen': ['127.0.0.1:8080'],\n"
    "  'module_dirs': ['m'],\n"
    "  'routes': [\n"
    "    { 'name': 'users', 'path': '/users/{id}',\n"
    "      'target': { 'upstream': 'api', 'path': '/v2/users/{id}' } },\n"
    "    { 'path': '/search/*', 'target': { 'url': 'HTTPS://Search.Example.com/base/' } },\n"
    "    { 'path': '/hello', 'target': { 'function': 'hello' } },\n"
    "    { 'path': '/orders/{order}', 'target': { 'path': '/o/{order}.json', 'upstream': 'orders' "
    "} "
    "},\n"
    "    { 'path': '/v6', 'target': { 'url': 'http://[2001:DB8::1]:8443' } }\n"
    "  ],\n"
    "  'upstreams': {\n"
    "    'api': {\n"
    "      'targets': ['http://10.0.0.1:8080/', { 'url': 'http://api-2.internal/', 'weight': 3 "
    "}],\n"
    "      'balance': 'hash', 'hash_on': 'header:X-User', 'host_header': 'preserve',\n"
    "      'keepalive': 0, 'max_connections': 0, 'connect_timeout_ms': 100, 'try_timeout_ms': "
    "200,\n"
    "      'timeout_ms': 300, 'retries': 0, 'retry_backoff_ms': 0, 'max_response_bytes': "
    "17179869184,\n"
    "      'tls': { 'verify': false, 'ca_file': 'certs/ca.pem' },\n"
    "      'health': { 'path': '/healthz', 'interval_ms': 100, 'timeout_ms': 50, 'healthy': 1,\n"
    "                  'unhealthy': 100, 'statuses': [200, 204] },\n"
    "      'passive': { 'failures': 3, 'count_5xx': false, 'recover_ms': 500 },\n"
    "      'breaker': { 'failures': 0, 'ratio_percent': 50, 'window': 100, 'min_requests': 20,\n"
    "                   'cooldown_ms': 2000, 'max_cooldown_ms': 2000, 'half_open_probes': 3 }\n"
    "    },\n"
    "    'orders': { 'targets': ['https://orders.example.com'], 'balance': 'hash',\n"
    "                'hash_on': 'param:order' },\n"
    "    'least': { 'targets': ['http://a', 'http://b'], 'balance': 'least_conn',\n"
    "               'tls': { 'ca_file': '/abs/ca.pem' }, 'health': { 'path': '/h?deep=1' } },\n"
    "    'by.addr-1': { 'targets': ['http://a'], 'balance': 'hash', 'host_header': 'target' }\n"
    "  }\n"
    "}\n";

static void
expect_target(const config_target *t, const char *url, bool tls, const char *host, unsigned port,
              const char *base_path, unsigned weight)
{
    assert_string_equal(t->url, url);
    assert_int_equal(t->tls, tls);
    assert_string_equal(t->host, host);
    assert_int_equal(t->port, port);
    assert_string_equal(t->base_path, base_path);
    assert_int_equal(t->weight, weight);
}

/* Everything but the name, the targets and the position at its default. */
static void
expect_upstream_defaults(const config_upstream *u)
{
    assert_int_equal(u->balance, CONFIG_BALANCE_ROUND_ROBIN);
    assert_int_equal(u->hash_on, CONFIG_HASH_CLIENT_ADDR);
    assert_null(u->hash_key);
    assert_false(u->preserve_host);
    assert_int_equal(u->keepalive, 32);
    assert_int_equal(u->max_connections, 256);
    assert_int_equal(u->connect_timeout_ms, 2000);
    assert_int_equal(u->try_timeout_ms, 30000);
    assert_int_equal(u->timeout_ms, 60000);
    assert_int_equal(u->retries, 2);
    assert_int_equal(u->retry_backoff_ms, 20);
    assert_int_equal(u->max_response_bytes, (size_t)64 << 20);
    assert_true(u->tls_verify);
    assert_null(u->tls_ca_file);
    assert_null(u->health.path);
    assert_int_equal(u->health.interval_ms, 5000);
    assert_int_equal(u->health.timeout_ms, 2000);
    assert_int_equal(u->health.healthy, 2);
    assert_int_equal(u->health.unhealthy, 3);
    assert_null(u->health.statuses);
    assert_int_equal(u->health.nstatuses, 0);
    assert_int_equal(u->passive.failures, 0);
    assert_true(u->passive.count_5xx);
    assert_int_equal(u->passive.recover_ms, 10000);
    assert_int_equal(u->breaker.failures, 5);
    assert_int_equal(u->breaker.ratio_percent, 0);
    assert_int_equal(u->breaker.window, 20);
    assert_int_equal(u->breaker.min_requests, 10);
    assert_int_equal(u->breaker.cooldown_ms, 1000);
    assert_int_equal(u->breaker.max_cooldown_ms, 30000);
    assert_int_equal(u->breaker.half_open_probes, 1);
}

static void
test_upstreams(void **state)
{
    config *cfg = parse_ok("/etc/kapi/kapi.json", upstream_config);
    const config_upstream *u;
    const config_route *r;

    (void)state;
    /* the named ones in file order, then one per "url" target in route order */
    assert_int_equal(cfg->nupstreams, 6);

    u = &cfg->upstreams[0];
    assert_string_equal(u->name, "api");
    assert_false(u->anonymous);
    assert_string_equal(u->json_path, "upstreams.api");
    assert_int_equal(u->line, 13);
    assert_int_equal(u->col, 12);
    assert_int_equal(u->ntargets, 2);
    expect_target(&u->targets[0], "http://10.0.0.1:8080/", false, "10.0.0.1", 8080, "", 1);
    assert_string_equal(u->targets[0].json_path, "upstreams.api.targets[0]");
    assert_int_equal(u->targets[0].line, 14);
    assert_int_equal(u->targets[0].col, 19);
    expect_target(&u->targets[1], "http://api-2.internal/", false, "api-2.internal", 80, "", 3);
    assert_string_equal(u->targets[1].json_path, "upstreams.api.targets[1]");
    assert_int_equal(u->targets[1].line, 14);
    assert_int_equal(u->targets[1].col, 44);
    assert_int_equal(u->balance, CONFIG_BALANCE_HASH);
    assert_int_equal(u->hash_on, CONFIG_HASH_HEADER);
    assert_string_equal(u->hash_key, "X-User");
    assert_true(u->preserve_host);
    assert_int_equal(u->keepalive, 0);
    assert_int_equal(u->max_connections, 0);
    assert_int_equal(u->connect_timeout_ms, 100);
    assert_int_equal(u->try_timeout_ms, 200);
    assert_int_equal(u->timeout_ms, 300);
    assert_int_equal(u->retries, 0);
    assert_int_equal(u->retry_backoff_ms, 0);
    assert_int_equal(u->max_response_bytes, (size_t)1 << 34);
    assert_false(u->tls_verify);
    assert_string_equal(u->tls_ca_file, "/etc/kapi/certs/ca.pem");
    assert_string_equal(u->health.path, "/healthz");
    assert_int_equal(u->health.interval_ms, 100);
    assert_int_equal(u->health.timeout_ms, 50);
    assert_int_equal(u->health.healthy, 1);
    assert_int_equal(u->health.unhealthy, 100);
    assert_int_equal(u->health.nstatuses, 2);
    assert_int_equal(u->health.statuses[0], 200);
    assert_int_equal(u->health.statuses[1], 204);
    assert_int_equal(u->passive.failures, 3);
    assert_false(u->passive.count_5xx);
    assert_int_equal(u->passive.recover_ms, 500);
    assert_int_equal(u->breaker.failures, 0);
    assert_int_equal(u->breaker.ratio_percent, 50);
    assert_int_equal(u->breaker.window, 100);
    assert_int_equal(u->breaker.min_requests, 20);
    assert_int_equal(u->breaker.cooldown_ms, 2000);
    assert_int_equal(u->breaker.max_cooldown_ms, 2000);
    assert_int_equal(u->breaker.half_open_probes, 3);

    u = &cfg->upstreams[1];
    assert_string_equal(u->name, "orders");
    assert_int_equal(u->ntargets, 1);
    expect_target(&u->targets[0], "https://orders.example.com", true, "orders.example.com", 443, "",
                  1);
    assert_int_equal(u->balance, CONFIG_BALANCE_HASH);
    assert_int_equal(u->hash_on, CONFIG_HASH_PARAM);
    assert_string_equal(u->hash_key, "order");

    u = &cfg->upstreams[2];
    assert_string_equal(u->name, "least");
    assert_int_equal(u->ntargets, 2);
    assert_int_equal(u->balance, CONFIG_BALANCE_LEAST_CONN);
    assert_null(u->hash_key);
    assert_true(u->tls_verify);
    assert_string_equal(u->tls_ca_file, "/abs/ca.pem");
    assert_string_equal(u->health.path, "/h?deep=1");
    assert_int_equal(u->health.interval_ms, 5000); /* health defaults beside a given path */
    assert_int_equal(u->health.nstatuses, 0);

    /* "hash" without hash_on hashes the client address */
    u = &cfg->upstreams[3];
    assert_string_equal(u->name, "by.addr-1");
    assert_int_equal(u->balance, CONFIG_BALANCE_HASH);
    assert_int_equal(u->hash_on, CONFIG_HASH_CLIENT_ADDR);
    assert_null(u->hash_key);
    assert_false(u->preserve_host);

    /* a "url" target: an anonymous upstream, every field at its default */
    u = &cfg->upstreams[4];
    assert_string_equal(u->name, "routes[1].target");
    assert_true(u->anonymous);
    assert_string_equal(u->json_path, "routes[1].target");
    assert_int_equal(u->line, 7);
    assert_int_equal(u->col, 38);
    assert_int_equal(u->ntargets, 1);
    expect_target(&u->targets[0], "HTTPS://Search.Example.com/base/", true, "search.example.com",
                  443, "/base", 1);
    assert_string_equal(u->targets[0].json_path, "routes[1].target.url");
    assert_int_equal(u->targets[0].line, 7);
    assert_int_equal(u->targets[0].col, 47);
    expect_upstream_defaults(u);

    u = &cfg->upstreams[5];
    assert_string_equal(u->name, "routes[4].target");
    assert_true(u->anonymous);
    expect_target(&u->targets[0], "http://[2001:DB8::1]:8443", false, "2001:db8::1", 8443, "", 1);
    expect_upstream_defaults(u);

    assert_int_equal(cfg->nroutes, 5);
    r = &cfg->routes[0]; /* a forward reference: "upstreams" follows "routes" */
    assert_int_equal(r->target_kind, CONFIG_TARGET_UPSTREAM);
    assert_int_equal(r->upstream, 0);
    assert_string_equal(r->target_path, "/v2/users/{id}");
    assert_null(r->target.module);
    assert_null(r->target.config_json);
    assert_string_equal(r->target.json_path, "routes[0].target");
    assert_int_equal(r->target.line, 6);
    assert_int_equal(r->target.col, 17);

    r = &cfg->routes[1];
    assert_int_equal(r->target_kind, CONFIG_TARGET_UPSTREAM);
    assert_int_equal(r->upstream, 4);
    assert_null(r->target_path);
    assert_null(r->target.module);
    assert_string_equal(r->target.json_path, "routes[1].target");

    r = &cfg->routes[2];
    assert_int_equal(r->target_kind, CONFIG_TARGET_FUNCTION);
    assert_string_equal(r->target.module, "hello");
    assert_string_equal(r->target.config_json, "{}");
    assert_null(r->target_path);

    r = &cfg->routes[3];
    assert_int_equal(r->target_kind, CONFIG_TARGET_UPSTREAM);
    assert_int_equal(r->upstream, 1);
    assert_string_equal(r->target_path, "/o/{order}.json");

    r = &cfg->routes[4];
    assert_int_equal(r->upstream, 5);
    config_free(cfg);
}

/* An upstream with only its targets: every default, "passive" and
 * "breaker" included though their objects are absent. */
static void
test_upstream_defaults(void **state)
{
    config *cfg = parse_ok("kapi.json", "{'listen': ['127.0.0.1:1'], 'module_dirs': ['m'],"
                                        " 'upstreams': {'u': {'targets': ['http://h']}},"
                                        " 'routes': [{'path': '/', 'target': {'upstream': 'u'}}]}");
    const config_upstream *u = &cfg->upstreams[0];

    (void)state;
    assert_int_equal(cfg->nupstreams, 1);
    assert_string_equal(u->name, "u");
    assert_false(u->anonymous);
    expect_target(&u->targets[0], "http://h", false, "h", 80, "", 1);
    expect_upstream_defaults(u);
    assert_int_equal(cfg->routes[0].upstream, 0);
    config_free(cfg);

    /* empty objects are their defaults too; no upstreams at all is fine */
    cfg = parse_ok("kapi.json", "{'listen': ['127.0.0.1:1'], 'module_dirs': ['m'], 'routes': [],"
                                " 'upstreams': {'u': {'targets': ['http://h'], 'tls': {},"
                                " 'passive': {}, 'breaker': {}}}}");
    expect_upstream_defaults(&cfg->upstreams[0]);
    config_free(cfg);
    cfg = parse_ok("kapi.json", "{'listen': ['127.0.0.1:1'], 'module_dirs': ['m'], 'routes': [],"
                                " 'upstreams': {}}");
    assert_int_equal(cfg->nupstreams, 0);
    assert_null(cfg->upstreams);
    config_free(cfg);
}

/* Each good URL as a route's "url" target. */
static void
test_target_urls(void **state)
{
    static const struct {
        const char *url, *host, *base_path;
        bool tls;
        unsigned port;
    } good[] = {
        {"http://h", "h", "", false, 80},
        {"https://h", "h", "", true, 443},
        {"HTTP://h:1", "h", "", false, 1},
        {"https://API.Example.COM:65535/a/b//", "api.example.com", "/a/b", true, 65535},
        {"http://h/", "h", "", false, 80},
        {"http://h/api", "h", "/api", false, 80},
        {"http://h/a@b/%20c", "h", "/a@b/%20c", false, 80},
        {"http://127.0.0.1:8080/api/", "127.0.0.1", "/api", false, 8080},
        {"http://[::1]", "::1", "", false, 80},
        {"https://[::FFFF:10.0.0.1]:8443/x", "::ffff:10.0.0.1", "/x", true, 8443},
        {"http://my-host-1.internal", "my-host-1.internal", "", false, 80},
        {"${KAPI_TEST_ORIGIN}/v1", "origin", "/v1", false, 9000},
    };
    char text[512];

    (void)state;
    setenv("KAPI_TEST_ORIGIN", "http://origin:9000", 1);
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        config *cfg;
        const config_target *t;
        snprintf(text, sizeof text,
                 "{'listen': ['127.0.0.1:1'], 'module_dirs': ['m'],"
                 " 'routes': [{'path': '/', 'target': {'url': '%s'}}]}",
                 good[i].url);
        cfg = parse_ok("kapi.json", text);
        assert_int_equal(cfg->nupstreams, 1);
        t = &cfg->upstreams[0].targets[0];
        assert_string_equal(t->host, good[i].host);
        assert_string_equal(t->base_path, good[i].base_path);
        assert_int_equal(t->tls, good[i].tls);
        assert_int_equal(t->port, good[i].port);
        config_free(cfg);
    }
}

/* Path templates: parameters of the pattern anywhere, in any number. */
static void
test_target_path(void **state)
{
    config *cfg = parse_ok(
        "kapi.json",
        "{'listen': ['127.0.0.1:1'], 'module_dirs': ['m'], 'routes': ["
        " {'path': '/a/{x}/b/{y_2}', 'target': {'url': 'http://h', 'path': '/{y_2}/{x}-{x}/c'}},"
        " {'path': '/p/*', 'target': {'path': '/', 'url': 'http://h/base'}},"
        " {'path': '/q', 'target': {'url': 'http://h', 'path': '/v2/q/'}}]}");

    (void)state;
    assert_string_equal(cfg->routes[0].target_path, "/{y_2}/{x}-{x}/c");
    assert_string_equal(cfg->routes[1].target_path, "/");
    assert_string_equal(cfg->upstreams[1].targets[0].base_path, "/base");
    assert_string_equal(cfg->routes[2].target_path, "/v2/q/");
    assert_int_equal(cfg->routes[2].upstream, 2);
    config_free(cfg);
}

static void
test_free_null(void **state)
{
    (void)state;
    config_free(NULL);
}

/* ---- jsonpos ----------------------------------------------------------- */

static void
expect_pos(jsonpos_cache *cache, const char *text, const char *path, bool key, kapi_status st,
           unsigned line, unsigned col)
{
    unsigned l = 0, c = 0;

    assert_int_equal(jsonpos_find(NULL, text, strlen(text), path, key, &l, &c), st);
    assert_int_equal(l, line);
    assert_int_equal(c, col);
    /* the same through a cache, cold and then warm with a previous lookup */
    l = c = 0;
    assert_int_equal(jsonpos_find(cache, text, strlen(text), path, key, &l, &c), st);
    assert_int_equal(l, line);
    assert_int_equal(c, col);
}

static void
test_jsonpos(void **state)
{
    static const char doc[] = "{\"a\": [1, [2, 3], {\"b\\\"]\": \"x]}\\\\\", \"c\": [[], {}]}],\n"
                              "  \"d\\ud83d\\ude00\": {\"e\": null}, \"\xc3\xa9\": 7}";
    jsonpos_cache cache = {0};

    (void)state;
    expect_pos(&cache, doc, "", false, KAPI_OK, 1, 1);
    expect_pos(&cache, doc, "(root)", false, KAPI_OK, 1, 1);
    expect_pos(&cache, doc, "a", false, KAPI_OK, 1, 7);
    expect_pos(&cache, doc, "a", true, KAPI_OK, 1, 2);
    expect_pos(&cache, doc, "a[1][1]", false, KAPI_OK, 1, 15);
    expect_pos(&cache, doc, "a[2].c", false, KAPI_OK, 1, 42);
    expect_pos(&cache, doc, "a[2].c", true, KAPI_OK, 1, 37);
    expect_pos(&cache, doc, "a[2].c[1]", false, KAPI_OK, 1, 47);
    expect_pos(&cache, doc, "a[1]", true, KAPI_OK, 1, 11); /* an index has no key */
    /* "d" + U+1F600 written as a surrogate pair */
    expect_pos(&cache, doc, "d\xf0\x9f\x98\x80.e", false, KAPI_OK, 2, 26);
    expect_pos(&cache, doc, "\xc3\xa9", false, KAPI_OK, 2, 38);
    /* unresolved: the deepest ancestor found */
    expect_pos(&cache, doc, "a[3]", false, KAPI_ENOTFOUND, 1, 7);
    expect_pos(&cache, doc, "a[2].zz", true, KAPI_ENOTFOUND, 1, 19);
    expect_pos(&cache, doc, "a.b", false, KAPI_ENOTFOUND, 1, 7);
    expect_pos(&cache, doc, "nope[0]", false, KAPI_ENOTFOUND, 1, 1);
    expect_pos(&cache, doc, "a[x]", false, KAPI_ENOTFOUND, 1, 7);
    /* truncated text never reads past its length */
    memset(&cache, 0, sizeof cache);
    expect_pos(&cache, "{\"a\": [1, {\"b", "a[1].b", false, KAPI_ENOTFOUND, 1, 11);
    memset(&cache, 0, sizeof cache);
    expect_pos(&cache, "", "a", false, KAPI_ENOTFOUND, 1, 1);
}

/* Lookups through one cache, in and out of document order, agree with
 * lookups from scratch. */
static void
test_jsonpos_cache(void **state)
{
    static const char *const paths[] = {
        "r[0]", "r[0].a",    "r[0].a[1]", "r[0].b",    "r[1]",    "r[1].b.c",
        "r[3]", "r[3].a[0]", "r[2]",      "r[2].a[2]", "r[9]",    "r[3].a[5]",
        "r",    "r[1].a[1]", "r[1].a",    "r[3].b.c",  "r[0].zz", "q",
        "qq",   "r[3]",      "r[2].b",    "r[2].b.c",
    };
    char doc[4096];
    size_t len = 0;
    jsonpos_cache cache = {0};

    (void)state;
    len += (size_t)snprintf(doc + len, sizeof doc - len, "{\"r\": [\n");
    for (int i = 0; i < 4; i++)
        len += (size_t)snprintf(
            doc + len, sizeof doc - len,
            "  {\"a\": [%d, \"x\\\"]\", [%d]],\n   \"b\": {\"c\": \"\xc3\xa9%d\"}}%s\n", i, i, i,
            i < 3 ? "," : "");
    len += (size_t)snprintf(doc + len, sizeof doc - len, "], \"q\": 1, \"qq\": 2}");
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < sizeof paths / sizeof *paths; k++) {
            size_t i = round ? sizeof paths / sizeof *paths - 1 - k : k;
            for (int key = 0; key < 2; key++) {
                unsigned l1, c1, l2, c2;
                kapi_status s1 = jsonpos_find(NULL, doc, len, paths[i], key, &l1, &c1);
                kapi_status s2 = jsonpos_find(&cache, doc, len, paths[i], key, &l2, &c2);
                if (s1 != s2 || l1 != l2 || c1 != c2)
                    fail_msg("%s: %d %u:%u uncached, %d %u:%u cached", paths[i], s1, l1, c1, s2, l2,
                             c2);
            }
        }
    }
    expect_pos(&cache, doc, "r[3].b.c", false, KAPI_OK, 9, 15);
    expect_pos(&cache, doc, "r[2].a[2][0]", false, KAPI_OK, 6, 22);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs),      cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_too_large),        cmocka_unit_test(test_short_error_buffer),
        cmocka_unit_test(test_full_config),      cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_path_resolution),  cmocka_unit_test(test_env_substitution),
        cmocka_unit_test(test_methods_and_host), cmocka_unit_test(test_example_config),
        cmocka_unit_test(test_upstreams),        cmocka_unit_test(test_upstream_defaults),
        cmocka_unit_test(test_target_urls),      cmocka_unit_test(test_target_path),
        cmocka_unit_test(test_free_null),        cmocka_unit_test(test_jsonpos),
        cmocka_unit_test(test_jsonpos_cache),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
