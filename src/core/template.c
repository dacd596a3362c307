/* core/template.c — checking and rendering SMS templates; see template.h.
 *
 * Syntax. Every "{{" opens a placeholder that the first following "}}" closes;
 * between them is a name, optionally surrounded by ASCII spaces ("{{ code }}"
 * is "{{code}}", as in Mustache, because people type it that way). A name is a
 * letter then up to 31 letters, digits or '_' and is case-sensitive. Anything
 * else between the braces ("{{}}", "{{1abc}}", "{{a-b}}", a tab or a newline)
 * and an unclosed "{{" are syntax errors, never literal text: a typo in a
 * template must show up at `otpd template add`, not as "{{cdoe}}" in a user's
 * SMS. A single '{' or '}' is literal. There is no escape for a literal "{{".
 *
 * Rendering is one pass over the body: a value is copied as it is and never
 * scanned for placeholders, so a variable containing "{{code}}" cannot pull the
 * code (or anything else) into a place the template did not put it. Built-ins
 * win over variables of the same name, so a send's variables cannot replace the
 * code. {{appHash}} with no app hash renders as nothing. Trailing spaces and
 * line breaks of the rendered body are dropped (an empty {{appHash}} at the end
 * would otherwise leave a newline that costs a septet), then the app-hash line
 * and the WebOTP line are appended.
 *
 * The output is written through a bounded writer that keeps counting past the
 * end of the buffer, so an over-long result can say how long it would have been.
 */
#include "core/template.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/sms_text.h"
#include "util/str.h"

#define NAME_MAX_LEN 32
#define CHECK_CODE "0123456789" /* the longest code: 10 digits */
#define CHECK_APP_NAME_LEN 64   /* OTP_APP_NAME_SIZE - 1 */
#define CHECK_APP_HASH "AAAAAAAAAAA"
#define CHECK_DOMAIN_LEN 127 /* OTP_DOMAIN_SIZE - 1 */
#define CHECK_MINUTES 60     /* expiresIn is at most 3600 s */
#define QUOTE_MAX 40         /* bytes of a bad placeholder quoted in a message */

/* Writes a sentence into err if there is room for one; returns r. */
static otp_template_result fail(otp_template_result r, char *err, size_t errlen, const char *fmt,
                                ...) __attribute__((format(printf, 4, 5)));

static otp_template_result fail(otp_template_result r, char *err, size_t errlen, const char *fmt,
                                ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* One placeholder found in a body. */
typedef struct placeholder {
    const char *name; /* points into the body; not NUL-terminated */
    size_t len;
    const char *end; /* just after the closing "}}" */
} placeholder;

static bool is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_name_char(char c)
{
    return is_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

/* How many bytes of a placeholder of whole bytes at p to quote in a message:
 * at most QUOTE_MAX, cut at a character boundary (the body is valid UTF-8, and
 * the message may end up in a JSON reply). */
static int quote_len(const char *p, size_t whole)
{
    return whole > QUOTE_MAX ? otp_utf8_cut(p, QUOTE_MAX) : (int)whole;
}

/* Parses the placeholder whose "{{" is at p. Returns OTP_TPL_OK and *ret, or
 * OTP_TPL_BAD_SYNTAX with a sentence quoting the placeholder. */
static otp_template_result parse_placeholder(const char *body, const char *p, placeholder *ret,
                                             char *err, size_t errlen)
{
    const char *inner = p + 2;
    const char *close = strstr(inner, "}}");
    if (!close)
        return fail(OTP_TPL_BAD_SYNTAX, err, errlen,
                    "unclosed placeholder at byte %zu: \"{{\" needs a matching \"}}\"",
                    (size_t)(p - body));
    size_t whole = (size_t)(close + 2 - p);
    int quote = quote_len(p, whole);
    const char *more = (size_t)quote < whole ? "..." : "";

    const char *s = inner, *e = close;
    while (s < e && *s == ' ')
        s++;
    while (e > s && e[-1] == ' ')
        e--;
    if (s == e)
        return fail(OTP_TPL_BAD_SYNTAX, err, errlen,
                    "empty placeholder \"%.*s%s\" at byte %zu: write a name such as {{code}}",
                    quote, p, more, (size_t)(p - body));
    bool ok = is_alpha(*s);
    for (const char *q = s + 1; ok && q < e; q++)
        ok = is_name_char(*q);
    if (!ok)
        return fail(OTP_TPL_BAD_SYNTAX, err, errlen,
                    "invalid placeholder \"%.*s%s\" at byte %zu: a name is a letter followed by "
                    "letters, digits or _",
                    quote, p, more, (size_t)(p - body));
    if ((size_t)(e - s) > NAME_MAX_LEN)
        return fail(OTP_TPL_BAD_SYNTAX, err, errlen,
                    "placeholder name \"%.*s%s\" is too long (at most %d characters)", quote, p,
                    more, NAME_MAX_LEN);
    ret->name = s;
    ret->len = (size_t)(e - s);
    ret->end = close + 2;
    return OTP_TPL_OK;
}

static bool name_is(const placeholder *ph, const char *name)
{
    return strlen(name) == ph->len && memcmp(ph->name, name, ph->len) == 0;
}

/* A bounded output: bytes past cap are counted, not written. mark is the
 * length up to the last byte that is not a trailing space or line break. */
typedef struct writer {
    char *out;
    size_t cap; /* bytes available for text, the NUL excluded */
    size_t len;
    size_t mark;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (w->len < w->cap)
            w->out[w->len] = s[i];
        w->len++;
        if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r')
            w->mark = w->len;
    }
}

static void puts_w(writer *w, const char *s)
{
    put(w, s, strlen(s));
}

/* The value of a placeholder: a built-in, else the send's variable of that
 * name (the first if repeated). Returns NULL if the name is unknown. */
static const char *lookup(const placeholder *ph, const otp_template_vars *v, char minutes[16])
{
    if (name_is(ph, "code"))
        return v->code;
    if (name_is(ph, "appName"))
        return v->app_name;
    if (name_is(ph, "expiresInMinutes")) {
        snprintf(minutes, 16, "%d", v->expires_minutes);
        return minutes;
    }
    if (name_is(ph, "appHash"))
        return v->app_hash ? v->app_hash : "";
    for (size_t i = 0; i < v->nvars; i++)
        if (v->names && v->names[i] && v->values && v->values[i] && name_is(ph, v->names[i]))
            return v->values[i];
    return NULL;
}

/* Checks the body's syntax and that it has {{code}}. */
static otp_template_result scan(const char *body, char *err, size_t errlen)
{
    bool has_code = false;
    for (const char *p = body; (p = strstr(p, "{{")) != NULL;) {
        placeholder ph;
        otp_template_result r = parse_placeholder(body, p, &ph, err, errlen);
        if (r)
            return r;
        has_code = has_code || name_is(&ph, "code");
        p = ph.end;
    }
    if (!has_code)
        return fail(OTP_TPL_NO_CODE, err, errlen,
                    "the template has no {{code}} placeholder: every message must carry the code");
    return OTP_TPL_OK;
}

/* Checks a body on its own: size, UTF-8 (when utf8), syntax, {{code}}.
 * Rendering skips the UTF-8 pass (a fifth of a render): every byte of the
 * body outside placeholders is copied into the message, values are UTF-8 and
 * cannot complete a sequence the body left open, so the message's own check
 * (measure) refuses such a body too. */
static otp_template_result check_body(const char *body, bool utf8, char *err, size_t errlen)
{
    if (!body)
        return fail(OTP_TPL_BAD_SYNTAX, err, errlen, "the template is missing");
    size_t n = strlen(body);
    if (n > OTP_TEMPLATE_BODY_MAX)
        return fail(OTP_TPL_TOO_LONG, err, errlen,
                    "the template is %zu bytes, over the limit of %d", n, OTP_TEMPLATE_BODY_MAX);
    if (utf8 && otp_sms_segments(body, NULL) < 0)
        return fail(OTP_TPL_BAD_SYNTAX, err, errlen, "the template is not valid UTF-8");
    return scan(body, err, errlen);
}

/* The rendering proper, for a body already checked. as_written: placeholders
 * that are neither built-ins nor variables are copied as they are (check);
 * otherwise they are an error (send). */
static otp_template_result expand(const char *body, const otp_template_vars *v, bool as_written,
                                  writer *w, char *err, size_t errlen)
{
    char minutes[16];
    const char *p = body;
    bool body_hash = false;

    for (const char *q; (q = strstr(p, "{{")) != NULL;) {
        placeholder ph;
        otp_template_result r = parse_placeholder(body, q, &ph, err, errlen);
        if (r)
            return r;
        put(w, p, (size_t)(q - p));
        const char *value = lookup(&ph, v, minutes);
        if (value) {
            puts_w(w, value);
        } else if (as_written) {
            put(w, q, (size_t)(ph.end - q));
        } else {
            return fail(OTP_TPL_UNKNOWN_PLACEHOLDER, err, errlen,
                        "unknown placeholder {{%.*s}}: it is not a built-in (code, appName, "
                        "expiresInMinutes, appHash) and the request's variables do not set it",
                        (int)ph.len, ph.name);
        }
        body_hash = body_hash || name_is(&ph, "appHash");
        p = ph.end;
    }
    puts_w(w, p);
    w->len = w->mark; /* drop trailing spaces and line breaks */

    if (v->app_hash && *v->app_hash && !body_hash) {
        puts_w(w, "\n");
        puts_w(w, v->app_hash);
    }
    if (v->webotp_domain && *v->webotp_domain) {
        puts_w(w, "\n@");
        puts_w(w, v->webotp_domain);
        puts_w(w, " #");
        puts_w(w, v->code);
    }
    return OTP_TPL_OK;
}

/* Segments of a finished text (NUL-terminated in out): OTP_TPL_OK with
 * *ret_segments and *ret_enc, OTP_TPL_BAD_SYNTAX (with a sentence) for bad
 * UTF-8, or OTP_TPL_TOO_LONG (no sentence: the caller knows the context). */
static otp_template_result measure(const char *out, int *ret_segments, otp_sms_encoding *ret_enc,
                                   char *err, size_t errlen)
{
    int segments = otp_sms_segments(out, ret_enc);
    if (segments < 0)
        return fail(OTP_TPL_BAD_SYNTAX, err, errlen,
                    "the message is not valid UTF-8 (check the variables and the app name)");
    *ret_segments = segments;
    return segments > OTP_TEMPLATE_MAX_SEGMENTS ? OTP_TPL_TOO_LONG : OTP_TPL_OK;
}

static const char *enc_name(otp_sms_encoding enc)
{
    return enc == OTP_SMS_GSM7 ? "GSM-7" : "UCS-2";
}

otp_template_result otp_template_check(const char *body, char *err, size_t errlen)
{
    char app_name[CHECK_APP_NAME_LEN + 1], domain[CHECK_DOMAIN_LEN + 1];
    char out[OTP_SMS_TEXT_MAX + 1];
    writer w = {.out = out, .cap = sizeof(out) - 1};
    otp_sms_encoding enc = OTP_SMS_GSM7;
    int segments = 0;

    otp_template_result r = check_body(body, true, err, errlen);
    if (r)
        return r;
    memset(app_name, 'x', CHECK_APP_NAME_LEN);
    app_name[CHECK_APP_NAME_LEN] = '\0';
    memset(domain, 'x', CHECK_DOMAIN_LEN);
    domain[CHECK_DOMAIN_LEN] = '\0';
    domain[CHECK_DOMAIN_LEN - 4] = '.';
    const otp_template_vars v = {
        .code = CHECK_CODE,
        .app_name = app_name,
        .expires_minutes = CHECK_MINUTES,
        .app_hash = CHECK_APP_HASH,
        .webotp_domain = domain,
    };
    r = expand(body, &v, true, &w, err, errlen);
    if (r)
        return r;
    if (w.len > w.cap)
        return fail(OTP_TPL_TOO_LONG, err, errlen,
                    "with the longest code, app name, app hash and WebOTP line the message "
                    "would be %zu bytes, over the limit of %d",
                    w.len, OTP_SMS_TEXT_MAX);
    out[w.len] = '\0';
    r = measure(out, &segments, &enc, err, errlen);
    if (r == OTP_TPL_TOO_LONG)
        return fail(r, err, errlen,
                    "with the longest code, app name, app hash and WebOTP line the message "
                    "would be %d SMS segments (%s), over the limit of %d",
                    segments, enc_name(enc), OTP_TEMPLATE_MAX_SEGMENTS);
    return r;
}

otp_template_result otp_template_render(const char *body, const otp_template_vars *v, char *out,
                                        size_t outlen, size_t *ret_len, int *ret_segments,
                                        char *err, size_t errlen)
{
    writer w = {.out = out, .cap = outlen > 0 ? outlen - 1 : 0};
    otp_sms_encoding enc;
    int segments = 0;
    otp_template_result r;

    if (!v || !v->code || !v->app_name || !out)
        return fail(OTP_TPL_BAD_SYNTAX, err, errlen, "the code or the app name is missing");
    if (outlen == 0)
        return fail(OTP_TPL_TOO_LONG, err, errlen, "no room for the message");
    r = check_body(body, false, err, errlen);
    if (!r)
        r = expand(body, v, false, &w, err, errlen);
    if (!r && w.len > w.cap)
        r = fail(OTP_TPL_TOO_LONG, err, errlen,
                 "the message would be %zu bytes, over the limit of %zu", w.len, w.cap);
    if (!r) {
        out[w.len] = '\0';
        r = measure(out, &segments, &enc, err, errlen);
        if (r == OTP_TPL_TOO_LONG)
            fail(r, err, errlen, "the message would be %d SMS segments (%s), over the limit of %d",
                 segments, enc_name(enc), OTP_TEMPLATE_MAX_SEGMENTS);
    }
    if (r) {
        /* Never leave a partial text that could be sent by mistake. */
        out[0] = '\0';
        return r;
    }
    if (ret_len)
        *ret_len = w.len;
    if (ret_segments)
        *ret_segments = segments;
    return OTP_TPL_OK;
}
