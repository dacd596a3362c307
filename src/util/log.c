/* util/log.c — logfmt lines, each emitted whole with a single write(2) (or in
 * a block of whole lines: util/log_batch.c) so that lines from different
 * threads never interleave.
 *
 * Every request writes one line, so the common parts are formatted without
 * stdio: the timestamp by otp_time_iso8601 (integer arithmetic) and the
 * request line through otp_log_line. The
 * output is byte for byte what the printf formats would give; the unit tests
 * compare the two. */
#include "util/log.h"
#include "util/clock.h"

#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The content of a line is cut at this many bytes; the newline follows. */
#define LINE_CAP (OTP_LOG_LINE_MAX - 2)

static otp_log_level min_level = OTP_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void otp_log_setup(otp_log_level level, int fd)
{
    min_level = level;
    log_fd = fd;
}

int otp_log_fd(void)
{
    return log_fd;
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

static void append(otp_log_line *l, const char *s, size_t n)
{
    size_t room = LINE_CAP - l->len;
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* "time=… level=… " */
static void prefix(otp_log_line *l, otp_log_level level)
{
    char ts[OTP_ISO8601_LEN + 1];
    otp_time_iso8601(otp_now_ms(), ts);
    l->len = 0;
    append(l, "time=", 5);
    append(l, ts, OTP_ISO8601_LEN);
    append(l, " level=", 7);
    otp_log_str(l, level_names[level]);
    append(l, " ", 1);
}

bool otp_log_begin(otp_log_line *l, otp_log_level level)
{
    if (level < min_level)
        return false;
    prefix(l, level);
    return true;
}

void otp_log_str(otp_log_line *l, const char *s)
{
    if (!s)
        s = "(null)";
    append(l, s, strnlen(s, LINE_CAP - l->len));
}

void otp_log_int(otp_log_line *l, long long v)
{
    char buf[24];
    char *p = buf + sizeof(buf);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    append(l, p, (size_t)(buf + sizeof(buf) - p));
}

/* The product of a double and 1000 is exact in long double, which decides the
 * ties below exactly. */
_Static_assert(LDBL_MANT_DIG >= DBL_MANT_DIG + 10, "long double: 63 bits of mantissa");

void otp_log_ms2(otp_log_line *l, int64_t us)
{
    if (us < 0 || us >= (INT64_C(1) << 53)) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "%.2f", (double)us / 1000.0);
        append(l, buf, n > 0 ? (size_t)n : 0);
        return;
    }
    /* printf rounds the double nearest to us/1000 to two decimals. Unless us
     * ends in 5, that double is far from a tie; when it does, the double's side
     * of the exact tie decides, and an exact tie goes to the even digit. */
    int64_t q = us / 10;
    int r = (int)(us % 10);
    if (r > 5) {
        q++;
    } else if (r == 5) {
        double d = (double)us / 1000.0;
        long double diff = (long double)d * 1000.0L - (long double)us;
        if (diff > 0 || (diff == 0 && (q & 1)))
            q++;
    }
    otp_log_int(l, q / 100);
    char frac[3] = {'.', (char)('0' + q % 100 / 10), (char)('0' + q % 10)};
    append(l, frac, sizeof(frac));
}

void otp_log_end(otp_log_line *l)
{
    l->buf[l->len++] = '\n';
    ssize_t w = write(log_fd, l->buf, l->len);
    (void)w;
}

void otp_log(otp_log_level level, const char *fmt, ...)
{
    otp_log_line l;
    if (!otp_log_begin(&l, level))
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(l.buf + l.len, sizeof(l.buf) - l.len - 1, fmt, ap);
    va_end(ap);
    l.len += m < 0 ? 0 : (size_t)m;
    if (l.len > LINE_CAP)
        l.len = LINE_CAP;
    otp_log_flush_thread(); /* this thread's request lines first */
    otp_log_end(&l);
}
