#!/usr/bin/env node
// scripts/test-summary.mjs — adds up the results of one `make test` run and prints
// the closing line CI reads: "N passed, N failed".
//
// Inputs (all optional; a missing input that was expected counts as a failure):
//   --check NAME=pass|fail   one counted check (the build, the clang-format check)
//   --testlog FILE           Meson's testlog.json: each unit executable's output has
//                            cmocka's "[  PASSED  ] N test(s)." and
//                            "[  FAILED  ] N test(s)" lines, summed over groups; an
//                            executable that crashed, timed out or failed with no
//                            such count (a sanitizer report at exit, say) counts as 1
//                            failed, one that passed without cmocka lines as 1 passed
//                            may be given more than once (the unit tests of the
//                            build with the test hooks, then of the one without)
//   --label NAME             the name the last --testlog's lines are printed under
//                            (default "unit")
//   --unit-ran 0|1           whether `meson test` was run at all
//   --tap FILE               TAP written by `node --test --test-reporter=tap`: its
//                            "# pass N", "# fail N", "# cancelled N" trailer; may be
//                            given more than once (the e2e suite on SQLite, then on
//                            PostgreSQL), each file counted and reported on its own
//   --e2e-ran 0|1            whether the end-to-end tests were run at all
//   --out FILE               also write the closing line to FILE (.ci/run repeats it)
// Exit status: 0 when nothing failed and something passed, 1 otherwise.
import fs from 'node:fs';

const args = process.argv.slice(2);
const checks = [];
const testlogs = []; // {file, label}
const taps = [];
let unitRan = false;
let e2eRan = false;
let outFile = null;
for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const v = args[i + 1];
    if (a === '--check') {
        const [name, res] = v.split('=');
        checks.push({ name, ok: res === 'pass' });
        i++;
    } else if (a === '--testlog') {
        testlogs.push({ file: v, label: 'unit' });
        i++;
    } else if (a === '--label' && testlogs.length > 0) {
        testlogs[testlogs.length - 1].label = v;
        i++;
    } else if (a === '--tap') {
        taps.push(v);
        i++;
    } else if (a === '--unit-ran') {
        unitRan = v === '1';
        i++;
    } else if (a === '--out') {
        outFile = v;
        i++;
    } else if (a === '--e2e-ran') {
        e2eRan = v === '1';
        i++;
    } else {
        console.error(`test-summary: unknown argument ${a}`);
        process.exit(2);
    }
}

// Every label is padded to the longest one, so that the counts line up.
const tapLabel = (tap) => tap.replace(/^.*\//, '').replace(/\.tap$/, ''); // "e2e-postgres.tap" -> "e2e-postgres"
const width = Math.max(
    ...['unit', 'e2e'].map((l) => l.length),
    ...checks.map((c) => c.name.length),
    ...testlogs.map((t) => t.label.length),
    ...taps.map((t) => tapLabel(t).length),
);
const pad = (label) => label.padEnd(width);

const lines = [];
let passed = 0;
let failed = 0;

for (const c of checks) {
    if (c.ok) passed++;
    else failed++;
    lines.push(`  ${pad(c.name)} ${c.ok ? 'ok' : 'FAILED'}`);
}

// Parses one unit executable's output; returns {pass, fail} or null without cmocka lines.
export function cmockaCounts(out) {
    let pass = 0;
    let fail = 0;
    let seen = false;
    for (const m of out.matchAll(/^\[  PASSED  \] (\d+) test\(s\)\./gm)) {
        pass += Number(m[1]);
        seen = true;
    }
    for (const m of out.matchAll(/^\[  FAILED  \] (\d+) test\(s\)/gm)) {
        fail += Number(m[1]);
        seen = true;
    }
    return seen ? { pass, fail } : null;
}

// Adds up one Meson testlog.json; a log with no entries counts as one failure.
function countUnits(testlog, label) {
    let entries = [];
    if (testlog && fs.existsSync(testlog)) {
        entries = fs
            .readFileSync(testlog, 'utf8')
            .split('\n')
            .filter((l) => l.trim())
            .map((l) => JSON.parse(l));
    }
    const name = pad(label);
    if (entries.length === 0) {
        failed++;
        lines.push(`  ${name} FAILED: meson test wrote no results (no unit tests ran)`);
    }
    let up = 0;
    let uf = 0;
    for (const e of entries) {
        const out = `${e.stdout || ''}\n${e.stderr || ''}`;
        const counts = cmockaCounts(out);
        const ok = e.result === 'OK' || e.result === 'EXPECTEDFAIL';
        let p = 0;
        let f = 0;
        if (counts) {
            p = counts.pass;
            f = counts.fail;
            if (!ok && f === 0) f = 1; // exited non-zero after its tests (sanitizer, leak)
        } else if (e.result === 'SKIP') {
            continue;
        } else if (ok) {
            p = 1;
        } else {
            f = 1;
        }
        up += p;
        uf += f;
        const why = ok ? '' : ` [${e.result}]`;
        lines.push(`  ${name} ${e.name}: ${p} ok, ${f} failing${why}`);
    }
    passed += up;
    failed += uf;
}

if (unitRan) {
    if (testlogs.length === 0) countUnits(null, 'unit');
    for (const t of testlogs) countUnits(t.file, t.label);
}

if (e2eRan && taps.length === 0) {
    failed++;
    lines.push(`  ${pad('e2e')} FAILED: no TAP file given`);
}
for (const tap of e2eRan ? taps : []) {
    const label = tapLabel(tap);
    let text = '';
    if (fs.existsSync(tap)) text = fs.readFileSync(tap, 'utf8');
    const num = (k) => {
        const all = [...text.matchAll(new RegExp(`^# ${k} (\\d+)$`, 'gm'))];
        return all.length ? Number(all[all.length - 1][1]) : null;
    };
    const p = num('pass');
    const f = num('fail');
    const c = num('cancelled') || 0;
    if (p === null || f === null) {
        failed++;
        lines.push(`  ${pad(label)} FAILED: node --test wrote no summary`);
    } else {
        passed += p;
        failed += f + c;
        lines.push(`  ${pad(label)} ${p} ok, ${f + c} failing${c ? ` (${c} cancelled)` : ''}`);
        for (const m of text.matchAll(/^\s*not ok \d+ - (.*)$/gm)) lines.push(`    not ok: ${m[1]}`);
    }
}

if (passed === 0 && failed === 0) {
    failed = 1;
    lines.push('  nothing ran');
}

console.log('');
console.log('test results:');
for (const l of lines) console.log(l);
const closing = `${passed} passed, ${failed} failed`;
if (outFile) fs.writeFileSync(outFile, closing + '\n');
console.log(closing);
process.exit(failed === 0 ? 0 : 1);
