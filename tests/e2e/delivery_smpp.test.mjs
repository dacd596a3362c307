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
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { phones, sleep, sendOk, paise } from './lib/server.mjs';
import { startSmsc, reassemble } from './peers/smsc.mjs';
import { writeIni, startWithConfig } from './peers/otpd.mjs';

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
