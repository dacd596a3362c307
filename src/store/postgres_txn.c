/* store/postgres_txn.c — the body of every write txn, run by a worker thread on
 * its own connection.
 *
 * Almost every body is one prepared statement sent outside BEGIN/COMMIT:
 * PostgreSQL runs it in an implicit transaction and commits it before it
 * answers, so the txn costs one round trip and is durable when the answer is
 * in. The multi-step txns are server-side functions (postgres_schema.c); the
 * C side checks its inputs first (the same refusals as the SQLite backend,
 * before anything is sent), binds them and maps the answer. A business error
 * raised by a function (SQLSTATE OTP01) rolled back everything the call wrote;
 * a constraint violation is mapped per txn (a taken name, an unknown account).
 *
 * VERIFY is two round trips in one pipelined implicit transaction: the request
 * row is read FOR NO KEY UPDATE (concurrent guesses on any node wait here), the
 * guess is decided in C — otp_code_hash_equal() compares the hashes in
 * constant time, otp_req_guess() is the one state machine every backend
 * shares — and the new state is written before the Sync that commits. Doing it
 * in a function would save one round trip (~0.05 ms on loopback) but would
 * compare the hashes with bytea equality, which stops at the first differing
 * byte, and would copy the state machine into plpgsql. The row lock is held for
 * that round trip only, and only guesses on the same request wait for it.
 *
 * Texts that come from outside (a gateway's error or message id) are made valid
 * UTF-8 before they are bound: PostgreSQL refuses invalid bytes, and a refused
 * report would make the dispatcher send its messages again.
 */
#include "store/postgres_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/otp_code.h"
#include "core/otp_state.h"
#include "core/phone.h"
#include "util/sbuf.h"

#define RECORD_ARGS "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12"

const char *const pg_write_sql[S__COUNT] = {
    [S_SEND] = "SELECT * FROM otp_send(" RECORD_ARGS
               ", $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28,"
               " $29::bigint[])",
    [S_VERIFY_LOCK] = "SELECT id, status, attempts_left, expires_at, coalesce(verified_at, 0),"
                      " code_hash, code_length, phone, region, test FROM otp_requests"
                      " WHERE public_id = $1 AND account_id = $2 FOR NO KEY UPDATE",
    /* The number's advisory lock (the one otp_abuse_pre takes), then its
     * state read by a statement of its own, so after the lock: a guess on one
     * node and a guess or send on another see each other's counts. Pipelined
     * behind S_VERIFY_LOCK, hence the number looked up again. */
    [S_PHONE_LOCK] = "SELECT pg_advisory_xact_lock(1869901927, hashtext($2::bigint::text || ':' ||"
                     " (SELECT phone FROM otp_requests WHERE public_id = $1"
                     " AND account_id = $2::bigint)))",
    /* A verify batch's numbers (pg_verify_batch): the account row, then the
     * advisory locks of all the numbers of requests $2 at once, in the order
     * of the numbers, so that the batch takes them as sends do theirs (after
     * the account row) and never holds one number while waiting for another
     * in a different order than the other batches. */
    [S_ACCOUNT_LOCK] = "SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
    [S_PHONES_LOCK] = "SELECT pg_advisory_xact_lock(1869901927, hashtext($1::bigint::text || ':'"
                      " || p.phone)) FROM (SELECT DISTINCT phone FROM otp_requests"
                      " WHERE account_id = $1::bigint AND public_id = ANY($2::text[])"
                      " ORDER BY phone) p",
    [S_PHONE_STATE_GET] = "SELECT fails, fail_since, streak, locked_until, lock_kind, fail_times"
                          " FROM phone_state WHERE account_id = $2 AND phone ="
                          " (SELECT phone FROM otp_requests WHERE public_id = $1"
                          " AND account_id = $2)",
    [S_PHONE_STATE_PUT] = "INSERT INTO phone_state (account_id, phone, fails, fail_since, streak,"
                          " locked_until, lock_kind, fail_times)"
                          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                          " ON CONFLICT (account_id, phone) DO UPDATE SET fails = excluded.fails,"
                          " fail_since = excluded.fail_since, streak = excluded.streak,"
                          " locked_until = excluded.locked_until, lock_kind = excluded.lock_kind,"
                          " fail_times = excluded.fail_times",
    [S_TRAFFIC_ADD] = "SELECT otp_traffic_add($1, $2, $3, $4, $5)",
    /* A sealed code (reuse strategy) goes as soon as the request is no longer
     * pending (CASE without ELSE is NULL). */
    [S_VERIFY_SET] = "UPDATE otp_requests SET status = $2::text, attempts_left = $3,"
                     " verified_at = $4,"
                     " code_sealed = CASE WHEN $2::text = 'pending' THEN code_sealed END"
                     " WHERE id = $1",
    [S_KEY_TOUCH] = "UPDATE api_keys SET last_used_at = $2"
                    " WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
    [S_ACCOUNT_INSERT] = "INSERT INTO accounts (public_id, name, created_at) VALUES ($1, $2, $3)"
                         " RETURNING id",
    [S_KEY_INSERT] = "INSERT INTO api_keys (account_id, public_id, hash, prefix, name, test,"
                     " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    [S_KEY_REVOKE] = "UPDATE api_keys SET revoked_at = $2"
                     " WHERE public_id = $1 AND revoked_at IS NULL",
    [S_CREDIT] = "SELECT o_ledger, o_balance, o_created, o_replayed::integer"
                 " FROM otp_credit($1, $2, $3, $4, $5)",
    /* Leases up to $2 due messages (queued and due, or sending with an expired
     * lease), oldest due first. SKIP LOCKED: the dispatchers of other nodes
     * claiming at the same moment take the next rows instead of waiting, and
     * never the same ones. The events are written by the same statement. */
    [S_CLAIM] = "WITH due AS (SELECT id, next_attempt_at AS due_at FROM messages"
                " WHERE status IN ('queued', 'sending') AND next_attempt_at <= $1::bigint"
                " ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),"
                " upd AS (UPDATE messages m SET status = 'sending', attempts = m.attempts + 1,"
                " lease_until = $3::bigint, next_attempt_at = $3::bigint, updated_at = $1::bigint"
                " FROM due WHERE m.id = due.id RETURNING m.id, m.public_id, m.request_id,"
                " m.account_id, m.to_phone, m.sealed_text, m.attempts, m.segments, m.created_at,"
                " m.sender_id, m.dlt_template_id, due.due_at),"
                " ev AS (INSERT INTO message_events (message_id, status, at)"
                " SELECT id, 'sending', $1::bigint FROM upd)"
                " SELECT u.id, u.public_id, r.public_id, u.account_id, u.to_phone, u.sealed_text,"
                " u.attempts, u.segments, u.created_at, r.expires_at, u.sender_id,"
                " u.dlt_template_id FROM upd u JOIN otp_requests r ON r.id = u.request_id"
                " ORDER BY u.due_at, u.id",
    [S_REPORT] = "SELECT otp_report($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],"
                 " $6::bigint[], $7::bigint)",
    [S_RESEND] = "SELECT * FROM otp_resend(" RECORD_ARGS
                 ", $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23::bigint[])",
    [S_CANCEL] = "SELECT otp_cancel($1, $2, $3)",
    [S_ACCOUNT_SET] = "SELECT otp_account_set($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    [S_TPL_ADD] = "SELECT otp_template_add($1, $2, $3, $4, $5, $6, $7, $8)",
    [S_TPL_REMOVE] = "SELECT otp_template_remove($1, $2)",
    [S_TPL_DEFAULT] = "SELECT otp_template_set_default($1, $2)",
    [S_DLR] = "SELECT otp_dlr($1, $2, $3, $4, $5)",
    [S_PURGE] = "SELECT * FROM otp_purge($1, $2, $3, $4)",
    /* The buckets of keys that can no longer take (revoked or gone). A key the
     * cache still lets through for a moment may put its row back: the next
     * purge takes it. (If the row goes between otp_key_take()'s insert and its
     * read, that revoked key is granted one more burst, for the moment the
     * cache still lets it through.) */
    [S_KEY_BUCKETS_PURGE] = "DELETE FROM key_buckets b WHERE NOT EXISTS (SELECT 1 FROM api_keys k"
                            " WHERE k.id = b.key_id AND k.revoked_at IS NULL)",
    [S_ADMIN_KEY_INSERT] = "INSERT INTO admin_keys (public_id, hash, prefix, name, created_at)"
                           " VALUES ($1, $2, $3, $4, $5) RETURNING id",
    [S_ADMIN_KEY_REVOKE] = "UPDATE admin_keys SET revoked_at = $2"
                           " WHERE public_id = $1 AND revoked_at IS NULL",
};

/* ---- helpers ---- */

/* Whether a fixed-size text field holds a NUL-terminated string. */
#define TERMINATED(field) (strnlen((field), sizeof(field)) < sizeof(field))

/* Runs statement i; returns its outcome, with the result in *ret_r (PQclear
 * it) when ret_r is given. */
static otp_err run(pg_conn *c, pg_stmt i, const pg_params *p, PGresult **ret_r)
{
    PGresult *r = pg_run(c, i, p);
    otp_err e = pg_result_err(c, r);
    if (ret_r)
        *ret_r = r;
    else
        PQclear(r);
    return e;
}

static bool state_is(const pg_conn *c, const char *sqlstate)
{
    return strcmp(c->sqlstate, sqlstate) == 0;
}

/* Rows changed by a command, from its result. */
static long changed(PGresult *r)
{
    return strtol(PQcmdTuples(r), NULL, 10);
}

/* The same checks as the SQLite backend's: a key of the right length and the
 * response to remember. */
static otp_err idem_valid(const otp_idem *idem)
{
    size_t len = strnlen(idem->key, sizeof(idem->key));
    if (len == 0 || len == sizeof(idem->key))
        return OTP_E_INVALID_REQUEST;
    return idem->response ? OTP_OK : OTP_E_INTERNAL;
}

static void bind_idem(pg_params *p, const otp_idem *idem)
{
    if (idem->use) {
        pg_p_text(p, idem->key);
        pg_p_bytea(p, idem->fingerprint, sizeof(idem->fingerprint));
        pg_p_int(p, idem->status);
        pg_p_text(p, idem->response);
    } else {
        for (int i = 0; i < 4; i++)
            pg_p_null(p);
    }
}

/* Reads a replayed reply from columns col (status) and col + 1 (response), if
 * the function found one. OTP_OK (with *ret_replayed), or OTP_E_INTERNAL. */
static otp_err read_replay(PGresult *r, int col, otp_idem *idem, bool *ret_replayed)
{
    *ret_replayed = !PQgetisnull(r, 0, col);
    if (!*ret_replayed)
        return OTP_OK;
    char *copy = strdup(pg_text(r, 0, col + 1));
    if (!copy)
        return OTP_E_INTERNAL;
    idem->replayed = true;
    idem->replay_status = (int)pg_int(r, 0, col);
    idem->replay_response = copy;
    return OTP_OK;
}

static bool text_ok(const uint8_t *sealed, size_t len)
{
    return sealed && len > 0 && len <= INT_MAX;
}

/* ---- SEND ---- */

/* ---- abuse protection (SPEC 3), shared by SEND, RESEND and VERIFY ---- */

/* Clears a txn's abuse outputs (a txn may run again after a rolled-back batch). */
static void abuse_reset(otp_abuse *a)
{
    a->retry_after_s = 0;
    a->reason = NULL;
    a->pumping_block = false;
    a->blocked[0] = '\0';
    a->phone_locked_now = false;
}

/* The limits the server-side checks read, as a bigint[] literal in p->lim, in
 * the order otp_abuse_pre() and friends index them (1-based). */
static const char *lim_array(pg_params *p, const otp_limits *l, bool test)
{
    /* The 12th is no limit but the key's mode: the number's send window and
     * spacing count the sends of that mode only (schema 8's otp_abuse_pre). */
    snprintf(p->lim, sizeof(p->lim), "{%d,%d,%d,%lld,%lld,%d,%d,%d,%d,%d,%d,%d}", l->phone_sends,
             l->phone_window_s, l->phone_interval_s, (long long)l->daily_cap,
             (long long)l->country_daily_cap, l->pump_window_s, l->pump_min_sends, l->pump_growth,
             l->pump_min_conv_pct, l->pump_block_s, l->pump_country_min_sends, test ? 1 : 0);
    return p->lim;
}

/* Binds what the server-side checks need of a send to phone: use, prefix,
 * region, safe, limits. phone "" = unknown: a resend's prefix is then derived
 * on the server and the safe list not consulted. region: the number's ("" =
 * none), also stored with a SEND's request whatever use says; NULL (RESEND):
 * the one stored with the request (see otp_resend()). */
static void bind_abuse(pg_params *p, const otp_abuse *a, const char *phone, const char *region,
                       bool test)
{
    if (region)
        snprintf(p->region, sizeof(p->region), "%s", region);
    if (!a->use) {
        pg_p_bool(p, false);
        pg_p_null(p);
        pg_p_text_opt(p, region ? p->region : NULL);
        pg_p_null(p);
        pg_p_null(p);
        return;
    }
    pg_p_bool(p, true);
    if (phone[0]) {
        otp_phone_prefix(phone, p->prefix);
        pg_p_text(p, p->prefix);
    } else {
        pg_p_null(p);
    }
    pg_p_text(p, region ? p->region : NULL);
    pg_p_bool(p, phone[0] && otp_phone_safe(a->lim.safe, phone));
    pg_p_text(p, lim_array(p, &a->lim, test));
}

/* The region of a SEND's number: given by the caller, else (callers that
 * predate the field) parsed for the abuse checks; "" if unknown. */
static const char *send_region(const otp_txn_send *in, char buf[3])
{
    otp_phone ph;
    if (in->region[0] && TERMINATED(in->region))
        return in->region;
    if (!in->abuse.use)
        return "";
    if (in->abuse.region[0] && TERMINATED(in->abuse.region))
        return in->abuse.region;
    buf[0] = '\0';
    if (otp_phone_parse(in->phone, &ph) == OTP_PHONE_OK)
        memcpy(buf, ph.region, 3);
    return buf;
}

/* The static string of a refusal's reason as the server names it. */
static const char *reason_of(const char *v)
{
    static const char *const reasons[] = {"phone_locked", "suspected_sms_pumping",
                                          "phone_send_interval", "phone_send_limit",
                                          "daily_spend_cap"};
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(v, reasons[i]) == 0)
            return reasons[i];
    return NULL;
}

/* Reads an abuse refusal from columns reason, retry and blocked of row 0. */
static void read_abuse(PGresult *r, int reason, int retry, int blocked, otp_abuse *a)
{
    if (PQgetisnull(r, 0, reason))
        return;
    a->reason = reason_of(pg_text(r, 0, reason));
    a->retry_after_s = (int)pg_int(r, 0, retry);
    if (a->retry_after_s < 1)
        a->retry_after_s = 1;
    if (!PQgetisnull(r, 0, blocked)) {
        a->pumping_block = true;
        pg_copy(r, 0, blocked, a->blocked, sizeof(a->blocked));
    }
}

/* The refusals of a SEND decided before anything is sent. */
static otp_err send_valid(const otp_txn_send *in)
{
    if (in->segments < 1 || in->max_attempts < 1 || in->code_length < 1 ||
        !text_ok(in->sealed_text, in->sealed_text_len) ||
        in->code_sealed_len > OTP_CODE_SEALED_MAX || (in->code_sealed_len && !in->code_sealed))
        return OTP_E_INVALID_REQUEST;
    return in->idem.use ? idem_valid(&in->idem) : OTP_OK;
}

/* Binds the 24 parameters of otp_send(). */
static void bind_send(pg_params *p, const otp_txn_send *in)
{
    pg_p_int(p, in->account_id);
    if (in->key_id > 0)
        pg_p_int(p, in->key_id);
    else
        pg_p_null(p);
    pg_p_bool(p, in->test);
    pg_p_text(p, in->request_id);
    pg_p_text(p, in->message_id);
    pg_p_text(p, in->phone);
    pg_p_bytea(p, in->code_hash, OTP_CODE_HASH_LEN);
    pg_p_int(p, in->code_length);
    pg_p_int(p, in->max_attempts);
    pg_p_int(p, in->expires_in_s);
    pg_p_int(p, in->now_ms);
    pg_p_int(p, in->expires_at_ms);
    pg_p_int(p, in->segments);
    pg_p_bytea(p, in->sealed_text, in->sealed_text_len);
    pg_p_text_opt(p, in->template_id);
    pg_p_text_opt(p, in->app_name);
    pg_p_text_opt(p, in->app_hash);
    pg_p_text_opt(p, in->sender_id);
    pg_p_text_opt(p, in->dlt_template_id);
    if (in->code_sealed_len)
        pg_p_bytea(p, in->code_sealed, in->code_sealed_len);
    else
        pg_p_null(p);
    bind_idem(p, &in->idem);
    char region[3];
    bind_abuse(p, &in->abuse, in->phone, send_region(in, region), in->test);
}

/* The outcome of one otp_send() row into the txn: OTP_OK with charged and
 * balance_after set, or with idem.replayed set; or the refusal it answered
 * (nothing was written). */
static otp_err send_outcome(PGresult *r, otp_txn_send *in)
{
    if (PQntuples(r) != 1)
        return OTP_E_INTERNAL;
    if (!PQgetisnull(r, 0, 0)) {
        read_abuse(r, 5, 6, 7, &in->abuse);
        return pg_err_by_code(pg_text(r, 0, 0));
    }
    bool replayed = false;
    otp_err e = read_replay(r, 3, &in->idem, &replayed);
    if (!e && !replayed) {
        in->charged = pg_int(r, 0, 1);
        in->balance_after = pg_int(r, 0, 2);
    }
    return e;
}

/* SEND: one call of otp_send(). Returns OTP_OK with charged and balance_after
 * set, or with idem.replayed set; OTP_E_IDEMPOTENCY_KEY_REUSED,
 * OTP_E_INSUFFICIENT_BALANCE, OTP_E_NOT_FOUND (no such account),
 * OTP_E_INVALID_REQUEST with nothing stored; or a store error. */
static otp_err tx_send(pg_conn *c, otp_txn_send *in)
{
    abuse_reset(&in->abuse);
    otp_err e = send_valid(in);
    if (e)
        return e;
    pg_params p = {0};
    bind_send(&p, in);
    PGresult *r;
    e = run(c, S_SEND, &p, &r);
    if (!e)
        e = send_outcome(r, in);
    PQclear(r);
    return e;
}

/* Sends prepared statement i in pipeline mode. Returns whether it was queued. */
static bool send_prepared(pg_conn *c, pg_stmt i, const pg_params *p)
{
    char name[16];
    snprintf(name, sizeof(name), "s%d", (int)i);
    return PQsendQueryPrepared(c->conn, name, p->n, p->v, p->len, p->fmt, 0) == 1;
}

/* Reads results up to the pipeline's sync (the commit of the implicit
 * transaction). Returns the first failure's outcome, or OTP_OK. */
static otp_err drain_to_sync(pg_conn *c)
{
    otp_err e = OTP_OK;
    for (int idle = 0;;) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            /* NULL ends each query's results; a few in a row without the sync
             * mean the connection is gone. */
            if (PQstatus(c->conn) != CONNECTION_OK || ++idle > 8)
                return OTP_E_UNAVAILABLE;
            continue;
        }
        idle = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            return e;
        }
        if (e == OTP_OK && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            pg_note_state(c, r);
            e = st == PGRES_PIPELINE_ABORTED ? OTP_E_INTERNAL : pg_result_err(c, r);
        }
        PQclear(r);
    }
}

bool pg_send_batchable(const otp_txn *t)
{
    return PG_BATCH_MAX > 1 && t->kind == OTP_TXN_SEND && !t->u.send.test;
}

/* Pipelined: one otp_send() per txn, then the sync that commits them all (an
 * implicit transaction spans a pipeline up to its sync). otp_send() answers its
 * refusals without writing, so they need no subtransaction; an SQL error (a
 * taken id, a timeout, a lost connection, a failed commit) aborts the rest, and
 * the sync rolls everything back: then each runs again alone, where such an
 * error hits only its own txn. */
int pg_send_batch(pg_conn *c, otp_txn **txns, size_t n, bool *again)
{
    pg_params *p = calloc(n, sizeof(*p));
    bool *sent = calloc(n, sizeof(*sent));
    bool *refused = calloc(n, sizeof(*refused));
    int status = PG_BATCH_ROLLED_BACK;
    if (!p || !sent || !refused || pg_prepare(c, S_SEND) != 0 || !PQenterPipelineMode(c->conn)) {
        free(refused);
        free(p);
        free(sent);
        for (size_t i = 0; i < n; i++) /* nothing was sent: each runs alone */
            again[i] = true;
        return PG_BATCH_ROLLED_BACK;
    }
    c->sqlstate[0] = '\0';
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        again[i] = false;
        abuse_reset(&txns[i]->u.send.abuse);
        txns[i]->err = send_valid(&txns[i]->u.send);
        refused[i] = txns[i]->err != OTP_OK;
        if (refused[i])
            continue; /* refused before anything was sent */
        bind_send(&p[i], &txns[i]->u.send);
        ok = ok && send_prepared(c, S_SEND, &p[i]);
        sent[i] = ok;
    }
    ok = PQpipelineSync(c->conn) == 1 && ok;
    bool failed = !ok;
    for (size_t i = 0; ok && i < n; i++) {
        if (!sent[i])
            continue;
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            ok = false;
            break;
        }
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            txns[i]->err = send_outcome(r, &txns[i]->u.send);
        else {
            pg_note_state(c, r);
            failed = true;
        }
        PQclear(r);
        PQclear(PQgetResult(c->conn)); /* the NULL that ends its results */
    }
    otp_err se = ok ? drain_to_sync(c) : OTP_E_UNAVAILABLE;
    if (se)
        failed = true;
    if (!PQexitPipelineMode(c->conn)) {
        PQreset(c->conn);
        memset(c->prepared, 0, sizeof(c->prepared));
        failed = true;
    }
    if (!failed)
        status = PG_BATCH_COMMITTED;
    else if (PQstatus(c->conn) != CONNECTION_OK || !ok)
        status = PG_BATCH_LOST;
    for (size_t i = 0; i < n; i++) {
        if (refused[i])
            continue; /* its refusal stands */
        if (!sent[i]) {
            /* Never sent (a send failed before it): nothing of it can have
             * committed, whatever the batch did; it runs again alone. */
            again[i] = true;
            txns[i]->err = OTP_E_UNAVAILABLE;
            continue;
        }
        if (status == PG_BATCH_COMMITTED)
            continue;
        pg_txn_discard(txns[i]);
        /* Rolled back whole: as if never run, so each runs again alone. Lost:
         * it may have committed, so it must not run again. */
        again[i] = status == PG_BATCH_ROLLED_BACK;
        txns[i]->err = OTP_E_UNAVAILABLE;
    }
    free(p);
    free(sent);
    free(refused);
    return status;
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
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(v, map[i].name) == 0) {
            *ret = map[i].status;
            return true;
        }
    return false;
}

/* What one guess read and decided. */
typedef struct guess {
    int64_t id;
    otp_req_state state;
    bool set;   /* the request's state changed: write it */
    bool match; /* the right code */
    char phone[OTP_PHONE_SIZE];
    char region[3];     /* stored at send; '' for a request sent before schema 3 */
    otp_phone_state ps; /* the number's state (abuse.use) */
    bool ps_set;        /* … changed: write it */
    bool converted;     /* a success that counts as a conversion (pumping rule) */
} guess;

/* The number's failure state from a S_PHONE_STATE_GET result (zero if none). */
static void phone_state_of(PGresult *r, otp_phone_state *ps)
{
    memset(ps, 0, sizeof(*ps));
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        return;
    ps->fails = (int)pg_int(r, 0, 0);
    ps->fail_since_ms = pg_int(r, 0, 1);
    ps->streak = (int)pg_int(r, 0, 2);
    ps->locked_until_ms = pg_int(r, 0, 3);
    ps->lock_kind = (int)pg_int(r, 0, 4);
    uint8_t *times = NULL;
    size_t len = 0;
    if (pg_bytea(r, 0, 5, &times, &len) != 0)
        len = 0; /* out of memory: as a state of before, counted at fail_since */
    otp_phone_fail_times_decode(ps, times, len);
    free(times);
}

/* Decides one guess on the locked request row r (and, with abuse.use, the
 * number's state already in g->ps), exactly as the SQLite backend does: the
 * status answers first, then a guess of the wrong length is refused without
 * using an attempt, then a locked number answers before the guess is judged,
 * then otp_req_guess() on a constant-time comparison. Returns the verdict. */
static otp_err decide(otp_txn_verify *in, PGresult *r, guess *g)
{
    /* unknown, another account's, or of the other key mode: the same answer */
    if (PQntuples(r) == 0 || (pg_int(r, 0, 9) != 0) != in->test)
        return OTP_E_OTP_NOT_FOUND;
    g->id = pg_int(r, 0, 0);
    pg_copy(r, 0, 7, g->phone, sizeof(g->phone));
    memcpy(in->phone, g->phone, sizeof(in->phone)); /* for the log line, whatever follows */
    if (!parse_req_status(pg_text(r, 0, 1), &g->state.status))
        return OTP_E_INTERNAL;
    g->state.attempts_left = (int)pg_int(r, 0, 2);
    g->state.expires_at_ms = pg_int(r, 0, 3);
    g->state.verified_at_ms = pg_int(r, 0, 4);
    uint8_t stored[OTP_CODE_HASH_LEN];
    size_t len = 0;
    unsigned char *h = PQunescapeBytea((const unsigned char *)pg_text(r, 0, 5), &len);
    if (!h)
        return OTP_E_INTERNAL;
    bool hash_ok = len == OTP_CODE_HASH_LEN;
    if (hash_ok)
        memcpy(stored, h, OTP_CODE_HASH_LEN);
    PQfreemem(h);
    if (!hash_ok)
        return OTP_E_INTERNAL;
    int stored_len = (int)pg_int(r, 0, 6);
    pg_copy(r, 0, 8, g->region, sizeof(g->region));

    in->attempts_left = g->state.attempts_left;
    if (otp_req_effective_status(&g->state, in->now_ms) != OTP_REQ_PENDING)
        return otp_req_guess(&g->state, false, in->now_ms, NULL);
    if (stored_len != in->code_length)
        return OTP_E_INVALID_OTP_CODE;
    if (in->abuse.use) {
        int wait = otp_phone_locked(&g->ps, in->now_ms);
        if (wait) {
            in->abuse.retry_after_s = wait;
            in->abuse.reason = "phone_locked";
            return OTP_E_PHONE_LOCKED;
        }
    }
    g->match = otp_code_hash_equal(stored, in->code_hash);
    otp_err e = otp_req_guess(&g->state, g->match, in->now_ms, &g->set);
    /* A test key's guess neither counts against the number nor clears its
     * count: a test key must not lock a live user's number, nor reset the
     * failures an attacker piles up on it (its own codes are in its inbox). */
    if (g->set && in->abuse.use && !in->test) {
        if (!g->match) {
            in->abuse.phone_locked_now = otp_phone_fail(&g->ps, &in->abuse.lim, in->now_ms);
            g->ps_set = true;
        } else {
            g->ps_set = g->ps.fails || g->ps.streak;
            if (g->ps_set)
                otp_phone_success(&g->ps);
            g->converted = true;
        }
    }
    return e;
}

/* Queues the writes of a decided guess (round trip 2). Returns whether all
 * were queued. */
static bool send_guess_writes(pg_conn *c, const otp_txn_verify *in, const guess *g)
{
    bool ok = true;
    if (g->set) {
        pg_params w = {0};
        pg_p_int(&w, g->id);
        pg_p_text(&w, otp_req_status_name(g->state.status));
        pg_p_int(&w, g->state.attempts_left);
        if (g->state.verified_at_ms)
            pg_p_int(&w, g->state.verified_at_ms);
        else
            pg_p_null(&w);
        ok = send_prepared(c, S_VERIFY_SET, &w);
    }
    if (ok && g->ps_set) {
        pg_params w = {0};
        pg_p_int(&w, in->account_id);
        pg_p_text(&w, g->phone);
        pg_p_int(&w, g->ps.fails);
        pg_p_int(&w, g->ps.fail_since_ms);
        pg_p_int(&w, g->ps.streak);
        pg_p_int(&w, g->ps.locked_until_ms);
        pg_p_int(&w, g->ps.lock_kind);
        uint8_t times[OTP_PHONE_FAILS_KEPT * 8];
        size_t n = otp_phone_fail_times_encode(&g->ps, times);
        pg_p_bytea(&w, n ? times : NULL, n);
        ok = send_prepared(c, S_PHONE_STATE_PUT, &w);
    }
    if (ok && g->converted) {
        /* A conversion, for the pumping rule: the prefix's and the region's
         * (parsed only for a request stored without one). */
        pg_params w[2] = {{0}};
        otp_phone ph;
        otp_phone_prefix(g->phone, w[0].prefix);
        snprintf(w[1].prefix, sizeof(w[1].prefix), "%s",
                 g->region[0]                                     ? g->region
                 : otp_phone_parse(g->phone, &ph) == OTP_PHONE_OK ? ph.region
                                                                  : "");
        for (int i = 0; ok && i < 2; i++) {
            pg_p_int(&w[i], in->account_id);
            pg_p_text(&w[i], w[i].prefix);
            pg_p_int(&w[i], in->now_ms);
            pg_p_int(&w[i], 0);
            pg_p_int(&w[i], 1);
            ok = send_prepared(c, S_TRAFFIC_ADD, &w[i]);
        }
    }
    return ok;
}

/* Reads the next query's result in a pipeline and the NULL that ends it.
 * Returns the result (PQclear it) or NULL; *e is set on a failure. */
static PGresult *next_result(pg_conn *c, otp_err *e)
{
    PGresult *r = PQgetResult(c->conn);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        pg_note_state(c, r);
        if (!*e)
            *e = st == PGRES_PIPELINE_ABORTED ? OTP_E_INTERNAL : pg_result_err(c, r);
    }
    if (r)
        PQclear(PQgetResult(c->conn)); /* the NULL that ends its results */
    return r;
}

/* VERIFY: see the top of this file. Round trip 1 locks the request row, then
 * (abuse.use) the number and reads its state; round trip 2 writes what
 * decide() changed and syncs, which commits. Returns the verdict of
 * otp_req_guess() (a wrong guess is committed), OTP_E_OTP_NOT_FOUND,
 * OTP_E_INVALID_OTP_CODE, OTP_E_PHONE_LOCKED (nothing used), or a store error
 * (then nothing was written). */
static otp_err tx_verify(pg_conn *c, otp_txn_verify *in)
{
    abuse_reset(&in->abuse);
    if (!TERMINATED(in->request_id) || !pg_utf8_valid(in->request_id))
        return OTP_E_OTP_NOT_FOUND;
    static const pg_stmt used[] = {S_VERIFY_LOCK,     S_VERIFY_SET,      S_PHONE_LOCK,
                                   S_PHONE_STATE_GET, S_PHONE_STATE_PUT, S_TRAFFIC_ADD};
    for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++)
        if (pg_prepare(c, used[i]))
            return pg_result_err(c, NULL);
    if (!PQenterPipelineMode(c->conn))
        return OTP_E_INTERNAL;

    pg_params p = {0};
    pg_p_text(&p, in->request_id);
    pg_p_int(&p, in->account_id);
    otp_err verdict = OTP_E_UNAVAILABLE, e = OTP_OK;
    guess g;
    memset(&g, 0, sizeof(g));
    /* The flush request makes the server answer without ending the implicit
     * transaction: the row lock (and the number's) stay held. */
    bool sent = send_prepared(c, S_VERIFY_LOCK, &p);
    if (sent && in->abuse.use)
        sent = send_prepared(c, S_PHONE_LOCK, &p) && send_prepared(c, S_PHONE_STATE_GET, &p);
    if (sent && PQsendFlushRequest(c->conn) && PQflush(c->conn) == 0) {
        PGresult *req = next_result(c, &e);
        if (in->abuse.use) {
            PQclear(next_result(c, &e));
            PGresult *ps = next_result(c, &e);
            if (!e)
                phone_state_of(ps, &g.ps);
            PQclear(ps);
        }
        if (!e)
            verdict = decide(in, req, &g);
        PQclear(req);
    } else {
        e = OTP_E_UNAVAILABLE;
    }
    bool unsent = !e && !send_guess_writes(c, in, &g);
    if (unsent) {
        /* Some writes are queued, not all: no sync, so none of them commits
         * (the reset below closes the transaction). */
        e = OTP_E_UNAVAILABLE;
    } else if (PQpipelineSync(c->conn) != 1) {
        e = OTP_E_UNAVAILABLE;
    } else {
        otp_err se = drain_to_sync(c);
        if (!e)
            e = se;
    }
    if (unsent || !PQexitPipelineMode(c->conn)) {
        PQreset(c->conn); /* a pipeline left half-read: start afresh */
        memset(c->prepared, 0, sizeof(c->prepared));
        if (!e)
            e = OTP_E_UNAVAILABLE;
    }
    if (e) {
        abuse_reset(&in->abuse);
        return e;
    }
    in->attempts_left = g.state.attempts_left;
    return verdict;
}

bool pg_verify_batchable(const otp_txn *t)
{
    return PG_BATCH_MAX > 1 && t->kind == OTP_TXN_VERIFY;
}

/* A guess's place in the order a batch locks its request rows: by request
 * id, so two batches (on two nodes) never wait for each other in a circle over
 * them. */
typedef struct vb_order {
    const char *request_id;
    size_t i; /* its index in the batch (queue order) */
} vb_order;

static int by_request_id(const void *a, const void *b)
{
    return strncmp(((const vb_order *)a)->request_id, ((const vb_order *)b)->request_id,
                   OTP_ID_SIZE);
}

/* Appends one element of a text[] literal: NULL for NULL or "", else quoted,
 * made valid UTF-8. */
static void sb_text_elem(otp_sbuf *b, const char *v)
{
    if (!v || !*v) {
        otp_sbuf_str(b, "NULL");
        return;
    }
    char buf[OTP_ERROR_TEXT_SIZE + OTP_PROVIDER_MSGID_SIZE];
    v = pg_clean_utf8(v, buf, sizeof(buf));
    otp_sbuf_put(b, "\"", 1);
    for (const char *s = v; *s; s++) {
        if (*s == '"' || *s == '\\')
            otp_sbuf_put(b, "\\", 1);
        otp_sbuf_put(b, s, 1);
    }
    otp_sbuf_put(b, "\"", 1);
}

/* The state of a verify batch, one entry per guess. */
typedef struct vb_entry {
    guess g;
    pg_params p;
    PGresult *req, *ps;
    otp_err verdict;
    bool refused; /* decided before anything was sent (an id no request can have) */
} vb_entry;

/* Pipelined as tx_verify(), for n guesses of one account on n different
 * requests, committed together with one WAL flush:
 * - round trip 1 locks every request row, in request id order; then, for the
 *   guesses that apply the abuse limits, the account row and all their
 *   numbers at once, in the numbers' order (the order sends take them in:
 *   account row, then the number), and reads each number's state;
 * - decide() judges each guess in queue order, as if alone: a number's state
 *   is carried from one of its guesses to the next (the batch read it before
 *   any of them wrote);
 * - round trip 2 writes what changed; the sync commits it.
 * Outcomes are pg_send_batch()'s. Only a sync sent after the writes can
 * commit, so a batch that failed before it (a statement that could not be
 * sent, an SQL error) left nothing and each guess runs again alone. */
int pg_verify_batch(pg_conn *c, otp_txn **txns, size_t n, bool *again)
{
    static const pg_stmt used[] = {S_VERIFY_LOCK, S_VERIFY_SET,      S_ACCOUNT_LOCK,
                                   S_PHONES_LOCK, S_PHONE_STATE_GET, S_PHONE_STATE_PUT,
                                   S_TRAFFIC_ADD};
    vb_entry *v = calloc(n, sizeof(*v));
    vb_order *ord = calloc(n, sizeof(*ord));
    otp_sbuf ids = {0}; /* the requests whose numbers the batch locks: a text[] literal */
    size_t m = 0;
    bool abuse = false, ok = v && ord;
    for (size_t i = 0; ok && i < sizeof(used) / sizeof(used[0]); i++)
        ok = pg_prepare(c, used[i]) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        otp_txn_verify *in = &txns[i]->u.verify;
        again[i] = false;
        abuse_reset(&in->abuse);
        txns[i]->err = OTP_E_UNAVAILABLE;
        if (!TERMINATED(in->request_id) || !pg_utf8_valid(in->request_id)) {
            v[i].refused = true;
            txns[i]->err = OTP_E_OTP_NOT_FOUND;
            continue;
        }
        ord[m++] = (vb_order){in->request_id, i};
        pg_p_text(&v[i].p, in->request_id);
        pg_p_int(&v[i].p, in->account_id);
        if (in->abuse.use) {
            abuse = true;
            otp_sbuf_str(&ids, ids.len ? "," : "{");
            sb_text_elem(&ids, in->request_id);
        }
    }
    if (abuse)
        otp_sbuf_str(&ids, "}");
    if (!ok || ids.failed || !PQenterPipelineMode(c->conn)) {
        for (size_t i = 0; i < n; i++) /* nothing was sent: each runs alone */
            if (!v || !v[i].refused)
                again[i] = true;
        free(v);
        free(ord);
        otp_sbuf_free(&ids);
        return PG_BATCH_ROLLED_BACK;
    }
    qsort(ord, m, sizeof(*ord), by_request_id);
    c->sqlstate[0] = '\0';

    /* Round trip 1. The flush request makes the server answer without ending
     * the implicit transaction: the locks stay held. */
    pg_params acc = {0};
    for (size_t k = 0; ok && k < m; k++)
        ok = send_prepared(c, S_VERIFY_LOCK, &v[ord[k].i].p);
    if (ok && abuse) {
        pg_p_int(&acc, txns[ord[0].i]->u.verify.account_id);
        ok = send_prepared(c, S_ACCOUNT_LOCK, &acc);
        pg_p_text(&acc, ids.p);
        ok = ok && send_prepared(c, S_PHONES_LOCK, &acc);
        for (size_t k = 0; ok && k < m; k++)
            if (txns[ord[k].i]->u.verify.abuse.use)
                ok = send_prepared(c, S_PHONE_STATE_GET, &v[ord[k].i].p);
    }
    otp_err e =
        ok && PQsendFlushRequest(c->conn) && PQflush(c->conn) == 0 ? OTP_OK : OTP_E_UNAVAILABLE;
    for (size_t k = 0; !e && k < m; k++)
        v[ord[k].i].req = next_result(c, &e);
    if (!e && abuse) {
        PQclear(next_result(c, &e));
        PQclear(next_result(c, &e));
        for (size_t k = 0; !e && k < m; k++)
            if (txns[ord[k].i]->u.verify.abuse.use)
                v[ord[k].i].ps = next_result(c, &e);
    }

    /* Decisions, in queue order. */
    for (size_t i = 0; !e && i < n; i++) {
        if (v[i].refused)
            continue;
        otp_txn_verify *in = &txns[i]->u.verify;
        if (in->abuse.use) {
            phone_state_of(v[i].ps, &v[i].g.ps);
            if (v[i].req && PQntuples(v[i].req) == 1) {
                const char *phone = pg_text(v[i].req, 0, 7);
                for (size_t j = i; j-- > 0;)
                    if (!v[j].refused && txns[j]->u.verify.abuse.use &&
                        strcmp(v[j].g.phone, phone) == 0) {
                        v[i].g.ps = v[j].g.ps;
                        break;
                    }
            }
        }
        v[i].verdict = decide(in, v[i].req, &v[i].g);
    }

    /* Round trip 2, and the commit. */
    bool synced = false;
    for (size_t i = 0; !e && i < n; i++)
        if (!v[i].refused && !send_guess_writes(c, &txns[i]->u.verify, &v[i].g))
            e = OTP_E_UNAVAILABLE;
    otp_err se = OTP_E_UNAVAILABLE;
    if (!e && PQpipelineSync(c->conn) == 1) {
        synced = true;
        se = drain_to_sync(c);
        e = se;
    }
    bool clean = synced && PQexitPipelineMode(c->conn);
    if (!clean) {
        /* Half-read, or never synced: closing the connection rolls back
         * whatever the server has of it. */
        PQreset(c->conn);
        memset(c->prepared, 0, sizeof(c->prepared));
    }
    int status = !e && clean                         ? PG_BATCH_COMMITTED
                 : synced && se == OTP_E_UNAVAILABLE ? PG_BATCH_LOST /* the commit's fate unknown */
                                                     : PG_BATCH_ROLLED_BACK;
    for (size_t i = 0; i < n; i++) {
        PQclear(v[i].req);
        PQclear(v[i].ps);
        if (v[i].refused)
            continue; /* its refusal stands */
        otp_txn_verify *in = &txns[i]->u.verify;
        if (status == PG_BATCH_COMMITTED) {
            in->attempts_left = v[i].g.state.attempts_left;
            txns[i]->err = v[i].verdict;
            continue;
        }
        abuse_reset(&in->abuse);
        /* Rolled back whole: as if never run, so each runs again alone. Lost:
         * it may have committed, so it must not run again. */
        again[i] = status == PG_BATCH_ROLLED_BACK;
        txns[i]->err = OTP_E_UNAVAILABLE;
    }
    free(v);
    free(ord);
    otp_sbuf_free(&ids);
    return status;
}

/* ---- accounts, keys, wallet ---- */

static otp_err tx_key_touch(pg_conn *c, const otp_txn_key_touch *in)
{
    pg_params p = {0};
    pg_p_int(&p, in->key_id);
    pg_p_int(&p, in->now_ms);
    return run(c, S_KEY_TOUCH, &p, NULL);
}

/* ACCOUNT_CREATE: OTP_OK with ret_id set; OTP_E_INVALID_REQUEST for an empty or
 * taken name (or id); or a store error. */
static otp_err tx_account_create(pg_conn *c, otp_txn_account_create *in)
{
    if (!in->name[0] || !in->public_id[0] || !TERMINATED(in->name) || !TERMINATED(in->public_id))
        return OTP_E_INVALID_REQUEST;
    char name[OTP_NAME_SIZE];
    pg_params p = {0};
    pg_p_text(&p, in->public_id);
    pg_p_text(&p, pg_clean_utf8(in->name, name, sizeof(name)));
    pg_p_int(&p, in->now_ms);
    PGresult *r;
    otp_err e = run(c, S_ACCOUNT_INSERT, &p, &r);
    if (e && state_is(c, "23505"))
        e = OTP_E_INVALID_REQUEST; /* the name (or id) is taken */
    if (!e)
        in->ret_id = PQntuples(r) == 1 ? pg_int(r, 0, 0) : 0;
    PQclear(r);
    return e;
}

/* KEY_CREATE: OTP_OK; OTP_E_NOT_FOUND (no such account); OTP_E_INVALID_REQUEST
 * (a taken hash or id); or a store error. */
static otp_err tx_key_create(pg_conn *c, const otp_txn_key_create *in)
{
    if (!in->public_id[0] || !TERMINATED(in->public_id) || !TERMINATED(in->prefix) ||
        !TERMINATED(in->name))
        return OTP_E_INVALID_REQUEST;
    char name[OTP_NAME_SIZE];
    pg_params p = {0};
    pg_p_int(&p, in->account_id);
    pg_p_text(&p, in->public_id);
    pg_p_bytea(&p, in->hash, OTP_APIKEY_HASH_LEN);
    pg_p_text(&p, in->prefix);
    pg_p_text(&p, pg_clean_utf8(in->name, name, sizeof(name)));
    pg_p_int(&p, in->test);
    pg_p_int(&p, in->now_ms);
    otp_err e = run(c, S_KEY_INSERT, &p, NULL);
    if (e && state_is(c, "23503"))
        return OTP_E_NOT_FOUND;
    if (e && state_is(c, "23505"))
        return OTP_E_INVALID_REQUEST;
    return e;
}

/* KEY_REVOKE: OTP_OK; OTP_E_NOT_FOUND if no such key or already revoked. */
static otp_err tx_key_revoke(pg_conn *c, const otp_txn_key_revoke *in)
{
    if (!TERMINATED(in->public_id))
        return OTP_E_NOT_FOUND;
    pg_params p = {0};
    pg_p_text(&p, in->public_id);
    pg_p_int(&p, in->now_ms);
    PGresult *r;
    otp_err e = run(c, S_KEY_REVOKE, &p, &r);
    if (!e && changed(r) != 1)
        e = OTP_E_NOT_FOUND;
    PQclear(r);
    return e;
}

/* WALLET_CREDIT: one call of otp_credit(), which takes the account's row lock
 * before it looks for the reference (see there). OTP_OK with the outputs set
 * (replayed: the reference's earlier credit, nothing written);
 * OTP_E_IDEMPOTENCY_KEY_REUSED (that credit was of another amount);
 * OTP_E_INVALID_REQUEST (amount <= 0, a bad reference, or the balance would
 * overflow); OTP_E_NOT_FOUND; or a store error. */
static otp_err tx_wallet_credit(pg_conn *c, otp_txn_wallet_credit *in)
{
    in->replayed = false; /* the txn may run again (a deadlock retried) */
    if (in->amount <= 0 || !TERMINATED(in->note) || !otp_store_reference_ok(in->reference))
        return OTP_E_INVALID_REQUEST;
    char note[OTP_NOTE_SIZE];
    pg_params p = {0};
    pg_p_int(&p, in->account_id);
    pg_p_int(&p, in->amount);
    pg_p_text_opt(&p, pg_clean_utf8(in->note, note, sizeof(note)));
    pg_p_text_opt(&p, in->reference);
    pg_p_int(&p, in->now_ms);
    PGresult *r;
    otp_err e = run(c, S_CREDIT, &p, &r);
    if (e && in->reference[0] && state_is(c, "23505")) {
        /* ledger_reference refused the entry: one with this reference was
         * committed without the account's lock. The call was rolled back
         * whole; run again, it finds that entry and answers it. */
        PQclear(r);
        e = run(c, S_CREDIT, &p, &r);
    }
    if (e && state_is(c, "22003"))
        e = OTP_E_INVALID_REQUEST; /* bigint out of range */
    if (!e && PQntuples(r) != 1)
        e = OTP_E_INTERNAL;
    if (!e) {
        in->ledger_id = pg_int(r, 0, 0);
        in->balance_after = pg_int(r, 0, 1);
        in->created_at_ms = pg_int(r, 0, 2);
        in->replayed = pg_int(r, 0, 3) != 0;
    }
    PQclear(r);
    return e;
}

/* ---- admin keys ---- */

/* ADMIN_KEY_CREATE: OTP_OK with ret_id set; OTP_E_INVALID_REQUEST (an empty,
 * unterminated or taken id, a taken hash, a prefix that is not text); or a
 * store error. */
static otp_err tx_admin_key_create(pg_conn *c, otp_txn_admin_key_create *in)
{
    if (!in->public_id[0] || !TERMINATED(in->public_id) || !TERMINATED(in->prefix) ||
        !TERMINATED(in->name) || !pg_utf8_valid(in->public_id) || !pg_utf8_valid(in->prefix))
        return OTP_E_INVALID_REQUEST;
    char name[OTP_NAME_SIZE];
    pg_params p = {0};
    pg_p_text(&p, in->public_id);
    pg_p_bytea(&p, in->hash, OTP_APIKEY_HASH_LEN);
    pg_p_text(&p, in->prefix);
    pg_p_text(&p, pg_clean_utf8(in->name, name, sizeof(name)));
    pg_p_int(&p, in->now_ms);
    PGresult *r;
    otp_err e = run(c, S_ADMIN_KEY_INSERT, &p, &r);
    if (e && state_is(c, "23505"))
        e = OTP_E_INVALID_REQUEST; /* the id or the hash is taken */
    if (!e && PQntuples(r) != 1)
        e = OTP_E_INTERNAL;
    if (!e)
        in->ret_id = pg_int(r, 0, 0);
    PQclear(r);
    return e;
}

/* ADMIN_KEY_REVOKE: OTP_OK; OTP_E_NOT_FOUND if no such admin key or already
 * revoked; or a store error. */
static otp_err tx_admin_key_revoke(pg_conn *c, const otp_txn_key_revoke *in)
{
    if (!TERMINATED(in->public_id) || !pg_utf8_valid(in->public_id))
        return OTP_E_NOT_FOUND;
    pg_params p = {0};
    pg_p_text(&p, in->public_id);
    pg_p_int(&p, in->now_ms);
    PGresult *r;
    otp_err e = run(c, S_ADMIN_KEY_REVOKE, &p, &r);
    if (!e && changed(r) != 1)
        e = OTP_E_NOT_FOUND;
    PQclear(r);
    return e;
}

/* ---- outbox ---- */

static void idem_discard(otp_idem *idem)
{
    free(idem->replay_response);
    idem->replay_response = NULL;
    idem->replayed = false;
    idem->replay_status = 0;
}

void pg_txn_discard(otp_txn *t)
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

/* OUTBOX_CLAIM: one statement (S_CLAIM). OTP_OK with msgs/n set (msgs NULL when
 * n is 0); on error nothing is returned. */
static otp_err tx_outbox_claim(pg_conn *c, otp_txn_outbox_claim *in)
{
    in->msgs = NULL;
    in->n = 0;
    if (in->max == 0)
        return OTP_OK;
    if (in->lease_ms <= 0)
        return OTP_E_INVALID_REQUEST;
    pg_params p = {0};
    pg_p_int(&p, in->now_ms);
    pg_p_int(&p, in->max > 100000 ? 100000 : (int64_t)in->max);
    pg_p_int(&p, in->now_ms + in->lease_ms);
    PGresult *r;
    otp_err e = run(c, S_CLAIM, &p, &r);
    int n = e ? 0 : PQntuples(r);
    otp_outbox_msg *msgs = n ? calloc((size_t)n, sizeof(*msgs)) : NULL;
    if (n && !msgs)
        e = OTP_E_INTERNAL;
    for (int i = 0; !e && i < n; i++) {
        otp_outbox_msg *m = &msgs[i];
        m->id = pg_int(r, i, 0);
        pg_copy(r, i, 1, m->public_id, sizeof(m->public_id));
        pg_copy(r, i, 2, m->request_id, sizeof(m->request_id));
        m->account_id = pg_int(r, i, 3);
        pg_copy(r, i, 4, m->to, sizeof(m->to));
        if (pg_bytea(r, i, 5, &m->sealed, &m->sealed_len))
            e = OTP_E_INTERNAL;
        m->attempts = (int)pg_int(r, i, 6);
        m->segments = (int)pg_int(r, i, 7);
        m->created_at_ms = pg_int(r, i, 8);
        m->expires_at_ms = pg_int(r, i, 9);
        pg_copy(r, i, 10, m->sender_id, sizeof(m->sender_id));
        pg_copy(r, i, 11, m->dlt_template_id, sizeof(m->dlt_template_id));
    }
    PQclear(r);
    if (e) {
        /* The claim committed, but nobody will send these: their leases run
         * out and they are claimed again. */
        otp_outbox_msgs_free(msgs, (size_t)n);
        return e;
    }
    in->msgs = msgs;
    in->n = (size_t)n;
    return OTP_OK;
}

static int by_id(const void *a, const void *b)
{
    const otp_outbox_report *x = *(const otp_outbox_report *const *)a;
    const otp_outbox_report *y = *(const otp_outbox_report *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

/* OUTBOX_REPORT: all reports or none, one call of otp_report() with parallel
 * arrays sorted by message id. OTP_OK; OTP_E_INVALID_REQUEST (a status other
 * than SENT, FAILED or QUEUED, before anything is sent); or a store error. */
static otp_err tx_outbox_report(pg_conn *c, const otp_txn_outbox_report *in)
{
    if (in->n && !in->reports)
        return OTP_E_INVALID_REQUEST;
    for (size_t i = 0; i < in->n; i++)
        if (in->reports[i].status != OTP_MSG_SENT && in->reports[i].status != OTP_MSG_FAILED &&
            in->reports[i].status != OTP_MSG_QUEUED)
            return OTP_E_INVALID_REQUEST;
    if (in->n == 0)
        return OTP_OK;
    const otp_outbox_report **sorted = malloc(in->n * sizeof(*sorted));
    if (!sorted)
        return OTP_E_INTERNAL;
    for (size_t i = 0; i < in->n; i++)
        sorted[i] = &in->reports[i];
    qsort(sorted, in->n, sizeof(*sorted), by_id);

    otp_sbuf a[6] = {{0}}; /* ids, statuses, providers, provider ids, errors, next attempts */
    char num[32];
    for (size_t i = 0; i < in->n; i++) {
        const otp_outbox_report *rep = sorted[i];
        const char *sep = i ? "," : "{";
        for (int k = 0; k < 6; k++)
            otp_sbuf_str(&a[k], sep);
        snprintf(num, sizeof(num), "%lld", (long long)rep->id);
        otp_sbuf_str(&a[0], num);
        otp_sbuf_str(&a[1], otp_msg_status_name(rep->status));
        sb_text_elem(&a[2], TERMINATED(rep->provider) ? rep->provider : NULL);
        sb_text_elem(&a[3], TERMINATED(rep->provider_message_id) ? rep->provider_message_id : NULL);
        sb_text_elem(&a[4], TERMINATED(rep->error) ? rep->error : NULL);
        snprintf(num, sizeof(num), "%lld", (long long)rep->next_attempt_at_ms);
        otp_sbuf_str(&a[5], num);
    }
    free(sorted);
    otp_err e = OTP_OK;
    for (int k = 0; k < 6; k++) {
        otp_sbuf_str(&a[k], "}");
        if (a[k].failed)
            e = OTP_E_INTERNAL;
    }
    if (!e) {
        pg_params p = {0};
        for (int k = 0; k < 6; k++)
            pg_p_text(&p, a[k].p);
        pg_p_int(&p, in->now_ms);
        e = run(c, S_REPORT, &p, NULL);
    }
    for (int k = 0; k < 6; k++)
        otp_sbuf_free(&a[k]);
    return e;
}

/* ---- RESEND and CANCEL ---- */

/* One call of otp_resend() with region (see bind_abuse()). Its outcome, with
 * its one row in *ret_r (PQclear it) also on error. */
static otp_err resend_call(pg_conn *c, const otp_txn_resend *in, const char *region,
                           PGresult **ret_r)
{
    pg_params p = {0};
    pg_p_int(&p, in->account_id);
    if (in->key_id > 0)
        pg_p_int(&p, in->key_id);
    else
        pg_p_null(&p);
    pg_p_bool(&p, in->test);
    pg_p_text(&p, in->request_id);
    pg_p_text(&p, in->message_id);
    pg_p_bool(&p, in->rotate);
    pg_p_bytea(&p, in->code_hash, OTP_CODE_HASH_LEN);
    pg_p_int(&p, in->now_ms);
    pg_p_int(&p, in->cooldown_ms);
    pg_p_int(&p, in->max_resends);
    pg_p_int(&p, in->segments);
    pg_p_bytea(&p, in->sealed_text, in->sealed_text_len);
    pg_p_text_opt(&p, in->sender_id);
    pg_p_text_opt(&p, in->dlt_template_id);
    bind_idem(&p, &in->idem);
    /* The request's number as the API read it (the store derives only what it
     * must: without it, the prefix on the server, no safe list). */
    bind_abuse(&p, &in->abuse, in->abuse.phone, region, in->test);
    otp_err e = run(c, S_RESEND, &p, ret_r);
    if (!e && PQntuples(*ret_r) != 1)
        e = OTP_E_INTERNAL;
    return e;
}

/* RESEND: one call of otp_resend(); see store.h for the order of the checks.
 * Returns OTP_OK with the outputs set (or idem.replayed), a business error with
 * nothing stored (retry_after_s set for OTP_E_RESEND_TOO_SOON), or a store
 * error. */
static otp_err tx_resend(pg_conn *c, otp_txn_resend *in)
{
    abuse_reset(&in->abuse);
    otp_err e;
    if (in->segments < 1 || !text_ok(in->sealed_text, in->sealed_text_len) || in->max_resends < 0 ||
        in->cooldown_ms < 0)
        return OTP_E_INVALID_REQUEST;
    if (in->idem.use && (e = idem_valid(&in->idem)))
        return e;
    if (!TERMINATED(in->request_id) || !pg_utf8_valid(in->request_id))
        return OTP_E_OTP_NOT_FOUND;
    /* The region stored with the request (NULL), unless the caller knows it. */
    const char *region =
        in->abuse.region[0] && TERMINATED(in->abuse.region) ? in->abuse.region : NULL;
    PGresult *r;
    e = resend_call(c, in, region, &r);
    if (!e && !region && strcmp(pg_text(r, 0, 0), "region_needed") == 0) {
        /* A request sent before schema 3 has no stored region: parse its
         * number ("" if that fails) and call again; nothing was written. */
        PQclear(r);
        otp_phone ph;
        e = resend_call(c, in,
                        otp_phone_parse(in->abuse.phone, &ph) == OTP_PHONE_OK ? ph.region : "", &r);
    }
    if (!e && !PQgetisnull(r, 0, 0)) { /* refused, nothing written but a pumping block */
        e = pg_err_by_code(pg_text(r, 0, 0));
        if (e == OTP_E_RESEND_TOO_SOON) {
            /* otp_resend() counts from this resend's now, which is older than
             * the last send's when a resend that arrived later won the row
             * lock: the wait is then the whole cooldown, never more. */
            int64_t v = pg_int(r, 0, 1), cap = (in->cooldown_ms + 999) / 1000;
            if (v > cap)
                v = cap;
            in->retry_after_s = v > 0 && v < INT_MAX ? (int)v : 1;
        } else {
            read_abuse(r, 2, 1, 3, &in->abuse);
        }
        PQclear(r);
        return e;
    }
    bool replayed = false;
    if (!e)
        e = read_replay(r, 8, &in->idem, &replayed);
    if (!e && !replayed) {
        in->expires_at_ms = pg_int(r, 0, 4);
        in->attempts_left = (int)pg_int(r, 0, 5);
        in->charged = pg_int(r, 0, 6);
        in->balance_after = pg_int(r, 0, 7);
    }
    PQclear(r);
    return e;
}

/* CANCEL: one call of otp_cancel(). OTP_OK, the status errors of RESEND with
 * nothing written, or a store error. */
static otp_err tx_cancel(pg_conn *c, const otp_txn_cancel *in)
{
    if (!TERMINATED(in->request_id) || !pg_utf8_valid(in->request_id))
        return OTP_E_OTP_NOT_FOUND;
    pg_params p = {0};
    pg_p_int(&p, in->account_id);
    pg_p_text(&p, in->request_id);
    pg_p_int(&p, in->now_ms);
    return run(c, S_CANCEL, &p, NULL);
}

/* ---- account settings and templates ---- */

/* ACCOUNT_SET: writes the fields whose OTP_SET_* bit is set. OTP_OK;
 * OTP_E_INVALID_REQUEST or OTP_E_NOT_FOUND with nothing written; or a store
 * error. */
static otp_err tx_account_set(pg_conn *c, otp_txn_account_set *in)
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
    char domain[OTP_DOMAIN_SIZE] = "", limits[OTP_LIMITS_TEXT_SIZE] = "";
    char lift[OTP_PREFIX_SIZE] = "";
    pg_params p = {0};
    pg_p_int(&p, in->account_id);
    pg_p_int(&p, in->fields);
    pg_p_int(&p, in->price_per_segment);
    pg_p_int(&p, in->low_balance_threshold);
    pg_p_text(&p, in->resend_strategy == OTP_RESEND_REUSE ? "reuse" : "rotate");
    pg_p_text_opt(&p, (in->fields & OTP_SET_WEBOTP_DOMAIN)
                          ? pg_clean_utf8(in->webotp_domain, domain, sizeof(domain))
                          : NULL);
    pg_p_text(&p, (in->fields & OTP_SET_LIMITS) ? pg_clean_utf8(in->limits, limits, sizeof(limits))
                                                : "");
    pg_p_text(&p, (in->fields & OTP_SET_BLOCK_LIFT)
                      ? pg_clean_utf8(in->lift_target, lift, sizeof(lift))
                      : "");
    pg_p_int(&p, in->now_ms);
    PGresult *r;
    otp_err e = run(c, S_ACCOUNT_SET, &p, &r);
    if (!e)
        in->lifted = PQntuples(r) == 1 ? (int)pg_int(r, 0, 0) : 0;
    PQclear(r);
    return e;
}

/* TEMPLATE_ADD: OTP_OK with tpl.is_default saying whether it became the
 * default; OTP_E_INVALID_REQUEST (empty or unterminated fields, a taken name or
 * id) or OTP_E_NOT_FOUND (no such account) with nothing written; or a store
 * error. */
static otp_err tx_template_add(pg_conn *c, otp_txn_template_add *in)
{
    otp_template *t = &in->tpl;
    if (!t->public_id[0] || !t->name[0] || !t->body[0] || !TERMINATED(t->public_id) ||
        !TERMINATED(t->name) || !TERMINATED(t->body) || !TERMINATED(t->dlt_template_id) ||
        !TERMINATED(t->sender_id))
        return OTP_E_INVALID_REQUEST;
    char name[OTP_TEMPLATE_NAME_SIZE], body[OTP_TEMPLATE_BODY_SIZE];
    char dlt[OTP_DLT_ID_SIZE], sender[OTP_SENDER_ID_SIZE];
    pg_params p = {0};
    pg_p_int(&p, in->account_id);
    pg_p_text(&p, t->public_id);
    pg_p_text(&p, pg_clean_utf8(t->name, name, sizeof(name)));
    pg_p_text(&p, pg_clean_utf8(t->body, body, sizeof(body)));
    pg_p_text_opt(&p, pg_clean_utf8(t->dlt_template_id, dlt, sizeof(dlt)));
    pg_p_text_opt(&p, pg_clean_utf8(t->sender_id, sender, sizeof(sender)));
    pg_p_int(&p, t->created_at_ms);
    pg_p_bool(&p, t->is_default);
    PGresult *r;
    otp_err e = run(c, S_TPL_ADD, &p, &r);
    if (e && state_is(c, "23505"))
        e = OTP_E_INVALID_REQUEST;
    else if (e && state_is(c, "23503"))
        e = OTP_E_NOT_FOUND;
    if (!e && PQntuples(r) != 1)
        e = OTP_E_INTERNAL;
    if (!e)
        t->is_default = strcmp(pg_text(r, 0, 0), "t") == 0;
    PQclear(r);
    return e;
}

/* TEMPLATE_REMOVE and TEMPLATE_SET_DEFAULT: OTP_OK, OTP_E_NOT_FOUND, or a store
 * error. */
static otp_err tx_template_ref(pg_conn *c, pg_stmt i, const otp_txn_template_ref *in)
{
    if (!in->id_or_name[0] || !TERMINATED(in->id_or_name))
        return OTP_E_NOT_FOUND;
    char ref[OTP_TEMPLATE_NAME_SIZE];
    pg_params p = {0};
    pg_p_int(&p, in->account_id);
    pg_p_text(&p, pg_clean_utf8(in->id_or_name, ref, sizeof(ref)));
    return run(c, i, &p, NULL);
}

/* ---- delivery reports ---- */

/* DELIVERY_REPORT: one call of otp_dlr(). OTP_OK with message_id set;
 * OTP_E_INVALID_REQUEST or OTP_E_MESSAGE_NOT_FOUND with nothing written; or a
 * store error. */
static otp_err tx_delivery_report(pg_conn *c, otp_txn_delivery_report *in)
{
    if (in->status != OTP_MSG_DELIVERED && in->status != OTP_MSG_UNDELIVERABLE &&
        in->status != OTP_MSG_FAILED)
        return OTP_E_INVALID_REQUEST;
    if (!in->provider[0] || !in->provider_message_id[0] || !TERMINATED(in->provider) ||
        !TERMINATED(in->provider_message_id) || !TERMINATED(in->error))
        return OTP_E_MESSAGE_NOT_FOUND;
    char provider[OTP_PROVIDER_NAME_SIZE], pmid[OTP_PROVIDER_MSGID_SIZE];
    char error[OTP_ERROR_TEXT_SIZE];
    pg_params p = {0};
    pg_p_text(&p, pg_clean_utf8(in->provider, provider, sizeof(provider)));
    pg_p_text(&p, pg_clean_utf8(in->provider_message_id, pmid, sizeof(pmid)));
    pg_p_text(&p, otp_msg_status_name(in->status));
    pg_p_text_opt(&p, pg_clean_utf8(in->error, error, sizeof(error)));
    pg_p_int(&p, in->now_ms);
    PGresult *r;
    otp_err e = run(c, S_DLR, &p, &r);
    if (!e && PQntuples(r) != 1)
        e = OTP_E_INTERNAL;
    if (!e)
        pg_copy(r, 0, 0, in->message_id, sizeof(in->message_id));
    PQclear(r);
    return e;
}

/* ---- purge ---- */

static int64_t cutoff(int64_t now, int64_t retention)
{
    return retention > 0 && now < INT64_MIN + retention ? INT64_MIN : now - retention;
}

/* PURGE: one call of otp_purge(), then the shared token buckets (schema 7) of
 * keys that can no longer use them. OTP_OK with the counts set;
 * OTP_E_INVALID_REQUEST (max_rows < 1, negative retention); or a store error. */
static otp_err tx_purge(pg_conn *c, otp_txn_purge *in)
{
    if (in->max_rows < 1 || in->request_retention_ms < 0 || in->idem_retention_ms < 0)
        return OTP_E_INVALID_REQUEST;
    pg_params p = {0};
    pg_p_int(&p, in->now_ms);
    pg_p_int(&p, cutoff(in->now_ms, in->request_retention_ms));
    pg_p_int(&p, cutoff(in->now_ms, in->idem_retention_ms));
    pg_p_int(&p, in->max_rows);
    PGresult *r;
    otp_err e = run(c, S_PURGE, &p, &r);
    if (!e && PQntuples(r) != 1)
        e = OTP_E_INTERNAL;
    if (!e) {
        in->erased_codes = (int)pg_int(r, 0, 0);
        in->purged_requests = (int)pg_int(r, 0, 1);
        in->purged_idem = (int)pg_int(r, 0, 2);
    }
    PQclear(r);
    /* The buckets only once the backlog is gone (a full pass is followed by
     * another at once), and a failure there does not make the pass's own
     * deletes, already committed, look failed: the next pass tries again. */
    bool full = in->purged_requests >= in->max_rows || in->purged_idem >= in->max_rows ||
                in->erased_codes >= in->max_rows;
    if (!e && !full) {
        pg_params none = {0};
        (void)run(c, S_KEY_BUCKETS_PURGE, &none, NULL);
    }
    return e;
}

otp_err pg_txn_run(pg_conn *c, otp_txn *t)
{
    c->sqlstate[0] = '\0';
    switch (t->kind) {
    case OTP_TXN_SEND:
        return tx_send(c, &t->u.send);
    case OTP_TXN_VERIFY:
        return tx_verify(c, &t->u.verify);
    case OTP_TXN_KEY_TOUCH:
        return tx_key_touch(c, &t->u.key_touch);
    case OTP_TXN_ACCOUNT_CREATE:
        return tx_account_create(c, &t->u.account_create);
    case OTP_TXN_KEY_CREATE:
        return tx_key_create(c, &t->u.key_create);
    case OTP_TXN_KEY_REVOKE:
        return tx_key_revoke(c, &t->u.key_revoke);
    case OTP_TXN_WALLET_CREDIT:
        return tx_wallet_credit(c, &t->u.wallet_credit);
    case OTP_TXN_OUTBOX_CLAIM:
        return tx_outbox_claim(c, &t->u.outbox_claim);
    case OTP_TXN_OUTBOX_REPORT:
        return tx_outbox_report(c, &t->u.outbox_report);
    case OTP_TXN_RESEND:
        return tx_resend(c, &t->u.resend);
    case OTP_TXN_CANCEL:
        return tx_cancel(c, &t->u.cancel);
    case OTP_TXN_ACCOUNT_SET:
        return tx_account_set(c, &t->u.account_set);
    case OTP_TXN_TEMPLATE_ADD:
        return tx_template_add(c, &t->u.template_add);
    case OTP_TXN_TEMPLATE_REMOVE:
        return tx_template_ref(c, S_TPL_REMOVE, &t->u.template_ref);
    case OTP_TXN_TEMPLATE_SET_DEFAULT:
        return tx_template_ref(c, S_TPL_DEFAULT, &t->u.template_ref);
    case OTP_TXN_DELIVERY_REPORT:
        return tx_delivery_report(c, &t->u.delivery_report);
    case OTP_TXN_PURGE:
        return tx_purge(c, &t->u.purge);
    case OTP_TXN_ADMIN_KEY_CREATE:
        return tx_admin_key_create(c, &t->u.admin_key_create);
    case OTP_TXN_ADMIN_KEY_REVOKE:
        return tx_admin_key_revoke(c, &t->u.admin_key_revoke);
    }
    return OTP_E_INTERNAL;
}
