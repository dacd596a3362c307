/* core/sms_text.c — the default OTP text and SMS segment counting; see sms_text.h.
 *
 * The segment count is what the account is charged, so it must match what a
 * gateway actually sends. Multipart messages are packed greedily the way SMSCs
 * and handsets split them: a two-septet extension character (ESC + code) is never
 * split across two parts, nor is a UTF-16 surrogate pair. That can make a text one
 * part longer than a plain ceil(length / 153) would (e.g. 152 'a' then 77 '{' is
 * 306 septets but needs three parts). A single-part message has no such issue.
 *
 * The GSM 03.38 tables below list the Unicode code points of the default
 * alphabet (basic table) and of its single-shift extension table (each costs an
 * escape septet plus its own). National language shift tables are not used:
 * support for them on handsets and SMSCs is uneven.
 */
#include "core/sms_text.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define GSM_SINGLE 160
#define GSM_PART 153
#define UCS2_SINGLE 70
#define UCS2_PART 67

/* The non-ASCII members of the basic table. Of ASCII, every printable character
 * is in the basic table except '`' (absent) and ^ { } \ [ ] ~ | (extension); of
 * the controls, LF and CR are basic and FF is in the extension table. */
static const uint16_t gsm_basic_nonascii[] = {
    0x00A1, 0x00A3, 0x00A4, 0x00A5, 0x00A7, 0x00BF, 0x00C4, 0x00C5, 0x00C6, 0x00C7,
    0x00C9, 0x00D1, 0x00D6, 0x00D8, 0x00DC, 0x00DF, 0x00E0, 0x00E4, 0x00E5, 0x00E6,
    0x00E8, 0x00E9, 0x00EC, 0x00F1, 0x00F2, 0x00F6, 0x00F8, 0x00F9, 0x00FC, 0x0393,
    0x0394, 0x0398, 0x039B, 0x039E, 0x03A0, 0x03A3, 0x03A6, 0x03A8, 0x03A9,
};

/* Septets a code point costs in GSM-7: 1 (basic), 2 (extension) or 0 (not GSM). */
static int gsm_septets(uint32_t cp)
{
    if (cp < 0x80) {
        switch (cp) {
        case '\n':
        case '\r':
            return 1;
        case '\f':
        case '^':
        case '{':
        case '}':
        case '\\':
        case '[':
        case ']':
        case '~':
        case '|':
            return 2;
        case '`':
            return 0;
        default:
            return cp >= 0x20 && cp < 0x7F ? 1 : 0;
        }
    }
    if (cp == 0x20AC) /* euro sign, extension table */
        return 2;
    for (size_t i = 0; i < sizeof(gsm_basic_nonascii) / sizeof(gsm_basic_nonascii[0]); i++)
        if (gsm_basic_nonascii[i] == cp)
            return 1;
    return 0;
}

/* Decodes one UTF-8 character at *p, advancing *p. Returns false on anything that
 * is not well-formed UTF-8 (RFC 3629): stray continuation bytes, truncation,
 * overlong forms, surrogates, code points above U+10FFFF. */
bool otp_utf8_next(const unsigned char **p, uint32_t *ret_cp)
{
    const unsigned char *s = *p;
    uint32_t cp, min;
    int extra;

    if (s[0] < 0x80) {
        cp = s[0];
        extra = 0;
        min = 0;
    } else if ((s[0] & 0xE0) == 0xC0) {
        cp = s[0] & 0x1F;
        extra = 1;
        min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        cp = s[0] & 0x0F;
        extra = 2;
        min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        cp = s[0] & 0x07;
        extra = 3;
        min = 0x10000;
    } else {
        return false;
    }
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL of a truncated sequence */
            return false;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return false;
    *p = s + 1 + extra;
    *ret_cp = cp;
    return true;
}

/* Packs units of the given sizes (1 or 2) greedily into parts of part_cap. */
struct packer {
    int total; /* units in the whole text */
    int parts; /* completed parts plus the open one */
    int fill;  /* units in the open part */
};

static void pack(struct packer *pk, int units, int part_cap)
{
    pk->total += units;
    if (pk->fill + units > part_cap) {
        pk->parts++;
        pk->fill = 0;
    }
    pk->fill += units;
}

int otp_sms_segments(const char *utf8, otp_sms_encoding *ret_enc)
{
    const unsigned char *p;
    struct packer gsm = {0, 1, 0}, ucs = {0, 1, 0};
    bool is_gsm = true;
    uint32_t cp;

    if (!utf8)
        return -1;
    /* Both packings are tracked in one pass; GSM's is dropped at the first
     * character outside the GSM tables. */
    for (p = (const unsigned char *)utf8; *p;) {
        if (!otp_utf8_next(&p, &cp))
            return -1;
        if (is_gsm) {
            int septets = gsm_septets(cp);
            if (septets == 0)
                is_gsm = false;
            else
                pack(&gsm, septets, GSM_PART);
        }
        pack(&ucs, cp > 0xFFFF ? 2 : 1, UCS2_PART);
    }
    if (is_gsm) {
        if (ret_enc)
            *ret_enc = OTP_SMS_GSM7;
        return gsm.total <= GSM_SINGLE ? 1 : gsm.parts;
    }
    if (ret_enc)
        *ret_enc = OTP_SMS_UCS2;
    return ucs.total <= UCS2_SINGLE ? 1 : ucs.parts;
}

int otp_sms_render_default(const char *code, const char *app_name, int expires_minutes,
                           const char *app_hash, const char *webotp_domain, char *out,
                           size_t outlen)
{
    int n, m;

    if (!code || !app_name || !out || outlen == 0 || outlen > INT32_MAX)
        return -1;
    n = snprintf(out, outlen,
                 "%s is your %s verification code. It expires in %d minutes. Do not share it.",
                 code, app_name, expires_minutes);
    if (n < 0 || (size_t)n >= outlen)
        goto overflow;
    if (app_hash) {
        m = snprintf(out + n, outlen - (size_t)n, "\n%s", app_hash);
        if (m < 0 || (size_t)m >= outlen - (size_t)n)
            goto overflow;
        n += m;
    }
    if (webotp_domain) {
        m = snprintf(out + n, outlen - (size_t)n, "\n@%s #%s", webotp_domain, code);
        if (m < 0 || (size_t)m >= outlen - (size_t)n)
            goto overflow;
        n += m;
    }
    return n;

overflow:
    /* Never leave a truncated text that could be sent by mistake. */
    out[0] = '\0';
    return -1;
}
