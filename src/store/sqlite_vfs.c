/* store/sqlite_vfs.c — the store's VFSes: SQLite's default one with a change
 * to how each read-write connection writes, one for each connection's job.
 *
 * The checkpointer's ("otpd-checkpointer"), database files: writes go to the
 * disk as they are made. A checkpoint copies
 * a thousand or more pages from the WAL into the database file (writes into
 * the page cache) and then fsyncs the file. Without help the kernel sends all
 * of it to the disk at that fsync, megabytes at once, and every commit's
 * fdatasync of the WAL, which the writer thread and so every request in
 * flight waits for, queues behind that burst: the slow commits behind otpd's
 * p99 (docs/performance.md). PostgreSQL meets the same problem with
 * checkpoint_flush_after; this does what it does: after every
 * SQ_VFS_WRITEBACK_BYTES written to a database file it asks the kernel to
 * start writing the file's dirty pages out (sync_file_range(
 * SYNC_FILE_RANGE_WRITE), which does not wait for them), so the final fsync
 * finds little left and the disk sees a steady trickle. It borrows the
 * database file's own descriptor for that (see capture_open).
 *
 * It trickles only in the checkpointer thread: sync_file_range can wait when
 * the disk's queue is full, which the writer thread must not (its small
 * checkpoints at a WAL restart go out at their fsync, as before).
 *
 * The writer's ("otpd-writer"), WAL files: a commit's writes are one or two
 * pwrites. SQLite writes every
 * frame of a commit with two calls (its 24-byte header, then the page), ~90
 * pwrite(2)s for a batch of sends, ~7% of a send's CPU (perf). Here writes
 * that follow each other in the file are gathered in a buffer
 * (SQ_VFS_WAL_BUFFER bytes: the most the unix VFS writes at once) and written
 * as one before anything that needs them in the file: a sync (every
 * commit ends with one: synchronous=FULL is required, see below), a read, a
 * truncate, a size query, a file control, close, or a write elsewhere. An
 * error of that late write is the error of the call that caused it (a failed
 * sync fails the commit, as a failed write would have).
 *
 * Only for connections with synchronous=FULL (or EXTRA): other readers learn
 * of new frames from the WAL index, which SQLite updates after the commit's
 * sync; without that sync the frames could still be here when they look.
 * sqlite_schema.c and sqlite_checkpoint.c set FULL right after opening, and
 * the unit tests check it.
 *
 * Every other call, and every other file, goes straight to the default VFS. Nothing
 * about durability changes: SQLite's syncs still decide when anything is on
 * disk. */
#include "store/sqlite_internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <string.h>

typedef struct wb_file {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, just after this struct */
    int fd; /* the real file's own descriptor (borrowed), for sync_file_range; -1: none */
    sqlite3_int64 pending; /* bytes written since writeback was last started */
    bool wal;              /* a WAL file: writes are gathered */
    char *buf;             /* the gathered writes (SQ_VFS_WAL_BUFFER, made at first use) */
    int buf_len;
    sqlite3_int64 buf_at; /* the file offset of buf[0] */
} wb_file;

_Static_assert(SQ_VFS_WAL_BUFFER <= 0x1ffff, "the unix VFS writes at most 0x1ffff bytes at once");

static sqlite3_vfs *root; /* the default VFS */
static atomic_uint_fast64_t starts, wal_writes;

/* Writes what a WAL file has gathered, as one write. On failure the bytes are
 * kept and written again at the next flush, so that no sync can succeed
 * without them. */
static int flush(wb_file *w)
{
    if (w->buf_len == 0)
        return SQLITE_OK;
    int rc = w->real->pMethods->xWrite(w->real, w->buf, w->buf_len, w->buf_at);
    if (rc != SQLITE_OK)
        return rc;
    w->buf_len = 0;
    atomic_fetch_add_explicit(&wal_writes, 1, memory_order_relaxed);
    return SQLITE_OK;
}

/* Flushes first (WAL files), for calls that need the writes in the file. A
 * failed flush is an I/O error of the call (not SQLITE_FULL, which SQLite may
 * answer by rolling back one statement only): the pager then rolls the whole
 * transaction back. */
#define FLUSHED(f)                                                                                 \
    do {                                                                                           \
        if (flush((wb_file *)(f)) != SQLITE_OK)                                                    \
            return SQLITE_IOERR_WRITE;                                                             \
    } while (0)

#define REAL(f) (((wb_file *)(f))->real)

static int wb_close(sqlite3_file *f)
{
    wb_file *w = (wb_file *)f;
    /* Anything still gathered belongs to a transaction that never committed
     * (a commit flushes at its sync): written if it can be, never needed. */
    flush(w);
    w->fd = -1; /* the real file's: it closes it */
    sqlite3_free(w->buf);
    w->buf = NULL;
    return w->real->pMethods->xClose(w->real);
}

static int wb_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    FLUSHED(f);
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

/* A WAL write: appended to the buffer when it follows what is there. */
static int gather(wb_file *w, const void *data, int n, sqlite3_int64 off)
{
    if (!w->buf && !(w->buf = sqlite3_malloc(SQ_VFS_WAL_BUFFER)))
        return w->real->pMethods->xWrite(w->real, data, n, off);
    if (w->buf_len > 0 && (off != w->buf_at + w->buf_len || w->buf_len + n > SQ_VFS_WAL_BUFFER)) {
        int rc = flush(w);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (n > SQ_VFS_WAL_BUFFER)
        return w->real->pMethods->xWrite(w->real, data, n, off);
    if (w->buf_len == 0)
        w->buf_at = off;
    memcpy(w->buf + w->buf_len, data, (size_t)n);
    w->buf_len += n;
    return SQLITE_OK;
}

static int wb_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    wb_file *w = (wb_file *)f;
    if (w->wal)
        return gather(w, buf, n, off);
    int rc = w->real->pMethods->xWrite(w->real, buf, n, off);
    if (rc == SQLITE_OK && w->fd >= 0 && (w->pending += n) >= SQ_VFS_WRITEBACK_BYTES) {
        w->pending = 0;
        /* Starts writeback of every dirty page of the file; an error only
         * means the fsync will have more to do. */
        if (sync_file_range(w->fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0)
            atomic_fetch_add_explicit(&starts, 1, memory_order_relaxed);
    }
    return rc;
}

static int wb_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    FLUSHED(f);
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int wb_sync(sqlite3_file *f, int flags)
{
    wb_file *w = (wb_file *)f;
    FLUSHED(f);
    w->pending = 0;
    return w->real->pMethods->xSync(w->real, flags);
}

static int wb_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    FLUSHED(f);
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int wb_lock(sqlite3_file *f, int level)
{
    return REAL(f)->pMethods->xLock(REAL(f), level);
}

static int wb_unlock(sqlite3_file *f, int level)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int wb_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int wb_file_control(sqlite3_file *f, int op, void *arg)
{
    FLUSHED(f);
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int wb_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int wb_device_characteristics(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

/* Shared memory (the WAL index) and memory mapping: version 2 and 3 methods,
 * which the default VFS has. */
static int wb_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, pp);
}

static int wb_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void wb_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int wb_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int wb_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}

static int wb_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods wb_io = {
    .iVersion = 3,
    .xClose = wb_close,
    .xRead = wb_read,
    .xWrite = wb_write,
    .xTruncate = wb_truncate,
    .xSync = wb_sync,
    .xFileSize = wb_file_size,
    .xLock = wb_lock,
    .xUnlock = wb_unlock,
    .xCheckReservedLock = wb_check_reserved,
    .xFileControl = wb_file_control,
    .xSectorSize = wb_sector_size,
    .xDeviceCharacteristics = wb_device_characteristics,
    .xShmMap = wb_shm_map,
    .xShmLock = wb_shm_lock,
    .xShmBarrier = wb_shm_barrier,
    .xShmUnmap = wb_shm_unmap,
    .xFetch = wb_fetch,
    .xUnfetch = wb_unfetch,
};

/* The checkpointer's trickle needs the database file's descriptor, and must
 * not open one of its own: closing any descriptor of a file drops every POSIX
 * lock the process holds on it (the writer's, the readers'), which is why
 * SQLite's unix VFS never closes one while locks are held. SQLite keeps the
 * descriptor private, so the default VFS's "open" system call is replaced
 * (xSetSystemCall, its documented hook, once, before any connection of the
 * store opens) by one that notes the descriptor it returns while this thread
 * is inside our xOpen of a database file. The file owns it; we only borrow it
 * until xClose. */
static sqlite3_syscall_ptr real_open;
static _Thread_local bool capturing;
static _Thread_local int captured;

static int capture_open(const char *path, int flags, int mode)
{
    int fd = ((int (*)(const char *, int, int))real_open)(path, flags, mode);
    if (capturing)
        captured = fd;
    return fd;
}

static int wb_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    sq_vfs_role role = (sq_vfs_role)(intptr_t)vfs->pAppData;
    wb_file *w = (wb_file *)f;
    w->real = (sqlite3_file *)(w + 1);
    w->fd = -1;
    w->pending = 0;
    w->wal = role == SQ_VFS_WRITER && (flags & SQLITE_OPEN_WAL);
    w->buf = NULL;
    w->buf_len = 0;
    w->buf_at = 0;
    bool want_fd = role == SQ_VFS_CHECKPOINTER && (flags & SQLITE_OPEN_MAIN_DB);
    capturing = want_fd;
    captured = -1;
    int rc = root->xOpen(root, name, w->real, flags, out_flags);
    capturing = false;
    f->pMethods = NULL; /* SQLite calls no method of a file that did not open */
    if (rc != SQLITE_OK) {
        if (w->real->pMethods)
            w->real->pMethods->xClose(w->real);
        return rc;
    }
    if (!w->real->pMethods)
        return SQLITE_CANTOPEN;
    /* The methods above forward version 3's. A database file's include shared
     * memory, unless nolock=1 took it away (SQLite then offers no WAL mode on
     * the real file, and must not on ours). */
    if (w->real->pMethods->iVersion < 3 ||
        ((flags & SQLITE_OPEN_MAIN_DB) && !w->real->pMethods->xShmMap)) {
        w->real->pMethods->xClose(w->real);
        return SQLITE_CANTOPEN;
    }
    /* Gathering is safe only when SQLite writes no frame after a commit's
     * last sync: without powersafe overwrite (psow=0) it pads the commit with
     * frames written after a mid-commit sync. */
    if (w->wal) {
        sqlite3_file *db = sqlite3_database_file_object(name);
        if (!db || !db->pMethods ||
            !(db->pMethods->xDeviceCharacteristics(db) & SQLITE_IOCAP_POWERSAFE_OVERWRITE))
            w->wal = false;
    }
    if (want_fd)
        w->fd = captured; /* -1 if the VFS reused a descriptor: then no trickle */
    f->pMethods = &wb_io;
    return SQLITE_OK;
}

/* The rest of the VFS is the default one's. */
static int wb_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return root->xDelete(root, name, sync_dir);
}

static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return root->xAccess(root, name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return root->xFullPathname(root, name, n, out);
}

static void *wb_dl_open(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return root->xDlOpen(root, name);
}

static void wb_dl_error(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    root->xDlError(root, n, msg);
}

static void (*wb_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return root->xDlSym(root, h, sym);
}

static void wb_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    root->xDlClose(root, h);
}

static int wb_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return root->xRandomness(root, n, out);
}

static int wb_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return root->xSleep(root, us);
}

static int wb_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return root->xCurrentTime(root, out);
}

static int wb_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return root->xGetLastError(root, n, out);
}

static int wb_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return root->xCurrentTimeInt64(root, out);
}

/* One VFS per role, the same functions; pAppData is the role. */
#define WB_VFS(role, name)                                                                         \
    {                                                                                              \
        .iVersion = 2, .zName = name, .pAppData = (void *)(intptr_t)(role), .xOpen = wb_open,      \
        .xDelete = wb_delete, .xAccess = wb_access, .xFullPathname = wb_full_pathname,             \
        .xDlOpen = wb_dl_open, .xDlError = wb_dl_error, .xDlSym = wb_dl_sym,                       \
        .xDlClose = wb_dl_close, .xRandomness = wb_randomness, .xSleep = wb_sleep,                 \
        .xCurrentTime = wb_current_time, .xGetLastError = wb_last_error,                           \
        .xCurrentTimeInt64 = wb_current_time_int64,                                                \
    }
static sqlite3_vfs vfs_of[] = {
    [SQ_VFS_WRITER] = WB_VFS(SQ_VFS_WRITER, "otpd-writer"),
    [SQ_VFS_CHECKPOINTER] = WB_VFS(SQ_VFS_CHECKPOINTER, "otpd-checkpointer"),
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool registered;

static void register_vfs(void)
{
    root = sqlite3_vfs_find(NULL);
    if (!root || root->iVersion < 3)
        return;
    real_open = root->xGetSystemCall(root, "open");
    if (!real_open ||
        root->xSetSystemCall(root, "open", (sqlite3_syscall_ptr)capture_open) != SQLITE_OK)
        return;
    registered = true;
    for (size_t i = 0; i < sizeof(vfs_of) / sizeof(vfs_of[0]); i++) {
        vfs_of[i].szOsFile = (int)sizeof(wb_file) + root->szOsFile;
        vfs_of[i].mxPathname = root->mxPathname;
        if (sqlite3_vfs_register(&vfs_of[i], 0) != SQLITE_OK)
            registered = false;
    }
}

const char *sq_vfs(sq_vfs_role role)
{
    pthread_once(&once, register_vfs);
    return registered ? vfs_of[role].zName : NULL;
}

int sq_vfs_open(const char *path, sqlite3 **db, int flags, sq_vfs_role role)
{
    const char *vfs = sq_vfs(role);
    int rc = sqlite3_open_v2(path, db, flags, vfs);
    if (rc != SQLITE_OK && vfs) { /* then on the default VFS */
        sqlite3_close(*db);
        *db = NULL;
        rc = sqlite3_open_v2(path, db, flags, NULL);
    }
    return rc;
}

uint64_t sq_vfs_writeback_starts(void)
{
    return atomic_load_explicit(&starts, memory_order_relaxed);
}

uint64_t sq_vfs_wal_writes(void)
{
    return atomic_load_explicit(&wal_writes, memory_order_relaxed);
}
