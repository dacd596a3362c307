/* delivery/smpp_pdu.h — the SMPP 3.4 PDUs otpd sends and reads, on libsmpp34.
 *
 * libsmpp34 encodes and decodes the PDU bodies (smpp34_pack / smpp34_unpack);
 * this file adds what it lacks for a long-running ESME: a lock around it (it
 * keeps its diagnostics in process-wide globals, and writes field values such as
 * the bind password there, which are wiped after every call), a zero byte after
 * every incoming PDU (its C-octet decoder calls strlen on the input), header
 * parsing that accepts any command_status (it rejects vendor codes), and the
 * delivery receipt format that SMSCs put in deliver_sm (SMPP 3.4 appendix B:
 * "id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…").
 *
 * No function here does I/O or logs; every builder returns the PDU length or -1.
 */
#ifndef OTP_DELIVERY_SMPP_PDU_H
#define OTP_DELIVERY_SMPP_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMPP_HEADER_LEN 16
#define SMPP_PDU_MAX 65536 /* longest PDU accepted from an SMSC */
#define SMPP_MSGID_SIZE 65 /* message_id: up to 64 characters + NUL */

/* Command ids and statuses otpd uses (SMPP 3.4 section 5.1). */
#define SMPP_GENERIC_NACK 0x80000000u
#define SMPP_BIND_TRANSCEIVER 0x00000009u
#define SMPP_BIND_TRANSCEIVER_RESP 0x80000009u
#define SMPP_SUBMIT_SM 0x00000004u
#define SMPP_SUBMIT_SM_RESP 0x80000004u
#define SMPP_DELIVER_SM 0x00000005u
#define SMPP_DELIVER_SM_RESP 0x80000005u
#define SMPP_UNBIND 0x00000006u
#define SMPP_UNBIND_RESP 0x80000006u
#define SMPP_ENQUIRE_LINK 0x00000015u
#define SMPP_ENQUIRE_LINK_RESP 0x80000015u
#define SMPP_ALERT_NOTIFICATION 0x00000102u

#define SMPP_ROK 0x00u
#define SMPP_RINVCMDID 0x03u
#define SMPP_RSYSERR 0x08u
#define SMPP_RMSGQFUL 0x14u
#define SMPP_RTHROTTLED 0x58u
#define SMPP_RX_T_APPN 0x64u

typedef struct smpp_header {
    uint32_t length;
    uint32_t id;
    uint32_t status;
    uint32_t seq;
} smpp_header;

/* Reads the 16-byte header at buf. */
void smpp_header_read(const uint8_t *buf, smpp_header *ret);

typedef struct smpp_bind {
    const char *system_id;   /* <= 15 bytes */
    const char *password;    /* <= 8 */
    const char *system_type; /* <= 12 */
} smpp_bind;

typedef struct smpp_submit {
    const char *service_type; /* <= 5 bytes, usually "" */
    const char *source_addr;  /* <= 20 */
    uint8_t source_ton, source_npi;
    const char *dest_addr; /* <= 20, digits without '+' */
    uint8_t dest_ton, dest_npi;
    uint8_t esm_class;
    uint8_t registered_delivery;
    uint8_t data_coding;
    const uint8_t *sm; /* short_message (UDH included), <= 254 octets */
    size_t sm_len;
    uint16_t extra_tlv;      /* 0 = none; else a TLV with extra_value (DLT template id) */
    const char *extra_value; /* <= 255 bytes */
} smpp_submit;

/* Builders: write the PDU with sequence number seq into out (size bytes) and
 * return its length, or -1 if a field is too long or out too small. */
int smpp_pack_bind_transceiver(const smpp_bind *b, uint32_t seq, uint8_t *out, size_t size);
int smpp_pack_submit_sm(const smpp_submit *s, uint32_t seq, uint8_t *out, size_t size);
/* A PDU of only a header: enquire_link(_resp), unbind(_resp), generic_nack. */
int smpp_pack_header_only(uint32_t command_id, uint32_t status, uint32_t seq, uint8_t *out,
                          size_t size);
int smpp_pack_deliver_sm_resp(uint32_t status, uint32_t seq, uint8_t *out, size_t size);

/* The message_id of a successful submit_sm_resp (pdu: len bytes, header
 * included) into ret (SMPP_MSGID_SIZE bytes). Returns 0 or -1 if malformed. */
int smpp_parse_submit_sm_resp(const uint8_t *pdu, size_t len, char *ret);

/* A delivery receipt. stat is the receipt's stat: word (DELIVRD, UNDELIV, …),
 * or the name of the message_state TLV's value when the text has none. */
typedef struct smpp_receipt {
    bool is_receipt; /* esm_class says receipt, or a receipted_message_id TLV */
    char id[SMPP_MSGID_SIZE];
    char stat[16];
    char err[8];
} smpp_receipt;

/* Decodes a deliver_sm (len bytes, header included). Returns 0 (a receipt
 * without an id is is_receipt with id ""), or -1 if libsmpp34 cannot decode it. */
int smpp_parse_deliver_sm(const uint8_t *pdu, size_t len, smpp_receipt *ret);

/* Reads id:, stat: and err: from a receipt text (len bytes, not NUL-terminated)
 * into ret (fields not found are left alone). Stops at "text:", which quotes
 * the message (and so the code). Keys are matched case-insensitively. */
void smpp_receipt_text(const uint8_t *text, size_t len, smpp_receipt *ret);

/* "ESME_RTHROTTLED" etc.; "vendor-specific" / "unknown" for others. */
const char *smpp_status_name(uint32_t status);

#endif
