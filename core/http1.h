/* http1.h -- the HTTP/1.1 wire format of upstream exchanges: writing a
 * request head, and reading a response with http-parser (Debian's
 * libhttp-parser), never by hand.
 *
 * The response reader copies the status, the header lines and the body
 * into buffers it owns, bounds the body, skips 1xx interim responses, and
 * tells whether the connection may be reused. It does no I/O, keeps no
 * sockets and knows nothing of pools, timeouts or requests (uclient.c). */
#ifndef KAPI_HTTP1_H
#define KAPI_HTTP1_H

#include <stdbool.h>
#include <stddef.h>

#include <http_parser.h>
#include <kapi/types.h>

/* ---- request head ---- */

/* The bytes http1_write_head writes for these arguments. */
size_t http1_head_size(kapi_str method, kapi_str target, const kapi_header *headers, size_t n,
                       size_t body_len);

/* Writes "METHOD TARGET HTTP/1.1\r\n", each header line, then
 * "Content-Length: BODY_LEN\r\n" when BODY_LEN > 0 or the method is POST,
 * PUT or PATCH, then "\r\n", into BUF (at least http1_head_size bytes).
 * TARGET is the origin-form path and query ("/a/b?x=1"). HEADERS must not
 * hold Content-Length or Transfer-Encoding (the body is always sent with a
 * length). Returns the bytes written. Names and values are not checked:
 * they come from the request's validated header list. */
size_t http1_write_head(char *buf, kapi_str method, kapi_str target, const kapi_header *headers,
                        size_t n, size_t body_len);

/* ---- response ---- */

typedef enum http1_result {
    HTTP1_MORE = 0, /* feed more bytes */
    HTTP1_DONE,     /* a complete final response */
    HTTP1_ERROR,    /* malformed (or truncated, at EOF) */
    HTTP1_TOOBIG,   /* the body or the header section exceeds its limit */
} http1_result;

typedef struct http1_response {
    /* Results, valid once http1_response_feed/eof returned HTTP1_DONE. */
    int status;
    kapi_header *headers; /* views into this object's buffer, in order received */
    size_t nheaders;
    char *body; /* malloc'd, owned by this object (see http1_response_take_body) */
    size_t body_len;
    bool keep_alive; /* the connection may carry another request */

    /* Private. */
    http_parser parser;
    bool head;     /* the request was HEAD: no body follows */
    bool done;     /* the final response is complete */
    bool in_value; /* the last header callback was a value */
    bool interim;  /* reading a 1xx response, discarded */
    size_t max_body;
    size_t max_head;
    char *hbuf; /* header names and values, each NUL-terminated */
    size_t hlen, hcap;
    size_t *hoff; /* per header: name offset, value offset (2 per header) */
    size_t hoffcap;
    size_t body_cap;
    const char *error; /* why, for the log, when HTTP1_ERROR */
} http1_response;

/* Prepares R for one response. HEAD: the request was HEAD (the response
 * has no body whatever its headers say). MAX_BODY bounds the body,
 * MAX_HEAD the header section (names + values). */
void http1_response_init(http1_response *r, bool head, size_t max_body, size_t max_head);

/* Feeds LEN bytes read from the connection. *USED is set to the bytes
 * consumed; on HTTP1_DONE bytes past *USED belong to no response (the
 * caller must not reuse the connection when *USED < LEN). */
http1_result http1_response_feed(http1_response *r, const char *data, size_t len, size_t *used);

/* The connection reached EOF: completes a read-until-close body (DONE,
 * keep_alive false) or reports a truncated response (ERROR). */
http1_result http1_response_eof(http1_response *r);

/* True once any byte of the response (interim ones included) was fed. */
bool http1_response_started(const http1_response *r);

/* Hands the body buffer to the caller (who frees it with free()); R then
 * holds none. */
char *http1_response_take_body(http1_response *r, size_t *len);

/* Frees R's buffers (not R). */
void http1_response_free(http1_response *r);

#endif /* KAPI_HTTP1_H */
