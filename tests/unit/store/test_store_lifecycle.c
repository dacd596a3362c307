/* tests/unit/store/test_store_lifecycle.c — the store conformance suite, part
 * two: the OTP lifecycle of issue 3, through store.h only (plus plain SQL where
 * store.h cannot read something back).
 *
 * Idempotency (replay does nothing, another body is refused, a failure is not
 * remembered, duplicates in one batch and from many threads make one request);
 * resend (every refusal in its documented order and with nothing written, then
 * every effect of a success: the hash, the expiry, the attempts, the charge,
 * superseded messages refunded); cancel; account settings; templates; delivery
 * reports (monotonic, refunded once); purge (old rows gone, recent and the
 * ledger kept); the new reads; and a randomized mix from many threads after
 * which the balance is still the ledger's sum. Times are injected.
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

#include "conformance_fixture.h"

#define NEW 0xCC   /* code hash bytes of a resent (rotated) code */
#define COOL 30000 /* resend cooldown, ms */

/* ---- helpers --------------------------------------------------------------- */

static void idem_set(otp_idem *idem, const char *key, uint8_t fp, const char *response)
{
    memset(idem, 0, sizeof(*idem));
    idem->use = true;
    snprintf(idem->key, sizeof(idem->key), "%s", key);
    memset(idem->fingerprint, fp, sizeof(idem->fingerprint));
    idem->response = response;
    idem->status = 201;
}

/* Fills t as a RESEND of rid at now (rotate to NEW unless !rotate). */
static void make_resend(otp_txn *t, int64_t acc, int64_t key, bool test, const char *rid,
                        int64_t now, bool rotate, int segments)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_RESEND;
    otp_txn_resend *r = &t->u.resend;
    r->account_id = acc;
    r->key_id = key;
    r->test = test;
    snprintf(r->request_id, sizeof(r->request_id), "%s", rid);
    new_id("msg_", r->message_id);
    r->rotate = rotate;
    memset(r->code_hash, NEW, sizeof(r->code_hash));
    r->now_ms = now;
    r->cooldown_ms = COOL;
    r->max_resends = 3;
    r->segments = segments;
    r->sealed_text = sealed_text;
    r->sealed_text_len = sizeof(sealed_text) - 1;
}

static otp_err resend(ctx *c, const char *rid, int64_t now, otp_txn *t)
{
    make_resend(t, c->acc, c->key, false, rid, now, true, 1);
    return otp_store_exec(c->s, t);
}

/* One live send of 1 segment at T0; its ids go to rid and mid (may be NULL). */
static void live_send(ctx *c, char rid[OTP_ID_SIZE], char mid[OTP_ID_SIZE])
{
    otp_txn t;
    make_send(&t, c->acc, c->key, false, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    if (rid)
        memcpy(rid, t.u.send.request_id, OTP_ID_SIZE);
    if (mid)
        memcpy(mid, t.u.send.message_id, OTP_ID_SIZE);
}

static otp_err cancel(ctx *c, const char *rid, int64_t now)
{
    otp_txn t = {.kind = OTP_TXN_CANCEL};
    t.u.cancel.account_id = c->acc;
    snprintf(t.u.cancel.request_id, OTP_ID_SIZE, "%s", rid);
    t.u.cancel.now_ms = now;
    return otp_store_exec(c->s, &t);
}

static otp_request_info get_request(ctx *c, const char *rid)
{
    otp_request_info r;
    assert_int_equal(c->s->ops->request_get(c->s, c->acc, rid, &r), OTP_OK);
    return r;
}

static otp_message_info get_message(ctx *c, const char *mid)
{
    otp_message_info m;
    assert_int_equal(c->s->ops->message_get(c->s, c->acc, mid, &m, NULL, NULL), OTP_OK);
    return m;
}

COLLECT(otp_message_info, msg)
COLLECT(otp_message_event, event)
COLLECT(otp_ledger_entry, ledger)
COLLECT(otp_template, tpl)

static msg_seen messages_of(ctx *c, const char *rid)
{
    msg_seen seen = {0};
    assert_int_equal(c->s->ops->request_messages(c->s, c->acc, rid, on_msg, &seen), OTP_OK);
    return seen;
}

static event_seen events_of(ctx *c, const char *mid)
{
    event_seen seen = {0};
    otp_message_info m;
    assert_int_equal(c->s->ops->message_get(c->s, c->acc, mid, &m, on_event, &seen), OTP_OK);
    assert_string_equal(m.public_id, mid);
    return seen;
}

static otp_key_auth lookup(ctx *c, uint8_t hash_byte)
{
    uint8_t h[OTP_APIKEY_HASH_LEN];
    otp_key_auth a;
    memset(h, hash_byte, sizeof(h));
    assert_int_equal(c->s->ops->key_lookup(c->s, h, &a), OTP_OK);
    return a;
}

/* Claims every due message at now and reports each as status. */
static void claim_all_and_report(ctx *c, int64_t now, otp_msg_status status)
{
    otp_txn t;
    assert_int_equal(claim(c->s, now, 1000, 100, &t), OTP_OK);
    for (size_t i = 0; i < t.u.outbox_claim.n; i++)
        assert_int_equal(report(c->s, t.u.outbox_claim.msgs[i].id, status, now + 1, 0), OTP_OK);
    claim_free(&t);
}

static otp_err dlr(ctx *c, const char *provider, const char *pmid, otp_msg_status status,
                   int64_t now, char ret_mid[OTP_ID_SIZE])
{
    otp_txn t = {.kind = OTP_TXN_DELIVERY_REPORT};
    otp_txn_delivery_report *d = &t.u.delivery_report;
    snprintf(d->provider, sizeof(d->provider), "%s", provider);
    snprintf(d->provider_message_id, sizeof(d->provider_message_id), "%s", pmid);
    d->status = status;
    if (status != OTP_MSG_DELIVERED)
        snprintf(d->error, sizeof(d->error), "handset said no");
    d->now_ms = now;
    otp_err e = otp_store_exec(c->s, &t);
    if (ret_mid)
        memcpy(ret_mid, d->message_id, OTP_ID_SIZE);
    return e;
}

/* The internal id of a message, as the outbox hands it out. */
static int64_t msg_rowid(ctx *c, const char *mid)
{
    return raw_int(c, "SELECT id FROM messages WHERE public_id = '%s'", mid);
}

/* ---- idempotency ------------------------------------------------------------ */

static void t_idem_replay(void **state)
{
    ctx *c = *state;
    otp_txn t;
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);

    make_send(&t, c->acc, c->key, false, 1);
    idem_set(&t.u.send.idem, "order-1", 0x11, "{\"requestId\":\"req_first\"}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_false(t.u.send.idem.replayed);
    assert_null(t.u.send.idem.replay_response);
    otp_account_stats before = stats(c->s, c->acc);

    /* the same key and body: the first response, and nothing else */
    make_send(&t, c->acc, c->key, false, 1);
    idem_set(&t.u.send.idem, "order-1", 0x11, "{\"requestId\":\"req_second\"}");
    t.u.send.charged = -1;
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_true(t.u.send.idem.replayed);
    assert_int_equal(t.u.send.idem.replay_status, 201);
    assert_string_equal(t.u.send.idem.replay_response, "{\"requestId\":\"req_first\"}");
    free(t.u.send.idem.replay_response);
    otp_account_stats after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
    otp_request_info r;
    assert_int_equal(c->s->ops->request_get(c->s, c->acc, t.u.send.request_id, &r),
                     OTP_E_OTP_NOT_FOUND);

    /* the same key with another body */
    make_send(&t, c->acc, c->key, false, 1);
    idem_set(&t.u.send.idem, "order-1", 0x12, "{}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_IDEMPOTENCY_KEY_REUSED);
    assert_false(t.u.send.idem.replayed);
    after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));

    /* keys are per account: another account's "order-1" is its own */
    int64_t other;
    assert_int_equal(create_account(c->s, "globex", &other), OTP_OK);
    assert_int_equal(credit(c->s, other, 100, NULL), OTP_OK);
    make_send(&t, other, 0, false, 1);
    idem_set(&t.u.send.idem, "order-1", 0x11, "{}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_false(t.u.send.idem.replayed);
    assert_int_equal(stats(c->s, other).requests, 1);

    /* a SEND's key reused for a RESEND (another route, so another fingerprint) */
    make_resend(&t, c->acc, c->key, false, "req_whatever", T0 + COOL, true, 1);
    idem_set(&t.u.resend.idem, "order-1", 0x13, "{}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_IDEMPOTENCY_KEY_REUSED);

    /* a key too long to be stored is refused, not truncated */
    make_send(&t, c->acc, c->key, false, 1);
    idem_set(&t.u.send.idem, "k", 0x11, "{}");
    memset(t.u.send.idem.key, 'k', sizeof(t.u.send.idem.key));
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_INVALID_REQUEST);
    after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
}

static void t_idem_failure_not_remembered(void **state)
{
    ctx *c = *state;
    otp_txn t;
    make_send(&t, c->acc, c->key, false, 1); /* balance 0: 402 */
    idem_set(&t.u.send.idem, "k-402", 0x21, "{\"n\":1}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_INSUFFICIENT_BALANCE);
    assert_false(t.u.send.idem.replayed);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM idempotency"), 0);

    assert_int_equal(credit(c->s, c->acc, 100, NULL), OTP_OK);
    make_send(&t, c->acc, c->key, false, 1);
    idem_set(&t.u.send.idem, "k-402", 0x21, "{\"n\":2}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_false(t.u.send.idem.replayed);

    make_send(&t, c->acc, c->key, false, 1);
    idem_set(&t.u.send.idem, "k-402", 0x21, "{\"n\":3}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_true(t.u.send.idem.replayed);
    assert_string_equal(t.u.send.idem.replay_response, "{\"n\":2}");
    free(t.u.send.idem.replay_response);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.balance, 100 - PRICE);
}

/* A batch lost at commit: the first send of a key is not stored (so no record),
 * and a replay in the same batch hands back no response (it is freed, and the
 * txn fails like the rest). */
static void t_idem_commit_failure(void **state)
{
    ctx *c = *state;
    if (!B->pause || !B->fail_commits)
        skip();
    otp_txn t, txns[2];
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    make_send(&t, c->acc, c->key, false, 1);
    idem_set(&t.u.send.idem, "lost-1", 0x81, "{\"first\":1}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    otp_account_stats before = stats(c->s, c->acc);

    tally tl;
    tally_init(&tl);
    make_send(&txns[0], c->acc, c->key, false, 1); /* would replay */
    idem_set(&txns[0].u.send.idem, "lost-1", 0x81, "{}");
    make_send(&txns[1], c->acc, c->key, false, 1); /* would be first */
    idem_set(&txns[1].u.send.idem, "lost-2", 0x82, "{\"second\":1}");
    B->pause(c->s, true);
    B->fail_commits(c->s, 1);
    for (int i = 0; i < 2; i++) {
        txns[i].done = tally_done;
        txns[i].user = &tl;
        c->s->ops->submit(c->s, &txns[i]);
    }
    B->pause(c->s, false);
    tally_wait(&tl, 2);
    tally_destroy(&tl);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(txns[i].err, OTP_E_UNAVAILABLE);
        assert_false(txns[i].u.send.idem.replayed);
        assert_null(txns[i].u.send.idem.replay_response);
    }
    otp_account_stats after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
    make_send(&t, c->acc, c->key, false, 1);
    idem_set(&t.u.send.idem, "lost-2", 0x82, "{}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_false(t.u.send.idem.replayed);
}

/* Duplicates that land in one batch see each other: one request, one debit. */
static void t_idem_same_batch(void **state)
{
    ctx *c = *state;
    enum { N = 6 };
    otp_txn txns[N];
    tally t;
    tally_init(&t);
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    for (int i = 0; i < N; i++) {
        make_send(&txns[i], c->acc, c->key, false, 1);
        idem_set(&txns[i].u.send.idem, "dup", i == N - 1 ? 0x32 : 0x31, "{\"same\":true}");
        txns[i].done = tally_done;
        txns[i].user = &t;
    }
    if (B->pause)
        B->pause(c->s, true);
    for (int i = 0; i < N; i++)
        c->s->ops->submit(c->s, &txns[i]);
    if (B->pause)
        B->pause(c->s, false);
    tally_wait(&t, N);
    int firsts = 0, replays = 0;
    for (int i = 0; i < N - 1; i++) {
        assert_int_equal(txns[i].err, OTP_OK);
        if (txns[i].u.send.idem.replayed) {
            replays++;
            assert_string_equal(txns[i].u.send.idem.replay_response, "{\"same\":true}");
            free(txns[i].u.send.idem.replay_response);
        } else {
            firsts++;
        }
    }
    assert_int_equal(firsts, 1);
    assert_int_equal(replays, N - 2);
    if (B->pause) /* one batch, run in order: the first in the queue wins */
        assert_false(txns[0].u.send.idem.replayed);
    assert_int_equal(txns[N - 1].err, OTP_E_IDEMPOTENCY_KEY_REUSED);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.messages, 1);
    assert_int_equal(st.balance, 1000 - PRICE);
    tally_destroy(&t);
}

typedef struct idem_thread {
    otp_store *s;
    otp_txn txn;
    pthread_barrier_t *start;
} idem_thread;

static void *idem_thread_main(void *arg)
{
    idem_thread *it = arg;
    pthread_barrier_wait(it->start);
    otp_store_exec(it->s, &it->txn);
    return NULL;
}

/* The same send from 20 threads at once: exactly one request, one debit, and
 * every other answer is the first one's response. */
static void t_idem_parallel(void **state)
{
    ctx *c = *state;
    enum { N = 20 };
    idem_thread th[N];
    pthread_t tid[N];
    pthread_barrier_t start;
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        th[i].s = c->s;
        th[i].start = &start;
        make_send(&th[i].txn, c->acc, c->key, false, 1);
        idem_set(&th[i].txn.u.send.idem, "parallel", 0x41, th[i].txn.u.send.request_id);
        assert_int_equal(pthread_create(&tid[i], NULL, idem_thread_main, &th[i]), 0);
    }
    int firsts = 0;
    char first_rid[OTP_ID_SIZE] = "";
    for (int i = 0; i < N; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(th[i].txn.err, OTP_OK);
        if (!th[i].txn.u.send.idem.replayed) {
            firsts++;
            memcpy(first_rid, th[i].txn.u.send.request_id, OTP_ID_SIZE);
        }
    }
    assert_int_equal(firsts, 1);
    for (int i = 0; i < N; i++)
        if (th[i].txn.u.send.idem.replayed) {
            assert_string_equal(th[i].txn.u.send.idem.replay_response, first_rid);
            free(th[i].txn.u.send.idem.replay_response);
        }
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.ledger_entries, 2);
    assert_int_equal(st.balance, 1000 - PRICE);
    pthread_barrier_destroy(&start);
}

static void t_idem_resend(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    otp_txn t;
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    live_send(c, rid, NULL);

    make_resend(&t, c->acc, c->key, false, rid, T0 + COOL, true, 1);
    idem_set(&t.u.resend.idem, "again-1", 0x51, "{\"resent\":1}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_false(t.u.resend.idem.replayed);
    otp_account_stats before = stats(c->s, c->acc);

    /* replayed even though the cooldown would now refuse it */
    make_resend(&t, c->acc, c->key, false, rid, T0 + COOL + 1, true, 1);
    idem_set(&t.u.resend.idem, "again-1", 0x51, "{\"resent\":2}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_true(t.u.resend.idem.replayed);
    assert_string_equal(t.u.resend.idem.replay_response, "{\"resent\":1}");
    free(t.u.resend.idem.replay_response);
    otp_account_stats after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
    assert_int_equal(get_request(c, rid).resend_count, 1);

    /* a refused resend is not remembered either */
    make_resend(&t, c->acc, c->key, false, rid, T0 + COOL + 2, true, 1);
    idem_set(&t.u.resend.idem, "again-2", 0x52, "{}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_RESEND_TOO_SOON);
    make_resend(&t, c->acc, c->key, false, rid, T0 + 2 * COOL, true, 1);
    idem_set(&t.u.resend.idem, "again-2", 0x52, "{}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_false(t.u.resend.idem.replayed);
}

/* ---- resend ------------------------------------------------------------------ */

static void t_resend_errors_in_order(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE], trid[OTP_ID_SIZE];
    otp_txn t;
    assert_int_equal(credit(c->s, c->acc, 2 * PRICE, NULL), OTP_OK);
    live_send(c, rid, NULL);
    one_request(c, 3, trid);
    otp_account_stats before = stats(c->s, c->acc);

    /* not found: unknown, another account's, or the other kind of key's */
    assert_int_equal(resend(c, "req_0000000000000000000000", T0 + COOL, &t), OTP_E_OTP_NOT_FOUND);
    int64_t other;
    assert_int_equal(create_account(c->s, "globex", &other), OTP_OK);
    make_resend(&t, other, 0, false, rid, T0 + COOL, true, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_OTP_NOT_FOUND);
    make_resend(&t, c->acc, c->tkey, true, rid, T0 + COOL, true, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_OTP_NOT_FOUND);
    make_resend(&t, c->acc, c->key, false, trid, T0 + COOL, true, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_OTP_NOT_FOUND);

    /* too soon, with the wait rounded up to whole seconds */
    assert_int_equal(resend(c, rid, T0 + 10000, &t), OTP_E_RESEND_TOO_SOON);
    assert_int_equal(t.u.resend.retry_after_s, 20);
    assert_int_equal(resend(c, rid, T0 + COOL - 1, &t), OTP_E_RESEND_TOO_SOON);
    assert_int_equal(t.u.resend.retry_after_s, 1);
    otp_account_stats after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));

    /* three resends, 30 s apart (balance 25: the superseded message's refund
     * pays for the next one each time) */
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(resend(c, rid, T0 + i * COOL, &t), OTP_OK);
        assert_int_equal(get_request(c, rid).resend_count, i);
    }
    before = stats(c->s, c->acc);
    /* the limit comes before the cooldown */
    assert_int_equal(resend(c, rid, T0 + 3 * COOL + 1, &t), OTP_E_RESEND_LIMIT_REACHED);
    assert_int_equal(resend(c, rid, T0 + 5 * COOL, &t), OTP_E_RESEND_LIMIT_REACHED);

    /* the status comes before the limit: verified, locked, cancelled, expired */
    assert_int_equal(verify(c->s, c->acc, rid, NEW, 6, T0 + 3 * COOL + 2, NULL), OTP_OK);
    assert_int_equal(resend(c, rid, T0 + 5 * COOL, &t), OTP_E_OTP_ALREADY_VERIFIED);
    char r2[OTP_ID_SIZE];
    one_request(c, 1, r2);
    assert_int_equal(verify(c->s, c->acc, r2, WRONG, 6, T0 + 1, NULL), OTP_E_OTP_INCORRECT);
    make_resend(&t, c->acc, c->tkey, true, r2, T0 + COOL, true, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_OTP_ATTEMPTS_EXHAUSTED);
    one_request(c, 3, r2);
    assert_int_equal(cancel(c, r2, T0 + 1), OTP_OK);
    make_resend(&t, c->acc, c->tkey, true, r2, T0 + COOL, true, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_OTP_CANCELLED);
    one_request(c, 3, r2);
    make_resend(&t, c->acc, c->tkey, true, r2, T0 + 600000, true, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_OTP_EXPIRED);
    make_resend(&t, c->acc, c->tkey, true, r2, T0 + 599999, true, 1); /* just in time */
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);

    /* the balance comes last: a request that is due for a resend, no money */
    char r3[OTP_ID_SIZE];
    live_send(c, r3, NULL);                         /* spends the last 25 */
    claim_all_and_report(c, T0 + 10, OTP_MSG_SENT); /* nothing left to refund */
    before = stats(c->s, c->acc);
    assert_int_equal(before.balance, 0);
    assert_int_equal(resend(c, r3, T0 + 10, &t), OTP_E_RESEND_TOO_SOON); /* before 402 */
    assert_int_equal(resend(c, r3, T0 + COOL, &t), OTP_E_INSUFFICIENT_BALANCE);
    after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before));
    otp_request_info r = get_request(c, r3);
    assert_int_equal(r.resend_count, 0);
    assert_int_equal(r.last_sent_at_ms, T0);
}

static void t_resend_rotate_effects(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE], mid[OTP_ID_SIZE];
    otp_txn t;
    int left;
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    live_send(c, rid, mid);
    assert_int_equal(verify(c->s, c->acc, rid, WRONG, 6, T0 + 5, &left), OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 2);

    make_resend(&t, c->acc, c->key, false, rid, T0 + 40000, true, 2);
    snprintf(t.u.resend.sender_id, OTP_SENDER_ID_SIZE, "ACMEIN");
    snprintf(t.u.resend.dlt_template_id, OTP_DLT_ID_SIZE, "1107000000000001");
    char new_mid[OTP_ID_SIZE];
    memcpy(new_mid, t.u.resend.message_id, OTP_ID_SIZE);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_int_equal(t.u.resend.charged, 2 * PRICE);
    /* 1000 - 25 (send) + 25 (superseded, refunded) - 50 */
    assert_int_equal(t.u.resend.balance_after, 950);
    assert_int_equal(t.u.resend.attempts_left, 3);
    assert_int_equal(t.u.resend.expires_at_ms, T0 + 40000 + 600000);

    otp_request_info r = get_request(c, rid);
    assert_int_equal(r.resend_count, 1);
    assert_int_equal(r.last_sent_at_ms, T0 + 40000);
    assert_int_equal(r.expires_at_ms, T0 + 640000);
    assert_int_equal(r.attempts_left, 3);
    assert_int_equal(r.created_at_ms, T0); /* unchanged */

    /* the first message never left: it fails as superseded and is refunded */
    otp_message_info m = get_message(c, mid);
    assert_int_equal(m.status, OTP_MSG_FAILED);
    assert_string_equal(m.error, "superseded");
    event_seen ev = events_of(c, mid);
    assert_int_equal(ev.n, 2);
    assert_int_equal(ev.items[1].status, OTP_MSG_FAILED);
    assert_string_equal(ev.items[1].error, "superseded");
    assert_int_equal(ev.items[1].at_ms, T0 + 40000);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM ledger WHERE type = 'refund' AND amount = 25"
                             " AND message_id = '%s'",
                             mid),
                     1);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM messages WHERE public_id = '%s'"
                             " AND sealed_text IS NULL",
                             mid),
                     1);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.balance, 950);
    assert_int_equal(st.ledger_entries, 4); /* credit, debit, refund, debit */
    assert_int_equal(st.messages, 2);

    /* the new message is in the outbox, with its sender and DLT ids */
    otp_txn cl;
    assert_int_equal(claim(c->s, T0 + 40001, 1000, 10, &cl), OTP_OK);
    assert_int_equal(cl.u.outbox_claim.n, 1);
    otp_outbox_msg *om = &cl.u.outbox_claim.msgs[0];
    assert_string_equal(om->public_id, new_mid);
    assert_string_equal(om->request_id, rid);
    assert_string_equal(om->to, "+919876543210");
    assert_int_equal(om->segments, 2);
    assert_int_equal(om->expires_at_ms, T0 + 640000);
    assert_string_equal(om->sender_id, "ACMEIN");
    assert_string_equal(om->dlt_template_id, "1107000000000001");
    claim_free(&cl);

    /* the old code is dead, the new one verifies (after the old expiry, too) */
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 600001, &left), OTP_E_OTP_INCORRECT);
    assert_int_equal(left, 2);
    assert_int_equal(verify(c->s, c->acc, rid, NEW, 6, T0 + 600002, &left), OTP_OK);
}

/* A message a dispatcher already holds (sending) or that a gateway accepted is
 * not superseded: only queued ones are. */
static void t_resend_leaves_taken_messages(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE], mid[OTP_ID_SIZE];
    otp_txn t, cl;
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    live_send(c, rid, mid);
    assert_int_equal(claim(c->s, T0 + 1, 60000, 10, &cl), OTP_OK);
    assert_int_equal(cl.u.outbox_claim.n, 1);
    claim_free(&cl);
    assert_int_equal(resend(c, rid, T0 + COOL, &t), OTP_OK);
    assert_int_equal(get_message(c, mid).status, OTP_MSG_SENDING);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.balance, 1000 - 2 * PRICE);
    assert_int_equal(st.ledger_entries, 3);
}

static void t_resend_reuse_keeps_hash(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    otp_txn t;
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    live_send(c, rid, NULL);
    make_resend(&t, c->acc, c->key, false, rid, T0 + COOL, false, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_int_equal(verify(c->s, c->acc, rid, NEW, 6, T0 + COOL + 1, NULL), OTP_E_OTP_INCORRECT);
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + COOL + 2, NULL), OTP_OK);
}

static void t_resend_test_key(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE];
    otp_txn t;
    one_request(c, 3, rid); /* balance 0 */
    make_resend(&t, c->acc, c->tkey, true, rid, T0 + COOL, true, 3);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_int_equal(t.u.resend.charged, 0);
    assert_int_equal(t.u.resend.balance_after, 0);
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.ledger_entries, 0);
    assert_int_equal(st.messages, 2);
    msg_seen seen = messages_of(c, rid);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.items[0].status, OTP_MSG_SENT); /* test messages are never superseded */
    assert_int_equal(seen.items[1].status, OTP_MSG_SENT);
    assert_string_equal(seen.items[1].provider, "test");
    assert_int_equal(seen.items[1].segments, 3);
    otp_txn cl;
    assert_int_equal(claim(c->s, T0 + 99999999, 1000, 10, &cl), OTP_OK);
    assert_int_equal(cl.u.outbox_claim.n, 0);
    claim_free(&cl);
}

/* A resend that fails half-way (its new message id is taken, found after the
 * refund, the debit and the request update) leaves nothing behind, and so does
 * a send with an idempotency key failing after its debit: no record, so the
 * key still works. The txns around them are undisturbed. */
static void t_failed_half_way_leaves_nothing(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE], mid[OTP_ID_SIZE], taken_rid[OTP_ID_SIZE];
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    live_send(c, rid, mid);
    live_send(c, taken_rid, NULL);
    otp_account_stats before = stats(c->s, c->acc);

    enum { N = 3 };
    otp_txn txns[N];
    tally t;
    tally_init(&t);
    make_resend(&txns[0], c->acc, c->key, false, rid, T0 + COOL, true, 1);
    memcpy(txns[0].u.resend.message_id, mid, OTP_ID_SIZE); /* taken */
    idem_set(&txns[0].u.resend.idem, "half-1", 0x71, "{}");
    make_send(&txns[1], c->acc, c->key, false, 1);
    memcpy(txns[1].u.send.request_id, taken_rid, OTP_ID_SIZE); /* taken */
    idem_set(&txns[1].u.send.idem, "half-2", 0x72, "{}");
    make_send(&txns[2], c->acc, c->key, false, 1);
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
    assert_int_not_equal(txns[0].err, OTP_OK);
    assert_int_not_equal(txns[0].err, OTP_E_UNAVAILABLE);
    assert_int_not_equal(txns[1].err, OTP_OK);
    assert_int_equal(txns[2].err, OTP_OK);
    tally_destroy(&t);

    otp_account_stats after = stats(c->s, c->acc);
    assert_int_equal(after.balance, before.balance - PRICE);
    assert_int_equal(after.ledger_entries, before.ledger_entries + 1);
    assert_int_equal(after.requests, before.requests + 1);
    otp_request_info r = get_request(c, rid);
    assert_int_equal(r.resend_count, 0);
    assert_int_equal(r.last_sent_at_ms, T0);
    assert_int_equal(get_message(c, mid).status, OTP_MSG_QUEUED); /* not superseded */
    assert_int_equal(verify(c->s, c->acc, rid, NEW, 6, T0 + 1, NULL), OTP_E_OTP_INCORRECT);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM idempotency"), 0);

    /* the keys were not remembered: the corrected requests go through */
    otp_txn x;
    make_resend(&x, c->acc, c->key, false, rid, T0 + COOL, true, 1);
    idem_set(&x.u.resend.idem, "half-1", 0x71, "{}");
    assert_int_equal(otp_store_exec(c->s, &x), OTP_OK);
    assert_false(x.u.resend.idem.replayed);
    make_send(&x, c->acc, c->key, false, 1);
    idem_set(&x.u.send.idem, "half-2", 0x72, "{}");
    assert_int_equal(otp_store_exec(c->s, &x), OTP_OK);
    assert_false(x.u.send.idem.replayed);
    stats(c->s, c->acc);
}

/* ---- cancel ------------------------------------------------------------------- */

static void t_cancel(void **state)
{
    ctx *c = *state;
    char rid[OTP_ID_SIZE], mid[OTP_ID_SIZE];
    assert_int_equal(credit(c->s, c->acc, 100, NULL), OTP_OK);
    otp_txn t;
    static const uint8_t sealed_code[] = "sealed code";
    make_send(&t, c->acc, c->key, false, 1);
    t.u.send.code_sealed = sealed_code;
    t.u.send.code_sealed_len = sizeof(sealed_code);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    memcpy(rid, t.u.send.request_id, OTP_ID_SIZE);
    memcpy(mid, t.u.send.message_id, OTP_ID_SIZE);
    assert_int_equal(get_request(c, rid).code_sealed_len, sizeof(sealed_code));

    assert_int_equal(cancel(c, rid, T0 + 1), OTP_OK);
    otp_request_info r = get_request(c, rid);
    assert_int_equal(r.status, OTP_REQ_CANCELLED);
    assert_int_equal(r.code_sealed_len, 0); /* erased */
    assert_int_equal(verify(c->s, c->acc, rid, RIGHT, 6, T0 + 2, NULL), OTP_E_OTP_CANCELLED);
    assert_int_equal(cancel(c, rid, T0 + 3), OTP_E_OTP_CANCELLED);
    /* its unsent message will never go: failed and refunded */
    otp_message_info m = get_message(c, mid);
    assert_int_equal(m.status, OTP_MSG_FAILED);
    assert_string_equal(m.error, "cancelled");
    otp_account_stats st = stats(c->s, c->acc);
    assert_int_equal(st.balance, 100);
    assert_int_equal(st.ledger_entries, 3);

    char r2[OTP_ID_SIZE];
    one_request(c, 3, r2);
    assert_int_equal(verify(c->s, c->acc, r2, RIGHT, 6, T0 + 1, NULL), OTP_OK);
    assert_int_equal(cancel(c, r2, T0 + 2), OTP_E_OTP_ALREADY_VERIFIED);
    one_request(c, 3, r2);
    assert_int_equal(cancel(c, r2, T0 + 600000), OTP_E_OTP_EXPIRED);
    assert_int_equal(get_request(c, r2).status, OTP_REQ_PENDING); /* stored: never expired */
    assert_int_equal(cancel(c, "req_0000000000000000000000", T0), OTP_E_OTP_NOT_FOUND);
    otp_txn o = {.kind = OTP_TXN_CANCEL};
    o.u.cancel.account_id = c->acc + 1000;
    memcpy(o.u.cancel.request_id, r2, OTP_ID_SIZE);
    o.u.cancel.now_ms = T0;
    assert_int_equal(otp_store_exec(c->s, &o), OTP_E_OTP_NOT_FOUND);
}

/* A sealed code (reuse strategy) is gone as soon as the request is verified or
 * locked. */
static void t_verify_erases_sealed_code(void **state)
{
    ctx *c = *state;
    static const uint8_t sealed_code[] = "sealed code";
    otp_txn t;
    for (int locked = 0; locked < 2; locked++) {
        make_send(&t, c->acc, c->tkey, true, 1);
        t.u.send.max_attempts = 1;
        t.u.send.code_sealed = sealed_code;
        t.u.send.code_sealed_len = sizeof(sealed_code);
        assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
        const char *rid = t.u.send.request_id;
        assert_int_equal(verify(c->s, c->acc, rid, locked ? WRONG : RIGHT, 6, T0 + 1, NULL),
                         locked ? OTP_E_OTP_INCORRECT : OTP_OK);
        otp_request_info r = get_request(c, rid);
        assert_int_equal(r.status, locked ? OTP_REQ_LOCKED : OTP_REQ_VERIFIED);
        assert_int_equal(r.code_sealed_len, 0);
    }
    /* a wrong guess that leaves it pending keeps it */
    make_send(&t, c->acc, c->tkey, true, 1);
    t.u.send.code_sealed = sealed_code;
    t.u.send.code_sealed_len = sizeof(sealed_code);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_int_equal(verify(c->s, c->acc, t.u.send.request_id, WRONG, 6, T0 + 1, NULL),
                     OTP_E_OTP_INCORRECT);
    otp_request_info r = get_request(c, t.u.send.request_id);
    assert_int_equal(r.code_sealed_len, sizeof(sealed_code));
    assert_memory_equal(r.code_sealed, sealed_code, sizeof(sealed_code));
    /* and one too long to store is refused */
    uint8_t big[OTP_CODE_SEALED_MAX + 1] = {0};
    make_send(&t, c->acc, c->tkey, true, 1);
    t.u.send.code_sealed = big;
    t.u.send.code_sealed_len = sizeof(big);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_E_INVALID_REQUEST);
}

/* ---- account settings ------------------------------------------------------------ */

static otp_err account_set(ctx *c, int64_t acc, unsigned fields, int64_t price, int64_t low,
                           int strategy, const char *domain)
{
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_SET};
    otp_txn_account_set *a = &t.u.account_set;
    a->account_id = acc;
    a->fields = fields;
    a->price_per_segment = price;
    a->low_balance_threshold = low;
    a->resend_strategy = strategy;
    snprintf(a->webotp_domain, sizeof(a->webotp_domain), "%s", domain ? domain : "");
    return otp_store_exec(c->s, &t);
}

static void t_account_set(void **state)
{
    ctx *c = *state;
    otp_account a;
    assert_int_equal(c->s->ops->account_get(c->s, c->acc, &a), OTP_OK);
    assert_int_equal(a.resend_strategy, OTP_RESEND_ROTATE);
    assert_string_equal(a.webotp_domain, "");
    otp_key_auth k = lookup(c, 0x01);
    assert_int_equal(k.resend_strategy, OTP_RESEND_ROTATE);
    assert_string_equal(k.webotp_domain, "");

    /* only the fields asked for */
    assert_int_equal(account_set(c, c->acc, OTP_SET_PRICE, 40, 999, 1, "x"), OTP_OK);
    assert_int_equal(c->s->ops->account_get(c->s, c->acc, &a), OTP_OK);
    assert_int_equal(a.price_per_segment, 40);
    assert_int_equal(a.low_balance_threshold, 10000);
    assert_int_equal(a.resend_strategy, OTP_RESEND_ROTATE);
    assert_string_equal(a.webotp_domain, "");
    assert_int_equal(
        account_set(c, c->acc,
                    OTP_SET_LOW_BALANCE | OTP_SET_RESEND_STRATEGY | OTP_SET_WEBOTP_DOMAIN, 0, 500,
                    OTP_RESEND_REUSE, "app.example.com"),
        OTP_OK);
    assert_int_equal(c->s->ops->account_get(c->s, c->acc, &a), OTP_OK);
    assert_int_equal(a.price_per_segment, 40);
    assert_int_equal(a.low_balance_threshold, 500);
    assert_int_equal(a.resend_strategy, OTP_RESEND_REUSE);
    assert_string_equal(a.webotp_domain, "app.example.com");
    k = lookup(c, 0x02);
    assert_int_equal(k.resend_strategy, OTP_RESEND_REUSE);
    assert_string_equal(k.webotp_domain, "app.example.com");
    assert_int_equal(c->s->ops->account_find(c->s, "acme", &a), OTP_OK);
    assert_int_equal(a.resend_strategy, OTP_RESEND_REUSE);

    /* the new price is what a send costs */
    assert_int_equal(credit(c->s, c->acc, 100, NULL), OTP_OK);
    otp_txn t;
    make_send(&t, c->acc, c->key, false, 2);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_int_equal(t.u.send.charged, 80);

    /* an empty domain removes the line; refusals change nothing */
    assert_int_equal(account_set(c, c->acc, OTP_SET_WEBOTP_DOMAIN, 0, 0, 0, ""), OTP_OK);
    assert_int_equal(account_set(c, c->acc, OTP_SET_PRICE, -1, 0, 0, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(account_set(c, c->acc, OTP_SET_LOW_BALANCE, 0, -1, 0, NULL),
                     OTP_E_INVALID_REQUEST);
    assert_int_equal(account_set(c, c->acc, OTP_SET_RESEND_STRATEGY, 0, 0, 7, NULL),
                     OTP_E_INVALID_REQUEST);
    assert_int_equal(account_set(c, c->acc, 1u << 10, 0, 0, 0, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(account_set(c, c->acc + 1000, OTP_SET_PRICE, 1, 0, 0, NULL), OTP_E_NOT_FOUND);
    assert_int_equal(account_set(c, c->acc, 0, 0, 0, 0, NULL), OTP_OK); /* nothing to do */
    assert_int_equal(c->s->ops->account_get(c->s, c->acc, &a), OTP_OK);
    assert_int_equal(a.price_per_segment, 40);
    assert_int_equal(a.low_balance_threshold, 500);
    assert_int_equal(a.resend_strategy, OTP_RESEND_REUSE);
    assert_string_equal(a.webotp_domain, "");
    k = lookup(c, 0x01);
    assert_string_equal(k.webotp_domain, "");
    assert_int_equal(account_set(c, c->acc, OTP_SET_RESEND_STRATEGY, 0, 0, OTP_RESEND_ROTATE, NULL),
                     OTP_OK);
    assert_int_equal(lookup(c, 0x01).resend_strategy, OTP_RESEND_ROTATE);
}

/* ---- templates ------------------------------------------------------------------- */

static otp_err template_add(ctx *c, int64_t acc, const char *name, bool make_default,
                            char public_id[OTP_ID_SIZE], bool *ret_default)
{
    otp_txn t = {.kind = OTP_TXN_TEMPLATE_ADD};
    otp_template *tpl = &t.u.template_add.tpl;
    t.u.template_add.account_id = acc;
    new_id("tpl_", tpl->public_id);
    snprintf(tpl->name, sizeof(tpl->name), "%s", name);
    snprintf(tpl->body, sizeof(tpl->body), "{{code}} is your %s code", name);
    snprintf(tpl->dlt_template_id, sizeof(tpl->dlt_template_id), "dlt-%s", name);
    snprintf(tpl->sender_id, sizeof(tpl->sender_id), "ACME");
    tpl->is_default = make_default;
    tpl->created_at_ms = T0 + 7;
    otp_err e = otp_store_exec(c->s, &t);
    if (public_id)
        memcpy(public_id, tpl->public_id, OTP_ID_SIZE);
    if (ret_default)
        *ret_default = tpl->is_default;
    return e;
}

static otp_err template_ref(ctx *c, otp_txn_kind kind, int64_t acc, const char *id_or_name)
{
    otp_txn t = {.kind = kind};
    t.u.template_ref.account_id = acc;
    snprintf(t.u.template_ref.id_or_name, sizeof(t.u.template_ref.id_or_name), "%s", id_or_name);
    return otp_store_exec(c->s, &t);
}

static void t_templates(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    char welcome[OTP_ID_SIZE], promo[OTP_ID_SIZE], login[OTP_ID_SIZE];
    bool dflt = true;
    otp_template tpl;

    assert_int_equal(s->ops->template_find(s, c->acc, NULL, &tpl), OTP_E_NOT_FOUND);
    assert_string_equal(lookup(c, 0x01).default_template_id, "");

    /* the first template becomes the default without being asked */
    assert_int_equal(template_add(c, c->acc, "welcome", false, welcome, &dflt), OTP_OK);
    assert_true(dflt);
    assert_string_equal(lookup(c, 0x01).default_template_id, welcome);
    assert_int_equal(template_add(c, c->acc, "promo", false, promo, &dflt), OTP_OK);
    assert_false(dflt);
    assert_string_equal(lookup(c, 0x02).default_template_id, welcome);
    assert_int_equal(template_add(c, c->acc, "promo", false, NULL, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(template_add(c, c->acc, "", false, NULL, NULL), OTP_E_INVALID_REQUEST);
    assert_int_equal(template_add(c, c->acc + 1000, "x", false, NULL, NULL), OTP_E_NOT_FOUND);
    /* asked to be the default: the old one steps down */
    assert_int_equal(template_add(c, c->acc, "login", true, login, &dflt), OTP_OK);
    assert_true(dflt);
    assert_string_equal(lookup(c, 0x01).default_template_id, login);

    assert_int_equal(s->ops->template_find(s, c->acc, NULL, &tpl), OTP_OK);
    assert_string_equal(tpl.public_id, login);
    assert_string_equal(tpl.name, "login");
    assert_string_equal(tpl.body, "{{code}} is your login code");
    assert_string_equal(tpl.dlt_template_id, "dlt-login");
    assert_string_equal(tpl.sender_id, "ACME");
    assert_true(tpl.is_default);
    assert_int_equal(tpl.created_at_ms, T0 + 7);
    assert_int_equal(s->ops->template_find(s, c->acc, "promo", &tpl), OTP_OK);
    assert_string_equal(tpl.public_id, promo);
    assert_false(tpl.is_default);
    assert_int_equal(s->ops->template_find(s, c->acc, welcome, &tpl), OTP_OK);
    assert_string_equal(tpl.name, "welcome");
    assert_false(tpl.is_default);
    assert_int_equal(s->ops->template_find(s, c->acc, "nope", &tpl), OTP_E_NOT_FOUND);
    assert_int_equal(s->ops->template_find(s, c->acc, "", &tpl), OTP_E_NOT_FOUND);

    tpl_seen seen = {0};
    assert_int_equal(s->ops->template_list(s, c->acc, on_tpl, &seen), OTP_OK);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.items[0].name, "welcome");
    assert_string_equal(seen.items[1].name, "promo");
    assert_string_equal(seen.items[2].name, "login");
    assert_false(seen.items[0].is_default);
    assert_true(seen.items[2].is_default);

    /* set-default by name or id; unknown names change nothing */
    assert_int_equal(template_ref(c, OTP_TXN_TEMPLATE_SET_DEFAULT, c->acc, "welcome"), OTP_OK);
    assert_string_equal(lookup(c, 0x01).default_template_id, welcome);
    assert_int_equal(template_ref(c, OTP_TXN_TEMPLATE_SET_DEFAULT, c->acc, welcome), OTP_OK);
    assert_int_equal(template_ref(c, OTP_TXN_TEMPLATE_SET_DEFAULT, c->acc, "nope"),
                     OTP_E_NOT_FOUND);
    assert_string_equal(lookup(c, 0x01).default_template_id, welcome);

    /* another account sees none of them, and may reuse the names */
    int64_t other;
    assert_int_equal(create_account(c->s, "globex", &other), OTP_OK);
    assert_int_equal(s->ops->template_find(s, other, welcome, &tpl), OTP_E_NOT_FOUND);
    assert_int_equal(s->ops->template_find(s, other, "promo", &tpl), OTP_E_NOT_FOUND);
    assert_int_equal(template_ref(c, OTP_TXN_TEMPLATE_REMOVE, other, promo), OTP_E_NOT_FOUND);
    assert_int_equal(template_ref(c, OTP_TXN_TEMPLATE_SET_DEFAULT, other, promo), OTP_E_NOT_FOUND);
    assert_int_equal(template_add(c, other, "promo", false, NULL, &dflt), OTP_OK);
    assert_true(dflt);
    assert_string_equal(lookup(c, 0x01).default_template_id, welcome);

    /* removing the default leaves none: the built-in text */
    assert_int_equal(template_ref(c, OTP_TXN_TEMPLATE_REMOVE, c->acc, welcome), OTP_OK);
    assert_int_equal(template_ref(c, OTP_TXN_TEMPLATE_REMOVE, c->acc, welcome), OTP_E_NOT_FOUND);
    assert_int_equal(s->ops->template_find(s, c->acc, NULL, &tpl), OTP_E_NOT_FOUND);
    assert_string_equal(lookup(c, 0x01).default_template_id, "");
    assert_int_equal(template_ref(c, OTP_TXN_TEMPLATE_REMOVE, c->acc, "promo"), OTP_OK);
    seen.n = 0;
    assert_int_equal(s->ops->template_list(s, c->acc, on_tpl, &seen), OTP_OK);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.items[0].public_id, login);
    assert_false(seen.items[0].is_default);
    /* a name taken by a removed template is free again */
    assert_int_equal(template_add(c, c->acc, "welcome", false, NULL, &dflt), OTP_OK);
    assert_false(dflt);
}

/* ---- delivery reports ------------------------------------------------------------- */

static void t_delivery_reports(void **state)
{
    ctx *c = *state;
    char mids[4][OTP_ID_SIZE], got[OTP_ID_SIZE], pmid[32];
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    queue_sends(c, 4, mids);
    claim_all_and_report(c, T0 + 10, OTP_MSG_SENT);
    otp_account_stats before = stats(c->s, c->acc);
    assert_int_equal(before.balance, 1000 - 4 * PRICE);

    /* delivered; then nothing moves it */
    snprintf(pmid, sizeof(pmid), "gw-%" PRId64, msg_rowid(c, mids[0]));
    assert_int_equal(dlr(c, "gw1", pmid, OTP_MSG_DELIVERED, T0 + 100, got), OTP_OK);
    assert_string_equal(got, mids[0]);
    otp_message_info m = get_message(c, mids[0]);
    assert_int_equal(m.status, OTP_MSG_DELIVERED);
    assert_int_equal(m.updated_at_ms, T0 + 100);
    assert_string_equal(m.provider, "gw1");
    assert_string_equal(m.provider_message_id, pmid);
    assert_string_equal(m.error, "");
    assert_int_equal(dlr(c, "gw1", pmid, OTP_MSG_FAILED, T0 + 200, got), OTP_OK);
    assert_int_equal(dlr(c, "gw1", pmid, OTP_MSG_DELIVERED, T0 + 300, got), OTP_OK);
    m = get_message(c, mids[0]);
    assert_int_equal(m.status, OTP_MSG_DELIVERED);
    assert_int_equal(m.updated_at_ms, T0 + 100);
    event_seen ev = events_of(c, mids[0]);
    assert_int_equal(ev.n, 4);
    assert_int_equal(ev.items[0].status, OTP_MSG_QUEUED);
    assert_int_equal(ev.items[1].status, OTP_MSG_SENDING);
    assert_int_equal(ev.items[2].status, OTP_MSG_SENT);
    assert_int_equal(ev.items[3].status, OTP_MSG_DELIVERED);
    assert_int_equal(ev.items[3].at_ms, T0 + 100);
    otp_account_stats after = stats(c->s, c->acc);
    assert_memory_equal(&before, &after, sizeof(before)); /* no refund after delivered */

    /* failed: refunded exactly once, however often it is reported */
    snprintf(pmid, sizeof(pmid), "gw-%" PRId64, msg_rowid(c, mids[1]));
    for (int i = 0; i < 3; i++)
        assert_int_equal(dlr(c, "gw1", pmid, OTP_MSG_FAILED, T0 + 100 + i, got), OTP_OK);
    m = get_message(c, mids[1]);
    assert_int_equal(m.status, OTP_MSG_FAILED);
    assert_string_equal(m.error, "handset said no");
    assert_int_equal(events_of(c, mids[1]).n, 4);
    after = stats(c->s, c->acc);
    assert_int_equal(after.balance, before.balance + PRICE);
    assert_int_equal(after.ledger_entries, before.ledger_entries + 1);
    assert_int_equal(raw_int(c,
                             "SELECT count(*) FROM ledger WHERE type = 'refund'"
                             " AND message_id = '%s'",
                             mids[1]),
                     1);

    /* undeliverable: the gateway charged us, no refund */
    snprintf(pmid, sizeof(pmid), "gw-%" PRId64, msg_rowid(c, mids[2]));
    assert_int_equal(dlr(c, "gw1", pmid, OTP_MSG_UNDELIVERABLE, T0 + 100, got), OTP_OK);
    assert_int_equal(get_message(c, mids[2]).status, OTP_MSG_UNDELIVERABLE);
    assert_int_equal(stats(c->s, c->acc).balance, after.balance);

    /* unknown id, or the right id from another provider; a non-final status */
    assert_int_equal(dlr(c, "gw1", "gw-nope", OTP_MSG_DELIVERED, T0, got), OTP_E_MESSAGE_NOT_FOUND);
    snprintf(pmid, sizeof(pmid), "gw-%" PRId64, msg_rowid(c, mids[3]));
    assert_int_equal(dlr(c, "gw2", pmid, OTP_MSG_DELIVERED, T0, got), OTP_E_MESSAGE_NOT_FOUND);
    assert_int_equal(dlr(c, "", "", OTP_MSG_DELIVERED, T0, got), OTP_E_MESSAGE_NOT_FOUND);
    assert_int_equal(dlr(c, "gw1", pmid, OTP_MSG_SENT, T0, got), OTP_E_INVALID_REQUEST);
    assert_int_equal(dlr(c, "gw1", pmid, OTP_MSG_QUEUED, T0, got), OTP_E_INVALID_REQUEST);
    assert_int_equal(get_message(c, mids[3]).status, OTP_MSG_SENT);
    stats(c->s, c->acc);
}

/* ---- purge -------------------------------------------------------------------------- */

#define DAY INT64_C(86400000)

static otp_err purge(ctx *c, int64_t now, int max_rows, otp_txn *t)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_PURGE;
    t->u.purge.now_ms = now;
    t->u.purge.request_retention_ms = DAY;
    t->u.purge.idem_retention_ms = DAY;
    t->u.purge.max_rows = max_rows;
    return otp_store_exec(c->s, t);
}

static void t_purge(void **state)
{
    ctx *c = *state;
    otp_txn t;
    char old_rid[OTP_ID_SIZE], old_mid[OTP_ID_SIZE], queued_rid[OTP_ID_SIZE];
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);

    /* old: 5 test requests (expire at T0 + 600 s), one sent live one with a
     * delivery history, one live one still queued, and an idempotency record */
    for (int i = 0; i < 5; i++)
        one_request(c, 3, old_rid);
    live_send(c, NULL, old_mid);
    claim_all_and_report(c, T0 + 1, OTP_MSG_SENT);
    live_send(c, queued_rid, NULL);
    make_send(&t, c->acc, c->tkey, true, 1);
    idem_set(&t.u.send.idem, "old-key", 0x61, "{}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    /* recent: a request sent two days later, with a sealed code and a key */
    static const uint8_t sealed_code[] = "sealed code";
    make_send(&t, c->acc, c->tkey, true, 1);
    t.u.send.now_ms = T0 + 2 * DAY;
    t.u.send.expires_at_ms = T0 + 2 * DAY + 600000;
    t.u.send.code_sealed = sealed_code;
    t.u.send.code_sealed_len = sizeof(sealed_code);
    idem_set(&t.u.send.idem, "new-key", 0x62, "{}");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    char new_rid[OTP_ID_SIZE];
    memcpy(new_rid, t.u.send.request_id, OTP_ID_SIZE);
    otp_account_stats before = stats(c->s, c->acc);
    assert_int_equal(before.requests, 9);

    /* too early for anything */
    assert_int_equal(purge(c, T0 + DAY, 100, &t), OTP_OK);
    assert_int_equal(t.u.purge.purged_requests, 0);
    assert_int_equal(t.u.purge.purged_idem, 0);
    assert_int_equal(t.u.purge.erased_codes, 0);

    /* bounded batches; the old ones go, messages and events with them */
    int64_t now = T0 + 600000 + DAY + 1;
    assert_int_equal(purge(c, now, 4, &t), OTP_OK);
    assert_int_equal(t.u.purge.purged_requests, 4);
    assert_int_equal(t.u.purge.purged_idem, 1);
    assert_int_equal(purge(c, now, 4, &t), OTP_OK);
    assert_int_equal(t.u.purge.purged_requests, 3);
    assert_int_equal(t.u.purge.purged_idem, 0);
    assert_int_equal(purge(c, now, 4, &t), OTP_OK);
    assert_int_equal(t.u.purge.purged_requests, 0);

    otp_account_stats after = stats(c->s, c->acc);
    assert_int_equal(after.requests, 2); /* the queued one and the recent one */
    assert_int_equal(after.messages, 2);
    assert_int_equal(after.ledger_entries, before.ledger_entries); /* the ledger stays */
    assert_int_equal(after.balance, before.balance);
    otp_request_info r;
    assert_int_equal(c->s->ops->request_get(c->s, c->acc, old_rid, &r), OTP_E_OTP_NOT_FOUND);
    assert_int_equal(get_request(c, queued_rid).status, OTP_REQ_PENDING);
    event_seen gone = {0};
    assert_int_equal(
        c->s->ops->message_get(c->s, c->acc, old_mid, &(otp_message_info){0}, on_event, &gone),
        OTP_E_MESSAGE_NOT_FOUND);
    assert_int_equal(gone.n, 0);
    /* the queued one's and the recent one's messages keep their events */
    assert_int_equal(events_of(c, messages_of(c, queued_rid).items[0].public_id).n, 1);
    assert_int_equal(events_of(c, messages_of(c, new_rid).items[0].public_id).n, 1);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM idempotency"), 1);
    assert_int_equal(raw_int(c, "SELECT count(*) FROM ledger WHERE message_id = '%s'", old_mid), 1);

    /* the recent request's sealed code goes once it has expired, the request later */
    assert_int_equal(get_request(c, new_rid).code_sealed_len, sizeof(sealed_code));
    assert_int_equal(purge(c, T0 + 2 * DAY + 599999, 100, &t), OTP_OK);
    assert_int_equal(t.u.purge.erased_codes, 0);
    assert_int_equal(purge(c, T0 + 2 * DAY + 600000, 100, &t), OTP_OK);
    assert_int_equal(t.u.purge.erased_codes, 1);
    assert_int_equal(t.u.purge.purged_requests, 0);
    r = get_request(c, new_rid);
    assert_int_equal(r.code_sealed_len, 0);
    assert_int_equal(r.status, OTP_REQ_PENDING);

    /* once the dispatcher has failed (and refunded) the queued one, it goes too */
    claim_all_and_report(c, now, OTP_MSG_FAILED);
    assert_int_equal(purge(c, now + 2 * DAY, 100, &t), OTP_OK);
    assert_int_equal(t.u.purge.purged_requests, 2);
    assert_int_equal(t.u.purge.purged_idem, 1);
    after = stats(c->s, c->acc);
    assert_int_equal(after.requests, 0);
    assert_int_equal(after.messages, 0);
    assert_int_equal(after.balance, before.balance + PRICE);

    assert_int_equal(purge(c, now, 0, &t), OTP_E_INVALID_REQUEST);
}

/* A send may be stored already leased to the caller's dispatcher (a
 * hand-off): then its message is "sending", with one attempt and both events,
 * and the outbox claims it only once the lease has run out. A backend may
 * decline (PostgreSQL does): then it is queued like any other. A test key's
 * message is never leased. */
static void t_send_handed_off(void **state)
{
    ctx *c = *state;
    otp_txn t;
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    make_send(&t, c->acc, c->key, false, 1);
    t.u.send.lease_ms = 5000;
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    char mid[OTP_ID_SIZE];
    memcpy(mid, t.u.send.message_id, OTP_ID_SIZE);
    int64_t now = t.u.send.now_ms, id = t.u.send.leased_msg_id;
    assert_int_equal(t.u.send.leased, strstr(B->name, "sqlite") != NULL);
    otp_message_info m = get_message(c, mid);
    otp_txn cl;
    if (t.u.send.leased) {
        assert_true(id > 0);
        assert_int_equal(m.status, OTP_MSG_SENDING);
        assert_int_equal(m.attempts, 1);
        event_seen ev = events_of(c, mid);
        assert_int_equal(ev.n, 2);
        assert_int_equal(ev.items[0].status, OTP_MSG_QUEUED);
        assert_int_equal(ev.items[1].status, OTP_MSG_SENDING);
        assert_int_equal(ev.items[1].at_ms, now);
        assert_int_equal(claim(c->s, now + 4999, 1000, 10, &cl), OTP_OK);
        assert_int_equal(cl.u.outbox_claim.n, 0);
        assert_int_equal(claim(c->s, now + 5000, 1000, 10, &cl), OTP_OK);
        assert_int_equal(cl.u.outbox_claim.n, 1);
        assert_int_equal(cl.u.outbox_claim.msgs[0].id, id);
        assert_int_equal(cl.u.outbox_claim.msgs[0].attempts, 2);
    } else {
        assert_int_equal(m.status, OTP_MSG_QUEUED);
        assert_int_equal(claim(c->s, now, 1000, 10, &cl), OTP_OK);
        assert_int_equal(cl.u.outbox_claim.n, 1);
        assert_int_equal(cl.u.outbox_claim.msgs[0].attempts, 1);
    }
    assert_string_equal(cl.u.outbox_claim.msgs[0].public_id, mid);
    claim_free(&cl);

    make_send(&t, c->acc, c->tkey, true, 1);
    t.u.send.lease_ms = 5000;
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    assert_false(t.u.send.leased);
    assert_int_equal(get_message(c, t.u.send.message_id).status, OTP_MSG_SENT);
    stats(c->s, c->acc);
}

/* The pumping counters go once they are two days old, max_rows at a time;
 * younger ones stay. */
static void t_purge_traffic(void **state)
{
    ctx *c = *state;
    otp_txn t;
    int64_t now = T0 + 10 * DAY, cutoff = now / 60000 - 2 * 1440;
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO traffic (account_id, scope, minute, sends, verifies) VALUES"
             " (%" PRId64 ", 'IN', %" PRId64 ", 1, 0), (%" PRId64 ", 'IN', %" PRId64 ", 1, 0),"
             " (%" PRId64 ", '+91987650', %" PRId64 ", 1, 0),"
             " (%" PRId64 ", 'IN', %" PRId64 ", 1, 0), (%" PRId64 ", '+91987650', %" PRId64
             ", 1, 1)",
             c->acc, cutoff - 3, c->acc, cutoff - 2, c->acc, cutoff - 1, c->acc, cutoff, c->acc,
             cutoff + 5);
    assert_int_equal(B->raw_exec(c->url, sql), 0);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM traffic"), 5);

    assert_int_equal(purge(c, now, 2, &t), OTP_OK);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM traffic"), 3);
    assert_int_equal(purge(c, now, 2, &t), OTP_OK);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM traffic"), 2);
    assert_int_equal(purge(c, now, 2, &t), OTP_OK);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM traffic WHERE minute >= %" PRId64, cutoff);
    assert_int_equal(B->raw_int(c->url, sql), 2);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM traffic"), 2);
}

/* The other abuse tables: the purge takes what no limit reads any more, at
 * most max_rows of each per pass, and leaves everything a limit still needs:
 * today's and yesterday's spend, blocks in force or lifted within two days,
 * numbers with a streak of wrong codes or a lock in force. */
static void t_purge_abuse_tables(void **state)
{
    ctx *c = *state;
    otp_txn t;
    int64_t now = T0 + 10 * DAY, today = now / DAY;
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "INSERT INTO phone_state (account_id, phone, fails, fail_since, streak,"
             " locked_until, lock_kind) VALUES"
             " (%" PRId64 ", '+919800000001', 0, 0, 0, 0, 0),"           /* success: idle */
             " (%" PRId64 ", '+919800000002', 0, 0, 0, %" PRId64 ", 2)," /* streak lock over */
             " (%" PRId64 ", '+919800000003', 0, 0, 0, %" PRId64 ", 2)," /* streak lock on */
             " (%" PRId64 ", '+919800000004', 1, %" PRId64 ", 3, 0, 0)," /* wrong codes */
             " (%" PRId64 ", '+919800000005', 0, 0, 5, %" PRId64 ", 1)", /* lock over, streak */
             c->acc, c->acc, now - 1, c->acc, now + 60000, c->acc, now - 5000, c->acc, now - 1);
    assert_int_equal(B->raw_exec(c->url, sql), 0);
    snprintf(sql, sizeof(sql),
             "INSERT INTO spend (account_id, day, scope, amount) VALUES"
             " (%" PRId64 ", %" PRId64 ", '', 25), (%" PRId64 ", %" PRId64 ", 'IN', 25),"
             " (%" PRId64 ", %" PRId64 ", '', 25), (%" PRId64 ", %" PRId64 ", '', 25)",
             c->acc, today, c->acc, today - 1, c->acc, today - 2, c->acc, today - 5);
    assert_int_equal(B->raw_exec(c->url, sql), 0);
    snprintf(sql, sizeof(sql),
             "INSERT INTO blocks (account_id, target, reason, created_at, until) VALUES"
             " (%" PRId64 ", '+9198000', 'suspected_sms_pumping', 0, %" PRId64 "),"
             " (%" PRId64 ", '+9198001', 'lifted', 0, %" PRId64 "),"
             " (%" PRId64 ", '+9198002', 'lifted', 0, %" PRId64 "),"
             " (%" PRId64 ", 'IN', 'suspected_sms_pumping', 0, %" PRId64 ")",
             c->acc, now + 60000, c->acc, now - 2 * DAY, c->acc, now - 2 * DAY - 1, c->acc,
             now - 10 * DAY);
    assert_int_equal(B->raw_exec(c->url, sql), 0);

    /* One of each kind per pass with max_rows 1. */
    assert_int_equal(purge(c, now, 1, &t), OTP_OK);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM phone_state"), 4);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM spend"), 3);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM blocks"), 3);
    assert_int_equal(purge(c, now, 10, &t), OTP_OK);
    assert_int_equal(purge(c, now, 10, &t), OTP_OK);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM phone_state WHERE phone IN"
                                        " ('+919800000003', '+919800000004', '+919800000005')"),
                     3);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM phone_state"), 3);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM spend WHERE day >= %" PRId64, today - 1);
    assert_int_equal(B->raw_int(c->url, sql), 2);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM spend"), 2);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM blocks WHERE target IN"
                                        " ('+9198000', '+9198001')"),
                     2);
    assert_int_equal(B->raw_int(c->url, "SELECT count(*) FROM blocks"), 2);
}

/* ---- reads ----------------------------------------------------------------------------- */

static void t_request_and_message_reads(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    otp_txn t;
    static const uint8_t sealed_code[] = "sealed code";
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    make_send(&t, c->acc, c->key, false, 2);
    t.u.send.code_length = 8;
    t.u.send.max_attempts = 5;
    t.u.send.expires_in_s = 300;
    t.u.send.expires_at_ms = T0 + 300000;
    snprintf(t.u.send.template_id, OTP_ID_SIZE, "tpl_abc");
    snprintf(t.u.send.app_name, OTP_APP_NAME_SIZE, "Acme App");
    snprintf(t.u.send.app_hash, OTP_APP_HASH_SIZE, "FA+9qCX9VSu");
    snprintf(t.u.send.sender_id, OTP_SENDER_ID_SIZE, "ACMEIN");
    t.u.send.code_sealed = sealed_code;
    t.u.send.code_sealed_len = sizeof(sealed_code);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    char rid[OTP_ID_SIZE], mid[OTP_ID_SIZE];
    memcpy(rid, t.u.send.request_id, OTP_ID_SIZE);
    memcpy(mid, t.u.send.message_id, OTP_ID_SIZE);

    otp_request_info r = get_request(c, rid);
    assert_true(r.id > 0);
    assert_string_equal(r.public_id, rid);
    assert_int_equal(r.account_id, c->acc);
    assert_false(r.test);
    assert_string_equal(r.phone, "+919876543210");
    assert_int_equal(r.status, OTP_REQ_PENDING);
    assert_int_equal(r.attempts_left, 5);
    assert_int_equal(r.max_attempts, 5);
    assert_int_equal(r.code_length, 8);
    assert_int_equal(r.expires_in_s, 300);
    assert_int_equal(r.created_at_ms, T0);
    assert_int_equal(r.expires_at_ms, T0 + 300000);
    assert_int_equal(r.verified_at_ms, 0);
    assert_int_equal(r.resend_count, 0);
    assert_int_equal(r.last_sent_at_ms, T0);
    assert_string_equal(r.channel, "sms");
    assert_string_equal(r.template_id, "tpl_abc");
    assert_string_equal(r.app_name, "Acme App");
    assert_string_equal(r.app_hash, "FA+9qCX9VSu");
    assert_int_equal(r.code_sealed_len, sizeof(sealed_code));
    assert_memory_equal(r.code_sealed, sealed_code, sizeof(sealed_code));

    /* another account, or an unknown id: not found, and no messages */
    int64_t other;
    assert_int_equal(create_account(c->s, "globex", &other), OTP_OK);
    assert_int_equal(s->ops->request_get(s, other, rid, &r), OTP_E_OTP_NOT_FOUND);
    assert_int_equal(s->ops->request_get(s, c->acc, "req_nope", &r), OTP_E_OTP_NOT_FOUND);
    msg_seen ms = {0};
    assert_int_equal(s->ops->request_messages(s, other, rid, on_msg, &ms), OTP_OK);
    assert_int_equal(ms.n, 0);
    otp_message_info m;
    event_seen es = {0};
    assert_int_equal(s->ops->message_get(s, other, mid, &m, on_event, &es),
                     OTP_E_MESSAGE_NOT_FOUND);
    assert_int_equal(s->ops->message_get(s, c->acc, "msg_nope", &m, on_event, &es),
                     OTP_E_MESSAGE_NOT_FOUND);
    assert_int_equal(es.n, 0); /* another account's events are not read either */

    /* a queued message, then a retry, then sent */
    m = get_message(c, mid);
    assert_string_equal(m.public_id, mid);
    assert_string_equal(m.request_id, rid);
    assert_string_equal(m.to, "+919876543210");
    assert_int_equal(m.status, OTP_MSG_QUEUED);
    assert_string_equal(m.provider, "");
    assert_string_equal(m.provider_message_id, "");
    assert_int_equal(m.attempts, 0);
    assert_int_equal(m.segments, 2);
    assert_int_equal(m.created_at_ms, T0);
    assert_int_equal(m.updated_at_ms, T0);
    assert_string_equal(m.error, "");
    otp_txn cl;
    assert_int_equal(claim(c->s, T0 + 1, 1000, 10, &cl), OTP_OK);
    int64_t id = cl.u.outbox_claim.msgs[0].id;
    assert_string_equal(cl.u.outbox_claim.msgs[0].sender_id, "ACMEIN");
    assert_string_equal(cl.u.outbox_claim.msgs[0].dlt_template_id, "");
    claim_free(&cl);
    assert_int_equal(report(c->s, id, OTP_MSG_QUEUED, T0 + 2, T0 + 3), OTP_OK);
    m = get_message(c, mid);
    assert_int_equal(m.status, OTP_MSG_QUEUED);
    assert_int_equal(m.attempts, 1);
    assert_string_equal(m.error, "gateway said no");
    assert_int_equal(claim(c->s, T0 + 3, 1000, 10, &cl), OTP_OK);
    claim_free(&cl);
    assert_int_equal(report(c->s, id, OTP_MSG_SENT, T0 + 4, 0), OTP_OK);
    m = get_message(c, mid);
    assert_int_equal(m.status, OTP_MSG_SENT);
    assert_int_equal(m.attempts, 2);
    assert_string_equal(m.provider, "gw1");
    assert_int_equal(strncmp(m.provider_message_id, "gw-", 3), 0);
    assert_string_equal(m.error, "");
    assert_int_equal(m.updated_at_ms, T0 + 4);

    es = events_of(c, mid);
    assert_int_equal(es.n, 5);
    static const otp_msg_status want[] = {OTP_MSG_QUEUED, OTP_MSG_SENDING, OTP_MSG_QUEUED,
                                          OTP_MSG_SENDING, OTP_MSG_SENT};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(es.items[i].status, want[i]);
        assert_int_equal(es.items[i].at_ms, i == 0 ? T0 : T0 + i);
    }
    assert_string_equal(es.items[2].error, "gateway said no");
    assert_string_equal(es.items[4].error, "");

    /* request_messages: oldest first, the resent one after */
    assert_int_equal(resend(c, rid, T0 + COOL, &t), OTP_OK);
    ms = messages_of(c, rid);
    assert_int_equal(ms.n, 2);
    assert_string_equal(ms.items[0].public_id, mid);
    assert_string_equal(ms.items[1].public_id, t.u.resend.message_id);
    assert_int_equal(ms.items[1].status, OTP_MSG_QUEUED);
    assert_int_equal(ms.items[1].segments, 1);

    /* request_status: the same request and messages as the two reads */
    otp_request_info both;
    msg_seen bs = {0};
    r = get_request(c, rid);
    assert_int_equal(s->ops->request_status(s, c->acc, false, rid, &both, on_msg, &bs), OTP_OK);
    assert_int_equal(both.id, r.id);
    assert_string_equal(both.public_id, r.public_id);
    assert_string_equal(both.phone, r.phone);
    assert_int_equal(both.status, r.status);
    assert_int_equal(both.attempts_left, r.attempts_left);
    assert_int_equal(both.resend_count, 1);
    assert_int_equal(both.expires_at_ms, r.expires_at_ms);
    assert_string_equal(both.template_id, r.template_id);
    assert_int_equal(both.code_sealed_len, r.code_sealed_len);
    assert_memory_equal(both.code_sealed, r.code_sealed, r.code_sealed_len);
    assert_memory_equal(both.code_hash, r.code_hash, OTP_CODE_HASH_LEN);
    assert_int_equal(bs.n, 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(bs.items[i].public_id, ms.items[i].public_id);
        assert_int_equal(bs.items[i].status, ms.items[i].status);
        assert_int_equal(bs.items[i].attempts, ms.items[i].attempts);
        assert_string_equal(bs.items[i].provider, ms.items[i].provider);
        assert_int_equal(bs.items[i].updated_at_ms, ms.items[i].updated_at_ms);
    }
    /* and for another account's or an unknown id: not found, no messages */
    bs.n = 0;
    assert_int_equal(s->ops->request_status(s, other, false, rid, &both, on_msg, &bs),
                     OTP_E_OTP_NOT_FOUND);
    assert_int_equal(s->ops->request_status(s, c->acc, false, "req_nope", &both, on_msg, &bs),
                     OTP_E_OTP_NOT_FOUND);
    /* a live request read for a test key: not found, its messages unread */
    assert_int_equal(s->ops->request_status(s, c->acc, true, rid, &both, on_msg, &bs),
                     OTP_E_OTP_NOT_FOUND);
    assert_int_equal(bs.n, 0);
    /* the read transaction ended: the writer's next change is seen */
    assert_int_equal(cancel(c, rid, T0 + COOL + 1), OTP_OK);
    assert_int_equal(s->ops->request_status(s, c->acc, false, rid, &both, on_msg, &bs), OTP_OK);
    assert_int_equal(both.status, OTP_REQ_CANCELLED);
    /* a test key's request, read for a test key: found, with its message */
    make_send(&t, c->acc, c->key, true, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
    bs.n = 0;
    assert_int_equal(
        s->ops->request_status(s, c->acc, true, t.u.send.request_id, &both, on_msg, &bs), OTP_OK);
    assert_true(both.test);
    assert_int_equal(bs.n, 1);
    assert_string_equal(bs.items[0].public_id, t.u.send.message_id);
    assert_true(bs.items[0].test);
    assert_int_equal(
        s->ops->request_status(s, c->acc, false, t.u.send.request_id, &both, on_msg, &bs),
        OTP_E_OTP_NOT_FOUND);
    assert_int_equal(bs.n, 1); /* its message not read for a live key */
}

static void t_ledger_list(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    for (int i = 1; i <= 5; i++)
        assert_int_equal(credit(c->s, c->acc, i * 100, NULL), OTP_OK);
    otp_txn t;
    make_send(&t, c->acc, c->key, false, 1);
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);

    ledger_seen seen = {0};
    assert_int_equal(s->ops->ledger_list(s, c->acc, 0, 4, on_ledger, &seen), OTP_OK);
    assert_int_equal(seen.n, 4);
    otp_ledger_entry *e = seen.items;
    assert_int_equal(e[0].type, OTP_LEDGER_DEBIT);
    assert_int_equal(e[0].amount, -PRICE);
    assert_int_equal(e[0].balance_after, 1500 - PRICE);
    assert_string_equal(e[0].request_id, t.u.send.request_id);
    assert_string_equal(e[0].message_id, t.u.send.message_id);
    assert_string_equal(e[0].note, "");
    assert_int_equal(e[0].created_at_ms, T0);
    assert_int_equal(e[1].type, OTP_LEDGER_CREDIT);
    assert_int_equal(e[1].amount, 500);
    assert_int_equal(e[1].balance_after, 1500);
    assert_string_equal(e[1].note, "top-up");
    assert_string_equal(e[1].request_id, "");
    for (int i = 1; i < 4; i++)
        assert_true(e[i].id < e[i - 1].id);
    int64_t cursor = e[3].id;
    assert_int_equal(e[3].amount, 300);

    seen.n = 0;
    assert_int_equal(s->ops->ledger_list(s, c->acc, cursor, 4, on_ledger, &seen), OTP_OK);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.items[0].amount, 200);
    assert_int_equal(seen.items[1].amount, 100);
    assert_int_equal(seen.items[1].balance_after, 100);
    seen.n = 0;
    assert_int_equal(s->ops->ledger_list(s, c->acc, seen.items[1].id, 4, on_ledger, &seen), OTP_OK);
    assert_int_equal(seen.n, 0);
    assert_int_equal(s->ops->ledger_list(s, c->acc, 0, 0, on_ledger, &seen), OTP_OK);
    assert_int_equal(seen.n, 0);

    int64_t other;
    assert_int_equal(create_account(c->s, "globex", &other), OTP_OK);
    assert_int_equal(s->ops->ledger_list(s, other, 0, 10, on_ledger, &seen), OTP_OK);
    assert_int_equal(seen.n, 0);
}

typedef struct inbox_seen {
    int n;
    char mids[8][OTP_ID_SIZE];
    char rids[8][OTP_ID_SIZE];
    int64_t at[8];
    bool text_ok;
} inbox_seen;

static void on_inbox(const otp_test_message *m, void *p)
{
    inbox_seen *seen = p;
    if (seen->n < 8) {
        memcpy(seen->mids[seen->n], m->message_id, OTP_ID_SIZE);
        memcpy(seen->rids[seen->n], m->request_id, OTP_ID_SIZE);
        seen->at[seen->n] = m->created_at_ms;
    }
    seen->text_ok = seen->text_ok && m->sealed_len == sizeof(sealed_text) - 1 &&
                    memcmp(m->sealed, sealed_text, m->sealed_len) == 0 &&
                    strcmp(m->to, "+919876543210") == 0;
    seen->n++;
}

static void t_test_inbox(void **state)
{
    ctx *c = *state;
    otp_store *s = c->s;
    otp_txn t;
    char mids[3][OTP_ID_SIZE];
    assert_int_equal(credit(c->s, c->acc, 1000, NULL), OTP_OK);
    for (int i = 0; i < 3; i++) {
        make_send(&t, c->acc, c->tkey, true, 1);
        t.u.send.now_ms = T0 + i;
        assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);
        memcpy(mids[i], t.u.send.message_id, OTP_ID_SIZE);
    }
    live_send(c, NULL, NULL); /* a live message to the same number: not in the inbox */
    make_send(&t, c->acc, c->tkey, true, 1); /* another number */
    snprintf(t.u.send.phone, OTP_PHONE_SIZE, "+14155550100");
    assert_int_equal(otp_store_exec(c->s, &t), OTP_OK);

    inbox_seen seen = {.text_ok = true};
    assert_int_equal(s->ops->test_inbox(s, c->acc, "+919876543210", 10, on_inbox, &seen), OTP_OK);
    assert_int_equal(seen.n, 3);
    assert_true(seen.text_ok);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(seen.mids[i], mids[2 - i]); /* newest first */
        assert_int_equal(seen.at[i], T0 + 2 - i);
        assert_int_equal(strncmp(seen.rids[i], "req_", 4), 0);
    }
    seen = (inbox_seen){.text_ok = true};
    assert_int_equal(s->ops->test_inbox(s, c->acc, "+919876543210", 2, on_inbox, &seen), OTP_OK);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.mids[0], mids[2]);
    seen = (inbox_seen){.text_ok = true};
    assert_int_equal(s->ops->test_inbox(s, c->acc, "+14155550100", 10, on_inbox, &seen), OTP_OK);
    assert_int_equal(seen.n, 1);
    seen = (inbox_seen){.text_ok = true};
    int64_t other;
    assert_int_equal(create_account(c->s, "globex", &other), OTP_OK);
    assert_int_equal(s->ops->test_inbox(s, other, "+919876543210", 10, on_inbox, &seen), OTP_OK);
    assert_int_equal(seen.n, 0);
    assert_int_equal(s->ops->test_inbox(s, c->acc, "+919876543210", 0, on_inbox, &seen), OTP_OK);
    assert_int_equal(seen.n, 0);
}

/* ---- the randomized mix ------------------------------------------------------------------ */

#define MIX_THREADS 6
#define MIX_OPS 400
#define MIX_ACCOUNTS 2

typedef struct mix {
    ctx *c;
    int64_t acc[MIX_ACCOUNTS];
    int64_t key[MIX_ACCOUNTS];
    pthread_barrier_t *start;
    atomic_bool *stop;
    unsigned seed;
    int bad;          /* outcomes no mix may produce */
    int insufficient; /* sends and resends refused for want of money */
    int64_t credited[MIX_ACCOUNTS];
} mix;

static unsigned next_rand(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

/* The outcomes a random txn may have; anything else is a bug. */
static bool allowed(otp_err e)
{
    switch (e) {
    case OTP_OK:
    case OTP_E_INSUFFICIENT_BALANCE:
    case OTP_E_RESEND_LIMIT_REACHED:
    case OTP_E_RESEND_TOO_SOON:
    case OTP_E_OTP_NOT_FOUND:
    case OTP_E_OTP_ALREADY_VERIFIED:
    case OTP_E_OTP_CANCELLED:
    case OTP_E_OTP_INCORRECT:
    case OTP_E_OTP_ATTEMPTS_EXHAUSTED:
    case OTP_E_MESSAGE_NOT_FOUND:
    case OTP_E_IDEMPOTENCY_KEY_REUSED:
        return true;
    default:
        return false;
    }
}

/* One client thread: sends (some with idempotency keys that collide across
 * threads), resends, cancels, verifications and credits, in random order. */
static void *mix_client(void *arg)
{
    mix *m = arg;
    char rids[16][OTP_ID_SIZE];
    int nrids = 0;
    otp_txn t;
    pthread_barrier_wait(m->start);
    for (int i = 0; i < MIX_OPS; i++) {
        int a = (int)(next_rand(&m->seed) % MIX_ACCOUNTS);
        int64_t now = T0 + i * 100;
        unsigned op = next_rand(&m->seed) % 100;
        otp_err e;
        if (op < 40 || nrids == 0) {
            make_send(&t, m->acc[a], m->key[a], false, 1 + (int)(next_rand(&m->seed) % 3));
            t.u.send.now_ms = now;
            if (op % 4 == 0) {
                char key[32];
                snprintf(key, sizeof(key), "mix-%u", next_rand(&m->seed) % 20);
                idem_set(&t.u.send.idem, key, (uint8_t)(a + 1), "{}");
            }
            e = otp_store_exec(m->c->s, &t);
            free(t.u.send.idem.replay_response);
            if (e == OTP_OK && !t.u.send.idem.replayed && nrids < 16)
                memcpy(rids[nrids++], t.u.send.request_id, OTP_ID_SIZE);
        } else if (op < 70) {
            make_resend(&t, m->acc[0], m->key[0], false,
                        rids[next_rand(&m->seed) % (unsigned)nrids], now, next_rand(&m->seed) % 2,
                        1 + (int)(next_rand(&m->seed) % 2));
            t.u.resend.cooldown_ms = 0;
            e = otp_store_exec(m->c->s, &t); /* another account's request: not found */
            if (e == OTP_OK && t.u.resend.charged <= 0)
                m->bad++;
        } else if (op < 75) {
            otp_txn x = {.kind = OTP_TXN_CANCEL};
            x.u.cancel.account_id = m->acc[1];
            memcpy(x.u.cancel.request_id, rids[next_rand(&m->seed) % (unsigned)nrids], OTP_ID_SIZE);
            x.u.cancel.now_ms = now;
            e = otp_store_exec(m->c->s, &x);
        } else if (op < 85) {
            e = verify(m->c->s, m->acc[next_rand(&m->seed) % MIX_ACCOUNTS],
                       rids[next_rand(&m->seed) % (unsigned)nrids],
                       next_rand(&m->seed) % 2 ? RIGHT : NEW, 6, now, NULL);
        } else {
            int64_t amount = 1 + next_rand(&m->seed) % 100; /* less than is spent */
            e = credit(m->c->s, m->acc[a], amount, NULL);
            if (e == OTP_OK)
                m->credited[a] += amount;
        }
        if (!allowed(e)) {
            print_error("mix client: op %u -> %s\n", op, otp_err_code(e));
            m->bad++;
        }
        m->insufficient += e == OTP_E_INSUFFICIENT_BALANCE;
    }
    return NULL;
}

/* The gateway side: claims messages and reports them sent, failed or for retry,
 * and sends receipts (delivered, failed, undeliverable) for random ids, until
 * the clients are done. */
static void *mix_gateway(void *arg)
{
    mix *m = arg;
    otp_txn t;
    int64_t sent[64] = {0}; /* ids reported sent lately: their receipts will come */
    unsigned nsent = 0;
    pthread_barrier_wait(m->start);
    while (!atomic_load(m->stop)) {
        int64_t now = T0 + 1000 * 1000;
        if (claim(m->c->s, now, 1000, 8, &t) != OTP_OK)
            m->bad++;
        for (size_t i = 0; i < t.u.outbox_claim.n; i++) {
            unsigned r = next_rand(&m->seed) % 3;
            otp_msg_status st = r == 0 ? OTP_MSG_SENT : r == 1 ? OTP_MSG_FAILED : OTP_MSG_QUEUED;
            if (report(m->c->s, t.u.outbox_claim.msgs[i].id, st, now, now) != OTP_OK)
                m->bad++;
            if (st == OTP_MSG_SENT)
                sent[nsent++ % 64] = t.u.outbox_claim.msgs[i].id;
        }
        claim_free(&t);
        char pmid[32]; /* mostly a message sent lately (maybe a repeat), else any id */
        unsigned pick = next_rand(&m->seed);
        int64_t id =
            nsent && pick % 4 ? sent[pick % (nsent < 64 ? nsent : 64)] : 1 + (int64_t)(pick % 1000);
        snprintf(pmid, sizeof(pmid), "gw-%" PRId64, id);
        unsigned r = next_rand(&m->seed) % 3;
        otp_err e = dlr(m->c, "gw1", pmid,
                        r == 0   ? OTP_MSG_DELIVERED
                        : r == 1 ? OTP_MSG_FAILED
                                 : OTP_MSG_UNDELIVERABLE,
                        now, NULL);
        if (!allowed(e))
            m->bad++;
    }
    return NULL;
}

/* Reads the invariant while everything runs: every snapshot balances. */
static void *mix_auditor(void *arg)
{
    mix *m = arg;
    pthread_barrier_wait(m->start);
    while (!atomic_load(m->stop))
        for (int a = 0; a < MIX_ACCOUNTS; a++) {
            otp_account_stats st;
            if (m->c->s->ops->account_stats(m->c->s, m->acc[a], &st) != OTP_OK ||
                st.balance != st.ledger_sum || st.balance < 0)
                m->bad++;
        }
    return NULL;
}

static void t_randomized_ledger(void **state)
{
    ctx *c = *state;
    mix base = {.c = c};
    base.acc[0] = c->acc;
    base.key[0] = c->key;
    assert_int_equal(create_account(c->s, "globex", &base.acc[1]), OTP_OK);
    assert_int_equal(create_key(c->s, base.acc[1], 0x09, false, NULL), OTP_OK);
    base.key[1] = key_id_of(c->s, 0x09);
    for (int a = 0; a < MIX_ACCOUNTS; a++) {
        assert_int_equal(credit(c->s, base.acc[a], 500, NULL), OTP_OK);
        base.credited[a] = 500;
    }

    enum { N = MIX_THREADS + 2 };
    mix m[N];
    pthread_t th[N];
    pthread_barrier_t start;
    atomic_bool stop;
    atomic_init(&stop, false);
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        m[i] = base;
        m[i].start = &start;
        m[i].stop = &stop;
        m[i].seed = 0x5eed0000u + (unsigned)i;
        for (int a = 0; a < MIX_ACCOUNTS; a++)
            m[i].credited[a] = 0;
        void *(*fn)(void *) = i < MIX_THREADS    ? mix_client
                              : i == MIX_THREADS ? mix_gateway
                                                 : mix_auditor;
        assert_int_equal(pthread_create(&th[i], NULL, fn, &m[i]), 0);
    }
    for (int i = 0; i < MIX_THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stop, true);
    for (int i = MIX_THREADS; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);

    int insufficient = 0;
    for (int i = 0; i < MIX_THREADS; i++)
        insufficient += m[i].insufficient;
    assert_true(insufficient > 0); /* the balance did run dry along the way */
    for (int a = 0; a < MIX_ACCOUNTS; a++) {
        int64_t credited = base.credited[a];
        for (int i = 0; i < N; i++) {
            assert_int_equal(m[i].bad, 0);
            credited += m[i].credited[a];
        }
        otp_account_stats st = stats(c->s, base.acc[a]); /* balance == ledger sum, >= 0 */
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT coalesce(sum(amount), 0) FROM ledger WHERE account_id = %" PRId64
                 " AND type = 'credit'",
                 base.acc[a]);
        assert_int_equal(B->raw_int(c->url, sql), credited);
        /* every refund matches one failed, charged message, once */
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM ledger l WHERE l.account_id = %" PRId64
                 " AND l.type = 'refund' AND NOT EXISTS (SELECT 1 FROM messages m"
                 " WHERE m.public_id = l.message_id AND m.status = 'failed'"
                 " AND m.refunded = 1 AND m.charge = l.amount)",
                 base.acc[a]);
        assert_int_equal(B->raw_int(c->url, sql), 0);
        snprintf(
            sql, sizeof(sql),
            "SELECT count(*) - count(DISTINCT message_id) FROM ledger WHERE account_id = %" PRId64
            " AND type = 'refund'",
            base.acc[a]);
        assert_int_equal(B->raw_int(c->url, sql), 0);
        /* and the debits are exactly what the stored messages were charged */
        snprintf(sql, sizeof(sql),
                 "SELECT (SELECT coalesce(-sum(amount), 0) FROM ledger WHERE account_id = %" PRId64
                 " AND type = 'debit') - (SELECT coalesce(sum(charge), 0) FROM messages"
                 " WHERE account_id = %" PRId64 ")",
                 base.acc[a], base.acc[a]);
        assert_int_equal(B->raw_int(c->url, sql), 0);
        assert_true(st.requests > 0);
    }
}

/* ---- runner ------------------------------------------------------------------------------- */

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int store_lifecycle_run(void)
{
    char name[128];
    snprintf(name, sizeof(name), "%s_lifecycle", B->name);
    const struct CMUnitTest tests[] = {
        T(t_idem_replay),
        T(t_idem_failure_not_remembered),
        T(t_idem_commit_failure),
        T(t_idem_same_batch),
        T(t_idem_parallel),
        T(t_idem_resend),
        T(t_resend_errors_in_order),
        T(t_resend_rotate_effects),
        T(t_resend_leaves_taken_messages),
        T(t_resend_reuse_keeps_hash),
        T(t_resend_test_key),
        T(t_failed_half_way_leaves_nothing),
        T(t_cancel),
        T(t_verify_erases_sealed_code),
        T(t_account_set),
        T(t_templates),
        T(t_delivery_reports),
        T(t_purge),
        T(t_purge_traffic),
        T(t_purge_abuse_tables),
        T(t_send_handed_off),
        T(t_request_and_message_reads),
        T(t_ledger_list),
        T(t_test_inbox),
        T(t_randomized_ledger),
    };
    return _cmocka_run_group_tests(name, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}
