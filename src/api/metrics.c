/* api/metrics.c — GET /metrics in the Prometheus text format (SPEC 7).
 *
 * Counters are process-wide atomics bumped with relaxed ordering: a scrape sees
 * each counter's latest value, and counting costs one uncontended atomic add.
 * Series: OTP requests created, verifications by outcome, wallet refusals,
 * abuse refusals by reason, SMS-pumping blocks, number locks; HTTP requests by
 * route and status, and request latency by route (a histogram), fed by the
 * HTTP layer's per-request observer; delivery by provider (delivery/stats.h);
 * and, read from the store at each scrape, the outbox's depth and (SQLite) the
 * writer's batches and commit times. docs/api.md lists them.
 */
#include "api/metrics.h"
#include "delivery/stats.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t sends[2][2]; /* [resend][test] */
static atomic_uint_fast64_t verifications[OTP_E__COUNT];
static atomic_uint_fast64_t wallet_refusals;
static atomic_uint_fast64_t refusals[OTP_REFUSE__COUNT];
static atomic_uint_fast64_t pumping_blocks;
static atomic_uint_fast64_t phone_locks;

static const char *const refusal_names[OTP_REFUSE__COUNT] = {
    [OTP_REFUSE_KEY_RATE] = "key_rate",
    [OTP_REFUSE_PHONE_INTERVAL] = "phone_send_interval",
    [OTP_REFUSE_PHONE_LIMIT] = "phone_send_limit",
    [OTP_REFUSE_PHONE_LOCKED] = "phone_locked",
    [OTP_REFUSE_COUNTRY] = "country_not_allowed",
    [OTP_REFUSE_SPEND_CAP] = "daily_spend_cap",
    [OTP_REFUSE_PUMPING] = "suspected_sms_pumping",
    [OTP_REFUSE_OTHER] = "other",
};

void otp_metrics_refusal(otp_refusal r)
{
    if ((unsigned)r < OTP_REFUSE__COUNT)
        atomic_fetch_add_explicit(&refusals[r], 1, memory_order_relaxed);
}

void otp_metrics_pumping_block(void)
{
    atomic_fetch_add_explicit(&pumping_blocks, 1, memory_order_relaxed);
}

void otp_metrics_phone_lock(void)
{
    atomic_fetch_add_explicit(&phone_locks, 1, memory_order_relaxed);
}

void otp_metrics_send(bool resend, bool test)
{
    atomic_fetch_add_explicit(&sends[resend][test], 1, memory_order_relaxed);
}

void otp_metrics_verification(otp_err outcome)
{
    if ((unsigned)outcome < OTP_E__COUNT)
        atomic_fetch_add_explicit(&verifications[outcome], 1, memory_order_relaxed);
}

void otp_metrics_wallet_refusal(void)
{
    atomic_fetch_add_explicit(&wallet_refusals, 1, memory_order_relaxed);
}

otp_refusal otp_metrics_refusal_of(const char *reason)
{
    for (int i = 0; reason && i < OTP_REFUSE__COUNT; i++)
        if (strcmp(refusal_names[i], reason) == 0)
            return (otp_refusal)i;
    return OTP_REFUSE_OTHER;
}

/* ---- requests by route and status, latency by route ---- */

#define MAX_ROUTES 40 /* otp_api_nroutes + 1 (no route) must fit */

static const int statuses[] = {200, 201, 400, 401, 402, 403, 404, 405, 409,
                               410, 413, 415, 429, 431, 500, 503, 0 /* other */};
#define N_STATUS (sizeof(statuses) / sizeof(statuses[0]))
static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                0.05,   0.1,   0.25,   0.5,   1,    2.5};
#define N_BOUNDS (sizeof(bounds) / sizeof(bounds[0]))

static atomic_uint_fast64_t requests[MAX_ROUTES][N_STATUS];
/* per bucket, not cumulative; the total per (route, status) is requests[][] */
static atomic_uint_fast64_t latency[MAX_ROUTES][N_STATUS][N_BOUNDS + 1];
static atomic_uint_fast64_t latency_sum_us[MAX_ROUTES][N_STATUS];

/* The route's index in otp_api_routes, or otp_api_nroutes for none. */
static size_t route_index(const otp_route *route)
{
    size_t n = otp_api_nroutes < MAX_ROUTES - 1 ? otp_api_nroutes : MAX_ROUTES - 1;
    if (route >= otp_api_routes && route < otp_api_routes + n)
        return (size_t)(route - otp_api_routes);
    return n;
}

void otp_metrics_request(const otp_route *route, int status, int64_t duration_us)
{
    size_t r = route_index(route);
    size_t si = N_STATUS - 1;
    for (size_t i = 0; i + 1 < N_STATUS; i++)
        if (statuses[i] == status) {
            si = i;
            break;
        }
    atomic_fetch_add_explicit(&requests[r][si], 1, memory_order_relaxed);
    double sec = (double)duration_us / 1e6;
    size_t b = 0;
    while (b < N_BOUNDS && sec > bounds[b])
        b++;
    atomic_fetch_add_explicit(&latency[r][si][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_sum_us[r][si], duration_us > 0 ? (uint64_t)duration_us : 0,
                              memory_order_relaxed);
}

static uint64_t load(atomic_uint_fast64_t *v)
{
    return (uint64_t)atomic_load_explicit(v, memory_order_relaxed);
}

/* One histogram series from per-bucket counts (the last one +Inf): cumulative
 * _bucket lines, _sum and _count. labels: "" or `a="b",…`. */
static void histogram(FILE *f, const char *name, const char *labels, const double *upper,
                      size_t n_bounds, const uint64_t *per_bucket, double sum)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (size_t b = 0; b <= n_bounds; b++) {
        cum += per_bucket[b];
        if (b < n_bounds)
            fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, upper[b],
                    (unsigned long long)cum);
        else
            fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                    (unsigned long long)cum);
    }
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    fprintf(f, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, open, labels, close, sum, name,
            open, labels, close, (unsigned long long)cum);
}

/* The labels of route index r and status index si. */
static void route_status_labels(char *out, size_t n, size_t r, size_t si)
{
    char status[8] = "other";
    if (statuses[si])
        snprintf(status, sizeof(status), "%d", statuses[si]);
    if (r < otp_api_nroutes && r < MAX_ROUTES - 1)
        snprintf(out, n, "method=\"%s\",route=\"%s\",status=\"%s\"", otp_api_routes[r].method,
                 otp_api_routes[r].pattern, status);
    else
        snprintf(out, n, "method=\"\",route=\"-\",status=\"%s\"", status);
}

/* OTP requests created, verifications by outcome, wallet refusals. */
static void otp_series(FILE *f)
{
    static const otp_err outcomes[] = {
        OTP_OK,
        OTP_E_OTP_INCORRECT,
        OTP_E_OTP_ATTEMPTS_EXHAUSTED,
        OTP_E_OTP_EXPIRED,
        OTP_E_OTP_ALREADY_VERIFIED,
        OTP_E_OTP_CANCELLED,
        OTP_E_OTP_NOT_FOUND,
        OTP_E_INVALID_OTP_CODE,
        OTP_E_PHONE_LOCKED,
    };
    fputs("# HELP otpd_otp_sends_total OTP requests created (send) and codes sent again (resend), "
          "by key mode; idempotent replays not counted.\n"
          "# TYPE otpd_otp_sends_total counter\n",
          f);
    for (int resend = 0; resend < 2; resend++)
        for (int test = 0; test < 2; test++)
            fprintf(f, "otpd_otp_sends_total{kind=\"%s\",mode=\"%s\"} %llu\n",
                    resend ? "resend" : "send", test ? "test" : "live",
                    (unsigned long long)load(&sends[resend][test]));
    fputs("# HELP otpd_otp_verifications_total Verifications by outcome: verified, or the error "
          "code they were answered with.\n"
          "# TYPE otpd_otp_verifications_total counter\n",
          f);
    for (int e = 0; e < OTP_E__COUNT; e++) {
        bool listed = false;
        for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
            listed = listed || outcomes[i] == (otp_err)e;
        uint64_t v = load(&verifications[e]);
        if (listed || v)
            fprintf(f, "otpd_otp_verifications_total{outcome=\"%s\"} %llu\n",
                    e == OTP_OK ? "verified" : otp_err_code((otp_err)e), (unsigned long long)v);
    }
    fprintf(f,
            "# HELP otpd_wallet_refusals_total Sends and resends refused for want of balance "
            "(402 insufficient_balance).\n"
            "# TYPE otpd_wallet_refusals_total counter\n"
            "otpd_wallet_refusals_total %llu\n",
            (unsigned long long)load(&wallet_refusals));
}

/* ---- delivery: by provider (delivery/stats.h), the outbox (the store) ---- */

static void delivery_handled(const otp_delivery_stats *s, void *ctx)
{
    static const otp_msg_status st[] = {OTP_MSG_SENT, OTP_MSG_FAILED, OTP_MSG_QUEUED};
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
        fprintf(ctx, "otpd_delivery_messages_total{provider=\"%s\",status=\"%s\"} %llu\n",
                s->provider, otp_msg_status_name(st[i]), (unsigned long long)s->handled[st[i]]);
}

static void delivery_reports(const otp_delivery_stats *s, void *ctx)
{
    static const otp_msg_status st[] = {OTP_MSG_DELIVERED, OTP_MSG_UNDELIVERABLE, OTP_MSG_FAILED};
    if (strcmp(s->provider, OTP_DELIVERY_NO_PROVIDER) == 0)
        return;
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
        fprintf(ctx, "otpd_delivery_reports_total{provider=\"%s\",status=\"%s\"} %llu\n",
                s->provider, otp_msg_status_name(st[i]), (unsigned long long)s->reports[st[i]]);
}

static void delivery_temporary(const otp_delivery_stats *s, void *ctx)
{
    if (strcmp(s->provider, OTP_DELIVERY_NO_PROVIDER) != 0)
        fprintf(ctx, "otpd_delivery_temporary_failures_total{provider=\"%s\"} %llu\n", s->provider,
                (unsigned long long)s->temporary);
}

static void delivery_latency(const otp_delivery_stats *s, void *ctx)
{
    FILE *f = ctx;
    if (strcmp(s->provider, OTP_DELIVERY_NO_PROVIDER) == 0)
        return;
    char labels[OTP_PROVIDER_NAME_SIZE + 16];
    snprintf(labels, sizeof(labels), "provider=\"%s\"", s->provider);
    histogram(f, "otpd_delivery_latency_seconds", labels, otp_delivery_latency_bounds_s,
              OTP_DELIVERY_LATENCY_BUCKETS, s->latency, (double)s->latency_sum_ms / 1e3);
}

static void delivery_series(FILE *f, otp_store *store)
{
    fputs("# HELP otpd_delivery_messages_total Messages the dispatcher handled, by provider and "
          "the status they moved to: sent (the provider took it), failed (refused for good; "
          "provider (none): its request expired unsent, or its text did not unseal), queued (back "
          "to the outbox for a retry; the last provider tried, (none) if none was usable).\n"
          "# TYPE otpd_delivery_messages_total counter\n",
          f);
    otp_delivery_stats_each(delivery_handled, f);
    fputs("# HELP otpd_delivery_temporary_failures_total Times a provider could not take a "
          "message for now (the next provider is tried, then the outbox).\n"
          "# TYPE otpd_delivery_temporary_failures_total counter\n",
          f);
    otp_delivery_stats_each(delivery_temporary, f);
    fputs("# HELP otpd_delivery_reports_total Delivery reports that matched a message, by "
          "provider and the status they report (a repeated report counts again).\n"
          "# TYPE otpd_delivery_reports_total counter\n",
          f);
    otp_delivery_stats_each(delivery_reports, f);
    fputs("# HELP otpd_delivery_latency_seconds From a message's creation to its provider "
          "taking it.\n"
          "# TYPE otpd_delivery_latency_seconds histogram\n",
          f);
    otp_delivery_stats_each(delivery_latency, f);

    int64_t queued, sending;
    if (!store || !store->ops->outbox_depth ||
        store->ops->outbox_depth(store, &queued, &sending) != OTP_OK)
        return;
    fprintf(f,
            "# HELP otpd_delivery_queue_depth Messages in the outbox (all accounts, all nodes): "
            "waiting for a dispatcher (queued), or leased to one (sending).\n"
            "# TYPE otpd_delivery_queue_depth gauge\n"
            "otpd_delivery_queue_depth{status=\"queued\"} %lld\n"
            "otpd_delivery_queue_depth{status=\"sending\"} %lld\n",
            (long long)queued, (long long)sending);
}

/* The store writer's batches and commit times, where the backend has them. */
static void store_series(FILE *f, otp_store *store)
{
    if (!store || !store->ops->commit_stats)
        return;
    otp_commit_stats cs;
    store->ops->commit_stats(store, &cs);
    fprintf(f,
            "# HELP otpd_store_batches_total Batches the store's writer has committed or failed "
            "(group commit).\n"
            "# TYPE otpd_store_batches_total counter\n"
            "otpd_store_batches_total %llu\n"
            "# HELP otpd_store_batched_transactions_total Transactions those batches held.\n"
            "# TYPE otpd_store_batched_transactions_total counter\n"
            "otpd_store_batched_transactions_total %llu\n"
            "# HELP otpd_store_commit_duration_seconds Time of each batch's COMMIT: its WAL "
            "write and sync, and any checkpoint the writer ran in it.\n"
            "# TYPE otpd_store_commit_duration_seconds histogram\n",
            (unsigned long long)cs.batches, (unsigned long long)cs.txns);
    histogram(f, "otpd_store_commit_duration_seconds", "", otp_commit_bounds_s, OTP_COMMIT_BUCKETS,
              cs.buckets, (double)cs.sum_us / 1e6);
}

void otp_api_metrics(otp_http_req *req, void *app)
{
    const otp_api *api = app;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    otp_series(f);
    fputs("# HELP otpd_refusals_total Requests refused by abuse protection, by reason.\n"
          "# TYPE otpd_refusals_total counter\n",
          f);
    for (int i = 0; i < OTP_REFUSE__COUNT; i++)
        fprintf(f, "otpd_refusals_total{reason=\"%s\"} %llu\n", refusal_names[i],
                (unsigned long long)load(&refusals[i]));
    fprintf(f,
            "# HELP otpd_sms_pumping_blocks_total Number prefixes blocked for suspected SMS "
            "pumping.\n"
            "# TYPE otpd_sms_pumping_blocks_total counter\n"
            "otpd_sms_pumping_blocks_total %llu\n"
            "# HELP otpd_phone_locks_total Numbers locked after too many wrong codes.\n"
            "# TYPE otpd_phone_locks_total counter\n"
            "otpd_phone_locks_total %llu\n",
            (unsigned long long)load(&pumping_blocks), (unsigned long long)load(&phone_locks));

    size_t nr = route_index(NULL) + 1;
    fputs("# HELP otpd_http_requests_total HTTP requests by route and status.\n"
          "# TYPE otpd_http_requests_total counter\n",
          f);
    for (size_t r = 0; r < nr; r++)
        for (size_t si = 0; si < N_STATUS; si++) {
            uint64_t v = load(&requests[r][si]);
            if (!v)
                continue;
            char labels[160];
            route_status_labels(labels, sizeof(labels), r, si);
            fprintf(f, "otpd_http_requests_total{%s} %llu\n", labels, (unsigned long long)v);
        }
    fputs("# HELP otpd_http_request_duration_seconds HTTP request latency by route and status.\n"
          "# TYPE otpd_http_request_duration_seconds histogram\n",
          f);
    for (size_t r = 0; r < nr; r++)
        for (size_t si = 0; si < N_STATUS; si++) {
            /* One read of the buckets, so that +Inf and _count agree while
             * requests go on. */
            uint64_t buckets[N_BOUNDS + 1], total = 0;
            for (size_t b = 0; b <= N_BOUNDS; b++)
                total += buckets[b] = load(&latency[r][si][b]);
            if (!total)
                continue;
            char labels[160];
            route_status_labels(labels, sizeof(labels), r, si);
            histogram(f, "otpd_http_request_duration_seconds", labels, bounds, N_BOUNDS, buckets,
                      (double)load(&latency_sum_us[r][si]) / 1e6);
        }
    delivery_series(f, api ? api->store : NULL);
    store_series(f, api ? api->store : NULL);
    if (fclose(f) != 0 || !buf) {
        free(buf);
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    otp_http_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
    free(buf);
}
