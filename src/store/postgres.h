/* store/postgres.h — the PostgreSQL backend of store.h (libpq), for running
 * several otpd nodes on one database. */
#ifndef OTP_STORE_POSTGRES_H
#define OTP_STORE_POSTGRES_H

#include "store/store.h"

/* Connects to url ("postgres://…" or "postgresql://…", any libpq connection
 * URI), checks or migrates the schema, and starts the worker pool. See
 * otp_store_open(). The error never contains the URL (it may hold a password). */
int otp_store_postgres_open(const char *url, const otp_store_options *opt, otp_store **ret,
                            char *err, size_t errlen);

#endif
