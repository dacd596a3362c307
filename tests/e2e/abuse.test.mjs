// Abuse protection over real HTTP (SPEC 3; issue 5): per-number send limits under
// 200 parallel sends, the per-key token bucket, the lockout after wrong codes
// across requests, the country allow-list on the region libphonenumber derives,
// the SMS-pumping block and its lift, and the brute-force bound of
// docs/security.md driven through many windows with the injected clock.
// Each describe runs its own server; limits are set through OTPD_LIMITS_DEFAULTS
// (the server-wide defaults) and `otpd limits set` (per account).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, startServer, phones, assertData, assertError, paise, sleep } from './lib/server.mjs';

const SEND_KEYS = ['requestId', 'expiresAt', 'attemptsLeft'];

/** Checks a 429: code, details.reason, and Retry-After == details.retryAfter in [lo, hi]. */
function assert429(r, code, reason, lo, hi, what = '') {
    const e = assertError(r, 429, code, what);
    assert.equal(e.details.reason, reason, `${what}: ${r.text}`);
    const ra = e.details.retryAfter;
    assert.ok(Number.isInteger(ra) && ra >= lo && ra <= hi, `${what}: retryAfter ${ra} not in [${lo}, ${hi}]`);
    assert.equal(r.headers['retry-after'], String(ra), `${what}: Retry-After header`);
    return ra;
}

/** A 6-digit code that is not `code`. */
const wrong = (code, i = 0) => {
    let g = String((Number(code) + 1 + i) % 1000000).padStart(code.length, '0');
    return g;
};

describe('abuse: per-number send limits under parallel sends', () => {
    let srv;
    const phone = phones(51);
    before(async () => {
        // the key bucket is tested on its own below
        srv = await startServer({ env: { OTPD_LIMITS_DEFAULTS: 'key_rate=0' } });
    });
    after(() => srv && srv.cleanup('abuse-phone'));

    it('200 parallel sends to one number with the 30 s spacing: exactly 1 accepted, the rest 429 with Retry-After', async () => {
        const to = phone();
        const before0 = await srv.accountShow('acme');
        const rs = await Promise.all(Array.from({ length: 200 }, () => srv.send(srv.accounts.acme.key, { phoneNumber: to })));
        const ok = rs.filter((r) => r.status === 201);
        assert.equal(ok.length, 1, `accepted: ${ok.length}`);
        for (const r of rs.filter((x) => x.status !== 201)) assert429(r, 'rate_limited', 'phone_send_interval', 1, 30);
        const after0 = await srv.accountShow('acme');
        assert.equal(after0.requests - before0.requests, 1, 'one request stored');

        // Spaced 30 s apart, four more go through; the sixth in 15 min is refused
        // until the first leaves the window.
        for (let i = 0; i < 4; i++) {
            await srv.advanceClock(30000);
            assertData(await srv.send(srv.accounts.acme.key, { phoneNumber: to }), 201, SEND_KEYS, `send ${i + 2}`);
        }
        await srv.advanceClock(30000);
        const r6 = await srv.send(srv.accounts.acme.key, { phoneNumber: to });
        // the first send was 150 s ago: it leaves the 900 s window in 750 s
        assert429(r6, 'rate_limited', 'phone_send_limit', 749, 751, 'sixth send');
        await srv.advanceClock(751000);
        assertData(await srv.send(srv.accounts.acme.key, { phoneNumber: to }), 201, SEND_KEYS, 'after the window');
    });

    it('refusals are logged with their reason and a masked number, never the number itself', async () => {
        const log = srv.log();
        assert.match(log, /event=refused reason=phone_send_interval account=acc_\w+ phone=\+91\*+\d{4}/);
        assert.doesNotMatch(log, /event=refused[^\n]*phone=\+9198510000/);
        const m = await srv.request('GET', '/metrics');
        assert.equal(m.status, 200);
        assert.match(String(m.headers['content-type']), /^text\/plain/);
        const line = m.text.split('\n').find((l) => l.startsWith('otpd_refusals_total{reason="phone_send_interval"}'));
        assert.ok(line && Number(line.split(' ')[1]) >= 199, `metrics: ${line}`);
        const req429 = m.text.split('\n').find((l) => l.startsWith('otpd_http_requests_total{method="POST",route="/otp/send",status="429"}'));
        assert.ok(req429 && Number(req429.split(' ')[1]) >= 199, `metrics: ${req429}`);
        // latency by route and status: the 429s have their own histogram, as many as counted
        const lat429 = m.text.split('\n').find((l) => l.startsWith('otpd_http_request_duration_seconds_count{method="POST",route="/otp/send",status="429"}'));
        assert.ok(lat429, 'a latency histogram for the 429s');
        assert.equal(lat429.split(' ')[1], req429.split(' ')[1]);
        assert.match(m.text, /^otpd_http_request_duration_seconds_count\{method="POST",route="\/otp\/send",status="201"\} \d+$/m);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('abuse: per-number window without spacing', () => {
    let srv;
    const phone = phones(52);
    before(async () => {
        srv = await startServer({ env: { OTPD_LIMITS_DEFAULTS: 'key_rate=0,phone_interval=0' } });
    });
    after(() => srv && srv.cleanup('abuse-window'));

    it('200 parallel sends to one number: exactly 5 accepted, the rest 429 phone_send_limit; wallet charged 5 times', async () => {
        const to = phone();
        const before0 = await srv.accountShow('acme');
        const rs = await Promise.all(Array.from({ length: 200 }, () => srv.send(srv.accounts.acme.key, { phoneNumber: to })));
        assert.equal(rs.filter((r) => r.status === 201).length, 5);
        for (const r of rs.filter((x) => x.status !== 201)) assert429(r, 'rate_limited', 'phone_send_limit', 899, 900);
        const after0 = await srv.accountShow('acme');
        assert.equal(after0.requests - before0.requests, 5);
        assert.equal(after0.ledgerEntries - before0.ledgerEntries, 5);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('abuse: per-key token bucket', () => {
    let srv;
    before(async () => {
        srv = await startServer({ env: { OTPD_LIMITS_DEFAULTS: '' } });
        await srv.cli(['limits', 'set', 'acme', 'key_rate=10', 'key_burst=10']);
    });
    after(() => srv && srv.cleanup('abuse-bucket'));

    it('a key with a 10/s bucket driven at 100/s for 3 s accepts 10/s plus the burst', async () => {
        const key = srv.accounts.acme.key;
        const pending = [];
        const t0 = Date.now();
        for (let i = 0; i < 300; i++) {
            const due = t0 + i * 10;
            const wait = due - Date.now();
            if (wait > 0) await sleep(wait);
            pending.push(srv.request('GET', '/wallet', { key }));
        }
        const rs = await Promise.all(pending);
        const elapsed = (Date.now() - t0) / 1000;
        const ok = rs.filter((r) => r.status === 200).length;
        for (const r of rs.filter((x) => x.status !== 200)) assert429(r, 'rate_limited', 'key_rate', 1, 1);
        // 10/s over the run plus the burst of 10, with a little slack for timers
        assert.ok(ok >= 10 * 3 && ok <= 10 * elapsed + 10 + 3, `accepted ${ok} in ${elapsed.toFixed(2)} s`);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('abuse: lockout after wrong codes across requests', () => {
    let srv;
    const phone = phones(53);
    let key;
    const send = (to) => srv.send(key, { phoneNumber: to, maxAttempts: 10 });
    before(async () => {
        srv = await startServer({ env: { OTPD_LIMITS_DEFAULTS: 'key_rate=0' } });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('abuse-lockout'));

    it('5 wrong codes across two requests lock the number for sends and verifies; after 15 min it works again', async () => {
        const to = phone();
        const a = assertData(await send(to), 201, SEND_KEYS);
        const codeA = await srv.codeFor(to);
        await srv.advanceClock(31000);
        const b = assertData(await send(to), 201, SEND_KEYS);
        const codeB = await srv.codeFor(to, { count: 2 });
        for (let i = 0; i < 3; i++) assertError(await srv.verify(key, a.requestId, wrong(codeA, i)), 400, 'otp_incorrect');
        assertError(await srv.verify(key, b.requestId, wrong(codeB, 0)), 400, 'otp_incorrect');
        assertError(await srv.verify(key, b.requestId, wrong(codeB, 1)), 400, 'otp_incorrect'); // the 5th
        // locked: even the right code is refused, and so is a new send
        assert429(await srv.verify(key, b.requestId, codeB), 'phone_locked', 'phone_locked', 899, 900, 'verify');
        assert429(await srv.verify(key, a.requestId, codeA), 'phone_locked', 'phone_locked', 899, 900, 'verify A');
        assert429(await send(to), 'phone_locked', 'phone_locked', 899, 900, 'send');
        // the lock and the refused verify name the number, masked
        const masked = `${to.slice(0, 3)}${'*'.repeat(to.length - 7)}${to.slice(-4)}`.replace(/[+*]/g, '\\$&');
        assert.match(srv.log(), new RegExp(`event=phone_locked account=acc_\\w+ phone=${masked}\\b`));
        assert.match(srv.log(), new RegExp(`event=refused reason=phone_locked account=acc_\\w+ phone=${masked}\\b`));
        const blocks = await srv.cli(['block', 'list', 'acme', '--json']);
        assert.ok(blocks.some((x) => x.target === to && x.kind === 'phone_locked'), JSON.stringify(blocks));

        await srv.advanceClock(901000);
        const c = assertData(await send(to), 201, SEND_KEYS, 'after the lock');
        const codeC = await srv.codeFor(to, { count: 3 });
        assertData(await srv.verify(key, c.requestId, codeC), 200, ['verified']);
    });

    it('the window rolls: 5 wrong codes within any 15 minutes lock, also across the 15th minute after the first', async () => {
        const to = phone();
        const a = assertData(await srv.send(key, { phoneNumber: to, maxAttempts: 10, expiresIn: 3600 }), 201, SEND_KEYS);
        const code = await srv.codeFor(to);
        assertError(await srv.verify(key, a.requestId, wrong(code, 0)), 400, 'otp_incorrect');
        await srv.advanceClock(899000);
        for (let i = 1; i < 4; i++) assertError(await srv.verify(key, a.requestId, wrong(code, i)), 400, 'otp_incorrect');
        await srv.advanceClock(1500); // the first has left the window: 3 in it
        assertError(await srv.verify(key, a.requestId, wrong(code, 4)), 400, 'otp_incorrect', '4 within 15 minutes');
        assertError(await srv.verify(key, a.requestId, wrong(code, 5)), 400, 'otp_incorrect', 'the 5th within 15 minutes');
        assert429(await srv.verify(key, a.requestId, code), 'phone_locked', 'phone_locked', 899, 900, 'locked, the right code too');
    });

    it('a correct verification before the 5th wrong code resets the count', async () => {
        const to = phone();
        const a = assertData(await send(to), 201, SEND_KEYS);
        const codeA = await srv.codeFor(to);
        for (let i = 0; i < 4; i++) assertError(await srv.verify(key, a.requestId, wrong(codeA, i)), 400, 'otp_incorrect');
        assertData(await srv.verify(key, a.requestId, codeA), 200, ['verified']);
        await srv.advanceClock(31000);
        const b = assertData(await send(to), 201, SEND_KEYS);
        const codeB = await srv.codeFor(to, { count: 2 });
        for (let i = 0; i < 4; i++) assertError(await srv.verify(key, b.requestId, wrong(codeB, i)), 400, 'otp_incorrect');
        assertData(await srv.verify(key, b.requestId, codeB), 200, ['verified'], 'not locked: 4 + 4 wrong with a success between');
    });

    it('`otpd block lift` lifts a number\'s lock', async () => {
        const to = phone();
        const a = assertData(await send(to), 201, SEND_KEYS);
        const codeA = await srv.codeFor(to);
        for (let i = 0; i < 5; i++) assertError(await srv.verify(key, a.requestId, wrong(codeA, i)), 400, 'otp_incorrect');
        assert429(await srv.verify(key, a.requestId, codeA), 'phone_locked', 'phone_locked', 1, 900);
        await srv.cli(['block', 'lift', 'acme', to]);
        assertData(await srv.verify(key, a.requestId, codeA), 200, ['verified']);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('abuse: country allow-list', () => {
    let srv;
    before(async () => {
        srv = await startServer({ env: { OTPD_LIMITS_DEFAULTS: 'key_rate=0' } });
        await srv.cli(['limits', 'set', 'acme', 'countries=US']);
    });
    after(() => srv && srv.cleanup('abuse-country'));

    it('a +1 number of Canada when only US is allowed: 403 country_not_allowed, nothing stored or charged', async () => {
        const before0 = await srv.accountShow('acme');
        const r = await srv.send(srv.accounts.acme.key, { phoneNumber: '+14165550123' });
        assertError(r, 403, 'country_not_allowed');
        const india = await srv.send(srv.accounts.acme.key, { phoneNumber: '+919854000001' });
        assertError(india, 403, 'country_not_allowed');
        const after0 = await srv.accountShow('acme');
        assert.equal(after0.balance, before0.balance);
        assert.equal(after0.requests, before0.requests);
        assert.equal(after0.ledgerEntries, before0.ledgerEntries);
        assertData(await srv.send(srv.accounts.acme.key, { phoneNumber: '+12015550123' }), 201, SEND_KEYS, 'US');
        assert.match(srv.log(), /event=refused reason=country_not_allowed/);
    });

    it('a resend after the list narrowed: 403 country_not_allowed, nothing charged or sent', async () => {
        const key = srv.accounts.acme.key;
        const sent = await srv.send(key, { phoneNumber: '+12015550124' });
        assert.equal(sent.status, 201, sent.text);
        await srv.cli(['limits', 'set', 'acme', 'countries=CA']);
        await srv.advanceClock(31000); // past the resend spacing, and the limits cache
        const before0 = await srv.accountShow('acme');
        const r = await srv.request('POST', '/otp/resend', { key, body: { requestId: sent.json.data.requestId } });
        assertError(r, 403, 'country_not_allowed');
        const after0 = await srv.accountShow('acme');
        assert.equal(after0.balance, before0.balance);
        assert.equal(after0.ledgerEntries, before0.ledgerEntries);
        const st = await srv.request('GET', `/otp/${sent.json.data.requestId}`, { key });
        assert.equal(st.json.data.resendCount, 0);
        assert.equal(st.json.data.messages.length, 1);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('abuse: SMS pumping', () => {
    let srv;
    let key;
    const attack = phones(55); // one prefix: +91985500….
    const normal = phones(56); // another: +91985600….
    before(async () => {
        srv = await startServer({ env: { OTPD_LIMITS_DEFAULTS: 'key_rate=0' } });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('abuse-pumping'));

    it('a burst to one prefix with no verifications blocks that prefix, not normal traffic that verifies; block lift re-opens it', async () => {
        // normal traffic: 25 numbers of one prefix, each verified
        const normalRun = (async () => {
            for (let i = 0; i < 25; i++) {
                const to = normal();
                const r = assertData(await srv.send(key, { phoneNumber: to }), 201, SEND_KEYS, `normal ${i}`);
                assertData(await srv.verify(key, r.requestId, await srv.codeFor(to)), 200, ['verified']);
            }
        })();
        // the attack: 60 numbers of another prefix, in parallel, never verified
        const targets = Array.from({ length: 60 }, () => attack());
        const rs = await Promise.all(targets.map((to) => srv.send(key, { phoneNumber: to })));
        await normalRun;
        const ok = rs.filter((r) => r.status === 201).length;
        assert.equal(ok, 19, 'the 20th send in the window trips the rule');
        // The wait counts from each refused send's own arrival: one that arrived a
        // millisecond before the send that tripped the rule, and was decided after
        // it, waits the whole hour plus that millisecond, rounded up (3601).
        for (const r of rs.filter((x) => x.status !== 201)) assert429(r, 'rate_limited', 'suspected_sms_pumping', 3599, 3601);

        const blocks = await srv.cli(['block', 'list', '--json']);
        assert.deepEqual(blocks.filter((b) => b.kind === 'suspected_sms_pumping').map((b) => b.target), ['+91985500']);
        assert.match(srv.log(), /event=sms_pumping_block account=acc_\w+ prefix=\+91985500\b/);
        const m = await srv.request('GET', '/metrics');
        assert.match(m.text, /^otpd_sms_pumping_blocks_total 1$/m);

        // still blocked for new numbers of the prefix; normal traffic goes on
        assert429(await srv.send(key, { phoneNumber: attack() }), 'rate_limited', 'suspected_sms_pumping', 1, 3600);
        assertData(await srv.send(key, { phoneNumber: normal() }), 201, SEND_KEYS);

        await srv.cli(['block', 'lift', 'acme', '+91985500']);
        assertData(await srv.send(key, { phoneNumber: attack() }), 201, SEND_KEYS, 'after block lift');
    });

    it('numbers on the safe list are never blocked', async () => {
        await srv.cli(['limits', 'set', 'acme', 'safe=+91985700']);
        await sleep(1100); // the server reads an account's limits at most once a second
        const safe = phones(57);
        const rs = await Promise.all(Array.from({ length: 30 }, () => srv.send(key, { phoneNumber: safe() })));
        assert.equal(rs.filter((r) => r.status === 201).length, 30);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('abuse: brute force under the default limits', () => {
    let srv;
    let key;
    before(async () => {
        srv = await startServer({ env: { OTPD_LIMITS_DEFAULTS: '' } });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('abuse-brute'));

    it('an attacker guessing as fast as allowed for 3 days gets at most 100 guesses per number in any 24 h', async () => {
        const to = '+919858000001';
        const DAY = 86400000;
        const accepted = []; // server times of guesses that were judged
        const start = Date.now() + srv.clockOffsetMs;
        let live = []; // [requestId, code]
        let sends = 0;
        while (Date.now() + srv.clockOffsetMs - start < 3 * DAY) {
            let wait = 0;
            const s = await srv.send(key, { phoneNumber: to, maxAttempts: 10 });
            if (s.status === 201) {
                sends++;
                live.push([s.json.data.requestId, await srv.codeFor(to, { count: sends })]);
            } else if (s.status === 429) {
                wait = s.json.details.retryAfter;
            } else {
                assert.fail(`send: ${s.status} ${s.text}`);
            }
            for (const [id, code] of live) {
                for (;;) {
                    const r = await srv.verify(key, id, wrong(code, accepted.length));
                    if (r.status === 400) {
                        accepted.push(Date.now() + srv.clockOffsetMs);
                        continue;
                    }
                    if (r.status === 429) wait = Math.max(wait, r.json.details.retryAfter);
                    break; // locked number, exhausted or expired request
                }
                if (wait) break;
            }
            live = live.slice(-3);
            await srv.advanceClock(Math.max(wait, 1) * 1000);
        }
        let max = 0;
        for (let i = 0, j = 0; i < accepted.length; i++) {
            while (accepted[i] - accepted[j] >= DAY) j++;
            max = Math.max(max, i - j + 1);
        }
        assert.ok(max <= 100, `${max} guesses in one 24 h window`);
        assert.ok(accepted.length >= 200, `the attacker did guess (${accepted.length} in 3 days)`);
        // 100 guesses out of 10^6 codes: p <= 1/10,000 per day
        assert.ok(max / 1e6 <= 1 / 10000);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('abuse: spend caps and resends', () => {
    let srv;
    let key;
    const phone = phones(59);
    before(async () => {
        srv = await startServer({ env: { OTPD_LIMITS_DEFAULTS: 'key_rate=0' }, testKeys: true });
        key = srv.accounts.acme.key;
    });
    after(() => srv && srv.cleanup('abuse-spend'));

    it('a daily spend cap refuses the send that would pass it, with nothing charged, until UTC midnight', async () => {
        await srv.cli(['limits', 'set', 'acme', 'daily_cap=50']); // two sends at 0.25
        await sleep(1100); // the server re-reads an account's limits at most once a second
        assertData(await srv.send(key, { phoneNumber: phone() }), 201, SEND_KEYS);
        assertData(await srv.send(key, { phoneNumber: phone() }), 201, SEND_KEYS);
        const before0 = await srv.accountShow('acme');
        const r = await srv.send(key, { phoneNumber: phone() });
        assert429(r, 'rate_limited', 'daily_spend_cap', 1, 86400);
        const after0 = await srv.accountShow('acme');
        assert.equal(after0.balance, before0.balance);
        assert.equal(after0.requests, before0.requests);
        // test keys are never charged, so the cap does not apply to them
        assertData(await srv.send(srv.accounts.acme.testKey, { phoneNumber: phone() }), 201, SEND_KEYS);
        await srv.cli(['limits', 'set', 'acme', 'daily_cap=']);
    });

    it('resends count as sends of the number', async () => {
        await srv.cli(['limits', 'set', 'acme', 'phone_sends=2']);
        await sleep(1100);
        const to = phone();
        const s = assertData(await srv.send(key, { phoneNumber: to }), 201, SEND_KEYS);
        await srv.advanceClock(31000);
        assertData(await srv.request('POST', '/otp/resend', { key, body: { requestId: s.requestId } }), 200, SEND_KEYS);
        await srv.advanceClock(31000);
        assert429(await srv.request('POST', '/otp/resend', { key, body: { requestId: s.requestId } }), 'rate_limited', 'phone_send_limit', 1, 900);
        assert429(await srv.send(key, { phoneNumber: to }), 'rate_limited', 'phone_send_limit', 1, 900);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

// Daily spend caps (SPEC 3 "optional daily spend caps per account and per
// destination country"; docs/security.md: daily_cap, country_daily_cap in paise,
// `429 rate_limited` with details.reason "daily_spend_cap" and Retry-After = the
// next UTC midnight) under parallel sends: the cap is checked and the spend
// recorded in the send's transaction, so 40 sends at once accept exactly what the
// cap allows, and the wallet is charged for exactly those.
describe('abuse: spend caps under parallel sends', () => {
    let srv;
    const phone = phones(58);
    const usPhone = (() => {
        let n = 100;
        return () => `+1201555${String(n++).padStart(4, '0')}`; // +12015550100, … (US, like the allow-list test)
    })();
    const DAY = 86400000;
    before(async () => {
        // The caps are set before the server starts (it re-reads an account's
        // limits at most once a second, so no wait is needed). The pumping rule is
        // off: 40 sends to one prefix with no verification would trip it.
        srv = new Server(fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-')));
        await srv.addAccount('capped', { credit: '100.00' });
        await srv.addAccount('percountry', { credit: '100.00' });
        await srv.cli(['limits', 'set', 'capped', 'daily_cap=300']); // 3.00 a day: 12 sends at 0.25
        await srv.cli(['limits', 'set', 'percountry', 'country_daily_cap=100']); // 1.00 per country: 4 sends
        await srv.start({ env: { OTPD_LIMITS_DEFAULTS: 'key_rate=0,pump_min_sends=0,pump_country_min_sends=0' } });
        // Not within two minutes of a UTC midnight (the caps reset there): move the
        // server's clock past it if the test happens to run then.
        const now = Date.now() + srv.clockOffsetMs;
        const toMidnight = DAY - (now % DAY);
        if (toMidnight < 120000) await srv.advanceClock(toMidnight + 1000);
    });
    after(() => srv && srv.cleanup('abuse-spend-parallel'));

    /** Fires the sends at once (one connection each); checks every refusal. */
    async function burst(name, numbers) {
        const key = srv.accounts[name].key;
        const t0 = Date.now() + srv.clockOffsetMs;
        const rs = await Promise.all(numbers.map((phoneNumber) => srv.send(key, { phoneNumber })));
        const t1 = Date.now() + srv.clockOffsetMs;
        // Retry-After: the seconds to the next UTC midnight, as of some moment
        // between the burst's start and its end (give or take the rounding).
        const lo = Math.ceil((DAY - (t1 % DAY)) / 1000) - 1;
        const hi = Math.ceil((DAY - (t0 % DAY)) / 1000) + 1;
        const accepted = [];
        for (const [i, r] of rs.entries()) {
            if (r.status === 201) {
                assertData(r, 201, SEND_KEYS);
                accepted.push(numbers[i]);
            } else {
                assert429(r, 'rate_limited', 'daily_spend_cap', lo, hi, `send to ${numbers[i]}`);
            }
        }
        return accepted;
    }

    it('daily_cap 3.00 at 0.25 a send: 40 parallel sends → exactly 12 × 201, 28 × 429 daily_spend_cap (Retry-After to UTC midnight); charged 12 times', async () => {
        const before0 = await srv.accountShow('capped');
        const numbers = Array.from({ length: 40 }, () => phone());
        const accepted = await burst('capped', numbers);
        assert.equal(accepted.length, 12, `accepted ${accepted.length} of 40 under a 3.00 cap`);
        const after0 = await srv.accountShow('capped');
        assert.equal(paise(before0.balance) - paise(after0.balance), 12 * 25, 'the balance moved by exactly 12 charges');
        assert.equal(after0.balance, after0.ledgerSum);
        assert.equal(after0.ledgerEntries - before0.ledgerEntries, 12, 'twelve debits');
        assert.equal(after0.requests - before0.requests, 12);
        assert.equal(after0.messages - before0.messages, 12);
        // The cap stays reached: one more send later is refused too, and charges nothing.
        assert429(await srv.send(srv.accounts.capped.key, { phoneNumber: phone() }), 'rate_limited', 'daily_spend_cap', 1, 86400, 'after the burst');
        assert.equal((await srv.accountShow('capped')).balance, after0.balance);
        // Exactly the accepted numbers get an SMS.
        await srv.codesFor(accepted);
        const smsTo = new Set(srv.readSms().map((m) => m.to));
        for (const to of numbers) assert.equal(smsTo.has(to), accepted.includes(to), `SMS to ${to}`);
    });

    it('country_daily_cap 1.00: 40 parallel sends to India → exactly 4 accepted; the United States has a cap of its own, untouched by India\'s', async () => {
        const before0 = await srv.accountShow('percountry');
        const india = await burst('percountry', Array.from({ length: 40 }, () => phone()));
        assert.equal(india.length, 4, `accepted ${india.length} of 40 Indian sends under a 1.00 per-country cap`);
        // India's cap is reached; US numbers still go through, up to their own 1.00.
        const us = await burst('percountry', Array.from({ length: 10 }, () => usPhone()));
        assert.equal(us.length, 4, `accepted ${us.length} of 10 US sends after India's cap was reached`);
        const after0 = await srv.accountShow('percountry');
        assert.equal(paise(before0.balance) - paise(after0.balance), 8 * 25, 'the balance moved by exactly 8 charges');
        assert.equal(after0.balance, after0.ledgerSum);
        assert.equal(after0.ledgerEntries - before0.ledgerEntries, 8);
        assert.equal(after0.requests - before0.requests, 8);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
