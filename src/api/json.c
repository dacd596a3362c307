/* api/json.c — the JSON values the API's replies share: times as ISO 8601 in
 * UTC with milliseconds, and text fields that read null when empty. */
#include "api/api.h"
#include "util/clock.h"

json_t *otp_api_json_time(int64_t ms)
{
    char at[OTP_ISO8601_LEN + 1];
    otp_time_iso8601(ms, at);
    return json_string(at);
}

json_t *otp_api_json_time_or_null(int64_t ms)
{
    return ms > 0 ? otp_api_json_time(ms) : json_null();
}

json_t *otp_api_json_str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}
