/* tests/unit/core/test_seal.c — AEAD sealing of outbox texts. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "core/seal.h"

static const char text[] = "123456 is your Acme verification code. Do not share it.";
#define TEXT_LEN (sizeof(text) - 1)
#define SEALED_LEN (TEXT_LEN + OTP_SEAL_OVERHEAD)

static uint8_t key[32];

static int setup(void **state)
{
    randombytes_buf(key, sizeof(key));
    return 0;
}

static void test_round_trip(void **state)
{
    uint8_t sealed[SEALED_LEN];
    char out[TEXT_LEN + 1];

    memset(out, 'x', sizeof(out));
    otp_seal(key, "msg_1", text, TEXT_LEN, sealed);
    assert_int_equal(otp_unseal(key, "msg_1", sealed, SEALED_LEN, out), 0);
    assert_string_equal(out, text);
}

static void test_round_trip_empty(void **state)
{
    uint8_t sealed[OTP_SEAL_OVERHEAD];
    char out[1] = {'x'};

    otp_seal(key, "msg_1", "", 0, sealed);
    assert_int_equal(otp_unseal(key, "msg_1", sealed, sizeof(sealed), out), 0);
    assert_int_equal(out[0], '\0');
}

static void test_ciphertext_hides_text_and_nonce_is_fresh(void **state)
{
    uint8_t a[SEALED_LEN], b[SEALED_LEN];

    otp_seal(key, "msg_1", text, TEXT_LEN, a);
    otp_seal(key, "msg_1", text, TEXT_LEN, b);
    assert_memory_not_equal(a, b, 24);                 /* random nonce */
    assert_memory_not_equal(a + 24, b + 24, TEXT_LEN); /* hence different ciphertext */
    assert_null(memmem(a, sizeof(a), "123456", 6));
}

static void test_tamper_any_byte_fails(void **state)
{
    uint8_t sealed[SEALED_LEN];
    char out[TEXT_LEN + 1];

    otp_seal(key, "msg_1", text, TEXT_LEN, sealed);
    /* Every byte matters: nonce, ciphertext and tag. */
    for (size_t i = 0; i < SEALED_LEN; i++) {
        sealed[i] ^= 0x01;
        assert_int_equal(otp_unseal(key, "msg_1", sealed, SEALED_LEN, out), -1);
        sealed[i] ^= 0x01;
    }
    assert_int_equal(otp_unseal(key, "msg_1", sealed, SEALED_LEN, out), 0);
}

static void test_wrong_ad_fails(void **state)
{
    uint8_t sealed[SEALED_LEN];
    char out[TEXT_LEN + 1];

    otp_seal(key, "msg_1", text, TEXT_LEN, sealed);
    assert_int_equal(otp_unseal(key, "msg_2", sealed, SEALED_LEN, out), -1);
    assert_int_equal(otp_unseal(key, "", sealed, SEALED_LEN, out), -1);
}

static void test_wrong_key_fails(void **state)
{
    uint8_t sealed[SEALED_LEN], other[32];
    char out[TEXT_LEN + 1];

    memcpy(other, key, sizeof(other));
    other[0] ^= 0x80;
    otp_seal(key, "msg_1", text, TEXT_LEN, sealed);
    assert_int_equal(otp_unseal(other, "msg_1", sealed, SEALED_LEN, out), -1);
}

static void test_short_or_truncated_blob_fails(void **state)
{
    uint8_t sealed[SEALED_LEN];
    char out[TEXT_LEN + 1];

    otp_seal(key, "msg_1", text, TEXT_LEN, sealed);
    assert_int_equal(otp_unseal(key, "msg_1", sealed, 0, out), -1);
    assert_int_equal(otp_unseal(key, "msg_1", sealed, OTP_SEAL_OVERHEAD - 1, out), -1);
    assert_int_equal(otp_unseal(key, "msg_1", sealed, SEALED_LEN - 1, out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_round_trip, setup),
        cmocka_unit_test_setup(test_round_trip_empty, setup),
        cmocka_unit_test_setup(test_ciphertext_hides_text_and_nonce_is_fresh, setup),
        cmocka_unit_test_setup(test_tamper_any_byte_fails, setup),
        cmocka_unit_test_setup(test_wrong_ad_fails, setup),
        cmocka_unit_test_setup(test_wrong_key_fails, setup),
        cmocka_unit_test_setup(test_short_or_truncated_blob_fails, setup),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
