// Limits on what a client controls (issue: HTTP layer; SPEC 7 "Limits"): slow and
// idle connections are closed after the connection timeout, an oversized request
// head is refused, the connection count is capped, deep JSON nesting is refused —
// and through all of it the server keeps answering everyone else. The limits are
// set small through OTPD_* environment variables (which also shows they are read).
// Last, one HTTP thread (server.threads = 1) serves without a warning.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { startServer, assertError, assertData, sleep } from './lib/server.mjs';

/** Opens a raw connection; resolves {sock, closed: Promise<string>} once connected. */
function rawConnect(port) {
    return new Promise((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1');
        let data = '';
        const closed = new Promise((r) => {
            sock.on('close', () => r(data));
        });
        sock.on('data', (d) => (data += d));
        sock.on('error', () => {});
        sock.once('connect', () => resolve({ sock, closed }));
        sock.once('error', reject);
    });
}

const within = (p, ms) => Promise.race([p.then((v) => ({ v })), sleep(ms).then(() => null)]);

describe('limits', () => {
    let srv;
    let key;
    before(async () => {
        srv = await startServer({
            accounts: { acme: '100.00' },
            env: { OTPD_SERVER_CONNECTION_TIMEOUT: '1', OTPD_SERVER_MAX_CONNECTIONS: '40' },
        });
        key = srv.accounts.acme.key;
        // The server closes idle connections after 1 s: no keep-alive reuse races here.
        srv.agent = new http.Agent({ keepAlive: false });
    });
    after(() => srv && srv.cleanup('limits'));

    it('a client that stops in the middle of its request head is cut off after the timeout', async () => {
        const { sock, closed } = await rawConnect(srv.port);
        sock.write('POST /otp/send HTTP/1.1\r\nHost: x\r\nContent-Type: app');
        // Others are served meanwhile.
        assertData(await srv.request('GET', '/healthz'), 200);
        const r = await within(closed, 6000);
        assert.ok(r, 'the slow connection was still open after 6 s (timeout 1 s)');
        sock.destroy();
    });

    it('a client that stops in the middle of its body is cut off after the timeout', async () => {
        const { sock, closed } = await rawConnect(srv.port);
        sock.write(`POST /otp/send HTTP/1.1\r\nHost: x\r\nX-API-Key: ${key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"phone`);
        const r = await within(closed, 6000);
        assert.ok(r, 'the slow upload was still open after 6 s (timeout 1 s)');
        sock.destroy();
        assert.equal((await srv.accountShow('acme')).requests, 0);
    });

    it('an idle keep-alive connection is closed after the timeout', async () => {
        const { sock, closed } = await rawConnect(srv.port);
        sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        const r = await within(closed, 6000);
        assert.ok(r, 'the idle connection was still open after 6 s (timeout 1 s)');
        assert.match(r.v, /^HTTP\/1\.1 200/);
        sock.destroy();
    });

    it('a request head over server.max_header (default 8192 bytes) is refused with a 4xx', async () => {
        for (const size of [9000, 64 * 1024]) {
            const agent = new http.Agent({ keepAlive: false });
            let status;
            try {
                const r = await srv.request('GET', '/wallet', { key, agent, headers: { 'X-Padding': 'p'.repeat(size) } });
                status = r.status;
            } catch (e) {
                status = e.code; // closing the connection is a refusal too
            }
            assert.ok(status === 'ECONNRESET' || (status >= 400 && status < 500), `${size}-byte header: got ${status}`);
            assertData(await srv.request('GET', '/wallet', { key }), 200);
        }
    });

    it('open connections are capped (server.max_connections = 40 here)', async () => {
        const socketsOf = (pid) =>
            fs.readdirSync(`/proc/${pid}/fd`).filter((f) => {
                try {
                    return fs.readlinkSync(`/proc/${pid}/fd/${f}`).startsWith('socket:');
                } catch {
                    return false;
                }
            }).length;
        const socks = [];
        try {
            for (let i = 0; i < 60; i++) {
                try {
                    socks.push(await rawConnect(srv.port));
                } catch {
                    /* refused: fine */
                }
            }
            await sleep(300); // let the server accept what it will (idle timeout is 1 s)
            const n = socketsOf(srv.child.pid);
            // 40 client connections at most, plus the listening socket and a few internal ones.
            assert.ok(n <= 40 + 4, `the server holds ${n} sockets with 60 clients connected`);
            assert.ok(n >= 30, `the server holds only ${n} sockets: did it accept anything?`);
        } finally {
            for (const s of socks) s.sock.destroy();
        }
        await sleep(200);
        assertData(await srv.request('GET', '/healthz'), 200);
    });

    it('deeply nested JSON is refused with 400, not a crash', async () => {
        const depth = 8000;
        const rawBody = '{"phoneNumber":"+919818000001","variables":' + '['.repeat(depth) + ']'.repeat(depth) + '}';
        assert.ok(rawBody.length < 16384);
        const r = await srv.request('POST', '/otp/send', { key, rawBody });
        assert.equal(r.status, 400, r.text);
        assert.ok(['invalid_json', 'invalid_request'].includes(r.json.code), r.text);
        assertError(await srv.request('POST', '/otp/send', { key, rawBody: '['.repeat(16000) }), 400, 'invalid_json', 'unclosed');
        assertData(await srv.request('GET', '/healthz'), 200);
        assert.equal((await srv.accountShow('acme')).requests, 0);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

// The idle timeout alone lets a client that keeps sending a byte now and then
// hold its connection for ever. Each request must arrive whole within
// server.request_timeout of its request line (and a connection must start a
// request within connection_timeout + request_timeout). The idle timeout here
// (4 s) is far above the dribble's gaps (0.7 s), and the request timeout (1 s)
// far below it, so only the request deadline can explain a quick cut-off.
describe('limits: slow clients', () => {
    let srv;
    let key;
    before(async () => {
        srv = await startServer({
            accounts: { acme: '100.00' },
            env: { OTPD_SERVER_CONNECTION_TIMEOUT: '4', OTPD_SERVER_REQUEST_TIMEOUT: '1' },
        });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('limits-slow'));

    /** Writes the pieces one every 700 ms until the server closes; resolves
     * the seconds it took, or null if it never did. */
    async function dribble(pieces, first = '') {
        const { sock, closed } = await rawConnect(srv.port);
        const t0 = Date.now();
        let done = false;
        closed.then(() => (done = true));
        if (first) sock.write(first);
        for (const p of pieces) {
            await sleep(700);
            if (done) break;
            sock.write(p);
        }
        const r = await within(closed, 3000);
        sock.destroy();
        return r ? (Date.now() - t0) / 1000 : null;
    }

    it('a head sent a line at a time is cut off at the request timeout, though never idle', async () => {
        const lines = Array.from({ length: 14 }, (_, i) => `X-Slow-${i}: ${'a'.repeat(10)}\r\n`);
        const secs = await dribble(lines, 'POST /otp/send HTTP/1.1\r\nHost: x\r\n');
        assert.ok(secs !== null && secs < 3.5, `closed after ${secs} s (request timeout 1 s, idle 4 s; the dribble lasts ~10 s)`);
        await sleep(100);
        assert.match(srv.log(), /event=slow_clients_closed connections=\d+ request_timeout_ms=1000/);
    });

    it('a request line sent a byte at a time is cut off too (idle + request timeout)', async () => {
        const secs = await dribble('GET /healthz HTTP/1.1'.split(''));
        assert.ok(secs !== null && secs < 8, `closed after ${secs} s (4 s + 1 s; the dribble lasts ~15 s)`);
    });

    it('a body sent a byte at a time is cut off, and nothing is stored', async () => {
        const body = '{"phoneNumber":"+919811100001"}';
        const secs = await dribble(
            body.split(''),
            `POST /otp/send HTTP/1.1\r\nHost: x\r\nX-API-Key: ${key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        );
        assert.ok(secs !== null && secs < 3.5, `closed after ${secs} s`);
        assert.equal((await srv.accountShow('acme')).requests, 0);
    });

    it('a request that otpd takes longer than the request timeout to answer is answered', async () => {
        // Hold the store's write lock for 2.5 s from outside, then send.
        const locker = srv.db
            ? spawn('psql', ['-qAtX', '-d', srv.db, '-c', 'BEGIN; LOCK TABLE accounts IN EXCLUSIVE MODE; SELECT pg_sleep(2.5); COMMIT;'])
            : spawn('sqlite3', [srv.dbFile]);
        const exited = new Promise((r) => locker.on('exit', r));
        if (!srv.db) locker.stdin.write('PRAGMA busy_timeout = 5000;\nBEGIN IMMEDIATE;\n');
        await sleep(700);
        const t0 = Date.now();
        const pending = srv.send(key, { phoneNumber: '+919811100002' });
        if (!srv.db) {
            await sleep(2500);
            locker.stdin.end('COMMIT;\n');
        }
        const r = await pending;
        const secs = (Date.now() - t0) / 1000;
        await exited;
        assert.equal(r.status, 201, r.text);
        assert.ok(secs > 1.2, `answered after ${secs} s: the store was not held (the test proves nothing)`);
    });

    it('a kept-alive connection making a request every second is never cut off', async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        const sockets = new Set();
        for (let i = 0; i < 6; i++) {
            const r = await new Promise((resolve, reject) => {
                const req = http.request({ host: '127.0.0.1', port: srv.port, path: '/healthz', agent }, (res) => {
                    sockets.add(res.socket);
                    res.resume();
                    res.on('end', () => resolve(res.statusCode));
                });
                req.on('error', reject);
                req.end();
            });
            assert.equal(r, 200);
            await sleep(1000);
        }
        agent.destroy();
        assert.equal(sockets.size, 1, 'one connection served all six, over more than the request timeout');
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

// server.threads = 1 is a single polling thread, not a pool of one (which
// libmicrohttpd would refuse with a warning in otpd's log at every start).
describe('limits: one HTTP thread', () => {
    let srv;
    before(async () => {
        srv = await startServer({ accounts: { acme: '10.00' }, env: { OTPD_SERVER_THREADS: '1' } });
    });
    after(() => srv && srv.cleanup('limits-one-thread'));

    it('serves, with no warning from libmicrohttpd at start', async () => {
        const rs = await Promise.all(Array.from({ length: 20 }, () => srv.request('GET', '/healthz')));
        for (const r of rs) assertData(r, 200);
        assert.doesNotMatch(srv.log(), /event=http_error/);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
