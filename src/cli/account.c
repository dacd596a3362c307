/* cli/account.c — `otpd account create|list|show|set`: the operator's view
 * of accounts.
 *
 * Names are restricted to a small safe alphabet because they are typed on
 * command lines and used in place of ids everywhere (ACCOUNT is an id or a
 * name); for the same reason a name may not look like an account id, or
 * `otpd key list acc_…` could mean two accounts. `set` changes only the
 * settings named on its command line, in one store txn.
 */
#include "cli/cmd.h"

#include <stdlib.h>
#include <string.h>

#include "core/money.h"
#include "util/clock.h"

#define NAME_MAX_LEN 64
#define DOMAIN_MAX_LEN (OTP_DOMAIN_SIZE - 1)
#define LABEL_MAX_LEN 63

static int create(otp_app *app, int argc, char **argv);
static int list(otp_app *app, int argc, char **argv);
static int show(otp_app *app, int argc, char **argv);
static int set(otp_app *app, int argc, char **argv);

static const otp_cli_sub subs[] = {
    {"create", "NAME", "Create an account and print its id (acc_...).",
     "NAME is 1 to 64 characters among A-Z a-z 0-9 . _ - and must be unique;\n"
     "it may not look like an account id. With --json: {\"id\",\"name\"}.\n",
     create},
    {"list", "", "List accounts: id, name, balance, creation time.",
     "With --json: an array of {\"id\",\"name\",\"balance\",\"currency\",\"createdAt\"}.\n", list},
    {"show", "ACCOUNT", "Show an account: balance, prices, settings and counts.",
     "Prints balance, prices, the resend strategy and WebOTP domain, the number of\n"
     "requests, messages and ledger entries, and the sum of the ledger (always\n"
     "equal to the balance). With --json, webotpDomain is null when not set.\n",
     show},
    {"set",
     "ACCOUNT [--price AMOUNT] [--low-balance AMOUNT] [--resend-strategy rotate|reuse] "
     "[--webotp-domain DOMAIN | --no-webotp-domain]",
     "Change an account's prices and settings; print them.",
     "  --price AMOUNT            price of one SMS segment, at least 0.01, at most two\n"
     "                            places (default 0.25); a send costs price x segments\n"
     "  --low-balance AMOUNT      the low-balance threshold, 0 or more (default 100.00)\n"
     "  --resend-strategy rotate  a resend draws a new code; the old one stops working\n"
     "                            (default; nothing recoverable is stored)\n"
     "  --resend-strategy reuse   a resend sends the same code again while the request\n"
     "                            lives (kept encrypted until the request ends)\n"
     "  --webotp-domain DOMAIN    add the line \"@DOMAIN #CODE\" to every SMS (WebOTP,\n"
     "                            browser and iOS autofill): a lowercase DNS name with\n"
     "                            at least one dot, e.g. example.com, at most 127 chars\n"
     "  --no-webotp-domain        stop adding the WebOTP line\n"
     "Settings not named stay as they are. With --json: {\"id\",\"name\",\n"
     "\"pricePerSegment\",\"lowBalanceThreshold\",\"resendStrategy\",\"webotpDomain\"}\n"
     "(webotpDomain null when not set).\n",
     set},
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

static const char *strategy_name(int strategy)
{
    return strategy == OTP_RESEND_REUSE ? "reuse" : "rotate";
}

/* The account's WebOTP domain, or JSON null if it has none. */
static json_t *json_domain(const otp_account *a)
{
    return *a->webotp_domain ? json_string(a->webotp_domain) : json_null();
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
        r = otp_cli_json_print(
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:s,s:s}", "id", a.public_id,
                      "name", a.name, "balance", bal, "currency", a.currency, "pricePerSegment",
                      price, "lowBalanceThreshold", low, "resendStrategy",
                      strategy_name(a.resend_strategy), "webotpDomain", json_domain(&a), "requests",
                      (json_int_t)st.requests, "messages", (json_int_t)st.messages, "ledgerEntries",
                      (json_int_t)st.ledger_entries, "ledgerSum", sum, "createdAt", at));
        goto out;
    }
    printf("id: %s\n"
           "name: %s\n"
           "balance: %s\n"
           "currency: %s\n"
           "pricePerSegment: %s\n"
           "lowBalanceThreshold: %s\n"
           "resendStrategy: %s\n"
           "webotpDomain: %s\n"
           "requests: %lld\n"
           "messages: %lld\n"
           "ledgerEntries: %lld\n"
           "ledgerSum: %s\n"
           "createdAt: %s\n",
           a.public_id, a.name, bal, a.currency, price, low, strategy_name(a.resend_strategy),
           *a.webotp_domain ? a.webotp_domain : "-", (long long)st.requests, (long long)st.messages,
           (long long)st.ledger_entries, sum, at);
out:
    otp_store_close(s);
    return r;
}

/* A lowercase DNS name: labels of 1 to 63 characters among a-z 0-9 -, not
 * starting or ending with '-', at least two of them, no trailing dot. WebOTP
 * matches it against the page's origin, so it is a host name, never a URL. */
static bool domain_valid(const char *d)
{
    size_t len = strlen(d), label = 0;
    bool dot = false;
    if (len < 1 || len > DOMAIN_MAX_LEN)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char c = d[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || d[i - 1] == '-')
                return false;
            dot = dot || c == '.';
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
        if (label == 0 && c == '-')
            return false;
        if (++label > LABEL_MAX_LEN)
            return false;
    }
    return dot;
}

static int print_settings(const otp_app *app, const otp_account *a)
{
    char price[OTP_MONEY_SIZE], low[OTP_MONEY_SIZE];
    otp_money_format(a->price_per_segment, price);
    otp_money_format(a->low_balance_threshold, low);
    if (app->json)
        return otp_cli_json_print(
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "id", a->public_id, "name", a->name,
                      "pricePerSegment", price, "lowBalanceThreshold", low, "resendStrategy",
                      strategy_name(a->resend_strategy), "webotpDomain", json_domain(a)));
    printf("id: %s\n"
           "name: %s\n"
           "pricePerSegment: %s %s\n"
           "lowBalanceThreshold: %s %s\n"
           "resendStrategy: %s\n"
           "webotpDomain: %s\n",
           a->public_id, a->name, price, a->currency, low, a->currency,
           strategy_name(a->resend_strategy), *a->webotp_domain ? a->webotp_domain : "-");
    return OTP_CLI_EXIT_OK;
}

static int set(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT"};
    const char *pos[1];
    size_t n;
    const char *price = NULL, *low = NULL, *strategy = NULL, *domain = NULL;
    bool no_domain = false;
    const otp_cli_opt opts[] = {
        {"--price", &price, NULL},
        {"--low-balance", &low, NULL},
        {"--resend-strategy", &strategy, NULL},
        {"--webotp-domain", &domain, NULL},
        {"--no-webotp-domain", NULL, &no_domain},
    };
    otp_store *s = NULL;
    otp_account a;
    otp_txn txn = {.kind = OTP_TXN_ACCOUNT_SET};
    otp_txn_account_set *c = &txn.u.account_set;

    int r = otp_cli_args("account set", argc, argv, opts, sizeof(opts) / sizeof(opts[0]), names, 1,
                         1, pos, &n);
    if (r)
        return r;
    if (price) {
        if (otp_money_parse(price, &c->price_per_segment) || c->price_per_segment < 1)
            return otp_cli_usage_error("account set",
                                       "invalid price '%s': expected a decimal of at least 0.01 "
                                       "with at most two places, e.g. 0.25",
                                       price);
        c->fields |= OTP_SET_PRICE;
    }
    if (low) {
        if (otp_money_parse(low, &c->low_balance_threshold) || c->low_balance_threshold < 0)
            return otp_cli_usage_error("account set",
                                       "invalid low-balance threshold '%s': expected a decimal "
                                       "of 0 or more with at most two places, e.g. 100",
                                       low);
        c->fields |= OTP_SET_LOW_BALANCE;
    }
    if (strategy) {
        if (strcmp(strategy, "rotate") == 0)
            c->resend_strategy = OTP_RESEND_ROTATE;
        else if (strcmp(strategy, "reuse") == 0)
            c->resend_strategy = OTP_RESEND_REUSE;
        else
            return otp_cli_usage_error(
                "account set", "invalid resend strategy '%s': expected rotate or reuse", strategy);
        c->fields |= OTP_SET_RESEND_STRATEGY;
    }
    if (domain && no_domain)
        return otp_cli_usage_error("account set",
                                   "--webotp-domain and --no-webotp-domain exclude each other");
    if (domain) {
        if (!domain_valid(domain))
            return otp_cli_usage_error(
                "account set",
                "invalid WebOTP domain '%s': expected a lowercase DNS name such as "
                "example.com (labels of a-z 0-9 -, at least one dot, at most %d characters)",
                domain, DOMAIN_MAX_LEN);
        memcpy(c->webotp_domain, domain, strlen(domain) + 1);
        c->fields |= OTP_SET_WEBOTP_DOMAIN;
    }
    if (no_domain)
        c->fields |= OTP_SET_WEBOTP_DOMAIN; /* to "" */
    if (!c->fields)
        return otp_cli_usage_error("account set",
                                   "nothing to set: give --price, --low-balance, "
                                   "--resend-strategy, --webotp-domain or --no-webotp-domain");
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;

    c->account_id = a.id;
    otp_err e = otp_store_exec(s, &txn);
    if (e == OTP_E_NOT_FOUND) {
        r = otp_cli_fail("no such account: %s", pos[0]);
        goto out;
    }
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot update account %s: %s", a.public_id, otp_cli_store_error(e));
        goto out;
    }
    /* Print what the store now holds, not what was asked. */
    e = s->ops->account_get(s, a.id, &a);
    if (e != OTP_OK) {
        r = otp_cli_fail("account %s updated, but cannot read it back: %s", a.public_id,
                         otp_cli_store_error(e));
        goto out;
    }
    r = print_settings(app, &a);
out:
    otp_store_close(s);
    return r;
}
