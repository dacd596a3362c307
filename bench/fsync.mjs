// bench/fsync.mjs — how long a durable write takes on the disk that holds DIR
// right now (write + fdatasync), in milliseconds. Two uses in bench/run.sh:
//
//   node bench/fsync.mjs DIR
//       300 appends of 4 KiB; prints "p50 p99". Printed next to the figures: a
//       shared disk whose fdatasync is slow or jittery shows up in otpd's
//       latency tails (every 201 waits for one).
//   node bench/fsync.mjs DIR SECONDS BYTES
//       the "disk" row: for SECONDS, writes of BYTES (a group commit's WAL
//       write) over a preallocated 64 MiB file, each followed by fdatasync, as
//       fast as it goes, nothing else running. Prints "p50 p99 p999 max
//       stalled" where stalled is the percentage of the time spent in syncs
//       over 10 ms. No durable server on that disk can keep its p99 under 10
//       ms when stalled is over ~1%: every request in flight during such a
//       sync waits for it.
import fs from 'node:fs';
import path from 'node:path';

const file = path.join(process.argv[2], 'fsync-probe');
const seconds = Number(process.argv[3] || 0);
const bytes = Number(process.argv[4] || 4096);
const fd = fs.openSync(file, 'w');
const block = Buffer.alloc(bytes, 1);
const ms = [];
const SPAN = 64 << 20;
const q = (p) => ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))];

if (!seconds) {
    for (let i = 0; i < 300; i++) {
        const t = process.hrtime.bigint();
        fs.writeSync(fd, block);
        fs.fdatasyncSync(fd);
        ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
} else {
    // Allocated and on disk first, as a WAL that has started over is.
    const mib = Buffer.alloc(1 << 20, 0);
    for (let off = 0; off < SPAN; off += mib.length) fs.writeSync(fd, mib, 0, mib.length, off);
    fs.fdatasyncSync(fd);
    const start = process.hrtime.bigint();
    const end = start + BigInt(Math.round(seconds * 1e9));
    let off = 0;
    for (let t = start; t < end; ) {
        fs.writeSync(fd, block, 0, bytes, off);
        fs.fdatasyncSync(fd);
        const now = process.hrtime.bigint();
        ms.push(Number(now - t) / 1e6);
        t = now;
        off = (off + bytes) % (SPAN - bytes);
    }
}
fs.closeSync(fd);
fs.unlinkSync(file);
const wall = ms.reduce((a, b) => a + b, 0);
const stalled = ms.filter((x) => x > 10).reduce((a, b) => a + b, 0);
ms.sort((a, b) => a - b);
if (!seconds) console.log(`${q(50).toFixed(2)} ${q(99).toFixed(2)}`);
else
    console.log(
        `${q(50).toFixed(2)} ${q(99).toFixed(2)} ${q(99.9).toFixed(2)} ${ms[ms.length - 1].toFixed(1)} ` +
            `${((100 * stalled) / wall).toFixed(2)}`,
    );
