/* test_generation.c -- unit tests for core/generation.c with the real test
 * modules from $KAPI_TEST_MODULE_DIR (t_order plugins, t_fn functions):
 * a config file in a mkdtemp dir built into resolved chains (global plugins
 * first, checked by running a request through them), generation_print's
 * listing, build errors with file:line:col and JSON path (missing module,
 * plugin used as a function, create() refusing its config, ABI 2 module,
 * router error), refcounting, and publish/current/current_seq.
 *
 * "Nothing left loaded" is read from /proc/self/maps: module.c maps each
 * module from a private copy in a kapi-modules-* directory, unmapped by the
 * last release. Instances not destroyed show as leaks under LeakSanitizer
 * (the ASan build). It does not test config parsing (test_config.c), the
 * loader's own checks (test_module.c) nor the chain (test_chain.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "generation.h"

static kapi_host host;
static char tmpdir[PATH_MAX];
static char cfg_file[PATH_MAX + 16];
static const char *module_dir;

static void
host_log(kapi_req *r, kapi_log_level level, const char *fmt, ...)
{
    (void)r;
    (void)level;
    (void)fmt;
}

/* Module copies mapped into this process. */
static size_t
modules_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[PATH_MAX + 256];
    size_t n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "/kapi-modules-"))
            n++;
    fclose(f);
    return n;
}

/* Writes the config file: fixed lines 1-4, then GLOBAL (the "plugins"
 * value, may be NULL) on line 4 and ROUTES from line 5 on; ' stands for ". */
static void
write_config(const char *global, const char *routes)
{
    FILE *f = fopen(cfg_file, "w");
    assert_non_null(f);
    char text[4096];
    snprintf(text, sizeof(text),
             "{\n"
             "  'listen': ['127.0.0.1:0'],\n"
             "  'module_dirs': ['%s'],\n"
             "  'plugins': %s,\n"
             "  'routes': [\n"
             "%s\n"
             "  ]\n"
             "}\n",
             module_dir, global ? global : "[]", routes);
    for (char *c = text; *c; c++)
        if (*c == '\'')
            *c = '"';
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static generation *
build_ok(void)
{
    char err[1024] = "";
    generation *g = NULL;
    kapi_status st = generation_build(cfg_file, &host, &g, err, sizeof(err));
    if (st != KAPI_OK)
        fail_msg("build failed: %s", err);
    assert_non_null(g);
    return g;
}

/* Building must fail with STATUS and exactly WANT (after "<file>:"), and
 * leave no module loaded. */
static void
assert_build_fails(kapi_status status, const char *want)
{
    static generation stale;
    char err[1024] = "";
    generation *g = &stale; /* must come back NULL */
    assert_int_equal(generation_build(cfg_file, &host, &g, err, sizeof(err)), status);
    assert_null(g);
    size_t flen = strlen(cfg_file);
    if (strncmp(err, cfg_file, flen) != 0 || err[flen] != ':' || strcmp(err + flen + 1, want) != 0)
        fail_msg("error\n  %s\nwant\n  %s:%s", err, cfg_file, want);
    assert_int_equal(modules_mapped(), 0);
}

static int
group_setup(void **state)
{
    (void)state;
    module_dir = getenv("KAPI_TEST_MODULE_DIR");
    if (!module_dir) {
        print_error("KAPI_TEST_MODULE_DIR is not set\n");
        return -1;
    }
    req_fill_host(&host);
    host.log = host_log;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kapi-gen-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(cfg_file, sizeof(cfg_file), "%s/kapi.json", tmpdir);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    unlink(cfg_file);
    rmdir(tmpdir);
    return 0;
}

static const char two_routes[] =
    "    {'name': 'r1', 'methods': ['GET', 'POST'], 'path': '/a',\n"
    "     'plugins': [{'module': 't_order', 'config': {'tag': 'a'}},\n"
    "                 {'module': 't_order', 'config': {'tag': 'b'}}],\n"
    "     'target': {'function': 't_fn', 'config': {'body': 'A', 'status': 201}}},\n"
    "    {'path': '/b/*', 'host': 'Example.COM', 'strip_prefix': true,\n"
    "     'target': {'function': 't_fn'}}";

static const char global_g[] = "[{'module': 't_order', 'config': {'tag': 'g'}}]";

/* Runs one GET through ROUTE's chain in R (on BUF); the caller releases R
 * with req_release. */
static void
run_route(const gen_route *route, kapi_req *r, char *buf, size_t len)
{
    req_init(r, buf, len);
    r->method = KAPI_STR("GET");
    r->path = KAPI_STR("/a");
    r->id = KAPI_STR("id-1");
    assert_int_equal(chain_start(&route->chain, r), KAPI_OK);
    assert_int_equal(chain_run(&route->chain, r), CHAIN_DONE);
    chain_log(&route->chain, r);
}

static void
assert_header(const header_list *l, const char *name, const char *want)
{
    kapi_str v;
    assert_int_equal(req_headers_get(l, (kapi_str){name, strlen(name)}, 0, &v), KAPI_OK);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.ptr, want, v.len);
}

static void
test_build_resolves_chains(void **state)
{
    (void)state;
    write_config(global_g, two_routes);
    generation *g = build_ok();
    assert_int_equal(g->nroutes, 2);
    assert_int_equal(g->ninstances, 1 + 2 + 1 + 1); /* one instance per use */

    const gen_route *r1 = &g->routes[0], *r2 = &g->routes[1];
    assert_string_equal(r1->name, "r1");
    assert_string_equal(r2->name, "routes[1]");
    assert_false(r1->strip_prefix);
    assert_true(r2->strip_prefix);
    assert_int_equal(r1->chain.nplugins, 3);
    assert_int_equal(r2->chain.nplugins, 1);
    /* the global plugin is one instance, first in every chain */
    assert_ptr_equal(r1->chain.plugins[0].instance, r2->chain.plugins[0].instance);
    assert_ptr_not_equal(r1->chain.plugins[1].instance, r1->chain.plugins[2].instance);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(r1->chain.plugins[i].mod->name, "t_order");
    assert_string_equal(r1->chain.target.mod->name, "t_fn");
    assert_ptr_not_equal(r1->chain.target.instance, r2->chain.target.instance);

    /* run a request: the order and each instance's own config show */
    kapi_req r;
    char buf[4096];
    run_route(r1, &r, buf, sizeof(buf));
    assert_header(&r.headers, "x-order", "g,a,b");
    assert_header(&r.resp_headers, "x-order-resp", "b,a,g");
    assert_int_equal(r.status, 201);
    assert_int_equal(r.resp_body.len, 1);
    assert_memory_equal(r.resp_body.ptr, "A", 1);
    req_release(&r);
    run_route(r2, &r, buf, sizeof(buf));
    assert_header(&r.headers, "x-order", "g");
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.resp_body.ptr, "t_fn", 4);
    req_release(&r);

    /* the router was built from the same routes, in order */
    struct router_match m;
    assert_int_equal(router_match(g->router, KAPI_STR("POST"), KAPI_STR(""), KAPI_STR("/a"), &m),
                     ROUTER_MATCH);
    assert_int_equal(m.route, 0);
    assert_int_equal(
        router_match(g->router, KAPI_STR("GET"), KAPI_STR("example.com"), KAPI_STR("/b/x"), &m),
        ROUTER_MATCH);
    assert_int_equal(m.route, 1);
    assert_int_equal(
        router_match(g->router, KAPI_STR("GET"), KAPI_STR("other"), KAPI_STR("/b/x"), &m),
        ROUTER_NO_ROUTE);

    assert_true(modules_mapped() > 0);
    generation_release(g);
    assert_int_equal(modules_mapped(), 0);
}

static void
test_print(void **state)
{
    (void)state;
    write_config(global_g, two_routes);
    generation *g = build_ok();
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    generation_print(g, f);
    assert_int_equal(fclose(f), 0);
    assert_string_equal(out, "route r1: GET,POST /a\n"
                             "  chain: t_order (global) -> t_order -> t_order -> function:t_fn\n"
                             "route routes[1]: * example.com/b/* (strip_prefix)\n"
                             "  chain: t_order (global) -> function:t_fn\n");
    free(out);
    generation_release(g);
}

static void
test_missing_module(void **state)
{
    (void)state;
    write_config(global_g, "    {'path': '/a', 'plugins': [{'module': 't_order'},\n"
                           "                               {'module': 't_nonesuch'}],\n"
                           "     'target': {'function': 't_fn'}}");
    char want[PATH_MAX + 128];
    snprintf(want, sizeof(want),
             "7:32: routes[0].plugins[1].module: module \"t_nonesuch\": no t_nonesuch.so in %s",
             module_dir);
    assert_build_fails(KAPI_ENOTFOUND, want);
}

static void
test_missing_function(void **state)
{
    (void)state;
    write_config(global_g, "    {'path': '/a', 'target': {'function': 't_nonesuch'}}");
    char want[PATH_MAX + 128];
    snprintf(want, sizeof(want),
             "6:30: routes[0].target.function: module \"t_nonesuch\": no t_nonesuch.so in %s",
             module_dir);
    assert_build_fails(KAPI_ENOTFOUND, want);
}

static void
test_plugin_as_function(void **state)
{
    (void)state;
    write_config(global_g, "    {'path': '/a', 'plugins': [{'module': 't_order'}],\n"
                           "     'target': {'function': 't_order'}}");
    assert_build_fails(KAPI_ECONFIG, "7:16: routes[0].target.function: \"t_order\" is a plugin, "
                                     "expected a function");
}

static void
test_function_as_plugin(void **state)
{
    (void)state;
    write_config("[{'module': 't_fn'}]", "    {'path': '/a', 'target': {'function': 't_fn'}}");
    assert_build_fails(KAPI_ECONFIG,
                       "4:15: plugins[0].module: \"t_fn\" is a function, expected a plugin");
}

static void
test_create_error(void **state)
{
    (void)state;
    write_config(global_g, "    {'path': '/a',\n"
                           "     'plugins': [{'module': 't_order', 'config': {'tag': 'ok'}},\n"
                           "                 {'module': 't_order', 'config': {'tag': 5}}],\n"
                           "     'target': {'function': 't_fn'}}");
    assert_build_fails(KAPI_ECONFIG, "8:50: routes[0].plugins[1].config.tag: expected string");
}

static void
test_target_create_error(void **state)
{
    (void)state;
    write_config(global_g,
                 "    {'path': '/a', 'target': {'function': 't_fn', 'config': {'status': 'x'}}}");
    assert_build_fails(KAPI_ECONFIG, "6:61: routes[0].target.config.status: expected integer");
}

static void
test_abi2_module(void **state)
{
    (void)state;
    write_config(global_g, "    {'path': '/a', 'plugins': [{'module': 't_abi2'}],\n"
                           "     'target': {'function': 't_fn'}}");
    char want[PATH_MAX + 256];
    snprintf(want, sizeof(want),
             "6:32: routes[0].plugins[0].module: %s/t_abi2.so: built for kapi ABI 2.0, this kapi "
             "provides ABI %d.%d (major versions must match)",
             module_dir, KAPI_ABI_MAJOR, KAPI_ABI_MINOR);
    assert_build_fails(KAPI_EABI, want);
}

/* Every instance is created before the router refuses the routes. */
static void
test_router_error(void **state)
{
    (void)state;
    write_config(global_g, "    {'path': '/a', 'target': {'function': 't_fn'}},\n"
                           "    {'path': '/a', 'target': {'function': 't_fn'}}");
    char err[1024] = "";
    generation *g = NULL;
    assert_int_equal(generation_build(cfg_file, &host, &g, err, sizeof(err)), KAPI_ECONFIG);
    assert_null(g);
    assert_non_null(strstr(err, cfg_file));
    assert_non_null(strstr(err, "routes[1]"));
    assert_int_equal(modules_mapped(), 0);
}

static void
test_config_error(void **state)
{
    (void)state;
    FILE *f = fopen(cfg_file, "w");
    assert_non_null(f);
    fputs("{\"listen\": 5}", f);
    assert_int_equal(fclose(f), 0);
    char err[1024] = "";
    generation *g = NULL;
    assert_int_equal(generation_build(cfg_file, &host, &g, err, sizeof(err)), KAPI_ECONFIG);
    assert_null(g);
    assert_int_equal(strncmp(err, cfg_file, strlen(cfg_file)), 0);
}

static void
test_refcount(void **state)
{
    (void)state;
    write_config(global_g, two_routes);
    generation *g = build_ok();
    assert_int_equal(atomic_load(&g->refs), 1);
    assert_ptr_equal(generation_acquire(g), g);
    assert_int_equal(atomic_load(&g->refs), 2);
    generation_release(g);
    assert_int_equal(atomic_load(&g->refs), 1);
    assert_true(modules_mapped() > 0); /* still alive: its modules stay */
    kapi_req r;
    char buf[4096];
    run_route(&g->routes[0], &r, buf, sizeof(buf));
    req_release(&r);
    generation_release(g);
    assert_int_equal(modules_mapped(), 0);
    generation_release(NULL);
}

static void
test_ids_increase(void **state)
{
    (void)state;
    write_config(NULL, "    {'path': '/a', 'target': {'function': 't_fn'}}");
    generation *g1 = build_ok();
    generation *g2 = build_ok();
    assert_true(g1->id > 0);
    assert_int_equal(g2->id, g1->id + 1);
    generation_release(g1);
    generation_release(g2);
}

static void
test_publish_and_current(void **state)
{
    (void)state;
    write_config(global_g, two_routes);
    /* first in this process to publish */
    assert_null(generation_current());
    uint64_t seq0 = generation_current_seq();

    generation *g1 = build_ok();
    generation_publish(g1); /* takes over the build's reference */
    uint64_t seq1 = generation_current_seq();
    assert_true(seq1 != seq0);
    assert_int_equal(atomic_load(&g1->refs), 1);
    generation *cur = generation_current();
    assert_ptr_equal(cur, g1);
    assert_int_equal(atomic_load(&g1->refs), 2);
    assert_int_equal(generation_current_seq(), seq1); /* reading changes nothing */

    /* cur is a request in flight while g2 is published */
    generation *g2 = build_ok();
    generation_publish(g2);
    uint64_t seq2 = generation_current_seq();
    assert_true(seq2 != seq1);
    assert_int_equal(atomic_load(&g1->refs), 1);
    assert_int_equal(g1->nroutes, 2); /* still alive */
    generation *cur2 = generation_current();
    assert_ptr_equal(cur2, g2);
    generation_release(cur2);
    generation_release(cur); /* the last request of g1: retired */
    assert_int_equal(atomic_load(&g2->refs), 1);
    assert_true(modules_mapped() > 0);

    generation_publish(NULL); /* shutdown: g2 retired */
    assert_true(generation_current_seq() != seq2);
    assert_null(generation_current());
    assert_int_equal(modules_mapped(), 0);
}

int
main(void)
{
    /* test_publish_and_current first: it needs nothing published yet */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_and_current),
        cmocka_unit_test(test_build_resolves_chains),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_missing_module),
        cmocka_unit_test(test_missing_function),
        cmocka_unit_test(test_plugin_as_function),
        cmocka_unit_test(test_function_as_plugin),
        cmocka_unit_test(test_create_error),
        cmocka_unit_test(test_target_create_error),
        cmocka_unit_test(test_abi2_module),
        cmocka_unit_test(test_router_error),
        cmocka_unit_test(test_config_error),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_ids_increase),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
