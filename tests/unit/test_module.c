/* test_module.c -- unit tests of core/module.c with real test modules
 * (tests/modules, found through $KAPI_TEST_MODULE_DIR): the search, the
 * refusal of writable files, every handshake error with its exact message,
 * sharing of an unchanged file, a private copy for a changed one, and
 * release from several threads. Run under ASan/LSan it also shows that
 * failed and released loads leak nothing.
 *
 * It calls a few hooks of t_order and t_fn to prove the host table reaches
 * a loaded module; the chain's behaviour is test_chain's business. Files it
 * needs to mutate are copied into a private temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "module.h"
#include "request.h"

static kapi_host host;
static const char *moddir; /* the built test modules */
static char tmpdir[PATH_MAX];
static char err[512];

/* ---- the host table: request.c's accessors plus stubs ---- */

static void
stub_log(kapi_req *r, kapi_log_level level, const char *fmt, ...)
{
    (void)r;
    (void)level;
    (void)fmt;
}

static kapi_status
stub_pause(kapi_req *r, uint32_t timeout_ms, kapi_token **out)
{
    (void)r;
    (void)timeout_ms;
    (void)out;
    return KAPI_EINVAL;
}

static kapi_status
stub_resume(kapi_token *token)
{
    (void)token;
    return KAPI_OK;
}

/* ---- helpers ---- */

static void
path_in(char *out, const char *dir, const char *file)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, file);
    assert_true(n > 0 && n < PATH_MAX);
}

/* Copies SRC to DST (replacing it in place when it exists) and sets MODE. */
static void
copy_file(const char *src, const char *dst, mode_t mode)
{
    int in = open(src, O_RDONLY);
    assert_true(in >= 0);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(out >= 0);
    char buf[8192];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(fchmod(out, mode), 0);
    assert_int_equal(close(out), 0);
}

/* Copies the built module NAME.so into tmpdir as AS.so with MODE. */
static void
stage(const char *name, const char *as, mode_t mode)
{
    char src[PATH_MAX], dst[PATH_MAX], file[128];
    snprintf(file, sizeof(file), "%s.so", name);
    path_in(src, moddir, file);
    snprintf(file, sizeof(file), "%s.so", as);
    path_in(dst, tmpdir, file);
    copy_file(src, dst, mode);
}

/* Moves FILE's mtime by SECONDS, so it looks rebuilt even within the
 * filesystem's timestamp granularity. */
static void
bump_mtime(const char *file, int seconds)
{
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    ts[1].tv_sec += seconds;
    assert_int_equal(utimensat(AT_FDCWD, file, ts, 0), 0);
}

static module *
load_from(const char *dir, const char *name)
{
    const char *dirs[] = {dir};
    module *m = NULL;
    kapi_status st = module_load(dirs, 1, name, &host, &m, err, sizeof(err));
    if (st != KAPI_OK)
        fail_msg("loading %s from %s: %s", name, dir, err);
    assert_string_equal(err, "");
    assert_non_null(m);
    return m;
}

/* Loading NAME from DIR fails with WANT and exactly the message FMT. */
static void expect_error(const char *dir, const char *name, kapi_status want, const char *fmt, ...)
    KAPI_PRINTF(4, 5);

static void
expect_error(const char *dir, const char *name, kapi_status want, const char *fmt, ...)
{
    char expected[sizeof(err)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(expected, sizeof(expected), fmt, ap);
    va_end(ap);
    const char *dirs[] = {dir};
    module *m = (module *)&m; /* must be cleared */
    assert_int_equal(module_load(dirs, 1, name, &host, &m, err, sizeof(err)), want);
    assert_null(m);
    assert_string_equal(err, expected);
}

/* The line of /proc/self/maps that maps a file whose path holds NEEDLE
 * (and, when DELETED, is marked deleted); false when none. */
static bool
mapped(const char *needle, bool deleted, char *line, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    bool found = false;
    while (!found && fgets(line, (int)len, f))
        found = strstr(line, needle) && (!deleted || strstr(line, "(deleted)"));
    fclose(f);
    return found;
}

/* A request in PHASE on BUF, for calling hooks directly. */
static void
req_in(kapi_req *r, void *buf, size_t len, req_phase phase)
{
    req_init(r, buf, len);
    r->phase = phase;
}

/* ---- setup ---- */

static int
group_setup(void **state)
{
    (void)state;
    moddir = getenv("KAPI_TEST_MODULE_DIR");
    if (!moddir || !moddir[0]) {
        fprintf(stderr, "KAPI_TEST_MODULE_DIR is not set\n");
        return -1;
    }
    req_fill_host(&host);
    host.log = stub_log;
    host.pause = stub_pause;
    host.resume = stub_resume;
    return 0;
}

static int
setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_module-XXXXXX", t && t[0] ? t : "/tmp");
    err[0] = '\0';
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Removes tmpdir and what the tests put in it (files and empty dirs). */
static int
teardown(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- finding the file ---- */

static void
test_not_found_lists_dirs(void **state)
{
    (void)state;
    const char *dirs[] = {"/nonexistent-kapi", moddir};
    module *m = NULL;
    assert_int_equal(module_load(dirs, 2, "t_missing", &host, &m, err, sizeof(err)),
                     KAPI_ENOTFOUND);
    assert_null(m);
    char expected[sizeof(err)];
    snprintf(expected, sizeof(expected), "module \"t_missing\": no t_missing.so in %s, %s",
             "/nonexistent-kapi", moddir);
    assert_string_equal(err, expected);
}

static void
test_invalid_names(void **state)
{
    (void)state;
    /* Each name, and how the message shows it (on one line). */
    const char *bad[][2] = {
        {"../t_order", "../t_order"}, {"sub/t_order", "sub/t_order"}, {"", ""},
        {"t..order", "t..order"},     {"t order", "t order"},         {"t\norder", "t?order"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error(moddir, bad[i][0], KAPI_EINVAL,
                     "module \"%s\": invalid name (use letters, digits, '_', '-' and '.', "
                     "without \"..\")",
                     bad[i][1]);
}

static void
test_search_order(void **state)
{
    (void)state;
    stage("t_order", "t_order", 0644);
    char want[PATH_MAX];
    module *a, *b;
    const char *first_tmp[] = {tmpdir, moddir};
    const char *first_mod[] = {moddir, tmpdir};
    assert_int_equal(module_load(first_tmp, 2, "t_order", &host, &a, err, sizeof(err)), KAPI_OK);
    assert_int_equal(module_load(first_mod, 2, "t_order", &host, &b, err, sizeof(err)), KAPI_OK);
    path_in(want, tmpdir, "t_order.so");
    assert_string_equal(module_path(a), want);
    path_in(want, moddir, "t_order.so");
    assert_string_equal(module_path(b), want);
    assert_ptr_not_equal(module_desc(a), module_desc(b)); /* two files, two loads */
    module_release(a);
    module_release(b);
}

static void
test_writable_refused(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, tmpdir, "t_order.so");

    stage("t_order", "t_order", 0664);
    expect_error(tmpdir, "t_order", KAPI_EINVAL,
                 "%s: refusing a group- or world-writable module (mode 0664)", path);
    assert_int_equal(chmod(path, 0646), 0);
    expect_error(tmpdir, "t_order", KAPI_EINVAL,
                 "%s: refusing a group- or world-writable module (mode 0646)", path);
    assert_int_equal(chmod(path, 0666), 0);
    expect_error(tmpdir, "t_order", KAPI_EINVAL,
                 "%s: refusing a group- or world-writable module (mode 0666)", path);

    /* The same bytes load once only the owner may write them. */
    assert_int_equal(chmod(path, 0644), 0);
    module_release(load_from(tmpdir, "t_order"));
}

static void
test_not_regular_file(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, tmpdir, "t_dir.so");
    assert_int_equal(mkdir(path, 0700), 0);
    expect_error(tmpdir, "t_dir", KAPI_EINVAL, "%s: not a regular file", path);
}

/* ---- the handshake ---- */

static void
test_not_a_shared_object(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, tmpdir, "t_junk.so");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0644), 0);

    const char *dirs[] = {tmpdir};
    module *m = NULL;
    assert_int_equal(module_load(dirs, 1, "t_junk", &host, &m, err, sizeof(err)), KAPI_EIO);
    assert_null(m);
    char prefix[PATH_MAX + 32];
    snprintf(prefix, sizeof(prefix), "%s: cannot load: ", path);
    assert_memory_equal(err, prefix, strlen(prefix)); /* then dlerror()'s own words */
    assert_true(strlen(err) > strlen(prefix));
}

static void
test_missing_entry_symbol(void **state)
{
    (void)state;
    expect_error(moddir, "t_nosym", KAPI_EINVAL,
                 "%s/t_nosym.so: no entry symbol kapi_module_entry (not a kapi module? build it "
                 "with KAPI_MODULE())",
                 moddir);
}

static void
test_null_entry(void **state)
{
    (void)state;
    expect_error(moddir, "t_nullentry", KAPI_EINVAL,
                 "%s/t_nullentry.so: entry returned no descriptor", moddir);
}

static void
test_abi_major_mismatch(void **state)
{
    (void)state;
    expect_error(moddir, "t_abi2", KAPI_EABI,
                 "%s/t_abi2.so: built for kapi ABI 2.0, this kapi provides ABI %d.%d (major "
                 "versions must match)",
                 moddir, KAPI_ABI_MAJOR, KAPI_ABI_MINOR);
}

static void
test_abi_newer_minor(void **state)
{
    (void)state;
    expect_error(moddir, "t_newer_minor", KAPI_EABI,
                 "%s/t_newer_minor.so: needs kapi ABI %d.%d, this kapi provides ABI %d.%d "
                 "(upgrade kapi or rebuild the module against this kapi's SDK)",
                 moddir, KAPI_ABI_MAJOR, KAPI_ABI_MINOR + 1, KAPI_ABI_MAJOR, KAPI_ABI_MINOR);
}

static void
test_invalid_descriptors(void **state)
{
    (void)state;
    expect_error(moddir, "t_noname", KAPI_EINVAL, "%s/t_noname.so: invalid descriptor: no name",
                 moddir);
    expect_error(moddir, "t_badkind", KAPI_EINVAL,
                 "%s/t_badkind.so: invalid descriptor: kind is neither KAPI_MODULE_PLUGIN nor "
                 "KAPI_MODULE_FUNCTION",
                 moddir);
    expect_error(moddir, "t_nohandle", KAPI_EINVAL,
                 "%s/t_nohandle.so: invalid descriptor: a function without handle", moddir);
}

/* ---- good modules ---- */

static void
test_good_plugin(void **state)
{
    (void)state;
    module *m = load_from(moddir, "t_order");
    const kapi_module *d = module_desc(m);
    char want[PATH_MAX];
    path_in(want, moddir, "t_order.so");
    assert_string_equal(module_path(m), want);
    assert_string_equal(d->name, "t_order");
    assert_int_equal(d->kind, KAPI_MODULE_PLUGIN);
    assert_int_equal(d->abi_major, KAPI_ABI_MAJOR);

    /* Config errors name the key. */
    kapi_error kerr = {0};
    void *inst = NULL;
    assert_int_equal(d->create(KAPI_STR("{\"tag\": 1}"), &inst, &kerr), KAPI_ECONFIG);
    assert_string_equal(kerr.path, "tag");
    assert_string_equal(kerr.message, "expected string");

    /* Two instances append in the order they run, through our host table. */
    void *a = NULL, *b = NULL;
    assert_int_equal(d->create(KAPI_STR("{\"tag\": \"a\"}"), &a, &kerr), KAPI_OK);
    assert_int_equal(d->create(KAPI_STR("{\"tag\": \"b\", \"respond\": 403}"), &b, &kerr), KAPI_OK);
    char buf[4096];
    kapi_req r;
    req_in(&r, buf, sizeof(buf), REQ_PHASE_ACCESS);
    assert_int_equal(d->on_access(a, &r), KAPI_CONTINUE);
    assert_int_equal(d->on_access(b, &r), KAPI_DONE);
    kapi_str v;
    assert_int_equal(req_headers_get(&r.headers, KAPI_STR("x-order"), 0, &v), KAPI_OK);
    assert_string_equal(v.ptr, "a,b");
    assert_int_equal(r.status, 403);
    assert_string_equal(r.resp_body.ptr, "denied by b");
    r.phase = REQ_PHASE_RESPONSE;
    assert_int_equal(d->on_response(b, &r), KAPI_CONTINUE);
    assert_int_equal(d->on_response(a, &r), KAPI_CONTINUE);
    assert_int_equal(req_headers_get(&r.resp_headers, KAPI_STR("x-order-resp"), 0, &v), KAPI_OK);
    assert_string_equal(v.ptr, "b,a");
    req_release(&r);
    d->destroy(a);
    d->destroy(b);
    module_release(m);
}

static void
test_good_function(void **state)
{
    (void)state;
    module *m = load_from(moddir, "t_fn");
    const kapi_module *d = module_desc(m);
    assert_string_equal(d->name, "t_fn");
    assert_int_equal(d->kind, KAPI_MODULE_FUNCTION);

    void *inst = NULL;
    kapi_error kerr = {0};
    assert_int_equal(d->create(KAPI_STR("{\"body\": \"hi\", \"status\": 201}"), &inst, &kerr),
                     KAPI_OK);
    char buf[4096];
    kapi_req r;
    req_in(&r, buf, sizeof(buf), REQ_PHASE_HANDLE);
    assert_int_equal(d->handle(inst, &r), KAPI_DONE);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.resp_body.ptr, "hi");
    kapi_str v;
    assert_int_equal(req_headers_get(&r.resp_headers, KAPI_STR("x-fn-version"), 0, &v), KAPI_OK);
    assert_string_equal(v.ptr, "v1");
    req_release(&r);
    d->destroy(inst);
    module_release(m);
}

/* ---- sharing and reloading ---- */

static void
test_unchanged_file_is_shared(void **state)
{
    (void)state;
    module *a = load_from(moddir, "t_order");
    module *b = load_from(moddir, "t_order");
    assert_ptr_equal(a, b);
    assert_ptr_equal(module_desc(a), module_desc(b));
    module_release(a);
    /* Still loaded for the second reference. */
    assert_string_equal(module_desc(b)->name, "t_order");
    module_release(b);
}

/* Answers one request with function module M and returns x-fn-version. */
static void
expect_fn_version(module *m, const char *version)
{
    const kapi_module *d = module_desc(m);
    void *inst = NULL;
    kapi_error kerr = {0};
    assert_int_equal(d->create(KAPI_STR("{}"), &inst, &kerr), KAPI_OK);
    char buf[4096];
    kapi_req r;
    req_in(&r, buf, sizeof(buf), REQ_PHASE_HANDLE);
    assert_int_equal(d->handle(inst, &r), KAPI_DONE);
    kapi_str v;
    assert_int_equal(req_headers_get(&r.resp_headers, KAPI_STR("x-fn-version"), 0, &v), KAPI_OK);
    assert_string_equal(v.ptr, version);
    req_release(&r);
    d->destroy(inst);
}

static void
test_changed_file_loads_new_copy(void **state)
{
    (void)state;
    char path[PATH_MAX];
    path_in(path, tmpdir, "t_fn.so");
    stage("t_fn", "t_fn", 0644);
    module *v1 = load_from(tmpdir, "t_fn");

    /* Same bytes, new mtime ("touched"): a new load, not the cached one. */
    bump_mtime(path, 10);
    module *touched = load_from(tmpdir, "t_fn");
    assert_ptr_not_equal(touched, v1);
    assert_ptr_not_equal(module_desc(touched), module_desc(v1));

    /* Rebuilt in place with new code: the new load runs it while the old
     * one, still referenced, keeps answering with the old code. In-place
     * rewriting is safe because only the private copies are mapped. */
    stage("t_fn_v2", "t_fn", 0644);
    bump_mtime(path, 20);
    module *v2 = load_from(tmpdir, "t_fn");
    assert_ptr_not_equal(module_desc(v2), module_desc(v1));
    assert_ptr_not_equal(module_desc(v2), module_desc(touched));
    expect_fn_version(v2, "v2");
    expect_fn_version(v1, "v1");

    /* The rebuilt file is cached like any other. */
    module *again = load_from(tmpdir, "t_fn");
    assert_ptr_equal(again, v2);

    module_release(v1);
    module_release(touched);
    module_release(v2);
    module_release(again);
}

static void
test_private_copy_is_unlinked(void **state)
{
    (void)state;
    char line[PATH_MAX + 256];
    module *m = load_from(moddir, "t_order");

    /* The code mapped is a deleted NAME.<serial>.so in the private dir,
     * never the original file. */
    assert_true(mapped("/kapi-modules-", true, line, sizeof(line)));
    assert_non_null(strstr(line, "/t_order."));
    char original[PATH_MAX];
    path_in(original, moddir, "t_order.so");
    assert_false(mapped(original, false, line, sizeof(line)));

    /* Find the private dir from the mapping, to see it go away. */
    assert_true(mapped("/kapi-modules-", true, line, sizeof(line)));
    char *start = strchr(line, '/');
    assert_non_null(start);
    char *slash = strstr(start, "/t_order.");
    assert_non_null(slash);
    *slash = '\0';
    struct stat st;
    assert_int_equal(stat(start, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    module_release(m);
    assert_false(mapped("/kapi-modules-", false, line, sizeof(line)));
    assert_int_equal(stat(start, &st), -1);
    assert_int_equal(errno, ENOENT);
}

/* ---- threads ---- */

#define NTHREADS 8

static void *
release_one(void *arg)
{
    module_release(arg);
    return NULL;
}

static void
test_release_from_threads(void **state)
{
    (void)state;
    module *m[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        m[i] = load_from(moddir, "t_order");
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, release_one, m[i]), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    char line[PATH_MAX + 256];
    assert_false(mapped("/kapi-modules-", false, line, sizeof(line)));

    module_release(NULL); /* a no-op */
    module_release(load_from(moddir, "t_order"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_not_found_lists_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writable_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_shared_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_entry_symbol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi_major_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abi_newer_minor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unchanged_file_is_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_file_loads_new_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_private_copy_is_unlinked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_from_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
