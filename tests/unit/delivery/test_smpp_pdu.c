/* tests/unit/delivery/test_smpp_pdu.c — the SMPP PDUs otpd writes, byte for byte
 * (bind_transceiver, submit_sm with a UDH and a vendor TLV, header-only PDUs,
 * deliver_sm_resp), and what it reads: submit_sm_resp ids (also too long or
 * unprintable ones), deliver_sm receipts with receipted_message_id /
 * message_state TLVs or only the receipt text, vendor TLVs, mobile-originated
 * messages, truncated PDUs, and the receipt text format. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/smpp_pdu.h"
#include "delivery/smpp_session.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t hex(const char *h, uint8_t *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

static void test_bind(void **state)
{
    uint8_t pdu[128], want[64];
    smpp_bind b = {"otpd", "secret", ""};
    int len = smpp_pack_bind_transceiver(&b, 0x7FFFFFFF, pdu, sizeof(pdu));
    size_t wl = hex("0000002100000009000000007fffffff6f74706400736563726574000034000000", want);
    assert_int_equal(len, (int)wl);
    assert_memory_equal(pdu, want, wl);

    smpp_bind too_long = {"otpd", "123456789", ""};
    assert_int_equal(smpp_pack_bind_transceiver(&too_long, 1, pdu, sizeof(pdu)), -1);
    smpp_bind long_id = {"0123456789abcdef", "", ""};
    assert_int_equal(smpp_pack_bind_transceiver(&long_id, 1, pdu, sizeof(pdu)), -1);
    assert_int_equal(smpp_pack_bind_transceiver(&b, 1, pdu, 10), -1);
}

static void test_submit_sm(void **state)
{
    const uint8_t sm[] = {0x05, 0x00, 0x03, 0x2A, 0x02, 0x01, 0x00, 0x41, 0x09, 0x39};
    smpp_submit s = {
        .service_type = "",
        .source_addr = "OTPD",
        .source_ton = 5,
        .source_npi = 0,
        .dest_addr = "919812345678",
        .dest_ton = 1,
        .dest_npi = 1,
        .esm_class = 0x40,
        .registered_delivery = 1,
        .data_coding = 8,
        .sm = sm,
        .sm_len = sizeof(sm),
        .extra_tlv = 0x1401,
        .extra_value = "12345",
    };
    uint8_t pdu[512];
    int len = smpp_pack_submit_sm(&s, 42, pdu, sizeof(pdu));
    assert_true(len > 0);
    smpp_header h;
    smpp_header_read(pdu, &h);
    assert_int_equal(h.length, (uint32_t)len);
    assert_int_equal(h.id, SMPP_SUBMIT_SM);
    assert_int_equal(h.status, 0);
    assert_int_equal(h.seq, 42);
    uint8_t body[128];
    size_t bl = 0;
    const uint8_t head[] = {0, 5, 0, 'O', 'T', 'P', 'D', 0, 1, 1};
    memcpy(body + bl, head, sizeof(head));
    bl += sizeof(head);
    memcpy(body + bl, "919812345678", 13);
    bl += 13;
    const uint8_t mid[] = {0x40, 0, 0, 0, 0, 1, 0, 8, 0, sizeof(sm)};
    memcpy(body + bl, mid, sizeof(mid));
    bl += sizeof(mid);
    memcpy(body + bl, sm, sizeof(sm));
    bl += sizeof(sm);
    const uint8_t tlv[] = {0x14, 0x01, 0x00, 0x05, '1', '2', '3', '4', '5'};
    memcpy(body + bl, tlv, sizeof(tlv));
    bl += sizeof(tlv);
    assert_int_equal((size_t)len, SMPP_HEADER_LEN + bl);
    assert_memory_equal(pdu + SMPP_HEADER_LEN, body, bl);

    /* Without the TLV value there is no TLV; too long fields are refused. */
    s.extra_value = NULL;
    assert_int_equal(smpp_pack_submit_sm(&s, 43, pdu, sizeof(pdu)), len - (int)sizeof(tlv));
    s.dest_addr = "123456789012345678901";
    assert_int_equal(smpp_pack_submit_sm(&s, 44, pdu, sizeof(pdu)), -1);
    s.dest_addr = "91";
    uint8_t big[254] = {0};
    s.sm = big;
    s.sm_len = sizeof(big);
    assert_int_equal(smpp_pack_submit_sm(&s, 45, pdu, sizeof(pdu)), -1);
}

static void test_header_only(void **state)
{
    uint8_t pdu[32], want[32];
    assert_int_equal(smpp_pack_header_only(SMPP_ENQUIRE_LINK, 0, 7, pdu, sizeof(pdu)), 16);
    hex("00000010000000150000000000000007", want);
    assert_memory_equal(pdu, want, 16);
    assert_int_equal(smpp_pack_header_only(SMPP_GENERIC_NACK, SMPP_RINVCMDID, 9, pdu, sizeof(pdu)),
                     16);
    hex("00000010800000000000000300000009", want);
    assert_memory_equal(pdu, want, 16);
    assert_int_equal(smpp_pack_header_only(SMPP_SUBMIT_SM, 0, 1, pdu, sizeof(pdu)), -1);
    assert_int_equal(smpp_pack_deliver_sm_resp(SMPP_RX_T_APPN, 5, pdu, sizeof(pdu)), 17);
    hex("0000001180000005000000640000000500", want);
    assert_memory_equal(pdu, want, 17);
}

static size_t submit_resp(uint8_t *pdu, const char *id, size_t idlen)
{
    size_t len = SMPP_HEADER_LEN + idlen + 1;
    put32(pdu, (uint32_t)len);
    put32(pdu + 4, SMPP_SUBMIT_SM_RESP);
    put32(pdu + 8, 0);
    put32(pdu + 12, 3);
    memcpy(pdu + SMPP_HEADER_LEN, id, idlen);
    pdu[SMPP_HEADER_LEN + idlen] = 0;
    return len;
}

static void test_submit_sm_resp(void **state)
{
    uint8_t pdu[256];
    char id[SMPP_MSGID_SIZE];
    size_t len = submit_resp(pdu, "abc-123", 7);
    assert_int_equal(smpp_parse_submit_sm_resp(pdu, len, id), 0);
    assert_string_equal(id, "abc-123");

    char longid[80];
    memset(longid, 'x', sizeof(longid));
    len = submit_resp(pdu, longid, sizeof(longid));
    assert_int_equal(smpp_parse_submit_sm_resp(pdu, len, id), 0);
    assert_int_equal(strlen(id), 64);

    len = submit_resp(pdu,
                      "a\x01"
                      "b",
                      3);
    assert_int_equal(smpp_parse_submit_sm_resp(pdu, len, id), 0);
    assert_string_equal(id, "a?b");
    assert_int_equal(smpp_parse_submit_sm_resp(pdu, 8, id), -1);
}

typedef struct tlv {
    uint16_t tag;
    const void *value;
    uint16_t len;
} tlv;

/* A deliver_sm with esm_class, a short_message and TLVs. */
static size_t deliver(uint8_t *pdu, uint8_t esm, const char *text, const tlv *tlvs, size_t ntlv)
{
    size_t o = SMPP_HEADER_LEN;
    pdu[o++] = 0; /* service_type */
    pdu[o++] = 1;
    pdu[o++] = 1;
    memcpy(pdu + o, "919812345678", 13);
    o += 13;
    pdu[o++] = 5;
    pdu[o++] = 0;
    memcpy(pdu + o, "OTPD", 5);
    o += 5;
    const uint8_t mid[] = {esm, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(pdu + o, mid, sizeof(mid));
    o += sizeof(mid);
    size_t tl = strlen(text);
    pdu[o++] = (uint8_t)tl;
    memcpy(pdu + o, text, tl);
    o += tl;
    for (size_t i = 0; i < ntlv; i++) {
        pdu[o++] = (uint8_t)(tlvs[i].tag >> 8);
        pdu[o++] = (uint8_t)tlvs[i].tag;
        pdu[o++] = (uint8_t)(tlvs[i].len >> 8);
        pdu[o++] = (uint8_t)tlvs[i].len;
        memcpy(pdu + o, tlvs[i].value, tlvs[i].len);
        o += tlvs[i].len;
    }
    put32(pdu, (uint32_t)o);
    put32(pdu + 4, SMPP_DELIVER_SM);
    put32(pdu + 8, 0);
    put32(pdu + 12, 77);
    return o;
}

#define RECEIPT                                                                                    \
    "id:TXT-1 sub:001 dlvrd:001 submit date:2602151030 done date:2602151031 stat:DELIVRD "         \
    "err:000 text:123456 is your"

static void test_deliver_sm_receipts(void **state)
{
    uint8_t pdu[1024];
    smpp_receipt r;
    const uint8_t delivered = 2, rejected = 8, vendor[] = {1, 2, 3};

    /* TLVs and text: the TLV's id wins; stat from the text. */
    tlv t1[] = {{0x001E, "TLV-1", 6}, {0x0427, &delivered, 1}, {0x1500, vendor, 3}};
    size_t len = deliver(pdu, 0x04, RECEIPT, t1, 3);
    assert_int_equal(smpp_parse_deliver_sm(pdu, len, &r), 0);
    assert_true(r.is_receipt);
    assert_string_equal(r.id, "TLV-1");
    assert_string_equal(r.stat, "DELIVRD");
    assert_string_equal(r.err, "000");

    /* Text only. */
    len = deliver(pdu, 0x04, RECEIPT, NULL, 0);
    assert_int_equal(smpp_parse_deliver_sm(pdu, len, &r), 0);
    assert_true(r.is_receipt);
    assert_string_equal(r.id, "TXT-1");

    /* TLVs only, no esm_class bit: a receipt by its receipted_message_id. */
    tlv t2[] = {{0x001E, "X9", 3}, {0x0427, &rejected, 1}};
    len = deliver(pdu, 0x00, "", t2, 2);
    assert_int_equal(smpp_parse_deliver_sm(pdu, len, &r), 0);
    assert_true(r.is_receipt);
    assert_string_equal(r.id, "X9");
    assert_string_equal(r.stat, "REJECTD");

    /* A mobile-originated message is not a receipt. */
    len = deliver(pdu, 0x00, "hello stat:DELIVRD", NULL, 0);
    assert_int_equal(smpp_parse_deliver_sm(pdu, len, &r), 0);
    assert_false(r.is_receipt);

    /* Truncated or inconsistent lengths. */
    len = deliver(pdu, 0x04, RECEIPT, t1, 3);
    put32(pdu, (uint32_t)len + 5);
    assert_int_equal(smpp_parse_deliver_sm(pdu, len, &r), -1);
    put32(pdu, (uint32_t)len);
    assert_int_equal(smpp_parse_deliver_sm(pdu, len - 3, &r), -1);

    /* A fixed-size TLV of the wrong size, a TLV running past the end: refused
     * before libsmpp34 (which would leak the TLV it had allocated). */
    const uint8_t two[] = {2, 2};
    tlv t3[] = {{0x0427, two, 2}};
    len = deliver(pdu, 0x04, RECEIPT, t3, 1);
    assert_int_equal(smpp_parse_deliver_sm(pdu, len, &r), -1);
    tlv t4[] = {{0x001E, "X9", 3}};
    len = deliver(pdu, 0x04, RECEIPT, t4, 1);
    pdu[len - 4] = 9; /* the TLV claims 9 bytes, 3 follow */
    assert_int_equal(smpp_parse_deliver_sm(pdu, len, &r), -1);
    tlv t5[] = {
        {0x001E, "0123456789012345678901234567890123456789012345678901234567890123456789", 71}};
    len = deliver(pdu, 0x04, RECEIPT, t5, 1);
    assert_int_equal(smpp_parse_deliver_sm(pdu, len, &r), -1);
}

static void test_receipt_text(void **state)
{
    smpp_receipt r;
    memset(&r, 0, sizeof(r));
    const char *t = "ID:AbC STAT:undeliv ERR:001 Text:stat:DELIVRD id:zzz";
    smpp_receipt_text((const uint8_t *)t, strlen(t), &r);
    assert_string_equal(r.id, "AbC");
    assert_string_equal(r.stat, "undeliv");
    assert_string_equal(r.err, "001");

    memset(&r, 0, sizeof(r));
    t = "text:id:1 stat:DELIVRD";
    smpp_receipt_text((const uint8_t *)t, strlen(t), &r);
    assert_string_equal(r.id, "");
    assert_string_equal(r.stat, "");

    memset(&r, 0, sizeof(r));
    t = "submit date:1 id:7 xstat:BAD stat:EXPIRED";
    smpp_receipt_text((const uint8_t *)t, 22, &r); /* not NUL-terminated: stops at len */
    assert_string_equal(r.id, "7");
    assert_string_equal(r.stat, "");
}

static void test_status(void **state)
{
    assert_string_equal(smpp_status_name(0x58), "ESME_RTHROTTLED");
    assert_string_equal(smpp_status_name(0x0E), "ESME_RINVPASWD");
    assert_string_equal(smpp_status_name(0x401), "vendor-specific");
    assert_string_equal(smpp_status_name(0x999), "unknown");
    smpp_config c = {.n_temporary = 1, .temporary = {0x401}};
    assert_true(smpp_status_temporary(&c, 0x58));
    assert_true(smpp_status_temporary(&c, 0x14));
    assert_true(smpp_status_temporary(&c, 0x08));
    assert_true(smpp_status_temporary(&c, 0x401));
    assert_false(smpp_status_temporary(&c, 0x402));
    assert_false(smpp_status_temporary(&c, 0x0B)); /* invalid destination */
    assert_false(smpp_status_temporary(NULL, 0x401));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_submit_sm),
        cmocka_unit_test(test_header_only),
        cmocka_unit_test(test_submit_sm_resp),
        cmocka_unit_test(test_deliver_sm_receipts),
        cmocka_unit_test(test_receipt_text),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
