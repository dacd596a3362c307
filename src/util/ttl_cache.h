/* util/ttl_cache.h — small per-thread tables of values that expire.
 *
 * For what a request reads from the store again and again and may see a little
 * late (api/key_cache.h: API keys; api/template_cache.h: SMS templates). Each
 * thread has its own table of each cache: no lock, no shared cache line, and a
 * fixed amount of memory per thread, allocated on the thread's first put and
 * freed when the thread exits.
 *
 * A table is `sets` sets of 2 entries; an entry is a 32-byte key (a hash the
 * caller computes: its low bits choose the set, so it must be uniform and not
 * chosen by a client), the time it was stored, and a value of `value_size`
 * bytes that the caller copies in and out. Keys are compared in constant time.
 * A full set drops the entry stored longest ago. otp_ttl_cache_configure()
 * starts a new generation, which empties every thread's table without touching
 * other threads' memory.
 *
 * Define one with OTP_TTL_CACHE_INIT at file scope:
 *     static otp_ttl_cache cache = OTP_TTL_CACHE_INIT(otp_template, 16);
 */
#ifndef OTP_UTIL_TTL_CACHE_H
#define OTP_UTIL_TTL_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define OTP_TTL_CACHE_KEY_LEN 32

typedef struct otp_ttl_cache {
    size_t value_size;
    unsigned sets; /* a power of two */
    atomic_int ttl_ms;
    atomic_uint_fast64_t generation;
} otp_ttl_cache;

#define OTP_TTL_CACHE_INIT(value_type, n_sets)                                                     \
    {                                                                                              \
        .value_size = sizeof(value_type), .sets = (n_sets), .ttl_ms = 1000, .generation = 1        \
    }

/* Sets how long an entry is served (ms; 0 or less disables the cache) and
 * empties every thread's table. Without it: 1000 ms. */
void otp_ttl_cache_configure(otp_ttl_cache *c, int ttl_ms);

/* This thread's value for key, stored at most the period ago and not in the
 * future (a clock moved back reloads), or NULL. Copy it out before the next
 * put on this thread. */
const void *otp_ttl_cache_get(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN],
                              int64_t now_ms);

/* Where to write the value for key, read from the store at now_ms (take the
 * time before the read): the key's entry, an empty one or the one stored
 * longest ago in its set. NULL when the cache is off or memory ran out (then
 * simply do not cache). The caller must fill all value_size bytes. */
void *otp_ttl_cache_put(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN], int64_t now_ms);

/* This thread's value for key whatever its age (to amend it without extending
 * its life), or NULL. */
void *otp_ttl_cache_peek(otp_ttl_cache *c, const uint8_t key[OTP_TTL_CACHE_KEY_LEN]);

#endif
