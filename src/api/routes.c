/* api/routes.c — the route table: every route of the API in one place.
 *
 * The router picks the most specific pattern that matches (literal segments
 * win over "{}"), whatever the order here. */
#include "api/api.h"
#include "api/guard.h"
#include "otpd_config.h"

const otp_route otp_api_routes[] = {
    {"POST", "/otp/send", otp_api_send},
    {"POST", "/otp/verify", otp_api_verify},
    {"POST", "/otp/resend", otp_api_resend},
    {"GET", "/otp/{}", otp_api_status},
    {"POST", "/otp/{}/cancel", otp_api_cancel},
    {"POST", "/otp/{}", otp_api_otp_post_fallback},
    {"GET", "/messages/{}", otp_api_message},
    {"GET", "/test/messages", otp_api_test_messages},
    {"GET", "/wallet", otp_api_wallet},
    {"GET", "/wallet/transactions", otp_api_wallet_transactions},
    {"GET", "/admin/accounts/{}", otp_api_admin_account},
    {"POST", "/admin/accounts/{}/credit", otp_api_admin_credit},
    {"GET", "/healthz", otp_api_healthz},
    {"GET", "/readyz", otp_api_readyz},
    {"GET", "/metrics", otp_api_metrics},
    {"POST", "/providers/{}/dlr", otp_api_provider_dlr},
#if OTPD_TEST_HOOKS
    {"POST", "/_test/clock", otp_api_test_clock},
#endif
};

const size_t otp_api_nroutes = sizeof(otp_api_routes) / sizeof(otp_api_routes[0]);
