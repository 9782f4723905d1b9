/* arena.h -- a per-request bump allocator: many small allocations, one
 * release. The first chunk can live inside the request object itself, so a
 * typical request allocates nothing from malloc. Not thread-safe (a request
 * never changes threads). It does not know what it stores. */
#ifndef KAPI_ARENA_H
#define KAPI_ARENA_H

#include <stddef.h>

typedef struct arena_chunk arena_chunk;

typedef struct arena {
    char *ptr;          /* next free byte in the current chunk */
    char *end;          /* end of the current chunk */
    arena_chunk *extra; /* malloc'd chunks, newest first */
    char *first;        /* the caller's initial buffer */
    size_t first_len;
    size_t next_chunk; /* size of the next malloc'd chunk */
} arena;

/* Starts A on the caller's buffer BUF of LEN bytes (may be NULL/0). */
void arena_init(arena *a, void *buf, size_t len);
/* SIZE zeroed bytes aligned to max_align_t; NULL when out of memory. */
void *arena_alloc(arena *a, size_t size);
/* A NUL-terminated copy of LEN bytes of S; NULL when out of memory. */
char *arena_strndup(arena *a, const char *s, size_t len);
/* Frees the extra chunks and rewinds to the initial buffer. */
void arena_reset(arena *a);
/* Frees the extra chunks; the initial buffer stays the caller's. */
void arena_release(arena *a);

#endif /* KAPI_ARENA_H */
