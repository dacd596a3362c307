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
#include "util/sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* s as a JSON string; a text that is not UTF-8 fails the body. */
static void put_str(otp_sbuf *b, const char *s)
{
    if (!otp_sbuf_json_str(b, s))
        b->failed = true;
}

static void put_str_or_null(otp_sbuf *b, const char *s)
{
    if (s && *s)
        put_str(b, s);
    else
        otp_sbuf_str(b, "null");
}

static void put_time_or_null(otp_sbuf *b, int64_t ms)
{
    if (ms <= 0) {
        otp_sbuf_str(b, "null");
        return;
    }
    char at[OTP_ISO8601_LEN + 3];
    at[0] = '"';
    otp_time_iso8601(ms, at + 1);
    size_t n = strlen(at);
    at[n] = '"';
    otp_sbuf_put(b, at, n + 1);
}

static void put_int(otp_sbuf *b, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", v);
    otp_sbuf_put(b, num, (size_t)n);
}

void otp_status_json_message(otp_sbuf *b, const otp_message_info *m)
{
    otp_sbuf_str(b, b->len ? ",{\"messageId\":" : "{\"messageId\":");
    put_str(b, m->public_id);
    otp_sbuf_str(b, ",\"deliveryStatus\":");
    put_str(b, otp_msg_status_name(m->status));
    otp_sbuf_str(b, ",\"provider\":");
    put_str_or_null(b, m->provider);
    otp_sbuf_str(b, ",\"updatedAt\":");
    put_time_or_null(b, m->updated_at_ms);
    otp_sbuf_str(b, ",\"error\":");
    put_str_or_null(b, m->error);
    otp_sbuf_str(b, "}");
}

char *otp_status_json(const otp_request_info *info, otp_req_status status, const otp_sbuf *messages,
                      size_t *ret_len)
{
    otp_sbuf b = {0};
    if (messages->failed)
        return NULL;
    otp_sbuf_reserve(&b, 512 + messages->len); /* the request's part fits: one allocation */
    otp_sbuf_str(&b, "{\"data\":{\"requestId\":");
    put_str(&b, info->public_id);
    otp_sbuf_str(&b, ",\"phoneNumber\":");
    put_str(&b, info->phone);
    otp_sbuf_str(&b, ",\"status\":");
    put_str(&b, otp_req_status_name(status));
    otp_sbuf_str(&b, ",\"channel\":");
    put_str(&b, info->channel[0] ? info->channel : "sms");
    otp_sbuf_str(&b, ",\"attemptsLeft\":");
    put_int(&b, info->attempts_left);
    otp_sbuf_str(&b, ",\"maxAttempts\":");
    put_int(&b, info->max_attempts);
    otp_sbuf_str(&b, ",\"createdAt\":");
    put_time_or_null(&b, info->created_at_ms);
    otp_sbuf_str(&b, ",\"expiresAt\":");
    put_time_or_null(&b, info->expires_at_ms);
    otp_sbuf_str(&b, ",\"verifiedAt\":");
    put_time_or_null(&b, info->verified_at_ms);
    otp_sbuf_str(&b, ",\"resendCount\":");
    put_int(&b, info->resend_count);
    otp_sbuf_str(&b, ",\"messages\":[");
    if (messages->len)
        otp_sbuf_put(&b, messages->p, messages->len);
    otp_sbuf_str(&b, "]}}");
    if (b.failed) {
        otp_sbuf_free(&b);
        return NULL;
    }
    *ret_len = b.len;
    return b.p;
}
