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

void otp_time_iso8601(int64_t ms, char *out)
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
