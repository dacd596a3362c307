// tests/e2e/peers/otpd.mjs — otpd for the delivery tests: an INI file for
// --config, and `otpd serve` with it (lib/server.mjs's Server) on a data
// directory of its own (prefix otpd-deliv-).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, NO_ABUSE_LIMITS } from '../lib/server.mjs';

/** Writes text to a fresh temporary otpd.ini and returns its path. */
export function writeIni(text) {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-deliv-ini-')), 'otpd.ini');
    fs.writeFileSync(file, text, { mode: 0o600 });
    return file;
}

/**
 * A data dir with the given accounts ({name: credit}), then
 * `otpd serve --config ini` on it.
 */
export async function startWithConfig(ini, { accounts = { acme: '100.00' } } = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otpd-deliv-'));
    const srv = new Server(dir);
    for (const [name, credit] of Object.entries(accounts)) await srv.addAccount(name, { credit });
    await srv.start({ args: ['--config', ini], env: { OTPD_LIMITS_DEFAULTS: NO_ABUSE_LIMITS } });
    return srv;
}
