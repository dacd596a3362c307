/* api/template_cache.c — the table of templates found; see
 * template_cache.h for what is kept and for how long.
 *
 * The cache key is a 128-bit SipHash of the string looked up (keyed with a
 * random key drawn once per process: its low bits choose the set), then the
 * account's id and the string's length.
 */
#include "api/template_cache.h"
#include "util/ttl_cache.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

#define SETS 16 /* of 2 entries */

_Static_assert(SETS > 0 && (SETS & (SETS - 1)) == 0, "sets: a power of two");

static otp_ttl_cache cache = OTP_TTL_CACHE_INIT(otp_template, SETS);
static unsigned char hash_key[crypto_shorthash_siphashx24_KEYBYTES];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
    randombytes_buf(hash_key, sizeof(hash_key));
}

static void cache_key(int64_t account_id, const char *id_or_name,
                      uint8_t ret[OTP_TTL_CACHE_KEY_LEN])
{
    _Static_assert(crypto_shorthash_siphashx24_BYTES + 2 * sizeof(uint64_t) ==
                       OTP_TTL_CACHE_KEY_LEN,
                   "hash, account, length");
    pthread_once(&once, init);
    size_t len = strlen(id_or_name);
    uint64_t tail[2] = {(uint64_t)account_id, (uint64_t)len};
    crypto_shorthash_siphashx24(ret, (const unsigned char *)id_or_name, len, hash_key);
    memcpy(ret + crypto_shorthash_siphashx24_BYTES, tail, sizeof(tail));
}

void otp_template_cache_configure(int ttl_ms)
{
    otp_ttl_cache_configure(&cache, ttl_ms);
}

bool otp_template_cache_get(int64_t account_id, const char *id_or_name, int64_t now_ms,
                            otp_template *ret)
{
    uint8_t k[OTP_TTL_CACHE_KEY_LEN];
    cache_key(account_id, id_or_name, k);
    return otp_ttl_cache_get(&cache, k, now_ms, ret);
}

void otp_template_cache_put(int64_t account_id, const char *id_or_name, const otp_template *t,
                            int64_t now_ms)
{
    uint8_t k[OTP_TTL_CACHE_KEY_LEN];
    cache_key(account_id, id_or_name, k);
    otp_ttl_cache_put(&cache, k, now_ms, t);
}
