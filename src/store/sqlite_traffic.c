/* store/sqlite_traffic.c — the SMS-pumping rule's per-minute counters (the
 * traffic table) kept in the writer's memory and written to the table in bulk.
 *
 * Every accepted send adds to two counters (its prefix's and its region's) and
 * every successful verification to two more; every send sums a window of them.
 * Written one upsert at a time, that was ~4 statements per request on the one
 * writer thread, each on a scattered B-tree page. The writer thread is the only
 * writer of these counters in its process, so it keeps the recent increments in
 * a hash map keyed by (account, scope) and writes them, aggregated per (account,
 * scope, minute), at most once per second, inside a batch's transaction, so
 * that they are durable with it. A sum is the table's rows plus the increments
 * not yet written, so the rule sees exactly what it saw before. The price: a
 * crash loses the counts of at most the last second (the ones not yet written),
 * and another process writing the same file (not a supported setup: use
 * PostgreSQL for several nodes) would not see them for up to a second.
 *
 * The hard part is the batch machinery of sqlite.c: a batch runs without
 * savepoints and, if a txn fails after writing, is rolled back and run again
 * with one savepoint per txn; a whole batch can be lost (COMMIT fails). An
 * increment must count only once its txn is kept and its batch committed, and
 * a flush that was rolled back must be retried. So each minute's increments
 * sit in one of four states:
 *
 *   txn      made by the txn running now: become "batch" if the txn is kept
 *            (sq_txn_run's keep: its writes stay in the batch), else dropped;
 *   batch    of the kept txns of the batch running now: become "done" when the
 *            batch commits, dropped when it is rolled back;
 *   done     committed, not yet in the table: the flush writes them and they
 *            become "flushed";
 *   flushed  written to the table by the batch running now: forgotten when it
 *            commits (the table has them), "done" again when it is rolled back.
 *
 * Sums count txn + batch + done (flushed ones are already in the table rows
 * the SQL sums, within the same transaction). Txns of one batch see each
 * other's increments, as they saw each other's upserts.
 *
 * The events come from the writer. sq_txn_run() calls sq_traffic_txn_end(keep)
 * after every body (a txn undone alone, by ROLLBACK TO in the savepoint replay,
 * has keep = false). sqlite.c's try_batch() calls sq_traffic_batch_end() once
 * per attempt at a batch, saying whether it committed: anything else (ROLLBACK
 * before a replay, a lost batch, SQLite rolling back by itself, a failed
 * COMMIT) undoes the batch. sq_traffic_close() writes what is left in a
 * transaction of its own.
 *
 * The flush runs at the end of a kept txn (inside its savepoint when there is
 * one, which is then released), so nothing the writer could undo for that txn
 * alone can undo it. It writes only "done" increments: one upsert per (account,
 * scope, minute). An upsert that fails undoes itself (statement atomicity); the
 * ones before it stay "flushed" and the rest stays "done" for the next flush.
 *
 * Window sums. The rule sums a window of the table's rows twice per send (the
 * number's prefix and its region), one SQL aggregate each. What the writer's
 * connection sees of the table changes only through flush() (rows it adds),
 * a batch undone (back to what was committed) and the purge (rows two days
 * old, outside any window, but still). So the writer keeps the last table
 * sum it read for each (account, scope), with its range of minutes, in a
 * small direct-mapped cache: flush() adds what it writes to the sums whose
 * range holds the minute, an undone batch or the purge forgets them all
 * (one generation counter), and a sum is read again when its range moves
 * (every minute) or its slot went to another scope.
 *
 * Only the writer thread touches this state (or the thread that opens or closes
 * the store, while no writer runs).
 */
#include "store/sqlite_internal.h"
#include "util/clock.h"

#include <stdlib.h>
#include <string.h>

#define FLUSH_MS 1000
#define INITIAL_BUCKETS 256
#define SUM_SLOTS 4096 /* window sums kept (a power of two) */

typedef struct tr_count {
    int64_t sends, verifies;
} tr_count;

/* One minute of one (account, scope): its increments by state (see the top). */
typedef struct tr_minute {
    int64_t minute;
    tr_count txn, batch, done, flushed;
} tr_minute;

/* Which lists hold a node; IN_MARK is batch_end()'s scratch bit. */
enum { IN_TXN = 1, IN_BATCH = 2, IN_DONE = 4, IN_FLUSHED = 8, IN_MARK = 16 };

/* One (account, scope) with increments not yet in the table. Pending counts
 * span a second or two, so it rarely holds more than one minute: the first
 * lives in the node, more in a heap array. */
typedef struct tr_node {
    struct tr_node *next; /* hash chain */
    int64_t account;
    uint32_t hash;
    unsigned lists; /* IN_*: the lists below that hold it */
    int n;          /* minutes: first, then more[0 .. n - 2] */
    int more_cap;
    tr_minute first;
    tr_minute *more;
    char scope[OTP_PREFIX_SIZE];
} tr_node;

/* A list of nodes, each at most once (its IN_* bit says whether it is on it).
 * Every list can hold every node (cap >= count, reserved when a node is
 * made), so adding to one never fails half-way through a state change. */
typedef struct tr_list {
    tr_node **v;
    size_t n, cap;
} tr_list;

/* A table sum as the writer read it: rows of (account, scope) in [from, to). */
typedef struct tr_sum {
    uint64_t gen; /* valid while equal to sq_traffic.sum_gen */
    int64_t account, from, to;
    tr_count table;
    char scope[OTP_PREFIX_SIZE];
} tr_sum;

struct sq_traffic {
    tr_node **buckets;
    size_t nbuckets, count;
    tr_list txn, batch, done, flushed; /* nodes with counts in that state */
    int64_t last_flush_us;             /* monotonic */
    atomic_int flush_ms;
    tr_sum *sums;     /* SUM_SLOTS, by hash_of() */
    uint64_t sum_gen; /* starts at 1: a zeroed slot is not valid */
};

static tr_minute *minute_at(tr_node *n, int i)
{
    return i == 0 ? &n->first : &n->more[i - 1];
}

static bool count_zero(const tr_count *c)
{
    return c->sends == 0 && c->verifies == 0;
}

/* Adds from to to, and empties from. */
static void count_move(tr_count *to, tr_count *from)
{
    to->sends += from->sends;
    to->verifies += from->verifies;
    from->sends = from->verifies = 0;
}

static bool minute_zero(const tr_minute *m)
{
    return count_zero(&m->txn) && count_zero(&m->batch) && count_zero(&m->done) &&
           count_zero(&m->flushed);
}

static uint32_t hash_of(int64_t account, const char *scope)
{
    uint32_t h = 2166136261u ^ (uint32_t)account ^ (uint32_t)((uint64_t)account >> 32);
    for (const unsigned char *p = (const unsigned char *)scope; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static tr_node **bucket_of(sq_traffic *tr, uint32_t hash)
{
    return &tr->buckets[hash & (tr->nbuckets - 1)];
}

static tr_node *node_find(sq_traffic *tr, int64_t account, const char *scope, uint32_t hash)
{
    for (tr_node *n = *bucket_of(tr, hash); n; n = n->next)
        if (n->hash == hash && n->account == account && strcmp(n->scope, scope) == 0)
            return n;
    return NULL;
}

/* Doubles the buckets (keeping the old ones if memory is short). */
static void grow(sq_traffic *tr)
{
    size_t nb = tr->nbuckets * 2;
    tr_node **b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < tr->nbuckets; i++)
        for (tr_node *n = tr->buckets[i], *next; n; n = next) {
            next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    free(tr->buckets);
    tr->buckets = b;
    tr->nbuckets = nb;
}

/* Makes room for one more node in every list. Returns false if memory is short. */
static bool reserve(sq_traffic *tr)
{
    tr_list *lists[] = {&tr->txn, &tr->batch, &tr->done, &tr->flushed};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        tr_list *l = lists[i];
        if (l->cap > tr->count)
            continue;
        size_t cap = l->cap ? l->cap * 2 : 64;
        tr_node **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return false;
        l->v = v;
        l->cap = cap;
    }
    return true;
}

static void list_push(tr_list *l, tr_node *n, unsigned bit)
{
    if (n->lists & bit)
        return;
    l->v[l->n++] = n; /* cannot overflow: see tr_list */
    n->lists |= bit;
}

/* Drops a node's minutes with nothing left and frees the node when it has no
 * minute left and no list holds it. */
static void tidy(sq_traffic *tr, tr_node *n)
{
    int kept = 0;
    for (int i = 0; i < n->n; i++) {
        tr_minute *m = minute_at(n, i);
        if (!minute_zero(m))
            *minute_at(n, kept++) = *m;
    }
    n->n = kept;
    if (kept || n->lists)
        return;
    tr_node **p = bucket_of(tr, n->hash);
    while (*p != n)
        p = &(*p)->next;
    *p = n->next;
    free(n->more);
    free(n);
    tr->count--;
}

static tr_sum *sum_slot(sq_traffic *tr, int64_t account, const char *scope, uint32_t hash)
{
    tr_sum *k = &tr->sums[hash & (SUM_SLOTS - 1)];
    if (k->gen != tr->sum_gen || k->account != account || strcmp(k->scope, scope) != 0)
        return NULL;
    return k;
}

bool sq_traffic_sum_known(sq_store *s, int64_t account, const char *scope, int64_t from, int64_t to,
                          int64_t *ret_sends, int64_t *ret_verifies)
{
    sq_traffic *tr = s->traffic;
    tr_sum *k = tr ? sum_slot(tr, account, scope, hash_of(account, scope)) : NULL;
    if (!k || k->from != from || k->to != to)
        return false;
    *ret_sends = k->table.sends;
    *ret_verifies = k->table.verifies;
    return true;
}

void sq_traffic_sum_keep(sq_store *s, int64_t account, const char *scope, int64_t from, int64_t to,
                         int64_t sends, int64_t verifies)
{
    sq_traffic *tr = s->traffic;
    if (!tr || strnlen(scope, OTP_PREFIX_SIZE) >= OTP_PREFIX_SIZE)
        return;
    tr_sum *k = &tr->sums[hash_of(account, scope) & (SUM_SLOTS - 1)];
    k->gen = tr->sum_gen;
    k->account = account;
    k->from = from;
    k->to = to;
    k->table = (tr_count){sends, verifies};
    strcpy(k->scope, scope);
}

void sq_traffic_sums_forget(sq_store *s)
{
    if (s->traffic)
        s->traffic->sum_gen++;
}

void sq_traffic_pending(sq_store *s, int64_t account, const char *scope, int64_t from, int64_t to,
                        int64_t *ret_sends, int64_t *ret_verifies)
{
    sq_traffic *tr = s->traffic;
    *ret_sends = *ret_verifies = 0;
    tr_node *n = tr ? node_find(tr, account, scope, hash_of(account, scope)) : NULL;
    for (int i = 0; n && i < n->n; i++) {
        const tr_minute *m = minute_at(n, i);
        if (m->minute < from || m->minute >= to)
            continue;
        *ret_sends += m->txn.sends + m->batch.sends + m->done.sends;
        *ret_verifies += m->txn.verifies + m->batch.verifies + m->done.verifies;
    }
}

otp_err sq_traffic_add(sq_store *s, int64_t account, const char *scope, int64_t minute, int sends,
                       int verifies)
{
    sq_traffic *tr = s->traffic;
    if (!tr || strnlen(scope, OTP_PREFIX_SIZE) >= OTP_PREFIX_SIZE)
        return OTP_E_INTERNAL;
    uint32_t hash = hash_of(account, scope);
    tr_node *n = node_find(tr, account, scope, hash);
    if (!n) {
        if (!reserve(tr) || !(n = calloc(1, sizeof(*n))))
            return OTP_E_INTERNAL;
        n->account = account;
        n->hash = hash;
        strcpy(n->scope, scope);
        tr_node **b = bucket_of(tr, hash);
        n->next = *b;
        *b = n;
        if (++tr->count > tr->nbuckets)
            grow(tr);
    }
    tr_minute *m = NULL;
    for (int i = 0; i < n->n && !m; i++)
        if (minute_at(n, i)->minute == minute)
            m = minute_at(n, i);
    if (!m && n->n > 0 && n->n - 1 == n->more_cap) {
        int cap = n->more_cap ? n->more_cap * 2 : 2;
        tr_minute *more = realloc(n->more, (size_t)cap * sizeof(*more));
        if (!more) {
            tidy(tr, n);
            return OTP_E_INTERNAL;
        }
        n->more = more;
        n->more_cap = cap;
    }
    if (!m) {
        m = minute_at(n, n->n++);
        memset(m, 0, sizeof(*m));
        m->minute = minute;
    }
    list_push(&tr->txn, n, IN_TXN);
    m->txn.sends += sends;
    m->txn.verifies += verifies;
    return OTP_OK;
}

/* The batch run last has ended. Its "batch" increments become "done"
 * (committed) or go; its "flushed" ones are forgotten (committed: in the table)
 * or "done" again. */
void sq_traffic_batch_end(sq_store *s, bool committed)
{
    sq_traffic *tr = s->traffic;
    if (!tr)
        return;
    if (!committed)
        tr->sum_gen++; /* what flush() wrote in this batch is undone */
    /* A node on both lists is settled once, through the batch list: nothing
     * may be freed while a list still names it. */
    for (size_t i = 0; i < tr->batch.n; i++)
        tr->batch.v[i]->lists |= IN_MARK;
    size_t kept = 0;
    for (size_t i = 0; i < tr->flushed.n; i++)
        if (!(tr->flushed.v[i]->lists & IN_MARK))
            tr->flushed.v[kept++] = tr->flushed.v[i];
    tr->flushed.n = kept;
    for (int pass = 0; pass < 2; pass++) {
        tr_list *l = pass == 0 ? &tr->batch : &tr->flushed;
        for (size_t i = 0; i < l->n; i++) {
            tr_node *n = l->v[i];
            bool done = false;
            for (int k = 0; k < n->n; k++) {
                tr_minute *m = minute_at(n, k);
                if (committed) {
                    count_move(&m->done, &m->batch);
                    m->flushed = (tr_count){0, 0};
                } else {
                    m->batch = (tr_count){0, 0};
                    count_move(&m->done, &m->flushed);
                }
                done |= !count_zero(&m->done);
            }
            n->lists &= ~(unsigned)(IN_MARK | IN_BATCH | IN_FLUSHED);
            if (done)
                list_push(&tr->done, n, IN_DONE);
            tidy(tr, n);
        }
        l->n = 0;
    }
}

/* Writes the "done" increments to the table (see the top). Returns false if a
 * statement failed: what it did not write stays "done". */
static bool flush(sq_store *s, sq_traffic *tr)
{
    sqlite3_stmt *st = s->w[W_TRAFFIC_ADD];
    bool ok = true;
    for (size_t i = 0; ok && i < tr->done.n; i++) {
        tr_node *n = tr->done.v[i];
        bool left = false;
        for (int k = 0; k < n->n; k++) {
            tr_minute *m = minute_at(n, k);
            if (ok && !count_zero(&m->done)) {
                sqlite3_bind_int64(st, 1, n->account);
                sqlite3_bind_text(st, 2, n->scope, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 3, m->minute);
                sqlite3_bind_int64(st, 4, m->done.sends);
                sqlite3_bind_int64(st, 5, m->done.verifies);
                ok = sqlite3_step(st) == SQLITE_DONE;
                sqlite3_reset(st);
                if (ok) {
                    tr_sum *sum = sum_slot(tr, n->account, n->scope, n->hash);
                    if (sum && m->minute >= sum->from && m->minute < sum->to) {
                        sum->table.sends += m->done.sends;
                        sum->table.verifies += m->done.verifies;
                    }
                    count_move(&m->flushed, &m->done);
                    list_push(&tr->flushed, n, IN_FLUSHED);
                }
            }
            left |= !count_zero(&m->done);
        }
        if (!left)
            n->lists &= ~(unsigned)IN_DONE;
    }
    /* The nodes still "done" (the one that failed and those after it) stay. */
    size_t kept = 0;
    for (size_t j = 0; j < tr->done.n; j++)
        if (tr->done.v[j]->lists & IN_DONE)
            tr->done.v[kept++] = tr->done.v[j];
    tr->done.n = kept;
    return ok;
}

void sq_traffic_txn_end(sq_store *s, bool keep)
{
    sq_traffic *tr = s->traffic;
    if (!tr)
        return;
    for (size_t i = 0; i < tr->txn.n; i++) {
        tr_node *n = tr->txn.v[i];
        for (int k = 0; k < n->n; k++) {
            tr_minute *m = minute_at(n, k);
            if (keep)
                count_move(&m->batch, &m->txn);
            else
                m->txn.sends = m->txn.verifies = 0;
        }
        n->lists &= ~(unsigned)IN_TXN;
        if (keep)
            list_push(&tr->batch, n, IN_BATCH);
        tidy(tr, n);
    }
    tr->txn.n = 0;
    /* Not in a transaction SQLite already rolled back: each upsert would then
     * commit on its own. */
    if (!keep || tr->done.n == 0 || sqlite3_get_autocommit(s->wdb))
        return;
    int64_t now = otp_mono_us();
    if (now - tr->last_flush_us < (int64_t)atomic_load(&tr->flush_ms) * 1000)
        return;
    tr->last_flush_us = now;
    flush(s, tr);
}

int sq_traffic_open(sq_store *s)
{
    sq_traffic *tr = calloc(1, sizeof(*tr));
    if (!tr || !(tr->buckets = calloc(INITIAL_BUCKETS, sizeof(*tr->buckets))) ||
        !(tr->sums = calloc(SUM_SLOTS, sizeof(*tr->sums)))) {
        if (tr)
            free(tr->buckets);
        free(tr);
        return -1;
    }
    tr->sum_gen = 1;
    tr->nbuckets = INITIAL_BUCKETS;
    tr->last_flush_us = otp_mono_us();
    atomic_init(&tr->flush_ms, FLUSH_MS);
    s->traffic = tr;
    return 0;
}

void sq_traffic_close(sq_store *s)
{
    sq_traffic *tr = s->traffic;
    if (!tr)
        return;
    /* One transaction; what a failed upsert could not write is lost (as in a
     * crash), what the others wrote is committed. */
    if (tr->done.n && s->w[W_BEGIN] && s->w[W_COMMIT] && s->w[W_ROLLBACK]) {
        int rc = sqlite3_step(s->w[W_BEGIN]);
        sqlite3_reset(s->w[W_BEGIN]);
        if (rc == SQLITE_DONE) {
            flush(s, tr);
            rc = sqlite3_step(s->w[W_COMMIT]);
            sqlite3_reset(s->w[W_COMMIT]);
            if (rc != SQLITE_DONE && !sqlite3_get_autocommit(s->wdb)) {
                sqlite3_step(s->w[W_ROLLBACK]);
                sqlite3_reset(s->w[W_ROLLBACK]);
            }
        }
    }
    for (size_t i = 0; i < tr->nbuckets; i++)
        for (tr_node *n = tr->buckets[i], *next; n; n = next) {
            next = n->next;
            free(n->more);
            free(n);
        }
    free(tr->buckets);
    free(tr->sums);
    free(tr->txn.v);
    free(tr->batch.v);
    free(tr->done.v);
    free(tr->flushed.v);
    free(tr);
    s->traffic = NULL;
}

#if OTPD_TEST_HOOKS
void otp_sqlite_test_traffic_flush_ms(otp_store *base, int ms)
{
    sq_traffic *tr = ((sq_store *)base)->traffic;
    if (tr)
        atomic_store(&tr->flush_ms, ms);
}
#endif
