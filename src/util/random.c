/* util/random.c — per-thread ChaCha20 pools refilled from the kernel; see random.h. */
#include "util/random.h"

#include <sodium.h>
#include <string.h>

#define POOL_SIZE 4096

static _Thread_local unsigned char pool[POOL_SIZE];
static _Thread_local size_t pool_pos = POOL_SIZE;

static void refill(void)
{
    unsigned char seed[randombytes_SEEDBYTES];
    randombytes_buf(seed, sizeof(seed));
    randombytes_buf_deterministic(pool, sizeof(pool), seed);
    sodium_memzero(seed, sizeof(seed));
    pool_pos = 0;
}

void otp_random_bytes(void *buf, size_t n)
{
    unsigned char *out = buf;
    while (n > 0) {
        if (pool_pos == POOL_SIZE)
            refill();
        size_t take = POOL_SIZE - pool_pos;
        if (take > n)
            take = n;
        memcpy(out, pool + pool_pos, take);
        sodium_memzero(pool + pool_pos, take);
        pool_pos += take;
        out += take;
        n -= take;
    }
}

uint32_t otp_random_uniform(uint32_t upper)
{
    if (upper < 2)
        return 0;
    /* Reject the top (2^32 mod upper) values so every residue is equally likely. */
    uint32_t min = (uint32_t)(-upper) % upper;
    uint32_t r;
    do {
        otp_random_bytes(&r, sizeof(r));
    } while (r < min);
    return r % upper;
}
