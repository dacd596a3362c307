/* api/reads.c — read handlers off the HTTP threads, for a store whose reads
 * wait on the network (PostgreSQL).
 *
 * An HTTP thread serves every connection it holds from one poll loop, so a
 * handler that waits on a database round trip stalls all of them: on
 * PostgreSQL a slow read (a lock, a busy server, a lost packet) would hold a
 * whole thread's share of the clients, however fast their own requests are.
 * The GET routes that read the store therefore run through otp_api_read()
 * (routes.c): the connection is parked as a write's is, the handler runs on
 * one of the API's read threads, which may block, and the HTTP thread is
 * woken to send the reply the handler set. There are as many read threads as
 * the store has read slots (store.read_conns on PostgreSQL, whose read pool
 * holds twice that many connections: one for each read thread, the others
 * for the reads an HTTP thread makes when no read thread will take them);
 * reads beyond that queue here, in arrival order. A cancel, a resend and an
 * admin credit run this way too: their look-ups on the read thread, which
 * then passes the parked request on to their txn (otp_api_park). A send and a verify read nothing
 * on their HTTP thread either: one that finds a key, an account's limits, a
 * template or a lease of its key's tokens not in memory is handed off whole
 * (otp_api_hand_off) and runs here, filling the caches every thread shares
 * (key_cache.h, template_cache.h, guard.c), so the next ones stay on their
 * HTTP thread. A token its first run took from the key's bucket goes along
 * with it (otp_api_note_token), so it is taken once. A cancel's read of its
 * request after its txn runs here too (otp_api_read_after), handed over by
 * the txn's done callback. At a stop, reads not yet started are answered 503,
 * but for such a read-back, which runs on its HTTP thread (its txn has
 * committed), and those running are waited for.
 *
 * SQLite's reads come from a local file in microseconds, less than the two
 * thread hand-offs would cost, so with SQLite (read_slots NULL or 0) the
 * handler runs on the HTTP thread as before and nothing here starts.
 */
#include "api/api.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct read_job {
    struct read_job *next;
    otp_http_req *req;
    otp_http_handler handler;
    bool parked;      /* req waits for a read thread (false: run inline, below) */
    bool passed_on;   /* to a txn (otp_api_park): its done callback resumes req */
    bool token_taken; /* a hand-off: the first run took the key's token */
    bool after_txn;   /* a txn's read-back (otp_api_read_after) */
} read_job;

struct otp_api_reads {
    pthread_mutex_t mu;
    pthread_cond_t ready;
    read_job *head, *tail;
    bool stopping;
    otp_api *api;
    int nthreads; /* started */
    pthread_t threads[];
};

/* The job whose handler this thread runs: a read thread's, or one run inline
 * on an HTTP thread when there is no read thread to hand it to. Its request
 * may block here. */
static _Thread_local read_job *running;
/* The request the key's bucket let go on this thread (otp_api_note_token). */
static _Thread_local const otp_http_req *token_req;

/* The handler has already replied, on the read thread. */
static void replied(otp_http_req *req, void *app)
{
    (void)req;
    (void)app;
}

static void *read_thread(void *arg)
{
    otp_api_reads *r = arg;
    pthread_setname_np(pthread_self(), "otpd-read");
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->head && !r->stopping)
            pthread_cond_wait(&r->ready, &r->mu);
        read_job *j = r->head;
        if (!j)
            break; /* stopping, and the queue is empty */
        r->head = j->next;
        if (!r->head)
            r->tail = NULL;
        pthread_mutex_unlock(&r->mu);
        running = j;
        j->handler(j->req, r->api);
        running = NULL;
        if (!j->passed_on)
            otp_http_resume(j->req);
        free(j);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int otp_api_reads_start(otp_api *api, int threads)
{
    api->reads = NULL;
    if (threads <= 0)
        return 0;
    otp_api_reads *r = calloc(1, sizeof(*r) + (size_t)threads * sizeof(pthread_t));
    if (!r)
        return -1;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return -1;
    }
    if (pthread_cond_init(&r->ready, NULL) != 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return -1;
    }
    r->api = api;
    api->reads = r;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&r->threads[i], NULL, read_thread, r) != 0) {
            otp_api_reads_free(api);
            return -1;
        }
        r->nthreads++;
    }
    return 0;
}

void otp_api_reads_stop(otp_api *api)
{
    otp_api_reads *r = api->reads;
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    read_job *queued = r->head; /* not started: answered here, not run */
    r->head = r->tail = NULL;
    pthread_cond_broadcast(&r->ready);
    pthread_mutex_unlock(&r->mu);
    while (queued) {
        read_job *j = queued;
        queued = j->next;
        if (j->after_txn) {
            /* Its txn has committed: the read that builds its reply runs on
             * its HTTP thread, as reads do from now on. */
            otp_http_pass_on(j->req, j->handler);
        } else {
            otp_http_reply_error(j->req, OTP_E_UNAVAILABLE, "Server is shutting down", NULL);
            otp_http_add_header(j->req, "Connection", "close");
        }
        otp_http_resume(j->req);
        free(j);
    }
}

void otp_api_reads_join(otp_api *api)
{
    otp_api_reads *r = api->reads;
    if (!r)
        return;
    for (int i = 0; i < r->nthreads; i++)
        pthread_join(r->threads[i], NULL);
    r->nthreads = 0;
}

void otp_api_reads_abandon(otp_api *api)
{
    otp_api_reads *r = api->reads;
    if (!r)
        return;
    for (int i = 0; i < r->nthreads; i++)
        pthread_detach(r->threads[i]);
    r->nthreads = 0;
}

void otp_api_reads_free(otp_api *api)
{
    otp_api_reads *r = api->reads;
    if (!r)
        return;
    otp_api_reads_stop(api);
    otp_api_reads_join(api);
    pthread_cond_destroy(&r->ready);
    pthread_mutex_destroy(&r->mu);
    free(r);
    api->reads = NULL;
}

/* Queues handler's run on req for a read thread, req's finish then doing
 * nothing: suspend says whether req is still to be parked (on its HTTP thread)
 * or is parked already, held by a txn's done callback. Returns false, with
 * nothing done, when no read thread will run it: SQLite, a stop, no memory. */
static bool queue_job(otp_api *api, otp_http_req *req, otp_http_handler handler, bool token_taken,
                      bool suspend)
{
    otp_api_reads *r = api->reads;
    read_job *j = r ? malloc(sizeof(*j)) : NULL;
    if (!j)
        return false;
    *j = (read_job){.req = req,
                    .handler = handler,
                    .parked = true,
                    .token_taken = token_taken,
                    .after_txn = !suspend};
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        free(j);
        return false;
    }
    if (suspend)
        otp_http_suspend(req, replied);
    else
        otp_http_pass_on(req, replied);
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    pthread_cond_signal(&r->ready);
    pthread_mutex_unlock(&r->mu);
    return true;
}

/* otp_api_read(), for a request whose key's token is taken already or not. */
static void read_on(otp_http_req *req, otp_api *api, otp_http_handler handler, bool token_taken)
{
    if (queue_job(api, req, handler, token_taken, true))
        return;
    /* SQLite; or the read threads have stopped (a drain that ran out of time),
     * or no memory for the job: the read runs here. */
    read_job here = {.req = req, .handler = handler, .token_taken = token_taken};
    read_job *outer = running;
    running = &here;
    handler(req, api);
    running = outer;
}

void otp_api_read(otp_http_req *req, void *app, otp_http_handler handler)
{
    read_on(req, app, handler, false);
}

bool otp_api_read_after(otp_http_req *req, otp_api *api, otp_http_handler handler)
{
    return queue_job(api, req, handler, false, false);
}

bool otp_api_may_block(const otp_api *api, const otp_http_req *req)
{
    return !api->reads || (running && running->req == req);
}

void otp_api_hand_off(otp_http_req *req, otp_api *api)
{
    bool taken = token_req == req;
    token_req = NULL;
    read_on(req, api, otp_http_route_handler(req), taken);
}

void otp_api_note_token(const otp_http_req *req)
{
    token_req = req;
}

bool otp_api_token_taken(const otp_http_req *req)
{
    return running && running->req == req && running->token_taken;
}

void otp_api_park(otp_http_req *req, otp_http_handler finish)
{
    read_job *j = running;
    if (j && j->req == req && j->parked) {
        j->passed_on = true;
        otp_http_pass_on(req, finish);
    } else {
        otp_http_suspend(req, finish);
    }
}
