// tests/e2e/peers/http_gateway.mjs — an SMS gateway for the HTTP provider's
// end-to-end tests, on node:http in the test process.
//
// Every POST is recorded as {at, body (parsed JSON), headers, socket} and answered
// by `gw.behave(body, n)`, which returns {status, json?, delayMs?, hang?}:
// status 200 with {"id": "gw-<n>"} by default. `hang: true` never answers (a
// timeout for otpd); `gw.down()` closes the listener and every connection (a dead
// gateway: connection refused) and `gw.up()` listens again on the same port.
// `gw.connections` counts the TCP connections otpd opened, to check keep-alive.
import http from 'node:http';

export async function startGateway({ name = 'gw' } = {}) {
    const gw = {
        name,
        port: 0,
        requests: [],
        connections: 0,
        sockets: new Set(),
        hanging: new Set(),
        nextId: 1,
        pending: 0, // requests read but not answered yet (delayed)
        behave: null,
    };
    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            let body = null;
            try {
                body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
                body = null;
            }
            const n = gw.requests.length + 1;
            const rec = { at: Date.now(), n, body, headers: req.headers, socket: req.socket.remotePort };
            gw.requests.push(rec);
            const b = (gw.behave && gw.behave(body, n)) || {};
            const status = b.status || 200;
            rec.status = status;
            if (b.hang) {
                gw.hanging.add(res);
                res.on('close', () => gw.hanging.delete(res));
                return;
            }
            const reply = b.json !== undefined ? b.json : status < 300 ? { id: `${name}-${gw.nextId++}` } : { error: 'refused' };
            if (status < 300 && reply && reply.id) rec.id = reply.id;
            const send = () => {
                const text = JSON.stringify(reply);
                res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
                res.end(text);
            };
            if (b.delayMs) {
                gw.pending++;
                setTimeout(() => {
                    gw.pending--;
                    if (!res.destroyed) send();
                }, b.delayMs);
            } else {
                send();
            }
        });
    });
    server.keepAliveTimeout = 60000;
    server.on('connection', (sock) => {
        gw.connections++;
        gw.sockets.add(sock);
        sock.on('close', () => gw.sockets.delete(sock));
    });

    const listen = (port) =>
        new Promise((resolve, reject) => {
            server.once('error', reject);
            server.listen(port, '127.0.0.1', () => {
                server.off('error', reject);
                resolve();
            });
        });
    await listen(0);
    gw.port = server.address().port;
    gw.url = `http://127.0.0.1:${gw.port}/sms`;

    /** Requests whose JSON body has `to` equal to phone. */
    gw.to = (phone) => gw.requests.filter((r) => r.body && r.body.to === phone);

    gw.down = () =>
        new Promise((resolve) => {
            for (const res of gw.hanging) res.destroy();
            for (const s of gw.sockets) s.destroy();
            server.close(() => resolve());
        });
    gw.up = () => listen(gw.port);

    gw.waitFor = async (pred, what, timeoutMs = 15000) => {
        const deadline = Date.now() + timeoutMs;
        while (!pred(gw)) {
            if (Date.now() > deadline) throw new Error(`gateway ${name}: timed out waiting for ${what}`);
            await new Promise((r) => setTimeout(r, 20));
        }
    };

    gw.close = () =>
        new Promise((resolve) => {
            for (const res of gw.hanging) res.destroy();
            for (const s of gw.sockets) s.destroy();
            if (server.listening) server.close(() => resolve());
            else resolve();
        });
    return gw;
}
