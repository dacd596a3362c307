// Secrets at rest and in logs (SPEC 1.1, 1.3, 5, 6, 7): the SQLite files hold no code
// in plain text or under an unkeyed hash, no API key, and not the server secret;
// the request log has one line per request with the trace id of X-Request-Id and a
// masked phone number, and never a code, a guess, a key or a full phone number.
// Codes here are 8–10 digits so that a match is never a coincidence.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, NO_ABUSE_LIMITS, startServer, phones, assertError, sleep, E2E_DB } from './lib/server.mjs';
import { startGateway } from './peers/http_gateway.mjs';
import { writeIni } from './peers/otpd.mjs';

const phone = phones(16);
const wrong = (code) => code.slice(0, -1) + String((Number(code.at(-1)) + 1) % 10);

/**
 * The forms of a code that someone holding only the database could test: the code
 * itself, and unkeyed hashes of it alone or bound to its request id.
 */
function testableForms(code, requestId) {
    const forms = [Buffer.from(code), Buffer.from(Buffer.from(code).toString('base64'))];
    const inputs = [code];
    for (const sep of ['', ':', '|', '\0', '.']) inputs.push(requestId + sep + code, code + sep + requestId);
    for (const alg of ['sha256', 'sha1', 'md5', 'sha512']) {
        for (const input of inputs) {
            const h = crypto.createHash(alg).update(input).digest();
            forms.push(h, Buffer.from(h.toString('hex')), Buffer.from(h.toString('base64')));
        }
    }
    return forms;
}

/**
 * The files that hold srv's store: SQLite's otpd.db* in the data dir or, on
 * PostgreSQL ($OTPD_E2E_DB), the database's own files in the cluster's data
 * directory ($OTPD_E2E_PGDATA) after a CHECKPOINT has written every page there.
 */
function dbFiles(srv) {
    if (!srv.db) {
        return fs
            .readdirSync(srv.dataDir)
            .filter((f) => f.startsWith('otpd.db'))
            .map((f) => path.join(srv.dataDir, f));
    }
    const psql = (q) => execFileSync('psql', ['-qAtX', '-d', srv.db, '-c', q], { encoding: 'utf8' }).trim();
    psql('CHECKPOINT');
    const dir = path.join(process.env.OTPD_E2E_PGDATA, 'base', psql('SELECT oid FROM pg_database WHERE datname = current_database()'));
    return fs
        .readdirSync(dir)
        .map((f) => path.join(dir, f))
        .filter((f) => fs.statSync(f).isFile());
}

describe('secrets stay secret', () => {
    let srv;
    let key;
    const sent = []; // {to, code, requestId, traceId}
    const guesses = [];
    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00' }, testKeys: true });
        key = srv.accounts.acme.key;
        for (let i = 0; i < 24; i++) {
            const to = phone();
            const r = await srv.send(key, { phoneNumber: to, codeLength: i % 2 ? 8 : 10 });
            assert.equal(r.status, 201, r.text);
            sent.push({ to, requestId: r.json.data.requestId, traceId: r.headers['x-request-id'] });
        }
        const codes = await srv.codesFor(sent.map((s) => s.to));
        for (const s of sent) s.code = codes.get(s.to);
        // A third verified, a third guessed wrong, a third left pending (outbox rows erased, hashes kept).
        for (const [i, s] of sent.entries()) {
            if (i % 3 === 0) {
                const v = await srv.verify(key, s.requestId, s.code);
                assert.deepEqual(v.json, { data: { verified: true } }, v.text);
            } else if (i % 3 === 1) {
                guesses.push(wrong(s.code));
                assertError(await srv.verify(key, s.requestId, wrong(s.code)), 400, 'otp_incorrect');
            }
        }
    });
    after(() => srv && srv.cleanup('secrets'));

    const checkDb = (when) => {
        const files = dbFiles(srv);
        assert.ok(srv.db ? files.length > 0 : files.some((f) => f.endsWith('otpd.db')), `no database files for ${srv.dataDir}`);
        const blobs = files.map((f) => [f, fs.readFileSync(f)]);
        for (const s of sent) {
            for (const form of testableForms(s.code, s.requestId)) {
                for (const [f, b] of blobs) {
                    assert.ok(!b.includes(form), `${when}: ${path.basename(f)} holds code ${s.code} (as ${form.length} bytes)`);
                }
            }
        }
        for (const k of srv.keys) {
            for (const [f, b] of blobs) assert.ok(!b.includes(Buffer.from(k)), `${when}: ${path.basename(f)} holds a full API key`);
        }
        // The server secret (any other small file in the data dir) is not in the database.
        for (const name of fs.readdirSync(srv.dataDir)) {
            const p = path.join(srv.dataDir, name);
            if (name.startsWith('otpd.db') || ['sms.jsonl', 'server.log'].includes(name)) continue;
            const st = fs.statSync(p);
            if (!st.isFile() || st.size < 16 || st.size > 4096) continue;
            const secret = fs.readFileSync(p);
            for (const form of [secret, Buffer.from(secret.toString('hex')), Buffer.from(secret.toString('base64'))]) {
                for (const [f, b] of blobs) assert.ok(!b.includes(form), `${when}: ${path.basename(f)} holds the contents of ${name}`);
            }
        }
    };

    it('the database files hold no code (plain or unkeyed hash), no API key, no server secret — while running', () => {
        checkDb('running');
    });

    it('the server secret was generated into DATA_DIR/secret: 32 bytes, mode 0600', () => {
        const p = path.join(srv.dataDir, 'secret');
        assert.ok(fs.existsSync(p), `no secret file: ${fs.readdirSync(srv.dataDir)}`);
        const st = fs.statSync(p);
        assert.equal((st.mode & 0o777).toString(8), '600');
        assert.equal(st.size, 32);
    });

    it('the SQLite database, its WAL and its shared memory are mode 0600', { skip: E2E_DB ? 'the store is PostgreSQL' : false }, () => {
        const files = fs.readdirSync(srv.dataDir).filter((f) => /^otpd\.db(-wal|-shm)?$/.test(f)).sort();
        assert.deepEqual(files, ['otpd.db', 'otpd.db-shm', 'otpd.db-wal'], 'the server runs: all three exist');
        for (const f of files) assert.equal((fs.statSync(path.join(srv.dataDir, f)).mode & 0o777).toString(8), '600', f);
    });

    it('one log line per request, with its X-Request-Id as traceId and a masked phone number', async () => {
        await sleep(200); // the log line may be written just after the response
        const lines = srv.log().split('\n');
        for (const s of sent) {
            const mine = lines.filter((l) => l.includes(s.traceId));
            assert.equal(mine.length, 1, `log lines for trace ${s.traceId}: ${JSON.stringify(mine)}`);
            const l = mine[0];
            assert.match(l, /event=request/);
            assert.match(l, /route=\/otp\/send/);
            assert.match(l, /status=201/);
            assert.match(l, /method=POST/);
            assert.match(l, /durationMs=\d/);
            assert.match(l, new RegExp(`account=${srv.accounts.acme.id}(\\s|$)`));
            assert.ok(l.includes(`phone=+91******${s.to.slice(-4)}`), `masked phone in: ${l}`);
        }
    });

    it('a verify\'s log line has the masked number too (read from its request)', async () => {
        const lines = srv.log().split('\n').filter((l) => /route=\/otp\/verify /.test(l) && /status=(200|400)/.test(l));
        assert.ok(lines.length >= 16, `verify lines: ${lines.length}`);
        for (const l of lines) assert.match(l, /phone=\+91\*{6}\d{4}(\s|$)/, l);
        const masked = new Set(lines.map((l) => /phone=(\S+)/.exec(l)[1]));
        const expected = new Set(sent.filter((s, i) => i % 3 !== 2).map((s) => `+91******${s.to.slice(-4)}`));
        assert.deepEqual(masked, expected);
    });

    it('so does a status read\'s', async () => {
        const s = sent[2];
        const r = await srv.request('GET', `/otp/${s.requestId}`, { key });
        assert.equal(r.status, 200, r.text);
        await sleep(200);
        const [l] = srv.log().split('\n').filter((x) => x.includes(r.headers['x-request-id']));
        assert.ok(l, 'the status read has its line');
        assert.ok(l.includes(`phone=+91******${s.to.slice(-4)}`), l);
    });

    it('the log holds no code, no wrong guess, no key and no full phone number', () => {
        const log = srv.log();
        for (const s of sent) {
            assert.ok(!log.includes(s.code), `code ${s.code} in the log`);
            assert.ok(!log.includes(s.to), `full phone number ${s.to} in the log`);
            assert.ok(!log.includes(s.to.slice(1)), `full phone number ${s.to} in the log`);
        }
        for (const g of guesses) assert.ok(!log.includes(g), `guess ${g} in the log`);
        for (const k of srv.keys) assert.ok(!log.includes(k), 'an API key in the log');
        assert.doesNotMatch(log, /otpd_(live|test)_[0-9A-Za-z]{13,}/, 'an API key in the log');
    });

    it('after SIGTERM (exit 0, clean log) the database files still hold no code', async () => {
        await srv.stop();
        checkDb('stopped');
    });
});

/**
 * Every row of every table of srv's store as text: SQLite's `.dump` (text
 * quoted, BLOBs as X'hex'), or on PostgreSQL each row cast to text (bytea as
 * \\xhex). This is the logical view of the same data dbFiles() reads raw: it also
 * sees a value the file scan could miss (say one PostgreSQL had compressed).
 */
function dumpRows(srv) {
    if (!srv.db) return execFileSync('sqlite3', ['-readonly', srv.dbFile, '.dump'], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const psql = (q) => execFileSync('psql', ['-qAtX', '-v', 'ON_ERROR_STOP=1', '-d', srv.db, '-c', q], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const tables = psql(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
        .split('\n')
        .filter(Boolean);
    assert.ok(tables.length >= 5, `tables: ${tables}`);
    return tables.map((t) => `-- ${t}\n${psql(`SELECT t::text FROM ${t} t`)}`).join('\n');
}

// The code of a request that is still pending is at rest in three places, each
// of which must hold it sealed (SPEC 5: the outbox text is stored encrypted under
// a key derived from the server secret; SPEC 6: codes are stored only as a keyed
// hash): the test inbox (a test key's message text, kept for GET /test/messages),
// the kept code of an account with the `reuse` resend strategy (sent again on a
// resend), and the outbox row of a live message no provider has taken yet. The
// gateway here (peers/http_gateway.mjs) records every text it is offered, so the
// test learns each code even while its message stays queued (it answers 503,
// temporary, to that number; its breaker_threshold is set so high that those
// refusals, however many retries fit in a slow run, never pause the provider and
// hold the resend's message back). While all three requests are pending the store is
// read twice: its files byte for byte (SQLite: otpd.db and its -wal; PostgreSQL:
// the database's files in $OTPD_E2E_PGDATA after a CHECKPOINT has written every
// dirty page there), and its rows as text (dumpRows), for the code in plain
// digits, as the hex of its ASCII digits, and under an unkeyed hash.
describe('codes at rest while their requests are pending', () => {
    let srv;
    let gw;
    const phone = phones(18);
    const held = new Set(); // numbers the gateway refuses (503: the message stays queued)
    let ini;
    before(async () => {
        gw = await startGateway({ name: 'gw' });
        gw.behave = (body) => (body && held.has(body.to) ? { status: 503 } : null);
        ini = writeIni(`[delivery]
providers = gw

[provider.gw]
type = http
url = ${gw.url}
timeout = 2000
breaker_threshold = 1000
`);
        srv = new Server(fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-')));
        await srv.addAccount('acme', { credit: '100.00', testKey: true });
        await srv.addAccount('reuser', { credit: '100.00' });
        await srv.cli(['account', 'set', 'reuser', '--resend-strategy', 'reuse']);
        await srv.start({ args: ['--config', ini], env: { OTPD_LIMITS_DEFAULTS: NO_ABUSE_LIMITS } });
    });
    after(async () => {
        if (srv) srv.cleanup('secrets-pending');
        if (gw) await gw.close();
        if (ini && !process.env.OTPD_E2E_KEEP) fs.rmSync(path.dirname(ini), { recursive: true, force: true });
    });

    const messageOf = async (key, requestId) => {
        const r = await srv.request('GET', `/otp/${requestId}`, { key });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.data.status, 'pending', r.text);
        return r.json.data.messages.at(-1).messageId;
    };
    const waitMessage = async (key, messageId, pred, what) => {
        const deadline = Date.now() + 15000;
        for (;;) {
            const r = await srv.request('GET', `/messages/${messageId}`, { key });
            assert.equal(r.status, 200, r.text);
            if (pred(r.json.data)) return r.json.data;
            if (Date.now() > deadline) assert.fail(`message ${messageId} never ${what}: ${r.text}`);
            await sleep(30);
        }
    };
    const codeIn = (text) => {
        const m = /^(\d{10}) is your /.exec(text);
        assert.ok(m, `no 10-digit code at the start of ${JSON.stringify(text)}`);
        return m[1];
    };

    const pending = []; // {what, code, requestId}

    it('a test key\'s send, a reuse account\'s sent code and a live message still queued: no code at rest in the store', async () => {
        // 1. A test key: the text goes to the test inbox, nowhere else.
        const acme = srv.accounts.acme;
        const toTest = phone();
        const t = await srv.send(acme.testKey, { phoneNumber: toTest, codeLength: 10 });
        assert.equal(t.status, 201, t.text);
        const inbox = await srv.request('GET', `/test/messages?phoneNumber=${encodeURIComponent(toTest)}`, { key: acme.testKey });
        assert.equal(inbox.status, 200, inbox.text);
        assert.equal(inbox.json.data.length, 1, inbox.text);
        pending.push({ what: 'test inbox', code: codeIn(inbox.json.data[0].text), requestId: t.json.data.requestId });

        // 2. reuse: the message is sent (its outbox text erased), the code kept for resends.
        const reuser = srv.accounts.reuser;
        const toReuse = phone();
        const r = await srv.send(reuser.key, { phoneNumber: toReuse, codeLength: 10 });
        assert.equal(r.status, 201, r.text);
        await waitMessage(reuser.key, await messageOf(reuser.key, r.json.data.requestId), (m) => m.status === 'sent', 'sent');
        const [offered] = gw.to(toReuse);
        pending.push({ what: 'reuse kept code', code: codeIn(offered.body.text), requestId: r.json.data.requestId, to: toReuse });

        // 3. A live message the gateway will not take: it stays queued, its text in the outbox.
        const toHeld = phone();
        held.add(toHeld);
        const q = await srv.send(acme.key, { phoneNumber: toHeld, codeLength: 10, expiresIn: 3600 });
        assert.equal(q.status, 201, q.text);
        const qid = await messageOf(acme.key, q.json.data.requestId);
        await gw.waitFor((g) => g.to(toHeld).length >= 1, 'the held message');
        const m = await waitMessage(acme.key, qid, (x) => x.status === 'queued' && x.attempts >= 1, 'back in the outbox after a refusal');
        assert.equal(m.status, 'queued');
        pending.push({ what: 'queued outbox text', code: codeIn(gw.to(toHeld)[0].body.text), requestId: q.json.data.requestId });
        assert.equal(new Set(pending.map((p) => p.code)).size, 3);

        const files = dbFiles(srv);
        assert.ok(files.length > 0, 'no database files');
        const blobs = files.map((f) => [f, fs.readFileSync(f)]);
        const rows = dumpRows(srv);
        assert.ok(rows.includes(q.json.data.requestId), 'the dump holds the requests (it reads the right store)');
        for (const p of pending) {
            for (const form of testableForms(p.code, p.requestId)) {
                for (const [f, b] of blobs) {
                    assert.ok(!b.includes(form), `${p.what}: ${path.basename(f)} holds code ${p.code} (as ${form.length} bytes)`);
                }
                assert.ok(!rows.toLowerCase().includes(form.toString('hex')), `${p.what}: a row holds code ${p.code} (hex of ${form.length} bytes)`);
            }
            assert.ok(!rows.includes(p.code), `${p.what}: a row holds code ${p.code} in plain digits`);
        }
    });

    it('the code was at rest all the same (sealed): the reuse resend sends it again and the queued message delivers it', async () => {
        // Not a vacuous scan: the store did keep these codes, in a form only the server can open.
        const reuser = srv.accounts.reuser;
        const p = pending.find((x) => x.what === 'reuse kept code');
        assert.ok(p, 'the test before ran');
        await srv.advanceClock(31000);
        const rr = await srv.request('POST', '/otp/resend', { key: reuser.key, body: { requestId: p.requestId } });
        assert.equal(rr.status, 200, rr.text);
        await gw.waitFor((g) => g.to(p.to).length >= 2, 'the resend');
        assert.equal(codeIn(gw.to(p.to)[1].body.text), p.code, 'reuse sent the kept code');

        const q = pending.find((x) => x.what === 'queued outbox text');
        held.clear(); // the gateway takes it now
        await srv.advanceClock(600000); // past any retry backoff (at most 5 min)
        const id = await messageOf(srv.accounts.acme.key, q.requestId);
        await waitMessage(srv.accounts.acme.key, id, (m) => m.status === 'sent', 'sent once the gateway takes it');
        assert.deepEqual((await srv.verify(srv.accounts.acme.key, q.requestId, q.code)).json, { data: { verified: true } });
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
        const log = srv.log();
        for (const p of pending) assert.ok(!log.includes(p.code), `${p.what}: code in the log`);
    });
});
