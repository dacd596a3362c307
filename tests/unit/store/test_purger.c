/* tests/unit/store/test_purger.c — the background purger over a real (SQLite)
 * store: a backlog is purged in bounded passes that follow each other while
 * they come back full, then the purger sleeps for its interval, and stopping
 * does not wait for the interval. The clock is injected; the test waits on the
 * purger's per-pass callback, never on time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpdir.h"
#include "store/purger.h"
#include "util/clock.h"

#define T0 INT64_C(1700000000000)
#define DAY INT64_C(86400000)

static char dir[] = "/tmp/otpd-purger-test-XXXXXX";

typedef struct passes {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n, requests, errors;
    int64_t now;
} passes;

static int64_t fake_now(void *ctx)
{
    passes *p = ctx;
    return p->now;
}

static void on_pass(const otp_txn *t, void *ctx)
{
    passes *p = ctx;
    pthread_mutex_lock(&p->lock);
    p->n++;
    p->requests += t->u.purge.purged_requests;
    p->errors += t->err != OTP_OK;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Waits until at least n passes were made; returns the count then. */
static int wait_passes(passes *p, int n)
{
    pthread_mutex_lock(&p->lock);
    while (p->n < n)
        pthread_cond_wait(&p->cond, &p->lock);
    int got = p->n;
    pthread_mutex_unlock(&p->lock);
    return got;
}

static otp_store *fresh_store(const char *name)
{
    char url[256];
    snprintf(url, sizeof(url), "sqlite:%s/%s.sqlite", dir, name);
    otp_store_options opt = {.migrate = true};
    otp_store *s = NULL;
    char err[256];
    assert_int_equal(otp_store_open(url, &opt, &s, err, sizeof(err)), 0);
    return s;
}

/* Five test-key requests sent at T0 (expiring at T0 + 10 min); returns the account. */
static int64_t backlog(otp_store *s)
{
    static const uint8_t text[] = "sealed";
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_CREATE};
    snprintf(t.u.account_create.public_id, OTP_ID_SIZE, "acc_p");
    snprintf(t.u.account_create.name, OTP_NAME_SIZE, "p");
    assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    int64_t acc = t.u.account_create.ret_id;
    for (int i = 0; i < 5; i++) {
        memset(&t, 0, sizeof(t));
        t.kind = OTP_TXN_SEND;
        otp_txn_send *x = &t.u.send;
        x->account_id = acc;
        x->test = true;
        snprintf(x->request_id, OTP_ID_SIZE, "req_p%d", i);
        snprintf(x->message_id, OTP_ID_SIZE, "msg_p%d", i);
        snprintf(x->phone, OTP_PHONE_SIZE, "+919876543210");
        x->code_length = 6;
        x->max_attempts = 3;
        x->now_ms = T0;
        x->expires_at_ms = T0 + 600000;
        x->segments = 1;
        x->sealed_text = text;
        x->sealed_text_len = sizeof(text) - 1;
        assert_int_equal(otp_store_exec(s, &t), OTP_OK);
    }
    return acc;
}

static void t_backlog_in_passes(void **state)
{
    otp_store *s = fresh_store("backlog");
    int64_t acc = backlog(s);
    passes p = {.now = T0 + 600000 + DAY + 1};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);
    otp_purger_options opt = {
        .interval_ms = 3600 * 1000, /* after the backlog: asleep for the rest of the test */
        .max_rows = 2,
        .now_ms = fake_now,
        .on_pass = on_pass,
        .ctx = &p,
    };
    otp_purger *pg = NULL;
    assert_int_equal(otp_purger_start(s, &opt, &pg), 0);
    /* 2 + 2 + 1: the first two passes were full, so the third came at once */
    wait_passes(&p, 3);
    int64_t t0 = otp_mono_us();
    otp_purger_stop(pg); /* wakes it from the hour-long wait */
    assert_true(otp_mono_us() - t0 < 5 * 1000 * 1000);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.requests, 5);
    assert_int_equal(p.errors, 0);
    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, acc, &st), OTP_OK);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.messages, 0);
    otp_store_close(s);
    pthread_mutex_destroy(&p.lock);
    pthread_cond_destroy(&p.cond);
}

/* Nothing old enough: one pass, nothing purged, then asleep. */
static void t_recent_kept(void **state)
{
    otp_store *s = fresh_store("recent");
    int64_t acc = backlog(s);
    passes p = {.now = T0 + 600000 + DAY - 1};
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);
    otp_purger_options opt = {.interval_ms = 3600 * 1000,
                              .max_rows = 2,
                              .now_ms = fake_now,
                              .on_pass = on_pass,
                              .ctx = &p};
    otp_purger *pg = NULL;
    assert_int_equal(otp_purger_start(s, &opt, &pg), 0);
    wait_passes(&p, 1);
    otp_purger_stop(pg);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.requests, 0);
    otp_account_stats st;
    assert_int_equal(s->ops->account_stats(s, acc, &st), OTP_OK);
    assert_int_equal(st.requests, 5);
    otp_store_close(s);
    pthread_mutex_destroy(&p.lock);
    pthread_cond_destroy(&p.cond);
}

/* Default options (the real clock): starts, makes its first pass, stops. */
static void t_defaults(void **state)
{
    otp_store *s = fresh_store("defaults");
    otp_purger *pg = NULL;
    assert_int_equal(otp_purger_start(s, NULL, &pg), 0);
    otp_purger_stop(pg);
    otp_purger_stop(NULL);
    assert_int_equal(otp_purger_start(NULL, NULL, &pg), -1);
    otp_store_close(s);
}

int main(void)
{
    if (tmpdir_make(dir) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_backlog_in_passes),
        cmocka_unit_test(t_recent_kept),
        cmocka_unit_test(t_defaults),
    };
    int failed = cmocka_run_group_tests_name("store_purger", tests, NULL, NULL);
    tmpdir_remove(dir);
    return failed ? 1 : 0;
}
