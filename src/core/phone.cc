/* core/phone.cc — E.164 validation through libphonenumber, behind a C interface;
 * see phone.h.
 *
 * The strict format check runs first so libphonenumber only ever sees "+" and
 * digits: it is lenient by design (spaces, letters as keypad digits, national
 * formats), and otpd's API is not. No C++ exception may cross into C, so every
 * entry point catches everything; the only realistic one is std::bad_alloc, which
 * reads as OTP_PHONE_INVALID. PhoneNumberUtil's query methods are const and safe
 * to call from many threads; the one piece of shared mutable state we touch, the
 * logger, is set exactly once under the function-local static's initialisation
 * guard before the first parse.
 */
#include "core/phone.h"
#include "core/phone_internal.h"

#include <cstring>
#include <new>
#include <string>

#include <phonenumbers/logger.h>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

using i18n::phonenumbers::NullLogger;
using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

namespace
{

/* Library code in otpd does not log. libphonenumber 8.12 already defaults to a
 * NullLogger, but older releases write parse errors to stdout, so the choice is
 * made here rather than inherited. SetLogger takes ownership of the logger. */
const PhoneNumberUtil &util()
{
    static PhoneNumberUtil *const u = [] {
        PhoneNumberUtil *p = PhoneNumberUtil::GetInstance();
        p->SetLogger(new NullLogger());
        return p;
    }();
    return *u;
}

/* "+" then 7..15 digits, the first not 0; returns the number of digits or 0. */
size_t strict_digits(const char *s)
{
    size_t n = 0;

    if (!s || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (n = 0; n <= 15 && s[1 + n] >= '0' && s[1 + n] <= '9'; n++)
        ;
    if (s[1 + n] != '\0' || n < 7 || n > 15)
        return 0;
    return n;
}

/* Where building the number directly gives exactly what Parse() gives. Parse()
 * also applies each region's "national prefix for parsing" rules (Mexico's old
 * mobile "1", Argentina's "15", carrier codes…), which the fast path cannot
 * see: libphonenumber keeps region metadata private. India's only such prefix is
 * the trunk "0", and an Indian mobile (+91, then 10 digits starting 6..9) cannot
 * start with it, so the fast path is exact there; Indian numbers are otpd's bulk
 * traffic. Everything else takes Parse(). test_fast_path_agrees_with_parse
 * checks the two paths agree. */
bool fast_path_safe(const char *input)
{
    return std::strncmp(input, "+91", 3) == 0 && std::strlen(input) == 13 && input[3] >= '6' &&
           input[3] <= '9';
}

/* Builds the PhoneNumber of a strict E.164 string without Parse(): Parse()
 * normalises free-form input through several regexes (half the cost of a
 * validation), none of which can change "+" and digits. Country calling codes
 * are prefix-free, so the first 1..3 digits that libphonenumber knows as one
 * are the code. Leading zeros of the national number are kept the way Parse()
 * keeps them (Italian numbers). */
bool from_e164(const PhoneNumberUtil &u, const char *input, PhoneNumber *num)
{
    const char *digits = input + 1;
    size_t n = std::strlen(digits);
    for (size_t cc_len = 1; cc_len <= 3 && cc_len < n; cc_len++) {
        int cc = 0;
        for (size_t i = 0; i < cc_len; i++)
            cc = cc * 10 + (digits[i] - '0');
        std::string region;
        u.GetRegionCodeForCountryCode(cc, &region);
        if (region == "ZZ") /* not a calling code: try one digit more */
            continue;
        const char *national = digits + cc_len;
        uint64_t nn = 0;
        int zeros = 0;
        while (national[zeros] == '0' && national[zeros + 1] != '\0')
            zeros++;
        for (const char *p = national; *p; p++)
            nn = nn * 10 + (uint64_t)(*p - '0');
        num->set_country_code(cc);
        num->set_national_number(nn);
        if (zeros > 0) {
            num->set_italian_leading_zero(true);
            if (zeros > 1)
                num->set_number_of_leading_zeros(zeros);
        }
        return true;
    }
    return false;
}

otp_phone_result finish(const PhoneNumberUtil &u, const PhoneNumber &num,
                        PhoneNumberUtil::PhoneNumberType type, otp_phone *ret);

/* The straightforward path, kept as the reference the fast path is tested
 * against: Parse(), IsValidNumber(), GetNumberType(). */
otp_phone_result parse_reference(const char *input, otp_phone *ret)
{
    if (!strict_digits(input))
        return OTP_PHONE_BAD_FORMAT;
    const PhoneNumberUtil &u = util();
    PhoneNumber num;
    if (u.Parse(input, "ZZ", &num) != PhoneNumberUtil::NO_PARSING_ERROR || !u.IsValidNumber(num))
        return OTP_PHONE_INVALID;
    return finish(u, num, u.GetNumberType(num), ret);
}

otp_phone_result parse(const char *input, otp_phone *ret)
{
    if (!strict_digits(input))
        return OTP_PHONE_BAD_FORMAT;

    const PhoneNumberUtil &u = util();
    PhoneNumber num;
    PhoneNumberUtil::PhoneNumberType type = PhoneNumberUtil::UNKNOWN;
    if (fast_path_safe(input) && from_e164(u, input, &num))
        type = u.GetNumberType(num);
    if (type == PhoneNumberUtil::UNKNOWN) {
        /* The general path: libphonenumber's own parser. */
        num.Clear();
        if (u.Parse(input, "ZZ", &num) != PhoneNumberUtil::NO_PARSING_ERROR)
            return OTP_PHONE_INVALID;
        type = u.GetNumberType(num);
    }
    return finish(u, num, type, ret);
}

otp_phone_result finish(const PhoneNumberUtil &u, const PhoneNumber &num,
                        PhoneNumberUtil::PhoneNumberType type, otp_phone *ret)
{
    /* GetNumberType runs the same per-type pattern matching that IsValidNumber
     * does and answers UNKNOWN exactly when the number is not valid, so one call
     * does both jobs: the regexes are most of the cost of a send. */
    if (type == PhoneNumberUtil::UNKNOWN)
        return OTP_PHONE_INVALID;
    if (type != PhoneNumberUtil::MOBILE && type != PhoneNumberUtil::FIXED_LINE_OR_MOBILE)
        return OTP_PHONE_NOT_MOBILE;

    std::string region, e164;
    u.GetRegionCodeForNumber(num, &region);
    /* Non-geographic numbers (+800, +882, …) have region "001": otpd has no
     * country to attach them to (allow lists, pricing), so they are not
     * accepted. */
    if (region.size() != 2)
        return OTP_PHONE_INVALID;
    u.Format(num, PhoneNumberUtil::E164, &e164);
    if (e164.size() >= sizeof(ret->e164))
        return OTP_PHONE_INVALID;

    std::memcpy(ret->e164, e164.c_str(), e164.size() + 1);
    std::memcpy(ret->region, region.c_str(), 3);
    ret->country_code = num.country_code();
    return OTP_PHONE_OK;
}

} // namespace

extern "C" otp_phone_result otp_phone_parse(const char *input, otp_phone *ret)
{
    try {
        return parse(input, ret);
    } catch (...) {
        return OTP_PHONE_INVALID;
    }
}

/* Anything that is not strict E.164 is masked entirely: the mask is for logs and
 * responses, and must never echo unvalidated input back. */
extern "C" otp_phone_result otp_phone_parse_reference(const char *input, otp_phone *ret)
{
    try {
        return parse_reference(input, ret);
    } catch (...) {
        return OTP_PHONE_INVALID;
    }
}

extern "C" void otp_phone_mask(const char *e164, char out[OTP_PHONE_MASK_SIZE])
{
    size_t n = strict_digits(e164);

    if (n == 0) {
        std::strcpy(out, "+***");
        return;
    }
    out[0] = '+';
    for (size_t i = 0; i < n; i++)
        out[1 + i] = (i < 2 || i >= n - 4) ? e164[1 + i] : '*';
    out[1 + n] = '\0';
}
