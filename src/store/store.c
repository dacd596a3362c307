/* store/store.c — the backend-independent part of store.h: picking a backend
 * from a URL, the blocking otp_store_exec(), freeing claimed messages, and the
 * commit histogram's bucket bounds.
 *
 * URLs: "sqlite:PATH" (also "sqlite://PATH", so "sqlite:///var/lib/otpd.db" is an
 * absolute path) or a bare path select SQLite; "postgres://" and "postgresql://"
 * select PostgreSQL. Any other "scheme://" is refused rather than taken for a
 * file name.
 */
#include "store/store.h"
#include "store/postgres.h"
#include "store/sqlite.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double otp_commit_bounds_s[OTP_COMMIT_BUCKETS] = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2,
};

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Returns 0 with *ret set, or -1 with the reason in err (see store.h). */
int otp_store_open(const char *url, const otp_store_options *opt, otp_store **ret, char *err,
                   size_t errlen)
{
    static const otp_store_options defaults = {
        .migrate = false, .read_conns = 0, .max_batch = 0, .pool_size = 0};
    if (!opt)
        opt = &defaults;
    if (!url || !*url) {
        snprintf(err, errlen, "empty store URL");
        return -1;
    }
    if (has_prefix(url, "postgres://") || has_prefix(url, "postgresql://"))
        return otp_store_postgres_open(url, opt, ret, err, errlen);
    const char *path = url;
    if (has_prefix(url, "sqlite:")) {
        path = url + strlen("sqlite:");
        if (has_prefix(path, "//"))
            path += 2;
    } else if (strstr(url, "://")) {
        snprintf(err, errlen, "unknown store URL scheme in \"%s\" (use sqlite:PATH or postgres://)",
                 url);
        return -1;
    }
    if (!*path) {
        snprintf(err, errlen, "store URL \"%s\" has no path", url);
        return -1;
    }
    return otp_store_sqlite_open(path, opt, ret, err, errlen);
}

/* What otp_store_exec() waits on; lives on the waiting thread's stack. */
typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    void *user; /* the caller's txn->user, given back at the end */
} waiter;

static void exec_done(otp_txn *txn)
{
    waiter *w = txn->user;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Borrows txn->done and txn->user for the call (user is given back). Must not
 * be called from a done() callback: the writer would wait for itself. Returns
 * txn->err; OTP_E_INTERNAL without submitting if txn->done was set. */
otp_err otp_store_exec(otp_store *s, otp_txn *txn)
{
    if (!s || !txn)
        return OTP_E_INTERNAL;
    if (txn->done) /* exec() owns done/user for the call */
        return txn->err = OTP_E_INTERNAL;
    waiter w = {.done = false, .user = txn->user};
    if (pthread_mutex_init(&w.lock, NULL) != 0)
        return txn->err = OTP_E_INTERNAL;
    if (pthread_cond_init(&w.cond, NULL) != 0) {
        pthread_mutex_destroy(&w.lock);
        return txn->err = OTP_E_INTERNAL;
    }
    txn->done = exec_done;
    txn->user = &w;
    s->ops->submit(s, txn);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    txn->done = NULL;
    txn->user = w.user;
    return txn->err;
}

bool otp_store_reference_ok(const char ref[OTP_REFERENCE_SIZE])
{
    size_t len = strnlen(ref, OTP_REFERENCE_SIZE);
    if (len == OTP_REFERENCE_SIZE)
        return false;
    for (size_t i = 0; i < len; i++)
        if (ref[i] < 0x20 || ref[i] > 0x7e)
            return false;
    return true;
}

void otp_outbox_msgs_free(otp_outbox_msg *msgs, size_t n)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < n; i++)
        free(msgs[i].sealed);
    free(msgs);
}
