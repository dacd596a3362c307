// bench/fsync.mjs — how long a durable 4 KiB append takes on the disk that holds
// DIR right now (write + fdatasync, 300 times), as "p50 p99" in milliseconds.
// bench/run.sh prints it next to the figures: a shared disk whose fdatasync is
// slow or jittery shows up in otpd's latency tails (every 201 waits for one).
//
//   node bench/fsync.mjs DIR
import fs from 'node:fs';
import path from 'node:path';

const file = path.join(process.argv[2], 'fsync-probe');
const fd = fs.openSync(file, 'w');
const block = Buffer.alloc(4096, 1);
const ms = [];
for (let i = 0; i < 300; i++) {
    const t = process.hrtime.bigint();
    fs.writeSync(fd, block);
    fs.fdatasyncSync(fd);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
}
fs.closeSync(fd);
fs.unlinkSync(file);
ms.sort((a, b) => a - b);
const q = (p) => ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))];
console.log(`${q(50).toFixed(2)} ${q(99).toFixed(2)}`);
