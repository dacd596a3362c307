/* api/otp.c — POST /otp/send and POST /otp/verify (SPEC 1.3, 1.4).
 *
 * Both handlers do everything that needs no lock on the HTTP thread (parse and
 * validate, normalise the phone number, draw the code, hash it, render the SMS
 * text from the account's template and seal it) and then hand one transaction
 * to the store, parking the connection. The store's writer commits many such
 * transactions together; when ours is durable it records the outcome and
 * resumes us, and the reply is built back on an HTTP thread (send_finish /
 * verify_finish). What they read besides (the key, the account's limits, the
 * template) comes from memory; on PostgreSQL a request that would have to
 * read it is handed off to a read thread and runs from the top there
 * (api/reads.c). The plaintext code lives only in this file's stack frames and
 * the sealed text (and, for accounts with the reuse resend strategy, the sealed
 * blob kept for resends, api/keep.c), and is wiped after use.
 */
#include "api/api.h"
#include "api/guard.h"
#include "core/otp_code.h"
#include "core/phone.h"
#include "core/seal.h"
#include "util/clock.h"
#include "util/ids.h"
#include "util/str.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CODE_LENGTH 6
#define DEFAULT_EXPIRES_IN 600
#define DEFAULT_MAX_ATTEMPTS 3

typedef struct send_state {
    otp_txn txn;
    otp_http_req *req;
    otp_api *api;
    /* The 201's whole body, known before the txn; its data object (what an
     * idempotency key keeps) starts at REPLY_DATA_AT. */
    char reply[sizeof("{\"data\":{\"requestId\":\"\",\"expiresAt\":\"\",\"attemptsLeft\":}}") +
               OTP_ID_SIZE + OTP_ISO8601_LEN + 12];
    size_t reply_len;
    char *idem_text; /* the data object's JSON text, kept with the idempotency key */
    uint8_t sealed[OTP_SMS_TEXT_MAX + OTP_SEAL_OVERHEAD];
    uint8_t code_sealed[OTP_CODE_SEALED_MAX];
} send_state;

typedef struct verify_state {
    otp_txn txn;
    otp_http_req *req;
} verify_state;

bool otp_api_int_field(otp_http_req *req, json_t *body, const char *name, int min, int max,
                       int *ret)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v))
        return true;
    if (json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max) {
        *ret = (int)json_integer_value(v);
        return true;
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "%s must be an integer from %d to %d", name, min, max);
    otp_api_invalid_field(req, name, msg);
    return false;
}

bool otp_api_str_field(otp_http_req *req, json_t *body, const char *name, const char **ret)
{
    json_t *v = json_object_get(body, name);
    *ret = NULL;
    if (!v || json_is_null(v))
        return true;
    if (json_is_string(v)) {
        *ret = json_string_value(v);
        return true;
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "%s must be a string", name);
    otp_api_invalid_field(req, name, msg);
    return false;
}

bool otp_api_int_query(otp_http_req *req, const char *name, int min, int max, int *ret)
{
    const char *s = otp_http_query(req, name);
    if (!s)
        return true;
    long v = 0;
    size_t n = 0;
    for (; s[n] >= '0' && s[n] <= '9' && n < 9; n++)
        v = v * 10 + (s[n] - '0');
    if (n > 0 && s[n] == '\0' && v >= min && v <= max) {
        *ret = (int)v;
        return true;
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "%s must be an integer from %d to %d", name, min, max);
    otp_api_invalid_field(req, name, msg);
    return false;
}

static bool app_hash_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '+' || c == '/'))
            return false;
    }
    return n == 11;
}

/* ---- POST /otp/send ------------------------------------------------------- */

typedef struct send_params {
    const char *phone;
    int code_length, expires_in, max_attempts;
    const char *template_id; /* NULL = the account's default */
    const char *app_hash;
    otp_api_vars vars;
    otp_idem idem;
} send_params;

/* Validates the send body into *p; returns false after replying. */
static bool parse_send(otp_http_req *req, json_t *body, bool test, send_params *p)
{
    p->code_length = DEFAULT_CODE_LENGTH;
    p->expires_in = DEFAULT_EXPIRES_IN;
    p->max_attempts = DEFAULT_MAX_ATTEMPTS;

    json_t *phone = json_object_get(body, "phoneNumber");
    if (!phone || json_is_null(phone)) {
        otp_api_invalid_field(req, "phoneNumber", "phoneNumber is required");
        return false;
    }
    if (!json_is_string(phone)) {
        otp_http_reply_error(req, OTP_E_INVALID_PHONE_NUMBER, NULL, NULL);
        return false;
    }
    p->phone = json_string_value(phone);

    const char *channel;
    if (!otp_api_idem_init(req, body, test, &p->idem) ||
        !otp_api_int_field(req, body, "codeLength", OTP_CODE_MIN_LEN, OTP_CODE_MAX_LEN,
                           &p->code_length) ||
        !otp_api_int_field(req, body, "expiresIn", 60, 3600, &p->expires_in) ||
        !otp_api_int_field(req, body, "maxAttempts", 1, 10, &p->max_attempts) ||
        !otp_api_str_field(req, body, "templateId", &p->template_id) ||
        !otp_api_str_field(req, body, "appHash", &p->app_hash) ||
        !otp_api_str_field(req, body, "channel", &channel))
        return false;
    if (channel && strcmp(channel, "sms") != 0) {
        otp_api_invalid_field(req, "channel", "channel must be \"sms\"");
        return false;
    }
    if (p->app_hash && !app_hash_ok(p->app_hash)) {
        otp_api_invalid_field(req, "appHash", "appHash must be the 11-character app hash");
        return false;
    }
    return otp_api_parse_vars(req, body, &p->vars);
}

/* The template of a send: templateId (an id or a name; "default" names the
 * account's default unless a template is called that), else the default.
 * Returns false after replying, or after handing req off to a read thread
 * (the template is not cached, and reading it would wait on the network). */
static bool send_template(otp_http_req *req, otp_api *api, const otp_key_auth *auth,
                          const char *template_id, otp_template *ret)
{
    bool uncached = false;
    otp_err e = otp_api_template(api, auth, template_id, ret,
                                 otp_api_may_block(api, req) ? NULL : &uncached);
    if (uncached) {
        otp_api_hand_off(req, api);
        return false;
    }
    if (e == OTP_E_NOT_FOUND) {
        otp_api_invalid_field(req, "templateId", "templateId names no template of this account");
        return false;
    }
    if (e) {
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
        return false;
    }
    return true;
}

/* The 201's body, {"data":{"requestId":…,"expiresAt":…,"attemptsLeft":…}},
 * written without jansson: the id is base62 and the time ISO 8601, so there is
 * nothing to escape, and the bytes are what json_dumps(JSON_COMPACT) gave (an
 * e2e test compares the reply and its idempotent replay). */
#define REPLY_DATA_AT (sizeof("{\"data\":") - 1)
static bool send_reply(send_state *st, const otp_txn_send *s)
{
    char expires[OTP_ISO8601_LEN + 1];
    otp_time_iso8601(s->expires_at_ms, expires);
    int n = snprintf(st->reply, sizeof(st->reply),
                     "{\"data\":{\"requestId\":\"%s\",\"expiresAt\":\"%s\",\"attemptsLeft\":%d}}",
                     s->request_id, expires, s->max_attempts);
    if (n < 0 || (size_t)n >= sizeof(st->reply))
        return false;
    st->reply_len = (size_t)n;
    return true;
}

static void send_state_free(void *p)
{
    send_state *st = p;
    free(st->idem_text);
    free(st->txn.u.send.idem.replay_response);
    free(st);
}

static void send_finish(otp_http_req *req, void *app)
{
    send_state *st = (send_state *)otp_http_state(req);
    (void)app;
    if (otp_api_idem_replay(req, &st->txn.u.send.idem))
        return;
    if (otp_guard_finish(req, st->txn.err, &st->txn.u.send.abuse))
        return;
    if (st->txn.err != OTP_OK) {
        if (st->txn.err == OTP_E_INSUFFICIENT_BALANCE)
            otp_metrics_wallet_refusal();
        otp_http_reply_error(req, st->txn.err, NULL, NULL);
        return;
    }
    otp_metrics_send(false, st->txn.u.send.test);
    otp_http_reply_text(req, 201, "application/json", st->reply, st->reply_len);
}

static void send_done(otp_txn *txn)
{
    send_state *st = txn->user;
    const otp_txn_send *s = &txn->u.send;
    if (txn->err == OTP_OK && !s->idem.replayed && !s->test && st->api->dispatcher) {
        if (s->leased)
            otp_dispatcher_handoff(st->api->dispatcher, s);
        else
            otp_dispatcher_wake(st->api->dispatcher);
    }
    otp_http_resume(st->req);
}

void otp_api_send(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    json_t *body = NULL;
    send_params p = {0};
    otp_phone phone;
    otp_template tpl;
    char code[OTP_CODE_MAX_LEN + 1];
    char text[OTP_SMS_TEXT_MAX + 1];
    size_t len;
    int segments;

    if (!otp_api_authenticate(req, api, &auth))
        return;
    otp_err e = otp_http_json_body(req, &body);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    if (!parse_send(req, body, auth.test, &p))
        goto out;
    if (otp_phone_parse(p.phone, &phone) != OTP_PHONE_OK) {
        otp_http_reply_error(req, OTP_E_INVALID_PHONE_NUMBER, NULL, NULL);
        goto out;
    }
    char masked[OTP_PHONE_MASK_SIZE];
    otp_phone_mask(phone.e164, masked);
    otp_http_log_phone(req, masked);
    otp_abuse abuse; /* SPEC 3: the country allow-list first, nothing stored or charged */
    if (!otp_guard_prepare(req, api, &auth, &phone, phone.e164, &abuse))
        goto out;
    if (!send_template(req, api, &auth, p.template_id, &tpl))
        goto out;

    send_state *st = calloc(1, sizeof(*st));
    if (!st) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        goto out;
    }
    otp_http_set_state(req, st, send_state_free);
    st->req = req;
    st->api = api;
    otp_txn_send *s = &st->txn.u.send;
    int64_t now = otp_now_ms();
    otp_id_new("req_", now, s->request_id);
    otp_id_new("msg_", now, s->message_id);

    otp_code_generate(p.code_length, code);
    otp_code_hash(&api->secrets.code_mac, s->request_id, code, s->code_hash);
    otp_template_vars v = {
        .code = code,
        .app_name = p.vars.app_name ? p.vars.app_name : auth.account_name,
        .expires_minutes = (p.expires_in + 59) / 60,
        .app_hash = p.app_hash,
        .webotp_domain = auth.webotp_domain,
        .names = p.vars.names,
        .values = p.vars.values,
        .nvars = p.vars.n,
    };
    if (!otp_api_render(req, &tpl, &v, p.template_id ? "templateId" : "variables", text, &len,
                        &segments)) {
        sodium_memzero(code, sizeof(code));
        goto out;
    }
    otp_seal(api->secrets.box_key, s->message_id, text, len, st->sealed);
    sodium_memzero(text, sizeof(text));
    /* Kept sealed for resends (SPEC 1.5): the code under `reuse`, the variables. */
    size_t kept = otp_api_keep_seal(api, s->request_id,
                                    auth.resend_strategy == OTP_RESEND_REUSE ? code : NULL, &p.vars,
                                    st->code_sealed);
    if (kept) {
        s->code_sealed = st->code_sealed;
        s->code_sealed_len = kept;
    }
    sodium_memzero(code, sizeof(code));

    s->account_id = auth.account_id;
    s->key_id = auth.key_id;
    s->test = auth.test;
    memcpy(s->phone, phone.e164, sizeof(s->phone));
    memcpy(s->region, phone.region, sizeof(s->region));
    s->code_length = p.code_length;
    s->max_attempts = p.max_attempts;
    s->expires_in_s = p.expires_in;
    s->now_ms = now;
    s->expires_at_ms = now + (int64_t)p.expires_in * 1000;
    s->segments = segments;
    s->sealed_text = st->sealed;
    s->sealed_text_len = len + OTP_SEAL_OVERHEAD;
    otp_str_copy(s->template_id, sizeof(s->template_id), tpl.public_id);
    otp_str_copy(s->app_name, sizeof(s->app_name), p.vars.app_name ? p.vars.app_name : "");
    otp_str_copy(s->app_hash, sizeof(s->app_hash), p.app_hash ? p.app_hash : "");
    otp_str_copy(s->sender_id, sizeof(s->sender_id), tpl.sender_id);
    otp_str_copy(s->dlt_template_id, sizeof(s->dlt_template_id), tpl.dlt_template_id);

    if (!send_reply(st, s)) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        goto out;
    }
    s->idem = p.idem;
    s->abuse = abuse;
    if (s->idem.use &&
        !otp_api_idem_set_reply_text(&s->idem, 201, st->reply + REPLY_DATA_AT,
                                     st->reply_len - REPLY_DATA_AT - 1, &st->idem_text)) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        goto out;
    }

    /* Stored already leased to our dispatcher when it takes hand-offs. */
    s->lease_ms = !s->test ? otp_dispatcher_handoff_lease(api->dispatcher) : 0;
    st->txn.kind = OTP_TXN_SEND;
    st->txn.done = send_done;
    st->txn.user = st;
    otp_api_park(req, send_finish);
    api->store->ops->submit(api->store, &st->txn);
out:
    json_decref(body);
}

/* ---- POST /otp/verify ----------------------------------------------------- */

static void verify_finish(otp_http_req *req, void *app)
{
    verify_state *st = (verify_state *)otp_http_state(req);
    (void)app;
    otp_metrics_verification(st->txn.err);
    if (st->txn.u.verify.phone[0]) {
        char masked[OTP_PHONE_MASK_SIZE];
        otp_phone_mask(st->txn.u.verify.phone, masked);
        otp_http_log_phone(req, masked);
        /* the number is known only now: for the lock's and the refusal's lines */
        otp_abuse *a = &st->txn.u.verify.abuse;
        if (!a->phone[0])
            memcpy(a->phone, st->txn.u.verify.phone, sizeof(a->phone));
    }
    if (otp_guard_finish(req, st->txn.err, &st->txn.u.verify.abuse))
        return;
    switch (st->txn.err) {
    case OTP_OK: {
        /* The one success reply there is, already serialised: no JSON to build. */
        static const char verified[] = "{\"data\":{\"verified\":true}}";
        otp_http_reply_text(req, 200, "application/json", verified, sizeof(verified) - 1);
        return;
    }
    case OTP_E_OTP_INCORRECT:
        otp_http_reply_error(req, OTP_E_OTP_INCORRECT, NULL,
                             json_pack("{s:i}", "attemptsLeft", st->txn.u.verify.attempts_left));
        return;
    default:
        otp_http_reply_error(req, st->txn.err, NULL, NULL);
        return;
    }
}

static void verify_done(otp_txn *txn)
{
    verify_state *st = txn->user;
    otp_http_resume(st->req);
}

void otp_api_verify(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    json_t *body = NULL;
    const char *request_id, *code;
    int code_length;

    if (!otp_api_authenticate(req, api, &auth))
        return;
    otp_err e = otp_http_json_body(req, &body);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    json_t *rid = json_object_get(body, "requestId");
    json_t *otp = json_object_get(body, "otpCode");
    if (!rid || json_is_null(rid)) {
        otp_api_invalid_field(req, "requestId", "requestId is required");
        goto out;
    }
    if (!json_is_string(rid)) {
        otp_api_invalid_field(req, "requestId", "requestId must be a string");
        goto out;
    }
    if (!otp || json_is_null(otp)) {
        otp_api_invalid_field(req, "otpCode", "otpCode is required");
        goto out;
    }
    request_id = json_string_value(rid);
    code = json_is_string(otp) ? json_string_value(otp) : NULL;
    if (!code || !otp_code_well_formed(code, &code_length)) {
        otp_metrics_verification(OTP_E_INVALID_OTP_CODE);
        otp_http_reply_error(req, OTP_E_INVALID_OTP_CODE, NULL, NULL);
        goto out;
    }
    if (!otp_id_valid(request_id, "req_")) {
        otp_metrics_verification(OTP_E_OTP_NOT_FOUND);
        otp_http_reply_error(req, OTP_E_OTP_NOT_FOUND, NULL, NULL);
        goto out;
    }

    otp_abuse abuse; /* before anything is attached to req: it may be handed off */
    if (!otp_guard_prepare(req, api, &auth, NULL, NULL, &abuse))
        goto out;

    verify_state *st = calloc(1, sizeof(*st));
    if (!st) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        goto out;
    }
    otp_http_set_state(req, st, free);
    st->req = req;
    otp_txn_verify *v = &st->txn.u.verify;
    st->txn.kind = OTP_TXN_VERIFY;
    st->txn.done = verify_done;
    st->txn.user = st;
    v->account_id = auth.account_id;
    v->test = auth.test;
    memcpy(v->request_id, request_id, OTP_ID_SIZE);
    otp_code_hash(&api->secrets.code_mac, request_id, code, v->code_hash);
    v->code_length = code_length;
    v->now_ms = otp_now_ms();
    v->abuse = abuse;

    otp_api_park(req, verify_finish);
    api->store->ops->submit(api->store, &st->txn);
out:
    json_decref(body);
}
