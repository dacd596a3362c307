/* tests/unit/store/conformance.h — the store conformance suite, run against
 * every backend.
 *
 * test_store_conformance.c holds the tests: they use only store.h plus the
 * backend description below, so the same tests can run against SQLite today and
 * PostgreSQL later. Each backend's test program (e.g. test_store_sqlite.c)
 * describes how to make a fresh database, how to look inside it with plain SQL,
 * and which test hooks it has, then calls store_conformance_run().
 */
#ifndef OTP_TESTS_STORE_CONFORMANCE_H
#define OTP_TESTS_STORE_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct store_backend {
    const char *name;
    /* Writes the URL of a fresh, empty database (not created yet) into url. */
    void (*fresh_url)(char *url, size_t n);
    /* Runs SQL on url's database behind the store's back. Returns 0 on success. */
    int (*raw_exec)(const char *url, const char *sql);
    /* Runs a query whose first row's first column is an integer; returns it, or
     * INT64_MIN on error or no row. */
    int64_t (*raw_int)(const char *url, const char *sql);
    /* Test hooks, NULL when the backend has none (the tests needing them skip). */
    void (*pause)(otp_store *s, bool paused);  /* hold queued txns (one batch) */
    void (*fail_commits)(otp_store *s, int n); /* the next n commits fail */
} store_backend;

/* Collects up to 8 of anything a read hands to its callback. */
#define COLLECT(type, name)                                                                        \
    typedef struct {                                                                               \
        int n;                                                                                     \
        type items[8];                                                                             \
    } name##_seen;                                                                                 \
    static void on_##name(const type *x, void *p)                                                  \
    {                                                                                              \
        name##_seen *seen = p;                                                                     \
        if (seen->n < 8)                                                                           \
            seen->items[seen->n] = *x;                                                             \
        seen->n++;                                                                                 \
    }

/* Runs every conformance test against b; returns the number of failures. */
int store_conformance_run(const store_backend *b);

/* On a store just migrated from schema 6 whose account 1 holds 100 (one credit
 * of 100 in its ledger): what schema 7 adds works on the old rows (a credit
 * with a reference, then its replay; admin keys). Each backend's upgrade test
 * calls it after building its schema-6 database its own way. */
void store_check_upgraded_to_7(otp_store *s);

#endif
