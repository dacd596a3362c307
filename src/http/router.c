/* http/router.c — a linear route table: there are a dozen routes, and comparing
 * segments in order is faster than any structure at that size. A literal
 * segment beats "{}" (see router.h), so the table's order only matters between
 * routes of one pattern. */
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

/* How many "{}" a pattern has: the fewer, the more specific. */
static int params_of(const char *pattern)
{
    int n = 0;
    for (const char *p = strstr(pattern, "{}"); p; p = strstr(p + 2, "{}"))
        n++;
    return n;
}

static void allow_add(char *allow, size_t allowlen, size_t *used, const char *method)
{
    size_t ml = strlen(method);
    if (*used + ml + 3 >= allowlen || strstr(allow, method))
        return;
    if (*used) {
        memcpy(allow + *used, ", ", 2);
        *used += 2;
    }
    memcpy(allow + *used, method, ml + 1);
    *used += ml;
}

otp_route_match otp_router_match(const otp_route *routes, size_t n, const char *method,
                                 const char *path, const otp_route **ret_route,
                                 char params[][OTP_HTTP_PARAM_SIZE], char *allow, size_t allowlen)
{
    int best = -1; /* the fewest "{}" of a pattern that matches */
    for (size_t i = 0; i < n && best != 0; i++) {
        int np = params_of(routes[i].pattern);
        if ((best < 0 || np < best) && match_path(routes[i].pattern, path, NULL))
            best = np;
    }
    if (allowlen)
        allow[0] = '\0';
    if (best < 0)
        return OTP_ROUTE_NO_PATH;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (params_of(routes[i].pattern) != best || !match_path(routes[i].pattern, path, NULL))
            continue;
        if (strcmp(routes[i].method, method) == 0) {
            match_path(routes[i].pattern, path, params);
            *ret_route = &routes[i];
            return OTP_ROUTE_FOUND;
        }
        allow_add(allow, allowlen, &used, routes[i].method);
    }
    return OTP_ROUTE_NO_METHOD;
}
