/* delivery/smpp_pdu.c — SMPP PDUs on libsmpp34; see smpp_pdu.h.
 *
 * Every call into libsmpp34 holds one process-wide lock: its pack and unpack
 * write a trace of each field (the password of a bind, the addresses of a
 * submit) into the global smpp34_strerror, so two sessions in two threads would
 * race on it. The trace is wiped before the lock is released; it is never
 * logged. The PDU structs on the stack hold the text of a submit and are wiped
 * too. Incoming PDUs are decoded from a copy with a zero byte after the end,
 * because libsmpp34's C-octet decoder runs strlen over its input.
 */
#include "delivery/smpp_pdu.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libsmpp34's headers use the types without including their headers. */
#include <smpp34.h>
#include <smpp34_structs.h>
#include <smpp34_params.h>

static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

static void lib_enter(void)
{
    pthread_mutex_lock(&lib_lock);
}

static void lib_leave(void)
{
    sodium_memzero(smpp34_strerror, sizeof(smpp34_strerror));
    pthread_mutex_unlock(&lib_lock);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void smpp_header_read(const uint8_t *buf, smpp_header *ret)
{
    ret->length = be32(buf);
    ret->id = be32(buf + 4);
    ret->status = be32(buf + 8);
    ret->seq = be32(buf + 12);
}

/* Copies the C string s into a C-octet field of cap bytes; false if too long. */
static bool put_cstr(uint8_t *field, size_t cap, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len >= cap)
        return false;
    memcpy(field, s ? s : "", len);
    field[len] = '\0';
    return true;
}

static int pack(uint32_t type, void *pdu, uint8_t *out, size_t size)
{
    if (size > (size_t)SMPP_PDU_MAX)
        size = SMPP_PDU_MAX;
    int len = 0;
    lib_enter();
    int r = smpp34_pack(type, out, (int)size, &len, pdu);
    lib_leave();
    return r == 0 && len >= SMPP_HEADER_LEN ? len : -1;
}

int smpp_pack_bind_transceiver(const smpp_bind *b, uint32_t seq, uint8_t *out, size_t size)
{
    bind_transceiver_t p;
    memset(&p, 0, sizeof(p));
    p.command_id = BIND_TRANSCEIVER;
    p.sequence_number = seq;
    p.interface_version = SMPP_VERSION;
    p.addr_ton = TON_Unknown;
    p.addr_npi = NPI_Unknown;
    int r = -1;
    if (put_cstr(p.system_id, sizeof(p.system_id), b->system_id) &&
        put_cstr(p.password, sizeof(p.password), b->password) &&
        put_cstr(p.system_type, sizeof(p.system_type), b->system_type))
        r = pack(BIND_TRANSCEIVER, &p, out, size);
    sodium_memzero(&p, sizeof(p));
    return r;
}

int smpp_pack_submit_sm(const smpp_submit *s, uint32_t seq, uint8_t *out, size_t size)
{
    submit_sm_t p;
    tlv_t tlv;
    memset(&p, 0, sizeof(p));
    memset(&tlv, 0, sizeof(tlv));
    p.command_id = SUBMIT_SM;
    p.sequence_number = seq;
    p.source_addr_ton = s->source_ton;
    p.source_addr_npi = s->source_npi;
    p.dest_addr_ton = s->dest_ton;
    p.dest_addr_npi = s->dest_npi;
    p.esm_class = s->esm_class;
    p.registered_delivery = s->registered_delivery;
    p.data_coding = s->data_coding;
    int r = -1;
    /* libsmpp34 refuses sm_length >= sizeof(short_message) (254). */
    if (!put_cstr(p.service_type, sizeof(p.service_type), s->service_type) ||
        !put_cstr(p.source_addr, sizeof(p.source_addr), s->source_addr) ||
        !put_cstr(p.destination_addr, sizeof(p.destination_addr), s->dest_addr) ||
        s->sm_len >= sizeof(p.short_message))
        goto out;
    p.sm_length = (uint8_t)s->sm_len;
    memcpy(p.short_message, s->sm, s->sm_len);
    if (s->extra_tlv && s->extra_value && *s->extra_value) {
        size_t vlen = strlen(s->extra_value);
        if (vlen > 255)
            goto out;
        tlv.tag = s->extra_tlv;
        tlv.length = (uint16_t)vlen;
        memcpy(tlv.value.octet, s->extra_value, vlen);
        p.tlv = &tlv; /* one element: no need for build_tlv's heap copy */
    }
    r = pack(SUBMIT_SM, &p, out, size);
out:
    sodium_memzero(&p, sizeof(p));
    return r;
}

int smpp_pack_header_only(uint32_t command_id, uint32_t status, uint32_t seq, uint8_t *out,
                          size_t size)
{
    /* Every header-only PDU struct is just the header. */
    enquire_link_t p;
    memset(&p, 0, sizeof(p));
    p.command_id = command_id;
    p.command_status = status;
    p.sequence_number = seq;
    switch (command_id) {
    case SMPP_ENQUIRE_LINK:
    case SMPP_ENQUIRE_LINK_RESP:
    case SMPP_UNBIND:
    case SMPP_UNBIND_RESP:
    case SMPP_GENERIC_NACK:
        return pack(command_id, &p, out, size);
    default:
        return -1;
    }
}

int smpp_pack_deliver_sm_resp(uint32_t status, uint32_t seq, uint8_t *out, size_t size)
{
    deliver_sm_resp_t p;
    memset(&p, 0, sizeof(p));
    p.command_id = DELIVER_SM_RESP;
    p.command_status = status;
    p.sequence_number = seq;
    return pack(DELIVER_SM_RESP, &p, out, size);
}

/* A zero-terminated heap copy of a PDU, for libsmpp34's decoder. */
static uint8_t *padded(const uint8_t *pdu, size_t len)
{
    uint8_t *c = malloc(len + 1);
    if (c) {
        memcpy(c, pdu, len);
        c[len] = 0;
    }
    return c;
}

int smpp_parse_submit_sm_resp(const uint8_t *pdu, size_t len, char *ret)
{
    if (len < SMPP_HEADER_LEN || len > SMPP_PDU_MAX)
        return -1;
    /* The body is one C-octet string; some SMSCs send more than the 64
     * characters libsmpp34 accepts, so a decoder failure falls back to taking
     * the string as it is, cut at 64. */
    uint8_t *c = padded(pdu, len);
    if (!c)
        return -1;
    submit_sm_resp_t p;
    memset(&p, 0, sizeof(p));
    lib_enter();
    int r = smpp34_unpack(SUBMIT_SM_RESP, &p, c, (int)len);
    lib_leave();
    if (r == 0) {
        snprintf(ret, SMPP_MSGID_SIZE, "%s", (const char *)p.message_id);
    } else {
        size_t n = 0;
        for (size_t i = SMPP_HEADER_LEN; i < len && c[i] && n + 1 < SMPP_MSGID_SIZE; i++)
            ret[n++] = (char)c[i];
        ret[n] = '\0';
    }
    free(c);
    /* An id is printable ASCII; anything else would end up in logs and JSON. */
    for (char *q = ret; *q; q++)
        if (!isprint((unsigned char)*q))
            *q = '?';
    return 0;
}

/* Case-insensitive search for key in text[0..len), at the start or after a
 * space; returns the offset just after it, or len. Stops at "text:". */
static size_t find_key(const uint8_t *text, size_t len, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen <= len; i++) {
        if (i > 0 && text[i - 1] != ' ')
            continue;
        if (i + 5 <= len && strncasecmp((const char *)text + i, "text:", 5) == 0)
            return len;
        if (strncasecmp((const char *)text + i, key, klen) == 0)
            return i + klen;
    }
    return len;
}

static void copy_word(const uint8_t *text, size_t len, size_t at, char *out, size_t outsize)
{
    size_t n = 0;
    while (at < len && text[at] != ' ' && text[at] != '\0' && n + 1 < outsize) {
        unsigned char ch = text[at++];
        out[n++] = isprint(ch) ? (char)ch : '?';
    }
    out[n] = '\0';
}

void smpp_receipt_text(const uint8_t *text, size_t len, smpp_receipt *ret)
{
    size_t at;
    if ((at = find_key(text, len, "id:")) < len)
        copy_word(text, len, at, ret->id, sizeof(ret->id));
    if ((at = find_key(text, len, "stat:")) < len)
        copy_word(text, len, at, ret->stat, sizeof(ret->stat));
    if ((at = find_key(text, len, "err:")) < len)
        copy_word(text, len, at, ret->err, sizeof(ret->err));
}

/* Skips a C-octet string of at most cap bytes (NUL included) at *o. */
static bool skip_cstr(const uint8_t *pdu, size_t len, size_t *o, size_t cap)
{
    for (size_t i = 0; i < cap && *o + i < len; i++) {
        if (pdu[*o + i] == 0) {
            *o += i + 1;
            return true;
        }
    }
    return false;
}

/* Checks a deliver_sm's layout before libsmpp34 sees it: its TLV decoder
 * allocates each TLV before checking it and leaks it when the check fails, and
 * it reads a fixed-size TLV (message_state…) by its type, not its length, so a
 * wrong length would shift the rest. Every TLV must fit the PDU exactly and the
 * fixed-size ones must have their size. */
static bool deliver_sm_wellformed(const uint8_t *pdu, size_t len)
{
    static const struct {
        uint16_t tag;
        uint16_t exact; /* 0: at most max */
        uint16_t max;
    } sizes[] = {
        {0x0204, 2, 0},  {0x020A, 2, 0},  {0x020B, 2, 0}, {0x020C, 2, 0},  {0x020E, 1, 0},
        {0x020F, 1, 0},  {0x0205, 1, 0},  {0x0201, 1, 0}, {0x0019, 1, 0},  {0x020D, 1, 0},
        {0x1383, 2, 0},  {0x0427, 1, 0},  {0x0421, 1, 0}, {0x000E, 1, 0},  {0x0381, 0, 19},
        {0x0202, 0, 23}, {0x0203, 0, 23}, {0x0423, 0, 3}, {0x001E, 0, 65},
    };
    smpp_header h;
    if (len < SMPP_HEADER_LEN)
        return false;
    smpp_header_read(pdu, &h);
    if (h.length != len)
        return false;
    size_t o = SMPP_HEADER_LEN;
    if (!skip_cstr(pdu, len, &o, 6))
        return false;
    o += 2; /* source TON, NPI */
    if (!skip_cstr(pdu, len, &o, 21))
        return false;
    o += 2;
    if (!skip_cstr(pdu, len, &o, 21))
        return false;
    o += 3; /* esm_class, protocol_id, priority_flag */
    if (!skip_cstr(pdu, len, &o, 1) || !skip_cstr(pdu, len, &o, 1))
        return false;
    o += 4; /* registered_delivery, replace_if_present, data_coding, sm_default_msg_id */
    if (o >= len)
        return false;
    o += 1 + (size_t)pdu[o]; /* sm_length, short_message */
    while (o < len) {
        if (len - o < 4)
            return false;
        uint16_t tag = (uint16_t)(pdu[o] << 8 | pdu[o + 1]);
        uint16_t tl = (uint16_t)(pdu[o + 2] << 8 | pdu[o + 3]);
        o += 4;
        if (tl > len - o || tl > 1024)
            return false;
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
            if (sizes[i].tag == tag && (sizes[i].exact ? tl != sizes[i].exact : tl > sizes[i].max))
                return false;
        o += tl;
    }
    return o == len;
}

/* message_state TLV values (SMPP 3.4 section 5.2.28) as receipt words. */
static const char *state_word(uint8_t state)
{
    static const char *const words[] = {"",        "ENROUTE", "DELIVRD", "EXPIRED", "DELETED",
                                        "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD"};
    return state < sizeof(words) / sizeof(words[0]) ? words[state] : "";
}

int smpp_parse_deliver_sm(const uint8_t *pdu, size_t len, smpp_receipt *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (len > SMPP_PDU_MAX || !deliver_sm_wellformed(pdu, len))
        return -1;
    uint8_t *c = padded(pdu, len);
    if (!c)
        return -1;
    deliver_sm_t *p = calloc(1, sizeof(*p));
    if (!p) {
        free(c);
        return -1;
    }
    lib_enter();
    int r = smpp34_unpack(DELIVER_SM, p, c, (int)len);
    lib_leave();
    if (r == 0) {
        int state = -1;
        ret->is_receipt = (p->esm_class & SMPP34_DELIVERY_RECEIPT) != 0;
        for (tlv_t *t = p->tlv; t; t = t->next) {
            if (t->tag == TLVID_receipted_message_id && t->length > 0) {
                size_t n = t->length < SMPP_MSGID_SIZE ? t->length : SMPP_MSGID_SIZE - 1;
                char id[SMPP_MSGID_SIZE];
                memcpy(id, t->value.octet, n);
                id[n] = '\0';
                copy_word((const uint8_t *)id, strlen(id), 0, ret->id, sizeof(ret->id));
                ret->is_receipt = true;
            } else if (t->tag == TLVID_message_state && t->length == 1) {
                state = t->value.val08;
            }
        }
        if (ret->is_receipt) {
            /* The text's id: is used only when there is no TLV: they can differ
             * in format (hex vs decimal) and the TLV is the standard one. */
            smpp_receipt from_text = {0};
            smpp_receipt_text(p->short_message, p->sm_length, &from_text);
            if (!ret->id[0])
                memcpy(ret->id, from_text.id, sizeof(ret->id));
            memcpy(ret->stat, from_text.stat, sizeof(ret->stat));
            memcpy(ret->err, from_text.err, sizeof(ret->err));
            if (!ret->stat[0] && state >= 0)
                snprintf(ret->stat, sizeof(ret->stat), "%s", state_word((uint8_t)state));
        }
    }
    destroy_tlv(p->tlv);
    sodium_memzero(p, sizeof(*p));
    free(p);
    sodium_memzero(c, len);
    free(c);
    return r == 0 ? 0 : -1;
}

const char *smpp_status_name(uint32_t status)
{
    static const struct {
        uint32_t status;
        const char *name;
    } names[] = {
        {0x00, "ESME_ROK"},
        {0x01, "ESME_RINVMSGLEN"},
        {0x02, "ESME_RINVCMDLEN"},
        {0x03, "ESME_RINVCMDID"},
        {0x04, "ESME_RINVBNDSTS"},
        {0x05, "ESME_RALYBND"},
        {0x08, "ESME_RSYSERR"},
        {0x0A, "ESME_RINVSRCADR"},
        {0x0B, "ESME_RINVDSTADR"},
        {0x0C, "ESME_RINVMSGID"},
        {0x0D, "ESME_RBINDFAIL"},
        {0x0E, "ESME_RINVPASWD"},
        {0x0F, "ESME_RINVSYSID"},
        {0x14, "ESME_RMSGQFUL"},
        {0x15, "ESME_RINVSERTYP"},
        {0x43, "ESME_RINVESMCLASS"},
        {0x45, "ESME_RSUBMITFAIL"},
        {0x48, "ESME_RINVSRCTON"},
        {0x49, "ESME_RINVSRCNPI"},
        {0x50, "ESME_RINVDSTTON"},
        {0x51, "ESME_RINVDSTNPI"},
        {0x53, "ESME_RINVSYSTYP"},
        {0x58, "ESME_RTHROTTLED"},
        {0x61, "ESME_RINVSCHED"},
        {0x62, "ESME_RINVEXPIRY"},
        {0x64, "ESME_RX_T_APPN"},
        {0x65, "ESME_RX_P_APPN"},
        {0x66, "ESME_RX_R_APPN"},
        {0xC0, "ESME_RINVOPTPARSTREAM"},
        {0xC1, "ESME_ROPTPARNOTALLWD"},
        {0xC2, "ESME_RINVPARLEN"},
        {0xC3, "ESME_RMISSINGOPTPARAM"},
        {0xC4, "ESME_RINVOPTPARAMVAL"},
        {0xFE, "ESME_RDELIVERYFAILURE"},
        {0xFF, "ESME_RUNKNOWNERR"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].status == status)
            return names[i].name;
    return status >= 0x400 && status <= 0x4FF ? "vendor-specific" : "unknown";
}
