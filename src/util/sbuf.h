/* util/sbuf.h — a growable text, for bodies and literals built piece by piece
 * (the GET /otp/{id} body, the file provider's lines, PostgreSQL array
 * literals).
 *
 * Zero-initialised it is empty; it stays NUL-terminated; a failed growth (out
 * of memory, or past OTP_SBUF_MAX) sets failed and makes every later append a
 * no-op, so a builder checks once at the end. otp_sbuf_free() releases it.
 * Appends are inline (a status body makes a few dozen); growing is not.
 */
#ifndef OTP_UTIL_SBUF_H
#define OTP_UTIL_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define OTP_SBUF_MAX (64u << 20)

typedef struct otp_sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} otp_sbuf;

/* Grows b to hold n more bytes and the NUL; false (failed set) if it cannot. */
bool otp_sbuf_grow(otp_sbuf *b, size_t n);
void otp_sbuf_free(otp_sbuf *b);

/* Room for n more bytes (and the NUL); false once b has failed. */
static inline bool otp_sbuf_reserve(otp_sbuf *b, size_t n)
{
    if (b->failed)
        return false;
    return b->len + n + 1 <= b->cap || otp_sbuf_grow(b, n);
}

static inline void otp_sbuf_put(otp_sbuf *b, const char *s, size_t n)
{
    if (!otp_sbuf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void otp_sbuf_str(otp_sbuf *b, const char *s)
{
    otp_sbuf_put(b, s, strlen(s));
}

/* Appends s as a JSON string, the bytes json_dumps gives for it. A string with
 * nothing to escape is copied; any other is escaped by jansson, so jansson
 * decides every escape. Returns false, b unchanged, if s is not UTF-8; running
 * out of memory (for b, or for jansson's copy) sets b->failed as any append
 * does. */
bool otp_sbuf_json_str(otp_sbuf *b, const char *s);

#endif
