// Routing and the HTTP envelope (SPEC 1.2, 1.11): /healthz, unknown routes (404
// not_found), wrong methods (405 method_not_allowed with Allow), an X-Request-Id on
// every response, and HTTP/1.1 keep-alive. Also /metrics' store series: the
// SQLite writer's batches and commit-time histogram (absent on PostgreSQL), and
// how many HTTP threads serve (server.threads).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startServer, assertError, assertData, sleep, threadsNamed, E2E_DB } from './lib/server.mjs';

describe('routes and envelope', () => {
    let srv;
    let key;
    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00' } });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('routes'));

    it('GET /healthz: 200 {"data":{"status":"ok"}} without a key', async () => {
        const r = await srv.request('GET', '/healthz');
        assert.equal(r.status, 200);
        assert.deepEqual(r.json, { data: { status: 'ok' } });
        assert.ok(r.headers['x-request-id']);
    });

    it("GET /metrics: the store writer's batches and commit times (SQLite), consistent and growing", async () => {
        const scrape = async () => {
            const m = await srv.request('GET', '/metrics');
            assert.equal(m.status, 200);
            const series = {};
            for (const line of m.text.split('\n')) {
                const hit = /^(otpd_store_[a-z_]+)(\{le="([^"]+)"\})? (\S+)$/.exec(line);
                if (hit) series[hit[1] + (hit[3] ? `{${hit[3]}}` : '')] = Number(hit[4]);
            }
            return series;
        };
        const before = await scrape();
        if (E2E_DB) {
            assert.deepEqual(before, {}, 'PostgreSQL has no single writer: no store series');
            return;
        }
        const sends = 5;
        for (let i = 0; i < sends; i++)
            assertData(await srv.send(key, { phoneNumber: `+9198700${String(10000 + i)}` }), 201);
        const after = await scrape();
        assert.ok(after.otpd_store_batches_total >= before.otpd_store_batches_total + 1, JSON.stringify(after));
        assert.ok(after.otpd_store_batched_transactions_total >= before.otpd_store_batched_transactions_total + sends);
        assert.ok(after.otpd_store_batched_transactions_total >= after.otpd_store_batches_total);
        // cumulative buckets, ending in +Inf = _count
        const les = Object.keys(after).filter((k) => k.startsWith('otpd_store_commit_duration_seconds_bucket{'));
        assert.equal(les.length, 13);
        let prev = 0;
        for (const k of les) {
            assert.ok(after[k] >= prev, `${k} ${after[k]} < ${prev}`);
            prev = after[k];
        }
        assert.equal(after['otpd_store_commit_duration_seconds_bucket{+Inf}'], after.otpd_store_commit_duration_seconds_count);
        // a batch counts when the writer takes it, its COMMIT once done (the
        // dispatcher's batches run meanwhile): never more COMMITs than batches
        assert.ok(after.otpd_store_commit_duration_seconds_count <= after.otpd_store_batches_total);
        assert.ok(after.otpd_store_commit_duration_seconds_count >= before.otpd_store_commit_duration_seconds_count + 1);
        assert.ok(after.otpd_store_commit_duration_seconds_sum > before.otpd_store_commit_duration_seconds_sum);
    });

    it('HTTP threads: server.threads, 2 by default on either store, as the start line says; a set value wins', async () => {
        /** libmicrohttpd's pool threads of process pid (each names itself MHD-worker). */
        const workers = (pid, want) => threadsNamed(pid, 'MHD-worker', want);
        /** The start line of server s: logged just after the server starts answering. */
        const startLine = async (s) => {
            for (let i = 0; i < 100 && !/event=start /.test(s.log()); i++) await sleep(20);
            return s.log().split('\n').findLast((l) => l.includes('event=start ')) || '';
        };
        const store = E2E_DB ? 'postgres' : 'sqlite';
        const want = 2;
        assert.equal(await workers(srv.child.pid, want), want);
        assert.match(await startLine(srv), new RegExp(` store=${store} threads=${want} `));
        const other = await startServer({ accounts: {}, env: { OTPD_SERVER_THREADS: '3' } });
        try {
            assert.equal(await workers(other.child.pid, 3), 3);
            assert.match(await startLine(other), new RegExp(` store=${store} threads=3 `));
        } finally {
            other.cleanup('routes-threads');
        }
    });

    it('a query string does not change the route', async () => {
        assert.deepEqual((await srv.request('GET', '/healthz?probe=1')).json, { data: { status: 'ok' } });
        assertData(await srv.request('GET', '/wallet?x=y', { key }), 200);
    });

    it('unknown routes: 404 not_found (with or without a key)', async () => {
        for (const [method, p] of [
            ['GET', '/'],
            ['GET', '/nope'],
            ['POST', '/otp'],
            ['POST', '/otp/sendx'],
            ['POST', '/otp/send/extra'],
            ['GET', '/wallet/nope/deeper'],
            ['GET', '/healthz/x'],
        ]) {
            assertError(await srv.request(method, p), 404, 'not_found', `${method} ${p}`);
            assertError(await srv.request(method, p, { key }), 404, 'not_found', `${method} ${p} with key`);
        }
    });

    it('wrong method: 405 method_not_allowed with an Allow header', async () => {
        for (const [method, p, allow] of [
            ['GET', '/otp/send', 'POST'],
            ['PUT', '/otp/send', 'POST'],
            ['DELETE', '/otp/verify', 'POST'],
            ['GET', '/otp/verify', 'POST'],
            ['POST', '/wallet', 'GET'],
            ['DELETE', '/wallet', 'GET'],
            ['POST', '/healthz', 'GET'],
        ]) {
            const r = await srv.request(method, p, { key });
            assertError(r, 405, 'method_not_allowed', `${method} ${p}`);
            assert.ok(r.headers.allow, `${method} ${p}: no Allow header`);
            const allowed = r.headers.allow.split(',').map((s) => s.trim());
            assert.ok(allowed.includes(allow), `${method} ${p}: Allow: ${r.headers.allow}`);
            assert.ok(!allowed.includes(method), `${method} ${p}: Allow: ${r.headers.allow}`);
        }
    });

    it('every response carries a distinct X-Request-Id', async () => {
        const rs = await Promise.all([
            srv.request('GET', '/healthz'),
            srv.request('GET', '/wallet', { key }),
            srv.request('GET', '/wallet'),
            srv.request('GET', '/nope'),
            srv.request('GET', '/otp/send', { key }),
            srv.request('POST', '/otp/send', { key, rawBody: 'x' }),
            srv.request('POST', '/otp/send', { key, rawBody: 'x'.repeat(20000) }),
            srv.request('POST', '/otp/send', { key, rawBody: '{}', contentType: 'text/plain' }),
            srv.request('POST', '/otp/verify', { key, body: { requestId: 'req_0000000000000000000000', otpCode: '123456' } }),
        ]);
        assert.deepEqual(
            rs.map((r) => r.status),
            [200, 200, 401, 404, 405, 400, 413, 415, 404],
        );
        const ids = rs.map((r) => r.headers['x-request-id']);
        for (const id of ids) assert.match(String(id), /^[\x21-\x7e]{8,128}$/);
        assert.equal(new Set(ids).size, ids.length, 'ids are distinct');
    });

    it('HTTP/1.1 keep-alive: several requests on one connection', async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
            const ports = [];
            for (let i = 0; i < 5; i++) {
                const r = await srv.request('GET', i % 2 ? '/healthz' : '/wallet', { key, agent });
                assert.equal(r.status, 200);
                ports.push(r.localPort);
            }
            assert.equal(new Set(ports).size, 1, `one connection: local ports ${ports}`);
            // An error response keeps the connection usable too.
            const e = await srv.request('POST', '/otp/send', { key, agent, body: {} });
            assertError(e, 400, 'invalid_request');
            const after = await srv.request('GET', '/healthz', { agent });
            assert.equal(after.status, 200);
        } finally {
            agent.destroy();
        }
    });

    it('a malformed request line gets a 4xx and the server keeps serving', async () => {
        const reply = await new Promise((resolve, reject) => {
            const s = net.connect(srv.port, '127.0.0.1');
            let data = '';
            s.on('data', (d) => (data += d));
            s.on('end', () => resolve(data));
            s.on('close', () => resolve(data));
            s.on('error', reject);
            s.setTimeout(10000, () => s.destroy());
            s.write('THIS IS NOT HTTP\r\n\r\n');
        });
        if (reply) assert.match(reply, /^HTTP\/1\.[01] 4\d\d/);
        assertData(await srv.request('GET', '/healthz'), 200);
    });

    it('SIGTERM with idle and half-sent connections open: exits 0 within 5 s, clean log', async () => {
        const open = [];
        for (const head of ['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 'POST /otp/send HTTP/1.1\r\nHost: x\r\n', '']) {
            const sock = net.connect(srv.port, '127.0.0.1');
            sock.on('error', () => {});
            await new Promise((r) => sock.once('connect', r));
            sock.write(head);
            open.push(sock);
        }
        await new Promise((r) => setTimeout(r, 100));
        const t0 = Date.now();
        try {
            await srv.stop();
        } finally {
            for (const s of open) s.destroy();
        }
        assert.ok(Date.now() - t0 < 5000, `shutdown took ${Date.now() - t0} ms`);
    });
});
