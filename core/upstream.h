/* upstream.h -- an upstream group at run time: its targets (origin,
 * breaker, health), its balancer, and choosing the target for one try.
 *
 * A group is built from a config_upstream when a generation is built
 * (origins are resolved then, off the loop threads) and shared by every
 * worker of that generation: all state in it is thread-safe. It sends
 * nothing (exchange.c does) and schedules no checks (hcheck.c does). */
#ifndef KAPI_UPSTREAM_H
#define KAPI_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balance.h"
#include "breaker.h"
#include "config.h"
#include "health.h"
#include "origin.h"

typedef struct up_target {
    const config_target *cfg;
    const origin *origin;
    breaker breaker;
    target_health health;
} up_target;

typedef struct upstream {
    const config_upstream *cfg; /* borrowed from the generation's config */
    up_target *targets;
    size_t ntargets;
    balancer balancer;
} upstream;

/* Builds U from CFG: resolves every target's origin (may block on DNS:
 * call while building a generation, never on a loop thread). On failure
 * writes "FILE:LINE:COL: PATH: why" into ERR and leaves nothing allocated. */
kapi_status upstream_build(const config *file, const config_upstream *cfg, upstream *u, char *err,
                           size_t errlen);
/* Frees what upstream_build allocated (not U itself). */
void upstream_destroy(upstream *u);

/* The outcome of choosing a target for one try. */
typedef struct up_pick {
    int index;               /* the target, -1 when none may take the try */
    breaker_admit admit;     /* how its breaker admitted it (report it back) */
    uint64_t retry_after_ms; /* index -1: when one might admit again */
} up_pick;

/* Chooses a target among the healthy ones whose breaker admits, skipping
 * those in TRIED (bit i: target i already failed this request) unless every
 * candidate was tried. KEY feeds hash balancing. Counts the try as in
 * flight (least_conn) until upstream_done. */
up_pick upstream_pick(upstream *u, uint64_t tried, kapi_str key, uint64_t now_ms);

/* The try on P's target ended: FAILED feeds the breaker and, with
 * STATUS_5XX, passive health (per the group's config). Logs state changes
 * of the breaker and the health with the group and target names; ID is the
 * request id for the log (may be NULL). CANCELLED: no outcome (the request
 * went away): the probe slot is released and nothing is counted. */
void upstream_done(upstream *u, const up_pick *p, bool failed, bool status_5xx, bool cancelled,
                   const char *id, uint64_t now_ms);

#endif /* KAPI_UPSTREAM_H */
