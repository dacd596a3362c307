/* store/postgres_read.c — the read calls of the PostgreSQL backend.
 *
 * Each read borrows a connection from the store's read pool, runs one prepared
 * statement (one round trip, one snapshot: account_stats reads the balance and
 * the ledger sum together, request_status a request with its messages), gives
 * the connection back, and only then walks the rows and calls the caller's
 * callback, so a slow callback never holds a connection. A read that failed
 * because its connection had died (a server restart, a failover) is tried once
 * more on a fresh one: reads change nothing, so that is always safe.
 *
 * The queries are the SQLite backend's, in PostgreSQL's dialect; each is served
 * by an index (see the migrations). Texts given by callers that are not valid
 * UTF-8 cannot name anything stored and are answered "not found" without asking
 * the server (which would refuse them with an error).
 */
#include "store/postgres_internal.h"

#include <stdlib.h>
#include <string.h>

#define ACCOUNT_COLS                                                                               \
    "SELECT id, public_id, name, balance, currency, price_per_segment, low_balance_threshold,"     \
    " created_at, (resend_strategy = 'reuse')::integer, coalesce(webotp_domain, '') FROM accounts"
/* A message's columns, as message_from_row() reads them (MSG_NCOLS of them). */
#define MESSAGE_FIELDS                                                                             \
    "m.public_id, r.public_id, m.to_phone, m.status, coalesce(m.provider, ''),"                    \
    " coalesce(m.provider_message_id, ''), m.attempts, m.segments, m.created_at, m.updated_at,"    \
    " coalesce(m.error, ''), m.test"
#define MESSAGE_FROM " FROM messages m JOIN otp_requests r ON r.id = m.request_id"
#define MESSAGE_COLS "SELECT " MESSAGE_FIELDS MESSAGE_FROM
#define MSG_NCOLS 12
/* A request's columns, as request_from_row() reads them (REQ_NCOLS of them). */
#define REQ_COLS                                                                                   \
    "SELECT id, public_id, account_id, test, phone, status, attempts_left, max_attempts,"          \
    " code_length, expires_in, created_at, expires_at, coalesce(verified_at, 0), resend_count,"    \
    " coalesce(last_sent_at, created_at), channel, coalesce(template_id, ''),"                     \
    " coalesce(app_name, ''), coalesce(app_hash, ''), code_sealed, code_hash FROM otp_requests"
#define REQ_NCOLS 21
#define TEMPLATE_COLS                                                                              \
    "SELECT public_id, name, body, coalesce(dlt_template_id, ''), coalesce(sender_id, ''),"        \
    " is_default, created_at FROM templates"
#define ADMIN_KEY_COLS                                                                             \
    "SELECT id, public_id, prefix, name, created_at, coalesce(revoked_at, 0) FROM admin_keys"

const char *const pg_read_sql[S__COUNT] = {
    [S_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
    /* The hot path of every authenticated call: three index lookups. */
    [S_KEY_LOOKUP] =
        "SELECT k.id, k.account_id, a.public_id, a.name, k.test,"
        " (k.revoked_at IS NOT NULL)::integer, coalesce(k.last_used_at, 0),"
        " (a.resend_strategy = 'reuse')::integer, coalesce(a.webotp_domain, ''),"
        " coalesce(t.public_id, '')"
        " FROM api_keys k JOIN accounts a ON a.id = k.account_id"
        " LEFT JOIN templates t ON t.account_id = a.id AND t.is_default = 1 WHERE k.hash = $1",
    /* A public id wins over a name that happens to look like one. */
    [S_ACC_FIND] = ACCOUNT_COLS " WHERE public_id = $1 OR name = $1"
                                " ORDER BY (public_id = $1) DESC LIMIT 1",
    [S_ACC_BY_ID] = ACCOUNT_COLS " WHERE id = $1",
    [S_ACC_LIST] = ACCOUNT_COLS " ORDER BY id",
    [S_KEY_LIST] = "SELECT id, public_id, account_id, prefix, name, test, created_at,"
                   " coalesce(last_used_at, 0), coalesce(revoked_at, 0)"
                   " FROM api_keys WHERE account_id = $1 ORDER BY id",
    [S_STATS] = "SELECT a.balance,"
                " (SELECT count(*) FROM otp_requests WHERE account_id = a.id),"
                " (SELECT count(*) FROM messages WHERE account_id = a.id),"
                " (SELECT count(*) FROM ledger WHERE account_id = a.id),"
                " (SELECT coalesce(sum(amount), 0) FROM ledger WHERE account_id = a.id)"
                " FROM accounts a WHERE a.id = $1",
    /* Both counts from the partial index messages_outbox. */
    [S_OUTBOX_DEPTH] = "SELECT count(*) FILTER (WHERE status = 'queued'),"
                       " count(*) FILTER (WHERE status = 'sending')"
                       " FROM messages WHERE status IN ('queued', 'sending')",
    [S_REQ_GET] = REQ_COLS " WHERE public_id = $1 AND account_id = $2",
    [S_REQ_MESSAGES] = MESSAGE_COLS " WHERE r.public_id = $1 AND r.account_id = $2 ORDER BY m.id",
    /* A status read: the request and its messages (MESSAGE_COLS' columns after
     * REQ_COLS'), both through their indexes. */
    [S_REQ_STATUS] = "SELECT q.*, m.public_id, q.public_id, m.to_phone, m.status,"
                     " coalesce(m.provider, ''), coalesce(m.provider_message_id, ''), m.attempts,"
                     " m.segments, m.created_at, m.updated_at, coalesce(m.error, ''), m.test"
                     " FROM (" REQ_COLS " WHERE public_id = $1 AND account_id = $2 AND test = $3) q"
                     " LEFT JOIN messages m ON m.request_id = q.id ORDER BY m.id",
    /* A message (MESSAGE_COLS' columns) and its events after them, one row
     * per event (NULLs if it has none). */
    [S_MSG_GET] = "SELECT " MESSAGE_FIELDS ", e.status, e.at, coalesce(e.error, '')" MESSAGE_FROM
                  " LEFT JOIN message_events e ON e.message_id = m.id"
                  " WHERE m.public_id = $1 AND m.account_id = $2 ORDER BY e.id",
    [S_LEDGER] = "SELECT id, type, amount, balance_after, coalesce(request_id, ''),"
                 " coalesce(message_id, ''), coalesce(note, ''), created_at FROM ledger"
                 " WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    [S_TPL_FIND] = TEMPLATE_COLS " WHERE account_id = $1 AND (public_id = $2 OR name = $2)"
                                 " ORDER BY (public_id = $2) DESC LIMIT 1",
    [S_TPL_GET_DEFAULT] = TEMPLATE_COLS " WHERE account_id = $1 AND is_default = 1",
    [S_TPL_LIST] = TEMPLATE_COLS " WHERE account_id = $1 ORDER BY id",
    [S_TEST_INBOX] = "SELECT m.public_id, r.public_id, m.to_phone, m.sealed_text, m.created_at"
                     " FROM messages m JOIN otp_requests r ON r.id = m.request_id"
                     " WHERE m.account_id = $1 AND m.to_phone = $2 AND m.test = 1"
                     " ORDER BY m.id DESC LIMIT $3",
    [S_LIMITS_GET] = "SELECT text FROM account_limits WHERE account_id = $1",
    /* Writes, but one statement with nothing to roll back: the read pool's
     * autocommit serves it (an UNLOGGED table: no WAL to wait for). */
    [S_KEY_TAKE] = "SELECT o_granted, o_wait_ms FROM otp_key_take($1, $2, $3, $4)",
    /* kind: 0 pumping block, 1 window lock, 2 streak lock */
    [S_BLOCKS] = "SELECT b.account_id, a.public_id, b.target, 0, b.created_at, b.until"
                 " FROM blocks b JOIN accounts a ON a.id = b.account_id"
                 " WHERE b.until > $2 AND ($1 = 0 OR b.account_id = $1)"
                 " UNION ALL"
                 " SELECT p.account_id, a.public_id, p.phone, p.lock_kind, 0, p.locked_until"
                 " FROM phone_state p JOIN accounts a ON a.id = p.account_id"
                 " WHERE p.locked_until > $2 AND ($1 = 0 OR p.account_id = $1)"
                 " ORDER BY 1, 6",
    [S_ADMIN_KEY_LOOKUP] = ADMIN_KEY_COLS " WHERE hash = $1",
    [S_ADMIN_KEY_LIST] = ADMIN_KEY_COLS " ORDER BY id",
};

/* Runs read statement i. OTP_OK with the result in *ret (PQclear it), or the
 * error. */
static otp_err query(otp_store *base, pg_stmt i, const pg_params *p, PGresult **ret)
{
    pg_store *s = (pg_store *)base;
    for (int tries = 0;; tries++) {
        otp_err e;
        pg_conn *c = pg_reader_get(s, &e);
        if (!c)
            return e;
        PGresult *r = pg_run(c, i, p);
        e = pg_result_err(c, r);
        bool lost = e && PQstatus(c->conn) != CONNECTION_OK;
        pg_reader_put(s, c); /* closes a lost connection */
        if (!e) {
            *ret = r;
            return OTP_OK;
        }
        PQclear(r);
        if (!lost || tries > 0)
            return e;
    }
}

static void account_from_row(const PGresult *r, int i, otp_account *a)
{
    memset(a, 0, sizeof(*a));
    a->id = pg_int(r, i, 0);
    pg_copy(r, i, 1, a->public_id, sizeof(a->public_id));
    pg_copy(r, i, 2, a->name, sizeof(a->name));
    a->balance = pg_int(r, i, 3);
    pg_copy(r, i, 4, a->currency, sizeof(a->currency));
    a->price_per_segment = pg_int(r, i, 5);
    a->low_balance_threshold = pg_int(r, i, 6);
    a->created_at_ms = pg_int(r, i, 7);
    a->resend_strategy = pg_int(r, i, 8) ? OTP_RESEND_REUSE : OTP_RESEND_ROTATE;
    pg_copy(r, i, 9, a->webotp_domain, sizeof(a->webotp_domain));
}

/* One account by statement i. OTP_OK (*ret written), OTP_E_NOT_FOUND, or an error. */
static otp_err one_account(otp_store *s, pg_stmt i, const pg_params *p, otp_account *ret)
{
    PGresult *r;
    otp_err e = query(s, i, p, &r);
    if (e)
        return e;
    if (PQntuples(r) == 0)
        e = OTP_E_NOT_FOUND;
    else
        account_from_row(r, 0, ret);
    PQclear(r);
    return e;
}

int pg_schema_version(otp_store *s)
{
    PGresult *r;
    if (query(s, S_VERSION, NULL, &r))
        return -1;
    int v = PQntuples(r) == 1 ? (int)pg_int(r, 0, 0) : -1;
    PQclear(r);
    return v;
}

otp_err pg_key_lookup(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN], otp_key_auth *ret)
{
    pg_params p = {0};
    pg_p_bytea(&p, hash, OTP_APIKEY_HASH_LEN);
    PGresult *r;
    otp_err e = query(s, S_KEY_LOOKUP, &p, &r);
    if (e)
        return e;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return OTP_E_NOT_FOUND;
    }
    otp_key_auth k;
    memset(&k, 0, sizeof(k));
    k.key_id = pg_int(r, 0, 0);
    k.account_id = pg_int(r, 0, 1);
    pg_copy(r, 0, 2, k.account_public_id, sizeof(k.account_public_id));
    pg_copy(r, 0, 3, k.account_name, sizeof(k.account_name));
    k.test = pg_int(r, 0, 4) != 0;
    k.revoked = pg_int(r, 0, 5) != 0;
    k.last_used_at_ms = pg_int(r, 0, 6);
    k.resend_strategy = pg_int(r, 0, 7) ? OTP_RESEND_REUSE : OTP_RESEND_ROTATE;
    pg_copy(r, 0, 8, k.webotp_domain, sizeof(k.webotp_domain));
    pg_copy(r, 0, 9, k.default_template_id, sizeof(k.default_template_id));
    PQclear(r);
    *ret = k;
    return OTP_OK;
}

otp_err pg_account_find(otp_store *s, const char *id_or_name, otp_account *ret)
{
    if (!id_or_name || !*id_or_name || !pg_utf8_valid(id_or_name))
        return OTP_E_NOT_FOUND;
    pg_params p = {0};
    pg_p_text(&p, id_or_name);
    return one_account(s, S_ACC_FIND, &p, ret);
}

otp_err pg_account_get(otp_store *s, int64_t account_id, otp_account *ret)
{
    pg_params p = {0};
    pg_p_int(&p, account_id);
    return one_account(s, S_ACC_BY_ID, &p, ret);
}

otp_err pg_account_list(otp_store *s, otp_account_cb cb, void *ctx)
{
    PGresult *r;
    otp_err e = query(s, S_ACC_LIST, NULL, &r);
    if (e)
        return e;
    otp_account a;
    for (int i = 0; i < PQntuples(r); i++) {
        account_from_row(r, i, &a);
        cb(&a, ctx);
    }
    PQclear(r);
    return OTP_OK;
}

otp_err pg_key_list(otp_store *s, int64_t account_id, otp_key_cb cb, void *ctx)
{
    pg_params p = {0};
    pg_p_int(&p, account_id);
    PGresult *r;
    otp_err e = query(s, S_KEY_LIST, &p, &r);
    if (e)
        return e;
    otp_key k;
    for (int i = 0; i < PQntuples(r); i++) {
        memset(&k, 0, sizeof(k));
        k.id = pg_int(r, i, 0);
        pg_copy(r, i, 1, k.public_id, sizeof(k.public_id));
        k.account_id = pg_int(r, i, 2);
        pg_copy(r, i, 3, k.prefix, sizeof(k.prefix));
        pg_copy(r, i, 4, k.name, sizeof(k.name));
        k.test = pg_int(r, i, 5) != 0;
        k.created_at_ms = pg_int(r, i, 6);
        k.last_used_at_ms = pg_int(r, i, 7);
        k.revoked_at_ms = pg_int(r, i, 8);
        cb(&k, ctx);
    }
    PQclear(r);
    return OTP_OK;
}

otp_err pg_account_stats(otp_store *s, int64_t account_id, otp_account_stats *ret)
{
    pg_params p = {0};
    pg_p_int(&p, account_id);
    PGresult *r;
    otp_err e = query(s, S_STATS, &p, &r);
    if (e)
        return e;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return OTP_E_NOT_FOUND;
    }
    otp_account_stats a;
    a.balance = pg_int(r, 0, 0);
    a.requests = pg_int(r, 0, 1);
    a.messages = pg_int(r, 0, 2);
    a.ledger_entries = pg_int(r, 0, 3);
    a.ledger_sum = pg_int(r, 0, 4);
    PQclear(r);
    *ret = a;
    return OTP_OK;
}

otp_err pg_outbox_depth(otp_store *s, int64_t *ret_queued, int64_t *ret_sending)
{
    pg_params p = {0};
    PGresult *r;
    otp_err e = query(s, S_OUTBOX_DEPTH, &p, &r);
    if (e)
        return e;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return OTP_E_INTERNAL;
    }
    *ret_queued = pg_int(r, 0, 0);
    *ret_sending = pg_int(r, 0, 1);
    PQclear(r);
    return OTP_OK;
}

/* ---- requests, messages, ledger, templates, test inbox ---- */

static bool req_status_of(const char *v, otp_req_status *ret)
{
    static const char *const names[] = {
        [OTP_REQ_PENDING] = "pending",
        [OTP_REQ_VERIFIED] = "verified",
        [OTP_REQ_LOCKED] = "locked",
        [OTP_REQ_CANCELLED] = "cancelled",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i] && strcmp(v, names[i]) == 0) {
            *ret = (otp_req_status)i;
            return true;
        }
    return false;
}

static bool msg_status_of(const char *v, otp_msg_status *ret)
{
    for (int i = OTP_MSG_QUEUED; i <= OTP_MSG_UNDELIVERABLE; i++)
        if (strcmp(v, otp_msg_status_name((otp_msg_status)i)) == 0) {
            *ret = (otp_msg_status)i;
            return true;
        }
    return false;
}

static bool ledger_type_of(const char *v, otp_ledger_type *ret)
{
    static const char *const names[] = {
        [OTP_LEDGER_CREDIT] = "credit",
        [OTP_LEDGER_DEBIT] = "debit",
        [OTP_LEDGER_REFUND] = "refund",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(v, names[i]) == 0) {
            *ret = (otp_ledger_type)i;
            return true;
        }
    return false;
}

/* Binds (public id, account) for the per-request and per-message reads. */
static void bind_ref(pg_params *p, const char *public_id, int64_t account_id)
{
    pg_p_text(p, public_id);
    pg_p_int(p, account_id);
}

/* Fills *ret from the REQ_COLS at the start of row i of r. OTP_OK; OTP_E_INTERNAL
 * if a status, sealed code or hash is not what was stored. */
static otp_err request_from_row(const PGresult *r, int i, otp_request_info *ret)
{
    otp_request_info q;
    memset(&q, 0, sizeof(q));
    q.id = pg_int(r, i, 0);
    pg_copy(r, i, 1, q.public_id, sizeof(q.public_id));
    q.account_id = pg_int(r, i, 2);
    q.test = pg_int(r, i, 3) != 0;
    pg_copy(r, i, 4, q.phone, sizeof(q.phone));
    bool ok = req_status_of(pg_text(r, i, 5), &q.status);
    q.attempts_left = (int)pg_int(r, i, 6);
    q.max_attempts = (int)pg_int(r, i, 7);
    q.code_length = (int)pg_int(r, i, 8);
    q.expires_in_s = (int)pg_int(r, i, 9);
    q.created_at_ms = pg_int(r, i, 10);
    q.expires_at_ms = pg_int(r, i, 11);
    q.verified_at_ms = pg_int(r, i, 12);
    q.resend_count = (int)pg_int(r, i, 13);
    q.last_sent_at_ms = pg_int(r, i, 14);
    pg_copy(r, i, 15, q.channel, sizeof(q.channel));
    pg_copy(r, i, 16, q.template_id, sizeof(q.template_id));
    pg_copy(r, i, 17, q.app_name, sizeof(q.app_name));
    pg_copy(r, i, 18, q.app_hash, sizeof(q.app_hash));
    otp_err e = OTP_OK;
    uint8_t *sealed = NULL;
    size_t len = 0;
    if (pg_bytea(r, i, 19, &sealed, &len))
        e = OTP_E_INTERNAL;
    else if (len > sizeof(q.code_sealed))
        ok = false;
    else if (len) {
        memcpy(q.code_sealed, sealed, len);
        q.code_sealed_len = len;
    }
    free(sealed);
    uint8_t *hash = NULL;
    if (!e && pg_bytea(r, i, 20, &hash, &len))
        e = OTP_E_INTERNAL;
    else if (!e && (!hash || len != OTP_CODE_HASH_LEN))
        ok = false;
    else if (!e)
        memcpy(q.code_hash, hash, OTP_CODE_HASH_LEN);
    free(hash);
    if (e)
        return e;
    if (!ok)
        return OTP_E_INTERNAL;
    *ret = q;
    return OTP_OK;
}

otp_err pg_request_get(otp_store *s, int64_t account_id, const char *request_id,
                       otp_request_info *ret)
{
    if (!request_id || !pg_utf8_valid(request_id))
        return OTP_E_OTP_NOT_FOUND;
    pg_params p = {0};
    bind_ref(&p, request_id, account_id);
    PGresult *r;
    otp_err e = query(s, S_REQ_GET, &p, &r);
    if (e)
        return e;
    e = PQntuples(r) == 0 ? OTP_E_OTP_NOT_FOUND : request_from_row(r, 0, ret);
    PQclear(r);
    return e;
}

/* Fills m from the MESSAGE_COLS of row i of r, which start at column c; false
 * if its status is unknown. */
static bool message_from_row(const PGresult *r, int i, int c, otp_message_info *m)
{
    memset(m, 0, sizeof(*m));
    pg_copy(r, i, c + 0, m->public_id, sizeof(m->public_id));
    pg_copy(r, i, c + 1, m->request_id, sizeof(m->request_id));
    pg_copy(r, i, c + 2, m->to, sizeof(m->to));
    bool ok = msg_status_of(pg_text(r, i, c + 3), &m->status);
    pg_copy(r, i, c + 4, m->provider, sizeof(m->provider));
    pg_copy(r, i, c + 5, m->provider_message_id, sizeof(m->provider_message_id));
    m->attempts = (int)pg_int(r, i, c + 6);
    m->segments = (int)pg_int(r, i, c + 7);
    m->created_at_ms = pg_int(r, i, c + 8);
    m->updated_at_ms = pg_int(r, i, c + 9);
    pg_copy(r, i, c + 10, m->error, sizeof(m->error));
    m->test = pg_int(r, i, c + 11) != 0;
    return ok;
}

otp_err pg_request_messages(otp_store *s, int64_t account_id, const char *request_id,
                            otp_message_cb cb, void *ctx)
{
    if (!request_id || !pg_utf8_valid(request_id))
        return OTP_OK;
    pg_params p = {0};
    bind_ref(&p, request_id, account_id);
    PGresult *r;
    otp_err e = query(s, S_REQ_MESSAGES, &p, &r);
    if (e)
        return e;
    otp_message_info m;
    bool corrupt = false;
    for (int i = 0; i < PQntuples(r); i++) {
        if (message_from_row(r, i, 0, &m))
            cb(&m, ctx);
        else
            corrupt = true;
    }
    PQclear(r);
    return corrupt ? OTP_E_INTERNAL : OTP_OK;
}

/* One statement: the request of this key mode (another mode's is not found,
 * and its messages are not read) joined with its messages, one row each (one
 * row with the message columns NULL if it has none), in one snapshot. */
otp_err pg_request_status(otp_store *s, int64_t account_id, bool test, const char *request_id,
                          otp_request_info *ret, otp_message_cb cb, void *ctx)
{
    if (!request_id || !pg_utf8_valid(request_id))
        return OTP_E_OTP_NOT_FOUND;
    pg_params p = {0};
    bind_ref(&p, request_id, account_id);
    pg_p_int(&p, test);
    PGresult *r;
    otp_err e = query(s, S_REQ_STATUS, &p, &r);
    if (e)
        return e;
    int n = PQntuples(r);
    e = n == 0 ? OTP_E_OTP_NOT_FOUND : request_from_row(r, 0, ret);
    otp_message_info m;
    for (int i = 0; !e && i < n; i++) {
        if (PQgetisnull(r, i, REQ_NCOLS))
            continue; /* no messages */
        if (message_from_row(r, i, REQ_NCOLS, &m))
            cb(&m, ctx);
        else
            e = OTP_E_INTERNAL;
    }
    PQclear(r);
    return e;
}

otp_err pg_message_get(otp_store *s, int64_t account_id, const char *message_id,
                       otp_message_info *ret, otp_event_cb cb, void *ctx)
{
    if (!message_id || !pg_utf8_valid(message_id))
        return OTP_E_MESSAGE_NOT_FOUND;
    pg_params p = {0};
    bind_ref(&p, message_id, account_id);
    PGresult *r;
    otp_err e = query(s, S_MSG_GET, &p, &r);
    if (e)
        return e;
    int n = PQntuples(r);
    otp_message_info m; /* *ret is written only on success */
    if (n == 0)
        e = OTP_E_MESSAGE_NOT_FOUND;
    else if (!message_from_row(r, 0, 0, &m))
        e = OTP_E_INTERNAL;
    otp_message_event ev;
    for (int i = 0; !e && cb && i < n; i++) {
        if (PQgetisnull(r, i, MSG_NCOLS))
            continue; /* no events */
        memset(&ev, 0, sizeof(ev));
        if (!msg_status_of(pg_text(r, i, MSG_NCOLS), &ev.status)) {
            e = OTP_E_INTERNAL;
            break;
        }
        ev.at_ms = pg_int(r, i, MSG_NCOLS + 1);
        pg_copy(r, i, MSG_NCOLS + 2, ev.error, sizeof(ev.error));
        cb(&ev, ctx);
    }
    PQclear(r);
    if (!e)
        *ret = m;
    return e;
}

otp_err pg_ledger_list(otp_store *s, int64_t account_id, int64_t before_id, int limit,
                       otp_ledger_cb cb, void *ctx)
{
    if (limit <= 0)
        return OTP_OK;
    pg_params p = {0};
    pg_p_int(&p, account_id);
    pg_p_int(&p, before_id > 0 ? before_id : INT64_MAX);
    pg_p_int(&p, limit);
    PGresult *r;
    otp_err e = query(s, S_LEDGER, &p, &r);
    if (e)
        return e;
    otp_ledger_entry l;
    bool corrupt = false;
    for (int i = 0; i < PQntuples(r); i++) {
        memset(&l, 0, sizeof(l));
        l.id = pg_int(r, i, 0);
        if (!ledger_type_of(pg_text(r, i, 1), &l.type)) {
            corrupt = true;
            continue;
        }
        l.amount = pg_int(r, i, 2);
        l.balance_after = pg_int(r, i, 3);
        pg_copy(r, i, 4, l.request_id, sizeof(l.request_id));
        pg_copy(r, i, 5, l.message_id, sizeof(l.message_id));
        pg_copy(r, i, 6, l.note, sizeof(l.note));
        l.created_at_ms = pg_int(r, i, 7);
        cb(&l, ctx);
    }
    PQclear(r);
    return corrupt ? OTP_E_INTERNAL : OTP_OK;
}

static void template_from_row(const PGresult *r, int i, otp_template *t)
{
    memset(t, 0, sizeof(*t));
    pg_copy(r, i, 0, t->public_id, sizeof(t->public_id));
    pg_copy(r, i, 1, t->name, sizeof(t->name));
    pg_copy(r, i, 2, t->body, sizeof(t->body));
    pg_copy(r, i, 3, t->dlt_template_id, sizeof(t->dlt_template_id));
    pg_copy(r, i, 4, t->sender_id, sizeof(t->sender_id));
    t->is_default = pg_int(r, i, 5) != 0;
    t->created_at_ms = pg_int(r, i, 6);
}

otp_err pg_template_find(otp_store *s, int64_t account_id, const char *id_or_name,
                         otp_template *ret)
{
    if (id_or_name && (!*id_or_name || !pg_utf8_valid(id_or_name)))
        return OTP_E_NOT_FOUND;
    pg_params p = {0};
    pg_p_int(&p, account_id);
    if (id_or_name)
        pg_p_text(&p, id_or_name);
    PGresult *r;
    otp_err e = query(s, id_or_name ? S_TPL_FIND : S_TPL_GET_DEFAULT, &p, &r);
    if (e)
        return e;
    if (PQntuples(r) == 0)
        e = OTP_E_NOT_FOUND;
    else
        template_from_row(r, 0, ret);
    PQclear(r);
    return e;
}

otp_err pg_template_list(otp_store *s, int64_t account_id, otp_template_cb cb, void *ctx)
{
    pg_params p = {0};
    pg_p_int(&p, account_id);
    PGresult *r;
    otp_err e = query(s, S_TPL_LIST, &p, &r);
    if (e)
        return e;
    otp_template t;
    for (int i = 0; i < PQntuples(r); i++) {
        template_from_row(r, i, &t);
        cb(&t, ctx);
    }
    PQclear(r);
    return OTP_OK;
}

otp_err pg_test_inbox(otp_store *s, int64_t account_id, const char *phone, int limit,
                      otp_test_message_cb cb, void *ctx)
{
    if (!phone || limit <= 0 || !pg_utf8_valid(phone))
        return OTP_OK;
    pg_params p = {0};
    pg_p_int(&p, account_id);
    pg_p_text(&p, phone);
    pg_p_int(&p, limit);
    PGresult *r;
    otp_err e = query(s, S_TEST_INBOX, &p, &r);
    if (e)
        return e;
    otp_test_message m;
    for (int i = 0; !e && i < PQntuples(r); i++) {
        memset(&m, 0, sizeof(m));
        pg_copy(r, i, 0, m.message_id, sizeof(m.message_id));
        pg_copy(r, i, 1, m.request_id, sizeof(m.request_id));
        pg_copy(r, i, 2, m.to, sizeof(m.to));
        uint8_t *sealed = NULL;
        if (pg_bytea(r, i, 3, &sealed, &m.sealed_len)) {
            e = OTP_E_INTERNAL;
            break;
        }
        m.sealed = sealed;
        m.created_at_ms = pg_int(r, i, 4);
        cb(&m, ctx);
        free(sealed);
    }
    PQclear(r);
    return e;
}

otp_err pg_limits_get(otp_store *s, int64_t account_id, char *buf, size_t n)
{
    if (!buf || n == 0)
        return OTP_E_INTERNAL;
    buf[0] = '\0';
    pg_params p = {0};
    pg_p_int(&p, account_id);
    PGresult *r;
    otp_err e = query(s, S_LIMITS_GET, &p, &r);
    if (e)
        return e;
    if (PQntuples(r) == 1)
        pg_copy(r, 0, 0, buf, n);
    PQclear(r);
    return OTP_OK;
}

otp_err pg_key_take(otp_store *s, int64_t key_id, int rate, int burst, int want, int *ret_granted,
                    int64_t *ret_wait_ms)
{
    *ret_granted = 0;
    *ret_wait_ms = 0;
    pg_params p = {0};
    pg_p_int(&p, key_id);
    pg_p_int(&p, rate);
    pg_p_int(&p, burst);
    pg_p_int(&p, want);
    PGresult *r;
    otp_err e = query(s, S_KEY_TAKE, &p, &r);
    if (e)
        return e;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return OTP_E_INTERNAL;
    }
    *ret_granted = (int)pg_int(r, 0, 0);
    *ret_wait_ms = pg_int(r, 0, 1);
    PQclear(r);
    return OTP_OK;
}

otp_err pg_block_list(otp_store *s, int64_t account_id, int64_t now_ms, otp_block_cb cb, void *ctx)
{
    pg_params p = {0};
    pg_p_int(&p, account_id);
    pg_p_int(&p, now_ms);
    PGresult *r;
    otp_err e = query(s, S_BLOCKS, &p, &r);
    if (e)
        return e;
    otp_block b;
    for (int i = 0; i < PQntuples(r); i++) {
        memset(&b, 0, sizeof(b));
        b.account_id = pg_int(r, i, 0);
        pg_copy(r, i, 1, b.account_public_id, sizeof(b.account_public_id));
        pg_copy(r, i, 2, b.target, sizeof(b.target));
        int64_t kind = pg_int(r, i, 3);
        b.kind = kind == 0   ? "suspected_sms_pumping"
                 : kind == 2 ? "phone_locked_24h"
                             : "phone_locked";
        b.created_at_ms = pg_int(r, i, 4);
        b.until_ms = pg_int(r, i, 5);
        cb(&b, ctx);
    }
    PQclear(r);
    return OTP_OK;
}

static void admin_key_from_row(const PGresult *r, int i, otp_admin_key *k)
{
    memset(k, 0, sizeof(*k));
    k->id = pg_int(r, i, 0);
    pg_copy(r, i, 1, k->public_id, sizeof(k->public_id));
    pg_copy(r, i, 2, k->prefix, sizeof(k->prefix));
    pg_copy(r, i, 3, k->name, sizeof(k->name));
    k->created_at_ms = pg_int(r, i, 4);
    k->revoked_at_ms = pg_int(r, i, 5);
}

otp_err pg_admin_key_lookup(otp_store *s, const uint8_t hash[OTP_APIKEY_HASH_LEN],
                            otp_admin_key *ret)
{
    pg_params p = {0};
    pg_p_bytea(&p, hash, OTP_APIKEY_HASH_LEN);
    PGresult *r;
    otp_err e = query(s, S_ADMIN_KEY_LOOKUP, &p, &r);
    if (e)
        return e;
    if (PQntuples(r) == 0)
        e = OTP_E_NOT_FOUND;
    else
        admin_key_from_row(r, 0, ret);
    PQclear(r);
    return e;
}

otp_err pg_admin_key_list(otp_store *s, otp_admin_key_cb cb, void *ctx)
{
    PGresult *r;
    otp_err e = query(s, S_ADMIN_KEY_LIST, NULL, &r);
    if (e)
        return e;
    otp_admin_key k;
    for (int i = 0; i < PQntuples(r); i++) {
        admin_key_from_row(r, i, &k);
        cb(&k, ctx);
    }
    PQclear(r);
    return OTP_OK;
}
