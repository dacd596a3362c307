/* core/limits.c — token buckets, send windows, lockouts, country lists and the
 * SMS-pumping rule (SPEC 3), as pure functions of their inputs and of a time.
 *
 * A design note on the lockout: failures are counted per (account, number)
 * across all of the number's requests, so an attacker cannot reset the count by
 * asking for a new code. fail_max wrong codes within any fail_window (a
 * rolling window: the times of the failures in it are kept) lock the number
 * for lock_s; the count then starts over. Independently, every wrong
 * code adds to a streak that only a correct code clears; fail_streak_max of
 * them lock the number for streak_lock_s (NIST SP 800-63B 5.2.2: at most 100
 * consecutive failed attempts). docs/security.md shows why, with the defaults,
 * an attacker gets at most 100 guesses per number per day.
 */
#include "core/limits.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void otp_limits_defaults(otp_limits *l)
{
    memset(l, 0, sizeof(*l));
    l->key_rate = 50;
    l->key_burst = 100;
    l->phone_sends = 5;
    l->phone_window_s = 900;
    l->phone_interval_s = 30;
    l->fail_max = 5;
    l->fail_window_s = 900;
    l->lock_s = 900;
    l->fail_streak_max = 100;
    l->streak_lock_s = 86400;
    l->pump_window_s = 600;
    l->pump_min_sends = 20;
    l->pump_growth = 5;
    l->pump_min_conv_pct = 20;
    l->pump_block_s = 3600;
    l->pump_country_min_sends = 200;
}

typedef enum { K_INT, K_MONEY, K_LIST } knob_type;

typedef struct knob {
    const char *name;
    knob_type type;
    size_t off;
    long long min, max;
} knob;

#define INT_KNOB(n, f, lo, hi)                                                                     \
    {                                                                                              \
        n, K_INT, offsetof(otp_limits, f), lo, hi                                                  \
    }
static const knob knobs[] = {
    INT_KNOB("key_rate", key_rate, 0, 1000000),
    INT_KNOB("key_burst", key_burst, 1, 10000000),
    INT_KNOB("phone_sends", phone_sends, 0, 64), /* sq: at most 64 recent sends read */
    INT_KNOB("phone_window", phone_window_s, 1, 86400 * 30),
    INT_KNOB("phone_interval", phone_interval_s, 0, 86400),
    INT_KNOB("fail_max", fail_max, 0, 10000),
    INT_KNOB("fail_window", fail_window_s, 1, 86400 * 30),
    INT_KNOB("lock", lock_s, 1, 86400 * 30),
    INT_KNOB("fail_streak_max", fail_streak_max, 0, 1000000),
    INT_KNOB("streak_lock", streak_lock_s, 1, 86400 * 365),
    {"countries", K_LIST, offsetof(otp_limits, countries), 0, 0},
    {"daily_cap", K_MONEY, offsetof(otp_limits, daily_cap), 0, INT64_MAX / 4},
    {"country_daily_cap", K_MONEY, offsetof(otp_limits, country_daily_cap), 0, INT64_MAX / 4},
    INT_KNOB("pump_window", pump_window_s, 60, 86400),
    INT_KNOB("pump_min_sends", pump_min_sends, 0, 1000000),
    INT_KNOB("pump_growth", pump_growth, 1, 1000),
    INT_KNOB("pump_min_conversion", pump_min_conv_pct, 0, 100),
    INT_KNOB("pump_block", pump_block_s, 1, 86400 * 30),
    INT_KNOB("pump_country_min_sends", pump_country_min_sends, 0, 10000000),
    {"safe", K_LIST, offsetof(otp_limits, safe), 0, 0},
};
#define N_KNOBS (sizeof(knobs) / sizeof(knobs[0]))

static const knob *find_knob(const char *name, size_t len)
{
    for (size_t i = 0; i < N_KNOBS; i++)
        if (strlen(knobs[i].name) == len && memcmp(knobs[i].name, name, len) == 0)
            return &knobs[i];
    return NULL;
}

static bool list_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == ';';
}

/* Sets one knob from value[0..len). Returns 0 or -1 with err. */
static int set_knob(otp_limits *l, const knob *k, const char *value, size_t len, char *err,
                    size_t errlen)
{
    char buf[OTP_COUNTRIES_SIZE];
    if (len >= sizeof(buf)) {
        snprintf(err, errlen, "%s: value too long", k->name);
        return -1;
    }
    memcpy(buf, value, len);
    buf[len] = '\0';
    if (k->type == K_LIST) {
        for (size_t i = 0; i < len; i++)
            if (!list_char_ok(buf[i])) {
                snprintf(err, errlen, "%s: a ';'-separated list of regions, codes or numbers",
                         k->name);
                return -1;
            }
        for (size_t i = 0; i < len; i++)
            if (buf[i] >= 'a' && buf[i] <= 'z')
                buf[i] = (char)(buf[i] - 'a' + 'A');
        memcpy((char *)l + k->off, buf, len + 1);
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (len == 0 || errno || *end || v < k->min || v > k->max) {
        snprintf(err, errlen, "%s must be an integer from %lld to %lld", k->name, k->min, k->max);
        return -1;
    }
    if (k->type == K_MONEY)
        *(int64_t *)((char *)l + k->off) = v;
    else
        *(int *)((char *)l + k->off) = (int)v;
    return 0;
}

static bool is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n';
}

/* Calls fn for each name=value pair of text. Returns 0 or -1 with err. */
static int each_pair(const char *text,
                     int (*fn)(const knob *k, const char *v, size_t vlen, void *ctx, char *err,
                               size_t errlen),
                     void *ctx, char *err, size_t errlen)
{
    const char *p = text ? text : "";
    for (;;) {
        while (is_sep(*p))
            p++;
        if (!*p)
            return 0;
        const char *start = p;
        while (*p && !is_sep(*p))
            p++;
        const char *eq = memchr(start, '=', (size_t)(p - start));
        if (!eq) {
            snprintf(err, errlen, "\"%.*s\" is not name=value", (int)(p - start), start);
            return -1;
        }
        const knob *k = find_knob(start, (size_t)(eq - start));
        if (!k) {
            snprintf(err, errlen, "unknown limit \"%.*s\"", (int)(eq - start), start);
            return -1;
        }
        if (fn(k, eq + 1, (size_t)(p - eq - 1), ctx, err, errlen))
            return -1;
    }
}

static int apply_one(const knob *k, const char *v, size_t vlen, void *ctx, char *err, size_t errlen)
{
    otp_limits *l = ctx;
    /* "name=" means "no override": the default stays. */
    if (vlen == 0 && k->type != K_LIST)
        return 0;
    return set_knob(l, k, v, vlen, err, errlen);
}

int otp_limits_apply(otp_limits *l, const char *text, char *err, size_t errlen)
{
    otp_limits tmp = *l;
    if (each_pair(text, apply_one, &tmp, err, errlen))
        return -1;
    *l = tmp;
    return 0;
}

typedef struct merge_ctx {
    const char *val[N_KNOBS];
    size_t len[N_KNOBS];
    bool set[N_KNOBS];
} merge_ctx;

static int merge_one(const knob *k, const char *v, size_t vlen, void *ctx, char *err, size_t errlen)
{
    merge_ctx *m = ctx;
    size_t i = (size_t)(k - knobs);
    if (vlen) { /* validate */
        otp_limits scratch;
        otp_limits_defaults(&scratch);
        if (set_knob(&scratch, k, v, vlen, err, errlen))
            return -1;
    }
    m->val[i] = v;
    m->len[i] = vlen;
    m->set[i] = vlen > 0;
    return 0;
}

int otp_limits_merge(const char *base, const char *text, char *out, char *err, size_t errlen)
{
    merge_ctx m;
    memset(&m, 0, sizeof(m));
    if (each_pair(base, merge_one, &m, err, errlen) || each_pair(text, merge_one, &m, err, errlen))
        return -1;
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_KNOBS; i++) {
        if (!m.set[i])
            continue;
        int w = snprintf(out + n, OTP_LIMITS_TEXT_SIZE - n, "%s%s=%.*s", n ? "," : "",
                         knobs[i].name, (int)m.len[i], m.val[i]);
        if (w < 0 || (size_t)w >= OTP_LIMITS_TEXT_SIZE - n) {
            snprintf(err, errlen, "the limits text is longer than %d bytes",
                     OTP_LIMITS_TEXT_SIZE - 1);
            return -1;
        }
        n += (size_t)w;
    }
    return 0;
}

void otp_limits_print(const otp_limits *l, void *file)
{
    FILE *f = file;
    for (size_t i = 0; i < N_KNOBS; i++) {
        const knob *k = &knobs[i];
        const char *p = (const char *)l + k->off;
        if (k->type == K_LIST)
            fprintf(f, "%s=%s\n", k->name, p);
        else if (k->type == K_MONEY)
            fprintf(f, "%s=%lld\n", k->name, (long long)*(const int64_t *)p);
        else
            fprintf(f, "%s=%d\n", k->name, *(const int *)p);
    }
}

/* ---- token bucket ---- */

int otp_bucket_take(otp_bucket *b, int rate, int burst, int64_t now_ms)
{
    if (rate <= 0)
        return 0;
    if (burst < 1)
        burst = 1;
    int64_t cap = (int64_t)burst * 1000;
    if (!b->init) {
        b->init = true;
        b->tokens_milli = cap;
        b->at_ms = now_ms;
    }
    if (now_ms > b->at_ms) {
        /* rate tokens per second = rate milli-tokens per ms */
        int64_t add = (now_ms - b->at_ms) * (int64_t)rate;
        b->tokens_milli = add >= cap - b->tokens_milli ? cap : b->tokens_milli + add;
        b->at_ms = now_ms;
    }
    if (b->tokens_milli >= 1000) {
        b->tokens_milli -= 1000;
        return 0;
    }
    int64_t need = 1000 - b->tokens_milli;      /* milli-tokens */
    int64_t wait_ms = (need + rate - 1) / rate; /* rate milli-tokens per ms */
    int64_t s = (wait_ms + 999) / 1000;
    return s < 1 ? 1 : (int)s;
}

int otp_key_lease_want(int rate, int burst)
{
    int want = rate / 20;
    if (want > burst / 10)
        want = burst / 10;
    return want < 1 ? 1 : want;
}

int otp_key_lease_take(otp_key_lease *l, int want, int64_t now_ms, int *ret_ask)
{
    if (now_ms < l->empty_until_ms) {
        int64_t s = (l->empty_until_ms - now_ms + 999) / 1000;
        return s < 1 ? 1 : (int)s;
    }
    if (l->tokens > 0 && now_ms < l->until_ms) {
        l->tokens--;
        return 0;
    }
    l->tokens = 0;
    *ret_ask = l->asking++ > 0 || want < 1 ? 1 : want;
    return -1;
}

void otp_key_lease_unask(otp_key_lease *l)
{
    if (l->asking > 0)
        l->asking--;
}

int otp_key_lease_fill(otp_key_lease *l, int granted, int64_t wait_ms, int64_t now_ms)
{
    otp_key_lease_unask(l);
    if (granted >= 1) {
        /* Another request of this node may have filled the lease meanwhile:
         * keep both, under the newer deadline. */
        l->tokens += granted - 1;
        l->until_ms = now_ms + OTP_KEY_LEASE_MS;
        l->empty_until_ms = 0;
        return 0;
    }
    if (l->tokens > 0 && now_ms < l->until_ms) {
        l->tokens--; /* another request's answer brought tokens meanwhile */
        return 0;
    }
    if (wait_ms < 1)
        wait_ms = 1;
    l->tokens = 0;
    l->empty_until_ms = now_ms + wait_ms;
    int64_t s = (wait_ms + 999) / 1000;
    return s < 1 ? 1 : (int)s;
}

/* ---- per destination number ---- */

static int ceil_s(int64_t ms)
{
    int64_t s = (ms + 999) / 1000;
    return s < 1 ? 1 : s > INT_MAX ? INT_MAX : (int)s;
}

int otp_phone_send_check(const otp_limits *l, const int64_t *recent_ms, int n, int64_t now_ms,
                         int *ret_retry_s)
{
    int64_t window = (int64_t)l->phone_window_s * 1000;
    /* A send stamped later than this one can have been stored first (parallel
     * sends take their time before they queue): never count back from before
     * the newest send, or the wait would exceed the interval. */
    if (n > 0 && recent_ms[0] > now_ms)
        now_ms = recent_ms[0];
    if (n > 0 && l->phone_interval_s > 0) {
        int64_t next = recent_ms[0] + (int64_t)l->phone_interval_s * 1000;
        if (now_ms < next) {
            *ret_retry_s = ceil_s(next - now_ms);
            return OTP_PHONE_SEND_INTERVAL;
        }
    }
    if (l->phone_sends > 0) {
        int inside = 0;
        for (int i = 0; i < n; i++)
            if (recent_ms[i] > now_ms - window)
                inside++;
        if (inside >= l->phone_sends) {
            /* The phone_sends-th newest leaves the window first. */
            int64_t free_at = recent_ms[l->phone_sends - 1] + window;
            *ret_retry_s = ceil_s(free_at - now_ms);
            return OTP_PHONE_SEND_WINDOW;
        }
    }
    return OTP_PHONE_SEND_OK;
}

int otp_phone_locked(const otp_phone_state *s, int64_t now_ms)
{
    if (s->locked_until_ms <= now_ms)
        return 0;
    return ceil_s(s->locked_until_ms - now_ms);
}

/* Adds a failure at now to the kept times, keeping only those of the window
 * that ends at now, oldest first (a guess stamped before one already stored,
 * as parallel guesses can be, goes in its place). */
static void fail_times_add(otp_phone_state *s, int64_t window_ms, int64_t now_ms)
{
    int n = 0, kept = s->fails < OTP_PHONE_FAILS_KEPT ? s->fails : OTP_PHONE_FAILS_KEPT;
    for (int i = 0; i < kept; i++)
        if (s->fail_at[i] > now_ms - window_ms)
            s->fail_at[n++] = s->fail_at[i];
    if (n == OTP_PHONE_FAILS_KEPT) { /* only with fail_max = OTP_PHONE_FAILS_KEPT */
        memmove(s->fail_at, s->fail_at + 1, (size_t)(n - 1) * sizeof(s->fail_at[0]));
        n--;
    }
    int at = n;
    while (at > 0 && s->fail_at[at - 1] > now_ms) {
        s->fail_at[at] = s->fail_at[at - 1];
        at--;
    }
    s->fail_at[at] = now_ms;
    s->fails = n + 1;
    s->fail_since_ms = s->fail_at[0];
    s->times_kept = true;
}

bool otp_phone_fail(otp_phone_state *s, const otp_limits *l, int64_t now_ms)
{
    bool locked = false;
    int64_t window_ms = (int64_t)l->fail_window_s * 1000;
    if (l->fail_max > 0 && l->fail_max <= OTP_PHONE_FAILS_KEPT) {
        fail_times_add(s, window_ms, now_ms);
    } else {
        if (s->fails == 0 || now_ms - s->fail_since_ms >= window_ms) {
            s->fails = 0;
            s->fail_since_ms = now_ms;
        }
        s->fails++;
        s->times_kept = false;
    }
    s->streak++;
    if (l->fail_streak_max > 0 && s->streak >= l->fail_streak_max) {
        s->locked_until_ms = now_ms + (int64_t)l->streak_lock_s * 1000;
        s->lock_kind = 2;
        s->streak = 0;
        s->fails = 0;
        locked = true;
    } else if (l->fail_max > 0 && s->fails >= l->fail_max) {
        int64_t until = now_ms + (int64_t)l->lock_s * 1000;
        if (until > s->locked_until_ms) {
            s->locked_until_ms = until;
            s->lock_kind = 1;
        }
        s->fails = 0;
        locked = true;
    }
    return locked;
}

void otp_phone_success(otp_phone_state *s)
{
    s->fails = 0;
    s->fail_since_ms = 0;
    s->streak = 0;
}

size_t otp_phone_fail_times_encode(const otp_phone_state *s, uint8_t out[OTP_PHONE_FAILS_KEPT * 8])
{
    if (!s->times_kept || s->fails <= 0)
        return 0;
    int n = s->fails < OTP_PHONE_FAILS_KEPT ? s->fails : OTP_PHONE_FAILS_KEPT;
    for (int i = 0; i < n; i++) {
        uint64_t v = (uint64_t)s->fail_at[i];
        for (int b = 0; b < 8; b++)
            out[i * 8 + b] = (uint8_t)(v >> (56 - 8 * b));
    }
    return (size_t)n * 8;
}

void otp_phone_fail_times_decode(otp_phone_state *s, const uint8_t *in, size_t len)
{
    /* fails = 0 (a success, a lock, an operator's lift) empties the window
     * whatever times a store left beside it. Times that do not match fails
     * and fail_since (their count, their oldest, their order) were left by a
     * writer that does not keep them (an older node during a rolling upgrade,
     * which counted on in fixed windows): then counted as below. */
    if (s->fails > 0 && in && len % 8 == 0 && len / 8 == (size_t)s->fails &&
        len / 8 <= OTP_PHONE_FAILS_KEPT) {
        int n = (int)(len / 8);
        bool ok = true;
        for (int i = 0; i < n; i++) {
            uint64_t v = 0;
            for (int b = 0; b < 8; b++)
                v = v << 8 | in[i * 8 + b];
            s->fail_at[i] = (int64_t)v;
            ok = ok && (i == 0 || s->fail_at[i] >= s->fail_at[i - 1]);
        }
        if (ok && s->fail_at[0] == s->fail_since_ms) {
            s->times_kept = true;
            return;
        }
    }
    /* Counted in a fixed window (or before the times were kept): each of its
     * failures counts as made at the window's start, which keeps them in a
     * rolling window no longer than the fixed one kept them. */
    int n = s->fails < OTP_PHONE_FAILS_KEPT ? s->fails : OTP_PHONE_FAILS_KEPT;
    for (int i = 0; i < n; i++)
        s->fail_at[i] = s->fail_since_ms;
    s->times_kept = false;
}

/* ---- countries ---- */

/* Calls match(item) for each ';' or ','-separated item of list; true on the
 * first match. */
static bool list_has(const char *list, bool (*match)(const char *item, size_t len, const void *),
                     const void *ctx)
{
    const char *p = list;
    while (*p) {
        while (*p == ';' || *p == ',' || *p == ' ')
            p++;
        const char *start = p;
        while (*p && *p != ';' && *p != ',' && *p != ' ')
            p++;
        if (p > start && match(start, (size_t)(p - start), ctx))
            return true;
    }
    return false;
}

typedef struct country_q {
    const char *region;
    int cc;
} country_q;

static bool country_match(const char *item, size_t len, const void *ctx)
{
    const country_q *q = ctx;
    if (item[0] == '+' || (item[0] >= '0' && item[0] <= '9')) {
        const char *d = item[0] == '+' ? item + 1 : item;
        size_t dl = len - (size_t)(d - item);
        if (dl == 0 || dl > 4)
            return false;
        int cc = 0;
        for (size_t i = 0; i < dl; i++) {
            if (d[i] < '0' || d[i] > '9')
                return false;
            cc = cc * 10 + (d[i] - '0');
        }
        return cc == q->cc;
    }
    if (len != 2 || !q->region)
        return false;
    for (size_t i = 0; i < 2; i++) {
        char a = item[i], b = q->region[i];
        if (a >= 'a' && a <= 'z')
            a = (char)(a - 'a' + 'A');
        if (b >= 'a' && b <= 'z')
            b = (char)(b - 'a' + 'A');
        if (a != b)
            return false;
    }
    return true;
}

bool otp_country_allowed(const char *list, const char *region, int cc)
{
    if (!list || !*list)
        return true;
    country_q q = {region, cc};
    return list_has(list, country_match, &q);
}

/* ---- SMS pumping ---- */

void otp_phone_prefix(const char *e164, char out[OTP_PREFIX_SIZE])
{
    size_t n = strnlen(e164, OTP_PREFIX_SIZE - 1);
    size_t keep = n > 5 ? n - 4 : n;
    memcpy(out, e164, keep);
    out[keep] = '\0';
}

static bool safe_match(const char *item, size_t len, const void *ctx)
{
    const char *e164 = ctx;
    const char *d = item[0] == '+' ? item + 1 : item;
    size_t dl = len - (size_t)(d - item);
    const char *n = e164[0] == '+' ? e164 + 1 : e164;
    return dl > 0 && strlen(n) >= dl && memcmp(n, d, dl) == 0;
}

bool otp_phone_safe(const char *list, const char *e164)
{
    return list && *list && list_has(list, safe_match, e164);
}

bool otp_pumping_suspect(int64_t sends_w, int64_t verifies_w, int64_t sends_24h, int window_s,
                         int min_sends, int growth, int min_conv_pct)
{
    if (min_sends <= 0 || window_s <= 0)
        return false;
    int64_t baseline = (sends_24h * window_s + 86399) / 86400;
    int64_t threshold = (int64_t)growth * baseline;
    if (threshold < min_sends)
        threshold = min_sends;
    if (sends_w < threshold)
        return false;
    return verifies_w * 100 < (int64_t)min_conv_pct * sends_w;
}
