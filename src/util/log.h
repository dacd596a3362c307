/* util/log.h — one structured (logfmt) line per event, written with one write(2).
 *
 * Lines look like `time=2026-02-15T10:30:00.000Z level=info event=request ...`.
 * The caller formats the key=value part; the logger adds time and level. Library
 * code does not log; the layer that decides what happens logs once. Never pass a
 * code, a key or a secret: phone numbers go through otp_phone_mask() first.
 */
#ifndef OTP_UTIL_LOG_H
#define OTP_UTIL_LOG_H

typedef enum { OTP_LOG_DEBUG, OTP_LOG_INFO, OTP_LOG_WARN, OTP_LOG_ERROR } otp_log_level;

/* Sets the minimum level written (default INFO) and the fd (default 2). */
void otp_log_setup(otp_log_level min_level, int fd);
/* Parses "debug|info|warn|error"; returns 0 and writes *ret, or -1. */
int otp_log_level_parse(const char *s, otp_log_level *ret);
/* Writes one line: time, level, then the formatted key=value text. Thread-safe. */
void otp_log(otp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
