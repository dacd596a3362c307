// The wallet (SPEC 1.8, 2): GET /wallet, a send charges 0.25 atomically with the
// request, and a wallet that cannot cover a send gets 402 insufficient_balance with
// no request, no outbox message and no ledger entry; a credit lets sends through again.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, phones, sendOk, assertError, assertData, ledgerView, sleep } from './lib/server.mjs';

const phone = phones(17);

describe('wallet', () => {
    let srv;
    before(async () => {
        srv = await startServer({ accounts: { short: '0.30', empty: '0.00' } });
    });
    after(() => srv && srv.cleanup('wallet'));

    it('GET /wallet: exactly balance, currency, pricePerSegment, lowBalanceThreshold', async () => {
        const d = assertData(await srv.request('GET', '/wallet', { key: srv.accounts.short.key }), 200, [
            'balance',
            'currency',
            'pricePerSegment',
            'lowBalanceThreshold',
        ]);
        assert.deepEqual(d, { balance: '0.30', currency: 'INR', pricePerSegment: '0.25', lowBalanceThreshold: '100.00' });
        const e = assertData(await srv.request('GET', '/wallet', { key: srv.accounts.empty.key }), 200);
        assert.equal(e.balance, '0.00');
    });

    it('0.30 of credit: the first send 201, the second 402 insufficient_balance; nothing stored for it', async () => {
        const key = srv.accounts.short.key;
        const a = phone();
        const b = phone();
        const d = await sendOk(srv, key, { phoneNumber: a });
        const after1 = await srv.accountShow('short');
        assert.deepEqual(ledgerView(after1), {
            balance: '0.05',
            ledgerSum: '0.05',
            requests: 1,
            messages: 1,
            ledgerEntries: 2,
        });
        const r = await srv.send(key, { phoneNumber: b });
        assertError(r, 402, 'insufficient_balance', 'second send');
        assert.deepEqual(ledgerView(await srv.accountShow('short')), ledgerView(after1), 'no request, no message, no ledger entry');
        assert.equal(assertData(await srv.request('GET', '/wallet', { key }), 200).balance, '0.05');

        // The first one works; no SMS ever goes to the refused number.
        const v = await srv.verify(key, d.requestId, await srv.codeFor(a));
        assert.deepEqual(v.json, { data: { verified: true } });
        await sleep(300);
        assert.equal(srv.readSms().filter((m) => m.to === b).length, 0, 'SMS sent for a refused send');
    });

    it('an empty wallet: 402 and nothing stored', async () => {
        const key = srv.accounts.empty.key;
        const before0 = ledgerView(await srv.accountShow('empty'));
        assertError(await srv.send(key, { phoneNumber: phone() }), 402, 'insufficient_balance');
        assert.deepEqual(ledgerView(await srv.accountShow('empty')), before0);
        assert.equal(before0.requests, 0);
    });

    it('a credit from the CLI while the server runs lets sends through again', async () => {
        const key = srv.accounts.short.key;
        const c = await srv.cli(['wallet', 'credit', 'short', '0.20', '--note', 'top-up', '--json']);
        assert.equal(c.balance, '0.25');
        const to = phone();
        await sendOk(srv, key, { phoneNumber: to });
        const s = await srv.accountShow('short');
        assert.deepEqual(ledgerView(s), { balance: '0.00', ledgerSum: '0.00', requests: 2, messages: 2, ledgerEntries: 4 });
        assertError(await srv.send(key, { phoneNumber: phone() }), 402, 'insufficient_balance', 'at exactly 0.00');
        assert.equal((await srv.accountShow('short')).balance, '0.00');
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
