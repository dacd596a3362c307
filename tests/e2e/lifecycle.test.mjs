// The rest of an OTP's life over real HTTP (SPEC 1.5, 1.6; issue 3): resend with
// both strategies, its cooldown and limit (with Retry-After), GET /otp/{id} with
// every status value reachable, cancel, and GET /messages/{id} with its delivery
// history. The 30 s cooldown is passed with the test build's clock hook.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    startServer,
    phones,
    sendOk,
    assertData,
    assertError,
    paise,
    codeFromText,
    REQUEST_ID_RE,
    ISO_MS_RE,
} from './lib/server.mjs';

const phone = phones(31);
const wrong = (code) => code.slice(0, -1) + String((Number(code.at(-1)) + 1) % 10);
const STATUS_KEYS = [
    'requestId',
    'phoneNumber',
    'status',
    'channel',
    'attemptsLeft',
    'maxAttempts',
    'createdAt',
    'expiresAt',
    'verifiedAt',
    'resendCount',
    'messages',
];
const MESSAGE_KEYS = [
    'messageId',
    'requestId',
    'to',
    'status',
    'provider',
    'providerMessageId',
    'attempts',
    'segments',
    'createdAt',
    'updatedAt',
    'error',
    'events',
];
const SEND_KEYS = ['requestId', 'expiresAt', 'attemptsLeft'];
const COOLDOWN_MS = 31000;

describe('resend, status, cancel, messages', () => {
    let srv;
    let key;
    const resend = (requestId, extra = {}, k = key) =>
        srv.request('POST', '/otp/resend', { key: k, body: { requestId, ...extra } });
    const status = (id, k = key) => srv.request('GET', `/otp/${id}`, { key: k });
    const statusOk = async (id, k = key) => {
        const d = assertData(await status(id, k), 200, STATUS_KEYS, `GET /otp/${id}`);
        assert.match(d.requestId, REQUEST_ID_RE);
        for (const f of ['createdAt', 'expiresAt']) assert.match(d[f], ISO_MS_RE, f);
        for (const m of d.messages) {
            assert.deepEqual(Object.keys(m).sort(), ['deliveryStatus', 'error', 'messageId', 'provider', 'updatedAt']);
            assert.match(m.messageId, /^msg_[0-9A-Za-z]{22}$/);
            assert.match(m.updatedAt, ISO_MS_RE);
        }
        return d;
    };
    const balance = async (name = 'acme') => paise((await srv.accountShow(name)).balance);
    const sentCount = (to) => srv.readSms().filter((m) => m.to === to).length;

    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00', other: '100.00', reuser: '100.00', switcher: '100.00' } });
        key = srv.accounts.acme.key;
        await srv.cli(['account', 'set', 'reuser', '--resend-strategy', 'reuse']);
    });
    after(() => srv && srv.cleanup('lifecycle'));

    it('rotate: the resend answers 200 with exactly the send fields; the old code fails, the new one verifies; charged again', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to, codeLength: 10, maxAttempts: 3 });
        const first = await srv.codeFor(to);
        // One wrong guess so that the reset of attemptsLeft shows.
        assert.equal(assertError(await srv.verify(key, d.requestId, wrong(first)), 400, 'otp_incorrect').details.attemptsLeft, 2);
        const b0 = await balance();

        await srv.advanceClock(COOLDOWN_MS);
        const t0 = Date.now() + srv.clockOffsetMs;
        const r = assertData(await resend(d.requestId), 200, SEND_KEYS, 'resend');
        assert.equal(r.requestId, d.requestId);
        assert.equal(r.attemptsLeft, 3, 'attempts reset to maxAttempts');
        const ttl = Date.parse(r.expiresAt) - t0;
        assert.ok(Math.abs(ttl - 600000) < 10000, `expiry extended by expiresIn from now: ${ttl} ms`);
        assert.ok(Date.parse(r.expiresAt) > Date.parse(d.expiresAt));

        const sms = await srv.waitForSms(to, { count: 2 });
        const second = codeFromText(sms.text);
        assert.notEqual(second, first, 'rotate draws a new code');
        assert.match(sms.text, /^\d{10} is your acme verification code\. It expires in 10 minutes\. Do not share it\.$/);
        assert.equal(b0 - (await balance()), 25, 'a resend is charged like a send');

        const s = await statusOk(d.requestId);
        assert.equal(s.resendCount, 1);
        assert.equal(s.attemptsLeft, 3);
        assert.equal(s.expiresAt, r.expiresAt);
        assert.equal(s.messages.length, 2);

        assert.equal(assertError(await srv.verify(key, d.requestId, first), 400, 'otp_incorrect', 'old code').details.attemptsLeft, 2);
        assert.deepEqual((await srv.verify(key, d.requestId, second)).json, { data: { verified: true } });
    });

    it('within 30 s of the previous SMS: 429 resend_too_soon with Retry-After and details.retryAfter; nothing charged or sent', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        await srv.waitForSms(to);
        const b0 = await balance();
        const e = assertError(await resend(d.requestId), 429, 'resend_too_soon', 'immediate resend');
        assert.ok(Number.isInteger(e.details.retryAfter), JSON.stringify(e));
        assert.ok(e.details.retryAfter >= 1 && e.details.retryAfter <= 30, JSON.stringify(e));
        // (The 429 response object is the raw one here.)
        const raw = await resend(d.requestId);
        assert.equal(raw.status, 429);
        assert.equal(raw.headers['retry-after'], String(raw.json.details.retryAfter));

        await srv.advanceClock(20000);
        const e2 = assertError(await resend(d.requestId), 429, 'resend_too_soon', 'after 20 s');
        assert.ok(e2.details.retryAfter <= 10, `retryAfter counts down: ${e2.details.retryAfter}`);
        assert.equal(await balance(), b0, 'a refused resend charges nothing');
        assert.equal(sentCount(to), 1, 'a refused resend sends nothing');

        await srv.advanceClock(11000);
        assertData(await resend(d.requestId), 200, SEND_KEYS, 'after 31 s');
        // The cooldown starts again from the resend.
        assertError(await resend(d.requestId), 429, 'resend_too_soon', 'right after the resend');
    });

    it('the 4th resend: 429 resend_limit_reached with Retry-After; resendCount stays 3', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to, expiresIn: 3600 });
        await srv.waitForSms(to);
        for (let i = 1; i <= 3; i++) {
            await srv.advanceClock(COOLDOWN_MS);
            assertData(await resend(d.requestId), 200, SEND_KEYS, `resend ${i}`);
            // (A resend drops an earlier message still queued: wait for each to go out.)
            await srv.waitForSms(to, { count: i + 1 });
        }
        await srv.advanceClock(COOLDOWN_MS);
        const b0 = await balance();
        const raw = await resend(d.requestId);
        const e = assertError(raw, 429, 'resend_limit_reached', '4th resend');
        assert.ok(Number.isInteger(e.details.retryAfter) && e.details.retryAfter > 0, JSON.stringify(e));
        assert.ok(e.details.retryAfter <= 3600, 'retryAfter is the time until the request expires');
        assert.equal(raw.headers['retry-after'], String(e.details.retryAfter));
        assert.equal(await balance(), b0);
        const s = await statusOk(d.requestId);
        assert.equal(s.resendCount, 3);
        assert.equal(s.messages.length, 4);
        await srv.waitForSms(to, { count: 4 });
        // The newest code still works.
        const v = await srv.verify(key, d.requestId, await srv.codeFor(to, { count: 4 }));
        assert.deepEqual(v.json, { data: { verified: true } });
    });

    it('reuse strategy: the resend carries the same code, which verifies', async () => {
        const rkey = srv.accounts.reuser.key;
        const to = phone();
        const d = await sendOk(srv, rkey, { phoneNumber: to, codeLength: 10 });
        const first = await srv.codeFor(to);
        await srv.advanceClock(COOLDOWN_MS);
        assertData(await resend(d.requestId, {}, rkey), 200, SEND_KEYS, 'reuse resend');
        const sms = await srv.waitForSms(to, { count: 2 });
        assert.equal(codeFromText(sms.text), first, 'reuse sends the same code again');
        await srv.advanceClock(COOLDOWN_MS);
        assertData(await resend(d.requestId, {}, rkey), 200, SEND_KEYS, 'second reuse resend');
        assert.equal(codeFromText((await srv.waitForSms(to, { count: 3 })).text), first);
        assert.deepEqual((await srv.verify(rkey, d.requestId, first)).json, { data: { verified: true } });
        // Verified: the kept code is gone and resending is refused.
        await srv.advanceClock(COOLDOWN_MS);
        assertError(await resend(d.requestId, {}, rkey), 409, 'otp_already_verified');
    });

    it('reuse, then rotate, then reuse again: the rotated code is the one that verifies, and the stale kept one is never sent', async () => {
        const skey = srv.accounts.switcher.key;
        const strategy = async (s) => {
            await srv.cli(['account', 'set', 'switcher', '--resend-strategy', s]);
            // past the key cache, whose entry holds the strategy
            await srv.advanceClock(COOLDOWN_MS);
        };
        await strategy('reuse');
        const to = phone();
        const d = await sendOk(srv, skey, { phoneNumber: to, codeLength: 10 });
        const first = await srv.codeFor(to);
        await strategy('rotate');
        assertData(await resend(d.requestId, {}, skey), 200, SEND_KEYS, 'rotating resend');
        const second = codeFromText((await srv.waitForSms(to, { count: 2 })).text);
        assert.notEqual(second, first);
        await strategy('reuse');
        assertData(await resend(d.requestId, {}, skey), 200, SEND_KEYS, 'resend under reuse again');
        const third = codeFromText((await srv.waitForSms(to, { count: 3 })).text);
        assert.notEqual(third, first, 'the code kept at send stopped verifying: it is not sent again');
        assertError(await srv.verify(skey, d.requestId, first), 400, 'otp_incorrect', 'the first code');
        assert.deepEqual((await srv.verify(skey, d.requestId, third)).json, { data: { verified: true } }, 'the code of the last SMS');
    });

    it('resend errors: unknown / malformed / foreign id 404, missing requestId 400, finished requests 409/410', async () => {
        assertError(await resend('req_0000000000000000000000'), 404, 'otp_not_found', 'unknown');
        assertError(await resend('nope'), 404, 'otp_not_found', 'malformed');
        const foreign = await sendOk(srv, srv.accounts.other.key, { phoneNumber: phone() });
        await srv.advanceClock(COOLDOWN_MS);
        assertError(await resend(foreign.requestId), 404, 'otp_not_found', 'another account');
        let e = assertError(await srv.request('POST', '/otp/resend', { key, body: {} }), 400, 'invalid_request');
        assert.equal(e.details.field, 'requestId');
        e = assertError(await srv.request('POST', '/otp/resend', { key, body: { requestId: 7 } }), 400, 'invalid_request');
        assert.equal(e.details.field, 'requestId');
        assertError(await srv.request('POST', '/otp/resend', { body: { requestId: foreign.requestId } }), 401, 'unauthorized');

        const to = phone();
        const locked = await sendOk(srv, key, { phoneNumber: to, maxAttempts: 1 });
        const code = await srv.codeFor(to);
        assertError(await srv.verify(key, locked.requestId, wrong(code)), 400, 'otp_incorrect');
        await srv.advanceClock(COOLDOWN_MS);
        assertError(await resend(locked.requestId), 410, 'otp_attempts_exhausted', 'locked');

        const exp = await sendOk(srv, key, { phoneNumber: phone(), expiresIn: 60 });
        await srv.advanceClock(61000);
        assertError(await resend(exp.requestId), 410, 'otp_expired', 'expired');
    });

    it('GET /otp/{id}: a fresh send is pending with its message; the message shows its provider once sent', async () => {
        const to = phone();
        const t0 = Date.now() + srv.clockOffsetMs;
        const d = await sendOk(srv, key, { phoneNumber: to, maxAttempts: 4, expiresIn: 300 });
        await srv.waitForSms(to);
        let s;
        for (let i = 0; i < 100; i++) {
            s = await statusOk(d.requestId);
            if (s.messages[0] && s.messages[0].deliveryStatus === 'sent') break;
            await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(s.requestId, d.requestId);
        assert.equal(s.phoneNumber, to);
        assert.equal(s.status, 'pending');
        assert.equal(s.channel, 'sms');
        assert.equal(s.attemptsLeft, 4);
        assert.equal(s.maxAttempts, 4);
        assert.equal(s.expiresAt, d.expiresAt);
        assert.equal(s.verifiedAt, null);
        assert.equal(s.resendCount, 0);
        assert.ok(Math.abs(Date.parse(s.createdAt) - t0) < 10000, `createdAt ${s.createdAt}`);
        assert.equal(s.messages.length, 1);
        assert.equal(s.messages[0].deliveryStatus, 'sent');
        assert.equal(typeof s.messages[0].provider, 'string');
        assert.equal(s.messages[0].error, null);
        assert.equal(s.messages[0].messageId, (await srv.waitForSms(to)).messageId);
    });

    it('every status value is reachable and reported: pending, verified, expired, locked, cancelled', async () => {
        const seen = new Set();

        const pTo = phone();
        const pending = await sendOk(srv, key, { phoneNumber: pTo });
        seen.add((await statusOk(pending.requestId)).status);

        const vTo = phone();
        const verified = await sendOk(srv, key, { phoneNumber: vTo });
        assert.deepEqual((await srv.verify(key, verified.requestId, await srv.codeFor(vTo))).json, { data: { verified: true } });
        const vs = await statusOk(verified.requestId);
        assert.equal(vs.status, 'verified');
        assert.match(vs.verifiedAt, ISO_MS_RE);
        seen.add(vs.status);

        const lTo = phone();
        const locked = await sendOk(srv, key, { phoneNumber: lTo, maxAttempts: 2 });
        const lc = await srv.codeFor(lTo);
        for (let i = 0; i < 2; i++) assertError(await srv.verify(key, locked.requestId, wrong(lc)), 400, 'otp_incorrect');
        const ls = await statusOk(locked.requestId);
        assert.equal(ls.status, 'locked');
        assert.equal(ls.attemptsLeft, 0);
        seen.add(ls.status);

        const cTo = phone();
        const cancelled = await sendOk(srv, key, { phoneNumber: cTo });
        const cs = assertData(await srv.request('POST', `/otp/${cancelled.requestId}/cancel`, { key }), 200, STATUS_KEYS, 'cancel');
        assert.equal(cs.status, 'cancelled');
        seen.add((await statusOk(cancelled.requestId)).status);

        const expiring = await sendOk(srv, key, { phoneNumber: phone(), expiresIn: 60 });
        assert.equal((await statusOk(expiring.requestId)).status, 'pending');
        await srv.advanceClock(61000);
        const es = await statusOk(expiring.requestId);
        assert.equal(es.status, 'expired', 'a pending request past expiresAt reads expired');
        seen.add(es.status);
        // The earlier ones keep their final states; the pending one (600 s) is still pending.
        assert.equal((await statusOk(pending.requestId)).status, 'pending');
        assert.equal((await statusOk(verified.requestId)).status, 'verified');

        assert.deepEqual([...seen].sort(), ['cancelled', 'expired', 'locked', 'pending', 'verified']);
    });

    it('cancel: the code is refused with 410 otp_cancelled, resend too; a second cancel answers 200 again; no refund', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        const code = await srv.codeFor(to);
        const b0 = await balance();
        const c = assertData(await srv.request('POST', `/otp/${d.requestId}/cancel`, { key }), 200, STATUS_KEYS);
        assert.equal(c.status, 'cancelled');
        assert.equal(c.requestId, d.requestId);
        assertError(await srv.verify(key, d.requestId, code), 410, 'otp_cancelled', 'right code after cancel');
        assertError(await srv.verify(key, d.requestId, wrong(code)), 410, 'otp_cancelled', 'wrong code after cancel');
        await srv.advanceClock(COOLDOWN_MS);
        assertError(await resend(d.requestId), 410, 'otp_cancelled', 'resend after cancel');
        const again = assertData(await srv.request('POST', `/otp/${d.requestId}/cancel`, { key }), 200, STATUS_KEYS);
        assert.equal(again.status, 'cancelled');
        assert.equal(await balance(), b0, 'cancel neither charges nor refunds');
    });

    it('cancel errors: verified 409, locked 410, expired 410, unknown / foreign 404; a body is not needed', async () => {
        const cancel = (id, k = key) => srv.request('POST', `/otp/${id}/cancel`, { key: k });
        const vTo = phone();
        const v = await sendOk(srv, key, { phoneNumber: vTo });
        await srv.verify(key, v.requestId, await srv.codeFor(vTo));
        assertError(await cancel(v.requestId), 409, 'otp_already_verified');
        assert.equal((await statusOk(v.requestId)).status, 'verified', 'a refused cancel changes nothing');

        const lTo = phone();
        const l = await sendOk(srv, key, { phoneNumber: lTo, maxAttempts: 1 });
        await srv.verify(key, l.requestId, wrong(await srv.codeFor(lTo)));
        assertError(await cancel(l.requestId), 410, 'otp_attempts_exhausted');

        const e = await sendOk(srv, key, { phoneNumber: phone(), expiresIn: 60 });
        await srv.advanceClock(61000);
        assertError(await cancel(e.requestId), 410, 'otp_expired');

        assertError(await cancel('req_0000000000000000000000'), 404, 'otp_not_found');
        assertError(await cancel('garbage'), 404, 'otp_not_found');
        const foreign = await sendOk(srv, srv.accounts.other.key, { phoneNumber: phone() });
        assertError(await cancel(foreign.requestId), 404, 'otp_not_found', 'another account');
        assert.equal((await statusOk(foreign.requestId, srv.accounts.other.key)).status, 'pending');
        assertError(await cancel(foreign.requestId, null), 401, 'unauthorized');
    });

    it('GET /otp/{id} errors: unknown, malformed, foreign → 404 otp_not_found; no key → 401', async () => {
        assertError(await status('req_0000000000000000000000'), 404, 'otp_not_found');
        assertError(await status('abc'), 404, 'otp_not_found');
        const foreign = await sendOk(srv, srv.accounts.other.key, { phoneNumber: phone() });
        assertError(await status(foreign.requestId), 404, 'otp_not_found');
        assertError(await status(foreign.requestId, null), 401, 'unauthorized');
    });

    it('routes around /otp/{id}: GET /otp/send is 405 (Allow: POST), POST /otp/{id} is 405 (Allow: GET)', async () => {
        for (const p of ['/otp/send', '/otp/verify', '/otp/resend']) {
            const r = await srv.request('GET', p, { key });
            assertError(r, 405, 'method_not_allowed', `GET ${p}`);
            assert.equal(r.headers.allow, 'POST');
        }
        const d = await sendOk(srv, key, { phoneNumber: phone() });
        const r = await srv.request('POST', `/otp/${d.requestId}`, { key });
        assertError(r, 405, 'method_not_allowed');
        assert.equal(r.headers.allow, 'GET');
        assertError(await srv.request('GET', `/otp/${d.requestId}/cancel`, { key }), 405, 'method_not_allowed');
    });

    it('GET /messages/{id}: the SMS with its provider, segments and delivery history', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        const sms = await srv.waitForSms(to);
        let m;
        for (let i = 0; i < 100; i++) {
            m = assertData(await srv.request('GET', `/messages/${sms.messageId}`, { key }), 200, MESSAGE_KEYS);
            if (m.status === 'sent') break;
            await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(m.messageId, sms.messageId);
        assert.equal(m.requestId, d.requestId);
        assert.equal(m.to, to);
        assert.equal(m.status, 'sent');
        assert.equal(typeof m.provider, 'string');
        assert.ok(m.providerMessageId === null || typeof m.providerMessageId === 'string');
        assert.equal(m.attempts, 1);
        assert.equal(m.segments, 1);
        assert.match(m.createdAt, ISO_MS_RE);
        assert.match(m.updatedAt, ISO_MS_RE);
        assert.ok(Date.parse(m.updatedAt) >= Date.parse(m.createdAt));
        assert.equal(m.error, null);
        assert.ok(Array.isArray(m.events) && m.events.length >= 1, JSON.stringify(m.events));
        for (const ev of m.events) {
            assert.deepEqual(Object.keys(ev).sort(), ['at', 'error', 'status']);
            assert.match(ev.at, ISO_MS_RE);
        }
        assert.equal(m.events.at(-1).status, 'sent', 'the history ends with the current status');
        for (let i = 1; i < m.events.length; i++) assert.ok(m.events[i].at >= m.events[i - 1].at, 'oldest first');
        // The text (and so the code) is never part of it.
        assert.ok(!JSON.stringify(m).includes(codeFromText(sms.text)));

        // The status route lists the same message.
        const s = await statusOk(d.requestId);
        assert.equal(s.messages[0].messageId, sms.messageId);
        assert.equal(s.messages[0].deliveryStatus, m.status);

        assertError(await srv.request('GET', '/messages/msg_0000000000000000000000', { key }), 404, 'message_not_found');
        assertError(await srv.request('GET', '/messages/nope', { key }), 404, 'message_not_found');
        assertError(await srv.request('GET', `/messages/${sms.messageId}`, { key: srv.accounts.other.key }), 404, 'message_not_found', 'another account');
        assertError(await srv.request('GET', `/messages/${sms.messageId}`), 401, 'unauthorized');
    });

    it('stops cleanly: exit 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('background purge (store.request_retention, store.purge_interval)', () => {
    let srv;
    before(async () => {
        srv = await startServer({
            accounts: { acme: '10.00' },
            env: { OTPD_STORE_REQUEST_RETENTION: '60', OTPD_STORE_PURGE_INTERVAL: '1' },
        });
    });
    after(() => srv && srv.cleanup('lifecycle-purge'));

    const waitFor = async (what, fn, timeoutMs = 10000) => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            if (await fn()) return;
            if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
            await new Promise((r) => setTimeout(r, 100));
        }
    };

    it('a request is kept request_retention after it expires, then purged (ledger entries stay); idempotency keys live 24 h', async () => {
        const key = srv.accounts.acme.key;
        const to = phone();
        const body = { phoneNumber: to, expiresIn: 60, idempotencyKey: 'purge-1' };
        const first = assertData(await srv.send(key, body), 201, SEND_KEYS);
        const sms = await srv.waitForSms(to);
        const keep = await sendOk(srv, key, { phoneNumber: phone(), expiresIn: 3600 });
        const entries0 = (await srv.accountShow('acme')).ledgerEntries;

        await srv.advanceClock(61000); // expired, but within the retention
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(assertData(await srv.request('GET', `/otp/${first.requestId}`, { key }), 200).status, 'expired');

        await srv.advanceClock(60000); // past expiry + retention
        await waitFor('the purge', async () => (await srv.request('GET', `/otp/${first.requestId}`, { key })).status === 404);
        assertError(await srv.request('GET', `/otp/${first.requestId}`, { key }), 404, 'otp_not_found');
        assertError(await srv.request('GET', `/messages/${sms.messageId}`, { key }), 404, 'message_not_found');
        assert.equal(assertData(await srv.request('GET', `/otp/${keep.requestId}`, { key }), 200).status, 'pending', 'an unexpired request stays');
        const show = await srv.accountShow('acme');
        assert.equal(show.ledgerEntries, entries0, 'the ledger keeps its entries');
        assert.equal(show.balance, show.ledgerSum);

        // Within 24 h the key still replays the first answer …
        const again = await srv.send(key, body);
        assert.equal(again.status, 201);
        assert.equal(again.headers['idempotent-replayed'], 'true');
        assert.deepEqual(again.json.data, first);
        // … after 24 h it is gone and the same key makes a new request.
        await srv.advanceClock(24 * 3600 * 1000);
        await new Promise((r) => setTimeout(r, 1500));
        const fresh = await srv.send(key, body);
        const d = assertData(fresh, 201, SEND_KEYS, 'after 24 h');
        assert.equal(fresh.headers['idempotent-replayed'], undefined);
        assert.notEqual(d.requestId, first.requestId);
    });

    it('stops cleanly', async () => {
        await srv.stop();
    });
});
