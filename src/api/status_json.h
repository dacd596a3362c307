/* api/status_json.h — the GET /otp/{id} body written without building a
 * jansson object (api/status_json.c). */
#ifndef OTPD_API_STATUS_JSON_H
#define OTPD_API_STATUS_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "core/otp_state.h"
#include "store/store.h"

/* A growing text; failed once memory ran out or a string was not UTF-8. */
typedef struct otp_jbuf {
    char *p;
    size_t len, cap;
    bool failed;
} otp_jbuf;

void otp_jbuf_free(otp_jbuf *b);

/* Appends message m's object to b (with a comma before it unless b is empty). */
void otp_status_json_message(otp_jbuf *b, const otp_message_info *m);

/* {"data":{…the request…,"messages":[messages]}} with status as the request's
 * status, in a new allocation of *ret_len bytes (NUL-terminated); NULL if
 * messages failed, memory ran out, or a text is not UTF-8. */
char *otp_status_json(const otp_request_info *info, otp_req_status status, const otp_jbuf *messages,
                      size_t *ret_len);

#endif
