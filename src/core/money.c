/* core/money.c — paise to text and back, without floating point; see money.h.
 *
 * Accepted text: an optional '-', one or more digits, then optionally '.' and one
 * or two digits. Rejected: "", "-", "1.", ".5", "+1", "1.234", "1e3", spaces, and
 * anything whose value exceeds OTP_MONEY_LIMIT paise (10^15, i.e. 10^13 rupees) in
 * absolute value. money.h says "at most 10^15 in absolute value" without a unit;
 * it is read here as paise, the value actually returned, which leaves int64 room
 * for sums of many such amounts. "-0" and "-0.00" parse to 0. Leading zeros
 * ("007.5") are accepted: they cannot change the value.
 */
#include "core/money.h"

#include <string.h>

#include <stdbool.h>
#include <stddef.h>

#define OTP_MONEY_LIMIT INT64_C(1000000000000000)

void otp_money_format(int64_t paise, char out[OTP_MONEY_SIZE])
{
    /* Work on the unsigned magnitude so INT64_MIN has one too. */
    uint64_t mag = paise < 0 ? (uint64_t)0 - (uint64_t)paise : (uint64_t)paise;
    char tmp[OTP_MONEY_SIZE];
    size_t n = 0, o = 0;

    do {
        tmp[n++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag > 0 || n < 3); /* at least "0.0d": two decimals and one integer digit */
    if (paise < 0)
        out[o++] = '-';
    while (n > 0) {
        if (n == 2)
            out[o++] = '.';
        out[o++] = tmp[--n];
    }
    out[o] = '\0';
}

int otp_money_parse(const char *s, int64_t *ret)
{
    bool neg = false;
    int64_t v = 0;
    int idigits = 0, fdigits = 0;

    if (!s)
        return -1;
    if (*s == '-') {
        neg = true;
        s++;
    }
    for (; *s >= '0' && *s <= '9'; s++, idigits++) {
        v = v * 10 + (*s - '0');
        if (v > OTP_MONEY_LIMIT / 100)
            return -1;
    }
    if (idigits == 0)
        return -1;
    v *= 100;
    if (*s == '.') {
        s++;
        for (; *s >= '0' && *s <= '9'; s++, fdigits++) {
            if (fdigits == 2)
                return -1;
            v += (*s - '0') * (fdigits == 0 ? 10 : 1);
        }
        if (fdigits == 0)
            return -1;
    }
    if (*s != '\0' || v > OTP_MONEY_LIMIT)
        return -1;
    *ret = neg ? -v : v;
    return 0;
}

bool otp_money_reference_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > OTP_MONEY_REFERENCE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              strchr("-_.:/#", c)))
            return false;
    }
    return true;
}
