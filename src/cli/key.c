/* cli/key.c — `otpd key create|list|revoke`: API keys of an account.
 *
 * The full key exists in this process only between its generation and the one
 * line that prints it: the store receives its SHA-256 and its 12-character
 * prefix, list shows only the prefix, and the buffer is wiped before exit.
 * Rotation is create, deploy, watch the old key's lastUsedAt stop, revoke.
 */
#include "cli/cmd.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"

static int create(otp_app *app, int argc, char **argv);
static int list(otp_app *app, int argc, char **argv);
static int revoke(otp_app *app, int argc, char **argv);

static const otp_cli_sub subs[] = {
    {"create", "ACCOUNT [--name NAME] [--test]",
     "Create an API key and print it; it is shown only this once.",
     "  --name NAME   a label for the key, 1 to 64 characters (default \"default\")\n"
     "  --test        a test key (otpd_test_...): full flow, no SMS, no charge\n"
     "Only the key's SHA-256 and its first 12 characters are stored.\n"
     "With --json: {\"id\",\"key\",\"prefix\",\"name\",\"test\"}.\n",
     create},
    {"list", "ACCOUNT", "List an account's API keys (never the keys themselves).",
     "With --json: an array of {\"id\",\"prefix\",\"name\",\"test\",\"createdAt\",\n"
     "\"lastUsedAt\",\"revokedAt\"}; times are ISO 8601 or null.\n",
     list},
    {"revoke", "KEY_ID", "Revoke an API key (key_...); requests with it get 401.",
     "An unknown or already revoked key is an error.\n", revoke},
};

static const char footer[] = "ACCOUNT is an account's id (acc_...) or its name.\n";

void otp_cli_usage_key(FILE *f, const char *sub)
{
    otp_cli_sub_usage(f, "key", subs, sizeof(subs) / sizeof(subs[0]), sub, footer);
}

int otp_cli_cmd_key(otp_app *app)
{
    return otp_cli_sub_dispatch(app, "key", subs, sizeof(subs) / sizeof(subs[0]), footer);
}

static int create(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT"};
    const char *pos[1];
    size_t n;
    const char *name = "default";
    bool test = false;
    const otp_cli_opt opts[] = {{"--name", &name, NULL}, {"--test", NULL, &test}};
    otp_store *s = NULL;
    otp_account a;
    char key[OTP_APIKEY_SIZE];
    otp_txn txn = {.kind = OTP_TXN_KEY_CREATE};
    otp_txn_key_create *c = &txn.u.key_create;

    int r = otp_cli_args("key create", argc, argv, opts, sizeof(opts) / sizeof(opts[0]), names, 1,
                         1, pos, &n);
    if (r)
        return r;
    if (!otp_cli_label_valid(name))
        return otp_cli_usage_error(
            "key create", "invalid key name: use 1 to %d printable characters", OTP_CLI_LABEL_MAX);
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;

    otp_apikey_generate(test, key);
    c->account_id = a.id;
    c->now_ms = otp_now_ms();
    otp_id_new("key_", c->now_ms, c->public_id);
    otp_apikey_hash(key, c->hash);
    memcpy(c->prefix, key, OTP_APIKEY_PREFIX_LEN);
    c->prefix[OTP_APIKEY_PREFIX_LEN] = '\0';
    memcpy(c->name, name, strlen(name) + 1);
    c->test = test;
    otp_err e = otp_store_exec(s, &txn);
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot create key: %s", otp_cli_store_error(e));
        goto out;
    }

    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s,s:s,s:s,s:s,s:b}", "id", c->public_id, "key", key,
                                         "prefix", c->prefix, "name", c->name, "test", test));
    else
        printf("%s\n", key);
    if (r == OTP_CLI_EXIT_OK)
        fputs("Store this key now: it is not shown again.\n", stderr);
out:
    sodium_memzero(key, sizeof(key));
    otp_store_close(s);
    return r;
}

/* Keys collected for printing (list) or searching (revoke). */
typedef struct key_vec {
    otp_key *v;
    size_t n, cap;
    bool oom;
    const char *want; /* revoke: keep only this public id */
} key_vec;

static void collect(const otp_key *k, void *ctx)
{
    key_vec *vec = ctx;
    if (vec->oom || (vec->want && strcmp(k->public_id, vec->want) != 0))
        return;
    if (!otp_cli_vec_room((void **)&vec->v, &vec->cap, vec->n, sizeof(*vec->v))) {
        vec->oom = true;
        return;
    }
    vec->v[vec->n++] = *k;
}

static int print_list_json(const key_vec *vec)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < vec->n; i++) {
        const otp_key *k = &vec->v[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:o,s:o,s:o}", "id", k->public_id, "prefix",
                              k->prefix, "name", k->name, "test", k->test, "createdAt",
                              otp_cli_json_time(k->created_at_ms), "lastUsedAt",
                              otp_cli_json_time(k->last_used_at_ms), "revokedAt",
                              otp_cli_json_time(k->revoked_at_ms));
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return otp_cli_json_print(arr);
}

static void print_list_table(const key_vec *vec)
{
    int wname = 4;
    char c[OTP_ISO8601_LEN + 1], u[OTP_ISO8601_LEN + 1], x[OTP_ISO8601_LEN + 1];
    for (size_t i = 0; i < vec->n; i++) {
        int len = (int)strlen(vec->v[i].name);
        wname = len > wname ? len : wname;
    }
    printf("%-*s  %-*s  %-*s  %-4s  %-*s  %-*s  %s\n", OTP_ID_LEN, "ID", OTP_APIKEY_PREFIX_LEN,
           "PREFIX", wname, "NAME", "MODE", OTP_ISO8601_LEN, "CREATED", OTP_ISO8601_LEN,
           "LAST USED", "REVOKED");
    for (size_t i = 0; i < vec->n; i++) {
        const otp_key *k = &vec->v[i];
        printf("%-*s  %-*s  %-*s  %-4s  %-*s  %-*s  %s\n", OTP_ID_LEN, k->public_id,
               OTP_APIKEY_PREFIX_LEN, k->prefix, wname, k->name, k->test ? "test" : "live",
               OTP_ISO8601_LEN, otp_cli_time(k->created_at_ms, c), OTP_ISO8601_LEN,
               otp_cli_time(k->last_used_at_ms, u), otp_cli_time(k->revoked_at_ms, x));
    }
}

static int list(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT"};
    const char *pos[1];
    size_t n;
    otp_store *s = NULL;
    otp_account a;
    key_vec vec = {0};

    int r = otp_cli_args("key list", argc, argv, NULL, 0, names, 1, 1, pos, &n);
    if (r)
        return r;
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;
    otp_err e = s->ops->key_list(s, a.id, collect, &vec);
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot list keys: %s", otp_cli_store_error(e));
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

/* Account ids, gathered before any key read so that no read runs inside
 * another read's callback. */
typedef struct id_vec {
    int64_t *v;
    size_t n, cap;
    bool oom;
} id_vec;

static void collect_account(const otp_account *a, void *ctx)
{
    id_vec *ids = ctx;
    if (ids->oom)
        return;
    if (!otp_cli_vec_room((void **)&ids->v, &ids->cap, ids->n, sizeof(*ids->v))) {
        ids->oom = true;
        return;
    }
    ids->v[ids->n++] = a->id;
}

/* Finds key id among all accounts' keys. The store has no lookup of a key by
 * its public id, and revoking needs to tell "already revoked" from "revoked
 * now"; an operator command can afford the scan. Returns 0 and *ret, 1 if
 * there is no such key, or an exit status after printing the reason. */
static int find_key(otp_store *s, const char *id, otp_key *ret)
{
    id_vec ids = {0};
    key_vec keys = {.want = id};
    int r = 1;
    otp_err e = s->ops->account_list(s, collect_account, &ids);
    for (size_t i = 0; e == OTP_OK && !ids.oom && keys.n == 0 && i < ids.n; i++)
        e = s->ops->key_list(s, ids.v[i], collect, &keys);
    if (e != OTP_OK)
        r = otp_cli_fail("cannot read keys: %s", otp_cli_store_error(e));
    else if (ids.oom || keys.oom)
        r = otp_cli_fail("out of memory");
    else if (keys.n > 0) {
        *ret = keys.v[0];
        r = 0;
    }
    free(ids.v);
    free(keys.v);
    return r;
}

static int revoke(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"KEY_ID"};
    const char *pos[1];
    size_t n;
    otp_store *s = NULL;
    otp_key k = {0};
    char at[OTP_ISO8601_LEN + 1];
    otp_txn txn = {.kind = OTP_TXN_KEY_REVOKE};
    otp_txn_key_revoke *rv = &txn.u.key_revoke;

    int r = otp_cli_args("key revoke", argc, argv, NULL, 0, names, 1, 1, pos, &n);
    if (r)
        return r;
    const char *id = pos[0];
    if (!otp_id_valid(id, "key_"))
        return otp_cli_fail("no such key: %s (key ids look like key_...)", id);
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = find_key(s, id, &k);
    if (r == 1) {
        r = otp_cli_fail("no such key: %s", id);
        goto out;
    }
    if (r)
        goto out;
    if (k.revoked_at_ms) {
        otp_time_iso8601(k.revoked_at_ms, at);
        r = otp_cli_fail("key %s is already revoked (since %s)", id, at);
        goto out;
    }

    memcpy(rv->public_id, id, OTP_ID_SIZE);
    rv->now_ms = otp_now_ms();
    otp_err e = otp_store_exec(s, &txn);
    if (e == OTP_E_NOT_FOUND) {
        r = otp_cli_fail("no such key: %s", id);
        goto out;
    }
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot revoke key %s: %s", id, otp_cli_store_error(e));
        goto out;
    }
    otp_time_iso8601(rv->now_ms, at);
    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s,s:s}", "id", id, "revokedAt", at));
    else
        printf("revoked %s\n", id);
out:
    otp_store_close(s);
    return r;
}
