/* tests/unit/store/test_store_postgres.c — the PostgreSQL backend: the same
 * conformance suite as SQLite's, then what is particular to PostgreSQL: URLs
 * and errors that never show a password, nodes migrating at the same moment,
 * several stores ("nodes") on one database sharing the outbox without taking
 * the same message twice and taking over a dead node's leases, one idempotency
 * key (and one credit reference) used by two nodes at once, the unique index
 * behind a credit's reference, the upgrade of a version-6 database, the claim
 * and the key lookup served by their indexes, and the pool surviving
 * connections the server drops.
 *
 * Needs a server: OTPD_TEST_PG_URL names a database the tests may create
 * schemas in (scripts/test.sh starts a throwaway cluster and sets it). Without
 * it the program exits 77, which Meson counts as skipped. Every fresh database
 * of the suite is a schema of its own (named by search_path in the URL's
 * options), dropped at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "conformance.h"
#include "store/postgres_internal.h"

#define T0 INT64_C(1700000000000)

static const char *base_url;
static unsigned schemas; /* schemas made so far: t<pid>_0 … */

/* ---- the backend description ---- */

static void schema_name(unsigned i, char *out, size_t n)
{
    snprintf(out, n, "t%ld_%u", (long)getpid(), i);
}

static void url_of(const char *schema, char *url, size_t n)
{
    snprintf(url, n, "%s%soptions=-csearch_path%%3D%s", base_url, strchr(base_url, '?') ? "&" : "?",
             schema);
}

static PGconn *raw_open(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        print_error("connect: %s\n", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

static int raw_exec(const char *url, const char *sql)
{
    PGconn *c = raw_open(url);
    if (!c)
        return -1;
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        print_error("raw_exec %s: %s\n", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* The first column of the first row as text into out; 0 on success. */
static int raw_text(const char *url, const char *sql, char *out, size_t n)
{
    PGconn *c = raw_open(url);
    if (!c)
        return -1;
    PGresult *r = PQexec(c, sql);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
        snprintf(out, n, "%s", PQgetvalue(r, 0, 0));
        rc = 0;
    } else {
        print_error("raw_text %s: %s\n", sql, PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

static int64_t raw_int(const char *url, const char *sql)
{
    char v[64];
    if (raw_text(url, sql, v, sizeof(v)))
        return INT64_MIN;
    /* booleans read as 0/1 like SQLite's */
    if (strcmp(v, "t") == 0)
        return 1;
    if (strcmp(v, "f") == 0)
        return 0;
    return strtoll(v, NULL, 10);
}

static void fresh_url(char *url, size_t n)
{
    char schema[64], sql[128];
    schema_name(schemas++, schema, sizeof(schema));
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
    if (raw_exec(base_url, sql))
        fail_msg("cannot create schema %s", schema);
    url_of(schema, url, n);
}

static const store_backend postgres_backend = {
    .name = "store_conformance_postgres",
    .fresh_url = fresh_url,
    .raw_exec = raw_exec,
    .raw_int = raw_int,
#if OTPD_TEST_HOOKS
    .pause = otp_postgres_test_pause,
#endif
    /* No fail_commits: each txn commits alone, there is no batch to lose. */
};

/* ---- helpers of the PostgreSQL-specific tests ---- */

static otp_store *open_migrated(const char *url, int pool)
{
    otp_store_options opt = {.migrate = true, .pool_size = pool};
    otp_store *s = NULL;
    char err[256] = "";
    if (otp_store_open(url, &opt, &s, err, sizeof(err)) != 0)
        print_error("open: %s\n", err);
    assert_non_null(s);
    return s;
}

static void new_id(const char *prefix, char out[OTP_ID_SIZE])
{
    static unsigned n;
    snprintf(out, OTP_ID_SIZE, "%.4s%022u", prefix, __atomic_fetch_add(&n, 1, __ATOMIC_RELAXED));
}

/* An account with balance credit and a live key; returns its id. */
static int64_t account_with(otp_store *s, const char *name, int64_t credit, int64_t *ret_key)
{
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_CREATE};
    new_id("acc_", t.u.account_create.public_id);
    snprintf(t.u.account_create.name, OTP_NAME_SIZE, "%s", name);
    t.u.account_create.now_ms = T0;
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    int64_t acc = t.u.account_create.ret_id;
    memset(&t, 0, sizeof(t));
    t.kind = OTP_TXN_KEY_CREATE;
    t.u.key_create.account_id = acc;
    new_id("key_", t.u.key_create.public_id);
    memset(t.u.key_create.hash, (int)(acc & 0xff), OTP_APIKEY_HASH_LEN);
    snprintf(t.u.key_create.prefix, sizeof(t.u.key_create.prefix), "otpd_live_ab");
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    if (ret_key) {
        otp_key_auth a;
        assert_int_equal(s->ops->key_lookup(s, t.u.key_create.hash, &a), OTP_OK);
        *ret_key = a.key_id;
    }
    if (credit > 0) {
        memset(&t, 0, sizeof(t));
        t.kind = OTP_TXN_WALLET_CREDIT;
        t.u.wallet_credit.account_id = acc;
        t.u.wallet_credit.amount = credit;
        t.u.wallet_credit.now_ms = T0;
        assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    }
    return acc;
}

static const uint8_t text[] = "sealed text";

static void make_send(otp_txn *t, int64_t acc, int64_t key, int64_t now)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_SEND;
    otp_txn_send *x = &t->u.send;
    x->account_id = acc;
    x->key_id = key;
    new_id("req_", x->request_id);
    new_id("msg_", x->message_id);
    snprintf(x->phone, sizeof(x->phone), "+919876543210");
    memset(x->code_hash, 0xAA, sizeof(x->code_hash));
    x->code_length = 6;
    x->max_attempts = 3;
    x->expires_in_s = 600;
    x->now_ms = now;
    x->expires_at_ms = now + 600000;
    x->segments = 1;
    x->sealed_text = text;
    x->sealed_text_len = sizeof(text) - 1;
}

/* ---- PostgreSQL-specific tests ---- */

static void t_urls_and_errors(void **state)
{
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *s = open_migrated(url, 2);
    assert_string_equal(s->ops->name, "postgres");
    otp_store_close(s);

    /* postgresql:// is the same backend */
    char alt[700];
    assert_int_equal(strncmp(url, "postgres://", 11), 0);
    snprintf(alt, sizeof(alt), "postgresql://%s", url + 11);
    s = open_migrated(alt, 1);
    assert_int_equal(s->ops->schema_version(s), OTP_SCHEMA_VERSION);
    otp_store_close(s);

    /* a refused connection names the problem, never the password */
    otp_store_options opt = {.migrate = true};
    char err[256] = "";
    s = NULL;
    assert_int_equal(
        otp_store_open("postgres://otpd:s3cr3t-pw@127.0.0.1:1/otpd", &opt, &s, err, sizeof(err)),
        -1);
    assert_null(s);
    assert_non_null(strstr(err, "cannot connect to PostgreSQL"));
    assert_null(strstr(err, "s3cr3t-pw"));
}

typedef struct opener {
    const char *url;
    pthread_barrier_t *start;
    otp_store *s;
    char err[256];
} opener;

static void *opener_main(void *arg)
{
    opener *o = arg;
    otp_store_options opt = {.migrate = true, .pool_size = 1};
    pthread_barrier_wait(o->start);
    if (otp_store_open(o->url, &opt, &o->s, o->err, sizeof(o->err)) != 0)
        o->s = NULL;
    return NULL;
}

/* Nodes starting together on an empty database: one migrates, the others wait
 * on the advisory lock and find nothing left to do. */
static void t_migrations_race(void **state)
{
    enum { N = 6 };
    char url[600];
    fresh_url(url, sizeof(url));
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    pthread_t th[N];
    opener o[N];
    for (int i = 0; i < N; i++) {
        o[i] = (opener){.url = url, .start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, opener_main, &o[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (!o[i].s)
            print_error("node %d: %s\n", i, o[i].err);
        assert_non_null(o[i].s);
        otp_store_close(o[i].s);
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(raw_int(url, "SELECT count(*) FROM schema_migrations"), OTP_SCHEMA_VERSION);
}

typedef struct claimer {
    otp_store *s;
    int64_t now;
    int64_t *ids; /* what this node claimed */
    size_t n, cap;
    pthread_barrier_t *start;
} claimer;

static void *claimer_main(void *arg)
{
    claimer *c = arg;
    pthread_barrier_wait(c->start);
    for (;;) {
        otp_txn t = {.kind = OTP_TXN_OUTBOX_CLAIM};
        t.u.outbox_claim.now_ms = c->now;
        t.u.outbox_claim.lease_ms = 60000;
        t.u.outbox_claim.max = 7;
        if (otp_store_exec(c->s, &t) != OTP_OK || t.u.outbox_claim.n == 0) {
            otp_outbox_msgs_free(t.u.outbox_claim.msgs, t.u.outbox_claim.n);
            break;
        }
        for (size_t i = 0; i < t.u.outbox_claim.n && c->n < c->cap; i++)
            c->ids[c->n++] = t.u.outbox_claim.msgs[i].id;
        otp_outbox_msgs_free(t.u.outbox_claim.msgs, t.u.outbox_claim.n);
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Three nodes' dispatchers claim one outbox at once: every message is taken
 * exactly once (SKIP LOCKED). Then a node dies holding its leases: after the
 * lease, another node takes them over, and the dead node's late report (it
 * did send) does not undo the new claim's outcome twice. */
static void t_outbox_shared_by_nodes(void **state)
{
    enum { NODES = 3, MSGS = 400 };
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *s[NODES];
    for (int i = 0; i < NODES; i++)
        s[i] = open_migrated(url, 2);
    int64_t key;
    int64_t acc = account_with(s[0], "shared", MSGS * 25, &key);
    for (int i = 0; i < MSGS; i++) {
        otp_txn t;
        make_send(&t, acc, key, T0 + i);
        assert_int_equal(otp_store_exec(s[i % NODES], &t), OTP_OK);
    }

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NODES);
    pthread_t th[NODES];
    claimer c[NODES];
    for (int i = 0; i < NODES; i++) {
        c[i] = (claimer){.s = s[i], .now = T0 + MSGS, .cap = MSGS, .start = &start};
        c[i].ids = calloc(MSGS, sizeof(int64_t));
        assert_non_null(c[i].ids);
        assert_int_equal(pthread_create(&th[i], NULL, claimer_main, &c[i]), 0);
    }
    int64_t *all = calloc(MSGS, sizeof(int64_t));
    size_t n = 0;
    for (int i = 0; i < NODES; i++) {
        pthread_join(th[i], NULL);
        for (size_t j = 0; j < c[i].n && n < MSGS; j++)
            all[n++] = c[i].ids[j];
        free(c[i].ids);
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(n, MSGS);
    qsort(all, n, sizeof(*all), cmp_i64);
    for (size_t i = 1; i < n; i++)
        assert_true(all[i] != all[i - 1]); /* nobody got a message twice */
    free(all);

    for (int i = 0; i < NODES; i++)
        otp_store_close(s[i]);
}

static otp_err claim_at(otp_store *s, int64_t now, int64_t lease, otp_txn *t)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_OUTBOX_CLAIM;
    t->u.outbox_claim.now_ms = now;
    t->u.outbox_claim.lease_ms = lease;
    t->u.outbox_claim.max = 10;
    return otp_store_exec(s, t);
}

static otp_err report_at(otp_store *s, int64_t id, otp_msg_status st, int64_t now)
{
    otp_outbox_report r;
    memset(&r, 0, sizeof(r));
    r.id = id;
    r.status = st;
    snprintf(r.provider, sizeof(r.provider), "gw1");
    if (st == OTP_MSG_SENT)
        snprintf(r.provider_message_id, sizeof(r.provider_message_id), "gw-%" PRId64, id);
    else
        snprintf(r.error, sizeof(r.error), "late \"quoted\" \\ error \xff"); /* not UTF-8 */
    otp_txn t = {.kind = OTP_TXN_OUTBOX_REPORT};
    t.u.outbox_report.reports = &r;
    t.u.outbox_report.n = 1;
    t.u.outbox_report.now_ms = now;
    return otp_store_exec(s, &t);
}

/* A node dies holding a claim: until its lease ends nobody else takes the
 * message, then another node does (attempt 2). The dead node's report, if it
 * comes late after all, applies once; a second one changes nothing. */
static void t_dead_node_lease_taken_over(void **state)
{
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *a = open_migrated(url, 1), *b = open_migrated(url, 1);
    int64_t key;
    int64_t acc = account_with(a, "lease", 100, &key);
    otp_txn t;
    make_send(&t, acc, key, T0);
    assert_int_equal(otp_store_exec(b, &t), OTP_OK);
    char mid[OTP_ID_SIZE];
    memcpy(mid, t.u.send.message_id, OTP_ID_SIZE);

    assert_int_equal(claim_at(a, T0 + 10, 3000, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 1);
    int64_t id = t.u.outbox_claim.msgs[0].id;
    otp_outbox_msgs_free(t.u.outbox_claim.msgs, t.u.outbox_claim.n);
    otp_store_close(a); /* "kill -9": the lease stays in the database */

    assert_int_equal(claim_at(b, T0 + 3009, 3000, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 0);
    otp_outbox_msgs_free(t.u.outbox_claim.msgs, t.u.outbox_claim.n);
    assert_int_equal(claim_at(b, T0 + 3010, 3000, &t), OTP_OK);
    assert_int_equal(t.u.outbox_claim.n, 1);
    assert_int_equal(t.u.outbox_claim.msgs[0].id, id);
    assert_int_equal(t.u.outbox_claim.msgs[0].attempts, 2);
    assert_string_equal(t.u.outbox_claim.msgs[0].public_id, mid);
    otp_outbox_msgs_free(t.u.outbox_claim.msgs, t.u.outbox_claim.n);

    /* a failure report with an awkward error text, then a late duplicate */
    assert_int_equal(report_at(b, id, OTP_MSG_FAILED, T0 + 3020), OTP_OK);
    assert_int_equal(report_at(b, id, OTP_MSG_FAILED, T0 + 3030), OTP_OK);
    otp_account_stats st;
    assert_int_equal(b->ops->account_stats(b, acc, &st), OTP_OK);
    assert_int_equal(st.balance, 100); /* refunded exactly once */
    assert_int_equal(st.ledger_sum, st.balance);
    otp_message_info m;
    assert_int_equal(b->ops->message_get(b, acc, mid, &m, NULL, NULL), OTP_OK);
    assert_int_equal(m.status, OTP_MSG_FAILED);
    assert_string_equal(m.error, "late \"quoted\" \\ error ?");
    otp_store_close(b);
}

typedef struct idem_node {
    otp_store *s;
    otp_txn t;
    pthread_barrier_t *start;
} idem_node;

static void *idem_main(void *arg)
{
    idem_node *n = arg;
    pthread_barrier_wait(n->start);
    otp_store_exec(n->s, &n->t);
    return NULL;
}

/* One idempotency key sent through two nodes at once: one request, one
 * charge; every other answer replays the first one's response. */
static void t_idempotency_across_nodes(void **state)
{
    enum { N = 16 };
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *s[2] = {open_migrated(url, 4), open_migrated(url, 4)};
    int64_t key;
    int64_t acc = account_with(s[0], "idem", 1000, &key);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    idem_node nodes[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        nodes[i].s = s[i % 2];
        nodes[i].start = &start;
        make_send(&nodes[i].t, acc, key, T0);
        otp_idem *idem = &nodes[i].t.u.send.idem;
        idem->use = true;
        snprintf(idem->key, sizeof(idem->key), "same-key");
        memset(idem->fingerprint, 0x42, sizeof(idem->fingerprint));
        idem->response = nodes[i].t.u.send.request_id;
        idem->status = 201;
        assert_int_equal(pthread_create(&th[i], NULL, idem_main, &nodes[i]), 0);
    }
    int firsts = 0;
    const char *first = NULL;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(nodes[i].t.err, OTP_OK);
        if (!nodes[i].t.u.send.idem.replayed) {
            firsts++;
            first = nodes[i].t.u.send.request_id;
        }
    }
    assert_int_equal(firsts, 1);
    for (int i = 0; i < N; i++)
        if (nodes[i].t.u.send.idem.replayed) {
            assert_int_equal(nodes[i].t.u.send.idem.replay_status, 201);
            assert_string_equal(nodes[i].t.u.send.idem.replay_response, first);
            free(nodes[i].t.u.send.idem.replay_response);
        }
    otp_account_stats st;
    assert_int_equal(s[1]->ops->account_stats(s[1], acc, &st), OTP_OK);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.balance, 1000 - 25);
    assert_int_equal(st.ledger_sum, st.balance);
    pthread_barrier_destroy(&start);
    otp_store_close(s[0]);
    otp_store_close(s[1]);
}

/* Fills t as a credit of amount to acc with reference ref. */
static void make_credit(otp_txn *t, int64_t acc, int64_t amount, const char *ref)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_WALLET_CREDIT;
    t->u.wallet_credit.account_id = acc;
    t->u.wallet_credit.amount = amount;
    snprintf(t->u.wallet_credit.reference, OTP_REFERENCE_SIZE, "%s", ref);
    t->u.wallet_credit.now_ms = T0;
}

typedef struct waitall {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
} waitall;

static void waitall_done(otp_txn *t)
{
    waitall *w = t->user;
    pthread_mutex_lock(&w->lock);
    w->done++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void waitall_wait(waitall *w, int n)
{
    pthread_mutex_lock(&w->lock);
    while (w->done < n)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

/* Submits n txns to s and n to s2 at once (held until all are queued, when
 * the test hooks allow: then the workers of both nodes start together) and
 * waits for them all. */
static void submit_both(otp_store *s, otp_store *s2, otp_txn *t, int n)
{
    waitall w = {.done = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
#if OTPD_TEST_HOOKS
    otp_postgres_test_hold(s, true);
    otp_postgres_test_hold(s2, true);
#endif
    for (int i = 0; i < 2 * n; i++) {
        t[i].done = waitall_done;
        t[i].user = &w;
        otp_store *to = i % 2 ? s2 : s;
        to->ops->submit(to, &t[i]);
    }
#if OTPD_TEST_HOOKS
    otp_postgres_test_hold(s, false);
    otp_postgres_test_hold(s2, false);
#endif
    waitall_wait(&w, 2 * n);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
}

/* One credit reference sent through two nodes at once, round after round:
 * one credit each round; every other answer is that credit, replayed. The
 * nodes' workers are connected first (a round of key touches), so that the
 * credits meet on the server, many at the same moment. */
static void t_credit_reference_across_nodes(void **state)
{
    enum { N = 16, ROUNDS = 5 };
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *s[2] = {open_migrated(url, 8), open_migrated(url, 8)};
    int64_t key;
    int64_t acc = account_with(s[0], "refs", 0, &key);
    otp_txn t[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        t[i].kind = OTP_TXN_KEY_TOUCH;
        t[i].u.key_touch.key_id = key;
        t[i].u.key_touch.now_ms = T0;
    }
    submit_both(s[0], s[1], t, N);

    for (int round = 1; round <= ROUNDS; round++) {
        char ref[32];
        snprintf(ref, sizeof(ref), "wire-%d", round);
        for (int i = 0; i < 2 * N; i++)
            make_credit(&t[i], acc, 900, ref);
        submit_both(s[0], s[1], t, N);
        int firsts = 0;
        int64_t ledger_id = 0;
        for (int i = 0; i < 2 * N; i++) {
            if (t[i].err != OTP_OK)
                print_error("round %d, txn %d: %s\n", round, i, otp_err_code(t[i].err));
            assert_int_equal(t[i].err, OTP_OK);
            if (!t[i].u.wallet_credit.replayed) {
                firsts++;
                ledger_id = t[i].u.wallet_credit.ledger_id;
            }
        }
        assert_int_equal(firsts, 1);
        for (int i = 0; i < 2 * N; i++) {
            assert_int_equal(t[i].u.wallet_credit.ledger_id, ledger_id);
            assert_int_equal(t[i].u.wallet_credit.balance_after, 900 * round);
        }
        otp_account_stats st;
        assert_int_equal(s[1]->ops->account_stats(s[1], acc, &st), OTP_OK);
        assert_int_equal(st.balance, 900 * round);
        assert_int_equal(st.ledger_entries, round);
        assert_int_equal(st.ledger_sum, st.balance);
    }
    otp_store_close(s[0]);
    otp_store_close(s[1]);
}

static void *exec_main(void *arg)
{
    idem_node *n = arg;
    otp_store_exec(n->s, &n->t);
    return NULL;
}

/* The unique index behind the account's lock: a ledger entry with the
 * reference, written by hand without the lock and committed while the credit
 * waits to insert its own, turns the credit into a replay of that entry
 * (23505, run again), never into a second credit. */
static void t_credit_reference_unique_index(void **state)
{
    char url[600], app[700], sql[512];
    fresh_url(url, sizeof(url));
    snprintf(app, sizeof(app), "%s&application_name=otpd_uidx_%ld", url, (long)getpid());
    otp_store *s = open_migrated(app, 1);
    int64_t acc = account_with(s, "byhand", 0, NULL);
    PGconn *raw = raw_open(url);
    assert_non_null(raw);
    PQclear(PQexec(raw, "BEGIN"));
    snprintf(sql, sizeof(sql),
             "INSERT INTO ledger (account_id, type, amount, balance_after, note, reference,"
             " created_at) VALUES (%" PRId64 ", 'credit', 300, 300, 'by hand', 'r-1', 1)"
             " RETURNING id",
             acc);
    PGresult *r = PQexec(raw, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    int64_t hand_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);

    idem_node n = {.s = s};
    make_credit(&n.t, acc, 300, "r-1");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, exec_main, &n), 0);
    /* until the credit waits for the uncommitted entry's index key */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
             " AND query LIKE '%%otp_credit%%' AND application_name = 'otpd_uidx_%ld'",
             (long)getpid());
    int waited = 0;
    while (raw_int(base_url, sql) < 1 && waited++ < 1000)
        usleep(10000);
    assert_true(waited < 1000);
    r = PQexec(raw, "COMMIT");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(raw);
    pthread_join(th, NULL);

    assert_int_equal(n.t.err, OTP_OK);
    assert_true(n.t.u.wallet_credit.replayed);
    assert_int_equal(n.t.u.wallet_credit.ledger_id, hand_id);
    assert_int_equal(n.t.u.wallet_credit.balance_after, 300);
    otp_account a;
    assert_int_equal(s->ops->account_get(s, acc, &a), OTP_OK);
    assert_int_equal(a.balance, 0); /* the credit wrote nothing; the hand-made entry is all */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM ledger WHERE account_id = %" PRId64, acc);
    assert_int_equal(raw_int(url, sql), 1);
    otp_store_close(s);
}

/* Migration 7 upgrades a version-6 database in place: its ledger entries have
 * no reference, credits with one work from then on, and admin keys start
 * empty. */
static void t_upgrade_from_v6(void **state)
{
    char url[600];
    fresh_url(url, sizeof(url));
    assert_int_equal(raw_exec(url, "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                                   " applied_at bigint NOT NULL)"),
                     0);
    for (int v = 1; v <= 6; v++) {
        const char *const *parts = pg_migration_parts(v);
        assert_non_null(parts);
        size_t len = 64;
        for (const char *const *p = parts; *p; p++)
            len += strlen(*p) + 1;
        char *script = malloc(len);
        assert_non_null(script);
        snprintf(script, len, "INSERT INTO schema_migrations VALUES (%d, 0);\n", v);
        for (const char *const *p = parts; *p; p++) {
            strcat(script, *p);
            strcat(script, "\n");
        }
        assert_int_equal(raw_exec(url, script), 0);
        free(script);
    }
    assert_int_equal(raw_exec(url,
                              "INSERT INTO accounts (id, public_id, name, balance, created_at)"
                              " VALUES (1, 'acc_v6', 'v6', 100, 1);"
                              "INSERT INTO ledger (account_id, type, amount, balance_after,"
                              " note, created_at) VALUES (1, 'credit', 100, 100, 'top-up', 1)"),
                     0);
    otp_store_options opt = {.migrate = false};
    otp_store *s = NULL;
    char err[256] = "";
    assert_int_equal(otp_store_open(url, &opt, &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "database schema 6 is older"));
    s = open_migrated(url, 1);
    assert_int_equal(s->ops->schema_version(s), OTP_SCHEMA_VERSION);
    assert_int_equal(raw_int(url, "SELECT count(*) FROM ledger WHERE reference IS NULL"), 1);

    store_check_upgraded_to_7(s);
    otp_store_close(s);
}

#if OTPD_TEST_HOOKS

/* Each txn's outcome against the expected one, naming the first that differs. */
static void assert_errs(const otp_txn *t, const otp_err *want, int n)
{
    for (int i = 0; i < n; i++) {
        if (t[i].err != want[i])
            print_error("txn %d: %d, want %d\n", i, t[i].err, want[i]);
        assert_int_equal(t[i].err, want[i]);
    }
}

/* Submits the n txns while the workers are held, so that they find them all
 * queued, then waits for every done(). Returns how many batches the workers
 * took them in (each txn counted once). */
static uint64_t submit_held(otp_store *s, otp_txn *t, int n, waitall *w)
{
    uint64_t b0, n0, b1, n1;
    otp_postgres_test_counters(s, &b0, &n0);
    otp_postgres_test_hold(s, true);
    for (int i = 0; i < n; i++)
        s->ops->submit(s, &t[i]);
    otp_postgres_test_hold(s, false);
    pthread_mutex_lock(&w->lock);
    while (w->done < n)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    otp_postgres_test_counters(s, &b1, &n1);
    assert_int_equal(n1 - n0, (uint64_t)n);
    return b1 - b0;
}

/* Live sends of one account queued together commit as one batch, each with
 * its own outcome as if it had run alone, in queue order: a taken request id
 * fails alone, a repeated idempotency key replays the first of the batch (or
 * is refused with another body), and the balance runs out exactly where it
 * would have. A txn of another kind in between is left for another worker. */
static void t_send_batches(void **state)
{
    enum { N = 17 };
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *s = open_migrated(url, 1);
    int64_t key;
    int64_t acc = account_with(s, "batch", 10 * 25 + 10, &key);
    otp_txn t[N];
    waitall w = {.done = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    for (int i = 0; i < N; i++) {
        make_send(&t[i], acc, key, T0 + i);
        t[i].done = waitall_done;
        t[i].user = &w;
    }
    memcpy(t[3].u.send.request_id, t[1].u.send.request_id, OTP_ID_SIZE); /* taken */
    for (int i = 5; i <= 7; i++) {
        otp_idem *idem = &t[i].u.send.idem;
        idem->use = true;
        snprintf(idem->key, sizeof(idem->key), "batch-key");
        memset(idem->fingerprint, i == 7 ? 0x02 : 0x01, sizeof(idem->fingerprint));
        idem->response = i == 5 ? "{\"first\":5}" : "{}";
        idem->status = 201;
    }
    memset(&t[9], 0, sizeof(t[9])); /* not a send: another worker's business */
    t[9].kind = OTP_TXN_KEY_TOUCH;
    t[9].u.key_touch.key_id = key;
    t[9].u.key_touch.now_ms = T0;
    t[9].done = waitall_done;
    t[9].user = &w;
    uint64_t batches = submit_held(s, t, N, &w);
    assert_int_equal(batches, 2); /* 16 sends together, the touch alone */

    static const otp_err want[N] = {OTP_OK,
                                    OTP_OK,
                                    OTP_OK,
                                    OTP_E_INTERNAL,
                                    OTP_OK,
                                    OTP_OK,
                                    OTP_OK,
                                    OTP_E_IDEMPOTENCY_KEY_REUSED,
                                    OTP_OK,
                                    OTP_OK,
                                    OTP_OK,
                                    OTP_OK,
                                    OTP_OK,
                                    OTP_OK,
                                    OTP_E_INSUFFICIENT_BALANCE,
                                    OTP_E_INSUFFICIENT_BALANCE,
                                    OTP_E_INSUFFICIENT_BALANCE};
    assert_errs(t, want, N);
    assert_false(t[5].u.send.idem.replayed);
    assert_true(t[6].u.send.idem.replayed);
    assert_string_equal(t[6].u.send.idem.replay_response, "{\"first\":5}");
    free(t[6].u.send.idem.replay_response);
    assert_int_equal(t[13].u.send.balance_after, 10);
    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, acc, &st), OTP_OK);
    assert_int_equal(st.requests, 10);
    assert_int_equal(st.balance, 10);
    assert_int_equal(st.ledger_sum, st.balance);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    otp_store_close(s);
}

static void make_verify(otp_txn *t, int64_t acc, const char *rid, bool right, int len, waitall *w)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_VERIFY;
    otp_txn_verify *v = &t->u.verify;
    v->account_id = acc;
    snprintf(v->request_id, sizeof(v->request_id), "%s", rid);
    memset(v->code_hash, right ? 0xAA : 0xBB, sizeof(v->code_hash));
    v->code_length = len;
    v->now_ms = T0 + 1000;
    v->abuse.use = true;
    otp_limits_defaults(&v->abuse.lim);
    v->abuse.lim.fail_max = 2;
    t->done = waitall_done;
    t->user = w;
}

/* Verifies of one account queued together commit as one batch, each decided
 * as if alone and in queue order (their request ids run the other way, the
 * order the rows are locked in): guesses on two requests of one number count
 * against it in turn (the second wrong one locks it, and a right code after
 * them in the batch finds it locked), a second guess on one request waits for
 * the next batch and sees the first's outcome, a guess does not overtake a
 * cancel of its request queued before it, and unknown ids or wrong lengths
 * are refused without a write. */
static void t_verify_batches(void **state)
{
    (void)state;
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store *s = open_migrated(url, 1);
    int64_t key;
    int64_t acc = account_with(s, "vbatch", 10 * 25, &key);
    static const char *const phone[] = {"+919876543210", "+919876543210", "+919876543210",
                                        "+919812300000", "+919812300001", "+919812300002"};
    char rid[6][OTP_ID_SIZE];
    for (int i = 0; i < 6; i++) {
        otp_txn t;
        make_send(&t, acc, key, T0 + i);
        snprintf(rid[i], sizeof(rid[i]), "req_vbatch_%02d", 20 - i);
        memcpy(t.u.send.request_id, rid[i], OTP_ID_SIZE);
        snprintf(t.u.send.phone, sizeof(t.u.send.phone), "%s", phone[i]);
        assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    }
    enum { N = 9 };
    otp_txn t[N];
    waitall w = {.done = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    make_verify(&t[0], acc, rid[0], false, 6, &w);         /* fails 1 */
    make_verify(&t[1], acc, rid[1], false, 6, &w);         /* fails 2: locks the number */
    make_verify(&t[2], acc, rid[2], true, 6, &w);          /* after them: locked */
    make_verify(&t[3], acc, rid[3], true, 6, &w);          /* verified */
    make_verify(&t[4], acc, rid[3], true, 6, &w);          /* next batch: already verified */
    make_verify(&t[5], acc, "req_vbatch_99", true, 6, &w); /* unknown */
    make_verify(&t[6], acc, rid[4], true, 4, &w);          /* wrong length */
    memset(&t[7], 0, sizeof(t[7]));
    t[7].kind = OTP_TXN_CANCEL;
    t[7].u.cancel.account_id = acc;
    memcpy(t[7].u.cancel.request_id, rid[5], OTP_ID_SIZE);
    t[7].u.cancel.now_ms = T0 + 1000;
    t[7].done = waitall_done;
    t[7].user = &w;
    make_verify(&t[8], acc, rid[5], true, 6, &w); /* after the cancel */
    uint64_t batches = submit_held(s, t, N, &w);
    /* the first seven verifies but t[4] together; then t[4], the cancel and t[8] */
    assert_true(batches <= 4);

    static const otp_err want[N] = {
        OTP_E_OTP_INCORRECT,        OTP_E_OTP_INCORRECT, OTP_E_PHONE_LOCKED,     OTP_OK,
        OTP_E_OTP_ALREADY_VERIFIED, OTP_E_OTP_NOT_FOUND, OTP_E_INVALID_OTP_CODE, OTP_OK,
        OTP_E_OTP_CANCELLED};
    assert_errs(t, want, N);
    assert_false(t[0].u.verify.abuse.phone_locked_now);
    assert_true(t[1].u.verify.abuse.phone_locked_now);
    assert_string_equal(t[2].u.verify.abuse.reason, "phone_locked");
    assert_int_equal(t[0].u.verify.attempts_left, 2);
    assert_int_equal(t[1].u.verify.attempts_left, 2);
    /* what the database holds: the number locked after two wrong codes (a
     * streak of two; the lock reset its count), one
     * attempt used on each of its two requests, none on the third */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT streak * 10 + (locked_until > 0)::int FROM phone_state"
             " WHERE account_id = %lld AND phone = '%s'",
             (long long)acc, phone[0]);
    assert_int_equal(raw_int(url, sql), 21);
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(attempts_left::text || status, ',' ORDER BY public_id DESC)"
             " FROM otp_requests WHERE account_id = %lld",
             (long long)acc);
    char got[256];
    raw_text(url, sql, got, sizeof(got));
    assert_string_equal(got, "2pending,2pending,3pending,3verified,3pending,3cancelled");
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    otp_store_close(s);
}
#endif

/* The plan of sql (EXPLAIN, one line per row joined by ';'), with sequential
 * scans and sorts priced out so that an empty table still shows the index the
 * query would use on a big one. */
static void plan_of(const char *url, const char *sql, char *plan, size_t n)
{
    PGconn *c = raw_open(url);
    assert_non_null(c);
    PQclear(PQexec(c, "SET enable_seqscan = off"));
    PQclear(PQexec(c, "SET enable_sort = off"));
    char q[2048];
    snprintf(q, sizeof(q), "EXPLAIN %s", sql);
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        print_error("EXPLAIN %s: %s\n", sql, PQerrorMessage(c));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    plan[0] = '\0';
    for (int i = 0; i < PQntuples(r); i++) {
        strncat(plan, PQgetvalue(r, i, 0), n - strlen(plan) - 2);
        strcat(plan, ";");
    }
    PQclear(r);
    PQfinish(c);
}

/* The claim walks the partial outbox index in claim order (no sort, no scan of
 * sent messages); the key lookup of every authenticated call and the request
 * lookup of every verification are unique-index probes; so are a credit's
 * reference and an admin key's hash. */
static void t_query_plans(void **state)
{
    static const struct {
        const char *sql, *want;
    } cases[] = {
        {"SELECT id FROM messages WHERE status IN ('queued', 'sending') AND next_attempt_at <= 5"
         " ORDER BY next_attempt_at, id LIMIT 64 FOR UPDATE SKIP LOCKED",
         "messages_outbox"},
        {"SELECT k.id FROM api_keys k JOIN accounts a ON a.id = k.account_id"
         " LEFT JOIN templates t ON t.account_id = a.id AND t.is_default = 1"
         " WHERE k.hash = '\\x00'::bytea",
         "api_keys_hash_key"},
        {"SELECT id FROM otp_requests WHERE public_id = 'req_x' AND account_id = 1"
         " FOR NO KEY UPDATE",
         "otp_requests_public_id_key"},
        {"SELECT id FROM ledger WHERE account_id = 1 AND id < 100 ORDER BY id DESC LIMIT 50",
         "ledger_account"},
        {"SELECT id FROM ledger WHERE account_id = 1 AND reference = 'inv-1'", "ledger_reference"},
        {"SELECT id FROM admin_keys WHERE hash = '\\x00'::bytea", "admin_keys_hash_key"},
    };
    char url[600];
    fresh_url(url, sizeof(url));
    otp_store_close(open_migrated(url, 1));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char plan[4096];
        plan_of(url, cases[i].sql, plan, sizeof(plan));
        bool ok = strstr(plan, cases[i].want) && !strstr(plan, "Seq Scan") && !strstr(plan, "Sort");
        if (!ok)
            print_error("query %zu plan: %s\n", i, plan);
        assert_true(ok);
    }
}

/* The server drops every connection of a node (a restart, a failover, an
 * operator's pg_terminate_backend): a read is retried at once on a fresh
 * connection; a txn caught on a dead connection fails with OTP_E_UNAVAILABLE
 * (it may have committed: never run twice) and the next one reconnects. */
static void t_connections_dropped(void **state)
{
    char url[600], app[700];
    fresh_url(url, sizeof(url));
    snprintf(app, sizeof(app), "%s&application_name=otpd_drop_%ld", url, (long)getpid());
    otp_store *s = open_migrated(app, 1);
    int64_t acc = account_with(s, "drop", 0, NULL);
    otp_account a;
    assert_int_equal(s->ops->account_get(s, acc, &a), OTP_OK);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE application_name = 'otpd_drop_%ld'",
             (long)getpid());
    assert_true(raw_int(base_url, sql) >= 2); /* the reader and the worker */

    assert_int_equal(s->ops->account_get(s, acc, &a), OTP_OK);
    int ok = 0, unavailable = 0;
    for (int i = 0; i < 3 && !ok; i++) {
        otp_txn t = {.kind = OTP_TXN_WALLET_CREDIT};
        t.u.wallet_credit.account_id = acc;
        t.u.wallet_credit.amount = 10;
        t.u.wallet_credit.now_ms = T0;
        otp_err e = otp_store_exec(s, &t);
        ok += e == OTP_OK;
        unavailable += e == OTP_E_UNAVAILABLE;
    }
    assert_int_equal(ok, 1);
    assert_true(unavailable <= 1);
    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, acc, &st), OTP_OK);
    assert_int_equal(st.balance, 10);
    assert_int_equal(st.ledger_sum, 10);
    otp_store_close(s);
}

int main(void)
{
    base_url = getenv("OTPD_TEST_PG_URL");
    if (!base_url || !*base_url) {
        printf("OTPD_TEST_PG_URL is not set: the PostgreSQL tests are skipped\n");
        return 77; /* Meson: skipped */
    }
    PGconn *c = raw_open(base_url);
    if (!c) {
        fprintf(stderr, "OTPD_TEST_PG_URL is set but the server cannot be reached\n");
        return 1;
    }
    PQfinish(c);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_urls_and_errors),
        cmocka_unit_test(t_migrations_race),
        cmocka_unit_test(t_outbox_shared_by_nodes),
        cmocka_unit_test(t_dead_node_lease_taken_over),
        cmocka_unit_test(t_idempotency_across_nodes),
        cmocka_unit_test(t_credit_reference_across_nodes),
        cmocka_unit_test(t_credit_reference_unique_index),
        cmocka_unit_test(t_upgrade_from_v6),
#if OTPD_TEST_HOOKS
        cmocka_unit_test(t_send_batches),
        cmocka_unit_test(t_verify_batches),
#endif
        cmocka_unit_test(t_query_plans),
        cmocka_unit_test(t_connections_dropped),
    };
    int failed = cmocka_run_group_tests_name("store_postgres", tests, NULL, NULL);
    failed += store_conformance_run(&postgres_backend);
    for (unsigned i = 0; i < schemas; i++) {
        char schema[64], sql[128];
        schema_name(i, schema, sizeof(schema));
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
        raw_exec(base_url, sql);
    }
    return failed ? 1 : 0;
}
