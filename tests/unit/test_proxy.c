/* test_proxy.c -- unit tests for the helpers core/proxy.c shares with
 * fetch.c: proxy_hop_by_hop (RFC 9110 7.6.1 names and Proxy-*, any case,
 * exact lengths), proxy_encode_path (pchars and '/' kept, everything else
 * percent-encoded, the "%2F"/"%25" escapes kept in path mode only, '/'
 * encoded in segment mode, never a byte past LEN read or 3 * LEN written)
 * and proxy_traceparent (a valid version-00 header keeps its trace id and
 * flags under a new non-zero span id; anything else gets a fresh trace with
 * flags 01). The proxy target itself (headers both ways, the exchange) is
 * covered by the integration tests. */
#include "proxy.h"
#include "rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static kapi_str
str(const char *s)
{
    return (kapi_str){s, strlen(s)};
}

/* ---- proxy_hop_by_hop ---------------------------------------------------- */

static void
test_hop_by_hop_names(void **state)
{
    (void)state;
    static const char *const hop[] = {
        "Connection",
        "connection",
        "CONNECTION",
        "Keep-Alive",
        "keep-alive",
        "TE",
        "te",
        "Trailer",
        "Trailers",
        "Transfer-Encoding",
        "transfer-encoding",
        "TRANSFER-ENCODING",
        "Upgrade",
        "upgrade",
    };
    for (size_t i = 0; i < sizeof(hop) / sizeof(*hop); i++) {
        if (!proxy_hop_by_hop(str(hop[i])))
            fail_msg("\"%s\" is hop-by-hop", hop[i]);
    }
    static const char *const end_to_end[] = {
        "Content-Type", "Content-Length", "Host",      "Via",
        "X-Request-Id", "Accept",         "t",         "tee",
        "Connections",  "Keep-Alives",    "keepalive", "Upgrade-Insecure-Requests",
        "Trailerx",     "X-Connection",   "Transfer",  "",
    };
    for (size_t i = 0; i < sizeof(end_to_end) / sizeof(*end_to_end); i++) {
        if (proxy_hop_by_hop(str(end_to_end[i])))
            fail_msg("\"%s\" is not hop-by-hop", end_to_end[i]);
    }
}

static void
test_hop_by_hop_proxy_prefix(void **state)
{
    (void)state;
    assert_true(proxy_hop_by_hop(str("Proxy-Authorization")));
    assert_true(proxy_hop_by_hop(str("proxy-authenticate")));
    assert_true(proxy_hop_by_hop(str("Proxy-Connection")));
    assert_true(proxy_hop_by_hop(str("PROXY-ANYTHING")));
    /* The prefix is "proxy-", dash included. */
    assert_false(proxy_hop_by_hop(str("proxyx")));
    assert_false(proxy_hop_by_hop(str("Proxyx-Foo")));
    assert_false(proxy_hop_by_hop(str("Proxy")));
    assert_false(proxy_hop_by_hop(str("proxy_authorization")));
    assert_false(proxy_hop_by_hop(str("X-Proxy-Id")));
}

/* Names are views: only LEN bytes count, whatever follows them. */
static void
test_hop_by_hop_views(void **state)
{
    (void)state;
    const char *buf = "Connectionx";
    assert_true(proxy_hop_by_hop((kapi_str){buf, 10}));
    assert_false(proxy_hop_by_hop((kapi_str){buf, 11}));
    assert_false(proxy_hop_by_hop((kapi_str){buf, 9}));
    const char *te = "TEA";
    assert_true(proxy_hop_by_hop((kapi_str){te, 2}));
    assert_false(proxy_hop_by_hop((kapi_str){te, 3}));
    const char *px = "proxy-x";
    assert_false(proxy_hop_by_hop((kapi_str){px, 5})); /* "proxy" */
}

/* ---- proxy_encode_path --------------------------------------------------- */

#define CANARY 0x5a

/* Encodes IN (LEN bytes) into a buffer of exactly 3 * LEN bytes followed
 * by canaries, checks the return value against strlen(WANT) and the
 * canaries, and compares. */
static void
check_encode(const char *in, size_t len, bool segment, const char *want)
{
    size_t cap = 3 * len;
    char *out = malloc(cap + 16);
    assert_non_null(out);
    memset(out, CANARY, cap + 16);
    size_t n = proxy_encode_path(in, len, segment, out);
    for (size_t i = cap; i < cap + 16; i++)
        assert_int_equal((unsigned char)out[i], CANARY);
    if (n != strlen(want) || memcmp(out, want, n) != 0)
        fail_msg("encode(\"%.*s\", %s) = \"%.*s\", want \"%s\"", (int)len, in,
                 segment ? "segment" : "path", (int)n, out, want);
    free(out);
}

static void
encode(const char *in, bool segment, const char *want)
{
    check_encode(in, strlen(in), segment, want);
}

static void
test_encode_keeps_pchars(void **state)
{
    (void)state;
    const char *pchars = "/abcxyzABCXYZ0189-._~!$&'()*+,;=:@/";
    encode(pchars, false, pchars);
    encode("/v1/users/42", false, "/v1/users/42");
    encode("", false, "");
    encode("/", false, "/");
    /* segment mode keeps the same pchars */
    encode("a-b._~!$&'()*+,;=:@Z9", true, "a-b._~!$&'()*+,;=:@Z9");
}

static void
test_encode_escapes(void **state)
{
    (void)state;
    encode("/a b", false, "/a%20b");
    encode("/a?b", false, "/a%3Fb");
    encode("/a#b", false, "/a%23b");
    encode("/caf\xc3\xa9", false, "/caf%C3%A9");
    encode("/\x01\x1f\x7f\xff", false, "/%01%1F%7F%FF");
    encode("/\t\r\n", false, "/%09%0D%0A");
    encode("/\"<>\\^`{|}[]", false, "/%22%3C%3E%5C%5E%60%7B%7C%7D%5B%5D");
    /* a NUL byte inside LEN is data like any other */
    check_encode("/a\0b", 4, false, "/a%00b");
    /* the worst case fills exactly 3 * len */
    check_encode("   ", 3, false, "%20%20%20");
}

static void
test_encode_percent_path_mode(void **state)
{
    (void)state;
    /* The escapes path_normalize keeps pass unchanged… */
    encode("/a%2Fb", false, "/a%2Fb");
    encode("/a%25b", false, "/a%25b");
    encode("/a%2F", false, "/a%2F");
    encode("%25%2F", false, "%25%2F");
    /* …every other '%' is data and gets encoded. */
    encode("/a%41", false, "/a%2541");
    encode("/a%2f", false, "/a%252f");
    encode("/100%", false, "/100%25");
    encode("/a%2", false, "/a%252");
    encode("/%%2F", false, "/%25%2F");
    /* Only LEN bytes are looked at: "%2" cut short is not "%2F". */
    check_encode("/a%2F", 4, false, "/a%252");
    check_encode("/a%25", 3, false, "/a%25");
}

static void
test_encode_segment_mode(void **state)
{
    (void)state;
    encode("a/b", true, "a%2Fb");
    encode("/", true, "%2F");
    encode("a b?c#d", true, "a%20b%3Fc%23d");
    /* a decoded parameter value: '%' is data, no escape is kept */
    encode("a%2Fb", true, "a%252Fb");
    encode("a%25b", true, "a%2525b");
    encode("caf\xc3\xa9", true, "caf%C3%A9");
}

/* ---- proxy_traceparent --------------------------------------------------- */

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SPAN_ID "00f067aa0ba902b7"
#define VALID "00-" TRACE_ID "-" SPAN_ID "-01"

static bool
is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool
all_zero(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '0')
            return false;
    return true;
}

/* OUT is a well-formed version-00 traceparent with non-zero ids. */
static void
assert_well_formed(const char out[56])
{
    assert_int_equal(strlen(out), 55);
    assert_memory_equal(out, "00-", 3);
    assert_int_equal(out[35], '-');
    assert_int_equal(out[52], '-');
    assert_true(is_lower_hex(out + 3, 32));
    assert_true(is_lower_hex(out + 36, 16));
    assert_true(is_lower_hex(out + 53, 2));
    assert_false(all_zero(out + 3, 32));
    assert_false(all_zero(out + 36, 16));
}

static void
traceparent(const char *in, uint64_t rng[2], char out[56])
{
    memset(out, 'X', 56);
    proxy_traceparent(str(in), rng, out);
    assert_well_formed(out);
}

static void
test_traceparent_valid_kept(void **state)
{
    (void)state;
    uint64_t rng[2] = {0, 0};
    char out[56];
    traceparent(VALID, rng, out);
    assert_memory_equal(out + 3, TRACE_ID, 32);
    assert_memory_equal(out + 53, "01", 2);
    assert_memory_not_equal(out + 36, SPAN_ID, 16);

    /* flags are kept as sent, "00" (not sampled) included */
    static const char *const flags[] = {"00", "01", "09", "ff"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(*flags); i++) {
        char in[56];
        snprintf(in, sizeof(in), "00-" TRACE_ID "-" SPAN_ID "-%s", flags[i]);
        traceparent(in, rng, out);
        assert_memory_equal(out + 3, TRACE_ID, 32);
        assert_memory_equal(out + 53, flags[i], 2);
    }

    /* every hop gets its own span id */
    char again[56];
    traceparent(VALID, rng, again);
    traceparent(VALID, rng, out);
    assert_memory_equal(again + 3, out + 3, 32);
    assert_memory_not_equal(again + 36, out + 36, 16);

    /* IN is a view: bytes after its 55 do not matter */
    const char *longer = VALID "-tail";
    memset(out, 'X', sizeof(out));
    proxy_traceparent((kapi_str){longer, 55}, rng, out);
    assert_well_formed(out);
    assert_memory_equal(out + 3, TRACE_ID, 32);
}

static void
test_traceparent_invalid_replaced(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "garbage",
        "01-" TRACE_ID "-" SPAN_ID "-01",                     /* version 01 */
        "ff-" TRACE_ID "-" SPAN_ID "-01",                     /* version ff */
        "0-0" TRACE_ID "-" SPAN_ID "-01",                     /* version shifted */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" SPAN_ID "-01", /* upper-case trace id */
        "00-" TRACE_ID "-00F067AA0BA902B7-01",                /* upper-case span id */
        "00-" TRACE_ID "-" SPAN_ID "-0A",                     /* upper-case flags */
        "00-00000000000000000000000000000000-" SPAN_ID "-01", /* zero trace id */
        "00-" TRACE_ID "-0000000000000000-01",                /* zero span id */
        "00-" TRACE_ID "-" SPAN_ID "-0",                      /* 54 bytes */
        "00-" TRACE_ID "-" SPAN_ID "-011",                    /* 56 bytes */
        "00-" TRACE_ID "-" SPAN_ID "-01-",                    /* 56 bytes */
        "00-" TRACE_ID "0-" SPAN_ID "01",                     /* separator moved */
        "00_" TRACE_ID "-" SPAN_ID "-01",                     /* bad separators */
        "00-" TRACE_ID "_" SPAN_ID "-01",
        "00-" TRACE_ID "-" SPAN_ID "_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-" SPAN_ID "-01", /* not hex */
        "00-" TRACE_ID "-00f067aa0ba902bz-01",
        "00-" TRACE_ID "-" SPAN_ID "-0g",
        "00 " TRACE_ID " " SPAN_ID " 01",
    };
    uint64_t rng[2] = {0, 0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char out[56];
        traceparent(bad[i], rng, out);
        if (memcmp(out + 53, "01", 2) != 0)
            fail_msg("\"%s\": flags %.2s, want 01 for a new trace", bad[i], out + 53);
        if (memcmp(out + 3, TRACE_ID, 32) == 0)
            fail_msg("\"%s\": the trace id was kept", bad[i]);
    }
}

static void
test_traceparent_fresh_ones_differ(void **state)
{
    (void)state;
    uint64_t rng[2] = {0, 0};
    char a[56], b[56];
    traceparent("", rng, a);
    traceparent("", rng, b);
    assert_memory_not_equal(a + 3, b + 3, 32);
    assert_memory_not_equal(a + 36, b + 36, 16);
    /* two independently seeded states (two worker threads) differ too */
    uint64_t other[2] = {0, 0};
    traceparent("", other, b);
    assert_memory_not_equal(a + 3, b + 3, 32);
}

static void
test_traceparent_span_never_zero(void **state)
{
    (void)state;
    /* With s[1] = 1 the output is 0 when the new s[1] is ~0, that is when
     * a' ^ (a' >> 17) == ~1 for a' = s[0] ^ (s[0] << 23); invert both. */
    uint64_t y = ~(uint64_t)1;
    uint64_t ap = y ^ (y >> 17) ^ (y >> 34) ^ (y >> 51);
    uint64_t a = ap ^ (ap << 23) ^ (ap << 46);
    uint64_t probe[2] = {a, 1};
    assert_int_equal(rng_next(probe), 0); /* the state is the one wanted */

    uint64_t rng[2] = {a, 1};
    char out[56];
    traceparent(VALID, rng, out); /* asserts a non-zero span id */
    assert_memory_equal(out + 3, TRACE_ID, 32);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop_names),
        cmocka_unit_test(test_hop_by_hop_proxy_prefix),
        cmocka_unit_test(test_hop_by_hop_views),
        cmocka_unit_test(test_encode_keeps_pchars),
        cmocka_unit_test(test_encode_escapes),
        cmocka_unit_test(test_encode_percent_path_mode),
        cmocka_unit_test(test_encode_segment_mode),
        cmocka_unit_test(test_traceparent_valid_kept),
        cmocka_unit_test(test_traceparent_invalid_replaced),
        cmocka_unit_test(test_traceparent_fresh_ones_differ),
        cmocka_unit_test(test_traceparent_span_never_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
