/* origin.h -- the process-wide registry of upstream origins: one entry per
 * (scheme, host, port), with its resolved address and its Host header value.
 *
 * Each origin has a dense id that never changes and is never reused, so a
 * worker can keep its connection pools in an array indexed by id and keep
 * them across config reloads: a reloaded config that names the same
 * backend finds the same origin and the same warm connections. Origins
 * live until origin_registry_free (at exit); a process that reloads configs
 * naming ever new backends grows by one small entry per backend.
 * It opens no connection (uclient.c does). */
#ifndef KAPI_ORIGIN_H
#define KAPI_ORIGIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <kapi/status.h>

typedef struct origin {
    unsigned id; /* 0, 1, 2… in registration order */
    bool tls;    /* https */
    char *host;  /* as configured, lower-case, no brackets ("10.0.0.7", "::1", "api.local") */
    uint16_t port;
    struct sockaddr_storage addr; /* the first address the host resolved to */
    socklen_t addrlen;
    char *authority; /* Host header value: "host" on the scheme's default port, else "host:port",
                        IPv6 in brackets */
    char *base_url;  /* "http://authority" / "https://authority" (libcurl's URLs, logs) */
} origin;

/* The origin for (TLS, HOST, PORT), registered on first use. HOST is
 * resolved with getaddrinfo, which may block on DNS unless HOST is numeric:
 * with MAY_BLOCK false a non-numeric host other than "localhost" is refused
 * (KAPI_EINVAL), so loop threads never wait on a resolver. Thread-safe.
 * On failure writes one line into ERR ("cannot resolve \"x\": …"). */
kapi_status origin_get(bool tls, const char *host, uint16_t port, bool may_block,
                       const origin **out, char *err, size_t errlen);

/* Origins registered so far (ids are below this). Thread-safe. */
unsigned origin_count(void);

/* Frees every origin. Only at exit, when no thread uses them any more. */
void origin_registry_free(void);

#endif /* KAPI_ORIGIN_H */
