/* tests/unit/api/test_status_json.c — the GET /otp/{id} body written directly
 * (api/status_json.c) is, byte for byte, what json_dumps(JSON_COMPACT) gives for
 * the object json_pack built before: on ordinary values, on empty and zero ones
 * (nulls, the default channel, no messages), on texts jansson must escape
 * (quotes, backslashes, control bytes, DEL, non-ASCII) and a slash, which it
 * does not, on times past year 9999, and on many long messages. A text that is
 * not UTF-8 is refused, as json_pack refused it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/status_json.h"

/* The object as status.c built it with jansson before status_json.c. */
static char *reference(const otp_request_info *info, otp_req_status status,
                       const otp_message_info *m, size_t n)
{
    json_t *messages = json_array();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(
            json_array_append_new(
                messages, json_pack("{s:s, s:s, s:o, s:o, s:o}", "messageId", m[i].public_id,
                                    "deliveryStatus", otp_msg_status_name(m[i].status), "provider",
                                    otp_api_json_str_or_null(m[i].provider), "updatedAt",
                                    otp_api_json_time_or_null(m[i].updated_at_ms), "error",
                                    otp_api_json_str_or_null(m[i].error))),
            0);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:i, s:o}", "requestId",
                  info->public_id, "phoneNumber", info->phone, "status",
                  otp_req_status_name(status), "channel", info->channel[0] ? info->channel : "sms",
                  "attemptsLeft", info->attempts_left, "maxAttempts", info->max_attempts,
                  "createdAt", otp_api_json_time_or_null(info->created_at_ms), "expiresAt",
                  otp_api_json_time_or_null(info->expires_at_ms), "verifiedAt",
                  otp_api_json_time_or_null(info->verified_at_ms), "resendCount",
                  info->resend_count, "messages", messages);
    assert_non_null(o);
    json_t *root = json_pack("{s:o}", "data", o);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    assert_non_null(text);
    return text;
}

static char *direct(const otp_request_info *info, otp_req_status status, const otp_message_info *m,
                    size_t n, size_t *ret_len)
{
    otp_sbuf messages = {0};
    for (size_t i = 0; i < n; i++)
        otp_status_json_message(&messages, &m[i]);
    char *text = otp_status_json(info, status, &messages, ret_len);
    otp_sbuf_free(&messages);
    return text;
}

static void same(const otp_request_info *info, otp_req_status status, const otp_message_info *m,
                 size_t n)
{
    char *want = reference(info, status, m, n);
    size_t len = 0;
    char *got = direct(info, status, m, n, &len);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
    free(want);
}

static otp_request_info a_request(void)
{
    otp_request_info r;
    memset(&r, 0, sizeof(r));
    snprintf(r.public_id, sizeof(r.public_id), "req_00VblGmB2HbSC5bbbwutwu");
    snprintf(r.phone, sizeof(r.phone), "+919876543210");
    snprintf(r.channel, sizeof(r.channel), "sms");
    r.status = OTP_REQ_PENDING;
    r.attempts_left = 3;
    r.max_attempts = 5;
    r.created_at_ms = 1795400000123;
    r.expires_at_ms = 1795400300123;
    r.resend_count = 1;
    return r;
}

static otp_message_info a_message(int i)
{
    otp_message_info m;
    memset(&m, 0, sizeof(m));
    snprintf(m.public_id, sizeof(m.public_id), "msg_00VblGmB2HbSC5bbbwutw%c", '0' + i % 10);
    m.status = i % 2 ? OTP_MSG_SENT : OTP_MSG_QUEUED;
    if (i % 2)
        snprintf(m.provider, sizeof(m.provider), "gateway-%d", i);
    m.updated_at_ms = i % 3 ? 1795400000123 + i : 0;
    return m;
}

static void test_ordinary(void **state)
{
    (void)state;
    otp_request_info r = a_request();
    otp_message_info m[2] = {a_message(0), a_message(1)};
    same(&r, OTP_REQ_PENDING, m, 2);
    r.verified_at_ms = 1795400100456;
    same(&r, OTP_REQ_VERIFIED, m, 2);
    same(&r, OTP_REQ_EXPIRED, m, 1);
}

static void test_empty_and_zero(void **state)
{
    (void)state;
    otp_request_info r = a_request();
    r.channel[0] = '\0'; /* "sms" */
    r.created_at_ms = 0; /* null */
    r.expires_at_ms = 0;
    r.attempts_left = 0;
    r.resend_count = 0;
    same(&r, OTP_REQ_LOCKED, NULL, 0); /* "messages":[] */
    r.attempts_left = -1;
    r.max_attempts = 2147483647;
    same(&r, OTP_REQ_CANCELLED, NULL, 0);
}

static void test_escaped_texts(void **state)
{
    (void)state;
    otp_request_info r = a_request();
    static const char *const texts[] = {
        "gateway said \"no\"",
        "back\\slash and /slash",
        "line\nfeed\ttab\rreturn\bback\fform",
        "control \x01\x1f and DEL \x7f",
        "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", /* é ✓ 😀 */
        "\"",
        " ",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        otp_message_info m = a_message(1);
        snprintf(m.error, sizeof(m.error), "%s", texts[i]);
        snprintf(m.provider, sizeof(m.provider), "%.31s", texts[i]);
        same(&r, OTP_REQ_PENDING, &m, 1);
    }
    static const char *const channels[] = {"a\"b\\c\n", "\x01x\x7f", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof(channels) / sizeof(channels[0]); i++) {
        snprintf(r.channel, sizeof(r.channel), "%s", channels[i]);
        same(&r, OTP_REQ_PENDING, NULL, 0);
    }
}

static void test_many_long_messages(void **state)
{
    (void)state;
    otp_request_info r = a_request();
    otp_message_info m[12];
    static const char fill[] = {'x', '"', '\x01', '/'}; /* \x01: six bytes out for one */
    for (int i = 0; i < 12; i++) {
        m[i] = a_message(i);
        memset(m[i].error, fill[i % 4], sizeof(m[i].error) - 1);
        m[i].error[sizeof(m[i].error) - 1] = '\0';
    }
    same(&r, OTP_REQ_PENDING, m, 12);
}

static void test_slash_and_far_times(void **state)
{
    (void)state;
    otp_request_info r = a_request();
    otp_message_info m = a_message(1);
    snprintf(m.provider, sizeof(m.provider), "a/b"); /* written as it is */
    r.created_at_ms = 253402300800000LL + 5;         /* year 10000: the gmtime path */
    m.updated_at_ms = 1;
    same(&r, OTP_REQ_PENDING, &m, 1);
}

static void test_not_utf8_refused(void **state)
{
    (void)state;
    otp_request_info r = a_request();
    otp_message_info m = a_message(1);
    snprintf(m.error, sizeof(m.error), "bad \xff byte");
    size_t len = 0;
    assert_null(direct(&r, OTP_REQ_PENDING, &m, 1, &len));
    assert_null(json_string(m.error)); /* as json_pack would have refused it */
    m = a_message(1);
    snprintf(m.provider, sizeof(m.provider), "gw\x80");
    assert_null(direct(&r, OTP_REQ_PENDING, &m, 1, &len));
    m = a_message(1);
    snprintf(r.channel, sizeof(r.channel), "\xe2\x9c");
    assert_null(direct(&r, OTP_REQ_PENDING, &m, 1, &len));
    r = a_request();
    snprintf(r.phone, sizeof(r.phone), "+91\xc3");
    assert_null(direct(&r, OTP_REQ_PENDING, &m, 1, &len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordinary),
        cmocka_unit_test(test_empty_and_zero),
        cmocka_unit_test(test_escaped_texts),
        cmocka_unit_test(test_many_long_messages),
        cmocka_unit_test(test_slash_and_far_times),
        cmocka_unit_test(test_not_utf8_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
