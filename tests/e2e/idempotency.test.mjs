// Idempotency over real HTTP (SPEC 1.9; issue 3): a send or resend with an
// idempotencyKey runs at most once per account and key — 20 identical sends in
// parallel give one request, one SMS and one debit, and twenty equal answers, the
// replays marked Idempotent-Replayed: true; a different body is 409
// idempotency_key_reused; answers that created nothing (400, 402, 429) are not
// remembered, so the client can fix the cause and retry with the same key.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, phones, assertData, assertError, ledgerView, paise, sleep } from './lib/server.mjs';

const phone = phones(32);
const SEND_KEYS = ['requestId', 'expiresAt', 'attemptsLeft'];
const COOLDOWN_MS = 31000;

describe('idempotency', () => {
    let srv;
    let key;
    const send = (body, k = key) => srv.request('POST', '/otp/send', { key: k, body });
    const replayed = (r) => r.headers['idempotent-replayed'] === 'true';

    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00', other: '100.00', broke: '0.00' } });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('idempotency'));

    it('20 identical sends in parallel with one key: one request, one SMS, one debit; all answer the same requestId', async () => {
        const to = phone();
        const before0 = ledgerView(await srv.accountShow('acme'));
        const body = { phoneNumber: to, idempotencyKey: 'parallel-1', codeLength: 8 };
        const rs = await Promise.all(Array.from({ length: 20 }, () => send(body)));
        for (const r of rs) assertData(r, 201, SEND_KEYS, 'parallel send');
        const ids = new Set(rs.map((r) => r.json.data.requestId));
        assert.equal(ids.size, 1, `one requestId for all: ${[...ids]}`);
        const bodies = new Set(rs.map((r) => JSON.stringify(r.json)));
        assert.equal(bodies.size, 1, 'every answer has the same data');
        assert.equal(rs.filter(replayed).length, 19, 'the 19 duplicates are marked as replays');
        assert.equal(rs.filter((r) => !('idempotent-replayed' in r.headers)).length, 1, 'the first is not');

        await srv.waitForSms(to);
        await sleep(500); // give any duplicate SMS time to show up
        assert.equal(srv.readSms().filter((m) => m.to === to).length, 1, 'one SMS');
        const after1 = ledgerView(await srv.accountShow('acme'));
        assert.equal(after1.requests, before0.requests + 1, 'one request');
        assert.equal(after1.messages, before0.messages + 1, 'one message');
        assert.equal(after1.ledgerEntries, before0.ledgerEntries + 1, 'one debit');
        assert.equal(paise(before0.balance) - paise(after1.balance), 25);
        assert.equal(after1.balance, after1.ledgerSum);

        // The one request works with the one code.
        const code = await srv.codeFor(to);
        const v = await srv.verify(key, [...ids][0], code);
        assert.deepEqual(v.json, { data: { verified: true } });
    });

    it('a later repeat replays the first answer (even after verification); key order and whitespace do not matter', async () => {
        const to = phone();
        const first = await send({ phoneNumber: to, idempotencyKey: 'later-1', maxAttempts: 5 });
        const d = assertData(first, 201, SEND_KEYS);
        assert.ok(!replayed(first));
        await srv.verify(key, d.requestId, await srv.codeFor(to));

        const shuffled = `{ "maxAttempts" : 5,\n  "idempotencyKey":"later-1",   "phoneNumber": "${to}" }`;
        const again = await srv.request('POST', '/otp/send', { key, rawBody: shuffled });
        assert.equal(again.status, 201, again.text);
        assert.ok(replayed(again), 'Idempotent-Replayed: true');
        assert.deepEqual(again.json, first.json, 'the same data, field for field');
        assert.equal(again.text, first.text, 'the same bytes (the first is written without jansson)');
        assert.ok(again.headers['x-request-id']);
        await sleep(300);
        assert.equal(srv.readSms().filter((m) => m.to === to).length, 1, 'no new SMS');
    });

    it('the same key with another body: 409 idempotency_key_reused, nothing created', async () => {
        const to = phone();
        assertData(await send({ phoneNumber: to, idempotencyKey: 'reused-1' }), 201, SEND_KEYS);
        const before1 = ledgerView(await srv.accountShow('acme'));
        assertError(await send({ phoneNumber: phone(), idempotencyKey: 'reused-1' }), 409, 'idempotency_key_reused', 'other phone');
        assertError(await send({ phoneNumber: to, idempotencyKey: 'reused-1', codeLength: 4 }), 409, 'idempotency_key_reused', 'other option');
        assert.deepEqual(ledgerView(await srv.accountShow('acme')), before1);
    });

    it('keys belong to an account: another account may use the same key', async () => {
        const to = phone();
        const a = assertData(await send({ phoneNumber: to, idempotencyKey: 'shared-1' }), 201, SEND_KEYS);
        const r = await send({ phoneNumber: to, idempotencyKey: 'shared-1' }, srv.accounts.other.key);
        const b = assertData(r, 201, SEND_KEYS);
        assert.ok(!replayed(r));
        assert.notEqual(a.requestId, b.requestId);
    });

    it('a 402 is not remembered: top up with the CLI, retry with the same key → 201', async () => {
        const bkey = srv.accounts.broke.key;
        const body = { phoneNumber: phone(), idempotencyKey: 'topup-1' };
        assertError(await send(body, bkey), 402, 'insufficient_balance');
        assertError(await send(body, bkey), 402, 'insufficient_balance', 'still 402, not a replay');
        await srv.cli(['wallet', 'credit', 'broke', '1.00', '--json']);
        const r = await send(body, bkey);
        const d = assertData(r, 201, SEND_KEYS, 'after top-up');
        assert.ok(!replayed(r), 'the 201 is a fresh send');
        const again = await send(body, bkey);
        assert.ok(replayed(again));
        assert.equal(again.json.data.requestId, d.requestId);
        const show = await srv.accountShow('broke');
        assert.equal(show.balance, '0.75');
        assert.equal(show.requests, 1);
    });

    it('a 400 is not remembered: fix the body and retry with the same key → 201', async () => {
        const to = phone();
        const e = assertError(await send({ phoneNumber: to, idempotencyKey: 'fix-1', codeLength: 3 }), 400, 'invalid_request');
        assert.equal(e.details.field, 'codeLength');
        assertData(await send({ phoneNumber: to, idempotencyKey: 'fix-1', codeLength: 4 }), 201, SEND_KEYS);
    });

    it('resend: a repeat replays the first resend (no cooldown 429, no new SMS, no new charge); a 429 is not remembered', async () => {
        const to = phone();
        const d = assertData(await send({ phoneNumber: to }), 201, SEND_KEYS);
        await srv.waitForSms(to);
        const resend = (k) => srv.request('POST', '/otp/resend', { key, body: { requestId: d.requestId, idempotencyKey: k } });

        // Too soon: 429, not remembered; after the cooldown the same key works.
        assertError(await resend('resend-1'), 429, 'resend_too_soon');
        await srv.advanceClock(COOLDOWN_MS);
        const b0 = paise((await srv.accountShow('acme')).balance);
        const first = await resend('resend-1');
        const r = assertData(first, 200, SEND_KEYS, 'resend');
        assert.ok(!replayed(first));
        assert.equal(r.requestId, d.requestId);

        // Immediately again (inside the cooldown) with the same key: replayed, not 429.
        const rs = await Promise.all(Array.from({ length: 5 }, () => resend('resend-1')));
        for (const x of rs) {
            assert.equal(x.status, 200, x.text);
            assert.ok(replayed(x));
            assert.deepEqual(x.json, first.json);
        }
        await srv.waitForSms(to, { count: 2 });
        await sleep(300);
        assert.equal(srv.readSms().filter((m) => m.to === to).length, 2, 'one SMS for the send, one for the resend');
        assert.equal(b0 - paise((await srv.accountShow('acme')).balance), 25, 'one charge for the resend');

        // A new key is a new resend, subject to the cooldown.
        assertError(await resend('resend-2'), 429, 'resend_too_soon');
        // The resend's key on the send route is another body: reused.
        assertError(await send({ phoneNumber: to, idempotencyKey: 'resend-1' }), 409, 'idempotency_key_reused');
    });

    it('stops cleanly: exit 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
