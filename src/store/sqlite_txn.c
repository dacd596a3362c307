/* store/sqlite_txn.c — the body of every write txn, run by the writer thread.
 *
 * Each body runs inside the batch transaction opened by sqlite.c and only
 * touches the write connection's prepared statements (prepared once, reset and
 * rebound per use; strings and blobs are bound SQLITE_STATIC because a txn's
 * inputs live until its done() is called). A body never commits or rolls back:
 * it returns the txn's outcome and says whether its writes are to be kept.
 * Every statement is reset before the body returns, whatever happened, so no
 * statement stays active between txns.
 *
 * The rule every body follows, because the batch usually runs without
 * savepoints (see sqlite.c): decide every business error before the first
 * write. A body that returns an error without keeping its writes must have
 * written nothing, unless an SQL statement failed half-way, which the writer
 * detects and answers by replaying the batch with savepoints.
 *
 * Money: the balance is read, checked and then changed by a conditional UPDATE
 * (balance >= charge), under the write lock, with a CHECK (balance >= 0) behind
 * it, so it cannot go below zero whatever else runs; each balance change writes
 * a ledger row with the signed amount in the same txn, so the balance always
 * equals the ledger sum.
 */
#include "store/sqlite_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/otp_code.h"
#include "core/otp_state.h"

/* The WHERE repeats the partial index's condition so the planner uses it (a
 * test checks the plan). */
const char sq_outbox_due_sql[] =
    "SELECT m.id, m.public_id, r.public_id, m.account_id, m.to_phone,"
    " m.sealed_text, m.attempts, m.segments, m.created_at, r.expires_at"
    " FROM messages m JOIN otp_requests r ON r.id = m.request_id"
    " WHERE m.status IN ('queued','sending') AND m.next_attempt_at <= ?1"
    " ORDER BY m.next_attempt_at, m.id LIMIT ?2";

static const char *const wsql[W__COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SAVEPOINT] = "SAVEPOINT txn",
    [W_RELEASE] = "RELEASE txn",
    [W_ROLLBACK_TO] = "ROLLBACK TO txn",
    /* No RETURNING anywhere: SQLite buffers its rows in a temporary table per
     * execution, which costs more than a second statement. The writer holds the
     * write lock, so what a SELECT read stays true until the UPDATE that follows. */
    [W_DEBIT] = "UPDATE accounts SET balance = balance - ?1 WHERE id = ?2 AND balance >= ?1",
    [W_MONEY] = "SELECT balance, price_per_segment FROM accounts WHERE id = ?1",
    [W_REQ_INSERT] = "INSERT INTO otp_requests (public_id, account_id, key_id, test, phone,"
                     " code_hash, code_length, status, attempts_left, max_attempts, expires_in,"
                     " created_at, expires_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8, ?9, ?10, ?11)",
    [W_MSG_INSERT] = "INSERT INTO messages (public_id, request_id, account_id, test, to_phone,"
                     " sealed_text, status, provider, segments, charge, next_attempt_at,"
                     " created_at, updated_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
    [W_EVENT_INSERT] = "INSERT INTO message_events (message_id, status, at, error)"
                       " VALUES (?1, ?2, ?3, ?4)",
    [W_LEDGER_INSERT] = "INSERT INTO ledger (account_id, type, amount, balance_after, request_id,"
                        " message_id, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [W_REQ_FOR_VERIFY] = "SELECT id, status, attempts_left, expires_at, coalesce(verified_at, 0),"
                         " code_hash, code_length FROM otp_requests"
                         " WHERE public_id = ?1 AND account_id = ?2",
    [W_REQ_SET_STATE] = "UPDATE otp_requests SET status = ?2, attempts_left = ?3,"
                        " verified_at = ?4 WHERE id = ?1",
    [W_KEY_TOUCH] = "UPDATE api_keys SET last_used_at = ?2"
                    " WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
    [W_ACCOUNT_INSERT] = "INSERT INTO accounts (public_id, name, created_at) VALUES (?1, ?2, ?3)",
    [W_KEY_INSERT] = "INSERT INTO api_keys (account_id, public_id, hash, prefix, name, test,"
                     " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [W_KEY_REVOKE] = "UPDATE api_keys SET revoked_at = ?2"
                     " WHERE public_id = ?1 AND revoked_at IS NULL",
    [W_CREDIT] = "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2",
    [W_OUTBOX_DUE] = sq_outbox_due_sql,
    [W_OUTBOX_LEASE] = "UPDATE messages SET status = 'sending', attempts = attempts + 1,"
                       " lease_until = ?2, next_attempt_at = ?2, updated_at = ?3 WHERE id = ?1",
    [W_MSG_SENT] = "UPDATE messages SET status = 'sent', provider = ?2, provider_message_id = ?3,"
                   " sealed_text = NULL, lease_until = NULL, next_attempt_at = NULL,"
                   " error = NULL, updated_at = ?4 WHERE id = ?1 AND status = 'sending'",
    [W_MSG_FAILED] = "UPDATE messages SET status = 'failed', provider = coalesce(?2, provider),"
                     " error = ?3, sealed_text = NULL, lease_until = NULL,"
                     " next_attempt_at = NULL, updated_at = ?4"
                     " WHERE id = ?1 AND status = 'sending'",
    [W_MSG_FOR_REFUND] = "SELECT m.account_id, m.charge, m.public_id, r.public_id"
                         " FROM messages m JOIN otp_requests r ON r.id = m.request_id"
                         " WHERE m.id = ?1",
    [W_MSG_REFUND_MARK] = "UPDATE messages SET refunded = 1"
                          " WHERE id = ?1 AND refunded = 0 AND charge > 0",
    [W_MSG_REQUEUE] = "UPDATE messages SET status = 'queued', provider = coalesce(?2, provider),"
                      " error = ?3, next_attempt_at = ?4, lease_until = NULL, updated_at = ?5"
                      " WHERE id = ?1 AND status = 'sending'",
};

otp_err sq_err(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY:
        return OTP_E_UNAVAILABLE;
    default:
        return OTP_E_INTERNAL;
    }
}

int sq_txn_prepare(sq_store *s, char *err, size_t errlen)
{
    for (int i = 0; i < W__COUNT; i++) {
        int rc = sqlite3_prepare_v3(s->wdb, wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->w[i], NULL);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "cannot prepare statement %d: %s", i, sqlite3_errmsg(s->wdb));
            return -1;
        }
    }
    return 0;
}

/* ---- small helpers ---- */

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/* Binds NULL for NULL or "". */
static void bind_text_opt(sqlite3_stmt *st, int i, const char *v)
{
    if (v && *v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Steps a statement that returns no row and resets it. Returns the step's code
 * (SQLITE_DONE on success). */
static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

/* Records a message's status change. OTP_OK or a store error (also for the
 * helpers below). */
static otp_err event_add(sq_store *s, int64_t msg, const char *status, int64_t now,
                         const char *error)
{
    sqlite3_stmt *st = s->w[W_EVENT_INSERT];
    sqlite3_bind_int64(st, 1, msg);
    bind_text(st, 2, status);
    sqlite3_bind_int64(st, 3, now);
    bind_text_opt(st, 4, error);
    int rc = run(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* amount is signed (debit < 0); see the schema. */
static otp_err ledger_add(sq_store *s, int64_t account, const char *type, int64_t amount,
                          int64_t balance_after, const char *request_id, const char *message_id,
                          const char *note, int64_t now)
{
    sqlite3_stmt *st = s->w[W_LEDGER_INSERT];
    sqlite3_bind_int64(st, 1, account);
    bind_text(st, 2, type);
    sqlite3_bind_int64(st, 3, amount);
    sqlite3_bind_int64(st, 4, balance_after);
    bind_text_opt(st, 5, request_id);
    bind_text_opt(st, 6, message_id);
    bind_text_opt(st, 7, note);
    sqlite3_bind_int64(st, 8, now);
    int rc = run(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* Reads an account's balance and price per segment (ret_price may be NULL).
 * OTP_OK, OTP_E_NOT_FOUND, or a store error. */
static otp_err money_of(sq_store *s, int64_t account, int64_t *ret_balance, int64_t *ret_price)
{
    sqlite3_stmt *st = s->w[W_MONEY];
    sqlite3_bind_int64(st, 1, account);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_balance = sqlite3_column_int64(st, 0);
        if (ret_price)
            *ret_price = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return OTP_OK;
    return rc == SQLITE_DONE ? OTP_E_NOT_FOUND : sq_err(rc);
}

/* Adds amount (> 0) to an account's balance; *ret_balance = the new balance.
 * OTP_E_NOT_FOUND if no such account, OTP_E_INVALID_REQUEST if the balance would
 * overflow, or a store error. */
static otp_err add_balance(sq_store *s, int64_t account, int64_t amount, int64_t *ret_balance)
{
    int64_t balance = 0;
    otp_err e = money_of(s, account, &balance, NULL);
    if (e)
        return e;
    if (balance > INT64_MAX - amount)
        return OTP_E_INVALID_REQUEST;
    sqlite3_stmt *st = s->w[W_CREDIT];
    sqlite3_bind_int64(st, 1, amount);
    sqlite3_bind_int64(st, 2, account);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    *ret_balance = balance + amount;
    return OTP_OK;
}

/* ---- SEND ---- */

/* SEND: charges the wallet (live keys), stores the request, its message (in the
 * outbox, or already "sent" for a test key) and the ledger debit. Returns OTP_OK
 * with charged and balance_after set; OTP_E_INSUFFICIENT_BALANCE,
 * OTP_E_NOT_FOUND (no such account) or OTP_E_INVALID_REQUEST before any write;
 * or a store error. */
static otp_err tx_send(sq_store *s, otp_txn_send *in)
{
    sqlite3_stmt *st;
    int64_t balance = 0, charged = 0;
    int rc;
    otp_err e;

    if (in->segments < 1 || in->max_attempts < 1 || in->code_length < 1 || !in->sealed_text ||
        in->sealed_text_len == 0 || in->sealed_text_len > INT_MAX)
        return OTP_E_INVALID_REQUEST;

    int64_t price = 0;
    e = money_of(s, in->account_id, &balance, &price);
    if (e)
        return e;
    if (!in->test) {
        if (price > 0 && in->segments > INT64_MAX / price)
            return OTP_E_INSUFFICIENT_BALANCE;
        charged = price * in->segments;
        if (balance < charged)
            return OTP_E_INSUFFICIENT_BALANCE;
    }
    if (charged > 0) {
        /* The balance condition is redundant under the write lock; it stays as
         * the last line of defence (with the CHECK) against going negative. */
        st = s->w[W_DEBIT];
        sqlite3_bind_int64(st, 1, charged);
        sqlite3_bind_int64(st, 2, in->account_id);
        rc = run(st);
        if (rc != SQLITE_DONE)
            return sq_err(rc);
        if (sqlite3_changes(s->wdb) != 1)
            return OTP_E_INSUFFICIENT_BALANCE;
        balance -= charged;
    }

    st = s->w[W_REQ_INSERT];
    bind_text(st, 1, in->request_id);
    sqlite3_bind_int64(st, 2, in->account_id);
    if (in->key_id > 0)
        sqlite3_bind_int64(st, 3, in->key_id);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int(st, 4, in->test);
    bind_text(st, 5, in->phone);
    sqlite3_bind_blob(st, 6, in->code_hash, OTP_CODE_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, in->code_length);
    sqlite3_bind_int(st, 8, in->max_attempts);
    sqlite3_bind_int(st, 9, in->expires_in_s);
    sqlite3_bind_int64(st, 10, in->now_ms);
    sqlite3_bind_int64(st, 11, in->expires_at_ms);
    rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    int64_t req = sqlite3_last_insert_rowid(s->wdb);

    /* A test key's message never enters the outbox: it is "sent" at once, with
     * its text kept for the test inbox. */
    const char *status = in->test ? "sent" : "queued";
    st = s->w[W_MSG_INSERT];
    bind_text(st, 1, in->message_id);
    sqlite3_bind_int64(st, 2, req);
    sqlite3_bind_int64(st, 3, in->account_id);
    sqlite3_bind_int(st, 4, in->test);
    bind_text(st, 5, in->phone);
    sqlite3_bind_blob(st, 6, in->sealed_text, (int)in->sealed_text_len, SQLITE_STATIC);
    bind_text(st, 7, status);
    bind_text_opt(st, 8, in->test ? "test" : NULL);
    sqlite3_bind_int(st, 9, in->segments);
    sqlite3_bind_int64(st, 10, charged);
    if (in->test)
        sqlite3_bind_null(st, 11);
    else
        sqlite3_bind_int64(st, 11, in->now_ms);
    sqlite3_bind_int64(st, 12, in->now_ms);
    rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    int64_t msg = sqlite3_last_insert_rowid(s->wdb);

    e = event_add(s, msg, status, in->now_ms, NULL);
    if (e)
        return e;
    if (charged > 0) {
        e = ledger_add(s, in->account_id, "debit", -charged, balance, in->request_id,
                       in->message_id, NULL, in->now_ms);
        if (e)
            return e;
    }
    in->charged = charged;
    in->balance_after = balance;
    return OTP_OK;
}

/* ---- VERIFY ---- */

static bool parse_req_status(const char *v, otp_req_status *ret)
{
    static const struct {
        const char *name;
        otp_req_status status;
    } map[] = {{"pending", OTP_REQ_PENDING},
               {"verified", OTP_REQ_VERIFIED},
               {"locked", OTP_REQ_LOCKED},
               {"cancelled", OTP_REQ_CANCELLED}};
    for (size_t i = 0; v && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(v, map[i].name) == 0) {
            *ret = map[i].status;
            return true;
        }
    return false;
}

/* VERIFY: one guess, decided by otp_req_guess() on the stored state. Returns its
 * verdict (OTP_OK, OTP_E_OTP_INCORRECT, …, with attempts_left set), or
 * OTP_E_OTP_NOT_FOUND (unknown, or another account's), OTP_E_INVALID_OTP_CODE
 * (wrong length, nothing used), or a store error. *ret_keep is set when the
 * state changed and was written (a wrong guess included). */
static otp_err tx_verify(sq_store *s, otp_txn_verify *in, bool *ret_keep)
{
    sqlite3_stmt *st = s->w[W_REQ_FOR_VERIFY];
    uint8_t stored[OTP_CODE_HASH_LEN];
    otp_req_state state = {0};
    bool hash_ok = false, status_ok = false;
    int64_t id = 0;
    int stored_len = 0;

    bind_text(st, 1, in->request_id);
    sqlite3_bind_int64(st, 2, in->account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        status_ok = parse_req_status((const char *)sqlite3_column_text(st, 1), &state.status);
        state.attempts_left = sqlite3_column_int(st, 2);
        state.expires_at_ms = sqlite3_column_int64(st, 3);
        state.verified_at_ms = sqlite3_column_int64(st, 4);
        const void *h = sqlite3_column_blob(st, 5);
        if (h && sqlite3_column_bytes(st, 5) == OTP_CODE_HASH_LEN) {
            memcpy(stored, h, OTP_CODE_HASH_LEN);
            hash_ok = true;
        }
        stored_len = sqlite3_column_int(st, 6);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) /* unknown, or another account's: the same answer */
        return OTP_E_OTP_NOT_FOUND;
    if (rc != SQLITE_ROW)
        return sq_err(rc);
    if (!status_ok || !hash_ok)
        return OTP_E_INTERNAL;

    in->attempts_left = state.attempts_left;
    /* The status answers first (a verified request says so whatever was typed);
     * then a guess of the wrong length is refused without using an attempt. */
    if (otp_req_effective_status(&state, in->now_ms) != OTP_REQ_PENDING)
        return otp_req_guess(&state, false, in->now_ms, NULL);
    if (stored_len != in->code_length)
        return OTP_E_INVALID_OTP_CODE;

    bool changed = false;
    bool match = otp_code_hash_equal(stored, in->code_hash);
    otp_err e = otp_req_guess(&state, match, in->now_ms, &changed);
    if (changed) {
        st = s->w[W_REQ_SET_STATE];
        sqlite3_bind_int64(st, 1, id);
        bind_text(st, 2, otp_req_status_name(state.status));
        sqlite3_bind_int(st, 3, state.attempts_left);
        if (state.verified_at_ms)
            sqlite3_bind_int64(st, 4, state.verified_at_ms);
        else
            sqlite3_bind_null(st, 4);
        rc = run(st);
        if (rc != SQLITE_DONE)
            return sq_err(rc);
        *ret_keep = true; /* a wrong guess is an answer that must be stored */
    }
    in->attempts_left = state.attempts_left;
    return e;
}

/* ---- accounts, keys, wallet ---- */

/* KEY_TOUCH: moves last_used_at forward (never back). OTP_OK even for an
 * unknown key (nothing to touch); or a store error. */
static otp_err tx_key_touch(sq_store *s, const otp_txn_key_touch *in)
{
    sqlite3_stmt *st = s->w[W_KEY_TOUCH];
    sqlite3_bind_int64(st, 1, in->key_id);
    sqlite3_bind_int64(st, 2, in->now_ms);
    int rc = run(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* ACCOUNT_CREATE: OTP_OK with ret_id set; OTP_E_INVALID_REQUEST for an empty or
 * taken name (or id); or a store error. */
static otp_err tx_account_create(sq_store *s, otp_txn_account_create *in)
{
    if (!in->name[0] || !in->public_id[0])
        return OTP_E_INVALID_REQUEST;
    sqlite3_stmt *st = s->w[W_ACCOUNT_INSERT];
    bind_text(st, 1, in->public_id);
    bind_text(st, 2, in->name);
    sqlite3_bind_int64(st, 3, in->now_ms);
    int rc = run(st);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return OTP_E_INVALID_REQUEST; /* the name (or id) is taken */
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    in->ret_id = sqlite3_last_insert_rowid(s->wdb);
    return OTP_OK;
}

/* KEY_CREATE: OTP_OK; OTP_E_NOT_FOUND if the account does not exist;
 * OTP_E_INVALID_REQUEST for a taken hash or id; or a store error. */
static otp_err tx_key_create(sq_store *s, const otp_txn_key_create *in)
{
    if (!in->public_id[0])
        return OTP_E_INVALID_REQUEST;
    sqlite3_stmt *st = s->w[W_KEY_INSERT];
    sqlite3_bind_int64(st, 1, in->account_id);
    bind_text(st, 2, in->public_id);
    sqlite3_bind_blob(st, 3, in->hash, OTP_APIKEY_HASH_LEN, SQLITE_STATIC);
    bind_text(st, 4, in->prefix);
    bind_text(st, 5, in->name);
    sqlite3_bind_int(st, 6, in->test);
    sqlite3_bind_int64(st, 7, in->now_ms);
    int rc = run(st);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        return OTP_E_NOT_FOUND; /* no such account */
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return OTP_E_INVALID_REQUEST;
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* KEY_REVOKE: OTP_OK; OTP_E_NOT_FOUND if no such key or already revoked; or a
 * store error. */
static otp_err tx_key_revoke(sq_store *s, const otp_txn_key_revoke *in)
{
    sqlite3_stmt *st = s->w[W_KEY_REVOKE];
    bind_text(st, 1, in->public_id);
    sqlite3_bind_int64(st, 2, in->now_ms);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    return sqlite3_changes(s->wdb) == 1 ? OTP_OK : OTP_E_NOT_FOUND;
}

/* WALLET_CREDIT: adds amount with a ledger 'credit' carrying the note. OTP_OK
 * with balance_after set; OTP_E_INVALID_REQUEST (amount <= 0, or the balance
 * would overflow); OTP_E_NOT_FOUND (no such account); or a store error. */
static otp_err tx_wallet_credit(sq_store *s, otp_txn_wallet_credit *in)
{
    if (in->amount <= 0)
        return OTP_E_INVALID_REQUEST;
    int64_t balance = 0;
    otp_err e = add_balance(s, in->account_id, in->amount, &balance);
    if (e)
        return e;
    e = ledger_add(s, in->account_id, "credit", in->amount, balance, NULL, NULL, in->note,
                   in->now_ms);
    if (e)
        return e;
    in->balance_after = balance;
    return OTP_OK;
}

/* ---- outbox ---- */

void sq_txn_discard(otp_txn *t)
{
    if (t->kind == OTP_TXN_OUTBOX_CLAIM) {
        otp_outbox_msgs_free(t->u.outbox_claim.msgs, t->u.outbox_claim.n);
        t->u.outbox_claim.msgs = NULL;
        t->u.outbox_claim.n = 0;
    }
}

/* OUTBOX_CLAIM: leases up to max due messages (queued and due, or sending with
 * an expired lease), oldest due first. OTP_OK with msgs/n set (msgs NULL when
 * n is 0; the caller frees them with otp_outbox_msgs_free()); on error nothing
 * is returned and what was allocated is freed. */
static otp_err tx_outbox_claim(sq_store *s, otp_txn_outbox_claim *in)
{
    otp_outbox_msg *msgs = NULL;
    size_t n = 0, cap = 0;
    otp_err e = OTP_OK;
    int rc;

    in->msgs = NULL;
    in->n = 0;
    if (in->max == 0)
        return OTP_OK;
    if (in->lease_ms <= 0)
        return OTP_E_INVALID_REQUEST;

    sqlite3_stmt *st = s->w[W_OUTBOX_DUE];
    sqlite3_bind_int64(st, 1, in->now_ms);
    sqlite3_bind_int64(st, 2, in->max > INT64_MAX ? INT64_MAX : (int64_t)in->max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : (in->max < 16 ? in->max : 16);
            otp_outbox_msg *p = realloc(msgs, ncap * sizeof(*msgs));
            if (!p) {
                e = OTP_E_INTERNAL;
                break;
            }
            msgs = p;
            cap = ncap;
        }
        otp_outbox_msg *m = &msgs[n];
        memset(m, 0, sizeof(*m));
        n++;
        m->id = sqlite3_column_int64(st, 0);
        sq_col_text(st, 1, m->public_id, sizeof(m->public_id));
        sq_col_text(st, 2, m->request_id, sizeof(m->request_id));
        m->account_id = sqlite3_column_int64(st, 3);
        sq_col_text(st, 4, m->to, sizeof(m->to));
        const void *blob = sqlite3_column_blob(st, 5);
        int len = sqlite3_column_bytes(st, 5);
        if (blob && len > 0) {
            m->sealed = malloc((size_t)len);
            if (!m->sealed) {
                e = OTP_E_INTERNAL;
                break;
            }
            memcpy(m->sealed, blob, (size_t)len);
            m->sealed_len = (size_t)len;
        }
        m->attempts = sqlite3_column_int(st, 6) + 1;
        m->segments = sqlite3_column_int(st, 7);
        m->created_at_ms = sqlite3_column_int64(st, 8);
        m->expires_at_ms = sqlite3_column_int64(st, 9);
    }
    sqlite3_reset(st);
    if (e == OTP_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        e = sq_err(rc);

    /* Leases are written after the scan, not while it runs over the same index. */
    int64_t lease = in->now_ms + in->lease_ms;
    for (size_t i = 0; e == OTP_OK && i < n; i++) {
        st = s->w[W_OUTBOX_LEASE];
        sqlite3_bind_int64(st, 1, msgs[i].id);
        sqlite3_bind_int64(st, 2, lease);
        sqlite3_bind_int64(st, 3, in->now_ms);
        rc = run(st);
        if (rc != SQLITE_DONE)
            e = sq_err(rc);
        else
            e = event_add(s, msgs[i].id, "sending", in->now_ms, NULL);
    }
    if (e) {
        otp_outbox_msgs_free(msgs, n);
        return e;
    }
    in->msgs = msgs;
    in->n = n;
    return OTP_OK;
}

/* Marks a failed message refunded — at most once, and only if it was charged —
 * and credits its charge back with a ledger 'refund'. */
static otp_err refund(sq_store *s, int64_t msg, int64_t now)
{
    sqlite3_stmt *st = s->w[W_MSG_REFUND_MARK];
    sqlite3_bind_int64(st, 1, msg);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    if (sqlite3_changes(s->wdb) != 1)
        return OTP_OK; /* already refunded, or never charged */

    int64_t account = 0, charge = 0;
    char msg_public_id[OTP_ID_SIZE] = "", req_public_id[OTP_ID_SIZE] = "";
    st = s->w[W_MSG_FOR_REFUND];
    sqlite3_bind_int64(st, 1, msg);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        account = sqlite3_column_int64(st, 0);
        charge = sqlite3_column_int64(st, 1);
        sq_col_text(st, 2, msg_public_id, sizeof(msg_public_id));
        sq_col_text(st, 3, req_public_id, sizeof(req_public_id));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? OTP_E_INTERNAL : sq_err(rc);

    int64_t balance = 0;
    otp_err e = add_balance(s, account, charge, &balance);
    if (e)
        return e == OTP_E_INVALID_REQUEST ? OTP_E_INTERNAL : e;
    return ledger_add(s, account, "refund", charge, balance, req_public_id, msg_public_id, NULL,
                      now);
}

/* Applies one report to a message that is still sending; a message in any other
 * state is left alone (late or repeated report). OTP_OK or a store error. */
static otp_err report_one(sq_store *s, const otp_outbox_report *r, int64_t now)
{
    sqlite3_stmt *st;
    int rc;

    switch (r->status) {
    case OTP_MSG_SENT:
        st = s->w[W_MSG_SENT];
        sqlite3_bind_int64(st, 1, r->id);
        bind_text_opt(st, 2, r->provider);
        bind_text_opt(st, 3, r->provider_message_id);
        sqlite3_bind_int64(st, 4, now);
        rc = run(st);
        if (rc != SQLITE_DONE)
            return sq_err(rc);
        if (sqlite3_changes(s->wdb) != 1)
            return OTP_OK; /* no longer sending: a late or repeated report */
        return event_add(s, r->id, "sent", now, NULL);

    case OTP_MSG_FAILED: {
        st = s->w[W_MSG_FAILED];
        sqlite3_bind_int64(st, 1, r->id);
        bind_text_opt(st, 2, r->provider);
        bind_text_opt(st, 3, r->error);
        sqlite3_bind_int64(st, 4, now);
        rc = run(st);
        if (rc != SQLITE_DONE)
            return sq_err(rc);
        if (sqlite3_changes(s->wdb) != 1)
            return OTP_OK; /* no longer sending: never refund twice */
        otp_err e = event_add(s, r->id, "failed", now, r->error);
        return e ? e : refund(s, r->id, now);
    }

    case OTP_MSG_QUEUED:
        st = s->w[W_MSG_REQUEUE];
        sqlite3_bind_int64(st, 1, r->id);
        bind_text_opt(st, 2, r->provider);
        bind_text_opt(st, 3, r->error);
        sqlite3_bind_int64(st, 4, r->next_attempt_at_ms);
        sqlite3_bind_int64(st, 5, now);
        rc = run(st);
        if (rc != SQLITE_DONE)
            return sq_err(rc);
        if (sqlite3_changes(s->wdb) != 1)
            return OTP_OK;
        return event_add(s, r->id, "queued", now, r->error);

    default:
        return OTP_E_INVALID_REQUEST;
    }
}

/* OUTBOX_REPORT: all reports or none. OTP_OK; OTP_E_INVALID_REQUEST if a report
 * has a status other than SENT, FAILED or QUEUED; or a store error. */
static otp_err tx_outbox_report(sq_store *s, const otp_txn_outbox_report *in)
{
    if (in->n && !in->reports)
        return OTP_E_INVALID_REQUEST;
    for (size_t i = 0; i < in->n; i++) /* refuse before the first write */
        if (in->reports[i].status != OTP_MSG_SENT && in->reports[i].status != OTP_MSG_FAILED &&
            in->reports[i].status != OTP_MSG_QUEUED)
            return OTP_E_INVALID_REQUEST;
    for (size_t i = 0; i < in->n; i++) {
        otp_err e = report_one(s, &in->reports[i], in->now_ms);
        if (e)
            return e;
    }
    return OTP_OK;
}

otp_err sq_txn_run(sq_store *s, otp_txn *t, bool *ret_keep)
{
    otp_err e;
    *ret_keep = false;
    switch (t->kind) {
    case OTP_TXN_SEND:
        e = tx_send(s, &t->u.send);
        break;
    case OTP_TXN_VERIFY:
        e = tx_verify(s, &t->u.verify, ret_keep);
        break;
    case OTP_TXN_KEY_TOUCH:
        e = tx_key_touch(s, &t->u.key_touch);
        break;
    case OTP_TXN_ACCOUNT_CREATE:
        e = tx_account_create(s, &t->u.account_create);
        break;
    case OTP_TXN_KEY_CREATE:
        e = tx_key_create(s, &t->u.key_create);
        break;
    case OTP_TXN_KEY_REVOKE:
        e = tx_key_revoke(s, &t->u.key_revoke);
        break;
    case OTP_TXN_WALLET_CREDIT:
        e = tx_wallet_credit(s, &t->u.wallet_credit);
        break;
    case OTP_TXN_OUTBOX_CLAIM:
        e = tx_outbox_claim(s, &t->u.outbox_claim);
        break;
    case OTP_TXN_OUTBOX_REPORT:
        e = tx_outbox_report(s, &t->u.outbox_report);
        break;
    default:
        e = OTP_E_INTERNAL;
        break;
    }
    if (e == OTP_OK)
        *ret_keep = true;
    return e;
}
