/* util/ids.c — time-ordered random public ids and base62; see ids.h. */
#include "util/ids.h"
#include "util/random.h"

#include <sodium.h>
#include <string.h>

static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void otp_base62_encode_fixed(uint64_t value, char *out, size_t width)
{
    for (size_t i = width; i > 0; i--) {
        out[i - 1] = alphabet[value % 62];
        value /= 62;
    }
}

void otp_ledger_id_format(int64_t id, char out[OTP_LEDGER_ID_SIZE])
{
    memcpy(out, "ltx_", 4);
    otp_base62_encode_fixed((uint64_t)id, out + 4, OTP_LEDGER_ID_DIGITS);
    out[OTP_LEDGER_ID_SIZE - 1] = '\0';
}

/* One random byte per character, from a block drawn at once: a byte below
 * 248 = 4 * 62 maps to byte % 62 (uniform), the rest (3%) are drawn again. */
void otp_base62_random(char *out, size_t len)
{
    uint8_t block[32];
    size_t used = sizeof(block);

    for (size_t i = 0; i < len;) {
        if (used == sizeof(block)) {
            otp_random_bytes(block, sizeof(block));
            used = 0;
        }
        uint8_t b = block[used++];
        if (b < 248)
            out[i++] = alphabet[b % 62];
    }
    sodium_memzero(block, sizeof(block));
}

void otp_id_new(const char *prefix, int64_t now_ms, char *out)
{
    memcpy(out, prefix, 4);
    otp_base62_encode_fixed((uint64_t)now_ms, out + 4, 9);
    otp_base62_random(out + 13, 13);
    out[OTP_ID_LEN] = '\0';
}

bool otp_id_valid(const char *s, const char *prefix)
{
    if (!s || strncmp(s, prefix, 4) != 0 || strlen(s) != OTP_ID_LEN)
        return false;
    for (size_t i = 4; i < OTP_ID_LEN; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
    }
    return true;
}
