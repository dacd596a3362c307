/* delivery/sms_parts.c — GSM 03.38 / UCS-2 encoding and concatenation; see
 * sms_parts.h.
 *
 * The text is encoded once into a flat array of units (septets or UTF-16 code
 * units), remembering where each character starts; the split then only cuts at
 * character starts, which is what keeps an ESC from being separated from its
 * code and a high surrogate from its low one. The tables are the GSM 03.38
 * default alphabet indexed by septet, and its single-shift extension table. They
 * must agree with core/sms_text.c (which counts what is charged); the unit test
 * checks that they do for every code point below U+10000.
 */
#include "delivery/sms_parts.h"
#include "core/sms_text.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define GSM_SINGLE 160
#define GSM_PART 153
#define UCS2_SINGLE 70
#define UCS2_PART 67
#define UDH_LEN 6
#define ESC 0x1B
#define UNITS_MAX 4096 /* 1024 bytes of UTF-8 are at most 2048 septets or 1024 units */

/* Septet -> code point; 0xFFFF for 0x1B (the escape to the extension table). */
static const uint16_t gsm_basic[128] = {
    0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2, 0x00C7, 0x000A, 0x00D8,
    0x00F8, 0x000D, 0x00C5, 0x00E5, 0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8,
    0x03A3, 0x0398, 0x039E, 0xFFFF, 0x00C6, 0x00E6, 0x00DF, 0x00C9, 0x0020, 0x0021, 0x0022, 0x0023,
    0x00A4, 0x0025, 0x0026, 0x0027, 0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F,
    0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036, 0x0037, 0x0038, 0x0039, 0x003A, 0x003B,
    0x003C, 0x003D, 0x003E, 0x003F, 0x00A1, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047,
    0x0048, 0x0049, 0x004A, 0x004B, 0x004C, 0x004D, 0x004E, 0x004F, 0x0050, 0x0051, 0x0052, 0x0053,
    0x0054, 0x0055, 0x0056, 0x0057, 0x0058, 0x0059, 0x005A, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7,
    0x00BF, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065, 0x0066, 0x0067, 0x0068, 0x0069, 0x006A, 0x006B,
    0x006C, 0x006D, 0x006E, 0x006F, 0x0070, 0x0071, 0x0072, 0x0073, 0x0074, 0x0075, 0x0076, 0x0077,
    0x0078, 0x0079, 0x007A, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0,
};

/* The extension table: code point and the septet that follows ESC. */
static const struct {
    uint16_t cp;
    uint8_t septet;
} gsm_ext[] = {
    {0x000C, 0x0A}, {0x005E, 0x14}, {0x007B, 0x28}, {0x007D, 0x29}, {0x005C, 0x2F},
    {0x005B, 0x3C}, {0x007E, 0x3D}, {0x005D, 0x3E}, {0x007C, 0x40}, {0x20AC, 0x65},
};

int otp_gsm7_encode(uint32_t cp, uint8_t out[2])
{
    if (cp >= 0xFFFF)
        return 0;
    for (int i = 0; i < 128; i++) {
        if (gsm_basic[i] == cp) {
            out[0] = (uint8_t)i;
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof(gsm_ext) / sizeof(gsm_ext[0]); i++) {
        if (gsm_ext[i].cp == cp) {
            out[0] = ESC;
            out[1] = gsm_ext[i].septet;
            return 2;
        }
    }
    return 0;
}

/* The text as units: septets (GSM-7) or UTF-16 code units (UCS-2). starts[i]
 * is true where a character begins. */
typedef struct units {
    uint16_t u[UNITS_MAX];
    bool starts[UNITS_MAX + 1];
    size_t n;
} units;

static int push(units *t, const uint16_t *v, int k)
{
    if (t->n + (size_t)k > UNITS_MAX)
        return -2;
    t->starts[t->n] = true;
    for (int i = 0; i < k; i++) {
        if (i > 0)
            t->starts[t->n] = false;
        t->u[t->n++] = v[i];
    }
    return 0;
}

/* Encodes utf8 as GSM-7 (gsm = true; returns 1 if a character is not GSM) or
 * UCS-2. Returns 0, 1, -1 (not UTF-8) or -2 (too long). */
static int encode(const char *utf8, bool gsm, units *t)
{
    t->n = 0;
    for (const unsigned char *p = (const unsigned char *)utf8; *p;) {
        uint32_t cp;
        if (!otp_utf8_next(&p, &cp))
            return -1;
        uint16_t v[2];
        int k;
        if (gsm) {
            uint8_t s[2];
            k = otp_gsm7_encode(cp, s);
            if (k == 0)
                return 1;
            v[0] = s[0];
            v[1] = s[1];
        } else if (cp > 0xFFFF) {
            cp -= 0x10000;
            v[0] = (uint16_t)(0xD800 | (cp >> 10));
            v[1] = (uint16_t)(0xDC00 | (cp & 0x3FF));
            k = 2;
        } else {
            v[0] = (uint16_t)cp;
            k = 1;
        }
        int r = push(t, v, k);
        if (r)
            return r;
    }
    t->starts[t->n] = true;
    return 0;
}

/* Appends units [from, to) to part as octets (one per septet, two per unit). */
static void put_units(otp_sms_part *part, const units *t, size_t from, size_t to, bool ucs2)
{
    for (size_t i = from; i < to; i++) {
        if (ucs2) {
            part->data[part->len++] = (uint8_t)(t->u[i] >> 8);
            part->data[part->len++] = (uint8_t)(t->u[i] & 0xFF);
        } else {
            part->data[part->len++] = (uint8_t)t->u[i];
        }
    }
}

int otp_sms_split(const char *utf8, bool force_ucs2, uint8_t ref, otp_sms_parts *ret)
{
    if (!utf8 || !*utf8)
        return -1;
    units *t = malloc(sizeof(*t)); /* ~12 KiB: not on the stack */
    if (!t)
        return -3;
    int r = 1;
    bool ucs2 = force_ucs2;
    if (!ucs2) {
        r = encode(utf8, true, t);
        if (r < 0)
            goto out;
        ucs2 = r == 1;
    }
    if (ucs2) {
        r = encode(utf8, false, t);
        if (r < 0)
            goto out;
    }
    size_t single = ucs2 ? UCS2_SINGLE : GSM_SINGLE;
    size_t per_part = ucs2 ? UCS2_PART : GSM_PART;

    memset(ret, 0, sizeof(*ret));
    ret->data_coding = ucs2 ? OTP_SMS_DC_UCS2 : OTP_SMS_DC_GSM7;
    if (t->n <= single) {
        ret->n = 1;
        put_units(&ret->part[0], t, 0, t->n, ucs2);
        r = 0;
        goto out;
    }
    /* Greedy: as many whole characters as fit in each part. */
    size_t bounds[OTP_SMS_PARTS_MAX + 1];
    size_t n = 0, from = 0;
    bounds[0] = 0;
    while (from < t->n) {
        if (n == OTP_SMS_PARTS_MAX) {
            r = -2;
            goto out;
        }
        size_t to = from + per_part < t->n ? from + per_part : t->n;
        while (to > from && !t->starts[to])
            to--;
        bounds[++n] = to;
        from = to;
    }
    ret->udh = true;
    ret->n = n;
    for (size_t i = 0; i < n; i++) {
        otp_sms_part *part = &ret->part[i];
        const uint8_t udh[UDH_LEN] = {0x05, 0x00, 0x03, ref, (uint8_t)n, (uint8_t)(i + 1)};
        memcpy(part->data, udh, UDH_LEN);
        part->len = UDH_LEN;
        put_units(part, t, bounds[i], bounds[i + 1], ucs2);
    }
    r = 0;
out:
    sodium_memzero(t->u, t->n * sizeof(t->u[0]));
    free(t);
    if (r != 0)
        sodium_memzero(ret, sizeof(*ret));
    return r;
}
