/* problem.c -- builds RFC 9457 problem+json responses for the gateway's own
 * errors (see problem.h). The JSON is written by hand (jsonw.c): the shape
 * is fixed and small, and this runs on error paths that should not depend
 * on an allocating library. It does not log. */
#include "problem.h"

#include <string.h>

#include "jsonw.h"

const char *
problem_title(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "Unknown";
}

kapi_status
problem_respond(kapi_req *r, int status, const char *detail)
{
    char body[1024];
    size_t len = 0;
    const char *id = r->id.ptr ? r->id.ptr : "";
    jsonw_printf(body, sizeof(body), &len,
                 "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d,\"detail\":\"",
                 problem_title(status), status);
    jsonw_escape(body, sizeof(body) - 80, &len, detail ? detail : "", detail ? strlen(detail) : 0);
    jsonw_printf(body, sizeof(body), &len, "\",\"request_id\":\"");
    jsonw_escape(body, sizeof(body) - 4, &len, id, r->id.len);
    jsonw_printf(body, sizeof(body), &len, "\"}");

    const kapi_header h = {KAPI_STR("Content-Type"), KAPI_STR("application/problem+json")};
    return req_set_response(r, status, &h, 1, (kapi_str){body, len});
}
