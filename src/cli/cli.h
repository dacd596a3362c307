/* cli/cli.h — the otpd command line: global options, shared set-up, subcommands.
 *
 * main() calls otp_cli_parse() to read global options and the command, then runs
 * `serve` itself and hands every other command to otp_cli_run(). The set-up that
 * serve and the commands share (the secret file, opening the store) lives here too.
 */
#ifndef OTP_CLI_CLI_H
#define OTP_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/secrets.h"
#include "store/store.h"
#include "util/config.h"

typedef struct otp_app {
    otp_config *cfg;     /* flags > env > --config file > defaults */
    const char *command; /* "serve", "migrate", "account", … ; NULL = none given */
    int argc;            /* what follows the command, global options removed */
    char **argv;
    bool json; /* --json */
    bool help; /* -h / --help anywhere */
} otp_app;

/* Parses global options anywhere in argv: --data-dir DIR, --db URL, --config FILE,
 * --listen ADDR, --set KEY=VALUE, --json, -h/--help; then applies the environment
 * and the config file under the flags. Returns 0; or prints the reason to stderr
 * and returns 2 (usage error) — a bad setting names the setting. */
int otp_cli_parse(int argc, char **argv, otp_app *ret);
void otp_cli_app_done(otp_app *app);

/* Creates data_dir (0700) if missing, then loads the 32-byte server secret from
 * secret_file, creating it (0600, from libsodium) if absent. A secret file with
 * the wrong size or group/world-readable permissions is an error. */
int otp_cli_load_secret(const otp_config *cfg, uint8_t root[OTP_SECRET_LEN], char *err,
                        size_t errlen);
/* Opens the store named by the "db" setting (migrating first if migrate). */
int otp_cli_open_store(const otp_config *cfg, bool migrate, otp_store **ret, char *err,
                       size_t errlen);

/* Runs a command other than serve; returns the process exit status. */
int otp_cli_run(otp_app *app);
/* The top-level usage text (otpd help). */
void otp_cli_usage(FILE *f);

#endif
