/* store/sqlite.h — the embedded SQLite backend of store.h. */
#ifndef OTP_STORE_SQLITE_H
#define OTP_STORE_SQLITE_H

#include "store/store.h"

/* Opens (creating if needed) the database file at path. See otp_store_open(). */
int otp_store_sqlite_open(const char *path, const otp_store_options *opt, otp_store **ret,
                          char *err, size_t errlen);

#endif
