/* delivery/provider.h — the one SMS provider interface; every provider implements it.
 *
 * A provider is created from its INI section ([provider.NAME], with type = file |
 * http | smpp) and hands SMS texts to a gateway. send() is called from a
 * dispatcher thread with a batch and must fill one result per message: accepted,
 * temporary failure (retry, maybe on the next provider) or permanent failure.
 * Providers never see the store; they must not log texts (they contain codes).
 *
 * Delivery reports come back in one of two ways. A provider whose gateway pushes
 * them on its own connection (smpp: deliver_sm receipts) hands them to the
 * otp_dlr_sink it was created with, which records them in the store. A provider
 * whose gateway calls back over HTTP (http) sets takes_http_dlr; the API then
 * routes POST /providers/NAME/dlr to it, authenticates the caller with
 * dlr_auth() and decodes the body with dlr_parse().
 */
#ifndef OTP_DELIVERY_PROVIDER_H
#define OTP_DELIVERY_PROVIDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/config.h"
#include "util/error.h"
#include "util/ids.h"

#define OTP_PROVIDER_NAME_MAX 31 /* [provider.NAME]: 1..31 bytes */

typedef struct otp_sms {
    const char *message_id;
    const char *to;              /* E.164 */
    const char *text;            /* UTF-8; contains the code */
    const char *sender_id;       /* may be NULL: the provider's default */
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

/* ---- Delivery reports -------------------------------------------------- */

typedef enum {
    OTP_DLR_DELIVERED = 0,
    OTP_DLR_UNDELIVERABLE, /* the gateway took it but the handset never got it */
    OTP_DLR_FAILED,        /* rejected after acceptance: the message is refunded */
} otp_dlr_status;

/* One delivery report on its way to the store. */
typedef struct otp_dlr otp_dlr;
struct otp_dlr {
    /* in */
    char provider[OTP_PROVIDER_NAME_MAX + 1];
    char provider_message_id[128];
    otp_dlr_status status;
    char error[256]; /* "" if none; never contains the text */
    /* out, written before done() runs: OTP_OK, OTP_E_MESSAGE_NOT_FOUND (no
     * message of this provider has that id, yet), or OTP_E_UNAVAILABLE /
     * OTP_E_INTERNAL; and the matched message's public id. */
    otp_err err;
    char message_id[OTP_ID_SIZE];
    /* Called exactly once, from any thread, when the report is recorded or
     * refused. May free r. */
    void (*done)(otp_dlr *r);
    void *user;
};

/* Where providers send the reports they receive. submit() never blocks on I/O;
 * r must stay valid until r->done runs. */
typedef struct otp_dlr_sink {
    void (*submit)(void *ctx, otp_dlr *r);
    void *ctx;
} otp_dlr_sink;

/* ---- Providers --------------------------------------------------------- */

typedef struct otp_provider otp_provider;

typedef struct otp_provider_ops {
    const char *type; /* "file", "http", "smpp" */
    /* The keys its section may set besides those every provider has (type,
     * breaker_threshold, breaker_cooldown); NULL-terminated. Any other key
     * stops start-up (otp_provider_init): a typo must not pass unnoticed. */
    const char *const *keys;
    /* Builds a provider from config section `section` (e.g. "provider.file").
     * dlr (may be NULL: reports are then dropped) must outlive the provider.
     * On a bad setting returns -1 with a message naming it in err. */
    int (*create)(const otp_config *cfg, const char *section, const otp_dlr_sink *dlr,
                  otp_provider **ret, char *err, size_t errlen);
    void (*destroy)(otp_provider *p); /* accepts NULL */
    void (*send)(otp_provider *p, const otp_sms *msgs, size_t n, otp_send_result *results);
    bool (*ready)(otp_provider *p); /* usable right now (for /readyz); any thread */
    /* HTTP delivery reports, for providers that set takes_http_dlr (else NULL).
     * dlr_auth: true if credential (the X-DLR-Secret header or a Bearer token;
     * may be NULL) is the configured secret, compared in constant time.
     * dlr_parse: fills r's provider, provider_message_id, status and error
     * from a report body; returns 0, 1 for an intermediate state that changes
     * nothing (e.g. "sent"), or -1 with the offending JSON field name in
     * *ret_field. Any thread. */
    bool (*dlr_auth)(otp_provider *p, const char *credential);
    int (*dlr_parse)(otp_provider *p, const json_t *body, otp_dlr *r, const char **ret_field);
} otp_provider_ops;

/* Every provider's handle starts with this; otp_provider_init() fills it. */
struct otp_provider {
    const otp_provider_ops *ops;
    char name[OTP_PROVIDER_NAME_MAX + 1]; /* the NAME of [provider.NAME] */
    int breaker_threshold;                /* all-temporary batches in a row that open it */
    int64_t breaker_cooldown_ms;          /* first pause; doubles per failed probe */
    bool takes_http_dlr;                  /* POST /providers/NAME/dlr is served */
};

/* Looks up a provider type by name ("file", …); NULL if unknown. */
const otp_provider_ops *otp_provider_type(const char *type);
/* "file, http, smpp": the known types, for error messages. */
const char *otp_provider_type_names(void);

/* Starts a provider handle p for section "provider.NAME": checks the section
 * name, that its `type` (if set) is ops->type and that it sets no key this type
 * does not know (ops->keys), and reads the keys every provider has:
 * breaker_threshold (default 3) and breaker_cooldown (ms, default 30000).
 * Returns 0, or -1 with a message naming the setting. */
int otp_provider_init(otp_provider *p, const otp_provider_ops *ops, const otp_config *cfg,
                      const char *section, char *err, size_t errlen);

/* Settings of a provider section, by short key ("url" for provider.NAME.url).
 * They return 0 and write *ret (the default if unset), or -1 with a message
 * naming the setting, its value and where it came from. */
const char *otp_provider_get(const otp_config *cfg, const char *section, const char *key);
int otp_provider_int(const otp_config *cfg, const char *section, const char *key, long def,
                     long min, long max, long *ret, char *err, size_t errlen);
int otp_provider_bool(const otp_config *cfg, const char *section, const char *key, bool def,
                      bool *ret, char *err, size_t errlen);
/* A string setting copied into out (outsize bytes): required ones must be set
 * and non-empty; any must fit (at most outsize - 1 bytes). */
int otp_provider_str(const otp_config *cfg, const char *section, const char *key, const char *def,
                     bool required, char *out, size_t outsize, char *err, size_t errlen);

/* "delivered", "undeliverable", "failed". */
const char *otp_dlr_status_name(otp_dlr_status s);
/* Parses a report status word, case-insensitively: delivered | undeliverable |
 * failed, and the SMPP receipt words DELIVRD, UNDELIV, EXPIRED, DELETED,
 * REJECTD. Returns 0 and writes *ret; 1 for an intermediate state that changes
 * nothing (ACCEPTD, ENROUTE, BUFFRED, UNKNOWN, sent, accepted, queued); -1 if
 * the word is not a status. */
int otp_dlr_status_parse(const char *word, otp_dlr_status *ret);

extern const otp_provider_ops otp_provider_file_ops;
extern const otp_provider_ops otp_provider_http_ops;
extern const otp_provider_ops otp_provider_smpp_ops;

#endif
