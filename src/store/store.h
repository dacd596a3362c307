/* store/store.h — the one storage interface; every backend implements it.
 *
 * Writes are transactions ("txns") described by plain C structs and handed to
 * the backend with ops->submit(). The backend runs each txn atomically and calls
 * txn->done exactly once, from one of its own threads, after the txn's effects
 * are durable (or after it failed: then nothing of it is stored). This lets the
 * SQLite backend batch many txns into one commit (group commit) and a PostgreSQL
 * backend run them on a connection pool, while HTTP threads never wait for a
 * disk sync. otp_store_exec() is the blocking form for the CLI and dispatchers.
 *
 * Reads are plain synchronous calls, safe from any thread.
 *
 * No backend type leaks out of this header: callers see ids, strings and
 * integers. Money is int64 paise; times are int64 ms since the epoch (UTC).
 * Every business decision that must be atomic with its write (the wallet check,
 * the attempt counter via otp_req_guess) happens inside the txn.
 */
#ifndef OTP_STORE_STORE_H
#define OTP_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/apikey.h"
#include "core/otp_code.h"
#include "core/otp_state.h"
#include "core/phone.h"
#include "util/error.h"
#include "util/ids.h"

#define OTP_NAME_SIZE 128
#define OTP_NOTE_SIZE 256
#define OTP_PROVIDER_NAME_SIZE 32
#define OTP_PROVIDER_MSGID_SIZE 128
#define OTP_ERROR_TEXT_SIZE 256

typedef struct otp_store otp_store;
typedef struct otp_txn otp_txn;

/* ---- Records ------------------------------------------------------------ */

typedef struct otp_account {
    int64_t id;                    /* internal */
    char public_id[OTP_ID_SIZE];   /* "acc_…" */
    char name[OTP_NAME_SIZE];      /* unique */
    int64_t balance;               /* paise, >= 0 */
    char currency[4];              /* "INR" */
    int64_t price_per_segment;     /* paise, default 25 */
    int64_t low_balance_threshold; /* paise, default 10000 */
    int64_t created_at_ms;
} otp_account;

typedef struct otp_key {
    int64_t id;
    char public_id[OTP_ID_SIZE]; /* "key_…" */
    int64_t account_id;
    char prefix[OTP_APIKEY_PREFIX_LEN + 1];
    char name[OTP_NAME_SIZE];
    bool test;
    int64_t created_at_ms;
    int64_t last_used_at_ms; /* 0 = never */
    int64_t revoked_at_ms;   /* 0 = active */
} otp_key;

/* What authentication needs, found by the key's SHA-256. */
typedef struct otp_key_auth {
    int64_t key_id;
    int64_t account_id;
    char account_public_id[OTP_ID_SIZE];
    char account_name[OTP_NAME_SIZE]; /* the default {{appName}} */
    bool test;
    bool revoked;
    int64_t last_used_at_ms;
} otp_key_auth;

/* Counts for operators and tests ("nothing stored, nothing charged"). */
typedef struct otp_account_stats {
    int64_t requests;
    int64_t messages;
    int64_t ledger_entries;
    int64_t ledger_sum; /* paise; always equals the balance */
    int64_t balance;
} otp_account_stats;

/* One message taken from the outbox by a dispatcher. */
typedef struct otp_outbox_msg {
    int64_t id;
    char public_id[OTP_ID_SIZE]; /* "msg_…" (the AEAD associated data) */
    char request_id[OTP_ID_SIZE];
    int64_t account_id;
    char to[OTP_PHONE_SIZE];
    uint8_t *sealed; /* owned by the batch */
    size_t sealed_len;
    int attempts; /* including this one */
    int segments;
    int64_t created_at_ms;
    int64_t expires_at_ms; /* of its request: unsent by then = failed */
} otp_outbox_msg;

/* A dispatcher's verdict on one claimed message. */
typedef struct otp_outbox_report {
    int64_t id;
    otp_msg_status status; /* SENT, FAILED, or QUEUED (retry later) */
    char provider[OTP_PROVIDER_NAME_SIZE];
    char provider_message_id[OTP_PROVIDER_MSGID_SIZE];
    char error[OTP_ERROR_TEXT_SIZE]; /* "" if none */
    int64_t next_attempt_at_ms;      /* for QUEUED */
} otp_outbox_report;

/* ---- Transactions -------------------------------------------------------- */

typedef enum {
    OTP_TXN_SEND,      /* create request + message, charge wallet */
    OTP_TXN_VERIFY,    /* one guess against a request */
    OTP_TXN_KEY_TOUCH, /* set a key's last_used_at */
    OTP_TXN_ACCOUNT_CREATE,
    OTP_TXN_KEY_CREATE,
    OTP_TXN_KEY_REVOKE,
    OTP_TXN_WALLET_CREDIT,
    OTP_TXN_OUTBOX_CLAIM,  /* lease due messages to a dispatcher */
    OTP_TXN_OUTBOX_REPORT, /* record the outcome of claimed messages */
} otp_txn_kind;

typedef struct otp_txn_send {
    /* in */
    int64_t account_id;
    int64_t key_id;
    bool test; /* test key: no charge (SPEC 1.1) */
    char request_id[OTP_ID_SIZE];
    char message_id[OTP_ID_SIZE];
    char phone[OTP_PHONE_SIZE];
    uint8_t code_hash[OTP_CODE_HASH_LEN];
    int code_length;
    int max_attempts;
    int expires_in_s;
    int64_t now_ms;
    int64_t expires_at_ms;
    int segments;               /* charge = account price_per_segment * segments */
    const uint8_t *sealed_text; /* not copied; must live until done */
    size_t sealed_text_len;
    /* out */
    int64_t charged; /* paise */
    int64_t balance_after;
} otp_txn_send;

typedef struct otp_txn_verify {
    /* in */
    int64_t account_id;
    char request_id[OTP_ID_SIZE];
    uint8_t code_hash[OTP_CODE_HASH_LEN]; /* of the guess, under this request id */
    int code_length;                      /* of the guess; mismatch = INVALID_OTP_CODE */
    int64_t now_ms;
    /* out */
    int attempts_left; /* after this guess */
} otp_txn_verify;

typedef struct otp_txn_key_touch {
    int64_t key_id;
    int64_t now_ms;
} otp_txn_key_touch;

typedef struct otp_txn_account_create {
    char public_id[OTP_ID_SIZE];
    char name[OTP_NAME_SIZE];
    int64_t now_ms;
    int64_t ret_id; /* out */
} otp_txn_account_create;

typedef struct otp_txn_key_create {
    int64_t account_id;
    char public_id[OTP_ID_SIZE];
    uint8_t hash[OTP_APIKEY_HASH_LEN];
    char prefix[OTP_APIKEY_PREFIX_LEN + 1];
    char name[OTP_NAME_SIZE];
    bool test;
    int64_t now_ms;
} otp_txn_key_create;

typedef struct otp_txn_key_revoke {
    char public_id[OTP_ID_SIZE]; /* OTP_E_NOT_FOUND if no such key */
    int64_t now_ms;
} otp_txn_key_revoke;

typedef struct otp_txn_wallet_credit {
    int64_t account_id;
    int64_t amount; /* paise, > 0 */
    char note[OTP_NOTE_SIZE];
    int64_t now_ms;
    int64_t balance_after; /* out */
} otp_txn_wallet_credit;

typedef struct otp_txn_outbox_claim {
    int64_t now_ms;
    int64_t lease_ms; /* a claim not reported by now+lease is claimed again */
    size_t max;
    /* out: array of n messages, status now SENDING; free with otp_outbox_msgs_free() */
    otp_outbox_msg *msgs;
    size_t n;
} otp_txn_outbox_claim;

typedef struct otp_txn_outbox_report {
    const otp_outbox_report *reports; /* not copied */
    size_t n;
    int64_t now_ms;
} otp_txn_outbox_report;

struct otp_txn {
    otp_txn_kind kind;
    union {
        otp_txn_send send;
        otp_txn_verify verify;
        otp_txn_key_touch key_touch;
        otp_txn_account_create account_create;
        otp_txn_key_create key_create;
        otp_txn_key_revoke key_revoke;
        otp_txn_wallet_credit wallet_credit;
        otp_txn_outbox_claim outbox_claim;
        otp_txn_outbox_report outbox_report;
    } u;
    /* out: OTP_OK, a business error (e.g. OTP_E_INSUFFICIENT_BALANCE, whose txn
     * wrote nothing), or OTP_E_UNAVAILABLE / OTP_E_INTERNAL. */
    otp_err err;
    /* Called once, from a store thread, when the outcome is final; may be NULL. */
    void (*done)(otp_txn *txn);
    void *user;
    otp_txn *next; /* backend-private queue link */
};

/* ---- The interface ------------------------------------------------------- */

typedef void (*otp_account_cb)(const otp_account *a, void *ctx);
typedef void (*otp_key_cb)(const otp_key *k, void *ctx);

typedef struct otp_store_ops {
    const char *name; /* "sqlite", "postgres" */
    /* Stops accepting txns, finishes (commits) every txn already submitted,
     * then frees everything. Accepts NULL. */
    void (*close)(otp_store *s);
    /* Queues txn; txn->done will be called exactly once. Never blocks on I/O. */
    void (*submit)(otp_store *s, otp_txn *txn);

    int (*schema_version)(otp_store *s);
    otp_err (*key_lookup)(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN], otp_key_auth *ret);
    /* By public id ("acc_…") or by name. OTP_E_NOT_FOUND if none. */
    otp_err (*account_find)(otp_store *s, const char *id_or_name, otp_account *ret);
    otp_err (*account_get)(otp_store *s, int64_t account_id, otp_account *ret);
    otp_err (*account_list)(otp_store *s, otp_account_cb cb, void *ctx);
    otp_err (*key_list)(otp_store *s, int64_t account_id, otp_key_cb cb, void *ctx);
    otp_err (*account_stats)(otp_store *s, int64_t account_id, otp_account_stats *ret);
} otp_store_ops;

/* Every backend's handle starts with this. */
struct otp_store {
    const otp_store_ops *ops;
};

typedef struct otp_store_options {
    bool migrate;   /* apply pending migrations at open (else refuse an old schema) */
    int read_conns; /* hint: readers expected in parallel */
    int max_batch;  /* most txns in one commit (group commit), default 256 */
} otp_store_options;

/* Latest schema version this binary knows. */
#define OTP_SCHEMA_VERSION 1

/* Opens the store named by url: "sqlite:PATH" (or a bare path) or "postgres://…".
 * On error returns -1 and writes a one-line reason into err. */
int otp_store_open(const char *url, const otp_store_options *opt, otp_store **ret, char *err,
                   size_t errlen);
/* Submits txn and waits for its outcome; returns txn->err. txn->done must be NULL. */
otp_err otp_store_exec(otp_store *s, otp_txn *txn);
/* Frees a claim's messages (accepts NULL). */
void otp_outbox_msgs_free(otp_outbox_msg *msgs, size_t n);

static inline void otp_store_close(otp_store *s)
{
    if (s)
        s->ops->close(s);
}

#endif
