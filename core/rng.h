/* rng.h -- xorshift128+, the fast non-cryptographic generator behind
 * request ids and trace/span ids: unpredictable enough to keep ids apart,
 * never used for secrets. Header-only; the state is the caller's (per
 * worker or per thread), so no call takes a lock. */
#ifndef KAPI_RNG_H
#define KAPI_RNG_H

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

/* Seeds S from getrandom, or from the clock and SALT when that fails. */
static inline void
rng_seed(uint64_t s[2], uint64_t salt)
{
    if (getrandom(s, 2 * sizeof(*s), 0) != 2 * sizeof(*s) || (!s[0] && !s[1])) {
        s[0] = (uint64_t)time(NULL) ^ salt;
        s[1] = salt + 0x9e3779b97f4a7c15ull;
    }
}

/* The next 64 random bits; seeds S first when it is all zero. */
static inline uint64_t
rng_next(uint64_t s[2])
{
    if (!s[0] && !s[1])
        rng_seed(s, (uint64_t)(uintptr_t)s);
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

#endif /* KAPI_RNG_H */
