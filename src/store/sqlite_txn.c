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
 * The pumping rule's counters are not written by the bodies: they add to
 * counters in the writer's memory, which sqlite_traffic.c writes to the traffic
 * table in bulk; sq_txn_run() tells it where each txn begins and whether it is
 * kept.
 *
 * Money: the balance is read, checked and then changed by a conditional UPDATE
 * (balance >= charge), under the write lock, with a CHECK (balance >= 0) behind
 * it, so it cannot go below zero whatever else runs; each balance change writes
 * a ledger row with the signed amount in the same txn, so the balance always
 * equals the ledger sum. A credit with a reference first looks for the
 * account's ledger entry with that reference (a read, like an idempotency
 * key's below) and answers it instead of crediting again.
 *
 * Idempotency (SEND and RESEND with a key) lives in the same transaction as the
 * work it guards: the record is looked up first (a read, so a replay or a
 * refusal writes nothing) and inserted last, only when the work succeeded. Two
 * txns with one key in one batch therefore see each other like two batches
 * would: the second finds the first's record and replays it. A record is never
 * written for a failed txn, so a 402 or 429 is not remembered.
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
    " m.sealed_text, m.attempts, m.segments, m.created_at, r.expires_at,"
    " m.sender_id, m.dlt_template_id"
    " FROM messages m JOIN otp_requests r ON r.id = m.request_id"
    " WHERE m.status IN ('queued','sending') AND m.next_attempt_at <= ?1"
    " ORDER BY m.next_attempt_at, m.id LIMIT ?2";

/* Gateways should not reuse ids; if one does, the newest message wins. */
const char sq_dlr_lookup_sql[] = "SELECT id, status, public_id FROM messages"
                                 " WHERE provider = ?1 AND provider_message_id = ?2"
                                 " ORDER BY id DESC LIMIT 1";

/* A request with a message still in the outbox waits for the dispatcher to fail
 * (and refund) it: deleting it would lose a charged, unsent message. The IN
 * subquery is evaluated once, before the first row goes. */
const char sq_purge_requests_sql[] =
    "DELETE FROM otp_requests WHERE id IN"
    " (SELECT r.id FROM otp_requests r WHERE r.expires_at < ?1"
    " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.request_id = r.id"
    " AND (m.status = 'queued' OR m.status = 'sending'))"
    " ORDER BY r.expires_at LIMIT ?2)";

/* The later end of a send's prefix's and region's blocks in force (0 if
 * none): two lookups of the primary key. Neither "ORDER BY until DESC LIMIT 1"
 * (a temporary B-tree for the sort) nor "target IN (?3, ?4)" (an ephemeral
 * table for the list) at every send. */
const char sq_block_find_sql[] =
    "SELECT max(coalesce((SELECT until FROM blocks WHERE account_id = ?1 AND target = ?3"
    " AND until > ?2), 0), coalesce((SELECT until FROM blocks WHERE account_id = ?1"
    " AND target = ?4 AND until > ?2), 0))";

/* The equality implies the partial index ledger_reference's condition
 * (reference IS NOT NULL), so this is one lookup of that index. */
const char sq_credit_find_sql[] = "SELECT id, amount, balance_after, created_at FROM ledger"
                                  " WHERE account_id = ?1 AND reference = ?2";

#define RECENT_SENDS_SQL(TEST)                                                                     \
    "SELECT created_at FROM messages"                                                              \
    " WHERE account_id = ?1 AND to_phone = ?2 AND created_at > ?3 AND test = " TEST                \
    " ORDER BY created_at DESC LIMIT ?4"

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
                     " created_at, expires_at, last_sent_at, template_id, app_name, app_hash,"
                     " code_sealed, region) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8,"
                     " ?8, ?9, ?10, ?11, ?10, ?12, ?13, ?14, ?15, ?16)",
    /* Every statement that changes a message's status appends its event to
     * messages.events (the schema's migration 5), in the same row write. A
     * message handed off to the dispatcher (?15 = its lease's end) is queued
     * and leased at once: status 'sending', both events. */
    [W_MSG_INSERT] = "INSERT INTO messages (public_id, request_id, account_id, test, to_phone,"
                     " sealed_text, status, provider, segments, charge, next_attempt_at,"
                     " created_at, updated_at, sender_id, dlt_template_id, attempts, lease_until,"
                     " events) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13,"
                     " ?14, ?15 IS NOT NULL, ?15, CASE WHEN ?15 IS NULL THEN json_array(?7, ?12,"
                     " NULL) ELSE json_array('queued', ?12, NULL) || ',' ||"
                     " json_array('sending', ?12, NULL) END)",
    [W_LEDGER_INSERT] = "INSERT INTO ledger (account_id, type, amount, balance_after, request_id,"
                        " message_id, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [W_REQ_FOR_VERIFY] = "SELECT id, status, attempts_left, expires_at, coalesce(verified_at, 0),"
                         " code_hash, code_length, phone, region, test FROM otp_requests"
                         " WHERE public_id = ?1 AND account_id = ?2",
    /* A sealed code (reuse strategy) goes as soon as the request is no longer
     * pending (CASE without ELSE is NULL). */
    [W_REQ_SET_STATE] = "UPDATE otp_requests SET status = ?2, attempts_left = ?3,"
                        " verified_at = ?4,"
                        " code_sealed = CASE WHEN ?2 = 'pending' THEN code_sealed END"
                        " WHERE id = ?1",
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
                       " lease_until = ?2, next_attempt_at = ?2, updated_at = ?3,"
                       " events = events || ',' || json_array('sending', ?3, NULL) WHERE id = ?1",
    [W_MSG_SENT] = "UPDATE messages SET status = 'sent', provider = ?2, provider_message_id = ?3,"
                   " sealed_text = NULL, lease_until = NULL, next_attempt_at = NULL,"
                   " error = NULL, updated_at = ?4,"
                   " events = events || ',' || json_array('sent', ?4, NULL)"
                   " WHERE id = ?1 AND status = 'sending'",
    [W_MSG_FAILED] = "UPDATE messages SET status = 'failed', provider = coalesce(?2, provider),"
                     " error = ?3, sealed_text = NULL, lease_until = NULL,"
                     " next_attempt_at = NULL, updated_at = ?4,"
                     " events = events || ',' || json_array('failed', ?4, ?3)"
                     " WHERE id = ?1 AND status = 'sending'",
    [W_MSG_FOR_REFUND] = "SELECT m.account_id, m.charge, m.public_id, r.public_id, m.created_at,"
                         " r.region, r.phone"
                         " FROM messages m JOIN otp_requests r ON r.id = m.request_id"
                         " WHERE m.id = ?1",
    [W_MSG_REFUND_MARK] = "UPDATE messages SET refunded = 1"
                          " WHERE id = ?1 AND refunded = 0 AND charge > 0",
    [W_MSG_REQUEUE] = "UPDATE messages SET status = 'queued', provider = coalesce(?2, provider),"
                      " error = ?3, next_attempt_at = ?4, lease_until = NULL, updated_at = ?5,"
                      " events = events || ',' || json_array('queued', ?5, ?3)"
                      " WHERE id = ?1 AND status = 'sending'",
    [W_IDEM_GET] = "SELECT fingerprint, status, response FROM idempotency"
                   " WHERE account_id = ?1 AND key = ?2",
    [W_IDEM_PUT] = "INSERT INTO idempotency (account_id, key, fingerprint, status, response,"
                   " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [W_REQ_FOR_UPDATE] = "SELECT id, status, attempts_left, expires_in, expires_at,"
                         " coalesce(verified_at, 0), resend_count,"
                         " coalesce(last_sent_at, created_at), test, max_attempts, phone, region"
                         " FROM otp_requests"
                         " WHERE public_id = ?1 AND account_id = ?2",
    [W_REQ_RESEND] = "UPDATE otp_requests SET attempts_left = max_attempts, expires_at = ?2,"
                     " resend_count = resend_count + 1, last_sent_at = ?3,"
                     " code_hash = coalesce(?4, code_hash) WHERE id = ?1",
    [W_REQ_CANCEL] = "UPDATE otp_requests SET status = 'cancelled', code_sealed = NULL"
                     " WHERE id = ?1 AND status = 'pending'",
    [W_MSG_QUEUED_CHARGES] = "SELECT coalesce(sum(charge), 0) FROM messages"
                             " WHERE request_id = ?1 AND status = 'queued' AND refunded = 0",
    [W_MSG_QUEUED_NEXT] = "SELECT id FROM messages WHERE request_id = ?1 AND status = 'queued'"
                          " LIMIT 1",
    [W_MSG_SUPERSEDE] = "UPDATE messages SET status = 'failed', error = ?2, sealed_text = NULL,"
                        " next_attempt_at = NULL, lease_until = NULL, updated_at = ?3,"
                        " events = events || ',' || json_array('failed', ?3, ?2)"
                        " WHERE id = ?1 AND status = 'queued'",
    [W_ACCOUNT_SET] = "UPDATE accounts SET"
                      " price_per_segment = CASE WHEN ?2 & 1 THEN ?3 ELSE price_per_segment END,"
                      " low_balance_threshold = CASE WHEN ?2 & 2 THEN ?4"
                      "  ELSE low_balance_threshold END,"
                      " resend_strategy = CASE WHEN ?2 & 4 THEN ?5 ELSE resend_strategy END,"
                      " webotp_domain = CASE WHEN ?2 & 8 THEN ?6 ELSE webotp_domain END"
                      " WHERE id = ?1",
    [W_TPL_INSERT] = "INSERT INTO templates (public_id, account_id, name, body, dlt_template_id,"
                     " sender_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [W_TPL_COUNT] = "SELECT count(*) FROM templates WHERE account_id = ?1",
    /* A public id wins over a name that happens to look like one. */
    [W_TPL_FIND] = "SELECT id, is_default FROM templates"
                   " WHERE account_id = ?1 AND (public_id = ?2 OR name = ?2)"
                   " ORDER BY public_id = ?2 DESC LIMIT 1",
    [W_TPL_UNSET_DEFAULT] = "UPDATE templates SET is_default = 0"
                            " WHERE account_id = ?1 AND is_default = 1",
    [W_TPL_SET_DEFAULT] = "UPDATE templates SET is_default = 1 WHERE id = ?1",
    [W_TPL_DELETE] = "DELETE FROM templates WHERE id = ?1",
    [W_MSG_BY_PROVIDER_ID] = sq_dlr_lookup_sql,
    [W_MSG_DLR] = "UPDATE messages SET status = ?2, error = ?3,"
                  " sealed_text = CASE WHEN test = 1 THEN sealed_text END,"
                  " next_attempt_at = NULL, lease_until = NULL, updated_at = ?4,"
                  " events = events || ',' || json_array(?2, ?4, ?3) WHERE id = ?1",
    /* Each purge statement is bounded by its LIMIT (?2); the IN subquery is
     * evaluated once, before the first row changes. */
    [W_PURGE_CODES] = "UPDATE otp_requests SET code_sealed = NULL WHERE id IN"
                      " (SELECT id FROM otp_requests WHERE code_sealed IS NOT NULL"
                      " AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
    [W_PURGE_REQUESTS] = sq_purge_requests_sql,
    [W_PURGE_IDEM] = "DELETE FROM idempotency WHERE rowid IN"
                     " (SELECT rowid FROM idempotency WHERE created_at < ?1"
                     " ORDER BY created_at LIMIT ?2)",
    /* ---- abuse protection (SPEC 3) ---- */
    [W_PHONE_STATE_GET] = "SELECT fails, fail_since, streak, locked_until, lock_kind, fail_times"
                          " FROM phone_state WHERE account_id = ?1 AND phone = ?2",
    [W_PHONE_STATE_PUT] = "INSERT INTO phone_state (account_id, phone, fails, fail_since, streak,"
                          " locked_until, lock_kind, fail_times)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                          " ON CONFLICT (account_id, phone) DO UPDATE SET fails = excluded.fails,"
                          " fail_since = excluded.fail_since, streak = excluded.streak,"
                          " locked_until = excluded.locked_until, lock_kind = excluded.lock_kind,"
                          " fail_times = excluded.fail_times",
    /* A backwards range scan of messages_phone_recent; a send counts the
     * messages of its own key mode only. One statement per mode, the mode
     * written in: bound as a parameter, `test` could match messages_test_inbox's
     * `WHERE test = 1`, so SQLite would compile the statement again after
     * every bind to weigh that index (t_statements_stay_prepared). */
    [W_RECENT_SENDS] = RECENT_SENDS_SQL("0"),
    [W_RECENT_TEST_SENDS] = RECENT_SENDS_SQL("1"),
    [W_BLOCK_FIND] = sq_block_find_sql,
    [W_BLOCK_PUT] = "INSERT INTO blocks (account_id, target, reason, created_at, until)"
                    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account_id, target) DO UPDATE"
                    " SET reason = excluded.reason, created_at = excluded.created_at,"
                    " until = excluded.until",
    [W_TRAFFIC_SUM] = "SELECT coalesce(sum(sends), 0), coalesce(sum(verifies), 0) FROM traffic"
                      " WHERE account_id = ?1 AND scope = ?2 AND minute >= ?3 AND minute < ?4",
    /* Only the bulk write of the counters kept in memory (sqlite_traffic.c). */
    [W_TRAFFIC_ADD] = "INSERT INTO traffic (account_id, scope, minute, sends, verifies)"
                      " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (account_id, scope, minute)"
                      " DO UPDATE SET sends = sends + excluded.sends,"
                      " verifies = verifies + excluded.verifies",
    [W_SPEND_GET] = "SELECT amount FROM spend WHERE account_id = ?1 AND day = ?2 AND scope = ?3",
    /* A refund takes its charge back from the day's spend it was added to (the
     * message's creation), where the caps recorded one. */
    [W_SPEND_REFUND] = "UPDATE spend SET amount = max(amount - ?4, 0)"
                       " WHERE account_id = ?1 AND day = ?2 AND scope IN ('', ?3)",
    [W_SPEND_ADD] = "INSERT INTO spend (account_id, day, scope, amount) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT (account_id, day, scope) DO UPDATE"
                    " SET amount = amount + excluded.amount",
    [W_LIMITS_PUT] = "INSERT INTO account_limits (account_id, text, updated_at)"
                     " VALUES (?1, ?2, ?3) ON CONFLICT (account_id) DO UPDATE"
                     " SET text = excluded.text, updated_at = excluded.updated_at",
    /* What BLOCK_LIFT would lift: blocks of the target or (a number) of a
     * prefix of it, and the number's lock or failure count. */
    [W_LIFT_COUNT] = "SELECT (SELECT count(*) FROM blocks WHERE account_id = ?1 AND until > ?3"
                     " AND (target = ?2"
                     " OR (substr(target, 1, 1) = '+' AND substr(?2, 1, length(target)) = target)))"
                     " + (SELECT count(*) FROM phone_state WHERE account_id = ?1 AND phone = ?2"
                     " AND (locked_until > 0 OR fails > 0 OR streak > 0))",
    /* A lifted block stays as 'lifted' until ?3 (now): the rule leaves its
     * target alone for one window after that (see abuse_post), or the traffic
     * that tripped it would trip it again at once. */
    [W_LIFT_BLOCKS] =
        "UPDATE blocks SET reason = 'lifted', until = ?3"
        " WHERE account_id = ?1 AND until > ?3 AND (target = ?2"
        " OR (substr(target, 1, 1) = '+' AND substr(?2, 1, length(target)) = target))",
    [W_BLOCK_LIFTED] = "SELECT 1 FROM blocks WHERE account_id = ?1 AND target = ?2"
                       " AND reason = 'lifted' AND until > ?3",
    [W_LIFT_PHONE] = "UPDATE phone_state SET fails = 0, fail_since = 0, streak = 0,"
                     " locked_until = 0, lock_kind = 0 WHERE account_id = ?1 AND phone = ?2",
    [W_PURGE_TRAFFIC] = "DELETE FROM traffic WHERE (account_id, scope, minute) IN"
                        " (SELECT account_id, scope, minute FROM traffic WHERE minute < ?1"
                        " ORDER BY minute LIMIT ?2)",
    /* The purge of the other abuse tables, each through an index of its own
     * (schema 6): spend by day, blocks by end, and the numbers' states that
     * hold nothing (no streak, so no wrong code since the last success). */
    [W_PURGE_SPEND] = "DELETE FROM spend WHERE (account_id, day, scope) IN"
                      " (SELECT account_id, day, scope FROM spend WHERE day < ?1"
                      " ORDER BY day LIMIT ?2)",
    [W_PURGE_BLOCKS] = "DELETE FROM blocks WHERE rowid IN"
                       " (SELECT rowid FROM blocks WHERE until < ?1 ORDER BY until LIMIT ?2)",
    [W_PURGE_PHONE_STATE] = "DELETE FROM phone_state WHERE (account_id, phone) IN"
                            " (SELECT account_id, phone FROM phone_state"
                            " WHERE streak = 0 AND fails = 0 AND locked_until <= ?1"
                            " ORDER BY locked_until LIMIT ?2)",
    /* ---- credits with a reference, admin keys (schema 7) ---- */
    [W_CREDIT_FIND] = sq_credit_find_sql,
    [W_CREDIT_LEDGER] = "INSERT INTO ledger (account_id, type, amount, balance_after, note,"
                        " reference, created_at) VALUES (?1, 'credit', ?2, ?3, ?4, ?5, ?6)",
    [W_ADMIN_KEY_INSERT] = "INSERT INTO admin_keys (public_id, hash, prefix, name, created_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)",
    [W_ADMIN_KEY_REVOKE] = "UPDATE admin_keys SET revoked_at = ?2"
                           " WHERE public_id = ?1 AND revoked_at IS NULL",
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
    if (sq_traffic_open(s)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- small helpers ---- */

/* Whether a fixed-size text field holds a NUL-terminated string. */
#define TERMINATED(field) (strnlen((field), sizeof(field)) < sizeof(field))

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

static int run_bound_id(sqlite3_stmt *st, int64_t id)
{
    sqlite3_bind_int64(st, 1, id);
    return run(st);
}

/* Records a message's status change. OTP_OK or a store error (also for the
 * helpers below). */
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

/* ---- shared by SEND and RESEND ---- */

/* Looks up idem's key for account. Returns OTP_OK with *ret_replayed false (no
 * record: do the work), OTP_OK with *ret_replayed true (a record with the same
 * fingerprint: idem's replay fields are filled, the response malloc'd),
 * OTP_E_IDEMPOTENCY_KEY_REUSED (same key, another fingerprint), or a store
 * error. Writes nothing. */
static otp_err idem_check(sq_store *s, int64_t account, otp_idem *idem, bool *ret_replayed)
{
    sqlite3_stmt *st = s->w[W_IDEM_GET];
    otp_err e = OTP_OK;
    *ret_replayed = false;
    sqlite3_bind_int64(st, 1, account);
    bind_text(st, 2, idem->key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const void *fp = sqlite3_column_blob(st, 0);
        if (!fp || sqlite3_column_bytes(st, 0) != (int)sizeof(idem->fingerprint) ||
            memcmp(fp, idem->fingerprint, sizeof(idem->fingerprint)) != 0) {
            e = OTP_E_IDEMPOTENCY_KEY_REUSED;
        } else {
            const unsigned char *text = sqlite3_column_text(st, 2);
            size_t len = text ? (size_t)sqlite3_column_bytes(st, 2) : 0;
            char *copy = malloc(len + 1);
            if (!copy) {
                e = OTP_E_INTERNAL;
            } else {
                if (len)
                    memcpy(copy, text, len);
                copy[len] = '\0';
                idem->replayed = true;
                idem->replay_status = sqlite3_column_int(st, 1);
                idem->replay_response = copy;
                *ret_replayed = true;
            }
        }
    } else if (rc != SQLITE_DONE) {
        e = sq_err(rc);
    }
    sqlite3_reset(st);
    return e;
}

/* Stores idem's record (the last write of a successful txn). */
static otp_err idem_put(sq_store *s, int64_t account, const otp_idem *idem, int64_t now)
{
    sqlite3_stmt *st = s->w[W_IDEM_PUT];
    sqlite3_bind_int64(st, 1, account);
    bind_text(st, 2, idem->key);
    sqlite3_bind_blob(st, 3, idem->fingerprint, sizeof(idem->fingerprint), SQLITE_STATIC);
    sqlite3_bind_int(st, 4, idem->status);
    bind_text(st, 5, idem->response);
    sqlite3_bind_int64(st, 6, now);
    int rc = run(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* What every SEND and RESEND with idem.use needs before anything else: a key of
 * the right length and the response to remember. OTP_E_INVALID_REQUEST for a
 * bad key; OTP_E_INTERNAL for a missing response (a caller's bug). */
static otp_err idem_valid(const otp_idem *idem)
{
    size_t len = strnlen(idem->key, sizeof(idem->key));
    if (len == 0 || len == sizeof(idem->key))
        return OTP_E_INVALID_REQUEST;
    return idem->response ? OTP_OK : OTP_E_INTERNAL;
}

/* The charge of segments at price, or -1 if it does not fit in int64. */
static int64_t charge_of(int64_t price, int segments)
{
    if (price > 0 && segments > INT64_MAX / price)
        return -1;
    return price * segments;
}

/* Takes charged (> 0) from an account whose balance was checked to cover it. */
static otp_err debit(sq_store *s, int64_t account, int64_t charged)
{
    /* The balance condition is redundant under the write lock; it stays as the
     * last line of defence (with the CHECK) against going negative. */
    sqlite3_stmt *st = s->w[W_DEBIT];
    sqlite3_bind_int64(st, 1, charged);
    sqlite3_bind_int64(st, 2, account);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    return sqlite3_changes(s->wdb) == 1 ? OTP_OK : OTP_E_INSUFFICIENT_BALANCE;
}

/* The fields of a new message (SEND and RESEND). */
typedef struct new_msg {
    const char *public_id;
    int64_t request; /* row id */
    int64_t account;
    bool test;
    const char *phone;
    const uint8_t *sealed;
    size_t sealed_len;
    int segments;
    int64_t charge;
    const char *sender_id;
    const char *dlt_template_id;
    int64_t now;
    int64_t lease_until; /* > 0: handed off, leased until then (live only) */
} new_msg;

/* Stores a message with its first event: in the outbox ("queued"); handed off
 * to the dispatcher ("queued" then "sending", leased until m->lease_until);
 * or, for a test key, already "sent" by the pseudo-provider "test" with its
 * text kept for the test inbox (it never enters the outbox). */
static otp_err msg_insert(sq_store *s, const new_msg *m)
{
    bool leased = !m->test && m->lease_until > 0;
    const char *status = m->test ? "sent" : leased ? "sending" : "queued";
    sqlite3_stmt *st = s->w[W_MSG_INSERT];
    bind_text(st, 1, m->public_id);
    sqlite3_bind_int64(st, 2, m->request);
    sqlite3_bind_int64(st, 3, m->account);
    sqlite3_bind_int(st, 4, m->test);
    bind_text(st, 5, m->phone);
    sqlite3_bind_blob(st, 6, m->sealed, (int)m->sealed_len, SQLITE_STATIC);
    bind_text(st, 7, status);
    bind_text_opt(st, 8, m->test ? "test" : NULL);
    sqlite3_bind_int(st, 9, m->segments);
    sqlite3_bind_int64(st, 10, m->charge);
    if (m->test)
        sqlite3_bind_null(st, 11);
    else
        sqlite3_bind_int64(st, 11, leased ? m->lease_until : m->now);
    sqlite3_bind_int64(st, 12, m->now);
    bind_text_opt(st, 13, m->sender_id);
    bind_text_opt(st, 14, m->dlt_template_id);
    if (leased)
        sqlite3_bind_int64(st, 15, m->lease_until);
    else
        sqlite3_bind_null(st, 15);
    int rc = run(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* A sealed text the schema and the statements can hold. */
static bool text_ok(const uint8_t *sealed, size_t len)
{
    return sealed && len > 0 && len <= INT_MAX;
}

/* ---- abuse protection (SPEC 3), shared by SEND, RESEND and VERIFY ---- */

/* Clears a txn's abuse outputs: a batch replayed with savepoints runs its txns
 * again, and what the first run decided must not leak into the second. */
static void abuse_reset(otp_abuse *a)
{
    a->retry_after_s = 0;
    a->reason = NULL;
    a->pumping_block = false;
    a->blocked[0] = '\0';
    a->phone_locked_now = false;
}

/* Reads a number's failure state (all zero if it has none). */
static otp_err phone_state_get(sq_store *s, int64_t account, const char *phone,
                               otp_phone_state *ret)
{
    sqlite3_stmt *st = s->w[W_PHONE_STATE_GET];
    memset(ret, 0, sizeof(*ret));
    sqlite3_bind_int64(st, 1, account);
    bind_text(st, 2, phone);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ret->fails = sqlite3_column_int(st, 0);
        ret->fail_since_ms = sqlite3_column_int64(st, 1);
        ret->streak = sqlite3_column_int(st, 2);
        ret->locked_until_ms = sqlite3_column_int64(st, 3);
        ret->lock_kind = sqlite3_column_int(st, 4);
        const void *times = sqlite3_column_blob(st, 5); /* then its length */
        otp_phone_fail_times_decode(ret, times, (size_t)sqlite3_column_bytes(st, 5));
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

static otp_err phone_state_put(sq_store *s, int64_t account, const char *phone,
                               const otp_phone_state *ps)
{
    sqlite3_stmt *st = s->w[W_PHONE_STATE_PUT];
    sqlite3_bind_int64(st, 1, account);
    bind_text(st, 2, phone);
    sqlite3_bind_int(st, 3, ps->fails);
    sqlite3_bind_int64(st, 4, ps->fail_since_ms);
    sqlite3_bind_int(st, 5, ps->streak);
    sqlite3_bind_int64(st, 6, ps->locked_until_ms);
    sqlite3_bind_int(st, 7, ps->lock_kind);
    uint8_t times[OTP_PHONE_FAILS_KEPT * 8];
    size_t n = otp_phone_fail_times_encode(ps, times);
    if (n)
        sqlite3_bind_blob(st, 8, times, (int)n, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    int rc = run(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* Sends and verifications of scope in minutes [from, to): the table's rows
 * (read again only when the writer does not know their sums already) and the
 * increments not written to it yet. */
static otp_err traffic_sum(sq_store *s, int64_t account, const char *scope, int64_t from,
                           int64_t to, int64_t *ret_sends, int64_t *ret_verifies)
{
    int64_t sends = 0, verifies = 0; /* not written to the table yet */
    sq_traffic_pending(s, account, scope, from, to, &sends, &verifies);
    if (sq_traffic_sum_known(s, account, scope, from, to, ret_sends, ret_verifies)) {
        *ret_sends += sends;
        *ret_verifies += verifies;
        return OTP_OK;
    }
    sqlite3_stmt *st = s->w[W_TRAFFIC_SUM];
    sqlite3_bind_int64(st, 1, account);
    bind_text(st, 2, scope);
    sqlite3_bind_int64(st, 3, from);
    sqlite3_bind_int64(st, 4, to);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_sends = sqlite3_column_int64(st, 0);
        *ret_verifies = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return sq_err(rc);
    sq_traffic_sum_keep(s, account, scope, from, to, *ret_sends, *ret_verifies);
    *ret_sends += sends;
    *ret_verifies += verifies;
    return OTP_OK;
}

/* Counts sends and verifications of scope at now, in the writer's memory
 * until they are written in bulk (sqlite_traffic.c). */
static otp_err traffic_add(sq_store *s, int64_t account, const char *scope, int64_t now, int sends,
                           int verifies)
{
    if (!scope[0])
        return OTP_OK;
    return sq_traffic_add(s, account, scope, now / 60000, sends, verifies);
}

static otp_err spend_get(sq_store *s, int64_t account, int64_t day, const char *scope, int64_t *ret)
{
    sqlite3_stmt *st = s->w[W_SPEND_GET];
    *ret = 0;
    sqlite3_bind_int64(st, 1, account);
    sqlite3_bind_int64(st, 2, day);
    bind_text(st, 3, scope);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

static otp_err spend_add(sq_store *s, int64_t account, int64_t day, const char *scope,
                         int64_t amount)
{
    sqlite3_stmt *st = s->w[W_SPEND_ADD];
    sqlite3_bind_int64(st, 1, account);
    sqlite3_bind_int64(st, 2, day);
    bind_text(st, 3, scope);
    sqlite3_bind_int64(st, 4, amount);
    int rc = run(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

static int retry_s(int64_t ms)
{
    int64_t v = (ms + 999) / 1000;
    return v < 1 ? 1 : v > INT_MAX ? INT_MAX : (int)v;
}

/* A refusal of a send: a->reason and a->retry_after_s are set. */
static otp_err refuse(otp_abuse *a, otp_err e, const char *reason, int64_t wait_ms)
{
    a->reason = reason;
    a->retry_after_s = retry_s(wait_ms);
    return e;
}

/* The checks of a send to phone that come before the balance: the number's
 * lock, a block of its prefix or region, its send interval and window (over
 * the sends of the same key mode: a test key's sends never hold off live
 * ones, nor live ones a CI's). Writes nothing. */
static otp_err abuse_pre(sq_store *s, int64_t account, const char *phone, bool test, int64_t now,
                         otp_abuse *a)
{
    const otp_limits *l = &a->lim;
    otp_phone_state ps;
    otp_err e = phone_state_get(s, account, phone, &ps);
    if (e)
        return e;
    if (otp_phone_locked(&ps, now))
        return refuse(a, OTP_E_PHONE_LOCKED, "phone_locked", ps.locked_until_ms - now);

    if (!otp_phone_safe(l->safe, phone)) {
        char prefix[OTP_PREFIX_SIZE];
        otp_phone_prefix(phone, prefix);
        sqlite3_stmt *st = s->w[W_BLOCK_FIND];
        sqlite3_bind_int64(st, 1, account);
        sqlite3_bind_int64(st, 2, now);
        bind_text(st, 3, prefix);
        bind_text(st, 4, a->region[0] ? a->region : "-");
        int rc = sqlite3_step(st);
        int64_t until = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW)
            return sq_err(rc);
        if (until > now)
            return refuse(a, OTP_E_RATE_LIMITED, "suspected_sms_pumping", until - now);
    }

    if (l->phone_sends > 0 || l->phone_interval_s > 0) {
        enum { MAX_RECENT = 64 };
        int64_t recent[MAX_RECENT];
        int want = l->phone_sends > 0 ? l->phone_sends : 1;
        if (want > MAX_RECENT)
            want = MAX_RECENT;
        int64_t span = (int64_t)l->phone_window_s * 1000;
        if ((int64_t)l->phone_interval_s * 1000 > span)
            span = (int64_t)l->phone_interval_s * 1000;
        sqlite3_stmt *st = s->w[test ? W_RECENT_TEST_SENDS : W_RECENT_SENDS];
        sqlite3_bind_int64(st, 1, account);
        bind_text(st, 2, phone);
        sqlite3_bind_int64(st, 3, now - span);
        sqlite3_bind_int(st, 4, want);
        int n = 0, rc;
        while (n < want && (rc = sqlite3_step(st)) == SQLITE_ROW)
            recent[n++] = sqlite3_column_int64(st, 0);
        if (n < want && rc != SQLITE_DONE) {
            sqlite3_reset(st);
            return sq_err(rc);
        }
        sqlite3_reset(st);
        otp_limits eff = *l;
        if (eff.phone_sends > MAX_RECENT)
            eff.phone_sends = MAX_RECENT;
        int wait = 0;
        int why = otp_phone_send_check(&eff, recent, n, now, &wait);
        if (why == OTP_PHONE_SEND_INTERVAL)
            return refuse(a, OTP_E_RATE_LIMITED, "phone_send_interval", (int64_t)wait * 1000);
        if (why == OTP_PHONE_SEND_WINDOW)
            return refuse(a, OTP_E_RATE_LIMITED, "phone_send_limit", (int64_t)wait * 1000);
    }
    return OTP_OK;
}

/* Whether the pumping rule trips for scope with this send counted. A target
 * whose block an operator lifted less than one window ago is left alone. The
 * common case (too few sends, or enough verifications) costs one indexed sum. */
static otp_err pump_suspect(sq_store *s, int64_t account, const char *scope, int min_sends,
                            const otp_limits *l, int64_t now, bool *ret)
{
    *ret = false;
    if (!scope[0] || min_sends <= 0)
        return OTP_OK;
    int64_t wmin = (l->pump_window_s + 59) / 60;
    int64_t now_min = now / 60000;
    int64_t sends = 0, verifies = 0, base = 0, unused = 0;
    otp_err e = traffic_sum(s, account, scope, now_min - wmin + 1, now_min + 1, &sends, &verifies);
    if (e)
        return e;
    sends += 1; /* this send */
    if (sends < min_sends || verifies * 100 >= (int64_t)l->pump_min_conv_pct * sends)
        return OTP_OK;
    e = traffic_sum(s, account, scope, now_min - wmin + 1 - 1440, now_min - wmin + 1, &base,
                    &unused);
    if (e)
        return e;
    if (!otp_pumping_suspect(sends, verifies, base, (int)(wmin * 60), min_sends, l->pump_growth,
                             l->pump_min_conv_pct))
        return OTP_OK;
    sqlite3_stmt *st = s->w[W_BLOCK_LIFTED];
    sqlite3_bind_int64(st, 1, account);
    bind_text(st, 2, scope);
    sqlite3_bind_int64(st, 3, now - (int64_t)l->pump_window_s * 1000);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_err(rc);
    *ret = rc == SQLITE_DONE;
    return OTP_OK;
}

/* The checks of a live send that come after the balance: the daily spend caps
 * and the pumping rule. *ret_block is set when the send must be refused for
 * pumping and a->blocked must be written as a block (the caller does it, the
 * only write of a refused send). Otherwise writes nothing. */
static otp_err abuse_post(sq_store *s, int64_t account, const char *phone, int64_t charge,
                          int64_t now, otp_abuse *a, bool *ret_block)
{
    const otp_limits *l = &a->lim;
    int64_t day = otp_day_of(now);
    int64_t to_midnight = (day + 1) * 86400000 - now;
    otp_err e;
    *ret_block = false;
    if (l->daily_cap > 0) {
        int64_t spent = 0;
        if ((e = spend_get(s, account, day, "", &spent)))
            return e;
        if (spent + charge > l->daily_cap)
            return refuse(a, OTP_E_RATE_LIMITED, "daily_spend_cap", to_midnight);
    }
    if (l->country_daily_cap > 0 && a->region[0]) {
        int64_t spent = 0;
        if ((e = spend_get(s, account, day, a->region, &spent)))
            return e;
        if (spent + charge > l->country_daily_cap)
            return refuse(a, OTP_E_RATE_LIMITED, "daily_spend_cap", to_midnight);
    }
    if (otp_phone_safe(l->safe, phone))
        return OTP_OK;
    char prefix[OTP_PREFIX_SIZE];
    otp_phone_prefix(phone, prefix);
    bool hit = false;
    if ((e = pump_suspect(s, account, prefix, l->pump_min_sends, l, now, &hit)))
        return e;
    if (hit) {
        snprintf(a->blocked, sizeof(a->blocked), "%s", prefix);
    } else {
        if ((e = pump_suspect(s, account, a->region, l->pump_country_min_sends, l, now, &hit)))
            return e;
        if (hit)
            snprintf(a->blocked, sizeof(a->blocked), "%s", a->region);
    }
    if (hit) {
        *ret_block = true;
        return refuse(a, OTP_E_RATE_LIMITED, "suspected_sms_pumping",
                      (int64_t)l->pump_block_s * 1000);
    }
    return OTP_OK;
}

/* Writes the pumping block decided by abuse_post. */
static otp_err block_put(sq_store *s, int64_t account, otp_abuse *a, int64_t now)
{
    sqlite3_stmt *st = s->w[W_BLOCK_PUT];
    sqlite3_bind_int64(st, 1, account);
    bind_text(st, 2, a->blocked);
    bind_text(st, 3, "suspected_sms_pumping");
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now + (int64_t)a->lim.pump_block_s * 1000);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    a->pumping_block = true;
    return OTP_OK;
}

/* The writes of an accepted send: its traffic and its spend. */
static otp_err abuse_record(sq_store *s, int64_t account, const char *phone, int64_t charge,
                            int64_t now, const otp_abuse *a)
{
    char prefix[OTP_PREFIX_SIZE];
    otp_phone_prefix(phone, prefix);
    otp_err e = traffic_add(s, account, prefix, now, 1, 0);
    if (!e)
        e = traffic_add(s, account, a->region, now, 1, 0);
    if (!e && charge > 0 && (a->lim.daily_cap > 0 || a->lim.country_daily_cap > 0)) {
        int64_t day = otp_day_of(now);
        e = spend_add(s, account, day, "", charge);
        if (!e && a->region[0])
            e = spend_add(s, account, day, a->region, charge);
    }
    return e;
}

/* All the checks of a send, in store.h's order around the balance check
 * (money_ok says whether the balance covers the charge). Returns OTP_OK, a
 * refusal (with *ret_keep set if the refusal wrote its pumping block), or
 * OTP_E_INSUFFICIENT_BALANCE. */
static otp_err abuse_send(sq_store *s, int64_t account, const char *phone, bool test,
                          int64_t charge, bool money_ok, int64_t now, otp_abuse *a, bool *ret_keep)
{
    otp_err e = OTP_OK;
    if (a->use && (e = abuse_pre(s, account, phone, test, now, a)))
        return e;
    if (!money_ok)
        return OTP_E_INSUFFICIENT_BALANCE;
    if (!a->use || test)
        return OTP_OK;
    bool block = false;
    e = abuse_post(s, account, phone, charge, now, a, &block);
    if (block) {
        otp_err w = block_put(s, account, a, now);
        if (w)
            return w;
        *ret_keep = true;
    }
    return e;
}

/* ---- SEND ---- */

/* The region stored with a sent request ("" = unknown). */
static const char *send_region(const otp_txn_send *in)
{
    if (in->region[0] && TERMINATED(in->region))
        return in->region;
    return in->abuse.use && TERMINATED(in->abuse.region) ? in->abuse.region : "";
}

/* SEND: charges the wallet (live keys), stores the request, its message (in the
 * outbox, or already "sent" for a test key), the ledger debit and the
 * idempotency record. Returns OTP_OK with charged and balance_after set, or
 * with idem.replayed set (a repeat: nothing else done); before any write
 * OTP_E_IDEMPOTENCY_KEY_REUSED, OTP_E_INSUFFICIENT_BALANCE, OTP_E_NOT_FOUND (no
 * such account) or OTP_E_INVALID_REQUEST; or a store error. */
static otp_err tx_send(sq_store *s, otp_txn_send *in, bool *ret_keep)
{
    abuse_reset(&in->abuse);
    in->leased = false; /* a batch replayed runs this body again */
    in->leased_msg_id = 0;
    if (in->abuse.use && !in->abuse.region[0] && TERMINATED(in->region))
        memcpy(in->abuse.region, in->region, sizeof(in->abuse.region));
    sqlite3_stmt *st;
    int64_t balance = 0, charged = 0;
    int rc;
    otp_err e;

    if (in->segments < 1 || in->max_attempts < 1 || in->code_length < 1 ||
        !text_ok(in->sealed_text, in->sealed_text_len) ||
        in->code_sealed_len > OTP_CODE_SEALED_MAX || (in->code_sealed_len && !in->code_sealed))
        return OTP_E_INVALID_REQUEST;
    if (in->idem.use) {
        bool replayed;
        if ((e = idem_valid(&in->idem)) ||
            (e = idem_check(s, in->account_id, &in->idem, &replayed)))
            return e;
        if (replayed)
            return OTP_OK;
    }

    int64_t price = 0;
    e = money_of(s, in->account_id, &balance, &price);
    if (e)
        return e;
    bool money_ok = true;
    if (!in->test) {
        charged = charge_of(price, in->segments);
        money_ok = charged >= 0 && balance >= charged;
    }
    if ((e = abuse_send(s, in->account_id, in->phone, in->test, charged, money_ok, in->now_ms,
                        &in->abuse, ret_keep)))
        return e;
    if (charged > 0) {
        e = debit(s, in->account_id, charged);
        if (e)
            return e;
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
    bind_text_opt(st, 12, in->template_id);
    bind_text_opt(st, 13, in->app_name);
    bind_text_opt(st, 14, in->app_hash);
    if (in->code_sealed_len)
        sqlite3_bind_blob(st, 15, in->code_sealed, (int)in->code_sealed_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 15);
    bind_text(st, 16, send_region(in));
    rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);

    new_msg m = {.public_id = in->message_id,
                 .request = sqlite3_last_insert_rowid(s->wdb),
                 .account = in->account_id,
                 .test = in->test,
                 .phone = in->phone,
                 .sealed = in->sealed_text,
                 .sealed_len = in->sealed_text_len,
                 .segments = in->segments,
                 .charge = charged,
                 .sender_id = in->sender_id,
                 .dlt_template_id = in->dlt_template_id,
                 .now = in->now_ms,
                 .lease_until = in->lease_ms > 0 ? in->now_ms + in->lease_ms : 0};
    e = msg_insert(s, &m);
    if (e)
        return e;
    in->leased = !in->test && m.lease_until > 0;
    in->leased_msg_id = in->leased ? sqlite3_last_insert_rowid(s->wdb) : 0;
    if (charged > 0) {
        e = ledger_add(s, in->account_id, "debit", -charged, balance, in->request_id,
                       in->message_id, NULL, in->now_ms);
        if (e)
            return e;
    }
    if (in->abuse.use &&
        (e = abuse_record(s, in->account_id, in->phone, charged, in->now_ms, &in->abuse)))
        return e;
    if (in->idem.use && (e = idem_put(s, in->account_id, &in->idem, in->now_ms)))
        return e;
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

/* The region of a request's number: the one stored at send, or for a request
 * sent before the schema had it ('' in region, which is then filled), parsed
 * from the number ("" if it is not valid). */
static const char *request_region(const char *phone, char region[3])
{
    otp_phone ph;
    if (!region[0] && otp_phone_parse(phone, &ph) == OTP_PHONE_OK)
        memcpy(region, ph.region, 3);
    return region;
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
    char phone[OTP_PHONE_SIZE] = "", region[3] = "";

    abuse_reset(&in->abuse);
    bind_text(st, 1, in->request_id);
    sqlite3_bind_int64(st, 2, in->account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && (sqlite3_column_int(st, 9) != 0) != in->test)
        rc = SQLITE_DONE; /* the other mode's: as unknown */
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
        sq_col_text(st, 7, phone, sizeof(phone));
        sq_col_text(st, 8, region, sizeof(region));
        memcpy(in->phone, phone, sizeof(in->phone));
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

    /* SPEC 3: a locked number answers before the guess is judged. */
    otp_phone_state ps = {0};
    if (in->abuse.use) {
        otp_err le = phone_state_get(s, in->account_id, phone, &ps);
        if (le)
            return le;
        int wait = otp_phone_locked(&ps, in->now_ms);
        if (wait) {
            in->abuse.retry_after_s = wait;
            in->abuse.reason = "phone_locked";
            return OTP_E_PHONE_LOCKED;
        }
    }

    bool changed = false;
    bool match = otp_code_hash_equal(stored, in->code_hash);
    otp_err e = otp_req_guess(&state, match, in->now_ms, &changed);
    /* A test key's guess neither counts against the number nor clears its
     * count: a test key must not lock a live user's number, nor reset the
     * failures an attacker piles up on it (its own codes are in its inbox). */
    if (changed && in->abuse.use && !in->test) {
        otp_err le = OTP_OK;
        if (!match) {
            in->abuse.phone_locked_now = otp_phone_fail(&ps, &in->abuse.lim, in->now_ms);
            le = phone_state_put(s, in->account_id, phone, &ps);
        } else {
            if (ps.fails || ps.streak) {
                otp_phone_success(&ps);
                le = phone_state_put(s, in->account_id, phone, &ps);
            }
            /* A conversion, for the pumping rule. */
            char prefix[OTP_PREFIX_SIZE];
            otp_phone_prefix(phone, prefix);
            if (!le)
                le = traffic_add(s, in->account_id, prefix, in->now_ms, 0, 1);
            request_region(phone, region);
            if (!le)
                le = traffic_add(s, in->account_id, region, in->now_ms, 0, 1);
        }
        if (le)
            return le;
    }
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
    if (!in->public_id[0] || !TERMINATED(in->public_id) || !TERMINATED(in->prefix) ||
        !TERMINATED(in->name))
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

/* Looks for the account's credit with in's reference. OTP_OK with *ret_found
 * false (none: credit), OTP_OK with *ret_found true and in's outputs set to
 * that entry (a replay), OTP_E_IDEMPOTENCY_KEY_REUSED (its amount differs), or
 * a store error. Writes nothing. */
static otp_err credit_find(sq_store *s, otp_txn_wallet_credit *in, bool *ret_found)
{
    sqlite3_stmt *st = s->w[W_CREDIT_FIND];
    otp_err e = OTP_OK;
    *ret_found = false;
    sqlite3_bind_int64(st, 1, in->account_id);
    bind_text(st, 2, in->reference);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_int64(st, 1) != in->amount) {
            e = OTP_E_IDEMPOTENCY_KEY_REUSED;
        } else {
            in->ledger_id = sqlite3_column_int64(st, 0);
            in->balance_after = sqlite3_column_int64(st, 2);
            in->created_at_ms = sqlite3_column_int64(st, 3);
            in->replayed = true;
            *ret_found = true;
        }
    } else if (rc != SQLITE_DONE) {
        e = sq_err(rc);
    }
    sqlite3_reset(st);
    return e;
}

/* WALLET_CREDIT: adds amount with a ledger 'credit' carrying the note and the
 * reference. With a reference the account already credited, answers that
 * credit instead (replayed) and writes nothing: the writer runs one txn at a
 * time under the write lock, so between the lookup and the insert no other
 * credit can slip in (ledger_reference would refuse it anyway). OTP_OK with
 * the outputs set; OTP_E_IDEMPOTENCY_KEY_REUSED (the reference's credit was
 * of another amount); OTP_E_INVALID_REQUEST (amount <= 0, a bad reference, or
 * the balance would overflow); OTP_E_NOT_FOUND (no such account); or a store
 * error. */
static otp_err tx_wallet_credit(sq_store *s, otp_txn_wallet_credit *in)
{
    in->replayed = false; /* the txn may run again (a batch replayed) */
    if (in->amount <= 0 || !TERMINATED(in->note) || !otp_store_reference_ok(in->reference))
        return OTP_E_INVALID_REQUEST;
    if (in->reference[0]) {
        bool found = false;
        otp_err e = credit_find(s, in, &found);
        if (e || found)
            return e;
    }
    int64_t balance = 0;
    otp_err e = add_balance(s, in->account_id, in->amount, &balance);
    if (e)
        return e;
    sqlite3_stmt *st = s->w[W_CREDIT_LEDGER];
    sqlite3_bind_int64(st, 1, in->account_id);
    sqlite3_bind_int64(st, 2, in->amount);
    sqlite3_bind_int64(st, 3, balance);
    bind_text_opt(st, 4, in->note);
    bind_text_opt(st, 5, in->reference);
    sqlite3_bind_int64(st, 6, in->now_ms);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    in->ledger_id = sqlite3_last_insert_rowid(s->wdb);
    in->balance_after = balance;
    in->created_at_ms = in->now_ms;
    return OTP_OK;
}

/* ---- admin keys ---- */

/* ADMIN_KEY_CREATE: OTP_OK with ret_id set; OTP_E_INVALID_REQUEST for an empty,
 * unterminated or taken id, or a taken hash; or a store error. */
static otp_err tx_admin_key_create(sq_store *s, otp_txn_admin_key_create *in)
{
    if (!in->public_id[0] || !TERMINATED(in->public_id) || !TERMINATED(in->prefix) ||
        !TERMINATED(in->name))
        return OTP_E_INVALID_REQUEST;
    sqlite3_stmt *st = s->w[W_ADMIN_KEY_INSERT];
    bind_text(st, 1, in->public_id);
    sqlite3_bind_blob(st, 2, in->hash, OTP_APIKEY_HASH_LEN, SQLITE_STATIC);
    bind_text(st, 3, in->prefix);
    bind_text(st, 4, in->name);
    sqlite3_bind_int64(st, 5, in->now_ms);
    int rc = run(st);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return OTP_E_INVALID_REQUEST;
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    in->ret_id = sqlite3_last_insert_rowid(s->wdb);
    return OTP_OK;
}

/* ADMIN_KEY_REVOKE: OTP_OK; OTP_E_NOT_FOUND if no such admin key or already
 * revoked; or a store error. */
static otp_err tx_admin_key_revoke(sq_store *s, const otp_txn_key_revoke *in)
{
    if (!TERMINATED(in->public_id))
        return OTP_E_NOT_FOUND;
    sqlite3_stmt *st = s->w[W_ADMIN_KEY_REVOKE];
    bind_text(st, 1, in->public_id);
    sqlite3_bind_int64(st, 2, in->now_ms);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    return sqlite3_changes(s->wdb) == 1 ? OTP_OK : OTP_E_NOT_FOUND;
}

/* ---- outbox ---- */

/* Clears what a txn hands back in allocated memory (a replayed idempotency
 * response, claimed messages) after freeing it. */
static void idem_discard(otp_idem *idem)
{
    free(idem->replay_response);
    idem->replay_response = NULL;
    idem->replayed = false;
    idem->replay_status = 0;
}

void sq_txn_discard(otp_txn *t)
{
    switch (t->kind) {
    case OTP_TXN_OUTBOX_CLAIM:
        otp_outbox_msgs_free(t->u.outbox_claim.msgs, t->u.outbox_claim.n);
        t->u.outbox_claim.msgs = NULL;
        t->u.outbox_claim.n = 0;
        break;
    case OTP_TXN_SEND:
        idem_discard(&t->u.send.idem);
        break;
    case OTP_TXN_RESEND:
        idem_discard(&t->u.resend.idem);
        break;
    default:
        break;
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
        sq_col_text(st, 10, m->sender_id, sizeof(m->sender_id));
        sq_col_text(st, 11, m->dlt_template_id, sizeof(m->dlt_template_id));
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

    int64_t account = 0, charge = 0, created = 0;
    char msg_public_id[OTP_ID_SIZE] = "", req_public_id[OTP_ID_SIZE] = "";
    char region[3] = "", phone[OTP_PHONE_SIZE] = "";
    st = s->w[W_MSG_FOR_REFUND];
    sqlite3_bind_int64(st, 1, msg);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        account = sqlite3_column_int64(st, 0);
        charge = sqlite3_column_int64(st, 1);
        sq_col_text(st, 2, msg_public_id, sizeof(msg_public_id));
        sq_col_text(st, 3, req_public_id, sizeof(req_public_id));
        created = sqlite3_column_int64(st, 4);
        sq_col_text(st, 5, region, sizeof(region));
        sq_col_text(st, 6, phone, sizeof(phone));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? OTP_E_INTERNAL : sq_err(rc);

    int64_t balance = 0;
    otp_err e = add_balance(s, account, charge, &balance);
    if (e)
        return e == OTP_E_INVALID_REQUEST ? OTP_E_INTERNAL : e;
    e = ledger_add(s, account, "refund", charge, balance, req_public_id, msg_public_id, NULL, now);
    if (e)
        return e;
    /* Money that came back was not spent: the daily caps count it no more. */
    st = s->w[W_SPEND_REFUND];
    sqlite3_bind_int64(st, 1, account);
    sqlite3_bind_int64(st, 2, otp_day_of(created));
    bind_text(st, 3, request_region(phone, region));
    sqlite3_bind_int64(st, 4, charge);
    rc = run(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
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
        rc = run(st); /* changes nothing if no longer sending: a late or repeated report */
        return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);

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
        return refund(s, r->id, now);
    }

    case OTP_MSG_QUEUED:
        st = s->w[W_MSG_REQUEUE];
        sqlite3_bind_int64(st, 1, r->id);
        bind_text_opt(st, 2, r->provider);
        bind_text_opt(st, 3, r->error);
        sqlite3_bind_int64(st, 4, r->next_attempt_at_ms);
        sqlite3_bind_int64(st, 5, now);
        rc = run(st);
        return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);

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

/* ---- RESEND and CANCEL ---- */

/* What RESEND and CANCEL read of a request. */
typedef struct req_row {
    int64_t id;
    otp_req_state state;
    int expires_in_s;
    int resend_count;
    int64_t last_sent_at;
    bool test;
    int max_attempts;
    char phone[OTP_PHONE_SIZE];
    char region[3]; /* '' for a request sent before the schema had it */
} req_row;

/* Reads request_id of account. OTP_OK, OTP_E_OTP_NOT_FOUND (unknown, or another
 * account's: the same answer), or a store error. */
static otp_err req_load(sq_store *s, int64_t account, const char *request_id, req_row *ret)
{
    sqlite3_stmt *st = s->w[W_REQ_FOR_UPDATE];
    req_row r;
    bool status_ok = false;
    memset(&r, 0, sizeof(r));
    bind_text(st, 1, request_id);
    sqlite3_bind_int64(st, 2, account);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        r.id = sqlite3_column_int64(st, 0);
        status_ok = parse_req_status((const char *)sqlite3_column_text(st, 1), &r.state.status);
        r.state.attempts_left = sqlite3_column_int(st, 2);
        r.expires_in_s = sqlite3_column_int(st, 3);
        r.state.expires_at_ms = sqlite3_column_int64(st, 4);
        r.state.verified_at_ms = sqlite3_column_int64(st, 5);
        r.resend_count = sqlite3_column_int(st, 6);
        r.last_sent_at = sqlite3_column_int64(st, 7);
        r.test = sqlite3_column_int(st, 8) != 0;
        r.max_attempts = sqlite3_column_int(st, 9);
        sq_col_text(st, 10, r.phone, sizeof(r.phone));
        sq_col_text(st, 11, r.region, sizeof(r.region));
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return OTP_E_OTP_NOT_FOUND;
    if (rc != SQLITE_ROW)
        return sq_err(rc);
    if (!status_ok)
        return OTP_E_INTERNAL;
    *ret = r;
    return OTP_OK;
}

/* OTP_OK if the request is pending at now, else the error that says why not
 * (the same answers as a verification would give). */
static otp_err req_pending(const req_row *r, int64_t now)
{
    switch (otp_req_effective_status(&r->state, now)) {
    case OTP_REQ_PENDING:
        return OTP_OK;
    case OTP_REQ_VERIFIED:
        return OTP_E_OTP_ALREADY_VERIFIED;
    case OTP_REQ_LOCKED:
        return OTP_E_OTP_ATTEMPTS_EXHAUSTED;
    case OTP_REQ_CANCELLED:
        return OTP_E_OTP_CANCELLED;
    case OTP_REQ_EXPIRED:
        return OTP_E_OTP_EXPIRED;
    }
    return OTP_E_INTERNAL;
}

/* What refunding a request's queued messages will give back (a read). */
static otp_err queued_charges(sq_store *s, int64_t req, int64_t *ret)
{
    sqlite3_stmt *st = s->w[W_MSG_QUEUED_CHARGES];
    sqlite3_bind_int64(st, 1, req);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? OTP_OK : sq_err(rc);
}

/* Fails every message of request req still queued (never accepted by a
 * gateway) with error why, and refunds each once. */
static otp_err fail_queued(sq_store *s, int64_t req, const char *why, int64_t now)
{
    for (;;) {
        sqlite3_stmt *st = s->w[W_MSG_QUEUED_NEXT];
        sqlite3_bind_int64(st, 1, req);
        int rc = sqlite3_step(st);
        int64_t msg = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            return OTP_OK;
        if (rc != SQLITE_ROW)
            return sq_err(rc);
        st = s->w[W_MSG_SUPERSEDE];
        sqlite3_bind_int64(st, 1, msg);
        bind_text(st, 2, why);
        sqlite3_bind_int64(st, 3, now);
        rc = run(st);
        if (rc != SQLITE_DONE)
            return sq_err(rc);
        if (sqlite3_changes(s->wdb) != 1) /* cannot happen under the write lock */
            return OTP_E_INTERNAL;
        otp_err e = refund(s, msg, now);
        if (e)
            return e;
    }
}

/* RESEND: see store.h for the order of the checks, all made before the first
 * write. A request is resent only by a key of its own kind: a test key's
 * request is invisible to live keys and the other way round
 * (OTP_E_OTP_NOT_FOUND), so a test key can never charge or reach a gateway.
 * The balance must cover the charge once the superseded messages are refunded
 * (both happen in this txn, refunds first, so it never dips below zero).
 * Returns OTP_OK with the outputs set (or idem.replayed), a business error, or
 * a store error. */
static otp_err tx_resend(sq_store *s, otp_txn_resend *in, bool *ret_keep)
{
    abuse_reset(&in->abuse);
    otp_err e;
    if (in->segments < 1 || !text_ok(in->sealed_text, in->sealed_text_len) || in->max_resends < 0 ||
        in->cooldown_ms < 0)
        return OTP_E_INVALID_REQUEST;
    if (in->idem.use) {
        bool replayed;
        if ((e = idem_valid(&in->idem)) ||
            (e = idem_check(s, in->account_id, &in->idem, &replayed)))
            return e;
        if (replayed)
            return OTP_OK;
    }

    req_row r;
    if ((e = req_load(s, in->account_id, in->request_id, &r)))
        return e;
    if (r.test != in->test)
        return OTP_E_OTP_NOT_FOUND;
    if ((e = req_pending(&r, in->now_ms)))
        return e;
    if (r.resend_count >= in->max_resends)
        return OTP_E_RESEND_LIMIT_REACHED;
    if (in->now_ms - r.last_sent_at < in->cooldown_ms) {
        /* Counted from the last send when that is stamped later than this
         * resend (one that arrived later won the race): never over cooldown. */
        int64_t from = in->now_ms > r.last_sent_at ? in->now_ms : r.last_sent_at;
        int64_t wait_ms = r.last_sent_at + in->cooldown_ms - from;
        in->retry_after_s = (int)((wait_ms + 999) / 1000);
        return OTP_E_RESEND_TOO_SOON;
    }
    int64_t balance = 0, price = 0, back = 0, charged = 0;
    if ((e = money_of(s, in->account_id, &balance, &price)) || (e = queued_charges(s, r.id, &back)))
        return e;
    bool money_ok = true;
    if (!in->test) {
        charged = charge_of(price, in->segments);
        money_ok = !(charged < 0 || back > INT64_MAX - balance || balance + back < charged);
    }
    if (in->abuse.use && !in->abuse.region[0])
        memcpy(in->abuse.region, request_region(r.phone, r.region), sizeof(in->abuse.region));
    if ((e = abuse_send(s, in->account_id, r.phone, in->test, charged, money_ok, in->now_ms,
                        &in->abuse, ret_keep)))
        return e;

    /* The writes. */
    if ((e = fail_queued(s, r.id, "superseded", in->now_ms)))
        return e;
    if ((e = money_of(s, in->account_id, &balance, NULL)))
        return e;
    if (charged > 0) {
        if ((e = debit(s, in->account_id, charged)))
            return e;
        balance -= charged;
    }
    int64_t expires_at = in->now_ms + (int64_t)r.expires_in_s * 1000;
    sqlite3_stmt *st = s->w[W_REQ_RESEND];
    sqlite3_bind_int64(st, 1, r.id);
    sqlite3_bind_int64(st, 2, expires_at);
    sqlite3_bind_int64(st, 3, in->now_ms);
    if (in->rotate)
        sqlite3_bind_blob(st, 4, in->code_hash, OTP_CODE_HASH_LEN, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);

    /* The new message goes to the number stored with the request. */
    new_msg m = {.public_id = in->message_id,
                 .request = r.id,
                 .account = in->account_id,
                 .test = in->test,
                 .phone = r.phone,
                 .sealed = in->sealed_text,
                 .sealed_len = in->sealed_text_len,
                 .segments = in->segments,
                 .charge = charged,
                 .sender_id = in->sender_id,
                 .dlt_template_id = in->dlt_template_id,
                 .now = in->now_ms};
    if ((e = msg_insert(s, &m)))
        return e;
    if (charged > 0 && (e = ledger_add(s, in->account_id, "debit", -charged, balance,
                                       in->request_id, in->message_id, NULL, in->now_ms)))
        return e;
    if (in->abuse.use &&
        (e = abuse_record(s, in->account_id, r.phone, charged, in->now_ms, &in->abuse)))
        return e;
    if (in->idem.use && (e = idem_put(s, in->account_id, &in->idem, in->now_ms)))
        return e;
    in->expires_at_ms = expires_at;
    in->attempts_left = r.max_attempts;
    in->charged = charged;
    in->balance_after = balance;
    return OTP_OK;
}

/* CANCEL: pending -> cancelled, erasing any sealed code. Its messages still
 * queued will never be worth sending (their code can no longer be verified):
 * they fail as "cancelled" and are refunded. OTP_OK; the status errors of
 * RESEND (OTP_E_OTP_NOT_FOUND, …_ALREADY_VERIFIED, …_ATTEMPTS_EXHAUSTED,
 * …_CANCELLED, …_EXPIRED) before any write; or a store error. */
static otp_err tx_cancel(sq_store *s, const otp_txn_cancel *in)
{
    req_row r;
    otp_err e;
    if ((e = req_load(s, in->account_id, in->request_id, &r)) || (e = req_pending(&r, in->now_ms)))
        return e;
    int rc = run_bound_id(s->w[W_REQ_CANCEL], r.id);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    if (sqlite3_changes(s->wdb) != 1)
        return OTP_E_INTERNAL;
    return fail_queued(s, r.id, "cancelled", in->now_ms);
}

/* ---- account settings and templates ---- */

/* The SPEC 3 parts of ACCOUNT_SET, after the account is known to exist. */
static otp_err abuse_account_set(sq_store *s, otp_txn_account_set *in)
{
    int rc;
    if (in->fields & OTP_SET_LIMITS) {
        sqlite3_stmt *st = s->w[W_LIMITS_PUT];
        sqlite3_bind_int64(st, 1, in->account_id);
        bind_text(st, 2, in->limits);
        sqlite3_bind_int64(st, 3, in->now_ms);
        if ((rc = run(st)) != SQLITE_DONE)
            return sq_err(rc);
    }
    if (in->fields & OTP_SET_BLOCK_LIFT) {
        sqlite3_stmt *st = s->w[W_LIFT_BLOCKS];
        sqlite3_bind_int64(st, 1, in->account_id);
        bind_text(st, 2, in->lift_target);
        sqlite3_bind_int64(st, 3, in->now_ms);
        if ((rc = run(st)) != SQLITE_DONE)
            return sq_err(rc);
        in->lifted = (int)sqlite3_changes(s->wdb);
        st = s->w[W_LIFT_PHONE];
        sqlite3_bind_int64(st, 1, in->account_id);
        bind_text(st, 2, in->lift_target);
        if ((rc = run(st)) != SQLITE_DONE)
            return sq_err(rc);
        in->lifted += (int)sqlite3_changes(s->wdb);
    }
    return OTP_OK;
}

/* ACCOUNT_SET: writes the fields whose OTP_SET_* bit is set. OTP_OK;
 * OTP_E_INVALID_REQUEST (unknown bit, negative price or threshold, unknown
 * strategy) or OTP_E_NOT_FOUND (no such account) with nothing written; or a
 * store error. An empty webotp_domain removes the WebOTP line. */
static otp_err tx_account_set(sq_store *s, otp_txn_account_set *in)
{
    const unsigned all = OTP_SET_PRICE | OTP_SET_LOW_BALANCE | OTP_SET_RESEND_STRATEGY |
                         OTP_SET_WEBOTP_DOMAIN | OTP_SET_LIMITS | OTP_SET_BLOCK_LIFT;
    if ((in->fields & ~all) || ((in->fields & OTP_SET_PRICE) && in->price_per_segment < 0) ||
        ((in->fields & OTP_SET_LOW_BALANCE) && in->low_balance_threshold < 0) ||
        ((in->fields & OTP_SET_RESEND_STRATEGY) && in->resend_strategy != OTP_RESEND_ROTATE &&
         in->resend_strategy != OTP_RESEND_REUSE) ||
        ((in->fields & OTP_SET_WEBOTP_DOMAIN) && !TERMINATED(in->webotp_domain)) ||
        ((in->fields & OTP_SET_LIMITS) && !TERMINATED(in->limits)) ||
        ((in->fields & OTP_SET_BLOCK_LIFT) && !TERMINATED(in->lift_target)))
        return OTP_E_INVALID_REQUEST;
    if (in->fields & OTP_SET_BLOCK_LIFT) {
        /* Decided before any write: is there anything to lift? */
        sqlite3_stmt *q = s->w[W_LIFT_COUNT];
        sqlite3_bind_int64(q, 1, in->account_id);
        bind_text(q, 2, in->lift_target);
        sqlite3_bind_int64(q, 3, in->now_ms);
        int qrc = sqlite3_step(q);
        int n = qrc == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
        sqlite3_reset(q);
        if (qrc != SQLITE_ROW)
            return sq_err(qrc);
        if (n == 0)
            return OTP_E_NOT_FOUND;
    }
    sqlite3_stmt *st = s->w[W_ACCOUNT_SET];
    sqlite3_bind_int64(st, 1, in->account_id);
    sqlite3_bind_int(st, 2, (int)in->fields);
    sqlite3_bind_int64(st, 3, in->price_per_segment);
    sqlite3_bind_int64(st, 4, in->low_balance_threshold);
    bind_text(st, 5, in->resend_strategy == OTP_RESEND_REUSE ? "reuse" : "rotate");
    bind_text_opt(st, 6, in->webotp_domain);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    if (sqlite3_changes(s->wdb) != 1)
        return OTP_E_NOT_FOUND;
    return abuse_account_set(s, in);
}

/* Makes template tpl (row id) the account's one default. */
static otp_err tpl_make_default(sq_store *s, int64_t account, int64_t tpl)
{
    sqlite3_stmt *st = s->w[W_TPL_UNSET_DEFAULT];
    sqlite3_bind_int64(st, 1, account);
    int rc = run(st);
    if (rc == SQLITE_DONE)
        rc = run_bound_id(s->w[W_TPL_SET_DEFAULT], tpl);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* TEMPLATE_ADD: stores the template; it becomes the account's default when
 * asked (tpl.is_default) or when it is the account's only template, and
 * tpl.is_default is set to say whether it did. OTP_OK; OTP_E_INVALID_REQUEST
 * (empty id, name or body, or a name or id already taken) or OTP_E_NOT_FOUND
 * (no such account) with nothing written; or a store error. The body is stored
 * as given: checking it is otp_template_check()'s job. */
static otp_err tx_template_add(sq_store *s, otp_txn_template_add *in)
{
    otp_template *t = &in->tpl;
    if (!t->public_id[0] || !t->name[0] || !t->body[0] || !TERMINATED(t->public_id) ||
        !TERMINATED(t->name) || !TERMINATED(t->body) || !TERMINATED(t->dlt_template_id) ||
        !TERMINATED(t->sender_id))
        return OTP_E_INVALID_REQUEST;
    /* The insert comes first: when it is refused, nothing has been written. */
    sqlite3_stmt *st = s->w[W_TPL_INSERT];
    bind_text(st, 1, t->public_id);
    sqlite3_bind_int64(st, 2, in->account_id);
    bind_text(st, 3, t->name);
    bind_text(st, 4, t->body);
    bind_text_opt(st, 5, t->dlt_template_id);
    bind_text_opt(st, 6, t->sender_id);
    sqlite3_bind_int64(st, 7, t->created_at_ms);
    int rc = run(st);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        return OTP_E_NOT_FOUND;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return OTP_E_INVALID_REQUEST;
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    int64_t id = sqlite3_last_insert_rowid(s->wdb);

    bool make_default = t->is_default;
    if (!make_default) {
        st = s->w[W_TPL_COUNT];
        sqlite3_bind_int64(st, 1, in->account_id);
        rc = sqlite3_step(st);
        make_default = rc == SQLITE_ROW && sqlite3_column_int64(st, 0) == 1;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW)
            return sq_err(rc);
    }
    if (make_default) {
        otp_err e = tpl_make_default(s, in->account_id, id);
        if (e)
            return e;
    }
    t->is_default = make_default;
    return OTP_OK;
}

/* Finds a template of account by public id or name (an id wins). OTP_OK with
 * its row id and whether it is the default; OTP_E_NOT_FOUND; or a store error. */
static otp_err tpl_find(sq_store *s, const otp_txn_template_ref *in, int64_t *ret_id,
                        bool *ret_default)
{
    if (!in->id_or_name[0] || !TERMINATED(in->id_or_name))
        return OTP_E_NOT_FOUND;
    sqlite3_stmt *st = s->w[W_TPL_FIND];
    sqlite3_bind_int64(st, 1, in->account_id);
    bind_text(st, 2, in->id_or_name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_id = sqlite3_column_int64(st, 0);
        *ret_default = sqlite3_column_int(st, 1) != 0;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return OTP_OK;
    return rc == SQLITE_DONE ? OTP_E_NOT_FOUND : sq_err(rc);
}

/* TEMPLATE_REMOVE: deletes the template. Removing the default leaves the
 * account without one (sends then use the built-in text) rather than picking
 * another: which template is the default stays the operator's choice. OTP_OK,
 * OTP_E_NOT_FOUND, or a store error. Requests sent with it keep its id; a
 * resend of one of them falls back to the default (the API's choice). */
static otp_err tx_template_remove(sq_store *s, const otp_txn_template_ref *in)
{
    int64_t id = 0;
    bool is_default = false;
    otp_err e = tpl_find(s, in, &id, &is_default);
    if (e)
        return e;
    int rc = run_bound_id(s->w[W_TPL_DELETE], id);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

/* TEMPLATE_SET_DEFAULT: OTP_OK (also when it already was), OTP_E_NOT_FOUND, or a
 * store error. */
static otp_err tx_template_set_default(sq_store *s, const otp_txn_template_ref *in)
{
    int64_t id = 0;
    bool is_default = false;
    otp_err e = tpl_find(s, in, &id, &is_default);
    if (e || is_default)
        return e;
    return tpl_make_default(s, in->account_id, id);
}

/* ---- delivery reports ---- */

/* A message status's place in the order queued < sending < sent < final. */
static int status_rank(const char *status)
{
    if (!status)
        return 3;
    if (strcmp(status, "queued") == 0)
        return 0;
    if (strcmp(status, "sending") == 0)
        return 1;
    if (strcmp(status, "sent") == 0)
        return 2;
    return 3; /* delivered, undeliverable, failed: final */
}

/* DELIVERY_REPORT: see store.h. A report for a message in a final state
 * (including a repeat of the same report) is OTP_OK and changes nothing; a
 * report for a message still sending (the receipt overtook the dispatcher's own
 * report) applies, and the dispatcher's late "sent" is then ignored. OTP_OK with
 * message_id set; OTP_E_INVALID_REQUEST (a status other than DELIVERED,
 * UNDELIVERABLE, FAILED) or OTP_E_MESSAGE_NOT_FOUND before any write; or a
 * store error. */
static otp_err tx_delivery_report(sq_store *s, otp_txn_delivery_report *in)
{
    if (in->status != OTP_MSG_DELIVERED && in->status != OTP_MSG_UNDELIVERABLE &&
        in->status != OTP_MSG_FAILED)
        return OTP_E_INVALID_REQUEST;
    if (!in->provider[0] || !in->provider_message_id[0] || !TERMINATED(in->provider) ||
        !TERMINATED(in->provider_message_id) || !TERMINATED(in->error))
        return OTP_E_MESSAGE_NOT_FOUND;
    sqlite3_stmt *st = s->w[W_MSG_BY_PROVIDER_ID];
    bind_text(st, 1, in->provider);
    bind_text(st, 2, in->provider_message_id);
    int rc = sqlite3_step(st);
    int64_t id = 0;
    int rank = 3;
    char public_id[OTP_ID_SIZE] = "";
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        rank = status_rank((const char *)sqlite3_column_text(st, 1));
        sq_col_text(st, 2, public_id, sizeof(public_id));
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return OTP_E_MESSAGE_NOT_FOUND;
    if (rc != SQLITE_ROW)
        return sq_err(rc);
    memcpy(in->message_id, public_id, sizeof(public_id));
    if (rank >= 3)
        return OTP_OK; /* final states never change */

    const char *status = otp_msg_status_name(in->status);
    st = s->w[W_MSG_DLR];
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, status);
    bind_text_opt(st, 3, in->error);
    sqlite3_bind_int64(st, 4, in->now_ms);
    rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    return in->status == OTP_MSG_FAILED ? refund(s, id, in->now_ms) : OTP_OK;
}

/* ---- purge ---- */

/* now - retention, not below INT64_MIN. */
static int64_t cutoff(int64_t now, int64_t retention)
{
    return retention > 0 && now < INT64_MIN + retention ? INT64_MIN : now - retention;
}

/* Runs one bounded purge statement; *ret = the rows it changed directly. */
static otp_err purge_one(sq_store *s, sq_wstmt i, int64_t before, int max_rows, int *ret)
{
    sqlite3_stmt *st = s->w[i];
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int(st, 2, max_rows);
    int rc = run(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    *ret = (int)sqlite3_changes(s->wdb);
    return OTP_OK;
}

/* PURGE: erases the sealed codes of expired requests (those that stopped being
 * pending lost theirs at that moment), then deletes old requests with their
 * messages and events (ON DELETE CASCADE; the ledger keeps its entries, which
 * name requests by public id), old idempotency records, and what the abuse
 * tables no longer need (see store.h); each step at most max_rows rows. A
 * request whose message is still in the outbox is kept until the dispatcher
 * has failed and refunded it. OTP_OK with the counts set;
 * OTP_E_INVALID_REQUEST (max_rows < 1, negative retention); or a store error. */
static otp_err tx_purge(sq_store *s, otp_txn_purge *in)
{
    if (in->max_rows < 1 || in->request_retention_ms < 0 || in->idem_retention_ms < 0)
        return OTP_E_INVALID_REQUEST;
    otp_err e = purge_one(s, W_PURGE_CODES, in->now_ms, in->max_rows, &in->erased_codes);
    if (!e)
        e = purge_one(s, W_PURGE_REQUESTS, cutoff(in->now_ms, in->request_retention_ms),
                      in->max_rows, &in->purged_requests);
    if (!e)
        e = purge_one(s, W_PURGE_IDEM, cutoff(in->now_ms, in->idem_retention_ms), in->max_rows,
                      &in->purged_idem);
    int traffic = 0; /* pumping counters: two days are more than the rule reads */
    if (!e)
        e = purge_one(s, W_PURGE_TRAFFIC, in->now_ms / 60000 - 2 * 1440, in->max_rows, &traffic);
    if (traffic > 0)
        sq_traffic_sums_forget(s);
    int other = 0;
    if (!e) /* the caps read today only; yesterday stays for a clock a little behind */
        e = purge_one(s, W_PURGE_SPEND, otp_day_of(in->now_ms) - 1, in->max_rows, &other);
    if (!e) /* a lifted block is read for one pumping window (at most a day) after its end */
        e = purge_one(s, W_PURGE_BLOCKS, in->now_ms - 2 * 86400000LL, in->max_rows, &other);
    if (!e)
        e = purge_one(s, W_PURGE_PHONE_STATE, in->now_ms, in->max_rows, &other);
    return e;
}

otp_err sq_txn_run(sq_store *s, otp_txn *t, bool *ret_keep)
{
    otp_err e;
    *ret_keep = false;
    switch (t->kind) {
    case OTP_TXN_SEND:
        e = tx_send(s, &t->u.send, ret_keep);
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
    case OTP_TXN_RESEND:
        e = tx_resend(s, &t->u.resend, ret_keep);
        break;
    case OTP_TXN_CANCEL:
        e = tx_cancel(s, &t->u.cancel);
        break;
    case OTP_TXN_ACCOUNT_SET:
        e = tx_account_set(s, &t->u.account_set);
        break;
    case OTP_TXN_TEMPLATE_ADD:
        e = tx_template_add(s, &t->u.template_add);
        break;
    case OTP_TXN_TEMPLATE_REMOVE:
        e = tx_template_remove(s, &t->u.template_ref);
        break;
    case OTP_TXN_TEMPLATE_SET_DEFAULT:
        e = tx_template_set_default(s, &t->u.template_ref);
        break;
    case OTP_TXN_DELIVERY_REPORT:
        e = tx_delivery_report(s, &t->u.delivery_report);
        break;
    case OTP_TXN_PURGE:
        e = tx_purge(s, &t->u.purge);
        break;
    case OTP_TXN_ADMIN_KEY_CREATE:
        e = tx_admin_key_create(s, &t->u.admin_key_create);
        break;
    case OTP_TXN_ADMIN_KEY_REVOKE:
        e = tx_admin_key_revoke(s, &t->u.admin_key_revoke);
        break;
    default:
        e = OTP_E_INTERNAL;
        break;
    }
    if (e == OTP_OK)
        *ret_keep = true;
    sq_traffic_txn_end(s, *ret_keep);
    return e;
}
