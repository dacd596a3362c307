/* delivery/sms_parts.h — an SMS text as the short_message octets a gateway gets.
 *
 * A text whose every character is in the GSM 03.38 default alphabet or its
 * extension table goes as GSM-7 with data_coding 0, one septet per octet
 * (unpacked: the SMSC packs them for the air interface), an extension character
 * as ESC + its code. Any other text goes as UCS-2 big-endian with data_coding 8
 * (UTF-16 really: a character outside the BMP is a surrogate pair). A text that
 * does not fit one SMS (160 septets, 70 UTF-16 units) is split into parts of 153
 * septets or 67 units, each starting with a concatenation UDH (IEI 0x00, 8-bit
 * reference), never splitting an escape pair or a surrogate pair. This is the
 * same packing as core/sms_text.c's segment count, which is what was charged.
 */
#ifndef OTP_DELIVERY_SMS_PARTS_H
#define OTP_DELIVERY_SMS_PARTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTP_SMS_PARTS_MAX 32    /* a 1024-byte text needs at most 14 */
#define OTP_SMS_PART_OCTETS 160 /* a single GSM-7 part: 160 septets, one per octet */
#define OTP_SMS_DC_GSM7 0x00
#define OTP_SMS_DC_UCS2 0x08

typedef struct otp_sms_part {
    uint8_t data[OTP_SMS_PART_OCTETS]; /* UDH (if any) then the payload */
    size_t len;
} otp_sms_part;

typedef struct otp_sms_parts {
    uint8_t data_coding; /* OTP_SMS_DC_GSM7 or OTP_SMS_DC_UCS2 */
    bool udh;            /* the parts start with a UDH: set esm_class UDHI (0x40) */
    size_t n;
    otp_sms_part part[OTP_SMS_PARTS_MAX];
} otp_sms_parts;

/* Encodes utf8 into *ret (force_ucs2: UCS-2 even if GSM-7 would do). ref is the
 * concatenation reference the parts share. Returns 0; -1 if utf8 is not valid
 * UTF-8 or is empty; -2 if it needs more than OTP_SMS_PARTS_MAX parts; -3 if out
 * of memory. The caller wipes *ret after use (it holds the text). */
int otp_sms_split(const char *utf8, bool force_ucs2, uint8_t ref, otp_sms_parts *ret);

/* GSM 03.38: the septet(s) of code point cp into out (ESC + code for the
 * extension table). Returns 1 or 2, or 0 if cp is not in the alphabet. */
int otp_gsm7_encode(uint32_t cp, uint8_t out[2]);

#endif
