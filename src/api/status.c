/* api/status.c — GET /otp/{requestId} and POST /otp/{requestId}/cancel (SPEC 1.6).
 *
 * The status is computed, not stored: a pending request past its expiry reads
 * "expired" (otp_req_effective_status), so there is no sweeper racing the
 * clients. Both routes answer the same object, the one place where everything
 * about a request is shown (the send/resend/verify replies stay minimal for
 * strict clients). A cancel is a txn like any other write: pending → cancelled
 * atomically with respect to verifies and resends, then the object is read
 * back (on a read thread with PostgreSQL, api/reads.c). Cancelling a
 * cancelled request answers 200 again, so a client may retry a cancel whose
 * answer it lost. A key sees the requests of its own mode only (test or
 * live), as for verify and resend: the other mode's are 404.
 */
#include "api/api.h"
#include "api/status_json.h"
#include "core/phone.h"
#include "util/clock.h"
#include "util/ids.h"

#include <stdlib.h>
#include <string.h>

typedef struct cancel_state {
    otp_txn txn;
    otp_http_req *req;
    otp_api *api;
    otp_key_auth auth; /* for the object read back */
} cancel_state;

static void add_message(const otp_message_info *m, void *ctx)
{
    otp_status_json_message(ctx, m);
}

/* What a read of request info by key auth answers: a request of the other
 * key mode is not found, and a store failure is OTP_E_UNAVAILABLE. */
static otp_err seen_by(otp_err e, const otp_request_info *info, const otp_key_auth *auth)
{
    if (!e && info->test != auth->test)
        e = OTP_E_OTP_NOT_FOUND;
    if (e)
        return e == OTP_E_OTP_NOT_FOUND ? e : OTP_E_UNAVAILABLE;
    return OTP_OK;
}

otp_err otp_api_request_get(otp_api *api, const otp_key_auth *auth, const char *request_id,
                            otp_request_info *ret_info)
{
    otp_request_info info;
    otp_err e = api->store->ops->request_get(api->store, auth->account_id, request_id, &info);
    if ((e = seen_by(e, &info, auth)))
        return e;
    *ret_info = info;
    return OTP_OK;
}

/* The GET /otp/{id} body for a request of this account and key mode, and its
 * number masked for the log line. Returns OTP_OK and a new allocation of
 * *ret_len bytes, OTP_E_OTP_NOT_FOUND, OTP_E_UNAVAILABLE or OTP_E_INTERNAL. */
static otp_err status_body(otp_api *api, const otp_key_auth *auth, const char *request_id,
                           char **ret, size_t *ret_len, char masked[OTP_PHONE_MASK_SIZE])
{
    otp_sbuf messages = {0};
    otp_request_info info;
    otp_err e = api->store->ops->request_status(api->store, auth->account_id, auth->test,
                                                request_id, &info, add_message, &messages);
    if ((e = seen_by(e, &info, auth))) {
        otp_sbuf_free(&messages);
        return e;
    }
    otp_phone_mask(info.phone, masked);
    otp_req_state rs = {
        .status = info.status,
        .attempts_left = info.attempts_left,
        .expires_at_ms = info.expires_at_ms,
        .verified_at_ms = info.verified_at_ms,
    };
    char *body =
        otp_status_json(&info, otp_req_effective_status(&rs, otp_now_ms()), &messages, ret_len);
    otp_sbuf_free(&messages);
    if (!body)
        return OTP_E_INTERNAL;
    *ret = body;
    return OTP_OK;
}

static void reply_status(otp_http_req *req, otp_api *api, const otp_key_auth *auth,
                         const char *request_id)
{
    char *body;
    size_t len;
    char masked[OTP_PHONE_MASK_SIZE];
    otp_err e = status_body(api, auth, request_id, &body, &len, masked);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    otp_http_log_phone(req, masked);
    otp_http_reply_text(req, 200, "application/json", body, len);
    free(body);
}

void otp_api_status(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    const char *id = otp_http_param(req, 0);
    if (!otp_api_authenticate(req, api, &auth))
        return;
    if (!OTP_API_HAS_READ(req, api, request_status))
        return;
    if (!otp_id_valid(id, "req_")) {
        otp_http_reply_error(req, OTP_E_OTP_NOT_FOUND, NULL, NULL);
        return;
    }
    reply_status(req, api, &auth, id);
}

/* POST /otp/{x}: a request id has no POST (405; Allow: GET from the router,
 * which passed GET /otp/{} first); anything else is an unknown route, as it
 * was before GET /otp/{requestId} existed. */
void otp_api_otp_post_fallback(otp_http_req *req, void *app)
{
    (void)app;
    if (otp_id_valid(otp_http_param(req, 0), "req_"))
        otp_http_reply_error(req, OTP_E_METHOD_NOT_ALLOWED, NULL, NULL);
    else
        otp_http_reply_error(req, OTP_E_NOT_FOUND, NULL, NULL);
}

static bool cancel_reads_back(const otp_txn *txn)
{
    return txn->err == OTP_OK || txn->err == OTP_E_OTP_CANCELLED;
}

/* On the HTTP thread; or, for the read-back, on a read thread (cancel_done). */
static void cancel_finish(otp_http_req *req, void *app)
{
    cancel_state *st = (cancel_state *)otp_http_state(req);
    (void)app;
    otp_txn_cancel *c = &st->txn.u.cancel;
    if (cancel_reads_back(&st->txn))
        reply_status(req, st->api, &st->auth, c->request_id);
    else
        otp_http_reply_error(req, st->txn.err, NULL, NULL);
}

/* The read-back waits on a read thread where there are read threads
 * (PostgreSQL), never on the HTTP thread. */
static void cancel_done(otp_txn *txn)
{
    cancel_state *st = txn->user;
    if (!cancel_reads_back(txn) || !otp_api_read_after(st->req, st->api, cancel_finish))
        otp_http_resume(st->req);
}

void otp_api_cancel(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    const char *id = otp_http_param(req, 0);
    if (!otp_api_authenticate(req, api, &auth))
        return;
    if (!OTP_API_HAS_READ(req, api, request_get) || !OTP_API_HAS_READ(req, api, request_status))
        return;
    if (!otp_id_valid(id, "req_")) {
        otp_http_reply_error(req, OTP_E_OTP_NOT_FOUND, NULL, NULL);
        return;
    }
    /* A request's mode never changes, so it is checked before the txn. */
    otp_request_info info;
    otp_err e = otp_api_request_get(api, &auth, id, &info);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    cancel_state *st = calloc(1, sizeof(*st));
    if (!st) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    otp_http_set_state(req, st, free);
    st->req = req;
    st->api = api;
    st->auth = auth;
    st->txn.kind = OTP_TXN_CANCEL;
    st->txn.done = cancel_done;
    st->txn.user = st;
    st->txn.u.cancel.account_id = auth.account_id;
    memcpy(st->txn.u.cancel.request_id, id, OTP_ID_SIZE);
    st->txn.u.cancel.now_ms = otp_now_ms();
    otp_api_park(req, cancel_finish);
    api->store->ops->submit(api->store, &st->txn);
}
