/* core/otp_code.h — one-time codes: drawing, keyed hashing, comparing.
 *
 * Codes are drawn digit by digit with otp_random_uniform(10) (util/random.h:
 * libsodium's ChaCha20 keystream, rejection sampling, so no modulo bias). What the store keeps is
 * HMAC-SHA-256(code_key, requestId ":" code): bound to its request and useless without the server
 * secret.
 */
#ifndef OTP_CORE_OTP_CODE_H
#define OTP_CORE_OTP_CODE_H

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

#define OTP_CODE_MIN_LEN 4
#define OTP_CODE_MAX_LEN 10
#define OTP_CODE_HASH_LEN 32

/* Writes length (4..10) random digits and a NUL into out (>= length + 1 bytes). */
void otp_code_generate(int length, char *out);
/* The code HMAC's key, prepared once: the SHA-256 states after its padded inner
 * and outer key blocks, so that each hash costs two compressions, not four. */
typedef struct otp_code_mac {
    crypto_auth_hmacsha256_state keyed;
} otp_code_mac;

void otp_code_mac_init(otp_code_mac *mac, const uint8_t key[32]);
/* out = HMAC-SHA-256(key, request_id ":" code). */
void otp_code_hash(const otp_code_mac *mac, const char *request_id, const char *code,
                   uint8_t out[OTP_CODE_HASH_LEN]);
/* Constant-time equality of two code hashes. */
bool otp_code_hash_equal(const uint8_t a[OTP_CODE_HASH_LEN], const uint8_t b[OTP_CODE_HASH_LEN]);
/* True if code is 4..10 ASCII digits; writes its length to *ret_len. */
bool otp_code_well_formed(const char *code, int *ret_len);

#endif
