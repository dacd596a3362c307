/* util/stop.h — the stop signal of a background thread that sleeps between
 * rounds: otp_stop_wait_ms() sleeps up to a period and returns at once when
 * otp_stop_signal() is called, so stopping never waits for the period. The
 * condition variable runs on the monotonic clock: a change of the wall clock
 * neither shortens nor stretches a sleep.
 */
#ifndef OTP_UTIL_STOP_H
#define OTP_UTIL_STOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct otp_stop {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping; /* under lock */
} otp_stop;

/* 0, or -1 if the mutex or condition variable could not be made. */
int otp_stop_init(otp_stop *s);
/* Sleeps up to ms, or until stopped; returns whether it is stopping. */
bool otp_stop_wait_ms(otp_stop *s, int64_t ms);
/* Stops: the waiting thread (and every later wait) returns at once. */
void otp_stop_signal(otp_stop *s);
void otp_stop_destroy(otp_stop *s);

#endif
