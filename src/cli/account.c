/* cli/account.c — `otpd account create|list|show`: the operator's view of
 * accounts.
 *
 * Names are restricted to a small safe alphabet because they are typed on
 * command lines and used in place of ids everywhere (ACCOUNT is an id or a
 * name); for the same reason a name may not look like an account id, or
 * `otpd key list acc_…` could mean two accounts.
 */
#include "cli/cmd.h"

#include <stdlib.h>
#include <string.h>

#include "core/money.h"
#include "util/clock.h"

#define NAME_MAX_LEN 64

static int create(otp_app *app, int argc, char **argv);
static int list(otp_app *app, int argc, char **argv);
static int show(otp_app *app, int argc, char **argv);

static const otp_cli_sub subs[] = {
    {"create", "NAME", "Create an account and print its id (acc_...).",
     "NAME is 1 to 64 characters among A-Z a-z 0-9 . _ - and must be unique;\n"
     "it may not look like an account id. With --json: {\"id\",\"name\"}.\n",
     create},
    {"list", "", "List accounts: id, name, balance, creation time.",
     "With --json: an array of {\"id\",\"name\",\"balance\",\"currency\",\"createdAt\"}.\n", list},
    {"show", "ACCOUNT", "Show an account: balance, prices and counts.",
     "Prints balance, prices, the number of requests, messages and ledger entries,\n"
     "and the sum of the ledger (always equal to the balance).\n",
     show},
};

static const char footer[] = "ACCOUNT is an account's id (acc_...) or its name.\n";

void otp_cli_usage_account(FILE *f, const char *sub)
{
    otp_cli_sub_usage(f, "account", subs, sizeof(subs) / sizeof(subs[0]), sub, footer);
}

int otp_cli_cmd_account(otp_app *app)
{
    return otp_cli_sub_dispatch(app, "account", subs, sizeof(subs) / sizeof(subs[0]), footer);
}

static bool name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len < 1 || len > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return !otp_id_valid(name, "acc_");
}

static int create(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"NAME"};
    const char *pos[1];
    size_t n;
    otp_store *s = NULL;
    otp_account existing;
    otp_txn txn = {.kind = OTP_TXN_ACCOUNT_CREATE};
    otp_txn_account_create *c = &txn.u.account_create;

    int r = otp_cli_args("account create", argc, argv, NULL, 0, names, 1, 1, pos, &n);
    if (r)
        return r;
    const char *name = pos[0];
    if (!name_valid(name))
        return otp_cli_usage_error("account create",
                                   "invalid account name '%s': use 1 to %d characters among "
                                   "A-Z a-z 0-9 . _ - (and not the form of an account id)",
                                   name, NAME_MAX_LEN);
    r = otp_cli_store(app, &s);
    if (r)
        return r;

    otp_err e = s->ops->account_find(s, name, &existing);
    if (e == OTP_OK) {
        r = otp_cli_fail("account '%s' already exists (%s)", name, existing.public_id);
        goto out;
    }
    if (e != OTP_E_NOT_FOUND) {
        r = otp_cli_fail("cannot read accounts: %s", otp_cli_store_error(e));
        goto out;
    }

    c->now_ms = otp_now_ms();
    otp_id_new("acc_", c->now_ms, c->public_id);
    memcpy(c->name, name, strlen(name) + 1);
    e = otp_store_exec(s, &txn);
    if (e != OTP_OK) {
        /* Another process may have taken the name between the check and the
         * write; the store's unique index refused ours. */
        if (s->ops->account_find(s, name, &existing) == OTP_OK)
            r = otp_cli_fail("account '%s' already exists (%s)", name, existing.public_id);
        else
            r = otp_cli_fail("cannot create account '%s': %s", name, otp_cli_store_error(e));
        goto out;
    }

    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s,s:s}", "id", c->public_id, "name", c->name));
    else
        printf("%s\n", c->public_id);
out:
    otp_store_close(s);
    return r;
}

/* Accounts collected for printing: a table needs its column widths first. */
typedef struct account_vec {
    otp_account *v;
    size_t n, cap;
    bool oom;
} account_vec;

static void collect(const otp_account *a, void *ctx)
{
    account_vec *vec = ctx;
    if (vec->oom)
        return;
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 16;
        otp_account *v = realloc(vec->v, cap * sizeof(*v));
        if (!v) {
            vec->oom = true;
            return;
        }
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *a;
}

static int print_list_json(const account_vec *vec)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < vec->n; i++) {
        const otp_account *a = &vec->v[i];
        char bal[OTP_MONEY_SIZE], at[OTP_ISO8601_LEN + 1];
        otp_money_format(a->balance, bal);
        otp_time_iso8601(a->created_at_ms, at);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", a->public_id, "name", a->name,
                              "balance", bal, "currency", a->currency, "createdAt", at);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return otp_cli_json_print(arr);
}

static void print_list_table(const account_vec *vec)
{
    int wname = 4, wbal = 7;
    char bal[OTP_MONEY_SIZE], at[OTP_ISO8601_LEN + 1];
    for (size_t i = 0; i < vec->n; i++) {
        otp_money_format(vec->v[i].balance, bal);
        int ln = (int)strlen(vec->v[i].name), lb = (int)strlen(bal);
        wname = ln > wname ? ln : wname;
        wbal = lb > wbal ? lb : wbal;
    }
    printf("%-*s  %-*s  %*s  %s\n", OTP_ID_LEN, "ID", wname, "NAME", wbal, "BALANCE", "CREATED");
    for (size_t i = 0; i < vec->n; i++) {
        const otp_account *a = &vec->v[i];
        otp_money_format(a->balance, bal);
        otp_time_iso8601(a->created_at_ms, at);
        printf("%-*s  %-*s  %*s  %s\n", OTP_ID_LEN, a->public_id, wname, a->name, wbal, bal, at);
    }
}

static int list(otp_app *app, int argc, char **argv)
{
    const char *pos[1];
    size_t n;
    otp_store *s = NULL;
    account_vec vec = {0};

    int r = otp_cli_args("account list", argc, argv, NULL, 0, NULL, 0, 0, pos, &n);
    if (r)
        return r;
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    otp_err e = s->ops->account_list(s, collect, &vec);
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot list accounts: %s", otp_cli_store_error(e));
        goto out;
    }
    if (vec.oom) {
        r = otp_cli_fail("out of memory");
        goto out;
    }
    if (app->json)
        r = print_list_json(&vec);
    else
        print_list_table(&vec);
out:
    free(vec.v);
    otp_store_close(s);
    return r;
}

static int show(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT"};
    const char *pos[1];
    size_t n;
    otp_store *s = NULL;
    otp_account a;
    otp_account_stats st;
    char bal[OTP_MONEY_SIZE], price[OTP_MONEY_SIZE], low[OTP_MONEY_SIZE], sum[OTP_MONEY_SIZE];
    char at[OTP_ISO8601_LEN + 1];

    int r = otp_cli_args("account show", argc, argv, NULL, 0, names, 1, 1, pos, &n);
    if (r)
        return r;
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;
    otp_err e = s->ops->account_stats(s, a.id, &st);
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot read account %s: %s", a.public_id, otp_cli_store_error(e));
        goto out;
    }
    /* The balance from the stats read, so that it and ledgerSum come from the
     * same snapshot and can be compared. */
    otp_money_format(st.balance, bal);
    otp_money_format(a.price_per_segment, price);
    otp_money_format(a.low_balance_threshold, low);
    otp_money_format(st.ledger_sum, sum);
    otp_time_iso8601(a.created_at_ms, at);

    if (app->json) {
        r = otp_cli_json_print(json_pack(
            "{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s}", "id", a.public_id, "name", a.name,
            "balance", bal, "currency", a.currency, "pricePerSegment", price, "lowBalanceThreshold",
            low, "requests", (json_int_t)st.requests, "messages", (json_int_t)st.messages,
            "ledgerEntries", (json_int_t)st.ledger_entries, "ledgerSum", sum, "createdAt", at));
        goto out;
    }
    printf("id: %s\n"
           "name: %s\n"
           "balance: %s\n"
           "currency: %s\n"
           "pricePerSegment: %s\n"
           "lowBalanceThreshold: %s\n"
           "requests: %lld\n"
           "messages: %lld\n"
           "ledgerEntries: %lld\n"
           "ledgerSum: %s\n"
           "createdAt: %s\n",
           a.public_id, a.name, bal, a.currency, price, low, (long long)st.requests,
           (long long)st.messages, (long long)st.ledger_entries, sum, at);
out:
    otp_store_close(s);
    return r;
}
