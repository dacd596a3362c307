/* bench/sqlstat.c — an LD_PRELOAD shim that times every sqlite3_step() of a
 * process, per SQL statement, so that bench/profile.sh can say which
 * statements the store's time goes to (COMMIT included, with its fdatasync).
 * Not part of otpd; built by bench/profile.sh with
 *
 *   cc -O2 -shared -fPIC -o sqlstat.so bench/sqlstat.c -ldl -lpthread
 *
 * and loaded with LD_PRELOAD=…/sqlstat.so SQLSTAT_OUT=FILE. SIGUSR2 asks for a
 * report: the next sqlite3_step() after it (on any thread) appends one to FILE
 * ("calls total_ms mean_us max_us thread sql", one line per statement and
 * thread kind, "--- report" first) and starts counting afresh.
 *
 * Time is wall time (CLOCK_MONOTONIC) around the real sqlite3_step(), keyed by
 * the statement's SQL text pointer (one per prepared statement); statements
 * with the same text prepared on several connections are reported per thread
 * name (the store's writer is "otpd-store", readers are the HTTP threads).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct sqlite3_stmt sqlite3_stmt;

#define SLOTS 4096

typedef struct slot {
    const char *sql; /* NULL: free */
    char thread[16];
    uint64_t calls, ns, max_ns;
} slot;

static slot slots[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int want_report;
static int (*real_step)(sqlite3_stmt *);
static const char *(*real_sql)(sqlite3_stmt *);

static void on_usr2(int sig)
{
    (void)sig;
    atomic_store(&want_report, 1);
}

__attribute__((constructor)) static void init(void)
{
    real_step = (int (*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_step");
    real_sql = (const char *(*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_sql");
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Caller holds lock. */
static void report(void)
{
    const char *path = getenv("SQLSTAT_OUT");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) {
        fprintf(f, "--- report\n");
        for (int i = 0; i < SLOTS; i++) {
            slot *s = &slots[i];
            if (!s->sql || !s->calls)
                continue;
            char one[160];
            size_t n = 0;
            for (const char *p = s->sql; *p && n < sizeof(one) - 1; p++)
                one[n++] = (*p == '\n' || *p == '\t') ? ' ' : *p;
            one[n] = '\0';
            fprintf(f, "%llu %.3f %.2f %.1f %s %s\n", (unsigned long long)s->calls, s->ns / 1e6,
                    s->ns / 1e3 / s->calls, s->max_ns / 1e3, s->thread[0] ? s->thread : "?", one);
        }
        fclose(f);
    }
    for (int i = 0; i < SLOTS; i++)
        slots[i].calls = slots[i].ns = slots[i].max_ns = 0;
}

int sqlite3_step(sqlite3_stmt *st)
{
    uint64_t t0 = now_ns();
    int rc = real_step(st);
    uint64_t dt = now_ns() - t0;
    const char *sql = real_sql(st);
    if (!sql)
        sql = "(no sql)";
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    /* HTTP threads are "MHD-worker": one key for all of them */
    uintptr_t h = ((uintptr_t)sql >> 4) ^ (uintptr_t)(unsigned char)name[0] * 2654435761u;
    pthread_mutex_lock(&lock);
    if (atomic_exchange(&want_report, 0))
        report();
    for (unsigned i = 0; i < SLOTS; i++) {
        slot *s = &slots[(h + i) % SLOTS];
        if (!s->sql) {
            s->sql = sql;
            memcpy(s->thread, name, sizeof(name));
        }
        if (s->sql == sql && strcmp(s->thread, name) == 0) {
            s->calls++;
            s->ns += dt;
            if (dt > s->max_ns)
                s->max_ns = dt;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}
