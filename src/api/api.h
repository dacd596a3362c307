/* api/api.h — the HTTP API's handlers and what they share.
 *
 * One file per resource (otp.c, wallet.c, ops.c); auth.c turns the X-API-Key
 * header into an account; routes.c is the route table handed to http/. Handlers
 * validate input, call core/ for the pure work (codes, hashes, texts, phones)
 * and store/ for the atomic part, and answer in the SPEC 1.2 envelope.
 */
#ifndef OTP_API_API_H
#define OTP_API_API_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/secrets.h"
#include "delivery/dispatcher.h"
#include "http/http.h"
#include "store/store.h"

typedef struct otp_api {
    otp_store *store;
    otp_secrets secrets;
    otp_dispatcher *dispatcher; /* may be NULL (no delivery) */
} otp_api;

extern const otp_route otp_api_routes[];
extern const size_t otp_api_nroutes;

/* Authenticates the request's API key (X-API-Key or Authorization: Bearer).
 * Returns true and writes *ret; or replies 401 (or 503) and returns false. */
bool otp_api_authenticate(otp_http_req *req, otp_api *api, otp_key_auth *ret);

/* Replies invalid_request with details.field and a message naming the field. */
void otp_api_invalid_field(otp_http_req *req, const char *field, const char *message);

void otp_api_send(otp_http_req *req, void *app);
void otp_api_verify(otp_http_req *req, void *app);
void otp_api_wallet(otp_http_req *req, void *app);
void otp_api_healthz(otp_http_req *req, void *app);
void otp_api_readyz(otp_http_req *req, void *app);
void otp_api_test_clock(otp_http_req *req, void *app);

#endif
