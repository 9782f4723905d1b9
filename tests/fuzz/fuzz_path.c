/* fuzz_path.c -- libFuzzer target for path_normalize (core/path.c).
 *
 * Feeds arbitrary bytes as a raw path and, when they normalize, checks the
 * invariants routing relies on: the output is no longer than the input,
 * starts with '/', holds no NUL, no "//", no "." or ".." segment, and
 * normalizing it again changes nothing (every '%' left in the output starts
 * "%2F" or "%25", which a second pass keeps as they are). It does not fuzz
 * routing (fuzz_router.c). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_path: %s failed\n", #cond);                                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool
has_dot_segment(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '/')
            continue;
        size_t end = i + 1;
        while (end < len && p[end] != '/')
            end++;
        size_t n = end - i - 1;
        if ((n == 1 && p[i + 1] == '.') || (n == 2 && p[i + 1] == '.' && p[i + 2] == '.'))
            return true;
    }
    return false;
}

/* Every '%' starts "%2F" or "%25": a second pass decodes nothing new. */
static bool
only_kept_escapes(const char *p, size_t len)
{
    for (const char *q = memchr(p, '%', len); q; q = memchr(q + 1, '%', len - (size_t)(q + 1 - p)))
        if ((size_t)(q - p) + 3 > len || q[1] != '2' || (q[2] != 'F' && q[2] != '5'))
            return false;
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = malloc(size + 1);
    CHECK(out);
    size_t len = SIZE_MAX;
    if (path_normalize((const char *)data, size, out, &len) != KAPI_OK) {
        free(out);
        return 0;
    }
    CHECK(len <= size);
    CHECK(out[len] == '\0');
    CHECK(strlen(out) == len);
    CHECK(len >= 1 && out[0] == '/');
    CHECK(memmem(out, len, "//", 2) == NULL);
    CHECK(!has_dot_segment(out, len));

    CHECK(only_kept_escapes(out, len));
    char *again = malloc(len + 1);
    CHECK(again);
    size_t len2 = SIZE_MAX;
    CHECK(path_normalize(out, len, again, &len2) == KAPI_OK);
    CHECK(len2 == len && memcmp(again, out, len) == 0);
    free(again);
    free(out);
    return 0;
}
