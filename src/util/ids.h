/* util/ids.h — public identifiers and base62.
 *
 * Public ids are a 4-character type prefix ("req_", "msg_", "acc_", "key_") then
 * 22 base62 characters: 9 encode the creation time in ms (so ids sort by time and
 * SQLite appends to its indexes instead of writing all over them), 13 are random
 * from libsodium (~77 bits, unguessable).
 */
#ifndef OTP_UTIL_IDS_H
#define OTP_UTIL_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTP_ID_LEN 26
#define OTP_ID_SIZE (OTP_ID_LEN + 1)

/* Writes a new NUL-terminated id into out (OTP_ID_SIZE bytes). prefix is 4 chars. */
void otp_id_new(const char *prefix, int64_t now_ms, char *out);
/* True if s looks like an id with this prefix (length and alphabet only). */
bool otp_id_valid(const char *s, const char *prefix);
/* Writes len random base62 characters (no NUL) into out, from libsodium. */
void otp_base62_random(char *out, size_t len);
/* Encodes value as exactly width base62 digits (most significant first, zero-padded). */
void otp_base62_encode_fixed(uint64_t value, char *out, size_t width);

/* A ledger entry's public id: "ltx_" and its row id as 11 base62 digits (any
 * int64 fits), so ids sort as entries were made. */
#define OTP_LEDGER_ID_DIGITS 11
#define OTP_LEDGER_ID_SIZE (4 + OTP_LEDGER_ID_DIGITS + 1)
void otp_ledger_id_format(int64_t id, char out[OTP_LEDGER_ID_SIZE]);

#endif
