// The OTP life cycle over real HTTP against the real binary (SPEC 1.3, 1.4):
// send → read the code from the file provider → verify, with the response fields
// decoded strictly; wrong codes and attempt exhaustion; single use; expiry (with the
// test build's clock hook); unknown and foreign request ids.
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

const phone = phones(11);
const wrong = (code) => code.slice(0, -1) + String((Number(code.at(-1)) + 1) % 10);

describe('OTP send and verify', () => {
    let srv;
    let key;
    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00', other: '100.00' } });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('otp_flow'));

    it('send → SMS → verify answers exactly {"data":{"verified":true}}, charging 0.25', async () => {
        const w0 = assertData(await srv.request('GET', '/wallet', { key }), 200, [
            'balance',
            'currency',
            'pricePerSegment',
            'lowBalanceThreshold',
        ]);
        assert.deepEqual(w0, {
            balance: '100.00',
            currency: 'INR',
            pricePerSegment: '0.25',
            lowBalanceThreshold: '100.00',
        });

        const to = phone();
        const t0 = Date.now();
        const d = await sendOk(srv, key, { phoneNumber: to });
        assert.match(d.requestId, REQUEST_ID_RE);
        assert.match(d.expiresAt, ISO_MS_RE);
        assert.equal(d.attemptsLeft, 3);
        const ttl = Date.parse(d.expiresAt) - (t0 + srv.clockOffsetMs);
        assert.ok(ttl > 590000 && ttl < 610000, `default expiresIn is 600 s, got ${ttl} ms`);

        const sms = await srv.waitForSms(to);
        assert.deepEqual(Object.keys(sms).sort(), ['createdAt', 'messageId', 'text', 'to']);
        assert.match(
            sms.text,
            /^\d{6} is your .+ verification code\. It expires in 10 minutes\. Do not share it\.$/,
        );
        const code = codeFromText(sms.text);
        assert.equal(code.length, 6);
        assert.ok(!JSON.stringify(d).includes(code), 'the code is in the send response');

        const w1 = assertData(await srv.request('GET', '/wallet', { key }), 200);
        assert.equal(paise(w0.balance) - paise(w1.balance), 25, 'a one-segment send costs 0.25');

        const v = await srv.verify(key, d.requestId, code);
        assert.equal(v.status, 200, v.text);
        assert.deepEqual(v.json, { data: { verified: true } });
        assert.ok(v.headers['x-request-id']);

        const w2 = assertData(await srv.request('GET', '/wallet', { key }), 200);
        assert.equal(w2.balance, w1.balance, 'verify does not charge');
    });

    it('honours codeLength, expiresIn and maxAttempts at both ends of their ranges', async () => {
        for (const [codeLength, expiresIn, maxAttempts] of [
            [4, 60, 1],
            [10, 3600, 10],
            [8, 120, 5],
        ]) {
            const to = phone();
            const t0 = Date.now();
            const d = await sendOk(srv, key, { phoneNumber: to, codeLength, expiresIn, maxAttempts });
            assert.equal(d.attemptsLeft, maxAttempts);
            const ttl = Date.parse(d.expiresAt) - (t0 + srv.clockOffsetMs);
            assert.ok(Math.abs(ttl - expiresIn * 1000) < 10000, `expiresIn ${expiresIn}: ttl ${ttl} ms`);
            const code = await srv.codeFor(to);
            assert.match(code, new RegExp(`^\\d{${codeLength}}$`), `codeLength ${codeLength}`);
            const v = await srv.verify(key, d.requestId, code);
            assert.deepEqual(v.json, { data: { verified: true } }, v.text);
        }
    });

    it('sends to a non-Indian mobile number too (+44 7911 123456)', async () => {
        const to = '+447911123456';
        const d = await sendOk(srv, key, { phoneNumber: to });
        const code = await srv.codeFor(to);
        const v = await srv.verify(key, d.requestId, code);
        assert.deepEqual(v.json, { data: { verified: true } }, v.text);
    });

    it('wrong codes: 400 otp_incorrect with attemptsLeft 2, 1, 0; then 410 otp_attempts_exhausted, even for the right code', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to, maxAttempts: 3 });
        const code = await srv.codeFor(to);
        for (const left of [2, 1, 0]) {
            const r = await srv.verify(key, d.requestId, wrong(code));
            const e = assertError(r, 400, 'otp_incorrect', 'wrong code');
            assert.ok(e.details, 'otp_incorrect has details');
            assert.equal(e.details.attemptsLeft, left);
        }
        assertError(await srv.verify(key, d.requestId, code), 410, 'otp_attempts_exhausted', 'right code after lock');
        assertError(await srv.verify(key, d.requestId, wrong(code)), 410, 'otp_attempts_exhausted', 'wrong code after lock');
    });

    it('a wrong guess with attempts left does not stop the right code', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        const code = await srv.codeFor(to);
        const e = assertError(await srv.verify(key, d.requestId, wrong(code)), 400, 'otp_incorrect');
        assert.equal(e.details.attemptsLeft, 2);
        const v = await srv.verify(key, d.requestId, code);
        assert.deepEqual(v.json, { data: { verified: true } }, v.text);
    });

    it('a verified request cannot be verified again: 409 otp_already_verified', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        const code = await srv.codeFor(to);
        assert.deepEqual((await srv.verify(key, d.requestId, code)).json, { data: { verified: true } });
        assertError(await srv.verify(key, d.requestId, code), 409, 'otp_already_verified', 'second verify');
        assertError(await srv.verify(key, d.requestId, code), 409, 'otp_already_verified', 'third verify');
    });

    it('otpCode that is not digits of the right length: 400 invalid_otp_code, no attempt used', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        const code = await srv.codeFor(to);
        for (const bad of ['12a456', '12345', '1234567', '', ' 123456', '12345６']) {
            assertError(await srv.verify(key, d.requestId, bad), 400, 'invalid_otp_code', `otpCode ${JSON.stringify(bad)}`);
        }
        // Nothing was consumed: the first wrong guess still leaves 2 of 3.
        const e = assertError(await srv.verify(key, d.requestId, wrong(code)), 400, 'otp_incorrect');
        assert.equal(e.details.attemptsLeft, 2);
        assert.deepEqual((await srv.verify(key, d.requestId, code)).json, { data: { verified: true } });
    });

    it('unknown request id and another account\'s request id: 404 otp_not_found', async () => {
        assertError(await srv.verify(key, 'req_0000000000000000000000', '123456'), 404, 'otp_not_found', 'unknown id');
        assertError(await srv.verify(key, 'req_AbCdEfGhIjKlMnOpQrStUv', '123456'), 404, 'otp_not_found', 'unknown id');

        const to = phone();
        const otherKey = srv.accounts.other.key;
        const d = await sendOk(srv, otherKey, { phoneNumber: to });
        const code = await srv.codeFor(to);
        // Right code, wrong account: must look exactly like an unknown id.
        const r = await srv.verify(key, d.requestId, code);
        const e = assertError(r, 404, 'otp_not_found', "another account's id");
        const unknown = await srv.verify(key, 'req_0000000000000000000000', code);
        assert.equal(e.message, unknown.json.message, 'the foreign id is told apart from an unknown one');
        // …and it consumed nothing of the owner's request.
        assert.deepEqual((await srv.verify(otherKey, d.requestId, code)).json, { data: { verified: true } });
    });

    it('expiry: verifies at 59 s of a 60 s request, 410 otp_expired after 61 s (test clock)', async () => {
        const a = phone();
        const b = phone();
        const da = await sendOk(srv, key, { phoneNumber: a, expiresIn: 60 });
        const db = await sendOk(srv, key, { phoneNumber: b, expiresIn: 60 });
        const ca = await srv.codeFor(a);
        const cb = await srv.codeFor(b);
        await srv.advanceClock(59000);
        assert.deepEqual((await srv.verify(key, da.requestId, ca)).json, { data: { verified: true } });
        await srv.advanceClock(2000);
        assertError(await srv.verify(key, db.requestId, cb), 410, 'otp_expired', 'right code after expiry');
        assertError(await srv.verify(key, db.requestId, cb), 410, 'otp_expired', 'again');
        // New sends count from the moved clock.
        const t0 = Date.now();
        const dc = await sendOk(srv, key, { phoneNumber: phone() });
        const ttl = Date.parse(dc.expiresAt) - (t0 + srv.clockOffsetMs);
        assert.ok(ttl > 590000 && ttl < 610000, `expiresAt follows the server clock: ttl ${ttl} ms`);
    });

    it('the wallet equals its ledger: every send charged 0.25', async () => {
        const acme = await srv.accountShow('acme');
        assert.equal(acme.balance, acme.ledgerSum);
        assert.equal(acme.requests, acme.messages);
        assert.equal(acme.ledgerEntries, 1 + acme.requests, 'one credit plus one debit per request');
        assert.equal(paise(acme.balance), 10000 - 25 * acme.requests);
        const other = await srv.accountShow('other');
        assert.equal(other.requests, 1);
        assert.equal(other.balance, '99.75');
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
