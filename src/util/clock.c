/* util/clock.c — wall clock with an atomic test offset; see clock.h. */
#include "util/clock.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic int64_t offset_ms;

int64_t otp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&offset_ms);
}

void otp_clock_advance_ms(int64_t delta_ms)
{
    atomic_fetch_add(&offset_ms, delta_ms);
}

int64_t otp_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Any instant, through gmtime_r (which takes glibc's time zone lock, even for
 * UTC) and snprintf: the years the arithmetic below does not cover. */
void otp_time_iso8601_gmtime(int64_t ms, char *out)
{
    time_t secs = (time_t)(ms / 1000);
    int millis = (int)(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    struct tm tm;
    char buf[64]; /* roomy, so the compiler can prove no truncation */
    gmtime_r(&secs, &tm);
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    memcpy(out, buf, OTP_ISO8601_LEN);
    out[OTP_ISO8601_LEN] = '\0';
}

static char *two(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* Years 1970-9999 by integer arithmetic (every request's log line and most
 * replies carry a time), the rest through gmtime_r. Days to a civil date: H.
 * Hinnant's civil_from_days, eras of 400 years. tests/unit/util/test_log.c
 * compares the two over every day of 1970-2200 and random instants. */
void otp_time_iso8601(int64_t ms, char *out)
{
    if (ms < 0 || ms >= 253402300800000LL) { /* 10000-01-01T00:00:00Z */
        otp_time_iso8601_gmtime(ms, out);
        return;
    }
    int64_t secs = ms / 1000;
    unsigned millis = (unsigned)(ms % 1000);
    unsigned sod = (unsigned)(secs % 86400);
    unsigned z = (unsigned)(secs / 86400) + 719468; /* days since 0000-03-01 */
    unsigned era = z / 146097;
    unsigned doe = z - era * 146097;
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1;
    unsigned month = mp < 10 ? mp + 3 : mp - 9;
    unsigned year = yoe + era * 400 + (month <= 2);
    char *p = two(out, year / 100);
    p = two(p, year % 100);
    *p++ = '-';
    p = two(p, month);
    *p++ = '-';
    p = two(p, day);
    *p++ = 'T';
    p = two(p, sod / 3600);
    *p++ = ':';
    p = two(p, sod / 60 % 60);
    *p++ = ':';
    p = two(p, sod % 60);
    *p++ = '.';
    *p++ = (char)('0' + millis / 100);
    p = two(p, millis % 100);
    *p++ = 'Z';
    *p = '\0';
}
