/* delivery/smpp_session.c — the SMPP session thread; see smpp_session.h.
 *
 * One thread per session runs a poll loop over the socket and an eventfd, and
 * owns everything about the connection. It holds the session lock for all its
 * work except poll() and the name lookup, so the state it shares with callers
 * of smpp_session_send() — the list of batches ("jobs") and their results —
 * needs no other synchronisation: a caller queues its job under the lock, wakes
 * the thread, and waits on a condition variable until the thread (or its own
 * deadline) has given every message a fate.
 *
 * The connection goes through smpp_conn.h, the same calls for plain TCP and
 * TLS: connecting (the TCP connect), handshake (TLS; at once for plain TCP),
 * binding, bound. One deadline, response_timeout, covers connect and handshake
 * together. A TLS failure (a certificate that does not verify, a server that
 * does not speak TLS) is a disconnect like any other, logged with its reason
 * and followed by the usual reconnect with backoff.
 *
 * The window is a small table of slots, one per outstanding submit_sm, keyed by
 * sequence number. A response that matches no slot (it came after its message
 * had already been given up) is ignored: the dispatcher will send the message
 * again, which is the at-least-once contract. The same goes for everything in
 * flight when the connection drops: every unresolved message of every job is
 * failed as temporary at once, and the dispatcher retries it (on another
 * provider, or here once the session is bound again).
 *
 * Throttling: ESME_RTHROTTLED or ESME_RMSGQFUL on a submit pauses all submits for
 * throttle_ms. A further throttle on a submit sent after the pause began doubles
 * it (up to 64 x throttle_delay); answers to submits already in flight when it
 * began do not, since they say nothing new. Any ESME_ROK resets it. The
 * throttled part is submitted again after the pause if the batch's deadline
 * allows, so a throttling SMSC slows otpd down without failing messages.
 *
 * Delivery receipts: a deliver_sm receipt is decoded, mapped to a message (the
 * receipt of part k of a multi-part message is mapped through a table of part
 * ids to the first part's id, which is what the store knows; the message is
 * reported delivered when all its parts are, or failed when one fails) and
 * submitted to the sink. The deliver_sm_resp waits for the store, so a receipt
 * the store could not take is answered with ESME_RX_T_APPN and the SMSC sends it
 * again. A receipt for an id the store does not know (yet: the dispatcher
 * records an accepted message only after its whole batch) is acknowledged and
 * retried from memory a few times over about a minute, then dropped with a log
 * line. Sink completions arrive on store threads; they only queue the receipt
 * under a separate small lock and poke the eventfd.
 *
 * Texts: the PDUs in the write buffer hold message texts, so flushed bytes and
 * buffers are wiped; nothing here logs a text or a short_message.
 */
#include "delivery/smpp_session.h"
#include "delivery/smpp_conn.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/random.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (SMPP_PDU_MAX + 4096)
#define WBUF_SOFT (256 * 1024) /* stop packing submits above this much unsent */
#define WBUF_MAX (1024 * 1024) /* a write buffer this full means a stuck peer */
#define UNBIND_WAIT_MS 2000
#define RCPT_MAX 4096  /* receipts held at once (in the store or waiting to retry) */
#define RCPT_RETRIES 8 /* store lookups of a receipt whose id is not known yet */
#define RCPT_RETRY_FIRST_MS 500
#define RCPT_RETRY_MAX_MS 30000
#define DLR_DRAIN_WAIT_MS 5000 /* at stop, wait this long for the store's answers */
#define GROUPS 1024            /* multi-part messages remembered for receipt mapping */
#define GROUP_PARTS 16         /* longer messages are not mapped (and never happen: 14 max) */
#define BUCKETS 4096

enum { S_DOWN, S_CONNECTING, S_HANDSHAKE, S_BINDING, S_BOUND };
enum { P_WAITING = 0, P_INFLIGHT, P_DONE };

typedef struct job job;

typedef struct job_msg {
    smpp_msg *m;
    uint8_t state[OTP_SMS_PARTS_MAX];
    char (*ids)[SMPP_MSGID_SIZE]; /* per part */
    size_t parts_ok;
    bool resolved;
} job_msg;

struct job {
    job_msg *msgs;
    size_t n;
    size_t unresolved;
    int64_t deadline_us;
    bool done;
    job *next;
};

typedef struct slot {
    job *j; /* NULL: free */
    size_t msg, part;
    uint32_t seq;
    int64_t sent_us;
} slot;

typedef struct rcpt rcpt;
struct rcpt {
    otp_dlr dlr;
    smpp_session *s;
    char part_id[SMPP_MSGID_SIZE]; /* the id the SMSC named */
    otp_dlr_status status;
    bool mapped;   /* went through the part table (and is the message's report) */
    bool answered; /* deliver_sm_resp sent (or no longer possible) */
    uint32_t seq;  /* of the deliver_sm */
    uint64_t gen;  /* connection it came on */
    int attempts;
    int64_t next_us;
    rcpt *next;
};

typedef struct rgroup {
    char first[SMPP_MSGID_SIZE];
    uint8_t n;
    uint32_t delivered; /* bit k: part k delivered */
    bool reported;
    bool used;
} rgroup;

typedef struct rentry {
    char id[SMPP_MSGID_SIZE];
    int32_t next; /* bucket chain; -1 ends */
    bool used;
} rentry;

struct smpp_session {
    smpp_config cfg;
    char name[OTP_PROVIDER_NAME_MAX + 1];
    const otp_dlr_sink *dlr;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* jobs done; CLOCK_MONOTONIC */
    int wake_fd;
    atomic_bool stopping;
    atomic_bool bound;

    /* Under lock, owned by the thread. */
    int state;
    smpp_conn conn;
    uint64_t gen;
    uint8_t *rbuf;
    size_t rlen;
    uint8_t *wbuf;
    size_t wlen;
    uint32_t seq;
    uint32_t bind_seq;
    int64_t state_deadline_us;
    int64_t reconnect_at_us;
    int64_t backoff_ms;
    int64_t last_rx_us;
    uint32_t enquire_seq; /* 0: none outstanding */
    uint32_t unbind_seq;  /* our unbind at stop */
    bool unbound;         /* its unbind_resp came */
    int64_t enquire_sent_us;
    int64_t throttle_until_us;
    int64_t throttle_started_us;
    int64_t throttle_ms;
    slot *slots;
    int inflight;
    job *jobs;
    rcpt *retry; /* receipts waiting to be looked up again */
    size_t n_retry;
    rgroup *groups; /* allocated at the first multi-part message */
    rentry *entries;
    int32_t *buckets;
    size_t next_group;

    /* Under dlr_lock: receipts the store has answered, and how many it holds. */
    pthread_mutex_t dlr_lock;
    pthread_cond_t dlr_cond;
    rcpt *completed;
    size_t outstanding;
};

/* ---- Small helpers ------------------------------------------------------ */

static void wake(smpp_session *s)
{
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof(one));
    (void)w; /* EAGAIN: already pending */
}

static uint32_t next_seq(smpp_session *s)
{
    if (s->seq >= 0x7FFFFFFFu)
        s->seq = 0;
    return ++s->seq;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

bool smpp_status_temporary(const smpp_config *cfg, uint32_t status)
{
    switch (status) {
    case 0x04: /* ESME_RINVBNDSTS: not bound (yet) */
    case 0x08: /* ESME_RSYSERR */
    case SMPP_RMSGQFUL:
    case 0x45: /* ESME_RSUBMITFAIL: the SMSC's catch-all */
    case SMPP_RTHROTTLED:
    case SMPP_RX_T_APPN:
    case 0xFE: /* ESME_RDELIVERYFAILURE */
    case 0xFF: /* ESME_RUNKNOWNERR */
        return true;
    default:
        break;
    }
    for (size_t i = 0; cfg && i < cfg->n_temporary; i++)
        if (cfg->temporary[i] == status)
            return true;
    return false;
}

/* Appends a PDU to the write buffer; false if it is full (a stuck peer). */
static bool queue_pdu(smpp_session *s, const uint8_t *pdu, size_t len)
{
    if (s->wlen + len > WBUF_MAX)
        return false;
    memcpy(s->wbuf + s->wlen, pdu, len);
    s->wlen += len;
    return true;
}

static void queue_simple(smpp_session *s, uint32_t id, uint32_t status, uint32_t seq)
{
    uint8_t pdu[SMPP_HEADER_LEN + 8];
    int len = smpp_pack_header_only(id, status, seq, pdu, sizeof(pdu));
    if (len > 0)
        queue_pdu(s, pdu, (size_t)len);
}

/* ---- Jobs ---------------------------------------------------------------- */

static void job_unlink(smpp_session *s, job *j)
{
    for (job **pp = &s->jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    for (int k = 0; k < s->cfg.window; k++) {
        if (s->slots[k].j == j) {
            s->slots[k].j = NULL;
            s->inflight--;
        }
    }
    j->done = true;
    pthread_cond_broadcast(&s->cond);
}

static void resolve(smpp_session *s, job *j, size_t i, otp_send_outcome outcome, const char *error)
{
    job_msg *jm = &j->msgs[i];
    if (jm->resolved)
        return;
    jm->resolved = true;
    jm->m->outcome = outcome;
    copy_str(jm->m->error, sizeof(jm->m->error), outcome == OTP_SEND_ACCEPTED ? "" : error);
    if (outcome == OTP_SEND_ACCEPTED)
        copy_str(jm->m->message_id, sizeof(jm->m->message_id), jm->ids[0]);
    if (--j->unresolved == 0)
        job_unlink(s, j);
}

/* Gives every unresolved message of every job the temporary fate `error`. */
static void fail_all_jobs(smpp_session *s, const char *error)
{
    while (s->jobs) {
        job *j = s->jobs;
        for (size_t i = 0; i < j->n && !j->done; i++)
            resolve(s, j, i, OTP_SEND_TEMPORARY, error);
        if (!j->done)
            job_unlink(s, j);
    }
}

/* ---- The part-id table (receipts of multi-part messages) ---------------- */

static uint32_t hash_id(const char *id)
{
    uint32_t h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 16777619u;
    return h % BUCKETS;
}

static void entry_unlink(smpp_session *s, int32_t idx)
{
    for (int32_t *pp = &s->buckets[hash_id(s->entries[idx].id)]; *pp >= 0;
         pp = &s->entries[*pp].next) {
        if (*pp == idx) {
            *pp = s->entries[idx].next;
            break;
        }
    }
    s->entries[idx].used = false;
}

/* Remembers the parts of an accepted multi-part message (the oldest is
 * forgotten once GROUPS are held). */
static void group_add(smpp_session *s, char (*ids)[SMPP_MSGID_SIZE], size_t n)
{
    if (n < 2 || n > GROUP_PARTS)
        return;
    if (!s->groups) {
        s->groups = calloc(GROUPS, sizeof(*s->groups));
        s->entries = calloc((size_t)GROUPS * GROUP_PARTS, sizeof(*s->entries));
        s->buckets = malloc(BUCKETS * sizeof(*s->buckets));
        if (!s->groups || !s->entries || !s->buckets) {
            free(s->groups);
            free(s->entries);
            free(s->buckets);
            s->groups = NULL;
            s->entries = NULL;
            s->buckets = NULL;
            return;
        }
        for (int b = 0; b < BUCKETS; b++)
            s->buckets[b] = -1;
    }
    size_t g = s->next_group++ % GROUPS;
    rgroup *gr = &s->groups[g];
    for (int k = 0; k < GROUP_PARTS; k++) {
        int32_t idx = (int32_t)(g * GROUP_PARTS + (size_t)k);
        if (s->entries[idx].used)
            entry_unlink(s, idx);
    }
    *gr = (rgroup){.n = (uint8_t)n, .used = true};
    copy_str(gr->first, sizeof(gr->first), ids[0]);
    for (size_t k = 0; k < n; k++) {
        if (!ids[k][0])
            continue;
        int32_t idx = (int32_t)(g * GROUP_PARTS + k);
        rentry *e = &s->entries[idx];
        copy_str(e->id, sizeof(e->id), ids[k]);
        uint32_t b = hash_id(e->id);
        e->next = s->buckets[b];
        e->used = true;
        s->buckets[b] = idx;
    }
}

static int32_t group_find(smpp_session *s, const char *id)
{
    if (!s->groups)
        return -1;
    for (int32_t i = s->buckets[hash_id(id)]; i >= 0; i = s->entries[i].next)
        if (strcmp(s->entries[i].id, id) == 0)
            return i;
    return -1;
}

/* ---- Connection ---------------------------------------------------------- */

static const char *state_name(int state)
{
    static const char *const names[] = {"down", "connecting", "handshake", "binding", "bound"};
    return names[state];
}

/* Closes the connection: every message in flight or waiting gets a temporary
 * failure, and the next attempt is scheduled with backoff and jitter. */
static void disconnect(smpp_session *s, const char *reason, bool quiet)
{
    int64_t now = otp_mono_us();
    int was = s->state;
    smpp_conn_close(&s->conn);
    s->state = S_DOWN;
    s->gen++;
    atomic_store(&s->bound, false);
    sodium_memzero(s->wbuf, s->wlen);
    sodium_memzero(s->rbuf, s->rlen);
    s->wlen = s->rlen = 0;
    s->enquire_seq = 0;
    s->throttle_until_us = s->throttle_started_us = 0;
    s->throttle_ms = s->cfg.throttle_delay_ms;
    char error[200];
    snprintf(error, sizeof(error), "SMSC connection lost (%s)", reason);
    fail_all_jobs(s, was == S_BOUND ? error : "not bound to the SMSC");
    memset(s->slots, 0, (size_t)s->cfg.window * sizeof(*s->slots));
    s->inflight = 0;

    int64_t b = s->backoff_ms;
    int64_t wait = b / 2 + (int64_t)otp_random_uniform((uint32_t)(b / 2 + 1));
    s->reconnect_at_us = now + wait * 1000;
    s->backoff_ms = b * 2 < s->cfg.reconnect_max_ms ? b * 2 : s->cfg.reconnect_max_ms;
    if (!quiet && !atomic_load(&s->stopping))
        otp_log(OTP_LOG_WARN,
                "event=smpp_disconnected provider=%s state=%s reason=\"%s\" retry_ms=%lld", s->name,
                state_name(was), reason, (long long)wait);
}

/* Starts a non-blocking connect. Called without the lock (name lookup). */
static int open_socket(smpp_session *s, char *why, size_t whylen)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", s->cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int e = getaddrinfo(s->cfg.host, port, &hints, &ai);
    if (e != 0) {
        snprintf(why, whylen, "cannot resolve %.100s: %s", s->cfg.host, gai_strerror(e));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        snprintf(why, whylen, "connect: %s", strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void send_bind(smpp_session *s)
{
    uint8_t pdu[128];
    smpp_bind b = {s->cfg.system_id, s->cfg.password, s->cfg.system_type};
    s->bind_seq = next_seq(s);
    int len = smpp_pack_bind_transceiver(&b, s->bind_seq, pdu, sizeof(pdu));
    if (len < 0) {
        disconnect(s, "cannot encode bind_transceiver", false);
        return;
    }
    queue_pdu(s, pdu, (size_t)len);
    sodium_memzero(pdu, sizeof(pdu));
    s->state = S_BINDING;
    s->state_deadline_us = otp_mono_us() + s->cfg.response_timeout_ms * 1000;
}

/* Runs the TLS handshake as far as the socket allows (plain TCP has none) and
 * binds once it is done. The connect's deadline still runs: it covers both. */
static void handshake(smpp_session *s)
{
    char why[256];
    int r = smpp_conn_handshake(&s->conn, why, sizeof(why));
    if (r < 0)
        disconnect(s, why, false);
    else if (r > 0)
        send_bind(s);
}

/* The connect finished (POLLOUT): check it, then the handshake and the bind. */
static void connected(smpp_session *s)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(s->conn.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        char why[160];
        snprintf(why, sizeof(why), "connect to %.64s:%d: %s", s->cfg.host, s->cfg.port,
                 strerror(err));
        disconnect(s, why, false);
        return;
    }
    s->state = S_HANDSHAKE;
    handshake(s);
}

/* ---- Submitting ---------------------------------------------------------- */

static slot *slot_find(smpp_session *s, uint32_t seq)
{
    for (int k = 0; k < s->cfg.window; k++)
        if (s->slots[k].j && s->slots[k].seq == seq)
            return &s->slots[k];
    return NULL;
}

static slot *slot_free(smpp_session *s)
{
    for (int k = 0; k < s->cfg.window; k++)
        if (!s->slots[k].j)
            return &s->slots[k];
    return NULL;
}

/* Packs waiting parts into the write buffer while the window, the throttle
 * pause and the buffer allow, in batch order. */
static void pump(smpp_session *s, int64_t now)
{
    if (s->state != S_BOUND || now < s->throttle_until_us)
        return;
    uint8_t pdu[512];
    for (job *j = s->jobs; j; j = j->next) {
        for (size_t i = 0; i < j->n; i++) {
            job_msg *jm = &j->msgs[i];
            const otp_sms_parts *parts = jm->m->parts;
            for (size_t p = 0; p < parts->n && !jm->resolved; p++) {
                if (jm->state[p] != P_WAITING)
                    continue;
                if (s->inflight >= s->cfg.window || s->wlen > WBUF_SOFT)
                    return;
                smpp_submit sub = jm->m->submit;
                sub.sm = parts->part[p].data;
                sub.sm_len = parts->part[p].len;
                sub.data_coding = parts->data_coding;
                if (parts->udh)
                    sub.esm_class |= 0x40;
                uint32_t seq = next_seq(s);
                int len = smpp_pack_submit_sm(&sub, seq, pdu, sizeof(pdu));
                if (len < 0) {
                    resolve(s, j, i, OTP_SEND_PERMANENT,
                            "cannot encode submit_sm (an address or the DLT id is too long)");
                    if (j->done)
                        return; /* j was unlinked: restart from the list head next time */
                    break;
                }
                bool queued = queue_pdu(s, pdu, (size_t)len);
                sodium_memzero(pdu, (size_t)len);
                if (!queued)
                    return;
                slot *sl = slot_free(s);
                *sl = (slot){.j = j, .msg = i, .part = p, .seq = seq, .sent_us = now};
                s->inflight++;
                jm->state[p] = P_INFLIGHT;
            }
        }
    }
}

static void on_submit_resp(smpp_session *s, const smpp_header *h, const uint8_t *pdu, int64_t now)
{
    slot *sl = slot_find(s, h->seq);
    if (!sl)
        return; /* its message was given up already */
    slot got = *sl;
    sl->j = NULL;
    s->inflight--;
    job_msg *jm = &got.j->msgs[got.msg];
    if (jm->resolved)
        return;
    char error[200];
    if (h->status == SMPP_ROK) {
        s->throttle_ms = s->cfg.throttle_delay_ms;
        if (smpp_parse_submit_sm_resp(pdu, h->length, jm->ids[got.part]) != 0)
            jm->ids[got.part][0] = '\0';
        jm->state[got.part] = P_DONE;
        if (++jm->parts_ok == jm->m->parts->n) {
            group_add(s, jm->ids, jm->m->parts->n);
            resolve(s, got.j, got.msg, OTP_SEND_ACCEPTED, NULL);
        }
        return;
    }
    snprintf(error, sizeof(error), "submit_sm refused: %s (0x%08x)", smpp_status_name(h->status),
             h->status);
    if (h->status == SMPP_RTHROTTLED || h->status == SMPP_RMSGQFUL) {
        if (got.sent_us >= s->throttle_started_us) {
            /* A submit sent after the last pause began: a new throttle. */
            if (s->throttle_started_us != 0 && now >= s->throttle_until_us) {
                int64_t cap = s->cfg.throttle_delay_ms * 64;
                s->throttle_ms = s->throttle_ms * 2 < cap ? s->throttle_ms * 2 : cap;
            }
            s->throttle_started_us = now;
            s->throttle_until_us = now + s->throttle_ms * 1000;
            otp_log(OTP_LOG_WARN, "event=smpp_throttled provider=%s status=%s pause_ms=%lld",
                    s->name, smpp_status_name(h->status), (long long)s->throttle_ms);
        }
        if (got.j->deadline_us > s->throttle_until_us) {
            jm->state[got.part] = P_WAITING; /* again after the pause */
            return;
        }
        resolve(s, got.j, got.msg, OTP_SEND_TEMPORARY, error);
        return;
    }
    resolve(s, got.j, got.msg,
            smpp_status_temporary(&s->cfg, h->status) ? OTP_SEND_TEMPORARY : OTP_SEND_PERMANENT,
            error);
}

/* ---- Receipts ------------------------------------------------------------ */

static void answer_receipt(smpp_session *s, rcpt *r, uint32_t status)
{
    if (r->answered)
        return;
    r->answered = true;
    if (s->state != S_BOUND || r->gen != s->gen)
        return; /* the SMSC will send it again on the new connection */
    uint8_t pdu[32];
    int len = smpp_pack_deliver_sm_resp(status, r->seq, pdu, sizeof(pdu));
    if (len > 0)
        queue_pdu(s, pdu, (size_t)len);
}

static void rcpt_done(otp_dlr *d)
{
    rcpt *r = d->user;
    smpp_session *s = r->s;
    pthread_mutex_lock(&s->dlr_lock);
    r->next = s->completed;
    s->completed = r;
    s->outstanding--;
    pthread_cond_broadcast(&s->dlr_cond);
    pthread_mutex_unlock(&s->dlr_lock);
    wake(s);
}

/* Maps a receipt through the part table. Returns true if the store should get
 * it now (r->dlr names the message), false if it was only noted (a part of a
 * message not complete yet, or already reported). */
static bool route_receipt(smpp_session *s, rcpt *r)
{
    if (r->mapped)
        return true; /* provider_message_id is the first part's already */
    copy_str(r->dlr.provider_message_id, sizeof(r->dlr.provider_message_id), r->part_id);
    int32_t idx = group_find(s, r->part_id);
    if (idx < 0)
        return true;
    r->mapped = true;
    rgroup *g = &s->groups[idx / GROUP_PARTS];
    unsigned k = (unsigned)(idx % GROUP_PARTS);
    if (g->reported)
        return false;
    if (r->status == OTP_DLR_DELIVERED) {
        g->delivered |= 1u << k;
        if (g->delivered != (1u << g->n) - 1)
            return false;
    }
    g->reported = true;
    copy_str(r->dlr.provider_message_id, sizeof(r->dlr.provider_message_id), g->first);
    return true;
}

static void submit_receipt(smpp_session *s, rcpt *r)
{
    if (!route_receipt(s, r)) {
        answer_receipt(s, r, SMPP_ROK);
        free(r);
        return;
    }
    r->dlr.done = rcpt_done;
    r->dlr.user = r;
    pthread_mutex_lock(&s->dlr_lock);
    s->outstanding++;
    pthread_mutex_unlock(&s->dlr_lock);
    s->dlr->submit(s->dlr->ctx, &r->dlr);
}

static void on_deliver_sm(smpp_session *s, const smpp_header *h, const uint8_t *pdu)
{
    rcpt probe = {.s = s, .seq = h->seq, .gen = s->gen};
    smpp_receipt rc;
    if (smpp_parse_deliver_sm(pdu, h->length, &rc) != 0) {
        otp_log(OTP_LOG_WARN, "event=smpp_bad_deliver_sm provider=%s seq=%u", s->name, h->seq);
        answer_receipt(s, &probe, SMPP_RSYSERR);
        return;
    }
    otp_dlr_status st;
    int k = rc.is_receipt ? otp_dlr_status_parse(rc.stat, &st) : 1;
    if (!rc.is_receipt || k != 0 || !rc.id[0] || !s->dlr) {
        /* A mobile-originated message (not for otpd), an intermediate state
         * (ENROUTE, ACCEPTD…), or a receipt otpd cannot use. */
        if (rc.is_receipt && (k < 0 || !rc.id[0]))
            otp_log(OTP_LOG_WARN, "event=smpp_receipt_unusable provider=%s id=\"%s\" stat=\"%s\"",
                    s->name, rc.id, rc.stat);
        answer_receipt(s, &probe, SMPP_ROK);
        return;
    }
    if (s->outstanding + s->n_retry >= RCPT_MAX) {
        answer_receipt(s, &probe, SMPP_RX_T_APPN); /* come back later */
        return;
    }
    rcpt *r = calloc(1, sizeof(*r));
    if (!r) {
        answer_receipt(s, &probe, SMPP_RX_T_APPN);
        return;
    }
    *r = probe;
    r->status = st;
    copy_str(r->part_id, sizeof(r->part_id), rc.id);
    copy_str(r->dlr.provider, sizeof(r->dlr.provider), s->name);
    r->dlr.status = st;
    if (st != OTP_DLR_DELIVERED)
        snprintf(r->dlr.error, sizeof(r->dlr.error), "receipt stat:%s err:%s", rc.stat,
                 rc.err[0] ? rc.err : "-");
    submit_receipt(s, r);
}

/* Handles the receipts the store has answered. */
static void drain_receipts(smpp_session *s, int64_t now)
{
    pthread_mutex_lock(&s->dlr_lock);
    rcpt *list = s->completed;
    s->completed = NULL;
    pthread_mutex_unlock(&s->dlr_lock);
    while (list) {
        rcpt *r = list;
        list = r->next;
        r->next = NULL;
        if (r->dlr.err == OTP_OK) {
            answer_receipt(s, r, SMPP_ROK);
            free(r);
            continue;
        }
        if (r->dlr.err != OTP_E_MESSAGE_NOT_FOUND && !r->answered) {
            answer_receipt(s, r, SMPP_RX_T_APPN); /* the SMSC sends it again */
            free(r);
            continue;
        }
        answer_receipt(s, r, SMPP_ROK);
        if (++r->attempts >= RCPT_RETRIES) {
            otp_log(OTP_LOG_WARN,
                    "event=smpp_receipt_unmatched provider=%s id=\"%s\" status=%s attempts=%d",
                    s->name, r->part_id, otp_dlr_status_name(r->status), r->attempts);
            free(r);
            continue;
        }
        int64_t delay = (int64_t)RCPT_RETRY_FIRST_MS << (r->attempts - 1);
        r->next_us = now + (delay < RCPT_RETRY_MAX_MS ? delay : RCPT_RETRY_MAX_MS) * 1000;
        r->next = s->retry;
        s->retry = r;
        s->n_retry++;
    }
}

static void retry_receipts(smpp_session *s, int64_t now)
{
    for (rcpt **pp = &s->retry; *pp;) {
        rcpt *r = *pp;
        if (r->next_us > now) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->next = NULL;
        s->n_retry--;
        submit_receipt(s, r);
    }
}

/* ---- Reading ------------------------------------------------------------- */

static bool flush(smpp_session *s);

static void handle_pdu(smpp_session *s, const uint8_t *pdu, int64_t now)
{
    smpp_header h;
    smpp_header_read(pdu, &h);
    s->last_rx_us = now;
    switch (h.id) {
    case SMPP_BIND_TRANSCEIVER_RESP:
        if (s->state != S_BINDING || h.seq != s->bind_seq)
            return;
        if (h.status != SMPP_ROK) {
            otp_log(OTP_LOG_ERROR,
                    "event=smpp_bind_failed provider=%s host=%s port=%d system_id=\"%s\" "
                    "status=0x%08x error=%s",
                    s->name, s->cfg.host, s->cfg.port, s->cfg.system_id, h.status,
                    smpp_status_name(h.status));
            disconnect(s, "bind_transceiver refused", true);
            return;
        }
        s->state = S_BOUND;
        s->backoff_ms = s->cfg.reconnect_min_ms;
        s->throttle_ms = s->cfg.throttle_delay_ms;
        atomic_store(&s->bound, true);
        const char *tls = smpp_conn_tls_version(&s->conn);
        otp_log(OTP_LOG_INFO,
                "event=smpp_bound provider=%s host=%s port=%d system_id=\"%s\" tls=%s", s->name,
                s->cfg.host, s->cfg.port, s->cfg.system_id, tls ? tls : "off");
        return;
    case SMPP_SUBMIT_SM_RESP:
        on_submit_resp(s, &h, pdu, now);
        return;
    case SMPP_GENERIC_NACK:
        if (s->state == S_BINDING && h.seq == s->bind_seq) {
            otp_log(OTP_LOG_ERROR, "event=smpp_bind_failed provider=%s status=0x%08x error=%s",
                    s->name, h.status, smpp_status_name(h.status));
            disconnect(s, "bind_transceiver refused (generic_nack)", true);
        } else if (h.seq == s->enquire_seq) {
            s->enquire_seq = 0; /* it answered: the link is alive */
        } else if (slot_find(s, h.seq)) {
            smpp_header as = h;
            if (as.status == SMPP_ROK)
                as.status = 0xFF;
            on_submit_resp(s, &as, pdu, now);
        }
        return;
    case SMPP_DELIVER_SM:
        if (s->state == S_BOUND)
            on_deliver_sm(s, &h, pdu);
        return;
    case SMPP_ENQUIRE_LINK:
        queue_simple(s, SMPP_ENQUIRE_LINK_RESP, SMPP_ROK, h.seq);
        return;
    case SMPP_ENQUIRE_LINK_RESP:
        if (h.seq == s->enquire_seq)
            s->enquire_seq = 0;
        return;
    case SMPP_UNBIND:
        queue_simple(s, SMPP_UNBIND_RESP, SMPP_ROK, h.seq);
        flush(s); /* best effort: the connection ends either way */
        if (s->conn.fd >= 0)
            disconnect(s, "unbind from the SMSC", false);
        return;
    case SMPP_UNBIND_RESP:
        if (h.seq == s->unbind_seq)
            s->unbound = true;
        return;
    case SMPP_ALERT_NOTIFICATION:
        return;
    default:
        if (!(h.id & 0x80000000u))
            queue_simple(s, SMPP_GENERIC_NACK, SMPP_RINVCMDID, h.seq);
        return;
    }
}

/* Reads what the connection has and handles every complete PDU, until it
 * would block (so TLS holds no decrypted bytes while poll() sleeps; the buffer
 * always has room, as a PDU is at most SMPP_PDU_MAX). Returns false (after
 * disconnecting) when the connection ended. */
static bool read_some(smpp_session *s, int64_t now)
{
    for (;;) {
        char why[256];
        ssize_t r =
            smpp_conn_read(&s->conn, s->rbuf + s->rlen, RBUF_SIZE - s->rlen, why, sizeof(why));
        if (r == 0)
            return true;
        if (r < 0) {
            disconnect(s, why, false);
            return false;
        }
        s->rlen += (size_t)r;
        size_t off = 0;
        while (s->rlen - off >= SMPP_HEADER_LEN) {
            smpp_header h;
            smpp_header_read(s->rbuf + off, &h);
            if (h.length < SMPP_HEADER_LEN || h.length > SMPP_PDU_MAX) {
                disconnect(s, "bad command_length from the SMSC", false);
                return false;
            }
            if (s->rlen - off < h.length)
                break;
            handle_pdu(s, s->rbuf + off, now);
            if (s->conn.fd < 0)
                return false; /* handle_pdu disconnected */
            off += h.length;
        }
        if (off > 0) {
            memmove(s->rbuf, s->rbuf + off, s->rlen - off);
            sodium_memzero(s->rbuf + s->rlen - off, off);
            s->rlen -= off;
        }
    }
}

/* Writes what the connection takes. Unsent bytes stay at the buffer's start
 * and are only appended to, as a TLS retry needs. Returns false (after
 * disconnecting) on error. */
static bool flush(smpp_session *s)
{
    size_t off = 0;
    while (off < s->wlen) {
        char why[256];
        ssize_t w = smpp_conn_write(&s->conn, s->wbuf + off, s->wlen - off, why, sizeof(why));
        if (w < 0) {
            disconnect(s, why, false);
            return false;
        }
        if (w == 0)
            break;
        off += (size_t)w;
    }
    if (off > 0) {
        memmove(s->wbuf, s->wbuf + off, s->wlen - off);
        sodium_memzero(s->wbuf + s->wlen - off, off);
        s->wlen -= off;
    }
    return true;
}

/* ---- Timers -------------------------------------------------------------- */

static void tick(smpp_session *s, int64_t now)
{
    if (s->state >= S_CONNECTING && s->state <= S_BINDING && now >= s->state_deadline_us) {
        disconnect(s,
                   s->state == S_CONNECTING  ? "connect timed out"
                   : s->state == S_HANDSHAKE ? "TLS handshake timed out"
                                             : "no bind_transceiver_resp",
                   false);
        return;
    }
    if (s->state == S_BOUND) {
        if (s->enquire_seq && now - s->enquire_sent_us >= s->cfg.response_timeout_ms * 1000) {
            disconnect(s, "enquire_link unanswered", false);
            return;
        }
        if (!s->enquire_seq && now - s->last_rx_us >= s->cfg.enquire_link_ms * 1000) {
            s->enquire_seq = next_seq(s);
            s->enquire_sent_us = now;
            queue_simple(s, SMPP_ENQUIRE_LINK, SMPP_ROK, s->enquire_seq);
        }
        for (int k = 0; k < s->cfg.window; k++) {
            slot *sl = &s->slots[k];
            if (sl->j && now - sl->sent_us >= s->cfg.response_timeout_ms * 1000) {
                job *j = sl->j;
                size_t i = sl->msg;
                sl->j = NULL;
                s->inflight--;
                resolve(s, j, i, OTP_SEND_TEMPORARY, "no submit_sm_resp from the SMSC in time");
            }
        }
    }
    for (job *j = s->jobs, *next; j; j = next) {
        next = j->next;
        if (now < j->deadline_us)
            continue;
        for (size_t i = 0; i < j->n && !j->done; i++)
            resolve(s, j, i, OTP_SEND_TEMPORARY,
                    now < s->throttle_until_us ? "throttled by the SMSC past send_timeout"
                                               : "not accepted by the SMSC within send_timeout");
    }
    retry_receipts(s, now);
}

/* Microseconds until the next timer, for poll(). */
static int poll_timeout_ms(smpp_session *s, int64_t now)
{
    int64_t next = now + 1000 * 1000;
#define SOONER(t)                                                                                  \
    do {                                                                                           \
        if ((t) < next)                                                                            \
            next = (t);                                                                            \
    } while (0)
    if (s->state == S_DOWN)
        SOONER(s->reconnect_at_us);
    if (s->state >= S_CONNECTING && s->state <= S_BINDING)
        SOONER(s->state_deadline_us);
    if (s->state == S_BOUND) {
        SOONER(s->enquire_seq ? s->enquire_sent_us + s->cfg.response_timeout_ms * 1000
                              : s->last_rx_us + s->cfg.enquire_link_ms * 1000);
        if (s->throttle_until_us > now)
            SOONER(s->throttle_until_us);
        for (int k = 0; k < s->cfg.window; k++)
            if (s->slots[k].j)
                SOONER(s->slots[k].sent_us + s->cfg.response_timeout_ms * 1000);
    }
    for (job *j = s->jobs; j; j = j->next)
        SOONER(j->deadline_us);
    for (rcpt *r = s->retry; r; r = r->next)
        SOONER(r->next_us);
#undef SOONER
    int64_t ms = (next - now + 999) / 1000;
    return ms < 0 ? 0 : (int)ms;
}

/* ---- The thread ---------------------------------------------------------- */

static void try_connect(smpp_session *s)
{
    char why[256] = "";
    pthread_mutex_unlock(&s->lock);
    int fd = open_socket(s, why, sizeof(why));
    pthread_mutex_lock(&s->lock);
    if (fd < 0 || smpp_conn_open(&s->conn, fd, s->cfg.tls, s->cfg.host, why, sizeof(why)) != 0) {
        disconnect(s, why, false);
        return;
    }
    s->state = S_CONNECTING;
    s->state_deadline_us = otp_mono_us() + s->cfg.response_timeout_ms * 1000;
    s->last_rx_us = otp_mono_us();
}

/* The poll() events the connection waits for once it is up. */
static short io_events(const smpp_session *s)
{
    /* A TLS read or write may wait for the other direction; asking for an
     * event that is ready while it waits would spin the loop. */
    short ev = s->conn.read_wants_write ? POLLOUT : POLLIN;
    if (s->wlen > 0)
        ev |= s->conn.write_wants_read ? POLLIN : POLLOUT;
    return ev;
}

/* Whether revents mean read_some() has something to do. */
static bool io_readable(const smpp_session *s, short revents)
{
    return (revents & (POLLIN | POLLHUP | POLLERR)) ||
           ((revents & POLLOUT) && s->conn.read_wants_write);
}

/* At stop: unbind and wait a little for unbind_resp, then close. */
static void unbind(smpp_session *s)
{
    if (s->state != S_BOUND)
        return;
    s->unbind_seq = next_seq(s);
    s->unbound = false;
    queue_simple(s, SMPP_UNBIND, SMPP_ROK, s->unbind_seq);
    int64_t deadline = otp_mono_us() + UNBIND_WAIT_MS * 1000LL;
    while (s->conn.fd >= 0 && !s->unbound && otp_mono_us() < deadline) {
        if (!flush(s))
            break;
        struct pollfd p = {.fd = s->conn.fd, .events = io_events(s)};
        pthread_mutex_unlock(&s->lock);
        int n = poll(&p, 1, 100);
        pthread_mutex_lock(&s->lock);
        /* The SMSC may close right after its unbind_resp: read_some() then
         * handles the answer and fails on the close in the same call. */
        if (n > 0 && io_readable(s, p.revents) && !read_some(s, otp_mono_us()))
            break;
    }
    if (s->unbound)
        otp_log(OTP_LOG_INFO, "event=smpp_unbound provider=%s", s->name);
}

static void *run(void *arg)
{
    smpp_session *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!atomic_load(&s->stopping)) {
        int64_t now = otp_mono_us();
        if (s->state == S_DOWN && s->conn.fd < 0 && now >= s->reconnect_at_us) {
            try_connect(s);
            continue;
        }
        drain_receipts(s, now);
        tick(s, now);
        pump(s, now);
        if (s->conn.fd >= 0 && s->wlen > 0 && s->state >= S_BINDING && !flush(s))
            continue;

        struct pollfd fds[2] = {{.fd = s->wake_fd, .events = POLLIN}, {.fd = -1}};
        if (s->conn.fd >= 0) {
            fds[1].fd = s->conn.fd;
            fds[1].events = s->state == S_CONNECTING  ? POLLOUT
                            : s->state == S_HANDSHAKE ? s->conn.want
                                                      : io_events(s);
        }
        int timeout = poll_timeout_ms(s, now);
        pthread_mutex_unlock(&s->lock);
        int n = poll(fds, 2, timeout);
        pthread_mutex_lock(&s->lock);
        if (n <= 0)
            continue;
        if (fds[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(s->wake_fd, &v, sizeof(v));
            (void)r;
        }
        now = otp_mono_us();
        if (s->conn.fd >= 0 && fds[1].fd == s->conn.fd && fds[1].revents) {
            if (s->state == S_CONNECTING) {
                connected(s);
                continue;
            }
            if (s->state == S_HANDSHAKE) {
                handshake(s);
                continue;
            }
            if (io_readable(s, fds[1].revents) && !read_some(s, now))
                continue;
        }
    }
    unbind(s);
    if (s->conn.fd >= 0)
        disconnect(s, "shutting down", true);
    fail_all_jobs(s, "shutting down");
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- Public -------------------------------------------------------------- */

static void session_free(smpp_session *s)
{
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    if (s->wbuf)
        sodium_memzero(s->wbuf, WBUF_MAX);
    free(s->wbuf);
    free(s->rbuf);
    free(s->slots);
    free(s->groups);
    free(s->entries);
    free(s->buckets);
    for (rcpt *r = s->retry, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    for (rcpt *r = s->completed, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    pthread_cond_destroy(&s->dlr_cond);
    pthread_mutex_destroy(&s->dlr_lock);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    sodium_memzero(&s->cfg, sizeof(s->cfg));
    free(s);
}

int smpp_session_start(const smpp_config *cfg, const char *name, const otp_dlr_sink *dlr,
                       smpp_session **ret)
{
    if (!cfg || cfg->window < 1 || !name || !ret)
        return -1;
    smpp_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->cfg = *cfg;
    copy_str(s->name, sizeof(s->name), name);
    s->dlr = dlr && dlr->submit ? dlr : NULL;
    s->conn = SMPP_CONN_CLOSED;
    s->state = S_DOWN;
    s->backoff_ms = cfg->reconnect_min_ms;
    s->throttle_ms = cfg->throttle_delay_ms;
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->rbuf = calloc(1, RBUF_SIZE);
    s->wbuf = calloc(1, WBUF_MAX);
    s->slots = calloc((size_t)cfg->window, sizeof(*s->slots));
    atomic_init(&s->stopping, false);
    atomic_init(&s->bound, false);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->dlr_lock, NULL);
    pthread_cond_init(&s->dlr_cond, NULL);
    if (s->wake_fd < 0 || !s->rbuf || !s->wbuf || !s->slots) {
        session_free(s);
        return -1;
    }
    /* Signals belong to main's handler: the thread starts with all of them blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&s->thread, NULL, run, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        session_free(s);
        return -1;
    }
    *ret = s;
    return 0;
}

void smpp_session_stop(smpp_session *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    wake(s);
    pthread_join(s->thread, NULL);
    /* Receipts still in the store's hands call back into s: wait for them. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += DLR_DRAIN_WAIT_MS / 1000;
    pthread_mutex_lock(&s->dlr_lock);
    while (s->outstanding > 0)
        if (pthread_cond_timedwait(&s->dlr_cond, &s->dlr_lock, &until) == ETIMEDOUT)
            break;
    size_t left = s->outstanding;
    pthread_mutex_unlock(&s->dlr_lock);
    if (left > 0) {
        /* Freeing now would let a late callback write into freed memory. */
        otp_log(OTP_LOG_WARN, "event=smpp_stop_leak provider=%s receipts_in_flight=%zu", s->name,
                left);
        return;
    }
    session_free(s);
}

bool smpp_session_bound(smpp_session *s)
{
    return s && atomic_load(&s->bound);
}

void smpp_session_send(smpp_session *s, smpp_msg *msgs, size_t n)
{
    if (n == 0)
        return;
    job j = {.n = n, .unresolved = n};
    j.msgs = calloc(n, sizeof(*j.msgs));
    bool oom = !j.msgs;
    for (size_t i = 0; !oom && i < n; i++) {
        j.msgs[i].m = &msgs[i];
        j.msgs[i].ids = calloc(msgs[i].parts->n ? msgs[i].parts->n : 1, SMPP_MSGID_SIZE);
        oom = !j.msgs[i].ids;
    }
    if (oom) {
        for (size_t i = 0; i < n; i++) {
            msgs[i].outcome = OTP_SEND_TEMPORARY;
            copy_str(msgs[i].error, sizeof(msgs[i].error), "out of memory");
        }
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        msgs[i].outcome = OTP_SEND_TEMPORARY;
        msgs[i].message_id[0] = msgs[i].error[0] = '\0';
    }

    pthread_mutex_lock(&s->lock);
    if (s->state != S_BOUND || atomic_load(&s->stopping)) {
        for (size_t i = 0; i < n; i++)
            copy_str(msgs[i].error, sizeof(msgs[i].error), "not bound to the SMSC");
        pthread_mutex_unlock(&s->lock);
        goto out;
    }
    int64_t now = otp_mono_us();
    j.deadline_us = now + s->cfg.send_timeout_ms * 1000;
    job **tail = &s->jobs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = &j;
    wake(s);
    /* The thread resolves every message by the deadline; the extra second only
     * guards against a thread that is stuck. */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    int64_t wait_ms = s->cfg.send_timeout_ms + 1000;
    until.tv_sec += (time_t)(wait_ms / 1000);
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!j.done) {
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT && !j.done) {
            for (size_t i = 0; i < n && !j.done; i++)
                resolve(s, &j, i, OTP_SEND_TEMPORARY, "SMPP session did not answer in time");
            if (!j.done)
                job_unlink(s, &j);
        }
    }
    pthread_mutex_unlock(&s->lock);
out:
    for (size_t i = 0; j.msgs && i < n; i++)
        free(j.msgs[i].ids);
    free(j.msgs);
}
