/* tests/unit/cli/test_cli.c — the otpd command line: global option parsing and
 * settings precedence, exit statuses, the server secret file, and the account,
 * key and wallet commands run against a temporary data directory, checking
 * both what they print and what the store holds afterwards. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/apikey.h"
#include "otpd_config.h"

#define MAX_ARGS 32

static char tmpdir[64];  /* removed after each test */
static char datadir[96]; /* tmpdir/data: created by the code under test */

static void rm_rf(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    static const char *const vars[] = {"OTPD_DATA_DIR",  "OTPD_DB",
                                       "OTPD_LISTEN",    "OTPD_SECRET_FILE",
                                       "OTPD_LOG_LEVEL", "OTPD_STORE_MAX_BATCH"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/otpd-test-cli-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(datadir, sizeof(datadir), "%s/data", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_rf(tmpdir);
    unsetenv("OTPD_LISTEN");
    unsetenv("OTPD_LOG_LEVEL");
    return 0;
}

/* Builds argv from a NULL-terminated list (argv[0] = "otpd") and parses it. */
static int parse_v(otp_app *app, va_list ap)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    argv[argc++] = (char *)"otpd";
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(argc < MAX_ARGS - 1);
        argv[argc++] = (char *)a;
    }
    argv[argc] = NULL;
    /* The app keeps pointers into argv: give it storage that outlives us. */
    static char *keep[MAX_ARGS];
    memcpy(keep, argv, sizeof(argv));
    return otp_cli_parse(argc, keep, app);
}

static int parse(otp_app *app, ...)
{
    va_list ap;
    va_start(ap, app);
    int r = parse_v(app, ap);
    va_end(ap);
    return r;
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

/* Runs `otpd --data-dir <datadir> ARGS…` (parse then run), capturing stdout
 * and stderr. A parse error is the status, as main() would return it. */
static void run(output *o, ...)
{
    char *argv[MAX_ARGS];
    static char *keep[MAX_ARGS];
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

/* Drops the trailing newline of a one-line answer. */
static const char *line(char *s)
{
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n')
        s[n - 1] = '\0';
    return s;
}

static otp_store *open_store(void)
{
    otp_app app;
    char err[256];
    otp_store *s = NULL;
    assert_int_equal(parse(&app, "--data-dir", datadir, "account", NULL), 0);
    assert_int_equal(otp_cli_open_store(app.cfg, true, &s, err, sizeof(err)), 0);
    otp_cli_app_done(&app);
    return s;
}

/* ---- Parsing ------------------------------------------------------------- */

static void test_parse_globals_anywhere(void **state)
{
    (void)state;
    otp_app app;
    assert_int_equal(parse(&app, "account", "--json", "create", "--data-dir", "/x/y", "acme",
                           "--db=sqlite:/z.db", NULL),
                     0);
    assert_string_equal(app.command, "account");
    assert_true(app.json);
    assert_false(app.help);
    assert_int_equal(app.argc, 2);
    assert_string_equal(app.argv[0], "create");
    assert_string_equal(app.argv[1], "acme");
    assert_null(app.argv[2]);
    assert_string_equal(otp_config_get(app.cfg, "data_dir"), "/x/y");
    assert_string_equal(otp_config_origin(app.cfg, "data_dir"), "--data-dir");
    assert_string_equal(otp_config_get(app.cfg, "db"), "sqlite:/z.db");
    otp_cli_app_done(&app);

    assert_int_equal(parse(&app, "-h", NULL), 0);
    assert_null(app.command);
    assert_true(app.help);
    otp_cli_app_done(&app);
    otp_cli_app_done(NULL);
}

static void test_parse_precedence(void **state)
{
    (void)state;
    char ini[128];
    snprintf(ini, sizeof(ini), "%s/otpd.ini", tmpdir);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fputs("listen = 10.0.0.1:1\nlog_level = debug\n[server]\nthreads = 7\n", f);
    fclose(f);

    otp_app app;
    /* File alone. */
    assert_int_equal(parse(&app, "--config", ini, "version", NULL), 0);
    assert_string_equal(otp_config_get(app.cfg, "listen"), "10.0.0.1:1");
    assert_string_equal(otp_config_get(app.cfg, "server.threads"), "7");
    otp_cli_app_done(&app);

    /* Environment over file. */
    setenv("OTPD_LISTEN", "10.0.0.2:2", 1);
    assert_int_equal(parse(&app, "version", "--config", ini, NULL), 0);
    assert_string_equal(otp_config_get(app.cfg, "listen"), "10.0.0.2:2");
    assert_string_equal(otp_config_origin(app.cfg, "listen"), "OTPD_LISTEN");
    assert_string_equal(otp_config_get(app.cfg, "log_level"), "debug");
    otp_cli_app_done(&app);

    /* Flags over both, whatever their position. */
    assert_int_equal(parse(&app, "--listen", "10.0.0.3:3", "version", "--config", ini, NULL), 0);
    assert_string_equal(otp_config_get(app.cfg, "listen"), "10.0.0.3:3");
    assert_string_equal(otp_config_origin(app.cfg, "listen"), "--listen");
    otp_cli_app_done(&app);

    /* --set reaches any key; among flags the last one wins. */
    assert_int_equal(parse(&app, "--listen", "10.0.0.3:3", "--set", "listen=10.0.0.4:4", "--set",
                           "server.threads=3", "version", NULL),
                     0);
    assert_string_equal(otp_config_get(app.cfg, "listen"), "10.0.0.4:4");
    assert_string_equal(otp_config_origin(app.cfg, "listen"), "--set");
    assert_string_equal(otp_config_get(app.cfg, "server.threads"), "3");
    otp_cli_app_done(&app);
}

static void test_parse_errors(void **state)
{
    (void)state;
    otp_app app;
    /* Each is a usage error (2), and app is left safe to release. */
    assert_int_equal(parse(&app, "--bogus", "version", NULL), 2);
    otp_cli_app_done(&app);
    assert_int_equal(parse(&app, "frobnicate", NULL), 2);
    otp_cli_app_done(&app);
    assert_int_equal(parse(&app, "version", "--data-dir", NULL), 2);
    otp_cli_app_done(&app);
    assert_int_equal(parse(&app, "--set", "listen", "version", NULL), 2);
    otp_cli_app_done(&app);
    assert_int_equal(parse(&app, "--set", "=x", "version", NULL), 2);
    otp_cli_app_done(&app);
    assert_int_equal(parse(&app, "--set", "no.such.key=1", "version", NULL), 2);
    otp_cli_app_done(&app);
    assert_int_equal(parse(&app, "--json=yes", "version", NULL), 2);
    otp_cli_app_done(&app);
    assert_int_equal(parse(&app, "--config", "/nonexistent/otpd.ini", "version", NULL), 2);
    otp_cli_app_done(&app);
}

static void test_parse_command_values(void **state)
{
    (void)state;
    otp_app app;
    /* A command option's value is never taken for a global option, "-5" is an
     * argument, and after "--" nothing is an option. */
    assert_int_equal(
        parse(&app, "wallet", "credit", "acme", "-5", "--note", "--json", "--", "--help", NULL), 0);
    assert_false(app.json);
    assert_false(app.help);
    assert_int_equal(app.argc, 7);
    assert_string_equal(app.argv[2], "-5");
    assert_string_equal(app.argv[4], "--json");
    assert_string_equal(app.argv[5], "--");
    assert_string_equal(app.argv[6], "--help");
    otp_cli_app_done(&app);
}

/* ---- Help, version, usage errors ----------------------------------------- */

static void test_help_and_version(void **state)
{
    (void)state;
    output o;
    run(&o, NULL);
    assert_int_equal(o.status, 2);
    assert_string_equal(o.out, "");
    assert_non_null(strstr(o.err, "Usage: otpd"));

    run(&o, "--help", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "Usage: otpd"));
    assert_non_null(strstr(o.out, "serve [--listen ADDR]"));

    run(&o, "help", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "account create NAME"));

    run(&o, "help", "config", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "OTPD_DATA_DIR"));

    run(&o, "key", "create", "--help", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "Usage: otpd key create ACCOUNT"));

    run(&o, "wallet", "--help", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "otpd wallet credit"));

    run(&o, "admin-key", "create", "--help", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "Usage: otpd admin-key create [--name NAME]"));
    run(&o, "help", "admin-key", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "otpd admin-key revoke ADMIN_KEY_ID"));

    run(&o, "serve", "--help", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "Usage: otpd serve"));

    run(&o, "version", NULL);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.out, "otpd " OTPD_VERSION "\n");
    run(&o, "version", "--json", NULL);
    assert_string_equal(o.out, "{\"version\":\"" OTPD_VERSION "\"}\n");

    run(&o, "account", NULL);
    assert_int_equal(o.status, 2);
    run(&o, "account", "frob", NULL);
    assert_int_equal(o.status, 2);
    run(&o, "account", "list", "--frob", NULL);
    assert_int_equal(o.status, 2);
    assert_non_null(strstr(o.err, "unknown option '--frob'"));
    run(&o, "account", "create", NULL);
    assert_int_equal(o.status, 2);
    assert_non_null(strstr(o.err, "missing NAME"));
    run(&o, "version", "extra", NULL);
    assert_int_equal(o.status, 2);
    /* Nothing above needed the data directory. */
    struct stat st;
    assert_int_not_equal(stat(datadir, &st), 0);
}

/* ---- Secret file ------------------------------------------------------- */

static void test_secret_file(void **state)
{
    (void)state;
    otp_app app;
    char err[512], path[256], nested[128];
    uint8_t a[OTP_SECRET_LEN], b[OTP_SECRET_LEN];
    struct stat st;

    snprintf(nested, sizeof(nested), "%s/x/y/data", tmpdir);
    assert_int_equal(parse(&app, "--data-dir", nested, "version", NULL), 0);

    /* First load creates the directories (0700) and the file (0600). */
    assert_int_equal(otp_cli_load_secret(app.cfg, a, err, sizeof(err)), 0);
    assert_int_equal(stat(nested, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/secret", nested);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, OTP_SECRET_LEN);

    /* Second load reads the same secret. */
    assert_int_equal(otp_cli_load_secret(app.cfg, b, err, sizeof(err)), 0);
    assert_memory_equal(a, b, OTP_SECRET_LEN);

    /* Readable by others: refused, naming the file. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_not_equal(otp_cli_load_secret(app.cfg, b, err, sizeof(err)), 0);
    assert_non_null(strstr(err, path));

    /* Wrong size: refused, naming the file. */
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(truncate(path, OTP_SECRET_LEN - 1), 0);
    memset(err, 0, sizeof(err));
    assert_int_not_equal(otp_cli_load_secret(app.cfg, b, err, sizeof(err)), 0);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "32 bytes"));
    otp_cli_app_done(&app);

    /* secret_file set explicitly. */
    char other[128];
    snprintf(other, sizeof(other), "%s/elsewhere.key", tmpdir);
    assert_int_equal(parse(&app, "--data-dir", nested, "--set", "version", NULL), 2);
    otp_cli_app_done(&app);
    char kv[256];
    snprintf(kv, sizeof(kv), "secret_file=%s", other);
    assert_int_equal(parse(&app, "--data-dir", nested, "--set", kv, "version", NULL), 0);
    assert_int_equal(otp_cli_load_secret(app.cfg, b, err, sizeof(err)), 0);
    assert_int_equal(stat(other, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_memory_not_equal(a, b, OTP_SECRET_LEN);
    otp_cli_app_done(&app);
}

/* ---- Commands against a real store ------------------------------------- */

static void test_account_commands(void **state)
{
    (void)state;
    output o;
    char id[64];

    run(&o, "account", "create", "acme", NULL);
    assert_int_equal(o.status, 0);
    line(o.out);
    assert_int_equal(strlen(o.out), OTP_ID_LEN);
    assert_true(otp_id_valid(o.out, "acc_"));
    snprintf(id, sizeof(id), "%.*s", (int)sizeof(id) - 1, o.out);

    run(&o, "account", "create", "acme", NULL);
    assert_int_equal(o.status, 1);
    assert_non_null(strstr(o.err, "already exists"));
    run(&o, "account", "create", "bad name", NULL);
    assert_int_equal(o.status, 2);
    run(&o, "account", "create",
        "x123456789x123456789x123456789x123456789x123456789x123456789xxxxx", NULL);
    assert_int_equal(o.status, 2);
    run(&o, "account", "create", "acc_0000000000000000000000", NULL);
    assert_int_equal(o.status, 2);

    run(&o, "--json", "account", "create", "beta.co_2-x", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "{\"id\":\"acc_"));
    assert_non_null(strstr(o.out, "\",\"name\":\"beta.co_2-x\"}\n"));

    run(&o, "account", "list", "--json", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "\"name\":\"acme\",\"balance\":\"0.00\",\"currency\":\"INR\""));
    assert_non_null(strstr(o.out, id));
    run(&o, "account", "list", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "BALANCE"));
    assert_non_null(strstr(o.out, "beta.co_2-x"));

    run(&o, "account", "show", id, "--json", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "\"balance\":\"0.00\""));
    assert_non_null(strstr(o.out, "\"pricePerSegment\":\"0.25\""));
    assert_non_null(strstr(o.out, "\"requests\":0,\"messages\":0,\"ledgerEntries\":0"));
    run(&o, "account", "show", "acme", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "name: acme\n"));
    assert_non_null(strstr(o.out, "ledgerSum: 0.00\n"));
    run(&o, "account", "show", "nobody", NULL);
    assert_int_equal(o.status, 1);
    assert_non_null(strstr(o.err, "otpd: no such account: nobody"));

    otp_store *s = open_store();
    otp_account a;
    assert_int_equal(s->ops->account_find(s, "acme", &a), OTP_OK);
    assert_string_equal(a.public_id, id);
    otp_store_close(s);
}

static void test_key_commands(void **state)
{
    (void)state;
    output o;
    char key[128], kid[64];

    run(&o, "account", "create", "acme", NULL);
    assert_int_equal(o.status, 0);

    run(&o, "key", "create", "acme", "--name", "ci", NULL);
    assert_int_equal(o.status, 0);
    snprintf(key, sizeof(key), "%s", line(o.out));
    assert_int_equal(strlen(key), OTP_APIKEY_LEN);
    assert_true(otp_apikey_check(key, NULL));
    assert_int_equal(strncmp(key, "otpd_live_", 10), 0);
    assert_string_equal(o.err, "Store this key now: it is not shown again.\n");

    run(&o, "key", "create", "acme", "--test", "--json", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "\"key\":\"otpd_test_"));
    assert_non_null(strstr(o.out, "\"prefix\":\"otpd_test_"));
    assert_non_null(strstr(o.out, "\"name\":\"default\",\"test\":true}\n"));

    run(&o, "key", "create", "nobody", NULL);
    assert_int_equal(o.status, 1);
    run(&o, "key", "create", "acme", "--name", "", NULL);
    assert_int_equal(o.status, 2);

    run(&o, "key", "list", "acme", "--json", NULL);
    assert_int_equal(o.status, 0);
    assert_null(strstr(o.out, key)); /* never the key */
    assert_non_null(strstr(o.out, "\"name\":\"ci\",\"test\":false"));
    assert_non_null(strstr(o.out, "\"lastUsedAt\":null,\"revokedAt\":null"));

    /* The stored key authenticates by its hash. */
    uint8_t hash[OTP_APIKEY_HASH_LEN];
    otp_key_auth auth;
    otp_apikey_hash(key, hash);
    otp_store *s = open_store();
    assert_int_equal(s->ops->key_lookup(s, hash, &auth), OTP_OK);
    assert_false(auth.revoked);
    assert_false(auth.test);
    otp_store_close(s);

    /* Find the id of the "ci" key from the JSON list. */
    const char *p = strstr(o.out, "\"id\":\"key_");
    assert_non_null(p);
    const char *ci = strstr(o.out, "\"name\":\"ci\"");
    const char *q;
    while ((q = strstr(p + 1, "\"id\":\"key_")) != NULL && q < ci)
        p = q;
    snprintf(kid, sizeof(kid), "%.*s", OTP_ID_LEN, p + 6);
    assert_true(otp_id_valid(kid, "key_"));

    run(&o, "key", "list", "acme", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "PREFIX"));
    assert_non_null(strstr(o.out, kid));
    assert_null(strstr(o.out, key));

    run(&o, "key", "revoke", kid, NULL);
    assert_int_equal(o.status, 0);
    char want[80];
    snprintf(want, sizeof(want), "revoked %s\n", kid);
    assert_string_equal(o.out, want);
    run(&o, "key", "revoke", kid, NULL);
    assert_int_equal(o.status, 1);
    assert_non_null(strstr(o.err, "already revoked"));
    run(&o, "key", "revoke", "key_0000000000000000000000", NULL);
    assert_int_equal(o.status, 1);
    run(&o, "key", "revoke", "junk", NULL);
    assert_int_equal(o.status, 1);

    s = open_store();
    assert_int_equal(s->ops->key_lookup(s, hash, &auth), OTP_OK);
    assert_true(auth.revoked);
    otp_store_close(s);
}

static void test_wallet_commands(void **state)
{
    (void)state;
    output o;

    run(&o, "account", "create", "acme", NULL);
    assert_int_equal(o.status, 0);

    run(&o, "wallet", "credit", "acme", "500", NULL);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.out, "balance 500.00\n");
    run(&o, "wallet", "credit", "acme", "12.50", "--note", "top-up", "--json", NULL);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.out, "{\"balance\":\"512.50\",\"transactionId\":\"ltx_00000000002\","
                               "\"replayed\":false}\n");

    static const char *const bad[] = {"0", "-5", "abc", "1.234", "", "0.00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run(&o, "wallet", "credit", "acme", bad[i], NULL);
        assert_int_equal(o.status, 2);
        assert_non_null(strstr(o.err, "invalid amount"));
    }
    run(&o, "wallet", "credit", "nobody", "5", NULL);
    assert_int_equal(o.status, 1);

    run(&o, "wallet", "show", "acme", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "balance: 512.50 INR\n"));
    run(&o, "wallet", "show", "acme", "--json", NULL);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out,
                           "{\"balance\":\"512.50\",\"currency\":\"INR\",\"pricePerSegment\":"
                           "\"0.25\",\"lowBalanceThreshold\":"));

    run(&o, "account", "show", "acme", "--json", NULL);
    assert_non_null(strstr(o.out, "\"ledgerEntries\":2,\"ledgerSum\":\"512.50\""));

    otp_store *s = open_store();
    otp_account a;
    otp_account_stats st;
    assert_int_equal(s->ops->account_find(s, "acme", &a), OTP_OK);
    assert_int_equal(s->ops->account_stats(s, a.id, &st), OTP_OK);
    assert_int_equal(a.balance, 51250);
    assert_int_equal(st.ledger_entries, 2);
    assert_int_equal(st.ledger_sum, 51250);
    otp_store_close(s);
}

static void test_migrate(void **state)
{
    (void)state;
    output o;
    char want[64];
    run(&o, "migrate", NULL);
    assert_int_equal(o.status, 0);
    snprintf(want, sizeof(want), "schema version %d\n", OTP_SCHEMA_VERSION);
    assert_string_equal(o.out, want);
    run(&o, "migrate", "--json", NULL);
    snprintf(want, sizeof(want), "{\"schemaVersion\":%d}\n", OTP_SCHEMA_VERSION);
    assert_string_equal(o.out, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_globals_anywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_command_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wallet_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
