/* tests/unit/api/test_keep.c — what a request keeps for its resends (api/keep.c):
 * the code and the variables come back as sealed, only under the request's own
 * id and the server's key; the code alone when the variables do not fit;
 * nothing to keep under `rotate` without variables; and a request kept by an
 * earlier version (the code alone, "<id>:code") still opens. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "api/api.h"
#include "core/seal.h"

static otp_api api;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    randombytes_buf(api.secrets.box_key, sizeof(api.secrets.box_key));
    return 0;
}

static void test_code_and_vars(void **state)
{
    (void)state;
    otp_api_vars v = {.names = {"orderId", "user"}, .values = {"A-17", "Asha \"Q\""}, .n = 2};
    uint8_t blob[OTP_CODE_SEALED_MAX];
    size_t len = otp_api_keep_seal(&api, "req_one", "482913", &v, blob);
    assert_true(len > OTP_SEAL_OVERHEAD);
    assert_null(memmem(blob, len, "482913", 6)); /* sealed, not in clear */
    assert_null(memmem(blob, len, "A-17", 4));

    char code[OTP_CODE_MAX_LEN + 1];
    json_t *vars = NULL;
    assert_true(otp_api_keep_open(&api, "req_one", blob, len, code, &vars));
    assert_string_equal(code, "482913");
    assert_non_null(vars);
    assert_int_equal(json_object_size(vars), 2);
    assert_string_equal(json_string_value(json_object_get(vars, "user")), "Asha \"Q\"");
    json_decref(vars);

    /* Another request's id, or another key: nothing opens. */
    assert_false(otp_api_keep_open(&api, "req_two", blob, len, code, &vars));
    assert_string_equal(code, "");
    assert_null(vars);
    otp_api other = api;
    other.secrets.box_key[0] ^= 1;
    assert_false(otp_api_keep_open(&other, "req_one", blob, len, code, &vars));
}

static void test_rotate(void **state)
{
    (void)state;
    uint8_t blob[OTP_CODE_SEALED_MAX];
    otp_api_vars none = {.n = 0};
    assert_int_equal(otp_api_keep_seal(&api, "req_r", NULL, &none, blob), 0);
    otp_api_vars v = {.names = {"orderId"}, .values = {"B-7"}, .n = 1};
    size_t len = otp_api_keep_seal(&api, "req_r", NULL, &v, blob);
    assert_true(len > 0);
    char code[OTP_CODE_MAX_LEN + 1];
    json_t *vars = NULL;
    assert_true(otp_api_keep_open(&api, "req_r", blob, len, code, &vars));
    assert_string_equal(code, ""); /* rotate keeps no code */
    assert_string_equal(json_string_value(json_object_get(vars, "orderId")), "B-7");
    json_decref(vars);
}

static void test_too_many_vars(void **state)
{
    (void)state;
    static char values[OTP_API_MAX_VARS][257], names[OTP_API_MAX_VARS][16];
    otp_api_vars v = {.n = OTP_API_MAX_VARS};
    for (size_t i = 0; i < OTP_API_MAX_VARS; i++) {
        snprintf(names[i], sizeof(names[i]), "v%zu", i);
        memset(values[i], 'x', 256);
        v.names[i] = names[i];
        v.values[i] = values[i];
    }
    uint8_t blob[OTP_CODE_SEALED_MAX];
    size_t len = otp_api_keep_seal(&api, "req_big", "1234", &v, blob);
    char code[OTP_CODE_MAX_LEN + 1];
    json_t *vars = NULL;
    assert_true(otp_api_keep_open(&api, "req_big", blob, len, code, &vars));
    assert_string_equal(code, "1234"); /* the code stays */
    assert_null(vars);                 /* the variables did not fit */
    assert_int_equal(otp_api_keep_seal(&api, "req_big", NULL, &v, blob), 0);
}

static void test_earlier_version(void **state)
{
    (void)state;
    uint8_t blob[OTP_CODE_SEALED_MAX];
    otp_seal(api.secrets.box_key, "req_old:code", "77441122", 8, blob);
    char code[OTP_CODE_MAX_LEN + 1];
    json_t *vars = NULL;
    assert_true(otp_api_keep_open(&api, "req_old", blob, 8 + OTP_SEAL_OVERHEAD, code, &vars));
    assert_string_equal(code, "77441122");
    assert_null(vars);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_and_vars),
        cmocka_unit_test(test_rotate),
        cmocka_unit_test(test_too_many_vars),
        cmocka_unit_test(test_earlier_version),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
