/* core/secrets.c — subkeys of the server secret; see secrets.h.
 *
 * crypto_kdf contexts are exactly 8 bytes; the two subkeys use different contexts
 * and ids so neither can be computed from the other.
 */
#include "core/secrets.h"

#include <sodium.h>

void otp_secrets_derive(const uint8_t root[OTP_SECRET_LEN], otp_secrets *ret)
{
    crypto_kdf_derive_from_key(ret->code_key, sizeof(ret->code_key), 1, "otpdcode", root);
    crypto_kdf_derive_from_key(ret->box_key, sizeof(ret->box_key), 2, "otpd_box", root);
    otp_code_mac_init(&ret->code_mac, ret->code_key);
}

void otp_secrets_wipe(otp_secrets *s)
{
    if (s)
        sodium_memzero(s, sizeof(*s));
}
