/* api/status_json.h — the GET /otp/{id} body written without building a
 * jansson object (api/status_json.c). */
#ifndef OTPD_API_STATUS_JSON_H
#define OTPD_API_STATUS_JSON_H

#include <stddef.h>

#include "core/otp_state.h"
#include "store/store.h"
#include "util/sbuf.h"

/* Appends message m's object to b (with a comma before it unless b is empty). */
void otp_status_json_message(otp_sbuf *b, const otp_message_info *m);

/* {"data":{…the request…,"messages":[messages]}} with status as the request's
 * status, in a new allocation of *ret_len bytes (NUL-terminated); NULL if
 * messages failed, memory ran out, or a text is not UTF-8. */
char *otp_status_json(const otp_request_info *info, otp_req_status status, const otp_sbuf *messages,
                      size_t *ret_len);

#endif
