/* core/otp_state.c — request and message state machines; see otp_state.h.
 *
 * Order of the checks in otp_req_guess() matters: a verified request answers
 * "already verified" even after its expiry (the client learns the truth), and a
 * request is only expired while it is still pending.
 */
#include "core/otp_state.h"

otp_req_status otp_req_effective_status(const otp_req_state *s, int64_t now_ms)
{
    if (s->status == OTP_REQ_PENDING && now_ms >= s->expires_at_ms)
        return OTP_REQ_EXPIRED;
    return s->status;
}

const char *otp_req_status_name(otp_req_status s)
{
    switch (s) {
    case OTP_REQ_PENDING:
        return "pending";
    case OTP_REQ_VERIFIED:
        return "verified";
    case OTP_REQ_LOCKED:
        return "locked";
    case OTP_REQ_CANCELLED:
        return "cancelled";
    case OTP_REQ_EXPIRED:
        return "expired";
    }
    return "unknown";
}

otp_err otp_req_guess(otp_req_state *s, bool match, int64_t now_ms, bool *ret_changed)
{
    if (ret_changed)
        *ret_changed = false;
    switch (otp_req_effective_status(s, now_ms)) {
    case OTP_REQ_VERIFIED:
        return OTP_E_OTP_ALREADY_VERIFIED;
    case OTP_REQ_LOCKED:
        return OTP_E_OTP_ATTEMPTS_EXHAUSTED;
    case OTP_REQ_CANCELLED:
        return OTP_E_OTP_CANCELLED;
    case OTP_REQ_EXPIRED:
        return OTP_E_OTP_EXPIRED;
    case OTP_REQ_PENDING:
        break;
    }
    if (s->attempts_left <= 0) { /* defensive: a pending request with no budget */
        s->status = OTP_REQ_LOCKED;
        if (ret_changed)
            *ret_changed = true;
        return OTP_E_OTP_ATTEMPTS_EXHAUSTED;
    }
    if (ret_changed)
        *ret_changed = true;
    if (match) {
        s->status = OTP_REQ_VERIFIED;
        s->verified_at_ms = now_ms;
        return OTP_OK;
    }
    s->attempts_left--;
    if (s->attempts_left == 0)
        s->status = OTP_REQ_LOCKED;
    return OTP_E_OTP_INCORRECT;
}

const char *otp_msg_status_name(otp_msg_status s)
{
    static const char *const names[] = {"queued",    "sending", "sent",
                                        "delivered", "failed",  "undeliverable"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}
