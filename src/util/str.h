/* util/str.h — bounded string copy for the request path.
 *
 * otp_str_copy(dst, size, src) does what snprintf(dst, size, "%s", src) does
 * (copies at most size - 1 bytes, always terminates; size must be > 0) without
 * going through printf: the HTTP layer and the send handler copy several
 * fields per request.
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

#endif
