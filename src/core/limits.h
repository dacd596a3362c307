/* core/limits.h — the arithmetic of abuse protection (SPEC 3), with no I/O.
 *
 * Everything here is a pure function of its inputs and of an injected time in
 * ms, so each rule is unit-tested without a clock, a database or a network.
 * The callers own the state: api/guard.c keeps token buckets in memory, the
 * store keeps the per-number and per-prefix state in the database and calls
 * these functions inside its transactions, where they are atomic.
 *
 * The knobs live in one struct, otp_limits. Server-wide defaults come from the
 * settings table (util/config.c, keys "limits.*"); an account may override any
 * of them with a short text of name=value pairs ("phone_sends=3,countries=US;CA")
 * that the store keeps verbatim and otp_limits_apply() reads.
 */
#ifndef OTP_CORE_LIMITS_H
#define OTP_CORE_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTP_LIMITS_TEXT_SIZE 512
#define OTP_COUNTRIES_SIZE 256
#define OTP_PREFIX_SIZE 24

/* Every knob of SPEC 3. Times in seconds, money in paise, 0 = off where said. */
typedef struct otp_limits {
    /* per API key, in memory per node */
    int key_rate;  /* requests per second, 0 = no bucket */
    int key_burst; /* bucket size */
    /* per destination number */
    int phone_sends;      /* sends (resends included) per phone_window, 0 = off */
    int phone_window_s;   /* 900 */
    int phone_interval_s; /* at least this long between two sends, 0 = off */
    int fail_max;         /* wrong codes within fail_window lock the number, 0 = off */
    int fail_window_s;    /* 900 */
    int lock_s;           /* 900 */
    int fail_streak_max;  /* consecutive wrong codes with no success, 0 = off (100) */
    int streak_lock_s;    /* 86400 */
    /* countries: "" = all; else ';'- or ','-separated regions ("US") and
     * calling codes ("+91") */
    char countries[OTP_COUNTRIES_SIZE];
    /* spend caps per UTC day, paise, 0 = none */
    int64_t daily_cap;
    int64_t country_daily_cap;
    /* SMS pumping (see otp_pumping_suspect) */
    int pump_window_s;             /* 600 */
    int pump_min_sends;            /* 20, 0 = the rule is off */
    int pump_growth;               /* 5 */
    int pump_min_conv_pct;         /* 20 */
    int pump_block_s;              /* 3600 */
    int pump_country_min_sends;    /* the same rule per country, 0 = off (200) */
    char safe[OTP_COUNTRIES_SIZE]; /* numbers / prefixes never blocked, ';'-separated */
} otp_limits;

/* The built-in defaults (the values SPEC 3 names). */
void otp_limits_defaults(otp_limits *ret);

/* Applies the overrides in text ("name=value" pairs separated by ',' or
 * whitespace; countries and safe take ';'-separated lists) to *l. Returns 0, or
 * -1 with a sentence naming the bad pair in err (then *l is unchanged). */
int otp_limits_apply(otp_limits *l, const char *text, char *err, size_t errlen);

/* Checks that text is a valid override text and rewrites it in canonical form
 * into out (size OTP_LIMITS_TEXT_SIZE), merging it over base (the account's
 * stored text, may be NULL): a later value of a name replaces an earlier one,
 * and "name=" removes the override. Returns 0 or -1 with err. */
int otp_limits_merge(const char *base, const char *text, char *out, char *err, size_t errlen);

/* Prints the effective limits as name=value lines to a FILE *. */
void otp_limits_print(const otp_limits *l, void *file);

/* ---- token bucket ---- */

typedef struct otp_bucket {
    int64_t tokens_milli; /* tokens * 1000 */
    int64_t at_ms;        /* when tokens_milli was last brought up to date */
    bool init;
} otp_bucket;

/* Takes one token at now. Returns 0 when the request may go, or the whole
 * seconds (>= 1) to wait before a token is there. rate <= 0: always 0. */
int otp_bucket_take(otp_bucket *b, int rate, int burst, int64_t now_ms);

/* A node's share of a bucket kept in a database that several nodes share
 * (PostgreSQL, store.h's key_take). A node takes a few tokens at a time from
 * the shared bucket and spends them locally, so the nodes together never accept
 * more than the one bucket allows; tokens a node took and did not spend within
 * OTP_KEY_LEASE_MS are dropped (never given back: nodes may refuse a little
 * early, never accept too much). After a refusal the node refuses locally until
 * the shared bucket can have refilled one token, so a client hammering a key
 * past its rate costs no database call per request. */
#define OTP_KEY_LEASE_MS 1000

typedef struct otp_key_lease {
    int64_t tokens;         /* taken from the shared bucket, not yet spent */
    int64_t until_ms;       /* they are dropped then */
    int64_t empty_until_ms; /* the shared bucket had no token before then */
    int asking;             /* requests waiting for the shared bucket's answer */
} otp_key_lease;

/* How many tokens to ask the shared bucket for at a time: about 1/20 s of the
 * rate, at most a tenth of the burst, at least 1. */
int otp_key_lease_want(int rate, int burst);

/* Spends a local token at now. Returns 0 when the request may go, -1 when the
 * node must ask the shared bucket for *ret_ask tokens (then, with the answer,
 * otp_key_lease_fill), or the whole seconds (>= 1) to wait when the shared
 * bucket was found empty. Only the first of requests arriving together asks
 * for want tokens; the others, while it waits, ask for one each, so a burst of
 * requests does not take want tokens each. */
int otp_key_lease_take(otp_key_lease *l, int want, int64_t now_ms, int *ret_ask);

/* Records the shared bucket's answer at now to one request's ask: granted
 * tokens (one of them is that request's), or none and the ms until the bucket
 * has one. Tokens granted are never dropped here: a request that got none
 * still spends one another request put in the lease. Returns 0 when the
 * request may go, else the whole seconds (>= 1) to wait. */
int otp_key_lease_fill(otp_key_lease *l, int granted, int64_t wait_ms, int64_t now_ms);
/* The shared bucket could not be asked (a store error): the ask is over. */
void otp_key_lease_unask(otp_key_lease *l);

/* ---- per destination number ---- */

/* The times of the number's most recent sends, newest first (at most
 * phone_sends of them, all within the window). Returns 0 if one more send is
 * allowed at now; else 1 for the interval rule, 2 for the window rule, with
 * *ret_retry_s the whole seconds (>= 1) until it would be. */
enum { OTP_PHONE_SEND_OK = 0, OTP_PHONE_SEND_INTERVAL = 1, OTP_PHONE_SEND_WINDOW = 2 };
int otp_phone_send_check(const otp_limits *l, const int64_t *recent_ms, int n, int64_t now_ms,
                         int *ret_retry_s);

/* The failure window rolls (SPEC 3: fail_max wrong codes within any
 * fail_window) for fail_max up to this many: the times of the failures inside
 * the window are kept. A larger fail_max (an unusual setting) counts in fixed
 * windows from a first failure, with fails and fail_since alone. */
#define OTP_PHONE_FAILS_KEPT 64

/* A number's failure state, as the store keeps it. */
typedef struct otp_phone_state {
    int fails;             /* wrong codes in the window (kept times, when kept) */
    int64_t fail_since_ms; /* the oldest of them (the fixed window's start) */
    int streak;            /* consecutive wrong codes with no success */
    int64_t locked_until_ms;
    int lock_kind; /* 0 none, 1 window lock, 2 streak lock (24 h) */
    /* The failures' times, oldest first: fail_at[0 .. fails - 1] when kept
     * (times_kept), else only the count and fail_since. */
    bool times_kept;
    int64_t fail_at[OTP_PHONE_FAILS_KEPT];
} otp_phone_state;

/* The kept failure times as the store keeps them (8 bytes each, big-endian,
 * oldest first): writes out and returns its length, 0 if none are kept. */
size_t otp_phone_fail_times_encode(const otp_phone_state *s, uint8_t out[OTP_PHONE_FAILS_KEPT * 8]);
/* Restores the failure times from the store's bytes (NULL, or not fails of
 * them: a state written by a version that did not keep them, whose fails all
 * count as at fail_since). Call after fails and fail_since are set; with
 * fails = 0 the bytes are ignored. */
void otp_phone_fail_times_decode(otp_phone_state *s, const uint8_t *in, size_t len);

/* Seconds (>= 1) until the lock ends, or 0 if the number is not locked at now. */
int otp_phone_locked(const otp_phone_state *s, int64_t now_ms);
/* Records a wrong code at now; may lock the number. Returns true if this
 * failure locked it. */
bool otp_phone_fail(otp_phone_state *s, const otp_limits *l, int64_t now_ms);
/* Records a correct code: the failure count and the streak start over. */
void otp_phone_success(otp_phone_state *s);

/* ---- countries ---- */

/* True if a number of region (ISO 3166, "US") and calling code cc is allowed
 * by list ("" = all). Items are regions ("US") or calling codes ("+1", "1"). */
bool otp_country_allowed(const char *list, const char *region, int cc);

/* ---- SMS pumping ---- */

/* The prefix of a number: the E.164 number without its last 4 digits. */
void otp_phone_prefix(const char *e164, char out[OTP_PREFIX_SIZE]);

/* True if e164 or one of its prefixes is on the ';'-separated safe list. */
bool otp_phone_safe(const char *list, const char *e164);

/* The pumping rule, for one prefix (or country) over the last window W:
 *   sends_w >= max(min_sends, growth * baseline)  and
 *   verifies_w * 100 < min_conv_pct * sends_w
 * where baseline = sends over the 24 h before the window, scaled to one window
 * (sends_24h * W / 86400, rounded up). min_sends <= 0 turns the rule off. */
bool otp_pumping_suspect(int64_t sends_w, int64_t verifies_w, int64_t sends_24h, int window_s,
                         int min_sends, int growth, int min_conv_pct);

/* The UTC day (days since the epoch) of a time. */
static inline int64_t otp_day_of(int64_t ms)
{
    return ms / 86400000;
}

#endif
