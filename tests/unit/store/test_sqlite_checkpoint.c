/* tests/unit/store/test_sqlite_checkpoint.c — the SQLite backend's checkpointer
 * (src/store/sqlite_checkpoint.c) on real database files in a mkdtemp directory.
 *
 * A sustained stream of sends through submit() (hundreds in flight, so the
 * writer never idles) keeps the WAL bounded with checkpoints run by the
 * checkpointer thread (through the store's VFS), not by the writer: the
 * thread ran, the WAL started over again and again, never reached the
 * backstop's cap, and every acknowledged
 * send is in the database after close and reopen. With the thread paused the
 * writer's backstop keeps the WAL near the cap. A quiet store is checkpointed
 * by the idle timer. close() while the thread is inside a checkpoint run is
 * clean (the WAL file is gone afterwards: every connection was closed). A
 * second store on the same file (as the CLI opens one) does not disturb the
 * first. The counters come from the test hooks (-Dtest_hooks=true); without
 * them only what the files and the data show is checked.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tmpdir.h"
#include "store/sqlite_internal.h"

#define T0 INT64_C(1700000000000)
#define IN_FLIGHT 512 /* txns submitted and not yet done: the writer always has a queue */

static char dir[] = "/tmp/otpd-ckpt-test-XXXXXX";
static unsigned db_counter;
static const uint8_t sealed[] = "sealed:123456 is your code";

/* ---- a stream of sends, IN_FLIGHT at a time ---- */

typedef struct stream stream;
typedef struct slot {
    otp_txn t;
    int index;
    stream *st;
    struct slot *next_free;
} slot;

struct stream {
    otp_store *s;
    int64_t acc;
    const char *tag; /* request ids are req_<tag><8 hex digits> */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    slot slots[IN_FLIGHT];
    slot *free;
    int in_flight, ok, failed;
    unsigned char *acked; /* acked[i]: send i was done with OTP_OK */
    int cap;
};

static void send_done(otp_txn *t)
{
    slot *sl = t->user;
    stream *st = sl->st;
    pthread_mutex_lock(&st->lock);
    if (t->err == OTP_OK) {
        st->ok++;
        st->acked[sl->index] = 1;
    } else {
        st->failed++;
    }
    st->in_flight--;
    sl->next_free = st->free;
    st->free = sl;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
}

static void stream_init(stream *st, otp_store *s, int64_t acc, const char *tag, int cap)
{
    memset(st, 0, sizeof(*st));
    st->s = s;
    st->acc = acc;
    st->tag = tag;
    st->cap = cap;
    st->acked = calloc((size_t)cap, 1);
    assert_non_null(st->acked);
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
    for (int i = IN_FLIGHT - 1; i >= 0; i--) {
        st->slots[i].st = st;
        st->slots[i].next_free = st->free;
        st->free = &st->slots[i];
    }
}

static void stream_free(stream *st)
{
    free(st->acked);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
}

/* The request id of send i: spread over the id space (i times an odd constant
 * is a bijection mod 2^32), as real random ids are, so that each batch touches
 * pages all over the id indexes, not only their last page. */
static void request_id(char *id, const stream *st, int i)
{
    snprintf(id, OTP_ID_SIZE, "req_%s%08x", st->tag, (uint32_t)i * 2654435761u);
}

/* Submits send number i (waits for a free slot first). */
static void stream_send(stream *st, int i)
{
    assert_true(i < st->cap);
    pthread_mutex_lock(&st->lock);
    while (!st->free)
        pthread_cond_wait(&st->cond, &st->lock);
    slot *sl = st->free;
    st->free = sl->next_free;
    st->in_flight++;
    pthread_mutex_unlock(&st->lock);

    memset(&sl->t, 0, sizeof(sl->t));
    sl->index = i;
    sl->t.kind = OTP_TXN_SEND;
    sl->t.done = send_done;
    sl->t.user = sl;
    otp_txn_send *x = &sl->t.u.send;
    x->account_id = st->acc;
    request_id(x->request_id, st, i);
    snprintf(x->message_id, OTP_ID_SIZE, "msg_%s", x->request_id + 4);
    snprintf(x->phone, OTP_PHONE_SIZE, "+9198%08d", i);
    for (int k = 0; k < OTP_CODE_HASH_LEN; k++)
        x->code_hash[k] = (uint8_t)(i * 31 + k);
    x->code_length = 6;
    x->max_attempts = 3;
    x->expires_in_s = 600;
    x->now_ms = T0 + i;
    x->expires_at_ms = T0 + i + 600000;
    x->segments = 1;
    x->sealed_text = sealed;
    x->sealed_text_len = sizeof(sealed) - 1;
    st->s->ops->submit(st->s, &sl->t);
}

static void stream_drain(stream *st)
{
    pthread_mutex_lock(&st->lock);
    while (st->in_flight > 0)
        pthread_cond_wait(&st->cond, &st->lock);
    pthread_mutex_unlock(&st->lock);
}

/* ---- files and stores ---- */

static void fresh_path(char *path, size_t n)
{
    snprintf(path, n, "%s/db-%u.sqlite", dir, db_counter++);
}

static otp_store *open_store(const char *path, bool migrate)
{
    char url[600];
    int k = snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_true(k > 0 && (size_t)k < sizeof(url));
    otp_store_options opt = {.migrate = migrate};
    otp_store *s = NULL;
    char err[256] = "";
    if (otp_store_open(url, &opt, &s, err, sizeof(err)) != 0)
        print_error("open %s: %s\n", url, err);
    assert_non_null(s);
    return s;
}

/* An account named name with a balance far above what the tests spend. */
static int64_t make_account(otp_store *s, const char *name)
{
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_CREATE};
    snprintf(t.u.account_create.public_id, OTP_ID_SIZE, "acc_%s", name);
    snprintf(t.u.account_create.name, OTP_NAME_SIZE, "%s", name);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    int64_t acc = t.u.account_create.ret_id;
    memset(&t, 0, sizeof(t));
    t.kind = OTP_TXN_WALLET_CREDIT;
    t.u.wallet_credit.account_id = acc;
    t.u.wallet_credit.amount = INT64_C(100000000000);
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    return acc;
}

/* Size of the file at path plus suffix, or -1 if there is none. */
static long long file_size(const char *path, const char *suffix)
{
    char p[700];
    snprintf(p, sizeof(p), "%s%s", path, suffix);
    struct stat sb;
    return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* The largest a WAL file of `pages` frames can be (4 KiB pages, the default). */
static long long wal_bytes(int pages)
{
    return 32 + (long long)pages * (4096 + 24);
}

/* Opens path directly and checks that every acked send of st is there, and that
 * the store holds no send that was not acked. */
static void check_acked(const char *path, const stream *st, int sent)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *one = NULL, *all = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM otp_requests r JOIN messages m"
                                        " ON m.request_id = r.id WHERE r.public_id = ?1",
                                        -1, &one, NULL),
                     SQLITE_OK);
    int missing = 0;
    for (int i = 0; i < sent; i++) {
        if (!st->acked[i])
            continue;
        char id[OTP_ID_SIZE];
        request_id(id, st, i);
        sqlite3_bind_text(one, 1, id, -1, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(one), SQLITE_ROW);
        missing += sqlite3_column_int(one, 0) != 1;
        sqlite3_reset(one);
    }
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM otp_requests WHERE public_id LIKE 'req_%s%%'",
             st->tag);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &all, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(all), SQLITE_ROW);
    int stored = sqlite3_column_int(all, 0);
    sqlite3_finalize(one);
    sqlite3_finalize(all);
    sqlite3_close(db);
    assert_int_equal(missing, 0);
    assert_int_equal(stored, st->ok);
}

#if OTPD_TEST_HOOKS
static void print_counters(const char *what, const otp_sqlite_ckpt_counters *c)
{
    print_message("%s: thread %llu runs (%llu busy, %llu idle), %llu wakes, writer %llu tails "
                  "%llu backstops, %llu restarts, %llu errors, WAL max %d pages\n",
                  what, (unsigned long long)c->thread_runs, (unsigned long long)c->thread_busy,
                  (unsigned long long)c->idle_runs, (unsigned long long)c->wakes,
                  (unsigned long long)c->tails, (unsigned long long)c->backstops,
                  (unsigned long long)c->restarts, (unsigned long long)c->errors, c->max_pages);
}

/* Polls cond(s) for up to ms; returns whether it became true. */
static bool wait_for(otp_store *s, bool (*cond)(const otp_sqlite_ckpt_counters *), int ms)
{
    for (int waited = 0;; waited += 10) {
        otp_sqlite_ckpt_counters c;
        otp_sqlite_test_ckpt_counters(s, &c);
        if (cond(&c))
            return true;
        if (waited >= ms)
            return false;
        struct timespec t = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
        nanosleep(&t, NULL);
    }
}
#endif

/* ---- tests ---- */

/* Tens of thousands of sends, IN_FLIGHT at a time: the WAL stays bounded by
 * the thread's checkpoints (and the writer's small tails), the backstop never
 * fires, and every acknowledged send survives close and reopen. */
static void t_stream_bounded_wal(void **state)
{
    enum { N = 60000 }; /* ~0.9 WAL pages per send: past SQ_CKPT_RESTART_PAGES 3 times */
    char path[600];
    fresh_path(path, sizeof(path));
    otp_store *s = open_store(path, true);
    stream st;
    stream_init(&st, s, make_account(s, "stream"), "s", N);
    uint64_t writeback_before = sq_vfs_writeback_starts();
    long long max_wal = 0;
    for (int i = 0; i < N; i++) {
        stream_send(&st, i);
        if (i % 500 == 0) {
            long long w = file_size(path, "-wal");
            if (w > max_wal)
                max_wal = w;
        }
    }
    stream_drain(&st);
    long long w = file_size(path, "-wal");
    if (w > max_wal)
        max_wal = w;
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.ok, N);
    /* The thread's checkpoints went through the store's VFS (sqlite_vfs.c). */
    assert_true(sq_vfs_writeback_starts() > writeback_before);
#if OTPD_TEST_HOOKS
    otp_sqlite_ckpt_counters c;
    otp_sqlite_test_ckpt_counters(s, &c);
    print_counters("stream", &c);
    assert_true(c.wakes > 0);
    assert_true(c.thread_runs > 0);   /* the thread checkpointed ... */
    assert_int_equal(c.backstops, 0); /* ... so the writer never had to */
    assert_int_equal(c.errors, 0);
    assert_true(c.restarts >= 2); /* the WAL started over, again and again */
    assert_true(c.max_pages < SQ_CKPT_CAP_PAGES);
#endif
    print_message("stream: WAL file at most %lld bytes\n", max_wal);
    assert_true(max_wal > 0);
    assert_true(max_wal <= wal_bytes(SQ_CKPT_CAP_PAGES));
    otp_store_close(s);
    assert_int_equal(file_size(path, "-wal"), -1); /* every connection closed */
    /* Reopened: every acknowledged send is there. */
    s = open_store(path, false);
    otp_store_close(s);
    check_acked(path, &st, N);
    stream_free(&st);
}

#if OTPD_TEST_HOOKS
static bool backstopped_and_restarted(const otp_sqlite_ckpt_counters *c)
{
    return c->backstops >= 1 && c->restarts >= 1;
}

/* With the thread held back, the WAL grows to the cap; there the writer
 * checkpoints inline (the backstop), the WAL starts over, and it never grows far
 * past the cap. Once the thread runs again, it takes over. */
static void t_backstop_when_thread_behind(void **state)
{
    enum { MAX = 150000 };
    char path[600];
    fresh_path(path, sizeof(path));
    otp_store *s = open_store(path, true);
    stream st;
    stream_init(&st, s, make_account(s, "behind"), "b", MAX);
    otp_sqlite_test_ckpt_pause(s, true);
    otp_sqlite_ckpt_counters c;
    int i = 0;
    /* Until the backstop has fired and the WAL has started over (the cap
     * reached), in steps of 1000 sends. */
    do {
        for (int k = 0; k < 1000 && i < MAX; k++, i++)
            stream_send(&st, i);
        stream_drain(&st);
        otp_sqlite_test_ckpt_counters(s, &c);
    } while (!backstopped_and_restarted(&c) && i < MAX);
    print_counters("behind", &c);
    assert_true(backstopped_and_restarted(&c));
    assert_int_equal(c.thread_started, 0); /* paused: only the writer checkpointed */
    assert_int_equal(c.tails, 0);          /* no tail without the thread's catch-up run */
    assert_true(c.max_pages >= SQ_CKPT_CAP_PAGES);
    assert_true(c.max_pages < SQ_CKPT_CAP_PAGES + SQ_CKPT_PAGES); /* one batch past it */
    assert_true(file_size(path, "-wal") <= wal_bytes(SQ_CKPT_CAP_PAGES + SQ_CKPT_PAGES));

    /* Released, the thread does the work again: its wakes were kept. */
    otp_sqlite_test_ckpt_pause(s, false);
    uint64_t backstops = c.backstops;
    for (int k = 0; k < 8000 && i < MAX; k++, i++)
        stream_send(&st, i);
    stream_drain(&st);
    otp_sqlite_test_ckpt_counters(s, &c);
    print_counters("released", &c);
    assert_true(c.thread_runs > 0);
    assert_int_equal(c.errors, 0);
    assert_int_equal(c.backstops, backstops);
    assert_int_equal(st.failed, 0);
    otp_store_close(s);
    check_acked(path, &st, i);
    stream_free(&st);
}

/* The idle timer ran, and a complete checkpoint of the thread covers every
 * commit so far (the timer may also have fired between the first commits). */
static bool idle_clean(const otp_sqlite_ckpt_counters *c)
{
    return c->idle_runs >= 1 && c->clean_commits == c->commits;
}

/* A few commits, far below the wake size, then quiet: the idle timer
 * checkpoints them, and the next write starts the WAL over. */
static void t_idle_checkpoint(void **state)
{
    char path[600];
    fresh_path(path, sizeof(path));
    otp_store *s = open_store(path, true);
    stream st;
    stream_init(&st, s, make_account(s, "idle"), "i", 100);
    for (int i = 0; i < 20; i++) {
        stream_send(&st, i);
        stream_drain(&st); /* one commit each */
    }
    otp_sqlite_ckpt_counters c0, c;
    otp_sqlite_test_ckpt_counters(s, &c0);
    assert_true(c0.pages > 0 && c0.pages < SQ_CKPT_PAGES);
    assert_int_equal(c0.wakes, 0);
    assert_true(c0.commits >= 20);
    assert_true(wait_for(s, idle_clean, 5000));
    stream_send(&st, 20);
    stream_drain(&st);
    otp_sqlite_test_ckpt_counters(s, &c);
    print_counters("idle", &c);
    assert_int_equal(c.wakes, 0);
    assert_int_equal(c.errors, 0);
    assert_true(c.restarts > c0.restarts); /* it started over ... */
    assert_true(c.pages < c0.pages);       /* ... at the beginning */
    assert_int_equal(st.ok, 21);
    otp_store_close(s);
    check_acked(path, &st, 21);
    stream_free(&st);
}

static bool mid_run(const otp_sqlite_ckpt_counters *c)
{
    return c->thread_started > c->thread_runs;
}

/* close() while the thread is inside a run (held there 500 ms by the test
 * hook, with frames to checkpoint) waits for it, then closes everything: the
 * WAL file is gone and every send is in the database. */
static void t_close_mid_checkpoint(void **state)
{
    char path[600];
    fresh_path(path, sizeof(path));
    otp_store *s = open_store(path, true);
    stream st;
    stream_init(&st, s, make_account(s, "close"), "c", 3000);
    otp_sqlite_test_ckpt_delay(s, 500);
    for (int i = 0; i < 3000; i++)
        stream_send(&st, i); /* past SQ_CKPT_PAGES: wakes the thread */
    stream_drain(&st);
    assert_true(wait_for(s, mid_run, 5000));
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    otp_store_close(s);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (long)(b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    print_message("close mid-run: %ld ms\n", ms);
    assert_int_equal(file_size(path, "-wal"), -1);
    assert_int_equal(file_size(path, "-shm"), -1);
    assert_int_equal(st.ok, 3000);
    check_acked(path, &st, 3000);
    stream_free(&st);
}
#endif

/* A second store on the same file, as the CLI opens while the server runs:
 * both write, both have a checkpointer, the first goes on after the second
 * closes, and nothing is lost. */
static void t_second_store_same_file(void **state)
{
    char path[600];
    fresh_path(path, sizeof(path));
    otp_store *a = open_store(path, true);
    stream sa, sb;
    stream_init(&sa, a, make_account(a, "server"), "a", 6000);
    for (int i = 0; i < 3000; i++)
        stream_send(&sa, i);
    otp_store *b = open_store(path, false);
    stream_init(&sb, b, make_account(b, "cli"), "c", 1500);
    for (int i = 0; i < 1500; i++)
        stream_send(&sb, i);
    stream_drain(&sb);
    otp_store_close(b);
    for (int i = 3000; i < 6000; i++)
        stream_send(&sa, i);
    stream_drain(&sa);
#if OTPD_TEST_HOOKS
    otp_sqlite_ckpt_counters c;
    otp_sqlite_test_ckpt_counters(a, &c);
    print_counters("two stores", &c);
    assert_int_equal(c.errors, 0);
    assert_int_equal(c.backstops, 0);
#endif
    assert_int_equal(sa.ok, 6000);
    assert_int_equal(sb.ok, 1500);
    otp_store_close(a);
    assert_int_equal(file_size(path, "-wal"), -1);
    check_acked(path, &sa, 6000);
    check_acked(path, &sb, 1500);
    stream_free(&sa);
    stream_free(&sb);
}

int main(void)
{
    if (tmpdir_make(dir) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_stream_bounded_wal),
#if OTPD_TEST_HOOKS
        cmocka_unit_test(t_backstop_when_thread_behind),
        cmocka_unit_test(t_idle_checkpoint),
        cmocka_unit_test(t_close_mid_checkpoint),
#endif
        cmocka_unit_test(t_second_store_same_file),
    };
    int failed = cmocka_run_group_tests_name("store_sqlite_checkpoint", tests, NULL, NULL);
    tmpdir_remove(dir);
    return failed ? 1 : 0;
}
