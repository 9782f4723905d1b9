/* hcheck.h -- active health checks: every interval, GET the group's health
 * path on each of its targets and feed pass/fail into the target's shared
 * health state (health.c), logging when a target goes up or down.
 *
 * Checks of one generation run on one loop (worker 0's) through that
 * loop's uclient, from hcheck_start until hcheck_stop; the worker stops
 * them before it lets go of the generation. Decisions (thresholds,
 * statuses) are health.c's; this file only schedules and sends. */
#ifndef KAPI_HCHECK_H
#define KAPI_HCHECK_H

#include <stddef.h>

#include "upstream.h"

typedef struct hcheck hcheck;

/* Starts checks for every group in GROUPS[0..N) that has a health path, on
 * the calling loop thread (its uclient_current). *OUT is NULL when no
 * group has one. The groups must outlive hcheck_stop. */
kapi_status hcheck_start(upstream *groups, size_t n, hcheck **out);

/* Cancels checks in flight and frees H (NULL is a no-op). Loop thread. */
void hcheck_stop(hcheck *h);

#endif /* KAPI_HCHECK_H */
