/* util/ttl_cache.c — per-thread tables of values that expire; see ttl_cache.h
 * for what they are for and how entries are kept.
 *
 * A thread's tables (one per cache it has put into) are a short list reached
 * through a thread-local pointer; one pthread key frees the list when the
 * thread exits. An entry is a head (key, generation, time stored) followed by
 * the caller's value, padded so that every value is aligned for any type.
 */
#include "util/ttl_cache.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
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

typedef struct table {
    struct table *next; /* this thread's table of another cache */
    const otp_ttl_cache *cache;
    size_t entry_size;
    alignas(max_align_t) unsigned char entries[];
} table;

static _Thread_local table *mine;
static pthread_key_t owner; /* frees a thread's tables when it exits */
static bool owner_ok;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Runs on the exiting thread, after which nothing may find its tables. */
static void free_tables(void *p)
{
    mine = NULL;
    for (table *t = p, *next; t; t = next) {
        next = t->next;
        free(t);
    }
}

static void init(void)
{
    owner_ok = pthread_key_create(&owner, free_tables) == 0;
}

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

static table *table_of(const otp_ttl_cache *c)
{
    table *t = mine;
    while (t && t->cache != c)
        t = t->next;
    return t;
}

static table *table_new(const otp_ttl_cache *c)
{
    if (c->sets == 0 || (c->sets & (c->sets - 1)) != 0)
        return NULL; /* not a power of two: never cache (the sets' mask needs one) */
    pthread_once(&once, init);
    size_t es = entry_size(c);
    table *t = owner_ok ? calloc(1, sizeof(*t) + (size_t)c->sets * WAYS * es) : NULL;
    if (!t)
        return NULL;
    t->cache = c;
    t->entry_size = es;
    t->next = mine;
    if (pthread_setspecific(owner, t) != 0) {
        free(t);
        return NULL;
    }
    mine = t;
    return t;
}

/* The first of the 2 entries of key's set. */
static head *set_of(const otp_ttl_cache *c, table *t, const uint64_t k[4])
{
    return (head *)(t->entries + (size_t)(k[0] & (c->sets - 1)) * WAYS * t->entry_size);
}

static head *way(table *t, head *set, int w)
{
    return (head *)((unsigned char *)set + (size_t)w * t->entry_size);
}

/* Compares two keys in constant time. */
static bool same_key(const uint64_t a[4], const uint64_t b[4])
{
    return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* This thread's entry for k in the current generation, or NULL. */
static head *find(otp_ttl_cache *c, table *t, const uint64_t k[4])
{
    uint64_t gen = atomic_load_explicit(&c->generation, memory_order_relaxed);
    head *set = set_of(c, t, k);
    for (int w = 0; w < WAYS; w++) {
        head *e = way(t, set, w);
        if (e->generation == gen && same_key(e->key, k))
            return e;
    }
    return NULL;
}

const void *otp_ttl_cache_get(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN],
                              int64_t now_ms)
{
    int ttl = atomic_load_explicit(&c->ttl_ms, memory_order_relaxed);
    table *t = ttl > 0 ? table_of(c) : NULL;
    if (!t)
        return NULL;
    uint64_t k[4];
    memcpy(k, key, sizeof(k));
    head *e = find(c, t, k);
    if (!e || now_ms < e->loaded_at_ms || now_ms - e->loaded_at_ms >= ttl)
        return NULL;
    return e + 1;
}

void *otp_ttl_cache_peek(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN])
{
    table *t = table_of(c);
    if (!t)
        return NULL;
    uint64_t k[4];
    memcpy(k, key, sizeof(k));
    head *e = find(c, t, k);
    return e ? e + 1 : NULL;
}

void *otp_ttl_cache_put(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN], int64_t now_ms)
{
    if (atomic_load_explicit(&c->ttl_ms, memory_order_relaxed) <= 0)
        return NULL;
    table *t = table_of(c);
    if (!t && !(t = table_new(c)))
        return NULL;
    uint64_t k[4];
    memcpy(k, key, sizeof(k));
    uint64_t gen = atomic_load_explicit(&c->generation, memory_order_relaxed);
    head *e = find(c, t, k);
    if (!e) {
        /* An empty (or old-generation) way, else the one stored longest ago. */
        head *set = set_of(c, t, k);
        e = set;
        for (int w = 0; w < WAYS; w++) {
            head *x = way(t, set, w);
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
    return e + 1;
}
