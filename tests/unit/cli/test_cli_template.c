/* tests/unit/cli/test_cli_template.c — `otpd template add|list|remove|set-default`
 * and `otpd account set`, run against a temporary data directory: what they
 * print, their exit statuses, and what the store holds afterwards (a refused
 * command stores nothing). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define MAX_ARGS 32
#define DLT_ID "1107161234567890123" /* 19 digits, the usual Indian DLT id */

static char tmpdir[64];  /* removed after each test */
static char datadir[96]; /* tmpdir/data: created by the code under test */

static int setup(void **state)
{
    (void)state;
    static const char *const vars[] = {"OTPD_DATA_DIR", "OTPD_DB", "OTPD_LISTEN",
                                       "OTPD_SECRET_FILE", "OTPD_LOG_LEVEL"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/otpd-test-clitpl-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(datadir, sizeof(datadir), "%s/data", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* What one run printed. */
typedef struct output {
    int status;
    char out[8192];
    char err[8192];
} output;

static void slurp(FILE *f, char *buf, size_t size)
{
    rewind(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs `otpd --data-dir <datadir> ARGS…` as main() would (parse, then run),
 * capturing stdout and stderr. */
static void run(output *o, ...)
{
    char *argv[MAX_ARGS];
    static char *keep[MAX_ARGS]; /* the app keeps pointers into argv */
    int argc = 0;
    va_list ap;
    va_start(ap, o);
    argv[argc++] = (char *)"otpd";
    argv[argc++] = (char *)"--data-dir";
    argv[argc++] = datadir;
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(argc < MAX_ARGS - 1);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    memcpy(keep, argv, sizeof(argv));

    FILE *out = tmpfile(), *err = tmpfile();
    assert_non_null(out);
    assert_non_null(err);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);

    otp_app app;
    o->status = otp_cli_parse(argc, keep, &app);
    if (o->status == 0)
        o->status = otp_cli_run(&app);
    otp_cli_app_done(&app);

    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    slurp(out, o->out, sizeof(o->out));
    slurp(err, o->err, sizeof(o->err));
}

/* Runs and expects the status; prints both streams if it differs. */
#define RUN(o, want, ...)                                                                          \
    do {                                                                                           \
        run(o, __VA_ARGS__, NULL);                                                                 \
        if ((o)->status != (want))                                                                 \
            fail_msg("status %d, want %d\nstdout: %s\nstderr: %s", (o)->status, (want), (o)->out,  \
                     (o)->err);                                                                    \
    } while (0)

static otp_store *open_store(void)
{
    otp_app app;
    char err[256];
    otp_store *s = NULL;
    char *argv[] = {(char *)"otpd", (char *)"--data-dir", datadir, (char *)"account", NULL};
    assert_int_equal(otp_cli_parse(4, argv, &app), 0);
    assert_int_equal(otp_cli_open_store(app.cfg, true, &s, err, sizeof(err)), 0);
    otp_cli_app_done(&app);
    return s;
}

static void count_template(const otp_template *t, void *ctx)
{
    (void)t;
    (*(int *)ctx)++;
}

static int template_count(otp_store *s, int64_t account_id)
{
    int n = 0;
    assert_int_equal(s->ops->template_list(s, account_id, count_template, &n), OTP_OK);
    return n;
}

/* ---- Help ---------------------------------------------------------------- */

static void test_help(void **state)
{
    (void)state;
    output o;
    RUN(&o, 0, "--help");
    assert_non_null(strstr(o.out, "template add ACCOUNT --name NAME --body TEXT"));
    assert_non_null(strstr(o.out, "template set-default ACCOUNT TEMPLATE"));
    assert_non_null(strstr(o.out, "account set ACCOUNT [--price AMOUNT]"));
    RUN(&o, 0, "template", "--help");
    assert_non_null(strstr(o.out, "otpd template add ACCOUNT"));
    assert_non_null(strstr(o.out, "otpd template list ACCOUNT"));
    assert_non_null(strstr(o.out, "otpd template remove ACCOUNT TEMPLATE"));
    RUN(&o, 0, "template", "add", "--help");
    assert_non_null(strstr(o.out, "Usage: otpd template add ACCOUNT --name NAME --body TEXT"));
    assert_non_null(strstr(o.out, "1 to 32 digits"));
    assert_non_null(strstr(o.out, "1 to 11 letters and digits"));
    RUN(&o, 0, "help", "template", "set-default");
    assert_non_null(strstr(o.out, "Usage: otpd template set-default ACCOUNT TEMPLATE"));
    RUN(&o, 0, "account", "set", "--help");
    assert_non_null(strstr(o.out, "--resend-strategy reuse"));
    assert_non_null(strstr(o.out, "--no-webotp-domain"));
    RUN(&o, 2, "template");
    RUN(&o, 2, "template", "frob");
    RUN(&o, 2, "template", "list");
    assert_non_null(strstr(o.err, "missing ACCOUNT"));
    assert_non_null(strstr(o.err, "Try 'otpd template list --help'."));
}

/* ---- Templates ----------------------------------------------------------- */

static void test_template_round_trip(void **state)
{
    (void)state;
    output o;
    char login[64], signup[64];

    RUN(&o, 0, "account", "create", "acme");

    RUN(&o, 0, "template", "add", "acme", "--name", "login", "--body",
        "{{code}} is your {{appName}} login code.\n{{appHash}}", "--dlt-template-id", DLT_ID,
        "--sender-id", "ACMEIN");
    assert_int_equal(strlen(o.out), OTP_ID_LEN + 1);
    snprintf(login, sizeof(login), "%.*s", OTP_ID_LEN, o.out);
    assert_true(otp_id_valid(login, "tpl_"));

    RUN(&o, 0, "template", "add", "acme", "--name=signup", "--body", "Welcome! {{ code }}",
        "--default", "--json");
    assert_int_equal(strncmp(o.out, "{\"id\":\"tpl_", 11), 0);
    assert_non_null(strstr(o.out, "\",\"name\":\"signup\",\"default\":true}\n"));
    snprintf(signup, sizeof(signup), "%.*s", OTP_ID_LEN, o.out + 7);
    assert_true(otp_id_valid(signup, "tpl_"));

    /* Same name again: refused, whatever the body. */
    RUN(&o, 1, "template", "add", "acme", "--name", "login", "--body", "{{code}}");
    assert_non_null(strstr(o.err, "already exists"));

    RUN(&o, 0, "template", "list", "acme", "--json");
    char want[512];
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"login\",\"body\":\"{{code}} is your {{appName}} login "
             "code.\\n{{appHash}}\",\"dltTemplateId\":\"" DLT_ID "\",\"senderId\":\"ACMEIN\","
             "\"default\":false,\"createdAt\":\"",
             login);
    assert_non_null(strstr(o.out, want));
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"signup\",\"body\":\"Welcome! {{ code }}\","
             "\"dltTemplateId\":null,\"senderId\":null,\"default\":true,\"createdAt\":\"",
             signup);
    assert_non_null(strstr(o.out, want));

    RUN(&o, 0, "template", "list", "acme");
    assert_non_null(strstr(o.out, "ID"));
    assert_non_null(strstr(o.out, "DLT ID"));
    assert_non_null(strstr(o.out, DLT_ID));
    assert_non_null(strstr(o.out, "login code.\\n{{appHash}}\n")); /* one line per template */

    otp_store *s = open_store();
    otp_account a;
    otp_template t;
    assert_int_equal(s->ops->account_find(s, "acme", &a), OTP_OK);
    assert_int_equal(s->ops->template_find(s, a.id, NULL, &t), OTP_OK);
    assert_string_equal(t.public_id, signup);
    assert_int_equal(s->ops->template_find(s, a.id, login, &t), OTP_OK);
    assert_string_equal(t.name, "login");
    assert_string_equal(t.body, "{{code}} is your {{appName}} login code.\n{{appHash}}");
    assert_string_equal(t.dlt_template_id, DLT_ID);
    assert_string_equal(t.sender_id, "ACMEIN");
    assert_false(t.is_default);
    otp_store_close(s);

    /* set-default by name moves the default. */
    RUN(&o, 0, "template", "set-default", "acme", "login");
    snprintf(want, sizeof(want), "default template of acme: %s (login)\n", login);
    assert_string_equal(o.out, want);
    RUN(&o, 0, "template", "set-default", a.public_id, login, "--json");
    snprintf(want, sizeof(want), "{\"id\":\"%s\",\"name\":\"login\",\"default\":true}\n", login);
    assert_string_equal(o.out, want);
    s = open_store();
    assert_int_equal(s->ops->template_find(s, a.id, NULL, &t), OTP_OK);
    assert_string_equal(t.public_id, login);
    assert_int_equal(s->ops->template_find(s, a.id, "signup", &t), OTP_OK);
    assert_false(t.is_default);
    otp_store_close(s);

    /* remove by id, then by name (the default: a note on stderr). */
    RUN(&o, 0, "template", "remove", "acme", signup);
    snprintf(want, sizeof(want), "removed %s (signup)\n", signup);
    assert_string_equal(o.out, want);
    RUN(&o, 1, "template", "remove", "acme", signup);
    assert_non_null(strstr(o.err, "no such template"));
    RUN(&o, 0, "template", "remove", "acme", "login", "--json");
    snprintf(want, sizeof(want), "{\"id\":\"%s\",\"name\":\"login\",\"wasDefault\":true}\n", login);
    assert_string_equal(o.out, want);
    assert_non_null(strstr(o.err, "built-in text"));
    RUN(&o, 0, "template", "list", "acme", "--json");
    assert_string_equal(o.out, "[]\n");

    RUN(&o, 1, "template", "set-default", "acme", "nothing");
    assert_non_null(strstr(o.err, "otpd: no such template in account acme: nothing"));
    RUN(&o, 1, "template", "list", "nobody");
    assert_non_null(strstr(o.err, "no such account"));

    s = open_store();
    assert_int_equal(template_count(s, a.id), 0);
    assert_int_equal(s->ops->template_find(s, a.id, NULL, &t), OTP_E_NOT_FOUND);
    otp_store_close(s);
}

static void test_template_add_refusals(void **state)
{
    (void)state;
    output o;
    RUN(&o, 0, "account", "create", "acme");

    /* Bad bodies: exit 2 with the checker's sentence. */
    RUN(&o, 2, "template", "add", "acme", "--name", "t", "--body", "Your code is ready");
    assert_non_null(strstr(o.err, "otpd: invalid template body: "));
    assert_non_null(strstr(o.err, "no {{code}}"));
    assert_non_null(strstr(o.err, "Try 'otpd template add --help'."));
    RUN(&o, 2, "template", "add", "acme", "--name", "t", "--body", "{{code}} {{1abc}}");
    assert_non_null(strstr(o.err, "{{1abc}}"));
    RUN(&o, 2, "template", "add", "acme", "--name", "t", "--body", "{{code}} {{appName");
    assert_non_null(strstr(o.err, "unclosed"));
    char body[1200];
    memset(body, '[', 800);
    strcpy(body + 800, "{{code}}");
    RUN(&o, 2, "template", "add", "acme", "--name", "t", "--body", body);
    assert_non_null(strstr(o.err, "segments"));

    /* Names, DLT ids, sender ids. */
    RUN(&o, 2, "template", "add", "acme", "--name", "bad name", "--body", "{{code}}");
    RUN(&o, 2, "template", "add", "acme", "--name", "tpl_0000000000000000000000", "--body",
        "{{code}}");
    RUN(&o, 2, "template", "add", "acme", "--name", "", "--body", "{{code}}");
    static const char *const bad_dlt[] = {"", "12ab", "-1", "123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof(bad_dlt) / sizeof(bad_dlt[0]); i++) {
        RUN(&o, 2, "template", "add", "acme", "--name", "t", "--body", "{{code}}",
            "--dlt-template-id", bad_dlt[i]);
        if (*bad_dlt[i])
            assert_non_null(strstr(o.err, "invalid DLT template id"));
    }
    static const char *const bad_sender[] = {"ACME-IN", "ABCDEFGHIJKL",     "+",
                                             "12+3",    "1234567890123456", "AC ME"};
    for (size_t i = 0; i < sizeof(bad_sender) / sizeof(bad_sender[0]); i++) {
        RUN(&o, 2, "template", "add", "acme", "--name", "t", "--body", "{{code}}", "--sender-id",
            bad_sender[i]);
        assert_non_null(strstr(o.err, "invalid sender id"));
    }
    RUN(&o, 2, "template", "add", "acme", "--body", "{{code}}");
    assert_non_null(strstr(o.err, "missing --name"));
    RUN(&o, 2, "template", "add", "acme", "--name", "t");
    assert_non_null(strstr(o.err, "missing --body"));
    RUN(&o, 2, "template", "add", "acme", "--name", "t", "--body", "{{code}}", "--default=yes");
    RUN(&o, 1, "template", "add", "nobody", "--name", "t", "--body", "{{code}}");

    /* Nothing of the above was stored. */
    otp_store *s = open_store();
    otp_account a;
    assert_int_equal(s->ops->account_find(s, "acme", &a), OTP_OK);
    assert_int_equal(template_count(s, a.id), 0);
    otp_store_close(s);

    /* What is accepted: a numeric sender, the longest DLT id, UTF-8 text. The
     * account's first template becomes its default without --default. */
    RUN(&o, 0, "template", "add", "acme", "--name", "num", "--body", "{{code}}", "--sender-id",
        "+919876543210", "--dlt-template-id", "12345678901234567890123456789012", "--json");
    assert_non_null(strstr(o.out, "\"name\":\"num\",\"default\":true}"));
    RUN(&o, 0, "template", "add", "acme", "--name", "hi", "--sender-id", "ACMEIN", "--body",
        "{{code}} \xE0\xA4\x86\xE0\xA4\xAA\xE0\xA4\x95\xE0\xA4\xBE {{appName}} OTP", "--json");
    assert_non_null(strstr(o.out, "\"name\":\"hi\",\"default\":false}"));
    RUN(&o, 0, "template", "add", "acme", "--name", "eleven", "--body", "{{code}}", "--sender-id",
        "ABCDEFGHIJK");
    s = open_store();
    assert_int_equal(template_count(s, a.id), 3);
    otp_store_close(s);
}

/* ---- account set --------------------------------------------------------- */

static void test_account_set(void **state)
{
    (void)state;
    output o;
    RUN(&o, 0, "account", "create", "acme");

    RUN(&o, 0, "account", "show", "acme");
    assert_non_null(strstr(o.out, "resendStrategy: rotate\nwebotpDomain: -\n"));
    RUN(&o, 0, "account", "show", "acme", "--json");
    assert_non_null(strstr(o.out, "\"resendStrategy\":\"rotate\",\"webotpDomain\":null"));

    RUN(&o, 0, "account", "set", "acme", "--price", "0.30", "--low-balance", "50",
        "--resend-strategy", "reuse", "--webotp-domain", "auth.example.co.in");
    assert_non_null(strstr(o.out, "name: acme\n"
                                  "pricePerSegment: 0.30 INR\n"
                                  "lowBalanceThreshold: 50.00 INR\n"
                                  "resendStrategy: reuse\n"
                                  "webotpDomain: auth.example.co.in\n"));

    otp_store *s = open_store();
    otp_account a;
    assert_int_equal(s->ops->account_find(s, "acme", &a), OTP_OK);
    assert_int_equal(a.price_per_segment, 30);
    assert_int_equal(a.low_balance_threshold, 5000);
    assert_int_equal(a.resend_strategy, OTP_RESEND_REUSE);
    assert_string_equal(a.webotp_domain, "auth.example.co.in");
    otp_store_close(s);

    /* Only what is named changes. */
    RUN(&o, 0, "account", "set", a.public_id, "--no-webotp-domain", "--json");
    char want[256];
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"name\":\"acme\",\"pricePerSegment\":\"0.30\","
             "\"lowBalanceThreshold\":\"50.00\",\"resendStrategy\":\"reuse\","
             "\"webotpDomain\":null}\n",
             a.public_id);
    assert_string_equal(o.out, want);
    RUN(&o, 0, "account", "set", "acme", "--resend-strategy=rotate", "--low-balance", "0",
        "--price", "1", "--json");
    assert_non_null(strstr(o.out, "\"pricePerSegment\":\"1.00\",\"lowBalanceThreshold\":\"0.00\","
                                  "\"resendStrategy\":\"rotate\",\"webotpDomain\":null}\n"));
    RUN(&o, 0, "account", "set", "acme", "--webotp-domain", "example.com");
    RUN(&o, 0, "account", "show", "acme", "--json");
    assert_non_null(
        strstr(o.out, "\"resendStrategy\":\"rotate\",\"webotpDomain\":\"example.com\""));

    s = open_store();
    assert_int_equal(s->ops->account_find(s, "acme", &a), OTP_OK);
    assert_int_equal(a.price_per_segment, 100);
    assert_int_equal(a.low_balance_threshold, 0);
    assert_int_equal(a.resend_strategy, OTP_RESEND_ROTATE);
    assert_string_equal(a.webotp_domain, "example.com");
    otp_store_close(s);

    /* Refusals: exit 2, nothing changed. */
    static const char *const bad_price[] = {"0", "0.00", "0.001", "-1", "abc", ""};
    for (size_t i = 0; i < sizeof(bad_price) / sizeof(bad_price[0]); i++) {
        RUN(&o, 2, "account", "set", "acme", "--price", bad_price[i]);
        assert_non_null(strstr(o.err, "invalid price"));
    }
    RUN(&o, 2, "account", "set", "acme", "--low-balance", "-0.01");
    assert_non_null(strstr(o.err, "invalid low-balance"));
    RUN(&o, 2, "account", "set", "acme", "--resend-strategy", "Rotate");
    assert_non_null(strstr(o.err, "rotate or reuse"));
    char long_domain[200];
    memset(long_domain, 'a', 60);
    memcpy(long_domain + 60, ".", 1);
    memset(long_domain + 61, 'b', 60);
    strcpy(long_domain + 121, ".example"); /* 129 characters */
    static const char *bad_domain[] = {"Example.com", "localhost", "-a.com",  "a-.com",
                                       "a..com",      "a.com.",    ".a.com",  "https://a.com",
                                       "a_b.com",     "",          "a.com/x", NULL};
    bad_domain[sizeof(bad_domain) / sizeof(bad_domain[0]) - 1] = long_domain;
    for (size_t i = 0; i < sizeof(bad_domain) / sizeof(bad_domain[0]); i++) {
        RUN(&o, 2, "account", "set", "acme", "--webotp-domain", bad_domain[i]);
        assert_non_null(strstr(o.err, "invalid WebOTP domain"));
    }
    RUN(&o, 2, "account", "set", "acme", "--webotp-domain", "a.com", "--no-webotp-domain");
    assert_non_null(strstr(o.err, "exclude each other"));
    RUN(&o, 2, "account", "set", "acme");
    assert_non_null(strstr(o.err, "nothing to set"));
    RUN(&o, 1, "account", "set", "nobody", "--price", "1");

    s = open_store();
    assert_int_equal(s->ops->account_find(s, "acme", &a), OTP_OK);
    assert_int_equal(a.price_per_segment, 100);
    assert_string_equal(a.webotp_domain, "example.com");
    otp_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_help, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template_add_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_set, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
