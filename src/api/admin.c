/* api/admin.c — the admin API (SPEC 2: operators credit wallets by CLI or admin
 * API): GET /admin/accounts/{account} and POST /admin/accounts/{account}/credit.
 *
 * These routes take an operator's admin key (otpd_admin_…, made by `otpd
 * admin-key create`), in the same headers as an API key; an API key is never
 * accepted here, nor an admin key on the OTP API (their formats differ, so each
 * is refused before any lookup). Admin keys are rare and their calls few, so
 * every call looks its key up in the store: a revocation takes effect at once.
 * Both routes run through otp_api_read() (routes.c), so on PostgreSQL those
 * look-ups wait on a read thread, never on an HTTP thread; a credit then
 * passes its parked request on to its txn (otp_api_park).
 *
 * A credit with a "reference" (an invoice or payment id) is applied once per
 * account and reference: a retry after a lost answer gets the first credit back
 * (Idempotent-Replayed: true), never a second one, on every node.
 */
#include "api/api.h"
#include "core/apikey.h"
#include "core/money.h"
#include "util/clock.h"
#include "util/ids.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(OTP_MONEY_REFERENCE_MAX < OTP_REFERENCE_SIZE, "a reference fits the txn");

static const char unauthorized[] = "A valid admin key is required";

/* A refused admin call is logged as well as answered, so that operators can
 * watch for someone trying keys: why, and the key's id when it was a revoked
 * one; never the key, nor what was presented. */
static void admin_refused(otp_http_req *req, const char *why, const char *key_id)
{
    otp_log(OTP_LOG_WARN, "event=admin_auth_refused reason=%s admin=%s path=%s trace=%s", why,
            key_id ? key_id : "-", otp_http_route(req), otp_http_trace_id(req));
    otp_http_reply_error(req, OTP_E_UNAUTHORIZED, unauthorized, NULL);
}

/* Authenticates the request's admin key. Returns true and writes *ret; or
 * replies 401 (or 503) and returns false. */
static bool admin_authenticate(otp_http_req *req, otp_api *api, otp_admin_key *ret)
{
    const char *key = otp_api_presented_key(req);
    /* The length first: a long header value is never hashed. */
    if (!key) {
        admin_refused(req, "no_key", NULL);
        return false;
    }
    if (strnlen(key, OTP_ADMINKEY_LEN + 1) != OTP_ADMINKEY_LEN || !otp_adminkey_check(key)) {
        admin_refused(req, "malformed_key", NULL);
        return false;
    }
    if (!OTP_API_HAS_READ(req, api, admin_key_lookup))
        return false;
    uint8_t hash[OTP_APIKEY_HASH_LEN];
    otp_apikey_hash(key, hash);
    otp_err e = api->store->ops->admin_key_lookup(api->store, hash, ret);
    if (e == OTP_E_NOT_FOUND) {
        admin_refused(req, "unknown_key", NULL);
        return false;
    }
    if (e == OTP_OK && ret->revoked_at_ms) {
        admin_refused(req, "revoked_key", ret->public_id);
        return false;
    }
    if (e != OTP_OK) {
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
        return false;
    }
    return true;
}

/* The route's account, by id or name: true, or false after replying 404/503. */
static bool route_account(otp_http_req *req, otp_api *api, otp_account *ret)
{
    const char *id = otp_http_param(req, 0);
    otp_err e = id && *id ? api->store->ops->account_find(api->store, id, ret) : OTP_E_NOT_FOUND;
    if (e == OTP_OK) {
        otp_http_log_account(req, ret->public_id);
        return true;
    }
    otp_http_reply_error(req, e == OTP_E_NOT_FOUND ? OTP_E_ACCOUNT_NOT_FOUND : OTP_E_UNAVAILABLE,
                         NULL, NULL);
    return false;
}

/* ---- GET /admin/accounts/{account} ---------------------------------------- */

void otp_api_admin_account(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_admin_key admin;
    otp_account a;
    if (!admin_authenticate(req, api, &admin) || !route_account(req, api, &a))
        return;
    char balance[OTP_MONEY_SIZE], price[OTP_MONEY_SIZE], low[OTP_MONEY_SIZE];
    otp_money_format(a.balance, balance);
    otp_money_format(a.price_per_segment, price);
    otp_money_format(a.low_balance_threshold, low);
    otp_http_reply_data(req, 200,
                        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "accountId", a.public_id,
                                  "name", a.name, "balance", balance, "currency", a.currency,
                                  "pricePerSegment", price, "lowBalanceThreshold", low, "createdAt",
                                  otp_api_json_time(a.created_at_ms)));
}

/* ---- POST /admin/accounts/{account}/credit -------------------------------- */

typedef struct credit_state {
    otp_txn txn;
    otp_http_req *req;
    char account[OTP_ID_SIZE];
    char currency[4];
    char admin[OTP_ID_SIZE];
} credit_state;

/* Reads the body into the txn. Returns false after replying 400. Unlike the
 * OTP API, a field it does not know is refused: on a route that moves money, a
 * misspelt "reference" must not become a credit applied at every retry. */
static bool parse_credit(otp_http_req *req, json_t *body, otp_txn_wallet_credit *c)
{
    const char *name;
    json_t *value;
    json_object_foreach(body, name, value)
    {
        if (strcmp(name, "amount") && strcmp(name, "note") && strcmp(name, "reference")) {
            otp_api_invalid_field(req, name,
                                  "unknown field: a credit takes amount, note and reference");
            return false;
        }
    }
    json_t *amount = json_object_get(body, "amount");
    if (!json_is_string(amount) || otp_money_parse(json_string_value(amount), &c->amount) ||
        c->amount <= 0) {
        otp_api_invalid_field(req, "amount",
                              "amount must be a positive decimal string with at most two places, "
                              "e.g. \"500.00\"");
        return false;
    }
    const char *note = NULL, *ref = NULL;
    if (!otp_api_str_field(req, body, "note", &note) ||
        !otp_api_str_field(req, body, "reference", &ref))
        return false;
    if (note) {
        size_t n = strlen(note);
        bool ok = n < sizeof(c->note) && n == json_string_length(json_object_get(body, "note"));
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)note[i] >= 0x20 && note[i] != 0x7f;
        if (!ok) {
            otp_api_invalid_field(req, "note",
                                  "note must be at most 255 bytes of text without control "
                                  "characters");
            return false;
        }
        memcpy(c->note, note, n + 1);
    }
    if (ref) {
        if (!otp_money_reference_valid(ref)) {
            otp_api_invalid_field(req, "reference",
                                  "reference must be 1 to 128 characters of A-Z, a-z, 0-9 and "
                                  "- _ . : / #");
            return false;
        }
        memcpy(c->reference, ref, strlen(ref) + 1);
    }
    return true;
}

static void credit_finish(otp_http_req *req, void *app)
{
    credit_state *st = (credit_state *)otp_http_state(req);
    (void)app;
    otp_txn_wallet_credit *c = &st->txn.u.wallet_credit;
    switch (st->txn.err) {
    case OTP_OK:
        break;
    case OTP_E_NOT_FOUND:
        otp_http_reply_error(req, OTP_E_ACCOUNT_NOT_FOUND, NULL, NULL);
        return;
    case OTP_E_INVALID_REQUEST:
        otp_api_invalid_field(req, "amount", "the balance would be too large");
        return;
    case OTP_E_IDEMPOTENCY_KEY_REUSED:
        otp_http_reply_error(req, OTP_E_IDEMPOTENCY_KEY_REUSED,
                             "This reference was used for a credit of another amount",
                             json_pack("{s:s}", "field", "reference"));
        return;
    default:
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
        return;
    }
    char id[OTP_LEDGER_ID_SIZE];
    char amount[OTP_MONEY_SIZE], after[OTP_MONEY_SIZE];
    otp_ledger_id_format(c->ledger_id, id);
    otp_money_format(c->amount, amount);
    otp_money_format(c->balance_after, after);
    otp_log(OTP_LOG_INFO,
            "event=admin_credit admin=%s account=%s transaction=%s amount=%s balance=%s "
            "reference=%s replayed=%s",
            st->admin, st->account, id, amount, after, c->reference[0] ? c->reference : "-",
            c->replayed ? "true" : "false");
    if (c->replayed) /* the first answer again, status included, as SPEC 1.9's replays */
        otp_http_add_header(req, "Idempotent-Replayed", "true");
    otp_http_reply_data(req, 201,
                        json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "transactionId", id,
                                  "accountId", st->account, "amount", amount, "balanceAfter", after,
                                  "currency", st->currency, "reference",
                                  c->reference[0] ? json_string(c->reference) : json_null(),
                                  "createdAt", otp_api_json_time(c->created_at_ms)));
}

static void credit_done(otp_txn *txn)
{
    credit_state *st = txn->user;
    otp_http_resume(st->req);
}

void otp_api_admin_credit(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_admin_key admin;
    otp_account a;
    json_t *body = NULL;
    if (!admin_authenticate(req, api, &admin))
        return;
    otp_err e = otp_http_json_body(req, &body);
    if (e) {
        otp_http_reply_error(req, e, NULL, NULL);
        return;
    }
    credit_state *st = calloc(1, sizeof(*st));
    if (!st) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        goto out;
    }
    otp_http_set_state(req, st, free);
    otp_txn_wallet_credit *c = &st->txn.u.wallet_credit;
    if (!parse_credit(req, body, c) || !route_account(req, api, &a))
        goto out;
    st->req = req;
    memcpy(st->account, a.public_id, sizeof(st->account));
    memcpy(st->currency, a.currency, sizeof(st->currency));
    memcpy(st->admin, admin.public_id, sizeof(st->admin));
    st->txn.kind = OTP_TXN_WALLET_CREDIT;
    st->txn.done = credit_done;
    st->txn.user = st;
    c->account_id = a.id;
    c->now_ms = otp_now_ms();
    otp_api_park(req, credit_finish);
    api->store->ops->submit(api->store, &st->txn);
out:
    json_decref(body);
}
