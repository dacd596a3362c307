/* util/log.h — one structured (logfmt) line per event, written whole with one
 * write(2) (request lines several at a time, in blocks: util/log_batch.c).
 *
 * Lines look like `time=2026-02-15T10:30:00.000Z level=info event=request ...`.
 * The caller formats the key=value part; the logger adds time and level. Library
 * code does not log; the layer that decides what happens logs once. Never pass a
 * code, a key or a secret: phone numbers go through otp_phone_mask() first.
 */
#ifndef OTP_UTIL_LOG_H
#define OTP_UTIL_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { OTP_LOG_DEBUG, OTP_LOG_INFO, OTP_LOG_WARN, OTP_LOG_ERROR } otp_log_level;

/* Sets the minimum level written (default INFO) and the fd (default 2). */
void otp_log_setup(otp_log_level min_level, int fd);
/* Parses "debug|info|warn|error"; returns 0 and writes *ret, or -1. */
int otp_log_level_parse(const char *s, otp_log_level *ret);
/* Writes one line: time, level, then the formatted key=value text. Thread-safe. */
void otp_log(otp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line assembled piece by piece without printf, for the one line of every
 * request (http/server.c). It is the same line otp_log() would write: the same
 * time and level prefix, the same 2046-byte cap, one write(2), nothing kept
 * after otp_log_end(). Usage:
 *
 *     otp_log_line l;
 *     if (otp_log_begin(&l, OTP_LOG_INFO)) {
 *         otp_log_str(&l, "event=request status=");
 *         otp_log_int(&l, status);
 *         otp_log_end(&l);
 *     }
 */
#define OTP_LOG_LINE_MAX 2048
typedef struct otp_log_line {
    size_t len;
    char buf[OTP_LOG_LINE_MAX];
} otp_log_line;

/* Starts a line with its time and level; false (write nothing more) when the
 * level is below the minimum. */
bool otp_log_begin(otp_log_line *l, otp_log_level level);
/* Appends a string (NULL appends "(null)", as printf's %s does). */
void otp_log_str(otp_log_line *l, const char *s);
/* Appends an integer, as %lld. */
void otp_log_int(otp_log_line *l, long long v);
/* Appends us / 1000.0 as %.2f prints it (a duration in ms from microseconds). */
void otp_log_ms2(otp_log_line *l, int64_t us);
/* Ends the line with a newline and writes it with one write(2). */
void otp_log_end(otp_log_line *l);

/* Request lines in blocks (util/log_batch.c). One write(2) per request costs
 * ~6% of a verify's CPU, so while batching runs, otp_log_end_batched() appends
 * the line to a block of the calling thread and the block is written (one
 * write(2) of whole lines, never interleaved with another thread's: at most
 * PIPE_BUF bytes unless the log is a regular file, checked at the start) when
 * it is full or, by a flusher thread, once the first
 * line in it has waited OTP_LOG_BATCH_MS. Lines of different threads may
 * therefore reach the log up to that much out of time order; one thread's
 * stay in order (otp_log() writes the thread's block first). A crash loses
 * at most the last OTP_LOG_BATCH_MS of request lines. */
#define OTP_LOG_BATCH_MS 50
/* Starts the flusher thread; 0, or -1 (then lines are written at once). */
int otp_log_batch_start(void);
/* Writes every block and stops the thread; later lines are written at once. */
void otp_log_batch_stop(void);
/* otp_log_end(), through the calling thread's block while batching runs. */
void otp_log_end_batched(otp_log_line *l);
/* Writes the calling thread's block now (if it has one). */
void otp_log_flush_thread(void);
/* The fd lines are written to. */
int otp_log_fd(void);

#endif
