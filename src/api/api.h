/* api/api.h — the HTTP API's handlers and what they share.
 *
 * One file per resource (otp.c: send and verify, resend.c, status.c: GET and
 * cancel of a request, messages.c, test_inbox.c, wallet.c, ops.c, and admin.c:
 * the operators' admin API); auth.c turns the X-API-Key header into an account; render.c builds an
 * OTP's SMS text from the account's templates; idempotency.c is SPEC 1.9's fingerprint and replay;
 * routes.c is the route table handed to http/. Handlers validate input, call
 * core/ for the pure work (codes, hashes, texts, phones) and store/ for the
 * atomic part, and answer in the SPEC 1.2 envelope.
 */
#ifndef OTP_API_API_H
#define OTP_API_API_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/otp_code.h"
#include "core/secrets.h"
#include "core/sms_text.h"
#include "core/template.h"
#include "delivery/dispatcher.h"
#include "http/http.h"
#include "store/store.h"

typedef struct otp_api_reads otp_api_reads;

typedef struct otp_api {
    otp_store *store;
    otp_secrets secrets;
    otp_dispatcher *dispatcher; /* may be NULL (no delivery) */
    otp_api_reads *reads;       /* the read threads (reads.c); NULL: none, read inline */
} otp_api;

extern const otp_route otp_api_routes[];
extern const size_t otp_api_nroutes;

/* ---- read handlers off the HTTP threads (reads.c) ---- */

/* Starts that many read threads (the store's read_slots; 0 = none: every read
 * handler then runs on its HTTP thread). Returns 0, or -1 with none started. */
int otp_api_reads_start(otp_api *api, int threads);
/* Runs handler (a route's whole handler, which replies as usual) on a read
 * thread with the connection parked, or right here when there are none. */
void otp_api_read(otp_http_req *req, void *app, otp_http_handler handler);
/* What a handler that may run through otp_api_read() calls before handing its
 * request to a txn (whose done callback resumes it): otp_http_suspend() on an
 * HTTP thread; on a read thread, where the request is parked already, it is
 * passed on to the txn (otp_http_pass_on) instead of resumed when the handler
 * returns. Nothing may touch req after the submit, on either thread. */
void otp_api_park(otp_http_req *req, otp_http_handler finish);
/* From the thread holding a parked request, instead of resuming it (a txn's
 * done callback): handler, which replies, runs on a read thread, which then
 * resumes req. Returns false, with nothing done, when no read thread will run
 * it (none: SQLite; a stop; no memory): the caller resumes req itself, and its
 * finish reads on the HTTP thread. */
bool otp_api_read_after(otp_http_req *req, otp_api *api, otp_http_handler handler);
/* Whether req's handler may wait on the store here: always without read
 * threads (SQLite), and on the read thread that runs req. On an HTTP thread
 * with read threads, a send or a verify that finds something it needs not
 * cached (a key, an account's limits, a template, a lease of the key's
 * tokens) hands itself off (otp_api_hand_off) instead of reading. */
bool otp_api_may_block(const otp_api *api, const otp_http_req *req);
/* Runs req's route handler again from the start on a read thread, where it
 * may wait (otp_api_read). The caller returns at once and touches req no more;
 * it must not have replied, nor attached anything to req. A token req took
 * from its key's bucket on this thread (otp_api_note_token) goes along, so
 * the second run takes none (otp_api_token_taken). */
void otp_api_hand_off(otp_http_req *req, otp_api *api);
/* The key's token bucket (guard.c) let req go on this thread: req, or NULL at
 * the start of a request (otp_api_authenticate), before any take. */
void otp_api_note_token(const otp_http_req *req);
/* Whether req is a second run whose first run took its token already. */
bool otp_api_token_taken(const otp_http_req *req);
/* Answers the reads not yet started 503 (a txn's read-back not yet started
 * runs on its HTTP thread instead: the txn has committed); reads arriving
 * after that run on their HTTP thread. The running ones go on: their
 * requests stay parked until they finish, and main.c waits for those (up to
 * server.stop_timeout) as for a request parked on a txn, before it stops the
 * HTTP server. */
void otp_api_reads_stop(otp_api *api);
/* Joins the read threads once otp_api_reads_stop() has been called and no
 * request is parked any more (otp_http_parked). */
void otp_api_reads_join(otp_api *api);
/* Detaches them instead, for a stop that gives up on a read still running
 * (the process is about to exit). */
void otp_api_reads_abandon(otp_api *api);
/* Stops them if needed and frees them. Call after otp_http_stop(). */
void otp_api_reads_free(otp_api *api);

/* Authenticates the request's API key (X-API-Key or Authorization: Bearer),
 * then takes a token from its bucket (otp_guard_request). Returns true and
 * writes *ret; or returns false after replying 401 (or 429, or 503), or after
 * handing req off to a read thread (otp_api_hand_off): the caller returns at
 * once either way. */
bool otp_api_authenticate(otp_http_req *req, otp_api *api, otp_key_auth *ret);
/* The key the request presents (X-API-Key, else Authorization: Bearer), or NULL. */
const char *otp_api_presented_key(otp_http_req *req);

/* A time as the replies write it ("2026-02-15T10:30:00.000Z"); the _or_null
 * form answers JSON null for 0 (never happened). A text field, or JSON null
 * when it is NULL or empty. New references, for json_pack's "o". */
json_t *otp_api_json_time(int64_t ms);
json_t *otp_api_json_time_or_null(int64_t ms);
json_t *otp_api_json_str_or_null(const char *s);

/* Replies invalid_request with details.field and a message naming the field. */
void otp_api_invalid_field(otp_http_req *req, const char *field, const char *message);

/* True if the store implements this read; else replies 503 and returns false
 * (a backend that does not have the call yet). */
#define OTP_API_HAS_READ(req, api, fn)                                                             \
    ((api)->store->ops->fn ? true                                                                  \
                           : (otp_http_reply_error((req), OTP_E_UNAVAILABLE, NULL, NULL), false))

/* ---- request fields (otp.c) ---- */

/* An optional string field; absent or null gives NULL. Returns false after
 * replying invalid_request if it is present but not a string. */
bool otp_api_str_field(otp_http_req *req, json_t *body, const char *name, const char **ret);
/* An optional integer field within [min, max]; absent or null keeps *ret.
 * Returns false after replying invalid_request. */
bool otp_api_int_field(otp_http_req *req, json_t *body, const char *name, int min, int max,
                       int *ret);
/* A query-string integer within [min, max]; absent keeps *ret. Returns false
 * after replying invalid_request naming the argument. */
bool otp_api_int_query(otp_http_req *req, const char *name, int min, int max, int *ret);

/* ---- SMS texts from templates (render.c) ---- */

#define OTP_API_MAX_VARS 32

/* The send's `variables`, borrowed from its JSON body. */
typedef struct otp_api_vars {
    const char *app_name; /* variables.appName, or NULL */
    const char *names[OTP_API_MAX_VARS];
    const char *values[OTP_API_MAX_VARS];
    size_t n;
} otp_api_vars;

/* What a request keeps for its resends (keep.c): seals the code (NULL: none,
 * under `rotate`) and the send's variables into out; returns the sealed length,
 * 0 if there is nothing to keep. Variables that do not fit are not kept. */
size_t otp_api_keep_seal(const otp_api *api, const char *request_id, const char *code,
                         const otp_api_vars *vars, uint8_t out[OTP_CODE_SEALED_MAX]);
/* Opens it: the code into code ("" if none) and the variables into *ret_vars (a
 * new reference to a JSON object, or NULL). False if it does not open. */
bool otp_api_keep_open(const otp_api *api, const char *request_id, const uint8_t *sealed,
                       size_t len, char code[OTP_CODE_MAX_LEN + 1], json_t **ret_vars);

/* Validates body.variables (absent or null: none) into *ret, borrowing its
 * strings. Returns false after replying invalid_request (details.field
 * "variables"). */
bool otp_api_parse_vars(otp_http_req *req, json_t *body, otp_api_vars *ret);

/* The request request_id of auth's account and key mode (test keys see test
 * requests only, live keys live ones): OTP_OK and *ret_info, or
 * OTP_E_OTP_NOT_FOUND (unknown, another account's or the other mode's, with
 * *ret_info untouched) or OTP_E_UNAVAILABLE. (status.c) */
otp_err otp_api_request_get(otp_api *api, const otp_key_auth *auth, const char *request_id,
                            otp_request_info *ret_info);

/* The template a text is rendered from: id_or_name (a "tpl_" id or a name;
 * "default" names the account's default unless a template is called that), or
 * NULL for the account's default template, or the built-in SPEC 4 text
 * (public_id ""). Returns OTP_OK, OTP_E_NOT_FOUND (id_or_name given and
 * unknown) or OTP_E_UNAVAILABLE. Served from api/template_cache.h when it can.
 * With ret_uncached, a look-up the cache cannot answer is not made: it sets
 * *ret_uncached and returns OTP_E_UNAVAILABLE (for a caller that must not wait
 * on the store there: otp_api_may_block). */
otp_err otp_api_template(otp_api *api, const otp_key_auth *auth, const char *id_or_name,
                         otp_template *ret, bool *ret_uncached);

/* Renders tpl for one message into out (OTP_SMS_TEXT_MAX + 1 bytes). Returns
 * true and writes the length and segment count; else wipes out, replies 400
 * invalid_request with the renderer's sentence and details.field = field, and
 * returns false. */
bool otp_api_render(otp_http_req *req, const otp_template *tpl, const otp_template_vars *v,
                    const char *field, char *out, size_t *ret_len, int *ret_segments);

/* ---- idempotency (idempotency.c) ---- */

/* Reads body.idempotencyKey into *idem (absent or null: idem->use = false) and,
 * when there is one, the fingerprint of this route and body (key order and
 * whitespace do not matter); a test key's (test) goes in the test keys' key
 * space. Returns false after replying invalid_request. */
bool otp_api_idem_init(otp_http_req *req, json_t *body, bool test, otp_idem *idem);
/* Sets the reply that the store keeps with the key: status and data, whose JSON
 * text is written to *ret_text (malloc'd; the caller frees it after the txn is
 * done). Returns false on OOM. */
bool otp_api_idem_set_reply(otp_idem *idem, int status, const json_t *data, char **ret_text);
/* The same with the data object's JSON text already made (len bytes). */
bool otp_api_idem_set_reply_text(otp_idem *idem, int status, const char *json, size_t len,
                                 char **ret_text);
/* After the txn: if the store replayed a stored reply, answers it with
 * Idempotent-Replayed: true and returns true. Frees replay_response either way. */
bool otp_api_idem_replay(otp_http_req *req, otp_idem *idem);

/* ---- handlers ---- */

void otp_api_send(otp_http_req *req, void *app);
void otp_api_verify(otp_http_req *req, void *app);
void otp_api_resend(otp_http_req *req, void *app);
void otp_api_status(otp_http_req *req, void *app);
void otp_api_cancel(otp_http_req *req, void *app);
void otp_api_otp_post_fallback(otp_http_req *req, void *app);
void otp_api_message(otp_http_req *req, void *app);
void otp_api_test_messages(otp_http_req *req, void *app);
void otp_api_wallet(otp_http_req *req, void *app);
void otp_api_wallet_transactions(otp_http_req *req, void *app);
void otp_api_admin_account(otp_http_req *req, void *app); /* admin.c */
void otp_api_admin_credit(otp_http_req *req, void *app);
void otp_api_healthz(otp_http_req *req, void *app);
void otp_api_readyz(otp_http_req *req, void *app);
void otp_api_provider_dlr(otp_http_req *req, void *app); /* providers.c */
void otp_api_test_clock(otp_http_req *req, void *app);

#endif
