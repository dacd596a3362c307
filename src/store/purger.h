/* store/purger.h — the background purge of old requests and idempotency records.
 *
 * One thread submits OTP_TXN_PURGE txns to any store backend: one pass every
 * interval, and while a pass comes back full (more is waiting), the next one
 * after a short pause, so that catching up after downtime never monopolises the
 * store's writer. Nothing here blocks a request path: a pass is one bounded txn
 * among the others.
 */
#ifndef OTP_STORE_PURGER_H
#define OTP_STORE_PURGER_H

#include <stdint.h>

#include "store/store.h"

typedef struct otp_purger otp_purger;

/* Zero (or a NULL options pointer) means the default for every field. */
typedef struct otp_purger_options {
    int64_t interval_ms;          /* between passes, default 60000 */
    int64_t pause_ms;             /* between passes while they come back full, default 20 */
    int64_t request_retention_ms; /* kept this long after expiry, default 24 h */
    int64_t idem_retention_ms;    /* idempotency records, default 24 h */
    int max_rows;                 /* per kind of row and pass, default 500 */
    /* The clock, default otp_now_ms (tests inject their own). */
    int64_t (*now_ms)(void *ctx);
    /* Called on the purger's thread after each pass with its txn (counts and
     * err), e.g. to log or count what was purged; may be NULL. */
    void (*on_pass)(const otp_txn *pass, void *ctx);
    void *ctx;
} otp_purger_options;

/* Starts the purger thread on store, which must outlive it (stop the purger
 * before closing the store). The first pass runs at once. Returns 0 with *ret
 * set, or -1 (no thread could be started; nothing to free). */
int otp_purger_start(otp_store *store, const otp_purger_options *opt, otp_purger **ret);
/* Wakes the thread, lets a pass in progress finish, joins and frees. Accepts NULL. */
void otp_purger_stop(otp_purger *p);

#endif
