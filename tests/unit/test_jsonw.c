/* test_jsonw.c -- unit tests for core/jsonw.c: what jsonw_escape turns each
 * of the 256 byte values into (checked by parsing the result with jansson,
 * which must read byte 0xNN back as U+00NN), truncation at every capacity
 * (never past CAP, always NUL-terminated, never half an escape, *POS
 * advanced by exactly what was written) and jsonw_printf's bounds.
 * It does not test the documents built with it (test_problem.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

enum { GUARD = 16, GUARD_BYTE = 0x7e };

/* The escape jsonw must produce for byte C. */
static const char *
expected_escape(unsigned char c, char out[8])
{
    if (c == '"' || c == '\\')
        snprintf(out, 8, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
        snprintf(out, 8, "\\u00%02x", c);
    else
        snprintf(out, 8, "%c", c);
    return out;
}

/* S (LEN bytes) escaped into a large buffer; returns its length. */
static size_t
escape_all(const char *s, size_t len, char *out, size_t cap)
{
    size_t pos = 0;
    jsonw_escape(out, cap, &pos, s, len);
    assert_true(pos < cap);
    assert_int_equal(strlen(out), pos);
    return pos;
}

/* Parses ESCAPED as the content of a JSON string and checks that it decodes
 * to one code point U+00XX per byte of RAW. */
static void
assert_decodes_to(const char *escaped, const unsigned char *raw, size_t len)
{
    size_t elen = strlen(escaped);
    char *doc = malloc(elen + 3);
    assert_non_null(doc);
    doc[0] = '"';
    memcpy(doc + 1, escaped, elen);
    memcpy(doc + 1 + elen, "\"", 2);
    json_error_t jerr;
    json_t *v = json_loads(doc, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v)
        fail_msg("not valid JSON: %s: %s", doc, jerr.text);
    assert_true(json_is_string(v));
    /* U+0000..U+007F is one UTF-8 byte, U+0080..U+00FF two */
    const unsigned char *u = (const unsigned char *)json_string_value(v);
    size_t ulen = json_string_length(v), k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = raw[i];
        if (c < 0x80) {
            assert_true(k < ulen);
            assert_int_equal(u[k++], c);
        } else {
            assert_true(k + 1 < ulen);
            assert_int_equal(u[k++], 0xc0 | (c >> 6));
            assert_int_equal(u[k++], 0x80 | (c & 0x3f));
        }
    }
    assert_int_equal(k, ulen);
    json_decref(v);
    free(doc);
}

static void
test_each_byte(void **state)
{
    (void)state;
    for (unsigned b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        char out[16], want[8];
        escape_all((const char *)&c, 1, out, sizeof(out));
        assert_string_equal(out, expected_escape(c, want));
        assert_decodes_to(out, &c, 1);
    }
}

static void
test_named_cases(void **state)
{
    (void)state;
    char out[64];
    escape_all("a\"b\\c/d", 7, out, sizeof(out));
    assert_string_equal(out, "a\\\"b\\\\c/d");
    escape_all("\n\r\t\x01\x1f", 5, out, sizeof(out));
    assert_string_equal(out, "\\u000a\\u000d\\u0009\\u0001\\u001f");
    escape_all("\x7f\x80\xc3\xa9\xff", 5, out, sizeof(out));
    assert_string_equal(out, "\\u007f\\u0080\\u00c3\\u00a9\\u00ff");
    escape_all("a\0b", 3, out, sizeof(out)); /* LEN counts, not the NUL */
    assert_string_equal(out, "a\\u0000b");
}

static void
test_all_bytes_in_one_string(void **state)
{
    (void)state;
    unsigned char raw[256];
    for (unsigned b = 0; b < 256; b++)
        raw[b] = (unsigned char)b;
    char out[256 * 6 + 1];
    size_t n = escape_all((const char *)raw, sizeof(raw), out, sizeof(out));
    /* 32 controls and 129 bytes >= 0x7f as 6 bytes, '"' and '\\' as 2, 93 as is */
    assert_int_equal(n, (32 + 129) * 6 + 2 * 2 + 93);
    assert_decodes_to(out, raw, sizeof(raw));
}

/* The input whose escapes have every width: 1, 2 and 6 bytes. */
static const char mixed[] = "ab\"c\\\x01\xffz\n\"\x80q";

/* For every capacity and start offset: no byte written at or past CAP, the
 * output NUL-terminated, a whole number of escapes of a prefix of the
 * input, and *POS moved by exactly the bytes written. */
static void
test_truncation_at_every_capacity(void **state)
{
    (void)state;
    size_t len = sizeof(mixed) - 1;
    char full[128];
    size_t full_len = escape_all(mixed, len, full, sizeof(full));
    for (size_t start = 0; start < 4; start++) {
        for (size_t cap = start + 1; cap <= start + full_len + 2; cap++) {
            char buf[128 + GUARD];
            memset(buf, GUARD_BYTE, sizeof(buf));
            memset(buf, 'S', start);
            size_t pos = start;
            jsonw_escape(buf, cap, &pos, mixed, len);

            for (size_t i = cap; i < cap + GUARD; i++)
                if ((unsigned char)buf[i] != GUARD_BYTE)
                    fail_msg("cap %zu start %zu: byte %zu written", cap, start, i);
            assert_true(pos < cap);
            assert_int_equal(buf[pos], '\0');
            assert_int_equal(strlen(buf), pos);
            for (size_t i = 0; i < start; i++)
                assert_int_equal(buf[i], 'S');

            /* the output is the escape of the longest input prefix that fits */
            size_t wrote = pos - start, best = 0;
            for (size_t k = 0; k <= len; k++) {
                char pre[128];
                size_t plen = escape_all(mixed, k, pre, sizeof(pre));
                if (plen <= cap - 1 - start)
                    best = plen;
            }
            if (wrote != best || memcmp(buf + start, full, wrote) != 0)
                fail_msg("cap %zu start %zu: wrote \"%s\" (%zu), want %zu bytes of \"%s\"", cap,
                         start, buf + start, wrote, best, full);
        }
    }
}

static void
test_zero_capacity_and_full_buffer(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, GUARD_BYTE, sizeof(buf));
    size_t pos = 0;
    jsonw_escape(buf, 0, &pos, "abc", 3);
    assert_int_equal(pos, 0);
    assert_int_equal((unsigned char)buf[0], GUARD_BYTE);

    /* a buffer already full: nothing appended, still terminated */
    memcpy(buf, "abcdefg", 8);
    pos = 7;
    jsonw_escape(buf, 8, &pos, "xyz", 3);
    assert_int_equal(pos, 7);
    assert_string_equal(buf, "abcdefg");
}

static void
test_appends_at_pos(void **state)
{
    (void)state;
    char buf[32];
    size_t pos = 0;
    jsonw_escape(buf, sizeof(buf), &pos, "a\"", 2);
    jsonw_escape(buf, sizeof(buf), &pos, "\n", 1);
    jsonw_escape(buf, sizeof(buf), &pos, "", 0);
    assert_string_equal(buf, "a\\\"\\u000a");
    assert_int_equal(pos, strlen(buf));
}

static void
test_printf(void **state)
{
    (void)state;
    char buf[32];
    size_t pos = 0;
    jsonw_printf(buf, sizeof(buf), &pos, "{\"n\":%d,", 42);
    jsonw_printf(buf, sizeof(buf), &pos, "\"s\":\"%s\"}", "x\"y"); /* no escaping */
    assert_string_equal(buf, "{\"n\":42,\"s\":\"x\"y\"}");
    assert_int_equal(pos, strlen(buf));
    jsonw_printf(buf, sizeof(buf), &pos, "%s", ""); /* empty: no change */
    assert_int_equal(pos, strlen(buf));
}

static void
test_printf_bounds(void **state)
{
    (void)state;
    const char *text = "0123456789abcdefghij";
    for (size_t start = 0; start < 3; start++) {
        for (size_t cap = 0; cap < 24; cap++) {
            char buf[24 + GUARD];
            memset(buf, GUARD_BYTE, sizeof(buf));
            memset(buf, 'S', start);
            if (start < cap)
                buf[start] = '\0';
            size_t pos = start;
            jsonw_printf(buf, cap, &pos, "%s", text);

            for (size_t i = cap > start ? cap : start; i < cap + GUARD; i++)
                if ((unsigned char)buf[i] != GUARD_BYTE)
                    fail_msg("cap %zu start %zu: byte %zu written", cap, start, i);
            if (start + 1 >= cap) { /* no room: untouched */
                assert_int_equal(pos, start);
                continue;
            }
            size_t room = cap - 1 - start, want = strlen(text) < room ? strlen(text) : room;
            assert_int_equal(pos, start + want);
            assert_int_equal(buf[pos], '\0');
            assert_memory_equal(buf + start, text, want);
        }
    }
}

/* Printf text cut at the capacity, then an escape appended: the escape
 * finds no room and the buffer stays terminated. */
static void
test_printf_then_escape_when_full(void **state)
{
    (void)state;
    char buf[8 + GUARD];
    memset(buf, GUARD_BYTE, sizeof(buf));
    size_t pos = 0;
    jsonw_printf(buf, 8, &pos, "%s", "0123456789");
    assert_int_equal(pos, 7);
    jsonw_escape(buf, 8, &pos, "\xff", 1);
    assert_int_equal(pos, 7);
    assert_string_equal(buf, "0123456");
    assert_int_equal((unsigned char)buf[8], GUARD_BYTE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_byte),
        cmocka_unit_test(test_named_cases),
        cmocka_unit_test(test_all_bytes_in_one_string),
        cmocka_unit_test(test_truncation_at_every_capacity),
        cmocka_unit_test(test_zero_capacity_and_full_buffer),
        cmocka_unit_test(test_appends_at_pos),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_printf_bounds),
        cmocka_unit_test(test_printf_then_escape_when_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
