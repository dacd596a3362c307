/* util/config.h — settings from flags, OTPD_* environment and an INI file.
 *
 * Precedence: command-line flag > environment > INI file > built-in default.
 * Every known setting is one row of a table in config.c (key, default, meaning);
 * its environment name is "OTPD_" + the key upper-cased with '.' -> '_' (e.g.
 * server.max_body -> OTPD_SERVER_MAX_BODY). INI keys before any [section] are
 * top-level ("listen"); "[server]" + "threads" is "server.threads". Sections named
 * [provider.NAME] hold provider settings, validated by the provider itself. An
 * unknown key, or a value of the wrong type or range, is an error that names
 * the setting and where it came from.
 */
#ifndef OTP_UTIL_CONFIG_H
#define OTP_UTIL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct otp_config otp_config;

otp_config *otp_config_new(void);
void otp_config_free(otp_config *c); /* accepts NULL */

/* Reads an INI file. Returns 0, or -1 with "FILE:LINE: reason" in err. */
int otp_config_load_file(otp_config *c, const char *path, char *err, size_t errlen);
/* Applies OTPD_* variables of the known settings from environ. Returns 0 or -1. */
int otp_config_load_env(otp_config *c, char *err, size_t errlen);
/* Sets key = value (copied), remembering origin (e.g. "--listen") for error
 * messages. Unknown keys outside [provider.*] are an error. Returns 0 or -1. */
int otp_config_set(otp_config *c, const char *key, const char *value, const char *origin, char *err,
                   size_t errlen);

/* The value of key, or its default if unset, or NULL if it has neither.
 * Defaults may refer to data_dir ("sqlite:<data_dir>/otpd.db" is expanded). */
const char *otp_config_get(const otp_config *c, const char *key);
/* Integer setting within [min, max]; on error -1 with a message naming key and origin. */
int otp_config_int(const otp_config *c, const char *key, long min, long max, long *ret, char *err,
                   size_t errlen);
/* Boolean setting (true/false/yes/no/1/0/on/off). */
int otp_config_bool(const otp_config *c, const char *key, bool *ret, char *err, size_t errlen);
/* Where key's value came from ("default", "OTPD_LISTEN", "otpd.ini:12", "--listen"). */
const char *otp_config_origin(const otp_config *c, const char *key);
/* Calls cb for each distinct section name starting with prefix ("provider.") in
 * file order, e.g. "provider.file". */
void otp_config_each_section(const otp_config *c, const char *prefix,
                             void (*cb)(const char *section, void *ctx), void *ctx);
/* Calls cb for each key stored under section ("provider.file": its "path"…),
 * with the key's part after "section." and where its value came from. */
void otp_config_each_key(const otp_config *c, const char *section,
                         void (*cb)(const char *key, const char *origin, void *ctx), void *ctx);
/* Prints the table of known settings (key, env name, default, meaning) to f. */
void otp_config_describe(void *file);

#endif
