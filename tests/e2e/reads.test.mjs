// Reads off the HTTP threads (api/reads.c): on PostgreSQL a read that waits on
// the database holds no HTTP thread. With one HTTP thread, a GET /otp/{id}
// stuck behind a table lock taken from another session must leave /healthz,
// other reads (GET /wallet, on another read thread) and new connections
// answering; once the lock goes, the stuck read answers the right body.
// Without the read threads the one HTTP thread would wait in libpq, and
// every other request with it. At a stop, a read still queued behind the
// stuck ones is answered 503, and the server exits 0 once the stuck ones end.
// A send of an account with a default template reads it once per
// limits.cache_ms (api/template_cache.h), not at every send on the HTTP thread.
// A cancel and a resend look their request up on a read thread too, and pass
// the parked connection on to their txn. A send or a verify that finds its key,
// its template or its key's tokens not in memory runs on a read thread too,
// and what it read serves the HTTP thread afterwards. So do a cancel's read of
// its request after its txn, and an admin credit's look-ups.
//
// PostgreSQL pass only ($OTPD_E2E_DB): SQLite's reads come from a local file
// and run on the HTTP thread by design (reads.c says why); there is no server
// whose lock a reader waits on for long.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { E2E_DB, startServer, sendOk, assertData, sleep, threadsNamed } from './lib/server.mjs';

/** A psql session kept open on url: run(sql) resolves with what a statement printed. */
function session(url) {
    const child = spawn('psql', ['-qAtX', '-v', 'ON_ERROR_STOP=1', '-d', url], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.on('error', (e) => (err = String(e)));
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    return {
        async run(sql, marker) {
            out = '';
            child.stdin.write(`${sql}\nSELECT '${marker}';\n`);
            const deadline = Date.now() + 10000;
            while (!out.includes(marker)) {
                if (Date.now() > deadline || child.exitCode !== null || err.startsWith('Error'))
                    throw new Error(`psql: ${sql}: ${err || 'no answer'}`);
                await sleep(10);
            }
        },
        /** Rolls back the open transaction (its locks go) and ends the session. */
        async release() {
            await this.run('ROLLBACK;', 'released');
            await this.end();
        },
        end() {
            child.stdin.end('\\q\n');
            return new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));
        },
        kill() {
            child.kill('SIGKILL');
        },
    };
}

/** Resolves with what promise resolves to, or with 'pending' if it has not settled after ms. */
const within = (promise, ms) => Promise.race([promise, sleep(ms).then(() => 'pending')]);

describe('reads off the HTTP threads (PostgreSQL)', { skip: !E2E_DB && 'needs $OTPD_E2E_DB (the PostgreSQL pass): SQLite reads on the HTTP thread by design' }, () => {
    let srv;
    let key;
    let lock;
    before(async () => {
        srv = await startServer({
            accounts: { acme: '100.00', tpl: '100.00', rated: '100.00' },
            // limits.cache_ms: the template a send used is kept for the whole file.
            env: { OTPD_SERVER_THREADS: '1', OTPD_STORE_READ_CONNS: '2', OTPD_LIMITS_CACHE_MS: '60000' },
        });
        key = srv.accounts.acme.key;
    });
    after(async () => {
        if (lock) lock.kill();
        if (srv) srv.cleanup('reads');
    });

    it('as many read threads as store.read_conns', async () => {
        assert.equal(await threadsNamed(srv.child.pid, 'otpd-read', 2), 2);
    });

    it('a status read stuck behind a lock: /healthz, the wallet and new connections still answer; then the read answers', async () => {
        const sent = await sendOk(srv, key, { phoneNumber: '+919876500001' });
        await srv.waitForSms('+919876500001');
        // The body to compare with at the end: once the dispatcher's report is in.
        let before;
        for (let i = 0; i < 250; i++) {
            before = await srv.request('GET', `/otp/${sent.requestId}`, { key });
            assertData(before, 200);
            if (before.json.data.messages[0] && before.json.data.messages[0].deliveryStatus === 'sent') break;
            await sleep(20);
        }
        assert.equal(before.json.data.status, 'pending');
        assert.equal(before.json.data.messages[0].deliveryStatus, 'sent');
        // (A key lookup reads api_keys, which the lock below leaves alone.)
        const wallet = await srv.request('GET', '/wallet', { key });
        assertData(wallet, 200);

        lock = session(srv.db);
        await lock.run('BEGIN; LOCK TABLE otp_requests IN ACCESS EXCLUSIVE MODE;', 'locked');
        // A fresh connection each (agent: false), so none can queue behind the stuck one.
        const stuck = srv.request('GET', `/otp/${sent.requestId}`, { key, agent: false, timeoutMs: 20000 });
        assert.equal(await within(stuck, 300), 'pending', 'the status read waits for the lock');

        for (let i = 0; i < 3; i++) {
            const h = await within(srv.request('GET', '/healthz', { agent: false }), 2000);
            assert.notEqual(h, 'pending', '/healthz did not answer while a read waits on the database');
            assert.equal(h.status, 200);
            const w = await within(srv.request('GET', '/wallet', { key, agent: false }), 2000);
            assert.notEqual(w, 'pending', 'GET /wallet did not answer while a read waits on the database');
            assertData(w, 200);
            assert.deepEqual(w.json, wallet.json);
        }
        assert.equal(await within(stuck, 0), 'pending', 'the status read is still waiting');

        await lock.release();
        lock = null;
        const r = await within(stuck, 10000);
        assert.notEqual(r, 'pending', 'the status read answered once the lock was gone');
        assertData(r, 200);
        assert.deepEqual(r.json, before.json);
    });

    it('a send with a default template, once warm, reads no template: it answers while the templates table is locked', async () => {
        const tkey = srv.accounts.tpl.key; // used by no other test: its key's lookup is read here first
        const added = await srv.cli(['template', 'add', 'tpl', '--name', 'login', '--body', '{{code}} LOGIN', '--json']);
        assert.equal(added.default, true);
        // Warm: the default, and templateId "default" (no template has that name: it names the default).
        await sendOk(srv, tkey, { phoneNumber: '+919876500003' }); // reads the key and the template
        assert.match((await srv.waitForSms('+919876500003')).text, /^\d{6} LOGIN$/);
        await sendOk(srv, tkey, { phoneNumber: '+919876500005', templateId: 'default' });
        assert.match((await srv.waitForSms('+919876500005')).text, /^\d{6} LOGIN$/);

        lock = session(srv.db);
        await lock.run('BEGIN; LOCK TABLE templates IN ACCESS EXCLUSIVE MODE;', 'locked');
        try {
            for (const [to, extra] of [['+919876500004', {}], ['+919876500006', { templateId: 'default' }]]) {
                const r = await within(srv.request('POST', '/otp/send', { key: tkey, agent: false, timeoutMs: 20000, body: { phoneNumber: to, ...extra } }), 3000);
                assert.notEqual(r, 'pending', `the send (${JSON.stringify(extra)}) waited for the templates table`);
                assertData(r, 201);
                assert.match((await srv.waitForSms(to)).text, /^\d{6} LOGIN$/, 'the cached template, rendered');
            }
        } finally {
            await lock.release();
            lock = null;
        }
    });

    it('a cancel and a resend stuck in their look-up hold no HTTP thread; then they run their txns', async () => {
        const a = await sendOk(srv, key, { phoneNumber: '+919876500007' });
        const b = await sendOk(srv, key, { phoneNumber: '+919876500008' });
        await srv.waitForSms('+919876500008');
        await srv.advanceClock(31000); // past the resend cooldown
        lock = session(srv.db);
        await lock.run('BEGIN; LOCK TABLE otp_requests IN ACCESS EXCLUSIVE MODE;', 'locked');
        let cancel, resend;
        try {
            cancel = srv.request('POST', `/otp/${a.requestId}/cancel`, { key, agent: false, timeoutMs: 20000 });
            resend = srv.request('POST', '/otp/resend', { key, agent: false, timeoutMs: 20000, body: { requestId: b.requestId } });
            assert.equal(await within(cancel, 300), 'pending', 'the cancel waits for the lock');
            assert.equal(await within(resend, 0), 'pending', 'the resend waits for the lock');
            for (let i = 0; i < 2; i++) {
                const h = await within(srv.request('GET', '/healthz', { agent: false }), 2000);
                assert.notEqual(h, 'pending', '/healthz did not answer while a cancel and a resend wait on the database');
                assert.equal(h.status, 200);
            }
        } finally {
            await lock.release();
            lock = null;
        }
        const c = await within(cancel, 10000);
        assert.notEqual(c, 'pending', 'the cancel answered once the lock was gone');
        assert.equal(assertData(c, 200).status, 'cancelled');
        const r = await within(resend, 10000);
        assert.notEqual(r, 'pending', 'the resend answered once the lock was gone');
        assert.equal(assertData(r, 200).requestId, b.requestId);
        assert.equal(assertData(await srv.request('GET', `/otp/${a.requestId}`, { key }), 200).status, 'cancelled');
        assert.equal(assertData(await srv.request('GET', `/otp/${b.requestId}`, { key }), 200).resendCount, 1);
    });

    /**
     * Locks table from a psql session, then runs start(), which sends requests
     * and returns their promises: each must wait for the lock while /healthz
     * answers (what names them), and answer once the lock is released.
     * Resolves with their answers.
     */
    async function answeredAfterLock(table, what, start) {
        lock = session(srv.db);
        await lock.run(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE;`, 'locked');
        let requests;
        try {
            requests = start();
            assert.equal(await within(requests[0], 300), 'pending', `${what}: not waiting for the lock`);
            for (const r of requests.slice(1)) assert.equal(await within(r, 0), 'pending', `${what}: not waiting for the lock`);
            for (let i = 0; i < 3; i++) {
                const h = await within(srv.request('GET', '/healthz', { agent: false }), 2000);
                assert.notEqual(h, 'pending', `/healthz did not answer while ${what}`);
                assert.equal(h.status, 200);
            }
        } finally {
            await lock.release();
            lock = null;
        }
        const answers = [];
        for (const r of requests) {
            const a = await within(r, 10000);
            assert.notEqual(a, 'pending', `${what}: no answer once the lock was gone`);
            answers.push(a);
        }
        return answers;
    }

    const post = (path, key, body) => srv.request('POST', path, { key, agent: false, timeoutMs: 20000, body });

    it('a send and a verify whose key is not cached yet read it on a read thread: /healthz answers while api_keys is locked', async () => {
        const sent = await sendOk(srv, key, { phoneNumber: '+919876500011' });
        const code = await srv.codeFor('+919876500011');
        const fresh = (await srv.cli(['key', 'create', 'acme', '--json'])).key; // never looked up yet
        const [s, v] = await answeredAfterLock('api_keys', 'a send and a verify wait for their key', () => [
            post('/otp/send', fresh, { phoneNumber: '+919876500012' }),
            post('/otp/verify', fresh, { requestId: sent.requestId, otpCode: code }),
        ]);
        assertData(s, 201);
        assert.equal(assertData(v, 200).verified, true);
        // Read once, on a read thread, for every thread: a verify on the HTTP
        // thread (a wrong code: its txn leaves api_keys alone) now answers
        // with api_keys locked.
        const other = await sendOk(srv, key, { phoneNumber: '+919876500016' });
        lock = session(srv.db);
        await lock.run('BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE;', 'locked');
        try {
            const wrong = code === '000000' ? '111111' : '000000';
            const r = await within(post('/otp/verify', fresh, { requestId: other.requestId, otpCode: wrong }), 3000);
            assert.notEqual(r, 'pending', 'the key read on the read thread was not kept for the HTTP thread');
            assert.equal(r.status, 400, r.text);
            assert.equal(r.json.code, 'otp_incorrect');
        } finally {
            await lock.release();
            lock = null;
        }
    });

    it('a send whose template is not cached yet reads it on a read thread: /healthz answers while templates is locked', async () => {
        const tkey = srv.accounts.tpl.key;
        await srv.cli(['template', 'add', 'tpl', '--name', 'signup', '--body', '{{code}} SIGNUP']);
        const [s] = await answeredAfterLock('templates', 'a send waits for its template', () => [
            post('/otp/send', tkey, { phoneNumber: '+919876500013', templateId: 'signup' }),
        ]);
        assertData(s, 201);
        assert.match((await srv.waitForSms('+919876500013')).text, /^\d{6} SIGNUP$/);
    });

    it('a send whose key needs more tokens asks the shared bucket on a read thread: /healthz answers while key_buckets is locked', async () => {
        const rkey = srv.accounts.rated.key;
        await srv.cli(['limits', 'set', 'rated', 'key_rate=1000', 'key_burst=1000']); // the others have no key rate
        await sendOk(srv, rkey, { phoneNumber: '+919876500014' }); // the key, its limits and a lease
        await srv.advanceClock(2000); // past the lease (OTP_KEY_LEASE_MS): the next send asks the store
        const [s] = await answeredAfterLock('key_buckets', 'a send waits for the shared bucket', () => [
            post('/otp/send', rkey, { phoneNumber: '+919876500015' }),
        ]);
        assertData(s, 201);
    });

    it("a cancel's read of its request after its txn runs on a read thread: /healthz answers while messages is locked", async () => {
        const sent = await sendOk(srv, key, { phoneNumber: '+919876500017' });
        await srv.waitForSms('+919876500017');
        const first = await post(`/otp/${sent.requestId}/cancel`, key);
        assert.equal(assertData(first, 200).status, 'cancelled');
        // Cancelling it again: the look-up and the txn (which refuses at the
        // request's row: no message is touched) read otp_requests only; the
        // read-back, which lists its messages, waits for the lock.
        const [again] = await answeredAfterLock('messages', "a cancel's read-back waits for the messages table", () => [
            post(`/otp/${sent.requestId}/cancel`, key),
        ]);
        assert.deepEqual(assertData(again, 200), first.json.data);
    });

    it('an admin credit looks its admin key up on a read thread: /healthz answers while admin_keys is locked', async () => {
        const admin = await srv.cli(['admin-key', 'create', '--json']);
        const balance = assertData(await srv.request('GET', '/wallet', { key }), 200).balance;
        const [c] = await answeredAfterLock('admin_keys', 'an admin credit waits for its admin key', () => [
            post('/admin/accounts/acme/credit', admin.key, { amount: '1.00' }),
        ]);
        assert.equal(assertData(c, 201).amount, '1.00');
        const after = assertData(await srv.request('GET', '/wallet', { key }), 200).balance;
        assert.equal(Math.round((Number(after) - Number(balance)) * 100), 100, `${balance} -> ${after}`);
    });

    it('SIGTERM with both read threads stuck: the read queued behind them is answered 503, and otpd exits 0 once they end', async () => {
        const sent = await sendOk(srv, key, { phoneNumber: '+919876500002' });
        lock = session(srv.db);
        await lock.run('BEGIN; LOCK TABLE otp_requests IN ACCESS EXCLUSIVE MODE;', 'locked');
        const read = () => srv.request('GET', `/otp/${sent.requestId}`, { key, agent: false, timeoutMs: 40000 }).catch((e) => e);
        const stuck = [read(), read()];
        await sleep(300); // both read threads have taken theirs
        const queued = read();
        assert.equal(await within(queued, 300), 'pending');

        const stopped = srv.stop(); // waits for the drain (10 s: they are in flight), then the reads
        const q = await within(queued, 20000);
        assert.notEqual(q, 'pending', 'the queued read was not answered at the stop');
        assert.equal(q.status, 503, q.text || String(q));
        assert.equal(q.json.code, 'unavailable');
        assert.equal(srv.exit, null, 'otpd waits for the reads still running');

        await lock.release();
        lock = null;
        await stopped; // exit 0, no sanitizer report
        for (const r of await Promise.all(stuck)) assert.ok(r instanceof Error || r.status === 200, String(r.status || r));
    });
});

describe('a stop with a write still waiting on the database (PostgreSQL)', { skip: !E2E_DB && 'needs $OTPD_E2E_DB (the PostgreSQL pass)' }, () => {
    let srv;
    let lock;
    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00' }, env: { OTPD_LIMITS_CACHE_MS: '60000' } });
    });
    after(async () => {
        if (lock) lock.kill();
        if (srv) srv.cleanup('reads-stop');
    });

    it('SIGTERM past the 10 s drain: otpd waits for the parked send, which answers 201, then exits 0', async () => {
        const key = srv.accounts.acme.key;
        await sendOk(srv, key, { phoneNumber: '+919876500009' }); // the key and the limits, cached
        lock = session(srv.db);
        await lock.run('BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE;', 'locked');
        const send = srv.request('POST', '/otp/send', { key, agent: false, timeoutMs: 60000, body: { phoneNumber: '+919876500010' } }).catch((e) => e);
        assert.equal(await within(send, 300), 'pending', 'the send waits for the lock in its txn');
        const stopped = srv.stop({ timeoutMs: 60000 });
        await sleep(11000); // past the drain
        assert.equal(srv.exit, null, 'otpd stopped the HTTP server under a parked send');
        assert.equal(await within(send, 0), 'pending');
        await lock.release();
        lock = null;
        const r = await within(send, 10000);
        assert.notEqual(r, 'pending', 'the send answered once the lock was gone');
        assertData(r, 201);
        await stopped; // exit 0, no sanitizer report
    });
});

describe('a stop that runs out of server.stop_timeout with a write still waiting (PostgreSQL)', { skip: !E2E_DB && 'needs $OTPD_E2E_DB (the PostgreSQL pass)' }, () => {
    let srv;
    let lock;
    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00' }, env: { OTPD_LIMITS_CACHE_MS: '60000', OTPD_SERVER_STOP_TIMEOUT: '3' } });
    });
    after(async () => {
        if (lock) lock.kill();
        if (srv) srv.cleanup('reads-stop-timeout');
    });

    it('SIGTERM: at server.stop_timeout otpd exits 1 as a kill would, without freeing the parked send under its txn; a retry with its idempotencyKey gets its answer', async () => {
        const key = srv.accounts.acme.key;
        await sendOk(srv, key, { phoneNumber: '+919876500011' }); // the key and the limits, cached
        const before = assertData(await srv.request('GET', '/wallet', { key }), 200).balance;
        lock = session(srv.db);
        await lock.run('BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE;', 'locked');
        const body = { phoneNumber: '+919876500012', idempotencyKey: 'stop-timeout-1' };
        const send = srv.request('POST', '/otp/send', { key, agent: false, timeoutMs: 60000, body }).catch((e) => e);
        assert.equal(await within(send, 300), 'pending', 'the send waits for the lock in its txn');
        const t0 = Date.now();
        const stopped = srv.stop({ timeoutMs: 20000, code: 1 });
        const r = await within(send, 10000);
        assert.notEqual(r, 'pending', 'the connection closed when otpd exited');
        assert.ok(r instanceof Error, `the parked send got no answer, not ${r && r.status}`);
        await stopped; // exit 1, no sanitizer report
        const took = Date.now() - t0;
        assert.ok(took >= 2500 && took < 8000, `otpd exited ${took} ms after SIGTERM, not about server.stop_timeout (3 s) after it`);
        assert.match(srv.log(), /event=stop_timeout parked=1 /);
        // Let go only now: had otpd freed the request and closed the store, the
        // txn's done callback would run now, on freed memory.
        await lock.release();
        lock = null;

        // The send's statement was sent before the exit, so PostgreSQL ran it to
        // its end once the lock went, as after a kill: committed, charged, and
        // its answer is the retry's.
        await srv.start();
        const retry = await srv.request('POST', '/otp/send', { key, body });
        const d = assertData(retry, 201);
        assert.equal(retry.headers['idempotent-replayed'], 'true', 'the retry replays the committed send');
        await srv.waitForSms('+919876500012');
        const spent = (Number(before) - Number(assertData(await srv.request('GET', '/wallet', { key }), 200).balance)).toFixed(2);
        assert.equal(spent, '0.25', 'one send charged, once');
        assert.equal(assertData(await srv.request('GET', `/otp/${d.requestId}`, { key }), 200).status, 'pending');
        await srv.stop();
    });

    it('SIGTERM: a read still running at server.stop_timeout does not hold the stop up to its 30 s statement timeout', async () => {
        const key = srv.accounts.acme.key;
        await srv.start();
        const sent = await sendOk(srv, key, { phoneNumber: '+919876500013' });
        lock = session(srv.db);
        await lock.run('BEGIN; LOCK TABLE otp_requests IN ACCESS EXCLUSIVE MODE;', 'locked');
        const read = srv.request('GET', `/otp/${sent.requestId}`, { key, agent: false, timeoutMs: 60000 }).catch((e) => e);
        assert.equal(await within(read, 300), 'pending', 'the status read waits for the lock on a read thread');
        const t0 = Date.now();
        await srv.stop({ timeoutMs: 20000, code: 1 });
        const took = Date.now() - t0;
        assert.ok(took >= 2500 && took < 8000, `otpd exited ${took} ms after SIGTERM, not about server.stop_timeout (3 s) after it`);
        assert.match(srv.log(), /event=stop_timeout parked=1 /);
        const r = await within(read, 5000);
        assert.ok(r instanceof Error, `the stuck read got no answer, not ${r && r.status}`);
        await lock.release();
        lock = null;
    });
});

describe("a stop with a cancel's read-back still queued (PostgreSQL)", { skip: !E2E_DB && 'needs $OTPD_E2E_DB (the PostgreSQL pass)' }, () => {
    let srv;
    const locks = [];
    before(async () => {
        srv = await startServer({
            accounts: { acme: '100.00' },
            env: { OTPD_SERVER_THREADS: '1', OTPD_STORE_READ_CONNS: '1', OTPD_LIMITS_CACHE_MS: '60000' },
        });
    });
    after(async () => {
        for (const l of locks) l.kill();
        if (srv) srv.cleanup('reads-stop-cancel');
    });

    it('SIGTERM: the read-back of a committed cancel is not refused 503; it answers 200 once it can read, then otpd exits 0', async () => {
        const key = srv.accounts.acme.key;
        const sent = await sendOk(srv, key, { phoneNumber: '+919876500018' });
        await srv.waitForSms('+919876500018');
        for (let i = 0; i < 250; i++) {
            // The dispatcher's report in: nothing of it may wait behind the locks below.
            const s = assertData(await srv.request('GET', `/otp/${sent.requestId}`, { key }), 200);
            if (s.messages[0] && s.messages[0].deliveryStatus === 'sent') break;
            await sleep(20);
        }
        const first = await srv.request('POST', `/otp/${sent.requestId}/cancel`, { key });
        assert.equal(assertData(first, 200).status, 'cancelled');

        // The cancel again: its txn waits for the request's row, ...
        const row = session(srv.db);
        locks.push(row);
        await row.run(`BEGIN; SELECT 1 FROM otp_requests WHERE public_id = '${sent.requestId}' FOR UPDATE;`, 'locked');
        const again = srv.request('POST', `/otp/${sent.requestId}/cancel`, { key, agent: false, timeoutMs: 60000 }).catch((e) => e);
        assert.equal(await within(again, 300), 'pending', 'the cancel waits for the row in its txn');
        // ... the one read thread waits for the messages table in a status read, ...
        const table = session(srv.db);
        locks.push(table);
        await table.run('BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE;', 'locked');
        const stuck = srv.request('GET', `/otp/${sent.requestId}`, { key, agent: false, timeoutMs: 60000 }).catch((e) => e);
        assert.equal(await within(stuck, 300), 'pending', 'the status read waits for the messages table');
        // ... and the txn, let go, queues its read-back behind that read.
        await row.release();
        await sleep(300);
        assert.equal(await within(again, 0), 'pending', "the cancel's read-back waits behind the status read");
        const h = await within(srv.request('GET', '/healthz', { agent: false }), 2000);
        assert.notEqual(h, 'pending', "/healthz: the cancel's read-back holds the one HTTP thread");
        assert.equal(h.status, 200);

        const stopped = srv.stop({ timeoutMs: 60000 });
        await sleep(11000); // past the drain: the read threads have stopped
        assert.equal(srv.exit, null, 'otpd waits for the cancel and the read');
        assert.equal(await within(again, 0), 'pending', 'the read-back waits for the messages table on its HTTP thread');
        await table.release();
        const a = await within(again, 10000);
        assert.notEqual(a, 'pending', 'the cancel answered once the lock was gone');
        assert.deepEqual(assertData(a, 200), first.json.data);
        const s = await within(stuck, 10000);
        assert.notEqual(s, 'pending');
        assert.equal(assertData(s, 200).status, 'cancelled');
        await stopped; // exit 0, no sanitizer report
    });
});
