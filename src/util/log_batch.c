/* util/log_batch.c — the request lines written in blocks instead of one
 * write(2) each; see otp_log_batch_start() in util/log.h.
 *
 * One write(2) per request line was ~6% of a verify's CPU (perf: ext4's
 * append path for a log file, a pipe wake-up for journald). Each thread that
 * logs requests gets a block; a line is appended to the calling thread's
 * block, and the block is written when the next line would not fit. Writes
 * are whole lines, so they never interleave with another thread's:
 * - on a pipe or a socket (journald), a block holds at most PIPE_BUF bytes,
 *   the most that one write(2) delivers whole there;
 * - on a regular file Linux keeps a write(2) of any size whole (it holds the
 *   file's lock, or the shared offset's, for all of it), so a block fills up
 *   to FILE_BLOCK bytes. Only a short write (disk full) is finished by a
 *   second one, which another thread's block may precede, as with 4 KiB.
 *   With 4 KiB blocks, ext4's append path was still 3.3% of a verify's CPU,
 *   half of it zeroing the new page that every unaligned write begins.
 *
 * A flusher thread writes the blocks that have waited OTP_LOG_BATCH_MS: it
 * sleeps until a line goes into an empty block (an atomic flag, and a signal
 * only then), waits OTP_LOG_BATCH_MS for more lines to gather, and writes
 * every non-empty block. A quiet server's lines are therefore at most
 * OTP_LOG_BATCH_MS late, and the thread sleeps when nothing is logged.
 *
 * Blocks live until the process exits (one per thread that ever logged a
 * request, FILE_BLOCK bytes each): a thread may still hold its block's
 * pointer after otp_log_batch_stop(), which writes every block and makes
 * later lines go straight to write(2). */
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_BLOCK (64 * 1024)
_Static_assert(OTP_LOG_LINE_MAX <= PIPE_BUF, "a whole line fits in an empty block");
_Static_assert(PIPE_BUF <= FILE_BLOCK, "a block holds a pipe's fill");

typedef struct log_block {
    pthread_mutex_t lock;
    size_t len;
    struct log_block *next; /* in the list of all blocks, under list_lock */
    char data[FILE_BLOCK];
} log_block;

static _Thread_local log_block *my_block;

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static log_block *blocks; /* every block ever made, under list_lock */

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ctl_cond;
static bool running;  /* under ctl_lock: a flusher thread runs */
static bool stopping; /* under ctl_lock */
static pthread_t flusher;
static atomic_bool enabled; /* lines go to blocks */
static atomic_bool dirty;   /* a line went into an empty block since the flusher last looked */
static atomic_size_t fill;  /* a block is written before it would pass this many bytes */

static void write_all(const char *p, size_t n)
{
    int fd = otp_log_fd();
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report it: the log is what failed */
        p += w;
        n -= (size_t)w;
    }
}

/* Writes out a block; its lock is held. */
static void drain(log_block *b)
{
    if (b->len > 0)
        write_all(b->data, b->len);
    b->len = 0;
}

static void drain_all(void)
{
    pthread_mutex_lock(&list_lock);
    for (log_block *b = blocks; b; b = b->next) {
        pthread_mutex_lock(&b->lock);
        drain(b);
        pthread_mutex_unlock(&b->lock);
    }
    pthread_mutex_unlock(&list_lock);
}

static log_block *block_of_this_thread(void)
{
    if (my_block)
        return my_block;
    log_block *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    pthread_mutex_init(&b->lock, NULL);
    b->len = 0;
    pthread_mutex_lock(&list_lock);
    b->next = blocks;
    blocks = b;
    pthread_mutex_unlock(&list_lock);
    return my_block = b;
}

static struct timespec deadline_in_ms(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_nsec += (long)ms * 1000000L;
    t.tv_sec += t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    return t;
}

static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ctl_lock);
    while (!stopping) {
        if (!atomic_load(&dirty)) {
            pthread_cond_wait(&ctl_cond, &ctl_lock);
            continue;
        }
        /* Let the lines of the next OTP_LOG_BATCH_MS gather. */
        struct timespec until = deadline_in_ms(OTP_LOG_BATCH_MS);
        while (!stopping && pthread_cond_timedwait(&ctl_cond, &ctl_lock, &until) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(&ctl_lock);
        /* Cleared before the blocks are read: a line appended meanwhile is
         * either written now or sets the flag again. */
        atomic_store(&dirty, false);
        drain_all();
        pthread_mutex_lock(&ctl_lock);
    }
    pthread_mutex_unlock(&ctl_lock);
    return NULL;
}

int otp_log_batch_start(void)
{
    pthread_mutex_lock(&ctl_lock);
    if (running) {
        pthread_mutex_unlock(&ctl_lock);
        return 0;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ctl_cond, &ca);
    pthread_condattr_destroy(&ca);
    stopping = false;
    struct stat st;
    bool file = fstat(otp_log_fd(), &st) == 0 && S_ISREG(st.st_mode);
    atomic_store(&fill, file ? FILE_BLOCK : PIPE_BUF);
    if (pthread_create(&flusher, NULL, flusher_main, NULL) != 0) {
        pthread_cond_destroy(&ctl_cond);
        pthread_mutex_unlock(&ctl_lock);
        return -1;
    }
    running = true;
    atomic_store(&enabled, true);
    pthread_mutex_unlock(&ctl_lock);
    return 0;
}

void otp_log_batch_stop(void)
{
    pthread_mutex_lock(&ctl_lock);
    if (!running) {
        pthread_mutex_unlock(&ctl_lock);
        return;
    }
    atomic_store(&enabled, false);
    stopping = true;
    pthread_cond_signal(&ctl_cond);
    pthread_mutex_unlock(&ctl_lock);
    pthread_join(flusher, NULL);
    pthread_mutex_lock(&ctl_lock);
    running = false;
    pthread_cond_destroy(&ctl_cond);
    pthread_mutex_unlock(&ctl_lock);
    drain_all();
}

void otp_log_flush_thread(void)
{
    log_block *b = my_block;
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    drain(b);
    pthread_mutex_unlock(&b->lock);
}

void otp_log_end_batched(otp_log_line *l)
{
    /* acquire: the fill limit stored before batching was enabled is seen */
    log_block *b =
        atomic_load_explicit(&enabled, memory_order_acquire) ? block_of_this_thread() : NULL;
    if (!b) {
        otp_log_end(l);
        return;
    }
    l->buf[l->len++] = '\n';
    pthread_mutex_lock(&b->lock);
    if (!atomic_load_explicit(&enabled, memory_order_relaxed)) { /* stopped meanwhile */
        drain(b);
        write_all(l->buf, l->len);
        pthread_mutex_unlock(&b->lock);
        return;
    }
    if (b->len + l->len > atomic_load_explicit(&fill, memory_order_relaxed))
        drain(b);
    bool was_empty = b->len == 0;
    memcpy(b->data + b->len, l->buf, l->len); /* a line is < PIPE_BUF */
    b->len += l->len;
    pthread_mutex_unlock(&b->lock);
    if (was_empty && !atomic_exchange(&dirty, true)) {
        pthread_mutex_lock(&ctl_lock);
        pthread_cond_signal(&ctl_cond);
        pthread_mutex_unlock(&ctl_lock);
    }
}
