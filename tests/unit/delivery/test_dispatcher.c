/* tests/unit/delivery/test_dispatcher.c — the dispatcher against the real SQLite
 * store: committed sends reach the file provider exactly once with the right
 * text and are marked sent; temporary failures fail over to the next provider
 * and, when nobody takes them, go back to the outbox with backoff; permanent
 * failures, expired requests and undecryptable texts fail (and are refunded);
 * a provider that keeps failing is skipped; wake() and stop() are prompt.
 * Along the way, the counters /metrics shows (delivery/stats.h) move with what
 * happened, by provider.
 *
 * Fake providers are defined here. The message rows are read straight from the
 * SQLite file, because store.h has no call that reads a message back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/seal.h"
#include "delivery/dispatcher.h"
#include "delivery/dlr.h"
#include "delivery/provider.h"
#include "delivery/stats.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/ids.h"

#define CREDIT 100000 /* paise */
#define PRICE 25      /* default price_per_segment */
#define WAIT_MS 10000

/* ---- Fake providers ---------------------------------------------------- */

typedef struct fake {
    otp_provider base;
    _Atomic otp_send_outcome outcome;
    bool ready;
    atomic_int calls;
    atomic_int msgs;
    char last_sender[OTP_SENDER_ID_SIZE]; /* "-" = NULL */
    char last_dlt[OTP_DLT_ID_SIZE];
    int sleep_ms; /* how long each send() takes */
} fake;

static void fake_send(otp_provider *p, const otp_sms *msgs, size_t n, otp_send_result *res)
{
    fake *f = (fake *)p;
    atomic_fetch_add(&f->calls, 1);
    atomic_fetch_add(&f->msgs, (int)n);
    if (f->sleep_ms > 0)
        nanosleep(&(struct timespec){.tv_sec = f->sleep_ms / 1000,
                                     .tv_nsec = (f->sleep_ms % 1000) * 1000000L},
                  NULL);
    otp_send_outcome outcome = atomic_load(&f->outcome);
    if (n > 0) {
        snprintf(f->last_sender, sizeof(f->last_sender), "%s",
                 msgs[0].sender_id ? msgs[0].sender_id : "-");
        snprintf(f->last_dlt, sizeof(f->last_dlt), "%s",
                 msgs[0].dlt_template_id ? msgs[0].dlt_template_id : "-");
    }
    for (size_t i = 0; i < n; i++) {
        res[i] = (otp_send_result){.outcome = outcome};
        if (outcome == OTP_SEND_ACCEPTED)
            snprintf(res[i].provider_message_id, sizeof(res[i].provider_message_id), "gw-%s",
                     msgs[i].message_id);
        else
            snprintf(res[i].error, sizeof(res[i].error), "fake %s",
                     outcome == OTP_SEND_TEMPORARY ? "temporary" : "permanent");
    }
}

static bool fake_ready(otp_provider *p)
{
    return ((fake *)p)->ready;
}

static int fake_create(const otp_config *cfg, const char *section, const otp_dlr_sink *dlr,
                       otp_provider **ret, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: fakes are built by the test", section);
    return -1;
}

static void fake_destroy(otp_provider *p)
{
}

static const otp_provider_ops fake_ops = {
    .type = "fake",
    .create = fake_create,
    .destroy = fake_destroy,
    .send = fake_send,
    .ready = fake_ready,
};

static void fake_init(fake *f, const char *name, otp_send_outcome outcome)
{
    memset(f, 0, sizeof(*f));
    f->base.ops = &fake_ops;
    snprintf(f->base.name, sizeof(f->base.name), "%s", name);
    f->outcome = outcome;
    f->ready = true;
}

/* The delivery counters of provider now (zeros if it never counted). The
 * counters are process-wide: tests compare two reads. */
typedef struct stats_find {
    const char *provider;
    otp_delivery_stats found;
} stats_find;

static void stats_match(const otp_delivery_stats *s, void *ctx)
{
    stats_find *q = ctx;
    if (strcmp(s->provider, q->provider) == 0)
        q->found = *s;
}

static otp_delivery_stats stats_of(const char *provider)
{
    stats_find q = {.provider = provider};
    otp_delivery_stats_each(stats_match, &q);
    return q.found;
}

static uint64_t latency_count(const otp_delivery_stats *s)
{
    uint64_t n = 0;
    for (size_t b = 0; b <= OTP_DELIVERY_LATENCY_BUCKETS; b++)
        n += s->latency[b];
    return n;
}

/* ---- Fixture: a store with one funded account, a file provider ---------- */

typedef struct fx {
    char dir[64];
    char db_path[128];
    char sms_path[128];
    otp_store *store;
    otp_config *cfg;
    otp_provider *file;
    uint8_t key[32];
    int64_t account_id;
    int64_t key_id;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/otpd-test-disp-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db_path, sizeof(f->db_path), "%s/x.db", f->dir);
    snprintf(f->sms_path, sizeof(f->sms_path), "%s/sms.jsonl", f->dir);
    randombytes_buf(f->key, sizeof(f->key));

    char err[256] = "", url[160];
    snprintf(url, sizeof(url), "sqlite:%s", f->db_path);
    otp_store_options opt = {.migrate = true};
    if (otp_store_open(url, &opt, &f->store, err, sizeof(err)))
        fail_msg("otp_store_open: %s", err);

    f->cfg = otp_config_new();
    assert_int_equal(otp_config_set(f->cfg, "data_dir", f->dir, "test", err, sizeof(err)), 0);
    assert_int_equal(
        otp_provider_file_ops.create(f->cfg, "provider.file", NULL, &f->file, err, sizeof(err)), 0);

    int64_t now = otp_now_ms();
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_CREATE};
    otp_id_new("acc_", now, t.u.account_create.public_id);
    snprintf(t.u.account_create.name, sizeof(t.u.account_create.name), "acme");
    t.u.account_create.now_ms = now;
    assert_int_equal(otp_store_exec(f->store, &t), OTP_OK);
    f->account_id = t.u.account_create.ret_id;

    t = (otp_txn){.kind = OTP_TXN_WALLET_CREDIT};
    t.u.wallet_credit =
        (otp_txn_wallet_credit){.account_id = f->account_id, .amount = CREDIT, .now_ms = now};
    assert_int_equal(otp_store_exec(f->store, &t), OTP_OK);

    t = (otp_txn){.kind = OTP_TXN_KEY_CREATE};
    otp_txn_key_create *k = &t.u.key_create;
    k->account_id = f->account_id;
    otp_id_new("key_", now, k->public_id);
    randombytes_buf(k->hash, sizeof(k->hash));
    snprintf(k->prefix, sizeof(k->prefix), "otpd_live_ab");
    snprintf(k->name, sizeof(k->name), "test");
    k->now_ms = now;
    uint8_t hash[OTP_APIKEY_HASH_LEN];
    memcpy(hash, k->hash, sizeof(hash));
    assert_int_equal(otp_store_exec(f->store, &t), OTP_OK);
    otp_key_auth auth;
    assert_int_equal(f->store->ops->key_lookup(f->store, hash, &auth), OTP_OK);
    f->key_id = auth.key_id;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    otp_store_close(f->store);
    otp_provider_file_ops.destroy(f->file);
    otp_config_free(f->cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Fills *t as a live send of text, sealed under seal_key (NULL: the fixture's
 * key) into sealed (strlen(text) + OTP_SEAL_OVERHEAD bytes), whose request
 * expires in expires_in_ms. */
static void fill_send(fx *f, otp_txn *t, const char *text, int64_t expires_in_ms,
                      const uint8_t *seal_key, uint8_t *sealed)
{
    int64_t now = otp_now_ms();
    *t = (otp_txn){.kind = OTP_TXN_SEND};
    otp_txn_send *s = &t->u.send;
    s->account_id = f->account_id;
    s->key_id = f->key_id;
    otp_id_new("req_", now, s->request_id);
    otp_id_new("msg_", now, s->message_id);
    snprintf(s->phone, sizeof(s->phone), "+919876543210");
    randombytes_buf(s->code_hash, sizeof(s->code_hash));
    s->code_length = 6;
    s->max_attempts = 3;
    s->expires_in_s = (int)(expires_in_ms / 1000);
    s->now_ms = now;
    s->expires_at_ms = now + expires_in_ms;
    s->segments = 1;
    size_t len = strlen(text);
    otp_seal(seal_key ? seal_key : f->key, s->message_id, text, len, sealed);
    s->sealed_text = sealed;
    s->sealed_text_len = len + OTP_SEAL_OVERHEAD;
}

/* Commits one send of text (sealed under seal_key) whose request expires in
 * expires_in_ms; writes the message's public id into msg_id. */
static void send_one_from(fx *f, const char *text, int64_t expires_in_ms, const uint8_t *seal_key,
                          const char *sender, const char *dlt, char msg_id[OTP_ID_SIZE])
{
    otp_txn t;
    uint8_t *sealed = malloc(strlen(text) + OTP_SEAL_OVERHEAD);
    assert_non_null(sealed);
    fill_send(f, &t, text, expires_in_ms, seal_key, sealed);
    otp_txn_send *s = &t.u.send;
    if (sender)
        snprintf(s->sender_id, sizeof(s->sender_id), "%s", sender);
    if (dlt)
        snprintf(s->dlt_template_id, sizeof(s->dlt_template_id), "%s", dlt);
    assert_int_equal(otp_store_exec(f->store, &t), OTP_OK);
    free(sealed);
    snprintf(msg_id, OTP_ID_SIZE, "%s", s->message_id);
}

static void send_one(fx *f, const char *text, int64_t expires_in_ms, const uint8_t *seal_key,
                     char msg_id[OTP_ID_SIZE])
{
    send_one_from(f, text, expires_in_ms, seal_key, NULL, NULL, msg_id);
}

/* Commits a send of text asking for a hand-off lease of lease_ms into *t (the
 * store must grant it); sealed (OTP_SEAL_OVERHEAD bytes more than text) holds
 * its sealed text. */
static void send_leased(fx *f, const char *text, int64_t lease_ms, otp_txn *t, uint8_t *sealed)
{
    fill_send(f, t, text, 600000, NULL, sealed);
    t->u.send.lease_ms = lease_ms;
    assert_int_equal(otp_store_exec(f->store, t), OTP_OK);
    assert_true(t->u.send.leased);
}

typedef struct row {
    char status[16];
    char provider[32];
    char provider_message_id[128];
    char error[256];
    bool has_text;
    int attempts;
    int64_t next_attempt_at;
} row;

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t size)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(out, size, "%s", v ? (const char *)v : "");
}

/* Reads message msg_id's row straight from the database file. */
static void read_row(fx *f, const char *msg_id, row *ret)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT status, provider, provider_message_id, error,"
                                        " sealed_text IS NOT NULL, attempts, next_attempt_at"
                                        " FROM messages WHERE public_id = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    copy_col(st, 0, ret->status, sizeof(ret->status));
    copy_col(st, 1, ret->provider, sizeof(ret->provider));
    copy_col(st, 2, ret->provider_message_id, sizeof(ret->provider_message_id));
    copy_col(st, 3, ret->error, sizeof(ret->error));
    ret->has_text = sqlite3_column_int(st, 4) != 0;
    ret->attempts = sqlite3_column_int(st, 5);
    ret->next_attempt_at = sqlite3_column_int64(st, 6);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void pause_ms(int ms)
{
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L}, NULL);
}

/* Waits until message msg_id's status is status; fails the test after WAIT_MS. */
static void wait_status(fx *f, const char *msg_id, const char *status)
{
    row r;
    for (int waited = 0; waited < WAIT_MS; waited += 5) {
        read_row(f, msg_id, &r);
        if (strcmp(r.status, status) == 0)
            return;
        pause_ms(5);
    }
    fail_msg("message %s is %s, not %s", msg_id, r.status, status);
}

/* The lines of the sms file as parsed JSON objects (an array; caller decrefs). */
static json_t *sms_lines(fx *f)
{
    json_t *arr = json_array();
    FILE *fp = fopen(f->sms_path, "r");
    if (!fp)
        return arr;
    char line[4096];
    while (fgets(line, sizeof(line), fp)) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!o)
            fail_msg("bad line in sms file: %s", line);
        json_array_append_new(arr, o);
    }
    fclose(fp);
    return arr;
}

/* How many lines of the sms file carry msg_id; *ret_text gets the last one's text. */
static int count_lines(fx *f, const char *msg_id, char *ret_text, size_t size)
{
    json_t *arr = sms_lines(f);
    int n = 0;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "messageId")), msg_id) == 0) {
            n++;
            if (ret_text)
                snprintf(ret_text, size, "%s", json_string_value(json_object_get(o, "text")));
        }
    }
    json_decref(arr);
    return n;
}

static int64_t balance(fx *f)
{
    otp_account a;
    assert_int_equal(f->store->ops->account_get(f->store, f->account_id, &a), OTP_OK);
    return a.balance;
}

/* Claims whatever is due at now + ahead_ms (the dispatcher must be stopped). */
static size_t claim_due(fx *f, int64_t ahead_ms, int *ret_attempts)
{
    otp_txn t = {.kind = OTP_TXN_OUTBOX_CLAIM};
    t.u.outbox_claim =
        (otp_txn_outbox_claim){.now_ms = otp_now_ms() + ahead_ms, .lease_ms = 1000, .max = 100};
    assert_int_equal(otp_store_exec(f->store, &t), OTP_OK);
    size_t n = t.u.outbox_claim.n;
    if (n > 0 && ret_attempts)
        *ret_attempts = t.u.outbox_claim.msgs[0].attempts;
    otp_outbox_msgs_free(t.u.outbox_claim.msgs, n);
    return n;
}

static otp_dispatcher *start(fx *f, otp_provider **providers, size_t n, size_t batch,
                             int64_t idle_ms)
{
    otp_dispatcher_options opt = {.lease_ms = 30000, .batch = batch, .idle_ms = idle_ms};
    otp_dispatcher *d = NULL;
    assert_int_equal(otp_dispatcher_start(f->store, providers, n, f->key, &opt, &d), 0);
    assert_non_null(d);
    return d;
}

/* ---- Tests ------------------------------------------------------------- */

/* More messages than one batch: each reaches the file once, with its text. */
static void test_sends_each_once(void **state)
{
    fx *f = *state;
    enum { N = 10 };
    char ids[N][OTP_ID_SIZE], text[64];
    for (int i = 0; i < N; i++) {
        snprintf(text, sizeof(text), "Your code is %06d", 100000 + i);
        send_one(f, text, 600000, NULL, ids[i]);
    }
    assert_int_equal(balance(f), CREDIT - N * PRICE);

    otp_provider *providers[] = {f->file};
    otp_dispatcher *d = start(f, providers, 1, 4, 20);
    assert_true(otp_dispatcher_ready(d));
    for (int i = 0; i < N; i++)
        wait_status(f, ids[i], "sent");
    otp_dispatcher_stop(d);

    for (int i = 0; i < N; i++) {
        char got[128] = "";
        snprintf(text, sizeof(text), "Your code is %06d", 100000 + i);
        assert_int_equal(count_lines(f, ids[i], got, sizeof(got)), 1);
        assert_string_equal(got, text);
        row r;
        read_row(f, ids[i], &r);
        assert_string_equal(r.provider, "file");
        assert_false(r.has_text); /* erased once accepted */
    }
    json_t *arr = sms_lines(f);
    assert_int_equal(json_array_size(arr), N);
    json_decref(arr);
    assert_int_equal(claim_due(f, 86400000, NULL), 0);
    assert_int_equal(balance(f), CREDIT - N * PRICE);
}

/* TEMPORARY from the first provider: the next one in order takes the message. */
static void test_failover(void **state)
{
    fx *f = *state;
    fake flaky, down, gw;
    fake_init(&flaky, "flaky", OTP_SEND_TEMPORARY);
    fake_init(&down, "down", OTP_SEND_ACCEPTED);
    down.ready = false;
    fake_init(&gw, "gw", OTP_SEND_ACCEPTED);
    char a[OTP_ID_SIZE], b[OTP_ID_SIZE];
    send_one(f, "code 111111", 600000, NULL, a);
    send_one(f, "code 222222", 600000, NULL, b);

    otp_delivery_stats flaky0 = stats_of("flaky"), gw0 = stats_of("gw"), down0 = stats_of("down");
    otp_provider *providers[] = {&down.base, &flaky.base, &gw.base, f->file};
    otp_dispatcher *d = start(f, providers, 4, 64, 20);
    wait_status(f, a, "sent");
    wait_status(f, b, "sent");
    otp_dispatcher_stop(d);
    otp_delivery_stats flaky1 = stats_of("flaky"), gw1 = stats_of("gw"), down1 = stats_of("down");
    assert_int_equal(flaky1.temporary - flaky0.temporary, 2);
    assert_int_equal(flaky1.handled[OTP_MSG_SENT] - flaky0.handled[OTP_MSG_SENT], 0);
    assert_int_equal(gw1.handled[OTP_MSG_SENT] - gw0.handled[OTP_MSG_SENT], 2);
    assert_int_equal(gw1.temporary - gw0.temporary, 0);
    assert_int_equal(latency_count(&gw1) - latency_count(&gw0), 2);
    assert_string_equal(down1.provider, "down"); /* listed, though never asked */
    assert_int_equal(down1.handled[OTP_MSG_SENT] - down0.handled[OTP_MSG_SENT], 0);
    assert_int_equal(down1.temporary - down0.temporary, 0);

    assert_int_equal(atomic_load(&down.calls), 0);
    assert_int_equal(atomic_load(&flaky.msgs), 2);
    assert_int_equal(atomic_load(&gw.msgs), 2);
    row r;
    read_row(f, a, &r);
    assert_string_equal(r.provider, "gw");
    char want[64];
    snprintf(want, sizeof(want), "gw-%s", a);
    assert_string_equal(r.provider_message_id, want);
    assert_int_equal(count_lines(f, a, NULL, 0), 0);
}

/* The file provider as the fallback: the text in the file is the right one. */
static void test_failover_to_file(void **state)
{
    fx *f = *state;
    fake flaky;
    fake_init(&flaky, "flaky", OTP_SEND_TEMPORARY);
    char a[OTP_ID_SIZE], got[64];
    send_one(f, "Your code is 424242", 600000, NULL, a);
    otp_provider *providers[] = {&flaky.base, f->file};
    otp_dispatcher *d = start(f, providers, 2, 64, 20);
    wait_status(f, a, "sent");
    otp_dispatcher_stop(d);
    assert_int_equal(atomic_load(&flaky.msgs), 1);
    assert_int_equal(count_lines(f, a, got, sizeof(got)), 1);
    assert_string_equal(got, "Your code is 424242");
    row r;
    read_row(f, a, &r);
    assert_string_equal(r.provider, "file");
}

/* PERMANENT: failed at once, never offered to the next provider, refunded. */
static void test_permanent(void **state)
{
    fx *f = *state;
    fake reject;
    fake_init(&reject, "reject", OTP_SEND_PERMANENT);
    char a[OTP_ID_SIZE];
    send_one(f, "code 333333", 600000, NULL, a);
    otp_provider *providers[] = {&reject.base, f->file};
    otp_dispatcher *d = start(f, providers, 2, 64, 20);
    wait_status(f, a, "failed");
    otp_dispatcher_stop(d);

    row r;
    read_row(f, a, &r);
    assert_string_equal(r.provider, "reject");
    assert_string_equal(r.error, "fake permanent");
    assert_false(r.has_text);
    assert_int_equal(count_lines(f, a, NULL, 0), 0);
    assert_int_equal(claim_due(f, 86400000, NULL), 0);
    assert_int_equal(balance(f), CREDIT);
}

/* Nobody accepts: back to the outbox, due again within the first backoff (1 s). */
static void test_all_temporary_requeues(void **state)
{
    fx *f = *state;
    fake flaky;
    fake_init(&flaky, "flaky", OTP_SEND_TEMPORARY);
    char a[OTP_ID_SIZE];
    send_one(f, "code 444444", 600000, NULL, a);
    otp_delivery_stats s0 = stats_of("flaky");
    otp_provider *providers[] = {&flaky.base};
    /* A long idle: after its first round the thread sleeps until stopped. */
    otp_dispatcher *d = start(f, providers, 1, 64, 60000);
    for (int waited = 0; atomic_load(&flaky.msgs) == 0 && waited < WAIT_MS; waited += 5)
        pause_ms(5);
    otp_dispatcher_stop(d); /* reports the batch in hand */
    assert_int_equal(atomic_load(&flaky.msgs), 1);
    otp_delivery_stats s1 = stats_of("flaky");
    assert_int_equal(s1.temporary - s0.temporary, 1);
    assert_int_equal(s1.handled[OTP_MSG_QUEUED] - s0.handled[OTP_MSG_QUEUED], 1);

    row r;
    read_row(f, a, &r);
    assert_string_equal(r.status, "queued");
    assert_string_equal(r.error, "fake temporary");
    assert_true(r.has_text);
    assert_int_equal(r.attempts, 1);
    assert_true(r.next_attempt_at <= otp_now_ms() + 1000);
    int attempts = 0;
    assert_int_equal(claim_due(f, 1001, &attempts), 1);
    assert_int_equal(attempts, 2);
    assert_int_equal(balance(f), CREDIT - PRICE);
}

/* No provider usable at all: back to the outbox, counted under no provider. */
static void test_none_usable_requeues(void **state)
{
    fx *f = *state;
    fake down;
    fake_init(&down, "down", OTP_SEND_ACCEPTED);
    down.ready = false;
    char a[OTP_ID_SIZE];
    send_one(f, "code 454545", 600000, NULL, a);
    otp_delivery_stats s0 = stats_of(OTP_DELIVERY_NO_PROVIDER);
    otp_provider *providers[] = {&down.base};
    otp_dispatcher *d = start(f, providers, 1, 64, 60000);
    otp_delivery_stats s1 = s0;
    for (int waited = 0;
         s1.handled[OTP_MSG_QUEUED] == s0.handled[OTP_MSG_QUEUED] && waited < WAIT_MS;
         waited += 5) {
        pause_ms(5);
        s1 = stats_of(OTP_DELIVERY_NO_PROVIDER);
    }
    otp_dispatcher_stop(d);
    assert_int_equal(s1.handled[OTP_MSG_QUEUED] - s0.handled[OTP_MSG_QUEUED], 1);
    assert_int_equal(atomic_load(&down.calls), 0);
    row r;
    read_row(f, a, &r);
    assert_string_equal(r.status, "queued");
    assert_string_equal(r.error, "no provider available");
}

/* A provider whose whole batches keep failing is skipped after a few. */
static void test_circuit_breaker(void **state)
{
    fx *f = *state;
    enum { N = 6 };
    fake flaky;
    fake_init(&flaky, "flaky", OTP_SEND_TEMPORARY);
    char ids[N][OTP_ID_SIZE];
    for (int i = 0; i < N; i++)
        send_one(f, "code 555555", 600000, NULL, ids[i]);
    otp_provider *providers[] = {&flaky.base, f->file};
    otp_dispatcher *d = start(f, providers, 2, 1, 20);
    for (int i = 0; i < N; i++)
        wait_status(f, ids[i], "sent");
    otp_dispatcher_stop(d);
    assert_int_equal(atomic_load(&flaky.calls), 3);
    json_t *arr = sms_lines(f);
    assert_int_equal(json_array_size(arr), N);
    json_decref(arr);
}

/* Unsent when its request expired: failed without being offered, refunded. */
static void test_expired(void **state)
{
    fx *f = *state;
    fake gw;
    fake_init(&gw, "gw", OTP_SEND_ACCEPTED);
    char a[OTP_ID_SIZE];
    send_one(f, "code 666666", 1000, NULL, a);
    otp_clock_advance_ms(1500);
    otp_delivery_stats none0 = stats_of(OTP_DELIVERY_NO_PROVIDER);
    otp_provider *providers[] = {&gw.base};
    otp_dispatcher *d = start(f, providers, 1, 64, 20);
    wait_status(f, a, "failed");
    otp_dispatcher_stop(d);
    assert_int_equal(atomic_load(&gw.calls), 0);
    otp_delivery_stats none1 = stats_of(OTP_DELIVERY_NO_PROVIDER);
    assert_int_equal(none1.handled[OTP_MSG_FAILED] - none0.handled[OTP_MSG_FAILED], 1);
    row r;
    read_row(f, a, &r);
    assert_string_equal(r.error, "expired before it could be sent");
    assert_false(r.has_text);
    assert_int_equal(balance(f), CREDIT);
}

/* Sealed under another key (or tampered): failed, never sent. */
static void test_cannot_decrypt(void **state)
{
    fx *f = *state;
    uint8_t other[32];
    randombytes_buf(other, sizeof(other));
    char bad[OTP_ID_SIZE], good[OTP_ID_SIZE];
    send_one(f, "code 777777", 600000, other, bad);
    send_one(f, "code 888888", 600000, NULL, good);
    otp_provider *providers[] = {f->file};
    otp_dispatcher *d = start(f, providers, 1, 64, 20);
    wait_status(f, bad, "failed");
    wait_status(f, good, "sent");
    otp_dispatcher_stop(d);
    row r;
    read_row(f, bad, &r);
    assert_string_equal(r.error, "cannot decrypt");
    assert_int_equal(count_lines(f, bad, NULL, 0), 0);
    assert_int_equal(count_lines(f, good, NULL, 0), 1);
    assert_int_equal(balance(f), CREDIT - PRICE);
}

/* With a one-minute idle, only wake() can explain a prompt send; stop() does
 * not wait for the idle either. */
static void test_wake_and_stop(void **state)
{
    fx *f = *state;
    fake off;
    fake_init(&off, "off", OTP_SEND_ACCEPTED);
    off.ready = false;
    otp_provider *none[] = {&off.base};
    otp_dispatcher *d = start(f, none, 1, 64, 60000);
    assert_false(otp_dispatcher_ready(d));
    otp_dispatcher_stop(d);
    otp_dispatcher_stop(NULL);

    otp_provider *providers[] = {f->file};
    d = start(f, providers, 1, 64, 60000);
    pause_ms(200); /* the first (empty) round is over; the thread sleeps */
    char a[OTP_ID_SIZE];
    send_one(f, "code 999999", 600000, NULL, a);
    int64_t t0 = otp_mono_us();
    otp_dispatcher_wake(d);
    otp_dispatcher_wake(d);
    wait_status(f, a, "sent");
    assert_true(otp_mono_us() - t0 < 5 * 1000000LL);
    assert_int_equal(count_lines(f, a, NULL, 0), 1);
    t0 = otp_mono_us();
    otp_dispatcher_stop(d);
    assert_true(otp_mono_us() - t0 < 5 * 1000000LL);
}

/* A send handed over is sent from memory, once, without a claim: long before
 * its lease (30 s) or the idle poll (60 s) could have brought it back. */
static void test_handoff_sent_once(void **state)
{
    fx *f = *state;
    otp_provider *providers[] = {f->file};
    otp_dispatcher *d = start(f, providers, 1, 64, 60000);
    pause_ms(200); /* the first (empty) round is over; the thread sleeps */
    assert_int_equal(otp_dispatcher_handoff_lease(d), 30000);

    otp_txn t;
    uint8_t sealed[64];
    send_leased(f, "code 424242", otp_dispatcher_handoff_lease(d), &t, sealed);
    row r;
    read_row(f, t.u.send.message_id, &r);
    assert_string_equal(r.status, "sending");
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.next_attempt_at, t.u.send.now_ms + 30000);
    int64_t t0 = otp_mono_us();
    otp_dispatcher_handoff(d, &t.u.send);
    wait_status(f, t.u.send.message_id, "sent");
    assert_true(otp_mono_us() - t0 < 5 * 1000000LL);
    otp_dispatcher_stop(d);

    char got[64] = "";
    assert_int_equal(count_lines(f, t.u.send.message_id, got, sizeof(got)), 1);
    assert_string_equal(got, "code 424242");
    read_row(f, t.u.send.message_id, &r);
    assert_int_equal(r.attempts, 1); /* never claimed */
    assert_false(r.has_text);
    assert_int_equal(claim_due(f, 86400000, NULL), 0);
}

/* A hand-off with less than half its lease left when the thread gets to it is
 * dropped, not sent: the outbox claims it once its lease is over, and it is
 * sent once (a second attempt, the claim's). Here the store's lease is 1 s
 * and the dispatcher's 30 s, so it is dropped at once. */
static void test_handoff_late_is_claimed_once(void **state)
{
    fx *f = *state;
    otp_provider *providers[] = {f->file};
    otp_dispatcher *d = start(f, providers, 1, 64, 50);
    otp_txn t;
    uint8_t sealed[64];
    send_leased(f, "code 515151", 1000, &t, sealed);
    otp_dispatcher_handoff(d, &t.u.send);
    pause_ms(300);
    assert_int_equal(count_lines(f, t.u.send.message_id, NULL, 0), 0);
    wait_status(f, t.u.send.message_id, "sent");
    otp_dispatcher_stop(d);
    assert_true(otp_now_ms() >= t.u.send.now_ms + 1000);
    assert_int_equal(count_lines(f, t.u.send.message_id, NULL, 0), 1);
    row r;
    read_row(f, t.u.send.message_id, &r);
    assert_int_equal(r.attempts, 2);
}

/* stop() puts the hand-offs the thread did not get to back in the outbox, due
 * at once; the batch in hand is finished first. */
static void test_stop_requeues_handoffs(void **state)
{
    fx *f = *state;
    fake slow;
    fake_init(&slow, "slow", OTP_SEND_ACCEPTED);
    slow.sleep_ms = 500;
    otp_provider *providers[] = {&slow.base};
    otp_dispatcher *d = start(f, providers, 1, 64, 60000);
    pause_ms(200);
    otp_txn a, b;
    uint8_t sealed_a[64], sealed_b[64];
    send_leased(f, "code 111111", 30000, &a, sealed_a);
    otp_dispatcher_handoff(d, &a.u.send);
    for (int waited = 0; atomic_load(&slow.calls) == 0 && waited < WAIT_MS; waited += 5)
        pause_ms(5);
    assert_int_equal(atomic_load(&slow.calls), 1); /* a is with the provider */
    send_leased(f, "code 222222", 30000, &b, sealed_b);
    otp_dispatcher_handoff(d, &b.u.send);
    otp_dispatcher_stop(d);

    assert_int_equal(atomic_load(&slow.msgs), 1);
    row r;
    read_row(f, a.u.send.message_id, &r);
    assert_string_equal(r.status, "sent");
    read_row(f, b.u.send.message_id, &r);
    assert_string_equal(r.status, "queued");
    assert_int_equal(r.attempts, 1);
    assert_true(r.next_attempt_at <= otp_now_ms());
    int attempts = 0;
    assert_int_equal(claim_due(f, 0, &attempts), 1);
    assert_int_equal(attempts, 2);
}

/* The breaker opens after breaker_threshold failing batches, probes after the
 * cool-down, doubles the pause when the probe fails, closes when one succeeds;
 * a provider whose breaker is open does not count as ready. */
static void test_breaker_probe(void **state)
{
    fx *f = *state;
    fake dead;
    fake_init(&dead, "dead", OTP_SEND_TEMPORARY);
    dead.base.breaker_threshold = 2;
    dead.base.breaker_cooldown_ms = 300;
    otp_provider *providers[] = {&dead.base, f->file};
    otp_dispatcher *d = start(f, providers, 2, 1, 20);
    char id[OTP_ID_SIZE];
    for (int i = 0; i < 2; i++) {
        send_one(f, "code 1", 600000, NULL, id);
        otp_dispatcher_wake(d);
        wait_status(f, id, "sent");
    }
    assert_int_equal(atomic_load(&dead.calls), 2);
    send_one(f, "code 2", 600000, NULL, id); /* open: skipped */
    otp_dispatcher_wake(d);
    wait_status(f, id, "sent");
    assert_int_equal(atomic_load(&dead.calls), 2);
    assert_true(otp_dispatcher_ready(d)); /* the file provider still is */

    pause_ms(350); /* past the cool-down: the next batch is the probe */
    send_one(f, "code 3", 600000, NULL, id);
    otp_dispatcher_wake(d);
    wait_status(f, id, "sent");
    assert_int_equal(atomic_load(&dead.calls), 3);
    pause_ms(350); /* the failed probe doubled the pause to 600 ms */
    send_one(f, "code 4", 600000, NULL, id);
    otp_dispatcher_wake(d);
    wait_status(f, id, "sent");
    assert_int_equal(atomic_load(&dead.calls), 3);

    atomic_store(&dead.outcome, OTP_SEND_ACCEPTED);
    pause_ms(400);
    send_one(f, "code 5", 600000, NULL, id);
    otp_dispatcher_wake(d);
    wait_status(f, id, "sent");
    assert_int_equal(atomic_load(&dead.calls), 4);
    row r;
    read_row(f, id, &r);
    assert_string_equal(r.provider, "dead"); /* the probe succeeded: closed */
    send_one(f, "code 6", 600000, NULL, id);
    otp_dispatcher_wake(d);
    wait_status(f, id, "sent");
    assert_int_equal(atomic_load(&dead.calls), 5);
    otp_dispatcher_stop(d);
}

static void test_ready_follows_breaker(void **state)
{
    fx *f = *state;
    fake dead;
    fake_init(&dead, "dead", OTP_SEND_TEMPORARY);
    dead.base.breaker_threshold = 1;
    dead.base.breaker_cooldown_ms = 60000;
    otp_provider *providers[] = {&dead.base};
    otp_dispatcher *d = start(f, providers, 1, 8, 20);
    assert_true(otp_dispatcher_ready(d));
    assert_ptr_equal(otp_dispatcher_provider(d, "dead"), &dead.base);
    assert_null(otp_dispatcher_provider(d, "alive"));
    assert_null(otp_dispatcher_provider(d, NULL));
    char id[OTP_ID_SIZE];
    send_one(f, "code 7", 600000, NULL, id);
    otp_dispatcher_wake(d);
    for (int waited = 0; atomic_load(&dead.calls) < 1 && waited < WAIT_MS; waited += 5)
        pause_ms(5);
    pause_ms(20);
    assert_false(otp_dispatcher_ready(d)); /* its only provider's breaker is open */
    otp_dispatcher_stop(d);
}

/* A template's sender id and DLT template id reach the provider. */
static void test_sender_and_dlt(void **state)
{
    fx *f = *state;
    fake gw;
    fake_init(&gw, "gw", OTP_SEND_ACCEPTED);
    otp_provider *providers[] = {&gw.base};
    otp_dispatcher *d = start(f, providers, 1, 8, 20);
    char id[OTP_ID_SIZE];
    send_one_from(f, "code 8", 600000, NULL, "ACMEIN", "1107160000000000001", id);
    otp_dispatcher_wake(d);
    wait_status(f, id, "sent");
    assert_string_equal(gw.last_sender, "ACMEIN");
    assert_string_equal(gw.last_dlt, "1107160000000000001");
    send_one(f, "code 9", 600000, NULL, id);
    otp_dispatcher_wake(d);
    wait_status(f, id, "sent");
    assert_string_equal(gw.last_sender, "-");
    assert_string_equal(gw.last_dlt, "-");
    otp_dispatcher_stop(d);
}

typedef struct dlr_wait {
    otp_dlr r;
    atomic_bool done;
} dlr_wait;

static void dlr_done(otp_dlr *r)
{
    atomic_store(&((dlr_wait *)r->user)->done, true);
}

static otp_err report(fx *f, const char *provider, const char *id, otp_dlr_status st,
                      char *ret_message_id)
{
    dlr_wait w = {0};
    snprintf(w.r.provider, sizeof(w.r.provider), "%s", provider);
    snprintf(w.r.provider_message_id, sizeof(w.r.provider_message_id), "%s", id);
    w.r.status = st;
    snprintf(w.r.error, sizeof(w.r.error), "%s", st == OTP_DLR_DELIVERED ? "" : "test");
    w.r.done = dlr_done;
    w.r.user = &w;
    otp_dlr_submit(f->store, &w.r);
    for (int waited = 0; !atomic_load(&w.done) && waited < WAIT_MS; waited++)
        pause_ms(1);
    assert_true(atomic_load(&w.done));
    if (ret_message_id)
        snprintf(ret_message_id, OTP_ID_SIZE, "%s", w.r.message_id);
    return w.r.err;
}

/* Delivery reports through delivery/dlr.c: matched by (provider, gateway id);
 * a failure reported twice is refunded once; an unknown id is not found. */
static void test_delivery_reports(void **state)
{
    fx *f = *state;
    fake gw;
    fake_init(&gw, "gw", OTP_SEND_ACCEPTED);
    otp_provider *providers[] = {&gw.base};
    otp_dispatcher *d = start(f, providers, 1, 8, 20);
    char a[OTP_ID_SIZE], b[OTP_ID_SIZE], got[OTP_ID_SIZE], gwid[64];
    send_one(f, "code 10", 600000, NULL, a);
    send_one(f, "code 11", 600000, NULL, b);
    otp_dispatcher_wake(d);
    wait_status(f, a, "sent");
    wait_status(f, b, "sent");
    otp_dispatcher_stop(d);

    snprintf(gwid, sizeof(gwid), "gw-%s", a);
    assert_int_equal(report(f, "gw", gwid, OTP_DLR_DELIVERED, got), OTP_OK);
    assert_string_equal(got, a);
    wait_status(f, a, "delivered");

    int64_t before = balance(f);
    snprintf(gwid, sizeof(gwid), "gw-%s", b);
    assert_int_equal(report(f, "gw", gwid, OTP_DLR_FAILED, got), OTP_OK);
    wait_status(f, b, "failed");
    assert_int_equal(balance(f), before + PRICE);
    report(f, "gw", gwid, OTP_DLR_FAILED, NULL);
    assert_int_equal(balance(f), before + PRICE); /* refunded once */

    assert_int_equal(report(f, "gw", "gw-nope", OTP_DLR_DELIVERED, NULL), OTP_E_MESSAGE_NOT_FOUND);
    assert_int_equal(report(f, "other", gwid, OTP_DLR_DELIVERED, NULL), OTP_E_MESSAGE_NOT_FOUND);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sends_each_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover_to_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_temporary_requeues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_none_usable_requeues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_circuit_breaker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cannot_decrypt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wake_and_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handoff_sent_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handoff_late_is_claimed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_requeues_handoffs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaker_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_follows_breaker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sender_and_dlt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_reports, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
