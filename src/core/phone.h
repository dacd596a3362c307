/* core/phone.h — phone numbers, through a small C++ shim over libphonenumber.
 *
 * Input must be E.164 ("+" then 7..15 digits, nothing else). The number must be
 * valid for its region and able to receive SMS (MOBILE or FIXED_LINE_OR_MOBILE,
 * per libphonenumber's metadata). The region comes from libphonenumber, not from
 * the calling code ("+1" is many countries). Thread-safe.
 */
#ifndef OTP_CORE_PHONE_H
#define OTP_CORE_PHONE_H

#ifdef __cplusplus
extern "C" {
#endif

#define OTP_PHONE_SIZE 20
#define OTP_PHONE_MASK_SIZE 24

typedef struct otp_phone {
    char e164[OTP_PHONE_SIZE]; /* normalised, e.g. "+919876543210" */
    char region[3];            /* ISO 3166 region, e.g. "IN" */
    int country_code;          /* e.g. 91 */
} otp_phone;

typedef enum {
    OTP_PHONE_OK = 0,
    OTP_PHONE_BAD_FORMAT, /* not "+" and 7..15 digits */
    OTP_PHONE_INVALID,    /* libphonenumber says not a valid number */
    OTP_PHONE_NOT_MOBILE, /* valid, but cannot receive SMS */
} otp_phone_result;

/* Parses and validates input; writes *ret only on OTP_PHONE_OK. */
otp_phone_result otp_phone_parse(const char *input, otp_phone *ret);
/* "+919876543210" -> "+91******3210": keeps "+", the first 2 digits and the last
 * 4, masks the rest with '*'. Inputs of fewer than 7 digits become "+***". */
void otp_phone_mask(const char *e164, char out[OTP_PHONE_MASK_SIZE]);

#ifdef __cplusplus
}
#endif

#endif
