/* jsonw.h -- appends JSON string content to a fixed buffer, for the few
 * JSON lines kapi writes by hand (problem+json bodies, access log lines).
 * It never allocates and never overflows: output is cut at the capacity.
 * It does not parse JSON (jansson does, in config.c). */
#ifndef KAPI_JSONW_H
#define KAPI_JSONW_H

#include <stddef.h>

/* Appends LEN bytes of S, JSON-escaped (quotes, backslash; control and
 * non-ASCII bytes as \u00XX, so any input gives valid JSON), to BUF at *POS, stopping early rather than pass CAP - 1 bytes;
 * keeps BUF NUL-terminated and advances *POS. */
void jsonw_escape(char *buf, size_t cap, size_t *pos, const char *s, size_t len);

/* Appends printf-style text (no escaping) the same way. */
void jsonw_printf(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* KAPI_JSONW_H */
