/* tests/unit/api/test_key_cache.c — the API key cache: hits only within the
 * period, never for another hash, disabled by 0, bounded, one table that every
 * thread reads and fills, and lastUsedAt
 * bookkeeping that does not extend an entry's life. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/key_cache.h"

#define T0 1800000000000LL /* an arbitrary "now" */

static void hash_of(uint32_t n, uint8_t h[OTP_APIKEY_HASH_LEN])
{
    /* Spread like a SHA-256: every byte depends on n. */
    uint64_t x = n * 0x9e3779b97f4a7c15ULL + 1;
    for (int i = 0; i < OTP_APIKEY_HASH_LEN; i++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ULL;
        h[i] = (uint8_t)(x >> 56);
    }
}

static otp_key_auth auth_of(int64_t key_id)
{
    otp_key_auth a;
    memset(&a, 0, sizeof(a));
    a.key_id = key_id;
    a.account_id = 1000 + key_id;
    snprintf(a.account_public_id, sizeof(a.account_public_id), "acc_%lld", (long long)key_id);
    snprintf(a.account_name, sizeof(a.account_name), "name %lld", (long long)key_id);
    snprintf(a.webotp_domain, sizeof(a.webotp_domain), "d%lld.example", (long long)key_id);
    snprintf(a.default_template_id, sizeof(a.default_template_id), "tpl_%lld", (long long)key_id);
    a.resend_strategy = (int)(key_id % 2);
    a.test = key_id % 3 == 0;
    a.last_used_at_ms = T0 - 5000;
    return a;
}

static int setup(void **state)
{
    (void)state;
    otp_key_cache_configure(1000);
    return 0;
}

static void test_hit_within_the_period_only(void **state)
{
    (void)state;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    hash_of(1, h);
    otp_key_auth want = auth_of(1), got;

    assert_false(otp_key_cache_get(h, T0, &got));
    otp_key_cache_put(h, &want, T0);
    memset(&got, 0, sizeof(got));
    assert_true(otp_key_cache_get(h, T0, &got));
    assert_memory_equal(&got, &want, sizeof(want));
    assert_true(otp_key_cache_get(h, T0 + 999, &got));
    assert_false(otp_key_cache_get(h, T0 + 1000, &got)); /* expired */
    assert_false(otp_key_cache_get(h, T0 - 1, &got));    /* the clock went back */

    /* A new read replaces the entry and starts a new period. */
    want.last_used_at_ms = T0 + 1500;
    otp_key_cache_put(h, &want, T0 + 1500);
    assert_true(otp_key_cache_get(h, T0 + 2499, &got));
    assert_int_equal(got.last_used_at_ms, T0 + 1500);
    assert_false(otp_key_cache_get(h, T0 + 2500, &got));
}

static void test_other_hashes_miss(void **state)
{
    (void)state;
    uint8_t h[OTP_APIKEY_HASH_LEN], other[OTP_APIKEY_HASH_LEN];
    hash_of(2, h);
    otp_key_auth a = auth_of(2), got;
    otp_key_cache_put(h, &a, T0);
    /* Any single byte different, first or last: a miss. */
    for (int i = 0; i < OTP_APIKEY_HASH_LEN; i++) {
        memcpy(other, h, sizeof(h));
        other[i] ^= 0x01;
        assert_false(otp_key_cache_get(other, T0, &got));
    }
    assert_true(otp_key_cache_get(h, T0, &got));
}

static void test_zero_disables(void **state)
{
    (void)state;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    hash_of(3, h);
    otp_key_auth a = auth_of(3), got;
    otp_key_cache_put(h, &a, T0);
    assert_true(otp_key_cache_get(h, T0, &got));

    otp_key_cache_configure(0);
    assert_false(otp_key_cache_get(h, T0, &got)); /* emptied, and nothing served */
    otp_key_cache_put(h, &a, T0);
    assert_false(otp_key_cache_get(h, T0, &got));

    otp_key_cache_configure(50);
    assert_false(otp_key_cache_get(h, T0, &got)); /* what was put while off is gone */
    otp_key_cache_put(h, &a, T0);
    assert_true(otp_key_cache_get(h, T0 + 49, &got));
    assert_false(otp_key_cache_get(h, T0 + 50, &got));
}

static void test_configure_empties_the_table(void **state)
{
    (void)state;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    hash_of(4, h);
    otp_key_auth a = auth_of(4), got;
    otp_key_cache_put(h, &a, T0);
    otp_key_cache_configure(1000);
    assert_false(otp_key_cache_get(h, T0, &got));
}

static void test_bounded_and_two_way(void **state)
{
    (void)state;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    otp_key_auth got;
    enum { N = 20000 };
    for (uint32_t n = 0; n < N; n++) {
        hash_of(100 + n, h);
        otp_key_auth a = auth_of(100 + n);
        otp_key_cache_put(h, &a, T0 + n / 100); /* later keys are "newer" */
    }
    int hits = 0;
    for (uint32_t n = 0; n < N; n++) {
        hash_of(100 + n, h);
        if (otp_key_cache_get(h, T0 + 200, &got)) {
            hits++;
            assert_int_equal(got.key_id, 100 + n); /* never another key's row */
        }
    }
    assert_true(hits <= OTP_KEY_CACHE_ENTRIES);
    assert_true(hits >= OTP_KEY_CACHE_ENTRIES * 3 / 4); /* the table is used, not one slot */

    /* Two keys that share a set both stay; a third evicts the one read longest ago. */
    otp_key_cache_configure(1000);
    uint8_t a[OTP_APIKEY_HASH_LEN], b[OTP_APIKEY_HASH_LEN], c[OTP_APIKEY_HASH_LEN];
    uint32_t found[3], k = 0;
    uint64_t set0 = 0;
    for (uint32_t n = 1; k < 3; n++) {
        uint8_t x[OTP_APIKEY_HASH_LEN];
        hash_of(n, x);
        uint64_t w;
        memcpy(&w, x, sizeof(w));
        uint64_t set = w % (OTP_KEY_CACHE_ENTRIES / 2);
        if (k == 0)
            set0 = set;
        if (set == set0)
            found[k++] = n;
    }
    hash_of(found[0], a);
    hash_of(found[1], b);
    hash_of(found[2], c);
    otp_key_auth aa = auth_of(found[0]), ab = auth_of(found[1]), ac = auth_of(found[2]);
    otp_key_cache_put(a, &aa, T0 + 10);
    otp_key_cache_put(b, &ab, T0);
    assert_true(otp_key_cache_get(a, T0 + 20, &got));
    assert_true(otp_key_cache_get(b, T0 + 20, &got));
    otp_key_cache_put(c, &ac, T0 + 20);
    assert_true(otp_key_cache_get(a, T0 + 20, &got));
    assert_false(otp_key_cache_get(b, T0 + 20, &got)); /* read at T0: the oldest */
    assert_true(otp_key_cache_get(c, T0 + 20, &got));
    assert_int_equal(got.key_id, found[2]);
}

static void test_set_last_used(void **state)
{
    (void)state;
    uint8_t h[OTP_APIKEY_HASH_LEN], other[OTP_APIKEY_HASH_LEN];
    hash_of(5, h);
    hash_of(6, other);
    otp_key_auth a = auth_of(5), got;
    otp_key_cache_put(h, &a, T0);
    otp_key_cache_set_last_used(h, T0 + 300);
    otp_key_cache_set_last_used(other, T0 + 400); /* not cached: nothing happens */
    assert_false(otp_key_cache_get(other, T0 + 300, &got));
    assert_true(otp_key_cache_get(h, T0 + 300, &got));
    assert_int_equal(got.last_used_at_ms, T0 + 300);
    assert_int_equal(got.key_id, 5);
    /* The entry still ends one period after it was read, not after the touch. */
    assert_false(otp_key_cache_get(h, T0 + 1000, &got));
}

/* ---- threads ---- */

typedef struct {
    uint32_t first;
    int rounds;
    int hits;
    int wrong;
    bool saw_main_entry;
} worker_arg;

static uint8_t main_hash[OTP_APIKEY_HASH_LEN];

static void *worker(void *p)
{
    worker_arg *w = p;
    otp_key_auth got;
    w->saw_main_entry = otp_key_cache_get(main_hash, T0, &got) && got.key_id == 7;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    for (int r = 0; r < w->rounds; r++) {
        for (uint32_t n = w->first; n < w->first + 16; n++) {
            hash_of(n, h);
            if (otp_key_cache_get(h, T0, &got)) {
                w->hits++;
                otp_key_auth want = auth_of(n);
                if (memcmp(&got, &want, sizeof(got)) != 0)
                    w->wrong++;
            } else {
                otp_key_auth a = auth_of(n);
                otp_key_cache_put(h, &a, T0);
            }
        }
    }
    return NULL;
}

/* The set a hash falls in (its first 8 bytes, as the table reads them). */
static unsigned set_of(const uint8_t h[OTP_APIKEY_HASH_LEN])
{
    uint64_t w;
    memcpy(&w, h, sizeof(w));
    return (unsigned)(w % (OTP_KEY_CACHE_ENTRIES / 2));
}

static void test_one_table_for_all_threads(void **state)
{
    (void)state;
    hash_of(7, main_hash);
    otp_key_auth a = auth_of(7), got;
    otp_key_cache_put(main_hash, &a, T0);

    enum { THREADS = 4, ROUNDS = 2000 };
    /* Threads 0 and 1 use the same keys, 2 and 3 others. No set of the table
     * gets more than its 2 entries of these 33 keys, so none evicts another. */
    int per_set[OTP_KEY_CACHE_ENTRIES / 2] = {0};
    uint8_t h[OTP_APIKEY_HASH_LEN];
    per_set[set_of(main_hash)]++;
    for (uint32_t n = 5000; n < 5016; n++) {
        hash_of(n, h);
        per_set[set_of(h)]++;
        hash_of(n + 100, h);
        per_set[set_of(h)]++;
    }
    for (int i = 0; i < OTP_KEY_CACHE_ENTRIES / 2; i++)
        assert_true(per_set[i] <= 2);

    pthread_t th[THREADS];
    worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){.first = 5000 + (uint32_t)(i / 2) * 100, .rounds = ROUNDS};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        assert_true(args[i].saw_main_entry); /* what the main thread read */
        assert_int_equal(args[i].wrong, 0);  /* never another key's row */
        /* A key is read once by one of the two threads that use it, or once
         * by each if they miss it together; every other look-up hits. */
        assert_true(args[i].hits >= 16 * (ROUNDS - 1));
    }
    assert_true(otp_key_cache_get(main_hash, T0, &got)); /* the workers did not evict it */
    assert_int_equal(got.key_id, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_hit_within_the_period_only, setup),
        cmocka_unit_test_setup(test_other_hashes_miss, setup),
        cmocka_unit_test_setup(test_zero_disables, setup),
        cmocka_unit_test_setup(test_configure_empties_the_table, setup),
        cmocka_unit_test_setup(test_bounded_and_two_way, setup),
        cmocka_unit_test_setup(test_set_last_used, setup),
        cmocka_unit_test_setup(test_one_table_for_all_threads, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
