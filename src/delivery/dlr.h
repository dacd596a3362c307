/* delivery/dlr.h — delivery reports into the store.
 *
 * A report names a message by the provider's name and the id that provider's
 * gateway gave it; the store finds the message and moves it to delivered,
 * undeliverable or failed (refunding a failure exactly once; see
 * OTP_TXN_DELIVERY_REPORT in store/store.h). Both ways a report arrives use this:
 * the SMPP session (through an otp_dlr_sink) and POST /providers/NAME/dlr.
 */
#ifndef OTP_DELIVERY_DLR_H
#define OTP_DELIVERY_DLR_H

#include "delivery/provider.h"
#include "store/store.h"

/* Submits r to the store as one OTP_TXN_DELIVERY_REPORT without waiting;
 * r->done runs once, from a store thread (or from this one if out of memory:
 * then r->err is OTP_E_INTERNAL). */
void otp_dlr_submit(otp_store *store, otp_dlr *r);

/* A sink that hands reports to otp_dlr_submit(store, …). */
void otp_dlr_store_sink(otp_store *store, otp_dlr_sink *ret);

#endif
