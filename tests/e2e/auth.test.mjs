// API keys (SPEC 1.1): missing, malformed, unknown-but-well-formed and revoked keys
// get 401 unauthorized and cost nothing; X-API-Key and Authorization: Bearer both
// work; a key revoked with the CLI while the server runs stops working within
// limits.cache_ms (1 s), at once with limits.cache_ms = 0;
// keys map to their own account; test keys do not charge the wallet.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
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
        await sleep(1100); // the server keeps a key's lookup for limits.cache_ms (1 s)
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

    // The server keeps a successful key lookup for limits.cache_ms (default 1 s) per
    // HTTP thread (docs/security.md): a revoked key may still work for that long,
    // never longer.
    it('a key revoked with the CLI is refused by every request made limits.cache_ms (1 s) after the revocation began', async () => {
        const k = await srv.createKey('acme', { name: 'cached' });
        const fresh = new http.Agent({ keepAlive: false }); // new connections: both HTTP threads
        for (let i = 0; i < 6; i++) assert.equal((await srv.request('GET', '/wallet', { key: k.key, agent: fresh })).status, 200);
        const t0 = Date.now(); // every cached copy of the key was read before this
        await srv.cli(['key', 'revoke', k.id]);
        // Requests until 5 were made past the period (before it, 200 and 401 are both right).
        const after = [];
        while (after.length < 5) {
            const started = Date.now();
            const r = await srv.request('GET', '/wallet', { key: k.key, agent: fresh });
            assert.ok([200, 401].includes(r.status), `${r.status} ${r.text}`);
            if (started > t0 + 1000) after.push(r);
            await sleep(20);
        }
        for (const r of after) assertError(r, 401, 'unauthorized', 'revoked key, past limits.cache_ms');
        await tryAll({ 'X-API-Key': k.key }, 'revoked key, past limits.cache_ms');
        await tryAll({ Authorization: `Bearer ${k.key}` }, 'revoked Bearer key, past limits.cache_ms');
    });

    it('with limits.cache_ms = 0 nothing is cached: a key revoked with the CLI is refused at once', async () => {
        const s0 = await startServer({ env: { OTPD_LIMITS_CACHE_MS: '0' } });
        try {
            const k = await s0.createKey('acme', { name: 'uncached' });
            for (let i = 0; i < 4; i++) assert.equal((await s0.request('GET', '/wallet', { key: k.key })).status, 200);
            await s0.cli(['key', 'revoke', k.id]);
            for (let i = 0; i < 4; i++) assertError(await s0.request('GET', '/wallet', { key: k.key }), 401, 'unauthorized', 'revoked, no cache');
            assert.equal((await s0.request('GET', '/wallet', { key: s0.accounts.acme.key })).status, 200);
            await s0.stop();
        } finally {
            await s0.cleanup('auth-nocache');
        }
    });

    it('every request writes one log line of the documented shape, with the key\'s account', async () => {
        const ok = 'auth-log-shape-ok';
        const bad = 'auth-log-shape-401';
        assert.equal((await srv.request('GET', '/wallet', { key: acme.key, headers: { 'X-Request-Id': ok } })).status, 200);
        assert.equal((await srv.request('GET', '/wallet', { headers: { 'X-Request-Id': bad } })).status, 401);
        await sleep(200); // the line may be written just after the response
        const lines = srv.log().split('\n');
        const TIME = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';
        for (const [trace, status, account] of [[ok, 200, acme.id], [bad, 401, '-']]) {
            const mine = lines.filter((l) => l.includes(`traceId=${trace} `));
            assert.equal(mine.length, 1, JSON.stringify(mine));
            const re = new RegExp(
                `^time=(${TIME}) level=info event=request traceId=${trace} method=GET route=/wallet status=${status} durationMs=\\d+\\.\\d\\d account=${account} phone=-$`,
            );
            const m = mine[0].match(re);
            assert.ok(m, mine[0]);
            assert.ok(Math.abs(Date.parse(m[1]) - (Date.now() + srv.clockOffsetMs)) < 10000, `time= of ${mine[0]}`);
        }
    });

    it('lastUsedAt: written by the first request, then at most once a minute, also while the key is cached', async () => {
        const k = await srv.createKey('acme', { name: 'touch-me' });
        const lastUsed = async () => (await srv.cli(['key', 'list', 'acme', '--json'])).find((x) => x.id === k.id).lastUsedAt;
        const changed = async (from) => {
            for (let i = 0; i < 100; i++) {
                const v = await lastUsed();
                if (v !== from) return v;
                await sleep(50);
            }
            assert.fail(`lastUsedAt stayed ${from}`);
        };
        assert.equal(await lastUsed(), null);
        const t0 = Date.now() + srv.clockOffsetMs;
        assert.equal((await srv.request('GET', '/wallet', { key: k.key })).status, 200);
        const first = await changed(null);
        assert.ok(Date.parse(first) >= t0 - 1 && Date.parse(first) <= Date.now() + srv.clockOffsetMs, `${first} vs ${t0}`);

        for (let i = 0; i < 6; i++) assert.equal((await srv.request('GET', '/wallet', { key: k.key })).status, 200);
        await sleep(300);
        assert.equal(await lastUsed(), first, 'touched again within the minute');

        await srv.advanceClock(61000);
        const t1 = Date.now() + srv.clockOffsetMs;
        assert.equal((await srv.request('GET', '/wallet', { key: k.key })).status, 200);
        const second = await changed(first);
        assert.ok(Date.parse(second) >= t1 - 1, `${second} vs ${t1}`);
        assert.ok(Date.parse(second) - Date.parse(first) >= 61000);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
