/* balance.c -- chooses a target of an upstream group (see balance.h).
 *
 * Round robin is nginx's smooth weighted round robin: each pick adds every
 * eligible target's weight to its current value, takes the highest (the
 * first listed on a tie) and lowers it by the eligible weights' sum. The
 * sum of all current values stays 0, so they stay bounded whatever the
 * eligible masks. least_conn narrows the eligible mask to the targets with
 * the lowest in-flight count per weight and lets the same round robin choose
 * among them. Hash mode scores each eligible target with
 * weight / -ln(u), u a uniform (0,1) value from hash(key, name), and takes
 * the highest: rendezvous hashing, weighted; it reads only what init wrote,
 * so it needs no lock. It does not track health nor retries: the caller's
 * eligible mask carries both. */
#include "balance.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static uint64_t
fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3u;
    }
    return h;
}

/* MurmurHash3's 64-bit finalizer: every input bit flips about half the
 * output bits, which FNV-1a alone does not do for short keys. */
static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53u;
    x ^= x >> 33;
    return x;
}

static uint64_t
target_mask(size_t n)
{
    return n >= 64 ? UINT64_MAX : ((uint64_t)1 << n) - 1;
}

kapi_status
balancer_init(balancer *b, config_balance mode, size_t n, const unsigned *weights,
              const char *const *names)
{
    if (b == NULL || n == 0 || n > BALANCE_MAX_TARGETS)
        return KAPI_EINVAL;
    if (mode != CONFIG_BALANCE_ROUND_ROBIN && mode != CONFIG_BALANCE_LEAST_CONN &&
        mode != CONFIG_BALANCE_HASH)
        return KAPI_EINVAL;
    if (mode == CONFIG_BALANCE_HASH && names == NULL)
        return KAPI_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (weights != NULL && (weights[i] == 0 || weights[i] > BALANCE_MAX_WEIGHT))
            return KAPI_EINVAL;
        if (names != NULL && names[i] == NULL)
            return KAPI_EINVAL;
    }
    if (pthread_mutex_init(&b->lock, NULL) != 0)
        return KAPI_ENOMEM;
    b->mode = mode;
    b->n = n;
    for (size_t i = 0; i < BALANCE_MAX_TARGETS; i++) {
        b->weight[i] = i < n ? (weights != NULL ? weights[i] : 1) : 0;
        b->name_hash[i] = i < n && names != NULL ? mix64(fnv1a(names[i], strlen(names[i]))) : 0;
        b->current[i] = 0;
        atomic_init(&b->active[i], 0);
    }
    return KAPI_OK;
}

void
balancer_destroy(balancer *b)
{
    pthread_mutex_destroy(&b->lock);
}

/* One smooth weighted round robin step over MASK (non-empty); B locked. */
static int
swrr_locked(balancer *b, uint64_t mask)
{
    int64_t total = 0;
    int best = -1;
    for (uint64_t m = mask; m != 0; m &= m - 1) {
        int i = __builtin_ctzll(m);
        b->current[i] += b->weight[i];
        total += b->weight[i];
        if (best < 0 || b->current[i] > b->current[best])
            best = i;
    }
    b->current[best] -= total;
    return best;
}

/* The targets of MASK (non-empty) with the fewest requests in flight per
 * unit of weight: i beats j when active_i / weight_i < active_j / weight_j,
 * compared by cross-multiplying so no division rounds. */
static uint64_t
least_loaded(const balancer *b, uint64_t mask)
{
    uint64_t best = 0;
    uint64_t best_active = 0, best_weight = 1;
    for (uint64_t m = mask; m != 0; m &= m - 1) {
        int i = __builtin_ctzll(m);
        uint64_t a = atomic_load_explicit(&b->active[i], memory_order_relaxed);
        uint64_t lhs = a * best_weight, rhs = best_active * b->weight[i];
        if (best == 0 || lhs < rhs) {
            best = (uint64_t)1 << i;
            best_active = a;
            best_weight = b->weight[i];
        } else if (lhs == rhs) {
            best |= (uint64_t)1 << i;
        }
    }
    return best;
}

static int
hash_pick(const balancer *b, uint64_t mask, kapi_str key)
{
    uint64_t kh = mix64(key.len != 0 ? fnv1a(key.ptr, key.len) : fnv1a("", 0));
    int best = -1;
    double best_score = 0;
    for (uint64_t m = mask; m != 0; m &= m - 1) {
        int i = __builtin_ctzll(m);
        /* 53 random bits, offset half a step so u is never 0 nor 1 */
        uint64_t x = mix64(kh ^ b->name_hash[i]);
        double u = ((double)(x >> 11) + 0.5) * 0x1p-53;
        double score = (double)b->weight[i] / -log(u);
        if (best < 0 || score > best_score) {
            best = i;
            best_score = score;
        }
    }
    return best;
}

int
balancer_pick(balancer *b, uint64_t eligible, kapi_str key)
{
    uint64_t mask = eligible & target_mask(b->n);
    if (mask == 0)
        return -1;
    if (b->mode == CONFIG_BALANCE_HASH)
        return hash_pick(b, mask, key);
    pthread_mutex_lock(&b->lock);
    if (b->mode == CONFIG_BALANCE_LEAST_CONN)
        mask = least_loaded(b, mask);
    int i = swrr_locked(b, mask);
    pthread_mutex_unlock(&b->lock);
    return i;
}

void
balancer_begin(balancer *b, size_t i)
{
    assert(i < b->n);
    if (i < b->n)
        atomic_fetch_add_explicit(&b->active[i], 1, memory_order_relaxed);
}

void
balancer_end(balancer *b, size_t i)
{
    assert(i < b->n);
    if (i >= b->n)
        return;
    /* an unmatched end must not wrap to UINT_MAX, which would keep
     * least_conn off the target for good */
    unsigned cur = atomic_load_explicit(&b->active[i], memory_order_relaxed);
    do {
        assert(cur > 0);
        if (cur == 0)
            return;
    } while (!atomic_compare_exchange_weak_explicit(&b->active[i], &cur, cur - 1,
                                                    memory_order_relaxed, memory_order_relaxed));
}

unsigned
balancer_active(const balancer *b, size_t i)
{
    return i < b->n ? atomic_load_explicit(&b->active[i], memory_order_relaxed) : 0;
}
