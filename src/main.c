/* main.c — otpd's entry point: start-up, signals and shutdown of `otpd serve`.
 *
 * Start-up goes config → secret → store → providers → dispatcher → HTTP, and
 * shutdown runs it backwards so nothing committed is lost: stop accepting, let
 * in-flight requests finish (their transactions commit and they are answered),
 * stop the HTTP threads, stop the dispatcher after its current batch, and close
 * the store, which commits whatever was still queued. Every other command
 * (account, key, wallet, migrate, …) lives in cli/.
 */
#include "api/api.h"
#include "api/guard.h"
#include "api/key_cache.h"
#include "api/template_cache.h"
#include "cli/cli.h"
#include "delivery/dispatcher.h"
#include "delivery/dlr.h"
#include "http/server.h"
#include "otpd_config.h"
#include "store/purger.h"
#include "util/clock.h"
#include "util/log.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROVIDERS 8
/* A stop lets requests in flight finish for up to this long (within
 * server.stop_timeout), then refuses the reads still queued, and waits the
 * rest of server.stop_timeout for those parked on a txn or a running read: a
 * PostgreSQL statement stuck behind a lock ends within its 30 s
 * statement_timeout. */
#define DRAIN_TIMEOUT_MS 10000

static const char serve_usage[] =
    "usage: otpd serve [--listen ADDR] [--data-dir DIR] [--db URL] [--config FILE]\n"
    "\n"
    "Starts the HTTP API (default 127.0.0.1:8080), the outbox dispatcher and the\n"
    "store (migrated at start-up unless store.migrate = false). SIGTERM or SIGINT\n"
    "drains in-flight requests and stops cleanly. See `otpd help config`.\n";

typedef struct provider_list {
    const otp_config *cfg;
    otp_provider *items[MAX_PROVIDERS];
    size_t n;
    otp_dlr_sink dlr; /* where providers send delivery receipts: the store */
    int failed;
    char err[512];
} provider_list;

static void add_provider(provider_list *l, const char *section)
{
    if (l->failed)
        return;
    if (l->n == MAX_PROVIDERS) {
        snprintf(l->err, sizeof(l->err), "at most %d providers", MAX_PROVIDERS);
        l->failed = 1;
        return;
    }
    char key[160];
    snprintf(key, sizeof(key), "%s.type", section);
    const char *type = otp_config_get(l->cfg, key);
    if (!type && strcmp(section, "provider.file") == 0)
        type = "file";
    const otp_provider_ops *ops = type ? otp_provider_type(type) : NULL;
    if (!ops && !type) {
        snprintf(l->err, sizeof(l->err),
                 "%s: not set (is there a [%s] section?); one of %s is needed", key, section,
                 otp_provider_type_names());
        l->failed = 1;
        return;
    }
    if (!ops) {
        snprintf(l->err, sizeof(l->err), "%s = \"%s\": unknown provider type (%s)", key,
                 type ? type : "", otp_provider_type_names());
        l->failed = 1;
        return;
    }
    if (ops->create(l->cfg, section, &l->dlr, &l->items[l->n], l->err, sizeof(l->err)) != 0) {
        l->failed = 1;
        return;
    }
    l->n++;
}

static void add_section(const char *section, void *ctx)
{
    add_provider(ctx, section);
}

/* Builds the providers in priority order: delivery.providers if set, else every
 * [provider.NAME] section in file order, else the built-in file provider. */
static int build_providers(const otp_config *cfg, provider_list *l)
{
    l->cfg = cfg;
    const char *names = otp_config_get(cfg, "delivery.providers");
    if (names && *names) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", names);
        for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t;
             t = strtok_r(NULL, ", ", &save)) {
            char section[128];
            snprintf(section, sizeof(section), "provider.%s", t);
            add_provider(l, section);
        }
    } else {
        otp_config_each_section(cfg, "provider.", add_section, l);
        if (l->n == 0 && !l->failed)
            add_provider(l, "provider.file");
    }
    return l->failed ? -1 : 0;
}

static void free_providers(provider_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        l->items[i]->ops->destroy(l->items[i]);
}

static int int_setting(const otp_config *cfg, const char *key, long min, long max, long *ret)
{
    char err[512];
    if (otp_config_int(cfg, key, min, max, ret, err, sizeof(err)) != 0) {
        fprintf(stderr, "otpd: %s\n", err);
        return -1;
    }
    return 0;
}

/* Waits until the requests in progress have ended, or until deadline_us. A
 * request's resumer counts it unparked only once libmicrohttpd has it back, so
 * it may still be counted parked just after the request has been answered:
 * waiting for both counts also waits for that thread to be done with it. */
static void wait_inflight(otp_http_server *http, int64_t deadline_us)
{
    while ((otp_http_inflight(http) > 0 || otp_http_parked(http) > 0) &&
           otp_mono_us() < deadline_us) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* server.stop_timeout ran out with requests still parked on a txn or a read.
 * Stopping libmicrohttpd would free them under the thread that will write to
 * them, and closing the store would wait for that txn however long it takes.
 * So otpd ends as a kill would: those requests get no answer (their
 * connections close), though their txns may still commit (PostgreSQL runs a
 * statement already sent to its end); a client may retry with its
 * idempotencyKey. Everything committed is durable already. */
static _Noreturn void exit_parked(otp_api *api, long parked)
{
    otp_api_reads_abandon(api); /* a read may never end */
    otp_log(OTP_LOG_ERROR,
            "event=stop_timeout parked=%ld note=\"requests still wait on the store; exiting "
            "without closing it\"",
            parked);
    otp_log_batch_stop();
    _exit(1);
}

static int serve(otp_app *app)
{
    const otp_config *cfg = app->cfg;
    char err[512];
    int rc = 1;
    int64_t stop_deadline = 0; /* set at the stop signal */
    otp_store *store = NULL;
    otp_dispatcher *dispatcher = NULL;
    otp_purger *purger = NULL;
    otp_http_server *http = NULL;
    provider_list providers = {0};
    otp_api api = {0};
    uint8_t root[OTP_SECRET_LEN];

    if (app->help) {
        fputs(serve_usage, stdout);
        return 0;
    }
    if (app->argc > 0) {
        fprintf(stderr, "otpd serve: unexpected argument '%s'\n%s", app->argv[0], serve_usage);
        return 2;
    }
    otp_log_level level;
    if (otp_log_level_parse(otp_config_get(cfg, "log_level"), &level) != 0) {
        fprintf(stderr, "otpd: log_level = \"%s\" (from %s): not one of debug|info|warn|error\n",
                otp_config_get(cfg, "log_level"), otp_config_origin(cfg, "log_level"));
        return 1;
    }
    otp_log_setup(level, 2);

    long threads, max_conn, per_ip, timeout, request_timeout, max_body, max_header, max_batch,
        lease, batch, stop_timeout;
    bool migrate;
    if (int_setting(cfg, "server.threads", 1, 64, &threads) ||
        int_setting(cfg, "server.max_connections", 1, 100000, &max_conn) ||
        int_setting(cfg, "server.max_connections_per_ip", 0, 100000, &per_ip) ||
        int_setting(cfg, "server.connection_timeout", 1, 3600, &timeout) ||
        int_setting(cfg, "server.request_timeout", 1, 3600, &request_timeout) ||
        int_setting(cfg, "server.max_body", 1024, 1048576, &max_body) ||
        int_setting(cfg, "server.max_header", 1024, 65536, &max_header) ||
        int_setting(cfg, "server.stop_timeout", 1, 3600, &stop_timeout) ||
        int_setting(cfg, "store.max_batch", 1, 10000, &max_batch) ||
        int_setting(cfg, "delivery.lease", 1, 3600, &lease) ||
        int_setting(cfg, "delivery.batch", 1, 1000, &batch))
        return 1;
    /* The background purge (issue 3): how long expired requests are kept. */
    long retention, purge_interval;
    if (int_setting(cfg, "store.request_retention", 60, 31536000, &retention) ||
        int_setting(cfg, "store.purge_interval", 1, 86400, &purge_interval))
        return 1;
    if (otp_config_bool(cfg, "store.migrate", &migrate, err, sizeof(err)) != 0) {
        fprintf(stderr, "otpd: %s\n", err);
        return 1;
    }
    /* SPEC 3: the server-wide abuse limits (accounts override them). */
    long limits_cache;
    otp_limits limits;
    otp_limits_defaults(&limits);
    if (int_setting(cfg, "limits.cache_ms", 0, 60000, &limits_cache))
        return 1;
    if (otp_limits_apply(&limits, otp_config_get(cfg, "limits.defaults"), err, sizeof(err)) != 0) {
        fprintf(stderr, "otpd: limits.defaults (from %s): %s\n",
                otp_config_origin(cfg, "limits.defaults"), err);
        return 1;
    }
    otp_guard_configure(&limits, (int)limits_cache);
    otp_key_cache_configure((int)limits_cache);      /* API key lookups: the same period */
    otp_template_cache_configure((int)limits_cache); /* and the templates sends use */
    otp_http_set_observer(otp_metrics_request);

    /* Block the stop signals before any thread starts, so only sigwait sees them. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (otp_cli_load_secret(cfg, root, err, sizeof(err)) != 0) {
        fprintf(stderr, "otpd: %s\n", err);
        return 1;
    }
    otp_secrets_derive(root, &api.secrets);
    sodium_memzero(root, sizeof(root));

    if (otp_cli_open_store(cfg, migrate, &store, err, sizeof(err)) != 0) {
        fprintf(stderr, "otpd: %s\n", err);
        goto out;
    }
    api.store = store;
    if (!store->ops->limits_get)
        otp_log(OTP_LOG_WARN,
                "event=abuse_limits_partial store=%s note=\"only the per-key bucket "
                "and the country list are enforced by this store\"",
                store->ops->name);
    otp_dlr_store_sink(store, &providers.dlr);
    if (build_providers(cfg, &providers) != 0) {
        fprintf(stderr, "otpd: %s\n", providers.err);
        goto out;
    }
    otp_dispatcher_options dopt = {
        .lease_ms = lease * 1000, .batch = (size_t)batch, .idle_ms = 1000};
    if (otp_dispatcher_start(store, providers.items, providers.n, api.secrets.box_key, &dopt,
                             &dispatcher) != 0) {
        fprintf(stderr, "otpd: cannot start the dispatcher\n");
        goto out;
    }
    api.dispatcher = dispatcher;
    otp_purger_options popt = {.interval_ms = purge_interval * 1000,
                               .request_retention_ms = retention * 1000};
    if (otp_purger_start(store, &popt, &purger) != 0) {
        fprintf(stderr, "otpd: cannot start the purger\n");
        goto out;
    }

    /* On PostgreSQL the read routes run on threads of their own (api/reads.c). */
    int read_threads = store->ops->read_slots ? store->ops->read_slots(store) : 0;
    if (otp_api_reads_start(&api, read_threads) != 0) {
        fprintf(stderr, "otpd: cannot start the read threads\n");
        goto out;
    }

    otp_http_options hopt = {
        .listen = otp_config_get(cfg, "listen"),
        .threads = (unsigned)threads,
        .max_connections = (unsigned)max_conn,
        .max_connections_per_ip = (unsigned)per_ip,
        .connection_timeout_s = (unsigned)timeout,
        .request_timeout_s = (unsigned)request_timeout,
        .max_body = (size_t)max_body,
        .max_header = (size_t)max_header,
    };
    if (otp_http_start(&hopt, otp_api_routes, otp_api_nroutes, &api, &http, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "otpd: %s\n", err);
        goto out;
    }
    if (otp_log_batch_start() != 0)
        otp_log(OTP_LOG_WARN, "event=log_batching_off reason=\"no thread\"");
    otp_log(OTP_LOG_INFO, "event=start version=%s listen=%s store=%s threads=%u providers=%zu%s",
            OTPD_VERSION, hopt.listen, store->ops->name, hopt.threads, providers.n,
            OTPD_TEST_HOOKS ? " testHooks=true" : "");

    int sig = 0;
    sigwait(&stop_signals, &sig);
    otp_log(OTP_LOG_INFO, "event=stopping signal=%s inflight=%ld parked=%ld",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", otp_http_inflight(http), otp_http_parked(http));

    stop_deadline = otp_mono_us() + stop_timeout * 1000000;
    otp_http_quiesce(http);
    int64_t drain_deadline = otp_mono_us() + DRAIN_TIMEOUT_MS * 1000;
    wait_inflight(http, drain_deadline < stop_deadline ? drain_deadline : stop_deadline);
    rc = 0;
out:
    otp_api_reads_stop(&api);           /* the queued reads answered, none started now */
    wait_inflight(http, stop_deadline); /* the running ones, and txns (reads pass some on) */
    long parked = otp_http_parked(http);
    if (parked > 0)
        exit_parked(&api, parked);
    otp_api_reads_join(&api);
    otp_http_stop(http);
    otp_log_batch_stop(); /* the request lines, before "stopped" */
    otp_dispatcher_stop(dispatcher);
    otp_purger_stop(purger);
    free_providers(&providers);
    otp_store_close(store);
    otp_api_reads_free(&api); /* after the store: a txn's done callback may still ask it */
    otp_secrets_wipe(&api.secrets);
    if (rc == 0)
        otp_log(OTP_LOG_INFO, "event=stopped");
    return rc;
}

int main(int argc, char **argv)
{
    otp_app app;
    if (sodium_init() < 0) {
        fputs("otpd: libsodium failed to initialise\n", stderr);
        return 1;
    }
    int rc = otp_cli_parse(argc, argv, &app);
    if (rc != 0)
        return rc;
    if (app.command && strcmp(app.command, "serve") == 0)
        rc = serve(&app);
    else
        rc = otp_cli_run(&app);
    otp_cli_app_done(&app);
    return rc;
}
