/* util/config.c — otpd's settings: one table, four layers, errors that say where.
 *
 * Every known setting is a row of `settings` below (key, type, range, default,
 * meaning); nothing else is accepted outside [provider.NAME] sections, so a typo
 * in a key fails at start instead of being silently ignored (in the
 * environment too: an OTPD_<SECTION>_… variable that names no setting). Values
 * come from
 * four layers: built-in default < INI file < OTPD_* environment < command-line
 * flag. Callers may load the layers in any order (main parses flags before it
 * knows which file to read), so each stored value remembers the rank of the layer
 * it came from and a value from a lower layer never replaces one from a higher.
 *
 * Types are checked when a value is stored, so a bad value fails at start-up even
 * if nothing has read it yet; the message names the setting, the value and its
 * origin ("otpd.ini:12", "OTPD_SERVER_MAX_BODY", "--listen").
 *
 * Two defaults are computed from data_dir (db and secret_file). Their strings are
 * rebuilt whenever data_dir changes so that otp_config_get() can return a stable
 * pointer from a const config, without caching behind the caller's back: a loaded
 * config is read-only and safe to share between threads.
 *
 * Provider sections ([provider.NAME]) are stored as "provider.NAME.key" without
 * checking, because only the provider knows its keys; the section names are kept
 * in file order, which is the default priority order of providers.
 */
#include "util/config.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Hard caps on everything a config file controls. */
#define MAX_LINE 4096
#define MAX_KEY 128
#define MAX_ENTRIES 1024
#define MAX_SECTIONS 64
#define MAX_PROVIDER_NAME 31 /* otp_provider.name is char[32] */
#define MAX_ORIGIN 512

typedef enum { T_STR, T_PATH, T_INT, T_BOOL, T_LEVEL } setting_type;

/* Ranks of the layers, lowest first. */
enum { RANK_FILE = 1, RANK_ENV = 2, RANK_FLAG = 3 };

typedef struct setting {
    const char *key;
    setting_type type;
    long min, max;     /* T_INT only */
    const char *def;   /* NULL: computed from data_dir (see derived_default) */
    const char *shown; /* the default as printed by otp_config_describe, if not def */
    const char *meaning;
} setting;

static const setting settings[] = {
    {"data_dir", T_PATH, 0, 0, "./otpd-data", NULL,
     "Data directory: the SQLite file, the server secret, sms.jsonl."},
    {"db", T_PATH, 0, 0, NULL, "sqlite:<data_dir>/otpd.db",
     "Store URL: sqlite:PATH or postgres://..."},
    {"listen", T_PATH, 0, 0, "127.0.0.1:8080", NULL, "HTTP listen address, HOST:PORT."},
    {"secret_file", T_PATH, 0, 0, NULL, "<data_dir>/secret",
     "Server secret (32 bytes, mode 0600), generated on first run."},
    {"log_level", T_LEVEL, 0, 0, "info", NULL, "Minimum log level: debug|info|warn|error."},
    {"server.threads", T_INT, 1, 64, "2", NULL,
     "HTTP worker threads. On PostgreSQL every read of the database (the read routes, the "
     "look-ups of a cancel, a resend and an admin credit, a cancel's read-back, and a send or "
     "a verify whose key, limits or template is not cached yet) runs on threads of its own "
     "(store.read_conns), so no HTTP thread waits on the server."},
    {"server.max_connections", T_INT, 1, 100000, "1024", NULL,
     "Open connections at most; more are refused."},
    {"server.max_connections_per_ip", T_INT, 0, 100000, "0", NULL,
     "Open connections per client IP at most (0 = no per-IP limit)."},
    {"server.request_timeout", T_INT, 1, 3600, "10", NULL,
     "Seconds a client may take to send one whole request (head and body) once its request "
     "line has arrived; a connection may take server.connection_timeout more to start each "
     "request. Slower clients are disconnected (slow clients cannot hold connections)."},
    {"server.connection_timeout", T_INT, 1, 3600, "30", NULL,
     "Seconds a connection may stay idle before it is closed."},
    {"server.stop_timeout", T_INT, 1, 3600, "45", NULL,
     "Seconds a stop (SIGTERM, SIGINT) waits for the requests in progress: up to 10 for them "
     "to finish, then the rest for those still waiting on the store (a transaction or a "
     "read). If some still "
     "wait when it runs out, otpd exits 1 without closing the store, as a kill would: those "
     "requests get no answer (their connections close), though their transactions may still "
     "commit; a client may retry with its idempotencyKey."},
    {"server.max_body", T_INT, 1024, 1048576, "16384", NULL, "Largest request body, bytes."},
    {"server.max_header", T_INT, 1024, 65536, "8192", NULL,
     "Largest request head (request line and all headers), bytes."},
    {"store.migrate", T_BOOL, 0, 0, "true", NULL, "Apply pending schema migrations at start-up."},
    {"store.max_batch", T_INT, 1, 10000, "256", NULL,
     "Most transactions in one commit (group commit)."},
    {"store.read_conns", T_INT, 1, 1024, "4", NULL,
     "Read connections expected in parallel (a hint to the store). PostgreSQL: this many "
     "threads run the read routes (GET /otp/{id}, /messages, /wallet, ...), and the read pool "
     "opens up to twice this many connections: theirs, and the HTTP threads' own reads."},
    /* The PostgreSQL backend (issue 6). */
    {"store.pool_size", T_INT, 1, 256, "8", NULL,
     "PostgreSQL: connections per node that run write transactions, one worker thread each."},
    {"store.request_retention", T_INT, 60, 31536000, "86400", NULL,
     "Seconds an OTP request is kept after it expires (then purged with its messages; "
     "ledger entries stay)."},
    {"store.purge_interval", T_INT, 1, 86400, "60", NULL,
     "Seconds between two passes of the background purge."},
    {"delivery.providers", T_STR, 0, 0, "", NULL,
     "Provider names, comma-separated, in priority order. Empty: every [provider.NAME] "
     "section in file order, or the built-in `file` provider writing <data_dir>/sms.jsonl "
     "when there is none."},
    {"delivery.lease", T_INT, 1, 3600, "30", NULL,
     "Seconds a dispatcher holds claimed (or, with SQLite, handed-over) messages before "
     "another claim may take them; after a crash, how long they wait to be sent again."},
    {"delivery.batch", T_INT, 1, 1000, "64", NULL, "Messages per outbox claim."},
    {"limits.defaults", T_STR, 0, 0, "", NULL,
     "Abuse limits of every account (SPEC 3), as name=value pairs over the built-in "
     "defaults, e.g. \"phone_interval=0,pump_min_sends=50\"; accounts override them with "
     "`otpd limits set`. Names and defaults: `otpd limits show ACCOUNT`, docs/security.md."},
    {"limits.cache_ms", T_INT, 0, 60000, "1000", NULL,
     "Milliseconds a server keeps an account's limits, an API key's lookup (account, "
     "revocation) and the templates sends use, before reading them again; 0: read them for "
     "every request."},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

typedef struct entry {
    char *key;
    char *value;
    char *origin;
    int rank;
} entry;

struct otp_config {
    entry *entries;
    size_t n, cap;
    char *sections[MAX_SECTIONS]; /* distinct section names, first appearance first */
    size_t n_sections;
    char *db_default;
    char *secret_default;
};

static void fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const setting *find_setting(const char *key)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

static entry *find_entry(const otp_config *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->entries[i].key, key) == 0)
            return &c->entries[i];
    return NULL;
}

/* "OTPD_" + key upper-cased with '.' -> '_'. out must hold MAX_KEY + 6 bytes. */
static void env_name(const char *key, char *out, size_t outlen)
{
    size_t o = (size_t)snprintf(out, outlen, "OTPD_");
    for (const char *k = key; *k && o + 1 < outlen; k++)
        out[o++] = *k == '.' ? '_' : (char)toupper((unsigned char)*k);
    out[o] = '\0';
}

/* dir + "/" + name without doubling a trailing slash; NULL on OOM. */
static char *join_path(const char *dir, const char *name)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    const char *sep = len > 0 && dir[len - 1] == '/' ? "" : "/";
    size_t size = len + 1 + strlen(name) + 1;
    char *out = malloc(size);
    if (out)
        snprintf(out, size, "%.*s%s%s", (int)len, dir, sep, name);
    return out;
}

static int rebuild_derived(otp_config *c)
{
    const char *dir = otp_config_get(c, "data_dir");
    char *secret = join_path(dir, "secret");
    char *dbpath = join_path(dir, "otpd.db");
    char *db = NULL;
    if (dbpath) {
        size_t size = strlen(dbpath) + sizeof("sqlite:");
        db = malloc(size);
        if (db)
            snprintf(db, size, "sqlite:%s", dbpath);
    }
    free(dbpath);
    if (!secret || !db) {
        free(secret);
        free(db);
        return -1;
    }
    free(c->secret_default);
    free(c->db_default);
    c->secret_default = secret;
    c->db_default = db;
    return 0;
}

otp_config *otp_config_new(void)
{
    otp_config *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (rebuild_derived(c)) {
        otp_config_free(c);
        return NULL;
    }
    return c;
}

void otp_config_free(otp_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->entries[i].key);
        free(c->entries[i].value);
        free(c->entries[i].origin);
    }
    free(c->entries);
    for (size_t i = 0; i < c->n_sections; i++)
        free(c->sections[i]);
    free(c->db_default);
    free(c->secret_default);
    free(c);
}

static int parse_long(const char *s, long *ret)
{
    if (!*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end)
        return -1;
    *ret = v;
    return 0;
}

static int parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = {"true", "yes", "1", "on"};
    static const char *const no[] = {"false", "no", "0", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -1;
}

static void int_error(const char *key, const char *value, const char *origin, long min, long max,
                      char *err, size_t errlen)
{
    fail(err, errlen, "%s = \"%s\" (from %s): not an integer between %ld and %ld", key, value,
         origin, min, max);
}

static void bool_error(const char *key, const char *value, const char *origin, char *err,
                       size_t errlen)
{
    fail(err, errlen, "%s = \"%s\" (from %s): not a boolean (true/false, yes/no, on/off, 1/0)", key,
         value, origin);
}

/* Checks value against the table row of its setting; 0 or -1 with a message. */
static int check_value(const setting *s, const char *value, const char *origin, char *err,
                       size_t errlen)
{
    long l;
    bool b;
    otp_log_level level;
    switch (s->type) {
    case T_STR:
        return 0;
    case T_PATH:
        if (*value)
            return 0;
        fail(err, errlen, "%s = \"\" (from %s): must not be empty", s->key, origin);
        return -1;
    case T_INT:
        if (parse_long(value, &l) == 0 && l >= s->min && l <= s->max)
            return 0;
        int_error(s->key, value, origin, s->min, s->max, err, errlen);
        return -1;
    case T_BOOL:
        if (parse_bool(value, &b) == 0)
            return 0;
        bool_error(s->key, value, origin, err, errlen);
        return -1;
    case T_LEVEL:
        if (otp_log_level_parse(value, &level) == 0)
            return 0;
        fail(err, errlen, "%s = \"%s\" (from %s): not one of debug, info, warn, error", s->key,
             value, origin);
        return -1;
    }
    return -1;
}

/* Checks a provider section name "provider.NAME": NAME is 1..31 of [A-Za-z0-9_-]. */
static bool valid_provider_section(const char *section, size_t len)
{
    const size_t plen = strlen("provider.");
    if (len <= plen || len - plen > MAX_PROVIDER_NAME || strncmp(section, "provider.", plen) != 0)
        return false;
    for (size_t i = plen; i < len; i++) {
        char ch = section[i];
        if (!isalnum((unsigned char)ch) && ch != '_' && ch != '-')
            return false;
    }
    return true;
}

static int add_section(otp_config *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n_sections; i++)
        if (strlen(c->sections[i]) == len && strncmp(c->sections[i], name, len) == 0)
            return 0;
    if (c->n_sections == MAX_SECTIONS)
        return -1;
    char *copy = strndup(name, len);
    if (!copy)
        return -1;
    c->sections[c->n_sections++] = copy;
    return 0;
}

/* Stores key = value at rank; a value of a higher rank already there is kept. */
static int store_value(otp_config *c, const char *key, const char *value, const char *origin,
                       int rank, char *err, size_t errlen)
{
    entry *e = find_entry(c, key);
    if (e && e->rank > rank)
        return 0;
    char *v = strdup(value);
    char *o = strdup(origin);
    if (!v || !o)
        goto oom;
    if (!e) {
        if (c->n == MAX_ENTRIES) {
            free(v);
            free(o);
            fail(err, errlen, "%s (from %s): too many settings (at most %d)", key, origin,
                 MAX_ENTRIES);
            return -1;
        }
        if (c->n == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 32;
            entry *grown = realloc(c->entries, cap * sizeof(*grown));
            if (!grown)
                goto oom;
            c->entries = grown;
            c->cap = cap;
        }
        char *k = strdup(key);
        if (!k)
            goto oom;
        e = &c->entries[c->n++];
        *e = (entry){.key = k};
    } else {
        free(e->value);
        free(e->origin);
    }
    e->value = v;
    e->origin = o;
    e->rank = rank;
    return 0;
oom:
    free(v);
    free(o);
    fail(err, errlen, "%s (from %s): out of memory", key, origin);
    return -1;
}

/* The one entry point for every layer: validates key and value, then stores. */
static int set_ranked(otp_config *c, const char *key, const char *value, const char *origin,
                      int rank, char *err, size_t errlen)
{
    size_t klen = strlen(key);
    if (klen == 0 || klen > MAX_KEY) {
        fail(err, errlen, "%s: invalid setting name \"%.64s\"", origin, key);
        return -1;
    }
    const setting *s = find_setting(key);
    if (s) {
        if (check_value(s, value, origin, err, errlen))
            return -1;
    } else {
        /* "provider.NAME.key": the provider validates its own keys. */
        const char *dot = strncmp(key, "provider.", 9) == 0 ? strchr(key + 9, '.') : NULL;
        if (!dot || !valid_provider_section(key, (size_t)(dot - key)) || dot[1] == '\0') {
            fail(err, errlen, "unknown setting \"%s\" (from %s)", key, origin);
            return -1;
        }
        if (add_section(c, key, (size_t)(dot - key))) {
            fail(err, errlen, "%s (from %s): too many sections (at most %d)", key, origin,
                 MAX_SECTIONS);
            return -1;
        }
    }
    if (store_value(c, key, value, origin, rank, err, errlen))
        return -1;
    if (strcmp(key, "data_dir") == 0 && rebuild_derived(c)) {
        fail(err, errlen, "data_dir (from %s): out of memory", origin);
        return -1;
    }
    return 0;
}

int otp_config_set(otp_config *c, const char *key, const char *value, const char *origin, char *err,
                   size_t errlen)
{
    return set_ranked(c, key, value, origin ? origin : "command line", RANK_FLAG, err, errlen);
}

/* True if name (an environment variable) is OTPD_<SECTION>_… for a section
 * that has settings ([server], [store], …) but names none of them: a misspelt
 * setting, refused as an unknown key of the INI file is. Other OTPD_* names
 * (a wrapper's own, OTPD_BIN say) are not otpd's business. */
static bool env_unknown(const char *name)
{
    char want[MAX_KEY + 8];
    bool in_section = false;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        env_name(settings[i].key, want, sizeof(want));
        if (strcmp(want, name) == 0)
            return false;
        const char *dot = strchr(settings[i].key, '.');
        /* "OTPD_" + the section upper-cased + "_" */
        size_t plen = dot ? 5 + (size_t)(dot - settings[i].key) + 1 : 0;
        if (dot && strncmp(want, name, plen) == 0)
            in_section = true;
    }
    return in_section;
}

int otp_config_load_env(otp_config *c, char *err, size_t errlen)
{
    extern char **environ;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char name[MAX_KEY + 8];
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        if (strncmp(*e, "OTPD_", 5) != 0)
            continue;
        snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1),
                 *e);
        /* A provider's section is named by the operator (provider.my_gw.url),
         * so OTPD_PROVIDER_MY_GW_URL cannot say where the name ends: refused,
         * rather than ignored with the provider left unconfigured. */
        if (strncmp(name, "OTPD_PROVIDER_", 14) == 0) {
            fail(err, errlen,
                 "%s: provider settings are not read from the environment (use the INI file"
                 " or --set provider.NAME.KEY=VALUE)",
                 name);
            return -1;
        }
        if (env_unknown(name)) {
            fail(err, errlen,
                 "unknown setting in the environment: %s (otpd help config lists them)", name);
            return -1;
        }
    }
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char name[MAX_KEY + 8];
        env_name(settings[i].key, name, sizeof(name));
        const char *v = getenv(name);
        if (v && set_ranked(c, settings[i].key, v, name, RANK_ENV, err, errlen))
            return -1;
    }
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* True if some known key starts with "section.", i.e. [section] can hold settings. */
static bool known_section(const char *section)
{
    size_t len = strlen(section);
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strncmp(settings[i].key, section, len) == 0 && settings[i].key[len] == '.')
            return true;
    return false;
}

static bool valid_key_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.';
}

/* Parses the value part of `key = value`: an optional double-quoted string (taken
 * verbatim), else text up to a " #" or " ;" comment. Returns NULL on a bad quote. */
static char *parse_value(char *v)
{
    v = trim(v);
    if (*v == '"') {
        char *close = strchr(v + 1, '"');
        if (!close || *trim(close + 1) != '\0')
            return NULL;
        *close = '\0';
        return v + 1;
    }
    for (char *p = v; *p; p++) {
        if ((*p == '#' || *p == ';') && p > v && isspace((unsigned char)p[-1])) {
            *p = '\0';
            break;
        }
    }
    return trim(v);
}

/* Handles one line of an INI file; section is the current [section] ("" at top). */
static int parse_line(otp_config *c, char *line, char *section, size_t section_size,
                      const char *origin, char *err, size_t errlen)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';')
        return 0;
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (!close || *trim(close + 1) != '\0') {
            fail(err, errlen, "%s: expected [section]", origin);
            return -1;
        }
        *close = '\0';
        char *name = trim(s + 1);
        if (valid_provider_section(name, strlen(name))) {
            if (add_section(c, name, strlen(name))) {
                fail(err, errlen, "%s: too many sections (at most %d)", origin, MAX_SECTIONS);
                return -1;
            }
        } else if (strncmp(name, "provider.", 9) == 0) {
            fail(err, errlen,
                 "%s: invalid section [%.64s]: NAME in [provider.NAME] is 1 to %d letters, "
                 "digits, '_' or '-'",
                 origin, name, MAX_PROVIDER_NAME);
            return -1;
        } else if (!known_section(name)) {
            fail(err, errlen, "%s: unknown section [%.64s]", origin, name);
            return -1;
        }
        snprintf(section, section_size, "%s", name);
        return 0;
    }
    char *eq = strchr(s, '=');
    if (!eq) {
        fail(err, errlen, "%s: expected key = value", origin);
        return -1;
    }
    *eq = '\0';
    char *key = trim(s);
    bool ok = *key != '\0' && strlen(key) <= MAX_KEY;
    for (char *p = key; *p && ok; p++)
        ok = valid_key_char(*p);
    if (!ok) {
        fail(err, errlen, "%s: invalid key \"%.64s\"", origin, key);
        return -1;
    }
    char *value = parse_value(eq + 1);
    if (!value) {
        fail(err, errlen, "%s: %s: unterminated or misplaced double quote", origin, key);
        return -1;
    }
    char full[MAX_KEY * 2 + 2];
    if (*section)
        snprintf(full, sizeof(full), "%s.%s", section, key);
    else
        snprintf(full, sizeof(full), "%s", key);
    return set_ranked(c, full, value, origin, RANK_FILE, err, errlen);
}

int otp_config_load_file(otp_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int r = 0;
    char line[MAX_LINE + 2];
    char section[MAX_KEY + 1] = "";
    char origin[MAX_ORIGIN];
    for (unsigned lineno = 1; fgets(line, sizeof(line), f); lineno++) {
        snprintf(origin, sizeof(origin), "%s:%u", path, lineno);
        size_t len = strlen(line);
        if (len > MAX_LINE && line[len - 1] != '\n') {
            fail(err, errlen, "%s: line longer than %d bytes", origin, MAX_LINE);
            r = -1;
            break;
        }
        char *start = line;
        if (lineno == 1 && strncmp(start, "\xEF\xBB\xBF", 3) == 0)
            start += 3; /* UTF-8 byte order mark, as some editors write */
        r = parse_line(c, start, section, sizeof(section), origin, err, errlen);
        if (r)
            break;
    }
    if (!r && ferror(f)) {
        fail(err, errlen, "%s: read error: %s", path, strerror(errno));
        r = -1;
    }
    fclose(f);
    return r;
}

const char *otp_config_get(const otp_config *c, const char *key)
{
    const entry *e = find_entry(c, key);
    if (e)
        return e->value;
    const setting *s = find_setting(key);
    if (!s)
        return NULL;
    if (s->def)
        return s->def;
    if (strcmp(key, "db") == 0)
        return c->db_default;
    return c->secret_default;
}

const char *otp_config_origin(const otp_config *c, const char *key)
{
    const entry *e = find_entry(c, key);
    return e ? e->origin : "default";
}

int otp_config_int(const otp_config *c, const char *key, long min, long max, long *ret, char *err,
                   size_t errlen)
{
    const char *v = otp_config_get(c, key);
    if (!v) {
        fail(err, errlen, "%s: not set: an integer between %ld and %ld is required", key, min, max);
        return -1;
    }
    long l;
    if (parse_long(v, &l) || l < min || l > max) {
        int_error(key, v, otp_config_origin(c, key), min, max, err, errlen);
        return -1;
    }
    *ret = l;
    return 0;
}

int otp_config_bool(const otp_config *c, const char *key, bool *ret, char *err, size_t errlen)
{
    const char *v = otp_config_get(c, key);
    if (!v) {
        fail(err, errlen, "%s: not set: a boolean is required", key);
        return -1;
    }
    bool b;
    if (parse_bool(v, &b)) {
        bool_error(key, v, otp_config_origin(c, key), err, errlen);
        return -1;
    }
    *ret = b;
    return 0;
}

void otp_config_each_section(const otp_config *c, const char *prefix,
                             void (*cb)(const char *section, void *ctx), void *ctx)
{
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < c->n_sections; i++)
        if (strncmp(c->sections[i], prefix, plen) == 0)
            cb(c->sections[i], ctx);
}

void otp_config_each_key(const otp_config *c, const char *section,
                         void (*cb)(const char *key, const char *origin, void *ctx), void *ctx)
{
    size_t slen = strlen(section);
    for (size_t i = 0; i < c->n; i++) {
        const entry *e = &c->entries[i];
        if (strncmp(e->key, section, slen) == 0 && e->key[slen] == '.')
            cb(e->key + slen + 1, e->origin, ctx);
    }
}

void otp_config_describe(void *file)
{
    FILE *f = file;
    fputs("Settings, highest precedence first: command-line flag, OTPD_* environment\n"
          "variable, INI file (--config FILE), built-in default.\n\n",
          f);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        char env[MAX_KEY + 8];
        env_name(s->key, env, sizeof(env));
        const char *def = s->shown ? s->shown : s->def;
        fprintf(f, "  %-30s %-34s default: %s%s%s\n", s->key, env, *def ? "\"" : "",
                *def ? def : "(empty)", *def ? "\"" : "");
        fprintf(f, "      %s", s->meaning);
        if (s->type == T_INT)
            fprintf(f, " Integer, %ld..%ld.", s->min, s->max);
        else if (s->type == T_BOOL)
            fputs(" Boolean: true/false, yes/no, on/off, 1/0.", f);
        fputc('\n', f);
    }
    fputs("\nINI file: `key = value` lines; `#` or `;` starts a comment (inside a value only\n"
          "after a space); values may be wrapped in double quotes, taken verbatim. Keys before\n"
          "any [section] are top-level; [server] + `threads` is server.threads. Known sections:\n"
          "[server], [store], [delivery], [limits], and [provider.NAME] for each SMS provider,\n"
          "whose keys (`type = file|http|smpp`, ...) are checked by the provider itself; they\n"
          "come from the INI file or --set provider.NAME.KEY=VALUE, never from OTPD_*.\n",
          f);
}
