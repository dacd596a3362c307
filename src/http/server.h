/* http/server.h — the HTTP server: libmicrohttpd in poll mode with a thread pool.
 *
 * Poll + thread pool because MEASURED.md found libmicrohttpd 0.9.75's epoll mode
 * stalling at >= 128 keep-alive connections. Every user-controlled resource has
 * a limit: connections (total and per IP), per-connection memory (which bounds
 * the request head), body size, idle time, and the time to send a request.
 */
#ifndef OTP_HTTP_SERVER_H
#define OTP_HTTP_SERVER_H

#include <stddef.h>

#include "http/http.h"

typedef struct otp_http_server otp_http_server;

typedef struct otp_http_options {
    const char *listen; /* "127.0.0.1:8080", "[::1]:8080", ":8080" */
    unsigned threads;   /* worker threads */
    unsigned max_connections;
    unsigned max_connections_per_ip; /* 0 = unlimited */
    unsigned connection_timeout_s;   /* idle */
    unsigned request_timeout_s;      /* to send a whole request (deadline.h) */
    size_t max_body;
    size_t max_header;
} otp_http_options;

/* Starts serving routes (the table must outlive the server); app is passed to
 * every handler. Returns 0, or -1 with a reason in err. */
int otp_http_start(const otp_http_options *opt, const otp_route *routes, size_t nroutes, void *app,
                   otp_http_server **ret, char *err, size_t errlen);
/* Stops accepting connections; requests in flight go on, and new requests on
 * kept-alive connections are answered 503 with Connection: close. */
void otp_http_quiesce(otp_http_server *s);
/* Requests received but not yet answered (including parked ones). */
long otp_http_inflight(otp_http_server *s);
/* Requests parked (otp_http_suspend) and not yet resumed: a read thread or a
 * store txn still holds each, and may write to it. otp_http_resume() counts
 * one off only after libmicrohttpd has it back, so the count can trail
 * otp_http_inflight() by a moment: 0 for both means no thread holds any. */
long otp_http_parked(otp_http_server *s);
/* Stops the server (after quiesce and in-flight draining) and frees every
 * request still open: never call it while otp_http_parked() > 0. Accepts NULL. */
void otp_http_stop(otp_http_server *s);

#endif
