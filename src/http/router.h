/* http/router.h — matching a method and path against the route table. */
#ifndef OTP_HTTP_ROUTER_H
#define OTP_HTTP_ROUTER_H

#include <stddef.h>

#include "http/http.h"

typedef enum { OTP_ROUTE_FOUND, OTP_ROUTE_NO_PATH, OTP_ROUTE_NO_METHOD } otp_route_match;

/* Finds the route for method and path (no query string). Of the patterns that
 * match the path, only the most specific count (the fewest "{}": /otp/send
 * before /otp/{}); among those the first with the method, in table order, wins.
 * On FOUND writes the route and the "{}" parameters into params
 * (OTP_HTTP_MAX_PARAMS x OTP_HTTP_PARAM_SIZE), and into allow the methods of
 * the equally specific routes passed over. On NO_METHOD writes the methods the
 * path allows, comma separated, into allow (allowlen bytes). */
otp_route_match otp_router_match(const otp_route *routes, size_t n, const char *method,
                                 const char *path, const otp_route **ret_route,
                                 char params[][OTP_HTTP_PARAM_SIZE], char *allow, size_t allowlen);

#endif
