/* api/otp.c — POST /otp/send and POST /otp/verify (SPEC 1.3, 1.4).
 *
 * Both handlers do everything that needs no lock on the HTTP thread (parse and
 * validate, normalise the phone number, draw the code, hash it, render and seal
 * the SMS text) and then hand one transaction to the store, parking the
 * connection. The store's writer commits many such transactions together; when
 * ours is durable it records the outcome and resumes us, and the reply is built
 * back on an HTTP thread (send_finish / verify_finish). The plaintext code lives
 * only in this file's stack frames and the sealed text, and is wiped after use.
 */
#include "api/api.h"
#include "core/otp_code.h"
#include "core/phone.h"
#include "core/seal.h"
#include "core/sms_text.h"
#include "util/clock.h"
#include "util/ids.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CODE_LENGTH 6
#define DEFAULT_EXPIRES_IN 600
#define DEFAULT_MAX_ATTEMPTS 3
#define APP_NAME_MAX 64
#define IDEMPOTENCY_KEY_MAX 255

typedef struct send_state {
    otp_txn txn;
    otp_http_req *req;
    otp_api *api;
    uint8_t sealed[OTP_SMS_TEXT_MAX + OTP_SEAL_OVERHEAD];
} send_state;

typedef struct verify_state {
    otp_txn txn;
    otp_http_req *req;
} verify_state;

/* An optional integer field within [min, max]; absent or null keeps *ret.
 * Returns false after replying invalid_request. */
static bool int_field(otp_http_req *req, json_t *body, const char *name, int min, int max, int *ret)
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

/* An optional string field; absent or null gives NULL. Returns false after
 * replying invalid_request if it is present but not a string. */
static bool str_field(otp_http_req *req, json_t *body, const char *name, const char **ret)
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

static bool printable_ascii(const char *s, size_t min, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (s[n] < 0x20 || s[n] > 0x7e)
            return false;
    return n >= min && n <= max;
}

/* 1..64 bytes of UTF-8 (any script: app names are not only Latin), no controls. */
static bool app_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
            return false;
    return n >= 1 && n <= APP_NAME_MAX;
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
    const char *app_name; /* NULL = the account's name */
    const char *app_hash;
} send_params;

/* Validates the send body into *p; returns false after replying. */
static bool parse_send(otp_http_req *req, json_t *body, send_params *p)
{
    p->code_length = DEFAULT_CODE_LENGTH;
    p->expires_in = DEFAULT_EXPIRES_IN;
    p->max_attempts = DEFAULT_MAX_ATTEMPTS;
    p->app_name = NULL;

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

    const char *idem, *template_id, *channel;
    if (!str_field(req, body, "idempotencyKey", &idem) ||
        !int_field(req, body, "codeLength", OTP_CODE_MIN_LEN, OTP_CODE_MAX_LEN, &p->code_length) ||
        !int_field(req, body, "expiresIn", 60, 3600, &p->expires_in) ||
        !int_field(req, body, "maxAttempts", 1, 10, &p->max_attempts) ||
        !str_field(req, body, "templateId", &template_id) ||
        !str_field(req, body, "appHash", &p->app_hash) ||
        !str_field(req, body, "channel", &channel))
        return false;
    if (idem && !printable_ascii(idem, 1, IDEMPOTENCY_KEY_MAX)) {
        otp_api_invalid_field(req, "idempotencyKey",
                              "idempotencyKey must be 1 to 255 printable ASCII characters");
        return false;
    }
    if (template_id && strcmp(template_id, "default") != 0) {
        otp_api_invalid_field(req, "templateId", "No such template");
        return false;
    }
    if (channel && strcmp(channel, "sms") != 0) {
        otp_api_invalid_field(req, "channel", "channel must be \"sms\"");
        return false;
    }
    if (p->app_hash && !app_hash_ok(p->app_hash)) {
        otp_api_invalid_field(req, "appHash", "appHash must be the 11-character app hash");
        return false;
    }
    json_t *vars = json_object_get(body, "variables");
    if (vars && !json_is_null(vars)) {
        const char *k;
        json_t *v;
        if (!json_is_object(vars)) {
            otp_api_invalid_field(req, "variables", "variables must be an object of strings");
            return false;
        }
        json_object_foreach(vars, k, v)
        {
            if (!json_is_string(v)) {
                otp_api_invalid_field(req, "variables", "variables must be an object of strings");
                return false;
            }
        }
        json_t *app = json_object_get(vars, "appName");
        if (app) {
            p->app_name = json_string_value(app);
            if (!app_name_ok(p->app_name)) {
                otp_api_invalid_field(req, "variables",
                                      "variables.appName must be 1 to 64 characters");
                return false;
            }
        }
    }
    return true;
}

static void send_finish(otp_http_req *req, void *app)
{
    send_state *st = (send_state *)otp_http_state(req);
    (void)app;
    otp_txn_send *s = &st->txn.u.send;
    if (st->txn.err != OTP_OK) {
        otp_http_reply_error(req, st->txn.err, NULL, NULL);
        return;
    }
    char expires[OTP_ISO8601_LEN + 1];
    otp_time_iso8601(s->expires_at_ms, expires);
    otp_http_reply_data(req, 201,
                        json_pack("{s:s, s:s, s:i}", "requestId", s->request_id, "expiresAt",
                                  expires, "attemptsLeft", s->max_attempts));
}

static void send_done(otp_txn *txn)
{
    send_state *st = txn->user;
    if (txn->err == OTP_OK && !txn->u.send.test && st->api->dispatcher)
        otp_dispatcher_wake(st->api->dispatcher);
    otp_http_resume(st->req);
}

void otp_api_send(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    json_t *body = NULL;
    send_params p;
    otp_phone phone;
    char code[OTP_CODE_MAX_LEN + 1];
    char text[OTP_SMS_TEXT_MAX + 1];

    if (!otp_api_authenticate(req, api, &auth))
        return;
    otp_err e = otp_http_json_body(req, &body);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    if (!parse_send(req, body, &p))
        goto out;
    if (otp_phone_parse(p.phone, &phone) != OTP_PHONE_OK) {
        otp_http_reply_error(req, OTP_E_INVALID_PHONE_NUMBER, NULL, NULL);
        goto out;
    }
    char masked[OTP_PHONE_MASK_SIZE];
    otp_phone_mask(phone.e164, masked);
    otp_http_log_phone(req, masked);

    send_state *st = calloc(1, sizeof(*st));
    if (!st) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        goto out;
    }
    otp_http_set_state(req, st, free);
    st->req = req;
    st->api = api;
    otp_txn_send *s = &st->txn.u.send;
    int64_t now = otp_now_ms();
    otp_id_new("req_", now, s->request_id);
    otp_id_new("msg_", now, s->message_id);

    otp_code_generate(p.code_length, code);
    otp_code_hash(api->secrets.code_key, s->request_id, code, s->code_hash);
    int len =
        otp_sms_render_default(code, p.app_name ? p.app_name : auth.account_name,
                               (p.expires_in + 59) / 60, p.app_hash, NULL, text, sizeof(text));
    int segments = len < 0 ? -1 : otp_sms_segments(text, NULL);
    if (segments < 1) {
        sodium_memzero(code, sizeof(code));
        sodium_memzero(text, sizeof(text));
        otp_api_invalid_field(req, "variables", "The SMS text would be too long");
        goto out;
    }
    otp_seal(api->secrets.box_key, s->message_id, text, (size_t)len, st->sealed);
    sodium_memzero(code, sizeof(code));
    sodium_memzero(text, sizeof(text));

    st->txn.kind = OTP_TXN_SEND;
    st->txn.done = send_done;
    st->txn.user = st;
    s->account_id = auth.account_id;
    s->key_id = auth.key_id;
    s->test = auth.test;
    memcpy(s->phone, phone.e164, sizeof(s->phone));
    s->code_length = p.code_length;
    s->max_attempts = p.max_attempts;
    s->expires_in_s = p.expires_in;
    s->now_ms = now;
    s->expires_at_ms = now + (int64_t)p.expires_in * 1000;
    s->segments = segments;
    s->sealed_text = st->sealed;
    s->sealed_text_len = (size_t)len + OTP_SEAL_OVERHEAD;

    otp_http_suspend(req, send_finish);
    api->store->ops->submit(api->store, &st->txn);
out:
    json_decref(body);
}

/* ---- POST /otp/verify ----------------------------------------------------- */

static void verify_finish(otp_http_req *req, void *app)
{
    verify_state *st = (verify_state *)otp_http_state(req);
    (void)app;
    switch (st->txn.err) {
    case OTP_OK:
        otp_http_reply_data(req, 200, json_pack("{s:b}", "verified", 1));
        return;
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
        otp_http_reply_error(req, OTP_E_INVALID_OTP_CODE, NULL, NULL);
        goto out;
    }
    if (!otp_id_valid(request_id, "req_")) {
        otp_http_reply_error(req, OTP_E_OTP_NOT_FOUND, NULL, NULL);
        goto out;
    }

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
    memcpy(v->request_id, request_id, OTP_ID_SIZE);
    otp_code_hash(api->secrets.code_key, request_id, code, v->code_hash);
    v->code_length = code_length;
    v->now_ms = otp_now_ms();

    otp_http_suspend(req, verify_finish);
    api->store->ops->submit(api->store, &st->txn);
out:
    json_decref(body);
}
