/* api/auth.c — API key authentication.
 *
 * The key's format and checksum are checked first, so garbage never reaches the
 * store; then the key's SHA-256 is looked up. Every failure is the same 401, so
 * a caller cannot tell a revoked key from an unknown one. lastUsedAt is written
 * at most about once a minute per key, off the request path.
 *
 * A successful lookup is kept for limits.cache_ms in the key cache
 * (key_cache.h), keyed by the SHA-256: the common request hashes the key once
 * and copies the cached row. A hit also stands for the format and checksum
 * checks (only a real key's SHA-256 is ever cached), so those run on a miss.
 * A miss that must wait on the network (PostgreSQL) is not read on the HTTP
 * thread: the request is handed off to a read thread (api/reads.c).
 */
#include "api/api.h"
#include "api/guard.h"
#include "api/key_cache.h"
#include "core/apikey.h"
#include "util/clock.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOUCH_INTERVAL_MS 60000

static void touch_done(otp_txn *txn)
{
    free(txn);
}

const char *otp_api_presented_key(otp_http_req *req)
{
    const char *key = otp_http_header(req, "X-API-Key");
    if (key)
        return key;
    const char *auth = otp_http_header(req, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        return auth;
    }
    return NULL;
}

bool otp_api_authenticate(otp_http_req *req, otp_api *api, otp_key_auth *ret)
{
    const char *key = otp_api_presented_key(req);
    otp_api_note_token(NULL); /* none taken yet by this request */
    /* The length first: a long header value is never hashed. */
    if (!key || strnlen(key, OTP_APIKEY_LEN + 1) != OTP_APIKEY_LEN) {
        otp_http_reply_error(req, OTP_E_UNAUTHORIZED, NULL, NULL);
        return false;
    }
    uint8_t hash[OTP_APIKEY_HASH_LEN];
    otp_apikey_hash(key, hash);
    int64_t now = otp_now_ms();
    otp_key_auth auth;
    if (!otp_key_cache_get(hash, now, &auth)) {
        if (!otp_apikey_check(key, NULL)) {
            otp_http_reply_error(req, OTP_E_UNAUTHORIZED, NULL, NULL);
            return false;
        }
        if (!otp_api_may_block(api, req)) {
            otp_api_hand_off(req, api);
            return false;
        }
        memset(&auth, 0, sizeof(auth));
        otp_err e = api->store->ops->key_lookup(api->store, hash, &auth);
        if (e == OTP_E_UNAVAILABLE || e == OTP_E_INTERNAL) {
            otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
            return false;
        }
        if (e != OTP_OK || auth.revoked) {
            otp_http_reply_error(req, OTP_E_UNAUTHORIZED, NULL, NULL);
            return false;
        }
        otp_key_cache_put(hash, &auth, now);
    }
    otp_http_log_account(req, auth.account_public_id);
    if (now - auth.last_used_at_ms >= TOUCH_INTERVAL_MS) {
        otp_txn *t = calloc(1, sizeof(*t));
        if (t) {
            t->kind = OTP_TXN_KEY_TOUCH;
            t->u.key_touch.key_id = auth.key_id;
            t->u.key_touch.now_ms = now;
            t->done = touch_done;
            api->store->ops->submit(api->store, t);
            /* The cached row must not ask for another touch on every request
             * until it is read again. */
            otp_key_cache_set_last_used(hash, now);
        }
    }
    /* SPEC 3: the key's token bucket, in front of everything else. */
    if (!otp_guard_request(req, api, &auth))
        return false;
    *ret = auth;
    return true;
}

void otp_api_invalid_field(otp_http_req *req, const char *field, const char *message)
{
    otp_http_reply_error(req, OTP_E_INVALID_REQUEST, message, json_pack("{s:s}", "field", field));
}
