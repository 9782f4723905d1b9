/* test_path.c -- unit tests of core/path.c: a table of raw paths and the
 * normalized path (or KAPI_EINVAL) each must give, covering the traversal
 * attacks routing depends on, then the buffer contract (OUT of exactly
 * RAWLEN + 1 bytes, never reading past RAWLEN). It does not test routing
 * (test_router.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "path.h"

typedef struct path_case {
    const char *raw;
    const char *want; /* NULL: KAPI_EINVAL */
} path_case;

static const path_case cases[] = {
    /* plain paths and trailing slashes */
    {"/", "/"},
    {"/a", "/a"},
    {"/a/", "/a/"},
    {"/a/b/c", "/a/b/c"},
    {"/a/b/c/", "/a/b/c/"},
    /* repeated slashes */
    {"//admin", "/admin"},
    {"///a//b///", "/a/b/"},
    {"//", "/"},
    /* dot segments */
    {"/public/../admin", "/admin"},
    {"/a/./b/../../c", "/c"},
    {"/..", "/"},
    {"/../../a", "/a"},
    {"/./a", "/a"},
    {"/a/.", "/a/"},
    {"/a/..", "/"},
    {"/a/b/..", "/a/"},
    {"/a/b/../", "/a/"},
    {"/a//..//b", "/b"},
    {"/public/./../admin", "/admin"},
    {"/a/.../b", "/a/.../b"}, /* three dots are an ordinary name */
    {"/a/.b/..c/c.", "/a/.b/..c/c."},
    /* encoded dots are dots: decoding happens before dot removal */
    {"/public/%2e%2e/admin", "/admin"},
    {"/public/%2E%2e/admin", "/admin"},
    {"/public/%2e%2E/admin", "/admin"},
    {"/public/%2E%2E/admin", "/admin"},
    {"/public/.%2e/admin", "/admin"},
    {"/public/%2e./admin", "/admin"},
    {"/%2e/a", "/a"},
    {"/a/%2e", "/a/"},
    {"/a/b/%2e%2e/%2E%2E/%2e%2e/c", "/c"},
    /* an encoded slash is data, never a separator */
    {"/public/..%2Fadmin", "/public/..%2Fadmin"},
    {"/public/..%2fadmin", "/public/..%2Fadmin"},
    {"/public/%2e%2e%2fadmin", "/public/..%2Fadmin"},
    {"/a%2Fb", "/a%2Fb"},
    {"/a/%2F/../b", "/a/b"},
    {"/%2f", "/%2F"},
    /* decoding happens once and "%25" stays encoded: never a second decode */
    {"/%252e%252e/admin", "/%252e%252e/admin"},
    {"/a%25", "/a%25"},
    {"/%252F", "/%252F"},
    {"/%252f/..", "/"},
    /* other escapes, either case */
    {"/%41%62%63", "/Abc"},
    {"/%7e%7E", "/~~"},
    {"/caf%c3%a9/%C3%A9", "/caf\xc3\xa9/\xc3\xa9"},
    {"/a%20b", "/a b"},
    /* malformed */
    {"/%00", NULL},
    /* control bytes, raw or encoded: CR LF would forge log or request lines */
    {"/a%0d%0aX-Injected:%20yes", NULL},
    {"/a%0Ab", NULL},
    {"/a%1b%5b31m", NULL},
    {"/a%7f", NULL},
    {"/a\tb", NULL},
    {"/a\x01", NULL},
    {"/a%00b", NULL},
    {"/a%", NULL},
    {"/a%4", NULL},
    {"/%G1", NULL},
    {"/%1g", NULL},
    {"/%%41", NULL},
    {"/a/%2", NULL},
    {"a/b", NULL},
    {"", NULL},
    {"%2fa", NULL},
    {".", NULL},
};

/* Normalizes RAWLEN bytes of RAW from an exact-size heap copy into an
 * exact-size heap OUT, so ASan catches any read or write past the contract. */
static kapi_status
normalize(const char *raw, size_t rawlen, char **out, size_t *outlen)
{
    char *in = malloc(rawlen ? rawlen : 1);
    assert_non_null(in);
    memcpy(in, raw, rawlen);
    *out = malloc(rawlen + 1);
    assert_non_null(*out);
    *outlen = SIZE_MAX;
    kapi_status st = path_normalize(in, rawlen, *out, outlen);
    free(in);
    return st;
}

static void
test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const path_case *c = &cases[i];
        char *out;
        size_t outlen;
        kapi_status st = normalize(c->raw, strlen(c->raw), &out, &outlen);
        if (!c->want && st != KAPI_EINVAL)
            fail_msg("\"%s\": want EINVAL, got %d \"%s\"", c->raw, st, st ? "" : out);
        if (c->want && (st != KAPI_OK || strcmp(out, c->want) != 0 || outlen != strlen(c->want)))
            fail_msg("\"%s\": want \"%s\", got %d \"%s\" (len %zu)", c->raw, c->want, st,
                     st ? "" : out, outlen);
        free(out);
    }
}

/* A raw NUL byte cannot be written in the table's C strings. */
static void
test_raw_nul_is_rejected(void **state)
{
    (void)state;
    char *out;
    size_t outlen;
    assert_int_equal(normalize("/a\0b", 4, &out, &outlen), KAPI_EINVAL);
    free(out);
}

/* Bytes after RAWLEN are not looked at: the escape is cut, the dot segment
 * is not there. */
static void
test_stops_at_rawlen(void **state)
{
    (void)state;
    char *out;
    size_t outlen;
    assert_int_equal(normalize("/a%41", 3, &out, &outlen), KAPI_EINVAL);
    free(out);

    assert_int_equal(normalize("/ab/../c", 4, &out, &outlen), KAPI_OK);
    assert_string_equal(out, "/ab/");
    assert_int_equal(outlen, 4);
    free(out);
}

static void
test_null_arguments(void **state)
{
    (void)state;
    char out[8];
    size_t outlen;
    assert_int_equal(path_normalize(NULL, 1, out, &outlen), KAPI_EINVAL);
    assert_int_equal(path_normalize("/", 1, NULL, &outlen), KAPI_EINVAL);
    assert_int_equal(path_normalize("/", 1, out, NULL), KAPI_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_raw_nul_is_rejected),
        cmocka_unit_test(test_stops_at_rawlen),
        cmocka_unit_test(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
