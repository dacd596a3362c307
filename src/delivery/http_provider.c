/* delivery/http_provider.c — the `http` provider: a JSON POST per message.
 *
 * Each message becomes POST <url> with the body
 *   {"messageId": …, "to": "+91…", "text": …, "senderId"?: …, "dltTemplateId"?: …}
 * (senderId and dltTemplateId only when there is one), the configured headers,
 * Content-Type: application/json and Idempotency-Key: <messageId>, so a gateway
 * that deduplicates can drop the resend that at-least-once delivery may cause.
 * The reply decides: 2xx accepted (the gateway's id read from id_field, a dotted
 * path into the JSON reply, e.g. "id" or "data.messageId"); 408, 425 and 429
 * temporary; other 4xx permanent; 5xx, other codes, timeouts and connection
 * errors temporary. Error texts name the status or the curl error, never the
 * reply body (a gateway may echo the text, which holds the code).
 *
 * A batch goes out concurrently on one curl multi handle that lives as long as
 * the provider: its connection cache keeps connections to the gateway open
 * between batches (keep-alive), CURLMOPT_MAX_HOST_CONNECTIONS bounds how many
 * (`connections`), and the easy handles are pooled and reused. The multi handle
 * is not thread-safe, so batches take turns under a mutex.
 *
 * Delivery reports: with dlr_secret set, POST /providers/NAME/dlr is served
 * for this provider. The caller's secret (X-DLR-Secret, or Authorization:
 * Bearer) and the configured one are hashed with SHA-256 and the digests
 * compared with sodium_memcmp, so the comparison takes the same time whatever
 * the lengths and contents. The body's fields are named by dlr_id_field,
 * dlr_status_field and dlr_error_field (defaults id, status, error).
 */
#include "delivery/provider.h"
#include "otpd_config.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REPLY_MAX (64 * 1024) /* a longer reply is cut off: the id is near the top */
#define POOL_MAX 1024         /* easy handles kept for reuse */
#define FIELD_SIZE 128

typedef struct http_provider {
    otp_provider base;
    char url[2048];
    long timeout_ms;
    long connections;
    char id_field[FIELD_SIZE];
    char sender_id[32];
    char ca_file[1024];
    struct curl_slist *headers; /* configured + content type; per request: + Idempotency-Key */
    bool has_dlr_secret;
    uint8_t dlr_secret_hash[crypto_hash_sha256_BYTES];
    char dlr_id_field[FIELD_SIZE];
    char dlr_status_field[FIELD_SIZE];
    char dlr_error_field[FIELD_SIZE];

    pthread_mutex_t lock; /* one batch at a time on the multi handle */
    CURLM *multi;
    CURL **pool;
    size_t n_pool;
} http_provider;

/* One request of a batch. */
typedef struct request {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    char *reply;
    size_t reply_len;
    bool reply_overflow;
    bool added;
    bool pooled; /* easy belongs to the pool (else it is cleaned up after the batch) */
    CURLcode result;
    bool finished;
} request;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- Settings ------------------------------------------------------------ */

static bool token_char(char c)
{
    return isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c);
}

/* Parses `headers = "Name: value; Name2: value2"` into p->headers. */
static int parse_headers(http_provider *p, const otp_config *cfg, const char *section, char *err,
                         size_t errlen)
{
    char key[160];
    snprintf(key, sizeof(key), "%s.headers", section);
    const char *v = otp_config_get(cfg, key);
    struct curl_slist *l = NULL;
    l = curl_slist_append(l, "Content-Type: application/json");
    l = l ? curl_slist_append(l, "Accept: application/json") : NULL;
    l = l ? curl_slist_append(l, "Expect:") : NULL; /* no 100-continue round trip */
    if (!l) {
        snprintf(err, errlen, "%s: out of memory", section);
        return -1;
    }
    p->headers = l;
    if (!v || !*v)
        return 0;
    size_t len = strlen(v);
    char *buf = malloc(len + 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", key);
        return -1;
    }
    memcpy(buf, v, len + 1);
    int r = 0;
    for (char *save = NULL, *h = strtok_r(buf, ";", &save); h; h = strtok_r(NULL, ";", &save)) {
        while (*h == ' ' || *h == '\t')
            h++;
        char *end = h + strlen(h);
        while (end > h && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (!*h)
            continue;
        char *colon = strchr(h, ':');
        bool ok = colon && colon > h;
        for (char *c = h; ok && c < colon; c++)
            ok = token_char(*c);
        for (char *c = h; ok && *c; c++)
            ok = *c != '\r' && *c != '\n';
        if (!ok) {
            snprintf(err, errlen,
                     "%s (from %s): expected \"Name: value\" headers separated by ';' "
                     "(a header name is letters, digits and -)",
                     key, otp_config_origin(cfg, key));
            r = -1;
            break;
        }
        struct curl_slist *nl = curl_slist_append(p->headers, h);
        if (!nl) {
            snprintf(err, errlen, "%s: out of memory", key);
            r = -1;
            break;
        }
        p->headers = nl;
    }
    sodium_memzero(buf, len);
    free(buf);
    return r;
}

static int parse_settings(http_provider *p, const otp_config *cfg, const char *section, char *err,
                          size_t errlen)
{
    char k[160];
    char secret[512];
    if (otp_provider_str(cfg, section, "url", NULL, true, p->url, sizeof(p->url), err, errlen) ||
        otp_provider_int(cfg, section, "timeout", 10000, 100, 120000, &p->timeout_ms, err,
                         errlen) ||
        otp_provider_int(cfg, section, "connections", 8, 1, 256, &p->connections, err, errlen) ||
        otp_provider_str(cfg, section, "id_field", "id", true, p->id_field, sizeof(p->id_field),
                         err, errlen) ||
        otp_provider_str(cfg, section, "sender_id", "", false, p->sender_id, sizeof(p->sender_id),
                         err, errlen) ||
        otp_provider_str(cfg, section, "ca_file", "", false, p->ca_file, sizeof(p->ca_file), err,
                         errlen) ||
        otp_provider_str(cfg, section, "dlr_id_field", "id", true, p->dlr_id_field,
                         sizeof(p->dlr_id_field), err, errlen) ||
        otp_provider_str(cfg, section, "dlr_status_field", "status", true, p->dlr_status_field,
                         sizeof(p->dlr_status_field), err, errlen) ||
        otp_provider_str(cfg, section, "dlr_error_field", "error", true, p->dlr_error_field,
                         sizeof(p->dlr_error_field), err, errlen) ||
        otp_provider_str(cfg, section, "dlr_secret", "", false, secret, sizeof(secret), err,
                         errlen))
        return -1;
    if (strncasecmp(p->url, "http://", 7) != 0 && strncasecmp(p->url, "https://", 8) != 0) {
        snprintf(k, sizeof(k), "%s.url", section);
        snprintf(err, errlen, "%s = \"%.200s\" (from %s): must start with http:// or https://", k,
                 p->url, otp_config_origin(cfg, k));
        return -1;
    }
    if (secret[0]) {
        if (strlen(secret) < 16) {
            snprintf(k, sizeof(k), "%s.dlr_secret", section);
            snprintf(err, errlen, "%s (from %s): at least 16 characters (a random token)", k,
                     otp_config_origin(cfg, k));
            sodium_memzero(secret, sizeof(secret));
            return -1;
        }
        crypto_hash_sha256(p->dlr_secret_hash, (const uint8_t *)secret, strlen(secret));
        p->has_dlr_secret = true;
    }
    sodium_memzero(secret, sizeof(secret));
    return parse_headers(p, cfg, section, err, errlen);
}

static void http_destroy(otp_provider *base)
{
    http_provider *p = (http_provider *)base;
    if (!p)
        return;
    for (size_t i = 0; i < p->n_pool; i++)
        curl_easy_cleanup(p->pool[i]);
    free(p->pool);
    if (p->multi)
        curl_multi_cleanup(p->multi);
    curl_slist_free_all(p->headers); /* may hold a token */
    pthread_mutex_destroy(&p->lock);
    sodium_memzero(p, sizeof(*p));
    free(p);
}

static int http_create(const otp_config *cfg, const char *section, const otp_dlr_sink *dlr,
                       otp_provider **ret, char *err, size_t errlen)
{
    (void)dlr; /* reports come over HTTP, through the API */
    pthread_once(&curl_once, curl_init);
    if (curl_init_result != CURLE_OK) {
        snprintf(err, errlen, "%s: libcurl failed to initialise: %s", section,
                 curl_easy_strerror(curl_init_result));
        return -1;
    }
    http_provider *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "%s: out of memory", section);
        return -1;
    }
    pthread_mutex_init(&p->lock, NULL);
    if (otp_provider_init(&p->base, &otp_provider_http_ops, cfg, section, err, errlen) ||
        parse_settings(p, cfg, section, err, errlen)) {
        http_destroy(&p->base);
        return -1;
    }
    p->base.takes_http_dlr = p->has_dlr_secret;
    p->multi = curl_multi_init();
    if (!p->multi) {
        snprintf(err, errlen, "%s: cannot create a curl multi handle", section);
        http_destroy(&p->base);
        return -1;
    }
    curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, p->connections);
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, p->connections);
    *ret = &p->base;
    return 0;
}

/* ---- Sending ------------------------------------------------------------- */

static size_t on_reply(char *data, size_t size, size_t nmemb, void *user)
{
    request *rq = user;
    size_t n = size * nmemb;
    if (rq->reply_len + n > REPLY_MAX) {
        rq->reply_overflow = true;
        n = REPLY_MAX - rq->reply_len;
    }
    char *grown = realloc(rq->reply, rq->reply_len + n + 1);
    if (!grown)
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    rq->reply = grown;
    memcpy(rq->reply + rq->reply_len, data, n);
    rq->reply_len += n;
    rq->reply[rq->reply_len] = '\0';
    return size * nmemb; /* the rest of an overflowing reply is read and dropped */
}

/* Follows a dotted path ("data.id") into JSON. */
static json_t *lookup(const json_t *root, const char *path)
{
    char part[FIELD_SIZE];
    const json_t *v = root;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        v = json_is_object(v) ? json_object_get(v, part) : NULL;
        path += n + (dot ? 1 : 0);
    }
    return (json_t *)v;
}

/* Writes a JSON string or integer as text into out; false if neither or too long. */
static bool scalar_text(const json_t *v, char *out, size_t outsize)
{
    int n;
    if (json_is_string(v))
        n = snprintf(out, outsize, "%s", json_string_value(v));
    else if (json_is_integer(v))
        n = snprintf(out, outsize, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        return false;
    if (n < 0 || (size_t)n >= outsize || n == 0)
        return false;
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7F)
            *c = '?';
    return true;
}

static char *encode_body(const http_provider *p, const otp_sms *m, size_t *ret_len)
{
    json_t *o = json_object();
    const char *sender = m->sender_id && *m->sender_id ? m->sender_id : p->sender_id;
    if (!o || json_object_set_new(o, "messageId", json_string(m->message_id)) ||
        json_object_set_new(o, "to", json_string(m->to)) ||
        json_object_set_new(o, "text", json_string(m->text)) ||
        (*sender && json_object_set_new(o, "senderId", json_string(sender))) ||
        (m->dlt_template_id && *m->dlt_template_id &&
         json_object_set_new(o, "dltTemplateId", json_string(m->dlt_template_id)))) {
        json_decref(o);
        return NULL;
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s)
        *ret_len = strlen(s);
    return s;
}

/* The k-th easy handle of a batch: from the pool, which grows to the largest
 * batch seen (up to POOL_MAX); beyond that a fresh one (*ret_pooled false). */
static CURL *take_handle(http_provider *p, size_t k, bool *ret_pooled)
{
    *ret_pooled = k < POOL_MAX;
    if (k < p->n_pool)
        return p->pool[k];
    if (k >= POOL_MAX)
        return curl_easy_init();
    CURL **grown = realloc(p->pool, (p->n_pool + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    p->pool = grown;
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    p->pool[p->n_pool++] = e;
    return e;
}

/* Sets up request rq for message m; returns false (with res filled) if the
 * message cannot be sent. */
static bool prepare(http_provider *p, request *rq, size_t k, const otp_sms *m, otp_send_result *res)
{
    if (!m->message_id || !m->to || !m->text) {
        res->outcome = OTP_SEND_PERMANENT;
        snprintf(res->error, sizeof(res->error), "a field of the message is missing");
        return false;
    }
    rq->body = encode_body(p, m, &rq->body_len);
    if (!rq->body) {
        res->outcome = OTP_SEND_PERMANENT;
        snprintf(res->error, sizeof(res->error), "the text is not valid UTF-8");
        return false;
    }
    char idem[64 + OTP_ID_SIZE];
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", m->message_id);
    struct curl_slist *h = NULL;
    for (struct curl_slist *c = p->headers; c; c = c->next) {
        struct curl_slist *nh = curl_slist_append(h, c->data);
        if (!nh) {
            curl_slist_free_all(h);
            h = NULL;
            break;
        }
        h = nh;
    }
    if (h) {
        struct curl_slist *nh = curl_slist_append(h, idem);
        if (!nh)
            curl_slist_free_all(h);
        h = nh;
    }
    rq->headers = h;
    rq->easy = take_handle(p, k, &rq->pooled);
    if (!rq->headers || !rq->easy) {
        res->outcome = OTP_SEND_TEMPORARY;
        snprintf(res->error, sizeof(res->error), "out of memory");
        return false;
    }
    CURL *e = rq->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, p->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)rq->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, rq->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "otpd/" OTPD_VERSION);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_reply);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, rq);
    curl_easy_setopt(e, CURLOPT_PRIVATE, rq);
    if (p->ca_file[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_file);
    if (curl_multi_add_handle(p->multi, e) != CURLM_OK) {
        res->outcome = OTP_SEND_TEMPORARY;
        snprintf(res->error, sizeof(res->error), "curl: cannot start the request");
        return false;
    }
    rq->added = true;
    return true;
}

/* The fate of a finished request. */
static void classify(const http_provider *p, request *rq, otp_send_result *res)
{
    if (rq->result != CURLE_OK) {
        res->outcome = OTP_SEND_TEMPORARY;
        if (rq->result == CURLE_OPERATION_TIMEDOUT)
            snprintf(res->error, sizeof(res->error), "no reply from the gateway within %ld ms",
                     p->timeout_ms);
        else
            snprintf(res->error, sizeof(res->error), "gateway unreachable: %s",
                     curl_easy_strerror(rq->result));
        return;
    }
    long code = 0;
    curl_easy_getinfo(rq->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
        res->outcome = OTP_SEND_ACCEPTED;
        res->error[0] = '\0';
        json_t *reply = rq->reply && !rq->reply_overflow ? json_loads(rq->reply, 0, NULL) : NULL;
        if (!scalar_text(lookup(reply, p->id_field), res->provider_message_id,
                         sizeof(res->provider_message_id)))
            res->provider_message_id[0] = '\0';
        json_decref(reply);
        return;
    }
    bool temporary = code >= 500 || code < 400 || code == 408 || code == 425 || code == 429;
    res->outcome = temporary ? OTP_SEND_TEMPORARY : OTP_SEND_PERMANENT;
    snprintf(res->error, sizeof(res->error), "gateway answered HTTP %ld", code);
}

static void http_send(otp_provider *base, const otp_sms *msgs, size_t n, otp_send_result *results)
{
    http_provider *p = (http_provider *)base;
    request *rqs = calloc(n ? n : 1, sizeof(*rqs));
    for (size_t i = 0; i < n; i++)
        results[i] = (otp_send_result){.outcome = OTP_SEND_TEMPORARY};
    if (!rqs) {
        for (size_t i = 0; i < n; i++)
            snprintf(results[i].error, sizeof(results[i].error), "out of memory");
        return;
    }
    pthread_mutex_lock(&p->lock);
    size_t active = 0;
    for (size_t i = 0; i < n; i++)
        if (prepare(p, &rqs[i], active, &msgs[i], &results[i]))
            active++;

    /* Runs every transfer to its end; curl enforces each one's timeout, the
     * deadline only guards against a stuck multi handle. */
    int64_t deadline_ms = p->timeout_ms * 2 + 2000;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int running = (int)active;
    while (running > 0) {
        if (curl_multi_perform(p->multi, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(p->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            request *rq = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&rq);
            if (rq) {
                rq->result = msg->data.result;
                rq->finished = true;
            }
        }
        if (running == 0)
            break;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t elapsed = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (elapsed > deadline_ms)
            break;
        curl_multi_poll(p->multi, NULL, 0, 200, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        request *rq = &rqs[i];
        if (rq->added) {
            if (rq->finished) {
                classify(p, rq, &results[i]);
            } else {
                results[i].outcome = OTP_SEND_TEMPORARY;
                snprintf(results[i].error, sizeof(results[i].error),
                         "no reply from the gateway in time");
            }
            curl_multi_remove_handle(p->multi, rq->easy);
        }
        if (rq->easy && !rq->pooled)
            curl_easy_cleanup(rq->easy);
        curl_slist_free_all(rq->headers);
        if (rq->body) {
            sodium_memzero(rq->body, rq->body_len);
            free(rq->body);
        }
        if (rq->reply) {
            sodium_memzero(rq->reply, rq->reply_len);
            free(rq->reply);
        }
    }
    pthread_mutex_unlock(&p->lock);
    free(rqs);
}

static bool http_ready(otp_provider *base)
{
    return ((http_provider *)base)->multi != NULL;
}

/* ---- Delivery reports ---------------------------------------------------- */

static bool http_dlr_auth(otp_provider *base, const char *credential)
{
    http_provider *p = (http_provider *)base;
    if (!p->has_dlr_secret || !credential)
        return false;
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const uint8_t *)credential, strlen(credential));
    bool ok = sodium_memcmp(h, p->dlr_secret_hash, sizeof(h)) == 0;
    sodium_memzero(h, sizeof(h));
    return ok;
}

static int http_dlr_parse(otp_provider *base, const json_t *body, otp_dlr *r,
                          const char **ret_field)
{
    http_provider *p = (http_provider *)base;
    memset(r, 0, sizeof(*r));
    snprintf(r->provider, sizeof(r->provider), "%s", p->base.name);
    if (!scalar_text(lookup(body, p->dlr_id_field), r->provider_message_id,
                     sizeof(r->provider_message_id))) {
        *ret_field = p->dlr_id_field;
        return -1;
    }
    const json_t *st = lookup(body, p->dlr_status_field);
    int k = json_is_string(st) ? otp_dlr_status_parse(json_string_value(st), &r->status) : -1;
    if (k < 0) {
        *ret_field = p->dlr_status_field;
        return -1;
    }
    const json_t *e = lookup(body, p->dlr_error_field);
    if (e && !json_is_null(e) && !(json_is_string(e) && !*json_string_value(e))) {
        char text[200];
        if (!scalar_text(e, text, sizeof(text))) {
            *ret_field = p->dlr_error_field;
            return -1;
        }
        if (r->status != OTP_DLR_DELIVERED)
            snprintf(r->error, sizeof(r->error), "%s", text);
    }
    return k; /* 1: an intermediate state, nothing to record */
}

static const char *const http_keys[] = {
    "url",     "timeout",      "connections",      "headers",         "id_field",   "sender_id",
    "ca_file", "dlr_id_field", "dlr_status_field", "dlr_error_field", "dlr_secret", NULL};

const otp_provider_ops otp_provider_http_ops = {
    .type = "http",
    .keys = http_keys,
    .create = http_create,
    .destroy = http_destroy,
    .send = http_send,
    .ready = http_ready,
    .dlr_auth = http_dlr_auth,
    .dlr_parse = http_dlr_parse,
};
