/* balance.h -- chooses a target of an upstream group for a request.
 *
 * One balancer per upstream, shared by every worker thread: all functions
 * are safe to call concurrently. Three modes (config_balance):
 *   round_robin  nginx's smooth weighted round robin: weights 5,1,1 give
 *                a a b a c a a, and every run of sum(weights) picks holds
 *                each target exactly weight times while all are eligible.
 *                An ineligible target is skipped without taking a turn, so
 *                the others keep their proportions among themselves.
 *   least_conn   the eligible target with the fewest requests in flight
 *                per unit of weight (balancer_begin/balancer_end count
 *                them); ties go round robin, weighted, as above. Two
 *                threads picking at the same instant may both see the
 *                same counts: least_conn is exact only between picks.
 *   hash         weighted rendezvous hashing of a key (client address,
 *                header, path parameter: the caller's choice) against each
 *                target's name: a key keeps its target while that target is
 *                eligible, only the keys of a target that drops out move,
 *                and a target gets keys in proportion to its weight.
 * ELIGIBLE is the caller's: bit i set means target i may be chosen (healthy,
 * breaker admitting, not yet tried by this request). The balancer keeps no
 * health, does no I/O, takes no time and never logs. */
#ifndef KAPI_BALANCE_H
#define KAPI_BALANCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <kapi/status.h>
#include <kapi/types.h>

#include "config.h"

#define BALANCE_MAX_TARGETS 64 /* one bit each in an eligible mask */
#define BALANCE_MAX_WEIGHT 1000

/* Embedded by the caller; every field is private. */
typedef struct balancer {
    config_balance mode;
    size_t n;
    unsigned weight[BALANCE_MAX_TARGETS];
    uint64_t name_hash[BALANCE_MAX_TARGETS]; /* hash mode: each name, hashed at init */
    pthread_mutex_t lock;                    /* guards current */
    int64_t current[BALANCE_MAX_TARGETS];    /* smooth round robin state */
    atomic_uint active[BALANCE_MAX_TARGETS]; /* requests in flight */
} balancer;

/* Sets up B for N targets (1..BALANCE_MAX_TARGETS). WEIGHTS: N values in
 * 1..BALANCE_MAX_WEIGHT, copied; NULL means all 1. NAMES: N NUL-terminated
 * stable identities (the target's URL), hashed here and borrowed only for
 * the call; required in hash mode, where two equal names would share every
 * key's score (the first listed wins); ignored (may be NULL) otherwise.
 * KAPI_EINVAL for a bad count, weight or name (B untouched then, not to
 * be destroyed); config.c's ranges never yield it. */
kapi_status balancer_init(balancer *b, config_balance mode, size_t n, const unsigned *weights,
                          const char *const *names);
/* Releases B's lock; no call may be in progress or follow. */
void balancer_destroy(balancer *b);

/* The index of the chosen target among those whose bit is set in ELIGIBLE
 * (bits at N and above are ignored), or -1 when none is. KEY is hashed in
 * hash mode (borrowed for the call; an empty key is a key like any other)
 * and ignored otherwise. Round robin and least_conn take B's lock for one
 * pass over the targets; hash mode takes no lock. */
int balancer_pick(balancer *b, uint64_t eligible, kapi_str key);

/* A request to target I starts / ends: the in-flight count least_conn
 * compares. Call balancer_begin right after the pick (in every mode, so
 * balancer_active is right) and balancer_end exactly once per begin, when
 * the try is over whatever its outcome. Lock-free. */
void balancer_begin(balancer *b, size_t i);
void balancer_end(balancer *b, size_t i);
/* Requests in flight to target I (a snapshot; others may be changing it). */
unsigned balancer_active(const balancer *b, size_t i);

#endif /* KAPI_BALANCE_H */
