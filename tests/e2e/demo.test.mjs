// The README's run command (`make run` → scripts/run-demo.sh): on a new store it
// bootstraps the demo account, prints the keys and curl commands and serves; the
// printed commands, pasted into a shell, send an OTP, read the code and verify it.
// A second run on the same store reuses the account and the saved keys.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, OTPD_BIN, freePort, sleep, sanitizerReports } from './lib/server.mjs';

/** Starts run-demo.sh; resolves {child, out()} once /healthz answers. */
async function runDemo(dataDir, port) {
    const child = spawn('bash', [path.join(ROOT, 'scripts', 'run-demo.sh')], {
        cwd: ROOT,
        env: { ...process.env, OTPD_BIN, DATA_DIR: dataDir, LISTEN: `127.0.0.1:${port}` },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
    let exit = null;
    exited.then((e) => (exit = e));
    const deadline = Date.now() + 60000;
    for (;;) {
        if (exit) assert.fail(`run-demo.sh exited ${JSON.stringify(exit)}:\n${out}\n${err}`);
        try {
            const r = await fetch(`http://127.0.0.1:${port}/healthz`);
            if (r.status === 200) break;
        } catch {
            /* not yet */
        }
        if (Date.now() > deadline) assert.fail(`run-demo.sh: no /healthz in 60 s:\n${out}\n${err}`);
        await sleep(100);
    }
    return {
        child,
        out: () => out,
        err: () => err,
        stop: async () => {
            child.kill('SIGTERM');
            const e = await exited;
            assert.deepEqual(e, { code: 0, signal: null }, `otpd serve (from run-demo.sh) on SIGTERM:\n${err}`);
            assert.deepEqual(sanitizerReports(err), [], err);
        },
    };
}

const sh = (cmd) =>
    new Promise((resolve) => {
        execFile('bash', ['-c', cmd], { cwd: ROOT, timeout: 30000 }, (e, stdout, stderr) =>
            resolve({ status: e ? e.code : 0, stdout, stderr }),
        );
    });

describe('make run (scripts/run-demo.sh)', () => {
    let dir;
    let port;
    let demo;
    before(async () => {
        dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-demo-')), 'otpd-data');
        port = await freePort();
    });
    after(() => {
        if (demo) demo.child.kill('SIGKILL');
        if (!process.env.OTPD_E2E_KEEP) fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    });

    it('bootstraps a new store and prints the keys and curl commands', async () => {
        demo = await runDemo(dir, port);
        const out = demo.out();
        assert.match(out, /New store/);
        assert.match(out, /live key: otpd_live_[0-9A-Za-z]{32,}/);
        assert.match(out, /test key: otpd_test_[0-9A-Za-z]{32,}/);
        const keysFile = path.join(dir, 'demo-keys.txt');
        assert.equal(fs.statSync(keysFile).mode & 0o777, 0o600);
        const saved = fs.readFileSync(keysFile, 'utf8');
        assert.ok(saved.includes(out.match(/live key: (\S+)/)[1]));
    });

    it('the printed step-by-step curl commands send, read and verify', async () => {
        const lines = demo.out().split('\n');
        const send = lines.find((l) => l.startsWith('curl ') && l.includes('/otp/send'));
        const read = lines.find((l) => l.startsWith('tail -n 1 '));
        const verify = lines.find((l) => l.startsWith('curl ') && l.includes('/otp/verify'));
        assert.ok(send && read && verify, `commands not found in:\n${demo.out()}`);

        const s = await sh(send);
        const sent = JSON.parse(s.stdout);
        assert.match(sent.data.requestId, /^req_/);
        let sms = '';
        for (let i = 0; i < 100 && !sms.includes('+919876543210'); i++) {
            await sleep(50);
            sms = (await sh(read)).stdout;
        }
        const code = JSON.parse(sms).text.match(/^\d+/)[0];
        const v = await sh(verify.replace('REQUEST_ID', sent.data.requestId).replace('CODE', code));
        assert.deepEqual(JSON.parse(v.stdout), { data: { verified: true } });
    });

    it('the printed one-liner does all three steps', async () => {
        const printed = demo.out().split('\n').find((l) => l.startsWith('REQ=$('));
        assert.ok(printed, `one-liner not found in:\n${demo.out()}`);
        // Another number than step by step used, so no per-number send limit interferes.
        const one = printed.replaceAll('+919876543210', '+919876543211');
        assert.notEqual(one, printed);
        const r = await sh(one);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /requestId=req_\S+ code=\d{6}/);
        assert.ok(r.stdout.includes('{"data":{"verified":true}}'), r.stdout);
    });

    it('SIGTERM stops it with exit 0; a second run reuses the store and the saved keys', async () => {
        const firstKey = demo.out().match(/live key: (\S+)/)[1];
        const firstLog = demo.err();
        await demo.stop();
        demo = null;
        demo = await runDemo(dir, port);
        const out = demo.out();
        assert.match(out, /existing store/);
        assert.equal(out.match(/live key: (\S+)/)[1], firstKey);
        const w = await fetch(`http://127.0.0.1:${port}/wallet`, { headers: { 'X-API-Key': firstKey } });
        assert.equal(w.status, 200);
        assert.equal((await w.json()).data.balance, '99.50', 'credited once, charged for two sends');
        const log = demo.err();
        await demo.stop();
        demo = null;
        // Neither run logged a code or a key.
        const codes = fs
            .readFileSync(path.join(dir, 'sms.jsonl'), 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l).text.match(/^\d+/)[0]);
        assert.equal(codes.length, 2);
        const runs = new Set(`${firstLog}\n${log}`.match(/\d+/g) || []);
        for (const c of codes) assert.ok(!runs.has(c), `code ${c} in the server log`);
        assert.doesNotMatch(`${firstLog}\n${log}`, /otpd_(live|test)_[0-9A-Za-z]{13,}/);
    });
});
