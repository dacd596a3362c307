/* tests/unit/util/test_config.c — settings precedence, derived defaults, INI
 * parsing and the error messages an operator sees for a bad setting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/config.h"

static char ini_path[64];

/* Writes text to a fresh temporary INI file and returns its path. */
static const char *write_ini(const char *text)
{
    snprintf(ini_path, sizeof(ini_path), "/tmp/otpd-test-config-XXXXXX");
    int fd = mkstemp(ini_path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return ini_path;
}

static int teardown(void **state)
{
    (void)state;
    if (ini_path[0])
        unlink(ini_path);
    ini_path[0] = '\0';
    unsetenv("OTPD_LISTEN");
    unsetenv("OTPD_DATA_DIR");
    unsetenv("OTPD_SERVER_MAX_BODY");
    unsetenv("OTPD_STORE_MIGRATE");
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    otp_config *c = otp_config_new();
    assert_non_null(c);
    assert_string_equal(otp_config_get(c, "data_dir"), "./otpd-data");
    assert_string_equal(otp_config_get(c, "db"), "sqlite:./otpd-data/otpd.db");
    assert_string_equal(otp_config_get(c, "secret_file"), "./otpd-data/secret");
    assert_string_equal(otp_config_get(c, "listen"), "127.0.0.1:8080");
    assert_string_equal(otp_config_get(c, "log_level"), "info");
    assert_string_equal(otp_config_get(c, "delivery.providers"), "");
    assert_string_equal(otp_config_origin(c, "listen"), "default");
    assert_null(otp_config_get(c, "no.such"));
    assert_null(otp_config_get(c, "provider.file.path"));

    long l = 0;
    char err[256];
    assert_int_equal(otp_config_int(c, "server.threads", 1, 256, &l, err, sizeof(err)), 0);
    assert_int_equal(l, 2);
    assert_int_equal(otp_config_int(c, "server.max_body", 1, 1 << 20, &l, err, sizeof(err)), 0);
    assert_int_equal(l, 16384);
    assert_int_equal(
        otp_config_int(c, "server.max_connections_per_ip", 0, 100, &l, err, sizeof(err)), 0);
    assert_int_equal(l, 0);
    assert_int_equal(otp_config_int(c, "delivery.lease", 1, 3600, &l, err, sizeof(err)), 0);
    assert_int_equal(l, 30);
    bool b = false;
    assert_int_equal(otp_config_bool(c, "store.migrate", &b, err, sizeof(err)), 0);
    assert_true(b);
    otp_config_free(c);
    otp_config_free(NULL);
}

/* db and secret_file follow data_dir, whichever layer set it, unless set themselves. */
static void test_data_dir_derived(void **state)
{
    (void)state;
    char err[256];
    otp_config *c = otp_config_new();
    assert_int_equal(
        otp_config_set(c, "data_dir", "/var/lib/otpd/", "--data-dir", err, sizeof(err)), 0);
    assert_string_equal(otp_config_get(c, "db"), "sqlite:/var/lib/otpd/otpd.db");
    assert_string_equal(otp_config_get(c, "secret_file"), "/var/lib/otpd/secret");
    assert_string_equal(otp_config_origin(c, "db"), "default");
    assert_int_equal(otp_config_set(c, "db", "postgres://db/otpd", "--db", err, sizeof(err)), 0);
    assert_string_equal(otp_config_get(c, "db"), "postgres://db/otpd");
    assert_string_equal(otp_config_get(c, "secret_file"), "/var/lib/otpd/secret");
    otp_config_free(c);

    /* From the environment, too. */
    setenv("OTPD_DATA_DIR", "/srv/x", 1);
    c = otp_config_new();
    assert_int_equal(otp_config_load_env(c, err, sizeof(err)), 0);
    assert_string_equal(otp_config_get(c, "db"), "sqlite:/srv/x/otpd.db");
    assert_string_equal(otp_config_origin(c, "data_dir"), "OTPD_DATA_DIR");
    otp_config_free(c);
    unsetenv("OTPD_DATA_DIR");
}

/* A misspelt OTPD_<SECTION>_… variable fails like an unknown INI key, naming
 * it, and so does any OTPD_PROVIDER_…; other OTPD_* names (a wrapper's own)
 * are left alone. */
static void test_env_unknown(void **state)
{
    (void)state;
    char err[256];
    setenv("OTPD_BIN", "/usr/bin/otpd", 1);
    setenv("OTPD_E2E_DB", "postgres://x", 1);
    setenv("OTPD_SERVER_MAX_BODY", "20000", 1);
    otp_config *c = otp_config_new();
    assert_int_equal(otp_config_load_env(c, err, sizeof(err)), 0);
    assert_string_equal(otp_config_get(c, "server.max_body"), "20000");
    otp_config_free(c);

    /* OTPD_PROVIDER_…: provider settings are never read from the environment,
     * and refused rather than ignored. */
    const char *typos[] = {"OTPD_LIMITS_DEFALTS", "OTPD_SERVER_MAX_BODDY", "OTPD_STORE_MIGRATION",
                           "OTPD_DELIVERY_", "OTPD_PROVIDER_SMS_URL"};
    for (size_t i = 0; i < sizeof(typos) / sizeof(typos[0]); i++) {
        setenv(typos[i], "1", 1);
        c = otp_config_new();
        assert_int_equal(otp_config_load_env(c, err, sizeof(err)), -1);
        assert_non_null(strstr(err, typos[i]));
        if (strncmp(typos[i], "OTPD_PROVIDER_", 14) == 0)
            assert_non_null(strstr(err, "not read from the environment"));
        /* nothing of the environment was taken */
        assert_string_equal(otp_config_origin(c, "server.max_body"), "default");
        otp_config_free(c);
        unsetenv(typos[i]);
    }
    unsetenv("OTPD_BIN");
    unsetenv("OTPD_E2E_DB");
    unsetenv("OTPD_SERVER_MAX_BODY");
}

/* flag > env > file > default, whatever order the layers are loaded in. */
static void test_precedence(void **state)
{
    (void)state;
    char err[256];
    const char *path = write_ini("listen = 10.0.0.1:1\n"
                                 "[server]\n"
                                 "max_body = 20000\n"
                                 "threads = 3\n");
    setenv("OTPD_LISTEN", "10.0.0.2:2", 1);
    setenv("OTPD_SERVER_MAX_BODY", "30000", 1);

    otp_config *c = otp_config_new();
    /* Flags first, as main parses them before it knows the --config file. */
    assert_int_equal(otp_config_set(c, "listen", "10.0.0.3:3", "--listen", err, sizeof(err)), 0);
    assert_int_equal(otp_config_load_env(c, err, sizeof(err)), 0);
    assert_int_equal(otp_config_load_file(c, path, err, sizeof(err)), 0);

    assert_string_equal(otp_config_get(c, "listen"), "10.0.0.3:3");
    assert_string_equal(otp_config_origin(c, "listen"), "--listen");
    long l;
    assert_int_equal(otp_config_int(c, "server.max_body", 1024, 1 << 20, &l, err, sizeof(err)), 0);
    assert_int_equal(l, 30000);
    assert_string_equal(otp_config_origin(c, "server.max_body"), "OTPD_SERVER_MAX_BODY");
    assert_int_equal(otp_config_int(c, "server.threads", 1, 256, &l, err, sizeof(err)), 0);
    assert_int_equal(l, 3);
    char origin[128];
    snprintf(origin, sizeof(origin), "%s:4", path);
    assert_string_equal(otp_config_origin(c, "server.threads"), origin);
    assert_int_equal(otp_config_int(c, "server.connection_timeout", 1, 60, &l, err, sizeof(err)),
                     0);
    assert_int_equal(l, 30);
    otp_config_free(c);

    /* Same layers loaded in the usual order. */
    c = otp_config_new();
    assert_int_equal(otp_config_load_file(c, path, err, sizeof(err)), 0);
    assert_int_equal(otp_config_load_env(c, err, sizeof(err)), 0);
    assert_string_equal(otp_config_get(c, "listen"), "10.0.0.2:2");
    assert_int_equal(otp_config_set(c, "listen", "10.0.0.3:3", "--listen", err, sizeof(err)), 0);
    assert_string_equal(otp_config_get(c, "listen"), "10.0.0.3:3");
    otp_config_free(c);
}

static void count_section(const char *section, void *ctx)
{
    char *out = ctx;
    strcat(out, section);
    strcat(out, " ");
}

static void test_ini_syntax(void **state)
{
    (void)state;
    char err[256] = "";
    const char *path = write_ini("\xEF\xBB\xBF# otpd.ini\n"
                                 "; another comment\n"
                                 "\n"
                                 "  data_dir   =   \"/data dir\"  \n"
                                 "log_level = debug # trailing comment\n"
                                 "server.threads = 8\r\n"
                                 "[ store ]\n"
                                 "migrate = off\n"
                                 "[provider.gw-2]\n"
                                 "type = http\n"
                                 "url = \"http://gw/send#a ; b\"\n"
                                 "token = abc#def\n"
                                 "[delivery]\n"
                                 "providers = gw-2,local\n"
                                 "[provider.local]\n"
                                 "type = file\n"
                                 "[provider.gw-2]\n"
                                 "timeout_ms = 500\n");
    otp_config *c = otp_config_new();
    assert_int_equal(otp_config_load_file(c, path, err, sizeof(err)), 0);
    assert_string_equal(otp_config_get(c, "data_dir"), "/data dir");
    assert_string_equal(otp_config_get(c, "db"), "sqlite:/data dir/otpd.db");
    assert_string_equal(otp_config_get(c, "log_level"), "debug");
    assert_string_equal(otp_config_get(c, "server.threads"), "8");
    bool b = true;
    assert_int_equal(otp_config_bool(c, "store.migrate", &b, err, sizeof(err)), 0);
    assert_false(b);
    assert_string_equal(otp_config_get(c, "provider.gw-2.type"), "http");
    assert_string_equal(otp_config_get(c, "provider.gw-2.url"), "http://gw/send#a ; b");
    assert_string_equal(otp_config_get(c, "provider.gw-2.token"), "abc#def");
    assert_string_equal(otp_config_get(c, "provider.gw-2.timeout_ms"), "500");
    assert_string_equal(otp_config_get(c, "provider.local.type"), "file");
    assert_string_equal(otp_config_get(c, "delivery.providers"), "gw-2,local");

    char sections[256] = "";
    otp_config_each_section(c, "provider.", count_section, sections);
    assert_string_equal(sections, "provider.gw-2 provider.local ");
    sections[0] = '\0';
    otp_config_each_section(c, "provider.local", count_section, sections);
    assert_string_equal(sections, "provider.local ");
    otp_config_free(c);
}

/* Each bad file fails with "FILE:LINE: reason"; want is the reason's fragment. */
static void expect_bad_file(const char *text, int line, const char *want)
{
    char err[256] = "";
    const char *path = write_ini(text);
    otp_config *c = otp_config_new();
    assert_int_equal(otp_config_load_file(c, path, err, sizeof(err)), -1);
    char where[96];
    snprintf(where, sizeof(where), "%s:%d", path, line);
    if (!strstr(err, where) || !strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\" or \"%s\"", err, where, want);
    otp_config_free(c);
    unlink(path);
}

static void test_ini_errors(void **state)
{
    (void)state;
    expect_bad_file("# ok\nlisten = 1.2.3.4:5\nthis is not a setting\n", 3, "expected key = value");
    expect_bad_file("listen = 1\nnope = 1\n", 2, "unknown setting \"nope\"");
    expect_bad_file("[server]\nthreads = 2\nmax_bodi = 9\n", 3, "server.max_bodi");
    expect_bad_file("\n[sever]\n", 2, "unknown section [sever]");
    expect_bad_file("[provider]\n", 1, "[provider]");
    expect_bad_file("[provider.a b]\n", 1, "provider.a b");
    expect_bad_file("[server\n", 1, "expected [section]");
    expect_bad_file("listen = \"1.2.3.4\n", 1, "quote");
    expect_bad_file("= 4\n", 1, "invalid key");
    expect_bad_file("[server]\nthreads = many\n", 2,
                    "server.threads = \"many\" (from /tmp/otpd-test-config-");
    expect_bad_file("[store]\nmigrate = maybe\n", 2, "not a boolean");
    expect_bad_file("log_level = loud\n", 1, "log_level");
    expect_bad_file("data_dir = \"\"\n", 1, "must not be empty");

    char err[256];
    otp_config *c = otp_config_new();
    assert_int_equal(otp_config_load_file(c, "/nonexistent/otpd.ini", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/otpd.ini"));
    otp_config_free(c);
}

/* Type and range errors name the key, the value and where it came from. */
static void test_value_errors(void **state)
{
    (void)state;
    char err[256] = "";
    otp_config *c = otp_config_new();

    setenv("OTPD_SERVER_MAX_BODY", "abc", 1);
    assert_int_equal(otp_config_load_env(c, err, sizeof(err)), -1);
    assert_string_equal(err, "server.max_body = \"abc\" (from OTPD_SERVER_MAX_BODY): not an "
                             "integer between 1024 and 1048576");
    setenv("OTPD_SERVER_MAX_BODY", "999999999", 1);
    assert_int_equal(otp_config_load_env(c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "server.max_body = \"999999999\""));
    setenv("OTPD_SERVER_MAX_BODY", "99999999999999999999999", 1);
    assert_int_equal(otp_config_load_env(c, err, sizeof(err)), -1);
    unsetenv("OTPD_SERVER_MAX_BODY");

    setenv("OTPD_STORE_MIGRATE", "perhaps", 1);
    assert_int_equal(otp_config_load_env(c, err, sizeof(err)), -1);
    assert_string_equal(err, "store.migrate = \"perhaps\" (from OTPD_STORE_MIGRATE): not a "
                             "boolean (true/false, yes/no, on/off, 1/0)");
    unsetenv("OTPD_STORE_MIGRATE");

    assert_int_equal(otp_config_set(c, "server.threads", "0", "--threads", err, sizeof(err)), -1);
    assert_string_equal(err, "server.threads = \"0\" (from --threads): not an integer between 1 "
                             "and 64");
    assert_int_equal(otp_config_set(c, "server.threads", " 4", "--threads", err, sizeof(err)), -1);
    assert_int_equal(otp_config_set(c, "bogus", "1", "--bogus", err, sizeof(err)), -1);
    assert_string_equal(err, "unknown setting \"bogus\" (from --bogus)");
    assert_int_equal(otp_config_set(c, "provider.x", "1", "--p", err, sizeof(err)), -1);
    assert_int_equal(otp_config_set(c, "provider..type", "1", "--p", err, sizeof(err)), -1);

    /* A stricter range asked by the caller is reported the same way. */
    assert_int_equal(otp_config_set(c, "server.threads", "64", "--threads", err, sizeof(err)), 0);
    long l = -1;
    assert_int_equal(otp_config_int(c, "server.threads", 1, 16, &l, err, sizeof(err)), -1);
    assert_int_equal(l, -1);
    assert_string_equal(err, "server.threads = \"64\" (from --threads): not an integer between 1 "
                             "and 16");

    /* Provider keys are not checked when stored, only when read. */
    assert_int_equal(otp_config_set(c, "provider.gw.timeout_ms", "soon", "--p", err, sizeof(err)),
                     0);
    assert_int_equal(otp_config_int(c, "provider.gw.timeout_ms", 1, 60000, &l, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "provider.gw.timeout_ms = \"soon\" (from --p): not an integer "
                             "between 1 and 60000");
    assert_int_equal(otp_config_int(c, "provider.gw.retries", 0, 9, &l, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "provider.gw.retries"));
    bool b;
    assert_int_equal(otp_config_bool(c, "provider.gw.tls", &b, err, sizeof(err)), -1);

    /* A set via otp_config_set registers its provider section too. */
    char sections[64] = "";
    otp_config_each_section(c, "provider.", count_section, sections);
    assert_string_equal(sections, "provider.gw ");
    otp_config_free(c);
}

static void test_describe(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    otp_config_describe(f);
    fclose(f);
    assert_non_null(strstr(buf, "OTPD_SERVER_MAX_BODY"));
    assert_non_null(strstr(buf, "sqlite:<data_dir>/otpd.db"));
    assert_non_null(strstr(buf, "delivery.providers"));
    assert_non_null(strstr(buf, "[provider.NAME]"));
    free(buf);
}

/* The tests set the OTPD_* variables they read: none may come from the
 * environment they were started in (a developer's OTPD_SERVER_THREADS, say). */
static void clear_otpd_environment(void)
{
    for (char **e = environ; *e;) {
        const char *eq = strchr(*e, '=');
        char name[128];
        if (strncmp(*e, "OTPD_", 5) != 0 || !eq || eq - *e >= (ptrdiff_t)sizeof(name)) {
            e++; /* not ours (no setting has so long a name) */
            continue;
        }
        snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
        unsetenv(name); /* environ changed: look again from the start */
        e = environ;
    }
}

int main(void)
{
    clear_otpd_environment();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_defaults, teardown),
        cmocka_unit_test_teardown(test_data_dir_derived, teardown),
        cmocka_unit_test_teardown(test_env_unknown, teardown),
        cmocka_unit_test_teardown(test_precedence, teardown),
        cmocka_unit_test_teardown(test_ini_syntax, teardown),
        cmocka_unit_test_teardown(test_ini_errors, teardown),
        cmocka_unit_test_teardown(test_value_errors, teardown),
        cmocka_unit_test_teardown(test_describe, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
