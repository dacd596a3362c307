/* http/router.c — a linear route table: there are a dozen routes, and comparing
 * segments in order is faster than any structure at that size. */
#include "http/router.h"

#include <string.h>

/* Matches path against pattern segment by segment; "{}" captures one segment. */
static bool match_path(const char *pattern, const char *path, char params[][OTP_HTTP_PARAM_SIZE])
{
    int np = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (p[0] == '{' && p[1] == '}') {
            const char *end = strchr(s, '/');
            size_t len = end ? (size_t)(end - s) : strlen(s);
            if (len == 0 || len >= OTP_HTTP_PARAM_SIZE || np >= OTP_HTTP_MAX_PARAMS)
                return false;
            if (params) {
                memcpy(params[np], s, len);
                params[np][len] = '\0';
            }
            np++;
            p += 2;
            s += len;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

otp_route_match otp_router_match(const otp_route *routes, size_t n, const char *method,
                                 const char *path, const otp_route **ret_route,
                                 char params[][OTP_HTTP_PARAM_SIZE], char *allow, size_t allowlen)
{
    bool path_seen = false;
    size_t used = 0;
    if (allowlen)
        allow[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!match_path(routes[i].pattern, path, NULL))
            continue;
        if (strcmp(routes[i].method, method) == 0) {
            match_path(routes[i].pattern, path, params);
            *ret_route = &routes[i];
            return OTP_ROUTE_FOUND;
        }
        path_seen = true;
        size_t ml = strlen(routes[i].method);
        if (used + ml + 3 < allowlen && !strstr(allow, routes[i].method)) {
            if (used) {
                memcpy(allow + used, ", ", 2);
                used += 2;
            }
            memcpy(allow + used, routes[i].method, ml + 1);
            used += ml;
        }
    }
    return path_seen ? OTP_ROUTE_NO_METHOD : OTP_ROUTE_NO_PATH;
}
