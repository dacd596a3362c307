/* api/status_json.c — the body of GET /otp/{id} (and of a cancel), written
 * straight into a buffer.
 *
 * Building the object with json_pack and writing it with json_dumps was half
 * of a status read's instructions (docs/performance.md, item 26). The bytes
 * here are the ones json_dumps(JSON_COMPACT) gave for that object, keys in the
 * same order: a unit test compares the two on ordinary and awkward values. Ids,
 * times, numbers and names are written as they are; a string with anything
 * JSON escapes (a quote, a backslash, a control or non-ASCII byte) is handed to
 * jansson, which escapes it, or refuses it if it is not UTF-8, as json_pack
 * would have. So jansson still decides every escape.
 */
#include "api/api.h"
#include "api/status_json.h"
#include "util/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes; false (and failed set) if memory ran out. */
static bool reserve(otp_jbuf *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void put(otp_jbuf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_lit(otp_jbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* s as a JSON string. */
static void put_str(otp_jbuf *b, const char *s)
{
    size_t n = strlen(s);
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++) {
        unsigned char c = (unsigned char)s[i];
        plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
    }
    if (plain) {
        if (reserve(b, n + 2)) {
            b->p[b->len++] = '"';
            memcpy(b->p + b->len, s, n);
            b->len += n;
            b->p[b->len++] = '"';
            b->p[b->len] = '\0';
        }
        return;
    }
    json_t *j = json_string(s); /* NULL if s is not UTF-8 */
    size_t room = n * 6 + 2;    /* \u00XX for every byte at worst */
    if (!j || !reserve(b, room)) {
        b->failed = true;
        json_decref(j);
        return;
    }
    size_t w = json_dumpb(j, b->p + b->len, room, JSON_ENCODE_ANY);
    json_decref(j);
    if (w == 0 || w > room) {
        b->failed = true;
        return;
    }
    b->len += w;
    b->p[b->len] = '\0';
}

static void put_str_or_null(otp_jbuf *b, const char *s)
{
    if (s && *s)
        put_str(b, s);
    else
        put_lit(b, "null");
}

static void put_time_or_null(otp_jbuf *b, int64_t ms)
{
    if (ms <= 0) {
        put_lit(b, "null");
        return;
    }
    char at[OTP_ISO8601_LEN + 3];
    at[0] = '"';
    otp_time_iso8601(ms, at + 1);
    size_t n = strlen(at);
    at[n] = '"';
    put(b, at, n + 1);
}

static void put_int(otp_jbuf *b, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", v);
    put(b, num, (size_t)n);
}

void otp_jbuf_free(otp_jbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void otp_status_json_message(otp_jbuf *b, const otp_message_info *m)
{
    put_lit(b, b->len ? ",{\"messageId\":" : "{\"messageId\":");
    put_str(b, m->public_id);
    put_lit(b, ",\"deliveryStatus\":");
    put_str(b, otp_msg_status_name(m->status));
    put_lit(b, ",\"provider\":");
    put_str_or_null(b, m->provider);
    put_lit(b, ",\"updatedAt\":");
    put_time_or_null(b, m->updated_at_ms);
    put_lit(b, ",\"error\":");
    put_str_or_null(b, m->error);
    put_lit(b, "}");
}

char *otp_status_json(const otp_request_info *info, otp_req_status status, const otp_jbuf *messages,
                      size_t *ret_len)
{
    otp_jbuf b = {0};
    if (messages->failed)
        return NULL;
    put_lit(&b, "{\"data\":{\"requestId\":");
    put_str(&b, info->public_id);
    put_lit(&b, ",\"phoneNumber\":");
    put_str(&b, info->phone);
    put_lit(&b, ",\"status\":");
    put_str(&b, otp_req_status_name(status));
    put_lit(&b, ",\"channel\":");
    put_str(&b, info->channel[0] ? info->channel : "sms");
    put_lit(&b, ",\"attemptsLeft\":");
    put_int(&b, info->attempts_left);
    put_lit(&b, ",\"maxAttempts\":");
    put_int(&b, info->max_attempts);
    put_lit(&b, ",\"createdAt\":");
    put_time_or_null(&b, info->created_at_ms);
    put_lit(&b, ",\"expiresAt\":");
    put_time_or_null(&b, info->expires_at_ms);
    put_lit(&b, ",\"verifiedAt\":");
    put_time_or_null(&b, info->verified_at_ms);
    put_lit(&b, ",\"resendCount\":");
    put_int(&b, info->resend_count);
    put_lit(&b, ",\"messages\":[");
    if (messages->len)
        put(&b, messages->p, messages->len);
    put_lit(&b, "]}}");
    if (b.failed) {
        otp_jbuf_free(&b);
        return NULL;
    }
    *ret_len = b.len;
    return b.p;
}
