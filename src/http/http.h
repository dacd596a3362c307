/* http/http.h — what handlers see of an HTTP request, and how they answer.
 *
 * The HTTP layer knows nothing about OTPs. A handler receives an otp_http_req
 * with the method, path, route parameters, headers and the whole body (already
 * capped at the configured size). It answers either at once (otp_http_reply_*)
 * or later: otp_http_suspend() parks the connection without holding an HTTP
 * thread, and any thread may then set the reply and call otp_http_resume(). This
 * is how a send waits for its group commit while the thread serves others.
 *
 * Bodies are the SPEC 1.2 envelope: {"data": …} on success, {"code", "message",
 * "details"?} on error, generated from the error table in util/error.h.
 */
#ifndef OTP_HTTP_HTTP_H
#define OTP_HTTP_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct otp_http_req otp_http_req;

typedef void (*otp_http_handler)(otp_http_req *req, void *app);

/* One route: "/otp/{}" matches one non-empty path segment as a parameter. */
typedef struct otp_route {
    const char *method;
    const char *pattern;
    otp_http_handler handler;
} otp_route;

#define OTP_HTTP_MAX_PARAMS 2
#define OTP_HTTP_PARAM_SIZE 96
#define OTP_TRACE_ID_SIZE 40

const char *otp_http_method(const otp_http_req *req);
const char *otp_http_route(const otp_http_req *req);              /* the matched pattern */
otp_http_handler otp_http_route_handler(const otp_http_req *req); /* NULL if none matched */
const char *otp_http_trace_id(const otp_http_req *req);
/* Route parameter i ("{}" in the pattern, left to right), or NULL. */
const char *otp_http_param(const otp_http_req *req, int i);
/* Request header value (case-insensitive name), or NULL. */
const char *otp_http_header(const otp_http_req *req, const char *name);
/* Query-string argument, or NULL. */
const char *otp_http_query(const otp_http_req *req, const char *name);
const char *otp_http_body(const otp_http_req *req, size_t *ret_len);

/* Parses the body as a JSON object (Content-Type must be JSON, nesting depth is
 * capped). Returns OTP_OK and a new reference in *ret, or OTP_E_INVALID_JSON /
 * OTP_E_UNSUPPORTED_MEDIA_TYPE (*ret untouched). */
otp_err otp_http_json_body(otp_http_req *req, json_t **ret);

/* Replies status with {"data": data}. Steals the reference to data. */
void otp_http_reply_data(otp_http_req *req, int status, json_t *data);
/* Replies with e's status and {"code","message","details"?}. message NULL = the
 * table's message; details (may be NULL) is stolen. A 429 with details.retryAfter
 * also gets a Retry-After header; a 405 gets Allow from the router. */
void otp_http_reply_error(otp_http_req *req, otp_err e, const char *message, json_t *details);
/* Replies status with a body already written out: one that is not the JSON
 * envelope (GET /metrics), or an envelope written without jansson (send's
 * 201, GET /otp/{id}). text is copied, content_type must be a static string. */
void otp_http_reply_text(otp_http_req *req, int status, const char *content_type, const char *text,
                         size_t len);
/* Called once per finished request, on an HTTP thread: the matched route
 * (NULL if none matched), the status and the duration in µs (metrics). Set
 * before otp_http_start(); NULL = none. */
typedef void (*otp_http_observer)(const otp_route *route, int status, int64_t duration_us);
void otp_http_set_observer(otp_http_observer fn);
/* Adds a response header (both copied). At most a few per response. */
void otp_http_add_header(otp_http_req *req, const char *name, const char *value);

/* Fields for the request's log line (copied; phone must already be masked). */
void otp_http_log_account(otp_http_req *req, const char *account_id);
void otp_http_log_phone(otp_http_req *req, const char *masked_phone);

/* Parks the connection: the handler returns without replying, and the HTTP
 * thread moves on. Call before handing work to another thread, and only on
 * the HTTP thread, from a handler. Once that thread calls otp_http_resume(),
 * finish(req, app) runs on an HTTP thread, and a reply must be set when it
 * returns. The store's writer only records its outcome and never spends its
 * time building JSON, so there finish replies; the API's read threads
 * (api/reads.c), which no one waits behind, run a whole handler that replies,
 * and their finish does nothing, unless the handler passed the request on to
 * a txn (otp_http_pass_on). Until the resume, the thread holding a parked
 * request may use every function here on it but otp_http_suspend(): nothing
 * else touches the request meanwhile. */
void otp_http_suspend(otp_http_req *req, otp_http_handler finish);
/* From any thread: wakes the parked connection; its finish callback then runs. */
void otp_http_resume(otp_http_req *req);
/* From the thread holding a parked request, instead of resuming it: it stays
 * parked, finish replaces its finish callback, and whoever it is handed to
 * next (a txn's done callback) calls otp_http_resume(). */
void otp_http_pass_on(otp_http_req *req, otp_http_handler finish);

/* Per-request state of a handler, freed (by free_fn) when the request ends. */
void otp_http_set_state(otp_http_req *req, void *state, void (*free_fn)(void *));
void *otp_http_state(const otp_http_req *req);

#endif
