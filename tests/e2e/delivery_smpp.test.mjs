// SMPP delivery (SPEC 5, issue 4) against a real SMPP server implementation that
// otpd's authors did not write: the npm package `smpp` (node-smpp), run as an
// SMSC in this process (peers/smsc.mjs). otpd is started with an INI file whose
// [provider.smsc] points at it. Proves: bind_transceiver with the right
// credentials (and a clear log line plus /readyz 503 with wrong ones); a send
// arrives as submit_sm with the right text, addresses, TON/NPI, registered
// delivery, sender id and DLT TLV; a 200-character text arrives as two
// concatenated GSM-7 parts (UDH, an escape pair never split) that reassemble to
// the text; Hindi arrives as UCS-2 (data_coding 8); delivery receipts
// (deliver_sm) move the message to delivered / undeliverable / failed, a
// multi-part message only when every part is delivered, and a REJECTD reported
// twice refunds once; the SMSC dropping the connection mid-stream loses nothing;
// ESME_RTHROTTLED slows otpd down without losing messages; SIGTERM unbinds.
//
// Over TLS (tls = true), against the same SMSC listening with TLS and
// certificates made for the test by the openssl CLI (peers/certs.mjs): with
// tls_ca_file naming the test CA otpd binds, sends and takes receipts; a
// certificate from another CA, one for another name, or an SMSC that does not
// speak TLS never gets a bind — the log says why, /readyz stays 503, nothing is
// delivered, otpd keeps retrying and stops cleanly; a CA file that is missing
// or holds no certificate stops start-up naming the setting.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { phones, sleep, sendOk, paise, runCli, sanitizerReports, freePort } from './lib/server.mjs';
import { startSmsc, reassemble } from './peers/smsc.mjs';
import { writeIni, startWithConfig } from './peers/otpd.mjs';
import { makeCerts } from './peers/certs.mjs';

const phone = phones(41);
const digits = (e164) => e164.replace(/^\+/, '');

function writeConfig(smscPort, { password = 'secret', extra = '' } = {}) {
    return writeIni(`[delivery]
providers = smsc

[provider.smsc]
type = smpp
host = 127.0.0.1
port = ${smscPort}
system_id = otpd
password = ${password}
source_addr = OTPD
window = 5
enquire_link = 2
response_timeout = 3000
send_timeout = 8000
reconnect_min = 100
reconnect_max = 1000
throttle_delay = 300
dlt_template_tlv = 0x1401
${extra}
`);
}

async function waitReady(srv, want = 200, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const r = await srv.request('GET', '/readyz');
        if (r.status === want) return r;
        if (Date.now() > deadline) assert.fail(`/readyz stayed ${r.status}, want ${want}: ${r.text}`);
        await sleep(50);
    }
}

/** The request's messages (GET /otp/{id}). */
async function messagesOf(srv, key, requestId) {
    const r = await srv.request('GET', `/otp/${requestId}`, { key });
    assert.equal(r.status, 200, r.text);
    return r.json.data.messages;
}

async function messageInfo(srv, key, messageId) {
    const r = await srv.request('GET', `/messages/${messageId}`, { key });
    assert.equal(r.status, 200, r.text);
    return r.json.data;
}

/** Polls GET /messages/{id} until its status is want. */
async function waitStatus(srv, key, messageId, want, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const m = await messageInfo(srv, key, messageId);
        if (m.status === want) return m;
        if (Date.now() > deadline) assert.fail(`message ${messageId} is ${m.status}, want ${want}: ${JSON.stringify(m)}`);
        await sleep(50);
    }
}

/** otpd_delivery_reports_total of provider smsc, by status, from /metrics. */
async function reportCounts(srv) {
    const m = await srv.request('GET', '/metrics');
    assert.equal(m.status, 200);
    const out = {};
    for (const st of ['delivered', 'undeliverable', 'failed']) {
        const hit = new RegExp(`^otpd_delivery_reports_total\\{provider="smsc",status="${st}"\\} (\\d+)$`, 'm').exec(m.text);
        assert.ok(hit, `reports of smsc, ${st}, in /metrics`);
        out[st] = Number(hit[1]);
    }
    return out;
}

const codeOf = (text) => text.match(/\d{4,10}/)[0];

describe('smpp provider against node-smpp', () => {
    let smsc;
    let srv;
    let key;
    const seenCodes = [];
    const submitsTo = (to) => smsc.submits.filter((s) => s.dest === digits(to));
    const waitSubmits = (to, n = 1) => smsc.waitFor(() => submitsTo(to).length >= n, `${n} submit_sm to ${to}`);

    before(async () => {
        smsc = await startSmsc({ systemId: 'otpd', password: 'secret' });
        srv = await startWithConfig(writeConfig(smsc.port), { accounts: { acme: '100.00', tpl: '10.00' } });
        key = srv.accounts.acme.key;
    });
    after(async () => {
        if (srv) srv.cleanup('delivery_smpp');
        if (smsc) await smsc.close();
    });

    it('binds as a transceiver with the configured credentials; /readyz 200', async () => {
        await waitReady(srv, 200);
        assert.ok(smsc.binds.some((b) => b.ok && b.systemId === 'otpd' && b.password === 'secret'));
        assert.match(srv.log(), /event=smpp_bound provider=smsc/);
    });

    it('a send arrives as submit_sm with the right text and addresses, and its code verifies', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        await waitSubmits(to);
        const [s] = submitsTo(to);
        assert.equal(s.source, 'OTPD');
        assert.equal(s.sourceTon, 5, 'alphanumeric sender: TON 5');
        assert.equal(s.sourceNpi, 0);
        assert.equal(s.dest, digits(to));
        assert.equal(s.destTon, 1, 'destination TON international');
        assert.equal(s.destNpi, 1, 'destination NPI E.164');
        assert.equal(s.registeredDelivery, 1, 'a delivery receipt is requested');
        assert.equal(s.dataCoding, 0, 'GSM 03.38 default alphabet');
        assert.equal(s.esmClass & 0x40, 0, 'no UDH for a single part');
        assert.equal(s.udh, null);
        const code = codeOf(s.message);
        seenCodes.push(code);
        assert.equal(s.message, `${code} is your acme verification code. It expires in 10 minutes. Do not share it.`);

        const [m] = await messagesOf(srv, key, d.requestId);
        const info = await waitStatus(srv, key, m.messageId, 'sent');
        assert.equal(info.provider, 'smsc');
        assert.equal(info.providerMessageId, s.messageId, 'the submit_sm_resp message_id is stored');
        const v = await srv.verify(key, d.requestId, code);
        assert.equal(v.status, 200, v.text);
    });

    it('a delivery receipt (deliver_sm, stat:DELIVRD) moves the message to delivered', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        await waitSubmits(to);
        const [s] = submitsTo(to);
        seenCodes.push(codeOf(s.message));
        const [m] = await messagesOf(srv, key, d.requestId);
        await waitStatus(srv, key, m.messageId, 'sent');
        const status = await smsc.receipt(s.messageId, 'DELIVRD');
        assert.equal(status, 0, 'deliver_sm_resp ESME_ROK once stored');
        await waitStatus(srv, key, m.messageId, 'delivered');
        const st = await srv.request('GET', `/otp/${d.requestId}`, { key });
        assert.equal(st.json.data.messages[0].deliveryStatus, 'delivered');
    });

    it('UNDELIV → undeliverable without a refund; REJECTD reported twice → failed, refunded exactly once', async () => {
        const a = phone();
        const b = phone();
        const da = await sendOk(srv, key, { phoneNumber: a });
        const db = await sendOk(srv, key, { phoneNumber: b });
        await waitSubmits(a);
        await waitSubmits(b);
        const [sa] = submitsTo(a);
        const [sb] = submitsTo(b);
        seenCodes.push(codeOf(sa.message), codeOf(sb.message));
        const [ma] = await messagesOf(srv, key, da.requestId);
        const [mb] = await messagesOf(srv, key, db.requestId);
        await waitStatus(srv, key, ma.messageId, 'sent');
        await waitStatus(srv, key, mb.messageId, 'sent');
        const before = await srv.accountShow('acme');
        const reports0 = await reportCounts(srv);

        assert.equal(await smsc.receipt(sa.messageId, 'UNDELIV', { err: '001' }), 0);
        const ua = await waitStatus(srv, key, ma.messageId, 'undeliverable');
        assert.match(ua.error, /UNDELIV/);

        assert.equal(await smsc.receipt(sb.messageId, 'REJECTD', { err: '002' }), 0);
        await waitStatus(srv, key, mb.messageId, 'failed');
        assert.equal(await smsc.receipt(sb.messageId, 'REJECTD', { err: '002' }), 0, 'the repeat is acknowledged');
        await sleep(300);
        const after = await srv.accountShow('acme');
        assert.equal(after.ledgerEntries, before.ledgerEntries + 1, 'one refund entry, not two');
        assert.equal(paise(after.balance), paise(before.balance) + 25);
        assert.equal(after.balance, after.ledgerSum);
        const reports1 = await reportCounts(srv);
        assert.deepEqual(
            Object.fromEntries(Object.keys(reports1).map((k) => [k, reports1[k] - reports0[k]])),
            { delivered: 0, undeliverable: 1, failed: 2 },
            '/metrics counts the receipts that matched a message, the repeat included');
        const tx = await srv.request('GET', '/wallet/transactions?limit=10', { key });
        const refunds = tx.json.data.transactions.filter((e) => e.type === 'refund');
        assert.deepEqual(refunds.map((e) => e.messageId), [mb.messageId]);
    });

    it('a 200-character text arrives as concatenated GSM-7 parts that reassemble to it; receipts of all parts → delivered', async () => {
        const to = phone();
        // The € (ESC + 0x65) falls on septets 153-154: part 1 must stop before it.
        const prefix = 'Your acme verification code is {{code}}. ';
        const rendered = prefix.replace('{{code}}', '000000').length;
        const body = `${prefix}${'a'.repeat(152 - rendered)}€${'b'.repeat(47)}`;
        // Its own account: a template may become the account's default.
        const tkey = srv.accounts.tpl.key;
        await srv.cli(['template', 'add', 'tpl', '--name', 'long', '--body', body, '--sender-id', 'ACMEIN', '--dlt-template-id', '1107160000000000001', '--json']);
        const d = await sendOk(srv, tkey, { phoneNumber: to, templateId: 'long', codeLength: 6 });
        await waitSubmits(to, 2);
        const parts = submitsTo(to);
        assert.equal(parts.length, 2, 'two parts');
        const code = codeOf(parts.find((p) => p.udh.seq === 1).message);
        seenCodes.push(code);
        const text = body.replace('{{code}}', code);
        assert.equal([...text].length, 200);
        for (const p of parts) {
            assert.equal(p.dataCoding, 0);
            assert.equal(p.esmClass & 0x40, 0x40, 'UDHI set');
            assert.equal(p.udh.total, 2);
            assert.equal(p.source, 'ACMEIN', 'the template sender id is the source address');
            assert.equal(p.tlvs['5121'] && p.tlvs['5121'].toString(), '1107160000000000001', 'DLT template id in TLV 0x1401');
        }
        assert.equal(parts[0].udh.ref, parts[1].udh.ref, 'one concatenation reference');
        const whole = [...reassemble(parts).values()];
        assert.equal(whole.length, 1);
        assert.ok(whole[0].complete);
        assert.equal(whole[0].text, text, 'the parts reassemble to the text');
        const first = parts.find((p) => p.udh.seq === 1);
        const second = parts.find((p) => p.udh.seq === 2);
        assert.ok(first.message.endsWith('a'), 'the escape pair of € is not split: part 1 ends before it');
        assert.ok(second.message.startsWith('€'));

        const [m] = await messagesOf(srv, tkey, d.requestId);
        const info = await waitStatus(srv, tkey, m.messageId, 'sent');
        assert.equal(info.segments, 2, 'charged and sent as two segments');
        assert.equal(info.providerMessageId, first.messageId, 'the first part names the message');
        assert.equal(await smsc.receipt(second.messageId, 'DELIVRD'), 0);
        await sleep(300);
        assert.equal((await messageInfo(srv, tkey, m.messageId)).status, 'sent', 'one part delivered is not the message');
        assert.equal(await smsc.receipt(first.messageId, 'DELIVRD'), 0);
        await waitStatus(srv, tkey, m.messageId, 'delivered');
    });

    it('Hindi text arrives as UCS-2 (data_coding 8), concatenated, and reads back right', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to, variables: { appName: 'आपका ऐप' } });
        await waitSubmits(to, 2);
        const parts = submitsTo(to);
        for (const p of parts) assert.equal(p.dataCoding, 8, 'UCS-2');
        const whole = [...reassemble(parts).values()][0];
        assert.ok(whole.complete);
        const code = codeOf(whole.text);
        seenCodes.push(code);
        assert.equal(whole.text, `${code} is your आपका ऐप verification code. It expires in 10 minutes. Do not share it.`);
        const v = await srv.verify(key, d.requestId, code);
        assert.equal(v.status, 200, v.text);
    });

    it('the SMSC dropping the connection mid-stream: otpd reconnects and every committed message arrives', async () => {
        const connsBefore = smsc.connections;
        smsc.policy.dropAfter = 3;
        const tos = Array.from({ length: 12 }, () => phone());
        const sent = await Promise.all(tos.map((to) => sendOk(srv, key, { phoneNumber: to })));
        await smsc.waitFor(() => tos.every((to) => submitsTo(to).length >= 1), 'every message after the drop', 30000);
        smsc.policy = {};
        assert.ok(smsc.connections > connsBefore, 'otpd opened a new connection');
        assert.match(srv.log(), /event=smpp_disconnected provider=smsc/);
        await waitReady(srv, 200);
        for (let i = 0; i < tos.length; i++) {
            const code = codeOf(submitsTo(tos[i])[0].message);
            seenCodes.push(code);
            const v = await srv.verify(key, sent[i].requestId, code);
            assert.equal(v.status, 200, `${tos[i]}: ${v.text}`);
        }
    });

    it('ESME_RTHROTTLED slows otpd down and loses nothing', async () => {
        let throttled = 0;
        smsc.throttleTimes = [];
        smsc.policy.throttle = () => throttled++ < 6;
        const tos = Array.from({ length: 8 }, () => phone());
        const t0 = Date.now();
        await Promise.all(tos.map((to) => sendOk(srv, key, { phoneNumber: to })));
        await smsc.waitFor(() => tos.every((to) => submitsTo(to).length >= 1), 'every throttled message', 30000);
        smsc.policy = {};
        assert.ok(throttled >= 6, 'the SMSC throttled');
        const firstThrottle = smsc.throttleTimes[0];
        const accepted = tos.map((to) => submitsTo(to)[0].at).sort((x, y) => x - y);
        const afterThrottle = accepted.filter((t) => t >= firstThrottle);
        assert.ok(afterThrottle.length > 0);
        assert.ok(afterThrottle[0] - firstThrottle >= 250, `otpd paused after ESME_RTHROTTLED (next submit after ${afterThrottle[0] - firstThrottle} ms)`);
        assert.match(srv.log(), /event=smpp_throttled provider=smsc/);
        for (const to of tos) {
            assert.equal(submitsTo(to).length, 1, `${to}: sent once`);
            seenCodes.push(codeOf(submitsTo(to)[0].message));
        }
        assert.ok(Date.now() - t0 < 30000);
    });

    it('wrong credentials: a clear log line naming the error, and /readyz 503', async () => {
        const bad = await startWithConfig(writeConfig(smsc.port, { password: 'wrong' }), { accounts: { other: '10.00' } });
        try {
            await smsc.waitFor(() => smsc.binds.some((b) => !b.ok && b.password === 'wrong'), 'a refused bind');
            await sleep(200);
            const r = await bad.request('GET', '/readyz');
            assert.equal(r.status, 503, r.text);
            assert.equal(r.json.code, 'unavailable');
            assert.match(bad.log(), /event=smpp_bind_failed provider=smsc .*system_id="otpd" status=0x0000000e error=ESME_RINVPASWD/);
            assert.doesNotMatch(bad.log(), /wrong/, 'the password is not logged');
            await bad.stop();
        } finally {
            bad.cleanup('delivery_smpp_badbind');
        }
    });

    it('SIGTERM unbinds from the SMSC and exits 0 with a clean log (no code in it)', async () => {
        const unbinds = smsc.unbinds;
        await srv.stop();
        assert.ok(smsc.unbinds > unbinds, 'unbind sent');
        const runs = new Set(srv.log().match(/\d+/g) || []);
        assert.deepEqual(seenCodes.filter((c) => runs.has(c)), [], 'no sent code in the log');
        assert.match(srv.log(), /event=smpp_unbound provider=smsc/);
    });
});

describe('smpp provider over TLS', () => {
    let certs;
    let smsc;
    let srv;
    let key;
    const submitsTo = (to) => smsc.submits.filter((s) => s.dest === digits(to));

    before(async () => {
        certs = makeCerts();
        smsc = await startSmsc({ systemId: 'otpd', password: 'secret', tls: certs.pem(certs.good) });
        srv = await startWithConfig(writeConfig(smsc.port, { extra: `tls = true\ntls_ca_file = ${certs.ca}` }));
        key = srv.accounts.acme.key;
    });
    after(async () => {
        if (srv) srv.cleanup('delivery_smpp_tls');
        if (smsc) await smsc.close();
        if (certs) certs.remove();
    });

    it('verifies the SMSC against tls_ca_file and binds over TLS; /readyz 200', async () => {
        await waitReady(srv, 200);
        const ok = smsc.binds.filter((b) => b.ok);
        assert.ok(ok.length >= 1, 'bound');
        assert.ok(ok.every((b) => b.tls), 'the bind came over TLS');
        assert.match(srv.log(), /event=smpp_bound provider=smsc host=127\.0\.0\.1 .*tls=TLSv1\.[23]/);
        assert.deepEqual(smsc.tlsErrors, []);
        assert.doesNotMatch(srv.log(), /smpp_tls_unverified/);
    });

    it('a send arrives over TLS with the right text; its receipt maps back; the code verifies', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        await smsc.waitFor(() => submitsTo(to).length >= 1, `a submit_sm to ${to}`);
        const [s] = submitsTo(to);
        assert.ok(s.session.socket.encrypted, 'submitted on a TLS session');
        const code = codeOf(s.message);
        assert.equal(s.message, `${code} is your acme verification code. It expires in 10 minutes. Do not share it.`);
        assert.equal(s.source, 'OTPD');
        const [m] = await messagesOf(srv, key, d.requestId);
        const info = await waitStatus(srv, key, m.messageId, 'sent');
        assert.equal(info.providerMessageId, s.messageId);
        assert.equal(await smsc.receipt(s.messageId, 'DELIVRD'), 0, 'deliver_sm_resp ESME_ROK over TLS');
        await waitStatus(srv, key, m.messageId, 'delivered');
        const v = await srv.verify(key, d.requestId, code);
        assert.equal(v.status, 200, v.text);
    });

    it('SIGTERM unbinds over TLS and exits 0 with a clean log', async () => {
        const unbinds = smsc.unbinds;
        await srv.stop();
        assert.ok(smsc.unbinds > unbinds, 'unbind sent');
        assert.match(srv.log(), /event=smpp_unbound provider=smsc/);
    });
});

describe('smpp provider over TLS: no bind without a good certificate', () => {
    let certs;
    const smscs = {};
    let srv;
    let key;

    before(async () => {
        certs = makeCerts();
        smscs.other_ca = await startSmsc({ tls: certs.pem(certs.otherCa) });
        smscs.wrong_name = await startSmsc({ tls: certs.pem(certs.wrongName) });
        smscs.plain = await startSmsc();
        // One otpd, three providers, each pointed at one of the SMSCs above.
        let ini = `[delivery]\nproviders = other_ca, wrong_name, plain\n`;
        for (const [name, smsc] of Object.entries(smscs)) {
            ini += `
[provider.${name}]
type = smpp
host = 127.0.0.1
port = ${smsc.port}
system_id = otpd
password = secret
tls = true
tls_ca_file = ${certs.ca}
response_timeout = 1000
reconnect_min = 100
reconnect_max = 400
`;
        }
        srv = await startWithConfig(writeIni(ini));
        key = srv.accounts.acme.key;
    });
    after(async () => {
        if (srv) srv.cleanup('delivery_smpp_tls_refused');
        for (const smsc of Object.values(smscs)) await smsc.close();
        if (certs) certs.remove();
    });

    const disconnects = (provider) =>
        srv.log().split('\n').filter((l) => l.includes(`event=smpp_disconnected provider=${provider} `));

    it('a certificate from a CA tls_ca_file does not hold: the handshake fails, logged, and is retried', async () => {
        const smsc = smscs.other_ca;
        await smsc.waitFor(() => smsc.tlsErrors.length >= 3, 'three refused handshakes (otpd retries)');
        const lines = disconnects('other_ca');
        assert.ok(lines.length >= 2, srv.log());
        assert.match(lines[0], /state=handshake reason="TLS handshake failed: certificate verification failed: unable to get local issuer certificate" retry_ms=\d+/);
        assert.equal(smsc.connections, 0, 'no SMPP session');
        assert.deepEqual(smsc.binds, [], 'no bind_transceiver, so no password sent');
    });

    it('a certificate for another name: the handshake fails on the name', async () => {
        const smsc = smscs.wrong_name;
        await smsc.waitFor(() => smsc.tlsErrors.length >= 2, 'two refused handshakes');
        assert.match(disconnects('wrong_name')[0], /state=handshake reason="TLS handshake failed: certificate verification failed: IP address mismatch"/);
        assert.deepEqual(smsc.binds, []);
    });

    it('an SMSC that does not speak TLS: the handshake times out within response_timeout and is retried', async () => {
        const smsc = smscs.plain;
        await smsc.waitFor(() => smsc.tcpConnections >= 2, 'a second connection', 10000);
        const lines = disconnects('plain');
        assert.ok(lines.length >= 1, srv.log());
        assert.match(lines[0], /state=handshake reason="TLS handshake timed out"/);
        assert.deepEqual(smsc.binds, [], 'the SMSC never saw a bind');
    });

    it('/readyz stays 503 and a send is accepted but not delivered', async () => {
        const r = await srv.request('GET', '/readyz');
        assert.equal(r.status, 503, r.text);
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        await sleep(1500);
        const [m] = await messagesOf(srv, key, d.requestId);
        const info = await messageInfo(srv, key, m.messageId);
        assert.ok(['queued', 'sending'].includes(info.status), `status ${info.status}`);
        for (const smsc of Object.values(smscs)) assert.deepEqual(smsc.submits, []);
        assert.equal((await srv.request('GET', '/readyz')).status, 503);
    });

    it('SIGTERM exits 0 with a clean log (no crash, no sanitizer report, no password)', async () => {
        await srv.stop();
        assert.doesNotMatch(srv.log(), /secret/, 'the password is not logged');
        assert.doesNotMatch(srv.log(), /event=smpp_bound/);
    });
});

describe('smpp provider over TLS: settings checked at start-up', () => {
    let dir;
    let certs;
    before(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-smpp-tls-'));
        certs = makeCerts();
    });
    after(() => {
        if (!process.env.OTPD_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
        if (certs) certs.remove();
    });

    /** otpd serve with [provider.smsc] plus `extra` must fail naming the setting. */
    async function refused(extra, want) {
        const port = await freePort();
        const ini = path.join(dir, 'otpd.ini');
        fs.writeFileSync(ini, `listen = 127.0.0.1:${port}\n\n[provider.smsc]\ntype = smpp\nhost = 127.0.0.1\nport = ${await freePort()}\nsystem_id = otpd\npassword = secret\n${extra}\n`);
        const r = await runCli(dir, ['serve', '--config', ini], { timeoutMs: 20000 });
        assert.notEqual(r.status, 0, `otpd serve should fail with ${JSON.stringify(extra)}: ${r.stdout}${r.stderr}`);
        assert.deepEqual(sanitizerReports(r.stderr), [], r.stderr);
        assert.match(r.stderr, want);
        assert.doesNotMatch(r.stderr, /secret/);
        return r;
    }

    it('tls_ca_file missing, not PEM, or without tls; tls and tls_verify not booleans', async () => {
        const missing = path.join(dir, 'missing-ca.pem');
        await refused(`tls = true\ntls_ca_file = ${missing}`,
            /provider\.smsc\.tls_ca_file = ".*missing-ca\.pem" \(from .*\): cannot read it: No such file or directory/);
        const notPem = path.join(dir, 'not-a-ca.pem');
        fs.writeFileSync(notPem, 'this is not a certificate\n');
        await refused(`tls = true\ntls_ca_file = ${notPem}`, /provider\.smsc\.tls_ca_file = ".*not-a-ca\.pem" .*no PEM certificate/);
        // A private key alone is PEM, but no certificate.
        await refused(`tls = true\ntls_ca_file = ${certs.good.key}`, /provider\.smsc\.tls_ca_file = .*no PEM certificate/);
        await refused(`tls_ca_file = ${certs.ca}`, /provider\.smsc\.tls_ca_file \(from .*\): set, but provider\.smsc\.tls is not true/);
        await refused('tls_verify = false', /provider\.smsc\.tls_verify \(from .*\): set, but provider\.smsc\.tls is not true/);
        await refused('tls = maybe', /provider\.smsc\.tls = "maybe" \(from .*\): not a boolean/);
        await refused('tls = true\ntls_verify = sometimes', /provider\.smsc\.tls_verify/);
    });
});

describe('smpp provider over TLS: tls_verify = false', () => {
    let certs;
    let smsc;
    let srv;

    before(async () => {
        certs = makeCerts();
        smsc = await startSmsc({ tls: certs.pem(certs.otherCa) });
        srv = await startWithConfig(writeConfig(smsc.port, { extra: 'tls = true\ntls_verify = false' }));
    });
    after(async () => {
        if (srv) srv.cleanup('delivery_smpp_tls_unverified');
        if (smsc) await smsc.close();
        if (certs) certs.remove();
    });

    it('binds to an SMSC whose certificate would not verify, with a warning at start', async () => {
        await waitReady(srv, 200);
        assert.ok(smsc.binds.some((b) => b.ok && b.tls));
        assert.match(srv.log(), /level=warn event=smpp_tls_unverified provider=smsc host=127\.0\.0\.1/);
        await srv.stop();
    });
});
