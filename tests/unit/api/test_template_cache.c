/* tests/unit/api/test_template_cache.c — the template cache: a hit only for
 * the same account and the same id or name, within the period; 0 disables it;
 * bounded; one table that every thread reads and fills; and its table and the
 * key cache's (both on util/ttl_cache.c) never serve each other's entries. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "api/key_cache.h"
#include "api/template_cache.h"

#define T0 1800000000000LL /* an arbitrary "now" */

static otp_template tpl_of(int n)
{
    otp_template t;
    memset(&t, 0, sizeof(t));
    snprintf(t.public_id, sizeof(t.public_id), "tpl_%d", n);
    snprintf(t.name, sizeof(t.name), "name%d", n);
    snprintf(t.body, sizeof(t.body), "{{code}} is template %d", n);
    snprintf(t.dlt_template_id, sizeof(t.dlt_template_id), "dlt%d", n);
    snprintf(t.sender_id, sizeof(t.sender_id), "S%d", n);
    t.is_default = n % 2 == 0;
    t.created_at_ms = T0 - n;
    return t;
}

static int setup(void **state)
{
    (void)state;
    otp_template_cache_configure(1000);
    otp_key_cache_configure(1000);
    return 0;
}

static void test_hit_for_the_same_account_and_string_only(void **state)
{
    (void)state;
    otp_template want = tpl_of(1), got;
    assert_false(otp_template_cache_get(7, "tpl_1", T0, &got));
    otp_template_cache_put(7, "tpl_1", &want, T0);
    memset(&got, 0, sizeof(got));
    assert_true(otp_template_cache_get(7, "tpl_1", T0 + 999, &got));
    assert_memory_equal(&got, &want, sizeof(want));

    assert_false(otp_template_cache_get(8, "tpl_1", T0, &got));  /* another account */
    assert_false(otp_template_cache_get(7, "tpl_10", T0, &got)); /* another string */
    assert_false(otp_template_cache_get(7, "tpl_", T0, &got));
    assert_false(otp_template_cache_get(7, "name1", T0, &got)); /* found by id, not by name */

    assert_false(otp_template_cache_get(7, "tpl_1", T0 + 1000, &got)); /* expired */
    assert_false(otp_template_cache_get(7, "tpl_1", T0 - 1, &got));    /* the clock went back */
}

static void test_zero_disables(void **state)
{
    (void)state;
    otp_template t = tpl_of(2), got;
    otp_template_cache_put(1, "login", &t, T0);
    assert_true(otp_template_cache_get(1, "login", T0, &got));
    otp_template_cache_configure(0);
    assert_false(otp_template_cache_get(1, "login", T0, &got));
    otp_template_cache_put(1, "login", &t, T0);
    assert_false(otp_template_cache_get(1, "login", T0, &got));
    otp_template_cache_configure(1000);
    assert_false(otp_template_cache_get(1, "login", T0, &got)); /* emptied */
}

static void test_bounded(void **state)
{
    (void)state;
    otp_template got;
    enum { N = 2000 };
    char name[32];
    for (int n = 0; n < N; n++) {
        otp_template t = tpl_of(n);
        snprintf(name, sizeof(name), "tpl_%d", n);
        otp_template_cache_put(n, name, &t, T0 + n);
    }
    int hits = 0;
    for (int n = 0; n < N; n++) {
        snprintf(name, sizeof(name), "tpl_%d", n);
        if (otp_template_cache_get(n, name, T0 + N, &got)) {
            hits++;
            assert_string_equal(got.public_id, name); /* never another's template */
        }
    }
    assert_true(hits <= 32);
    assert_true(hits >= 16); /* the table is used, not one slot */
}

static void test_beside_the_key_cache(void **state)
{
    (void)state;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    memset(h, 0x5a, sizeof(h));
    otp_key_auth a, got_a;
    memset(&a, 0, sizeof(a));
    a.key_id = 42;
    a.account_id = 3;
    otp_template t = tpl_of(3), got_t;

    otp_key_cache_put(h, &a, T0);
    otp_template_cache_put(3, "tpl_3", &t, T0);
    assert_true(otp_key_cache_get(h, T0, &got_a));
    assert_int_equal(got_a.key_id, 42);
    assert_true(otp_template_cache_get(3, "tpl_3", T0, &got_t));
    assert_string_equal(got_t.body, t.body);

    /* Emptying one leaves the other. */
    otp_key_cache_configure(1000);
    assert_false(otp_key_cache_get(h, T0, &got_a));
    assert_true(otp_template_cache_get(3, "tpl_3", T0, &got_t));
    otp_key_cache_put(h, &a, T0);
    otp_template_cache_configure(1000);
    assert_true(otp_key_cache_get(h, T0, &got_a));
    assert_false(otp_template_cache_get(3, "tpl_3", T0, &got_t));
}

typedef struct {
    bool saw;
    otp_template got;
} other_arg;

static void *other_thread(void *p)
{
    other_arg *o = p;
    o->saw = otp_template_cache_get(4, "tpl_4", T0, &o->got);
    otp_template t = tpl_of(5);
    otp_template_cache_put(4, "tpl_5", &t, T0);
    return NULL;
}

static void test_one_table_for_all_threads(void **state)
{
    (void)state;
    otp_template t = tpl_of(4), got;
    otp_template_cache_put(4, "tpl_4", &t, T0);
    other_arg o = {.saw = false};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, other_thread, &o), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(o.saw); /* what this thread read serves another */
    assert_memory_equal(&o.got, &t, sizeof(t));
    otp_template want = tpl_of(5);
    assert_true(otp_template_cache_get(4, "tpl_5", T0, &got)); /* and the other way */
    assert_memory_equal(&got, &want, sizeof(want));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_hit_for_the_same_account_and_string_only, setup),
        cmocka_unit_test_setup(test_zero_disables, setup),
        cmocka_unit_test_setup(test_bounded, setup),
        cmocka_unit_test_setup(test_beside_the_key_cache, setup),
        cmocka_unit_test_setup(test_one_table_for_all_threads, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
