/* store/sqlite_pcache.c — SQLite's own page cache, with the page number that
 * b-tree balancing borrows for a moment kept out of it.
 *
 * When SQLite splits or merges b-tree pages (balance_nonroot in btree.c) it
 * puts the new pages in ascending page-number order, swapping two pages'
 * numbers through a temporary one: the "pending byte" page, 1 GiB into the
 * file (page 262,145 at 4 KiB), which no database page ever uses. The
 * default cache (pcache1) remembers the largest page number it has seen
 * since its last truncation, and every commit truncates the cache to the
 * database's size; with that remembered number 1 GiB away, the truncation
 * walks the whole hash table of the cache, every bucket and every page,
 * looking for pages to drop that do not exist. With a 16 MiB cache that is
 * ~4,000 pointer-chasing cache misses on the writer thread at every commit
 * whose balancing swapped page numbers: nearly every batch of sends (random
 * index keys) and of verifies (rows that grow), 3-4% of all of otpd's CPU
 * samples (docs/performance.md).
 *
 * So SQLite's default cache is installed again with a thin layer in front
 * (sqlite3_config(SQLITE_CONFIG_PCACHE2), the documented way to plug in a
 * page cache) that files a page under number 0 while it carries the
 * borrowed number. Page 0 does not exist either, and it is below every
 * truncation limit, so the remembered largest number stays a real page's.
 * Every other call goes straight through.
 *
 * That is exact because the borrowed number is never a real database page
 * and holds a page only inside a move (sqlite3PcacheMove: balance_nonroot's
 * three renumberings, and the pager's own swap when it moves a page), whose
 * calls run back to back: no truncation can fall in between. SQLite's header
 * says page keys start at 1; key 0 relies on pcache1 (3.40) looking it up,
 * filing it, renumbering and truncating it like any other key, which the
 * unit test checks against the real cache. Should a page ever sit under 0 at
 * a truncation anyway, pc_truncate drops it with the pages it stands for.
 *
 * sqlite3_config() is not thread-safe: sq_pcache_install() must run before
 * any other thread uses SQLite. The store calls it first thing when it
 * opens, and only the store uses SQLite in otpd. */
#include "store/sqlite_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* btree.c's PENDING_BYTE: a variable inside SQLite, 0x40000000 unless a test
 * changes it (SQLITE_TESTCTRL_PENDING_BYTE, which otpd never calls). */
#define PC_PENDING_BYTE 0x40000000u

typedef struct pc_cache {
    sqlite3_pcache *inner;
    unsigned borrowed; /* the pending-byte page's number at this page size */
} pc_cache;

static sqlite3_pcache_methods2 inner;
static atomic_uint_fast64_t parked;

static unsigned key(const pc_cache *c, unsigned k)
{
    return k == c->borrowed ? 0 : k;
}

static int pc_init(void *arg)
{
    (void)arg;
    return inner.xInit ? inner.xInit(inner.pArg) : SQLITE_OK;
}

static void pc_shutdown(void *arg)
{
    (void)arg;
    if (inner.xShutdown)
        inner.xShutdown(inner.pArg);
}

static sqlite3_pcache *pc_create(int page_size, int extra, int purgeable)
{
    pc_cache *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    c->inner = inner.xCreate(page_size, extra, purgeable);
    if (!c->inner) {
        free(c);
        return NULL;
    }
    c->borrowed = page_size > 0 ? PC_PENDING_BYTE / (unsigned)page_size + 1 : 0;
    return (sqlite3_pcache *)c;
}

static void pc_cachesize(sqlite3_pcache *p, int n)
{
    pc_cache *c = (pc_cache *)p;
    inner.xCachesize(c->inner, n);
}

static int pc_pagecount(sqlite3_pcache *p)
{
    pc_cache *c = (pc_cache *)p;
    return inner.xPagecount(c->inner);
}

static sqlite3_pcache_page *pc_fetch(sqlite3_pcache *p, unsigned k, int create)
{
    pc_cache *c = (pc_cache *)p;
    return inner.xFetch(c->inner, key(c, k), create);
}

static void pc_unpin(sqlite3_pcache *p, sqlite3_pcache_page *page, int discard)
{
    pc_cache *c = (pc_cache *)p;
    inner.xUnpin(c->inner, page, discard);
}

static void pc_rekey(sqlite3_pcache *p, sqlite3_pcache_page *page, unsigned from, unsigned to)
{
    pc_cache *c = (pc_cache *)p;
    if (to == c->borrowed)
        atomic_fetch_add_explicit(&parked, 1, memory_order_relaxed);
    inner.xRekey(c->inner, page, key(c, from), key(c, to));
}

static void pc_truncate(sqlite3_pcache *p, unsigned limit)
{
    pc_cache *c = (pc_cache *)p;
    inner.xTruncate(c->inner, limit);
    /* Never in practice (see the top of the file): a page under 0 stands for
     * the borrowed number, so it goes when that number is cut off. The caller
     * holds no page at or above the limit. */
    if (limit <= c->borrowed) {
        sqlite3_pcache_page *page = inner.xFetch(c->inner, 0, 0);
        if (page)
            inner.xUnpin(c->inner, page, 1);
    }
}

static void pc_destroy(sqlite3_pcache *p)
{
    pc_cache *c = (pc_cache *)p;
    inner.xDestroy(c->inner);
    free(c);
}

static void pc_shrink(sqlite3_pcache *p)
{
    pc_cache *c = (pc_cache *)p;
    inner.xShrink(c->inner);
}

static const sqlite3_pcache_methods2 methods = {
    .iVersion = 1,
    .xInit = pc_init,
    .xShutdown = pc_shutdown,
    .xCreate = pc_create,
    .xCachesize = pc_cachesize,
    .xPagecount = pc_pagecount,
    .xFetch = pc_fetch,
    .xUnpin = pc_unpin,
    .xRekey = pc_rekey,
    .xTruncate = pc_truncate,
    .xDestroy = pc_destroy,
    .xShrink = pc_shrink,
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool installed;

static void install(void)
{
    /* Both calls fail (SQLITE_MISUSE) once SQLite is initialized: then the
     * default cache stays, which is only slower. */
    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &inner) != SQLITE_OK || !inner.xCreate ||
        !inner.xFetch || !inner.xRekey || !inner.xTruncate || !inner.xShrink)
        return;
    installed = sqlite3_config(SQLITE_CONFIG_PCACHE2, &methods) == SQLITE_OK;
}

bool sq_pcache_install(void)
{
    pthread_once(&once, install);
    return installed;
}

uint64_t sq_pcache_parked(void)
{
    return atomic_load_explicit(&parked, memory_order_relaxed);
}
