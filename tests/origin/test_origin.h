/* test_origin.h -- what the files of kapi_test_origin share: its options,
 * its counters, one connection with the request it is serving, and the
 * calls between them: origin.c (process: CLI, listener, signals), stats.c
 * (counters), conn.c (HTTP/1.1 on one connection), routes.c (endpoints),
 * tls.c (everything GnuTLS) and buf.c (byte buffers, JSON strings).
 * Nothing here is part of kapi: it is a backend for kapi's tests. */
#ifndef KAPI_TEST_ORIGIN_H
#define KAPI_TEST_ORIGIN_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- buf.c ---- */

/* A growable byte buffer. Appends never fail loudly: on ENOMEM they set
 * FAILED, which stays set, and the owner checks it once. */
typedef struct buf {
    char *p;
    size_t len, cap;
    bool failed;
} buf;

void buf_append(buf *b, const void *data, size_t len);
void buf_puts(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends LEN bytes of S as a quoted JSON string: valid UTF-8 passes
 * through, every other byte becomes \u00XX (its Latin-1 reading). */
void buf_json(buf *b, const char *s, size_t len);
/* Empties B, releasing its memory when it holds more than KEEP bytes. */
void buf_reset(buf *b, size_t keep);
void buf_free(buf *b);

/* ---- origin.c ---- */

typedef struct origin_options {
    const char *name; /* X-Origin value; borrowed from argv */
    int keepalive_ms; /* idle keep-alive connections close after this */
    bool tls;         /* serving HTTPS */
} origin_options;

extern origin_options origin_opts;

/* ---- stats.c ---- */

/* Counts an accepted connection; returns the stats epoch it counted in. */
uint32_t stats_conn_opened(void);
/* Forgets a connection counted in EPOCH (and no longer open) because its
 * first request was a /stats one: control connections stay invisible. */
void stats_conn_uncount(uint32_t epoch);
void stats_conn_closed(void);
void stats_request(void);
void stats_reset(void);
void stats_json(buf *out);
bool stats_healthy(void);
void stats_set_healthy(bool healthy);

/* ---- tls.c ---- */

typedef struct tls_session tls_session;
typedef struct tls_sha256 tls_sha256;

/* Loads the PEM certificate chain and key once. Returns 0, or -1 after
 * printing why. */
int tls_setup(const char *cert_file, const char *key_file);
/* Runs the server handshake on FD (10 s at most). NULL on failure; the
 * caller still owns and closes FD. */
tls_session *tls_accept(int fd);
/* >0 bytes read, 0 at the end of the stream, -1 on error or timeout. */
long tls_read(tls_session *s, void *data, size_t len);
/* 0 when all LEN bytes were sent, -1 otherwise. */
int tls_write(tls_session *s, const void *data, size_t len);
bool tls_pending(tls_session *s);
/* Sends close_notify when NOTIFY, then frees S (not the socket). */
void tls_close(tls_session *s, bool notify);

tls_sha256 *tls_sha256_begin(void);
void tls_sha256_update(tls_sha256 *h, const void *data, size_t len);
/* Writes the hex digest of everything hashed by H (NULL: of nothing) into
 * HEX and frees H. */
void tls_sha256_end(tls_sha256 *h, char hex[65]);

/* ---- conn.c ---- */

typedef struct header {
    size_t name, name_len, value, value_len; /* offsets into request.hbuf */
    bool trailer;                            /* came after a chunked body */
} header;

typedef struct request {
    http_parser parser;
    buf url;  /* raw request-target, NUL-terminated once complete */
    buf hbuf; /* header names and values, back to back */
    header *headers;
    size_t nheaders, cap_headers;
    bool in_field; /* the last header callback was a name */
    buf body;      /* kept only when keep_body (the /body endpoint) */
    bool keep_body;
    uint64_t body_len;
    tls_sha256 *sha; /* NULL until the first body byte */
    bool started, headers_done, too_big, keep_alive;
    const char *path; /* into url: the raw path, not decoded */
    size_t path_len;
    const char *query; /* into url: after '?', NULL when there is none */
    size_t query_len;
} request;

typedef enum close_mode {
    /* close_notify (TLS), FIN, then reading and dropping what the client
     * still sends (1 s at most), so that no RST destroys the answer */
    CLOSE_GRACEFUL,
    CLOSE_RESET, /* RST at once: SO_LINGER 0 */
} close_mode;

typedef struct conn {
    int fd;
    tls_session *tls;
    uint32_t epoch; /* stats epoch the connection was counted in */
    bool uncounted; /* a control (/stats) connection, left out of stats */
    unsigned long served;
    request req;
    /* the response */
    buf out;         /* pending output, written by conn_flush */
    bool keep_alive; /* clear it before the headers to close afterwards */
    bool head;       /* HEAD request: headers only */
    bool http10;
    bool broken; /* a write failed: nothing more goes out */
    close_mode close;
    size_t in_off, in_len;
    char in[16384];
} conn;

/* Serves FD on a new detached thread; counts it in EPOCH. Returns 0 or -1
 * (then FD is closed and the connection uncounted). */
int conn_spawn(int fd, uint32_t epoch);

/* The first request header NAME (case-insensitive) or NULL; its length
 * in *LEN. Borrowed until the next request on C. */
const char *conn_header_value(conn *c, const char *name, size_t *len);

/* Response writing. Failures set c->broken and make later calls no-ops. */
void conn_begin(conn *c, int status);
void conn_header(conn *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Ends the header block with Content-Length CONTENT_LENGTH (none when
 * negative) and the Connection header keep_alive and http10 call for. */
void conn_end_headers(conn *c, long long content_length);
/* Body bytes (dropped for HEAD). */
void conn_send(conn *c, const void *data, size_t len);
/* One chunk of a chunked body; LEN 0 ends the body. */
void conn_chunk(conn *c, const void *data, size_t len);
/* Bytes as they are, even for HEAD: for deliberately broken answers. */
void conn_raw(conn *c, const void *data, size_t len);
void conn_flush(conn *c);
/* A whole response with a Content-Length. CTYPE may be NULL. */
void conn_respond(conn *c, int status, const char *ctype, const void *body, size_t len);

/* ---- routes.c ---- */

/* Prepares the generated-body pattern; once, before any connection. */
void routes_init(void);
/* True for the control endpoints (/stats...) left out of the counters. */
bool routes_is_control(const char *path, size_t len);
/* True when the endpoint for PATH needs the request body itself (/body);
 * the others see only its length and digest. */
bool routes_keeps_body(const char *path, size_t len);
/* Answers the complete request in c->req. */
void routes_dispatch(conn *c);
const char *routes_reason(int status);

#endif /* KAPI_TEST_ORIGIN_H */
