/* test_balance.c -- unit tests for core/balance.c: smooth weighted round
 * robin (nginx's 5,1,1 sequence, exact counts in every run of sum(weights)
 * picks, ineligible targets skipped without shifting the others'
 * proportions), least_conn (in-flight counts per weight, ties shared
 * evenly), weighted rendezvous hashing (stable, order-independent, only a
 * removed target's keys move, weights respected over 10k keys), -1 when
 * nothing is eligible, init's checks, and 4 threads picking at once.
 * It does not test health or breakers (test_health.c, test_breaker.c). */
#include "balance.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define ALL UINT64_MAX
#define NKEYS 10000

static const char *const names5[] = {"http://10.0.0.1:8080", "http://10.0.0.2:8080",
                                     "http://10.0.0.3:8080", "http://10.0.0.4:8080",
                                     "http://10.0.0.5:8080"};

static int
pick(balancer *b, uint64_t eligible)
{
    return balancer_pick(b, eligible, KAPI_STR(""));
}

static kapi_str
key_of(char *buf, size_t size, unsigned i)
{
    int len = snprintf(buf, size, "192.168.%u.%u", i / 256, i % 256);
    return (kapi_str){buf, (size_t)len};
}

static uint64_t
bit(int i)
{
    return (uint64_t)1 << i;
}

static void
test_init_checks(void **state)
{
    (void)state;
    balancer b;
    unsigned w[BALANCE_MAX_TARGETS + 1];
    for (size_t i = 0; i < BALANCE_MAX_TARGETS + 1; i++)
        w[i] = 1;
    const char *const bad_names[] = {"a", NULL};
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, 0, w, NULL), KAPI_EINVAL);
    assert_int_equal(
        balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, BALANCE_MAX_TARGETS + 1, w, NULL),
        KAPI_EINVAL);
    w[1] = 0;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, 3, w, NULL), KAPI_EINVAL);
    w[1] = BALANCE_MAX_WEIGHT + 1;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, 3, w, NULL), KAPI_EINVAL);
    w[1] = BALANCE_MAX_WEIGHT;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_HASH, 3, w, NULL), KAPI_EINVAL);
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_HASH, 2, w, bad_names), KAPI_EINVAL);
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_HASH, 5, w, names5), KAPI_OK);
    balancer_destroy(&b);
    /* 64 targets: the whole mask, NULL weights mean 1 */
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, 64, NULL, NULL), KAPI_OK);
    int seen[64] = {0};
    for (int i = 0; i < 64; i++)
        seen[pick(&b, ALL)]++;
    for (int i = 0; i < 64; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(pick(&b, bit(63)), 63);
    balancer_destroy(&b);
}

static void
test_swrr_nginx_sequence(void **state)
{
    (void)state;
    balancer b;
    const unsigned w[] = {5, 1, 1};
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, 3, w, NULL), KAPI_OK);
    char got[22] = {0};
    for (int i = 0; i < 21; i++)
        got[i] = (char)('a' + pick(&b, ALL));
    assert_string_equal(got, "aabacaaaabacaaaabacaa");
    balancer_destroy(&b);
}

/* Every run of sum(weights) consecutive picks, not only the aligned ones,
 * holds each target exactly its weight. */
static void
assert_exact_windows(const unsigned *w, size_t n)
{
    balancer b;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, n, w, NULL), KAPI_OK);
    unsigned total = 0;
    for (size_t i = 0; i < n; i++)
        total += w[i];
    size_t npicks = 3 * (size_t)total;
    int *seq = calloc(npicks, sizeof(int));
    assert_non_null(seq);
    unsigned count[BALANCE_MAX_TARGETS] = {0};
    for (size_t k = 0; k < npicks; k++) {
        seq[k] = pick(&b, ALL);
        assert_in_range(seq[k], 0, (int)n - 1);
        count[seq[k]]++;
        if (k >= total)
            count[seq[k - total]]--;
        if (k + 1 >= total)
            for (size_t i = 0; i < n; i++)
                if (count[i] != w[i])
                    fail_msg("window ending at pick %zu: target %zu picked %u times, weight %u", k,
                             i, count[i], w[i]);
    }
    free(seq);
    balancer_destroy(&b);
}

static void
test_swrr_exact_proportions(void **state)
{
    (void)state;
    const unsigned w1[] = {1};
    const unsigned w2[] = {1, 1, 1};
    const unsigned w3[] = {2, 1};
    const unsigned w4[] = {3, 7, 1, 4};
    const unsigned w5[] = {1000, 1, 500};
    const unsigned w6[] = {5, 5, 3, 2, 1, 1, 9, 4};
    assert_exact_windows(w1, 1);
    assert_exact_windows(w2, 3);
    assert_exact_windows(w3, 2);
    assert_exact_windows(w4, 4);
    assert_exact_windows(w5, 3);
    assert_exact_windows(w6, 8);
}

static void
test_swrr_skips_ineligible(void **state)
{
    (void)state;
    balancer b;
    const unsigned w[] = {5, 1, 1};
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, 3, w, NULL), KAPI_OK);
    /* b out from the start: a and c keep 5:1 in every 6 picks (a "next
     * eligible" fallback would hand b's turns to c: 5:2) */
    for (int cycle = 0; cycle < 10; cycle++) {
        int count[3] = {0};
        for (int k = 0; k < 6; k++)
            count[pick(&b, bit(0) | bit(2))]++;
        assert_int_equal(count[0], 5);
        assert_int_equal(count[1], 0);
        assert_int_equal(count[2], 1);
    }
    balancer_destroy(&b);

    /* dropping out mid-cycle: the others' shares stay within one pick */
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, 3, w, NULL), KAPI_OK);
    for (int k = 0; k < 3; k++)
        pick(&b, ALL);
    int count[3] = {0};
    for (int k = 0; k < 600; k++)
        count[pick(&b, bit(0) | bit(2))]++;
    assert_int_equal(count[1], 0);
    assert_in_range(count[0], 499, 501);
    assert_in_range(count[2], 99, 101);
    /* back in: the long run is 5:1:1 again, within one pick */
    memset(count, 0, sizeof(count));
    for (int k = 0; k < 700; k++)
        count[pick(&b, ALL)]++;
    assert_in_range(count[0], 499, 501);
    assert_in_range(count[1], 99, 101);
    assert_in_range(count[2], 99, 101);
    balancer_destroy(&b);

    /* equal weights, one out: the other three alternate strictly */
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_ROUND_ROBIN, 4, NULL, NULL), KAPI_OK);
    int last = -1;
    int four[4] = {0};
    for (int k = 0; k < 300; k++) {
        int i = pick(&b, ALL & ~bit(2));
        assert_int_not_equal(i, last);
        last = i;
        four[i]++;
    }
    assert_int_equal(four[0], 100);
    assert_int_equal(four[1], 100);
    assert_int_equal(four[2], 0);
    assert_int_equal(four[3], 100);
    balancer_destroy(&b);
}

static void
test_none_eligible(void **state)
{
    (void)state;
    const config_balance modes[] = {CONFIG_BALANCE_ROUND_ROBIN, CONFIG_BALANCE_LEAST_CONN,
                                    CONFIG_BALANCE_HASH};
    for (size_t m = 0; m < 3; m++) {
        balancer b;
        assert_int_equal(balancer_init(&b, modes[m], 3, NULL, names5), KAPI_OK);
        assert_int_equal(pick(&b, 0), -1);
        assert_int_equal(balancer_pick(&b, 0, KAPI_STR("key")), -1);
        /* bits past the last target are no target */
        assert_int_equal(pick(&b, bit(3) | bit(40) | bit(63)), -1);
        assert_int_equal(pick(&b, bit(3) | bit(1)), 1);
        balancer_destroy(&b);
    }
}

static void
test_least_conn_in_flight_and_weights(void **state)
{
    (void)state;
    balancer b;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_LEAST_CONN, 3, NULL, NULL), KAPI_OK);
    balancer_begin(&b, 0);
    balancer_begin(&b, 0);
    balancer_begin(&b, 1);
    assert_int_equal(balancer_active(&b, 0), 2);
    assert_int_equal(balancer_active(&b, 1), 1);
    assert_int_equal(balancer_active(&b, 2), 0);
    for (int k = 0; k < 5; k++)
        assert_int_equal(pick(&b, ALL), 2);
    /* the least loaded among the eligible ones */
    assert_int_equal(pick(&b, bit(0) | bit(1)), 1);
    balancer_begin(&b, 2);
    balancer_begin(&b, 2);
    balancer_begin(&b, 2);
    assert_int_equal(pick(&b, ALL), 1);
    balancer_end(&b, 0);
    balancer_end(&b, 0);
    assert_int_equal(balancer_active(&b, 0), 0);
    assert_int_equal(pick(&b, ALL), 0);
    balancer_destroy(&b);

    /* per weight: 1 in flight on weight 1 is busier than 2 on weight 3
     * (1*3 > 2*1); unweighted it would be the other way round */
    const unsigned w[] = {1, 3};
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_LEAST_CONN, 2, w, NULL), KAPI_OK);
    balancer_begin(&b, 0);
    balancer_begin(&b, 1);
    balancer_begin(&b, 1);
    assert_int_equal(pick(&b, ALL), 1);
    balancer_begin(&b, 1); /* 3 of weight 3 against 1 of weight 1: a tie */
    balancer_begin(&b, 1); /* 4 of weight 3 is more */
    assert_int_equal(pick(&b, ALL), 0);
    balancer_destroy(&b);

    /* requests held open: the in-flight counts follow the weights 1:3 */
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_LEAST_CONN, 2, w, NULL), KAPI_OK);
    for (int k = 0; k < 40; k++)
        balancer_begin(&b, (size_t)pick(&b, ALL));
    assert_int_equal(balancer_active(&b, 0), 10);
    assert_int_equal(balancer_active(&b, 1), 30);
    balancer_destroy(&b);
}

static void
test_least_conn_ties_shared(void **state)
{
    (void)state;
    balancer b;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_LEAST_CONN, 4, NULL, NULL), KAPI_OK);
    /* idle targets: strict rotation, not always the first */
    int count[4] = {0};
    for (int k = 0; k < 400; k++)
        count[pick(&b, ALL)]++;
    for (int i = 0; i < 4; i++)
        assert_int_equal(count[i], 100);
    /* one request at a time, each finished before the next */
    memset(count, 0, sizeof(count));
    for (int k = 0; k < 400; k++) {
        int i = pick(&b, ALL);
        balancer_begin(&b, (size_t)i);
        count[i]++;
        balancer_end(&b, (size_t)i);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(count[i], 100);
    /* a busy target out of the tie: the other three share evenly */
    balancer_begin(&b, 3);
    memset(count, 0, sizeof(count));
    for (int k = 0; k < 300; k++)
        count[pick(&b, ALL)]++;
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
    assert_int_equal(count[3], 0);
    balancer_end(&b, 3);
    balancer_destroy(&b);

    /* idle targets of weights 1 and 3 tie at 0 per weight: shared 1:3 */
    const unsigned w[] = {1, 3};
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_LEAST_CONN, 2, w, NULL), KAPI_OK);
    int two[2] = {0};
    for (int k = 0; k < 400; k++)
        two[pick(&b, ALL)]++;
    assert_int_equal(two[0], 100);
    assert_int_equal(two[1], 300);
    balancer_destroy(&b);
}

static void
map_keys(balancer *b, uint64_t eligible, int *out)
{
    char buf[32];
    for (unsigned k = 0; k < NKEYS; k++)
        out[k] = balancer_pick(b, eligible, key_of(buf, sizeof(buf), k));
}

static void
test_hash_stable(void **state)
{
    (void)state;
    static int first[NKEYS], again[NKEYS], reordered[NKEYS];
    balancer b, r;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_HASH, 5, NULL, names5), KAPI_OK);
    map_keys(&b, ALL, first);
    map_keys(&b, ALL, again);
    assert_memory_equal(first, again, sizeof(first));
    /* a key's target follows the names, not their order in the config */
    const char *const reversed[] = {names5[4], names5[3], names5[2], names5[1], names5[0]};
    assert_int_equal(balancer_init(&r, CONFIG_BALANCE_HASH, 5, NULL, reversed), KAPI_OK);
    map_keys(&r, ALL, reordered);
    for (unsigned k = 0; k < NKEYS; k++)
        assert_int_equal(reordered[k], 4 - first[k]);
    /* another key spreads over all targets */
    int count[5] = {0};
    for (unsigned k = 0; k < NKEYS; k++)
        count[first[k]]++;
    for (int i = 0; i < 5; i++)
        assert_in_range(count[i], NKEYS / 5 - NKEYS / 50, NKEYS / 5 + NKEYS / 50);
    /* the empty key is a key like any other */
    int e = balancer_pick(&b, ALL, (kapi_str){NULL, 0});
    assert_in_range(e, 0, 4);
    assert_int_equal(balancer_pick(&b, ALL, KAPI_STR("")), e);
    balancer_destroy(&r);
    balancer_destroy(&b);
}

static void
test_hash_minimal_movement(void **state)
{
    (void)state;
    static int before[NKEYS], after[NKEYS], back[NKEYS];
    balancer b;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_HASH, 5, NULL, names5), KAPI_OK);
    map_keys(&b, ALL, before);
    map_keys(&b, ALL & ~bit(2), after);
    int moved_to[5] = {0};
    unsigned on_two = 0;
    for (unsigned k = 0; k < NKEYS; k++) {
        assert_int_not_equal(after[k], 2);
        if (before[k] == 2) {
            on_two++;
            moved_to[after[k]]++;
        } else {
            assert_int_equal(after[k], before[k]); /* only the removed target's keys move */
        }
    }
    assert_true(on_two > NKEYS / 10);
    /* and they spread over the others rather than piling on a neighbour */
    for (int i = 0; i < 5; i++)
        if (i != 2)
            assert_in_range(moved_to[i], on_two / 8, on_two / 2);
    map_keys(&b, ALL, back);
    assert_memory_equal(before, back, sizeof(before));
    balancer_destroy(&b);
}

static void
assert_hash_shares(const unsigned *w, size_t n)
{
    static int map[NKEYS];
    balancer b;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_HASH, n, w, names5), KAPI_OK);
    map_keys(&b, ALL, map);
    unsigned total = 0;
    int count[5] = {0};
    for (size_t i = 0; i < n; i++)
        total += w[i];
    for (unsigned k = 0; k < NKEYS; k++)
        count[map[k]]++;
    for (size_t i = 0; i < n; i++) {
        double share = (double)count[i] / NKEYS, want = (double)w[i] / total;
        if (share < want - 0.02 || share > want + 0.02)
            fail_msg("target %zu of weight %u got %.3f of the keys, expected %.3f", i, w[i], share,
                     want);
    }
    balancer_destroy(&b);
}

static void
test_hash_weights(void **state)
{
    (void)state;
    const unsigned w13[] = {1, 3};
    const unsigned w31[] = {3, 1};
    const unsigned w127[] = {1, 2, 7};
    const unsigned w_even[] = {4, 4, 4, 4};
    const unsigned w_big[] = {1000, 250, 1000, 250, 500};
    assert_hash_shares(w13, 2);
    assert_hash_shares(w31, 2);
    assert_hash_shares(w127, 3);
    assert_hash_shares(w_even, 4);
    assert_hash_shares(w_big, 5);
}

typedef struct hammer {
    balancer *b;
    pthread_barrier_t *start; /* so the threads overlap rather than run in turn */
    unsigned picks;
    unsigned count[4];
    unsigned none;
} hammer;

static void *
hammer_run(void *arg)
{
    hammer *h = arg;
    char buf[32];
    pthread_barrier_wait(h->start);
    for (unsigned k = 0; k < h->picks; k++) {
        kapi_str key =
            h->b->mode == CONFIG_BALANCE_HASH ? key_of(buf, sizeof(buf), k) : KAPI_STR("");
        int i = balancer_pick(h->b, ALL, key);
        if (i < 0) {
            h->none++;
            continue;
        }
        balancer_begin(h->b, (size_t)i);
        h->count[i]++;
        balancer_end(h->b, (size_t)i);
    }
    return NULL;
}

/* 4 threads: nothing lost, every begin ended, and round robin's state and
 * counts still exact, which they are not if two picks interleave. */
static void
run_threads(config_balance mode, const unsigned *w, unsigned per_thread, unsigned *total)
{
    balancer b;
    assert_int_equal(balancer_init(&b, mode, 4, w, names5), KAPI_OK);
    hammer h[4];
    pthread_t th[4];
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 4), 0);
    for (int t = 0; t < 4; t++) {
        h[t] = (hammer){.b = &b, .start = &start, .picks = per_thread};
        assert_int_equal(pthread_create(&th[t], NULL, hammer_run, &h[t]), 0);
    }
    memset(total, 0, 4 * sizeof(*total));
    unsigned sum = 0;
    for (int t = 0; t < 4; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(h[t].none, 0);
        for (int i = 0; i < 4; i++) {
            total[i] += h[t].count[i];
            sum += h[t].count[i];
        }
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(sum, 4 * per_thread);
    int64_t current = 0;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(balancer_active(&b, i), 0);
        current += b.current[i];
    }
    /* each round robin step adds and takes away the same total: a lost
     * update shows here */
    assert_int_equal(current, 0);
    balancer_destroy(&b);
}

static void
test_concurrent(void **state)
{
    (void)state;
    const unsigned w[] = {1, 2, 3, 4};
    unsigned total[4];
    run_threads(CONFIG_BALANCE_ROUND_ROBIN, w, 100000, total);
    for (int i = 0; i < 4; i++)
        assert_int_equal(total[i], 40000 * w[i]);
    run_threads(CONFIG_BALANCE_LEAST_CONN, w, 25000, total);
    for (int i = 0; i < 4; i++)
        assert_true(total[i] > 0);
    run_threads(CONFIG_BALANCE_HASH, w, 25000, total);
    /* every thread hashed the same keys: the same choices, times 4 */
    balancer b;
    assert_int_equal(balancer_init(&b, CONFIG_BALANCE_HASH, 4, w, names5), KAPI_OK);
    unsigned alone[4] = {0};
    char buf[32];
    for (unsigned k = 0; k < 25000; k++)
        alone[balancer_pick(&b, ALL, key_of(buf, sizeof(buf), k))]++;
    for (int i = 0; i < 4; i++)
        assert_int_equal(total[i], 4 * alone[i]);
    balancer_destroy(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_checks),
        cmocka_unit_test(test_swrr_nginx_sequence),
        cmocka_unit_test(test_swrr_exact_proportions),
        cmocka_unit_test(test_swrr_skips_ineligible),
        cmocka_unit_test(test_none_eligible),
        cmocka_unit_test(test_least_conn_in_flight_and_weights),
        cmocka_unit_test(test_least_conn_ties_shared),
        cmocka_unit_test(test_hash_stable),
        cmocka_unit_test(test_hash_minimal_movement),
        cmocka_unit_test(test_hash_weights),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
