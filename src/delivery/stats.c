/* delivery/stats.c — delivery counters by provider; see stats.h.
 *
 * A fixed table of slots, one per provider name. A slot's name is written once,
 * under the lock, before the slot count that publishes it (release), so the
 * counting path only compares names up to the count it loaded (acquire) and
 * takes the lock only the first time it meets a name.
 */
#include "delivery/stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "delivery/provider.h"

#define SLOTS 16 /* the last one is "other" */

const double otp_delivery_latency_bounds_s[OTP_DELIVERY_LATENCY_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

typedef struct slot {
    char name[OTP_PROVIDER_NAME_MAX + 1];
    atomic_uint_fast64_t handled[OTP_MSG_UNDELIVERABLE + 1];
    atomic_uint_fast64_t reports[OTP_MSG_UNDELIVERABLE + 1];
    atomic_uint_fast64_t temporary;
    atomic_uint_fast64_t latency[OTP_DELIVERY_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t latency_sum_ms;
} slot;

static slot slots[SLOTS];
static atomic_size_t n_slots;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static slot *find(const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(slots[i].name, name) == 0)
            return &slots[i];
    return NULL;
}

static slot *slot_of(const char *provider)
{
    const char *name = provider && provider[0] ? provider : OTP_DELIVERY_NO_PROVIDER;
    slot *s = find(name, atomic_load_explicit(&n_slots, memory_order_acquire));
    if (s)
        return s;
    pthread_mutex_lock(&lock);
    size_t n = atomic_load_explicit(&n_slots, memory_order_relaxed);
    if (n == SLOTS) { /* full: the last slot is "other" */
        s = &slots[SLOTS - 1];
    } else if (!(s = find(name, n))) {
        s = &slots[n];
        if (n == SLOTS - 1)
            name = "other";
        size_t len = strnlen(name, sizeof(s->name) - 1);
        memcpy(s->name, name, len);
        s->name[len] = '\0';
        atomic_store_explicit(&n_slots, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&lock);
    return s;
}

void otp_delivery_register(const char *provider)
{
    (void)slot_of(provider);
}

void otp_delivery_handled(const char *provider, otp_msg_status status, uint64_t n)
{
    if ((unsigned)status <= OTP_MSG_UNDELIVERABLE && n > 0)
        atomic_fetch_add_explicit(&slot_of(provider)->handled[status], n, memory_order_relaxed);
}

void otp_delivery_report(const char *provider, otp_msg_status status)
{
    if ((unsigned)status <= OTP_MSG_UNDELIVERABLE)
        atomic_fetch_add_explicit(&slot_of(provider)->reports[status], 1, memory_order_relaxed);
}

void otp_delivery_temporary(const char *provider, uint64_t n)
{
    if (n > 0)
        atomic_fetch_add_explicit(&slot_of(provider)->temporary, n, memory_order_relaxed);
}

void otp_delivery_latency(const char *provider, int64_t ms)
{
    slot *s = slot_of(provider);
    if (ms < 0) /* a clock that moved back */
        ms = 0;
    size_t b = 0;
    while (b < OTP_DELIVERY_LATENCY_BUCKETS &&
           (double)ms / 1000.0 > otp_delivery_latency_bounds_s[b])
        b++;
    atomic_fetch_add_explicit(&s->latency[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->latency_sum_ms, (uint64_t)ms, memory_order_relaxed);
}

void otp_delivery_stats_each(void (*cb)(const otp_delivery_stats *s, void *ctx), void *ctx)
{
    size_t n = atomic_load_explicit(&n_slots, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        slot *s = &slots[i];
        otp_delivery_stats out = {.provider = s->name};
        for (size_t k = 0; k <= OTP_MSG_UNDELIVERABLE; k++) {
            out.handled[k] = atomic_load_explicit(&s->handled[k], memory_order_relaxed);
            out.reports[k] = atomic_load_explicit(&s->reports[k], memory_order_relaxed);
        }
        out.temporary = atomic_load_explicit(&s->temporary, memory_order_relaxed);
        for (size_t b = 0; b <= OTP_DELIVERY_LATENCY_BUCKETS; b++)
            out.latency[b] = atomic_load_explicit(&s->latency[b], memory_order_relaxed);
        out.latency_sum_ms = atomic_load_explicit(&s->latency_sum_ms, memory_order_relaxed);
        cb(&out, ctx);
    }
}
