/* delivery/provider.c — the table of provider types that [provider.NAME] sections
 * may name with `type = …`, and what every provider shares: reading its section's
 * settings with errors that name the setting, the breaker settings, and the
 * words of delivery-report statuses. A new provider adds one row to the table and
 * nothing else in the dispatcher or main changes. */
#include "delivery/provider.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define KEY_SIZE 192

static const otp_provider_ops *const types[] = {
    &otp_provider_file_ops,
    &otp_provider_http_ops,
    &otp_provider_smpp_ops,
};

const otp_provider_ops *otp_provider_type(const char *type)
{
    if (!type)
        return NULL;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i]->type, type) == 0)
            return types[i];
    return NULL;
}

const char *otp_provider_type_names(void)
{
    return "file, http, smpp"; /* keep in step with types[] */
}

static void full_key(const char *section, const char *key, char *out)
{
    snprintf(out, KEY_SIZE, "%s.%s", section, key);
}

const char *otp_provider_get(const otp_config *cfg, const char *section, const char *key)
{
    char k[KEY_SIZE];
    full_key(section, key, k);
    return otp_config_get(cfg, k);
}

int otp_provider_int(const otp_config *cfg, const char *section, const char *key, long def,
                     long min, long max, long *ret, char *err, size_t errlen)
{
    char k[KEY_SIZE];
    full_key(section, key, k);
    if (!otp_config_get(cfg, k)) {
        *ret = def;
        return 0;
    }
    return otp_config_int(cfg, k, min, max, ret, err, errlen);
}

int otp_provider_bool(const otp_config *cfg, const char *section, const char *key, bool def,
                      bool *ret, char *err, size_t errlen)
{
    char k[KEY_SIZE];
    full_key(section, key, k);
    if (!otp_config_get(cfg, k)) {
        *ret = def;
        return 0;
    }
    return otp_config_bool(cfg, k, ret, err, errlen);
}

int otp_provider_str(const otp_config *cfg, const char *section, const char *key, const char *def,
                     bool required, char *out, size_t outsize, char *err, size_t errlen)
{
    char k[KEY_SIZE];
    full_key(section, key, k);
    const char *v = otp_config_get(cfg, k);
    if (!v)
        v = def ? def : "";
    if (required && !*v) {
        if (otp_config_get(cfg, k))
            snprintf(err, errlen, "%s (from %s): must not be empty", k, otp_config_origin(cfg, k));
        else
            snprintf(err, errlen, "%s: not set, and this provider needs it", k);
        return -1;
    }
    if (strlen(v) >= outsize) {
        /* Never echo a secret (password, dlr_secret, headers with a token). */
        bool secret = strstr(key, "password") || strstr(key, "secret") || strstr(key, "header");
        if (secret)
            snprintf(err, errlen, "%s (from %s): longer than %zu bytes", k,
                     otp_config_origin(cfg, k), outsize - 1);
        else
            snprintf(err, errlen, "%s = \"%.48s…\" (from %s): longer than %zu bytes", k, v,
                     otp_config_origin(cfg, k), outsize - 1);
        return -1;
    }
    snprintf(out, outsize, "%s", v);
    return 0;
}

typedef struct key_check {
    const otp_provider_ops *ops;
    const char *section;
    char *err;
    size_t errlen;
    bool bad;
} key_check;

static void check_key(const char *key, const char *origin, void *ctx)
{
    static const char *const common[] = {"type", "breaker_threshold", "breaker_cooldown", NULL};
    key_check *kc = ctx;
    if (kc->bad)
        return;
    for (const char *const *k = common; *k; k++)
        if (strcmp(*k, key) == 0)
            return;
    for (const char *const *k = kc->ops->keys; k && *k; k++)
        if (strcmp(*k, key) == 0)
            return;
    snprintf(kc->err, kc->errlen, "%s.%s (from %s): unknown setting for a %s provider", kc->section,
             key, origin, kc->ops->type);
    kc->bad = true;
}

int otp_provider_init(otp_provider *p, const otp_provider_ops *ops, const otp_config *cfg,
                      const char *section, char *err, size_t errlen)
{
    const char *name = strncmp(section, "provider.", 9) == 0 ? section + 9 : "";
    if (!*name || strlen(name) > OTP_PROVIDER_NAME_MAX) {
        snprintf(err, errlen, "[%s]: not a [provider.NAME] section with a NAME of 1 to %d bytes",
                 section, OTP_PROVIDER_NAME_MAX);
        return -1;
    }
    char k[KEY_SIZE];
    full_key(section, "type", k);
    const char *type = otp_config_get(cfg, k);
    if (type && strcmp(type, ops->type) != 0) {
        snprintf(err, errlen, "%s = \"%s\" (from %s): not a %s provider", k, type,
                 otp_config_origin(cfg, k), ops->type);
        return -1;
    }
    key_check kc = {.ops = ops, .section = section, .err = err, .errlen = errlen};
    otp_config_each_key(cfg, section, check_key, &kc);
    if (kc.bad)
        return -1;
    long threshold, cooldown;
    if (otp_provider_int(cfg, section, "breaker_threshold", 3, 1, 1000, &threshold, err, errlen) ||
        otp_provider_int(cfg, section, "breaker_cooldown", 30000, 100, 3600000, &cooldown, err,
                         errlen))
        return -1;
    p->ops = ops;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->breaker_threshold = (int)threshold;
    p->breaker_cooldown_ms = cooldown;
    p->takes_http_dlr = false;
    return 0;
}

static const char *const status_names[] = {"delivered", "undeliverable", "failed"};

const char *otp_dlr_status_name(otp_dlr_status s)
{
    return (unsigned)s < 3 ? status_names[s] : "unknown";
}

int otp_dlr_status_parse(const char *word, otp_dlr_status *ret)
{
    static const struct {
        const char *word;
        int status; /* -1: intermediate */
    } words[] = {
        {"delivered", OTP_DLR_DELIVERED},
        {"delivrd", OTP_DLR_DELIVERED},
        {"undeliverable", OTP_DLR_UNDELIVERABLE},
        {"undeliv", OTP_DLR_UNDELIVERABLE},
        {"expired", OTP_DLR_UNDELIVERABLE},
        {"deleted", OTP_DLR_UNDELIVERABLE},
        {"failed", OTP_DLR_FAILED},
        {"rejectd", OTP_DLR_FAILED},
        {"rejected", OTP_DLR_FAILED},
        {"acceptd", -1},
        {"accepted", -1},
        {"enroute", -1},
        {"buffred", -1},
        {"buffered", -1},
        {"unknown", -1},
        {"sent", -1},
        {"queued", -1},
    };
    if (!word)
        return -1;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcasecmp(words[i].word, word) == 0) {
            if (words[i].status < 0)
                return 1;
            *ret = (otp_dlr_status)words[i].status;
            return 0;
        }
    }
    return -1;
}
