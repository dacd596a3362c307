// Durability (SPEC 1.3, 2, 5, 7): kill -9 in the middle of a stream of sends, and
// SIGTERM in the middle of a burst. After a restart on the same data directory every
// send that was answered 201 is there and verifiable (the dispatcher delivers what
// was committed but not yet sent), no wallet debit exists without its request, no
// SMS goes out for a request that was not committed, and the balance equals the sum
// of the ledger.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, phones, paise } from './lib/server.mjs';

const phone = phones(15);
const CREDIT = '10000.00'; // 40 000 sends: the stream is never short of money

/**
 * Sends from `workers` loops until stopped; calls onCreated after each 201.
 * Resolves {created: [{to, requestId}], unknown: [to…], other: [status…]}.
 */
function stream(srv, key, { workers, onCreated }) {
    const out = { created: [], unknown: [], other: [], stopped: false };
    const loop = async () => {
        while (!out.stopped) {
            const to = phone();
            let r;
            try {
                r = await srv.send(key, { phoneNumber: to, codeLength: 10 });
            } catch {
                out.unknown.push(to); // the connection died: committed or not, we cannot tell
                await new Promise((res) => setTimeout(res, 5));
                continue;
            }
            if (r.status === 201) {
                out.created.push({ to, requestId: r.json.data.requestId });
                onCreated(out);
            } else if (r.status === 503) {
                out.unknown.push(to);
            } else {
                out.other.push(`${r.status} ${r.text}`);
            }
        }
    };
    out.done = Promise.all(Array.from({ length: workers }, loop)).then(() => out);
    return out;
}

/**
 * Every fresh 201 verifies, and the account's books are consistent with all the
 * 201s so far (totals.created) and the sends whose fate is unknown (totals.unknown).
 */
async function checkAfterRestart(srv, key, fresh, totals) {
    const codes = await srv.codesFor(fresh.map((c) => c.to), { timeoutMs: 30000 });
    const rs = await Promise.all(fresh.map((c) => srv.verify(key, c.requestId, codes.get(c.to))));
    const bad = rs.map((r, i) => [fresh[i], r]).filter(([, r]) => r.status !== 200);
    assert.deepEqual(
        bad.map(([c, r]) => `${c.requestId}: ${r.status} ${r.text}`),
        [],
        'every send answered 201 verifies after the restart',
    );

    const a = await srv.accountShow('acme');
    assert.equal(a.balance, a.ledgerSum, 'balance = sum of the ledger');
    assert.equal(a.ledgerEntries - 1, a.requests, 'one debit per request (plus the one credit): no debit without its request');
    assert.equal(a.messages, a.requests, 'one outbox message per request');
    assert.equal(paise(a.balance), paise(CREDIT) - 25 * a.requests);
    const { created, unknown } = totals;
    assert.ok(a.requests >= created, `requests ${a.requests} < ${created} answered 201`);
    assert.ok(a.requests <= created + unknown, `requests ${a.requests} > ${created} answered 201 + ${unknown} in flight`);

    // Every committed request's SMS goes out (at least once), and no other.
    const deadline = Date.now() + 30000;
    let distinct;
    for (;;) {
        distinct = new Set(srv.readSms().map((m) => m.to));
        if (distinct.size >= a.requests || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(distinct.size, a.requests, 'one SMS destination per committed request');
}

describe('durability', () => {
    let srv;
    let key;
    const totals = { created: 0, unknown: 0 };
    before(async () => {
        // A short outbox lease, so that messages claimed by a killed server are taken
        // up again within seconds instead of the default 30.
        srv = await startServer({ accounts: { acme: CREDIT }, env: { OTPD_DELIVERY_LEASE: '3' } });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('durability'));

    it('kill -9 in the middle of a stream of sends, three times: every 201 survives and verifies', async (t) => {
        const created = [];
        const snapshots = [];
        for (let round = 0; round < 3; round++) {
            let killing = null;
            const kill = (o) => {
                if (!killing) {
                    killing = srv.kill9().then(() => {
                        o.stopped = true;
                    });
                }
            };
            let timer = null;
            const s = stream(srv, key, {
                workers: 8,
                // Round 0 kills right after a 201 arrives; the others at a random
                // moment 0–400 ms after the first 201 (so that one always exists).
                onCreated: (o) => {
                    if (round === 0 && o.created.length >= 40) kill(o);
                    if (round > 0 && !timer) timer = setTimeout(() => kill(o), Math.floor(Math.random() * 400));
                },
            });
            const guard = setTimeout(() => kill(s), 20000); // no 201 at all: stop anyway
            const out = await s.done;
            clearTimeout(guard);
            clearTimeout(timer);
            await killing;
            assert.deepEqual(out.other, [], 'only 201s (or dropped connections) while streaming');
            assert.ok(out.created.length >= 1, `round ${round}: no send succeeded before the kill`);
            created.push(...out.created);
            totals.created += out.created.length;
            totals.unknown += out.unknown.length;
            // What a thief would find on disk right after the crash, before any restart.
            const snap = fs
                .readdirSync(srv.dataDir)
                .filter((f) => f.startsWith('otpd.db'))
                .map((f) => fs.readFileSync(path.join(srv.dataDir, f)));
            snapshots.push(...snap);
            const sent = new Set(srv.readSms().map((m) => m.to));
            t.diagnostic(`round ${round}: ${out.created.length} × 201, ${out.unknown.length} in flight, ${sent.size} SMS written before the kill`);
            await srv.start();
        }
        await checkAfterRestart(srv, key, created, totals);

        // Messages still in the outbox at a crash were on disk encrypted: no code in the snapshots.
        const codes = [...new Set(srv.readSms().map((m) => m.text.match(/^\d+/)[0]))];
        assert.ok(codes.length >= created.length);
        for (const code of codes) {
            assert.equal(code.length, 10);
            for (const b of snapshots) assert.ok(!b.includes(Buffer.from(code)), `code ${code} in the database after kill -9`);
        }
    });

    it('SIGTERM during a burst of sends: exits 0, every 201 is durable', async () => {
        if (!srv.child || srv.exit) await srv.start(); // the test before failed half-way
        const created = [];
        let unknown = 0;
        let stopping = null;
        const burst = Array.from({ length: 80 }, async () => {
            const to = phone();
            try {
                const r = await srv.send(key, { phoneNumber: to, codeLength: 10 });
                if (r.status === 201) {
                    created.push({ to, requestId: r.json.data.requestId });
                    if (!stopping) stopping = srv.stop(); // SIGTERM with the rest in flight
                } else {
                    assert.equal(r.status, 503, `during shutdown: ${r.status} ${r.text}`);
                    assert.equal(r.json.code, 'unavailable');
                    unknown++;
                }
            } catch (e) {
                if (e.code === 'ERR_ASSERTION') throw e;
                unknown++;
            }
        });
        await Promise.all(burst);
        assert.ok(stopping, 'at least one send succeeded before SIGTERM');
        await stopping; // asserts exit status 0, a clean log
        assert.ok(created.length >= 1);

        totals.created += created.length;
        totals.unknown += unknown;
        await srv.start();
        await checkAfterRestart(srv, key, created, totals);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
