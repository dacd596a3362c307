/* util/error.h — the one list of API errors.
 *
 * Every error the API can return is one row of OTP_ERRORS: its enum name, HTTP
 * status, stable machine code (SPEC 1.10) and default human message. The enum,
 * the status table and the messages are all generated from this list, so they
 * cannot drift apart. OTP_OK (0) means success everywhere an otp_err is returned.
 */
#ifndef OTP_UTIL_ERROR_H
#define OTP_UTIL_ERROR_H

#define OTP_ERRORS(X)                                                                              \
    X(OK, 200, "ok", "OK")                                                                         \
    X(INVALID_JSON, 400, "invalid_json", "Request body must be a JSON object")                     \
    X(INVALID_REQUEST, 400, "invalid_request", "A field of the request is missing or invalid")     \
    X(INVALID_PHONE_NUMBER, 400, "invalid_phone_number",                                           \
      "phoneNumber must be in E.164 format, e.g. +919876543210")                                   \
    X(INVALID_OTP_CODE, 400, "invalid_otp_code",                                                   \
      "otpCode must be a string of digits of the length that was sent")                            \
    X(OTP_INCORRECT, 400, "otp_incorrect", "The code is incorrect")                                \
    X(UNAUTHORIZED, 401, "unauthorized", "A valid API key is required in X-API-Key")               \
    X(INSUFFICIENT_BALANCE, 402, "insufficient_balance",                                           \
      "The wallet balance is too low for this message")                                            \
    X(TEST_KEY_REQUIRED, 403, "test_key_required", "This route needs a test API key")              \
    X(COUNTRY_NOT_ALLOWED, 403, "country_not_allowed",                                             \
      "Sending to this country is not allowed for this account")                                   \
    X(NOT_FOUND, 404, "not_found", "No such route")                                                \
    X(OTP_NOT_FOUND, 404, "otp_not_found", "No such OTP request")                                  \
    X(MESSAGE_NOT_FOUND, 404, "message_not_found", "No such message")                              \
    X(ACCOUNT_NOT_FOUND, 404, "account_not_found", "No such account")                              \
    X(METHOD_NOT_ALLOWED, 405, "method_not_allowed", "Method not allowed on this route")           \
    X(OTP_ALREADY_VERIFIED, 409, "otp_already_verified", "This code has already been verified")    \
    X(IDEMPOTENCY_KEY_REUSED, 409, "idempotency_key_reused",                                       \
      "This idempotencyKey was used with a different request body")                                \
    X(IDEMPOTENCY_IN_PROGRESS, 409, "idempotency_in_progress",                                     \
      "A request with this idempotencyKey is still being processed")                               \
    X(OTP_EXPIRED, 410, "otp_expired", "This code has expired")                                    \
    X(OTP_ATTEMPTS_EXHAUSTED, 410, "otp_attempts_exhausted",                                       \
      "Too many wrong attempts: this code can no longer be verified")                              \
    X(OTP_CANCELLED, 410, "otp_cancelled", "This OTP request was cancelled")                       \
    X(PAYLOAD_TOO_LARGE, 413, "payload_too_large", "Request body is too large")                    \
    X(HEADERS_TOO_LARGE, 431, "headers_too_large", "Request headers are too large")                \
    X(UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type",                                       \
      "Content-Type must be application/json")                                                     \
    X(RATE_LIMITED, 429, "rate_limited", "Too many requests")                                      \
    X(RESEND_TOO_SOON, 429, "resend_too_soon", "Wait before asking for another code")              \
    X(RESEND_LIMIT_REACHED, 429, "resend_limit_reached", "No more resends for this request")       \
    X(PHONE_LOCKED, 429, "phone_locked", "Too many wrong codes for this number: try again later")  \
    X(INTERNAL, 500, "internal_error", "Internal error")                                           \
    X(UNAVAILABLE, 503, "unavailable", "Service unavailable, try again")

typedef enum {
#define OTP_ERR_ENUM(name, status, code, msg) OTP_E_##name,
    OTP_ERRORS(OTP_ERR_ENUM)
#undef OTP_ERR_ENUM
        OTP_E__COUNT
} otp_err;

#define OTP_OK OTP_E_OK

/* HTTP status of an error (200 for OTP_OK); 500 for an out-of-range value. */
int otp_err_status(otp_err e);
/* Stable machine code, e.g. "otp_incorrect". Never NULL. */
const char *otp_err_code(otp_err e);
/* Default human message. Never NULL. */
const char *otp_err_message(otp_err e);

#endif
