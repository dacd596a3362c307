/* store/sqlite_read.c — the read calls of the SQLite backend.
 *
 * Reads never go through the writer thread: each calling thread gets its own
 * read-only connection (WAL lets readers run beside the writer, each on the last
 * committed snapshot), opened on first use and kept with its prepared statements
 * until the store closes. A thread finds its connection through a small
 * _Thread_local cache keyed by the store's serial number — serials are never
 * reused, so a cache entry of a closed store can never match again and is never
 * dereferenced. On a cache miss the store's registry (under a mutex) is searched
 * for the connection this thread opened earlier, so a thread alternating between
 * more stores than the cache holds still uses one connection per store.
 *
 * Every statement is reset before the call returns, which ends its read
 * transaction: a connection never pins an old snapshot (that would stop
 * checkpoints and let the WAL grow). Each read is one statement, so what it
 * returns is consistent (account_stats reads the balance and the ledger sum from
 * the same snapshot); the one exception, request_status, runs its two
 * statements between a BEGIN and a COMMIT and leaves no transaction open on any
 * path.
 *
 * Reads must not run concurrently with close(); a thread that exits leaves its
 * connection in the registry until close().
 */
#include "store/sqlite_internal.h"

#include <stdlib.h>
#include <string.h>

typedef enum {
    R_VERSION,
    R_KEY_LOOKUP,
    R_ACC_BY_PUBLIC_ID,
    R_ACC_BY_NAME,
    R_ACC_BY_ID,
    R_ACC_LIST,
    R_KEY_LIST,
    R_STATS,
    R_OUTBOX_DEPTH,
    R_REQ_GET,
    R_REQ_MESSAGES,
    R_MSG_GET,
    R_MSG_EVENTS,
    R_LEDGER,
    R_TPL_FIND,
    R_TPL_DEFAULT,
    R_TPL_LIST,
    R_TEST_INBOX,
    R_LIMITS,
    R_BLOCKS,
    R_ADMIN_KEY_LOOKUP,
    R_ADMIN_KEY_LIST,
    R_BEGIN,
    R_COMMIT,
    R__COUNT
} sq_rstmt;

#define ACCOUNT_COLS                                                                               \
    "SELECT id, public_id, name, balance, currency, price_per_segment, low_balance_threshold,"     \
    " created_at, resend_strategy = 'reuse', coalesce(webotp_domain, '') FROM accounts"
#define MESSAGE_COLS                                                                               \
    "SELECT m.public_id, r.public_id, m.to_phone, m.status, coalesce(m.provider, ''),"             \
    " coalesce(m.provider_message_id, ''), m.attempts, m.segments, m.created_at, m.updated_at,"    \
    " coalesce(m.error, ''), m.test FROM messages m JOIN otp_requests r ON r.id = m.request_id"
#define TEMPLATE_COLS                                                                              \
    "SELECT public_id, name, body, coalesce(dlt_template_id, ''), coalesce(sender_id, ''),"        \
    " is_default, created_at FROM templates"
#define ADMIN_KEY_COLS                                                                             \
    "SELECT id, public_id, prefix, name, created_at, coalesce(revoked_at, 0) FROM admin_keys"

/* The hot path of every authenticated call: one statement, three index
 * lookups (the key's hash, the account's rowid, the default template through
 * the partial unique index templates_default). */
const char sq_key_lookup_sql[] =
    "SELECT k.id, k.account_id, a.public_id, a.name, k.test,"
    " k.revoked_at IS NOT NULL, coalesce(k.last_used_at, 0),"
    " a.resend_strategy = 'reuse', coalesce(a.webotp_domain, ''), coalesce(t.public_id, '')"
    " FROM api_keys k JOIN accounts a ON a.id = k.account_id"
    " LEFT JOIN templates t ON t.account_id = a.id AND t.is_default = 1"
    " WHERE k.hash = ?1";

/* A range of the index ledger_account(account_id, id), walked backwards. */
const char sq_ledger_sql[] = "SELECT id, type, amount, balance_after, coalesce(request_id, ''),"
                             " coalesce(message_id, ''), coalesce(note, ''), created_at FROM ledger"
                             " WHERE account_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3";

/* Walks the partial index messages_test_inbox(account_id, to_phone) backwards:
 * within one (account, phone) its entries are in rowid order. */
const char sq_test_inbox_sql[] =
    "SELECT m.public_id, r.public_id, m.to_phone, m.sealed_text, m.created_at"
    " FROM messages m JOIN otp_requests r ON r.id = m.request_id"
    " WHERE m.account_id = ?1 AND m.to_phone = ?2 AND m.test = 1"
    " ORDER BY m.id DESC LIMIT ?3";

static const char *const rsql[R__COUNT] = {
    [R_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
    [R_KEY_LOOKUP] = sq_key_lookup_sql,
    [R_ACC_BY_PUBLIC_ID] = ACCOUNT_COLS " WHERE public_id = ?1",
    [R_ACC_BY_NAME] = ACCOUNT_COLS " WHERE name = ?1",
    [R_ACC_BY_ID] = ACCOUNT_COLS " WHERE id = ?1",
    [R_ACC_LIST] = ACCOUNT_COLS " ORDER BY id",
    [R_KEY_LIST] = "SELECT id, public_id, account_id, prefix, name, test, created_at,"
                   " coalesce(last_used_at, 0), coalesce(revoked_at, 0)"
                   " FROM api_keys WHERE account_id = ?1 ORDER BY id",
    [R_STATS] = "SELECT a.balance,"
                " (SELECT count(*) FROM otp_requests WHERE account_id = a.id),"
                " (SELECT count(*) FROM messages WHERE account_id = a.id),"
                " (SELECT count(*) FROM ledger WHERE account_id = a.id),"
                " (SELECT coalesce(sum(amount), 0) FROM ledger WHERE account_id = a.id)"
                " FROM accounts a WHERE a.id = ?1",
    /* Both counts from the partial index messages_outbox. */
    [R_OUTBOX_DEPTH] =
        "SELECT coalesce(sum(status = 'queued'), 0), coalesce(sum(status = 'sending'), 0)"
        " FROM messages WHERE status IN ('queued', 'sending')",
    [R_REQ_GET] = "SELECT id, public_id, account_id, test, phone, status, attempts_left,"
                  " max_attempts, code_length, expires_in, created_at, expires_at,"
                  " coalesce(verified_at, 0), resend_count, coalesce(last_sent_at, created_at),"
                  " channel, coalesce(template_id, ''), coalesce(app_name, ''),"
                  " coalesce(app_hash, ''), code_sealed, code_hash"
                  " FROM otp_requests WHERE public_id = ?1 AND account_id = ?2",
    [R_REQ_MESSAGES] = MESSAGE_COLS " WHERE r.public_id = ?1 AND r.account_id = ?2 ORDER BY m.id",
    [R_MSG_GET] = MESSAGE_COLS " WHERE m.public_id = ?1 AND m.account_id = ?2",
    /* messages.events: JSON arrays [status, at, error] joined by commas; the
     * first event appended to a row migrated without any leaves a leading
     * comma. */
    [R_MSG_EVENTS] = "SELECT e.value ->> 0, e.value ->> 1, coalesce(e.value ->> 2, '')"
                     " FROM messages m, json_each('[' || ltrim(m.events, ',') || ']') e"
                     " WHERE m.public_id = ?1 AND m.account_id = ?2 ORDER BY e.key",
    [R_LEDGER] = sq_ledger_sql,
    /* A public id wins over a name that happens to look like one. */
    [R_TPL_FIND] = TEMPLATE_COLS " WHERE account_id = ?1 AND (public_id = ?2 OR name = ?2)"
                                 " ORDER BY public_id = ?2 DESC LIMIT 1",
    [R_TPL_DEFAULT] = TEMPLATE_COLS " WHERE account_id = ?1 AND is_default = 1",
    [R_TPL_LIST] = TEMPLATE_COLS " WHERE account_id = ?1 ORDER BY id",
    [R_TEST_INBOX] = sq_test_inbox_sql,
    [R_LIMITS] = "SELECT text FROM account_limits WHERE account_id = ?1",
    /* kind: 0 pumping block, 1 window lock, 2 streak lock */
    [R_BLOCKS] = "SELECT b.account_id, a.public_id, b.target, 0, b.created_at, b.until"
                 " FROM blocks b JOIN accounts a ON a.id = b.account_id"
                 " WHERE b.until > ?2 AND (?1 = 0 OR b.account_id = ?1)"
                 " UNION ALL"
                 " SELECT p.account_id, a.public_id, p.phone, p.lock_kind, 0, p.locked_until"
                 " FROM phone_state p JOIN accounts a ON a.id = p.account_id"
                 " WHERE p.locked_until > ?2 AND (?1 = 0 OR p.account_id = ?1)"
                 " ORDER BY 1, 6",
    [R_ADMIN_KEY_LOOKUP] = ADMIN_KEY_COLS " WHERE hash = ?1",
    [R_ADMIN_KEY_LIST] = ADMIN_KEY_COLS " ORDER BY id",
    /* One read transaction around several statements (sq_request_status). */
    [R_BEGIN] = "BEGIN",
    [R_COMMIT] = "COMMIT",
};

struct sq_reader {
    sqlite3 *db;
    sqlite3_stmt *st[R__COUNT];
    uint64_t thread; /* serial of the thread that owns it */
    sq_reader *next;
};

#define TL_SLOTS 4

static _Thread_local struct {
    uint64_t store; /* 0 = empty; store serials start at 1 */
    sq_reader *reader;
} tl_cache[TL_SLOTS];
static _Thread_local unsigned tl_victim;
static _Thread_local uint64_t tl_thread; /* 0 until this thread first reads */
static atomic_uint_fast64_t thread_serials;

/* Opens a read-only connection. Returns it, or NULL (*ret_err set). */
static sq_reader *reader_open(sq_store *s, otp_err *ret_err)
{
    sq_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        *ret_err = OTP_E_INTERNAL;
        return NULL;
    }
    int rc = sqlite3_open_v2(s->path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_close(r->db);
        free(r);
        *ret_err = sq_err(rc);
        return NULL;
    }
    sq_conn_setup(r->db);
    r->thread = tl_thread;
    return r;
}

/* This thread's read connection on s. Returns it, or NULL (*ret_err set). */
static sq_reader *reader_get(sq_store *s, otp_err *ret_err)
{
    for (unsigned i = 0; i < TL_SLOTS; i++)
        if (tl_cache[i].store == s->serial)
            return tl_cache[i].reader;
    if (!tl_thread)
        tl_thread = atomic_fetch_add(&thread_serials, 1) + 1;

    pthread_mutex_lock(&s->rlock);
    sq_reader *r = s->readers;
    while (r && r->thread != tl_thread)
        r = r->next;
    if (!r) {
        r = reader_open(s, ret_err);
        if (r) {
            r->next = s->readers;
            s->readers = r;
        }
    }
    pthread_mutex_unlock(&s->rlock);
    if (!r)
        return NULL;
    unsigned slot = tl_victim++ % TL_SLOTS;
    tl_cache[slot].store = s->serial;
    tl_cache[slot].reader = r;
    return r;
}

/* The prepared statement i of this thread's connection, ready for binding.
 * Returns NULL with *ret_err set on failure. */
static sqlite3_stmt *rstmt(otp_store *base, sq_rstmt i, otp_err *ret_err)
{
    sq_store *s = (sq_store *)base;
    sq_reader *r = reader_get(s, ret_err);
    if (!r)
        return NULL;
    if (!r->st[i]) {
        int rc = sqlite3_prepare_v3(r->db, rsql[i], -1, SQLITE_PREPARE_PERSISTENT, &r->st[i], NULL);
        if (rc != SQLITE_OK) {
            sqlite3_finalize(r->st[i]);
            r->st[i] = NULL;
            *ret_err = sq_err(rc);
            return NULL;
        }
    }
    return r->st[i];
}

void sq_readers_close(sq_store *s)
{
    sq_reader *r = s->readers;
    while (r) {
        sq_reader *next = r->next;
        for (int i = 0; i < R__COUNT; i++)
            sqlite3_finalize(r->st[i]);
        sqlite3_close(r->db);
        free(r);
        r = next;
    }
    s->readers = NULL;
}

static void account_from_row(sqlite3_stmt *st, otp_account *a)
{
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(st, 0);
    sq_col_text(st, 1, a->public_id, sizeof(a->public_id));
    sq_col_text(st, 2, a->name, sizeof(a->name));
    a->balance = sqlite3_column_int64(st, 3);
    sq_col_text(st, 4, a->currency, sizeof(a->currency));
    a->price_per_segment = sqlite3_column_int64(st, 5);
    a->low_balance_threshold = sqlite3_column_int64(st, 6);
    a->created_at_ms = sqlite3_column_int64(st, 7);
    a->resend_strategy = sqlite3_column_int(st, 8) ? OTP_RESEND_REUSE : OTP_RESEND_ROTATE;
    sq_col_text(st, 9, a->webotp_domain, sizeof(a->webotp_domain));
}

/* Steps a bound one-account query and resets it. OTP_OK (*ret written),
 * OTP_E_NOT_FOUND, or a store error. */
static otp_err one_account(sqlite3_stmt *st, otp_account *ret)
{
    otp_account a;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        account_from_row(st, &a);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        *ret = a;
        return OTP_OK;
    }
    return rc == SQLITE_DONE ? OTP_E_NOT_FOUND : sq_err(rc);
}

int sq_schema_version(otp_store *s)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_VERSION, &e);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    int version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_reset(st);
    return version;
}

otp_err sq_key_lookup(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN], otp_key_auth *ret)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_KEY_LOOKUP, &e);
    if (!st)
        return e;
    otp_key_auth k;
    memset(&k, 0, sizeof(k));
    sqlite3_bind_blob(st, 1, hash, OTP_APIKEY_HASH_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        k.key_id = sqlite3_column_int64(st, 0);
        k.account_id = sqlite3_column_int64(st, 1);
        sq_col_text(st, 2, k.account_public_id, sizeof(k.account_public_id));
        sq_col_text(st, 3, k.account_name, sizeof(k.account_name));
        k.test = sqlite3_column_int(st, 4) != 0;
        k.revoked = sqlite3_column_int(st, 5) != 0;
        k.last_used_at_ms = sqlite3_column_int64(st, 6);
        k.resend_strategy = sqlite3_column_int(st, 7) ? OTP_RESEND_REUSE : OTP_RESEND_ROTATE;
        sq_col_text(st, 8, k.webotp_domain, sizeof(k.webotp_domain));
        sq_col_text(st, 9, k.default_template_id, sizeof(k.default_template_id));
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        *ret = k;
        return OTP_OK;
    }
    return rc == SQLITE_DONE ? OTP_E_NOT_FOUND : sq_err(rc);
}

otp_err sq_account_find(otp_store *s, const char *id_or_name, otp_account *ret)
{
    otp_err e;
    if (!id_or_name || !*id_or_name)
        return OTP_E_NOT_FOUND;
    /* A public id wins over a name that happens to look like one. */
    sqlite3_stmt *st = rstmt(s, R_ACC_BY_PUBLIC_ID, &e);
    if (!st)
        return e;
    sqlite3_bind_text(st, 1, id_or_name, -1, SQLITE_STATIC);
    e = one_account(st, ret);
    if (e != OTP_E_NOT_FOUND)
        return e;
    st = rstmt(s, R_ACC_BY_NAME, &e);
    if (!st)
        return e;
    sqlite3_bind_text(st, 1, id_or_name, -1, SQLITE_STATIC);
    return one_account(st, ret);
}

otp_err sq_account_get(otp_store *s, int64_t account_id, otp_account *ret)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_ACC_BY_ID, &e);
    if (!st)
        return e;
    sqlite3_bind_int64(st, 1, account_id);
    return one_account(st, ret);
}

otp_err sq_account_list(otp_store *s, otp_account_cb cb, void *ctx)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_ACC_LIST, &e);
    if (!st)
        return e;
    otp_account a;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        account_from_row(st, &a);
        cb(&a, ctx);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

otp_err sq_key_list(otp_store *s, int64_t account_id, otp_key_cb cb, void *ctx)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_KEY_LIST, &e);
    if (!st)
        return e;
    sqlite3_bind_int64(st, 1, account_id);
    otp_key k;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&k, 0, sizeof(k));
        k.id = sqlite3_column_int64(st, 0);
        sq_col_text(st, 1, k.public_id, sizeof(k.public_id));
        k.account_id = sqlite3_column_int64(st, 2);
        sq_col_text(st, 3, k.prefix, sizeof(k.prefix));
        sq_col_text(st, 4, k.name, sizeof(k.name));
        k.test = sqlite3_column_int(st, 5) != 0;
        k.created_at_ms = sqlite3_column_int64(st, 6);
        k.last_used_at_ms = sqlite3_column_int64(st, 7);
        k.revoked_at_ms = sqlite3_column_int64(st, 8);
        cb(&k, ctx);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

otp_err sq_account_stats(otp_store *s, int64_t account_id, otp_account_stats *ret)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_STATS, &e);
    if (!st)
        return e;
    otp_account_stats a;
    sqlite3_bind_int64(st, 1, account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        a.balance = sqlite3_column_int64(st, 0);
        a.requests = sqlite3_column_int64(st, 1);
        a.messages = sqlite3_column_int64(st, 2);
        a.ledger_entries = sqlite3_column_int64(st, 3);
        a.ledger_sum = sqlite3_column_int64(st, 4);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        *ret = a;
        return OTP_OK;
    }
    return rc == SQLITE_DONE ? OTP_E_NOT_FOUND : sq_err(rc);
}

otp_err sq_outbox_depth(otp_store *s, int64_t *ret_queued, int64_t *ret_sending)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_OUTBOX_DEPTH, &e);
    if (!st)
        return e;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret_queued = sqlite3_column_int64(st, 0);
        *ret_sending = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? OTP_OK : sq_err(rc);
}

/* ---- requests, messages, ledger, templates, test inbox ---- */

/* Statuses as stored → enums; false for anything else (a corrupt row). */
static bool req_status_of(const char *v, otp_req_status *ret)
{
    static const char *const names[] = {
        [OTP_REQ_PENDING] = "pending",
        [OTP_REQ_VERIFIED] = "verified",
        [OTP_REQ_LOCKED] = "locked",
        [OTP_REQ_CANCELLED] = "cancelled",
    };
    for (size_t i = 0; v && i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i] && strcmp(v, names[i]) == 0) {
            *ret = (otp_req_status)i;
            return true;
        }
    return false;
}

static bool msg_status_of(const char *v, otp_msg_status *ret)
{
    for (int i = OTP_MSG_QUEUED; v && i <= OTP_MSG_UNDELIVERABLE; i++)
        if (strcmp(v, otp_msg_status_name((otp_msg_status)i)) == 0) {
            *ret = (otp_msg_status)i;
            return true;
        }
    return false;
}

static bool ledger_type_of(const char *v, otp_ledger_type *ret)
{
    static const char *const names[] = {
        [OTP_LEDGER_CREDIT] = "credit",
        [OTP_LEDGER_DEBIT] = "debit",
        [OTP_LEDGER_REFUND] = "refund",
    };
    for (size_t i = 0; v && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(v, names[i]) == 0) {
            *ret = (otp_ledger_type)i;
            return true;
        }
    return false;
}

/* Final code of a row loop: OTP_OK after the last row, else the error. */
static otp_err loop_end(sqlite3_stmt *st, int rc, bool corrupt)
{
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    return corrupt ? OTP_E_INTERNAL : OTP_OK;
}

otp_err sq_request_get(otp_store *s, int64_t account_id, const char *request_id,
                       otp_request_info *ret)
{
    otp_err e;
    if (!request_id)
        return OTP_E_OTP_NOT_FOUND;
    sqlite3_stmt *st = rstmt(s, R_REQ_GET, &e);
    if (!st)
        return e;
    otp_request_info r;
    bool ok = true;
    memset(&r, 0, sizeof(r));
    sqlite3_bind_text(st, 1, request_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        r.id = sqlite3_column_int64(st, 0);
        sq_col_text(st, 1, r.public_id, sizeof(r.public_id));
        r.account_id = sqlite3_column_int64(st, 2);
        r.test = sqlite3_column_int(st, 3) != 0;
        sq_col_text(st, 4, r.phone, sizeof(r.phone));
        ok = req_status_of((const char *)sqlite3_column_text(st, 5), &r.status);
        r.attempts_left = sqlite3_column_int(st, 6);
        r.max_attempts = sqlite3_column_int(st, 7);
        r.code_length = sqlite3_column_int(st, 8);
        r.expires_in_s = sqlite3_column_int(st, 9);
        r.created_at_ms = sqlite3_column_int64(st, 10);
        r.expires_at_ms = sqlite3_column_int64(st, 11);
        r.verified_at_ms = sqlite3_column_int64(st, 12);
        r.resend_count = sqlite3_column_int(st, 13);
        r.last_sent_at_ms = sqlite3_column_int64(st, 14);
        sq_col_text(st, 15, r.channel, sizeof(r.channel));
        sq_col_text(st, 16, r.template_id, sizeof(r.template_id));
        sq_col_text(st, 17, r.app_name, sizeof(r.app_name));
        sq_col_text(st, 18, r.app_hash, sizeof(r.app_hash));
        const void *sealed = sqlite3_column_blob(st, 19);
        int len = sqlite3_column_bytes(st, 19);
        if (sealed && len > 0) {
            if ((size_t)len > sizeof(r.code_sealed))
                ok = false;
            else {
                memcpy(r.code_sealed, sealed, (size_t)len);
                r.code_sealed_len = (size_t)len;
            }
        }
        const void *hash = sqlite3_column_blob(st, 20);
        if (hash && sqlite3_column_bytes(st, 20) == OTP_CODE_HASH_LEN)
            memcpy(r.code_hash, hash, OTP_CODE_HASH_LEN);
        else
            ok = false;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return OTP_E_OTP_NOT_FOUND;
    if (rc != SQLITE_ROW)
        return sq_err(rc);
    if (!ok)
        return OTP_E_INTERNAL;
    *ret = r;
    return OTP_OK;
}

/* Fills m from a MESSAGE_COLS row; false if its status is unknown. */
static bool message_from_row(sqlite3_stmt *st, otp_message_info *m)
{
    memset(m, 0, sizeof(*m));
    sq_col_text(st, 0, m->public_id, sizeof(m->public_id));
    sq_col_text(st, 1, m->request_id, sizeof(m->request_id));
    sq_col_text(st, 2, m->to, sizeof(m->to));
    bool ok = msg_status_of((const char *)sqlite3_column_text(st, 3), &m->status);
    sq_col_text(st, 4, m->provider, sizeof(m->provider));
    sq_col_text(st, 5, m->provider_message_id, sizeof(m->provider_message_id));
    m->attempts = sqlite3_column_int(st, 6);
    m->segments = sqlite3_column_int(st, 7);
    m->created_at_ms = sqlite3_column_int64(st, 8);
    m->updated_at_ms = sqlite3_column_int64(st, 9);
    sq_col_text(st, 10, m->error, sizeof(m->error));
    m->test = sqlite3_column_int(st, 11) != 0;
    return ok;
}

otp_err sq_request_messages(otp_store *s, int64_t account_id, const char *request_id,
                            otp_message_cb cb, void *ctx)
{
    otp_err e;
    if (!request_id)
        return OTP_OK;
    sqlite3_stmt *st = rstmt(s, R_REQ_MESSAGES, &e);
    if (!st)
        return e;
    sqlite3_bind_text(st, 1, request_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, account_id);
    otp_message_info m;
    bool corrupt = false;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (message_from_row(st, &m))
            cb(&m, ctx);
        else
            corrupt = true;
    }
    return loop_end(st, rc, corrupt);
}

/* Reads that must agree run in one read transaction: one snapshot, and one
 * start of a WAL read instead of two (each takes SQLite's shared-memory mutex,
 * for which the HTTP threads contend: docs/performance.md, item 23). BEGIN and
 * COMMIT are both prepared before the BEGIN runs, and whatever fails after it,
 * the reader leaves with no transaction open: read_begin() hands out the
 * COMMIT, read_end() runs it and returns e, else the COMMIT's error. */
static otp_err read_begin(otp_store *s, sqlite3_stmt **ret_commit)
{
    otp_err e;
    *ret_commit = NULL; /* for the compiler: the callers read it only after OTP_OK */
    sqlite3_stmt *begin = rstmt(s, R_BEGIN, &e);
    sqlite3_stmt *commit = begin ? rstmt(s, R_COMMIT, &e) : NULL;
    if (!commit)
        return e;
    int rc = sqlite3_step(begin);
    sqlite3_reset(begin);
    if (rc != SQLITE_DONE)
        return sq_err(rc);
    *ret_commit = commit;
    return OTP_OK;
}

static otp_err read_end(sqlite3_stmt *commit, otp_err e)
{
    int rc = sqlite3_step(commit);
    sqlite3_reset(commit);
    sqlite3 *db = sqlite3_db_handle(commit);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (e)
        return e;
    return rc == SQLITE_DONE ? OTP_OK : sq_err(rc);
}

otp_err sq_request_status(otp_store *s, int64_t account_id, bool test, const char *request_id,
                          otp_request_info *ret, otp_message_cb cb, void *ctx)
{
    sqlite3_stmt *commit;
    otp_err e = read_begin(s, &commit);
    if (e)
        return e;
    e = sq_request_get(s, account_id, request_id, ret);
    if (!e && ret->test != test)
        e = OTP_E_OTP_NOT_FOUND; /* the other key mode's: its messages are not read */
    if (!e)
        e = sq_request_messages(s, account_id, request_id, cb, ctx);
    return read_end(commit, e);
}

static otp_err message_row(otp_store *s, int64_t account_id, const char *message_id,
                           otp_message_info *ret)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_MSG_GET, &e);
    if (!st)
        return e;
    sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, account_id);
    otp_message_info m;
    bool ok = true;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        ok = message_from_row(st, &m);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return OTP_E_MESSAGE_NOT_FOUND;
    if (rc != SQLITE_ROW)
        return sq_err(rc);
    if (!ok)
        return OTP_E_INTERNAL;
    *ret = m;
    return OTP_OK;
}

static otp_err message_events(otp_store *s, int64_t account_id, const char *message_id,
                              otp_event_cb cb, void *ctx)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_MSG_EVENTS, &e);
    if (!st)
        return e;
    sqlite3_bind_text(st, 1, message_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, account_id);
    otp_message_event ev;
    bool corrupt = false;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&ev, 0, sizeof(ev));
        if (!msg_status_of((const char *)sqlite3_column_text(st, 0), &ev.status)) {
            corrupt = true;
            continue;
        }
        ev.at_ms = sqlite3_column_int64(st, 1);
        sq_col_text(st, 2, ev.error, sizeof(ev.error));
        cb(&ev, ctx);
    }
    return loop_end(st, rc, corrupt);
}

/* The message and its events in one read transaction, as a status read. */
otp_err sq_message_get(otp_store *s, int64_t account_id, const char *message_id,
                       otp_message_info *ret, otp_event_cb cb, void *ctx)
{
    if (!message_id)
        return OTP_E_MESSAGE_NOT_FOUND;
    sqlite3_stmt *commit;
    otp_err e = read_begin(s, &commit);
    if (e)
        return e;
    e = message_row(s, account_id, message_id, ret);
    if (!e && cb)
        e = message_events(s, account_id, message_id, cb, ctx);
    return read_end(commit, e);
}

otp_err sq_ledger_list(otp_store *s, int64_t account_id, int64_t before_id, int limit,
                       otp_ledger_cb cb, void *ctx)
{
    otp_err e;
    if (limit <= 0)
        return OTP_OK;
    sqlite3_stmt *st = rstmt(s, R_LEDGER, &e);
    if (!st)
        return e;
    sqlite3_bind_int64(st, 1, account_id);
    sqlite3_bind_int64(st, 2, before_id > 0 ? before_id : INT64_MAX);
    sqlite3_bind_int(st, 3, limit);
    otp_ledger_entry l;
    bool corrupt = false;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&l, 0, sizeof(l));
        l.id = sqlite3_column_int64(st, 0);
        if (!ledger_type_of((const char *)sqlite3_column_text(st, 1), &l.type)) {
            corrupt = true;
            continue;
        }
        l.amount = sqlite3_column_int64(st, 2);
        l.balance_after = sqlite3_column_int64(st, 3);
        sq_col_text(st, 4, l.request_id, sizeof(l.request_id));
        sq_col_text(st, 5, l.message_id, sizeof(l.message_id));
        sq_col_text(st, 6, l.note, sizeof(l.note));
        l.created_at_ms = sqlite3_column_int64(st, 7);
        cb(&l, ctx);
    }
    return loop_end(st, rc, corrupt);
}

static void template_from_row(sqlite3_stmt *st, otp_template *t)
{
    memset(t, 0, sizeof(*t));
    sq_col_text(st, 0, t->public_id, sizeof(t->public_id));
    sq_col_text(st, 1, t->name, sizeof(t->name));
    sq_col_text(st, 2, t->body, sizeof(t->body));
    sq_col_text(st, 3, t->dlt_template_id, sizeof(t->dlt_template_id));
    sq_col_text(st, 4, t->sender_id, sizeof(t->sender_id));
    t->is_default = sqlite3_column_int(st, 5) != 0;
    t->created_at_ms = sqlite3_column_int64(st, 6);
}

otp_err sq_template_find(otp_store *s, int64_t account_id, const char *id_or_name,
                         otp_template *ret)
{
    otp_err e;
    if (id_or_name && !*id_or_name)
        return OTP_E_NOT_FOUND;
    sqlite3_stmt *st = rstmt(s, id_or_name ? R_TPL_FIND : R_TPL_DEFAULT, &e);
    if (!st)
        return e;
    sqlite3_bind_int64(st, 1, account_id);
    if (id_or_name)
        sqlite3_bind_text(st, 2, id_or_name, -1, SQLITE_STATIC);
    otp_template t;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        template_from_row(st, &t);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        *ret = t;
        return OTP_OK;
    }
    return rc == SQLITE_DONE ? OTP_E_NOT_FOUND : sq_err(rc);
}

otp_err sq_template_list(otp_store *s, int64_t account_id, otp_template_cb cb, void *ctx)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_TPL_LIST, &e);
    if (!st)
        return e;
    sqlite3_bind_int64(st, 1, account_id);
    otp_template t;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        template_from_row(st, &t);
        cb(&t, ctx);
    }
    return loop_end(st, rc, false);
}

otp_err sq_test_inbox(otp_store *s, int64_t account_id, const char *phone, int limit,
                      otp_test_message_cb cb, void *ctx)
{
    otp_err e;
    if (!phone || limit <= 0)
        return OTP_OK;
    sqlite3_stmt *st = rstmt(s, R_TEST_INBOX, &e);
    if (!st)
        return e;
    sqlite3_bind_int64(st, 1, account_id);
    sqlite3_bind_text(st, 2, phone, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, limit);
    otp_test_message m;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&m, 0, sizeof(m));
        sq_col_text(st, 0, m.message_id, sizeof(m.message_id));
        sq_col_text(st, 1, m.request_id, sizeof(m.request_id));
        sq_col_text(st, 2, m.to, sizeof(m.to));
        m.sealed = sqlite3_column_blob(st, 3);
        m.sealed_len = m.sealed ? (size_t)sqlite3_column_bytes(st, 3) : 0;
        m.created_at_ms = sqlite3_column_int64(st, 4);
        cb(&m, ctx);
    }
    return loop_end(st, rc, false);
}

otp_err sq_limits_get(otp_store *s, int64_t account_id, char *buf, size_t n)
{
    otp_err e;
    if (!buf || n == 0)
        return OTP_E_INTERNAL;
    buf[0] = '\0';
    sqlite3_stmt *st = rstmt(s, R_LIMITS, &e);
    if (!st)
        return e;
    sqlite3_bind_int64(st, 1, account_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        sq_col_text(st, 0, buf, n);
    return loop_end(st, rc == SQLITE_ROW ? SQLITE_DONE : rc, false);
}

otp_err sq_block_list(otp_store *s, int64_t account_id, int64_t now_ms, otp_block_cb cb, void *ctx)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_BLOCKS, &e);
    if (!st)
        return e;
    sqlite3_bind_int64(st, 1, account_id);
    sqlite3_bind_int64(st, 2, now_ms);
    otp_block b;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&b, 0, sizeof(b));
        b.account_id = sqlite3_column_int64(st, 0);
        sq_col_text(st, 1, b.account_public_id, sizeof(b.account_public_id));
        sq_col_text(st, 2, b.target, sizeof(b.target));
        int kind = sqlite3_column_int(st, 3);
        b.kind = kind == 0   ? "suspected_sms_pumping"
                 : kind == 2 ? "phone_locked_24h"
                             : "phone_locked";
        b.created_at_ms = sqlite3_column_int64(st, 4);
        b.until_ms = sqlite3_column_int64(st, 5);
        cb(&b, ctx);
    }
    return loop_end(st, rc, false);
}

static void admin_key_from_row(sqlite3_stmt *st, otp_admin_key *k)
{
    memset(k, 0, sizeof(*k));
    k->id = sqlite3_column_int64(st, 0);
    sq_col_text(st, 1, k->public_id, sizeof(k->public_id));
    sq_col_text(st, 2, k->prefix, sizeof(k->prefix));
    sq_col_text(st, 3, k->name, sizeof(k->name));
    k->created_at_ms = sqlite3_column_int64(st, 4);
    k->revoked_at_ms = sqlite3_column_int64(st, 5);
}

otp_err sq_admin_key_lookup(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN],
                            otp_admin_key *ret)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_ADMIN_KEY_LOOKUP, &e);
    if (!st)
        return e;
    otp_admin_key k;
    sqlite3_bind_blob(st, 1, hash, OTP_APIKEY_HASH_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        admin_key_from_row(st, &k);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        *ret = k;
        return OTP_OK;
    }
    return rc == SQLITE_DONE ? OTP_E_NOT_FOUND : sq_err(rc);
}

otp_err sq_admin_key_list(otp_store *s, otp_admin_key_cb cb, void *ctx)
{
    otp_err e;
    sqlite3_stmt *st = rstmt(s, R_ADMIN_KEY_LIST, &e);
    if (!st)
        return e;
    otp_admin_key k;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        admin_key_from_row(st, &k);
        cb(&k, ctx);
    }
    return loop_end(st, rc, false);
}
