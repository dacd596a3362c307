/* cli/wallet.c — `otpd wallet credit|show`: topping up and reading a balance.
 *
 * Amounts are parsed as decimal text straight into paise (core/money.h), never
 * through a float, and a credit is one store txn that appends a ledger entry
 * and moves the balance together, so the balance always equals the ledger.
 */
#include "cli/cmd.h"

#include <string.h>

#include "core/money.h"
#include "util/clock.h"

static int credit(otp_app *app, int argc, char **argv);
static int show(otp_app *app, int argc, char **argv);

static const otp_cli_sub subs[] = {
    {"credit", "ACCOUNT AMOUNT [--note TEXT] [--reference REF]",
     "Add AMOUNT to an account's wallet and print the new balance.",
     "AMOUNT is a positive decimal in the account's currency with at most two\n"
     "places, e.g. 500 or 12.50. --note TEXT is kept in the ledger entry.\n"
     "--reference REF (the payment or invoice: 1 to 128 of A-Z a-z 0-9 - _ . : / #)\n"
     "credits once per account: run again with the same REF, it credits nothing\n"
     "and says so (the admin API's credits share the references).\n"
     "With --json: {\"balance\",\"transactionId\",\"replayed\"}; balance is the\n"
     "balance right after this credit (after the first one, when replayed).\n",
     credit},
    {"show", "ACCOUNT", "Show an account's balance and prices.",
     "With --json: {\"balance\",\"currency\",\"pricePerSegment\",\"lowBalanceThreshold\"}.\n",
     show},
};

static const char footer[] = "ACCOUNT is an account's id (acc_...) or its name.\n";

void otp_cli_usage_wallet(FILE *f, const char *sub)
{
    otp_cli_sub_usage(f, "wallet", subs, sizeof(subs) / sizeof(subs[0]), sub, footer);
}

int otp_cli_cmd_wallet(otp_app *app)
{
    return otp_cli_sub_dispatch(app, "wallet", subs, sizeof(subs) / sizeof(subs[0]), footer);
}

static int credit(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT", "AMOUNT"};
    const char *pos[2];
    size_t n;
    const char *note = "";
    const char *ref = NULL;
    const otp_cli_opt opts[] = {{"--note", &note, NULL}, {"--reference", &ref, NULL}};
    otp_store *s = NULL;
    otp_account a;
    int64_t amount;
    char bal[OTP_MONEY_SIZE];
    otp_txn txn = {.kind = OTP_TXN_WALLET_CREDIT};
    otp_txn_wallet_credit *c = &txn.u.wallet_credit;

    int r = otp_cli_args("wallet credit", argc, argv, opts, 2, names, 2, 2, pos, &n);
    if (r)
        return r;
    if (otp_money_parse(pos[1], &amount) || amount <= 0)
        return otp_cli_usage_error("wallet credit",
                                   "invalid amount '%s': expected a positive decimal with at "
                                   "most two places, e.g. 500 or 12.50",
                                   pos[1]);
    if (strlen(note) >= sizeof(c->note))
        return otp_cli_usage_error("wallet credit", "note is too long (at most %zu bytes)",
                                   sizeof(c->note) - 1);
    if (ref && !otp_money_reference_valid(ref))
        return otp_cli_usage_error("wallet credit",
                                   "invalid reference '%s': use 1 to %d of A-Z a-z 0-9 - _ . : / #",
                                   ref, OTP_MONEY_REFERENCE_MAX);
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;

    c->account_id = a.id;
    c->amount = amount;
    memcpy(c->note, note, strlen(note) + 1);
    if (ref)
        memcpy(c->reference, ref, strlen(ref) + 1);
    c->now_ms = otp_now_ms();
    otp_err e = otp_store_exec(s, &txn);
    if (e == OTP_E_IDEMPOTENCY_KEY_REUSED) {
        r = otp_cli_fail("reference %s was used for a credit of another amount to %s: nothing "
                         "credited",
                         ref, a.public_id);
        goto out;
    }
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot credit account %s: %s", a.public_id, otp_cli_store_error(e));
        goto out;
    }
    char id[OTP_LEDGER_ID_SIZE];
    otp_ledger_id_format(c->ledger_id, id);
    otp_money_format(c->balance_after, bal);
    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s, s:s, s:b}", "balance", bal, "transactionId", id,
                                         "replayed", c->replayed));
    else if (c->replayed)
        printf("already credited as %s (reference %s): nothing credited now; balance after it "
               "%s\n",
               id, ref, bal);
    else
        printf("balance %s\n", bal);
out:
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
    char bal[OTP_MONEY_SIZE], price[OTP_MONEY_SIZE], low[OTP_MONEY_SIZE];

    int r = otp_cli_args("wallet show", argc, argv, NULL, 0, names, 1, 1, pos, &n);
    if (r)
        return r;
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;
    otp_money_format(a.balance, bal);
    otp_money_format(a.price_per_segment, price);
    otp_money_format(a.low_balance_threshold, low);
    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s,s:s,s:s,s:s}", "balance", bal, "currency",
                                         a.currency, "pricePerSegment", price,
                                         "lowBalanceThreshold", low));
    else
        printf("balance: %s %s\n"
               "pricePerSegment: %s %s\n"
               "lowBalanceThreshold: %s %s\n",
               bal, a.currency, price, a.currency, low, a.currency);
out:
    otp_store_close(s);
    return r;
}
