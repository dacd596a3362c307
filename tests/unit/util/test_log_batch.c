/* tests/unit/util/test_log_batch.c — request lines written in blocks
 * (util/log_batch.c): every line arrives once and whole from many threads, a
 * lone line arrives without a stop (the flusher), otp_log() keeps a thread's
 * order, after the stop lines are written at once, and blocks fill to
 * PIPE_BUF on a pipe but further on a regular file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

#define THREADS 6
#define LINES_PER_THREAD 3000

/* The whole file as a NUL-terminated string (caller frees). */
static char *slurp(FILE *f)
{
    fflush(f);
    long n = lseek(fileno(f), 0, SEEK_END);
    assert_true(n >= 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(pread(fileno(f), s, (size_t)n, 0), n);
    s[n] = '\0';
    return s;
}

/* Logs to a new temporary file, with batching started. */
static FILE *log_to_temp_file(void)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    otp_log_setup(OTP_LOG_INFO, fileno(f));
    assert_int_equal(otp_log_batch_start(), 0);
    return f;
}

/* Batching stopped (if it runs), lines to stderr, f closed. */
static void back_to_stderr(FILE *f)
{
    otp_log_batch_stop();
    otp_log_setup(OTP_LOG_INFO, 2);
    fclose(f);
}

static void request_line(int thread, int i)
{
    otp_log_line l;
    assert_true(otp_log_begin(&l, OTP_LOG_INFO));
    otp_log_str(&l, "event=request thread=");
    otp_log_int(&l, thread);
    otp_log_str(&l, " n=");
    otp_log_int(&l, i);
    otp_log_str(&l, " end=1");
    otp_log_end_batched(&l);
}

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < LINES_PER_THREAD; i++)
        request_line(t, i);
    return NULL;
}

static void test_many_threads_every_line_once_and_whole(void **state)
{
    (void)state;
    FILE *f = log_to_temp_file();

    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    otp_log_batch_stop();

    char *all = slurp(f);
    static unsigned char seen[THREADS][LINES_PER_THREAD];
    memset(seen, 0, sizeof(seen));
    int lines = 0, last[THREADS];
    for (int t = 0; t < THREADS; t++)
        last[t] = -1;
    for (char *save = NULL, *line = strtok_r(all, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        int t, i;
        const char *body = strstr(line, " event=request thread=");
        assert_non_null(body);
        assert_memory_equal(line, "time=", 5);
        assert_int_equal(sscanf(body, " event=request thread=%d n=%d end=1", &t, &i), 2);
        assert_true(strcmp(line + strlen(line) - 6, " end=1") == 0); /* nothing glued on */
        assert_true(t >= 0 && t < THREADS && i >= 0 && i < LINES_PER_THREAD);
        assert_int_equal(seen[t][i], 0);
        seen[t][i] = 1;
        assert_true(i > last[t]); /* one thread's lines in order */
        last[t] = i;
        lines++;
    }
    assert_int_equal(lines, THREADS * LINES_PER_THREAD);
    free(all);
    back_to_stderr(f);
}

static void test_a_lone_line_is_written_by_the_flusher(void **state)
{
    (void)state;
    FILE *f = log_to_temp_file();

    request_line(1, 42);
    char *s = NULL;
    for (int waited = 0; waited < 5000; waited += 10) { /* OTP_LOG_BATCH_MS, with room */
        free(s);
        s = slurp(f);
        if (strstr(s, "thread=1 n=42 end=1\n"))
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_non_null(strstr(s, "thread=1 n=42 end=1\n"));
    free(s);

    otp_log_batch_stop();
    back_to_stderr(f);
}

static void test_direct_lines_keep_the_thread_order_and_stop_unbatches(void **state)
{
    (void)state;
    FILE *f = log_to_temp_file();

    request_line(2, 1);
    otp_log(OTP_LOG_WARN, "event=direct after=1");
    char *s = slurp(f); /* otp_log() wrote the thread's block, then its own line */
    const char *a = strstr(s, "thread=2 n=1 end=1\n");
    const char *b = strstr(s, "event=direct after=1\n");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    free(s);

    otp_log_batch_stop();
    request_line(2, 2); /* straight to the fd now */
    s = slurp(f);
    assert_non_null(strstr(s, "thread=2 n=2 end=1\n"));
    free(s);

    /* And it starts again. */
    assert_int_equal(otp_log_batch_start(), 0);
    request_line(2, 3);
    otp_log_batch_stop();
    s = slurp(f);
    assert_non_null(strstr(s, "thread=2 n=3 end=1\n"));
    free(s);

    back_to_stderr(f);
}

/* Logs lines of one thread until at least `bytes` went in; returns how many
 * bytes that was (each line is under 100 bytes). */
static size_t lines_of_at_least(size_t bytes)
{
    size_t total = 0;
    for (int i = 0; total < bytes; i++) {
        otp_log_line l;
        assert_true(otp_log_begin(&l, OTP_LOG_INFO));
        otp_log_str(&l, "event=request thread=3 n=");
        otp_log_int(&l, i);
        otp_log_str(&l, " end=1");
        total += l.len + 1; /* its newline */
        otp_log_end_batched(&l);
    }
    return total;
}

/* On a pipe a block is written once it holds PIPE_BUF bytes: the most one
 * write(2) delivers whole there. So 5 x PIPE_BUF of lines are mostly in the
 * pipe at once, without waiting for the flusher. */
static void test_on_a_pipe_blocks_are_written_at_pipe_buf(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* Room for all the lines, so that no write waits for a reader (a user
     * over pipe-user-pages-soft gets 2-page pipes: then this fails, not hangs). */
    assert_true(fcntl(p[1], F_SETPIPE_SZ, 64 * 1024) >= 64 * 1024);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    otp_log_setup(OTP_LOG_INFO, p[1]);
    assert_int_equal(otp_log_batch_start(), 0);

    size_t total = lines_of_at_least(5 * PIPE_BUF);
    static char buf[8 * PIPE_BUF];
    ssize_t n = read(p[0], buf, sizeof(buf));
    assert_true(n >= (ssize_t)(total - PIPE_BUF));

    otp_log_batch_stop();
    otp_log_setup(OTP_LOG_INFO, 2);
    close(p[0]);
    close(p[1]);
}

/* On a regular file the same lines stay in the thread's block, which holds
 * far more than PIPE_BUF there: the file is still empty right after them.
 * (Unless the flusher's OTP_LOG_BATCH_MS passed meanwhile, on a very busy
 * machine: so any one of a few tries will do. With PIPE_BUF blocks no try
 * can see an empty file.) Stopping writes them all, whole. */
static void test_on_a_file_blocks_hold_more_than_pipe_buf(void **state)
{
    (void)state;
    bool empty_once = false;
    for (int try = 0; try < 5 && !empty_once; try++) {
        FILE *f = log_to_temp_file();
        size_t total = lines_of_at_least(5 * PIPE_BUF);
        empty_once = lseek(fileno(f), 0, SEEK_END) == 0;
        otp_log_batch_stop();
        char *all = slurp(f);
        assert_int_equal(strlen(all), total);
        assert_true(all[total - 1] == '\n');
        free(all);
        back_to_stderr(f);
    }
    assert_true(empty_once);
}

/* After any test, even a failed one: batching stopped, lines to stderr, so
 * that one failure does not show up again in the next test. */
static int stop_batching(void **state)
{
    (void)state;
    otp_log_batch_stop();
    otp_log_setup(OTP_LOG_INFO, 2);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_threads_every_line_once_and_whole),
        cmocka_unit_test(test_a_lone_line_is_written_by_the_flusher),
        cmocka_unit_test(test_direct_lines_keep_the_thread_order_and_stop_unbatches),
        cmocka_unit_test_teardown(test_on_a_pipe_blocks_are_written_at_pipe_buf, stop_batching),
        cmocka_unit_test_teardown(test_on_a_file_blocks_hold_more_than_pipe_buf, stop_batching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
