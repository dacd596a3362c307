/* delivery/smpp_session.h — one SMPP 3.4 transceiver session to an SMSC.
 *
 * A session is a thread that keeps one TCP connection, or TLS connection
 * (smpp_conn.h), bound (bind_transceiver), reconnecting with exponential
 * backoff and jitter when it drops, the TLS handshake fails or the bind is
 * refused. smpp_session_send() hands it a batch of messages already split into
 * parts and blocks until each message has its fate: accepted (every part got a
 * submit_sm_resp with ESME_ROK; the first part's message_id is the message's
 * id), permanent (a part was refused for good) or temporary (throttled past the
 * deadline, a temporary error, no response, or the connection dropped). At most
 * `window` submit_sm are outstanding at a time. ESME_RTHROTTLED and
 * ESME_RMSGQFUL pause all submits for throttle_delay (doubling while they
 * continue) and the throttled part is submitted again after the pause, within
 * the batch's send_timeout. enquire_link keeps an idle link alive and detects a
 * dead one. Delivery receipts (deliver_sm) go to the otp_dlr_sink; each is
 * answered with deliver_sm_resp once the store has it. Stopping unbinds.
 */
#ifndef OTP_DELIVERY_SMPP_SESSION_H
#define OTP_DELIVERY_SMPP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "delivery/provider.h"
#include "delivery/smpp_conn.h"
#include "delivery/sms_parts.h"
#include "delivery/smpp_pdu.h"

#define SMPP_TEMPORARY_MAX 16

typedef struct smpp_config {
    char host[256];
    int port;
    char system_id[16];
    char password[9];
    char system_type[13];
    smpp_tls *tls;               /* NULL: plain TCP; not copied: must outlive the session */
    int window;                  /* outstanding submit_sm at most */
    int64_t enquire_link_ms;     /* idle time before an enquire_link */
    int64_t response_timeout_ms; /* connect + TLS handshake, and any response */
    int64_t send_timeout_ms;     /* longest a batch waits in smpp_session_send() */
    int64_t reconnect_min_ms;
    int64_t reconnect_max_ms;
    int64_t throttle_delay_ms; /* first pause after ESME_RTHROTTLED */
    /* command_status values treated as temporary besides the built-in ones */
    uint32_t temporary[SMPP_TEMPORARY_MAX];
    size_t n_temporary;
} smpp_config;

/* One message of a batch. */
typedef struct smpp_msg {
    /* in */
    const otp_sms_parts *parts;
    smpp_submit submit; /* everything but sm/sm_len (set per part) and esm_class UDHI */
    /* out */
    otp_send_outcome outcome;
    char message_id[SMPP_MSGID_SIZE]; /* the first part's */
    char error[256];
} smpp_msg;

typedef struct smpp_session smpp_session;

/* Starts the session thread for provider `name` (copied); it connects at once.
 * dlr may be NULL (receipts are answered and dropped). Returns 0 or -1. */
int smpp_session_start(const smpp_config *cfg, const char *name, const otp_dlr_sink *dlr,
                       smpp_session **ret);
/* Unbinds, closes, joins and frees. Accepts NULL. */
void smpp_session_stop(smpp_session *s);
/* Bound right now. Any thread. */
bool smpp_session_bound(smpp_session *s);
/* Submits msgs and waits for their outcomes (see above). Any thread. */
void smpp_session_send(smpp_session *s, smpp_msg *msgs, size_t n);

/* Whether a submit_sm_resp command_status is worth retrying. */
bool smpp_status_temporary(const smpp_config *cfg, uint32_t status);

#endif
