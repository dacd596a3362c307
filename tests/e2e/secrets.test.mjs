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
import path from 'node:path';
import { startServer, phones, assertError, sleep, E2E_DB } from './lib/server.mjs';

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
