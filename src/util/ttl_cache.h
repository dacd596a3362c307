/* util/ttl_cache.h — small tables of values that expire, shared by all threads.
 *
 * For what a request reads from the store again and again and may see a little
 * late (api/key_cache.h: API keys; api/template_cache.h: SMS templates). A
 * cache is one table for the whole process, behind one mutex: a value one
 * thread read from the store serves every thread (an HTTP thread, and on
 * PostgreSQL the read thread that did a read the HTTP thread must not wait
 * for: api/reads.c). Values are copied in and out under the lock, so none is
 * ever seen half written. The lock is held for a copy of one value only; its
 * cost on the hot path is measured in docs/performance.md (item 31).
 *
 * A table is `sets` sets of 2 entries, allocated on the first put; an entry is
 * a 32-byte key (a hash the caller computes: its low bits choose the set, so
 * it must be uniform and not chosen by a client), the time it was stored, and
 * a value of `value_size` bytes. Keys are compared in constant time. A full
 * set drops the entry stored longest ago. otp_ttl_cache_configure() starts a
 * new generation, which empties the table.
 *
 * Define one with OTP_TTL_CACHE_INIT at file scope:
 *     static otp_ttl_cache cache = OTP_TTL_CACHE_INIT(otp_template, 16);
 */
#ifndef OTP_UTIL_TTL_CACHE_H
#define OTP_UTIL_TTL_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTP_TTL_CACHE_KEY_LEN 32

typedef struct otp_ttl_cache {
    size_t value_size;
    unsigned sets; /* a power of two */
    atomic_int ttl_ms;
    atomic_uint_fast64_t generation;
    pthread_mutex_t mu;   /* guards the table and its entries */
    unsigned char *table; /* sets x 2 entries; NULL until the first put */
} otp_ttl_cache;

#define OTP_TTL_CACHE_INIT(value_type, n_sets)                                                     \
    {                                                                                              \
        .value_size = sizeof(value_type), .sets = (n_sets), .ttl_ms = 1000, .generation = 1,       \
        .mu = PTHREAD_MUTEX_INITIALIZER, .table = NULL                                             \
    }

/* Sets how long an entry is served (ms; 0 or less disables the cache) and
 * empties the table. Without it: 1000 ms. */
void otp_ttl_cache_configure(otp_ttl_cache *c, int ttl_ms);

/* If the table holds key, stored at most the period ago and not in the future
 * (a clock moved back reloads), copies its value_size bytes into out and
 * returns true. */
bool otp_ttl_cache_get(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN], int64_t now_ms,
                       void *out);

/* Stores value_size bytes of value under key, as read from the store at now_ms
 * (take the time before the read), in the key's entry, an empty one or the one
 * stored longest ago in its set. Does nothing when the cache is off or memory
 * ran out. */
void otp_ttl_cache_put(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN], int64_t now_ms,
                       const void *value);

/* Calls amend(value, arg) under the lock on key's value whatever its age (to
 * amend it without extending its life); returns false if there is none. */
bool otp_ttl_cache_amend(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN],
                         void (*amend)(void *value, void *arg), void *arg);

#endif
