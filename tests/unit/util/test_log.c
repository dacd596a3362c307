/* tests/unit/util/test_log.c — the log line without printf gives the bytes the
 * printf formats gave: timestamps (otp_time_iso8601, util/clock.c, against
 * gmtime_r), %.2f durations, integers, the 2046-byte cap, one line per call. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"

/* A deterministic generator, so a failure can be replayed. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void expect_time(int64_t ms)
{
    char want[OTP_ISO8601_LEN + 1], got[OTP_ISO8601_LEN + 1];
    memset(got, 'x', sizeof(got));
    otp_time_iso8601_gmtime(ms, want); /* the reference */
    otp_time_iso8601(ms, got);
    if (strcmp(want, got) != 0)
        fail_msg("ms=%lld: want %s, got %s", (long long)ms, want, got);
}

static void test_iso8601_matches_gmtime(void **state)
{
    (void)state;
    const int64_t edges[] = {0,
                             1,
                             999,
                             1000,
                             86399999,
                             86400000,
                             951782400000,    /* 2000-02-29 */
                             951868800000,    /* 2000-03-01 */
                             4107542399999,   /* 2100-02-28T23:59:59.999 */
                             4107542400000,   /* 2100-03-01: not a leap year */
                             1798761599999,   /* 2026-12-31T23:59:59.999 */
                             253402300799999, /* 9999-12-31T23:59:59.999 */
                             253402300800000, /* 10000-01-01: the fallback */
                             -1,
                             -1000,
                             -86400001};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        expect_time(edges[i]);
    /* Every day boundary of 1970-2200 ± 1 ms, and random instants up to 9999. */
    for (int64_t day = 0; day < 84000; day++) {
        expect_time(day * 86400000);
        expect_time(day * 86400000 + 86399999);
    }
    for (int i = 0; i < 300000; i++)
        expect_time((int64_t)(next() % 253402300800000ULL));
    expect_time(otp_now_ms());
}

static void ms2(int64_t us, char *out, size_t n)
{
    otp_log_line l;
    l.len = 0;
    otp_log_ms2(&l, us);
    assert_true(l.len < n);
    memcpy(out, l.buf, l.len);
    out[l.len] = '\0';
}

static void expect_ms2(int64_t us)
{
    char want[64], got[64];
    snprintf(want, sizeof(want), "%.2f", (double)us / 1000.0);
    ms2(us, got, sizeof(got));
    if (strcmp(want, got) != 0)
        fail_msg("us=%lld: want %s, got %s", (long long)us, want, got);
}

static void test_ms2_matches_printf(void **state)
{
    (void)state;
    /* Every value up to 2 s (ties included: 5 µs past each 10 µs step). */
    for (int64_t us = 0; us <= 2000000; us++)
        expect_ms2(us);
    for (int i = 0; i < 300000; i++) {
        int64_t us = (int64_t)(next() >> (11 + next() % 40));
        expect_ms2(us);
        expect_ms2(us - us % 10 + 5); /* a tie */
    }
    const int64_t edges[] = {125,
                             375,
                             625,
                             875,
                             1005,
                             4503599627370495LL,
                             4503599627370496LL,
                             (INT64_C(1) << 53) - 5,
                             INT64_C(1) << 53,
                             -1,
                             -5,
                             -15,
                             -125};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        expect_ms2(edges[i]);
}

static void test_int_matches_printf(void **state)
{
    (void)state;
    const long long v[] = {0, 1, -1, 9, 10, 99, 100, 200, 201, 404, 431, 503, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char want[32];
        snprintf(want, sizeof(want), "%lld", v[i]);
        otp_log_line l;
        l.len = 0;
        otp_log_int(&l, v[i]);
        assert_int_equal(l.len, strlen(want));
        assert_memory_equal(l.buf, want, l.len);
    }
}

/* Reads what the logger wrote to a temporary file; returns the lines' count. */
static int read_lines(FILE *f, char lines[][OTP_LOG_LINE_MAX + 1], int max)
{
    rewind(f);
    int n = 0;
    char buf[OTP_LOG_LINE_MAX * 2];
    while (n < max && fgets(buf, sizeof(buf), f)) {
        size_t len = strlen(buf);
        assert_true(len > 0 && buf[len - 1] == '\n');
        assert_true(len <= OTP_LOG_LINE_MAX);
        memcpy(lines[n], buf, len + 1);
        n++;
    }
    return n;
}

/* "time=… " is 30 bytes; the rest must be the same for the two writers. */
#define TIME_PART 30

static void test_builder_writes_what_otp_log_writes(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    otp_log_setup(OTP_LOG_INFO, fileno(f));

    static char lines[8][OTP_LOG_LINE_MAX + 1];
    static char long_value[5000];
    memset(long_value, 'v', sizeof(long_value) - 1);

    /* The request line's shape, both ways. */
    otp_log(OTP_LOG_WARN,
            "event=request traceId=%s method=%s route=%s status=%d durationMs=%.2f "
            "account=%s phone=%s%s",
            "abc", "POST", "/otp/send", 201, 12345 / 1000.0, "acc_x", "+91******3210",
            " aborted=true");
    otp_log_line l;
    assert_true(otp_log_begin(&l, OTP_LOG_WARN));
    otp_log_str(&l, "event=request traceId=abc method=POST route=/otp/send status=");
    otp_log_int(&l, 201);
    otp_log_str(&l, " durationMs=");
    otp_log_ms2(&l, 12345);
    otp_log_str(&l, " account=acc_x phone=+91******3210 aborted=true");
    otp_log_end(&l);

    /* A value past the cap: both cut the line at 2046 bytes plus the newline. */
    otp_log(OTP_LOG_INFO, "event=long value=%s tail=%d", long_value, 7);
    assert_true(otp_log_begin(&l, OTP_LOG_INFO));
    otp_log_str(&l, "event=long value=");
    otp_log_str(&l, long_value);
    otp_log_str(&l, " tail=");
    otp_log_int(&l, 7);
    otp_log_end(&l);

    /* NULL strings print as printf prints them (glibc: "(null)"). */
    const char *volatile none = NULL;
    otp_log(OTP_LOG_INFO, "event=null v=%s", none);
    assert_true(otp_log_begin(&l, OTP_LOG_INFO));
    otp_log_str(&l, "event=null v=");
    otp_log_str(&l, NULL);
    otp_log_end(&l);

    /* Below the minimum level: nothing at all. */
    otp_log(OTP_LOG_DEBUG, "event=hidden");
    assert_false(otp_log_begin(&l, OTP_LOG_DEBUG));

    int n = read_lines(f, lines, 8);
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i += 2) {
        assert_memory_equal(lines[i], "time=", 5);
        assert_memory_equal(lines[i] + TIME_PART - 1, " level=", 7);
        assert_string_equal(lines[i] + TIME_PART, lines[i + 1] + TIME_PART);
    }
    assert_string_equal(lines[0] + TIME_PART,
                        "level=warn event=request traceId=abc method=POST route=/otp/send "
                        "status=201 durationMs=12.35 account=acc_x phone=+91******3210 "
                        "aborted=true\n");
    assert_int_equal(strlen(lines[2]), OTP_LOG_LINE_MAX - 1);
    assert_int_equal(strlen(lines[3]), OTP_LOG_LINE_MAX - 1);
    assert_string_equal(lines[4] + TIME_PART, "level=info event=null v=(null)\n");

    otp_log_setup(OTP_LOG_INFO, 2);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso8601_matches_gmtime),
        cmocka_unit_test(test_ms2_matches_printf),
        cmocka_unit_test(test_int_matches_printf),
        cmocka_unit_test(test_builder_writes_what_otp_log_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
