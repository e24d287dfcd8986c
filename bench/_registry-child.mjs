// One writer of the registry benchmark (argv: impl, path, count, id): `count` sequential adds of
// "<id>-<k>", either through townlock's MachineRegistry or as a read-modify-write built from
// proper-lockfile + write-file-atomic (the usual Node recipe). Says "ready" once loaded, starts when the
// parent sends a line on stdin (so process start-up is not timed), and says "done".
import fs from 'node:fs';
import lockfile from 'proper-lockfile';
import writeFileAtomic from 'write-file-atomic';
import { MachineRegistry } from '../dist/registry/index.js';

const [impl, path, count, id] = process.argv.slice(2);
const n = Number(count);
process.stdout.write('ready\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.pause();
if (impl === 'townlock') {
  const reg = await MachineRegistry.open(path, { lockTimeout: 0 });
  for (let k = 0; k < n; k++) await reg.add({ name: `${id}-${k}`, type: 'ssh', host: `${id}-${k}.example` });
} else {
  // proper-lockfile locks a path that must exist; the registry file is created by the parent.
  const retries = { retries: 100_000, minTimeout: 1, maxTimeout: 50 };
  for (let k = 0; k < n; k++) {
    const release = await lockfile.lock(path, { retries, realpath: false });
    try {
      const data = JSON.parse(fs.readFileSync(path, 'utf8'));
      data.machines[`${id}-${k}`] = {
        name: `${id}-${k}`,
        type: 'ssh',
        host: `${id}-${k}.example`,
        key_path: '',
        town_path: '',
      };
      await writeFileAtomic(path, JSON.stringify(data, null, 2));
    } finally {
      await release();
    }
  }
}
process.stdout.write('done\n');
