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

void otp_base62_random(char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[otp_random_uniform(62)];
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
