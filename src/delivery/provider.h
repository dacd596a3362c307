/* delivery/provider.h — the one SMS provider interface; every provider implements it.
 *
 * A provider is created from its INI section ([provider.NAME], with type = file |
 * http | smpp) and hands SMS texts to a gateway. send() is called from a
 * dispatcher thread with a batch and must fill one result per message: accepted,
 * temporary failure (retry, maybe on the next provider) or permanent failure.
 * Providers never see the store; they must not log texts (they contain codes).
 */
#ifndef OTP_DELIVERY_PROVIDER_H
#define OTP_DELIVERY_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/config.h"

typedef struct otp_sms {
    const char *message_id;
    const char *to;              /* E.164 */
    const char *text;            /* UTF-8; contains the code */
    const char *sender_id;       /* may be NULL */
    const char *dlt_template_id; /* may be NULL */
    int segments;
    int64_t created_at_ms;
} otp_sms;

typedef enum {
    OTP_SEND_ACCEPTED = 0,
    OTP_SEND_TEMPORARY, /* retry later / next provider */
    OTP_SEND_PERMANENT, /* never retry: the message fails */
} otp_send_outcome;

typedef struct otp_send_result {
    otp_send_outcome outcome;
    char provider_message_id[128]; /* "" if the gateway gave none */
    char error[256];               /* "" on success; never contains the text */
} otp_send_result;

typedef struct otp_provider otp_provider;

typedef struct otp_provider_ops {
    const char *type; /* "file", "http", "smpp" */
    /* Builds a provider from config section `section` (e.g. "provider.file").
     * On a bad setting returns -1 with a message naming it in err. */
    int (*create)(const otp_config *cfg, const char *section, otp_provider **ret, char *err,
                  size_t errlen);
    void (*destroy)(otp_provider *p); /* accepts NULL */
    void (*send)(otp_provider *p, const otp_sms *msgs, size_t n, otp_send_result *results);
    bool (*ready)(otp_provider *p); /* usable right now (for /readyz) */
} otp_provider_ops;

/* Every provider's handle starts with this. */
struct otp_provider {
    const otp_provider_ops *ops;
    char name[32]; /* the NAME of [provider.NAME] */
};

/* Looks up a provider type by name ("file", …); NULL if unknown. */
const otp_provider_ops *otp_provider_type(const char *type);

extern const otp_provider_ops otp_provider_file_ops;

#endif
