/* tests/unit/core/test_otp_code.c — code drawing, hashing and format checks.
 *
 * The uniformity tests are statistical but deterministic in practice: their
 * thresholds make a false failure astronomically unlikely (see chi_square_bound).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/otp_code.h"

#define DRAWS 200000
#define LEN 4

/* Pearson's chi-square statistic of counts against a uniform expectation. */
static double chi_square(const long *counts, int cells, long total)
{
    double expected = (double)total / cells, x = 0;
    for (int i = 0; i < cells; i++) {
        double d = (double)counts[i] - expected;
        x += d * d / expected;
    }
    return x;
}

/* Thresholds. For a chi-square variable X with k degrees of freedom, the Chernoff
 * bound gives P(X >= x) <= (x/k)^(k/2) * exp((k - x)/2) for x > k.
 *   k = 9  (10 digit values),  x = 100: bound = exp(4.5*ln(100/9) - 45.5) ~ 8.8e-16
 *   k = 99 (100 digit pairs),  x = 250: bound = exp(49.5*ln(250/99) - 75.5) ~ 1.3e-13
 * This test computes 7 such statistics, so a correct generator fails it with
 * probability below 1e-12 per run. The expected counts (>= 2,000 per cell) are
 * far above the ~5 needed for the chi-square approximation to hold.
 * For scale, a generator with byte-modulo bias (byte % 10: digits 0-5 at 26/256,
 * 6-9 at 25/256) shifts the pooled statistic (800,000 digits) by ~290, so it
 * fails; one that never draws a leading zero shifts the first-digit one by
 * ~22,000. */
#define CHI_DF9_MAX 100.0
#define CHI_DF99_MAX 250.0

static void draw_many(char (*codes)[LEN + 1])
{
    for (int i = 0; i < DRAWS; i++)
        otp_code_generate(LEN, codes[i]);
}

static void test_generate_length_and_digits(void **state)
{
    for (int len = OTP_CODE_MIN_LEN; len <= OTP_CODE_MAX_LEN; len++) {
        for (int rep = 0; rep < 1000; rep++) {
            char buf[OTP_CODE_MAX_LEN + 2];
            memset(buf, 'x', sizeof(buf));
            otp_code_generate(len, buf);
            assert_int_equal(strlen(buf), len);
            for (int i = 0; i < len; i++)
                assert_true(buf[i] >= '0' && buf[i] <= '9');
            assert_int_equal(buf[len + 1], 'x'); /* nothing written past the NUL */
        }
    }
}

static void test_generate_out_of_range_length_fails_closed(void **state)
{
    char buf[16];

    memset(buf, 'x', sizeof(buf));
    otp_code_generate(3, buf);
    assert_string_equal(buf, "");
    assert_int_equal(buf[1], 'x');
    otp_code_generate(11, buf);
    assert_int_equal(strlen(buf), OTP_CODE_MAX_LEN);
    assert_int_equal(buf[OTP_CODE_MAX_LEN + 1], 'x');
}

static void test_generate_uniform_per_position_and_first_digit(void **state)
{
    char(*codes)[LEN + 1] = malloc(sizeof(*codes) * DRAWS);
    long pos[LEN][10] = {{0}}, pooled[10] = {0};

    assert_non_null(codes);
    draw_many(codes);
    for (int i = 0; i < DRAWS; i++)
        for (int p = 0; p < LEN; p++) {
            pos[p][codes[i][p] - '0']++;
            pooled[codes[i][p] - '0']++;
        }
    /* pos[0] is the first-digit distribution: a generator that drew a number and
     * avoided (or dropped) leading zeros would fail here. */
    for (int p = 0; p < LEN; p++) {
        double x = chi_square(pos[p], 10, DRAWS);
        if (x >= CHI_DF9_MAX)
            fail_msg("position %d: chi-square %.1f >= %.1f", p, x, CHI_DF9_MAX);
    }
    double xp = chi_square(pooled, 10, (long)DRAWS * LEN);
    if (xp >= CHI_DF9_MAX)
        fail_msg("pooled digits: chi-square %.1f >= %.1f", xp, CHI_DF9_MAX);
    free(codes);
}

static void test_generate_uniform_adjacent_pairs(void **state)
{
    /* Catches digits that are each uniform but depend on their neighbour. */
    char(*codes)[LEN + 1] = malloc(sizeof(*codes) * DRAWS);
    long pairs[100] = {0}, firstpair[100] = {0};

    assert_non_null(codes);
    draw_many(codes);
    for (int i = 0; i < DRAWS; i++) {
        firstpair[(codes[i][0] - '0') * 10 + (codes[i][1] - '0')]++;
        pairs[(codes[i][2] - '0') * 10 + (codes[i][3] - '0')]++;
    }
    double x1 = chi_square(firstpair, 100, DRAWS), x2 = chi_square(pairs, 100, DRAWS);
    if (x1 >= CHI_DF99_MAX || x2 >= CHI_DF99_MAX)
        fail_msg("pair chi-square %.1f / %.1f >= %.1f", x1, x2, CHI_DF99_MAX);
    free(codes);
}

static void test_generate_codes_differ(void **state)
{
    /* 10-digit codes: two equal draws in 100 has probability < 5e-7. */
    char codes[100][OTP_CODE_MAX_LEN + 1];
    for (int i = 0; i < 100; i++)
        otp_code_generate(OTP_CODE_MAX_LEN, codes[i]);
    for (int i = 0; i < 100; i++)
        for (int j = i + 1; j < 100; j++)
            assert_string_not_equal(codes[i], codes[j]);
}

static void test_hash_known_vector(void **state)
{
    /* Key = bytes 0x00..0x1f. Expected value computed independently with:
     *   printf 'req_0000000000000000000000:123456' | openssl dgst -sha256 -mac HMAC \
     *     -macopt hexkey:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
     * and cross-checked with python3's hmac.new(bytes(range(32)), msg, sha256). */
    static const uint8_t expected[32] = {
        0x95, 0x85, 0xc8, 0x57, 0xe3, 0x87, 0x36, 0xe8, 0x4e, 0x3d, 0x77,
        0x40, 0x03, 0xe7, 0x1e, 0xaa, 0x9b, 0xce, 0xc8, 0xec, 0x89, 0xe9,
        0x27, 0x2e, 0xa7, 0x8f, 0x62, 0x11, 0x48, 0x33, 0xc8, 0xbf,
    };
    uint8_t key[32], out[OTP_CODE_HASH_LEN];
    otp_code_mac mac;
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    otp_code_mac_init(&mac, key);
    otp_code_hash(&mac, "req_0000000000000000000000", "123456", out);
    assert_memory_equal(out, expected, sizeof(expected));
    /* The prepared key is only read: the next hash with it is the same. */
    memset(out, 0, sizeof(out));
    otp_code_hash(&mac, "req_0000000000000000000000", "123456", out);
    assert_memory_equal(out, expected, sizeof(expected));
}

static void test_hash_depends_on_request_id_code_and_key(void **state)
{
    uint8_t key1[32] = {1}, key2[32] = {2}, a[32], b[32];
    otp_code_mac mac1, mac2, *k1 = &mac1, *k2 = &mac2;
    otp_code_mac_init(k1, key1);
    otp_code_mac_init(k2, key2);

    otp_code_hash(k1, "req_A", "123456", a);
    otp_code_hash(k1, "req_B", "123456", b);
    assert_false(otp_code_hash_equal(a, b));
    otp_code_hash(k2, "req_A", "123456", b);
    assert_false(otp_code_hash_equal(a, b));
    otp_code_hash(k1, "req_A", "123457", b);
    assert_false(otp_code_hash_equal(a, b));
    /* The ':' separator keeps ("req_A1", "23456") from colliding with ("req_A", "123456"). */
    otp_code_hash(k1, "req_A1", "23456", b);
    assert_false(otp_code_hash_equal(a, b));
    otp_code_hash(k1, "req_A", "123456", b);
    assert_true(otp_code_hash_equal(a, b));
}

static void test_hash_equal(void **state)
{
    uint8_t a[32], b[32];
    for (int i = 0; i < 32; i++)
        a[i] = b[i] = (uint8_t)(i * 7);
    assert_true(otp_code_hash_equal(a, b));
    for (int i = 0; i < 32; i++) { /* a difference in any byte, first or last, counts */
        b[i] ^= 0x01;
        assert_false(otp_code_hash_equal(a, b));
        b[i] ^= 0x01;
    }
    b[31] ^= 0x80;
    assert_false(otp_code_hash_equal(a, b));
}

static void test_well_formed_edges(void **state)
{
    int len = -1;

    assert_false(otp_code_well_formed("123", &len));
    assert_int_equal(len, -1); /* not written on failure */
    assert_true(otp_code_well_formed("1234", &len));
    assert_int_equal(len, 4);
    assert_true(otp_code_well_formed("0000000000", &len));
    assert_int_equal(len, 10);
    len = -1;
    assert_false(otp_code_well_formed("12345678901", &len));
    assert_int_equal(len, -1);
    assert_false(otp_code_well_formed("", &len));
    assert_false(otp_code_well_formed("12a456", &len));
    assert_false(otp_code_well_formed("12345 ", &len));
    assert_false(otp_code_well_formed(" 123456", &len));
    assert_false(otp_code_well_formed("-12345", &len));
    assert_false(otp_code_well_formed("１２３４", &len)); /* full-width digits */
    assert_false(otp_code_well_formed(NULL, &len));
    assert_int_equal(len, -1);
    assert_true(otp_code_well_formed("123456", NULL)); /* ret_len is optional */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_length_and_digits),
        cmocka_unit_test(test_generate_out_of_range_length_fails_closed),
        cmocka_unit_test(test_generate_uniform_per_position_and_first_digit),
        cmocka_unit_test(test_generate_uniform_adjacent_pairs),
        cmocka_unit_test(test_generate_codes_differ),
        cmocka_unit_test(test_hash_known_vector),
        cmocka_unit_test(test_hash_depends_on_request_id_code_and_key),
        cmocka_unit_test(test_hash_equal),
        cmocka_unit_test(test_well_formed_edges),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
