/* path.c -- normalizes a request path once, before routing (see path.h).
 *
 * One left-to-right pass: each segment is percent-decoded into OUT, then
 * judged as a whole, so "%2e%2e" is ".." but "%252e" (kept as "%252e") is
 * not. The output is never longer than the input, which is what
 * lets OUT be sized RAWLEN + 1. It does not touch the query string, route,
 * nor re-encode anything but "/" and "%" (kept as "%2F" and "%25"), which
 * makes normalization idempotent. */
#include "path.h"

#include <stdbool.h>
#include <string.h>

#include "hex.h"

/* Copies the segment starting at RAW[*I] (up to the next raw '/' or the end)
 * into OUT at *O, decoding escapes; advances both. */
static kapi_status
decode_segment(const char *raw, size_t rawlen, size_t *i, char *out, size_t *o)
{
    while (*i < rawlen && raw[*i] != '/') {
        unsigned char c = (unsigned char)raw[*i];
        if (c == '%') {
            int hi = *i + 2 < rawlen ? hex_digit((unsigned char)raw[*i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit((unsigned char)raw[*i + 2]) : -1;
            if (lo < 0)
                return KAPI_EINVAL;
            c = (unsigned char)(hi << 4 | lo);
            *i += 3;
            if (c == '/' || c == '%') {
                /* An encoded slash stays data: it must never split a segment.
                 * An encoded '%' stays encoded so that nothing downstream
                 * (an upstream, a second normalization) decodes twice. */
                memcpy(out + *o, c == '/' ? "%2F" : "%25", 3);
                *o += 3;
                continue;
            }
        } else {
            *i += 1;
        }
        if (c < 0x20 || c == 0x7f) /* NUL, CR, LF, ESC…: never part of a path */
            return KAPI_EINVAL;
        out[(*o)++] = (char)c;
    }
    return KAPI_OK;
}

kapi_status
path_normalize(const char *raw, size_t rawlen, char *out, size_t *outlen)
{
    if (!raw || !out || !outlen || rawlen == 0 || raw[0] != '/')
        return KAPI_EINVAL;

    /* Invariant: out[0, o) is normalized and ends with '/', and o <= i. */
    size_t i = 0, o = 0;
    out[o++] = '/';
    for (;;) {
        while (i < rawlen && raw[i] == '/')
            i++;
        if (i == rawlen)
            break;

        size_t seg = o;
        kapi_status st = decode_segment(raw, rawlen, &i, out, &o);
        if (st != KAPI_OK)
            return st;
        size_t seglen = o - seg;
        bool dot = seglen == 1 && out[seg] == '.';
        bool dotdot = seglen == 2 && out[seg] == '.' && out[seg + 1] == '.';

        if (dot || dotdot) {
            o = seg;
            if (dotdot && o > 1) {
                /* Drop the previous segment, keeping the '/' before it. */
                o--;
                while (out[o - 1] != '/')
                    o--;
            }
        } else if (i < rawlen) {
            out[o++] = '/';
        }
    }
    out[o] = '\0';
    *outlen = o;
    return KAPI_OK;
}
