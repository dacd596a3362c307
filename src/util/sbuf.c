/* util/sbuf.c — a growable text (util/sbuf.h): its growth and release, and a
 * JSON string appended to it. */
#include "util/sbuf.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

bool otp_sbuf_grow(otp_sbuf *b, size_t n)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = cap <= OTP_SBUF_MAX ? realloc(b->p, cap) : NULL;
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void otp_sbuf_free(otp_sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

bool otp_sbuf_json_str(otp_sbuf *b, const char *s)
{
    size_t n = strlen(s);
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++) {
        unsigned char c = (unsigned char)s[i];
        plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
    }
    if (plain) { /* the common case: one growth check, no escaping */
        if (otp_sbuf_reserve(b, n + 2)) {
            b->p[b->len++] = '"';
            memcpy(b->p + b->len, s, n);
            b->len += n;
            b->p[b->len++] = '"';
            b->p[b->len] = '\0';
        }
        return true;
    }
    /* Not checked here: json_dumpb refuses a string that is not UTF-8, so NULL
     * means only that memory ran out. */
    json_t *j = json_stringn_nocheck(s, n);
    if (!j) {
        b->failed = true;
        return true;
    }
    size_t room = n * 6 + 2; /* \u00XX for every byte at worst */
    if (!otp_sbuf_reserve(b, room)) {
        sodium_memzero((char *)json_string_value(j), n);
        json_decref(j);
        return true;
    }
    size_t w = json_dumpb(j, b->p + b->len, room, JSON_ENCODE_ANY);
    /* jansson's copy is freed without being wiped; an SMS text holds a code. */
    sodium_memzero((char *)json_string_value(j), n);
    json_decref(j);
    if (w == 0 || w > room) {
        /* Not UTF-8 (all json_dumpb refuses in a buffer this large): what
         * it wrote before it stopped is wiped and b left as it was. */
        sodium_memzero(b->p + b->len, room);
        b->p[b->len] = '\0';
        return false;
    }
    b->len += w;
    b->p[b->len] = '\0';
    return true;
}
