/* core/sms_text.h — SMS texts: the default template and segment counting.
 *
 * A text is GSM-7 if every character is in the GSM 03.38 basic set or its
 * extension table (extension characters such as '{' '€' count as two septets);
 * otherwise it goes as UCS-2 (UTF-16 code units; a character outside the BMP
 * counts as two). Segments: GSM-7 160 septets in one, else 153 per part; UCS-2
 * 70 units in one, else 67 per part.
 */
#ifndef OTP_CORE_SMS_TEXT_H
#define OTP_CORE_SMS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTP_SMS_TEXT_MAX 1024 /* bytes of UTF-8, NUL excluded */

typedef enum { OTP_SMS_GSM7 = 0, OTP_SMS_UCS2 = 1 } otp_sms_encoding;

/* Decodes one UTF-8 character at *p (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF), advancing *p past it. Returns false, without advancing, if it
 * is not well-formed. Shared by segment counting and the SMPP encoder so that
 * what is charged and what is sent read the text the same way. */
bool otp_utf8_next(const unsigned char **p, uint32_t *ret_cp);

/* Returns the number of segments of utf8 (>= 1) and writes its encoding; returns
 * -1 if utf8 is not valid UTF-8. */
int otp_sms_segments(const char *utf8, otp_sms_encoding *ret_enc);

/* Renders SPEC 4's default text:
 *   "{code} is your {app_name} verification code. It expires in {minutes} minutes. Do not share
 * it." then "\n{app_hash}" if app_hash is non-NULL, then "\n@{webotp_domain} #{code}" if
 * webotp_domain is non-NULL. Returns the length written (NUL-terminated), or -1
 * if it does not fit in outlen. */
int otp_sms_render_default(const char *code, const char *app_name, int expires_minutes,
                           const char *app_hash, const char *webotp_domain, char *out,
                           size_t outlen);

#endif
