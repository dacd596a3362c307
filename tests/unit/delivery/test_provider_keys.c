/* tests/unit/delivery/test_provider_keys.c — the keys each provider type takes
 * (otp_provider_ops.keys, which start-up checks every [provider.NAME] section
 * against) are exactly the keys docs/providers.md lists for that type: a key
 * the code reads but does not list would refuse a valid configuration, and a
 * key listed but not read would be documented for nothing.
 *
 * The docs' settings table of a type is the table headed "| key |" in the
 * section "## `TYPE`"; its rows name one key, or several ("`a`, `b`").
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/provider.h"

#define MAX_KEYS 64

typedef struct key_set {
    char keys[MAX_KEYS][48];
    size_t n;
} key_set;

/* The keys of the settings table in docs/providers.md's "## `type`" section. */
static void doc_keys(const char *type, key_set *ret)
{
    char path[1024], want[64], line[1024];
    snprintf(path, sizeof(path), "%s/docs/providers.md", OTPD_SOURCE_ROOT);
    snprintf(want, sizeof(want), "## `%s`", type);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    bool in_section = false, in_table = false;
    ret->n = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "## ", 3) == 0) {
            in_section = strcmp(line, want) == 0;
            in_table = false;
            continue;
        }
        if (!in_section)
            continue;
        if (strncmp(line, "| key |", 7) == 0) {
            in_table = true;
            continue;
        }
        if (in_table && line[0] != '|') {
            in_table = false;
            continue;
        }
        if (!in_table || strncmp(line, "|---", 4) == 0)
            continue;
        /* The first cell: one or more `key`s. */
        char *end = strchr(line + 1, '|');
        assert_non_null(end);
        *end = '\0';
        for (char *p = strchr(line + 1, '`'); p; p = strchr(p + 1, '`')) {
            char *q = strchr(p + 1, '`');
            assert_non_null(q);
            assert_true(ret->n < MAX_KEYS);
            snprintf(ret->keys[ret->n++], sizeof(ret->keys[0]), "%.*s", (int)(q - p - 1), p + 1);
            p = q;
        }
    }
    fclose(f);
}

static bool has(const key_set *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0)
            return true;
    return false;
}

static void check_type(const char *type)
{
    const otp_provider_ops *ops = otp_provider_type(type);
    assert_non_null(ops);
    key_set docs, code = {.n = 0};
    doc_keys(type, &docs);
    assert_true(docs.n > 0);
    for (const char *const *k = ops->keys; k && *k; k++) {
        if (!has(&docs, *k))
            fail_msg("%s provider: key %s is not in docs/providers.md", type, *k);
        snprintf(code.keys[code.n++], sizeof(code.keys[0]), "%s", *k);
    }
    for (size_t i = 0; i < docs.n; i++)
        if (!has(&code, docs.keys[i]))
            fail_msg("%s provider: docs/providers.md lists %s, which it does not take", type,
                     docs.keys[i]);
}

static void test_file_keys(void **state)
{
    (void)state;
    check_type("file");
}

static void test_http_keys(void **state)
{
    (void)state;
    check_type("http");
}

static void test_smpp_keys(void **state)
{
    (void)state;
    check_type("smpp");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_keys),
        cmocka_unit_test(test_http_keys),
        cmocka_unit_test(test_smpp_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
