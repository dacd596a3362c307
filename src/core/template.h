/* core/template.h — SMS templates: checking and rendering (SPEC 4).
 *
 * A template body is UTF-8 text with {{name}} placeholders. Built-ins: {{code}}
 * (required in every template), {{appName}}, {{expiresInMinutes}}, {{appHash}};
 * any other name ([A-Za-z][A-Za-z0-9_]{0,31}) is filled from the send's
 * `variables`. After the body: "\n<appHash>" when an app hash is given and the
 * body has no {{appHash}} of its own (Android SMS Retriever), then
 * "\n@<domain> #<code>" when the account has a WebOTP domain (browser and iOS
 * autofill). No I/O; thread-safe.
 */
#ifndef OTP_CORE_TEMPLATE_H
#define OTP_CORE_TEMPLATE_H

#include <stddef.h>

#define OTP_DEFAULT_TEMPLATE                                                                       \
    "{{code}} is your {{appName}} verification code. It expires in {{expiresInMinutes}} "          \
    "minutes. Do not share it."
#define OTP_TEMPLATE_BODY_MAX 1024   /* bytes */
#define OTP_TEMPLATE_MAX_SEGMENTS 10 /* a rendered text longer than this is refused */

typedef struct otp_template_vars {
    const char *code;     /* digits */
    const char *app_name; /* never NULL */
    int expires_minutes;
    const char *app_hash;      /* NULL = none */
    const char *webotp_domain; /* NULL or "" = none */
    const char *const *names;  /* the send's variables: names[i] = values[i] */
    const char *const *values;
    size_t nvars;
} otp_template_vars;

typedef enum {
    OTP_TPL_OK = 0,
    OTP_TPL_BAD_SYNTAX,          /* unclosed "{{", bad placeholder name, bad UTF-8 */
    OTP_TPL_NO_CODE,             /* no {{code}} */
    OTP_TPL_UNKNOWN_PLACEHOLDER, /* at render: a name neither built-in nor in variables */
    OTP_TPL_TOO_LONG,            /* body or result too long (bytes or segments) */
} otp_template_result;

/* Checks a body for `otpd template add`: syntax, {{code}} present, at most
 * OTP_TEMPLATE_BODY_MAX bytes, and a render with the longest built-in values
 * (10-digit code, 64-byte app name, app hash, WebOTP line) fits in
 * OTP_TEMPLATE_MAX_SEGMENTS — variables counted as written. On failure writes a
 * human sentence naming the problem (e.g. the placeholder) into err. */
otp_template_result otp_template_check(const char *body, char *err, size_t errlen);

/* Renders body with v into out (outlen bytes, NUL-terminated). Returns OTP_TPL_OK
 * and writes the byte length to *ret_len and the segment count to *ret_segments;
 * else an error with a sentence in err (naming the unknown placeholder, or the
 * length). A result over OTP_TEMPLATE_MAX_SEGMENTS segments or over outlen is
 * OTP_TPL_TOO_LONG. */
otp_template_result otp_template_render(const char *body, const otp_template_vars *v, char *out,
                                        size_t outlen, size_t *ret_len, int *ret_segments,
                                        char *err, size_t errlen);

#endif
