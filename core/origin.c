/* origin.c -- the process-wide registry of upstream origins (see origin.h).
 *
 * A mutex-protected array of pointers: an origin's id is its index, so ids
 * are dense, and an origin never moves once allocated, so the pointers
 * handed out stay valid while the array grows. The resolver runs outside
 * the lock (it may wait on DNS when the caller allows it); two threads
 * registering the same origin at once both resolve, and the second to take
 * the lock finds the first's entry and drops its own. It opens no
 * connection (uclient.c) and never re-resolves: an address change needs a
 * restart, like nginx's upstream blocks without a resolver. */
#include "origin.h"

#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ORIGINS_INITIAL 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static origin **origins;
static unsigned norigins;
static unsigned cap;

static void
origin_free(origin *o)
{
    if (!o)
        return;
    free(o->host);
    free(o->authority);
    free(o->base_url);
    free(o);
}

/* Sets *OUT to HOST lower-cased, without the brackets of "[::1]". A host
 * ends up in the Host header: blanks, controls and URL delimiters are
 * refused (KAPI_EINVAL). */
static kapi_status
host_normalize(const char *host, char **out)
{
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len == 0)
        return KAPI_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)host[i];
        if (ch <= ' ' || ch >= 0x7f || strchr("/?#@[]\\\"", ch))
            return KAPI_EINVAL;
    }
    char *h = malloc(len + 1);
    if (!h)
        return KAPI_ENOMEM;
    for (size_t i = 0; i < len; i++)
        h[i] = (char)tolower((unsigned char)host[i]);
    h[len] = '\0';
    *out = h;
    return KAPI_OK;
}

static origin *
find(bool tls, const char *host, uint16_t port)
{
    for (unsigned i = 0; i < norigins; i++) {
        origin *o = origins[i];
        if (o->tls == tls && o->port == port && strcmp(o->host, host) == 0)
            return o;
    }
    return NULL;
}

/* Resolves O->host (the first address wins) into O->addr with O->port. */
static kapi_status
resolve(origin *o, bool may_block, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (!may_block && strcmp(o->host, "localhost") != 0)
        hints.ai_flags = AI_NUMERICHOST;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(o->host, NULL, &hints, &res);
    if (rc != 0) {
        if (rc == EAI_NONAME && hints.ai_flags & AI_NUMERICHOST)
            snprintf(err, errlen,
                     "cannot resolve \"%s\": not a numeric address (only "
                     "addresses and localhost can be resolved here)",
                     o->host);
        else
            snprintf(err, errlen, "cannot resolve \"%s\": %s", o->host, gai_strerror(rc));
        return rc == EAI_MEMORY ? KAPI_ENOMEM : KAPI_EINVAL;
    }
    kapi_status st = KAPI_OK;
    if (res->ai_addrlen > sizeof o->addr ||
        (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
        snprintf(err, errlen, "cannot resolve \"%s\": not an IP address", o->host);
        st = KAPI_EINVAL;
        goto out;
    }
    memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
    o->addrlen = res->ai_addrlen;
    if (res->ai_family == AF_INET)
        ((struct sockaddr_in *)&o->addr)->sin_port = htons(o->port);
    else
        ((struct sockaddr_in6 *)&o->addr)->sin6_port = htons(o->port);
out:
    freeaddrinfo(res);
    return st;
}

/* Fills authority and base_url: "host" on the scheme's default port,
 * else "host:port"; an IPv6 literal in brackets. */
static kapi_status
format_names(origin *o)
{
    bool v6 = strchr(o->host, ':') != NULL;
    bool default_port = o->port == (o->tls ? 443 : 80);
    char port[8] = "";
    if (!default_port)
        snprintf(port, sizeof port, ":%u", (unsigned)o->port);
    size_t alen = strlen(o->host) + (v6 ? 2 : 0) + strlen(port);
    const char *scheme = o->tls ? "https://" : "http://";
    o->authority = malloc(alen + 1);
    o->base_url = malloc(strlen(scheme) + alen + 1);
    if (!o->authority || !o->base_url)
        return KAPI_ENOMEM;
    snprintf(o->authority, alen + 1, "%s%s%s%s", v6 ? "[" : "", o->host, v6 ? "]" : "", port);
    snprintf(o->base_url, strlen(scheme) + alen + 1, "%s%s", scheme, o->authority);
    return KAPI_OK;
}

/* Appends O under the lock; its id is its index. */
static kapi_status
append(origin *o)
{
    if (norigins == cap) {
        unsigned cap2 = cap ? 2 * cap : ORIGINS_INITIAL;
        origin **grown = realloc(origins, cap2 * sizeof *grown);
        if (!grown)
            return KAPI_ENOMEM;
        origins = grown;
        cap = cap2;
    }
    o->id = norigins;
    origins[norigins++] = o;
    return KAPI_OK;
}

kapi_status
origin_get(bool tls, const char *host, uint16_t port, bool may_block, const origin **out, char *err,
           size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!out || !host)
        return KAPI_EINVAL;
    *out = NULL;
    if (port == 0) {
        snprintf(err, errlen, "invalid port 0 for \"%s\"", host);
        return KAPI_EINVAL;
    }
    kapi_status st = KAPI_ENOMEM;
    origin *o = calloc(1, sizeof *o);
    if (!o)
        goto fail;
    o->tls = tls;
    o->port = port;
    if ((st = host_normalize(host, &o->host)) != KAPI_OK) {
        if (st == KAPI_EINVAL)
            snprintf(err, errlen, "invalid host name \"%s\"", host);
        goto fail;
    }

    pthread_mutex_lock(&lock);
    const origin *known = find(tls, o->host, port);
    pthread_mutex_unlock(&lock);
    if (known) {
        origin_free(o);
        *out = known;
        return KAPI_OK;
    }

    if ((st = resolve(o, may_block, err, errlen)) != KAPI_OK)
        goto fail;
    if ((st = format_names(o)) != KAPI_OK)
        goto fail;

    pthread_mutex_lock(&lock);
    if ((known = find(tls, o->host, port)) == NULL)
        st = append(o);
    pthread_mutex_unlock(&lock);
    if (st != KAPI_OK)
        goto fail;
    if (known) {
        origin_free(o); /* another thread registered it while we resolved */
        *out = known;
    } else {
        *out = o;
    }
    return KAPI_OK;

fail:
    if (st == KAPI_ENOMEM && err[0] == '\0')
        snprintf(err, errlen, "out of memory registering \"%s\"", host);
    origin_free(o);
    return st;
}

unsigned
origin_count(void)
{
    pthread_mutex_lock(&lock);
    unsigned n = norigins;
    pthread_mutex_unlock(&lock);
    return n;
}

void
origin_registry_free(void)
{
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < norigins; i++)
        origin_free(origins[i]);
    free(origins);
    origins = NULL;
    norigins = cap = 0;
    pthread_mutex_unlock(&lock);
}
