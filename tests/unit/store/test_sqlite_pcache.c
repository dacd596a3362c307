/* tests/unit/store/test_sqlite_pcache.c — the store's page cache layer
 * (src/store/sqlite_pcache.c) on real database files. It installs when asked
 * before SQLite initializes, and after that refuses and leaves SQLite working
 * on its default cache. Under it sits a recording cache (SQLite's default
 * one, with what reaches it counted): b-tree balancing does park pages under
 * the borrowed number, yet the default cache never sees that number, and no
 * commit's truncation is left with a largest page number far past the
 * database's end (what made every commit walk the whole cache). With the
 * layer in place, databases of several page sizes, under a cache far smaller
 * than the transactions (pages spilled and read back), with committed and
 * rolled-back transactions that split pages, read back exactly what was
 * committed and pass PRAGMA integrity_check. Called directly, the layer drops
 * a page filed under the borrowed number when a truncation cuts that number
 * off. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sql_helpers.h"
#include "tmpdir.h"
#include "store/sqlite_internal.h"

#define ROWS 6000

/* ---- the recording cache, installed under the layer by main() ---- */

typedef struct spy_cache {
    sqlite3_pcache *real;
    unsigned borrowed; /* the pending-byte page at this page size */
    unsigned max_key;  /* the largest key since the last truncation, as pcache1 keeps it */
} spy_cache;

static sqlite3_pcache_methods2 real;
static unsigned long borrowed_seen;    /* calls that carried the borrowed number */
static unsigned long wide_truncations; /* largest key >= 1024 pages past the limit */

static int spy_init(void *arg)
{
    (void)arg;
    return real.xInit ? real.xInit(real.pArg) : SQLITE_OK;
}

static void spy_shutdown(void *arg)
{
    (void)arg;
    if (real.xShutdown)
        real.xShutdown(real.pArg);
}

static sqlite3_pcache *spy_create(int page_size, int extra, int purgeable)
{
    spy_cache *c = calloc(1, sizeof(*c));
    if (!c || !(c->real = real.xCreate(page_size, extra, purgeable))) {
        free(c);
        return NULL;
    }
    c->borrowed = 0x40000000u / (unsigned)page_size + 1;
    return (sqlite3_pcache *)c;
}

static void spy_cachesize(sqlite3_pcache *p, int n)
{
    real.xCachesize(((spy_cache *)p)->real, n);
}

static int spy_pagecount(sqlite3_pcache *p)
{
    return real.xPagecount(((spy_cache *)p)->real);
}

static sqlite3_pcache_page *spy_fetch(sqlite3_pcache *p, unsigned k, int create)
{
    spy_cache *c = (spy_cache *)p;
    borrowed_seen += k == c->borrowed;
    sqlite3_pcache_page *page = real.xFetch(c->real, k, create);
    if (page && k > c->max_key)
        c->max_key = k;
    return page;
}

static void spy_unpin(sqlite3_pcache *p, sqlite3_pcache_page *page, int discard)
{
    real.xUnpin(((spy_cache *)p)->real, page, discard);
}

static void spy_rekey(sqlite3_pcache *p, sqlite3_pcache_page *page, unsigned from, unsigned to)
{
    spy_cache *c = (spy_cache *)p;
    borrowed_seen += from == c->borrowed || to == c->borrowed;
    if (to > c->max_key)
        c->max_key = to;
    real.xRekey(c->real, page, from, to);
}

static void spy_truncate(sqlite3_pcache *p, unsigned limit)
{
    spy_cache *c = (spy_cache *)p;
    if (limit <= c->max_key) {
        wide_truncations += c->max_key - limit >= 1024;
        c->max_key = limit - 1;
    }
    real.xTruncate(c->real, limit);
}

static void spy_destroy(sqlite3_pcache *p)
{
    real.xDestroy(((spy_cache *)p)->real);
    free(p);
}

static void spy_shrink(sqlite3_pcache *p)
{
    real.xShrink(((spy_cache *)p)->real);
}

static const sqlite3_pcache_methods2 spy = {
    .iVersion = 1,
    .xInit = spy_init,
    .xShutdown = spy_shutdown,
    .xCreate = spy_create,
    .xCachesize = spy_cachesize,
    .xPagecount = spy_pagecount,
    .xFetch = spy_fetch,
    .xUnpin = spy_unpin,
    .xRekey = spy_rekey,
    .xTruncate = spy_truncate,
    .xDestroy = spy_destroy,
    .xShrink = spy_shrink,
};

/* ---- the tests ---- */

static char tdir[] = "/tmp/otpd-pcache-test-XXXXXX";
static sqlite3_pcache_methods2 layer; /* the layer's methods, read in main() */
static int tcount;
static bool installed_first; /* sq_pcache_install() in main, before any SQLite call */

/* A key that lands rows all over an index, so that pages split in the middle
 * (balance_nonroot, which renumbers through the borrowed page). */
static uint64_t scatter(uint64_t i)
{
    i ^= i >> 33;
    i *= 0xff51afd7ed558ccdULL;
    i ^= i >> 33;
    return i;
}

static sqlite3 *open_db(int page_size, int cache_pages, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "%s/db%d.sqlite", tdir, ++tcount);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char sql[200];
    snprintf(sql, sizeof(sql),
             "PRAGMA page_size = %d; PRAGMA journal_mode = WAL; PRAGMA cache_size = %d;"
             " PRAGMA synchronous = FULL",
             page_size, cache_pages);
    exec(db, sql);
    exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL);"
             " CREATE INDEX t_k ON t(k)");
    return db;
}

/* Inserts rows [from, to) in transactions of `per` rows, each then growing
 * its rows whose id is a multiple of 3 (an UPDATE that may no longer fit its
 * page). */
static void fill(sqlite3 *db, int from, int to, int per)
{
    sqlite3_stmt *ins, *grow;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t (id, k, v) VALUES (?, ?, zeroblob(?))",
                                        -1, &ins, NULL),
                     SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "UPDATE t SET v = zeroblob(?) WHERE id = ?", -1, &grow, NULL),
        SQLITE_OK);
    for (int i = from; i < to; i += per) {
        exec(db, "BEGIN");
        for (int j = i; j < to && j < i + per; j++) {
            char k[40];
            snprintf(k, sizeof(k), "%016llx", (unsigned long long)scatter((uint64_t)j));
            sqlite3_bind_int(ins, 1, j);
            sqlite3_bind_text(ins, 2, k, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(ins, 3, 40 + j % 60);
            assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
            sqlite3_reset(ins);
        }
        for (int j = i; j < to && j < i + per; j++) {
            if (j % 3)
                continue;
            sqlite3_bind_int(grow, 1, 140 + j % 60);
            sqlite3_bind_int(grow, 2, j);
            assert_int_equal(sqlite3_step(grow), SQLITE_DONE);
            sqlite3_reset(grow);
        }
        exec(db, "COMMIT");
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(grow);
}

/* Every row [0, n) is there with its key and its length, and nothing else,
 * read through the index and through the table. */
static void assert_rows(sqlite3 *db, int n)
{
    assert_int_equal(one_int(db, "SELECT count(*) FROM t"), n);
    assert_int_equal(one_int(db, "SELECT count(*) FROM t INDEXED BY t_k WHERE k >= ''"), n);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT id, k, length(v) FROM t ORDER BY id", -1, &st, NULL),
        SQLITE_OK);
    for (int j = 0; j < n; j++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(st, 0), j);
        char k[40];
        snprintf(k, sizeof(k), "%016llx", (unsigned long long)scatter((uint64_t)j));
        assert_string_equal((const char *)sqlite3_column_text(st, 1), k);
        assert_int_equal(sqlite3_column_int(st, 2), j % 3 == 0 ? 140 + j % 60 : 40 + j % 60);
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

static void test_installed_before_sqlite_only(void **state)
{
    (void)state;
    assert_true(installed_first);
    assert_true(sq_pcache_install()); /* once: the same answer */
}

/* Page splits in the middle of an index park pages under the borrowed number;
 * what was committed reads back, at 4 KiB (the store's size), 1 KiB and
 * 16 KiB (with rows enough for a few hundred leaf pages at each). */
static void test_splits_commit_and_read_back(void **state)
{
    (void)state;
    static const int sizes[] = {4096, 1024, 16384};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int rows = sizes[i] > 4096 ? ROWS * (sizes[i] / 4096) : ROWS;
        uint64_t before = sq_pcache_parked();
        borrowed_seen = wide_truncations = 0;
        char path[300];
        sqlite3 *db = open_db(sizes[i], 2000, path, sizeof(path));
        fill(db, 0, rows, 50);
        if (sq_pcache_parked() <= before)
            fail_msg("page size %d: no page was parked", sizes[i]);
        if (borrowed_seen || wide_truncations)
            fail_msg("page size %d: the default cache saw the borrowed number %lu times, "
                     "%lu truncations walked far past the end",
                     sizes[i], borrowed_seen, wide_truncations);
        assert_rows(db, rows);
        assert_sound(db);
        sqlite3_close(db);

        /* A second connection starts with an empty cache: the file itself. */
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_rows(db, rows);
        assert_sound(db);
        sqlite3_close(db);
    }
}

/* A cache of 16 pages under transactions of thousands of rows: pages are
 * evicted and spilled to the WAL in the middle of splits; a rolled-back
 * transaction that split pages leaves the committed rows as they were. */
static void test_small_cache_and_rollback(void **state)
{
    (void)state;
    char path[300];
    sqlite3 *db = open_db(4096, 16, path, sizeof(path));
    uint64_t before = sq_pcache_parked();
    fill(db, 0, ROWS / 2, 1500);
    assert_true(sq_pcache_parked() > before);

    before = sq_pcache_parked();
    exec(db, "BEGIN");
    exec(db, "WITH RECURSIVE n(i) AS (SELECT 100000 UNION ALL SELECT i + 1 FROM n WHERE i < 103000)"
             " INSERT INTO t (id, k, v) SELECT i, printf('%016x', i * 2654435761 % 4294967296),"
             " zeroblob(300) FROM n");
    exec(db, "UPDATE t SET v = zeroblob(500) WHERE id < 1000");
    assert_true(sq_pcache_parked() > before);
    exec(db, "ROLLBACK");
    assert_rows(db, ROWS / 2);
    assert_sound(db);

    fill(db, ROWS / 2, ROWS, 700);
    assert_rows(db, ROWS);
    assert_sound(db);
    sqlite3_close(db);
}

/* The child of test_late_install_keeps_the_default: SQLite first, then the
 * layer. Exit 0: refused, and SQLite works on its default cache. */
static int late_install(void)
{
    if (sqlite3_initialize() != SQLITE_OK || sq_pcache_install())
        return 1;
    sqlite3 *db = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1)", NULL, NULL, NULL) !=
            SQLITE_OK)
        return 2;
    sqlite3_close(db);
    return 0;
}

/* The layer's methods called directly: a page filed under the borrowed number
 * (which SQLite itself only does inside a move) is found under it, and a
 * truncation below the borrowed number drops it with the rest. */
static void test_truncation_drops_a_parked_page(void **state)
{
    (void)state;
    assert_int_equal(sqlite3_initialize(), SQLITE_OK); /* runs the caches' xInit */
    sqlite3_pcache *c = layer.xCreate(4096, 64, 1);
    assert_non_null(c);
    layer.xCachesize(c, 100);
    const unsigned borrowed = 0x40000000u / 4096 + 1;
    sqlite3_pcache_page *page = layer.xFetch(c, 5, 2);
    assert_non_null(page);
    *(void **)page->pExtra = NULL;
    layer.xRekey(c, page, 5, borrowed);
    assert_ptr_equal(layer.xFetch(c, borrowed, 0), page);
    assert_null(layer.xFetch(c, 5, 0));
    assert_int_equal(layer.xPagecount(c), 1);
    layer.xUnpin(c, page, 0);
    layer.xTruncate(c, 10);
    assert_null(layer.xFetch(c, borrowed, 0));
    assert_int_equal(layer.xPagecount(c), 0);
    layer.xDestroy(c);
}

/* Once SQLite is initialized the layer cannot be installed: it says so, and
 * nothing breaks (a child process, since this one installed it). */
static void test_late_install_keeps_the_default(void **state)
{
    (void)state;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("PCACHE_TEST_LATE", "1", 1);
        execl(exe, exe, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    if (getenv("PCACHE_TEST_LATE"))
        return late_install();
    /* Before anything initializes SQLite: the recording cache, then the layer
     * on top of it (it wraps whatever cache is configured). */
    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &real) != SQLITE_OK ||
        sqlite3_config(SQLITE_CONFIG_PCACHE2, &spy) != SQLITE_OK)
        return 1;
    installed_first = sq_pcache_install();
    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &layer) != SQLITE_OK)
        return 1;
    if (tmpdir_make(tdir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_installed_before_sqlite_only),
        cmocka_unit_test(test_splits_commit_and_read_back),
        cmocka_unit_test(test_small_cache_and_rollback),
        cmocka_unit_test(test_truncation_drops_a_parked_page),
        cmocka_unit_test(test_late_install_keeps_the_default),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    tmpdir_remove(tdir);
    return failed;
}
