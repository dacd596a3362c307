/* tests/unit/core/test_money.c — paise formatting and parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/money.h"

static void check_format(int64_t paise, const char *want)
{
    char out[OTP_MONEY_SIZE];
    memset(out, 'x', sizeof(out));
    otp_money_format(paise, out);
    assert_string_equal(out, want);
}

static void test_format(void **state)
{
    check_format(0, "0.00");
    check_format(5, "0.05");
    check_format(10, "0.10");
    check_format(100, "1.00");
    check_format(123450, "1234.50");
    check_format(-25, "-0.25");
    check_format(-100, "-1.00");
    check_format(-123456, "-1234.56");
}

static void test_format_int64_extremes(void **state)
{
    check_format(INT64_MAX, "92233720368547758.07");
    check_format(INT64_MIN, "-92233720368547758.08");
    check_format(INT64_MIN + 1, "-92233720368547758.07");
}

static void check_parse(const char *s, int64_t want)
{
    int64_t v = 12345;
    if (otp_money_parse(s, &v) != 0)
        fail_msg("\"%s\" was rejected", s);
    assert_int_equal(v, want);
}

static void check_reject(const char *s)
{
    int64_t v = 12345;
    if (otp_money_parse(s, &v) != -1)
        fail_msg("\"%s\" was accepted", s ? s : "(null)");
    assert_int_equal(v, 12345); /* not written on failure */
}

static void test_parse_accepts(void **state)
{
    check_parse("100", 10000);
    check_parse("100.5", 10050);
    check_parse("100.50", 10050);
    check_parse("0.25", 25);
    check_parse("0.05", 5);
    check_parse("0", 0);
    check_parse("-0", 0);
    check_parse("-0.25", -25);
    check_parse("-1234.50", -123450);
    check_parse("007.5", 750);
}

static void test_parse_rejects_malformed(void **state)
{
    check_reject(NULL);
    check_reject("");
    check_reject("-");
    check_reject("1.234");
    check_reject("abc");
    check_reject("1e3");
    check_reject("1.");
    check_reject(".5");
    check_reject("-.5");
    check_reject("+1");
    check_reject(" 1");
    check_reject("1 ");
    check_reject("1,00");
    check_reject("1.2.3");
    check_reject("--1");
    check_reject("1.-5");
    check_reject("0x10");
}

static void test_parse_limit_and_overflow(void **state)
{
    /* The limit is 10^15 paise (10^13 rupees) either way. */
    check_parse("10000000000000", INT64_C(1000000000000000));
    check_parse("-10000000000000.00", -INT64_C(1000000000000000));
    check_parse("9999999999999.99", INT64_C(999999999999999));
    check_reject("10000000000000.01");
    check_reject("-10000000000000.01");
    check_reject("92233720368547758.07"); /* INT64_MAX paise */
    check_reject("99999999999999999999999999999999");
    check_reject("-99999999999999999999999999999999.99");
    check_parse("00000000000000000000000000000001", 100); /* zeros cannot overflow */
}

static void test_format_parse_round_trip(void **state)
{
    static const int64_t values[] = {0,
                                     1,
                                     9,
                                     10,
                                     99,
                                     100,
                                     101,
                                     123456789,
                                     -1,
                                     -99,
                                     -100,
                                     INT64_C(1000000000000000),
                                     -INT64_C(1000000000000000)};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char buf[OTP_MONEY_SIZE];
        int64_t back = 0;
        otp_money_format(values[i], buf);
        assert_int_equal(otp_money_parse(buf, &back), 0);
        assert_int_equal(back, values[i]);
    }
}

static void test_reference(void **state)
{
    (void)state;
    assert_true(otp_money_reference_valid("INV-2026/11-042"));
    assert_true(otp_money_reference_valid("a"));
    assert_true(otp_money_reference_valid("A-z_0.9:/#"));
    char max[OTP_MONEY_REFERENCE_MAX + 2];
    memset(max, 'r', sizeof(max));
    max[OTP_MONEY_REFERENCE_MAX] = '\0';
    assert_true(otp_money_reference_valid(max));
    max[OTP_MONEY_REFERENCE_MAX] = 'r';
    max[OTP_MONEY_REFERENCE_MAX + 1] = '\0';
    assert_false(otp_money_reference_valid(max));
    assert_false(otp_money_reference_valid(""));
    assert_false(otp_money_reference_valid(NULL));
    assert_false(otp_money_reference_valid("has space"));
    assert_false(otp_money_reference_valid("quote\""));
    assert_false(otp_money_reference_valid("caf\xc3\xa9"));
    assert_false(otp_money_reference_valid("tab\t"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_int64_extremes),
        cmocka_unit_test(test_parse_accepts),
        cmocka_unit_test(test_parse_rejects_malformed),
        cmocka_unit_test(test_parse_limit_and_overflow),
        cmocka_unit_test(test_format_parse_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
