/* store/sqlite_internal.h — private to the SQLite backend (src/store/sqlite*.c)
 * and to its unit tests. Nothing outside src/store/ and tests/unit/store/ may
 * include it: SQLite types must not leak past store.h.
 *
 * The backend is split in six files: sqlite.c (open, close, the writer thread
 * and group commit), sqlite_schema.c (pragmas and versioned migrations),
 * sqlite_txn.c (the body of every write txn, on the write connection),
 * sqlite_traffic.c (the pumping counters the writer keeps in memory),
 * sqlite_read.c (per-thread read-only connections and the read calls) and
 * sqlite_checkpoint.c (the checkpointer thread and the writer's WAL hook).
 */
#ifndef OTP_STORE_SQLITE_INTERNAL_H
#define OTP_STORE_SQLITE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "otpd_config.h"
#include "store/store.h"

/* Busy timeout of every connection: the CLI may write to the file while the
 * server runs, and BEGIN IMMEDIATE then waits for it instead of failing. */
#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_DEFAULT_MAX_BATCH 256

/* Statements of the write connection, prepared once at open (sqlite_txn.c). */
typedef enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SAVEPOINT,
    W_RELEASE,
    W_ROLLBACK_TO,
    W_DEBIT,
    W_MONEY,
    W_REQ_INSERT,
    W_MSG_INSERT,
    W_LEDGER_INSERT,
    W_REQ_FOR_VERIFY,
    W_REQ_SET_STATE,
    W_KEY_TOUCH,
    W_ACCOUNT_INSERT,
    W_KEY_INSERT,
    W_KEY_REVOKE,
    W_CREDIT,
    W_OUTBOX_DUE,
    W_OUTBOX_LEASE,
    W_MSG_SENT,
    W_MSG_FAILED,
    W_MSG_REFUND_MARK,
    W_MSG_REQUEUE,
    W_MSG_FOR_REFUND,
    W_IDEM_GET,
    W_IDEM_PUT,
    W_REQ_FOR_UPDATE,
    W_REQ_RESEND,
    W_REQ_CANCEL,
    W_MSG_QUEUED_CHARGES,
    W_MSG_QUEUED_NEXT,
    W_MSG_SUPERSEDE,
    W_ACCOUNT_SET,
    W_TPL_INSERT,
    W_TPL_COUNT,
    W_TPL_FIND,
    W_TPL_UNSET_DEFAULT,
    W_TPL_SET_DEFAULT,
    W_TPL_DELETE,
    W_MSG_BY_PROVIDER_ID,
    W_MSG_DLR,
    W_PURGE_CODES,
    W_PURGE_REQUESTS,
    W_PURGE_IDEM,
    W_PHONE_STATE_GET,
    W_PHONE_STATE_PUT,
    W_RECENT_SENDS,
    W_RECENT_TEST_SENDS,
    W_BLOCK_FIND,
    W_BLOCK_PUT,
    W_TRAFFIC_SUM,
    W_TRAFFIC_ADD,
    W_SPEND_GET,
    W_SPEND_ADD,
    W_LIMITS_PUT,
    W_LIFT_COUNT,
    W_LIFT_BLOCKS,
    W_LIFT_PHONE,
    W_PURGE_TRAFFIC,
    W_SPEND_REFUND,
    W_PURGE_SPEND,
    W_PURGE_BLOCKS,
    W_PURGE_PHONE_STATE,
    W_BLOCK_LIFTED,
    W_CREDIT_FIND,
    W_CREDIT_LEDGER,
    W_ADMIN_KEY_INSERT,
    W_ADMIN_KEY_REVOKE,
    W__COUNT
} sq_wstmt;

typedef struct sq_reader sq_reader;
typedef struct sq_traffic sq_traffic; /* the pumping counters (sqlite_traffic.c) */
typedef struct sq_ckpt sq_ckpt;       /* the checkpointer (sqlite_checkpoint.c) */

typedef struct sq_store {
    otp_store base;
    char *path;
    uint64_t serial; /* unique per open, never reused: keys the per-thread reader cache */
    int max_batch;

    /* The write connection: used by the opening thread until the writer thread
     * starts, then only by the writer thread. */
    sqlite3 *wdb;
    sqlite3_stmt *w[W__COUNT];

    /* The queue of submitted txns, linked through txn->next. */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    bool sync_init; /* qlock, qcond and rlock are initialised */
    otp_txn *qhead, *qtail;
    bool closing;     /* set by close(): submit() refuses, the writer drains and exits */
    bool writer_idle; /* the writer waits on qcond */
    bool paused;      /* test hook: the writer leaves the queue alone */
    /* Test hook: called on the writer before each txn runs. */
    void (*test_before_txn)(void *arg, otp_txn *t);
    void *test_before_txn_arg;
    uint64_t batches, batched_txns, replays; /* counters, under qlock */
    /* Each batch's COMMIT time (store.h's otp_commit_stats), written by the
     * writer only, read by /metrics. */
    atomic_uint_fast64_t commit_buckets[OTP_COMMIT_BUCKETS + 1], commit_sum_us;
    pthread_t writer;
    bool writer_started;

    /* Every read connection ever opened on this store, for close(). */
    pthread_mutex_t rlock;
    sq_reader *readers;

    atomic_int fail_commits; /* test hook: make the next N commits fail */

    /* Pumping-rule counters not yet in the traffic table: writer thread only. */
    sq_traffic *traffic;

    sq_ckpt *ckpt; /* the checkpointer thread, its connection and the WAL hook's state */
} sq_store;

/* Copies text column col (NULL reads as "") into dst of size n, truncating. */
static inline void sq_col_text(sqlite3_stmt *st, int col, char *dst, size_t n)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    size_t len = v ? (size_t)sqlite3_column_bytes(st, col) : 0;
    if (len >= n)
        len = n - 1;
    if (len)
        memcpy(dst, v, len);
    dst[len] = '\0';
}

/* SQLite result code → store error: transient conditions (busy, locked, I/O,
 * disk full, cannot open) are OTP_E_UNAVAILABLE, everything else OTP_E_INTERNAL. */
otp_err sq_err(int rc);

/* ---- sqlite_schema.c ---- */

/* Opens s->wdb on s->path, sets the pragmas and brings the schema to
 * OTP_SCHEMA_VERSION if opt->migrate (one transaction per migration), or checks
 * that it is there. Returns 0; or -1 with a one-line reason in err (s->wdb may
 * then be open: the caller closes it). */
int sq_schema_open(sq_store *s, bool migrate, char *err, size_t errlen);
/* The SQL of migration `version` (1-based), or NULL (tests build old schemas). */
const char *sq_migration_sql(int version);
/* Sets the pragmas every connection needs (busy timeout, extended codes). */
void sq_conn_setup(sqlite3 *db);

/* ---- sqlite_txn.c ---- */

/* The outbox claim query (exposed for the test of its query plan). */
extern const char sq_outbox_due_sql[];
/* The delivery report's message lookup and the purge of old requests (the same). */
extern const char sq_dlr_lookup_sql[];
extern const char sq_purge_requests_sql[];
/* The blocks lookup of every send (abuse_pre), also for its query plan test. */
extern const char sq_block_find_sql[];
/* A credit's lookup of its reference, for its query plan test. */
extern const char sq_credit_find_sql[];
/* Prepares s->w[]. Returns 0, or -1 with a reason in err. */
int sq_txn_prepare(sq_store *s, char *err, size_t errlen);
/* Runs one txn's body inside the batch transaction. Returns the txn's outcome.
 * *ret_keep says whether its writes must be kept: true on OTP_OK and on a
 * business error that consumed something (a wrong guess uses an attempt), false
 * when nothing of the txn may be stored. The contract that lets sqlite.c skip
 * savepoints: when *ret_keep is false, the body has written nothing — business
 * errors are decided before the first write — unless an SQL statement failed
 * after an earlier one of the same txn succeeded (then the caller replays the
 * batch with savepoints). */
otp_err sq_txn_run(sq_store *s, otp_txn *t, bool *ret_keep);
/* Frees what a successful body allocated for the caller, when its batch then
 * failed to commit (the claim's messages). */
void sq_txn_discard(otp_txn *t);

/* ---- sqlite_checkpoint.c ---- */

/* WAL sizes (in pages, i.e. frames) that steer checkpoints; see sqlite_checkpoint.c.
 * Past SQ_CKPT_PAGES the writer wakes the checkpointer thread (then every
 * SQ_CKPT_PAGES more); past SQ_CKPT_RESTART_PAGES it lets the thread catch up
 * once, then checkpoints the last few frames itself so that the WAL starts
 * over; past SQ_CKPT_CAP_PAGES it checkpoints inline at every commit, as SQLite
 * would have (the backstop). Each restart costs the writer a small checkpoint
 * and an fdatasync of the database file, which every request in flight waits
 * for: at 16 x SQ_CKPT_PAGES (a 64 MiB WAL, journal_size_limit's size) there
 * are a quarter as many as at 4 x, which took verify's p99 at 64 connections
 * from 46-87 ms to 8.5-30 ms in alternated benchmark runs
 * (docs/performance.md). */
#define SQ_CKPT_PAGES 1000
#define SQ_CKPT_RESTART_PAGES (16 * SQ_CKPT_PAGES)
#define SQ_CKPT_CAP_PAGES (64 * SQ_CKPT_PAGES)

/* Opens the checkpointer's connection on s->path, installs the WAL hook on
 * s->wdb (replacing SQLite's automatic checkpoint) and starts the thread.
 * Call before the writer thread starts. Returns 0, or -1 with a reason in err
 * (then sq_ckpt_stop() frees what was made). */
int sq_ckpt_start(sq_store *s, char *err, size_t errlen);
/* Removes the WAL hook, stops and joins the thread (after its current
 * checkpoint), closes its connection. Call after the writer thread has been
 * joined. Does nothing if s->ckpt is NULL. */
void sq_ckpt_stop(sq_store *s);

/* ---- sqlite_vfs.c ---- */

/* The VFSes of the read-write connections: SQLite's default one, plus, for
 * the checkpointer, a start of writeback (sync_file_range) after every
 * SQ_VFS_WRITEBACK_BYTES written to the database file, so that a checkpoint's
 * pages reach the disk as a trickle instead of a burst at its fsync
 * (PostgreSQL's checkpoint_flush_after, same size); for the writer, a
 * commit's WAL writes gathered into pwrites of up to SQ_VFS_WAL_BUFFER bytes
 * (needs synchronous=FULL: see sqlite_vfs.c). */
typedef enum { SQ_VFS_WRITER, SQ_VFS_CHECKPOINTER } sq_vfs_role;
#define SQ_VFS_WRITEBACK_BYTES (256 * 1024)
/* Below 128 KiB: the unix VFS takes at most 0x1ffff bytes per write (it masks
 * the length), so a 190 KiB batch commit goes out as two writes. */
#define SQ_VFS_WAL_BUFFER (124 * 1024)
/* Registers the VFSes (once; never the default) and returns the name of the
 * role's, or NULL if the default VFS cannot carry them. */
const char *sq_vfs(sq_vfs_role role);
/* sqlite3_open_v2() of path on the role's VFS; if that VFS is missing or the
 * open fails (a nolock=1 file, say), on the default VFS instead. */
int sq_vfs_open(const char *path, sqlite3 **db, int flags, sq_vfs_role role);
/* Test hooks, counts in this process: writeback starts, gathered WAL writes. */
uint64_t sq_vfs_writeback_starts(void);
uint64_t sq_vfs_wal_writes(void);

/* ---- sqlite_pcache.c ---- */

/* Installs SQLite's default page cache behind a layer that keeps the page
 * number b-tree balancing borrows (the pending-byte page) out of it, so that
 * a commit's cache truncation does not walk the whole cache (see
 * sqlite_pcache.c). Once per process, before SQLite initializes; true if
 * installed (false: SQLite was already initialized, the default stays). */
bool sq_pcache_install(void);
/* Test hook: pages filed under the borrowed number so far, in this process. */
uint64_t sq_pcache_parked(void);

/* ---- sqlite_traffic.c ---- */

/* The pumping rule's per-minute counters are kept in the writer's memory and
 * written to the traffic table in bulk, at most once per second, inside a
 * batch (see sqlite_traffic.c). sq_txn_prepare() opens them;
 * sq_traffic_close() writes what is left in
 * a transaction of its own and frees them: call it after the writer thread
 * has been joined, before the statements are finalized (nothing if not open). */
int sq_traffic_open(sq_store *s);
void sq_traffic_close(sq_store *s);
/* After every txn body (sq_txn_run): keeps or drops the txn's increments and,
 * with keep, writes the committed ones when a second has passed since the last
 * time. */
void sq_traffic_txn_end(sq_store *s, bool keep);
/* After every attempt at a batch (try_batch): committed, or undone. */
void sq_traffic_batch_end(sq_store *s, bool committed);
/* Adds to (account, scope, minute) for the running txn. OTP_OK, or
 * OTP_E_INTERNAL when memory is short. */
otp_err sq_traffic_add(sq_store *s, int64_t account, const char *scope, int64_t minute, int sends,
                       int verifies);
/* The increments of (account, scope) in minutes [from, to) not (yet) in the
 * table as this txn sees it: add them to the table's sums. */
void sq_traffic_pending(sq_store *s, int64_t account, const char *scope, int64_t from, int64_t to,
                        int64_t *ret_sends, int64_t *ret_verifies);
/* The table's sums of (account, scope) in minutes [from, to) as the writer
 * last read them, kept up to date (sqlite_traffic.c, "window sums"): true
 * with them set, false if not known (read them and sq_traffic_sum_keep()). */
bool sq_traffic_sum_known(sq_store *s, int64_t account, const char *scope, int64_t from, int64_t to,
                          int64_t *ret_sends, int64_t *ret_verifies);
void sq_traffic_sum_keep(sq_store *s, int64_t account, const char *scope, int64_t from, int64_t to,
                         int64_t sends, int64_t verifies);
/* The table's rows changed other than through the flush (the purge): forgets
 * every sum kept. */
void sq_traffic_sums_forget(sq_store *s);

/* ---- sqlite_read.c ---- */

/* Queries of the read side whose plans the tests check. */
extern const char sq_key_lookup_sql[];
extern const char sq_ledger_sql[];
extern const char sq_test_inbox_sql[];

int sq_schema_version(otp_store *s);
otp_err sq_key_lookup(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN], otp_key_auth *ret);
otp_err sq_account_find(otp_store *s, const char *id_or_name, otp_account *ret);
otp_err sq_account_get(otp_store *s, int64_t account_id, otp_account *ret);
otp_err sq_account_list(otp_store *s, otp_account_cb cb, void *ctx);
otp_err sq_key_list(otp_store *s, int64_t account_id, otp_key_cb cb, void *ctx);
otp_err sq_account_stats(otp_store *s, int64_t account_id, otp_account_stats *ret);
otp_err sq_outbox_depth(otp_store *s, int64_t *ret_queued, int64_t *ret_sending);
otp_err sq_request_get(otp_store *s, int64_t account_id, const char *request_id,
                       otp_request_info *ret);
otp_err sq_request_messages(otp_store *s, int64_t account_id, const char *request_id,
                            otp_message_cb cb, void *ctx);
otp_err sq_request_status(otp_store *s, int64_t account_id, bool test, const char *request_id,
                          otp_request_info *ret, otp_message_cb cb, void *ctx);
otp_err sq_message_get(otp_store *s, int64_t account_id, const char *message_id,
                       otp_message_info *ret, otp_event_cb cb, void *ctx);
otp_err sq_ledger_list(otp_store *s, int64_t account_id, int64_t before_id, int limit,
                       otp_ledger_cb cb, void *ctx);
otp_err sq_template_find(otp_store *s, int64_t account_id, const char *id_or_name,
                         otp_template *ret);
otp_err sq_template_list(otp_store *s, int64_t account_id, otp_template_cb cb, void *ctx);
otp_err sq_test_inbox(otp_store *s, int64_t account_id, const char *phone, int limit,
                      otp_test_message_cb cb, void *ctx);
otp_err sq_limits_get(otp_store *s, int64_t account_id, char *buf, size_t n);
otp_err sq_block_list(otp_store *s, int64_t account_id, int64_t now_ms, otp_block_cb cb, void *ctx);
otp_err sq_admin_key_lookup(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN],
                            otp_admin_key *ret);
otp_err sq_admin_key_list(otp_store *s, otp_admin_key_cb cb, void *ctx);
/* Finalizes and closes every read connection of s (at close; no reader may run). */
void sq_readers_close(sq_store *s);

/* ---- test hooks (sqlite.c), only in a -Dtest_hooks=true build ---- */
#if OTPD_TEST_HOOKS
/* While paused, the writer thread leaves queued txns alone (close() still
 * drains them), so a test can put many txns into one batch. */
void otp_sqlite_test_pause(otp_store *s, bool paused);
/* fn(arg, txn) runs on the writer thread before each txn of a batch (NULL:
 * nothing), again for each when a batch is replayed; set and clear it only
 * while no batch runs. */
void otp_sqlite_test_before_txn(otp_store *s, void (*fn)(void *arg, otp_txn *t), void *arg);
/* The next n COMMITs of batches fail (through a commit hook, so SQLite rolls
 * them back for real). */
void otp_sqlite_test_fail_commits(otp_store *s, int n);
/* Batches committed or failed so far, the txns they held, and how many batches
 * were run a second time with savepoints. */
void otp_sqlite_test_counters(otp_store *s, uint64_t *ret_batches, uint64_t *ret_txns,
                              uint64_t *ret_replays);
/* The pumping counters are written at most every ms (default 1000; 0 = at the
 * end of the first kept txn of every batch). */
void otp_sqlite_test_traffic_flush_ms(otp_store *s, int ms);

/* What the checkpointer and the writer's WAL hook have done (sqlite_checkpoint.c). */
typedef struct otp_sqlite_ckpt_counters {
    uint64_t thread_started; /* checkpoints begun by the checkpointer thread */
    uint64_t thread_runs;    /* ... and finished */
    uint64_t thread_busy;    /* of those, how many found another checkpoint running */
    uint64_t idle_runs;      /* of those, how many the 1 s idle timer started */
    uint64_t wakes;          /* times the writer woke the thread */
    uint64_t tails;          /* the writer's inline checkpoints of the last frames (WAL restart) */
    uint64_t backstops;      /* the writer's inline checkpoints past SQ_CKPT_CAP_PAGES */
    uint64_t restarts;       /* times the writer saw the WAL start over */
    uint64_t errors;         /* checkpoints failing other than busy */
    uint64_t commits;        /* commits seen by the WAL hook */
    uint64_t clean_commits;  /* of those, how many the thread's last complete checkpoint covers */
    int pages;               /* WAL size after the last commit, in pages */
    int max_pages;           /* the largest WAL size seen after a commit */
} otp_sqlite_ckpt_counters;
void otp_sqlite_test_ckpt_counters(otp_store *s, otp_sqlite_ckpt_counters *ret);
/* While paused, the checkpointer thread runs no checkpoint (wakes are kept). */
void otp_sqlite_test_ckpt_pause(otp_store *s, bool paused);
/* The thread sleeps ms inside each checkpoint run, before checkpointing. */
void otp_sqlite_test_ckpt_delay(otp_store *s, int ms);
#endif

#endif
