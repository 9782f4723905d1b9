/* chain.c -- runs one route's plugins through the phases for a request
 * (see chain.h for the contract). The stage and position live in the
 * request, so a paused request resumes exactly where it stopped.
 * It does not parse HTTP (server.c) nor choose the route (router.c). */
#include "chain.h"

#include "log.h"
#include "problem.h"

enum { STAGE_ACCESS = 0, STAGE_TARGET, STAGE_RESPONSE, STAGE_FINISHED };

kapi_status
chain_start(const chain *c, kapi_req *r)
{
    size_t n = c->nplugins + 1;
    r->ctxs = arena_alloc(&r->arena, n * sizeof(*r->ctxs));
    if (!r->ctxs)
        return KAPI_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const kapi_module *m = i < c->nplugins ? c->plugins[i].mod : c->target.mod;
        if (m && m->req_ctx_size && !(r->ctxs[i] = arena_alloc(&r->arena, m->req_ctx_size)))
            return KAPI_ENOMEM;
    }
    r->stage = STAGE_ACCESS;
    r->pos = 0;
    r->access_ran = 0;
    return KAPI_OK;
}

/* Makes slot I the running module in PHASE (its context, its name). */
static void
enter_slot(kapi_req *r, const chain_slot *s, size_t i, req_phase phase)
{
    r->phase = phase;
    r->current_ctx = r->ctxs ? r->ctxs[i] : NULL;
    r->current_module = s->mod->name;
}

static void
leave_slot(kapi_req *r)
{
    r->phase = REQ_PHASE_NONE;
    r->current_ctx = NULL;
}

/* Calls HOOK of slot I in PHASE with the slot's context set. */
static kapi_action
call_hook(kapi_req *r, const chain_slot *s, size_t i, req_phase phase,
          kapi_action (*hook)(void *, kapi_req *))
{
    enter_slot(r, s, i, phase);
    kapi_action a = hook(s->instance, r);
    leave_slot(r);
    return a;
}

/* Turns a hook's failure into a 500 and logs why once. */
static void
fail(kapi_req *r, const chain_slot *s, const char *why)
{
    log_tagged(KAPI_LOG_ERROR, s->mod->name, r->id.ptr, "%s", why);
    problem_respond(r, 500, "a gateway module failed");
}

/* True when the hook may pause now (it returned PAUSE after pause()). */
static bool
paused_properly(kapi_req *r, const chain_slot *s)
{
    if (r->token)
        return true;
    fail(r, s, "hook returned KAPI_PAUSE without calling pause()");
    return false;
}

static void
enter_response(kapi_req *r)
{
    r->stage = STAGE_RESPONSE;
    r->pos = r->access_ran;
}

/* Access phase from r->pos on. Returns true when a hook paused. */
static bool
run_access(const chain *c, kapi_req *r)
{
    while (r->pos < c->nplugins) {
        const chain_slot *s = &c->plugins[r->pos];
        kapi_action a = KAPI_CONTINUE;
        if (s->mod->on_access) {
            a = call_hook(r, s, r->pos, REQ_PHASE_ACCESS, s->mod->on_access);
            if (a == KAPI_PAUSE && paused_properly(r, s))
                return true;
        }
        r->access_ran = ++r->pos;
        if (a == KAPI_ERROR || a == KAPI_PAUSE) {
            if (a == KAPI_ERROR)
                fail(r, s, "on_access returned KAPI_ERROR");
            enter_response(r);
            return false;
        }
        if (a == KAPI_DONE || r->status != 0) {
            if (r->status == 0)
                fail(r, s, "on_access returned KAPI_DONE without a response");
            enter_response(r);
            return false;
        }
    }
    r->stage = STAGE_TARGET;
    return false;
}

/* The target's handle. Returns true when it paused. */
static bool
run_target(const chain *c, kapi_req *r)
{
    const chain_slot *s = &c->target;
    if (!s->mod || !s->mod->handle) {
        problem_respond(r, 500, "the route has no target");
        enter_response(r);
        return false;
    }
    kapi_action a = call_hook(r, s, c->nplugins, REQ_PHASE_HANDLE, s->mod->handle);
    if (a == KAPI_PAUSE && paused_properly(r, s))
        return true;
    if (a == KAPI_ERROR)
        fail(r, s, "handle returned KAPI_ERROR");
    else if (r->status == 0)
        fail(r, s, "handle returned without a response");
    enter_response(r);
    return false;
}

/* Response phase: plugins whose on_access completed, in reverse order. */
static void
run_response(const chain *c, kapi_req *r)
{
    while (r->pos > 0) {
        size_t i = --r->pos;
        const chain_slot *s = &c->plugins[i];
        if (!s->mod->on_response)
            continue;
        kapi_action a = call_hook(r, s, i, REQ_PHASE_RESPONSE, s->mod->on_response);
        if (a == KAPI_ERROR || a == KAPI_PAUSE)
            fail(r, s,
                 a == KAPI_PAUSE ? "on_response cannot pause" : "on_response returned KAPI_ERROR");
    }
    r->stage = STAGE_FINISHED;
}

chain_result
chain_run(const chain *c, kapi_req *r)
{
    for (;;) {
        switch (r->stage) {
        case STAGE_ACCESS:
            if (run_access(c, r))
                return CHAIN_PAUSED;
            break;
        case STAGE_TARGET:
            if (run_target(c, r))
                return CHAIN_PAUSED;
            break;
        case STAGE_RESPONSE: run_response(c, r); break;
        default: return CHAIN_DONE;
        }
    }
}

void
chain_abort(kapi_req *r, int status, const char *detail)
{
    problem_respond(r, status, detail);
    enter_response(r);
}

void
chain_log(const chain *c, kapi_req *r)
{
    for (size_t i = 0; i < c->nplugins; i++) {
        const chain_slot *s = &c->plugins[i];
        if (!s->mod->on_log)
            continue;
        enter_slot(r, s, i, REQ_PHASE_LOG);
        s->mod->on_log(s->instance, r);
    }
    leave_slot(r);
}
