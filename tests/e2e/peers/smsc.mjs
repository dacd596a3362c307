// tests/e2e/peers/smsc.mjs — an SMSC for the SMPP end-to-end tests, on the npm
// package `smpp` (node-smpp): a real SMPP 3.4 server implementation that otpd's
// authors did not write, so the tests check otpd's PDUs against someone else's
// reading of the protocol.
//
// startSmsc() listens on a free loopback port in the test process. It accepts
// bind_transceiver with the configured system_id/password (anything else gets
// ESME_RINVPASWD and the connection is closed), answers enquire_link and unbind,
// and records every submit_sm as {seq, at, source, sourceTon, sourceNpi, dest,
// destTon, destNpi, esmClass, dataCoding, registeredDelivery, udh, message,
// messageId, tlvs}. A test steers it through `smsc.policy`:
//   throttle(pdu, n) -> true: answer ESME_RTHROTTLED instead of accepting
//   refuse(pdu, n)   -> a command_status to refuse with (0 = accept)
//   dropAfter        -> destroy the connection right after the n-th submit_sm
//                       (before answering it); once, then cleared
// and sends delivery receipts with receipt(messageId, stat).
//
// With `tls: {key, cert}` (PEM) it listens with TLS instead (node-smpp's
// createServer passes them to tls.Server): every session is then encrypted,
// and `tlsErrors` counts the handshakes that failed (the client refusing the
// certificate, or not speaking TLS). `tcpConnections` counts every accepted
// socket, a handshake that failed included.
import net from 'node:net';
import smpp from 'smpp';

export const ESME = {
    ROK: 0x00,
    RINVDSTADR: 0x0b,
    RINVPASWD: 0x0e,
    RTHROTTLED: 0x58,
    RSYSERR: 0x08,
};

function udhInfo(udhList) {
    // Concatenation IE 0x00 (8-bit ref) or 0x08 (16-bit ref).
    for (const u of udhList || []) {
        if (u[0] === 0x00 && u[1] === 3) return { ref: u[2], total: u[3], seq: u[4] };
        if (u[0] === 0x08 && u[1] === 4) return { ref: u.readUInt16BE(2), total: u[4], seq: u[5] };
    }
    return null;
}

export async function startSmsc({ systemId = 'otpd', password = 'secret', tls = null } = {}) {
    const smsc = {
        port: 0,
        binds: [], // {systemId, password, ok, at, tls}
        submits: [],
        unbinds: 0,
        connections: 0,
        tcpConnections: 0,
        tlsErrors: [], // {at, error}
        sessions: new Set(),
        policy: {},
        nextId: 1000,
        receiptsAcked: [], // {messageId, status}
    };
    const server = smpp.createServer(tls ? { key: tls.key, cert: tls.cert } : {}, (session) => {
        smsc.connections++;
        let bound = false;
        let submitsHere = 0;
        smsc.sessions.add(session);
        session.on('close', () => smsc.sessions.delete(session));
        session.on('error', () => {});
        session.on('bind_transceiver', (pdu) => {
            const ok = pdu.system_id === systemId && pdu.password === password;
            smsc.binds.push({ systemId: pdu.system_id, password: pdu.password, ok, at: Date.now(), tls: Boolean(session.socket.encrypted) });
            if (!ok) {
                session.send(pdu.response({ command_status: ESME.RINVPASWD }));
                setTimeout(() => session.close(), 50);
                return;
            }
            bound = true;
            session.send(pdu.response({ system_id: 'node-smsc' }));
        });
        session.on('enquire_link', (pdu) => session.send(pdu.response()));
        session.on('unbind', (pdu) => {
            smsc.unbinds++;
            session.send(pdu.response());
            setTimeout(() => session.close(), 20);
        });
        session.on('submit_sm', (pdu) => {
            if (!bound) {
                session.send(pdu.response({ command_status: 0x04 }));
                return;
            }
            submitsHere++;
            const n = smsc.submits.length + 1;
            const p = smsc.policy;
            if (p.dropAfter && submitsHere >= p.dropAfter) {
                p.dropAfter = 0;
                session.destroy();
                return;
            }
            if (p.throttle && p.throttle(pdu, n)) {
                smsc.throttled = (smsc.throttled || 0) + 1;
                (smsc.throttleTimes ||= []).push(Date.now());
                session.send(pdu.response({ command_status: ESME.RTHROTTLED }));
                return;
            }
            const refuse = p.refuse ? p.refuse(pdu, n) : 0;
            if (refuse) {
                session.send(pdu.response({ command_status: refuse }));
                return;
            }
            const sm = pdu.short_message || {};
            const tlvs = {};
            for (const k of Object.keys(pdu)) if (/^\d+$/.test(k)) tlvs[k] = pdu[k];
            const messageId = `smsc-${smsc.nextId++}`;
            smsc.submits.push({
                seq: pdu.sequence_number,
                at: Date.now(),
                source: pdu.source_addr,
                sourceTon: pdu.source_addr_ton,
                sourceNpi: pdu.source_addr_npi,
                dest: pdu.destination_addr,
                destTon: pdu.dest_addr_ton,
                destNpi: pdu.dest_addr_npi,
                esmClass: pdu.esm_class,
                dataCoding: pdu.data_coding,
                registeredDelivery: pdu.registered_delivery,
                udh: udhInfo(sm.udh),
                message: typeof sm === 'string' ? sm : sm.message,
                messageId,
                tlvs,
                session,
            });
            session.send(pdu.response({ message_id: messageId }));
        });
    });
    const sockets = new Set(); // raw TCP sockets, a TLS handshake in progress included
    server.on('connection', (sock) => {
        smsc.tcpConnections++;
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
    });
    server.on('tlsClientError', (e) => smsc.tlsErrors.push({ at: Date.now(), error: String(e && e.message) }));
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    smsc.port = server.address().port;

    /** Sends a delivery receipt for messageId on the newest bound session. */
    smsc.receipt = (messageId, stat = 'DELIVRD', { err = '000', tlv = true } = {}) => {
        const sub = smsc.submits.find((s) => s.messageId === messageId);
        const session = [...smsc.sessions].pop();
        if (!session) throw new Error('no SMSC session to send a receipt on');
        const d = new Date();
        const ts = `${String(d.getUTCFullYear()).slice(2)}${String(d.getUTCMonth() + 1).padStart(2, '0')}${String(d.getUTCDate()).padStart(2, '0')}${String(d.getUTCHours()).padStart(2, '0')}${String(d.getUTCMinutes()).padStart(2, '0')}`;
        const text = `id:${messageId} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} submit date:${ts} done date:${ts} stat:${stat} err:${err} text:`;
        const opts = {
            source_addr: sub ? sub.dest : '',
            destination_addr: sub ? sub.source : '',
            esm_class: 0x04,
            short_message: text,
        };
        if (tlv) {
            opts.receipted_message_id = messageId;
            opts.message_state = { DELIVRD: 2, EXPIRED: 3, UNDELIV: 5, REJECTD: 8 }[stat] || 7;
        }
        return new Promise((resolve) => {
            session.deliver_sm(opts, (resp) => {
                smsc.receiptsAcked.push({ messageId, status: resp.command_status });
                resolve(resp.command_status);
            });
        });
    };

    /** Resolves once `pred(smsc)` holds (polls), or fails after timeoutMs. */
    smsc.waitFor = async (pred, what, timeoutMs = 15000) => {
        const deadline = Date.now() + timeoutMs;
        while (!pred(smsc)) {
            if (Date.now() > deadline) throw new Error(`SMSC: timed out waiting for ${what}`);
            await new Promise((r) => setTimeout(r, 20));
        }
    };

    /** Drops every connection (as a crashing SMSC would). */
    smsc.dropAll = () => {
        for (const s of smsc.sessions) s.destroy();
    };

    smsc.close = () =>
        new Promise((resolve) => {
            for (const s of smsc.sessions) s.destroy();
            for (const s of sockets) s.destroy();
            server.close(() => resolve());
        });
    return smsc;
}

/** Reassembles concatenated parts: Map "dest/ref" -> {total, parts[], text}. */
export function reassemble(submits) {
    const out = new Map();
    for (const s of submits) {
        if (!s.udh) continue;
        const key = `${s.dest}/${s.udh.ref}`;
        let m = out.get(key);
        if (!m) out.set(key, (m = { total: s.udh.total, parts: [], dataCoding: s.dataCoding }));
        m.parts[s.udh.seq - 1] = s.message;
    }
    for (const m of out.values()) {
        m.complete = m.parts.filter((x) => x !== undefined).length === m.total;
        m.text = m.parts.join('');
    }
    return out;
}

/** A free TCP port on 127.0.0.1 nobody listens on (for "SMSC down" cases). */
export function deadPort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}
