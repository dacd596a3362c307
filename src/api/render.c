/* api/render.c — the SMS text of an OTP: which template, and rendering it.
 *
 * A send names a template (templateId: a "tpl_" id or a name) or gets the
 * account's default template, or, when the account has none, SPEC 4's built-in
 * text. The request keeps the id of the template it used (empty for the
 * built-in one), so that a resend renders the same body even if the default
 * changes in between. Templates found are kept for limits.cache_ms
 * (api/template_cache.h), so a send with a template reads none in the steady
 * state. Rendering itself (placeholders, the app-hash and WebOTP lines,
 * GSM-7/UCS-2 segments) is core/template.c; this file only turns its verdicts
 * into 400 invalid_request answers that name the field to fix.
 */
#include "api/api.h"
#include "api/template_cache.h"
#include "util/clock.h"
#include "util/str.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define APP_NAME_MAX 64
#define VAR_VALUE_MAX 256

/* 1..max bytes of UTF-8 text without control characters (a line break in a
 * variable could fake the app-hash or WebOTP lines). */
static bool text_ok(const char *s, size_t min, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
            return false;
    return n >= min && n <= max;
}

bool otp_api_parse_vars(otp_http_req *req, json_t *body, otp_api_vars *ret)
{
    json_t *vars = json_object_get(body, "variables");
    const char *k;
    json_t *v;
    char msg[160];

    memset(ret, 0, sizeof(*ret));
    if (!vars || json_is_null(vars))
        return true;
    if (!json_is_object(vars)) {
        otp_api_invalid_field(req, "variables", "variables must be an object of strings");
        return false;
    }
    if (json_object_size(vars) > OTP_API_MAX_VARS) {
        snprintf(msg, sizeof(msg), "variables may have at most %d entries", OTP_API_MAX_VARS);
        otp_api_invalid_field(req, "variables", msg);
        return false;
    }
    json_object_foreach(vars, k, v)
    {
        if (!json_is_string(v)) {
            otp_api_invalid_field(req, "variables", "variables must be an object of strings");
            return false;
        }
        const char *s = json_string_value(v);
        if (strcmp(k, "appName") == 0) {
            if (!text_ok(s, 1, APP_NAME_MAX)) {
                otp_api_invalid_field(req, "variables",
                                      "variables.appName must be 1 to 64 bytes, no line breaks");
                return false;
            }
            ret->app_name = s;
            continue;
        }
        if (!text_ok(s, 0, VAR_VALUE_MAX)) {
            snprintf(msg, sizeof(msg), "variables.%.*s must be at most %d bytes, no line breaks",
                     otp_utf8_cut(k, 40), k, VAR_VALUE_MAX);
            otp_api_invalid_field(req, "variables", msg);
            return false;
        }
        ret->names[ret->n] = k;
        ret->values[ret->n] = s;
        ret->n++;
    }
    return true;
}

static void builtin_template(otp_template *ret)
{
    memset(ret, 0, sizeof(*ret));
    snprintf(ret->name, sizeof(ret->name), "default");
    otp_str_copy(ret->body, sizeof(ret->body), OTP_DEFAULT_TEMPLATE);
    ret->is_default = true;
}

/* otp_api_template() without the "default" alias. */
static otp_err find_template(otp_api *api, const otp_key_auth *auth, const char *id_or_name,
                             otp_template *ret, bool *ret_uncached)
{
    if (!id_or_name && !auth->default_template_id[0]) {
        builtin_template(ret);
        return OTP_OK;
    }
    if (id_or_name && (!*id_or_name || strlen(id_or_name) >= OTP_TEMPLATE_NAME_SIZE))
        return OTP_E_NOT_FOUND;
    /* The default is looked up by the id the key's row gives it. */
    const char *cached_as = id_or_name ? id_or_name : auth->default_template_id;
    int64_t now = otp_now_ms();
    if (otp_template_cache_get(auth->account_id, cached_as, now, ret))
        return OTP_OK;
    if (!api->store->ops->template_find)
        return id_or_name ? OTP_E_UNAVAILABLE : (builtin_template(ret), OTP_OK);
    if (ret_uncached) {
        *ret_uncached = true;
        return OTP_E_UNAVAILABLE;
    }
    otp_template t;
    otp_err e = api->store->ops->template_find(api->store, auth->account_id, id_or_name, &t);
    if (e == OTP_E_NOT_FOUND && !id_or_name) {
        /* The default was just removed: fall back as if there never was one. */
        builtin_template(ret);
        return OTP_OK;
    }
    if (e == OTP_E_NOT_FOUND)
        return OTP_E_NOT_FOUND;
    if (e)
        return OTP_E_UNAVAILABLE;
    /* The store's default is kept under its own id: within the key's period it
     * may be another template than the one the key's row names. */
    otp_template_cache_put(auth->account_id, id_or_name ? id_or_name : t.public_id, &t, now);
    *ret = t;
    return OTP_OK;
}

otp_err otp_api_template(otp_api *api, const otp_key_auth *auth, const char *id_or_name,
                         otp_template *ret, bool *ret_uncached)
{
    if (ret_uncached)
        *ret_uncached = false;
    if (!id_or_name || strcmp(id_or_name, "default") != 0)
        return find_template(api, auth, id_or_name, ret, ret_uncached);
    /* Whatever "default" resolved to (the built-in text included) is kept
     * under "default", so that neither look-up runs again within the period. */
    int64_t now = otp_now_ms();
    if (otp_template_cache_get(auth->account_id, "default", now, ret))
        return OTP_OK;
    otp_err e = find_template(api, auth, "default", ret, ret_uncached);
    if (e == OTP_E_NOT_FOUND)
        e = find_template(api, auth, NULL, ret, ret_uncached);
    if (!e)
        otp_template_cache_put(auth->account_id, "default", ret, now);
    return e;
}

bool otp_api_render(otp_http_req *req, const otp_template *tpl, const otp_template_vars *v,
                    const char *field, char *out, size_t *ret_len, int *ret_segments)
{
    char err[256] = "";
    size_t len = 0;
    int segments = 0;
    otp_template_result r = otp_template_render(tpl->body, v, out, OTP_SMS_TEXT_MAX + 1, &len,
                                                &segments, err, sizeof(err));
    if (r == OTP_TPL_OK) {
        *ret_len = len;
        *ret_segments = segments;
        return true;
    }
    sodium_memzero(out, OTP_SMS_TEXT_MAX + 1);
    if (r == OTP_TPL_UNKNOWN_PLACEHOLDER)
        field = "variables";
    else if (r == OTP_TPL_BAD_SYNTAX || r == OTP_TPL_NO_CODE)
        field = "templateId";
    char msg[300];
    snprintf(msg, sizeof(msg), "%s", err[0] ? err : "The SMS text cannot be rendered");
    msg[0] = (char)toupper((unsigned char)msg[0]);
    otp_api_invalid_field(req, field, msg);
    return false;
}
