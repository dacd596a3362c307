/* tests/unit/delivery/test_file_provider.c — the `file` provider writes exactly
 * one well-formed JSON line per accepted message (byte for byte what
 * json_dumps gives for it), names its setting when it cannot open its file,
 * and keeps lines whole under parallel sends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "delivery/provider.h"
#include "util/clock.h"
#include "util/config.h"

typedef struct fixture {
    char dir[64];
    char file[128];
    otp_config *cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/otpd-test-fp-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->file, sizeof(f->file), "%s/sms.jsonl", f->dir);
    f->cfg = otp_config_new();
    char err[256];
    assert_int_equal(otp_config_set(f->cfg, "data_dir", f->dir, "test", err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof(path), "rm -rf '%s'", f->dir);
    assert_int_equal(system(path), 0);
    otp_config_free(f->cfg);
    free(f);
    return 0;
}

/* The whole file as a NUL-terminated string (caller frees). */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    buf[len] = '\0';
    fclose(fp);
    return buf;
}

/* The provider [provider.file] with its default path in the fixture's dir. */
static otp_provider *open_default(fixture *f)
{
    char err[256] = "";
    otp_provider *p = NULL;
    assert_int_equal(
        otp_provider_file_ops.create(f->cfg, "provider.file", NULL, &p, err, sizeof(err)), 0);
    return p;
}

static void test_exact_lines(void **state)
{
    fixture *f = *state;
    assert_ptr_equal(otp_provider_type("file"), &otp_provider_file_ops);
    assert_null(otp_provider_type("carrier-pigeon"));

    otp_provider *p = open_default(f);
    assert_string_equal(p->name, "file");
    assert_ptr_equal(p->ops, &otp_provider_file_ops);
    assert_true(p->ops->ready(p));

    const otp_sms msgs[] = {
        {.message_id = "msg_A",
         .to = "+919876543210",
         .text = "Your code is 123456",
         .segments = 1,
         .created_at_ms = 1771151400123},
        {.message_id = "msg_B",
         .to = "+14155550100",
         .text = "C\xc3\xb3"
                 "digo \"42\"\n",
         .segments = 1,
         .created_at_ms = 1771151400123 + 1001},
    };
    otp_send_result res[2];
    memset(res, 0xab, sizeof(res));
    p->ops->send(p, msgs, 2, res);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].outcome, OTP_SEND_ACCEPTED);
        assert_string_equal(res[i].error, "");
        assert_string_equal(res[i].provider_message_id, "");
    }
    /* Read right after send() returns: the lines must already be there. */
    char *text = slurp(f->file);
    assert_string_equal(text,
                        "{\"messageId\":\"msg_A\",\"to\":\"+919876543210\",\"text\":\"Your "
                        "code is 123456\",\"createdAt\":\"2026-02-15T10:30:00.123Z\"}\n"
                        "{\"messageId\":\"msg_B\",\"to\":\"+14155550100\",\"text\":\"C\xc3\xb3"
                        "digo \\\"42\\\"\\n\",\"createdAt\":\"2026-02-15T10:30:01.124Z\"}\n");
    free(text);

    /* Appends; an empty batch writes nothing. */
    p->ops->send(p, msgs, 0, res);
    p->ops->send(p, msgs, 1, res);
    text = slurp(f->file);
    assert_non_null(strstr(text, "124Z\"}\n{\"messageId\":\"msg_A\""));
    free(text);

    struct stat st;
    assert_int_equal(stat(f->file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    p->ops->destroy(p);
    otp_provider_file_ops.destroy(NULL);
}

/* A message that can never be encoded fails permanently; the rest are written. */
static void test_bad_message(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    otp_provider *p = NULL;
    assert_int_equal(otp_config_set(f->cfg, "provider.local.path", f->file, "t", err, sizeof(err)),
                     0);
    assert_int_equal(otp_config_set(f->cfg, "provider.local.type", "file", "t", err, sizeof(err)),
                     0);
    assert_int_equal(
        otp_provider_file_ops.create(f->cfg, "provider.local", NULL, &p, err, sizeof(err)), 0);
    assert_string_equal(p->name, "local");
    const otp_sms msgs[] = {
        {.message_id = "msg_1", .to = "+919876543210", .text = "bad \xff utf-8"},
        {.message_id = "msg_2", .to = "+919876543210", .text = "good"},
        {.message_id = "msg_3", .to = NULL, .text = "no recipient"},
        /* Not UTF-8 after a part of its line was written: none of it stays. */
        {.message_id = "msg_4", .to = "+919876543210", .text = "\"quoted\" then \xc3("},
        {.message_id = "msg_5", .to = "+919876543210", .text = "also good"},
    };
    otp_send_result res[5];
    p->ops->send(p, msgs, 5, res);
    assert_int_equal(res[0].outcome, OTP_SEND_PERMANENT);
    assert_int_equal(res[1].outcome, OTP_SEND_ACCEPTED);
    assert_int_equal(res[2].outcome, OTP_SEND_PERMANENT);
    assert_int_equal(res[3].outcome, OTP_SEND_PERMANENT);
    assert_int_equal(res[4].outcome, OTP_SEND_ACCEPTED);
    assert_string_not_equal(res[0].error, "");
    assert_null(strstr(res[0].error, "bad"));
    assert_string_equal(res[4].error, "");
    char *text = slurp(f->file);
    assert_string_equal(text, "{\"messageId\":\"msg_2\",\"to\":\"+919876543210\",\"text\":\"good\","
                              "\"createdAt\":\"1970-01-01T00:00:00.000Z\"}\n"
                              "{\"messageId\":\"msg_5\",\"to\":\"+919876543210\",\"text\":"
                              "\"also good\",\"createdAt\":\"1970-01-01T00:00:00.000Z\"}\n");
    free(text);
    p->ops->destroy(p);
}

/* Each line is what json_dumps(JSON_COMPACT) gives for the message's object,
 * keys in order, for texts with every kind of byte JSON escapes or keeps. */
static void test_lines_are_jansson_s(void **state)
{
    fixture *f = *state;
    otp_provider *p = open_default(f);
    static char all_ascii[128], long_text[2000];
    for (int i = 1; i < 128; i++)
        all_ascii[i - 1] = (char)i;
    for (size_t i = 0; i + 1 < sizeof(long_text); i++)
        long_text[i] = "\x01\x1f\x0b"[i % 3]; /* each byte written as \u00XX: the bound */
    const char *texts[] = {
        "Your code is 123456",
        "",
        all_ascii,
        long_text,
        "<#> 123456 is your code\n\n@example.com #123456",
        "\xe0\xa4\x86\xe0\xa4\xaa\xe0\xa4\x95\xe0\xa4\xbe \xe0\xa4\x95\xe0\xa5\x8b\xe0\xa4\xa1 "
        "123456 \xf0\x9f\x94\x90 \xe2\x80\xa8 \x7f",
        "tab\there / slash \\ back \"quote\"",
        "\"\\\n\x01\"\\\n\x01",
    };
    enum { N = sizeof(texts) / sizeof(texts[0]) };
    otp_sms msgs[N];
    for (int i = 0; i < N; i++)
        msgs[i] = (otp_sms){.message_id = i % 2 ? "msg_\"odd\"" : "msg_even",
                            .to = "+919876543210",
                            .text = texts[i],
                            .segments = 1,
                            .created_at_ms = 1771151400123 + i};
    otp_send_result res[N];
    p->ops->send(p, msgs, N, res);

    char *text = slurp(f->file);
    char *at = text;
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].outcome, OTP_SEND_ACCEPTED);
        char created[OTP_ISO8601_LEN + 1];
        otp_time_iso8601(msgs[i].created_at_ms, created);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "messageId", msgs[i].message_id, "to",
                              msgs[i].to, "text", msgs[i].text, "createdAt", created);
        assert_non_null(o);
        char *want = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        size_t n = strlen(want);
        char *nl = strchr(at, '\n');
        assert_non_null(nl);
        assert_int_equal((size_t)(nl - at), n);
        assert_memory_equal(at, want, n);
        at = nl + 1;
        free(want);
    }
    assert_string_equal(at, "");
    free(text);
    p->ops->destroy(p);
}

static void *no_memory(size_t n)
{
    (void)n;
    return NULL;
}

/* jansson out of memory while escaping a text: the message fails for now, to
 * be retried, not for good as a text that is not UTF-8 does. */
static void test_out_of_memory_is_temporary(void **state)
{
    fixture *f = *state;
    otp_provider *p = open_default(f);
    const otp_sms msgs[] = {
        {.message_id = "msg_1", .to = "+919876543210", .text = "code 123456\n"},
        {.message_id = "msg_2", .to = "+919876543210", .text = "bad \xff"},
    };
    otp_send_result res[2];
    json_set_alloc_funcs(no_memory, free);
    p->ops->send(p, msgs, 2, res);
    json_set_alloc_funcs(malloc, free);
    assert_int_equal(res[0].outcome, OTP_SEND_TEMPORARY);
    assert_string_equal(res[0].error, "out of memory");
    assert_int_not_equal(res[1].outcome, OTP_SEND_ACCEPTED);
    char *text = slurp(f->file);
    assert_string_equal(text, "");
    free(text);

    p->ops->send(p, msgs, 1, res); /* the retry */
    assert_int_equal(res[0].outcome, OTP_SEND_ACCEPTED);
    p->ops->destroy(p);
}

static void test_create_errors(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    otp_provider *p = NULL;

    assert_int_equal(otp_config_set(f->cfg, "provider.gw.path", "/nonexistent/dir/sms.jsonl",
                                    "otpd.ini:7", err, sizeof(err)),
                     0);
    assert_int_equal(
        otp_provider_file_ops.create(f->cfg, "provider.gw", NULL, &p, err, sizeof(err)), -1);
    assert_null(p);
    assert_non_null(strstr(err, "provider.gw.path = \"/nonexistent/dir/sms.jsonl\" (from "
                                "otpd.ini:7): cannot open"));

    assert_int_equal(
        otp_config_set(f->cfg, "provider.web.type", "http", "otpd.ini:9", err, sizeof(err)), 0);
    assert_int_equal(
        otp_provider_file_ops.create(f->cfg, "provider.web", NULL, &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "provider.web.type"));

    assert_int_equal(otp_provider_file_ops.create(f->cfg, "server", NULL, &p, err, sizeof(err)),
                     -1);

    /* A key the file provider does not take (a typo of path) stops it. */
    assert_int_equal(otp_config_set(f->cfg, "provider.out.paht", "/tmp/x.jsonl", "otpd.ini:12", err,
                                    sizeof(err)),
                     0);
    assert_int_equal(
        otp_provider_file_ops.create(f->cfg, "provider.out", NULL, &p, err, sizeof(err)), -1);
    assert_string_equal(err, "provider.out.paht (from otpd.ini:12): unknown setting for a file "
                             "provider");
    assert_null(p);

    /* The default path follows data_dir. */
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/missing", f->dir);
    assert_int_equal(otp_config_set(f->cfg, "data_dir", dir, "--data-dir", err, sizeof(err)), 0);
    assert_int_equal(
        otp_provider_file_ops.create(f->cfg, "provider.file", NULL, &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "provider.file.path"));
    assert_non_null(strstr(err, "/missing/sms.jsonl"));
    assert_null(p);
}

#define THREADS 8
#define BATCHES 40
#define PER_BATCH 7

typedef struct worker {
    otp_provider *p;
    int t;
} worker;

static void *run_worker(void *arg)
{
    worker *w = arg;
    char ids[PER_BATCH][32], texts[PER_BATCH][64];
    otp_sms msgs[PER_BATCH];
    otp_send_result res[PER_BATCH];
    for (int b = 0; b < BATCHES; b++) {
        for (int i = 0; i < PER_BATCH; i++) {
            snprintf(ids[i], sizeof(ids[i]), "msg_%d_%d_%d", w->t, b, i);
            snprintf(texts[i], sizeof(texts[i]), "code %d%d%d padding padding padding", w->t, b, i);
            msgs[i] = (otp_sms){.message_id = ids[i], .to = "+919876543210", .text = texts[i]};
        }
        w->p->ops->send(w->p, msgs, PER_BATCH, res);
        for (int i = 0; i < PER_BATCH; i++)
            if (res[i].outcome != OTP_SEND_ACCEPTED)
                return (void *)1;
    }
    return NULL;
}

static void test_parallel_sends(void **state)
{
    fixture *f = *state;
    otp_provider *p = open_default(f);
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker){.p = p, .t = t};
        assert_int_equal(pthread_create(&th[t], NULL, run_worker, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        void *r;
        pthread_join(th[t], &r);
        assert_null(r);
    }
    p->ops->destroy(p);

    /* Every line parses and every message appears exactly once, text intact. */
    static unsigned char seen[THREADS][BATCHES][PER_BATCH];
    memset(seen, 0, sizeof(seen));
    char *text = slurp(f->file);
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!o)
            fail_msg("line %d is not JSON: %s", lines + 1, line);
        int t, b, i;
        assert_int_equal(
            sscanf(json_string_value(json_object_get(o, "messageId")), "msg_%d_%d_%d", &t, &b, &i),
            3);
        char want[64];
        snprintf(want, sizeof(want), "code %d%d%d padding padding padding", t, b, i);
        assert_string_equal(json_string_value(json_object_get(o, "text")), want);
        seen[t][b][i]++;
        json_decref(o);
        lines++;
    }
    free(text);
    assert_int_equal(lines, THREADS * BATCHES * PER_BATCH);
    for (int t = 0; t < THREADS; t++)
        for (int b = 0; b < BATCHES; b++)
            for (int i = 0; i < PER_BATCH; i++)
                assert_int_equal(seen[t][b][i], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exact_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lines_are_jansson_s, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory_is_temporary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_sends, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
