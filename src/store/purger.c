/* store/purger.c — one thread that keeps the database from growing forever.
 *
 * Expired requests (with their messages and delivery history) and idempotency
 * records are only needed for a while: status queries and replays within a day.
 * The purger deletes them in bounded txns (OTP_TXN_PURGE, at most max_rows rows
 * of each kind) through the ordinary store interface, so it works with any
 * backend and each pass is one short txn in the writer's queue rather than a
 * long delete that would hold up sends. A full pass means more is waiting: the
 * next pass follows after pause_ms, long enough for the writer to serve the
 * txns queued behind it. Otherwise the thread sleeps for interval_ms on its
 * stop signal (util/stop.h), so stopping never waits for the interval. The
 * ledger is never purged: its entries are the money and must always sum to
 * the balance. The abuse tables lose what no limit reads any more (store.h,
 * otp_txn_purge).
 */
#include "store/purger.h"
#include "util/clock.h"
#include "util/stop.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define DEFAULT_INTERVAL_MS 60000
#define DEFAULT_PAUSE_MS 20
#define DEFAULT_RETENTION_MS (24 * 60 * 60 * 1000LL)
#define DEFAULT_MAX_ROWS 500

struct otp_purger {
    otp_store *store;
    otp_purger_options opt;
    pthread_t thread;
    otp_stop stop;
};

static int64_t default_now(void *ctx)
{
    (void)ctx;
    return otp_now_ms();
}

static void *purger_main(void *arg)
{
    otp_purger *p = arg;
    pthread_setname_np(pthread_self(), "otpd-purger");
    for (;;) {
        otp_txn t = {.kind = OTP_TXN_PURGE};
        t.u.purge.now_ms = p->opt.now_ms(p->opt.ctx);
        t.u.purge.request_retention_ms = p->opt.request_retention_ms;
        t.u.purge.idem_retention_ms = p->opt.idem_retention_ms;
        t.u.purge.max_rows = p->opt.max_rows;
        otp_err e = otp_store_exec(p->store, &t);
        if (p->opt.on_pass)
            p->opt.on_pass(&t, p->opt.ctx);
        const otp_txn_purge *r = &t.u.purge;
        bool full =
            e == OTP_OK && (r->purged_requests >= r->max_rows || r->purged_idem >= r->max_rows ||
                            r->erased_codes >= r->max_rows);
        if (otp_stop_wait_ms(&p->stop, full ? p->opt.pause_ms : p->opt.interval_ms))
            break;
    }
    return NULL;
}

int otp_purger_start(otp_store *store, const otp_purger_options *opt, otp_purger **ret)
{
    if (!store || !ret)
        return -1;
    otp_purger *p = calloc(1, sizeof(*p));
    if (!p)
        return -1;
    p->store = store;
    if (opt)
        p->opt = *opt;
    if (p->opt.interval_ms <= 0)
        p->opt.interval_ms = DEFAULT_INTERVAL_MS;
    if (p->opt.pause_ms <= 0)
        p->opt.pause_ms = DEFAULT_PAUSE_MS;
    if (p->opt.request_retention_ms <= 0)
        p->opt.request_retention_ms = DEFAULT_RETENTION_MS;
    if (p->opt.idem_retention_ms <= 0)
        p->opt.idem_retention_ms = DEFAULT_RETENTION_MS;
    if (p->opt.max_rows <= 0)
        p->opt.max_rows = DEFAULT_MAX_ROWS;
    if (!p->opt.now_ms)
        p->opt.now_ms = default_now;

    if (otp_stop_init(&p->stop) != 0) {
        free(p);
        return -1;
    }
    if (pthread_create(&p->thread, NULL, purger_main, p) != 0) {
        otp_stop_destroy(&p->stop);
        free(p);
        return -1;
    }
    *ret = p;
    return 0;
}

void otp_purger_stop(otp_purger *p)
{
    if (!p)
        return;
    otp_stop_signal(&p->stop);
    pthread_join(p->thread, NULL);
    otp_stop_destroy(&p->stop);
    free(p);
}
