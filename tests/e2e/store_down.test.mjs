// The store down (SPEC 1.10 "503 unavailable (store down, shutting down)", 1.11
// "/readyz … store reachable"): a running server whose PostgreSQL database
// refuses connections answers /readyz and every API call 503 `unavailable` —
// never 401 (a key it cannot look up is not a wrong key), never 500 — whether the
// key is in its key cache or has never been seen; once the database takes
// connections again it is ready and works without a restart, and nothing
// committed before the outage is lost.
//
// PostgreSQL pass only ($OTPD_E2E_DB): the outage is made with
// `ALTER DATABASE … ALLOW_CONNECTIONS false` and pg_terminate_backend() of the
// database's sessions, from the maintenance database (the suite's role is a
// superuser on the test cluster). SQLite is a file inside the data directory,
// opened once at start: there is no server to take away from a running otpd.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { E2E_DB, startServer, phones, sendOk, assertData, assertError, sleep } from './lib/server.mjs';

const phone = phones(64);

/** psql on the maintenance database of $OTPD_E2E_DB; returns its output. */
function admin(sql) {
    return execFileSync('psql', ['-qAtX', '-v', 'ON_ERROR_STOP=1', '-d', E2E_DB, '-c', sql], {
        encoding: 'utf8',
        timeout: 30000,
    }).trim();
}

describe('store down: 503 unavailable, then recovery', { skip: !E2E_DB && 'needs $OTPD_E2E_DB (the PostgreSQL pass): a SQLite store cannot be taken away from a running server' }, () => {
    let srv;
    let dbName;
    let key; // used before the outage: in the server's key cache
    let freshKey; // created before the outage, never presented before it
    let pending; // a request sent before the outage, still pending
    let down = false;

    const setAllowConnections = (allow) => admin(`ALTER DATABASE ${dbName} ALLOW_CONNECTIONS ${allow}`);

    before(async () => {
        // One HTTP thread, so that the key cache (per thread) certainly holds the
        // used key; and a long cache, so that it still holds it during the outage.
        srv = await startServer({
            accounts: { acme: '100.00' },
            env: { OTPD_SERVER_THREADS: '1', OTPD_LIMITS_CACHE_MS: '60000' },
        });
        dbName = new URL(srv.db).pathname.slice(1);
        assert.match(dbName, /^otpd_e2e_\w+$/);
        key = srv.accounts.acme.key;
        freshKey = (await srv.createKey('acme', { name: 'never-used' })).key;
    });
    after(() => {
        if (down) {
            try {
                setAllowConnections(true);
            } catch {
                /* cleanup drops the database anyway */
            }
        }
        if (srv) srv.cleanup('store_down');
    });

    it('before: ready, and the used key works (it is now in the key cache)', async () => {
        assertData(await srv.request('GET', '/readyz'), 200);
        const to = phone();
        pending = { to, ...(await sendOk(srv, key, { phoneNumber: to })) };
        pending.code = await srv.codeFor(to);
        assertData(await srv.request('GET', '/wallet', { key }), 200);
    });

    it('database refusing connections: /readyz and send / verify / status / wallet with a cached or a never-used key are 503 unavailable, never 401 or 500', async () => {
        setAllowConnections(false);
        down = true;
        admin(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '${dbName}' AND pid <> pg_backend_pid()`);
        // pg_terminate_backend() only signals: wait until the sessions are gone.
        const deadline = Date.now() + 10000;
        while (Number(admin(`SELECT count(*) FROM pg_stat_activity WHERE datname = '${dbName}'`)) > 0) {
            if (Date.now() > deadline) assert.fail(`sessions on ${dbName} survived pg_terminate_backend`);
            await sleep(20);
        }
        // Nothing can reconnect meanwhile.
        assert.throws(() => execFileSync('psql', ['-qAtX', '-d', srv.db, '-c', 'SELECT 1'], { stdio: 'pipe' }), /not currently accepting connections/);

        // Each call three times: the first meets a pooled connection that was
        // terminated, the later ones a reconnect the database refuses.
        for (let round = 0; round < 3; round++) {
            assertError(await srv.request('GET', '/readyz'), 503, 'unavailable', `round ${round}: GET /readyz`);
            for (const [who, k] of [
                ['cached key', key],
                ['never-used key', freshKey],
            ]) {
                const what = (w) => `round ${round}, ${who}: ${w}`;
                assertError(await srv.send(k, { phoneNumber: phone() }), 503, 'unavailable', what('POST /otp/send'));
                assertError(await srv.verify(k, pending.requestId, pending.code), 503, 'unavailable', what('POST /otp/verify'));
                assertError(await srv.request('GET', '/wallet', { key: k }), 503, 'unavailable', what('GET /wallet'));
                assertError(await srv.request('GET', `/otp/${pending.requestId}`, { key: k }), 503, 'unavailable', what('GET /otp/{id}'));
            }
        }
        // Operational routes that need no store still answer.
        assertData(await srv.request('GET', '/healthz'), 200);
        // The server's log says why, without the code.
        assert.ok(!srv.log().includes(pending.code));
    });

    it('connections allowed again: /readyz 200 without a restart; the old request verifies, a new send and verify work', async () => {
        setAllowConnections(true);
        down = false;
        const deadline = Date.now() + 15000;
        for (;;) {
            const r = await srv.request('GET', '/readyz');
            if (r.status === 200) break;
            assertError(r, 503, 'unavailable', 'GET /readyz while recovering');
            if (Date.now() > deadline) assert.fail('/readyz still 503 15 s after the database took connections again');
            await sleep(50);
        }
        assertData(await srv.request('GET', '/readyz'), 200);
        // The request from before the outage was not lost, and its attempts were not spent.
        assert.deepEqual((await srv.verify(freshKey, pending.requestId, pending.code)).json, { data: { verified: true } });
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to });
        assert.deepEqual((await srv.verify(key, d.requestId, await srv.codeFor(to))).json, { data: { verified: true } });
        // Nothing was stored or charged by the refused calls: two sends in all.
        const a = await srv.accountShow('acme');
        assert.equal(a.requests, 2);
        assert.equal(a.balance, '99.50');
        assert.equal(a.balance, a.ledgerSum);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
