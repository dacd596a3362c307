/* cli/admin_key.c — `otpd admin-key create|list|revoke`: the operators' keys
 * for the admin API (api/admin.c: wallet credits over HTTP).
 *
 * An admin key belongs to no account and is never accepted where an API key
 * is (nor the other way round). As with API keys, the full key exists in this
 * process only between its generation and the line that prints it: the store
 * keeps its SHA-256 and its first characters, and the buffer is wiped.
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
    {"create", "[--name NAME]", "Create an admin key and print it; it is shown only this once.",
     "  --name NAME   a label for the key, 1 to 64 characters (default \"default\")\n"
     "An admin key (otpd_admin_...) is for the admin API (/admin/...: wallet\n"
     "credits), not for the OTP API. Only its SHA-256 and its first 15\n"
     "characters are stored.\n"
     "With --json: {\"id\",\"key\",\"prefix\",\"name\"}.\n",
     create},
    {"list", "", "List the admin keys (never the keys themselves).",
     "With --json: an array of {\"id\",\"prefix\",\"name\",\"createdAt\",\"revokedAt\"};\n"
     "times are ISO 8601 or null.\n",
     list},
    {"revoke", "ADMIN_KEY_ID", "Revoke an admin key (adm_...); requests with it get 401.",
     "An unknown or already revoked key is an error.\n", revoke},
};

void otp_cli_usage_admin_key(FILE *f, const char *sub)
{
    otp_cli_sub_usage(f, "admin-key", subs, sizeof(subs) / sizeof(subs[0]), sub, NULL);
}

int otp_cli_cmd_admin_key(otp_app *app)
{
    return otp_cli_sub_dispatch(app, "admin-key", subs, sizeof(subs) / sizeof(subs[0]), NULL);
}

static int create(otp_app *app, int argc, char **argv)
{
    size_t n;
    const char *name = "default";
    const otp_cli_opt opts[] = {{"--name", &name, NULL}};
    otp_store *s = NULL;
    char key[OTP_ADMINKEY_SIZE];
    otp_txn txn = {.kind = OTP_TXN_ADMIN_KEY_CREATE};
    otp_txn_admin_key_create *c = &txn.u.admin_key_create;

    int r = otp_cli_args("admin-key create", argc, argv, opts, 1, NULL, 0, 0, NULL, &n);
    if (r)
        return r;
    if (!otp_cli_label_valid(name))
        return otp_cli_usage_error("admin-key create",
                                   "invalid key name: use 1 to %d printable characters",
                                   OTP_CLI_LABEL_MAX);
    r = otp_cli_store(app, &s);
    if (r)
        return r;

    otp_adminkey_generate(key);
    c->now_ms = otp_now_ms();
    otp_id_new("adm_", c->now_ms, c->public_id);
    otp_apikey_hash(key, c->hash);
    memcpy(c->prefix, key, OTP_ADMINKEY_PREFIX_LEN);
    c->prefix[OTP_ADMINKEY_PREFIX_LEN] = '\0';
    memcpy(c->name, name, strlen(name) + 1);
    otp_err e = otp_store_exec(s, &txn);
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot create admin key: %s", otp_cli_store_error(e));
        goto out;
    }
    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s,s:s,s:s,s:s}", "id", c->public_id, "key", key,
                                         "prefix", c->prefix, "name", c->name));
    else
        printf("%s\n", key);
    if (r == OTP_CLI_EXIT_OK)
        fputs("Store this key now: it is not shown again.\n", stderr);
out:
    sodium_memzero(key, sizeof(key));
    otp_store_close(s);
    return r;
}

typedef struct key_vec {
    otp_admin_key *v;
    size_t n, cap;
    bool oom;
} key_vec;

static void collect(const otp_admin_key *k, void *ctx)
{
    key_vec *vec = ctx;
    if (vec->oom)
        return;
    if (!otp_cli_vec_room((void **)&vec->v, &vec->cap, vec->n, sizeof(*vec->v))) {
        vec->oom = true;
        return;
    }
    vec->v[vec->n++] = *k;
}

/* All admin keys into *vec. Returns 0 or an exit status after printing why. */
static int read_keys(otp_store *s, key_vec *vec)
{
    if (!s->ops->admin_key_list)
        return otp_cli_fail("this store has no admin keys");
    otp_err e = s->ops->admin_key_list(s, collect, vec);
    if (e != OTP_OK)
        return otp_cli_fail("cannot list admin keys: %s", otp_cli_store_error(e));
    if (vec->oom)
        return otp_cli_fail("out of memory");
    return 0;
}

static int list(otp_app *app, int argc, char **argv)
{
    size_t n;
    otp_store *s = NULL;
    key_vec vec = {0};

    int r = otp_cli_args("admin-key list", argc, argv, NULL, 0, NULL, 0, 0, NULL, &n);
    if (r)
        return r;
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = read_keys(s, &vec);
    if (r)
        goto out;
    if (app->json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < vec.n; i++) {
            const otp_admin_key *k = &vec.v[i];
            json_t *o = json_pack("{s:s,s:s,s:s,s:o,s:o}", "id", k->public_id, "prefix", k->prefix,
                                  "name", k->name, "createdAt", otp_cli_json_time(k->created_at_ms),
                                  "revokedAt", otp_cli_json_time(k->revoked_at_ms));
            if (!o || json_array_append_new(arr, o)) {
                json_decref(arr);
                arr = NULL;
            }
        }
        r = otp_cli_json_print(arr);
        goto out;
    }
    int wname = 4;
    for (size_t i = 0; i < vec.n; i++) {
        int len = (int)strlen(vec.v[i].name);
        wname = len > wname ? len : wname;
    }
    char c[OTP_ISO8601_LEN + 1], x[OTP_ISO8601_LEN + 1];
    printf("%-*s  %-*s  %-*s  %-*s  %s\n", OTP_ID_LEN, "ID", OTP_ADMINKEY_PREFIX_LEN, "PREFIX",
           wname, "NAME", OTP_ISO8601_LEN, "CREATED", "REVOKED");
    for (size_t i = 0; i < vec.n; i++) {
        const otp_admin_key *k = &vec.v[i];
        printf("%-*s  %-*s  %-*s  %-*s  %s\n", OTP_ID_LEN, k->public_id, OTP_ADMINKEY_PREFIX_LEN,
               k->prefix, wname, k->name, OTP_ISO8601_LEN, otp_cli_time(k->created_at_ms, c),
               otp_cli_time(k->revoked_at_ms, x));
    }
out:
    free(vec.v);
    otp_store_close(s);
    return r;
}

static int revoke(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ADMIN_KEY_ID"};
    const char *pos[1];
    size_t n;
    otp_store *s = NULL;
    key_vec vec = {0};
    char at[OTP_ISO8601_LEN + 1];
    otp_txn txn = {.kind = OTP_TXN_ADMIN_KEY_REVOKE};
    otp_txn_key_revoke *rv = &txn.u.admin_key_revoke;

    int r = otp_cli_args("admin-key revoke", argc, argv, NULL, 0, names, 1, 1, pos, &n);
    if (r)
        return r;
    const char *id = pos[0];
    if (!otp_id_valid(id, "adm_"))
        return otp_cli_fail("no such admin key: %s (admin key ids look like adm_...)", id);
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    /* Read first, to tell "already revoked" from "no such key". */
    r = read_keys(s, &vec);
    if (r)
        goto out;
    const otp_admin_key *k = NULL;
    for (size_t i = 0; i < vec.n && !k; i++)
        if (strcmp(vec.v[i].public_id, id) == 0)
            k = &vec.v[i];
    if (!k) {
        r = otp_cli_fail("no such admin key: %s", id);
        goto out;
    }
    if (k->revoked_at_ms) {
        otp_time_iso8601(k->revoked_at_ms, at);
        r = otp_cli_fail("admin key %s is already revoked (since %s)", id, at);
        goto out;
    }
    memcpy(rv->public_id, id, OTP_ID_SIZE);
    rv->now_ms = otp_now_ms();
    otp_err e = otp_store_exec(s, &txn);
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot revoke admin key %s: %s", id,
                         e == OTP_E_NOT_FOUND ? "no such key" : otp_cli_store_error(e));
        goto out;
    }
    otp_time_iso8601(rv->now_ms, at);
    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s,s:s}", "id", id, "revokedAt", at));
    else
        printf("revoked %s\n", id);
out:
    free(vec.v);
    otp_store_close(s);
    return r;
}
