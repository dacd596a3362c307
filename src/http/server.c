/* http/server.c — libmicrohttpd glue: one otp_http_req per HTTP request.
 *
 * libmicrohttpd calls on_request() several times per request: once when the
 * head is parsed (we create the otp_http_req), once per chunk of body (we
 * append, up to max_body; past it we discard and answer 413 at the end), and
 * once when the body is complete (we
 * route and run the handler). A handler that parks the connection
 * (otp_http_suspend) returns at once; when another thread has set the reply it
 * calls otp_http_resume(), libmicrohttpd calls on_request() again on its worker
 * thread, and only then is the response queued. A parked request is therefore
 * never answered from two threads, and no HTTP thread ever waits for the disk.
 *
 * The request's log line is written when libmicrohttpd reports the request
 * complete; that is also where all its memory is freed, in one place.
 */
#include "http/server.h"
#include "http/deadline.h"
#include "http/router.h"
#include "util/clock.h"
#include "util/ids.h"
#include "util/log.h"
#include "util/str.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EXTRA_HEADERS 4
#define MAX_DISCARD (2 * 1024 * 1024) /* past this much of an oversized body, hang up */
#define MAX_JSON_DEPTH 16

struct otp_http_server {
    struct MHD_Daemon *daemon;
    const otp_route *routes;
    size_t nroutes;
    void *app;
    size_t max_body;
    size_t max_header;
    atomic_long inflight;
    atomic_long parked; /* suspended and not yet resumed */
    atomic_bool draining;
    otp_http_deadlines *deadlines; /* each request must arrive whole in time */
};

struct otp_http_req {
    struct MHD_Connection *conn;
    otp_http_server *srv;
    const char *method; /* owned by libmicrohttpd for the request's lifetime */
    const otp_route *route;
    char params[OTP_HTTP_MAX_PARAMS][OTP_HTTP_PARAM_SIZE];
    char trace_id[OTP_TRACE_ID_SIZE];
    int64_t start_us;

    char *body;
    size_t body_len;
    size_t body_cap;
    size_t discarded;
    bool too_large;

    bool dispatched; /* the handler has run */
    bool parked;     /* the handler suspended the connection */
    otp_http_handler finish;

    int status;
    char *resp; /* malloc'd JSON, handed to libmicrohttpd */
    size_t resp_len;
    const char *resp_ct; /* NULL = application/json; else a static string */
    int nheaders;
    char *header_names[MAX_EXTRA_HEADERS];
    char *header_values[MAX_EXTRA_HEADERS];
    char allow[64];

    void *state;
    void (*state_free)(void *);

    char account[OTP_ID_SIZE];
    char phone[32];
};

/* ---- accessors ------------------------------------------------------------ */

const char *otp_http_method(const otp_http_req *req)
{
    return req->method;
}

const char *otp_http_route(const otp_http_req *req)
{
    return req->route ? req->route->pattern : "-";
}

otp_http_handler otp_http_route_handler(const otp_http_req *req)
{
    return req->route ? req->route->handler : NULL;
}

const char *otp_http_trace_id(const otp_http_req *req)
{
    return req->trace_id;
}

const char *otp_http_param(const otp_http_req *req, int i)
{
    return (i >= 0 && i < OTP_HTTP_MAX_PARAMS) ? req->params[i] : NULL;
}

const char *otp_http_header(const otp_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *otp_http_query(const otp_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *otp_http_body(const otp_http_req *req, size_t *ret_len)
{
    *ret_len = req->body_len;
    return req->body ? req->body : "";
}

void otp_http_set_state(otp_http_req *req, void *state, void (*free_fn)(void *))
{
    req->state = state;
    req->state_free = free_fn;
}

void *otp_http_state(const otp_http_req *req)
{
    return req->state;
}

void otp_http_log_account(otp_http_req *req, const char *account_id)
{
    otp_str_copy(req->account, sizeof(req->account), account_id);
}

void otp_http_log_phone(otp_http_req *req, const char *masked_phone)
{
    otp_str_copy(req->phone, sizeof(req->phone), masked_phone);
}

/* ---- JSON body ------------------------------------------------------------ */

static bool is_json_content_type(const char *ct)
{
    static const char want[] = "application/json";
    if (!ct || strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    char next = ct[sizeof(want) - 1];
    return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

/* Nesting depth of a JSON text, counted outside strings; jansson's own cap is
 * 2048 levels, far more than any request of ours needs. */
static int json_depth(const char *s, size_t n)
{
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return max;
}

otp_err otp_http_json_body(otp_http_req *req, json_t **ret)
{
    if (req->body_len > 0 && !is_json_content_type(otp_http_header(req, "Content-Type")))
        return OTP_E_UNSUPPORTED_MEDIA_TYPE;
    if (req->body_len == 0 || json_depth(req->body, req->body_len) > MAX_JSON_DEPTH)
        return OTP_E_INVALID_JSON;
    json_error_t jerr;
    json_t *root = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return OTP_E_INVALID_JSON;
    if (!json_is_object(root)) {
        json_decref(root);
        return OTP_E_INVALID_JSON;
    }
    *ret = root;
    return OTP_OK;
}

/* ---- replies -------------------------------------------------------------- */

static void set_body(otp_http_req *req, int status, json_t *root)
{
    req->resp_ct = NULL;
    free(req->resp);
    req->resp = json_dumps(root, JSON_COMPACT);
    req->resp_len = req->resp ? strlen(req->resp) : 0;
    req->status = req->resp ? status : 500;
    json_decref(root);
}

void otp_http_reply_data(otp_http_req *req, int status, json_t *data)
{
    set_body(req, status, json_pack("{s:o}", "data", data ? data : json_object()));
}

void otp_http_reply_text(otp_http_req *req, int status, const char *content_type, const char *text,
                         size_t len)
{
    free(req->resp);
    req->resp = malloc(len + 1);
    if (!req->resp) {
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
        return;
    }
    memcpy(req->resp, text, len);
    req->resp[len] = '\0';
    req->resp_len = len;
    req->resp_ct = content_type;
    req->status = status;
}

void otp_http_add_header(otp_http_req *req, const char *name, const char *value)
{
    if (req->nheaders >= MAX_EXTRA_HEADERS)
        return;
    req->header_names[req->nheaders] = strdup(name);
    req->header_values[req->nheaders] = strdup(value);
    req->nheaders++;
}

void otp_http_reply_error(otp_http_req *req, otp_err e, const char *message, json_t *details)
{
    json_t *root = json_pack("{s:s, s:s}", "code", otp_err_code(e), "message",
                             message ? message : otp_err_message(e));
    if (details) {
        json_t *retry = json_object_get(details, "retryAfter");
        if (json_is_integer(retry)) {
            char buf[24];
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(retry));
            otp_http_add_header(req, "Retry-After", buf);
        }
        json_object_set_new(root, "details", details);
    }
    set_body(req, otp_err_status(e), root);
}

void otp_http_suspend(otp_http_req *req, otp_http_handler finish)
{
    req->parked = true;
    req->finish = finish;
    atomic_fetch_add(&req->srv->parked, 1);
    MHD_suspend_connection(req->conn);
}

void otp_http_resume(otp_http_req *req)
{
    otp_http_server *srv = req->srv; /* req may be freed once resumed */
    MHD_resume_connection(req->conn);
    atomic_fetch_sub(&srv->parked, 1);
}

void otp_http_pass_on(otp_http_req *req, otp_http_handler finish)
{
    req->finish = finish; /* published to the HTTP thread by the resume */
}

static enum MHD_Result queue_reply(otp_http_req *req)
{
    if (!req->resp)
        otp_http_reply_error(req, OTP_E_INTERNAL, NULL, NULL);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(req->resp_len, req->resp, MHD_RESPMEM_MUST_FREE);
    if (!r)
        return MHD_NO;
    req->resp = NULL; /* libmicrohttpd frees it */
    MHD_add_response_header(r, "Content-Type", req->resp_ct ? req->resp_ct : "application/json");
    MHD_add_response_header(r, "X-Request-Id", req->trace_id);
    if (req->status == 405 && req->allow[0])
        MHD_add_response_header(r, "Allow", req->allow);
    for (int i = 0; i < req->nheaders; i++)
        MHD_add_response_header(r, req->header_names[i], req->header_values[i]);
    enum MHD_Result res = MHD_queue_response(req->conn, (unsigned)req->status, r);
    MHD_destroy_response(r);
    return res;
}

/* ---- request life cycle --------------------------------------------------- */

static bool trace_id_acceptable(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return n > 0 && n < OTP_TRACE_ID_SIZE;
}

static otp_http_req *req_new(otp_http_server *srv, struct MHD_Connection *conn, const char *method)
{
    otp_http_req *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->conn = conn;
    req->srv = srv;
    req->method = method;
    req->start_us = otp_mono_us();
    req->status = 500;
    const char *tid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (tid && trace_id_acceptable(tid)) {
        otp_str_copy(req->trace_id, sizeof(req->trace_id), tid);
    } else {
        otp_base62_random(req->trace_id, 20);
        req->trace_id[20] = '\0';
    }
    atomic_fetch_add(&srv->inflight, 1);
    return req;
}

static void req_free(otp_http_req *req)
{
    if (req->state_free)
        req->state_free(req->state);
    for (int i = 0; i < req->nheaders; i++) {
        free(req->header_names[i]);
        free(req->header_values[i]);
    }
    free(req->body);
    free(req->resp);
    free(req);
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    size_t *sum = cls;
    (void)kind;
    *sum += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

/* Size of the request head as sent: request line plus header lines. */
static size_t head_size(struct MHD_Connection *conn, const char *url, const char *method)
{
    size_t sum = strlen(method) + strlen(url) + 12; /* " ", " HTTP/1.1", CRLF */
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size, &sum);
    return sum;
}

static bool append_body(otp_http_req *req, const char *data, size_t n)
{
    if (req->too_large || req->body_len + n > req->srv->max_body) {
        req->too_large = true;
        req->discarded += n;
        return req->discarded <= MAX_DISCARD;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 1024;
        while (cap < req->body_len + n + 1)
            cap *= 2;
        char *b = realloc(req->body, cap);
        if (!b)
            return false;
        req->body = b;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
    return true;
}

static void dispatch(otp_http_req *req, const char *url)
{
    otp_http_server *srv = req->srv;
    const otp_route *route = NULL;
    switch (otp_router_match(srv->routes, srv->nroutes, req->method, url, &route, req->params,
                             req->allow, sizeof(req->allow))) {
    case OTP_ROUTE_FOUND:
        req->route = route;
        route->handler(req, srv->app);
        return;
    case OTP_ROUTE_NO_METHOD:
        otp_http_reply_error(req, OTP_E_METHOD_NOT_ALLOWED, NULL, NULL);
        return;
    case OTP_ROUTE_NO_PATH:
        otp_http_reply_error(req, OTP_E_NOT_FOUND, NULL, NULL);
        return;
    }
}

/* ---- deadlines (deadline.h): the connection's slot is its socket context ---- */

static otp_http_deadline *deadline_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    otp_http_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? otp_http_deadline_open(srv->deadlines, ci->connect_fd) : NULL;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        otp_http_deadline_close(srv->deadlines, *socket_context);
        *socket_context = NULL;
    }
}

/* Called once per request, when its request line has arrived. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    otp_http_server *srv = cls;
    (void)uri;
    otp_http_deadline_request(srv->deadlines, deadline_of(conn));
    return NULL; /* on_request() still sees a NULL req_cls first */
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    otp_http_server *srv = cls;
    otp_http_req *req = *req_cls;
    (void)version;

    if (!req) {
        req = req_new(srv, conn, method);
        if (!req)
            return MHD_NO;
        *req_cls = req;
        if (atomic_load(&srv->draining)) {
            req->dispatched = true;
            otp_http_reply_error(req, OTP_E_UNAVAILABLE, "Server is shutting down", NULL);
            otp_http_add_header(req, "Connection", "close");
            return queue_reply(req);
        }
        if (head_size(conn, url, method) > srv->max_header) {
            req->dispatched = true;
            otp_http_reply_error(req, OTP_E_HEADERS_TOO_LARGE, NULL, NULL);
            return queue_reply(req);
        }
        /* A body declared too large is read and dropped, and the 413 sent once it
         * is in: a reply sent before it, followed by the close, would meet the
         * client's bytes still arriving, and the reset those cause can destroy
         * the reply before the client reads it. Only what is too large to read
         * through (past MAX_DISCARD) is answered at once, and so is a client
         * that waits for "100 Continue" before it sends the body. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
        unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
        if (declared > srv->max_body &&
            (declared > MAX_DISCARD || (expect && strcasecmp(expect, "100-continue") == 0))) {
            req->dispatched = true;
            otp_http_reply_error(req, OTP_E_PAYLOAD_TOO_LARGE, NULL, NULL);
            return queue_reply(req);
        }
        if (declared > srv->max_body)
            req->too_large = true;
        return MHD_YES;
    }
    if (*upload_data_size) {
        bool ok = append_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (!req->dispatched) {
        if (!otp_http_deadline_received(deadline_of(conn)))
            return MHD_NO; /* past its deadline: being cut off, not handled */
        req->dispatched = true;
        if (req->too_large)
            otp_http_reply_error(req, OTP_E_PAYLOAD_TOO_LARGE, NULL, NULL);
        else
            dispatch(req, url);
        if (req->parked)
            return MHD_YES; /* the reply is queued on the call after otp_http_resume() */
    } else if (req->finish) {
        otp_http_handler finish = req->finish;
        req->finish = NULL;
        finish(req, srv->app);
    }
    return queue_reply(req);
}

static _Atomic(otp_http_observer) observer;

void otp_http_set_observer(otp_http_observer fn)
{
    atomic_store(&observer, fn);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    otp_http_server *srv = cls;
    otp_http_req *req = *req_cls;
    otp_http_deadline_answered(srv->deadlines, deadline_of(conn));
    if (!req)
        return;
    int64_t us = otp_mono_us() - req->start_us;
    otp_http_observer obs = atomic_load(&observer);
    if (obs)
        obs(req->route, req->status, us);
    /* The line of every request, without printf: see util/log.h. */
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    otp_log_line l;
    if (otp_log_begin(&l, ok ? OTP_LOG_INFO : OTP_LOG_WARN)) {
        otp_log_str(&l, "event=request traceId=");
        otp_log_str(&l, req->trace_id);
        otp_log_str(&l, " method=");
        otp_log_str(&l, req->method);
        otp_log_str(&l, " route=");
        otp_log_str(&l, otp_http_route(req));
        otp_log_str(&l, " status=");
        otp_log_int(&l, req->status);
        otp_log_str(&l, " durationMs=");
        otp_log_ms2(&l, us);
        otp_log_str(&l, " account=");
        otp_log_str(&l, req->account[0] ? req->account : "-");
        otp_log_str(&l, " phone=");
        otp_log_str(&l, req->phone[0] ? req->phone : "-");
        if (!ok)
            otp_log_str(&l, " aborted=true");
        otp_log_end_batched(&l);
    }
    req_free(req);
    *req_cls = NULL;
    atomic_fetch_sub(&srv->inflight, 1);
}

static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    for (char *p = msg; *p; p++)
        if (*p == '"')
            *p = '\'';
    otp_log(OTP_LOG_WARN, "event=http_error msg=\"%s\"", msg);
}

/* ---- start / stop --------------------------------------------------------- */

/* Parses "host:port", "[v6]:port" or ":port" into a socket address. */
static int parse_listen(const char *listen, struct sockaddr_storage *ret, socklen_t *ret_len)
{
    char host[256];
    const char *port;
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (!end || end[1] != ':' || (size_t)(end - listen - 1) >= sizeof(host))
            return -1;
        memcpy(host, listen + 1, (size_t)(end - listen - 1));
        host[end - listen - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof(host))
            return -1;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || p < 0 || p > 65535)
        return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &ai) != 0 || !ai)
        return -1;
    memcpy(ret, ai->ai_addr, ai->ai_addrlen);
    *ret_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int otp_http_start(const otp_http_options *opt, const otp_route *routes, size_t nroutes, void *app,
                   otp_http_server **ret, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    socklen_t addrlen = 0;
    if (parse_listen(opt->listen, &addr, &addrlen) != 0) {
        snprintf(err, errlen, "listen = \"%s\": not HOST:PORT", opt->listen);
        return -1;
    }
    otp_http_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->routes = routes;
    s->nroutes = nroutes;
    s->app = app;
    s->max_body = opt->max_body;
    s->max_header = opt->max_header;
    atomic_init(&s->inflight, 0);
    atomic_init(&s->parked, 0);
    atomic_init(&s->draining, false);

    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The per-connection pool holds the request head (the read buffer, which
     * also takes the body in pieces for the upload callback), one ~56-byte
     * struct per header line, and the response head. libmicrohttpd zeroes all
     * of it after every request, so it is sized for the heads we accept: a head
     * of max_header bytes plus 4 KiB for the rest. Heads up to max_header pass;
     * heads a little larger (up to about max_header + 3 KiB) get our JSON 431;
     * larger ones hit libmicrohttpd's own (HTML) 431, and so does a head near
     * max_header made of more than ~50 header lines (measured with the 8 KiB
     * default: 50 lines pass, 70 do not; a 4 KiB head passes with 110). */
    size_t pool = opt->max_header + 4096;
    s->deadlines =
        otp_http_deadlines_start(opt->max_connections, (int64_t)opt->connection_timeout_s * 1000,
                                 (int64_t)opt->request_timeout_s * 1000);
    if (!s->deadlines) {
        snprintf(err, errlen, "cannot start the request deadline thread");
        free(s);
        return -1;
    }
    /* A pool of one is no pool: libmicrohttpd would warn that it ignores it. */
    struct MHD_OptionItem threads[] = {
        {opt->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)opt->threads,
         NULL},
        {MHD_OPTION_END, 0, NULL}};
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_ARRAY, threads,
        MHD_OPTION_CONNECTION_LIMIT, opt->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        opt->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT, opt->connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_URI_LOG_CALLBACK,
        on_request_line, s, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not available)", opt->listen);
        otp_http_deadlines_stop(s->deadlines);
        free(s);
        return -1;
    }
    *ret = s;
    return 0;
}

void otp_http_quiesce(otp_http_server *s)
{
    if (!s || !s->daemon)
        return;
    atomic_store(&s->draining, true);
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

long otp_http_inflight(otp_http_server *s)
{
    return s ? atomic_load(&s->inflight) : 0;
}

long otp_http_parked(otp_http_server *s)
{
    return s ? atomic_load(&s->parked) : 0;
}

void otp_http_stop(otp_http_server *s)
{
    if (!s)
        return;
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    otp_http_deadlines_stop(s->deadlines);
    free(s);
}
