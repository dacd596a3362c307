/* core/phone_internal.h — for tests only: the straightforward libphonenumber
 * path (Parse, then GetNumberType), which otp_phone_parse() must agree with on
 * every input; tests/unit/core/test_phone.c compares the two on random numbers. */
#ifndef OTP_CORE_PHONE_INTERNAL_H
#define OTP_CORE_PHONE_INTERNAL_H

#include "core/phone.h"

#ifdef __cplusplus
extern "C" {
#endif

otp_phone_result otp_phone_parse_reference(const char *input, otp_phone *ret);

#ifdef __cplusplus
}
#endif

#endif
