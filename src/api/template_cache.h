/* api/template_cache.h — SMS templates a send used, kept in memory for a short
 * time.
 *
 * An account with a default template read it from the store at every send (a
 * SELECT on SQLite; on PostgreSQL a round trip that held the HTTP thread and
 * all its connections). The cache keeps each template found (like
 * key_cache.h, in one table for all threads, util/ttl_cache.h: 32 entries),
 * for `limits.cache_ms` (0 disables it). It is keyed by the account and the string
 * the template was found by (its id, or its name), whose hash (keyed per
 * process) chooses the set.
 *
 * Templates are never edited in place (only added, made the default, removed),
 * so an entry can be stale only in that a template removed, or a name given to
 * a new template after the old one was removed, is still served for up to the
 * period: as late as a key's revocation or a new default is seen (the key's
 * row, key_cache.h, says which template is the default), and an entry's
 * is_default is as it was when read. Only templates found are kept, never a
 * miss; what templateId "default" resolved to is kept under "default".
 */
#ifndef OTP_API_TEMPLATE_CACHE_H
#define OTP_API_TEMPLATE_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* Sets how long an entry is served (ms; 0 or less disables the cache) and
 * empties the table. Without it: 1000 ms. */
void otp_template_cache_configure(int ttl_ms);

/* If the table holds the template that account's id_or_name found, stored at
 * most the period ago, copies it into *ret and returns true. */
bool otp_template_cache_get(int64_t account_id, const char *id_or_name, int64_t now_ms,
                            otp_template *ret);

/* Keeps *t as what account's id_or_name found, read from the store at now_ms
 * (take the time before the read). */
void otp_template_cache_put(int64_t account_id, const char *id_or_name, const otp_template *t,
                            int64_t now_ms);

#endif
