/* tests/unit/store/test_sqlite_writeback.c — the checkpointer's VFS
 * (src/store/sqlite_writeback.c) on a real database file: it is registered
 * without becoming the default; a checkpoint through it starts writeback about
 * once per SQ_WRITEBACK_BYTES copied into the database file, and writes to the
 * WAL start none; what it wrote reads back whole through SQLite's default VFS,
 * from a connection that shared the file with it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/sqlite_internal.h"

#define ROWS 2048
#define ROW_BYTES 2000 /* ~4 MiB in all: ~16 writeback starts at 256 KiB */

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
}

static int64_t one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_registered_but_not_the_default(void **state)
{
    (void)state;
    const char *name = sq_writeback_vfs();
    assert_non_null(name);
    assert_string_equal(name, SQ_WRITEBACK_VFS);
    assert_string_equal(sq_writeback_vfs(), name); /* registered once */
    sqlite3_vfs *v = sqlite3_vfs_find(name);
    assert_non_null(v);
    assert_ptr_not_equal(sqlite3_vfs_find(NULL), v);
    assert_string_not_equal(sqlite3_vfs_find(NULL)->zName, name);
}

static void test_checkpoint_trickles_and_the_data_reads_back(void **state)
{
    (void)state;
    char dir[] = "/tmp/otpd-wb-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], wal[300], shm[300];
    snprintf(path, sizeof(path), "%s/t.db", dir);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);

    /* The writer on the default VFS, the checkpointer on ours, as in the store. */
    sqlite3 *w = NULL, *c = NULL;
    assert_int_equal(sqlite3_open_v2(path, &w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    exec(w, "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;"
            " PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
    assert_int_equal(sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE, sq_writeback_vfs()),
                     SQLITE_OK);
    exec(c, "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0");

    /* Writes into the WAL, also by our connection: no writeback started. */
    uint64_t before = sq_writeback_starts();
    exec(c, "INSERT INTO t (v) VALUES (randomblob(10))");
    exec(w, "BEGIN");
    sqlite3_stmt *ins;
    assert_int_equal(sqlite3_prepare_v2(w, "INSERT INTO t (v) VALUES (?1)", -1, &ins, NULL),
                     SQLITE_OK);
    static unsigned char row[ROW_BYTES];
    for (int i = 0; i < ROWS; i++) {
        memset(row, (unsigned char)i, sizeof(row));
        sqlite3_bind_blob(ins, 1, row, sizeof(row), SQLITE_STATIC);
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    exec(w, "COMMIT");
    assert_int_equal(sq_writeback_starts(), before);

    /* The checkpoint copies ~4 MiB into the database file. */
    int log = -1, done = -1;
    assert_int_equal(sqlite3_wal_checkpoint_v2(c, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done),
                     SQLITE_OK);
    assert_true(log > 0);
    assert_int_equal(done, log);
    uint64_t started = sq_writeback_starts() - before;
    int64_t copied = (int64_t)done * 4096;
    assert_true(started >= (uint64_t)(copied / SQ_WRITEBACK_BYTES) - 1);
    assert_true(started <= (uint64_t)(copied / SQ_WRITEBACK_BYTES) + 1);

    sqlite3_close(c);
    sqlite3_close(w);
    assert_int_equal(access(wal, F_OK), -1); /* the last close folded the WAL in */

    /* Whole, through the default VFS. */
    sqlite3 *r = NULL;
    assert_int_equal(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(r, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(one_int(r, "SELECT count(*) FROM t"), ROWS + 1);
    assert_int_equal(sqlite3_prepare_v2(r, "SELECT v FROM t WHERE id > 1 ORDER BY id", -1, &st, NULL),
                     SQLITE_OK);
    for (int i = 0; i < ROWS; i++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_bytes(st, 0), ROW_BYTES);
        memset(row, (unsigned char)i, sizeof(row));
        assert_memory_equal(sqlite3_column_blob(st, 0), row, ROW_BYTES);
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(r);

    unlink(path);
    unlink(wal);
    unlink(shm);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered_but_not_the_default),
        cmocka_unit_test(test_checkpoint_trickles_and_the_data_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
