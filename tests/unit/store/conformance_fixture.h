/* tests/unit/store/conformance_fixture.h — the fixture and helpers shared by
 * the files of the store conformance suite (test_store_conformance.c, which
 * defines them, and test_store_lifecycle.c). Private to those files: a
 * backend's test program includes conformance.h only.
 */
#ifndef OTP_TESTS_STORE_CONFORMANCE_FIXTURE_H
#define OTP_TESTS_STORE_CONFORMANCE_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "conformance.h"

#define T0 INT64_C(1700000000000) /* "now" in ms; tests move it by hand */
#define PRICE 25                  /* default price_per_segment */
#define RIGHT 0xAA                /* code hash bytes of the right guess */
#define WRONG 0xBB

extern const store_backend *B; /* the backend under test */
static const uint8_t sealed_text[] = "sealed:123456 is your code";

typedef struct ctx {
    char url[512];
    otp_store *s;
    int64_t acc; /* an account "acme" with a live key (key) and a test key (tkey) */
    int64_t key, tkey;
} ctx;

/* setup: a fresh migrated database with ctx's account and keys; teardown
 * closes it. */
int setup(void **state);
int teardown(void **state);

otp_store *open_url(const char *url, bool migrate);
/* A fresh public id with prefix ("req_", "msg_", …), unique in the process. */
void new_id(const char *prefix, char out[OTP_ID_SIZE]);
otp_err create_account(otp_store *s, const char *name, int64_t *ret_id);
otp_err create_key(otp_store *s, int64_t acc, uint8_t hash_byte, bool test,
                   char public_id[OTP_ID_SIZE]);
int64_t key_id_of(otp_store *s, uint8_t hash_byte);
otp_err credit(otp_store *s, int64_t acc, int64_t amount, int64_t *ret_balance);
/* Fills t as a SEND of a fresh request (6-digit code, RIGHT hash, 3 attempts,
 * expiring at T0 + 600 s) by key (test or live) of account acc. */
void make_send(otp_txn *t, int64_t acc, int64_t key, bool test, int segments);
/* A guess from a key of the request's own mode; verify_as() from a test key
 * (test) or a live one. */
otp_err verify(otp_store *s, int64_t acc, const char *request_id, uint8_t guess, int len,
               int64_t now, int *ret_left);
otp_err verify_as(otp_store *s, int64_t acc, bool test, const char *request_id, uint8_t guess,
                  int len, int64_t now, int *ret_left);
/* The account's stats, after asserting balance == ledger sum and balance >= 0. */
otp_account_stats stats(otp_store *s, int64_t acc);
/* B->raw_int of fmt with one %s filled by arg. */
int64_t raw_int(const ctx *c, const char *fmt, const char *arg);
/* Sends one request from the test key; writes its id into rid. */
void one_request(ctx *c, int max_attempts, char rid[OTP_ID_SIZE]);

/* Counts done() callbacks by outcome; tally_wait() blocks until n are in. */
typedef struct tally {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, ok, insufficient, other;
} tally;
void tally_init(tally *t);
void tally_done(otp_txn *txn);
void tally_wait(tally *t, int n);
void tally_destroy(tally *t);

otp_err claim(otp_store *s, int64_t now, int64_t lease, size_t max, otp_txn *t);
void claim_free(otp_txn *t);
/* Reports one claimed message (provider "gw1"; a SENT gets provider message id
 * "gw-<id>", a failure the error "gateway said no"). */
otp_err report(otp_store *s, int64_t id, otp_msg_status status, int64_t now, int64_t next_attempt);
/* Queues n live sends (sent at T0 + i); their message ids go to mids (may be NULL). */
void queue_sends(ctx *c, int n, char (*mids)[OTP_ID_SIZE]);

/* The lifecycle tests (test_store_lifecycle.c): resend, cancel, idempotency,
 * account settings, templates, delivery reports, purge, the new reads. Returns
 * the number of failures. */
int store_lifecycle_run(void);

#endif
