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
 * the same snapshot).
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
    R__COUNT
} sq_rstmt;

#define ACCOUNT_COLS                                                                               \
    "SELECT id, public_id, name, balance, currency, price_per_segment, low_balance_threshold,"     \
    " created_at FROM accounts"

static const char *const rsql[R__COUNT] = {
    [R_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
    [R_KEY_LOOKUP] = "SELECT k.id, k.account_id, a.public_id, a.name, k.test,"
                     " k.revoked_at IS NOT NULL, coalesce(k.last_used_at, 0)"
                     " FROM api_keys k JOIN accounts a ON a.id = k.account_id"
                     " WHERE k.hash = ?1",
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
