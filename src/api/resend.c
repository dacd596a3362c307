/* api/resend.c — POST /otp/resend (SPEC 1.5).
 *
 * Same shape as a send: read the request, build the new message on the HTTP
 * thread, hand one OTP_TXN_RESEND to the store and park. The transaction makes
 * every decision that must be atomic (the status, at most 3 resends, 30 s since
 * the last message, the wallet) so two resends racing each other cannot both
 * pass the cooldown.
 *
 * The text is rendered from the template the send used (or the account's
 * default, or the built-in text, if that template was removed since) with the
 * send's app name and app hash. The code depends on the account's resend
 * strategy: `rotate` (the default) draws a new code and the old one stops
 * working; `reuse` unseals the code kept (sealed under the server's box key) at
 * send time and sends it again, so a user typing the code of a slow first SMS
 * still succeeds. A request sent before the account chose `reuse` has no sealed
 * code and is rotated. The send's `variables` are kept with it too (keep.c):
 * a resend without `variables` uses them, one with `variables` uses its own.
 */
#include "api/api.h"
#include "api/guard.h"
#include "core/otp_code.h"
#include "core/otp_state.h"
#include "core/seal.h"
#include "util/clock.h"
#include "util/ids.h"
#include "util/str.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESEND_COOLDOWN_MS 30000
#define MAX_RESENDS 3

typedef struct resend_state {
    otp_txn txn;
    otp_http_req *req;
    otp_api *api;
    int64_t old_expires_at_ms; /* for resend_limit_reached's retryAfter */
    json_t *reply;
    char *idem_text;
    uint8_t sealed[OTP_SMS_TEXT_MAX + OTP_SEAL_OVERHEAD];
} resend_state;

static void resend_state_free(void *p)
{
    resend_state *st = p;
    json_decref(st->reply);
    free(st->idem_text);
    free(st->txn.u.resend.idem.replay_response);
    free(st);
}

static void resend_finish(otp_http_req *req, void *app)
{
    resend_state *st = (resend_state *)otp_http_state(req);
    otp_txn_resend *r = &st->txn.u.resend;
    (void)app;
    if (otp_api_idem_replay(req, &r->idem))
        return;
    if (otp_guard_finish(req, st->txn.err, &r->abuse))
        return;
    switch (st->txn.err) {
    case OTP_OK:
        otp_metrics_send(true, r->test);
        otp_http_reply_data(req, 200, json_incref(st->reply));
        return;
    case OTP_E_INSUFFICIENT_BALANCE:
        otp_metrics_wallet_refusal();
        otp_http_reply_error(req, st->txn.err, NULL, NULL);
        return;
    case OTP_E_RESEND_TOO_SOON:
        otp_http_reply_error(
            req, OTP_E_RESEND_TOO_SOON, NULL,
            json_pack("{s:i}", "retryAfter", r->retry_after_s > 0 ? r->retry_after_s : 1));
        return;
    case OTP_E_RESEND_LIMIT_REACHED: {
        /* No resend will ever be allowed: retry means a new send, which makes
         * sense once this request has expired. */
        int64_t left_ms = st->old_expires_at_ms - otp_now_ms();
        int64_t s = left_ms > 0 ? (left_ms + 999) / 1000 : 1;
        otp_http_reply_error(req, OTP_E_RESEND_LIMIT_REACHED,
                             "No more resends for this request: send a new one after it expires",
                             json_pack("{s:I}", "retryAfter", (json_int_t)s));
        return;
    }
    default:
        otp_http_reply_error(req, st->txn.err, NULL, NULL);
        return;
    }
}

static void resend_done(otp_txn *txn)
{
    resend_state *st = txn->user;
    if (txn->err == OTP_OK && !txn->u.resend.idem.replayed && !txn->u.resend.test &&
        st->api->dispatcher)
        otp_dispatcher_wake(st->api->dispatcher);
    otp_http_resume(st->req);
}

/* The code to send: the kept one under `reuse` (true in *ret_reused), else a
 * new one. kept is what the request kept ("" if no code). A kept code that no
 * longer verifies (a resend rotated it while the account was on `rotate`) is
 * never sent again: the request is rotated. */
static void resend_code(const otp_api *api, const otp_key_auth *auth, const otp_request_info *info,
                        const char *kept, char *code, bool *ret_reused)
{
    int len;
    *ret_reused = auth->resend_strategy == OTP_RESEND_REUSE && otp_code_well_formed(kept, &len) &&
                  len == info->code_length;
    if (*ret_reused) {
        uint8_t hash[OTP_CODE_HASH_LEN];
        otp_code_hash(&api->secrets.code_mac, info->public_id, kept, hash);
        *ret_reused = otp_code_hash_equal(hash, info->code_hash);
    }
    if (*ret_reused)
        memcpy(code, kept, (size_t)len + 1);
    else
        otp_code_generate(info->code_length, code);
}

/* The send's variables, when the resend gives none: borrowed from kept. */
static void kept_vars(json_t *kept, otp_api_vars *vars)
{
    const char *name;
    json_t *value;
    json_object_foreach(kept, name, value)
    {
        if (vars->n < OTP_API_MAX_VARS && json_is_string(value)) {
            vars->names[vars->n] = name;
            vars->values[vars->n++] = json_string_value(value);
        }
    }
}

void otp_api_resend(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    json_t *body = NULL;
    const char *request_id;
    otp_idem idem;
    otp_api_vars vars;
    otp_request_info info;
    otp_template tpl;
    char code[OTP_CODE_MAX_LEN + 1];
    char text[OTP_SMS_TEXT_MAX + 1];
    size_t len;
    int segments;
    bool reused;
    char kept_code[OTP_CODE_MAX_LEN + 1] = "";
    json_t *kept = NULL; /* the send's variables, when kept */

    if (!otp_api_authenticate(req, api, &auth))
        return;
    if (!OTP_API_HAS_READ(req, api, request_get))
        return;
    otp_err e = otp_http_json_body(req, &body);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    json_t *rid = json_object_get(body, "requestId");
    if (!rid || json_is_null(rid)) {
        otp_api_invalid_field(req, "requestId", "requestId is required");
        goto out;
    }
    if (!json_is_string(rid)) {
        otp_api_invalid_field(req, "requestId", "requestId must be a string");
        goto out;
    }
    request_id = json_string_value(rid);
    if (!otp_api_idem_init(req, body, auth.test, &idem) || !otp_api_parse_vars(req, body, &vars))
        goto out;
    if (!otp_id_valid(request_id, "req_")) {
        otp_http_reply_error(req, OTP_E_OTP_NOT_FOUND, NULL, NULL);
        goto out;
    }
    /* The other mode's request is as unknown, before anything is done for it
     * (the txn checks it again). */
    e = otp_api_request_get(api, &auth, request_id, &info);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        goto out;
    }
    char masked[OTP_PHONE_MASK_SIZE];
    otp_phone_mask(info.phone, masked);
    otp_http_log_phone(req, masked);
    /* A finished request is answered by the txn (an idempotent replay first,
     * then the key's kind, then its 409 or 410): no text is rendered for it,
     * since the variables kept for it are gone with its pending state. */
    otp_req_state rs = {.status = info.status,
                        .attempts_left = info.attempts_left,
                        .expires_at_ms = info.expires_at_ms,
                        .verified_at_ms = info.verified_at_ms};
    bool finished = otp_req_effective_status(&rs, otp_now_ms()) != OTP_REQ_PENDING;
    /* A removed template falls back to the default rather than refusing. */
    e = otp_api_template(api, &auth, info.template_id[0] ? info.template_id : NULL, &tpl, NULL);
    if (e == OTP_E_NOT_FOUND)
        e = otp_api_template(api, &auth, NULL, &tpl, NULL);
    if (e) {
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
        goto out;
    }

    resend_state *st = calloc(1, sizeof(*st));
    if (!st) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        goto out;
    }
    otp_http_set_state(req, st, resend_state_free);
    st->req = req;
    st->api = api;
    st->old_expires_at_ms = info.expires_at_ms;
    otp_txn_resend *r = &st->txn.u.resend;
    int64_t now = otp_now_ms();
    memcpy(r->request_id, info.public_id, OTP_ID_SIZE);
    otp_id_new("msg_", now, r->message_id);

    if (info.code_sealed_len)
        otp_api_keep_open(api, info.public_id, info.code_sealed, info.code_sealed_len, kept_code,
                          &kept);
    if (vars.n == 0 && kept)
        kept_vars(kept, &vars);
    resend_code(api, &auth, &info, kept_code, code, &reused);
    sodium_memzero(kept_code, sizeof(kept_code));
    r->rotate = !reused;
    if (r->rotate)
        otp_code_hash(&api->secrets.code_mac, r->request_id, code, r->code_hash);
    otp_template_vars v = {
        .code = code,
        .app_name = vars.app_name      ? vars.app_name
                    : info.app_name[0] ? info.app_name
                                       : auth.account_name,
        .expires_minutes = (info.expires_in_s + 59) / 60,
        .app_hash = info.app_hash[0] ? info.app_hash : NULL,
        .webotp_domain = auth.webotp_domain,
        .names = vars.names,
        .values = vars.values,
        .nvars = vars.n,
    };
    if (finished) { /* a text the txn never stores (see above) */
        memcpy(text, "-", 2);
        len = 1;
        segments = 1;
    } else if (!otp_api_render(req, &tpl, &v, "variables", text, &len, &segments)) {
        sodium_memzero(code, sizeof(code));
        goto out;
    }
    otp_seal(api->secrets.box_key, r->message_id, text, len, st->sealed);
    sodium_memzero(text, sizeof(text));
    sodium_memzero(code, sizeof(code));

    r->account_id = auth.account_id;
    r->key_id = auth.key_id;
    r->test = auth.test;
    r->now_ms = now;
    r->cooldown_ms = RESEND_COOLDOWN_MS;
    r->max_resends = MAX_RESENDS;
    r->segments = segments;
    r->sealed_text = st->sealed;
    r->sealed_text_len = len + OTP_SEAL_OVERHEAD;
    otp_str_copy(r->sender_id, sizeof(r->sender_id), tpl.sender_id);
    otp_str_copy(r->dlt_template_id, sizeof(r->dlt_template_id), tpl.dlt_template_id);

    /* The txn sets expires_at = now + expiresIn and attempts_left = maxAttempts,
     * so the reply is known now (and can be kept with the idempotency key). */
    char expires[OTP_ISO8601_LEN + 1];
    otp_time_iso8601(now + (int64_t)info.expires_in_s * 1000, expires);
    st->reply = json_pack("{s:s, s:s, s:i}", "requestId", r->request_id, "expiresAt", expires,
                          "attemptsLeft", info.max_attempts);
    r->idem = idem;
    /* SPEC 3's country allow-list holds for a resend too (it may have narrowed
     * since the send): the number is parsed again for its region. */
    otp_phone phone;
    bool parsed = otp_phone_parse(info.phone, &phone) == OTP_PHONE_OK;
    if (!otp_guard_prepare(req, api, &auth, parsed ? &phone : NULL, info.phone, &r->abuse))
        goto out;
    if (!st->reply ||
        (r->idem.use && !otp_api_idem_set_reply(&r->idem, 200, st->reply, &st->idem_text))) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        goto out;
    }

    st->txn.kind = OTP_TXN_RESEND;
    st->txn.done = resend_done;
    st->txn.user = st;
    otp_api_park(req, resend_finish);
    api->store->ops->submit(api->store, &st->txn);
out:
    sodium_memzero(kept_code, sizeof(kept_code));
    json_decref(kept);
    json_decref(body);
}
