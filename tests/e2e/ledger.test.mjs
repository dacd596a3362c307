// The ledger over real HTTP (SPEC 1.8, 2; issue 3): after a randomized, seeded mix
// of a few hundred sends (one- and two-segment), resends, verifies, cancels, test
// sends, refused sends and CLI credits — some of them in parallel — the balance
// equals the ledger's sum, there is exactly one debit per charged send or resend,
// and GET /wallet/transactions walks the whole ledger newest first, each entry
// exactly once, with a consistent balanceAfter chain, even while new entries are
// being appended during the walk. A second server whose file provider cannot
// write (sms.jsonl is /dev/full) adds refunds to the mix: every message fails in
// the end (superseded by a resend, dropped by a cancel, or unsent at expiry), each
// is refunded exactly once, and the balance comes back to the sum of the credits.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, phones, assertData, assertError, paise, sleep } from './lib/server.mjs';

const phone = phones(35);
const SEED = Number(process.env.OTPD_E2E_SEED || 20260215) >>> 0;
const OPS = Number(process.env.OTPD_E2E_LEDGER_OPS || 300);

/** mulberry32: a small seeded PRNG, so a failing mix can be replayed. */
function prng(seed) {
    let a = seed;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

describe(`ledger (seed ${SEED}, ${OPS} operations)`, () => {
    let srv;
    let key;
    let tkey;
    const rand = prng(SEED);
    const pick = (arr) => arr[Math.floor(rand() * arr.length)];
    const counts = { debits: 0, credits: 1, refused: 0, testSends: 0 }; // 1: the initial credit
    const requests = []; // {requestId, to}

    /** Every ledger entry through the pages of GET /wallet/transactions. */
    async function walk(limit, { during } = {}) {
        const seen = [];
        let cursor = null;
        for (let page = 0; page < 10000; page++) {
            const q = `/wallet/transactions?limit=${limit}${cursor ? `&before=${encodeURIComponent(cursor)}` : ''}`;
            const d = assertData(await srv.request('GET', q, { key }), 200, ['transactions', 'nextCursor'], q);
            assert.ok(d.transactions.length <= limit, `page of ${d.transactions.length} > limit ${limit}`);
            for (const t of d.transactions) {
                assert.deepEqual(Object.keys(t).sort(), [
                    'amount',
                    'balanceAfter',
                    'createdAt',
                    'id',
                    'messageId',
                    'note',
                    'requestId',
                    'type',
                ]);
                seen.push(t);
            }
            if (during) await during(page);
            if (d.nextCursor === null) break;
            assert.equal(typeof d.nextCursor, 'string');
            assert.equal(d.transactions.length, limit, 'only a full page has a next one');
            cursor = d.nextCursor;
        }
        return seen;
    }

    /** Checks the walked entries against each other and the account; returns them. */
    async function checkLedger(tag) {
        const show = await srv.accountShow('acme');
        assert.equal(show.balance, show.ledgerSum, `${tag}: balance == ledger sum`);
        const w = assertData(await srv.request('GET', '/wallet', { key }), 200);
        assert.equal(w.balance, show.balance, `${tag}: GET /wallet agrees`);
        const limit = 1 + Math.floor(rand() * 13);
        const entries = await walk(limit);
        assert.equal(entries.length, show.ledgerEntries, `${tag}: the walk (limit ${limit}) sees every entry`);
        assert.equal(new Set(entries.map((e) => e.id)).size, entries.length, `${tag}: no entry twice`);
        let sum = 0;
        for (let i = 0; i < entries.length; i++) {
            const e = entries[i];
            const a = paise(e.amount);
            sum += a;
            assert.ok(['credit', 'debit', 'refund'].includes(e.type), e.type);
            if (e.type === 'debit') assert.ok(a < 0 && e.requestId, JSON.stringify(e));
            else assert.ok(a > 0, JSON.stringify(e));
            if (i > 0) {
                // Newest first by id (fixed-width base62 sorts as text). Not by createdAt:
                // the CLI's credits do not see the test clock the server was moved by.
                assert.ok(e.id < entries[i - 1].id, `${tag}: newest first`);
                assert.equal(paise(entries[i - 1].balanceAfter) - paise(entries[i - 1].amount), paise(e.balanceAfter), `${tag}: balanceAfter chain at ${i}`);
            }
        }
        assert.equal(sum, paise(show.balance), `${tag}: the amounts sum to the balance`);
        if (entries.length) assert.equal(entries[0].balanceAfter, show.balance, `${tag}: newest balanceAfter is the balance`);
        assert.equal(paise(entries.at(-1).balanceAfter), paise(entries.at(-1).amount), `${tag}: the oldest entry starts from zero`);
        const byType = (t) => entries.filter((e) => e.type === t).length;
        assert.equal(byType('debit'), counts.debits, `${tag}: one debit per charged send or resend`);
        assert.equal(byType('credit'), counts.credits, `${tag}: one credit per top-up`);
        return entries;
    }

    before(async () => {
        srv = await startServer({ accounts: { acme: '5.00' }, testKeys: true });
        key = srv.accounts.acme.key;
        tkey = srv.accounts.acme.testKey;
        await srv.cli(['template', 'add', 'acme', '--name', 'short', '--body', '{{code}} is your code', '--default']);
        await srv.cli(['template', 'add', 'acme', '--name', 'long', '--body', `{{code}} ${'is a long text that needs two SMS. '.repeat(6)}`]);
    });
    after(() => srv && srv.cleanup('ledger'));

    async function op() {
        const r = rand();
        if (r < 0.35 || requests.length === 0) {
            const to = phone();
            const body = { phoneNumber: to, expiresIn: 3600 };
            if (rand() < 0.3) body.templateId = 'long';
            const res = await srv.send(key, body);
            if (res.status === 201) {
                counts.debits++;
                requests.push({ requestId: res.json.data.requestId, to });
            } else {
                assertError(res, 402, 'insufficient_balance', 'send');
                counts.refused++;
            }
        } else if (r < 0.55) {
            const q = pick(requests);
            const res = await srv.request('POST', '/otp/resend', { key, body: { requestId: q.requestId } });
            if (res.status === 200) counts.debits++;
            else assert.ok([402, 409, 410, 429].includes(res.status), `resend: ${res.status} ${res.text}`);
        } else if (r < 0.65) {
            const amount = pick(['0.50', '1.00', '2.75', '10.00']);
            await srv.cli(['wallet', 'credit', 'acme', amount, '--note', `mix ${amount}`, '--json']);
            counts.credits++;
        } else if (r < 0.75) {
            const q = pick(requests);
            const res = await srv.verify(key, q.requestId, rand() < 0.5 ? '000000' : '999999');
            assert.ok([200, 400, 409, 410].includes(res.status), `verify: ${res.status} ${res.text}`);
        } else if (r < 0.8) {
            const q = pick(requests);
            const res = await srv.request('POST', `/otp/${q.requestId}/cancel`, { key });
            assert.ok([200, 409, 410].includes(res.status), `cancel: ${res.status} ${res.text}`);
        } else if (r < 0.87) {
            const res = await srv.send(tkey, { phoneNumber: phone() });
            assert.equal(res.status, 201, res.text);
            counts.testSends++;
        } else {
            await srv.advanceClock(31000);
        }
    }

    it('a random mix keeps balance == ledger sum, one debit per charge, and the pages walk it exactly once', async () => {
        let done = 0;
        let checkpoint = 100;
        while (done < OPS) {
            if (rand() < 0.15) {
                // A burst in parallel: the writer batches these into one commit.
                const n = 2 + Math.floor(rand() * 6);
                await Promise.all(Array.from({ length: n }, () => op()));
                done += n;
            } else {
                await op();
                done++;
            }
            if (done >= checkpoint) {
                await checkLedger(`after ${done} operations`);
                checkpoint += 100;
            }
        }
        // Let the dispatcher finish (a refund could still come from it), then check.
        await sleep(500);
        const entries = await checkLedger('at the end');
        assert.ok(counts.debits > 50 && counts.credits > 5, JSON.stringify(counts));
        assert.ok(entries.some((e) => e.note && e.note.startsWith('mix')), 'credit notes are shown');
    });

    it('a walk stays exact while new entries are appended during it', async () => {
        await srv.cli(['wallet', 'credit', 'acme', '50.00', '--json']);
        counts.credits++;
        const before0 = (await srv.accountShow('acme')).ledgerEntries;
        let added = 0;
        const seen = await walk(5, {
            during: async () => {
                const res = await srv.send(key, { phoneNumber: phone() });
                assert.equal(res.status, 201, res.text);
                counts.debits++;
                added++;
            },
        });
        // The first page was read before any append: the walk is exactly the ledger
        // as it was then, with nothing repeated and nothing skipped.
        assert.equal(seen.length, before0);
        assert.equal(new Set(seen.map((e) => e.id)).size, seen.length);
        assert.ok(added > 1);
        await checkLedger('after the appending walk');
    });

    it('bad arguments: 400 invalid_request naming limit or before; default limit 50', async () => {
        for (const limit of ['0', '201', 'x', '-5']) {
            const e = assertError(await srv.request('GET', `/wallet/transactions?limit=${limit}`, { key }), 400, 'invalid_request', limit);
            assert.equal(e.details.field, 'limit');
        }
        for (const before of ['nope', 'zzzzzzzzzzzzzzzzzzzzzz', '!!!!!!!!!!!', '00000000000']) {
            const e = assertError(await srv.request('GET', `/wallet/transactions?before=${encodeURIComponent(before)}`, { key }), 400, 'invalid_request', before);
            assert.equal(e.details.field, 'before');
        }
        const d = assertData(await srv.request('GET', '/wallet/transactions', { key }), 200);
        assert.equal(d.transactions.length, 50);
        assert.equal(typeof d.nextCursor, 'string');
        // A transaction's id works as a cursor too: the entries older than it.
        const third = d.transactions[2];
        const older = assertData(await srv.request('GET', `/wallet/transactions?limit=3&before=${third.id}`, { key }), 200);
        assert.deepEqual(older.transactions, d.transactions.slice(3, 6));
        assertError(await srv.request('GET', '/wallet/transactions'), 401, 'unauthorized');
    });

    it('another account sees only its own ledger', async () => {
        await srv.addAccount('lonely', { credit: '3.00' });
        const d = assertData(await srv.request('GET', '/wallet/transactions', { key: srv.accounts.lonely.key }), 200);
        assert.equal(d.transactions.length, 1);
        assert.equal(d.transactions[0].type, 'credit');
        assert.equal(d.transactions[0].amount, '3.00');
        assert.equal(d.transactions[0].balanceAfter, '3.00');
        assert.equal(d.nextCursor, null);
    });

    it('stops cleanly: exit 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe(`ledger with refunds (seed ${SEED})`, () => {
    let srv;
    let key;
    const rand = prng(SEED ^ 0x5eed);
    const pick = (arr) => arr[Math.floor(rand() * arr.length)];
    let debits = 0;
    let credited = 500; // paise: the initial 5.00
    const requests = [];

    const ledger = async () => {
        const all = [];
        let cursor = null;
        for (;;) {
            const q = `/wallet/transactions?limit=200${cursor ? `&before=${cursor}` : ''}`;
            const d = assertData(await srv.request('GET', q, { key }), 200);
            all.push(...d.transactions);
            if (!d.nextCursor) return all;
            cursor = d.nextCursor;
        }
    };

    before(async () => {
        srv = await startServer({ accounts: { acme: '5.00' } });
        key = srv.accounts.acme.key;
        // Restart with a provider that cannot write: every send attempt fails
        // (transiently, so the dispatcher retries until the request expires).
        await srv.stop();
        fs.rmSync(srv.smsFile, { force: true });
        fs.symlinkSync('/dev/full', srv.smsFile);
        srv.smsFile = path.join(srv.dataDir, 'nothing-was-sent.jsonl');
        await srv.start();
    });
    after(() => srv && srv.cleanup('ledger-refunds'));

    it('sends, resends, cancels and credits with failing delivery: every debit is refunded once, balance == ledger sum', async () => {
        for (let i = 0; i < 150; i++) {
            const r = rand();
            if (r < 0.4 || requests.length === 0) {
                const res = await srv.send(key, { phoneNumber: phone(), expiresIn: 60 });
                if (res.status === 201) {
                    debits++;
                    requests.push(res.json.data.requestId);
                } else {
                    assertError(res, 402, 'insufficient_balance');
                }
            } else if (r < 0.6) {
                const res = await srv.request('POST', '/otp/resend', { key, body: { requestId: pick(requests) } });
                if (res.status === 200) debits++;
                else assert.ok([402, 409, 410, 429].includes(res.status), `resend: ${res.status} ${res.text}`);
            } else if (r < 0.7) {
                const res = await srv.request('POST', `/otp/${pick(requests)}/cancel`, { key });
                assert.ok([200, 409, 410].includes(res.status), `cancel: ${res.status} ${res.text}`);
            } else if (r < 0.8) {
                await srv.cli(['wallet', 'credit', 'acme', '1.00', '--json']);
                credited += 100;
            } else {
                await srv.advanceClock(31000);
            }
            if (i % 50 === 49) {
                const show = await srv.accountShow('acme');
                assert.equal(show.balance, show.ledgerSum, `after ${i + 1} operations`);
            }
        }
        assert.ok(debits > 20, `debits ${debits}`);

        // Let every request expire; the dispatcher then fails and refunds what is left.
        const deadline = Date.now() + 30000;
        let entries;
        for (;;) {
            await srv.advanceClock(61000);
            await sleep(300);
            entries = await ledger();
            const refunds = entries.filter((e) => e.type === 'refund').length;
            if (refunds >= debits || Date.now() > deadline) break;
        }
        const byType = (t) => entries.filter((e) => e.type === t);
        assert.equal(byType('debit').length, debits, 'one debit per charged send or resend');
        assert.equal(byType('refund').length, debits, 'every failed message refunded exactly once');
        const refunded = new Set(byType('refund').map((e) => e.messageId));
        assert.equal(refunded.size, debits, 'no message refunded twice');
        for (const d of byType('debit')) assert.ok(refunded.has(d.messageId), `debit of ${d.messageId} refunded`);
        const show = await srv.accountShow('acme');
        assert.equal(show.balance, show.ledgerSum);
        assert.equal(paise(show.balance), credited, 'the balance is back to the credits');
        assert.equal(entries[0].balanceAfter, show.balance);
        assert.equal(entries.reduce((a, e) => a + paise(e.amount), 0), paise(show.balance));
    });

    it('stops cleanly', async () => {
        await srv.stop();
    });
});
