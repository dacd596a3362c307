/* tests/unit/util/test_random.c — the per-thread CSPRNG pool: bytes across pool
 * refills, uniformity of otp_random_uniform, and independence across threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "util/random.h"

static void test_bytes_cross_refills(void **state)
{
    (void)state;
    /* 10 KiB crosses two 4 KiB refills; no 64-byte window may repeat the first. */
    static unsigned char buf[10240];
    otp_random_bytes(buf, sizeof(buf));
    for (size_t off = 64; off + 64 <= sizeof(buf); off += 64)
        assert_true(memcmp(buf, buf + off, 64) != 0);
    unsigned char a[32], b[32];
    otp_random_bytes(a, sizeof(a));
    otp_random_bytes(b, sizeof(b));
    assert_true(memcmp(a, b, sizeof(a)) != 0);
    /* All 256 byte values appear in 10 KiB of uniform bytes (miss chance ~256*e^-40). */
    int seen[256] = {0};
    for (size_t i = 0; i < sizeof(buf); i++)
        seen[buf[i]] = 1;
    for (int v = 0; v < 256; v++)
        assert_int_equal(seen[v], 1);
}

static void test_uniform_range_and_chi_square(void **state)
{
    (void)state;
    /* upper = 10: chi-square with 9 degrees of freedom over 100,000 draws; a fair
     * generator exceeds 60 with probability ~1e-9, a byte%10 bias (values 0..5
     * 1.17% more likely) gives ~110 at this sample size. */
    enum { N = 100000 };
    long counts[10] = {0};
    for (int i = 0; i < N; i++) {
        uint32_t v = otp_random_uniform(10);
        assert_true(v < 10);
        counts[v]++;
    }
    double chi = 0, expect = N / 10.0;
    for (int i = 0; i < 10; i++)
        chi += (counts[i] - expect) * (counts[i] - expect) / expect;
    assert_true(chi < 60.0);
    assert_int_equal(otp_random_uniform(0), 0);
    assert_int_equal(otp_random_uniform(1), 0);
    for (int i = 0; i < 1000; i++)
        assert_true(otp_random_uniform(62) < 62);
}

static void *draw(void *arg)
{
    otp_random_bytes(arg, 32);
    return NULL;
}

static void test_threads_get_different_streams(void **state)
{
    (void)state;
    unsigned char out[4][32];
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, draw, out[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            assert_true(memcmp(out[i], out[j], 32) != 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_cross_refills),
        cmocka_unit_test(test_uniform_range_and_chi_square),
        cmocka_unit_test(test_threads_get_different_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
