/* api/wallet.c — GET /wallet (SPEC 1.8): balance and prices as decimal strings. */
#include "api/api.h"
#include "core/money.h"

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
