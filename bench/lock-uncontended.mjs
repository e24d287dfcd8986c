// Uncontended lock+unlock cost: townlock withWriteLock(noop) vs proper-lockfile lock+release vs the raw
// floor (open + flock(LOCK_EX|LOCK_NB) + flock(LOCK_UN) + close through koffi). Same file system, one run.
// Usage: node bench/lock-uncontended.mjs   (BENCH_N sets the iteration count)
import fs from 'node:fs';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { FileLock, withWriteLock } from '../dist/filelock/index.js';
import { compare, flock, fmt, LOCK_EX, LOCK_NB, LOCK_UN, printTable, scratch } from './_util.mjs';

const N = Number(process.env.BENCH_N ?? 5_000);
const dir = scratch('uncontended');
const file = join(dir, 'data.json');
fs.writeFileSync(file, '{}');
const rawPath = join(dir, 'raw.lock');
const flags = fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW;

const handle = new FileLock(file);
const plN = Math.max(100, Math.floor(N / 50));
const results = await compare([
  {
    name: 'floor',
    n: N,
    fn: () => {
      const fd = fs.openSync(rawPath, flags, 0o644);
      flock(fd, LOCK_EX | LOCK_NB);
      flock(fd, LOCK_UN);
      fs.closeSync(fd);
    },
  },
  { name: 'withWriteLock', n: N, fn: () => withWriteLock(file, () => {}) },
  {
    name: 'handle',
    n: N,
    fn: async () => {
      await handle.lock();
      await handle.unlock();
    },
  },
  {
    name: 'proper',
    n: plN,
    fn: async () => {
      const release = await lockfile.lock(file);
      await release();
    },
  },
]);
const floor = results.get('floor');
const townlock = results.get('withWriteLock');
const handleOps = results.get('handle');
const proper = results.get('proper');

console.log(
  `Uncontended lock + unlock: median µs/op over 7 interleaved rounds of N=${N} (proper-lockfile N=${plN})\n`,
);
printTable(
  ['implementation', 'µs/op', 'vs floor', 'proper-lockfile / this'],
  [
    ['raw koffi open+flock+unlock+close (floor)', fmt(floor), '1.00×', `${fmt(proper / floor, 0)}×`],
    [
      'townlock withWriteLock(noop)',
      fmt(townlock),
      `${fmt(townlock / floor)}×`,
      `${fmt(proper / townlock, 0)}×`,
    ],
    [
      'townlock FileLock lock()+unlock()',
      fmt(handleOps),
      `${fmt(handleOps / floor)}×`,
      `${fmt(proper / handleOps, 0)}×`,
    ],
    ['proper-lockfile lock+release', fmt(proper), `${fmt(proper / floor)}×`, '1×'],
  ],
);
fs.rmSync(dir, { recursive: true, force: true });
