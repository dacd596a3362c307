/* tests/unit/store/test_store_sqlite.c — the SQLite backend: the conformance
 * suite on real database files in a mkdtemp directory, then what is particular
 * to SQLite: store URLs, WAL and the file left on disk, the query plans of the
 * hot and the big queries, the in-place upgrades of version-1, -2, -4 and -6
 * databases, group commit batching (with the test hooks), and that an erased
 * text does not linger in the database file (secure_delete).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tmpdir.h"
#include "conformance.h"
#include "store/sqlite_internal.h"

#define T0 INT64_C(1700000000000)

static char dir[] = "/tmp/otpd-store-test-XXXXXX";
static unsigned url_counter;

/* ---- the backend description ---- */

static void fresh_url(char *url, size_t n)
{
    snprintf(url, n, "sqlite:%s/db-%u.sqlite", dir, url_counter++);
}

static const char *path_of(const char *url)
{
    return strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url;
}

static sqlite3 *raw_open(const char *url)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path_of(url), &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int raw_exec(const char *url, const char *sql)
{
    sqlite3 *db = raw_open(url);
    if (!db)
        return -1;
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        print_error("raw_exec %s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int64_t raw_int(const char *url, const char *sql)
{
    sqlite3 *db = raw_open(url);
    sqlite3_stmt *st = NULL;
    int64_t v = INT64_MIN;
    if (db && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        print_error("raw_int %s: %s\n", sql, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static const store_backend sqlite_backend = {
    .name = "store_conformance_sqlite",
    .fresh_url = fresh_url,
    .raw_exec = raw_exec,
    .raw_int = raw_int,
#if OTPD_TEST_HOOKS
    .pause = otp_sqlite_test_pause,
    .fail_commits = otp_sqlite_test_fail_commits,
#endif
};

/* ---- SQLite-specific tests ---- */

static otp_store *open_migrated(const char *url, int max_batch)
{
    otp_store_options opt = {.migrate = true, .max_batch = max_batch};
    otp_store *s = NULL;
    char err[256] = "";
    if (otp_store_open(url, &opt, &s, err, sizeof(err)) != 0)
        print_error("open %s: %s\n", url, err);
    assert_non_null(s);
    return s;
}

/* A new migrated store at a fresh url (written to url) with one account,
 * named name (public id "acc_" name); *ret_account is its id. */
static otp_store *store_with_account(char *url, size_t n, const char *name, int64_t *ret_account)
{
    fresh_url(url, n);
    otp_store *s = open_migrated(url, 0);
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_CREATE};
    snprintf(t.u.account_create.public_id, OTP_ID_SIZE, "acc_%s", name);
    snprintf(t.u.account_create.name, OTP_NAME_SIZE, "%s", name);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    *ret_account = t.u.account_create.ret_id;
    return s;
}

static void expect_open_error(const char *url, const char *want)
{
    otp_store_options opt = {.migrate = true};
    otp_store *s = NULL;
    char err[256] = "";
    assert_int_equal(otp_store_open(url, &opt, &s, err, sizeof(err)), -1);
    assert_null(s);
    if (!strstr(err, want))
        print_error("\"%s\" lacks \"%s\"\n", err, want);
    assert_non_null(strstr(err, want));
}

/* The store turns SQLite's memory statistics off when it opens (one
 * process-wide mutex around every allocation otherwise): with them off SQLite
 * counts nothing, so the memory in use stays 0 while a store with open
 * connections has just committed a transaction. First in main(), so nothing
 * has initialized SQLite before the store does. */
static void t_memory_statistics_off(void **state)
{
    (void)state;
    char url[600];
    int64_t acc;
    otp_store *s = store_with_account(url, sizeof(url), "memstat", &acc);
    assert_true(acc > 0);
    sqlite3_int64 now = -1, peak = -1;
    assert_int_equal(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &now, &peak, 0), SQLITE_OK);
    assert_int_equal(now, 0);
    assert_int_equal(peak, 0);
    otp_store_close(s);
}

static void t_urls(void **state)
{
    char url[600];
    otp_store *s;

    snprintf(url, sizeof(url), "%s/bare.sqlite", dir); /* a bare path */
    s = open_migrated(url, 0);
    assert_string_equal(s->ops->name, "sqlite");
    otp_store_close(s);
    snprintf(url, sizeof(url), "sqlite://%s/slashes.sqlite", dir); /* sqlite:///abs */
    s = open_migrated(url, 0);
    otp_store_close(s);
    snprintf(url, sizeof(url), "%s/slashes.sqlite", dir);
    assert_int_equal(access(url, F_OK), 0);

    /* Port 1 on loopback refuses: the URLs reach the PostgreSQL backend. */
    expect_open_error("postgres://otpd@127.0.0.1:1/otpd", "cannot connect to PostgreSQL");
    expect_open_error("postgresql://127.0.0.1:1/otpd?connect_timeout=2",
                      "cannot connect to PostgreSQL");
    expect_open_error("mysql://localhost/otpd", "unknown store URL scheme");
    expect_open_error("", "empty");
    expect_open_error("sqlite:", "no path");
    snprintf(url, sizeof(url), "sqlite:%s/no/such/dir/x.sqlite", dir);
    expect_open_error(url, "cannot open database");
}

static void t_files_and_wal(void **state)
{
    char url[600];
    otp_store *s = NULL;
    char err[256];
    otp_store_options opt = {.migrate = false};

    fresh_url(url, sizeof(url));
    assert_int_equal(otp_store_open(url, &opt, &s, err, sizeof(err)), -1);
    assert_int_not_equal(access(path_of(url), F_OK), 0); /* refused: no file made */

    s = open_migrated(url, 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path_of(url), &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    otp_store_close(s);
}

/* The EXPLAIN QUERY PLAN details of sql on a fresh database, joined by ";". */
static void plan_of(const char *sql, char *plan, size_t n)
{
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store_close(open_migrated(url, 0));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path_of(url), &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    char q[2048];
    snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    plan[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        strncat(plan, (const char *)sqlite3_column_text(st, 3), n - strlen(plan) - 2);
        strcat(plan, ";");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The queries that run per request or over big tables use their indexes: no
 * table scan and no sort, however big the tables grow. The claim walks the
 * partial outbox index in order; key_lookup (every authenticated call) is three
 * index lookups; the ledger page, the test inbox, the delivery report's lookup
 * and the purge are index ranges; a credit finds its reference through the
 * partial index of references. */
static void t_query_plans(void **state)
{
    static const struct {
        const char *sql;
        const char *index, *index2;
    } cases[] = {
        {sq_outbox_due_sql, "USING INDEX messages_outbox", NULL},
        {sq_key_lookup_sql, "USING INDEX templates_default", "sqlite_autoindex_api_keys"},
        {sq_ledger_sql, "USING INDEX ledger_account (account_id=? AND id<?)", NULL},
        {sq_test_inbox_sql, "USING INDEX messages_test_inbox (account_id=? AND to_phone=?)", NULL},
        {sq_dlr_lookup_sql, "USING INDEX messages_provider_msgid", NULL},
        {sq_purge_requests_sql, "INDEX otp_requests_expiry (expires_at<?)",
         "USING INDEX messages_request (request_id=?)"},
        {sq_credit_find_sql, "USING INDEX ledger_reference (account_id=? AND reference=?)", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char plan[1024];
        plan_of(cases[i].sql, plan, sizeof(plan));
        bool ok = strstr(plan, cases[i].index) &&
                  (!cases[i].index2 || strstr(plan, cases[i].index2)) &&
                  !strstr(plan, "TEMP B-TREE") && !strstr(plan, "SCAN ");
        if (!ok)
            print_error("query %zu plan: %s\n", i, plan);
        assert_true(ok);
    }
    /* Every send's blocks lookup: two primary-key lookups, no sort, no list. */
    char plan[1024];
    plan_of(sq_block_find_sql, plan, sizeof(plan));
    const char *pk = "SEARCH blocks USING INDEX sqlite_autoindex_blocks_1 (account_id=? AND "
                     "target=?)";
    const char *second = strstr(plan, pk);
    bool ok = second && strstr(second + 1, pk) && !strstr(plan, "TEMP B-TREE") &&
              !strstr(plan, "SCAN blocks");
    if (!ok)
        print_error("blocks lookup plan: %s\n", plan);
    assert_true(ok);
}

/* Builds a database the way an otpd of schema `version` left it: migrations 1
 * to version applied and recorded, then rows (and more_rows, unless NULL). */
static void make_old(const char *url, int version, const char *rows, const char *more_rows)
{
    sqlite3 *db = NULL;
    assert_int_equal(
        sqlite3_open_v2(path_of(url), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
        SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db,
                          "PRAGMA journal_mode = WAL;"
                          "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                          " applied_at INTEGER NOT NULL) STRICT;",
                          NULL, NULL, &msg);
    for (int v = 1; rc == SQLITE_OK && v <= version; v++) {
        rc = sqlite3_exec(db, sq_migration_sql(v), NULL, NULL, &msg);
        char sql[80];
        snprintf(sql, sizeof(sql), "INSERT INTO schema_migrations VALUES (%d, 0)", v);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, rows, NULL, NULL, &msg);
    if (rc == SQLITE_OK && more_rows)
        rc = sqlite3_exec(db, more_rows, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        print_error("make_old(%d): %s\n", version, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

/* Builds a version-1 database the way an older otpd left it (migration 1 only),
 * with a little of everything in it. */
static void make_v1(const char *url)
{
    make_old(url, 1,
             "INSERT INTO accounts (id, public_id, name, balance, created_at)"
             " VALUES (1, 'acc_old', 'old', 75, 1);"
             "INSERT INTO api_keys (id, public_id, account_id, hash, prefix, created_at)"
             " VALUES (1, 'key_old', 1, zeroblob(32), 'otpd_live_ab', 1);"
             "INSERT INTO otp_requests (id, public_id, account_id, key_id, phone, code_hash,"
             " code_length, status, attempts_left, max_attempts, expires_in, created_at,"
             " expires_at) VALUES (1, 'req_old', 1, 1, '+919876543210', zeroblob(32), 6,"
             " 'pending', 3, 3, 600, 1700000000000, 1700000600000);"
             "INSERT INTO messages (id, public_id, request_id, account_id, to_phone, sealed_text,"
             " status, segments, charge, next_attempt_at, created_at, updated_at)"
             " VALUES (1, 'msg_old', 1, 1, '+919876543210', x'00', 'queued', 1, 25,"
             " 1700000000000, 1700000000000, 1700000000000);"
             "INSERT INTO ledger (account_id, type, amount, balance_after, note, created_at)"
             " VALUES (1, 'credit', 100, 100, 'top-up', 1);"
             "INSERT INTO ledger (account_id, type, amount, balance_after, request_id,"
             " message_id, created_at) VALUES (1, 'debit', -25, 75, 'req_old', 'msg_old', 1);",
             NULL);
}

/* url holds a database of an older schema version: opening it without
 * migrate is refused, naming the version; with migrate it is brought up to
 * date. Returns the migrated store. */
static otp_store *open_old(const char *url, int version)
{
    otp_store_options opt = {.migrate = false};
    otp_store *s = NULL;
    char err[256] = "", want[64];
    assert_int_equal(otp_store_open(url, &opt, &s, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "database schema %d is older", version);
    assert_non_null(strstr(err, want));

    s = open_migrated(url, 0);
    assert_int_equal(s->ops->schema_version(s), OTP_SCHEMA_VERSION);
    return s;
}

/* Migration 2 upgrades a version-1 database in place: old rows keep their
 * meaning and work with the new calls. */
static void t_upgrade_from_v1(void **state)
{
    char url[600];
    fresh_url(url, sizeof(url));
    make_v1(url);
    otp_store *s = open_old(url, 1);
    otp_account a;
    assert_int_equal(s->ops->account_find(s, "old", &a), OTP_OK);
    assert_int_equal(a.balance, 75);
    assert_int_equal(a.resend_strategy, OTP_RESEND_ROTATE);
    assert_string_equal(a.webotp_domain, "");
    uint8_t h[OTP_APIKEY_HASH_LEN] = {0};
    otp_key_auth k;
    assert_int_equal(s->ops->key_lookup(s, h, &k), OTP_OK);
    assert_int_equal(k.account_id, 1);
    assert_string_equal(k.default_template_id, "");
    otp_request_info r;
    assert_int_equal(s->ops->request_get(s, 1, "req_old", &r), OTP_OK);
    assert_int_equal(r.last_sent_at_ms, T0); /* = created_at */
    assert_string_equal(r.template_id, "");
    assert_int_equal(r.code_sealed_len, 0);
    otp_message_info m;
    assert_int_equal(s->ops->message_get(s, 1, "msg_old", &m, NULL, NULL), OTP_OK);
    assert_int_equal(m.status, OTP_MSG_QUEUED);

    /* the old request can be resent: its queued message is superseded, refunded */
    static const uint8_t text[] = "sealed";
    otp_txn t = {.kind = OTP_TXN_RESEND};
    otp_txn_resend *x = &t.u.resend;
    x->account_id = 1;
    snprintf(x->request_id, OTP_ID_SIZE, "req_old");
    snprintf(x->message_id, OTP_ID_SIZE, "msg_new");
    x->rotate = true;
    x->now_ms = T0 + 30000;
    x->cooldown_ms = 30000;
    x->max_resends = 3;
    x->segments = 1;
    x->sealed_text = text;
    x->sealed_text_len = sizeof(text) - 1;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_int_equal(x->balance_after, 75);
    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, 1, &st), OTP_OK);
    assert_int_equal(st.balance, 75);
    assert_int_equal(st.ledger_sum, 75);
    assert_int_equal(st.ledger_entries, 4);
    otp_store_close(s);
}

/* The abuse tables as the otpd releases before schema 3 created them at every
 * open, outside the numbered migrations, on a version-2 schema. */
static const char old_abuse_sql[] =
    "CREATE INDEX messages_phone_recent ON messages(account_id, to_phone, created_at);"
    "CREATE TABLE phone_state (account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " phone TEXT NOT NULL, fails INTEGER NOT NULL DEFAULT 0,"
    " fail_since INTEGER NOT NULL DEFAULT 0, streak INTEGER NOT NULL DEFAULT 0,"
    " locked_until INTEGER NOT NULL DEFAULT 0, lock_kind INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (account_id, phone)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX phone_state_locked ON phone_state(locked_until) WHERE locked_until > 0;"
    "CREATE TABLE traffic (account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " scope TEXT NOT NULL, minute INTEGER NOT NULL, sends INTEGER NOT NULL DEFAULT 0,"
    " verifies INTEGER NOT NULL DEFAULT 0, UNIQUE (account_id, scope, minute)) STRICT;"
    "CREATE INDEX traffic_minute ON traffic(minute);"
    "CREATE TABLE blocks (account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " target TEXT NOT NULL, reason TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " until INTEGER NOT NULL, PRIMARY KEY (account_id, target)) STRICT;"
    "CREATE TABLE spend (account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " day INTEGER NOT NULL, scope TEXT NOT NULL, amount INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (account_id, day, scope)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE account_limits (account_id INTEGER PRIMARY KEY REFERENCES accounts(id),"
    " text TEXT NOT NULL, updated_at INTEGER NOT NULL) STRICT;"
    "INSERT INTO phone_state (account_id, phone, fails, fail_since)"
    " VALUES (1, '+919876500000', 2, 1700000000000);"
    "INSERT INTO traffic VALUES (1, 'XX', 28333333, 7, 3);"
    "INSERT INTO blocks VALUES (1, '+91555', 'suspected_sms_pumping', 1, 1800000000000);"
    "INSERT INTO account_limits VALUES (1, 'phone_sends=9', 1);";

/* A version-2 database as an older otpd left it (migrations 1 and 2), with a
 * pending request; with_abuse: also the abuse tables, with rows. */
static void make_v2(const char *url, bool with_abuse)
{
    make_old(url, 2,
             "INSERT INTO accounts (id, public_id, name, balance, created_at)"
             " VALUES (1, 'acc_v2', 'v2', 1000, 1);"
             "INSERT INTO ledger (account_id, type, amount, balance_after, note, created_at)"
             " VALUES (1, 'credit', 1000, 1000, 'top-up', 1);"
             "INSERT INTO otp_requests (id, public_id, account_id, phone, code_hash, code_length,"
             " status, attempts_left, max_attempts, expires_in, created_at, expires_at,"
             " last_sent_at) VALUES (1, 'req_v2', 1, '+919876543210', zeroblob(32), 6,"
             " 'pending', 3, 3, 600, 1700000000000, 1700000600000, 1700000000000);"
             "INSERT INTO messages (id, public_id, request_id, account_id, to_phone, sealed_text,"
             " status, segments, created_at, updated_at) VALUES (1, 'msg_v2', 1, 1,"
             " '+919876543210', NULL, 'sent', 1, 1700000000000, 1700000000000);",
             with_abuse ? old_abuse_sql : NULL);
}

static void upgrade_from_v2(bool with_abuse)
{
    char url[600];
    fresh_url(url, sizeof(url));
    make_v2(url, with_abuse);
    otp_store *s = open_old(url, 2);
    otp_account a;
    assert_int_equal(s->ops->account_find(s, "v2", &a), OTP_OK);
    assert_int_equal(a.balance, 1000);
    otp_request_info r;
    assert_int_equal(s->ops->request_get(s, 1, "req_v2", &r), OTP_OK);
    assert_int_equal(r.status, OTP_REQ_PENDING);
    char buf[OTP_LIMITS_TEXT_SIZE];
    assert_int_equal(s->ops->limits_get(s, 1, buf, sizeof(buf)), OTP_OK);
    assert_string_equal(buf, with_abuse ? "phone_sends=9" : "");

    /* The old request has no region: a right guess still counts as a
     * conversion of its number's region (parsed, as before schema 3). */
    otp_txn t = {.kind = OTP_TXN_VERIFY};
    otp_txn_verify *v = &t.u.verify;
    v->account_id = 1;
    snprintf(v->request_id, OTP_ID_SIZE, "req_v2");
    v->code_length = 6; /* the zero hash is the right one */
    v->now_ms = T0 + 1000;
    v->abuse.use = true;
    otp_limits_defaults(&v->abuse.lim);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);

    /* A new send stores its number's region. */
    static const uint8_t text[] = "sealed";
    memset(&t, 0, sizeof(t));
    t.kind = OTP_TXN_SEND;
    otp_txn_send *x = &t.u.send;
    x->account_id = 1;
    snprintf(x->request_id, OTP_ID_SIZE, "req_v3");
    snprintf(x->message_id, OTP_ID_SIZE, "msg_v3");
    snprintf(x->phone, OTP_PHONE_SIZE, "+919876543211");
    memcpy(x->region, "IN", 3);
    x->code_length = 6;
    x->max_attempts = 3;
    x->now_ms = T0 + 2000;
    x->expires_at_ms = T0 + 600000;
    x->segments = 1;
    x->sealed_text = text;
    x->sealed_text_len = sizeof(text) - 1;
    x->abuse.use = true;
    otp_limits_defaults(&x->abuse.lim);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    otp_store_close(s);

    assert_int_equal(raw_int(url, "SELECT count(*) FROM otp_requests WHERE region = ''"), 1);
    assert_int_equal(raw_int(url, "SELECT count(*) FROM otp_requests WHERE region = 'IN'"
                                  " AND public_id = 'req_v3'"),
                     1);
    assert_int_equal(raw_int(url, "SELECT sum(verifies) FROM traffic WHERE scope = 'IN'"), 1);
    assert_int_equal(raw_int(url, "SELECT sum(sends) FROM traffic WHERE scope = 'IN'"), 1);
    assert_int_equal(raw_int(url, "SELECT count(*) FROM phone_state"), with_abuse ? 1 : 0);
    assert_int_equal(raw_int(url, "SELECT count(*) FROM blocks"), with_abuse ? 1 : 0);
    assert_int_equal(raw_int(url, "SELECT coalesce(sum(sends), 0) FROM traffic"
                                  " WHERE scope = 'XX'"),
                     with_abuse ? 7 : 0);
    assert_int_equal(raw_int(url, "SELECT max(version) FROM schema_migrations"),
                     OTP_SCHEMA_VERSION);
}

/* Migration 3 upgrades a version-2 database in place, whether or not an otpd
 * of the abuse-protection era already made the abuse tables: rows are kept,
 * and requests sent before it (no stored region) still verify and count. */
static void t_upgrade_from_v2(void **state)
{
    upgrade_from_v2(false);
    upgrade_from_v2(true);
}

/* A version-4 database with one message and its three events in the old
 * message_events table, the second one's error in need of JSON escaping. */
static void make_v4(const char *url)
{
    make_old(url, 4,
             "INSERT INTO accounts (id, public_id, name, created_at) VALUES (1, 'acc_v4', 'v4', 1);"
             "INSERT INTO otp_requests (id, public_id, account_id, phone, code_hash, code_length,"
             " status, attempts_left, max_attempts, expires_in, created_at, expires_at)"
             " VALUES (1, 'req_v4', 1, '+919876543210', zeroblob(32), 6, 'pending', 3, 3, 600,"
             " 1700000000000, 1700000600000);"
             "INSERT INTO messages (id, public_id, request_id, account_id, to_phone, status,"
             " provider, provider_message_id, segments, created_at, updated_at) VALUES (1,"
             " 'msg_v4', 1, 1, '+919876543210', 'sent', 'gw', 'gw-1', 1, 1700000000000,"
             " 1700000000000);"
             "INSERT INTO messages (id, public_id, request_id, account_id, to_phone, status,"
             " segments, next_attempt_at, created_at, updated_at) VALUES (2, 'msg_none', 1, 1,"
             " '+919876543210', 'queued', 1, 1700000000000, 1700000000000, 1700000000000);"
             /* ids out of time order on purpose: the id decides */
             "INSERT INTO message_events (id, message_id, status, at, error) VALUES"
             " (7, 1, 'queued', 1700000000000, NULL),"
             " (8, 1, 'queued', 1700000000001, 'gateway said \"no\", then\n quit'),"
             " (9, 1, 'sent', 1699999999999, NULL);",
             NULL);
}

COLLECT(otp_message_event, event)

/* Migration 5 moves every message's events from message_events into the
 * message's row, in their order and with their errors, and drops the table;
 * a message without events reads none, and new events follow the old ones. */
static void t_upgrade_from_v4(void **state)
{
    (void)state;
    char url[600];
    fresh_url(url, sizeof(url));
    make_v4(url);
    otp_store *s = open_old(url, 4);
    event_seen seen = {0};
    assert_int_equal(s->ops->message_get(s, 1, "msg_v4", &(otp_message_info){0}, on_event, &seen),
                     OTP_OK);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.items[0].status, OTP_MSG_QUEUED);
    assert_int_equal(seen.items[0].at_ms, 1700000000000);
    assert_string_equal(seen.items[0].error, "");
    assert_int_equal(seen.items[1].status, OTP_MSG_QUEUED);
    assert_string_equal(seen.items[1].error, "gateway said \"no\", then\n quit");
    assert_int_equal(seen.items[2].status, OTP_MSG_SENT);
    assert_int_equal(seen.items[2].at_ms, 1699999999999);
    seen.n = 0;
    assert_int_equal(s->ops->message_get(s, 1, "msg_none", &(otp_message_info){0}, on_event, &seen),
                     OTP_OK);
    assert_int_equal(seen.n, 0);

    /* a delivery report adds its event after the moved ones */
    otp_txn t = {.kind = OTP_TXN_DELIVERY_REPORT};
    snprintf(t.u.delivery_report.provider, OTP_PROVIDER_NAME_SIZE, "gw");
    snprintf(t.u.delivery_report.provider_message_id, OTP_PROVIDER_MSGID_SIZE, "gw-1");
    t.u.delivery_report.status = OTP_MSG_DELIVERED;
    t.u.delivery_report.now_ms = 1700000000005;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    seen.n = 0;
    assert_int_equal(s->ops->message_get(s, 1, "msg_v4", &(otp_message_info){0}, on_event, &seen),
                     OTP_OK);
    assert_int_equal(seen.n, 4);
    assert_int_equal(seen.items[1].status, OTP_MSG_QUEUED);
    assert_int_equal(seen.items[3].status, OTP_MSG_DELIVERED);
    assert_int_equal(seen.items[3].at_ms, 1700000000005);

    /* the first event of a message that came over without any */
    memset(&t, 0, sizeof(t));
    t.kind = OTP_TXN_OUTBOX_CLAIM;
    t.u.outbox_claim = (otp_txn_outbox_claim){.now_ms = 1700000000006, .lease_ms = 1000, .max = 10};
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 1);
    otp_outbox_msgs_free(t.u.outbox_claim.msgs, t.u.outbox_claim.n);
    seen.n = 0;
    assert_int_equal(s->ops->message_get(s, 1, "msg_none", &(otp_message_info){0}, on_event, &seen),
                     OTP_OK);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.items[0].status, OTP_MSG_SENDING);
    assert_int_equal(seen.items[0].at_ms, 1700000000006);
    otp_store_close(s);
    assert_int_equal(raw_int(url, "SELECT count(*) FROM sqlite_master"
                                  " WHERE name LIKE 'message_events%'"),
                     0);
}

/* Migration 7 upgrades a version-6 database in place: its ledger entries have
 * no reference, credits with one work from then on, and admin keys start
 * empty, apart from the API keys it had. */
static void t_upgrade_from_v6(void **state)
{
    (void)state;
    char url[600];
    fresh_url(url, sizeof(url));
    make_old(url, 6,
             "INSERT INTO accounts (id, public_id, name, balance, created_at)"
             " VALUES (1, 'acc_v6', 'v6', 100, 1);"
             "INSERT INTO api_keys (id, public_id, account_id, hash, prefix, created_at)"
             " VALUES (1, 'key_v6', 1, zeroblob(32), 'otpd_live_ab', 1);"
             "INSERT INTO ledger (account_id, type, amount, balance_after, note, created_at)"
             " VALUES (1, 'credit', 100, 100, 'top-up', 1);",
             NULL);
    otp_store *s = open_old(url, 6);
    assert_int_equal(raw_int(url, "SELECT count(*) FROM ledger WHERE reference IS NULL"), 1);

    store_check_upgraded_to_7(s);
    /* the old API key is still found by its hash */
    uint8_t h[OTP_APIKEY_HASH_LEN] = {0};
    otp_key_auth auth;
    assert_int_equal(s->ops->key_lookup(s, h, &auth), OTP_OK);
    otp_store_close(s);
}

#if OTPD_TEST_HOOKS
typedef struct counter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, ok;
} counter;

static void count_done(otp_txn *t)
{
    counter *c = t->user;
    pthread_mutex_lock(&c->lock);
    c->done++;
    c->ok += t->err == OTP_OK;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void counter_init(counter *c)
{
    c->done = c->ok = 0;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
}

/* Waits until n txns counted by c are done. */
static void counter_wait(counter *c, int n)
{
    pthread_mutex_lock(&c->lock);
    while (c->done < n)
        pthread_cond_wait(&c->cond, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

static void counter_destroy(counter *c)
{
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
}

/* Queues n key touches while the writer is paused, then lets it run: it must
 * commit them in ceil(n / max_batch) batches, and the commit histogram
 * (commit_stats, behind /metrics) counts one timed COMMIT per batch. */
static void batches_for(int max_batch, int n, uint64_t want)
{
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *s = open_migrated(url, max_batch);
    otp_txn *txns = calloc((size_t)n, sizeof(*txns));
    counter c;
    counter_init(&c);
    uint64_t b0, t0, r0, b1, t1, r1;
    otp_commit_stats c0, c1;
    s->ops->commit_stats(s, &c0);
    otp_sqlite_test_counters(s, &b0, &t0, &r0);
    otp_sqlite_test_pause(s, true);
    for (int i = 0; i < n; i++) {
        txns[i].kind = OTP_TXN_KEY_TOUCH;
        txns[i].u.key_touch.key_id = 1;
        txns[i].u.key_touch.now_ms = T0 + i;
        txns[i].done = count_done;
        txns[i].user = &c;
        s->ops->submit(s, &txns[i]);
    }
    otp_sqlite_test_pause(s, false);
    counter_wait(&c, n);
    otp_sqlite_test_counters(s, &b1, &t1, &r1);
    s->ops->commit_stats(s, &c1);
    uint64_t timed = 0;
    for (size_t b = 0; b <= OTP_COMMIT_BUCKETS; b++)
        timed += c1.buckets[b] - c0.buckets[b];
    assert_int_equal(timed, want);
    assert_int_equal(c1.batches - c0.batches, want);
    assert_int_equal(c1.txns - c0.txns, (uint64_t)n);
    assert_true(c1.sum_us >= c0.sum_us);
    assert_int_equal(c.ok, n);
    assert_int_equal(b1 - b0, want);
    assert_int_equal(t1 - t0, (uint64_t)n);
    assert_int_equal(r1, r0); /* nothing failed: no replay */
    otp_store_close(s);
    counter_destroy(&c);
    free(txns);
}

static void t_group_commit_batches(void **state)
{
    batches_for(0, 300, 2); /* default 256 */
    batches_for(10, 25, 3);
    batches_for(1, 5, 5);
}

/* A test hook: while the first txn of a batch runs, the others are
 * submitted, as HTTP threads would; once (a replay runs the hook again). */
typedef struct late {
    otp_store *s;
    otp_txn *first, *rest;
    int n_rest;
    bool submitted;
} late;

static void submit_rest(void *arg, otp_txn *t)
{
    late *l = arg;
    if (t != l->first || l->submitted)
        return;
    l->submitted = true;
    for (int i = 0; i < l->n_rest; i++)
        l->s->ops->submit(l->s, &l->rest[i]);
}

/* A txn queued while a batch runs joins it before the COMMIT instead of
 * waiting for the next batch: one batch, one COMMIT, both txns stored. With
 * max_batch 1 there is no room, and it gets a batch of its own. If the COMMIT
 * fails, the joiner fails with the batch (and done() runs once for each). */
static void late_txn_joins(int max_batch, uint64_t want_batches, bool fail_commit)
{
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *s = open_migrated(url, max_batch);
    otp_txn txns[2];
    counter c;
    counter_init(&c);
    for (int i = 0; i < 2; i++) {
        memset(&txns[i], 0, sizeof(txns[i]));
        txns[i].kind = OTP_TXN_ACCOUNT_CREATE;
        snprintf(txns[i].u.account_create.public_id, OTP_ID_SIZE, "acc_late%d", i);
        snprintf(txns[i].u.account_create.name, OTP_NAME_SIZE, "late%d", i);
        txns[i].done = count_done;
        txns[i].user = &c;
    }
    late l = {.s = s, .first = &txns[0], .rest = &txns[1], .n_rest = 1};
    otp_sqlite_test_before_txn(s, submit_rest, &l);
    if (fail_commit)
        otp_sqlite_test_fail_commits(s, 1);
    uint64_t b0, t0, r0, b1, t1, r1;
    otp_commit_stats c0, c1;
    s->ops->commit_stats(s, &c0);
    otp_sqlite_test_counters(s, &b0, &t0, &r0);
    s->ops->submit(s, &txns[0]);
    counter_wait(&c, 2);
    otp_sqlite_test_before_txn(s, NULL, NULL);
    otp_sqlite_test_counters(s, &b1, &t1, &r1);
    s->ops->commit_stats(s, &c1);
    assert_int_equal(c.done, 2);
    assert_int_equal(c.ok, fail_commit ? 0 : 2);
    if (fail_commit) {
        assert_int_equal(txns[0].err, OTP_E_UNAVAILABLE);
        assert_int_equal(txns[1].err, OTP_E_UNAVAILABLE);
    }
    assert_int_equal(b1 - b0, want_batches);
    assert_int_equal(t1 - t0, 2);
    assert_int_equal(c1.batches - c0.batches, want_batches);
    assert_int_equal(c1.txns - c0.txns, 2);
    uint64_t timed = 0;
    for (size_t b = 0; b <= OTP_COMMIT_BUCKETS; b++)
        timed += c1.buckets[b] - c0.buckets[b];
    assert_int_equal(timed, want_batches);
    if (!fail_commit) {
        assert_true(txns[0].u.account_create.ret_id > 0);
        assert_true(txns[1].u.account_create.ret_id > txns[0].u.account_create.ret_id);
    }
    otp_store_close(s);
    counter_destroy(&c);
}

static void t_late_txns_join_the_batch(void **state)
{
    late_txn_joins(0, 1, false);
    late_txn_joins(1, 2, false);
    late_txn_joins(0, 1, true);
}

/* A txn failing after a write (a duplicate request id, found after the debit)
 * makes the writer replay its batch with savepoints: one replay, and only the
 * failed txn is left out. A refused send (no write) needs no replay. The same
 * when txns 1-3 join the batch while txn 0 runs (late). */
static void replay_after_partial_write(bool late_join)
{
    char url[600];
    int64_t acc;
    otp_store *s = store_with_account(url, sizeof(url), "r", &acc);
    otp_txn t = {.kind = OTP_TXN_WALLET_CREDIT};
    t.u.wallet_credit.account_id = acc;
    t.u.wallet_credit.amount = 60;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);

    static const uint8_t text[] = "sealed";
    otp_txn txns[4];
    counter c;
    counter_init(&c);
    for (int i = 0; i < 4; i++) {
        memset(&txns[i], 0, sizeof(txns[i]));
        txns[i].kind = OTP_TXN_SEND;
        otp_txn_send *x = &txns[i].u.send;
        x->account_id = acc;
        snprintf(x->request_id, OTP_ID_SIZE, "req_r%d", i == 1 ? 0 : i); /* 1 repeats 0 */
        snprintf(x->message_id, OTP_ID_SIZE, "msg_r%d", i);
        snprintf(x->phone, OTP_PHONE_SIZE, "+919876543210");
        x->code_length = 6;
        x->max_attempts = 3;
        x->expires_at_ms = T0 + 600000;
        x->segments = 1;
        x->sealed_text = text;
        x->sealed_text_len = sizeof(text) - 1;
        txns[i].done = count_done;
        txns[i].user = &c;
    }
    uint64_t b0, t0, r0, b1, t1, r1;
    otp_sqlite_test_counters(s, &b0, &t0, &r0);
    late l = {.s = s, .first = &txns[0], .rest = &txns[1], .n_rest = 3};
    if (late_join) {
        otp_sqlite_test_before_txn(s, submit_rest, &l);
        s->ops->submit(s, &txns[0]);
    } else {
        otp_sqlite_test_pause(s, true);
        for (int i = 0; i < 4; i++)
            s->ops->submit(s, &txns[i]);
        otp_sqlite_test_pause(s, false);
    }
    counter_wait(&c, 4);
    otp_sqlite_test_before_txn(s, NULL, NULL);
    assert_int_equal(c.done, 4);
    otp_sqlite_test_counters(s, &b1, &t1, &r1);
    assert_int_equal(b1 - b0, 1);
    assert_int_equal(r1 - r0, 1);
    assert_int_equal(txns[0].err, OTP_OK);
    assert_int_equal(txns[1].err, OTP_E_INTERNAL);
    assert_int_equal(txns[2].err, OTP_OK);
    assert_int_equal(txns[3].err, OTP_E_INSUFFICIENT_BALANCE); /* 60 - 2 * 25 = 10 */
    assert_int_equal(txns[2].u.send.balance_after, 10);
    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, acc, &st), OTP_OK);
    assert_int_equal(st.balance, 10);
    assert_int_equal(st.ledger_sum, 10);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.ledger_entries, 3);
    otp_store_close(s);
    counter_destroy(&c);
}

static void t_replay_after_partial_write(void **state)
{
    replay_after_partial_write(false);
    replay_after_partial_write(true);
}
#endif

/* Returns whether needle occurs in the file at path. */
static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t n = strlen(needle), len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p)
                break;
            buf = p;
        }
    }
    fclose(f);
    bool found = false;
    for (size_t i = 0; buf && i + n <= len && !found; i++)
        found = memcmp(buf + i, needle, n) == 0;
    free(buf);
    return found;
}

/* An erased outbox text is gone from the database file, not just unlinked from
 * its row (secure_delete). */
static void t_erased_text_not_in_file(void **state)
{
    /* The marker repeats through a long text, so that whatever part of the old
     * cell the shorter new one happens to reuse, some copy would be left. */
    static const char marker[] = "MARKER-7c1e5a93";
    char text[16 * (sizeof(marker) - 1) + 1] = "";
    for (int i = 0; i < 16; i++)
        strcat(text, marker);
    char url[600];
    int64_t acc;
    otp_store *s = store_with_account(url, sizeof(url), "x", &acc);
    otp_txn t = {.kind = OTP_TXN_WALLET_CREDIT};
    t.u.wallet_credit.account_id = acc;
    t.u.wallet_credit.amount = 1000;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    memset(&t, 0, sizeof(t));
    t.kind = OTP_TXN_SEND;
    otp_txn_send *snd = &t.u.send;
    snd->account_id = acc;
    snprintf(snd->request_id, OTP_ID_SIZE, "req_x");
    snprintf(snd->message_id, OTP_ID_SIZE, "msg_x");
    snprintf(snd->phone, OTP_PHONE_SIZE, "+919876543210");
    snd->code_length = 6;
    snd->max_attempts = 3;
    snd->now_ms = T0;
    snd->expires_at_ms = T0 + 600000;
    snd->segments = 1;
    snd->sealed_text = (const uint8_t *)text;
    snd->sealed_text_len = strlen(text);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    otp_store_close(s); /* checkpoints: the text is now in the main file */
    assert_true(file_contains(path_of(url), marker));

    s = open_migrated(url, 0);
    memset(&t, 0, sizeof(t));
    t.kind = OTP_TXN_OUTBOX_CLAIM;
    t.u.outbox_claim.now_ms = T0 + 1;
    t.u.outbox_claim.lease_ms = 1000;
    t.u.outbox_claim.max = 1;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 1);
    otp_outbox_report rep = {.id = t.u.outbox_claim.msgs[0].id, .status = OTP_MSG_SENT};
    otp_outbox_msgs_free(t.u.outbox_claim.msgs, t.u.outbox_claim.n);
    memset(&t, 0, sizeof(t));
    t.kind = OTP_TXN_OUTBOX_REPORT;
    t.u.outbox_report.reports = &rep;
    t.u.outbox_report.n = 1;
    t.u.outbox_report.now_ms = T0 + 2;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    otp_store_close(s);
    assert_false(file_contains(path_of(url), marker));
}

int main(void)
{
    if (tmpdir_make(dir) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_memory_statistics_off),
        cmocka_unit_test(t_urls),
        cmocka_unit_test(t_files_and_wal),
        cmocka_unit_test(t_query_plans),
        cmocka_unit_test(t_upgrade_from_v1),
        cmocka_unit_test(t_upgrade_from_v2),
        cmocka_unit_test(t_upgrade_from_v4),
        cmocka_unit_test(t_upgrade_from_v6),
#if OTPD_TEST_HOOKS
        cmocka_unit_test(t_group_commit_batches),
        cmocka_unit_test(t_replay_after_partial_write),
        cmocka_unit_test(t_late_txns_join_the_batch),
#endif
        cmocka_unit_test(t_erased_text_not_in_file),
    };
    int failed = cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
    failed += store_conformance_run(&sqlite_backend);
    tmpdir_remove(dir);
    return failed ? 1 : 0;
}
