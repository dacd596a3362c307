/* api/key_cache.h — successful API key lookups, kept in memory for a short time.
 *
 * Every authenticated request used to run the key lookup SELECT (~6.5 µs, a
 * tenth of a verify's instructions). The cache keeps what the lookup returned
 * for an active key, keyed by the key's SHA-256 (never the key itself), for
 * `limits.cache_ms` (the same period as the account limits cache of guard.c,
 * default 1000 ms; 0 disables it). Everything served from it may therefore be
 * up to that old: a key revoked with the CLI keeps working on a server for at
 * most that long, and the account's name, resend strategy, WebOTP domain and
 * default template are seen that late too. Nothing that must be exact is in
 * an otp_key_auth (the wallet balance is read by the transactions).
 *
 * Only positive results are kept (an unknown or revoked key always goes to the
 * store), so a flood of made-up keys cannot evict the good ones.
 *
 * All threads share one table (util/ttl_cache.h: OTP_KEY_CACHE_ENTRIES
 * entries, 2-way set associative, the older entry of a set overwritten), so a
 * key is read from the store once per period per process. On PostgreSQL that
 * read runs on a read thread (api/reads.c), and the HTTP threads find its
 * result here.
 */
#ifndef OTP_API_KEY_CACHE_H
#define OTP_API_KEY_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/apikey.h"
#include "store/store.h"

#define OTP_KEY_CACHE_ENTRIES 128

/* Sets how long an entry is served (ms; 0 or less disables the cache) and
 * empties the table. Without it: 1000 ms. */
void otp_key_cache_configure(int ttl_ms);

/* If the table holds hash, stored at most ttl ago (and not in the future:
 * a clock moved back reloads), copies it into *ret and returns true. */
bool otp_key_cache_get(const uint8_t hash[OTP_APIKEY_HASH_LEN], int64_t now_ms, otp_key_auth *ret);

/* Keeps *auth under hash in the table, as read from the store at
 * now_ms (take the time before the read). Call it only for an active key. */
void otp_key_cache_put(const uint8_t hash[OTP_APIKEY_HASH_LEN], const otp_key_auth *auth,
                       int64_t now_ms);

/* A touch of the key's lastUsedAt was just submitted: records last_used_ms in
 * the key's entry, if any, without extending its life. */
void otp_key_cache_set_last_used(const uint8_t hash[OTP_APIKEY_HASH_LEN], int64_t last_used_ms);

#endif
