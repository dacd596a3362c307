// Refused requests (SPEC 1.2, 1.3, 1.10): bad JSON, wrong content type, oversized
// bodies, bad phone numbers, missing and out-of-range fields each get their SPEC
// error — and none of them stores or charges anything (`otpd account show` counts
// and balance unchanged, nothing in the file provider's output).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, phones, assertError, assertData, ledgerView, sendOk, sleep } from './lib/server.mjs';

const phone = phones(12);

describe('request errors store and charge nothing', () => {
    let srv;
    let key;
    let before0;
    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00' } });
        key = srv.accounts.acme.key;
        before0 = ledgerView(await srv.accountShow('acme'));
    });
    after(() => srv && srv.cleanup('errors'));

    const post = (path, opts) => srv.request('POST', path, { key, ...opts });

    it('body that is not JSON, or JSON that is not an object: 400 invalid_json', async () => {
        const bodies = [
            '{"phoneNumber": "+919812000001"',
            'phoneNumber=+919812000001',
            '',
            '[{"phoneNumber":"+919812000001"}]',
            '[]',
            '"+919812000001"',
            '42',
            'null',
            '{"phoneNumber":"+919812000001"} trailing',
            '\u00ff\u00fe{}',
        ];
        for (const path of ['/otp/send', '/otp/verify']) {
            for (const rawBody of bodies) {
                assertError(await post(path, { rawBody }), 400, 'invalid_json', `${path} ${JSON.stringify(rawBody)}`);
            }
        }
    });

    it('Content-Type that is not JSON: 415 unsupported_media_type', async () => {
        const rawBody = JSON.stringify({ phoneNumber: phone() });
        for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml']) {
            assertError(await post('/otp/send', { rawBody, contentType }), 415, 'unsupported_media_type', contentType);
        }
    });

    it('a JSON content type with parameters, in any case, is accepted', async () => {
        for (const contentType of ['application/json; charset=utf-8', 'Application/JSON']) {
            const r = await post('/otp/send', { rawBody: JSON.stringify({ phoneNumber: phone() }), contentType });
            assertData(r, 201, ['requestId', 'expiresAt', 'attemptsLeft'], contentType);
        }
        before0 = ledgerView(await srv.accountShow('acme')); // these two were charged
    });

    // Writes a request head (no body) on a fresh connection and collects what
    // comes back until the server hangs up or 5 s pass: {text, closed}. The
    // oversized-body tests send no body at all, so the client can never be cut
    // off mid-write (EPIPE) by a server that rightly stops reading.
    const rawHead = (head) =>
        new Promise((resolve, reject) => {
            const s = net.connect(srv.port, '127.0.0.1');
            let text = '';
            s.setTimeout(5000, () => {
                s.destroy();
                resolve({ text, closed: false });
            });
            s.on('data', (d) => (text += d.toString('latin1')));
            s.on('end', () => resolve({ text, closed: true }));
            s.on('error', reject);
            s.write(head);
        });
    const oversizedHead = (length, extra = '') =>
        'POST /otp/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
        `X-API-Key: ${key}\r\nContent-Length: ${length}\r\n${extra}\r\n`;

    it('body over 16 KiB: 413 payload_too_large (with Content-Length and chunked)', async () => {
        const pad = 'x'.repeat(16384);
        const rawBody = JSON.stringify({ phoneNumber: phone(), variables: { pad } });
        assert.ok(rawBody.length > 16384);
        // Up to 2 MiB the server reads the body through before its 413, so the
        // client always gets the answer (no reset racing it), every time.
        const big = JSON.stringify({ phoneNumber: phone(), variables: { pad: 'y'.repeat(1 << 20) } });
        for (let i = 0; i < 10; i++) {
            assertError(await post('/otp/send', { rawBody }), 413, 'payload_too_large', `Content-Length, ${i}`);
            assertError(await post('/otp/send', { rawBody, chunked: true }), 413, 'payload_too_large', `chunked, ${i}`);
            assertError(await post('/otp/send', { rawBody: big }), 413, 'payload_too_large', `1 MiB, ${i}`);
        }
        // Past that it answers at once, before any of the body, and hangs up.
        const huge = await rawHead(oversizedHead(3 << 20));
        assert.match(huge.text, /^HTTP\/1\.1 413 /, JSON.stringify(huge.text.slice(0, 80)));
        assert.match(huge.text, /"payload_too_large"/);
        assert.ok(huge.closed, 'the server hangs up after a 413 to a body it did not read');
        // Exactly at the limit is not too large: refused for its content (+999), not its size.
        const head = '{"phoneNumber":"+999","x":"';
        const atLimit = head + 'z'.repeat(16384 - head.length - 2) + '"}';
        assert.equal(atLimit.length, 16384);
        const r = await post('/otp/send', { rawBody: atLimit });
        assert.equal(r.status, 400, `16384 bytes is within the limit: ${r.status} ${r.text}`);
    });

    it('Expect: 100-continue with a body over the limit: 413 at once, never 100 Continue', async () => {
        // The client waits for the interim answer before sending; the final one
        // must come instead (there is no body on the wire to read through).
        const r = await rawHead(oversizedHead(100000, 'Expect: 100-continue\r\n'));
        assert.match(r.text, /^HTTP\/1\.1 413 /, JSON.stringify(r.text.slice(0, 80)));
        assert.ok(r.closed, 'the server hangs up after a 413 to a body it did not read');
    });

    it('missing or mistyped fields: 400 invalid_request naming the field', async () => {
        const cases = [
            ['/otp/send', {}, 'phoneNumber'],
            ['/otp/send', { phoneNumber: null }, 'phoneNumber'],
            ['/otp/send', { phoneNumber: phone(), codeLength: 3 }, 'codeLength'],
            ['/otp/send', { phoneNumber: phone(), codeLength: 11 }, 'codeLength'],
            ['/otp/send', { phoneNumber: phone(), codeLength: '6' }, 'codeLength'],
            ['/otp/send', { phoneNumber: phone(), codeLength: 6.5 }, 'codeLength'],
            ['/otp/send', { phoneNumber: phone(), expiresIn: 59 }, 'expiresIn'],
            ['/otp/send', { phoneNumber: phone(), expiresIn: 3601 }, 'expiresIn'],
            ['/otp/send', { phoneNumber: phone(), maxAttempts: 0 }, 'maxAttempts'],
            ['/otp/send', { phoneNumber: phone(), maxAttempts: 11 }, 'maxAttempts'],
            ['/otp/send', { phoneNumber: phone(), maxAttempts: -1 }, 'maxAttempts'],
            ['/otp/send', { phoneNumber: phone(), idempotencyKey: '' }, 'idempotencyKey'],
            ['/otp/send', { phoneNumber: phone(), idempotencyKey: 'k'.repeat(256) }, 'idempotencyKey'],
            ['/otp/send', { phoneNumber: phone(), channel: 'carrier-pigeon' }, 'channel'],
            ['/otp/send', { phoneNumber: phone(), variables: 'x' }, 'variables'],
            ['/otp/verify', { otpCode: '123456' }, 'requestId'],
            ['/otp/verify', { requestId: 'req_0000000000000000000000' }, 'otpCode'],
        ];
        for (const [path, body, field] of cases) {
            const e = assertError(await post(path, { body }), 400, 'invalid_request', `${path} ${JSON.stringify(body)}`);
            assert.ok(e.details, `details for ${JSON.stringify(body)}`);
            assert.equal(e.details.field, field, `${path} ${JSON.stringify(body)}`);
        }
        // The message quotes 40 bytes of a bad variable's name: cut before the
        // 'é' that straddles them, not through it (which made the reply a 500).
        const long = 'a'.repeat(39) + 'é';
        const e = assertError(await post('/otp/send', { body: { phoneNumber: phone(), variables: { [long]: 'x\ny' } } }), 400, 'invalid_request');
        assert.equal(e.message, `variables.${'a'.repeat(39)} must be at most 256 bytes, no line breaks`);
        assert.equal(e.details.field, 'variables');
    });

    it('phone numbers that are not E.164 or cannot receive SMS: 400 invalid_phone_number', async () => {
        for (const phoneNumber of [
            '+91 98765 43210',
            '9876543210',
            '+999',
            '+9198765',
            '+919876543210123',
            '+91-9876543210',
            '++919876543210',
            '+91987654321a',
            '',
            '+442071838750', // UK landline: valid, but cannot receive SMS
        ]) {
            assertError(await post('/otp/send', { body: { phoneNumber } }), 400, 'invalid_phone_number', JSON.stringify(phoneNumber));
        }
        // A number that is not a string is refused one way or the other, as a 400.
        const r = await post('/otp/send', { body: { phoneNumber: 919876543210 } });
        assert.equal(r.status, 400, r.text);
        assert.ok(['invalid_phone_number', 'invalid_request'].includes(r.json.code), r.text);
    });

    it('none of the refused sends stored, charged or sent anything', async () => {
        // Give a wrongly accepted send the time to reach the file provider.
        await sleep(300);
        const now = ledgerView(await srv.accountShow('acme'));
        assert.deepEqual(now, before0);
        assert.equal(now.balance, now.ledgerSum);
        const w = assertData(await srv.request('GET', '/wallet', { key }), 200);
        assert.equal(w.balance, before0.balance);
        // Exactly two SMS: the two accepted sends above.
        assert.equal(srv.readSms().length, 2, JSON.stringify(srv.readSms()));
    });

    it('the server still works after all that', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        const v = await srv.verify(key, d.requestId, await srv.codeFor(to));
        assert.deepEqual(v.json, { data: { verified: true } });
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
