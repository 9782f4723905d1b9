/* buf.c -- growable byte buffers for kapi_test_origin, and the one JSON
 * string escaper its JSON answers (/echo, /stats) use. It does no I/O and
 * knows nothing of HTTP. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_origin.h"

/* Makes room for EXTRA more bytes plus a NUL; false (and FAILED) on ENOMEM. */
static bool
reserve(buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void
buf_append(buf *b, const void *data, size_t len)
{
    if (!reserve(b, len))
        return;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void
buf_puts(buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void
buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the well-formed UTF-8 sequence at S (at most N bytes), or 0:
 * no overlongs, no surrogates, nothing past U+10FFFF. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* bounds of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

void
buf_json(buf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    buf_append(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_append(b, esc, 2);
            i++;
        } else if (c >= 0x20 && c < 0x7F) {
            size_t run = i;
            while (run < len && u[run] >= 0x20 && u[run] < 0x7F && u[run] != '"' && u[run] != '\\')
                run++;
            buf_append(b, s + i, run - i);
            i = run;
        } else if (c >= 0x80 && utf8_len(u + i, len - i)) {
            size_t n = utf8_len(u + i, len - i);
            buf_append(b, s + i, n);
            i += n;
        } else {
            buf_printf(b, "\\u%04x", c);
            i++;
        }
    }
    buf_append(b, "\"", 1);
}

void
buf_reset(buf *b, size_t keep)
{
    if (b->cap > keep) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
    b->len = 0;
    b->failed = false;
}

void
buf_free(buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}
