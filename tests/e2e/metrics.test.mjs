// GET /metrics (SPEC 7): the series an operator watches, each moved by the real
// thing it counts, over real HTTP against the real binary: OTP requests created
// (send and resend, live and test keys; an idempotent replay is not one),
// verifications by outcome, wallet refusals (402), and delivery through two
// local HTTP gateways (peers/http_gateway.mjs): messages by provider and status
// (sent, failed, queued), temporary failures, delivery reports, the latency
// histogram, and the outbox's depth while no gateway takes messages and after.
// Counters are process-wide, so every check compares two scrapes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { phones, sleep, sendOk, startServer, assertError } from './lib/server.mjs';
import { startGateway } from './peers/http_gateway.mjs';
import { writeIni, startWithConfig } from './peers/otpd.mjs';

const phone = phones(47);
const DLR_SECRET = 'metrics-dlr-secret-0123456789';

/** All samples of a scrape: {'name{labels}': value}; the labels as written. */
async function scrape(srv) {
    const r = await srv.request('GET', '/metrics');
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const out = {};
    for (const line of r.text.split('\n')) {
        if (!line || line.startsWith('#')) continue;
        const m = /^([a-z_]+(?:\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})?) (\S+)$/.exec(line);
        assert.ok(m, `a sample line: ${JSON.stringify(line)}`);
        assert.ok(!(m[1] in out), `a series printed twice: ${m[1]}`);
        out[m[1]] = Number(m[2]);
    }
    out.text = r.text;
    return out;
}

/** after[k] - before[k] for each key of want, compared with want. */
function assertDeltas(before, after, want, what) {
    const got = {};
    for (const k of Object.keys(want)) {
        assert.ok(k in after, `${what}: no sample ${k} in\n${after.text}`);
        got[k] = after[k] - (before[k] || 0);
    }
    assert.deepEqual(got, want, what);
}

describe('metrics: OTP requests, verifications, wallet refusals', () => {
    let srv;
    let live;
    let test;
    let poor;
    before(async () => {
        srv = await startServer({ accounts: { acme: '100.00', poor: '0.10' }, testKeys: true });
        live = srv.accounts.acme.key;
        test = srv.accounts.acme.testKey;
        poor = srv.accounts.poor.key;
        assert.ok(live && test && poor);
    });
    after(() => srv && srv.cleanup('metrics'));

    it('every series is there from the start, at zero where nothing happened', async () => {
        const m = await scrape(srv);
        for (const kind of ['send', 'resend'])
            for (const mode of ['live', 'test']) assert.ok(`otpd_otp_sends_total{kind="${kind}",mode="${mode}"}` in m);
        for (const o of ['verified', 'otp_incorrect', 'otp_attempts_exhausted', 'otp_expired', 'otp_already_verified',
            'otp_cancelled', 'otp_not_found', 'invalid_otp_code', 'phone_locked'])
            assert.ok(`otpd_otp_verifications_total{outcome="${o}"}` in m, o);
        assert.equal(m.otpd_wallet_refusals_total, 0);
        assert.ok('otpd_delivery_queue_depth{status="queued"}' in m, 'the outbox depth, on both backends');
        assert.ok('otpd_delivery_messages_total{provider="file",status="sent"}' in m, 'the default provider');
        assert.doesNotMatch(m.text, /otpd_delivery_reports_total\{provider="\(none\)"/, 'no reports without a provider');
    });

    it('sends and resends by key mode; an idempotent replay is not a new one', async () => {
        const before = await scrape(srv);
        const to = phone();
        const body = { phoneNumber: to, idempotencyKey: 'metrics-idem-1' };
        const first = await srv.request('POST', '/otp/send', { key: live, body });
        assert.equal(first.status, 201, first.text);
        const replay = await srv.request('POST', '/otp/send', { key: live, body });
        assert.equal(replay.status, 201, replay.text);
        assert.equal(replay.json.data.requestId, first.json.data.requestId, 'a replay');
        await sendOk(srv, test, { phoneNumber: phone() });
        await srv.advanceClock(31000);
        const re = await srv.request('POST', '/otp/resend', { key: live, body: { requestId: first.json.data.requestId } });
        assert.equal(re.status, 200, re.text);
        const after = await scrape(srv);
        assertDeltas(before, after, {
            'otpd_otp_sends_total{kind="send",mode="live"}': 1,
            'otpd_otp_sends_total{kind="send",mode="test"}': 1,
            'otpd_otp_sends_total{kind="resend",mode="live"}': 1,
            'otpd_otp_sends_total{kind="resend",mode="test"}': 0,
            otpd_wallet_refusals_total: 0,
        }, 'sends');
    });

    it('verifications by outcome, early refusals included', async () => {
        const to = phone();
        const { requestId } = await sendOk(srv, live, { phoneNumber: to, maxAttempts: 2 });
        const code = await srv.codeFor(to);
        const wrong = code === '000000' ? '111111' : '000000';
        const before = await scrape(srv);
        assertError(await srv.verify(live, requestId, wrong), 400, 'otp_incorrect');
        assertError(await srv.verify(live, requestId, '12'), 400, 'invalid_otp_code');
        assertError(await srv.verify(live, 'req_nope', code), 404, 'otp_not_found');
        assertError(await srv.verify(live, 'req_0000000000000000000000', code), 404, 'otp_not_found');
        const ok = await srv.verify(live, requestId, code);
        assert.equal(ok.status, 200, ok.text);
        assertError(await srv.verify(live, requestId, code), 409, 'otp_already_verified');
        const { requestId: other } = await sendOk(srv, live, { phoneNumber: phone(), maxAttempts: 1 });
        assertError(await srv.verify(live, other, wrong), 400, 'otp_incorrect');
        assertError(await srv.verify(live, other, wrong), 410, 'otp_attempts_exhausted');
        const after = await scrape(srv);
        assertDeltas(before, after, {
            'otpd_otp_verifications_total{outcome="verified"}': 1,
            'otpd_otp_verifications_total{outcome="otp_incorrect"}': 2,
            'otpd_otp_verifications_total{outcome="invalid_otp_code"}': 1,
            'otpd_otp_verifications_total{outcome="otp_not_found"}': 2,
            'otpd_otp_verifications_total{outcome="otp_already_verified"}': 1,
            'otpd_otp_verifications_total{outcome="otp_attempts_exhausted"}': 1,
            'otpd_otp_verifications_total{outcome="otp_expired"}': 0,
        }, 'verifications');
        assert.doesNotMatch(after.text, new RegExp(code), 'no code in the metrics');
    });

    it('a send the wallet cannot cover is a wallet refusal, and nothing else', async () => {
        const before = await scrape(srv);
        assertError(await srv.send(poor, { phoneNumber: phone() }), 402, 'insufficient_balance');
        const after = await scrape(srv);
        assertDeltas(before, after, {
            otpd_wallet_refusals_total: 1,
            'otpd_otp_sends_total{kind="send",mode="live"}': 0,
        }, 'wallet refusal');
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});

describe('metrics: delivery by provider, reports, latency, the outbox', () => {
    let a;
    let b;
    let srv;
    let key;
    before(async () => {
        a = await startGateway({ name: 'a' });
        b = await startGateway({ name: 'b' });
        srv = await startWithConfig(writeIni(`[delivery]
providers = primary, backup

[provider.primary]
type = http
url = ${a.url}
timeout = 700
dlr_secret = ${DLR_SECRET}
breaker_threshold = 1000

[provider.backup]
type = http
url = ${b.url}
timeout = 700
dlr_secret = ${DLR_SECRET}
breaker_threshold = 1000
`));
        key = srv.accounts.acme.key;
    });
    after(async () => {
        if (srv) srv.cleanup('metrics_delivery');
        if (a) await a.close();
        if (b) await b.close();
    });

    const messageOf = async (requestId) => {
        const r = await srv.request('GET', `/otp/${requestId}`, { key });
        assert.equal(r.status, 200, r.text);
        return r.json.data.messages[0];
    };
    const waitMessage = async (requestId, want) => {
        for (const deadline = Date.now() + 10000; ;) {
            const m = await messageOf(requestId);
            if (m.deliveryStatus === want) return m;
            if (Date.now() > deadline) assert.fail(`message of ${requestId} is ${m.deliveryStatus}, want ${want}`);
            await sleep(30);
        }
    };

    it('sent, failed over, refused for good, reported: by provider, with the latency', async () => {
        const before = await scrape(srv);
        for (const p of ['primary', 'backup', '(none)'])
            assert.ok(`otpd_delivery_messages_total{provider="${p}",status="sent"}` in before, `${p} from the start`);
        const toA = phone();
        const toB = phone();
        const toFail = phone();
        a.behave = (body) => (body && body.to === toB ? { status: 503 } : body && body.to === toFail ? { status: 422 } : null);
        const sentA = await sendOk(srv, key, { phoneNumber: toA });
        const sentB = await sendOk(srv, key, { phoneNumber: toB });
        const failed = await sendOk(srv, key, { phoneNumber: toFail });
        await waitMessage(sentA.requestId, 'sent');
        const mB = await waitMessage(sentB.requestId, 'sent');
        await waitMessage(failed.requestId, 'failed');
        a.behave = null;
        assert.equal(mB.provider, 'backup');
        const gwId = b.to(toB)[0].id;
        const r = await srv.request('POST', '/providers/backup/dlr', {
            body: { id: gwId, status: 'delivered' }, headers: { 'X-DLR-Secret': DLR_SECRET } });
        assert.equal(r.status, 200, r.text);
        await waitMessage(sentB.requestId, 'delivered');
        const after = await scrape(srv);
        assertDeltas(before, after, {
            'otpd_delivery_messages_total{provider="primary",status="sent"}': 1,
            'otpd_delivery_messages_total{provider="primary",status="failed"}': 1,
            'otpd_delivery_messages_total{provider="backup",status="sent"}': 1,
            'otpd_delivery_messages_total{provider="backup",status="failed"}': 0,
            'otpd_delivery_temporary_failures_total{provider="primary"}': 1,
            'otpd_delivery_temporary_failures_total{provider="backup"}': 0,
            'otpd_delivery_reports_total{provider="backup",status="delivered"}': 1,
            'otpd_delivery_reports_total{provider="primary",status="delivered"}': 0,
            'otpd_delivery_latency_seconds_count{provider="primary"}': 1,
            'otpd_delivery_latency_seconds_count{provider="backup"}': 1,
            'otpd_delivery_latency_seconds_bucket{provider="backup",le="+Inf"}': 1,
        }, 'delivery');
        // a histogram: cumulative buckets up to +Inf = _count, and a sum within reason
        let prev = 0;
        const les = Object.keys(after).filter((k) => k.startsWith('otpd_delivery_latency_seconds_bucket{provider="backup"'));
        assert.equal(les.length, 15);
        for (const k of les) {
            assert.ok(after[k] >= prev, `${k}: ${after[k]} < ${prev}`);
            prev = after[k];
        }
        const sum = after['otpd_delivery_latency_seconds_sum{provider="backup"}'];
        assert.ok(sum >= 0 && sum < 10, `latency sum ${sum} s`);
    });

    it('with no gateway taking messages, the outbox holds them (queued) until one does', async () => {
        const before = await scrape(srv);
        a.behave = () => ({ status: 503 });
        b.behave = () => ({ status: 503 });
        const to = phone();
        const { requestId } = await sendOk(srv, key, { phoneNumber: to });
        await b.waitFor(() => b.to(to).length >= 1, 'the backup tried');
        // The gateway has the request; otpd counts the refusal once its 503 is
        // read, a moment later (on a loaded machine, after the first scrape).
        const requeued = (m) => m['otpd_delivery_messages_total{provider="backup",status="queued"}'] -
            (before['otpd_delivery_messages_total{provider="backup",status="queued"}'] || 0) >= 1;
        let held;
        for (const deadline = Date.now() + 10000; ;) {
            held = await scrape(srv);
            if (requeued(held) || Date.now() > deadline) break;
            await sleep(30);
        }
        const depth = held['otpd_delivery_queue_depth{status="queued"}'] + held['otpd_delivery_queue_depth{status="sending"}'];
        assert.equal(depth, 1, 'the one message is in the outbox');
        assert.ok(requeued(held), 'back to the outbox after the last provider tried');
        assert.ok(held['otpd_delivery_temporary_failures_total{provider="backup"}'] >
            before['otpd_delivery_temporary_failures_total{provider="backup"}']);
        a.behave = null;
        b.behave = null;
        await waitMessage(requestId, 'sent');
        const done = await scrape(srv);
        assert.equal(done['otpd_delivery_queue_depth{status="queued"}'], 0);
        assert.equal(done['otpd_delivery_queue_depth{status="sending"}'], 0);
    });

    it('SIGTERM: exits 0, no sanitizer report, no code or key in the log', async () => {
        await srv.stop();
    });
});
