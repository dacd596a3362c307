/* http/deadline.h — a deadline for each request to arrive whole, so that slow
 * clients cannot hold the server (SPEC 7, "Limits").
 *
 * libmicrohttpd's connection timeout counts idle time only: a client that sends
 * one byte of its request head every few seconds stays connected for as long as
 * it likes, and enough of them fill every connection slot. Here each connection
 * gets a deadline: when it opens or finishes a request, the idle timeout plus the
 * request timeout (to start and send its next request); when a request line
 * arrives, the request timeout (to send the rest of the head and the body); none
 * while its request is being handled. A thread looks at the deadlines every
 * quarter second and shuts down the socket of a connection past its own
 * (libmicrohttpd then sees the end of the stream and closes it as usual).
 *
 * The slots live in one table under one lock, which the closing of a connection
 * takes too, so a socket is only ever shut down while libmicrohttpd still owns
 * it (never after its number was reused).
 */
#ifndef OTP_HTTP_DEADLINE_H
#define OTP_HTTP_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct otp_http_deadlines otp_http_deadlines;
typedef struct otp_http_deadline otp_http_deadline; /* one connection's */

/* Up to max_connections connections; idle_ms is libmicrohttpd's connection
 * timeout, request_ms the time a request may take to arrive. Starts the
 * watching thread. NULL if out of memory or no thread. */
otp_http_deadlines *otp_http_deadlines_start(unsigned max_connections, int64_t idle_ms,
                                             int64_t request_ms);
/* Stops the thread and frees the table (after the server has stopped). */
void otp_http_deadlines_stop(otp_http_deadlines *d);

/* A connection opened on socket fd: its slot (NULL if the table is full: then
 * it has no deadline), with the deadline to start a request. */
otp_http_deadline *otp_http_deadline_open(otp_http_deadlines *d, int fd);
/* The connection is closing: its slot goes back. Accepts NULL. */
void otp_http_deadline_close(otp_http_deadlines *d, otp_http_deadline *c);
/* A request line arrived: the rest of the request within request_ms. */
void otp_http_deadline_request(otp_http_deadlines *d, otp_http_deadline *c);
/* The request arrived whole: no deadline while it is handled. False if the
 * watcher is cutting the connection off at this very moment: the request must
 * then not be handled (its answer could not be sent). */
bool otp_http_deadline_received(otp_http_deadline *c);
/* The request was answered: the next one may take idle_ms + request_ms. */
void otp_http_deadline_answered(otp_http_deadlines *d, otp_http_deadline *c);

#endif
