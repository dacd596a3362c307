/* tests/unit/store/sql_helpers.h — plain SQL on a test's own sqlite3 handle,
 * failing the test on any error: run statements, read one integer, check the
 * file with PRAGMA integrity_check. Header-only; include after <cmocka.h>. */
#ifndef OTP_TESTS_STORE_SQL_HELPERS_H
#define OTP_TESTS_STORE_SQL_HELPERS_H

#include <sqlite3.h>
#include <stdint.h>

/* Runs sql (one or more statements); fails the test with SQLite's message. */
static inline void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
}

/* The first column of the first row of sql, which must have one. */
static inline int64_t one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* PRAGMA integrity_check says "ok". */
static inline void assert_sound(sqlite3 *db)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

#endif
