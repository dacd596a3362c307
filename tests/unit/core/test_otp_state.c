/* tests/unit/core/test_otp_state.c — the request state machine, with injected time. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/otp_state.h"

#define T0 INT64_C(1700000000000)
#define TTL INT64_C(300000)

static otp_req_state fresh(int attempts)
{
    otp_req_state s = {OTP_REQ_PENDING, attempts, T0 + TTL, 0};
    return s;
}

static void test_pending_to_verified_on_match(void **state)
{
    otp_req_state s = fresh(3);
    bool changed = false;

    assert_int_equal(otp_req_effective_status(&s, T0), OTP_REQ_PENDING);
    assert_int_equal(otp_req_guess(&s, true, T0 + 1000, &changed), OTP_OK);
    assert_true(changed);
    assert_int_equal(s.status, OTP_REQ_VERIFIED);
    assert_int_equal(s.verified_at_ms, T0 + 1000);
    assert_int_equal(s.attempts_left, 3); /* a right guess costs nothing */
}

static void test_match_just_before_expiry_verifies(void **state)
{
    otp_req_state s = fresh(3);
    assert_int_equal(otp_req_guess(&s, true, T0 + TTL - 1, NULL), OTP_OK);
    assert_int_equal(s.status, OTP_REQ_VERIFIED);
}

static void test_wrong_guesses_decrement_then_lock(void **state)
{
    otp_req_state s = fresh(3);
    bool changed = false;

    assert_int_equal(otp_req_guess(&s, false, T0, &changed), OTP_E_OTP_INCORRECT);
    assert_true(changed);
    assert_int_equal(s.attempts_left, 2);
    assert_int_equal(s.status, OTP_REQ_PENDING);
    assert_int_equal(otp_req_guess(&s, false, T0, &changed), OTP_E_OTP_INCORRECT);
    assert_int_equal(s.attempts_left, 1);
    assert_int_equal(s.status, OTP_REQ_PENDING);
    /* The attempt that uses the last one locks the request. */
    assert_int_equal(otp_req_guess(&s, false, T0, &changed), OTP_E_OTP_INCORRECT);
    assert_true(changed);
    assert_int_equal(s.attempts_left, 0);
    assert_int_equal(s.status, OTP_REQ_LOCKED);
    assert_int_equal(otp_req_effective_status(&s, T0), OTP_REQ_LOCKED);
}

static void test_attempts_exhausted_after_lock_even_with_right_code(void **state)
{
    otp_req_state s = fresh(1), before;
    bool changed = true;

    assert_int_equal(otp_req_guess(&s, false, T0, NULL), OTP_E_OTP_INCORRECT);
    before = s;
    assert_int_equal(otp_req_guess(&s, true, T0, &changed), OTP_E_OTP_ATTEMPTS_EXHAUSTED);
    assert_false(changed);
    assert_memory_equal(&s, &before, sizeof(s));
    /* Locked stays locked after expiry too: locked is stored, not computed. */
    assert_int_equal(otp_req_guess(&s, true, T0 + TTL * 2, &changed), OTP_E_OTP_ATTEMPTS_EXHAUSTED);
    assert_int_equal(otp_req_effective_status(&s, T0 + TTL * 2), OTP_REQ_LOCKED);
}

static void test_n_attempts_means_at_most_n_guesses(void **state)
{
    /* SPEC 1.4: maxAttempts = N accepts at most N guesses, and a code verifies at
     * the Nth guess if right. */
    otp_req_state s = fresh(5);
    for (int i = 0; i < 4; i++)
        assert_int_equal(otp_req_guess(&s, false, T0, NULL), OTP_E_OTP_INCORRECT);
    assert_int_equal(otp_req_guess(&s, true, T0, NULL), OTP_OK);
}

static void test_pending_with_no_budget_locks(void **state)
{
    otp_req_state s = fresh(0);
    bool changed = false;

    assert_int_equal(otp_req_guess(&s, true, T0, &changed), OTP_E_OTP_ATTEMPTS_EXHAUSTED);
    assert_true(changed);
    assert_int_equal(s.status, OTP_REQ_LOCKED);
}

static void test_expired_when_now_reaches_expiry(void **state)
{
    otp_req_state s = fresh(3), before = s;
    bool changed = true;

    assert_int_equal(otp_req_effective_status(&s, T0 + TTL - 1), OTP_REQ_PENDING);
    assert_int_equal(otp_req_effective_status(&s, T0 + TTL), OTP_REQ_EXPIRED);
    assert_int_equal(otp_req_guess(&s, true, T0 + TTL, &changed), OTP_E_OTP_EXPIRED);
    assert_false(changed);
    assert_int_equal(otp_req_guess(&s, false, T0 + TTL + 1, &changed), OTP_E_OTP_EXPIRED);
    assert_false(changed);
    /* Expired is computed: nothing is written and no attempt is used. */
    assert_memory_equal(&s, &before, sizeof(s));
    assert_int_equal(s.status, OTP_REQ_PENDING);
}

static void test_verified_stays_verified_after_expiry(void **state)
{
    otp_req_state s = fresh(3), before;
    bool changed = true;

    assert_int_equal(otp_req_guess(&s, true, T0, NULL), OTP_OK);
    before = s;
    assert_int_equal(otp_req_effective_status(&s, T0 + TTL * 10), OTP_REQ_VERIFIED);
    assert_int_equal(otp_req_guess(&s, true, T0 + 1, &changed), OTP_E_OTP_ALREADY_VERIFIED);
    assert_false(changed);
    assert_int_equal(otp_req_guess(&s, true, T0 + TTL * 10, &changed), OTP_E_OTP_ALREADY_VERIFIED);
    assert_false(changed);
    assert_int_equal(otp_req_guess(&s, false, T0 + TTL * 10, &changed), OTP_E_OTP_ALREADY_VERIFIED);
    assert_false(changed);
    assert_memory_equal(&s, &before, sizeof(s)); /* verified_at not moved */
}

static void test_cancelled(void **state)
{
    otp_req_state s = fresh(3), before;
    bool changed = true;

    s.status = OTP_REQ_CANCELLED;
    before = s;
    assert_int_equal(otp_req_guess(&s, true, T0, &changed), OTP_E_OTP_CANCELLED);
    assert_false(changed);
    assert_int_equal(otp_req_guess(&s, false, T0 + TTL * 2, &changed), OTP_E_OTP_CANCELLED);
    assert_int_equal(otp_req_effective_status(&s, T0 + TTL * 2), OTP_REQ_CANCELLED);
    assert_memory_equal(&s, &before, sizeof(s));
}

static void test_status_names(void **state)
{
    assert_string_equal(otp_req_status_name(OTP_REQ_PENDING), "pending");
    assert_string_equal(otp_req_status_name(OTP_REQ_VERIFIED), "verified");
    assert_string_equal(otp_req_status_name(OTP_REQ_LOCKED), "locked");
    assert_string_equal(otp_req_status_name(OTP_REQ_CANCELLED), "cancelled");
    assert_string_equal(otp_req_status_name(OTP_REQ_EXPIRED), "expired");
    assert_string_equal(otp_req_status_name((otp_req_status)99), "unknown");
    assert_string_equal(otp_msg_status_name(OTP_MSG_QUEUED), "queued");
    assert_string_equal(otp_msg_status_name(OTP_MSG_SENDING), "sending");
    assert_string_equal(otp_msg_status_name(OTP_MSG_SENT), "sent");
    assert_string_equal(otp_msg_status_name(OTP_MSG_DELIVERED), "delivered");
    assert_string_equal(otp_msg_status_name(OTP_MSG_FAILED), "failed");
    assert_string_equal(otp_msg_status_name(OTP_MSG_UNDELIVERABLE), "undeliverable");
    assert_string_equal(otp_msg_status_name((otp_msg_status)-1), "unknown");
    assert_string_equal(otp_msg_status_name((otp_msg_status)6), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending_to_verified_on_match),
        cmocka_unit_test(test_match_just_before_expiry_verifies),
        cmocka_unit_test(test_wrong_guesses_decrement_then_lock),
        cmocka_unit_test(test_attempts_exhausted_after_lock_even_with_right_code),
        cmocka_unit_test(test_n_attempts_means_at_most_n_guesses),
        cmocka_unit_test(test_pending_with_no_budget_locks),
        cmocka_unit_test(test_expired_when_now_reaches_expiry),
        cmocka_unit_test(test_verified_stays_verified_after_expiry),
        cmocka_unit_test(test_cancelled),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
