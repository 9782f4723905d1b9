/* t_pause.c -- a test plugin that pauses in on_access and is resumed from
 * another thread, to exercise PAUSE + resume, pause deadlines and late
 * resumes (DESIGN.md §3 rule 7).
 *
 * Config (all optional):
 *   "timeout_ms" integer >= 0, default 0: the pause deadline handed to
 *                kapi_pause (0: the host's default)
 *   "delay_ms"   integer >= 0, default 0: how long the helper thread sleeps
 *                before calling kapi_resume
 *
 * First call of on_access: pause, start a thread that sleeps delay_ms and
 * resumes the token, return KAPI_PAUSE. Second call (the private ctx says
 * we already paused): set request header "x-paused: yes" and continue.
 * With delay_ms larger than timeout_ms the host's deadline fires first
 * (504) and the thread's resume arrives after the request ended: that is
 * the "late resume is ignored" path. The token is always resumed exactly
 * once, so nothing leaks.
 *
 * The helper threads touch only their token, never the request. They are
 * joinable, not detached: destroy() joins them so no thread still runs this
 * module's code when the host dlcloses it; finished ones are reaped on each
 * pause so the list only holds threads in flight. destroy() may therefore
 * block for up to delay_ms. A test module, not an example of production
 * async work. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <kapi/kapi.h>

#include "t_config.h"

typedef struct t_pause {
    uint32_t timeout_ms;
    uint32_t delay_ms;
    pthread_mutex_t lock; /* on_access runs on several loop threads */
    pthread_t *threads;   /* started and not yet joined */
    size_t nthreads, cap;
} t_pause;

typedef struct pause_ctx {
    int paused; /* on_access already paused this request once */
} pause_ctx;

typedef struct resumer {
    kapi_token *token;
    uint32_t delay_ms;
} resumer;

static void
sleep_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *
resume_later(void *arg)
{
    resumer *rs = arg;
    sleep_ms(rs->delay_ms);
    kapi_resume(rs->token);
    free(rs);
    return NULL;
}

/* Joins the threads that have finished (lock held). */
static void
reap(t_pause *p)
{
    size_t keep = 0;
    for (size_t i = 0; i < p->nthreads; i++)
        if (pthread_tryjoin_np(p->threads[i], NULL) != 0)
            p->threads[keep++] = p->threads[i];
    p->nthreads = keep;
}

static void
pause_destroy(void *instance)
{
    t_pause *p = instance;
    if (!p)
        return;
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

static kapi_status
pause_create(kapi_str config, void **instance, kapi_error *err)
{
    json_t *root = t_config_parse(config, err);
    if (!root)
        return KAPI_ECONFIG;
    long long timeout_ms, delay_ms;
    kapi_status st;
    if ((st = t_config_int(root, "timeout_ms", 0, 0, UINT32_MAX, &timeout_ms, err)) != KAPI_OK ||
        (st = t_config_int(root, "delay_ms", 0, 0, UINT32_MAX, &delay_ms, err)) != KAPI_OK)
        goto out;
    t_pause *p = calloc(1, sizeof(*p));
    if (!p) {
        st = kapi_error_set(err, "", "out of memory");
        goto out;
    }
    p->timeout_ms = (uint32_t)timeout_ms;
    p->delay_ms = (uint32_t)delay_ms;
    pthread_mutex_init(&p->lock, NULL);
    *instance = p;
out:
    json_decref(root);
    return st;
}

/* Starts the thread that resumes RS->token; false when it could not. */
static bool
start_resumer(t_pause *p, resumer *rs)
{
    bool ok = false;
    pthread_mutex_lock(&p->lock);
    reap(p);
    if (p->nthreads == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        pthread_t *v = realloc(p->threads, cap * sizeof(*v));
        if (!v)
            goto out;
        p->threads = v;
        p->cap = cap;
    }
    if (pthread_create(&p->threads[p->nthreads], NULL, resume_later, rs) == 0) {
        p->nthreads++;
        ok = true;
    }
out:
    pthread_mutex_unlock(&p->lock);
    return ok;
}

static kapi_action
pause_access(void *instance, kapi_req *r)
{
    t_pause *p = instance;
    pause_ctx *ctx = kapi_ctx(r);
    if (!ctx)
        return KAPI_ERROR;
    if (ctx->paused)
        return kapi_req_header_set(r, KAPI_STR("x-paused"), KAPI_STR("yes")) == KAPI_OK
                   ? KAPI_CONTINUE
                   : KAPI_ERROR;

    kapi_token *token;
    if (kapi_pause(r, p->timeout_ms, &token) != KAPI_OK)
        return KAPI_ERROR;
    ctx->paused = 1;
    resumer *rs = malloc(sizeof(*rs));
    if (rs) {
        *rs = (resumer){token, p->delay_ms};
        if (start_resumer(p, rs))
            return KAPI_PAUSE;
        free(rs);
    }
    /* No thread: the token must still be resumed exactly once. resume() is
     * valid from any thread, this one included; the host calls us again. */
    kapi_log(r, KAPI_LOG_WARN, "t_pause: no resumer thread, resuming at once");
    kapi_resume(token);
    return KAPI_PAUSE;
}

static const kapi_module t_pause_module = {
    .abi_major = KAPI_ABI_MAJOR,
    .abi_minor = KAPI_ABI_MINOR,
    .name = "t_pause",
    .version = "1.0.0",
    .kind = KAPI_MODULE_PLUGIN,
    .req_ctx_size = sizeof(pause_ctx),
    .create = pause_create,
    .destroy = pause_destroy,
    .on_access = pause_access,
};

KAPI_MODULE(t_pause_module)
