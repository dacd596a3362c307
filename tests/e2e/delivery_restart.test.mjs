// Restart safety of delivery (SPEC 5, issue 4): kill -9 otpd while messages are
// in flight to a slow HTTP gateway (peers/http_gateway.mjs); after a restart on
// the same data directory every committed message reaches the gateway at least
// once (the outbox lease runs out and the message is claimed again), none is
// lost, and the gateway never sees a message that was not committed: the set of
// message ids it received is exactly the account's messages.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { phones, sleep } from './lib/server.mjs';
import { startGateway } from './peers/http_gateway.mjs';
import { writeIni, startWithConfig } from './peers/otpd.mjs';

const phone = phones(43);

describe('kill -9 with messages in flight', () => {
    let gw;
    let srv;
    before(async () => {
        gw = await startGateway({ name: 'slow' });
        gw.behave = () => ({ delayMs: 150 });
        const ini = writeIni(`[delivery]
lease = 2
batch = 8

[provider.slow]
type = http
url = ${gw.url}
timeout = 5000
`);
        srv = await startWithConfig(ini, { accounts: { acme: '1000.00' } });
    });
    after(async () => {
        if (srv) srv.cleanup('delivery_restart');
        if (gw) await gw.close();
    });

    it('after a restart every committed message is sent at least once, and nothing else is', async () => {
        const key = srv.accounts.acme.key;
        const created = [];
        let unknown = 0;
        let stop = false;
        const worker = async () => {
            while (!stop) {
                const to = phone();
                try {
                    const r = await srv.send(key, { phoneNumber: to });
                    if (r.status === 201) created.push(r.json.data.requestId);
                    else unknown++;
                } catch {
                    unknown++; // the connection died with the server: committed or not
                }
            }
        };
        const workers = Array.from({ length: 4 }, worker);
        // Kill while the gateway holds requests that otpd has not seen answered.
        await gw.waitFor(() => gw.requests.length >= 10 && gw.pending > 0, 'traffic with requests in flight');
        await srv.kill9();
        stop = true;
        await Promise.all(workers);
        const seenBeforeKill = gw.requests.length;
        assert.ok(created.length > 0);

        await srv.start();
        const key2 = srv.accounts.acme.key;
        const show = await srv.accountShow('acme');
        assert.ok(show.messages >= created.length, `${show.messages} messages < ${created.length} answered 201`);
        assert.ok(show.messages <= created.length + unknown);

        // Every committed message reaches the gateway (the lease is 2 s).
        const deadline = Date.now() + 30000;
        let ids;
        for (;;) {
            ids = new Set(gw.requests.map((r) => r.body.messageId));
            if (ids.size >= show.messages || Date.now() > deadline) break;
            await sleep(100);
        }
        assert.equal(ids.size, show.messages, 'one distinct message id at the gateway per committed message');
        for (const requestId of created) {
            const r = await srv.request('GET', `/otp/${requestId}`, { key: key2 });
            assert.equal(r.status, 200, r.text);
            for (const m of r.json.data.messages) {
                assert.ok(ids.has(m.messageId), `${m.messageId} of ${requestId} never reached the gateway`);
            }
        }
        // And each ends up sent.
        for (const requestId of created.slice(0, 20)) {
            const r = await srv.request('GET', `/otp/${requestId}`, { key: key2 });
            const deadline2 = Date.now() + 15000;
            let st = r.json.data.messages[0].deliveryStatus;
            while (st !== 'sent' && Date.now() < deadline2) {
                await sleep(100);
                st = (await srv.request('GET', `/otp/${requestId}`, { key: key2 })).json.data.messages[0].deliveryStatus;
            }
            assert.equal(st, 'sent', requestId);
        }
        // At-least-once, not exactly-once: a message the gateway was still answering
        // at the kill was never recorded as sent, so it goes out again once its
        // lease (2 s) runs out, which may be after every id above was seen once.
        const deadline3 = Date.now() + 15000;
        while (gw.requests.length <= ids.size && Date.now() < deadline3) await sleep(100);
        assert.ok(gw.requests.length > ids.size, 'the messages in flight at the kill were sent again');
        assert.ok(seenBeforeKill > 0);
        await srv.stop();
    });
});
