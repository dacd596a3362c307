/* store/sqlite_checkpoint.c — WAL checkpoints off the writer's commit path.
 *
 * In WAL mode a COMMIT appends pages (frames) to the -wal file and fsyncs it; a
 * checkpoint later copies them into the database file and fsyncs that. SQLite's
 * automatic checkpoint does it inside the COMMIT that takes the WAL past 1000
 * pages, so with one writer thread every request in flight waited for it (2.6-4.9
 * ms mean, 315 ms seen: docs/performance.md). Here the writer connection gets
 * its own WAL hook instead (sqlite3_wal_hook replaces the automatic checkpoint),
 * and a checkpointer thread with its own read-write connection to the same file
 * (synchronous=FULL, so its checkpoints are durable) runs
 * sqlite3_wal_checkpoint_v2(PASSIVE), which never waits for the writer or the
 * readers. A checkpoint only copies committed pages, so a txn is still done()
 * only after its COMMIT returned, exactly as before.
 *
 * The hook runs on the writer thread after every commit, inside COMMIT, and is
 * told the WAL's size in pages. Past SQ_CKPT_PAGES it wakes the thread (then
 * again every SQ_CKPT_PAGES more): an atomic flag, and a signal only when the
 * thread sleeps, so no syscall while it is busy and never a wait.
 *
 * Copying pages is not enough to keep the WAL small. SQLite starts the WAL over
 * from its beginning only when a write transaction begins while every frame is
 * already in the database file. With a busy writer, the next batch begins
 * microseconds after a commit, long before a concurrent checkpoint of that
 * commit can finish: the thread keeps copying, but the WAL would grow for as
 * long as the load lasts (the problem SQLite's "wal2" notes describe). So, past
 * SQ_CKPT_RESTART_PAGES, the hook asks the thread for one catch-up run, and at
 * the first commit after that run has finished it checkpoints the few frames
 * committed since, itself (a "tail": a batch or two of pages instead of a
 * thousand); the next batch then begins on a fully checkpointed WAL and starts
 * it over (journal_size_limit, set in sqlite_schema.c, then truncates the file).
 * Once per SQ_CKPT_RESTART_PAGES of writes, that is, instead of a full
 * checkpoint every 1000 pages.
 *
 * Backstop: if the WAL still passes SQ_CKPT_CAP_PAGES (the thread fell behind
 * on a slow disk, or readers pin old snapshots), the hook runs a PASSIVE
 * checkpoint inline at every commit, as SQLite would have.
 *
 * The thread's connection writes through sqlite_vfs.c's VFS, which starts
 * writeback every 256 KiB, so a checkpoint's pages reach the disk as a trickle
 * and the writer's WAL fdatasyncs do not queue behind one burst at its fsync.
 *
 * When no commit has woken it for SQ_CKPT_IDLE_MS and the WAL holds frames not
 * yet copied, the thread checkpoints anyway, so a quiet server's WAL is folded
 * in and starts over at the next write.
 *
 * Every store has its checkpointer, the CLI's short-lived ones too: the thread
 * sleeps on a condition variable until a commit wakes it, and a CLI command
 * commits a few pages, so for the CLI it costs one thread and one connection
 * for the life of the command. Several processes may checkpoint the same file:
 * SQLite lets one at a time through (the others get SQLITE_BUSY at once and try
 * again at a later wake).
 *
 * Stopping: sq_ckpt_stop() runs after the writer has been joined; it removes the
 * hook, lets the thread finish the checkpoint it is in, joins it and closes its
 * connection. The last connection to close (the writer's) then checkpoints the
 * whole WAL and deletes it, as SQLite always does.
 */
#include "store/sqlite_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SQ_CKPT_IDLE_MS 1000

struct sq_ckpt {
    sqlite3 *db; /* the checkpointer's connection: the thread's alone once it runs */
    pthread_t thread;
    bool thread_started;
    bool sync_init; /* lock and cond are initialised */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    bool stop;           /* under lock */
    bool paused;         /* test hook, under lock */
    int delay_ms;        /* test hook, under lock */

    /* Between the writer's hook and the thread, without the lock. */
    atomic_bool requested; /* the writer asked for a checkpoint; the thread has not taken it */
    atomic_bool sleeping;  /* the thread waits (or is about to) on cond */
    atomic_bool running;   /* the thread is taking a request or checkpointing */
    atomic_uint_fast64_t commits; /* commits seen by the hook */
    /* The commit count when the thread last left the WAL wholly checkpointed
     * (every frame of those commits is in the database file). */
    atomic_uint_fast64_t clean_at;

    /* The hook's own state: only the writer thread touches it. */
    int prev_pages; /* WAL size after the previous commit */
    int next_wake;  /* wake the thread once the WAL reaches this size */
    bool catchup;   /* past SQ_CKPT_RESTART_PAGES: the catch-up run was asked for */

    /* Counters (test hooks). */
    atomic_uint_fast64_t started, runs, busy, idle_runs, wakes, tails, backstops, restarts, errors;
    atomic_int pages, max_pages;
};

static void count(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- the writer's side ---- */

/* Asks the thread for a checkpoint. Cheap: when a request is already pending,
 * or the thread is awake, no lock and no syscall. The flags are sequentially
 * consistent: the thread sets sleeping before it re-reads requested, and this
 * sets requested before it reads sleeping, so one of the two sees the other. */
static void wake(sq_ckpt *c)
{
    if (atomic_exchange(&c->requested, true))
        return; /* not taken yet: the thread will see it */
    count(&c->wakes);
    if (atomic_load(&c->sleeping)) {
        pthread_mutex_lock(&c->lock);
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
    }
}

/* Whether the thread has taken every request and finished its run. It sets
 * running before it takes a request and clears it after the checkpoint. */
static bool thread_idle(sq_ckpt *c)
{
    return !atomic_load(&c->requested) && !atomic_load(&c->running);
}

/* A PASSIVE checkpoint on the writer's connection, from the hook (SQLite's own
 * automatic checkpoint runs from the same place). Its outcome changes nothing
 * for the commit, which is already durable. */
static void checkpoint_inline(sq_ckpt *c, sqlite3 *db, const char *name,
                              atomic_uint_fast64_t *counter)
{
    int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    count(counter);
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) /* busy: another one runs */
        count(&c->errors);
}

/* The writer connection's WAL hook: after every commit, with the WAL's size. It
 * must return SQLITE_OK: anything else would make the COMMIT report an error
 * for a transaction that was committed. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    sq_ckpt *c = arg;
    atomic_fetch_add(&c->commits, 1);
    /* The WAL only shrinks when it starts over (here or in another process).
     * A restart followed by a commit bigger than the whole previous WAL goes
     * unseen; then the next wake comes at most SQ_CKPT_PAGES late. */
    if (pages < c->prev_pages) {
        c->next_wake = SQ_CKPT_PAGES;
        c->catchup = false;
        count(&c->restarts);
    }
    c->prev_pages = pages;
    atomic_store_explicit(&c->pages, pages, memory_order_relaxed);
    if (pages > atomic_load_explicit(&c->max_pages, memory_order_relaxed))
        atomic_store_explicit(&c->max_pages, pages, memory_order_relaxed);

    if (pages >= SQ_CKPT_CAP_PAGES) {
        checkpoint_inline(c, db, name, &c->backstops);
    } else if (pages >= SQ_CKPT_RESTART_PAGES) {
        if (!c->catchup) {
            c->catchup = true; /* one run that copies all but the last few frames */
            wake(c);
        } else if (thread_idle(c)) {
            /* The catch-up run began after the commit that asked for it and
             * is over: what is left is what was committed since it began, a
             * batch or two. With that copied, the next batch starts the WAL
             * over. Should it not (a reader still on an old snapshot), the
             * next commit asks for another catch-up run. */
            c->catchup = false;
            checkpoint_inline(c, db, name, &c->tails);
        }
    } else if (pages >= c->next_wake) {
        c->next_wake = pages + SQ_CKPT_PAGES;
        wake(c);
    }
    return SQLITE_OK;
}

/* ---- the thread ---- */

static struct timespec deadline_in(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

static void *ckpt_main(void *arg)
{
    sq_ckpt *c = arg;
    pthread_setname_np(pthread_self(), "otpd-ckpt");
    pthread_mutex_lock(&c->lock);
    for (;;) {
        struct timespec until = deadline_in(SQ_CKPT_IDLE_MS);
        bool run = false, idle = false;
        while (!c->stop) {
            if (!c->paused && atomic_load(&c->requested)) {
                run = true;
                break;
            }
            atomic_store(&c->sleeping, true);
            if (!c->paused && atomic_load(&c->requested)) { /* see wake() */
                atomic_store(&c->sleeping, false);
                run = true;
                break;
            }
            int rc = pthread_cond_timedwait(&c->cond, &c->lock, &until);
            atomic_store(&c->sleeping, false);
            if (rc != 0 && rc != EINTR) { /* ETIMEDOUT (or a clock error: do not spin) */
                idle = !c->paused && atomic_load(&c->commits) != atomic_load(&c->clean_at);
                break;
            }
        }
        if (c->stop)
            break;
        if (!run && !idle)
            continue;
        atomic_store(&c->running, true);
        atomic_store(&c->requested, false); /* taken: this run sees every commit so far */
        uint64_t commits = atomic_load(&c->commits);
        int delay = c->delay_ms;
        pthread_mutex_unlock(&c->lock);

        count(&c->started);
        if (run == false)
            count(&c->idle_runs);
        if (delay > 0)
            sleep_ms(delay);
        int log = -1, done = -1;
        int rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if ((rc & 0xff) == SQLITE_BUSY)
            count(&c->busy);
        else if (rc != SQLITE_OK)
            count(&c->errors);
        else if (log == done)
            atomic_store(&c->clean_at, commits);
        count(&c->runs);
        atomic_store(&c->running, false);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- start and stop ---- */

int sq_ckpt_start(sq_store *s, char *err, size_t errlen)
{
    sq_ckpt *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->ckpt = c;
    atomic_init(&c->requested, false);
    atomic_init(&c->sleeping, false);
    atomic_init(&c->running, false);
    atomic_init(&c->commits, 0);
    atomic_init(&c->clean_at, 0);
    atomic_init(&c->started, 0);
    atomic_init(&c->runs, 0);
    atomic_init(&c->busy, 0);
    atomic_init(&c->idle_runs, 0);
    atomic_init(&c->wakes, 0);
    atomic_init(&c->tails, 0);
    atomic_init(&c->backstops, 0);
    atomic_init(&c->restarts, 0);
    atomic_init(&c->errors, 0);
    atomic_init(&c->pages, 0);
    atomic_init(&c->max_pages, 0);
    c->next_wake = SQ_CKPT_PAGES;

    pthread_condattr_t attr;
    bool attr_ok = pthread_condattr_init(&attr) == 0;
    bool cond_ok = attr_ok && pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
                   pthread_cond_init(&c->cond, &attr) == 0;
    if (attr_ok)
        pthread_condattr_destroy(&attr);
    if (cond_ok) {
        if (pthread_mutex_init(&c->lock, NULL) == 0)
            c->sync_init = true;
        else
            pthread_cond_destroy(&c->cond);
    }
    if (!c->sync_init) {
        snprintf(err, errlen, "cannot create the checkpointer's locks");
        return -1;
    }

    /* The file exists: the writer connection made it. Reading the schema
     * version opens the WAL, so the first checkpoint has something to work on. */
    int rc = sq_vfs_open(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         SQ_VFS_CHECKPOINTER); /* the writeback trickle: sqlite_vfs.c */
    if (rc == SQLITE_OK) {
        sq_conn_setup(c->db);
        rc = sqlite3_exec(c->db, "PRAGMA synchronous = FULL; PRAGMA schema_version", NULL, NULL,
                          NULL);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open the checkpointer's connection to %s: %s", s->path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        return -1;
    }
    sqlite3_wal_hook(s->wdb, wal_hook, c);
    if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
        sqlite3_wal_hook(s->wdb, NULL, NULL);
        snprintf(err, errlen, "cannot start the store's checkpointer thread");
        return -1;
    }
    c->thread_started = true;
    return 0;
}

void sq_ckpt_stop(sq_store *s)
{
    sq_ckpt *c = s->ckpt;
    if (!c)
        return;
    if (s->wdb)
        sqlite3_wal_hook(s->wdb, NULL, NULL);
    if (c->thread_started) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
    }
    if (c->sync_init) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
    }
    sqlite3_close(c->db);
    free(c);
    s->ckpt = NULL;
}

/* ---- test hooks ---- */

#if OTPD_TEST_HOOKS
void otp_sqlite_test_ckpt_counters(otp_store *base, otp_sqlite_ckpt_counters *ret)
{
    sq_ckpt *c = ((sq_store *)base)->ckpt;
    ret->thread_started = atomic_load(&c->started);
    ret->thread_runs = atomic_load(&c->runs);
    ret->thread_busy = atomic_load(&c->busy);
    ret->idle_runs = atomic_load(&c->idle_runs);
    ret->wakes = atomic_load(&c->wakes);
    ret->tails = atomic_load(&c->tails);
    ret->backstops = atomic_load(&c->backstops);
    ret->restarts = atomic_load(&c->restarts);
    ret->errors = atomic_load(&c->errors);
    ret->commits = atomic_load(&c->commits);
    ret->clean_commits = atomic_load(&c->clean_at);
    ret->pages = atomic_load(&c->pages);
    ret->max_pages = atomic_load(&c->max_pages);
}

void otp_sqlite_test_ckpt_pause(otp_store *base, bool paused)
{
    sq_ckpt *c = ((sq_store *)base)->ckpt;
    pthread_mutex_lock(&c->lock);
    c->paused = paused;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void otp_sqlite_test_ckpt_delay(otp_store *base, int ms)
{
    sq_ckpt *c = ((sq_store *)base)->ckpt;
    pthread_mutex_lock(&c->lock);
    c->delay_ms = ms;
    pthread_mutex_unlock(&c->lock);
}
#endif
