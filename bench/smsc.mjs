// bench/smsc.mjs — a minimal SMPP 3.4 sink for the delivery benchmark: accepts
// any bind, answers every submit_sm with ESME_ROK and a message id, answers
// enquire_link and unbind, and sends no delivery receipts. It keeps no
// messages, only a count, so that it costs as little CPU as possible next to
// otpd (the e2e tests' SMSC, tests/e2e/peers/smsc.mjs, checks the PDUs; this
// one only has to be fast). No npm packages.
//
//   node bench/smsc.mjs PORT COUNT_FILE
//
// Listens on 127.0.0.1:PORT and rewrites COUNT_FILE with the number of
// submit_sm accepted so far every 100 ms. Stops on SIGTERM/SIGINT.
import fs from 'node:fs';
import net from 'node:net';

const port = Number(process.argv[2]);
const countFile = process.argv[3];
let submits = 0;
let nextId = 1;

const BIND_RECEIVER = 0x00000001;
const BIND_TRANSMITTER = 0x00000002;
const SUBMIT_SM = 0x00000004;
const UNBIND = 0x00000006;
const BIND_TRANSCEIVER = 0x00000009;
const ENQUIRE_LINK = 0x00000015;
const GENERIC_NACK = 0x80000000;
const ESME_RINVCMDID = 0x00000003;

function pdu(commandId, status, seq, body) {
    const b = Buffer.alloc(16 + body.length);
    b.writeUInt32BE(b.length, 0);
    b.writeUInt32BE(commandId >>> 0, 4);
    b.writeUInt32BE(status >>> 0, 8);
    b.writeUInt32BE(seq >>> 0, 12);
    body.copy(b, 16);
    return b;
}

const cstr = (s) => Buffer.from(s + '\0', 'latin1');
const empty = Buffer.alloc(0);

const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    let buf = empty;
    sock.on('error', () => {});
    sock.on('data', (chunk) => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        const out = [];
        let off = 0;
        while (buf.length - off >= 16) {
            const len = buf.readUInt32BE(off);
            if (len < 16 || len > 65536) {
                sock.destroy();
                return;
            }
            if (buf.length - off < len) break;
            const id = buf.readUInt32BE(off + 4);
            const seq = buf.readUInt32BE(off + 12);
            off += len;
            if (id & 0x80000000) continue; // a response (e.g. to our nothing): ignore
            switch (id) {
                case SUBMIT_SM:
                    submits++;
                    out.push(pdu(0x80000004, 0, seq, cstr('b' + (nextId++).toString(16))));
                    break;
                case BIND_RECEIVER:
                case BIND_TRANSMITTER:
                case BIND_TRANSCEIVER:
                    out.push(pdu(id | 0x80000000, 0, seq, cstr('bench-smsc')));
                    break;
                case ENQUIRE_LINK:
                    out.push(pdu(0x80000015, 0, seq, empty));
                    break;
                case UNBIND:
                    out.push(pdu(0x80000006, 0, seq, empty));
                    sock.end(Buffer.concat(out));
                    return;
                default:
                    out.push(pdu(GENERIC_NACK, ESME_RINVCMDID, seq, empty));
            }
        }
        buf = off === buf.length ? empty : buf.subarray(off);
        if (out.length) sock.write(out.length === 1 ? out[0] : Buffer.concat(out));
    });
});

function writeCount() {
    const tmp = countFile + '.tmp';
    fs.writeFileSync(tmp, String(submits) + '\n');
    fs.renameSync(tmp, countFile);
}

server.listen(port, '127.0.0.1', () => writeCount());
const timer = setInterval(writeCount, 100);
const stop = () => {
    clearInterval(timer);
    writeCount();
    server.close();
    process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
