/* tests/unit/core/test_apikey.c — API and admin key format, checksum and hash. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "core/apikey.h"

/* Built by hand in python3 from the format in apikey.h, independently of
 * apikey.c: body = prefix + 32 base62 chars, checksum = base62 (6 digits, most
 * significant first, alphabet 0-9A-Za-z) of int.from_bytes(sha256(body)[:4], 'big'). */
static const char live_vector[] = "otpd_live_0123456789ABCDEFGHIJKLMNOPQRSTUV0gqkPg";
static const char test_vector[] = "otpd_test_0123456789ABCDEFGHIJKLMNOPQRSTUV2WzXMc";
static const char admin_vector[] = "otpd_admin_0123456789ABCDEFGHIJKLMNOPQRSTUV3MfB7w";

static bool b62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void test_generated_keys_pass_check_with_prefix_and_length(void **state)
{
    for (int i = 0; i < 1000; i++) {
        bool want_test = i & 1, is_test = !want_test;
        char key[OTP_APIKEY_SIZE + 1];

        memset(key, 'x', sizeof(key));
        otp_apikey_generate(want_test, key);
        assert_int_equal(strlen(key), OTP_APIKEY_LEN);
        assert_int_equal(key[OTP_APIKEY_SIZE], 'x');
        assert_memory_equal(key, want_test ? "otpd_test_" : "otpd_live_", 10);
        for (int j = 10; j < OTP_APIKEY_LEN; j++)
            assert_true(b62(key[j]));
        assert_true(otp_apikey_check(key, &is_test));
        assert_int_equal(is_test, want_test);
    }
}

static void test_generated_keys_differ(void **state)
{
    char a[OTP_APIKEY_SIZE], b[OTP_APIKEY_SIZE];

    otp_apikey_generate(false, a);
    otp_apikey_generate(false, b);
    assert_string_not_equal(a, b);
}

static void test_checksum_matches_independent_vector(void **state)
{
    bool is_test = true;

    assert_true(otp_apikey_check(live_vector, &is_test));
    assert_false(is_test);
    assert_true(otp_apikey_check(test_vector, &is_test));
    assert_true(is_test);
    assert_true(otp_apikey_check(live_vector, NULL));
}

static void test_one_char_change_fails_checksum(void **state)
{
    /* Every position after the prefix, every other base62 character. A 32-bit
     * checksum could in principle let one variant through (2^-32 each), so this
     * runs on the fixed vector, for which python3 confirmed that none of the
     * 2,318 variants has a matching checksum. */
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    char key[OTP_APIKEY_SIZE];
    int rejected = 0, tried = 0;

    memcpy(key, live_vector, sizeof(key));
    for (int pos = 10; pos < OTP_APIKEY_LEN; pos++) {
        char orig = key[pos];
        for (const char *c = alphabet; *c; c++) {
            if (*c == orig)
                continue;
            key[pos] = *c;
            tried++;
            rejected += !otp_apikey_check(key, NULL);
        }
        key[pos] = orig;
    }
    assert_int_equal(tried, 2318);
    assert_int_equal(rejected, tried);
    assert_true(otp_apikey_check(key, NULL));
}

static void test_test_vs_live_prefix_is_covered_by_checksum(void **state)
{
    /* Turning a live key into a test key (or back) by editing the prefix must
     * not produce a valid key. */
    char key[OTP_APIKEY_SIZE];

    memcpy(key, live_vector, sizeof(key));
    memcpy(key, "otpd_test_", 10);
    assert_false(otp_apikey_check(key, NULL));
}

static void test_malformed_keys_rejected(void **state)
{
    char key[OTP_APIKEY_SIZE + 1];
    bool is_test = true;

    assert_false(otp_apikey_check(NULL, &is_test));
    assert_false(otp_apikey_check("", &is_test));
    assert_false(otp_apikey_check("otpd_live_", &is_test));
    memcpy(key, live_vector, sizeof(live_vector));
    key[OTP_APIKEY_LEN - 1] = '\0'; /* too short */
    assert_false(otp_apikey_check(key, &is_test));
    memcpy(key, live_vector, sizeof(live_vector));
    key[OTP_APIKEY_LEN] = 'A'; /* too long */
    key[OTP_APIKEY_LEN + 1] = '\0';
    assert_false(otp_apikey_check(key, &is_test));
    memcpy(key, live_vector, sizeof(live_vector));
    memcpy(key, "OTPD_LIVE_", 10);
    assert_false(otp_apikey_check(key, &is_test));
    memcpy(key, live_vector, sizeof(live_vector));
    memcpy(key, "otpd_prod_", 10);
    assert_false(otp_apikey_check(key, &is_test));
    memcpy(key, live_vector, sizeof(live_vector));
    key[20] = '-';
    assert_false(otp_apikey_check(key, &is_test));
    assert_true(is_test); /* never written on failure */
}

/* Admin keys: their own prefix, one character longer; never an API key, and
 * no API key is an admin key. */
static void test_admin_keys(void **state)
{
    (void)state;
    assert_true(otp_adminkey_check(admin_vector));
    assert_false(otp_apikey_check(admin_vector, NULL));
    assert_false(otp_adminkey_check(live_vector));
    assert_false(otp_adminkey_check(test_vector));
    assert_false(otp_adminkey_check(NULL));
    for (int i = 0; i < 200; i++) {
        char key[OTP_ADMINKEY_SIZE + 1];
        memset(key, 'x', sizeof(key));
        otp_adminkey_generate(key);
        assert_int_equal(strlen(key), OTP_ADMINKEY_LEN);
        assert_int_equal(key[OTP_ADMINKEY_SIZE], 'x');
        assert_memory_equal(key, "otpd_admin_", 11);
        for (int j = 11; j < OTP_ADMINKEY_LEN; j++)
            assert_true(b62(key[j]));
        assert_true(otp_adminkey_check(key));
        assert_false(otp_apikey_check(key, NULL));
        /* any one character changed, cut or added fails */
        char bad[OTP_ADMINKEY_SIZE + 1];
        memcpy(bad, key, OTP_ADMINKEY_SIZE);
        bad[20] = bad[20] == 'a' ? 'b' : 'a';
        assert_false(otp_adminkey_check(bad));
        memcpy(bad, key, OTP_ADMINKEY_SIZE);
        bad[OTP_ADMINKEY_LEN - 1] = '\0';
        assert_false(otp_adminkey_check(bad));
        memcpy(bad, key, OTP_ADMINKEY_SIZE);
        bad[OTP_ADMINKEY_LEN] = 'a';
        bad[OTP_ADMINKEY_LEN + 1] = '\0';
        assert_false(otp_adminkey_check(bad));
    }
    /* the admin prefix with an API key's body and checksum */
    char mixed[OTP_ADMINKEY_SIZE];
    memcpy(mixed, "otpd_admin_", 11);
    memcpy(mixed + 11, live_vector + 10, OTP_APIKEY_LEN - 10 + 1);
    assert_false(otp_adminkey_check(mixed));
}

static void test_hash_is_sha256_of_key(void **state)
{
    /* python3 -c "import hashlib;
     * print(hashlib.sha256(b'otpd_live_0123456789ABCDEFGHIJKLMNOPQRSTUV0gqkPg').hexdigest())" */
    static const uint8_t expected[32] = {
        0xb6, 0x01, 0xd8, 0xf1, 0x74, 0x84, 0xef, 0x25, 0x21, 0x82, 0x36,
        0x0a, 0x05, 0x6a, 0x8b, 0xef, 0x99, 0x02, 0x4b, 0x90, 0xeb, 0x9d,
        0x3e, 0x7e, 0x86, 0x3d, 0x89, 0x2e, 0x98, 0x1a, 0x37, 0xbd,
    };
    uint8_t out[OTP_APIKEY_HASH_LEN];

    otp_apikey_hash(live_vector, out);
    assert_memory_equal(out, expected, sizeof(expected));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_keys_pass_check_with_prefix_and_length),
        cmocka_unit_test(test_generated_keys_differ),
        cmocka_unit_test(test_checksum_matches_independent_vector),
        cmocka_unit_test(test_one_char_change_fails_checksum),
        cmocka_unit_test(test_test_vs_live_prefix_is_covered_by_checksum),
        cmocka_unit_test(test_malformed_keys_rejected),
        cmocka_unit_test(test_admin_keys),
        cmocka_unit_test(test_hash_is_sha256_of_key),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
