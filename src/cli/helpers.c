/* cli/helpers.c — what every subcommand needs: messages, its own arguments,
 * the store, account lookup and output.
 *
 * Keeping these in one place is what keeps the command files short and their
 * behaviour uniform: every runtime failure reads "otpd: reason" and exits 1,
 * every usage error names the problem, points at the command's --help and exits
 * 2, and every --json answer is one compact line.
 */
#include "cli/cmd.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

int otp_cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("otpd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return OTP_CLI_EXIT_FAIL;
}

int otp_cli_usage_error(const char *topic, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("otpd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (topic)
        fprintf(stderr, "Try 'otpd %s --help'.\n", topic);
    else
        fputs("Try 'otpd --help'.\n", stderr);
    return OTP_CLI_EXIT_USAGE;
}

static const otp_cli_sub *find_sub(const otp_cli_sub *subs, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(subs[i].name, name) == 0)
            return &subs[i];
    return NULL;
}

void otp_cli_sub_usage(FILE *f, const char *cmd, const otp_cli_sub *subs, size_t n, const char *sub,
                       const char *footer)
{
    const otp_cli_sub *one = find_sub(subs, n, sub);
    if (one) {
        fprintf(f, "Usage: otpd %s %s%s%s [--json]\n\n%s\n", cmd, one->name,
                *one->synopsis ? " " : "", one->synopsis, one->summary);
        if (one->details)
            fprintf(f, "\n%s", one->details);
    } else {
        fprintf(f, "Usage: otpd %s COMMAND [ARGS] [--json]\n\nCommands:\n", cmd);
        for (size_t i = 0; i < n; i++)
            fprintf(f, "  otpd %s %s%s%s\n      %s\n", cmd, subs[i].name,
                    *subs[i].synopsis ? " " : "", subs[i].synopsis, subs[i].summary);
        fprintf(f, "\nRun 'otpd %s COMMAND --help' for more about one command.\n", cmd);
    }
    if (footer)
        fprintf(f, "\n%s", footer);
}

int otp_cli_sub_dispatch(otp_app *app, const char *cmd, const otp_cli_sub *subs, size_t n,
                         const char *footer)
{
    const char *name = app->argc > 0 && !otp_cli_is_option(app->argv[0]) ? app->argv[0] : NULL;
    const otp_cli_sub *one = find_sub(subs, n, name);
    if (app->help) {
        otp_cli_sub_usage(stdout, cmd, subs, n, name, footer);
        return OTP_CLI_EXIT_OK;
    }
    if (!name)
        return otp_cli_usage_error(cmd, "%s: missing command", cmd);
    if (!one)
        return otp_cli_usage_error(cmd, "unknown command '%s %s'", cmd, name);
    return one->run(app, app->argc - 1, app->argv + 1);
}

bool otp_cli_is_option(const char *arg)
{
    if (arg[0] != '-' || arg[1] == '\0')
        return false;
    /* "-5" and "-.5" are (negative) numbers, which the command rejects itself
     * with a better message than "unknown option". */
    if ((arg[1] >= '0' && arg[1] <= '9') || (arg[1] == '.' && arg[2] >= '0' && arg[2] <= '9'))
        return false;
    return true;
}

static const otp_cli_opt *find_opt(const otp_cli_opt *opts, size_t nopts, const char *arg,
                                   size_t len)
{
    for (size_t i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, arg, len) == 0)
            return &opts[i];
    return NULL;
}

int otp_cli_args(const char *topic, int argc, char **argv, const otp_cli_opt *opts, size_t nopts,
                 const char *const *names, size_t min_pos, size_t max_pos, const char **pos,
                 size_t *ret_npos)
{
    size_t n = 0;
    bool dashdash = false;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && strcmp(a, "--") == 0) {
            dashdash = true;
            continue;
        }
        if (dashdash || !otp_cli_is_option(a)) {
            if (n >= max_pos)
                return otp_cli_usage_error(topic, "unexpected argument '%s'", a);
            pos[n++] = a;
            continue;
        }
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const otp_cli_opt *o = find_opt(opts, nopts, a, len);
        if (!o)
            return otp_cli_usage_error(topic, "unknown option '%.*s'", (int)len, a);
        if (o->flag) {
            if (eq)
                return otp_cli_usage_error(topic, "option '%s' takes no value", o->name);
            *o->flag = true;
            continue;
        }
        if (eq) {
            *o->value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return otp_cli_usage_error(topic, "option '%s' needs a value", o->name);
            *o->value = argv[++i];
        }
    }
    if (n < min_pos)
        return otp_cli_usage_error(topic, "missing %s", names[n]);
    *ret_npos = n;
    return 0;
}

int otp_cli_store(const otp_app *app, otp_store **ret)
{
    char err[512];
    otp_store *s = NULL;
    if (otp_cli_open_store(app->cfg, true, &s, err, sizeof(err)))
        return otp_cli_fail("%s", err);
    *ret = s;
    return 0;
}

const char *otp_cli_store_error(otp_err e)
{
    switch (e) {
    case OTP_E_UNAVAILABLE:
        return "the store is unavailable";
    case OTP_E_INTERNAL:
        return "internal store error";
    default:
        return otp_err_message(e);
    }
}

int otp_cli_account_get(otp_store *s, const char *id_or_name, otp_account *ret)
{
    otp_err e = s->ops->account_find(s, id_or_name, ret);
    if (e == OTP_E_NOT_FOUND)
        return otp_cli_fail("no such account: %s", id_or_name);
    if (e != OTP_OK)
        return otp_cli_fail("cannot read account %s: %s", id_or_name, otp_cli_store_error(e));
    return 0;
}

int otp_cli_json_print(json_t *json)
{
    if (!json)
        return otp_cli_fail("out of memory");
    int r = json_dumpf(json, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(json);
    if (r)
        return otp_cli_fail("cannot write JSON output");
    fputc('\n', stdout);
    return 0;
}

const char *otp_cli_time(int64_t ms, char *out)
{
    if (ms == 0)
        return "-";
    otp_time_iso8601(ms, out);
    return out;
}

json_t *otp_cli_json_time(int64_t ms)
{
    char at[OTP_ISO8601_LEN + 1];
    if (ms == 0)
        return json_null();
    otp_time_iso8601(ms, at);
    return json_string(at);
}

bool otp_cli_label_valid(const char *name)
{
    size_t len = strlen(name);
    if (len < 1 || len > OTP_CLI_LABEL_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

bool otp_cli_vec_room(void **v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*v, c * elem);
    if (!p)
        return false;
    *v = p;
    *cap = c;
    return true;
}
