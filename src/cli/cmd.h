/* cli/cmd.h — private to src/cli: the subcommands and the helpers they share.
 *
 * cli.h is the contract with main(); this header is how the small files of the
 * CLI (one job each, like curl's tool_*.c) reach one another. Every command
 * function takes the parsed app, prints its own --help, and returns the process
 * exit status: 0 done, 1 runtime failure ("otpd: reason" already printed), 2
 * usage error (message and a hint already printed).
 */
#ifndef OTP_CLI_CMD_H
#define OTP_CLI_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/cli.h"

#define OTP_CLI_EXIT_OK 0
#define OTP_CLI_EXIT_FAIL 1
#define OTP_CLI_EXIT_USAGE 2

/* True for the commands otp_cli_parse() accepts (run.c). */
bool otp_cli_command_known(const char *name);

/* ---- Commands (one file each) -------------------------------------------- */

int otp_cli_cmd_account(otp_app *app);   /* account.c */
int otp_cli_cmd_key(otp_app *app);       /* key.c */
int otp_cli_cmd_admin_key(otp_app *app); /* admin_key.c */
int otp_cli_cmd_wallet(otp_app *app);    /* wallet.c */
int otp_cli_cmd_migrate(otp_app *app);   /* migrate.c */
int otp_cli_cmd_template(otp_app *app);  /* template.c */
int otp_cli_cmd_block(otp_app *app);     /* block.c */
int otp_cli_cmd_limits(otp_app *app);    /* block.c */

/* Usage texts. sub is a subcommand name ("create") or NULL for the whole
 * command; an unknown sub prints the whole command's usage. */
void otp_cli_usage_account(FILE *f, const char *sub);
void otp_cli_usage_key(FILE *f, const char *sub);
void otp_cli_usage_admin_key(FILE *f, const char *sub);
void otp_cli_usage_wallet(FILE *f, const char *sub);
void otp_cli_usage_template(FILE *f, const char *sub);
void otp_cli_usage_block(FILE *f, const char *sub);
void otp_cli_usage_limits(FILE *f, const char *sub);
void otp_cli_usage_migrate(FILE *f);
void otp_cli_usage_serve(FILE *f);

/* ---- Subcommands (helpers.c) -------------------------------------------- */

/* One subcommand, e.g. "account create". run gets what follows its name. */
typedef struct otp_cli_sub {
    const char *name;     /* "create" */
    const char *synopsis; /* "NAME" */
    const char *summary;  /* one line, for the command's usage */
    const char *details;  /* more lines for the subcommand's own --help, or NULL */
    int (*run)(otp_app *app, int argc, char **argv);
} otp_cli_sub;

/* Prints the usage of command cmd (sub NULL or unknown: all its subcommands;
 * else just that one), then footer if not NULL. */
void otp_cli_sub_usage(FILE *f, const char *cmd, const otp_cli_sub *subs, size_t n, const char *sub,
                       const char *footer);
/* Runs the subcommand named by app->argv[0]: prints usage for --help (exit 0),
 * a usage error for a missing or unknown one (exit 2). */
int otp_cli_sub_dispatch(otp_app *app, const char *cmd, const otp_cli_sub *subs, size_t n,
                         const char *footer);

/* ---- Messages (helpers.c) ------------------------------------------------- */

/* Prints "otpd: <message>" to stderr; returns OTP_CLI_EXIT_FAIL. */
int otp_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "otpd: <message>" and "Try 'otpd <topic> --help'." to stderr; returns
 * OTP_CLI_EXIT_USAGE. topic may be NULL ("otpd --help"). */
int otp_cli_usage_error(const char *topic, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Command-line arguments of one command (helpers.c) ------------------- */

/* One option of a command: "--name" with a value, or "--test" as a flag.
 * Exactly one of value and flag is non-NULL. */
typedef struct otp_cli_opt {
    const char *name;
    const char **value; /* set to the option's value (points into argv) */
    bool *flag;         /* set to true when the option is present */
} otp_cli_opt;

/* Splits argv (what follows the command and subcommand) into the options in
 * opts (--opt VALUE, --opt=VALUE, flags) and positional arguments, stored in
 * pos (not copied). names[i] names positional i in messages ("NAME"); there
 * must be between min_pos and max_pos of them. "--" ends the options; "-5" is a
 * positional (a negative amount, rejected by the command with a clear reason).
 * Returns 0 and writes *ret_npos, or prints a usage error pointing at
 * `otpd <topic> --help` and returns OTP_CLI_EXIT_USAGE. */
int otp_cli_args(const char *topic, int argc, char **argv, const otp_cli_opt *opts, size_t nopts,
                 const char *const *names, size_t min_pos, size_t max_pos, const char **pos,
                 size_t *ret_npos);
/* True if arg looks like an option ("-x", "--x"), not "-", not a negative number. */
bool otp_cli_is_option(const char *arg);

/* ---- Store access shared by the commands (helpers.c) -------------------- */

/* Opens the store for a management command (migrating, so that a first
 * command on a fresh data directory just works). Prints the reason and
 * returns OTP_CLI_EXIT_FAIL on error. */
int otp_cli_store(const otp_app *app, otp_store **ret);
/* Finds an account by id or name. Prints "no such account" (or the store
 * error) and returns OTP_CLI_EXIT_FAIL if there is none. */
int otp_cli_account_get(otp_store *s, const char *id_or_name, otp_account *ret);
/* Describes a store error for a message: "the store is unavailable", … */
const char *otp_cli_store_error(otp_err e);

/* ---- Output (helpers.c) -------------------------------------------------- */

/* Writes a JSON value (object or array) compactly on one line to stdout and
 * releases it (json_decref). NULL (out of memory) fails with a message.
 * Returns an exit status. */
int otp_cli_json_print(json_t *json);
/* ISO 8601 time for ms, or "-" for 0 (never / not set). out: OTP_ISO8601_LEN + 1. */
const char *otp_cli_time(int64_t ms, char *out);
/* The same as JSON: an ISO 8601 string, or null for 0 (never). */
json_t *otp_cli_json_time(int64_t ms);

/* A key's label (--name): 1 to OTP_CLI_LABEL_MAX characters, none of them a
 * control character. */
#define OTP_CLI_LABEL_MAX 64
bool otp_cli_label_valid(const char *name);

/* Makes room for one more element in a growing array (*v, n used of *cap,
 * elements of elem bytes). Returns false when out of memory (*v unchanged). */
bool otp_cli_vec_room(void **v, size_t *cap, size_t n, size_t elem);

#endif
