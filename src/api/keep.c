/* api/keep.c — what a request keeps for its resends (SPEC 1.5): the code under
 * the `reuse` strategy, and the send's `variables`, so that a resend of a
 * template with placeholders of its own needs nothing but the request id.
 *
 * Both go in one blob, sealed under the server's box key with the request id
 * in the associated data, in the request's code_sealed column: the store
 * already erases that column when the request stops being pending and purges
 * it at expiry, which is the life these need. The sealed text is the JSON
 * {"c": code, "v": {name: value, …}}, either member absent. Requests of
 * earlier versions kept the code alone (associated data "<id>:code"); those
 * still open.
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

size_t otp_api_keep_seal(const otp_api *api, const char *request_id, const char *code,
                         const otp_api_vars *vars, uint8_t out[OTP_CODE_SEALED_MAX])
{
    if (!code && (!vars || vars->n == 0))
        return 0; /* `rotate` without variables, the common send: nothing to keep */
    json_t *o = json_object();
    json_t *v = vars && vars->n ? json_object() : NULL;
    size_t len = 0;
    if (!o || (vars && vars->n && !v))
        goto out;
    if (code)
        json_object_set_new(o, "c", json_string(code));
    for (size_t i = 0; v && i < vars->n; i++)
        json_object_set_new(v, vars->names[i], json_string(vars->values[i]));
    if (v && json_object_size(v) > 0)
        json_object_set(o, "v", v);
    if (json_object_size(o) == 0)
        goto out;
    char *text = json_dumps(o, JSON_COMPACT);
    if (text && strlen(text) > TEXT_MAX && code) {
        /* The variables do not fit: the code alone (a resend then needs them again). */
        sodium_memzero(text, strlen(text));
        free(text);
        json_object_del(o, "v");
        text = json_dumps(o, JSON_COMPACT);
    }
    if (text && strlen(text) <= TEXT_MAX) {
        char ad[AD_SIZE];
        snprintf(ad, sizeof(ad), "%s:cv", request_id);
        len = strlen(text);
        otp_seal(api->secrets.box_key, ad, text, len, out);
        len += OTP_SEAL_OVERHEAD;
    }
    if (text) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
out:
    json_decref(v);
    json_decref(o);
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
    json_t *o = json_loads(text, 0, NULL);
    sodium_memzero(text, sizeof(text));
    if (!json_is_object(o)) {
        json_decref(o);
        return false;
    }
    const char *c = json_string_value(json_object_get(o, "c"));
    if (c && strlen(c) <= OTP_CODE_MAX_LEN)
        memcpy(code, c, strlen(c) + 1);
    json_t *v = json_object_get(o, "v");
    if (json_is_object(v))
        *ret_vars = json_incref(v);
    json_decref(o); /* the code's copy in the JSON goes with it */
    return true;
}
