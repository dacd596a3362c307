/* tests/unit/delivery/test_http_provider.c — the `http` provider against a
 * gateway written here on libmicrohttpd: one concurrent batch where each message
 * meets another answer (2xx with the id, 4xx permanent, 408/429/5xx temporary,
 * a hang that times out, a refused connection), the JSON body and headers,
 * id_field as a dotted path and a numeric id, connections kept alive across
 * batches, delivery-report authentication and parsing, and settings errors that
 * name the setting. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "delivery/provider.h"
#include "util/clock.h"
#include "util/config.h"

/* ---- The gateway --------------------------------------------------------- */

typedef struct gateway {
    struct MHD_Daemon *d;
    int port;
    atomic_int requests;
    atomic_int connections;
    pthread_mutex_t lock;
    char last_auth[128];
    char last_idem[64];
    char last_body[4096];
    bool nested; /* answer {"data": {"id": 4711}} */
} gateway;

typedef struct upload {
    char buf[4096];
    size_t len;
} upload;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result res = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return res;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **state)
{
    gateway *g = cls;
    upload *u = *state;
    if (!u) {
        *state = calloc(1, sizeof(upload));
        return MHD_YES;
    }
    if (*size) {
        size_t n = *size < sizeof(u->buf) - u->len - 1 ? *size : sizeof(u->buf) - u->len - 1;
        memcpy(u->buf + u->len, data, n);
        u->len += n;
        *size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&g->requests, 1);
    json_t *body = json_loads(u->buf, 0, NULL);
    const char *to = json_string_value(json_object_get(body, "to"));
    char last = to ? to[strlen(to) - 1] : '0';
    pthread_mutex_lock(&g->lock);
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *idem = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    snprintf(g->last_auth, sizeof(g->last_auth), "%s", auth ? auth : "");
    snprintf(g->last_idem, sizeof(g->last_idem), "%s", idem ? idem : "");
    snprintf(g->last_body, sizeof(g->last_body), "%s", u->buf);
    bool nested = g->nested;
    pthread_mutex_unlock(&g->lock);
    json_decref(body);
    switch (last) {
    case '1':
        return reply(c, 400, "{\"error\":\"bad number\"}");
    case '2':
        return reply(c, 503, "{}");
    case '3':
        return reply(c, 429, "{}");
    case '4':
        nanosleep(&(struct timespec){.tv_sec = 1}, NULL); /* past the provider's timeout */
        return reply(c, 200, "{\"id\":\"late\"}");
    case '5':
        return reply(c, 408, "{}");
    case '6':
        return reply(c, 202, "not json");
    default: {
        char b[64];
        if (nested)
            snprintf(b, sizeof(b), "{\"data\":{\"id\":4711}}");
        else
            snprintf(b, sizeof(b), "{\"id\":\"g-%d\"}", atomic_load(&g->requests));
        return reply(c, 200, b);
    }
    }
}

static void on_done(void *cls, struct MHD_Connection *c, void **state,
                    enum MHD_RequestTerminationCode toe)
{
    free(*state);
    *state = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    gateway *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&g->connections, 1);
}

static gateway *gateway_start(void)
{
    gateway *g = calloc(1, sizeof(*g));
    assert_non_null(g);
    pthread_mutex_init(&g->lock, NULL);
    g->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                            NULL, NULL, on_request, g, MHD_OPTION_NOTIFY_COMPLETED, on_done, g,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, g,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    assert_non_null(g->d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(g->d, MHD_DAEMON_INFO_BIND_PORT);
    g->port = info->port;
    return g;
}

static void gateway_stop(gateway *g)
{
    MHD_stop_daemon(g->d);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* ---- Fixture ------------------------------------------------------------- */

typedef struct fx {
    gateway *g;
    otp_config *cfg;
    otp_provider *p;
    char err[512];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->g = gateway_start();
    f->cfg = otp_config_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->p)
        f->p->ops->destroy(f->p);
    otp_config_free(f->cfg);
    gateway_stop(f->g);
    free(f);
    return 0;
}

static void set(fx *f, const char *key, const char *value)
{
    assert_int_equal(otp_config_set(f->cfg, key, value, "otpd.ini:3", f->err, sizeof(f->err)), 0);
}

static void create(fx *f)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/sms", f->g->port);
    set(f, "provider.gw.type", "http");
    set(f, "provider.gw.url", url);
    set(f, "provider.gw.timeout", "300");
    set(f, "provider.gw.connections", "4");
    set(f, "provider.gw.headers", "Authorization: Bearer tok-123; X-Extra: 1");
    set(f, "provider.gw.dlr_secret", "a-secret-of-24-characters");
    int r =
        otp_provider_http_ops.create(f->cfg, "provider.gw", NULL, &f->p, f->err, sizeof(f->err));
    if (r != 0)
        fail_msg("create: %s", f->err);
}

/* ---- Tests --------------------------------------------------------------- */

static void test_outcomes(void **state)
{
    fx *f = *state;
    create(f);
    const char *tos[] = {"+919800000000", "+919800000001", "+919800000002", "+919800000003",
                         "+919800000004", "+919800000005", "+919800000006"};
    enum { N = 7 };
    otp_sms m[N];
    char ids[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "msg_%d", i);
        m[i] = (otp_sms){.message_id = ids[i], .to = tos[i], .text = "123456 is your code"};
    }
    otp_send_result r[N];
    int64_t t0 = otp_mono_us();
    f->p->ops->send(f->p, m, N, r);
    int64_t took_ms = (otp_mono_us() - t0) / 1000;
    assert_int_equal(r[0].outcome, OTP_SEND_ACCEPTED);
    assert_string_equal(r[0].provider_message_id + 0, r[0].provider_message_id);
    assert_true(strncmp(r[0].provider_message_id, "g-", 2) == 0);
    assert_int_equal(r[1].outcome, OTP_SEND_PERMANENT);
    assert_string_equal(r[1].error, "gateway answered HTTP 400");
    assert_int_equal(r[2].outcome, OTP_SEND_TEMPORARY);
    assert_int_equal(r[3].outcome, OTP_SEND_TEMPORARY); /* 429 */
    assert_int_equal(r[4].outcome, OTP_SEND_TEMPORARY); /* timeout */
    assert_non_null(strstr(r[4].error, "300 ms"));
    assert_int_equal(r[5].outcome, OTP_SEND_TEMPORARY); /* 408 */
    assert_int_equal(r[6].outcome, OTP_SEND_ACCEPTED);  /* 2xx without a JSON id */
    assert_string_equal(r[6].provider_message_id, "");
    /* Concurrent: one timeout's worth, not the sum. */
    assert_true(took_ms < 900);
    for (int i = 0; i < N; i++)
        assert_null(strstr(r[i].error, "123456"));
}

static void test_body_headers_keepalive(void **state)
{
    fx *f = *state;
    create(f);
    otp_sms m = {.message_id = "msg_A",
                 .to = "+919800000000",
                 .text = "654321 is your code",
                 .sender_id = "ACMEIN",
                 .dlt_template_id = "1107"};
    otp_send_result r;
    for (int i = 0; i < 5; i++) {
        f->p->ops->send(f->p, &m, 1, &r);
        assert_int_equal(r.outcome, OTP_SEND_ACCEPTED);
    }
    assert_int_equal(atomic_load(&f->g->connections), 1); /* one connection, kept alive */
    assert_string_equal(f->g->last_auth, "Bearer tok-123");
    assert_string_equal(f->g->last_idem, "msg_A");
    json_t *b = json_loads(f->g->last_body, 0, NULL);
    assert_non_null(b);
    assert_int_equal(json_object_size(b), 5);
    assert_string_equal(json_string_value(json_object_get(b, "messageId")), "msg_A");
    assert_string_equal(json_string_value(json_object_get(b, "to")), "+919800000000");
    assert_string_equal(json_string_value(json_object_get(b, "text")), "654321 is your code");
    assert_string_equal(json_string_value(json_object_get(b, "senderId")), "ACMEIN");
    assert_string_equal(json_string_value(json_object_get(b, "dltTemplateId")), "1107");
    json_decref(b);

    /* A batch of 20 uses at most `connections` (4) connections. */
    otp_sms ms[20];
    otp_send_result rs[20];
    for (int i = 0; i < 20; i++)
        ms[i] = m;
    f->p->ops->send(f->p, ms, 20, rs);
    for (int i = 0; i < 20; i++)
        assert_int_equal(rs[i].outcome, OTP_SEND_ACCEPTED);
    assert_true(atomic_load(&f->g->connections) <= 4);
}

static void test_nested_numeric_id(void **state)
{
    fx *f = *state;
    set(f, "provider.gw.id_field", "data.id");
    f->g->nested = true;
    create(f);
    otp_sms m = {.message_id = "msg_B", .to = "+919800000000", .text = "x"};
    otp_send_result r;
    f->p->ops->send(f->p, &m, 1, &r);
    assert_int_equal(r.outcome, OTP_SEND_ACCEPTED);
    assert_string_equal(r.provider_message_id, "4711");
}

static void test_unreachable(void **state)
{
    fx *f = *state;
    set(f, "provider.gw.type", "http");
    set(f, "provider.gw.url", "http://127.0.0.1:1/sms");
    assert_int_equal(
        otp_provider_http_ops.create(f->cfg, "provider.gw", NULL, &f->p, f->err, sizeof(f->err)),
        0);
    otp_sms m = {.message_id = "msg_C", .to = "+919800000000", .text = "x"};
    otp_send_result r;
    f->p->ops->send(f->p, &m, 1, &r);
    assert_int_equal(r.outcome, OTP_SEND_TEMPORARY);
    assert_non_null(strstr(r.error, "unreachable"));
    assert_false(f->p->takes_http_dlr); /* no dlr_secret */
}

static void test_dlr(void **state)
{
    fx *f = *state;
    create(f);
    otp_provider *p = f->p;
    assert_true(p->takes_http_dlr);
    assert_true(p->ops->dlr_auth(p, "a-secret-of-24-characters"));
    assert_false(p->ops->dlr_auth(p, "a-secret-of-24-characterz"));
    assert_false(p->ops->dlr_auth(p, "a-secret-of-24-characters "));
    assert_false(p->ops->dlr_auth(p, ""));
    assert_false(p->ops->dlr_auth(p, NULL));

    otp_dlr r;
    const char *field = NULL;
    json_t *b = json_pack("{s:s, s:s, s:s}", "id", "g-1", "status", "UNDELIV", "error", "absent");
    assert_int_equal(p->ops->dlr_parse(p, b, &r, &field), 0);
    assert_string_equal(r.provider, "gw");
    assert_string_equal(r.provider_message_id, "g-1");
    assert_int_equal(r.status, OTP_DLR_UNDELIVERABLE);
    assert_string_equal(r.error, "absent");
    json_decref(b);

    b = json_pack("{s:i, s:s}", "id", 77, "status", "delivered");
    assert_int_equal(p->ops->dlr_parse(p, b, &r, &field), 0);
    assert_string_equal(r.provider_message_id, "77");
    assert_int_equal(r.status, OTP_DLR_DELIVERED);
    json_decref(b);

    b = json_pack("{s:s, s:s}", "id", "g-1", "status", "enroute");
    assert_int_equal(p->ops->dlr_parse(p, b, &r, &field), 1);
    json_decref(b);
    b = json_pack("{s:s}", "status", "failed");
    assert_int_equal(p->ops->dlr_parse(p, b, &r, &field), -1);
    assert_string_equal(field, "id");
    json_decref(b);
    b = json_pack("{s:s, s:s}", "id", "g-1", "status", "lost in space");
    assert_int_equal(p->ops->dlr_parse(p, b, &r, &field), -1);
    assert_string_equal(field, "status");
    json_decref(b);
    b = json_pack("{s:s, s:s, s:[]}", "id", "g-1", "status", "failed", "error");
    assert_int_equal(p->ops->dlr_parse(p, b, &r, &field), -1);
    assert_string_equal(field, "error");
    json_decref(b);
}

static void test_dlr_field_names(void **state)
{
    fx *f = *state;
    set(f, "provider.gw.dlr_id_field", "report.msgid");
    set(f, "provider.gw.dlr_status_field", "report.state");
    create(f);
    otp_dlr r;
    const char *field = NULL;
    json_t *b = json_pack("{s:{s:s, s:s}}", "report", "msgid", "x-9", "state", "REJECTD");
    assert_int_equal(f->p->ops->dlr_parse(f->p, b, &r, &field), 0);
    assert_string_equal(r.provider_message_id, "x-9");
    assert_int_equal(r.status, OTP_DLR_FAILED);
    json_decref(b);
}

static void expect_error(fx *f, const char *key, const char *value, const char *needle)
{
    otp_config_free(f->cfg);
    f->cfg = otp_config_new();
    set(f, "provider.gw.type", "http");
    set(f, "provider.gw.url", "http://127.0.0.1:9/");
    if (key)
        set(f, key, value);
    otp_provider *p = NULL;
    assert_int_equal(
        otp_provider_http_ops.create(f->cfg, "provider.gw", NULL, &p, f->err, sizeof(f->err)), -1);
    assert_null(p);
    if (!strstr(f->err, needle))
        fail_msg("%s = %s: \"%s\" lacks \"%s\"", key, value, f->err, needle);
}

static void test_settings_errors(void **state)
{
    fx *f = *state;
    expect_error(f, "provider.gw.url", "gopher://x/", "provider.gw.url = \"gopher://x/\"");
    expect_error(f, "provider.gw.timeout", "50", "provider.gw.timeout");
    expect_error(f, "provider.gw.connections", "0", "provider.gw.connections");
    expect_error(f, "provider.gw.headers", "Bad Header: x", "provider.gw.headers");
    expect_error(f, "provider.gw.headers", "X: y; : z", "provider.gw.headers");
    expect_error(f, "provider.gw.dlr_secret", "short", "provider.gw.dlr_secret");
    expect_error(f, "provider.gw.id_field", "", "provider.gw.id_field");
    expect_error(f, "provider.gw.breaker_cooldown", "5", "provider.gw.breaker_cooldown");
    expect_error(f, "provider.gw.type", "smpp", "not a http provider");
    /* A misspelt key, or one of another provider type, stops start-up too. */
    expect_error(f, "provider.gw.dlr_secert", "0123456789abcdefXYZ",
                 "provider.gw.dlr_secert (from otpd.ini:3): unknown setting for a http provider");
    expect_error(f, "provider.gw.system_id", "otpd", "provider.gw.system_id (from otpd.ini:3)");
    /* The secret is never echoed. */
    assert_null(strstr(f->err, "short"));
    otp_config_free(f->cfg);
    f->cfg = otp_config_new();
    otp_provider *p = NULL;
    assert_int_equal(
        otp_provider_http_ops.create(f->cfg, "provider.gw", NULL, &p, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "provider.gw.url: not set"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_headers_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_numeric_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dlr_field_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
