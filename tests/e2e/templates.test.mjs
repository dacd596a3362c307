// Templates over real HTTP (SPEC 4; issue 3): templates added with the CLI render
// exactly as specified in the SMS a send produces — appName, appHash, variables,
// expiresInMinutes, the WebOTP line; an account default; unknown templates and
// unset placeholders are clear 400s; a resend keeps the template; and the segment
// count (GSM-7 or UCS-2, e.g. Hindi) is stored and charged: segments × price.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, phones, sendOk, assertData, assertError, paise, codeFromText, sleep } from './lib/server.mjs';

const phone = phones(34);
const APP_HASH = 'FA+9qCX9VSu';

describe('templates', () => {
    let srv;
    let key;
    const addTemplate = (account, name, body, extra = []) =>
        srv.cli(['template', 'add', account, '--name', name, '--body', body, ...extra, '--json']);
    const balance = async (name) => paise((await srv.accountShow(name)).balance);
    /** Bytes the request keeps sealed for its resends (0 for none), from the database. */
    const keptBytes = (requestId) => {
        const sql = `SELECT coalesce(${srv.db ? 'octet_length' : 'length'}(code_sealed), 0) FROM otp_requests WHERE public_id = '${requestId}'`;
        const out = srv.db
            ? execFileSync('psql', ['-qAtX', '-d', srv.db, '-c', sql], { encoding: 'utf8' })
            : execFileSync('sqlite3', [srv.dbFile, sql], { encoding: 'utf8' });
        return Number(out.trim());
    };
    const messageOf = async (to, count = 1) => {
        const sms = await srv.waitForSms(to, { count });
        const m = assertData(await srv.request('GET', `/messages/${sms.messageId}`, { key }), 200);
        return { sms, m };
    };

    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00', webby: '100.00', plain: '100.00', stranger: '100.00' } });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('templates'));

    it('a template with appName and appHash renders exactly (by name and by id)', async () => {
        const t = await addTemplate('acme', 'login', '{{code}} is the {{appName}} login code. Valid {{expiresInMinutes}} min.');
        assert.match(t.id, /^tpl_/);
        for (const templateId of ['login', t.id]) {
            const to = phone();
            await sendOk(srv, key, { phoneNumber: to, templateId, variables: { appName: 'Acme Pay' }, appHash: APP_HASH, expiresIn: 150 });
            const { sms } = await messageOf(to);
            const code = codeFromText(sms.text);
            assert.equal(sms.text, `${code} is the Acme Pay login code. Valid 3 min.\n${APP_HASH}`);
        }
    });

    it('{{appHash}} in the body places the hash there (no extra line); without appHash it renders as nothing', async () => {
        await addTemplate('acme', 'hashed', '{{code}} is your code\n{{appHash}} (Acme)');
        let to = phone();
        await sendOk(srv, key, { phoneNumber: to, templateId: 'hashed', appHash: APP_HASH });
        let text = (await srv.waitForSms(to)).text;
        assert.match(text, new RegExp(`^\\d{6} is your code\\n${APP_HASH.replace('+', '\\+')} \\(Acme\\)$`));
        to = phone();
        await sendOk(srv, key, { phoneNumber: to, templateId: 'hashed' });
        text = (await srv.waitForSms(to)).text;
        assert.match(text, /^\d{6} is your code\n \(Acme\)$/);
    });

    it('variables fill their placeholders; an unset one is 400 invalid_request (field variables) and nothing is charged', async () => {
        await addTemplate('acme', 'order', '{{code}} confirms order {{orderId}} for {{user}}.');
        const b0 = await balance('acme');
        const e = assertError(await srv.send(key, { phoneNumber: phone(), templateId: 'order', variables: { user: 'Asha' } }), 400, 'invalid_request');
        assert.equal(e.details.field, 'variables');
        assert.match(e.message, /orderId/, 'the message names the placeholder');
        assert.equal(await balance('acme'), b0);
        const to = phone();
        await sendOk(srv, key, { phoneNumber: to, templateId: 'order', variables: { user: 'Asha', orderId: 'A-42' } });
        const text = (await srv.waitForSms(to)).text;
        assert.match(text, /^\d{6} confirms order A-42 for Asha\.$/);
    });

    it('an unknown templateId is 400 invalid_request (field templateId)', async () => {
        for (const templateId of ['nope', 'tpl_0000000000000000000000', 'x'.repeat(200)]) {
            const e = assertError(await srv.send(key, { phoneNumber: phone(), templateId }), 400, 'invalid_request', templateId);
            assert.equal(e.details.field, 'templateId');
        }
        // Another account's template is unknown too.
        const t = await addTemplate('stranger', 'mine', '{{code}} stranger');
        const e = assertError(await srv.send(key, { phoneNumber: phone(), templateId: t.id }), 400, 'invalid_request');
        assert.equal(e.details.field, 'templateId');
    });

    it('the built-in text without templates; then the account default (the first template, or --default); "default" names it', async () => {
        const pkey = srv.accounts.plain.key;
        const textOf = async (body) => {
            const to = phone();
            await sendOk(srv, pkey, { phoneNumber: to, ...body });
            return (await srv.waitForSms(to)).text;
        };
        assert.match(await textOf({}), /^\d{6} is your plain verification code\. It expires in 10 minutes\. Do not share it\.$/);
        const first = await addTemplate('plain', 'short', '{{code}} PLAIN');
        assert.equal(first.default, true, 'the only template is the default');
        await sleep(1100); // whether the account has a default template comes with the key's lookup, kept for limits.cache_ms
        for (const body of [{}, { templateId: 'default' }]) assert.match(await textOf(body), /^\d{6} PLAIN$/, JSON.stringify(body));
        const second = await addTemplate('plain', 'second', '{{code}} SECOND');
        assert.equal(second.default, false);
        assert.match(await textOf({}), /^\d{6} PLAIN$/, 'adding a template does not change the default');
        assert.match(await textOf({ templateId: 'second' }), /^\d{6} SECOND$/);
        await addTemplate('plain', 'third', '{{code}} THIRD', ['--default']);
        await sleep(1100); // the templates found are kept for limits.cache_ms too
        assert.match(await textOf({}), /^\d{6} THIRD$/, '--default makes it the default');
        await srv.cli(['template', 'remove', 'plain', 'third']);
        await sleep(1100);
        assert.match(await textOf({}), /^\d{6} is your plain verification code\./, 'removing the default: the built-in text');
    });

    it('the WebOTP line: "@domain #code" after the app hash, when the account has a domain', async () => {
        await srv.cli(['account', 'set', 'webby', '--webotp-domain', 'login.example.com']);
        await sleep(1100); // the account's WebOTP domain comes with the key's cached lookup
        const wkey = srv.accounts.webby.key;
        const to = phone();
        await sendOk(srv, wkey, { phoneNumber: to, variables: { appName: 'Webby' }, appHash: APP_HASH });
        const text = (await srv.waitForSms(to)).text;
        const code = codeFromText(text);
        assert.equal(
            text,
            `${code} is your Webby verification code. It expires in 10 minutes. Do not share it.\n${APP_HASH}\n@login.example.com #${code}`,
        );
    });

    it('a resend renders the same template, app name and app hash', async () => {
        const to = phone();
        const d = await sendOk(srv, key, { phoneNumber: to, templateId: 'login', variables: { appName: 'Acme Pay' }, appHash: APP_HASH });
        await srv.waitForSms(to);
        await srv.advanceClock(31000);
        assertData(await srv.request('POST', '/otp/resend', { key, body: { requestId: d.requestId } }), 200);
        const text = (await srv.waitForSms(to, { count: 2 })).text;
        assert.equal(text, `${codeFromText(text)} is the Acme Pay login code. Valid 10 min.\n${APP_HASH}`);
    });

    it('a resend of a template with variables uses the send\'s (kept sealed), or its own when it gives them', async () => {
        const to = phone();
        const variables = { user: 'Ravi', orderId: 'B-7' };
        const d = await sendOk(srv, key, { phoneNumber: to, templateId: 'order', variables });
        // under rotate (this account's) only the variables are kept: one length byte, no code, the JSON
        assert.equal(keptBytes(d.requestId), 40 + 1 + JSON.stringify(variables).length);
        await srv.waitForSms(to); // a resend drops a message still queued: let the first go out
        await srv.advanceClock(31000);
        const again = { requestId: d.requestId, idempotencyKey: 'tpl-resend-1' };
        const first = assertData(await srv.request('POST', '/otp/resend', { key, body: again }), 200);
        const second = (await srv.waitForSms(to, { count: 2 })).text;
        assert.match(second, /^\d{6} confirms order B-7 for Ravi\.$/);
        await srv.advanceClock(31000);
        assertData(
            await srv.request('POST', '/otp/resend', { key, body: { requestId: d.requestId, variables: { user: 'Ravi', orderId: 'C-9' } } }),
            200,
        );
        const third = (await srv.waitForSms(to, { count: 3 })).text;
        assert.match(third, /^\d{6} confirms order C-9 for Ravi\.$/);
        // rotate (the default): each resend's code is new, and the last one verifies
        assert.notEqual(codeFromText(second), codeFromText(third));
        assert.equal((await srv.verify(key, d.requestId, codeFromText(third))).status, 200);
        // once verified, nothing is kept: a resend is refused as finished...
        assert.equal(keptBytes(d.requestId), 0);
        assertError(await srv.request('POST', '/otp/resend', { key, body: { requestId: d.requestId } }), 409, 'otp_already_verified');
        // ...but the replay of an earlier resend is still its replay
        assert.deepEqual(assertData(await srv.request('POST', '/otp/resend', { key, body: again }), 200), first);
    });

    it('under `reuse`, the kept code and the kept variables go out together', async () => {
        await srv.addAccount('reuser', { credit: '10.00' });
        await srv.cli(['account', 'set', 'reuser', '--resend-strategy', 'reuse']);
        await addTemplate('reuser', 'order', '{{code}} confirms order {{orderId}}.');
        const pkey = srv.accounts.reuser.key;
        const to = phone();
        const d = await sendOk(srv, pkey, { phoneNumber: to, templateId: 'order', variables: { orderId: 'R-1' } });
        const first = (await srv.waitForSms(to)).text;
        await srv.advanceClock(31000);
        assertData(await srv.request('POST', '/otp/resend', { key: pkey, body: { requestId: d.requestId } }), 200);
        const second = (await srv.waitForSms(to, { count: 2 })).text;
        assert.equal(second, first);
        assert.match(second, /^\d{6} confirms order R-1\.$/);
    });

    it('a multi-segment GSM-7 template is charged segments × price', async () => {
        // 200+ characters of GSM-7: 2 segments (153 per part).
        const body = `{{code}} is your code. ${'This message is deliberately long. '.repeat(6)}`;
        await addTemplate('acme', 'long', body);
        const to = phone();
        const b0 = await balance('acme');
        await sendOk(srv, key, { phoneNumber: to, templateId: 'long' });
        const { sms, m } = await messageOf(to);
        assert.ok(sms.text.length > 160 && sms.text.length <= 306, `length ${sms.text.length}`);
        assert.equal(m.segments, 2);
        assert.equal(b0 - (await balance('acme')), 2 * 25, '2 segments × 0.25');
    });

    it('UCS-2 (Hindi): 70 characters in one segment, 67 per part beyond; charged by the count; the price is per account', async () => {
        await srv.cli(['account', 'set', 'acme', '--price', '0.30']);
        // "{{code}} आपका कोड है" renders to 6 digits + Hindi: UCS-2, 1 segment.
        await addTemplate('acme', 'hindi1', '{{code}} आपका सत्यापन कोड है।');
        let to = phone();
        let b0 = await balance('acme');
        await sendOk(srv, key, { phoneNumber: to, templateId: 'hindi1' });
        let { m } = await messageOf(to);
        assert.equal(m.segments, 1);
        assert.equal(b0 - (await balance('acme')), 30);

        // About 150 UCS-2 units: 3 segments (67 per part).
        const long = `{{code}} ${'यह आपका सत्यापन कोड है। '.repeat(6)}`;
        await addTemplate('acme', 'hindi3', long);
        to = phone();
        b0 = await balance('acme');
        await sendOk(srv, key, { phoneNumber: to, templateId: 'hindi3' });
        ({ m } = await messageOf(to));
        const units = (await srv.waitForSms(to)).text.length; // JS length counts UTF-16 units
        const expected = units <= 70 ? 1 : Math.ceil(units / 67);
        assert.ok(expected >= 2, `the Hindi text is multi-part (${units} units)`);
        assert.equal(m.segments, expected, `${units} UCS-2 units`);
        assert.equal(b0 - (await balance('acme')), expected * 30, 'segments × price');
        await srv.cli(['account', 'set', 'acme', '--price', '0.25']);
        const show = await srv.accountShow('acme');
        assert.equal(show.balance, show.ledgerSum);
    });

    it('stops cleanly: exit 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
