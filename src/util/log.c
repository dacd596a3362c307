/* util/log.c — logfmt lines, each emitted with a single write(2) so that lines
 * from different threads never interleave. */
#include "util/log.h"
#include "util/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static otp_log_level min_level = OTP_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void otp_log_setup(otp_log_level level, int fd)
{
    min_level = level;
    log_fd = fd;
}

int otp_log_level_parse(const char *s, otp_log_level *ret)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *ret = (otp_log_level)i;
            return 0;
        }
    }
    return -1;
}

void otp_log(otp_log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char line[2048];
    char ts[OTP_ISO8601_LEN + 1];
    otp_time_iso8601(otp_now_ms(), ts);
    int n = snprintf(line, sizeof(line), "time=%s level=%s ", ts, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    (void)w;
}
