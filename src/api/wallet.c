/* api/wallet.c — GET /wallet and GET /wallet/transactions (SPEC 1.8).
 *
 * Money leaves this file only as decimal strings with two places. The ledger is
 * paged newest first by an opaque cursor: the base62 of the last entry's id
 * (ids only grow, so "entries before this one" is stable while new entries are
 * appended at the other end, and a walk sees every entry exactly once). A page
 * is read one entry long to know whether there is a next one without a count.
 */
#include "api/api.h"
#include "core/money.h"
#include "util/ids.h"

#include <string.h>

#define DEFAULT_LIMIT 50
#define MAX_LIMIT 200
#define CURSOR_LEN OTP_LEDGER_ID_DIGITS /* base62 digits of any int64 */

/* ---- GET /wallet ---------------------------------------------------------- */

void otp_api_wallet(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    otp_account acc;
    if (!otp_api_authenticate(req, api, &auth))
        return;
    otp_err e = api->store->ops->account_get(api->store, auth.account_id, &acc);
    if (e) {
        otp_http_reply_error(req, e == OTP_E_NOT_FOUND ? OTP_E_UNAUTHORIZED : OTP_E_UNAVAILABLE,
                             NULL, NULL);
        return;
    }
    char balance[OTP_MONEY_SIZE], price[OTP_MONEY_SIZE], low[OTP_MONEY_SIZE];
    otp_money_format(acc.balance, balance);
    otp_money_format(acc.price_per_segment, price);
    otp_money_format(acc.low_balance_threshold, low);
    otp_http_reply_data(req, 200,
                        json_pack("{s:s, s:s, s:s, s:s}", "balance", balance, "currency",
                                  acc.currency, "pricePerSegment", price, "lowBalanceThreshold",
                                  low));
}

/* ---- GET /wallet/transactions --------------------------------------------- */

static void cursor_encode(int64_t id, char out[CURSOR_LEN + 1])
{
    otp_base62_encode_fixed((uint64_t)id, out, CURSOR_LEN);
    out[CURSOR_LEN] = '\0';
}

/* Returns the entry id of a cursor (or of a transaction's "ltx_" id, so that
 * "before this one" works too), or -1 if s is neither. */
static int64_t cursor_decode(const char *s)
{
    if (strncmp(s, "ltx_", 4) == 0)
        s += 4;
    if (strlen(s) != CURSOR_LEN)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < CURSOR_LEN; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'Z' ? c - 'A' + 10
                : c >= 'a' && c <= 'z' ? c - 'a' + 36
                                       : -1;
        if (d < 0 || v > (UINT64_MAX - (uint64_t)d) / 62)
            return -1;
        v = v * 62 + (uint64_t)d;
    }
    return v >= 1 && v <= INT64_MAX ? (int64_t)v : -1;
}

static const char *type_name(otp_ledger_type t)
{
    switch (t) {
    case OTP_LEDGER_CREDIT:
        return "credit";
    case OTP_LEDGER_DEBIT:
        return "debit";
    case OTP_LEDGER_REFUND:
        return "refund";
    }
    return "unknown";
}

typedef struct page {
    json_t *list;
    int limit;
    int seen;
    int64_t last_id; /* of the last entry put on the page */
    bool more;
} page;

static void add_entry(const otp_ledger_entry *e, void *ctx)
{
    page *p = ctx;
    if (++p->seen > p->limit) {
        p->more = true;
        return;
    }
    char id[OTP_LEDGER_ID_SIZE];
    char amount[OTP_MONEY_SIZE], after[OTP_MONEY_SIZE];
    otp_ledger_id_format(e->id, id);
    otp_money_format(e->amount, amount);
    otp_money_format(e->balance_after, after);
    json_array_append_new(p->list,
                          json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "id", id, "type",
                                    type_name(e->type), "amount", amount, "balanceAfter", after,
                                    "requestId", otp_api_json_str_or_null(e->request_id),
                                    "messageId", otp_api_json_str_or_null(e->message_id), "note",
                                    otp_api_json_str_or_null(e->note), "createdAt",
                                    otp_api_json_time(e->created_at_ms)));
    p->last_id = e->id;
}

void otp_api_wallet_transactions(otp_http_req *req, void *app)
{
    otp_api *api = app;
    otp_key_auth auth;
    page p = {.limit = DEFAULT_LIMIT};
    int64_t before = 0;

    if (!otp_api_authenticate(req, api, &auth))
        return;
    if (!OTP_API_HAS_READ(req, api, ledger_list))
        return;
    if (!otp_api_int_query(req, "limit", 1, MAX_LIMIT, &p.limit))
        return;
    const char *cursor = otp_http_query(req, "before");
    if (cursor && *cursor && (before = cursor_decode(cursor)) < 0) {
        otp_api_invalid_field(req, "before",
                              "before must be a nextCursor from an earlier page of this list");
        return;
    }
    p.list = json_array();
    if (!p.list) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    otp_err e = api->store->ops->ledger_list(api->store, auth.account_id, before, p.limit + 1,
                                             add_entry, &p);
    if (e) {
        json_decref(p.list);
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
        return;
    }
    char next[CURSOR_LEN + 1];
    json_t *next_cursor = json_null();
    if (p.more) {
        cursor_encode(p.last_id, next);
        next_cursor = json_string(next);
    }
    otp_http_reply_data(req, 200,
                        json_pack("{s:o, s:o}", "transactions", p.list, "nextCursor", next_cursor));
}
