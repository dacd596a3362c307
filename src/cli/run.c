/* cli/run.c — dispatch of the commands main() hands over, plus the ones too
 * small for a file of their own: help and version.
 *
 * The table below is the one list of commands: otp_cli_parse() checks names
 * against it, otp_cli_run() dispatches with it. serve is in it so that the name
 * is known and `otpd serve --help` can be answered here, but running the server
 * is main()'s job.
 */
#include "cli/cli.h"
#include "cli/cmd.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "otpd_config.h"

static int run_serve(otp_app *app);
static int run_version(otp_app *app);
static int run_help(otp_app *app);

typedef struct command {
    const char *name;
    int (*run)(otp_app *app);
} command;

static const command commands[] = {
    {"serve", run_serve},
    {"migrate", otp_cli_cmd_migrate},
    {"account", otp_cli_cmd_account},
    {"key", otp_cli_cmd_key},
    {"admin-key", otp_cli_cmd_admin_key},
    {"wallet", otp_cli_cmd_wallet},
    {"template", otp_cli_cmd_template},
    {"block", otp_cli_cmd_block},
    {"limits", otp_cli_cmd_limits},
    {"version", run_version},
    {"help", run_help},
};

static const command *find_command(const char *name)
{
    for (size_t i = 0; name && i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

bool otp_cli_command_known(const char *name)
{
    return find_command(name) != NULL;
}

void otp_cli_usage(FILE *f)
{
    fputs("Usage: otpd [OPTIONS] COMMAND [ARGS]\n"
          "\n"
          "otpd is a self-hosted OTP (one-time password by SMS) verification service.\n"
          "\n"
          "Commands:\n"
          "  serve [--listen ADDR]              start the HTTP API\n"
          "  migrate                            apply pending database schema migrations\n"
          "  account create NAME                create an account and print its id\n"
          "  account list                       list accounts\n"
          "  account show ACCOUNT               show an account, its balance and counts\n"
          "  account set ACCOUNT [--price AMOUNT] [--low-balance AMOUNT]\n"
          "        [--resend-strategy rotate|reuse] [--webotp-domain DOMAIN | --no-webotp-domain]\n"
          "                                     change an account's prices and settings\n"
          "  key create ACCOUNT [--name NAME] [--test]\n"
          "                                     create an API key (printed only once)\n"
          "  key list ACCOUNT                   list an account's API keys\n"
          "  key revoke KEY_ID                  revoke an API key\n"
          "  admin-key create [--name NAME]     create an admin key for the admin API\n"
          "  admin-key list                     list the admin keys\n"
          "  admin-key revoke ADMIN_KEY_ID      revoke an admin key\n"
          "  wallet credit ACCOUNT AMOUNT [--note TEXT] [--reference REF]\n"
          "                                     add money to an account's wallet\n"
          "  wallet show ACCOUNT                show an account's balance and prices\n"
          "  template add ACCOUNT --name NAME --body TEXT [--dlt-template-id ID]\n"
          "        [--sender-id ID] [--default]\n"
          "                                     add an SMS template and print its id\n"
          "  template list ACCOUNT              list an account's SMS templates\n"
          "  template remove ACCOUNT TEMPLATE   remove a template\n"
          "  template set-default ACCOUNT TEMPLATE\n"
          "                                     use a template when a send names none\n"
          "  block list [ACCOUNT]               list number locks and SMS-pumping blocks\n"
          "  block lift ACCOUNT TARGET          lift a number's lock or a prefix's block\n"
          "  limits show ACCOUNT                print an account's abuse limits\n"
          "  limits set ACCOUNT NAME=VALUE...   override an account's abuse limits\n"
          "  version                            print the version\n"
          "  help [COMMAND | config]            help on a command, or the settings table\n"
          "\n"
          "ACCOUNT is an account's id (acc_...) or its name; TEMPLATE a template's id\n"
          "(tpl_...) or its name.\n"
          "\n"
          "Global options (allowed anywhere on the line):\n"
          "  --data-dir DIR     data directory (default ./otpd-data)\n"
          "  --db URL           database: sqlite:PATH or postgres://...\n"
          "                     (default sqlite:DIR/otpd.db)\n"
          "  --config FILE      read settings from an INI file\n"
          "  --listen ADDR      HTTP listen address (default 127.0.0.1:8080)\n"
          "  --set KEY=VALUE    set any setting (see 'otpd help config')\n"
          "  --json             print results as JSON\n"
          "  -h, --help         show help (of a command, after its name)\n"
          "\n"
          "Settings come from flags, then OTPD_* environment variables, then the\n"
          "--config file, then built-in defaults, in that order of precedence.\n",
          f);
}

void otp_cli_usage_serve(FILE *f)
{
    fputs("Usage: otpd serve [--listen ADDR]\n"
          "\n"
          "Start the HTTP API on ADDR (default 127.0.0.1:8080; setting 'listen').\n"
          "On first run the data directory, the server secret (mode 0600) and the\n"
          "SQLite database are created in it. SIGTERM or SIGINT stop accepting\n"
          "requests, finish the ones in flight and exit.\n",
          f);
}

static int run_serve(otp_app *app)
{
    if (app->help) {
        otp_cli_usage_serve(stdout);
        return OTP_CLI_EXIT_OK;
    }
    /* main() runs the server; reaching this is a wiring mistake. */
    return otp_cli_fail("serve is run by main(), not by otp_cli_run()");
}

static void usage_version(FILE *f)
{
    fputs("Usage: otpd version [--json]\n\nPrint the version of otpd.\n", f);
}

static int run_version(otp_app *app)
{
    const char *pos[1];
    size_t n;
    if (app->help) {
        usage_version(stdout);
        return OTP_CLI_EXIT_OK;
    }
    int r = otp_cli_args("version", app->argc, app->argv, NULL, 0, NULL, 0, 0, pos, &n);
    if (r)
        return r;
    if (app->json)
        return otp_cli_json_print(json_pack("{s:s}", "version", OTPD_VERSION));
    printf("otpd %s\n", OTPD_VERSION);
    return OTP_CLI_EXIT_OK;
}

static void usage_help(FILE *f)
{
    fputs("Usage: otpd help [COMMAND [SUBCOMMAND] | config]\n"
          "\n"
          "Show the usage of otpd or of one command; 'otpd help config' lists every\n"
          "setting with its environment variable, default and meaning.\n",
          f);
}

static int run_help(otp_app *app)
{
    const char *pos[2] = {NULL, NULL};
    size_t n;
    static const char *const names[] = {"COMMAND", "SUBCOMMAND"};
    if (app->help) {
        usage_help(stdout);
        return OTP_CLI_EXIT_OK;
    }
    int r = otp_cli_args("help", app->argc, app->argv, NULL, 0, names, 0, 2, pos, &n);
    if (r)
        return r;
    const char *topic = pos[0], *sub = pos[1];
    if (!topic)
        otp_cli_usage(stdout);
    else if (strcmp(topic, "config") == 0)
        otp_config_describe(stdout);
    else if (strcmp(topic, "serve") == 0)
        otp_cli_usage_serve(stdout);
    else if (strcmp(topic, "migrate") == 0)
        otp_cli_usage_migrate(stdout);
    else if (strcmp(topic, "account") == 0)
        otp_cli_usage_account(stdout, sub);
    else if (strcmp(topic, "key") == 0)
        otp_cli_usage_key(stdout, sub);
    else if (strcmp(topic, "admin-key") == 0)
        otp_cli_usage_admin_key(stdout, sub);
    else if (strcmp(topic, "wallet") == 0)
        otp_cli_usage_wallet(stdout, sub);
    else if (strcmp(topic, "template") == 0)
        otp_cli_usage_template(stdout, sub);
    else if (strcmp(topic, "block") == 0)
        otp_cli_usage_block(stdout, sub);
    else if (strcmp(topic, "limits") == 0)
        otp_cli_usage_limits(stdout, sub);
    else if (strcmp(topic, "version") == 0)
        usage_version(stdout);
    else if (strcmp(topic, "help") == 0)
        usage_help(stdout);
    else
        return otp_cli_usage_error(NULL, "no help on '%s'", topic);
    return OTP_CLI_EXIT_OK;
}

int otp_cli_run(otp_app *app)
{
    int r;
    if (sodium_init() < 0)
        return otp_cli_fail("cannot initialise libsodium");
    if (!app->command) {
        if (!app->help) {
            otp_cli_usage(stderr);
            return OTP_CLI_EXIT_USAGE;
        }
        otp_cli_usage(stdout);
        r = OTP_CLI_EXIT_OK;
    } else {
        const command *c = find_command(app->command);
        if (!c)
            return otp_cli_usage_error(NULL, "unknown command '%s'", app->command);
        r = c->run(app);
    }
    /* A full disk or a closed pipe must not look like success to a script. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        clearerr(stdout);
        if (r == OTP_CLI_EXIT_OK)
            r = otp_cli_fail("cannot write output: %s", strerror(e));
    }
    return r;
}
