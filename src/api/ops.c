/* api/ops.c — operational routes without an API key (SPEC 1.11): liveness,
 * readiness, and in test builds only, the clock hook the e2e tests use to
 * expire codes without sleeping. */
#include "api/api.h"
#include "otpd_config.h"
#include "util/clock.h"
#include "util/log.h"

void otp_api_healthz(otp_http_req *req, void *app)
{
    (void)app;
    otp_http_reply_data(req, 200, json_pack("{s:s}", "status", "ok"));
}

void otp_api_readyz(otp_http_req *req, void *app)
{
    otp_api *api = app;
    if (api->store->ops->schema_version(api->store) != OTP_SCHEMA_VERSION) {
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, "The store is not reachable", NULL);
        return;
    }
    if (!api->dispatcher || !otp_dispatcher_ready(api->dispatcher)) {
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, "No SMS provider is usable", NULL);
        return;
    }
    otp_http_reply_data(req, 200, json_pack("{s:s}", "status", "ready"));
}

void otp_api_test_clock(otp_http_req *req, void *app)
{
    (void)app;
#if OTPD_TEST_HOOKS
    json_t *body = NULL;
    otp_err e = otp_http_json_body(req, &body);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    json_t *adv = json_object_get(body, "advanceMs");
    if (!json_is_integer(adv) || json_integer_value(adv) < 0) {
        otp_api_invalid_field(req, "advanceMs", "advanceMs must be a non-negative integer");
    } else {
        otp_clock_advance_ms(json_integer_value(adv));
        otp_log(OTP_LOG_WARN, "event=test_clock advanceMs=%lld",
                (long long)json_integer_value(adv));
        char now[OTP_ISO8601_LEN + 1];
        otp_time_iso8601(otp_now_ms(), now);
        otp_http_reply_data(req, 200, json_pack("{s:s}", "now", now));
    }
    json_decref(body);
#else
    otp_http_reply_error(req, OTP_E_NOT_FOUND, NULL, NULL);
#endif
}
