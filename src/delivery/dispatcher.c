/* delivery/dispatcher.c — one thread that drains the outbox into the providers.
 *
 * Each round claims a batch (OTP_TXN_OUTBOX_CLAIM leases it to us), decides every
 * message's fate and records all of them with one OTP_TXN_OUTBOX_REPORT. A crash
 * between the provider's acceptance and the report only lets the lease run out,
 * so the message is sent again: at-least-once, never lost, never sent before its
 * send was committed (the store only hands out committed rows).
 *
 * Fates: a message whose request has expired fails without being sent; one whose
 * text does not unseal fails ("cannot decrypt": a wrong key or a tampered row —
 * retrying cannot help); the rest go to the providers in priority order. A
 * provider answers per message: accepted (sent), permanent (failed) or temporary,
 * and temporary ones move on to the next provider. What no provider took goes
 * back to the outbox with exponential backoff and full jitter, never later than
 * its expiry so that it fails on time rather than lingering as "queued".
 *
 * A provider whose every message failed temporarily in breaker_threshold batches
 * in a row is skipped for breaker_cooldown (a circuit breaker, per provider), so a
 * dead gateway does not add its timeout to every batch. After the pause the
 * breaker is half-open: the next batch is the probe. If the probe fails too, the
 * pause doubles (up to BREAKER_MAX_MS); one accepted or permanently refused
 * message closes the breaker. A provider counts as usable (otp_dispatcher_ready,
 * hence /readyz) when it says it is ready and its breaker is not open; the
 * breaker's deadline is atomic because /readyz reads it from HTTP threads.
 *
 * Plaintext texts (they contain codes) live in one buffer per batch that is wiped
 * before it is freed, and are never logged. When a claim comes back full there
 * is probably more: the next round starts at once. Otherwise the thread sleeps on
 * a condition variable until otp_dispatcher_wake() or idle_ms. wake() is called
 * after every committed send, so it only takes the lock when it changes the
 * "woken" flag from false to true: at most once per round however many sends
 * arrive.
 *
 * Hand-offs. A claim costs the store's writer an outbox scan and a lease
 * UPDATE per message, and the message row a rewrite. So a send can store its
 * message already leased to us (status sending) and pass it over after the
 * commit (otp_dispatcher_handoff); each round claims as before (retries,
 * expired leases: up to a batch), then takes up to a batch of hand-offs. The
 * only hazard is a hand-off the claim could also return: one whose lease has
 * run out. Each round reads the clock after its claim and drops the hand-offs
 * with less than half their lease left, so what it keeps cannot have been
 * claimed, and what it drops is claimed once its lease is over. A crash loses
 * the hand-offs in memory the same way it loses a claimed batch: they are
 * claimed again when their leases end. stop() puts the ones not sent back in
 * the outbox, due at once. handoff_lease() stops offering leases (the sends
 * go to the outbox) while HANDOFF_BATCHES batches of them are waiting.
 */
#include "util/random.h"
#include "delivery/dispatcher.h"
#include "delivery/stats.h"
#include "core/seal.h"
#include "util/clock.h"
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_BASE_MS 1000
#define BACKOFF_MAX_MS (5 * 60 * 1000)
#define BREAKER_THRESHOLD 3               /* default all-temporary batches in a row */
#define BREAKER_COOLDOWN_MS 30000LL       /* default first pause */
#define BREAKER_MAX_MS (10 * 60 * 1000LL) /* longest pause after failed probes */
#define REPORT_TRIES 3
#define HANDOFF_BATCHES 4 /* hand-offs waiting, in batches, beyond which sends use the outbox */

#define ERR_EXPIRED "expired before it could be sent"
#define ERR_DECRYPT "cannot decrypt"
#define ERR_NO_PROVIDER "no provider available"

typedef struct breaker {
    int failed_batches;            /* all-temporary batches in a row */
    int64_t pause_ms;              /* the pause of the current opening */
    bool probing;                  /* half-open: this batch is the probe */
    _Atomic int64_t open_until_us; /* otp_mono_us(); 0 = closed */
} breaker;

/* A message a send handed over, leased to us until lease_until_ms. */
typedef struct handoff {
    otp_outbox_msg m; /* owns m.sealed */
    int64_t lease_until_ms;
} handoff;

struct otp_dispatcher {
    otp_store *store;
    otp_provider **providers;
    size_t n_providers;
    breaker *breakers;
    uint8_t box_key[32];
    otp_dispatcher_options opt;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    atomic_bool woken;
    atomic_bool stopping;
    handoff *handoffs; /* FIFO, under lock */
    size_t n_handoffs, cap_handoffs;
    atomic_size_t waiting; /* n_handoffs, for handoff_lease() without the lock */
};

/* Exponential from 1 s, doubling per attempt, capped at 5 min, with full jitter. */
static int64_t backoff_ms(int attempts)
{
    int shift = attempts > 1 ? attempts - 1 : 0;
    int64_t cap = shift >= 9 ? BACKOFF_MAX_MS : (int64_t)BACKOFF_BASE_MS << shift;
    if (cap > BACKOFF_MAX_MS)
        cap = BACKOFF_MAX_MS;
    return (int64_t)otp_random_uniform((uint32_t)cap + 1);
}

/* Copies a provider's error into a logfmt-safe form (no quotes, no control bytes). */
static void log_safe(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *in && o + 1 < outlen; in++)
        out[o++] = (*in == '"' || *in == '\\' || (unsigned char)*in < 0x20) ? '\'' : *in;
    out[o] = '\0';
}

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

static bool breaker_open(breaker *b, int64_t now_us)
{
    return atomic_load(&b->open_until_us) > now_us;
}

/* Records the outcome of one batch offered to provider p. */
static void breaker_update(breaker *b, const otp_provider *p, size_t n, size_t temporary)
{
    /* A handle built without otp_provider_init() gets the documented defaults. */
    int threshold = p->breaker_threshold > 0 ? p->breaker_threshold : BREAKER_THRESHOLD;
    int64_t cooldown = p->breaker_cooldown_ms > 0 ? p->breaker_cooldown_ms : BREAKER_COOLDOWN_MS;
    if (n > 0 && temporary == n) {
        b->failed_batches++;
        if (!b->probing && b->failed_batches < threshold)
            return;
        int64_t pause = cooldown;
        if (b->probing && b->pause_ms > 0)
            pause = b->pause_ms * 2 < BREAKER_MAX_MS ? b->pause_ms * 2 : BREAKER_MAX_MS;
        if (pause < cooldown)
            pause = cooldown;
        b->pause_ms = pause;
        b->probing = false;
        atomic_store(&b->open_until_us, otp_mono_us() + pause * 1000);
        otp_log(OTP_LOG_WARN, "event=provider_paused provider=%s failed_batches=%d pause_ms=%lld",
                p->name, b->failed_batches, (long long)pause);
        return;
    }
    if (b->probing || atomic_load(&b->open_until_us) != 0)
        otp_log(OTP_LOG_INFO, "event=provider_resumed provider=%s", p->name);
    b->failed_batches = 0;
    b->pause_ms = 0;
    b->probing = false;
    atomic_store(&b->open_until_us, 0);
}

/* Sends the pending messages (idx[0..*n_pending)) to provider k and records the
 * outcome of those it accepted or refused for good; on return idx holds the ones
 * that failed temporarily. last_error receives a temporary failure's message. */
static void offer(otp_dispatcher *d, size_t k, const otp_sms *sms_all, otp_outbox_report *reports,
                  size_t *idx, size_t *n_pending, otp_sms *sms, otp_send_result *res,
                  char *last_error, size_t last_error_size)
{
    otp_provider *p = d->providers[k];
    size_t n = *n_pending;
    for (size_t j = 0; j < n; j++) {
        sms[j] = sms_all[idx[j]];
        /* A provider that forgets a result must not make a message look sent. */
        res[j] = (otp_send_result){.outcome = OTP_SEND_TEMPORARY};
        copy_str(res[j].error, sizeof(res[j].error), "provider gave no result");
    }
    p->ops->send(p, sms, n, res);

    size_t kept = 0, temporary = 0, permanent = 0;
    const char *first_error = NULL;
    int64_t now = otp_now_ms();
    for (size_t j = 0; j < n; j++) {
        otp_outbox_report *r = &reports[idx[j]];
        switch (res[j].outcome) {
        case OTP_SEND_ACCEPTED:
            otp_delivery_latency(p->name, now - sms[j].created_at_ms);
            r->status = OTP_MSG_SENT;
            copy_str(r->provider, sizeof(r->provider), p->name);
            copy_str(r->provider_message_id, sizeof(r->provider_message_id),
                     res[j].provider_message_id);
            r->error[0] = '\0';
            break;
        case OTP_SEND_PERMANENT:
            permanent++;
            r->status = OTP_MSG_FAILED;
            copy_str(r->provider, sizeof(r->provider), p->name);
            copy_str(r->error, sizeof(r->error),
                     res[j].error[0] ? res[j].error : "rejected by provider");
            if (!first_error)
                first_error = r->error;
            break;
        default:
            temporary++;
            copy_str(last_error, last_error_size, res[j].error);
            if (!first_error)
                first_error = res[j].error;
            idx[kept++] = idx[j];
            break;
        }
    }
    *n_pending = kept;
    otp_delivery_handled(p->name, OTP_MSG_SENT, n - temporary - permanent);
    otp_delivery_handled(p->name, OTP_MSG_FAILED, permanent);
    otp_delivery_temporary(p->name, temporary);

    breaker_update(&d->breakers[k], p, n, temporary);
    if (temporary + permanent > 0) {
        char safe[OTP_ERROR_TEXT_SIZE];
        log_safe(first_error ? first_error : "", safe, sizeof(safe));
        otp_log(OTP_LOG_WARN,
                "event=provider_failure provider=%s messages=%zu temporary=%zu permanent=%zu "
                "error=\"%s\"",
                p->name, n, temporary, permanent, safe);
    }
}

/* Reports, retrying a few times: an unrecorded send is resent when its lease ends. */
static void report(otp_dispatcher *d, const otp_outbox_report *reports, size_t n)
{
    for (int tries = 0; tries < REPORT_TRIES; tries++) {
        otp_txn txn = {.kind = OTP_TXN_OUTBOX_REPORT};
        txn.u.outbox_report = (otp_txn_outbox_report){
            .reports = reports,
            .n = n,
            .now_ms = otp_now_ms(),
        };
        if (otp_store_exec(d->store, &txn) == OTP_OK)
            return;
        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
    }
}

/* Appends up to a batch of hand-offs to the claimed *msgs (*n of them), in
 * their order, dropping those with less than half their lease left (see the
 * top). 0, or -1 if memory failed (what was taken is dropped: the outbox
 * claims it when its lease ends). */
static int take_handoffs(otp_dispatcher *d, otp_outbox_msg **msgs, size_t *n)
{
    pthread_mutex_lock(&d->lock);
    size_t k = d->n_handoffs < d->opt.batch ? d->n_handoffs : d->opt.batch;
    handoff *taken = NULL;
    if (k > 0 && (taken = malloc(k * sizeof(*taken))) != NULL) {
        memcpy(taken, d->handoffs, k * sizeof(*taken));
        memmove(d->handoffs, d->handoffs + k, (d->n_handoffs - k) * sizeof(*taken));
        d->n_handoffs -= k;
        atomic_store(&d->waiting, d->n_handoffs);
    }
    pthread_mutex_unlock(&d->lock);
    if (k == 0)
        return 0;
    if (!taken)
        return -1; /* left in the queue for the next round */

    otp_outbox_msg *all = realloc(*msgs, (*n + k) * sizeof(**msgs));
    int64_t keep_after = otp_now_ms() + d->opt.lease_ms / 2;
    size_t dropped = 0;
    for (size_t i = 0; i < k; i++) {
        if (!all || taken[i].lease_until_ms <= keep_after) {
            free(taken[i].m.sealed);
            dropped++;
            continue;
        }
        all[(*n)++] = taken[i].m;
    }
    free(taken);
    if (dropped > 0)
        otp_log(OTP_LOG_WARN, "event=handoff_dropped messages=%zu reason=%s", dropped,
                all ? "lease_half_gone" : "out_of_memory");
    if (!all)
        return -1;
    *msgs = all;
    return 0;
}

/* Claims and handles one batch, with the hand-offs waiting. Returns the number
 * of messages handled, or -1 if the store or memory failed (the caller waits
 * before trying again). */
static long round_once(otp_dispatcher *d)
{
    otp_txn claim = {.kind = OTP_TXN_OUTBOX_CLAIM};
    claim.u.outbox_claim = (otp_txn_outbox_claim){
        .now_ms = otp_now_ms(),
        .lease_ms = d->opt.lease_ms,
        .max = d->opt.batch,
    };
    if (otp_store_exec(d->store, &claim) != OTP_OK)
        return -1;
    otp_outbox_msg *msgs = claim.u.outbox_claim.msgs;
    size_t n = claim.u.outbox_claim.n;
    if (take_handoffs(d, &msgs, &n) != 0) {
        otp_outbox_msgs_free(msgs, n); /* the claimed ones are claimed again */
        return -1;
    }
    if (n == 0) {
        otp_outbox_msgs_free(msgs, n);
        return 0;
    }

    size_t text_size = 0;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].sealed_len >= OTP_SEAL_OVERHEAD)
            text_size += msgs[i].sealed_len - OTP_SEAL_OVERHEAD + 1;
    otp_outbox_report *reports = calloc(n, sizeof(*reports));
    otp_sms *sms_all = calloc(n, sizeof(*sms_all));
    otp_sms *sms = calloc(n, sizeof(*sms));
    otp_send_result *res = calloc(n, sizeof(*res));
    size_t *idx = calloc(n, sizeof(*idx));
    char *texts = malloc(text_size ? text_size : 1);
    long r = (long)n;
    if (!reports || !sms_all || !sms || !res || !idx || !texts) {
        /* The lease runs out and the messages are claimed again. */
        r = -1;
        goto out;
    }

    int64_t now = otp_now_ms();
    size_t n_pending = 0, off = 0;
    for (size_t i = 0; i < n; i++) {
        const otp_outbox_msg *m = &msgs[i];
        otp_outbox_report *rep = &reports[i];
        rep->id = m->id;
        rep->status = OTP_MSG_FAILED;
        if (m->expires_at_ms <= now) {
            copy_str(rep->error, sizeof(rep->error), ERR_EXPIRED);
            continue;
        }
        char *text = texts + off;
        if (m->sealed_len < OTP_SEAL_OVERHEAD ||
            otp_unseal(d->box_key, m->public_id, m->sealed, m->sealed_len, text) != 0) {
            copy_str(rep->error, sizeof(rep->error), ERR_DECRYPT);
            continue;
        }
        off += m->sealed_len - OTP_SEAL_OVERHEAD + 1;
        sms_all[i] = (otp_sms){
            .message_id = m->public_id,
            .to = m->to,
            .text = text,
            .sender_id = m->sender_id[0] ? m->sender_id : NULL,
            .dlt_template_id = m->dlt_template_id[0] ? m->dlt_template_id : NULL,
            .segments = m->segments,
            .created_at_ms = m->created_at_ms,
        };
        idx[n_pending++] = i;
    }

    otp_delivery_handled(OTP_DELIVERY_NO_PROVIDER, OTP_MSG_FAILED, n - n_pending);
    char last_error[OTP_ERROR_TEXT_SIZE] = ERR_NO_PROVIDER;
    const char *last_tried = OTP_DELIVERY_NO_PROVIDER;
    int64_t now_us = otp_mono_us();
    for (size_t k = 0; k < d->n_providers && n_pending > 0; k++) {
        otp_provider *p = d->providers[k];
        breaker *b = &d->breakers[k];
        if (breaker_open(b, now_us) || !p->ops->ready(p))
            continue;
        if (atomic_load(&b->open_until_us) != 0 && !b->probing) {
            b->probing = true; /* the pause is over: this batch is the probe */
            otp_log(OTP_LOG_INFO, "event=provider_probe provider=%s messages=%zu", p->name,
                    n_pending);
        }
        offer(d, k, sms_all, reports, idx, &n_pending, sms, res, last_error, sizeof(last_error));
        last_tried = p->name;
    }
    otp_delivery_handled(last_tried, OTP_MSG_QUEUED, n_pending);
    for (size_t j = 0; j < n_pending; j++) {
        const otp_outbox_msg *m = &msgs[idx[j]];
        otp_outbox_report *rep = &reports[idx[j]];
        int64_t next = now + backoff_ms(m->attempts);
        rep->status = OTP_MSG_QUEUED;
        rep->next_attempt_at_ms = next < m->expires_at_ms ? next : m->expires_at_ms;
        rep->provider[0] = '\0';
        copy_str(rep->error, sizeof(rep->error), last_error);
    }

    report(d, reports, n);

out:
    if (texts)
        sodium_memzero(texts, text_size);
    free(texts);
    free(idx);
    free(res);
    free(sms);
    free(sms_all);
    free(reports);
    otp_outbox_msgs_free(msgs, n);
    return r;
}

static void idle_wait(otp_dispatcher *d)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(d->opt.idle_ms / 1000);
    until.tv_nsec += (long)(d->opt.idle_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->lock);
    while (!atomic_load(&d->woken) && !atomic_load(&d->stopping))
        if (pthread_cond_timedwait(&d->cond, &d->lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&d->lock);
}

static void *run(void *arg)
{
    otp_dispatcher *d = arg;
    while (!atomic_load(&d->stopping)) {
        /* Cleared before the claim, so a wake during the round is not lost. */
        atomic_store(&d->woken, false);
        long got = round_once(d);
        if (got >= (long)d->opt.batch || (got >= 0 && atomic_load(&d->waiting) > 0))
            continue;
        idle_wait(d);
    }
    return NULL;
}

static void destroy(otp_dispatcher *d)
{
    for (size_t i = 0; i < d->n_handoffs; i++)
        free(d->handoffs[i].m.sealed);
    free(d->handoffs);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    sodium_memzero(d->box_key, sizeof(d->box_key));
    free(d->breakers);
    free(d);
}

int otp_dispatcher_start(otp_store *store, otp_provider **providers, size_t n,
                         const uint8_t box_key[32], const otp_dispatcher_options *opt,
                         otp_dispatcher **ret)
{
    if (!store || (n > 0 && !providers) || !box_key || !ret || sodium_init() < 0)
        return -1;
    otp_dispatcher *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    d->breakers = calloc(n ? n : 1, sizeof(*d->breakers));
    if (!d->breakers) {
        free(d);
        return -1;
    }
    for (size_t k = 0; k < n; k++)
        atomic_init(&d->breakers[k].open_until_us, 0);
    d->store = store;
    d->providers = providers;
    d->n_providers = n;
    for (size_t i = 0; i < n; i++)
        otp_delivery_register(providers[i]->name);
    otp_delivery_register(OTP_DELIVERY_NO_PROVIDER);
    memcpy(d->box_key, box_key, sizeof(d->box_key));
    if (opt)
        d->opt = *opt;
    if (d->opt.lease_ms <= 0)
        d->opt.lease_ms = 30000;
    if (d->opt.batch == 0)
        d->opt.batch = 64;
    if (d->opt.idle_ms <= 0)
        d->opt.idle_ms = 1000;
    atomic_init(&d->woken, true);
    atomic_init(&d->stopping, false);
    atomic_init(&d->waiting, 0);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&d->lock, NULL);

    /* Signals belong to main's handler: the thread starts with all of them blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&d->thread, NULL, run, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        destroy(d);
        return -1;
    }
    *ret = d;
    return 0;
}

void otp_dispatcher_wake(otp_dispatcher *d)
{
    if (!d || atomic_exchange(&d->woken, true))
        return;
    pthread_mutex_lock(&d->lock);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

int64_t otp_dispatcher_handoff_lease(otp_dispatcher *d)
{
    if (!d || atomic_load(&d->stopping) ||
        atomic_load(&d->waiting) >= HANDOFF_BATCHES * d->opt.batch)
        return 0;
    return d->opt.lease_ms;
}

void otp_dispatcher_handoff(otp_dispatcher *d, const otp_txn_send *committed)
{
    const otp_txn_send *s = committed;
    if (!d || !s || !s->leased)
        return;
    /* The message as a claim would have returned it. */
    handoff h = {.lease_until_ms = s->now_ms + s->lease_ms};
    otp_outbox_msg *m = &h.m;
    m->id = s->leased_msg_id;
    memcpy(m->public_id, s->message_id, sizeof(m->public_id));
    memcpy(m->request_id, s->request_id, sizeof(m->request_id));
    m->account_id = s->account_id;
    memcpy(m->to, s->phone, sizeof(m->to));
    m->attempts = 1;
    m->segments = s->segments;
    m->created_at_ms = s->now_ms;
    m->expires_at_ms = s->expires_at_ms;
    memcpy(m->sender_id, s->sender_id, sizeof(m->sender_id));
    memcpy(m->dlt_template_id, s->dlt_template_id, sizeof(m->dlt_template_id));
    m->sealed = s->sealed_text_len ? malloc(s->sealed_text_len) : NULL;
    if (s->sealed_text_len && !m->sealed)
        goto dropped;
    if (s->sealed_text_len)
        memcpy(m->sealed, s->sealed_text, s->sealed_text_len);
    m->sealed_len = s->sealed_text_len;

    pthread_mutex_lock(&d->lock);
    if (d->n_handoffs == d->cap_handoffs) {
        size_t cap = d->cap_handoffs ? d->cap_handoffs * 2 : HANDOFF_BATCHES * d->opt.batch;
        handoff *p = realloc(d->handoffs, cap * sizeof(*p));
        if (!p) {
            pthread_mutex_unlock(&d->lock);
            free(m->sealed);
            goto dropped;
        }
        d->handoffs = p;
        d->cap_handoffs = cap;
    }
    d->handoffs[d->n_handoffs++] = h;
    atomic_store(&d->waiting, d->n_handoffs);
    if (!atomic_exchange(&d->woken, true))
        pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return;
dropped: /* still leased in the store: claimed when the lease ends */
    otp_log(OTP_LOG_WARN, "event=handoff_dropped messages=1 reason=out_of_memory");
}

/* After the thread has stopped: the hand-offs it did not get to go back to the
 * outbox, due at once, so that the next start (or another node) sends them
 * without waiting for their leases. If that fails they are claimed when their
 * leases end. */
static void requeue_handoffs(otp_dispatcher *d)
{
    size_t n = d->n_handoffs;
    if (n == 0)
        return;
    otp_outbox_report *reports = calloc(n, sizeof(*reports));
    if (!reports)
        return;
    int64_t now = otp_now_ms();
    for (size_t i = 0; i < n; i++)
        reports[i] = (otp_outbox_report){
            .id = d->handoffs[i].m.id, .status = OTP_MSG_QUEUED, .next_attempt_at_ms = now};
    report(d, reports, n);
    free(reports);
}

bool otp_dispatcher_ready(otp_dispatcher *d)
{
    int64_t now_us = otp_mono_us();
    for (size_t k = 0; d && k < d->n_providers; k++)
        if (!breaker_open(&d->breakers[k], now_us) && d->providers[k]->ops->ready(d->providers[k]))
            return true;
    return false;
}

otp_provider *otp_dispatcher_provider(otp_dispatcher *d, const char *name)
{
    for (size_t k = 0; d && name && k < d->n_providers; k++)
        if (strcmp(d->providers[k]->name, name) == 0)
            return d->providers[k];
    return NULL;
}

void otp_dispatcher_stop(otp_dispatcher *d)
{
    if (!d)
        return;
    atomic_store(&d->stopping, true);
    pthread_mutex_lock(&d->lock);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    requeue_handoffs(d);
    destroy(d);
}
