// Two otpd nodes on one PostgreSQL database (SPEC 6, issue 6), driven in
// parallel: the guarantees of one node hold across both. Attempts are counted
// once however the guesses are spread, a code verifies once, the wallet never
// goes below zero and stays equal to its ledger, one idempotency key makes one
// request, both dispatchers share the outbox without sending a message twice,
// and when one node is killed (-9) the other delivers what it had claimed once
// its lease runs out.
//
// Runs only in the PostgreSQL pass of scripts/test.sh ($OTPD_E2E_DB): the nodes
// share node A's database and its server secret (a copy of A's secret file in
// B's data directory), each writes its own sms.jsonl.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { E2E_DB, Server, startServer, phones, sendOk, assertError, paise, sleep } from './lib/server.mjs';

const phone = phones(61);
const bulkPhone = phones(62);
const killPhone = phones(63);
const LEASE_S = 3;
const BATCH = 64; // delivery.batch: the most a node can hold claimed at once
const ENV = {
    OTPD_DELIVERY_LEASE: String(LEASE_S),
    OTPD_DELIVERY_BATCH: String(BATCH),
    // Thousands of sends to one prefix from one key, no verifications: not abuse here.
    OTPD_LIMITS_DEFAULTS: 'key_rate=0,pump_min_sends=0,pump_country_min_sends=0',
};

const wrong = (code) => code.slice(0, -1) + String((Number(code.at(-1)) + 1) % 10);
const tally = (rs) => {
    const t = {};
    for (const r of rs) {
        let k = `${r.status} ${r.json && r.json.code}`;
        if (r.status === 200) k = `200 ${JSON.stringify(r.json)}`;
        if (r.status === 201) k = '201';
        t[k] = (t[k] || 0) + 1;
    }
    return t;
};

/** Runs fn(i) for i < n with at most `width` calls in flight; resolves their results. */
async function inParallel(n, width, fn) {
    const out = new Array(n);
    let next = 0;
    await Promise.all(
        Array.from({ length: Math.min(width, n) }, async () => {
            for (let i = next++; i < n; i = next++) out[i] = await fn(i);
        }),
    );
    return out;
}

/** One integer from the shared database (psql is there whenever $OTPD_E2E_DB is). */
function sqlInt(db, query) {
    const out = execFileSync('psql', ['-qAtX', '-v', 'ON_ERROR_STOP=1', '-d', db, '-c', query], {
        encoding: 'utf8',
    });
    return Number(out.trim());
}

/** to -> number of SMS written for it, over both nodes' sms.jsonl. */
function deliveries(nodes) {
    const count = new Map();
    for (const n of nodes) for (const m of n.readSms()) count.set(m.to, (count.get(m.to) || 0) + 1);
    return count;
}

/** The code of the SMS to `to`, whichever node delivered it (waits for it). */
async function codeFor(nodes, to) {
    const m = await waitFor(`an SMS to ${to}`, 10000, () =>
        nodes.flatMap((n) => n.readSms()).find((x) => x.to === to),
    );
    return m.text.match(/^\d+/)[0];
}

async function waitFor(what, timeoutMs, check) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const v = check();
        if (v) return v;
        if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
        await sleep(50);
    }
}

describe('two nodes on one PostgreSQL', { skip: !E2E_DB && 'needs $OTPD_E2E_DB (the PostgreSQL pass)' }, () => {
    let a;
    let b;
    let nodes;
    let key;
    before(async () => {
        a = await startServer({
            accounts: { acme: '5000.00', poor: '2.50', kill: '1000.00', limits: '100.00', bucket: '1.00' },
            env: ENV,
        });
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-'));
        fs.copyFileSync(path.join(a.dataDir, 'secret'), path.join(dir, 'secret'));
        fs.chmodSync(path.join(dir, 'secret'), 0o600);
        b = new Server(dir, { db: a.db });
        b.accounts = a.accounts;
        b.keys = a.keys; // for B's log check
        await b.start({ env: ENV });
        nodes = [a, b];
        key = a.accounts.acme.key;
    });
    after(() => {
        if (b) b.cleanup('multinode-b');
        if (a) a.cleanup('multinode-a');
    });

    it('50 parallel wrong guesses over both nodes: exactly maxAttempts counted', async () => {
        const to = phone();
        const d = await sendOk(a, key, { phoneNumber: to, maxAttempts: 3 });
        const code = await codeFor(nodes, to);
        const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => nodes[i % 2].verify(key, d.requestId, wrong(code))));
        assert.deepEqual(tally(rs), { '400 otp_incorrect': 3, '410 otp_attempts_exhausted': 47 });
        const left = rs.filter((r) => r.status === 400).map((r) => r.json.details.attemptsLeft).sort();
        assert.deepEqual(left, [0, 1, 2], 'each counted guess saw its own attemptsLeft');
        assertError(await b.verify(key, d.requestId, code), 410, 'otp_attempts_exhausted', 'the right code after');
    });

    it('50 parallel right guesses over both nodes: exactly one success', async () => {
        const to = phone();
        const d = await sendOk(b, key, { phoneNumber: to });
        const code = await codeFor(nodes, to);
        const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => nodes[i % 2].verify(key, d.requestId, code)));
        assert.deepEqual(tally(rs), { '200 {"data":{"verified":true}}': 1, '409 otp_already_verified': 49 });
    });

    it('parallel sends over both nodes beyond the balance: balance >= 0 and equal to the ledger sum', async () => {
        const poor = a.accounts.poor.key; // 2.50 = 10 sends of 0.25
        const rs = await Promise.all(
            Array.from({ length: 40 }, (_, i) => nodes[i % 2].send(poor, { phoneNumber: phone() })),
        );
        const t = tally(rs);
        assert.deepEqual(t, { 201: 10, '402 insufficient_balance': 30 }, JSON.stringify(t));
        const show = await b.accountShow('poor');
        assert.equal(show.balance, '0.00');
        assert.equal(show.ledgerSum, show.balance);
        assert.equal(show.requests, 10);
        assert.equal(show.messages, 10);
        assert.equal(show.ledgerEntries, 11);
    });

    it('one idempotency key sent to both nodes at once: one request, one charge, one SMS', async () => {
        const before = await a.accountShow('acme');
        const body = { phoneNumber: phone(), idempotencyKey: `multi-${Date.now()}` };
        const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => nodes[i % 2].send(key, body)));
        const created = rs.filter((r) => r.status === 201);
        const others = rs.filter((r) => r.status !== 201);
        for (const r of others) assertError(r, 409, 'idempotency_in_progress', 'a duplicate still in flight');
        assert.ok(created.length >= 1);
        const first = created.filter((r) => r.headers['idempotent-replayed'] !== 'true');
        assert.equal(first.length, 1, `exactly one original answer: ${JSON.stringify(tally(rs))}`);
        const ids = new Set(created.map((r) => r.json.data.requestId));
        assert.equal(ids.size, 1, 'every replay names the same request');
        const after = await a.accountShow('acme');
        assert.equal(after.requests, before.requests + 1);
        assert.equal(paise(after.balance), paise(before.balance) - 25);
        await waitFor('its SMS', 10000, () => deliveries(nodes).get(body.phoneNumber) === 1);
        await sleep(300);
        assert.equal(deliveries(nodes).get(body.phoneNumber), 1);
    });

    it('abuse limits hold across nodes: one number\'s send window and its lockout after wrong codes', async () => {
        const lkey = a.accounts.limits.key;
        await a.cli(['limits', 'set', 'limits', 'phone_interval=0']); // the window alone: 5 per 15 min
        await sleep(1200); // both nodes' limits caches (limits.cache_ms) expire
        const to = phone();
        const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => nodes[i % 2].send(lkey, { phoneNumber: to })));
        const t = tally(rs);
        assert.deepEqual(t, { 201: 5, '429 rate_limited': 195 }, JSON.stringify(t));
        for (const r of rs.filter((x) => x.status === 429)) assert.equal(r.json.details.reason, 'phone_send_limit');

        // Two of those requests, wrong codes at both from both nodes at once: the
        // number's failure count is one, so exactly fail_max (5) are counted.
        const ids = rs.filter((r) => r.status === 201).map((r) => r.json.data.requestId);
        const guesses = await Promise.all(
            Array.from({ length: 40 }, (_, i) => nodes[i % 2].verify(lkey, ids[i % 2], '000000')),
        );
        const g = tally(guesses);
        assert.equal(g['400 otp_incorrect'], 5, `wrong codes counted: ${JSON.stringify(g)}`);
        // A third request of the number, never guessed at: locked on either node.
        assertError(await a.verify(lkey, ids[2], '123456'), 429, 'phone_locked', 'node A');
        assertError(await b.verify(lkey, ids[2], '123456'), 429, 'phone_locked', 'node B');
    });

    it('one API key over both nodes: one token bucket, not one per node', async () => {
        const bkey = a.accounts.bucket.key;
        await a.cli(['limits', 'set', 'bucket', 'key_rate=1', 'key_burst=20']);
        await sleep(1200); // both nodes' limits caches (limits.cache_ms) expire
        const t0 = Date.now();
        const rs = await Promise.all(
            Array.from({ length: 80 }, (_, i) => nodes[i % 2].request('GET', '/wallet', { key: bkey })),
        );
        const secs = (Date.now() - t0) / 1000;
        const ok = rs.filter((r) => r.status === 200);
        const refused = rs.filter((r) => r.status !== 200);
        for (const r of refused) {
            assertError(r, 429, 'rate_limited', 'past the bucket');
            assert.equal(r.json.details.reason, 'key_rate');
            assert.ok(r.json.details.retryAfter >= 1, JSON.stringify(r.json.details));
            assert.equal(r.headers['retry-after'], String(r.json.details.retryAfter));
        }
        // The burst of 20 and 1/s, across both nodes; two buckets would give ~40.
        assert.ok(ok.length >= 20 && ok.length <= 20 + Math.ceil(secs) + 1, `accepted ${ok.length} in ${secs} s`);
        // Both nodes drew on it: each refused what the one bucket could not give
        // (which node answered the 20 depends on which ran first).
        for (const n of [0, 1]) {
            const refusedHere = rs.filter((r, i) => i % 2 === n && r.status === 429).length;
            assert.ok(refusedHere >= 40 - ok.length, `node ${n} refused ${refusedHere}`);
        }
    });

    it('10,000 sends through both nodes: each message delivered exactly once by the two dispatchers', async (t) => {
        const N = 10000;
        const t0 = Date.now();
        const to = Array.from({ length: N }, () => bulkPhone());
        // 10-digit codes: thousands of 6-digit ones would match digit runs of the logs by chance.
        const rs = await inParallel(N, 64, (i) => nodes[i % 2].send(key, { phoneNumber: to[i], codeLength: 10 }));
        const bad = rs.filter((r) => r.status !== 201);
        assert.equal(bad.length, 0, `not 201: ${bad.slice(0, 3).map((r) => `${r.status} ${r.text}`)}`);
        const sent = Date.now();
        const count = await waitFor('every message delivered', 90000, () => {
            const c = deliveries(nodes);
            return to.every((p) => c.has(p)) && c;
        });
        const done = Date.now();
        await sleep(500); // a late duplicate would show up by now
        const final = deliveries(nodes);
        const twice = to.filter((p) => final.get(p) !== 1);
        assert.deepEqual(twice, [], 'delivered more than once');
        const byNode = nodes.map((n) => n.readSms().filter((m) => m.to.startsWith(to[0].slice(0, 7))).length);
        t.diagnostic(
            `${N} sends in ${sent - t0} ms (${Math.round((N * 1000) / (sent - t0))}/s), all delivered ` +
                `${done - t0} ms after the first; node A delivered ${byNode[0]}, node B ${byNode[1]}`,
        );
        assert.ok(byNode[0] > 0 && byNode[1] > 0, 'both dispatchers took part');
        assert.equal(count.size >= N, true);
        assert.equal(sqlInt(a.db, "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')"), 0);
        const show = await a.accountShow('acme');
        assert.equal(show.balance, show.ledgerSum);
    });

    it('kill -9 one node while both deliver: the other delivers the rest after the lease, none lost', async (t) => {
        const N = 4000;
        const kkey = a.accounts.kill.key;
        const to = Array.from({ length: N }, () => killPhone());
        const mine = new Set(to);
        const bDelivered = () => b.readSms().filter((m) => mine.has(m.to)).length;
        const outcome = new Array(N).fill('unknown'); // 201 | refused | unknown (cut by the kill)
        let killedAt = null;
        const watcher = (async () => {
            // Kill B once its dispatcher is busy: it has delivered some of this stream.
            await waitFor('B delivering', 60000, () => bDelivered() >= 300);
            killedAt = Date.now();
            await b.kill9();
        })();
        await inParallel(N, 48, async (i) => {
            // After the kill every send goes to A (a load balancer takes B out).
            const node = killedAt === null && i % 2 ? b : a;
            try {
                const r = await node.send(kkey, { phoneNumber: to[i], codeLength: 10 });
                outcome[i] = r.status === 201 ? '201' : 'refused';
            } catch {
                outcome[i] = 'unknown';
            }
        });
        await watcher;
        const created = to.filter((_, i) => outcome[i] === '201');
        const unknown = to.filter((_, i) => outcome[i] === 'unknown');
        assert.ok(created.length >= N - 100, `only ${created.length} of ${N} sends answered 201`);

        // Everything committed is delivered, by A once B's leases have run out.
        const committed = sqlInt(
            a.db,
            `SELECT count(*) FROM messages m JOIN accounts c ON c.id = m.account_id WHERE c.name = 'kill'`,
        );
        await waitFor('every committed message delivered', 60000, () => {
            const c = deliveries(nodes);
            return created.every((p) => c.has(p)) && to.filter((p) => c.has(p)).length >= committed;
        });
        const doneAt = Date.now();
        // What B wrote to its gateway but had not recorded when it died is
        // delivered again by A once B's lease runs out: wait for the outbox to
        // settle before counting duplicates.
        await waitFor('the outbox empty', LEASE_S * 1000 + 15000, () =>
            sqlInt(a.db, "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')") === 0,
        );
        await sleep(500);
        const c = deliveries(nodes);
        const lost = created.filter((p) => !c.has(p));
        assert.deepEqual(lost, [], 'committed messages never delivered');
        const dups = to.filter((p) => (c.get(p) || 0) > 1);
        const retaken = sqlInt(
            a.db,
            `SELECT count(*) FROM messages m JOIN accounts c ON c.id = m.account_id WHERE c.name = 'kill' AND m.attempts > 1`,
        );
        t.diagnostic(
            `killed B after ${bDelivered()} of its deliveries; ` +
                `${created.length} × 201, ${unknown.length} cut by the kill, ${committed} committed; ` +
                `${retaken} claimed again after B's lease, ${dups.length} delivered twice; ` +
                `all delivered ${doneAt - killedAt} ms after the kill (lease ${LEASE_S} s)`,
        );
        // At-least-once: only what B had claimed and maybe written when it died can
        // go out twice, and it held at most one batch.
        assert.ok(dups.length <= BATCH, `${dups.length} duplicates > one batch (${BATCH})`);
        assert.equal(sqlInt(a.db, "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')"), 0);
        const show = await a.accountShow('kill');
        assert.equal(show.balance, show.ledgerSum);
        assert.equal(show.requests, committed);
        await b.start(); // the node comes back and joins again
    });

    it('SIGTERM: both nodes exit 0, no sanitizer report, no code or key in the logs', async () => {
        await b.stop();
        await a.stop();
    });
});
