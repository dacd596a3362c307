/* core/seal.h — sealing outbox texts (they contain the code) at rest.
 *
 * XChaCha20-Poly1305 (libsodium AEAD) with a random nonce; the message id is the
 * associated data, so a sealed text cannot be moved to another row. Layout of a
 * sealed blob: nonce (24 bytes) || ciphertext || tag (16 bytes).
 */
#ifndef OTP_CORE_SEAL_H
#define OTP_CORE_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define OTP_SEAL_OVERHEAD 40

/* Seals len bytes of msg into out (len + OTP_SEAL_OVERHEAD bytes). */
void otp_seal(const uint8_t key[32], const char *ad, const void *msg, size_t len, uint8_t *out);
/* Opens a sealed blob into out (in_len - OTP_SEAL_OVERHEAD + 1 bytes, NUL-terminated).
 * Returns 0, or -1 if the blob is too short or was not sealed with this key and ad. */
int otp_unseal(const uint8_t key[32], const char *ad, const uint8_t *in, size_t in_len, char *out);

#endif
