/* delivery/stats.h — what delivery did, by provider, for GET /metrics (SPEC 7).
 *
 * Process-wide counters, one set per provider name (the first 15 names seen;
 * later ones share "other"), bumped with relaxed atomics by the dispatcher and
 * by delivery reports, and read at each scrape:
 * - what the dispatcher did with each message it handled: sent (the provider
 *   took it), failed (the provider refused it for good), queued (back to the
 *   outbox after every usable provider failed for now);
 * - temporary failures, each time a provider could not take a message;
 * - delivery reports that matched a message, by the status they report
 *   (delivered, undeliverable, failed; a repeated report counts again);
 * - the time from a message's creation to the provider taking it, a histogram.
 * Messages that fail before any provider sees them (their request expired,
 * their text does not unseal), or that go back to the outbox with no provider
 * usable, count under OTP_DELIVERY_NO_PROVIDER.
 */
#ifndef OTP_DELIVERY_STATS_H
#define OTP_DELIVERY_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "core/otp_state.h"

/* Not a provider NAME, which is made of [A-Za-z0-9_-]. */
#define OTP_DELIVERY_NO_PROVIDER "(none)"
#define OTP_DELIVERY_LATENCY_BUCKETS 14

/* Upper bounds of the latency histogram's buckets, in seconds. */
extern const double otp_delivery_latency_bounds_s[OTP_DELIVERY_LATENCY_BUCKETS];

/* One provider's counters, as read by otp_delivery_stats_each(). */
typedef struct otp_delivery_stats {
    const char *provider;
    uint64_t handled[OTP_MSG_UNDELIVERABLE + 1];        /* by status: QUEUED, SENT, FAILED */
    uint64_t reports[OTP_MSG_UNDELIVERABLE + 1];        /* DELIVERED, UNDELIVERABLE, FAILED */
    uint64_t temporary;                                 /* temporary failures */
    uint64_t latency[OTP_DELIVERY_LATENCY_BUCKETS + 1]; /* per bucket, the last +Inf */
    uint64_t latency_sum_ms;
} otp_delivery_stats;

/* Makes provider's counters appear, at zero, before anything happens. */
void otp_delivery_register(const char *provider);
/* The dispatcher moved n messages of provider to status. Any thread. */
void otp_delivery_handled(const char *provider, otp_msg_status status, uint64_t n);
/* A report from provider that matched a message said status. Any thread. */
void otp_delivery_report(const char *provider, otp_msg_status status);
/* n temporary failures at provider. Any thread. */
void otp_delivery_temporary(const char *provider, uint64_t n);
/* provider took a message ms after its creation. Any thread. */
void otp_delivery_latency(const char *provider, int64_t ms);
/* Calls cb with each provider's counters, in the order the names were first
 * seen. Any thread. */
void otp_delivery_stats_each(void (*cb)(const otp_delivery_stats *s, void *ctx), void *ctx);

#endif
