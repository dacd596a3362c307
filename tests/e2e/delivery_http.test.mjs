// HTTP delivery (SPEC 5, issue 4) against local gateway processes
// (peers/http_gateway.mjs, node:http) that the test starts: otpd runs with an INI
// file naming two http providers in priority order. Proves: 2xx accepted with the
// gateway's id (also from a nested id_field), the JSON body and the configured
// headers, kept-alive connections (far fewer than messages); 4xx permanent
// (failed, refunded, never offered to the next gateway); 5xx and timeouts
// temporary (the next gateway takes the message); the circuit breaker stops
// calling a dead gateway and probes it again after its cool-down; /readyz 503
// when no provider is usable; delivery reports on POST /providers/{name}/dlr —
// wrong or missing secret 401 and no change, unknown provider or id 404, a
// failure reported twice refunded once; a misconfigured provider stops start-up
// with a message naming the setting.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { phones, sleep, sendOk, paise, runCli, freePort } from './lib/server.mjs';
import { startGateway } from './peers/http_gateway.mjs';
import { writeIni, startWithConfig } from './peers/otpd.mjs';

const phone = phones(42);
const PRIMARY_SECRET = 'primary-dlr-secret-0123456789';
const BACKUP_SECRET = 'backup-dlr-secret-0123456789';

function twoGatewayIni(a, b) {
    return writeIni(`[delivery]
providers = primary, backup

[provider.primary]
type = http
url = ${a.url}
timeout = 700
headers = "Authorization: Bearer gw-token-primary; X-Tenant: otpd-e2e"
dlr_secret = ${PRIMARY_SECRET}
breaker_threshold = 3
breaker_cooldown = 1500

[provider.backup]
type = http
url = ${b.url}
timeout = 700
id_field = data.messageId
dlr_secret = ${BACKUP_SECRET}
`);
}

async function messageOf(srv, key, requestId) {
    const r = await srv.request('GET', `/otp/${requestId}`, { key });
    assert.equal(r.status, 200, r.text);
    return r.json.data.messages[0].messageId;
}

async function waitStatus(srv, key, messageId, want, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const r = await srv.request('GET', `/messages/${messageId}`, { key });
        assert.equal(r.status, 200, r.text);
        if (r.json.data.status === want) return r.json.data;
        if (Date.now() > deadline) assert.fail(`message ${messageId} is ${r.json.data.status}, want ${want}: ${r.text}`);
        await sleep(30);
    }
}

function dlr(srv, provider, body, secret, { bearer = false } = {}) {
    const headers = {};
    if (secret !== undefined) headers[bearer ? 'Authorization' : 'X-DLR-Secret'] = bearer ? `Bearer ${secret}` : secret;
    return srv.request('POST', `/providers/${provider}/dlr`, { body, headers });
}

const codeOf = (text) => text.match(/\d{4,10}/)[0];

describe('http providers against local gateways', () => {
    let a;
    let b;
    let srv;
    let key;
    const seenCodes = [];
    const sendAndWait = async (to, want = 'sent') => {
        const d = await sendOk(srv, key, { phoneNumber: to });
        const id = await messageOf(srv, key, d.requestId);
        const m = await waitStatus(srv, key, id, want);
        for (const g of [a, b]) for (const r of g.to(to)) seenCodes.push(codeOf(r.body.text));
        return { ...d, messageId: id, message: m };
    };

    before(async () => {
        a = await startGateway({ name: 'a' });
        b = await startGateway({ name: 'b' });
        b.behave = () => ({ json: { data: { messageId: `b-${b.nextId++}` } } });
        srv = await startWithConfig(twoGatewayIni(a, b), { accounts: { acme: '100.00' } });
        key = srv.accounts.acme.key;
    });
    after(async () => {
        if (srv) srv.cleanup('delivery_http');
        if (a) await a.close();
        if (b) await b.close();
    });

    it('2xx: the JSON body and configured headers reach the first gateway; the message is sent with its id', async () => {
        const to = phone();
        const { messageId, message } = await sendAndWait(to);
        const [req] = a.to(to);
        assert.ok(req, 'the primary gateway got the message');
        assert.deepEqual(Object.keys(req.body).sort(), ['messageId', 'text', 'to']);
        assert.equal(req.body.messageId, messageId);
        assert.equal(req.body.to, to);
        assert.match(req.body.text, /^\d{6} is your acme verification code\./);
        assert.equal(req.headers.authorization, 'Bearer gw-token-primary');
        assert.equal(req.headers['x-tenant'], 'otpd-e2e');
        assert.match(req.headers['content-type'], /^application\/json/);
        assert.equal(req.headers['idempotency-key'], messageId);
        assert.equal(message.provider, 'primary');
        assert.equal(message.providerMessageId, req.id);
        assert.equal(b.to(to).length, 0, 'the second gateway was not needed');
    });

    it('a burst goes out concurrently over kept-alive connections, not one per message', async () => {
        const before = a.connections;
        const tos = Array.from({ length: 30 }, () => phone());
        await Promise.all(tos.map((to) => sendOk(srv, key, { phoneNumber: to })));
        await a.waitFor(() => tos.every((to) => a.to(to).length === 1), 'the burst');
        for (const to of tos) seenCodes.push(codeOf(a.to(to)[0].body.text));
        const opened = a.connections - before;
        assert.ok(opened <= 8, `at most \`connections\` (8) connections, opened ${opened} for 30 messages`);
        const sockets = new Set(tos.map((to) => a.to(to)[0].socket));
        assert.ok(sockets.size < tos.length, 'connections are reused');
    });

    it('4xx: permanent — failed, refunded, and not offered to the next gateway', async () => {
        const to = phone();
        a.behave = (body) => (body && body.to === to ? { status: 422 } : null);
        const before = await srv.accountShow('acme');
        const { messageId, message } = await sendAndWait(to, 'failed');
        a.behave = null;
        assert.match(message.error, /HTTP 422/);
        assert.equal(message.provider, 'primary');
        assert.equal(b.to(to).length, 0, 'a permanent refusal does not fail over');
        await sleep(100);
        const after = await srv.accountShow('acme');
        assert.equal(paise(after.balance), paise(before.balance), 'charged then refunded');
        assert.equal(after.ledgerEntries, before.ledgerEntries + 2, 'one debit, one refund');
        const tx = await srv.request('GET', '/wallet/transactions?limit=5', { key });
        const refunds = tx.json.data.transactions.filter((e) => e.type === 'refund' && e.messageId === messageId);
        assert.equal(refunds.length, 1);
    });

    it('5xx: temporary — the second gateway takes the message (nested id_field)', async () => {
        const to = phone();
        a.behave = (body) => (body && body.to === to ? { status: 503 } : null);
        const { message } = await sendAndWait(to);
        a.behave = null;
        assert.equal(a.to(to).length, 1, 'tried on the primary first');
        assert.equal(b.to(to).length, 1, 'then on the backup');
        assert.equal(message.provider, 'backup');
        assert.match(message.providerMessageId, /^b-\d+$/, 'id read from data.messageId');
        await sendAndWait(phone()); // a success on the primary: its breaker starts from zero again
    });

    it('timeout: temporary — after `timeout` ms the second gateway takes the message', async () => {
        const to = phone();
        a.behave = (body) => (body && body.to === to ? { hang: true } : null);
        const t0 = Date.now();
        const { message } = await sendAndWait(to);
        a.behave = null;
        assert.ok(Date.now() - t0 >= 650, 'waited for the primary\'s timeout');
        assert.equal(message.provider, 'backup');
        assert.equal(a.to(to).length, 1);
        await sendAndWait(phone());
    });

    it('circuit breaker: a dead gateway stops being called, and is probed and used again after it recovers', async () => {
        a.behave = () => ({ status: 500 });
        const calls = () => a.requests.length;
        const c0 = calls();
        for (let i = 0; i < 3; i++) {
            const { message } = await sendAndWait(phone());
            assert.equal(message.provider, 'backup');
        }
        assert.equal(calls() - c0, 3, 'three failing batches');
        assert.match(srv.log(), /event=provider_paused provider=primary failed_batches=3 pause_ms=1500/);
        const c1 = calls();
        for (let i = 0; i < 3; i++) {
            const { message } = await sendAndWait(phone());
            assert.equal(message.provider, 'backup');
        }
        assert.equal(calls(), c1, 'the open breaker skips the primary');
        assert.equal((await srv.request('GET', '/readyz')).status, 200, 'the backup is still usable');

        a.behave = null; // recovered
        await sleep(1600);
        const { message } = await sendAndWait(phone());
        assert.equal(message.provider, 'primary', 'the probe after the cool-down goes to the primary');
        assert.match(srv.log(), /event=provider_resumed provider=primary/);
        assert.equal((await sendAndWait(phone())).message.provider, 'primary');
    });

    it('DLR: a wrong or missing secret is 401 and changes nothing; the right one (or Bearer) records it', async () => {
        const { messageId } = await sendAndWait(phone());
        const gwId = (await waitStatus(srv, key, messageId, 'sent')).providerMessageId;
        for (const secret of [undefined, '', 'wrong', BACKUP_SECRET, `${PRIMARY_SECRET}x`, PRIMARY_SECRET.slice(0, -1)]) {
            const r = await dlr(srv, 'primary', { id: gwId, status: 'delivered' }, secret);
            assert.equal(r.status, 401, `secret ${JSON.stringify(secret)}: ${r.text}`);
            assert.equal(r.json.code, 'unauthorized');
        }
        const wrongBearer = await dlr(srv, 'primary', { id: gwId, status: 'delivered' }, 'nope', { bearer: true });
        assert.equal(wrongBearer.status, 401);
        assert.equal((await waitStatus(srv, key, messageId, 'sent')).status, 'sent', 'no change');

        const ok = await dlr(srv, 'primary', { id: gwId, status: 'delivered' }, PRIMARY_SECRET, { bearer: true });
        assert.equal(ok.status, 200, ok.text);
        assert.deepEqual(ok.json.data, { recorded: true, messageId, status: 'delivered' });
        await waitStatus(srv, key, messageId, 'delivered');
        const late = await dlr(srv, 'primary', { id: gwId, status: 'failed', error: 'late' }, PRIMARY_SECRET);
        assert.equal(late.status, 200, 'an older report is accepted and ignored');
        assert.equal((await waitStatus(srv, key, messageId, 'delivered')).status, 'delivered');
    });

    it('DLR: unknown provider 404 not_found, unknown id 404 message_not_found, bad body 400, intermediate state ignored', async () => {
        const r1 = await dlr(srv, 'nope', { id: 'x', status: 'delivered' }, PRIMARY_SECRET);
        assert.equal(r1.status, 404);
        assert.equal(r1.json.code, 'not_found');
        const r2 = await dlr(srv, 'primary', { id: 'a-does-not-exist', status: 'delivered' }, PRIMARY_SECRET);
        assert.equal(r2.status, 404);
        assert.equal(r2.json.code, 'message_not_found');
        const { messageId } = await sendAndWait(phone());
        const gwId = (await waitStatus(srv, key, messageId, 'sent')).providerMessageId;
        const r3 = await dlr(srv, 'backup', { id: gwId, status: 'delivered' }, BACKUP_SECRET);
        assert.equal(r3.status, 404, 'ids are per provider');
        assert.equal(r3.json.code, 'message_not_found');
        const r4 = await dlr(srv, 'primary', { status: 'delivered' }, PRIMARY_SECRET);
        assert.equal(r4.status, 400);
        assert.equal(r4.json.code, 'invalid_request');
        assert.equal(r4.json.details.field, 'id');
        const r5 = await dlr(srv, 'primary', { id: gwId, status: 'teleported' }, PRIMARY_SECRET);
        assert.equal(r5.status, 400);
        assert.equal(r5.json.details.field, 'status');
        const r6 = await dlr(srv, 'primary', { id: gwId, status: 'sent' }, PRIMARY_SECRET);
        assert.equal(r6.status, 200);
        assert.deepEqual(r6.json.data, { recorded: false });
        const r7 = await srv.request('POST', '/providers/primary/dlr', { rawBody: 'not json', headers: { 'X-DLR-Secret': PRIMARY_SECRET } });
        assert.equal(r7.status, 400);
        assert.equal(r7.json.code, 'invalid_json');
        assert.equal((await waitStatus(srv, key, messageId, 'sent')).status, 'sent');
    });

    it('a failure reported twice (DLR "failed") is refunded exactly once', async () => {
        const { messageId } = await sendAndWait(phone());
        const gwId = (await waitStatus(srv, key, messageId, 'sent')).providerMessageId;
        const before = await srv.accountShow('acme');
        for (let i = 0; i < 2; i++) {
            const r = await dlr(srv, 'primary', { id: gwId, status: 'failed', error: 'REJECTED by operator' }, PRIMARY_SECRET);
            assert.equal(r.status, 200, r.text);
        }
        const m = await waitStatus(srv, key, messageId, 'failed');
        assert.match(m.error, /REJECTED by operator/);
        const after = await srv.accountShow('acme');
        assert.equal(after.ledgerEntries, before.ledgerEntries + 1, 'one refund entry');
        assert.equal(paise(after.balance), paise(before.balance) + 25);
        assert.equal(after.balance, after.ledgerSum);
    });

    it('SIGTERM: exit 0, clean log without any code or DLR secret', async () => {
        await srv.stop();
        const log = srv.log();
        const runs = new Set(log.match(/\d+/g) || []);
        assert.deepEqual(seenCodes.filter((c) => runs.has(c)), []);
        assert.ok(!log.includes(PRIMARY_SECRET) && !log.includes('gw-token-primary'));
    });
});

describe('readiness with one http provider', () => {
    it('/readyz turns 503 when the only gateway is dead (breaker open), and 200 again after it recovers', async () => {
        const gw = await startGateway({ name: 'c' });
        await gw.down();
        const ini = writeIni(`[provider.only]
type = http
url = ${gw.url}
timeout = 500
breaker_threshold = 1
breaker_cooldown = 1500
`);
        const srv = await startWithConfig(ini, { accounts: { acme: '10.00' } });
        try {
            const key = srv.accounts.acme.key;
            assert.equal((await srv.request('GET', '/readyz')).status, 200);
            const to = phone();
            const d = await sendOk(srv, key, { phoneNumber: to });
            const deadline = Date.now() + 10000;
            let r;
            while ((r = await srv.request('GET', '/readyz')).status !== 503 && Date.now() < deadline) await sleep(30);
            assert.equal(r.status, 503, r.text);
            assert.equal(r.json.code, 'unavailable');
            await gw.up();
            const id = await messageOf(srv, key, d.requestId);
            const m = await waitStatus(srv, key, id, 'sent', 20000);
            assert.equal(m.provider, 'only');
            assert.equal((await srv.request('GET', '/readyz')).status, 200);
            await srv.stop();
        } finally {
            srv.cleanup('delivery_http_readyz');
            await gw.close();
        }
    });
});

describe('provider configuration errors stop start-up naming the setting', () => {
    const cases = [
        ['[provider.gw]\ntype = http\n', /provider\.gw\.url/],
        ['[provider.gw]\ntype = http\nurl = ftp://example.com/\n', /provider\.gw\.url = "ftp:\/\/example\.com\/".*http:\/\/ or https:\/\//],
        ['[provider.gw]\ntype = http\nurl = http://x/\ntimeout = 5\n', /provider\.gw\.timeout/],
        ['[provider.gw]\ntype = http\nurl = http://x/\ndlr_secret = short\n', /provider\.gw\.dlr_secret.*16/],
        ['[provider.gw]\ntype = http\nurl = http://x/\nheaders = "no colon here"\n', /provider\.gw\.headers/],
        ['[provider.sms]\ntype = smpp\nhost = 127.0.0.1\n', /provider\.sms\.system_id/],
        ['[provider.sms]\ntype = smpp\nhost = 127.0.0.1\nsystem_id = x\nwindow = 0\n', /provider\.sms\.window/],
        ['[provider.sms]\ntype = smpp\nhost = 127.0.0.1\nsystem_id = x\npassword = longerthan8\n', /provider\.sms\.password/],
        ['[provider.sms]\ntype = smpp\nhost = 127.0.0.1\nsystem_id = x\ntls = true\ntls_ca_file = /nonexistent/ca.pem\n', /provider\.sms\.tls_ca_file = "\/nonexistent\/ca\.pem".*cannot read it/],
        ['[provider.sms]\ntype = smpp\nhost = h\nsystem_id = x\ndata_coding = latin9\n', /provider\.sms\.data_coding/],
        ['[provider.x]\ntype = carrier-pigeon\n', /provider\.x\.type = "carrier-pigeon": unknown provider type \(file, http, smpp\)/],
        ['[provider.gw]\ntype = http\nurl = http://x/\nbreaker_threshold = 0\n', /provider\.gw\.breaker_threshold/],
        ['[delivery]\nproviders = ghost\n', /provider\.ghost\.type: not set \(is there a \[provider\.ghost\] section\?\)/],
    ];
    for (const [ini, re] of cases) {
        it(`${ini.split('\n').slice(1, -1).join('; ')}`, async () => {
            const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-badprov-'));
            try {
                const file = path.join(dir, 'otpd.ini');
                fs.writeFileSync(file, ini);
                const port = await freePort();
                const r = await runCli(dir, ['serve', '--config', file, '--listen', `127.0.0.1:${port}`], { timeoutMs: 20000 });
                assert.notEqual(r.status, 0, `otpd serve started with a bad provider: ${r.stderr}`);
                assert.match(r.stderr, re);
                assert.ok(!r.stderr.includes('longerthan8'), 'a password is never echoed');
            } finally {
                fs.rmSync(dir, { recursive: true, force: true });
            }
        });
    }
});
