/* core/apikey.h — API key format, generation, checksum and hashing.
 *
 * A key is "otpd_live_" or "otpd_test_", 32 random base62 characters, then a
 * 6-character base62 checksum (the first 4 bytes of SHA-256 over everything
 * before it). The checksum lets a typo or a leaked key be recognised offline and
 * lets the server reject garbage without touching the store. At rest only the
 * SHA-256 of the whole key is kept, plus its first 12 characters for display.
 */
#ifndef OTP_CORE_APIKEY_H
#define OTP_CORE_APIKEY_H

#include <stdbool.h>
#include <stdint.h>

#define OTP_APIKEY_LEN 48 /* 10 + 32 + 6 */
#define OTP_APIKEY_SIZE (OTP_APIKEY_LEN + 1)
#define OTP_APIKEY_PREFIX_LEN 12
#define OTP_APIKEY_HASH_LEN 32

/* An operator's admin key (the admin API): "otpd_admin_", 32 random base62
 * characters and the same 6-character checksum. Never accepted as an API key,
 * nor an API key as an admin key. Stored as its SHA-256, like API keys. */
#define OTP_ADMINKEY_LEN 49 /* 11 + 32 + 6 */
#define OTP_ADMINKEY_SIZE (OTP_ADMINKEY_LEN + 1)
#define OTP_ADMINKEY_PREFIX_LEN 15 /* "otpd_admin_" and 4 more */

/* Writes a new key (NUL-terminated) into out (OTP_APIKEY_SIZE bytes). */
void otp_apikey_generate(bool test, char *out);
/* True if key has the right prefix, length, alphabet and checksum; *ret_test (may
 * be NULL) says whether it is a test key. */
bool otp_apikey_check(const char *key, bool *ret_test);
/* Writes a new admin key (NUL-terminated) into out (OTP_ADMINKEY_SIZE bytes). */
void otp_adminkey_generate(char *out);
/* True if key has the admin prefix, length, alphabet and checksum. */
bool otp_adminkey_check(const char *key);
/* out = SHA-256(key). */
void otp_apikey_hash(const char *key, uint8_t out[OTP_APIKEY_HASH_LEN]);

#endif
