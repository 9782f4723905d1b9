/* jsonpos.h -- finds where a value (or its key) sits in JSON text, by path.
 *
 * Jansson keeps no positions of values, so config.c parses with jansson and
 * asks this scanner where a semantically wrong value starts, to print
 * "file:line:col". It is a scanner, not a parser: it assumes text that
 * jansson accepted (with duplicate keys rejected, so a key path names one
 * member) and never reads past LEN even when the text is malformed. It does
 * not validate JSON nor build values.
 *
 * Paths look like config.c's messages: "routes[2].plugins[0].config", a key
 * is a run of bytes up to the next '.' or '[', an index is "[N]"; "" and
 * "(root)" name the root value. A key that itself holds '.' or '[' cannot be
 * named; the lookup then stops at its parent. Lines and columns are 1-based;
 * a line ends at '\n' and a column counts UTF-8 characters, as jansson does
 * in its own error messages. */
#ifndef KAPI_JSONPOS_H
#define KAPI_JSONPOS_H

#include <stdbool.h>
#include <stddef.h>

#include <kapi/status.h>

/* A position in the text: byte offset, 1-based line and column. */
typedef struct jsonpos_at {
    size_t off;
    unsigned line, col;
} jsonpos_at;

#define JSONPOS_STEPS 8

/* What the previous lookup found, step by step, so that lookups made in
 * document order ("routes[0]", "routes[0].target", "routes[1]", ...) go on
 * from there instead of rescanning the text: a walk over N routes then costs
 * about one pass over the text, not N. Caller-owned, no pointer inside:
 * zero it ({0}) before its first use and before using it with another
 * text; it describes one text only. */
typedef struct jsonpos_cache {
    char path[256]; /* the previous path, up to the steps remembered */
    size_t nsteps;
    struct jsonpos_memo {
        size_t pathend; /* path[0..pathend) names this value */
        size_t index;   /* for an index step */
        bool is_index;
        size_t keyoff; /* for a key step: the offset of the key's quote */
        jsonpos_at at; /* where the value starts */
    } steps[JSONPOS_STEPS];
} jsonpos_cache;

/* Finds PATH in TEXT (LEN bytes). When KEY is true and PATH ends with a key,
 * the position is that of the key's opening quote, else that of the value's
 * first character. CACHE may be NULL. Returns KAPI_OK, or KAPI_ENOTFOUND
 * when PATH does not resolve entirely; *LINE and *COL then hold the start
 * of the deepest value on the path that did resolve (1:1 at worst), so they
 * are always usable. */
kapi_status jsonpos_find(jsonpos_cache *cache, const char *text, size_t len, const char *path,
                         bool key, unsigned *line, unsigned *col);

#endif /* KAPI_JSONPOS_H */
