/* api/routes.c — the route table: every route of the API in one place. */
#include "api/api.h"
#include "otpd_config.h"

const otp_route otp_api_routes[] = {
    {"POST", "/otp/send", otp_api_send},          {"POST", "/otp/verify", otp_api_verify},
    {"GET", "/wallet", otp_api_wallet},           {"GET", "/healthz", otp_api_healthz},
    {"GET", "/readyz", otp_api_readyz},
#if OTPD_TEST_HOOKS
    {"POST", "/_test/clock", otp_api_test_clock},
#endif
};

const size_t otp_api_nroutes = sizeof(otp_api_routes) / sizeof(otp_api_routes[0]);
