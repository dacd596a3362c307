// API keys (SPEC 1.1): missing, malformed, unknown-but-well-formed and revoked keys
// get 401 unauthorized and cost nothing; X-API-Key and Authorization: Bearer both
// work; a key revoked with the CLI while the server runs stops working at once;
// keys map to their own account; test keys do not charge the wallet.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, phones, assertError, assertData, ledgerView, cli, sendOk, sleep } from './lib/server.mjs';

const phone = phones(13);
const ROUTES = [
    ['POST', '/otp/send', { phoneNumber: '+919813999999' }],
    ['POST', '/otp/verify', { requestId: 'req_0000000000000000000000', otpCode: '123456' }],
    ['GET', '/wallet', undefined],
];

describe('API key authentication', () => {
    let srv;
    let acme;
    let foreignKey;
    let before0;
    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00', beta: '50.00' }, testKeys: true });
        acme = srv.accounts.acme;
        // A well-formed key (right prefix, length and checksum) from another store.
        const other = fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-foreign-'));
        try {
            await cli(other, ['account', 'create', 'x', '--json']);
            foreignKey = (await cli(other, ['key', 'create', 'x', '--json'])).key;
        } finally {
            fs.rmSync(other, { recursive: true, force: true });
        }
        before0 = ledgerView(await srv.accountShow('acme'));
    });
    after(() => srv && srv.cleanup('auth'));

    const tryAll = async (headers, what) => {
        for (const [method, p, body] of ROUTES) {
            const r = await srv.request(method, p, { headers, body });
            assertError(r, 401, 'unauthorized', `${what}: ${method} ${p}`);
        }
    };

    it('no key: 401 unauthorized on /otp/send, /otp/verify and /wallet', async () => {
        await tryAll({}, 'no key');
    });

    it('malformed keys: 401 unauthorized', async () => {
        const k = acme.key;
        for (const bad of [
            'hello',
            'otpd_live_',
            'otpd_live_short',
            'otpd_prod_' + k.slice(10),
            k.slice(0, -1), // checksum cut short
            k + 'A',
            k.toUpperCase(),
            k.slice(0, 12) + (k[12] === 'A' ? 'B' : 'A') + k.slice(13), // one-character typo
        ]) {
            await tryAll({ 'X-API-Key': bad }, `X-API-Key ${bad}`);
        }
        await tryAll({ Authorization: `Basic ${Buffer.from(`${k}:`).toString('base64')}` }, 'Basic auth');
        await tryAll({ Authorization: 'Bearer' }, 'empty Bearer');
        await tryAll({ Authorization: k }, 'Authorization without Bearer');
    });

    it('a well-formed key from another store: 401 unauthorized', async () => {
        assert.match(foreignKey, /^otpd_live_[0-9A-Za-z]{32,}/);
        await tryAll({ 'X-API-Key': foreignKey }, 'unknown key');
        await tryAll({ Authorization: `Bearer ${foreignKey}` }, 'unknown Bearer key');
    });

    it('refused keys stored and charged nothing', async () => {
        assert.deepEqual(ledgerView(await srv.accountShow('acme')), before0);
    });

    it('X-API-Key and Authorization: Bearer both authenticate, each to its own account', async () => {
        const want = { balance: '100.00', currency: 'INR', pricePerSegment: '0.25', lowBalanceThreshold: '100.00' };
        assert.deepEqual(assertData(await srv.request('GET', '/wallet', { headers: { 'X-API-Key': acme.key } }), 200), want);
        assert.deepEqual(assertData(await srv.request('GET', '/wallet', { headers: { Authorization: `Bearer ${acme.key}` } }), 200), want);
        const beta = assertData(await srv.request('GET', '/wallet', { headers: { Authorization: `Bearer ${srv.accounts.beta.key}` } }), 200);
        assert.equal(beta.balance, '50.00');

        const to = phone();
        const r = await srv.request('POST', '/otp/send', { headers: { Authorization: `Bearer ${acme.key}` }, body: { phoneNumber: to } });
        assertData(r, 201, ['requestId', 'expiresAt', 'attemptsLeft'], 'send with Bearer');
        const code = await srv.codeFor(to);
        const v = await srv.request('POST', '/otp/verify', {
            headers: { Authorization: `Bearer ${acme.key}` },
            body: { requestId: r.json.data.requestId, otpCode: code },
        });
        assert.deepEqual(v.json, { data: { verified: true } }, v.text);
    });

    it('a key revoked with the CLI while the server runs: 401 from then on; other keys unaffected', async () => {
        const k2 = await srv.createKey('acme', { name: 'rotate-me' });
        assert.equal((await srv.request('GET', '/wallet', { key: k2.key })).status, 200, 'new key works at once');
        const to = phone();
        const d = await sendOk(srv, k2.key, { phoneNumber: to });

        await srv.cli(['key', 'revoke', k2.id]);
        await tryAll({ 'X-API-Key': k2.key }, 'revoked key');
        await tryAll({ Authorization: `Bearer ${k2.key}` }, 'revoked Bearer key');

        // The account's other key still works, and the request made with the revoked key is the account's.
        assert.equal((await srv.request('GET', '/wallet', { key: acme.key })).status, 200);
        const v = await srv.verify(acme.key, d.requestId, await srv.codeFor(to));
        assert.deepEqual(v.json, { data: { verified: true } }, v.text);
    });

    it('a test key runs the flow without charging the wallet', async () => {
        const w0 = assertData(await srv.request('GET', '/wallet', { key: acme.key }), 200);
        const to = phone();
        const r = await srv.send(acme.testKey, { phoneNumber: to });
        assertData(r, 201, ['requestId', 'expiresAt', 'attemptsLeft'], 'send with test key');
        const w1 = assertData(await srv.request('GET', '/wallet', { key: acme.testKey }), 200);
        assert.equal(w1.balance, w0.balance, 'test keys do not charge');
        await sleep(300);
        assert.equal(srv.readSms().filter((m) => m.to === to).length, 0, 'a test key sent a real SMS');
    });

    it('operational routes need no key: GET /healthz', async () => {
        const r = await srv.request('GET', '/healthz');
        assert.deepEqual(assertData(r, 200), { status: 'ok' });
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
