/* tests/unit/store/test_store_conformance.c — the store conformance suite.
 *
 * What every backend must do, checked through store.h only (plus plain SQL where
 * store.h has no way to read something back, e.g. that a sent message's text is
 * erased): schema versions and migrations; accounts, API keys, admin keys and
 * wallets (a credit's reference credits once, also under concurrency); the money
 * invariant (balance == ledger sum, never below zero, nothing stored or charged
 * when a send is refused); the verification state machine and its attempt
 * counter under concurrency; group commit from many threads; the outbox's leases
 * and reports; and that whatever a done() acknowledged is durable. Times are
 * injected (no sleeping). See conformance.h for the backend description.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"
#include "conformance_fixture.h"

const store_backend *B;
static atomic_uint id_counter;

/* ---- fixture (declared in conformance_fixture.h) -------------------------- */

otp_store *open_url(const char *url, bool migrate)
{
    otp_store_options opt = {.migrate = migrate};
    otp_store *s = NULL;
    char err[256] = "";
    int r = otp_store_open(url, &opt, &s, err, sizeof(err));
    if (r != 0)
        print_error("open %s: %s\n", url, err);
    assert_int_equal(r, 0);
    assert_non_null(s);
    return s;
}

/* Opens url expecting failure; returns whether err contains want. */
static bool open_fails_with(const char *url, bool migrate, const char *want)
{
    otp_store_options opt = {.migrate = migrate};
    otp_store *s = NULL;
    char err[256] = "";
    int r = otp_store_open(url, &opt, &s, err, sizeof(err));
    if (r == 0) {
        otp_store_close(s);
        return false;
    }
    if (!strstr(err, want))
        print_error("error \"%s\" lacks \"%s\"\n", err, want);
    return strstr(err, want) != NULL;
}

void new_id(const char *prefix, char out[OTP_ID_SIZE])
{
    unsigned n = atomic_fetch_add(&id_counter, 1);
    snprintf(out, OTP_ID_SIZE, "%.4s%022u", prefix, n);
}

otp_err create_account(otp_store *s, const char *name, int64_t *ret_id)
{
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_CREATE};
    new_id("acc_", t.u.account_create.public_id);
    snprintf(t.u.account_create.name, OTP_NAME_SIZE, "%s", name);
    t.u.account_create.now_ms = T0;
    otp_err e = otp_store_exec(s, &t);
    if (e == OTP_OK && ret_id)
        *ret_id = t.u.account_create.ret_id;
    return e;
}

otp_err create_key(otp_store *s, int64_t acc, uint8_t hash_byte, bool test,
                   char public_id[OTP_ID_SIZE])
{
    otp_txn t = {.kind = OTP_TXN_KEY_CREATE};
    otp_txn_key_create *k = &t.u.key_create;
    k->account_id = acc;
    new_id("key_", k->public_id);
    memset(k->hash, hash_byte, sizeof(k->hash));
    snprintf(k->prefix, sizeof(k->prefix), "otpd_%s_ab", test ? "test" : "live");
    snprintf(k->name, sizeof(k->name), "key %02x", hash_byte);
    k->test = test;
    k->now_ms = T0;
    if (public_id)
        memcpy(public_id, k->public_id, OTP_ID_SIZE);
    return otp_store_exec(s, &t);
}

int64_t key_id_of(otp_store *s, uint8_t hash_byte)
{
    uint8_t h[OTP_APIKEY_HASH_LEN];
    otp_key_auth a;
    memset(h, hash_byte, sizeof(h));
    assert_int_equal(s->ops->key_lookup(s, h, &a), OTP_OK);
    return a.key_id;
}

otp_err credit(otp_store *s, int64_t acc, int64_t amount, int64_t *ret_balance)
{
    otp_txn t = {.kind = OTP_TXN_WALLET_CREDIT};
    t.u.wallet_credit.account_id = acc;
    t.u.wallet_credit.amount = amount;
    snprintf(t.u.wallet_credit.note, OTP_NOTE_SIZE, "top-up");
    t.u.wallet_credit.now_ms = T0;
    otp_err e = otp_store_exec(s, &t);
    if (e == OTP_OK && ret_balance)
        *ret_balance = t.u.wallet_credit.balance_after;
    return e;
}

/* Fills t as a SEND of a fresh request (6-digit code, RIGHT hash, 3 attempts,
 * expiring at T0 + 600 s) by key (test or live) of account acc. */
void make_send(otp_txn *t, int64_t acc, int64_t key, bool test, int segments)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_SEND;
    otp_txn_send *s = &t->u.send;
    s->account_id = acc;
    s->key_id = key;
    s->test = test;
    new_id("req_", s->request_id);
    new_id("msg_", s->message_id);
    snprintf(s->phone, sizeof(s->phone), "+919876543210");
    memset(s->code_hash, RIGHT, sizeof(s->code_hash));
    s->code_length = 6;
    s->max_attempts = 3;
    s->expires_in_s = 600;
    s->now_ms = T0;
    s->expires_at_ms = T0 + 600000;
    s->segments = segments;
    s->sealed_text = sealed_text;
    s->sealed_text_len = sizeof(sealed_text) - 1;
}

/* (a live key's if the request is unknown) */
otp_err verify(otp_store *s, int64_t acc, const char *request_id, uint8_t guess, int len,
               int64_t now, int *ret_left)
{
    otp_request_info r;
    bool test = s->ops->request_get(s, acc, request_id, &r) == OTP_OK && r.test;
    return verify_as(s, acc, test, request_id, guess, len, now, ret_left);
}

otp_err verify_as(otp_store *s, int64_t acc, bool test, const char *request_id, uint8_t guess,
                  int len, int64_t now, int *ret_left)
{
    otp_txn t = {.kind = OTP_TXN_VERIFY};
    otp_txn_verify *v = &t.u.verify;
    v->account_id = acc;
    v->test = test;
    memcpy(v->request_id, request_id, OTP_ID_SIZE);
    memset(v->code_hash, guess, sizeof(v->code_hash));
    v->code_length = len;
    v->now_ms = now;
    v->attempts_left = -99;
    otp_err e = otp_store_exec(s, &t);
    if (ret_left)
        *ret_left = v->attempts_left;
    return e;
}

otp_account_stats stats(otp_store *s, int64_t acc)
{
    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, acc, &st), OTP_OK);
    assert_int_equal(st.ledger_sum, st.balance); /* the invariant, everywhere */
    assert_true(st.balance >= 0);
    return st;
}

int64_t raw_int(const ctx *c, const char *fmt, const char *arg)
{
    char sql[512];
    snprintf(sql, sizeof(sql), fmt, arg);
    return B->raw_int(c->url, sql);
}

/* What count_events() looks for: events of one status (any if any_status), at
 * one time (any if at_ms is 0). */
typedef struct event_count {
    bool any_status;
    otp_msg_status status;
    int64_t at_ms;
    int n;
} event_count;

static void count_event(const otp_message_event *e, void *p)
{
    event_count *want = p;
    if ((want->any_status || e->status == want->status) &&
        (want->at_ms == 0 || e->at_ms == want->at_ms))
        want->n++;
}

/* How many of message mid's events (read through the store) match want. */
static int count_events(const ctx *c, const char *mid, event_count want)
{
    otp_message_info m;
    assert_int_equal(c->s->ops->message_get(c->s, c->acc, mid, &m, count_event, &want), OTP_OK);
    return want.n;
}

int setup(void **state)
{
    ctx *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    B->fresh_url(c->url, sizeof(c->url));
    c->s = open_url(c->url, true);
    assert_int_equal(create_account(c->s, "acme", &c->acc), OTP_OK);
    assert_int_equal(create_key(c->s, c->acc, 0x01, false, NULL), OTP_OK);
    assert_int_equal(create_key(c->s, c->acc, 0x02, true, NULL), OTP_OK);
    c->key = key_id_of(c->s, 0x01);
    c->tkey = key_id_of(c->s, 0x02);
    *state = c;
    return 0;
}

int teardown(void **state)
{
    ctx *c = *state;
    otp_store_close(c->s);
    free(c);
    return 0;
}

/* ---- schema -------------------------------------------------------------- */

static void t_open_migrate_reopen(void **state)
{
    ctx *c = *state;
    assert_int_equal(c->s->ops->schema_version(c->s), OTP_SCHEMA_VERSION);
    assert_non_null(c->s->ops->name);
    otp_store_close(c->s);

    c->s = open_url(c->url, false); /* up to date: no migration needed */
    assert_int_equal(c->s->ops->schema_version(c->s), OTP_SCHEMA_VERSION);
    otp_account a;
    assert_int_equal(c->s->ops->account_find(c->s, "acme", &a), OTP_OK);
    otp_store_close(c->s);

    c->s = open_url(c->url, true); /* migrating again is a no-op */
    assert_int_equal(c->s->ops->schema_version(c->s), OTP_SCHEMA_VERSION);
    assert_int_equal(c->s->ops->account_get(c->s, c->acc, &a), OTP_OK);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM schema_migrations"),
                     OTP_SCHEMA_VERSION);
}

static void t_fresh_without_migrate_refused(void **state)
{
    char url[512];
    B->fresh_url(url, sizeof(url));
    assert_true(open_fails_with(url, false, "otpd migrate"));
    /* and the refusal created nothing: migrating afterwards starts from scratch */
    otp_store *s = open_url(url, true);
    assert_int_equal(s->ops->schema_version(s), OTP_SCHEMA_VERSION);
    otp_store_close(s);
}

static void t_old_schema_refused(void **state)
{
    ctx *c = *state;
    otp_store_close(c->s);
    c->s = NULL;
    assert_int_equal(B->raw_exec(c->url, "DELETE FROM schema_migrations"), 0);
    assert_true(open_fails_with(c->url, false, "run `otpd migrate`"));
}

static void t_newer_schema_refused(void **state)
{
    ctx *c = *state;
    otp_store_close(c->s);
    c->s = NULL;
    char sql[128], want[128];
    snprintf(sql, sizeof(sql), "INSERT INTO schema_migrations (version, applied_at) VALUES (%d, 0)",
             OTP_SCHEMA_VERSION + 1);
    assert_int_equal(B->raw_exec(c->url, sql), 0);
    snprintf(want, sizeof(want), "database schema %d is newer than this otpd (%d)",
             OTP_SCHEMA_VERSION + 1, OTP_SCHEMA_VERSION);
    assert_true(open_fails_with(c->url, false, want));
    assert_true(open_fails_with(c->url, true, want)); /* migrate cannot go back */
}

/* ---- accounts, keys, wallet ---------------------------------------------- */

typedef struct {
    int n;
    char names[4][OTP_NAME_SIZE];
    int64_t ids[4];
} account_seen;

static void on_account(const otp_account *a, void *p)
{
    account_seen *seen = p;
    if (seen->n < 4) {
        memcpy(seen->names[seen->n], a->name, OTP_NAME_SIZE);
        seen->ids[seen->n] = a->id;
    }
    seen->n++;
}

static void t_accounts(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    otp_account a, b;

    assert_int_equal(s->ops->account_get(s, c->acc, &a), OTP_OK);
    assert_int_equal(a.id, c->acc);
    assert_string_equal(a.name, "acme");
    assert_int_equal(strncmp(a.public_id, "acc_", 4), 0);
    assert_int_equal(a.balance, 0);
    assert_string_equal(a.currency, "INR");
    assert_int_equal(a.price_per_segment, PRICE);
    assert_int_equal(a.low_balance_threshold, 10000);
    assert_int_equal(a.created_at_ms, T0);

    assert_int_equal(s->ops->account_find(s, "acme", &b), OTP_OK);
    assert_int_equal(b.id, c->acc);
    assert_int_equal(s->ops->account_find(s, a.public_id, &b), OTP_OK);
    assert_int_equal(b.id, c->acc);
    assert_int_equal(s->ops->account_find(s, "nobody", &b), OTP_E_NOT_FOUND);
    assert_int_equal(s->ops->account_find(s, "acc_0000000000000000000000", &b), OTP_E_NOT_FOUND);
    assert_int_equal(s->ops->account_get(s, c->acc + 1000, &b), OTP_E_NOT_FOUND);

    otp_account_stats before = stats(s, c->acc);
    int64_t id2 = 0;
    assert_int_equal(create_account(s, "acme", NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(create_account(s, "", NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(create_account(s, "globex", &id2), OTP_OK);
    assert_true(id2 > c->acc);
    otp_account_stats after = stats(s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));

    account_seen seen = {0};
    assert_int_equal(s->ops->account_list(s, on_account, &seen), OTP_OK);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.names[0], "acme");
    assert_string_equal(seen.names[1], "globex");
    assert_int_equal(seen.ids[1], id2);

    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, c->acc + 1000, &st), OTP_E_NOT_FOUND);
}

typedef struct {
    int n;
    otp_key keys[4];
} key_seen;

static void on_key(const otp_key *k, void *p)
{
    key_seen *seen = p;
    if (seen->n < 4)
        seen->keys[seen->n] = *k;
    seen->n++;
}

static void t_keys(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    otp_key_auth a;

    memset(h, 0x01, sizeof(h));
    assert_int_equal(s->ops->key_lookup(s, h, &a), OTP_OK);
    assert_int_equal(a.account_id, c->acc);
    assert_int_equal(a.key_id, c->key);
    assert_false(a.test);
    assert_false(a.revoked);
    assert_int_equal(a.last_used_at_ms, 0);
    assert_string_equal(a.account_name, "acme");
    otp_account acc;
    assert_int_equal(s->ops->account_get(s, c->acc, &acc), OTP_OK);
    assert_string_equal(a.account_public_id, acc.public_id);

    memset(h, 0x02, sizeof(h));
    assert_int_equal(s->ops->key_lookup(s, h, &a), OTP_OK);
    assert_true(a.test);
    memset(h, 0x03, sizeof(h));
    assert_int_equal(s->ops->key_lookup(s, h, &a), OTP_E_NOT_FOUND);

    /* a second live key (rotation), a duplicate hash, an unknown account */
    char pid[OTP_ID_SIZE];
    assert_int_equal(create_key(s, c->acc, 0x03, false, pid), OTP_OK);
    assert_int_equal(create_key(s, c->acc, 0x03, false, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(create_key(s, c->acc + 1000, 0x04, false, NULL), OTP_E_NOT_FOUND);
    /* text fields without their terminating NUL are refused, nothing stored */
    for (int field = 0; field < 3; field++) {
        otp_txn t = {.kind = OTP_TXN_KEY_CREATE};
        otp_txn_key_create *k = &t.u.key_create;
        k->account_id = c->acc;
        new_id("key_", k->public_id);
        memset(k->hash, 0x05, sizeof(k->hash));
        snprintf(k->prefix, sizeof(k->prefix), "otpd_live_ab");
        k->now_ms = T0;
        if (field == 0)
            memset(k->public_id, 'k', sizeof(k->public_id));
        else if (field == 1)
            memset(k->prefix, 'p', sizeof(k->prefix));
        else
            memset(k->name, 'n', sizeof(k->name));
        assert_int_equal(otp_store_exec(s, &t), OTP_E_INVALID_REQUEST);
    }

    key_seen seen = {0};
    assert_int_equal(s->ops->key_list(s, c->acc, on_key, &seen), OTP_OK);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.keys[0].id, c->key);
    assert_string_equal(seen.keys[0].prefix, "otpd_live_ab");
    assert_string_equal(seen.keys[0].name, "key 01");
    assert_true(seen.keys[1].test);
    assert_string_equal(seen.keys[2].public_id, pid);
    assert_int_equal(seen.keys[2].created_at_ms, T0);
    assert_int_equal(seen.keys[2].revoked_at_ms, 0);
    seen.n = 0;
    assert_int_equal(s->ops->key_list(s, c->acc + 1000, on_key, &seen), OTP_OK);
    assert_int_equal(seen.n, 0);

    /* touch: last_used_at moves forward only */
    otp_txn t = {.kind = OTP_TXN_KEY_TOUCH};
    t.u.key_touch.key_id = c->key;
    t.u.key_touch.now_ms = T0 + 5000;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    t.u.key_touch.now_ms = T0 + 1000;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    memset(h, 0x01, sizeof(h));
    assert_int_equal(s->ops->key_lookup(s, h, &a), OTP_OK);
    assert_int_equal(a.last_used_at_ms, T0 + 5000);

    /* revoke: once; then unknown */
    otp_txn r = {.kind = OTP_TXN_KEY_REVOKE};
    memcpy(r.u.key_revoke.public_id, pid, OTP_ID_SIZE);
    r.u.key_revoke.now_ms = T0 + 7000;
    assert_int_equal(otp_store_exec(s, &r), OTP_OK);
    assert_int_equal(otp_store_exec(s, &r), OTP_E_NOT_FOUND);
    snprintf(r.u.key_revoke.public_id, OTP_ID_SIZE, "key_nosuchkey");
    assert_int_equal(otp_store_exec(s, &r), OTP_E_NOT_FOUND);
    memset(h, 0x03, sizeof(h));
    assert_int_equal(s->ops->key_lookup(s, h, &a), OTP_OK);
    assert_true(a.revoked);
    seen.n = 0;
    assert_int_equal(s->ops->key_list(s, c->acc, on_key, &seen), OTP_OK);
    assert_int_equal(seen.keys[2].revoked_at_ms, T0 + 7000);
}

static void t_wallet_credit(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    int64_t bal = -1;

    assert_int_equal(credit(s, c->acc, 1000, &bal), OTP_OK);
    assert_int_equal(bal, 1000);
    assert_int_equal(credit(s, c->acc, 250, &bal), OTP_OK);
    assert_int_equal(bal, 1250);
    assert_int_equal(credit(s, c->acc, 0, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(credit(s, c->acc, -5, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(credit(s, c->acc + 1000, 5, NULL), OTP_E_NOT_FOUND);
    assert_int_equal(credit(s, c->acc, INT64_MAX, NULL), OTP_E_INVALID_REQUEST); /* overflow */

    otp_account_stats st = stats(s, c->acc);
    assert_int_equal(st.balance, 1250);
    assert_int_equal(st.ledger_entries, 2);
    otp_account a;
    assert_int_equal(s->ops->account_get(s, c->acc, &a), OTP_OK);
    assert_int_equal(a.balance, 1250);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM ledger WHERE account_id = %" PRId64
             " AND type = 'credit' AND note = 'top-up' AND amount > 0",
             c->acc);
    assert_int_equal(B->raw_int(c->url, sql), 2);
}

/* A credit of amount to acc at now with reference ref ("" = none), its outputs
 * in *ret (may be NULL). */
static otp_err credit_ref(otp_store *s, int64_t acc, int64_t amount, const char *ref, int64_t now,
                          otp_txn_wallet_credit *ret)
{
    otp_txn t = {.kind = OTP_TXN_WALLET_CREDIT};
    t.u.wallet_credit.account_id = acc;
    t.u.wallet_credit.amount = amount;
    snprintf(t.u.wallet_credit.note, OTP_NOTE_SIZE, "invoice");
    snprintf(t.u.wallet_credit.reference, OTP_REFERENCE_SIZE, "%s", ref);
    t.u.wallet_credit.now_ms = now;
    t.u.wallet_credit.ledger_id = -1;
    t.u.wallet_credit.replayed = true; /* the txn must set every output */
    otp_err e = otp_store_exec(s, &t);
    if (ret)
        *ret = t.u.wallet_credit;
    return e;
}

/* Rows of the ledger matching a condition on one account (a raw count). */
static int64_t ledger_count(const ctx *c, int64_t acc, const char *where)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM ledger WHERE account_id = %" PRId64 " AND %s",
             acc, where);
    return B->raw_int(c->url, sql);
}

/* Without a reference every credit is a credit of its own. */
static void t_credit_without_reference(void **state)
{
    ctx *c = *state;
    otp_txn_wallet_credit a, b;
    assert_int_equal(credit_ref(c->s, c->acc, 300, "", T0, &a), OTP_OK);
    assert_int_equal(credit_ref(c->s, c->acc, 300, "", T0 + 1000, &b), OTP_OK);
    assert_false(a.replayed);
    assert_false(b.replayed);
    assert_true(a.ledger_id > 0);
    assert_true(b.ledger_id > a.ledger_id);
    assert_int_equal(a.balance_after, 300);
    assert_int_equal(b.balance_after, 600);
    assert_int_equal(a.created_at_ms, T0);
    assert_int_equal(b.created_at_ms, T0 + 1000);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.balance, 600);
    assert_int_equal(st.ledger_entries, 2);
    assert_int_equal(ledger_count(c, c->acc, "reference IS NULL"), 2); /* "" is stored as NULL */
}

/* A credit with a reference the account already credited writes nothing and
 * answers that credit; with another amount it is refused; references are per
 * account; a reference that is not 1..128 printable characters is refused. */
static void t_credit_reference_replayed(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    otp_txn_wallet_credit first, again;

    assert_int_equal(credit_ref(s, c->acc, 500, "inv-2024-001", T0, &first), OTP_OK);
    assert_false(first.replayed);
    assert_true(first.ledger_id > 0);
    assert_int_equal(first.balance_after, 500);
    assert_int_equal(first.created_at_ms, T0);
    otp_account_stats before = stats(s, c->acc);
    assert_int_equal(before.balance, 500);
    assert_int_equal(before.ledger_entries, 1);

    /* the same credit again, later: the first one's entry, nothing written */
    assert_int_equal(credit_ref(s, c->acc, 500, "inv-2024-001", T0 + 5000, &again), OTP_OK);
    assert_true(again.replayed);
    assert_int_equal(again.ledger_id, first.ledger_id);
    assert_int_equal(again.balance_after, 500);
    assert_int_equal(again.created_at_ms, T0);
    otp_account_stats after = stats(s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));

    /* after other money moved, a replay still answers the entry as it was */
    assert_int_equal(credit_ref(s, c->acc, 100, "inv-2024-002", T0 + 6000, NULL), OTP_OK);
    assert_int_equal(credit_ref(s, c->acc, 500, "inv-2024-001", T0 + 7000, &again), OTP_OK);
    assert_true(again.replayed);
    assert_int_equal(again.ledger_id, first.ledger_id);
    assert_int_equal(again.balance_after, 500);
    before = stats(s, c->acc);
    assert_int_equal(before.balance, 600);
    assert_int_equal(before.ledger_entries, 2);

    /* the same reference with another amount: refused, nothing changes */
    assert_int_equal(credit_ref(s, c->acc, 501, "inv-2024-001", T0 + 8000, NULL),
                     OTP_E_IDEMPOTENCY_KEY_REUSED);
    assert_int_equal(credit_ref(s, c->acc, 499, "inv-2024-001", T0 + 8000, NULL),
                     OTP_E_IDEMPOTENCY_KEY_REUSED);
    after = stats(s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_int_equal(ledger_count(c, c->acc, "reference = 'inv-2024-001'"), 1);

    /* references are per account: another account's is its own */
    int64_t other = 0;
    otp_txn_wallet_credit o;
    assert_int_equal(create_account(s, "globex", &other), OTP_OK);
    assert_int_equal(credit_ref(s, other, 700, "inv-2024-001", T0 + 9000, &o), OTP_OK);
    assert_false(o.replayed);
    assert_int_not_equal(o.ledger_id, first.ledger_id);
    assert_int_equal(o.balance_after, 700);
    assert_int_equal(stats(s, other).balance, 700);
    after = stats(s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));

    /* the usual refusals come first, a reference or not */
    assert_int_equal(credit_ref(s, c->acc + 1000, 500, "inv-2024-001", T0, NULL), OTP_E_NOT_FOUND);
    assert_int_equal(credit_ref(s, c->acc, 0, "inv-2024-001", T0, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(credit_ref(s, c->acc, INT64_MAX, "inv-2024-009", T0, NULL),
                     OTP_E_INVALID_REQUEST); /* overflow */

    /* a reference that is not printable ASCII, or not terminated */
    assert_int_equal(credit_ref(s, c->acc, 5, "inv\n1", T0, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(credit_ref(s, c->acc, 5, "inv\xc3\xa9", T0, NULL), OTP_E_INVALID_REQUEST);
    otp_txn t = {.kind = OTP_TXN_WALLET_CREDIT};
    t.u.wallet_credit.account_id = c->acc;
    t.u.wallet_credit.amount = 5;
    memset(t.u.wallet_credit.reference, 'r', OTP_REFERENCE_SIZE);
    assert_int_equal(otp_store_exec(s, &t), OTP_E_INVALID_REQUEST);
    /* 128 characters is the most */
    memset(t.u.wallet_credit.reference, 'r', OTP_REFERENCE_SIZE - 1);
    t.u.wallet_credit.reference[OTP_REFERENCE_SIZE - 1] = '\0';
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_false(t.u.wallet_credit.replayed);
    after = stats(s, c->acc);
    assert_int_equal(after.balance, before.balance + 5);
    assert_int_equal(after.ledger_entries, before.ledger_entries + 1);
}

#define CREDIT_RACERS 20

typedef struct credit_racer {
    otp_store *s;
    otp_txn *t;
    pthread_barrier_t *start;
} credit_racer;

static void *credit_racer_main(void *arg)
{
    credit_racer *r = arg;
    pthread_barrier_wait(r->start);
    r->s->ops->submit(r->s, r->t);
    return NULL;
}

/* CREDIT_RACERS credits of amount with reference ref, submitted at once from
 * as many threads (all held in one batch first when pause), credit once: one
 * is the credit, the others replay it. */
static void credit_race(ctx *c, const char *ref, int64_t amount, bool pause, int64_t *ret_balance)
{
    otp_txn txns[CREDIT_RACERS];
    credit_racer racers[CREDIT_RACERS];
    pthread_t th[CREDIT_RACERS];
    pthread_barrier_t start;
    tally t;
    tally_init(&t);
    pthread_barrier_init(&start, NULL, CREDIT_RACERS);
    for (int i = 0; i < CREDIT_RACERS; i++) {
        memset(&txns[i], 0, sizeof(txns[i]));
        txns[i].kind = OTP_TXN_WALLET_CREDIT;
        txns[i].u.wallet_credit.account_id = c->acc;
        txns[i].u.wallet_credit.amount = amount;
        snprintf(txns[i].u.wallet_credit.reference, OTP_REFERENCE_SIZE, "%s", ref);
        txns[i].u.wallet_credit.now_ms = T0 + i;
        txns[i].done = tally_done;
        txns[i].user = &t;
        racers[i] = (credit_racer){c->s, &txns[i], &start};
    }
    if (pause)
        B->pause(c->s, true);
    for (int i = 0; i < CREDIT_RACERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, credit_racer_main, &racers[i]), 0);
    for (int i = 0; i < CREDIT_RACERS; i++)
        pthread_join(th[i], NULL);
    if (pause)
        B->pause(c->s, false);
    tally_wait(&t, CREDIT_RACERS);
    assert_int_equal(t.ok, CREDIT_RACERS);

    int credited = 0;
    const otp_txn_wallet_credit *first = NULL;
    for (int i = 0; i < CREDIT_RACERS; i++)
        if (!txns[i].u.wallet_credit.replayed) {
            credited++;
            first = &txns[i].u.wallet_credit;
        }
    assert_int_equal(credited, 1);
    for (int i = 0; i < CREDIT_RACERS; i++) {
        const otp_txn_wallet_credit *w = &txns[i].u.wallet_credit;
        assert_int_equal(w->ledger_id, first->ledger_id);
        assert_int_equal(w->balance_after, first->balance_after);
        assert_int_equal(w->created_at_ms, first->created_at_ms);
    }
    *ret_balance = first->balance_after;
    pthread_barrier_destroy(&start);
    tally_destroy(&t);
}

/* Many credits with one reference at once credit once, whether they meet on
 * one connection (SQLite's writer, one batch) or on many (PostgreSQL's
 * workers, each waiting for the account's row). */
static void t_credit_reference_concurrent(void **state)
{
    ctx *c = *state;
    int64_t bal = 0;
    credit_race(c, "race-1", 1000, false, &bal);
    assert_int_equal(bal, 1000);
    int rounds = 1;
    if (B->pause) {
        credit_race(c, "race-2", 250, true, &bal);
        assert_int_equal(bal, 1250);
        rounds++;
    }
    otp_account_stats st = stats(c->s, c->acc); /* the ledger sum is the balance */
    assert_int_equal(st.balance, bal);
    assert_int_equal(st.ledger_entries, rounds);
}

/* ---- admin keys ---------------------------------------------------------- */

COLLECT(otp_admin_key, admin_key)

/* Fills t as the ADMIN_KEY_CREATE of a key whose hash is hash_byte repeated. */
static void make_admin_key(otp_txn *t, uint8_t hash_byte, const char *name, int64_t now)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_ADMIN_KEY_CREATE;
    otp_txn_admin_key_create *k = &t->u.admin_key_create;
    new_id("adm_", k->public_id);
    memset(k->hash, hash_byte, sizeof(k->hash));
    snprintf(k->prefix, sizeof(k->prefix), "otpd_admin_%02x%02x", hash_byte, hash_byte);
    snprintf(k->name, sizeof(k->name), "%s", name);
    k->now_ms = now;
}

static otp_err admin_revoke(otp_store *s, const char *public_id, int64_t now)
{
    otp_txn t = {.kind = OTP_TXN_ADMIN_KEY_REVOKE};
    snprintf(t.u.admin_key_revoke.public_id, OTP_ID_SIZE, "%s", public_id);
    t.u.admin_key_revoke.now_ms = now;
    return otp_store_exec(s, &t);
}

/* Create, look up by hash, list oldest first, revoke once; a revoked key is
 * still found, with its revocation time; taken hashes and ids are refused. */
static void t_admin_keys(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    otp_admin_key k;
    admin_key_seen seen = {0};

    assert_int_equal(s->ops->admin_key_list(s, on_admin_key, &seen), OTP_OK);
    assert_int_equal(seen.n, 0);
    memset(h, 0xA1, sizeof(h));
    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_E_NOT_FOUND);

    otp_txn a, b;
    make_admin_key(&a, 0xA1, "ops laptop", T0);
    assert_int_equal(otp_store_exec(s, &a), OTP_OK);
    assert_true(a.u.admin_key_create.ret_id > 0);
    make_admin_key(&b, 0xA2, "", T0 + 1000);
    assert_int_equal(otp_store_exec(s, &b), OTP_OK);
    assert_true(b.u.admin_key_create.ret_id > a.u.admin_key_create.ret_id);

    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_OK);
    assert_int_equal(k.id, a.u.admin_key_create.ret_id);
    assert_string_equal(k.public_id, a.u.admin_key_create.public_id);
    assert_string_equal(k.prefix, "otpd_admin_a1a1");
    assert_string_equal(k.name, "ops laptop");
    assert_int_equal(k.created_at_ms, T0);
    assert_int_equal(k.revoked_at_ms, 0);

    /* a taken hash, a taken id: refused, nothing added */
    otp_txn dup;
    make_admin_key(&dup, 0xA1, "again", T0 + 2000);
    assert_int_equal(otp_store_exec(s, &dup), OTP_E_INVALID_REQUEST);
    make_admin_key(&dup, 0xA3, "same id", T0 + 2000);
    memcpy(dup.u.admin_key_create.public_id, b.u.admin_key_create.public_id, OTP_ID_SIZE);
    assert_int_equal(otp_store_exec(s, &dup), OTP_E_INVALID_REQUEST);
    make_admin_key(&dup, 0xA4, "no id", T0 + 2000);
    dup.u.admin_key_create.public_id[0] = '\0';
    assert_int_equal(otp_store_exec(s, &dup), OTP_E_INVALID_REQUEST);
    memset(h, 0xA3, sizeof(h));
    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_E_NOT_FOUND);

    seen.n = 0;
    assert_int_equal(s->ops->admin_key_list(s, on_admin_key, &seen), OTP_OK);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.items[0].id, a.u.admin_key_create.ret_id);
    assert_int_equal(seen.items[1].id, b.u.admin_key_create.ret_id);
    assert_string_equal(seen.items[1].public_id, b.u.admin_key_create.public_id);
    assert_string_equal(seen.items[1].name, "");
    assert_int_equal(seen.items[1].created_at_ms, T0 + 1000);

    /* revoke: once; then, and for an unknown id, not found */
    assert_int_equal(admin_revoke(s, a.u.admin_key_create.public_id, T0 + 7000), OTP_OK);
    assert_int_equal(admin_revoke(s, a.u.admin_key_create.public_id, T0 + 8000), OTP_E_NOT_FOUND);
    assert_int_equal(admin_revoke(s, "adm_nosuchkey", T0 + 8000), OTP_E_NOT_FOUND);
    memset(h, 0xA1, sizeof(h));
    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_OK);
    assert_int_equal(k.revoked_at_ms, T0 + 7000);
    seen.n = 0;
    assert_int_equal(s->ops->admin_key_list(s, on_admin_key, &seen), OTP_OK);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.items[0].revoked_at_ms, T0 + 7000);
    assert_int_equal(seen.items[1].revoked_at_ms, 0);

    /* an unterminated id names no key */
    otp_txn r = {.kind = OTP_TXN_ADMIN_KEY_REVOKE};
    memset(r.u.admin_key_revoke.public_id, 'a', OTP_ID_SIZE);
    assert_int_equal(otp_store_exec(s, &r), OTP_E_NOT_FOUND);
}

/* Admin keys and API keys are apart: neither kind's hash finds the other, nor
 * does either revocation reach the other kind. */
static void t_admin_keys_apart_from_api_keys(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    otp_admin_key k;
    otp_key_auth auth;

    memset(h, 0x01, sizeof(h)); /* the live API key of setup() */
    assert_int_equal(s->ops->key_lookup(s, h, &auth), OTP_OK);
    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_E_NOT_FOUND);

    otp_txn a;
    make_admin_key(&a, 0x05, "ops", T0);
    assert_int_equal(otp_store_exec(s, &a), OTP_OK);
    memset(h, 0x05, sizeof(h));
    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_OK);
    assert_int_equal(s->ops->key_lookup(s, h, &auth), OTP_E_NOT_FOUND);

    /* KEY_REVOKE does not revoke an admin key, ADMIN_KEY_REVOKE not an API key */
    char api_pid[OTP_ID_SIZE];
    assert_int_equal(create_key(s, c->acc, 0x06, false, api_pid), OTP_OK);
    otp_txn r = {.kind = OTP_TXN_KEY_REVOKE};
    memcpy(r.u.key_revoke.public_id, a.u.admin_key_create.public_id, OTP_ID_SIZE);
    r.u.key_revoke.now_ms = T0 + 1;
    assert_int_equal(otp_store_exec(s, &r), OTP_E_NOT_FOUND);
    assert_int_equal(admin_revoke(s, api_pid, T0 + 1), OTP_E_NOT_FOUND);
    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_OK);
    assert_int_equal(k.revoked_at_ms, 0);
    memset(h, 0x06, sizeof(h));
    assert_int_equal(s->ops->key_lookup(s, h, &auth), OTP_OK);
    assert_false(auth.revoked);
}

/* ---- SEND ---------------------------------------------------------------- */

static void t_send_charges(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    otp_txn t;

    assert_int_equal(credit(s, c->acc, 100, NULL), OTP_OK);
    make_send(&t, c->acc, c->key, false, 2);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_int_equal(t.u.send.charged, 2 * PRICE);
    assert_int_equal(t.u.send.balance_after, 100 - 2 * PRICE);

    otp_account_stats st = stats(s, c->acc);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.messages, 1);
    assert_int_equal(st.ledger_entries, 2);
    assert_int_equal(st.balance, 50);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM ledger WHERE type = 'debit' AND amount = -50"
                             " AND balance_after = 50 AND message_id = '%s'",
                             t.u.send.message_id),
                     1);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM messages WHERE public_id = '%s'"
                             " AND status = 'queued' AND sealed_text IS NOT NULL",
                             t.u.send.message_id),
                     1);
    assert_int_equal(count_events(c, t.u.send.message_id, (event_count){.status = OTP_MSG_QUEUED}),
                     1);

    /* exactly what is left can be spent */
    make_send(&t, c->acc, c->key, false, 2);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_int_equal(t.u.send.balance_after, 0);
}

static void t_send_insufficient_stores_nothing(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    otp_txn t;

    assert_int_equal(credit(s, c->acc, 60, NULL), OTP_OK);
    make_send(&t, c->acc, c->key, false, 2);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    otp_account_stats before = stats(s, c->acc);
    assert_int_equal(before.balance, 10);

    make_send(&t, c->acc, c->key, false, 1); /* 25 > 10 */
    assert_int_equal(otp_store_exec(s, &t), OTP_E_INSUFFICIENT_BALANCE);
    otp_account_stats after = stats(s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_int_equal(
        raw_int(c, "SELECT count(*) FROM otp_requests WHERE public_id = '%s'", t.u.send.request_id),
        0);
    assert_int_equal(
        raw_int(c, "SELECT count(*) FROM messages WHERE public_id = '%s'", t.u.send.message_id), 0);
    /* the refused request cannot be verified either */
    assert_int_equal(verify(s, c->acc, t.u.send.request_id, RIGHT, 6, T0, NULL),
                     OTP_E_OTP_NOT_FOUND);

    make_send(&t, c->acc + 1000, c->key, false, 1); /* no such account */
    assert_int_not_equal(otp_store_exec(s, &t), OTP_OK);
}

static void t_send_test_key_free(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    otp_txn t;

    make_send(&t, c->acc, c->tkey, true, 3); /* balance 0: a test key still works */
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_int_equal(t.u.send.charged, 0);
    assert_int_equal(t.u.send.balance_after, 0);
    otp_account_stats st = stats(s, c->acc);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.messages, 1);
    assert_int_equal(st.ledger_entries, 0);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM messages WHERE public_id = '%s'"
                             " AND status = 'sent' AND provider = 'test' AND test = 1"
                             " AND sealed_text IS NOT NULL",
                             t.u.send.message_id),
                     1);
    /* it verifies like any other */
    assert_int_equal(verify(s, c->acc, t.u.send.request_id, RIGHT, 6, T0 + 1, NULL), OTP_OK);

    /* and never reaches the outbox */
    otp_txn cl = {.kind = OTP_TXN_OUTBOX_CLAIM};
    cl.u.outbox_claim.now_ms = T0 + 3600000;
    cl.u.outbox_claim.lease_ms = 1000;
    cl.u.outbox_claim.max = 10;
    assert_int_equal(otp_store_exec(s, &cl), OTP_OK);
    assert_int_equal(cl.u.outbox_claim.n, 0);
    otp_outbox_msgs_free(cl.u.outbox_claim.msgs, cl.u.outbox_claim.n);
}

/* ---- VERIFY -------------------------------------------------------------- */

/* Sends one request from the test key; writes its id into rid. */
void one_request(ctx *c, int max_attempts, char rid[OTP_ID_SIZE])
{
    otp_txn t;
    make_send(&t, c->acc, c->tkey, true, 1);
    t.u.send.max_attempts = max_attempts;
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    memcpy(rid, t.u.send.request_id, OTP_ID_SIZE);
}

static void t_verify_right_code_once(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    int left;
    one_request(c, 3, rid);
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 10, &left), OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 2);
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 20, &left), OTP_OK);
    assert_int_equal(left, 2);
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 30, NULL),
                     OTP_E_OTP_ALREADY_VERIFIED);
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 40, NULL),
                     OTP_E_OTP_ALREADY_VERIFIED);
    /* verified stays verified after the expiry, and a wrong length says so too */
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 4, T0 + 999999, NULL),
                     OTP_E_OTP_ALREADY_VERIFIED);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM otp_requests WHERE public_id = '%s'"
                             " AND status = 'verified' AND verified_at = 1700000000020",
                             rid),
                     1);
}

static void t_verify_wrong_codes_lock(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    int left;
    one_request(c, 3, rid);
    for (int i = 2; i >= 0; i--) {
        assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 10, &left), OTP_E_OTP_INCORRECT);
        assert_int_equal(left, i);
    }
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 20, &left),
                     OTP_E_OTP_ATTEMPTS_EXHAUSTED);
    assert_int_equal(left, 0);
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 20, NULL),
                     OTP_E_OTP_ATTEMPTS_EXHAUSTED);
    /* the wrong guesses were stored, not rolled back: a new handle sees the lock */
    otp_store_close(c->s);
    c->s = open_url(c->url, false);
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 30, NULL),
                     OTP_E_OTP_ATTEMPTS_EXHAUSTED);
    assert_int_equal(
        raw_int(c, "SELECT count(*) FROM otp_requests WHERE public_id = '%s' AND status = 'locked'",
                rid),
        1);
}

static void t_verify_expired(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    int left;
    one_request(c, 3, rid);
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 600000, &left), OTP_E_OTP_EXPIRED);
    assert_int_equal(left, 3);
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 700000, NULL), OTP_E_OTP_EXPIRED);
    /* expiry is computed, not stored, and no attempt went */
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 599999, &left), OTP_OK);
    assert_int_equal(left, 3);
}

static void t_verify_wrong_length(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    int left;
    one_request(c, 3, rid);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 4, T0 + 10, &left),
                         OTP_E_INVALID_OTP_CODE);
        assert_int_equal(left, 3);
    }
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 20, NULL), OTP_OK);
}

static void t_verify_other_account(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    int64_t other;
    one_request(c, 3, rid);
    assert_int_equal(create_account(c->s, "globex", &other), OTP_OK);
    assert_int_equal(verify(c->s, other, rid, RIGHT, 6, T0 + 10, NULL), OTP_E_OTP_NOT_FOUND);
    assert_int_equal(verify(c->s, c->acc, "req_0000000000000000000000", RIGHT, 6, T0 + 10, NULL),
                     OTP_E_OTP_NOT_FOUND);
    /* the other account's guess used nothing */
    int left;
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 10, &left), OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 2);
}

/* A key sees the requests of its own mode only: a live key's guess at a test
 * request, or a test key's at a live one, is as unknown and uses nothing. */
static void t_verify_other_mode(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    int left;
    one_request(c, 3, rid); /* a test key's */
    assert_int_equal(verify_as(c->s, c->acc, false, rid, RIGHT, 6, T0 + 10, NULL),
                     OTP_E_OTP_NOT_FOUND);
    assert_int_equal(verify_as(c->s, c->acc, false, rid, WRONG, 6, T0 + 10, NULL),
                     OTP_E_OTP_NOT_FOUND);
    assert_int_equal(verify_as(c->s, c->acc, true, rid, WRONG, 6, T0 + 10, &left),
                     OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 2);
    assert_int_equal(verify_as(c->s, c->acc, true, rid, RIGHT, 6, T0 + 10, NULL), OTP_OK);

    otp_txn t;
    assert_int_equal(credit(c->s, c->acc, PRICE, NULL), OTP_OK);
    make_send(&t, c->acc, c->key, false, 1); /* a live key's */
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_int_equal(verify_as(c->s, c->acc, true, t.u.send.request_id, RIGHT, 6, T0 + 10, NULL),
                     OTP_E_OTP_NOT_FOUND);
    assert_int_equal(verify_as(c->s, c->acc, false, t.u.send.request_id, WRONG, 6, T0 + 10, &left),
                     OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 2);
}

/* ---- concurrency --------------------------------------------------------- */

void tally_init(tally *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
}

void tally_done(otp_txn *txn)
{
    tally *t = txn->user;
    pthread_mutex_lock(&t->lock);
    if (txn->err == OTP_OK)
        t->ok++;
    else if (txn->err == OTP_E_INSUFFICIENT_BALANCE)
        t->insufficient++;
    else
        t->other++;
    t->done++;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void tally_wait(tally *t, int n)
{
    pthread_mutex_lock(&t->lock);
    while (t->done < n)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

void tally_destroy(tally *t)
{
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
}

#define SEND_THREADS 8

typedef struct sender {
    otp_store *s;
    otp_txn *txns;
    int n;
    pthread_barrier_t *start;
} sender;

static void *sender_main(void *arg)
{
    sender *sd = arg;
    pthread_barrier_wait(sd->start);
    for (int i = 0; i < sd->n; i++)
        sd->s->ops->submit(sd->s, &sd->txns[i]);
    return NULL;
}

/* Submits per_thread sends from each of SEND_THREADS threads at once (live key
 * unless test) and waits for every done(). */
static void send_from_threads(ctx *c, int per_thread, bool pause, tally *ret)
{
    int n = SEND_THREADS * per_thread;
    otp_txn *txns = calloc((size_t)n, sizeof(*txns));
    assert_non_null(txns);
    tally_init(ret);
    for (int i = 0; i < n; i++) {
        make_send(&txns[i], c->acc, c->key, false, 1);
        txns[i].done = tally_done;
        txns[i].user = ret;
    }
    if (pause && B->pause)
        B->pause(c->s, true);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, SEND_THREADS);
    pthread_t th[SEND_THREADS];
    sender sd[SEND_THREADS];
    for (int i = 0; i < SEND_THREADS; i++) {
        sd[i] = (sender){c->s, txns + i * per_thread, per_thread, &start};
        assert_int_equal(pthread_create(&th[i], NULL, sender_main, &sd[i]), 0);
    }
    for (int i = 0; i < SEND_THREADS; i++)
        pthread_join(th[i], NULL);
    if (pause && B->pause)
        B->pause(c->s, false);
    tally_wait(ret, n);
    pthread_barrier_destroy(&start);
    free(txns);
}

static void t_group_commit_threads(void **state)
{
    ctx *c = *state;
    tally t;
    int n = SEND_THREADS * 500;
    assert_int_equal(credit(c->s, c->acc, (int64_t)n * PRICE, NULL), OTP_OK);
    send_from_threads(c, 500, false, &t);
    assert_int_equal(t.done, n);
    assert_int_equal(t.ok, n);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.requests, n);
    assert_int_equal(st.messages, n);
    assert_int_equal(st.ledger_entries, n + 1);
    assert_int_equal(st.balance, 0);
    tally_destroy(&t);
}

static void t_group_commit_mixed_balance(void **state)
{
    ctx *c = *state;
    tally t;
    /* room for exactly 100 sends, and 10 paise over */
    assert_int_equal(credit(c->s, c->acc, 100 * PRICE + 10, NULL), OTP_OK);
    send_from_threads(c, 50, true, &t); /* 400 sends; with a pause hook, in 2 batches */
    assert_int_equal(t.done, 400);
    assert_int_equal(t.ok, 100);
    assert_int_equal(t.insufficient, 300);
    assert_int_equal(t.other, 0);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.balance, 10);
    assert_int_equal(st.requests, 100); /* the refused ones stored nothing */
    assert_int_equal(st.messages, 100);
    assert_int_equal(st.ledger_entries, 101);
    tally_destroy(&t);
}

#define VERIFY_THREADS 16

typedef struct guesser {
    ctx *c;
    const char *rid;
    uint8_t guess;
    pthread_barrier_t *start;
    otp_err result;
} guesser;

static void *guesser_main(void *arg)
{
    guesser *g = arg;
    pthread_barrier_wait(g->start);
    g->result = verify(g->c->s, g->c->acc, g->rid, g->guess, 6, T0 + 10, NULL);
    return NULL;
}

static void guess_from_threads(ctx *c, const char *rid, uint8_t guess, int *ret_counts)
{
    pthread_barrier_t start;
    pthread_t th[VERIFY_THREADS];
    guesser g[VERIFY_THREADS];
    pthread_barrier_init(&start, NULL, VERIFY_THREADS);
    for (int i = 0; i < VERIFY_THREADS; i++) {
        g[i] = (guesser){c, rid, guess, &start, OTP_E_INTERNAL};
        assert_int_equal(pthread_create(&th[i], NULL, guesser_main, &g[i]), 0);
    }
    for (int i = 0; i < VERIFY_THREADS; i++) {
        pthread_join(th[i], NULL);
        ret_counts[g[i].result]++;
    }
    pthread_barrier_destroy(&start);
}

static void t_verify_concurrent_attempts(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    int counts[OTP_E__COUNT] = {0};
    one_request(c, 3, rid);
    guess_from_threads(c, rid, WRONG, counts);
    assert_int_equal(counts[OTP_E_OTP_INCORRECT], 3);
    assert_int_equal(counts[OTP_E_OTP_ATTEMPTS_EXHAUSTED], VERIFY_THREADS - 3);
}

static void t_verify_concurrent_right_code(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    int counts[OTP_E__COUNT] = {0};
    one_request(c, 3, rid);
    guess_from_threads(c, rid, RIGHT, counts);
    assert_int_equal(counts[OTP_OK], 1);
    assert_int_equal(counts[OTP_E_OTP_ALREADY_VERIFIED], VERIFY_THREADS - 1);
}

typedef struct reader_arg {
    otp_store *s;
    int64_t acc;
    int errors;
} reader_arg;

static void *reader_main(void *arg)
{
    reader_arg *r = arg;
    uint8_t h[OTP_APIKEY_HASH_LEN];
    memset(h, 0x01, sizeof(h));
    for (int i = 0; i < 2000; i++) {
        otp_account a;
        otp_key_auth k;
        otp_account_stats st;
        if (r->s->ops->account_get(r->s, r->acc, &a) != OTP_OK)
            r->errors++;
        if (r->s->ops->key_lookup(r->s, h, &k) != OTP_OK || k.account_id != r->acc)
            r->errors++;
        if (i % 100 == 0 &&
            (r->s->ops->account_stats(r->s, r->acc, &st) != OTP_OK || st.balance != st.ledger_sum))
            r->errors++;
    }
    return NULL;
}

/* Reads from many threads at once, while sends commit. */
static void t_reads_from_threads(void **state)
{
    ctx *c = *state;
    pthread_t th[6];
    reader_arg ra[6];
    assert_int_equal(credit(c->s, c->acc, 1000 * PRICE, NULL), OTP_OK);
    for (int i = 0; i < 6; i++) {
        ra[i] = (reader_arg){c->s, c->acc, 0};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &ra[i]), 0);
    }
    tally t;
    send_from_threads(c, 100, false, &t);
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ra[i].errors, 0);
    }
    assert_int_equal(t.ok, SEND_THREADS * 100);
    tally_destroy(&t);
    assert_int_equal(c->s->ops->schema_version(c->s), OTP_SCHEMA_VERSION);
}

/* ---- outbox -------------------------------------------------------------- */

otp_err claim(otp_store *s, int64_t now, int64_t lease, size_t max, otp_txn *t)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_OUTBOX_CLAIM;
    t->u.outbox_claim.now_ms = now;
    t->u.outbox_claim.lease_ms = lease;
    t->u.outbox_claim.max = max;
    return otp_store_exec(s, t);
}

void claim_free(otp_txn *t)
{
    otp_outbox_msgs_free(t->u.outbox_claim.msgs, t->u.outbox_claim.n);
}

otp_err report(otp_store *s, int64_t id, otp_msg_status status, int64_t now, int64_t next_attempt)
{
    otp_outbox_report r;
    memset(&r, 0, sizeof(r));
    r.id = id;
    r.status = status;
    snprintf(r.provider, sizeof(r.provider), "gw1");
    if (status == OTP_MSG_SENT)
        snprintf(r.provider_message_id, sizeof(r.provider_message_id), "gw-%" PRId64, id);
    else
        snprintf(r.error, sizeof(r.error), "gateway said no");
    r.next_attempt_at_ms = next_attempt;
    otp_txn t = {.kind = OTP_TXN_OUTBOX_REPORT};
    t.u.outbox_report.reports = &r;
    t.u.outbox_report.n = 1;
    t.u.outbox_report.now_ms = now;
    return otp_store_exec(s, &t);
}

/* Queues n live sends; their ids go to rids/mids (may be NULL). */
void queue_sends(ctx *c, int n, char (*mids)[OTP_ID_SIZE])
{
    otp_txn t;
    for (int i = 0; i < n; i++) {
        make_send(&t, c->acc, c->key, false, 1);
        t.u.send.now_ms = T0 + i; /* claim order = send order */
        assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
        if (mids)
            memcpy(mids[i], t.u.send.message_id, OTP_ID_SIZE);
    }
}

static void t_outbox_lease(void **state)
{
    ctx *c = *state;
    otp_txn t;
    char mids[3][OTP_ID_SIZE];
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    queue_sends(c, 3, mids);

    assert_int_equal(claim(c->s, T0 - 1, 1000, 10, &t), OTP_OK); /* nothing due yet */
    assert_int_equal(t.u.outbox_claim.n, 0);
    claim_free(&t);

    assert_int_equal(claim(c->s, T0 + 10, 1000, 2, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 2);
    otp_outbox_msg *m = t.u.outbox_claim.msgs;
    assert_string_equal(m[0].public_id, mids[0]);
    assert_string_equal(m[1].public_id, mids[1]);
    assert_int_equal(m[0].attempts, 1);
    assert_int_equal(m[0].segments, 1);
    assert_int_equal(m[0].account_id, c->acc);
    assert_int_equal(m[0].created_at_ms, T0);
    assert_int_equal(m[0].expires_at_ms, T0 + 600000);
    assert_string_equal(m[0].to, "+919876543210");
    assert_int_equal(strncmp(m[0].request_id, "req_", 4), 0);
    assert_int_equal(m[0].sealed_len, sizeof(sealed_text) - 1);
    assert_memory_equal(m[0].sealed, sealed_text, m[0].sealed_len);
    int64_t first = m[0].id;
    claim_free(&t);

    assert_int_equal(claim(c->s, T0 + 20, 1000, 10, &t), OTP_OK); /* only the third */
    assert_int_equal(t.u.outbox_claim.n, 1);
    assert_string_equal(t.u.outbox_claim.msgs[0].public_id, mids[2]);
    claim_free(&t);

    assert_int_equal(claim(c->s, T0 + 1009, 1000, 10, &t), OTP_OK); /* leases still held */
    assert_int_equal(t.u.outbox_claim.n, 0);
    claim_free(&t);

    assert_int_equal(claim(c->s, T0 + 1010, 1000, 10, &t), OTP_OK); /* first two expired */
    assert_int_equal(t.u.outbox_claim.n, 2);
    assert_int_equal(t.u.outbox_claim.msgs[0].id, first);
    assert_int_equal(t.u.outbox_claim.msgs[0].attempts, 2);
    claim_free(&t);

    assert_int_equal(count_events(c, mids[0], (event_count){.any_status = true}),
                     3); /* queued, sending, sending */
    assert_int_equal(count_events(c, mids[0], (event_count){.status = OTP_MSG_SENDING}), 2);
}

static void t_outbox_sent_erases_text(void **state)
{
    ctx *c = *state;
    otp_txn t;
    char mids[1][OTP_ID_SIZE];
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    queue_sends(c, 1, mids);
    assert_int_equal(claim(c->s, T0 + 10, 1000, 10, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 1);
    int64_t id = t.u.outbox_claim.msgs[0].id;
    claim_free(&t);

    assert_int_equal(report(c->s, id, OTP_MSG_SENT, T0 + 20, 0), OTP_OK);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM messages WHERE public_id = '%s'"
                             " AND sealed_text IS NULL AND status = 'sent' AND provider = 'gw1'"
                             " AND provider_message_id LIKE 'gw-%%' AND updated_at = 1700000000020",
                             mids[0]),
                     1);
    assert_int_equal(
        count_events(c, mids[0], (event_count){.status = OTP_MSG_SENT, .at_ms = 1700000000020}), 1);
    /* never claimed again, and a repeated or late report changes nothing */
    assert_int_equal(claim(c->s, T0 + 99999999, 1000, 10, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 0);
    claim_free(&t);
    otp_account_stats before = stats(c->s, c->acc);
    assert_int_equal(report(c->s, id, OTP_MSG_SENT, T0 + 30, 0), OTP_OK);
    assert_int_equal(report(c->s, id, OTP_MSG_FAILED, T0 + 30, 0), OTP_OK);
    otp_account_stats after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_int_equal(
        raw_int(c, "SELECT count(*) FROM messages WHERE public_id = '%s' AND status = 'sent'",
                mids[0]),
        1);
}

static void t_outbox_failed_refunds_once(void **state)
{
    ctx *c = *state;
    otp_txn t;
    char mids[1][OTP_ID_SIZE];
    assert_int_equal(credit(c->s, c->acc, 100, NULL), OTP_OK);
    queue_sends(c, 1, mids);
    assert_int_equal(stats(c->s, c->acc).balance, 100 - PRICE);
    assert_int_equal(claim(c->s, T0 + 10, 1000, 10, &t), OTP_OK);
    int64_t id = t.u.outbox_claim.msgs[0].id;
    claim_free(&t);

    assert_int_equal(report(c->s, id, OTP_MSG_FAILED, T0 + 20, 0), OTP_OK);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.balance, 100);
    assert_int_equal(st.ledger_entries, 3); /* credit, debit, refund */
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM ledger WHERE type = 'refund' AND amount = 25"
                             " AND balance_after = 100 AND message_id = '%s'"
                             " AND request_id IS NOT NULL",
                             mids[0]),
                     1);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM messages WHERE public_id = '%s'"
                             " AND sealed_text IS NULL AND status = 'failed' AND refunded = 1"
                             " AND error = 'gateway said no'",
                             mids[0]),
                     1);

    /* reported again (twice), and after its lease would have expired: nothing */
    assert_int_equal(report(c->s, id, OTP_MSG_FAILED, T0 + 30, 0), OTP_OK);
    assert_int_equal(report(c->s, id, OTP_MSG_FAILED, T0 + 5000, 0), OTP_OK);
    assert_int_equal(claim(c->s, T0 + 5000, 1000, 10, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 0);
    claim_free(&t);
    st = stats(c->s, c->acc);
    assert_int_equal(st.balance, 100);
    assert_int_equal(st.ledger_entries, 3);
}

static void t_outbox_requeue(void **state)
{
    ctx *c = *state;
    otp_txn t;
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    queue_sends(c, 1, NULL);
    assert_int_equal(claim(c->s, T0 + 10, 1000, 10, &t), OTP_OK);
    int64_t id = t.u.outbox_claim.msgs[0].id;
    claim_free(&t);

    assert_int_equal(report(c->s, id, OTP_MSG_QUEUED, T0 + 20, T0 + 5000), OTP_OK);
    assert_int_equal(claim(c->s, T0 + 1500, 1000, 10, &t), OTP_OK); /* the lease no longer counts */
    assert_int_equal(t.u.outbox_claim.n, 0);
    claim_free(&t);
    assert_int_equal(claim(c->s, T0 + 5000, 1000, 10, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 1);
    assert_int_equal(t.u.outbox_claim.msgs[0].attempts, 2);
    assert_non_null(t.u.outbox_claim.msgs[0].sealed); /* the text is kept for the retry */
    claim_free(&t);
    assert_int_equal(stats(c->s, c->acc).balance, 1000 - PRICE); /* no refund on a retry */

    /* a report of an unexpected status is refused as a whole */
    assert_int_equal(report(c->s, id, OTP_MSG_DELIVERED, T0 + 5001, 0), OTP_E_INVALID_REQUEST);
}

/* ---- lifecycle and durability -------------------------------------------- */

/* pause: hold the queue (a test hook) so that the sends are surely still
 * queued at close; without it, as in a build without the hooks, close races
 * the workers, most sends still queued behind their account's busy lane. */
static void close_drains_queue(ctx *c, bool pause)
{
    int n = 300;
    otp_txn *txns = calloc((size_t)n, sizeof(*txns));
    tally t;
    assert_non_null(txns);
    tally_init(&t);
    assert_int_equal(credit(c->s, c->acc, (int64_t)n * PRICE, NULL), OTP_OK);
    if (pause && B->pause)
        B->pause(c->s, true);
    for (int i = 0; i < n; i++) {
        make_send(&txns[i], c->acc, c->key, false, 1);
        txns[i].done = tally_done;
        txns[i].user = &t;
        c->s->ops->submit(c->s, &txns[i]);
    }
    otp_store_close(c->s);
    assert_int_equal(t.done, n); /* every done() ran before close() returned */
    assert_int_equal(t.ok, n);
    c->s = open_url(c->url, false);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.requests, n);
    assert_int_equal(st.balance, 0);
    tally_destroy(&t);
    free(txns);
}

static void t_close_drains_queue(void **state)
{
    close_drains_queue(*state, true);
}

static void t_close_drains_busy_lane(void **state)
{
    close_drains_queue(*state, false);
}

typedef struct late {
    otp_store *s;
    otp_txn second;
    otp_err second_err;
    bool second_done;
} late;

static void late_second_done(otp_txn *txn)
{
    late *l = txn->user;
    l->second_err = txn->err;
    l->second_done = true;
}

static void late_first_done(otp_txn *txn)
{
    late *l = txn->user;
    /* close() is running: a new txn is refused at once */
    make_send(&l->second, txn->u.send.account_id, txn->u.send.key_id, false, 1);
    l->second.done = late_second_done;
    l->second.user = l;
    l->s->ops->submit(l->s, &l->second);
}

static void t_submit_during_close_refused(void **state)
{
    ctx *c = *state;
    if (!B->pause)
        skip();
    late l = {.s = c->s, .second_err = OTP_OK};
    otp_txn first;
    assert_int_equal(credit(c->s, c->acc, 10 * PRICE, NULL), OTP_OK);
    make_send(&first, c->acc, c->key, false, 1);
    first.done = late_first_done;
    first.user = &l;
    B->pause(c->s, true);
    c->s->ops->submit(c->s, &first);
    otp_store_close(c->s);
    assert_int_equal(first.err, OTP_OK);
    assert_true(l.second_done);
    assert_int_equal(l.second_err, OTP_E_UNAVAILABLE);
    c->s = open_url(c->url, false);
    assert_int_equal(stats(c->s, c->acc).requests, 1);
}

static void t_acknowledged_is_durable(void **state)
{
    ctx *c = *state;
    otp_txn t;
    assert_int_equal(credit(c->s, c->acc, 100, NULL), OTP_OK);
    make_send(&t, c->acc, c->key, false, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);

    /* a second handle, with the first still open and never closed in between */
    otp_store *other = open_url(c->url, false);
    otp_account_stats st = stats(other, c->acc);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.balance, 100 - PRICE);
    assert_int_equal(verify(other, c->acc, t.u.send.request_id, RIGHT, 6, T0 + 1, NULL), OTP_OK);
    /* and what the second wrote, the first sees */
    assert_int_equal(verify(c->s, c->acc, t.u.send.request_id, RIGHT, 6, T0 + 2, NULL),
                     OTP_E_OTP_ALREADY_VERIFIED);
    otp_store_close(other);
}

static void t_commit_failure_fails_batch(void **state)
{
    ctx *c = *state;
    if (!B->pause || !B->fail_commits)
        skip();
    assert_int_equal(credit(c->s, c->acc, 100 * PRICE, NULL), OTP_OK);
    char rid[OTP_ID_SIZE];
    one_request(c, 3, rid);
    otp_account_stats before = stats(c->s, c->acc);

    otp_txn txns[6];
    tally t;
    tally_init(&t);
    for (int i = 0; i < 5; i++)
        make_send(&txns[i], c->acc, c->key, false, 1);
    memset(&txns[5], 0, sizeof(txns[5]));
    txns[5].kind = OTP_TXN_VERIFY;
    txns[5].u.verify.account_id = c->acc;
    txns[5].u.verify.test = true; /* one_request()'s is a test key's */
    memcpy(txns[5].u.verify.request_id, rid, OTP_ID_SIZE);
    memset(txns[5].u.verify.code_hash, WRONG, OTP_CODE_HASH_LEN);
    txns[5].u.verify.code_length = 6;
    txns[5].u.verify.now_ms = T0 + 1;
    B->pause(c->s, true);
    B->fail_commits(c->s, 1);
    for (int i = 0; i < 6; i++) {
        txns[i].done = tally_done;
        txns[i].user = &t;
        c->s->ops->submit(c->s, &txns[i]);
    }
    B->pause(c->s, false);
    tally_wait(&t, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(txns[i].err, OTP_E_UNAVAILABLE);
    otp_account_stats after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
    int left;
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 2, &left), OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 2); /* the failed batch's guess was not stored */

    /* the store works on after the failure */
    otp_txn ok;
    make_send(&ok, c->acc, c->key, false, 1);
    assert_int_equal(otp_store_exec(c->s, &ok), OTP_OK);
    tally_destroy(&t);
}

/* One batch holding successes, business errors and a kept wrong guess: each txn
 * gets its own outcome and only the failed ones leave no trace. */
static void t_batch_txns_isolated(void **state)
{
    ctx *c = *state;
    if (!B->pause)
        skip();
    char rid[OTP_ID_SIZE];
    one_request(c, 3, rid);
    assert_int_equal(credit(c->s, c->acc, PRICE, NULL), OTP_OK);

    enum { N = 6 };
    otp_txn txns[N];
    tally t;
    tally_init(&t);
    make_send(&txns[0], c->acc, c->key, false, 1); /* OK: spends it all */
    make_send(&txns[1], c->acc, c->key, false, 1); /* insufficient */
    memset(&txns[2], 0, sizeof(txns[2]));          /* wrong guess: kept */
    txns[2].kind = OTP_TXN_VERIFY;
    txns[2].u.verify.account_id = c->acc;
    txns[2].u.verify.test = true; /* one_request()'s is a test key's */
    memcpy(txns[2].u.verify.request_id, rid, OTP_ID_SIZE);
    memset(txns[2].u.verify.code_hash, WRONG, OTP_CODE_HASH_LEN);
    txns[2].u.verify.code_length = 6;
    txns[2].u.verify.now_ms = T0 + 1;
    memset(&txns[3], 0, sizeof(txns[3])); /* duplicate name */
    txns[3].kind = OTP_TXN_ACCOUNT_CREATE;
    snprintf(txns[3].u.account_create.public_id, OTP_ID_SIZE, "acc_dup");
    snprintf(txns[3].u.account_create.name, OTP_NAME_SIZE, "acme");
    make_send(&txns[4], c->acc, c->tkey, true, 1); /* OK: free */
    memset(&txns[5], 0, sizeof(txns[5]));          /* OK */
    txns[5].kind = OTP_TXN_WALLET_CREDIT;
    txns[5].u.wallet_credit.account_id = c->acc;
    txns[5].u.wallet_credit.amount = 7;
    B->pause(c->s, true);
    for (int i = 0; i < N; i++) {
        txns[i].done = tally_done;
        txns[i].user = &t;
        c->s->ops->submit(c->s, &txns[i]);
    }
    B->pause(c->s, false);
    tally_wait(&t, N);
    assert_int_equal(txns[0].err, OTP_OK);
    assert_int_equal(txns[1].err, OTP_E_INSUFFICIENT_BALANCE);
    assert_int_equal(txns[2].err, OTP_E_OTP_INCORRECT);
    assert_int_equal(txns[2].u.verify.attempts_left, 2);
    assert_int_equal(txns[3].err, OTP_E_INVALID_REQUEST);
    assert_int_equal(txns[4].err, OTP_OK);
    assert_int_equal(txns[5].err, OTP_OK);
    assert_int_equal(txns[5].u.wallet_credit.balance_after, 7);

    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.requests, 3); /* one_request, txns[0], txns[4] */
    assert_int_equal(st.balance, 7);
    assert_int_equal(st.ledger_entries, 3);
    int left;
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 2, &left), OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 1);
    tally_destroy(&t);
}

/* A txn that fails half-way (its request id is taken, found after its debit)
 * leaves nothing behind — no charge — and does not disturb the txns around it,
 * including a kept wrong guess. */
static void t_failed_txn_half_way_leaves_nothing(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    one_request(c, 3, rid);
    assert_int_equal(credit(c->s, c->acc, 10 * PRICE, NULL), OTP_OK);
    otp_account_stats before = stats(c->s, c->acc);

    enum { N = 5 };
    otp_txn txns[N];
    tally t;
    tally_init(&t);
    make_send(&txns[0], c->acc, c->key, false, 1);
    make_send(&txns[1], c->acc, c->key, false, 2);
    memcpy(txns[1].u.send.request_id, rid, OTP_ID_SIZE); /* taken */
    make_send(&txns[2], c->acc, c->key, false, 1);
    memcpy(txns[2].u.send.message_id, txns[0].u.send.message_id, OTP_ID_SIZE); /* taken */
    memset(&txns[3], 0, sizeof(txns[3]));
    txns[3].kind = OTP_TXN_VERIFY;
    txns[3].u.verify.account_id = c->acc;
    txns[3].u.verify.test = true; /* one_request()'s is a test key's */
    memcpy(txns[3].u.verify.request_id, rid, OTP_ID_SIZE);
    memset(txns[3].u.verify.code_hash, WRONG, OTP_CODE_HASH_LEN);
    txns[3].u.verify.code_length = 6;
    txns[3].u.verify.now_ms = T0 + 1;
    make_send(&txns[4], c->acc, c->key, false, 1);
    if (B->pause)
        B->pause(c->s, true);
    for (int i = 0; i < N; i++) {
        txns[i].done = tally_done;
        txns[i].user = &t;
        c->s->ops->submit(c->s, &txns[i]);
    }
    if (B->pause)
        B->pause(c->s, false);
    tally_wait(&t, N);
    assert_int_equal(txns[0].err, OTP_OK);
    assert_int_not_equal(txns[1].err, OTP_OK);
    assert_int_not_equal(txns[1].err, OTP_E_UNAVAILABLE);
    assert_int_not_equal(txns[2].err, OTP_OK);
    assert_int_equal(txns[3].err, OTP_E_OTP_INCORRECT);
    assert_int_equal(txns[3].u.verify.attempts_left, 2);
    assert_int_equal(txns[4].err, OTP_OK);
    assert_int_equal(txns[4].u.send.balance_after, before.balance - 2 * PRICE);

    otp_account_stats after = stats(c->s, c->acc);
    assert_int_equal(after.balance, before.balance - 2 * PRICE);
    assert_int_equal(after.requests, before.requests + 2);
    assert_int_equal(after.messages, before.messages + 2);
    assert_int_equal(after.ledger_entries, before.ledger_entries + 2);
    int left;
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 2, &left), OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 1);
    tally_destroy(&t);
}

/* ---- runner -------------------------------------------------------------- */

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

void store_check_upgraded_to_7(otp_store *s)
{
    otp_txn t = {.kind = OTP_TXN_WALLET_CREDIT};
    t.u.wallet_credit.account_id = 1;
    t.u.wallet_credit.amount = 50;
    snprintf(t.u.wallet_credit.reference, OTP_REFERENCE_SIZE, "inv-1");
    t.u.wallet_credit.now_ms = T0;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_false(t.u.wallet_credit.replayed);
    assert_int_equal(t.u.wallet_credit.balance_after, 150);
    int64_t id = t.u.wallet_credit.ledger_id;
    t.u.wallet_credit.now_ms = T0 + 1;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_true(t.u.wallet_credit.replayed);
    assert_int_equal(t.u.wallet_credit.ledger_id, id);
    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, 1, &st), OTP_OK);
    assert_int_equal(st.balance, 150);
    assert_int_equal(st.ledger_sum, 150);
    assert_int_equal(st.ledger_entries, 2);

    uint8_t h[OTP_APIKEY_HASH_LEN];
    memset(h, 0x77, sizeof(h));
    otp_admin_key k;
    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_E_NOT_FOUND);
    memset(&t, 0, sizeof(t));
    t.kind = OTP_TXN_ADMIN_KEY_CREATE;
    snprintf(t.u.admin_key_create.public_id, OTP_ID_SIZE, "adm_v7");
    memcpy(t.u.admin_key_create.hash, h, OTP_APIKEY_HASH_LEN);
    snprintf(t.u.admin_key_create.prefix, sizeof(t.u.admin_key_create.prefix), "otpd_admin_abcd");
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_int_equal(s->ops->admin_key_lookup(s, h, &k), OTP_OK);
    assert_string_equal(k.public_id, "adm_v7");
}

int store_conformance_run(const store_backend *b)
{
    B = b;
    const struct CMUnitTest tests[] = {
        T(t_open_migrate_reopen),
        cmocka_unit_test(t_fresh_without_migrate_refused),
        T(t_old_schema_refused),
        T(t_newer_schema_refused),
        T(t_accounts),
        T(t_keys),
        T(t_wallet_credit),
        T(t_credit_without_reference),
        T(t_credit_reference_replayed),
        T(t_credit_reference_concurrent),
        T(t_admin_keys),
        T(t_admin_keys_apart_from_api_keys),
        T(t_send_charges),
        T(t_send_insufficient_stores_nothing),
        T(t_send_test_key_free),
        T(t_verify_right_code_once),
        T(t_verify_wrong_codes_lock),
        T(t_verify_expired),
        T(t_verify_wrong_length),
        T(t_verify_other_account),
        T(t_verify_other_mode),
        T(t_group_commit_threads),
        T(t_group_commit_mixed_balance),
        T(t_verify_concurrent_attempts),
        T(t_verify_concurrent_right_code),
        T(t_reads_from_threads),
        T(t_outbox_lease),
        T(t_outbox_sent_erases_text),
        T(t_outbox_failed_refunds_once),
        T(t_outbox_requeue),
        T(t_close_drains_queue),
        T(t_close_drains_busy_lane),
        T(t_submit_during_close_refused),
        T(t_acknowledged_is_durable),
        T(t_commit_failure_fails_batch),
        T(t_batch_txns_isolated),
        T(t_failed_txn_half_way_leaves_nothing),
    };
    int failed =
        _cmocka_run_group_tests(b->name, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
    return failed + store_lifecycle_run();
}
