/* core/secrets.h — keys derived from the server secret.
 *
 * The server secret (32 random bytes in <data-dir>/secret, mode 0600, never in
 * the database) is the root of two independent subkeys derived with libsodium's
 * crypto_kdf: one keys the code HMAC, one seals outbox texts. Compromising one
 * subkey reveals nothing about the other or the root.
 */
#ifndef OTP_CORE_SECRETS_H
#define OTP_CORE_SECRETS_H

#include "core/otp_code.h"

#include <stdint.h>

#define OTP_SECRET_LEN 32

typedef struct otp_secrets {
    uint8_t code_key[32];  /* HMAC key for code hashes */
    uint8_t box_key[32];   /* AEAD key for outbox texts */
    otp_code_mac code_mac; /* code_key, prepared for otp_code_hash() */
} otp_secrets;

void otp_secrets_derive(const uint8_t root[OTP_SECRET_LEN], otp_secrets *ret);
/* Wipes the keys (sodium_memzero). */
void otp_secrets_wipe(otp_secrets *s);

#endif
