/* tests/unit/core/test_template.c — SMS templates: the exact default text, the
 * app-hash and WebOTP lines, variables (and that they are never re-expanded),
 * placeholder syntax errors, GSM-7 and UCS-2 segment counts, the limits, and
 * the check `otpd template add` runs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sms_text.h"
#include "core/template.h"

#define DEFAULT_TEXT                                                                               \
    "123456 is your Acme verification code. It expires in 10 minutes. Do not share it."
#define APP_HASH "FA+9qCX9VSu"
/* "{{code}} आपका {{appName}} सत्यापन कोड है" ("... is your ... verification code") */
#define HINDI_BODY                                                                                 \
    "{{code}} \xE0\xA4\x86\xE0\xA4\xAA\xE0\xA4\x95\xE0\xA4\xBE {{appName}} "                       \
    "\xE0\xA4\xB8\xE0\xA4\xA4\xE0\xA5\x8D\xE0\xA4\xAF\xE0\xA4\xBE\xE0\xA4\xAA\xE0\xA4\xA8 "        \
    "\xE0\xA4\x95\xE0\xA5\x8B\xE0\xA4\xA1 \xE0\xA4\xB9\xE0\xA5\x88"
#define HINDI_KA "\xE0\xA4\x95" /* U+0915, one UCS-2 unit, three bytes */

static otp_template_vars base_vars(void)
{
    otp_template_vars v = {.code = "123456", .app_name = "Acme", .expires_minutes = 10};
    return v;
}

/* Renders and expects success; returns the segment count. */
static int render_ok(const char *body, const otp_template_vars *v, char *out, size_t outlen)
{
    char err[256] = "";
    size_t len = 0;
    int segments = 0;
    otp_template_result r =
        otp_template_render(body, v, out, outlen, &len, &segments, err, sizeof(err));
    if (r != OTP_TPL_OK)
        fail_msg("render of \"%s\" failed (%d): %s", body, (int)r, err);
    assert_int_equal(len, strlen(out));
    return segments;
}

/* Renders and expects the error r; err gets the sentence; out must be empty. */
static void render_fails(const char *body, const otp_template_vars *v, otp_template_result want,
                         char *err, size_t errlen)
{
    char out[OTP_SMS_TEXT_MAX + 1];
    size_t len = 12345;
    int segments = -7;
    memset(out, 'Z', sizeof(out));
    err[0] = '\0';
    otp_template_result r =
        otp_template_render(body, v, out, sizeof(out), &len, &segments, err, errlen);
    if (r != want)
        fail_msg("render of \"%s\": got %d, want %d (%s)", body, (int)r, (int)want, err);
    assert_string_equal(out, "");
    assert_int_equal(len, 12345); /* out-parameters untouched on failure */
    assert_int_equal(segments, -7);
    assert_true(strlen(err) > 10);
}

/* Builds prefix + n copies of unit + suffix (heap; caller frees). */
static char *build(const char *prefix, const char *unit, int n, const char *suffix)
{
    size_t len = strlen(prefix) + strlen(unit) * (size_t)n + strlen(suffix) + 1;
    char *s = malloc(len), *p = s;
    assert_non_null(s);
    p = stpcpy(p, prefix);
    for (int i = 0; i < n; i++)
        p = stpcpy(p, unit);
    stpcpy(p, suffix);
    return s;
}

/* ---- The default text and the extra lines -------------------------------- */

static void test_default_exact(void **state)
{
    (void)state;
    char out[OTP_SMS_TEXT_MAX + 1], ref[OTP_SMS_TEXT_MAX + 1];
    otp_template_vars v = base_vars();
    assert_int_equal(render_ok(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out)), 1);
    assert_string_equal(out, DEFAULT_TEXT);
    /* Same text as the fixed renderer of sms_text.h. */
    assert_true(otp_sms_render_default("123456", "Acme", 10, NULL, NULL, ref, sizeof(ref)) > 0);
    assert_string_equal(out, ref);
}

static void test_app_hash_and_webotp_lines(void **state)
{
    (void)state;
    char out[OTP_SMS_TEXT_MAX + 1];
    otp_template_vars v = base_vars();

    v.app_hash = APP_HASH;
    render_ok(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out));
    assert_string_equal(out, DEFAULT_TEXT "\n" APP_HASH);

    v.app_hash = NULL;
    v.webotp_domain = "example.com";
    render_ok(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out));
    assert_string_equal(out, DEFAULT_TEXT "\n@example.com #123456");

    v.app_hash = APP_HASH;
    assert_int_equal(render_ok(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out)), 1);
    assert_string_equal(out, DEFAULT_TEXT "\n" APP_HASH "\n@example.com #123456");

    /* "" means none, like NULL. */
    v.app_hash = "";
    v.webotp_domain = "";
    render_ok(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out));
    assert_string_equal(out, DEFAULT_TEXT);
}

static void test_body_with_own_app_hash(void **state)
{
    (void)state;
    char out[256];
    otp_template_vars v = base_vars();
    const char *body = "<#> {{code}} is your {{appName}} code\n{{appHash}}";

    v.app_hash = APP_HASH;
    render_ok(body, &v, out, sizeof(out));
    assert_string_equal(out, "<#> 123456 is your Acme code\n" APP_HASH);

    v.webotp_domain = "example.com";
    render_ok(body, &v, out, sizeof(out));
    assert_string_equal(out, "<#> 123456 is your Acme code\n" APP_HASH "\n@example.com #123456");

    /* No hash: {{appHash}} is empty and the newline before it is not left
     * dangling (trailing spaces and line breaks of the body are dropped). */
    v.app_hash = NULL;
    v.webotp_domain = NULL;
    render_ok(body, &v, out, sizeof(out));
    assert_string_equal(out, "<#> 123456 is your Acme code");
    render_ok("{{code}}  \r\n \n", &v, out, sizeof(out));
    assert_string_equal(out, "123456");
    /* Leading and inner whitespace stay. */
    render_ok("\n {{code}}\n\nbye", &v, out, sizeof(out));
    assert_string_equal(out, "\n 123456\n\nbye");
}

/* ---- Variables ----------------------------------------------------------- */

static void test_variables(void **state)
{
    (void)state;
    char out[256];
    static const char *const names[] = {"user", "minutes_2", "user"};
    static const char *const values[] = {"Asha", "five", "ignored"};
    otp_template_vars v = base_vars();
    v.names = names;
    v.values = values;
    v.nvars = 3;

    render_ok("Hi {{user}}, {{code}} is valid for {{expiresInMinutes}} min ({{minutes_2}}). "
              "{{ user }}",
              &v, out, sizeof(out));
    assert_string_equal(out, "Hi Asha, 123456 is valid for 10 min (five). Asha");

    /* Built-ins win over variables of the same name. */
    static const char *const n2[] = {"code", "appName"};
    static const char *const v2[] = {"000000", "Evil"};
    v.names = n2;
    v.values = v2;
    v.nvars = 2;
    render_ok("{{code}} {{appName}}", &v, out, sizeof(out));
    assert_string_equal(out, "123456 Acme");
}

static void test_values_not_reexpanded(void **state)
{
    (void)state;
    char out[256];
    static const char *const names[] = {"x", "y"};
    static const char *const values[] = {"{{code}} {{appName}}", "{{"};
    otp_template_vars v = base_vars();
    v.names = names;
    v.values = values;
    v.nvars = 2;
    render_ok("{{x}}|{{code}}|{{y}}", &v, out, sizeof(out));
    assert_string_equal(out, "{{code}} {{appName}}|123456|{{");
    /* Nor is the app name. */
    v.app_name = "{{code}}";
    render_ok("{{appName}}: {{code}}", &v, out, sizeof(out));
    assert_string_equal(out, "{{code}}: 123456");
}

static void test_unknown_placeholder(void **state)
{
    (void)state;
    char err[256];
    static const char *const names[] = {"user"};
    static const char *const values[] = {"Asha"};
    otp_template_vars v = base_vars();
    render_fails("{{code}} for {{user}}", &v, OTP_TPL_UNKNOWN_PLACEHOLDER, err, sizeof(err));
    assert_non_null(strstr(err, "{{user}}"));
    v.names = names;
    v.values = values;
    v.nvars = 1;
    /* Names are case-sensitive. */
    render_fails("{{code}} for {{User}}", &v, OTP_TPL_UNKNOWN_PLACEHOLDER, err, sizeof(err));
    assert_non_null(strstr(err, "{{User}}"));
    render_fails("{{Code}}", &v, OTP_TPL_NO_CODE, err, sizeof(err));
}

/* ---- Syntax -------------------------------------------------------------- */

static void expect_syntax(const char *body, const char *in_err)
{
    char err[256];
    otp_template_vars v = base_vars();
    assert_int_equal(otp_template_check(body, err, sizeof(err)), OTP_TPL_BAD_SYNTAX);
    if (in_err && !strstr(err, in_err))
        fail_msg("check of \"%s\": \"%s\" does not mention \"%s\"", body, err, in_err);
    render_fails(body, &v, OTP_TPL_BAD_SYNTAX, err, sizeof(err));
    if (in_err && !strstr(err, in_err))
        fail_msg("render of \"%s\": \"%s\" does not mention \"%s\"", body, err, in_err);
}

static void test_bad_syntax(void **state)
{
    (void)state;
    expect_syntax("{{code}} and {{", "unclosed");
    expect_syntax("{{code", "unclosed");
    expect_syntax("{{code}} {{appName}", "unclosed");
    expect_syntax("{{code}} {{}}", "empty placeholder \"{{}}\"");
    expect_syntax("{{code}} {{   }}", "empty placeholder");
    expect_syntax("{{code}} {{1abc}}", "\"{{1abc}}\"");
    expect_syntax("{{code}} {{_x}}", "\"{{_x}}\"");
    expect_syntax("{{code}} {{a-b}}", "\"{{a-b}}\"");
    expect_syntax("{{code}} {{app Name}}", "\"{{app Name}}\"");
    expect_syntax("{{code}} {{{appName}}}", "\"{{{appName}}\"");
    expect_syntax("{{code}} {{\tappName}}", NULL);
    expect_syntax("{{code}} {{app\nName}}", NULL);
    expect_syntax("{{code}} {{a{{b}}", NULL);
    /* 33 characters: one too many. */
    expect_syntax("{{code}} {{abcdefghijabcdefghijabcdefghijabc}}", "too long");
    expect_syntax("\xff{{code}}", "UTF-8");
    expect_syntax("{{code}} \xE0\xA4", "UTF-8");
    /* An open sequence just before a placeholder: rendering finds it in the
     * message (a value never completes it), not by checking the body first. */
    expect_syntax("\xE0\xA4{{code}}", "UTF-8");
    expect_syntax("{{appName}}\xC3{{code}}", "UTF-8");
    /* A long bad placeholder is quoted in part, cut at a character boundary. */
    char err[256];
    assert_int_equal(
        otp_template_check(
            "{{code}} {{" HINDI_KA HINDI_KA HINDI_KA HINDI_KA HINDI_KA HINDI_KA HINDI_KA HINDI_KA
                HINDI_KA HINDI_KA HINDI_KA HINDI_KA HINDI_KA HINDI_KA HINDI_KA "}}",
            err, sizeof(err)),
        OTP_TPL_BAD_SYNTAX);
    assert_true(otp_sms_segments(err, NULL) > 0); /* valid UTF-8 */
    assert_non_null(strstr(err, "...\""));
}

static void test_accepted_syntax(void **state)
{
    (void)state;
    char out[256], err[256];
    otp_template_vars v = base_vars();
    static const char *const names[] = {"abcdefghijabcdefghijabcdefghijab"}; /* 32 */
    static const char *const values[] = {"ok"};
    v.names = names;
    v.values = values;
    v.nvars = 1;

    /* Spaces inside the braces are allowed, tabs and newlines are not. */
    render_ok("{{ code }} {{code }} {{  appName}}", &v, out, sizeof(out));
    assert_string_equal(out, "123456 123456 Acme");
    /* Single braces and a stray "}}" are literal text. */
    render_ok("{code} {{code}} }} {x}", &v, out, sizeof(out));
    assert_string_equal(out, "{code} 123456 }} {x}");
    /* "{{{{code}}" would be bad, but "{ {{code}}}" is a brace, the code, a brace. */
    render_ok("{ {{code}}}", &v, out, sizeof(out));
    assert_string_equal(out, "{ 123456}");
    render_ok("{{code}} {{abcdefghijabcdefghijabcdefghijab}}", &v, out, sizeof(out));
    assert_string_equal(out, "123456 ok");
    assert_int_equal(otp_template_check("{{ code }}", err, sizeof(err)), OTP_TPL_OK);
}

static void test_no_code(void **state)
{
    (void)state;
    char err[256];
    otp_template_vars v = base_vars();
    assert_int_equal(otp_template_check("Welcome to {{appName}}", err, sizeof(err)),
                     OTP_TPL_NO_CODE);
    assert_non_null(strstr(err, "{{code}}"));
    assert_int_equal(otp_template_check("", err, sizeof(err)), OTP_TPL_NO_CODE);
    assert_int_equal(otp_template_check("code: {code}", err, sizeof(err)), OTP_TPL_NO_CODE);
    /* Render refuses it too: a message without its code would be charged for nothing. */
    render_fails("Welcome to {{appName}}", &v, OTP_TPL_NO_CODE, err, sizeof(err));
    /* A NULL body or NULL err does not crash. */
    assert_int_equal(otp_template_check(NULL, err, sizeof(err)), OTP_TPL_BAD_SYNTAX);
    assert_int_equal(otp_template_check("x", NULL, 0), OTP_TPL_NO_CODE);
}

/* ---- Encodings and segments ---------------------------------------------- */

static void test_hindi_is_ucs2(void **state)
{
    (void)state;
    char out[OTP_SMS_TEXT_MAX + 1];
    otp_sms_encoding enc;
    otp_template_vars v = base_vars();

    assert_int_equal(otp_template_check(HINDI_BODY, NULL, 0), OTP_TPL_OK);
    assert_int_equal(render_ok(HINDI_BODY, &v, out, sizeof(out)), 1);
    assert_int_equal(otp_sms_segments(out, &enc), 1);
    assert_int_equal(enc, OTP_SMS_UCS2);
    /* "123456 " 7 + 4 + " Acme " 6 + 7 + " " + 3 + " " + 2 = 31 units; the
     * app-hash line (12) and the WebOTP line (21) make 64: still one part. */
    v.app_hash = APP_HASH;
    v.webotp_domain = "example.com";
    assert_int_equal(render_ok(HINDI_BODY, &v, out, sizeof(out)), 1);
    /* A longer app name passes 70 units: two parts of at most 67. */
    v.app_name = "Acme Payments Private Limited";
    assert_int_equal(render_ok(HINDI_BODY, &v, out, sizeof(out)), 2);

    /* One Hindi character in a variable turns an English body into UCS-2:
     * 83 characters, one part in GSM-7, are two in UCS-2. */
    v = base_vars();
    v.app_name = "Acme " HINDI_KA;
    assert_int_equal(render_ok(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out)), 2);
    assert_int_equal(otp_sms_segments(out, &enc), 2);
    assert_int_equal(enc, OTP_SMS_UCS2);
}

static void test_multi_segment_gsm(void **state)
{
    (void)state;
    char out[OTP_SMS_TEXT_MAX + 1];
    otp_sms_encoding enc;
    otp_template_vars v = base_vars();
    const int64_t price_per_segment = 25; /* paise: the default 0.25 */

    /* "123456 " (7) + 400 = 407 septets: 153 + 153 + 101, three parts. */
    char *body = build("{{code}} ", "a", 400, "");
    int segments = render_ok(body, &v, out, sizeof(out));
    assert_int_equal(segments, 3);
    assert_int_equal(otp_sms_segments(out, &enc), 3);
    assert_int_equal(enc, OTP_SMS_GSM7);
    /* What the send charges (SPEC 2): price per segment times segments. */
    assert_int_equal(price_per_segment * segments, 75);
    assert_int_equal(otp_template_check(body, NULL, 0), OTP_TPL_OK);
    free(body);

    /* 160 septets is one part; 161 is two. */
    body = build("{{code}}", "a", 154, "");
    assert_int_equal(render_ok(body, &v, out, sizeof(out)), 1);
    free(body);
    body = build("{{code}}", "a", 155, "");
    assert_int_equal(render_ok(body, &v, out, sizeof(out)), 2);
    free(body);
    /* Extension characters cost two septets: 6 + 77 * 2 = 160, one part. */
    body = build("{{code}}", "[", 77, "");
    assert_int_equal(render_ok(body, &v, out, sizeof(out)), 1);
    free(body);
}

static void test_too_many_segments(void **state)
{
    (void)state;
    char err[256];
    char *big = malloc(8192);
    size_t len;
    int segments;
    assert_non_null(big);
    otp_template_vars v = base_vars();
    static const char *const names[] = {"filler"};
    const char *values[1];
    v.names = names;
    v.values = values;
    v.nvars = 1;

    /* 10 GSM parts = 1530 septets: 6 + 1 + 1523 fits, one more does not. */
    char *fill = build("", "a", 1523, "");
    values[0] = fill;
    assert_int_equal(otp_template_render("{{code}} {{filler}}", &v, big, 8192, &len, &segments, err,
                                         sizeof(err)),
                     OTP_TPL_OK);
    assert_int_equal(segments, 10);
    assert_int_equal(len, 1530);
    free(fill);
    fill = build("", "a", 1524, "");
    values[0] = fill;
    assert_int_equal(otp_template_render("{{code}} {{filler}}", &v, big, 8192, &len, &segments, err,
                                         sizeof(err)),
                     OTP_TPL_TOO_LONG);
    assert_non_null(strstr(err, "11 SMS segments (GSM-7)"));
    assert_string_equal(big, "");
    free(fill);

    /* UCS-2: 10 parts of 67 units; 671 Hindi letters after "123456 " are 678. */
    fill = build("", HINDI_KA, 671, "");
    values[0] = fill;
    assert_int_equal(otp_template_render("{{code}} {{filler}}", &v, big, 8192, &len, &segments, err,
                                         sizeof(err)),
                     OTP_TPL_TOO_LONG);
    assert_non_null(strstr(err, "11 SMS segments (UCS-2)"));
    free(fill);
    free(big);
}

static void test_exact_fit_buffer(void **state)
{
    (void)state;
    char out[sizeof(DEFAULT_TEXT)], err[256];
    size_t len = 0;
    int segments = 0;
    otp_template_vars v = base_vars();

    /* Exactly the text and its NUL. */
    assert_int_equal(otp_template_render(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out), &len,
                                         &segments, err, sizeof(err)),
                     OTP_TPL_OK);
    assert_string_equal(out, DEFAULT_TEXT);
    assert_int_equal(len, sizeof(DEFAULT_TEXT) - 1);
    assert_int_equal(segments, 1);
    /* One byte short: refused, nothing partial left behind, the length told. */
    assert_int_equal(otp_template_render(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out) - 1, &len,
                                         &segments, err, sizeof(err)),
                     OTP_TPL_TOO_LONG);
    assert_string_equal(out, "");
    char want[64];
    snprintf(want, sizeof(want), "%zu bytes", sizeof(DEFAULT_TEXT) - 1);
    assert_non_null(strstr(err, want));
    /* Appended lines count too. */
    v.webotp_domain = "example.com";
    assert_int_equal(otp_template_render(OTP_DEFAULT_TEMPLATE, &v, out, sizeof(out), &len,
                                         &segments, err, sizeof(err)),
                     OTP_TPL_TOO_LONG);
    assert_int_equal(
        otp_template_render(OTP_DEFAULT_TEMPLATE, &v, out, 1, &len, &segments, err, sizeof(err)),
        OTP_TPL_TOO_LONG);
    assert_int_equal(
        otp_template_render(OTP_DEFAULT_TEMPLATE, &v, out, 0, &len, &segments, err, sizeof(err)),
        OTP_TPL_TOO_LONG);
}

/* ---- The check at `otpd template add` ------------------------------------ */

static void test_check(void **state)
{
    (void)state;
    char err[256];

    assert_int_equal(otp_template_check(OTP_DEFAULT_TEMPLATE, err, sizeof(err)), OTP_TPL_OK);
    assert_int_equal(
        otp_template_check("{{code}} {{appHash}} {{expiresInMinutes}}", err, sizeof(err)),
        OTP_TPL_OK);
    /* Variables are not known at add: counted as written, never "unknown". */
    assert_int_equal(otp_template_check("Hi {{user}}, {{code}}", err, sizeof(err)), OTP_TPL_OK);

    /* Over the body limit. */
    char *body = build("{{code}}", "a", OTP_TEMPLATE_BODY_MAX - 7, "");
    assert_int_equal(otp_template_check(body, err, sizeof(err)), OTP_TPL_TOO_LONG);
    assert_non_null(strstr(err, "1025 bytes"));
    free(body);

    /* 800 extension characters: 1600 septets, 11 parts once the longest
     * values are in, though only 964 bytes. */
    body = build("{{code}}", "[", 800, "");
    assert_int_equal(otp_template_check(body, err, sizeof(err)), OTP_TPL_TOO_LONG);
    assert_non_null(strstr(err, "segments"));
    assert_non_null(strstr(err, "longest"));
    free(body);

    /* 1000 bytes of body is fine as a body but not once the longest code,
     * app name, hash and WebOTP line are in: 1024 bytes of text at most. */
    body = build("{{code}}", "a", 992, "");
    assert_int_equal(otp_template_check(body, err, sizeof(err)), OTP_TPL_TOO_LONG);
    assert_non_null(strstr(err, "bytes"));
    free(body);

    /* The worst case of the built-ins: 10-digit code, 64-byte app name, app
     * hash, 127-byte WebOTP domain. Find the longest filler that passes and
     * make sure rendering with those values then fits in the limits. */
    char app_name[65], domain[128], out[OTP_SMS_TEXT_MAX + 1];
    memset(app_name, 'n', 64);
    app_name[64] = '\0';
    memset(domain, 'd', 127);
    domain[127] = '\0';
    domain[100] = '.';
    otp_template_vars v = {.code = "0123456789",
                           .app_name = app_name,
                           .expires_minutes = 60,
                           .app_hash = APP_HASH,
                           .webotp_domain = domain};
    int n = 0;
    for (int step = 512; step > 0; step /= 2) {
        body = build("{{code}} {{appName}} {{expiresInMinutes}} ", "a", n + step, "");
        if (otp_template_check(body, NULL, 0) == OTP_TPL_OK)
            n += step;
        free(body);
    }
    assert_true(n > 700);
    body = build("{{code}} {{appName}} {{expiresInMinutes}} ", "a", n, "");
    size_t len;
    int segments;
    assert_int_equal(
        otp_template_render(body, &v, out, sizeof(out), &len, &segments, err, sizeof(err)),
        OTP_TPL_OK);
    assert_int_equal(len, OTP_SMS_TEXT_MAX); /* the byte limit binds for ASCII */
    free(body);
    body = build("{{code}} {{appName}} {{expiresInMinutes}} ", "a", n + 1, "");
    assert_int_equal(
        otp_template_render(body, &v, out, sizeof(out), &len, &segments, err, sizeof(err)),
        OTP_TPL_TOO_LONG);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_exact),
        cmocka_unit_test(test_app_hash_and_webotp_lines),
        cmocka_unit_test(test_body_with_own_app_hash),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_values_not_reexpanded),
        cmocka_unit_test(test_unknown_placeholder),
        cmocka_unit_test(test_bad_syntax),
        cmocka_unit_test(test_accepted_syntax),
        cmocka_unit_test(test_no_code),
        cmocka_unit_test(test_hindi_is_ucs2),
        cmocka_unit_test(test_multi_segment_gsm),
        cmocka_unit_test(test_too_many_segments),
        cmocka_unit_test(test_exact_fit_buffer),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
