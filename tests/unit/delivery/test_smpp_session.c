/* tests/unit/delivery/test_smpp_session.c — the SMPP session against a scripted
 * SMSC written here (a thread on a loopback socket): bind and bind refusal,
 * the window (never more than `window` submit_sm outstanding), throttling
 * (ESME_RTHROTTLED pauses and the part is submitted again), temporary and
 * permanent refusals, no response, the connection dropping mid-batch and the
 * reconnect, receipts mapped to messages (multi-part ones through the part
 * table) and answered after the sink, a receipt whose id the store does not
 * know yet retried, and unbind at stop. Over TLS (the SMSC then speaks TLS with
 * a self-signed certificate made here): bind, submits and receipts when the
 * certificate is trusted; no bind, the reason logged and the handshake retried
 * when it is not; and smpp_tls_new()'s refusals of a bad CA file. The transport
 * alone (smpp_conn.h) carries megabytes both ways over TLS through small socket
 * buffers, so that writes would block and are retried with more bytes appended,
 * as the session does (from another address too); and a host name is checked
 * against the certificate and sent as SNI, an IP address checked as one, a
 * server of TLS 1.1 at most refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "delivery/smpp_session.h"
#include "util/clock.h"
#include "util/log.h"

/* ---- The scripted SMSC --------------------------------------------------- */

/* What the SMSC thread observed, written under its lock. */
typedef struct smsc_seen {
    int connections;
    int binds;
    int submits; /* accepted */
    int throttled;
    int outstanding; /* submits read, not answered yet */
    int max_outstanding;
    int unbinds;
    int tls_refused; /* handshakes that failed */
    int64_t throttle_at_us, first_after_throttle_us;
    char ids[64][16]; /* message ids given, in order */
    uint8_t udh_seq[64];
    uint32_t receipt_resp[8]; /* deliver_sm_resp status per receipt seq 1.. */
    int receipt_resps;
} smsc_seen;

/* The SMSC: its script is set, and what it saw is read, under lock, which its
 * thread holds while it serves a PDU (SMSC_SET, smsc_seen_now). */
typedef struct smsc {
    int listen_fd;
    int port;
    SSL_CTX *tls; /* NULL: plain TCP */
    SSL *ssl;     /* the connection's, while it is served */
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock;
    /* script */
    uint32_t bind_status;
    int throttle_first;      /* answer this many submits with ESME_RTHROTTLED */
    uint32_t refuse_status;  /* answer every submit with this (0: accept) */
    int drop_after;          /* close the connection at this submit (0: never) */
    bool silent;             /* never answer submits */
    bool close_after_unbind; /* hang up right after the unbind_resp */
    /* observed: the test's thread reads a copy (smsc_seen_now) */
    smsc_seen seen;
    /* receipts to send: text ids */
    char pending[8][16];
    char pending_stat[8][8];
    int n_pending;
} smsc;

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Plain or TLS, blocking: what the connection's reads and writes go through. */
static ssize_t conn_write(smsc *m, int fd, const void *buf, size_t n)
{
    if (m->ssl) {
        size_t done = 0;
        return SSL_write_ex(m->ssl, buf, n, &done) == 1 ? (ssize_t)done : -1;
    }
    return send(fd, buf, n, MSG_NOSIGNAL);
}

static ssize_t conn_read(smsc *m, int fd, void *buf, size_t n)
{
    if (m->ssl) {
        size_t got = 0;
        return SSL_read_ex(m->ssl, buf, n, &got) == 1 ? (ssize_t)got : 0;
    }
    return read(fd, buf, n);
}

/* poll() for reading, counting the bytes TLS holds already as readable. */
static int conn_wait(smsc *m, int fd, int ms)
{
    if (m->ssl && SSL_pending(m->ssl) > 0)
        return 1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms);
}

static void send_header(smsc *m, int fd, uint32_t len, uint32_t id, uint32_t status, uint32_t seq,
                        const uint8_t *body, size_t blen)
{
    uint8_t buf[512];
    put32(buf, len);
    put32(buf + 4, id);
    put32(buf + 8, status);
    put32(buf + 12, seq);
    if (blen)
        memcpy(buf + 16, body, blen);
    ssize_t w = conn_write(m, fd, buf, 16 + blen);
    (void)w;
}

/* submit_sm answers are held until the session has nothing more to send, so
 * that `outstanding` counts what it sent without waiting for answers. */
typedef struct answer {
    uint32_t status, seq;
    char id[16];
} answer;

static void send_receipt(smsc *m, int fd, uint32_t seq, const char *id, const char *stat)
{
    uint8_t b[400];
    size_t o = 0;
    b[o++] = 0;
    b[o++] = 1;
    b[o++] = 1;
    memcpy(b + o, "919800000001", 13);
    o += 13;
    b[o++] = 5;
    b[o++] = 0;
    memcpy(b + o, "OTPD", 5);
    o += 5;
    const uint8_t mid[] = {0x04, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(b + o, mid, sizeof(mid));
    o += sizeof(mid);
    char text[200];
    int tl =
        snprintf(text, sizeof(text), "id:%s sub:001 dlvrd:001 stat:%s err:000 text:x", id, stat);
    b[o++] = (uint8_t)tl;
    memcpy(b + o, text, (size_t)tl);
    o += (size_t)tl;
    send_header(m, fd, (uint32_t)(16 + o), SMPP_DELIVER_SM, 0, seq, b, o);
}

static bool read_full(smsc *m, int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = conn_read(m, fd, buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* The UDH sequence number of a submit_sm body (0 if no UDH). */
static uint8_t udh_seq(const uint8_t *b, size_t len)
{
    size_t o = 0;
    while (o < len && b[o]) /* service_type */
        o++;
    o += 3;
    while (o < len && b[o])
        o++;
    o += 3;
    while (o < len && b[o])
        o++;
    o += 1;
    uint8_t esm = o < len ? b[o] : 0;
    o += 3 + 1 + 1 + 4;
    if (o + 7 > len || !(esm & 0x40))
        return 0;
    return b[o + 1 + 5]; /* sm_length, then 05 00 03 ref total seq */
}

static void serve_conn(smsc *m, int fd)
{
    uint32_t rseq = 1;
    answer held[64];
    int n_held = 0;
    for (;;) {
        pthread_mutex_lock(&m->lock);
        while (m->n_pending > 0) {
            m->n_pending--;
            send_receipt(m, fd, rseq++, m->pending[m->n_pending], m->pending_stat[m->n_pending]);
        }
        pthread_mutex_unlock(&m->lock);
        if (atomic_load(&m->stop))
            return;
        if (conn_wait(m, fd, 10) <= 0)
            continue;
        uint8_t h[16], body[1024];
        if (!read_full(m, fd, h, 16))
            return;
        uint32_t len = ntohl(*(uint32_t *)h), id = ntohl(*(uint32_t *)(h + 4));
        uint32_t status = ntohl(*(uint32_t *)(h + 8)), seq = ntohl(*(uint32_t *)(h + 12));
        (void)status;
        if (len < 16 || len - 16 > sizeof(body) || !read_full(m, fd, body, len - 16))
            return;
        pthread_mutex_lock(&m->lock);
        int64_t now = otp_mono_us();
        switch (id) {
        case SMPP_BIND_TRANSCEIVER:
            m->seen.binds++;
            if (m->bind_status) {
                send_header(m, fd, 16, SMPP_BIND_TRANSCEIVER_RESP, m->bind_status, seq, NULL, 0);
                pthread_mutex_unlock(&m->lock);
                return;
            }
            send_header(m, fd, 17 + 4, SMPP_BIND_TRANSCEIVER_RESP, 0, seq, (const uint8_t *)"smsc",
                        5);
            break;
        case SMPP_SUBMIT_SM: {
            if (m->drop_after && m->seen.submits + m->seen.throttled + 1 >= m->drop_after) {
                m->drop_after = 0;
                pthread_mutex_unlock(&m->lock);
                return;
            }
            if (m->seen.throttle_at_us && !m->seen.first_after_throttle_us)
                m->seen.first_after_throttle_us =
                    now; /* the first submit after a throttle answer */
            if (m->silent || n_held == 64)
                break;
            answer *a = &held[n_held++];
            m->seen.outstanding = n_held;
            if (m->seen.outstanding > m->seen.max_outstanding)
                m->seen.max_outstanding = m->seen.outstanding;
            *a = (answer){.seq = seq};
            if (m->seen.throttled < m->throttle_first) {
                m->seen.throttled++;
                a->status = SMPP_RTHROTTLED;
                break;
            }
            if (m->refuse_status) {
                a->status = m->refuse_status;
                break;
            }
            int k = m->seen.submits++;
            snprintf(a->id, sizeof(a->id), "m%d", k);
            if (k < 64) {
                snprintf(m->seen.ids[k], sizeof(m->seen.ids[k]), "%s", a->id);
                m->seen.udh_seq[k] = udh_seq(body, len - 16);
            }
            break;
        }
        case SMPP_ENQUIRE_LINK:
            send_header(m, fd, 16, SMPP_ENQUIRE_LINK_RESP, 0, seq, NULL, 0);
            break;
        case SMPP_UNBIND:
            m->seen.unbinds++;
            send_header(m, fd, 16, SMPP_UNBIND_RESP, 0, seq, NULL, 0);
            if (m->close_after_unbind) {
                pthread_mutex_unlock(&m->lock);
                return;
            }
            break;
        case SMPP_DELIVER_SM_RESP:
            if (seq >= 1 && seq <= 8) {
                m->seen.receipt_resp[seq - 1] = status;
                m->seen.receipt_resps++;
            }
            break;
        default:
            break;
        }
        if (n_held > 0 && conn_wait(m, fd, 2) == 0) {
            for (int i = 0; i < n_held; i++) {
                answer *a = &held[i];
                if (a->status == SMPP_RTHROTTLED && !m->seen.throttle_at_us)
                    m->seen.throttle_at_us = otp_mono_us();
                if (a->status)
                    send_header(m, fd, 16, SMPP_SUBMIT_SM_RESP, a->status, a->seq, NULL, 0);
                else
                    send_header(m, fd, (uint32_t)(16 + strlen(a->id) + 1), SMPP_SUBMIT_SM_RESP, 0,
                                a->seq, (const uint8_t *)a->id, strlen(a->id) + 1);
            }
            n_held = 0;
            m->seen.outstanding = 0;
        }
        pthread_mutex_unlock(&m->lock);
    }
}

static void *smsc_run(void *arg)
{
    smsc *m = arg;
    while (!atomic_load(&m->stop)) {
        struct pollfd p = {.fd = m->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(m->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&m->lock);
        m->seen.connections++;
        pthread_mutex_unlock(&m->lock);
        if (m->tls) {
            struct timeval tv = {.tv_sec = 2}; /* a stuck handshake must not hang the test */
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            m->ssl = SSL_new(m->tls);
            SSL_set_fd(m->ssl, fd);
            if (SSL_accept(m->ssl) != 1) {
                pthread_mutex_lock(&m->lock);
                m->seen.tls_refused++;
                pthread_mutex_unlock(&m->lock);
                SSL_free(m->ssl);
                m->ssl = NULL;
                close(fd);
                continue;
            }
        }
        serve_conn(m, fd);
        if (m->ssl) {
            SSL_shutdown(m->ssl);
            SSL_free(m->ssl);
            m->ssl = NULL;
        }
        close(fd);
    }
    return NULL;
}

/* tls: the server's TLS context (taken over), or NULL for plain TCP. */
static smsc *smsc_start_tls(SSL_CTX *tls)
{
    smsc *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->tls = tls;
    pthread_mutex_init(&m->lock, NULL);
    m->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(m->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(m->listen_fd, 4), 0);
    socklen_t al = sizeof(a);
    getsockname(m->listen_fd, (struct sockaddr *)&a, &al);
    m->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&m->thread, NULL, smsc_run, m), 0);
    return m;
}

static smsc *smsc_start(void)
{
    return smsc_start_tls(NULL);
}

static void smsc_stop(smsc *m)
{
    atomic_store(&m->stop, true);
    pthread_join(m->thread, NULL);
    close(m->listen_fd);
    SSL_CTX_free(m->tls);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* A copy of what the SMSC thread has seen so far. */
static smsc_seen smsc_seen_now(smsc *m)
{
    pthread_mutex_lock(&m->lock);
    smsc_seen seen = m->seen;
    pthread_mutex_unlock(&m->lock);
    return seen;
}

/* Sets a field of the SMSC's script from the test's thread (value must not
 * take the lock itself). */
#define SMSC_SET(m, field, value)                                                                  \
    do {                                                                                           \
        pthread_mutex_lock(&(m)->lock);                                                            \
        (m)->field = (value);                                                                      \
        pthread_mutex_unlock(&(m)->lock);                                                          \
    } while (0)

static void smsc_receipt(smsc *m, const char *id, const char *stat)
{
    pthread_mutex_lock(&m->lock);
    snprintf(m->pending[m->n_pending], sizeof(m->pending[0]), "%s", id);
    snprintf(m->pending_stat[m->n_pending], sizeof(m->pending_stat[0]), "%s", stat);
    m->n_pending++;
    pthread_mutex_unlock(&m->lock);
}

/* ---- Certificates ------------------------------------------------------- */

/* A self-signed P-256 certificate for 127.0.0.1 (IP SAN), valid for an hour. */
/* A self-signed certificate for the names san (e.g. "IP:127.0.0.1"). */
static X509 *make_cert_for(const char *san_names, EVP_PKEY **ret_key)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"smsc", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san_names);
    assert_non_null(san);
    X509_add_ext(x, san, -1);
    X509_EXTENSION_free(san);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    *ret_key = key;
    return x;
}

static X509 *make_cert(EVP_PKEY **ret_key)
{
    return make_cert_for("IP:127.0.0.1", ret_key);
}

/* Writes x as PEM to a new temporary file; its name goes to path. */
static void write_pem(X509 *x, char path[64])
{
    snprintf(path, 64, "/tmp/otpd-test-smpp-ca-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

/* A TLS server context serving certificate x with key. */
static SSL_CTX *server_ctx(X509 *x, EVP_PKEY *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    return ctx;
}

/* A TLS server context with a fresh certificate, whose PEM goes to ca_path. */
static SSL_CTX *server_tls(char ca_path[64])
{
    EVP_PKEY *key;
    X509 *x = make_cert(&key);
    SSL_CTX *ctx = server_ctx(x, key);
    write_pem(x, ca_path);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

/* ---- A fake sink --------------------------------------------------------- */

/* The reports the sink was given, written under its lock. */
typedef struct sink_seen {
    int calls;
    char ids[16][128];
    otp_dlr_status status[16];
} sink_seen;

typedef struct sink {
    pthread_mutex_t lock;
    sink_seen seen;     /* the test's thread reads a copy (sink_seen_now) */
    otp_err answer[16]; /* what call k returns (default OK); set before the session starts */
} sink;

static void sink_submit(void *ctx, otp_dlr *r)
{
    sink *s = ctx;
    pthread_mutex_lock(&s->lock);
    int k = s->seen.calls++;
    if (k < 16) {
        snprintf(s->seen.ids[k], sizeof(s->seen.ids[k]), "%s", r->provider_message_id);
        s->seen.status[k] = r->status;
        r->err = s->answer[k];
    } else {
        r->err = OTP_OK;
    }
    pthread_mutex_unlock(&s->lock);
    snprintf(r->message_id, sizeof(r->message_id), "msg_x");
    r->done(r); /* synchronously, as the store's OOM path does */
}

/* A copy of the reports the sink was given so far. */
static sink_seen sink_seen_now(sink *s)
{
    pthread_mutex_lock(&s->lock);
    sink_seen seen = s->seen;
    pthread_mutex_unlock(&s->lock);
    return seen;
}

/* ---- Helpers ------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L}, NULL);
}

#define WAIT_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        int waited_ = 0;                                                                           \
        while (!(cond) && waited_ < (ms)) {                                                        \
            sleep_ms(5);                                                                           \
            waited_ += 5;                                                                          \
        }                                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static smpp_config config(int port)
{
    smpp_config c = {
        .port = port,
        .window = 3,
        .enquire_link_ms = 30000,
        .response_timeout_ms = 500,
        .send_timeout_ms = 3000,
        .reconnect_min_ms = 20,
        .reconnect_max_ms = 100,
        .throttle_delay_ms = 100,
    };
    snprintf(c.host, sizeof(c.host), "127.0.0.1");
    snprintf(c.system_id, sizeof(c.system_id), "otpd");
    snprintf(c.password, sizeof(c.password), "secret");
    return c;
}

typedef struct batch {
    otp_sms_parts parts[40];
    smpp_msg msgs[40];
    size_t n;
} batch;

static batch *make_batch(size_t n, const char *text)
{
    batch *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(otp_sms_split(text, false, (uint8_t)i, &b->parts[i]), 0);
        b->msgs[i].parts = &b->parts[i];
        b->msgs[i].submit = (smpp_submit){.source_addr = "OTPD",
                                          .source_ton = 5,
                                          .dest_addr = "919800000001",
                                          .dest_ton = 1,
                                          .dest_npi = 1,
                                          .registered_delivery = 1};
    }
    return b;
}

typedef struct fx {
    smsc *m;
    sink snk;
    otp_dlr_sink dlr;
    smpp_session *s;
    smpp_tls *tls;
    char ca[64];    /* the SMSC's certificate (TLS fixtures) */
    char other[64]; /* another one */
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->m = smsc_start();
    pthread_mutex_init(&f->snk.lock, NULL);
    f->dlr = (otp_dlr_sink){.submit = sink_submit, .ctx = &f->snk};
    *state = f;
    return 0;
}

/* The SMSC speaks TLS with a certificate of its own (f->ca); f->other is
 * another certificate, which did not sign it. */
static int setup_tls(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->m = smsc_start_tls(server_tls(f->ca));
    EVP_PKEY *key;
    X509 *x = make_cert(&key);
    write_pem(x, f->other);
    X509_free(x);
    EVP_PKEY_free(key);
    pthread_mutex_init(&f->snk.lock, NULL);
    f->dlr = (otp_dlr_sink){.submit = sink_submit, .ctx = &f->snk};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    smpp_session_stop(f->s);
    smpp_tls_free(f->tls);
    if (f->ca[0])
        unlink(f->ca);
    if (f->other[0])
        unlink(f->other);
    smsc_stop(f->m);
    pthread_mutex_destroy(&f->snk.lock);
    free(f);
    return 0;
}

static void start(fx *f, smpp_config c)
{
    assert_int_equal(smpp_session_start(&c, "smsc", &f->dlr, &f->s), 0);
    WAIT_UNTIL(smpp_session_bound(f->s), 3000);
}

/* ---- Tests --------------------------------------------------------------- */

static void test_window_and_ids(void **state)
{
    fx *f = *state;
    start(f, config(f->m->port));
    batch *b = make_batch(25, "123456 is your code");
    smpp_session_send(f->s, b->msgs, b->n);
    smsc_seen seen = smsc_seen_now(f->m);
    for (size_t i = 0; i < b->n; i++) {
        assert_int_equal(b->msgs[i].outcome, OTP_SEND_ACCEPTED);
        assert_string_equal(b->msgs[i].message_id, seen.ids[i]);
    }
    assert_int_equal(seen.submits, 25);
    assert_int_equal(seen.max_outstanding, 3); /* the window, used and never exceeded */
    free(b);
}

static void test_throttle_pauses_and_resubmits(void **state)
{
    fx *f = *state;
    SMSC_SET(f->m, throttle_first, 2);
    start(f, config(f->m->port));
    batch *b = make_batch(4, "123456 is your code");
    smpp_session_send(f->s, b->msgs, b->n);
    for (size_t i = 0; i < b->n; i++)
        assert_int_equal(b->msgs[i].outcome, OTP_SEND_ACCEPTED);
    smsc_seen seen = smsc_seen_now(f->m);
    assert_int_equal(seen.throttled, 2);
    assert_int_equal(seen.submits, 4);
    assert_true(seen.first_after_throttle_us - seen.throttle_at_us >= 90 * 1000);
    free(b);
}

static void test_refusals(void **state)
{
    fx *f = *state;
    SMSC_SET(f->m, refuse_status, 0x0B); /* ESME_RINVDSTADR */
    start(f, config(f->m->port));
    batch *b = make_batch(2, "x");
    smpp_session_send(f->s, b->msgs, b->n);
    assert_int_equal(b->msgs[0].outcome, OTP_SEND_PERMANENT);
    assert_non_null(strstr(b->msgs[0].error, "ESME_RINVDSTADR"));
    SMSC_SET(f->m, refuse_status, 0x08); /* ESME_RSYSERR */
    smpp_session_send(f->s, b->msgs, b->n);
    assert_int_equal(b->msgs[1].outcome, OTP_SEND_TEMPORARY);
    assert_non_null(strstr(b->msgs[1].error, "ESME_RSYSERR"));
    free(b);
}

static void test_no_response_and_drop(void **state)
{
    fx *f = *state;
    start(f, config(f->m->port));
    SMSC_SET(f->m, silent, true);
    batch *b = make_batch(2, "x");
    int64_t t0 = otp_mono_us();
    smpp_session_send(f->s, b->msgs, b->n);
    assert_int_equal(b->msgs[0].outcome, OTP_SEND_TEMPORARY);
    assert_non_null(strstr(b->msgs[0].error, "no submit_sm_resp"));
    assert_true(otp_mono_us() - t0 >= 450 * 1000);
    SMSC_SET(f->m, silent, false);

    int submits = smsc_seen_now(f->m).submits;
    SMSC_SET(f->m, drop_after, submits + 2);
    smpp_session_send(f->s, b->msgs, b->n);
    assert_int_equal(b->msgs[1].outcome, OTP_SEND_TEMPORARY);
    assert_non_null(strstr(b->msgs[1].error, "connection lost"));
    WAIT_UNTIL(smpp_session_bound(f->s), 3000); /* reconnected */
    assert_true(smsc_seen_now(f->m).connections >= 2);
    smpp_session_send(f->s, b->msgs, b->n);
    assert_int_equal(b->msgs[0].outcome, OTP_SEND_ACCEPTED);
    free(b);
}

static void test_bind_refused(void **state)
{
    fx *f = *state;
    SMSC_SET(f->m, bind_status, 0x0E);
    smpp_config c = config(f->m->port);
    assert_int_equal(smpp_session_start(&c, "smsc", &f->dlr, &f->s), 0);
    WAIT_UNTIL(smsc_seen_now(f->m).binds >= 3, 3000); /* it keeps trying, with backoff */
    assert_false(smpp_session_bound(f->s));
    batch *b = make_batch(1, "x");
    smpp_session_send(f->s, b->msgs, b->n);
    assert_int_equal(b->msgs[0].outcome, OTP_SEND_TEMPORARY);
    assert_string_equal(b->msgs[0].error, "not bound to the SMSC");
    free(b);
}

static void test_receipts(void **state)
{
    fx *f = *state;
    f->snk.answer[1] = OTP_E_MESSAGE_NOT_FOUND; /* the second report: not known yet */
    f->snk.answer[3] = OTP_E_UNAVAILABLE;
    start(f, config(f->m->port));
    batch *b = make_batch(1, "x");
    smpp_session_send(f->s, b->msgs, b->n);
    assert_string_equal(b->msgs[0].message_id, "m0");

    smsc_receipt(f->m, "m0", "DELIVRD");
    WAIT_UNTIL(smsc_seen_now(f->m).receipt_resps == 1, 2000);
    assert_int_equal(smsc_seen_now(f->m).receipt_resp[0], 0);
    assert_int_equal(sink_seen_now(&f->snk).calls, 1);
    assert_string_equal(sink_seen_now(&f->snk).ids[0], "m0");
    assert_int_equal(sink_seen_now(&f->snk).status[0], OTP_DLR_DELIVERED);

    /* Unknown at first: acknowledged, then looked up again ~0.5 s later. */
    smsc_receipt(f->m, "m7", "UNDELIV");
    WAIT_UNTIL(smsc_seen_now(f->m).receipt_resps == 2, 2000);
    assert_int_equal(smsc_seen_now(f->m).receipt_resp[1], 0);
    WAIT_UNTIL(sink_seen_now(&f->snk).calls == 3, 3000);
    assert_string_equal(sink_seen_now(&f->snk).ids[2], "m7");
    assert_int_equal(sink_seen_now(&f->snk).status[2], OTP_DLR_UNDELIVERABLE);

    /* The store is down: ESME_RX_T_APPN, so the SMSC sends it again. */
    smsc_receipt(f->m, "m0", "REJECTD");
    WAIT_UNTIL(smsc_seen_now(f->m).receipt_resps == 3, 2000);
    assert_int_equal(smsc_seen_now(f->m).receipt_resp[2], SMPP_RX_T_APPN);

    /* An intermediate state is acknowledged and not reported. */
    smsc_receipt(f->m, "m0", "ENROUTE");
    WAIT_UNTIL(smsc_seen_now(f->m).receipt_resps == 4, 2000);
    assert_int_equal(sink_seen_now(&f->snk).calls, 4);
    free(b);
}

static void test_multipart_receipts(void **state)
{
    fx *f = *state;
    start(f, config(f->m->port));
    char text[200];
    memset(text, 'a', 199);
    text[199] = '\0';
    batch *b = make_batch(2, text);
    smpp_session_send(f->s, b->msgs, b->n);
    assert_int_equal(b->msgs[0].outcome, OTP_SEND_ACCEPTED);
    assert_int_equal(smsc_seen_now(f->m).submits, 4);
    /* Parts go out in order: m0 m1 are message 0, m2 m3 message 1. */
    assert_int_equal(smsc_seen_now(f->m).udh_seq[0], 1);
    assert_int_equal(smsc_seen_now(f->m).udh_seq[1], 2);
    assert_string_equal(b->msgs[0].message_id, "m0");
    assert_string_equal(b->msgs[1].message_id, "m2");

    smsc_receipt(f->m, "m1", "DELIVRD");
    WAIT_UNTIL(smsc_seen_now(f->m).receipt_resps == 1, 2000);
    assert_int_equal(sink_seen_now(&f->snk).calls, 0); /* part 2 of 2: not the message yet */
    smsc_receipt(f->m, "m0", "DELIVRD");
    WAIT_UNTIL(sink_seen_now(&f->snk).calls == 1, 2000);
    assert_string_equal(sink_seen_now(&f->snk).ids[0], "m0");
    assert_int_equal(sink_seen_now(&f->snk).status[0], OTP_DLR_DELIVERED);

    smsc_receipt(f->m, "m3", "UNDELIV"); /* one part failed: the message did */
    WAIT_UNTIL(sink_seen_now(&f->snk).calls == 2, 2000);
    assert_string_equal(sink_seen_now(&f->snk).ids[1], "m2");
    assert_int_equal(sink_seen_now(&f->snk).status[1], OTP_DLR_UNDELIVERABLE);
    smsc_receipt(f->m, "m2", "DELIVRD"); /* already reported */
    WAIT_UNTIL(smsc_seen_now(f->m).receipt_resps == 4, 2000);
    assert_int_equal(sink_seen_now(&f->snk).calls, 2);
    free(b);
}

static void test_unbind_at_stop(void **state)
{
    fx *f = *state;
    start(f, config(f->m->port));
    smpp_session_stop(f->s);
    f->s = NULL;
    assert_int_equal(smsc_seen_now(f->m).unbinds, 1);
}

/* The log lines written from log_capture() to log_captured(), which puts the
 * log back on stderr and returns them in text. */
static FILE *log_capture(void)
{
    FILE *log = tmpfile();
    assert_non_null(log);
    otp_log_setup(OTP_LOG_INFO, fileno(log));
    return log;
}

static void log_captured(FILE *log, char *text, size_t size)
{
    otp_log_setup(OTP_LOG_INFO, 2);
    rewind(log);
    size_t n = fread(text, 1, size - 1, log);
    text[n] = '\0';
    fclose(log);
}

/* An SMSC that hangs up right after its unbind_resp (node-smpp's does, after
 * 20 ms): the answer and the close come in one read, and the stop still logs
 * the clean unbind (it returned on the close without a word). */
static void test_unbind_then_close(void **state)
{
    fx *f = *state;
    SMSC_SET(f->m, close_after_unbind, true);
    FILE *log = log_capture();
    start(f, config(f->m->port));
    smpp_session_stop(f->s);
    f->s = NULL;
    char text[4096];
    log_captured(log, text, sizeof(text));
    assert_int_equal(smsc_seen_now(f->m).unbinds, 1);
    assert_non_null(strstr(text, "event=smpp_unbound provider=smsc"));
    assert_null(strstr(text, "event=smpp_disconnected"));
}

/* config() for the fake SMSC over TLS: f->tls made from ca (NULL: the system's
 * CAs) and verify. */
static smpp_config tls_config(fx *f, const char *ca, bool verify)
{
    char err[256];
    assert_int_equal(smpp_tls_new(ca, verify, &f->tls, err, sizeof(err)), 0);
    smpp_config c = config(f->m->port);
    c.tls = f->tls;
    return c;
}

static void test_tls_bind_send_receipt(void **state)
{
    fx *f = *state;
    smpp_config c = tls_config(f, f->ca, true);
    start(f, c);
    batch *b = make_batch(25, "123456 is your code");
    smpp_session_send(f->s, b->msgs, b->n);
    for (size_t i = 0; i < b->n; i++)
        assert_int_equal(b->msgs[i].outcome, OTP_SEND_ACCEPTED);
    assert_string_equal(b->msgs[24].message_id, "m24");
    assert_int_equal(smsc_seen_now(f->m).max_outstanding, 3);

    smsc_receipt(f->m, "m3", "DELIVRD");
    WAIT_UNTIL(smsc_seen_now(f->m).receipt_resps == 1, 2000);
    assert_int_equal(smsc_seen_now(f->m).receipt_resp[0], 0);
    assert_string_equal(sink_seen_now(&f->snk).ids[0], "m3");
    smpp_session_stop(f->s);
    f->s = NULL;
    assert_int_equal(smsc_seen_now(f->m).unbinds, 1);
    assert_int_equal(smsc_seen_now(f->m).tls_refused, 0);
    free(b);
}

static void test_tls_untrusted(void **state)
{
    fx *f = *state;
    smpp_config c = tls_config(f, f->other, true);
    FILE *log = log_capture();
    assert_int_equal(smpp_session_start(&c, "smsc", &f->dlr, &f->s), 0);
    WAIT_UNTIL(smsc_seen_now(f->m).tls_refused >= 3, 3000); /* refused, and tried again */
    assert_false(smpp_session_bound(f->s));
    assert_int_equal(smsc_seen_now(f->m).binds, 0);
    batch *b = make_batch(1, "x");
    smpp_session_send(f->s, b->msgs, b->n);
    assert_string_equal(b->msgs[0].error, "not bound to the SMSC");
    smpp_session_stop(f->s);
    f->s = NULL;
    char text[4096];
    log_captured(log, text, sizeof(text));
    /* "self-signed certificate" (OpenSSL 3; 1.1 spells it without the hyphen) */
    assert_non_null(strstr(text, "event=smpp_disconnected provider=smsc state=handshake "
                                 "reason=\"TLS handshake failed: certificate verification "
                                 "failed: self"));
    free(b);
}

static void test_tls_unverified(void **state)
{
    fx *f = *state;
    smpp_config c = tls_config(f, NULL, false);
    start(f, c);
    assert_int_equal(smsc_seen_now(f->m).tls_refused, 0);
}

static void test_tls_new_refusals(void **state)
{
    (void)state;
    char err[256], path[] = "/tmp/otpd-test-smpp-junk-XXXXXX";
    smpp_tls *t = NULL;
    assert_int_equal(smpp_tls_new("/nonexistent/ca.pem", true, &t, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot read it: No such file or directory");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    assert_int_equal(smpp_tls_new(path, true, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no PEM certificate could be loaded from it"));
    unlink(path);
    assert_null(t);
    assert_int_equal(smpp_tls_new("", true, &t, err, sizeof(err)), 0); /* the system's CAs */
    smpp_tls_free(t);
    smpp_tls_free(NULL);
}

/* ---- The transport alone: a TLS byte stream both ways ------------------- */

#define STREAM_BYTES (3u << 20)

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 31u + (i >> 9));
}

typedef struct peer {
    int listen_fd;
    SSL_CTX *ctx;
    size_t got;
    bool same;
} peer;

/* A loopback socket listening on a free port (receive buffer rcvbuf, 0: the
 * system's), its address in *ret. */
static int listen_loopback(int rcvbuf, struct sockaddr_in *ret)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    *ret = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)ret, sizeof(*ret)), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t al = sizeof(*ret);
    getsockname(fd, (struct sockaddr *)ret, &al);
    return fd;
}

/* A non-blocking socket connected to a (send buffer sndbuf, 0: the system's). */
static int connect_to(const struct sockaddr_in *a, int sndbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (sndbuf)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    assert_true(connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0 || errno == EINPROGRESS);
    struct pollfd q = {.fd = fd, .events = POLLOUT};
    assert_int_equal(poll(&q, 1, 2000), 1);
    return fd;
}

/* Runs c's TLS handshake to its end: 1 done, -1 failed (why). */
static int handshake_all(smpp_conn *c, char *why, size_t whylen)
{
    int r;
    while ((r = smpp_conn_handshake(c, why, whylen)) == 0) {
        struct pollfd q = {.fd = c->fd, .events = c->want};
        assert_int_equal(poll(&q, 1, 2000), 1);
    }
    return r;
}

/* The peer's side: one connection accepted on listen_fd, its TLS handshake
 * under ctx taken; *ret_ok says whether it succeeded. */
static SSL *accept_tls(int listen_fd, SSL_CTX *ctx, bool *ret_ok)
{
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, accept(listen_fd, NULL, NULL));
    *ret_ok = SSL_accept(ssl) == 1;
    return ssl;
}

/* Closes what accept_tls() opened. */
static void close_tls(SSL *ssl)
{
    int fd = SSL_get_fd(ssl);
    SSL_free(ssl);
    close(fd);
}

/* Reads the stream slowly (so the writer's socket fills up), checks it, sends
 * it back, and closes with close_notify. */
static void *peer_run(void *arg)
{
    peer *p = arg;
    bool ok;
    SSL *ssl = accept_tls(p->listen_fd, p->ctx, &ok);
    uint8_t buf[8192];
    if (ok) {
        p->same = true;
        while (p->got < STREAM_BYTES) {
            size_t n;
            if (SSL_read_ex(ssl, buf, sizeof(buf), &n) != 1)
                break;
            for (size_t i = 0; i < n; i++)
                p->same = p->same && buf[i] == pattern(p->got + i);
            p->got += n;
            if ((p->got & 0xFFFF) < n)
                sleep_ms(2);
        }
        for (size_t off = 0; off < STREAM_BYTES;) {
            size_t n = STREAM_BYTES - off < sizeof(buf) ? STREAM_BYTES - off : sizeof(buf), done;
            for (size_t i = 0; i < n; i++)
                buf[i] = pattern(off + i);
            if (SSL_write_ex(ssl, buf, n, &done) != 1)
                break;
            off += done;
        }
        SSL_shutdown(ssl);
    }
    close_tls(ssl);
    return NULL;
}

/* A peer that takes one TLS handshake, noting the name the client asked for
 * (SNI), and closes. */
typedef struct hs_peer {
    int listen_fd;
    SSL_CTX *ctx;
    char sni[64];
} hs_peer;

static void *hs_peer_run(void *arg)
{
    hs_peer *p = arg;
    bool ok;
    SSL *ssl = accept_tls(p->listen_fd, p->ctx, &ok);
    if (ok) {
        const char *n = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        snprintf(p->sni, sizeof(p->sni), "%s", n ? n : "");
        SSL_shutdown(ssl);
    }
    close_tls(ssl);
    return NULL;
}

/* One handshake with a peer serving ctx, as host: 1 done, -1 failed (why). */
static int handshake_as(SSL_CTX *ctx, const char *ca, const char *host, char *sni, char *why,
                        size_t whylen)
{
    hs_peer p = {.ctx = ctx};
    struct sockaddr_in a;
    p.listen_fd = listen_loopback(0, &a);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hs_peer_run, &p), 0);
    int fd = connect_to(&a, 0);
    smpp_tls *tls;
    assert_int_equal(smpp_tls_new(ca, true, &tls, why, whylen), 0);
    smpp_conn c;
    assert_int_equal(smpp_conn_open(&c, fd, tls, host, why, whylen), 0);
    int r = handshake_all(&c, why, whylen);
    smpp_conn_close(&c);
    pthread_join(t, NULL);
    close(p.listen_fd);
    smpp_tls_free(tls);
    snprintf(sni, 64, "%s", p.sni);
    return r;
}

/* A host name is checked against the certificate's names and sent as SNI; an
 * IP address is checked as one and sends no SNI; a server that speaks no more
 * than TLS 1.1 is refused. */
static void test_tls_host_names(void **state)
{
    (void)state;
    char ca[64], why[256], sni[64];
    EVP_PKEY *key;
    X509 *x = make_cert_for("DNS:smsc.test", &key);
    SSL_CTX *ctx = server_ctx(x, key);
    write_pem(x, ca);

    assert_int_equal(handshake_as(ctx, ca, "smsc.test", sni, why, sizeof(why)), 1);
    assert_string_equal(sni, "smsc.test");
    assert_int_equal(handshake_as(ctx, ca, "other.test", sni, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "hostname mismatch"));
    assert_int_equal(handshake_as(ctx, ca, "sub.smsc.test", sni, why, sizeof(why)), -1);
    assert_int_equal(handshake_as(ctx, ca, "127.0.0.1", sni, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "IP address mismatch"));

    SSL_CTX *old = server_ctx(x, key);
    SSL_CTX_set_security_level(old, 0);
    SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
    assert_int_equal(handshake_as(old, ca, "smsc.test", sni, why, sizeof(why)), -1);
    assert_string_equal(sni, ""); /* no handshake completed */

    SSL_CTX_free(old);
    SSL_CTX_free(ctx);
    X509_free(x);
    EVP_PKEY_free(key);
    unlink(ca);
}

static void test_tls_conn_stream(void **state)
{
    (void)state;
    char ca[64], why[256];
    peer p = {.ctx = server_tls(ca)};
    enum { SMALL = 4096 }; /* socket buffers, so that writes block */
    struct sockaddr_in a;
    p.listen_fd = listen_loopback(SMALL, &a);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, peer_run, &p), 0);

    int fd = connect_to(&a, SMALL);
    struct pollfd q;
    smpp_tls *tls;
    assert_int_equal(smpp_tls_new(ca, true, &tls, why, sizeof(why)), 0);
    smpp_conn c;
    assert_int_equal(smpp_conn_open(&c, fd, tls, "127.0.0.1", why, sizeof(why)), 0);
    assert_int_equal(handshake_all(&c, why, sizeof(why)), 1);
    assert_non_null(smpp_conn_tls_version(&c));

    /* Write as the session does: a buffer appended to in uneven chunks, the
     * unsent bytes moved to its start after each write. */
    enum { CAP = 256 * 1024 };
    uint8_t *bufs[2] = {malloc(CAP), malloc(CAP)};
    assert_non_null(bufs[0]);
    assert_non_null(bufs[1]);
    uint8_t *buf = bufs[0];
    size_t len = 0, made = 0, sent = 0;
    int blocked = 0;
    while (sent < STREAM_BYTES) {
        while (made < STREAM_BYTES && len + 7000 <= CAP) {
            size_t n = 7000 - made % 1000;
            if (n > STREAM_BYTES - made)
                n = STREAM_BYTES - made;
            for (size_t i = 0; i < n; i++)
                buf[len + i] = pattern(made + i);
            len += n;
            made += n;
        }
        ssize_t w = smpp_conn_write(&c, buf, len, why, sizeof(why));
        assert_true(w >= 0);
        if (w == 0) {
            blocked++;
            /* the retry passes the same bytes from another address, as the
             * session's may after its memmove (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) */
            uint8_t *other = buf == bufs[0] ? bufs[1] : bufs[0];
            memcpy(other, buf, len);
            buf = other;
            q = (struct pollfd){.fd = fd, .events = c.write_wants_read ? POLLIN : POLLOUT};
            assert_int_equal(poll(&q, 1, 2000), 1);
            continue;
        }
        memmove(buf, buf + w, len - (size_t)w);
        len -= (size_t)w;
        sent += (size_t)w;
    }
    assert_true(blocked > 0); /* the retry path ran */

    /* Read until it would block, then poll: nothing may wait inside TLS. */
    size_t got = 0;
    bool same = true;
    for (;;) {
        ssize_t n = smpp_conn_read(&c, buf, 5000, why, sizeof(why));
        if (n < 0)
            break;
        if (n == 0) {
            q = (struct pollfd){.fd = fd, .events = c.read_wants_write ? POLLOUT : POLLIN};
            assert_int_equal(poll(&q, 1, 2000), 1);
            continue;
        }
        for (ssize_t i = 0; i < n; i++)
            same = same && buf[i] == pattern(got + (size_t)i);
        got += (size_t)n;
    }
    assert_string_equal(why, "closed by the SMSC (TLS close_notify)");
    assert_int_equal(got, STREAM_BYTES);
    assert_true(same);
    pthread_join(t, NULL);
    assert_int_equal(p.got, STREAM_BYTES);
    assert_true(p.same);

    smpp_conn_close(&c);
    assert_int_equal(c.fd, -1);
    smpp_conn_close(&c); /* closed already: nothing happens */
    smpp_tls_free(tls);
    SSL_CTX_free(p.ctx);
    close(p.listen_fd);
    unlink(ca);
    free(bufs[0]);
    free(bufs[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as otpd does: OpenSSL writes with write(2) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_window_and_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttle_pauses_and_resubmits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_response_and_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_receipts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unbind_at_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unbind_then_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_bind_send_receipt, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_untrusted, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_unverified, setup_tls, teardown),
        cmocka_unit_test(test_tls_new_refusals),
        cmocka_unit_test(test_tls_conn_stream),
        cmocka_unit_test(test_tls_host_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
