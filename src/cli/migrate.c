/* cli/migrate.c — `otpd migrate`: bring the database schema up to date.
 *
 * Opening the store with migrate set applies every pending migration in order
 * (the backend records each version it applies), so running this twice, or on
 * a database another node already migrated, is harmless. It prints the version
 * the schema is at afterwards, which is what an operator checks before rolling
 * out nodes that need it.
 */
#include "cli/cmd.h"

void otp_cli_usage_migrate(FILE *f)
{
    fputs("Usage: otpd migrate [--json]\n"
          "\n"
          "Apply pending database schema migrations and print the schema version.\n"
          "Safe to run again. With --json: {\"schemaVersion\"}.\n",
          f);
}

int otp_cli_cmd_migrate(otp_app *app)
{
    const char *pos[1];
    size_t n;
    char err[512];
    otp_store *s = NULL;

    if (app->help) {
        otp_cli_usage_migrate(stdout);
        return OTP_CLI_EXIT_OK;
    }
    int r = otp_cli_args("migrate", app->argc, app->argv, NULL, 0, NULL, 0, 0, pos, &n);
    if (r)
        return r;
    if (otp_cli_open_store(app->cfg, true, &s, err, sizeof(err)))
        return otp_cli_fail("%s", err);
    int version = s->ops->schema_version(s);
    otp_store_close(s);
    if (version < 0)
        return otp_cli_fail("cannot read the schema version");
    if (app->json)
        return otp_cli_json_print(json_pack("{s:i}", "schemaVersion", version));
    printf("schema version %d\n", version);
    return OTP_CLI_EXIT_OK;
}
