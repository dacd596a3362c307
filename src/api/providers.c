/* api/providers.c — POST /providers/{name}/dlr: delivery reports from HTTP gateways.
 *
 * No API key: a gateway authenticates with the provider's dlr_secret, in
 * X-DLR-Secret (or Authorization: Bearer), which the provider compares in
 * constant time. The provider decodes the body (its field names are
 * configurable) and the report goes to the store like an SMPP receipt does
 * (delivery/dlr.h): the store finds the message by (provider, gateway id) and
 * moves it to delivered, undeliverable or failed, refunding a failure once; a
 * repeated or out-of-order report changes nothing. Replies:
 *   200 {"data": {"recorded": true, "messageId": "msg_…", "status": "delivered"}}
 *   200 {"data": {"recorded": false}}   an intermediate state ("sent", "enroute"…)
 *   401 unauthorized (wrong or missing secret: nothing is read or changed)
 *   404 not_found (no provider of that name takes reports), message_not_found
 *   400 invalid_json / invalid_request (details.field), 503 unavailable.
 * The handler parks the connection while the store commits, like a send.
 */
#include "api/api.h"
#include "delivery/dlr.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct dlr_state {
    otp_dlr r;
    otp_http_req *req;
} dlr_state;

static void dlr_finish(otp_http_req *req, void *app)
{
    dlr_state *st = otp_http_state(req);
    (void)app;
    if (st->r.err == OTP_E_MESSAGE_NOT_FOUND) {
        otp_http_reply_error(req, OTP_E_MESSAGE_NOT_FOUND,
                             "No message sent through this provider has that id", NULL);
        return;
    }
    if (st->r.err != OTP_OK) {
        otp_http_reply_error(req, st->r.err == OTP_E_INTERNAL ? OTP_E_INTERNAL : OTP_E_UNAVAILABLE,
                             NULL, NULL);
        return;
    }
    otp_http_reply_data(req, 200,
                        json_pack("{s:b, s:s, s:s}", "recorded", 1, "messageId", st->r.message_id,
                                  "status", otp_dlr_status_name(st->r.status)));
}

static void dlr_done(otp_dlr *r)
{
    dlr_state *st = r->user;
    otp_http_resume(st->req);
}

/* The caller's secret: X-DLR-Secret, else the token of Authorization: Bearer. */
static const char *credential(otp_http_req *req)
{
    const char *s = otp_http_header(req, "X-DLR-Secret");
    if (s)
        return s;
    const char *a = otp_http_header(req, "Authorization");
    if (a && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        while (*a == ' ')
            a++;
        return a;
    }
    return NULL;
}

void otp_api_provider_dlr(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_provider *p = otp_dispatcher_provider(api->dispatcher, otp_http_param(req, 0));
    if (!p || !p->takes_http_dlr || !p->ops->dlr_auth || !p->ops->dlr_parse) {
        otp_http_reply_error(req, OTP_E_NOT_FOUND,
                             "No provider of that name takes delivery reports", NULL);
        return;
    }
    if (!p->ops->dlr_auth(p, credential(req))) {
        otp_http_reply_error(req, OTP_E_UNAUTHORIZED,
                             "A valid delivery-report secret is required in X-DLR-Secret", NULL);
        return;
    }
    json_t *body = NULL;
    otp_err e = otp_http_json_body(req, &body);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    dlr_state *st = calloc(1, sizeof(*st));
    if (!st) {
        json_decref(body);
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    otp_http_set_state(req, st, free);
    const char *field = NULL;
    int k = p->ops->dlr_parse(p, body, &st->r, &field);
    if (k < 0) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "%s is missing or invalid: the gateway's message id (string or integer), or a "
                 "status (delivered, undeliverable, failed)",
                 field ? field : "a field");
        otp_api_invalid_field(req, field ? field : "", msg);
    } else if (k == 1) {
        otp_http_reply_data(req, 200, json_pack("{s:b}", "recorded", 0));
    } else {
        st->req = req;
        st->r.done = dlr_done;
        st->r.user = st;
        otp_http_suspend(req, dlr_finish);
        otp_dlr_submit(api->store, &st->r);
    }
    json_decref(body);
}
