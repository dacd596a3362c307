/* cli/options.c — global options and the settings they feed.
 *
 * Global options may appear anywhere on the line (before or after the command)
 * so that `otpd account list --json` and `otpd --json account list` mean the
 * same. They are taken out of argv; what remains after the command is left for
 * the command's own parser (cli/helpers.c). Settings are applied lowest
 * precedence first — every --config file, then the OTPD_* environment, then the
 * flags in command-line order — because otp_config_set() overwrites: the last
 * writer wins, so flags beat the environment, which beats the file.
 */
#include "cli/cli.h"
#include "cli/cmd.h"

#include <stdlib.h>
#include <string.h>

/* How a global option is used. */
typedef enum { OPT_SETTING, OPT_CONFIG, OPT_SET, OPT_JSON, OPT_HELP } opt_kind;

typedef struct global_opt {
    const char *name;
    opt_kind kind;
    const char *key; /* the setting, for OPT_SETTING */
} global_opt;

static const global_opt globals[] = {
    {"--data-dir", OPT_SETTING, "data_dir"},
    {"--db", OPT_SETTING, "db"},
    {"--listen", OPT_SETTING, "listen"},
    {"--config", OPT_CONFIG, NULL},
    {"--set", OPT_SET, NULL},
    {"--json", OPT_JSON, NULL},
    {"-h", OPT_HELP, NULL},
    {"--help", OPT_HELP, NULL},
};

/* Options of the commands that take a value: their value is copied through
 * untouched, so `--note --json` notes "--json" instead of switching on JSON. */
static const char *const command_opts_with_value[] = {
    "--name",         "--note",  "--body",        "--dlt-template-id",
    "--sender-id",    "--price", "--low-balance", "--resend-strategy",
    "--webotp-domain"};

/* A setting given on the command line, applied once the file and env are in. */
typedef struct pending {
    const global_opt *opt;
    const char *value; /* points into argv */
} pending;

static const global_opt *find_global(const char *arg, size_t len)
{
    for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++)
        if (strlen(globals[i].name) == len && strncmp(globals[i].name, arg, len) == 0)
            return &globals[i];
    return NULL;
}

static bool command_opt_takes_value(const char *arg)
{
    for (size_t i = 0; i < sizeof(command_opts_with_value) / sizeof(command_opts_with_value[0]);
         i++)
        if (strcmp(arg, command_opts_with_value[i]) == 0)
            return true;
    return false;
}

static int bad_setting(const char *err)
{
    otp_cli_fail("%s", err);
    return OTP_CLI_EXIT_USAGE;
}

/* Applies one --set KEY=VALUE. Returns 0, or prints the reason and returns 2. */
static int apply_set(otp_config *cfg, const char *kv)
{
    char err[512];
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return otp_cli_usage_error(NULL, "--set needs KEY=VALUE, got '%s'", kv);
    char *key = strndup(kv, (size_t)(eq - kv));
    if (!key)
        return otp_cli_usage_error(NULL, "out of memory");
    int r = otp_config_set(cfg, key, eq + 1, "--set", err, sizeof(err));
    free(key);
    if (r)
        return bad_setting(err);
    return 0;
}

/* Loads the files, the environment and then the flags into cfg. A bad
 * setting is reported as the config module words it (naming the setting and
 * where it came from), without the --help hint: the fix is in the setting. */
static int apply_settings(otp_config *cfg, const pending *p, size_t n)
{
    char err[512];
    for (size_t i = 0; i < n; i++) {
        if (p[i].opt->kind != OPT_CONFIG)
            continue;
        if (otp_config_load_file(cfg, p[i].value, err, sizeof(err)))
            return bad_setting(err);
    }
    if (otp_config_load_env(cfg, err, sizeof(err)))
        return bad_setting(err);
    for (size_t i = 0; i < n; i++) {
        int r = 0;
        if (p[i].opt->kind == OPT_SETTING) {
            if (otp_config_set(cfg, p[i].opt->key, p[i].value, p[i].opt->name, err, sizeof(err)))
                r = bad_setting(err);
        } else if (p[i].opt->kind == OPT_SET) {
            r = apply_set(cfg, p[i].value);
        }
        if (r)
            return r;
    }
    return 0;
}

/* *ret is zeroed first, so otp_cli_app_done() is safe on it even after an
 * error; it is filled in only on success. */
int otp_cli_parse(int argc, char **argv, otp_app *ret)
{
    otp_app app = {0};
    pending *p = NULL;
    size_t np = 0;
    bool dashdash = false;
    int r = 0;

    memset(ret, 0, sizeof(*ret));
    size_t cap = argc > 0 ? (size_t)argc : 1;
    app.argv = calloc(cap + 1, sizeof(char *));
    p = calloc(cap, sizeof(*p));
    if (!app.argv || !p) {
        r = otp_cli_usage_error(NULL, "out of memory");
        goto out;
    }

    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (dashdash || !otp_cli_is_option(a)) {
            if (!app.command)
                app.command = a;
            else
                app.argv[app.argc++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = true;
            if (app.command) /* the command's parser must see it too */
                app.argv[app.argc++] = a;
            continue;
        }
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const global_opt *g = find_global(a, len);
        if (!g) {
            if (!app.command) {
                r = otp_cli_usage_error(NULL, "unknown option '%.*s'", (int)len, a);
                goto out;
            }
            app.argv[app.argc++] = a;
            if (!eq && command_opt_takes_value(a) && i + 1 < argc)
                app.argv[app.argc++] = argv[++i];
            continue;
        }
        if (g->kind == OPT_JSON || g->kind == OPT_HELP) {
            if (eq) {
                r = otp_cli_usage_error(NULL, "option '%s' takes no value", g->name);
                goto out;
            }
            if (g->kind == OPT_JSON)
                app.json = true;
            else
                app.help = true;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) {
                r = otp_cli_usage_error(NULL, "option '%s' needs a value", g->name);
                goto out;
            }
            value = argv[++i];
        }
        p[np++] = (pending){.opt = g, .value = value};
    }

    if (app.command && !otp_cli_command_known(app.command)) {
        r = otp_cli_usage_error(NULL, "unknown command '%s'", app.command);
        goto out;
    }

    app.cfg = otp_config_new();
    if (!app.cfg) {
        r = otp_cli_usage_error(NULL, "out of memory");
        goto out;
    }
    r = apply_settings(app.cfg, p, np);
    if (r)
        goto out;

    *ret = app;
    app = (otp_app){0};
out:
    free(p);
    otp_cli_app_done(&app);
    return r;
}

void otp_cli_app_done(otp_app *app)
{
    if (!app)
        return;
    otp_config_free(app->cfg);
    free(app->argv);
    *app = (otp_app){0};
}
