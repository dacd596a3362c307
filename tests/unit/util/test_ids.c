/* tests/unit/util/test_ids.c — public ids and base62. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "util/ids.h"

static bool b62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void expect_encode(uint64_t v, size_t width, const char *want)
{
    char out[16];
    memset(out, 'x', sizeof(out));
    otp_base62_encode_fixed(v, out, width);
    assert_memory_equal(out, want, width);
    assert_int_equal(out[width], 'x'); /* no NUL, nothing past width */
}

static void test_base62_encode_fixed(void **state)
{
    expect_encode(0, 4, "0000");
    expect_encode(9, 2, "09");
    expect_encode(10, 2, "0A");
    expect_encode(35, 2, "0Z");
    expect_encode(36, 2, "0a");
    expect_encode(61, 2, "0z");
    expect_encode(62, 2, "10");
    expect_encode(62 * 62 - 1, 2, "zz");
    expect_encode(62 * 62, 2, "00"); /* too wide: keeps the low digits */
    /* 2^64 - 1 = "LygHa16AHYF" in base62 (11 digits), computed with python3. */
    expect_encode(UINT64_MAX, 11, "LygHa16AHYF");
}

static void test_base62_random_alphabet_and_spread(void **state)
{
    char buf[62 * 200 + 1];
    int seen[128] = {0};

    buf[sizeof(buf) - 1] = 'x';
    otp_base62_random(buf, sizeof(buf) - 1);
    assert_int_equal(buf[sizeof(buf) - 1], 'x');
    for (size_t i = 0; i + 1 < sizeof(buf); i++) {
        assert_true(b62(buf[i]));
        seen[(unsigned char)buf[i]]++;
    }
    /* 12,400 draws: each character is expected 200 times; P(one is missing)
     * is 62 * (61/62)^12400 < 1e-85. */
    for (int c = 0; c < 128; c++)
        if (b62((char)c))
            assert_true(seen[c] > 0);
}

/* Every character equally likely: 124,000 draws, 2,000 expected each (sd ~44);
 * a modulo bias (256 = 4 * 62 + 8) would give 8 of them ~2,500. */
static void test_base62_random_is_uniform(void **state)
{
    enum { PER = 2000, N = 62 * PER };
    static char buf[N];
    int seen[128] = {0};

    otp_base62_random(buf, N);
    for (size_t i = 0; i < N; i++)
        seen[(unsigned char)buf[i]]++;
    for (int c = 0; c < 128; c++)
        if (b62((char)c)) {
            assert_true(seen[c] > PER - 300);
            assert_true(seen[c] < PER + 300);
        }
}

static void test_id_new_layout(void **state)
{
    char id[OTP_ID_SIZE + 1];

    memset(id, 'x', sizeof(id));
    otp_id_new("req_", INT64_C(1700000000000), id);
    assert_int_equal(strlen(id), OTP_ID_LEN);
    assert_int_equal(id[OTP_ID_SIZE], 'x');
    assert_memory_equal(id, "req_", 4);
    /* 1700000000000 in 9 base62 digits = "00Tvcokgi" (python3). */
    assert_memory_equal(id + 4, "00Tvcokgi", 9);
    for (int i = 4; i < OTP_ID_LEN; i++)
        assert_true(b62(id[i]));
    assert_true(otp_id_valid(id, "req_"));
}

static void test_ids_sort_by_time_and_differ(void **state)
{
    char a[OTP_ID_SIZE], b[OTP_ID_SIZE], c[OTP_ID_SIZE];

    otp_id_new("msg_", 1000, a);
    otp_id_new("msg_", 1001, b);
    otp_id_new("msg_", 1001, c);
    assert_true(memcmp(a, b, 13) < 0);
    assert_true(strcmp(a, b) < 0);
    assert_string_not_equal(b, c); /* same ms, different random part */
    /* Base62's alphabet is in ASCII order, so byte order is numeric order even
     * across a digit-to-letter boundary. */
    otp_id_new("msg_", 9, a);
    otp_id_new("msg_", 10, b);
    assert_true(strcmp(a, b) < 0);
    otp_id_new("msg_", 35, a);
    otp_id_new("msg_", 36, b);
    assert_true(strcmp(a, b) < 0);
}

static void test_id_valid(void **state)
{
    char id[OTP_ID_SIZE];

    otp_id_new("acc_", 42, id);
    assert_true(otp_id_valid(id, "acc_"));
    assert_false(otp_id_valid(id, "key_"));
    assert_false(otp_id_valid(NULL, "acc_"));
    assert_false(otp_id_valid("", "acc_"));
    assert_false(otp_id_valid("acc_", "acc_"));
    assert_true(otp_id_valid("acc_0000000000000000000000", "acc_"));
    assert_false(otp_id_valid("acc_000000000000000000000", "acc_"));   /* 25 */
    assert_false(otp_id_valid("acc_00000000000000000000000", "acc_")); /* 27 */
    assert_false(otp_id_valid("acc_00000000000-0000000000", "acc_"));
    assert_false(otp_id_valid("acc_000000000000000000000_", "acc_"));
    assert_false(otp_id_valid("acc_0000000000000000000 00", "acc_"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base62_encode_fixed),
        cmocka_unit_test(test_base62_random_alphabet_and_spread),
        cmocka_unit_test(test_base62_random_is_uniform),
        cmocka_unit_test(test_id_new_layout),
        cmocka_unit_test(test_ids_sort_by_time_and_differ),
        cmocka_unit_test(test_id_valid),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
