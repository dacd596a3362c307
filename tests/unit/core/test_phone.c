/* tests/unit/core/test_phone.c — E.164 parsing through libphonenumber, and masking.
 *
 * The expectations depend on libphonenumber's metadata; the numbers were chosen
 * from what the installed libphonenumber (8.12) accepts. Some are surprising:
 * +447911123456 is Guernsey (GG), not GB; +12015550123 is a valid US number.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/phone.h"
#include "core/phone_internal.h"

static void expect_ok(const char *in, const char *e164, const char *region, int cc)
{
    otp_phone p;

    memset(&p, 0x55, sizeof(p));
    otp_phone_result r = otp_phone_parse(in, &p);
    if (r != OTP_PHONE_OK)
        fail_msg("%s: result %d, want OK", in, (int)r);
    assert_string_equal(p.e164, e164);
    assert_string_equal(p.region, region);
    assert_int_equal(p.country_code, cc);
}

static void expect_fail(const char *in, otp_phone_result want)
{
    otp_phone p, before;

    memset(&p, 0x55, sizeof(p));
    before = p;
    otp_phone_result r = otp_phone_parse(in, &p);
    if (r != want)
        fail_msg("%s: result %d, want %d", in ? in : "(null)", (int)r, (int)want);
    assert_memory_equal(&p, &before, sizeof(p)); /* *ret only written on OK */
}

static void test_valid_indian_mobile(void **state)
{
    expect_ok("+919876543210", "+919876543210", "IN", 91);
}

static void test_valid_us_numbers(void **state)
{
    /* US numbers are FIXED_LINE_OR_MOBILE in libphonenumber, which can take SMS. */
    expect_ok("+14155552671", "+14155552671", "US", 1);
    expect_ok("+12015550123", "+12015550123", "US", 1);
}

static void test_plus1_is_more_than_one_country(void **state)
{
    expect_ok("+16135550123", "+16135550123", "CA", 1); /* Ottawa */
    expect_ok("+14165550123", "+14165550123", "CA", 1); /* Toronto */
}

static void test_uk_mobile_and_crown_dependencies(void **state)
{
    expect_ok("+447400123456", "+447400123456", "GB", 44);
    /* Same calling code, other regions: the region comes from libphonenumber. */
    expect_ok("+447911123456", "+447911123456", "GG", 44);
    expect_ok("+447624123456", "+447624123456", "IM", 44);
}

static void test_national_prefix_is_normalised_away(void **state)
{
    /* libphonenumber strips India's trunk "0" after the country code, so this
     * spelling maps to the same number (and the same rate-limit key) as
     * +919876543210. */
    expect_ok("+9109876543210", "+919876543210", "IN", 91);
}

static void test_fixed_line_is_not_mobile(void **state)
{
    expect_fail("+442071838750", OTP_PHONE_NOT_MOBILE); /* London landline */
    expect_fail("+441212345678", OTP_PHONE_NOT_MOBILE); /* Birmingham landline */
    expect_fail("+80012345678", OTP_PHONE_NOT_MOBILE);  /* international freephone */
}

static void test_bad_format(void **state)
{
    expect_fail(NULL, OTP_PHONE_BAD_FORMAT);
    expect_fail("", OTP_PHONE_BAD_FORMAT);
    expect_fail("+", OTP_PHONE_BAD_FORMAT);
    expect_fail("919876543210", OTP_PHONE_BAD_FORMAT);      /* no '+' */
    expect_fail("+91 9876543210", OTP_PHONE_BAD_FORMAT);    /* space */
    expect_fail("+91-98765-43210", OTP_PHONE_BAD_FORMAT);   /* dashes */
    expect_fail(" +919876543210", OTP_PHONE_BAD_FORMAT);    /* leading space */
    expect_fail("+919876543210 ", OTP_PHONE_BAD_FORMAT);    /* trailing space */
    expect_fail("+91987654321O", OTP_PHONE_BAD_FORMAT);     /* letter O */
    expect_fail("+1800FLOWERS", OTP_PHONE_BAD_FORMAT);      /* keypad letters */
    expect_fail("+123456", OTP_PHONE_BAD_FORMAT);           /* 6 digits */
    expect_fail("+1234567890123456", OTP_PHONE_BAD_FORMAT); /* 16 digits */
    expect_fail("+0919876543210", OTP_PHONE_BAD_FORMAT);    /* leading 0 */
    expect_fail("++919876543210", OTP_PHONE_BAD_FORMAT);
    expect_fail("00919876543210", OTP_PHONE_BAD_FORMAT);      /* international prefix */
    expect_fail("+91\xd9\xa9\xd9\xa8", OTP_PHONE_BAD_FORMAT); /* Arabic-Indic digits */
}

static void test_invalid_number(void **state)
{
    expect_fail("+1201555", OTP_PHONE_INVALID);         /* 7 digits: right format, too short */
    expect_fail("+910000000000", OTP_PHONE_INVALID);    /* no such Indian range */
    expect_fail("+447700900123", OTP_PHONE_INVALID);    /* Ofcom drama range */
    expect_fail("+999123456789", OTP_PHONE_INVALID);    /* unassigned calling code */
    expect_fail("+123456789012345", OTP_PHONE_INVALID); /* 15 digits, nonsense */
}

static void test_boundary_lengths_reach_libphonenumber(void **state)
{
    /* 7 and 15 digits pass the format check: any answer but BAD_FORMAT. */
    otp_phone p;
    assert_int_not_equal(otp_phone_parse("+1234567", &p), OTP_PHONE_BAD_FORMAT);
    assert_int_not_equal(otp_phone_parse("+123456789012345", &p), OTP_PHONE_BAD_FORMAT);
}

static void expect_mask(const char *in, const char *want)
{
    char out[OTP_PHONE_MASK_SIZE];
    memset(out, 'x', sizeof(out));
    otp_phone_mask(in, out);
    assert_string_equal(out, want);
}

static void test_mask(void **state)
{
    expect_mask("+919876543210", "+91******3210");
    expect_mask("+14155552671", "+14*****2671");
    expect_mask("+1234567", "+12*4567");
    expect_mask("+123456789012345", "+12*********2345");
    expect_mask("+123456", "+***");
    expect_mask("+", "+***");
    expect_mask("", "+***");
    expect_mask(NULL, "+***");
    /* Anything that is not strict E.164 is not echoed back at all. */
    expect_mask("+91 9876543210", "+***");
    expect_mask("+1234567890123456", "+***");
    expect_mask("<script>alert(1)</script>", "+***");
}

static void test_parse_errors_write_nothing(void **state)
{
    /* Library code does not log: inputs that make libphonenumber complain
     * internally (unknown calling code, too short, not a number) must leave
     * stdout and stderr untouched. */
    static const char *const inputs[] = {"+999123456789", "+1201555", "+123456789012345",
                                         "+80012345678", "+1"};
    FILE *cap = tmpfile();
    int saved_out, saved_err;
    long written;

    assert_non_null(cap);
    fflush(stdout);
    fflush(stderr);
    saved_out = dup(STDOUT_FILENO);
    saved_err = dup(STDERR_FILENO);
    assert_true(saved_out >= 0 && saved_err >= 0);
    dup2(fileno(cap), STDOUT_FILENO);
    dup2(fileno(cap), STDERR_FILENO);
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        otp_phone p;
        (void)otp_phone_parse(inputs[i], &p);
    }
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    fseek(cap, 0, SEEK_END);
    written = ftell(cap);
    fclose(cap);
    assert_int_equal(written, 0);
}

#define THREADS 8
#define ROUNDS 300

static void *parse_many(void *arg)
{
    static const struct {
        const char *in, *region;
        otp_phone_result r;
    } cases[] = {
        {"+919876543210", "IN", OTP_PHONE_OK},      {"+14155552671", "US", OTP_PHONE_OK},
        {"+16135550123", "CA", OTP_PHONE_OK},       {"+447400123456", "GB", OTP_PHONE_OK},
        {"+447911123456", "GG", OTP_PHONE_OK},      {"+442071838750", NULL, OTP_PHONE_NOT_MOBILE},
        {"+910000000000", NULL, OTP_PHONE_INVALID}, {"+91 98", NULL, OTP_PHONE_BAD_FORMAT},
    };
    intptr_t failures = 0;
    int start = (int)(intptr_t)arg;

    for (int i = 0; i < ROUNDS; i++) {
        size_t c = (size_t)(start + i) % (sizeof(cases) / sizeof(cases[0]));
        otp_phone p;
        otp_phone_result r = otp_phone_parse(cases[c].in, &p);
        if (r != cases[c].r || (r == OTP_PHONE_OK && (strcmp(p.region, cases[c].region) != 0 ||
                                                      strcmp(p.e164, cases[c].in) != 0)))
            failures++;
    }
    return (void *)failures;
}

static void test_parallel_parsing(void **state)
{
    /* All threads start at once so that the first calls race on the lazy
     * initialisation (singleton and logger) as well as on parsing; run under
     * ThreadSanitizer or helgrind to check for data races, here it checks that
     * every answer is right. */
    pthread_t t[THREADS];
    intptr_t failures = 0;

    for (intptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, parse_many, (void *)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *f;
        assert_int_equal(pthread_join(t[i], &f), 0);
        failures += (intptr_t)f;
    }
    assert_int_equal(failures, 0);
}

/* otp_phone_parse() builds Indian mobiles without libphonenumber's Parse() (a 3x
 * speed-up); it must agree with the Parse() path on every input. Random numbers
 * over every calling code 1..999 and lengths 7..15, plus mobile-looking ones of
 * the busiest codes, compared field by field. A simple LCG keeps the run
 * reproducible. */
static void test_fast_path_agrees_with_parse(void **state)
{
    (void)state;
    static const char *const busy[] = {"91",  "91",  "91", "916", "917",
                                       "918", "919", "1",  "44",  "52"};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int ok = 0;
    for (int i = 0; i < 30000; i++) {
        char in[32];
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int len = 7 + (int)((x >> 33) % 9);
        int pos;
        if (i % 2) {
            pos = snprintf(in, sizeof(in), "+%s", busy[(x >> 20) % 10]);
        } else {
            pos = snprintf(in, sizeof(in), "+%d", 1 + (int)((x >> 40) % 999));
        }
        while (pos < len + 1) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            in[pos++] = (char)('0' + (x >> 59) % 10);
        }
        in[pos] = '\0';
        otp_phone a, b;
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        otp_phone_result ra = otp_phone_parse(in, &a);
        otp_phone_result rb = otp_phone_parse_reference(in, &b);
        if (ra != rb)
            fail_msg("%s: fast path %d, Parse() path %d", in, ra, rb);
        if (ra == OTP_PHONE_OK) {
            ok++;
            assert_string_equal(a.e164, b.e164);
            assert_string_equal(a.region, b.region);
            assert_int_equal(a.country_code, b.country_code);
        }
    }
    assert_true(ok > 1000); /* the sample really exercised valid numbers */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* First, so that it exercises the lazy initialisation from many threads. */
        cmocka_unit_test(test_parallel_parsing),
        cmocka_unit_test(test_valid_indian_mobile),
        cmocka_unit_test(test_valid_us_numbers),
        cmocka_unit_test(test_plus1_is_more_than_one_country),
        cmocka_unit_test(test_uk_mobile_and_crown_dependencies),
        cmocka_unit_test(test_national_prefix_is_normalised_away),
        cmocka_unit_test(test_fixed_line_is_not_mobile),
        cmocka_unit_test(test_bad_format),
        cmocka_unit_test(test_invalid_number),
        cmocka_unit_test(test_boundary_lengths_reach_libphonenumber),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_parse_errors_write_nothing),
        cmocka_unit_test(test_fast_path_agrees_with_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
