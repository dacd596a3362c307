/* util/clock.h — wall-clock time for the whole process, with a test offset.
 *
 * Every piece of otpd that asks "what time is it" (expiry, ledger times, outbox
 * leases) calls otp_now_ms(), so a test build can move time forward without
 * sleeping (otp_clock_advance_ms, reachable over HTTP only when built with
 * -Dtest_hooks=true). Monotonic time (otp_mono_us) is for durations only.
 */
#ifndef OTP_UTIL_CLOCK_H
#define OTP_UTIL_CLOCK_H

#include <stdint.h>

#define OTP_ISO8601_LEN 24 /* "2026-02-15T10:30:00.000Z" */

/* Milliseconds since the Unix epoch (UTC), plus the test offset. */
int64_t otp_now_ms(void);
/* Moves otp_now_ms() forward by delta_ms for the rest of the process (tests). */
void otp_clock_advance_ms(int64_t delta_ms);
/* Monotonic microseconds, for measuring durations. */
int64_t otp_mono_us(void);
/* Formats ms as UTC ISO 8601 with milliseconds into out (>= OTP_ISO8601_LEN + 1). */
void otp_time_iso8601(int64_t ms, char *out);
/* The same through gmtime_r and snprintf, for any year: otp_time_iso8601's
 * fallback outside 1970-9999, and its reference in the unit tests. */
void otp_time_iso8601_gmtime(int64_t ms, char *out);

#endif
