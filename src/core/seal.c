/* core/seal.c — AEAD sealing of outbox texts; see seal.h.
 *
 * XChaCha20's 192-bit nonce is large enough to draw at random for every message
 * without tracking counters across processes or restarts.
 */
#include "util/random.h"
#include "core/seal.h"

#include <sodium.h>
#include <string.h>

#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES

_Static_assert(NONCE_LEN + crypto_aead_xchacha20poly1305_ietf_ABYTES == OTP_SEAL_OVERHEAD,
               "OTP_SEAL_OVERHEAD must be nonce + tag");

void otp_seal(const uint8_t key[32], const char *ad, const void *msg, size_t len, uint8_t *out)
{
    otp_random_bytes(out, NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        out + NONCE_LEN, NULL, msg, len, (const unsigned char *)ad, strlen(ad), NULL, out, key);
}

int otp_unseal(const uint8_t key[32], const char *ad, const uint8_t *in, size_t in_len, char *out)
{
    unsigned long long n = 0;

    if (in_len < OTP_SEAL_OVERHEAD)
        return -1;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *)out, &n, NULL, in + NONCE_LEN,
                                                   in_len - NONCE_LEN, (const unsigned char *)ad,
                                                   strlen(ad), in, key) != 0)
        return -1;
    out[n] = '\0';
    return 0;
}
