/* core/otp_code.c — drawing one-time codes and hashing them; see otp_code.h.
 *
 * The hash input is request_id ":" code, so a code hash leaked from one request
 * says nothing about another, and the HMAC key (derived from the server secret)
 * keeps a database dump from being brute-forced over the tiny code space.
 */
#include "util/random.h"
#include "core/otp_code.h"

#include <sodium.h>
#include <string.h>

void otp_code_generate(int length, char *out)
{
    /* Out-of-range lengths are caller bugs. Both answers stay inside a buffer of
     * length + 1 bytes and fail closed: too short writes "" (no guess is well
     * formed against it), too long is cut to the maximum. */
    if (length < OTP_CODE_MIN_LEN) {
        out[0] = '\0';
        return;
    }
    if (length > OTP_CODE_MAX_LEN)
        length = OTP_CODE_MAX_LEN;
    for (int i = 0; i < length; i++)
        out[i] = (char)('0' + otp_random_uniform(10));
    out[length] = '\0';
}

void otp_code_mac_init(otp_code_mac *mac, const uint8_t key[32])
{
    crypto_auth_hmacsha256_init(&mac->keyed, key, 32);
}

void otp_code_hash(const otp_code_mac *mac, const char *request_id, const char *code,
                   uint8_t out[OTP_CODE_HASH_LEN])
{
    crypto_auth_hmacsha256_state st = mac->keyed;

    crypto_auth_hmacsha256_update(&st, (const unsigned char *)request_id, strlen(request_id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)":", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)code, strlen(code));
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

bool otp_code_hash_equal(const uint8_t a[OTP_CODE_HASH_LEN], const uint8_t b[OTP_CODE_HASH_LEN])
{
    return sodium_memcmp(a, b, OTP_CODE_HASH_LEN) == 0;
}

bool otp_code_well_formed(const char *code, int *ret_len)
{
    int n = 0;

    if (!code)
        return false;
    /* Stop one past the maximum so an arbitrarily long input costs nothing. */
    while (n <= OTP_CODE_MAX_LEN && code[n] != '\0') {
        if (code[n] < '0' || code[n] > '9')
            return false;
        n++;
    }
    if (n < OTP_CODE_MIN_LEN || n > OTP_CODE_MAX_LEN)
        return false;
    if (ret_len)
        *ret_len = n;
    return true;
}
