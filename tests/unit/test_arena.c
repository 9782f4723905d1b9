/* test_arena.c -- unit tests for core/arena.c: every allocation aligned to
 * max_align_t and zeroed, in the caller's buffer and in malloc'd chunks;
 * many small allocations spanning chunks without overlap; a large one
 * getting a chunk of its own while the current chunk keeps serving small
 * ones; arena_strndup; size 0 and impossible sizes; reset and release.
 *
 * That reset and release free every chunk is checked by LeakSanitizer in
 * the ASan build (KAPI_SANITIZE): a chunk left behind fails the run. It
 * does not test the request objects built on the arena (test_request.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"

enum { ALIGN = alignof(max_align_t), FIRST_CHUNK = 4096 };

static void
assert_aligned(const void *p)
{
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % ALIGN, 0);
}

static void
assert_zeroed(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            fail_msg("byte %zu of %zu is 0x%02x, not zero", i, n, p[i]);
}

static void
test_alignment_and_zero_in_own_buffer(void **state)
{
    (void)state;
    alignas(max_align_t) char buf[2048 + 1];
    memset(buf, 0xa5, sizeof(buf));
    arena a;
    /* a misaligned start must still give aligned blocks */
    arena_init(&a, buf + 1, sizeof(buf) - 1);
    for (size_t size = 1; size <= 40; size++) {
        unsigned char *p = arena_alloc(&a, size);
        assert_aligned(p);
        assert_true((char *)p >= buf + 1 && (char *)p + size <= buf + sizeof(buf));
        assert_zeroed(p, size);
        memset(p, 0xff, size);
    }
    arena_release(&a);
}

static void
test_alignment_and_zero_in_chunks(void **state)
{
    (void)state;
    arena a;
    arena_init(&a, NULL, 0);
    /* sizes that are not multiples of the alignment, across several chunks;
     * ASan fills fresh malloc memory with non-zero bytes, so a missing
     * memset shows */
    for (size_t i = 0; i < 3000; i++) {
        size_t size = 1 + (i * 7) % 61;
        unsigned char *p = arena_alloc(&a, size);
        assert_aligned(p);
        assert_zeroed(p, size);
        memset(p, 0xff, size);
    }
    arena_release(&a);
}

static void
test_small_allocations_span_chunks_without_overlap(void **state)
{
    (void)state;
    enum { N = 5000, SIZE = 24 };
    static unsigned char *ptrs[N];
    char buf[256];
    arena a;
    arena_init(&a, buf, sizeof(buf));
    size_t chunks = 0;
    const char *end = a.end;
    for (size_t i = 0; i < N; i++) {
        ptrs[i] = arena_alloc(&a, SIZE);
        assert_aligned(ptrs[i]);
        memset(ptrs[i], (int)(i & 0xff), SIZE);
        if (a.end != end) {
            chunks++;
            end = a.end;
        }
    }
    assert_true(chunks >= 3); /* 5000 * 32 bytes: more than 4 + 8 + 16 KiB */
    assert_non_null(a.extra);
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < SIZE; j++)
            if (ptrs[i][j] != (unsigned char)(i & 0xff))
                fail_msg("allocation %zu overwritten at byte %zu", i, j);
    arena_release(&a);
}

static char *
align_up(char *p)
{
    return p + (ALIGN - (uintptr_t)p % ALIGN) % ALIGN;
}

/* A large block that does not fit the current chunk gets a chunk of its
 * own; the current chunk, with room left, keeps serving small ones. */
static void
test_large_allocation_gets_own_chunk(void **state)
{
    (void)state;
    arena a;
    arena_init(&a, NULL, 0);
    assert_aligned(arena_alloc(&a, 16));
    assert_aligned(arena_alloc(&a, 3000)); /* about 1 KiB left in the 4 KiB chunk */
    char *ptr = a.ptr, *end = a.end;

    /* more than half of the next chunk (8 KiB, chunks double from 4 KiB)
     * though it would fit a whole one */
    size_t big = 5000;
    unsigned char *p = arena_alloc(&a, big);
    assert_aligned(p);
    assert_zeroed(p, big);
    memset(p, 0xee, big);
    assert_ptr_equal(a.ptr, ptr);
    assert_ptr_equal(a.end, end);
    assert_true((char *)p + big <= end - FIRST_CHUNK || (char *)p >= end);

    char *next = arena_alloc(&a, 16);
    assert_ptr_equal(next, align_up(ptr));
    assert_ptr_equal(a.end, end);

    size_t huge = 200000;
    unsigned char *h = arena_alloc(&a, huge);
    assert_aligned(h);
    assert_zeroed(h, huge);
    assert_ptr_equal(a.end, end);
    assert_ptr_equal(arena_alloc(&a, 16), align_up(next + 16));
    for (size_t i = 0; i < big; i++)
        if (p[i] != 0xee)
            fail_msg("large block overwritten at byte %zu", i);
    arena_release(&a);
}

static void
test_large_first_allocation_then_small(void **state)
{
    (void)state;
    arena a;
    arena_init(&a, NULL, 0);
    unsigned char *p = arena_alloc(&a, 10000);
    assert_aligned(p);
    assert_zeroed(p, 10000);
    char *s = arena_alloc(&a, 8);
    assert_aligned(s);
    assert_false((char *)p <= s && s < (char *)p + 10000);
    arena_release(&a);
}

static void
test_strndup(void **state)
{
    (void)state;
    char buf[64];
    memset(buf, 'x', sizeof(buf));
    arena a;
    arena_init(&a, buf, sizeof(buf));

    char *s = arena_strndup(&a, "hello world", 5);
    assert_non_null(s);
    assert_string_equal(s, "hello");

    const char bin[] = {'a', '\0', 'b', '\n', (char)0xff};
    char *b = arena_strndup(&a, bin, sizeof(bin));
    assert_non_null(b);
    assert_memory_equal(b, bin, sizeof(bin));
    assert_int_equal(b[sizeof(bin)], '\0');

    char *e = arena_strndup(&a, "ignored", 0);
    assert_non_null(e);
    assert_string_equal(e, "");

    /* larger than the buffer: lands in a chunk, still terminated */
    char long_text[300];
    memset(long_text, 'q', sizeof(long_text));
    char *l = arena_strndup(&a, long_text, sizeof(long_text));
    assert_non_null(l);
    assert_memory_equal(l, long_text, sizeof(long_text));
    assert_int_equal(l[sizeof(long_text)], '\0');
    arena_release(&a);
}

static void
test_size_zero_and_impossible_sizes(void **state)
{
    (void)state;
    arena a;
    arena_init(&a, NULL, 0);
    char *z1 = arena_alloc(&a, 0);
    char *z2 = arena_alloc(&a, 0);
    assert_aligned(z1);
    assert_aligned(z2);
    assert_ptr_not_equal(z1, z2);
    assert_null(arena_alloc(&a, SIZE_MAX));
    assert_null(arena_alloc(&a, SIZE_MAX / 2 + 1));
    /* the arena still works afterwards */
    assert_aligned(arena_alloc(&a, 32));
    arena_release(&a);
}

static void
test_strndup_length_overflow(void **state)
{
    (void)state;
    /* len + 1 would wrap to 0: a 1-byte block and a SIZE_MAX memcpy (a
     * heap overflow, found by this test) unless arena_strndup refuses it. */
    arena a;
    arena_init(&a, NULL, 0);
    assert_null(arena_strndup(&a, "x", SIZE_MAX));
    arena_release(&a);
}

static void
test_reset_rewinds_to_own_buffer(void **state)
{
    (void)state;
    char buf[512];
    arena a;
    arena_init(&a, buf, sizeof(buf));
    char *first = arena_alloc(&a, 100);
    memset(first, 0x5a, 100);
    for (int i = 0; i < 200; i++) /* several malloc'd chunks */
        memset(arena_alloc(&a, 100), 0x5a, 100);
    assert_non_null(a.extra);

    arena_reset(&a);
    assert_null(a.extra);
    unsigned char *again = arena_alloc(&a, 100);
    assert_ptr_equal(again, first);
    assert_zeroed(again, 100);

    /* usable after reset, and release frees what was allocated since */
    for (int i = 0; i < 100; i++)
        assert_non_null(arena_alloc(&a, 1000));
    arena_release(&a);
    assert_null(a.extra);
}

static void
test_release_without_buffer(void **state)
{
    (void)state;
    arena a;
    arena_init(&a, NULL, 0);
    arena_release(&a); /* nothing allocated: a no-op */
    for (int i = 0; i < 50; i++)
        assert_non_null(arena_alloc(&a, 3000));
    arena_reset(&a);
    assert_null(a.extra);
    assert_null(a.ptr);
    assert_non_null(arena_alloc(&a, 10));
    arena_release(&a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_zero_in_own_buffer),
        cmocka_unit_test(test_alignment_and_zero_in_chunks),
        cmocka_unit_test(test_small_allocations_span_chunks_without_overlap),
        cmocka_unit_test(test_large_allocation_gets_own_chunk),
        cmocka_unit_test(test_large_first_allocation_then_small),
        cmocka_unit_test(test_strndup),
        cmocka_unit_test(test_size_zero_and_impossible_sizes),
        cmocka_unit_test(test_strndup_length_overflow),
        cmocka_unit_test(test_reset_rewinds_to_own_buffer),
        cmocka_unit_test(test_release_without_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
