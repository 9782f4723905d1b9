/* testhost.c -- libkapi_test, the fake host (see kapi/test.h): a kapi_host
 * table whose request accessors are core/request.c's, a chain runner that
 * is core/chain.c, a loader that is core/module.c, and in-memory stand-ins
 * for what the server provides:
 * log() captures lines, pause() hands out heap tokens that resume() queues
 * (from any thread, under the host's mutex) until the test processes them,
 * and fetch() checks and copies a subrequest into a queue the test answers.
 *
 * It does not speak HTTP, route, run an event loop or enforce limits, and
 * it never calls a hook on a thread other than the test's. */
#include <kapi/test.h>

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "chain.h"
#include "dlist.h"
#include "log.h"
#include "module.h"
#include "problem.h"
#include "request.h"
#include "store.h"

enum { DEFAULT_PAUSE_MS = 30000, REQ_BUF = 8192 };

static const char SELF[] = "kapi-test"; /* tag of the fake host's own log lines */

/* A pause token. REQ is the request it pauses, NULL once abandoned (timeout,
 * request freed, hook did not return KAPI_PAUSE); REQ, QUEUED and the links
 * are guarded by HOST->mu because resume() may run on any thread. */
struct kapi_token {
    kapi_test_host *host;
    kapi_test_req *req;
    dlist_node link;  /* host->tokens: every token not yet processed */
    dlist_node qlink; /* host->queue: resumed, waiting for the test */
    bool queued;
};

typedef struct log_line {
    kapi_log_level level;
    char *text;
} log_line;

typedef struct instance_rec {
    const kapi_module *mod;
    void *instance;
} instance_rec;

/* A subrequest a module started (kapi/test.h, "subrequests"). ASKED's views
 * point into BLOB, one malloc'd copy of everything the module passed, so
 * they outlive the request. REQ is NULL once the request was freed. */
typedef struct test_fetch {
    kapi_test_req *req;
    kapi_fetch_done done;
    void *data;
    const char *module; /* the fetching module's name, for DONE's log lines */
    bool answered;
    kapi_test_fetch asked;
    char *blob;
} test_fetch;

/* A module's private context for single-hook calls on one request. */
typedef struct hook_ctx {
    const kapi_module *mod;
    void *ctx;
    struct hook_ctx *next;
} hook_ctx;

struct kapi_test_host {
    pthread_mutex_t mu; /* guards tokens, the queue, dropped and the log */
    pthread_cond_t cv;  /* signalled when a resume is queued */
    dlist tokens;
    dlist queue;
    size_t dropped;
    log_line *log;
    size_t nlog, caplog;
    bool echo_log;

    /* Test thread only. */
    module **mods; /* core/module.c references, released by host_free */
    size_t nmods, capmods;
    instance_rec *insts;
    size_t ninsts, capinsts;
    dlist reqs; /* every request not yet freed */
    unsigned next_id;
    test_fetch **fetches; /* every fetch started, in start order */
    size_t nfetches, capfetches;
    char **upstreams; /* names declared with kapi_test_upstream */
    size_t nupstreams, capupstreams;
};

struct kapi_test_req {
    kapi_req r; /* r.owner points back here */
    kapi_test_host *host;
    dlist_node link; /* host->reqs */
    kapi_test_state state;
    bool chained;  /* kapi_test_run started a chain on it */
    bool host_set; /* kapi_test_req_host was called */
    chain chain;
    hook_ctx *ctxs;
    uint32_t pause_timeout_ms;
    int up_status;
    header_list up_headers;
    kapi_str up_body;
    alignas(max_align_t) char buf[REQ_BUF]; /* the arena's first chunk */
};

/* The one host table of the process. It carries no host: a loaded module
 * is shared by every host that loads it (core/module.c calls its entry
 * once per file), so the table it keeps must outlive any one host. Hooks
 * find their host through the request (r->owner). */
static kapi_host g_table;
static pthread_once_t g_table_once = PTHREAD_ONCE_INIT;

/* Where log(NULL, ...) goes: the host whose create or entry runs on this
 * thread, else the most recently created live host. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static kapi_test_host *g_last;
static _Thread_local kapi_test_host *t_host;

/* ---- small helpers ---- */

/* Makes room for one more element in *V (N used, *CAP allocated). */
static bool
grow(void **v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *nv = realloc(*v, ncap * elem);
    if (!nv)
        return false;
    *v = nv;
    *cap = ncap;
    return true;
}

static kapi_str
view(const char *s)
{
    return (kapi_str){s, s ? strlen(s) : 0};
}

static kapi_str
nothing(void)
{
    return (kapi_str){NULL, 0};
}

static const char *
action_name(kapi_action a)
{
    switch (a) {
    case KAPI_CONTINUE: return "KAPI_CONTINUE";
    case KAPI_DONE: return "KAPI_DONE";
    case KAPI_PAUSE: return "KAPI_PAUSE";
    case KAPI_ERROR: return "KAPI_ERROR";
    }
    return "an unknown action";
}

/* ---- log ---- */

static void log_store(kapi_test_host *h, kapi_log_level level, const char *tag, const char *id,
                      const char *fmt, va_list ap) LOG_PRINTF(5, 0);

static void
log_store(kapi_test_host *h, kapi_log_level level, const char *tag, const char *id, const char *fmt,
          va_list ap)
{
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        return;
    pthread_mutex_lock(&h->mu);
    if (h->echo_log)
        fprintf(stderr, "kapi-test: %d [%s]%s%s %s\n", (int)level, tag ? tag : "-",
                id ? " req=" : "", id ? id : "", text);
    if (grow((void **)&h->log, &h->caplog, h->nlog, sizeof(*h->log))) {
        h->log[h->nlog++] = (log_line){level, text};
        text = NULL;
    }
    pthread_mutex_unlock(&h->mu);
    free(text);
}

static void host_log(kapi_req *r, kapi_log_level level, const char *fmt, ...) KAPI_PRINTF(3, 4);

static void
host_log(kapi_req *r, kapi_log_level level, const char *fmt, ...)
{
    kapi_test_host *h = NULL;
    const char *tag = NULL, *id = NULL;
    if (r) {
        kapi_test_req *tr = r->owner;
        h = tr->host;
        tag = r->current_module;
        id = r->id.ptr;
    } else if (!(h = t_host)) {
        pthread_mutex_lock(&g_mu);
        h = g_last;
        pthread_mutex_unlock(&g_mu);
    }
    if (!fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (h) {
        log_store(h, level, tag, id, fmt, ap);
    } else {
        fputs("kapi-test: (no host) ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

/* The fake host's own complaint about a module or a test. */
static void complain(kapi_test_host *h, const char *fmt, ...) KAPI_PRINTF(2, 3);

static void
complain(kapi_test_host *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_store(h, KAPI_LOG_ERROR, SELF, NULL, fmt, ap);
    va_end(ap);
}

size_t
kapi_test_log_count(kapi_test_host *h)
{
    if (!h)
        return 0;
    pthread_mutex_lock(&h->mu);
    size_t n = h->nlog;
    pthread_mutex_unlock(&h->mu);
    return n;
}

const char *
kapi_test_log_line(kapi_test_host *h, size_t index, kapi_log_level *level)
{
    const char *text = NULL;
    if (!h)
        return NULL;
    pthread_mutex_lock(&h->mu);
    if (index < h->nlog) {
        text = h->log[index].text;
        if (level)
            *level = h->log[index].level;
    }
    pthread_mutex_unlock(&h->mu);
    return text;
}

/* ---- pause and resume ---- */

static kapi_status
host_pause(kapi_req *r, uint32_t timeout_ms, kapi_token **out)
{
    if (!r)
        return KAPI_EINVAL;
    if (r->phase != REQ_PHASE_ACCESS && r->phase != REQ_PHASE_HANDLE)
        return KAPI_EPHASE;
    if (!out)
        return KAPI_EINVAL;
    if (r->token)
        return KAPI_ESTATE;
    kapi_test_req *tr = r->owner;
    kapi_token *t = calloc(1, sizeof(*t));
    if (!t)
        return KAPI_ENOMEM;
    t->host = tr->host;
    t->req = tr;
    pthread_mutex_lock(&t->host->mu);
    dlist_push_front(&t->host->tokens, &t->link);
    pthread_mutex_unlock(&t->host->mu);
    r->token = t;
    tr->pause_timeout_ms = timeout_ms ? timeout_ms : DEFAULT_PAUSE_MS;
    *out = t;
    return KAPI_OK;
}

static kapi_status
host_resume(kapi_token *t)
{
    if (!t)
        return KAPI_EINVAL;
    kapi_test_host *h = t->host;
    pthread_mutex_lock(&h->mu);
    if (t->queued) {
        /* Resumed twice before the test processed the first: say so rather
         * than corrupt the queue (after processing, the token is freed and a
         * second resume is a use after free, as in the gateway). */
        pthread_mutex_unlock(&h->mu);
        return KAPI_ESTATE;
    }
    t->queued = true;
    dlist_push_back(&h->queue, &t->qlink);
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return KAPI_OK;
}

/* Unlinks T from H's token list; H->mu held. */
static void
token_unlink(kapi_test_host *h, kapi_token *t)
{
    dlist_remove(&h->tokens, &t->link);
}

/* Detaches R from its token: the token's resume, whenever it comes, is
 * dropped. The token itself is freed when processed or with the host. */
static void
token_abandon(kapi_test_req *r)
{
    kapi_token *t = r->r.token;
    if (!t)
        return;
    pthread_mutex_lock(&r->host->mu);
    t->req = NULL;
    pthread_mutex_unlock(&r->host->mu);
    r->r.token = NULL;
}

/* After hook WHO returned A: a token with anything but KAPI_PAUSE is a
 * module bug the gateway would also refuse; abandon it and say so. */
static void
check_token(kapi_test_req *r, const char *who, kapi_action a)
{
    if (r->r.token && a != KAPI_PAUSE) {
        complain(r->host, "%s called pause() but returned %s: its resume will be dropped", who,
                 action_name(a));
        token_abandon(r);
    }
}

/* ---- the fake host table ---- */

static kapi_status host_fetch(kapi_req *r, const kapi_fetch_request *f, kapi_fetch_done done,
                              void *data);

static void
fill_table(void)
{
    req_fill_host(&g_table);
    store_fill_host(&g_table); /* KAPI_ESTATE until kapi_test_store_open */
    g_table.log = host_log;
    g_table.pause = host_pause;
    g_table.resume = host_resume;
    g_table.fetch = host_fetch;
}

kapi_test_host *
kapi_test_host_new(void)
{
    kapi_test_host *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        goto fail;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        goto fail;
    pthread_mutex_init(&h->mu, NULL);

    pthread_once(&g_table_once, fill_table);
    const char *echo = getenv("KAPI_TEST_LOG");
    h->echo_log = echo && *echo;

    pthread_mutex_lock(&g_mu);
    g_last = h;
    pthread_mutex_unlock(&g_mu);
    return h;
fail:
    free(h);
    return NULL;
}

const kapi_host *
kapi_test_host_table(kapi_test_host *h)
{
    return h ? &g_table : NULL;
}

void
kapi_test_host_free(kapi_test_host *h)
{
    if (!h)
        return;
    while (!dlist_empty(&h->reqs))
        kapi_test_req_free(dlist_entry(h->reqs.first, kapi_test_req, link));
    for (dlist_node *n; (n = dlist_pop_front(&h->tokens)) != NULL;)
        free(dlist_entry(n, kapi_token, link));
    for (size_t i = 0; i < h->nfetches; i++) {
        free(h->fetches[i]->blob);
        free(h->fetches[i]);
    }
    free(h->fetches);
    for (size_t i = 0; i < h->nupstreams; i++)
        free(h->upstreams[i]);
    free(h->upstreams);
    t_host = h;
    for (size_t i = h->ninsts; i-- > 0;)
        if (h->insts[i].mod->destroy)
            h->insts[i].mod->destroy(h->insts[i].instance);
    t_host = NULL;
    for (size_t i = h->nmods; i-- > 0;)
        module_release(h->mods[i]);
    for (size_t i = 0; i < h->nlog; i++)
        free(h->log[i].text);
    free(h->log);
    free(h->mods);
    free(h->insts);
    pthread_mutex_lock(&g_mu);
    if (g_last == h)
        g_last = NULL;
    pthread_mutex_unlock(&g_mu);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* ---- modules and instances ---- */

kapi_status
kapi_test_load(kapi_test_host *h, const char *so_path, const kapi_module **out, char *err,
               size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!h || !so_path || !out) {
        if (err && errlen)
            snprintf(err, errlen, "kapi_test_load: NULL host, path or out");
        return KAPI_EINVAL;
    }
    *out = NULL;
    /* core/module.c takes directories and a name: split "DIR/NAME.so". */
    const char *slash = strrchr(so_path, '/');
    const char *env = getenv("KAPI_MODULE_DIR");
    char *dir = slash ? strndup(so_path, slash == so_path ? 1 : (size_t)(slash - so_path))
                      : strdup(env && *env ? env : ".");
    const char *base = slash ? slash + 1 : so_path;
    size_t n = strlen(base);
    char *name = strndup(base, n > 3 && strcmp(base + n - 3, ".so") == 0 ? n - 3 : n);
    kapi_status st = KAPI_ENOMEM;
    module *m = NULL;
    if (!dir || !name || !grow((void **)&h->mods, &h->capmods, h->nmods, sizeof(*h->mods))) {
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", so_path);
        goto out;
    }
    const char *dirs[] = {dir};
    t_host = h;
    st = module_load(dirs, 1, name, &g_table, &m, err, errlen);
    t_host = NULL;
    if (st == KAPI_OK) {
        h->mods[h->nmods++] = m;
        *out = module_desc(m);
    }
out:
    free(dir);
    free(name);
    return st;
}

kapi_status
kapi_test_instance_new(kapi_test_host *h, const kapi_module *m, const char *config_json,
                       void **instance, kapi_error *err)
{
    if (err)
        *err = (kapi_error){{0}, {0}};
    if (!h || !m || !instance)
        return KAPI_EINVAL;
    *instance = NULL;
    if (!grow((void **)&h->insts, &h->capinsts, h->ninsts, sizeof(*h->insts)))
        return KAPI_ENOMEM;
    kapi_error local = {{0}, {0}};
    kapi_status st = KAPI_OK;
    void *inst = NULL;
    if (m->create) {
        t_host = h;
        st = m->create(view(config_json ? config_json : "{}"), &inst, err ? err : &local);
        t_host = NULL;
    }
    if (st != KAPI_OK)
        return st;
    h->insts[h->ninsts++] = (instance_rec){m, inst};
    *instance = inst;
    return KAPI_OK;
}

kapi_status
kapi_test_instance_free(kapi_test_host *h, const kapi_module *m, void *instance)
{
    if (!h || !m)
        return KAPI_EINVAL;
    for (size_t i = 0; i < h->ninsts; i++) {
        if (h->insts[i].mod != m || h->insts[i].instance != instance)
            continue;
        memmove(&h->insts[i], &h->insts[i + 1], (h->ninsts - i - 1) * sizeof(*h->insts));
        h->ninsts--;
        if (m->destroy) {
            t_host = h;
            m->destroy(instance);
            t_host = NULL;
        }
        return KAPI_OK;
    }
    return KAPI_ENOTFOUND;
}

/* ---- building a request ---- */

kapi_test_req *
kapi_test_req_new(kapi_test_host *h, const char *method, const char *target)
{
    if (!h)
        return NULL;
    kapi_test_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    req_init(&r->r, r->buf, sizeof(r->buf));
    r->r.owner = r;
    r->host = h;
    r->up_status = 200;

    method = method ? method : "GET";
    target = target ? target : "/";
    const char *q = strchr(target, '?');
    size_t plen = q ? (size_t)(q - target) : strlen(target);
    char id[32];
    int idlen = snprintf(id, sizeof(id), "test-%u", ++h->next_id);
    if (req_strdup(&r->r, method, strlen(method), &r->r.method) != KAPI_OK ||
        req_strdup(&r->r, target, plen, &r->r.path) != KAPI_OK ||
        req_strdup(&r->r, q ? q + 1 : "", q ? strlen(q + 1) : 0, &r->r.query) != KAPI_OK ||
        req_strdup(&r->r, id, (size_t)idlen, &r->r.id) != KAPI_OK ||
        req_strdup(&r->r, "127.0.0.1", 9, &r->r.client_addr) != KAPI_OK ||
        req_strdup(&r->r, "", 0, &r->r.host) != KAPI_OK ||
        req_strdup(&r->r, "", 0, &r->r.body) != KAPI_OK) {
        req_release(&r->r);
        free(r);
        return NULL;
    }
    dlist_push_front(&h->reqs, &r->link);
    return r;
}

void
kapi_test_req_free(kapi_test_req *r)
{
    if (!r)
        return;
    token_abandon(r);
    kapi_test_host *h = r->host;
    for (size_t i = 0; i < h->nfetches; i++)
        if (h->fetches[i]->req == r)
            h->fetches[i]->req = h->fetches[i]->asked.req = NULL;
    dlist_remove(&h->reqs, &r->link);
    req_release(&r->r);
    free(r);
}

/* KAPI_OK when R may still be changed by the test's builders. */
static kapi_status
buildable(const kapi_test_req *r)
{
    if (!r)
        return KAPI_EINVAL;
    return r->chained || r->state == KAPI_TEST_PAUSED ? KAPI_ESTATE : KAPI_OK;
}

/* The host part of a Host header: lower-cased, port dropped ("[::1]:80"
 * keeps its brackets). */
static kapi_status
set_host_from_header(kapi_test_req *r, const char *value)
{
    size_t n = strlen(value);
    const char *colon = value[0] == '[' ? NULL : strrchr(value, ':');
    if (value[0] == '[') {
        const char *rb = strchr(value, ']');
        n = rb ? (size_t)(rb - value) + 1 : n;
    } else if (colon) {
        n = (size_t)(colon - value);
    }
    kapi_status st = req_strdup(&r->r, value, n, &r->r.host);
    if (st == KAPI_OK)
        for (size_t i = 0; i < n; i++)
            if (r->r.host.ptr[i] >= 'A' && r->r.host.ptr[i] <= 'Z')
                ((char *)r->r.host.ptr)[i] = (char)(r->r.host.ptr[i] - 'A' + 'a');
    return st;
}

kapi_status
kapi_test_req_header(kapi_test_req *r, const char *name, const char *value)
{
    kapi_status st = buildable(r);
    if (st != KAPI_OK)
        return st;
    if (!name || !*name || !value)
        return KAPI_EINVAL;
    if ((st = req_headers_add(&r->r, &r->r.headers, view(name), view(value))) != KAPI_OK)
        return st;
    if (!r->host_set && req_str_ieq(view(name), KAPI_STR("host")))
        st = set_host_from_header(r, value);
    return st;
}

kapi_status
kapi_test_req_body(kapi_test_req *r, const void *data, size_t len)
{
    kapi_status st = buildable(r);
    if (st != KAPI_OK)
        return st;
    if (!data && len)
        return KAPI_EINVAL;
    return req_strdup(&r->r, data, len, &r->r.body);
}

kapi_status
kapi_test_req_path_param(kapi_test_req *r, const char *name, const char *value)
{
    kapi_status st = buildable(r);
    if (st != KAPI_OK)
        return st;
    if (!name || !*name || !value)
        return KAPI_EINVAL;
    size_t i = 0;
    while (i < r->r.nparams && strcmp(r->r.param_names[i].ptr, name) != 0)
        i++;
    if (i == REQ_MAX_PARAMS)
        return KAPI_ETOOBIG;
    if ((st = req_strdup(&r->r, name, strlen(name), &r->r.param_names[i])) != KAPI_OK ||
        (st = req_strdup(&r->r, value, strlen(value), &r->r.param_values[i])) != KAPI_OK)
        return st;
    if (i == r->r.nparams)
        r->r.nparams++;
    return KAPI_OK;
}

kapi_status
kapi_test_req_client(kapi_test_req *r, const char *addr)
{
    kapi_status st = buildable(r);
    if (st != KAPI_OK)
        return st;
    if (!addr)
        return KAPI_EINVAL;
    return req_strdup(&r->r, addr, strlen(addr), &r->r.client_addr);
}

kapi_status
kapi_test_req_host(kapi_test_req *r, const char *host)
{
    kapi_status st = buildable(r);
    if (st != KAPI_OK)
        return st;
    if (!host)
        return KAPI_EINVAL;
    if ((st = req_strdup(&r->r, host, strlen(host), &r->r.host)) == KAPI_OK)
        r->host_set = true;
    return st;
}

kapi_status
kapi_test_req_upstream(kapi_test_req *r, int status, const kapi_header *headers, size_t n,
                       const void *body, size_t len)
{
    kapi_status st = buildable(r);
    if (st != KAPI_OK)
        return st;
    if (status < 100 || status > 599 || (n && !headers) || (!body && len))
        return KAPI_EINVAL;
    r->up_headers = (header_list){0};
    for (size_t i = 0; i < n; i++)
        if ((st = req_headers_add(&r->r, &r->up_headers, headers[i].name, headers[i].value)) !=
            KAPI_OK)
            return st;
    if ((st = req_strdup(&r->r, body, len, &r->up_body)) != KAPI_OK)
        return st;
    r->up_status = status;
    return KAPI_OK;
}

kapi_req *
kapi_test_req_handle(kapi_test_req *r)
{
    return r ? &r->r : NULL;
}

/* ---- running a chain ---- */

/* The target when the test gives no function: answers what
 * kapi_test_req_upstream set (its instance is the test request). */
static kapi_action
upstream_handle(void *instance, kapi_req *r)
{
    const kapi_test_req *tr = instance;
    kapi_status st =
        req_set_response(r, tr->up_status, tr->up_headers.v, tr->up_headers.n, tr->up_body);
    return st == KAPI_OK ? KAPI_DONE : KAPI_ERROR;
}

static const kapi_module upstream_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "kapi-test-upstream",
    .version = "1",
    .kind = KAPI_MODULE_FUNCTION,
    .handle = upstream_handle,
};

/* Runs R's chain from where it stands; on completion runs the log phase. */
static kapi_test_state
chain_continue(kapi_test_req *r)
{
    if (chain_run(&r->chain, &r->r) == CHAIN_PAUSED) {
        r->state = KAPI_TEST_PAUSED;
        return r->state;
    }
    /* The chain ended although a token is out: some hook called pause()
     * and then did not return KAPI_PAUSE. */
    check_token(r, "a hook of the chain", KAPI_CONTINUE);
    chain_log(&r->chain, &r->r);
    r->state = KAPI_TEST_DONE;
    return r->state;
}

kapi_test_state
kapi_test_run(kapi_test_req *r, const kapi_module *const *plugins, void *const *instances, size_t n,
              const kapi_module *function, void *fn_instance)
{
    if (!r || (n && !plugins))
        return KAPI_TEST_ERROR;
    if (r->chained || r->state == KAPI_TEST_PAUSED) {
        complain(r->host, "kapi_test_run: request %s was already run or is paused", r->r.id.ptr);
        return KAPI_TEST_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        if (!plugins[i] || plugins[i]->kind != KAPI_MODULE_PLUGIN) {
            complain(r->host, "kapi_test_run: plugins[%zu] is not a plugin module", i);
            return KAPI_TEST_ERROR;
        }
    }
    if (function && function->kind != KAPI_MODULE_FUNCTION) {
        complain(r->host, "kapi_test_run: %s is not a function module", function->name);
        return KAPI_TEST_ERROR;
    }
    chain_slot *slots = n ? arena_alloc(&r->r.arena, n * sizeof(*slots)) : NULL;
    if (n && !slots)
        return KAPI_TEST_ERROR;
    for (size_t i = 0; i < n; i++)
        slots[i] = (chain_slot){plugins[i], instances ? instances[i] : NULL};
    r->chain = (chain){
        .plugins = slots,
        .nplugins = n,
        .target =
            function ? (chain_slot){function, fn_instance} : (chain_slot){&upstream_module, r},
    };
    if (chain_start(&r->chain, &r->r) != KAPI_OK)
        return KAPI_TEST_ERROR;
    r->chained = true;
    return chain_continue(r);
}

kapi_test_state
kapi_test_req_state(const kapi_test_req *r)
{
    return r ? r->state : KAPI_TEST_ERROR;
}

size_t
kapi_test_resume_pending(kapi_test_host *h)
{
    size_t delivered = 0;
    if (!h)
        return 0;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        kapi_token *t = dlist_entry(dlist_pop_front(&h->queue), kapi_token, qlink);
        if (t)
            token_unlink(h, t);
        kapi_test_req *r = t ? t->req : NULL;
        if (t && (!r || r->r.token != t || r->state != KAPI_TEST_PAUSED)) {
            r = NULL;
            h->dropped++;
        }
        pthread_mutex_unlock(&h->mu);
        if (!t)
            break;
        free(t);
        if (!r)
            continue;
        delivered++;
        r->r.token = NULL;
        if (r->chained) {
            chain_continue(r);
        } else {
            r->state = KAPI_TEST_READY;
        }
    }
    return delivered;
}

kapi_status
kapi_test_wait_resume(kapi_test_host *h, unsigned timeout_ms)
{
    if (!h)
        return KAPI_EINVAL;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->mu);
    int rc = 0;
    while (dlist_empty(&h->queue) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&h->cv, &h->mu, &deadline);
    kapi_status st = dlist_empty(&h->queue) ? KAPI_ETIMEDOUT : KAPI_OK;
    pthread_mutex_unlock(&h->mu);
    return st;
}

kapi_status
kapi_test_fire_timeout(kapi_test_req *r)
{
    if (!r)
        return KAPI_EINVAL;
    if (r->state != KAPI_TEST_PAUSED)
        return KAPI_ESTATE;
    token_abandon(r);
    const char *detail = "the request timed out while a module was working on it";
    if (r->chained) {
        chain_abort(&r->r, 504, detail);
        chain_continue(r);
    } else {
        problem_respond(&r->r, 504, detail);
        r->state = KAPI_TEST_READY;
    }
    return KAPI_OK;
}

uint32_t
kapi_test_req_pause_timeout(const kapi_test_req *r)
{
    return r ? r->pause_timeout_ms : 0;
}

size_t
kapi_test_resumes_dropped(kapi_test_host *h)
{
    if (!h)
        return 0;
    pthread_mutex_lock(&h->mu);
    size_t n = h->dropped;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* ---- subrequests ---- */

/* Header names are tokens; values hold no CR, LF or NUL (request.c's
 * checks, as the gateway applies them). */
static bool
valid_headers(const kapi_header *h, size_t n)
{
    if (n && !h)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!req_valid_token(h[i].name) || !req_valid_value(h[i].value))
            return false;
    return true;
}

/* "localhost" or an address, checked as the gateway's loop threads resolve
 * a URL's host: getaddrinfo with AI_NUMERICHOST, which never waits on DNS. */
static bool
numeric_host(const char *host)
{
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    bool ok = res->ai_family == AF_INET || res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return ok;
}

static bool
upstream_declared(const kapi_test_host *h, kapi_str name)
{
    for (size_t i = 0; i < h->nupstreams; i++)
        if (strlen(h->upstreams[i]) == name.len && memcmp(h->upstreams[i], name.ptr, name.len) == 0)
            return true;
    return false;
}

kapi_status
kapi_test_upstream(kapi_test_host *h, const char *name)
{
    if (!h || !name || !*name)
        return KAPI_EINVAL;
    if (upstream_declared(h, view(name)))
        return KAPI_OK;
    char *copy = strdup(name);
    if (!copy ||
        !grow((void **)&h->upstreams, &h->capupstreams, h->nupstreams, sizeof(*h->upstreams))) {
        free(copy);
        return KAPI_ENOMEM;
    }
    h->upstreams[h->nupstreams++] = copy;
    return KAPI_OK;
}

/* Copies V to *P with a NUL after it and advances *P; the copy's view. */
static kapi_str
blob_put(char **p, kapi_str v)
{
    kapi_str out = {*p, v.len};
    if (v.len)
        memcpy(*p, v.ptr, v.len);
    (*p)[v.len] = '\0';
    *p += v.len + 1;
    return out;
}

/* Queues F (already checked) for TR, with the METHOD and URL to record. */
static kapi_status
fetch_queue(kapi_test_req *tr, const kapi_fetch_request *f, kapi_str method, kapi_str url,
            kapi_fetch_done done, void *data)
{
    kapi_test_host *h = tr->host;
    size_t size = f->nheaders * sizeof(kapi_header) + method.len + f->upstream.len + url.len +
                  f->body.len + 4;
    for (size_t i = 0; i < f->nheaders; i++)
        size += f->headers[i].name.len + f->headers[i].value.len + 2;
    test_fetch *t = calloc(1, sizeof(*t));
    if (!t || !(t->blob = malloc(size)) ||
        !grow((void **)&h->fetches, &h->capfetches, h->nfetches, sizeof(*h->fetches))) {
        if (t)
            free(t->blob);
        free(t);
        return KAPI_ENOMEM;
    }
    kapi_header *hv = (kapi_header *)t->blob; /* malloc aligns it */
    char *p = t->blob + f->nheaders * sizeof(*hv);
    for (size_t i = 0; i < f->nheaders; i++) {
        hv[i].name = blob_put(&p, f->headers[i].name);
        hv[i].value = blob_put(&p, f->headers[i].value);
    }
    t->req = tr;
    t->done = done;
    t->data = data;
    t->module = tr->r.current_module;
    t->asked = (kapi_test_fetch){
        .req = tr,
        .method = blob_put(&p, method),
        .upstream = blob_put(&p, f->upstream),
        .url = blob_put(&p, url),
        .headers = f->nheaders ? hv : NULL,
        .nheaders = f->nheaders,
        .body = blob_put(&p, f->body),
        .timeout_ms = f->timeout_ms,
    };
    h->fetches[h->nfetches++] = t;
    return KAPI_OK;
}

/* The table's fetch: the gateway's checks (request.c's, shared with it),
 * then a copy in the host's queue. DONE runs when the test answers. */
static kapi_status
host_fetch(kapi_req *r, const kapi_fetch_request *f, kapi_fetch_done done, void *data)
{
    req_fetch_target t;
    kapi_status st = req_fetch_check(r, f, done, &t);
    if (st != KAPI_OK)
        return st;
    kapi_test_req *tr = r->owner;
    if (f->upstream.len && !upstream_declared(tr->host, f->upstream))
        return KAPI_ENOTFOUND;
    if (!f->upstream.len && !numeric_host(t.host))
        return KAPI_EINVAL;
    return fetch_queue(tr, f, t.method, f->upstream.len ? t.path : f->url, done, data);
}

size_t
kapi_test_fetch_count(kapi_test_host *h)
{
    return h ? h->nfetches : 0;
}

kapi_status
kapi_test_fetch_get(kapi_test_host *h, size_t index, kapi_test_fetch *out)
{
    if (!h || !out)
        return KAPI_EINVAL;
    if (index >= h->nfetches)
        return KAPI_ENOTFOUND;
    const test_fetch *t = h->fetches[index];
    *out = t->asked;
    out->pending = !t->answered && t->req;
    return KAPI_OK;
}

/* KAPI_OK when T (fetch INDEX) may be answered now; else KAPI_ESTATE, and
 * the complaint says why, naming WHO. */
static kapi_status
answerable(kapi_test_host *h, const test_fetch *t, size_t index, const char *who)
{
    const char *why = NULL;
    if (t->answered)
        why = "was answered already";
    else if (!t->req)
        why = "belongs to a request the test freed: DONE does not run";
    else if (t->req->r.phase != REQ_PHASE_NONE)
        why = "was answered inside a hook: the gateway runs DONE between hooks";
    if (!why)
        return KAPI_OK;
    complain(h, "%s: fetch %zu (%s %s%s%s) %s", who, index, t->asked.method.ptr,
             t->asked.upstream.ptr, t->asked.upstream.len ? " " : "", t->asked.url.ptr, why);
    return KAPI_ESTATE;
}

/* Runs T's DONE with RES, between hooks and tagged with the fetching
 * module, as the gateway does. */
static void
fetch_finish(test_fetch *t, const kapi_fetch_response *res)
{
    kapi_req *r = &t->req->r;
    const char *was = r->current_module;
    t->answered = true;
    r->current_module = t->module;
    t->done(r, t->data, res);
    r->current_module = was;
}

/* What the gateway gives DONE when it cannot copy the answer. */
static const kapi_fetch_response no_memory = {.error_status = 502,
                                              .error = KAPI_STR("the gateway is out of memory")};

kapi_status
kapi_test_fetch_reply(kapi_test_host *h, size_t index, int status, const kapi_header *headers,
                      size_t n, const void *body, size_t len)
{
    if (!h)
        return KAPI_EINVAL;
    if (index >= h->nfetches)
        return KAPI_ENOTFOUND;
    if (status < 200 || status > 599 || !valid_headers(headers, n) || (!body && len))
        return KAPI_EINVAL;
    test_fetch *t = h->fetches[index];
    kapi_status st = answerable(h, t, index, "kapi_test_fetch_reply");
    if (st != KAPI_OK)
        return st;
    kapi_req *r = &t->req->r;
    kapi_fetch_response res = {.status = status, .nheaders = n};
    kapi_header *hv = arena_alloc(&r->arena, (n + 1) * sizeof(*hv));
    bool ok = hv && req_strdup(r, body, len, &res.body) == KAPI_OK;
    for (size_t i = 0; ok && i < n; i++)
        ok = req_strdup(r, headers[i].name.ptr, headers[i].name.len, &hv[i].name) == KAPI_OK &&
             req_strdup(r, headers[i].value.ptr, headers[i].value.len, &hv[i].value) == KAPI_OK;
    res.headers = hv;
    fetch_finish(t, ok ? &res : &no_memory);
    return KAPI_OK;
}

kapi_status
kapi_test_fetch_fail(kapi_test_host *h, size_t index, int error_status, const char *error)
{
    if (!h)
        return KAPI_EINVAL;
    if (index >= h->nfetches)
        return KAPI_ENOTFOUND;
    if ((error_status != 502 && error_status != 503 && error_status != 504) || !error)
        return KAPI_EINVAL;
    test_fetch *t = h->fetches[index];
    kapi_status st = answerable(h, t, index, "kapi_test_fetch_fail");
    if (st != KAPI_OK)
        return st;
    /* No headers and a NULL body, exactly as the gateway passes a failure. */
    kapi_fetch_response res = {.error_status = error_status};
    bool ok = req_strdup(&t->req->r, error, strlen(error), &res.error) == KAPI_OK;
    fetch_finish(t, ok ? &res : &no_memory);
    return KAPI_OK;
}

/* ---- calling one hook ---- */

/* M's private context on R for single-hook calls; *OUT NULL when M has
 * none. */
static kapi_status
single_ctx(kapi_test_req *r, const kapi_module *m, void **out)
{
    *out = NULL;
    if (!m->req_ctx_size)
        return KAPI_OK;
    for (hook_ctx *c = r->ctxs; c; c = c->next) {
        if (c->mod == m) {
            *out = c->ctx;
            return KAPI_OK;
        }
    }
    hook_ctx *c = arena_alloc(&r->r.arena, sizeof(*c));
    if (!c || !(c->ctx = arena_alloc(&r->r.arena, m->req_ctx_size)))
        return KAPI_ENOMEM;
    c->mod = m;
    c->next = r->ctxs;
    r->ctxs = c;
    *out = c->ctx;
    return KAPI_OK;
}

/* Calls HOOK (or LOG_HOOK) of M in PHASE the way chain.c does. */
static kapi_action
call_single(kapi_test_req *r, const kapi_module *m, void *instance, req_phase phase,
            kapi_action (*hook)(void *, kapi_req *), void (*log_hook)(void *, kapi_req *))
{
    if (!r || !m)
        return KAPI_ERROR;
    if (r->state == KAPI_TEST_PAUSED) {
        complain(r->host, "request %s is paused: process its resume first", r->r.id.ptr);
        return KAPI_ERROR;
    }
    if (!hook && !log_hook)
        return phase == REQ_PHASE_HANDLE ? KAPI_ERROR : KAPI_CONTINUE;
    void *ctx;
    if (single_ctx(r, m, &ctx) != KAPI_OK)
        return KAPI_ERROR;
    r->r.phase = phase;
    r->r.current_ctx = ctx;
    r->r.current_module = m->name;
    kapi_action a = KAPI_CONTINUE;
    if (hook)
        a = hook(instance, &r->r);
    else
        log_hook(instance, &r->r);
    r->r.phase = REQ_PHASE_NONE;
    r->r.current_ctx = NULL;
    if (a == KAPI_PAUSE && r->r.token)
        r->state = KAPI_TEST_PAUSED;
    else if (a == KAPI_PAUSE)
        complain(r->host, "%s returned KAPI_PAUSE without calling pause()", m->name);
    else
        check_token(r, m->name, a);
    return a;
}

kapi_action
kapi_test_call_access(kapi_test_req *r, const kapi_module *m, void *instance)
{
    return call_single(r, m, instance, REQ_PHASE_ACCESS, m ? m->on_access : NULL, NULL);
}

kapi_action
kapi_test_call_handle(kapi_test_req *r, const kapi_module *m, void *instance)
{
    return call_single(r, m, instance, REQ_PHASE_HANDLE, m ? m->handle : NULL, NULL);
}

kapi_action
kapi_test_call_response(kapi_test_req *r, const kapi_module *m, void *instance)
{
    return call_single(r, m, instance, REQ_PHASE_RESPONSE, m ? m->on_response : NULL, NULL);
}

void
kapi_test_call_log(kapi_test_req *r, const kapi_module *m, void *instance)
{
    call_single(r, m, instance, REQ_PHASE_LOG, NULL, m ? m->on_log : NULL);
}

kapi_status
kapi_test_resp_set(kapi_test_req *r, int status, const kapi_header *headers, size_t n,
                   const void *body, size_t len)
{
    if (!r || (!body && len))
        return KAPI_EINVAL;
    if (r->state == KAPI_TEST_PAUSED)
        return KAPI_ESTATE;
    return req_set_response(&r->r, status, headers, n, (kapi_str){body, len});
}

/* ---- results ---- */

int
kapi_test_resp_status(const kapi_test_req *r)
{
    return r ? r->r.status : 0;
}

kapi_str
kapi_test_resp_header(const kapi_test_req *r, const char *name, size_t index)
{
    kapi_str v;
    if (!r || !name || req_headers_get(&r->r.resp_headers, view(name), index, &v) != KAPI_OK)
        return nothing();
    return v;
}

kapi_status
kapi_test_resp_header_at(const kapi_test_req *r, size_t index, kapi_header *out)
{
    if (!r || !out)
        return KAPI_EINVAL;
    if (index >= r->r.resp_headers.n)
        return KAPI_ENOTFOUND;
    *out = r->r.resp_headers.v[index];
    return KAPI_OK;
}

kapi_str
kapi_test_resp_body(const kapi_test_req *r)
{
    if (!r || !r->r.resp_body.ptr)
        return (kapi_str){"", 0};
    return r->r.resp_body;
}

kapi_str
kapi_test_req_header_get(const kapi_test_req *r, const char *name, size_t index)
{
    kapi_str v;
    if (!r || !name || req_headers_get(&r->r.headers, view(name), index, &v) != KAPI_OK)
        return nothing();
    return v;
}

kapi_str
kapi_test_shared_get(const kapi_test_req *r, const char *key)
{
    if (!r || !key)
        return nothing();
    kapi_str k = view(key);
    for (size_t i = 0; i < r->r.shared.n; i++) {
        const kapi_header *e = &r->r.shared.v[i];
        if (e->name.len == k.len && memcmp(e->name.ptr, k.ptr, k.len) == 0)
            return e->value;
    }
    return nothing();
}

/* ---- store ---- */

kapi_status
kapi_test_store_open(const char *dir, char *err, size_t errlen)
{
    if (!dir)
        return KAPI_EINVAL;
    return store_open(dir, (size_t)64 << 20, false, err ? err : (char[1]){0}, err ? errlen : 1);
}

void
kapi_test_store_close(void)
{
    store_close();
}
