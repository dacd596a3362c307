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
#include "core/limits.h"
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
/* 1..255 printable ASCII, after OTP_IDEM_TEST_MARK for a test key's, + NUL */
#define OTP_IDEM_KEY_SIZE 257
#define OTP_IDEM_TEST_MARK '\x01'
#define OTP_APP_NAME_SIZE 65 /* 1..64 bytes + NUL */
#define OTP_APP_HASH_SIZE 12 /* 11 + NUL */
#define OTP_SENDER_ID_SIZE 16
#define OTP_DLT_ID_SIZE 64
#define OTP_DOMAIN_SIZE 128
#define OTP_TEMPLATE_NAME_SIZE 64
#define OTP_TEMPLATE_BODY_SIZE 1025 /* 1024 bytes of UTF-8 + NUL */
#define OTP_CODE_SEALED_MAX 4096    /* what a request keeps for its resends, sealed (api/keep.c) */
#define OTP_REFERENCE_SIZE 129      /* a credit's reference: 1..128 printable ASCII + NUL */

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
    int resend_strategy;                 /* OTP_RESEND_ROTATE (default) or OTP_RESEND_REUSE */
    char webotp_domain[OTP_DOMAIN_SIZE]; /* "" = no WebOTP line */
} otp_account;

enum { OTP_RESEND_ROTATE = 0, OTP_RESEND_REUSE = 1 };

/* An OTP request as GET /otp/{id} shows it (plus what a resend needs). */
typedef struct otp_request_info {
    int64_t id;
    char public_id[OTP_ID_SIZE];
    int64_t account_id;
    bool test;
    char phone[OTP_PHONE_SIZE];
    otp_req_status status; /* stored: never EXPIRED; use otp_req_effective_status() */
    int attempts_left;
    int max_attempts;
    int code_length;
    int expires_in_s;
    int64_t created_at_ms;
    int64_t expires_at_ms;
    int64_t verified_at_ms; /* 0 = not verified */
    int resend_count;
    int64_t last_sent_at_ms;          /* the send or the latest resend */
    char channel[8];                  /* "sms" */
    char template_id[OTP_ID_SIZE];    /* "" = the account's default template */
    char app_name[OTP_APP_NAME_SIZE]; /* as given at send ("" = account name) */
    char app_hash[OTP_APP_HASH_SIZE]; /* "" = none */
    /* What the request keeps for its resends, sealed under box_key (api/keep.c:
     * the code under the reuse strategy, the send's variables); erased when the
     * request stops being pending. 0 = none. */
    uint8_t code_sealed[OTP_CODE_SEALED_MAX];
    size_t code_sealed_len;
    /* The keyed hash of the code that verifies now (a rotating resend replaces
     * it, not the kept code): a kept code that no longer matches it is stale. */
    uint8_t code_hash[OTP_CODE_HASH_LEN];
} otp_request_info;

/* A message as GET /messages/{id} shows it. */
typedef struct otp_message_info {
    char public_id[OTP_ID_SIZE];
    char request_id[OTP_ID_SIZE];
    char to[OTP_PHONE_SIZE];
    otp_msg_status status;
    char provider[OTP_PROVIDER_NAME_SIZE];             /* "" until a provider took it */
    char provider_message_id[OTP_PROVIDER_MSGID_SIZE]; /* "" if none */
    int attempts;
    int segments;
    int64_t created_at_ms;
    int64_t updated_at_ms;
    char error[OTP_ERROR_TEXT_SIZE]; /* "" if none */
    bool test;                       /* sent with a test key */
} otp_message_info;

/* One status change of a message (its delivery history). */
typedef struct otp_message_event {
    otp_msg_status status;
    int64_t at_ms;
    char error[OTP_ERROR_TEXT_SIZE];
} otp_message_event;

typedef enum { OTP_LEDGER_CREDIT = 0, OTP_LEDGER_DEBIT = 1, OTP_LEDGER_REFUND = 2 } otp_ledger_type;

typedef struct otp_ledger_entry {
    int64_t id; /* increasing; the pagination cursor */
    otp_ledger_type type;
    int64_t amount; /* paise, signed: debits negative */
    int64_t balance_after;
    char request_id[OTP_ID_SIZE]; /* "" if none */
    char message_id[OTP_ID_SIZE]; /* "" if none */
    char note[OTP_NOTE_SIZE];
    int64_t created_at_ms;
} otp_ledger_entry;

/* An operator's admin key (the admin API, api/admin.c): not an account's. */
typedef struct otp_admin_key {
    int64_t id;
    char public_id[OTP_ID_SIZE];              /* "adm_…" */
    char prefix[OTP_ADMINKEY_PREFIX_LEN + 1]; /* the key's first characters, for display */
    char name[OTP_NAME_SIZE];
    int64_t created_at_ms;
    int64_t revoked_at_ms; /* 0 = active */
} otp_admin_key;

typedef struct otp_template {
    char public_id[OTP_ID_SIZE];       /* "tpl_…" */
    char name[OTP_TEMPLATE_NAME_SIZE]; /* unique per account */
    char body[OTP_TEMPLATE_BODY_SIZE];
    char dlt_template_id[OTP_DLT_ID_SIZE]; /* "" = none */
    char sender_id[OTP_SENDER_ID_SIZE];    /* "" = provider default */
    bool is_default; /* TEMPLATE_ADD: in: make it the default; out: whether it is */
    int64_t created_at_ms;
} otp_template;

/* A message of a test key, for GET /test/messages. The sealed text (AD = the
 * message id) is valid only during the callback. */
typedef struct otp_test_message {
    char message_id[OTP_ID_SIZE];
    char request_id[OTP_ID_SIZE];
    char to[OTP_PHONE_SIZE];
    const uint8_t *sealed;
    size_t sealed_len;
    int64_t created_at_ms;
} otp_test_message;

/* Idempotency (SPEC 1.9), carried inside a SEND or RESEND txn so that the record
 * and the work it guards commit together: a duplicate can only ever see the
 * first one committed (replay) or not at all (then it is the first). Looked up
 * per (account, key) before anything else: same fingerprint → OTP_OK with
 * replayed set and nothing else done; another fingerprint →
 * OTP_E_IDEMPOTENCY_KEY_REUSED. The record is stored only when the txn
 * succeeds, so an error (402, 429, …) is never remembered. It lives until the
 * purge removes it (OTP_TXN_PURGE, idem_retention_ms after it was made). */
typedef struct otp_idem {
    bool use; /* false: no idempotencyKey given */
    char key[OTP_IDEM_KEY_SIZE];
    uint8_t fingerprint[32]; /* SHA-256 of route + canonical body */
    const char *response;    /* in: the reply's data JSON, stored on success */
    int status;              /* in: its HTTP status */
    /* out: a record with this key existed and matched: nothing else was done */
    bool replayed;
    int replay_status;
    char *replay_response; /* malloc'd; the caller frees */
} otp_idem;

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
    char account_name[OTP_NAME_SIZE];      /* the default {{appName}} */
    int resend_strategy;                   /* the account's OTP_RESEND_* */
    char webotp_domain[OTP_DOMAIN_SIZE];   /* "" = none */
    char default_template_id[OTP_ID_SIZE]; /* "" = the built-in SPEC 4 text */
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
    int64_t expires_at_ms;                 /* of its request: unsent by then = failed */
    char sender_id[OTP_SENDER_ID_SIZE];    /* "" = provider default */
    char dlt_template_id[OTP_DLT_ID_SIZE]; /* "" = none */
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
    OTP_TXN_RESEND,        /* new SMS for a pending request (SPEC 1.5) */
    OTP_TXN_CANCEL,        /* pending -> cancelled */
    OTP_TXN_ACCOUNT_SET,   /* per-account settings */
    OTP_TXN_TEMPLATE_ADD,
    OTP_TXN_TEMPLATE_REMOVE,
    OTP_TXN_TEMPLATE_SET_DEFAULT,
    OTP_TXN_DELIVERY_REPORT, /* a gateway's receipt: sent -> delivered / undeliverable / failed */
    OTP_TXN_PURGE,           /* delete old requests and idempotency records, a bounded batch */
    OTP_TXN_ADMIN_KEY_CREATE,
    OTP_TXN_ADMIN_KEY_REVOKE,
} otp_txn_kind;

/* Abuse limits (SPEC 3) carried by SEND and RESEND; see core/limits.h. With
 * use false none of them is checked (callers that predate them). Checked in
 * this order, after the idempotency lookup and before anything is written:
 * the number's lock (OTP_E_PHONE_LOCKED), a block of the number's prefix or
 * country (OTP_E_RATE_LIMITED, "suspected_sms_pumping"), the number's send
 * interval and window ("phone_send_interval", "phone_send_limit"), the
 * balance, the daily spend caps ("daily_spend_cap"), and last the pumping
 * rule over the prefix's and the country's recent traffic: a send that trips
 * it is refused ("suspected_sms_pumping") and the block is written (the only
 * refusal that writes; pumping_block says so). Test keys skip the spend caps
 * and the pumping rule (they neither charge nor reach a gateway). */
typedef struct otp_abuse {
    bool use;
    otp_limits lim; /* the account's effective limits */
    /* of the number (libphonenumber); "" = at VERIFY and RESEND the one stored
     * with the request, at SEND the txn's region */
    char region[3];
    /* for the caller's log line only; the store does not read them */
    char account[OTP_ID_SIZE];
    char phone[OTP_PHONE_SIZE];
    /* out, on a refusal */
    int retry_after_s;  /* >= 1 */
    const char *reason; /* static string for details.reason, or NULL */
    bool pumping_block; /* this txn created the block below */
    char blocked[OTP_PREFIX_SIZE];
    bool phone_locked_now; /* VERIFY: this wrong guess locked the number */
} otp_abuse;

typedef struct otp_txn_send {
    /* in */
    int64_t account_id;
    int64_t key_id;
    bool test; /* test key: no charge (SPEC 1.1) */
    char request_id[OTP_ID_SIZE];
    char message_id[OTP_ID_SIZE];
    char phone[OTP_PHONE_SIZE];
    /* The number's region (otp_phone.region), stored with the request so that
     * VERIFY and RESEND never parse the number again; "" = abuse.region. */
    char region[3];
    uint8_t code_hash[OTP_CODE_HASH_LEN];
    int code_length;
    int max_attempts;
    int expires_in_s;
    int64_t now_ms;
    int64_t expires_at_ms;
    int segments;               /* charge = account price_per_segment * segments */
    const uint8_t *sealed_text; /* not copied; must live until done */
    size_t sealed_text_len;
    char template_id[OTP_ID_SIZE];    /* "" = default; kept for resends */
    char app_name[OTP_APP_NAME_SIZE]; /* kept for resends */
    char app_hash[OTP_APP_HASH_SIZE];
    char sender_id[OTP_SENDER_ID_SIZE];
    char dlt_template_id[OTP_DLT_ID_SIZE];
    const uint8_t *code_sealed; /* what it keeps for resends (api/keep.c) or NULL; not copied */
    size_t code_sealed_len;
    otp_idem idem;
    otp_abuse abuse;
    /* A hand-off: > 0 asks that a live message be stored already leased for
     * lease_ms to the caller's dispatcher (status sending, attempts 1), which
     * takes it from memory (otp_dispatcher_handoff) instead of claiming it. A
     * backend may decline (PostgreSQL does); `leased` says what it did. */
    int64_t lease_ms;
    /* out */
    int64_t charged; /* paise */
    int64_t balance_after;
    bool leased;
    int64_t leased_msg_id; /* the message's otp_outbox_msg.id, when leased */
} otp_txn_send;

typedef struct otp_txn_verify {
    /* in */
    int64_t account_id;
    /* the key's mode: a request of the other mode is OTP_NOT_FOUND; a test
     * key's guess is judged against the number's lock but leaves its failure
     * count and streak as they are */
    bool test;
    char request_id[OTP_ID_SIZE];
    uint8_t code_hash[OTP_CODE_HASH_LEN]; /* of the guess, under this request id */
    int code_length;                      /* of the guess; mismatch = INVALID_OTP_CODE */
    int64_t now_ms;
    /* SPEC 3 lockout: with abuse.use, a pending request whose number is locked
     * answers OTP_E_PHONE_LOCKED (abuse.retry_after_s set) before the guess is
     * judged; a wrong guess counts against the number (fail_max within
     * fail_window and fail_streak_max lock it: abuse.phone_locked_now), a right
     * one clears its count and counts as a conversion for the pumping rule. */
    otp_abuse abuse;
    /* out */
    int attempts_left;          /* after this guess */
    char phone[OTP_PHONE_SIZE]; /* the request's number, for the log ("" if not found) */
} otp_txn_verify;

/* Errors, checked in this order: OTP_NOT_FOUND (unknown or another account's),
 * OTP_ALREADY_VERIFIED / OTP_ATTEMPTS_EXHAUSTED / OTP_CANCELLED / OTP_EXPIRED,
 * RESEND_LIMIT_REACHED (resend_count >= max_resends), RESEND_TOO_SOON (within
 * cooldown of last_sent_at; retry_after_s set), INSUFFICIENT_BALANCE. On success
 * the request gets attempts_left = max_attempts, expires_at = now + expires_in,
 * resend_count + 1, last_sent_at = now, the new code hash if rotate; messages of
 * the request still queued (never handed to a gateway) fail as "superseded" and
 * are refunded, since they carry a dead code (rotate) or duplicate the new one.
 * The balance must cover the charge once those refunds are counted (refunds
 * are written first). A request is resent only by a key of its own kind
 * (test == the request's test flag, else OTP_NOT_FOUND): a test key never
 * charges nor reaches a gateway. The new message goes to the request's phone. */
typedef struct otp_txn_resend {
    /* in */
    int64_t account_id;
    int64_t key_id;
    bool test;
    char request_id[OTP_ID_SIZE];
    char message_id[OTP_ID_SIZE]; /* the new message */
    bool rotate;                  /* true: code_hash replaces the old hash */
    uint8_t code_hash[OTP_CODE_HASH_LEN];
    int64_t now_ms;
    int64_t cooldown_ms; /* 30000 */
    int max_resends;     /* 3 */
    int segments;
    const uint8_t *sealed_text; /* not copied */
    size_t sealed_text_len;
    char sender_id[OTP_SENDER_ID_SIZE];
    char dlt_template_id[OTP_DLT_ID_SIZE];
    otp_idem idem;
    otp_abuse abuse; /* region "" = the one stored with the request */
    /* out */
    int64_t expires_at_ms;
    int attempts_left;
    int retry_after_s; /* for RESEND_TOO_SOON */
    int64_t charged;
    int64_t balance_after;
} otp_txn_resend;

/* pending -> cancelled (erasing any sealed code). Errors as for resend's status
 * checks. The request's messages still queued fail as "cancelled" and are
 * refunded (their code can no longer be verified). */
typedef struct otp_txn_cancel {
    int64_t account_id;
    char request_id[OTP_ID_SIZE];
    int64_t now_ms;
} otp_txn_cancel;

enum {
    OTP_SET_PRICE = 1 << 0,
    OTP_SET_LOW_BALANCE = 1 << 1,
    OTP_SET_RESEND_STRATEGY = 1 << 2,
    OTP_SET_WEBOTP_DOMAIN = 1 << 3,
    /* SPEC 3 (abuse protection) rides on ACCOUNT_SET so that backends whose
     * txn switch predates it keep compiling; a backend that does not know
     * these bits must refuse them (the SQLite backend implements them). */
    OTP_SET_LIMITS = 1 << 4,     /* limits: the override text (already validated) */
    OTP_SET_BLOCK_LIFT = 1 << 5, /* lift the lock or block of lift_target */
};

typedef struct otp_txn_account_set {
    int64_t account_id;
    unsigned fields; /* OTP_SET_* bits: which of the values below to write */
    int64_t price_per_segment;
    int64_t low_balance_threshold;
    int resend_strategy;
    char webotp_domain[OTP_DOMAIN_SIZE];
    /* OTP_SET_LIMITS: core/limits.h override text ("" = none), checked with
     * otp_limits_merge() by the caller. */
    char limits[OTP_LIMITS_TEXT_SIZE];
    /* OTP_SET_BLOCK_LIFT: a number (lifts its lock, clears its failure count
     * and streak, and removes every block of a prefix of it), a prefix
     * (removes that block) or a region code (a country block).
     * OTP_E_NOT_FOUND if nothing was lifted. */
    char lift_target[OTP_PREFIX_SIZE];
    int64_t now_ms;
    int lifted; /* out */
} otp_txn_account_set;

/* The template becomes the default if tpl.is_default or if it is the account's
 * only template (tpl.is_default then says so). Removing the default leaves the
 * account without one (the built-in text). */
typedef struct otp_txn_template_add {
    int64_t account_id;
    otp_template tpl;   /* public_id, name, body, dlt/sender, is_default, created_at */
} otp_txn_template_add; /* duplicate name -> OTP_E_INVALID_REQUEST */

typedef struct otp_txn_template_ref {
    int64_t account_id;
    char id_or_name[OTP_TEMPLATE_NAME_SIZE]; /* OTP_E_NOT_FOUND if none */
} otp_txn_template_ref;

/* Looked up by (provider, provider_message_id); OTP_E_MESSAGE_NOT_FOUND if none.
 * status: DELIVERED, UNDELIVERABLE or FAILED. FAILED refunds the charge exactly
 * once (a repeated report changes nothing); UNDELIVERABLE is not refunded (the
 * gateway accepted and charged). A report older than the stored state (e.g.
 * "failed" after "delivered") is ignored. */
typedef struct otp_txn_delivery_report {
    char provider[OTP_PROVIDER_NAME_SIZE];
    char provider_message_id[OTP_PROVIDER_MSGID_SIZE];
    otp_msg_status status;
    char error[OTP_ERROR_TEXT_SIZE];
    int64_t now_ms;
    char message_id[OTP_ID_SIZE]; /* out: the message it matched */
} otp_txn_delivery_report;

/* Deletes up to max_rows requests whose expiry is older than now -
 * request_retention_ms (with their messages and events; the ledger keeps its
 * entries) and up to max_rows idempotency records older than now -
 * idem_retention_ms. Erases sealed codes of requests no longer pending (VERIFY
 * and CANCEL erase them at once; the purge catches the expired ones, up to
 * max_rows). A request with a message still queued or sending is kept until the
 * dispatcher has failed and refunded it. The abuse tables lose, up to max_rows
 * each, what no limit reads any more: pumping counters older than two days,
 * spend of days before yesterday (UTC), blocks that ended two days ago, and
 * numbers' states with no wrong code since their last success and no lock in
 * force (a number with a streak of wrong codes keeps it: SPEC 3's 100). */
typedef struct otp_txn_purge {
    int64_t now_ms;
    int64_t request_retention_ms;
    int64_t idem_retention_ms;
    int max_rows;
    int purged_requests; /* out */
    int purged_idem;     /* out */
    int erased_codes;    /* out: sealed codes of expired requests erased */
} otp_txn_purge;

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

/* A credit. With a reference ("" = none), the account's earlier credit with the
 * same reference is answered instead (replayed, nothing written), so a caller
 * that retries a credit never pays it twice; OTP_E_IDEMPOTENCY_KEY_REUSED (and
 * nothing written) when that earlier credit's amount differs. */
typedef struct otp_txn_wallet_credit {
    int64_t account_id;
    int64_t amount; /* paise, > 0 */
    char note[OTP_NOTE_SIZE];
    char reference[OTP_REFERENCE_SIZE];
    int64_t now_ms;
    /* out: the ledger entry (this one, or the replayed one) */
    int64_t balance_after;
    int64_t ledger_id;
    int64_t created_at_ms;
    bool replayed;
} otp_txn_wallet_credit;

/* ADMIN_KEY_CREATE: OTP_E_INVALID_REQUEST for a taken id or hash. */
typedef struct otp_txn_admin_key_create {
    char public_id[OTP_ID_SIZE];
    uint8_t hash[OTP_APIKEY_HASH_LEN]; /* SHA-256 of the whole key */
    char prefix[OTP_ADMINKEY_PREFIX_LEN + 1];
    char name[OTP_NAME_SIZE];
    int64_t now_ms;
    int64_t ret_id; /* out */
} otp_txn_admin_key_create;

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
        otp_txn_resend resend;
        otp_txn_cancel cancel;
        otp_txn_account_set account_set;
        otp_txn_template_add template_add;
        otp_txn_template_ref template_ref;
        otp_txn_delivery_report delivery_report;
        otp_txn_purge purge;
        otp_txn_admin_key_create admin_key_create;
        otp_txn_key_revoke admin_key_revoke; /* OTP_E_NOT_FOUND: none, or revoked */
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
typedef void (*otp_message_cb)(const otp_message_info *m, void *ctx);
typedef void (*otp_event_cb)(const otp_message_event *e, void *ctx);
typedef void (*otp_ledger_cb)(const otp_ledger_entry *e, void *ctx);
typedef void (*otp_template_cb)(const otp_template *t, void *ctx);
typedef void (*otp_test_message_cb)(const otp_test_message *m, void *ctx);

/* A lock or block in force (SPEC 3), for `otpd block list`. */
typedef struct otp_block {
    int64_t account_id;
    char account_public_id[OTP_ID_SIZE];
    char target[OTP_PREFIX_SIZE]; /* a number, a prefix, or a region */
    const char *kind;             /* "phone_locked", "phone_locked_24h", "suspected_sms_pumping" */
    int64_t created_at_ms;        /* 0 if unknown */
    int64_t until_ms;
} otp_block;
typedef void (*otp_block_cb)(const otp_block *b, void *ctx);
typedef void (*otp_admin_key_cb)(const otp_admin_key *k, void *ctx);

/* The upper bounds, in seconds, of the commit-time histogram's buckets; one
 * more bucket holds everything slower. */
#define OTP_COMMIT_BUCKETS 12
extern const double otp_commit_bounds_s[OTP_COMMIT_BUCKETS];

/* A writer's batches since the store opened: how many, the transactions they
 * held, and how long each batch's COMMIT took (its WAL write and sync, and any
 * checkpoint the writer ran inside it), per bucket (not cumulative). */
typedef struct otp_commit_stats {
    uint64_t batches, txns;
    uint64_t buckets[OTP_COMMIT_BUCKETS + 1];
    uint64_t sum_us;
} otp_commit_stats;

typedef struct otp_store_ops {
    const char *name; /* "sqlite", "postgres" */
    /* Stops accepting txns, finishes (commits) every txn already submitted,
     * then frees everything. Accepts NULL. */
    void (*close)(otp_store *s);
    /* Queues txn; txn->done will be called exactly once. Never blocks on I/O. */
    void (*submit)(otp_store *s, otp_txn *txn);
    /* How many reads may wait on the network at once (the read connections);
     * NULL where a read never does (SQLite's come from a local file). The API
     * then gives the store that many threads for its read routes (api/reads.c),
     * so that no read holds an HTTP thread. */
    int (*read_slots)(otp_store *s);

    int (*schema_version)(otp_store *s);
    otp_err (*key_lookup)(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN], otp_key_auth *ret);
    /* By public id ("acc_…") or by name. OTP_E_NOT_FOUND if none. */
    otp_err (*account_find)(otp_store *s, const char *id_or_name, otp_account *ret);
    otp_err (*account_get)(otp_store *s, int64_t account_id, otp_account *ret);
    otp_err (*account_list)(otp_store *s, otp_account_cb cb, void *ctx);
    otp_err (*key_list)(otp_store *s, int64_t account_id, otp_key_cb cb, void *ctx);
    otp_err (*account_stats)(otp_store *s, int64_t account_id, otp_account_stats *ret);

    /* OTP_E_OTP_NOT_FOUND unless the request exists and belongs to account_id. */
    otp_err (*request_get)(otp_store *s, int64_t account_id, const char *request_id,
                           otp_request_info *ret);
    /* The request's messages, oldest first. An unknown request (or another
     * account's) has none: OTP_OK without a callback. */
    otp_err (*request_messages)(otp_store *s, int64_t account_id, const char *request_id,
                                otp_message_cb cb, void *ctx);
    /* request_get, then (if found, and of the key mode test) request_messages,
     * as GET /otp/{id} needs them, in one snapshot: on SQLite in one read
     * transaction, on PostgreSQL in one statement. A request of the other
     * mode is OTP_E_OTP_NOT_FOUND, its messages unread. */
    otp_err (*request_status)(otp_store *s, int64_t account_id, bool test, const char *request_id,
                              otp_request_info *ret, otp_message_cb cb, void *ctx);
    /* A message and its status changes, oldest first, to cb (NULL: not
     * wanted), read together (one snapshot: on SQLite in one read
     * transaction, on PostgreSQL in one statement). OTP_E_MESSAGE_NOT_FOUND
     * unless it exists and belongs to account_id. */
    otp_err (*message_get)(otp_store *s, int64_t account_id, const char *message_id,
                           otp_message_info *ret, otp_event_cb cb, void *ctx);
    /* Ledger entries with id < before_id (0 = from the newest), newest first, at
     * most limit of them. */
    otp_err (*ledger_list)(otp_store *s, int64_t account_id, int64_t before_id, int limit,
                           otp_ledger_cb cb, void *ctx);
    /* By public id or name; id_or_name NULL = the account's default template.
     * OTP_E_NOT_FOUND if none. */
    otp_err (*template_find)(otp_store *s, int64_t account_id, const char *id_or_name,
                             otp_template *ret);
    otp_err (*template_list)(otp_store *s, int64_t account_id, otp_template_cb cb, void *ctx);
    /* The newest test-key messages of account_id to phone, newest first, at most
     * limit of them. */
    otp_err (*test_inbox)(otp_store *s, int64_t account_id, const char *phone, int limit,
                          otp_test_message_cb cb, void *ctx);

    /* ---- operations; NULL in a backend without them ---- */
    /* How the single writer's batches have committed so far (SQLite). */
    void (*commit_stats)(otp_store *s, otp_commit_stats *ret);
    /* The outbox of all accounts now: messages waiting for a dispatcher
     * (queued, retries included) and messages leased to one (sending). */
    otp_err (*outbox_depth)(otp_store *s, int64_t *ret_queued, int64_t *ret_sending);

    /* ---- abuse protection (SPEC 3); NULL in a backend without them ---- */
    /* The account's limit overrides text into buf ("" if none). */
    otp_err (*limits_get)(otp_store *s, int64_t account_id, char *buf, size_t n);
    /* Takes up to want whole tokens (>= 1) from the API key's bucket shared by
     * every node on the store (rate per second, burst tokens; a new bucket is
     * full), on the store's own clock: *ret_granted of them, or 0 and in
     * *ret_wait_ms how long until the bucket has one. NULL where one process
     * holds the store (SQLite): the bucket is then in that process's memory
     * (api/guard.c). */
    otp_err (*key_take)(otp_store *s, int64_t key_id, int rate, int burst, int want,
                        int *ret_granted, int64_t *ret_wait_ms);
    /* Locks and blocks in force at now, of one account (account_id > 0) or all. */
    otp_err (*block_list)(otp_store *s, int64_t account_id, int64_t now_ms, otp_block_cb cb,
                          void *ctx);

    /* ---- the operators' admin keys ---- */
    /* By the SHA-256 of the whole key, revoked ones too (revoked_at_ms != 0):
     * OTP_OK or OTP_E_NOT_FOUND. */
    otp_err (*admin_key_lookup)(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN],
                                otp_admin_key *ret);
    /* All of them, oldest first. */
    otp_err (*admin_key_list)(otp_store *s, otp_admin_key_cb cb, void *ctx);
} otp_store_ops;

/* Every backend's handle starts with this. */
struct otp_store {
    const otp_store_ops *ops;
};

typedef struct otp_store_options {
    bool migrate;   /* apply pending migrations at open (else refuse an old schema) */
    int read_conns; /* hint: readers expected in parallel */
    int max_batch;  /* most txns in one commit (group commit), default 256 */
    int pool_size;  /* PostgreSQL: connections (worker threads) running txns, default 8 */
} otp_store_options;

/* Latest schema version this binary knows. */
#define OTP_SCHEMA_VERSION 8

/* Opens the store named by url: "sqlite:PATH" (or a bare path) or "postgres://…".
 * On error returns -1 and writes a one-line reason into err. */
int otp_store_open(const char *url, const otp_store_options *opt, otp_store **ret, char *err,
                   size_t errlen);
/* Submits txn and waits for its outcome; returns txn->err. txn->done must be NULL. */
otp_err otp_store_exec(otp_store *s, otp_txn *txn);
/* Whether a credit's reference is "" (none) or 1..128 printable ASCII
 * characters, as both backends take it. Never cleaned like other texts: two
 * references must not become one. */
bool otp_store_reference_ok(const char ref[OTP_REFERENCE_SIZE]);
/* Frees a claim's messages (accepts NULL). */
void otp_outbox_msgs_free(otp_outbox_msg *msgs, size_t n);

static inline void otp_store_close(otp_store *s)
{
    if (s)
        s->ops->close(s);
}

#endif
