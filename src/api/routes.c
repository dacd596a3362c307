/* api/routes.c — the route table: every route of the API in one place.
 *
 * The router picks the most specific pattern that matches (literal segments
 * win over "{}"), whatever the order here. The GET routes that read the store,
 * and the writes that read before their txn (cancel, resend, credit), run their
 * handler through otp_api_read() (reads.c): off the HTTP threads when the
 * store's reads wait on the network. Send and verify read only what is cached
 * (keys, limits, templates) before their txns, and hand themselves off to
 * reads.c on a miss; /healthz reads nothing, and must answer while the store
 * does not. */
#include "api/api.h"
#include "api/guard.h"
#include "otpd_config.h"

#define READ_ROUTE(handler)                                                                        \
    static void handler##_read(otp_http_req *req, void *app)                                       \
    {                                                                                              \
        otp_api_read(req, app, handler);                                                           \
    }

READ_ROUTE(otp_api_status)
READ_ROUTE(otp_api_cancel) /* its look-up; then its txn (otp_api_park) */
READ_ROUTE(otp_api_resend)
READ_ROUTE(otp_api_message)
READ_ROUTE(otp_api_test_messages)
READ_ROUTE(otp_api_wallet)
READ_ROUTE(otp_api_wallet_transactions)
READ_ROUTE(otp_api_admin_account)
READ_ROUTE(otp_api_admin_credit) /* its key and account look-ups; then its txn */
READ_ROUTE(otp_api_readyz)
READ_ROUTE(otp_api_metrics)

const otp_route otp_api_routes[] = {
    {"POST", "/otp/send", otp_api_send},
    {"POST", "/otp/verify", otp_api_verify},
    {"POST", "/otp/resend", otp_api_resend_read},
    {"GET", "/otp/{}", otp_api_status_read},
    {"POST", "/otp/{}/cancel", otp_api_cancel_read},
    {"POST", "/otp/{}", otp_api_otp_post_fallback},
    {"GET", "/messages/{}", otp_api_message_read},
    {"GET", "/test/messages", otp_api_test_messages_read},
    {"GET", "/wallet", otp_api_wallet_read},
    {"GET", "/wallet/transactions", otp_api_wallet_transactions_read},
    {"GET", "/admin/accounts/{}", otp_api_admin_account_read},
    {"POST", "/admin/accounts/{}/credit", otp_api_admin_credit_read},
    {"GET", "/healthz", otp_api_healthz},
    {"GET", "/readyz", otp_api_readyz_read},
    {"GET", "/metrics", otp_api_metrics_read},
    {"POST", "/providers/{}/dlr", otp_api_provider_dlr},
#if OTPD_TEST_HOOKS
    {"POST", "/_test/clock", otp_api_test_clock},
#endif
};

const size_t otp_api_nroutes = sizeof(otp_api_routes) / sizeof(otp_api_routes[0]);
