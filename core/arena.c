/* arena.c -- per-request bump allocator (see arena.h). Chunks grow
 * geometrically from 4 KiB to 64 KiB; an allocation larger than half a chunk gets a
 * chunk of its own so big bodies do not waste the rest of a small chunk.
 * It does not free individual allocations. */
#include "arena.h"

#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
    arena_chunk *next;
    alignas(max_align_t) char data[];
};

enum { ARENA_ALIGN = alignof(max_align_t), ARENA_MIN_CHUNK = 4096, ARENA_MAX_CHUNK = 65536 };

static char *
align_up(char *p)
{
    uintptr_t u = (uintptr_t)p;
    return (char *)((u + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1));
}

void
arena_init(arena *a, void *buf, size_t len)
{
    a->first = buf;
    a->first_len = buf ? len : 0;
    a->extra = NULL;
    a->next_chunk = 0;
    a->ptr = buf;
    a->end = buf ? (char *)buf + len : NULL;
}

static void *
alloc_chunk(arena *a, size_t size)
{
    size_t chunk = a->next_chunk ? a->next_chunk : ARENA_MIN_CHUNK;
    bool dedicated = size > chunk / 2;
    size_t cap = dedicated ? size : chunk;
    arena_chunk *c = malloc(sizeof(*c) + cap);
    if (!c)
        return NULL;
    c->next = a->extra;
    a->extra = c;
    memset(c->data, 0, size);
    if (dedicated)
        return c->data; /* the current chunk keeps serving small allocations */
    a->ptr = c->data + size;
    a->end = c->data + cap;
    if (chunk < ARENA_MAX_CHUNK)
        a->next_chunk = chunk * 2;
    return c->data;
}

void *
arena_alloc(arena *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (size > SIZE_MAX / 2)
        return NULL;
    if (a->ptr) {
        char *p = align_up(a->ptr);
        if (p <= a->end && (size_t)(a->end - p) >= size) {
            a->ptr = p + size;
            memset(p, 0, size);
            return p;
        }
    }
    return alloc_chunk(a, size);
}

char *
arena_strndup(arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL; /* len + 1 would wrap to 0 */
    char *p = arena_alloc(a, len + 1);
    if (p && len)
        memcpy(p, s, len);
    return p;
}

void
arena_release(arena *a)
{
    arena_chunk *c = a->extra;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->extra = NULL;
}

void
arena_reset(arena *a)
{
    arena_release(a);
    arena_init(a, a->first, a->first_len);
}
