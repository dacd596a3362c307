/* api/metrics.h — the counters GET /metrics shows (SPEC 7), and its handler.
 *
 * Process-wide, lock-free: each count is one relaxed atomic add. Delivery
 * counts by provider live in delivery/stats.h and the store's series come
 * from the store; metrics.c reads those at each scrape.
 */
#ifndef OTP_API_METRICS_H
#define OTP_API_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "util/error.h"

typedef enum {
    OTP_REFUSE_KEY_RATE,
    OTP_REFUSE_PHONE_INTERVAL,
    OTP_REFUSE_PHONE_LIMIT,
    OTP_REFUSE_PHONE_LOCKED,
    OTP_REFUSE_COUNTRY,
    OTP_REFUSE_SPEND_CAP,
    OTP_REFUSE_PUMPING,
    OTP_REFUSE_OTHER,
    OTP_REFUSE__COUNT
} otp_refusal;

/* Counts one refusal. Thread-safe, lock-free. */
void otp_metrics_refusal(otp_refusal r);
/* Counts one pumping block. */
void otp_metrics_pumping_block(void);
/* Counts one phone lock (5 wrong codes, or the 24 h streak lock). */
void otp_metrics_phone_lock(void);
/* The refusal counter of a details.reason string. */
otp_refusal otp_metrics_refusal_of(const char *reason);
/* One OTP request created (201 of POST /otp/send; resend: 200 of a resend),
 * not an idempotent replay; test: made with a test key. */
void otp_metrics_send(bool resend, bool test);
/* One verification and its outcome: OTP_OK (verified), or the error it was
 * answered with (otp_incorrect, otp_expired, …). */
void otp_metrics_verification(otp_err outcome);
/* One send or resend refused for want of balance (402). */
void otp_metrics_wallet_refusal(void);
/* One finished HTTP request (the http/ observer; set by main). */
void otp_metrics_request(const otp_route *route, int status, int64_t duration_us);
/* GET /metrics: Prometheus text format. */
void otp_api_metrics(otp_http_req *req, void *app);

#endif
