/* tests/unit/http/test_router.c — the route table's matching: parameters, the
 * most specific pattern first (a literal segment beats "{}", whatever the
 * table's order), the Allow list of a 405, and paths that match nothing. The
 * table is otpd's own (api/routes.c), so these are the answers clients get. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "api/api.h"
#include "http/router.h"

typedef struct result {
    otp_route_match m;
    const otp_route *route;
    char params[OTP_HTTP_MAX_PARAMS][OTP_HTTP_PARAM_SIZE];
    char allow[64];
} result;

static result route(const otp_route *routes, size_t n, const char *method, const char *path)
{
    result r = {0};
    r.m = otp_router_match(routes, n, method, path, &r.route, r.params, r.allow, sizeof(r.allow));
    return r;
}

static result api(const char *method, const char *path)
{
    return route(otp_api_routes, otp_api_nroutes, method, path);
}

static void test_literal_and_params(void **state)
{
    (void)state;
    result r = api("POST", "/otp/send");
    assert_int_equal(r.m, OTP_ROUTE_FOUND);
    assert_ptr_equal(r.route->handler, otp_api_send);
    r = api("GET", "/otp/req_0123456789abcdefghijkl");
    assert_int_equal(r.m, OTP_ROUTE_FOUND);
    /* its handler is a read route's (routes.c: READ_ROUTE), so its pattern */
    assert_string_equal(r.route->pattern, "/otp/{}");
    assert_string_equal(r.route->method, "GET");
    assert_string_equal(r.params[0], "req_0123456789abcdefghijkl");
    r = api("POST", "/providers/textlocal/dlr");
    assert_int_equal(r.m, OTP_ROUTE_FOUND);
    assert_string_equal(r.params[0], "textlocal");
}

/* GET /otp/send is the POST-only /otp/send asked with the wrong method, not a
 * status read of a request called "send". */
static void test_literal_beats_param(void **state)
{
    (void)state;
    static const char *const literal[] = {"/otp/send", "/otp/verify", "/otp/resend"};
    for (size_t i = 0; i < 3; i++) {
        result r = api("GET", literal[i]);
        assert_int_equal(r.m, OTP_ROUTE_NO_METHOD);
        assert_string_equal(r.allow, "POST");
        r = api("PUT", literal[i]);
        assert_int_equal(r.m, OTP_ROUTE_NO_METHOD);
        assert_string_equal(r.allow, "POST");
    }
    /* The table's order does not matter: the pattern comes first here. */
    static const otp_route reversed[] = {
        {"GET", "/a/{}", otp_api_status},
        {"POST", "/a/b", otp_api_send},
    };
    result r = route(reversed, 2, "POST", "/a/b");
    assert_int_equal(r.m, OTP_ROUTE_FOUND);
    assert_ptr_equal(r.route->handler, otp_api_send);
    r = route(reversed, 2, "GET", "/a/b");
    assert_int_equal(r.m, OTP_ROUTE_NO_METHOD);
    assert_string_equal(r.allow, "POST");
    r = route(reversed, 2, "GET", "/a/c");
    assert_int_equal(r.m, OTP_ROUTE_FOUND);
    assert_string_equal(r.params[0], "c");
}

static void test_allow_and_not_found(void **state)
{
    (void)state;
    result r = api("DELETE", "/wallet");
    assert_int_equal(r.m, OTP_ROUTE_NO_METHOD);
    assert_string_equal(r.allow, "GET");
    /* /otp/{id}: GET, and POST (the fallback that tells an id from a typo). */
    r = api("DELETE", "/otp/req_0123456789abcdefghijkl");
    assert_int_equal(r.m, OTP_ROUTE_NO_METHOD);
    assert_string_equal(r.allow, "GET, POST");
    r = api("GET", "/nope");
    assert_int_equal(r.m, OTP_ROUTE_NO_PATH);
    assert_string_equal(r.allow, "");
    r = api("GET", "/otp/");
    assert_int_equal(r.m, OTP_ROUTE_NO_PATH);
    r = api("GET", "/otp/a/b/c");
    assert_int_equal(r.m, OTP_ROUTE_NO_PATH);
    r = api("GET", "/wallet/");
    assert_int_equal(r.m, OTP_ROUTE_NO_PATH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_and_params),
        cmocka_unit_test(test_literal_beats_param),
        cmocka_unit_test(test_allow_and_not_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
