/* problem.h -- the gateway's own error answers as application/problem+json
 * (RFC 9457): type, title, status, detail and the request id.
 *
 * Every error kapi itself produces goes through problem_respond, so the body
 * shape is written once. It does not decide which status applies (callers
 * do) and it never reveals internal addresses: DETAIL must be client-safe. */
#ifndef KAPI_PROBLEM_H
#define KAPI_PROBLEM_H

#include "request.h"

/* The reason phrase of STATUS ("Not Found"); "Unknown" for an unlisted code. */
const char *problem_title(int status);

/* Replaces R's response with a problem+json body for STATUS with DETAIL
 * (client-safe text, JSON-escaped here) and R's request id. Extra headers
 * (e.g. Allow, Retry-After) may be added to r->resp_headers afterwards. */
kapi_status problem_respond(kapi_req *r, int status, const char *detail);

#endif /* KAPI_PROBLEM_H */
