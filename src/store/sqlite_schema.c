/* store/sqlite_schema.c — connection pragmas and versioned schema migrations.
 *
 * Migrations are an ordered array of SQL scripts; migration N brings the schema
 * from version N-1 to N and is applied in its own transaction together with its
 * row in schema_migrations, so a crash leaves the schema at a whole version. The
 * version is re-read inside that transaction, so two processes migrating the same
 * file at once apply each migration once. A database newer than this binary is
 * always refused: running old code on a new schema can silently lose data.
 *
 * Conventions of the schema: times are INTEGER ms since the epoch (UTC), money is
 * INTEGER paise, tables are STRICT (a REAL can never sneak into a balance, and an
 * integer overflow becomes an error instead of a float). The ledger's amount is
 * signed: credit and refund > 0, debit < 0, so SUM(amount) is the balance.
 * CHECKs spell out "a OR b OR c" rather than "IN (a, b, c)": SQLite builds a
 * temporary table for an IN list of three or more on every row written.
 */
#include "store/sqlite_internal.h"
#include "util/clock.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const migrations[] = {
    /* 1: the whole initial schema. */
    "CREATE TABLE accounts ("
    " id INTEGER PRIMARY KEY,"
    " public_id TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL UNIQUE,"
    " balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),"
    " currency TEXT NOT NULL DEFAULT 'INR',"
    " price_per_segment INTEGER NOT NULL DEFAULT 25 CHECK (price_per_segment >= 0),"
    " low_balance_threshold INTEGER NOT NULL DEFAULT 10000,"
    " created_at INTEGER NOT NULL"
    ") STRICT;"

    "CREATE TABLE api_keys ("
    " id INTEGER PRIMARY KEY,"
    " public_id TEXT NOT NULL UNIQUE,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " hash BLOB NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " name TEXT NOT NULL DEFAULT '',"
    " test INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " last_used_at INTEGER,"
    " revoked_at INTEGER"
    ") STRICT;"
    "CREATE INDEX api_keys_account ON api_keys(account_id);"

    /* status is stored as pending|verified|locked|cancelled; "expired" is computed. */
    "CREATE TABLE otp_requests ("
    " id INTEGER PRIMARY KEY,"
    " public_id TEXT NOT NULL UNIQUE,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " key_id INTEGER REFERENCES api_keys(id),"
    " test INTEGER NOT NULL DEFAULT 0,"
    " phone TEXT NOT NULL,"
    " code_hash BLOB NOT NULL,"
    " code_length INTEGER NOT NULL,"
    " status TEXT NOT NULL CHECK (status = 'pending' OR status = 'verified'"
    "  OR status = 'locked' OR status = 'cancelled'),"
    " attempts_left INTEGER NOT NULL,"
    " max_attempts INTEGER NOT NULL,"
    " expires_in INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " verified_at INTEGER,"
    " resend_count INTEGER NOT NULL DEFAULT 0,"
    " channel TEXT NOT NULL DEFAULT 'sms'"
    ") STRICT;"

    /* The outbox is the partial index messages_outbox: only queued and sending
     * rows are in it. While a message is sending, next_attempt_at equals
     * lease_until, so "due" is one range scan on one column in claim order. */
    "CREATE TABLE messages ("
    " id INTEGER PRIMARY KEY,"
    " public_id TEXT NOT NULL UNIQUE,"
    " request_id INTEGER NOT NULL REFERENCES otp_requests(id) ON DELETE CASCADE,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " test INTEGER NOT NULL DEFAULT 0,"
    " to_phone TEXT NOT NULL,"
    " sealed_text BLOB,"
    " status TEXT NOT NULL CHECK (status = 'queued' OR status = 'sending' OR status = 'sent'"
    "  OR status = 'delivered' OR status = 'failed' OR status = 'undeliverable'),"
    " provider TEXT,"
    " provider_message_id TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " segments INTEGER NOT NULL,"
    " charge INTEGER NOT NULL DEFAULT 0,"
    " refunded INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at INTEGER,"
    " lease_until INTEGER,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " error TEXT"
    ") STRICT;"
    "CREATE INDEX messages_request ON messages(request_id);"
    "CREATE INDEX messages_outbox ON messages(next_attempt_at)"
    " WHERE status IN ('queued','sending');"
    "CREATE INDEX messages_test_inbox ON messages(account_id, to_phone) WHERE test = 1;"
    "CREATE INDEX messages_provider_msgid ON messages(provider, provider_message_id)"
    " WHERE provider_message_id IS NOT NULL;"

    "CREATE TABLE message_events ("
    " id INTEGER PRIMARY KEY,"
    " message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    " status TEXT NOT NULL,"
    " at INTEGER NOT NULL,"
    " error TEXT"
    ") STRICT;"
    "CREATE INDEX message_events_message ON message_events(message_id);"

    /* request_id and message_id are public ids, not foreign keys: the ledger is
     * append-only and outlives purged requests. */
    "CREATE TABLE ledger ("
    " id INTEGER PRIMARY KEY,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " type TEXT NOT NULL CHECK (type = 'credit' OR type = 'debit' OR type = 'refund'),"
    " amount INTEGER NOT NULL,"
    " balance_after INTEGER NOT NULL,"
    " request_id TEXT,"
    " message_id TEXT,"
    " note TEXT,"
    " created_at INTEGER NOT NULL,"
    " CHECK ((type = 'debit') = (amount < 0))"
    ") STRICT;"
    "CREATE INDEX ledger_account ON ledger(account_id, id);",

    /* 2: the OTP lifecycle (resend, cancel, templates, idempotency, purge).
     * Everything is added in place; version-1 rows keep working: a request
     * without last_sent_at was last sent when it was created, and an account
     * gets the rotate strategy and no WebOTP domain. */
    "ALTER TABLE accounts ADD COLUMN resend_strategy TEXT NOT NULL DEFAULT 'rotate'"
    " CHECK (resend_strategy = 'rotate' OR resend_strategy = 'reuse');"
    "ALTER TABLE accounts ADD COLUMN webotp_domain TEXT;"

    /* template_id is the public id given at send (NULL = the account's default
     * at the time of each send); code_sealed (what a request keeps for its
     * resends, api/keep.c) is erased as soon as the request stops being
     * pending. */
    "ALTER TABLE otp_requests ADD COLUMN last_sent_at INTEGER;"
    "UPDATE otp_requests SET last_sent_at = created_at;"
    "ALTER TABLE otp_requests ADD COLUMN template_id TEXT;"
    "ALTER TABLE otp_requests ADD COLUMN app_name TEXT;"
    "ALTER TABLE otp_requests ADD COLUMN app_hash TEXT;"
    "ALTER TABLE otp_requests ADD COLUMN code_sealed BLOB;"
    /* The purge walks requests in expiry order; sealed codes of expired
     * requests are found through a partial index holding only those rows. */
    "CREATE INDEX otp_requests_expiry ON otp_requests(expires_at);"
    "CREATE INDEX otp_requests_sealed ON otp_requests(expires_at) WHERE code_sealed IS NOT NULL;"

    "ALTER TABLE messages ADD COLUMN sender_id TEXT;"
    "ALTER TABLE messages ADD COLUMN dlt_template_id TEXT;"

    /* At most one default per account (the partial unique index), which is
     * also what key_lookup joins on. */
    "CREATE TABLE templates ("
    " id INTEGER PRIMARY KEY,"
    " public_id TEXT NOT NULL UNIQUE,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " name TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " dlt_template_id TEXT,"
    " sender_id TEXT,"
    " is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default = 0 OR is_default = 1),"
    " created_at INTEGER NOT NULL,"
    " UNIQUE (account_id, name)"
    ") STRICT;"
    "CREATE UNIQUE INDEX templates_default ON templates(account_id) WHERE is_default = 1;"

    /* One row per (account, idempotencyKey): the fingerprint of the first
     * request and the response it got, replayed to repeats. A rowid table
     * (not WITHOUT ROWID) so the purge can delete a bounded batch by rowid. */
    "CREATE TABLE idempotency ("
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " key TEXT NOT NULL,"
    " fingerprint BLOB NOT NULL,"
    " status INTEGER NOT NULL,"
    " response TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " PRIMARY KEY (account_id, key)"
    ") STRICT;"
    "CREATE INDEX idempotency_created ON idempotency(created_at);",

    /* 3: abuse protection (SPEC 3), the state that must be atomic with sends
     * and guesses, and the region of each request's number. The otpd releases
     * that brought abuse protection created these tables at every open,
     * outside the numbered migrations, on a version-2 schema: IF NOT EXISTS
     * lets such a database migrate as well as one that never had them.
     *
     * - messages_phone_recent: a number's recent sends (resends are messages
     *   too) are one backwards range scan, for the per-number window and
     *   interval.
     * - phone_state: per (account, number): wrong codes in the current failure
     *   window, the streak of wrong codes since the last success, the lock.
     * - traffic: per (account, scope, minute) sends and successful
     *   verifications, scope being a number prefix ("+9198765") or a region
     *   ("IN"); the pumping rule sums a window and the 24 h before it.
     * - blocks: prefixes (or regions) refused for suspected SMS pumping.
     * - spend: charges per (account, UTC day, scope "" or region), for the caps.
     * - account_limits: an account's override text (core/limits.h).
     * - otp_requests.region: the number's region (libphonenumber) stored at
     *   send, so that verify and resend need not parse the number again on the
     *   writer; '' for older rows (then they do). */
    "CREATE INDEX IF NOT EXISTS messages_phone_recent ON messages(account_id, to_phone,"
    " created_at);"
    "CREATE TABLE IF NOT EXISTS phone_state ("
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " phone TEXT NOT NULL,"
    " fails INTEGER NOT NULL DEFAULT 0,"
    " fail_since INTEGER NOT NULL DEFAULT 0,"
    " streak INTEGER NOT NULL DEFAULT 0,"
    " locked_until INTEGER NOT NULL DEFAULT 0,"
    " lock_kind INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (account_id, phone)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS phone_state_locked ON phone_state(locked_until)"
    " WHERE locked_until > 0;"
    "CREATE TABLE IF NOT EXISTS traffic ("
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " scope TEXT NOT NULL,"
    " minute INTEGER NOT NULL,"
    " sends INTEGER NOT NULL DEFAULT 0,"
    " verifies INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (account_id, scope, minute)"
    ") STRICT;"
    "CREATE INDEX IF NOT EXISTS traffic_minute ON traffic(minute);"
    "CREATE TABLE IF NOT EXISTS blocks ("
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " target TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " until INTEGER NOT NULL,"
    " PRIMARY KEY (account_id, target)"
    ") STRICT;"
    "CREATE TABLE IF NOT EXISTS spend ("
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " day INTEGER NOT NULL,"
    " scope TEXT NOT NULL,"
    " amount INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (account_id, day, scope)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS account_limits ("
    " account_id INTEGER PRIMARY KEY REFERENCES accounts(id),"
    " text TEXT NOT NULL,"
    " updated_at INTEGER NOT NULL"
    ") STRICT;"
    "ALTER TABLE otp_requests ADD COLUMN region TEXT NOT NULL DEFAULT '';",

    /* 4: PostgreSQL's abuse checks now decide as core/limits.c does; nothing
     * changes in SQLite's schema (the versions are shared by both backends). */
    "-- version 4: no change in SQLite\n",

    /* 5: a message's status changes live in its own row, not in a table of
     * their own: messages.events holds them as JSON arrays [status, at, error]
     * joined by commas (wrap it in [] to read it as one JSON array), oldest
     * first, and each UPDATE that changes the status appends its event. Every
     * send wrote three message_events rows (queued, sending, sent), each with
     * its index entry and foreign-key check, ~8 of a commit's ~67 WAL pages:
     * their cost was ~13 us of CPU per send (docs/performance.md, item 18).
     * The old rows move over in their order (the subquery is read in id order;
     * SQLite does not flatten a subquery with ORDER BY into an aggregate). */
    "ALTER TABLE messages ADD COLUMN events TEXT NOT NULL DEFAULT '';"
    "UPDATE messages SET events = (SELECT group_concat(j, ',') FROM"
    " (SELECT json_array(e.status, e.at, e.error) AS j FROM message_events e"
    "  WHERE e.message_id = messages.id ORDER BY e.id))"
    " WHERE id IN (SELECT message_id FROM message_events);"
    "DROP TABLE message_events;"
    /* The pumping rule sums a window of traffic rows at every send: keyed by
     * (account, scope, minute) itself, the table is read in one range scan of
     * its own B-tree instead of a unique index and a row lookup per minute. */
    "CREATE TABLE traffic_new ("
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " scope TEXT NOT NULL,"
    " minute INTEGER NOT NULL,"
    " sends INTEGER NOT NULL DEFAULT 0,"
    " verifies INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (account_id, scope, minute)"
    ") STRICT, WITHOUT ROWID;"
    "INSERT INTO traffic_new SELECT account_id, scope, minute, sends, verifies FROM traffic;"
    "DROP TABLE traffic;"
    "ALTER TABLE traffic_new RENAME TO traffic;"
    "CREATE INDEX traffic_minute ON traffic(minute);",
    /* 6: the purge of the abuse tables (store.h, otp_txn_purge), each through an
     * index: spend by day, blocks by their end, and the numbers' states that
     * hold nothing (a success reset them, or a lock they ended with is over),
     * which only numbers that had a wrong code ever get. */
    "CREATE INDEX spend_day ON spend(day);"
    "CREATE INDEX blocks_until ON blocks(until);"
    "CREATE INDEX phone_state_idle ON phone_state(locked_until) WHERE streak = 0 AND fails = 0;",
    /* 7: the operators' admin keys (the admin API), stored as their SHA-256
     * like API keys but belonging to no account; and a credit's reference: an
     * account's credits with one reference are one credit (store.h,
     * otp_txn_wallet_credit), which the partial unique index enforces and
     * through which the credit finds an earlier one. (PostgreSQL also keeps
     * the API keys' token buckets that its nodes share here; one process holds
     * a SQLite store and keeps them in memory.) */
    "CREATE TABLE admin_keys ("
    " id INTEGER PRIMARY KEY,"
    " public_id TEXT NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " name TEXT NOT NULL DEFAULT '',"
    " hash BLOB NOT NULL UNIQUE,"
    " created_at INTEGER NOT NULL,"
    " revoked_at INTEGER"
    ") STRICT;"
    "ALTER TABLE ledger ADD COLUMN reference TEXT;"
    "CREATE UNIQUE INDEX ledger_reference ON ledger(account_id, reference)"
    " WHERE reference IS NOT NULL;",
    /* 8: the times of a number's wrong codes within the failure window (8
     * bytes each, big-endian, oldest first: core/limits.h), so that the
     * window rolls; NULL for a state of before (its fails count at
     * fail_since) and when fail_max is too large to keep them. */
    "ALTER TABLE phone_state ADD COLUMN fail_times BLOB;",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == OTP_SCHEMA_VERSION,
               "one migration per schema version");

const char *sq_migration_sql(int version)
{
    if (version < 1 || version > OTP_SCHEMA_VERSION)
        return NULL;
    return migrations[version - 1];
}

void sq_conn_setup(sqlite3 *db)
{
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, SQ_BUSY_TIMEOUT_MS);
}

/* Runs sql (no rows expected). Returns 0, or -1 with "what: sqlite message" in err. */
static int exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
    return -1;
}

/* Returns the schema version recorded in the database (0 if none), or -1 with a
 * reason in err. */
static int read_version(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int version = -1;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT CASE WHEN EXISTS (SELECT 1 FROM sqlite_master"
                                " WHERE type = 'table' AND name = 'schema_migrations')"
                                " THEN 1 ELSE 0 END",
                                -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        goto fail;
    bool exists = sqlite3_column_int(st, 0) != 0;
    sqlite3_finalize(st);
    st = NULL;
    if (!exists)
        return 0;
    rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1, &st,
                            NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        goto fail;
    version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return version;
fail:
    snprintf(err, errlen, "cannot read the schema version: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return -1;
}

static int too_new(int version, char *err, size_t errlen)
{
    snprintf(err, errlen, "database schema %d is newer than this otpd (%d)", version,
             OTP_SCHEMA_VERSION);
    return -1;
}

/* Applies migration `to` (1-based) if the version is still to - 1 once the write
 * lock is held. Returns 0 or -1 with a reason in err. */
static int apply_one(sqlite3 *db, int to, char *err, size_t errlen)
{
    char what[64];
    if (exec(db, "BEGIN IMMEDIATE", "cannot start a migration", err, errlen))
        return -1;
    if (exec(db,
             "CREATE TABLE IF NOT EXISTS schema_migrations"
             " (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT",
             "cannot create schema_migrations", err, errlen))
        goto fail;
    int version = read_version(db, err, errlen);
    if (version < 0)
        goto fail;
    if (version > OTP_SCHEMA_VERSION) {
        too_new(version, err, errlen);
        goto fail;
    }
    if (version >= to) { /* another process got there first */
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return 0;
    }
    if (version != to - 1) {
        snprintf(err, errlen, "database schema %d cannot be migrated to %d", version, to);
        goto fail;
    }
    snprintf(what, sizeof(what), "migration %d failed", to);
    if (exec(db, migrations[to - 1], what, err, errlen))
        goto fail;
    char sql[128];
    snprintf(sql, sizeof(sql),
             "INSERT INTO schema_migrations (version, applied_at) VALUES (%d, %lld)", to,
             (long long)otp_now_ms());
    if (exec(db, sql, what, err, errlen))
        goto fail;
    if (exec(db, "COMMIT", what, err, errlen))
        goto fail;
    return 0;
fail:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* A database file otpd creates is readable by its owner only (0600), as the
 * server secret is: it holds the keyed code hashes, the sealed texts and the
 * numbers. SQLite would create it 0644 (less the umask), and its -wal and -shm
 * files take the database file's mode. A file that exists keeps its mode; an
 * in-memory or URI path is left to SQLite. */
static void create_private(const char *path)
{
    if (path[0] == '\0' || path[0] == ':' || strncmp(path, "file:", 5) == 0)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0)
        close(fd);
}

int sq_schema_open(sq_store *s, bool migrate, char *err, size_t errlen)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (migrate ? SQLITE_OPEN_CREATE : 0);
    if (migrate)
        create_private(s->path);
    /* Through the writer's VFS (sqlite_vfs.c: a commit's WAL writes
     * gathered), which needs synchronous=FULL, set below before any write. */
    int rc = sq_vfs_open(s->path, &s->wdb, flags, SQ_VFS_WRITER);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database %s: %s%s", s->path,
                 s->wdb ? sqlite3_errmsg(s->wdb) : sqlite3_errstr(rc),
                 migrate ? "" : " (run `otpd migrate` to create it)");
        return -1;
    }
    sq_conn_setup(s->wdb);

    /* journal_mode answers with the mode now in force: a file on a filesystem
     * without shared memory, or an in-memory path, may refuse WAL. */
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(s->wdb, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "cannot set WAL mode on %s: %s", s->path, sqlite3_errmsg(s->wdb));
        sqlite3_finalize(st);
        return -1;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    bool wal = mode && strcmp(mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        snprintf(err, errlen, "%s: SQLite refused WAL mode", s->path);
        return -1;
    }
    /* FULL: a commit is on disk when COMMIT returns (acknowledged = durable).
     * secure_delete: erased outbox texts are overwritten, not left in free space.
     * journal_size_limit: the WAL is truncated back to 64 MiB after a checkpoint. */
    if (exec(s->wdb,
             "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
             " PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY;"
             " PRAGMA journal_size_limit = 67108864",
             "cannot set pragmas", err, errlen))
        return -1;

    int version = read_version(s->wdb, err, errlen);
    if (version < 0)
        return -1;
    if (version > OTP_SCHEMA_VERSION)
        return too_new(version, err, errlen);
    if (version < OTP_SCHEMA_VERSION && !migrate) {
        snprintf(err, errlen, "database schema %d is older than this otpd (%d): run `otpd migrate`",
                 version, OTP_SCHEMA_VERSION);
        return -1;
    }
    for (int to = version + 1; to <= OTP_SCHEMA_VERSION; to++)
        if (apply_one(s->wdb, to, err, errlen))
            return -1;
    return 0;
}
