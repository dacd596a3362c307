/* api/idempotency.c — SPEC 1.9: a send or resend with an idempotencyKey runs at
 * most once per account and key.
 *
 * The handler fingerprints the request (SHA-256 of the route and the body
 * re-serialised with sorted keys and no whitespace, so two clients that order
 * their fields differently still match) and, because every field of the reply
 * is known before the transaction (ids, expiry and attempts are chosen here),
 * writes the reply's data JSON up front. Both ride inside the SEND or RESEND txn:
 * the store looks the key up, and either replays the stored reply, refuses a
 * different fingerprint (409 idempotency_key_reused), or does the work and keeps
 * the record, all in the one transaction. So a duplicate can only see the first
 * committed (and is replayed) or not at all (and is the first): twenty identical
 * sends racing each other give one request, one SMS, one debit and twenty equal
 * answers. Errors write nothing, so they are never remembered. Test keys and
 * live keys of one account have separate key spaces.
 */
#include "api/api.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define IDEMPOTENCY_KEY_MAX 255

static bool printable_ascii(const char *s, size_t min, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (s[n] < 0x20 || s[n] > 0x7e)
            return false;
    return n >= min && n <= max;
}

bool otp_api_idem_init(otp_http_req *req, json_t *body, bool test, otp_idem *idem)
{
    const char *key;
    memset(idem, 0, sizeof(*idem));
    if (!otp_api_str_field(req, body, "idempotencyKey", &key))
        return false;
    if (!key)
        return true;
    if (!printable_ascii(key, 1, IDEMPOTENCY_KEY_MAX)) {
        otp_api_invalid_field(req, "idempotencyKey",
                              "idempotencyKey must be 1 to 255 printable ASCII characters");
        return false;
    }
    char *canon = json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT);
    if (!canon) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return false;
    }
    const char *route = otp_http_route(req);
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    crypto_hash_sha256_update(&h, (const unsigned char *)route, strlen(route));
    crypto_hash_sha256_update(&h, (const unsigned char *)"\n", 1);
    crypto_hash_sha256_update(&h, (const unsigned char *)canon, strlen(canon));
    crypto_hash_sha256_final(&h, idem->fingerprint);
    free(canon);
    idem->use = true;
    /* Test keys' keys are a space of their own: stored behind a byte no
     * client key can hold, so a test send never stands in for a live one (nor
     * tells a test key which keys live keys used). */
    size_t at = 0;
    if (test)
        idem->key[at++] = OTP_IDEM_TEST_MARK;
    memcpy(idem->key + at, key, strlen(key) + 1);
    return true;
}

/* Keeps text (malloc'd, or NULL after a failed allocation) as the reply. */
static bool keep_reply(otp_idem *idem, int status, char *text, char **ret_text)
{
    if (!text)
        return false;
    idem->response = text;
    idem->status = status;
    *ret_text = text;
    return true;
}

bool otp_api_idem_set_reply(otp_idem *idem, int status, const json_t *data, char **ret_text)
{
    return keep_reply(idem, status, json_dumps(data, JSON_COMPACT), ret_text);
}

bool otp_api_idem_set_reply_text(otp_idem *idem, int status, const char *json, size_t len,
                                 char **ret_text)
{
    return keep_reply(idem, status, strndup(json, len), ret_text);
}

bool otp_api_idem_replay(otp_http_req *req, otp_idem *idem)
{
    bool replayed = idem->use && idem->replayed;
    if (replayed) {
        json_t *data = idem->replay_response ? json_loads(idem->replay_response, 0, NULL) : NULL;
        if (!data) {
            otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        } else {
            otp_http_add_header(req, "Idempotent-Replayed", "true");
            otp_http_reply_data(req, idem->replay_status, data);
        }
    }
    free(idem->replay_response);
    idem->replay_response = NULL;
    return replayed;
}
