// Test mode over real HTTP (SPEC 1.1, 1.7; issue 3): an otpd_test_ key runs the
// whole flow — send, read the code from GET /test/messages, verify, resend —
// without charging the wallet and without anything reaching a provider (nothing in
// sms.jsonl); live keys get 403 test_key_required on the inbox, and the inbox
// shows only this account's test messages to that number, newest first.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    startServer,
    phones,
    sendOk,
    assertData,
    assertError,
    ledgerView,
    codeFromText,
    sleep,
    ISO_MS_RE,
} from './lib/server.mjs';

const phone = phones(33);
const INBOX_KEYS = ['messageId', 'requestId', 'to', 'text', 'createdAt'];
const COOLDOWN_MS = 31000;

describe('test mode', () => {
    let srv;
    let tkey;
    const inbox = (to, { key = tkey, limit, raw = false } = {}) => {
        const num = raw ? to : encodeURIComponent(to);
        return srv.request('GET', `/test/messages?phoneNumber=${num}${limit !== undefined ? `&limit=${limit}` : ''}`, { key });
    };
    const inboxOk = async (to, opts) => {
        const list = assertData(await inbox(to, opts), 200, null, `GET /test/messages ${to}`);
        assert.ok(Array.isArray(list), 'data is an array');
        for (const m of list) {
            assert.deepEqual(Object.keys(m).sort(), [...INBOX_KEYS].sort());
            assert.match(m.messageId, /^msg_/);
            assert.match(m.requestId, /^req_/);
            assert.match(m.createdAt, ISO_MS_RE);
        }
        return list;
    };

    before(async () => {
        srv = await startServer({ accounts: { acme: '10.00', other: '10.00' }, testKeys: true });
        tkey = srv.accounts.acme.testKey;
    });
    after(() => srv && srv.cleanup('test_mode'));

    it('send → code from /test/messages → verify: wallet untouched, nothing sent to a provider', async () => {
        const to = phone();
        const before0 = await srv.accountShow('acme');
        const d = await sendOk(srv, tkey, { phoneNumber: to, variables: { appName: 'Acme CI' } });
        const list = await inboxOk(to);
        assert.equal(list.length, 1);
        assert.equal(list[0].requestId, d.requestId);
        assert.equal(list[0].to, to);
        assert.match(list[0].text, /^\d{6} is your Acme CI verification code\. It expires in 10 minutes\. Do not share it\.$/);
        const v = await srv.verify(tkey, d.requestId, codeFromText(list[0].text));
        assert.deepEqual(v.json, { data: { verified: true } });

        const after0 = await srv.accountShow('acme');
        assert.equal(after0.balance, before0.balance, 'no charge');
        assert.equal(after0.ledgerEntries, before0.ledgerEntries, 'no ledger entry');
        assert.equal(after0.balance, after0.ledgerSum);
        await sleep(500);
        assert.equal(srv.readSms().filter((m) => m.to === to).length, 0, 'nothing written by the file provider');

        // The request is a real one: status and message routes show it.
        const s = assertData(await srv.request('GET', `/otp/${d.requestId}`, { key: tkey }), 200);
        assert.equal(s.status, 'verified');
        assert.equal(s.messages.length, 1);
        assert.equal(s.messages[0].messageId, list[0].messageId);
    });

    it('resend with a test key: a second inbox message, newest first, no charge', async () => {
        const to = phone();
        const before0 = ledgerView(await srv.accountShow('acme'));
        const d = await sendOk(srv, tkey, { phoneNumber: to, codeLength: 10 });
        await srv.advanceClock(COOLDOWN_MS);
        assertData(await srv.request('POST', '/otp/resend', { key: tkey, body: { requestId: d.requestId } }), 200);
        const list = await inboxOk(to);
        assert.equal(list.length, 2);
        assert.ok(list[0].createdAt >= list[1].createdAt, 'newest first');
        const newest = codeFromText(list[0].text);
        const oldest = codeFromText(list[1].text);
        assert.notEqual(newest, oldest, 'rotated');
        assertError(await srv.verify(tkey, d.requestId, oldest), 400, 'otp_incorrect');
        assert.deepEqual((await srv.verify(tkey, d.requestId, newest)).json, { data: { verified: true } });
        const after0 = ledgerView(await srv.accountShow('acme'));
        assert.equal(after0.balance, before0.balance);
        assert.equal(after0.ledgerEntries, before0.ledgerEntries);
        await sleep(300);
        assert.equal(srv.readSms().filter((m) => m.to === to).length, 0);
    });

    it('limit picks the newest; a raw + in the query works like %2B', async () => {
        const to = phone();
        const ids = [];
        for (let i = 0; i < 3; i++) {
            ids.push((await sendOk(srv, tkey, { phoneNumber: to })).requestId);
            await srv.advanceClock(COOLDOWN_MS);
        }
        const two = await inboxOk(to, { limit: 2 });
        assert.deepEqual(two.map((m) => m.requestId), [ids[2], ids[1]]);
        const all = await inboxOk(to, { raw: true });
        assert.deepEqual(all.map((m) => m.requestId), [ids[2], ids[1], ids[0]]);
        assert.equal((await inboxOk(to, { limit: 100 })).length, 3);
    });

    it('the inbox holds only this account\'s test messages: not live ones, not other accounts\'', async () => {
        const to = phone();
        await sendOk(srv, srv.accounts.acme.key, { phoneNumber: to }); // live
        await srv.waitForSms(to);
        assert.deepEqual(await inboxOk(to), [], 'a live send is not in the inbox');
        await sendOk(srv, srv.accounts.other.testKey, { phoneNumber: to });
        assert.deepEqual(await inboxOk(to), [], "another account's test send is not in this inbox");
        assert.equal((await inboxOk(to, { key: srv.accounts.other.testKey })).length, 1);
        assert.deepEqual(await inboxOk(phone()), [], 'a number never sent to');
    });

    it('a live key gets 403 test_key_required; bad arguments 400', async () => {
        const to = phone();
        assertError(await inbox(to, { key: srv.accounts.acme.key }), 403, 'test_key_required');
        assertError(await inbox(to, { key: null }), 401, 'unauthorized');
        let e = assertError(await srv.request('GET', '/test/messages', { key: tkey }), 400, 'invalid_request');
        assert.equal(e.details.field, 'phoneNumber');
        assertError(await inbox('9876543210'), 400, 'invalid_phone_number');
        assertError(await inbox('+999'), 400, 'invalid_phone_number');
        for (const limit of ['0', '101', 'abc', '-1', '1.5', '']) {
            e = assertError(await inbox(to, { limit }), 400, 'invalid_request', `limit=${limit}`);
            assert.equal(e.details.field, 'limit');
        }
    });

    it('each key mode sees its own requests only: status, verify, cancel, resend and messages of the other mode are 404 and change nothing', async () => {
        const lkey = srv.accounts.acme.key;
        const liveTo = phone();
        const live = await sendOk(srv, lkey, { phoneNumber: liveTo });
        const liveCode = await srv.codeFor(liveTo);
        const testTo = phone();
        const test = await sendOk(srv, tkey, { phoneNumber: testTo });
        const testCode = codeFromText((await inboxOk(testTo))[0].text);
        const liveMsg = assertData(await srv.request('GET', `/otp/${live.requestId}`, { key: lkey }), 200).messages[0].messageId;
        const testMsg = assertData(await srv.request('GET', `/otp/${test.requestId}`, { key: tkey }), 200).messages[0].messageId;
        await srv.advanceClock(COOLDOWN_MS);
        for (const [key, d, code, msg, what] of [
            [tkey, live, liveCode, liveMsg, 'a test key, a live request'],
            [lkey, test, testCode, testMsg, 'a live key, a test request'],
        ]) {
            assertError(await srv.request('GET', `/otp/${d.requestId}`, { key }), 404, 'otp_not_found', `${what}: status`);
            assertError(await srv.verify(key, d.requestId, code), 404, 'otp_not_found', `${what}: right code`);
            assertError(await srv.verify(key, d.requestId, '000000'), 404, 'otp_not_found', `${what}: a guess`);
            assertError(await srv.request('POST', `/otp/${d.requestId}/cancel`, { key }), 404, 'otp_not_found', `${what}: cancel`);
            assertError(await srv.request('POST', '/otp/resend', { key, body: { requestId: d.requestId } }), 404, 'otp_not_found', `${what}: resend`);
            assertError(await srv.request('GET', `/messages/${msg}`, { key }), 404, 'message_not_found', `${what}: message`);
        }
        // The other mode's request is refused before anything is done for it: with
        // its number's country no longer allowed, a resend of one's own request
        // answers 403 (that check runs before the txn), the other mode's still 404.
        await srv.cli(['limits', 'set', 'acme', 'countries=US']);
        await srv.advanceClock(COOLDOWN_MS); // past the key cache, which holds the limits
        assertError(await srv.request('POST', '/otp/resend', { key: lkey, body: { requestId: live.requestId } }), 403, 'country_not_allowed', 'own mode');
        assertError(await srv.request('POST', '/otp/resend', { key: tkey, body: { requestId: live.requestId } }), 404, 'otp_not_found', 'the other mode');
        await srv.cli(['limits', 'set', 'acme', 'countries=']);
        await srv.advanceClock(COOLDOWN_MS);
        // Nothing was used: each is still pending with all its attempts, and
        // verifies with its own mode's key.
        for (const [key, d, code] of [[lkey, live, liveCode], [tkey, test, testCode]]) {
            const s = assertData(await srv.request('GET', `/otp/${d.requestId}`, { key }), 200);
            assert.equal(s.status, 'pending');
            assert.equal(s.attemptsLeft, 3);
            assert.equal(s.resendCount, 0);
            assert.deepEqual((await srv.verify(key, d.requestId, code)).json, { data: { verified: true } });
        }
    });

    it('test keys and live keys have separate idempotency key spaces: one key used by both is two sends, each replayed to its own mode', async () => {
        const lkey = srv.accounts.acme.key;
        const to = phone();
        const body = { phoneNumber: to, idempotencyKey: `signup-${to}` };
        const b0 = ledgerView(await srv.accountShow('acme'));
        const t = await sendOk(srv, tkey, body);
        await srv.advanceClock(COOLDOWN_MS); // the number's spacing
        const l = await sendOk(srv, lkey, body); // not the test send's answer
        assert.notEqual(l.requestId, t.requestId);
        await srv.waitForSms(to); // sent for real
        const b1 = ledgerView(await srv.accountShow('acme'));
        assert.equal(b1.ledgerEntries, b0.ledgerEntries + 1, 'the live send was charged');
        for (const [key, d] of [[tkey, t], [lkey, l]]) {
            const again = await srv.request('POST', '/otp/send', { key, body });
            assertData(again, 201);
            assert.equal(again.headers['idempotent-replayed'], 'true');
            assert.equal(again.json.data.requestId, d.requestId);
        }
        assert.equal((await inboxOk(to)).length, 1, 'one test message');
        assert.equal(srv.readSms().filter((m) => m.to === to).length, 1, 'one live SMS');
        assert.deepEqual(ledgerView(await srv.accountShow('acme')), b1, 'replays charge nothing');
    });

    it('stops cleanly: exit 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
