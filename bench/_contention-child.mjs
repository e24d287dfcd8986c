// One process of the contention benchmark (argv: impl, file, updates, startAt). At startAt (absolute ms)
// it starts `updates` read-modify-writes of the JSON file, each under the exclusive lock, and prints one
// JSON line: its lock waits (ms), start and finish times, CPU time (after a warm-up that is not timed).
// impl: sketch, townlock (withWriteLock + writeFileAtomic) or townlock-sync (withWriteLock +
// writeFileAtomicSync: the same synchronous I/O as the sketch, so that the two differ only in the lock).
import fs from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileAtomic, writeFileAtomicSync } from '../dist/atomic/index.js';
import { lockPathFor, withWriteLock } from '../dist/filelock/index.js';
import { flock, LOCK_EX, LOCK_UN, now } from './_util.mjs';

const [impl, file, updates, startAt] = process.argv.slice(2);

/** The update itself: read, change, write a temp file, fsync, rename (the same work for both sides). */
function change(text) {
  const doc = JSON.parse(text);
  doc.counter++;
  doc.items.push({ by: process.pid, at: Date.now(), note: 'x'.repeat(64) });
  if (doc.items.length > 300) doc.items.shift();
  return JSON.stringify(doc);
}

/** The update's write done synchronously: temp file, fsync, rename, directory fsync (the sketch's way). */
let tmpSeq = 0;
function writeSync(text) {
  const tmp = `${file}.tmp-${process.pid}-${tmpSeq++}`;
  const out = fs.openSync(tmp, 'w');
  fs.writeSync(out, text);
  fs.fsyncSync(out);
  fs.closeSync(out);
  fs.renameSync(tmp, file);
  const d = fs.openSync(dirname(file), 'r'); // the same durability as writeFileAtomic: the rename too
  fs.fsyncSync(d);
  fs.closeSync(d);
}

/** The sketch: blocks in flock(LOCK_EX) on a koffi worker thread, then does the work synchronously. */
const lockPath = lockPathFor(file);
fs.mkdirSync(dirname(lockPath), { recursive: true });
const fd = fs.openSync(lockPath, 'a+');
const blockingFlock = () =>
  new Promise((resolve, reject) =>
    flock.async(fd, LOCK_EX, (err, r) => (err || r !== 0 ? reject(err ?? new Error('flock')) : resolve())),
  );
const sketch = async () => {
  const t0 = now();
  await blockingFlock();
  const waited = now() - t0;
  writeSync(change(fs.readFileSync(file, 'utf8')));
  flock(fd, LOCK_UN);
  return waited;
};

const townlock = async () => {
  const t0 = now();
  let waited = 0;
  await withWriteLock(
    file,
    async () => {
      waited = now() - t0;
      const text = change(fs.readFileSync(file, 'utf8'));
      if (impl === 'townlock-sync') writeFileAtomicSync(file, text);
      else await writeFileAtomic(file, text);
    },
    { timeout: 0 },
  );
  return waited;
};

const update = impl === 'sketch' ? sketch : townlock;
// Warm-up, the same for both sides, before the start: one locked write of a private file, so that
// loading what the first update needs (the lock backend, which the sketch loads at import; node:crypto
// for writeFileAtomic's temp names) is not timed as everyone's wait.
const warm = `${file}.warm-${process.pid}`;
if (impl === 'sketch') {
  const w = fs.openSync(warm, 'a+');
  await new Promise((resolve) => flock.async(w, LOCK_EX, resolve));
  fs.writeFileSync(`${warm}.json`, '{}');
  flock(w, LOCK_UN);
  fs.closeSync(w);
} else {
  await withWriteLock(warm, () => writeFileAtomic(`${warm}.json`, '{}'));
}
await sleep(Math.max(0, Number(startAt) - now()));
const cpu0 = process.cpuUsage();
const start = now();
const waits = [];
for (let i = 0; i < Number(updates); i++) waits.push(await update());
const finish = now();
const cpu = process.cpuUsage(cpu0);
process.stdout.write(`${JSON.stringify({ waits, start, finish, cpu: (cpu.user + cpu.system) / 1000 })}\n`);
fs.closeSync(fd);
