/* delivery/smpp_conn.h — the SMPP session's transport: one non-blocking
 * connection, plain TCP or TLS (OpenSSL), behind four calls the session makes
 * the same way for both (handshake, read, write, close).
 *
 * smpp_tls is a provider's TLS configuration (one SSL_CTX): TLS 1.2 at least,
 * no renegotiation, and unless verification is off the SMSC's certificate must
 * chain to the system's CAs (or to those of ca_file instead) and name the
 * configured host (checked as an IP address when host is one; a host name also
 * goes as SNI). smpp_conn is one connection on a socket whose TCP connect has
 * completed. Every call returns at once: when OpenSSL needs the socket to be
 * readable or writable first, the call says "would block" and `want` / the
 * read_wants_write and write_wants_read flags tell the session which poll()
 * event to wait for.
 *
 * The caller must ignore SIGPIPE: OpenSSL writes to the socket with write(2),
 * not send(MSG_NOSIGNAL) (otpd ignores it in main()).
 *
 * Nothing here logs: failures come back as text in why, for the session's log.
 */
#ifndef OTP_DELIVERY_SMPP_CONN_H
#define OTP_DELIVERY_SMPP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct smpp_tls smpp_tls;
struct ssl_st;

/* Makes the TLS configuration. ca_file: a PEM file of CAs to trust instead of
 * the system's ("" or NULL: the system's); verify false accepts any certificate
 * (for tests only). Returns 0 and *ret, or -1 with a reason in err (which names
 * no setting: the caller knows which one it was). */
int smpp_tls_new(const char *ca_file, bool verify, smpp_tls **ret, char *err, size_t errlen);
/* Accepts NULL. */
void smpp_tls_free(smpp_tls *tls);

typedef struct smpp_conn {
    int fd;                /* -1: closed */
    struct ssl_st *ssl;    /* NULL: plain TCP */
    short want;            /* POLLIN or POLLOUT: what the handshake waits for */
    bool read_wants_write; /* the last TLS read would block until writable */
    bool write_wants_read; /* the last TLS write would block until readable */
    bool handshake_done;   /* (TLS) */
    bool broken;           /* a fatal TLS error: no close_notify at close */
} smpp_conn;

#define SMPP_CONN_CLOSED ((smpp_conn){.fd = -1})

/* Takes fd (connected, non-blocking). With tls (may be NULL: plain TCP) the
 * handshake to host is then to be run by smpp_conn_handshake(). Returns 0, or
 * -1 with why (fd is closed then). */
int smpp_conn_open(smpp_conn *c, int fd, smpp_tls *tls, const char *host, char *why, size_t whylen);
/* Runs the TLS handshake as far as it goes. Returns 1 when it is done (at once
 * for plain TCP), 0 when it waits for c->want, -1 when it failed (why: what,
 * e.g. the certificate's verification error). */
int smpp_conn_handshake(smpp_conn *c, char *why, size_t whylen);
/* Reads up to n bytes. Returns how many, 0 when nothing is there now, or -1
 * when the connection ended or failed (why). Call it until it returns 0 before
 * waiting in poll(): TLS may hold decrypted bytes the socket no longer shows. */
ssize_t smpp_conn_read(smpp_conn *c, void *buf, size_t n, char *why, size_t whylen);
/* Writes up to n bytes. Returns how many, 0 when the socket takes nothing now,
 * or -1 (why). After a 0, the next call must pass the same bytes again (more
 * may follow them; the buffer may have moved). */
ssize_t smpp_conn_write(smpp_conn *c, const void *buf, size_t n, char *why, size_t whylen);
/* "TLSv1.3" etc. once the handshake is done; NULL for plain TCP. */
const char *smpp_conn_tls_version(const smpp_conn *c);
/* Sends close_notify when it can (without waiting), frees the TLS state and
 * closes the socket. Accepts a closed connection; leaves it closed. */
void smpp_conn_close(smpp_conn *c);

#endif
