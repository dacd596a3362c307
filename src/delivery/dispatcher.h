/* delivery/dispatcher.h — moves messages from the durable outbox to providers.
 *
 * One thread: claims due messages from the store, or takes the ones a send
 * handed over already leased (a lease either way, so a crash between
 * sending and recording only ever causes a resend: at-least-once), unseals their
 * text, hands them to the providers in priority order, and reports the outcome
 * back to the store, which erases the text once a message is sent or failed.
 * Temporary failures go to the next provider, then back to the outbox with
 * exponential backoff and jitter; a provider that keeps failing is skipped for a
 * while (a circuit breaker per provider, probed after a cool-down). A message
 * whose request expired unsent fails.
 */
#ifndef OTP_DELIVERY_DISPATCHER_H
#define OTP_DELIVERY_DISPATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "delivery/provider.h"
#include "store/store.h"

typedef struct otp_dispatcher otp_dispatcher;

typedef struct otp_dispatcher_options {
    int64_t lease_ms; /* default 30000 */
    size_t batch;     /* messages per claim, default 64 */
    int64_t idle_ms;  /* poll interval when not woken, default 1000 */
} otp_dispatcher_options;

/* Starts the dispatcher thread. providers (n of them, priority order) stay owned
 * by the caller and must outlive the dispatcher. box_key unseals texts (copied). */
int otp_dispatcher_start(otp_store *store, otp_provider **providers, size_t n,
                         const uint8_t box_key[32], const otp_dispatcher_options *opt,
                         otp_dispatcher **ret);
/* Wakes the thread now (a new message was committed). Cheap; any thread. */
void otp_dispatcher_wake(otp_dispatcher *d);
/* Hand-offs: a send can store its message already leased to this dispatcher
 * (otp_txn_send.lease_ms) and pass it over after the commit, so that it is
 * sent without a claim. handoff_lease() is the lease to ask for: > 0 while the
 * dispatcher takes hand-offs (running, and fewer than a few batches of them
 * waiting), 0 when the message should go to the outbox as before. handoff()
 * takes a committed send that the store leased (otp_txn_send.leased): it
 * copies its message (and sealed text) and wakes the thread. A hand-off whose lease
 * is half gone when the thread gets to it is dropped, and the outbox claims it
 * once the lease has run out, so it is never sent twice. Any thread. */
int64_t otp_dispatcher_handoff_lease(otp_dispatcher *d);
void otp_dispatcher_handoff(otp_dispatcher *d, const otp_txn_send *committed);
/* True if at least one provider is ready and its circuit breaker is not open
 * (so /readyz is 503 when no provider is usable). Any thread. */
bool otp_dispatcher_ready(otp_dispatcher *d);
/* The provider named name ([provider.NAME]), or NULL. Any thread. */
otp_provider *otp_dispatcher_provider(otp_dispatcher *d, const char *name);
/* Finishes the batch in hand, reports it, joins the thread, puts the hand-offs
 * not sent yet back in the outbox (due at once), frees. Accepts NULL. */
void otp_dispatcher_stop(otp_dispatcher *d);

#endif
