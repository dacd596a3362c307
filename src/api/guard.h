/* api/guard.h — the cheap checks of SPEC 3 that run before the store: the
 * per-key token bucket and the country allow-list; the reply and the log line
 * of every refusal (counted through api/metrics.h). */
#ifndef OTP_API_GUARD_H
#define OTP_API_GUARD_H

#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "api/metrics.h"
#include "core/limits.h"
#include "core/phone.h"

/* Sets the server-wide default limits (from the settings table) and how long
 * an account's limits are cached (ms). Call once at start-up, before serving;
 * without it the built-in defaults apply. */
void otp_guard_configure(const otp_limits *defaults, int cache_ms);

/* The account's effective limits: the defaults with its override text from
 * the store applied (cached for cache_ms per account, so a change made with
 * the CLI takes effect within that time). Returns false on a store error. */
bool otp_guard_limits(otp_api *api, int64_t account_id, otp_limits *ret);

/* Takes a token from the key's bucket: in memory, or through this node's lease
 * when the store shares the bucket between nodes. Returns true if the request
 * may go on; else replies 429 rate_limited with retryAfter (503 if the store
 * cannot be asked), logs a refusal and returns false. Asking the store's
 * bucket on an HTTP thread that may not wait hands req off instead (false). */
bool otp_guard_key(otp_http_req *req, otp_api *api, const otp_key_auth *auth,
                   const otp_limits *lim);

/* Country allow-list on the region libphonenumber derived. Returns true if
 * allowed; else replies 403 country_not_allowed, logs, and returns false. */
bool otp_guard_country(otp_http_req *req, const otp_key_auth *auth, const otp_limits *lim,
                       const otp_phone *phone);

/* Replies to a refusal decided in the store (429 with details.reason and
 * details.retryAfter) and logs it: event=refused reason=… account=… phone=…
 * (masked). reason may be NULL (then the error's code is the reason). */
void otp_guard_refused(otp_http_req *req, const char *account_public_id, const char *phone_e164,
                       otp_err e, const char *reason, int retry_after_s);

/* A pumping block was just written: logs event=sms_pumping_block and counts it. */
void otp_guard_pumping_block(const char *account_public_id, const char *target);

/* The hooks of the handlers (otp.c, resend.c, auth.c): */

/* After authentication: loads the account's limits and takes a token from
 * the key's bucket. Returns false after replying (429, or 503 if the limits
 * cannot be read), or after handing req off to a read thread (a read that
 * would wait on the network: otp_api_hand_off). */
bool otp_guard_request(otp_http_req *req, otp_api *api, const otp_key_auth *auth);

/* Before a send: the country allow-list (false after replying 403), then
 * fills *a for the txn (use, limits, region, log context). phone may be NULL
 * (a resend: the store derives the region from the request's number). Like
 * otp_guard_request, may hand req off instead. */
bool otp_guard_prepare(otp_http_req *req, otp_api *api, const otp_key_auth *auth,
                       const otp_phone *phone, const char *e164, otp_abuse *a);

/* After a txn with *a: replies to an abuse refusal (429 with reason and
 * retryAfter) and returns true; logs and counts a pumping block or a number
 * lock the txn made. Returns false when err is not an abuse refusal (the
 * handler replies as usual). */
bool otp_guard_finish(otp_http_req *req, otp_err err, const otp_abuse *a);

#endif
