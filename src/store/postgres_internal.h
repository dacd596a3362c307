/* store/postgres_internal.h — private to the PostgreSQL backend
 * (src/store/postgres*.c) and to its unit tests. Nothing outside src/store/ and
 * tests/unit/store/ may include it: libpq types must not leak past store.h.
 *
 * The backend is split in four files: postgres.c (the connection pool, the
 * worker threads that run txns, open and close, the statement table and the
 * error mapping), postgres_schema.c (versioned migrations, including the
 * server-side functions), postgres_txn.c (the body of every write txn) and
 * postgres_read.c (the read calls).
 */
#ifndef OTP_STORE_POSTGRES_INTERNAL_H
#define OTP_STORE_POSTGRES_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "otpd_config.h"
#include "store/store.h"

#define PG_DEFAULT_POOL 8
#define PG_DEFAULT_READERS 4
#define PG_MAX_POOL 256
#define PG_MAX_PARAMS 32
/* A txn that lost a deadlock or a serialization check was rolled back whole by
 * PostgreSQL, so it is safe to run again; after this many tries it fails. */
#define PG_MAX_TRIES 3
/* SQLSTATE of the business errors the server-side functions raise; the error's
 * message is the otp_err code ("insufficient_balance"), its detail a number
 * where one is needed (retry_after_s). Raising rolls the txn back whole. */
#define PG_SQLSTATE_OTP "OTP01"

/* Every statement the backend runs, prepared once per connection on first use. */
typedef enum {
    /* writes (postgres_txn.c) */
    S_SEND,
    S_VERIFY_LOCK,
    S_VERIFY_SET,
    S_PHONE_LOCK,
    S_PHONES_LOCK,
    S_ACCOUNT_LOCK,
    S_PHONE_STATE_GET,
    S_PHONE_STATE_PUT,
    S_TRAFFIC_ADD,
    S_KEY_TOUCH,
    S_ACCOUNT_INSERT,
    S_KEY_INSERT,
    S_KEY_REVOKE,
    S_CREDIT,
    S_CLAIM,
    S_REPORT,
    S_RESEND,
    S_CANCEL,
    S_ACCOUNT_SET,
    S_TPL_ADD,
    S_TPL_REMOVE,
    S_TPL_DEFAULT,
    S_DLR,
    S_PURGE,
    S_KEY_BUCKETS_PURGE,
    S_ADMIN_KEY_INSERT,
    S_ADMIN_KEY_REVOKE,
    /* reads (postgres_read.c) */
    S_VERSION,
    S_KEY_LOOKUP,
    S_ACC_FIND,
    S_ACC_BY_ID,
    S_ACC_LIST,
    S_KEY_LIST,
    S_STATS,
    S_OUTBOX_DEPTH,
    S_REQ_GET,
    S_REQ_MESSAGES,
    S_REQ_STATUS,
    S_MSG_GET,
    S_LEDGER,
    S_TPL_FIND,
    S_TPL_GET_DEFAULT,
    S_TPL_LIST,
    S_TEST_INBOX,
    S_LIMITS_GET,
    S_KEY_TAKE,
    S_BLOCKS,
    S_ADMIN_KEY_LOOKUP,
    S_ADMIN_KEY_LIST,
    S__COUNT
} pg_stmt;

/* One connection and which statements it has prepared. */
typedef struct pg_conn {
    PGconn *conn;
    bool prepared[S__COUNT];
    /* SQLSTATE of the last failed statement ("" if none): the txn bodies read it
     * to tell a duplicate (23505) from a lost connection. */
    char sqlstate[6];
    struct pg_conn *next; /* free list of the read pool */
} pg_conn;

typedef struct pg_store {
    otp_store base;
    char *url; /* holds the password, if any: never printed */
    int pool_size;
    int read_threads; /* store.read_conns: the API's read threads (read_slots) */
    int max_readers;  /* read connections at most: theirs, and as many for the HTTP threads */

    /* The queue of submitted txns, linked through txn->next, served by
     * pool_size worker threads (one connection each). */
    pthread_mutex_t qlock;
    /* Idle workers wait on hot when they hold a connection, on cold when they
     * have none yet: work goes to a connected worker first, so the pool opens
     * only as many connections as txns ever ran at once. */
    pthread_cond_t hot, cold;
    int idle_hot, idle_cold;
    bool sync_init;
    otp_txn *qhead, *qtail;
    bool closing;
    bool paused;                    /* test hook: workers leave the queue alone */
    int group;                      /* test hook: txns at the head to run in order by one worker */
    uint64_t batches, batched_txns; /* dequeues and the txns they took, under qlock */
    int64_t *busy; /* lanes a worker is running: accounts (live sends), minus them (verifies) */
    int n_busy;
    pthread_t *workers;
    int n_workers;

    /* The read pool: idle connections, opened on demand up to max_readers. */
    pthread_mutex_t rlock;
    pthread_cond_t rcond;
    pg_conn *rfree;
    int n_readers; /* open, idle or in use */
} pg_store;

/* ---- parameters of a statement ---- */

typedef struct pg_params {
    int n;
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];  /* storage of formatted integers */
    char lim[256];                /* the abuse limits as a bigint[] literal */
    char prefix[OTP_PREFIX_SIZE]; /* the number's prefix (pumping rule) */
    char region[3];               /* the number's region */
} pg_params;

void pg_p_int(pg_params *p, int64_t v);
void pg_p_bool(pg_params *p, bool v);
void pg_p_text(pg_params *p, const char *v);            /* as given; NULL = SQL NULL */
void pg_p_text_opt(pg_params *p, const char *v);        /* NULL or "" = SQL NULL */
void pg_p_bytea(pg_params *p, const void *v, size_t n); /* binary; NULL = SQL NULL */
void pg_p_null(pg_params *p);

/* ---- postgres.c ---- */

/* in as valid UTF-8 (PostgreSQL refuses anything else): in itself when it is,
 * else a copy in buf (size bytes, truncated) with each invalid byte replaced
 * by '?'. */
const char *pg_clean_utf8(const char *in, char *buf, size_t size);
bool pg_utf8_valid(const char *s);

/* Opens a connection to url. Returns it, or NULL with a one-line reason in err
 * (never the URL itself: it may hold a password). */
pg_conn *pg_connect(const char *url, char *err, size_t errlen);
void pg_disconnect(pg_conn *c); /* accepts NULL */
/* Prepares statement i on c if it is not yet. Returns 0, or -1 (c->sqlstate set). */
int pg_prepare(pg_conn *c, pg_stmt i);
/* Runs statement i with p (may be NULL: no parameters), text results. Returns the
 * result (PQclear it) — also on error — or NULL if not even that was possible.
 * Sets c->sqlstate. */
PGresult *pg_run(pg_conn *c, pg_stmt i, const pg_params *p);
/* Remembers the SQLSTATE of failed result r in c->sqlstate ("08000" when there
 * is none: libpq reports a lost connection without one). */
void pg_note_state(pg_conn *c, const PGresult *r);
/* OTP_OK for a result that succeeded; for a failed one the store error it
 * stands for: a business error raised by a function (PG_SQLSTATE_OTP),
 * OTP_E_UNAVAILABLE for a lost connection or an overloaded server, else
 * OTP_E_INTERNAL. */
otp_err pg_result_err(const pg_conn *c, const PGresult *r);
/* The otp_err named by code ("insufficient_balance"), OTP_E_INTERNAL if none. */
otp_err pg_err_by_code(const char *code);
/* Whether the last failure of c was a deadlock or serialization failure. */
bool pg_retryable(const pg_conn *c);
/* Borrows a read connection (waits while all are busy). NULL with *ret_err set
 * if none can be opened. */
pg_conn *pg_reader_get(pg_store *s, otp_err *ret_err);
void pg_reader_put(pg_store *s, pg_conn *c);

/* Text of column col of row (never NULL: "" for SQL NULL). */
const char *pg_text(const PGresult *r, int row, int col);
int64_t pg_int(const PGresult *r, int row, int col);
/* Copies text column col into dst of size n, truncating. */
void pg_copy(const PGresult *r, int row, int col, char *dst, size_t n);
/* Decodes a bytea column (text format) into a malloc'd buffer. Returns 0 with
 * *ret (NULL for SQL NULL or empty) and *ret_len, or -1 when out of memory. */
int pg_bytea(const PGresult *r, int row, int col, uint8_t **ret, size_t *ret_len);

/* ---- postgres_schema.c ---- */

/* Brings the schema of c's database to OTP_SCHEMA_VERSION if migrate (one
 * transaction per migration, under an advisory lock so that nodes starting
 * together migrate once), or checks that it is there. Returns 0, or -1 with a
 * one-line reason in err. */
int pg_schema_open(pg_conn *c, bool migrate, char *err, size_t errlen);
/* The parts of migration `version` (1-based), NULL-terminated, to be joined
 * into one script; or NULL (tests build old schemas). */
const char *const *pg_migration_parts(int version);

/* ---- postgres_txn.c ---- */

/* The SQL of the write statements, indexed by pg_stmt (NULL for the reads). */
extern const char *const pg_write_sql[S__COUNT];
/* Runs one txn on c (its own transaction). Returns the txn's outcome. */
otp_err pg_txn_run(pg_conn *c, otp_txn *t);
/* The most live SENDs of one account a worker commits together, and how far
 * down the queue it looks for them. */
#ifndef PG_BATCH_MAX /* -DPG_BATCH_MAX=1: no lanes, no batches (for measuring them) */
#define PG_BATCH_MAX 32
#endif
#define PG_BATCH_SCAN 256
/* Whether t is a SEND that may join a batch (a live key's: it debits). */
bool pg_send_batchable(const otp_txn *t);
/* Outcomes of pg_send_batch(). */
enum {
    PG_BATCH_COMMITTED,   /* committed: each txn has its own outcome */
    PG_BATCH_ROLLED_BACK, /* nothing of it was stored */
    PG_BATCH_LOST,        /* the connection broke: outcomes unknown (OTP_E_UNAVAILABLE) */
};
/* Runs the n live SENDs of one account in one transaction, in one round trip.
 * Sets each txn's err (and its outputs) to its final outcome, or sets
 * again[i]: the whole batch was rolled back (an SQL error in one of them), so
 * the txn left nothing behind and must run again alone. Returns how the batch
 * ended. */
int pg_send_batch(pg_conn *c, otp_txn **txns, size_t n, bool *again);
/* Whether t is a VERIFY that may join a batch. */
bool pg_verify_batchable(const otp_txn *t);
/* Runs n VERIFYs of one account, on n different requests, in one transaction
 * (two round trips), with pg_send_batch()'s outcomes. */
int pg_verify_batch(pg_conn *c, otp_txn **txns, size_t n, bool *again);
/* Frees what a txn body allocated for its caller (claimed messages, a replayed
 * response) before the txn is run again or failed. */
void pg_txn_discard(otp_txn *t);

/* ---- postgres_read.c ---- */

extern const char *const pg_read_sql[S__COUNT];

int pg_schema_version(otp_store *s);
otp_err pg_key_lookup(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN], otp_key_auth *ret);
otp_err pg_account_find(otp_store *s, const char *id_or_name, otp_account *ret);
otp_err pg_account_get(otp_store *s, int64_t account_id, otp_account *ret);
otp_err pg_account_list(otp_store *s, otp_account_cb cb, void *ctx);
otp_err pg_key_list(otp_store *s, int64_t account_id, otp_key_cb cb, void *ctx);
otp_err pg_account_stats(otp_store *s, int64_t account_id, otp_account_stats *ret);
otp_err pg_outbox_depth(otp_store *s, int64_t *ret_queued, int64_t *ret_sending);
otp_err pg_request_get(otp_store *s, int64_t account_id, const char *request_id,
                       otp_request_info *ret);
otp_err pg_request_messages(otp_store *s, int64_t account_id, const char *request_id,
                            otp_message_cb cb, void *ctx);
otp_err pg_request_status(otp_store *s, int64_t account_id, bool test, const char *request_id,
                          otp_request_info *ret, otp_message_cb cb, void *ctx);
otp_err pg_message_get(otp_store *s, int64_t account_id, const char *message_id,
                       otp_message_info *ret, otp_event_cb cb, void *ctx);
otp_err pg_ledger_list(otp_store *s, int64_t account_id, int64_t before_id, int limit,
                       otp_ledger_cb cb, void *ctx);
otp_err pg_template_find(otp_store *s, int64_t account_id, const char *id_or_name,
                         otp_template *ret);
otp_err pg_template_list(otp_store *s, int64_t account_id, otp_template_cb cb, void *ctx);
otp_err pg_test_inbox(otp_store *s, int64_t account_id, const char *phone, int limit,
                      otp_test_message_cb cb, void *ctx);
otp_err pg_limits_get(otp_store *s, int64_t account_id, char *buf, size_t n);
otp_err pg_key_take(otp_store *s, int64_t key_id, int rate, int burst, int want, int *ret_granted,
                    int64_t *ret_wait_ms);
otp_err pg_block_list(otp_store *s, int64_t account_id, int64_t now_ms, otp_block_cb cb, void *ctx);
otp_err pg_admin_key_lookup(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN],
                            otp_admin_key *ret);
otp_err pg_admin_key_list(otp_store *s, otp_admin_key_cb cb, void *ctx);

/* ---- test hooks (postgres.c), only in a -Dtest_hooks=true build ---- */
#if OTPD_TEST_HOOKS
/* While paused, the workers leave queued txns alone; when unpaused, the txns
 * that were queued run one after the other on one worker, in queue order (each
 * still its own transaction), so a test can reason about their order. close()
 * drains them either way. */
void otp_postgres_test_pause(otp_store *s, bool paused);
/* Holds queued txns like pause, but when released the workers take them as
 * they would have (live sends of one account in batches). */
void otp_postgres_test_hold(otp_store *s, bool held);
/* Dequeues so far and the txns they took (batches > txns/1 means batching). */
void otp_postgres_test_counters(otp_store *s, uint64_t *ret_batches, uint64_t *ret_txns);
#endif

#endif
