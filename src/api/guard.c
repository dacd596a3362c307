/* api/guard.c — the checks of SPEC 3 that need no transaction.
 *
 * The per-key token bucket sits in front of every authenticated request, so it
 * must cost next to nothing: buckets live in memory in a hash map split into
 * 64 shards, each under its own mutex, keyed by the key's row id; a request
 * locks one shard for a few arithmetic operations. When the store is shared by
 * several nodes (PostgreSQL: ops->key_take), the bucket is the store's and the
 * map holds this node's lease on it (core/limits.h, otp_key_lease): a few
 * tokens taken at a time, so N nodes enforce one limit, not N, with one
 * database call per ~1/20 s of a key's rate. The other limits that must hold
 * across nodes (per number, spend, pumping) live in the database and are
 * decided inside the send and verify transactions.
 *
 * An account's limits are the server-wide defaults with the account's override
 * text applied. The text is read from the store at most once per cache period
 * (default 1 s) per account and kept in the same shards, so a send costs no
 * extra read in the steady state.
 *
 * Neither read (the limits, the store's bucket) runs on an HTTP thread when it
 * waits on the network: the request is handed off to a read thread
 * (api/reads.c). A request takes its token once: a hand-off after the take
 * carries it along (otp_api_note_token), and the second run takes none.
 *
 * Every refusal is logged once, here, with its reason and a masked number:
 * event=refused reason=… account=… phone=+91******3210. Never a code.
 */
#include "api/guard.h"
#include "util/clock.h"
#include "util/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 64
#define SLOTS 256 /* chains per shard */

typedef struct bucket_entry {
    int64_t key_id;
    otp_bucket b;        /* the bucket itself (one node holds the store) */
    otp_key_lease lease; /* or this node's share of the store's bucket */
    struct bucket_entry *next;
} bucket_entry;

typedef struct limits_entry {
    int64_t account_id;
    otp_limits lim;
    int64_t loaded_at_ms;
    struct limits_entry *next;
} limits_entry;

typedef struct shard {
    pthread_mutex_t mu;
    bucket_entry *buckets[SLOTS];
    limits_entry *limits[SLOTS];
} shard;

static shard shards[SHARDS];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static otp_limits defaults;
static int cache_ms = 1000;
static bool configured;

static void init(void)
{
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&shards[i].mu, NULL);
    if (!configured)
        otp_limits_defaults(&defaults);
}

void otp_guard_configure(const otp_limits *d, int c_ms)
{
    defaults = *d;
    cache_ms = c_ms < 0 ? 0 : c_ms;
    configured = true;
    pthread_once(&once, init);
}

static uint64_t mix(int64_t v)
{
    uint64_t x = (uint64_t)v;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

enum { LIMITS_OK, LIMITS_NOT_CACHED, LIMITS_ERROR };

/* otp_guard_limits(); with may_read false, LIMITS_NOT_CACHED where it would
 * read the store. */
static int limits_of(otp_api *api, int64_t account_id, bool may_read, otp_limits *ret)
{
    pthread_once(&once, init);
    uint64_t h = mix(account_id);
    shard *sh = &shards[h % SHARDS];
    size_t slot = (size_t)((h / SHARDS) % SLOTS);
    int64_t now = otp_now_ms();

    pthread_mutex_lock(&sh->mu);
    limits_entry *e = sh->limits[slot];
    while (e && e->account_id != account_id)
        e = e->next;
    if (e && now - e->loaded_at_ms < cache_ms && now >= e->loaded_at_ms) {
        *ret = e->lim;
        pthread_mutex_unlock(&sh->mu);
        return LIMITS_OK;
    }
    pthread_mutex_unlock(&sh->mu);
    if (!may_read && api->store->ops->limits_get)
        return LIMITS_NOT_CACHED;

    otp_limits lim = defaults;
    if (api->store->ops->limits_get) {
        char text[OTP_LIMITS_TEXT_SIZE];
        char err[160];
        if (api->store->ops->limits_get(api->store, account_id, text, sizeof(text)) != OTP_OK)
            return LIMITS_ERROR;
        /* The CLI validated the text; a bad one (an older binary's knob) keeps
         * the defaults rather than failing every request. */
        if (otp_limits_apply(&lim, text, err, sizeof(err)) != 0)
            otp_log(OTP_LOG_WARN, "event=bad_limits account_id=%lld error=\"%s\"",
                    (long long)account_id, err);
    }

    pthread_mutex_lock(&sh->mu);
    e = sh->limits[slot];
    while (e && e->account_id != account_id)
        e = e->next;
    if (!e && (e = calloc(1, sizeof(*e)))) {
        e->account_id = account_id;
        e->next = sh->limits[slot];
        sh->limits[slot] = e;
    }
    if (e) {
        e->lim = lim;
        e->loaded_at_ms = now;
    }
    pthread_mutex_unlock(&sh->mu);
    *ret = lim;
    return LIMITS_OK;
}

bool otp_guard_limits(otp_api *api, int64_t account_id, otp_limits *ret)
{
    return limits_of(api, account_id, true, ret) == LIMITS_OK;
}

static void log_refusal(const char *reason, const char *account, const char *phone_e164)
{
    char masked[OTP_PHONE_MASK_SIZE] = "-";
    if (phone_e164 && *phone_e164)
        otp_phone_mask(phone_e164, masked);
    otp_log(OTP_LOG_INFO, "event=refused reason=%s account=%s phone=%s", reason,
            account && *account ? account : "-", masked);
}

bool otp_guard_key(otp_http_req *req, otp_api *api, const otp_key_auth *auth, const otp_limits *lim)
{
    if (lim->key_rate <= 0 || otp_api_token_taken(req))
        return true; /* no bucket; or a second run (a hand-off): its first took the token */
    pthread_once(&once, init);
    uint64_t h = mix(auth->key_id);
    shard *sh = &shards[h % SHARDS];
    size_t slot = (size_t)((h / SHARDS) % SLOTS);
    int64_t now = otp_now_ms();
    int wait = 0;
    int ask = 1; /* tokens to ask the shared bucket for */

    pthread_mutex_lock(&sh->mu);
    bucket_entry *e = sh->buckets[slot];
    while (e && e->key_id != auth->key_id)
        e = e->next;
    if (!e && (e = calloc(1, sizeof(*e)))) {
        e->key_id = auth->key_id;
        e->next = sh->buckets[slot];
        sh->buckets[slot] = e;
    }
    otp_store *store = api->store;
    if (!store->ops->key_take) {
        if (e)
            wait = otp_bucket_take(&e->b, lim->key_rate, lim->key_burst, now);
    } else {
        ask = otp_key_lease_want(lim->key_rate, lim->key_burst);
        wait = e ? otp_key_lease_take(&e->lease, ask, now, &ask) : -1;
    }
    /* Asking the store's bucket waits on the network: not on an HTTP thread. */
    bool hand_off = wait < 0 && !otp_api_may_block(api, req);
    if (hand_off && e)
        otp_key_lease_unask(&e->lease);
    pthread_mutex_unlock(&sh->mu);
    if (hand_off) {
        otp_api_hand_off(req, api);
        return false;
    }
    if (wait < 0) {
        /* Not under the shard's lock: other keys' requests go on meanwhile.
         * Requests of this key arriving while one asks ask for one token each;
         * every token granted goes into the lease (otp_key_lease_fill). */
        int granted = 0;
        int64_t wait_ms = 0;
        otp_err err = store->ops->key_take(store, auth->key_id, lim->key_rate, lim->key_burst, ask,
                                           &granted, &wait_ms);
        now = otp_now_ms();
        pthread_mutex_lock(&sh->mu);
        if (err != OTP_OK) {
            if (e)
                otp_key_lease_unask(&e->lease);
            pthread_mutex_unlock(&sh->mu);
            otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
            return false;
        }
        if (e) /* entries live as long as the process */
            wait = otp_key_lease_fill(&e->lease, granted, wait_ms, now);
        else
            wait = granted ? 0 : (int)((wait_ms + 999) / 1000);
        pthread_mutex_unlock(&sh->mu);
        if (wait < 0)
            wait = 1;
    }
    if (!wait) {
        otp_api_note_token(req);
        return true;
    }
    otp_metrics_refusal(OTP_REFUSE_KEY_RATE);
    log_refusal("key_rate", auth->account_public_id, NULL);
    otp_http_reply_error(req, OTP_E_RATE_LIMITED, NULL,
                         json_pack("{s:s, s:i}", "reason", "key_rate", "retryAfter", wait));
    return false;
}

bool otp_guard_country(otp_http_req *req, const otp_key_auth *auth, const otp_limits *lim,
                       const otp_phone *phone)
{
    if (otp_country_allowed(lim->countries, phone->region, phone->country_code))
        return true;
    otp_metrics_refusal(OTP_REFUSE_COUNTRY);
    log_refusal("country_not_allowed", auth->account_public_id, phone->e164);
    otp_http_reply_error(req, OTP_E_COUNTRY_NOT_ALLOWED, NULL,
                         json_pack("{s:s}", "region", phone->region));
    return false;
}

void otp_guard_refused(otp_http_req *req, const char *account_public_id, const char *phone_e164,
                       otp_err e, const char *reason, int retry_after_s)
{
    const char *why = reason ? reason : otp_err_code(e);
    otp_metrics_refusal(otp_metrics_refusal_of(why));
    log_refusal(why, account_public_id, phone_e164);
    if (retry_after_s < 1)
        retry_after_s = 1;
    otp_http_reply_error(req, e, NULL,
                         json_pack("{s:s, s:i}", "reason", why, "retryAfter", retry_after_s));
}

void otp_guard_pumping_block(const char *account_public_id, const char *target)
{
    otp_metrics_pumping_block();
    otp_log(OTP_LOG_WARN, "event=sms_pumping_block account=%s prefix=%s",
            account_public_id && *account_public_id ? account_public_id : "-", target);
}

/* The account's limits into *ret. Returns false after replying 503, or after
 * handing req off (the limits are not cached, and reading them would wait on
 * the network here). */
static bool guard_limits(otp_http_req *req, otp_api *api, const otp_key_auth *auth, otp_limits *ret)
{
    switch (limits_of(api, auth->account_id, otp_api_may_block(api, req), ret)) {
    case LIMITS_OK:
        return true;
    case LIMITS_NOT_CACHED:
        otp_api_hand_off(req, api);
        return false;
    default:
        otp_http_reply_error(req, OTP_E_UNAVAILABLE, NULL, NULL);
        return false;
    }
}

bool otp_guard_request(otp_http_req *req, otp_api *api, const otp_key_auth *auth)
{
    otp_limits lim;
    return guard_limits(req, api, auth, &lim) && otp_guard_key(req, api, auth, &lim);
}

bool otp_guard_prepare(otp_http_req *req, otp_api *api, const otp_key_auth *auth,
                       const otp_phone *phone, const char *e164, otp_abuse *a)
{
    memset(a, 0, sizeof(*a));
    if (!guard_limits(req, api, auth, &a->lim))
        return false;
    if (phone && !otp_guard_country(req, auth, &a->lim, phone))
        return false;
    a->use = true;
    if (phone)
        memcpy(a->region, phone->region, sizeof(a->region));
    snprintf(a->account, sizeof(a->account), "%s", auth->account_public_id);
    snprintf(a->phone, sizeof(a->phone), "%s", e164 ? e164 : "");
    return true;
}

bool otp_guard_finish(otp_http_req *req, otp_err err, const otp_abuse *a)
{
    if (!a->use)
        return false;
    if (a->pumping_block)
        otp_guard_pumping_block(a->account, a->blocked);
    if (a->phone_locked_now) {
        otp_metrics_phone_lock();
        char masked[OTP_PHONE_MASK_SIZE] = "-";
        if (a->phone[0])
            otp_phone_mask(a->phone, masked);
        otp_log(OTP_LOG_INFO, "event=phone_locked account=%s phone=%s", a->account, masked);
    }
    if ((err != OTP_E_RATE_LIMITED && err != OTP_E_PHONE_LOCKED) || !a->reason)
        return false;
    otp_guard_refused(req, a->account, a->phone, err, a->reason, a->retry_after_s);
    return true;
}
