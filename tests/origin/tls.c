/* tls.c -- everything kapi_test_origin asks of GnuTLS: the HTTPS transport
 * (--tls CERT KEY) and the SHA-256 of request bodies that /echo reports.
 * GnuTLS codes stop here: callers see byte counts, 0 and -1. It does not
 * speak HTTP (conn.c) nor own sockets. */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_origin.h"

#define HANDSHAKE_TIMEOUT_MS 10000

struct tls_session {
    gnutls_session_t s;
};

struct tls_sha256 {
    gnutls_hash_hd_t h;
};

static gnutls_certificate_credentials_t creds;
static gnutls_priority_t priority;

int
tls_setup(const char *cert_file, const char *key_file)
{
    int rc;
    if ((rc = gnutls_global_init()) < 0)
        goto fail;
    if ((rc = gnutls_certificate_allocate_credentials(&creds)) < 0)
        goto fail;
    rc = gnutls_certificate_set_x509_key_file(creds, cert_file, key_file, GNUTLS_X509_FMT_PEM);
    if (rc < 0)
        goto fail;
    if ((rc = gnutls_priority_init(&priority, NULL, NULL)) < 0)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "kapi_test_origin: TLS setup (%s, %s): %s\n", cert_file, key_file,
            gnutls_strerror(rc));
    return -1;
}

tls_session *
tls_accept(int fd)
{
    tls_session *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) < 0) {
        free(t);
        return NULL;
    }
    /* Only HTTP/1.1: a client offering h2 alone still gets a handshake. */
    gnutls_datum_t alpn = {(unsigned char *)"http/1.1", 8};
    int rc = gnutls_priority_set(t->s, priority);
    if (rc >= 0)
        rc = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, creds);
    if (rc >= 0)
        rc = gnutls_alpn_set_protocols(t->s, &alpn, 1, 0);
    if (rc >= 0) {
        gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_IGNORE);
        gnutls_transport_set_int(t->s, fd);
        gnutls_handshake_set_timeout(t->s, HANDSHAKE_TIMEOUT_MS);
        do
            rc = gnutls_handshake(t->s);
        while (rc < 0 && !gnutls_error_is_fatal(rc));
    }
    if (rc < 0) {
        tls_close(t, false);
        return NULL;
    }
    return t;
}

long
tls_read(tls_session *t, void *data, size_t len)
{
    for (;;) {
        ssize_t n = gnutls_record_recv(t->s, data, len);
        if (n >= 0)
            return (long)n;
        if (n == GNUTLS_E_INTERRUPTED)
            continue;
        /* A peer closing without close_notify is still just closing. */
        return n == GNUTLS_E_PREMATURE_TERMINATION ? 0 : -1;
    }
}

int
tls_write(tls_session *t, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = gnutls_record_send(t->s, p, len);
        if (n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n <= 0)
            return -1; /* GNUTLS_E_AGAIN too: the socket's send timeout passed */
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

bool
tls_pending(tls_session *t)
{
    return gnutls_record_check_pending(t->s) > 0;
}

void
tls_close(tls_session *t, bool notify)
{
    if (!t)
        return;
    if (notify)
        gnutls_bye(t->s, GNUTLS_SHUT_WR);
    gnutls_deinit(t->s);
    free(t);
}

tls_sha256 *
tls_sha256_begin(void)
{
    tls_sha256 *h = calloc(1, sizeof(*h));
    if (h && gnutls_hash_init(&h->h, GNUTLS_DIG_SHA256) < 0) {
        free(h);
        return NULL;
    }
    return h;
}

void
tls_sha256_update(tls_sha256 *h, const void *data, size_t len)
{
    if (h)
        gnutls_hash(h->h, data, len);
}

void
tls_sha256_end(tls_sha256 *h, char hex[65])
{
    unsigned char d[32];
    if (h) {
        gnutls_hash_deinit(h->h, d);
        free(h);
    } else {
        gnutls_hash_fast(GNUTLS_DIG_SHA256, "", 0, d);
    }
    for (size_t i = 0; i < sizeof(d); i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}
