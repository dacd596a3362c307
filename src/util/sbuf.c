/* util/sbuf.c — a growable text (util/sbuf.h): its growth and release. */
#include "util/sbuf.h"

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
