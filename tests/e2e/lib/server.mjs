// tests/e2e/lib/server.mjs — runs the real otpd binary for the end-to-end tests.
//
// startServer() makes a temporary data directory, bootstraps accounts, keys and
// wallet credit with the otpd CLI, starts `otpd serve` on a free loopback port with
// its stderr (the request log, and any sanitizer report) going to DIR/server.log,
// and waits for GET /healthz. The returned Server talks HTTP to it, reads the file
// provider's DIR/sms.jsonl, runs the CLI against the same store, and stops,
// kills (-9) and restarts the process. stop() is also the last check of every test
// file: exit status 0 after SIGTERM, no sanitizer report, and no code that was sent
// and no API key anywhere in the log.
//
// The binary is $OTPD_BIN (default: build-test/src/otpd from the repo root).
//
// The store is SQLite in the data directory, unless $OTPD_E2E_DB names a
// PostgreSQL server (a URL of a database to connect to for CREATE DATABASE,
// e.g. postgres://otpd@127.0.0.1:5433/postgres): then every Server gets a fresh
// database of its own there, passed to the server and the CLI as --db, and
// dropped by cleanup(). scripts/test.sh runs the whole suite once each way.
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '..', '..', '..');
export const OTPD_BIN = process.env.OTPD_BIN || path.join(ROOT, 'build-test', 'src', 'otpd');
/** The PostgreSQL server the suite runs against, or '' for SQLite. */
export const E2E_DB = process.env.OTPD_E2E_DB || '';

let databases = 0;

/** psql on the maintenance database of $OTPD_E2E_DB (synchronous). */
function psql(sql) {
    execFileSync('psql', ['-qAtX', '-v', 'ON_ERROR_STOP=1', '-d', E2E_DB, '-c', sql], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 60000,
    });
}

/** Creates an empty database on $OTPD_E2E_DB's server; returns its URL. */
export function createDatabase() {
    const name = `otpd_e2e_${process.pid}_${++databases}_${Math.random().toString(36).slice(2, 8)}`;
    psql(`CREATE DATABASE ${name}`);
    const u = new URL(E2E_DB);
    u.pathname = `/${name}`;
    return u.toString();
}

function dropDatabase(url) {
    const name = new URL(url).pathname.slice(1);
    try {
        psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } catch {
        /* the cluster is thrown away at the end anyway */
    }
}

const SANITIZER_MARKS = [
    'ERROR: AddressSanitizer',
    'ERROR: LeakSanitizer',
    'runtime error:',
    'WARNING: ThreadSanitizer',
    'SUMMARY: UndefinedBehaviorSanitizer',
];
const KEY_RE = /otpd_(?:live|test|admin)_[0-9A-Za-z]{16,}/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A free TCP port on 127.0.0.1 (listen on 0, read it, close). */
export function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

/** The sanitizer report lines in text, or [] if none. */
/**
 * How many threads of process pid are named name (/proc/PID/task/TID/comm),
 * once that count is want or after ~2 s: a thread names itself only once it
 * runs.
 */
export async function threadsNamed(pid, name, want) {
    const count = () =>
        fs.readdirSync(`/proc/${pid}/task`).filter((t) => {
            try {
                return fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim() === name;
            } catch {
                return false; /* the thread ended */
            }
        }).length;
    for (let i = 0; i < 100 && count() !== want; i++) await sleep(20);
    return count();
}

export function sanitizerReports(text) {
    return SANITIZER_MARKS.filter((m) => text.includes(m));
}

/** The code in an SMS text: the first run of digits of its first word. */
export function codeFromText(text) {
    const first = String(text).trim().split(/\s+/)[0] || '';
    const m = first.match(/\d+/);
    assert.ok(m, `no code at the start of SMS text ${JSON.stringify(text)}`);
    return m[0];
}

/**
 * Distinct valid Indian mobile numbers (+9198…, all valid for libphonenumber):
 * phones(17) gives +919817000001, +919817000002, … — use one block per test file.
 */
export function phones(block) {
    let n = 0;
    const b = String(block).padStart(2, '0');
    return () => {
        n++;
        return `+9198${b}${String(n).padStart(6, '0')}`;
    };
}

/** Runs `otpd --data-dir DIR args…`; resolves {status, stdout, stderr}. */
export function runCli(dataDir, args, { env = {}, timeoutMs = 60000 } = {}) {
    return new Promise((resolve) => {
        execFile(
            OTPD_BIN,
            ['--data-dir', dataDir, ...args],
            { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 },
            (err, stdout, stderr) => {
                let status = 0;
                if (err) status = typeof err.code === 'number' ? err.code : err.signal || -1;
                resolve({ status, stdout, stderr });
            },
        );
    });
}

/** Like runCli, but the command must succeed cleanly; with --json the output is parsed. */
export async function cli(dataDir, args, opts) {
    const r = await runCli(dataDir, args, opts);
    const what = `otpd ${args.join(' ')}`;
    assert.equal(r.status, 0, `${what} exited ${r.status}: ${r.stderr}`);
    assert.deepEqual(sanitizerReports(r.stderr), [], `${what}: sanitizer report:\n${r.stderr}`);
    if (args.includes('--json')) {
        try {
            return JSON.parse(r.stdout);
        } catch {
            assert.fail(`${what}: stdout is not JSON: ${JSON.stringify(r.stdout)}`);
        }
    }
    return r.stdout;
}

export class Server {
    /**
     * db: the store URL to use (another node's, to share its database); by
     * default a fresh PostgreSQL database when $OTPD_E2E_DB is set, else SQLite
     * in dataDir.
     */
    constructor(dataDir, { db } = {}) {
        this.dataDir = dataDir;
        this.ownsDb = !db && !!E2E_DB;
        this.db = db || (E2E_DB ? createDatabase() : null);
        this.logFile = path.join(dataDir, 'server.log');
        this.smsFile = path.join(dataDir, 'sms.jsonl');
        this.dbFile = path.join(dataDir, 'otpd.db');
        this.accounts = {};
        this.keys = []; // every full key created, for the log check
        this.port = 0;
        this.child = null;
        this.exit = null; // {code, signal} once the process ended
        this.clockOffsetMs = 0; // how far POST /_test/clock moved the server's clock
        this.env = {}; // extra environment of `otpd serve`, kept across restarts
        this.args = []; // extra arguments of `otpd serve` (e.g. --config FILE), kept across restarts
        this.agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    }

    get baseUrl() {
        return `http://127.0.0.1:${this.port}`;
    }

    /** The global options that select this server's store (none for SQLite). */
    dbArgs() {
        return this.db ? ['--db', this.db] : [];
    }

    cli(args, opts) {
        return cli(this.dataDir, [...this.dbArgs(), ...args], opts);
    }

    runCli(args, opts) {
        return runCli(this.dataDir, [...this.dbArgs(), ...args], opts);
    }

    /** Creates an account with a live key and, if credit is given, wallet credit. */
    async addAccount(name, { credit = '100.00', testKey = false } = {}) {
        const acc = await this.cli(['account', 'create', name, '--json']);
        assert.match(acc.id, /^acc_/);
        const entry = { id: acc.id, name };
        const live = await this.createKey(name, { name: `${name}-live` });
        entry.key = live.key;
        entry.keyId = live.id;
        if (testKey) {
            const t = await this.createKey(name, { name: `${name}-test`, test: true });
            entry.testKey = t.key;
            entry.testKeyId = t.id;
        }
        if (credit && credit !== '0.00') {
            await this.cli(['wallet', 'credit', name, credit, '--note', 'e2e credit', '--json']);
        }
        this.accounts[name] = entry;
        return entry;
    }

    async createKey(account, { name, test = false } = {}) {
        const args = ['key', 'create', account, '--json'];
        if (name) args.push('--name', name);
        if (test) args.push('--test');
        const k = await this.cli(args);
        assert.match(k.id, /^key_/, `key create --json: ${JSON.stringify(k)}`);
        assert.match(k.key, test ? /^otpd_test_/ : /^otpd_live_/);
        this.keys.push(k.key);
        return k;
    }

    /** `otpd account show NAME --json`. */
    accountShow(name) {
        return this.cli(['account', 'show', name, '--json']);
    }

    /**
     * Starts `otpd serve` on a fresh free port (a restart may not get the old one).
     * env (extra environment) is remembered for later restarts.
     */
    async start({ env, args } = {}) {
        if (env) this.env = env;
        if (args) this.args = args;
        this.port = await freePort();
        const log = fs.openSync(this.logFile, 'a');
        this.exit = null;
        const child = spawn(
            OTPD_BIN,
            ['serve', '--data-dir', this.dataDir, ...this.dbArgs(), '--listen', `127.0.0.1:${this.port}`, ...this.args],
            { stdio: ['ignore', log, log], env: { ...process.env, ...this.env } },
        );
        fs.closeSync(log);
        this.child = child;
        this.exited = new Promise((resolve) => {
            child.on('exit', (code, signal) => {
                this.exit = { code, signal };
                resolve(this.exit);
            });
        });
        live.add(this);
        const deadline = Date.now() + 30000;
        for (;;) {
            if (this.exit) {
                throw new Error(
                    `otpd serve exited (${JSON.stringify(this.exit)}) before answering /healthz:\n${this.log()}`,
                );
            }
            try {
                const r = await this.request('GET', '/healthz', { timeoutMs: 1000 });
                if (r.status === 200) break;
            } catch {
                /* not listening yet */
            }
            if (Date.now() > deadline) {
                throw new Error(`otpd serve did not answer /healthz within 30 s:\n${this.log()}`);
            }
            await sleep(50);
        }
        return this;
    }

    /** The server's log so far (stderr and stdout of every run on this data dir). */
    log() {
        try {
            return fs.readFileSync(this.logFile, 'utf8');
        } catch {
            return '';
        }
    }

    /**
     * One HTTP request. body is sent as JSON; rawBody (string or Buffer) as is;
     * contentType defaults to application/json when there is a body; chunked sends
     * the body without Content-Length. Resolves {status, headers, text, json}.
     */
    request(method, urlPath, opts = {}) {
        const { key, body, rawBody, headers = {}, timeoutMs = 30000, agent, chunked = false } = opts;
        let payload = null;
        if (rawBody !== undefined) payload = Buffer.isBuffer(rawBody) ? rawBody : Buffer.from(rawBody);
        else if (body !== undefined) payload = Buffer.from(JSON.stringify(body));
        const h = { ...headers };
        if (key) h['X-API-Key'] = key;
        if (payload) {
            const ct = 'contentType' in opts ? opts.contentType : 'application/json';
            if (ct !== null) h['Content-Type'] = ct;
            if (!chunked) h['Content-Length'] = String(payload.length);
        }
        return new Promise((resolve, reject) => {
            let done = false;
            const req = http.request(
                {
                    host: '127.0.0.1',
                    port: this.port,
                    method,
                    path: urlPath,
                    headers: h,
                    agent: agent === undefined ? this.agent : agent,
                },
                (res) => {
                    const localPort = res.socket && res.socket.localPort;
                    const chunks = [];
                    res.on('data', (c) => chunks.push(c));
                    res.on('error', (e) => {
                        if (!done) {
                            done = true;
                            reject(e);
                        }
                    });
                    res.on('end', () => {
                        done = true;
                        const text = Buffer.concat(chunks).toString('utf8');
                        let json = null;
                        try {
                            json = JSON.parse(text);
                        } catch {
                            /* not JSON */
                        }
                        resolve({ status: res.statusCode, headers: res.headers, text, json, localPort });
                    });
                },
            );
            req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${urlPath}: timed out`)));
            // The server may answer (413, 415) and close before reading all of a
            // large body: a write error after the response is not a failure.
            req.on('error', (e) => {
                if (!done) {
                    done = true;
                    reject(e);
                }
            });
            if (payload) {
                if (chunked) {
                    const step = 4096;
                    for (let i = 0; i < payload.length; i += step) req.write(payload.subarray(i, i + step));
                } else {
                    req.write(payload);
                }
            }
            req.end();
        });
    }

    /** POST /otp/send with key; body fields as given. */
    send(key, body) {
        return this.request('POST', '/otp/send', { key, body });
    }

    verify(key, requestId, otpCode) {
        return this.request('POST', '/otp/verify', { key, body: { requestId, otpCode } });
    }

    /** Moves the server's clock forward (test builds only). */
    async advanceClock(ms) {
        const r = await this.request('POST', '/_test/clock', { body: { advanceMs: ms } });
        assert.ok(r.status >= 200 && r.status < 300, `POST /_test/clock: ${r.status} ${r.text}`);
        this.clockOffsetMs += ms;
    }

    /** The file provider's output: one {messageId, to, text, createdAt} per line. */
    readSms() {
        let text = '';
        try {
            text = fs.readFileSync(this.smsFile, 'utf8');
        } catch {
            return [];
        }
        const out = [];
        for (const line of text.split('\n')) {
            if (!line.trim()) continue;
            // A kill -9 may leave a torn last line: the message is sent again later.
            try {
                out.push(JSON.parse(line));
            } catch {
                /* torn line */
            }
        }
        return out;
    }

    /** The newest SMS to `to` once at least `count` have arrived for it (polls). */
    async waitForSms(to, { timeoutMs = 10000, count = 1 } = {}) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const mine = this.readSms().filter((m) => m.to === to);
            if (mine.length >= count) return mine[mine.length - 1];
            if (Date.now() > deadline) {
                assert.fail(`no SMS to ${to} within ${timeoutMs} ms (have ${mine.length}, want ${count})`);
            }
            await sleep(20);
        }
    }

    /** The code of the newest SMS to `to` (waits for it). */
    async codeFor(to, opts) {
        const m = await this.waitForSms(to, opts);
        return codeFromText(m.text);
    }

    /** Map to → code of the newest SMS to each number, once every number has one (polls). */
    async codesFor(numbers, { timeoutMs = 15000 } = {}) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const newest = new Map();
            for (const m of this.readSms()) newest.set(m.to, m);
            const missing = numbers.filter((n) => !newest.has(n));
            if (missing.length === 0) {
                return new Map(numbers.map((n) => [n, codeFromText(newest.get(n).text)]));
            }
            if (Date.now() > deadline) {
                assert.fail(`no SMS within ${timeoutMs} ms to ${missing.length} of ${numbers.length} numbers, e.g. ${missing[0]}`);
            }
            await sleep(50);
        }
    }

    /** Every code the file provider has delivered on this data dir. */
    sentCodes() {
        return [...new Set(this.readSms().map((m) => codeFromText(m.text)))];
    }

    /** Fails if the log holds a sent code, an API key or a sanitizer report. */
    checkLog() {
        const log = this.log();
        assert.deepEqual(sanitizerReports(log), [], `sanitizer report in the server log:\n${log}`);
        for (const k of this.keys) assert.ok(!log.includes(k), 'an API key appears in the server log');
        assert.doesNotMatch(log, KEY_RE, 'something shaped like an API key appears in the server log');
        // Codes are matched as whole digit runs (a 6-digit code inside a 13-digit phone
        // number or a timestamp is not a leak); codes are at least 4 digits long. The
        // visible tail of a masked number (phone=+91******3210) is the number's own
        // digits, not a code: a 4-digit code equal to it is no leak.
        const runs = new Set(log.replace(/\*+\d+/g, '*').match(/\d+/g) || []);
        const leaked = this.sentCodes().filter((c) => runs.has(c));
        assert.deepEqual(leaked, [], `codes that were sent appear in the server log`);
    }

    /** SIGTERM; the server must exit `code` (0) with a clean log. */
    async stop({ timeoutMs = 30000, code = 0 } = {}) {
        if (this.child && !this.exit) {
            this.child.kill('SIGTERM');
            const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
            await this.exited;
            clearTimeout(t);
        }
        live.delete(this);
        this.agent.destroy();
        this.agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
        assert.deepEqual(this.exit, { code, signal: null }, `otpd serve did not exit ${code} on SIGTERM:\n${this.log()}`);
        this.checkLog();
    }

    /** SIGKILL, no questions asked. */
    async kill9() {
        if (this.child && !this.exit) {
            this.child.kill('SIGKILL');
            await this.exited;
        }
        live.delete(this);
        this.agent.destroy();
        this.agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    }

    /** Stops the server (SIGTERM, checked) if it runs, and starts it again on the same data dir. */
    async restart(opts) {
        if (this.child && !this.exit) await this.stop();
        return this.start(opts);
    }

    /**
     * Kills a server still running, copies its log to $OTPD_E2E_RESULTS/NAME.log
     * (for CI's artefacts) and removes the data dir unless OTPD_E2E_KEEP is set.
     */
    cleanup(name) {
        if (this.child && !this.exit) this.child.kill('SIGKILL');
        live.delete(this);
        this.agent.destroy();
        if (process.env.OTPD_E2E_RESULTS && name) {
            try {
                fs.copyFileSync(this.logFile, path.join(process.env.OTPD_E2E_RESULTS, `${name}.server.log`));
            } catch {
                /* no log */
            }
        }
        if (!process.env.OTPD_E2E_KEEP) {
            fs.rmSync(this.dataDir, { recursive: true, force: true });
            if (this.ownsDb) dropDatabase(this.db);
        }
    }
}

const live = new Set();
process.on('exit', () => {
    for (const s of live) if (s.child && !s.exit) s.child.kill('SIGKILL');
});

/**
 * A data dir with the given accounts ({name: credit} or [names], credit 100.00),
 * then `otpd serve` on it. Accounts are bootstrapped with the CLI before serving.
 */
// Abuse protection (issue 5, SPEC 3) is what abuse*.test.mjs test. The other files
// test other things with far more traffic per key, number and prefix than its
// defaults allow, so their servers run with it off unless they set
// OTPD_LIMITS_DEFAULTS themselves (abuse tests pass their own, or '' for the defaults).
export const NO_ABUSE_LIMITS =
    'key_rate=0,phone_sends=0,phone_interval=0,fail_max=0,fail_streak_max=0,pump_min_sends=0,pump_country_min_sends=0';

export async function startServer({ accounts = { acme: '100.00' }, testKeys = false, env = {}, args = [] } = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-e2e-'));
    const srv = new Server(dir);
    const list = Array.isArray(accounts) ? accounts.map((a) => [a, '100.00']) : Object.entries(accounts);
    for (const [name, credit] of list) await srv.addAccount(name, { credit, testKey: testKeys });
    await srv.start({ env: { OTPD_LIMITS_DEFAULTS: NO_ABUSE_LIMITS, ...env }, args });
    return srv;
}

// ---- assertions shared by the test files --------------------------------------

export const REQUEST_ID_RE = /^req_[0-9A-Za-z]{22}$/;
export const ISO_MS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Asserts an error response: status, code, the SPEC 1.2 shape, X-Request-Id. */
export function assertError(res, status, code, what = '') {
    const ctx = `${what} → ${res.status} ${res.text}`;
    assert.equal(res.status, status, ctx);
    assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json), `error body is not a JSON object: ${ctx}`);
    assert.equal(res.json.code, code, ctx);
    assert.equal(typeof res.json.message, 'string', ctx);
    assert.ok(res.json.message.length > 0, ctx);
    for (const k of Object.keys(res.json)) assert.ok(['code', 'message', 'details'].includes(k), `unexpected key ${k}: ${ctx}`);
    if ('details' in res.json) {
        assert.ok(res.json.details && typeof res.json.details === 'object', `details is not an object: ${ctx}`);
    }
    assert.ok(res.headers['x-request-id'], `no X-Request-Id: ${ctx}`);
    assert.match(String(res.headers['content-type']), /^application\/json/, ctx);
    return res.json;
}

/** Asserts {"data": …} with exactly the given keys; returns data. */
export function assertData(res, status, keys, what = '') {
    const ctx = `${what} → ${res.status} ${res.text}`;
    assert.equal(res.status, status, ctx);
    assert.ok(res.json && typeof res.json === 'object', `body is not JSON: ${ctx}`);
    assert.deepEqual(Object.keys(res.json), ['data'], `envelope: ${ctx}`);
    const data = res.json.data;
    if (keys) assert.deepEqual(Object.keys(data).sort(), [...keys].sort(), `data fields: ${ctx}`);
    assert.ok(res.headers['x-request-id'], `no X-Request-Id: ${ctx}`);
    assert.match(String(res.headers['content-type']), /^application\/json/, ctx);
    return data;
}

export const SEND_KEYS = ['requestId', 'expiresAt', 'attemptsLeft'];

/** A successful send; returns {requestId, expiresAt, attemptsLeft}. */
export async function sendOk(srv, key, body) {
    const r = await srv.send(key, body);
    const d = assertData(r, 201, SEND_KEYS, `POST /otp/send ${JSON.stringify(body)}`);
    assert.match(d.requestId, REQUEST_ID_RE);
    assert.match(d.expiresAt, ISO_MS_RE);
    assert.equal(typeof d.attemptsLeft, 'number');
    return d;
}

/** Money string "12.34" → integer paise. */
export function paise(s) {
    assert.match(s, /^-?\d+\.\d{2}$/, `money string ${JSON.stringify(s)}`);
    const neg = s.startsWith('-');
    const [a, b] = s.replace('-', '').split('.');
    const v = Number(a) * 100 + Number(b);
    return neg ? -v : v;
}

/** Account counts that must not move when a request is refused. */
export function ledgerView(show) {
    return {
        balance: show.balance,
        ledgerSum: show.ledgerSum,
        requests: show.requests,
        messages: show.messages,
        ledgerEntries: show.ledgerEntries,
    };
}
