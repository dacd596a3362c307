/* cli/block.c — `otpd block` and `otpd limits`: the operator's side of abuse
 * protection (SPEC 3).
 *
 * `block list` shows every lock and block in force (numbers locked after wrong
 * codes, prefixes blocked for suspected SMS pumping); `block lift` removes one.
 * `limits show` prints an account's effective limits (the server defaults of
 * the `limits.defaults` setting with the account's overrides applied);
 * `limits set` changes its overrides, name=value pairs validated here by
 * core/limits.c ("name=" removes an override). A running server picks a change
 * up within `limits.cache_ms`.
 */
#include "cli/cmd.h"
#include "core/limits.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int list(otp_app *app, int argc, char **argv);
static int lift(otp_app *app, int argc, char **argv);

static const otp_cli_sub block_subs[] = {
    {"list", "[ACCOUNT]", "list the locks and blocks in force (of one account or all)", NULL, list},
    {"lift", "ACCOUNT TARGET", "lift a number's lock or a prefix's block",
     "TARGET is a phone number in E.164 (lifts its lock, clears its count of wrong codes,\n"
     "and lifts every block of a prefix of it), a prefix such as +91987654 (lifts that\n"
     "block), or a region code such as IN (lifts a country block).\n",
     lift},
};
#define N_BLOCK (sizeof(block_subs) / sizeof(block_subs[0]))

static const char block_footer[] = "ACCOUNT is an account's id (acc_...) or its name.\n";

void otp_cli_usage_block(FILE *f, const char *sub)
{
    otp_cli_sub_usage(f, "block", block_subs, N_BLOCK, sub, block_footer);
}

int otp_cli_cmd_block(otp_app *app)
{
    return otp_cli_sub_dispatch(app, "block", block_subs, N_BLOCK, block_footer);
}

typedef struct list_ctx {
    bool json;
    json_t *arr;
    int n;
} list_ctx;

static void on_block(const otp_block *b, void *p)
{
    list_ctx *c = p;
    char until[OTP_ISO8601_LEN + 1], since[OTP_ISO8601_LEN + 1];
    /* otp_cli_time returns "-" for 0 without writing the buffer: use its result. */
    const char *until_s = otp_cli_time(b->until_ms, until);
    const char *since_s = otp_cli_time(b->created_at_ms, since);
    if (c->json) {
        json_array_append_new(c->arr,
                              json_pack("{s:s,s:s,s:s,s:o,s:s}", "account", b->account_public_id,
                                        "target", b->target, "kind", b->kind, "since",
                                        b->created_at_ms ? json_string(since_s) : json_null(),
                                        "until", until_s));
    } else {
        if (c->n == 0)
            printf("%-28s %-18s %-22s %-24s %s\n", "ACCOUNT", "TARGET", "KIND", "SINCE", "UNTIL");
        printf("%-28s %-18s %-22s %-24s %s\n", b->account_public_id, b->target, b->kind, since_s,
               until_s);
    }
    c->n++;
}

static int list(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT"};
    const char *pos[1] = {NULL};
    size_t n;
    otp_store *s = NULL;
    otp_account a = {0};
    int r = otp_cli_args("block list", argc, argv, NULL, 0, names, 0, 1, pos, &n);
    if (r)
        return r;
    if ((r = otp_cli_store(app, &s)))
        return r;
    if (pos[0] && (r = otp_cli_account_get(s, pos[0], &a)))
        goto out;
    if (!s->ops->block_list) {
        r = otp_cli_fail("the %s store does not support blocks yet", s->ops->name);
        goto out;
    }
    list_ctx c = {.json = app->json, .arr = app->json ? json_array() : NULL};
    otp_err e = s->ops->block_list(s, pos[0] ? a.id : 0, otp_now_ms(), on_block, &c);
    if (e) {
        json_decref(c.arr);
        r = otp_cli_fail("cannot list blocks: %s", otp_cli_store_error(e));
        goto out;
    }
    if (app->json)
        r = otp_cli_json_print(c.arr);
    else if (c.n == 0)
        printf("no locks or blocks in force\n");
out:
    otp_store_close(s);
    return r;
}

static bool target_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 2 && t[0] >= 'A' && t[0] <= 'Z' && t[1] >= 'A' && t[1] <= 'Z')
        return true;
    if (n < 2 || n >= OTP_PREFIX_SIZE || t[0] != '+')
        return false;
    for (size_t i = 1; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return false;
    return true;
}

static int lift(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT", "TARGET"};
    const char *pos[2];
    size_t n;
    otp_store *s = NULL;
    otp_account a;
    int r = otp_cli_args("block lift", argc, argv, NULL, 0, names, 2, 2, pos, &n);
    if (r)
        return r;
    if (!target_ok(pos[1]))
        return otp_cli_usage_error("block lift",
                                   "invalid target '%s': expected a number or prefix in E.164 "
                                   "(+91987654...) or a region code (IN)",
                                   pos[1]);
    if ((r = otp_cli_store(app, &s)))
        return r;
    if ((r = otp_cli_account_get(s, pos[0], &a)))
        goto out;
    otp_txn txn = {.kind = OTP_TXN_ACCOUNT_SET};
    otp_txn_account_set *c = &txn.u.account_set;
    c->account_id = a.id;
    c->fields = OTP_SET_BLOCK_LIFT;
    snprintf(c->lift_target, sizeof(c->lift_target), "%s", pos[1]);
    c->now_ms = otp_now_ms();
    otp_err e = otp_store_exec(s, &txn);
    if (e == OTP_E_NOT_FOUND) {
        r = otp_cli_fail("nothing to lift for %s on account %s", pos[1], a.public_id);
        goto out;
    }
    if (e) {
        r = otp_cli_fail("cannot lift %s: %s", pos[1], otp_cli_store_error(e));
        goto out;
    }
    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s,s:s,s:i}", "account", a.public_id, "target", pos[1],
                                         "lifted", c->lifted));
    else
        printf("lifted %d lock(s)/block(s) of %s on account %s\n", c->lifted, pos[1], a.public_id);
out:
    otp_store_close(s);
    return r;
}

/* ---- otpd limits ---- */

static int show(otp_app *app, int argc, char **argv);
static int set(otp_app *app, int argc, char **argv);

static const otp_cli_sub limits_subs[] = {
    {"show", "ACCOUNT", "print an account's effective abuse limits", NULL, show},
    {"set", "ACCOUNT NAME=VALUE...", "override an account's limits (NAME= removes one)",
     "Names: key_rate key_burst phone_sends phone_window phone_interval fail_max\n"
     "fail_window lock fail_streak_max streak_lock countries daily_cap country_daily_cap\n"
     "pump_window pump_min_sends pump_growth pump_min_conversion pump_block\n"
     "pump_country_min_sends safe. Times in seconds, money in paise; countries and\n"
     "safe are ';'-separated lists (countries=US;CA;+91, safe=+9198765;+14155550100).\n"
     "See docs/security.md.\n",
     set},
};
#define N_LIMITS (sizeof(limits_subs) / sizeof(limits_subs[0]))

void otp_cli_usage_limits(FILE *f, const char *sub)
{
    otp_cli_sub_usage(f, "limits", limits_subs, N_LIMITS, sub, block_footer);
}

int otp_cli_cmd_limits(otp_app *app)
{
    return otp_cli_sub_dispatch(app, "limits", limits_subs, N_LIMITS, block_footer);
}

/* The server defaults: built-in values with the limits.defaults setting. */
static int server_defaults(const otp_app *app, otp_limits *ret)
{
    char err[200];
    otp_limits_defaults(ret);
    const char *text = otp_config_get(app->cfg, "limits.defaults");
    if (otp_limits_apply(ret, text ? text : "", err, sizeof(err)))
        return otp_cli_fail("limits.defaults (%s): %s",
                            otp_config_origin(app->cfg, "limits.defaults"), err);
    return 0;
}

static int print_limits(const otp_app *app, const otp_account *a, const char *text)
{
    char err[200];
    otp_limits l;
    int r = server_defaults(app, &l);
    if (r)
        return r;
    if (otp_limits_apply(&l, text, err, sizeof(err)))
        return otp_cli_fail("account %s has invalid limits: %s", a->public_id, err);
    if (app->json) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (!m)
            return otp_cli_fail("out of memory");
        otp_limits_print(&l, m);
        fclose(m);
        json_t *eff = json_object();
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            char *eq = strchr(line, '=');
            if (eq) {
                *eq = '\0';
                char *end = NULL;
                long long v = strtoll(eq + 1, &end, 10);
                bool number = eq[1] && end && !*end;
                json_object_set_new(eff, line, number ? json_integer(v) : json_string(eq + 1));
            }
        }
        free(buf);
        return otp_cli_json_print(
            json_pack("{s:s,s:s,s:o}", "account", a->public_id, "overrides", text, "limits", eff));
    }
    printf("account: %s\noverrides: %s\n", a->public_id, *text ? text : "-");
    otp_limits_print(&l, stdout);
    return OTP_CLI_EXIT_OK;
}

static int show(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT"};
    const char *pos[1];
    size_t n;
    otp_store *s = NULL;
    otp_account a;
    char text[OTP_LIMITS_TEXT_SIZE] = "";
    int r = otp_cli_args("limits show", argc, argv, NULL, 0, names, 1, 1, pos, &n);
    if (r)
        return r;
    if ((r = otp_cli_store(app, &s)))
        return r;
    if ((r = otp_cli_account_get(s, pos[0], &a)))
        goto out;
    if (s->ops->limits_get) {
        otp_err e = s->ops->limits_get(s, a.id, text, sizeof(text));
        if (e) {
            r = otp_cli_fail("cannot read limits: %s", otp_cli_store_error(e));
            goto out;
        }
    }
    r = print_limits(app, &a, text);
out:
    otp_store_close(s);
    return r;
}

static int set(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT", "NAME=VALUE"};
    const char *pos[32];
    size_t n;
    otp_store *s = NULL;
    otp_account a;
    char base[OTP_LIMITS_TEXT_SIZE] = "", add[OTP_LIMITS_TEXT_SIZE] = "", err[200];
    int r = otp_cli_args("limits set", argc, argv, NULL, 0, names, 2, 32, pos, &n);
    if (r)
        return r;
    size_t used = 0;
    for (size_t i = 1; i < n; i++) {
        int w = snprintf(add + used, sizeof(add) - used, "%s%s", used ? "," : "", pos[i]);
        if (w < 0 || (size_t)w >= sizeof(add) - used)
            return otp_cli_usage_error("limits set", "too many limits at once");
        used += (size_t)w;
    }
    char merged[OTP_LIMITS_TEXT_SIZE];
    if (otp_limits_merge(NULL, add, merged, err, sizeof(err)))
        return otp_cli_usage_error("limits set", "%s", err);
    if ((r = otp_cli_store(app, &s)))
        return r;
    if ((r = otp_cli_account_get(s, pos[0], &a)))
        goto out;
    if (!s->ops->limits_get) {
        r = otp_cli_fail("the %s store does not support limits yet", s->ops->name);
        goto out;
    }
    otp_err e = s->ops->limits_get(s, a.id, base, sizeof(base));
    if (e) {
        r = otp_cli_fail("cannot read limits: %s", otp_cli_store_error(e));
        goto out;
    }
    if (otp_limits_merge(base, add, merged, err, sizeof(err))) {
        r = otp_cli_usage_error("limits set", "%s", err);
        goto out;
    }
    otp_txn txn = {.kind = OTP_TXN_ACCOUNT_SET};
    otp_txn_account_set *c = &txn.u.account_set;
    c->account_id = a.id;
    c->fields = OTP_SET_LIMITS;
    memcpy(c->limits, merged, sizeof(c->limits));
    c->now_ms = otp_now_ms();
    e = otp_store_exec(s, &txn);
    if (e) {
        r = otp_cli_fail("cannot set limits of %s: %s", a.public_id, otp_cli_store_error(e));
        goto out;
    }
    r = print_limits(app, &a, merged);
out:
    otp_store_close(s);
    return r;
}
