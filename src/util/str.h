/* util/str.h — bounded string copy for the request path.
 *
 * otp_str_copy(dst, size, src) does what snprintf(dst, size, "%s", src) does
 * (copies at most size - 1 bytes, always terminates; size must be > 0) without
 * going through printf: the HTTP layer and the send handler copy several
 * fields per request.
 *
 * otp_utf8_cut(s, max) is how many bytes of the UTF-8 string s to keep to show
 * at most max of them without splitting a character: a quote in an error
 * message must stay valid UTF-8, or its JSON cannot be written.
 */
#ifndef OTP_UTIL_STR_H
#define OTP_UTIL_STR_H

#include <stddef.h>
#include <string.h>

static inline void otp_str_copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static inline int otp_utf8_cut(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return (int)n;
}

#endif
