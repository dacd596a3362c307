/* core/money.h — money is int64 minor units (paise); text is "1234.50".
 *
 * No floating point anywhere: parsing and formatting work on digits.
 */
#ifndef OTP_CORE_MONEY_H
#define OTP_CORE_MONEY_H

#include <stdbool.h>
#include <stdint.h>

#define OTP_MONEY_SIZE 32

/* Formats paise as a decimal string with two places ("-0.25", "1234.50"). */
void otp_money_format(int64_t paise, char out[OTP_MONEY_SIZE]);
/* Parses "100", "100.5", "100.50" (optional leading '-'); at most 2 decimals,
 * at most 10^15 in absolute value. Returns 0 and writes *ret, or -1. */
int otp_money_parse(const char *s, int64_t *ret);

/* A credit's reference (the payment or invoice it is for): 1..128 characters
 * of A-Z a-z 0-9 - _ . : / #, so that it reads the same in JSON, in a log line
 * and in a shell. */
#define OTP_MONEY_REFERENCE_MAX 128
bool otp_money_reference_valid(const char *s);

#endif
