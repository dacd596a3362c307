/* tests/unit/core/test_secrets.c — subkey derivation from the server secret. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "core/secrets.h"

static const uint8_t zero32[32];

static void test_derive_is_deterministic(void **state)
{
    uint8_t root[OTP_SECRET_LEN];
    otp_secrets a, b;

    for (int i = 0; i < OTP_SECRET_LEN; i++)
        root[i] = (uint8_t)(0xA0 + i);
    otp_secrets_derive(root, &a);
    otp_secrets_derive(root, &b);
    assert_memory_equal(a.code_key, b.code_key, 32);
    assert_memory_equal(a.box_key, b.box_key, 32);
    assert_memory_not_equal(a.code_key, zero32, 32);
    assert_memory_not_equal(a.box_key, zero32, 32);
}

static void test_derive_matches_crypto_kdf_contexts(void **state)
{
    /* Pins the contexts and ids: changing them would orphan every stored code
     * hash and sealed text of an existing installation. */
    uint8_t root[OTP_SECRET_LEN], want[32];
    otp_secrets s;

    randombytes_buf(root, sizeof(root));
    otp_secrets_derive(root, &s);
    crypto_kdf_derive_from_key(want, 32, 1, "otpdcode", root);
    assert_memory_equal(s.code_key, want, 32);
    crypto_kdf_derive_from_key(want, 32, 2, "otpd_box", root);
    assert_memory_equal(s.box_key, want, 32);
}

static void test_subkeys_differ_from_each_other_and_root(void **state)
{
    uint8_t root[OTP_SECRET_LEN];
    otp_secrets s;

    randombytes_buf(root, sizeof(root));
    otp_secrets_derive(root, &s);
    assert_memory_not_equal(s.code_key, s.box_key, 32);
    assert_memory_not_equal(s.code_key, root, 32);
    assert_memory_not_equal(s.box_key, root, 32);
}

static void test_different_roots_give_different_keys(void **state)
{
    uint8_t r1[OTP_SECRET_LEN] = {0}, r2[OTP_SECRET_LEN] = {0};
    otp_secrets a, b;

    r2[31] = 1;
    otp_secrets_derive(r1, &a);
    otp_secrets_derive(r2, &b);
    assert_memory_not_equal(a.code_key, b.code_key, 32);
    assert_memory_not_equal(a.box_key, b.box_key, 32);
}

/* The prepared code MAC is HMAC-SHA-256 keyed with code_key. */
static void test_code_mac_is_keyed_with_code_key(void **state)
{
    uint8_t root[OTP_SECRET_LEN] = {9}, got[32], want[32];
    static const char msg[] = "req_A:123456";
    otp_secrets s;

    otp_secrets_derive(root, &s);
    otp_code_hash(&s.code_mac, "req_A", "123456", got);
    crypto_auth_hmacsha256(want, (const unsigned char *)msg, strlen(msg), s.code_key);
    assert_memory_equal(got, want, 32);
}

static void test_wipe_zeroes_and_accepts_null(void **state)
{
    uint8_t root[OTP_SECRET_LEN] = {7};
    otp_secrets s;

    otp_secrets_derive(root, &s);
    otp_secrets_wipe(&s);
    assert_memory_equal(s.code_key, zero32, 32);
    assert_memory_equal(s.box_key, zero32, 32);
    static const otp_code_mac zero_mac;
    assert_memory_equal(&s.code_mac, &zero_mac, sizeof(zero_mac));
    otp_secrets_wipe(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derive_is_deterministic),
        cmocka_unit_test(test_derive_matches_crypto_kdf_contexts),
        cmocka_unit_test(test_subkeys_differ_from_each_other_and_root),
        cmocka_unit_test(test_different_roots_give_different_keys),
        cmocka_unit_test(test_code_mac_is_keyed_with_code_key),
        cmocka_unit_test(test_wipe_zeroes_and_accepts_null),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
