/* delivery/file_provider.c — the `file` provider: one JSON line per message.
 *
 * For development and tests: instead of an SMS gateway, every accepted message
 * becomes a line {"messageId","to","text","createdAt"} appended to a file
 * (default <data_dir>/sms.jsonl), so a test can read the code a user would have
 * received and map it to its request by message id.
 *
 * A batch is encoded first, outside the lock, then written with one write(2)
 * (looped only for a short write) under the provider's mutex on an O_APPEND
 * descriptor: lines from parallel batches never interleave, and the lines are in
 * the file before send() returns, so whoever sees a message marked sent can read
 * it. The file holds codes in clear, as a phone's inbox would; it is created with
 * mode 0600, and the in-memory copies are wiped once written.
 */
#include "delivery/provider.h"
#include "util/clock.h"
#include "util/sbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct file_provider {
    otp_provider base;
    pthread_mutex_t lock;
    int fd;
    char path[1024];
} file_provider;

static int file_create(const otp_config *cfg, const char *section, const otp_dlr_sink *dlr,
                       otp_provider **ret, char *err, size_t errlen)
{
    (void)dlr;
    file_provider *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "%s: out of memory", section);
        return -1;
    }
    if (otp_provider_init(&p->base, &otp_provider_file_ops, cfg, section, err, errlen)) {
        free(p);
        return -1;
    }
    p->fd = -1;

    char key[160];
    snprintf(key, sizeof(key), "%s.path", section);
    const char *path = otp_config_get(cfg, key);
    const char *origin = otp_config_origin(cfg, key);
    int n;
    if (path) {
        n = snprintf(p->path, sizeof(p->path), "%s", path);
    } else {
        const char *dir = otp_config_get(cfg, "data_dir");
        size_t len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/')
            len--;
        n = snprintf(p->path, sizeof(p->path), "%.*s%ssms.jsonl", (int)len, dir,
                     len > 0 && dir[len - 1] == '/' ? "" : "/");
    }
    if (n < 0 || (size_t)n >= sizeof(p->path) || p->path[0] == '\0') {
        snprintf(err, errlen, "%s = \"%.64s\" (from %s): empty or longer than %zu bytes", key,
                 p->path, origin, sizeof(p->path) - 1);
        free(p);
        return -1;
    }
    p->fd = open(p->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (p->fd < 0) {
        snprintf(err, errlen, "%s = \"%s\" (from %s): cannot open: %s", key, p->path, origin,
                 strerror(errno));
        free(p);
        return -1;
    }
    pthread_mutex_init(&p->lock, NULL);
    *ret = &p->base;
    return 0;
}

static void file_destroy(otp_provider *base)
{
    file_provider *p = (file_provider *)base;
    if (!p)
        return;
    if (p->fd >= 0) {
        close(p->fd);
        pthread_mutex_destroy(&p->lock);
    }
    free(p);
}

/* The most one message's line can take: every byte of its strings escaped as
 * \u00XX, the keys, the time and the '\n'. */
static size_t line_bound(const otp_sms *m)
{
    size_t n = sizeof("{'messageId':'','to':'','text':'','createdAt':''}\n") + OTP_ISO8601_LEN;
    if (m->message_id && m->to && m->text)
        n += 6 * (strlen(m->message_id) + strlen(m->to) + strlen(m->text));
    return n;
}

/* Appends one message as a JSON line with its '\n' to b, the bytes
 * json_dumps(JSON_COMPACT) gives for the object. Returns OTP_SEND_ACCEPTED, or
 * OTP_SEND_PERMANENT with b as it was if a field is missing or not UTF-8 (the
 * message can never be written). */
static otp_send_outcome encode(otp_sbuf *b, const otp_sms *m)
{
    if (!m->message_id || !m->to || !m->text)
        return OTP_SEND_PERMANENT;
    size_t start = b->len;
    char created[OTP_ISO8601_LEN + 1];
    otp_time_iso8601(m->created_at_ms, created);
    otp_sbuf_str(b, "{\"messageId\":");
    bool ok = otp_sbuf_json_str(b, m->message_id);
    otp_sbuf_str(b, ",\"to\":");
    ok = ok && otp_sbuf_json_str(b, m->to);
    otp_sbuf_str(b, ",\"text\":");
    ok = ok && otp_sbuf_json_str(b, m->text);
    otp_sbuf_str(b, ",\"createdAt\":\"");
    otp_sbuf_str(b, created);
    otp_sbuf_str(b, "\"}\n");
    if (!ok) {
        sodium_memzero(b->p + start, b->len - start);
        b->len = start;
        b->p[start] = '\0';
        return OTP_SEND_PERMANENT;
    }
    return OTP_SEND_ACCEPTED;
}

/* Writes all of buf; returns 0 or an errno value. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void file_send(otp_provider *base, const otp_sms *msgs, size_t n, otp_send_result *results)
{
    file_provider *p = (file_provider *)base;
    /* One buffer for the batch, sized so that it never grows: a growth would
     * leave a copy of the codes in freed memory. */
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += line_bound(&msgs[i]);
    otp_sbuf b = {.p = malloc(cap), .cap = cap};
    if (b.p)
        b.p[0] = '\0';
    else
        b.failed = true;
    for (size_t i = 0; i < n; i++) {
        results[i] = (otp_send_result){.outcome = OTP_SEND_TEMPORARY};
        if (!b.failed && encode(&b, &msgs[i]) == OTP_SEND_PERMANENT) {
            results[i].outcome = OTP_SEND_PERMANENT;
            snprintf(results[i].error, sizeof(results[i].error),
                     "a field is missing or not valid UTF-8");
        }
    }
    int e = 0;
    if (!b.failed && b.len > 0) {
        pthread_mutex_lock(&p->lock);
        e = write_all(p->fd, b.p, b.len);
        pthread_mutex_unlock(&p->lock);
    }
    for (size_t i = 0; i < n; i++) {
        if (results[i].outcome == OTP_SEND_PERMANENT)
            continue;
        if (b.failed)
            snprintf(results[i].error, sizeof(results[i].error), "out of memory");
        else if (e == 0)
            results[i].outcome = OTP_SEND_ACCEPTED;
        else
            snprintf(results[i].error, sizeof(results[i].error), "write to %.160s failed: %s",
                     p->path, strerror(e));
    }
    if (b.p)
        sodium_memzero(b.p, b.cap);
    free(b.p);
}

static bool file_ready(otp_provider *base)
{
    return ((file_provider *)base)->fd >= 0;
}

static const char *const file_keys[] = {"path", NULL};

const otp_provider_ops otp_provider_file_ops = {
    .type = "file",
    .keys = file_keys,
    .create = file_create,
    .destroy = file_destroy,
    .send = file_send,
    .ready = file_ready,
};
