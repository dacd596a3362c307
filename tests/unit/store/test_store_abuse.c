/* tests/unit/store/test_store_abuse.c — SPEC 3 inside the store backends'
 * transactions: 200 sends to one number submitted at once (in one batch when
 * the test hooks are built) accept exactly the window's worth; the lockout
 * counts wrong codes across requests and a success clears it; the pumping rule
 * blocks a prefix (writing only the block) and a lift re-opens it; spend caps;
 * every refusal leaves no trace; requests keep their number's region (older
 * ones without it still count); the pumping counts survive a reopen, and on
 * SQLite, which keeps them in the writer's memory for up to a second, every
 * accepted send is counted once through replayed and lost batches. Runs on
 * SQLite, then on PostgreSQL when OTPD_TEST_PG_URL names a server (each test in
 * a schema of its own; there the held sends are taken by the workers as they
 * would be, one account's live sends committed in batches).
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
#include <unistd.h>

#include <libpq-fe.h>

#include "tmpdir.h"
#include "store/postgres_internal.h"
#include "store/sqlite_internal.h"
#include "util/clock.h"
#include "util/ids.h"

#define T0 INT64_C(1700000000000)

static const uint8_t sealed_text[] = "sealed:123456 is your code";
static char dir[] = "/tmp/otpd-abuse-test-XXXXXX";
static unsigned counter;
static const char *pg_url; /* NULL: the suite runs on SQLite */

/* A fresh PostgreSQL schema's URL in out (search_path in the URL's options). */
static int pg_fresh(char *out, size_t n)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE SCHEMA abuse%ld_%u", (long)getpid(), counter);
    PGconn *c = PQconnectdb(pg_url);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        print_error("%s: %s\n", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    snprintf(out, n, "%s%soptions=-csearch_path%%3Dabuse%ld_%u", pg_url,
             strchr(pg_url, '?') ? "&" : "?", (long)getpid(), counter++);
    return ok ? 0 : -1;
}

static void hold(otp_store *s, bool on)
{
#if OTPD_TEST_HOOKS
    if (pg_url)
        otp_postgres_test_hold(s, on);
    else
        otp_sqlite_test_pause(s, on);
#else
    (void)s;
    (void)on;
#endif
}

typedef struct fx {
    otp_store *s;
    int64_t acc;
    char path[512];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    char err[256];
    if (pg_url) {
        if (pg_fresh(f->path, sizeof(f->path)))
            return -1;
    } else {
        snprintf(f->path, sizeof(f->path), "sqlite:%s/db-%u.sqlite", dir, counter++);
    }
    otp_store_options opt = {.migrate = true};
    if (otp_store_open(f->path, &opt, &f->s, err, sizeof(err)) != 0) {
        print_error("open: %s\n", err);
        return -1;
    }
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_CREATE};
    otp_id_new("acc_", T0, t.u.account_create.public_id);
    snprintf(t.u.account_create.name, OTP_NAME_SIZE, "acme");
    t.u.account_create.now_ms = T0;
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    f->acc = t.u.account_create.ret_id;
    otp_txn c = {.kind = OTP_TXN_WALLET_CREDIT};
    c.u.wallet_credit.account_id = f->acc;
    c.u.wallet_credit.amount = 100000;
    c.u.wallet_credit.now_ms = T0;
    assert_int_equal(otp_store_exec(f->s, &c), OTP_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    otp_store_close(f->s);
    free(f);
    return 0;
}

static void make_send(otp_txn *t, const fx *f, const char *phone, int64_t now)
{
    memset(t, 0, sizeof(*t));
    t->kind = OTP_TXN_SEND;
    otp_txn_send *s = &t->u.send;
    s->account_id = f->acc;
    otp_id_new("req_", now, s->request_id);
    otp_id_new("msg_", now, s->message_id);
    snprintf(s->phone, sizeof(s->phone), "%s", phone);
    memset(s->code_hash, 0xAA, sizeof(s->code_hash));
    s->code_length = 6;
    s->max_attempts = 10;
    s->expires_in_s = 600;
    s->now_ms = now;
    s->expires_at_ms = now + 600000;
    s->segments = 1;
    s->sealed_text = sealed_text;
    s->sealed_text_len = sizeof(sealed_text) - 1;
    s->abuse.use = true;
    otp_limits_defaults(&s->abuse.lim);
    memcpy(s->abuse.region, "IN", 3);
}

/* A guess at rid from a key of mode test (the request's own), right or not. */
static otp_err verify_as(const fx *f, bool test, const char *rid, bool right, int64_t now,
                         otp_abuse *ret)
{
    otp_txn t = {.kind = OTP_TXN_VERIFY};
    otp_txn_verify *v = &t.u.verify;
    v->account_id = f->acc;
    v->test = test;
    memcpy(v->request_id, rid, OTP_ID_SIZE);
    memset(v->code_hash, right ? 0xAA : 0xBB, sizeof(v->code_hash));
    v->code_length = 6;
    v->now_ms = now;
    v->abuse.use = true;
    otp_limits_defaults(&v->abuse.lim);
    otp_err e = otp_store_exec(f->s, &t);
    if (ret)
        *ret = v->abuse;
    return e;
}

/* A guess from a live key. */
static otp_err verify(const fx *f, const char *rid, bool right, int64_t now, otp_abuse *ret)
{
    return verify_as(f, false, rid, right, now, ret);
}

/* An operator's lift of target's lock or block (otpd block lift). */
static otp_err lift(const fx *f, const char *target, int64_t now)
{
    otp_txn l = {.kind = OTP_TXN_ACCOUNT_SET};
    l.u.account_set.account_id = f->acc;
    l.u.account_set.fields = OTP_SET_BLOCK_LIFT;
    snprintf(l.u.account_set.lift_target, OTP_PREFIX_SIZE, "%s", target);
    l.u.account_set.now_ms = now;
    return otp_store_exec(f->s, &l);
}

/* The first column of the first row of sql, run on f's database behind the
 * store's back; INT64_MIN on error. */
static int64_t raw_int(const fx *f, const char *sql)
{
    int64_t v = INT64_MIN;
    if (pg_url) {
        PGconn *c = PQconnectdb(f->path);
        PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
            v = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else if (PQresultStatus(r) != PGRES_COMMAND_OK)
            print_error("%s: %s\n", sql, PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        return v;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(f->path + strlen("sqlite:"), &db, SQLITE_OPEN_READWRITE, NULL) ==
            SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        else if (rc != SQLITE_DONE)
            print_error("%s: %s\n", sql, sqlite3_errmsg(db));
    } else {
        print_error("%s: %s\n", sql, db ? sqlite3_errmsg(db) : "cannot open");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static otp_account_stats stats(const fx *f)
{
    otp_account_stats st;
    assert_int_equal(f->s->ops->account_stats(f->s, f->acc, &st), OTP_OK);
    return st;
}

/* ---- many txns at once ---- */

typedef struct tally {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} tally;

static tally tl = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void on_done(otp_txn *t)
{
    (void)t;
    pthread_mutex_lock(&tl.mu);
    tl.done++;
    pthread_cond_broadcast(&tl.cv);
    pthread_mutex_unlock(&tl.mu);
}

static void run_all(const fx *f, otp_txn *ts, int n)
{
    tl.done = 0;
    hold(f->s, true);
    for (int i = 0; i < n; i++) {
        ts[i].done = on_done;
        f->s->ops->submit(f->s, &ts[i]);
    }
    hold(f->s, false);
    pthread_mutex_lock(&tl.mu);
    while (tl.done < n)
        pthread_cond_wait(&tl.cv, &tl.mu);
    pthread_mutex_unlock(&tl.mu);
}

static void t_window_under_parallel_sends(void **state)
{
    fx *f = *state;
    enum { N = 200 };
    static otp_txn ts[N];
    for (int i = 0; i < N; i++) {
        make_send(&ts[i], f, "+919876543210", T0);
        ts[i].u.send.abuse.lim.phone_interval_s = 0;
    }
    run_all(f, ts, N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (ts[i].err == OTP_OK) {
            ok++;
            continue;
        }
        assert_int_equal(ts[i].err, OTP_E_RATE_LIMITED);
        assert_string_equal(ts[i].u.send.abuse.reason, "phone_send_limit");
        assert_int_equal(ts[i].u.send.abuse.retry_after_s, 900);
    }
    assert_int_equal(ok, 5);
    otp_account_stats st = stats(f);
    assert_int_equal(st.requests, 5);
    assert_int_equal(st.ledger_sum, st.balance);

    /* with the spacing on, one more at once is refused for the interval */
    otp_txn t;
    make_send(&t, f, "+919876543211", T0);
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    make_send(&t, f, "+919876543211", T0 + 10000);
    assert_int_equal(otp_store_exec(f->s, &t), OTP_E_RATE_LIMITED);
    assert_string_equal(t.u.send.abuse.reason, "phone_send_interval");
    assert_int_equal(t.u.send.abuse.retry_after_s, 20);
}

static void t_lockout(void **state)
{
    fx *f = *state;
    otp_txn a, b;
    make_send(&a, f, "+919876500001", T0);
    assert_int_equal(otp_store_exec(f->s, &a), OTP_OK);
    make_send(&b, f, "+919876500001", T0 + 31000);
    assert_int_equal(otp_store_exec(f->s, &b), OTP_OK);
    int64_t t = T0 + 32000;
    otp_abuse out;
    for (int i = 0; i < 3; i++)
        assert_int_equal(verify(f, a.u.send.request_id, false, t, &out), OTP_E_OTP_INCORRECT);
    assert_int_equal(verify(f, b.u.send.request_id, false, t, &out), OTP_E_OTP_INCORRECT);
    assert_false(out.phone_locked_now);
    assert_int_equal(verify(f, b.u.send.request_id, false, t, &out), OTP_E_OTP_INCORRECT);
    assert_true(out.phone_locked_now);
    assert_int_equal(verify(f, b.u.send.request_id, true, t, &out), OTP_E_PHONE_LOCKED);
    assert_int_equal(out.retry_after_s, 900);
    otp_txn c;
    make_send(&c, f, "+919876500001", t + 60000);
    assert_int_equal(otp_store_exec(f->s, &c), OTP_E_PHONE_LOCKED);
    /* the lock is listed, and a lift opens it */
    assert_int_equal(lift(f, "+919876500001", t), OTP_OK);
    assert_int_equal(verify(f, b.u.send.request_id, true, t, &out), OTP_OK);
    /* nothing left to lift */
    assert_int_equal(lift(f, "+919876500001", t), OTP_E_NOT_FOUND);
}

/* A test key's guesses leave the number's state alone: its right code does
 * not clear the wrong codes piled up on a live request of the number (or an
 * attacker with a test key could keep a number from ever locking), and its
 * wrong codes do not lock the number; a lock still holds for it. */
static void t_test_guesses_leave_number(void **state)
{
    fx *f = *state;
    const char *to = "+919876500003";
    otp_txn live, test, test2;
    make_send(&test, f, to, T0);
    test.u.send.test = true;
    assert_int_equal(otp_store_exec(f->s, &test), OTP_OK);
    make_send(&live, f, to, T0 + 31000);
    assert_int_equal(otp_store_exec(f->s, &live), OTP_OK);
    int64_t t = T0 + 32000;
    otp_abuse out;
    for (int i = 0; i < 4; i++)
        assert_int_equal(verify(f, live.u.send.request_id, false, t, &out), OTP_E_OTP_INCORRECT);
    assert_int_equal(verify_as(f, true, test.u.send.request_id, true, t, &out), OTP_OK);
    assert_int_equal(verify(f, live.u.send.request_id, false, t, &out), OTP_E_OTP_INCORRECT);
    assert_true(out.phone_locked_now); /* the 5th: the test success cleared nothing */

    const char *to2 = "+919876500004";
    make_send(&test2, f, to2, T0);
    test2.u.send.test = true;
    assert_int_equal(otp_store_exec(f->s, &test2), OTP_OK);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(verify_as(f, true, test2.u.send.request_id, false, t, &out),
                         OTP_E_OTP_INCORRECT);
        assert_false(out.phone_locked_now);
    }
    otp_txn after;
    make_send(&after, f, to2, T0 + 31000);
    assert_int_equal(otp_store_exec(f->s, &after), OTP_OK); /* not locked */
    assert_int_equal(lift(f, to, t), OTP_OK);
}

/* A number's send window and spacing count the sends of the key's own mode:
 * a test key filling a number's window (or sending a second ago) holds off
 * neither a live send to it nor a live key a test one. */
static void t_send_window_per_mode(void **state)
{
    fx *f = *state;
    const char *to = "+919876500005";
    otp_txn t;
    for (int i = 0; i < 5; i++) { /* the window's worth, 31 s apart */
        make_send(&t, f, to, T0 + i * 31000);
        t.u.send.test = true;
        assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    }
    int64_t now = T0 + 4 * 31000 + 1000;
    make_send(&t, f, to, now);
    t.u.send.test = true;
    assert_int_equal(otp_store_exec(f->s, &t), OTP_E_RATE_LIMITED); /* the test window is full */
    make_send(&t, f, to, now); /* 1 s after a test send, with 5 in the window */
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    make_send(&t, f, to, now + 1000); /* 1 s after that live one: its spacing holds */
    assert_int_equal(otp_store_exec(f->s, &t), OTP_E_RATE_LIMITED);
    assert_string_equal(t.u.send.abuse.reason, "phone_send_interval");
}

/* SQLite: the writer's statements, prepared once at open, stay prepared. A
 * statement whose bound value could change its plan (a parameter compared with
 * a partial index's WHERE, as `test = ?` with messages_test_inbox's `WHERE
 * test = 1`) is compiled again at the first step after every bind: on the send
 * path that was 70k instructions, a fifth of a send. Sends of both modes, to
 * new and to known numbers, refused ones, right and wrong guesses; then the
 * statements' SQLITE_STMTSTATUS_REPREPARE counts must all be 0. */
static void t_statements_stay_prepared(void **state)
{
    fx *f = *state;
    if (pg_url)
        skip();
    otp_txn t;
    char rid[OTP_ID_SIZE] = "";
    for (int i = 0; i < 24; i++) {
        char to[OTP_PHONE_SIZE];
        snprintf(to, sizeof(to), "+9198765%05d", i % 6); /* each number 4 times */
        make_send(&t, f, to, T0 + i * 40000);
        t.u.send.test = i % 3 == 0;
        otp_err e = otp_store_exec(f->s, &t);
        assert_true(e == OTP_OK || e == OTP_E_RATE_LIMITED);
        if (e == OTP_OK && !t.u.send.test)
            memcpy(rid, t.u.send.request_id, OTP_ID_SIZE);
    }
    assert_int_not_equal(rid[0], '\0');
    assert_int_equal(verify(f, rid, false, T0 + 960000, NULL), OTP_E_OTP_INCORRECT);
    assert_int_equal(verify(f, rid, true, T0 + 961000, NULL), OTP_OK);

    sq_store *sq = (sq_store *)f->s;
    int reprepared = 0;
    for (int i = 0; i < W__COUNT; i++) {
        int n = sq->w[i] ? sqlite3_stmt_status(sq->w[i], SQLITE_STMTSTATUS_REPREPARE, 0) : 0;
        if (n)
            print_error("compiled again %d times: %s\n", n, sqlite3_sql(sq->w[i]));
        reprepared += n;
    }
    assert_int_equal(reprepared, 0);
}

/* The store keeps the times of the wrong codes, so the window rolls: 1 wrong
 * code, 3 more just before 900 s have passed, then 2 just after: the second of
 * those is the 5th within 900 s and locks (in fixed windows counted from the
 * first, the count started over and it did not). A lift forgets the times. */
static void t_lockout_window_rolls(void **state)
{
    fx *f = *state;
    otp_txn a;
    make_send(&a, f, "+919876500002", T0);
    a.u.send.expires_in_s = 3600;
    a.u.send.expires_at_ms = T0 + 3600000;
    assert_int_equal(otp_store_exec(f->s, &a), OTP_OK);
    const char *rid = a.u.send.request_id;
    int64_t t = T0 + 1000;
    otp_abuse out;
    assert_int_equal(verify(f, rid, false, t, &out), OTP_E_OTP_INCORRECT);
    for (int i = 0; i < 3; i++)
        assert_int_equal(verify(f, rid, false, t + 899000, &out), OTP_E_OTP_INCORRECT);
    assert_int_equal(verify(f, rid, false, t + 900500, &out), OTP_E_OTP_INCORRECT);
    assert_false(out.phone_locked_now);
    assert_int_equal(verify(f, rid, false, t + 901000, &out), OTP_E_OTP_INCORRECT);
    assert_true(out.phone_locked_now);
    assert_int_equal(verify(f, rid, true, t + 901000, &out), OTP_E_PHONE_LOCKED);

    assert_int_equal(lift(f, "+919876500002", t + 902000), OTP_OK);
    /* 2 wrong codes, a lift of a number not locked (it clears the count), 4
     * more: without the lift's clearing the 3rd of those would lock */
    otp_txn b;
    make_send(&b, f, "+919876500002", t + 902000);
    b.u.send.expires_in_s = 3600;
    b.u.send.expires_at_ms = t + 902000 + 3600000;
    assert_int_equal(otp_store_exec(f->s, &b), OTP_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(verify(f, b.u.send.request_id, false, t + 903000, &out),
                         OTP_E_OTP_INCORRECT);
    assert_int_equal(lift(f, "+919876500002", t + 903000), OTP_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(verify(f, b.u.send.request_id, false, t + 904000, &out),
                         OTP_E_OTP_INCORRECT);
        assert_false(out.phone_locked_now);
    }
}

static void t_pumping(void **state)
{
    fx *f = *state;
    enum { N = 40 };
    static otp_txn ts[N];
    char phone[OTP_PHONE_SIZE];
    for (int i = 0; i < N; i++) {
        snprintf(phone, sizeof(phone), "+91987650%04d", i);
        make_send(&ts[i], f, phone, T0);
    }
    otp_account_stats before = stats(f);
    run_all(f, ts, N);
    int ok = 0, blocks = 0;
    for (int i = 0; i < N; i++) {
        if (ts[i].err == OTP_OK) {
            ok++;
            continue;
        }
        assert_int_equal(ts[i].err, OTP_E_RATE_LIMITED);
        assert_string_equal(ts[i].u.send.abuse.reason, "suspected_sms_pumping");
        blocks += ts[i].u.send.abuse.pumping_block;
    }
    assert_int_equal(ok, 19);
    assert_int_equal(blocks, 1);
    otp_account_stats after = stats(f);
    assert_int_equal(after.requests - before.requests, 19);

    assert_int_equal(lift(f, "+91987650", T0 + 1000), OTP_OK);
    otp_txn t;
    make_send(&t, f, "+919876509999", T0 + 2000);
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
}

static void t_spend_cap(void **state)
{
    fx *f = *state;
    otp_txn t;
    for (int i = 0; i < 3; i++) {
        char phone[OTP_PHONE_SIZE];
        snprintf(phone, sizeof(phone), "+9198765%05d", 100 + i);
        make_send(&t, f, phone, T0);
        t.u.send.abuse.lim.daily_cap = 50; /* two sends at 25 paise */
        otp_err e = otp_store_exec(f->s, &t);
        if (i < 2)
            assert_int_equal(e, OTP_OK);
        else {
            assert_int_equal(e, OTP_E_RATE_LIMITED);
            assert_string_equal(t.u.send.abuse.reason, "daily_spend_cap");
        }
    }
}

/* Money that came back was not spent: a refund (here, the queued message of a
 * cancelled request) lowers the day's spend of the account and of the region,
 * so the caps let the next send through. The day is the send's, not the
 * refund's. */
static void t_refund_lowers_spend(void **state)
{
    fx *f = *state;
    otp_txn t;
    char first[OTP_ID_SIZE];
    for (int cap = 0; cap < 2; cap++) { /* the account's cap, then the country's */
        for (int i = 0; i < 3; i++) {
            char phone[OTP_PHONE_SIZE];
            snprintf(phone, sizeof(phone), "+9198765%05d", 200 + 10 * cap + i);
            make_send(&t, f, phone, T0 + cap);
            t.u.send.expires_at_ms = T0 + 2 * INT64_C(86400000); /* pending tomorrow */
            if (cap == 0)
                t.u.send.abuse.lim.daily_cap = 50; /* two sends at 25 paise */
            else
                t.u.send.abuse.lim.country_daily_cap = 100; /* the 2 before and 2 more */
            otp_err e = otp_store_exec(f->s, &t);
            if (i < 2) {
                assert_int_equal(e, OTP_OK);
                if (i == 0)
                    memcpy(first, t.u.send.request_id, OTP_ID_SIZE);
                continue;
            }
            assert_int_equal(e, OTP_E_RATE_LIMITED);
            assert_string_equal(t.u.send.abuse.reason, "daily_spend_cap");

            otp_txn c = {.kind = OTP_TXN_CANCEL};
            c.u.cancel.account_id = f->acc;
            memcpy(c.u.cancel.request_id, first, OTP_ID_SIZE);
            c.u.cancel.now_ms = T0 + INT64_C(86400000); /* refunded the next day */
            assert_int_equal(otp_store_exec(f->s, &c), OTP_OK);

            make_send(&t, f, phone, T0 + cap);
            if (cap == 0)
                t.u.send.abuse.lim.daily_cap = 50;
            else
                t.u.send.abuse.lim.country_daily_cap = 100;
            assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
        }
    }
    assert_int_equal(raw_int(f, "SELECT min(amount) FROM spend"), 100);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM spend"), 2); /* '' and IN, one day */
}

static void t_limits_text(void **state)
{
    fx *f = *state;
    char buf[OTP_LIMITS_TEXT_SIZE];
    assert_int_equal(f->s->ops->limits_get(f->s, f->acc, buf, sizeof(buf)), OTP_OK);
    assert_string_equal(buf, "");
    otp_txn t = {.kind = OTP_TXN_ACCOUNT_SET};
    t.u.account_set.account_id = f->acc;
    t.u.account_set.fields = OTP_SET_LIMITS;
    snprintf(t.u.account_set.limits, OTP_LIMITS_TEXT_SIZE, "phone_sends=3");
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    assert_int_equal(f->s->ops->limits_get(f->s, f->acc, buf, sizeof(buf)), OTP_OK);
    assert_string_equal(buf, "phone_sends=3");
}

/* Requests store their number's region at send; verify and resend read it
 * from there. One sent before the schema had it ('', set here by hand) still
 * counts its resend and its conversion against its region (parsed). */
static void t_region_of_old_requests(void **state)
{
    fx *f = *state;
    otp_txn a, b;
    make_send(&a, f, "+919876511111", T0);
    memcpy(a.u.send.region, "IN", 3);
    assert_int_equal(otp_store_exec(f->s, &a), OTP_OK);
    make_send(&b, f, "+919876522222", T0);
    assert_int_equal(otp_store_exec(f->s, &b), OTP_OK); /* region from abuse.region */
    assert_int_equal(raw_int(f, "SELECT count(*) FROM otp_requests WHERE region = 'IN'"), 2);
    char sql[160];
    snprintf(sql, sizeof(sql), "UPDATE otp_requests SET region = '' WHERE public_id = '%s'",
             b.u.send.request_id);
    assert_int_equal(raw_int(f, sql), INT64_MIN); /* no row to read */
    assert_int_equal(raw_int(f, "SELECT count(*) FROM otp_requests WHERE region = ''"), 1);

    static const uint8_t text[] = "sealed";
    otp_txn r = {.kind = OTP_TXN_RESEND};
    otp_txn_resend *x = &r.u.resend;
    x->account_id = f->acc;
    memcpy(x->request_id, b.u.send.request_id, OTP_ID_SIZE);
    otp_id_new("msg_", T0, x->message_id);
    x->rotate = false;
    x->now_ms = T0 + 31000;
    x->cooldown_ms = 30000;
    x->max_resends = 3;
    x->segments = 1;
    x->sealed_text = text;
    x->sealed_text_len = sizeof(text) - 1;
    x->abuse.use = true;
    otp_limits_defaults(&x->abuse.lim);
    snprintf(x->abuse.phone, sizeof(x->abuse.phone), "+919876522222");
    assert_int_equal(otp_store_exec(f->s, &r), OTP_OK);
    /* and one stored with its region */
    memcpy(x->request_id, a.u.send.request_id, OTP_ID_SIZE);
    otp_id_new("msg_", T0, x->message_id);
    memset(x->abuse.region, 0, sizeof(x->abuse.region));
    snprintf(x->abuse.phone, sizeof(x->abuse.phone), "+919876511111");
    assert_int_equal(otp_store_exec(f->s, &r), OTP_OK);
    assert_int_equal(verify(f, a.u.send.request_id, true, T0 + 32000, NULL), OTP_OK);
    assert_int_equal(verify(f, b.u.send.request_id, true, T0 + 32000, NULL), OTP_OK);
    otp_store_close(f->s); /* counts not yet written (SQLite) are written at close */
    f->s = NULL;
    assert_int_equal(raw_int(f, "SELECT sum(sends) FROM traffic WHERE scope = 'IN'"), 4);
    assert_int_equal(raw_int(f, "SELECT sum(verifies) FROM traffic WHERE scope = 'IN'"), 2);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM otp_requests WHERE region = ''"), 1);
}

/* Sends to numbers of prefix +91987650 at now, one at a time, until one is
 * refused; returns how many were accepted (the refusal must be the pumping
 * rule's). */
static int sends_until_block(const fx *f, int64_t now, int first)
{
    for (int i = 0;; i++) {
        otp_txn t;
        char phone[OTP_PHONE_SIZE];
        snprintf(phone, sizeof(phone), "+91987650%04d", first + i);
        make_send(&t, f, phone, now);
        otp_err e = otp_store_exec(f->s, &t);
        if (e == OTP_OK)
            continue;
        assert_int_equal(e, OTP_E_RATE_LIMITED);
        assert_string_equal(t.u.send.abuse.reason, "suspected_sms_pumping");
        return i;
    }
}

/* The pumping counts survive a close and a reopen: 19 sends to a prefix, then
 * (after the reopen) the 20th trips the rule, as in t_pumping. */
static void t_traffic_survives_reopen(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 19; i++) {
        otp_txn t;
        char phone[OTP_PHONE_SIZE];
        snprintf(phone, sizeof(phone), "+91987650%04d", i);
        make_send(&t, f, phone, T0);
        assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    }
    otp_store_close(f->s);
    char err[256];
    otp_store_options opt = {.migrate = true};
    f->s = NULL;
    assert_int_equal(otp_store_open(f->path, &opt, &f->s, err, sizeof(err)), 0);
    assert_int_equal(sends_until_block(f, T0 + 1000, 100), 0);
    assert_int_equal(raw_int(f, "SELECT sum(sends) FROM traffic WHERE scope = '+91987650'"), 19);
    assert_int_equal(raw_int(f, "SELECT sum(sends) FROM traffic WHERE scope = 'IN'"), 19);
}

#if OTPD_TEST_HOOKS
static void replays_of(const fx *f, uint64_t *ret)
{
    uint64_t b, t;
    otp_sqlite_test_counters(f->s, &b, &t, ret);
}
#endif

/* SQLite keeps the pumping counts in the writer's memory until it writes them
 * in bulk (with the test hook: in every batch). Through a batch replayed with
 * savepoints (a txn failing before its counts, one failing after them), a
 * batch whose COMMIT fails (its counts, and the write of the earlier ones it
 * carried, undone) and the write retried by the next batch, every accepted
 * send is counted exactly once: the rule trips at the 20th. */
static void t_traffic_batches(void **state)
{
#if OTPD_TEST_HOOKS
    fx *f = *state;
    if (pg_url)
        skip();
    otp_sqlite_test_traffic_flush_ms(f->s, 0);
    /* A send with idempotency key "boom" fails at its last write, after its
     * counts (a trigger, so that the store's own statements are unchanged). */
    assert_int_equal(raw_int(f, "CREATE TRIGGER boom BEFORE INSERT ON idempotency"
                                " WHEN NEW.key = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"),
                     INT64_MIN);
    enum { N = 10 };
    static otp_txn ts[N];
    static const char response[] = "{}";
    for (int i = 0; i < N; i++) {
        char phone[OTP_PHONE_SIZE];
        snprintf(phone, sizeof(phone), "+91987650%04d", i);
        make_send(&ts[i], f, phone, T0);
    }
    memcpy(ts[3].u.send.request_id, ts[2].u.send.request_id, OTP_ID_SIZE); /* fails first */
    ts[6].u.send.idem.use = true;
    snprintf(ts[6].u.send.idem.key, sizeof(ts[6].u.send.idem.key), "boom");
    ts[6].u.send.idem.response = response;
    ts[6].u.send.idem.status = 201;
    uint64_t r0, r1;
    replays_of(f, &r0);
    run_all(f, ts, N);
    replays_of(f, &r1);
    assert_int_equal(r1 - r0, 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(ts[i].err, i == 3 || i == 6 ? OTP_E_INTERNAL : OTP_OK);

    /* A lost batch: its sends, and the write of the 8 counts it carried. */
    otp_sqlite_test_fail_commits(f->s, 1);
    for (int i = 0; i < 3; i++) {
        char phone[OTP_PHONE_SIZE];
        snprintf(phone, sizeof(phone), "+91987650%04d", 50 + i);
        make_send(&ts[i], f, phone, T0);
    }
    run_all(f, ts, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ts[i].err, OTP_E_UNAVAILABLE);
    const char *sum = "SELECT coalesce(sum(sends), 0) FROM traffic WHERE scope = '+91987650'";
    assert_int_equal(raw_int(f, sum), 0);

    /* The next batch writes them; 11 more make 19, the 20th trips the rule. */
    assert_int_equal(sends_until_block(f, T0 + 1000, 100), 11);
    assert_int_equal(raw_int(f, sum), 19);
    otp_store_close(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f, sum), 19);
    assert_int_equal(raw_int(f, "SELECT sum(sends) FROM traffic WHERE scope = 'IN'"), 19);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM otp_requests"), 19);
#else
    (void)state;
    skip();
#endif
}

/* SQLite writes the counts of a batch within a second (the default): by the
 * first batch that commits a second or more after the last write. */
static void t_traffic_written_within_a_second(void **state)
{
#if OTPD_TEST_HOOKS
    fx *f = *state;
    if (pg_url)
        skip();
    const char *sum = "SELECT coalesce(sum(sends), 0) FROM traffic WHERE scope = 'IN'";
    otp_sqlite_test_traffic_flush_ms(f->s, 3600000); /* however slow this machine is */
    otp_txn t;
    make_send(&t, f, "+919876533331", T0);
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    make_send(&t, f, "+919876533332", T0);
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    assert_int_equal(raw_int(f, sum), 0); /* in memory, and summed from there */
    otp_sqlite_test_traffic_flush_ms(f->s, 1000);
    usleep(1100 * 1000);
    make_send(&t, f, "+919876533333", T0);
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    assert_int_equal(raw_int(f, sum), 2);
#else
    (void)state;
    skip();
#endif
}

/* ---- the API keys' shared token buckets (PostgreSQL) ---- */

typedef struct taker {
    otp_store *s;
    int64_t key;
    int n, granted;
    otp_err err;
} taker;

static void *take_many(void *arg)
{
    taker *t = arg;
    for (int i = 0; i < t->n && !t->err; i++) {
        int g = 0;
        int64_t wait = 0;
        t->err = t->s->ops->key_take(t->s, t->key, 1, 50, 1, &g, &wait);
        t->granted += g;
    }
    return NULL;
}

/* A key of the fixture's account, revoked or not; its row id. */
static int64_t bucket_key(fx *f, const char *name, bool revoke)
{
    otp_txn t = {.kind = OTP_TXN_KEY_CREATE};
    otp_txn_key_create *k = &t.u.key_create;
    k->account_id = f->acc;
    otp_id_new("key_", T0, k->public_id);
    memset(k->hash, name[0], sizeof(k->hash));
    snprintf(k->prefix, sizeof(k->prefix), "otpd_live_ab");
    snprintf(k->name, sizeof(k->name), "%s", name);
    k->now_ms = T0;
    assert_int_equal(otp_store_exec(f->s, &t), OTP_OK);
    if (revoke) {
        otp_txn r = {.kind = OTP_TXN_KEY_REVOKE};
        memcpy(r.u.key_revoke.public_id, k->public_id, OTP_ID_SIZE);
        r.u.key_revoke.now_ms = T0 + 1;
        assert_int_equal(otp_store_exec(f->s, &r), OTP_OK);
    }
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT id FROM api_keys WHERE public_id = '%s'", k->public_id);
    return raw_int(f, sql);
}

/* A key's bucket is the store's, on PostgreSQL: whole tokens up to what was
 * asked, a wait when empty, refilled by time; two store handles (two nodes) and
 * four threads taking at once take exactly the burst between them; the purge
 * drops the buckets of keys that cannot take. SQLite has no shared bucket (one
 * process: api/guard.c keeps it). */
static void t_key_bucket_shared(void **state)
{
    fx *f = *state;
    if (!pg_url) {
        assert_null(f->s->ops->key_take);
        return;
    }
    int g = -1;
    int64_t wait = -1;
    /* a new bucket is full: 12 tokens at 10/s, asked 5 at a time */
    assert_int_equal(f->s->ops->key_take(f->s, 42, 10, 12, 5, &g, &wait), OTP_OK);
    assert_int_equal(g, 5);
    assert_int_equal(wait, 0);
    assert_int_equal(f->s->ops->key_take(f->s, 42, 10, 12, 5, &g, &wait), OTP_OK);
    assert_int_equal(g, 5);
    assert_int_equal(f->s->ops->key_take(f->s, 42, 10, 12, 5, &g, &wait), OTP_OK);
    assert_int_equal(g, 2);
    assert_int_equal(f->s->ops->key_take(f->s, 42, 10, 12, 5, &g, &wait), OTP_OK);
    assert_int_equal(g, 0);
    assert_in_range(wait, 1, 100); /* one token at 10/s */
    /* another key has its own bucket */
    assert_int_equal(f->s->ops->key_take(f->s, 43, 10, 12, 1, &g, &wait), OTP_OK);
    assert_int_equal(g, 1);
    /* 250 ms later two tokens are back (three if the calls were slow) */
    usleep(250 * 1000);
    assert_int_equal(f->s->ops->key_take(f->s, 42, 10, 12, 5, &g, &wait), OTP_OK);
    assert_in_range(g, 2, 3);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM key_buckets"), 2);

    /* Two nodes, two threads each, 100 takes per thread at 1/s with a burst
     * of 50: 50 granted between them, plus one a second at most. */
    otp_store *other = NULL;
    char err[256];
    otp_store_options opt = {.migrate = false};
    assert_int_equal(otp_store_open(f->path, &opt, &other, err, sizeof(err)), 0);
    taker t[4];
    pthread_t th[4];
    int64_t t0 = otp_now_ms();
    for (int i = 0; i < 4; i++) {
        t[i] = (taker){.s = i % 2 ? other : f->s, .key = 44, .n = 100};
        assert_int_equal(pthread_create(&th[i], NULL, take_many, &t[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].err, OTP_OK);
        total += t[i].granted;
    }
    int64_t secs = (otp_now_ms() - t0) / 1000;
    assert_in_range(total, 50, 50 + secs + 1);
    otp_store_close(other);

    /* The purge drops the buckets of keys that cannot take any more (revoked,
     * or no such key: 42, 43, 44 above) and keeps an active key's, tokens and
     * all. */
    int64_t live = bucket_key(f, "live", false), gone = bucket_key(f, "gone", true);
    assert_int_equal(f->s->ops->key_take(f->s, live, 10, 12, 5, &g, &wait), OTP_OK);
    assert_int_equal(f->s->ops->key_take(f->s, gone, 10, 12, 5, &g, &wait), OTP_OK);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM key_buckets"), 5);
    otp_txn p = {.kind = OTP_TXN_PURGE};
    p.u.purge.now_ms = otp_now_ms();
    p.u.purge.request_retention_ms = 86400000;
    p.u.purge.idem_retention_ms = 86400000;
    p.u.purge.max_rows = 100;
    assert_int_equal(otp_store_exec(f->s, &p), OTP_OK);
    assert_int_equal(raw_int(f, "SELECT count(*) FROM key_buckets"), 1);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT tokens_milli FROM key_buckets WHERE key_id = %lld",
             (long long)live);
    assert_int_equal(raw_int(f, sql), 7000); /* 12 - 5, as the take left it */
}

/* Drops the schemas the PostgreSQL run made. */
static void pg_drop(unsigned n)
{
    PGconn *c = PQconnectdb(pg_url);
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    for (unsigned i = 0; PQstatus(c) == CONNECTION_OK && i < n; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS abuse%ld_%u CASCADE", (long)getpid(), i);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
}

int main(void)
{
    if (tmpdir_make(dir) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_window_under_parallel_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(t_lockout, setup, teardown),
        cmocka_unit_test_setup_teardown(t_lockout_window_rolls, setup, teardown),
        cmocka_unit_test_setup_teardown(t_test_guesses_leave_number, setup, teardown),
        cmocka_unit_test_setup_teardown(t_send_window_per_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(t_statements_stay_prepared, setup, teardown),
        cmocka_unit_test_setup_teardown(t_pumping, setup, teardown),
        cmocka_unit_test_setup_teardown(t_spend_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(t_refund_lowers_spend, setup, teardown),
        cmocka_unit_test_setup_teardown(t_limits_text, setup, teardown),
        cmocka_unit_test_setup_teardown(t_region_of_old_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(t_traffic_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(t_traffic_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(t_traffic_written_within_a_second, setup, teardown),
        cmocka_unit_test_setup_teardown(t_key_bucket_shared, setup, teardown),
    };
    int r = cmocka_run_group_tests_name("store_abuse_sqlite", tests, NULL, NULL);
    tmpdir_remove(dir);
    const char *url = getenv("OTPD_TEST_PG_URL");
    if (url && *url) {
        pg_url = url;
        counter = 0;
        r += cmocka_run_group_tests_name("store_abuse_postgres", tests, NULL, NULL);
        pg_drop(counter);
    }
    return r;
}
