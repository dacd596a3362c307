/* tests/unit/store/test_sqlite_vfs.c — the store's VFSes (src/store/sqlite_vfs.c)
 * on real database files: they are registered without becoming the default; a
 * checkpoint on the checkpointer's starts writeback about once per
 * SQ_VFS_WRITEBACK_BYTES copied into the database file, while writes to the
 * WAL and the writer's own checkpoints start none; on the writer's, a commit's
 * WAL writes are one write, in the file when COMMIT returns (its size, and a
 * reader on the default VFS that sees every commit at once); a transaction
 * bigger than the page cache reads its spilled pages back from the WAL; what
 * was written reads back whole through SQLite's default VFS. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sql_helpers.h"
#include "tmpdir.h"
#include "store/sqlite_internal.h"

#define ROWS 2048
#define ROW_BYTES 2000 /* ~4 MiB in all: ~16 writeback starts at 256 KiB */

/* path read-only through the default VFS, after PRAGMA integrity_check says ok. */
static sqlite3 *open_checked(const char *path)
{
    sqlite3 *r = NULL;
    assert_int_equal(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_sound(r);
    return r;
}

static long long wal_size(const char *path)
{
    char wal[300];
    int k = snprintf(wal, sizeof(wal), "%s-wal", path);
    assert_true(k > 0 && (size_t)k < sizeof(wal));
    struct stat st;
    return stat(wal, &st) == 0 ? (long long)st.st_size : -1;
}

/* Every database of this program is in tdir (made by main, removed after). */
static char tdir[] = "/tmp/otpd-vfs-test-XXXXXX";
static int tcount;

static void test_registered_but_not_the_default(void **state)
{
    (void)state;
    const char *writer = sq_vfs(SQ_VFS_WRITER), *ckpt = sq_vfs(SQ_VFS_CHECKPOINTER);
    assert_non_null(writer);
    assert_non_null(ckpt);
    assert_string_not_equal(writer, ckpt);
    assert_ptr_equal(sq_vfs(SQ_VFS_WRITER), writer); /* registered once */
    for (int i = 0; i < 2; i++) {
        sqlite3_vfs *v = sqlite3_vfs_find(i ? ckpt : writer);
        assert_non_null(v);
        assert_ptr_not_equal(sqlite3_vfs_find(NULL), v);
    }
}

static void test_checkpoint_trickles_and_the_data_reads_back(void **state)
{
    (void)state;
    char path[256], wal[300];
    snprintf(path, sizeof(path), "%s/trickle.db", tdir);
    snprintf(wal, sizeof(wal), "%s-wal", path);

    /* A writer and a checkpointer, each on its VFS, as in the store. */
    sqlite3 *w = NULL, *c = NULL;
    assert_int_equal(sqlite3_open_v2(path, &w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                     sq_vfs(SQ_VFS_WRITER)),
                     SQLITE_OK);
    exec(w, "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;"
            " PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);"
            " PRAGMA cache_size = -65536"); /* no spill: every frame is written at COMMIT */
    assert_int_equal(sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE, sq_vfs(SQ_VFS_CHECKPOINTER)),
                     SQLITE_OK);
    exec(c, "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0");

    /* Writes into the WAL, also by the checkpointer's connection: no
     * writeback started. */
    uint64_t before = sq_vfs_writeback_starts();
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
    uint64_t writes = sq_vfs_wal_writes();
    exec(w, "COMMIT");
    assert_int_equal(sq_vfs_writeback_starts(), before);
    /* ~1,000 frames, two writes each from SQLite, went out in pieces of
     * SQ_VFS_WAL_BUFFER bytes. */
    uint64_t pieces = sq_vfs_wal_writes() - writes;
    int64_t wal_bytes = wal_size(path) - 32;
    assert_true(wal_bytes > 0);
    assert_true(pieces >= (uint64_t)(wal_bytes / SQ_VFS_WAL_BUFFER));
    assert_true(pieces <= (uint64_t)(wal_bytes / SQ_VFS_WAL_BUFFER) + 2);

    /* The checkpoint copies ~4 MiB into the database file. */
    int log = -1, done = -1;
    assert_int_equal(sqlite3_wal_checkpoint_v2(c, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done),
                     SQLITE_OK);
    assert_true(log > 0);
    assert_int_equal(done, log);
    uint64_t started = sq_vfs_writeback_starts() - before;
    int64_t copied = (int64_t)done * 4096;
    assert_true(started >= (uint64_t)(copied / SQ_VFS_WRITEBACK_BYTES) - 1);
    assert_true(started <= (uint64_t)(copied / SQ_VFS_WRITEBACK_BYTES) + 1);

    /* The writer's own checkpoints (its tails) do not trickle. */
    exec(w, "BEGIN");
    for (int i = 0; i < 200; i++)
        exec(w, "INSERT INTO t (v) VALUES (randomblob(2000))");
    exec(w, "COMMIT");
    before = sq_vfs_writeback_starts();
    assert_int_equal(sqlite3_wal_checkpoint_v2(w, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done),
                     SQLITE_OK);
    assert_true(done > (int)(SQ_VFS_WRITEBACK_BYTES / 4096));
    assert_int_equal(sq_vfs_writeback_starts(), before);

    sqlite3_close(c);
    sqlite3_close(w);
    assert_int_equal(access(wal, F_OK), -1); /* the last close folded the WAL in */

    /* Whole, through the default VFS. */
    sqlite3 *r = open_checked(path);
    sqlite3_stmt *st;
    assert_int_equal(one_int(r, "SELECT count(*) FROM t"), ROWS + 201);
    assert_int_equal(sqlite3_prepare_v2(r,
                                        "SELECT v FROM t WHERE id BETWEEN 2 AND 1 + ?1 ORDER BY id",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int(st, 1, ROWS);
    for (int i = 0; i < ROWS; i++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_bytes(st, 0), ROW_BYTES);
        memset(row, (unsigned char)i, sizeof(row));
        assert_memory_equal(sqlite3_column_blob(st, 0), row, ROW_BYTES);
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(r);
}

/* A new WAL database in tdir, with table t, opened on the VFS. */
static sqlite3 *fresh(char *path, size_t len)
{
    snprintf(path, len, "%s/%d.db", tdir, ++tcount);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                     sq_vfs(SQ_VFS_WRITER)),
                     SQLITE_OK);
    exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
             " CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, b BLOB)");
    return db;
}

static void test_a_commit_is_one_write_and_in_the_file_when_commit_returns(void **state)
{
    (void)state;
    char path[300];
    sqlite3 *w = fresh(path, sizeof(path));
    exec(w, "PRAGMA wal_autocheckpoint = 0");
    /* Another connection, on the default VFS, as the store's readers are. */
    sqlite3 *r = NULL;
    assert_int_equal(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    exec(w, "INSERT INTO t (v) VALUES (0)"); /* the WAL's header is written (and synced) */
    sqlite3_stmt *up;
    assert_int_equal(sqlite3_prepare_v2(w, "UPDATE t SET v = ?1, b = randomblob(3000) WHERE id = 1",
                                        -1, &up, NULL),
                     SQLITE_OK);
    for (int i = 1; i <= 200; i++) {
        long long size = wal_size(path);
        uint64_t writes = sq_vfs_wal_writes();
        sqlite3_bind_int(up, 1, i);
        assert_int_equal(sqlite3_step(up), SQLITE_DONE);
        sqlite3_reset(up);
        assert_int_equal(sq_vfs_wal_writes() - writes, 1); /* frames and headers: one write */
        assert_true(wal_size(path) > size);                /* ... in the file already */
        assert_int_equal(one_int(r, "SELECT v FROM t WHERE id = 1"), i);
    }
    sqlite3_finalize(up);
    sqlite3_close(r);
    sqlite3_close(w);
}

/* Opens a transaction on w with 10 pages of cache and inserts n rows (v = 0..n-1,
 * b of 100 + i % spread bytes): more than the cache holds, so pages spill into
 * the WAL, unsynced, and are read back from it later in the transaction. */
static void spill_rows(sqlite3 *w, int n, int spread)
{
    exec(w, "PRAGMA cache_size = 10; BEGIN");
    for (int i = 0; i < n; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "INSERT INTO t (v, b) VALUES (%d, zeroblob(%d))", i,
                 100 + i % spread);
        exec(w, sql);
    }
}

static void test_a_transaction_bigger_than_the_cache_reads_its_pages_back(void **state)
{
    (void)state;
    char path[300];
    sqlite3 *w = fresh(path, sizeof(path));
    /* 10 pages of cache: the transaction's pages spill into the WAL, unsynced,
     * and are read back from it before COMMIT. */
    spill_rows(w, 3000, 900);
    exec(w, "UPDATE t SET v = v + 1000000 WHERE id % 7 = 0");
    exec(w, "COMMIT");
    assert_int_equal(one_int(w, "SELECT count(*) FROM t"), 3000);
    assert_int_equal(one_int(w, "SELECT sum(v) FROM t"),
                     2999LL * 3000 / 2 + 1000000LL * (3000 / 7));
    sqlite3_close(w);

    sqlite3 *r = open_checked(path);
    long long bytes = 0;
    for (int i = 0; i < 3000; i++)
        bytes += 100 + i % 900;
    assert_int_equal(one_int(r, "SELECT sum(length(b)) FROM t"), bytes);
    sqlite3_close(r);
}

/* A failed write of gathered WAL bytes (the disk full while a transaction
 * bigger than the cache spills and reads its pages back) leaves that
 * transaction all or nothing and the file sound. Writes are made to fail
 * through the default VFS's "pwrite64" system call. */
static sqlite3_syscall_ptr real_pwrite64;
static volatile int fail_writes;

static ssize_t failing_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    if (fail_writes) {
        errno = ENOSPC;
        return -1;
    }
    return ((ssize_t(*)(int, const void *, size_t, off_t))real_pwrite64)(fd, buf, n, off);
}

static void test_a_failed_gathered_write_leaves_all_or_nothing(void **state)
{
    (void)state;
    char path[300];
    sqlite3 *w = fresh(path, sizeof(path));
    sqlite3_vfs *root = sqlite3_vfs_find(NULL);
    real_pwrite64 = root->xGetSystemCall(root, "pwrite64");
    if (!real_pwrite64)
        skip(); /* this SQLite writes another way */
    assert_int_equal(root->xSetSystemCall(root, "pwrite64", (sqlite3_syscall_ptr)failing_pwrite64),
                     SQLITE_OK);
    exec(w, "INSERT INTO t (v, b) VALUES (-1, zeroblob(100))"); /* committed before */

    /* A transaction bigger than the cache: its pages spill into the WAL
     * (gathered), then are read back, and that read needs the gathered bytes
     * in the file first. The disk is "full" by then. */
    spill_rows(w, 2000, 1);
    /* A read of the spilled pages, which needs the gathered bytes written
     * first, on a full disk: the read fails. (SQLite 3.40 then rolls the
     * transaction back by itself; a statement with a statement journal might
     * roll back only itself, which is why the bytes are kept and the error
     * is an I/O error: sqlite_vfs.c, flush.) */
    fail_writes = 1;
    int rc = sqlite3_exec(w, "SELECT sum(length(b)) FROM t", NULL, NULL, NULL);
    fail_writes = 0;
    assert_int_not_equal(rc, SQLITE_OK);
    /* The disk has room again: COMMIT must not make the transaction durable
     * without the bytes that failed. Either it fails (the transaction is
     * rolled back) or every row is there. */
    rc = sqlite3_exec(w, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        sqlite3_exec(w, "ROLLBACK", NULL, NULL, NULL);
    root->xSetSystemCall(root, "pwrite64", real_pwrite64);
    int64_t rows = one_int(w, "SELECT count(*) FROM t");
    sqlite3_close(w);

    sqlite3 *r = open_checked(path);
    assert_int_equal(one_int(r, "SELECT count(*) FROM t"), rows);
    assert_true(rows == 1 || rows == 2001);
    assert_int_equal(one_int(r, "SELECT min(v) FROM t"), -1);
    if (rows == 2001)
        assert_int_equal(one_int(r, "SELECT sum(length(b)) FROM t"), 100 + 2000 * 100);
    sqlite3_close(r);
}

/* The checkpointer's connection borrows the database file's descriptor:
 * closing it must leave the process's locks alone (closing any descriptor of
 * a file drops every POSIX lock the process holds on it). In WAL mode every
 * open connection holds SQLite's SHARED lock on the database file; another
 * process that found none would take EXCLUSIVE when it closes, think itself
 * the last user, checkpoint and delete the WAL under ours. A child process
 * (no SQLite in it: SQLite's state does not survive fork) asks the kernel. */
static void test_closing_the_checkpointer_keeps_the_process_locks(void **state)
{
    (void)state;
    char path[300];
    sqlite3 *w = fresh(path, sizeof(path));
    exec(w, "INSERT INTO t (v) VALUES (1)");
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE, sq_vfs(SQ_VFS_CHECKPOINTER)),
                     SQLITE_OK);
    exec(c, "PRAGMA synchronous = FULL");
    assert_int_equal(one_int(c, "SELECT count(*) FROM t"), 1);
    sqlite3_close(c);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_RDWR);
        /* SQLite's SHARED range: PENDING_BYTE (1 GiB) + 2, 510 bytes. */
        struct flock fl = {
            .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0x40000002, .l_len = 510};
        _exit(fd >= 0 && fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type == F_RDLCK ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* the writer's SHARED lock is still there */
    assert_int_equal(one_int(w, "SELECT count(*) FROM t"), 1);
    sqlite3_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered_but_not_the_default),
        cmocka_unit_test(test_checkpoint_trickles_and_the_data_reads_back),
        cmocka_unit_test(test_a_commit_is_one_write_and_in_the_file_when_commit_returns),
        cmocka_unit_test(test_a_transaction_bigger_than_the_cache_reads_its_pages_back),
        cmocka_unit_test(test_a_failed_gathered_write_leaves_all_or_nothing),
        cmocka_unit_test(test_closing_the_checkpointer_keeps_the_process_locks),
    };
    if (tmpdir_make(tdir) != 0)
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tmpdir_remove(tdir);
    return rc;
}
