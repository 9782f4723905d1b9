/* request.c -- request and response objects: header lists, arena copies,
 * query-parameter decoding, and the phase-checked SDK accessors that the
 * kapi_host table points at (see request.h and kapi/host.h's phase table).
 *
 * It is shared by the gateway and the fake host, so it must not depend on
 * libmicrohttpd, the event loop or the module loader. It never logs. */
#include "request.h"

#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include <strings.h>

/* ---- phase checks: one bit per phase in which a call is valid ---- */

enum {
    IN_ACCESS = 1 << REQ_PHASE_ACCESS,
    IN_HANDLE = 1 << REQ_PHASE_HANDLE,
    IN_RESPONSE = 1 << REQ_PHASE_RESPONSE,
    IN_LOG = 1 << REQ_PHASE_LOG,
    IN_ANY = IN_ACCESS | IN_HANDLE | IN_RESPONSE | IN_LOG,
};

static kapi_status
check(const kapi_req *r, unsigned phases)
{
    if (!r)
        return KAPI_EINVAL;
    return (phases & (1u << r->phase)) ? KAPI_OK : KAPI_EPHASE;
}

#define CHECK(r, phases, out)                                                                      \
    do {                                                                                           \
        kapi_status st_ = check((r), (phases));                                                    \
        if (st_ != KAPI_OK)                                                                        \
            return st_;                                                                            \
        if (!(out))                                                                                \
            return KAPI_EINVAL;                                                                    \
    } while (0)

/* ---- basics ---- */

/* A malloc'd buffer the request frees (req_adopt). */
struct req_owned {
    char *buf;
    struct req_owned *next;
};

void
req_init(kapi_req *r, void *buf, size_t len)
{
    memset(r, 0, sizeof(*r));
    arena_init(&r->arena, buf, len);
}

void
req_release(kapi_req *r)
{
    for (struct req_owned *o = r->owned; o; o = o->next)
        free(o->buf);
    r->owned = NULL;
    arena_release(&r->arena);
}

kapi_status
req_adopt(kapi_req *r, char *buf, size_t len, kapi_str *out)
{
    if (!buf || len == 0) {
        free(buf);
        *out = (kapi_str){"", 0};
        return KAPI_OK;
    }
    struct req_owned *o = arena_alloc(&r->arena, sizeof(*o));
    char *b = o ? realloc(buf, len + 1) : NULL; /* room for the NUL views end in */
    if (!b) {
        free(buf);
        *out = (kapi_str){"", 0};
        return KAPI_ENOMEM;
    }
    b[len] = '\0';
    o->buf = b;
    o->next = r->owned;
    r->owned = o;
    *out = (kapi_str){b, len};
    return KAPI_OK;
}

kapi_status
req_strdup(kapi_req *r, const char *s, size_t len, kapi_str *out)
{
    char *p = arena_strndup(&r->arena, s ? s : "", s ? len : 0);
    if (!p) {
        *out = (kapi_str){"", 0};
        return KAPI_ENOMEM;
    }
    *out = (kapi_str){p, s ? len : 0};
    return KAPI_OK;
}

bool
req_str_ieq(kapi_str a, kapi_str b)
{
    return a.len == b.len && (a.len == 0 || strncasecmp(a.ptr, b.ptr, a.len) == 0);
}

/* ---- header lists ---- */

kapi_status
req_headers_add(kapi_req *r, header_list *l, kapi_str name, kapi_str value)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        kapi_header *v = arena_alloc(&r->arena, cap * sizeof(*v));
        if (!v)
            return KAPI_ENOMEM;
        if (l->n)
            memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
        l->cap = cap;
    }
    kapi_header *h = &l->v[l->n];
    if (req_strdup(r, name.ptr, name.len, &h->name) != KAPI_OK ||
        req_strdup(r, value.ptr, value.len, &h->value) != KAPI_OK)
        return KAPI_ENOMEM;
    l->n++;
    return KAPI_OK;
}

kapi_status
req_headers_get(const header_list *l, kapi_str name, size_t index, kapi_str *out)
{
    for (size_t i = 0; i < l->n; i++) {
        if (req_str_ieq(l->v[i].name, name) && index-- == 0) {
            *out = l->v[i].value;
            return KAPI_OK;
        }
    }
    return KAPI_ENOTFOUND;
}

void
req_headers_remove(header_list *l, kapi_str name)
{
    size_t keep = 0;
    for (size_t i = 0; i < l->n; i++)
        if (!req_str_ieq(l->v[i].name, name))
            l->v[keep++] = l->v[i];
    l->n = keep;
}

static kapi_status
headers_set(kapi_req *r, header_list *l, kapi_str name, kapi_str value)
{
    req_headers_remove(l, name);
    return req_headers_add(r, l, name, value);
}

static kapi_status
headers_at(const header_list *l, size_t index, kapi_header *out)
{
    if (index >= l->n)
        return KAPI_ENOTFOUND;
    *out = l->v[index];
    return KAPI_OK;
}

/* A header name is an RFC 9110 token; a value has no CR, LF or NUL, so a
 * module cannot split a response by accident. */
bool
req_valid_token(kapi_str s)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (!s.ptr || s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (c == 0 || !strchr(tchar, c)))
            return false;
    }
    return true;
}

bool
req_valid_value(kapi_str s)
{
    if (!s.ptr && s.len)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '\r' || s.ptr[i] == '\n' || s.ptr[i] == '\0')
            return false;
    return true;
}

static kapi_status
write_header(kapi_req *r, unsigned phases, header_list *l, kapi_str name, kapi_str value,
             bool replace)
{
    kapi_status st = check(r, phases);
    if (st != KAPI_OK)
        return st;
    if (!req_valid_token(name) || !req_valid_value(value))
        return KAPI_EINVAL;
    return replace ? headers_set(r, l, name, value) : req_headers_add(r, l, name, value);
}

/* ---- request readers ---- */

/* The plain view readers: sdk_req_method reads r->method, and so on. */
#define VIEW_READER(field)                                                                         \
    static kapi_status sdk_req_##field(kapi_req *r, kapi_str *out)                                 \
    {                                                                                              \
        CHECK(r, IN_ANY, out);                                                                     \
        *out = r->field.ptr ? r->field : (kapi_str){"", 0};                                        \
        return KAPI_OK;                                                                            \
    }

VIEW_READER(method)
VIEW_READER(path)
VIEW_READER(query)
VIEW_READER(host)
VIEW_READER(client_addr)
VIEW_READER(id)
VIEW_READER(body)

/* The byte at S[*I] of a form-encoded component (LEN bytes), decoded:
 * '+' is a space, "%XX" one byte, a malformed escape stays literal.
 * Advances *I past what it consumed. */
static char
query_byte(const char *s, size_t len, size_t *i)
{
    char c = s[(*i)++];
    int hi, lo;
    if (c == '+')
        return ' ';
    if (c == '%' && *i + 1 < len && (hi = hex_digit(s[*i])) >= 0 &&
        (lo = hex_digit(s[*i + 1])) >= 0) {
        *i += 2;
        return (char)(hi << 4 | lo);
    }
    return c;
}

/* Decodes one form-encoded query component into the arena. */
static kapi_status
query_decode(kapi_req *r, const char *s, size_t len, kapi_str *out)
{
    char *d = arena_alloc(&r->arena, len + 1);
    if (!d)
        return KAPI_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len;)
        d[n++] = query_byte(s, len, &i);
    *out = (kapi_str){d, n};
    return KAPI_OK;
}

/* True when the form-encoded S (LEN bytes) decodes to NAME; decodes on the
 * fly, so looking a parameter up allocates nothing. */
static bool
query_key_is(const char *s, size_t len, kapi_str name)
{
    size_t n = 0;
    for (size_t i = 0; i < len; n++)
        if (n >= name.len || name.ptr[n] != query_byte(s, len, &i))
            return false;
    return n == name.len;
}

static kapi_status
sdk_req_query_param(kapi_req *r, kapi_str name, size_t index, kapi_str *out)
{
    CHECK(r, IN_ANY, out);
    const char *p = r->query.ptr, *end = p ? p + r->query.len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *key_end = eq ? eq : pair_end;
        if (query_key_is(p, (size_t)(key_end - p), name) && index-- == 0) {
            const char *v = eq ? eq + 1 : pair_end;
            return query_decode(r, v, (size_t)(pair_end - v), out);
        }
        p = pair_end + 1;
    }
    return KAPI_ENOTFOUND;
}

static kapi_status
sdk_req_path_param(kapi_req *r, kapi_str name, kapi_str *out)
{
    CHECK(r, IN_ANY, out);
    for (size_t i = 0; i < r->nparams; i++) {
        if (r->param_names[i].len == name.len &&
            memcmp(r->param_names[i].ptr, name.ptr, name.len) == 0) {
            *out = r->param_values[i];
            return KAPI_OK;
        }
    }
    return KAPI_ENOTFOUND;
}

static kapi_status
sdk_req_header(kapi_req *r, kapi_str name, size_t index, kapi_str *out)
{
    CHECK(r, IN_ANY, out);
    return req_headers_get(&r->headers, name, index, out);
}

static kapi_status
sdk_req_header_at(kapi_req *r, size_t index, kapi_header *out)
{
    CHECK(r, IN_ANY, out);
    return headers_at(&r->headers, index, out);
}

/* ---- request writers ---- */

static kapi_status
sdk_req_header_set(kapi_req *r, kapi_str name, kapi_str value)
{
    return write_header(r, IN_ACCESS, r ? &r->headers : NULL, name, value, true);
}

static kapi_status
sdk_req_header_add(kapi_req *r, kapi_str name, kapi_str value)
{
    return write_header(r, IN_ACCESS, r ? &r->headers : NULL, name, value, false);
}

static kapi_status
sdk_req_header_remove(kapi_req *r, kapi_str name)
{
    kapi_status st = check(r, IN_ACCESS);
    if (st == KAPI_OK)
        req_headers_remove(&r->headers, name);
    return st;
}

/* ---- responses ---- */

/* A final response status: 1xx are interim answers, never a response. */
static bool
valid_status(int status)
{
    return status >= 200 && status <= 599;
}

/* Sets status, headers (after those already set when KEEP_HEADERS) and body. */
static kapi_status
fill_response(kapi_req *r, int status, const kapi_header *headers, size_t n, kapi_str body,
              bool keep_headers)
{
    if (!valid_status(status) || (n && !headers) || (!body.ptr && body.len))
        return KAPI_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!req_valid_token(headers[i].name) || !req_valid_value(headers[i].value))
            return KAPI_EINVAL;
    if (!keep_headers)
        r->resp_headers = (header_list){0};
    for (size_t i = 0; i < n; i++)
        if (req_headers_add(r, &r->resp_headers, headers[i].name, headers[i].value) != KAPI_OK)
            return KAPI_ENOMEM;
    if (req_strdup(r, body.ptr, body.ptr ? body.len : 0, &r->resp_body) != KAPI_OK)
        return KAPI_ENOMEM;
    r->status = status;
    return KAPI_OK;
}

kapi_status
req_set_response(kapi_req *r, int status, const kapi_header *headers, size_t n, kapi_str body)
{
    return fill_response(r, status, headers, n, body, false);
}

static kapi_status
sdk_respond(kapi_req *r, int status, const kapi_header *headers, size_t n, kapi_str body)
{
    kapi_status st = check(r, IN_ACCESS | IN_HANDLE);
    if (st != KAPI_OK)
        return st;
    if (r->responded)
        return KAPI_ESTATE;
    if ((st = fill_response(r, status, headers, n, body, true)) == KAPI_OK)
        r->responded = true;
    return st;
}

static kapi_status
sdk_resp_status(kapi_req *r, int *out)
{
    CHECK(r, IN_HANDLE | IN_RESPONSE | IN_LOG, out);
    *out = r->status;
    return KAPI_OK;
}

static kapi_status
sdk_resp_set_status(kapi_req *r, int status)
{
    kapi_status st = check(r, IN_HANDLE | IN_RESPONSE);
    if (st != KAPI_OK)
        return st;
    if (!valid_status(status))
        return KAPI_EINVAL;
    r->status = status;
    return KAPI_OK;
}

static kapi_status
sdk_resp_header(kapi_req *r, kapi_str name, size_t index, kapi_str *out)
{
    CHECK(r, IN_HANDLE | IN_RESPONSE | IN_LOG, out);
    return req_headers_get(&r->resp_headers, name, index, out);
}

static kapi_status
sdk_resp_header_at(kapi_req *r, size_t index, kapi_header *out)
{
    CHECK(r, IN_HANDLE | IN_RESPONSE | IN_LOG, out);
    return headers_at(&r->resp_headers, index, out);
}

static kapi_status
sdk_resp_header_set(kapi_req *r, kapi_str name, kapi_str value)
{
    return write_header(r, IN_HANDLE | IN_RESPONSE, r ? &r->resp_headers : NULL, name, value, true);
}

static kapi_status
sdk_resp_header_add(kapi_req *r, kapi_str name, kapi_str value)
{
    return write_header(r, IN_HANDLE | IN_RESPONSE, r ? &r->resp_headers : NULL, name, value,
                        false);
}

static kapi_status
sdk_resp_header_remove(kapi_req *r, kapi_str name)
{
    kapi_status st = check(r, IN_HANDLE | IN_RESPONSE);
    if (st == KAPI_OK)
        req_headers_remove(&r->resp_headers, name);
    return st;
}

static kapi_status
sdk_resp_body(kapi_req *r, kapi_str *out)
{
    CHECK(r, IN_HANDLE | IN_RESPONSE | IN_LOG, out);
    *out = r->resp_body.ptr ? r->resp_body : (kapi_str){"", 0};
    return KAPI_OK;
}

static kapi_status
sdk_resp_set_body(kapi_req *r, kapi_str body)
{
    kapi_status st = check(r, IN_HANDLE | IN_RESPONSE);
    if (st != KAPI_OK)
        return st;
    if (!body.ptr && body.len)
        return KAPI_EINVAL;
    return req_strdup(r, body.ptr, body.len, &r->resp_body);
}

/* ---- subrequest arguments (kapi_host.fetch) ---- */

/* An origin-form path and query as the gateway sends it: '/' first, no
 * space, control byte or '#'. */
static bool
valid_request_path(kapi_str p)
{
    if (p.len == 0 || p.ptr[0] != '/')
        return false;
    for (size_t i = 0; i < p.len; i++) {
        unsigned char c = (unsigned char)p.ptr[i];
        if (c <= ' ' || c == 0x7f || c == '#')
            return false;
    }
    return true;
}

/* "http[s]://HOST[:PORT][/path?query]" into OUT. */
static bool
parse_fetch_url(kapi_str url, req_fetch_target *out)
{
    const char *p = url.ptr, *end = url.ptr + url.len;
    if (url.len > 7 && strncmp(p, "http://", 7) == 0) {
        out->tls = false;
        out->port = 80;
        p += 7;
    } else if (url.len > 8 && strncmp(p, "https://", 8) == 0) {
        out->tls = true;
        out->port = 443;
        p += 8;
    } else {
        return false;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        hs = ++p;
        while (p < end && *p != ']')
            p++;
        if (p == end)
            return false;
        he = p++;
    } else {
        while (p < end && *p != ':' && *p != '/' && *p != '?')
            p++;
        he = p;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof(out->host))
        return false;
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)hs[i] <= ' ' || hs[i] == 0x7f)
            return false;
    memcpy(out->host, hs, hl);
    out->host[hl] = '\0';
    if (p < end && *p == ':') {
        unsigned v = 0;
        const char *ds = ++p;
        while (p < end && *p >= '0' && *p <= '9' && v <= 65535)
            v = v * 10 + (unsigned)(*p++ - '0');
        if (p == ds || v == 0 || v > 65535)
            return false;
        out->port = (uint16_t)v;
    }
    out->path = p < end ? (kapi_str){p, (size_t)(end - p)} : KAPI_STR("/");
    return valid_request_path(out->path);
}

kapi_status
req_fetch_check(const kapi_req *r, const kapi_fetch_request *f, kapi_fetch_done done,
                req_fetch_target *out)
{
    if (!r || !f || !done || !out)
        return KAPI_EINVAL;
    if (r->phase != REQ_PHASE_ACCESS && r->phase != REQ_PHASE_HANDLE)
        return KAPI_EPHASE;
    bool views = (f->method.ptr || !f->method.len) && (f->upstream.ptr || !f->upstream.len) &&
                 (f->url.ptr || !f->url.len) && (f->body.ptr || !f->body.len) &&
                 (f->headers || !f->nheaders);
    if (!views || (f->method.len && !req_valid_token(f->method)))
        return KAPI_EINVAL;
    for (size_t i = 0; i < f->nheaders; i++)
        if (!req_valid_token(f->headers[i].name) || !req_valid_value(f->headers[i].value))
            return KAPI_EINVAL;
    memset(out, 0, sizeof(*out));
    out->method = f->method.len ? f->method : KAPI_STR("GET");
    if (f->upstream.len) {
        out->path = f->url.len ? f->url : KAPI_STR("/");
        return valid_request_path(out->path) ? KAPI_OK : KAPI_EINVAL;
    }
    return parse_fetch_url(f->url, out) ? KAPI_OK : KAPI_EINVAL;
}

/* ---- memory and state ---- */

static void *
sdk_alloc(kapi_req *r, size_t size)
{
    return check(r, IN_ANY) == KAPI_OK ? arena_alloc(&r->arena, size) : NULL;
}

static void *
sdk_ctx(kapi_req *r)
{
    return check(r, IN_ANY) == KAPI_OK ? r->current_ctx : NULL;
}

static kapi_status
sdk_shared_set(kapi_req *r, kapi_str key, kapi_str value)
{
    kapi_status st = check(r, IN_ANY);
    if (st != KAPI_OK)
        return st;
    if (!key.ptr || key.len == 0 || (!value.ptr && value.len))
        return KAPI_EINVAL;
    for (size_t i = 0; i < r->shared.n; i++) {
        kapi_header *h = &r->shared.v[i];
        if (h->name.len == key.len && memcmp(h->name.ptr, key.ptr, key.len) == 0)
            return req_strdup(r, value.ptr, value.len, &h->value);
    }
    return req_headers_add(r, &r->shared, key, value);
}

static kapi_status
sdk_shared_get(kapi_req *r, kapi_str key, kapi_str *out)
{
    CHECK(r, IN_ANY, out);
    for (size_t i = 0; i < r->shared.n; i++) {
        const kapi_header *h = &r->shared.v[i];
        if (h->name.len == key.len && memcmp(h->name.ptr, key.ptr, key.len) == 0) {
            *out = h->value;
            return KAPI_OK;
        }
    }
    return KAPI_ENOTFOUND;
}

void
req_fill_host(kapi_host *h)
{
    h->size = sizeof(*h);
    h->abi_major = KAPI_ABI_MAJOR;
    h->abi_minor = KAPI_ABI_MINOR;
    h->req_method = sdk_req_method;
    h->req_path = sdk_req_path;
    h->req_query = sdk_req_query;
    h->req_query_param = sdk_req_query_param;
    h->req_path_param = sdk_req_path_param;
    h->req_host = sdk_req_host;
    h->req_client_addr = sdk_req_client_addr;
    h->req_id = sdk_req_id;
    h->req_header = sdk_req_header;
    h->req_header_at = sdk_req_header_at;
    h->req_body = sdk_req_body;
    h->req_header_set = sdk_req_header_set;
    h->req_header_add = sdk_req_header_add;
    h->req_header_remove = sdk_req_header_remove;
    h->respond = sdk_respond;
    h->resp_status = sdk_resp_status;
    h->resp_set_status = sdk_resp_set_status;
    h->resp_header = sdk_resp_header;
    h->resp_header_at = sdk_resp_header_at;
    h->resp_header_set = sdk_resp_header_set;
    h->resp_header_add = sdk_resp_header_add;
    h->resp_header_remove = sdk_resp_header_remove;
    h->resp_body = sdk_resp_body;
    h->resp_set_body = sdk_resp_set_body;
    h->alloc = sdk_alloc;
    h->ctx = sdk_ctx;
    h->shared_set = sdk_shared_set;
    h->shared_get = sdk_shared_get;
}
