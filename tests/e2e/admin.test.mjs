// The admin API (SPEC 2: "Operators credit wallets (CLI, admin API)"):
// admin keys made by `otpd admin-key`, GET /admin/accounts/{account} and
// POST /admin/accounts/{account}/credit. An admin key is refused on the OTP
// API and an API key on the admin API; a credit moves the balance and the
// ledger together; bad input changes nothing; a credit with a reference is
// applied once however often it is retried, in parallel too. Runs on both
// backends (the PostgreSQL pass of scripts/test.sh too).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, assertError, assertData, ledgerView, paise, runCli } from './lib/server.mjs';

const ACCOUNT_KEYS = ['accountId', 'name', 'balance', 'currency', 'pricePerSegment', 'lowBalanceThreshold', 'createdAt'];
const CREDIT_KEYS = ['transactionId', 'accountId', 'amount', 'balanceAfter', 'currency', 'reference', 'createdAt'];

describe('admin API', () => {
    let srv;
    let admin; // {id, key, prefix, name}
    let revoked;
    let stranger; // a well-formed admin key of another installation: unknown here
    const credit = (account, body, key = admin.key) =>
        srv.request('POST', `/admin/accounts/${account}/credit`, { key, body });

    before(async () => {
        srv = await startServer({ accounts: { acme: '10.00', other: '0.00', big: '0.00', par: '0.00' } });
        admin = await srv.cli(['admin-key', 'create', '--name', 'billing', '--json']);
        revoked = await srv.cli(['admin-key', 'create', '--json']);
        srv.keys.push(admin.key, revoked.key);
        await srv.cli(['admin-key', 'revoke', revoked.id]);
        const elsewhere = mkdtempSync(join(tmpdir(), 'otpd-admin-elsewhere-'));
        try {
            const made = await runCli(elsewhere, ['admin-key', 'create', '--json']);
            assert.equal(made.status, 0, made.stderr);
            stranger = JSON.parse(made.stdout);
        } finally {
            rmSync(elsewhere, { recursive: true, force: true });
        }
        srv.keys.push(stranger.key);
    });
    after(() => srv && srv.cleanup('admin'));

    it('admin-key create prints the key once; list shows its prefix and name, never the key', async () => {
        assert.match(admin.key, /^otpd_admin_[0-9A-Za-z]{38}$/);
        assert.match(admin.id, /^adm_[0-9A-Za-z]{22}$/);
        assert.equal(admin.prefix, admin.key.slice(0, 15));
        assert.equal(admin.name, 'billing');
        const list = await srv.cli(['admin-key', 'list', '--json']);
        assert.deepEqual(
            list.map((k) => [k.id, k.prefix, k.name, k.revokedAt === null]),
            [
                [admin.id, admin.prefix, 'billing', true],
                [revoked.id, revoked.prefix, 'default', false],
            ],
        );
        const table = await srv.cli(['admin-key', 'list']);
        assert.ok(table.includes(admin.id) && table.includes(admin.prefix), table);
        assert.ok(!table.includes(admin.key) && !JSON.stringify(list).includes(admin.key));
        // revoking twice, or what is no admin key, fails and says why
        const again = await runCli(srv.dataDir, [...srv.dbArgs(), 'admin-key', 'revoke', revoked.id]);
        assert.equal(again.status, 1);
        assert.match(again.stderr, /already revoked/);
        const bad = await runCli(srv.dataDir, [...srv.dbArgs(), 'admin-key', 'revoke', 'key_0000000000000000000000']);
        assert.equal(bad.status, 1);
        assert.match(bad.stderr, /no such admin key/);
        const name = await runCli(srv.dataDir, [...srv.dbArgs(), 'admin-key', 'create', '--name', '']);
        assert.equal(name.status, 2);
    });

    it('GET /admin/accounts/{account}: by id or by name, exactly its fields; unknown: 404 account_not_found', async () => {
        const byName = assertData(await srv.request('GET', '/admin/accounts/acme', { key: admin.key }), 200, ACCOUNT_KEYS);
        assert.equal(byName.accountId, srv.accounts.acme.id);
        assert.equal(byName.name, 'acme');
        assert.equal(byName.balance, '10.00');
        assert.equal(byName.currency, 'INR');
        const byId = assertData(await srv.request('GET', `/admin/accounts/${byName.accountId}`, { key: admin.key }), 200);
        assert.deepEqual(byId, byName);
        for (const who of ['nope', 'acc_0000000000000000000000'])
            assertError(await srv.request('GET', `/admin/accounts/${who}`, { key: admin.key }), 404, 'account_not_found', who);
    });

    it('keys: none, an API key, a malformed or revoked admin key get 401 and change nothing; the OTP API refuses an admin key', async () => {
        const before = ledgerView(await srv.accountShow('acme'));
        const apiKey = srv.accounts.acme.key;
        const wrongSum = admin.key.slice(0, -1) + (admin.key.at(-1) === 'a' ? 'b' : 'a');
        const prefixed = 'otpd_admin_' + apiKey.slice(10);
        srv.keys.push(wrongSum, prefixed); // what was presented must not reach the log either
        for (const [what, key] of [
            ['no key', null],
            ['an API key', apiKey],
            ['a bad checksum', wrongSum],
            ['a revoked admin key', revoked.key],
            ["another installation's admin key", stranger.key],
            ['an API key with the admin prefix', prefixed],
        ]) {
            assertError(await srv.request('GET', '/admin/accounts/acme', { key }), 401, 'unauthorized', what);
            assertError(await credit('acme', { amount: '1.00' }, key), 401, 'unauthorized', what);
        }
        assertError(await srv.request('GET', '/wallet', { key: admin.key }), 401, 'unauthorized', 'admin key on /wallet');
        assertError(await srv.send(admin.key, { phoneNumber: '+919812345678' }), 401, 'unauthorized', 'admin key on send');
        // Authorization: Bearer works as for API keys
        const bearer = await srv.request('GET', '/admin/accounts/acme', { headers: { Authorization: `Bearer ${admin.key}` } });
        assertData(bearer, 200, ACCOUNT_KEYS);
        assert.deepEqual(ledgerView(await srv.accountShow('acme')), before);
    });

    it('a credit: 201 with its ledger entry; the balance, the ledger and GET /wallet agree', async () => {
        const r = await credit('acme', { amount: '2.50', note: 'invoice paid' });
        const d = assertData(r, 201, CREDIT_KEYS);
        assert.match(d.transactionId, /^ltx_[0-9A-Za-z]{11}$/);
        assert.equal(d.accountId, srv.accounts.acme.id);
        assert.equal(d.amount, '2.50');
        assert.equal(d.balanceAfter, '12.50');
        assert.equal(d.currency, 'INR');
        assert.equal(d.reference, null);
        assert.equal(r.headers['idempotent-replayed'], undefined);
        const w = assertData(await srv.request('GET', '/wallet', { key: srv.accounts.acme.key }), 200);
        assert.equal(w.balance, '12.50');
        const tx = assertData(await srv.request('GET', '/wallet/transactions?limit=1', { key: srv.accounts.acme.key }), 200);
        assert.equal(tx.transactions[0].id, d.transactionId);
        assert.equal(tx.transactions[0].type, 'credit');
        assert.equal(tx.transactions[0].amount, '2.50');
        assert.equal(tx.transactions[0].note, 'invoice paid');
        assert.equal(tx.transactions[0].createdAt, d.createdAt);
        const show = await srv.accountShow('acme');
        assert.equal(show.balance, '12.50');
        assert.equal(show.ledgerSum, show.balance);
        // and by the account's id; without a note
        const d2 = assertData(await credit(srv.accounts.acme.id, { amount: '0.50' }), 201);
        assert.equal(d2.balanceAfter, '13.00');
        assert.notEqual(d2.transactionId, d.transactionId);
    });

    it('bad input: 400 naming the field (or 404, 415), and nothing changes', async () => {
        const before = ledgerView(await srv.accountShow('other'));
        const bad = [
            [{}, 'amount'],
            [{ amount: 5 }, 'amount'],
            [{ amount: '0' }, 'amount'],
            [{ amount: '0.00' }, 'amount'],
            [{ amount: '-1.00' }, 'amount'],
            [{ amount: '1.234' }, 'amount'],
            [{ amount: 'ten' }, 'amount'],
            [{ amount: '' }, 'amount'],
            [{ amount: '1.00', note: 'x'.repeat(256) }, 'note'],
            [{ amount: '1.00', note: 'line\nbreak' }, 'note'],
            [{ amount: '1.00', note: 7 }, 'note'],
            [{ amount: '1.00', reference: '' }, 'reference'],
            [{ amount: '1.00', reference: 'has space' }, 'reference'],
            [{ amount: '1.00', reference: 'r'.repeat(129) }, 'reference'],
            [{ amount: '1.00', reference: 'quote"d' }, 'reference'],
            [{ amount: '1.00', reference: 12 }, 'reference'],
            [{ amount: '1.00', refrence: 'INV-1' }, 'refrence'],
            [{ amount: '1.00', accountId: 'acc_x' }, 'accountId'],
        ];
        for (const [body, field] of bad) {
            const e = assertError(await credit('other', body), 400, 'invalid_request', JSON.stringify(body));
            assert.equal(e.details.field, field, JSON.stringify(body));
        }
        assertError(await srv.request('POST', '/admin/accounts/other/credit', { key: admin.key, rawBody: '{"amount":' }), 400, 'invalid_json');
        assertError(await srv.request('POST', '/admin/accounts/other/credit', { key: admin.key, rawBody: 'amount=1', contentType: 'text/plain' }), 415, 'unsupported_media_type');
        assertError(await credit('nope', { amount: '1.00' }), 404, 'account_not_found');
        assertError(await srv.request('GET', '/admin/accounts/other/credit', { key: admin.key }), 405, 'method_not_allowed');
        // 128 characters of every allowed kind is a valid reference (on another account)
        const ok = 'A-z_0.9:/#'.padEnd(128, 'x');
        assertData(await credit('big', { amount: '1.00', reference: ok }), 201);
        assert.deepEqual(ledgerView(await srv.accountShow('other')), before);
    });

    it('one credit carries at most 10,000,000,000,000.00; more is refused and nothing changes', async () => {
        assertData(await credit('big', { amount: '10000000000000.00' }), 201);
        const before = ledgerView(await srv.accountShow('big'));
        const e = assertError(await credit('big', { amount: '10000000000000.01' }), 400, 'invalid_request');
        assert.equal(e.details.field, 'amount');
        assert.deepEqual(ledgerView(await srv.accountShow('big')), before);
    });

    it('a reference credits once: a retry replays the first credit (201, Idempotent-Replayed), another amount is 409, another account is its own', async () => {
        const body = { amount: '3.00', reference: 'INV-2026/11-042', note: 'first' };
        const first = assertData(await credit('other', body), 201, CREDIT_KEYS);
        assert.equal(first.reference, 'INV-2026/11-042');
        const before = ledgerView(await srv.accountShow('other'));
        const retry = await credit('other', { ...body, note: 'the retry' });
        const again = assertData(retry, 201, CREDIT_KEYS);
        assert.equal(retry.headers['idempotent-replayed'], 'true');
        assert.deepEqual(again, first, 'the same entry, balance and time');
        const e = assertError(await credit('other', { ...body, amount: '4.00' }), 409, 'idempotency_key_reused');
        assert.equal(e.details.field, 'reference');
        assert.deepEqual(ledgerView(await srv.accountShow('other')), before, 'neither the retry nor the 409 changed anything');
        // the same reference on another account is a credit of its own
        const acme = assertData(await credit('acme', body), 201);
        assert.notEqual(acme.transactionId, first.transactionId);
    });

    it('in parallel: 30 credits all count; 30 retries of one reference count once; the balance equals the ledger', async () => {
        const start = paise((await srv.accountShow('par')).balance);
        const distinct = await Promise.all(Array.from({ length: 30 }, (_, i) => credit('par', { amount: '1.00', reference: `par-${i}` })));
        for (const r of distinct) assertData(r, 201);
        const same = await Promise.all(Array.from({ length: 30 }, () => credit('par', { amount: '5.00', reference: 'par-once' })));
        const created = same.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] !== 'true');
        const replayed = same.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] === 'true');
        assert.equal(created.length, 1, same.map((r) => r.status).join(','));
        assert.equal(replayed.length, 29);
        for (const r of replayed) assert.equal(r.json.data.transactionId, created[0].json.data.transactionId);
        const show = await srv.accountShow('par');
        assert.equal(paise(show.balance), start + 30 * 100 + 500);
        assert.equal(show.ledgerSum, show.balance);
        assert.equal(show.ledgerEntries, 31);
        const balances = new Set(distinct.map((r) => r.json.data.balanceAfter));
        assert.equal(balances.size, 30, 'each credit saw its own balance after');
    });

    it('the CLI credits with a reference once too, and shares the references with the admin API', async () => {
        const before = ledgerView(await srv.accountShow('other'));
        const first = await srv.cli(['wallet', 'credit', 'other', '7.00', '--reference', 'CLI-1', '--json']);
        assert.equal(first.replayed, false);
        assert.match(first.transactionId, /^ltx_[0-9A-Za-z]{11}$/);
        assert.equal(paise(first.balance), paise(before.balance) + 700);
        const again = await srv.cli(['wallet', 'credit', 'other', '7.00', '--reference', 'CLI-1', '--json']);
        assert.deepEqual(again, { ...first, replayed: true });
        const text = await srv.cli(['wallet', 'credit', 'other', '7.00', '--reference', 'CLI-1']);
        assert.match(text, /already credited as ltx_\w+ \(reference CLI-1\): nothing credited now/);
        // the admin API answers the CLI's credit, and the other way round
        const api = await credit('other', { amount: '7.00', reference: 'CLI-1' });
        assert.equal(api.headers['idempotent-replayed'], 'true');
        assert.equal(api.json.data.transactionId, first.transactionId);
        const d = assertData(await credit('other', { amount: '1.00', reference: 'API-1' }), 201);
        const fromCli = await srv.cli(['wallet', 'credit', 'other', '1.00', '--reference', 'API-1', '--json']);
        assert.equal(fromCli.transactionId, d.transactionId);
        assert.equal(fromCli.replayed, true);
        // another amount, or a bad reference: refused, nothing credited
        const other = await runCli(srv.dataDir, [...srv.dbArgs(), 'wallet', 'credit', 'other', '8.00', '--reference', 'CLI-1']);
        assert.equal(other.status, 1);
        assert.match(other.stderr, /another amount/);
        const bad = await runCli(srv.dataDir, [...srv.dbArgs(), 'wallet', 'credit', 'other', '8.00', '--reference', 'a b']);
        assert.equal(bad.status, 2);
        const after = ledgerView(await srv.accountShow('other'));
        assert.equal(paise(after.balance), paise(before.balance) + 800);
        assert.equal(after.ledgerEntries, before.ledgerEntries + 2);
    });

    it('the log names the admin key and each credit, never a key', async () => {
        const log = srv.log();
        assert.match(log, new RegExp(`event=admin_credit admin=${admin.id} account=${srv.accounts.other.id} transaction=ltx_\\w+ amount=3\\.00 balance=\\S+ reference=INV-2026/11-042 replayed=false`));
        assert.match(log, /event=admin_credit .* replayed=true/);
        // refusals are logged with why, and the key's id only for a revoked key
        for (const why of ['no_key', 'malformed_key', 'unknown_key'])
            assert.match(log, new RegExp(`event=admin_auth_refused reason=${why} admin=- path=/admin/accounts/\\{\\}(/credit)? trace=\\S+`), why);
        assert.match(log, new RegExp(`event=admin_auth_refused reason=revoked_key admin=${revoked.id} path=/admin/accounts/\\{\\}/credit`));
        srv.checkLog();
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
