/* delivery/smpp_provider.c — the `smpp` provider: an SMPP 3.4 transceiver.
 *
 * Configuration and the translation of a batch into PDU parts live here; the
 * connection, the window, throttling and receipts live in smpp_session.c, one
 * session (thread) per provider, started at creation so that /readyz turns
 * ready as soon as the bind succeeds. send() encodes every text (GSM 03.38 or
 * UCS-2, concatenated parts with a UDH; see sms_parts.h), hands the batch to the
 * session and waits for every message's submit_sm_resp, at most send_timeout.
 *
 * Addresses: the destination is the E.164 number without '+', TON/NPI 1/1 by
 * default. The source is the message's sender id (from its template) or the
 * configured source_addr; unless source_ton/source_npi are set, an alphanumeric
 * source goes as TON 5 NPI 0 and a numeric one as TON 1 NPI 1. An Indian DLT
 * template id can be carried in a vendor TLV (dlt_template_tlv), since SMSCs
 * differ on which.
 *
 * TLS (tls = true): the session speaks TLS 1.2 or later (smpp_conn.h). The
 * SMSC's certificate must chain to the system's CAs, or to tls_ca_file's
 * instead, and name host; tls_verify = false turns both checks off, for tests,
 * with a warning at start. The CA file is loaded here, so a missing or empty one
 * stops start-up naming the setting rather than failing every handshake.
 *
 * Not done: several addresses of one host name (the first is used),
 * submit_multi, data_sm.
 */
#include "delivery/provider.h"
#include "delivery/sms_parts.h"
#include "delivery/smpp_session.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct smpp_provider {
    otp_provider base;
    smpp_config cfg;
    smpp_session *session;
    smpp_tls *tls; /* NULL: plain TCP */
    bool tls_verify;
    char source_addr[21];
    int source_ton, source_npi; /* -1: from the address */
    uint8_t dest_ton, dest_npi;
    char service_type[6];
    bool registered_delivery;
    bool force_ucs2;
    uint16_t dlt_tlv;
    atomic_uint ref; /* concatenation references */
} smpp_provider;

/* Parses an unsigned number, decimal or 0x-hex, into *ret within [0, max]. */
static int parse_code(const char *s, unsigned long max, unsigned long *ret)
{
    while (*s == ' ')
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    while (*end == ' ')
        end++;
    if (errno || *end || v > max)
        return -1;
    *ret = v;
    return 0;
}

static int parse_temporary(const otp_config *cfg, const char *section, smpp_config *c, char *err,
                           size_t errlen)
{
    const char *v = otp_provider_get(cfg, section, "temporary_errors");
    if (!v || !*v)
        return 0;
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        unsigned long code;
        if (parse_code(t, 0xFFFFFFFFul, &code) || c->n_temporary == SMPP_TEMPORARY_MAX) {
            char k[160];
            snprintf(k, sizeof(k), "%s.temporary_errors", section);
            snprintf(err, errlen,
                     "%s = \"%.200s\" (from %s): expected up to %d command_status codes, "
                     "comma-separated (e.g. 0x400, 0x401)",
                     k, v, otp_config_origin(cfg, k), SMPP_TEMPORARY_MAX);
            return -1;
        }
        c->temporary[c->n_temporary++] = (uint32_t)code;
    }
    return 0;
}

/* Makes p->tls when tls is on; the TLS settings without it are refused, since
 * they would suggest a protection that is not there. */
static int parse_tls(smpp_provider *p, const otp_config *cfg, const char *section, bool tls,
                     const char *ca_file, char *err, size_t errlen)
{
    char k[160], why[256];
    if (!tls) {
        const char *set = ca_file[0]                                     ? "tls_ca_file"
                          : otp_provider_get(cfg, section, "tls_verify") ? "tls_verify"
                                                                         : NULL;
        if (!set)
            return 0;
        snprintf(k, sizeof(k), "%s.%s", section, set);
        snprintf(err, errlen, "%s (from %s): set, but %s.tls is not true", k,
                 otp_config_origin(cfg, k), section);
        return -1;
    }
    if (smpp_tls_new(ca_file, p->tls_verify, &p->tls, why, sizeof(why)) == 0)
        return 0;
    if (ca_file[0]) {
        snprintf(k, sizeof(k), "%s.tls_ca_file", section);
        snprintf(err, errlen, "%s = \"%.200s\" (from %s): %s", k, ca_file,
                 otp_config_origin(cfg, k), why);
    } else {
        snprintf(k, sizeof(k), "%s.tls", section);
        snprintf(err, errlen, "%s (from %s): %s", k, otp_config_origin(cfg, k), why);
    }
    return -1;
}

static int parse_settings(smpp_provider *p, const otp_config *cfg, const char *section, char *err,
                          size_t errlen)
{
    smpp_config *c = &p->cfg;
    long port, window, enquire, resp, send_to, rmin, rmax, throttle, ston, snpi, dton, dnpi;
    bool tls;
    char ca_file[1024];
    char k[160];
    if (otp_provider_str(cfg, section, "host", NULL, true, c->host, sizeof(c->host), err, errlen) ||
        otp_provider_int(cfg, section, "port", 2775, 1, 65535, &port, err, errlen) ||
        otp_provider_str(cfg, section, "system_id", NULL, true, c->system_id, sizeof(c->system_id),
                         err, errlen) ||
        otp_provider_str(cfg, section, "password", "", false, c->password, sizeof(c->password), err,
                         errlen) ||
        otp_provider_str(cfg, section, "system_type", "", false, c->system_type,
                         sizeof(c->system_type), err, errlen) ||
        otp_provider_str(cfg, section, "service_type", "", false, p->service_type,
                         sizeof(p->service_type), err, errlen) ||
        otp_provider_str(cfg, section, "source_addr", "", false, p->source_addr,
                         sizeof(p->source_addr), err, errlen) ||
        otp_provider_int(cfg, section, "source_ton", -1, 0, 6, &ston, err, errlen) ||
        otp_provider_int(cfg, section, "source_npi", -1, 0, 18, &snpi, err, errlen) ||
        otp_provider_int(cfg, section, "dest_ton", 1, 0, 6, &dton, err, errlen) ||
        otp_provider_int(cfg, section, "dest_npi", 1, 0, 18, &dnpi, err, errlen) ||
        otp_provider_int(cfg, section, "window", 10, 1, 1000, &window, err, errlen) ||
        otp_provider_int(cfg, section, "enquire_link", 30, 1, 3600, &enquire, err, errlen) ||
        otp_provider_int(cfg, section, "response_timeout", 10000, 100, 120000, &resp, err,
                         errlen) ||
        otp_provider_int(cfg, section, "send_timeout", 20000, 100, 600000, &send_to, err, errlen) ||
        otp_provider_int(cfg, section, "reconnect_min", 1000, 10, 600000, &rmin, err, errlen) ||
        otp_provider_int(cfg, section, "reconnect_max", 60000, 10, 3600000, &rmax, err, errlen) ||
        otp_provider_int(cfg, section, "throttle_delay", 1000, 10, 600000, &throttle, err,
                         errlen) ||
        otp_provider_bool(cfg, section, "registered_delivery", true, &p->registered_delivery, err,
                          errlen) ||
        otp_provider_bool(cfg, section, "tls", false, &tls, err, errlen) ||
        otp_provider_bool(cfg, section, "tls_verify", true, &p->tls_verify, err, errlen) ||
        otp_provider_str(cfg, section, "tls_ca_file", "", false, ca_file, sizeof(ca_file), err,
                         errlen) ||
        parse_temporary(cfg, section, c, err, errlen))
        return -1;
    if (ston >= 0 && snpi < 0)
        snpi = ston == 5 ? 0 : 1;
    if (snpi >= 0 && ston < 0)
        ston = 1;
    if (rmax < rmin) {
        snprintf(k, sizeof(k), "%s.reconnect_max", section);
        snprintf(err, errlen, "%s = %ld (from %s): less than reconnect_min (%ld)", k, rmax,
                 otp_config_origin(cfg, k), rmin);
        return -1;
    }
    if (parse_tls(p, cfg, section, tls, ca_file, err, errlen))
        return -1;
    const char *dc = otp_provider_get(cfg, section, "data_coding");
    if (dc && strcmp(dc, "auto") != 0 && strcmp(dc, "ucs2") != 0) {
        snprintf(k, sizeof(k), "%s.data_coding", section);
        snprintf(err, errlen, "%s = \"%.64s\" (from %s): expected auto or ucs2", k, dc,
                 otp_config_origin(cfg, k));
        return -1;
    }
    p->force_ucs2 = dc && strcmp(dc, "ucs2") == 0;
    const char *tlv = otp_provider_get(cfg, section, "dlt_template_tlv");
    if (tlv && *tlv) {
        unsigned long v;
        if (parse_code(tlv, 0xFFFF, &v) || v == 0) {
            snprintf(k, sizeof(k), "%s.dlt_template_tlv", section);
            snprintf(err, errlen, "%s = \"%.64s\" (from %s): expected a TLV tag such as 0x1401", k,
                     tlv, otp_config_origin(cfg, k));
            return -1;
        }
        p->dlt_tlv = (uint16_t)v;
    }
    c->port = (int)port;
    c->window = (int)window;
    c->enquire_link_ms = enquire * 1000;
    c->response_timeout_ms = resp;
    c->send_timeout_ms = send_to;
    c->reconnect_min_ms = rmin;
    c->reconnect_max_ms = rmax;
    c->throttle_delay_ms = throttle;
    p->source_ton = (int)ston;
    p->source_npi = (int)snpi;
    p->dest_ton = (uint8_t)dton;
    p->dest_npi = (uint8_t)dnpi;
    return 0;
}

static int smpp_create(const otp_config *cfg, const char *section, const otp_dlr_sink *dlr,
                       otp_provider **ret, char *err, size_t errlen)
{
    smpp_provider *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "%s: out of memory", section);
        return -1;
    }
    if (otp_provider_init(&p->base, &otp_provider_smpp_ops, cfg, section, err, errlen) ||
        parse_settings(p, cfg, section, err, errlen))
        goto fail;
    atomic_init(&p->ref, randombytes_uniform(256));
    p->cfg.tls = p->tls;
    if (smpp_session_start(&p->cfg, p->base.name, dlr, &p->session) != 0) {
        snprintf(err, errlen, "%s: cannot start the SMPP session (out of memory?)", section);
        goto fail;
    }
    if (p->tls && !p->tls_verify)
        otp_log(OTP_LOG_WARN,
                "event=smpp_tls_unverified provider=%s host=%s detail=\"tls_verify = false: "
                "the SMSC's certificate and name are not checked; for tests only\"",
                p->base.name, p->cfg.host);
    *ret = &p->base;
    return 0;
fail:
    smpp_tls_free(p->tls);
    sodium_memzero(p, sizeof(*p));
    free(p);
    return -1;
}

static void smpp_destroy(otp_provider *base)
{
    smpp_provider *p = (smpp_provider *)base;
    if (!p)
        return;
    smpp_session_stop(p->session);
    smpp_tls_free(p->tls);
    sodium_memzero(p, sizeof(*p));
    free(p);
}

static bool smpp_ready(otp_provider *base)
{
    return smpp_session_bound(((smpp_provider *)base)->session);
}

/* The source address of m and its TON/NPI. Returns false if it cannot be one. */
static bool source_of(const smpp_provider *p, const otp_sms *m, smpp_submit *sub, char *out,
                      size_t outsize)
{
    const char *src = m->sender_id && *m->sender_id ? m->sender_id : p->source_addr;
    bool numeric = *src != '\0';
    if (*src == '+')
        src++;
    for (const char *c = src; *c; c++)
        if (!isdigit((unsigned char)*c))
            numeric = false;
    if (strlen(src) >= outsize)
        return false;
    snprintf(out, outsize, "%s", src);
    if (p->source_ton >= 0) {
        sub->source_ton = (uint8_t)p->source_ton;
        sub->source_npi = (uint8_t)p->source_npi;
    } else if (!*src) {
        sub->source_ton = 0;
        sub->source_npi = 0;
    } else {
        sub->source_ton = numeric ? 1 : 5;
        sub->source_npi = numeric ? 1 : 0;
    }
    return true;
}

typedef struct addrs {
    char source[21];
    char dest[21];
} addrs;

static void smpp_send(otp_provider *base, const otp_sms *msgs, size_t n, otp_send_result *results)
{
    smpp_provider *p = (smpp_provider *)base;
    otp_sms_parts *parts = calloc(n ? n : 1, sizeof(*parts));
    smpp_msg *sm = calloc(n ? n : 1, sizeof(*sm));
    addrs *ad = calloc(n ? n : 1, sizeof(*ad));
    size_t *idx = calloc(n ? n : 1, sizeof(*idx));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        otp_send_result *r = &results[i];
        *r = (otp_send_result){.outcome = OTP_SEND_TEMPORARY};
        if (!parts || !sm || !ad || !idx) {
            snprintf(r->error, sizeof(r->error), "out of memory");
            continue;
        }
        const otp_sms *m = &msgs[i];
        smpp_msg *x = &sm[k];
        r->outcome = OTP_SEND_PERMANENT;
        const char *to = m->to && m->to[0] == '+' ? m->to + 1 : m->to;
        bool digits = to && *to && strlen(to) < sizeof(ad[k].dest);
        for (const char *c = to; digits && *c; c++)
            digits = isdigit((unsigned char)*c);
        if (!digits || !m->text) {
            snprintf(r->error, sizeof(r->error), "the destination is not an E.164 number");
            continue;
        }
        if (!source_of(p, m, &x->submit, ad[k].source, sizeof(ad[k].source))) {
            snprintf(r->error, sizeof(r->error), "the sender id is longer than 20 characters");
            continue;
        }
        int e =
            otp_sms_split(m->text, p->force_ucs2, (uint8_t)atomic_fetch_add(&p->ref, 1), &parts[k]);
        if (e != 0) {
            r->outcome = e == -3 ? OTP_SEND_TEMPORARY : OTP_SEND_PERMANENT;
            snprintf(r->error, sizeof(r->error), "%s",
                     e == -1   ? "the text is empty or not valid UTF-8"
                     : e == -2 ? "the text needs more than 32 SMS parts"
                               : "out of memory");
            continue;
        }
        snprintf(ad[k].dest, sizeof(ad[k].dest), "%s", to);
        x->parts = &parts[k];
        x->submit.service_type = p->service_type;
        x->submit.source_addr = ad[k].source;
        x->submit.dest_addr = ad[k].dest;
        x->submit.dest_ton = p->dest_ton;
        x->submit.dest_npi = p->dest_npi;
        x->submit.registered_delivery = p->registered_delivery ? 1 : 0;
        x->submit.extra_tlv = p->dlt_tlv;
        x->submit.extra_value = m->dlt_template_id;
        r->outcome = OTP_SEND_TEMPORARY;
        idx[k++] = i;
    }
    if (k > 0)
        smpp_session_send(p->session, sm, k);
    for (size_t j = 0; j < k; j++) {
        otp_send_result *r = &results[idx[j]];
        r->outcome = sm[j].outcome;
        snprintf(r->provider_message_id, sizeof(r->provider_message_id), "%s", sm[j].message_id);
        snprintf(r->error, sizeof(r->error), "%s", sm[j].error);
    }
    if (parts)
        sodium_memzero(parts, (n ? n : 1) * sizeof(*parts));
    free(parts);
    free(sm);
    free(ad);
    free(idx);
}

static const char *const smpp_keys[] = {"host",
                                        "port",
                                        "tls",
                                        "tls_ca_file",
                                        "tls_verify",
                                        "system_id",
                                        "password",
                                        "system_type",
                                        "service_type",
                                        "source_addr",
                                        "source_ton",
                                        "source_npi",
                                        "dest_ton",
                                        "dest_npi",
                                        "data_coding",
                                        "dlt_template_tlv",
                                        "registered_delivery",
                                        "window",
                                        "enquire_link",
                                        "send_timeout",
                                        "response_timeout",
                                        "throttle_delay",
                                        "reconnect_min",
                                        "reconnect_max",
                                        "temporary_errors",
                                        NULL};

const otp_provider_ops otp_provider_smpp_ops = {
    .type = "smpp",
    .keys = smpp_keys,
    .create = smpp_create,
    .destroy = smpp_destroy,
    .send = smpp_send,
    .ready = smpp_ready,
};
