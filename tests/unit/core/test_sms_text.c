/* tests/unit/core/test_sms_text.c — SMS segment counting and the default text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sms_text.h"

#define HINDI_HA "\xE0\xA4\xB9"    /* U+0939 'ह', one UTF-16 unit, not GSM */
#define EMOJI "\xF0\x9F\x98\x80"   /* U+1F600, a surrogate pair in UTF-16 */
#define EURO "\xE2\x82\xAC"        /* U+20AC, GSM extension table */
#define C_CEDILLA_SMALL "\xC3\xA7" /* U+00E7 'ç': not GSM (only 'Ç' is) */

/* Builds s = prefix followed by n copies of unit (heap; caller frees). */
static char *build(const char *prefix, const char *unit, int n, const char *suffix)
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

static void expect(const char *prefix, const char *unit, int n, const char *suffix, int segments,
                   otp_sms_encoding enc)
{
    char *s = build(prefix, unit, n, suffix);
    otp_sms_encoding got = (otp_sms_encoding)-1;
    int r = otp_sms_segments(s, &got);

    if (r != segments || got != enc)
        fail_msg("%s x %d (prefix %zu bytes, suffix %zu bytes): %d segments enc %d, want %d enc %d",
                 unit, n, strlen(prefix), strlen(suffix), r, (int)got, segments, (int)enc);
    free(s);
}

static void test_empty_is_one_gsm_segment(void **state)
{
    otp_sms_encoding enc = OTP_SMS_UCS2;
    assert_int_equal(otp_sms_segments("", &enc), 1);
    assert_int_equal(enc, OTP_SMS_GSM7);
}

static void test_gsm_boundaries(void **state)
{
    expect("", "a", 1, "", 1, OTP_SMS_GSM7);
    expect("", "a", 160, "", 1, OTP_SMS_GSM7);
    expect("", "a", 161, "", 2, OTP_SMS_GSM7);
    expect("", "a", 306, "", 2, OTP_SMS_GSM7);
    expect("", "a", 307, "", 3, OTP_SMS_GSM7);
    expect("", "a", 459, "", 3, OTP_SMS_GSM7);
    expect("", "a", 460, "", 4, OTP_SMS_GSM7);
}

static void test_extension_chars_count_two(void **state)
{
    expect("", "{", 80, "", 1, OTP_SMS_GSM7);
    expect("", "{", 81, "", 2, OTP_SMS_GSM7);
    expect("", EURO, 80, "", 1, OTP_SMS_GSM7);
    expect("", EURO, 81, "", 2, OTP_SMS_GSM7);
    expect("a", "{", 80, "", 2, OTP_SMS_GSM7); /* 161 septets */
    /* All ten extension characters: 20 septets. */
    expect("^{}\\[]~|" EURO "\f", "a", 140, "", 1, OTP_SMS_GSM7);
    expect("^{}\\[]~|" EURO "\f", "a", 141, "", 2, OTP_SMS_GSM7);
}

static void test_whole_gsm_basic_table_is_one_septet_each(void **state)
{
    /* The 127 characters of the GSM 03.38 basic table (128 positions less ESC),
     * written out from the standard's table, not from sms_text.c's. */
    static const char basic[] =
        "@\xC2\xA3$\xC2\xA5\xC3\xA8\xC3\xA9\xC3\xB9\xC3\xAC\xC3\xB2\xC3\x87\n\xC3\x98\xC3\xB8\r"
        "\xC3\x85\xC3\xA5" /* 0x00-0x0F */
        "\xCE\x94_\xCE\xA6\xCE\x93\xCE\x9B\xCE\xA9\xCE\xA0\xCE\xA8\xCE\xA3\xCE\x98\xCE\x9E"
        "\xC3\x86\xC3\xA6\xC3\x9F\xC3\x89"         /* 0x10-0x1F */
        " !\"#\xC2\xA4%&'()*+,-./0123456789:;<=>?" /* 0x20-0x3F */
        "\xC2\xA1"
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ\xC3\x84\xC3\x96\xC3\x91\xC3\x9C\xC2\xA7" /* 0x40-0x5F */
        "\xC2\xBF"
        "abcdefghijklmnopqrstuvwxyz\xC3\xA4\xC3\xB6\xC3\xB1\xC3\xBC\xC3\xA0"; /* 0x60-0x7F */

    expect(basic, "a", 33, "", 1, OTP_SMS_GSM7); /* 160 septets */
    expect(basic, "a", 34, "", 2, OTP_SMS_GSM7); /* 161 */
}

static void test_one_non_gsm_char_switches_to_ucs2(void **state)
{
    expect(HINDI_HA, "a", 69, "", 1, OTP_SMS_UCS2);  /* 70 units */
    expect(HINDI_HA, "a", 70, "", 2, OTP_SMS_UCS2);  /* 71 */
    expect(HINDI_HA, "a", 133, "", 2, OTP_SMS_UCS2); /* 134 */
    expect(HINDI_HA, "a", 134, "", 3, OTP_SMS_UCS2); /* 135 */
    expect("", HINDI_HA, 70, "", 1, OTP_SMS_UCS2);
    expect("", HINDI_HA, 71, "", 2, OTP_SMS_UCS2);
    /* The non-GSM character last, after a GSM-only prefix. */
    expect("", "a", 69, HINDI_HA, 1, OTP_SMS_UCS2);
    /* In UCS-2, '{' is one unit like any other BMP character. */
    expect(HINDI_HA, "{", 69, "", 1, OTP_SMS_UCS2);
    /* Characters that look GSM but are not. */
    expect("", "a", 10, "`", 1, OTP_SMS_UCS2);
    expect("", "a", 10, "\t", 1, OTP_SMS_UCS2);
    expect("", "a", 10, C_CEDILLA_SMALL, 1, OTP_SMS_UCS2);
}

static void test_emoji_counts_two_units(void **state)
{
    expect("", EMOJI, 35, "", 1, OTP_SMS_UCS2);  /* 70 units */
    expect("", EMOJI, 36, "", 2, OTP_SMS_UCS2);  /* 72 */
    expect(EMOJI, "a", 68, "", 1, OTP_SMS_UCS2); /* 70 */
    expect(EMOJI, "a", 69, "", 2, OTP_SMS_UCS2); /* 71 */
}

static void test_parts_never_split_escapes_or_surrogate_pairs(void **state)
{
    /* 152 'a' + 77 '{' = 306 septets, but the first '{' cannot share part one's
     * last septet: parts of 152, 152 (76 '{') and 2. */
    char *s = build("", "a", 152, "");
    char *t = build(s, "{", 77, "");
    otp_sms_encoding enc;
    assert_int_equal(otp_sms_segments(t, &enc), 3);
    assert_int_equal(enc, OTP_SMS_GSM7);
    free(t);
    /* 153 'a' + 76 '{' = 305 septets packs cleanly into 2. */
    t = build(s, "a", 1, "");
    free(s);
    s = build(t, "{", 76, "");
    assert_int_equal(otp_sms_segments(s, &enc), 2);
    free(s);
    free(t);
    /* 66 'a' + emoji + 66 'a' = 134 units, but the pair moves to part two. */
    s = build("", "a", 66, EMOJI);
    t = build(s, "a", 66, "");
    assert_int_equal(otp_sms_segments(t, &enc), 3);
    assert_int_equal(enc, OTP_SMS_UCS2);
    free(s);
    free(t);
}

static void test_invalid_utf8_rejected(void **state)
{
    static const char *const bad[] = {
        "\x80",         /* stray continuation byte */
        "abc\xBF",      /* stray continuation at the end */
        "\xC3",         /* truncated 2-byte */
        "\xE0\xA4",     /* truncated 3-byte */
        "\xF0\x9F\x98", /* truncated 4-byte */
        "\xC3"
        "a",                    /* continuation missing */
        "\xC0\xAF",             /* overlong '/' */
        "\xC1\xBF",             /* overlong */
        "\xE0\x80\xAF",         /* overlong 3-byte */
        "\xF0\x80\x80\xAF",     /* overlong 4-byte */
        "\xED\xA0\x80",         /* UTF-16 surrogate U+D800 */
        "\xED\xBF\xBF",         /* surrogate U+DFFF */
        "\xF4\x90\x80\x80",     /* U+110000 */
        "\xF8\x88\x80\x80\x80", /* 5-byte form */
        "\xFE",
        "\xFF",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        otp_sms_encoding enc = (otp_sms_encoding)42;
        if (otp_sms_segments(bad[i], &enc) != -1)
            fail_msg("invalid UTF-8 #%zu accepted", i);
        assert_int_equal(enc, 42); /* not written on failure */
    }
    assert_int_equal(otp_sms_segments(NULL, NULL), -1);
    /* The edges of the valid ranges are accepted. */
    assert_int_equal(otp_sms_segments("\xED\x9F\xBF\xEE\x80\x80\xF4\x8F\xBF\xBF\xC2\x80", NULL), 1);
}

static void test_render_default_exact_text(void **state)
{
    char out[OTP_SMS_TEXT_MAX + 1];
    const char *want =
        "123456 is your Acme verification code. It expires in 5 minutes. Do not share it.";
    int n = otp_sms_render_default("123456", "Acme", 5, NULL, NULL, out, sizeof(out));

    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void test_render_default_with_app_hash_and_webotp(void **state)
{
    char out[OTP_SMS_TEXT_MAX + 1];
    const char *base =
        "123456 is your Acme verification code. It expires in 10 minutes. Do not share it.";
    char want[512];
    int n;

    n = otp_sms_render_default("123456", "Acme", 10, "FA+9qCX9VSu", NULL, out, sizeof(out));
    snprintf(want, sizeof(want), "%s\nFA+9qCX9VSu", base);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));

    n = otp_sms_render_default("123456", "Acme", 10, NULL, "example.com", out, sizeof(out));
    snprintf(want, sizeof(want), "%s\n@example.com #123456", base);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));

    /* Both: the app hash line comes first, the WebOTP line last (WebOTP requires
     * it to be the last line). */
    n = otp_sms_render_default("123456", "Acme", 10, "FA+9qCX9VSu", "example.com", out,
                               sizeof(out));
    snprintf(want, sizeof(want), "%s\nFA+9qCX9VSu\n@example.com #123456", base);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_render_default_overflow(void **state)
{
    const char *want =
        "1234 is your X verification code. It expires in 1 minutes. Do not share it.";
    size_t len = strlen(want);
    char out[256];

    /* Exactly fits: len + 1 bytes. */
    assert_int_equal(otp_sms_render_default("1234", "X", 1, NULL, NULL, out, len + 1), (int)len);
    assert_string_equal(out, want);
    /* One byte short of each part. */
    assert_int_equal(otp_sms_render_default("1234", "X", 1, NULL, NULL, out, len), -1);
    assert_int_equal(otp_sms_render_default("1234", "X", 1, "h", NULL, out, len + 2), -1);
    assert_int_equal(otp_sms_render_default("1234", "X", 1, "h", NULL, out, len + 3), (int)len + 2);
    assert_int_equal(otp_sms_render_default("1234", "X", 1, NULL, "d.io", out, len + 12), -1);
    assert_int_equal(otp_sms_render_default("1234", "X", 1, NULL, "d.io", out, len + 13),
                     (int)len + 12);
    assert_int_equal(otp_sms_render_default("1234", "X", 1, NULL, NULL, out, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_is_one_gsm_segment),
        cmocka_unit_test(test_gsm_boundaries),
        cmocka_unit_test(test_extension_chars_count_two),
        cmocka_unit_test(test_whole_gsm_basic_table_is_one_septet_each),
        cmocka_unit_test(test_one_non_gsm_char_switches_to_ucs2),
        cmocka_unit_test(test_emoji_counts_two_units),
        cmocka_unit_test(test_parts_never_split_escapes_or_surrogate_pairs),
        cmocka_unit_test(test_invalid_utf8_rejected),
        cmocka_unit_test(test_render_default_exact_text),
        cmocka_unit_test(test_render_default_with_app_hash_and_webotp),
        cmocka_unit_test(test_render_default_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
