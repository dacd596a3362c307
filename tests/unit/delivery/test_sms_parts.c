/* tests/unit/delivery/test_sms_parts.c — texts as SMPP short_message octets:
 * GSM 03.38 septets (one per octet, extension characters as ESC + code) or UCS-2
 * big-endian; concatenated parts with a UDH that never split an escape pair or
 * a surrogate pair; and the same number of parts as core/sms_text.c charges, for
 * every code point of the BMP and at every part boundary. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sms_text.h"
#include "delivery/sms_parts.h"

#define EURO "\xE2\x82\xAC"      /* U+20AC: ESC 0x65 */
#define HINDI_HA "\xE0\xA4\xB9"  /* U+0939: not GSM */
#define EMOJI "\xF0\x9F\x98\x80" /* U+1F600: a surrogate pair */

static char *repeat(const char *prefix, const char *unit, int n, const char *suffix)
{
    size_t len = strlen(prefix) + strlen(unit) * (size_t)n + strlen(suffix) + 1;
    char *s = malloc(len), *p = s;
    assert_non_null(s);
    p = stpcpy(p, prefix);
    for (int i = 0; i < n; i++)
        p = stpcpy(p, unit);
    stpcpy(p, suffix);
    return s;
}

static otp_sms_parts *split(const char *text, bool ucs2)
{
    otp_sms_parts *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    assert_int_equal(otp_sms_split(text, ucs2, 0x2A, p), 0);
    return p;
}

static void test_gsm_single(void **state)
{
    otp_sms_parts *p = split("123456 is your code. @$_{}", false);
    assert_int_equal(p->data_coding, OTP_SMS_DC_GSM7);
    assert_false(p->udh);
    assert_int_equal(p->n, 1);
    const uint8_t want[] = "123456 is your code. \x00\x02\x11\x1b\x28\x1b\x29";
    assert_int_equal(p->part[0].len, sizeof(want) - 1);
    assert_memory_equal(p->part[0].data, want, sizeof(want) - 1);
    free(p);
}

static void test_gsm_table(void **state)
{
    uint8_t s[2];
    struct {
        uint32_t cp;
        int n;
        uint8_t a, b;
    } cases[] = {
        {'@', 1, 0x00, 0},     {0xA3, 1, 0x01, 0},      {'$', 1, 0x02, 0},    {'\n', 1, 0x0A, 0},
        {0x394, 1, 0x10, 0},   {'_', 1, 0x11, 0},       {' ', 1, 0x20, 0},    {0xA4, 1, 0x24, 0},
        {'A', 1, 0x41, 0},     {0xA1, 1, 0x40, 0},      {0xBF, 1, 0x60, 0},   {0xE0, 1, 0x7F, 0},
        {'\f', 2, 0x1B, 0x0A}, {'^', 2, 0x1B, 0x14},    {'{', 2, 0x1B, 0x28}, {'}', 2, 0x1B, 0x29},
        {'\\', 2, 0x1B, 0x2F}, {'[', 2, 0x1B, 0x3C},    {'~', 2, 0x1B, 0x3D}, {']', 2, 0x1B, 0x3E},
        {'|', 2, 0x1B, 0x40},  {0x20AC, 2, 0x1B, 0x65}, {'`', 0, 0, 0},       {0xE7, 0, 0, 0},
        {0x1B, 0, 0, 0},       {0x939, 0, 0, 0},        {0xFFFF, 0, 0, 0},    {0x1F600, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = otp_gsm7_encode(cases[i].cp, s);
        if (n != cases[i].n || (n >= 1 && s[0] != cases[i].a) || (n == 2 && s[1] != cases[i].b))
            fail_msg("U+%04X: %d septets %02x %02x", cases[i].cp, n, s[0], s[1]);
    }
}

static void test_gsm_boundary_160_161(void **state)
{
    char *t = repeat("", "a", 160, "");
    otp_sms_parts *p = split(t, false);
    assert_int_equal(p->n, 1);
    assert_int_equal(p->part[0].len, 160);
    free(p);
    free(t);

    t = repeat("", "a", 161, "");
    p = split(t, false);
    assert_int_equal(p->n, 2);
    assert_true(p->udh);
    const uint8_t udh1[] = {0x05, 0x00, 0x03, 0x2A, 0x02, 0x01};
    const uint8_t udh2[] = {0x05, 0x00, 0x03, 0x2A, 0x02, 0x02};
    assert_memory_equal(p->part[0].data, udh1, 6);
    assert_memory_equal(p->part[1].data, udh2, 6);
    assert_int_equal(p->part[0].len, 6 + 153);
    assert_int_equal(p->part[1].len, 6 + 8);
    free(p);
    free(t);
}

/* 152 septets then €: the escape pair would straddle the cut, so it moves whole. */
static void test_escape_pair_not_split(void **state)
{
    char *t = repeat("", "a", 152, EURO "bbbbbbbbbb");
    otp_sms_parts *p = split(t, false);
    assert_int_equal(p->n, 2);
    assert_int_equal(p->part[0].len, 6 + 152);
    assert_int_equal(p->part[0].data[6 + 151], 'a');
    assert_int_equal(p->part[1].data[6], 0x1B);
    assert_int_equal(p->part[1].data[7], 0x65);
    assert_int_equal(p->part[1].len, 6 + 2 + 10);
    free(p);
    free(t);
}

static void test_ucs2_hindi(void **state)
{
    otp_sms_parts *p = split("123 " HINDI_HA, false);
    assert_int_equal(p->data_coding, OTP_SMS_DC_UCS2);
    assert_int_equal(p->n, 1);
    const uint8_t want[] = {0, '1', 0, '2', 0, '3', 0, ' ', 0x09, 0x39};
    assert_int_equal(p->part[0].len, sizeof(want));
    assert_memory_equal(p->part[0].data, want, sizeof(want));
    free(p);

    char *t = repeat("", HINDI_HA, 70, "");
    p = split(t, false);
    assert_int_equal(p->n, 1);
    assert_int_equal(p->part[0].len, 140);
    free(p);
    free(t);
    t = repeat("", HINDI_HA, 71, "");
    p = split(t, false);
    assert_int_equal(p->n, 2);
    assert_int_equal(p->part[0].len, 6 + 134);
    assert_int_equal(p->part[1].len, 6 + 8);
    free(p);
    free(t);
}

static void test_surrogate_pair_not_split(void **state)
{
    char *t = repeat(HINDI_HA, "x", 65, EMOJI "yyyyyyyyyy"); /* 66 units, a pair at 66-67 */
    otp_sms_parts *p = split(t, false);
    assert_int_equal(p->n, 2);
    assert_int_equal(p->part[0].len, 6 + 66 * 2);
    assert_int_equal(p->part[1].data[6], 0xD8);
    assert_int_equal(p->part[1].data[7], 0x3D);
    assert_int_equal(p->part[1].data[8], 0xDE);
    assert_int_equal(p->part[1].data[9], 0x00);
    free(p);
    free(t);
}

static void test_force_ucs2(void **state)
{
    otp_sms_parts *p = split("ab", true);
    assert_int_equal(p->data_coding, OTP_SMS_DC_UCS2);
    assert_int_equal(p->part[0].len, 4);
    free(p);
}

static void test_errors(void **state)
{
    otp_sms_parts p;
    assert_int_equal(otp_sms_split("bad \xff", false, 1, &p), -1);
    assert_int_equal(otp_sms_split("", false, 1, &p), -1);
    assert_int_equal(otp_sms_split(NULL, false, 1, &p), -1);
    assert_int_equal(otp_sms_split("\xed\xa0\x80", false, 1, &p), -1); /* a UTF-8 surrogate */
    char *t = repeat("", "{", 2100, "");                               /* 4200 septets */
    assert_int_equal(otp_sms_split(t, false, 1, &p), -2);
    free(t);
}

/* The parts sent equal the segments charged, for texts around every boundary. */
static void check_agrees(const char *text)
{
    otp_sms_encoding enc;
    int segments = otp_sms_segments(text, &enc);
    otp_sms_parts *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    int r = otp_sms_split(text, false, 0, p);
    if (segments < 0) {
        assert_int_not_equal(r, 0);
    } else if (r != 0 || (int)p->n != segments ||
               (enc == OTP_SMS_UCS2) != (p->data_coding == OTP_SMS_DC_UCS2)) {
        fail_msg("%zu bytes: split %d into %zu parts dc %d; charged %d enc %d", strlen(text), r,
                 p->n, p->data_coding, segments, (int)enc);
    }
    free(p);
}

static void test_agrees_with_charging(void **state)
{
    const char *units[] = {"a", EURO, HINDI_HA, EMOJI, "{", "\xC3\x87"};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        for (int n = 1; n <= 320; n++) {
            char *t = repeat("", units[u], n, "");
            check_agrees(t);
            free(t);
            t = repeat("x", units[u], n, "z");
            check_agrees(t);
            free(t);
        }
    }
    /* Every code point of the BMP (but surrogates) on its own and after 159 GSM
     * characters: same alphabet decision and part count as the charge. */
    char buf[256];
    for (uint32_t cp = 1; cp < 0x10000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        char ch[5] = {0};
        if (cp < 0x80) {
            ch[0] = (char)cp;
        } else if (cp < 0x800) {
            ch[0] = (char)(0xC0 | (cp >> 6));
            ch[1] = (char)(0x80 | (cp & 0x3F));
        } else {
            ch[0] = (char)(0xE0 | (cp >> 12));
            ch[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            ch[2] = (char)(0x80 | (cp & 0x3F));
        }
        check_agrees(ch);
        memset(buf, 'a', 159);
        snprintf(buf + 159, sizeof(buf) - 159, "%s", ch);
        check_agrees(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gsm_single),
        cmocka_unit_test(test_gsm_table),
        cmocka_unit_test(test_gsm_boundary_160_161),
        cmocka_unit_test(test_escape_pair_not_split),
        cmocka_unit_test(test_ucs2_hindi),
        cmocka_unit_test(test_surrogate_pair_not_split),
        cmocka_unit_test(test_force_ucs2),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_agrees_with_charging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
