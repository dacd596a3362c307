/* delivery/dlr.c — delivery reports into the store; see dlr.h.
 *
 * The report is copied into a transaction of its own, so the caller's otp_dlr
 * only has to live until its done() runs, and the store's thread does nothing
 * but copy the outcome back and call it.
 */
#include "delivery/dlr.h"
#include "delivery/stats.h"
#include "util/clock.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct dlr_txn {
    otp_txn txn;
    otp_dlr *r;
} dlr_txn;

static const otp_msg_status to_msg_status[] = {
    [OTP_DLR_DELIVERED] = OTP_MSG_DELIVERED,
    [OTP_DLR_UNDELIVERABLE] = OTP_MSG_UNDELIVERABLE,
    [OTP_DLR_FAILED] = OTP_MSG_FAILED,
};

static void txn_done(otp_txn *txn)
{
    dlr_txn *w = txn->user;
    otp_dlr *r = w->r;
    r->err = txn->err;
    if (txn->err == OTP_OK)
        otp_delivery_report(txn->u.delivery_report.provider, txn->u.delivery_report.status);
    snprintf(r->message_id, sizeof(r->message_id), "%s",
             txn->err == OTP_OK ? txn->u.delivery_report.message_id : "");
    free(w);
    r->done(r);
}

void otp_dlr_submit(otp_store *store, otp_dlr *r)
{
    dlr_txn *w = calloc(1, sizeof(*w));
    if (!w || (unsigned)r->status > OTP_DLR_FAILED) {
        free(w);
        r->err = OTP_E_INTERNAL;
        r->message_id[0] = '\0';
        r->done(r);
        return;
    }
    w->r = r;
    w->txn.kind = OTP_TXN_DELIVERY_REPORT;
    otp_txn_delivery_report *d = &w->txn.u.delivery_report;
    snprintf(d->provider, sizeof(d->provider), "%s", r->provider);
    snprintf(d->provider_message_id, sizeof(d->provider_message_id), "%s", r->provider_message_id);
    d->status = to_msg_status[r->status];
    snprintf(d->error, sizeof(d->error), "%s", r->error);
    d->now_ms = otp_now_ms();
    w->txn.done = txn_done;
    w->txn.user = w;
    store->ops->submit(store, &w->txn);
}

static void sink_submit(void *ctx, otp_dlr *r)
{
    otp_dlr_submit(ctx, r);
}

void otp_dlr_store_sink(otp_store *store, otp_dlr_sink *ret)
{
    *ret = (otp_dlr_sink){.submit = sink_submit, .ctx = store};
}
