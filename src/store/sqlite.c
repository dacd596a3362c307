/* store/sqlite.c — the embedded SQLite backend: one writer thread, group commit.
 *
 * Durability is the expensive part of a write: with synchronous=FULL each COMMIT
 * costs an fsync (~0.1–0.3 ms here), so committing every request alone caps the
 * whole service near 7k writes/s whatever the CPU does. This backend therefore
 * never commits one request at a time. Every write is a txn (store.h) handed to
 * submit(), which only appends it to a queue under a mutex and returns; HTTP
 * threads never wait for the disk. One writer thread owns the one write
 * connection. It takes everything queued (at most max_batch txns), opens one
 * BEGIN IMMEDIATE transaction, runs the txns one after the other (those queued
 * meanwhile join at the end, up to max_batch in all), COMMITs once, and only
 * then calls every txn's done(): a txn is acknowledged only once it is
 * durable, and the fsync is shared by the whole batch. The busier the
 * service, the bigger the batches, so throughput grows with load instead of
 * collapsing under it; an idle service still commits a lone txn at once.
 *
 * The txns of one batch are independent: a txn that fails — with a business
 * error (insufficient balance, unknown key) or an SQL error — leaves no trace,
 * while the others in the batch go on. A business error that is itself a write
 * (a wrong code uses up an attempt) is kept. The obvious tool is one SAVEPOINT
 * per txn, but it is not free: inside a savepoint SQLite copies every page that
 * an earlier txn of the batch already dirtied into a sub-journal before changing
 * it, which measured ~35% of the writer's CPU per send. So the batch runs
 * optimistically without savepoints, relying on this contract of the txn bodies
 * (sqlite_txn.c): a business error is decided before the first write, and a
 * failed statement undoes itself (SQLite's statement atomicity). A txn that fails
 * having written nothing (sqlite3_total_changes64() did not move) needs no
 * undo. Only if a txn fails after writing — an SQL error half-way through, such
 * as a duplicate id — is the whole batch rolled back and run again from the
 * start, this time with one savepoint per txn. No done() has been called before
 * the COMMIT, so the first attempt's outcomes are simply replaced.
 *
 * If SQLite loses the whole transaction (I/O error, disk full) or the COMMIT
 * fails, nothing of the batch is stored and every txn in it gets
 * OTP_E_UNAVAILABLE: a txn is never reported as done when it was not stored.
 *
 * The business decisions that must be atomic with their writes (the wallet
 * check, the attempt counter) run inside the txn bodies (sqlite_txn.c); since one
 * thread runs them in order, they cannot race with each other, and BEGIN
 * IMMEDIATE (with a 5 s busy timeout) serialises them with other processes on the
 * same file, such as the CLI.
 *
 * Reads do not go through the writer: each reading thread has its own read-only
 * connection with its own cached statements (sqlite_read.c), and WAL lets them
 * run beside the writer on the last committed snapshot.
 *
 * done() callbacks run on the writer thread, one after the other, after the
 * commit: they must be short and must never wait on the store (an
 * otp_store_exec() from a done() would wait for the thread that runs it).
 *
 * Checkpoints (copying the WAL into the database file, with its fsync) do not
 * run inside the writer's COMMIT as SQLite's automatic checkpoint would: a WAL
 * hook on the write connection hands them to a checkpointer thread with its own
 * connection (sqlite_checkpoint.c). The writer only checkpoints the last few
 * frames itself now and then so that the WAL can start over, and everything
 * inline if the WAL passes a hard cap. A COMMIT that returned is durable either
 * way: done() still follows it.
 *
 * close() stops accepting (a later submit() completes at once with
 * OTP_E_UNAVAILABLE, on the caller's thread), lets the writer drain and commit
 * everything already queued, joins it, stops the checkpointer (after the
 * checkpoint it is in), then closes every connection.
 *
 * Erased outbox texts: secure_delete=ON overwrites deleted content in the
 * database pages; old copies can remain in the WAL file until it is checkpointed
 * and reused, which is one reason the text is stored sealed (AEAD) in the first
 * place.
 */
#include "store/sqlite.h"
#include "store/sqlite_internal.h"
#include "util/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t store_serials;

/* ---- the writer ---- */

/* Fails every txn of a batch: nothing of it was stored. What successful bodies
 * allocated for their callers is freed (submit() cleared the claim outputs of
 * the txns that did not run, so this is safe for those too). */
static void fail_batch(otp_txn *head, otp_err e)
{
    for (otp_txn *t = head; t; t = t->next) {
        sq_txn_discard(t);
        t->err = e;
    }
}

/* Steps one of the transaction-control statements. Returns the SQLite code. */
static int control(sq_store *s, sq_wstmt i)
{
    int rc = sqlite3_step(s->w[i]);
    sqlite3_reset(s->w[i]);
    return rc;
}

enum { BATCH_COMMITTED, BATCH_LOST, BATCH_REPLAY };

/* COMMIT, timed into the commit histogram (whatever its outcome). */
static int timed_commit(sq_store *s)
{
    int64_t start = otp_mono_us();
    int rc = control(s, W_COMMIT);
    int64_t us = otp_mono_us() - start;
    size_t b = 0;
    while (b < OTP_COMMIT_BUCKETS && (double)us > otp_commit_bounds_s[b] * 1e6)
        b++;
    atomic_fetch_add_explicit(&s->commit_buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->commit_sum_us, (uint64_t)(us > 0 ? us : 0), memory_order_relaxed);
    return rc;
}

/* Detaches up to `room` (>= 1) txns from the head of the queue, qlock held;
 * returns them as a NULL-terminated list (NULL if none) and how many in *n. */
static otp_txn *take_queued(sq_store *s, int room, int *n)
{
    otp_txn *head = s->qhead, *end = head;
    *n = 0;
    if (!head)
        return NULL;
    for (*n = 1; *n < room && end->next; (*n)++)
        end = end->next;
    s->qhead = end->next;
    if (!s->qhead)
        s->qtail = NULL;
    end->next = NULL;
    s->batched_txns += (uint64_t)*n;
    return head;
}

/* Moves up to `room` queued txns to the end of the batch whose last txn is
 * `last`; returns how many. */
static int join_queued(sq_store *s, otp_txn *last, int room)
{
    int n = 0;
    pthread_mutex_lock(&s->qlock);
    if (!s->paused)
        last->next = take_queued(s, room, &n);
    pthread_mutex_unlock(&s->qlock);
    return n;
}

/* One attempt at the batch (a NULL-terminated list of *n txns) in one
 * transaction; sets every txn->err. Txns queued while the batch ran join it
 * before the COMMIT (as many as max_batch allows, *n counts them): they would
 * otherwise wait for this COMMIT and then pay one of their own. Without
 * savepoints, returns BATCH_REPLAY (after rolling back) as soon as a txn fails
 * after having written something. BATCH_LOST: nothing is stored (the
 * transaction could not start, SQLite lost it, or COMMIT failed). */
static int attempt(sq_store *s, otp_txn *head, int *n, bool savepoints)
{
    if (control(s, W_BEGIN) != SQLITE_DONE)
        return BATCH_LOST;
    for (otp_txn *t = head; t; t = t->next) {
        bool keep = false;
#if OTPD_TEST_HOOKS
        if (s->test_before_txn)
            s->test_before_txn(s->test_before_txn_arg, t);
#endif
        if (savepoints && control(s, W_SAVEPOINT) != SQLITE_DONE)
            goto lost;
        int64_t before = sqlite3_total_changes64(s->wdb);
        t->err = sq_txn_run(s, t, &keep);
        if (sqlite3_get_autocommit(s->wdb)) /* SQLite rolled the whole batch back */
            goto lost;
        if (!keep && savepoints && control(s, W_ROLLBACK_TO) != SQLITE_DONE)
            goto lost;
        if (!keep && !savepoints && sqlite3_total_changes64(s->wdb) != before) {
            control(s, W_ROLLBACK);
            return BATCH_REPLAY;
        }
        if (savepoints && control(s, W_RELEASE) != SQLITE_DONE)
            goto lost;
        if (!t->next && *n < s->max_batch)
            *n += join_queued(s, t, s->max_batch - *n);
    }
    if (timed_commit(s) == SQLITE_DONE)
        return BATCH_COMMITTED;
lost:
    if (!sqlite3_get_autocommit(s->wdb))
        control(s, W_ROLLBACK);
    return BATCH_LOST;
}

/* attempt(), then tells the in-memory pumping counters how the batch ended
 * (sqlite_traffic.c): their increments count only once committed. */
static int try_batch(sq_store *s, otp_txn *head, int *n, bool savepoints)
{
    int r = attempt(s, head, n, savepoints);
    sq_traffic_batch_end(s, r == BATCH_COMMITTED);
    return r;
}

/* Runs the batch and sets every txn->err; does not call done(). The first
 * attempt goes without savepoints (see the top of this file); if a txn left
 * partial writes behind, the batch is rolled back and run again with one
 * savepoint per txn, from the start: no done() has been called yet, so no
 * outcome of the first attempt has been seen by anyone. */
static void run_batch(sq_store *s, otp_txn *head, int n)
{
    int r = try_batch(s, head, &n, false);
    if (r == BATCH_REPLAY) {
        for (otp_txn *t = head; t; t = t->next) {
            sq_txn_discard(t);
            t->err = OTP_OK;
        }
        pthread_mutex_lock(&s->qlock);
        s->replays++;
        pthread_mutex_unlock(&s->qlock);
        r = try_batch(s, head, &n, true);
    }
    if (r != BATCH_COMMITTED)
        fail_batch(head, OTP_E_UNAVAILABLE);
}

static void *writer_main(void *arg)
{
    sq_store *s = arg;
    pthread_setname_np(pthread_self(), "otpd-store");
    for (;;) {
        pthread_mutex_lock(&s->qlock);
        while ((!s->qhead || s->paused) && !s->closing) {
            s->writer_idle = true;
            pthread_cond_wait(&s->qcond, &s->qlock);
            s->writer_idle = false;
        }
        int n;
        otp_txn *head = take_queued(s, s->max_batch, &n);
        if (!head) { /* closing, and nothing left */
            pthread_mutex_unlock(&s->qlock);
            break;
        }
        s->batches++;
        pthread_mutex_unlock(&s->qlock);

        run_batch(s, head, n);

        /* done() may free its txn (or reuse it): read next first, touch nothing after. */
        for (otp_txn *t = head, *next; t; t = next) {
            next = t->next;
            if (t->done)
                t->done(t);
        }
    }
    return NULL;
}

/* ---- the ops ---- */

static void sq_submit(otp_store *base, otp_txn *txn)
{
    sq_store *s = (sq_store *)base;
    txn->next = NULL;
    txn->err = OTP_OK;
    /* Outputs that hold memory start empty, so that failing a txn that never
     * ran (sq_txn_discard) frees nothing of the caller's. */
    if (txn->kind == OTP_TXN_OUTBOX_CLAIM) {
        txn->u.outbox_claim.msgs = NULL;
        txn->u.outbox_claim.n = 0;
    } else if (txn->kind == OTP_TXN_SEND || txn->kind == OTP_TXN_RESEND) {
        otp_idem *idem = txn->kind == OTP_TXN_SEND ? &txn->u.send.idem : &txn->u.resend.idem;
        idem->replayed = false;
        idem->replay_status = 0;
        idem->replay_response = NULL;
    }
    pthread_mutex_lock(&s->qlock);
    if (s->closing) {
        pthread_mutex_unlock(&s->qlock);
        txn->err = OTP_E_UNAVAILABLE;
        if (txn->done)
            txn->done(txn);
        return;
    }
    if (s->qtail)
        s->qtail->next = txn;
    else
        s->qhead = txn;
    s->qtail = txn;
    bool wake = s->writer_idle;
    pthread_mutex_unlock(&s->qlock);
    if (wake)
        pthread_cond_signal(&s->qcond);
}

static void sq_close(otp_store *base)
{
    sq_store *s = (sq_store *)base;
    if (!s)
        return;
    if (s->writer_started) {
        pthread_mutex_lock(&s->qlock);
        s->closing = true;
        pthread_mutex_unlock(&s->qlock);
        pthread_cond_signal(&s->qcond);
        pthread_join(s->writer, NULL);
    }
    /* Writes the pumping counts still in the writer's memory (sqlite_traffic.c). */
    sq_traffic_close(s);
    sq_ckpt_stop(s); /* before the connections: it removes the writer's WAL hook */
    if (s->sync_init) {
        sq_readers_close(s);
        pthread_mutex_destroy(&s->qlock);
        pthread_cond_destroy(&s->qcond);
        pthread_mutex_destroy(&s->rlock);
    }
    for (int i = 0; i < W__COUNT; i++)
        sqlite3_finalize(s->w[i]);
    sqlite3_close(s->wdb);
    free(s->path);
    free(s);
}

static void sq_commit_stats(otp_store *base, otp_commit_stats *ret)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->qlock);
    ret->batches = s->batches;
    ret->txns = s->batched_txns;
    pthread_mutex_unlock(&s->qlock);
    for (size_t b = 0; b <= OTP_COMMIT_BUCKETS; b++)
        ret->buckets[b] = atomic_load_explicit(&s->commit_buckets[b], memory_order_relaxed);
    ret->sum_us = atomic_load_explicit(&s->commit_sum_us, memory_order_relaxed);
}

static const otp_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .submit = sq_submit,
    .schema_version = sq_schema_version,
    .key_lookup = sq_key_lookup,
    .account_find = sq_account_find,
    .account_get = sq_account_get,
    .account_list = sq_account_list,
    .key_list = sq_key_list,
    .account_stats = sq_account_stats,
    .request_get = sq_request_get,
    .request_messages = sq_request_messages,
    .request_status = sq_request_status,
    .message_get = sq_message_get,
    .ledger_list = sq_ledger_list,
    .template_find = sq_template_find,
    .template_list = sq_template_list,
    .test_inbox = sq_test_inbox,
    .commit_stats = sq_commit_stats,
    .outbox_depth = sq_outbox_depth,
    .limits_get = sq_limits_get,
    .block_list = sq_block_list,
    .admin_key_lookup = sq_admin_key_lookup,
    .admin_key_list = sq_admin_key_list,
};

/* Test hook: a COMMIT fails (and is rolled back by SQLite) while fail_commits > 0. */
static int commit_hook(void *arg)
{
    sq_store *s = arg;
    int n = atomic_load(&s->fail_commits);
    while (n > 0)
        if (atomic_compare_exchange_weak(&s->fail_commits, &n, n - 1))
            return 1;
    return 0;
}

/* Process-wide settings, which sqlite3_config() takes only before anything
 * initializes SQLite (only the store uses SQLite in otpd, and this runs
 * first thing when it opens):
 * - no memory statistics: otpd never reads them, and keeping them puts one
 *   process-wide mutex around every allocation SQLite makes, on every thread
 *   (~170 lock/unlock pairs per send: 5% of a send's instructions and of a
 *   verify's, docs/performance.md);
 * - the page cache layer (sqlite_pcache.c).
 * A refusal leaves SQLite's defaults, which are only slower. */
static void configure_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sq_pcache_install();
}

int otp_store_sqlite_open(const char *path, const otp_store_options *opt, otp_store **ret,
                          char *err, size_t errlen)
{
    static pthread_once_t configured = PTHREAD_ONCE_INIT;

    if (sqlite3_libversion_number() < 3037000 || !sqlite3_threadsafe()) {
        snprintf(err, errlen, "SQLite %s is too old or single-threaded (need >= 3.37, threads)",
                 sqlite3_libversion());
        return -1;
    }
    pthread_once(&configured, configure_sqlite);
    if (!path || !*path) {
        snprintf(err, errlen, "empty SQLite database path");
        return -1;
    }
    sq_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(path))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->base.ops = &sqlite_ops;
    s->serial = atomic_fetch_add(&store_serials, 1) + 1;
    s->max_batch = opt && opt->max_batch > 0 ? opt->max_batch : SQ_DEFAULT_MAX_BATCH;
    atomic_init(&s->fail_commits, 0);
    for (size_t b = 0; b <= OTP_COMMIT_BUCKETS; b++)
        atomic_init(&s->commit_buckets[b], 0);
    atomic_init(&s->commit_sum_us, 0);

    if (pthread_mutex_init(&s->qlock, NULL) == 0) {
        if (pthread_cond_init(&s->qcond, NULL) == 0) {
            if (pthread_mutex_init(&s->rlock, NULL) == 0)
                s->sync_init = true;
            else
                pthread_cond_destroy(&s->qcond);
        }
        if (!s->sync_init)
            pthread_mutex_destroy(&s->qlock);
    }
    if (!s->sync_init) {
        snprintf(err, errlen, "cannot create the store's locks");
        goto fail;
    }
    if (sq_schema_open(s, opt && opt->migrate, err, errlen))
        goto fail;
    if (sq_txn_prepare(s, err, errlen))
        goto fail;
    if (OTPD_TEST_HOOKS)
        sqlite3_commit_hook(s->wdb, commit_hook, s);
    /* After sq_schema_open: its WAL hook replaces SQLite's automatic checkpoint
     * (and anything PRAGMA wal_autocheckpoint set there) on the write connection. */
    if (sq_ckpt_start(s, err, errlen))
        goto fail;
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        snprintf(err, errlen, "cannot start the store's writer thread");
        goto fail;
    }
    s->writer_started = true;
    *ret = &s->base;
    return 0;
fail:
    sq_close(&s->base);
    return -1;
}

#if OTPD_TEST_HOOKS
void otp_sqlite_test_pause(otp_store *base, bool paused)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->qlock);
    s->paused = paused;
    pthread_mutex_unlock(&s->qlock);
    pthread_cond_signal(&s->qcond);
}

void otp_sqlite_test_before_txn(otp_store *base, void (*fn)(void *arg, otp_txn *t), void *arg)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->qlock);
    s->test_before_txn = fn;
    s->test_before_txn_arg = arg;
    pthread_mutex_unlock(&s->qlock);
}

void otp_sqlite_test_fail_commits(otp_store *base, int n)
{
    atomic_store(&((sq_store *)base)->fail_commits, n);
}

void otp_sqlite_test_counters(otp_store *base, uint64_t *ret_batches, uint64_t *ret_txns,
                              uint64_t *ret_replays)
{
    sq_store *s = (sq_store *)base;
    pthread_mutex_lock(&s->qlock);
    *ret_batches = s->batches;
    *ret_txns = s->batched_txns;
    *ret_replays = s->replays;
    pthread_mutex_unlock(&s->qlock);
}
#endif
