// The operator CLI (SPEC 7): account, key and wallet commands with --json, keys
// shown once and listed only by prefix, revocation, money parsing, --help on every
// command, and configuration errors that name the setting.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, runCli, sanitizerReports, freePort } from './lib/server.mjs';

describe('otpd CLI', () => {
    let dir;
    before(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-cli-'));
    });
    after(() => {
        if (!process.env.OTPD_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    });

    /** A command that must fail: non-zero exit, a message on stderr, no sanitizer report. */
    const fails = async (args, opts) => {
        const r = await runCli(dir, args, opts);
        assert.notEqual(r.status, 0, `otpd ${args.join(' ')} should fail: ${r.stdout}`);
        assert.ok(r.stderr.trim().length > 0, `otpd ${args.join(' ')}: no message on stderr`);
        assert.deepEqual(sanitizerReports(r.stderr), [], r.stderr);
        return r;
    };

    it('migrate works on a fresh data dir, and again on a migrated one', async () => {
        await cli(dir, ['migrate']);
        assert.ok(fs.existsSync(path.join(dir, 'otpd.db')), `no otpd.db: ${fs.readdirSync(dir)}`);
        await cli(dir, ['migrate']);
    });

    it('account create prints the id; --json gives exactly {id, name}; names are unique', async () => {
        const out = (await cli(dir, ['account', 'create', 'acme'])).trim();
        assert.match(out, /^acc_[0-9A-Za-z]+$/);
        const j = await cli(dir, ['account', 'create', 'globex', '--json']);
        assert.deepEqual(Object.keys(j).sort(), ['id', 'name']);
        assert.match(j.id, /^acc_[0-9A-Za-z]+$/);
        assert.equal(j.name, 'globex');
        assert.notEqual(j.id, out);
        await fails(['account', 'create', 'acme']);
        const list = await cli(dir, ['account', 'list', '--json']);
        assert.ok(Array.isArray(list));
        assert.deepEqual(list.map((a) => a.name).sort(), ['acme', 'globex']);
        assert.equal(list.find((a) => a.name === 'acme').id, out);
    });

    it('account show --json has the operator fields (money strings, integer counts), by name or by id', async () => {
        const a = await cli(dir, ['account', 'show', 'acme', '--json']);
        // The operator's view may grow (later issues add settings); these must be there.
        const want = {
            name: 'acme',
            balance: '0.00',
            currency: 'INR',
            pricePerSegment: '0.25',
            lowBalanceThreshold: '100.00',
            requests: 0,
            messages: 0,
            ledgerEntries: 0,
            ledgerSum: '0.00',
        };
        for (const [k, v] of Object.entries(want)) assert.deepEqual(a[k], v, `account show: ${k} in ${JSON.stringify(a)}`);
        assert.match(a.id, /^acc_[0-9A-Za-z]+$/);
        assert.match(a.createdAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
        const byId = await cli(dir, ['account', 'show', a.id, '--json']);
        assert.equal(byId.name, 'acme');
        await fails(['account', 'show', 'nobody']);
    });

    it('key create shows the key once; key list shows only its prefix; revoke sets revokedAt', async () => {
        const live = await cli(dir, ['key', 'create', 'acme', '--name', 'prod', '--json']);
        assert.match(live.id, /^key_[0-9A-Za-z]+$/);
        assert.match(live.key, /^otpd_live_[0-9A-Za-z]{32,}$/);
        const test = await cli(dir, ['key', 'create', 'acme', '--name', 'ci', '--test', '--json']);
        assert.match(test.key, /^otpd_test_[0-9A-Za-z]{32,}$/);
        const plain = (await cli(dir, ['key', 'create', 'acme'])).trim();
        assert.ok(/otpd_live_[0-9A-Za-z]{32,}/.test(plain), `plain key create prints the key: ${plain}`);
        assert.notEqual(live.key, test.key);

        for (const args of [['key', 'list', 'acme'], ['key', 'list', 'acme', '--json']]) {
            const out = await cli(dir, args);
            const text = typeof out === 'string' ? out : JSON.stringify(out);
            for (const k of [live.key, test.key]) {
                assert.ok(!text.includes(k), `${args.join(' ')} shows a full key`);
                assert.ok(text.includes(k.slice(0, 12)), `${args.join(' ')} shows the prefix ${k.slice(0, 12)}`);
            }
        }
        await cli(dir, ['key', 'revoke', live.id]);
        const keys = await cli(dir, ['key', 'list', 'acme', '--json']);
        assert.ok(Array.isArray(keys));
        const byId = Object.fromEntries(keys.map((k) => [k.id, k]));
        assert.ok(byId[live.id].revokedAt, `revoked key: ${JSON.stringify(byId[live.id])}`);
        assert.ok(!byId[test.id].revokedAt, `other key: ${JSON.stringify(byId[test.id])}`);
        assert.equal(byId[test.id].name, 'ci');
        await fails(['key', 'revoke', 'key_doesnotexist']);
        await fails(['key', 'create', 'nobody']);
    });

    it('wallet credit adds exact decimal amounts; bad amounts are refused and change nothing', async () => {
        const c1 = await cli(dir, ['wallet', 'credit', 'acme', '12.34', '--note', 'first', '--json']);
        assert.equal(c1.balance, '12.34');
        const c2 = await cli(dir, ['wallet', 'credit', 'acme', '0.66', '--json']);
        assert.equal(c2.balance, '13.00');
        const c3 = await cli(dir, ['wallet', 'credit', 'acme', '7', '--json']);
        assert.equal(c3.balance, '20.00');
        for (const bad of ['-1.00', 'abc', '1.234', '0', '0.00', '1e3', '', '99999999999999999999.00']) {
            await fails(['wallet', 'credit', 'acme', bad]);
        }
        const w = await cli(dir, ['wallet', 'show', 'acme', '--json']);
        assert.equal(w.balance, '20.00');
        const a = await cli(dir, ['account', 'show', 'acme', '--json']);
        assert.equal(a.balance, '20.00');
        assert.equal(a.ledgerSum, '20.00');
        assert.equal(a.ledgerEntries, 3);
    });

    it('every command has --help; version and help work; unknown commands fail', async () => {
        for (const args of [
            ['help'],
            ['--help'],
            ['version'],
            ['serve', '--help'],
            ['migrate', '--help'],
            ['account', '--help'],
            ['account', 'create', '--help'],
            ['account', 'list', '--help'],
            ['key', '--help'],
            ['key', 'create', '--help'],
            ['key', 'list', '--help'],
            ['key', 'revoke', '--help'],
            ['wallet', '--help'],
            ['wallet', 'credit', '--help'],
            ['wallet', 'show', '--help'],
        ]) {
            const out = await cli(dir, args);
            assert.ok(out.trim().length > 0, `otpd ${args.join(' ')} prints something`);
        }
        assert.match(await cli(dir, ['version']), /\d+\.\d+\.\d+/);
        await fails(['frobnicate']);
        await fails(['account', 'frobnicate']);
    });

    it('bad configuration stops start-up with a message naming the setting', async () => {
        const port = await freePort();
        let r = await fails(['serve', '--listen', 'not-an-address'], { timeoutMs: 20000 });
        assert.match(r.stderr, /listen/i);
        r = await fails(['serve'], { env: { OTPD_LISTEN: '127.0.0.1:99999' }, timeoutMs: 20000 });
        assert.match(r.stderr, /OTPD_LISTEN|listen/);
        const ini = path.join(dir, 'bad.ini');
        fs.writeFileSync(ini, `listen = 127.0.0.1:${port}\nno_such_setting = 1\n`);
        r = await fails(['serve', '--config', ini], { timeoutMs: 20000 });
        assert.match(r.stderr, /no_such_setting/);
        r = await fails(['serve', '--config', path.join(dir, 'missing.ini')], { timeoutMs: 20000 });
        assert.match(r.stderr, /missing\.ini/);
    });
});
