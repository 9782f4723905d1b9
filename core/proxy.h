/* proxy.h -- the built-in target of routes whose target is an upstream
 * group or a URL: it turns the client's request into the upstream request
 * (path rewriting, hop-by-hop headers dropped, X-Forwarded-*, Via,
 * X-Request-Id, traceparent), runs it as an exchange while the request is
 * paused, and turns the upstream's answer into the client's response.
 *
 * To the chain it is a function module like any other (a kapi_module with
 * handle), so plugins run around it unchanged. It does not choose targets,
 * retry or time out (exchange.c) nor hold connections (uclient.c). */
#ifndef KAPI_PROXY_H
#define KAPI_PROXY_H

#include <kapi/module.h>

#include "config.h"
#include "upstream.h"

typedef struct proxy_route proxy_route;

/* The module descriptor chains use for proxy routes. */
const kapi_module *proxy_module(void);

/* The instance for route CR proxying to GROUP; HOST is the table the
 * instance pauses and resumes through. Free with proxy_route_free. */
kapi_status proxy_route_new(const config_route *cr, upstream *group, const kapi_host *host,
                            proxy_route **out);
void proxy_route_free(proxy_route *pr);

/* Helpers shared with fetch.c and unit tests. */

/* True for a hop-by-hop header NAME (RFC 9110 7.6.1 plus Proxy-*). */
bool proxy_hop_by_hop(kapi_str name);

/* Writes PATH with every byte outside RFC 3986 pchar and '/' (and '%' not
 * starting "%2F"/"%25", the escapes path_normalize keeps) percent-encoded
 * into OUT (room for 3 * len bytes). SEGMENT: '/' is encoded too (a path
 * parameter's decoded value). Returns the bytes written. */
size_t proxy_encode_path(const char *path, size_t len, bool segment, char *out);

/* A traceparent for the upstream request: IN's trace id and flags with a
 * new span id when IN is a valid version-00 traceparent, else a new trace.
 * OUT has room for 56 bytes (55 + NUL). RNG is the caller's xorshift state. */
void proxy_traceparent(kapi_str in, uint64_t rng[2], char out[56]);

#endif /* KAPI_PROXY_H */
