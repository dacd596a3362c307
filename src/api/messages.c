/* api/messages.c — GET /messages/{messageId} (SPEC 1.6): one SMS and its
 * delivery history.
 *
 * The message fields are SPEC's; `events` adds every status change the store
 * recorded (queued, sending, sent, delivered, failed, …, each with its time and
 * error), so an operator can see a retry or a late delivery report without the
 * logs. The text is never shown here: it holds the code.
 */
#include "api/api.h"
#include "util/clock.h"
#include "util/ids.h"

static void add_event(const otp_message_event *ev, void *ctx)
{
    json_array_append_new(
        ctx, json_pack("{s:s, s:o, s:o}", "status", otp_msg_status_name(ev->status), "at",
                       otp_api_json_time(ev->at_ms), "error", otp_api_json_str_or_null(ev->error)));
}

void otp_api_message(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    otp_message_info m;
    const char *id = otp_http_param(req, 0);

    if (!otp_api_authenticate(req, api, &auth))
        return;
    if (!OTP_API_HAS_READ(req, api, message_get))
        return;
    if (!otp_id_valid(id, "msg_")) {
        otp_http_reply_error(req, OTP_E_MESSAGE_NOT_FOUND, NULL, NULL);
        return;
    }
    json_t *events = json_array();
    if (!events) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    otp_err e =
        api->store->ops->message_get(api->store, auth.account_id, id, &m, add_event, events);
    if (!e && m.test != auth.test)
        e = OTP_E_MESSAGE_NOT_FOUND; /* the other key mode's: as unknown */
    if (e) {
        json_decref(events);
        otp_http_reply_error(req, e == OTP_E_MESSAGE_NOT_FOUND ? e : OTP_E_UNAVAILABLE, NULL, NULL);
        return;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:i, s:i, s:o, s:o, s:o, s:o}",
                          "messageId", m.public_id, "requestId", m.request_id, "to", m.to, "status",
                          otp_msg_status_name(m.status), "provider",
                          otp_api_json_str_or_null(m.provider), "providerMessageId",
                          otp_api_json_str_or_null(m.provider_message_id), "attempts", m.attempts,
                          "segments", m.segments, "createdAt", otp_api_json_time(m.created_at_ms),
                          "updatedAt", otp_api_json_time(m.updated_at_ms), "error",
                          otp_api_json_str_or_null(m.error), "events", events);
    if (!o) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    otp_http_reply_data(req, 200, o);
}
