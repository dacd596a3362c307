/* tests/unit/core/test_limits.c — the arithmetic of abuse protection, with an
 * injected time: token buckets, per-number windows, lockouts, country lists,
 * prefixes and the SMS-pumping rule; and the brute-force bound of
 * docs/security.md, simulated over many days. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/limits.h"

static void test_defaults(void **state)
{
    (void)state;
    otp_limits l;
    otp_limits_defaults(&l);
    assert_int_equal(l.key_rate, 50);
    assert_int_equal(l.key_burst, 100);
    assert_int_equal(l.phone_sends, 5);
    assert_int_equal(l.phone_window_s, 900);
    assert_int_equal(l.phone_interval_s, 30);
    assert_int_equal(l.fail_max, 5);
    assert_int_equal(l.lock_s, 900);
    assert_int_equal(l.fail_streak_max, 100);
    assert_int_equal(l.streak_lock_s, 86400);
    assert_string_equal(l.countries, "");
}

static void test_apply_and_merge(void **state)
{
    (void)state;
    otp_limits l;
    char err[200], out[OTP_LIMITS_TEXT_SIZE];
    otp_limits_defaults(&l);
    assert_int_equal(
        otp_limits_apply(&l, "phone_sends=3, countries=us;+91 daily_cap=5000", err, sizeof(err)),
        0);
    assert_int_equal(l.phone_sends, 3);
    assert_string_equal(l.countries, "US;+91");
    assert_int_equal(l.daily_cap, 5000);
    /* errors leave the limits alone */
    assert_int_equal(otp_limits_apply(&l, "phone_sends=2,bogus=1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bogus"));
    assert_int_equal(l.phone_sends, 3);
    assert_int_equal(otp_limits_apply(&l, "phone_sends=-1", err, sizeof(err)), -1);
    assert_int_equal(otp_limits_apply(&l, "phone_sends", err, sizeof(err)), -1);
    assert_int_equal(otp_limits_apply(&l, "countries=U$", err, sizeof(err)), -1);

    assert_int_equal(
        otp_limits_merge("phone_sends=3,lock=60", "lock=,key_rate=10", out, err, sizeof(err)), 0);
    assert_string_equal(out, "key_rate=10,phone_sends=3");
    assert_int_equal(otp_limits_merge(NULL, "key_rate=x", out, err, sizeof(err)), -1);
}

static void test_bucket(void **state)
{
    (void)state;
    otp_bucket b = {0};
    int64_t t = 1000000;
    /* a full bucket of 5 at 10/s */
    for (int i = 0; i < 5; i++)
        assert_int_equal(otp_bucket_take(&b, 10, 5, t), 0);
    assert_int_equal(otp_bucket_take(&b, 10, 5, t), 1);
    /* 100 ms later one token is back */
    assert_int_equal(otp_bucket_take(&b, 10, 5, t + 100), 0);
    assert_int_equal(otp_bucket_take(&b, 10, 5, t + 100), 1);
    /* driven at 100/s for 3 s: accepts 10/s + the burst */
    otp_bucket c = {0};
    int ok = 0;
    for (int i = 0; i < 300; i++)
        ok += otp_bucket_take(&c, 10, 5, t + i * 10) == 0;
    assert_in_range(ok, 30 + 5 - 1, 30 + 5 + 1);
    /* rate 0: no bucket */
    assert_int_equal(otp_bucket_take(&c, 0, 5, t), 0);
    /* a slow rate gives a longer wait */
    otp_bucket d = {0};
    assert_int_equal(otp_bucket_take(&d, 1, 1, t), 0);
    assert_int_equal(otp_bucket_take(&d, 1, 1, t), 1);
}

/* The shared bucket as PostgreSQL's otp_key_take() keeps it: grants up to want
 * whole tokens, or none and the ms until one is there. */
typedef struct shared_bucket {
    int64_t milli, at;
} shared_bucket;

static int shared_take(shared_bucket *b, int rate, int burst, int want, int64_t now,
                       int64_t *wait_ms)
{
    b->milli += (now - b->at) * rate;
    if (b->milli > (int64_t)burst * 1000)
        b->milli = (int64_t)burst * 1000;
    b->at = now;
    int g = (int)(b->milli / 1000) < want ? (int)(b->milli / 1000) : want;
    b->milli -= (int64_t)g * 1000;
    *wait_ms = g ? 0 : (1000 - b->milli + rate - 1) / rate;
    return g;
}

/* One request on a node: the lease, then the shared bucket when it says so. */
static int node_request(otp_key_lease *l, shared_bucket *b, int rate, int burst, int64_t now,
                        int *calls)
{
    int ask = 0;
    int r = otp_key_lease_take(l, otp_key_lease_want(rate, burst), now, &ask);
    if (r >= 0)
        return r;
    (*calls)++;
    int64_t wait = 0;
    int g = shared_take(b, rate, burst, ask, now, &wait);
    return otp_key_lease_fill(l, g, wait, now);
}

static void test_key_lease(void **state)
{
    (void)state;
    assert_int_equal(otp_key_lease_want(50, 100), 2);
    assert_int_equal(otp_key_lease_want(1000000, 10000000), 50000);
    assert_int_equal(otp_key_lease_want(10, 10), 1);
    assert_int_equal(otp_key_lease_want(1000, 20), 2);

    /* Two nodes, 100 requests/s each for 3 s, one bucket of 10/s with a burst
     * of 20: together they accept what one node alone would, give or take the
     * tokens a lease holds (want = 1 here: exactly). */
    int64_t t = 5000000;
    for (int rate = 10; rate <= 200; rate *= 20) {
        int burst = 20;
        shared_bucket b = {(int64_t)burst * 1000, t};
        otp_key_lease a = {0}, c = {0};
        int ok = 0, calls = 0;
        for (int i = 0; i < 300; i++) {
            ok += node_request(&a, &b, rate, burst, t + i * 10, &calls) == 0;
            ok += node_request(&c, &b, rate, burst, t + i * 10 + 5, &calls) == 0;
        }
        int want = otp_key_lease_want(rate, burst);
        int most = rate * 3 + burst; /* what one bucket allows in 3 s */
        if (most > 600)
            most = 600;
        assert_in_range(ok, most - 2 * want - 1, most);
        /* a refusal is decided locally until a token can be back (>= 1/rate
         * s): per node at most one call per 100 ms refuses, never one per
         * refused request (550 of them at 10/s) */
        assert_true(calls <= ok + 2 * 31);
    }

    /* Sixteen requests at once on a node with an empty lease (each takes
     * before any answer is back): the first asks for want (10), the others for
     * one each, and no token granted is lost when later answers are empty. */
    for (int bucket = 5; bucket <= 100; bucket += 95) {
        shared_bucket b = {(int64_t)bucket * 1000, t};
        otp_key_lease c = {0};
        int ask[16], wait16[16] = {0};
        for (int i = 0; i < 16; i++)
            assert_int_equal(otp_key_lease_take(&c, 10, t, &ask[i]), -1);
        assert_int_equal(ask[0], 10);
        for (int i = 1; i < 16; i++)
            assert_int_equal(ask[i], 1);
        int ok = 0;
        for (int i = 0; i < 16; i++) {
            int64_t wait = 0;
            int g = shared_take(&b, 1, bucket, ask[i], t, &wait);
            wait16[i] = otp_key_lease_fill(&c, g, wait, t);
            ok += wait16[i] == 0;
        }
        /* 100 tokens: all 16 go, 25 taken, 9 left in the lease; 5 tokens:
         * exactly 5 go (the first answer's 4 spare ones serve the others) */
        assert_int_equal(ok, bucket < 16 ? bucket : 16);
        assert_int_equal(c.tokens + ok, bucket < 16 ? bucket : 25);
        assert_int_equal(c.asking, 0);
    }

    /* A refusal is kept until the bucket can have a token again. */
    otp_key_lease l = {0};
    int ask = 0;
    assert_int_equal(otp_key_lease_take(&l, 1, t, &ask), -1);
    assert_int_equal(ask, 1);
    otp_key_lease_unask(&l); /* a store error: the next request asks again */
    assert_int_equal(otp_key_lease_take(&l, 1, t, &ask), -1);
    assert_int_equal(otp_key_lease_fill(&l, 0, 1500, t), 2);
    assert_int_equal(otp_key_lease_take(&l, 1, t + 100, &ask), 2);
    assert_int_equal(otp_key_lease_take(&l, 1, t + 1000, &ask), 1);
    assert_int_equal(otp_key_lease_take(&l, 1, t + 1500, &ask), -1);
    /* granted 3: this request and two more */
    assert_int_equal(otp_key_lease_fill(&l, 3, 0, t + 1500), 0);
    assert_int_equal(otp_key_lease_take(&l, 1, t + 1501, &ask), 0);
    assert_int_equal(otp_key_lease_take(&l, 1, t + 1502, &ask), 0);
    assert_int_equal(otp_key_lease_take(&l, 1, t + 1503, &ask), -1);
    /* unspent tokens are dropped after OTP_KEY_LEASE_MS */
    assert_int_equal(otp_key_lease_fill(&l, 5, 0, t + 2000), 0);
    assert_int_equal(otp_key_lease_take(&l, 1, t + 2000 + OTP_KEY_LEASE_MS - 1, &ask), 0);
    assert_int_equal(otp_key_lease_take(&l, 1, t + 2000 + OTP_KEY_LEASE_MS, &ask), -1);
    assert_int_equal(l.tokens, 0);
}

static void test_phone_window(void **state)
{
    (void)state;
    otp_limits l;
    otp_limits_defaults(&l);
    int64_t now = 10000000;
    int wait = 0;
    assert_int_equal(otp_phone_send_check(&l, NULL, 0, now, &wait), OTP_PHONE_SEND_OK);
    int64_t one[] = {now - 10000};
    assert_int_equal(otp_phone_send_check(&l, one, 1, now, &wait), OTP_PHONE_SEND_INTERVAL);
    assert_int_equal(wait, 20);
    int64_t five[] = {now - 40000, now - 100000, now - 200000, now - 300000, now - 400000};
    assert_int_equal(otp_phone_send_check(&l, five, 5, now, &wait), OTP_PHONE_SEND_WINDOW);
    /* the oldest of the five leaves the 900 s window 500 s from now */
    assert_int_equal(wait, 500);
    l.phone_interval_s = 0;
    int64_t four[] = {now - 1, now - 2, now - 3, now - 4};
    assert_int_equal(otp_phone_send_check(&l, four, 4, now, &wait), OTP_PHONE_SEND_OK);
    int64_t five2[] = {now - 1, now - 2, now - 3, now - 4, now - 5};
    assert_int_equal(otp_phone_send_check(&l, five2, 5, now, &wait), OTP_PHONE_SEND_WINDOW);
    assert_int_equal(wait, 900);
}

/* A parallel send stamped after this one but stored first: the wait counts from
 * that send, never more than the interval (a 30 s spacing never answers 31). */
static void test_phone_window_newer_send_stored_first(void **state)
{
    (void)state;
    otp_limits l;
    otp_limits_defaults(&l);
    int64_t now = 10000000;
    int wait = 0;
    int64_t later[] = {now + 700};
    assert_int_equal(otp_phone_send_check(&l, later, 1, now, &wait), OTP_PHONE_SEND_INTERVAL);
    assert_int_equal(wait, l.phone_interval_s);
}

static void test_lockout(void **state)
{
    (void)state;
    otp_limits l;
    otp_limits_defaults(&l);
    otp_phone_state s = {0};
    int64_t t = 50000000;
    for (int i = 0; i < 4; i++)
        assert_false(otp_phone_fail(&s, &l, t + i * 1000));
    assert_int_equal(otp_phone_locked(&s, t + 4000), 0);
    assert_true(otp_phone_fail(&s, &l, t + 4000));
    assert_int_equal(otp_phone_locked(&s, t + 4000), 900);
    assert_int_equal(otp_phone_locked(&s, t + 4000 + 900000), 0);
    /* a success clears the count */
    otp_phone_state u = {0};
    for (int i = 0; i < 4; i++)
        otp_phone_fail(&u, &l, t);
    otp_phone_success(&u);
    for (int i = 0; i < 4; i++)
        assert_false(otp_phone_fail(&u, &l, t));
    /* failures older than the window do not add up */
    otp_phone_state w = {0};
    for (int i = 0; i < 4; i++)
        otp_phone_fail(&w, &l, t);
    assert_false(otp_phone_fail(&w, &l, t + 900000));
    assert_int_equal(w.fails, 1);
}

/* The window rolls: fail_max wrong codes within ANY fail_window lock, also
 * when they straddle the end of a window counted from a first failure (in
 * fixed windows, 4 just before that end and 4 just after passed unlocked). */
static void test_lockout_window_rolls(void **state)
{
    (void)state;
    otp_limits l;
    otp_limits_defaults(&l); /* 5 within 900 s */
    otp_phone_state s = {0};
    int64_t t = 50000000;
    assert_false(otp_phone_fail(&s, &l, t));
    for (int i = 0; i < 3; i++)
        assert_false(otp_phone_fail(&s, &l, t + 899000));
    /* t has left the window: 3 + this one */
    assert_false(otp_phone_fail(&s, &l, t + 900500));
    assert_int_equal(s.fails, 4);
    assert_true(otp_phone_fail(&s, &l, t + 901000)); /* the 5th within 900 s */
    assert_int_equal(otp_phone_locked(&s, t + 901000), 900);

    /* Every 900 s window holds at most 4 unlocked failures, however they are
     * spaced: a failure every 225 s passes for ever (4 per 900 s), one every
     * 180 s locks at the 5th (5 in 720 s). */
    otp_phone_state u = {0};
    for (int i = 0; i < 50; i++)
        assert_false(otp_phone_fail(&u, &l, t + i * 225000LL + 1));
    otp_phone_state v = {0};
    for (int i = 0; i < 4; i++)
        assert_false(otp_phone_fail(&v, &l, t + i * 180000LL));
    assert_true(otp_phone_fail(&v, &l, t + 4 * 180000LL));

    /* A guess stamped before one already counted (parallel guesses) takes its
     * place in time order; the oldest still leaves first. */
    otp_phone_state o = {0};
    otp_phone_fail(&o, &l, t + 5000);
    otp_phone_fail(&o, &l, t + 1000);
    assert_int_equal(o.fail_since_ms, t + 1000);
    assert_int_equal(o.fail_at[1], t + 5000);
    assert_false(otp_phone_fail(&o, &l, t + 901000)); /* t + 1000 gone */
    assert_int_equal(o.fails, 2);
    assert_int_equal(o.fail_since_ms, t + 5000);
}

/* The kept times survive the store's bytes; a state without them (written
 * before they were kept, or counted in a fixed window) counts its failures
 * at fail_since; a fail_max above what is kept counts in fixed windows. */
static void test_lockout_times_stored(void **state)
{
    (void)state;
    otp_limits l;
    otp_limits_defaults(&l);
    int64_t t = 50000000;
    otp_phone_state s = {0};
    otp_phone_fail(&s, &l, t);
    otp_phone_fail(&s, &l, t + 7000);
    uint8_t buf[OTP_PHONE_FAILS_KEPT * 8];
    size_t len = otp_phone_fail_times_encode(&s, buf);
    assert_int_equal(len, 16);
    otp_phone_state z = {0}; /* fails = 0 (an operator's lift): the times are ignored */
    otp_phone_fail_times_decode(&z, buf, len);
    assert_int_equal(z.fails, 0);
    /* times that do not match fails (an older writer counted on without them):
     * fails counted at fail_since */
    otp_phone_state m = {.fails = 3, .fail_since_ms = t + 100};
    otp_phone_fail_times_decode(&m, buf, len);
    assert_false(m.times_kept);
    assert_int_equal(m.fails, 3);
    assert_int_equal(m.fail_at[2], t + 100);
    /* as many times as fails, but not starting at fail_since (an older node
     * started a window of its own and counted 2 in it) or out of order: the
     * count, at fail_since */
    otp_phone_state o = {.fails = 2, .fail_since_ms = t + 500000};
    otp_phone_fail_times_decode(&o, buf, len);
    assert_false(o.times_kept);
    assert_int_equal(o.fail_at[0], t + 500000);
    assert_int_equal(o.fail_at[1], t + 500000);
    uint8_t swapped[16];
    memcpy(swapped, buf + 8, 8);
    memcpy(swapped + 8, buf, 8);
    otp_phone_state w = {.fails = 2, .fail_since_ms = t + 7000};
    otp_phone_fail_times_decode(&w, swapped, 16);
    assert_false(w.times_kept);
    /* lengths that are no whole number of times, or too many */
    otp_phone_state x = {.fails = 2, .fail_since_ms = t};
    otp_phone_fail_times_decode(&x, buf, 15);
    assert_false(x.times_kept);
    static uint8_t many[(OTP_PHONE_FAILS_KEPT + 1) * 8];
    otp_phone_state y = {.fails = OTP_PHONE_FAILS_KEPT + 1, .fail_since_ms = t};
    otp_phone_fail_times_decode(&y, many, sizeof(many));
    assert_false(y.times_kept);
    assert_int_equal(y.fail_at[OTP_PHONE_FAILS_KEPT - 1], t);

    otp_phone_state r = {.fails = 2, .fail_since_ms = t};
    otp_phone_fail_times_decode(&r, buf, len);
    assert_int_equal(r.fails, 2);
    assert_int_equal(r.fail_since_ms, t);
    assert_int_equal(r.fail_at[1], t + 7000);
    assert_true(r.times_kept);
    for (int i = 0; i < 2; i++)
        assert_false(otp_phone_fail(&r, &l, t + 8000));
    assert_true(otp_phone_fail(&r, &l, t + 9000));
    assert_int_equal(otp_phone_fail_times_encode(&r, buf), 0); /* locked: count reset */

    /* an old row: 4 failures since t, no times */
    otp_phone_state old = {.fails = 4, .fail_since_ms = t};
    otp_phone_fail_times_decode(&old, NULL, 0);
    assert_true(otp_phone_fail(&old, &l, t + 899999));
    otp_phone_state aged = {.fails = 4, .fail_since_ms = t};
    otp_phone_fail_times_decode(&aged, NULL, 0);
    assert_false(otp_phone_fail(&aged, &l, t + 900000));
    assert_int_equal(aged.fails, 1);

    /* fail_max above OTP_PHONE_FAILS_KEPT: fixed windows, no times stored */
    l.fail_max = OTP_PHONE_FAILS_KEPT + 1;
    otp_phone_state big = {0};
    for (int i = 0; i < OTP_PHONE_FAILS_KEPT; i++)
        assert_false(otp_phone_fail(&big, &l, t + i));
    assert_int_equal(otp_phone_fail_times_encode(&big, buf), 0);
    assert_true(otp_phone_fail(&big, &l, t + 1000));
}

/* docs/security.md: under the defaults an attacker who guesses as fast as the
 * limits allow gets at most 100 wrong guesses per number in any 24 h, so the
 * chance of guessing a 6-digit code is at most 100 / 10^6 = 1 / 10,000 a day. */
static void test_brute_force_bound(void **state)
{
    (void)state;
    otp_limits l;
    otp_limits_defaults(&l);
    otp_phone_state s = {0};
    enum { DAYS = 30 };
    static int64_t guesses[DAYS * 1000];
    int n = 0;
    int64_t t0 = 1700000000000, t = t0;
    while (t < t0 + (int64_t)DAYS * 86400000) {
        int wait = otp_phone_locked(&s, t);
        if (wait) {
            t += (int64_t)wait * 1000;
            continue;
        }
        guesses[n++] = t;
        otp_phone_fail(&s, &l, t);
        t += 1000; /* one guess a second whenever not locked */
    }
    /* every 24 h window holds at most 100 guesses */
    int max = 0;
    for (int i = 0, j = 0; i < n; i++) {
        while (guesses[i] - guesses[j] >= 86400000)
            j++;
        if (i - j + 1 > max)
            max = i - j + 1;
    }
    assert_true(max <= 100);
    assert_true(max >= 95); /* and the bound is what limits it */
}

static void test_countries(void **state)
{
    (void)state;
    assert_true(otp_country_allowed("", "CA", 1));
    assert_true(otp_country_allowed("US", "US", 1));
    assert_false(otp_country_allowed("US", "CA", 1));
    assert_true(otp_country_allowed("US;+91", "IN", 91));
    assert_true(otp_country_allowed("91", "IN", 91));
    assert_false(otp_country_allowed("+9", "IN", 91));
    assert_true(otp_country_allowed("+1", "CA", 1));
    assert_true(otp_country_allowed("in,us", "IN", 91));
}

static void test_prefix_and_safe(void **state)
{
    (void)state;
    char p[OTP_PREFIX_SIZE];
    otp_phone_prefix("+919876543210", p);
    assert_string_equal(p, "+91987654");
    assert_true(otp_phone_safe("+91987654", "+919876543210"));
    assert_true(otp_phone_safe("+14155550100;+919876543210", "+919876543210"));
    assert_false(otp_phone_safe("+91987655", "+919876543210"));
    assert_false(otp_phone_safe("", "+919876543210"));
}

static void test_pumping(void **state)
{
    (void)state;
    /* below min_sends: never */
    assert_false(otp_pumping_suspect(19, 0, 0, 600, 20, 5, 20));
    /* 20 sends, no verification, no history: suspect */
    assert_true(otp_pumping_suspect(20, 0, 0, 600, 20, 5, 20));
    /* ... unless they convert */
    assert_false(otp_pumping_suspect(20, 4, 0, 600, 20, 5, 20));
    assert_true(otp_pumping_suspect(20, 3, 0, 600, 20, 5, 20));
    /* a busy prefix: 1440 sends a day = 10 per window; 5x = 50 */
    assert_false(otp_pumping_suspect(49, 0, 1440, 600, 20, 5, 20));
    assert_true(otp_pumping_suspect(50, 0, 1440, 600, 20, 5, 20));
    /* off */
    assert_false(otp_pumping_suspect(1000, 0, 0, 600, 0, 5, 20));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_apply_and_merge),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_key_lease),
        cmocka_unit_test(test_phone_window),
        cmocka_unit_test(test_lockout),
        cmocka_unit_test(test_lockout_window_rolls),
        cmocka_unit_test(test_lockout_times_stored),
        cmocka_unit_test(test_brute_force_bound),
        cmocka_unit_test(test_countries),
        cmocka_unit_test(test_prefix_and_safe),
        cmocka_unit_test(test_pumping),
        cmocka_unit_test(test_phone_window_newer_send_stored_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
