/* delivery/smpp_conn.c — the SMPP session's transport; see smpp_conn.h.
 *
 * Plain TCP is read(2) and send(2). TLS is OpenSSL on the same non-blocking
 * socket: SSL_connect, SSL_read_ex and SSL_write_ex, whose WANT_READ and
 * WANT_WRITE become "would block". Writes run in partial-write mode with a
 * buffer that may move between retries, which is what the session's write
 * buffer does (it only ever appends after bytes a retry has to send again).
 * OpenSSL's error queue is per thread and cleared before every call, so a
 * reason read from it belongs to the call that failed.
 */
#include "delivery/smpp_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct smpp_tls {
    SSL_CTX *ctx;
    bool verify;
};

/* OpenSSL's reason for the oldest error queued (or `fallback`), then clears. */
static const char *ossl_reason(const char *fallback)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : fallback;
}

int smpp_tls_new(const char *ca_file, bool verify, smpp_tls **ret, char *err, size_t errlen)
{
    smpp_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->verify = verify;
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx || SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1) {
        snprintf(err, errlen, "cannot make a TLS context: %s", ossl_reason("out of memory"));
        goto fail;
    }
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
#ifdef SSL_OP_CLEANSE_PLAINTEXT
    /* Receipts quote the start of the text, the code: wipe OpenSSL's copy. */
    SSL_CTX_set_options(t->ctx, SSL_OP_CLEANSE_PLAINTEXT);
#endif
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(t->ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (ca_file && *ca_file) {
        FILE *f = fopen(ca_file, "r");
        if (!f) {
            snprintf(err, errlen, "cannot read it: %s", strerror(errno));
            goto fail;
        }
        fclose(f);
        if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1) {
            snprintf(err, errlen, "no PEM certificate could be loaded from it (%s)",
                     ossl_reason("unknown error"));
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        snprintf(err, errlen, "cannot load the system's CA certificates: %s",
                 ossl_reason("unknown error"));
        goto fail;
    }
    *ret = t;
    return 0;
fail:
    smpp_tls_free(t);
    return -1;
}

void smpp_tls_free(smpp_tls *tls)
{
    if (!tls)
        return;
    SSL_CTX_free(tls->ctx);
    free(tls);
}

int smpp_conn_open(smpp_conn *c, int fd, smpp_tls *tls, const char *host, char *why, size_t whylen)
{
    *c = (smpp_conn){.fd = fd, .want = POLLOUT};
    if (!tls)
        return 0;
    ERR_clear_error();
    unsigned char addr[sizeof(struct in6_addr)];
    bool ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    SSL *ssl = SSL_new(tls->ctx);
    bool ok = ssl && SSL_set_fd(ssl, fd) == 1;
    /* SNI carries host names only (RFC 6066); the name check takes either. */
    if (ok && !ip)
        ok = SSL_set_tlsext_host_name(ssl, host) == 1;
    if (ok && tls->verify && ip)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    if (ok && tls->verify && !ip) {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set1_host(ssl, host) == 1;
    }
    if (!ok) {
        snprintf(why, whylen, "cannot set up TLS: %s", ossl_reason("out of memory"));
        SSL_free(ssl);
        close(fd);
        *c = SMPP_CONN_CLOSED;
        return -1;
    }
    SSL_set_connect_state(ssl);
    c->ssl = ssl;
    return 0;
}

/* Words for a failed TLS call (SSL_get_error() gave e); marks c broken. */
static void tls_failed(smpp_conn *c, int e, const char *what, char *why, size_t whylen)
{
    int saved = errno;
    c->broken = true;
    long v = SSL_get_verify_result(c->ssl);
    bool verifying = SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER;
    if (e == SSL_ERROR_SSL && !c->handshake_done && verifying && v != X509_V_OK) {
        snprintf(why, whylen, "%s: certificate verification failed: %s", what,
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
        return;
    }
    unsigned long code = ERR_peek_error();
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    if (e == SSL_ERROR_SSL && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        snprintf(why, whylen, "%s: closed by the SMSC", what);
        ERR_clear_error();
        return;
    }
#endif
    if (e == SSL_ERROR_SYSCALL && !code)
        snprintf(why, whylen, "%s: %s", what, saved ? strerror(saved) : "closed by the SMSC");
    else
        snprintf(why, whylen, "%s: %s", what, ossl_reason("unknown error"));
    ERR_clear_error();
}

int smpp_conn_handshake(smpp_conn *c, char *why, size_t whylen)
{
    if (!c->ssl || c->handshake_done)
        return 1;
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        c->handshake_done = true;
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return 0;
    }
    tls_failed(c, e, "TLS handshake failed", why, whylen);
    return -1;
}

/* After a failed read(2) or send(2) on the plain socket: 1 to try again
 * (EINTR), 0 when it would block, -1 with why. */
static int plain_failed(char *why, size_t whylen)
{
    if (errno == EINTR)
        return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    snprintf(why, whylen, "%s", strerror(errno));
    return -1;
}

ssize_t smpp_conn_read(smpp_conn *c, void *buf, size_t n, char *why, size_t whylen)
{
    if (!c->ssl) {
        for (;;) {
            ssize_t r = read(c->fd, buf, n);
            if (r > 0)
                return r;
            if (r == 0) {
                snprintf(why, whylen, "closed by the SMSC");
                return -1;
            }
            int f = plain_failed(why, whylen);
            if (f <= 0)
                return f;
        }
    }
    c->read_wants_write = false;
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_read_ex(c->ssl, buf, n, &got) == 1)
        return (ssize_t)got;
    int e = SSL_get_error(c->ssl, 0);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_WANT_WRITE:
        c->read_wants_write = true;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        snprintf(why, whylen, "closed by the SMSC (TLS close_notify)");
        return -1;
    default:
        tls_failed(c, e, "TLS read", why, whylen);
        return -1;
    }
}

ssize_t smpp_conn_write(smpp_conn *c, const void *buf, size_t n, char *why, size_t whylen)
{
    if (!c->ssl) {
        for (;;) {
            ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);
            if (w >= 0)
                return w;
            int f = plain_failed(why, whylen);
            if (f <= 0)
                return f;
        }
    }
    size_t done = 0;
    c->write_wants_read = false;
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(c->ssl, buf, n, &done) == 1)
        return (ssize_t)done;
    int e = SSL_get_error(c->ssl, 0);
    if (e == SSL_ERROR_WANT_READ)
        c->write_wants_read = true;
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
        return 0;
    tls_failed(c, e, "TLS write", why, whylen);
    return -1;
}

const char *smpp_conn_tls_version(const smpp_conn *c)
{
    return c->ssl && c->handshake_done ? SSL_get_version(c->ssl) : NULL;
}

void smpp_conn_close(smpp_conn *c)
{
    if (c->ssl) {
        if (c->handshake_done && !c->broken) {
            ERR_clear_error();
            SSL_shutdown(c->ssl); /* one try: close_notify if the socket takes it */
        }
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    if (c->fd >= 0)
        close(c->fd);
    *c = SMPP_CONN_CLOSED;
}
