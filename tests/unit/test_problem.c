/* test_problem.c -- unit tests for core/problem.c: the problem+json body
 * parses with jansson and carries type, the title for its status, status,
 * the escaped detail and the request id; the Content-Type header; an
 * earlier response replaced; a very long detail or id cut with the JSON
 * still valid. It does not decide which status an error gets (callers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "problem.h"

typedef struct fixture {
    kapi_req r;
    char buf[2048];
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    req_init(&f->r, f->buf, sizeof(f->buf));
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture *f = *state;
    req_release(&f->r);
    free(f);
    return 0;
}

/* R's response body parsed; the caller json_decref's it. */
static json_t *
body_json(const kapi_req *r)
{
    json_error_t jerr;
    json_t *v = json_loadb(r->resp_body.ptr, r->resp_body.len, 0, &jerr);
    if (!v)
        fail_msg("body is not JSON (%s): %.*s", jerr.text, (int)r->resp_body.len, r->resp_body.ptr);
    assert_true(json_is_object(v));
    assert_int_equal(json_object_size(v), 5);
    return v;
}

static const char *
member(json_t *v, const char *key)
{
    json_t *m = json_object_get(v, key);
    if (!json_is_string(m))
        fail_msg("\"%s\" missing or not a string", key);
    return json_string_value(m);
}

static void
assert_problem(const kapi_req *r, int status, const char *title, const char *detail, const char *id)
{
    assert_int_equal(r->status, status);
    assert_int_equal(r->resp_headers.n, 1);
    assert_string_equal(r->resp_headers.v[0].name.ptr, "Content-Type");
    assert_string_equal(r->resp_headers.v[0].value.ptr, "application/problem+json");
    json_t *v = body_json(r);
    assert_string_equal(member(v, "type"), "about:blank");
    assert_string_equal(member(v, "title"), title);
    assert_true(json_is_integer(json_object_get(v, "status")));
    assert_int_equal(json_integer_value(json_object_get(v, "status")), status);
    assert_string_equal(member(v, "detail"), detail);
    assert_string_equal(member(v, "request_id"), id);
    json_decref(v);
}

static void
test_titles(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *title;
    } cases[] = {
        {400, "Bad Request"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {413, "Content Too Large"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {200, "Unknown"},
        {418, "Unknown"},
        {599, "Unknown"},
        {0, "Unknown"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(problem_title(cases[i].status), cases[i].title);
}

static void
test_body_per_status(void **state)
{
    fixture *f = *state;
    static const int statuses[] = {404, 413, 431, 503, 504, 418};
    assert_int_equal(req_strdup(&f->r, "req-42", 6, &f->r.id), KAPI_OK);
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        int s = statuses[i];
        assert_int_equal(problem_respond(&f->r, s, "something"), KAPI_OK);
        assert_problem(&f->r, s, problem_title(s), "something", "req-42");
    }
}

static void
test_detail_and_id_escaped(void **state)
{
    fixture *f = *state;
    const char *detail = "a \"quoted\" path\\with\nnewline\tand \x01 and \xc3\xa9";
    assert_int_equal(req_strdup(&f->r, "id\"1\n", 5, &f->r.id), KAPI_OK);
    assert_int_equal(problem_respond(&f->r, 400, detail), KAPI_OK);
    /* bytes >= 0x80 come back as U+00XX each: é (c3 a9) as "Ã©" */
    assert_problem(&f->r, 400, "Bad Request",
                   "a \"quoted\" path\\with\nnewline\tand \x01 and \xc3\x83\xc2\xa9", "id\"1\n");
}

static void
test_no_id_no_detail(void **state)
{
    fixture *f = *state;
    assert_int_equal(problem_respond(&f->r, 404, NULL), KAPI_OK);
    assert_problem(&f->r, 404, "Not Found", "", "");
}

static void
test_replaces_earlier_response(void **state)
{
    fixture *f = *state;
    const kapi_header h[] = {
        {KAPI_STR("Content-Type"), KAPI_STR("text/plain")},
        {KAPI_STR("X-Upstream"), KAPI_STR("yes")},
    };
    assert_int_equal(req_set_response(&f->r, 200, h, 2, KAPI_STR("hello")), KAPI_OK);
    assert_int_equal(
        req_headers_add(&f->r, &f->r.resp_headers, KAPI_STR("Set-Cookie"), KAPI_STR("a=b")),
        KAPI_OK);
    assert_int_equal(problem_respond(&f->r, 502, "upstream failed"), KAPI_OK);
    assert_problem(&f->r, 502, "Bad Gateway", "upstream failed", "");
}

/* Escapes that are 1, 2 and 6 bytes long, so the cut point falls
 * everywhere; DECODED is what the whole detail reads back as (0xff as
 * U+00FF, two bytes in UTF-8). */
static void
test_long_detail_cut_json_valid(void **state)
{
    fixture *f = *state;
    static const char *units[][2] = {
        {"a", "a"}, {"\"", "\""}, {"\n", "\n"}, {"\xff", "\xc3\xbf"}, {"\\", "\\"}};
    char detail[2000], decoded[4000];
    size_t n = 0, dn = 0;
    for (size_t i = 0; n + 1 < sizeof(detail); i++, n++) {
        detail[n] = units[i % 5][0][0];
        size_t ulen = strlen(units[i % 5][1]);
        memcpy(decoded + dn, units[i % 5][1], ulen);
        dn += ulen;
    }
    detail[n] = '\0';
    decoded[dn] = '\0';
    assert_int_equal(req_strdup(&f->r, "id-1", 4, &f->r.id), KAPI_OK);
    for (size_t len = 900; len < 1000; len++) {
        char saved = detail[len];
        detail[len] = '\0';
        assert_int_equal(problem_respond(&f->r, 500, detail), KAPI_OK);
        assert_true(f->r.resp_body.len < 1024);
        json_t *v = body_json(&f->r);
        const char *got = member(v, "detail");
        size_t glen = strlen(got);
        size_t whole = len; /* what all LEN bytes would read back as */
        for (size_t i = 0; i < len; i++)
            whole += detail[i] == '\xff';
        assert_true(glen > 300); /* cut, not dropped */
        assert_true(glen < whole);
        assert_memory_equal(got, decoded, glen);
        assert_string_equal(member(v, "request_id"), "id-1");
        assert_int_equal(json_integer_value(json_object_get(v, "status")), 500);
        json_decref(v);
        detail[len] = saved;
    }
}

static void
test_long_id_cut_json_valid(void **state)
{
    fixture *f = *state;
    char id[3000];
    memset(id, '"', sizeof(id));
    assert_int_equal(req_strdup(&f->r, id, sizeof(id), &f->r.id), KAPI_OK);
    char detail[2000];
    memset(detail, '\n', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    assert_int_equal(problem_respond(&f->r, 503, detail), KAPI_OK);
    json_t *v = body_json(&f->r);
    assert_string_equal(member(v, "title"), "Service Unavailable");
    json_decref(v);
    assert_int_equal(problem_respond(&f->r, 503, "short"), KAPI_OK);
    v = body_json(&f->r);
    assert_string_equal(member(v, "detail"), "short");
    assert_true(strlen(member(v, "request_id")) > 100);
    json_decref(v);
}

static void
test_invalid_status_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(problem_respond(&f->r, 600, "x"), KAPI_EINVAL);
    assert_int_equal(problem_respond(&f->r, 100, "x"), KAPI_EINVAL);
    assert_int_equal(f->r.status, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_titles),
        cmocka_unit_test_setup_teardown(test_body_per_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detail_and_id_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_id_no_detail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaces_earlier_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_detail_cut_json_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_id_cut_json_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_status_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
