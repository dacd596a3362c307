/* util/random.h — fast CSPRNG bytes for the request path.
 *
 * libsodium 1.0.18's randombytes_buf() makes one getrandom(2) system call per
 * call; a send needs ~70 small draws (digits, ids, nonce, trace id), and those
 * syscalls were ~15% of the server's CPU. So each thread keeps a 4 KiB pool of
 * ChaCha20 keystream (randombytes_buf_deterministic) keyed by 32 bytes from the
 * kernel: one syscall per 4 KiB. Bytes are wiped from the pool as they are handed
 * out, so a later memory disclosure does not reveal earlier draws.
 */
#ifndef OTP_UTIL_RANDOM_H
#define OTP_UTIL_RANDOM_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf with n cryptographically secure random bytes. Thread-safe. */
void otp_random_bytes(void *buf, size_t n);
/* A uniform integer in [0, upper) without modulo bias (rejection sampling);
 * 0 if upper < 2. Thread-safe. */
uint32_t otp_random_uniform(uint32_t upper);

#endif
