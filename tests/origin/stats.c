/* stats.c -- the counters /stats reports and the /health flag. Tests prove
 * keep-alive reuse and pool bounds with these, so they are exact: atomics,
 * and a reset that cannot lose or double-count a connection.
 *
 * Connections that asked /stats first are "control" connections (the
 * test's own curl); they are taken back out of both counters so a test
 * reads exactly what the gateway did. It does not serve HTTP (routes.c). */
#include <stdatomic.h>

#include "test_origin.h"

/* Accepted connections: the stats epoch in the high 32 bits, the count in
 * the low 32. One word, so a reset and an uncount never race. */
static _Atomic uint64_t conn_word;
static atomic_long open_now;
static atomic_ulong requests;
static atomic_bool healthy = true;

uint32_t
stats_conn_opened(void)
{
    atomic_fetch_add(&open_now, 1);
    return (uint32_t)(atomic_fetch_add(&conn_word, 1) >> 32);
}

void
stats_conn_uncount(uint32_t epoch)
{
    atomic_fetch_sub(&open_now, 1);
    uint64_t v = atomic_load(&conn_word);
    /* Counted before a reset: already gone from the count. */
    while ((uint32_t)(v >> 32) == epoch && (uint32_t)v > 0)
        if (atomic_compare_exchange_weak(&conn_word, &v, v - 1))
            break;
}

void
stats_conn_closed(void)
{
    atomic_fetch_sub(&open_now, 1);
}

void
stats_request(void)
{
    atomic_fetch_add(&requests, 1);
}

void
stats_reset(void)
{
    uint64_t v = atomic_load(&conn_word);
    while (!atomic_compare_exchange_weak(&conn_word, &v, ((v >> 32) + 1) << 32))
        ;
    atomic_store(&requests, 0);
}

void
stats_json(buf *out)
{
    buf_printf(out, "{\"connections\":%u,\"open\":%ld,\"requests\":%lu}\n",
               (uint32_t)atomic_load(&conn_word), atomic_load(&open_now), atomic_load(&requests));
}

bool
stats_healthy(void)
{
    return atomic_load(&healthy);
}

void
stats_set_healthy(bool on)
{
    atomic_store(&healthy, on);
}
