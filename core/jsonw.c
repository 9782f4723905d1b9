/* jsonw.c -- bounded JSON string escaping and appending (see jsonw.h). */
#include "jsonw.h"

#include <stdarg.h>
#include <stdio.h>

void
jsonw_escape(char *buf, size_t cap, size_t *pos, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            if (p + 2 >= cap)
                break;
            buf[p++] = '\\';
            buf[p++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            /* control bytes, and every non-ASCII byte: what kapi logs comes
             * from clients and need not be UTF-8, and a log line must stay
             * valid JSON (a byte 0xNN reads back as U+00NN) */
            if (p + 6 >= cap)
                break;
            buf[p++] = '\\';
            buf[p++] = 'u';
            buf[p++] = '0';
            buf[p++] = '0';
            buf[p++] = hex[c >> 4];
            buf[p++] = hex[c & 15];
        } else {
            if (p + 1 >= cap)
                break;
            buf[p++] = (char)c;
        }
    }
    if (cap)
        buf[p < cap ? p : cap - 1] = '\0';
    *pos = p;
}

void
jsonw_printf(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
    if (*pos + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos = *pos + (size_t)n < cap ? *pos + (size_t)n : cap - 1;
}
