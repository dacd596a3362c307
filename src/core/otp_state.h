/* core/otp_state.h — the OTP request and message state machines (no I/O).
 *
 * A request is stored as pending, verified, locked or cancelled; "expired" is
 * never stored, it is computed: a pending request past its expiry reads expired.
 * otp_req_guess() is the single place that decides what one verification attempt
 * does; store backends call it inside their transaction so the decision and the
 * write are atomic.
 */
#ifndef OTP_CORE_OTP_STATE_H
#define OTP_CORE_OTP_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef enum {
    OTP_REQ_PENDING = 0,
    OTP_REQ_VERIFIED = 1,
    OTP_REQ_LOCKED = 2,
    OTP_REQ_CANCELLED = 3,
    OTP_REQ_EXPIRED = 4, /* computed, never stored */
} otp_req_status;

typedef struct otp_req_state {
    otp_req_status status; /* stored status */
    int attempts_left;
    int64_t expires_at_ms;
    int64_t verified_at_ms; /* 0 until verified */
} otp_req_state;

/* The status a client sees at now_ms. */
otp_req_status otp_req_effective_status(const otp_req_state *s, int64_t now_ms);
/* "pending", "verified", "expired", "locked", "cancelled". */
const char *otp_req_status_name(otp_req_status s);

/* Applies one well-formed guess (match = the code hashes are equal) at now_ms.
 * Returns OTP_OK (now verified), OTP_E_OTP_INCORRECT (one attempt used; locked if
 * it was the last), OTP_E_OTP_EXPIRED, OTP_E_OTP_ATTEMPTS_EXHAUSTED,
 * OTP_E_OTP_ALREADY_VERIFIED or OTP_E_OTP_CANCELLED. Updates *s in place only on
 * OTP_OK and OTP_E_OTP_INCORRECT; *ret_changed (may be NULL) says whether it did. */
otp_err otp_req_guess(otp_req_state *s, bool match, int64_t now_ms, bool *ret_changed);

typedef enum {
    OTP_MSG_QUEUED = 0,
    OTP_MSG_SENDING = 1,
    OTP_MSG_SENT = 2,
    OTP_MSG_DELIVERED = 3,
    OTP_MSG_FAILED = 4,
    OTP_MSG_UNDELIVERABLE = 5,
} otp_msg_status;

/* "queued", "sending", "sent", "delivered", "failed", "undeliverable". */
const char *otp_msg_status_name(otp_msg_status s);

#endif
