/* path.h -- normalizes a request target's path once, before routing.
 *
 * Percent-decoding happens exactly once, here; dot segments are resolved
 * after decoding (so "%2e%2e" is ".."), repeated slashes are merged, and
 * "%2F" and "%25" stay encoded (upper-case) so an encoded slash never becomes
 * a separator and nothing downstream can decode a second time: the output
 * normalizes to itself. It does not route (router.c) nor touch the query string. */
#ifndef KAPI_PATH_H
#define KAPI_PATH_H

#include <stddef.h>

#include <kapi/status.h>

/* Normalizes the path RAW (RAWLEN bytes, no query; it must start with '/')
 * into OUT, which must hold at least RAWLEN + 1 bytes; writes the length to
 * *OUTLEN and a NUL after it. Rules:
 *  - each %XX is decoded, except %2F and %25, kept as "%2F" and "%25";
 *  - a malformed escape ("%G1", "%4"), a control byte (0x00-0x1f, 0x7f),
 *    raw or encoded ("%0d%0a" would forge log lines or upstream request
 *    lines), or a path not starting with '/' returns KAPI_EINVAL (the
 *    server answers 400);
 *  - "//" runs collapse to one '/';
 *  - "." segments are removed and ".." removes the previous segment; ".."
 *    at the root stays at the root (RFC 3986 section 5.2.4);
 *  - a trailing slash is kept ("/a/" stays "/a/"), "/a/." becomes "/a/".
 * Returns KAPI_OK or KAPI_EINVAL. Never reads past RAWLEN. */
kapi_status path_normalize(const char *raw, size_t rawlen, char *out, size_t *outlen);

#endif /* KAPI_PATH_H */
