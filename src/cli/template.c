/* cli/template.c — `otpd template add|list|remove|set-default`: the SMS texts
 * of an account (SPEC 4).
 *
 * A body is checked here with otp_template_check() before it reaches the store,
 * with the longest values the built-ins can take, so that a template that was
 * accepted cannot fail a send for its syntax or its length alone (only an
 * unknown variable or an unusually long value can). Template names follow the
 * rules of account names for the same reason: TEMPLATE is an id or a name on
 * the command line and in the API's templateId, so a name may not look like a
 * template id. The DLT template id and the sender id are passed as they are to
 * the providers of Indian routes; their formats are checked here because a
 * gateway would refuse a bad one only later, one message at a time.
 */
#include "cli/cmd.h"

#include <stdlib.h>
#include <string.h>

#include "core/template.h"
#include "util/clock.h"

#define TPL_NAME_MAX_LEN (OTP_TEMPLATE_NAME_SIZE - 1)
#define DLT_ID_MAX_LEN 32
#define SENDER_ALNUM_MAX_LEN 11
#define SENDER_MAX_LEN (OTP_SENDER_ID_SIZE - 1)

static int add(otp_app *app, int argc, char **argv);
static int list(otp_app *app, int argc, char **argv);
static int remove_(otp_app *app, int argc, char **argv);
static int set_default(otp_app *app, int argc, char **argv);

static const otp_cli_sub subs[] = {
    {"add", "ACCOUNT --name NAME --body TEXT [--dlt-template-id ID] [--sender-id ID] [--default]",
     "Add an SMS template to an account and print its id (tpl_...).",
     "  --name NAME             1 to 63 characters among A-Z a-z 0-9 . _ -, unique in the\n"
     "                          account, not of the form of a template id\n"
     "  --body TEXT             the text, with placeholders: {{code}} (required),\n"
     "                          {{appName}}, {{expiresInMinutes}}, {{appHash}} and any\n"
     "                          variable of the send, e.g. {{user}}; at most 1024 bytes\n"
     "  --dlt-template-id ID    the DLT template id registered for this text (Indian\n"
     "                          routes): 1 to 32 digits, usually 19\n"
     "  --sender-id ID          the sender header: 1 to 11 letters and digits (e.g. the\n"
     "                          6-letter header registered on DLT, ACMEIN), or a number\n"
     "                          with an optional + (at most 15 characters)\n"
     "  --default               make it the account's default template (the first\n"
     "                          template of an account becomes the default anyway)\n"
     "A placeholder is {{name}} (spaces inside the braces are allowed); a name is a\n"
     "letter then up to 31 letters, digits or _. The body is refused (exit 2) if\n"
     "its syntax is bad, it has no {{code}}, or with the longest code, app name,\n"
     "app hash and WebOTP line it would pass 10 SMS segments or 1024 bytes.\n"
     "For a line break in bash: --body $'{{code}} is your code\\n{{appHash}}'.\n"
     "See docs/templates.md. With --json: {\"id\",\"name\",\"default\"}, default\n"
     "saying whether it is now the account's default.\n",
     add},
    {"list", "ACCOUNT", "List an account's templates.",
     "With --json: an array of {\"id\",\"name\",\"body\",\"dltTemplateId\",\"senderId\",\n"
     "\"default\",\"createdAt\"}; dltTemplateId and senderId are null when not set.\n",
     list},
    {"remove", "ACCOUNT TEMPLATE", "Remove a template.",
     "Requests already sent keep their text. If it was the default, sends without\n"
     "a templateId use the built-in text until another default is set.\n"
     "With --json: {\"id\",\"name\",\"wasDefault\"}.\n",
     remove_},
    {"set-default", "ACCOUNT TEMPLATE",
     "Make a template the one used by sends that give no templateId.",
     "The previous default stays as an ordinary template.\n"
     "With --json: {\"id\",\"name\",\"default\"}.\n",
     set_default},
};

static const char footer[] = "ACCOUNT is an account's id (acc_...) or its name; TEMPLATE is a\n"
                             "template's id (tpl_...) or its name.\n";

void otp_cli_usage_template(FILE *f, const char *sub)
{
    otp_cli_sub_usage(f, "template", subs, sizeof(subs) / sizeof(subs[0]), sub, footer);
}

int otp_cli_cmd_template(otp_app *app)
{
    return otp_cli_sub_dispatch(app, "template", subs, sizeof(subs) / sizeof(subs[0]), footer);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len < 1 || len > TPL_NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(name[i]) && name[i] != '.' && name[i] != '_' && name[i] != '-')
            return false;
    return !otp_id_valid(name, "tpl_");
}

static bool dlt_id_valid(const char *id)
{
    size_t len = strlen(id);
    if (len < 1 || len > DLT_ID_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_digit(id[i]))
            return false;
    return true;
}

/* An alphanumeric sender (1 to 11 letters and digits, what GSM allows in an
 * alphanumeric originator), or a number: an optional '+' and digits. */
static bool sender_id_valid(const char *id)
{
    size_t len = strlen(id);
    if (len < 1 || len > SENDER_MAX_LEN)
        return false;
    bool alnum = len <= SENDER_ALNUM_MAX_LEN, number = true;
    for (size_t i = 0; i < len; i++) {
        alnum = alnum && is_alnum(id[i]);
        number = number && (is_digit(id[i]) || (i == 0 && id[i] == '+' && len > 1));
    }
    return alnum || number;
}

/* Runs a store read that a backend may not have yet. */
static int not_supported(const char *what)
{
    return otp_cli_fail("%s: not supported by this store", what);
}

/* Finds a template of account a by id or name. Prints the reason and returns
 * OTP_CLI_EXIT_FAIL if there is none. */
static int template_get(otp_store *s, const otp_account *a, const char *id_or_name,
                        otp_template *ret)
{
    if (!s->ops->template_find)
        return not_supported("reading templates");
    otp_err e = strlen(id_or_name) < OTP_TEMPLATE_NAME_SIZE
                    ? s->ops->template_find(s, a->id, id_or_name, ret)
                    : OTP_E_NOT_FOUND;
    if (e == OTP_E_NOT_FOUND)
        return otp_cli_fail("no such template in account %s: %s", a->name, id_or_name);
    if (e != OTP_OK)
        return otp_cli_fail("cannot read template %s: %s", id_or_name, otp_cli_store_error(e));
    return 0;
}

static int add(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT"};
    const char *pos[1];
    size_t n;
    const char *name = NULL, *body = NULL, *dlt = NULL, *sender = NULL;
    bool is_default = false;
    const otp_cli_opt opts[] = {
        {"--name", &name, NULL},           {"--body", &body, NULL},
        {"--dlt-template-id", &dlt, NULL}, {"--sender-id", &sender, NULL},
        {"--default", NULL, &is_default},
    };
    otp_store *s = NULL;
    otp_account a;
    otp_template existing;
    char why[256];
    otp_txn txn = {.kind = OTP_TXN_TEMPLATE_ADD};
    otp_txn_template_add *c = &txn.u.template_add;

    int r = otp_cli_args("template add", argc, argv, opts, sizeof(opts) / sizeof(opts[0]), names, 1,
                         1, pos, &n);
    if (r)
        return r;
    if (!name)
        return otp_cli_usage_error("template add", "missing --name NAME");
    if (!body)
        return otp_cli_usage_error("template add", "missing --body TEXT");
    if (!name_valid(name))
        return otp_cli_usage_error("template add",
                                   "invalid template name '%s': use 1 to %d characters among "
                                   "A-Z a-z 0-9 . _ - (and not the form of a template id)",
                                   name, TPL_NAME_MAX_LEN);
    if (otp_template_check(body, why, sizeof(why)) != OTP_TPL_OK)
        return otp_cli_usage_error("template add", "invalid template body: %s", why);
    if (dlt && !dlt_id_valid(dlt))
        return otp_cli_usage_error("template add",
                                   "invalid DLT template id '%s': expected 1 to %d digits", dlt,
                                   DLT_ID_MAX_LEN);
    if (sender && !sender_id_valid(sender))
        return otp_cli_usage_error("template add",
                                   "invalid sender id '%s': expected 1 to %d letters and digits, "
                                   "or a number with an optional + (at most %d characters)",
                                   sender, SENDER_ALNUM_MAX_LEN, SENDER_MAX_LEN);
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;
    if (!s->ops->template_find) {
        r = not_supported("templates");
        goto out;
    }
    otp_err e = s->ops->template_find(s, a.id, name, &existing);
    if (e == OTP_OK) {
        r = otp_cli_fail("template '%s' already exists in account %s (%s)", name, a.name,
                         existing.public_id);
        goto out;
    }
    if (e != OTP_E_NOT_FOUND) {
        r = otp_cli_fail("cannot read templates: %s", otp_cli_store_error(e));
        goto out;
    }

    c->account_id = a.id;
    c->tpl.created_at_ms = otp_now_ms();
    otp_id_new("tpl_", c->tpl.created_at_ms, c->tpl.public_id);
    memcpy(c->tpl.name, name, strlen(name) + 1);
    memcpy(c->tpl.body, body, strlen(body) + 1);
    if (dlt)
        memcpy(c->tpl.dlt_template_id, dlt, strlen(dlt) + 1);
    if (sender)
        memcpy(c->tpl.sender_id, sender, strlen(sender) + 1);
    c->tpl.is_default = is_default;
    e = otp_store_exec(s, &txn);
    if (e != OTP_OK) {
        /* Another process may have taken the name since the check. */
        if (e == OTP_E_INVALID_REQUEST || s->ops->template_find(s, a.id, name, &existing) == OTP_OK)
            r = otp_cli_fail("template '%s' already exists in account %s", name, a.name);
        else
            r = otp_cli_fail("cannot add template '%s': %s", name, otp_cli_store_error(e));
        goto out;
    }

    if (app->json)
        r = otp_cli_json_print(json_pack("{s:s,s:s,s:b}", "id", c->tpl.public_id, "name",
                                         c->tpl.name, "default", c->tpl.is_default));
    else
        printf("%s\n", c->tpl.public_id);
out:
    otp_store_close(s);
    return r;
}

/* Templates collected for printing: a table needs its column widths first. */
typedef struct template_vec {
    otp_template *v;
    size_t n, cap;
    bool oom;
} template_vec;

static void collect(const otp_template *t, void *ctx)
{
    template_vec *vec = ctx;
    if (vec->oom)
        return;
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 8;
        otp_template *v = realloc(vec->v, cap * sizeof(*v));
        if (!v) {
            vec->oom = true;
            return;
        }
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *t;
}

/* A string, or JSON null for "" (not set). */
static json_t *json_opt(const char *s)
{
    return *s ? json_string(s) : json_null();
}

static int print_list_json(const template_vec *vec)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < vec->n; i++) {
        const otp_template *t = &vec->v[i];
        char at[OTP_ISO8601_LEN + 1];
        otp_time_iso8601(t->created_at_ms, at);
        json_t *o =
            json_pack("{s:s,s:s,s:s,s:o,s:o,s:b,s:s}", "id", t->public_id, "name", t->name, "body",
                      t->body, "dltTemplateId", json_opt(t->dlt_template_id), "senderId",
                      json_opt(t->sender_id), "default", t->is_default, "createdAt", at);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return otp_cli_json_print(arr);
}

/* The body on one line: line breaks and tabs shown as \n, \r, \t. */
static void print_body(const char *body)
{
    for (const char *p = body; *p; p++) {
        if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p == '\r')
            fputs("\\r", stdout);
        else if (*p == '\t')
            fputs("\\t", stdout);
        else
            fputc(*p, stdout);
    }
    fputc('\n', stdout);
}

static int max_width(int w, const char *s)
{
    int len = (int)strlen(s);
    return len > w ? len : w;
}

static void print_list_table(const template_vec *vec)
{
    int wname = 4, wdlt = 6, wsender = 6;
    char at[OTP_ISO8601_LEN + 1];
    for (size_t i = 0; i < vec->n; i++) {
        wname = max_width(wname, vec->v[i].name);
        wdlt = max_width(wdlt, vec->v[i].dlt_template_id);
        wsender = max_width(wsender, vec->v[i].sender_id);
    }
    printf("%-*s  %-*s  %-7s  %-*s  %-*s  %-*s  %s\n", OTP_ID_LEN, "ID", wname, "NAME", "DEFAULT",
           wdlt, "DLT ID", wsender, "SENDER", OTP_ISO8601_LEN, "CREATED", "BODY");
    for (size_t i = 0; i < vec->n; i++) {
        const otp_template *t = &vec->v[i];
        otp_time_iso8601(t->created_at_ms, at);
        printf("%-*s  %-*s  %-7s  %-*s  %-*s  %-*s  ", OTP_ID_LEN, t->public_id, wname, t->name,
               t->is_default ? "yes" : "", wdlt, *t->dlt_template_id ? t->dlt_template_id : "-",
               wsender, *t->sender_id ? t->sender_id : "-", OTP_ISO8601_LEN, at);
        print_body(t->body);
    }
}

static int list(otp_app *app, int argc, char **argv)
{
    static const char *const names[] = {"ACCOUNT"};
    const char *pos[1];
    size_t n;
    otp_store *s = NULL;
    otp_account a;
    template_vec vec = {0};

    int r = otp_cli_args("template list", argc, argv, NULL, 0, names, 1, 1, pos, &n);
    if (r)
        return r;
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;
    if (!s->ops->template_list) {
        r = not_supported("listing templates");
        goto out;
    }
    otp_err e = s->ops->template_list(s, a.id, collect, &vec);
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot list templates: %s", otp_cli_store_error(e));
        goto out;
    }
    if (vec.oom) {
        r = otp_cli_fail("out of memory");
        goto out;
    }
    if (app->json)
        r = print_list_json(&vec);
    else
        print_list_table(&vec);
out:
    free(vec.v);
    otp_store_close(s);
    return r;
}

/* remove and set-default: one template named on the command line, one txn. */
static int change(otp_app *app, int argc, char **argv, const char *topic, otp_txn_kind kind)
{
    static const char *const names[] = {"ACCOUNT", "TEMPLATE"};
    const char *pos[2];
    size_t n;
    otp_store *s = NULL;
    otp_account a;
    otp_template t;
    otp_txn txn = {.kind = kind};
    otp_txn_template_ref *ref = &txn.u.template_ref;

    int r = otp_cli_args(topic, argc, argv, NULL, 0, names, 2, 2, pos, &n);
    if (r)
        return r;
    r = otp_cli_store(app, &s);
    if (r)
        return r;
    r = otp_cli_account_get(s, pos[0], &a);
    if (r)
        goto out;
    r = template_get(s, &a, pos[1], &t);
    if (r)
        goto out;

    ref->account_id = a.id;
    memcpy(ref->id_or_name, t.public_id, strlen(t.public_id) + 1);
    otp_err e = otp_store_exec(s, &txn);
    if (e == OTP_E_NOT_FOUND) {
        r = otp_cli_fail("no such template in account %s: %s", a.name, pos[1]);
        goto out;
    }
    if (e != OTP_OK) {
        r = otp_cli_fail("cannot %s template %s: %s",
                         kind == OTP_TXN_TEMPLATE_REMOVE ? "remove" : "change the default",
                         t.public_id, otp_cli_store_error(e));
        goto out;
    }

    if (kind == OTP_TXN_TEMPLATE_REMOVE) {
        if (app->json)
            r = otp_cli_json_print(json_pack("{s:s,s:s,s:b}", "id", t.public_id, "name", t.name,
                                             "wasDefault", t.is_default));
        else
            printf("removed %s (%s)\n", t.public_id, t.name);
        if (r == OTP_CLI_EXIT_OK && t.is_default)
            fprintf(stderr, "It was the default template: sends without a templateId now use "
                            "the built-in text.\n");
    } else {
        if (app->json)
            r = otp_cli_json_print(
                json_pack("{s:s,s:s,s:b}", "id", t.public_id, "name", t.name, "default", 1));
        else
            printf("default template of %s: %s (%s)\n", a.name, t.public_id, t.name);
    }
out:
    otp_store_close(s);
    return r;
}

static int remove_(otp_app *app, int argc, char **argv)
{
    return change(app, argc, argv, "template remove", OTP_TXN_TEMPLATE_REMOVE);
}

static int set_default(otp_app *app, int argc, char **argv)
{
    return change(app, argc, argv, "template set-default", OTP_TXN_TEMPLATE_SET_DEFAULT);
}
