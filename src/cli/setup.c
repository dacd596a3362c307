/* cli/setup.c — what serve and the commands share before doing anything: the
 * data directory, the server secret, and opening the store.
 *
 * The secret is the pepper of every code hash and the root of the outbox
 * sealing key, so it lives outside the database in a file only its owner can
 * read. A first run creates it: exclusively (O_EXCL, so two processes starting
 * at once cannot each write a different secret — the loser reads the winner's),
 * with mode 0600 from the start (never a window where it is readable), and
 * fsync'ed with its directory before it is used, so a crash cannot leave codes
 * hashed under a secret that is then lost. An existing file that is the wrong
 * size or readable by others is refused rather than repaired: either means
 * something outside otpd touched it, and an operator should look.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates dir and its missing parents with mode 0700 (mkdir -p). */
static int mkdir_p(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path)) {
        snprintf(err, errlen, "data directory '%s': invalid path", dir);
        return -1;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create data directory %s: %s", path, strerror(errno));
            return -1;
        }
        path[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data directory %s: not a directory", dir);
        return -1;
    }
    return 0;
}

/* Reads exactly OTP_SECRET_LEN bytes from fd. */
static int read_all(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* Returns 0 with root filled, 1 if the file does not exist, -1 on error. */
static int read_secret(const char *file, uint8_t root[OTP_SECRET_LEN], char *err, size_t errlen)
{
    uint8_t buf[OTP_SECRET_LEN];
    struct stat st;
    int r = -1;
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, errlen, "cannot open secret file %s: %s", file, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat secret file %s: %s", file, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "secret file %s: not a regular file", file);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, errlen,
                 "secret file %s: permissions %04o give group or others access; "
                 "it must be readable by its owner only (chmod 600 %s)",
                 file, (unsigned)(st.st_mode & 0777), file);
        goto out;
    }
    if (st.st_size != OTP_SECRET_LEN) {
        snprintf(err, errlen, "secret file %s: must be exactly %d bytes, found %lld", file,
                 OTP_SECRET_LEN, (long long)st.st_size);
        goto out;
    }
    errno = 0;
    if (read_all(fd, buf, sizeof(buf))) {
        snprintf(err, errlen, "cannot read secret file %s: %s", file,
                 errno ? strerror(errno) : "short read");
        goto out;
    }
    memcpy(root, buf, sizeof(buf));
    r = 0;
out:
    sodium_memzero(buf, sizeof(buf));
    close(fd);
    return r;
}

/* Makes the new file's directory entry durable too. Best effort: some file
 * systems refuse fsync on a directory, and the file itself is already synced. */
static void sync_parent(const char *file)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(file, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == file) {
        strcpy(dir, "/");
    } else {
        size_t len = (size_t)(slash - file);
        if (len >= sizeof(dir))
            return;
        memcpy(dir, file, len);
        dir[len] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)fsync(fd);
    close(fd);
}

/* Returns 0 with root filled, 1 if someone else created the file first, -1 on error. */
static int create_secret(const char *file, uint8_t root[OTP_SECRET_LEN], char *err, size_t errlen)
{
    uint8_t buf[OTP_SECRET_LEN];
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 1;
        snprintf(err, errlen, "cannot create secret file %s: %s", file, strerror(errno));
        return -1;
    }
    randombytes_buf(buf, sizeof(buf));
    if (write_all(fd, buf, sizeof(buf)) || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write secret file %s: %s", file, strerror(errno));
        sodium_memzero(buf, sizeof(buf));
        close(fd);
        unlink(file);
        return -1;
    }
    if (close(fd) != 0) {
        snprintf(err, errlen, "cannot write secret file %s: %s", file, strerror(errno));
        sodium_memzero(buf, sizeof(buf));
        unlink(file);
        return -1;
    }
    sync_parent(file);
    memcpy(root, buf, sizeof(buf));
    sodium_memzero(buf, sizeof(buf));
    return 0;
}

int otp_cli_load_secret(const otp_config *cfg, uint8_t root[OTP_SECRET_LEN], char *err,
                        size_t errlen)
{
    char fallback[PATH_MAX];
    const char *dir = otp_config_get(cfg, "data_dir");
    const char *file = otp_config_get(cfg, "secret_file");

    if (!dir || !*dir) {
        snprintf(err, errlen, "data_dir is not set");
        return -1;
    }
    if (mkdir_p(dir, err, errlen))
        return -1;
    if (!file || !*file) {
        if ((size_t)snprintf(fallback, sizeof(fallback), "%s/secret", dir) >= sizeof(fallback)) {
            snprintf(err, errlen, "data directory '%s': path too long", dir);
            return -1;
        }
        file = fallback;
    }
    if (sodium_init() < 0) {
        snprintf(err, errlen, "cannot initialise libsodium");
        return -1;
    }
    /* Two rounds: if another process creates the file between our failed
     * open and our O_EXCL create, the second round reads its secret. */
    for (int round = 0; round < 2; round++) {
        int r = read_secret(file, root, err, errlen);
        if (r <= 0)
            return r;
        r = create_secret(file, root, err, errlen);
        if (r <= 0)
            return r;
    }
    snprintf(err, errlen, "secret file %s: appears and disappears; is another process using it?",
             file);
    return -1;
}

/* The path of an SQLite URL ("sqlite:PATH" or a bare path), or NULL for others. */
static const char *sqlite_path(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0) {
        url += 7;
        if (strncmp(url, "//", 2) == 0)
            url += 2;
        return url;
    }
    return strstr(url, "://") ? NULL : url;
}

/* True if path lies inside dir (textually: "dir/…"). */
static bool inside(const char *path, const char *dir)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    return strncmp(path, dir, len) == 0 && path[len] == '/';
}

/* A store setting that was given, or def; -1 with err on a bad value. */
static int store_int(const otp_config *cfg, const char *key, long min, long max, int def, int *ret,
                     char *err, size_t errlen)
{
    long v = def;
    if (otp_config_get(cfg, key) && otp_config_int(cfg, key, min, max, &v, err, errlen))
        return -1;
    *ret = (int)v;
    return 0;
}

int otp_cli_open_store(const otp_config *cfg, bool migrate, otp_store **ret, char *err,
                       size_t errlen)
{
    const char *url = otp_config_get(cfg, "db");
    const char *dir = otp_config_get(cfg, "data_dir");
    otp_store_options opt = {.migrate = migrate};

    if (!url || !*url) {
        snprintf(err, errlen, "db is not set");
        return -1;
    }
    const char *path = sqlite_path(url);
    if (path && dir && *dir && inside(path, dir) && mkdir_p(dir, err, errlen))
        return -1;
    if (store_int(cfg, "store.read_conns", 1, 1024, 4, &opt.read_conns, err, errlen) ||
        store_int(cfg, "store.max_batch", 1, 100000, 256, &opt.max_batch, err, errlen) ||
        store_int(cfg, "store.pool_size", 1, 256, 8, &opt.pool_size, err, errlen))
        return -1;
    return otp_store_open(url, &opt, ret, err, errlen);
}
