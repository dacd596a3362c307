/* core/apikey.c — API and admin key generation, offline checksum and at-rest hash;
 * see apikey.h.
 *
 * The checksum is the first 4 bytes of SHA-256(prefix || random part) read as a
 * big-endian uint32 and written as 6 base62 digits (62^6 > 2^32, so it always
 * fits). It is not a secret and is compared in plain time: it only tells a typo
 * or a non-key apart from something worth looking up.
 */
#include "core/apikey.h"

#include <sodium.h>
#include <string.h>

#include "util/ids.h"

#define PREFIX_LIVE "otpd_live_"
#define PREFIX_TEST "otpd_test_"
#define PREFIX_ADMIN "otpd_admin_"
#define PREFIX_LEN 10
#define ADMIN_PREFIX_LEN 11
#define RANDOM_LEN 32
#define CHECK_LEN 6
#define BODY_LEN (PREFIX_LEN + RANDOM_LEN)
#define ADMIN_BODY_LEN (ADMIN_PREFIX_LEN + RANDOM_LEN)

_Static_assert(BODY_LEN + CHECK_LEN == OTP_APIKEY_LEN, "key layout");
_Static_assert(ADMIN_BODY_LEN + CHECK_LEN == OTP_ADMINKEY_LEN, "admin key layout");
_Static_assert(sizeof(PREFIX_LIVE) - 1 == PREFIX_LEN && sizeof(PREFIX_TEST) - 1 == PREFIX_LEN &&
                   sizeof(PREFIX_ADMIN) - 1 == ADMIN_PREFIX_LEN,
               "prefix length");

/* The checksum of the body_len characters before it. */
static void checksum(const char *body, size_t body_len, char out[CHECK_LEN])
{
    uint8_t h[crypto_hash_sha256_BYTES];
    uint32_t v;

    crypto_hash_sha256(h, (const unsigned char *)body, body_len);
    v = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | (uint32_t)h[3];
    otp_base62_encode_fixed(v, out, CHECK_LEN);
}

static bool is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

void otp_apikey_generate(bool test, char *out)
{
    memcpy(out, test ? PREFIX_TEST : PREFIX_LIVE, PREFIX_LEN);
    otp_base62_random(out + PREFIX_LEN, RANDOM_LEN);
    checksum(out, BODY_LEN, out + BODY_LEN);
    out[OTP_APIKEY_LEN] = '\0';
}

bool otp_apikey_check(const char *key, bool *ret_test)
{
    char want[CHECK_LEN];
    bool test;

    if (!key)
        return false;
    if (strncmp(key, PREFIX_LIVE, PREFIX_LEN) == 0)
        test = false;
    else if (strncmp(key, PREFIX_TEST, PREFIX_LEN) == 0)
        test = true;
    else
        return false;
    /* Checking the alphabet up to the expected end before strlen() keeps a huge
     * header value from being scanned in full. */
    for (size_t i = PREFIX_LEN; i < OTP_APIKEY_LEN; i++)
        if (!is_base62(key[i]))
            return false;
    if (key[OTP_APIKEY_LEN] != '\0')
        return false;
    checksum(key, BODY_LEN, want);
    if (memcmp(want, key + BODY_LEN, CHECK_LEN) != 0)
        return false;
    if (ret_test)
        *ret_test = test;
    return true;
}

void otp_adminkey_generate(char *out)
{
    memcpy(out, PREFIX_ADMIN, ADMIN_PREFIX_LEN);
    otp_base62_random(out + ADMIN_PREFIX_LEN, RANDOM_LEN);
    checksum(out, ADMIN_BODY_LEN, out + ADMIN_BODY_LEN);
    out[OTP_ADMINKEY_LEN] = '\0';
}

bool otp_adminkey_check(const char *key)
{
    char want[CHECK_LEN];

    if (!key || strncmp(key, PREFIX_ADMIN, ADMIN_PREFIX_LEN) != 0)
        return false;
    for (size_t i = ADMIN_PREFIX_LEN; i < OTP_ADMINKEY_LEN; i++)
        if (!is_base62(key[i]))
            return false;
    if (key[OTP_ADMINKEY_LEN] != '\0')
        return false;
    checksum(key, ADMIN_BODY_LEN, want);
    return memcmp(want, key + ADMIN_BODY_LEN, CHECK_LEN) == 0;
}

void otp_apikey_hash(const char *key, uint8_t out[OTP_APIKEY_HASH_LEN])
{
    crypto_hash_sha256(out, (const unsigned char *)key, strlen(key));
}
