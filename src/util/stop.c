/* util/stop.c — a background thread's stop signal; see stop.h. */
#include "util/stop.h"

#include <errno.h>
#include <time.h>

int otp_stop_init(otp_stop *s)
{
    s->stopping = false;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    bool cond_ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
                   pthread_cond_init(&s->cond, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (!cond_ok)
        return -1;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        pthread_cond_destroy(&s->cond);
        return -1;
    }
    return 0;
}

bool otp_stop_wait_ms(otp_stop *s, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        int rc = pthread_cond_timedwait(&s->cond, &s->lock, &until);
        if (rc != 0 && rc != EINTR) /* ETIMEDOUT, or a clock error: do not spin */
            break;
    }
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->lock);
    return stopping;
}

void otp_stop_signal(otp_stop *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void otp_stop_destroy(otp_stop *s)
{
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
}
