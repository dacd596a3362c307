/* store/postgres.c — the PostgreSQL backend: a connection pool that many otpd
 * nodes can share one database through.
 *
 * Writes. submit() appends the txn to a queue under a mutex and returns: HTTP
 * threads never wait for the database. pool_size worker threads serve the queue,
 * each with its own connection, making blocking libpq calls. A worker takes one
 * txn, runs it as one transaction of its own, and calls txn->done once
 * PostgreSQL has answered the COMMIT (with synchronous_commit on, the commit
 * record is on disk by then): a txn is acknowledged only once it is durable.
 * There is no group commit here as in the SQLite backend: PostgreSQL groups the
 * WAL flushes of concurrent commits by itself, so throughput grows with the
 * number of connections in flight (see MEASURED.md), and one transaction per
 * txn gives each its own fate without savepoints. A worker connects on its
 * first txn, and work goes to idle workers that are connected first, so a node
 * opens only as many connections as it ever ran txns at once (a CLI command
 * opens two, not nine). Every connection carries a statement timeout (30 s) and
 * an idle-in-transaction timeout (60 s) unless the URL sets its own options: a
 * worker never waits forever on a lock, and a node frozen half-way through a
 * transaction gives its row locks back.
 *
 * Round trips. Most txns are one call of a server-side function created by the
 * migrations (otp_send, otp_resend, otp_report, …) or one statement, sent as a
 * single prepared statement outside any BEGIN: PostgreSQL runs it in an implicit
 * transaction that it commits before it answers, so a send, a resend, a claim
 * or a report costs one round trip however many rows it touches. Business
 * errors that must leave nothing behind (insufficient balance, resend too soon)
 * are raised by the function with SQLSTATE OTP01, which rolls back everything
 * the call wrote. VERIFY is the exception (postgres_txn.c): two round trips in
 * one pipelined transaction, so that the code comparison is constant-time in C
 * and the state machine is otp_req_guess() itself.
 *
 * Atomicity across nodes comes from row locks, not from this process: a wallet
 * debit is a conditional UPDATE (balance >= charge) behind CHECK (balance >= 0);
 * a guess locks its request row; an idempotency key is INSERT … ON CONFLICT DO
 * NOTHING, so a concurrent duplicate waits for the first transaction and then
 * replays it (or becomes the first if it rolled back); a credit looks for its
 * reference only once it holds the account's row lock, so of two credits with
 * one reference the second finds the first; the outbox is claimed with FOR
 * UPDATE SKIP LOCKED and a lease.
 *
 * A transaction that lost a deadlock or a serialization check was rolled back
 * whole by the server, so the worker runs it again (up to PG_MAX_TRIES). A txn
 * whose connection broke is never run again: the server may have committed it
 * before the answer was lost, so the caller gets OTP_E_UNAVAILABLE (a client
 * retries with its idempotency key). A broken connection is re-opened before
 * the next txn.
 *
 * Reads borrow a connection from a small read pool (opened on demand up to
 * 2 x read_conns), run one prepared statement and give the connection back before
 * calling the caller's callbacks; they are safe from any thread. Each read is
 * one statement, so what it returns is one snapshot.
 *
 * done() callbacks run on the worker threads after the commit; they must be
 * short. close() stops accepting (a later submit() completes at once with
 * OTP_E_UNAVAILABLE), lets the workers drain the queue, joins them, then closes
 * every connection.
 */
#include "store/postgres.h"
#include "store/postgres_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameters ---- */

static int p_slot(pg_params *p)
{
    /* The statements have fixed arities far below PG_MAX_PARAMS: overflowing is a
     * programming error, caught by the server as a parameter count mismatch. */
    return p->n < PG_MAX_PARAMS ? p->n++ : PG_MAX_PARAMS - 1;
}

void pg_p_int(pg_params *p, int64_t v)
{
    int i = p_slot(p);
    snprintf(p->num[i], sizeof(p->num[i]), "%lld", (long long)v);
    p->v[i] = p->num[i];
    p->len[i] = 0;
    p->fmt[i] = 0;
}

void pg_p_bool(pg_params *p, bool v)
{
    pg_p_text(p, v ? "t" : "f");
}

void pg_p_text(pg_params *p, const char *v)
{
    int i = p_slot(p);
    p->v[i] = v;
    p->len[i] = 0;
    p->fmt[i] = 0;
}

void pg_p_text_opt(pg_params *p, const char *v)
{
    pg_p_text(p, v && *v ? v : NULL);
}

void pg_p_bytea(pg_params *p, const void *v, size_t n)
{
    int i = p_slot(p);
    p->v[i] = v;
    p->len[i] = (int)n;
    p->fmt[i] = 1;
}

void pg_p_null(pg_params *p)
{
    pg_p_text(p, NULL);
}

/* ---- results ---- */

const char *pg_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

int64_t pg_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

void pg_copy(const PGresult *r, int row, int col, char *dst, size_t n)
{
    snprintf(dst, n, "%s", pg_text(r, row, col));
}

int pg_bytea(const PGresult *r, int row, int col, uint8_t **ret, size_t *ret_len)
{
    *ret = NULL;
    *ret_len = 0;
    if (PQgetisnull(r, row, col))
        return 0;
    size_t len = 0;
    unsigned char *v = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &len);
    if (!v)
        return -1;
    if (len == 0) {
        PQfreemem(v);
        return 0;
    }
    uint8_t *copy = malloc(len);
    if (copy)
        memcpy(copy, v, len);
    PQfreemem(v);
    if (!copy)
        return -1;
    *ret = copy;
    *ret_len = len;
    return 0;
}

/* ---- text ---- */

/* Length of the valid UTF-8 sequence at s, 0 if there is none. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return (size_t)n;
}

const char *pg_clean_utf8(const char *in, char *buf, size_t size)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    while (s[i]) {
        size_t n = utf8_seq(s + i);
        if (!n)
            break;
        i += n;
    }
    if (!s[i])
        return in;
    size_t o = 0;
    for (i = 0; s[i] && o + 1 < size;) {
        size_t n = utf8_seq(s + i);
        if (!n) {
            buf[o++] = '?';
            i++;
        } else if (o + n < size) {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        } else
            break;
    }
    buf[o] = '\0';
    return buf;
}

bool pg_utf8_valid(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t n; *u; u += n)
        if (!(n = utf8_seq(u)))
            return false;
    return true;
}

/* ---- connections and statements ---- */

/* The first line of libpq's message (it may span several), for err. */
static void first_line(const char *msg, char *err, size_t errlen)
{
    size_t n = strcspn(msg ? msg : "", "\n");
    snprintf(err, errlen, "%.*s", (int)n, msg ? msg : "");
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

pg_conn *pg_connect(const char *url, char *err, size_t errlen)
{
    /* Later keywords override earlier ones and the URL is expanded in place of
     * dbname, so anything the URL says wins over these defaults: a bounded
     * connect, TCP keepalives that notice a vanished server within a minute,
     * and server-side timeouts so that a worker never waits forever on a lock
     * (57014, answered OTP_E_UNAVAILABLE) and a session that stopped half-way
     * through a transaction (a frozen node) gives its row locks back. */
    const char *const keys[] = {
        "connect_timeout", "keepalives_idle", "keepalives_interval",       "keepalives_count",
        "options",         "dbname",          "fallback_application_name", NULL};
    const char *const values[] = {"5",
                                  "30",
                                  "10",
                                  "3",
                                  "-c statement_timeout=30s"
                                  " -c idle_in_transaction_session_timeout=60s",
                                  url,
                                  "otpd",
                                  NULL};
    pg_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->conn = PQconnectdbParams(keys, values, 1);
    if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
        char why[256];
        first_line(c->conn ? PQerrorMessage(c->conn) : "out of memory", why, sizeof(why));
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", why);
        PQfinish(c->conn);
        free(c);
        return NULL;
    }
    /* The server's notices ("relation already exists, skipping") would go to
     * stderr by default: library code does not print. */
    PQsetNoticeProcessor(c->conn, ignore_notice, NULL);
    return c;
}

void pg_disconnect(pg_conn *c)
{
    if (!c)
        return;
    PQfinish(c->conn);
    free(c);
}

static const char *stmt_sql(pg_stmt i)
{
    return pg_write_sql[i] ? pg_write_sql[i] : pg_read_sql[i];
}

void pg_note_state(pg_conn *c, const PGresult *r)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", st ? st : "08000");
}

int pg_prepare(pg_conn *c, pg_stmt i)
{
    if (c->prepared[i])
        return 0;
    char name[16];
    snprintf(name, sizeof(name), "s%d", (int)i);
    PGresult *r = PQprepare(c->conn, name, stmt_sql(i), 0, NULL);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        pg_note_state(c, r);
    PQclear(r);
    if (!ok)
        return -1;
    c->prepared[i] = true;
    return 0;
}

PGresult *pg_run(pg_conn *c, pg_stmt i, const pg_params *p)
{
    c->sqlstate[0] = '\0';
    if (pg_prepare(c, i) != 0)
        return NULL;
    char name[16];
    snprintf(name, sizeof(name), "s%d", (int)i);
    PGresult *r = PQexecPrepared(c->conn, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                                 p ? p->fmt : NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        pg_note_state(c, r);
    return r;
}

otp_err pg_err_by_code(const char *code)
{
    for (int e = 1; code && e < OTP_E__COUNT; e++)
        if (strcmp(otp_err_code((otp_err)e), code) == 0)
            return (otp_err)e;
    return OTP_E_INTERNAL;
}

/* Conditions that say "the database is not there or cannot take more right
 * now", as opposed to a bug: connection errors (08), too many connections or a
 * full disk (53), operator intervention (57: shutdown, cancel), system errors
 * (58), a lock timeout (55P03), a read-only replica (25006). */
static bool transient(const char *st)
{
    return strncmp(st, "08", 2) == 0 || strncmp(st, "53", 2) == 0 || strncmp(st, "57", 2) == 0 ||
           strncmp(st, "58", 2) == 0 || strcmp(st, "55P03") == 0 || strcmp(st, "25006") == 0 ||
           strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0;
}

otp_err pg_result_err(const pg_conn *c, const PGresult *r)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return OTP_OK;
    if (strcmp(c->sqlstate, PG_SQLSTATE_OTP) == 0)
        return pg_err_by_code(r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL);
    if (PQstatus(c->conn) != CONNECTION_OK || transient(c->sqlstate))
        return OTP_E_UNAVAILABLE;
    return OTP_E_INTERNAL;
}

bool pg_retryable(const pg_conn *c)
{
    return strcmp(c->sqlstate, "40001") == 0 || strcmp(c->sqlstate, "40P01") == 0;
}

/* ---- the read pool ---- */

pg_conn *pg_reader_get(pg_store *s, otp_err *ret_err)
{
    pthread_mutex_lock(&s->rlock);
    while (!s->rfree && s->n_readers >= s->max_readers)
        pthread_cond_wait(&s->rcond, &s->rlock);
    pg_conn *c = s->rfree;
    if (c) {
        s->rfree = c->next;
        pthread_mutex_unlock(&s->rlock);
        c->next = NULL;
        if (PQstatus(c->conn) == CONNECTION_OK)
            return c;
        PQreset(c->conn); /* lost since its last use (server restart, failover) */
        if (PQstatus(c->conn) == CONNECTION_OK) {
            memset(c->prepared, 0, sizeof(c->prepared));
            return c;
        }
        pg_disconnect(c);
        pthread_mutex_lock(&s->rlock);
        s->n_readers--;
        pthread_cond_signal(&s->rcond);
        pthread_mutex_unlock(&s->rlock);
        *ret_err = OTP_E_UNAVAILABLE;
        return NULL;
    }
    s->n_readers++; /* a slot for a new connection, opened outside the lock */
    pthread_mutex_unlock(&s->rlock);
    char err[256];
    c = pg_connect(s->url, err, sizeof(err));
    if (c)
        return c;
    pthread_mutex_lock(&s->rlock);
    s->n_readers--;
    pthread_cond_signal(&s->rcond);
    pthread_mutex_unlock(&s->rlock);
    *ret_err = OTP_E_UNAVAILABLE;
    return NULL;
}

void pg_reader_put(pg_store *s, pg_conn *c)
{
    if (!c)
        return;
    bool bad = PQstatus(c->conn) != CONNECTION_OK ||
               PQtransactionStatus(c->conn) != PQTRANS_IDLE; /* never hand on a half-done one */
    if (bad) {
        pg_disconnect(c);
        c = NULL;
    }
    pthread_mutex_lock(&s->rlock);
    if (c) {
        c->next = s->rfree;
        s->rfree = c;
    } else {
        s->n_readers--;
    }
    pthread_cond_signal(&s->rcond);
    pthread_mutex_unlock(&s->rlock);
}

/* ---- the workers ---- */

/* Outputs that hold memory start empty, so that failing a txn that never ran
 * frees nothing of the caller's. */
static void clear_outputs(otp_txn *t)
{
    if (t->kind == OTP_TXN_OUTBOX_CLAIM) {
        t->u.outbox_claim.msgs = NULL;
        t->u.outbox_claim.n = 0;
    } else if (t->kind == OTP_TXN_SEND || t->kind == OTP_TXN_RESEND) {
        otp_idem *idem = t->kind == OTP_TXN_SEND ? &t->u.send.idem : &t->u.resend.idem;
        idem->replayed = false;
        idem->replay_status = 0;
        idem->replay_response = NULL;
    }
}

/* Makes sure *cp is an open connection. Returns false if none can be had. */
static bool worker_conn(pg_store *s, pg_conn **cp)
{
    if (*cp && PQstatus((*cp)->conn) == CONNECTION_OK &&
        PQtransactionStatus((*cp)->conn) == PQTRANS_IDLE)
        return true;
    if (*cp) {
        PQreset((*cp)->conn);
        if (PQstatus((*cp)->conn) == CONNECTION_OK) {
            memset((*cp)->prepared, 0, sizeof((*cp)->prepared));
            return true;
        }
        pg_disconnect(*cp);
        *cp = NULL;
    }
    char err[256];
    *cp = pg_connect(s->url, err, sizeof(err));
    return *cp != NULL;
}

/* Runs one txn to its final outcome (retrying a rolled-back conflict) and
 * calls its done(). */
static void run_one(pg_store *s, pg_conn **cp, otp_txn *t)
{
    for (int tries = 1;; tries++) {
        if (!worker_conn(s, cp)) {
            t->err = OTP_E_UNAVAILABLE;
            break;
        }
        t->err = pg_txn_run(*cp, t);
        if (t->err == OTP_OK || !pg_retryable(*cp) || tries >= PG_MAX_TRIES)
            break;
        pg_txn_discard(t);
    }
    if (t->err != OTP_OK)
        pg_txn_discard(t);
    if (t->done)
        t->done(t);
}

/* Wakes one idle worker, a connected one if there is one. Under qlock. */
static void wake_one(pg_store *s)
{
    if (s->idle_hot > 0)
        pthread_cond_signal(&s->hot);
    else if (s->idle_cold > 0)
        pthread_cond_signal(&s->cold);
}

static void wake_all(pg_store *s)
{
    pthread_cond_broadcast(&s->hot);
    pthread_cond_broadcast(&s->cold);
}

/* Whether t may change the balance of account (a batch of that account's
 * sends does not reach past it, so they do not overtake it). */
static bool touches_balance(const otp_txn *t, int64_t account)
{
    switch (t->kind) {
    case OTP_TXN_WALLET_CREDIT:
        return t->u.wallet_credit.account_id == account;
    case OTP_TXN_RESEND:
        return t->u.resend.account_id == account;
    case OTP_TXN_CANCEL:
        return t->u.cancel.account_id == account;
    case OTP_TXN_ACCOUNT_SET:
        return t->u.account_set.account_id == account;
    default:
        return false;
    }
}

/* The lane t runs in: its account's id for a live send, minus it for a verify
 * (the two kinds batch apart), 0 for a txn that runs on its own. */
static int64_t lane_of(const otp_txn *t)
{
    if (pg_send_batchable(t))
        return t->u.send.account_id;
    if (pg_verify_batchable(t))
        return -t->u.verify.account_id;
    return 0;
}

/* Whether a verify batch of account must not reach past t: a resend or a
 * cancel changes requests the batch's guesses may be on. */
static bool touches_requests(const otp_txn *t, int64_t account)
{
    return (t->kind == OTP_TXN_RESEND && t->u.resend.account_id == account) ||
           (t->kind == OTP_TXN_CANCEL && t->u.cancel.account_id == account);
}

/* Whether t may join the batch that starts at head (lane lane). NULL: stop
 * looking further down the queue. */
static bool joins(const otp_txn *head, int64_t lane, const otp_txn *t, bool *stop)
{
    *stop = false;
    if (lane > 0) {
        if (touches_balance(t, lane)) {
            *stop = true;
            return false;
        }
        return pg_send_batchable(t) && t->u.send.account_id == lane;
    }
    if (touches_requests(t, -lane)) {
        *stop = true;
        return false;
    }
    if (!pg_verify_batchable(t) || t->u.verify.account_id != -lane)
        return false;
    /* One guess per request in a batch: a second waits for the next. */
    for (const otp_txn *b = head; b; b = b->next)
        if (strncmp(b->u.verify.request_id, t->u.verify.request_id, OTP_ID_SIZE) == 0) {
            *stop = true;
            return false;
        }
    return true;
}

static bool lane_busy(const pg_store *s, int64_t account)
{
    for (int i = 0; i < s->n_busy; i++)
        if (s->busy[i] == account)
            return true;
    return false;
}

/* Unlinks t (whose predecessor is prev, NULL at the head) from the queue. */
static void unlink_txn(pg_store *s, otp_txn *prev, otp_txn *t)
{
    if (prev)
        prev->next = t->next;
    else
        s->qhead = t->next;
    if (s->qtail == t)
        s->qtail = prev;
    t->next = NULL;
}

/* The next work for a worker, or NULL if nothing queued may run now. Under
 * qlock; returns txns linked through next.
 *
 * All live sends of one account serialise on its wallet row, whose lock is
 * held until the commit's WAL flush: committed one by one they cap an account
 * at one flush per send, and a crowd of transactions waiting on one row makes
 * it worse. So a node runs the live sends of an account in one lane: while a
 * worker has some of that account's sends in flight, the others leave them
 * queued, and the worker that frees the lane takes everything of the account
 * queued meanwhile (PG_BATCH_MAX at most, looking PG_BATCH_SCAN deep, never
 * past a txn that may change that balance) to commit it in one transaction.
 * Under load an account's sends thus commit in batches, as in the SQLite
 * backend; when idle a send goes alone at once. An account's verifies have a
 * lane of their own, for the same reason: each successful guess adds to the
 * account's conversion counters (the pumping rule's rows), locked until the
 * commit, so one by one they would also wait for each other's flushes. A
 * verify batch holds one guess per request and does not reach past a resend or
 * a cancel of the account. Other txns run in queue order on any free worker. */
static otp_txn *take(pg_store *s)
{
    otp_txn *prev = NULL, *t = s->qhead;
    for (int scanned = 0; t && scanned < PG_BATCH_SCAN; scanned++) {
        if (!lane_of(t) || !lane_busy(s, lane_of(t)))
            break;
        prev = t;
        t = t->next;
    }
    if (!t || (lane_of(t) && lane_busy(s, lane_of(t))))
        return NULL;
    otp_txn *scan = t->next;
    unlink_txn(s, prev, t);
    s->batches++;
    s->batched_txns++;
    int64_t lane = lane_of(t);
    if (!lane)
        return t;
    s->busy[s->n_busy++] = lane;
    otp_txn *tail = t;
    int n = 1;
    for (int scanned = 0; scan && n < PG_BATCH_MAX && scanned < PG_BATCH_SCAN; scanned++) {
        otp_txn *next = scan->next;
        bool stop;
        bool join = joins(t, lane, scan, &stop);
        if (stop)
            break;
        if (join) {
            unlink_txn(s, prev, scan);
            tail->next = scan;
            tail = scan;
            n++;
            s->batched_txns++;
        } else {
            prev = scan;
        }
        scan = next;
    }
    return t;
}

/* Frees the lane of account (its batch is done). Under qlock. */
static void lane_free(pg_store *s, int64_t account)
{
    for (int i = 0; i < s->n_busy; i++)
        if (s->busy[i] == account) {
            s->busy[i] = s->busy[--s->n_busy];
            return;
        }
}

/* Runs a batch from take() of two or more sends or verifies and calls each
 * done(). */
static void run_batch(pg_store *s, pg_conn **cp, otp_txn *head)
{
    otp_txn *txns[PG_BATCH_MAX];
    bool again[PG_BATCH_MAX];
    size_t n = 0;
    for (otp_txn *t = head; t && n < PG_BATCH_MAX; t = t->next)
        txns[n++] = t;
    if (worker_conn(s, cp)) {
        if (pg_send_batchable(head))
            pg_send_batch(*cp, txns, n, again);
        else
            pg_verify_batch(*cp, txns, n, again);
    } else {
        for (size_t i = 0; i < n; i++) {
            txns[i]->err = OTP_E_UNAVAILABLE;
            again[i] = false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (again[i]) {
            run_one(s, cp, txns[i]);
            continue;
        }
        if (txns[i]->err != OTP_OK)
            pg_txn_discard(txns[i]);
        if (txns[i]->done)
            txns[i]->done(txns[i]); /* may free it: the array holds what is left */
    }
}

static void *worker_main(void *arg)
{
    pg_store *s = arg;
    pg_conn *c = NULL; /* opened on the first txn: an idle pool costs no server process */
    pthread_setname_np(pthread_self(), "otpd-pg");
    pthread_mutex_lock(&s->qlock);
    for (;;) {
        otp_txn *head = NULL;
        bool grouped = false;
        if (s->qhead && s->group > 0) { /* what a test queued while paused, alone, in order */
            head = s->qhead;
            otp_txn *tail = head;
            for (int i = 1; i < s->group && tail->next; i++)
                tail = tail->next;
            s->group = 0;
            s->qhead = tail->next;
            if (!s->qhead)
                s->qtail = NULL;
            tail->next = NULL;
            grouped = true;
        } else if (s->qhead && !s->paused) {
            head = take(s);
        }
        if (!head) {
            if (s->closing && !s->qhead) {
                /* Others may wait for a lane this worker held: nothing wakes
                 * them once the queue is empty, so this does. */
                wake_all(s);
                break;
            }
            if (c) {
                s->idle_hot++;
                pthread_cond_wait(&s->hot, &s->qlock);
                s->idle_hot--;
            } else {
                s->idle_cold++;
                pthread_cond_wait(&s->cold, &s->qlock);
                s->idle_cold--;
            }
            continue;
        }
        if (s->qhead)
            wake_one(s);
        pthread_mutex_unlock(&s->qlock);

        int64_t lane = grouped ? 0 : lane_of(head);
        if (head->next && !grouped) {
            run_batch(s, &c, head);
        } else {
            /* done() may free its txn: read next first, touch nothing after. */
            for (otp_txn *t = head, *next; t; t = next) {
                next = t->next;
                run_one(s, &c, t);
            }
        }

        pthread_mutex_lock(&s->qlock);
        if (lane) {
            lane_free(s, lane);
            if (s->qhead)
                wake_one(s); /* sends of that account may have been waiting for the lane */
        }
    }
    pthread_mutex_unlock(&s->qlock);
    pg_disconnect(c);
    return NULL;
}

/* ---- the ops ---- */

static void pg_submit(otp_store *base, otp_txn *txn)
{
    pg_store *s = (pg_store *)base;
    txn->next = NULL;
    txn->err = OTP_OK;
    clear_outputs(txn);
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
    wake_one(s);
    pthread_mutex_unlock(&s->qlock);
}

static void pg_close(otp_store *base)
{
    pg_store *s = (pg_store *)base;
    if (!s)
        return;
    if (s->n_workers > 0) {
        pthread_mutex_lock(&s->qlock);
        s->closing = true;
        if (s->paused) { /* what a paused test queued still runs in order */
            int n = 0;
            for (otp_txn *t = s->qhead; t; t = t->next)
                n++;
            s->group = n;
        }
        s->paused = false;
        wake_all(s);
        pthread_mutex_unlock(&s->qlock);
        for (int i = 0; i < s->n_workers; i++)
            pthread_join(s->workers[i], NULL);
    }
    if (s->sync_init) {
        for (pg_conn *c = s->rfree, *next; c; c = next) {
            next = c->next;
            pg_disconnect(c);
        }
        pthread_mutex_destroy(&s->qlock);
        pthread_cond_destroy(&s->hot);
        pthread_cond_destroy(&s->cold);
        pthread_mutex_destroy(&s->rlock);
        pthread_cond_destroy(&s->rcond);
    }
    free(s->workers);
    free(s->busy);
    free(s->url);
    free(s);
}

static int pg_read_slots(otp_store *base)
{
    return ((pg_store *)base)->read_threads;
}

static const otp_store_ops postgres_ops = {
    .name = "postgres",
    .close = pg_close,
    .submit = pg_submit,
    .read_slots = pg_read_slots,
    .schema_version = pg_schema_version,
    .key_lookup = pg_key_lookup,
    .account_find = pg_account_find,
    .account_get = pg_account_get,
    .account_list = pg_account_list,
    .key_list = pg_key_list,
    .account_stats = pg_account_stats,
    .outbox_depth = pg_outbox_depth,
    .request_get = pg_request_get,
    .request_messages = pg_request_messages,
    .request_status = pg_request_status,
    .message_get = pg_message_get,
    .ledger_list = pg_ledger_list,
    .template_find = pg_template_find,
    .template_list = pg_template_list,
    .test_inbox = pg_test_inbox,
    .limits_get = pg_limits_get,
    .key_take = pg_key_take,
    .block_list = pg_block_list,
    .admin_key_lookup = pg_admin_key_lookup,
    .admin_key_list = pg_admin_key_list,
};

int otp_store_postgres_open(const char *url, const otp_store_options *opt, otp_store **ret,
                            char *err, size_t errlen)
{
    if (!PQisthreadsafe()) {
        snprintf(err, errlen, "libpq was built without thread safety");
        return -1;
    }
    pg_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->url = strdup(url))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->base.ops = &postgres_ops;
    s->pool_size = opt && opt->pool_size > 0 ? opt->pool_size : PG_DEFAULT_POOL;
    if (s->pool_size > PG_MAX_POOL)
        s->pool_size = PG_MAX_POOL;
    s->read_threads = opt && opt->read_conns > 0 ? opt->read_conns : PG_DEFAULT_READERS;
    if (s->read_threads > PG_MAX_POOL)
        s->read_threads = PG_MAX_POOL;
    /* Room for a connection per read thread (api/reads.c), and as many again
     * for the reads an HTTP thread makes when no read thread will take them
     * (after a stop, or with no memory for a job). Opened on demand. */
    s->max_readers = 2 * s->read_threads;

    bool q = false, h = false, cd = false, r = false;
    q = pthread_mutex_init(&s->qlock, NULL) == 0;
    h = q && pthread_cond_init(&s->hot, NULL) == 0;
    cd = h && pthread_cond_init(&s->cold, NULL) == 0;
    r = cd && pthread_mutex_init(&s->rlock, NULL) == 0;
    if (r && pthread_cond_init(&s->rcond, NULL) == 0) {
        s->sync_init = true;
    } else {
        if (r)
            pthread_mutex_destroy(&s->rlock);
        if (cd)
            pthread_cond_destroy(&s->cold);
        if (h)
            pthread_cond_destroy(&s->hot);
        if (q)
            pthread_mutex_destroy(&s->qlock);
        snprintf(err, errlen, "cannot create the store's locks");
        goto fail;
    }

    /* The first connection checks (or migrates) the schema, then becomes the
     * first connection of the read pool. */
    pg_conn *c = pg_connect(url, err, errlen);
    if (!c)
        goto fail;
    if (pg_schema_open(c, opt && opt->migrate, err, errlen)) {
        pg_disconnect(c);
        goto fail;
    }
    s->rfree = c;
    s->n_readers = 1;

    s->workers = calloc((size_t)s->pool_size, sizeof(*s->workers));
    s->busy = calloc((size_t)s->pool_size, sizeof(*s->busy));
    if (!s->workers || !s->busy) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (; s->n_workers < s->pool_size; s->n_workers++)
        if (pthread_create(&s->workers[s->n_workers], NULL, worker_main, s) != 0)
            break;
    if (s->n_workers == 0) {
        snprintf(err, errlen, "cannot start the store's worker threads");
        goto fail;
    }
    *ret = &s->base;
    return 0;
fail:
    pg_close(&s->base);
    return -1;
}

#if OTPD_TEST_HOOKS
void otp_postgres_test_hold(otp_store *base, bool held)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->qlock);
    s->paused = held;
    if (!held)
        wake_all(s);
    pthread_mutex_unlock(&s->qlock);
}

void otp_postgres_test_counters(otp_store *base, uint64_t *ret_batches, uint64_t *ret_txns)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->qlock);
    *ret_batches = s->batches;
    *ret_txns = s->batched_txns;
    pthread_mutex_unlock(&s->qlock);
}

void otp_postgres_test_pause(otp_store *base, bool paused)
{
    pg_store *s = (pg_store *)base;
    pthread_mutex_lock(&s->qlock);
    if (s->paused && !paused) {
        int n = 0;
        for (otp_txn *t = s->qhead; t; t = t->next)
            n++;
        s->group = n;
    }
    s->paused = paused;
    if (!paused)
        wake_all(s);
    pthread_mutex_unlock(&s->qlock);
}
#endif
