/* api/keep.c — what a request keeps for its resends (SPEC 1.5): the code under
 * the `reuse` strategy, and the send's `variables`, so that a resend of a
 * template with placeholders of its own needs nothing but the request id.
 *
 * Both go in one blob, sealed under the server's box key with the request id
 * in the associated data ("<id>:cv"), in the request's code_sealed column: the
 * store already erases that column when the request stops being pending and
 * purges it at expiry, which is the life these need. The sealed text is one
 * byte, the code's length (0 under `rotate`: no code is ever kept then), the
 * code, and the variables as a JSON object (or nothing). The code never passes
 * through jansson, whose buffers are freed without being wiped; every buffer
 * that held it here is wiped. Requests of earlier versions kept the code alone
 * (associated data "<id>:code"); those still open.
 */
#include "api/api.h"
#include "core/otp_code.h"
#include "core/seal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AD_SIZE (OTP_ID_SIZE + 8)
#define TEXT_MAX (OTP_CODE_SEALED_MAX - OTP_SEAL_OVERHEAD)

/* The variables as compact JSON (malloc'd), or NULL if none or out of memory. */
static char *vars_json(const otp_api_vars *vars)
{
    if (!vars || vars->n == 0)
        return NULL;
    json_t *v = json_object();
    for (size_t i = 0; v && i < vars->n; i++)
        json_object_set_new(v, vars->names[i], json_string(vars->values[i]));
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return text;
}

size_t otp_api_keep_seal(const otp_api *api, const char *request_id, const char *code,
                         const otp_api_vars *vars, uint8_t out[OTP_CODE_SEALED_MAX])
{
    if (!code && (!vars || vars->n == 0))
        return 0; /* `rotate` without variables, the common send: nothing to keep */
    size_t clen = code ? strlen(code) : 0;
    if (clen > OTP_CODE_MAX_LEN)
        return 0;
    char *vj = vars_json(vars);
    size_t vlen = vj ? strlen(vj) : 0;
    if (1 + clen + vlen > TEXT_MAX)
        vlen = 0; /* the variables do not fit: a resend then needs them again */
    size_t len = 0;
    if (clen + vlen > 0) {
        char text[TEXT_MAX];
        text[0] = (char)clen;
        memcpy(text + 1, code ? code : "", clen);
        memcpy(text + 1 + clen, vj ? vj : "", vlen);
        char ad[AD_SIZE];
        snprintf(ad, sizeof(ad), "%s:cv", request_id);
        otp_seal(api->secrets.box_key, ad, text, 1 + clen + vlen, out);
        len = 1 + clen + vlen + OTP_SEAL_OVERHEAD;
        sodium_memzero(text, sizeof(text));
    }
    free(vj);
    return len;
}

bool otp_api_keep_open(const otp_api *api, const char *request_id, const uint8_t *sealed,
                       size_t len, char code[OTP_CODE_MAX_LEN + 1], json_t **ret_vars)
{
    char ad[AD_SIZE];
    char text[TEXT_MAX + 1];
    code[0] = '\0';
    *ret_vars = NULL;
    if (len <= OTP_SEAL_OVERHEAD || len > OTP_CODE_SEALED_MAX)
        return false;
    snprintf(ad, sizeof(ad), "%s:cv", request_id);
    if (otp_unseal(api->secrets.box_key, ad, sealed, len, text) != 0) {
        /* An earlier version's: the code alone. */
        snprintf(ad, sizeof(ad), "%s:code", request_id);
        if (len > OTP_SEAL_OVERHEAD + OTP_CODE_MAX_LEN ||
            otp_unseal(api->secrets.box_key, ad, sealed, len, code) != 0) {
            code[0] = '\0';
            return false;
        }
        return true;
    }
    size_t n = len - OTP_SEAL_OVERHEAD, clen = (unsigned char)text[0];
    bool ok = clen <= OTP_CODE_MAX_LEN && 1 + clen <= n;
    if (ok) {
        memcpy(code, text + 1, clen);
        code[clen] = '\0';
        if (n > 1 + clen) {
            json_t *v = json_loadb(text + 1 + clen, n - 1 - clen, 0, NULL);
            if (json_is_object(v))
                *ret_vars = v;
            else
                json_decref(v);
        }
    }
    sodium_memzero(text, sizeof(text));
    return ok;
}
