/* util/ttl_cache.c — tables of values that expire, shared by all threads; see
 * ttl_cache.h for what they are for and how entries are kept.
 *
 * An entry is a head (key, generation, time stored) followed by the caller's
 * value, padded so that every value is aligned for any type. Everything but
 * the period and the generation (atomics, read without the lock) is touched
 * under the cache's mutex only.
 */
#include "util/ttl_cache.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 2

typedef struct head {
    uint64_t key[4];
    uint64_t generation; /* 0: never used */
    int64_t loaded_at_ms;
} head;

_Static_assert(OTP_TTL_CACHE_KEY_LEN == sizeof(((head *)0)->key), "key: four words");
_Static_assert(sizeof(head) % alignof(max_align_t) == 0, "a value right after its head is aligned");

void otp_ttl_cache_configure(otp_ttl_cache *c, int ttl)
{
    atomic_store(&c->ttl_ms, ttl < 0 ? 0 : ttl);
    atomic_fetch_add(&c->generation, 1);
}

static size_t entry_size(const otp_ttl_cache *c)
{
    size_t a = alignof(max_align_t);
    return (sizeof(head) + c->value_size + a - 1) / a * a;
}

/* The first of the 2 entries of key's set; c->table is not NULL. */
static head *set_of(const otp_ttl_cache *c, const uint64_t k[4])
{
    return (head *)(c->table + (size_t)(k[0] & (c->sets - 1)) * WAYS * entry_size(c));
}

static head *way(const otp_ttl_cache *c, head *set, int w)
{
    return (head *)((unsigned char *)set + (size_t)w * entry_size(c));
}

/* Compares two keys in constant time. */
static bool same_key(const uint64_t a[4], const uint64_t b[4])
{
    return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* The entry for k in the current generation, or NULL; under the lock. */
static head *find(otp_ttl_cache *c, const uint64_t k[4])
{
    if (!c->table)
        return NULL;
    uint64_t gen = atomic_load_explicit(&c->generation, memory_order_relaxed);
    head *set = set_of(c, k);
    for (int w = 0; w < WAYS; w++) {
        head *e = way(c, set, w);
        if (e->generation == gen && same_key(e->key, k))
            return e;
    }
    return NULL;
}

bool otp_ttl_cache_get(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN], int64_t now_ms,
                       void *out)
{
    int ttl = atomic_load_explicit(&c->ttl_ms, memory_order_relaxed);
    if (ttl <= 0)
        return false;
    uint64_t k[4];
    memcpy(k, key, sizeof(k));
    pthread_mutex_lock(&c->mu);
    head *e = find(c, k);
    bool hit = e && now_ms >= e->loaded_at_ms && now_ms - e->loaded_at_ms < ttl;
    if (hit)
        memcpy(out, e + 1, c->value_size);
    pthread_mutex_unlock(&c->mu);
    return hit;
}

bool otp_ttl_cache_amend(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN],
                         void (*amend)(void *value, void *arg), void *arg)
{
    uint64_t k[4];
    memcpy(k, key, sizeof(k));
    pthread_mutex_lock(&c->mu);
    head *e = find(c, k);
    if (e)
        amend(e + 1, arg);
    pthread_mutex_unlock(&c->mu);
    return e != NULL;
}

void otp_ttl_cache_put(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN], int64_t now_ms,
                       const void *value)
{
    if (atomic_load_explicit(&c->ttl_ms, memory_order_relaxed) <= 0)
        return;
    if (c->sets == 0 || (c->sets & (c->sets - 1)) != 0)
        return; /* not a power of two: never cache (the sets' mask needs one) */
    uint64_t k[4];
    memcpy(k, key, sizeof(k));
    pthread_mutex_lock(&c->mu);
    if (!c->table && !(c->table = calloc((size_t)c->sets * WAYS, entry_size(c)))) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    uint64_t gen = atomic_load_explicit(&c->generation, memory_order_relaxed);
    head *e = find(c, k);
    if (!e) {
        /* An empty (or old-generation) way, else the one stored longest ago. */
        head *set = set_of(c, k);
        e = set;
        for (int w = 0; w < WAYS; w++) {
            head *x = way(c, set, w);
            if (x->generation != gen) {
                e = x;
                break;
            }
            if (x->loaded_at_ms < e->loaded_at_ms)
                e = x;
        }
    }
    memcpy(e->key, k, sizeof(k));
    e->generation = gen;
    e->loaded_at_ms = now_ms;
    memcpy(e + 1, value, c->value_size);
    pthread_mutex_unlock(&c->mu);
}
