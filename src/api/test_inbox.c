/* api/test_inbox.c — GET /test/messages (SPEC 1.7): what the account's test keys
 * "sent" to a number, text included, so a customer's CI can read the code.
 *
 * Test keys are never charged and their messages never reach a provider: the
 * store keeps them (sealed, like every outbox text) for this route only. The
 * route needs a test key; a live key gets 403 test_key_required, so a live
 * integration can never read codes back. A '+' sent unencoded in a query string
 * arrives as a space (form encoding); a leading space followed by digits is read
 * as the '+' the caller meant.
 */
#include "api/api.h"
#include "core/phone.h"
#include "core/seal.h"
#include "util/clock.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_LIMIT 10
#define MAX_LIMIT 100

typedef struct inbox_ctx {
    const otp_api *api;
    json_t *list;
} inbox_ctx;

static void add_message(const otp_test_message *m, void *arg)
{
    inbox_ctx *c = arg;
    char text[OTP_SMS_TEXT_MAX + 1];
    json_t *t = json_null();
    if (m->sealed && m->sealed_len > OTP_SEAL_OVERHEAD &&
        m->sealed_len <= OTP_SMS_TEXT_MAX + OTP_SEAL_OVERHEAD &&
        otp_unseal(c->api->secrets.box_key, m->message_id, m->sealed, m->sealed_len, text) == 0)
        t = json_string(text);
    sodium_memzero(text, sizeof(text));
    char at[OTP_ISO8601_LEN + 1];
    otp_time_iso8601(m->created_at_ms, at);
    json_array_append_new(c->list, json_pack("{s:s, s:s, s:s, s:o, s:s}", "messageId",
                                             m->message_id, "requestId", m->request_id, "to", m->to,
                                             "text", t, "createdAt", at));
}

void otp_api_test_messages(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    otp_phone phone;
    int limit = DEFAULT_LIMIT;
    char number[OTP_PHONE_SIZE + 8];

    if (!otp_api_authenticate(req, api, &auth))
        return;
    if (!auth.test) {
        otp_http_reply_error(req, OTP_E_TEST_KEY_REQUIRED, NULL, NULL);
        return;
    }
    if (!OTP_API_HAS_READ(req, api, test_inbox))
        return;
    const char *q = otp_http_query(req, "phoneNumber");
    if (!q || !*q) {
        otp_api_invalid_field(req, "phoneNumber", "phoneNumber is required");
        return;
    }
    if (!otp_api_int_query(req, "limit", 1, MAX_LIMIT, &limit))
        return;
    if (strlen(q) >= sizeof(number)) {
        otp_http_reply_error(req, OTP_E_INVALID_PHONE_NUMBER, NULL, NULL);
        return;
    }
    snprintf(number, sizeof(number), "%s", q);
    if (number[0] == ' ' && number[1] >= '0' && number[1] <= '9')
        number[0] = '+';
    if (otp_phone_parse(number, &phone) != OTP_PHONE_OK) {
        otp_http_reply_error(req, OTP_E_INVALID_PHONE_NUMBER, NULL, NULL);
        return;
    }
    char masked[OTP_PHONE_MASK_SIZE];
    otp_phone_mask(phone.e164, masked);
    otp_http_log_phone(req, masked);

    inbox_ctx c = {.api = api, .list = json_array()};
    if (!c.list) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    otp_err e = api->store->ops->test_inbox(api->store, auth.account_id, phone.e164, limit,
                                            add_message, &c);
    if (e) {
        json_decref(c.list);
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
        return;
    }
    otp_http_reply_data(req, 200, c.list);
}
