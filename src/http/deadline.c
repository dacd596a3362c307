/* http/deadline.c — per-connection deadlines for whole requests; see deadline.h.
 *
 * The hooks run on libmicrohttpd's threads: open and close take the lock (once
 * per connection), the three per-request ones only store a deadline
 * atomically. The watcher wakes four times a second (util/stop.h) and reads
 * every slot under the lock, a few microseconds for a full table.
 */
#include "http/deadline.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/stop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#define WATCH_MS 250
#define REAPED (-1) /* until_ms of a connection the watcher is cutting off */

struct otp_http_deadline {
    int fd;                   /* -1: a free slot */
    _Atomic int64_t until_ms; /* monotonic; 0: none; REAPED */
    otp_http_deadline *next_free;
};

struct otp_http_deadlines {
    pthread_mutex_t lock; /* the slots' fds and the free list */
    otp_stop stop;
    pthread_t thread;
    int64_t idle_ms, request_ms;
    otp_http_deadline *free_list;
    size_t n;
    otp_http_deadline slots[];
};

static int64_t mono_ms(void)
{
    return otp_mono_us() / 1000;
}

static void *watch(void *arg)
{
    otp_http_deadlines *d = arg;
    pthread_setname_np(pthread_self(), "otpd-deadlines");
    while (!otp_stop_wait_ms(&d->stop, WATCH_MS)) {
        int64_t now = mono_ms();
        unsigned missed = 0;
        pthread_mutex_lock(&d->lock);
        for (size_t i = 0; i < d->n; i++) {
            otp_http_deadline *c = &d->slots[i];
            int64_t t = atomic_load(&c->until_ms);
            if (c->fd < 0 || t <= 0 || now <= t)
                continue;
            /* Claimed only if the request did not arrive whole meanwhile: a
             * worker that finds REAPED drops the request (received()). */
            if (!atomic_compare_exchange_strong(&c->until_ms, &t, REAPED))
                continue;
            shutdown(c->fd, SHUT_RDWR); /* the connection is still libmicrohttpd's */
            missed++;
        }
        pthread_mutex_unlock(&d->lock);
        if (missed > 0) {
            otp_log(OTP_LOG_WARN,
                    "event=slow_clients_closed connections=%u request_timeout_ms=%lld", missed,
                    (long long)d->request_ms);
        }
    }
    return NULL;
}

otp_http_deadlines *otp_http_deadlines_start(unsigned max_connections, int64_t idle_ms,
                                             int64_t request_ms)
{
    size_t n = (size_t)max_connections + 64; /* libmicrohttpd may briefly hold a few more */
    otp_http_deadlines *d = calloc(1, sizeof(*d) + n * sizeof(d->slots[0]));
    if (!d)
        return NULL;
    if (otp_stop_init(&d->stop) != 0) {
        free(d);
        return NULL;
    }
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        otp_stop_destroy(&d->stop);
        free(d);
        return NULL;
    }
    d->idle_ms = idle_ms;
    d->request_ms = request_ms;
    d->n = n;
    for (size_t i = n; i-- > 0;) {
        d->slots[i].fd = -1;
        atomic_init(&d->slots[i].until_ms, 0);
        d->slots[i].next_free = d->free_list;
        d->free_list = &d->slots[i];
    }
    if (pthread_create(&d->thread, NULL, watch, d) != 0) {
        otp_stop_destroy(&d->stop);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return NULL;
    }
    return d;
}

void otp_http_deadlines_stop(otp_http_deadlines *d)
{
    if (!d)
        return;
    otp_stop_signal(&d->stop);
    pthread_join(d->thread, NULL);
    otp_stop_destroy(&d->stop);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

otp_http_deadline *otp_http_deadline_open(otp_http_deadlines *d, int fd)
{
    pthread_mutex_lock(&d->lock);
    otp_http_deadline *c = d->free_list;
    if (c) {
        d->free_list = c->next_free;
        c->fd = fd;
        atomic_store(&c->until_ms, mono_ms() + d->idle_ms + d->request_ms);
    }
    pthread_mutex_unlock(&d->lock);
    return c;
}

void otp_http_deadline_close(otp_http_deadlines *d, otp_http_deadline *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&d->lock);
    c->fd = -1;
    atomic_store(&c->until_ms, 0);
    c->next_free = d->free_list;
    d->free_list = c;
    pthread_mutex_unlock(&d->lock);
}

void otp_http_deadline_request(otp_http_deadlines *d, otp_http_deadline *c)
{
    if (c)
        atomic_store_explicit(&c->until_ms, mono_ms() + d->request_ms, memory_order_relaxed);
}

bool otp_http_deadline_received(otp_http_deadline *c)
{
    return !c || atomic_exchange(&c->until_ms, 0) != REAPED;
}

void otp_http_deadline_answered(otp_http_deadlines *d, otp_http_deadline *c)
{
    if (c)
        atomic_store_explicit(&c->until_ms, mono_ms() + d->idle_ms + d->request_ms,
                              memory_order_relaxed);
}
